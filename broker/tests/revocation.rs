//! Revocation: the checker against a real OCSP responder over loopback HTTP (good, revoked by
//! reason, unknown, down, slow, wrong key, another serial, stale, nonce mismatch, malformed),
//! CRL fallback (good, expired, wrongly signed), single flight, cache bound and purge — and
//! card login wired to it.

mod common;
use axum::extract::State;
use axum::http::StatusCode;
use broker::clock::{Clock, FixedClock};
use broker::pki::demo::{CardRequest, DemoPki};
use broker::pki::ocsp::{self, CertId, OcspError, ResponseStatusCode};
use broker::pki::{CertKind, CertStatus, RevocationReason, ValidatedCert};
use broker::revocation::{
    Checker, HttpFetcher, IssuerSources, RevocationError, RevocationPolicy, SourceKind,
};
use common::*;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Clone, Debug)]
enum Mode {
    Good,
    Revoked(RevocationReason),
    Unknown,
    Slow(Duration),
    WrongKey,
    OtherSerial,
    Stale,
    NonceMismatch,
    Malformed,
    TryLater,
}

struct Responder {
    mode: Mutex<Mode>,
    hits: AtomicUsize,
    /// The CA to answer as (default: the shared test PKI); may be set after start.
    pki: Mutex<Option<DemoPki>>,
}

struct Pkis {
    demo: DemoPki,
    other: DemoPki,
}

fn pkis() -> &'static Pkis {
    static P: OnceLock<Pkis> = OnceLock::new();
    P.get_or_init(|| {
        let now = OffsetDateTime::now_utc();
        Pkis {
            demo: DemoPki::generate(now).unwrap(),
            other: DemoPki::generate(now).unwrap(),
        }
    })
}

async fn respond(State(r): State<Arc<Responder>>, body: axum::body::Bytes) -> Vec<u8> {
    r.hits.fetch_add(1, Ordering::SeqCst);
    let mode = r.mode.lock().unwrap().clone();
    let shared = pkis();
    let own = r
        .pki
        .lock()
        .unwrap()
        .as_ref()
        .map(|p| p.ca_signer(CertKind::UserAuth));
    let demo = &shared.demo;
    let other = &shared.other;
    let req = ocsp::parse_request(&body).expect("the checker sends valid requests");
    let id = req.ids[0].clone();
    let now = OffsetDateTime::now_utc();
    // Sign as the CA the request is about (user-auth or signature CA of the demo PKI).
    let kind = [CertKind::UserAuth, CertKind::Signature]
        .into_iter()
        .find(|k| {
            CertId::new(&demo.ca_cert_der(*k), &id.serial)
                .unwrap()
                .issuer_key_hash
                == id.issuer_key_hash
        })
        .unwrap_or(CertKind::UserAuth);
    let signer = own.unwrap_or_else(|| demo.ca_signer(kind));
    let build = |st: CertStatus,
                 id: CertId,
                 nonce: Option<&[u8]>,
                 this: OffsetDateTime,
                 next: OffsetDateTime,
                 s: &ocsp::ResponderSigner| {
        ocsp::build_response(s, &[(id, st)], nonce, this, this, Some(next)).unwrap()
    };
    let nonce = req.nonce.as_deref();
    let hour = time::Duration::hours(1);
    match mode {
        Mode::Good => build(CertStatus::Good, id, nonce, now, now + hour, &signer),
        Mode::Revoked(reason) => build(
            CertStatus::Revoked {
                revoked_at: now - hour,
                reason: Some(reason),
            },
            id,
            nonce,
            now,
            now + hour,
            &signer,
        ),
        Mode::Unknown => build(CertStatus::Unknown, id, nonce, now, now + hour, &signer),
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            build(CertStatus::Good, id, nonce, now, now + hour, &signer)
        }
        Mode::WrongKey => build(
            CertStatus::Good,
            id,
            nonce,
            now,
            now + hour,
            &other.ca_signer(kind),
        ),
        Mode::OtherSerial => {
            let mut other = id.clone();
            other.serial = vec![0x7f, 0x01, 0x02];
            build(CertStatus::Good, other, nonce, now, now + hour, &signer)
        }
        Mode::Stale => build(
            CertStatus::Good,
            id,
            nonce,
            now - 3 * hour,
            now - 2 * hour,
            &signer,
        ),
        Mode::NonceMismatch => build(
            CertStatus::Good,
            id,
            Some(b"not-the-nonce-sent"),
            now,
            now + hour,
            &signer,
        ),
        Mode::Malformed => b"\x30\x05garbage".to_vec(),
        Mode::TryLater => ocsp::build_error_response(ResponseStatusCode::TryLater),
    }
}

