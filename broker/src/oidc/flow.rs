//! The login flow from /authorize to the code: SSO session reuse, the login transaction, the
//! card-helper ceremony, consent, code issuance. Called by the HTTP handlers; no HTTP here.

use super::authorize::{self, AuthRequest, AuthorizeError};
use super::error::OAuthError;
use super::keys::HintError;
use crate::app::Broker;
use crate::assurance;
use crate::authn::card::{self, CardLoginError, CardResponse, IssuedChallenge};
use crate::authn::{AuthFacts, RevocationFact};
use crate::clock::{ct_eq, random_bytes, random_token, token_hash};
use crate::pki::CertKind;
use crate::registry::Client;
use crate::store::{
    CardLoginOutcome, CertLink, CodeRecord, Finish, SessionRecord, TxRecord, TxStatus,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What /authorize does next.
#[derive(Debug)]
pub enum AuthorizeOutcome {
    /// Redirect the browser to the relying party (code or error).
    Redirect(String),
    /// Show an error page; never redirect (unknown client or unregistered redirect URI).
    ErrorPage(OAuthError),
    /// Start a login: set the transaction cookie and show the login page.
    Login {
        tx_id: String,
        browser_secret: String,
    },
    /// The person is logged in but must consent: set the cookie and show the consent page.
    Consent {
        tx_id: String,
        browser_secret: String,
    },
}

/// Data a code carries to the token endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeData {
    pub redirect_uri: String,
    pub scope: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub acr: Option<String>,
    pub facts: AuthFacts,
    pub claims: Option<serde_json::Value>,
}

/// A session looked up from its cookie, if valid now.
pub async fn current_session(
    b: &Broker,
    cookie: Option<&str>,
) -> Result<Option<(SessionRecord, AuthFacts)>, OAuthError> {
    let Some(c) = cookie else { return Ok(None) };
    let Some(s) = b.store.get_session(&token_hash(c)).await? else {
        return Ok(None);
    };
    if s.expires_at <= b.now() {
        return Ok(None);
    }
    let facts: AuthFacts = serde_json::from_str(&s.facts_json)
        .map_err(|e| OAuthError::server_error(format!("session facts: {e}")))?;
    Ok(Some((s, facts)))
}

