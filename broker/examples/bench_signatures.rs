//! Signature-verification benchmark: verifications per second over HTTP, single and batched,
//! against the physical limit of two RSA-2048 verifications per item. Prints figures; see
//! docs/benchmarks.md for the command and results.
//!
//! Run: `cargo run --release --example bench_signatures`

use std::time::{Duration, Instant};

mod common;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
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
    let bench = common::start(&rps, None).await;
    let base = bench.base.clone();

    // A virtual card and a signed document.
    let now = time::OffsetDateTime::now_utc();
    let (mut card, _) = common::card(&bench);
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
        &serde_json::json!({"iss": "bench", "sub": "bench", "aud": format!("{base}/token"), "exp": now_s + 60, "iat": now_s, "jti": broker::clock::random_id()}),
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
