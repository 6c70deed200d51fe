//! Passkeys: enrolled from a card session on a proofed account, used to log in at aal2 (never
//! aal3), the card behind them checked again at every use; each refusal with its error and
//! nothing stored. The authenticator is a software one (broker_testkit::authenticator) that
//! answers as a browser and a platform authenticator would.

mod common;
use axum::http::StatusCode;
use broker::pki::CertKind;
use broker_testkit::authenticator::SoftAuthenticator;
use common::*;
use serde_json::{Value, json};

fn payload(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&broker::clock::b64url_decode(p).unwrap()).unwrap()
}

/// A card login (proofing the person on first use) that leaves `br` with an aal3 session.
async fn card_session(t: &TestBroker, card: &mut broker::card::VirtualCard) -> Browser {
    let mut br = t.browser();
    login_with_card(&mut br, card, &auth_url(&[("acr_values", "aal3")])).await;
    br
}

/// Enrol a passkey on `auth` from the session of `br`; the finish response.
async fn enrol(br: &mut Browser, auth: &mut SoftAuthenticator, name: &str) -> Resp {
    let start = br
        .fetch_json("/account/passkeys/begin", &json!({}), Some(ISSUER))
        .await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.body);
    let start = start.json();
    let cred = auth.register(ISSUER, &start["publicKey"], None);
    br.fetch_json(
        "/account/passkeys/finish",
        &json!({"ceremony": start["ceremony"], "credential": cred, "name": name}),
        Some(ISSUER),
    )
    .await
}

/// A card session of `card` with a passkey on a new authenticator.
async fn with_passkey(
    t: &TestBroker,
    card: &mut broker::card::VirtualCard,
) -> (Browser, SoftAuthenticator) {
    let mut br = card_session(t, card).await;
    let mut phone = SoftAuthenticator::new();
    let r = enrol(&mut br, &mut phone, "p").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (br, phone)
}

/// A passkey login's two steps on transaction `tx`, `auth` answering as asked.
async fn answer(b: &mut Browser, tx: &str, auth: &mut SoftAuthenticator) -> Resp {
    let (ceremony, pk) = begin_login(b, tx).await;
    let cred = auth.assert(ISSUER, &pk);
    finish_login(b, tx, &ceremony, &cred).await
}

/// Begin a passkey login on transaction `tx`: (ceremony, publicKey).
async fn begin_login(br: &mut Browser, tx: &str) -> (Value, Value) {
    let r = br
        .fetch_json(
            &format!("/login/{tx}/passkey/begin"),
            &json!({}),
            Some(ISSUER),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    (v["ceremony"].clone(), v["publicKey"].clone())
}

async fn finish_login(br: &mut Browser, tx: &str, ceremony: &Value, cred: &Value) -> Resp {
    br.fetch_json(
        &format!("/login/{tx}/passkey/finish"),
        &json!({"ceremony": ceremony, "credential": cred}),
        Some(ISSUER),
    )
    .await
}

/// A passkey login on a new browser through to the RP's redirect; its token response.
async fn passkey_login(
    t: &TestBroker,
    auth: &mut SoftAuthenticator,
    extra: &[(&str, &str)],
) -> Value {
    let mut br = t.browser();
    let s = start_login(&mut br, &auth_url(extra)).await;
    let r = answer(&mut br, &s.tx, auth).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["status"], "authenticated");
    let r = br.get(&format!("/login/{}/continue", s.tx)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let code = r.redirect_params()["code"].clone();
    let r = redeem(&mut br, &code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()
}

#[tokio::test]
async fn a_passkey_enrolled_from_the_card_logs_in_at_aal2_with_honest_amr() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let mut br = card_session(&t, &mut card).await;
    let page = br.get("/account").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"add-passkey\""), "{}", page.body);
    assert!(page.body.contains("id=\"no-passkeys\""));

    let mut phone = SoftAuthenticator::new();
    let r = enrol(&mut br, &mut phone, "my phone").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["kind"], "device_bound");
    let c = t.counts().await;
    assert_eq!((c.passkeys, c.webauthn_ceremonies), (1, 0));
    // The passkey records the card certificate that enrolled it, and the person's record says so.
    let auth = broker::pki::inspect(&card.auth_certificate_der().unwrap()).unwrap();
    let account = t
        .broker
        .store
        .account_by_cert(&auth.issuer, &auth.serial_hex)
        .await
        .unwrap()
        .unwrap();
    let pks = t.broker.store.passkeys_of(&account).await.unwrap();
    assert_eq!(pks[0].card_serial, auth.serial_hex);
    assert_eq!(pks[0].card_anchor, "demo-auth-ca");
    assert_eq!(pks[0].name, "my phone");
    let events = t.broker.store.audit_events(&account).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "passkey_added"),
        "{events:?}"
    );
    let page = br.get("/account?lang=en").await;
    assert!(page.body.contains("my phone") && page.body.contains("This device only"));

    // Log in with it in a browser without any session: aal2, with what it proved.
    let tok = passkey_login(&t, &mut phone, &[]).await;
    let id = payload(tok["id_token"].as_str().unwrap());
    assert_eq!(id["acr"], "aal2", "{id}");
    assert_eq!(id["amr"], json!(["hwk", "user", "mfa"]));
    let pks = t.broker.store.passkeys_of(&account).await.unwrap();
    assert_eq!(pks[0].sign_count, 1);
    assert!(pks[0].last_used_at.is_some());

    // A synced passkey says so (swk), and the account page shows both.
    let mut laptop = SoftAuthenticator::new();
    laptop.backup_eligible = true;
    laptop.backup_state = true;
    laptop.counter_step = 0;
    let r = enrol(&mut br, &mut laptop, "").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["kind"], "synced");
    assert_eq!(r.json()["name"], "Passkey (synced)");
    let tok = passkey_login(&t, &mut laptop, &[]).await;
    let id = payload(tok["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], json!(["swk", "user", "mfa"]));
    assert_eq!(id["acr"], "aal2");
    // Verified claims still leave as the registration and consent allow: the card proofed them.
    let info = t
        .browser()
        .get_bearer("/userinfo", tok["access_token"].as_str().unwrap())
        .await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.body);
    assert!(info.json()["name"].is_string(), "{}", info.body);
}

