//! The login load driver of `bench/run`: full authorization-code + PKCE logins against the
//! broker (browser, card helper with a virtual card, token request) or against the peer
//! provider (panva oidc-provider with its no-browser login route), sequentially or with N
//! concurrent flows, on a current-thread runtime (pin it with `taskset`). Each flow has a fresh
//! cookie jar; the driver checks state, the code's redirect URI, and the ID token (signature by
//! the provider's JWKS, iss, aud, nonce). Prints one JSON line of figures, including the
//! driver's own CPU share and, given `--server-pid`, the server's.
//!
//! ```text
//! bench_load login --target broker|peer --base http://127.0.0.1:PORT [--issuer URL]
//!            [--card DIR] [--concurrency N] [--seconds S] [--warmup S] [--server-pid PID]
//! bench_load token --target broker|peer --base URL [--issuer URL] [--card DIR]
//!            (one login; prints its access token, for the userinfo load)
//! bench_load es256   (one core's ES256 signing and verification rates with aws-lc-rs, the
//!                    broker's crypto, and the card's RSA-2048 signing rate)
//! ```
//!
//! For the broker the client is `bench-public` (bench/relying-parties), the card's PIN 1234;
//! a signature PIN ABC123 answers the one-time proofing of the first login.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use broker::card::{Key, VirtualCard};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use serde_json::Value;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

const CLIENT: &str = "bench-public";
const REDIRECT: &str = "http://127.0.0.1:9/cb";

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Broker,
    Peer,
}

struct Opts {
    target: Target,
    base: String,
    issuer: String,
    card: Option<std::path::PathBuf>,
    concurrency: usize,
    seconds: f64,
    warmup: f64,
    server_pid: Option<u32>,
}

fn parse_args() -> (String, Opts) {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let mut o = Opts {
        target: Target::Broker,
        base: String::new(),
        issuer: String::new(),
        card: None,
        concurrency: 1,
        seconds: 10.0,
        warmup: 2.0,
        server_pid: None,
    };
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--target" => {
                o.target = match v.as_str() {
                    "broker" => Target::Broker,
                    "peer" => Target::Peer,
                    _ => panic!("--target is broker or peer"),
                }
            }
            "--base" => o.base = v,
            "--issuer" => o.issuer = v,
            "--card" => o.card = Some(v.into()),
            "--concurrency" => o.concurrency = v.parse().expect("--concurrency N"),
            "--seconds" => o.seconds = v.parse().expect("--seconds S"),
            "--warmup" => o.warmup = v.parse().expect("--warmup S"),
            "--server-pid" => o.server_pid = Some(v.parse().expect("--server-pid PID")),
            _ => panic!("unknown option {a}"),
        }
    }
    assert!(!o.base.is_empty(), "--base is required");
    if o.issuer.is_empty() {
        o.issuer = o.base.clone();
    }
    (cmd, o)
}

/// A browser's cookie jar, by name (paths and domains do not matter on one origin here).
#[derive(Default)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn update(&mut self, h: &HeaderMap) {
        for v in h.get_all(SET_COOKIE) {
            let Ok(s) = v.to_str() else { continue };
            let Some((name, rest)) = s.split_once('=') else {
                continue;
            };
            let value = rest.split(';').next().unwrap_or_default();
            let lower = s.to_ascii_lowercase();
            let dead = value.is_empty()
                || lower.contains("max-age=0")
                || lower.contains("expires=thu, 01 jan 1970");
            self.0.retain(|(n, _)| n != name);
            if !dead {
                self.0.push((name.to_string(), value.to_string()));
            }
        }
    }
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

struct Driver {
    http: reqwest::Client,
    o: Opts,
    /// The provider's signing keys by `kid`, parsed once (the JWKS is fetched at start).
    keys: std::collections::HashMap<String, jsonwebtoken::DecodingKey>,
    card: Option<Card>,
}

/// What the card is asked: sign `msg` with the signature key (else the authentication key);
/// it answers with its certificate and the signature.
struct SignJob {
    sign_key: bool,
    msg: Vec<u8>,
    answer: tokio::sync::oneshot::Sender<R<(Vec<u8>, Vec<u8>)>>,
}

