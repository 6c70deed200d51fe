//! `POST /api/v1/signatures/verify` and `/verify-batch` (within each client's rate), and the
//! OpenAPI document.

use super::error::ApiRefusal;
use super::{ApiError, AppState};
use crate::oidc::OAuthError;
use crate::registry::Client;
use crate::service::signatures::{self as service, ItemRequest};
use crate::service::token::check_access_token;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

type Limiter = governor::DefaultDirectRateLimiter;

/// Per-client token buckets (GCRA), created on first use with the client's rate.
#[derive(Default)]
pub struct RateLimits {
    buckets: std::sync::Mutex<std::collections::HashMap<(String, u32), Arc<Limiter>>>,
}

impl RateLimits {
    /// May `client` make one more request at `per_second`?
    pub fn allow(&self, client: &str, per_second: u32) -> bool {
        let rate =
            std::num::NonZeroU32::new(per_second.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        let l = self
            .buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((client.to_string(), rate.get()))
            .or_insert_with(|| {
                Arc::new(governor::RateLimiter::direct(governor::Quota::per_second(
                    rate,
                )))
            })
            .clone();
        l.check().is_ok()
    }
}

fn bearer_error(e: OAuthError) -> ApiError {
    ApiError {
        challenge: Some("Bearer"),
        error: e,
    }
}

/// The caller: a valid access token with scope `signatures:verify`, within its rate.
async fn caller(s: &AppState, headers: &HeaderMap) -> Result<Arc<Client>, Response> {
    let token = super::auth_credentials(headers, "Bearer").ok_or_else(|| {
        bearer_error(OAuthError::invalid_token("no access token")).into_response()
    })?;
    let t = check_access_token(s, token)
        .await
        .map_err(|e| bearer_error(e).into_response())?;
    let has_scope = t.claims["scope"]
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .any(|x| x == "signatures:verify");
    if !has_scope {
        return Err(ApiRefusal::InsufficientScope("signatures:verify").into_response());
    }
    let client = s
        .registry()
        .get(t.claims["client_id"].as_str().unwrap_or_default())
        .cloned()
        .ok_or_else(|| {
            bearer_error(OAuthError::invalid_token(
                "the client is no longer registered",
            ))
            .into_response()
        })?;
    let rate = client
        .api_rate_per_second
        .unwrap_or(s.policy().signatures.rate_per_second);
    if !s.rate_limits.allow(&client.client_id, rate) {
        return Err(ApiRefusal::RateLimited { per_second: rate }.into_response());
    }
    Ok(client)
}

fn invalid_request(msg: String) -> Response {
    ApiRefusal::InvalidRequest(msg).into_response()
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// One verification: JSON (`cms`/`content` or `data`/`signature`/`certificate`), or a CMS
/// body (`application/cms`, `application/pkcs7-mime`; DER, base64 or PEM), attached content.
pub async fn verify(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let client = match caller(&s, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let ct = content_type(&headers);
    let item = if ct.starts_with("application/json") {
        match serde_json::from_slice::<ItemRequest>(&body) {
            Ok(i) => i.into_input(),
            Err(e) => return invalid_request(format!("body is not the expected JSON: {e}")),
        }
    } else if ct.starts_with("application/cms")
        || ct.starts_with("application/pkcs7-mime")
        || ct.starts_with("application/octet-stream")
    {
        crate::signatures::decode_cms(&body).map(|cms| crate::signatures::Input::Cms {
            cms,
            detached_content: None,
        })
    } else {
        return invalid_request(format!(
            "Content-Type `{ct}` is not application/json, application/cms or application/pkcs7-mime"
        ));
    };
    let (answer, record) = service::verify_one(&s, &client, item).await;
    if let Err(e) = s
        .store
        .insert_verifications(std::slice::from_ref(&record))
        .await
    {
        tracing::error!(error = %e, "cannot record the verification");
        // Nothing is answered unrecorded: 503 when the database is away, else 500.
        return ApiError::from(OAuthError::from(e)).into_response();
    }
    Json(answer).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    items: Vec<serde_json::Value>,
}

/// Many verifications in one request (one database write for all their records).
pub async fn verify_batch(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let client = match caller(&s, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !content_type(&headers).starts_with("application/json") {
        return invalid_request("the batch body must be application/json".into());
    }
    let batch: Batch = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return invalid_request(format!("body is not {{\"items\": [...]}}: {e}")),
    };
    let max = s.policy().signatures.max_batch;
    if batch.items.is_empty() || batch.items.len() > max {
        return invalid_request(format!(
            "items must hold 1 to {max} entries, not {}",
            batch.items.len()
        ));
    }
    let mut answers = Vec::with_capacity(batch.items.len());
    let mut records = Vec::with_capacity(batch.items.len());
    for v in batch.items {
        let item = serde_json::from_value::<ItemRequest>(v)
            .map_err(|e| crate::signatures::Failure {
                code: "invalid_request",
                message: format!("item is not the expected JSON: {e}"),
            })
            .and_then(ItemRequest::into_input);
        let (a, r) = service::verify_one(&s, &client, item).await;
        answers.push(a);
        records.push(r);
    }
    if let Err(e) = s.store.insert_verifications(&records).await {
        tracing::error!(error = %e, "cannot record the verifications");
        // Nothing is answered unrecorded: 503 when the database is away, else 500.
        return ApiError::from(OAuthError::from(e)).into_response();
    }
    Json(json!({ "results": answers })).into_response()
}

/// GET /api/v1/openapi.json
pub async fn openapi() -> Response {
    let mut r = include_str!("openapi.json").into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
