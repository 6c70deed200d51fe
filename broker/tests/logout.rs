//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) and `sid` in ID tokens: a
//! hint naming the current session ends it at once and returns to the registered URI with
//! `state`; a missing or stale hint asks the person first; an unregistered return URI, another
//! issuer's token or a mismatched client are refused on a page, and the session stays.

mod common;
use axum::http::StatusCode;
use common::*;
use serde_json::Value;

const BACK: &str = "http://127.0.0.1:8765/logged-out";

fn payload(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&broker::clock::b64url_decode(p).unwrap()).unwrap()
}

/// A card login and its ID token.
async fn logged_in(t: &TestBroker, card: &mut broker::card::VirtualCard) -> (Browser, String) {
    let mut br = t.browser();
    let p = login_with_card(&mut br, card, &auth_url(&[])).await;
    let tok = redeem(&mut br, &p["code"]).await.json();
    (br, tok["id_token"].as_str().unwrap().to_string())
}

/// Does the browser's SSO session still let a request through without the card?
async fn still_logged_in(br: &mut Browser) -> bool {
    let r = br.get(&auth_url(&[])).await;
    r.location
        .as_deref()
        .is_some_and(|l| l.starts_with(REDIRECT))
}

fn logout_url(p: &[(&str, &str)]) -> String {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(p)
        .finish();
    format!("/logout?{q}")
}

#[tokio::test]
async fn a_hint_of_the_current_session_logs_out_at_once_and_returns_with_state() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let (mut br, id_token) = logged_in(&t, &mut card).await;
    let sid = payload(&id_token)["sid"].as_str().unwrap().to_string();
    assert_eq!(sid.len(), 22);
    // The same session's next ID token (SSO) carries the same sid; a refresh's too.
    let r = br.get(&auth_url(&[])).await;
    let code = r.redirect_params()["code"].clone();
    let tok = redeem(&mut br, &code).await.json();
    assert_eq!(payload(tok["id_token"].as_str().unwrap())["sid"], sid);
    let r = br
        .post_form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tok["refresh_token"].as_str().unwrap()),
            ],
            Some((CLIENT, SECRET)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(payload(r.json()["id_token"].as_str().unwrap())["sid"], sid);
    assert!(still_logged_in(&mut br).await);
    let before = t.counts().await;
    let r = br
        .get(&logout_url(&[
            ("id_token_hint", &id_token),
            ("post_logout_redirect_uri", BACK),
            ("state", "bye-1"),
        ]))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some(&*format!("{BACK}?state=bye-1")));
    assert!(
        r.headers
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().starts_with("broker_session=;"))
    );
    assert_eq!(t.counts().await.sessions, before.sessions - 1);
    assert!(!still_logged_in(&mut br).await);
    // Discovery names the endpoint.
    let d = t
        .browser()
        .get("/.well-known/openid-configuration")
        .await
        .json();
    assert_eq!(d["end_session_endpoint"], format!("{ISSUER}/logout"));
}

