//! The code + PKCE flow with a virtual card, through the real router, and each error the
//! specs name for the authorization and token endpoints.

mod common;
use axum::http::StatusCode;
use common::*;
use serde_json::Value;

fn decode_verified(token: &str, jwks: &Value, aud: &str) -> Value {
    broker::app::install_crypto_provider();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let jwk = set
        .find(header.kid.as_deref().unwrap())
        .expect("kid in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[aud]);
    v.set_issuer(&[ISSUER]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims
}

#[tokio::test]
async fn card_login_code_flow_tokens_userinfo_refresh() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let p = login_with_card(&mut br, &mut card, &auth_url(&[])).await;
    assert_eq!(p["state"], "st-1");
    assert_eq!(p["iss"], ISSUER);
    let r = redeem(&mut br, &p["code"]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let tok = r.json();
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["scope"], "openid profile");
    let jwks = br.get("/jwks").await.json();
    let id = decode_verified(tok["id_token"].as_str().unwrap(), &jwks, CLIENT);
    assert_eq!(id["nonce"], "nonce-1");
    assert_eq!(id["acr"], "aal3");
    assert_eq!(id["amr"], serde_json::json!(["sc", "hwk", "pin", "mfa"]));
    assert!(id["auth_time"].as_i64().unwrap() > 0);
    let at = tok["access_token"].as_str().unwrap();
    assert_eq!(id["at_hash"], broker::oidc::keys::half_hash(at));
    let sub = id["sub"].as_str().unwrap().to_string();
    assert_eq!(sub.len(), 43, "pairwise subjects are 256-bit MACs");
    // The access token is an RFC 9068 JWT.
    let header = jsonwebtoken::decode_header(at).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let atc = decode_verified(at, &jwks, ISSUER);
    assert_eq!(atc["client_id"], CLIENT);

    let ui = br.get_bearer("/userinfo", at).await;
    assert_eq!(ui.status, StatusCode::OK, "{}", ui.body);
    assert_eq!(ui.json()["sub"], sub);
    let ui = br
        .post_form("/userinfo", &[("access_token", at)], None)
        .await;
    assert_eq!(ui.json()["sub"], sub);

    // Refresh with rotation.
    let rt = tok["refresh_token"].as_str().unwrap();
    let r = br
        .post_form(
            "/token",
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
            Some((CLIENT, SECRET)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let tok2 = r.json();
    assert_ne!(tok2["refresh_token"], tok["refresh_token"]);
    let id2 = decode_verified(tok2["id_token"].as_str().unwrap(), &jwks, CLIENT);
    assert_eq!(id2["sub"], sub);
    assert_eq!(id2["auth_time"], id["auth_time"]);

    // Introspection of the new access token, and of the rotated-out refresh token.
    let r = br
        .post_form(
            "/introspect",
            &[("token", tok2["access_token"].as_str().unwrap())],
            Some((CLIENT, SECRET)),
        )
        .await
        .json();
    assert_eq!(r["active"], true);
    assert_eq!(r["acr"], "aal3");
    assert_eq!(r["sub"], sub);
    let r = br
        .post_form("/introspect", &[("token", rt)], Some((CLIENT, SECRET)))
        .await
        .json();
    assert_eq!(r["active"], false);

    // A second login by the same card keeps the same account and pairwise subject, and SSO:
    // a new request in the same browser gets a code without the login page.
    let r = br.get(&auth_url(&[("state", "st-2")])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let p2 = r.redirect_params();
    assert_eq!(p2["state"], "st-2");
    let tok3 = redeem(&mut br, &p2["code"]).await.json();
    let id3 = decode_verified(tok3["id_token"].as_str().unwrap(), &jwks, CLIENT);
    assert_eq!(id3["sub"], sub);
    assert_eq!(t.counts().await.accounts, 1);
}

#[tokio::test]
async fn discovery_and_jwks() {
    let t = TestBroker::new().await;
    let mut br = t.browser();
    let d = br.get("/.well-known/openid-configuration").await.json();
    assert_eq!(d["issuer"], ISSUER);
    assert_eq!(d["token_endpoint"], format!("{ISSUER}/token"));
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(d["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        d["acr_values_supported"],
        serde_json::json!(["aal1", "aal2", "aal3"])
    );
    let jwks = br.get("/jwks").await.json();
    let kty: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kty"].as_str().unwrap())
        .collect();
    assert_eq!(kty, ["EC", "RSA"]);
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("d").is_none()),
        "no private parts"
    );
}

#[tokio::test]
async fn authorization_errors_page_or_redirect() {
    let t = TestBroker::new().await;
    let mut br = t.browser();
    // Unknown client and unregistered redirect URI: error page, never a redirect.
    for (url, msg) in [
        (
            auth_url(&[("client_id", "nobody")]),
            "client_id `nobody` is not registered",
        ),
        (
            auth_url(&[("redirect_uri", "https://evil.example/cb")]),
            "redirect_uri `https://evil.example/cb` is not registered for client `local-dev`",
        ),
    ] {
        let r = br.get(&url).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.location.is_none());
        let body = r.body.replace("&#x2f;", "/");
        assert!(
            body.contains(&format!("<span id=\"error-message\">{msg}</span>")),
            "{body}"
        );
    }
    // Missing and invalid PKCE: invalid_request back to the RP with state and iss.
    let r = br.get(&auth_url(&[("code_challenge", "")])).await;
    let p = r.redirect_params();
    assert_eq!(p["error"], "invalid_request");
    assert_eq!(
        p["error_description"],
        "code_challenge is missing (PKCE with S256 is required)"
    );
    assert_eq!(p["state"], "st-1");
    assert_eq!(p["iss"], ISSUER);
    let r = br
        .get(&auth_url(&[("code_challenge_method", "plain")]))
        .await;
    assert_eq!(r.redirect_params()["error"], "invalid_request");
    let r = br.get(&auth_url(&[("response_type", "token")])).await;
    assert_eq!(r.redirect_params()["error"], "unsupported_response_type");
    // prompt=none without a session.
    let r = br.get(&auth_url(&[("prompt", "none")])).await;
    let p = r.redirect_params();
    assert_eq!(p["error"], "login_required");
    assert_eq!(t.counts().await, broker::store::Counts::default());
}

#[tokio::test]
async fn token_endpoint_errors() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let p = login_with_card(&mut br, &mut card, &auth_url(&[])).await;
    let code = p["code"].clone();

    // Wrong client secret: 401 invalid_client with a Basic challenge; the code survives.
    let r = br
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
            Some((CLIENT, "wrong")),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "invalid_client");
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    // Missing verifier.
    let r = br
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
            Some((CLIENT, SECRET)),
        )
        .await;
    assert_eq!(
        r.json()["error_description"],
        "code_verifier is missing (PKCE is required)"
    );
    assert_eq!(t.counts().await.grants, 0);

    // First redemption works; a replay fails and revokes what the first produced.
    let tok = redeem(&mut br, &code).await.json();
    let at = tok["access_token"].as_str().unwrap();
    assert_eq!(br.get_bearer("/userinfo", at).await.status, StatusCode::OK);
    let r = redeem(&mut br, &code).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(
        r.json()["error_description"],
        "the code was already used; tokens issued for it are revoked"
    );
    let r = br.get_bearer("/userinfo", at).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let r = br
        .post_form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tok["refresh_token"].as_str().unwrap()),
            ],
            Some((CLIENT, SECRET)),
        )
        .await;
    assert_eq!(r.json()["error"], "invalid_grant");

    // Wrong verifier.
    let p = login_with_card(&mut t.browser(), &mut card, &auth_url(&[])).await;
    let r = br
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &p["code"]),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &"a".repeat(43)),
            ],
            Some((CLIENT, SECRET)),
        )
        .await;
    assert_eq!(
        r.json()["error_description"],
        "code_verifier does not match the code_challenge"
    );

    // Expired code (lifetime 60 s).
    let p = login_with_card(&mut t.browser(), &mut card, &auth_url(&[])).await;
    t.clock.advance(time::Duration::seconds(61));
    let r = redeem(&mut br, &p["code"]).await;
    assert_eq!(r.json()["error_description"], "the code expired");

    // Unknown grant type, unknown code.
    let r = br
        .post_form(
            "/token",
            &[("grant_type", "password")],
            Some((CLIENT, SECRET)),
        )
        .await;
    assert_eq!(r.json()["error"], "unsupported_grant_type");
    let r = redeem(&mut br, "no-such-code").await;
    assert_eq!(r.json()["error_description"], "the code is invalid");
}

