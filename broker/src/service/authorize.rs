//! The conductor's authorization step: an authorization request (validated by
//! `oidc::authorize`), the browser's SSO session and the person's consent decide whether a code
//! is issued at once, consent is asked, or a login transaction starts.

use crate::app::Broker;
use crate::authn::AuthFacts;
use crate::authn::ceremony::{PendingAuth, Stage};
use crate::clock::{random_bytes, random_token, token_hash};
use crate::oidc::OAuthError;
use crate::oidc::authorize::{self, AuthRequest, AuthorizeError, Channel, requirement};
use crate::oidc::keys::HintError;
use crate::oidc::login::{self, Decision};
use crate::oidc::token::CodeData;
use crate::registry::Client;
use crate::store::{CodeRecord, Finish, SessionRecord, TxRecord, TxStatus};

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

/// The browser's SSO session, if its cookie names a live one, with what its person consented
/// to for `client_id` (one store query).
async fn load_session(
    b: &Broker,
    cookie: Option<&str>,
    client_id: &str,
) -> Result<Option<(SessionRecord, AuthFacts, Option<String>)>, OAuthError> {
    let Some(c) = cookie else { return Ok(None) };
    let Some((s, consented)) = b
        .store
        .session_with_consent(&token_hash(c), client_id)
        .await?
    else {
        return Ok(None);
    };
    if s.expires_at <= b.now() {
        return Ok(None);
    }
    let facts: AuthFacts = serde_json::from_str(&s.facts_json)
        .map_err(|e| OAuthError::server_error(format!("session facts: {e}")))?;
    Ok(Some((s, facts, consented)))
}

/// The `sub` an `id_token_hint` names: an ID token this broker issued to this client names the
/// person expected to be logged in (OIDC Core 3.1.2.1).
fn hinted_subject(
    b: &Broker,
    params: &[(String, String)],
    client: &Client,
    now: i64,
) -> Result<Option<String>, OAuthError> {
    let Some((_, hint)) = params.iter().find(|(k, _)| k == "id_token_hint") else {
        return Ok(None);
    };
    match b
        .keys()
        .verify_own_id_token(hint, b.issuer(), &client.client_id, now)
    {
        Ok(c) => Ok(c["sub"].as_str().map(str::to_string)),
        // Signed by a key retired since: it cannot be checked, and it only narrows who may be
        // logged in, so it is ignored (the person logs in as usual).
        Err(HintError::UnknownKey) => Ok(None),
        Err(HintError::Invalid) => Err(OAuthError::invalid_request(
            "id_token_hint is not an ID token this broker issued to this client",
        )),
    }
}

