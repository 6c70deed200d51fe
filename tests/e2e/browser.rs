//! The pages in a real browser: tests/browser/journey.mjs drives Debian's chromium (headless,
//! playwright-core) through a card login whose helper link `broker card approve` answers, a
//! passkey added on /account, a passkey login in a fresh context (aal2), a step-up to the card
//! for aal3, a lost login and the error page — with axe-core on every page and screenshots in
//! Japanese and English kept under target/browser-artifacts/. tests/run installs chromium,
//! fonts-noto-cjk and the npm packages.

use super::{BIN, server};
use broker_testkit::repo;
use std::process::Command;

#[test]
fn a_persons_journey_in_chromium_with_a_virtual_authenticator() {
    let dir = repo().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "tests/browser/node_modules is missing: run tests/run (it installs chromium and the npm packages)"
    );
    let s = server();
    let card = s.issue_card("card");
    let engine = if broker_testkit::db::test_database_url().is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let out = repo().join("target/browser-artifacts").join(engine);
    let _ = std::fs::remove_dir_all(&out);
    let o = Command::new("node")
        .arg(dir.join("journey.mjs"))
        .current_dir(&dir)
        .env("BROKER_ISSUER", &s.issuer)
        .env("BROKER_BIN", BIN)
        .env("CARD_DIR", &card)
        .env("OUT_DIR", &out)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "the journey failed:\n{stdout}\n{stderr}\nbroker log:\n{}",
        s.log(0)
    );
    let results: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).expect("results JSON");
    assert_eq!(results["failures"], serde_json::json!([]));
    let steps = results["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6, "{steps:?}");
    // Every page in both languages, each checked by axe.
    for page in [
        "login",
        "consent",
        "account",
        "error",
        "index",
        "device",
        "device-confirm",
    ] {
        for lang in ["ja", "en"] {
            let name = format!("{page}-{lang}");
            assert!(out.join(format!("{name}.png")).exists(), "{name}.png");
            assert!(results["axe"].get(&name).is_some(), "axe on {name}");
        }
    }
}
