//! The conductor's browser steps of a login: the login page's transaction, its status, the
//! continuation after the card, and consent.

use super::authorize::{has_consent, helper_secret, helper_url, issue_code};
use crate::app::Broker;
use crate::authn::AuthFacts;
use crate::clock::{ct_eq, random_token, token_hash};
use crate::oidc::OAuthError;
use crate::oidc::authorize::{self, AuthRequest};
use crate::registry::Client;
use crate::store::{Finish, SessionRecord, TxRecord, TxStatus};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Why a browser step on a transaction failed. Shown on the error page.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TxError {
    #[error("this login is unknown, finished or expired; go back to the service and start again")]
    Gone,
    #[error("this login was started in another browser")]
    WrongBrowser,
    #[error("the card has not been used yet")]
    NotAuthenticated,
    #[error("the form is out of date; go back to the service and start again")]
    BadCsrf,
    #[error("internal error")]
    Internal,
    #[error("the service is briefly unavailable; wait a moment and reload this page")]
    Unavailable,
}

impl From<OAuthError> for TxError {
    fn from(e: OAuthError) -> Self {
        if e.code == crate::oidc::ErrorCode::TemporarilyUnavailable {
            TxError::Unavailable
        } else {
            tracing::error!(error = %e, "login step failed");
            TxError::Internal
        }
    }
}

impl From<crate::store::StoreError> for TxError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        match e {
            crate::store::StoreError::Unavailable(_) => TxError::Unavailable,
            _ => TxError::Internal,
        }
    }
}

/// A transaction that belongs to the browser presenting `browser_secret`.
pub struct BrowserTx {
    pub tx: TxRecord,
    pub req: AuthRequest,
    pub client: Arc<Client>,
}

pub async fn browser_tx(
    b: &Broker,
    tx_id: &str,
    browser_secret: Option<&str>,
) -> Result<BrowserTx, TxError> {
    let tx = b.store.get_tx(tx_id).await?.ok_or(TxError::Gone)?;
    if tx.expires_at <= b.now() || tx.status == TxStatus::Done {
        return Err(TxError::Gone);
    }
    let secret = browser_secret.ok_or(TxError::WrongBrowser)?;
    if !ct_eq(token_hash(secret).as_bytes(), tx.browser_hash.as_bytes()) {
        return Err(TxError::WrongBrowser);
    }
    let req: AuthRequest = serde_json::from_str(&tx.request_json).map_err(|_| TxError::Internal)?;
    // The registry may have been reloaded: a removed client ends the transaction.
    let client = b
        .registry()
        .get(&tx.client_id)
        .cloned()
        .ok_or(TxError::Gone)?;
    Ok(BrowserTx { tx, req, client })
}

/// What the browser does after the card was used: set the new SSO session cookie, then go on.
#[derive(Debug)]
pub struct ContinueOutcome {
    /// The new SSO session's cookie value (none when the login was refused).
    pub session_secret: Option<String>,
    pub next: Next,
}

#[derive(Debug)]
pub enum Next {
    Redirect(String),
    Consent(String),
}

/// The browser continues after the helper reported success: open the SSO session, then
/// consent or code.
pub async fn continue_login(
    b: &Broker,
    tx_id: &str,
    browser_secret: Option<&str>,
) -> Result<ContinueOutcome, TxError> {
    let BrowserTx { tx, req, client } = browser_tx(b, tx_id, browser_secret).await?;
    if tx.status != TxStatus::Authenticated || tx.session_hash.is_some() {
        return Err(TxError::NotAuthenticated);
    }
    let (Some(account_id), Some(facts_json)) = (tx.account_id.clone(), tx.facts_json.clone())
    else {
        return Err(TxError::NotAuthenticated);
    };
    let facts: AuthFacts = serde_json::from_str(&facts_json).map_err(|_| TxError::Internal)?;
    // The request named someone (id_token_hint) and someone else logged in: no session, no
    // code — login_required back to the relying party (OIDC Core 3.1.2.1).
    if let Some(h) = &req.hint_sub
        && *h != crate::oidc::token::subject(b.server_key(), &client, &account_id)
    {
        if !b.store.finish_tx(Finish::tx(&tx.id)).await? {
            return Err(TxError::Gone);
        }
        return Ok(ContinueOutcome {
            session_secret: None,
            next: Next::Redirect(authorize::error_redirect(
                &req.redirect_uri,
                req.state.as_deref(),
                &OAuthError::login_required(
                    "the person who logged in is not the one id_token_hint names",
                ),
                b.issuer(),
            )),
        });
    }
    let now = b.now();
    let session_secret = random_token();
    let session = SessionRecord {
        id_hash: token_hash(&session_secret),
        account_id: account_id.clone(),
        created_at: now,
        expires_at: now + b.config.lifetimes.session,
        facts_json,
    };
    let next = if !req.prompt_consent && has_consent(b, &account_id, &client, &req).await? {
        // Straight back to the relying party: session, transaction done and code in one
        // database transaction.
        let finish = Finish {
            tx_id: &tx.id,
            session: Some(&session),
        };
        Next::Redirect(
            issue_code(
                b,
                &client,
                &req,
                &account_id,
                &facts,
                Some(&session.id_hash),
                Some(finish),
            )
            .await?
            .ok_or(TxError::Gone)?,
        )
    } else {
        b.store.create_session(&session).await?;
        b.store.bind_tx_session(&tx.id, &session.id_hash).await?;
        Next::Consent(format!("{}/consent/{}", b.issuer(), tx.id))
    };
    Ok(ContinueOutcome {
        session_secret: Some(session_secret),
        next,
    })
}

