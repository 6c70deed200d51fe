//! Reloading relying parties and policies while the broker runs, through the real router:
//! `service::reload::reload` swaps both snapshots only when both directories are valid.

mod common;
use axum::http::StatusCode;
use broker::registry::policy::KNOWN_METHODS;
use broker::service::reload::{POLL_INTERVAL, ReloadOutcome, reload};
use common::*;
use std::path::PathBuf;
use std::sync::Arc;

const DISCOVERY: &str = "/.well-known/openid-configuration";

/// A public client on a loopback redirect URI, in a file of its own.
const NEWCOMER: &str = r#"client_id = "newcomer"
display_name = "Newcomer"
kind = "other"
redirect_uris = ["http://127.0.0.1:9911/cb"]
token_endpoint_auth_method = "none"
scopes = ["openid", "profile"]
"#;

fn rps(t: &TestBroker) -> PathBuf {
    t.broker.config.relying_parties_dir.clone()
}

fn policies(t: &TestBroker) -> PathBuf {
    t.broker.config.policies_dir.clone()
}

fn newcomer_url() -> String {
    auth_url(&[
        ("client_id", "newcomer"),
        ("redirect_uri", "http://127.0.0.1:9911/cb"),
    ])
}

fn shipped_rp_count() -> usize {
    std::fs::read_dir(repo().join("relying-parties"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "toml")
        })
        .count()
}

/// `acr_values` with `from` replaced by `to`.
fn replaced(acr: &[String], from: &str, to: &str) -> Vec<String> {
    assert!(acr.iter().any(|a| a == from), "{from} in {acr:?}");
    acr.iter()
        .map(|a| if a == from { to.to_string() } else { a.clone() })
        .collect()
}

