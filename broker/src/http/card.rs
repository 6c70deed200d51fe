//! The card-helper API (docs/card-helper-protocol.md): JSON in, JSON out.

use super::AppState;
use crate::authn::card::{CardLoginError, CardResponse};
use crate::service::card as conduct;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

/// `GET` of a helper link. A helper asks for JSON (the challenge); a phone's browser that
/// opened the link because no card app took it (it asks for HTML) gets a page saying so.
pub async fn challenge(
    State(s): State<AppState>,
    Path(secret): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let wants_html = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html {
        let lang = super::pages::Lang::pick(&[], None, &headers);
        return super::pages::render(
            &s,
            lang,
            axum::http::StatusCode::OK,
            "helper_link.html",
            minijinja::context! { install_url => s.config.card_app.install_url },
        );
    }
    match conduct::card_challenge(&s, &secret).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => super::error::card(&e),
    }
}

/// The helper's answer: base64 (standard or url-safe) DER certificate and signature.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    certificate: String,
    signature: String,
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, CardLoginError> {
    crate::clock::b64_any(s)
        .ok_or_else(|| CardLoginError::Malformed(format!("{what} is not base64")))
}

pub async fn respond(
    State(s): State<AppState>,
    Path(secret): Path<String>,
    body: Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<Answer>(&body)
        .map_err(|e| CardLoginError::Malformed(format!("body is not the expected JSON: {e}")))
        .and_then(|a| {
            Ok(CardResponse {
                certificate_der: b64(&a.certificate, "certificate")?,
                signature: b64(&a.signature, "signature")?,
            })
        });
    let resp = match parsed {
        Ok(r) => r,
        Err(e) => return super::error::card(&e),
    };
    match conduct::card_submit(&s, &secret, &resp).await {
        Ok(conduct::CardOutcome::Authenticated) => {
            Json(json!({ "status": "authenticated" })).into_response()
        }
        // Identity proofing is needed: GET the link again for the signature challenge.
        Ok(conduct::CardOutcome::ProofingRequired) => {
            Json(json!({ "status": "proofing_required", "next": "signature" })).into_response()
        }
        Err(e) => super::error::card(&e),
    }
}

/// `/.well-known/apple-app-site-association`: the iOS card apps that open helper links.
pub async fn apple_app_site_association(State(s): State<AppState>) -> Response {
    let ids = &s.config.card_app.apple_app_ids;
    if ids.is_empty() {
        return super::error::not_found();
    }
    Json(json!({
        "applinks": {
            "details": [{ "appIDs": ids, "components": [{ "/": "/card/v1/tx/*" }] }]
        }
    }))
    .into_response()
}

/// `/.well-known/assetlinks.json`: the Android card apps that open helper links.
pub async fn assetlinks(State(s): State<AppState>) -> Response {
    let apps = &s.config.card_app.android;
    if apps.is_empty() {
        return super::error::not_found();
    }
    let list: Vec<_> = apps
        .iter()
        .map(|a| {
            json!({
                "relation": ["delegate_permission/common.handle_all_urls"],
                "target": {
                    "namespace": "android_app",
                    "package_name": a.package,
                    "sha256_cert_fingerprints": a.sha256_cert_fingerprints,
                }
            })
        })
        .collect();
    Json(list).into_response()
}
