//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): ending a session queues a
//! logout token for every relying party that got tokens from it and registered a
//! `backchannel_logout_uri`; the outbox delivers it — verified here against the broker's JWKS
//! by the spec's rules — and keeps it while the receiver is away, delivering it once back.

mod common;
use axum::http::StatusCode;
use common::*;
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// A relying party's back-channel receiver on a loopback port: the bodies it was POSTed.
struct Receiver {
    got: Arc<Mutex<Vec<String>>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

async fn receiver(listener: tokio::net::TcpListener) -> Receiver {
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/bcl",
        axum::routing::post(move |body: String| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(body);
                StatusCode::OK
            }
        }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Receiver { got, stop }
}

/// The back-channel RP's registration up to its scopes (the tests add those and receivers).
fn bcl_head() -> String {
    format!(
        "client_id = \"bcl\"\ndisplay_name = \"Back-channel RP\"\nkind = \"other\"\nredirect_uris = [\"{REDIRECT}\"]\nsector_identifier = \"localhost\"\ntoken_endpoint_auth_method = \"client_secret_basic\"\nclient_secret_sha256 = \"eb26d4a9a0ef04727f52fb5acc8936196ae90e23003fc5117ce8e3e28c49363f\"\n"
    )
}

/// The back-channel RP redeems `code`.
async fn bcl_redeem(br: &mut Browser, code: &str) -> Resp {
    br.post_form(
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        Some(("bcl", SECRET)),
    )
    .await
}

fn payload(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&broker::clock::b64url_decode(p).unwrap()).unwrap()
}

/// Verify a logout token as a relying party must (§2.6): a JWS by a key of the issuer's
/// JWKS, `typ` logout+jwt, `iss`, `aud`, `iat`, `jti`, the event, `sub` and/or `sid`, no
/// `nonce`.
async fn verify(t: &TestBroker, token: &str, aud: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&t.browser().get("/jwks").await.body).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("a published key");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[aud]);
    v.set_issuer(&[ISSUER]);
    v.validate_exp = false; // the test clock is not the wall clock
    v.set_required_spec_claims(&["iss", "aud", "iat", "exp"]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims;
    assert!(claims["jti"].is_string());
    assert_eq!(
        claims["events"],
        serde_json::json!({"http://schemas.openid.net/event/backchannel-logout": {}})
    );
    assert!(claims.get("nonce").is_none());
    claims
}

