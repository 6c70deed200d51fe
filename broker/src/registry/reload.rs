//! Reloading `policies/` and `relying-parties/` while the broker runs.
//!
//! [`reload`] loads both directories afresh and swaps them in together only when both are
//! valid; a broken file leaves the running snapshots as they are and is reported as
//! `file:line: reason`. [`watch`] calls it on SIGHUP and when the files change (polled every
//! [`POLL_INTERVAL`]). Requests in flight keep the snapshots they started with.
//!
//! A changed `[revocation]` section takes effect at once too: the broker builds a new
//! revocation checker (its cache starts empty).

use super::policy::Policy;
use super::{FileError, Registry};
use crate::app::Broker;
use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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

/// The observable state of both directories: changes whenever a `*.toml` file in either is
/// added, removed, renamed, resized, touched or replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint(Vec<DirState>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum DirState {
    /// The directory cannot be read (vanished, permissions): the reason's kind.
    Unreadable(std::io::ErrorKind),
    /// The `*.toml` files, sorted by name.
    Files(Vec<FileState>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileState {
    name: OsString,
    /// Size, modification time and (Unix) device and inode, of the file a link points to.
    /// `None` when the file cannot be examined (say, removed since the listing).
    meta: Option<(u64, Option<SystemTime>, (u64, u64))>,
}

async fn fingerprint_of(broker: &Arc<Broker>) -> Option<Fingerprint> {
    let b = broker.clone();
    tokio::task::spawn_blocking(move || {
        fingerprint(&[&b.config.relying_parties_dir, &b.config.policies_dir])
    })
    .await
    .ok()
}

/// SHA-256 (hex, first 16 digits) over the names and contents of the `*.toml` files in
/// `dirs`: the same files give the same digest on every machine, whatever their times. Each
/// process publishes the digest of the snapshot it serves (`broker_policy_snapshot` in
/// /metrics), so an operator can see that every process runs the same policy.
pub fn content_digest(dirs: &[&Path]) -> String {
    let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for (i, dir) in dirs.iter().enumerate() {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map(|e| {
                e.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        h.update(&(i as u64).to_be_bytes());
        for f in files {
            let name = f
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let body = std::fs::read(&f).unwrap_or_default();
            for part in [name.as_bytes(), &body] {
                h.update(&(part.len() as u64).to_be_bytes());
                h.update(part);
            }
        }
    }
    hex::encode(&h.finish().as_ref()[..8])
}

pub(crate) fn fingerprint(dirs: &[&Path]) -> Fingerprint {
    Fingerprint(dirs.iter().map(|d| dir_state(d)).collect())
}

fn dir_state(dir: &Path) -> DirState {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return DirState::Unreadable(e.kind()),
    };
    let mut files: Vec<FileState> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| FileState {
            name: p.file_name().unwrap_or_default().to_owned(),
            // Follows symbolic links (a ConfigMap's files are links swapped underneath).
            meta: std::fs::metadata(&p)
                .ok()
                .map(|m| (m.len(), m.modified().ok(), identity(&m))),
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    DirState::Files(files)
}

/// Device and inode: a file replaced by rename (as editors save) differs even when its size
/// and modification time do not.
#[cfg(unix)]
fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn identity(_: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_digest_follows_contents_not_places_or_times() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("x.toml"), "k = 1\n").unwrap();
            std::fs::write(d.join("notes.txt"), "ignored").unwrap();
        }
        let da = content_digest(&[&a]);
        assert_eq!(da.len(), 16);
        assert_eq!(da, content_digest(&[&b]), "same files elsewhere");
        std::fs::write(b.join("notes.txt"), "changed").unwrap();
        assert_eq!(da, content_digest(&[&b]), "only *.toml counts");
        std::fs::write(b.join("x.toml"), "k = 2\n").unwrap();
        assert_ne!(da, content_digest(&[&b]), "content changed");
        std::fs::write(b.join("x.toml"), "k = 1\n").unwrap();
        std::fs::rename(b.join("x.toml"), b.join("y.toml")).unwrap();
        assert_ne!(da, content_digest(&[&b]), "file renamed");
    }

    #[test]
    fn fingerprint_sees_added_removed_changed_and_replaced_files() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        let fp = || fingerprint(&[&a, &b]);
        let start = fp();
        assert_eq!(fp(), start, "stable while nothing changes");

        std::fs::write(a.join("notes.txt"), "x").unwrap();
        assert_eq!(fp(), start, "only *.toml files count");

        std::fs::write(b.join("x.toml"), "k = 1\n").unwrap();
        let added = fp();
        assert_ne!(added, start);

        std::fs::write(b.join("x.toml"), "k = 12\n").unwrap();
        let resized = fp();
        assert_ne!(resized, added);

        // Same size, same content even: replaced by rename (a new inode).
        std::fs::write(b.join("x.tmp"), "k = 12\n").unwrap();
        std::fs::rename(b.join("x.tmp"), b.join("x.toml")).unwrap();
        let replaced = fp();
        assert_ne!(replaced, resized);

        std::fs::rename(b.join("x.toml"), b.join("y.toml")).unwrap();
        let renamed = fp();
        assert_ne!(renamed, replaced);

        std::fs::remove_file(b.join("y.toml")).unwrap();
        assert_eq!(fp(), start, "back to the same set of files");
    }

    #[test]
    fn fingerprint_of_a_vanished_directory_is_a_state_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        std::fs::create_dir(&a).unwrap();
        std::fs::write(a.join("x.toml"), "k = 1\n").unwrap();
        let before = fingerprint(&[&a]);
        std::fs::rename(&a, tmp.path().join("gone")).unwrap();
        let gone = fingerprint(&[&a]);
        assert_ne!(gone, before);
        assert_eq!(
            gone,
            Fingerprint(vec![DirState::Unreadable(std::io::ErrorKind::NotFound)])
        );
        std::fs::rename(tmp.path().join("gone"), &a).unwrap();
        assert_eq!(fingerprint(&[&a]), before, "the same files are back");
    }
}