#[tokio::test]
async fn refresh_reuse_revokes_the_family() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let p = login_with_card(&mut br, &mut card, &auth_url(&[])).await;
    let tok = redeem(&mut br, &p["code"]).await.json();
    let rt1 = tok["refresh_token"].as_str().unwrap();
    let refresh = |rt: String| {
        let mut b = t.browser();
        async move {
            b.post_form(
                "/token",
                &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
                Some((CLIENT, SECRET)),
            )
            .await
        }
    };
    let r2 = refresh(rt1.to_string()).await.json();
    let rt2 = r2["refresh_token"].as_str().unwrap().to_string();
    // Reuse of rt1: refused, and the whole family (rt2, its access token) dies.
    let r = refresh(rt1.to_string()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["error_description"],
        "the refresh token was already used; the whole grant is revoked"
    );
    let r = refresh(rt2).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    let r = br
        .get_bearer("/userinfo", r2["access_token"].as_str().unwrap())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn prompt_login_max_age_and_consent_memory() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let mut br = t.browser();
    login_with_card(&mut br, &mut card, &auth_url(&[])).await;
    // prompt=none with a session and consent: straight back with a code.
    let r = br.get(&auth_url(&[("prompt", "none")])).await;
    assert!(r.redirect_params().contains_key("code"));
    // prompt=login and an elapsed max_age force the login page again.
    let r = br.get(&auth_url(&[("prompt", "login")])).await;
    assert!(r.location.unwrap().starts_with("/login/"));
    t.clock.advance(time::Duration::seconds(30));
    let r = br.get(&auth_url(&[("max_age", "10")])).await;
    assert!(r.location.unwrap().starts_with("/login/"));
    let r = br
        .get(&auth_url(&[("max_age", "10"), ("prompt", "none")]))
        .await;
    assert_eq!(r.redirect_params()["error"], "login_required");
    // A wider scope than consented needs consent again; prompt=none then fails.
    let r = br
        .get(&auth_url(&[
            ("scope", "openid profile address"),
            ("prompt", "none"),
        ]))
        .await;
    assert_eq!(r.redirect_params()["error"], "consent_required");
    let r = br
        .get(&auth_url(&[("scope", "openid profile address")]))
        .await;
    assert!(r.location.unwrap().starts_with("/consent/"));
    // Deny: access_denied back to the RP.
    let r = br
        .get(&auth_url(&[("scope", "openid profile address")]))
        .await;
    let loc = r.location.unwrap();
    let page = br.get(&loc).await;
    let csrf = csrf_of(&page);
    let r = br
        .post_form(&loc, &[("csrf", "forged"), ("decision", "approve")], None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = br
        .post_form(&loc, &[("csrf", &csrf), ("decision", "deny")], None)
        .await;
    assert_eq!(r.redirect_params()["error"], "access_denied");
}

