-- Signals to relying parties when a card is revoked (issue 18).

-- When the broker learned that a linked certificate is revoked: its signals go out once.
ALTER TABLE cert_links ADD COLUMN revoked_at INTEGER;

-- The outbox carries Security Event Tokens (RFC 8417, pushed per RFC 8935) beside logout
-- tokens: its kind, and the event's claims.
ALTER TABLE logout_outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'logout';
ALTER TABLE logout_outbox ADD COLUMN event_json TEXT;

-- A new CRL of a CA is swept over the certificates linked under it (by serial, in pages).
CREATE INDEX cert_links_anchor ON cert_links(anchor, serial);
