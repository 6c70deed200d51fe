-- Pushed authorization requests (RFC 9126, issue 19): a client's request, authenticated at
-- /par, kept until /authorize takes it back once (or it expires). The request_uri itself is
-- never stored, only its hash.
CREATE TABLE pushed_requests (
    id_hash     TEXT PRIMARY KEY,   -- SHA-256 of the request_uri's secret part
    client_id   TEXT NOT NULL,
    params_json TEXT NOT NULL,      -- the authorization request's parameters, as pushed
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX pushed_requests_expiry ON pushed_requests(expires_at);
CREATE INDEX pushed_requests_open_client ON pushed_requests(client_id, expires_at)
    WHERE used_at IS NULL;