#[tokio::test]
async fn pages_in_japanese_and_english() {
    let t = TestBroker::new().await;
    let mut br = t.browser();
    let r = br.get(&auth_url(&[])).await;
    let page = br.get(r.location.as_ref().unwrap()).await;
    assert!(
        page.body.contains("マイナンバーカードでログイン"),
        "{}",
        page.body
    );
    assert!(page.body.contains("DEMO"));
    assert!(page.body.contains("ローカル開発用RP"));
    let page = br.get(&format!("{}?lang=en", r.location.unwrap())).await;
    assert!(page.body.contains("Log in with your My Number card"));
    assert!(page.body.contains("Local development RP"));
    let r = br.get(&auth_url(&[("ui_locales", "en")])).await;
    let page = br.get(r.location.as_ref().unwrap()).await;
    assert!(page.body.contains("Log in with your My Number card"));
    // The login page belongs to the browser that started it.
    let mut other = t.browser();
    let r2 = other.get(r.location.as_ref().unwrap()).await;
    assert_eq!(r2.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn expired_records_are_purged_and_live_ones_kept() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let p = login_with_card(&mut br, &mut card, &auth_url(&[])).await;
    let tok = redeem(&mut br, &p["code"]).await.json();
    let now = t.broker.now();
    // Nothing has expired yet: nothing goes.
    assert_eq!(t.broker.store.purge_expired(now).await.unwrap(), 0);
    let before = t.counts().await;
    assert_eq!(
        (before.codes, before.sessions, before.refresh_tokens),
        (1, 1, 1)
    );
    // The transaction goes as soon as it expires (10 min); the code, expired after 60 s, stays
    // an hour longer so that a replay still meets its record and revokes the grant.
    assert_eq!(t.broker.store.purge_expired(now + 61).await.unwrap(), 0);
    assert_eq!(t.broker.store.purge_expired(now + 601).await.unwrap(), 1);
    assert_eq!(t.broker.store.count_transactions().await.unwrap(), 0);
    assert_eq!(t.counts().await.codes, 1);
    // Past every lifetime (refresh tokens: 30 days): code, session, refresh token go.
    let n = t
        .broker
        .store
        .purge_expired(now + 31 * 86_400)
        .await
        .unwrap();
    assert_eq!(n, 3);
    let after = t.counts().await;
    assert_eq!(
        (after.codes, after.sessions, after.refresh_tokens),
        (0, 0, 0)
    );
    assert_eq!(after.accounts, 1, "accounts stay");
    let r = br
        .post_form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tok["refresh_token"].as_str().unwrap()),
            ],
            Some((CLIENT, SECRET)),
        )
        .await;
    assert_eq!(
        r.json()["error_description"],
        "the refresh token is invalid"
    );
}

