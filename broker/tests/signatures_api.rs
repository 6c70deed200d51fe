//! The signature-verification API through the real router: access (client_credentials with
//! scope signatures:verify), verdicts, revocation by reason, records, batch, limits.

mod common;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use broker::card::Key;
use broker::clock::{b64url, sha256};
use common::*;
use serde_json::{Value, json};

/// The banks' key (private_key_jwt), made once.
fn bank_key() -> &'static (Vec<u8>, Value) {
    use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
    static K: std::sync::OnceLock<(Vec<u8>, Value)> = std::sync::OnceLock::new();
    K.get_or_init(|| {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let kp =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                .unwrap();
        let p = kp.public_key().as_ref();
        let jwk = json!({"x": b64url(&p[1..33]), "y": b64url(&p[33..65])});
        (pkcs8.as_ref().to_vec(), jwk)
    })
}

fn verifier_rp(id: &str, rate: Option<u32>) -> String {
    let jwk = &bank_key().1;
    let mut s = format!(
        "client_id = \"{id}\"\ndisplay_name = \"Bank verifier\"\nkind = \"bank\"\nredirect_uris = [\"https://{id}.example.jp/cb\"]\ntoken_endpoint_auth_method = \"private_key_jwt\"\nscopes = [\"openid\"]\nclaims = [\"name\", \"birthdate\"]\npermissions = [\"signatures:verify\"]\n"
    );
    if let Some(r) = rate {
        s.push_str(&format!("api_rate_per_second = {r}\n"));
    }
    s.push_str(&format!(
        "[jwks]\nkeys = [{{ kty = \"EC\", crv = \"P-256\", alg = \"ES256\", use = \"sig\", kid = \"k1\", x = \"{}\", y = \"{}\" }}]\n",
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap()
    ));
    s
}

async fn setup() -> TestBroker {
    TestBroker::with_rps(&[
        ("verifier.toml", &verifier_rp("verifier", None)),
        ("slow.toml", &verifier_rp("slow", Some(1))),
    ])
    .await
}

/// A private_key_jwt client assertion of `client` for the token endpoint.
fn assertion(client: &str) -> String {
    broker::app::install_crypto_provider();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("k1".into());
    jsonwebtoken::encode(
        &h,
        &json!({"iss": client, "sub": client, "aud": format!("{ISSUER}/token"), "exp": now + 60, "iat": now, "jti": broker::clock::random_id()}),
        &jsonwebtoken::EncodingKey::from_ec_der(&bank_key().0),
    )
    .unwrap()
}

async fn cc(br: &mut Browser, client: &str, scope: &str) -> Resp {
    let a = assertion(client);
    br.post_form(
        "/token",
        &[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &a),
        ],
        None,
    )
    .await
}

async fn token(br: &mut Browser, client: &str) -> String {
    let r = cc(br, client, "signatures:verify").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let t = r.json();
    assert!(t.get("id_token").is_none() && t.get("refresh_token").is_none());
    t["access_token"].as_str().unwrap().to_string()
}

async fn post(br: &mut Browser, path: &str, token: Option<&str>, ct: &str, body: Vec<u8>) -> Resp {
    let mut b = Request::builder()
        .method("POST")
        .uri(path)
        .header(header::CONTENT_TYPE, ct);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    br.send(b.body(Body::from(body)).unwrap()).await
}

