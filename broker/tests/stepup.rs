//! Levels, SSO across relying parties, step-up, essential acr, RP minimums, and an example
//! resource server answering `insufficient_user_authentication` (RFC 9470).

mod common;
use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

const LEVELS: &str = r#"
[[levels]]
name = "aal1"
acr = "aal1"

[[levels]]
name = "aal3"
acr = "aal3"
requires = { methods = ["jpki_user_auth"], hardware_key = true, user_verified = true, revocation_confirmed = true }

[[levels]]
name = "verified"
acr = "urn:broker:verified"
requires = { methods = ["jpki_user_auth"], hardware_key = true, user_verified = true, revocation_confirmed = true, proofed = true }

[[levels]]
name = "impossible"
acr = "urn:broker:impossible"
requires = { methods = ["jpki_signature"] }

[proofing]
allow_unproofed = true

[minimums]
hospital = "urn:broker:verified"
catv = "urn:broker:impossible"
"#;

async fn broker() -> TestBroker {
    TestBroker::with_policy_files(&[], &[("assurance.toml", LEVELS)]).await
}

fn acr_of(tok: &Value) -> Value {
    let p = tok["id_token"].as_str().unwrap().split('.').nth(1).unwrap();
    let v: Value = serde_json::from_slice(&broker::clock::b64url_decode(p).unwrap()).unwrap();
    v["acr"].clone()
}

#[tokio::test]
async fn sso_across_rps_and_step_up_only_when_needed() {
    let t = broker().await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let d = br.get("/.well-known/openid-configuration").await.json();
    assert_eq!(
        d["acr_values_supported"],
        json!([
            "aal1",
            "aal3",
            "urn:broker:verified",
            "urn:broker:impossible"
        ])
    );
    // RP A at a high level: the authentication card alone (unproofed account allowed).
    let s = start_login(
        &mut br,
        &auth_url(&[("scope", "openid"), ("acr_values", "aal3")]),
    )
    .await;
    let r = helper_answer_once(&mut br, &s.helper_path, &mut card, "1234").await;
    assert_eq!(r.json()["status"], "authenticated");
    let r = br.get(&format!("/login/{}/continue", s.tx)).await;
    let tok = redeem(&mut br, &r.redirect_params()["code"]).await.json();
    assert_eq!(acr_of(&tok), "aal3");
    // RP B asking for less: in at once — no login page, no consent page.
    let spa = "http://localhost:8766/callback";
    let r = br
        .get(&auth_url(&[
            ("client_id", "local-dev-spa"),
            ("redirect_uri", spa),
            ("scope", "openid"),
            ("acr_values", "aal1"),
        ]))
        .await;
    let p = r.redirect_params();
    assert!(p.contains_key("code"), "{p:?}");
    let r = br
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &p["code"]),
                ("redirect_uri", spa),
                ("code_verifier", VERIFIER),
                ("client_id", "local-dev-spa"),
            ],
            None,
        )
        .await;
    assert_eq!(acr_of(&r.json()), "aal1");
    // RP C asking for more than the session holds: a step-up, asking only for proofing on top.
    let r = br
        .get(&auth_url(&[
            ("scope", "openid"),
            ("acr_values", "urn:broker:verified"),
        ]))
        .await;
    let loc = r.location.unwrap();
    assert!(loc.starts_with("/login/"), "{loc}");
    let tx = loc.trim_start_matches("/login/").to_string();
    let st = br.get(&format!("/login/{tx}/status")).await.json();
    let helper = path_of(st["helper_url"].as_str().unwrap());
    // Only what is missing is asked for: the signature certificate, not the card login again.
    assert_eq!(st["stage"], "signature");
    assert_eq!(br.get(&helper).await.json()["certificate"], "signature");
    let r = helper_answer_once(&mut br, &helper, &mut card, "ABC123").await;
    assert_eq!(r.json()["status"], "authenticated");
    let r = br.get(&format!("/login/{tx}/continue")).await;
    let tok = redeem(&mut br, &r.redirect_params()["code"]).await.json();
    assert_eq!(acr_of(&tok), "urn:broker:verified");
    assert_eq!(t.counts().await.accounts, 1, "the same account throughout");
}

