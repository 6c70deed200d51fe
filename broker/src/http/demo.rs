//! The demo PKI's responder over HTTP (demo mode only): OCSP (`POST /demo-pki/ocsp/{kind}`,
//! `GET /demo-pki/ocsp/{kind}/{request}`) and CRLs (`GET /demo-pki/crl/{kind}`), answered by
//! `pki::demo::ca::DemoCa` over its revocation database.

use crate::pki::CertKind;
use crate::pki::demo::ca::DemoCa;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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
