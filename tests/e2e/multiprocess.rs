//! Several `broker serve` processes on one PostgreSQL database (test names start with `pg_`;
//! `tests/run` runs them in its PostgreSQL pass). Each process has its own caches; everything
//! else is in the database, so any process may serve any step of a login.

use super::{BIN, auth_url};
use broker_testkit::{Processes, REDIRECT, Setup, VERIFIER, db, repo};
use serde_json::Value;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// N broker processes sharing one data directory (demo PKI, admin token) and one database
/// (the kit's [`Processes`], with cluster sync every second).
pub struct Cluster {
    p: Processes,
    pub db: String,
}

impl std::ops::Deref for Cluster {
    type Target = Processes;
    fn deref(&self) -> &Processes {
        &self.p
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut Processes {
        &mut self.p
    }
}

impl Cluster {
    /// `n` processes on the suite's PostgreSQL server, each in a fresh database.
    pub fn start(n: usize) -> Cluster {
        Self::start_on(n, db::fresh_postgres_database(), "")
    }

    /// `n` processes on database `db`, with `extra` appended to broker.toml.
    pub fn start_on(n: usize, db: String, extra: &str) -> Cluster {
        let p = Setup::new()
            .database(&db)
            .toml(&format!(
                "demo = true\n\n[cluster]\nsync_interval = 1\n{extra}"
            ))
            .processes(BIN, n);
        Cluster { p, db }
    }

    pub fn issue_card(&self, name: &str) -> String {
        self.p.issue_card(name).display().to_string()
    }

    /// A full card login (with consent) that starts at process `i`; the code.
    pub fn code_via(&self, i: usize, card: &str) -> String {
        let o = self.login_via(i, card);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        code_of(&String::from_utf8_lossy(&o.stdout))
    }

