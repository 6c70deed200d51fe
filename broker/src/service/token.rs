//! The conductor's token endpoint, userinfo, introspection and revocation: loads what each
//! request needs, has `oidc::token` check and mint, writes once.

use super::claims::released;
use crate::app::Broker;
use crate::clock::{ct_eq, sha256};
use crate::clock::{random_token, token_hash};
use crate::oidc::OAuthError;
use crate::oidc::claims::Target;
use crate::oidc::keys::half_hash;
use crate::oidc::token::{
    IssuedCode, JWT_BEARER, PresentedCredentials, RefreshData, TokenResponse, assertion_subject,
    check_code, subject, verify_assertion,
};
use crate::registry::API_SCOPES;
use crate::registry::{AuthMethod, Client, GrantType};
use crate::store::{GrantRecord, Redeem, RefreshRecord};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Authenticate the client with exactly the method it registered. A client assertion is
/// single use: its `jti` is recorded in the store (shared by every process) until it expires.
///
/// Long, and kept so: one arm per registered method (RFC 6749 §2.3, OIDC Core §9), each
/// refusing what the others accept.
pub async fn authenticate_client(
    b: &Broker,
    creds: &PresentedCredentials,
) -> Result<Arc<Client>, OAuthError> {
    let methods = [
        creds.basic.is_some(),
        creds.client_secret.is_some(),
        creds.client_assertion.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if methods > 1 {
        return Err(OAuthError::invalid_request(
            "more than one client authentication method was used",
        ));
    }
    let id = match (&creds.basic, &creds.client_id, &creds.client_assertion) {
        (Some((id, _)), Some(form_id), _) if id != form_id => {
            return Err(OAuthError::invalid_request(
                "client_id in the form differs from the Basic credentials",
            ));
        }
        (Some((id, _)), _, _) => id.clone(),
        (None, Some(id), Some(assertion)) => {
            let sub = assertion_subject(assertion)?;
            if &sub != id {
                return Err(OAuthError::invalid_client(format!(
                    "client_id `{id}` in the form is not the client assertion's subject `{sub}`"
                )));
            }
            sub
        }
        (None, Some(id), None) => id.clone(),
        (None, None, Some(assertion)) => assertion_subject(assertion)?,
        (None, None, None) => {
            return Err(OAuthError::invalid_client("no client authentication"));
        }
    };
    let reg = b.registry();
    let client = reg
        .get(&id)
        .cloned()
        .ok_or_else(|| OAuthError::invalid_client("unknown client"))?;
    let wrong_method = || {
        OAuthError::invalid_client(format!(
            "client `{}` must authenticate with {}",
            client.client_id,
            client.auth_method.as_str()
        ))
    };
    match client.auth_method {
        AuthMethod::None => {
            if methods > 0 {
                return Err(wrong_method());
            }
        }
        AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost => {
            let secret = match (client.auth_method, &creds.basic, &creds.client_secret) {
                (AuthMethod::ClientSecretBasic, Some((_, s)), None) => s,
                (AuthMethod::ClientSecretPost, None, Some(s)) => s,
                _ => return Err(wrong_method()),
            };
            let want = client.client_secret_sha256.unwrap_or([0; 32]);
            if !ct_eq(&sha256(secret.as_bytes()), &want) {
                return Err(OAuthError::invalid_client("client authentication failed"));
            }
        }
        AuthMethod::PrivateKeyJwt => {
            let Some(assertion) = &creds.client_assertion else {
                return Err(wrong_method());
            };
            if creds.client_assertion_type.as_deref() != Some(JWT_BEARER) {
                return Err(OAuthError::invalid_client(format!(
                    "client_assertion_type must be {JWT_BEARER}"
                )));
            }
            let a = verify_assertion(&client, assertion, b.issuer(), b.now())?;
            let fresh = b
                .store
                .claim_assertion_jti(&client.client_id, &a.jti_hash, a.keep_until)
                .await?;
            if !fresh {
                tracing::warn!(client = %client.client_id, "client assertion replayed");
                return Err(OAuthError::invalid_client(
                    "client_assertion: its jti was used before (an assertion is single use)",
                ));
            }
        }
    }
    Ok(client)
}

/// POST /token.
pub async fn token(
    b: &Broker,
    creds: &PresentedCredentials,
    form: &[(String, String)],
) -> Result<TokenResponse, OAuthError> {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    for k in [
        "grant_type",
        "code",
        "redirect_uri",
        "code_verifier",
        "refresh_token",
        "scope",
        "device_code",
    ] {
        if form.iter().filter(|(n, _)| n == k).count() > 1 {
            return Err(OAuthError::invalid_request(format!(
                "parameter `{k}` is repeated"
            )));
        }
    }
    let grant_type =
        get("grant_type").ok_or_else(|| OAuthError::invalid_request("grant_type is missing"))?;
    let client = authenticate_client(b, creds).await?;
    match grant_type {
        "authorization_code" => {
            if !client.allows_grant(GrantType::AuthorizationCode) {
                return Err(OAuthError::unauthorized_client(
                    "this client is registered for the broker's APIs only (client_credentials)",
                ));
            }
            let code = get("code").ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
            let redirect_uri = get("redirect_uri")
                .ok_or_else(|| OAuthError::invalid_request("redirect_uri is missing"))?;
            let verifier = get("code_verifier");
            if verifier.is_none() && !client.danger_allow_code_without_pkce {
                return Err(OAuthError::invalid_request(
                    "code_verifier is missing (PKCE is required)",
                ));
            }
            code_grant(b, &client, code, redirect_uri, verifier).await
        }
        "client_credentials" => client_credentials(b, &client, get("scope")),
        crate::oidc::device::GRANT_TYPE => {
            let code = get("device_code")
                .ok_or_else(|| OAuthError::invalid_request("device_code is missing"))?;
            device_grant(b, &client, code).await
        }
        "refresh_token" => {
            if !client.allows_grant(GrantType::RefreshToken) {
                return Err(OAuthError::unauthorized_client(
                    "this client is not registered for the refresh_token grant",
                ));
            }
            let rt = get("refresh_token")
                .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
            refresh_grant(b, &client, rt, get("scope")).await
        }
        other => Err(OAuthError::unsupported_grant_type(format!(
            "grant_type `{other}` is not supported"
        ))),
    }
}

/// A used code was presented again: RFC 6749 §4.1.2 / RFC 9700 §4.5 — revoke what it
/// produced. The error to answer.
async fn code_replayed(
    b: &Broker,
    r: &crate::store::CodeRecord,
    now: i64,
) -> Result<OAuthError, OAuthError> {
    b.store.revoke_grant(&r.grant_id, now).await?;
    tracing::warn!(client = %r.client_id, grant = %r.grant_id, "authorization code replayed; grant revoked");
    Ok(OAuthError::invalid_grant(
        "the code was already used; tokens issued for it are revoked",
    ))
}

async fn code_grant(
    b: &Broker,
    client: &Client,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    code_grant_by_hash(b, client, &token_hash(code), redirect_uri, verifier).await
}

/// The code grant, for the code whose hash is `hash` (the device grant redeems its approval's
/// code by the hash it keeps).
async fn code_grant_by_hash(
    b: &Broker,
    client: &Client,
    hash: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    let now = b.now();
    let hash = hash.to_string();
    // Read, check, then spend the code and store what it produces in one database
    // transaction: a failure before the commit leaves the code unspent (the request may be
    // retried), and a replay — also one racing on another process — always finds the grant.
    let rec = match b.store.get_code(&hash).await? {
        None => return Err(OAuthError::invalid_grant("the code is invalid")),
        Some(r) if r.used_at.is_some() => return Err(code_replayed(b, &r, now).await?),
        Some(r) => r,
    };
    let issued = IssuedCode {
        client_id: &rec.client_id,
        expires_at: rec.expires_at,
        data_json: &rec.data_json,
    };
    let data = match check_code(&issued, client, redirect_uri, verifier, now) {
        Ok(d) => d,
        Err(e) => {
            spend_closed(b, &rec, &hash, now).await?;
            return Err(e);
        }
    };
    let rd = RefreshData {
        client_id: client.client_id.clone(),
        account_id: rec.account_id.clone(),
        scope: data.scope.clone(),
        acr: data.acr.clone(),
        facts: data.facts.clone(),
        claims: data.claims.clone(),
        sid: data.sid.clone(),
    };
    let refresh = client
        .allows_grant(GrantType::RefreshToken)
        .then(random_token);
    let refresh_rec = match &refresh {
        Some(t) => Some(refresh_record(b, &rec.grant_id, t, &rd, now)?),
        None => None,
    };
    let grant = GrantRecord {
        id: rec.grant_id.clone(),
        client_id: client.client_id.clone(),
        account_id: rec.account_id.clone(),
        scope: data.scope.join(" "),
        created_at: now,
        revoked_at: None,
        claims_json: data.claims.as_ref().map(|c| c.to_string()),
        sid: data.sid.clone(),
    };
    match b
        .store
        .redeem_code_with_grant(&hash, &grant, refresh_rec.as_ref(), now)
        .await?
    {
        Redeem::Fresh(_) => {}
        Redeem::Replayed(r) => return Err(code_replayed(b, &r, now).await?),
        Redeem::NotFound => return Err(OAuthError::invalid_grant("the code is invalid")),
    }
    let extra = released(
        b,
        client,
        &rd.account_id,
        &rd.scope,
        rd.claims.as_ref(),
        Target::IdToken,
    )
    .await?;
    Ok(mint(
        b,
        client,
        &rec.grant_id,
        &rd,
        data.nonce.as_deref(),
        refresh,
        extra,
    ))
}

/// A code presented wrongly is spent; the grant it opens is empty and closed, so a later
/// presentation meets a revoked grant.
async fn spend_closed(
    b: &Broker,
    rec: &crate::store::CodeRecord,
    hash: &str,
    now: i64,
) -> Result<(), OAuthError> {
    let closed = GrantRecord {
        id: rec.grant_id.clone(),
        client_id: rec.client_id.clone(),
        account_id: rec.account_id.clone(),
        scope: String::new(),
        created_at: now,
        revoked_at: Some(now),
        claims_json: None,
        sid: None,
    };
    b.store
        .redeem_code_with_grant(hash, &closed, None, now)
        .await?;
    Ok(())
}

fn refresh_record(
    b: &Broker,
    grant_id: &str,
    token: &str,
    rd: &RefreshData,
    now: i64,
) -> Result<RefreshRecord, OAuthError> {
    Ok(RefreshRecord {
        token_hash: token_hash(token),
        grant_id: grant_id.to_string(),
        data_json: serde_json::to_string(rd)
            .map_err(|e| OAuthError::server_error(e.to_string()))?,
        created_at: now,
        expires_at: now + b.config.lifetimes.refresh_token,
        used_at: None,
    })
}

async fn refresh_grant(
    b: &Broker,
    client: &Client,
    token: &str,
    scope: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    let now = b.now();
    let hash = token_hash(token);
    let Some(old) = b.store.get_refresh(&hash).await? else {
        return Err(OAuthError::invalid_grant("the refresh token is invalid"));
    };
    let rd: RefreshData = serde_json::from_str(&old.data_json)
        .map_err(|e| OAuthError::server_error(format!("refresh data: {e}")))?;
    if rd.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    let grant = b.store.get_grant(&old.grant_id).await?;
    if grant.as_ref().is_none_or(|g| g.revoked_at.is_some()) {
        return Err(OAuthError::invalid_grant("the grant was revoked"));
    }
    if old.used_at.is_none() && old.expires_at < now {
        return Err(OAuthError::invalid_grant("the refresh token expired"));
    }
    let mut new_rd = rd.clone();
    if let Some(s) = scope {
        let asked: Vec<String> = s.split_whitespace().map(str::to_string).collect();
        if let Some(extra) = asked.iter().find(|x| !rd.scope.contains(x)) {
            return Err(OAuthError::invalid_scope(format!(
                "scope `{extra}` was not granted"
            )));
        }
        new_rd.scope = asked;
    }
    let new_token = random_token();
    let new_rec = refresh_record(b, &old.grant_id, &new_token, &rd, now)?;
    match b.store.rotate_refresh(&hash, &new_rec, now).await? {
        Redeem::Fresh(_) => {}
        Redeem::Replayed(r) => {
            b.store.revoke_grant(&r.grant_id, now).await?;
            tracing::warn!(client = %client.client_id, grant = %r.grant_id, "refresh token reused; grant revoked");
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used; the whole grant is revoked",
            ));
        }
        Redeem::NotFound => return Err(OAuthError::invalid_grant("the refresh token is invalid")),
    }
    let extra = released(
        b,
        client,
        &new_rd.account_id,
        &new_rd.scope,
        new_rd.claims.as_ref(),
        Target::IdToken,
    )
    .await?;
    Ok(mint(
        b,
        client,
        &old.grant_id,
        &new_rd,
        None,
        Some(new_token),
        extra,
    ))
}

