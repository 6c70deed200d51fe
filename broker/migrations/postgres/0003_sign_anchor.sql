-- The trust anchor (CA generation) of the signature certificate behind verified claims, so the
-- broker can re-check that certificate's revocation status (現況確認) at later logins.
ALTER TABLE verified_claims ADD COLUMN sign_anchor TEXT NOT NULL DEFAULT '';