/// A confidential client registered with danger_allow_code_without_pkce (the OpenID
/// conformance suite's registrations) may get and redeem codes without PKCE; it cannot
/// downgrade a code that had a challenge, nor add a verifier to one that had none. Without the
/// flag PKCE stays mandatory, and a public client cannot have the flag at all.
#[tokio::test]
async fn code_without_pkce_only_for_flagged_confidential_clients() {
    let flagged = r#"
client_id = "nopkce"
display_name = "Conformance"
kind = "other"
redirect_uris = ["http://127.0.0.1:8765/callback"]
token_endpoint_auth_method = "client_secret_basic"
client_secret_sha256 = "eb26d4a9a0ef04727f52fb5acc8936196ae90e23003fc5117ce8e3e28c49363f"
scopes = ["openid", "profile"]
claims = ["name"]
danger_allow_code_without_pkce = true
"#;
    let t = TestBroker::with_rps(&[("nopkce.toml", flagged)]).await;
    let mut card = t.card("card");
    let no_pkce = auth_url(&[
        ("client_id", "nopkce"),
        ("code_challenge", ""),
        ("code_challenge_method", ""),
    ]);
    let redeem_as = |code: String, verifier: Option<&'static str>| {
        let mut form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code),
            ("redirect_uri", REDIRECT.to_string()),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v.to_string()));
        }
        form
    };
    // Without a challenge: redeemed without a verifier.
    let mut br = t.browser();
    let p = login_with_card(&mut br, &mut card, &no_pkce).await;
    let form = redeem_as(p["code"].clone(), None);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = br
        .post_form("/token", &form, Some(("nopkce", SECRET)))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Without a challenge, a verifier is refused (and the code is spent).
    let mut br = t.browser();
    let p = login_with_card(&mut br, &mut card, &no_pkce).await;
    let form = redeem_as(p["code"].clone(), Some(VERIFIER));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = br
        .post_form("/token", &form, Some(("nopkce", SECRET)))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["error_description"],
        "code_verifier given but the authorization request had no code_challenge"
    );
    // With a challenge, the verifier cannot be left out.
    let mut br = t.browser();
    let p = login_with_card(&mut br, &mut card, &auth_url(&[("client_id", "nopkce")])).await;
    let form = redeem_as(p["code"].clone(), None);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = br
        .post_form("/token", &form, Some(("nopkce", SECRET)))
        .await;
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(
        r.json()["error_description"],
        "code_verifier is missing: the authorization request had a code_challenge"
    );
    // An unflagged client still must use PKCE.
    let r = br
        .get(&auth_url(&[
            ("code_challenge", ""),
            ("code_challenge_method", ""),
        ]))
        .await;
    let q = r.redirect_params();
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(
        q["error_description"],
        "code_challenge is missing (PKCE with S256 is required)"
    );
    // A public client cannot carry the flag.
    let public = flagged
        .replace("client_secret_basic", "none")
        .replace(
            "client_secret_sha256 = \"eb26d4a9a0ef04727f52fb5acc8936196ae90e23003fc5117ce8e3e28c49363f\"\n",
            "",
        );
    let e = broker::registry::parse_client(std::path::Path::new("pub.toml"), &public)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "pub.toml:9: danger_allow_code_without_pkce is only for confidential clients: a public client must use PKCE"
    );
}