/// Handle an authorization request (GET query or POST form) from `source` (the client's
/// address, when known).
pub async fn authorize(
    b: &Broker,
    params: &[(String, String)],
    session_cookie: Option<&str>,
    source: Option<std::net::IpAddr>,
) -> Result<AuthorizeOutcome, OAuthError> {
    let registry = b.registry();
    let (client, mut req) = match authorize::validate(params, &registry) {
        Ok(v) => v,
        Err(AuthorizeError::Page { error }) => return Ok(AuthorizeOutcome::ErrorPage(error)),
        Err(AuthorizeError::Redirect {
            redirect_uri,
            state,
            error,
        }) => {
            return Ok(AuthorizeOutcome::Redirect(authorize::error_redirect(
                &redirect_uri,
                state.as_deref(),
                &error,
                b.issuer(),
            )));
        }
    };
    let now = b.now();
    let fail = |e: OAuthError| {
        Ok(AuthorizeOutcome::Redirect(authorize::error_redirect(
            &req.redirect_uri,
            req.state.as_deref(),
            &e,
            b.issuer(),
        )))
    };
    // id_token_hint: an ID token this broker issued to this client names the person expected
    // to be logged in; a session of someone else is not used (OIDC Core 3.1.2.1).
    let hint_sub = match params.iter().find(|(k, _)| k == "id_token_hint") {
        None => None,
        Some((_, hint)) => {
            match b
                .keys()
                .verify_own_id_token(hint, b.issuer(), &client.client_id, now)
            {
                Ok(c) => c["sub"].as_str().map(str::to_string),
                // Signed by a key retired since: it cannot be checked, and it only narrows
                // who may be logged in, so it is ignored (the person logs in as usual).
                Err(HintError::UnknownKey) => None,
                Err(HintError::Invalid) => {
                    return fail(OAuthError::invalid_request(
                        "id_token_hint is not an ID token this broker issued to this client",
                    ));
                }
            }
        }
    };
    req.hint_sub = hint_sub.clone();
    let hint_ok = |s: &SessionRecord| {
        hint_sub
            .as_deref()
            .is_none_or(|h| h == super::token::subject(b, &client, &s.account_id))
    };
    let policy = b.policy();
    let need = requirement(&policy, &client, &req);
    let session = current_session(b, session_cookie).await?;
    // A session is reused unless the request wants a fresh login (prompt=login, max_age) or
    // more than the session's facts hold (a step-up). auth_time has whole seconds, so the time
    // really elapsed may be up to a second more than `now - auth_time`: a difference equal to
    // max_age may already exceed it, and counts as too old (max_age=0 always re-authenticates).
    let fresh =
        |f: &AuthFacts| !req.prompt_login && req.max_age.is_none_or(|m| now - f.auth_time < m);
    let usable = session
        .clone()
        .filter(|(s, f)| hint_ok(s) && fresh(f) && !need.wants_step_up(&policy, f, now));
    // A step-up where proofing is all that is missing asks only for the signature certificate.
    let proofing_only = match (&session, &usable) {
        (Some((s, f)), None) if hint_ok(s) && fresh(f) && !f.proofed => {
            let proofed = AuthFacts {
                proofed: true,
                ..f.clone()
            };
            match (&f.cert_issuer, &f.cert_serial) {
                (Some(issuer), Some(serial)) if !need.wants_step_up(&policy, &proofed, now) => {
                    Some(PendingAuth {
                        issuer: issuer.clone(),
                        serial: serial.clone(),
                        not_after: 0,
                        facts: f.clone(),
                    })
                }
                _ => None,
            }
        }
        _ => None,
    };
    let Some((session, facts)) = usable else {
        if req.prompt_none && session.as_ref().is_some_and(|(s, _)| !hint_ok(s)) {
            return fail(OAuthError::login_required(
                "the person logged in is not the one id_token_hint names, and prompt=none forbids asking",
            ));
        }
        if req.prompt_none {
            return fail(OAuthError::login_required(
                "the person is not logged in (or must log in again) and prompt=none forbids asking",
            ));
        }
        let (tx_id, browser_secret) =
            match new_transaction(b, &client, &req, None, proofing_only.as_ref(), source).await? {
                Ok(t) => t,
                Err(e) => return fail(e),
            };
        return Ok(AuthorizeOutcome::Login {
            tx_id,
            browser_secret,
        });
    };
    if !req.prompt_consent && has_consent(b, &session.account_id, &client, &req).await? {
        let url = issue_code(b, &client, &req, &session.account_id, &facts, None)
            .await?
            .ok_or_else(|| OAuthError::server_error("no login transaction to finish"))?;
        return Ok(AuthorizeOutcome::Redirect(url));
    }
    if req.prompt_none {
        return fail(OAuthError::consent_required(
            "the person has not consented to this relying party and scope, and prompt=none forbids asking",
        ));
    }
    let (tx_id, browser_secret) =
        match new_transaction(b, &client, &req, Some((&session, &facts)), None, source).await? {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
    Ok(AuthorizeOutcome::Consent {
        tx_id,
        browser_secret,
    })
}

async fn has_consent(
    b: &Broker,
    account_id: &str,
    client: &Client,
    req: &AuthRequest,
) -> Result<bool, OAuthError> {
    let items = super::claims::consent_items(client, req);
    if items.is_empty() {
        // Only a pairwise identifier leaves: nothing to consent to.
        return Ok(true);
    }
    let Some(granted) = b.store.get_consent(account_id, &client.client_id).await? else {
        return Ok(false);
    };
    let granted: Vec<&str> = granted.split(' ').collect();
    Ok(items.iter().all(|s| granted.contains(&s.as_str())))
}

/// The secret in the card-helper link, derived from the transaction and the browser's
/// secret so that only the browser that started the login can show it.
pub fn helper_secret(b: &Broker, tx_id: &str, browser_secret: &str) -> String {
    b.mac(
        "helper-link",
        format!("{tx_id}\n{browser_secret}").as_bytes(),
    )
}

pub fn helper_url(b: &Broker, helper_secret: &str) -> String {
    format!("{}/card/v1/tx/{helper_secret}", b.issuer())
}

/// The server HMAC of a source address: an IPv4 address, or the /64 of an IPv6 address (one
/// subscriber's network; a single host may hold all of it).
pub fn source_hash(b: &Broker, source: std::net::IpAddr) -> String {
    let mut h = match source.to_canonical() {
        std::net::IpAddr::V4(v4) => b.mac("source", &v4.octets()),
        std::net::IpAddr::V6(v6) => b.mac("source", &v6.octets()[..8]),
    };
    // 132 bits tell sources apart; a shorter key keeps its index small.
    h.truncate(22);
    h
}

/// Store a new login transaction: its id and the browser's secret, or — when its relying party
/// or its source has as many transactions open as `[limits]` allow — the refusal to redirect.
async fn new_transaction(
    b: &Broker,
    client: &Client,
    req: &AuthRequest,
    session: Option<(&SessionRecord, &AuthFacts)>,
    proofing: Option<&PendingAuth>,
    source: Option<std::net::IpAddr>,
) -> Result<Result<(String, String), OAuthError>, OAuthError> {
    let now = b.now();
    let lt = b.config.lifetimes;
    let tx_id = crate::clock::random_id();
    let browser_secret = random_token();
    let helper = helper_secret(b, &tx_id, &browser_secret);
    let code_num = u16::from_be_bytes(random_bytes::<2>()) % 10_000;
    let rec = TxRecord {
        id: tx_id.clone(),
        browser_hash: token_hash(&browser_secret),
        helper_hash: token_hash(&helper),
        client_id: client.client_id.clone(),
        request_json: serde_json::to_string(req)
            .map_err(|e| OAuthError::server_error(e.to_string()))?,
        created_at: now,
        expires_at: now + lt.transaction,
        status: if session.is_some() {
            TxStatus::Authenticated
        } else {
            TxStatus::Pending
        },
        challenge_nonce: random_token(),
        challenge_expires_at: now + lt.challenge,
        challenge_used: session.is_some(),
        binding_code: format!("{code_num:04}"),
        csrf: random_token(),
        account_id: session.map(|(s, _)| s.account_id.clone()),
        facts_json: session.map(|(s, _)| s.facts_json.clone()),
        session_hash: session.map(|(s, _)| s.id_hash.clone()),
        stage: if proofing.is_some() {
            "signature"
        } else {
            "user_auth"
        }
        .into(),
        pending_json: proofing
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| OAuthError::server_error(e.to_string()))?,
        source_hash: source.map(|s| source_hash(b, s)),
    };
    let limits = b.config.limits;
    let caps = crate::store::TxCaps {
        per_client: limits.open_transactions_per_client,
        per_source: limits.open_transactions_per_source,
    };
    Ok(match b.store.create_tx(&rec, caps).await? {
        crate::store::TxCreated::Created => Ok((tx_id, browser_secret)),
        crate::store::TxCreated::ClientFull => {
            metrics::counter!("broker_login_transactions_refused_total", "cap" => "client")
                .increment(1);
            tracing::warn!(client = %client.client_id, cap = caps.per_client, "open login transactions per client at the cap: request refused");
            Err(OAuthError::temporarily_unavailable(format!(
                "too many logins to this service are in progress ({}); try again in a few minutes",
                caps.per_client
            )))
        }
        crate::store::TxCreated::SourceFull => {
            metrics::counter!("broker_login_transactions_refused_total", "cap" => "source")
                .increment(1);
            tracing::warn!(client = %client.client_id, cap = caps.per_source, "open login transactions per source address at the cap: request refused");
            Err(OAuthError::temporarily_unavailable(format!(
                "too many logins are in progress from your network address ({}); try again in a few minutes",
                caps.per_source
            )))
        }
    })
}

