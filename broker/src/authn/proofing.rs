//! Identity proofing with the signature certificate: the basic four (with their
//! substitute-character maps) become the account's verified claims, with evidence.

use crate::pki::{Basic4, ValidatedCert};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The verified claims of an account. The My Number is not here: JPKI certificates do not
/// carry it and the broker never reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityClaims {
    /// Family and given name separated by U+3000, as in the certificate.
    pub name: String,
    /// One digit per character of `name`: `1` where a substitute glyph stands for a character
    /// outside JIS X 0208.
    pub name_substituted: String,
    /// ISO 8601 date.
    pub birthdate: String,
    /// Era digit of the certificate's date (1 明治 … 5 令和, 0 unknown).
    pub birthdate_era: u8,
    /// `1` male, `2` female, `3` not stated (the certificate's code).
    pub gender_code: String,
    pub address: String,
    pub address_substituted: String,
}

impl From<&Basic4> for IdentityClaims {
    fn from(b: &Basic4) -> Self {
        IdentityClaims {
            name: b.name.clone(),
            name_substituted: b.name_substituted.clone(),
            birthdate: b.birthdate.clone(),
            birthdate_era: b.birthdate_era,
            gender_code: b.gender.clone(),
            address: b.address.clone(),
            address_substituted: b.address_substituted.clone(),
        }
    }
}

impl IdentityClaims {
    /// OpenID Connect `gender`: `male`, `female`, or `not_stated` (a value OIDC allows when
    /// neither applies).
    pub fn gender(&self) -> &'static str {
        match self.gender_code.as_str() {
            "1" => "male",
            "2" => "female",
            _ => "not_stated",
        }
    }
}

/// Evidence of the verification (OpenID Connect for Identity Assurance, `electronic_signature`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofingEvidence {
    #[serde(rename = "type")]
    pub kind: String,
    pub signature_type: String,
    /// Issuer DN of the signature certificate.
    pub issuer: String,
    /// Serial of the signature certificate (hex).
    pub serial_number: String,
    /// When the signature over the broker's challenge was made (RFC 3339).
    pub created_at: String,
}

impl ProofingEvidence {
    pub fn of(cert: &ValidatedCert, at: OffsetDateTime) -> ProofingEvidence {
        ProofingEvidence {
            kind: "electronic_signature".into(),
            signature_type: "jpki_signature_certificate".into(),
            issuer: cert.issuer.clone(),
            serial_number: cert.serial_hex.clone(),
            created_at: at
                .replace_nanosecond(0)
                .unwrap_or(at)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        }
    }
}