#[tokio::test]
async fn unmet_essential_acr_and_rp_minimums() {
    let t = broker().await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let essential =
        json!({"id_token": {"acr": {"essential": true, "value": "urn:broker:impossible"}}})
            .to_string();
    let s = start_login(
        &mut br,
        &auth_url(&[("scope", "openid"), ("claims", &essential)]),
    )
    .await;
    let r = helper_answer_once(&mut br, &s.helper_path, &mut card, "1234").await;
    assert_eq!(r.json()["status"], "authenticated");
    let r = br.get(&format!("/login/{}/continue", s.tx)).await;
    let p = r.redirect_params();
    assert_eq!(p["error"], "unmet_authentication_requirements");
    assert_eq!(
        p["error_description"],
        "the authentication does not meet the essential acr (urn:broker:impossible)"
    );
    assert_eq!(p["state"], "st-1");
    assert_eq!(t.counts().await.codes, 0);
    // With a session and prompt=none, an unmet essential acr cannot be fixed silently.
    let r = br
        .get(&auth_url(&[
            ("scope", "openid"),
            ("claims", &essential),
            ("prompt", "none"),
        ]))
        .await;
    assert_eq!(r.redirect_params()["error"], "login_required");
    // An essential acr the session meets: no prompt, the code carries that acr.
    let ok = json!({"id_token": {"acr": {"essential": true, "values": ["urn:broker:impossible", "aal3"]}}}).to_string();
    let r = br
        .get(&auth_url(&[("scope", "openid"), ("claims", &ok)]))
        .await;
    let tok = redeem(&mut br, &r.redirect_params()["code"]).await.json();
    assert_eq!(acr_of(&tok), "aal3");

    // The hospital's kind minimum requires a proofed account: its login asks for proofing
    // although it wants no personal data.
    let hospital = auth_url(&[
        ("client_id", "hospital"),
        (
            "redirect_uri",
            "https://patients.hospital.example.jp/oidc/cb",
        ),
        ("scope", "openid"),
    ]);
    let mut b2 = t.browser();
    let s = start_login(&mut b2, &hospital).await;
    let r = helper_answer_once(&mut b2, &s.helper_path, &mut card, "1234").await;
    assert_eq!(r.json()["status"], "proofing_required");
    // The CATV kind minimum cannot be met by a card login: unmet_authentication_requirements.
    let catv = auth_url(&[
        ("client_id", "catv"),
        ("redirect_uri", "https://my.catv.example.jp/callback"),
        ("scope", "openid"),
    ]);
    let mut b3 = t.browser();
    let s = start_login(&mut b3, &catv).await;
    helper_answer(&mut b3, &s.helper_path, &mut card, "1234").await;
    let r = b3.get(&format!("/login/{}/continue", s.tx)).await;
    let p = r.redirect_params();
    assert_eq!(p["error"], "unmet_authentication_requirements");
    assert!(
        p["error_description"].contains("minimum level urn:broker:impossible"),
        "{p:?}"
    );
}

