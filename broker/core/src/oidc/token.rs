//! Token-endpoint protocol logic, pure: client credentials as presented and the client
//! assertion's check (RFC 7523), what a code and a refresh token carry, the code's check
//! (client, expiry, redirect URI, PKCE). The conductor (`service::token`) loads and writes.

use super::authorize::pkce_matches;
use super::claims::Target;
use super::error::OAuthError;
use crate::authn::AuthFacts;
use crate::clock::token_hash;
use crate::registry::Client;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Client credentials as presented (any combination; validated by [`authenticate_client`]).
#[derive(Debug, Default, Clone)]
pub struct PresentedCredentials {
    /// From `Authorization: Basic` (already form-url-decoded per RFC 6749 §2.3.1).
    pub basic: Option<(String, String)>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

impl PresentedCredentials {
    /// Take the credential fields out of a form.
    pub fn from_form(basic: Option<(String, String)>, form: &[(String, String)]) -> Self {
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        PresentedCredentials {
            basic,
            client_id: get("client_id"),
            client_secret: get("client_secret"),
            client_assertion_type: get("client_assertion_type"),
            client_assertion: get("client_assertion"),
        }
    }
}

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest lifetime of a client assertion (`exp` − `iat`, and `exp` − now).
pub const ASSERTION_MAX_LIFETIME: i64 = 300;

/// Clock skew allowed on a client assertion's `exp`, `nbf` and `iat`.
pub const ASSERTION_LEEWAY: i64 = 30;

/// How much longer than an assertion's acceptance its `jti` is kept: the processes' clocks may
/// differ by this much.
pub(crate) const JTI_SKEW_MARGIN: i64 = 300;

/// Longest `jti` accepted.
pub(crate) const JTI_MAX_LEN: usize = 256;

/// What a verified client assertion leaves to check against the store.
pub struct VerifiedAssertion {
    /// SHA-256 (base64url) of its `jti`.
    pub jti_hash: String,
    /// Until when its `jti` must be remembered (the assertion is refused after that anyway).
    pub keep_until: i64,
}

/// `sub` of a client assertion, read WITHOUT verification only to find the client; the
/// assertion is verified against that client's keys before anything trusts it.
pub fn assertion_subject(assertion: &str) -> Result<String, OAuthError> {
    let payload = assertion
        .split('.')
        .nth(1)
        .and_then(crate::clock::b64url_decode)
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
        .ok_or_else(|| OAuthError::invalid_client("client_assertion is not a JWT"))?;
    payload["sub"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| OAuthError::invalid_client("client_assertion has no sub"))
}

/// The claims of a JWS that `client` signed with one of its registered keys: an allowed
/// algorithm (ES256, PS256, RS256, EdDSA; fapi2: not RS256) that `typ_ok` accepts the header
/// of, `iss` the client (and `sub` when required), `aud` one of `audiences`, the `required`
/// claims present. Times are not checked here (the caller judges them by the broker's clock).
/// The error is the reason, for the caller to put in its own form.
pub(crate) fn decode_client_jws(
    client: &Client,
    token: &str,
    audiences: &[&str],
    required: &[&str],
    typ_ok: impl Fn(Option<&str>) -> bool,
) -> Result<Value, String> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
    let header = decode_header(token).map_err(|_| "malformed header".to_string())?;
    if !matches!(
        header.alg,
        Algorithm::ES256 | Algorithm::PS256 | Algorithm::RS256 | Algorithm::EdDSA
    ) {
        return Err("algorithm not allowed".into());
    }
    if client.profile == crate::registry::Profile::Fapi2
        && !matches!(
            header.alg,
            Algorithm::ES256 | Algorithm::PS256 | Algorithm::EdDSA
        )
    {
        return Err(format!(
            "algorithm {:?} is not allowed for a fapi2 client (PS256, ES256, EdDSA)",
            header.alg
        ));
    }
    if !typ_ok(header.typ.as_deref()) {
        return Err(format!(
            "typ {:?} is not allowed here",
            header.typ.as_deref().unwrap_or("")
        ));
    }
    let jwks = client
        .jwks
        .as_ref()
        .ok_or_else(|| "client has no keys".to_string())?;
    let candidates: Vec<_> = jwks
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
        .collect();
    let mut v = Validation::new(header.alg);
    v.set_audience(audiences);
    v.set_issuer(&[client.client_id.as_str()]);
    if required.contains(&"sub") {
        v.sub = Some(client.client_id.clone());
    }
    v.set_required_spec_claims(required);
    // exp and nbf are checked by the caller against the broker's clock (injected), not the
    // library's.
    v.validate_exp = false;
    v.validate_nbf = false;
    for k in candidates {
        let Ok(key) = DecodingKey::from_jwk(k) else {
            continue;
        };
        match decode::<Value>(token, &key, &v) {
            Ok(d) => return Ok(d.claims),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature
                | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm
                | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat => continue,
                other => return Err(format!("{other:?}")),
            },
        }
    }
    Err("signature does not verify with any registered key".into())
}

