//! Authentication ceremonies and the facts they establish.
//!
//! The facts are what assurance levels are computed from; they are stored with the SSO
//! session and never contain personal data.

use serde::{Deserialize, Serialize};

pub mod card;
pub mod ceremony;
pub mod proofing;

/// The revocation status of the certificate used, as far as the broker could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationFact {
    /// An OCSP response or CRL, verified and fresh, says good.
    Good,
    /// No answer could be had and the policy allowed the login anyway (fail-open).
    Unconfirmed,
}

/// What is known about how a person authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthFacts {
    /// `jpki_user_auth`, `jpki_signature`, later `passkey`.
    pub method: String,
    /// RFC 8176 authentication method references.
    pub amr: Vec<String>,
    /// The key lives in hardware (the card's chip).
    pub hardware_key: bool,
    /// The holder proved a PIN (or biometric user verification).
    pub user_verified: bool,
    /// Issuer DN and serial of the certificate used, when a certificate was used.
    pub cert_issuer: Option<String>,
    pub cert_serial: Option<String>,
    /// What the broker knows of the certificate's revocation status.
    pub revocation: RevocationFact,
    /// The account holds current verified claims (proofed with the signature certificate,
    /// not stale) at the time of this authentication.
    #[serde(default)]
    pub proofed: bool,
    /// When the authentication happened (unix seconds).
    pub auth_time: i64,
}

impl AuthFacts {
    /// Facts of a login with the card's user-authentication certificate and its PIN.
    pub fn jpki_user_auth(
        issuer: &str,
        serial: &str,
        revocation: RevocationFact,
        auth_time: i64,
    ) -> AuthFacts {
        AuthFacts {
            method: "jpki_user_auth".into(),
            amr: ["sc", "hwk", "pin", "mfa"].map(String::from).to_vec(),
            hardware_key: true,
            user_verified: true,
            cert_issuer: Some(issuer.to_string()),
            cert_serial: Some(serial.to_string()),
            revocation,
            proofed: false,
            auth_time,
        }
    }
}