/// What `req` (and the RP's minimum) asks of the authentication.
pub fn requirement(
    policy: &crate::registry::policy::Policy,
    client: &Client,
    req: &AuthRequest,
) -> assurance::Requirement {
    let min = policy.minimum_for(client.kind, client.min_acr.as_deref());
    assurance::Requirement::of(
        policy,
        min.as_deref(),
        None,
        &req.acr_values,
        req.claims.as_ref(),
    )
}

/// Issue a code for `req` and return the success redirect (RFC 9207 `iss` included) — or,
/// when the authentication does not meet an essential acr or the RP's minimum, the
/// `unmet_authentication_requirements` error redirect. With `finish_tx`, that login
/// transaction is marked done in the same database transaction as the code is stored;
/// `None` if it was done already (another request of the same browser won).
pub async fn issue_code(
    b: &Broker,
    client: &Client,
    req: &AuthRequest,
    account_id: &str,
    facts: &AuthFacts,
    finish: Option<Finish<'_>>,
) -> Result<Option<String>, OAuthError> {
    let policy = b.policy();
    let acr = match requirement(&policy, client, req).select(&policy, facts, b.now()) {
        Ok(l) => Some(l.acr.clone()),
        Err(why) => {
            if let Some(f) = finish
                && !b.store.finish_tx(f).await?
            {
                return Ok(None);
            }
            return Ok(Some(authorize::error_redirect(
                &req.redirect_uri,
                req.state.as_deref(),
                &OAuthError::unmet_authentication_requirements(why),
                b.issuer(),
            )));
        }
    };
    let data = CodeData {
        redirect_uri: req.redirect_uri.clone(),
        scope: req.scope.clone(),
        nonce: req.nonce.clone(),
        code_challenge: req.code_challenge.clone(),
        acr,
        facts: facts.clone(),
        claims: req.claims.clone(),
    };
    let code = random_token();
    let stored = b
        .store
        .insert_code(
            &CodeRecord {
                code_hash: token_hash(&code),
                grant_id: uuid::Uuid::new_v4().to_string(),
                client_id: client.client_id.clone(),
                account_id: account_id.to_string(),
                data_json: serde_json::to_string(&data)
                    .map_err(|e| OAuthError::server_error(e.to_string()))?,
                expires_at: b.now() + b.config.lifetimes.code,
                used_at: None,
            },
            finish,
        )
        .await?;
    if !stored {
        return Ok(None);
    }
    let mut p = vec![("code", code.as_str())];
    if let Some(s) = &req.state {
        p.push(("state", s));
    }
    p.push(("iss", b.issuer()));
    Ok(Some(authorize::redirect_with(&req.redirect_uri, &p)))
}

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
        if e.status == 503 {
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
        && *h != super::token::subject(b, &client, &account_id)
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
            issue_code(b, &client, &req, &account_id, &facts, Some(finish))
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
    let items = super::claims::consent_items(&client, &req);
    b.store
        .put_consent(&account_id, &client.client_id, &items.join(" "), b.now())
        .await?;
    issue_code(
        b,
        &client,
        &req,
        &account_id,
        &facts,
        Some(Finish::tx(&tx.id)),
    )
    .await?
    .ok_or(TxError::Gone)
}

