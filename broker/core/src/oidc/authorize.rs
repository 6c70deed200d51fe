//! Authorization request validation (OIDC Core 3.1.2, RFC 9700, RFC 7636). Pure: parameters
//! and the registry in, a typed request or a typed error out.
//!
//! Order matters: until `client_id` and `redirect_uri` are known good, errors are shown on a
//! page and never redirected (RFC 6749 §4.1.2.1).

use super::error::OAuthError;
use crate::registry::{Client, Registry, SUPPORTED_SCOPES};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A validated authorization request, as kept with the login transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// Granted scopes: requested ∩ registered ∩ supported, in request order.
    pub scope: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub prompt_none: bool,
    pub prompt_login: bool,
    pub prompt_consent: bool,
    pub max_age: Option<i64>,
    pub acr_values: Vec<String>,
    pub ui_locales: Vec<String>,
    pub claims: Option<serde_json::Value>,
    pub login_hint: Option<String>,
    /// The `sub` of a verified `id_token_hint`: only that person may complete this login
    /// (set by `service::authorize::authorize`, which holds the keys to verify the hint).
    #[serde(default)]
    pub hint_sub: Option<String>,
}

impl AuthRequest {
    pub fn scope_string(&self) -> String {
        self.scope.join(" ")
    }
}

/// Why a request was refused, and how the refusal travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// Shown on the broker's error page: the client or redirect URI cannot be trusted.
    Page { error: OAuthError },
    /// Sent back to the (registered) redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: OAuthError,
    },
}

/// Parameters that must not repeat (OIDC Core 3.1.2.1 / RFC 6749 §3.1): every parameter
/// `validate` reads.
pub(crate) const SINGLE: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "response_mode",
    "acr_values",
    "claims",
    "ui_locales",
    "login_hint",
    "id_token_hint",
    "request",
    "request_uri",
];

/// Longest `state` kept and sent back.
pub const MAX_STATE: usize = 2048;

/// The longest value of each parameter kept with a login transaction (bytes).
pub(crate) const STORED_BOUNDS: &[(&str, usize)] = &[
    ("state", MAX_STATE),
    ("nonce", 512),
    ("login_hint", 256),
    ("acr_values", 1024),
    ("ui_locales", 256),
    ("claims", 4096),
    ("max_age", 20),
];

/// How an authorization request reached the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// In the browser's query or form, as sent.
    Front,
    /// Pushed by the authenticated client (RFC 9126), taken back at `/authorize`.
    Pushed,
}

/// Validate the parameters of an authorization request sent through the browser.
pub fn validate(
    params: &[(String, String)],
    registry: &Registry,
) -> Result<(Arc<Client>, AuthRequest), AuthorizeError> {
    validate_in(params, registry, Channel::Front)
}

