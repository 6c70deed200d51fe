//! The one place errors become HTTP responses: every error status the broker answers, and the
//! shape of each error body, is decided here. The cores' errors carry no status; handlers pass
//! them here. Internal detail (a 500's cause) goes to the log, never to the client.

use super::pages::{self, Lang};
use crate::app::Broker;
use crate::authn::card::CardLoginError;
use crate::authn::passkey::PasskeyError;
use crate::oidc::{ErrorCode, OAuthError};
use crate::service::login::TxError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// How an OAuth error travels when it is answered directly rather than by redirect
/// (RFC 6749 §5.2: 401 for client authentication, RFC 6750 §3.1: 401 for a bad token).
pub fn oauth_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// What a client may be told of `e` answered with `status`: not a 500's detail.
fn public_description(e: &OAuthError, status: StatusCode) -> String {
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(code = %e.code, detail = %e.description, "server error");
        "internal error".to_string()
    } else {
        e.description.clone()
    }
}

/// An OAuth error answered directly in JSON (token, introspection, revocation, userinfo, the
/// signature API's bearer check).
#[derive(Debug)]
pub struct ApiError {
    pub error: OAuthError,
    /// `WWW-Authenticate` scheme to announce on 401 (`Basic` or `Bearer`).
    pub challenge: Option<&'static str>,
}

