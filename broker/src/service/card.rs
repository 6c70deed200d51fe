//! The conductor's card-helper steps: the challenge behind a helper link, and the helper's
//! answer. Each answer is loaded (the transaction), checked (`authn::card::verify_response`, the
//! revocation status), decided (`authn::ceremony`: authenticated, or on to proofing; then
//! `authn::proofing::decide_link`), and written once.

use super::authorize::helper_url;
use crate::app::Broker;
use crate::authn::RevocationFact;
use crate::authn::card::{self, CardLoginError, CardResponse, IssuedChallenge};
use crate::authn::ceremony::{self, Needs, PendingAuth, Stage, Step, UserAuthAnswer};
use crate::clock::{random_token, token_hash};
use crate::oidc::authorize::{AuthRequest, requirement};
use crate::pki::{CertKind, ValidatedCert};
use crate::store::{CardLoginOutcome, CertLink, StoreError, TxRecord, TxStatus};
use serde::{Deserialize, Serialize};

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
    /// Which certificate and PIN: `user_auth`, or `signature` for identity proofing.
    pub certificate: String,
    /// Where to POST the response.
    pub response_uri: String,
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

/// The store failing during a card step (the detail is logged).
fn internal(e: StoreError) -> CardLoginError {
    tracing::error!(error = %e, "card login: store failure");
    match e {
        StoreError::Unavailable(_) => CardLoginError::Unavailable,
        _ => CardLoginError::Internal,
    }
}

/// The transaction behind a helper link, while its challenge may still be answered.
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
        kind: tx.stage.kind(),
        issuer: b.issuer(),
        transaction: &tx.id,
        client_id: &tx.client_id,
        nonce: &tx.challenge_nonce,
        expires_at: tx.challenge_expires_at,
        used: tx.challenge_used,
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
        certificate: tx.stage.name().into(),
        response_uri: helper_url(b, helper_secret),
    })
}

/// The certificate's revocation status as the ceremony's fact (`ceremony::revocation_fact`):
/// fail closed unless the policy names fail-open levels. Why no answer could be had is logged,
/// never shown.
async fn revocation(b: &Broker, cert: &ValidatedCert) -> Result<RevocationFact, CardLoginError> {
    let checked = b.checker().check(cert).await;
    let fail_open = !b.policy().revocation.fail_open_levels.is_empty();
    match &checked {
        Ok(ev) => {
            if let crate::pki::CertStatus::Revoked { reason, .. } = &ev.status {
                let why = reason.map_or("unspecified", |r| r.as_str());
                tracing::info!(serial = %cert.serial_hex, reason = why, "revoked card refused");
                if let Err(e) = crate::service::signals::certificate_revoked(
                    b,
                    &cert.issuer,
                    &cert.serial_hex,
                    why,
                )
                .await
                {
                    tracing::warn!(error = %e, "signalling a revoked certificate failed; the next check tries again");
                }
            }
        }
        Err(e) if fail_open => {
            tracing::warn!(serial = %cert.serial_hex, error = %e, "revocation unconfirmed: fail-open by policy")
        }
        Err(e) => {
            tracing::warn!(serial = %cert.serial_hex, error = %e, "revocation status unavailable: login refused")
        }
    }
    ceremony::revocation_fact(
        checked
            .as_deref()
            .map(|ev| &ev.status)
            .map_err(|e| e.public_message()),
        fail_open,
    )
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
    let revocation = revocation(b, &cert).await?;
    match &tx.stage {
        Stage::UserAuth => user_authentication(b, &tx, &cert, revocation).await,
        Stage::Proofing(pending) => proofing(b, &tx, pending, &cert, revocation).await,
    }
}

/// The user-authentication certificate answered.
async fn user_authentication(
    b: &Broker,
    tx: &TxRecord,
    cert: &ValidatedCert,
    revocation: RevocationFact,
) -> Result<CardOutcome, CardLoginError> {
    let now = b.now();
    // Load: the account of the certificate, and whether its verified claims are current.
    let account = b
        .store
        .account_by_cert(&cert.issuer, &cert.serial_hex)
        .await
        .map_err(internal)?;
    let claims_current = match &account {
        Some(a) => super::claims::current(b, a).await.map_err(internal)?,
        None => false,
    };
    // Decide.
    let policy = b.policy();
    let req: AuthRequest = serde_json::from_str(&tx.request_json).map_err(|e| {
        tracing::error!(error = %e, "stored authorization request unreadable");
        CardLoginError::Internal
    })?;
    let client = b.registry().get(&tx.client_id).cloned();
    let required = client.as_deref().map(|c| requirement(&policy, c, &req));
    let needs = Needs {
        allow_unproofed: policy.proofing.allow_unproofed,
        identity: client
            .as_deref()
            .is_some_and(|c| crate::oidc::claims::wants_identity(c, &req)),
        grantable: &|f| crate::assurance::choose_acr(&policy, f, &[]).is_some(),
        level_needs_proofing: &|f| {
            required
                .as_ref()
                .is_some_and(|r| r.needs_proofing(&policy, f, now))
        },
    };
    let answer = UserAuthAnswer {
        cert,
        revocation,
        account: account.as_deref(),
        claims_current,
        now,
    };
    // Write once.
    match ceremony::on_user_auth(&tx.stage, &answer, &needs)? {
        Step::Proof(pending) => begin_proofing(b, tx, &pending).await,
        Step::Authenticated { facts } => {
            complete_login(b, tx, cert, account.as_deref(), &facts).await
        }
    }
}

