//! Turn authentication facts into levels. No numbers of its own: the policy names levels.

use crate::authn::AuthFacts;
use crate::registry::policy::{Level, Policy};

/// Does `facts` meet every requirement of `level`?
pub fn meets(facts: &AuthFacts, level: &Level) -> bool {
    let r = &level.requires;
    (r.methods.is_empty() || r.methods.contains(&facts.method))
        && (!r.hardware_key || facts.hardware_key)
        && (!r.user_verified || facts.user_verified)
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
            && meets(facts, l)
        {
            return Some(l);
        }
    }
    policy.levels.iter().rev().find(|l| meets(facts, l))
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
                    },
                },
            ],
            sources: vec![],
        }
    }

    #[test]
    fn card_facts_reach_the_high_level_and_requests_pick_among_met() {
        let p = policy();
        let mut f = AuthFacts::jpki_user_auth("iss", "01", 0);
        assert_eq!(choose_acr(&p, &f, &[]).unwrap().acr, "aal3");
        assert_eq!(choose_acr(&p, &f, &["aal1".into()]).unwrap().acr, "aal1");
        f.user_verified = false;
        assert_eq!(choose_acr(&p, &f, &["aal3".into()]).unwrap().acr, "aal1");
    }
}