/// id_token_hint names the person expected: that person's session is used (prompt=none gives
/// a code); someone else's session is not (prompt=none → login_required, otherwise the login
/// page); a hint the broker did not issue to this client is refused. max_age counts whole
/// seconds conservatively: a session exactly max_age old is too old.
#[tokio::test]
async fn id_token_hint_and_max_age_boundary() {
    let t = TestBroker::new().await;
    let (mut card_a, mut card_b) = (t.card("alice"), t.card("bob"));
    let mut alice = t.browser();
    let p = login_with_card(&mut alice, &mut card_a, &auth_url(&[])).await;
    let tok = redeem(&mut alice, &p["code"]).await.json();
    let hint_a = tok["id_token"].as_str().unwrap().to_string();
    let mut bob = t.browser();
    login_with_card(&mut bob, &mut card_b, &auth_url(&[])).await;

    let r = alice
        .get(&auth_url(&[("prompt", "none"), ("id_token_hint", &hint_a)]))
        .await;
    assert!(r.redirect_params().contains_key("code"), "{:?}", r.location);
    let r = bob
        .get(&auth_url(&[("prompt", "none"), ("id_token_hint", &hint_a)]))
        .await;
    let q = r.redirect_params();
    assert_eq!(q["error"], "login_required");
    assert_eq!(
        q["error_description"],
        "the person logged in is not the one id_token_hint names, and prompt=none forbids asking"
    );
    // Without prompt=none Bob is asked to log in; if Bob (not Alice) does, the RP gets
    // login_required and no code, and no new session is set.
    let url = auth_url(&[("id_token_hint", &hint_a)]);
    let started = start_login(&mut bob, &url).await;
    let r = helper_answer(&mut bob, &started.helper_path, &mut card_b, "1234").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = bob.get(&format!("/login/{}/continue", started.tx)).await;
    assert!(
        !r.headers.contains_key("set-cookie"),
        "a session for the refused login"
    );
    let q = r.redirect_params();
    assert_eq!(q["error"], "login_required");
    assert_eq!(
        q["error_description"],
        "the person who logged in is not the one id_token_hint names"
    );
    assert!(!q.contains_key("code"));
    // Not an ID token of this broker for this client: refused, whoever is logged in.
    let mut forged = hint_a.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    for bad in [
        forged.as_str(),
        "not-a-jwt",
        tok["access_token"].as_str().unwrap(),
    ] {
        let r = alice
            .get(&auth_url(&[("prompt", "none"), ("id_token_hint", bad)]))
            .await;
        let q = r.redirect_params();
        assert_eq!(q["error"], "invalid_request", "{bad}");
        assert_eq!(
            q["error_description"],
            "id_token_hint is not an ID token this broker issued to this client"
        );
    }

    // max_age: 9 s old is fresh for max_age=10; exactly 10 s old is not.
    let mut carol = t.browser();
    let mut card_c = t.card("carol");
    login_with_card(&mut carol, &mut card_c, &auth_url(&[])).await;
    t.clock.advance(time::Duration::seconds(9));
    let r = carol
        .get(&auth_url(&[("max_age", "10"), ("prompt", "none")]))
        .await;
    assert!(r.redirect_params().contains_key("code"));
    t.clock.advance(time::Duration::seconds(1));
    let r = carol
        .get(&auth_url(&[("max_age", "10"), ("prompt", "none")]))
        .await;
    assert_eq!(r.redirect_params()["error"], "login_required");
}

