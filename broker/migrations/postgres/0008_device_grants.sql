-- The device authorization grant (RFC 8628, issue 18).

-- A device's request, from /device_authorization until its tokens are fetched or it expires.
-- The approval runs as the broker's own authorization request (state = id) through the
-- login and consent pages; its code is kept here only as a hash, redeemed when the device polls.
CREATE TABLE device_grants (
    id               TEXT PRIMARY KEY,
    device_code_hash TEXT NOT NULL UNIQUE,        -- SHA-256 of the device_code
    user_code        TEXT NOT NULL UNIQUE,        -- 8 letters of BCDFGHJKLMNPQRSTVWXZ, no dash
    client_id        TEXT NOT NULL,
    request_json     TEXT NOT NULL,               -- scope, acr_values, claims asked for
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    poll_interval    BIGINT NOT NULL,            -- seconds; grows by 5 at each slow_down
    last_poll_at     BIGINT,
    status           TEXT NOT NULL,               -- pending | approved | denied | redeemed
    code_hash        TEXT,                        -- the approval's authorization code
    browser_hash     TEXT                         -- the browser that took the code up
);
CREATE INDEX device_grants_expiry ON device_grants(expires_at);
CREATE INDEX device_grants_pending_client ON device_grants(client_id, expires_at)
    WHERE status = 'pending';

-- Wrong user codes per source (server HMAC of the address), in a window: guessing is refused
-- past the policy's bound.
CREATE TABLE device_code_failures (
    source_hash  TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    failures     BIGINT NOT NULL
);
