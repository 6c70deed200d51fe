//! Reloading `policies/` and `relying-parties/` while the broker runs.
//!
//! [`reload`] loads both directories afresh and swaps them in together only when both are
//! valid; a broken file leaves the running snapshots as they are and is reported as
//! `file:line: reason`. [`watch`] calls it on SIGHUP and when the files change (polled every
//! [`POLL_INTERVAL`]). Requests in flight keep the snapshots they started with.
//!
//! A changed `[revocation]` section takes effect at once too: the broker builds a new
//! revocation checker (its cache starts empty).

use crate::app::Broker;
use crate::registry::files::{Fingerprint, content_digest, fingerprint};
use crate::registry::policy::Policy;
use crate::registry::{FileError, Registry};
use std::sync::Arc;
use std::time::Duration;

/// How often [`watch`] looks at the operator files for changes. A change is picked up within
/// this interval (SIGHUP reloads at once); each poll only reads directory metadata.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What a successful [`reload`] put in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Relying parties now registered.
    pub relying_parties: usize,
    /// Assurance levels now defined.
    pub levels: usize,
    /// The `[revocation]` section differed from the one in force: a new revocation checker
    /// now applies it.
    pub revocation_changed: bool,
}

/// Load `relying_parties_dir` and `policies_dir` and, only if both are valid, swap them in.
/// On error nothing changes and the first broken file is returned (`file:line: reason`).
pub fn reload(broker: &Broker) -> Result<ReloadOutcome, FileError> {
    let mut registry = Registry::load_dir(&broker.config.relying_parties_dir)?;
    let policy = Policy::load_dir(&broker.config.policies_dir)?;
    registry.check_against(&policy)?;
    registry.restrict_claims(&policy);
    registry.add_account_client(broker.config.issuer_str());
    let (relying_parties, levels) = (registry.len(), policy.levels.len());
    let digest = content_digest(&[
        &broker.config.relying_parties_dir,
        &broker.config.policies_dir,
    ]);
    let revocation_changed = broker.swap_snapshots(registry, policy, digest);
    Ok(ReloadOutcome {
        relying_parties,
        levels,
        revocation_changed,
    })
}

/// Reload on SIGHUP and whenever a `*.toml` file in either directory is added, removed or
/// changed. Never returns; errors are logged (once per distinct state of the files) and the
/// previous snapshots stay in force.
pub async fn watch(broker: Arc<Broker>) {
    let mut hangup = hangup_signal();
    // Files may have changed between `Broker::start` reading them and now: take the
    // fingerprint first, then bring the snapshots in line with it.
    let mut last = fingerprint_of(&broker).await;
    run_reload(&broker, "start").await;
    tracing::info!(
        relying_parties_dir = %broker.config.relying_parties_dir.display(),
        policies_dir = %broker.config.policies_dir.display(),
        "watching policies and relying parties for changes (every {} s) and SIGHUP",
        POLL_INTERVAL.as_secs()
    );
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    loop {
        let trigger = tokio::select! {
            _ = tick.tick() => "file change",
            () = next_hangup(&mut hangup) => "SIGHUP",
        };
        let now = fingerprint_of(&broker).await;
        // A poll reloads only a state of the files not seen before (so a broken file is
        // reported once, not every poll); SIGHUP always reloads.
        if trigger == "file change" && now == last {
            continue;
        }
        last = now;
        run_reload(&broker, trigger).await;
    }
}

/// [`reload`] off the async workers, with the outcome logged.
async fn run_reload(broker: &Arc<Broker>, trigger: &'static str) {
    let b = broker.clone();
    match tokio::task::spawn_blocking(move || reload(&b)).await {
        Ok(Ok(o)) if trigger == "start" => tracing::debug!(
            relying_parties = o.relying_parties,
            levels = o.levels,
            "policies and relying parties in force"
        ),
        Ok(Ok(o)) => tracing::info!(
            relying_parties = o.relying_parties,
            levels = o.levels,
            "reloaded policies and relying parties ({trigger})"
        ),
        Ok(Err(e)) => tracing::error!(
            "cannot reload policies and relying parties ({trigger}); the previous ones stay in force: {e}"
        ),
        Err(e) => tracing::error!(
            "reloading policies and relying parties ({trigger}) failed; the previous ones stay in force: {e}"
        ),
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<std::convert::Infallible>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(
                "cannot listen for SIGHUP ({e}); policies and relying parties reload on file changes only"
            );
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

/// The next SIGHUP (never, without a handler).
async fn next_hangup(h: &mut Hangup) {
    #[cfg(unix)]
    if let Some(s) = h {
        if s.recv().await.is_some() {
            return;
        }
        *h = None;
    }
    #[cfg(not(unix))]
    let _ = h;
    std::future::pending::<()>().await
}

async fn fingerprint_of(broker: &Arc<Broker>) -> Option<Fingerprint> {
    let b = broker.clone();
    tokio::task::spawn_blocking(move || {
        fingerprint(&[&b.config.relying_parties_dir, &b.config.policies_dir])
    })
    .await
    .ok()
}
