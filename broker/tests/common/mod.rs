//! Test harness: a broker on a temporary data directory, driven through the real router with
//! an in-memory cookie jar (a "browser"), and virtual cards from the demo PKI.
#![allow(dead_code)]

use broker_testkit::Setup;
pub use broker_testkit::{CHALLENGE, CLIENT, REDIRECT, SECRET, VERIFIER};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use broker::app::Broker;
use broker::card::{Key, VirtualCard};
use broker::clock::{FixedClock, b64url};
use broker::config::Config;
use broker::pki::demo::{CardRequest, DemoPki};
use http_body_util::BodyExt;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tower::ServiceExt;

pub use broker_testkit::DEFAULT_ISSUER as ISSUER;
#[allow(unused_imports)]
pub use broker_testkit::repo;

pub struct TestBroker {
    pub dir: tempfile::TempDir,
    pub broker: Arc<Broker>,
    pub app: Router,
    pub clock: Arc<FixedClock>,
    /// Base URL of the real loopback listener.
    pub base: String,
}

impl TestBroker {
    pub async fn new() -> TestBroker {
        Self::with_rps(&[]).await
    }

    /// A broker with the shipped relying parties plus `extra` (file name, TOML text).
    pub async fn with_rps(extra: &[(&str, &str)]) -> TestBroker {
        Self::with_options(extra, None).await
    }

    /// As `with_rps`, with `revocation` replacing policies/revocation.toml when given.
    /// `{demo}` in it stands for the base URL of this broker's own listener (which serves
    /// the demo OCSP responder and CRLs over real loopback HTTP).
    pub async fn with_options(extra: &[(&str, &str)], revocation: Option<&str>) -> TestBroker {
        match revocation {
            Some(r) => Self::with_policy_files(extra, &[("revocation.toml", r)]).await,
            None => Self::with_policy_files(extra, &[]).await,
        }
    }

    /// As `with_rps`, with policy files replaced or added by name (`{demo}` as above).
    pub async fn with_policy_files(
        extra: &[(&str, &str)],
        policy_files: &[(&str, &str)],
    ) -> TestBroker {
        Self::build(extra, policy_files, |_| {}).await
    }

    /// The shipped relying parties and policy, with the configuration changed by `edit`.
    pub async fn with_config(edit: impl FnOnce(&mut Config)) -> TestBroker {
        Self::build(&[], &[], edit).await
    }

    /// Extra relying parties and a configuration edit.
    pub async fn with_rps_and_config(
        extra: &[(&str, &str)],
        edit: impl FnOnce(&mut Config),
    ) -> TestBroker {
        Self::build(extra, &[], edit).await
    }

    async fn build(
        extra: &[(&str, &str)],
        policy_files: &[(&str, &str)],
        edit: impl FnOnce(&mut Config),
    ) -> TestBroker {
        let mut setup = Setup::new();
        for (name, text) in extra {
            setup = setup.relying_party(name, text);
        }
        for (name, text) in policy_files {
            setup = setup.policy_file(name, text);
        }
        let clock = Arc::new(FixedClock::new(time::OffsetDateTime::now_utc()));
        let b = setup.in_process(clock.clone(), edit).await;
        TestBroker {
            dir: b.dir,
            broker: b.broker,
            app: b.app,
            clock,
            base: b.base,
        }
    }

    /// The demo CA (revocation database, responder) of this broker.
    pub fn demo_ca(&self) -> broker::pki::demo::ca::DemoCa {
        broker::pki::demo::ca::DemoCa::open(&self.broker.config.data_dir.join("demo-pki")).unwrap()
    }

    pub fn demo_pki(&self) -> DemoPki {
        DemoPki::load(&self.broker.config.data_dir.join("demo-pki")).unwrap()
    }

    /// A fresh virtual card from the demo PKI (auth PIN 1234, sign PIN ABC123).
    pub fn card(&self, name: &str) -> VirtualCard {
        let now = time::OffsetDateTime::now_utc();
        self.card_from(
            &self.demo_pki(),
            name,
            now - time::Duration::days(1),
            now + time::Duration::days(365),
        )
    }

