//! Passkeys: what a passkey may be enrolled from, which card stands behind it, and the facts a
//! passkey login establishes. The WebAuthn ceremonies themselves (signatures, origin, RP ID,
//! flags, counters) are verified by `webauthn-rs` in the conductor; this core decides over what
//! they established.
//!
//! A passkey is bound to the person the card proved: it is enrolled only from a session that a
//! card login brought to the policy's enrolment level, on a proofed account, and it records the
//! card certificate of that login. Each passkey login checks that card again (or the renewed
//! card the account has linked since): revoked or expired, the passkey is suspended or kept at
//! the levels that do not ask for a confirmed status, as `[passkeys]` says.

use super::{AuthFacts, RevocationFact};
use crate::registry::policy::{CardGone, Policy};

/// Why a passkey ceremony is refused. Each is said to the person or the page plainly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasskeyError {
    #[error("passkeys are not enabled by the policy")]
    Disabled,
    #[error("adding a passkey needs a login with the card: log in first")]
    NoSession,
    #[error("adding a passkey needs a login with the card at level {level}")]
    BelowEnrolLevel { level: String },
    #[error("adding a passkey needs an account whose identity the card proved")]
    NotProofed,
    #[error("this account already holds {max} passkeys: remove one first")]
    TooMany { max: usize },
    #[error("the passkey ceremony is unknown, finished or expired: start again")]
    UnknownCeremony,
    #[error("this passkey is not known to the broker (it may have been removed)")]
    UnknownCredential,
    #[error("this passkey is already registered")]
    AlreadyRegistered,
    #[error("this passkey is suspended: {reason}")]
    Suspended { reason: String },
    #[error("the card behind this passkey is revoked: log in with your card")]
    CardRevoked,
    #[error("the card behind this passkey has expired: log in with your renewed card")]
    CardExpired,
    #[error("the card behind this passkey could not be checked: {0}")]
    CardUnchecked(&'static str),
    /// The authenticator's answer failed WebAuthn's checks (what failed, from webauthn-rs).
    #[error("the passkey's answer was refused: {0}")]
    Refused(String),
    #[error("the passkey's signature counter went backwards: the passkey may have been copied")]
    CounterRegressed,
    /// The service asks for more than a passkey gives (a level, or an identity to be proofed
    /// again): the card is still offered.
    #[error("this service asks for {0}: use your card")]
    NeedsCard(String),
    #[error("the request is malformed: {0}")]
    Malformed(String),
    #[error("the login is not waiting for an authentication")]
    NotPending,
    #[error("internal error")]
    Internal,
    #[error("the service is temporarily unavailable")]
    Unavailable,
}

/// A card certificate, as stored with a passkey or a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardCert {
    pub anchor: String,
    pub issuer: String,
    pub serial: String,
    pub not_after: i64,
}

/// The card that took over from `enrolled`: the newest user-authentication certificate the
/// account linked later (a later notAfter) that is still valid at `now` — a renewed card.
pub fn successor<'a>(
    enrolled: &CardCert,
    linked: &'a [CardCert],
    now: i64,
) -> Option<&'a CardCert> {
    linked
        .iter()
        .filter(|c| c.not_after > now && c.not_after > enrolled.not_after)
        .max_by_key(|c| c.not_after)
}

/// What the revocation check said of the card behind a passkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardStatus {
    Good,
    /// Revoked; `superseded` when the reason is that the card was renewed.
    Revoked {
        superseded: bool,
    },
    /// The responder does not know the certificate.
    Unknown,
    /// No answer; `why` is what may be said.
    Unavailable(&'static str),
    /// Expired, no renewed card since.
    Expired,
}

/// Does the passkey pass to a renewed card? When the card that enrolled it has expired, or
/// was revoked because it was renewed (superseded) — never on another revocation (a lost or
/// stolen card suspends its passkeys, whatever card comes after it).
pub fn passes_to_successor(enrolled: &CardCert, status: Option<CardStatus>, now: i64) -> bool {
    enrolled.not_after <= now || status == Some(CardStatus::Revoked { superseded: true })
}