/// client_credentials (RFC 6749 §4.4): an access token for the broker's own APIs. Only
/// confidential clients, only the API scopes their registration permits.
fn client_credentials(
    b: &Broker,
    client: &Client,
    scope: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    if client.is_public() {
        return Err(OAuthError::unauthorized_client(
            "public clients cannot use client_credentials",
        ));
    }
    let asked: Vec<&str> = scope.unwrap_or("").split_whitespace().collect();
    if asked.is_empty() {
        return Err(OAuthError::invalid_scope(format!(
            "scope is required: one of {}",
            API_SCOPES.join(", ")
        )));
    }
    if let Some(bad) = asked
        .iter()
        .find(|s| !API_SCOPES.contains(s) || !client.permissions.iter().any(|p| p == *s))
    {
        return Err(OAuthError::invalid_scope(format!(
            "scope `{bad}` is not permitted for client `{}`",
            client.client_id
        )));
    }
    let now = b.now();
    let lt = b.config.lifetimes;
    let scope = asked.join(" ");
    let at = json!({
        "iss": b.issuer(),
        "sub": client.client_id,
        "aud": b.issuer(),
        "client_id": client.client_id,
        "iat": now,
        "exp": now + lt.access_token,
        "jti": crate::clock::random_id(),
        "scope": scope,
    });
    Ok(TokenResponse {
        access_token: b
            .keys()
            .sign(crate::registry::SigAlg::ES256, Some("at+jwt"), &at, now),
        token_type: "Bearer".into(),
        expires_in: lt.access_token,
        id_token: None,
        refresh_token: None,
        scope,
    })
}