#[tokio::test]
async fn an_aal3_request_is_not_offered_the_passkey_and_steps_up_with_the_card() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let (_, mut phone) = with_passkey(&t, &mut card).await;

    // The login page of an aal3 request offers the card only…
    let mut b2 = t.browser();
    let s = start_login(
        &mut b2,
        &auth_url(&[
            ("acr_values", "aal3"),
            (
                "claims",
                r#"{"id_token":{"acr":{"essential":true,"value":"aal3"}}}"#,
            ),
        ]),
    )
    .await;
    let page = b2.get(&format!("/login/{}", s.tx)).await;
    assert!(!page.body.contains("passkey-login"), "{}", page.body);
    // …and a passkey answer anyway is refused, naming the card; the login still waits for it.
    let before = t.counts().await;
    let r = answer(&mut b2, &s.tx, &mut phone).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.json()["error"], "card_required");
    assert!(r.body.contains("aal3"), "{}", r.body);
    assert_eq!(t.counts().await, before);
    let st = b2.get(&format!("/login/{}/status", s.tx)).await.json();
    assert_eq!(st["status"], "pending");
    let r = helper_answer(&mut b2, &s.helper_path, &mut card, "1234").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // A passkey session asked for aal3 goes back to the card (step-up), not to a code.
    let mut b3 = t.browser();
    let s = start_login(&mut b3, &auth_url(&[])).await;
    let r = answer(&mut b3, &s.tx, &mut phone).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = b3.get(&format!("/login/{}/continue", s.tx)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = b3
        .get(&auth_url(&[("acr_values", "aal3"), ("prompt", "")]))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let loc = r.location.unwrap();
    assert!(loc.starts_with("/login/"), "a step-up to the card: {loc}");
    // The page's passkey section is gone; the card completes it at aal3.
    let tx = loc.strip_prefix("/login/").unwrap().to_string();
    let st = b3.get(&format!("/login/{tx}/status")).await.json();
    let r = helper_answer(
        &mut b3,
        &path_of(st["helper_url"].as_str().unwrap()),
        &mut card,
        "1234",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = b3.get(&format!("/login/{tx}/continue")).await;
    let code = r.redirect_params()["code"].clone();
    let tok = redeem(&mut b3, &code).await.json();
    assert_eq!(payload(tok["id_token"].as_str().unwrap())["acr"], "aal3");
}

#[tokio::test]
async fn enrolment_is_refused_without_a_card_session_at_the_level_and_nothing_is_stored() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let before = t.counts().await;
    // No session at all.
    let mut nobody = t.browser();
    let r = nobody
        .fetch_json("/account/passkeys/begin", &json!({}), Some(ISSUER))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "login_required");
    let r = nobody.get("/account").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.location.unwrap().contains("/account/login?acr=aal3"));
    assert_eq!(t.counts().await, before);

    let (mut br, mut phone) = with_passkey(&t, &mut card).await;
    // A passkey session cannot add another passkey (the card enrols, not a passkey).
    let mut b2 = t.browser();
    let s = start_login(&mut b2, &auth_url(&[])).await;
    let (ceremony, pk) = begin_login(&mut b2, &s.tx).await;
    let cred = phone.assert(ISSUER, &pk);
    assert_eq!(
        finish_login(&mut b2, &s.tx, &ceremony, &cred).await.status,
        StatusCode::OK
    );
    b2.get(&format!("/login/{}/continue", s.tx)).await;
    let before = t.counts().await;
    let r = b2
        .fetch_json("/account/passkeys/begin", &json!({}), Some(ISSUER))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.json()["error"], "card_login_required");
    assert!(r.body.contains("aal3"));
    let page = b2.get("/account").await;
    assert!(page.body.contains("id=\"cannot-add\""), "{}", page.body);
    // From another site: refused before anything happens.
    let r = br
        .fetch_json(
            "/account/passkeys/begin",
            &json!({}),
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "invalid_request");
    assert_eq!(t.counts().await, before);

    // Answers that fail WebAuthn's checks: nothing stored, the ceremony spent.
    for (case, origin, rp_id, uv, want) in [
        (
            "wrong origin",
            "http://localhost:9999",
            None,
            true,
            "origin",
        ),
        ("wrong RP ID", ISSUER, Some("evil.example"), true, "RP ID"),
        (
            "no user verification",
            ISSUER,
            None,
            false,
            "verify the user",
        ),
    ] {
        let start = br
            .fetch_json("/account/passkeys/begin", &json!({}), Some(ISSUER))
            .await
            .json();
        let mut a = SoftAuthenticator::new();
        a.user_verified = uv;
        let cred = a.register(origin, &start["publicKey"], rp_id);
        let body = json!({"ceremony": start["ceremony"], "credential": cred});
        let r = br
            .fetch_json("/account/passkeys/finish", &body, Some(ISSUER))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{case}: {}", r.body);
        assert_eq!(r.json()["error"], "passkey_refused", "{case}");
        assert!(r.body.contains(want), "{case}: {}", r.body);
        // The same answer again: the ceremony is gone.
        let r = br
            .fetch_json("/account/passkeys/finish", &body, Some(ISSUER))
            .await;
        assert_eq!(r.json()["error"], "unknown_ceremony", "{case}");
        assert_eq!(t.counts().await, before, "{case}");
    }
    // Not JSON, or not a credential.
    let r = br
        .fetch_json(
            "/account/passkeys/finish",
            &json!({"ceremony": "x"}),
            Some(ISSUER),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "invalid_request");
    assert!(r.body.contains("credential"), "{}", r.body);
    // The same authenticator's passkey twice: refused as known.
    let start = br
        .fetch_json("/account/passkeys/begin", &json!({}), Some(ISSUER))
        .await
        .json();
    assert_eq!(
        start["publicKey"]["excludeCredentials"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(t.counts().await.passkeys, 1);
}

/// How the authenticator answers a login challenge (a test case's misbehaviour).
type Answer = Box<dyn Fn(&mut SoftAuthenticator, &Value) -> Value>;

#[tokio::test]
async fn login_refusals_name_what_failed_and_store_nothing() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let (_, mut phone) = with_passkey(&t, &mut card).await;

    let mut b = t.browser();
    let s = start_login(&mut b, &auth_url(&[])).await;
    let cases: Vec<(&str, Answer, StatusCode, &str, &str)> = vec![
        (
            "unknown passkey",
            Box::new(|_, pk| SoftAuthenticator::new().assert_unknown(ISSUER, pk)),
            StatusCode::UNAUTHORIZED,
            "unknown_passkey",
            "not known",
        ),
        (
            "wrong origin",
            Box::new(|a, pk| a.assert("http://evil.localhost:8080", pk)),
            StatusCode::BAD_REQUEST,
            "passkey_refused",
            "origin",
        ),
        (
            "wrong RP ID",
            Box::new(|a, pk| a.assert_as(ISSUER, pk, "evil.example")),
            StatusCode::BAD_REQUEST,
            "passkey_refused",
            "RP ID",
        ),
        (
            "no user verification",
            Box::new(|a, pk| {
                a.user_verified = false;
                let c = a.assert(ISSUER, pk);
                a.user_verified = true;
                c
            }),
            StatusCode::BAD_REQUEST,
            "passkey_refused",
            "verify the user",
        ),
    ];
    for (case, answer, status, code, says) in cases {
        let before = t.counts().await;
        let (ceremony, pk) = begin_login(&mut b, &s.tx).await;
        let cred = answer(&mut phone, &pk);
        let r = finish_login(&mut b, &s.tx, &ceremony, &cred).await;
        assert_eq!(r.status, status, "{case}: {}", r.body);
        assert_eq!(r.json()["error"], code, "{case}");
        assert!(r.body.contains(says), "{case}: {}", r.body);
        // Replayed: the challenge answered once.
        let r = finish_login(&mut b, &s.tx, &ceremony, &cred).await;
        assert_eq!(r.json()["error"], "unknown_ceremony", "{case}");
        let after = t.counts().await;
        assert_eq!(
            (after.sessions, after.passkeys, after.webauthn_ceremonies),
            (before.sessions, before.passkeys, 0),
            "{case}"
        );
        let st = b.get(&format!("/login/{}/status", s.tx)).await.json();
        assert_eq!(st["status"], "pending", "{case}");
    }
    // A transaction holds one open ceremony: a second begin replaces the first.
    let (first, pk) = begin_login(&mut b, &s.tx).await;
    let early = phone.assert(ISSUER, &pk);
    let _second = begin_login(&mut b, &s.tx).await;
    let _third = begin_login(&mut b, &s.tx).await;
    assert_eq!(t.counts().await.webauthn_ceremonies, 1);
    let r = finish_login(&mut b, &s.tx, &first, &early).await;
    assert_eq!(r.json()["error"], "unknown_ceremony", "{}", r.body);
    // Another browser cannot use this transaction's ceremony.
    let (ceremony, pk) = begin_login(&mut b, &s.tx).await;
    let cred = phone.assert(ISSUER, &pk);
    let r = finish_login(&mut t.browser(), &s.tx, &ceremony, &cred).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.json()["error"], "login_not_pending");
    // A good answer replayed after its success: the ceremony is spent.
    let (ceremony, pk) = begin_login(&mut b, &s.tx).await;
    let cred = phone.assert(ISSUER, &pk);
    assert_eq!(
        finish_login(&mut b, &s.tx, &ceremony, &cred).await.status,
        StatusCode::OK
    );
    let r = finish_login(&mut b, &s.tx, &ceremony, &cred).await;
    assert_eq!(r.json()["error"], "unknown_ceremony");
}