/// An id_token_hint issued to another client is refused; an expired one of this client is
/// still a valid hint (OIDC Core 3.1.2.1).
#[tokio::test]
async fn id_token_hint_audience_and_expiry() {
    let t = TestBroker::new().await;
    let mut card = t.card("alice");
    let mut br = t.browser();
    let p = login_with_card(&mut br, &mut card, &auth_url(&[])).await;
    let hint = redeem(&mut br, &p["code"]).await.json()["id_token"]
        .as_str()
        .unwrap()
        .to_string();
    // local-dev-spa is another registered client on the same loopback redirect.
    let other = auth_url(&[
        ("client_id", "local-dev-spa"),
        ("redirect_uri", "http://localhost:8766/callback"),
        ("prompt", "none"),
        ("id_token_hint", &hint),
    ]);
    let r = br.get(&other).await;
    let q = r.redirect_params();
    assert_eq!(q["error"], "invalid_request", "{q:?}");
    // Long after the ID token expired, within the session: still a hint for the same person.
    t.clock.advance(time::Duration::seconds(3600));
    let r = br
        .get(&auth_url(&[("prompt", "none"), ("id_token_hint", &hint)]))
        .await;
    assert!(r.redirect_params().contains_key("code"), "{:?}", r.location);
}

/// A claim `purpose` outside 3–300 characters is refused before anything is stored.
#[tokio::test]
async fn claim_purpose_length_is_checked() {
    let t = TestBroker::new().await;
    let mut br = t.browser();
    let before = t.counts().await;
    let claims = serde_json::json!({"userinfo": {"verified_claims": {
        "verification": {"trust_framework": null},
        "claims": {"name": {"purpose": "xy"}}
    }}})
    .to_string();
    let r = br.get(&auth_url(&[("claims", &claims)])).await;
    let q = r.redirect_params();
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(
        q["error_description"],
        "the purpose of claim `name` must be 3 to 300 characters (OpenID Connect for Identity Assurance §6)"
    );
    assert!(
        r.headers.get("set-cookie").is_none(),
        "no login transaction was started"
    );
    assert_eq!(t.counts().await, before);
}

/// The broker remembers access tokens it has verified (userinfo skips the ECDSA check for a
/// token seen before), but a remembered token still expires, and only the exact bytes that
/// were verified are recognised.
#[tokio::test]
async fn remembered_access_token_still_expires_and_must_match_exactly() {
    let t = TestBroker::new().await;
    let mut card = t.card("card");
    let mut br = t.browser();
    let p = login_with_card(&mut br, &mut card, &auth_url(&[])).await;
    let tok = redeem(&mut br, &p["code"]).await.json();
    let at = tok["access_token"].as_str().unwrap();
    for _ in 0..2 {
        assert_eq!(br.get_bearer("/userinfo", at).await.status, StatusCode::OK);
    }
    // Same header and claims, another signature: not the token that was verified.
    let (signed, sig) = at.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let forged = format!("{signed}.{flipped}{}", &sig[1..]);
    let refused = |r: Resp| {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let challenge = r.headers["www-authenticate"].to_str().unwrap().to_string();
        assert!(
            challenge.contains("the access token is invalid or expired"),
            "{challenge}"
        );
    };
    refused(br.get_bearer("/userinfo", &forged).await);
    // Past its expiry the remembered token is refused like any other.
    t.clock.advance(time::Duration::seconds(
        tok["expires_in"].as_i64().unwrap() + 1,
    ));
    refused(br.get_bearer("/userinfo", at).await);
}

/// /jwks is served pre-serialized, but by time: a rotated-out key leaves the document when its
/// retirement time passes, with no reload in between.
#[tokio::test]
async fn served_jwks_drops_a_retired_key_at_its_time() {
    let t = TestBroker::new().await;
    let mut br = t.browser();
    let kids = |v: Value| -> Vec<String> {
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    };
    let before = kids(br.get("/jwks").await.json());
    let now = t.broker.now();
    let new =
        broker::service::keys::rotate(&*t.broker.store, broker::oidc::keys::EC_ALG, now, 60, 100)
            .await
            .unwrap();
    broker::service::cluster::sync(
        &t.broker,
        &mut broker::service::cluster::SyncState::default(),
    )
    .await
    .unwrap();
    let during = kids(br.get("/jwks").await.json());
    assert_eq!(during.len(), before.len() + 1, "{during:?}");
    assert!(during.contains(&new));
    t.clock.advance(time::Duration::seconds(161));
    let after = kids(br.get("/jwks").await.json());
    assert_eq!(after.len(), before.len(), "{after:?}");
    assert!(after.contains(&new));
    let old_ec: Vec<_> = during.iter().filter(|k| !after.contains(k)).collect();
    assert_eq!(
        old_ec.len(),
        1,
        "exactly the old ES256 key retired: {old_ec:?}"
    );
}

