//! The operator's revocation-cache purge (`POST /admin/revocation/purge`) and /metrics.

use super::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    anchor: Option<String>,
    serial: Option<String>,
    #[serde(default)]
    all: bool,
}

/// POST /admin/revocation/purge — the operator forgets a cached status at once.
pub async fn purge(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    use super::error::ApiRefusal;
    let invalid = |m: String| ApiRefusal::InvalidRequest(m).into_response();
    let presented = super::auth_credentials(&headers, "Bearer").unwrap_or("");
    if !s.admin_token_matches(presented) {
        return ApiRefusal::AdminTokenRequired.into_response();
    }
    let req: PurgeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return invalid(e.to_string()),
    };
    let target = match (req.all, req.anchor, req.serial) {
        (true, None, None) => crate::service::cluster::PurgeTarget::All,
        (false, Some(anchor), Some(serial)) => {
            if s.anchor_der(&anchor).is_none() {
                return invalid(format!("no trust anchor labelled `{anchor}`"));
            }
            let Ok(serial_bytes) = hex::decode(serial.trim_start_matches("0x")) else {
                return invalid("serial must be hexadecimal".into());
            };
            crate::service::cluster::PurgeTarget::One {
                anchor,
                serial: hex::encode(serial_bytes),
            }
        }
        _ => {
            return invalid("give either {\"all\": true} or {\"anchor\", \"serial\"}".into());
        }
    };
    // Recorded for every process first; if that fails nothing is purged anywhere.
    match crate::service::cluster::purge_revocation(&s, &target).await {
        Ok(had) => {
            tracing::warn!(?target, had, "revocation cache purged by the operator");
            match target {
                crate::service::cluster::PurgeTarget::All => {
                    Json(json!({"purged": "all"})).into_response()
                }
                crate::service::cluster::PurgeTarget::One { .. } => {
                    Json(json!({"purged": had})).into_response()
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "revocation purge could not be recorded");
            ApiRefusal::Unavailable(
                "the purge could not be recorded for every broker process; nothing was purged",
            )
            .into_response()
        }
    }
}

/// GET /metrics — Prometheus text format.
pub async fn metrics() -> Response {
    let h = crate::app::metrics_handle();
    h.run_upkeep();
    let mut r = h.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}