/// Sign the access token (RFC 9068, ES256) and the ID token (the client's algorithm).
fn mint(
    b: &Broker,
    client: &Client,
    grant_id: &str,
    rd: &RefreshData,
    nonce: Option<&str>,
    refresh_token: Option<String>,
    id_claims: Map<String, Value>,
) -> TokenResponse {
    let now = b.now();
    let lt = b.config.lifetimes;
    let sub = subject(b.server_key(), client, &rd.account_id);
    let scope = rd.scope.join(" ");
    let mut at = json!({
        "iss": b.issuer(),
        "sub": sub,
        "aud": b.issuer(),
        "client_id": client.client_id,
        "iat": now,
        "exp": now + lt.access_token,
        "jti": crate::clock::random_id(),
        "scope": scope,
        "auth_time": rd.facts.auth_time,
        "amr": rd.facts.amr,
        "gid": grant_id,
    });
    if let Some(acr) = &rd.acr {
        at["acr"] = json!(acr);
    }
    let access_token = b
        .keys()
        .sign(crate::registry::SigAlg::ES256, Some("at+jwt"), &at, now);
    let mut id = json!({
        "iss": b.issuer(),
        "sub": sub,
        "aud": client.client_id,
        "iat": now,
        "exp": now + lt.id_token,
        "auth_time": rd.facts.auth_time,
        "amr": rd.facts.amr,
        "at_hash": half_hash(&access_token),
    });
    if let Some(n) = nonce {
        id["nonce"] = json!(n);
    }
    if let Some(acr) = &rd.acr {
        id["acr"] = json!(acr);
    }
    if let Some(sid) = &rd.sid {
        id["sid"] = json!(sid);
    }
    if let Value::Object(m) = &mut id {
        m.extend(id_claims);
    }
    let id_token = b.keys().sign(client.id_token_alg, Some("JWT"), &id, now);
    TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: lt.access_token,
        id_token: Some(id_token),
        refresh_token,
        scope,
    }
}