/// /authorize needs no authentication: every parameter kept with a login transaction is
/// bounded, and a parameter that is not UTF-8 is refused rather than altered. Each refusal
/// names the parameter and stores nothing.
#[tokio::test]
async fn authorize_parameters_are_bounded_and_never_altered() {
    let t = TestBroker::new().await;
    let mut br = t.browser();
    let long = |n: usize| "a".repeat(n);
    let claims = format!(
        "{{\"userinfo\":{{\"name\":{{\"purpose\":\"{}\"}}}}}}",
        long(4100)
    );
    for (param, value, msg) in [
        ("nonce", long(513), "nonce is longer than 512 bytes"),
        (
            "login_hint",
            long(257),
            "login_hint is longer than 256 bytes",
        ),
        (
            "acr_values",
            long(1025),
            "acr_values is longer than 1024 bytes",
        ),
        (
            "ui_locales",
            long(257),
            "ui_locales is longer than 256 bytes",
        ),
        ("claims", claims, "claims is longer than 4096 bytes"),
        ("max_age", "9".repeat(21), "max_age is longer than 20 bytes"),
    ] {
        let r = br.get(&auth_url(&[(param, &value)])).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{param}");
        let p = r.redirect_params();
        assert_eq!(
            (p["error"].as_str(), p["error_description"].as_str()),
            ("invalid_request", msg)
        );
        assert_eq!(p["state"], "st-1", "the state comes back");
    }
    // A state too long to keep: refused, and not sent back.
    let r = br.get(&auth_url(&[("state", &long(2049))])).await;
    let p = r.redirect_params();
    assert_eq!(p["error_description"], "state is longer than 2048 bytes");
    assert!(!p.contains_key("state"));
    // A state (or any parameter) that is not UTF-8 once percent-decoded: refused on a page;
    // it is never turned into U+FFFD and sent back as a state the RP never sent.
    for (bad, name) in [("%FF%FE", "state"), ("%C3", "state")] {
        let url = format!("{}&state={bad}", auth_url(&[("state", "")]));
        let r = br.get(&url).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.location.is_none());
        assert!(
            r.body.contains(&format!(
                "parameter `{name}` is not valid UTF-8 once percent-decoded"
            )),
            "{}",
            r.body
        );
    }
    let r = br
        .post_form("/token", &[("grant_type", "authorization_code")], None)
        .await;
    assert_eq!(r.json()["error"], "invalid_client");
    let r = br
        .send(
            axum::http::Request::builder()
                .method("POST")
                .uri("/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(axum::body::Body::from(
                    "grant_type=authorization_code&code=%FF",
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["error_description"],
        "parameter `code` is not valid UTF-8 once percent-decoded"
    );
    // Within the bounds, a transaction is stored.
    assert_eq!(t.broker.store.count_transactions().await.unwrap(), 0);
    let r = br.get(&auth_url(&[("state", &long(2048))])).await;
    assert!(r.location.unwrap().starts_with("/login/"));
    assert_eq!(t.broker.store.count_transactions().await.unwrap(), 1);
}

