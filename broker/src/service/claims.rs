//! The conductor's side of verified claims: whether an account's claims are current (their
//! signature certificate checked again — 現況確認), and what leaves for a grant.

use crate::app::Broker;
use crate::authn::proofing::{IdentityClaims, ProofingEvidence};
use crate::oidc::OAuthError;
use crate::oidc::claims::{self, Identity, Target};
use crate::oidc::token::target_member;
use crate::registry::Client;
use crate::store::StoreError;
use serde_json::{Map, Value};

/// Does `account_id` hold current verified claims: present, not stale, and their signature
/// certificate not revoked now (a revocation marks them stale)?
pub async fn current(b: &Broker, account_id: &str) -> Result<bool, StoreError> {
    match b.store.verified_claims(account_id).await? {
        Some(v) if v.stale_since.is_none() => Ok(!signature_cert_revoked(b, &v).await?),
        _ => Ok(false),
    }
}

/// 現況確認: is the signature certificate behind an account's verified claims revoked now?
/// If so the claims are marked stale (e.g. `affiliationChanged`: the person's basic
/// information changed) and are not released until the person proofs again. Without an
/// answer the claims stand (they were verified; the login itself was checked separately).
/// Asked at every login and every release of the claims (token, userinfo): a cache hit costs a
/// hash lookup, and a revocation is seen within the revocation cache's bound (at once after
/// `broker certs purge`).
pub async fn signature_cert_revoked(
    b: &Broker,
    v: &crate::store::VerifiedClaimsRecord,
) -> Result<bool, StoreError> {
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
                crate::service::signals::certificate_revoked(
                    b,
                    &v.sign_issuer,
                    &v.sign_serial,
                    why,
                )
                .await?;
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

/// The account's current (not stale) verified claims, if any.
pub async fn load_identity(
    b: &Broker,
    account_id: &str,
) -> Result<Option<(IdentityClaims, ProofingEvidence, i64)>, OAuthError> {
    let Some(v) = b.store.verified_claims(account_id).await? else {
        return Ok(None);
    };
    if v.stale_since.is_some() || signature_cert_revoked(b, &v).await? {
        return Ok(None);
    }
    let claims: IdentityClaims = serde_json::from_str(&v.claims_json)
        .map_err(|e| OAuthError::server_error(format!("verified claims: {e}")))?;
    let evidence: ProofingEvidence = serde_json::from_str(&v.evidence_json)
        .map_err(|e| OAuthError::server_error(format!("evidence: {e}")))?;
    Ok(Some((claims, evidence, v.verified_at)))
}

/// The personal claims for `target` of this grant.
pub async fn released(
    b: &Broker,
    client: &Client,
    account_id: &str,
    scope: &[String],
    claims_param: Option<&Value>,
    target: Target,
) -> Result<Map<String, Value>, OAuthError> {
    if claims::requested(client, scope, claims_param, target).is_empty()
        && claims_param
            .and_then(|c| c.pointer(&format!("/{}/verified_claims", target_member(target))))
            .is_none()
    {
        return Ok(Map::new());
    }
    let loaded = load_identity(b, account_id).await?;
    let identity = loaded.as_ref().map(|(c, e, t)| Identity {
        claims: c,
        evidence: e,
        verified_at: *t,
    });
    let policy = b.policy();
    Ok(claims::release(
        client,
        scope,
        claims_param,
        identity.as_ref(),
        &policy.proofing.trust_framework,
        target,
    ))
}
