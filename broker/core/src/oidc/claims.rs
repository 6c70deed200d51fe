//! Which personal claims leave, and in what form: the standard claims (name, birthdate,
//! gender, address) and OpenID Connect for Identity Assurance 1.0 `verified_claims`.
//!
//! A claim leaves only when (1) the RP's registration allows it, (2) the request asks for it
//! (scope, or the `claims` parameter), (3) the person consented to that request, and (4) the
//! account's verified claims are current (not stale). Pure functions: the caller loads the data.

use super::authorize::AuthRequest;
use crate::authn::proofing::{IdentityClaims, ProofingEvidence};
use crate::registry::Client;
use serde_json::{Map, Value, json};

/// The identity claims a scope stands for.
pub fn scope_claims(scope: &str) -> &'static [&'static str] {
    match scope {
        "profile" => &["name", "birthdate", "gender"],
        "name" => &["name"],
        "birthdate" => &["birthdate"],
        "gender" => &["gender"],
        "address" => &["address"],
        _ => &[],
    }
}

/// Where claims are going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Userinfo,
    IdToken,
}

impl Target {
    fn member(self) -> &'static str {
        match self {
            Target::Userinfo => "userinfo",
            Target::IdToken => "id_token",
        }
    }
}

/// Claim names asked for `target` (scopes count for userinfo only, as OIDC Core §5.4 says for
/// the code flow), limited to what the client may receive.
pub fn requested(
    client: &Client,
    scope: &[String],
    claims: Option<&Value>,
    target: Target,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |c: &str| {
        if client.claims.contains(c) && !out.iter().any(|x| x == c) {
            out.push(c.to_string());
        }
    };
    if target == Target::Userinfo {
        for s in scope {
            for c in scope_claims(s) {
                add(c);
            }
        }
    }
    if let Some(Value::Object(m)) = claims.and_then(|c| c.get(target.member())) {
        for k in m.keys() {
            add(k);
        }
    }
    out
}

/// Does the request ask for any personal data (so the account must be proofed)?
pub fn wants_identity(client: &Client, req: &AuthRequest) -> bool {
    [Target::Userinfo, Target::IdToken]
        .iter()
        .any(|t| !requested(client, &req.scope, req.claims.as_ref(), *t).is_empty())
}

/// The items a person consents to for this request: the granted scopes other than `openid`,
/// and `claim:NAME` for each claim asked for through the `claims` parameter. Sorted. Empty
/// means nothing beyond a pairwise identifier leaves, and no consent page is shown.
pub fn consent_items(client: &Client, req: &AuthRequest) -> Vec<String> {
    let mut items: Vec<String> = req
        .scope
        .iter()
        .filter(|s| *s != "openid")
        .cloned()
        .collect();
    for t in [Target::Userinfo, Target::IdToken] {
        if let Some(Value::Object(m)) = req.claims.as_ref().and_then(|c| c.get(t.member())) {
            for k in m.keys() {
                let item = format!("claim:{k}");
                if client.claims.contains(k.as_str()) && !items.contains(&item) {
                    items.push(item);
                }
            }
        }
    }
    items.sort();
    items.dedup();
    items
}

/// The stored identity of an account, as released.
pub struct Identity<'a> {
    pub claims: &'a IdentityClaims,
    pub evidence: &'a ProofingEvidence,
    /// When the verification happened (unix seconds).
    pub verified_at: i64,
}

fn standard(id: &IdentityClaims, name: &str) -> Option<Vec<(String, Value)>> {
    Some(match name {
        "name" => vec![
            ("name".into(), json!(id.name)),
            // The substitute-character map travels with the name it describes.
            ("name_substituted".into(), json!(id.name_substituted)),
        ],
        "birthdate" => vec![("birthdate".into(), json!(id.birthdate))],
        "gender" => vec![("gender".into(), json!(id.gender()))],
        "address" => vec![
            (
                "address".into(),
                json!({ "formatted": id.address, "country": "JP" }),
            ),
            ("address_substituted".into(), json!(id.address_substituted)),
        ],
        _ => return None,
    })
}