/// What the passkey login does with the card's status: a fact for the levels, or a refusal
/// (`Suspend`: the passkey is suspended for good on a revocation).
pub fn judge_card(policy: &Policy, status: CardStatus) -> Result<RevocationFact, PasskeyError> {
    let fail_open = !policy.revocation.fail_open_levels.is_empty();
    match status {
        CardStatus::Good => Ok(RevocationFact::Good),
        CardStatus::Revoked { .. } => match policy.passkeys.card_revoked {
            CardGone::Suspend => Err(PasskeyError::CardRevoked),
            CardGone::Keep => Ok(RevocationFact::CardRevoked),
        },
        CardStatus::Expired => match policy.passkeys.card_expired {
            CardGone::Suspend => Err(PasskeyError::CardExpired),
            CardGone::Keep => Ok(RevocationFact::CardExpired),
        },
        CardStatus::Unknown => Err(PasskeyError::CardUnchecked(
            "the revocation service does not know the card's certificate",
        )),
        CardStatus::Unavailable(_) if fail_open => Ok(RevocationFact::Unconfirmed),
        CardStatus::Unavailable(why) => Err(PasskeyError::CardUnchecked(why)),
    }
}

/// What the authenticator's signed answer said (flags of the assertion's authenticator data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assertion {
    pub user_verified: bool,
    pub backup_eligible: bool,
    pub backup_state: bool,
}

/// RFC 8176 `amr` of a passkey login: `user` (the authenticator tested presence — WebAuthn
/// always asks), `mfa` when it verified the user (a PIN or biometric on the device: possession
/// and one more factor), `hwk` when the key cannot leave the device (BE=0), `swk` when it is
/// synced (BE=1). Neither `pin` nor `fpt`/`face`: the authenticator does not say which it used.
pub fn amr(a: &Assertion) -> Vec<String> {
    let mut out = vec![if a.backup_eligible { "swk" } else { "hwk" }, "user"];
    if a.user_verified {
        out.push("mfa");
    }
    out.into_iter().map(String::from).collect()
}

/// The facts of a passkey login: what the authenticator proved, the card behind the passkey
/// and its status, and whether the account's claims are current.
pub fn facts(
    passkey_id: &str,
    a: &Assertion,
    card: &CardCert,
    revocation: RevocationFact,
    proofed: bool,
    now: i64,
) -> AuthFacts {
    AuthFacts {
        method: "passkey".into(),
        amr: amr(a),
        hardware_key: false,
        device_bound: !a.backup_eligible,
        phishing_resistant: true,
        user_verified: a.user_verified,
        cert_issuer: Some(card.issuer.clone()),
        cert_serial: Some(card.serial.clone()),
        cert_anchor: Some(card.anchor.clone()),
        cert_not_after: Some(card.not_after),
        passkey: Some(passkey_id.to_string()),
        revocation,
        proofed,
        auth_time: now,
    }
}

