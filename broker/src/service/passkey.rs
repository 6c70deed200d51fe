//! The conductor's side of passkeys: each ceremony loads what it needs, lets `webauthn-rs`
//! verify the authenticator's answer and `authn::passkey` decide, and writes once.
//!
//! - Enrolment: [`begin_enrol`] / [`finish_enrol`], inside an SSO session that a card login
//!   brought to the policy's enrolment level, on a proofed account.
//! - Login: [`begin_login`] / [`finish_login`], on a login transaction's page (discoverable
//!   credentials: the authenticator names the passkey, no user name is typed).
//!
//! A ceremony's state is kept in the database (`webauthn_ceremonies`) between the two calls,
//! so any process finishes what another began; finishing takes it, whatever the outcome.

use crate::app::Broker;
use crate::authn::passkey::{self as core, CardCert, CardStatus, PasskeyError};
use crate::clock::{b64url, random_token, token_hash};
use crate::store::{
    CeremonyRecord, PasskeyInsert, PasskeyLoginOutcome, PasskeyRecord, PasskeyUse, StoreError,
};
use serde_json::Value;
use webauthn_rs::prelude::{
    Credential, DiscoverableAuthentication, Passkey, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Uuid, WebauthnError,
};

impl From<StoreError> for PasskeyError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure in a passkey ceremony");
        match e {
            StoreError::Unavailable(_) => PasskeyError::Unavailable,
            _ => PasskeyError::Internal,
        }
    }
}

/// What the browser gets to start a ceremony: the id to send back, and the options for
/// `navigator.credentials.create()` / `.get()` (`publicKey`, base64url binary fields).
#[derive(Debug, serde::Serialize)]
pub struct Started {
    pub ceremony: String,
    #[serde(rename = "publicKey")]
    pub public_key: Value,
}