/// A verified, live access token.
pub struct LiveAccessToken {
    pub claims: Arc<Value>,
    /// The grant of a token issued to a person (none for client_credentials).
    pub grant: Option<GrantRecord>,
}

/// Verify an access token presented to the broker: our signature, unexpired, the grant not
/// revoked and the token not revoked (one store round trip for a person's token).
pub async fn check_access_token(b: &Broker, token: &str) -> Result<LiveAccessToken, OAuthError> {
    let claims = b
        .keys()
        .verified_access_token(token, b.issuer(), b.now())
        .ok_or_else(|| OAuthError::invalid_token("the access token is invalid or expired"))?;
    let jti = claims["jti"].as_str().unwrap_or_default();
    // Tokens for people carry their grant; client_credentials tokens have none.
    let grant = if let Some(gid) = claims["gid"].as_str() {
        let grant = b.store.live_grant(gid, jti).await?;
        if grant.is_none() {
            return Err(OAuthError::invalid_token("the access token was revoked"));
        }
        grant
    } else if claims["sub"] != claims["client_id"] {
        return Err(OAuthError::invalid_token("the access token is invalid"));
    } else {
        if b.store.is_jti_revoked(jti).await? {
            return Err(OAuthError::invalid_token("the access token was revoked"));
        }
        None
    };
    Ok(LiveAccessToken { claims, grant })
}

