//! OAuth 2.0 / OpenID Connect errors: one type, with no HTTP status of its own — how each
//! travels (a redirect, a page, a JSON answer with its status) is decided in the server's
//! `http/error.rs`.

/// The `error` codes the broker uses (RFC 6749 §4.1.2.1, §5.2; RFC 6750 §3.1; RFC 7009 §2.2.1;
/// OpenID Connect Core §3.1.2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    LoginRequired,
    ConsentRequired,
    InteractionRequired,
    RequestNotSupported,
    UnmetAuthenticationRequirements,
    RequestUriNotSupported,
    /// RFC 9101 §7: the `request_uri` is unknown, used, expired or another client's.
    InvalidRequestUri,
    /// RFC 9101 §7: the request object is not valid.
    InvalidRequestObject,
    InvalidToken,
    UnsupportedTokenType,
    ServerError,
    TemporarilyUnavailable,
    /// RFC 8628 §3.5: the device's user has not answered yet.
    AuthorizationPending,
    /// RFC 8628 §3.5: polling too fast; the interval grows by 5 seconds.
    SlowDown,
    /// RFC 8628 §3.5: the device code expired.
    ExpiredToken,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "invalid_request",
            InvalidClient => "invalid_client",
            InvalidGrant => "invalid_grant",
            UnauthorizedClient => "unauthorized_client",
            UnsupportedGrantType => "unsupported_grant_type",
            UnsupportedResponseType => "unsupported_response_type",
            InvalidScope => "invalid_scope",
            AccessDenied => "access_denied",
            LoginRequired => "login_required",
            ConsentRequired => "consent_required",
            InteractionRequired => "interaction_required",
            RequestNotSupported => "request_not_supported",
            UnmetAuthenticationRequirements => "unmet_authentication_requirements",
            RequestUriNotSupported => "request_uri_not_supported",
            InvalidRequestUri => "invalid_request_uri",
            InvalidRequestObject => "invalid_request_object",
            InvalidToken => "invalid_token",
            UnsupportedTokenType => "unsupported_token_type",
            ServerError => "server_error",
            TemporarilyUnavailable => "temporarily_unavailable",
            AuthorizationPending => "authorization_pending",
            SlowDown => "slow_down",
            ExpiredToken => "expired_token",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error in OAuth form (`error`, `error_description`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
}

macro_rules! ctor {
    ($name:ident, $code:ident) => {
        pub fn $name(description: impl Into<String>) -> OAuthError {
            OAuthError {
                code: ErrorCode::$code,
                description: description.into(),
            }
        }
    };
}

impl OAuthError {
    ctor!(invalid_request, InvalidRequest);
    ctor!(invalid_client, InvalidClient);
    ctor!(invalid_grant, InvalidGrant);
    ctor!(unauthorized_client, UnauthorizedClient);
    ctor!(unsupported_grant_type, UnsupportedGrantType);
    ctor!(unsupported_response_type, UnsupportedResponseType);
    ctor!(invalid_scope, InvalidScope);
    ctor!(access_denied, AccessDenied);
    ctor!(login_required, LoginRequired);
    ctor!(consent_required, ConsentRequired);
    ctor!(interaction_required, InteractionRequired);
    ctor!(request_not_supported, RequestNotSupported);
    ctor!(
        unmet_authentication_requirements,
        UnmetAuthenticationRequirements
    );
    ctor!(request_uri_not_supported, RequestUriNotSupported);
    ctor!(invalid_request_uri, InvalidRequestUri);
    ctor!(invalid_request_object, InvalidRequestObject);
    ctor!(invalid_token, InvalidToken);
    ctor!(unsupported_token_type, UnsupportedTokenType);
    ctor!(server_error, ServerError);
    ctor!(temporarily_unavailable, TemporarilyUnavailable);
    ctor!(authorization_pending, AuthorizationPending);
    ctor!(slow_down, SlowDown);
    ctor!(expired_token, ExpiredToken);
}