/// Validate the parameters of an authorization request (query, form, or a pushed request) for
/// a client in `registry`.
///
/// Long, and kept so: the order of the checks is the specification's (RFC 6749 §4.1.2.1: no
/// redirect until the client and redirect URI are known good; then each parameter in turn),
/// and reading them in one place is how that order is reviewed.
pub fn validate_in(
    params: &[(String, String)],
    registry: &Registry,
    channel: Channel,
) -> Result<(Arc<Client>, AuthRequest), AuthorizeError> {
    let page = |e: OAuthError| AuthorizeError::Page { error: e };
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let count = |k: &str| params.iter().filter(|(n, _)| n == k).count();

    if count("client_id") > 1 {
        return Err(page(OAuthError::invalid_request("client_id is repeated")));
    }
    let client_id = get("client_id")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| page(OAuthError::invalid_request("client_id is missing")))?;
    let client = registry.get(client_id).cloned().ok_or_else(|| {
        page(OAuthError::invalid_client(format!(
            "client_id `{client_id}` is not registered"
        )))
    })?;
    if !client.allows_grant(crate::registry::GrantType::AuthorizationCode) {
        return Err(page(OAuthError::unauthorized_client(format!(
            "client `{client_id}` is not registered for the authorization code flow"
        ))));
    }
    if count("redirect_uri") > 1 {
        return Err(page(OAuthError::invalid_request(
            "redirect_uri is repeated",
        )));
    }
    let redirect_uri = get("redirect_uri")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| page(OAuthError::invalid_request("redirect_uri is missing")))?;
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(page(OAuthError::invalid_request(format!(
            "redirect_uri `{redirect_uri}` is not registered for client `{client_id}`"
        ))));
    }

    // From here on errors go back to the relying party. A state too long to keep is not sent
    // back either (the refusal names it).
    let state = get("state")
        .filter(|s| s.len() <= MAX_STATE)
        .map(str::to_string);
    let redirect = |error: OAuthError| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.to_string(),
        state: state.clone(),
        error,
    };
    if let Some(dup) = SINGLE.iter().find(|k| count(k) > 1) {
        return Err(redirect(OAuthError::invalid_request(format!(
            "parameter `{dup}` is repeated"
        ))));
    }
    if client.require_par && channel == Channel::Front {
        return Err(redirect(OAuthError::invalid_request(format!(
            "client `{client_id}` must push its authorization requests (PAR, RFC 9126) and send only client_id and request_uri here"
        ))));
    }
    // Everything kept with the login transaction is bounded: /authorize needs no
    // authentication, so what it stores must not grow with what an attacker sends.
    for (name, max) in STORED_BOUNDS {
        if let Some(v) = get(name)
            && v.len() > *max
        {
            return Err(redirect(OAuthError::invalid_request(format!(
                "{name} is longer than {max} bytes"
            ))));
        }
    }
    // A `request` never reaches here: `service::authorize` and `service::par` replace the
    // request by its request object's parameters (`oidc::jar`), which cannot hold one.
    if get("request_uri").is_some() {
        return Err(redirect(OAuthError::request_uri_not_supported(
            "request_uri is not supported",
        )));
    }
    match get("response_type") {
        None | Some("") => {
            return Err(redirect(OAuthError::invalid_request(
                "response_type is missing",
            )));
        }
        Some("code") => {}
        Some(other) => {
            return Err(redirect(OAuthError::unsupported_response_type(format!(
                "response_type `{other}` is not supported; use `code`"
            ))));
        }
    }
    match get("response_mode") {
        None | Some("query") => {}
        Some(other) => {
            return Err(redirect(OAuthError::invalid_request(format!(
                "response_mode `{other}` is not supported; use `query`"
            ))));
        }
    }
    let requested: Vec<&str> = get("scope").unwrap_or("").split_whitespace().collect();
    if !requested.contains(&"openid") {
        return Err(redirect(OAuthError::invalid_scope(
            "scope must include `openid`",
        )));
    }
    let mut scope: Vec<String> = Vec::new();
    for s in requested {
        if SUPPORTED_SCOPES.contains(&s)
            && client.scopes.contains(s)
            && !scope.iter().any(|x| x == s)
        {
            scope.push(s.to_string());
        }
    }

    // PKCE (RFC 7636), S256 only, required for every client (RFC 9700 §2.1.1) unless a
    // confidential client's registration says danger_allow_code_without_pkce.
    let code_challenge = get("code_challenge").unwrap_or("");
    let without_pkce = code_challenge.is_empty()
        && get("code_challenge_method").is_none()
        && client.danger_allow_code_without_pkce;
    if without_pkce {
        // No challenge: the code is redeemed without a verifier.
    } else if code_challenge.is_empty() {
        return Err(redirect(OAuthError::invalid_request(
            "code_challenge is missing (PKCE with S256 is required)",
        )));
    }
    match get("code_challenge_method") {
        _ if without_pkce => {}
        Some("S256") => {}
        None => {
            return Err(redirect(OAuthError::invalid_request(
                "code_challenge_method is missing; it must be S256",
            )));
        }
        Some(other) => {
            return Err(redirect(OAuthError::invalid_request(format!(
                "code_challenge_method `{other}` is not supported; use S256"
            ))));
        }
    }
    if !without_pkce
        && (code_challenge.len() != 43
            || !code_challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(redirect(OAuthError::invalid_request(
            "code_challenge must be the 43-character base64url SHA-256 of the code_verifier",
        )));
    }

    let mut prompt_none = false;
    let mut prompt_login = false;
    let mut prompt_consent = false;
    let prompts: Vec<&str> = get("prompt").unwrap_or("").split_whitespace().collect();
    for p in &prompts {
        match *p {
            "none" => prompt_none = true,
            "login" => prompt_login = true,
            "consent" => prompt_consent = true,
            "select_account" => {}
            other => {
                return Err(redirect(OAuthError::invalid_request(format!(
                    "prompt value `{other}` is not supported"
                ))));
            }
        }
    }
    if prompt_none && prompts.len() > 1 {
        return Err(redirect(OAuthError::invalid_request(
            "prompt=none cannot be combined with other prompt values",
        )));
    }
    let max_age = match get("max_age") {
        None => None,
        Some(s) => Some(s.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
            redirect(OAuthError::invalid_request(format!(
                "max_age `{s}` is not a non-negative integer"
            )))
        })?),
    };
    let claims = match get("claims") {
        None => None,
        Some(s) => {
            let v: serde_json::Value = serde_json::from_str(s).map_err(|e| {
                redirect(OAuthError::invalid_request(format!(
                    "claims is not valid JSON: {e}"
                )))
            })?;
            if !v.is_object() {
                return Err(redirect(OAuthError::invalid_request(
                    "claims must be a JSON object",
                )));
            }
            if let Some(bad) = bad_purpose(&v) {
                return Err(redirect(OAuthError::invalid_request(format!(
                    "the purpose of claim `{bad}` must be 3 to 300 characters (OpenID Connect for Identity Assurance §6)"
                ))));
            }
            Some(v)
        }
    };
    let nonce = get("nonce").map(str::to_string);
    let split = |k: &str| -> Vec<String> {
        get(k)
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let req = AuthRequest {
        client_id: client_id.to_string(),
        redirect_uri: redirect_uri.to_string(),
        scope,
        state,
        nonce,
        code_challenge: code_challenge.to_string(),
        prompt_none,
        prompt_login,
        prompt_consent,
        max_age,
        acr_values: split("acr_values"),
        ui_locales: split("ui_locales"),
        claims,
        login_hint: get("login_hint").map(str::to_string),
        hint_sub: None,
    };
    Ok((client, req))
}