/// The virtual card on a thread of its own (on the driver's core), as a real card signs on its
/// own chip: its RSA-2048 signature (~0.28 ms) would otherwise run inside the driver's event
/// loop, back to back for every flow ready at that moment, while their requests — written by
/// the connection tasks queued behind them — wait, and the server idles (the flows fall into
/// lock-step). A thread lets the kernel interleave the signing with the driver's I/O.
struct Card(std::sync::mpsc::Sender<SignJob>);

impl Card {
    fn open(dir: &std::path::Path) -> Card {
        let mut card = VirtualCard::open(dir).expect("the virtual card");
        let (tx, rx) = std::sync::mpsc::channel::<SignJob>();
        std::thread::spawn(move || {
            for job in rx {
                let r = if job.sign_key {
                    card.sign_certificate_der("ABC123")
                        .and_then(|cert| Ok((cert, card.sign(Key::Sign, "ABC123", &job.msg)?)))
                } else {
                    card.auth_certificate_der()
                        .and_then(|cert| Ok((cert, card.sign(Key::Auth, "1234", &job.msg)?)))
                };
                let _ = job.answer.send(r.map_err(|e| e.to_string()));
            }
        });
        Card(tx)
    }

    async fn sign(&self, sign_key: bool, msg: Vec<u8>) -> R<(Vec<u8>, Vec<u8>)> {
        let (answer, rx) = tokio::sync::oneshot::channel();
        self.0
            .send(SignJob {
                sign_key,
                msg,
                answer,
            })
            .map_err(|_| "the card thread ended")?;
        rx.await.map_err(|_| "the card thread ended")?
    }
}

type R<T> = Result<T, String>;

fn rand_b64(n: usize) -> String {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    B64.encode(b)
}

impl Driver {
    /// URLs the provider hands out name its issuer; the driver connects to `base`.
    fn url(&self, u: &str) -> String {
        if u.starts_with('/') {
            format!("{}{u}", self.o.base)
        } else {
            u.replacen(&self.o.issuer, &self.o.base, 1)
        }
    }

    async fn get(&self, url: &str, jar: &mut Jar) -> R<reqwest::Response> {
        let r = self
            .http
            .get(self.url(url))
            .header(COOKIE, jar.header())
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        jar.update(r.headers());
        Ok(r)
    }

