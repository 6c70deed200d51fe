//! Card failures: each refused with a clear error and nothing stored.

mod common;
use axum::http::StatusCode;
use broker::card::{CardError, Key};
use broker::clock::b64url;
use broker::store::Counts;
use common::*;
use serde_json::json;

async fn challenge_bytes(br: &mut Browser, helper: &str) -> Vec<u8> {
    let ch = br.get(helper).await.json();
    broker::clock::b64url_decode(ch["to_be_signed"].as_str().unwrap()).unwrap()
}

async fn assert_nothing_stored(t: &TestBroker, br: &mut Browser, tx: &str) {
    assert_eq!(t.counts().await, Counts::default());
    assert_eq!(
        br.get(&format!("/login/{tx}/status")).await.json()["status"],
        "pending"
    );
}

#[tokio::test]
async fn challenge_is_bound_and_described() {
    let t = TestBroker::new().await;
    let mut br = t.browser();
    let s = start_login(&mut br, &auth_url(&[])).await;
    let ch = br.get(&s.helper_path).await.json();
    assert_eq!(ch["issuer"], ISSUER);
    assert_eq!(ch["client_id"], CLIENT);
    assert_eq!(ch["transaction"], s.tx);
    assert_eq!(ch["binding_code"], s.status["binding_code"]);
    let msg = String::from_utf8(
        broker::clock::b64url_decode(ch["to_be_signed"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert!(msg.starts_with("jpki-broker-login-v1\n"));
    assert!(msg.contains(&format!("issuer={ISSUER}\n")));
    assert!(msg.contains(&format!("transaction={}\n", s.tx)));
    assert!(msg.contains("client_id=local-dev\n"));
    // A made-up helper link is unknown.
    let r = br.get("/card/v1/tx/not-a-real-secret").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"], "unknown_transaction");
}

#[tokio::test]
async fn wrong_pin_counts_down_and_locks_and_stores_nothing() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let s = start_login(&mut br, &auth_url(&[])).await;
    let msg = challenge_bytes(&mut br, &s.helper_path).await;
    match card.sign(Key::Auth, "0000", &msg) {
        Err(CardError::WrongPin { tries_left: 2, .. }) => {}
        other => panic!("expected WrongPin(2), got {other:?}"),
    }
    match card.sign(Key::Auth, "9999", &msg) {
        Err(CardError::WrongPin { tries_left: 1, .. }) => {}
        other => panic!("expected WrongPin(1), got {other:?}"),
    }
    assert!(card.sign(Key::Auth, "1111", &msg).is_err());
    assert_eq!(card.tries_left(Key::Auth), 0);
    assert!(matches!(
        card.sign(Key::Auth, "1234", &msg),
        Err(CardError::Locked(Key::Auth))
    ));
    assert_nothing_stored(&t, &mut br, &s.tx).await;
}

async fn post_answer(br: &mut Browser, helper: &str, cert: &[u8], sig: &[u8]) -> Resp {
    br.post_json(
        helper,
        &json!({"certificate": b64url(cert), "signature": b64url(sig)}),
    )
    .await
}

#[tokio::test]
async fn untrusted_ca_expired_certificate_and_signature_certificate_are_refused() {
    let t = TestBroker::new().await;
    let now = time::OffsetDateTime::now_utc();
    let other_pki = broker::pki::demo::DemoPki::generate(now).unwrap();
    let mut foreign = t.card_from(
        &other_pki,
        "foreign",
        now - time::Duration::days(1),
        now + time::Duration::days(30),
    );
    let mut expired = t.card_from(
        &t.demo_pki(),
        "expired",
        now - time::Duration::days(400),
        now - time::Duration::days(1),
    );
    let mut good = t.card("good");
    let mut br = t.browser();
    let s = start_login(&mut br, &auth_url(&[])).await;
    let msg = challenge_bytes(&mut br, &s.helper_path).await;

    let sig = foreign.sign(Key::Auth, "1234", &msg).unwrap();
    let r = post_answer(
        &mut br,
        &s.helper_path,
        &foreign.auth_certificate_der().unwrap(),
        &sig,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let e = r.json();
    assert_eq!(e["error"], "invalid_certificate");
    let d = e["error_description"].as_str().unwrap();
    assert!(
        d.starts_with("certificate rejected: ") && d.to_lowercase().contains("trust"),
        "{d}"
    );
    assert_nothing_stored(&t, &mut br, &s.tx).await;

    let sig = expired.sign(Key::Auth, "1234", &msg).unwrap();
    let r = post_answer(
        &mut br,
        &s.helper_path,
        &expired.auth_certificate_der().unwrap(),
        &sig,
    )
    .await;
    let e = r.json();
    assert_eq!(e["error"], "invalid_certificate");
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("expired"),
        "{e}"
    );
    assert_nothing_stored(&t, &mut br, &s.tx).await;

    // The signature certificate (and key) presented for login.
    let sign_cert = good.sign_certificate_der("ABC123").unwrap();
    let sig = good.sign(Key::Sign, "ABC123", &msg).unwrap();
    let r = post_answer(&mut br, &s.helper_path, &sign_cert, &sig).await;
    let e = r.json();
    assert_eq!(e["error"], "invalid_certificate");
    let d = e["error_description"].as_str().unwrap().to_lowercase();
    assert!(d.contains("signature") && d.contains("auth"), "{d}");
    assert_nothing_stored(&t, &mut br, &s.tx).await;

    // Garbage certificate bytes.
    let r = post_answer(&mut br, &s.helper_path, b"not a certificate", &sig).await;
    assert_eq!(r.json()["error"], "invalid_certificate");
    let r = br
        .post_json(
            &s.helper_path,
            &json!({"certificate": "%%%", "signature": "AA"}),
        )
        .await;
    assert_eq!(
        r.json()["error_description"],
        "malformed response: certificate is not base64"
    );
    assert_nothing_stored(&t, &mut br, &s.tx).await;

    // After all that, the right card still works on the same challenge.
    let sig = good.sign(Key::Auth, "1234", &msg).unwrap();
    let r = post_answer(
        &mut br,
        &s.helper_path,
        &good.auth_certificate_der().unwrap(),
        &sig,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn signature_over_another_challenge_replay_and_expiry() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let cert = card.auth_certificate_der().unwrap();
    let mut br = t.browser();

    // A first login proofs the account (so later logins need the authentication card only).
    login_with_card(&mut t.browser(), &mut card, &auth_url(&[])).await;
    assert_eq!(t.counts().await.verified_claims, 1);

    // Two transactions; the signature for the first is presented to the second.
    let s1 = start_login(&mut br, &auth_url(&[])).await;
    let s2 = start_login(&mut br, &auth_url(&[("state", "other")])).await;
    let before = t.counts().await;
    let msg1 = challenge_bytes(&mut br, &s1.helper_path).await;
    let sig1 = card.sign(Key::Auth, "1234", &msg1).unwrap();
    let r = post_answer(&mut br, &s2.helper_path, &cert, &sig1).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "invalid_signature");
    assert_eq!(
        r.json()["error_description"],
        "the signature does not match this challenge and certificate"
    );
    assert_eq!(t.counts().await, before);
    assert_eq!(
        br.get(&format!("/login/{}/status", s2.tx)).await.json()["status"],
        "pending"
    );

    // The first answer works once; replaying it is refused.
    let r = post_answer(&mut br, &s1.helper_path, &cert, &sig1).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["status"],
        "authenticated",
        "a proofed account needs no proofing step"
    );
    let after = t.counts().await;
    assert_eq!((after.accounts, after.cert_links), (1, 2));
    let r = post_answer(&mut br, &s1.helper_path, &cert, &sig1).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"], "challenge_used");
    assert_eq!(t.counts().await, after);

    // The second transaction's challenge expires (180 s).
    let msg2 = challenge_bytes(&mut br, &s2.helper_path).await;
    let sig2 = card.sign(Key::Auth, "1234", &msg2).unwrap();
    t.clock.advance(time::Duration::seconds(181));
    let r = post_answer(&mut br, &s2.helper_path, &cert, &sig2).await;
    assert_eq!(r.status, StatusCode::GONE);
    assert_eq!(r.json()["error"], "challenge_expired");
    assert_eq!(t.counts().await, after);
}
