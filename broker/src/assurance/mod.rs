//! Turn authentication facts into levels. No numbers of its own: the policy names levels.

use crate::authn::{AuthFacts, RevocationFact};
use crate::registry::policy::{Level, Policy};

/// Does `facts` meet every requirement of `level`? A session whose certificate's revocation
/// status could not be confirmed (fail-open) reaches only the policy's fail-open levels.
pub fn meets(policy: &Policy, facts: &AuthFacts, level: &Level) -> bool {
    let r = &level.requires;
    let confirmed = facts.revocation == RevocationFact::Good;
    (r.methods.is_empty() || r.methods.contains(&facts.method))
        && (!r.hardware_key || facts.hardware_key)
        && (!r.user_verified || facts.user_verified)
        && (!r.revocation_confirmed || confirmed)
        && (!r.proofed || facts.proofed)
        && (facts.revocation != RevocationFact::Unconfirmed
            || policy.revocation.fail_open_levels.contains(&level.name))
}

/// The acr to state for a session with `facts`, given the (voluntary) `acr_values` of the
/// request: the first requested value the facts meet, else the highest level met.
pub fn choose_acr<'p>(
    policy: &'p Policy,
    facts: &AuthFacts,
    requested: &[String],
) -> Option<&'p Level> {
    for want in requested {
        if let Some(l) = policy.levels.iter().find(|l| &l.acr == want)
            && meets(policy, facts, l)
        {
            return Some(l);
        }
    }
    policy.levels.iter().rev().find(|l| meets(policy, facts, l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::policy::Requirements;

    fn policy() -> Policy {
        Policy {
            levels: vec![
                Level {
                    name: "low".into(),
                    acr: "aal1".into(),
                    requires: Requirements::default(),
                },
                Level {
                    name: "high".into(),
                    acr: "aal3".into(),
                    requires: Requirements {
                        methods: vec!["jpki_user_auth".into()],
                        hardware_key: true,
                        user_verified: true,
                        revocation_confirmed: true,
                        proofed: false,
                    },
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn card_facts_reach_the_high_level_and_requests_pick_among_met() {
        let p = policy();
        let mut f = AuthFacts::jpki_user_auth("iss", "01", RevocationFact::Good, 0);
        assert_eq!(choose_acr(&p, &f, &[]).unwrap().acr, "aal3");
        assert_eq!(choose_acr(&p, &f, &["aal1".into()]).unwrap().acr, "aal1");
        f.user_verified = false;
        assert_eq!(choose_acr(&p, &f, &["aal3".into()]).unwrap().acr, "aal1");
    }

    #[test]
    fn unconfirmed_revocation_reaches_only_fail_open_levels() {
        let mut p = policy();
        let f = AuthFacts::jpki_user_auth("iss", "01", RevocationFact::Unconfirmed, 0);
        assert!(
            choose_acr(&p, &f, &[]).is_none(),
            "fail closed: no level at all"
        );
        p.revocation.fail_open_levels = vec!["low".into()];
        assert_eq!(choose_acr(&p, &f, &["aal3".into()]).unwrap().acr, "aal1");
    }
}