/// Check `client`'s assertion for `issuer` at `now`: signature by one of its registered keys,
/// an allowed algorithm (fapi2: PS256, ES256, EdDSA), iss = sub = client id, aud the issuer, its
/// token endpoint or its PAR endpoint, exp and
/// nbf, a jti, a lifetime of at most [`ASSERTION_MAX_LIFETIME`]. The jti's single use is the
/// conductor's to check (it needs the store).
///
/// Long, and kept so: RFC 7523 §3's checks in that order, each with its own message.
pub fn verify_assertion(
    client: &Client,
    assertion: &str,
    issuer: &str,
    now: i64,
) -> Result<VerifiedAssertion, OAuthError> {
    let bad = |m: &str| OAuthError::invalid_client(format!("client_assertion: {m}"));
    // The issuer (FAPI 2.0 §5.3.2.1, RFC 7523bis), or the endpoint it is sent to (RFC 7523
    // §3, RFC 9126 §2).
    let token_endpoint = format!("{issuer}/token");
    let par_endpoint = format!("{issuer}/par");
    let c = decode_client_jws(
        client,
        assertion,
        &[issuer, token_endpoint.as_str(), par_endpoint.as_str()],
        &["exp", "iss", "sub", "aud"],
        |_| true,
    )
    .map_err(|m| bad(&m))?;
    // NumericDate may have a fraction (RFC 7519 §2); whole seconds are enough here.
    let seconds = |v: &Value| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64));
    let exp = seconds(&c["exp"]).ok_or_else(|| bad("exp is not a number"))?;
    if exp.saturating_add(ASSERTION_LEEWAY) < now {
        return Err(bad("expired (exp is in the past)"));
    }
    match &c["nbf"] {
        Value::Null => {}
        nbf => {
            let nbf = seconds(nbf).ok_or_else(|| bad("nbf is not a number"))?;
            if nbf > now.saturating_add(ASSERTION_LEEWAY) {
                return Err(bad("not valid yet (nbf is in the future)"));
            }
        }
    }
    let jti = match &c["jti"] {
        Value::String(j) if !j.is_empty() && j.len() <= JTI_MAX_LEN => j,
        Value::Null => return Err(bad("jti is missing (each assertion must be unique)")),
        _ => {
            return Err(bad(&format!(
                "jti must be a string of 1 to {JTI_MAX_LEN} bytes"
            )));
        }
    };
    match &c["iat"] {
        Value::Null => {}
        iat => {
            let iat = seconds(iat).ok_or_else(|| bad("iat is not a number"))?;
            if iat > now + ASSERTION_LEEWAY {
                return Err(bad("iat is in the future"));
            }
            let lifetime = exp.saturating_sub(iat);
            if lifetime > ASSERTION_MAX_LIFETIME {
                return Err(bad(&format!(
                    "lives {lifetime} s (exp - iat); at most {ASSERTION_MAX_LIFETIME} s"
                )));
            }
        }
    }
    let left = exp.saturating_sub(now);
    if left > ASSERTION_MAX_LIFETIME + ASSERTION_LEEWAY {
        return Err(bad(&format!(
            "expires in {left} s; an assertion may live at most {ASSERTION_MAX_LIFETIME} s"
        )));
    }
    Ok(VerifiedAssertion {
        jti_hash: token_hash(jti),
        // Remembered past the last moment any process (its clock a little off) could still
        // accept it.
        keep_until: exp.saturating_add(ASSERTION_LEEWAY + JTI_SKEW_MARGIN),
    })
}