/// A resource server that demands the `verified` level within 5 minutes, as RFC 9470 shows:
/// it introspects the token at the broker and answers 401 insufficient_user_authentication.
async fn resource_server(base: String) -> String {
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/account",
        axum::routing::get(move |headers: HeaderMap| {
            let base = base.clone();
            async move {
                let token = headers["authorization"].to_str().unwrap().trim_start_matches("Bearer ").to_string();
                let i: Value = reqwest::Client::new()
                    .post(format!("{base}/introspect"))
                    .basic_auth(CLIENT, Some(SECRET))
                    .form(&[("token", token)])
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if i["active"] != true {
                    return (StatusCode::UNAUTHORIZED, [("www-authenticate", "Bearer error=\"invalid_token\"".to_string())]).into_response();
                }
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let fresh = now - i["auth_time"].as_i64().unwrap() <= 300;
                if i["acr"] != "urn:broker:verified" || !fresh {
                    let h = "Bearer error=\"insufficient_user_authentication\", error_description=\"A verified identity is required\", acr_values=\"urn:broker:verified\", max_age=300";
                    return (StatusCode::UNAUTHORIZED, [("www-authenticate", h.to_string())]).into_response();
                }
                axum::Json(json!({"account": i["sub"]})).into_response()
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/account",
        l.local_addr().unwrap().port()
    );
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

#[tokio::test]
async fn resource_server_demands_step_up_with_rfc9470() {
    let t = broker().await;
    let rs = resource_server(t.base.clone()).await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let s = start_login(&mut br, &auth_url(&[("scope", "openid")])).await;
    helper_answer(&mut br, &s.helper_path, &mut card, "1234").await;
    let r = br.get(&format!("/login/{}/continue", s.tx)).await;
    let tok = redeem(&mut br, &r.redirect_params()["code"]).await.json();
    let http = reqwest::Client::new();
    let r = http
        .get(&rs)
        .bearer_auth(tok["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let h = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        h.contains("error=\"insufficient_user_authentication\""),
        "{h}"
    );
    // The RP follows the challenge: acr_values and max_age from the header.
    let acr = h
        .split("acr_values=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let r = br
        .get(&auth_url(&[
            ("scope", "openid"),
            ("acr_values", &acr),
            ("max_age", "300"),
        ]))
        .await;
    let loc = r.location.unwrap();
    let tx = loc.trim_start_matches("/login/").to_string();
    let st = br.get(&format!("/login/{tx}/status")).await.json();
    let helper = path_of(st["helper_url"].as_str().unwrap());
    helper_answer(&mut br, &helper, &mut card, "1234").await;
    let r = br.get(&format!("/login/{tx}/continue")).await;
    let tok = redeem(&mut br, &r.redirect_params()["code"]).await.json();
    let r = http
        .get(&rs)
        .bearer_auth(tok["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

const AGED: &str = r#"
[[levels]]
name = "aal1"
acr = "aal1"

[[levels]]
name = "aal3"
acr = "aal3"
requires = { methods = ["jpki_user_auth"], hardware_key = true, user_verified = true, revocation_confirmed = true }
max_session_age = 300

[claim_release]
other = ["name", "verified_claims"]
"#;

#[tokio::test]
async fn session_age_per_level_and_claim_release_by_kind() {
    let t = TestBroker::with_policy_files(&[], &[("assurance.toml", AGED)]).await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let p = login_with_card(&mut br, &mut card, &auth_url(&[("acr_values", "aal3")])).await;
    let tok = redeem(&mut br, &p["code"]).await.json();
    assert_eq!(acr_of(&tok), "aal3");
    // The policy lets RPs of kind `other` (local-dev) receive the name only, whatever their
    // registration lists: profile asked for name, birthdate and gender.
    let ui = br
        .get_bearer("/userinfo", tok["access_token"].as_str().unwrap())
        .await
        .json();
    assert!(ui["name"].is_string(), "{ui}");
    assert!(
        ui.get("birthdate").is_none() && ui.get("gender").is_none(),
        "{ui}"
    );
    // Past aal3's max_session_age the session reaches aal1 only: asking for aal3 logs in again…
    t.clock.advance(time::Duration::seconds(301));
    let r = br.get(&auth_url(&[("acr_values", "aal3")])).await;
    assert!(r.location.unwrap().starts_with("/login/"));
    // …and without a preference the same session gets in, stating what it still reaches.
    let r = br.get(&auth_url(&[])).await;
    let tok = redeem(&mut br, &r.redirect_params()["code"]).await.json();
    assert_eq!(acr_of(&tok), "aal1");
}