fn webauthn(b: &Broker) -> Result<&webauthn_rs::Webauthn, PasskeyError> {
    if !b.policy().passkeys.enabled {
        return Err(PasskeyError::Disabled);
    }
    b.webauthn().ok_or(PasskeyError::Disabled)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, PasskeyError> {
    serde_json::to_string(v).map_err(|e| {
        tracing::error!(error = %e, "passkey state not serializable");
        PasskeyError::Internal
    })
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, PasskeyError> {
    serde_json::from_str(s).map_err(|e| {
        tracing::error!(error = %e, "stored passkey state unreadable");
        PasskeyError::Internal
    })
}

/// The WebAuthn user handle of an account: derived with the server key, so it names the
/// account to no one else and needs no table of its own.
fn user_handle(b: &Broker, account_id: &str) -> Uuid {
    let mac = b.server_key().mac("webauthn-user", account_id.as_bytes());
    let bytes = crate::clock::b64url_decode(&mac).unwrap_or_default();
    let mut id = [0u8; 16];
    if let Some(b) = bytes.get(..16) {
        id.copy_from_slice(b);
    }
    uuid::Builder::from_random_bytes(id).into_uuid()
}

/// webauthn-rs's refusal, said as what failed; a counter that went backwards apart.
fn refused(e: WebauthnError) -> PasskeyError {
    match e {
        WebauthnError::CredentialPossibleCompromise => PasskeyError::CounterRegressed,
        WebauthnError::InvalidRPOrigin => {
            PasskeyError::Refused("the answer was made for another site (origin)".into())
        }
        WebauthnError::InvalidRPIDHash => {
            PasskeyError::Refused("the answer was made for another site (RP ID)".into())
        }
        WebauthnError::UserNotVerified => PasskeyError::Refused(
            "the authenticator did not verify the user (PIN or biometric)".into(),
        ),
        WebauthnError::CredentialBackupEligibilityInconsistent => PasskeyError::Refused(
            "the passkey's backup eligibility changed since it was added: remove it and add it again"
                .into(),
        ),
        WebauthnError::MismatchedChallenge => {
            PasskeyError::Refused("the answer is for another challenge".into())
        }
        e => PasskeyError::Refused(e.to_string()),
    }
}

/// The session behind a cookie, if live: its account and facts.
async fn live_session(
    b: &Broker,
    session_secret: Option<&str>,
) -> Result<(String, crate::store::SessionRecord, crate::authn::AuthFacts), PasskeyError> {
    let secret = session_secret.ok_or(PasskeyError::NoSession)?;
    let hash = token_hash(secret);
    let s = b
        .store
        .get_session(&hash)
        .await?
        .filter(|s| s.expires_at > b.now())
        .ok_or(PasskeyError::NoSession)?;
    let facts = from_json(&s.facts_json)?;
    Ok((hash, s, facts))
}

/// Start adding a passkey to the session's account.
pub async fn begin_enrol(
    b: &Broker,
    session_secret: Option<&str>,
) -> Result<Started, PasskeyError> {
    let w = webauthn(b)?;
    let (hash, session, facts) = live_session(b, session_secret).await?;
    let policy = b.policy();
    let proofed = crate::service::claims::current(b, &session.account_id).await?;
    crate::assurance::passkey::may_enrol(&policy, &facts, proofed, b.now())?;
    let existing = b.store.passkeys_of(&session.account_id).await?;
    if existing.len() >= policy.passkeys.max_per_account {
        return Err(PasskeyError::TooMany {
            max: policy.passkeys.max_per_account,
        });
    }
    let exclude = existing
        .iter()
        .filter_map(|p| crate::clock::b64url_decode(&p.cred_id))
        .collect();
    let host = url::Url::parse(b.issuer())
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let (ccr, state) = w
        .start_passkey_registration(
            user_handle(b, &session.account_id),
            &host,
            "マイナンバーカード / My Number card",
            Some(exclude),
        )
        .map_err(refused)?;
    let mut public_key =
        serde_json::to_value(&ccr.public_key).map_err(|_| PasskeyError::Internal)?;
    // A discoverable credential (a passkey the authenticator can offer without a user name):
    // the login page asks for none.
    if let Some(options) = public_key.as_object_mut() {
        let sel = options
            .entry("authenticatorSelection")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(sel) = sel.as_object_mut() {
            sel.insert("residentKey".into(), "required".into());
            sel.insert("requireResidentKey".into(), true.into());
            sel.insert("userVerification".into(), "required".into());
        }
    }
    let ceremony = random_token();
    b.store
        .put_ceremony(&CeremonyRecord {
            id_hash: token_hash(&ceremony),
            purpose: "enrol".into(),
            binding: hash,
            account_id: Some(session.account_id.clone()),
            state_json: to_json(&state)?,
            expires_at: b.now() + policy.passkeys.ceremony_seconds,
        })
        .await?;
    Ok(Started {
        ceremony,
        public_key,
    })
}

/// Take the ceremony the browser names: once, unexpired.
async fn take_ceremony(
    b: &Broker,
    ceremony: &str,
    now: i64,
) -> Result<CeremonyRecord, PasskeyError> {
    b.store
        .take_ceremony(&token_hash(ceremony), now)
        .await?
        .ok_or(PasskeyError::UnknownCeremony)
}

/// The name a passkey gets when the person gives none.
fn default_name(backup_eligible: bool) -> &'static str {
    if backup_eligible {
        "Passkey (synced)"
    } else {
        "Passkey (this device)"
    }
}

/// Check a name given to a passkey: 1–64 characters, no control characters.
pub fn passkey_name(name: &str) -> Result<String, PasskeyError> {
    let name = name.trim();
    if name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(PasskeyError::Malformed(
            "a passkey's name is at most 64 characters, without control characters".into(),
        ));
    }
    Ok(name.to_string())
}

