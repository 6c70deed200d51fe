//! End-to-end: the real `broker` binary on a loopback port, driven by its own CLI (card
//! issue / card login), by raw HTTP, and by an independent OIDC client library (Python
//! Authlib, installed from PyPI by tests/run).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_broker");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A broker process on a free loopback port with its own data directory.
struct Server {
    child: Child,
    issuer: String,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let issuer = format!("http://localhost:{port}");
        let child = Command::new(BIN)
            .arg("serve")
            .current_dir(repo())
            .envs(Self::env_for(dir.path(), &issuer, port))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let s = Server { child, issuer, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "broker did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    fn env_for(dir: &Path, issuer: &str, port: u16) -> Vec<(String, String)> {
        vec![
            ("BROKER_ISSUER".into(), issuer.into()),
            ("BROKER_LISTEN".into(), format!("127.0.0.1:{port}")),
            (
                "BROKER_DATA_DIR".into(),
                dir.join("data").display().to_string(),
            ),
            ("RUST_LOG".into(), "warn".into()),
        ]
    }

    /// Run a `broker` subcommand against this server's data directory.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        let port: u16 = self.issuer.rsplit(':').next().unwrap().parse().unwrap();
        Command::new(BIN)
            .args(args)
            .current_dir(repo())
            .envs(Self::env_for(self.dir.path(), &self.issuer, port))
            .output()
            .unwrap()
    }

    fn issue_card(&self, name: &str) -> PathBuf {
        let out = self.dir.path().join(name);
        let o = self.cli(&["card", "issue", "--out", out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    }
}

fn auth_url(issuer: &str, challenge: &str) -> String {
    format!(
        "{issuer}/authorize?client_id=local-dev&redirect_uri=http%3A%2F%2F127.0.0.1%3A8765%2Fcallback&response_type=code&scope=openid%20profile&state=xyz&nonce=n-0S6&code_challenge={challenge}&code_challenge_method=S256"
    )
}

#[test]
fn binary_serves_and_card_login_cli_returns_a_code() {
    let s = Server::start();
    let card = s.issue_card("card");
    // RFC 7636 appendix B verifier/challenge.
    let url = auth_url(&s.issuer, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    // Without --consent the login stops at the consent step with a clear message.
    let o = s.cli(&[
        "card",
        "login",
        "--card",
        card.to_str().unwrap(),
        "--pin",
        "1234",
        &url,
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("run again with --consent"));
    let o = s.cli(&[
        "card",
        "login",
        "--card",
        card.to_str().unwrap(),
        "--pin",
        "1234",
        "--consent",
        &url,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let redirect = String::from_utf8(o.stdout).unwrap();
    let u = url::Url::parse(redirect.trim()).unwrap();
    assert!(redirect.starts_with("http://127.0.0.1:8765/callback?"));
    let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "xyz");
    assert_eq!(q["iss"], s.issuer);
    // Redeem it over real HTTP.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{}/token", s.issuer))
            .basic_auth("local-dev", Some("local-dev-secret"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", q["code"].as_str()),
                ("redirect_uri", "http://127.0.0.1:8765/callback"),
                (
                    "code_verifier",
                    "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                ),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let tok: serde_json::Value = r.json().await.unwrap();
        let ui: serde_json::Value = http
            .get(format!("{}/userinfo", s.issuer))
            .bearer_auth(tok["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ui["sub"].as_str().unwrap().len(), 43);
    });
    // A wrong PIN through the CLI: refused by the card, the tries counter shown.
    let o = s.cli(&[
        "card",
        "login",
        "--card",
        card.to_str().unwrap(),
        "--pin",
        "0000",
        "--consent",
        &url,
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
    assert!(err.contains("pin") && err.contains('2'), "{err}");
}

#[test]
fn authlib_client_library_against_the_real_binary() {
    let s = Server::start();
    let card = s.issue_card("card");
    let python = std::env::var("BROKER_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let o = Command::new(&python)
        .arg(repo().join("tests/clients/authlib_flow.py"))
        .env("ISSUER", &s.issuer)
        .env("BROKER_BIN", BIN)
        .env("CARD_DIR", &card)
        .env("BROKER_DATA_DIR", s.dir.path().join("data"))
        .current_dir(repo())
        .output()
        .expect(
            "python3 runs (tests/run installs Authlib into a venv and sets BROKER_TEST_PYTHON)",
        );
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "Authlib flow failed:\n{out}\n{err}");
    for step in [
        "discovery ok",
        "code flow ok",
        "id_token ok",
        "userinfo ok",
        "refresh ok",
    ] {
        assert!(out.contains(step), "missing `{step}` in:\n{out}\n{err}");
    }
}

#[test]
fn broken_relying_party_file_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let rps = dir.path().join("rps");
    std::fs::create_dir(&rps).unwrap();
    std::fs::write(
        rps.join("bad.toml"),
        "client_id = \"x\"\ndisplay_name = \"X\"\nkind = \"other\"\nredirect_uris = [\"ftp://x.example/cb\"]\ntoken_endpoint_auth_method = \"none\"\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .current_dir(repo())
            .env("BROKER_RELYING_PARTIES_DIR", &rps)
            .env("BROKER_DATA_DIR", dir.path().join("data"))
            .env("BROKER_LISTEN", format!("127.0.0.1:{}", free_port()))
            .output()
            .unwrap()
    };
    let want = format!(
        "{}:4: redirect URI `ftp://x.example/cb` has scheme `ftp`; only https (or http on loopback) is allowed",
        rps.join("bad.toml").display()
    );
    let o = run(&["policy", "check"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&want),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&["serve"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(&want));
    assert!(
        !dir.path().join("data/broker.db").exists(),
        "nothing was created"
    );
}

#[test]
fn invalid_configuration_stops_start_up_with_one_line() {
    let o = Command::new(BIN)
        .arg("serve")
        .current_dir(repo())
        .env("BROKER_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.trim(),
        "error: config key `listen`: `not-an-address` is not an address:port such as 127.0.0.1:8080"
    );
}