/// GET/POST /userinfo: the subject and the claims the grant allows.
pub async fn userinfo(b: &Broker, token: &str) -> Result<Value, OAuthError> {
    let t = check_access_token(b, token).await?;
    let grant = t
        .grant
        .ok_or_else(|| OAuthError::invalid_token("the access token is not for a person"))?;
    let client = b
        .registry()
        .get(&grant.client_id)
        .cloned()
        .ok_or_else(|| OAuthError::invalid_token("the client is no longer registered"))?;
    let scope: Vec<String> = t.claims["scope"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let claims_param: Option<Value> = grant
        .claims_json
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok());
    let mut out = released(
        b,
        &client,
        &grant.account_id,
        &scope,
        claims_param.as_ref(),
        Target::Userinfo,
    )
    .await?;
    out.insert("sub".into(), t.claims["sub"].clone());
    Ok(Value::Object(out))
}

/// POST /introspect (RFC 7662). Only authenticated clients, and only about their own tokens —
/// or, for an access token, a client registered as resource server for its client
/// (`resource_server_for`). Any other token is `active: false`, as an unknown one is.
pub async fn introspect(
    b: &Broker,
    client: &Client,
    token: Option<&str>,
) -> Result<Value, OAuthError> {
    if client.is_public() {
        return Err(OAuthError::invalid_client(
            "public clients cannot introspect",
        ));
    }
    let token = token.ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
    if let Ok(t) = check_access_token(b, token).await {
        let c = &t.claims;
        let issued_to = c["client_id"].as_str().unwrap_or_default();
        if issued_to != client.client_id
            && !client.resource_server_for.iter().any(|r| r == issued_to)
        {
            tracing::info!(client = %client.client_id, token_client = issued_to, "introspection of another client's token answered inactive");
            return Ok(json!({ "active": false }));
        }
        let mut out = json!({
            "active": true,
            "token_type": "Bearer",
            "scope": c["scope"], "client_id": c["client_id"], "sub": c["sub"],
            "exp": c["exp"], "iat": c["iat"], "iss": c["iss"], "aud": c["aud"],
            "jti": c["jti"], "auth_time": c["auth_time"], "amr": c["amr"],
        });
        if !c["acr"].is_null() {
            out["acr"] = c["acr"].clone();
        }
        return Ok(out);
    }
    let now = b.now();
    if let Some(r) = b.store.get_refresh(&token_hash(token)).await?
        && r.used_at.is_none()
        && r.expires_at > now
        && let Ok(rd) = serde_json::from_str::<RefreshData>(&r.data_json)
        && rd.client_id == client.client_id
        && b.store
            .get_grant(&r.grant_id)
            .await?
            .is_some_and(|g| g.revoked_at.is_none())
    {
        return Ok(json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": rd.scope.join(" "),
            "client_id": rd.client_id,
            "sub": subject(b.server_key(), client, &rd.account_id),
            "exp": r.expires_at, "iat": r.created_at, "iss": b.issuer(),
            "auth_time": rd.facts.auth_time,
        }));
    }
    Ok(json!({ "active": false }))
}

