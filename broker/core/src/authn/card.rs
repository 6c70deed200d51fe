//! The card-helper ceremony: the broker issues a challenge bound to its issuer, the
//! transaction and the relying party; the card signs it with the user-authentication key; the
//! broker checks the certificate and the signature. Protocol: docs/card-helper-protocol.md.

use crate::pki::{self, CertKind, PkiError, TrustStore, ValidatedCert};
use time::OffsetDateTime;

/// Version tag at the head of every challenge message.
pub const CHALLENGE_TAG: &str = "jpki-broker-login-v1";

/// The exact bytes the card signs. Every field that binds the signature is in it, one per line,
/// so a signature for one broker, transaction, relying party or purpose is useless for another.
/// `purpose` is `login` (user-authentication key) or `proofing` (signature key).
pub fn challenge_message(c: &IssuedChallenge<'_>) -> Vec<u8> {
    let purpose = match c.kind {
        CertKind::UserAuth => "login",
        CertKind::Signature => "proofing",
    };
    format!(
        "{CHALLENGE_TAG}\nissuer={}\ntransaction={}\nclient_id={}\npurpose={purpose}\nnonce={}\nexpires_at={}\n",
        c.issuer, c.transaction, c.client_id, c.nonce, c.expires_at
    )
    .into_bytes()
}

/// Why a card response was refused. Each names what was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CardLoginError {
    /// No such transaction (or the helper link is wrong).
    #[error("unknown or finished login transaction")]
    UnknownTransaction,
    /// The challenge's lifetime has passed.
    #[error("the challenge expired; start the login again")]
    ChallengeExpired,
    /// The challenge was answered before.
    #[error("the challenge was already used")]
    ChallengeUsed,
    /// The request body is not what the protocol says.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The certificate failed validation.
    #[error("certificate rejected: {0}")]
    Certificate(PkiError),
    /// The signature does not verify over this challenge with the certificate's key.
    #[error("the signature does not match this challenge and certificate")]
    BadSignature,
    /// The certificate is revoked (reason-aware message).
    #[error("the certificate is revoked ({}): {}", reason.map_or("unspecified", |r| r.as_str()), crate::pki::RevocationReason::meaning(*reason))]
    Revoked {
        reason: Option<crate::pki::RevocationReason>,
    },
    /// The revocation responder does not know the certificate.
    #[error("the revocation responder does not know this certificate")]
    RevocationUnknown,
    /// No revocation answer could be had and the policy does not allow logging in without one.
    /// The text says what failed (no answer from the revocation sources, or the policy), never
    /// a responder URL or file path.
    #[error("cannot confirm that the certificate is not revoked ({0}); try again later")]
    RevocationUnavailable(&'static str),
    /// The signature certificate carries no basic information (not a JPKI signature certificate).
    #[error(
        "the signature certificate carries no basic information (name, birth date, gender, address)"
    )]
    NoBasicInformation,
    /// The two certificates of a proofing may not be linked (see
    /// [`crate::authn::proofing::decide_link`]); nothing was stored.
    #[error("{0}")]
    LinkRefused(crate::authn::proofing::LinkRefusal),
    /// A certificate was linked to another account at the same moment by another login;
    /// nothing was stored and the same answer may be posted again.
    #[error("another login linked this card's certificate at the same moment; try again")]
    LinkConflict,
    /// The broker failed (database); the detail is in its log.
    #[error("internal error")]
    Internal,
    /// The broker's database is briefly unavailable; the same response may be posted again.
    #[error("the broker is briefly unavailable; try again in a moment")]
    Unavailable,
}

/// What the helper posts back.
#[derive(Debug, Clone)]
pub struct CardResponse {
    pub certificate_der: Vec<u8>,
    pub signature: Vec<u8>,
}

/// The state of the challenge as stored.
#[derive(Debug, Clone)]
pub struct IssuedChallenge<'a> {
    /// Which certificate (and key) the challenge asks for.
    pub kind: CertKind,
    pub issuer: &'a str,
    pub transaction: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub expires_at: i64,
    pub used: bool,
}

/// Check a card response against the issued challenge at `now`: fresh and unused, the
/// certificate a valid JPKI certificate of the challenge's kind, the signature over exactly
/// this challenge. Pure: the caller marks the challenge used atomically afterwards.
pub fn verify_response(
    challenge: &IssuedChallenge<'_>,
    response: &CardResponse,
    trust: &TrustStore,
    now: OffsetDateTime,
) -> Result<ValidatedCert, CardLoginError> {
    if challenge.used {
        return Err(CardLoginError::ChallengeUsed);
    }
    if now.unix_timestamp() > challenge.expires_at {
        return Err(CardLoginError::ChallengeExpired);
    }
    let cert = pki::validate(&response.certificate_der, trust, challenge.kind, now)
        .map_err(CardLoginError::Certificate)?;
    let msg = challenge_message(challenge);
    pki::verify_rsa_pkcs1_sha256(&cert.public_key_pkcs1, &msg, &response.signature)
        .map_err(|_| CardLoginError::BadSignature)?;
    Ok(cert)
}