fn cms_of(card: &mut broker::card::VirtualCard, content: &[u8], detached: bool) -> Vec<u8> {
    broker::signatures::sign(
        card,
        "ABC123",
        content,
        detached,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap()
}

fn b64(d: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(d)
}

#[tokio::test]
async fn access_needs_a_token_with_the_scope() {
    let t = setup().await;
    let mut br = t.browser();
    // client_credentials: refused for RPs without the permission and for unknown scopes.
    let r = br
        .post_form(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("scope", "signatures:verify"),
            ],
            Some((CLIENT, SECRET)),
        )
        .await;
    assert_eq!(r.json()["error"], "invalid_scope");
    assert_eq!(
        r.json()["error_description"],
        "scope `signatures:verify` is not permitted for client `local-dev`"
    );
    let r = cc(&mut br, "verifier", "openid").await;
    assert_eq!(r.json()["error"], "invalid_scope");
    let body = serde_json::to_vec(&json!({"cms": "AAAA"})).unwrap();
    // No token: 401 with a Bearer challenge; nothing recorded.
    let r = post(
        &mut br,
        "/api/v1/signatures/verify",
        None,
        "application/json",
        body.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    // A person's access token (no signatures:verify scope): 403.
    let mut card = t.card("card");
    let p = login_with_card(&mut t.browser(), &mut card, &auth_url(&[])).await;
    let at = redeem(&mut br, &p["code"]).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post(
        &mut br,
        "/api/v1/signatures/verify",
        Some(&at),
        "application/json",
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "insufficient_scope");
    assert_eq!(t.counts().await.signature_verifications, 0);
}

#[tokio::test]
async fn verdicts_revocation_records_and_what_of_the_signer_leaves() {
    let t = setup().await;
    let mut br = t.browser();
    let tok = token(&mut br, "verifier").await;
    let mut card = t.card("card");
    let doc = "口座開設申込書 2026-11-28".as_bytes();
    // Valid, attached (DER body) and detached (JSON).
    let r = post(
        &mut br,
        "/api/v1/signatures/verify",
        Some(&tok),
        "application/cms",
        cms_of(&mut card, doc, false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["verdict"], "valid", "{v}");
    assert_eq!(v["reasons"], json!([]));
    assert_eq!(v["revocation"]["status"], "good");
    assert_eq!(v["revocation"]["source"], "ocsp");
    assert_eq!(v["document_sha256"], hex::encode(sha256(doc)));
    assert_eq!(v["signer"]["name"], "試験\u{3000}花子");
    assert_eq!(v["signer"]["birthdate"], "1985-06-15");
    assert!(
        v["signer"].get("address").is_none(),
        "the registration allows name and birthdate only"
    );
    assert_eq!(v["certificate"]["policy"], "1.2.392.200149.8.5.1.1.20");
    let rec = t
        .broker
        .store
        .get_verification(v["audit_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (rec.verdict.as_str(), rec.client_id.as_str()),
        ("valid", "verifier")
    );
    assert_eq!(
        rec.document_sha256.as_deref(),
        Some(hex::encode(sha256(doc)).as_str())
    );
    assert!(
        rec.retain_until - rec.created_at >= 7 * 365 * 86_400,
        "kept seven years"
    );
    let det = cms_of(&mut card, doc, true);
    let r = post(
        &mut br,
        "/api/v1/signatures/verify",
        Some(&tok),
        "application/json",
        serde_json::to_vec(&json!({"cms": b64(&det), "content": b64(doc)})).unwrap(),
    )
    .await;
    assert_eq!(r.json()["verdict"], "valid", "{}", r.body);
    assert_eq!(r.json()["detached"], true);
    // Tampered content: invalid, with the reason, and recorded as such.
    let r = post(
        &mut br,
        "/api/v1/signatures/verify",
        Some(&tok),
        "application/json",
        serde_json::to_vec(&json!({"cms": b64(&det), "content": b64(b"another document")}))
            .unwrap(),
    )
    .await;
    let v = r.json();
    assert_eq!(v["verdict"], "invalid");
    assert_eq!(v["reasons"][0]["code"], "digest_mismatch");
    let rec = t
        .broker
        .store
        .get_verification(v["audit_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.verdict, "invalid");
    // A raw signature by the authentication key and certificate: the wrong kind.
    let sig = card.sign(Key::Auth, "1234", doc).unwrap();
    let raw = json!({"data": b64(doc), "signature": b64(&sig), "certificate": b64(&card.auth_certificate_der().unwrap())});
    let r = post(
        &mut br,
        "/api/v1/signatures/verify",
        Some(&tok),
        "application/json",
        serde_json::to_vec(&raw).unwrap(),
    )
    .await;
    assert_eq!(
        r.json()["reasons"][0]["code"],
        "wrong_certificate_kind",
        "{}",
        r.body
    );
    // Garbage.
    let r = post(
        &mut br,
        "/api/v1/signatures/verify",
        Some(&tok),
        "application/cms",
        b"garbage".to_vec(),
    )
    .await;
    assert_eq!(r.json()["reasons"][0]["code"], "malformed");
    // Revoked with affiliationChanged: invalid, reason-aware.
    let sign_der = card.sign_certificate_der("ABC123").unwrap();
    let serial = hex::decode(broker::pki::inspect(&sign_der).unwrap().serial_hex).unwrap();
    t.demo_ca()
        .revoke(
            broker::pki::CertKind::Signature,
            &serial,
            broker::pki::RevocationReason::AffiliationChanged,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    let ca = t.demo_pki().ca_cert_der(broker::pki::CertKind::Signature);
    t.broker.checker().purge("demo-sign-ca", &ca, &serial).await;
    let r = post(
        &mut br,
        "/api/v1/signatures/verify",
        Some(&tok),
        "application/cms",
        cms_of(&mut card, doc, false),
    )
    .await;
    let v = r.json();
    assert_eq!(v["verdict"], "invalid");
    assert_eq!(v["reasons"][0]["code"], "revoked");
    assert_eq!(v["revocation"]["reason"], "affiliationChanged");
    assert!(
        v["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .contains("basic information"),
        "{v}"
    );
    assert_eq!(t.counts().await.signature_verifications, 6);
}

#[tokio::test]
async fn batch_limits_and_the_openapi_document() {
    let t = setup().await;
    let mut br = t.browser();
    let tok = token(&mut br, "verifier").await;
    let mut card = t.card("card");
    let good = cms_of(&mut card, b"doc one", false);
    let items = json!({"items": [{"cms": b64(&good)}, {"cms": "bm90IGNtcw=="}, {"nonsense": 1}]});
    let r = post(
        &mut br,
        "/api/v1/signatures/verify-batch",
        Some(&tok),
        "application/json",
        serde_json::to_vec(&items).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let res = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(res.len(), 3);
    assert_eq!(res[0]["verdict"], "valid");
    assert_eq!(res[1]["reasons"][0]["code"], "malformed");
    assert_eq!(res[2]["reasons"][0]["code"], "invalid_request");
    assert_eq!(t.counts().await.signature_verifications, 3);
    // An empty batch is refused.
    let r = post(
        &mut br,
        "/api/v1/signatures/verify-batch",
        Some(&tok),
        "application/json",
        br#"{"items": []}"#.to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Oversize body: 413, nothing recorded.
    let big = vec![b'A'; 17 * 1024 * 1024];
    let r = post(
        &mut br,
        "/api/v1/signatures/verify",
        Some(&tok),
        "application/cms",
        big,
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(t.counts().await.signature_verifications, 3);
    // Per-client rate limit (the `slow` client: 1 per second).
    let slow = token(&mut br, "slow").await;
    let r1 = post(
        &mut br,
        "/api/v1/signatures/verify",
        Some(&slow),
        "application/cms",
        good.clone(),
    )
    .await;
    let r2 = post(
        &mut br,
        "/api/v1/signatures/verify",
        Some(&slow),
        "application/cms",
        good.clone(),
    )
    .await;
    assert_eq!(r1.status, StatusCode::OK);
    assert_eq!(r2.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r2.headers["retry-after"], "1");
    // The OpenAPI document at its stable URL.
    let doc: Value = br.get("/api/v1/openapi.json").await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/signatures/verify"]["post"].is_object());
    let _ = b64url(b"");
}