/// What the card helper sees when it opens the link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChallengeView {
    /// base64url of the exact bytes the card must sign (SHA-256 DigestInfo, PKCS#1 v1.5).
    pub to_be_signed: String,
    pub issuer: String,
    pub transaction: String,
    pub client_id: String,
    pub client_name: String,
    pub client_name_ja: String,
    pub binding_code: String,
    pub expires_at: i64,
    /// Which certificate and PIN: `user_auth`.
    pub certificate: String,
    /// Where to POST the response.
    pub response_uri: String,
}

/// Check the certificate's revocation status; fail closed unless the policy names fail-open
/// levels (then the session records that revocation was not confirmed).
async fn revocation_fact(
    b: &Broker,
    cert: &crate::pki::ValidatedCert,
) -> Result<RevocationFact, CardLoginError> {
    use crate::pki::CertStatus;
    match b.checker().check(cert).await {
        Ok(ev) => match ev.status {
            CertStatus::Good => Ok(RevocationFact::Good),
            CertStatus::Revoked { reason, .. } => {
                tracing::info!(serial = %cert.serial_hex, reason = reason.map_or("unspecified", |r| r.as_str()), "revoked card refused");
                Err(CardLoginError::Revoked { reason })
            }
            CertStatus::Unknown => Err(CardLoginError::RevocationUnknown),
        },
        // The detail (responder URL, CRL location) goes to the log, never to the person.
        Err(e) if b.policy().revocation.fail_open_levels.is_empty() => {
            tracing::warn!(serial = %cert.serial_hex, error = %e, "revocation status unavailable: login refused");
            Err(CardLoginError::RevocationUnavailable(e.public_message()))
        }
        Err(e) => {
            tracing::warn!(serial = %cert.serial_hex, error = %e, "revocation unconfirmed: fail-open by policy");
            Ok(RevocationFact::Unconfirmed)
        }
    }
}

