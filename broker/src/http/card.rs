//! The card-helper API (docs/card-helper-protocol.md): JSON in, JSON out.

use super::AppState;
use crate::authn::card::{CardLoginError, CardResponse};
use crate::service::card as flow;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

fn card_error(e: &CardLoginError) -> Response {
    let (status, code) = match e {
        CardLoginError::UnknownTransaction => (StatusCode::NOT_FOUND, "unknown_transaction"),
        CardLoginError::ChallengeExpired => (StatusCode::GONE, "challenge_expired"),
        CardLoginError::ChallengeUsed => (StatusCode::CONFLICT, "challenge_used"),
        CardLoginError::Malformed(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        CardLoginError::Certificate(_) => (StatusCode::BAD_REQUEST, "invalid_certificate"),
        CardLoginError::BadSignature => (StatusCode::BAD_REQUEST, "invalid_signature"),
        CardLoginError::NoBasicInformation => (StatusCode::BAD_REQUEST, "invalid_certificate"),
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

pub async fn challenge(State(s): State<AppState>, Path(secret): Path<String>) -> Response {
    match flow::card_challenge(&s, &secret).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => card_error(&e),
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
        Err(e) => return card_error(&e),
    };
    match flow::card_submit(&s, &secret, &resp).await {
        Ok(flow::CardOutcome::Authenticated) => {
            Json(json!({ "status": "authenticated" })).into_response()
        }
        // Identity proofing is needed: GET the link again for the signature challenge.
        Ok(flow::CardOutcome::ProofingRequired) => {
            Json(json!({ "status": "proofing_required", "next": "signature" })).into_response()
        }
        Err(e) => card_error(&e),
    }
}