    fn location(r: &reqwest::Response) -> R<String> {
        if !r.status().is_redirection() {
            return Err(format!(
                "{}: expected a redirect, got {}",
                r.url(),
                r.status()
            ));
        }
        r.headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| "redirect without Location".to_string())
    }

    /// One whole login; returns the token response.
    async fn login(&self) -> R<Value> {
        let verifier = rand_b64(32);
        let challenge = B64.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
        let (state, nonce) = (rand_b64(16), rand_b64(16));
        let path = if self.o.target == Target::Broker {
            "/authorize"
        } else {
            "/auth"
        };
        let auth = format!(
            "{}{path}?client_id={CLIENT}&redirect_uri={}&response_type=code&scope=openid&state={state}&nonce={nonce}&code_challenge={challenge}&code_challenge_method=S256",
            self.o.base,
            urlenc(REDIRECT)
        );
        let mut jar = Jar::default();
        let r = self.get(&auth, &mut jar).await?;
        let mut next = Self::location(&r)?;
        if self.o.target == Target::Broker {
            next = self.card_step(&next, &mut jar).await?;
        }
        // Follow the provider's own redirects (the peer's interaction and resume; the broker's
        // consent page on a first login) to the one back to the client.
        let mut hops = 0;
        while !next.starts_with(REDIRECT) {
            hops += 1;
            if hops > 6 {
                return Err(format!("too many redirects, at {next}"));
            }
            if next.contains("/consent/") {
                next = self.consent(&next, &mut jar).await?;
                continue;
            }
            let r = self.get(&next, &mut jar).await?;
            next = Self::location(&r)?;
        }
        let back = url::Url::parse(&next).map_err(|e| e.to_string())?;
        let q = |k: &str| {
            back.query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
        };
        if let Some(e) = q("error") {
            return Err(format!("authorization error {e}"));
        }
        if q("state").as_deref() != Some(state.as_str()) {
            return Err("state does not match".into());
        }
        let code = q("code").ok_or("no code")?;
        let r = self
            .http
            .post(format!("{}/token", self.o.base))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier.as_str()),
                ("client_id", CLIENT),
            ])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != StatusCode::OK {
            return Err(format!(
                "token: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ));
        }
        let t: Value = r.json().await.map_err(|e| e.to_string())?;
        self.check_id_token(t["id_token"].as_str().ok_or("no id_token")?, &nonce)?;
        Ok(t)
    }

    /// The broker's login page step, as a phone app on the same device does it: the
    /// transaction's status gives the helper link; the card signs the challenge.
    async fn card_step(&self, login: &str, jar: &mut Jar) -> R<String> {
        let tx = login
            .rsplit_once("/login/")
            .map(|(_, t)| t.to_string())
            .ok_or_else(|| format!("unexpected redirect to {login}"))?;
        let st: Value = self
            .get(&format!("/login/{tx}/status"), jar)
            .await?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let helper = st["helper_url"].as_str().ok_or("no helper_url")?;
        loop {
            // The helper is another program (or device): no browser cookies.
            let ch: Value = self
                .get(helper, &mut Jar::default())
                .await?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let msg = B64
                .decode(ch["to_be_signed"].as_str().ok_or("no to_be_signed")?)
                .map_err(|e| e.to_string())?;
            let card = self.card.as_ref().ok_or("--card is required")?;
            let (cert, sig) = card.sign(ch["certificate"] == "signature", msg).await?;
            let r = self
                .http
                .post(self.url(ch["response_uri"].as_str().ok_or("no response_uri")?))
                .json(&serde_json::json!({"certificate": B64.encode(cert), "signature": B64.encode(sig)}))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let v: Value = r.json().await.map_err(|e| e.to_string())?;
            match v["status"].as_str() {
                Some("authenticated") => break,
                Some("proofing_required") => continue,
                _ => return Err(format!("card refused: {v}")),
            }
        }
        let r = self.get(&format!("/login/{tx}/continue"), jar).await?;
        Self::location(&r)
    }

    async fn consent(&self, page: &str, jar: &mut Jar) -> R<String> {
        let html = self
            .get(page, jar)
            .await?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let csrf = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .ok_or("consent page without csrf")?;
        let r = self
            .http
            .post(self.url(page))
            .header(COOKIE, jar.header())
            .form(&[("csrf", csrf), ("decision", "approve")])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        jar.update(r.headers());
        Self::location(&r)
    }

    fn check_id_token(&self, t: &str, nonce: &str) -> R<()> {
        let h = jsonwebtoken::decode_header(t).map_err(|e| e.to_string())?;
        let key = h
            .kid
            .as_ref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or("ID token key not in the JWKS")?;
        let mut v = jsonwebtoken::Validation::new(h.alg);
        v.set_audience(&[CLIENT]);
        v.set_issuer(&[&self.o.issuer]);
        let c = jsonwebtoken::decode::<Value>(t, key, &v).map_err(|e| format!("ID token: {e}"))?;
        if c.claims["nonce"] != nonce {
            return Err("nonce does not match".into());
        }
        Ok(())
    }
}

fn urlenc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// utime + stime of a process, in seconds (Linux /proc; USER_HZ is 100).
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = pid.map_or("/proc/self/stat".to_string(), |p| format!("/proc/{p}/stat"));
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat; index 11 and 12 after the ')'.
    (tick(11) + tick(12)) / 100.0
}

/// One core's ES256 signing limit with the broker's crypto (aws-lc-rs): signatures per second
/// over a JWT-sized message, for 2 s; then its verification rate (the driver's ID-token check)
/// and the card's RSA-2048 signing rate: what a broker login costs the load core in crypto.
fn es256_limit() {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let msg = [b'x'; 300];
    let (t, mut n) = (Instant::now(), 0u64);
    while t.elapsed() < Duration::from_secs(2) {
        for _ in 0..100 {
            key.sign(&rng, &msg).unwrap();
        }
        n += 100;
    }
    let es256 = n as f64 / t.elapsed().as_secs_f64();
    // Verification, as the driver checks each ID token (the public key parsed once).
    let sig = key.sign(&rng, &msg).unwrap();
    let public = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        aws_lc_rs::signature::KeyPair::public_key(&key)
            .as_ref()
            .to_vec(),
    );
    let (t, mut n) = (Instant::now(), 0u64);
    while t.elapsed() < Duration::from_secs(2) {
        for _ in 0..100 {
            public.verify(&msg, sig.as_ref()).unwrap();
        }
        n += 100;
    }
    let es256_verify = n as f64 / t.elapsed().as_secs_f64();
    // And the virtual card's RSA-2048 PKCS#1 signature, which the driver computes per login.
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let mut sig = vec![0u8; rsa.public_modulus_len()];
    let (t, mut n) = (Instant::now(), 0u64);
    while t.elapsed() < Duration::from_secs(2) {
        for _ in 0..10 {
            rsa.sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &rng,
                &msg,
                &mut sig,
            )
            .unwrap();
        }
        n += 10;
    }
    println!(
        "{}",
        serde_json::json!({
            "es256_signs_per_s": es256,
            "es256_verifies_per_s": es256_verify,
            "rsa2048_signs_per_s": n as f64 / t.elapsed().as_secs_f64(),
        })
    );
}