/// Open login transactions are capped per source address (an IPv6 /64 counts as one) and per
/// relying party; over a cap, the RP hears `temporarily_unavailable` and nothing is stored.
/// Transactions that expire stop counting and are purged when they expire.
#[tokio::test]
async fn open_transactions_are_capped_per_source_and_per_client() {
    let t = TestBroker::with_config(|c| {
        c.limits.open_transactions_per_source = 3;
        c.limits.open_transactions_per_client = 5;
    })
    .await;
    let start = |peer: &'static str| {
        let mut br = t.browser_at(peer);
        async move { br.get(&auth_url(&[])).await }
    };
    for peer in [
        "[2001:db8::1]:1000",
        "[2001:db8::2]:2000",
        "[2001:db8::3]:3000",
    ] {
        let r = start(peer).await;
        assert!(r.location.unwrap().starts_with("/login/"));
    }
    // A fourth from the same /64: refused.
    let r = start("[2001:db8::ffff]:1").await;
    let p = r.redirect_params();
    assert_eq!(p["error"], "temporarily_unavailable");
    assert_eq!(
        p["error_description"],
        "too many logins are in progress from your network address (3); try again in a few minutes"
    );
    assert_eq!(p["state"], "st-1");
    assert_eq!(t.broker.store.count_transactions().await.unwrap(), 3);
    // Another source may, until the relying party has 5 open.
    for _ in 0..2 {
        let r = start("192.0.2.7:5000").await;
        assert!(r.location.unwrap().starts_with("/login/"));
    }
    let r = start("198.51.100.1:5000").await;
    assert_eq!(
        r.redirect_params()["error_description"],
        "too many logins to this service are in progress (5); try again in a few minutes"
    );
    assert_eq!(t.broker.store.count_transactions().await.unwrap(), 5);
    // Another relying party is not affected.
    let mut br = t.browser_at("198.51.100.1:5000");
    let r = br
        .get(&auth_url(&[
            ("client_id", "local-dev-spa"),
            ("redirect_uri", "http://localhost:8766/callback"),
        ]))
        .await;
    assert!(r.location.unwrap().starts_with("/login/"));
    // Expired transactions stop counting at once, and the purge removes them when they expire.
    t.clock.advance(time::Duration::seconds(601));
    let r = start("[2001:db8::ffff]:1").await;
    assert!(r.location.unwrap().starts_with("/login/"));
    let purged = t.broker.store.purge_expired(t.broker.now()).await.unwrap();
    assert_eq!(purged, 6);
    assert_eq!(t.broker.store.count_transactions().await.unwrap(), 1);
}

/// Pages' script and style run under a per-response CSP nonce, never `'unsafe-inline'`.
#[tokio::test]
async fn pages_scripts_run_under_a_csp_nonce() {
    let t = TestBroker::new().await;
    let mut br = t.browser();
    let r = br.get(&auth_url(&[])).await;
    let login = r.location.unwrap();
    let mut nonces = Vec::new();
    for _ in 0..2 {
        let page = br.get(&login).await;
        let csp = page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let nonce = csp
            .split("script-src 'nonce-")
            .nth(1)
            .and_then(|s| s.split('\'').next())
            .unwrap()
            .to_string();
        assert!(csp.contains(&format!("style-src 'nonce-{nonce}'")), "{csp}");
        assert!(page.body.contains(&format!("<script nonce=\"{nonce}\">")));
        assert!(page.body.contains(&format!("<style nonce=\"{nonce}\">")));
        assert_eq!(page.body.matches("<script").count(), 1);
        nonces.push(nonce);
    }
    assert_ne!(nonces[0], nonces[1], "a fresh nonce per response");
    // Every page renders the same way.
    let page = br.get("/").await;
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("nonce-")
    );
}

/// Behind a reverse proxy (`trust_forwarded_for`), the source is the last X-Forwarded-For
/// entry (the proxy's own): the entries before it are the client's to choose. Without the
/// setting the header is ignored.
#[tokio::test]
async fn the_source_behind_a_proxy_is_the_last_forwarded_for_entry() {
    for trust in [true, false] {
        let t = TestBroker::with_config(|c| {
            c.limits.open_transactions_per_source = 1;
            c.limits.trust_forwarded_for = trust;
        })
        .await;
        let start = |xff: &'static str| {
            let mut br = t.browser_at("127.0.0.1:9999");
            let req = axum::http::Request::builder()
                .uri(auth_url(&[]))
                .header("x-forwarded-for", xff)
                .body(axum::body::Body::empty())
                .unwrap();
            async move { br.send(req).await.location.unwrap() }
        };
        let first = start("203.0.113.9, 198.51.100.1").await;
        assert!(first.starts_with("/login/"));
        // Another client behind the proxy.
        let second = start("203.0.113.9, 198.51.100.2").await;
        // The first client again, claiming another address in front.
        let third = start("192.0.2.1, 198.51.100.1").await;
        if trust {
            assert!(second.starts_with("/login/"), "{second}");
            assert!(third.contains("error=temporarily_unavailable"), "{third}");
        } else {
            // All from the proxy's address: one source.
            assert!(second.contains("error=temporarily_unavailable"), "{second}");
            assert!(third.contains("error=temporarily_unavailable"), "{third}");
        }
    }
}
