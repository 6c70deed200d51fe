//! Client authentication methods, ID token algorithms, public clients, POST /authorize and
//! token revocation, through the real router.

mod common;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use axum::http::StatusCode;
use broker::clock::{b64url, sha256};
use common::*;
use serde_json::{Value, json};

const PKJWT_RP: &str = r#"
client_id = "pkjwt"
display_name = "Key client"
kind = "bank"
redirect_uris = ["https://rp.example.jp/cb"]
token_endpoint_auth_method = "private_key_jwt"
scopes = ["openid"]
id_token_signed_response_alg = "PS256"
"#;

const POST_RP: &str = r#"
client_id = "post"
display_name = "Post client"
kind = "hospital"
redirect_uris = ["https://post.example.jp/cb"]
token_endpoint_auth_method = "client_secret_post"
client_secret_sha256 = "SECRET_HASH"
scopes = ["openid"]
id_token_signed_response_alg = "RS256"
"#;

const SPA_REDIRECT: &str = "http://localhost:8766/callback";

fn url_for(client: &str, redirect: &str) -> String {
    auth_url(&[
        ("client_id", client),
        ("redirect_uri", redirect),
        ("scope", "openid"),
    ])
}

async fn code_for(t: &TestBroker, client: &str, redirect: &str) -> String {
    let mut card = t.card(&format!("card-{client}-{}", broker::clock::random_id()));
    let mut br = t.browser();
    // scope=openid only: nothing but a pairwise identifier leaves, so there is no consent page.
    let p = login_with_card(&mut br, &mut card, &url_for(client, redirect)).await;
    p["code"].clone()
}