async fn acr_values(br: &mut Browser) -> Vec<String> {
    let r = br.get(DISCOVERY).await;
    assert_eq!(r.status, StatusCode::OK);
    r.json()["acr_values_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The authorization request is accepted: a transaction and a redirect to its login page.
async fn assert_accepted(br: &mut Browser, url: &str) {
    let r = br.get(url).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let loc = r.location.unwrap();
    assert!(loc.starts_with("/login/"), "{loc}");
}

/// The authorization request is refused with the error page (never a redirect).
async fn assert_unknown_client(br: &mut Browser, url: &str, client_id: &str) {
    let r = br.get(url).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.location.is_none());
    let msg = format!("client_id `{client_id}` is not registered");
    assert!(r.body.contains(&msg), "{}", r.body);
}

#[tokio::test]
async fn added_relying_party_is_accepted_and_removed_one_refused_after_reload() {
    let t = TestBroker::new().await;
    let mut br = t.browser();
    let n = shipped_rp_count();
    assert_unknown_client(&mut br, &newcomer_url(), "newcomer").await;

    std::fs::write(rps(&t).join("newcomer.toml"), NEWCOMER).unwrap();
    // Nothing changes until a reload.
    assert_unknown_client(&mut br, &newcomer_url(), "newcomer").await;
    let before = t.broker.registry();
    let levels = t.broker.policy().levels.len();
    let o = reload(&t.broker).unwrap();
    assert_eq!(
        o,
        ReloadOutcome {
            relying_parties: n + 1,
            levels,
            revocation_changed: false
        }
    );
    assert_accepted(&mut br, &newcomer_url()).await;
    assert_accepted(&mut br, &auth_url(&[])).await;
    // A snapshot taken before the reload (a request in flight) is left as it was.
    assert!(before.get("newcomer").is_none());
    assert!(t.broker.registry().get("newcomer").is_some());

    // Removing a file removes its client, shipped or added.
    std::fs::remove_file(rps(&t).join("newcomer.toml")).unwrap();
    std::fs::remove_file(rps(&t).join("local-dev.toml")).unwrap();
    assert_eq!(reload(&t.broker).unwrap().relying_parties, n - 1);
    assert_unknown_client(&mut br, &newcomer_url(), "newcomer").await;
    assert_unknown_client(&mut br, &auth_url(&[]), CLIENT).await;
    assert_accepted(
        &mut br,
        &auth_url(&[
            ("client_id", "local-dev-spa"),
            ("redirect_uri", "http://localhost:8766/callback"),
        ]),
    )
    .await;
}

#[tokio::test]
async fn broken_policy_file_is_reported_and_the_old_policy_stays() {
    let t = TestBroker::new().await;
    let mut br = t.browser();
    let shipped = acr_values(&mut br).await;
    let levels = t.broker.policy().levels.len();
    // A valid new RP and a policy file naming an unknown method: neither is taken (both or
    // nothing).
    std::fs::write(rps(&t).join("newcomer.toml"), NEWCOMER).unwrap();
    let extra = policies(&t).join("zz-extra.toml");
    std::fs::write(
        &extra,
        "# An extra level.\n\n[[levels]]\nname = \"sms\"\nacr = \"urn:example:sms\"\nrequires = { methods = [\"sms_otp\"] }\n",
    )
    .unwrap();
    let e = reload(&t.broker).unwrap_err();
    assert_eq!((e.file.as_path(), e.line), (extra.as_path(), 3));
    assert_eq!(
        e.to_string(),
        format!(
            "{}:3: level `sms` names unknown method `sms_otp` (known: {})",
            extra.display(),
            KNOWN_METHODS.join(", ")
        )
    );
    assert_eq!(acr_values(&mut br).await, shipped);
    assert_eq!(t.broker.policy().levels.len(), levels);
    assert_unknown_client(&mut br, &newcomer_url(), "newcomer").await;
    std::fs::remove_file(&extra).unwrap();

    // Invalid TOML: the line of the syntax error, the old policy in force.
    let assurance = policies(&t).join("assurance.toml");
    let good = std::fs::read_to_string(&assurance).unwrap();
    let line = good
        .lines()
        .position(|l| l == "acr = \"aal2\"")
        .expect("aal2 in the shipped policy")
        + 1;
    std::fs::write(
        &assurance,
        good.replace("acr = \"aal2\"", "acr = \"urn:example:aal2"),
    )
    .unwrap();
    let e = reload(&t.broker).unwrap_err();
    assert_eq!((e.file.as_path(), e.line), (assurance.as_path(), line));
    assert!(!e.reason.is_empty());
    assert_eq!(
        e.to_string(),
        format!("{}:{line}: {}", assurance.display(), e.reason)
    );
    assert_eq!(acr_values(&mut br).await, shipped);
    assert_unknown_client(&mut br, &newcomer_url(), "newcomer").await;

    // Fixed: both the policy and the waiting RP come in.
    std::fs::write(&assurance, &good).unwrap();
    reload(&t.broker).unwrap();
    assert_eq!(acr_values(&mut br).await, shipped);
    assert_accepted(&mut br, &newcomer_url()).await;
}

#[tokio::test]
async fn broken_relying_party_file_is_reported_and_the_old_registry_stays() {
    let t = TestBroker::new().await;
    let mut br = t.browser();
    let shipped = acr_values(&mut br).await;
    // A valid new RP, a valid policy change, and one broken RP file: nothing is taken.
    std::fs::write(rps(&t).join("newcomer.toml"), NEWCOMER).unwrap();
    let assurance = policies(&t).join("assurance.toml");
    let good = std::fs::read_to_string(&assurance).unwrap();
    std::fs::write(
        &assurance,
        good.replace("acr = \"aal2\"", "acr = \"urn:example:aal2\""),
    )
    .unwrap();
    let broken = rps(&t).join("broken.toml");
    std::fs::write(
        &broken,
        NEWCOMER
            .replace("newcomer", "broken")
            .replace("http://127.0.0.1:9911/cb", "http://rp.example.jp/cb"),
    )
    .unwrap();
    let e = reload(&t.broker).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:4: redirect URI `http://rp.example.jp/cb` uses http on a non-loopback host",
            broken.display()
        )
    );
    assert_unknown_client(&mut br, &newcomer_url(), "newcomer").await;
    assert_accepted(&mut br, &auth_url(&[])).await;
    assert_eq!(acr_values(&mut br).await, shipped);

    // Two files claiming one client_id.
    std::fs::write(&broken, NEWCOMER).unwrap();
    let e = reload(&t.broker).unwrap_err();
    assert_eq!(
        (e.file.as_path(), e.line),
        (rps(&t).join("newcomer.toml").as_path(), 1)
    );
    assert!(
        e.reason
            .starts_with("client_id `newcomer` is already registered by "),
        "{e}"
    );
    assert_unknown_client(&mut br, &newcomer_url(), "newcomer").await;

    // The whole directory gone: an error like any other, the old registry in force.
    std::fs::remove_file(&broken).unwrap();
    let moved = t.dir.path().join("relying-parties.moved");
    std::fs::rename(rps(&t), &moved).unwrap();
    let e = reload(&t.broker).unwrap_err();
    assert_eq!((e.file.as_path(), e.line), (rps(&t).as_path(), 0));
    assert!(
        e.reason
            .starts_with("cannot read the relying-party directory"),
        "{e}"
    );
    assert_accepted(&mut br, &auth_url(&[])).await;
    assert_eq!(acr_values(&mut br).await, shipped);

    std::fs::rename(&moved, rps(&t)).unwrap();
    reload(&t.broker).unwrap();
    assert_accepted(&mut br, &newcomer_url()).await;
    assert_eq!(
        acr_values(&mut br).await,
        replaced(&shipped, "aal2", "urn:example:aal2")
    );
}

