-- Back-channel logout (OpenID Connect Back-Channel Logout 1.0, issue 18).

-- The SSO session a grant came from (its `sid`): the relying parties to tell when it ends.
ALTER TABLE grants ADD COLUMN sid TEXT;
CREATE INDEX grants_sid ON grants(sid);

-- Logout tokens to deliver, durable: written with the logout, sent by whichever process
-- leases the row first, retried with backoff, kept as delivered or failed.
CREATE TABLE logout_outbox (
    id              TEXT PRIMARY KEY,            -- also the logout_token's jti
    client_id       TEXT NOT NULL,
    uri             TEXT NOT NULL,               -- the client's backchannel_logout_uri
    sub             TEXT NOT NULL,               -- the person's sub at that client
    sid             TEXT,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    lease_until     INTEGER,
    delivered_at    INTEGER,
    failed_at       INTEGER,
    last_error      TEXT
);
CREATE INDEX logout_outbox_due ON logout_outbox(next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
