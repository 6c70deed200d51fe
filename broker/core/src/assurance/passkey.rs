//! Passkeys and levels: who may add a passkey, whether a passkey login gives what a request
//! asks, and whether the login page should offer one. What a passkey proves is
//! `authn::passkey`; here it meets the policy's levels.

use crate::assurance::{self, Requirement};
use crate::authn::AuthFacts;
use crate::authn::passkey::PasskeyError;
use crate::registry::policy::Policy;

/// May the session with `facts` (of `account`, proofed or not) enrol a passkey?
pub fn may_enrol(
    policy: &Policy,
    facts: &AuthFacts,
    proofed: bool,
    now: i64,
) -> Result<(), PasskeyError> {
    if !policy.passkeys.enabled {
        return Err(PasskeyError::Disabled);
    }
    let level = policy.enrol_level().ok_or(PasskeyError::Internal)?;
    let by_card = facts.method.starts_with("jpki_")
        && facts.cert_issuer.is_some()
        && facts.cert_serial.is_some()
        && facts.cert_anchor.is_some();
    if !by_card || !assurance::meets_at(policy, facts, level, now) {
        return Err(PasskeyError::BelowEnrolLevel {
            level: level.acr.clone(),
        });
    }
    if !proofed {
        return Err(PasskeyError::NotProofed);
    }
    Ok(())
}

/// Does a passkey login with `facts` give what the request asks: a level it accepts and, when
/// it wants verified claims, current ones? If not, the login goes on with the card.
pub fn fits_request(
    policy: &Policy,
    required: &Requirement,
    wants_identity: bool,
    facts: &AuthFacts,
    now: i64,
) -> Result<(), PasskeyError> {
    if wants_identity && !facts.proofed {
        return Err(PasskeyError::NeedsCard(
            "your identity confirmed again with the card".into(),
        ));
    }
    if required.select(policy, facts, now).is_err() {
        let want = required
            .acceptable(policy)
            .last()
            .map(|l| l.acr.clone())
            .unwrap_or_default();
        return Err(PasskeyError::NeedsCard(format!("level {want}")));
    }
    Ok(())
}

