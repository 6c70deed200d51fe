//! Passkeys over HTTP: the login page's passkey ceremony, and the account page (list, add,
//! rename, remove). Parse, call `service::passkey`, serialize; errors through `http::error`.

use super::pages::{self, Lang};
use super::{AppState, SESSION_COOKIE, cookie, form_pairs, tx_cookie_name};
use crate::authn::passkey::PasskeyError;
use crate::service::passkey as conduct;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;
use std::collections::HashMap;

/// A ceremony's JSON endpoints take requests from the broker's own pages only: a request
/// that names another origin is refused (a browser always names it on a cross-site POST).
fn same_origin(s: &AppState, headers: &HeaderMap) -> Result<(), PasskeyError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let ours = s.config.issuer.origin().ascii_serialization();
    if origin.to_str().is_ok_and(|o| o == ours) {
        Ok(())
    } else {
        Err(PasskeyError::Malformed(
            "the request came from another site".into(),
        ))
    }
}

/// The JSON body of a ceremony's second step.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, PasskeyError> {
    serde_json::from_slice(body).map_err(|e| {
        PasskeyError::Malformed(format!(
            "the body is not the expected JSON ({})",
            e.to_string().split(" at line").next().unwrap_or("")
        ))
    })
}

#[derive(Deserialize)]
struct LoginAnswer {
    ceremony: String,
    credential: webauthn_rs::prelude::PublicKeyCredential,
}

#[derive(Deserialize)]
struct EnrolAnswer {
    ceremony: String,
    credential: webauthn_rs::prelude::RegisterPublicKeyCredential,
    #[serde(default)]
    name: String,
}

/// `POST /login/{tx}/passkey/begin`
pub async fn login_begin(
    State(s): State<AppState>,
    Path(tx): Path<String>,
    headers: HeaderMap,
) -> Response {
    let r = match same_origin(&s, &headers) {
        Ok(()) => conduct::begin_login(&s, &tx, cookie(&headers, &tx_cookie_name(&tx))).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(started) => Json(started).into_response(),
        Err(e) => super::error::passkey(&e),
    }
}

/// `POST /login/{tx}/passkey/finish`
pub async fn login_finish(
    State(s): State<AppState>,
    Path(tx): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        same_origin(&s, &headers)?;
        let a: LoginAnswer = parse(&body)?;
        conduct::finish_login(
            &s,
            &tx,
            cookie(&headers, &tx_cookie_name(&tx)),
            &a.ceremony,
            &a.credential,
        )
        .await
    }
    .await;
    match r {
        Ok(()) => Json(serde_json::json!({
            "status": "authenticated",
            "continue_url": format!("{}/login/{tx}/continue", s.issuer()),
        }))
        .into_response(),
        Err(e) => super::error::passkey(&e),
    }
}

/// `POST /account/passkeys/begin`
pub async fn enrol_begin(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let r = match same_origin(&s, &headers) {
        Ok(()) => conduct::begin_enrol(&s, cookie(&headers, SESSION_COOKIE)).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(started) => Json(started).into_response(),
        Err(e) => super::error::passkey(&e),
    }
}

/// `POST /account/passkeys/finish`
pub async fn enrol_finish(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let r = async {
        same_origin(&s, &headers)?;
        let a: EnrolAnswer = parse(&body)?;
        conduct::finish_enrol(
            &s,
            cookie(&headers, SESSION_COOKIE),
            &a.ceremony,
            &a.credential,
            &a.name,
        )
        .await
    }
    .await;
    match r {
        Ok(p) => (
            StatusCode::CREATED,
            Json(serde_json::json!({
                "id": p.id,
                "name": p.name,
                "kind": crate::authn::passkey::kind(p.backup_eligible != 0),
            })),
        )
            .into_response(),
        Err(e) => super::error::passkey(&e),
    }
}

/// A date for the account page (UTC, ISO 8601 date and minutes).
fn when(t: Option<i64>) -> String {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// The cookie that carries an account login's `state` from `/account/login` to its callback.
const ACCOUNT_STATE_COOKIE: &str = "broker_account_state";

/// `GET /account/login[?acr=…]`: log in to the account page through the authorization
/// endpoint, as the built-in client `broker-account` (a session below `acr` steps up to the
/// card there).
pub async fn account_login(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let state = crate::clock::random_token();
    // PKCE is required of every public client; the account page never redeems its code (the
    // SSO session the login opened is what it needs), so the verifier is not kept.
    let verifier = crate::clock::random_token();
    let challenge = crate::clock::b64url(&crate::clock::sha256(verifier.as_bytes()));
    let mut params = vec![
        ("client_id", crate::registry::ACCOUNT_CLIENT.to_string()),
        ("redirect_uri", format!("{}/account/callback", s.issuer())),
        ("response_type", "code".into()),
        ("scope", "openid".into()),
        ("state", state.clone()),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256".into()),
    ];
    if let Some(acr) = q
        .get("acr")
        .filter(|a| s.policy().levels.iter().any(|l| &l.acr == *a))
    {
        params.push(("acr_values", acr.clone()));
    }
    if let Some(l) = q.get("lang").filter(|l| *l == "ja" || *l == "en") {
        params.push(("ui_locales", l.clone()));
    }
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut r = Redirect::to(&format!("{}/authorize?{query}", s.issuer())).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        super::set_cookie(
            &s,
            ACCOUNT_STATE_COOKIE,
            &state,
            s.config.lifetimes.transaction,
        ),
    );
    r
}