/// POST /revoke (RFC 7009): revoking a refresh token revokes its grant (and so every
/// access token of it); revoking an access token revokes that token. A token issued to another
/// client is refused (§2.1: the server verifies the token was issued to the client making the
/// request) and stays valid; a token the broker does not know is answered 200.
pub async fn revoke(
    b: &Broker,
    client: &Client,
    token: &str,
    hint: Option<&str>,
) -> Result<(), OAuthError> {
    if let Some(h) = hint
        && h != "access_token"
        && h != "refresh_token"
    {
        return Err(OAuthError::unsupported_token_type(format!(
            "token_type_hint `{h}` is not supported"
        )));
    }
    let now = b.now();
    let another = || {
        tracing::warn!(client = %client.client_id, "revocation of another client's token refused");
        OAuthError::unauthorized_client("the token was not issued to this client")
    };
    if let Some(r) = b.store.get_refresh(&token_hash(token)).await? {
        let rd = serde_json::from_str::<RefreshData>(&r.data_json)
            .map_err(|e| OAuthError::server_error(format!("refresh data: {e}")))?;
        if rd.client_id != client.client_id {
            return Err(another());
        }
        b.store.revoke_grant(&r.grant_id, now).await?;
        return Ok(());
    }
    if let Some(c) = b.keys().verify_access_token(token, b.issuer(), b.now()) {
        if c["client_id"].as_str() != Some(client.client_id.as_str()) {
            return Err(another());
        }
        b.store
            .revoke_jti(
                c["jti"].as_str().unwrap_or_default(),
                c["exp"].as_i64().unwrap_or(now),
            )
            .await?;
    }
    Ok(())
}

/// The device grant (RFC 8628 §3.4–3.5): a device polls with `device_code`; the person's
/// approval (`service::device`) left the hash of its authorization code with the grant.
async fn device_grant(
    b: &Broker,
    client: &Client,
    device_code: &str,
) -> Result<TokenResponse, OAuthError> {
    use crate::oidc::device::{self as core, Poll, Status};
    if !client.allows_grant(crate::registry::GrantType::DeviceCode) {
        return Err(OAuthError::unauthorized_client(format!(
            "client `{}` is not registered for the device grant",
            client.client_id
        )));
    }
    let g = b
        .store
        .device_grant_by_device_code(&token_hash(device_code))
        .await?
        .filter(|g| g.client_id == client.client_id)
        .ok_or_else(|| OAuthError::invalid_grant("the device_code is invalid"))?;
    let status = Status::parse(&g.status)
        .ok_or_else(|| OAuthError::server_error(format!("device grant status `{}`", g.status)))?;
    let now = b.now();
    let p = core::poll(status, g.expires_at, g.last_poll_at, g.poll_interval, now);
    if matches!(p, Poll::Pending | Poll::SlowDown) {
        b.store
            .record_device_poll(&g.id, now, p == Poll::SlowDown)
            .await?;
    }
    if let Some(e) = core::poll_error(p) {
        return Err(e);
    }
    let code_hash = g
        .code_hash
        .clone()
        .ok_or_else(|| OAuthError::server_error("an approved device grant without its code"))?;
    if !b.store.redeem_device_grant(&g.id).await? {
        return Err(
            core::poll_error(Poll::Used).unwrap_or_else(|| OAuthError::invalid_grant("used"))
        );
    }
    code_grant_by_hash(
        b,
        client,
        &code_hash,
        &core::callback_uri(b.issuer()),
        Some(&core::approval_verifier(b.server_key(), &g.id)),
    )
    .await
    .map_err(|e| {
        // The approval's code lives `lifetimes.code`: a device that polls later than that
        // hears that its code expired.
        if e.code == crate::oidc::ErrorCode::InvalidGrant {
            OAuthError::expired_token(
                "the approval expired before the device fetched its tokens; start again",
            )
        } else {
            e
        }
    })
}
