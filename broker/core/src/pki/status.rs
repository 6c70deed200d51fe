//! Revocation status as the codecs report it (shared by OCSP, CRL and the checker).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// RFC 5280 §5.3.1 CRLReason (also OCSP's revocationReason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    /// On a JPKI signature certificate: the holder's basic information (name, address, …)
    /// changed — not a compromise.
    AffiliationChanged,
    /// Renewed: a newer certificate replaces this one.
    Superseded,
    CessationOfOperation,
    CertificateHold,
    RemoveFromCrl,
    PrivilegeWithdrawn,
    AaCompromise,
}

impl RevocationReason {
    /// From the RFC 5280 code (7 is unused).
    pub fn from_code(code: u8) -> Option<RevocationReason> {
        use RevocationReason::*;
        Some(match code {
            0 => Unspecified,
            1 => KeyCompromise,
            2 => CaCompromise,
            3 => AffiliationChanged,
            4 => Superseded,
            5 => CessationOfOperation,
            6 => CertificateHold,
            8 => RemoveFromCrl,
            9 => PrivilegeWithdrawn,
            10 => AaCompromise,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        use RevocationReason::*;
        match self {
            Unspecified => 0,
            KeyCompromise => 1,
            CaCompromise => 2,
            AffiliationChanged => 3,
            Superseded => 4,
            CessationOfOperation => 5,
            CertificateHold => 6,
            RemoveFromCrl => 8,
            PrivilegeWithdrawn => 9,
            AaCompromise => 10,
        }
    }

    /// The RFC 5280 name (`keyCompromise`, …).
    pub fn as_str(self) -> &'static str {
        use RevocationReason::*;
        match self {
            Unspecified => "unspecified",
            KeyCompromise => "keyCompromise",
            CaCompromise => "cACompromise",
            AffiliationChanged => "affiliationChanged",
            Superseded => "superseded",
            CessationOfOperation => "cessationOfOperation",
            CertificateHold => "certificateHold",
            RemoveFromCrl => "removeFromCRL",
            PrivilegeWithdrawn => "privilegeWithdrawn",
            AaCompromise => "aACompromise",
        }
    }

    /// What a revocation with `reason` means, for a person (reason-aware: on a JPKI signature
    /// certificate `affiliationChanged` is a change of name or address, not a compromise).
    pub fn meaning(reason: Option<RevocationReason>) -> &'static str {
        match reason {
            Some(RevocationReason::AffiliationChanged) => {
                "the person's basic information (name, address, …) changed"
            }
            Some(RevocationReason::Superseded) => "the card was renewed",
            Some(RevocationReason::KeyCompromise) => {
                "the card's key is compromised (card lost or stolen)"
            }
            Some(RevocationReason::CessationOfOperation) => "the card was returned or cancelled",
            Some(RevocationReason::CertificateHold) => "the certificate is suspended",
            _ => "the certificate was revoked",
        }
    }

    /// Parse the RFC 5280 name, case-insensitively.
    pub fn parse(s: &str) -> Option<RevocationReason> {
        (0..=10)
            .filter_map(Self::from_code)
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
    }
}

/// The status of one certificate at one time, from one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CertStatus {
    Good,
    Revoked {
        #[serde(with = "time::serde::rfc3339")]
        revoked_at: OffsetDateTime,
        reason: Option<RevocationReason>,
    },
    /// The responder does not know the certificate.
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_round_trip() {
        for c in [0u8, 1, 2, 3, 4, 5, 6, 8, 9, 10] {
            let r = RevocationReason::from_code(c).unwrap();
            assert_eq!(r.code(), c);
            assert_eq!(RevocationReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(RevocationReason::from_code(7), None);
        assert_eq!(
            RevocationReason::parse("AFFILIATIONCHANGED"),
            Some(RevocationReason::AffiliationChanged)
        );
    }
}
