//! Pushed authorization requests (RFC 9126), signed request objects (RFC 9101) and the fapi2
//! profile's front channel, through the real router: a fapi2 client pushes its request (or its
//! request object) with private_key_jwt, the browser brings only `client_id` and
//! `request_uri`, and every refusal named in issue 19 — no PAR, a reused, expired, unknown or
//! another client's `request_uri`, a push without authentication or with a replayed assertion,
//! a request object with a bad signature, the wrong `aud`, expired, `nbf` too old, or replayed
//! — with its exact error and nothing stored.

mod common;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use axum::http::StatusCode;
use broker::clock::b64url;
use common::*;
use serde_json::{Value, json};

const CB: &str = "https://fapi.example.jp/cb";

/// A fapi2 client `id` registering the ES256 key `jwk`.
fn fapi_rp(id: &str, jwk: &Value) -> String {
    let parts: Vec<String> = jwk
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k} = \"{}\"", v.as_str().unwrap()))
        .collect();
    format!(
        "client_id = \"{id}\"\ndisplay_name = \"FAPI bank {id}\"\nkind = \"bank\"\nredirect_uris = [\"{CB}\"]\nprofile = \"fapi2\"\ntoken_endpoint_auth_method = \"private_key_jwt\"\nid_token_signed_response_alg = \"PS256\"\nscopes = [\"openid\"]\n[jwks]\nkeys = [{{ {} }}]\n",
        parts.join(", ")
    )
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

/// Two fapi2 clients, `fapi` and `fapi-b`, and `fapi`'s key.
struct Setup {
    t: TestBroker,
    key: Vec<u8>,
    key_b: Vec<u8>,
}

