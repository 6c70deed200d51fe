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
const JTI_SKEW_MARGIN: i64 = 300;

/// Longest `jti` accepted.
const JTI_MAX_LEN: usize = 256;

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

/// Check `client`'s assertion for `issuer` at `now`: signature by one of its registered keys,
/// an allowed algorithm, iss = sub = client id, aud the issuer or its token endpoint, exp and
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
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
    let bad = |m: &str| OAuthError::invalid_client(format!("client_assertion: {m}"));
    let header = decode_header(assertion).map_err(|_| bad("malformed header"))?;
    if !matches!(
        header.alg,
        Algorithm::ES256 | Algorithm::PS256 | Algorithm::RS256 | Algorithm::EdDSA
    ) {
        return Err(bad("algorithm not allowed"));
    }
    let jwks = client
        .jwks
        .as_ref()
        .ok_or_else(|| bad("client has no keys"))?;
    let candidates: Vec<_> = jwks
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
        .collect();
    let token_endpoint = format!("{issuer}/token");
    let mut v = Validation::new(header.alg);
    v.set_audience(&[issuer, token_endpoint.as_str()]);
    v.set_issuer(&[client.client_id.as_str()]);
    v.sub = Some(client.client_id.clone());
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    // exp and nbf are checked below against the broker's clock (injected), not the library's.
    v.validate_exp = false;
    v.validate_nbf = false;
    let mut claims = None;
    for k in candidates {
        let Ok(key) = DecodingKey::from_jwk(k) else {
            continue;
        };
        match decode::<Value>(assertion, &key, &v) {
            Ok(d) => {
                claims = Some(d.claims);
                break;
            }
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature
                | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm
                | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat => continue,
                other => return Err(bad(&format!("{other:?}"))),
            },
        }
    }
    let c = claims.ok_or_else(|| bad("signature does not verify with any registered key"))?;
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
                "jti must be a string of 1 to {JTI_MAX_LEN} characters"
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
}

pub fn target_member(t: Target) -> &'static str {
    match t {
        Target::Userinfo => "userinfo",
        Target::IdToken => "id_token",
    }
}

/// Does this redeemed code belong to `client`, and match the request's redirect URI and PKCE
/// verifier, in time? Its data if so.
/// A code as it was stored: to whom it was issued, until when, and what it carries.
pub struct IssuedCode<'a> {
    pub client_id: &'a str,
    pub expires_at: i64,
    pub data_json: &'a str,
}

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
