//! JWT-secured authorization requests (RFC 9101): a request object signed by the client with
//! one of its registered keys, at `/authorize` (`request`) or at `/par`. Pure: the object in,
//! the authorization parameters it carries (and its `jti`, whose single use is the conductor's)
//! out, or `invalid_request_object` naming what was wrong.

use super::authorize::SINGLE;
use super::error::OAuthError;
use super::token::{ASSERTION_LEEWAY, JTI_MAX_LEN, JTI_SKEW_MARGIN, decode_client_jws};
use crate::clock::token_hash;
use crate::registry::Client;
use serde_json::Value;

/// The algorithms a request object may be signed with (discovery's
/// `request_object_signing_alg_values_supported`); a fapi2 client's: not RS256.
pub const ALGS: &[&str] = &["PS256", "ES256", "EdDSA", "RS256"];

/// The longest a request object may be valid: `nbf` at most 60 minutes before now, and `exp`
/// at most 60 minutes after `nbf` (FAPI 2.0 Message Signing §5.3.1).
pub const MAX_WINDOW: i64 = 3600;

/// What a verified request object leaves.
#[derive(Debug)]
pub struct RequestObject {
    /// The authorization request's parameters, from the object alone, with `client_id`.
    pub params: Vec<(String, String)>,
    /// Hash of its `jti`, namespaced apart from client assertions' (`request_object:` prefix).
    pub jti_hash: String,
    /// Until when its `jti` must be remembered.
    pub keep_until: i64,
}