#[tokio::test]
async fn changed_acr_shows_in_discovery_after_reload() {
    let t = TestBroker::new().await;
    let mut br = t.browser();
    let shipped = acr_values(&mut br).await;
    let levels = t.broker.policy().levels.len();
    let assurance = policies(&t).join("assurance.toml");
    let good = std::fs::read_to_string(&assurance).unwrap();
    std::fs::write(
        &assurance,
        good.replace("acr = \"aal3\"", "acr = \"urn:example:aal3\""),
    )
    .unwrap();
    assert_eq!(acr_values(&mut br).await, shipped, "not before a reload");
    let o = reload(&t.broker).unwrap();
    assert_eq!((o.levels, o.revocation_changed), (levels, false));
    assert_eq!(
        acr_values(&mut br).await,
        replaced(&shipped, "aal3", "urn:example:aal3")
    );
    let policy = t.broker.policy();
    let aal3 = policy.levels.iter().find(|l| l.name == "aal3").unwrap();
    assert_eq!(aal3.acr, "urn:example:aal3");
}

#[tokio::test]
async fn revocation_change_takes_effect_at_once() {
    let t = TestBroker::new().await;
    let file = policies(&t).join("revocation.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("max_cache_seconds = 60\n"));
    std::fs::write(
        &file,
        text.replace("max_cache_seconds = 60\n", "max_cache_seconds = 30\n"),
    )
    .unwrap();
    let o = reload(&t.broker).unwrap();
    assert!(o.revocation_changed);
    // A new checker applies it.
    assert_eq!(t.broker.checker().policy().max_cache_seconds, 30);
    // Back to what it was: changed again; then reloading the unchanged section keeps the
    // checker (and its cache).
    std::fs::write(&file, &text).unwrap();
    assert!(reload(&t.broker).unwrap().revocation_changed);
    let checker = t.broker.checker();
    assert!(!reload(&t.broker).unwrap().revocation_changed);
    assert!(Arc::ptr_eq(&checker, &t.broker.checker()));
    assert_eq!(checker.policy().max_cache_seconds, 60);
}

/// The watcher picks up a file change by itself (within a poll interval or two).
#[tokio::test]
async fn watcher_reloads_changed_files() {
    let t = TestBroker::new().await;
    let mut br = t.browser();
    let watcher = tokio::spawn(broker::service::reload::watch(t.broker.clone()));
    // Let it take its first look at the files.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let assurance = policies(&t).join("assurance.toml");
    let good = std::fs::read_to_string(&assurance).unwrap();
    std::fs::write(
        &assurance,
        good.replace("acr = \"aal1\"", "acr = \"urn:example:aal1\""),
    )
    .unwrap();
    std::fs::write(rps(&t).join("newcomer.toml"), NEWCOMER).unwrap();
    let deadline = tokio::time::Instant::now() + 3 * POLL_INTERVAL;
    while !acr_values(&mut br)
        .await
        .contains(&"urn:example:aal1".to_string())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change was not picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_accepted(&mut br, &newcomer_url()).await;
    assert!(!watcher.is_finished());
    watcher.abort();
}