fn verify(token: &str, jwks: &Value, aud: &str) -> (jsonwebtoken::Header, Value) {
    broker::app::install_crypto_provider();
    let h = jsonwebtoken::decode_header(token).unwrap();
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let key =
        jsonwebtoken::DecodingKey::from_jwk(set.find(h.kid.as_deref().unwrap()).unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(h.alg);
    v.set_audience(&[aud]);
    let c = jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims;
    (h, c)
}

fn es256_key() -> (Vec<u8>, Value) {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let kp = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .unwrap();
    let p = kp.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": b64url(&p[1..33]), "y": b64url(&p[33..65])});
    (pkcs8.as_ref().to_vec(), jwk)
}

fn assertion(pkcs8: &[u8], sub: &str, aud: &str, exp_in: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    signed_assertion(
        pkcs8,
        &json!({"iss": sub, "sub": sub, "aud": aud, "exp": now + exp_in, "iat": now, "jti": broker::clock::random_id()}),
    )
}

fn signed_assertion(pkcs8: &[u8], claims: &Value) -> String {
    broker::app::install_crypto_provider();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("k1".into());
    jsonwebtoken::encode(&h, claims, &jsonwebtoken::EncodingKey::from_ec_der(pkcs8)).unwrap()
}

#[tokio::test]
async fn private_key_jwt_client_and_ps256_id_tokens() {
    let (pkcs8, jwk) = es256_key();
    let (other, _) = es256_key();
    let rp = format!("{PKJWT_RP}\n[jwks]\nkeys = [{}]\n", toml_inline(&jwk));
    let t = TestBroker::with_rps(&[("pkjwt.toml", &rp)]).await;
    let code = code_for(&t, "pkjwt", "https://rp.example.jp/cb").await;
    let mut br = t.browser();
    let form = |a: String| {
        vec![
            ("grant_type".to_string(), "authorization_code".to_string()),
            ("code".into(), code.clone()),
            ("redirect_uri".into(), "https://rp.example.jp/cb".into()),
            ("code_verifier".into(), VERIFIER.into()),
            (
                "client_assertion_type".into(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ),
            ("client_assertion".into(), a),
        ]
    };
    let post = |f: Vec<(String, String)>| {
        let mut b = t.browser();
        async move {
            let refs: Vec<(&str, &str)> = f.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            b.post_form("/token", &refs, None).await
        }
    };
    // Signed by a key the client did not register; expired; wrong audience: all invalid_client.
    for (a, why) in [
        (
            assertion(&other, "pkjwt", ISSUER, 60),
            "signature does not verify",
        ),
        (
            assertion(&pkcs8, "pkjwt", ISSUER, -120),
            "expired (exp is in the past)",
        ),
        (
            assertion(&pkcs8, "pkjwt", "https://elsewhere.example", 60),
            "InvalidAudience",
        ),
    ] {
        let r = post(form(a)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        assert_eq!(r.json()["error"], "invalid_client");
        assert!(
            r.json()["error_description"]
                .as_str()
                .unwrap()
                .contains(why),
            "{}",
            r.body
        );
    }
    assert_eq!(t.counts().await.grants, 0);
    // A secret instead of an assertion: the wrong method.
    let r = br
        .post_form(
            "/token",
            &[("grant_type", "authorization_code"), ("code", &code)],
            Some(("pkjwt", "guess")),
        )
        .await;
    assert_eq!(
        r.json()["error_description"],
        "client `pkjwt` must authenticate with private_key_jwt"
    );
    // The right assertion, to the token endpoint as audience.
    let r = post(form(assertion(
        &pkcs8,
        "pkjwt",
        &format!("{ISSUER}/token"),
        60,
    )))
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let jwks = br.get("/jwks").await.json();
    let (h, c) = verify(r.json()["id_token"].as_str().unwrap(), &jwks, "pkjwt");
    assert_eq!(h.alg, jsonwebtoken::Algorithm::PS256);
    assert_eq!(c["aud"], "pkjwt");
}

/// A client assertion is single use (its jti, across processes: the store), needs a jti,
/// honours nbf, and lives at most five minutes. Each refusal names what was wrong and stores
/// nothing.
#[tokio::test]
async fn client_assertions_are_single_use_short_lived_and_honour_nbf() {
    let (pkcs8, jwk) = es256_key();
    let rp = format!("{PKJWT_RP}\n[jwks]\nkeys = [{}]\n", toml_inline(&jwk));
    let t = TestBroker::with_rps(&[("pkjwt.toml", &rp)]).await;
    // The broker's clock (fixed in tests): every time in an assertion is judged by it.
    let now = t.broker.now();
    let aud = format!("{ISSUER}/token");
    let base = json!({"iss": "pkjwt", "sub": "pkjwt", "aud": aud, "exp": now + 60, "iat": now});
    let with = |extra: Value| {
        let mut c = base.clone();
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        signed_assertion(&pkcs8, &c)
    };
    let refresh_form = |a: &str| {
        vec![
            ("grant_type".to_string(), "refresh_token".to_string()),
            ("refresh_token".into(), "not-a-refresh-token".into()),
            (
                "client_assertion_type".into(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ),
            ("client_assertion".into(), a.to_string()),
        ]
    };
    let post = |f: Vec<(String, String)>| {
        let mut b = t.browser();
        async move {
            let refs: Vec<(&str, &str)> = f.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            b.post_form("/token", &refs, None).await
        }
    };
    for (a, why) in [
        (
            with(json!({})),
            "client_assertion: jti is missing (each assertion must be unique)",
        ),
        (
            with(json!({"jti": ""})),
            "client_assertion: jti must be a string of 1 to 256 bytes",
        ),
        (
            with(json!({"jti": "j-nbf", "nbf": now + 600})),
            "client_assertion: not valid yet (nbf is in the future)",
        ),
        (
            with(json!({"jti": "j-long", "exp": now + 3600})),
            "client_assertion: lives 3600 s (exp - iat); at most 300 s",
        ),
        (
            // Without iat, measured from the broker's clock.
            with(json!({"jti": "j-long2", "exp": now + 3600, "iat": null})),
            "client_assertion: expires in 3600 s; an assertion may live at most 300 s",
        ),
        (
            with(json!({"jti": "j-future", "iat": now + 600, "exp": now + 700})),
            "client_assertion: iat is in the future",
        ),
    ] {
        let r = post(refresh_form(&a)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        assert_eq!(r.json()["error"], "invalid_client");
        assert_eq!(r.json()["error_description"], why);
    }
    // A good assertion authenticates the client (the refresh token itself is then refused);
    // the same assertion again is a replay.
    let a = with(json!({"jti": "j-once"}));
    let r = post(refresh_form(&a)).await;
    assert_eq!(r.json()["error"], "invalid_grant", "{}", r.body);
    let r = post(refresh_form(&a)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json()["error_description"],
        "client_assertion: its jti was used before (an assertion is single use)"
    );
    // Also at the other endpoints that authenticate clients.
    let mut br = t.browser();
    let r = br
        .post_form(
            "/introspect",
            &[
                ("token", "x"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &a),
            ],
            None,
        )
        .await;
    assert_eq!(r.json()["error"], "invalid_client", "{}", r.body);
    // Another jti of the same client is fine; the replayed one stays refused until it expires
    // (then the assertion is refused for its exp anyway) and the purge removes it only then.
    let r = post(refresh_form(&with(json!({"jti": "j-twice"})))).await;
    assert_eq!(r.json()["error"], "invalid_grant", "{}", r.body);
    t.broker.store.purge_expired(now).await.unwrap();
    let r = post(refresh_form(&a)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(t.counts().await, broker::store::Counts::default());
}

fn toml_inline(v: &Value) -> String {
    let parts: Vec<String> = v
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k} = \"{}\"", v.as_str().unwrap()))
        .collect();
    format!("{{ {} }}", parts.join(", "))
}

#[tokio::test]
async fn client_secret_post_and_rs256_id_tokens() {
    let secret = "post-secret-0123456789";
    let rp = POST_RP.replace("SECRET_HASH", &hex::encode(sha256(secret.as_bytes())));
    let t = TestBroker::with_rps(&[("post.toml", &rp)]).await;
    let code = code_for(&t, "post", "https://post.example.jp/cb").await;
    let mut br = t.browser();
    let base = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://post.example.jp/cb"),
        ("code_verifier", VERIFIER),
    ];
    // Basic for a client_secret_post client: refused as the wrong method.
    let r = br.post_form("/token", &base, Some(("post", secret))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json()["error_description"],
        "client `post` must authenticate with client_secret_post"
    );
    let mut f = base.to_vec();
    f.extend([("client_id", "post"), ("client_secret", "wrong")]);
    let r = br.post_form("/token", &f, None).await;
    assert_eq!(r.json()["error"], "invalid_client");
    assert!(
        r.headers.get("www-authenticate").is_none(),
        "no Basic challenge when Basic was not used"
    );
    let mut f = base.to_vec();
    f.extend([("client_id", "post"), ("client_secret", secret)]);
    let r = br.post_form("/token", &f, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let jwks = br.get("/jwks").await.json();
    let (h, _) = verify(r.json()["id_token"].as_str().unwrap(), &jwks, "post");
    assert_eq!(h.alg, jsonwebtoken::Algorithm::RS256);
}

#[tokio::test]
async fn public_client_uses_pkce_alone_and_cannot_introspect() {
    let t = TestBroker::new().await;
    let code = code_for(&t, "local-dev-spa", SPA_REDIRECT).await;
    let mut br = t.browser();
    let f = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", SPA_REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", "local-dev-spa"),
    ];
    let r = br.post_form("/token", &f, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let at = r.json()["access_token"].as_str().unwrap().to_string();
    let r = br
        .post_form(
            "/introspect",
            &[("token", &at), ("client_id", "local-dev-spa")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json()["error_description"],
        "public clients cannot introspect"
    );
    // No client authentication at all.
    let r = br.post_form("/token", &f[..4], None).await;
    assert_eq!(r.json()["error_description"], "no client authentication");
}

#[tokio::test]
async fn post_authorize_and_revocation() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let mut br = t.browser();
    // POST /authorize with a form behaves like GET.
    let r = br
        .post_form(
            "/authorize",
            &[
                ("client_id", CLIENT),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", "openid"),
                ("state", "p"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.location.unwrap().starts_with("/login/"));

    let p = login_with_card(&mut br, &mut card, &auth_url(&[])).await;
    let tok = redeem(&mut br, &p["code"]).await.json();
    let at = tok["access_token"].as_str().unwrap();
    let rt = tok["refresh_token"].as_str().unwrap();
    // Revoking the access token kills it (and only it).
    let r = br
        .post_form(
            "/revoke",
            &[("token", at), ("token_type_hint", "access_token")],
            Some((CLIENT, SECRET)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        br.get_bearer("/userinfo", at).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = br
        .post_form("/introspect", &[("token", at)], Some((CLIENT, SECRET)))
        .await;
    assert_eq!(r.json()["active"], false);
    // Revoking the refresh token revokes the grant: refresh fails.
    let r = br
        .post_form("/revoke", &[("token", rt)], Some((CLIENT, SECRET)))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = br
        .post_form(
            "/token",
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
            Some((CLIENT, SECRET)),
        )
        .await;
    assert_eq!(r.json()["error"], "invalid_grant");
    // Unknown tokens: 200 (RFC 7009 §2.2); unsupported hint: error.
    let r = br
        .post_form("/revoke", &[("token", "nonsense")], Some((CLIENT, SECRET)))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = br
        .post_form(
            "/revoke",
            &[("token", "x"), ("token_type_hint", "id_token")],
            Some((CLIENT, SECRET)),
        )
        .await;
    assert_eq!(r.json()["error"], "unsupported_token_type");
    // A JSON body at the token endpoint is refused in OAuth form.
    let r = br
        .post_json("/token", &json!({"grant_type": "authorization_code"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "invalid_request");
}

const RESOURCE_SERVER_RP: &str = r#"
client_id = "records-api"
display_name = "Hospital records API"
kind = "hospital"
redirect_uris = ["https://records.example.jp/cb"]
token_endpoint_auth_method = "client_secret_basic"
client_secret_sha256 = "SECRET_HASH"
resource_server_for = ["local-dev"]
"#;

/// Introspection tells a client about its own tokens only (RFC 7662 §4: the token's client
/// is not to be disclosed to others) unless it is registered as resource server for the
/// token's client; revocation refuses another client's token (RFC 7009 §2.1) and leaves it
/// valid. The Bearer scheme is case-insensitive (RFC 9110 §11.1).
#[tokio::test]
async fn introspection_and_revocation_are_per_client() {
    let secret = "records-secret-0123456789";
    let rp = RESOURCE_SERVER_RP.replace("SECRET_HASH", &hex::encode(sha256(secret.as_bytes())));
    let t = TestBroker::with_rps(&[("records.toml", &rp)]).await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let p = login_with_card(
        &mut br,
        &mut card,
        &auth_url(&[("scope", "openid offline_access")]),
    )
    .await;
    let tok = redeem(&mut br, &p["code"]).await.json();
    let at = tok["access_token"].as_str().unwrap();
    let rt = tok["refresh_token"].as_str().unwrap();
    let city = Some(("city-portal", "city-portal-demo-secret"));
    // Another client: inactive, for either token.
    for token in [at, rt] {
        let r = br.post_form("/introspect", &[("token", token)], city).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json(), json!({"active": false}));
    }
    // The resource server registered for local-dev sees the access token (not the refresh
    // token, which only its client may introspect).
    let rs = Some(("records-api", secret));
    let r = br.post_form("/introspect", &[("token", at)], rs).await;
    assert_eq!(r.json()["active"], true);
    assert_eq!(r.json()["client_id"], CLIENT);
    let r = br.post_form("/introspect", &[("token", rt)], rs).await;
    assert_eq!(r.json(), json!({"active": false}));
    // Revocation by another client (or by the resource server): refused, the tokens live on.
    for who in [city, rs] {
        for token in [at, rt] {
            let r = br.post_form("/revoke", &[("token", token)], who).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
            assert_eq!(
                r.json(),
                json!({"error": "unauthorized_client", "error_description": "the token was not issued to this client"})
            );
        }
    }
    let r = br
        .post_form("/introspect", &[("token", at)], Some((CLIENT, SECRET)))
        .await;
    assert_eq!(r.json()["active"], true);
    // Bearer in any case.
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = br
            .send(
                axum::http::Request::builder()
                    .uri("/userinfo")
                    .header("authorization", format!("{scheme} {at}"))
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{scheme}: {}", r.body);
    }
    // The token's own client may revoke it.
    let r = br
        .post_form("/revoke", &[("token", rt)], Some((CLIENT, SECRET)))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = br
        .post_form("/introspect", &[("token", at)], Some((CLIENT, SECRET)))
        .await;
    assert_eq!(r.json()["active"], false);
}

#[tokio::test]
async fn resource_server_for_must_name_registered_clients() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rs.toml"),
        RESOURCE_SERVER_RP
            .replace("SECRET_HASH", &"ab".repeat(32))
            .replace("[\"local-dev\"]", "[\"nobody\"]"),
    )
    .unwrap();
    let reg = broker::registry::Registry::load_dir(dir.path()).unwrap();
    let policy = broker::registry::policy::Policy::load_dir(&repo().join("policies")).unwrap();
    let e = reg.check_against(&policy).unwrap_err();
    assert_eq!(e.line, 8);
    assert_eq!(
        e.reason,
        "resource_server_for names `nobody`, which is not a registered client"
    );
}

const API_ONLY_RP: &str = r#"
client_id = "back-office"
display_name = "Bank back office"
kind = "bank"
token_endpoint_auth_method = "client_secret_basic"
client_secret_sha256 = "SECRET_HASH"
grant_types = ["client_credentials"]
permissions = ["signatures:verify"]
danger_allow_api_with_client_secret = true
"#;

/// A client of the broker's APIs alone registers without redirect URIs; it gets API tokens and
/// nothing that involves a person.
#[tokio::test]
async fn api_only_client_without_redirect_uris() {
    let secret = "back-office-secret-0123456789";
    let rp = API_ONLY_RP.replace("SECRET_HASH", &hex::encode(sha256(secret.as_bytes())));
    let t = TestBroker::with_rps(&[("back-office.toml", &rp)]).await;
    let mut br = t.browser();
    let r = br
        .post_form(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("scope", "signatures:verify"),
            ],
            Some(("back-office", secret)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["scope"], "signatures:verify");
    let r = br
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", "x"),
                ("redirect_uri", "https://x.example/cb"),
                ("code_verifier", VERIFIER),
            ],
            Some(("back-office", secret)),
        )
        .await;
    assert_eq!(
        r.json(),
        json!({"error": "unauthorized_client", "error_description": "this client is registered for the broker's APIs only (client_credentials)"})
    );
    let r = br
        .get(&auth_url(&[
            ("client_id", "back-office"),
            ("redirect_uri", "https://x.example/cb"),
        ]))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.location.is_none());
    assert!(
        r.body
            .contains("client `back-office` is not registered for the authorization code flow"),
        "{}",
        r.body
    );
    assert_eq!(t.broker.store.count_transactions().await.unwrap(), 0);
}