/// Does a `verification` request's constraint on `trust_framework` accept `ours`?
/// (OIDC4IDA §6: an unmet constraint omits `verified_claims`, it is not an error.)
fn framework_accepted(request: &Value, ours: &str) -> bool {
    let Some(tf) = request.pointer("/verification/trust_framework") else {
        return true;
    };
    if let Some(v) = tf.get("value") {
        return v.as_str() == Some(ours);
    }
    if let Some(Value::Array(vs)) = tf.get("values") {
        return vs.iter().any(|v| v.as_str() == Some(ours));
    }
    true
}

/// Does a claim request's `value` / `values` constraint (OIDC Core §5.5.1) accept `actual`?
fn value_accepted(request: &Value, actual: &Value) -> bool {
    if let Some(v) = request.get("value") {
        return v == actual;
    }
    if let Some(Value::Array(vs)) = request.get("values") {
        return vs.contains(actual);
    }
    true
}

/// The claims to put into `target` for this grant.
pub fn release(
    client: &Client,
    scope: &[String],
    claims_param: Option<&Value>,
    identity: Option<&Identity<'_>>,
    trust_framework: &str,
    target: Target,
) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(id) = identity else { return out };
    for name in requested(client, scope, claims_param, target) {
        if let Some(pairs) = standard(id.claims, &name) {
            out.extend(pairs);
        }
    }
    let vc_request = claims_param
        .and_then(|c| c.get(target.member()))
        .and_then(|m| m.get("verified_claims"));
    if let Some(vreq) = vc_request
        && client.claims.contains("verified_claims")
        && framework_accepted(vreq, trust_framework)
    {
        let wanted: Vec<(String, Value)> = match vreq.get("claims") {
            Some(Value::Object(m)) if !m.is_empty() => {
                m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            _ => ["name", "birthdate", "gender", "address"]
                .map(|n| (n.to_string(), Value::Null))
                .to_vec(),
        };
        let mut claims = Map::new();
        for (name, constraint) in wanted {
            // Only claims the registration allows leave, inside verified_claims too; a claim
            // whose `value`/`values` constraint the person's data does not meet is omitted
            // (OpenID Connect for Identity Assurance §6: never a value that was not asked for).
            if client.claims.contains(name.as_str())
                && let Some(pairs) = standard(id.claims, &name)
                && value_accepted(&constraint, &pairs[0].1)
            {
                claims.extend(pairs);
            }
        }
        if !claims.is_empty() {
            let time = time::OffsetDateTime::from_unix_timestamp(id.verified_at)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            out.insert(
                "verified_claims".into(),
                json!({
                    "verification": {
                        "trust_framework": trust_framework,
                        "time": time,
                        "evidence": [id.evidence],
                    },
                    "claims": claims,
                }),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::authorize;
    use crate::registry::{Registry, RpKind, parse_client, policy::Policy};
    use std::collections::BTreeSet;
    use std::path::Path;

    const TF: &str = "https://jpki-broker.example/trust-framework/jpki-signature";

    /// A municipal portal that may receive everything the broker releases (as shipped).
    const CITY_PORTAL: &str = r#"
client_id = "city-portal"
display_name = "Example City Portal"
kind = "public_sector"
redirect_uris = ["https://portal.city.example.jp/auth/callback"]
token_endpoint_auth_method = "client_secret_basic"
client_secret_sha256 = "5a3033e0e79f29a63a241dd7d6304479598f8963d62728b4c6e9b52a80d4185a"
scopes = ["openid", "profile", "name", "birthdate", "gender", "address"]
claims = ["name", "birthdate", "gender", "address", "verified_claims"]
"#;

    /// A hospital that needs the name and birth date only, and no `verified_claims` (as shipped).
    const HOSPITAL: &str = r#"
client_id = "hospital"
display_name = "Example General Hospital"
kind = "hospital"
redirect_uris = ["https://patients.hospital.example.jp/oidc/cb"]
token_endpoint_auth_method = "client_secret_post"
client_secret_sha256 = "92b1318d18c46223d4272a7007f7abc48b87a232d2398d9c8ea51ce6dbe58d55"
scopes = ["openid", "name", "birthdate"]
claims = ["name", "birthdate"]
"#;

    fn client(text: &str) -> Client {
        parse_client(Path::new("x.toml"), text).expect("registration parses")
    }

    fn city() -> Client {
        client(CITY_PORTAL)
    }

    fn hospital() -> Client {
        client(HOSPITAL)
    }

    /// The hospital, allowed `verified_claims` too (but still only the name and birth date).
    fn hospital_with_verified_claims() -> Client {
        client(&HOSPITAL.replace(
            r#"claims = ["name", "birthdate"]"#,
            r#"claims = ["name", "birthdate", "verified_claims"]"#,
        ))
    }

    fn scope(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    /// An authorization request as `authorize::validate` keeps it.
    fn request(client: &Client, s: &[&str], claims: Option<Value>) -> AuthRequest {
        AuthRequest {
            client_id: client.client_id.clone(),
            redirect_uri: client.redirect_uris[0].clone(),
            scope: scope(s),
            state: None,
            nonce: Some("n1".into()),
            code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
            prompt_none: false,
            prompt_login: false,
            prompt_consent: false,
            max_age: None,
            acr_values: vec![],
            ui_locales: vec![],
            claims,
            login_hint: None,
            hint_sub: None,
        }
    }

    fn person() -> IdentityClaims {
        IdentityClaims {
            name: "山田\u{3000}太郎".into(),
            name_substituted: "00010".into(),
            birthdate: "1989-01-07".into(),
            birthdate_era: 3,
            gender_code: "1".into(),
            address: "東京都千代田区千代田一番一号".into(),
            address_substituted: "00000010000000".into(),
        }
    }

    fn evidence() -> ProofingEvidence {
        ProofingEvidence {
            kind: "electronic_signature".into(),
            signature_type: "jpki_signature_certificate".into(),
            issuer: "C=JP, O=JPKI-DEMO, OU=JPKI for digital signature, \
                     OU=Japan Agency for Local Authority Information Systems"
                .into(),
            serial_number: "054cfcd8".into(),
            created_at: "2023-11-14T22:13:20Z".into(),
        }
    }

    /// 2023-11-14T22:13:20Z.
    const VERIFIED_AT: i64 = 1_700_000_000;

    /// `release` with the fixture person.
    fn released(
        client: &Client,
        s: &[&str],
        claims: Option<&Value>,
        target: Target,
    ) -> Map<String, Value> {
        let (c, e) = (person(), evidence());
        let id = Identity {
            claims: &c,
            evidence: &e,
            verified_at: VERIFIED_AT,
        };
        release(client, &scope(s), claims, Some(&id), TF, target)
    }

    fn keys(m: &Map<String, Value>) -> BTreeSet<&str> {
        m.keys().map(String::as_str).collect()
    }

    fn set(v: &[&'static str]) -> BTreeSet<&'static str> {
        v.iter().copied().collect()
    }

    /// Every object key anywhere in `v`.
    fn all_keys(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    out.push(k.clone());
                    all_keys(x, out);
                }
            }
            Value::Array(xs) => xs.iter().for_each(|x| all_keys(x, out)),
            _ => {}
        }
    }

    #[test]
    fn scopes_stand_for_the_basic_four_and_nothing_else() {
        assert_eq!(scope_claims("profile"), ["name", "birthdate", "gender"]);
        assert_eq!(scope_claims("name"), ["name"]);
        assert_eq!(scope_claims("birthdate"), ["birthdate"]);
        assert_eq!(scope_claims("gender"), ["gender"]);
        assert_eq!(scope_claims("address"), ["address"]);
        // No scope stands for verified_claims: only the `claims` parameter asks for it.
        for s in [
            "openid",
            "offline_access",
            "email",
            "phone",
            "verified_claims",
            "",
        ] {
            assert!(scope_claims(s).is_empty(), "{s}");
        }
    }

    #[test]
    fn scopes_count_for_userinfo_only_and_within_the_registration() {
        let s = scope(&["openid", "profile", "name", "address"]);
        assert_eq!(
            requested(&city(), &s, None, Target::Userinfo),
            ["name", "birthdate", "gender", "address"],
            "each claim once, in scope order"
        );
        // OIDC Core §5.4: in the code flow scopes ask for userinfo, never the ID token.
        assert!(requested(&city(), &s, None, Target::IdToken).is_empty());
        // The hospital may receive the name and birth date whatever the scopes say.
        assert_eq!(
            requested(&hospital(), &s, None, Target::Userinfo),
            ["name", "birthdate"]
        );
    }

    #[test]
    fn the_claims_parameter_adds_claims_to_its_own_target_only() {
        let claims = json!({
            "id_token": { "birthdate": { "essential": true } },
            "userinfo": { "address": null },
        });
        let s = scope(&["openid"]);
        assert_eq!(
            requested(&city(), &s, Some(&claims), Target::IdToken),
            ["birthdate"]
        );
        assert_eq!(
            requested(&city(), &s, Some(&claims), Target::Userinfo),
            ["address"]
        );
        // Added to what the scopes ask for, without repeating it.
        let s = scope(&["openid", "name", "address"]);
        assert_eq!(
            requested(&city(), &s, Some(&claims), Target::Userinfo),
            ["name", "address"]
        );
    }

    /// `essential` does not override the registration, and unknown claims are ignored.
    #[test]
    fn essential_claims_beyond_the_registration_are_not_requested() {
        let claims = json!({
            "id_token": {
                "address": { "essential": true },
                "gender": { "essential": true },
                "email": { "essential": true },
                "birthdate": { "essential": true },
            },
        });
        assert_eq!(
            requested(
                &hospital(),
                &scope(&["openid"]),
                Some(&claims),
                Target::IdToken
            ),
            ["birthdate"]
        );
        let out = released(&hospital(), &["openid"], Some(&claims), Target::IdToken);
        assert_eq!(keys(&out), set(&["birthdate"]));
    }

    #[test]
    fn wants_identity_only_when_personal_data_may_leave() {
        let c = city();
        assert!(!wants_identity(&c, &request(&c, &["openid"], None)));
        assert!(!wants_identity(
            &c,
            &request(&c, &["openid", "offline_access"], None)
        ));
        assert!(wants_identity(
            &c,
            &request(&c, &["openid", "gender"], None)
        ));
        let id_token_birthdate = json!({ "id_token": { "birthdate": { "essential": true } } });
        assert!(wants_identity(
            &c,
            &request(&c, &["openid"], Some(id_token_birthdate))
        ));
        let vc = json!({ "userinfo": { "verified_claims": { "claims": { "name": null } } } });
        assert!(wants_identity(
            &c,
            &request(&c, &["openid"], Some(vc.clone()))
        ));
        // The hospital can receive neither the address nor verified_claims: nothing to proof.
        let h = hospital();
        let address = json!({ "userinfo": { "address": { "essential": true } } });
        assert!(!wants_identity(
            &h,
            &request(&h, &["openid"], Some(address))
        ));
        assert!(!wants_identity(&h, &request(&h, &["openid"], Some(vc))));
    }

    #[test]
    fn consent_items_are_granted_scopes_and_receivable_claims_sorted() {
        let c = city();
        let claims = json!({
            "id_token": { "birthdate": { "essential": true }, "email": null },
            "userinfo": { "birthdate": null, "verified_claims": { "claims": { "name": null } } },
        });
        let req = request(&c, &["openid", "name", "address"], Some(claims));
        assert_eq!(
            consent_items(&c, &req),
            [
                "address",
                "claim:birthdate",
                "claim:verified_claims",
                "name"
            ]
        );
        // Only a pairwise identifier: no consent page.
        assert!(consent_items(&c, &request(&c, &["openid"], None)).is_empty());
        // Claims the registration does not allow are not offered for consent either.
        let h = hospital();
        let claims = json!({
            "userinfo": { "address": { "essential": true }, "verified_claims": null },
        });
        assert!(consent_items(&h, &request(&h, &["openid"], Some(claims))).is_empty());
    }

    /// What the person consents to is what leaves: every released claim (the substitute maps
    /// travel with theirs) comes from a consented scope or a consented `claim:` item, and every
    /// item leads to something released.
    #[test]
    fn consent_items_cover_exactly_what_release_puts_out() {
        let cases = [
            (
                city(),
                vec!["openid", "profile"],
                json!({
                    "id_token": { "address": null, "email": null },
                    "userinfo": { "verified_claims": { "claims": { "birthdate": null } } },
                }),
            ),
            (
                hospital(),
                vec!["openid", "name"],
                json!({ "id_token": { "birthdate": null, "gender": { "essential": true } } }),
            ),
        ];
        for (c, s, claims) in cases {
            let items: BTreeSet<String> = consent_items(&c, &request(&c, &s, Some(claims.clone())))
                .into_iter()
                .collect();
            let mut from_items: BTreeSet<String> = BTreeSet::new();
            for item in &items {
                match item.strip_prefix("claim:") {
                    Some(claim) => {
                        from_items.insert(claim.to_string());
                    }
                    None => from_items.extend(scope_claims(item).iter().map(|x| x.to_string())),
                }
            }
            let mut out: BTreeSet<String> = BTreeSet::new();
            for t in [Target::Userinfo, Target::IdToken] {
                out.extend(
                    released(&c, &s, Some(&claims), t)
                        .keys()
                        .filter(|k| !k.ends_with("_substituted"))
                        .cloned(),
                );
            }
            assert_eq!(out, from_items, "{}: items {items:?}", c.client_id);
        }
    }

    /// Consent items for a request as the authorization endpoint validates it: scopes the
    /// hospital did not register are not granted, so never offered.
    #[test]
    fn consent_for_a_validated_request_names_only_what_the_client_may_receive() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("hospital.toml"), HOSPITAL).unwrap();
        let registry = Registry::load_dir(tmp.path()).unwrap();
        let params: Vec<(String, String)> = [
            ("client_id", "hospital"),
            (
                "redirect_uri",
                "https://patients.hospital.example.jp/oidc/cb",
            ),
            ("response_type", "code"),
            ("scope", "openid profile name birthdate address"),
            ("nonce", "n1"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
            (
                "claims",
                r#"{"id_token":{"birthdate":{"essential":true},"address":{"essential":true}}}"#,
            ),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let (c, req) = authorize::validate(&params, &registry).expect("valid request");
        assert_eq!(req.scope, ["openid", "name", "birthdate"]);
        assert_eq!(
            consent_items(&c, &req),
            ["birthdate", "claim:birthdate", "name"]
        );
        assert!(wants_identity(&c, &req));
    }

    #[test]
    fn nothing_is_released_without_current_verified_claims() {
        let claims = json!({ "userinfo": { "verified_claims": null, "name": null } });
        for t in [Target::Userinfo, Target::IdToken] {
            let out = release(
                &city(),
                &scope(&["openid", "profile", "address"]),
                Some(&claims),
                None,
                TF,
                t,
            );
            assert!(out.is_empty(), "{t:?}: {out:?}");
        }
    }

    #[test]
    fn standard_claims_are_released_with_their_substitute_character_maps() {
        let out = released(
            &city(),
            &["openid", "profile", "address"],
            None,
            Target::Userinfo,
        );
        assert_eq!(
            Value::Object(out),
            json!({
                "name": "山田\u{3000}太郎",
                "name_substituted": "00010",
                "birthdate": "1989-01-07",
                "gender": "male",
                "address": { "formatted": "東京都千代田区千代田一番一号", "country": "JP" },
                "address_substituted": "00000010000000",
            })
        );
        // Scopes put nothing into the ID token.
        assert!(released(&city(), &["openid", "profile"], None, Target::IdToken).is_empty());
    }

    #[test]
    fn release_is_limited_to_the_registration() {
        let claims = json!({
            "userinfo": {
                "gender": { "essential": true },
                "address": null,
                "verified_claims": { "claims": { "address": null } },
            },
        });
        let out = released(
            &hospital(),
            &["openid", "profile", "address"],
            Some(&claims),
            Target::Userinfo,
        );
        assert_eq!(keys(&out), set(&["name", "name_substituted", "birthdate"]));
    }

    #[test]
    fn verified_claims_carry_the_trust_framework_time_and_evidence() {
        let claims = json!({
            "id_token": {
                "verified_claims": {
                    "verification": { "trust_framework": null },
                    "claims": { "name": null, "birthdate": { "essential": true } },
                },
            },
        });
        let out = released(&city(), &["openid"], Some(&claims), Target::IdToken);
        // Asked inside verified_claims only: no plain `name` or `birthdate` beside it.
        assert_eq!(keys(&out), set(&["verified_claims"]));
        let vc = &out["verified_claims"];
        assert_eq!(vc["verification"]["trust_framework"], TF);
        assert_eq!(vc["verification"]["time"], "2023-11-14T22:13:20Z");
        assert_eq!(
            vc["verification"]["evidence"],
            json!([{
                "type": "electronic_signature",
                "signature_type": "jpki_signature_certificate",
                "issuer": "C=JP, O=JPKI-DEMO, OU=JPKI for digital signature, \
                           OU=Japan Agency for Local Authority Information Systems",
                "serial_number": "054cfcd8",
                "created_at": "2023-11-14T22:13:20Z",
            }])
        );
        assert_eq!(
            vc["claims"],
            json!({
                "name": "山田\u{3000}太郎",
                "name_substituted": "00010",
                "birthdate": "1989-01-07",
            })
        );
        // They go where they were asked for, not to the other target.
        assert!(released(&city(), &["openid"], Some(&claims), Target::Userinfo).is_empty());
    }

    #[test]
    fn verified_claims_without_a_claims_member_are_the_registered_basic_four() {
        let claims = json!({ "userinfo": { "verified_claims": { "claims": {} } } });
        let out = released(&city(), &["openid"], Some(&claims), Target::Userinfo);
        let vc = out["verified_claims"]["claims"].as_object().unwrap();
        assert_eq!(
            keys(vc),
            set(&[
                "name",
                "name_substituted",
                "birthdate",
                "gender",
                "address",
                "address_substituted",
            ])
        );
        let claims = json!({ "userinfo": { "verified_claims": null } });
        let out = released(
            &hospital_with_verified_claims(),
            &["openid"],
            Some(&claims),
            Target::Userinfo,
        );
        let vc = out["verified_claims"]["claims"].as_object().unwrap();
        assert_eq!(keys(vc), set(&["name", "name_substituted", "birthdate"]));
    }

    #[test]
    fn verified_claims_need_the_registration_to_allow_the_container() {
        let claims = json!({ "userinfo": { "verified_claims": { "claims": { "name": null } } } });
        let out = released(&hospital(), &["openid"], Some(&claims), Target::Userinfo);
        assert!(out.is_empty(), "{out:?}");
        // Allowed the container but none of the claims asked inside it: no empty container.
        let claims =
            json!({ "userinfo": { "verified_claims": { "claims": { "address": null } } } });
        let out = released(
            &hospital_with_verified_claims(),
            &["openid"],
            Some(&claims),
            Target::Userinfo,
        );
        assert!(out.is_empty(), "{out:?}");
    }

    /// OIDC4IDA §6: a trust framework other than ours omits `verified_claims`, not an error.
    #[test]
    fn an_unmet_trust_framework_constraint_omits_verified_claims() {
        let ask = |tf: Value| {
            let claims = json!({
                "userinfo": {
                    "name": null,
                    "verified_claims": {
                        "verification": { "trust_framework": tf },
                        "claims": { "birthdate": null },
                    },
                },
            });
            released(&city(), &["openid"], Some(&claims), Target::Userinfo)
        };
        let out = ask(json!({ "value": "de_aml" }));
        assert_eq!(keys(&out), set(&["name", "name_substituted"]));
        let out = ask(json!({ "values": ["de_aml", "uk_tfida"] }));
        assert!(!out.contains_key("verified_claims"));
        for accepted in [
            json!({ "value": TF }),
            json!({ "values": ["de_aml", TF] }),
            Value::Null,
        ] {
            let out = ask(accepted.clone());
            assert_eq!(
                out["verified_claims"]["verification"]["trust_framework"], TF,
                "{accepted}"
            );
        }
    }

    /// OIDC Core §5.5.1 `value` / `values` inside verified_claims: a value the person's data
    /// does not match is omitted, never released anyway.
    #[test]
    fn a_value_constraint_the_person_does_not_meet_omits_that_claim() {
        let ask = |claims: Value| {
            let claims = json!({ "userinfo": { "verified_claims": { "claims": claims } } });
            released(&city(), &["openid"], Some(&claims), Target::Userinfo)
        };
        let out = ask(json!({ "birthdate": { "value": "2000-01-01" }, "name": null }));
        let vc = out["verified_claims"]["claims"].as_object().unwrap();
        assert_eq!(keys(vc), set(&["name", "name_substituted"]));

        let out = ask(json!({ "gender": { "values": ["female", "not_stated"] } }));
        assert!(out.is_empty(), "nothing met: no verified_claims: {out:?}");

        let out = ask(
            json!({ "gender": { "values": ["male"] }, "birthdate": { "value": "1989-01-07" } }),
        );
        assert_eq!(
            out["verified_claims"]["claims"],
            json!({ "gender": "male", "birthdate": "1989-01-07" })
        );
    }

    /// The policy's `[claim_release]` narrows a kind's registrations (at load); release then
    /// keeps to the narrowed registration, inside verified_claims too.
    #[test]
    fn policy_claim_release_narrows_what_a_registration_releases() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("city-portal.toml"), CITY_PORTAL).unwrap();
        std::fs::write(tmp.path().join("hospital.toml"), HOSPITAL).unwrap();
        let mut registry = Registry::load_dir(tmp.path()).unwrap();
        let mut policy = Policy::default();
        policy.claim_release.insert(
            RpKind::PublicSector,
            vec!["name".into(), "verified_claims".into()],
        );
        registry.restrict_claims(&policy);

        let c = registry.get("city-portal").unwrap();
        assert_eq!(
            c.claims,
            BTreeSet::from(["name", "verified_claims"].map(String::from))
        );
        let claims = json!({ "userinfo": { "birthdate": null, "verified_claims": null } });
        let out = released(
            c,
            &["openid", "profile", "address"],
            Some(&claims),
            Target::Userinfo,
        );
        assert_eq!(
            keys(&out),
            set(&["name", "name_substituted", "verified_claims"])
        );
        assert_eq!(
            out["verified_claims"]["claims"],
            json!({ "name": "山田\u{3000}太郎", "name_substituted": "00010" })
        );
        // A kind the policy does not list keeps its registration.
        assert_eq!(
            registry.get("hospital").unwrap().claims,
            BTreeSet::from(["birthdate", "name"].map(String::from))
        );
    }

    /// The broker never holds the My Number, and no request or registration can make anything
    /// of that name leave: every key of every release is one the broker documents.
    #[test]
    fn nothing_named_my_number_is_ever_released() {
        let my_number = json!({ "essential": true });
        let claims = json!({
            "userinfo": {
                "my_number": my_number, "個人番号": my_number, "mynumber": my_number,
                "name": null,
                "verified_claims": {
                    "claims": {
                        "my_number": null, "個人番号": null, "マイナンバー": null, "name": null,
                    },
                },
            },
            "id_token": {
                "my_number": my_number, "individual_number": my_number, "birthdate": null,
                "verified_claims": { "claims": {} },
            },
        });
        let documented = set(&[
            "name",
            "name_substituted",
            "birthdate",
            "gender",
            "address",
            "formatted",
            "country",
            "address_substituted",
            "verified_claims",
            "verification",
            "trust_framework",
            "time",
            "evidence",
            "type",
            "signature_type",
            "issuer",
            "serial_number",
            "created_at",
            "claims",
        ]);
        let s = [
            "openid",
            "profile",
            "name",
            "birthdate",
            "gender",
            "address",
        ];
        for t in [Target::Userinfo, Target::IdToken] {
            let out = Value::Object(released(&city(), &s, Some(&claims), t));
            assert!(out.get("verified_claims").is_some(), "{t:?}: {out}");
            let mut found = Vec::new();
            all_keys(&out, &mut found);
            for k in &found {
                let lower = k.to_lowercase();
                assert!(
                    !lower.contains("number") || k == "serial_number",
                    "{t:?}: {k}"
                );
                assert!(
                    !k.contains("個人番号") && !k.contains("マイナンバー"),
                    "{t:?}: {k}"
                );
                assert!(documented.contains(k.as_str()), "{t:?}: unexpected key {k}");
            }
            let asked = requested(&city(), &scope(&s), Some(&claims), t);
            assert!(
                asked.iter().all(|c| documented.contains(c.as_str())),
                "{asked:?}"
            );
        }
        let c = city();
        let items = consent_items(&c, &request(&c, &["openid"], Some(claims)));
        assert_eq!(
            items,
            ["claim:birthdate", "claim:name", "claim:verified_claims"]
        );
        // Nor can a registration ask for it.
        let e = parse_client(
            Path::new("x.toml"),
            &CITY_PORTAL.replace(
                r#""verified_claims"]"#,
                r#""verified_claims", "my_number"]"#,
            ),
        )
        .unwrap_err();
        assert!(e.reason.contains("claim `my_number` is not one"), "{e}");
    }
}