/// The level (acr) the transaction's authentication reaches for its request, as the ID
/// token will state it.
pub fn level_reached(b: &Broker, bt: &BrowserTx) -> Option<String> {
    let facts: AuthFacts = serde_json::from_str(bt.tx.facts_json.as_deref()?).ok()?;
    let policy = b.policy();
    crate::oidc::authorize::requirement(&policy, &bt.client, &bt.req)
        .select(&policy, &facts, b.now())
        .ok()
        .map(|l| l.acr.clone())
}

/// Consent decision from the consent page. Returns the redirect to the relying party.
pub async fn decide_consent(
    b: &Broker,
    tx_id: &str,
    browser_secret: Option<&str>,
    csrf: &str,
    approve: bool,
) -> Result<String, TxError> {
    let BrowserTx { tx, req, client } = browser_tx(b, tx_id, browser_secret).await?;
    if !ct_eq(csrf.as_bytes(), tx.csrf.as_bytes()) {
        return Err(TxError::BadCsrf);
    }
    let (Some(account_id), Some(facts_json)) = (tx.account_id.clone(), tx.facts_json.clone())
    else {
        return Err(TxError::NotAuthenticated);
    };
    if tx.status != TxStatus::Authenticated || tx.session_hash.is_none() {
        return Err(TxError::NotAuthenticated);
    }
    if !approve {
        if !b.store.finish_tx(Finish::tx(&tx.id)).await? {
            return Err(TxError::Gone);
        }
        return Ok(authorize::error_redirect(
            &req.redirect_uri,
            req.state.as_deref(),
            &OAuthError::access_denied("the person declined"),
            b.issuer(),
        ));
    }
    let facts: AuthFacts = serde_json::from_str(&facts_json).map_err(|_| TxError::Internal)?;
    let items = crate::oidc::claims::consent_items(&client, &req);
    b.store
        .put_consent(&account_id, &client.client_id, &items.join(" "), b.now())
        .await?;
    issue_code(
        b,
        &client,
        &req,
        &account_id,
        &facts,
        tx.session_hash.as_deref(),
        Some(Finish::tx(&tx.id)),
    )
    .await?
    .ok_or(TxError::Gone)
}

/// Status of a transaction for the polling login page.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TxStatusView {
    /// `pending` (waiting for the card), `authenticated` (continue), `done`.
    pub status: String,
    pub helper_url: String,
    pub binding_code: String,
    pub continue_url: String,
    /// Which certificate the helper is asked for now: `user_auth`, then `signature` when
    /// identity proofing is needed.
    pub stage: String,
}

pub async fn tx_status(
    b: &Broker,
    tx_id: &str,
    browser_secret: Option<&str>,
) -> Result<TxStatusView, TxError> {
    let bt = browser_tx(b, tx_id, browser_secret).await?;
    let secret = browser_secret.unwrap_or_default();
    Ok(TxStatusView {
        status: bt.tx.status.as_str().to_string(),
        helper_url: helper_url(b, &helper_secret(b, tx_id, secret)),
        binding_code: bt.tx.binding_code.clone(),
        continue_url: format!("{}/login/{}/continue", b.issuer(), tx_id),
        stage: bt.tx.stage.name().into(),
    })
}