/// The token response (RFC 6749 §5.1 + OIDC Core 3.1.3.3).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    /// Absent for client_credentials (no person is involved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// Data kept with a refresh token (hash-indexed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshData {
    pub client_id: String,
    pub account_id: String,
    pub scope: Vec<String>,
    pub acr: Option<String>,
    pub facts: AuthFacts,
    /// The authorization's `claims` parameter (ID tokens from refreshes carry the same).
    #[serde(default)]
    pub claims: Option<Value>,
    /// The SSO session the grant came from (`sid`, OIDC Front-/Back-Channel Logout).
    #[serde(default)]
    pub sid: Option<String>,
}

pub fn target_member(t: Target) -> &'static str {
    match t {
        Target::Userinfo => "userinfo",
        Target::IdToken => "id_token",
    }
}

/// A code as it was stored: to whom it was issued, until when, and what it carries.
pub struct IssuedCode<'a> {
    pub client_id: &'a str,
    pub expires_at: i64,
    pub data_json: &'a str,
}

/// Does this redeemed code belong to `client`, and match the request's redirect URI and PKCE
/// verifier, in time? Its data if so.
pub fn check_code(
    rec: &IssuedCode<'_>,
    client: &Client,
    redirect_uri: &str,
    verifier: Option<&str>,
    now: i64,
) -> Result<CodeData, OAuthError> {
    if rec.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if rec.expires_at < now {
        return Err(OAuthError::invalid_grant("the code expired"));
    }
    let data: CodeData = serde_json::from_str(rec.data_json)
        .map_err(|e| OAuthError::server_error(format!("code data: {e}")))?;
    if data.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the authorization request",
        ));
    }
    match (verifier, data.code_challenge.is_empty()) {
        (Some(v), false) if pkce_matches(v, &data.code_challenge) => {}
        (Some(_), false) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        (None, false) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier is missing: the authorization request had a code_challenge",
            ));
        }
        // Only codes of clients registered with danger_allow_code_without_pkce lack a challenge.
        (None, true) => {}
        (Some(_), true) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier given but the authorization request had no code_challenge",
            ));
        }
    }
    Ok(data)
}

/// Data a code carries to the token endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeData {
    pub redirect_uri: String,
    pub scope: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub acr: Option<String>,
    pub facts: AuthFacts,
    pub claims: Option<serde_json::Value>,
    /// The SSO session the code came from.
    #[serde(default)]
    pub sid: Option<String>,
}

/// The `sid` of an SSO session: derived from its stored hash with the server key, so that it
/// names the session to relying parties without being its cookie or its key in the store.
pub fn session_sid(key: &crate::clock::ServerKey, session_hash: &str) -> String {
    let mut s = key.mac("sid", session_hash.as_bytes());
    s.truncate(22);
    s
}

