//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): `end_session_endpoint`.
//!
//! A relying party sends the browser to `/logout` with `id_token_hint` (an ID token this broker
//! issued it), `client_id`, a registered `post_logout_redirect_uri`, `state`, `ui_locales`.
//! With a hint that names the browser's current SSO session (its `sid`), the session ends at
//! once; without a hint, or with a stale one, the person is asked first (a logout that a
//! third party could trigger is not done silently). A `post_logout_redirect_uri` that is not
//! registered for the client is refused on a page — never followed.

use crate::app::Broker;
use crate::clock::token_hash;
use crate::oidc::OAuthError;
use crate::oidc::keys::HintError;
use crate::registry::Client;
use std::sync::Arc;

/// A validated logout request.
#[derive(Debug, Clone)]
pub struct LogoutRequest {
    pub client: Option<Arc<Client>>,
    /// The registered URI to return to, with `state` appended.
    pub return_to: Option<String>,
    /// The hint named the browser's current session.
    pub hint_matches_session: bool,
    /// The hint's `sid` (fresh or stale), for the log.
    pub hinted_sid: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    pub ui_locales: Vec<String>,
}

/// What to do with a logout request.
pub enum LogoutStep {
    /// The session (if any) is ended; send the browser back (or show "logged out").
    Done { return_to: Option<String> },
    /// Ask the person first (the hint is missing or stale).
    Confirm(LogoutRequest),
}

/// The `iss` and `aud` of an unverified JWT (which issuer says it made it, and which client's
/// ID token to verify it as).
fn issuer_and_audience(token: &str) -> Option<(String, String)> {
    let payload = token.split('.').nth(1)?;
    let v: serde_json::Value =
        serde_json::from_slice(&crate::clock::b64url_decode(payload)?).ok()?;
    let aud = match &v["aud"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) if a.len() == 1 => a[0].as_str().map(str::to_string),
        _ => None,
    }?;
    Some((v["iss"].as_str()?.to_string(), aud))
}

/// Validate `/logout`'s parameters against the registry, the keys and the browser's session.
pub async fn validate(
    b: &Broker,
    params: &[(String, String)],
    session_cookie: Option<&str>,
) -> Result<LogoutRequest, OAuthError> {
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    for k in [
        "id_token_hint",
        "client_id",
        "post_logout_redirect_uri",
        "state",
    ] {
        if params.iter().filter(|(n, _)| n == k).count() > 1 {
            return Err(OAuthError::invalid_request(format!(
                "parameter `{k}` is repeated"
            )));
        }
    }
    if get("state").is_some_and(|s| s.len() > crate::oidc::authorize::MAX_STATE) {
        return Err(OAuthError::invalid_request("state is too long"));
    }
    let registry = b.registry();
    let now = b.now();
    let mut client: Option<Arc<Client>> = None;
    let mut hinted_sid = None;
    if let Some(hint) = get("id_token_hint") {
        let invalid =
            || OAuthError::invalid_request("id_token_hint is not an ID token this broker issued");
        let (iss, aud) = issuer_and_audience(hint).ok_or_else(invalid)?;
        if iss != b.issuer() {
            return Err(invalid());
        }
        let c = registry.get(&aud).cloned().ok_or_else(invalid)?;
        match b
            .keys()
            .verify_own_id_token(hint, b.issuer(), &c.client_id, now)
        {
            Ok(claims) => {
                hinted_sid = claims["sid"].as_str().map(str::to_string);
                client = Some(c);
            }
            // Signed by a key retired since: it cannot be checked; treated as absent (the
            // person is asked).
            Err(HintError::UnknownKey) => client = Some(c),
            Err(HintError::Invalid) => return Err(invalid()),
        }
    }
    if let Some(id) = get("client_id") {
        match &client {
            Some(c) if c.client_id != id => {
                return Err(OAuthError::invalid_request(
                    "client_id is not the audience of id_token_hint",
                ));
            }
            Some(_) => {}
            None => {
                client = Some(registry.get(id).cloned().ok_or_else(|| {
                    OAuthError::invalid_request(format!("client_id `{id}` is not registered"))
                })?);
            }
        }
    }
    let post_logout = get("post_logout_redirect_uri");
    let return_to = match (post_logout, &client) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(OAuthError::invalid_request(
                "post_logout_redirect_uri needs id_token_hint or client_id to say whose it is",
            ));
        }
        (Some(u), Some(c)) if c.post_logout_redirect_uris.iter().any(|r| r == u) => {
            Some(match get("state") {
                Some(s) => crate::oidc::authorize::redirect_with(u, &[("state", s)]),
                None => u.to_string(),
            })
        }
        (Some(u), Some(c)) => {
            return Err(OAuthError::invalid_request(format!(
                "post_logout_redirect_uri `{u}` is not registered for client `{}`",
                c.client_id
            )));
        }
    };
    let current_sid = match session_cookie {
        Some(c) => b
            .store
            .get_session(&token_hash(c))
            .await?
            .filter(|s| s.expires_at > now)
            .map(|s| crate::oidc::token::session_sid(b.server_key(), &s.id_hash)),
        None => None,
    };
    Ok(LogoutRequest {
        client,
        return_to,
        hint_matches_session: hinted_sid.is_some() && hinted_sid == current_sid,
        hinted_sid,
        post_logout_redirect_uri: post_logout.map(str::to_string),
        state: get("state").map(str::to_string),
        ui_locales: get("ui_locales")
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    })
}

