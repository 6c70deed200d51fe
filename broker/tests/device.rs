//! The device authorization grant (RFC 8628): a set-top box asks, the person approves on a
//! phone with the card (or a passkey) through the user-code page, the box polls — with every
//! answer the RFC names, the guessing bound, and nothing stored on a refusal.

mod common;
use axum::http::StatusCode;
use common::*;
use serde_json::Value;

const TV: (&str, &str) = ("catv", "catv-demo-secret");
const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn payload(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&broker::clock::b64url_decode(p).unwrap()).unwrap()
}

async fn ask(t: &TestBroker, form: &[(&str, &str)]) -> Resp {
    t.browser()
        .post_form("/device_authorization", form, Some(TV))
        .await
}

async fn poll(t: &TestBroker, device_code: &str) -> Resp {
    t.browser()
        .post_form(
            "/token",
            &[("grant_type", GRANT), ("device_code", device_code)],
            Some(TV),
        )
        .await
}

fn csrf_and_code(page: &Resp) -> (String, String) {
    let field = |name: &str| {
        page.body
            .split(&format!("name=\"{name}\" value=\""))
            .nth(1)
            .unwrap_or_else(|| panic!("no {name} in {}", page.body))
            .split('"')
            .next()
            .unwrap()
            .to_string()
    };
    (field("csrf"), field("user_code"))
}