/// How a passkey's kind is shown on the account page.
pub fn kind(backup_eligible: bool) -> &'static str {
    if backup_eligible {
        "synced"
    } else {
        "device_bound"
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! The policy, card and authenticators the passkey tests share (here and in
    //! `assurance::passkey`).
    use super::*;
    use crate::registry::policy::{Level, Requirements};

    pub fn policy() -> Policy {
        let level = |name: &str, requires: Requirements| Level {
            name: name.into(),
            acr: name.into(),
            requires,
            max_session_age: None,
        };
        Policy {
            levels: vec![
                level("aal1", Requirements::default()),
                level(
                    "aal2",
                    Requirements {
                        user_verified: true,
                        ..Default::default()
                    },
                ),
                level(
                    "aal3",
                    Requirements {
                        methods: vec!["jpki_user_auth".into(), "jpki_signature".into()],
                        hardware_key: true,
                        user_verified: true,
                        revocation_confirmed: true,
                        ..Default::default()
                    },
                ),
            ],
            ..Default::default()
        }
    }

    pub fn card(not_after: i64) -> CardCert {
        CardCert {
            anchor: "auth".into(),
            issuer: "CN=CA".into(),
            serial: "0a".into(),
            not_after,
        }
    }

    pub const UV_SYNCED: Assertion = Assertion {
        user_verified: true,
        backup_eligible: true,
        backup_state: true,
    };
    pub const UV_BOUND: Assertion = Assertion {
        user_verified: true,
        backup_eligible: false,
        backup_state: false,
    };
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn amr_says_only_what_the_authenticator_proved() {
        assert_eq!(amr(&UV_SYNCED), ["swk", "user", "mfa"]);
        assert_eq!(amr(&UV_BOUND), ["hwk", "user", "mfa"]);
        let up_only = Assertion {
            user_verified: false,
            ..UV_BOUND
        };
        assert_eq!(amr(&up_only), ["hwk", "user"]);
        let f = facts("pk", &UV_BOUND, &card(1000), RevocationFact::Good, false, 7);
        assert!(!f.hardware_key, "no attestation, no hardware claim");
        assert!(f.device_bound && f.phishing_resistant && !f.proofed);
        assert_eq!(f.passkey.as_deref(), Some("pk"));
        assert_eq!(f.auth_time, 7);
    }

    #[test]
    fn a_renewed_card_takes_over_only_from_an_expired_or_superseded_one() {
        let enrolled = card(1000);
        let renewed = CardCert {
            serial: "0b".into(),
            not_after: 5000,
            ..card(0)
        };
        let older = CardCert {
            serial: "09".into(),
            not_after: 900,
            ..card(0)
        };
        let links = [older.clone(), renewed.clone(), enrolled.clone()];
        assert_eq!(successor(&enrolled, &links, 500), Some(&renewed));
        assert_eq!(successor(&enrolled, &[older, enrolled.clone()], 500), None);
        assert_eq!(
            successor(&enrolled, &links, 6000),
            None,
            "the renewed card expired too"
        );
        // Valid and good: the enrolling card stands. Expired, or superseded: the renewed one.
        assert!(!passes_to_successor(&enrolled, Some(CardStatus::Good), 500));
        assert!(passes_to_successor(&enrolled, None, 1000));
        assert!(passes_to_successor(
            &enrolled,
            Some(CardStatus::Revoked { superseded: true }),
            500
        ));
        // Lost or stolen (any other reason): no card takes over.
        assert!(!passes_to_successor(
            &enrolled,
            Some(CardStatus::Revoked { superseded: false }),
            500
        ));
    }

    #[test]
    fn a_card_gone_suspends_or_keeps_as_the_policy_says() {
        let mut p = policy();
        assert_eq!(judge_card(&p, CardStatus::Good), Ok(RevocationFact::Good));
        assert_eq!(
            judge_card(&p, CardStatus::Revoked { superseded: false }),
            Err(PasskeyError::CardRevoked)
        );
        assert_eq!(
            judge_card(&p, CardStatus::Expired),
            Err(PasskeyError::CardExpired)
        );
        assert!(matches!(
            judge_card(&p, CardStatus::Unavailable("down")),
            Err(PasskeyError::CardUnchecked("down"))
        ));
        p.passkeys.card_revoked = CardGone::Keep;
        p.passkeys.card_expired = CardGone::Keep;
        assert_eq!(
            judge_card(&p, CardStatus::Revoked { superseded: true }),
            Ok(RevocationFact::CardRevoked)
        );
        assert_eq!(
            judge_card(&p, CardStatus::Expired),
            Ok(RevocationFact::CardExpired)
        );
        p.revocation.fail_open_levels = vec!["aal1".into()];
        assert_eq!(
            judge_card(&p, CardStatus::Unavailable("down")),
            Ok(RevocationFact::Unconfirmed)
        );
    }
}
