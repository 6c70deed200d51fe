//! The conductor's card-helper steps: the challenge behind a helper link, and the helper's
//! answer — user authentication, then identity proofing when it is needed.

use super::authorize::helper_url;
use crate::app::Broker;
use crate::authn::card::{self, CardLoginError, CardResponse, IssuedChallenge};
use crate::authn::{AuthFacts, RevocationFact};
use crate::clock::{random_token, token_hash};
use crate::oidc::authorize::AuthRequest;
use crate::oidc::authorize::requirement;
use crate::pki::CertKind;
use crate::store::{CardLoginOutcome, CertLink, TxRecord, TxStatus};
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
pub struct PendingAuth {
    pub issuer: String,
    pub serial: String,
    pub not_after: i64,
    pub facts: AuthFacts,
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
        .is_some_and(|c| crate::oidc::claims::wants_identity(c, &req));
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
