//! The card login ceremony as a state machine. A login transaction is at one [`Stage`]: it
//! waits for the card's user-authentication certificate, then — when the person must be proofed
//! — for the signature certificate. Each answer, once checked (`card::verify_response`) and its
//! revocation status known ([`revocation_fact`]), leads to a [`Step`]: authenticated, or on to
//! proofing. Pure: the conductor loads what a decision needs, calls these, and writes once.
//!
//! Another method (a passkey) or channel (a device code on a TV) is another stage and another
//! transition here, not a branch in a handler.

use super::card::CardLoginError;
use super::proofing::{IdentityClaims, ProofingEvidence};
use super::{AuthFacts, RevocationFact};
use crate::pki::{CertKind, CertStatus, ValidatedCert};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What a login transaction waits for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// The card's user-authentication certificate, signed with its key (4-digit PIN).
    UserAuth,
    /// The signature certificate, signed with its key (6–16 character PIN): identity proofing,
    /// after the user authentication `PendingAuth` holds.
    Proofing(Box<PendingAuth>),
}

impl Stage {
    /// Which certificate the stage's challenge asks for.
    pub fn kind(&self) -> CertKind {
        match self {
            Stage::UserAuth => CertKind::UserAuth,
            Stage::Proofing(_) => CertKind::Signature,
        }
    }

    /// The stage's name as the helper protocol and the login page's status say it.
    pub fn name(&self) -> &'static str {
        match self {
            Stage::UserAuth => "user_auth",
            Stage::Proofing(_) => "signature",
        }
    }
}

/// What the user-authentication answer established, kept while proofing runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAuth {
    pub issuer: String,
    pub serial: String,
    /// notAfter of the user-authentication certificate (unix seconds; 0 when unknown).
    pub not_after: i64,
    pub facts: AuthFacts,
}

/// The revocation status the checker found for a certificate, as the ceremony's fact: good,
/// unconfirmed (no answer, where the policy allows logging in without one), or a refusal.
/// `status` is the checker's answer or, when none could be had, what may be said of why.
pub fn revocation_fact(
    status: Result<&CertStatus, &'static str>,
    fail_open: bool,
) -> Result<RevocationFact, CardLoginError> {
    match status {
        Ok(CertStatus::Good) => Ok(RevocationFact::Good),
        Ok(CertStatus::Revoked { reason, .. }) => Err(CardLoginError::Revoked { reason: *reason }),
        Ok(CertStatus::Unknown) => Err(CardLoginError::RevocationUnknown),
        Err(_) if fail_open => Ok(RevocationFact::Unconfirmed),
        Err(why) => Err(CardLoginError::RevocationUnavailable(why)),
    }
}

/// What the broker knows when the user-authentication certificate has answered.
pub struct UserAuthAnswer<'a> {
    pub cert: &'a ValidatedCert,
    pub revocation: RevocationFact,
    /// The account the certificate is linked to, if any.
    pub account: Option<&'a str>,
    /// That account's verified claims are current: present, not stale, and their signature
    /// certificate not revoked.
    pub claims_current: bool,
    pub now: i64,
}

/// What the login being made asks of the authentication (from the request, the relying party
/// and the policy; the conductor fills it).
pub struct Needs<'a> {
    /// The policy lets a certificate new to the broker make an account without proofing.
    pub allow_unproofed: bool,
    /// The request asks for personal data.
    pub identity: bool,
    /// Would a session with these facts reach any level of the policy? (Not when the
    /// revocation status is unconfirmed and no fail-open level fits.)
    pub grantable: &'a (dyn Fn(&AuthFacts) -> bool + Sync),
    /// Does the requested level need a proofed person with these facts?
    pub level_needs_proofing: &'a (dyn Fn(&AuthFacts) -> bool + Sync),
}

/// Where an answer leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The login is authenticated with `facts` (a certificate new to the broker gets an account
    /// of its own, unproofed).
    Authenticated { facts: AuthFacts },
    /// The person must be proofed first: the ceremony moves to [`Stage::Proofing`].
    Proof(PendingAuth),
}

/// The user-authentication certificate answered (checked, its revocation status known).
pub fn on_user_auth(
    stage: &Stage,
    a: &UserAuthAnswer<'_>,
    needs: &Needs<'_>,
) -> Result<Step, CardLoginError> {
    if *stage != Stage::UserAuth {
        // The challenge names its certificate kind, so this is a helper out of step.
        return Err(CardLoginError::ChallengeUsed);
    }
    let mut facts =
        AuthFacts::jpki_user_auth(&a.cert.issuer, &a.cert.serial_hex, a.revocation, a.now);
    facts.cert_anchor = Some(a.cert.anchor_label.clone());
    facts.cert_not_after = Some(a.cert.not_after.unix_timestamp());
    facts.proofed = a.account.is_some() && a.claims_current;
    if !(needs.grantable)(&facts) {
        // Fail-open was allowed, but no fail-open level fits these facts.
        return Err(CardLoginError::RevocationUnavailable(
            "no level of the policy may be granted without it",
        ));
    }
    // Proofing is asked for when a new account would be made without it (unless the policy
    // allows unproofed accounts), or when the request needs it and the claims are not current.
    let new_unproofed = a.account.is_none() && !needs.allow_unproofed;
    if new_unproofed || (!facts.proofed && (needs.identity || (needs.level_needs_proofing)(&facts)))
    {
        return Ok(Step::Proof(PendingAuth {
            issuer: a.cert.issuer.clone(),
            serial: a.cert.serial_hex.clone(),
            not_after: a.cert.not_after.unix_timestamp(),
            facts,
        }));
    }
    Ok(Step::Authenticated { facts })
}

