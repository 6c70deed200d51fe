//! The device authorization grant's conduct (RFC 8628; decisions in `oidc::device`):
//!
//! 1. the device asks — [`authorize_device`] stores a grant (device code and user code);
//! 2. the person types the user code on a phone or computer — [`lookup`] (wrong codes counted
//!    per source, and refused past `[limits] user_code_failures_per_source`), then
//!    [`start_approval`]: the broker's own authorization request for the device's client,
//!    `state` = the grant, redirect to `/device/callback`, PKCE with a verifier derived from the
//!    grant — through the ordinary login (card or passkey), step-up and consent;
//! 3. [`callback`] keeps the approval's code (its hash) with the grant, or the refusal;
//! 4. the device polls the token endpoint — `service::token::device_grant`:
//!    `authorization_pending`, `slow_down`, `expired_token`, `access_denied`, or the tokens (the
//!    code redeemed by its hash, once).

use crate::app::Broker;
use crate::clock::{random_token, token_hash};
use crate::oidc::OAuthError;
use crate::oidc::authorize::AuthRequest;
use crate::oidc::device::{self as core, DeviceRequest, Status};
use crate::oidc::token::PresentedCredentials;
use crate::registry::Client;
use crate::service::authorize::{AuthorizeOutcome, proceed, source_hash};
use crate::store::DeviceGrantRecord;
use serde::Serialize;
use std::sync::Arc;

/// Seconds over which wrong user codes are counted per source.
const FAILURE_WINDOW: i64 = 600;

/// The device authorization response (RFC 8628 §3.2).
#[derive(Debug, Serialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: i64,
    pub interval: i64,
}

/// `POST /device_authorization`: the client authenticated as at the token endpoint.
pub async fn authorize_device(
    b: &Broker,
    creds: &PresentedCredentials,
    form: &[(String, String)],
) -> Result<DeviceAuthorization, OAuthError> {
    let client = crate::service::token::authenticate_client(b, creds).await?;
    let req = core::validate(&client, form)?;
    let now = b.now();
    let device_code = random_token();
    let request_json =
        serde_json::to_string(&req).map_err(|e| OAuthError::server_error(e.to_string()))?;
    // A user code taken already (one in 2^34 per pending grant) is drawn again.
    for _ in 0..3 {
        let user_code = core::user_code(u64::from_be_bytes(crate::clock::random_bytes::<8>()));
        let g = DeviceGrantRecord {
            id: crate::clock::random_id(),
            device_code_hash: token_hash(&device_code),
            user_code: user_code.clone(),
            client_id: client.client_id.clone(),
            request_json: request_json.clone(),
            created_at: now,
            expires_at: now + b.config.lifetimes.device_code,
            poll_interval: core::INTERVAL,
            last_poll_at: None,
            status: Status::Pending.as_str().into(),
            code_hash: None,
            browser_hash: None,
        };
        if b.store
            .device_grant_by_user_code(&user_code)
            .await?
            .is_some()
        {
            continue;
        }
        if !b
            .store
            .create_device_grant(&g, b.config.limits.open_device_codes_per_client)
            .await?
        {
            tracing::warn!(client = %client.client_id, "device authorization refused: the client's open device codes are at the cap");
            return Err(OAuthError::temporarily_unavailable(
                "this client has too many device codes waiting; retry later",
            ));
        }
        let shown = core::display_user_code(&user_code);
        tracing::info!(client = %client.client_id, grant = %g.id, "device authorization");
        return Ok(DeviceAuthorization {
            device_code,
            verification_uri: format!("{}/device", b.issuer()),
            verification_uri_complete: format!("{}/device?user_code={shown}", b.issuer()),
            user_code: shown,
            expires_in: b.config.lifetimes.device_code,
            interval: core::INTERVAL,
        });
    }
    Err(OAuthError::server_error("no free user code"))
}

/// What typing a user code found.
pub enum Lookup {
    /// A pending grant, and the client that asked.
    Found(Box<DeviceGrantRecord>, Arc<Client>),
    /// No such pending code (counted against the source).
    NotFound,
    /// Too many wrong codes from this source lately: refused without looking.
    TooManyAttempts,
}