/// `GET|POST /logout` from a relying party: end the session now, or ask.
pub async fn end_session(
    b: &Broker,
    params: &[(String, String)],
    session_cookie: Option<&str>,
) -> Result<LogoutStep, OAuthError> {
    let req = validate(b, params, session_cookie).await?;
    let has_session = match session_cookie {
        Some(c) => b.store.get_session(&token_hash(c)).await?.is_some(),
        None => false,
    };
    if req.hint_matches_session || !has_session {
        if let Some(c) = session_cookie {
            end(b, c, req.client.as_deref()).await?;
        }
        return Ok(LogoutStep::Done {
            return_to: req.return_to,
        });
    }
    Ok(LogoutStep::Confirm(req))
}

/// The confirmation form's token, bound to the session.
pub fn logout_csrf(b: &Broker, session_cookie: &str) -> String {
    b.server_key()
        .mac("logout-csrf", token_hash(session_cookie).as_bytes())
}

/// The person confirmed on the page (`csrf` from it): end the session, then go back as the
/// (re-validated) request says.
pub async fn confirm(
    b: &Broker,
    params: &[(String, String)],
    session_cookie: Option<&str>,
    csrf: &str,
) -> Result<Option<String>, OAuthError> {
    let req = validate(b, params, session_cookie).await?;
    if let Some(c) = session_cookie {
        if !crate::clock::ct_eq(logout_csrf(b, c).as_bytes(), csrf.as_bytes()) {
            return Err(OAuthError::invalid_request(
                "the logout form is out of date: start again from the service",
            ));
        }
        end(b, c, req.client.as_deref()).await?;
    }
    Ok(req.return_to)
}

/// End the session, and queue a logout token for every relying party that got tokens from
/// it and registered a `backchannel_logout_uri` — in one database transaction; the
/// `outbox` delivers them.
async fn end(b: &Broker, session_cookie: &str, client: Option<&Client>) -> Result<(), OAuthError> {
    let hash = token_hash(session_cookie);
    let Some(s) = b.store.get_session(&hash).await? else {
        return Ok(());
    };
    let logouts = logouts_of(b, &hash, &s.account_id).await?;
    b.store.end_session(&hash, &logouts).await?;
    tracing::info!(target: "audit", account = %s.account_id, client = client.map_or("", |c| c.client_id.as_str()), back_channel = logouts.len(), "logged out");
    Ok(())
}

/// The logout tokens an ending session owes: one per relying party of its grants with a
/// back-channel URI.
pub async fn logouts_of(
    b: &Broker,
    session_hash: &str,
    account_id: &str,
) -> Result<Vec<crate::store::OutboxRecord>, OAuthError> {
    let sid = crate::oidc::token::session_sid(b.server_key(), session_hash);
    let registry = b.registry();
    let now = b.now();
    let mut clients: Vec<String> = b
        .store
        .grants_of_session(&sid)
        .await?
        .into_iter()
        .filter(|g| g.account_id == account_id)
        .map(|g| g.client_id)
        .collect();
    clients.sort();
    clients.dedup();
    Ok(clients
        .iter()
        .filter_map(|id| registry.get(id))
        .filter_map(|c| {
            c.backchannel_logout_uri
                .as_ref()
                .map(|uri| crate::store::OutboxRecord {
                    id: crate::clock::random_id(),
                    client_id: c.client_id.clone(),
                    uri: uri.clone(),
                    sub: crate::oidc::token::subject(b.server_key(), c, account_id),
                    sid: Some(sid.clone()),
                    created_at: now,
                    next_attempt_at: now,
                    attempts: 0,
                    lease_until: None,
                    delivered_at: None,
                    failed_at: None,
                    last_error: None,
                    kind: "logout".into(),
                    event_json: None,
                })
        })
        .collect())
}
