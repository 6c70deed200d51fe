//! RP-initiated logout over HTTP: `GET|POST /logout` (`service::logout`), the confirmation
//! page and its form.

use super::pages::{self, Lang};
use super::{AppState, SESSION_COOKIE, cookie, form_pairs, set_cookie};
use crate::service::logout::{self as conduct, LogoutStep};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;

/// The parameters a confirmation carries over to its POST.
const CARRIED: &[&str] = &[
    "id_token_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
    "ui_locales",
];

pub async fn logout_get(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    logout(s, headers, q.unwrap_or_default().as_bytes()).await
}

pub async fn logout_post(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    logout(s, headers, &body).await
}

fn lang_of(params: &[(String, String)], headers: &HeaderMap) -> Lang {
    let ui: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "ui_locales")
        .flat_map(|(_, v)| v.split_whitespace().map(str::to_string))
        .collect();
    let q = params
        .iter()
        .find(|(k, _)| k == "lang")
        .map(|(_, v)| v.as_str());
    Lang::pick(&ui, q, headers)
}

/// The session cookie cleared, then back to the RP or the "logged out" page.
fn done(s: &AppState, lang: Lang, return_to: Option<String>) -> Response {
    let mut r = match return_to {
        Some(u) => Redirect::to(&u).into_response(),
        None => pages::render(
            s,
            lang,
            StatusCode::OK,
            "logout.html",
            context! { mode => "done", action => "" },
        ),
    };
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(s, SESSION_COOKIE, "", 0));
    r
}

async fn logout(s: AppState, headers: HeaderMap, raw: &[u8]) -> Response {
    let params = match form_pairs(raw) {
        Ok(p) => p,
        Err(e) => return super::error::oauth_page(&s, Lang::pick(&[], None, &headers), &e),
    };
    let lang = lang_of(&params, &headers);
    let session = cookie(&headers, SESSION_COOKIE);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("confirm") == Some("yes") {
        return match conduct::confirm(&s, &params, session, get("csrf").unwrap_or("")).await {
            Ok(return_to) => done(&s, lang, return_to),
            Err(e) => super::error::oauth_page(&s, lang, &e),
        };
    }
    match conduct::end_session(&s, &params, session).await {
        Ok(LogoutStep::Done { return_to }) => done(&s, lang, return_to),
        Ok(LogoutStep::Confirm(req)) => {
            let carry: Vec<(&str, &str)> = params
                .iter()
                .filter(|(k, _)| CARRIED.contains(&k.as_str()))
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let rp_name = req.client.as_ref().map(|c| {
                if lang == Lang::Ja {
                    c.display_name_ja.clone()
                } else {
                    c.display_name.clone()
                }
            });
            pages::render(
                &s,
                lang,
                StatusCode::OK,
                "logout.html",
                context! {
                    mode => "confirm",
                    rp_name => rp_name,
                    csrf => conduct::logout_csrf(&s, session.unwrap_or_default()),
                    carry => carry,
                    action => format!("{}/logout", s.issuer()),
                },
            )
        }
        Err(e) => super::error::oauth_page(&s, lang, &e),
    }
}
