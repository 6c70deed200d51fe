//! Turn authentication facts into levels. No numbers of its own: the policy names levels.

use crate::authn::{AuthFacts, RevocationFact};

pub mod passkey;
use crate::registry::policy::{Level, Policy};

/// Does `facts` meet every requirement of `level`? A session whose certificate's revocation
/// status could not be confirmed (fail-open) reaches only the policy's fail-open levels.
pub fn meets(policy: &Policy, facts: &AuthFacts, level: &Level) -> bool {
    let r = &level.requires;
    let confirmed = facts.revocation == RevocationFact::Good;
    (r.methods.is_empty() || r.methods.contains(&facts.method))
        && (!r.hardware_key || facts.hardware_key)
        && (!r.device_bound || facts.device_bound)
        && (!r.phishing_resistant || facts.phishing_resistant)
        && (!r.user_verified || facts.user_verified)
        && (!r.revocation_confirmed || confirmed)
        && (!r.proofed || facts.proofed)
        && (facts.revocation != RevocationFact::Unconfirmed
            || policy.revocation.fail_open_levels.contains(&level.name))
}

/// `meets`, and the session is young enough for the level's `max_session_age` at `now`.
pub fn meets_at(policy: &Policy, facts: &AuthFacts, level: &Level, now: i64) -> bool {
    meets(policy, facts, level)
        && level
            .max_session_age
            .is_none_or(|m| now - facts.auth_time <= m)
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
                    max_session_age: None,
                },
                Level {
                    name: "high".into(),
                    acr: "aal3".into(),
                    requires: Requirements {
                        methods: vec!["jpki_user_auth".into()],
                        hardware_key: true,
                        user_verified: true,
                        revocation_confirmed: true,
                        ..Default::default()
                    },
                    max_session_age: None,
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

/// What a request asks of the authentication, per OIDC Core §5.5.1.1 and the RP's minimum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement {
    /// Essential `acr` values (claims parameter, `id_token.acr` with `essential: true`): one of
    /// them must be met, or the request fails with `unmet_authentication_requirements`.
    pub essential: Vec<String>,
    /// `acr_values`, in order of preference: met if possible (a step-up is tried).
    pub voluntary: Vec<String>,
    /// Index (in policy order) of the lowest level the RP accepts.
    pub minimum: usize,
    /// Name of that minimum level, for messages.
    pub minimum_name: Option<String>,
}

/// The essential acr values of a `claims` request parameter.
pub fn essential_acr(claims: Option<&serde_json::Value>) -> Vec<String> {
    let Some(acr) = claims.and_then(|c| c.pointer("/id_token/acr")) else {
        return vec![];
    };
    if acr.get("essential").and_then(|e| e.as_bool()) != Some(true) {
        return vec![];
    }
    if let Some(v) = acr.get("value").and_then(|v| v.as_str()) {
        return vec![v.to_string()];
    }
    acr.get("values")
        .and_then(|v| v.as_array())
        .map(|vs| {
            vs.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Requirement {
    /// Build from the policy, the RP's registered minimum (by acr) and kind, and the request.
    pub fn of(
        policy: &Policy,
        client_min_acr: Option<&str>,
        kind_min: Option<&str>,
        acr_values: &[String],
        claims: Option<&serde_json::Value>,
    ) -> Requirement {
        let rank = |acr: Option<&str>| {
            acr.and_then(|a| policy.levels.iter().position(|l| l.acr == a || l.name == a))
        };
        let (minimum, minimum_name) = match (rank(client_min_acr), rank(kind_min)) {
            (None, None) => (0, None),
            (a, b) => {
                let m = a.unwrap_or(0).max(b.unwrap_or(0));
                (m, Some(policy.levels[m].acr.clone()))
            }
        };
        Requirement {
            essential: essential_acr(claims),
            voluntary: acr_values.to_vec(),
            minimum,
            minimum_name,
        }
    }

    /// Levels that would satisfy this requirement, in preference order.
    pub fn acceptable<'p>(&self, policy: &'p Policy) -> Vec<&'p Level> {
        let at_least = |l: &&Level| {
            policy
                .levels
                .iter()
                .position(|x| x.name == l.name)
                .is_some_and(|i| i >= self.minimum)
        };
        if !self.essential.is_empty() {
            return self
                .essential
                .iter()
                .filter_map(|a| policy.levels.iter().find(|l| &l.acr == a))
                .filter(at_least)
                .collect();
        }
        let mut out: Vec<&Level> = self
            .voluntary
            .iter()
            .filter_map(|a| policy.levels.iter().find(|l| &l.acr == a))
            .filter(at_least)
            .collect();
        for l in policy.levels.iter().rev().filter(at_least) {
            if !out.iter().any(|x| x.name == l.name) {
                out.push(l);
            }
        }
        out
    }

    /// The level to state for `facts`, or why none fits.
    pub fn select<'p>(
        &self,
        policy: &'p Policy,
        facts: &AuthFacts,
        now: i64,
    ) -> Result<&'p Level, String> {
        self.acceptable(policy)
            .into_iter()
            .find(|l| meets_at(policy, facts, l, now))
            .ok_or_else(|| {
                if !self.essential.is_empty() {
                    format!(
                        "the authentication does not meet the essential acr ({})",
                        self.essential.join(", ")
                    )
                } else {
                    format!(
                        "the authentication does not meet the relying party's minimum level {}",
                        self.minimum_name.as_deref().unwrap_or("")
                    )
                }
            })
    }

    /// Would a new authentication be needed for `facts` — the session falls short of what is
    /// required or of the first (preferred) voluntary acr value?
    pub fn wants_step_up(&self, policy: &Policy, facts: &AuthFacts, now: i64) -> bool {
        if self.select(policy, facts, now).is_err() {
            return true;
        }
        match self
            .voluntary
            .first()
            .and_then(|a| policy.levels.iter().find(|l| &l.acr == a))
        {
            Some(preferred) => !meets_at(policy, facts, preferred, now),
            None => false,
        }
    }

    /// Would proofing the account turn `facts` into ones that meet the request (when they do
    /// not already)? The preferred voluntary acr counts as the request when there is one.
    pub fn needs_proofing(&self, policy: &Policy, facts: &AuthFacts, now: i64) -> bool {
        let acc = self.acceptable(policy);
        let strict = if !self.essential.is_empty() {
            acc
        } else {
            match self
                .voluntary
                .first()
                .and_then(|a| policy.levels.iter().find(|l| &l.acr == a))
            {
                Some(p) => vec![p],
                None => acc,
            }
        };
        let proofed = AuthFacts {
            proofed: true,
            ..facts.clone()
        };
        !strict.iter().any(|l| meets_at(policy, facts, l, now))
            && strict.iter().any(|l| meets_at(policy, &proofed, l, now))
    }
}