impl From<OAuthError> for ApiError {
    fn from(error: OAuthError) -> Self {
        ApiError {
            error,
            challenge: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.error;
        let status = oauth_status(e.code);
        let description = public_description(&e, status);
        let mut res = (
            status,
            Json(json!({ "error": e.code.as_str(), "error_description": description })),
        )
            .into_response();
        if let Some(scheme) = self.challenge {
            let v = if scheme == "Bearer" {
                format!(
                    "Bearer error=\"{}\", error_description=\"{}\"",
                    e.code,
                    description.replace('"', "'")
                )
            } else {
                format!("{scheme} realm=\"broker\"")
            };
            if let Ok(v) = HeaderValue::from_str(&v) {
                res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        res
    }
}

/// The refusals of the broker's own JSON APIs beyond OAuth's: the signature API, the
/// operator's purge.
#[derive(Debug)]
pub enum ApiRefusal {
    /// The request is not what the API takes (400 `invalid_request`).
    InvalidRequest(String),
    /// The token lacks the API's scope (403, RFC 6750 §3.1).
    InsufficientScope(&'static str),
    /// The client is over its rate (429, `Retry-After: 1`).
    RateLimited { per_second: u32 },
    /// The operator's admin token is missing or wrong (401).
    AdminTokenRequired,
    /// The store is away; the request may be retried (503).
    Unavailable(&'static str),
}

impl IntoResponse for ApiRefusal {
    fn into_response(self) -> Response {
        let (status, code, description) = match &self {
            ApiRefusal::InvalidRequest(m) => {
                (StatusCode::BAD_REQUEST, "invalid_request", m.clone())
            }
            ApiRefusal::InsufficientScope(scope) => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("the token lacks scope {scope}"),
            ),
            ApiRefusal::RateLimited { per_second } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("more than {per_second} requests per second"),
            ),
            ApiRefusal::AdminTokenRequired => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "admin token required".to_string(),
            ),
            ApiRefusal::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                m.to_string(),
            ),
        };
        let mut r = (
            status,
            Json(json!({"error": code, "error_description": description})),
        )
            .into_response();
        match self {
            ApiRefusal::InsufficientScope(scope) => {
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{scope}\""
                )) {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
            }
            ApiRefusal::RateLimited { .. } => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        r
    }
}

/// A card-helper API error (docs/card-helper-protocol.md).
pub fn card(e: &CardLoginError) -> Response {
    let (status, code) = match e {
        CardLoginError::UnknownTransaction => (StatusCode::NOT_FOUND, "unknown_transaction"),
        CardLoginError::ChallengeExpired => (StatusCode::GONE, "challenge_expired"),
        CardLoginError::ChallengeUsed => (StatusCode::CONFLICT, "challenge_used"),
        CardLoginError::Malformed(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        CardLoginError::Certificate(_) | CardLoginError::NoBasicInformation => {
            (StatusCode::BAD_REQUEST, "invalid_certificate")
        }
        CardLoginError::BadSignature => (StatusCode::BAD_REQUEST, "invalid_signature"),
        CardLoginError::Revoked { .. } => (StatusCode::FORBIDDEN, "certificate_revoked"),
        CardLoginError::RevocationUnknown => (StatusCode::FORBIDDEN, "revocation_unknown"),
        CardLoginError::RevocationUnavailable(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "revocation_unavailable")
        }
        CardLoginError::LinkRefused(_) => (StatusCode::FORBIDDEN, "certificates_not_linked"),
        CardLoginError::LinkConflict => (StatusCode::CONFLICT, "link_conflict"),
        CardLoginError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        CardLoginError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
    };
    (
        status,
        Json(json!({ "error": code, "error_description": e.to_string() })),
    )
        .into_response()
}

/// A passkey ceremony's or the account page's error: status and code.
fn passkey_status(e: &PasskeyError) -> (StatusCode, &'static str) {
    use PasskeyError::*;
    match e {
        Disabled => (StatusCode::NOT_FOUND, "passkeys_disabled"),
        NoSession => (StatusCode::UNAUTHORIZED, "login_required"),
        BelowEnrolLevel { .. } => (StatusCode::FORBIDDEN, "card_login_required"),
        NotProofed => (StatusCode::FORBIDDEN, "not_proofed"),
        TooMany { .. } => (StatusCode::CONFLICT, "too_many_passkeys"),
        UnknownCeremony => (StatusCode::BAD_REQUEST, "unknown_ceremony"),
        UnknownCredential => (StatusCode::UNAUTHORIZED, "unknown_passkey"),
        AlreadyRegistered => (StatusCode::CONFLICT, "passkey_already_registered"),
        Suspended { .. } => (StatusCode::FORBIDDEN, "passkey_suspended"),
        CardRevoked => (StatusCode::FORBIDDEN, "card_revoked"),
        CardExpired => (StatusCode::FORBIDDEN, "card_expired"),
        CardUnchecked(_) => (StatusCode::SERVICE_UNAVAILABLE, "revocation_unavailable"),
        Refused(_) => (StatusCode::BAD_REQUEST, "passkey_refused"),
        CounterRegressed => (StatusCode::FORBIDDEN, "counter_regressed"),
        NeedsCard(_) => (StatusCode::FORBIDDEN, "card_required"),
        Malformed(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        NotPending => (StatusCode::CONFLICT, "login_not_pending"),
        Internal => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
    }
}

/// A passkey ceremony's error, in JSON (the page's script shows the description).
pub fn passkey(e: &PasskeyError) -> Response {
    let (status, code) = passkey_status(e);
    (
        status,
        Json(json!({ "error": code, "error_description": e.to_string() })),
    )
        .into_response()
}

/// The account page's error, on the error page.
pub fn passkey_page(b: &Broker, lang: Lang, e: &PasskeyError) -> Response {
    let (status, code) = passkey_status(e);
    pages::error_page(b, lang, status, code, &e.to_string())
}

/// A browser step of a login: the same status and code on the page and in the status poll.
fn tx(e: &TxError) -> (StatusCode, &'static str) {
    match e {
        TxError::Gone => (StatusCode::GONE, "transaction_gone"),
        TxError::WrongBrowser => (StatusCode::FORBIDDEN, "wrong_browser"),
        TxError::NotAuthenticated => (StatusCode::CONFLICT, "not_authenticated"),
        TxError::BadCsrf => (StatusCode::FORBIDDEN, "bad_csrf"),
        TxError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        TxError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
    }
}

/// A browser step's error, on the error page.
pub fn tx_page(b: &Broker, lang: Lang, e: &TxError) -> Response {
    let (status, code) = tx(e);
    pages::error_page(b, lang, status, code, &e.to_string())
}

/// A browser step's error, to the login page's status poll.
pub fn tx_json(e: &TxError) -> Response {
    let (status, code) = tx(e);
    (
        status,
        Json(json!({"error": code, "error_description": e.to_string()})),
    )
        .into_response()
}

/// An OAuth error shown on the error page (an authorization request that cannot be sent back to
/// a redirect URI, a malformed form): 503 when the broker is briefly away (retried after
/// `Retry-After`), 500 without detail for the broker's own failure, else 400.
pub fn oauth_page(b: &Broker, lang: Lang, e: &OAuthError) -> Response {
    let status = match e.code {
        ErrorCode::ServerError | ErrorCode::TemporarilyUnavailable => oauth_status(e.code),
        _ => StatusCode::BAD_REQUEST,
    };
    let description = public_description(e, status);
    pages::error_page(b, lang, status, e.code.as_str(), &description)
}

/// Nothing here (an unknown path segment of the demo responder).
pub fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

/// The broker failed where no OAuth or page form applies (a demo CRL, a page that cannot be
/// rendered); the detail is in the log.
pub fn internal() -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// A request with a body that was not received and answered within `limits.request_timeout`
/// (the listener's); the connection is not reused, its body may be half read.
pub fn request_timeout() -> Response {
    (
        StatusCode::REQUEST_TIMEOUT,
        [(header::CONNECTION, "close")],
        Json(json!({
            "error": "request_timeout",
            "error_description": "the request took too long to arrive or to answer",
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_errors_travel_with_the_status_their_rfcs_give() {
        use ErrorCode::*;
        for (code, status) in [
            (InvalidClient, 401),
            (InvalidToken, 401),
            (ServerError, 500),
            (TemporarilyUnavailable, 503),
            (InvalidRequest, 400),
            (InvalidGrant, 400),
            (UnauthorizedClient, 400),
            (UnsupportedTokenType, 400),
        ] {
            assert_eq!(oauth_status(code).as_u16(), status, "{code}");
        }
    }

    /// The status poll and the page say the same of a browser step's error (they once
    /// disagreed: 409 against 500, 403 against 500).
    #[test]
    fn a_browser_steps_error_has_one_status() {
        for e in [
            TxError::Gone,
            TxError::WrongBrowser,
            TxError::NotAuthenticated,
            TxError::BadCsrf,
            TxError::Internal,
            TxError::Unavailable,
        ] {
            assert_eq!(tx_json(&e).status(), tx(&e).0, "{e:?}");
        }
        assert_eq!(tx(&TxError::NotAuthenticated).0, StatusCode::CONFLICT);
        assert_eq!(tx(&TxError::BadCsrf).0, StatusCode::FORBIDDEN);
    }

    #[test]
    fn a_server_errors_detail_never_leaves() {
        let r = ApiError::from(OAuthError::server_error(
            "database file /var/lib/x is locked",
        ))
        .into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let r = ApiError::from(OAuthError::temporarily_unavailable("retry shortly"));
        assert_eq!(
            public_description(&r.error, oauth_status(r.error.code)),
            "retry shortly"
        );
        assert_eq!(
            public_description(
                &OAuthError::server_error("/var/lib/x"),
                StatusCode::INTERNAL_SERVER_ERROR
            ),
            "internal error"
        );
    }
}