/// Finish adding a passkey: the authenticator's answer to the ceremony `ceremony`.
pub async fn finish_enrol(
    b: &Broker,
    session_secret: Option<&str>,
    ceremony: &str,
    answer: &RegisterPublicKeyCredential,
    name: &str,
) -> Result<PasskeyRecord, PasskeyError> {
    let w = webauthn(b)?;
    let name = passkey_name(name)?;
    let now = b.now();
    let c = take_ceremony(b, ceremony, now).await?;
    let (hash, session, facts) = live_session(b, session_secret).await?;
    if c.purpose != "enrol"
        || c.binding != hash
        || c.account_id.as_deref() != Some(&session.account_id)
    {
        return Err(PasskeyError::UnknownCeremony);
    }
    // The session may have aged past the enrolment level, or its card been found revoked.
    let policy = b.policy();
    let proofed = crate::service::claims::current(b, &session.account_id).await?;
    crate::assurance::passkey::may_enrol(&policy, &facts, proofed, now)?;
    let state: PasskeyRegistration = from_json(&c.state_json)?;
    let passkey = w
        .finish_passkey_registration(answer, &state)
        .map_err(refused)?;
    let cred: Credential = passkey.clone().into();
    let (Some(anchor), Some(issuer), Some(serial)) = (
        facts.cert_anchor.clone(),
        facts.cert_issuer.clone(),
        facts.cert_serial.clone(),
    ) else {
        return Err(PasskeyError::BelowEnrolLevel {
            level: policy
                .enrol_level()
                .map(|l| l.acr.clone())
                .unwrap_or_default(),
        });
    };
    let record = PasskeyRecord {
        id: crate::clock::random_id(),
        account_id: session.account_id.clone(),
        cred_id: b64url(passkey.cred_id()),
        user_handle: user_handle(b, &session.account_id).to_string(),
        credential_json: to_json(&passkey)?,
        name: if name.is_empty() {
            default_name(cred.backup_eligible).to_string()
        } else {
            name
        },
        backup_eligible: cred.backup_eligible.into(),
        backup_state: cred.backup_state.into(),
        sign_count: cred.counter.into(),
        card_anchor: anchor,
        card_issuer: issuer,
        card_serial: serial,
        card_not_after: facts.cert_not_after.unwrap_or(0),
        created_at: now,
        last_used_at: None,
        suspended_at: None,
        suspended_reason: None,
    };
    match b
        .store
        .insert_passkey(&record, policy.passkeys.max_per_account, now)
        .await?
    {
        PasskeyInsert::Inserted => {
            tracing::info!(target: "audit", account = %record.account_id, passkey = %record.id, kind = core::kind(cred.backup_eligible), "passkey added");
            Ok(record)
        }
        PasskeyInsert::Duplicate => Err(PasskeyError::AlreadyRegistered),
        PasskeyInsert::TooMany => Err(PasskeyError::TooMany {
            max: policy.passkeys.max_per_account,
        }),
    }
}

/// Start a passkey login on the login transaction `tx_id` (its browser's cookie secret).
pub async fn begin_login(
    b: &Broker,
    tx_id: &str,
    browser_secret: Option<&str>,
) -> Result<Started, PasskeyError> {
    let w = webauthn(b)?;
    let bt = login_tx(b, tx_id, browser_secret).await?;
    let (rcr, state) = w.start_discoverable_authentication().map_err(refused)?;
    let public_key = serde_json::to_value(&rcr.public_key).map_err(|_| PasskeyError::Internal)?;
    let ceremony = random_token();
    b.store
        .put_ceremony(&CeremonyRecord {
            id_hash: token_hash(&ceremony),
            purpose: "login".into(),
            binding: bt.tx.id.clone(),
            account_id: None,
            state_json: to_json(&state)?,
            expires_at: (b.now() + b.policy().passkeys.ceremony_seconds).min(bt.tx.expires_at),
        })
        .await?;
    Ok(Started {
        ceremony,
        public_key,
    })
}

/// The login transaction, if it is this browser's and still waits for an authentication.
async fn login_tx(
    b: &Broker,
    tx_id: &str,
    browser_secret: Option<&str>,
) -> Result<crate::service::login::BrowserTx, PasskeyError> {
    use crate::service::login::TxError;
    let bt = match crate::service::login::browser_tx(b, tx_id, browser_secret).await {
        Ok(bt) => bt,
        Err(TxError::Unavailable) => return Err(PasskeyError::Unavailable),
        Err(TxError::Internal) => return Err(PasskeyError::Internal),
        Err(_) => return Err(PasskeyError::NotPending),
    };
    if bt.tx.status != crate::store::TxStatus::Pending || bt.tx.challenge_used {
        return Err(PasskeyError::NotPending);
    }
    Ok(bt)
}