fn internal<E: std::fmt::Display + 'static>(e: E) -> CardLoginError {
    tracing::error!(error = %e, "card login: internal failure");
    match (&e as &dyn std::any::Any).downcast_ref::<crate::store::StoreError>() {
        Some(crate::store::StoreError::Unavailable(_)) => CardLoginError::Unavailable,
        _ => CardLoginError::Internal,
    }
}

async fn helper_tx(b: &Broker, helper_secret: &str) -> Result<TxRecord, CardLoginError> {
    let tx = b
        .store
        .get_tx_by_helper(&token_hash(helper_secret))
        .await
        .map_err(internal)?
        .ok_or(CardLoginError::UnknownTransaction)?;
    if tx.status != TxStatus::Pending || tx.challenge_used {
        return Err(CardLoginError::ChallengeUsed);
    }
    if tx.challenge_expires_at < b.now() || tx.expires_at <= b.now() {
        return Err(CardLoginError::ChallengeExpired);
    }
    Ok(tx)
}

/// The challenge a transaction currently asks for.
fn issued<'a>(b: &'a Broker, tx: &'a TxRecord) -> IssuedChallenge<'a> {
    IssuedChallenge {
        kind: stage_kind(&tx.stage),
        issuer: b.issuer(),
        transaction: &tx.id,
        client_id: &tx.client_id,
        nonce: &tx.challenge_nonce,
        expires_at: tx.challenge_expires_at,
        used: tx.challenge_used,
    }
}

fn stage_kind(stage: &str) -> CertKind {
    if stage == "signature" {
        CertKind::Signature
    } else {
        CertKind::UserAuth
    }
}

/// GET of the helper link: the challenge.
pub async fn card_challenge(
    b: &Broker,
    helper_secret: &str,
) -> Result<ChallengeView, CardLoginError> {
    let tx = helper_tx(b, helper_secret).await?;
    let client = b
        .registry()
        .get(&tx.client_id)
        .cloned()
        .ok_or(CardLoginError::UnknownTransaction)?;
    let msg = card::challenge_message(&issued(b, &tx));
    Ok(ChallengeView {
        to_be_signed: crate::clock::b64url(&msg),
        issuer: b.issuer().to_string(),
        transaction: tx.id.clone(),
        client_id: client.client_id.clone(),
        client_name: client.display_name.clone(),
        client_name_ja: client.display_name_ja.clone(),
        binding_code: tx.binding_code.clone(),
        expires_at: tx.challenge_expires_at,
        certificate: tx.stage.clone(),
        response_uri: helper_url(b, helper_secret),
    })
}

