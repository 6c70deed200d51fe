-- Identity proofing with the signature certificate.

-- The stage a login transaction is at: the user-authentication certificate, then (when
-- proofing is needed) the signature certificate. `pending_json` holds what stage one
-- established until stage two completes, so nothing is linked or created half-way.
ALTER TABLE transactions ADD COLUMN stage TEXT NOT NULL DEFAULT 'user_auth';
ALTER TABLE transactions ADD COLUMN pending_json TEXT;

-- An account's verified claims (the basic four with their substitute-character maps) and the
-- evidence they rest on. One row per account: proofing again replaces it.
CREATE TABLE verified_claims (
    account_id    TEXT PRIMARY KEY REFERENCES accounts(id),
    claims_json   TEXT NOT NULL,
    evidence_json TEXT NOT NULL,
    verified_at   BIGINT NOT NULL,
    sign_issuer   TEXT NOT NULL,
    sign_serial   TEXT NOT NULL,
    -- Set when the signature certificate was revoked (e.g. affiliationChanged: the person's
    -- basic information changed): the claims are not released until the person proofs again.
    stale_since   BIGINT,
    stale_reason  TEXT
);

-- The `claims` request parameter of the authorization a grant came from (for userinfo).
ALTER TABLE grants ADD COLUMN claims_json TEXT;