    pub fn login_via(&self, i: usize, card: &str) -> Output {
        let url = auth_url(&self.base(i));
        self.cli(&[
            "card",
            "login",
            "--card",
            card,
            "--pin",
            "1234",
            "--sign-pin",
            "ABC123",
            "--consent",
            &url,
        ])
    }
}

fn code_of(redirect: &str) -> String {
    let u = url::Url::parse(redirect.trim()).unwrap();
    assert!(redirect.starts_with(REDIRECT), "{redirect}");
    u.query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {redirect}"))
}

async fn token(http: &reqwest::Client, base: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = http
        .post(format!("{base}/token"))
        .basic_auth("local-dev", Some("local-dev-secret"))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn redeem(http: &reqwest::Client, base: &str, code: &str) -> (u16, Value) {
    token(
        http,
        base,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

async fn refresh(http: &reqwest::Client, base: &str, rt: &str) -> (u16, Value) {
    token(
        http,
        base,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await
}

async fn userinfo(http: &reqwest::Client, base: &str, at: &str) -> (u16, Value) {
    let r = http
        .get(format!("{base}/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn jwks_kids(http: &reqwest::Client, base: &str) -> Vec<String> {
    let j: Value = http
        .get(format!("{base}/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    j["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

fn kid_of(jwt: &str) -> String {
    let h: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            jwt.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    h["kid"].as_str().unwrap().to_string()
}

#[test]
fn pg_authorize_on_one_token_on_the_other_refresh_on_the_first() {
    let c = Cluster::start(2);
    let card = c.issue_card("card");
    let code = c.code_via(0, &card);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let (s, tok) = redeem(&http, &c.base(1), &code).await;
        assert_eq!(s, 200, "{tok}");
        // The access token minted by B is accepted by A, and the other way round.
        let at = tok["access_token"].as_str().unwrap();
        let (s, ui) = userinfo(&http, &c.base(0), at).await;
        assert_eq!(s, 200, "{ui}");
        assert_eq!(ui["sub"].as_str().unwrap().len(), 43);
        let (s, tok2) = refresh(&http, &c.base(0), tok["refresh_token"].as_str().unwrap()).await;
        assert_eq!(s, 200, "{tok2}");
        let (s, ui2) = userinfo(&http, &c.base(1), tok2["access_token"].as_str().unwrap()).await;
        assert_eq!(s, 200, "{ui2}");
        assert_eq!(ui2["sub"], ui["sub"]);
        // The used refresh token is spent everywhere.
        let (s, e) = refresh(&http, &c.base(1), tok["refresh_token"].as_str().unwrap()).await;
        assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    });
    // Both processes serve the same policy snapshot, and say so.
    let digests: Vec<String> = (0..2)
        .map(|i| {
            let m = rt.block_on(async {
                reqwest::get(format!("{}/metrics", c.base(i)))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
            });
            m.lines()
                .find(|l| l.starts_with("broker_policy_snapshot{") && l.ends_with(" 1"))
                .unwrap_or_else(|| panic!("no snapshot digest in /metrics of {i}:\n{m}"))
                .to_string()
        })
        .collect();
    assert_eq!(digests[0], digests[1]);
    // A login that starts at B (its helper link names the issuer, A) completes too.
    let code = c.code_via(1, &card);
    let ok = rt.block_on(async { redeem(&reqwest::Client::new(), &c.base(0), &code).await });
    assert_eq!(ok.0, 200, "{}", ok.1);
}

#[test]
fn pg_a_code_redeemed_concurrently_on_both_succeeds_exactly_once() {
    let c = Cluster::start(2);
    let card = c.issue_card("card");
    let rt = tokio::runtime::Runtime::new().unwrap();
    for round in 0..4 {
        let code = c.code_via(round % 2, &card);
        // Even rounds force the overlap: psql holds the code's row locked until both
        // redemptions are waiting on it, so both have read it unused before either spends it.
        let lock = (round % 2 == 0).then(|| RowLock::take(&c.db, &code));
        rt.block_on(async {
            let (ha, hb) = (reqwest::Client::new(), reqwest::Client::new());
            let (a_base, b_base) = (c.base(0), c.base(1));
            let release = async {
                if let Some(l) = &lock {
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    l.release();
                }
            };
            let (a, b, _) = tokio::join!(
                redeem(&ha, &a_base, &code),
                redeem(&hb, &b_base, &code),
                release
            );
            let mut statuses = [a.0, b.0];
            statuses.sort();
            assert_eq!(statuses, [200, 400], "round {round}: {a:?} {b:?}");
            let loser = if a.0 == 400 { &a.1 } else { &b.1 };
            assert_eq!(loser["error"], "invalid_grant", "{loser}");
            // A replayed code revokes what it produced (RFC 6749 §4.1.2), whoever won.
            let winner = if a.0 == 200 { &a.1 } else { &b.1 };
            let (s, e) = refresh(&ha, &a_base, winner["refresh_token"].as_str().unwrap()).await;
            assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));

            // A refresh token used concurrently on both processes rotates exactly once.
            let code = c.code_via(round % 2, &card);
            let (s, tok) = redeem(&ha, &b_base, &code).await;
            assert_eq!(s, 200, "{tok}");
            let rtok = tok["refresh_token"].as_str().unwrap();
            let (x, y) = tokio::join!(refresh(&ha, &a_base, rtok), refresh(&hb, &b_base, rtok));
            let mut statuses = [x.0, y.0];
            statuses.sort();
            assert_eq!(statuses, [200, 400], "round {round}: {x:?} {y:?}");
            let loser = if x.0 == 400 { &x.1 } else { &y.1 };
            assert_eq!(loser["error"], "invalid_grant", "{loser}");
        });
    }
    // One refresh token per redemption (4 + 4) and one per winning rotation (4): no double mint.
    let n = psql(&c.db, "SELECT count(*) FROM refresh_tokens");
    assert_eq!(n, "12");
}

#[test]
fn pg_sessions_and_consents_are_seen_by_every_process() {
    let c = Cluster::start(2);
    let card = c.issue_card("card");
    // Consent given through A.
    c.code_via(0, &card);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        // A browser logs in at B: no consent page (A recorded it), straight back to the RP.
        let r = browser.get(auth_url(&c.base(1))).send().await.unwrap();
        assert_eq!(r.status(), 303);
        let login = r.headers()["location"].to_str().unwrap().to_string();
        let st: Value = browser
            .get(format!("{}{login}/status", c.base(1)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let link = st["helper_url"].as_str().unwrap().to_string();
        let o = c.cli(&[
            "card",
            "approve",
            "--card",
            &card,
            "--pin",
            "1234",
            "--sign-pin",
            "ABC123",
            &link,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let st: Value = browser
            .get(format!("{}{login}/status", c.base(1)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(st["status"], "authenticated", "{st}");
        let cont = st["continue_url"]
            .as_str()
            .unwrap()
            .replace(&c.issuer, &c.base(1));
        let r = browser.get(cont).send().await.unwrap();
        let to = r.headers()["location"].to_str().unwrap().to_string();
        assert!(to.starts_with(REDIRECT), "consent asked again at B: {to}");
        let (s, _) = redeem(&browser, &c.base(0), &code_of(&to)).await;
        assert_eq!(s, 200);
        // The SSO session made at B lets the same browser through A without the card.
        let r = browser.get(auth_url(&c.base(0))).send().await.unwrap();
        assert_eq!(r.status(), 303);
        let to = r.headers()["location"].to_str().unwrap().to_string();
        assert!(to.starts_with(REDIRECT), "A did not see B's session: {to}");
        let (s, tok) = redeem(&browser, &c.base(1), &code_of(&to)).await;
        assert_eq!(s, 200, "{tok}");
    });
}

#[test]
fn pg_key_rotation_is_followed_by_every_process_without_restart() {
    let c = Cluster::start(2);
    let card = c.issue_card("card");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let before = rt.block_on(jwks_kids(&http, &c.base(0)));
    assert_eq!(before.len(), 2);
    assert_eq!(rt.block_on(jwks_kids(&http, &c.base(1))), before);
    let old = rt
        .block_on(redeem(&http, &c.base(1), &c.code_via(0, &card)))
        .1;
    let old_at = old["access_token"].as_str().unwrap().to_string();
    let old_kid = kid_of(&old_at);
    assert!(before.contains(&old_kid));

    // A safe lead is refused without the danger flag.
    let o = c.cli(&["keys", "rotate", "--lead", "5"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--lead 5 is shorter than 302 seconds"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (lead, grace) = (6, 6);
    let rotated_at = Instant::now();
    let o = c.cli(&[
        "keys",
        "rotate",
        "--lead",
        &lead.to_string(),
        "--grace",
        &grace.to_string(),
        "--danger-allow-short",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A second rotation while this one is pending is refused with the reason.
    let o = c.cli(&["keys", "rotate", "--alg", "ec", "--danger-allow-short"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already pending"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Both processes publish the next keys within a sync, before any token uses them.
    std::thread::sleep(Duration::from_millis(2500));
    for i in 0..2 {
        let kids = rt.block_on(jwks_kids(&http, &c.base(i)));
        assert_eq!(kids.len(), 4, "process {i}: {kids:?}");
        assert!(before.iter().all(|k| kids.contains(k)));
    }
    let tok = rt
        .block_on(redeem(&http, &c.base(1), &c.code_via(1, &card)))
        .1;
    assert_eq!(
        kid_of(tok["access_token"].as_str().unwrap()),
        old_kid,
        "signed with the next key before its lead time"
    );
    let next: Vec<String> = rt
        .block_on(jwks_kids(&http, &c.base(0)))
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();

    // After the lead time both processes sign with the new key; the old key still verifies.
    std::thread::sleep(
        Duration::from_secs(lead) + Duration::from_millis(300)
            - rotated_at.elapsed().min(Duration::from_secs(lead)),
    );
    for i in 0..2 {
        let tok = rt
            .block_on(redeem(&http, &c.base(i), &c.code_via(i, &card)))
            .1;
        let kid = kid_of(tok["access_token"].as_str().unwrap());
        assert!(next.contains(&kid), "process {i} signs with {kid}");
        assert!(next.contains(&kid_of(tok["id_token"].as_str().unwrap())));
        let (s, _) = rt.block_on(userinfo(
            &http,
            &c.base(1 - i),
            tok["access_token"].as_str().unwrap(),
        ));
        assert_eq!(s, 200);
    }
    let (s, _) = rt.block_on(userinfo(&http, &c.base(0), &old_at));
    assert_eq!(
        s, 200,
        "a token of the replaced key fails during the grace period"
    );

    // After the grace period the old keys are gone from both JWKS and no longer verify.
    std::thread::sleep(Duration::from_secs(lead + grace + 2).saturating_sub(rotated_at.elapsed()));
    for i in 0..2 {
        let mut kids = rt.block_on(jwks_kids(&http, &c.base(i)));
        kids.sort();
        let mut want = next.clone();
        want.sort();
        assert_eq!(kids, want, "process {i}");
        let (s, _) = rt.block_on(userinfo(&http, &c.base(i), &old_at));
        assert_eq!(s, 401, "process {i} still accepts a retired key");
    }
    let o = c.cli(&["keys", "list"]);
    let list = String::from_utf8_lossy(&o.stdout);
    assert_eq!(list.matches("\tsigning\t").count(), 2, "{list}");
    assert_eq!(list.matches("\tretired\t").count(), 2, "{list}");
}

#[test]
fn pg_a_revocation_purge_reaches_every_process() {
    let c = Cluster::start(2);
    let card = c.issue_card("card");
    // The card helper posts to the issuer (A), so A checks the card and caches "good".
    c.code_via(0, &card);
    let o = c.cli(&["certs", "revoke", "--card", &card]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A still answers from its cache: the purge is what makes the revocation bite.
    let o = c.login_via(0, &card);
    assert!(
        o.status.success(),
        "A should still hold the cached status: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The operator's purge reaches B only; A follows within a sync.
    let token = std::fs::read_to_string(c.dir.path().join("data/admin.token")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/admin/revocation/purge", c.base(1)))
            .bearer_auth(token.trim())
            .json(&serde_json::json!({"all": true}))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(r, 200);
    std::thread::sleep(Duration::from_millis(2500));
    let o = c.login_via(0, &card);
    assert!(
        !o.status.success(),
        "A accepted a revoked card after the purge at B"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("certificate_revoked"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// One value from `sql` on database `url`.
pub fn psql(url: &str, sql: &str) -> String {
    let o = Command::new("psql")
        .args([url, "-tAc", sql])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A PostgreSQL server of the test's own (durable settings), so that it can be stopped.
struct OwnPostgres {
    dir: tempfile::TempDir,
}

impl OwnPostgres {
    fn start() -> (OwnPostgres, String) {
        let dir = tempfile::tempdir().unwrap();
        let pg = OwnPostgres { dir };
        let url = pg.run("start");
        (pg, url)
    }

    fn run(&self, cmd: &str) -> String {
        let o = Command::new(repo().join("tests/pg-server"))
            .args([cmd, self.dir.path().to_str().unwrap()])
            .env("PG_DURABLE", "1")
            // Stopped as a crash would: only what was committed (and flushed) may survive.
            .env("PG_STOP_MODE", "immediate")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "pg-server {cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("tests/pg-server"))
            .args(["stop", self.dir.path().to_str().unwrap()])
            .env("PG_STOP_MODE", "immediate")
            .output();
    }
}

#[test]
fn pg_a_database_restart_is_survived_without_manual_action() {
    let (pg, admin) = OwnPostgres::start();
    let db = db::create_database(&admin);
    // The load below starts logins it never finishes, from one address: more than a source may
    // have open in production.
    let mut c = Cluster::start_on(
        1,
        db.clone(),
        "\n[database]\nacquire_timeout = 1\n\n[limits]\nopen_transactions_per_source = 100000\n",
    );
    let card = c.issue_card("card");
    let code = c.code_via(0, &card);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (s, tok) = rt.block_on(redeem(&http, &c.base(0), &code));
    assert_eq!(s, 200, "{tok}");

    // Load: authorization requests, each of which commits a login transaction.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (http, url, stop) = (http.clone(), auth_url(&c.base(0)), stop.clone());
        rt.spawn(async move {
            let mut seen: Vec<(Instant, u16, String)> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, body) = match http.get(&url).send().await {
                    Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                    Err(e) => (0, e.to_string()),
                };
                seen.push((Instant::now(), status, body));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let down_at = Instant::now();
    pg.run("stop");
    std::thread::sleep(Duration::from_secs(3));
    let up_at = Instant::now();
    pg.run("start");
    // Recovery needs no action: within a few seconds requests succeed again.
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = rt.block_on(load).unwrap();

    let before: Vec<_> = seen.iter().filter(|(t, ..)| *t < down_at).collect();
    let during: Vec<_> = seen
        .iter()
        .filter(|(t, ..)| *t > down_at + Duration::from_millis(500) && *t < up_at)
        .collect();
    let last: Vec<_> = seen.iter().rev().take(10).collect();
    assert!(before.len() > 5 && before.iter().all(|(_, s, _)| *s == 303));
    assert!(!during.is_empty());
    for (_, s, body) in &during {
        assert_eq!(*s, 503, "while the database is down: {body}");
        assert!(body.contains("temporarily_unavailable"), "{body}");
    }
    assert!(
        last.iter().all(|(_, s, _)| *s == 303),
        "not recovered: {:?}",
        last.iter().map(|(_, s, _)| s).collect::<Vec<_>>()
    );
    // Nothing but success and the clear 503: no 500s, no dropped connections.
    assert!(
        seen.iter().all(|(_, s, _)| *s == 303 || *s == 503),
        "{:?}",
        seen.iter().map(|(_, s, _)| s).collect::<Vec<_>>()
    );
    // Every committed login transaction is still there; so is the refresh token from before.
    let ok = seen.iter().filter(|(_, s, _)| *s == 303).count();
    let rows: usize = psql(&db, "SELECT count(*) FROM transactions")
        .parse()
        .unwrap();
    // One row per 303 and the first login; none for the 503s — except at most one request
    // whose COMMIT reached the disk as the server was killed, before its reply could.
    assert!(
        rows == ok + 1 || rows == ok + 2,
        "{rows} rows for {ok} committed requests (+1 login)"
    );
    let (s, t2) = rt.block_on(refresh(
        &http,
        &c.base(0),
        tok["refresh_token"].as_str().unwrap(),
    ));
    assert_eq!(s, 200, "{t2}");
    assert!(c.is_running(0), "the broker process exited");
}

#[test]
fn pg_processes_starting_together_on_an_empty_database_share_one_key_set() {
    let db = db::fresh_postgres_database();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kids = rt.block_on(async {
        let open = || async {
            let store = broker::store::sql::SqlStore::connect(&db, Default::default())
                .await
                .unwrap();
            broker::app::load_or_create_keys(&store, 1_000)
                .await
                .unwrap()
                .kids()
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        // Four at once: migrations and first keys race; one of each must win.
        let (a, b, c, d) = tokio::join!(open(), open(), open(), open());
        assert!(
            [&b, &c, &d].iter().all(|k| **k == a),
            "{a:?} {b:?} {c:?} {d:?}"
        );
        a
    });
    assert_eq!(kids.len(), 2);
    assert_eq!(psql(&db, "SELECT count(*) FROM signing_keys"), "2");
}

/// A row lock on an authorization code, held by a psql session until released.
struct RowLock {
    psql: std::sync::Mutex<Child>,
}

impl RowLock {
    fn take(db: &str, code: &str) -> RowLock {
        use std::io::Write;
        let mut session = Command::new("psql")
            .args([db, "-q", "-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let hash = broker::clock::token_hash(code);
        let stdin = session.stdin.as_mut().unwrap();
        writeln!(
            stdin,
            "BEGIN; SELECT 1 FROM codes WHERE code_hash = '{hash}' FOR UPDATE;"
        )
        .unwrap();
        stdin.flush().unwrap();
        // Wait until psql holds the row lock (a RowShareLock on `codes` granted to it).
        let deadline = Instant::now() + Duration::from_secs(10);
        while psql(
            db,
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
             WHERE c.relname = 'codes' AND l.mode = 'RowShareLock' AND l.granted",
        ) == "0"
        {
            assert!(Instant::now() < deadline, "psql did not take the lock");
            std::thread::sleep(Duration::from_millis(20));
        }
        RowLock {
            psql: std::sync::Mutex::new(session),
        }
    }

    fn release(&self) {
        use std::io::Write;
        let mut p = self.psql.lock().unwrap();
        writeln!(p.stdin.as_mut().unwrap(), "COMMIT;").unwrap();
        drop(p.stdin.take());
        p.wait().unwrap();
    }
}

/// A passkey ceremony's state is in the database: begun on one process, finished on the other
/// — the enrolment and the login both.
#[test]
fn pg_a_passkey_ceremony_begun_on_one_process_finishes_on_the_other() {
    use broker_testkit::authenticator::SoftAuthenticator;
    let c = Cluster::start(2);
    let card = c.issue_card("card");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let browser = || {
            reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
        };
        let post = |b: &reqwest::Client, url: String, body: Value| {
            let b = b.clone();
            async move {
                let r = b.post(url).json(&body).send().await.unwrap();
                let s = r.status().as_u16();
                (s, r.json::<Value>().await.unwrap())
            }
        };
        // A card session through the account page's own login, at process A.
        let me = browser();
        let r = me
            .get(format!("{}/account/login?acr=aal3", c.base(0)))
            .send()
            .await
            .unwrap();
        let authz = r.headers()["location"]
            .to_str()
            .unwrap()
            .replace(&c.issuer, &c.base(0));
        let r = me.get(authz).send().await.unwrap();
        let login = r.headers()["location"].to_str().unwrap().to_string();
        let st: Value = me
            .get(format!("{}{login}/status", c.base(0)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let o = c.cli(&[
            "card",
            "approve",
            "--card",
            &card,
            "--pin",
            "1234",
            "--sign-pin",
            "ABC123",
            st["helper_url"].as_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r = me
            .get(format!("{}{login}/continue", c.base(0)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);

        // Enrolment begun at A, finished at B.
        let mut phone = SoftAuthenticator::new();
        let (s, start) = post(
            &me,
            format!("{}/account/passkeys/begin", c.base(0)),
            Value::Null,
        )
        .await;
        assert_eq!(s, 200, "{start}");
        let cred = phone.register(&c.issuer, &start["publicKey"], None);
        let (s, done) = post(
            &me,
            format!("{}/account/passkeys/finish", c.base(1)),
            serde_json::json!({"ceremony": start["ceremony"], "credential": cred}),
        )
        .await;
        assert_eq!(s, 201, "{done}");

        // A login begun at B, finished at A, in a browser without a session.
        let other = browser();
        let r = other.get(auth_url(&c.base(1))).send().await.unwrap();
        let login = r.headers()["location"].to_str().unwrap().to_string();
        other
            .get(format!("{}{login}", c.base(1)))
            .send()
            .await
            .unwrap();
        let (s, start) = post(
            &other,
            format!("{}{login}/passkey/begin", c.base(1)),
            Value::Null,
        )
        .await;
        assert_eq!(s, 200, "{start}");
        let cred = phone.assert(&c.issuer, &start["publicKey"]);
        let (s, done) = post(
            &other,
            format!("{}{login}/passkey/finish", c.base(0)),
            serde_json::json!({"ceremony": start["ceremony"], "credential": cred}),
        )
        .await;
        assert_eq!(s, 200, "{done}");
        let r = other
            .get(format!("{}{login}/continue", c.base(0)))
            .send()
            .await
            .unwrap();
        let to = r.headers()["location"].to_str().unwrap().to_string();
        // A first login of this person at local-dev: the consent page, then the code.
        assert!(to.contains("/consent/"), "{to}");
        let page = other
            .get(to.replace(&c.issuer, &c.base(1)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        let r = other
            .post(to.replace(&c.issuer, &c.base(1)))
            .form(&[("csrf", csrf.as_str()), ("decision", "approve")])
            .send()
            .await
            .unwrap();
        let to = r.headers()["location"].to_str().unwrap().to_string();
        let (s, tok) = redeem(&other, &c.base(0), &code_of(&to)).await;
        assert_eq!(s, 200, "{tok}");
        let id = tok["id_token"].as_str().unwrap().split('.').nth(1).unwrap();
        let id: Value = serde_json::from_slice(&broker::clock::b64url_decode(id).unwrap()).unwrap();
        assert_eq!(id["acr"], "aal2");
        assert_eq!(id["amr"], serde_json::json!(["hwk", "user", "mfa"]));
    });
}

/// Back-channel logout with the real binary: two processes on PostgreSQL share the outbox and
/// deliver each logout token once; a receiver (Python, verifying every token with Authlib
/// against the broker's JWKS) that is down when the session ends gets the token after it comes
/// back — with both broker processes killed and restarted meanwhile.
#[test]
fn pg_back_channel_logout_tokens_are_delivered_once_and_survive_a_restart() {
    let port = broker_testkit::free_port();
    let db = db::fresh_postgres_database();
    let rp = format!(
        "client_id = \"bcl\"\ndisplay_name = \"Back-channel RP\"\nkind = \"other\"\nredirect_uris = [\"{REDIRECT}\"]\nsector_identifier = \"localhost\"\ntoken_endpoint_auth_method = \"client_secret_basic\"\nclient_secret_sha256 = \"eb26d4a9a0ef04727f52fb5acc8936196ae90e23003fc5117ce8e3e28c49363f\"\nscopes = [\"openid\"]\nbackchannel_logout_uri = \"http://127.0.0.1:{port}/bcl\"\n"
    );
    let mut c = Setup::new()
        .database(&db)
        .relying_party("bcl.toml", &rp)
        .toml("demo = true\n\n[cluster]\nsync_interval = 1\n")
        .processes(BIN, 2);
    let card = c.issue_card("card").display().to_string();
    let issuer = c.issuer.clone();
    let start_receiver = || super::start_receiver(port, &issuer, "bcl");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let received = |_: &tokio::runtime::Runtime| super::received(port);
    // A browser logs in at process A to the back-channel RP, redeems at B, logs out at B.
    let session_and_logout = |rt: &tokio::runtime::Runtime, c: &Processes| {
        rt.block_on(async {
            let browser = reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let url = broker_testkit::authorize_url(&c.base(0), "")
                .replace("client_id=local-dev", "client_id=bcl");
            let r = browser.get(url).send().await.unwrap();
            let login = r.headers()["location"].to_str().unwrap().to_string();
            let st: Value = browser
                .get(format!("{}{login}/status", c.base(0)))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let o = c.cli(&[
                "card",
                "approve",
                "--card",
                &card,
                "--pin",
                "1234",
                "--sign-pin",
                "ABC123",
                st["helper_url"].as_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let r = browser
                .get(format!("{}{login}/continue", c.base(0)))
                .send()
                .await
                .unwrap();
            let to = r.headers()["location"].to_str().unwrap().to_string();
            let code = code_of(&to);
            let tok: Value = browser
                .post(format!("{}/token", c.base(1)))
                .basic_auth("bcl", Some("local-dev-secret"))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                ])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id_token = tok["id_token"].as_str().unwrap().to_string();
            let r = browser
                .get(format!("{}/logout?id_token_hint={id_token}", c.base(1)))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            id_token
        })
    };
    let wait_valid = |rt: &tokio::runtime::Runtime, n: usize| {
        let start = Instant::now();
        loop {
            let log = received(rt);
            if log["valid"].as_array().unwrap().len() >= n
                || start.elapsed() > Duration::from_secs(20)
            {
                return log;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    let mut receiver = start_receiver();
    let first = session_and_logout(&rt, &c);
    let log = wait_valid(&rt, 1);
    // Both processes poll the outbox every second: still one token three seconds later.
    std::thread::sleep(Duration::from_secs(3));
    let log2 = received(&rt);
    assert_eq!(log2, log);
    assert_eq!(log["invalid"], serde_json::json!([]), "{log}");
    let valid = log["valid"].as_array().unwrap();
    assert_eq!(valid.len(), 1, "{log}");
    let id: Value = serde_json::from_slice(
        &broker::clock::b64url_decode(first.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(valid[0]["sid"], id["sid"]);
    assert_eq!(valid[0]["sub"], id["sub"]);

    // The receiver goes down; a session ends; both broker processes are killed and restarted;
    // the receiver comes back: the token arrives, once.
    let _ = receiver.kill();
    let _ = receiver.wait();
    let second = session_and_logout(&rt, &c);
    std::thread::sleep(Duration::from_millis(1500));
    c.kill(0);
    c.kill(1);
    c.restart(0);
    c.restart(1);
    let mut receiver = start_receiver();
    // (the new receiver's log starts empty)
    let log = wait_valid(&rt, 1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(received(&rt), log);
    let _ = receiver.kill();
    let _ = receiver.wait();
    let valid = log["valid"].as_array().unwrap();
    assert_eq!(valid.len(), 1, "{log}");
    let id: Value = serde_json::from_slice(
        &broker::clock::b64url_decode(second.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(valid[0]["sid"], id["sid"]);
}