/// What a helper's answer achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardOutcome {
    /// The transaction is authenticated; the browser continues.
    Authenticated,
    /// The account must be proofed first: answer the next challenge (GET the link again) with
    /// the signature certificate and its PIN.
    ProofingRequired,
}

/// What stage one (user-authentication certificate) established, kept while proofing runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingAuth {
    issuer: String,
    serial: String,
    not_after: i64,
    facts: AuthFacts,
}

/// POST of the helper link: certificate + signature. On success the transaction is
/// authenticated (creating and linking the account where the policy allows), or moves on to
/// identity proofing; on any failure nothing is stored.
pub async fn card_submit(
    b: &Broker,
    helper_secret: &str,
    response: &CardResponse,
) -> Result<CardOutcome, CardLoginError> {
    let tx = helper_tx(b, helper_secret).await?;
    let cert = card::verify_response(&issued(b, &tx), response, &b.trust, b.clock.now())?;
    let revocation = revocation_fact(b, &cert).await?;
    if tx.stage == "signature" {
        return proofing_stage(b, &tx, &cert, revocation).await;
    }
    let now = b.now();
    let mut facts = AuthFacts::jpki_user_auth(&cert.issuer, &cert.serial_hex, revocation, now);
    let policy = b.policy();
    let account = b
        .store
        .account_by_cert(&cert.issuer, &cert.serial_hex)
        .await
        .map_err(internal)?;
    if let Some(a) = &account
        && let Some(v) = b.store.verified_claims(a).await.map_err(internal)?
        && v.stale_since.is_none()
    {
        facts.proofed = !signature_cert_revoked(b, &v).await.map_err(internal)?;
    }
    if crate::assurance::choose_acr(&policy, &facts, &[]).is_none() {
        // Fail-open was allowed, but no fail-open level fits these facts.
        return Err(CardLoginError::RevocationUnavailable(
            "no level of the policy may be granted without it",
        ));
    }
    let req: AuthRequest = serde_json::from_str(&tx.request_json).map_err(internal)?;
    let client = b.registry().get(&tx.client_id).cloned();
    let wants_identity = client
        .as_deref()
        .is_some_and(|c| super::claims::wants_identity(c, &req));
    let needs_level = client
        .as_deref()
        .is_some_and(|c| requirement(&policy, c, &req).needs_proofing(&policy, &facts, now));
    // Proofing is asked for when a new account would be created without it (unless the
    // policy allows unproofed accounts), or when the request needs it and the account's claims
    // are missing or stale.
    let new_unproofed = account.is_none() && !policy.proofing.allow_unproofed;
    if new_unproofed || (!facts.proofed && (wants_identity || needs_level)) {
        let pending = PendingAuth {
            issuer: cert.issuer.clone(),
            serial: cert.serial_hex.clone(),
            not_after: cert.not_after.unix_timestamp(),
            facts,
        };
        let ok = b
            .store
            .begin_proofing(
                &tx.helper_hash,
                &tx.challenge_nonce,
                &random_token(),
                now + b.config.lifetimes.challenge,
                &serde_json::to_string(&pending).map_err(internal)?,
            )
            .await
            .map_err(internal)?;
        if !ok {
            return Err(CardLoginError::ChallengeUsed);
        }
        tracing::info!(tx = %tx.id, "identity proofing required");
        return Ok(CardOutcome::ProofingRequired);
    }
    let link = CertLink {
        issuer: cert.issuer.clone(),
        serial: cert.serial_hex.clone(),
        kind: "user_auth".into(),
        not_after: cert.not_after.unix_timestamp(),
    };
    let facts_json = serde_json::to_string(&facts).map_err(internal)?;
    let outcome = b
        .store
        .complete_card_login(
            &tx.helper_hash,
            &tx.challenge_nonce,
            &link,
            account.as_deref(),
            &facts_json,
            now,
        )
        .await
        .map_err(internal)?;
    match outcome {
        CardLoginOutcome::Authenticated {
            account_id,
            new_account,
        } => {
            tracing::info!(tx = %tx.id, account = %account_id, new_account, serial = %cert.serial_hex, "card login");
            Ok(CardOutcome::Authenticated)
        }
        CardLoginOutcome::ChallengeUsed => Err(CardLoginError::ChallengeUsed),
        CardLoginOutcome::LinkConflict => Err(CardLoginError::LinkConflict),
    }
}

