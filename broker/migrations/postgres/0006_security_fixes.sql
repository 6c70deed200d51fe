-- Security and operator fixes (issue 15).

-- A client assertion (private_key_jwt) is single use: its jti (SHA-256, per client) is kept
-- until the assertion expires, in the database every broker process shares.
CREATE TABLE client_assertion_jtis (
    client_id   TEXT NOT NULL,
    jti_hash    TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti_hash)
);
CREATE INDEX client_assertion_jtis_expiry ON client_assertion_jtis(expires_at);

-- Where a login transaction came from (server HMAC of the source address, an IPv6 /64; never
-- the address itself), for the caps on open transactions per source and per client.
ALTER TABLE transactions ADD COLUMN source_hash TEXT;
-- Only transactions still waiting for the card count: partial indexes hold just those (a
-- transaction leaves them once, when the card answers; finished ones stay out).
CREATE INDEX transactions_pending_source ON transactions(source_hash, expires_at)
    WHERE status = 'pending';
CREATE INDEX transactions_pending_client ON transactions(client_id, expires_at)
    WHERE status = 'pending';

-- What was done to an account (a certificate linked, the person's identity proofed): the
-- person's record and the audit log. Rows are only ever added.
CREATE TABLE audit_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  TEXT,
    kind        TEXT NOT NULL,
    detail_json TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX audit_events_account ON audit_events(account_id, id);
