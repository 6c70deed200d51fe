-- PostgreSQL dialect of migrations/sqlite (same tables; 64-bit integers).
-- The broker's tables. Times are unix seconds (UTC). Tokens, codes, session ids and
-- helper secrets are stored only as base64url(SHA-256(value)).

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL
);

-- A JPKI certificate (issuer DN + serial) linked to an account.
CREATE TABLE cert_links (
    issuer      TEXT NOT NULL,
    serial      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    not_after   BIGINT NOT NULL,
    linked_at   BIGINT NOT NULL,
    PRIMARY KEY (issuer, serial)
);
CREATE INDEX cert_links_account ON cert_links(account_id);

-- A login transaction: from /authorize until a code is issued.
CREATE TABLE transactions (
    id                   TEXT PRIMARY KEY,
    browser_hash         TEXT NOT NULL,
    helper_hash          TEXT NOT NULL UNIQUE,
    client_id            TEXT NOT NULL,
    request_json         TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    expires_at           BIGINT NOT NULL,
    status               TEXT NOT NULL,          -- pending | authenticated | done
    challenge_nonce      TEXT NOT NULL,
    challenge_expires_at BIGINT NOT NULL,
    challenge_used       BIGINT NOT NULL DEFAULT 0,
    binding_code         TEXT NOT NULL,
    csrf                 TEXT NOT NULL,
    account_id           TEXT REFERENCES accounts(id),
    facts_json           TEXT,
    session_hash         TEXT
);
CREATE INDEX transactions_expiry ON transactions(expires_at);

CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    facts_json  TEXT NOT NULL
);

CREATE TABLE consents (
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    client_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,                   -- space-separated, sorted
    granted_at  BIGINT NOT NULL,
    PRIMARY KEY (account_id, client_id)
);

-- A grant: what one code produced. Revoking it kills its refresh tokens and access tokens.
CREATE TABLE grants (
    id          TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    scope       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE codes (
    code_hash   TEXT PRIMARY KEY,
    grant_id    TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    data_json   TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    grant_id    TEXT NOT NULL REFERENCES grants(id),
    data_json   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens(grant_id);

CREATE TABLE revoked_jti (
    jti         TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    private_pem TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    status      TEXT NOT NULL                    -- active | retired
);

-- Server secrets (e.g. the pairwise-subject key), created once.
CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);