/// Finish a passkey login: the authenticator's answer to the ceremony `ceremony`. On success
/// the transaction is authenticated, as after the card; the browser continues the same way.
pub async fn finish_login(
    b: &Broker,
    tx_id: &str,
    browser_secret: Option<&str>,
    ceremony: &str,
    answer: &PublicKeyCredential,
) -> Result<(), PasskeyError> {
    let w = webauthn(b)?;
    let now = b.now();
    let c = take_ceremony(b, ceremony, now).await?;
    let bt = login_tx(b, tx_id, browser_secret).await?;
    if c.purpose != "login" || c.binding != bt.tx.id {
        return Err(PasskeyError::UnknownCeremony);
    }
    let state: DiscoverableAuthentication = from_json(&c.state_json)?;
    let (handle, cred_id) = w
        .identify_discoverable_authentication(answer)
        .map_err(|_| PasskeyError::UnknownCredential)?;
    let record = b
        .store
        .passkey_by_cred(&b64url(cred_id))
        .await?
        .filter(|p| p.user_handle == handle.to_string())
        .ok_or(PasskeyError::UnknownCredential)?;
    if let Some(reason) = &record.suspended_reason {
        return Err(PasskeyError::Suspended {
            reason: reason.clone(),
        });
    }
    let mut passkey: Passkey = from_json(&record.credential_json)?;
    let cred: Credential = passkey.clone().into();
    let result = match w.finish_discoverable_authentication_v2(answer, state, &cred) {
        Ok(r) => r,
        Err(WebauthnError::CredentialPossibleCompromise) => {
            tracing::warn!(target: "audit", passkey = %record.id, account = %record.account_id, "passkey counter went backwards: suspended (a copy of it may exist)");
            b.store
                .suspend_passkey(&record.id, "counter_regressed", now)
                .await?;
            return Err(PasskeyError::CounterRegressed);
        }
        Err(e) => return Err(refused(e)),
    };
    let policy = b.policy();
    // The card behind the passkey, checked again.
    let enrolled = CardCert {
        anchor: record.card_anchor.clone(),
        issuer: record.card_issuer.clone(),
        serial: record.card_serial.clone(),
        not_after: record.card_not_after,
    };
    let links: Vec<CardCert> = b
        .store
        .user_auth_links(&record.account_id)
        .await?
        .into_iter()
        .map(|l| CardCert {
            anchor: l.anchor,
            issuer: l.issuer,
            serial: l.serial,
            not_after: l.not_after,
        })
        .collect();
    // The enrolling card while it is current; a renewed card once it has expired or been
    // superseded; no card at all after a loss or theft (any other revocation).
    let first = if enrolled.not_after > now {
        Some(card_status(b, &enrolled).await)
    } else {
        None
    };
    let (behind, status) = if core::passes_to_successor(&enrolled, first, now) {
        match core::successor(&enrolled, &links, now) {
            Some(next) => (next.clone(), card_status(b, next).await),
            None => (enrolled.clone(), first.unwrap_or(CardStatus::Expired)),
        }
    } else {
        (enrolled.clone(), first.unwrap_or(CardStatus::Expired))
    };
    let revocation = match core::judge_card(&policy, status) {
        Ok(r) => r,
        Err(e @ (PasskeyError::CardRevoked | PasskeyError::CardExpired)) => {
            let reason = if e == PasskeyError::CardRevoked {
                "card_revoked"
            } else {
                "card_expired"
            };
            tracing::info!(target: "audit", passkey = %record.id, account = %record.account_id, reason, "passkey suspended: the card behind it is no longer current");
            if e == PasskeyError::CardRevoked {
                crate::service::signals::certificate_revoked(
                    b,
                    &behind.issuer,
                    &behind.serial,
                    "revoked",
                )
                .await?;
            }
            b.store.suspend_passkey(&record.id, reason, now).await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let proofed = crate::service::claims::current(b, &record.account_id).await?;
    let assertion = core::Assertion {
        user_verified: result.user_verified(),
        backup_eligible: result.backup_eligible(),
        backup_state: result.backup_state(),
    };
    let facts = core::facts(&record.id, &assertion, &behind, revocation, proofed, now);
    let required = crate::oidc::authorize::requirement(&policy, &bt.client, &bt.req);
    let wants_identity = crate::oidc::claims::wants_identity(&bt.client, &bt.req);
    crate::assurance::passkey::fits_request(&policy, &required, wants_identity, &facts, now)?;
    passkey.update_credential(&result);
    let used = PasskeyUse {
        id: &record.id,
        seen_count: record.sign_count,
        new_count: i64::from(result.counter()).max(record.sign_count),
        backup_state: result.backup_state().into(),
        backup_eligible: result.backup_eligible().into(),
        credential_json: &to_json(&passkey)?,
    };
    match b
        .store
        .complete_passkey_login(&bt.tx.id, &record.account_id, &to_json(&facts)?, &used, now)
        .await?
    {
        PasskeyLoginOutcome::Authenticated => {
            tracing::info!(tx = %bt.tx.id, account = %record.account_id, passkey = %record.id, "passkey login");
            Ok(())
        }
        PasskeyLoginOutcome::NotPending => Err(PasskeyError::NotPending),
        PasskeyLoginOutcome::PasskeyChanged => Err(PasskeyError::Refused(
            "the passkey was used or changed at the same moment elsewhere: try again".into(),
        )),
    }
}

/// The revocation status of the card behind a passkey, through the revocation cache.
async fn card_status(b: &Broker, card: &CardCert) -> CardStatus {
    let (Some(issuer_cert_der), Ok(serial)) =
        (b.anchor_der(&card.anchor), hex::decode(&card.serial))
    else {
        return CardStatus::Unavailable("the card's certificate authority is no longer trusted");
    };
    let cert = crate::revocation::CertRef {
        anchor_label: card.anchor.clone(),
        issuer_cert_der,
        serial,
    };
    match b.checker().check_ref(&cert).await {
        Ok(ev) => match &ev.status {
            crate::pki::CertStatus::Good => CardStatus::Good,
            crate::pki::CertStatus::Revoked { reason, .. } => CardStatus::Revoked {
                superseded: *reason == Some(crate::pki::RevocationReason::Superseded),
            },
            crate::pki::CertStatus::Unknown => CardStatus::Unknown,
        },
        Err(e) => {
            tracing::warn!(serial = %card.serial, error = %e, "the card behind a passkey could not be checked");
            CardStatus::Unavailable(e.public_message())
        }
    }
}

/// The account page's actions on one passkey of the session's account.
pub async fn rename(
    b: &Broker,
    session_secret: Option<&str>,
    id: &str,
    name: &str,
) -> Result<(), PasskeyError> {
    let (_, session, _) = live_session(b, session_secret).await?;
    let name = passkey_name(name)?;
    if name.is_empty() {
        return Err(PasskeyError::Malformed(
            "a passkey's name cannot be empty".into(),
        ));
    }
    if !b
        .store
        .rename_passkey(&session.account_id, id, &name)
        .await?
    {
        return Err(PasskeyError::UnknownCredential);
    }
    Ok(())
}

pub async fn remove(
    b: &Broker,
    session_secret: Option<&str>,
    id: &str,
) -> Result<(), PasskeyError> {
    let (_, session, _) = live_session(b, session_secret).await?;
    if !b
        .store
        .remove_passkey(&session.account_id, id, b.now())
        .await?
    {
        return Err(PasskeyError::UnknownCredential);
    }
    tracing::info!(target: "audit", account = %session.account_id, passkey = %id, "passkey removed");
    Ok(())
}

/// What the account page shows: the session's account, its passkeys, whether it may add one
/// now (or why not).
pub struct AccountView {
    pub passkeys: Vec<PasskeyRecord>,
    pub may_enrol: Result<(), PasskeyError>,
    pub facts: crate::authn::AuthFacts,
    /// The acr the session reaches now.
    pub level: Option<String>,
}

/// The account page's forms carry this token, bound to the session.
pub fn account_csrf(b: &Broker, session_secret: &str) -> String {
    b.server_key()
        .mac("account-csrf", token_hash(session_secret).as_bytes())
}

pub fn account_csrf_ok(b: &Broker, session_secret: Option<&str>, csrf: &str) -> bool {
    session_secret
        .is_some_and(|s| crate::clock::ct_eq(account_csrf(b, s).as_bytes(), csrf.as_bytes()))
}

pub async fn account(
    b: &Broker,
    session_secret: Option<&str>,
) -> Result<AccountView, PasskeyError> {
    let (_, session, facts) = live_session(b, session_secret).await?;
    let passkeys = b.store.passkeys_of(&session.account_id).await?;
    let policy = b.policy();
    let proofed = crate::service::claims::current(b, &session.account_id).await?;
    let may_enrol = webauthn(b)
        .map(|_| ())
        .and_then(|_| crate::assurance::passkey::may_enrol(&policy, &facts, proofed, b.now()))
        .and_then(|_| {
            if passkeys.len() >= policy.passkeys.max_per_account {
                Err(PasskeyError::TooMany {
                    max: policy.passkeys.max_per_account,
                })
            } else {
                Ok(())
            }
        });
    let level = crate::assurance::choose_acr(&policy, &facts, &[]).map(|l| l.acr.clone());
    Ok(AccountView {
        passkeys,
        may_enrol,
        facts,
        level,
    })
}
