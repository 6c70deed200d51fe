//! Login, consent and index pages: parse, call `service::login`, render.

use super::pages::{self, Lang};
use super::{AppState, SESSION_COOKIE, cookie, form_pairs, set_cookie, tx_cookie_name};
use crate::service::login::{self as conduct, BrowserTx, ContinueOutcome, Next, TxError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use std::collections::HashMap;

type Q = Query<HashMap<String, String>>;

pub async fn index(State(s): State<AppState>, headers: HeaderMap, Query(q): Q) -> Response {
    let lang = Lang::pick(&[], q.get("lang").map(String::as_str), &headers);
    let reg = s.registry();
    let mut rps: Vec<_> = reg
        .clients()
        .filter(|c| !c.first_party)
        .map(|c| {
            context! {
                client_id => c.client_id.clone(),
                name => if lang == Lang::Ja { c.display_name_ja.clone() } else { c.display_name.clone() },
                kind => format!("{:?}", c.kind),
            }
        })
        .collect();
    rps.sort_by_key(|v| v.to_string());
    // RFC 7636 appendix B's verifier: a fixed demo challenge so the link works from a page.
    let example_url = format!(
        "{}/authorize?client_id=local-dev&redirect_uri=http%3A%2F%2F127.0.0.1%3A8765%2Fcallback&response_type=code&scope=openid&state=demo&nonce=demo&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        s.issuer()
    );
    pages::render(
        &s,
        lang,
        StatusCode::OK,
        "index.html",
        context! { rps => rps, example_url => example_url },
    )
}

async fn load(
    s: &AppState,
    tx: &str,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> (Lang, Result<BrowserTx, TxError>) {
    let secret = cookie(headers, &tx_cookie_name(tx));
    let r = conduct::browser_tx(s, tx, secret).await;
    let ui = r
        .as_ref()
        .map(|b| b.req.ui_locales.clone())
        .unwrap_or_default();
    (
        Lang::pick(&ui, q.get("lang").map(String::as_str), headers),
        r,
    )
}

pub async fn login_page(
    State(s): State<AppState>,
    Path(tx): Path<String>,
    headers: HeaderMap,
    Query(q): Q,
) -> Response {
    let (lang, bt) = load(&s, &tx, &headers, &q).await;
    let bt = match bt {
        Ok(b) => b,
        Err(e) => return super::error::tx_page(&s, lang, &e),
    };
    let secret = cookie(&headers, &tx_cookie_name(&tx)).unwrap_or_default();
    let helper_url = crate::service::authorize::helper_url(
        &s,
        &crate::service::authorize::helper_secret(&s, &tx, secret),
    );
    let rp_name = if lang == Lang::Ja {
        &bt.client.display_name_ja
    } else {
        &bt.client.display_name
    };
    let policy = s.policy();
    let passkey = s.webauthn().is_some()
        && crate::assurance::passkey::may_suffice(
            &policy,
            &crate::oidc::authorize::requirement(&policy, &bt.client, &bt.req),
        );
    let restart_url = url::Url::parse(&bt.req.redirect_uri)
        .map(|u| format!("{}/", u.origin().ascii_serialization()))
        .unwrap_or_default();
    pages::render(
        &s,
        lang,
        StatusCode::OK,
        "login.html",
        context! {
            passkey => passkey,
            passkey_begin_url => format!("{}/login/{tx}/passkey/begin", s.issuer()),
            passkey_finish_url => format!("{}/login/{tx}/passkey/finish", s.issuer()),
            restart_url => restart_url,
            rp_name => rp_name,
            qr => pages::qr_svg(&helper_url),
            helper_url => helper_url,
            binding_code => bt.tx.binding_code,
            status_url => format!("{}/login/{tx}/status", s.issuer()),
            continue_url => format!("{}/login/{tx}/continue", s.issuer()),
        },
    )
}

pub async fn status(
    State(s): State<AppState>,
    Path(tx): Path<String>,
    headers: HeaderMap,
) -> Response {
    match conduct::tx_status(&s, &tx, cookie(&headers, &tx_cookie_name(&tx))).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => super::error::tx_json(&e),
    }
}

pub async fn continue_login(
    State(s): State<AppState>,
    Path(tx): Path<String>,
    headers: HeaderMap,
    Query(q): Q,
) -> Response {
    let secret = cookie(&headers, &tx_cookie_name(&tx));
    match conduct::continue_login(&s, &tx, secret).await {
        Ok(ContinueOutcome {
            session_secret,
            next,
        }) => {
            let to = match next {
                Next::Redirect(u) | Next::Consent(u) => u,
            };
            let mut r = Redirect::to(&to).into_response();
            if let Some(secret) = session_secret {
                r.headers_mut().append(
                    header::SET_COOKIE,
                    set_cookie(&s, SESSION_COOKIE, &secret, s.config.lifetimes.session),
                );
            }
            r
        }
        Err(e) => {
            let (lang, _) = load(&s, &tx, &headers, &q).await;
            super::error::tx_page(&s, lang, &e)
        }
    }
}

pub async fn consent_page(
    State(s): State<AppState>,
    Path(tx): Path<String>,
    headers: HeaderMap,
    Query(q): Q,
) -> Response {
    let (lang, bt) = load(&s, &tx, &headers, &q).await;
    let bt = match bt {
        Ok(b) if b.tx.session_hash.is_some() => b,
        Ok(_) => return super::error::tx_page(&s, lang, &TxError::NotAuthenticated),
        Err(e) => return super::error::tx_page(&s, lang, &e),
    };
    let mut scopes: Vec<&str> = crate::oidc::claims::consent_items(&bt.client, &bt.req)
        .iter()
        .map(|item| match item.strip_prefix("claim:") {
            Some(c) => {
                let t = pages::text(lang, &format!("scope_{c}"));
                if t.is_empty() {
                    pages::text(lang, &format!("claim_{c}"))
                } else {
                    t
                }
            }
            None => pages::text(lang, &format!("scope_{item}")),
        })
        .filter(|t| !t.is_empty())
        .collect();
    scopes.dedup();
    let rp_name = if lang == Lang::Ja {
        &bt.client.display_name_ja
    } else {
        &bt.client.display_name
    };
    pages::render(
        &s,
        lang,
        StatusCode::OK,
        "consent.html",
        context! {
            rp_name => rp_name,
            scopes => scopes,
            level => conduct::level_reached(&s, &bt),
            csrf => bt.tx.csrf,
            action => format!("{}/consent/{tx}", s.issuer()),
        },
    )
}

pub async fn consent_post(
    State(s): State<AppState>,
    Path(tx): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match form_pairs(&body) {
        Ok(f) => f,
        Err(e) => {
            let (lang, _) = load(&s, &tx, &headers, &HashMap::new()).await;
            return super::error::oauth_page(&s, lang, &e);
        }
    };
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let approve = match get("decision") {
        Some("approve") => true,
        Some("deny") => false,
        _ => {
            let (lang, _) = load(&s, &tx, &headers, &HashMap::new()).await;
            return super::error::oauth_page(
                &s,
                lang,
                &crate::oidc::OAuthError::invalid_request("decision must be approve or deny"),
            );
        }
    };
    let secret = cookie(&headers, &tx_cookie_name(&tx));
    match conduct::decide_consent(&s, &tx, secret, get("csrf").unwrap_or(""), approve).await {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => {
            let (lang, _) = load(&s, &tx, &headers, &HashMap::new()).await;
            super::error::tx_page(&s, lang, &e)
        }
    }
}