/// Could a passkey give what the request asks (show the passkey option on its login page)?
/// The levels looked at are the essential ones, else the first `acr_values` (what a step-up
/// is for), else every level the RP accepts; a passkey may suffice when one of them names no
/// methods or names `passkey`, and asks for no key its issuer vouches for as hardware.
pub fn may_suffice(policy: &Policy, required: &Requirement) -> bool {
    let preferred = required
        .voluntary
        .first()
        .and_then(|a| policy.levels.iter().find(|l| &l.acr == a));
    let levels = match preferred {
        Some(p) if required.essential.is_empty() => vec![p],
        _ => required.acceptable(policy),
    };
    policy.passkeys.enabled
        && levels.iter().any(|l| {
            (l.requires.methods.is_empty() || l.requires.methods.iter().any(|m| m == "passkey"))
                && !l.requires.hardware_key
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::RevocationFact;
    use crate::authn::passkey::fixtures::*;
    use crate::authn::passkey::{Assertion, facts};

    fn card_facts() -> AuthFacts {
        let mut f = AuthFacts::jpki_user_auth("CN=CA", "0a", RevocationFact::Good, 100);
        f.cert_anchor = Some("auth".into());
        f
    }

    #[test]
    fn only_a_card_session_at_the_enrol_level_on_a_proofed_account_enrols() {
        let p = policy();
        assert_eq!(may_enrol(&p, &card_facts(), true, 100), Ok(()));
        assert_eq!(
            may_enrol(&p, &card_facts(), false, 100),
            Err(PasskeyError::NotProofed)
        );
        let mut unconfirmed = card_facts();
        unconfirmed.revocation = RevocationFact::Unconfirmed;
        assert_eq!(
            may_enrol(&p, &unconfirmed, true, 100),
            Err(PasskeyError::BelowEnrolLevel {
                level: "aal3".into()
            })
        );
        // A passkey session never enrols another passkey, whatever its level.
        let pk = facts(
            "pk",
            &UV_BOUND,
            &card(1000),
            RevocationFact::Good,
            true,
            100,
        );
        let mut lenient = p.clone();
        lenient.passkeys.enrol_level = "aal1".into();
        assert!(matches!(
            may_enrol(&lenient, &pk, true, 100),
            Err(PasskeyError::BelowEnrolLevel { .. })
        ));
        assert_eq!(may_enrol(&lenient, &card_facts(), true, 100), Ok(()));
        let mut off = p.clone();
        off.passkeys.enabled = false;
        assert_eq!(
            may_enrol(&off, &card_facts(), true, 100),
            Err(PasskeyError::Disabled)
        );
    }

    #[test]
    fn a_uv_passkey_reaches_aal2_and_never_aal3() {
        let p = policy();
        for a in [UV_SYNCED, UV_BOUND] {
            let f = facts("pk", &a, &card(1000), RevocationFact::Good, true, 100);
            assert_eq!(assurance::choose_acr(&p, &f, &[]).unwrap().acr, "aal2");
            assert_eq!(
                assurance::choose_acr(&p, &f, &["aal3".into()]).unwrap().acr,
                "aal2"
            );
        }
        let no_uv = Assertion {
            user_verified: false,
            ..UV_BOUND
        };
        let f = facts("pk", &no_uv, &card(1000), RevocationFact::Good, true, 100);
        assert_eq!(assurance::choose_acr(&p, &f, &[]).unwrap().acr, "aal1");
    }

    #[test]
    fn device_bound_and_phishing_resistant_requirements_grade_passkeys() {
        let mut p = policy();
        p.levels[1].requires.device_bound = true;
        let synced = facts(
            "pk",
            &UV_SYNCED,
            &card(1000),
            RevocationFact::Good,
            true,
            100,
        );
        let bound = facts(
            "pk",
            &UV_BOUND,
            &card(1000),
            RevocationFact::Good,
            true,
            100,
        );
        assert_eq!(assurance::choose_acr(&p, &synced, &[]).unwrap().acr, "aal1");
        assert_eq!(assurance::choose_acr(&p, &bound, &[]).unwrap().acr, "aal2");
        p.levels[1].requires.phishing_resistant = true;
        assert_eq!(assurance::choose_acr(&p, &bound, &[]).unwrap().acr, "aal2");
        // The card's link can be relayed: a card login is not phishing-resistant.
        assert!(!assurance::meets(&p, &card_facts(), &p.levels[1]));
    }

    #[test]
    fn an_aal3_request_is_not_met_by_a_passkey_and_says_to_use_the_card() {
        let p = policy();
        let f = facts(
            "pk",
            &UV_BOUND,
            &card(1000),
            RevocationFact::Good,
            true,
            100,
        );
        let aal2 = assurance::Requirement::of(&p, Some("aal2"), None, &[], None);
        assert_eq!(fits_request(&p, &aal2, true, &f, 100), Ok(()));
        assert!(may_suffice(&p, &aal2));
        let aal3 = assurance::Requirement::of(&p, Some("aal3"), None, &[], None);
        assert_eq!(
            fits_request(&p, &aal3, false, &f, 100),
            Err(PasskeyError::NeedsCard("level aal3".into()))
        );
        assert!(!may_suffice(&p, &aal3));
        // Asked for aal3 by acr_values (a step-up): the card only, though aal2 would do.
        let prefers_aal3 = assurance::Requirement::of(&p, None, None, &["aal3".into()], None);
        assert!(!may_suffice(&p, &prefers_aal3));
        let prefers_aal2 = assurance::Requirement::of(&p, None, None, &["aal2".into()], None);
        assert!(may_suffice(&p, &prefers_aal2));
        assert!(may_suffice(
            &p,
            &assurance::Requirement::of(&p, None, None, &[], None)
        ));
        let unproofed = AuthFacts {
            proofed: false,
            ..f.clone()
        };
        assert!(matches!(
            fits_request(&p, &aal2, true, &unproofed, 100),
            Err(PasskeyError::NeedsCard(_))
        ));
        assert_eq!(fits_request(&p, &aal2, false, &unproofed, 100), Ok(()));
    }

    #[test]
    fn a_kept_passkey_of_a_gone_card_reaches_no_confirmed_level() {
        let mut p = policy();
        let f = facts(
            "pk",
            &UV_BOUND,
            &card(1000),
            RevocationFact::CardRevoked,
            true,
            1,
        );
        assert_eq!(assurance::choose_acr(&p, &f, &[]).unwrap().acr, "aal2");
        p.levels[1].requires.revocation_confirmed = true;
        assert_eq!(assurance::choose_acr(&p, &f, &[]).unwrap().acr, "aal1");
    }
}
