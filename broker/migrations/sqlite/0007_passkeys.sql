-- Passkeys (issue 17).

-- The trust anchor (label) that issued a linked certificate: CA generations share one DN, and
-- a stored certificate is checked for revocation against its own CA (a passkey's card). NULL
-- for links made before this column existed.
ALTER TABLE cert_links ADD COLUMN anchor TEXT;

-- A passkey of an account, and the card certificate of the login that enrolled it.
CREATE TABLE passkeys (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts(id),
    cred_id          TEXT NOT NULL UNIQUE,        -- base64url of the WebAuthn credential ID
    user_handle      TEXT NOT NULL,               -- the WebAuthn user.id given at enrolment
    credential_json  TEXT NOT NULL,               -- webauthn-rs Passkey (public key, counter, flags)
    name             TEXT NOT NULL,
    backup_eligible  INTEGER NOT NULL,
    backup_state     INTEGER NOT NULL,
    sign_count       INTEGER NOT NULL,
    card_anchor      TEXT NOT NULL,
    card_issuer      TEXT NOT NULL,
    card_serial      TEXT NOT NULL,
    card_not_after   INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    last_used_at     INTEGER,
    suspended_at     INTEGER,
    suspended_reason TEXT
);
CREATE INDEX passkeys_account ON passkeys(account_id);

-- A WebAuthn ceremony begun and not yet finished: its state stays here, so any process
-- finishes what another began. Taken (deleted) by the finish, whatever its outcome: a
-- challenge answers once.
CREATE TABLE webauthn_ceremonies (
    id_hash     TEXT PRIMARY KEY,                 -- SHA-256 of the id the browser holds
    purpose     TEXT NOT NULL,                    -- login | enrol
    binding     TEXT NOT NULL,                    -- login: the transaction id; enrol: the session's id hash
    account_id  TEXT,                             -- enrol: the account
    state_json  TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies(expires_at);
-- One open ceremony per login transaction or session: a new one replaces it (so what an
-- unauthenticated page may store is bounded by the transactions' own caps).
CREATE UNIQUE INDEX webauthn_ceremonies_binding ON webauthn_ceremonies(purpose, binding);