/// 現況確認: is the signature certificate behind an account's verified claims revoked now?
/// If so the claims are marked stale (e.g. `affiliationChanged`: the person's basic
/// information changed) and are not released until the person proofs again. Without an
/// answer the claims stand (they were verified; the login itself was checked separately).
/// Asked at every login and every release of the claims (token, userinfo): a cache hit costs a
/// hash lookup, and a revocation is seen within the revocation cache's bound (at once after
/// `broker certs purge`).
pub(crate) async fn signature_cert_revoked(
    b: &Broker,
    v: &crate::store::VerifiedClaimsRecord,
) -> Result<bool, crate::store::StoreError> {
    let (Some(issuer_cert_der), Ok(serial)) =
        (b.anchor_der(&v.sign_anchor), hex::decode(&v.sign_serial))
    else {
        return Ok(false);
    };
    let cert = crate::revocation::CertRef {
        anchor_label: v.sign_anchor.clone(),
        issuer_cert_der,
        serial,
    };
    match b.checker().check_ref(&cert).await {
        Ok(ev) => match &ev.status {
            crate::pki::CertStatus::Revoked { reason, .. } => {
                let why = reason.map_or("unspecified", |r| r.as_str());
                b.store
                    .mark_claims_stale(&v.sign_issuer, &v.sign_serial, why, b.now())
                    .await?;
                tracing::info!(account = %v.account_id, reason = why, "verified claims are stale: the signature certificate was revoked");
                Ok(true)
            }
            _ => Ok(false),
        },
        Err(e) => {
            tracing::warn!(account = %v.account_id, error = %e, "cannot re-check the signature certificate; verified claims kept");
            Ok(false)
        }
    }
}

/// The account of the certificate this one renews, following J-LIS-style link information
/// (the demo CA's `links.json` in demo mode).
async fn renewed_account(
    b: &Broker,
    kind: CertKind,
    issuer: &str,
    serial_hex: &str,
) -> Result<Option<String>, CardLoginError> {
    let Some(links) = b.demo_ca() else {
        return Ok(None);
    };
    let mut serial = serial_hex.to_string();
    for _ in 0..16 {
        let Some(prev) = links.predecessor(kind, &serial) else {
            return Ok(None);
        };
        if let Some(a) = b
            .store
            .account_by_cert(issuer, &prev)
            .await
            .map_err(internal)?
        {
            return Ok(Some(a));
        }
        serial = prev;
    }
    Ok(None)
}

