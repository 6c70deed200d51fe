//! JPKI certificates: profile, chain validation, demo PKI.
//!
//! JPKI (the My Number card's public-key infrastructure) has two single-level hierarchies: a
//! self-signed user-authentication CA and a self-signed digital-signature CA, each renewed in
//! generations that share one DN. This module implements the small RFC 5280 subset those chains
//! need ([`validate`]), parses the "basic four" personal data of signature certificates
//! ([`Basic4`]), verifies card signatures ([`verify_rsa_pkcs1_sha256`]), and generates a demo PKI
//! with the same profile ([`demo`]). The revocation codecs check OCSP responses ([`ocsp`]) and
//! CRLs ([`crl`]) against the CA that issued a certificate, and make both for the demo PKI.
//! Everything here is pure except the explicit load/save functions in `demo.rs`.

mod basic4;
pub mod crl;
pub mod demo;
use crate::der;
pub mod ocsp;
pub mod status;
mod trust;
mod validate;
mod verify;

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;

pub use basic4::Basic4;
pub use status::{CertStatus, RevocationReason};
pub use trust::{TrustAnchor, TrustStore};
pub use validate::{CertInfo, ValidatedCert, inspect, issuing_anchor, validate};
pub use verify::{sha256_digest_info, verify_rsa_pkcs1_sha256};

use std::fmt;

/// Which of the card's two certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertKind {
    /// 利用者証明用電子証明書: user authentication (log in).
    UserAuth,
    /// 署名用電子証明書: digital signature (identity proofing, document signatures).
    Signature,
}

impl CertKind {
    /// The other kind.
    pub fn other(self) -> CertKind {
        match self {
            CertKind::UserAuth => CertKind::Signature,
            CertKind::Signature => CertKind::UserAuth,
        }
    }

    /// The certificatePolicies OIDs that identify this kind.
    pub fn policy_oids(self) -> &'static [&'static str] {
        match self {
            CertKind::UserAuth => &[oids::USER_AUTH_POLICY],
            CertKind::Signature => &[oids::SIGNATURE_POLICY, oids::SIGNATURE_POLICY_TEST],
        }
    }
}

impl fmt::Display for CertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertKind::UserAuth => "user-authentication (利用者証明用)",
            CertKind::Signature => "digital-signature (署名用)",
        })
    }
}

/// Object identifiers of the JPKI profile, as dotted strings.
pub mod oids {
    /// certificatePolicies of the user-authentication certificate.
    pub const USER_AUTH_POLICY: &str = "1.2.392.200149.8.5.1.3.30";
    /// certificatePolicies of the digital-signature certificate.
    pub const SIGNATURE_POLICY: &str = "1.2.392.200149.8.5.1.1.20";
    /// certificatePolicies of digital-signature certificates on J-LIS test cards (unverified).
    pub const SIGNATURE_POLICY_TEST: &str = "1.2.392.200149.8.5.1.0.20";
    /// otherName: 氏名 (family and given name separated by U+3000).
    pub const BASIC4_NAME: &str = "1.2.392.200149.8.5.5.1";
    /// otherName: substituted-character map of the name (one digit per character).
    pub const BASIC4_NAME_SUBSTITUTED: &str = "1.2.392.200149.8.5.5.2";
    /// otherName: gender, `1` male, `2` female, `3` not stated.
    pub const BASIC4_GENDER: &str = "1.2.392.200149.8.5.5.3";
    /// otherName: date of birth `EYYYYMMDD` (E = era digit).
    pub const BASIC4_BIRTHDATE: &str = "1.2.392.200149.8.5.5.4";
    /// otherName: 住所 address, from the prefecture down.
    pub const BASIC4_ADDRESS: &str = "1.2.392.200149.8.5.5.5";
    /// otherName: substituted-character map of the address.
    pub const BASIC4_ADDRESS_SUBSTITUTED: &str = "1.2.392.200149.8.5.5.6";
}

/// Everything that can be wrong with a certificate, a trust anchor, a signature or the demo PKI.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PkiError {
    /// The bytes are not a well-formed X.509 v3 certificate (or an extension we rely on is broken).
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// The certificate is signed with an algorithm other than sha256WithRSA or ECDSA P-256/SHA-256.
    #[error("unsupported certificate signature algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// No configured trust anchor (of any kind) issued this certificate.
    #[error(
        "certificate issuer `{issuer}` is not a trusted JPKI CA (no configured anchor's key verifies it)"
    )]
    UntrustedIssuer {
        /// The certificate's issuer DN.
        issuer: String,
    },
    /// The signature does not verify with the key it must verify with (certificate tampered with,
    /// or a card signature over other data / by another key).
    #[error("signature does not verify")]
    BadSignature,
    /// The certificate's validity starts after the validation instant.
    #[error("certificate is not yet valid (notBefore {not_before})")]
    NotYetValid {
        /// notBefore, RFC 3339.
        not_before: String,
    },
    /// The certificate expired before the validation instant.
    #[error("certificate has expired (notAfter {not_after})")]
    Expired {
        /// notAfter, RFC 3339.
        not_after: String,
    },
    /// keyUsage is missing or lacks a bit the certificate kind requires.
    #[error("key usage not acceptable: {0}")]
    KeyUsage(String),
    /// certificatePolicies does not contain the policy OID of the expected kind.
    #[error("certificate policy is not a JPKI policy of the expected kind (found: [{}])", found.join(", "))]
    Policy {
        /// The policy OIDs the certificate carries.
        found: Vec<String>,
    },
    /// The certificate is the other one of the card's two certificates.
    #[error("expected a {expected} certificate but got a {found} certificate")]
    WrongKind {
        /// The kind the caller asked for.
        expected: CertKind,
        /// The kind the certificate is.
        found: CertKind,
    },
    /// The subject key is not RSA or is shorter than 2048 bits.
    #[error("unacceptable subject key: {0}")]
    WeakKey(String),
    /// An end-entity certificate has basicConstraints cA=TRUE.
    #[error("certificate is a CA certificate (basicConstraints cA=TRUE), not a card certificate")]
    IsCa,
    /// A critical extension this validator does not understand.
    #[error("unsupported critical extension {0}")]
    UnsupportedCriticalExtension(String),
    /// The basic-four personal data in subjectAltName is incomplete or malformed.
    #[error("basic-four data in subjectAltName: {0}")]
    Basic4(String),
    /// A public key given for signature verification cannot be used.
    #[error("bad public key: {0}")]
    BadPublicKey(String),
    /// A trust anchor was rejected when building the trust store.
    #[error("bad trust anchor: {0}")]
    BadAnchor(String),
    /// The demo PKI could not issue or load something.
    #[error("demo PKI: {0}")]
    Demo(String),
    /// A file of the demo PKI could not be read or written.
    #[error("demo PKI I/O: {0}")]
    Io(String),
}
