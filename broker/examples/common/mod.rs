//! Shared by the benchmark programs: a broker in process on a loopback listener
//! (`broker_testkit::Setup`, as the tests start one), and a virtual card from its demo PKI.
#![allow(dead_code)]

use broker::app::Broker;
use broker::clock::SystemClock;
use broker_testkit::{InProcess, Setup};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Bench {
    pub broker: Arc<Broker>,
    /// Base URL of the listener (`http://localhost:<port>`, also the issuer).
    pub base: String,
    pub kit: InProcess,
}

/// Start a demo broker with the shipped policies, the relying parties in `rps` and, when
/// given, the database at `database_url` (else SQLite in its data directory).
pub async fn start(rps: &Path, database_url: Option<&str>) -> Bench {
    let mut setup = Setup::new().relying_parties_from(rps).issuer_from_port();
    if let Some(url) = database_url {
        setup = setup.database(url);
    }
    let kit = setup.in_process(Arc::new(SystemClock), |_| {}).await;
    Bench {
        broker: kit.broker.clone(),
        base: kit.base.replace("127.0.0.1", "localhost"),
        kit,
    }
}

/// A fresh virtual card (auth PIN 1234, signature PIN ABC123) and its folder.
pub fn card(b: &Bench) -> (broker::card::VirtualCard, PathBuf) {
    let dir = b.kit.dir.path().join("card");
    (b.kit.card("card"), dir)
}