/// What `req` (and the RP's minimum) asks of the authentication.
pub fn requirement(
    policy: &crate::registry::policy::Policy,
    client: &Client,
    req: &AuthRequest,
) -> crate::assurance::Requirement {
    let min = policy.minimum_for(client.kind, client.min_acr.as_deref());
    crate::assurance::Requirement::of(
        policy,
        min.as_deref(),
        None,
        &req.acr_values,
        req.claims.as_ref(),
    )
}

/// Append `params` to `redirect_uri`'s query, keeping any query it has.
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        // Registered URIs are validated absolute URLs; this is unreachable in practice.
        Err(_) => redirect_uri.to_string(),
    }
}

/// The error redirect for `e` (RFC 6749 §4.1.2.1 + RFC 9207 `iss`).
pub fn error_redirect(
    redirect_uri: &str,
    state: Option<&str>,
    e: &OAuthError,
    issuer: &str,
) -> String {
    let mut p = vec![
        ("error", e.code.as_str()),
        ("error_description", e.description.as_str()),
    ];
    if let Some(s) = state {
        p.push(("state", s));
    }
    p.push(("iss", issuer));
    redirect_with(redirect_uri, &p)
}

/// The first claim (in `userinfo`/`id_token` of a `claims` request, and inside their
/// `verified_claims`) whose `purpose` is not a string of 3 to 300 characters.
pub(crate) fn bad_purpose(claims: &serde_json::Value) -> Option<String> {
    fn walk(members: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
        for (name, req) in members {
            if let Some(p) = req.get("purpose") {
                let n = p.as_str().map(|s| s.chars().count());
                if !n.is_some_and(|n| (3..=300).contains(&n)) {
                    return Some(name.clone());
                }
            }
            if name == "verified_claims" {
                // One request or an array of them, each with its own `claims`.
                let reqs: Vec<&serde_json::Value> = match req {
                    serde_json::Value::Array(a) => a.iter().collect(),
                    other => vec![other],
                };
                for r in reqs {
                    if let Some(serde_json::Value::Object(m)) = r.get("claims")
                        && let Some(bad) = walk(m)
                    {
                        return Some(bad);
                    }
                }
            }
        }
        None
    }
    ["userinfo", "id_token"]
        .iter()
        .find_map(|t| match claims.get(t) {
            Some(serde_json::Value::Object(m)) => walk(m),
            _ => None,
        })
}

