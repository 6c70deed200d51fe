//! The demo PKI's OCSP responder and CRL publisher (demo mode, and `broker certs
//! ocsp-responder`), the operator's cache purge, and /metrics.

use super::AppState;
use crate::pki::CertKind;
use crate::revocation::demo_ca::DemoCa;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// What the demo responder needs: the demo CA and a clock.
#[derive(Clone)]
pub struct DemoResponder {
    pub ca: Arc<DemoCa>,
    pub clock: Arc<dyn crate::clock::Clock>,
}

fn kind(s: &str) -> Option<CertKind> {
    match s {
        "user_auth" => Some(CertKind::UserAuth),
        "signature" => Some(CertKind::Signature),
        _ => None,
    }
}

fn ocsp_body(bytes: Vec<u8>) -> Response {
    let mut r = bytes.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/ocsp-response"),
    );
    r
}

async fn ocsp_post(State(d): State<DemoResponder>, Path(k): Path<String>, body: Bytes) -> Response {
    let Some(k) = kind(&k) else {
        return super::error::not_found();
    };
    ocsp_body(d.ca.ocsp_response(k, &body, d.clock.now()))
}

/// RFC 6960 appendix A.1: GET {url}/{url-encoding of base64 of the DER request}.
async fn ocsp_get(
    State(d): State<DemoResponder>,
    Path((k, req)): Path<(String, String)>,
) -> Response {
    use base64::Engine;
    let Some(k) = kind(&k) else {
        return super::error::not_found();
    };
    let der = base64::engine::general_purpose::STANDARD
        .decode(req.trim())
        .unwrap_or_default();
    ocsp_body(d.ca.ocsp_response(k, &der, d.clock.now()))
}

async fn crl(State(d): State<DemoResponder>, Path(k): Path<String>) -> Response {
    let Some(k) = kind(&k) else {
        return super::error::not_found();
    };
    match d.ca.crl(k, d.clock.now()) {
        Ok(der) => {
            let mut r = der.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/pkix-crl"),
            );
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "demo CRL");
            super::error::internal()
        }
    }
}

/// Routes of the demo responder, mounted under `/demo-pki`.
pub fn demo_routes(d: DemoResponder) -> Router {
    Router::new()
        .route("/demo-pki/ocsp/{kind}", post(ocsp_post))
        .route("/demo-pki/ocsp/{kind}/{req}", get(ocsp_get))
        .route("/demo-pki/crl/{kind}", get(crl))
        .with_state(d)
}

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
