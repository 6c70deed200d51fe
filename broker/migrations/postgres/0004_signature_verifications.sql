-- Every signature verification made for a relying party (犯収法 record keeping): what was
-- verified (a hash of the document, never the document), the verdict and why, whose
-- certificate, for whom, when, and until when the record is kept.
CREATE TABLE signature_verifications (
    id              TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL,
    document_sha256 TEXT,
    verdict         TEXT NOT NULL,            -- valid | invalid
    reasons_json    TEXT NOT NULL,
    cert_issuer     TEXT,
    cert_serial     TEXT,
    revocation_json TEXT,
    created_at      BIGINT NOT NULL,
    retain_until    BIGINT NOT NULL
);
CREATE INDEX signature_verifications_client ON signature_verifications(client_id, created_at);
CREATE INDEX signature_verifications_retention ON signature_verifications(retain_until);
