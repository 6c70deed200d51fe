//! Authentication ceremonies and the facts they establish.
//!
//! The facts are what assurance levels are computed from; they are stored with the SSO
//! session and never contain personal data.

use serde::{Deserialize, Serialize};

pub mod card;
pub mod ceremony;
pub mod passkey;
pub mod proofing;

/// The revocation status of the certificate used, as far as the broker could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationFact {
    /// An OCSP response or CRL, verified and fresh, says good.
    Good,
    /// No answer could be had and the policy allowed the login anyway (fail-open).
    Unconfirmed,
    /// The card behind a passkey is revoked, and the policy keeps its passkeys (`[passkeys]
    /// card_revoked = "keep"`): no level that asks for a confirmed status is reached.
    CardRevoked,
    /// The card behind a passkey has expired (and no renewed card has taken its place), and
    /// the policy keeps its passkeys: as `CardRevoked`.
    CardExpired,
}

/// What is known about how a person authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthFacts {
    /// `jpki_user_auth`, `jpki_signature`, `passkey`.
    pub method: String,
    /// RFC 8176 authentication method references.
    pub amr: Vec<String>,
    /// The key lives in hardware, as its issuer vouches (the card's chip: J-LIS certifies only
    /// keys made in it). A passkey never has it: the broker asks for no attestation.
    pub hardware_key: bool,
    /// The key cannot leave the device it was made in: the card's chip, or a passkey whose
    /// authenticator says it is not backup-eligible (BE=0, signed with the assertion; without
    /// attestation this is the authenticator's word).
    #[serde(default)]
    pub device_bound: bool,
    /// The browser bound the answer to the broker's origin (WebAuthn): a look-alike site
    /// cannot relay it. The card's helper link can be relayed, so a card login is not.
    #[serde(default)]
    pub phishing_resistant: bool,
    /// The holder proved a PIN (or biometric user verification).
    pub user_verified: bool,
    /// Issuer DN and serial of the certificate used, when a certificate was used.
    /// For a passkey: the card certificate behind it.
    pub cert_issuer: Option<String>,
    pub cert_serial: Option<String>,
    /// The trust anchor (label) that issued that certificate, and its notAfter.
    #[serde(default)]
    pub cert_anchor: Option<String>,
    #[serde(default)]
    pub cert_not_after: Option<i64>,
    /// The passkey used (the broker's id of it), for a passkey login.
    #[serde(default)]
    pub passkey: Option<String>,
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
            device_bound: true,
            phishing_resistant: false,
            user_verified: true,
            cert_issuer: Some(issuer.to_string()),
            cert_serial: Some(serial.to_string()),
            cert_anchor: None,
            cert_not_after: None,
            passkey: None,
            revocation,
            proofed: false,
            auth_time,
        }
    }
}
