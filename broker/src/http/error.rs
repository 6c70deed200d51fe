//! The one place errors become HTTP responses.

use crate::oidc::OAuthError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An OAuth error returned directly (token, introspection, revocation, userinfo, helper API).
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
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
        // Internal detail stays in the log.
        let description = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(code = e.code, detail = %e.description, "server error");
            "internal error".to_string()
        } else {
            e.description.clone()
        };
        let mut res = (
            status,
            Json(json!({ "error": e.code, "error_description": description })),
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