async fn setup_with(edit: impl FnOnce(&mut broker::config::Config)) -> Setup {
    let (key, jwk) = es256_key();
    let (key_b, jwk_b) = es256_key();
    // `keyed`: an oidc client with fapi's key, for request objects at /authorize.
    let keyed = fapi_rp("keyed", &jwk).replace("profile = \"fapi2\"", "profile = \"oidc\"");
    let t = TestBroker::with_rps_and_config(
        &[
            ("fapi.toml", &fapi_rp("fapi", &jwk)),
            ("fapi-b.toml", &fapi_rp("fapi-b", &jwk_b)),
            ("keyed.toml", &keyed),
        ],
        edit,
    )
    .await;
    Setup { t, key, key_b }
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

impl Setup {
    /// A fresh client assertion of `client` (signed with `key`) for `aud`, by the broker's clock.
    fn assertion_for(&self, client: &str, aud: &str) -> String {
        let key = if client == "fapi" {
            &self.key
        } else {
            &self.key_b
        };
        let now = self.t.broker.now();
        broker::app::install_crypto_provider();
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(
            &h,
            &json!({"iss": client, "sub": client, "aud": aud, "exp": now + 60, "iat": now,
                "jti": broker::clock::random_id()}),
            &jsonwebtoken::EncodingKey::from_ec_der(key),
        )
        .unwrap()
    }

    /// `client`'s request object: its request, signed, with `changes` to the claims (a null
    /// removes one), by the broker's clock.
    fn request_object(&self, client: &str, changes: Value) -> String {
        let key = if client == "fapi-b" {
            &self.key_b
        } else {
            &self.key
        };
        let now = self.t.broker.now();
        let mut c = json!({"iss": client, "aud": ISSUER, "exp": now + 300, "nbf": now,
            "jti": broker::clock::random_id()});
        for (k, v) in request(client) {
            c[k] = json!(v);
        }
        for (k, v) in changes.as_object().unwrap() {
            match v {
                Value::Null => c.as_object_mut().unwrap().remove(k),
                v => c.as_object_mut().unwrap().insert(k.clone(), v.clone()),
            };
        }
        broker::app::install_crypto_provider();
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some("k1".into());
        h.typ = Some("oauth-authz-req+jwt".into());
        jsonwebtoken::encode(&h, &c, &jsonwebtoken::EncodingKey::from_ec_der(key)).unwrap()
    }

    /// POST /par as `client` with `assertion` and the authorization parameters `params`.
    async fn push_with(&self, assertion: Option<&str>, params: &[(&str, &str)]) -> Resp {
        let mut form: Vec<(&str, &str)> = params.to_vec();
        if let Some(a) = assertion {
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
            form.push(("client_assertion", a));
        }
        self.t.browser().post_form("/par", &form, None).await
    }

    /// A good push of `client`'s request (aud = the issuer, as FAPI 2.0 allows).
    async fn push(&self, client: &str) -> Resp {
        let a = self.assertion_for(client, ISSUER);
        self.push_with(Some(&a), &request(client)).await
    }

    async fn request_uri(&self, client: &str) -> String {
        let r = self.push(client).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.json()["request_uri"].as_str().unwrap().to_string()
    }
}

/// A complete authorization request of `client`.
fn request(client: &str) -> Vec<(&str, &str)> {
    vec![
        ("client_id", client),
        ("response_type", "code"),
        ("redirect_uri", CB),
        ("scope", "openid"),
        ("state", "pushed-state"),
        ("nonce", "pushed-nonce"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
}

fn front(client: &str, request_uri: &str) -> String {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("client_id", client), ("request_uri", request_uri)])
        .finish();
    format!("/authorize?{q}")
}

/// The error page's code and text.
fn page_error(r: &Resp) -> (StatusCode, String) {
    (r.status, r.body.clone())
}

#[tokio::test]
async fn a_fapi2_client_logs_in_through_a_pushed_request() {
    let s = setup_with(|c| c.lifetimes.code = 300).await;
    let r = s.push("fapi").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let body = r.json();
    let uri = body["request_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("urn:ietf:params:oauth:request_uri:"),
        "{uri}"
    );
    assert_eq!(body["expires_in"], 55);
    assert_eq!(s.t.counts().await.pushed_requests, 1);
    // Values come from the pushed request only: the front channel's state is not used.
    let mut card = s.t.card("person");
    let mut br = s.t.browser();
    let p = login_with_card(
        &mut br,
        &mut card,
        &format!(
            "{}&state=front-state&scope=openid%20profile",
            front("fapi", uri)
        ),
    )
    .await;
    assert_eq!(p["state"], "pushed-state");
    assert_eq!(p["iss"], ISSUER);
    // The code: redeemed with a new assertion; a fapi2 client's codes live 60 s even where
    // `[lifetimes] code` is longer.
    let redeem = |code: String| {
        let a = s.assertion_for("fapi", &format!("{ISSUER}/token"));
        let mut br = s.t.browser();
        async move {
            br.post_form(
                "/token",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", CB),
                    ("code_verifier", VERIFIER),
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
    };
    let r = redeem(p["code"].clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let tok = r.json();
    let id = tok["id_token"].as_str().unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(id).unwrap().alg,
        jsonwebtoken::Algorithm::PS256
    );
    let claims: Value = serde_json::from_slice(
        &broker::clock::b64url_decode(id.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["nonce"], "pushed-nonce");
    // Second login (SSO): a code at once; 61 s later it is expired.
    let uri = s.request_uri("fapi").await;
    let r = br.get(&front("fapi", &uri)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let code = r.redirect_params()["code"].clone();
    s.t.clock.advance(time::Duration::seconds(61));
    let r = redeem(code).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_grant");
    // Discovery names the endpoint.
    let d =
        s.t.browser()
            .get("/.well-known/openid-configuration")
            .await
            .json();
    assert_eq!(
        d["pushed_authorization_request_endpoint"],
        format!("{ISSUER}/par")
    );
    assert_eq!(d["require_pushed_authorization_requests"], false);
}

/// A fapi2 client's request through the browser alone is refused back at its registered
/// redirect URI, and nothing is stored.
#[tokio::test]
async fn a_fapi2_request_without_par_is_refused() {
    let s = setup().await;
    let before = s.t.counts().await;
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(request("fapi"))
        .finish();
    let r = s.t.browser().get(&format!("/authorize?{q}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location.as_deref().unwrap().starts_with(CB));
    let p = r.redirect_params();
    assert_eq!(p["error"], "invalid_request");
    assert_eq!(
        p["error_description"],
        "client `fapi` must push its authorization requests (PAR, RFC 9126) and send only client_id and request_uri here"
    );
    assert_eq!(p["state"], "pushed-state");
    assert_eq!(p["iss"], ISSUER);
    assert_eq!(s.t.counts().await, before);
    assert_eq!(s.t.broker.store.count_transactions().await.unwrap(), 0);
}

/// A `request_uri` is single use, short-lived, bound to its client, and only the broker's: each
/// refusal on a page (no redirect URI is known from it), with no login transaction made.
#[tokio::test]
async fn request_uris_are_single_use_short_lived_and_bound_to_their_client() {
    let s = setup().await;
    let refused = |r: Resp, why: &str| {
        let (status, body) = page_error(&r);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("invalid_request_uri"), "{body}");
        assert!(body.contains(why), "{why}: {body}");
    };
    // Another client's: refused, and not spent — its own client still uses it.
    let uri = s.request_uri("fapi").await;
    refused(
        s.t.browser().get(&front("fapi-b", &uri)).await,
        "request_uri was pushed by another client",
    );
    assert_eq!(s.t.broker.store.count_transactions().await.unwrap(), 0);
    let r = s.t.browser().get(&front("fapi", &uri)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location.unwrap().starts_with("/login/"));
    assert_eq!(s.t.broker.store.count_transactions().await.unwrap(), 1);
    // Used.
    refused(
        s.t.browser().get(&front("fapi", &uri)).await,
        "request_uri was used before (it is single use)",
    );
    // Expired: 55 s.
    let uri = s.request_uri("fapi").await;
    s.t.clock.advance(time::Duration::seconds(56));
    refused(
        s.t.browser().get(&front("fapi", &uri)).await,
        "request_uri has expired; push the request again",
    );
    // Never issued.
    refused(
        s.t.browser()
            .get(&front("fapi", "urn:ietf:params:oauth:request_uri:forged"))
            .await,
        "request_uri is not one the broker issued",
    );
    assert_eq!(s.t.broker.store.count_transactions().await.unwrap(), 1);
    // Without client_id.
    let uri = s.request_uri("fapi").await;
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("request_uri", uri.as_str())])
        .finish();
    let r = s.t.browser().get(&format!("/authorize?{q}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body
            .contains("client_id is missing (it must come with request_uri)"),
        "{}",
        r.body
    );
    // A request_uri of another form is still not supported (no fetching by reference).
    let r =
        s.t.browser()
            .get(&auth_url(&[(
                "request_uri",
                "https://rp.example.jp/req.jwt",
            )]))
            .await;
    assert_eq!(r.redirect_params()["error"], "request_uri_not_supported");
}

/// Refusals at the PAR endpoint, each with its error and nothing stored.
#[tokio::test]
async fn pushes_are_refused_without_authentication_or_with_a_bad_request() {
    let s = setup().await;
    let check = |r: Resp, status: StatusCode, error: &str, why: &str| {
        assert_eq!(r.status, status, "{}", r.body);
        let b = r.json();
        assert_eq!(b["error"], error, "{b}");
        assert!(
            b["error_description"].as_str().unwrap().contains(why),
            "{why}: {b}"
        );
    };
    // No client authentication.
    check(
        s.push_with(None, &request("fapi")).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "client `fapi` must authenticate with private_key_jwt",
    );
    // A replayed assertion.
    let a = s.assertion_for("fapi", ISSUER);
    assert_eq!(
        s.push_with(Some(&a), &request("fapi")).await.status,
        StatusCode::CREATED
    );
    check(
        s.push_with(Some(&a), &request("fapi")).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "its jti was used before",
    );
    assert_eq!(s.t.counts().await.pushed_requests, 1);
    // Another client's key signing as `fapi`.
    let mut forged = s.assertion_for("fapi-b", ISSUER);
    forged = forged.replace(
        forged.split('.').nth(1).unwrap(),
        &b64url(
            json!({"iss": "fapi", "sub": "fapi", "aud": ISSUER, "exp": s.t.broker.now() + 60,
                "jti": "x"})
            .to_string()
            .as_bytes(),
        ),
    );
    check(
        s.push_with(Some(&forged), &request("fapi")).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "signature does not verify",
    );
    // A request_uri inside a push; a client_id of another client; an unregistered redirect
    // URI; no PKCE; another response type.
    type Case<'a> = ((&'a str, &'a str), &'a str, &'a str);
    let bad: Vec<Case> = vec![
        (
            ("request_uri", "urn:ietf:params:oauth:request_uri:x"),
            "invalid_request",
            "request_uri cannot be pushed",
        ),
        (
            ("redirect_uri", "https://evil.example/cb"),
            "invalid_request",
            "redirect_uri `https://evil.example/cb` is not registered",
        ),
        (
            ("code_challenge", ""),
            "invalid_request",
            "code_challenge is missing",
        ),
        (
            ("response_type", "code id_token"),
            "unsupported_response_type",
            "use `code`",
        ),
    ];
    for ((k, v), error, why) in bad {
        let mut form = request("fapi");
        form.retain(|(n, _)| *n != k);
        form.push((k, v));
        let a = s.assertion_for("fapi", &format!("{ISSUER}/par"));
        check(
            s.push_with(Some(&a), &form).await,
            StatusCode::BAD_REQUEST,
            error,
            why,
        );
    }
    // The form's client_id names another client than the assertion.
    let mut form = request("fapi");
    form.retain(|(n, _)| *n != "client_id");
    form.push(("client_id", "fapi-b"));
    check(
        s.push_with(Some(&s.assertion_for("fapi", ISSUER)), &form)
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "client_id `fapi-b` in the form is not the client assertion's subject `fapi`",
    );
    assert_eq!(s.t.counts().await.pushed_requests, 1);
}

/// An oidc client may push too (and may be registered to require it).
#[tokio::test]
async fn an_oidc_client_may_push_its_request() {
    let t = TestBroker::new().await;
    let mut form: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("state", "s1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    let r = t
        .browser()
        .post_form("/par", &form, Some((CLIENT, SECRET)))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let uri = r.json()["request_uri"].as_str().unwrap().to_string();
    let mut card = t.card("person");
    let p = login_with_card(&mut t.browser(), &mut card, &front(CLIENT, &uri)).await;
    assert_eq!(p["state"], "s1");
    let r = redeem(&mut t.browser(), &p["code"]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A wrong secret: 401 with the Basic challenge.
    form.push(("client_id", CLIENT));
    let r = t
        .browser()
        .post_form("/par", &form, Some((CLIENT, "wrong")))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "invalid_client");
}

/// A request object at /authorize: its values alone (the front channel's are ignored); the
/// login completes with the object's state and nonce.
#[tokio::test]
async fn a_signed_request_object_at_authorize_carries_the_request() {
    let s = setup().await;
    let jwt = s.request_object("keyed", json!({}));
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", "keyed"),
            ("request", jwt.as_str()),
            ("state", "front-state"),
            ("redirect_uri", "https://evil.example/cb"),
        ])
        .finish();
    let mut card = s.t.card("person");
    let p = login_with_card(&mut s.t.browser(), &mut card, &format!("/authorize?{q}")).await;
    assert_eq!(p["state"], "pushed-state");
    // The same object again: its jti was used.
    let r = s.t.browser().get(&format!("/authorize?{q}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("invalid_request_object"), "{}", r.body);
    assert!(
        r.body
            .contains("its jti was used before (a request object is single use)"),
        "{}",
        r.body
    );
    let d =
        s.t.browser()
            .get("/.well-known/openid-configuration")
            .await
            .json();
    assert_eq!(d["request_parameter_supported"], true);
    assert_eq!(
        d["request_object_signing_alg_values_supported"],
        json!(["PS256", "ES256", "EdDSA", "RS256"])
    );
}

/// Bad request objects at /authorize (the error page: no redirect URI is trusted from an object
/// that does not verify) and at /par (JSON), each with its reason and nothing stored.
#[tokio::test]
async fn bad_request_objects_are_refused_with_their_reason() {
    let s = setup().await;
    let now = s.t.broker.now();
    let (stranger, _) = es256_key();
    // The same claims signed by a key the client did not register.
    let good = s.request_object("keyed", json!({}));
    let body = good.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&broker::clock::b64url_decode(body).unwrap()).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("k1".into());
    let other_key = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(&stranger),
    )
    .unwrap();
    let cases: Vec<(String, &str)> = vec![
        (
            other_key,
            "request object: signature does not verify with any registered key",
        ),
        (
            s.request_object("keyed", json!({"aud": format!("{ISSUER}/par")})),
            "request object: InvalidAudience",
        ),
        (
            s.request_object("keyed", json!({"exp": now - 60, "nbf": now - 120})),
            "request object: expired (exp is in the past)",
        ),
        (
            s.request_object("keyed", json!({"nbf": now - 3700, "exp": now + 10})),
            "request object: nbf is more than 60 minutes in the past",
        ),
        (
            s.request_object("keyed", json!({"jti": null})),
            "request object: jti is missing (each request object must be unique)",
        ),
    ];
    let before = s.t.counts().await;
    for (jwt, why) in &cases {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("client_id", "keyed"), ("request", jwt.as_str())])
            .finish();
        let r = s.t.browser().get(&format!("/authorize?{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}");
        assert!(r.body.contains("invalid_request_object"), "{}", r.body);
        assert!(r.body.contains(why), "{why}: {}", r.body);
    }
    assert_eq!(s.t.broker.store.count_transactions().await.unwrap(), 0);
    // The same at /par, for a fapi2 client: JSON, 400.
    for (jwt, why) in [
        (
            s.request_object("fapi", json!({"aud": "https://elsewhere.example"})),
            "request object: InvalidAudience",
        ),
        (
            s.request_object("fapi", json!({"nbf": now - 3700, "exp": now + 10})),
            "request object: nbf is more than 60 minutes in the past",
        ),
        (
            s.request_object("fapi-b", json!({"iss": "fapi"})),
            "request object: signature does not verify with any registered key",
        ),
    ] {
        let a = s.assertion_for("fapi", ISSUER);
        let r = s.push_with(Some(&a), &[("request", &jwt)]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.json()["error"], "invalid_request_object");
        assert_eq!(r.json()["error_description"], why);
    }
    assert_eq!(s.t.counts().await, before);
}

/// A fapi2 client pushes a request object; the pushed request is the object's.
#[tokio::test]
async fn a_fapi2_client_pushes_a_request_object() {
    let s = setup().await;
    let jwt = s.request_object("fapi", json!({"state": "from-object"}));
    let a = s.assertion_for("fapi", ISSUER);
    // Form parameters beside the object are not used.
    let r = s
        .push_with(Some(&a), &[("request", &jwt), ("state", "from-form")])
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let uri = r.json()["request_uri"].as_str().unwrap().to_string();
    let mut card = s.t.card("person");
    let p = login_with_card(&mut s.t.browser(), &mut card, &front("fapi", &uri)).await;
    assert_eq!(p["state"], "from-object");
    // A fapi2 client's request object through the browser alone is still refused: PAR only.
    let jwt = s.request_object("fapi", json!({}));
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("client_id", "fapi"), ("request", jwt.as_str())])
        .finish();
    let r = s.t.browser().get(&format!("/authorize?{q}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        r.redirect_params()["error_description"].contains("must push its authorization requests")
    );
}
