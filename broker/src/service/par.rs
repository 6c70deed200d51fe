//! Pushed authorization requests (RFC 9126): a client pushes its authorization request to
//! `/par` with its own authentication; the broker validates it as `/authorize` would, keeps it
//! under a one-time `request_uri` for `[lifetimes] pushed_request` seconds, and `/authorize`
//! takes it back once (`take`, called by `service::authorize::authorize`).

use crate::app::Broker;
use crate::oidc::OAuthError;
use crate::oidc::authorize::{self, AuthorizeError, Channel};
use crate::oidc::par;
use crate::oidc::token::PresentedCredentials;
use crate::registry::GrantType;
use crate::store::PushedRequestRecord;
use serde::Serialize;

/// The answer to a push (RFC 9126 §2.2).
#[derive(Debug, Serialize)]
pub struct Pushed {
    pub request_uri: String,
    pub expires_in: i64,
}

/// The parameters of `client`'s request object `jwt` (RFC 9101), verified
/// (`oidc::jar::verify`) and its `jti` claimed once across all processes.
pub async fn request_object(
    b: &Broker,
    client: &crate::registry::Client,
    jwt: &str,
) -> Result<Vec<(String, String)>, OAuthError> {
    let o = crate::oidc::jar::verify(client, jwt, b.issuer(), b.now())?;
    let fresh = b
        .store
        .claim_assertion_jti(&client.client_id, &o.jti_hash, o.keep_until)
        .await?;
    if !fresh {
        tracing::warn!(client = %client.client_id, "request object replayed");
        return Err(OAuthError::invalid_request_object(
            "request object: its jti was used before (a request object is single use)",
        ));
    }
    Ok(o.params)
}

/// `POST /par`: authenticate the client, validate its request (the request object's
/// parameters alone when it sends one), keep it.
pub async fn push(
    b: &Broker,
    creds: &PresentedCredentials,
    form: &[(String, String)],
) -> Result<Pushed, OAuthError> {
    let client = crate::service::token::authenticate_client(b, creds).await?;
    if !client.allows_grant(GrantType::AuthorizationCode) {
        return Err(OAuthError::unauthorized_client(format!(
            "client `{}` is not registered for the authorization code flow",
            client.client_id
        )));
    }
    let params = match form.iter().find(|(k, _)| k == "request") {
        Some((_, jwt)) => {
            if form.iter().filter(|(k, _)| k == "request").count() > 1 {
                return Err(OAuthError::invalid_request("request is repeated"));
            }
            par::pushed_params(&request_object(b, &client, jwt).await?, &client.client_id)?
        }
        None => par::pushed_params(form, &client.client_id)?,
    };
    // Validated now, so the client hears of a mistake in the push's answer (and validated again
    // when taken: the registry may have changed in between).
    let registry = b.registry();
    if let Err(AuthorizeError::Page { error } | AuthorizeError::Redirect { error, .. }) =
        authorize::validate_in(&params, &registry, Channel::Pushed)
    {
        return Err(error);
    }
    let (request_uri, id_hash) = par::new_request_uri();
    let now = b.now();
    let lifetime = b.config.lifetimes.pushed_request;
    let rec = PushedRequestRecord {
        id_hash,
        client_id: client.client_id.clone(),
        params_json: serde_json::to_string(&params)
            .map_err(|e| OAuthError::server_error(format!("pushed request: {e}")))?,
        created_at: now,
        expires_at: now + lifetime,
        used_at: None,
    };
    let kept = b
        .store
        .insert_pushed_request(&rec, b.config.limits.open_pushed_requests_per_client)
        .await?;
    if !kept {
        tracing::warn!(client = %client.client_id, "pushed requests: the client's cap of open requests is reached");
        return Err(OAuthError::temporarily_unavailable(
            "too many of this client's pushed requests are waiting; retry shortly",
        ));
    }
    Ok(Pushed {
        request_uri,
        expires_in: lifetime,
    })
}

/// The parameters of the pushed request `id_hash` of `client_id`, taken (once) now; or why
/// not, as the error to show.
pub async fn take(
    b: &Broker,
    client_id: &str,
    id_hash: &str,
) -> Result<Result<Vec<(String, String)>, OAuthError>, OAuthError> {
    match b
        .store
        .take_pushed_request(id_hash, client_id, b.now())
        .await?
    {
        Ok(json) => Ok(Ok(serde_json::from_str(&json).map_err(|e| {
            OAuthError::server_error(format!("stored pushed request: {e}"))
        })?)),
        Err(refusal) => {
            tracing::info!(client = %client_id, ?refusal, "request_uri refused");
            Ok(Err(refusal.error()))
        }
    }
}