/// Verify `client`'s request object `jwt` for `issuer` at `now`.
///
/// Long, and kept so: RFC 9101 §6 and FAPI 2.0 Message Signing's checks in order, each with
/// its own message.
pub fn verify(
    client: &Client,
    jwt: &str,
    issuer: &str,
    now: i64,
) -> Result<RequestObject, OAuthError> {
    let bad = |m: &str| OAuthError::invalid_request_object(format!("request object: {m}"));
    if jwt.split('.').count() == 5 {
        return Err(bad(
            "encrypted request objects are not supported; sign it (JWS)",
        ));
    }
    // RFC 9101 §10.8: `oauth-authz-req+jwt`; older clients send none or `JWT`.
    let typ_ok = |t: Option<&str>| matches!(t, None | Some("oauth-authz-req+jwt") | Some("JWT"));
    let c = decode_client_jws(
        client,
        jwt,
        &[issuer],
        &["exp", "nbf", "iss", "aud"],
        typ_ok,
    )
    .map_err(|m| {
        if m == "client has no keys" {
            bad("the client has no registered keys to sign request objects with")
        } else {
            bad(&m)
        }
    })?;
    let seconds = |v: &Value| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64));
    let exp = seconds(&c["exp"]).ok_or_else(|| bad("exp is not a number"))?;
    let nbf = seconds(&c["nbf"]).ok_or_else(|| bad("nbf is not a number"))?;
    if exp.saturating_add(ASSERTION_LEEWAY) < now {
        return Err(bad("expired (exp is in the past)"));
    }
    if nbf > now.saturating_add(ASSERTION_LEEWAY) {
        return Err(bad("not valid yet (nbf is in the future)"));
    }
    if now.saturating_sub(nbf) > MAX_WINDOW {
        return Err(bad("nbf is more than 60 minutes in the past"));
    }
    if exp.saturating_sub(nbf) > MAX_WINDOW {
        return Err(bad("valid for more than 60 minutes (exp - nbf)"));
    }
    let jti = match &c["jti"] {
        Value::String(j) if !j.is_empty() && j.len() <= JTI_MAX_LEN => j,
        Value::Null => return Err(bad("jti is missing (each request object must be unique)")),
        _ => {
            return Err(bad(&format!(
                "jti must be a string of 1 to {JTI_MAX_LEN} bytes"
            )));
        }
    };
    match &c["client_id"] {
        Value::Null => {}
        Value::String(id) if *id == client.client_id => {}
        other => {
            return Err(bad(&format!(
                "client_id {other} is not the request's client_id `{}`",
                client.client_id
            )));
        }
    }
    for nested in ["request", "request_uri"] {
        if !c[nested].is_null() {
            return Err(bad(&format!("it must not contain `{nested}`")));
        }
    }
    let Value::Object(claims) = &c else {
        return Err(bad("the payload is not a JSON object"));
    };
    let mut params = vec![("client_id".to_string(), client.client_id.clone())];
    for (k, v) in claims {
        if k == "client_id" || !SINGLE.contains(&k.as_str()) {
            continue;
        }
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            // `claims` is a JSON object in the object (a string in a query).
            Value::Object(_) => v.to_string(),
            other => {
                return Err(bad(&format!("`{k}` must be a string, not {other}")));
            }
        };
        params.push((k.clone(), v));
    }
    Ok(RequestObject {
        params,
        jti_hash: token_hash(&format!("request_object:{jti}")),
        keep_until: exp.saturating_add(ASSERTION_LEEWAY + JTI_SKEW_MARGIN),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::b64url;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;
    use std::path::Path;

    const ISSUER: &str = "https://broker.example.jp";
    const NOW: i64 = 1_800_000_000;

    fn key() -> (Vec<u8>, String) {
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
        let p = pair.public_key().as_ref();
        let jwk = format!(
            r#"{{ kty = "EC", crv = "P-256", kid = "k1", alg = "ES256", x = "{}", y = "{}" }}"#,
            b64url(&p[1..33]),
            b64url(&p[33..65])
        );
        (pkcs8.as_ref().to_vec(), jwk)
    }

    fn client(profile: &str, jwk: &str) -> Client {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        crate::registry::parse_client(
            Path::new("rp.toml"),
            &format!(
                "client_id = \"rp\"\ndisplay_name = \"RP\"\nkind = \"bank\"\nredirect_uris = [\"https://rp.example.jp/cb\"]\nprofile = \"{profile}\"\nid_token_signed_response_alg = \"PS256\"\ntoken_endpoint_auth_method = \"private_key_jwt\"\n[jwks]\nkeys = [{jwk}]\n"
            ),
        )
        .unwrap()
    }

    fn claims(changes: Value) -> Value {
        let mut c = json!({"iss": "rp", "aud": ISSUER, "exp": NOW + 300, "nbf": NOW - 10,
            "jti": "r-1", "client_id": "rp", "response_type": "code", "scope": "openid",
            "redirect_uri": "https://rp.example.jp/cb", "state": "s", "max_age": 60,
            "claims": {"id_token": {"acr": null}}, "unknown": "dropped"});
        for (k, v) in changes.as_object().unwrap() {
            match v {
                Value::Null => c.as_object_mut().unwrap().remove(k),
                v => c.as_object_mut().unwrap().insert(k.clone(), v.clone()),
            };
        }
        c
    }

    fn sign(pkcs8: &[u8], typ: Option<&str>, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k1".into());
        h.typ = typ.map(str::to_string);
        jsonwebtoken::encode(&h, claims, &EncodingKey::from_ec_der(pkcs8)).unwrap()
    }

    fn refused(c: &Client, jwt: &str) -> String {
        let e = verify(c, jwt, ISSUER, NOW).unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_request_object");
        e.description
    }

    #[test]
    fn a_signed_request_object_gives_its_parameters_alone() {
        let (k, jwk) = key();
        let c = client("oidc", &jwk);
        let r = verify(
            &c,
            &sign(&k, Some("oauth-authz-req+jwt"), &claims(json!({}))),
            ISSUER,
            NOW,
        )
        .unwrap();
        let get = |n: &str| {
            r.params
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("client_id"), Some("rp"));
        assert_eq!(get("state"), Some("s"));
        assert_eq!(get("max_age"), Some("60"));
        assert_eq!(get("claims"), Some(r#"{"id_token":{"acr":null}}"#));
        assert_eq!(get("unknown"), None);
        assert_eq!(get("iss"), None);
        assert_eq!(r.jti_hash, token_hash("request_object:r-1"));
        assert_eq!(r.keep_until, NOW + 300 + ASSERTION_LEEWAY + JTI_SKEW_MARGIN);
        for typ in [None, Some("JWT")] {
            assert!(verify(&c, &sign(&k, typ, &claims(json!({}))), ISSUER, NOW).is_ok());
        }
    }

    #[test]
    fn each_bad_request_object_is_refused_for_its_reason() {
        let (k, jwk) = key();
        let (stranger, _) = key();
        let c = client("oidc", &jwk);
        let cases: Vec<(String, &str)> = vec![
            (
                sign(&stranger, None, &claims(json!({}))),
                "request object: signature does not verify with any registered key",
            ),
            (
                sign(
                    &k,
                    None,
                    &claims(json!({"aud": "https://elsewhere.example"})),
                ),
                "request object: InvalidAudience",
            ),
            (
                sign(&k, None, &claims(json!({"aud": format!("{ISSUER}/token")}))),
                "request object: InvalidAudience",
            ),
            (
                sign(&k, None, &claims(json!({"iss": "other"}))),
                "request object: InvalidIssuer",
            ),
            (
                sign(
                    &k,
                    None,
                    &claims(json!({"exp": NOW - 31, "nbf": NOW - 100})),
                ),
                "request object: expired (exp is in the past)",
            ),
            (
                sign(&k, None, &claims(json!({"nbf": NOW + 31}))),
                "request object: not valid yet (nbf is in the future)",
            ),
            (
                sign(
                    &k,
                    None,
                    &claims(json!({"nbf": NOW - 3601, "exp": NOW + 10})),
                ),
                "request object: nbf is more than 60 minutes in the past",
            ),
            (
                sign(&k, None, &claims(json!({"exp": NOW + 3600}))),
                "request object: valid for more than 60 minutes (exp - nbf)",
            ),
            (
                sign(&k, None, &claims(json!({"nbf": null}))),
                r#"request object: MissingRequiredClaim("nbf")"#,
            ),
            (
                sign(&k, None, &claims(json!({"exp": null}))),
                r#"request object: MissingRequiredClaim("exp")"#,
            ),
            (
                sign(&k, None, &claims(json!({"jti": null}))),
                "request object: jti is missing (each request object must be unique)",
            ),
            (
                sign(&k, None, &claims(json!({"client_id": "city"}))),
                "request object: client_id \"city\" is not the request's client_id `rp`",
            ),
            (
                sign(&k, None, &claims(json!({"request_uri": "urn:x"}))),
                "request object: it must not contain `request_uri`",
            ),
            (
                sign(&k, None, &claims(json!({"state": ["a"]}))),
                r#"request object: `state` must be a string, not ["a"]"#,
            ),
            (
                sign(&k, Some("dpop+jwt"), &claims(json!({}))),
                r#"request object: typ "dpop+jwt" is not allowed here"#,
            ),
            (
                "a.b.c.d.e".into(),
                "request object: encrypted request objects are not supported; sign it (JWS)",
            ),
            ("not-a-jwt".into(), "request object: malformed header"),
        ];
        for (jwt, why) in cases {
            assert_eq!(refused(&c, &jwt), why);
        }
        // alg none, and HS256 with any secret.
        let good = sign(&k, None, &claims(json!({})));
        let (_, rest) = good.split_once('.').unwrap();
        let none = format!("{}.{rest}", b64url(br#"{"alg":"none"}"#));
        assert_eq!(refused(&c, &none), "request object: malformed header");
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(json!({})),
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap();
        assert_eq!(refused(&c, &hs), "request object: algorithm not allowed");
        // A fapi2 client: not RS256.
        let f = client("fapi2", &jwk);
        let rs = format!("{}.{rest}", b64url(br#"{"alg":"RS256","kid":"k1"}"#));
        assert_eq!(
            refused(&f, &rs),
            "request object: algorithm RS256 is not allowed for a fapi2 client (PS256, ES256, EdDSA)"
        );
    }
}
