//! Revocation benchmark: prints figures (see docs/benchmarks.md for the command and results).
//!
//! 1. cache-hit checks: latency p50/p99 and checks per second on one thread;
//! 2. a cold check against a real OCSP responder (the demo responder) over loopback HTTP;
//! 3. 1,000 concurrent checks of one uncached certificate → upstream requests (must be 1);
//! 4. a CRL with 1,000,000 revoked serials: build, load (parse + verify + index) beside
//!    x509-parser parsing the same CRL, resident memory, lookup time.
//!
//! Run: `cargo run --release --example bench_revocation` (pin with `taskset -c 0` for one core).

use broker::clock::SystemClock;
use broker::pki::crl::{CrlIndex, build_crl};
use broker::pki::demo::{CardRequest, DemoPki};
use broker::pki::{CertKind, RevocationReason, ValidatedCert};
use broker::revocation::{Checker, HttpFetcher, IssuerSources, RevocationPolicy};
use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn cert(pki: &DemoPki) -> ValidatedCert {
    let now = OffsetDateTime::now_utc();
    let issued = pki
        .issue_card(&CardRequest {
            name: "試験\u{3000}太郎".into(),
            name_substituted: None,
            birthdate: time::macros::date!(1980 - 01 - 01),
            gender: 1,
            address: "東京都".into(),
            address_substituted: None,
            not_before: now - time::Duration::days(1),
            not_after: now + time::Duration::days(30),
        })
        .unwrap();
    let der = pem::parse(issued.auth_cert_pem).unwrap().into_contents();
    broker::pki::validate(&der, &pki.trust_store().unwrap(), CertKind::UserAuth, now).unwrap()
}

