-- Scale-out: signing-key rotation that every process follows, and events every process applies.

-- A key signs from `activate_at` (it is published in the JWKS from the moment it is stored) and
-- stays published until `retire_at` (set when a newer key takes over, plus a grace period for
-- the tokens it signed). Keys from before rotation existed activated when they were created.
ALTER TABLE signing_keys ADD COLUMN activate_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE signing_keys ADD COLUMN retire_at INTEGER;
UPDATE signing_keys SET activate_at = created_at;
-- Keys an operator had marked retired stay unpublished.
UPDATE signing_keys SET retire_at = created_at WHERE status <> 'active';

-- Something every broker process must apply to its own caches (a revocation-cache purge, a
-- key change). Each process polls recent events and applies each one once.
CREATE TABLE broker_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX broker_events_created ON broker_events(created_at);
