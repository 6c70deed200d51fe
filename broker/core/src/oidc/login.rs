//! What an authorization request leads to, given the browser's SSO session: a code at once,
//! consent first, or a login (OpenID Connect Core §3.1.2.1–3.1.2.6: `prompt`, `max_age`,
//! `id_token_hint`; step-up by the policy's levels). Pure: the conductor loads the session and
//! its consent, calls [`decide`], and writes what it says.

use super::authorize::AuthRequest;
use super::error::OAuthError;
use crate::assurance::Requirement;
use crate::authn::AuthFacts;
use crate::authn::ceremony::PendingAuth;
use crate::registry::policy::Policy;

/// The browser's SSO session, as far as the decision needs it.
pub struct Session<'a> {
    pub facts: &'a AuthFacts,
    /// Its person is the one the request's `id_token_hint` names (true without a hint).
    pub is_hinted_person: bool,
    /// What this person consented to for this relying party (space-separated items).
    pub consented: Option<&'a str>,
}

/// What the request leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A code from the session, without asking anything.
    Code,
    /// The person is logged in but must consent first.
    Consent,
    /// A login: the card from the start, or — when proofing is all the session lacks — the
    /// signature certificate only, after the session's own user authentication.
    Login { proofing_only: Option<PendingAuth> },
    /// Refused back to the relying party (`prompt=none` where interaction is needed).
    Refuse(OAuthError),
}

/// Do the items consented to (`granted`, space-separated) cover `items`? Nothing to consent to
/// (only a pairwise identifier leaves) is always covered.
pub fn consent_covers(items: &[String], granted: Option<&str>) -> bool {
    if items.is_empty() {
        return true;
    }
    let Some(granted) = granted else {
        return false;
    };
    let granted: Vec<&str> = granted.split(' ').collect();
    items.iter().all(|s| granted.contains(&s.as_str()))
}

/// Decide what `req` (asking `need` of the authentication, and consent to `consent_items`)
/// leads to with `session` at `now`.
pub fn decide(
    req: &AuthRequest,
    need: &Requirement,
    policy: &Policy,
    consent_items: &[String],
    session: Option<&Session<'_>>,
    now: i64,
) -> Decision {
    // A session is reused unless the request wants a fresh login (prompt=login, max_age) or
    // more than the session's facts hold (a step-up). auth_time has whole seconds, so the time
    // really elapsed may be up to a second more than `now - auth_time`: a difference equal to
    // max_age may already exceed it, and counts as too old (max_age=0 always re-authenticates).
    let fresh =
        |f: &AuthFacts| !req.prompt_login && req.max_age.is_none_or(|m| now - f.auth_time < m);
    let usable = session.filter(|s| {
        s.is_hinted_person && fresh(s.facts) && !need.wants_step_up(policy, s.facts, now)
    });
    let Some(s) = usable else {
        if req.prompt_none {
            return Decision::Refuse(OAuthError::login_required(
                if session.is_some_and(|s| !s.is_hinted_person) {
                    "the person logged in is not the one id_token_hint names, and prompt=none forbids asking"
                } else {
                    "the person is not logged in (or must log in again) and prompt=none forbids asking"
                },
            ));
        }
        return Decision::Login {
            proofing_only: session.and_then(|s| proofing_only(s, req, need, policy, now)),
        };
    };
    if !req.prompt_consent && consent_covers(consent_items, s.consented) {
        return Decision::Code;
    }
    if req.prompt_none {
        return Decision::Refuse(OAuthError::consent_required(
            "the person has not consented to this relying party and scope, and prompt=none forbids asking",
        ));
    }
    Decision::Consent
}