/// The person's side: open verification_uri_complete, confirm, log in with the card and
/// consent; the page the callback shows.
async fn approve(br: &mut Browser, card: &mut broker::card::VirtualCard, complete: &str) -> Resp {
    let page = br.get(complete).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let (csrf, code) = csrf_and_code(&page);
    let r = br
        .post_form(
            "/device",
            &[("user_code", &code), ("csrf", &csrf), ("action", "approve")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let mut loc = r.location.unwrap();
    if let Some(tx) = loc.strip_prefix("/login/") {
        let tx = tx.to_string();
        let st = br.get(&format!("/login/{tx}/status")).await.json();
        let h = helper_answer(
            br,
            &path_of(st["helper_url"].as_str().unwrap()),
            card,
            "1234",
        )
        .await;
        assert_eq!(h.status, StatusCode::OK, "{}", h.body);
        loc = br
            .get(&format!("/login/{tx}/continue"))
            .await
            .location
            .unwrap();
    }
    if loc.contains("/consent/") {
        let page = br.get(&loc).await;
        let csrf = csrf_of(&page);
        loc = br
            .post_form(&loc, &[("csrf", &csrf), ("decision", "approve")], None)
            .await
            .location
            .unwrap();
    }
    assert!(
        loc.starts_with(&format!("{ISSUER}/device/callback?")),
        "{loc}"
    );
    br.get(&loc).await
}

#[tokio::test]
async fn a_box_asks_the_person_approves_with_the_card_and_the_box_gets_its_tokens() {
    let t = TestBroker::new().await;
    let r = ask(&t, &[("scope", "openid")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let d = r.json();
    let user_code = d["user_code"].as_str().unwrap();
    assert_eq!(user_code.len(), 9, "{user_code}");
    assert!(
        user_code
            .chars()
            .all(|c| c == '-' || "BCDFGHJKLMNPQRSTVWXZ".contains(c))
    );
    assert_eq!(d["verification_uri"], format!("{ISSUER}/device"));
    assert_eq!(
        d["verification_uri_complete"],
        format!("{ISSUER}/device?user_code={user_code}")
    );
    assert_eq!(
        (d["expires_in"].as_i64(), d["interval"].as_i64()),
        (Some(600), Some(5))
    );
    let device_code = d["device_code"].as_str().unwrap();
    assert_eq!(t.counts().await.device_grants, 1);

    // Polling before the person answers: pending; too soon again: slow_down, and the
    // interval is 10 s from then on.
    let r = poll(&t, device_code).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "authorization_pending");
    assert_eq!(poll(&t, device_code).await.json()["error"], "slow_down");
    t.clock.advance(time::Duration::seconds(6));
    assert_eq!(poll(&t, device_code).await.json()["error"], "slow_down");
    // (that was too soon for 10 s as well: 15 s now)
    t.clock.advance(time::Duration::seconds(16));
    assert_eq!(
        poll(&t, device_code).await.json()["error"],
        "authorization_pending"
    );

    // The page shows which service asked, and the code.
    let mut phone = t.browser();
    let page = phone
        .get(&format!(
            "/device?user_code={}&lang=en",
            user_code.to_lowercase()
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Example Cable TV"), "{}", page.body);
    assert!(page.body.contains(user_code));
    let mut card = t.card("card");
    let done = approve(
        &mut phone,
        &mut card,
        d["verification_uri_complete"].as_str().unwrap(),
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("id=\"device-done\""), "{}", done.body);

    t.clock.advance(time::Duration::seconds(16));
    let r = poll(&t, device_code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let tok = r.json();
    let id = payload(tok["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], "catv");
    assert_eq!(id["acr"], "aal3");
    assert!(tok["refresh_token"].is_string());
    // Once: the next poll is refused, and the grant the tokens came from stands.
    let r = poll(&t, device_code).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    let info = t
        .browser()
        .get_bearer("/userinfo", tok["access_token"].as_str().unwrap())
        .await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.body);
    // The same box again: the person's SSO session and consent let the phone approve at once.
    let d2 = ask(&t, &[("scope", "openid")]).await.json();
    let done = approve(
        &mut phone,
        &mut card,
        d2["verification_uri_complete"].as_str().unwrap(),
    )
    .await;
    assert!(done.body.contains("id=\"device-done\""), "{}", done.body);
    let r = poll(&t, d2["device_code"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Discovery says so.
    let disc = t
        .browser()
        .get("/.well-known/openid-configuration")
        .await
        .json();
    assert_eq!(
        disc["device_authorization_endpoint"],
        format!("{ISSUER}/device_authorization")
    );
    assert!(
        disc["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == GRANT)
    );
}

#[tokio::test]
async fn a_denial_an_expiry_and_refusals_are_answered_as_the_rfc_says() {
    let t = TestBroker::new().await;
    // "This is not my device": access_denied.
    let d = ask(&t, &[("scope", "openid")]).await.json();
    let mut phone = t.browser();
    let page = phone
        .get(d["verification_uri_complete"].as_str().unwrap())
        .await;
    let (csrf, code) = csrf_and_code(&page);
    let page = phone
        .post_form(
            "/device",
            &[("user_code", &code), ("csrf", &csrf), ("action", "deny")],
            None,
        )
        .await;
    assert!(page.body.contains("id=\"device-denied\""), "{}", page.body);
    let r = poll(&t, d["device_code"].as_str().unwrap()).await;
    assert_eq!(r.json()["error"], "access_denied");
    // Used codes cannot be taken up again.
    let page = phone
        .get(d["verification_uri_complete"].as_str().unwrap())
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);

    // Expired: expired_token.
    let d = ask(&t, &[("scope", "openid")]).await.json();
    t.clock.advance(time::Duration::seconds(601));
    let r = poll(&t, d["device_code"].as_str().unwrap()).await;
    assert_eq!(r.json()["error"], "expired_token");

    // Refused with nothing stored: a client not registered for the grant, no openid, an
    // unknown device code, another client's device code, a confirmation without its form.
    let d = ask(&t, &[("scope", "openid")]).await.json();
    let (grants, txs) = (
        t.counts().await.device_grants,
        t.broker.store.count_transactions().await.unwrap(),
    );
    let r = t
        .browser()
        .post_form(
            "/device_authorization",
            &[("scope", "openid")],
            Some((CLIENT, SECRET)),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "unauthorized_client");
    assert!(
        r.body.contains("not registered for the device grant"),
        "{}",
        r.body
    );
    let r = ask(&t, &[("scope", "profile")]).await;
    assert_eq!(r.json()["error"], "invalid_scope");
    assert_eq!(r.json()["error_description"], "scope must include `openid`");
    let r = ask(&t, &[("scope", "openid"), ("claims", "not json")]).await;
    assert_eq!(r.json()["error"], "invalid_request");
    let r = poll(&t, "no-such-code").await;
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(r.json()["error_description"], "the device_code is invalid");
    let r = t
        .browser()
        .post_form(
            "/token",
            &[
                ("grant_type", GRANT),
                ("device_code", d["device_code"].as_str().unwrap()),
            ],
            Some((CLIENT, SECRET)),
        )
        .await;
    assert_eq!(r.json()["error"], "unauthorized_client", "{}", r.body);
    let r = phone
        .post_form(
            "/device",
            &[
                ("user_code", d["user_code"].as_str().unwrap()),
                ("csrf", "forged"),
                ("action", "approve"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(t.counts().await.device_grants, grants);
    assert_eq!(t.broker.store.count_transactions().await.unwrap(), txs);
    let g = t
        .broker
        .store
        .device_grant_by_device_code(&broker::clock::token_hash(
            d["device_code"].as_str().unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((g.status.as_str(), g.browser_hash), ("pending", None));
    // Still pending for its device.
    assert_eq!(
        poll(&t, d["device_code"].as_str().unwrap()).await.json()["error"],
        "authorization_pending"
    );
}

#[tokio::test]
async fn guessing_user_codes_is_bounded_per_source() {
    let t = TestBroker::new().await;
    let d = ask(&t, &[("scope", "openid")]).await.json();
    let right = d["user_code"].as_str().unwrap().to_string();
    let mut guesser = t.browser_at("198.51.100.7:4000");
    let txs = t.broker.store.count_transactions().await.unwrap();
    for i in 0..9 {
        let r = guesser
            .post_form(
                "/device",
                &[("user_code", "BBBB-BBBB"), ("action", "lookup")],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "attempt {i}: {}", r.body);
        assert!(r.body.contains("id=\"device-error\""));
    }
    // The tenth wrong code reaches the bound; from then on even the right one is refused.
    let r = guesser
        .post_form(
            "/device",
            &[("user_code", "CCCC-CCCC"), ("action", "lookup")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let r = guesser.get(&format!("/device?user_code={right}")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!r.body.contains("Example Cable TV") && !r.body.contains("サンプルケーブルテレビ"));
    // Another source is not affected; ten minutes later neither is this one.
    let r = t
        .browser_at("203.0.113.9:4000")
        .get(&format!("/device?user_code={right}"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    t.clock.advance(time::Duration::seconds(601));
    let d = ask(&t, &[("scope", "openid")]).await.json();
    let r = guesser
        .get(&format!(
            "/device?user_code={}",
            d["user_code"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(t.broker.store.count_transactions().await.unwrap(), txs);
    let m = t.browser().get("/metrics").await.body;
    assert!(
        m.contains("broker_device_user_code_failures_total 10"),
        "{m}"
    );
}