    pub fn card_from(
        &self,
        pki: &DemoPki,
        name: &str,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> VirtualCard {
        self.card_of_person(
            pki,
            name,
            time::macros::date!(1985 - 06 - 15),
            not_before,
            not_after,
        )
    }

    /// A fresh virtual card of someone born on `birthdate` (another person than [`Self::card`]'s).
    pub fn card_born(&self, name: &str, birthdate: time::Date) -> VirtualCard {
        let now = time::OffsetDateTime::now_utc();
        self.card_of_person(
            &self.demo_pki(),
            name,
            birthdate,
            now - time::Duration::days(1),
            now + time::Duration::days(365),
        )
    }

    fn card_of_person(
        &self,
        pki: &DemoPki,
        name: &str,
        birthdate: time::Date,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> VirtualCard {
        let req = CardRequest {
            birthdate,
            not_before,
            not_after,
            ..broker_testkit::person()
        };
        broker_testkit::issue_card(pki, &self.dir.path().join(name), &req)
    }

    pub fn browser(&self) -> Browser {
        Browser {
            app: self.app.clone(),
            cookies: HashMap::new(),
            peer: None,
        }
    }

    /// A browser whose requests come from `peer` (as the real listener says of each request).
    pub fn browser_at(&self, peer: &str) -> Browser {
        Browser {
            peer: Some(peer.parse().unwrap()),
            ..self.browser()
        }
    }

    /// The municipality renews `old` as `new`: both certificates' renewal recorded as link
    /// information, the old ones revoked as superseded.
    pub fn renew(&self, old: &mut VirtualCard, new: &mut VirtualCard) {
        use broker::pki::{CertKind, RevocationReason};
        let serial =
            |der: &[u8]| hex::decode(broker::pki::inspect(der).unwrap().serial_hex).unwrap();
        let ca = self.demo_ca();
        let now = time::OffsetDateTime::now_utc();
        for (kind, o, n) in [
            (
                CertKind::UserAuth,
                old.auth_certificate_der().unwrap(),
                new.auth_certificate_der().unwrap(),
            ),
            (
                CertKind::Signature,
                old.sign_certificate_der("ABC123").unwrap(),
                new.sign_certificate_der("ABC123").unwrap(),
            ),
        ] {
            ca.record_renewal(kind, &serial(&o), &serial(&n)).unwrap();
            ca.revoke(kind, &serial(&o), RevocationReason::Superseded, now)
                .unwrap();
        }
    }

    pub async fn counts(&self) -> broker::store::Counts {
        self.broker.store.counts().await.unwrap()
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub location: Option<String>,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// Query parameters of the redirect.
    pub fn redirect_params(&self) -> HashMap<String, String> {
        let loc = self.location.as_ref().expect("a redirect");
        url::Url::parse(loc)
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

/// Sends requests through the router and keeps cookies like a browser.
pub struct Browser {
    pub app: Router,
    pub cookies: HashMap<String, String>,
    /// The address the requests come from, if any.
    pub peer: Option<std::net::SocketAddr>,
}

pub fn path_of(url: &str) -> String {
    url.strip_prefix(ISSUER).unwrap_or(url).to_string()
}

impl Browser {
    pub async fn send(&mut self, mut req: Request<Body>) -> Resp {
        if let Some(p) = self.peer {
            req.extensions_mut().insert(axum::extract::ConnectInfo(p));
        }
        let res = self.app.clone().oneshot(req).await.unwrap();
        for v in res.headers().get_all(header::SET_COOKIE) {
            let s = v.to_str().unwrap();
            let (kv, _) = s.split_once(';').unwrap_or((s, ""));
            let (k, v) = kv.split_once('=').unwrap();
            self.cookies.insert(k.to_string(), v.to_string());
        }
        let status = res.status();
        let headers = res.headers().clone();
        let location = headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            location,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn get(&mut self, url: &str) -> Resp {
        let req = Request::builder()
            .uri(path_of(url))
            .header(header::COOKIE, self.cookie_header())
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }

    pub async fn post_form(
        &mut self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Resp {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(path_of(url))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, self.cookie_header());
        if let Some((u, p)) = basic {
            use base64::Engine;
            let v = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            b = b.header(header::AUTHORIZATION, format!("Basic {v}"));
        }
        self.send(b.body(Body::from(body)).unwrap()).await
    }

    pub async fn post_json(&mut self, url: &str, v: &Value) -> Resp {
        let req = Request::builder()
            .method(Method::POST)
            .uri(path_of(url))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap();
        self.send(req).await
    }

    /// A page's script posting JSON: with the browser's cookies, and the `Origin` it names.
    pub async fn fetch_json(&mut self, url: &str, v: &Value, origin: Option<&str>) -> Resp {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(path_of(url))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::COOKIE, self.cookie_header());
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        self.send(b.body(Body::from(v.to_string())).unwrap()).await
    }

    pub async fn get_bearer(&mut self, url: &str, token: &str) -> Resp {
        let req = Request::builder()
            .uri(path_of(url))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }
}

/// An authorization URL for the local-dev client with PKCE S256 of [`VERIFIER`].
pub fn auth_url(extra: &[(&str, &str)]) -> String {
    let mut p: Vec<(&str, &str)> = vec![
        ("client_id", CLIENT),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "openid profile"),
        ("state", "st-1"),
        ("nonce", "nonce-1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in extra {
        p.retain(|(n, _)| n != k);
        if !v.is_empty() {
            p.push((k, v));
        }
    }
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(p)
        .finish();
    format!("/authorize?{q}")
}

/// The state of a login page: transaction id and helper link.
pub struct Started {
    pub tx: String,
    pub helper_path: String,
    pub status: Value,
}

/// /authorize → login page; returns the transaction and its helper link.
pub async fn start_login(br: &mut Browser, url: &str) -> Started {
    let r = br.get(url).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let loc = r.location.unwrap();
    let tx = loc
        .strip_prefix("/login/")
        .expect("login redirect")
        .to_string();
    let page = br.get(&loc).await;
    assert_eq!(page.status, StatusCode::OK);
    let st = br.get(&format!("/login/{tx}/status")).await.json();
    assert_eq!(st["status"], "pending");
    Started {
        tx,
        helper_path: path_of(st["helper_url"].as_str().unwrap()),
        status: st,
    }
}

/// The helper's part: fetch the challenge, sign it with the card, post the answer; when the
/// broker asks for identity proofing, answer the signature challenge with PIN `ABC123`.
pub async fn helper_answer(
    br: &mut Browser,
    helper_path: &str,
    card: &mut VirtualCard,
    pin: &str,
) -> Resp {
    // A step-up that only needs proofing starts with the signature challenge.
    let first = br.get(helper_path).await.json();
    let pin = if first["certificate"] == "signature" {
        "ABC123"
    } else {
        pin
    };
    let r = helper_answer_once(br, helper_path, card, pin).await;
    if r.status == StatusCode::OK && r.json()["status"] == "proofing_required" {
        return helper_answer_once(br, helper_path, card, "ABC123").await;
    }
    r
}

/// One challenge, signed with the key the challenge names (`certificate`).
pub async fn helper_answer_once(
    br: &mut Browser,
    helper_path: &str,
    card: &mut VirtualCard,
    pin: &str,
) -> Resp {
    let ch = br.get(helper_path).await;
    assert_eq!(ch.status, StatusCode::OK, "{}", ch.body);
    let ch = ch.json();
    let msg = broker::clock::b64url_decode(ch["to_be_signed"].as_str().unwrap()).unwrap();
    let (cert, sig) = if ch["certificate"] == "signature" {
        (
            card.sign_certificate_der(pin).unwrap(),
            card.sign(Key::Sign, pin, &msg).unwrap(),
        )
    } else {
        (
            card.auth_certificate_der().unwrap(),
            card.sign(Key::Auth, pin, &msg).unwrap(),
        )
    };
    br.post_json(
        helper_path,
        &serde_json::json!({"certificate": b64url(&cert), "signature": b64url(&sig)}),
    )
    .await
}

/// The consent form's CSRF token on a consent page.
pub fn csrf_of(page: &Resp) -> String {
    page.body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .expect("a consent form")
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

/// Full login through consent; returns the redirect's query parameters (code, state, iss).
pub async fn login_with_card(
    br: &mut Browser,
    card: &mut VirtualCard,
    url: &str,
) -> HashMap<String, String> {
    let s = start_login(br, url).await;
    let r = helper_answer(br, &s.helper_path, card, "1234").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = br.get(&format!("/login/{}/continue", s.tx)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let mut loc = r.location.unwrap();
    if loc.starts_with(&format!("{ISSUER}/consent/")) {
        let page = br.get(&loc).await;
        let csrf = csrf_of(&page);
        let r = br
            .post_form(&loc, &[("csrf", &csrf), ("decision", "approve")], None)
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        loc = r.location.unwrap();
    }
    assert!(!loc.starts_with(ISSUER) && !loc.starts_with('/'), "{loc}");
    Resp {
        status: StatusCode::SEE_OTHER,
        location: Some(loc),
        headers: Default::default(),
        body: String::new(),
    }
    .redirect_params()
}

/// Redeem `code` at the token endpoint as local-dev.
pub async fn redeem(br: &mut Browser, code: &str) -> Resp {
    br.post_form(
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        Some((CLIENT, SECRET)),
    )
    .await
}