/// `GET /account/callback`: the account login's end — its state checked, then the account page.
pub async fn account_callback(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let lang = Lang::pick(&[], None, &headers);
    let expected = cookie(&headers, ACCOUNT_STATE_COOKIE).unwrap_or_default();
    let state = q.get("state").map(String::as_str).unwrap_or_default();
    if expected.is_empty() || !crate::clock::ct_eq(expected.as_bytes(), state.as_bytes()) {
        return super::error::passkey_page(
            &s,
            lang,
            &PasskeyError::Malformed("this account login was not started here: start again".into()),
        );
    }
    if let Some(e) = q.get("error") {
        let why = q
            .get("error_description")
            .cloned()
            .unwrap_or_else(|| e.clone());
        return super::error::passkey_page(&s, lang, &PasskeyError::Refused(why));
    }
    let mut r = Redirect::to(&format!("{}/account", s.issuer())).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        super::set_cookie(&s, ACCOUNT_STATE_COOKIE, "", 0),
    );
    r
}

/// `GET /account`: the person's passkeys, and adding one.
pub async fn account_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let lang = Lang::pick(&[], q.get("lang").map(String::as_str), &headers);
    let secret = cookie(&headers, SESSION_COOKIE);
    let view = match conduct::account(&s, secret).await {
        Ok(v) => v,
        // Not logged in: log in first (with the card, at the level that adds passkeys).
        Err(PasskeyError::NoSession) => {
            let acr = s
                .policy()
                .enrol_level()
                .map(|l| l.acr.clone())
                .unwrap_or_default();
            return Redirect::to(&format!(
                "{}/account/login?acr={acr}&lang={}",
                s.issuer(),
                lang.code()
            ))
            .into_response();
        }
        Err(e) => return super::error::passkey_page(&s, lang, &e),
    };
    let t = |k: &str| pages::text(lang, k);
    let passkeys: Vec<_> = view
        .passkeys
        .iter()
        .map(|p| {
            context! {
                id => p.id,
                name => p.name,
                kind => t(&format!("passkey_{}", crate::authn::passkey::kind(p.backup_eligible != 0))),
                created => when(Some(p.created_at)),
                last_used => if p.last_used_at.is_some() { when(p.last_used_at) } else { t("never").to_string() },
                suspended => p.suspended_reason.as_deref().map(|r| t(&format!("suspended_{r}"))),
            }
        })
        .collect();
    let (may_enrol, why_not) = match &view.may_enrol {
        Ok(()) => (true, String::new()),
        Err(e) => (false, e.to_string()),
    };
    // Below the enrolment level: a login with the card brings the session there.
    let step_up_url = match &view.may_enrol {
        Err(PasskeyError::BelowEnrolLevel { level }) => Some(format!(
            "{}/account/login?acr={level}&lang={}",
            s.issuer(),
            lang.code()
        )),
        _ => None,
    };
    let csrf = conduct::account_csrf(&s, secret.unwrap_or_default());
    pages::render(
        &s,
        lang,
        StatusCode::OK,
        "account.html",
        context! {
            passkeys => passkeys,
            may_enrol => may_enrol,
            why_not => why_not,
            step_up_url => step_up_url,
            csrf => csrf,
            level => view.level,
            method => view.facts.method,
            begin_url => format!("{}/account/passkeys/begin", s.issuer()),
            finish_url => format!("{}/account/passkeys/finish", s.issuer()),
            action_base => format!("{}/account/passkeys", s.issuer()),
        },
    )
}

/// `POST /account/passkeys/{id}/{action}` (a form: `rename` with `name`, or `remove`).
pub async fn passkey_action(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lang = Lang::pick(&[], None, &headers);
    let secret = cookie(&headers, SESSION_COOKIE);
    let r = async {
        let form = form_pairs(&body).map_err(|e| PasskeyError::Malformed(e.description))?;
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if !conduct::account_csrf_ok(&s, secret, get("csrf").unwrap_or("")) {
            return Err(PasskeyError::Malformed(
                "the form is out of date: reload the account page".into(),
            ));
        }
        match action.as_str() {
            "rename" => conduct::rename(&s, secret, &id, get("name").unwrap_or("")).await,
            "remove" => conduct::remove(&s, secret, &id).await,
            _ => Err(PasskeyError::Malformed(format!(
                "unknown action `{action}` (rename or remove)"
            ))),
        }
    }
    .await;
    match r {
        Ok(()) => Redirect::to(&format!("{}/account", s.issuer())).into_response(),
        Err(e) => super::error::passkey_page(&s, lang, &e),
    }
}