#[tokio::test]
async fn a_logout_reaches_the_relying_parties_of_the_session_even_after_their_receiver_was_down() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let rp = format!(
        "{BCL}scopes = [\"openid\"]\nbackchannel_logout_uri = \"http://127.0.0.1:{port}/bcl\"\n",
        BCL = bcl_head()
    );
    let t = TestBroker::with_rps(&[("bcl.toml", &rp)]).await;
    let rx = receiver(listener).await;
    let http = broker::outbox::http_client();
    let mut card = t.card("card");

    // Logged in to the back-channel RP and to local-dev (no back-channel URI) in one session.
    let mut br = t.browser();
    let p = login_with_card(
        &mut br,
        &mut card,
        &auth_url(&[("client_id", "bcl"), ("scope", "openid")]),
    )
    .await;
    let r = bcl_redeem(&mut br, &p["code"]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let id_token = r.json()["id_token"].as_str().unwrap().to_string();
    let r = br.get(&auth_url(&[("scope", "openid")])).await;
    let code = r.redirect_params()["code"].clone();
    assert_eq!(redeem(&mut br, &code).await.status, StatusCode::OK);

    // RP-initiated logout: one token queued (only bcl registered a receiver), then delivered.
    let r = br.get(&format!("/logout?id_token_hint={id_token}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let outbox = t.broker.store.logout_outbox().await.unwrap();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0].client_id, "bcl");
    assert_eq!(
        broker::outbox::deliver_due(&t.broker, &http).await.unwrap(),
        1
    );
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let token = got[0]
        .strip_prefix("logout_token=")
        .expect("a form with logout_token");
    let claims = verify(&t, token, "bcl").await;
    let id = payload(&id_token);
    assert_eq!(claims["sub"], id["sub"]);
    assert_eq!(claims["sid"], id["sid"]);
    // Delivered once: the next round sends nothing.
    assert_eq!(
        broker::outbox::deliver_due(&t.broker, &http).await.unwrap(),
        0
    );
    assert_eq!(rx.got.lock().unwrap().len(), 1);
    let _ = rx.stop.send(());

    // The receiver is down at the next logout: the token waits, then arrives once it is back.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut br = t.browser();
    let p = login_with_card(
        &mut br,
        &mut card,
        &auth_url(&[("client_id", "bcl"), ("scope", "openid")]),
    )
    .await;
    let r = bcl_redeem(&mut br, &p["code"]).await;
    let id_token = r.json()["id_token"].as_str().unwrap().to_string();
    br.get(&format!("/logout?id_token_hint={id_token}")).await;
    assert_eq!(
        broker::outbox::deliver_due(&t.broker, &http).await.unwrap(),
        0
    );
    let waiting = t.broker.store.logout_outbox().await.unwrap();
    let w = waiting.iter().find(|o| o.delivered_at.is_none()).unwrap();
    assert_eq!(w.attempts, 1);
    assert_eq!(
        w.last_error.as_deref(),
        Some("the receiver could not be reached")
    );
    assert_eq!(t.broker.store.pending_logouts().await.unwrap(), 1);
    // Not due yet: nothing is tried.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let rx = receiver(listener).await;
    assert_eq!(
        broker::outbox::deliver_due(&t.broker, &http).await.unwrap(),
        0
    );
    t.clock.advance(time::Duration::seconds(6));
    assert_eq!(
        broker::outbox::deliver_due(&t.broker, &http).await.unwrap(),
        1
    );
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let claims = verify(&t, got[0].strip_prefix("logout_token=").unwrap(), "bcl").await;
    assert_eq!(claims["sid"], payload(&id_token)["sid"]);
    assert_eq!(t.broker.store.pending_logouts().await.unwrap(), 0);
    let m = t.browser().get("/metrics").await.body;
    assert!(
        m.contains("broker_backchannel_logout_delivered_total{kind=\"logout\"} 2"),
        "{m}"
    );
    // Discovery says so.
    let d = t
        .browser()
        .get("/.well-known/openid-configuration")
        .await
        .json();
    assert_eq!(d["backchannel_logout_supported"], true);
    assert_eq!(d["backchannel_logout_session_supported"], true);
}

/// A card found revoked at its next login: once, the account's sessions end, its relying
/// parties get a logout token (their sessions) and a CAEP credential-change SET (RFC 8935
/// push), and the grants' refresh tokens stop working.
#[tokio::test]
async fn a_revoked_card_ends_its_sessions_tells_the_relying_parties_and_stops_their_tokens() {
    use broker::pki::{CertKind, RevocationReason};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let rp = format!(
        "{BCL}scopes = [\"openid\", \"offline_access\"]\ngrant_types = [\"authorization_code\", \"refresh_token\"]\nbackchannel_logout_uri = \"http://127.0.0.1:{port}/bcl\"\nsignals_uri = \"http://127.0.0.1:{port}/set\"\n",
        BCL = bcl_head()
    );
    let t = TestBroker::with_rps(&[("bcl.toml", &rp)]).await;
    let got: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/{path}",
        axum::routing::post(
            move |axum::extract::Path(path): axum::extract::Path<String>,
                  headers: axum::http::HeaderMap,
                  body: String| {
                let seen = seen.clone();
                async move {
                    let ct = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    seen.lock().unwrap().push((path.clone(), ct, body));
                    if path == "set" {
                        StatusCode::ACCEPTED
                    } else {
                        StatusCode::OK
                    }
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = broker::outbox::http_client();
    let mut card = t.card("card");
    let mut br = t.browser();
    let p = login_with_card(
        &mut br,
        &mut card,
        &auth_url(&[("client_id", "bcl"), ("scope", "openid offline_access")]),
    )
    .await;
    let tok = bcl_redeem(&mut br, &p["code"]).await.json();
    let refresh = tok["refresh_token"].as_str().unwrap().to_string();
    let id = payload(tok["id_token"].as_str().unwrap());

    // Revoked upstream; past the cache's bound the next login is refused — and signals once.
    let der = card.auth_certificate_der().unwrap();
    let serial = hex::decode(broker::pki::inspect(&der).unwrap().serial_hex).unwrap();
    t.demo_ca()
        .revoke(
            CertKind::UserAuth,
            &serial,
            RevocationReason::KeyCompromise,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    t.clock.advance(time::Duration::seconds(61));
    for _ in 0..2 {
        let mut b2 = t.browser();
        let s = start_login(&mut b2, &auth_url(&[])).await;
        let r = helper_answer(&mut b2, &s.helper_path, &mut card, "1234").await;
        assert_eq!(r.json()["error"], "certificate_revoked");
    }
    let outbox = t.broker.store.logout_outbox().await.unwrap();
    let kinds: Vec<&str> = outbox.iter().map(|o| o.kind.as_str()).collect();
    // A logout token for the session; SETs: the credential changed, the session was revoked.
    assert_eq!(kinds.len(), 3, "signalled once: {outbox:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "set").count(), 2);
    assert!(kinds.contains(&"logout"));
    assert_eq!(t.counts().await.sessions, 0, "the account's sessions ended");
    assert_eq!(
        broker::outbox::deliver_due(&t.broker, &http).await.unwrap(),
        3
    );
    let got = got.lock().unwrap().clone();
    let logout = got.iter().find(|(p, _, _)| p == "bcl").unwrap();
    let claims = verify(&t, logout.2.strip_prefix("logout_token=").unwrap(), "bcl").await;
    assert_eq!(claims["sid"], id["sid"]);
    let sets: Vec<Value> = got
        .iter()
        .filter(|(p, _, _)| p == "set")
        .map(|(_, ct, set)| {
            assert_eq!(ct, "application/secevent+jwt");
            let header = jsonwebtoken::decode_header(set).unwrap();
            assert_eq!(header.typ.as_deref(), Some("secevent+jwt"));
            payload(set)
        })
        .collect();
    const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
    let change = sets
        .iter()
        .find(|s| s["events"][format!("{CAEP}credential-change")].is_object())
        .expect("a credential-change SET");
    assert_eq!(change["aud"], "bcl");
    assert_eq!(change["sub_id"]["format"], "iss_sub");
    assert_eq!(change["sub_id"]["sub"], id["sub"]);
    let ev = &change["events"][format!("{CAEP}credential-change")];
    assert_eq!(ev["change_type"], "revoke");
    assert_eq!(ev["credential_type"], "x509");
    assert!(
        ev["reason_admin"]["en"]
            .as_str()
            .unwrap()
            .contains("keyCompromise")
    );
    let ended = sets
        .iter()
        .find(|s| s["events"][format!("{CAEP}session-revoked")].is_object())
        .expect("a session-revoked SET");
    assert_eq!(ended["sub_id"]["format"], "complex");
    assert_eq!(ended["sub_id"]["user"]["sub"], id["sub"]);
    assert_eq!(ended["sub_id"]["session"]["id"], id["sid"]);
    assert_ne!(ended["jti"], change["jti"]);
    // The grant's refresh token stops working.
    let r = t
        .browser()
        .post_form(
            "/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
            Some(("bcl", SECRET)),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_grant");
    // The person's record says what happened.
    let account = t
        .broker
        .store
        .account_by_cert(
            &broker::pki::inspect(&der).unwrap().issuer,
            &hex::encode(&serial),
        )
        .await
        .unwrap()
        .unwrap();
    let events = t.broker.store.audit_events(&account).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "certificate_revoked"),
        "{events:?}"
    );
}

/// An operator's purge of a revoked card's cached status signals at once, with no login.
#[tokio::test]
async fn a_purge_of_a_revoked_card_signals_without_waiting_for_a_login() {
    use broker::pki::{CertKind, RevocationReason};
    let rp = format!(
        "{BCL}scopes = [\"openid\"]\nbackchannel_logout_uri = \"http://127.0.0.1:9/bcl\"\nsignals_uri = \"http://127.0.0.1:9/set\"\n",
        BCL = bcl_head()
    );
    let t = TestBroker::with_rps(&[("bcl.toml", &rp)]).await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let p = login_with_card(
        &mut br,
        &mut card,
        &auth_url(&[("client_id", "bcl"), ("scope", "openid")]),
    )
    .await;
    let r = bcl_redeem(&mut br, &p["code"]).await;
    let at = r.json()["access_token"].as_str().unwrap().to_string();
    let der = card.auth_certificate_der().unwrap();
    let serial = broker::pki::inspect(&der).unwrap().serial_hex;
    t.demo_ca()
        .revoke(
            CertKind::UserAuth,
            &hex::decode(&serial).unwrap(),
            RevocationReason::KeyCompromise,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    assert_eq!(t.broker.store.logout_outbox().await.unwrap().len(), 0);
    let token =
        std::fs::read_to_string(broker::app::admin_token_path(&t.broker.config.data_dir)).unwrap();
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/admin/revocation/purge")
        .header("authorization", format!("Bearer {}", token.trim()))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            serde_json::json!({"anchor": "demo-auth-ca", "serial": format!("00{serial}")})
                .to_string(),
        ))
        .unwrap();
    let r = t.browser().send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let kinds: Vec<String> = t
        .broker
        .store
        .logout_outbox()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.kind)
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert_eq!(t.counts().await.sessions, 0);
    let r = t.browser().get_bearer("/userinfo", &at).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
}

/// A CRL refresh that lists a linked card: swept and signalled, with nobody logging in.
#[tokio::test]
async fn a_new_crl_listing_a_linked_card_signals_without_a_login() {
    use broker::pki::{CertKind, RevocationReason};
    let crl_only = r#"
[revocation]
max_cache_seconds = 60
refresh_ahead_seconds = 20
[[revocation.issuers]]
anchor = "demo-auth-ca"
crls = ["{demo}/demo-pki/crl/user_auth"]
[[revocation.issuers]]
anchor = "demo-sign-ca"
crls = ["{demo}/demo-pki/crl/signature"]
"#;
    let t = TestBroker::with_options(&[], Some(crl_only)).await;
    let mut card = t.card("card");
    let mut other = t.card("other");
    let mut br = t.browser();
    let p = login_with_card(&mut br, &mut card, &auth_url(&[])).await;
    let at = redeem(&mut br, &p["code"]).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    login_with_card(&mut t.browser(), &mut other, &auth_url(&[])).await;
    let der = card.auth_certificate_der().unwrap();
    let serial = broker::pki::inspect(&der).unwrap().serial_hex;
    t.demo_ca()
        .revoke(
            CertKind::UserAuth,
            &hex::decode(&serial).unwrap(),
            RevocationReason::CessationOfOperation,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    // Not due yet: nothing reloads, nothing is signalled.
    assert_eq!(
        broker::service::signals::refresh_crls(&t.broker)
            .await
            .unwrap(),
        0
    );
    assert_eq!(t.counts().await.sessions, 2);
    // Due: the new CRL is swept; the revoked card's account is signalled, the other's not.
    t.clock.advance(time::Duration::seconds(41));
    assert_eq!(
        broker::service::signals::refresh_crls(&t.broker)
            .await
            .unwrap(),
        1
    );
    assert_eq!(t.counts().await.sessions, 1);
    let r = t.browser().get_bearer("/userinfo", &at).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    // The next refresh of an unchanged CRL signals nothing more.
    t.clock.advance(time::Duration::seconds(41));
    assert_eq!(
        broker::service::signals::refresh_crls(&t.broker)
            .await
            .unwrap(),
        0
    );
}