fn main() {
    broker::app::install_crypto_provider();
    // Child mode: load one CRL in a fresh process and report the resident memory it adds.
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--crl-rss" {
        let base = rss_kib();
        let der = std::fs::read(&args[2]).unwrap();
        let ca = std::fs::read(&args[3]).unwrap();
        let idx = CrlIndex::parse_and_verify(
            &der,
            &ca,
            OffsetDateTime::now_utc(),
            time::Duration::minutes(5),
        )
        .unwrap();
        drop(der);
        println!("{} {}", idx.len(), rss_kib().saturating_sub(base));
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let (pki, _) = DemoPki::load_or_create(dir.path(), now).unwrap();
    let ca = Arc::new(broker::pki::demo::ca::DemoCa::open(dir.path()).unwrap());

    // The demo responder on loopback, counting requests, with an optional delay.
    let hits = Arc::new(AtomicUsize::new(0));
    let delay = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let responder = {
        let (hits, delay) = (hits.clone(), delay.clone());
        let d = broker::http::demo::DemoResponder {
            ca: ca.clone(),
            clock: Arc::new(SystemClock),
        };
        axum::Router::new().route(
            "/ocsp",
            axum::routing::post(move |body: axum::body::Bytes| {
                let (hits, delay, d) = (hits.clone(), delay.clone(), d.clone());
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let ms = delay.load(Ordering::SeqCst);
                    if ms > 0 {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    d.ca.ocsp_response(CertKind::UserAuth, &body, OffsetDateTime::now_utc())
                }
            }),
        )
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/ocsp", l.local_addr().unwrap().port());
    tokio::spawn(axum::serve(l, responder).into_future());

    let policy = RevocationPolicy {
        max_cache_seconds: 3600,
        issuers: vec![IssuerSources {
            anchor: "demo-auth-ca".into(),
            ocsp_url: Some(url.clone()),
            crls: vec![],
        }],
        ..RevocationPolicy::default()
    };
    let checker = Checker::new(
        policy,
        "http://localhost",
        Arc::new(HttpFetcher::new().unwrap()),
        Arc::new(SystemClock),
    );

    // 2. Cold checks (each a new certificate: one OCSP round trip + response verification).
    let mut cold = Vec::new();
    for _ in 0..20 {
        let c = cert(&pki);
        let t = Instant::now();
        checker.check(&c).await.unwrap();
        cold.push(t.elapsed());
    }
    cold.sort();
    println!(
        "cold check (OCSP over loopback, demo responder): p50 {:?}, p99 {:?} (n=20)",
        pct(&cold, 0.5),
        pct(&cold, 0.99)
    );

    // 1. Cache hits.
    let c = cert(&pki);
    checker.check(&c).await.unwrap();
    let n = 1_000_000;
    let mut lat = Vec::with_capacity(100_000);
    let t0 = Instant::now();
    for i in 0..n {
        if i % 10 == 0 {
            let t = Instant::now();
            std::hint::black_box(checker.check(&c).await.unwrap());
            lat.push(t.elapsed());
        } else {
            std::hint::black_box(checker.check(&c).await.unwrap());
        }
    }
    let total = t0.elapsed();
    lat.sort();
    println!(
        "cache-hit check: p50 {:?}, p99 {:?}, {:.0} checks/s on one thread ({} checks)",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        n as f64 / total.as_secs_f64(),
        n
    );

    // 3. Single flight.
    delay.store(100, Ordering::SeqCst);
    let before = hits.load(Ordering::SeqCst);
    let c = Arc::new(cert(&pki));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (checker, c) = (checker.clone(), c.clone());
        tasks.push(tokio::spawn(async move { checker.check(&c).await.is_ok() }));
    }
    let mut ok = 0;
    for task in tasks {
        ok += task.await.unwrap() as usize;
    }
    println!(
        "1,000 concurrent checks of one uncached certificate: {} upstream request(s), {} answered, {:?} in all (responder delay 100 ms)",
        hits.load(Ordering::SeqCst) - before,
        ok,
        t.elapsed()
    );

    // 4. A CRL with 1,000,000 revoked serials.
    let entries: Vec<(Vec<u8>, OffsetDateTime, Option<RevocationReason>)> = (0..1_000_000u64)
        .map(|i| {
            let mut s = (0x0100_0000_0000u64 + i * 7919).to_be_bytes().to_vec();
            while s.first() == Some(&0) {
                s.remove(0);
            }
            (
                s,
                now - time::Duration::days(1),
                Some(RevocationReason::KeyCompromise),
            )
        })
        .collect();
    let t = Instant::now();
    let der = build_crl(
        &pki.ca_cert_der(CertKind::UserAuth),
        &pki.ca_key_pkcs8(CertKind::UserAuth),
        &entries,
        now,
        now + time::Duration::days(1),
        1,
    )
    .unwrap();
    println!(
        "CRL 1,000,000 entries: built in {:?}, {:.1} MB DER",
        t.elapsed(),
        der.len() as f64 / 1e6
    );
    let probe: Vec<Vec<u8>> = entries.iter().step_by(997).map(|e| e.0.clone()).collect();
    drop(entries);
    let t = Instant::now();
    let idx = CrlIndex::parse_and_verify(
        &der,
        &pki.ca_cert_der(CertKind::UserAuth),
        now,
        time::Duration::minutes(5),
    )
    .unwrap();
    let load = t.elapsed();
    // The same CRL through the generic parser (x509-parser, what the rest of pki/ uses), only
    // parsed and its serials collected — no signature check, no index: what walking the DER by
    // hand saves.
    let t = Instant::now();
    let generic = {
        use x509_parser::prelude::FromDer;
        let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der)
            .expect("x509-parser parses the CRL");
        crl.iter_revoked_certificates()
            .map(|r| r.raw_serial().to_vec())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    println!(
        "CRL parse by x509-parser (parse + serials into a HashSet, no signature check): {:?}; {} entries",
        t.elapsed(),
        generic
    );
    // Resident memory, measured in a fresh process that loads only this CRL.
    let crl_file = dir.path().join("big.crl");
    let ca_file = dir.path().join("ca.der");
    std::fs::write(&crl_file, &der).unwrap();
    std::fs::write(&ca_file, pki.ca_cert_der(CertKind::UserAuth)).unwrap();
    drop(der);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--crl-rss")
        .arg(&crl_file)
        .arg(&ca_file)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    let kib: f64 = out
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    println!(
        "CRL load (parse + verify + index): {:?}; {} entries; resident memory added by loading it (fresh process, DER freed): {:.1} MB",
        load,
        idx.len(),
        kib / 1024.0
    );
    let t = Instant::now();
    let mut found = 0;
    let rounds = 1000;
    for _ in 0..rounds {
        for s in &probe {
            found += idx.lookup(std::hint::black_box(s)).is_some() as usize;
        }
    }
    let per = t.elapsed() / (rounds * probe.len()) as u32;
    println!(
        "CRL lookup: {per:?} per lookup ({found} hits of {} probes)",
        rounds * probe.len()
    );
}