/// The parameters of a front-channel request's request object: `client_id` (once, registered)
/// names the client whose keys must have signed it; or the refusal to show.
async fn from_request_object(
    b: &Broker,
    registry: &crate::registry::Registry,
    params: &[(String, String)],
) -> Result<Result<Vec<(String, String)>, OAuthError>, OAuthError> {
    let one = |k: &str| {
        let mut it = params.iter().filter(|(n, _)| n == k);
        match (it.next(), it.next()) {
            (Some((_, v)), None) if !v.is_empty() => Ok(v.as_str()),
            (Some(_), Some(_)) => Err(OAuthError::invalid_request(format!("{k} is repeated"))),
            _ => Err(OAuthError::invalid_request(format!(
                "{k} is missing (client_id must come with request)"
            ))),
        }
    };
    let (client_id, jwt) = match (one("client_id"), one("request")) {
        (Ok(c), Ok(r)) => (c, r),
        (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
    };
    let Some(client) = registry.get(client_id) else {
        return Ok(Err(OAuthError::invalid_client(format!(
            "client_id `{client_id}` is not registered"
        ))));
    };
    match crate::service::par::request_object(b, client, jwt).await {
        Ok(p) => Ok(Ok(p)),
        Err(e) if e.code == crate::oidc::ErrorCode::InvalidRequestObject => Ok(Err(e)),
        Err(e) => Err(e),
    }
}

/// How long `client`'s codes live: `[lifetimes] code`, at most 60 s for a fapi2 client
/// (FAPI 2.0 Security Profile §5.3.2.1).
fn code_lifetime(b: &Broker, client: &Client) -> i64 {
    match client.profile {
        crate::registry::Profile::Fapi2 => b.config.lifetimes.code.min(60),
        crate::registry::Profile::Oidc => b.config.lifetimes.code,
    }
}

/// Handle an authorization request (GET query or POST form) from `source` (the client's
/// address, when known): verify it, load the browser's session and consent, decide
/// (`oidc::login::decide`), and write what that says — a code, or a login transaction.
pub async fn authorize(
    b: &Broker,
    params: &[(String, String)],
    session_cookie: Option<&str>,
    source: Option<std::net::IpAddr>,
) -> Result<AuthorizeOutcome, OAuthError> {
    let registry = b.registry();
    // A request that names a pushed one (RFC 9126 §4) is that request, taken once: the
    // values come from it alone.
    let pushed;
    let (params, channel) = match crate::oidc::par::reference(params) {
        Err(error) => return Ok(AuthorizeOutcome::ErrorPage(error)),
        // A request object (RFC 9101 §5): its values alone; refused on the page, as its
        // redirect URI cannot be trusted before it verifies.
        Ok(None) if params.iter().any(|(k, _)| k == "request") => {
            match from_request_object(b, &registry, params).await? {
                Ok(p) => {
                    pushed = p;
                    (&pushed[..], Channel::Front)
                }
                Err(error) => return Ok(AuthorizeOutcome::ErrorPage(error)),
            }
        }
        Ok(None) => (params, Channel::Front),
        Ok(Some((client_id, id_hash))) => {
            match crate::service::par::take(b, &client_id, &id_hash).await? {
                Ok(p) => {
                    pushed = p;
                    (&pushed[..], Channel::Pushed)
                }
                Err(error) => return Ok(AuthorizeOutcome::ErrorPage(error)),
            }
        }
    };
    let (client, req) = match authorize::validate_in(params, &registry, channel) {
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
    proceed(b, &client, req, params, session_cookie, source).await
}

/// An authorization request, validated, goes on: the hint, the session, the decision, and one
/// write (a code, or a login transaction). The device grant's approval enters here with its
/// own request (`service::device`).
pub(crate) async fn proceed(
    b: &Broker,
    client: &Client,
    mut req: AuthRequest,
    params: &[(String, String)],
    session_cookie: Option<&str>,
    source: Option<std::net::IpAddr>,
) -> Result<AuthorizeOutcome, OAuthError> {
    let now = b.now();
    let fail = |e: OAuthError| {
        Ok(AuthorizeOutcome::Redirect(authorize::error_redirect(
            &req.redirect_uri,
            req.state.as_deref(),
            &e,
            b.issuer(),
        )))
    };
    req.hint_sub = match hinted_subject(b, params, client, now) {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    // Load.
    let loaded = load_session(b, session_cookie, &client.client_id).await?;
    // Decide.
    let policy = b.policy();
    let need = requirement(&policy, client, &req);
    let items = crate::oidc::claims::consent_items(client, &req);
    let view = loaded.as_ref().map(|(s, facts, consented)| login::Session {
        facts,
        is_hinted_person: req.hint_sub.as_deref().is_none_or(|h| {
            h == crate::oidc::token::subject(b.server_key(), client, &s.account_id)
        }),
        consented: consented.as_deref(),
    });
    let decision = login::decide(&req, &need, &policy, &items, view.as_ref(), now);
    // Write once: a code, or a transaction.
    let session = loaded.as_ref().map(|(s, f, _)| (s, f));
    let (tx, proofing) = match decision {
        Decision::Refuse(e) => return fail(e),
        Decision::Code => {
            let (s, facts) = session.ok_or_else(|| OAuthError::server_error("no session"))?;
            let url = issue_code(
                b,
                client,
                &req,
                &s.account_id,
                facts,
                Some(&s.id_hash),
                None,
            )
            .await?
            .ok_or_else(|| OAuthError::server_error("no login transaction to finish"))?;
            return Ok(AuthorizeOutcome::Redirect(url));
        }
        Decision::Consent => (session, None),
        Decision::Login { proofing_only } => (None, proofing_only),
    };
    let (tx_id, browser_secret) =
        match new_transaction(b, client, &req, tx, proofing.as_ref(), source).await? {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
    Ok(if tx.is_some() {
        AuthorizeOutcome::Consent {
            tx_id,
            browser_secret,
        }
    } else {
        AuthorizeOutcome::Login {
            tx_id,
            browser_secret,
        }
    })
}

/// Did the person consent to what `req` would release to `client`?
pub(super) async fn has_consent(
    b: &Broker,
    account_id: &str,
    client: &Client,
    req: &AuthRequest,
) -> Result<bool, OAuthError> {
    let items = crate::oidc::claims::consent_items(client, req);
    if items.is_empty() || client.first_party {
        return Ok(true);
    }
    let granted = b.store.get_consent(account_id, &client.client_id).await?;
    Ok(login::consent_covers(&items, granted.as_deref()))
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
        stage: match proofing {
            Some(p) => Stage::Proofing(Box::new(p.clone())),
            None => Stage::UserAuth,
        },
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
    session_hash: Option<&str>,
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
        sid: session_hash.map(|h| crate::oidc::token::session_sid(b.server_key(), h)),
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
                expires_at: b.now() + code_lifetime(b, client),
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
