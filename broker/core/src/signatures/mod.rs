//! Verification of documents signed with the card's signature certificate (banks' API).
//!
//! A bank sends either a CMS SignedData (RFC 5652; attached, or detached with the content given
//! separately; DER, BER, base64 or PEM — see [`decode_cms`]) or a raw card signature (RSASSA over
//! some bytes plus the certificate). [`verify`] answers whether the signature is genuine and whose
//! it is: the signer certificate validated as a JPKI *signature* certificate
//! ([`crate::pki::validate`] with [`CertKind::Signature`](crate::pki::CertKind::Signature)), with
//! its basic four. Revocation is the caller's job (it has the revocation checker and the cache).
//!
//! [`sign`] makes a CMS SignedData with a virtual card, as a phone app would: the signed
//! attributes are built here and signed by the card (COMPUTE DIGITAL SIGNATURE), not by a
//! software key.
//!
//! The core ([`decode_cms`], [`verify`], [`sign`]) is pure: no I/O, no clock, no async (the
//! conductor, `service::signatures`, adds revocation and records). Every failure is a [`Failure`] with a
//! stable machine-readable [`code`] and a message for humans; untrusted input never panics.

mod cms;
mod decode;
use crate::der;
mod sign;
mod verify;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_openssl;

pub use decode::decode_cms;
pub use sign::sign;
pub use verify::verify;

/// What a bank sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// CMS SignedData, attached content, or detached with the content given separately.
    Cms {
        /// DER or BER bytes (already decoded from base64/PEM by [`decode_cms`]).
        cms: Vec<u8>,
        /// The signed content of a detached CMS; must be `None` for an attached one.
        detached_content: Option<Vec<u8>>,
    },
    /// A raw card signature: RSASSA over `data` with the certificate's key.
    Raw {
        /// The signed bytes (the card signs their SHA-256 DigestInfo).
        data: Vec<u8>,
        /// The signature (256 bytes for RSA-2048).
        signature: Vec<u8>,
        /// DER of the signature certificate.
        certificate_der: Vec<u8>,
        /// Padding scheme; the hash is SHA-256.
        algorithm: RawAlgorithm,
    },
}

/// Padding scheme of a raw signature (the hash is SHA-256 in both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (what the card's COMPUTE DIGITAL SIGNATURE produces).
    RsaPkcs1Sha256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
    RsaPssSha256,
}

/// A signature that verified, and whose it is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verified {
    /// The signer certificate, validated as a JPKI signature certificate at `now`.
    pub signer: crate::pki::ValidatedCert,
    /// From the signingTime signed attribute, if present (claimed by the signer, not a
    /// trusted time stamp).
    #[serde(with = "time::serde::rfc3339::option")]
    pub signing_time: Option<time::OffsetDateTime>,
    /// Lowercase hex SHA-256 of the signed content (document hash for the audit record).
    pub content_sha256: String,
    /// OID of eContentType, e.g. `1.2.840.113549.1.7.1` (always id-data once verified; raw
    /// signatures report id-data too).
    pub content_type: String,
    /// `rsa-pkcs1-sha256` or `rsa-pss-sha256` (`-sha384`/`-sha512` for CMS made with those
    /// digests).
    pub signature_algorithm: String,
    /// True when the content was not inside the signature: a detached CMS, or a raw signature.
    pub detached: bool,
}

/// Why a signature was not accepted (or could not be made).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Failure {
    /// One of the constants in [`code`].
    pub code: &'static str,
    /// What exactly was wrong, for humans (and the audit record).
    pub message: String,
}

impl Failure {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// The stable values of [`Failure::code`].
pub mod code {
    /// Not DER/BER/base64/PEM, truncated, garbage, not a SignedData, broken signed attributes.
    pub const MALFORMED: &str = "malformed";
    /// A digest other than SHA-256/384/512, a signature algorithm other than RSA PKCS#1 v1.5 or
    /// PSS (or PSS parameters other than MGF1 with the same hash and a digest-length or maximal
    /// salt), more than one signer, or no signer.
    pub const UNSUPPORTED: &str = "unsupported";
    /// A detached CMS without its content.
    pub const CONTENT_MISSING: &str = "content_missing";
    /// An attached CMS with content given too.
    pub const CONTENT_CONFLICT: &str = "content_conflict";
    /// The contentType signed attribute differs from eContentType, or eContentType is not
    /// id-data.
    pub const WRONG_CONTENT_TYPE: &str = "wrong_content_type";
    /// The messageDigest signed attribute is not the digest of the content (tampered content).
    pub const DIGEST_MISMATCH: &str = "digest_mismatch";
    /// The signature does not verify with the signer certificate's key.
    pub const BAD_SIGNATURE: &str = "bad_signature";
    /// The certificate the SignerInfo names is not in the CMS.
    pub const NO_CERTIFICATE: &str = "no_certificate";
    /// The signer certificate fails JPKI validation (the message is the `PkiError` text).
    pub const CERTIFICATE: &str = "certificate";
    /// The signer certificate was not valid at the signingTime the signature claims.
    pub const CERTIFICATE_NOT_VALID_AT_SIGNING_TIME: &str = "certificate_not_valid_at_signing_time";
    /// A user-authentication certificate where a signature certificate is required.
    pub const WRONG_CERTIFICATE_KIND: &str = "wrong_certificate_kind";
    /// [`super::sign`] only: the card refused (wrong PIN, locked, no signature key).
    pub const CARD: &str = "card";
}
