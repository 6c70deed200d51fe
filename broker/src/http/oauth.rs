//! OAuth/OIDC endpoints: parse, call `oidc::`, serialize.

use super::pages::Lang;
use super::{ApiError, AppState, SESSION_COOKIE, cookie, form_pairs, set_cookie, tx_cookie_name};
use crate::oidc::OAuthError;
use crate::oidc::token::PresentedCredentials;
use crate::service::authorize::{self as conduct, AuthorizeOutcome};
use crate::service::token;
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;
use std::net::SocketAddr;

/// A JSON document clients may cache for five minutes.
fn cacheable_json(body: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

pub async fn discovery(State(s): State<AppState>) -> Response {
    cacheable_json(s.discovery_json())
}

pub async fn jwks(State(s): State<AppState>) -> Response {
    cacheable_json(s.keys().jwks_json(s.now()))
}

/// The connection's peer address, when the request came over the network (`http::serve`).
pub(super) type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

pub async fn authorize_get(
    State(s): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    authorize(s, peer, headers, q.unwrap_or_default().as_bytes()).await
}

pub async fn authorize_post(
    State(s): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_form(&headers) {
        let lang = Lang::pick(&[], None, &headers);
        return super::error::oauth_page(
            &s,
            lang,
            &OAuthError::invalid_request(
                "POST to /authorize must be application/x-www-form-urlencoded",
            ),
        );
    }
    authorize(s, peer, headers, &body).await
}

async fn authorize(s: AppState, peer: Peer, headers: HeaderMap, raw: &[u8]) -> Response {
    // A parameter that is not UTF-8 cannot be checked or sent back unaltered: refused on a
    // page (its redirect URI is not known to be good, or its state would come back changed).
    let params = match form_pairs(raw) {
        Ok(p) => p,
        Err(e) => {
            let lang = Lang::pick(&[], None, &headers);
            return super::error::oauth_page(&s, lang, &e);
        }
    };
    let source = super::source_addr(&s, peer.map(|Extension(ConnectInfo(a))| a), &headers);
    let ui: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "ui_locales")
        .flat_map(|(_, v)| v.split_whitespace().map(str::to_string))
        .collect();
    let lang = Lang::pick(&ui, None, &headers);
    match conduct::authorize(&s, &params, cookie(&headers, SESSION_COOKIE), source).await {
        Ok(AuthorizeOutcome::Redirect(url)) => Redirect::to(&url).into_response(),
        Ok(AuthorizeOutcome::ErrorPage(e)) => super::error::oauth_page(&s, lang, &e),
        Ok(AuthorizeOutcome::Login {
            tx_id,
            browser_secret,
        }) => with_tx_cookie(&s, &tx_id, &browser_secret, format!("/login/{tx_id}")),
        Ok(AuthorizeOutcome::Consent {
            tx_id,
            browser_secret,
        }) => with_tx_cookie(&s, &tx_id, &browser_secret, format!("/consent/{tx_id}")),
        // The database briefly away (503) or the broker failing (500): on a page, never a
        // redirect.
        Err(e) => super::error::oauth_page(&s, lang, &e),
    }
}

pub(super) fn with_tx_cookie(s: &AppState, tx_id: &str, secret: &str, to: String) -> Response {
    let mut r = Redirect::to(&to).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            s,
            &tx_cookie_name(tx_id),
            secret,
            s.config.lifetimes.transaction,
        ),
    );
    r
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// `Authorization: Basic` credentials, form-url-decoded (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    use base64::Engine;
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    v.to_str()
        .map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?;
    let Some(b64) = super::auth_credentials(headers, "Basic") else {
        return Ok(None);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
    let (id, secret) = raw
        .split_once(':')
        .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((dec(id), dec(secret))))
}

/// Parse a client-authenticated form POST (token, introspect, revoke).
pub(super) fn client_form(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(PresentedCredentials, Vec<(String, String)>), ApiError> {
    if !is_form(headers) {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        )
        .into());
    }
    let basic = basic_credentials(headers).map_err(|e| ApiError {
        error: e,
        challenge: Some("Basic"),
    })?;
    let form = form_pairs(body)?;
    Ok((PresentedCredentials::from_form(basic, &form), form))
}

pub(super) fn client_error(creds: &PresentedCredentials, e: OAuthError) -> ApiError {
    ApiError {
        challenge: (e.code == crate::oidc::ErrorCode::InvalidClient && creds.basic.is_some())
            .then_some("Basic"),
        error: e,
    }
}

pub async fn token(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (creds, form) = client_form(&headers, &body)?;
    let resp = token::token(&s, &creds, &form)
        .await
        .map_err(|e| client_error(&creds, e))?;
    let mut r = Json(resp).into_response();
    r.headers_mut()
        .insert(header::PRAGMA, header::HeaderValue::from_static("no-cache"));
    Ok(r)
}

/// `POST /par` (RFC 9126 §2): 201 with the `request_uri`.
pub async fn par(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (creds, form) = client_form(&headers, &body)?;
    let pushed = crate::service::par::push(&s, &creds, &form)
        .await
        .map_err(|e| client_error(&creds, e))?;
    let mut r = (StatusCode::CREATED, Json(pushed)).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    super::auth_credentials(headers, "Bearer")
}

fn bearer_error(e: OAuthError) -> ApiError {
    ApiError {
        challenge: Some("Bearer"),
        error: e,
    }
}

pub async fn userinfo_get(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let t = bearer(&headers)
        .ok_or_else(|| bearer_error(OAuthError::invalid_token("no access token")))?;
    Ok(Json(token::userinfo(&s, t).await.map_err(bearer_error)?))
}

/// POST /userinfo: the token in the header, or as `access_token` in a form body (RFC 6750 §2.2).
pub async fn userinfo_post(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let form = if is_form(&headers) {
        form_pairs(&body).map_err(bearer_error)?
    } else {
        vec![]
    };
    let from_body = form
        .iter()
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.as_str());
    let t = match (bearer(&headers), from_body) {
        (Some(_), Some(_)) => {
            return Err(bearer_error(OAuthError::invalid_request(
                "the access token was sent in more than one way",
            )));
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return Err(bearer_error(OAuthError::invalid_token("no access token"))),
    };
    Ok(Json(token::userinfo(&s, t).await.map_err(bearer_error)?))
}

fn form_get<'a>(form: &'a [(String, String)], k: &str) -> Option<&'a str> {
    form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

pub async fn introspect(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (creds, form) = client_form(&headers, &body)?;
    let client = token::authenticate_client(&s, &creds)
        .await
        .map_err(|e| client_error(&creds, e))?;
    let t = form_get(&form, "token");
    Ok(Json(
        token::introspect(&s, &client, t)
            .await
            .map_err(|e| client_error(&creds, e))?,
    ))
}

pub async fn revoke(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let (creds, form) = client_form(&headers, &body)?;
    let client = token::authenticate_client(&s, &creds)
        .await
        .map_err(|e| client_error(&creds, e))?;
    let t =
        form_get(&form, "token").ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
    token::revoke(&s, &client, t, form_get(&form, "token_type_hint")).await?;
    Ok(StatusCode::OK)
}