/// A responder on a loopback port; returns its URL.
async fn responder(mode: Mode) -> (Arc<Responder>, String) {
    responder_as(mode, None).await
}

/// A responder answering as the user-authentication CA of `pki` (a broker's own demo PKI).
async fn responder_as(mode: Mode, pki: Option<DemoPki>) -> (Arc<Responder>, String) {
    let r = Arc::new(Responder {
        mode: Mutex::new(mode),
        hits: AtomicUsize::new(0),
        pki: Mutex::new(pki),
    });
    let app = axum::Router::new()
        .route("/ocsp", axum::routing::post(respond))
        .with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/ocsp", l.local_addr().unwrap().port());
    tokio::spawn(axum::serve(l, app).into_future());
    (r, url)
}

fn card_cert(pki: &DemoPki, kind: CertKind) -> ValidatedCert {
    let now = OffsetDateTime::now_utc();
    let issued = pki
        .issue_card(&CardRequest {
            name: "試験\u{3000}太郎".into(),
            name_substituted: None,
            birthdate: time::macros::date!(1980 - 01 - 01),
            gender: 1,
            address: "東京都千代田区サンプル町1-1".into(),
            address_substituted: None,
            not_before: now - time::Duration::days(1),
            not_after: now + time::Duration::days(30),
        })
        .unwrap();
    let pem = if kind == CertKind::UserAuth {
        issued.auth_cert_pem
    } else {
        issued.sign_cert_pem
    };
    let der = ::pem::parse(pem).unwrap().into_contents();
    broker::pki::validate(&der, &pki.trust_store().unwrap(), kind, now).unwrap()
}

fn policy(ocsp: Option<&str>, crls: &[&str]) -> RevocationPolicy {
    RevocationPolicy {
        timeout_ms: 400,
        issuers: ["demo-auth-ca", "demo-sign-ca"]
            .iter()
            .map(|a| IssuerSources {
                anchor: a.to_string(),
                ocsp_url: ocsp.map(str::to_string),
                crls: crls.iter().map(|s| s.to_string()).collect(),
            })
            .collect(),
        ..RevocationPolicy::default()
    }
}

fn checker(p: RevocationPolicy) -> (Arc<Checker>, Arc<FixedClock>) {
    let clock = Arc::new(FixedClock::new(OffsetDateTime::now_utc()));
    (
        Checker::new(
            p,
            "http://localhost:8080",
            Arc::new(HttpFetcher::new().unwrap()),
            clock.clone(),
        ),
        clock,
    )
}