#[tokio::test]
async fn without_a_hint_or_with_a_stale_one_the_person_is_asked() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let (mut br, old_token) = logged_in(&t, &mut card).await;
    // Another session later (prompt=login): the old token's sid is stale.
    let p = login_with_card(&mut br, &mut card, &auth_url(&[("prompt", "login")])).await;
    let _ = redeem(&mut br, &p["code"]).await;
    for params in [
        vec![
            ("client_id", CLIENT),
            ("post_logout_redirect_uri", BACK),
            ("state", "s2"),
        ],
        vec![
            ("id_token_hint", old_token.as_str()),
            ("post_logout_redirect_uri", BACK),
            ("state", "s2"),
        ],
    ] {
        let before = t.counts().await;
        let page = br.get(&logout_url(&params)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("id=\"logout-ask\""), "{}", page.body);
        assert!(
            page.body.contains("Local development RP") || page.body.contains("ローカル開発用RP")
        );
        assert_eq!(t.counts().await, before, "asking stores and ends nothing");
    }
    // A forged confirmation is refused; the page's own ends the session and returns.
    let page = br
        .get(&logout_url(&[
            ("client_id", CLIENT),
            ("post_logout_redirect_uri", BACK),
            ("state", "s3"),
        ]))
        .await;
    let r = br
        .post_form(
            "/logout",
            &[
                ("confirm", "yes"),
                ("csrf", "forged"),
                ("client_id", CLIENT),
                ("post_logout_redirect_uri", BACK),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(still_logged_in(&mut br).await);
    let csrf = csrf_of(&page);
    let r = br
        .post_form(
            "/logout",
            &[
                ("confirm", "yes"),
                ("csrf", &csrf),
                ("client_id", CLIENT),
                ("post_logout_redirect_uri", BACK),
                ("state", "s3"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some(&*format!("{BACK}?state=s3")));
    assert!(!still_logged_in(&mut br).await);
    // With no session at all: nothing to end, straight back.
    let r = t
        .browser()
        .get(&logout_url(&[
            ("client_id", CLIENT),
            ("post_logout_redirect_uri", BACK),
        ]))
        .await;
    assert_eq!(r.location.as_deref(), Some(BACK));
    // And without a return URI: the "logged out" page.
    let r = t.browser().get("/logout").await;
    assert!(r.body.contains("id=\"logged-out\""), "{}", r.body);
}

#[tokio::test]
async fn bad_logout_requests_are_refused_on_a_page_and_the_session_stays() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let (mut br, id_token) = logged_in(&t, &mut card).await;
    // An ID token of another issuer, with its own key.
    let foreign = {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some("other".into());
        h.typ = Some("JWT".into());
        let claims = serde_json::json!({
            "iss": "https://other-idp.example", "aud": CLIENT, "sub": "someone",
            "iat": 1, "exp": 2, "sid": payload(&id_token)["sid"],
        });
        jsonwebtoken::encode(&h, &claims, &key).unwrap()
    };
    let before = t.counts().await;
    for (params, says) in [
        (
            vec![
                ("id_token_hint", id_token.as_str()),
                ("post_logout_redirect_uri", "https://evil.example/"),
            ],
            "post_logout_redirect_uri `https://evil.example/` is not registered for client `local-dev`",
        ),
        (
            vec![
                ("client_id", CLIENT),
                ("post_logout_redirect_uri", "http://127.0.0.1:8765/callback"),
            ],
            "post_logout_redirect_uri `http://127.0.0.1:8765/callback` is not registered for client `local-dev`",
        ),
        (
            vec![
                ("id_token_hint", foreign.as_str()),
                ("post_logout_redirect_uri", BACK),
            ],
            "id_token_hint is not an ID token this broker issued",
        ),
        (
            vec![("id_token_hint", "not-a-jwt")],
            "id_token_hint is not an ID token this broker issued",
        ),
        (
            vec![
                ("id_token_hint", id_token.as_str()),
                ("client_id", "hospital"),
            ],
            "client_id is not the audience of id_token_hint",
        ),
        (
            vec![("post_logout_redirect_uri", BACK)],
            "post_logout_redirect_uri needs id_token_hint or client_id to say whose it is",
        ),
        (
            vec![("client_id", "nobody"), ("post_logout_redirect_uri", BACK)],
            "client_id `nobody` is not registered",
        ),
    ] {
        let r = br.get(&logout_url(&params)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{says}: {}", r.body);
        assert!(r.location.is_none(), "never a redirect");
        let body = r.body.replace("&#x2f;", "/").replace("&#x60;", "`");
        assert!(body.contains(says), "{says}: {body}");
        assert_eq!(t.counts().await.sessions, before.sessions, "{says}");
        assert!(still_logged_in(&mut br).await, "{says}");
    }
}