/// What identity proofing established: the session's facts, and the verified claims with their
/// evidence. Which account they go to is `proofing::decide_link`'s to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proofed {
    pub facts: AuthFacts,
    pub claims: IdentityClaims,
    pub evidence: ProofingEvidence,
}

/// The signature certificate answered (checked as a signature certificate, its revocation
/// status known) at `now`.
pub fn on_signature(
    stage: &Stage,
    cert: &ValidatedCert,
    revocation: RevocationFact,
    now: OffsetDateTime,
) -> Result<Proofed, CardLoginError> {
    let Stage::Proofing(pending) = stage else {
        return Err(CardLoginError::ChallengeUsed);
    };
    let basic4 = cert
        .basic4
        .as_ref()
        .ok_or(CardLoginError::NoBasicInformation)?;
    let mut facts = pending.facts.clone();
    facts.proofed = true;
    // The weaker of the two certificates' revocation answers stands.
    if revocation == RevocationFact::Unconfirmed {
        facts.revocation = RevocationFact::Unconfirmed;
    }
    Ok(Proofed {
        facts,
        claims: IdentityClaims::from(basic4),
        evidence: ProofingEvidence::of(cert, now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::RevocationReason;
    use crate::pki::test_support::{demo_card, demo_pki, fixture_now, pem_to_der};

    fn cert(kind: CertKind) -> ValidatedCert {
        let card = demo_card();
        let pem = match kind {
            CertKind::UserAuth => &card.auth_cert_pem,
            CertKind::Signature => &card.sign_cert_pem,
        };
        crate::pki::validate(
            &pem_to_der(pem),
            &demo_pki().trust_store().unwrap(),
            kind,
            fixture_now(),
        )
        .unwrap()
    }

    fn answer<'a>(
        c: &'a ValidatedCert,
        account: Option<&'a str>,
        claims_current: bool,
    ) -> UserAuthAnswer<'a> {
        UserAuthAnswer {
            cert: c,
            revocation: RevocationFact::Good,
            account,
            claims_current,
            now: 1_000,
        }
    }

    fn needs(identity: bool, allow_unproofed: bool) -> Needs<'static> {
        Needs {
            allow_unproofed,
            identity,
            grantable: &|_| true,
            level_needs_proofing: &|_| false,
        }
    }

    #[test]
    fn revocation_answers_become_facts_or_refusals() {
        assert_eq!(
            revocation_fact(Ok(&CertStatus::Good), false),
            Ok(RevocationFact::Good)
        );
        let revoked = CertStatus::Revoked {
            revoked_at: fixture_now(),
            reason: Some(RevocationReason::KeyCompromise),
        };
        assert_eq!(
            revocation_fact(Ok(&revoked), true),
            Err(CardLoginError::Revoked {
                reason: Some(RevocationReason::KeyCompromise)
            }),
            "fail-open never lets a revoked certificate in"
        );
        assert_eq!(
            revocation_fact(Ok(&CertStatus::Unknown), true),
            Err(CardLoginError::RevocationUnknown)
        );
        assert_eq!(
            revocation_fact(Err("the revocation sources did not answer"), false),
            Err(CardLoginError::RevocationUnavailable(
                "the revocation sources did not answer"
            ))
        );
        assert_eq!(
            revocation_fact(Err("x"), true),
            Ok(RevocationFact::Unconfirmed)
        );
    }

    #[test]
    fn a_known_proofed_card_is_authenticated() {
        let c = cert(CertKind::UserAuth);
        let step = on_user_auth(
            &Stage::UserAuth,
            &answer(&c, Some("a"), true),
            &needs(true, false),
        );
        let Ok(Step::Authenticated { facts }) = step else {
            panic!("{step:?}")
        };
        assert!(facts.proofed);
        assert_eq!(facts.auth_time, 1_000);
        assert_eq!(facts.cert_serial.as_deref(), Some(c.serial_hex.as_str()));
    }

    #[test]
    fn a_new_card_is_proofed_unless_the_policy_allows_unproofed_accounts() {
        let c = cert(CertKind::UserAuth);
        let step = on_user_auth(
            &Stage::UserAuth,
            &answer(&c, None, false),
            &needs(false, false),
        );
        let Ok(Step::Proof(p)) = step else {
            panic!("{step:?}")
        };
        assert_eq!(
            (p.issuer.as_str(), p.serial.as_str()),
            (c.issuer.as_str(), c.serial_hex.as_str())
        );
        assert_eq!(p.not_after, c.not_after.unix_timestamp());
        assert!(!p.facts.proofed);
        // Allowed, and the request asks for nothing personal: an unproofed account.
        assert!(matches!(
            on_user_auth(&Stage::UserAuth, &answer(&c, None, false), &needs(false, true)),
            Ok(Step::Authenticated { facts }) if !facts.proofed
        ));
        // Allowed, but the request asks for personal data: proofing.
        assert!(matches!(
            on_user_auth(
                &Stage::UserAuth,
                &answer(&c, None, false),
                &needs(true, true)
            ),
            Ok(Step::Proof(_))
        ));
    }

    #[test]
    fn stale_claims_or_a_level_that_needs_proofing_lead_to_proofing() {
        let c = cert(CertKind::UserAuth);
        // Claims not current (stale, or the signature certificate revoked) and asked for.
        assert!(matches!(
            on_user_auth(
                &Stage::UserAuth,
                &answer(&c, Some("a"), false),
                &needs(true, false)
            ),
            Ok(Step::Proof(_))
        ));
        // Not asked for: the authentication certificate suffices.
        assert!(matches!(
            on_user_auth(
                &Stage::UserAuth,
                &answer(&c, Some("a"), false),
                &needs(false, false)
            ),
            Ok(Step::Authenticated { .. })
        ));
        // A level that needs a proofed person.
        let level = Needs {
            level_needs_proofing: &|f: &AuthFacts| !f.proofed,
            ..needs(false, false)
        };
        assert!(matches!(
            on_user_auth(&Stage::UserAuth, &answer(&c, Some("a"), false), &level),
            Ok(Step::Proof(_))
        ));
    }

    #[test]
    fn no_grantable_level_is_a_refusal() {
        let c = cert(CertKind::UserAuth);
        let mut a = answer(&c, Some("a"), true);
        a.revocation = RevocationFact::Unconfirmed;
        let none = Needs {
            grantable: &|f: &AuthFacts| f.revocation == RevocationFact::Good,
            ..needs(false, false)
        };
        assert_eq!(
            on_user_auth(&Stage::UserAuth, &a, &none),
            Err(CardLoginError::RevocationUnavailable(
                "no level of the policy may be granted without it"
            ))
        );
    }

    #[test]
    fn each_stage_takes_only_its_own_answer() {
        let c = cert(CertKind::UserAuth);
        let s = cert(CertKind::Signature);
        let pending = PendingAuth {
            issuer: c.issuer.clone(),
            serial: c.serial_hex.clone(),
            not_after: 0,
            facts: AuthFacts::jpki_user_auth(&c.issuer, &c.serial_hex, RevocationFact::Good, 5),
        };
        let proofing = Stage::Proofing(Box::new(pending));
        assert_eq!(
            on_user_auth(&proofing, &answer(&c, None, false), &needs(false, false)),
            Err(CardLoginError::ChallengeUsed)
        );
        assert_eq!(
            on_signature(&Stage::UserAuth, &s, RevocationFact::Good, fixture_now()),
            Err(CardLoginError::ChallengeUsed)
        );
        assert_eq!(
            (Stage::UserAuth.kind(), proofing.kind()),
            (CertKind::UserAuth, CertKind::Signature)
        );
        assert_eq!(
            (Stage::UserAuth.name(), proofing.name()),
            ("user_auth", "signature")
        );
    }

    #[test]
    fn proofing_yields_the_basic_four_and_keeps_the_weaker_revocation_fact() {
        let c = cert(CertKind::UserAuth);
        let s = cert(CertKind::Signature);
        let pending = PendingAuth {
            issuer: c.issuer.clone(),
            serial: c.serial_hex.clone(),
            not_after: 0,
            facts: AuthFacts::jpki_user_auth(&c.issuer, &c.serial_hex, RevocationFact::Good, 5),
        };
        let stage = Stage::Proofing(Box::new(pending));
        let p = on_signature(&stage, &s, RevocationFact::Good, fixture_now()).unwrap();
        assert!(p.facts.proofed);
        assert_eq!(
            p.facts.auth_time, 5,
            "the user authentication's time stands"
        );
        assert_eq!(p.claims.name, "山田\u{3000}太郎");
        assert_eq!(p.claims.birthdate, "1989-01-07");
        assert_eq!(p.evidence.serial_number, s.serial_hex);
        let p = on_signature(&stage, &s, RevocationFact::Unconfirmed, fixture_now()).unwrap();
        assert_eq!(p.facts.revocation, RevocationFact::Unconfirmed);
        // A signature certificate without the basic four (not a JPKI one) cannot proof.
        let mut bare = s.clone();
        bare.basic4 = None;
        assert_eq!(
            on_signature(&stage, &bare, RevocationFact::Good, fixture_now()),
            Err(CardLoginError::NoBasicInformation)
        );
    }
}