/// Stage two: the signature certificate proofs the person; its basic four become the
/// account's verified claims and both certificates are linked to the account.
async fn proofing_stage(
    b: &Broker,
    tx: &TxRecord,
    cert: &crate::pki::ValidatedCert,
    revocation: RevocationFact,
) -> Result<CardOutcome, CardLoginError> {
    let pending: PendingAuth = tx
        .pending_json
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok())
        .ok_or(CardLoginError::UnknownTransaction)?;
    let basic4 = cert
        .basic4
        .as_ref()
        .ok_or(CardLoginError::NoBasicInformation)?;
    let now = b.now();
    let mut facts = pending.facts.clone();
    facts.proofed = true;
    // The weaker of the two certificates' revocation answers stands.
    if revocation == RevocationFact::Unconfirmed {
        facts.revocation = RevocationFact::Unconfirmed;
    }
    let claims = crate::authn::proofing::IdentityClaims::from(basic4);
    let evidence = crate::authn::proofing::ProofingEvidence::of(cert, b.clock.now());
    let mut p = crate::store::Proofing {
        sign_anchor: cert.anchor_label.clone(),
        auth: CertLink {
            issuer: pending.issuer.clone(),
            serial: pending.serial.clone(),
            kind: "user_auth".into(),
            not_after: pending.not_after,
        },
        sign: CertLink {
            issuer: cert.issuer.clone(),
            serial: cert.serial_hex.clone(),
            kind: "signature".into(),
            not_after: cert.not_after.unix_timestamp(),
        },
        claims_json: serde_json::to_string(&claims).map_err(internal)?,
        evidence_json: serde_json::to_string(&evidence).map_err(internal)?,
        facts_json: serde_json::to_string(&facts).map_err(internal)?,
        plan: crate::authn::proofing::LinkPlan::New,
    };
    // A link made meanwhile by another login (the same card's first login in two tabs, say)
    // undoes the write; the decision is made again over the links as they are now, once.
    for attempt in 0..2 {
        p.plan = link_plan(b, &pending, cert, &claims.birthdate).await?;
        match b
            .store
            .complete_proofing(&tx.helper_hash, &tx.challenge_nonce, &p, now)
            .await
            .map_err(internal)?
        {
            CardLoginOutcome::Authenticated {
                account_id,
                new_account,
            } => {
                tracing::info!(target: "audit", tx = %tx.id, account = %account_id, new_account, sign_serial = %cert.serial_hex, "identity proofed");
                return Ok(CardOutcome::Authenticated);
            }
            CardLoginOutcome::ChallengeUsed => return Err(CardLoginError::ChallengeUsed),
            CardLoginOutcome::LinkConflict if attempt == 0 => continue,
            CardLoginOutcome::LinkConflict => return Err(CardLoginError::LinkConflict),
        }
    }
    Err(CardLoginError::LinkConflict)
}

/// Which account the two certificates of a proofing may join (`authn::proofing::decide_link`
/// over what the store and the link information say); a refusal is logged for the audit.
async fn link_plan(
    b: &Broker,
    pending: &PendingAuth,
    sign: &crate::pki::ValidatedCert,
    new_birthdate: &str,
) -> Result<crate::authn::proofing::LinkPlan, CardLoginError> {
    use crate::authn::proofing::{LinkFacts, decide_link};
    let account_of = |issuer: &str, serial: &str| {
        let (issuer, serial) = (issuer.to_string(), serial.to_string());
        async move {
            b.store
                .account_by_cert(&issuer, &serial)
                .await
                .map_err(internal)
        }
    };
    let f = LinkFacts {
        auth_linked: account_of(&pending.issuer, &pending.serial).await?,
        sign_linked: account_of(&sign.issuer, &sign.serial_hex).await?,
        auth_renews: renewed_account(b, CertKind::UserAuth, &pending.issuer, &pending.serial)
            .await?,
        sign_renews: renewed_account(b, CertKind::Signature, &sign.issuer, &sign.serial_hex)
            .await?,
    };
    let refused = |why: crate::authn::proofing::LinkRefusal| {
        tracing::warn!(target: "audit", auth_serial = %pending.serial, sign_serial = %sign.serial_hex, facts = ?f, refusal = ?why, "certificate link refused");
        CardLoginError::LinkRefused(why)
    };
    let target = f.target().map_err(refused)?;
    let target_birthdate = match target {
        Some(a) => b
            .store
            .verified_claims(a)
            .await
            .map_err(internal)?
            .and_then(|v| {
                serde_json::from_str::<crate::authn::proofing::IdentityClaims>(&v.claims_json).ok()
            })
            .map(|c| c.birthdate),
        None => None,
    };
    decide_link(&f, target_birthdate.as_deref(), new_birthdate).map_err(refused)
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
        stage: bt.tx.stage.clone(),
    })
}