#[tokio::test]
async fn a_counter_that_goes_back_suspends_the_passkey() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let (mut br, mut phone) = with_passkey(&t, &mut card).await;
    passkey_login(&t, &mut phone, &[]).await;
    passkey_login(&t, &mut phone, &[]).await;
    // A copy of the key that was used less often answers: counter 1 after the broker saw 2.
    phone.set_counter(0);
    let mut b = t.browser();
    let s = start_login(&mut b, &auth_url(&[])).await;
    let r = answer(&mut b, &s.tx, &mut phone).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.json()["error"], "counter_regressed");
    // Suspended for good: even a counter ahead again is refused, and the page says why.
    phone.set_counter(100);
    let r = answer(&mut b, &s.tx, &mut phone).await;
    assert_eq!(r.json()["error"], "passkey_suspended", "{}", r.body);
    let page = br.get("/account?lang=en").await;
    assert!(
        page.body.contains("it may have been copied"),
        "{}",
        page.body
    );
    assert_eq!(
        b.get(&format!("/login/{}/status", s.tx)).await.json()["status"],
        "pending"
    );
}

#[tokio::test]
async fn a_revoked_card_suspends_its_passkeys_and_a_removed_passkey_is_unknown() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let (mut br, mut phone) = with_passkey(&t, &mut card).await;
    passkey_login(&t, &mut phone, &[]).await;

    // Rename and remove from the account page: a form with the page's CSRF token.
    let page = br.get("/account").await;
    let csrf = csrf_of(&page);
    let id = page
        .body
        .split("data-passkey=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let r = br
        .post_form(
            &format!("/account/passkeys/{id}/rename"),
            &[("csrf", "forged"), ("name", "x")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = br
        .post_form(
            &format!("/account/passkeys/{id}/rename"),
            &[("csrf", &csrf), ("name", "phone")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(br.get("/account").await.body.contains(">phone<"));
    // Another person's session cannot touch it.
    let mut other_card = t.card("other");
    let mut other = card_session(&t, &mut other_card).await;
    let mut theirs = SoftAuthenticator::new();
    let r = enrol(&mut other, &mut theirs, "theirs").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let their_id = r.json()["id"].as_str().unwrap().to_string();
    let other_csrf = csrf_of(&other.get("/account").await);
    let r = other
        .post_form(
            &format!("/account/passkeys/{id}/remove"),
            &[("csrf", &other_csrf)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(t.counts().await.passkeys, 2);

    // The card is revoked: the next passkey login (past the cache's bound) is refused and the
    // passkey suspended.
    let auth_der = card.auth_certificate_der().unwrap();
    let serial = hex::decode(broker::pki::inspect(&auth_der).unwrap().serial_hex).unwrap();
    t.demo_ca()
        .revoke(
            CertKind::UserAuth,
            &serial,
            broker::pki::RevocationReason::KeyCompromise,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    t.clock.advance(time::Duration::seconds(61));
    let mut b = t.browser();
    let s = start_login(&mut b, &auth_url(&[])).await;
    let (ceremony, pk) = begin_login(&mut b, &s.tx).await;
    let cred = phone.assert(ISSUER, &pk);
    let before = t.counts().await;
    let r = finish_login(&mut b, &s.tx, &ceremony, &cred).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.json()["error"], "card_revoked");
    // No session was made; the revoked card's account's sessions (its card session and its
    // earlier passkey login's) ended with it (signals); the other person's stays.
    assert_eq!((before.sessions, t.counts().await.sessions), (3, 1));
    assert_eq!(br.get("/account").await.status, StatusCode::SEE_OTHER);
    let r = answer(&mut b, &s.tx, &mut phone).await;
    assert_eq!(r.json()["error"], "passkey_suspended");

    // Removed (by the other person, whose card is good): unknown to the broker from then on.
    let r = other
        .post_form(
            &format!("/account/passkeys/{their_id}/remove"),
            &[("csrf", &other_csrf)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(t.counts().await.passkeys, 1);
    let r = answer(&mut b, &s.tx, &mut theirs).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "unknown_passkey");
    let _ = (&csrf, &id);
}

/// The account page logs people in through the authorization endpoint as its own built-in
/// client: without a session it sends them to the card; a passkey session steps up to the card
/// before a passkey can be added; no consent page, and the client is listed nowhere.
#[tokio::test]
async fn the_account_page_logs_in_and_steps_up_with_the_card() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    // First login of a new card, from the account page itself.
    let mut br = t.browser();
    let r = br.get("/account").await;
    let r = br.get(&r.location.unwrap()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let authz = r.location.unwrap();
    assert!(
        authz.contains("client_id=broker-account") && authz.contains("acr_values=aal3"),
        "{authz}"
    );
    let s = start_login(&mut br, &path_of(&authz)).await;
    let r = helper_answer(&mut br, &s.helper_path, &mut card, "1234").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = br.get(&format!("/login/{}/continue", s.tx)).await;
    let cb = r.location.unwrap();
    assert!(
        cb.starts_with(&format!("{ISSUER}/account/callback?")),
        "no consent page: {cb}"
    );
    let r = br.get(&cb).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = br.get("/account").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"add-passkey\""), "{}", page.body);
    let mut phone = SoftAuthenticator::new();
    assert_eq!(
        enrol(&mut br, &mut phone, "p").await.status,
        StatusCode::CREATED
    );
    // A callback with another state (a login not started here) is refused.
    let r = t.browser().get(&cb).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // A passkey session: the page offers the card to add another.
    let mut b2 = t.browser();
    let r = b2.get("/account/login?acr=aal2").await;
    let s = start_login(&mut b2, &path_of(&r.location.unwrap())).await;
    let (ceremony, pk) = begin_login(&mut b2, &s.tx).await;
    let cred = phone.assert(ISSUER, &pk);
    assert_eq!(
        finish_login(&mut b2, &s.tx, &ceremony, &cred).await.status,
        StatusCode::OK
    );
    let cb = b2
        .get(&format!("/login/{}/continue", s.tx))
        .await
        .location
        .unwrap();
    b2.get(&cb).await;
    let page = b2.get("/account").await;
    assert!(page.body.contains("id=\"cannot-add\""), "{}", page.body);
    let step_up = page
        .body
        .split("id=\"card-step-up\" href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
        .replace("&#x2f;", "/");
    let r = b2.get(&step_up).await;
    let r = b2.get(&r.location.unwrap()).await;
    let loc = r.location.unwrap();
    assert!(
        loc.starts_with("/login/"),
        "the passkey session steps up to the card: {loc}"
    );
    let tx = loc.strip_prefix("/login/").unwrap().to_string();
    let st = b2.get(&format!("/login/{tx}/status")).await.json();
    let r = helper_answer(
        &mut b2,
        &path_of(st["helper_url"].as_str().unwrap()),
        &mut card,
        "1234",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cb = b2
        .get(&format!("/login/{tx}/continue"))
        .await
        .location
        .unwrap();
    b2.get(&cb).await;
    assert!(b2.get("/account").await.body.contains("id=\"add-passkey\""));
    // The built-in client is nobody's business on the index page.
    assert!(!t.browser().get("/").await.body.contains("broker-account"));
}

/// A renewed card keeps the passkeys its predecessor enrolled (the old certificates
/// superseded, or expired); a card that simply expires, with no renewal, suspends them.
#[tokio::test]
async fn a_renewed_card_keeps_the_passkeys_and_an_expired_one_suspends_them() {
    let t = TestBroker::new().await;
    let now = time::OffsetDateTime::now_utc();
    let pki = t.demo_pki();
    // A card that expires in two days.
    let mut old = t.card_from(
        &pki,
        "old",
        now - time::Duration::days(1),
        now + time::Duration::days(2),
    );
    let (_, mut phone) = with_passkey(&t, &mut old).await;

    // The card is renewed: new certificates, the old ones superseded, the link recorded; the
    // person logs in once with the new card (it joins the account).
    let mut new = t.card("new");
    t.renew(&mut old, &mut new);
    login_with_card(&mut t.browser(), &mut new, &auth_url(&[])).await;
    t.clock.advance(time::Duration::seconds(61));
    // Superseded, then expired: the passkey logs in on the renewed card's status.
    let tok = passkey_login(&t, &mut phone, &[]).await;
    assert_eq!(payload(tok["id_token"].as_str().unwrap())["acr"], "aal2");
    t.clock.advance(time::Duration::days(3));
    let tok = passkey_login(&t, &mut phone, &[]).await;
    assert_eq!(payload(tok["id_token"].as_str().unwrap())["acr"], "aal2");

    // A card that expires without a renewal: its passkey is suspended.
    let t = TestBroker::new().await;
    let pki = t.demo_pki();
    let mut lone = t.card_from(
        &pki,
        "lone",
        now - time::Duration::days(1),
        now + time::Duration::days(2),
    );
    let (_, mut phone) = with_passkey(&t, &mut lone).await;
    t.clock.advance(time::Duration::days(3));
    let mut b = t.browser();
    let s = start_login(&mut b, &auth_url(&[])).await;
    let r = answer(&mut b, &s.tx, &mut phone).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.json()["error"], "card_expired");
    assert!(r.body.contains("renewed card"), "{}", r.body);
}

/// Backup flags as the WebAuthn spec has them: the backup state may change (stored), backup
/// eligibility may not (a device-bound key that says it became syncable is refused).
#[tokio::test]
async fn the_backup_state_is_followed_and_backup_eligibility_may_not_change() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let mut br = card_session(&t, &mut card).await;
    let mut laptop = SoftAuthenticator::new();
    laptop.backup_eligible = true;
    assert_eq!(
        enrol(&mut br, &mut laptop, "l").await.status,
        StatusCode::CREATED
    );
    let account = {
        let auth = broker::pki::inspect(&card.auth_certificate_der().unwrap()).unwrap();
        t.broker
            .store
            .account_by_cert(&auth.issuer, &auth.serial_hex)
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        t.broker.store.passkeys_of(&account).await.unwrap()[0].backup_state,
        0
    );
    // Synced since: the state is recorded.
    laptop.backup_state = true;
    passkey_login(&t, &mut laptop, &[]).await;
    let pk = &t.broker.store.passkeys_of(&account).await.unwrap()[0];
    assert_eq!((pk.backup_eligible, pk.backup_state), (1, 1));

    let mut phone = SoftAuthenticator::new();
    assert_eq!(
        enrol(&mut br, &mut phone, "p").await.status,
        StatusCode::CREATED
    );
    phone.backup_eligible = true;
    let mut b = t.browser();
    let s = start_login(&mut b, &auth_url(&[])).await;
    let before = t.counts().await;
    let r = answer(&mut b, &s.tx, &mut phone).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.json()["error"], "passkey_refused");
    assert!(r.body.contains("backup eligibility"), "{}", r.body);
    assert_eq!(t.counts().await, before);
}