/// The pairwise (or public) subject of `account_id` for `client`: an HMAC under the server key
/// of the client's sector and the account, so that two sectors cannot link a person.
pub fn subject(key: &crate::clock::ServerKey, client: &Client, account_id: &str) -> String {
    match client.subject_type {
        crate::registry::SubjectType::Public => account_id.to_string(),
        crate::registry::SubjectType::Pairwise => key.mac(
            "pairwise-sub",
            format!("{}\n{account_id}", client.sector).as_bytes(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::RevocationFact;
    use crate::clock::{ServerKey, b64url};
    use crate::oidc::error::ErrorCode;
    use crate::registry::{SubjectType, parse_client};
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;
    use std::path::Path;

    const NOW: i64 = 1_700_000_000;
    const ISSUER: &str = "https://broker.example.jp";
    const CB: &str = "https://rp.example.jp/cb";
    /// The PKCE pair of RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const SECRET: &str = r#"token_endpoint_auth_method = "client_secret_basic"
client_secret_sha256 = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
"#;

    /// Client `id` redirecting to `redirect`, the rest of its file in `rest`.
    fn client_as(id: &str, redirect: &str, rest: &str) -> Client {
        let text = format!(
            "client_id = \"{id}\"\ndisplay_name = \"RP {id}\"\nkind = \"bank\"\nredirect_uris = [\"{redirect}\"]\n{rest}"
        );
        parse_client(Path::new("rp.toml"), &text).unwrap()
    }

    /// Client `rp`, the rest of its file in `rest`.
    fn client(rest: &str) -> Client {
        client_as("rp", CB, rest)
    }

    /// jsonwebtoken on aws-lc-rs, as the broker installs it.
    fn provider() {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    }

    /// A new ES256 key: its PKCS#8 document, and its public JWK (`kid`) as a TOML inline table.
    fn es256_key(kid: &str) -> (Vec<u8>, String) {
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
        // The uncompressed point: 0x04 ‖ x ‖ y.
        let p = pair.public_key().as_ref();
        let jwk = format!(
            r#"{{ kty = "EC", crv = "P-256", kid = "{kid}", alg = "ES256", use = "sig", x = "{}", y = "{}" }}"#,
            b64url(&p[1..33]),
            b64url(&p[33..65])
        );
        (pkcs8.as_ref().to_vec(), jwk)
    }

    /// A private_key_jwt client `rp` registering the keys `jwks`.
    fn key_client(jwks: &[&str]) -> Client {
        provider();
        client(&format!(
            "token_endpoint_auth_method = \"private_key_jwt\"\n[jwks]\nkeys = [{}]\n",
            jwks.join(", ")
        ))
    }

    /// Client `rp` with one key, `k1`, and that key's PKCS#8.
    fn rp_with_key() -> (Client, Vec<u8>) {
        let (pkcs8, jwk) = es256_key("k1");
        (key_client(&[&jwk]), pkcs8)
    }

    /// A good assertion's claims for `rp` at NOW, with `changes` (a null removes the claim).
    fn claims(changes: Value) -> Value {
        let mut c = json!({"iss": "rp", "sub": "rp", "aud": format!("{ISSUER}/token"),
            "exp": NOW + 60, "iat": NOW, "jti": "jti-1"});
        for (k, v) in changes.as_object().unwrap() {
            match v {
                Value::Null => c.as_object_mut().unwrap().remove(k),
                v => c.as_object_mut().unwrap().insert(k.clone(), v.clone()),
            };
        }
        c
    }

    /// `claims` signed ES256 with `pkcs8`, the header naming `kid`.
    fn sign(pkcs8: &[u8], kid: Option<&str>, claims: &Value) -> String {
        provider();
        let mut h = Header::new(Algorithm::ES256);
        h.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&h, claims, &EncodingKey::from_ec_der(pkcs8)).unwrap()
    }

    /// `token` with `header` instead of its own (the signature left as it was).
    fn reheader(token: &str, header: Value) -> String {
        let (_, rest) = token.split_once('.').unwrap();
        format!("{}.{rest}", b64url(header.to_string().as_bytes()))
    }

    /// Why `client` refuses `assertion` at NOW; checked to be invalid_client.
    fn refusal(client: &Client, assertion: &str) -> String {
        match verify_assertion(client, assertion, ISSUER, NOW) {
            Ok(_) => panic!("accepted: {assertion}"),
            Err(e) => {
                assert_eq!(e.code, ErrorCode::InvalidClient, "{e}");
                e.description
            }
        }
    }

    /// Why a client refuses its own key's assertion with `changes` to the good claims.
    fn refused(changes: Value) -> String {
        let (c, k) = rp_with_key();
        refusal(&c, &sign(&k, Some("k1"), &claims(changes)))
    }

    /// A client's verdict on its own key's assertion with `changes` to the good claims.
    fn accepted(changes: Value) -> VerifiedAssertion {
        let (c, k) = rp_with_key();
        verify_assertion(&c, &sign(&k, Some("k1"), &claims(changes)), ISSUER, NOW).unwrap()
    }

    const NOT_SIGNED: &str = "client_assertion: signature does not verify with any registered key";

    /// Accepted for the issuer, its token endpoint, or an audience list naming either: the jti's
    /// hash and until when to remember it (exp + leeway + the processes' clock margin).
    #[test]
    fn assertion_signed_by_a_registered_key_is_accepted_for_issuer_or_token_endpoint() {
        for aud in [
            json!(ISSUER),
            json!(format!("{ISSUER}/token")),
            json!(["https://elsewhere.example", ISSUER]),
        ] {
            let v = accepted(json!({ "aud": aud }));
            assert_eq!(v.jti_hash, token_hash("jti-1"));
            assert_eq!(v.keep_until, NOW + 60 + ASSERTION_LEEWAY + JTI_SKEW_MARGIN);
        }
    }

    /// NumericDate may have a fraction (RFC 7519 §2): whole seconds are kept.
    #[test]
    fn fractional_exp_is_accepted_as_whole_seconds() {
        let v = accepted(json!({"exp": NOW as f64 + 60.7}));
        assert_eq!(v.keep_until, NOW + 60 + ASSERTION_LEEWAY + JTI_SKEW_MARGIN);
    }

    /// Without a kid every registered key is tried; with one, only the key it names.
    #[test]
    fn kid_selects_the_key_and_without_kid_every_registered_key_is_tried() {
        let (k0, jwk0) = es256_key("k0");
        let (k1, jwk1) = es256_key("k1");
        let c = key_client(&[&jwk0, &jwk1]);
        let good = claims(json!({}));
        for (key, kid) in [
            (&k0, None),
            (&k1, None),
            (&k0, Some("k0")),
            (&k1, Some("k1")),
        ] {
            assert!(verify_assertion(&c, &sign(key, kid, &good), ISSUER, NOW).is_ok());
        }
        assert_eq!(refusal(&c, &sign(&k1, Some("k0"), &good)), NOT_SIGNED);
    }

    #[test]
    fn malformed_assertion_is_refused_as_malformed_header() {
        let (c, k) = rp_with_key();
        let good = sign(&k, Some("k1"), &claims(json!({})));
        for a in [
            String::new(),
            "not-a-jwt".into(),
            "a.b.c".into(),
            reheader(&good, json!({"alg": "none"})),
            reheader(&good, json!({"kid": "k1"})),
        ] {
            assert_eq!(refusal(&c, &a), "client_assertion: malformed header", "{a}");
        }
    }

    /// Only ES256, PS256, RS256 and EdDSA: no shared-secret (HS*) nor other algorithms, checked
    /// before any key is looked at.
    #[test]
    fn assertion_with_a_disallowed_algorithm_is_refused() {
        let (c, k) = rp_with_key();
        let hs256 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(json!({})),
            &EncodingKey::from_secret(b"a shared secret"),
        )
        .unwrap();
        let good = sign(&k, Some("k1"), &claims(json!({})));
        let mut bad = vec![hs256];
        for alg in ["ES384", "RS384", "PS512", "HS512"] {
            bad.push(reheader(&good, json!({"alg": alg, "kid": "k1"})));
        }
        for a in bad {
            assert_eq!(refusal(&c, &a), "client_assertion: algorithm not allowed");
        }
    }

    /// A fapi2 client: RS256 is refused before any key is tried (PS256, ES256, EdDSA only);
    /// its assertion may name the issuer, the token endpoint or the PAR endpoint.
    #[test]
    fn a_fapi2_client_refuses_rs256_and_accepts_the_par_endpoint_as_audience() {
        let (pkcs8, jwk) = es256_key("k1");
        provider();
        let c = client(&format!(
            "profile = \"fapi2\"\nid_token_signed_response_alg = \"PS256\"\ntoken_endpoint_auth_method = \"private_key_jwt\"\n[jwks]\nkeys = [{jwk}]\n"
        ));
        let good = sign(&pkcs8, Some("k1"), &claims(json!({})));
        assert_eq!(
            refusal(&c, &reheader(&good, json!({"alg": "RS256", "kid": "k1"}))),
            "client_assertion: algorithm RS256 is not allowed for a fapi2 client (PS256, ES256, EdDSA)"
        );
        for aud in [json!(ISSUER), json!(format!("{ISSUER}/par"))] {
            let a = sign(&pkcs8, Some("k1"), &claims(json!({ "aud": aud })));
            assert!(verify_assertion(&c, &a, ISSUER, NOW).is_ok(), "{aud}");
        }
        let a = sign(
            &pkcs8,
            Some("k1"),
            &claims(json!({ "aud": format!("{ISSUER}/userinfo") })),
        );
        assert!(refusal(&c, &a).contains("InvalidAudience"));
    }

    #[test]
    fn client_without_registered_keys_is_refused() {
        let (k, _) = es256_key("k1");
        let a = sign(&k, Some("k1"), &claims(json!({})));
        assert_eq!(
            refusal(&client(SECRET), &a),
            "client_assertion: client has no keys"
        );
    }

    /// Another key under the registered kid, a kid not registered, a payload changed after
    /// signing, an RSA or EdDSA algorithm claimed on the EC key: no registered key verifies.
    #[test]
    fn assertion_not_signed_by_a_registered_key_is_refused() {
        let (c, k) = rp_with_key();
        let (stranger, _) = es256_key("k1");
        let good = sign(&k, Some("k1"), &claims(json!({})));
        let (head, rest) = good.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let other_jti = claims(json!({"jti": "jti-2"})).to_string();
        for a in [
            sign(&stranger, Some("k1"), &claims(json!({}))),
            sign(&stranger, None, &claims(json!({}))),
            sign(&k, Some("k9"), &claims(json!({}))),
            format!("{head}.{}.{sig}", b64url(other_jti.as_bytes())),
            reheader(&good, json!({"alg": "PS256", "kid": "k1"})),
            reheader(&good, json!({"alg": "RS256", "kid": "k1"})),
            reheader(&good, json!({"alg": "EdDSA", "kid": "k1"})),
        ] {
            assert_eq!(refusal(&c, &a), NOT_SIGNED, "{a}");
        }
    }

    #[test]
    fn assertion_whose_iss_or_sub_is_not_the_client_is_refused() {
        for (changes, why) in [
            (json!({"iss": "other"}), "InvalidIssuer"),
            (json!({"sub": "other"}), "InvalidSubject"),
            (json!({"iss": null}), r#"MissingRequiredClaim("iss")"#),
            (json!({"sub": null}), r#"MissingRequiredClaim("sub")"#),
        ] {
            assert_eq!(refused(changes), format!("client_assertion: {why}"));
        }
    }

    /// The audience is compared exactly: not another endpoint, not with a trailing slash.
    #[test]
    fn assertion_for_another_audience_is_refused() {
        for (aud, why) in [
            (json!("https://elsewhere.example"), "InvalidAudience"),
            (json!(format!("{ISSUER}/")), "InvalidAudience"),
            (json!(format!("{ISSUER}/userinfo")), "InvalidAudience"),
            (json!(["https://elsewhere.example"]), "InvalidAudience"),
            (Value::Null, r#"MissingRequiredClaim("aud")"#),
        ] {
            assert_eq!(
                refused(json!({ "aud": aud })),
                format!("client_assertion: {why}")
            );
        }
    }

    /// Expired: exp more than [`ASSERTION_LEEWAY`] in the past; an exp that is no number is none.
    #[test]
    fn expired_assertion_is_refused_beyond_the_leeway() {
        let at_leeway = accepted(json!({"exp": NOW - ASSERTION_LEEWAY, "iat": NOW - 60}));
        assert_eq!(at_leeway.keep_until, NOW + JTI_SKEW_MARGIN);
        assert_eq!(
            refused(json!({"exp": NOW - ASSERTION_LEEWAY - 1, "iat": NOW - 60})),
            "client_assertion: expired (exp is in the past)"
        );
        for exp in [Value::Null, json!("later"), json!(-1)] {
            assert_eq!(
                refused(json!({ "exp": exp })),
                r#"client_assertion: MissingRequiredClaim("exp")"#
            );
        }
    }

    #[test]
    fn assertion_not_valid_yet_is_refused_beyond_the_leeway() {
        accepted(json!({"nbf": NOW + ASSERTION_LEEWAY}));
        assert_eq!(
            refused(json!({"nbf": NOW + ASSERTION_LEEWAY + 1})),
            "client_assertion: not valid yet (nbf is in the future)"
        );
        assert_eq!(
            refused(json!({"nbf": "soon"})),
            "client_assertion: nbf is not a number"
        );
    }

    #[test]
    fn assertion_issued_in_the_future_is_refused_beyond_the_leeway() {
        accepted(json!({"iat": NOW + ASSERTION_LEEWAY}));
        assert_eq!(
            refused(json!({"iat": NOW + ASSERTION_LEEWAY + 1})),
            "client_assertion: iat is in the future"
        );
        assert_eq!(
            refused(json!({"iat": "now"})),
            "client_assertion: iat is not a number"
        );
    }

    /// A jti is required (its single use is what stops replays): a string of 1 to 256 bytes.
    #[test]
    fn assertion_without_a_usable_jti_is_refused() {
        let longest = "j".repeat(JTI_MAX_LEN);
        assert_eq!(
            accepted(json!({ "jti": longest })).jti_hash,
            token_hash(&longest)
        );
        assert_eq!(
            refused(json!({"jti": null})),
            "client_assertion: jti is missing (each assertion must be unique)"
        );
        for jti in [json!(""), json!("j".repeat(JTI_MAX_LEN + 1)), json!(7)] {
            assert_eq!(
                refused(json!({ "jti": jti })),
                "client_assertion: jti must be a string of 1 to 256 bytes"
            );
        }
    }

    /// At most [`ASSERTION_MAX_LIFETIME`] from iat to exp, and (iat or not) from now to exp
    /// beyond the leeway.
    #[test]
    fn assertion_living_longer_than_the_maximum_is_refused() {
        accepted(json!({"exp": NOW + ASSERTION_MAX_LIFETIME}));
        accepted(json!({"exp": NOW + ASSERTION_MAX_LIFETIME + ASSERTION_LEEWAY, "iat": null}));
        for iat in [NOW, NOW - 100] {
            let exp = iat + ASSERTION_MAX_LIFETIME + 1;
            assert_eq!(
                refused(json!({"iat": iat, "exp": exp})),
                "client_assertion: lives 301 s (exp - iat); at most 300 s"
            );
        }
        assert_eq!(
            refused(
                json!({"exp": NOW + ASSERTION_MAX_LIFETIME + ASSERTION_LEEWAY + 1, "iat": null})
            ),
            "client_assertion: expires in 331 s; an assertion may live at most 300 s"
        );
    }

    /// `sub` is read unverified, only to find the client.
    #[test]
    fn assertion_subject_is_read_without_verification() {
        let (stranger, _) = es256_key("k1");
        let a = sign(&stranger, None, &claims(json!({})));
        assert_eq!(assertion_subject(&a).unwrap(), "rp");
        for (a, why) in [
            ("not-a-jwt", "client_assertion is not a JWT"),
            ("x.!!.y", "client_assertion is not a JWT"),
            ("x.e30.y", "client_assertion has no sub"),
            ("x.eyJzdWIiOjV9.y", "client_assertion has no sub"),
        ] {
            let e = assertion_subject(a).unwrap_err();
            assert_eq!(
                (e.code, e.description.as_str()),
                (ErrorCode::InvalidClient, why)
            );
        }
    }

    #[test]
    fn from_form_takes_the_credential_fields() {
        let form: Vec<(String, String)> = [
            ("grant_type", "authorization_code"),
            ("client_id", "rp"),
            ("code", "c"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", "a.b.c"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let basic = Some(("rp".to_string(), "s".to_string()));
        let p = PresentedCredentials::from_form(basic.clone(), &form);
        assert_eq!(p.basic, basic);
        assert_eq!(p.client_id.as_deref(), Some("rp"));
        assert_eq!(p.client_secret, None);
        assert_eq!(p.client_assertion_type.as_deref(), Some(JWT_BEARER));
        assert_eq!(p.client_assertion.as_deref(), Some("a.b.c"));
        let secret = [("client_secret".to_string(), "s".to_string())];
        let p = PresentedCredentials::from_form(None, &secret);
        assert_eq!(p.client_secret.as_deref(), Some("s"));
        assert!(p.basic.is_none() && p.client_id.is_none() && p.client_assertion.is_none());
    }

    /// A code's data for `rp` as stored, with `challenge` ("" for none).
    fn code_data(challenge: &str) -> String {
        serde_json::to_string(&CodeData {
            redirect_uri: CB.into(),
            scope: vec!["openid".into(), "profile".into()],
            nonce: Some("n-1".into()),
            code_challenge: challenge.into(),
            acr: Some("urn:example:acr:card".into()),
            facts: AuthFacts::jpki_user_auth("CN=CA", "01", RevocationFact::Good, NOW - 10),
            claims: Some(json!({"id_token": {"name": null}})),
            sid: Some("sid-1".into()),
        })
        .unwrap()
    }

    /// `rp` redeems at NOW a code issued to `owner` until `expires_at` carrying `data`.
    fn redeem(
        owner: &str,
        expires_at: i64,
        data: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
    ) -> Result<CodeData, OAuthError> {
        let rec = IssuedCode {
            client_id: owner,
            expires_at,
            data_json: data,
        };
        check_code(&rec, &client(SECRET), redirect_uri, verifier, NOW)
    }

    /// Why a redemption fails; checked to be invalid_grant.
    fn grant_refusal(r: Result<CodeData, OAuthError>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidGrant, "{e}");
        e.description
    }

    /// The code's data comes back whole, until its last second.
    #[test]
    fn code_is_redeemed_with_its_redirect_uri_and_pkce_verifier() {
        let data = code_data(CHALLENGE);
        let d = redeem("rp", NOW, &data, CB, Some(VERIFIER)).unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), data);
    }

    /// Only codes of clients allowed to skip PKCE lack a challenge: no verifier then.
    #[test]
    fn code_without_challenge_is_redeemed_without_verifier() {
        let data = code_data("");
        let d = redeem("rp", NOW + 60, &data, CB, None).unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), data);
    }

    #[test]
    fn code_issued_to_another_client_is_refused() {
        let r = redeem("other", NOW + 60, &code_data(CHALLENGE), CB, Some(VERIFIER));
        assert_eq!(grant_refusal(r), "the code was issued to another client");
    }

    #[test]
    fn expired_code_is_refused() {
        let r = redeem("rp", NOW - 1, &code_data(CHALLENGE), CB, Some(VERIFIER));
        assert_eq!(grant_refusal(r), "the code expired");
    }

    /// The store's data not being a code's is the broker's fault, not the client's.
    #[test]
    fn unreadable_code_data_is_a_server_error() {
        for data in ["{", r#"{"redirect_uri": "https://rp.example.jp/cb"}"#] {
            let e = redeem("rp", NOW + 60, data, CB, Some(VERIFIER)).unwrap_err();
            assert_eq!(e.code, ErrorCode::ServerError);
            assert!(e.description.starts_with("code data: "), "{e}");
        }
    }

    #[test]
    fn code_redeemed_with_another_redirect_uri_is_refused() {
        for uri in [
            "https://rp.example.jp/other",
            "https://rp.example.jp/cb/",
            "",
        ] {
            let r = redeem("rp", NOW + 60, &code_data(CHALLENGE), uri, Some(VERIFIER));
            assert_eq!(
                grant_refusal(r),
                "redirect_uri differs from the authorization request"
            );
        }
    }

    /// Another verifier, the challenge itself, a verifier too short (RFC 7636 §4.1).
    #[test]
    fn code_redeemed_with_a_wrong_verifier_is_refused() {
        let other = VERIFIER.replace('d', "e");
        for v in [other.as_str(), CHALLENGE, &VERIFIER[..42]] {
            let r = redeem("rp", NOW + 60, &code_data(CHALLENGE), CB, Some(v));
            assert_eq!(
                grant_refusal(r),
                "code_verifier does not match the code_challenge"
            );
        }
    }

    #[test]
    fn code_with_challenge_redeemed_without_verifier_is_refused() {
        let r = redeem("rp", NOW + 60, &code_data(CHALLENGE), CB, None);
        assert_eq!(
            grant_refusal(r),
            "code_verifier is missing: the authorization request had a code_challenge"
        );
    }

    /// No PKCE downgrade (RFC 9700 §2.1.1): a verifier for a code that had no challenge.
    #[test]
    fn code_without_challenge_redeemed_with_a_verifier_is_refused() {
        let r = redeem("rp", NOW + 60, &code_data(""), CB, Some(VERIFIER));
        assert_eq!(
            grant_refusal(r),
            "code_verifier given but the authorization request had no code_challenge"
        );
    }

    #[test]
    fn public_subject_is_the_account_id() {
        let c = client(&format!("{SECRET}subject_type = \"public\"\n"));
        assert_eq!(
            subject(&ServerKey::new(b"server key"), &c, "acct-1"),
            "acct-1"
        );
    }

    /// One sector (the redirect host, or `sector_identifier`) sees one subject per account,
    /// another sector another; the derivation is fixed, or every RP's subjects would change.
    #[test]
    fn pairwise_subject_is_shared_within_a_sector_and_differs_across_sectors() {
        let key = ServerKey::new(b"server key");
        let a = client_as("a", "https://a.example.jp/cb", SECRET);
        let sector_a = format!("{SECRET}sector_identifier = \"a.example.jp\"\n");
        let a2 = client_as("a2", "https://login.a.example.jp/cb", &sector_a);
        let b = client_as("b", "https://b.example.jp/cb", SECRET);
        assert_eq!(a.subject_type, SubjectType::Pairwise);
        let sub = subject(&key, &a, "acct-1");
        assert_eq!(sub, key.mac("pairwise-sub", b"a.example.jp\nacct-1"));
        assert_eq!(sub, subject(&key, &a2, "acct-1"));
        assert_ne!(sub, subject(&key, &b, "acct-1"));
        assert_ne!(sub, subject(&key, &a, "acct-2"));
        assert_ne!(sub, subject(&ServerKey::new(b"another key"), &a, "acct-1"));
    }
}
