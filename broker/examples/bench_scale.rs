//! Scale benchmark: what one login writes, and whether login latency holds with 1,000,000
//! accounts. Runs the broker in-process on loopback, logs in with a virtual card (browser and
//! card helper over real HTTP, as `broker card login` does, then the token request), counts the
//! rows each login adds and — on PostgreSQL — the commits, row writes and WAL bytes it costs;
//! then seeds 1,000,000 accounts (each with a certificate link, a consent, a grant and a refresh
//! token) and measures again. Prints figures; see docs/benchmarks.md and docs/operations.md.
//!
//! Run: `cargo run --release --example bench_scale` (SQLite in a temporary directory), or
//! `BENCH_DATABASE_URL=postgres://USER@HOST/EMPTY_DB cargo run --release --example bench_scale`.
//! `BENCH_LOGINS` (default 300) logins are timed per phase; `BENCH_ACCOUNTS` (default 1000000)
//! accounts are seeded.
//!
//! The seeding SQL lives here, not in `store/`: it is benchmark scaffolding, not broker logic.

use sqlx::Row;
use std::time::{Duration, Instant};

mod common;

use broker_testkit::{CHALLENGE, VERIFIER};

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run() {
    let logins = env_num("BENCH_LOGINS", 300);
    let accounts = env_num("BENCH_ACCOUNTS", 1_000_000);
    let repo = broker_testkit::repo();
    let dir = tempfile::tempdir().unwrap();
    let db_url = std::env::var("BENCH_DATABASE_URL").unwrap_or_else(|_| {
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        )
    });
    let pg = db_url.starts_with("postgres");
    let bench = common::start(&repo.join("relying-parties"), Some(&db_url)).await;
    let (broker, base) = (bench.broker.clone(), bench.base.clone());
    let (_, card) = common::card(&bench);
    let auth_url = format!(
        "{base}/authorize?client_id=local-dev&redirect_uri=http%3A%2F%2F127.0.0.1%3A8765%2Fcallback&response_type=code&scope=openid%20profile&state=s&nonce=n&code_challenge={CHALLENGE}&code_challenge_method=S256"
    );
    let http = reqwest::Client::new();
    let login = || async {
        let to = broker::cli::helper::login(&card, "1234", Some("ABC123"), true, &auth_url)
            .await
            .unwrap();
        let code = url::Url::parse(&to)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let r = http
            .post(format!("{base}/token"))
            .basic_auth("local-dev", Some("local-dev-secret"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", "http://127.0.0.1:8765/callback"),
                ("code_verifier", VERIFIER),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    // The first login proofs the person and gives consent; warm caches (revocation, statements).
    for _ in 0..20 {
        login().await;
    }
    let admin = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&db_url)
        .await
        .unwrap();

    println!(
        "bench_scale: {} — {logins} logins per phase (browser + card helper + token, sequential)",
        if pg { "PostgreSQL" } else { "SQLite" }
    );
    let phase = |label: &'static str| {
        let broker = broker.clone();
        let admin = admin.clone();
        let login = &login;
        async move {
            let c0 = broker.store.counts().await.unwrap();
            let s0 = pg_stats(&admin, pg).await;
            let mut lat = Vec::with_capacity(logins);
            let t = Instant::now();
            for _ in 0..logins {
                let t0 = Instant::now();
                login().await;
                lat.push(t0.elapsed());
            }
            let wall = t.elapsed();
            let c1 = broker.store.counts().await.unwrap();
            let s1 = pg_stats(&admin, pg).await;
            lat.sort();
            let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
            println!(
                "  {label:<28} p50 {:>6.2} ms  p99 {:>6.2} ms  ({:.0} logins/s sequential)",
                ms(pct(0.50)),
                ms(pct(0.99)),
                logins as f64 / wall.as_secs_f64()
            );
            let per = |a: i64, b: i64| (b - a) as f64 / logins as f64;
            println!(
                "    rows kept per login: sessions {:.2}, codes {:.2}, grants {:.2}, refresh_tokens {:.2}, accounts {:.2}, consents {:.2}",
                per(c0.sessions, c1.sessions),
                per(c0.codes, c1.codes),
                per(c0.grants, c1.grants),
                per(c0.refresh_tokens, c1.refresh_tokens),
                per(c0.accounts, c1.accounts),
                per(c0.consents, c1.consents),
            );
            if let (Some(a), Some(b)) = (s0, s1) {
                let n = logins as f64;
                println!(
                    "    PostgreSQL per login: {:.1} commits, {:.1} rows inserted, {:.1} updated, {:.1} deleted, {:.1} KiB WAL",
                    (b[0] - a[0]) as f64 / n,
                    (b[1] - a[1]) as f64 / n,
                    (b[2] - a[2]) as f64 / n,
                    (b[3] - a[3]) as f64 / n,
                    (b[4] - a[4]) as f64 / n / 1024.0,
                );
            }
        }
    };
    phase("empty database").await;

    let t = Instant::now();
    seed(&admin, pg, accounts).await;
    println!(
        "  seeded {accounts} accounts (+ certificate links, consents, grants, refresh tokens) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let c = broker.store.counts().await.unwrap();
    println!(
        "  now: {} accounts, {} cert_links, {} consents, {} grants, {} refresh_tokens",
        c.accounts, c.cert_links, c.consents, c.grants, c.refresh_tokens
    );
    for _ in 0..20 {
        login().await;
    }
    phase(Box::leak(
        format!("with {accounts} accounts").into_boxed_str(),
    ))
    .await;
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// [commits, inserted, updated, deleted, WAL bytes] of this database so far (PostgreSQL).
async fn pg_stats(admin: &sqlx::AnyPool, pg: bool) -> Option<[i64; 5]> {
    if !pg {
        return None;
    }
    // A backend flushes its statistics when it goes idle, but at most once a second; one
    // that went idle sooner flushes 10 s later (PGSTAT_IDLE_INTERVAL). Wait that out.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let r = sqlx::query(
        "SELECT xact_commit::bigint AS c, tup_inserted::bigint AS i, tup_updated::bigint AS u,
                tup_deleted::bigint AS d, (SELECT wal_bytes::bigint FROM pg_stat_wal) AS w
         FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(admin)
    .await
    .unwrap();
    Some([r.get("c"), r.get("i"), r.get("u"), r.get("d"), r.get("w")])
}

async fn seed(admin: &sqlx::AnyPool, pg: bool, n: usize) {
    let series = if pg {
        format!("SELECT g FROM generate_series(1, {n}) AS g")
    } else {
        format!(
            "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) SELECT g FROM s"
        )
    };
    let hex = if pg { "to_hex(g)" } else { "printf('%x', g)" };
    for sql in [
        format!("INSERT INTO accounts (id, created_at) SELECT 'seed-' || g, 0 FROM ({series}) AS t"),
        format!(
            "INSERT INTO cert_links (issuer, serial, kind, account_id, not_after, linked_at)
             SELECT 'C=JP,O=JPKI,OU=seed', {hex}, 'user_auth', 'seed-' || g, 4102444800, 0 FROM ({series}) AS t"
        ),
        format!(
            "INSERT INTO consents (account_id, client_id, scope, granted_at)
             SELECT 'seed-' || g, 'local-dev', 'openid profile', 0 FROM ({series}) AS t"
        ),
        format!(
            "INSERT INTO grants (id, client_id, account_id, scope, created_at)
             SELECT 'seed-' || g, 'local-dev', 'seed-' || g, 'openid profile', 0 FROM ({series}) AS t"
        ),
        format!(
            "INSERT INTO refresh_tokens (token_hash, grant_id, data_json, created_at, expires_at)
             SELECT 'seed-' || g, 'seed-' || g, '{{}}', 0, 4102444800 FROM ({series}) AS t"
        ),
        "ANALYZE".to_string(),
    ] {
        // Built from constants and the seed count only.
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(admin)
            .await
            .unwrap();
    }
}
