//! OpenID Provider metadata (OIDC Discovery 1.0 §3, RFC 8414, RFC 9207).

use crate::app::Broker;
use crate::registry::{SUPPORTED_CLAIMS, SUPPORTED_SCOPES};
use serde_json::{Value, json};

pub fn metadata(b: &Broker) -> Value {
    let iss = b.issuer();
    let policy = b.policy();
    let auth_methods = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none",
    ];
    let mut claims: Vec<&str> = vec![
        "sub",
        "iss",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "at_hash",
    ];
    claims.extend(SUPPORTED_CLAIMS.iter().filter(|c| **c != "verified_claims"));
    json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "jwks_uri": format!("{iss}/jwks"),
        "introspection_endpoint": format!("{iss}/introspect"),
        "revocation_endpoint": format!("{iss}/revoke"),
        "scopes_supported": SUPPORTED_SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["pairwise", "public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256", "PS256"],
        "userinfo_signing_alg_values_supported": [],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "PS256", "RS256", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": &auth_methods[..3],
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": claims,
        "claims_parameter_supported": true,
        "acr_values_supported": policy.acr_values(),
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "ui_locales_supported": ["ja", "en"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "require_request_uri_registration": false,
    })
}