fn causes(e: RevocationError) -> String {
    match e {
        RevocationError::Unavailable { causes } => causes.join(" | "),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn ocsp_good_revoked_by_reason_and_unknown() {
    let p = pkis();
    let (r, url) = responder(Mode::Good).await;
    let (c, _) = checker(policy(Some(&url), &[]));
    let cert = card_cert(&p.demo, CertKind::UserAuth);
    let ev = c.check(&cert).await.unwrap();
    assert_eq!(ev.status, CertStatus::Good);
    assert_eq!(ev.source, SourceKind::Ocsp);
    assert_eq!(ev.location, url);
    assert!(ev.next_update.is_some());
    for reason in [
        RevocationReason::KeyCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
    ] {
        *r.mode.lock().unwrap() = Mode::Revoked(reason);
        let cert = card_cert(&p.demo, CertKind::Signature);
        match c.check(&cert).await.unwrap().status.clone() {
            CertStatus::Revoked {
                reason: Some(got), ..
            } => assert_eq!(got, reason),
            other => panic!("expected revoked, got {other:?}"),
        }
    }
    *r.mode.lock().unwrap() = Mode::Unknown;
    let cert = card_cert(&p.demo, CertKind::UserAuth);
    assert_eq!(c.check(&cert).await.unwrap().status, CertStatus::Unknown);
}

#[tokio::test]
async fn bad_responses_are_refused_each_for_its_reason() {
    let p = pkis();
    let cases: Vec<(Mode, String)> = vec![
        (Mode::WrongKey, OcspError::BadSignature.to_string()),
        (Mode::OtherSerial, OcspError::CertIdMismatch.to_string()),
        (Mode::NonceMismatch, OcspError::NonceMismatch.to_string()),
        (Mode::Malformed, "malformed".into()),
        (Mode::TryLater, "tryLater".into()),
        (Mode::Stale, "stale".into()),
    ];
    for (mode, want) in cases {
        let (_, url) = responder(mode.clone()).await;
        let (c, _) = checker(policy(Some(&url), &[]));
        let got = causes(
            c.check(&card_cert(&p.demo, CertKind::UserAuth))
                .await
                .unwrap_err(),
        );
        assert!(
            got.to_lowercase().contains(&want.to_lowercase()),
            "{mode:?}: expected `{want}` in `{got}`"
        );
    }
}

#[tokio::test]
async fn responder_down_or_slow_fails_with_a_clear_cause_and_is_negatively_cached() {
    let p = pkis();
    // Down: a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (c, _) = checker(policy(Some(&format!("http://127.0.0.1:{port}/ocsp")), &[]));
    let got = causes(
        c.check(&card_cert(&p.demo, CertKind::UserAuth))
            .await
            .unwrap_err(),
    );
    assert!(got.contains("cannot connect"), "{got}");
    // Slow: longer than the 400 ms timeout.
    let (r, url) = responder(Mode::Slow(Duration::from_secs(3))).await;
    let (c, clock) = checker(policy(Some(&url), &[]));
    let cert = card_cert(&p.demo, CertKind::UserAuth);
    let started = std::time::Instant::now();
    let got = causes(c.check(&cert).await.unwrap_err());
    assert!(got.contains("timed out"), "{got}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The failure is remembered for negative_cache_seconds (10): no second upstream request…
    *r.mode.lock().unwrap() = Mode::Good;
    assert!(c.check(&cert).await.is_err());
    assert_eq!(r.hits.load(Ordering::SeqCst), 1);
    // …and then asked again.
    clock.advance(time::Duration::seconds(11));
    assert_eq!(c.check(&cert).await.unwrap().status, CertStatus::Good);
    assert_eq!(r.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn thousand_concurrent_checks_make_one_upstream_request() {
    let p = pkis();
    let (r, url) = responder(Mode::Slow(Duration::from_millis(200))).await;
    let (c, _) = checker(policy(Some(&url), &[]));
    let cert = Arc::new(card_cert(&p.demo, CertKind::UserAuth));
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (c, cert) = (c.clone(), cert.clone());
        tasks.push(tokio::spawn(async move { c.check(&cert).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status, CertStatus::Good);
    }
    assert_eq!(r.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cache_bound_refresh_ahead_and_purge() {
    let p = pkis();
    let (r, url) = responder(Mode::Good).await;
    let mut pol = policy(Some(&url), &[]);
    pol.max_cache_seconds = 60;
    pol.refresh_ahead_seconds = 20;
    let (c, clock) = checker(pol);
    let cert = card_cert(&p.demo, CertKind::UserAuth);
    assert_eq!(c.check(&cert).await.unwrap().status, CertStatus::Good);
    assert_eq!(c.check(&cert).await.unwrap().status, CertStatus::Good);
    assert_eq!(
        r.hits.load(Ordering::SeqCst),
        1,
        "a hit does not ask upstream"
    );
    // Revoked upstream; within the refresh-ahead window the cached answer is served while a
    // background refresh fetches the new one.
    *r.mode.lock().unwrap() = Mode::Revoked(RevocationReason::KeyCompromise);
    clock.advance(time::Duration::seconds(45));
    assert_eq!(c.check(&cert).await.unwrap().status, CertStatus::Good);
    for _ in 0..50 {
        if r.hits.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(r.hits.load(Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(
        c.check(&cert).await.unwrap().status,
        CertStatus::Revoked { .. }
    ));
    // Past the bound, an entry is never served.
    *r.mode.lock().unwrap() = Mode::Good;
    clock.advance(time::Duration::seconds(61));
    assert_eq!(c.check(&cert).await.unwrap().status, CertStatus::Good);
    // Purge: the next check asks upstream at once.
    *r.mode.lock().unwrap() = Mode::Revoked(RevocationReason::CessationOfOperation);
    let hits = r.hits.load(Ordering::SeqCst);
    assert!(
        c.purge("demo-auth-ca", &cert.issuer_cert_der, &cert.serial)
            .await
    );
    assert!(matches!(
        c.check(&cert).await.unwrap().status,
        CertStatus::Revoked { .. }
    ));
    assert_eq!(r.hits.load(Ordering::SeqCst), hits + 1);
}

#[tokio::test]
async fn crl_fallback_good_revoked_expired_and_wrongly_signed() {
    let p = pkis();
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let revoked = card_cert(&p.demo, CertKind::UserAuth);
    let good = card_cert(&p.demo, CertKind::UserAuth);
    let ca = p.demo.ca_cert_der(CertKind::UserAuth);
    let key = p.demo.ca_key_pkcs8(CertKind::UserAuth);
    let entries = vec![(
        revoked.serial.clone(),
        now - time::Duration::hours(1),
        Some(RevocationReason::KeyCompromise),
    )];
    let write = |name: &str, der: Vec<u8>| {
        let path = dir.path().join(name);
        std::fs::write(&path, der).unwrap();
        format!("file:{}", path.display())
    };
    let fresh = write(
        "fresh.crl",
        broker::pki::crl::build_crl(&ca, &key, &entries, now, now + time::Duration::days(1), 1)
            .unwrap(),
    );
    let expired = write(
        "expired.crl",
        broker::pki::crl::build_crl(
            &ca,
            &key,
            &entries,
            now - time::Duration::days(3),
            now - time::Duration::days(2),
            1,
        )
        .unwrap(),
    );
    let other_ca = p.other.ca_cert_der(CertKind::UserAuth);
    let other_key = p.other.ca_key_pkcs8(CertKind::UserAuth);
    let wrong = write(
        "wrong.crl",
        broker::pki::crl::build_crl(
            &other_ca,
            &other_key,
            &entries,
            now,
            now + time::Duration::days(1),
            1,
        )
        .unwrap(),
    );
    // OCSP down, CRL answers.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = format!("http://127.0.0.1:{port}/ocsp");
    let (c, _) = checker(policy(Some(&down), &[&fresh]));
    let ev = c.check(&revoked).await.unwrap();
    assert_eq!(ev.source, SourceKind::Crl);
    assert!(matches!(
        ev.status,
        CertStatus::Revoked {
            reason: Some(RevocationReason::KeyCompromise),
            ..
        }
    ));
    assert_eq!(c.check(&good).await.unwrap().status, CertStatus::Good);
    // Expired CRL and a CRL signed by another CA: refused, named.
    let (c, _) = checker(policy(None, &[&expired]));
    let got = causes(c.check(&good).await.unwrap_err());
    assert!(got.to_lowercase().contains("expired"), "{got}");
    let (c, _) = checker(policy(None, &[&wrong]));
    let got = causes(c.check(&good).await.unwrap_err());
    assert!(got.contains("CRL file:"), "{got}");
    // No source at all for a CA: NoSources.
    let (c, _) = checker(RevocationPolicy::default());
    assert_eq!(
        c.check(&good).await.unwrap_err(),
        RevocationError::NoSources {
            anchor: "demo-auth-ca".into()
        }
    );
}

// ---- Card login wired to the checker (the broker's own demo responder over loopback) ----

#[tokio::test]
async fn revoked_card_fails_within_the_cache_bound_and_at_once_after_a_purge() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let mut br = t.browser();
    login_with_card(&mut br, &mut card, &auth_url(&[])).await;
    // Revoked upstream (the demo CA's database), but the good answer is cached (60 s bound).
    let auth_der = card.auth_certificate_der().unwrap();
    let serial = hex::decode(broker::pki::inspect(&auth_der).unwrap().serial_hex).unwrap();
    t.demo_ca()
        .revoke(
            CertKind::UserAuth,
            &serial,
            RevocationReason::KeyCompromise,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    let mut b2 = t.browser();
    login_with_card(&mut b2, &mut card, &auth_url(&[])).await;
    // Past the bound: refused, with the reason, and nothing stored.
    t.clock.advance(time::Duration::seconds(61));
    let mut b3 = t.browser();
    let s = start_login(&mut b3, &auth_url(&[])).await;
    let before = t.counts().await;
    let r = helper_answer(&mut b3, &s.helper_path, &mut card, "1234").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.json()["error"], "certificate_revoked");
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("keyCompromise"),
        "{}",
        r.body
    );
    // Nothing made by the refusal; the account's sessions and grants end with the signals.
    let after = t.counts().await;
    assert_eq!(
        (
            after.accounts,
            after.cert_links,
            after.codes,
            after.verified_claims
        ),
        (
            before.accounts,
            before.cert_links,
            before.codes,
            before.verified_claims
        )
    );
    assert_eq!(after.sessions, 0);

    // Another card: cached good, revoked, purged by the operator → refused at once.
    let mut card2 = t.card("card2");
    login_with_card(&mut t.browser(), &mut card2, &auth_url(&[])).await;
    let der2 = card2.auth_certificate_der().unwrap();
    let serial2 = hex::decode(broker::pki::inspect(&der2).unwrap().serial_hex).unwrap();
    t.demo_ca()
        .revoke(
            CertKind::UserAuth,
            &serial2,
            RevocationReason::CessationOfOperation,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    let token =
        std::fs::read_to_string(broker::app::admin_token_path(&t.broker.config.data_dir)).unwrap();
    let purge = |body: serde_json::Value, tok: String| {
        let mut b = t.browser();
        async move {
            let req = axum::http::Request::builder()
                .method("POST")
                .uri("/admin/revocation/purge")
                .header("authorization", format!("Bearer {tok}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            b.send(req).await
        }
    };
    let body = serde_json::json!({"anchor": "demo-auth-ca", "serial": hex::encode(&serial2)});
    let r = purge(body.clone(), "wrong-token".into()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = purge(body, token.trim().to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["purged"], true);
    let mut b4 = t.browser();
    let s = start_login(&mut b4, &auth_url(&[])).await;
    let r = helper_answer(&mut b4, &s.helper_path, &mut card2, "1234").await;
    assert_eq!(r.json()["error"], "certificate_revoked");
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("cessationOfOperation")
    );

    // Metrics show the cache at work.
    let m = t.browser().get("/metrics").await.body;
    assert!(m.contains("revocation_cache_hits_total"), "{m}");
    assert!(m.contains("revocation_cache_misses_total"), "{m}");
}

const DOWN_POLICY: &str = r#"
[revocation]
timeout_ms = 300
FAIL_OPEN
[[revocation.issuers]]
anchor = "demo-auth-ca"
ocsp_url = "http://127.0.0.1:9/ocsp"
"#;

#[tokio::test]
async fn responder_down_fails_closed_or_open_only_as_policy_allows() {
    // Fail closed (default): a clear error, nothing stored.
    let t = TestBroker::with_options(&[], Some(&DOWN_POLICY.replace("FAIL_OPEN", ""))).await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let s = start_login(&mut br, &auth_url(&[])).await;
    let r = helper_answer(&mut br, &s.helper_path, &mut card, "1234").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.json()["error"], "revocation_unavailable");
    // The person learns what failed, never where: no responder URL (the log has it).
    assert_eq!(
        r.json()["error_description"],
        "cannot confirm that the certificate is not revoked (the revocation sources did not answer); try again later"
    );
    assert!(!r.body.contains("127.0.0.1:9"), "{}", r.body);
    assert_eq!(t.counts().await, broker::store::Counts::default());

    // Fail-open for aal1 only: the login succeeds, the session says unconfirmed, and the ID
    // token carries aal1 — never aal3, which requires a confirmed status.
    let t = TestBroker::with_options(
        &[],
        Some(&DOWN_POLICY.replace("FAIL_OPEN", "fail_open_levels = [\"aal1\"]")),
    )
    .await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let p = login_with_card(&mut br, &mut card, &auth_url(&[("acr_values", "aal3")])).await;
    let tok = redeem(&mut br, &p["code"]).await.json();
    let payload = tok["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_string();
    let claims: serde_json::Value =
        serde_json::from_slice(&broker::clock::b64url_decode(&payload).unwrap()).unwrap();
    assert_eq!(claims["acr"], "aal1");
    // The session itself records that revocation was not confirmed.
    let cookie = br.cookies["broker_session"].clone();
    let session = t
        .broker
        .store
        .get_session(&broker::clock::token_hash(&cookie))
        .await
        .unwrap()
        .unwrap();
    let facts: serde_json::Value = serde_json::from_str(&session.facts_json).unwrap();
    assert_eq!(facts["revocation"], "unconfirmed");
    let _ = t.clock.now();
}

/// A CRL says it is good until its nextUpdate (a day or a week), but the broker promises that
/// a revocation is seen within `max_cache_seconds`: a loaded CRL is fetched again after that
/// (in the background before then, so logins do not wait), an answer taken from a CRL lives no
/// longer than the CRL's own freshness, and an older CRL than one seen before is refused rather
/// than bringing revoked certificates back.
#[tokio::test]
async fn crls_are_fetched_again_within_max_cache_seconds_and_never_go_back() {
    let p = pkis();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.crl");
    let loc = format!("file:{}", path.display());
    let cert = card_cert(&p.demo, CertKind::UserAuth);
    let late = card_cert(&p.demo, CertKind::UserAuth);
    let ca = p.demo.ca_cert_der(CertKind::UserAuth);
    let key = p.demo.ca_key_pkcs8(CertKind::UserAuth);
    let now = OffsetDateTime::now_utc();
    let week = time::Duration::days(7);
    let crl = |revoked: &[&ValidatedCert], this_update: OffsetDateTime, n| {
        let entries: Vec<_> = revoked
            .iter()
            .map(|c| {
                (
                    c.serial.clone(),
                    this_update,
                    Some(RevocationReason::KeyCompromise),
                )
            })
            .collect();
        broker::pki::crl::build_crl(&ca, &key, &entries, this_update, now + week, n).unwrap()
    };
    let revoked = |s: &CertStatus| matches!(s, CertStatus::Revoked { .. });
    std::fs::write(&path, crl(&[], now, 1)).unwrap();
    let mut pol = policy(None, &[&loc]);
    pol.max_cache_seconds = 30;
    pol.refresh_ahead_seconds = 10;
    let (c, clock) = checker(pol);
    assert_eq!(c.check(&cert).await.unwrap().status, CertStatus::Good);
    // 25 s later another certificate is answered from the CRL loaded at 0: its answer lives
    // until the CRL's freshness ends (30 s), not 30 s from now.
    clock.advance(time::Duration::seconds(25));
    assert_eq!(c.check(&late).await.unwrap().status, CertStatus::Good);
    // The CA publishes a CRL revoking both cards at the same location. Its nextUpdate is a
    // week away, yet the revocation is seen once max_cache_seconds have passed.
    std::fs::write(
        &path,
        crl(&[&cert, &late], now + time::Duration::seconds(5), 2),
    )
    .unwrap();
    clock.advance(time::Duration::seconds(6));
    assert!(revoked(&c.check(&cert).await.unwrap().status));
    assert!(revoked(&c.check(&late).await.unwrap().status));

    // The background refresh fetches a CRL before its freshness ends (fresh_until −
    // refresh_ahead), so the check after that finds it loaded: here the location is broken
    // after the refresh, and the check still answers from what the refresh loaded.
    let anchor_der: Arc<[u8]> = cert.issuer_cert_der.clone();
    clock.advance(time::Duration::seconds(21));
    c.refresh_crls(|label| (label == "demo-auth-ca").then(|| anchor_der.clone()))
        .await;
    std::fs::write(&path, b"not a CRL").unwrap();
    clock.advance(time::Duration::seconds(10));
    assert!(revoked(&c.check(&cert).await.unwrap().status));
    // An older CRL (a stale mirror) where the current one was: refused; the newer CRL in use
    // stays the answer — the certificate is not taken back to good.
    std::fs::write(&path, crl(&[], now - time::Duration::seconds(60), 1)).unwrap();
    clock.advance(time::Duration::seconds(31));
    assert!(revoked(&c.check(&cert).await.unwrap().status));
    // After a purge nothing newer is loaded: the older CRL is still refused (fail closed).
    c.purge("demo-auth-ca", &ca, &cert.serial).await;
    let e = c.check(&cert).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("is older than one seen before at this location"),
        "{e}"
    );
}

#[tokio::test]
async fn demo_responder_answers_the_get_form_and_unknown_refuses_login() {
    let t = TestBroker::new().await;
    let card = t.card("card");
    let der = card.auth_certificate_der().unwrap();
    let info = broker::pki::inspect(&der).unwrap();
    let serial = hex::decode(&info.serial_hex).unwrap();
    let ca = t.demo_pki().ca_cert_der(CertKind::UserAuth);
    let id = CertId::new(&ca, &serial).unwrap();
    let req = ocsp::build_request(std::slice::from_ref(&id), None).unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&req);
    let enc = url::form_urlencoded::byte_serialize(b64.as_bytes()).collect::<String>();
    let r = reqwest::get(format!("{}/demo-pki/ocsp/user_auth/{enc}", t.base))
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/ocsp-response");
    let body = r.bytes().await.unwrap();
    let fresh = ocsp::Freshness {
        max_skew: time::Duration::minutes(5),
        max_age_without_next_update: time::Duration::hours(1),
    };
    let ans = ocsp::verify_response(
        &body,
        &ca,
        &id,
        ocsp::NonceCheck::NotSent,
        OffsetDateTime::now_utc(),
        fresh,
    )
    .unwrap();
    assert_eq!(ans.status, CertStatus::Good);
    // A responder (signing as this broker's demo CA) that does not know the certificate: the
    // login is refused, never fail-open.
    let (r, url) = responder_as(Mode::Unknown, None).await;
    let pol = format!(
        "[revocation]\nfail_open_levels = [\"aal1\"]\n[[revocation.issuers]]\nanchor = \"demo-auth-ca\"\nocsp_url = \"{url}\"\n"
    );
    let t = TestBroker::with_options(&[], Some(&pol)).await;
    *r.pki.lock().unwrap() = Some(t.demo_pki());
    let mut card = t.card("card");
    let mut br = t.browser();
    let s = start_login(&mut br, &auth_url(&[])).await;
    let r = helper_answer(&mut br, &s.helper_path, &mut card, "1234").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.json()["error"], "revocation_unknown");
    assert_eq!(t.counts().await, broker::store::Counts::default());
}

/// A purge is applied where it was made at once, and by the others when they read its event —
/// but not a second time by the process that made it (that would throw away the answer fetched
/// since, and log the purge twice).
#[tokio::test]
async fn a_purge_is_applied_once_by_the_process_that_made_it() {
    let t = TestBroker::new().await;
    let card = t.card("card");
    let der = card.auth_certificate_der().unwrap();
    let serial = hex::decode(broker::pki::inspect(&der).unwrap().serial_hex).unwrap();
    let ca: Arc<[u8]> = Arc::from(t.demo_pki().ca_cert_der(CertKind::UserAuth));
    let cert = broker::revocation::CertRef {
        anchor_label: "demo-auth-ca".into(),
        issuer_cert_der: ca.clone(),
        serial: serial.clone(),
    };
    let mut sync = broker::service::cluster::SyncState::default();
    broker::service::cluster::sync(&t.broker, &mut sync)
        .await
        .unwrap();
    t.broker.checker().check_ref(&cert).await.unwrap();
    let target = broker::service::cluster::PurgeTarget::One {
        anchor: "demo-auth-ca".into(),
        serial: hex::encode(&serial),
    };
    assert!(
        broker::service::cluster::purge_revocation(&t.broker, &target)
            .await
            .unwrap(),
        "it was cached"
    );
    // Asked again after the purge: cached again.
    t.broker.checker().check_ref(&cert).await.unwrap();
    // This process reads its own event back: nothing happens to the cache.
    broker::service::cluster::sync(&t.broker, &mut sync)
        .await
        .unwrap();
    assert!(
        t.broker.checker().purge("demo-auth-ca", &ca, &serial).await,
        "the answer fetched after the purge is still cached"
    );
}
