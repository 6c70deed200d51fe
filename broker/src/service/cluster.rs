//! How the broker processes sharing one database follow each other: broker events (a
//! revocation-cache purge), applied once by every process, and signing-key changes, picked up
//! by each process's periodic [`sync`].

use crate::app::Broker;

/// Seconds of broker events each sync reads back.
const EVENT_WINDOW: i64 = 120;
const EVENT_REVOCATION_PURGE: &str = "revocation_purge";

/// What a revocation-cache purge removes (the payload of its broker event).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "purge", rename_all = "snake_case")]
pub enum PurgeTarget {
    One {
        anchor: String,
        /// Lower-case hex, no prefix.
        serial: String,
    },
    All,
}

/// Which broker events this process has applied.
#[derive(Debug, Default)]
pub struct SyncState {
    /// id → created_at of the events applied within the window.
    seen: std::collections::HashMap<i64, i64>,
    /// The newest event id seen.
    max_id: i64,
    /// When events were last read successfully.
    last_ok: Option<i64>,
}

/// Follow the other processes sharing the store: apply broker events not applied yet,
/// and reload the signing keys (a rotation published a next key, or retired an old one).
/// Run every `cluster.sync_interval` seconds.
pub async fn sync(b: &Broker, applied: &mut SyncState) -> anyhow::Result<()> {
    let now = b.now();
    // Events are read by id (everything newer than the newest seen) and over a window of
    // creation times (one whose id was allocated before a later-committed one); each is
    // applied once. After a gap longer than the window, events may have been missed: the
    // revocation cache is emptied rather than trusted.
    let window = now - EVENT_WINDOW;
    if applied.last_ok.is_some_and(|t| t < window) {
        tracing::warn!(
            "cluster sync was interrupted longer than the event window; revocation cache purged"
        );
        b.checker().purge_all();
    }
    let events = b.store.events_since(window, applied.max_id).await;
    let keys = crate::service::keys::load(b.store.as_ref(), now).await;
    for e in events? {
        applied.max_id = applied.max_id.max(e.id);
        let posted_here = b
            .applied_here
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&e.id);
        if applied.seen.insert(e.id, e.created_at).is_none() && !posted_here {
            apply_event(b, &e.kind, &e.payload).await;
        }
    }
    applied
        .seen
        .retain(|id, created| *created >= window || *id == applied.max_id);
    applied.last_ok = Some(now);
    let keys = keys?;
    if keys.kids() != b.keys().kids() {
        tracing::info!(kids = ?keys.kids(), "signing keys changed");
        b.set_keys(keys);
    }
    Ok(())
}

/// Apply one broker event to this process's caches.
async fn apply_event(b: &Broker, kind: &str, payload: &str) {
    match kind {
        EVENT_REVOCATION_PURGE => match serde_json::from_str::<PurgeTarget>(payload) {
            Ok(PurgeTarget::All) => {
                b.checker().purge_all();
                tracing::warn!("revocation cache purged entirely (operator event)");
            }
            Ok(PurgeTarget::One { anchor, serial }) => {
                let (Some(ca), Ok(serial_bytes)) = (b.anchor_der(&anchor), hex::decode(&serial))
                else {
                    tracing::warn!(%anchor, %serial, "purge event names an unknown anchor or a bad serial; ignored");
                    return;
                };
                let had = b.checker().purge(&anchor, &ca, &serial_bytes).await;
                tracing::warn!(%anchor, %serial, had, "revocation cache entry purged (operator event)");
            }
            Err(e) => tracing::warn!(error = %e, "unreadable purge event; ignored"),
        },
        other => tracing::warn!(kind = other, "unknown broker event; ignored"),
    }
}

/// Purge `target` from the revocation cache of every process: record the event, then apply
/// it here at once (the others follow within `cluster.sync_interval`).
pub async fn purge_revocation(b: &Broker, target: &PurgeTarget) -> anyhow::Result<bool> {
    let payload = serde_json::to_string(target)?;
    let id = b
        .store
        .post_event(EVENT_REVOCATION_PURGE, &payload, b.now())
        .await?;
    // Applied here now; the sync that reads the event back must not apply it again (it
    // would throw away what was fetched since, and log the purge twice).
    b.applied_here
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id);
    Ok(match target {
        PurgeTarget::All => {
            b.checker().purge_all();
            true
        }
        PurgeTarget::One { anchor, serial } => match (b.anchor_der(anchor), hex::decode(serial)) {
            (Some(ca), Ok(s)) => {
                let purged = b.checker().purge(anchor, &ca, &s).await;
                if let Err(e) = crate::service::signals::recheck(b, anchor, &s).await {
                    tracing::warn!(error = %e, "signalling after a purge failed; the next check tries again");
                }
                purged
            }
            _ => false,
        },
    })
}