// The broker's allocator, for the same reason (many small short-lived allocations per request).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("es256") {
        return es256_limit();
    }
    let (cmd, o) = parse_args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(cmd, o));
}

async fn run(cmd: String, o: Opts) {
    let issuer = url::Url::parse(&o.issuer).unwrap();
    let base = url::Url::parse(&o.base).unwrap();
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30));
    if let (Some(h), Some(addr)) = (issuer.host_str(), base.socket_addrs(|| None).ok()) {
        b = b.resolve(h, addr[0]);
    }
    let http = b.build().unwrap();
    let jwks_uri = format!("{}/jwks", o.base);
    let jwks: jsonwebtoken::jwk::JwkSet = http
        .get(&jwks_uri)
        .send()
        .await
        .expect("JWKS")
        .json()
        .await
        .expect("JWKS JSON");
    let keys = jwks
        .keys
        .iter()
        .filter_map(|k| {
            let key = jsonwebtoken::DecodingKey::from_jwk(k).ok()?;
            Some((k.common.key_id.clone()?, key))
        })
        .collect();
    let card = o.card.as_ref().map(|d| Card::open(d));
    let d = Rc::new(Driver {
        http,
        o,
        keys,
        card,
    });
    match cmd.as_str() {
        "token" => {
            let t = d
                .login()
                .await
                .unwrap_or_else(|e| panic!("login failed: {e}"));
            println!("{}", t["access_token"].as_str().unwrap());
        }
        "login" => load(d).await,
        _ => panic!("usage: bench_load login|token --target broker|peer --base URL …"),
    }
}

async fn load(d: Rc<Driver>) {
    let warm_end = Instant::now() + Duration::from_secs_f64(d.o.warmup);
    let end = warm_end + Duration::from_secs_f64(d.o.seconds);
    let lat = Rc::new(RefCell::new(Vec::<Duration>::new()));
    let errors = Rc::new(RefCell::new((0u64, String::new())));
    // CPU time of driver and server at the start and the end of the measured window.
    let pid = d.o.server_pid;
    let marks = tokio::task::spawn_local(async move {
        tokio::time::sleep_until(warm_end.into()).await;
        let start = (cpu_seconds(None), cpu_seconds(pid));
        tokio::time::sleep_until(end.into()).await;
        (start, (cpu_seconds(None), cpu_seconds(pid)))
    });
    let mut tasks = Vec::new();
    for _ in 0..d.o.concurrency {
        let (d, lat, errors) = (d.clone(), lat.clone(), errors.clone());
        tasks.push(tokio::task::spawn_local(async move {
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let r = d.login().await;
                let measured = t0 >= warm_end && Instant::now() <= end;
                match r {
                    Ok(_) if measured => lat.borrow_mut().push(t0.elapsed()),
                    Ok(_) => {}
                    Err(e) => {
                        let mut er = errors.borrow_mut();
                        er.0 += 1;
                        if er.1.is_empty() {
                            er.1 = e;
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ((c0, s0), (c1, s1)) = marks.await.unwrap();
    let wall = d.o.seconds;
    let mut lat = lat.borrow().clone();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let errors = errors.borrow();
    println!(
        "{}",
        serde_json::json!({
            "flows": lat.len(),
            "rate": lat.len() as f64 / wall,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "errors": errors.0,
            "first_error": errors.1,
            "driver_cpu": (c1 - c0) / wall,
            "server_cpu": if d.o.server_pid.is_some() { Some((s1 - s0) / wall) } else { None },
        })
    );
}