/// The pending grant a typed user code names, with the guessing bound.
pub async fn lookup(
    b: &Broker,
    typed: &str,
    source: Option<std::net::IpAddr>,
) -> Result<Lookup, OAuthError> {
    let now = b.now();
    let src = source.map(|s| source_hash(b, s)).unwrap_or_default();
    let window = now - FAILURE_WINDOW;
    let limit = b.config.limits.user_code_failures_per_source;
    if b.store.user_code_failures(&src, window, now, false).await? >= limit {
        return Ok(Lookup::TooManyAttempts);
    }
    let found = match core::normalize_user_code(typed) {
        Some(code) => b.store.device_grant_by_user_code(&code).await?,
        None => None,
    };
    let found = found
        .filter(|g| g.status == Status::Pending.as_str() && g.expires_at > now)
        .and_then(|g| b.registry().get(&g.client_id).cloned().map(|c| (g, c)));
    match found {
        Some((g, c)) => Ok(Lookup::Found(Box::new(g), c)),
        None => {
            let n = b.store.user_code_failures(&src, window, now, true).await?;
            metrics::counter!("broker_device_user_code_failures_total").increment(1);
            tracing::info!(failures = n, "wrong user code");
            Ok(if n >= limit {
                Lookup::TooManyAttempts
            } else {
                Lookup::NotFound
            })
        }
    }
}

/// The person confirmed the grant `g` on this browser: its approval starts as the broker's
/// own authorization request for the device's client. Returns the secret of the browser's
/// device cookie and where the request goes (a login, consent, or straight to the callback).
pub async fn start_approval(
    b: &Broker,
    g: &DeviceGrantRecord,
    client: &Client,
    session_cookie: Option<&str>,
    source: Option<std::net::IpAddr>,
) -> Result<Option<(String, AuthorizeOutcome)>, OAuthError> {
    let browser = random_token();
    if !b
        .store
        .take_up_device_grant(&g.id, &token_hash(&browser), b.now())
        .await?
    {
        return Ok(None);
    }
    let dr: DeviceRequest = serde_json::from_str(&g.request_json)
        .map_err(|e| OAuthError::server_error(format!("device request: {e}")))?;
    let req = AuthRequest {
        client_id: client.client_id.clone(),
        redirect_uri: core::callback_uri(b.issuer()),
        scope: dr.scope,
        state: Some(g.id.clone()),
        nonce: None,
        code_challenge: crate::clock::b64url(&crate::clock::sha256(
            core::approval_verifier(b.server_key(), &g.id).as_bytes(),
        )),
        prompt_none: false,
        prompt_login: false,
        prompt_consent: false,
        max_age: None,
        acr_values: dr.acr_values,
        ui_locales: vec![],
        claims: dr.claims,
        login_hint: None,
        hint_sub: None,
    };
    let out = proceed(b, client, req, &[], session_cookie, source).await?;
    Ok(Some((browser, out)))
}

/// The person said no on the confirmation page ("this is not my device"): the grant is
/// denied at once (the device hears `access_denied`). False if it was no longer pending.
pub async fn deny(b: &Broker, g: &DeviceGrantRecord) -> Result<bool, OAuthError> {
    let browser = token_hash(&random_token());
    let now = b.now();
    let done = b.store.take_up_device_grant(&g.id, &browser, now).await?
        && b.store
            .settle_device_grant(&g.id, &browser, None, now)
            .await?;
    if done {
        tracing::info!(grant = %g.id, client = %g.client_id, "device grant denied on its confirmation page");
    }
    Ok(done)
}

/// How the approval ended, for the page.
#[derive(Debug, Clone)]
pub enum Settled {
    Approved {
        client: Arc<Client>,
    },
    Denied {
        why: String,
    },
    /// Unknown, expired, settled already, or taken up by another browser.
    Gone,
}

/// `GET /device/callback`: the approval's authorization response (`state` = the grant).
pub async fn callback(
    b: &Broker,
    browser_secret: Option<&str>,
    params: &[(String, String)],
) -> Result<Settled, OAuthError> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (Some(id), Some(secret)) = (get("state"), browser_secret) else {
        return Ok(Settled::Gone);
    };
    let Some(g) = b.store.device_grant(id).await? else {
        return Ok(Settled::Gone);
    };
    let now = b.now();
    let code_hash = get("code").map(token_hash);
    if !b
        .store
        .settle_device_grant(&g.id, &token_hash(secret), code_hash.as_deref(), now)
        .await?
    {
        return Ok(Settled::Gone);
    }
    match code_hash {
        Some(_) => {
            tracing::info!(grant = %g.id, client = %g.client_id, "device grant approved");
            let client = b
                .registry()
                .get(&g.client_id)
                .cloned()
                .ok_or_else(|| OAuthError::invalid_client("the device's client is gone"))?;
            Ok(Settled::Approved { client })
        }
        None => {
            let why = get("error_description")
                .or(get("error"))
                .unwrap_or("declined")
                .to_string();
            tracing::info!(grant = %g.id, client = %g.client_id, why, "device grant denied");
            Ok(Settled::Denied { why })
        }
    }
}
