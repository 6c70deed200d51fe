//! Signature-verification benchmark: verifications per second over HTTP, single and batched,
//! against the physical limit of two RSA-2048 verifications per item. Prints figures; see
//! docs/benchmarks.md for the command and results.
//!
//! Run: `cargo run --release --example bench_signatures`

use broker::app::Broker;
use broker::clock::SystemClock;
use broker::config::Config;
use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let rps = dir.path().join("rps");
    std::fs::create_dir(&rps).unwrap();
    // The bank's key for private_key_jwt.
    use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let kp = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .unwrap();
    let pt = kp.public_key().as_ref();
    let (x, y) = (
        broker::clock::b64url(&pt[1..33]),
        broker::clock::b64url(&pt[33..65]),
    );
    std::fs::write(
        rps.join("bench.toml"),
        format!(
            "client_id = \"bench\"\ndisplay_name = \"Bench\"\nkind = \"bank\"\nredirect_uris = [\"https://bench.example.jp/cb\"]\ntoken_endpoint_auth_method = \"private_key_jwt\"\nscopes = [\"openid\"]\npermissions = [\"signatures:verify\"]\napi_rate_per_second = 1000000\n[jwks]\nkeys = [{{ kty = \"EC\", crv = \"P-256\", alg = \"ES256\", use = \"sig\", kid = \"k1\", x = \"{x}\", y = \"{y}\" }}]\n"
        ),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let pol = dir.path().join("policies");
    std::fs::create_dir(&pol).unwrap();
    for e in std::fs::read_dir(repo.join("policies")).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace("{issuer}", &format!("http://127.0.0.1:{port}"));
        std::fs::write(pol.join(p.file_name().unwrap()), text).unwrap();
    }
    let env: HashMap<&str, String> = HashMap::from([
        (
            "BROKER_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
        ("BROKER_RELYING_PARTIES_DIR", rps.display().to_string()),
        ("BROKER_POLICIES_DIR", pol.display().to_string()),
        ("BROKER_ISSUER", format!("http://localhost:{port}")),
    ]);
    let config = Config::load(None, |k| env.get(k).cloned()).unwrap();
    let broker = Broker::start(config, Arc::new(SystemClock)).await.unwrap();
    tokio::spawn(axum::serve(listener, broker::http::app(broker.clone())).into_future());
    let base = format!("http://127.0.0.1:{port}");

    // A virtual card and a signed document.
    let pki = broker::pki::demo::DemoPki::load(&dir.path().join("data/demo-pki")).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let issued = pki
        .issue_card(&broker::pki::demo::CardRequest {
            name: "試験\u{3000}太郎".into(),
            name_substituted: None,
            birthdate: time::macros::date!(1980 - 01 - 01),
            gender: 1,
            address: "東京都".into(),
            address_substituted: None,
            not_before: now - time::Duration::days(1),
            not_after: now + time::Duration::days(30),
        })
        .unwrap();
    let mut card =
        broker::card::VirtualCard::create(&dir.path().join("card"), &issued, "1234", "ABC123")
            .unwrap();
    let cms = broker::signatures::sign(&mut card, "ABC123", b"bench document", false, now).unwrap();
    use base64::Engine;
    let cms_b64 = base64::engine::general_purpose::STANDARD.encode(&cms);

    let http = reqwest::Client::new();
    broker::app::install_crypto_provider();
    let now_s = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("k1".into());
    let assertion = jsonwebtoken::encode(
        &h,
        &serde_json::json!({"iss": "bench", "sub": "bench", "aud": format!("http://localhost:{port}/token"), "exp": now_s + 60, "iat": now_s}),
        &jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
    )
    .unwrap();
    let tok: serde_json::Value = http
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "signatures:verify"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tok = tok["access_token"].as_str().unwrap().to_string();

    // Warm the revocation cache.
    let r: serde_json::Value = http
        .post(format!("{base}/api/v1/signatures/verify"))
        .bearer_auth(&tok)
        .header("content-type", "application/cms")
        .body(cms.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["verdict"], "valid", "{r}");

    // Single requests, 16 concurrent, 5 s.
    let dur = Duration::from_secs(5);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, base, tok, cms) = (http.clone(), base.clone(), tok.clone(), cms.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while t0.elapsed() < dur {
                let r = http
                    .post(format!("{base}/api/v1/signatures/verify"))
                    .bearer_auth(&tok)
                    .header("content-type", "application/cms")
                    .body(cms.clone())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                let _ = r.bytes().await;
                n += 1;
            }
            n
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await.unwrap();
    }
    println!(
        "single: {:.0} verifications/s (16 concurrent requests, {n} in {:?})",
        n as f64 / t0.elapsed().as_secs_f64(),
        t0.elapsed()
    );

    // Batches of 500, 4 concurrent, 5 s.
    let batch =
        serde_json::json!({"items": vec![serde_json::json!({"cms": cms_b64}); 500]}).to_string();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (http, base, tok, batch) = (http.clone(), base.clone(), tok.clone(), batch.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while t0.elapsed() < dur {
                let r = http
                    .post(format!("{base}/api/v1/signatures/verify-batch"))
                    .bearer_auth(&tok)
                    .header("content-type", "application/json")
                    .body(batch.clone())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                let _ = r.bytes().await;
                n += 500;
            }
            n
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await.unwrap();
    }
    println!(
        "batched: {:.0} verifications/s (batches of 500, 4 concurrent, {n} in {:?})",
        n as f64 / t0.elapsed().as_secs_f64(),
        t0.elapsed()
    );
    println!(
        "physical limit (peers.md): ~47,000–51,000 RSA-2048 verifications/s per core, two per item → ~25,000 items/s per core, ~50,000 on 2 cores"
    );
}
