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

pub async fn challenge(State(s): State<AppState>, Path(secret): Path<String>) -> Response {
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