/// PKCE S256 check: BASE64URL(SHA256(verifier)) == challenge, verifier 43–128 unreserved chars.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let ok_chars = verifier
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    ok_chars
        && (43..=128).contains(&verifier.len())
        && crate::clock::ct_eq(
            crate::clock::b64url(&crate::clock::sha256(verifier.as_bytes())).as_bytes(),
            challenge.as_bytes(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Registry {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../relying-parties");
        Registry::load_dir(&dir).unwrap()
    }

    fn base() -> Vec<(String, String)> {
        [
            ("client_id", "local-dev"),
            ("redirect_uri", "http://127.0.0.1:8765/callback"),
            ("response_type", "code"),
            ("scope", "openid profile email"),
            ("state", "s1"),
            ("nonce", "n1"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    }

    fn with(mut p: Vec<(String, String)>, k: &str, v: Option<&str>) -> Vec<(String, String)> {
        p.retain(|(n, _)| n != k);
        if let Some(v) = v {
            p.push((k.into(), v.into()));
        }
        p
    }

    fn redirect_code(
        r: Result<(Arc<Client>, AuthRequest), AuthorizeError>,
    ) -> (&'static str, String) {
        match r {
            Err(AuthorizeError::Redirect { error, state, .. }) => {
                assert_eq!(state.as_deref(), Some("s1"));
                (error.code.as_str(), error.description)
            }
            other => panic!("expected a redirect error, got {other:?}"),
        }
    }

    #[test]
    fn valid_request_filters_unknown_scopes() {
        let (_, r) = validate(&base(), &reg()).unwrap();
        assert_eq!(r.scope, vec!["openid", "profile"]);
        assert_eq!(r.nonce.as_deref(), Some("n1"));
    }

    #[test]
    fn client_and_redirect_errors_never_redirect() {
        let r = reg();
        for p in [
            with(base(), "client_id", None),
            with(base(), "client_id", Some("nobody")),
            with(base(), "redirect_uri", None),
            with(
                base(),
                "redirect_uri",
                Some("http://127.0.0.1:8765/callback/other"),
            ),
            with(base(), "redirect_uri", Some("https://evil.example/cb")),
        ] {
            assert!(
                matches!(validate(&p, &r), Err(AuthorizeError::Page { .. })),
                "{p:?}"
            );
        }
    }

    #[test]
    fn protocol_errors_redirect_with_exact_codes() {
        let r = reg();
        assert_eq!(
            redirect_code(validate(&with(base(), "response_type", None), &r)).0,
            "invalid_request"
        );
        assert_eq!(
            redirect_code(validate(&with(base(), "response_type", Some("token")), &r)).0,
            "unsupported_response_type"
        );
        assert_eq!(
            redirect_code(validate(&with(base(), "scope", Some("profile")), &r)).0,
            "invalid_scope"
        );
        let (c, d) = redirect_code(validate(&with(base(), "code_challenge", None), &r));
        assert_eq!(
            (c, d.as_str()),
            (
                "invalid_request",
                "code_challenge is missing (PKCE with S256 is required)"
            )
        );
        let (c, d) = redirect_code(validate(
            &with(base(), "code_challenge_method", Some("plain")),
            &r,
        ));
        assert_eq!(
            (c, d.as_str()),
            (
                "invalid_request",
                "code_challenge_method `plain` is not supported; use S256"
            )
        );
        assert_eq!(
            redirect_code(validate(&with(base(), "prompt", Some("none login")), &r)).0,
            "invalid_request"
        );
        assert_eq!(
            redirect_code(validate(&with(base(), "max_age", Some("-1")), &r)).0,
            "invalid_request"
        );
        let mut dup = base();
        dup.push(("scope".into(), "openid".into()));
        assert_eq!(
            redirect_code(validate(&dup, &r)).1,
            "parameter `scope` is repeated"
        );
    }

    #[test]
    fn claim_purposes_are_3_to_300_characters() {
        let ok = |p: &str| {
            bad_purpose(&serde_json::json!({
                "userinfo": { "verified_claims": { "claims": { "name": { "purpose": p } } } }
            }))
        };
        assert_eq!(ok("ab").as_deref(), Some("name"));
        assert_eq!(ok("abc"), None);
        assert_eq!(ok(&"あ".repeat(300)), None, "characters, not bytes");
        assert_eq!(ok(&"a".repeat(301)).as_deref(), Some("name"));
        let top = serde_json::json!({ "id_token": { "birthdate": { "purpose": 7 } } });
        assert_eq!(bad_purpose(&top).as_deref(), Some("birthdate"));
        let arr = serde_json::json!({ "userinfo": { "verified_claims": [
            { "claims": { "gender": null } },
            { "claims": { "address": { "purpose": "x" } } }
        ] } });
        assert_eq!(bad_purpose(&arr).as_deref(), Some("address"));
    }

    #[test]
    fn pkce_s256() {
        // RFC 7636 appendix B.
        assert!(pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            "short",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    #[test]
    fn redirects_keep_existing_query_and_carry_iss() {
        let u = error_redirect(
            "https://rp.example/cb?x=1",
            Some("st"),
            &OAuthError::login_required("no session"),
            "http://localhost:8080",
        );
        assert_eq!(
            u,
            "https://rp.example/cb?x=1&error=login_required&error_description=no+session&state=st&iss=http%3A%2F%2Flocalhost%3A8080"
        );
    }
}
