//! OAuth 2.0 / OpenID Connect errors: one type, mapped to the wire in `http/error.rs`.

/// An error in OAuth form (`error`, `error_description`), with the HTTP status it travels with
/// when it is returned directly rather than by redirect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: &'static str,
    pub description: String,
    pub status: u16,
}

macro_rules! ctor {
    ($name:ident, $code:literal, $status:literal) => {
        pub fn $name(description: impl Into<String>) -> OAuthError {
            OAuthError {
                code: $code,
                description: description.into(),
                status: $status,
            }
        }
    };
}

impl OAuthError {
    ctor!(invalid_request, "invalid_request", 400);
    ctor!(invalid_client, "invalid_client", 401);
    ctor!(invalid_grant, "invalid_grant", 400);
    ctor!(unauthorized_client, "unauthorized_client", 400);
    ctor!(unsupported_grant_type, "unsupported_grant_type", 400);
    ctor!(unsupported_response_type, "unsupported_response_type", 400);
    ctor!(invalid_scope, "invalid_scope", 400);
    ctor!(access_denied, "access_denied", 400);
    ctor!(login_required, "login_required", 400);
    ctor!(consent_required, "consent_required", 400);
    ctor!(interaction_required, "interaction_required", 400);
    ctor!(request_not_supported, "request_not_supported", 400);
    ctor!(
        unmet_authentication_requirements,
        "unmet_authentication_requirements",
        400
    );
    ctor!(request_uri_not_supported, "request_uri_not_supported", 400);
    ctor!(invalid_token, "invalid_token", 401);
    ctor!(unsupported_token_type, "unsupported_token_type", 400);
    ctor!(server_error, "server_error", 500);
    ctor!(temporarily_unavailable, "temporarily_unavailable", 503);
}
