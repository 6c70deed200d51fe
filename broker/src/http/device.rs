//! The device authorization grant over HTTP (RFC 8628): the device's `/device_authorization`,
//! and the pages where a person types the user code, confirms, and comes back after the login.
//! Parse, call `service::device`, render; errors through `http::error`.

use super::oauth::{Peer, client_error, client_form, with_tx_cookie};
use super::pages::{self, Lang};
use super::{AppState, SESSION_COOKIE, cookie, form_pairs, set_cookie};
use crate::oidc::device::display_user_code;
use crate::service::authorize::AuthorizeOutcome;
use crate::service::device::{self as conduct, Lookup, Settled};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Extension, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use std::collections::HashMap;

/// The double-submit cookie of the confirmation form.
const CSRF_COOKIE: &str = "broker_device_csrf";

fn device_cookie(id: &str) -> String {
    format!("broker_device_{id}")
}

/// `POST /device_authorization` (RFC 8628 §3.1–3.2).
pub async fn device_authorization(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, super::ApiError> {
    let (creds, form) = client_form(&headers, &body)?;
    let r = conduct::authorize_device(&s, &creds, &form)
        .await
        .map_err(|e| client_error(&creds, e))?;
    let mut r = Json(r).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

fn page(s: &AppState, lang: Lang, status: StatusCode, ctx: minijinja::Value) -> Response {
    let action = format!("{}/device", s.issuer());
    pages::render(
        s,
        lang,
        status,
        "device.html",
        context! { action => action, ..ctx },
    )
}

/// The code-entry page, with what went wrong (`error` key of the catalogue), if anything.
fn entry(
    s: &AppState,
    lang: Lang,
    typed: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    page(
        s,
        lang,
        status,
        context! {
            mode => "enter",
            typed => typed,
            error => error.map(|k| pages::text(lang, k)),
        },
    )
}

/// What a typed code found, as a page: the confirmation (with its CSRF cookie), or the entry
/// page again with why not.
async fn show(s: &AppState, lang: Lang, typed: &str, source: Option<std::net::IpAddr>) -> Response {
    match conduct::lookup(s, typed, source).await {
        Ok(Lookup::Found(g, client)) => {
            let csrf = crate::clock::random_token();
            let requested_at = time::OffsetDateTime::from_unix_timestamp(g.created_at)
                .ok()
                .and_then(|t| {
                    t.format(time::macros::format_description!(
                        "[year]-[month]-[day] [hour]:[minute] UTC"
                    ))
                    .ok()
                })
                .unwrap_or_default();
            let mut r = page(
                s,
                lang,
                StatusCode::OK,
                context! {
                    mode => "confirm",
                    rp_name => if lang == Lang::Ja { &client.display_name_ja } else { &client.display_name },
                    user_code => display_user_code(&g.user_code),
                    requested_at => requested_at,
                    csrf => csrf,
                },
            );
            r.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(s, CSRF_COOKIE, &csrf, s.config.lifetimes.device_code),
            );
            r
        }
        Ok(Lookup::NotFound) => {
            // Shown back to be corrected: a code is nine characters, so no more than 32.
            let typed: String = typed.chars().take(32).collect();
            entry(
                s,
                lang,
                &typed,
                Some("device_not_found"),
                StatusCode::NOT_FOUND,
            )
        }
        Ok(Lookup::TooManyAttempts) => entry(
            s,
            lang,
            "",
            Some("device_too_many"),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Err(e) => super::error::oauth_page(s, lang, &e),
    }
}

/// `GET /device[?user_code=…]` (`verification_uri`, `verification_uri_complete`).
pub async fn device_page(
    State(s): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let lang = Lang::pick(&[], q.get("lang").map(String::as_str), &headers);
    match q.get("user_code").filter(|c| !c.is_empty()) {
        Some(code) => {
            let source = super::source_addr(&s, peer.map(|Extension(ConnectInfo(a))| a), &headers);
            show(&s, lang, code, source).await
        }
        None => entry(&s, lang, "", None, StatusCode::OK),
    }
}

/// `POST /device`: `action=lookup` (the entry form) or `action=approve` (the confirmation).
pub async fn device_post(
    State(s): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lang = Lang::pick(&[], None, &headers);
    let form = match form_pairs(&body) {
        Ok(f) => f,
        Err(e) => return super::error::oauth_page(&s, lang, &e),
    };
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let source = super::source_addr(&s, peer.map(|Extension(ConnectInfo(a))| a), &headers);
    let typed = get("user_code").unwrap_or("");
    let approve = match get("action") {
        Some("approve") => true,
        Some("deny") => false,
        _ => return show(&s, lang, typed, source).await,
    };
    // The confirmation form comes from this browser's confirmation page.
    let csrf_ok = cookie(&headers, CSRF_COOKIE).is_some_and(|c| {
        !c.is_empty() && crate::clock::ct_eq(c.as_bytes(), get("csrf").unwrap_or("").as_bytes())
    });
    if !csrf_ok {
        return super::error::tx_page(&s, lang, &crate::service::login::TxError::BadCsrf);
    }
    let (g, client) = match conduct::lookup(&s, typed, source).await {
        Ok(Lookup::Found(g, c)) => (g, c),
        Ok(_) => return show(&s, lang, typed, source).await,
        Err(e) => return super::error::oauth_page(&s, lang, &e),
    };
    if !approve {
        return match conduct::deny(&s, &g).await {
            Ok(true) => page(
                &s,
                lang,
                StatusCode::OK,
                context! { mode => "denied", detail => "" },
            ),
            Ok(false) => gone(&s, lang),
            Err(e) => super::error::oauth_page(&s, lang, &e),
        };
    }
    let started =
        conduct::start_approval(&s, &g, &client, cookie(&headers, SESSION_COOKIE), source).await;
    let (browser, outcome) = match started {
        Ok(Some(v)) => v,
        Ok(None) => return gone(&s, lang),
        Err(e) => return super::error::oauth_page(&s, lang, &e),
    };
    let mut r = match outcome {
        AuthorizeOutcome::Redirect(url) => Redirect::to(&url).into_response(),
        AuthorizeOutcome::ErrorPage(e) => super::error::oauth_page(&s, lang, &e),
        AuthorizeOutcome::Login {
            tx_id,
            browser_secret,
        } => with_tx_cookie(&s, &tx_id, &browser_secret, format!("/login/{tx_id}")),
        AuthorizeOutcome::Consent {
            tx_id,
            browser_secret,
        } => with_tx_cookie(&s, &tx_id, &browser_secret, format!("/consent/{tx_id}")),
    };
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            &s,
            &device_cookie(&g.id),
            &browser,
            s.config.lifetimes.device_code,
        ),
    );
    r
}

fn gone(s: &AppState, lang: Lang) -> Response {
    page(s, lang, StatusCode::GONE, context! { mode => "gone" })
}

/// `GET /device/callback`: the approval's authorization response.
pub async fn device_callback(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let lang = Lang::pick(&[], None, &headers);
    let params = match form_pairs(q.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(e) => return super::error::oauth_page(&s, lang, &e),
    };
    let id = params
        .iter()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    match conduct::callback(&s, cookie(&headers, &device_cookie(&id)), &params).await {
        Ok(Settled::Approved { client }) => page(
            &s,
            lang,
            StatusCode::OK,
            context! {
                mode => "approved",
                rp_name => if lang == Lang::Ja { &client.display_name_ja } else { &client.display_name },
            },
        ),
        Ok(Settled::Denied { why }) => page(
            &s,
            lang,
            StatusCode::OK,
            context! { mode => "denied", detail => why },
        ),
        Ok(Settled::Gone) => gone(&s, lang),
        Err(e) => super::error::oauth_page(&s, lang, &e),
    }
}
