//! Signals to relying parties when the broker learns that a card certificate it linked is
//! revoked (a login's check, a passkey's card check, 現況確認 of the signature certificate):
//! once per certificate, in one database transaction — the account's sessions end, a
//! back-channel logout token is queued for every relying party of those sessions that
//! registered a receiver, a CAEP `credential-change` SET (RFC 8417, pushed per RFC 8935) for
//! every relying party holding a grant that registered a `signals_uri` and a CAEP
//! `session-revoked` SET for each of its sessions that ended, and (by `[signals]
//! revoke_grants`, the default) every grant of the account is revoked. `outbox` delivers.

use crate::app::Broker;
use crate::store::{OutboxRecord, StoreError};
use serde_json::json;

/// The CAEP event a SET carries when a card certificate is revoked.
pub const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// The CAEP event a SET carries for each session of the person the broker ended.
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";

fn item(
    kind: &str,
    client: &str,
    uri: &str,
    sub: String,
    sid: Option<String>,
    event: Option<String>,
    now: i64,
) -> OutboxRecord {
    OutboxRecord {
        id: crate::clock::random_id(),
        client_id: client.to_string(),
        uri: uri.to_string(),
        sub,
        sid,
        created_at: now,
        next_attempt_at: now,
        attempts: 0,
        lease_until: None,
        delivered_at: None,
        failed_at: None,
        last_error: None,
        kind: kind.into(),
        event_json: event,
    }
}

/// The certificate (issuer DN, serial hex) was found revoked (`reason` as the CRL/OCSP said).
/// Does nothing if it is not linked to an account or was signalled before.
pub async fn certificate_revoked(
    b: &Broker,
    issuer: &str,
    serial: &str,
    reason: &str,
) -> Result<(), StoreError> {
    let Some(account) = b.store.account_by_cert(issuer, serial).await? else {
        return Ok(());
    };
    let registry = b.registry();
    let now = b.now();
    let grants = b.store.grants_of_account(&account).await?;
    let mut items = Vec::new();
    let mut pairs: Vec<(String, Option<String>)> = grants
        .iter()
        .map(|g| (g.client_id.clone(), g.sid.clone()))
        .collect();
    pairs.sort();
    pairs.dedup();
    for (client_id, sid) in &pairs {
        let Some(c) = registry.get(client_id) else {
            continue;
        };
        let sub = crate::oidc::token::subject(b.server_key(), c, &account);
        let Some(sid) = sid else { continue };
        if let Some(uri) = &c.backchannel_logout_uri {
            items.push(item(
                "logout",
                client_id,
                uri,
                sub.clone(),
                Some(sid.clone()),
                None,
                now,
            ));
        }
        if let Some(uri) = &c.signals_uri {
            let event = json!({
                SESSION_REVOKED: {
                    "initiating_entity": "system",
                    "event_timestamp": now,
                    "reason_admin": { "en": format!("the session ended: the person's card certificate was revoked ({reason})") },
                }
            });
            items.push(item(
                "set",
                client_id,
                uri,
                sub,
                Some(sid.clone()),
                Some(event.to_string()),
                now,
            ));
        }
    }
    let mut clients: Vec<&String> = pairs.iter().map(|(c, _)| c).collect();
    clients.dedup();
    for client_id in clients {
        let Some(c) = registry.get(client_id) else {
            continue;
        };
        let Some(uri) = &c.signals_uri else { continue };
        let sub = crate::oidc::token::subject(b.server_key(), c, &account);
        let event = json!({
            CREDENTIAL_CHANGE: {
                "credential_type": "x509",
                "change_type": "revoke",
                "initiating_entity": "system",
                "event_timestamp": now,
                "reason_admin": { "en": format!("the person's card certificate was revoked ({reason})") },
            }
        });
        items.push(item(
            "set",
            client_id,
            uri,
            sub,
            None,
            Some(event.to_string()),
            now,
        ));
    }
    let revoke = b.policy().signals.revoke_grants;
    if let Some(a) = b
        .store
        .signal_revoked_cert(issuer, serial, revoke, &items, now)
        .await?
    {
        tracing::info!(target: "audit", account = %a, serial, reason, signals = items.len(), grants_revoked = revoke, "card certificate revoked: sessions ended, relying parties told");
    }
    Ok(())
}

/// After an operator's purge of one certificate's cached status (`broker certs purge`, the
/// admin endpoint): ask again at once, and signal if it is revoked — the operator purges
/// because they know it changed, and should not wait for the person's next login.
pub async fn recheck(b: &Broker, anchor: &str, serial: &[u8]) -> Result<(), StoreError> {
    let Some(ca) = b.anchor_der(anchor) else {
        return Ok(());
    };
    let Ok(info) = crate::pki::inspect(&ca) else {
        return Ok(());
    };
    let minimal: &[u8] = match serial.iter().position(|&x| x != 0) {
        Some(i) => &serial[i..],
        None => &serial[serial.len().saturating_sub(1)..],
    };
    let cert = crate::revocation::CertRef {
        anchor_label: anchor.to_string(),
        issuer_cert_der: ca,
        serial: minimal.to_vec(),
    };
    if let Ok(ev) = b.checker().check_ref(&cert).await
        && let crate::pki::CertStatus::Revoked { reason, .. } = &ev.status
    {
        let why = reason.map_or("unspecified", |r| r.as_str());
        certificate_revoked(b, &info.subject, &hex::encode(minimal), why).await?;
    }
    Ok(())
}

/// Reload the CRLs that are due and sweep each changed one over the certificates linked under
/// its CA: every one it lists is signalled (once). Run by `broker serve` every 30 s.
pub async fn refresh_crls(b: &Broker) -> Result<usize, StoreError> {
    let changed = b.checker().refresh_crls(|label| b.anchor_der(label)).await;
    let mut n = 0;
    for (anchor, index) in changed {
        n += sweep(b, &anchor, &index).await?;
    }
    Ok(n)
}

/// The certificates linked under `anchor` that `crl` lists as revoked: signalled; how many.
pub async fn sweep(
    b: &Broker,
    anchor: &str,
    crl: &crate::pki::crl::CrlIndex,
) -> Result<usize, StoreError> {
    let mut after = String::new();
    let mut n = 0;
    loop {
        let page = b.store.linked_certs_of_anchor(anchor, &after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.serial.clone();
        for link in &page {
            let Ok(serial) = hex::decode(&link.serial) else {
                continue;
            };
            if let Some(entry) = crl.lookup(&serial) {
                let why = entry.reason.map_or("unspecified", |r| r.as_str());
                certificate_revoked(b, &link.issuer, &link.serial, why).await?;
                n += 1;
            }
        }
    }
    if n > 0 {
        tracing::info!(
            anchor,
            revoked = n,
            "a new CRL lists linked certificates: signalled"
        );
    }
    Ok(n)
}
