//! Shared by the benchmark programs: a broker in-process on a loopback listener, and a virtual
//! card from its demo PKI.
#![allow(dead_code)]

use broker::app::Broker;
use broker::clock::SystemClock;
use broker::config::Config;
use std::collections::HashMap;
use std::future::IntoFuture;
use std::path::Path;
use std::sync::Arc;

pub struct Bench {
    pub broker: Arc<Broker>,
    /// Base URL of the listener (also the issuer's host and port).
    pub base: String,
}

/// Start a demo broker with its data in `dir`, the shipped policies, the relying parties in
/// `rps`, and `extra` environment overrides (e.g. BROKER_DATABASE_URL).
pub async fn start(dir: &Path, rps: &Path, extra: &[(&'static str, String)]) -> Bench {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let pol = dir.join("policies");
    std::fs::create_dir_all(&pol).unwrap();
    for e in std::fs::read_dir(repo.join("policies")).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace("{issuer}", &format!("http://127.0.0.1:{port}"));
        std::fs::write(pol.join(p.file_name().unwrap()), text).unwrap();
    }
    let mut env: HashMap<&str, String> = HashMap::from([
        ("BROKER_DATA_DIR", dir.join("data").display().to_string()),
        ("BROKER_RELYING_PARTIES_DIR", rps.display().to_string()),
        ("BROKER_POLICIES_DIR", pol.display().to_string()),
        ("BROKER_ISSUER", format!("http://localhost:{port}")),
    ]);
    env.extend(extra.iter().cloned());
    let config = Config::load(None, |k| env.get(k).cloned()).unwrap();
    let broker = Broker::start(config, Arc::new(SystemClock)).await.unwrap();
    tokio::spawn(axum::serve(listener, broker::http::app(broker.clone())).into_future());
    Bench {
        broker,
        base: format!("http://localhost:{port}"),
    }
}

/// A fresh virtual card (auth PIN 1234, signature PIN ABC123) in `dir/card`.
pub fn card(dir: &Path) -> broker::card::VirtualCard {
    let pki = broker::pki::demo::DemoPki::load(&dir.join("data/demo-pki")).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let issued = pki
        .issue_card(&broker::pki::demo::CardRequest {
            name: "試験\u{3000}太郎".into(),
            name_substituted: None,
            birthdate: time::macros::date!(1980 - 01 - 01),
            gender: 1,
            address: "東京都千代田区".into(),
            address_substituted: None,
            not_before: now - time::Duration::days(1),
            not_after: now + time::Duration::days(30),
        })
        .unwrap();
    broker::card::VirtualCard::create(&dir.join("card"), &issued, "1234", "ABC123").unwrap()
}