/// The ceremony moves on to proofing: a signature challenge replaces the first.
async fn begin_proofing(
    b: &Broker,
    tx: &TxRecord,
    pending: &PendingAuth,
) -> Result<CardOutcome, CardLoginError> {
    let moved = b
        .store
        .begin_proofing(
            &tx.helper_hash,
            &tx.challenge_nonce,
            &random_token(),
            b.now() + b.config.lifetimes.challenge,
            pending,
        )
        .await
        .map_err(internal)?;
    if !moved {
        return Err(CardLoginError::ChallengeUsed);
    }
    tracing::info!(tx = %tx.id, "identity proofing required");
    Ok(CardOutcome::ProofingRequired)
}

/// The login is authenticated: the challenge used, the account found or made, the certificate
/// linked, the transaction authenticated — one database transaction.
async fn complete_login(
    b: &Broker,
    tx: &TxRecord,
    cert: &ValidatedCert,
    account: Option<&str>,
    facts: &crate::authn::AuthFacts,
) -> Result<CardOutcome, CardLoginError> {
    let link = CertLink {
        issuer: cert.issuer.clone(),
        serial: cert.serial_hex.clone(),
        kind: "user_auth".into(),
        not_after: cert.not_after.unix_timestamp(),
        anchor: Some(cert.anchor_label.clone()),
    };
    let facts_json = to_json(facts)?;
    match b
        .store
        .complete_card_login(
            &tx.helper_hash,
            &tx.challenge_nonce,
            &link,
            account,
            &facts_json,
            b.now(),
        )
        .await
        .map_err(internal)?
    {
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

/// The signature certificate answered: it proofs the person; its basic four become the
/// account's verified claims and both certificates are linked to the account the link rules
/// allow.
async fn proofing(
    b: &Broker,
    tx: &TxRecord,
    pending: &PendingAuth,
    cert: &ValidatedCert,
    revocation: RevocationFact,
) -> Result<CardOutcome, CardLoginError> {
    let proofed = ceremony::on_signature(&tx.stage, cert, revocation, b.clock.now())?;
    let mut p = crate::store::Proofing {
        sign_anchor: cert.anchor_label.clone(),
        auth: CertLink {
            issuer: pending.issuer.clone(),
            serial: pending.serial.clone(),
            kind: "user_auth".into(),
            not_after: pending.not_after,
            anchor: pending.facts.cert_anchor.clone(),
        },
        sign: CertLink {
            issuer: cert.issuer.clone(),
            serial: cert.serial_hex.clone(),
            kind: "signature".into(),
            not_after: cert.not_after.unix_timestamp(),
            anchor: Some(cert.anchor_label.clone()),
        },
        claims_json: to_json(&proofed.claims)?,
        evidence_json: to_json(&proofed.evidence)?,
        facts_json: to_json(&proofed.facts)?,
        plan: crate::authn::proofing::LinkPlan::New,
    };
    let now = b.now();
    // A link made meanwhile by another login (the same card's first login in two tabs, say)
    // undoes the write; the decision is made again over the links as they are now, once.
    for attempt in 0..2 {
        p.plan = link_plan(b, pending, cert, &proofed.claims.birthdate).await?;
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

/// A record as stored (JSON).
fn to_json<T: Serialize>(v: &T) -> Result<String, CardLoginError> {
    serde_json::to_string(v).map_err(|e| {
        tracing::error!(error = %e, "record not serializable");
        CardLoginError::Internal
    })
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

/// Which account the two certificates of a proofing may join (`authn::proofing::decide_link`
/// over what the store and the link information say); a refusal is logged for the audit.
async fn link_plan(
    b: &Broker,
    pending: &PendingAuth,
    sign: &crate::pki::ValidatedCert,
    new_birthdate: &str,
) -> Result<crate::authn::proofing::LinkPlan, CardLoginError> {
    use crate::authn::proofing::{LinkFacts, decide_link};
    // Both links in one read: a partner linked between two reads would look like a stranger.
    let (auth_linked, sign_linked) = b
        .store
        .accounts_by_cert_pair(
            (&pending.issuer, &pending.serial),
            (&sign.issuer, &sign.serial_hex),
        )
        .await
        .map_err(internal)?;
    let f = LinkFacts {
        auth_linked,
        sign_linked,
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