/// A step-up where proofing is all that is missing: the session's own certificate stands, and
/// only the signature certificate is asked for.
fn proofing_only(
    s: &Session<'_>,
    req: &AuthRequest,
    need: &Requirement,
    policy: &Policy,
    now: i64,
) -> Option<PendingAuth> {
    let f = s.facts;
    let fresh = !req.prompt_login && req.max_age.is_none_or(|m| now - f.auth_time < m);
    if !s.is_hinted_person || !fresh || f.proofed {
        return None;
    }
    let proofed = AuthFacts {
        proofed: true,
        ..f.clone()
    };
    if need.wants_step_up(policy, &proofed, now) {
        return None;
    }
    Some(PendingAuth {
        issuer: f.cert_issuer.clone()?,
        serial: f.cert_serial.clone()?,
        not_after: 0,
        facts: f.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::RevocationFact;
    use crate::oidc::authorize::requirement;
    use crate::oidc::error::ErrorCode;
    use crate::registry::parse_client;

    fn policy() -> Policy {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
        Policy::load_dir(&dir).unwrap()
    }

    fn request() -> AuthRequest {
        AuthRequest {
            client_id: "rp".into(),
            redirect_uri: "https://rp.example.jp/cb".into(),
            scope: vec!["openid".into(), "profile".into()],
            state: None,
            nonce: None,
            code_challenge: "x".repeat(43),
            prompt_none: false,
            prompt_login: false,
            prompt_consent: false,
            max_age: None,
            acr_values: vec![],
            ui_locales: vec![],
            claims: None,
            login_hint: None,
            hint_sub: None,
        }
    }

    fn need(policy: &Policy, req: &AuthRequest) -> Requirement {
        let client = parse_client(
            std::path::Path::new("rp.toml"),
            "client_id = \"rp\"\ndisplay_name = \"RP\"\nkind = \"other\"\nredirect_uris = [\"https://rp.example.jp/cb\"]\ntoken_endpoint_auth_method = \"none\"\nscopes = [\"openid\", \"profile\"]\n",
        )
        .unwrap();
        requirement(policy, &client, req)
    }

    fn card_facts(proofed: bool, auth_time: i64) -> AuthFacts {
        let mut f =
            AuthFacts::jpki_user_auth("C=JP, O=JPKI", "0a", RevocationFact::Good, auth_time);
        f.proofed = proofed;
        f
    }

    const ITEMS: &[&str] = &["profile"];

    fn items() -> Vec<String> {
        ITEMS.iter().map(|s| s.to_string()).collect()
    }

    fn session(facts: &AuthFacts, consented: Option<&'static str>) -> Session<'static> {
        Session {
            facts: Box::leak(Box::new(facts.clone())),
            is_hinted_person: true,
            consented,
        }
    }

    #[test]
    fn without_a_session_a_login_and_prompt_none_is_refused() {
        let (p, r) = (policy(), request());
        assert_eq!(
            decide(&r, &need(&p, &r), &p, &items(), None, 100),
            Decision::Login {
                proofing_only: None
            }
        );
        let r = AuthRequest {
            prompt_none: true,
            ..request()
        };
        let Decision::Refuse(e) = decide(&r, &need(&p, &r), &p, &items(), None, 100) else {
            panic!()
        };
        assert_eq!(e.code, ErrorCode::LoginRequired);
        assert_eq!(
            e.description,
            "the person is not logged in (or must log in again) and prompt=none forbids asking"
        );
    }

    #[test]
    fn a_usable_session_gives_a_code_when_consent_covers_the_request() {
        let (p, r) = (policy(), request());
        let f = card_facts(true, 90);
        let n = need(&p, &r);
        assert_eq!(
            decide(
                &r,
                &n,
                &p,
                &items(),
                Some(&session(&f, Some("openid profile"))),
                100
            ),
            Decision::Code
        );
        // Not consented: consent is asked, or refused with prompt=none.
        assert_eq!(
            decide(&r, &n, &p, &items(), Some(&session(&f, None)), 100),
            Decision::Consent
        );
        let none = AuthRequest {
            prompt_none: true,
            ..request()
        };
        assert!(matches!(
            decide(&none, &n, &p, &items(), Some(&session(&f, None)), 100),
            Decision::Refuse(e) if e.code == ErrorCode::ConsentRequired
        ));
        // prompt=consent asks again however much was consented.
        let again = AuthRequest {
            prompt_consent: true,
            ..request()
        };
        assert_eq!(
            decide(
                &again,
                &n,
                &p,
                &items(),
                Some(&session(&f, Some("profile"))),
                100
            ),
            Decision::Consent
        );
        // Nothing to consent to: a code without asking.
        assert_eq!(
            decide(&r, &n, &p, &[], Some(&session(&f, None)), 100),
            Decision::Code
        );
    }

    #[test]
    fn prompt_login_max_age_and_another_person_mean_a_new_login() {
        let p = policy();
        let f = card_facts(true, 90);
        for r in [
            AuthRequest {
                prompt_login: true,
                ..request()
            },
            // 10 s old, max_age 10: may really be older, so too old.
            AuthRequest {
                max_age: Some(10),
                ..request()
            },
        ] {
            assert_eq!(
                decide(
                    &r,
                    &need(&p, &r),
                    &p,
                    &items(),
                    Some(&session(&f, Some("profile"))),
                    100
                ),
                Decision::Login {
                    proofing_only: None
                }
            );
        }
        let r = AuthRequest {
            max_age: Some(11),
            ..request()
        };
        assert_eq!(
            decide(
                &r,
                &need(&p, &r),
                &p,
                &items(),
                Some(&session(&f, Some("profile"))),
                100
            ),
            Decision::Code
        );
        // id_token_hint names someone else: that session is not used.
        let mut other = session(&f, Some("profile"));
        other.is_hinted_person = false;
        let r = request();
        assert_eq!(
            decide(&r, &need(&p, &r), &p, &items(), Some(&other), 100),
            Decision::Login {
                proofing_only: None
            }
        );
        let none = AuthRequest {
            prompt_none: true,
            ..request()
        };
        assert!(matches!(
            decide(&none, &need(&p, &none), &p, &items(), Some(&other), 100),
            Decision::Refuse(e) if e.description.starts_with("the person logged in is not the one id_token_hint names")
        ));
    }

    #[test]
    fn a_step_up_that_lacks_only_proofing_asks_for_the_signature_certificate() {
        use crate::registry::policy::{Level, Requirements};
        // aal3 here needs a proofed person; the session has the card but no proofing.
        let mut p = policy();
        p.levels = vec![
            Level {
                name: "aal1".into(),
                acr: "aal1".into(),
                requires: Requirements::default(),
                max_session_age: None,
            },
            Level {
                name: "aal3".into(),
                acr: "aal3".into(),
                requires: Requirements {
                    proofed: true,
                    ..Requirements::default()
                },
                max_session_age: None,
            },
        ];
        let r = AuthRequest {
            acr_values: vec!["aal3".into()],
            ..request()
        };
        let n = need(&p, &r);
        let f = card_facts(false, 90);
        let Decision::Login {
            proofing_only: Some(pending),
        } = decide(
            &r,
            &n,
            &p,
            &items(),
            Some(&session(&f, Some("profile"))),
            100,
        )
        else {
            panic!("expected a proofing-only login")
        };
        assert_eq!(pending.serial, "0a");
        assert_eq!(pending.facts, f);
        // The same with prompt=login: a whole new login.
        let fresh = AuthRequest {
            prompt_login: true,
            ..r.clone()
        };
        assert_eq!(
            decide(
                &fresh,
                &n,
                &p,
                &items(),
                Some(&session(&f, Some("profile"))),
                100
            ),
            Decision::Login {
                proofing_only: None
            }
        );
    }

    #[test]
    fn consent_covers_what_was_granted_and_no_more() {
        let it = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(consent_covers(&[], None));
        assert!(!consent_covers(&it(&["profile"]), None));
        assert!(consent_covers(&it(&["profile"]), Some("openid profile")));
        assert!(!consent_covers(
            &it(&["profile", "address"]),
            Some("openid profile")
        ));
    }
}
