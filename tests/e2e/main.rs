//! End-to-end: the real `broker` binary on a loopback port, driven by its own CLI (card
//! issue / card login), by raw HTTP, and by an independent OIDC client library (Python
//! Authlib, installed from PyPI by tests/run).

use broker_testkit::{Processes, Setup, authorize_url, db, free_port, repo, wait_for_port};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_broker");

mod browser;
mod hostile;
mod multiprocess;

/// A broker process on a free loopback port with its own data directory, on the suite's
/// database.
fn server() -> Processes {
    Setup::new().process(BIN)
}

/// The shipped development client's authorization URL at `base` (PKCE pair of the kit).
fn auth_url(base: &str) -> String {
    authorize_url(base, "")
}

/// A relying party's receiver of logout tokens and SETs on loopback `port`
/// (tests/clients/bcl_receiver.py: verifies each with Authlib against `issuer`'s JWKS),
/// listening when this returns; a receiver that exits at start is reported with its status.
fn start_receiver(port: u16, issuer: &str, client: &str) -> std::process::Child {
    let python = std::env::var("BROKER_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .arg(repo().join("tests/clients/bcl_receiver.py"))
        .args([&port.to_string(), issuer, client])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{python} does not run: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the receiver ({python}) exited at start: {status}");
        }
        assert!(Instant::now() < deadline, "the receiver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// What the receiver on `port` got so far (its `/log`).
fn received(port: u16) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}/log"))
            .await
            .expect("the receiver answers")
            .json()
            .await
            .expect("the receiver's log is JSON")
    })
}

#[test]
fn binary_serves_and_card_login_cli_returns_a_code() {
    let s = server();
    let card = s.issue_card("card");
    // RFC 7636 appendix B verifier/challenge.
    let url = auth_url(&s.issuer);
    // Without --consent the login stops at the consent step with a clear message.
    let o = s.cli(&[
        "card",
        "login",
        "--card",
        card.to_str().unwrap(),
        "--pin",
        "1234",
        "--sign-pin",
        "ABC123",
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
        "--sign-pin",
        "ABC123",
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
                ("code_verifier", broker_testkit::VERIFIER),
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
    let s = server();
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
        "verified_claims ok",
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

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

const OPENSSL_CNF: &str = "[ca]\ndefault_ca = jpki\n[jpki]\ndatabase = index.txt\ncrlnumber = crlnumber\ncertificate = ca.crt\nprivate_key = ca.key\ndefault_md = sha256\ndefault_crl_days = 1\n[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nC = JP\nO = OSSL-JPKI\nCN = OpenSSL JPKI-profile CA\n[ca_ext]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n[ee_auth]\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\ncertificatePolicies = critical,1.2.392.200149.8.5.1.3.30\nauthorityKeyIdentifier = keyid\nsubjectKeyIdentifier = hash\n";

/// A broker in production shape (no demo PKI) trusting only a CA made by openssl; a card made
/// by openssl, imported as a virtual card, logs in — with the helper alone (`card approve`)
/// answering a login that an HTTP client playing the browser started.
#[test]
fn openssl_made_card_and_card_approve_with_a_separate_browser() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ossl.cnf"), OPENSSL_CNF).unwrap();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "30",
            "-sha256",
            "-config",
            "ossl.cnf",
            "-extensions",
            "ca_ext",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "auth.key",
            "-out",
            "auth.csr",
            "-subj",
            "/C=JP/CN=OSSLCARD0000000000001",
            "-config",
            "ossl.cnf",
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "auth.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "0x0A1B2C3D",
            "-days",
            "30",
            "-sha256",
            "-extfile",
            "ossl.cnf",
            "-extensions",
            "ee_auth",
            "-out",
            "auth.crt",
        ],
    );
    // The CA's CRL, made by openssl (an independent CRL publisher), is the revocation source.
    std::fs::write(d.join("index.txt"), "").unwrap();
    std::fs::write(d.join("crlnumber"), "01\n").unwrap();
    openssl(
        d,
        &["ca", "-config", "ossl.cnf", "-gencrl", "-out", "ca.crl"],
    );
    let path = |name: &str| d.join(name).display().to_string();
    let p = Setup::new()
        .policy_file(
            "revocation.toml",
            &format!(
                "[proofing]\nallow_unproofed = true\n\n[revocation]\n[[revocation.issuers]]\nanchor = \"openssl CA\"\ncrls = [\"file:{}\"]\n",
                path("ca.crl")
            ),
        )
        .toml(&format!(
            "demo = false\ndanger_allow_http_issuer = true\n\n[[trust_anchors]]\nkind = \"user_auth\"\nfile = {:?}\nlabel = \"openssl CA\"\n",
            path("ca.crt")
        ))
        .process(BIN);
    let issuer = p.issuer.clone();
    let run = |args: &[&str]| p.cli(args);
    let card = path("card");
    let o = run(&[
        "card",
        "import",
        "--out",
        &card,
        "--auth-cert",
        &path("auth.crt"),
        "--auth-key",
        &path("auth.key"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !p.dir.path().join("data/demo-pki").exists(),
        "no demo PKI outside demo mode"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = browser
            .get(
                // openid only: no personal data asked, so an unproofed account may log in.
                auth_url(&issuer).replace("scope=openid%20profile", "scope=openid"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let login = r.headers()["location"].to_str().unwrap().to_string();
        let page = browser
            .get(format!("{issuer}{login}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("id=\"card-helper-link\""), "{page}");
        assert!(!page.contains("DEMO"), "no demo banner outside demo mode");
        let st: serde_json::Value = browser
            .get(format!("{issuer}{login}/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let link = st["helper_url"].as_str().unwrap().to_string();
        assert!(page.replace("&#x2f;", "/").contains(&link));
        // The helper alone, in another process, with no cookies of the browser.
        let o = run(&["card", "approve", "--card", &card, "--pin", "1234", &link]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let shown = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(
            shown.contains(st["binding_code"].as_str().unwrap()),
            "{shown}"
        );
        let st: serde_json::Value = browser
            .get(format!("{issuer}{login}/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(st["status"], "authenticated");
        let r = browser
            .get(st["continue_url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        // openid only: nothing personal leaves, so no consent page — straight back to the RP.
        r.headers()["location"].to_str().unwrap().to_string()
    });
    assert!(
        result.starts_with("http://127.0.0.1:8765/callback?code="),
        "{result}"
    );

    // openssl revokes the card and publishes a new CRL; the operator purges the cache (naming
    // the card: its anchor is found by signature, a configured one here, not a demo CA); the
    // next login is refused with the reason.
    openssl(
        d,
        &[
            "ca",
            "-config",
            "ossl.cnf",
            "-revoke",
            "auth.crt",
            "-crl_reason",
            "keyCompromise",
        ],
    );
    openssl(
        d,
        &["ca", "-config", "ossl.cnf", "-gencrl", "-out", "ca.crl"],
    );
    let o = run(&["certs", "purge", "--card", &card]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("\"anchor\":\"openssl CA\"") && out.contains("\"serial\":\"0a1b2c3d\""),
        "{out}"
    );
    let url = auth_url(&issuer).replace("scope=openid%20profile", "scope=openid");
    let o = run(&[
        "card",
        "login",
        "--card",
        &card,
        "--pin",
        "1234",
        "--consent",
        &url,
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("certificate_revoked") && err.contains("keyCompromise"),
        "{err}"
    );
}

/// The newcomer's path: log in, revoke the virtual card, log in again (still cached, within
/// the bound), purge, and watch the next login fail — all with the binary's own commands.
#[test]
fn demo_revoke_purge_and_the_next_login_fails() {
    let s = server();
    let card = s.issue_card("card");
    let card_s = card.to_str().unwrap();
    let url = auth_url(&s.issuer);
    let login = || {
        s.cli(&[
            "card",
            "login",
            "--card",
            card_s,
            "--pin",
            "1234",
            "--sign-pin",
            "ABC123",
            "--consent",
            &url,
        ])
    };
    let o = login();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = s.cli(&[
        "certs",
        "revoke",
        "--card",
        card_s,
        "--reason",
        "keyCompromise",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("revoked user-authentication") && out.contains("revoked digital-signature"),
        "{out}"
    );
    // Within the 60 s cache bound the cached good answer still stands.
    assert!(login().status.success());
    let o = s.cli(&["certs", "purge", "--card", card_s]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = login();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("certificate_revoked") && err.contains("keyCompromise"),
        "{err}"
    );
    // The embedded CRL publisher lists the card too.
    let crl = s.dir.path().join("auth.crl");
    let o = s.cli(&[
        "certs",
        "crl",
        "--kind",
        "user_auth",
        "--out",
        crl.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let o = Command::new("openssl")
        .args([
            "crl",
            "-inform",
            "DER",
            "-noout",
            "-text",
            "-in",
            crl.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Key Compromise"), "{text}");
}

/// Issue 18's acceptance with the binary's own commands: a card is revoked (`broker certs
/// revoke`) and the operator purges its cached status (`broker certs purge`); the relying party
/// that holds a grant gets, at its receiver (Python, verifying each token with Authlib against
/// the broker's JWKS), the back-channel logout of the session and the CAEP `credential-change`
/// and `session-revoked` SETs; the grant's refresh token stops working.
#[test]
fn revoking_a_card_logs_out_and_signals_its_relying_party() {
    let port = free_port();
    let rp = format!(
        "client_id = \"sig\"\ndisplay_name = \"Signals RP\"\nkind = \"other\"\nredirect_uris = [\"{}\"]\nsector_identifier = \"localhost\"\ntoken_endpoint_auth_method = \"client_secret_basic\"\nclient_secret_sha256 = \"eb26d4a9a0ef04727f52fb5acc8936196ae90e23003fc5117ce8e3e28c49363f\"\nscopes = [\"openid\", \"offline_access\"]\ngrant_types = [\"authorization_code\", \"refresh_token\"]\nbackchannel_logout_uri = \"http://127.0.0.1:{port}/bcl\"\nsignals_uri = \"http://127.0.0.1:{port}/set\"\n",
        broker_testkit::REDIRECT
    );
    let s = Setup::new()
        .relying_party("sig.toml", &rp)
        .toml("demo = true\n\n[cluster]\nsync_interval = 1\n")
        .process(BIN);
    let mut receiver = start_receiver(port, &s.issuer, "sig");
    let card = s.issue_card("card");
    let card_s = card.to_str().unwrap();
    let url = auth_url(&s.issuer)
        .replace("client_id=local-dev", "client_id=sig")
        .replace("scope=openid%20profile", "scope=openid%20offline_access");
    let o = s.cli(&[
        "card",
        "login",
        "--card",
        card_s,
        "--pin",
        "1234",
        "--sign-pin",
        "ABC123",
        "--consent",
        &url,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let redirect = String::from_utf8(o.stdout).unwrap();
    let code = url::Url::parse(redirect.trim())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let token = |form: &[(&str, &str)]| -> (u16, serde_json::Value) {
        rt.block_on(async {
            let r = reqwest::Client::new()
                .post(format!("{}/token", s.issuer))
                .basic_auth("sig", Some("local-dev-secret"))
                .form(form)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json().await.unwrap())
        })
    };
    let (status, tok) = token(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", broker_testkit::REDIRECT),
        ("code_verifier", broker_testkit::VERIFIER),
    ]);
    assert_eq!(status, 200, "{tok}");
    let refresh = tok["refresh_token"].as_str().unwrap().to_string();
    let id: serde_json::Value = serde_json::from_slice(
        &broker::clock::b64url_decode(tok["id_token"].as_str().unwrap().split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();

    let o = s.cli(&["certs", "revoke", "--card", card_s]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Nothing yet: the broker has not asked since (its cached answer is good for 60 s).
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(received(port)["sets"], serde_json::json!([]));
    let o = s.cli(&["certs", "purge", "--card", card_s]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let start = Instant::now();
    let log = loop {
        let log = received(port);
        if (!log["valid"].as_array().unwrap().is_empty()
            && log["sets"].as_array().unwrap().len() >= 2)
            || start.elapsed() > Duration::from_secs(20)
        {
            break log;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Delivered once each (the outbox is polled every second).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(received(port), log);
    let _ = receiver.kill();
    let _ = receiver.wait();
    assert_eq!(log["invalid"], serde_json::json!([]), "{log}");
    assert_eq!(log["invalid_sets"], serde_json::json!([]), "{log}");
    let logouts = log["valid"].as_array().unwrap();
    assert_eq!(logouts.len(), 1, "{log}");
    assert_eq!(logouts[0]["sid"], id["sid"]);
    assert_eq!(logouts[0]["sub"], id["sub"]);
    let sets = log["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 2, "{log}");
    const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
    let change = sets
        .iter()
        .find_map(|s| s["events"].get(format!("{CAEP}credential-change")))
        .unwrap_or_else(|| panic!("no credential-change: {log}"));
    assert_eq!(change["change_type"], "revoke");
    assert_eq!(change["credential_type"], "x509");
    let ended = sets
        .iter()
        .find(|s| s["events"].get(format!("{CAEP}session-revoked")).is_some())
        .unwrap_or_else(|| panic!("no session-revoked: {log}"));
    assert_eq!(ended["sub_id"]["user"]["sub"], id["sub"]);
    assert_eq!(ended["sub_id"]["session"]["id"], id["sid"]);
    // The grant's refresh token stops working.
    let (status, body) = token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
}

/// `broker certs ocsp-responder` answers openssl's own OCSP client (an independent client).
#[test]
fn standalone_demo_responder_answers_openssl_ocsp() {
    let s = server();
    let card = s.issue_card("card");
    let port = free_port();
    let mut responder = Command::new(BIN)
        .arg("--config")
        .arg(s.config_path())
        .args([
            "certs",
            "ocsp-responder",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, "responder did not start");
    let ca = s.dir.path().join("data/demo-pki/auth-ca.crt.pem");
    let ask = || {
        let o = Command::new("openssl")
            .args(["ocsp", "-issuer", ca.to_str().unwrap(), "-cert"])
            .arg(card.join("auth.crt.pem"))
            .args([
                "-url",
                &format!("http://127.0.0.1:{port}/demo-pki/ocsp/user_auth"),
                "-CAfile",
                ca.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let out = ask();
    assert!(
        out.contains("Response verify OK") && out.contains(": good"),
        "{out}"
    );
    let o = s.cli(&[
        "certs",
        "revoke",
        "--card",
        card.to_str().unwrap(),
        "--reason",
        "superseded",
    ]);
    assert!(o.status.success());
    let out = ask();
    assert!(
        out.contains(": revoked") && out.contains("superseded"),
        "{out}"
    );
    let _ = responder.kill();
    let _ = responder.wait();
}

/// Policy and relying-party files reload while clients keep making requests: on a file change
/// (polled), on SIGHUP, and a broken file is reported once (`file:line: reason`) and changes
/// nothing. No request fails meanwhile.
#[test]
fn policy_reload_under_load_on_file_change_and_sighup_keeps_serving() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    // The load comes from one address and starts logins it never finishes: thousands more
    // than a source (or a relying party) may have open in production.
    let p = Setup::new()
        .toml("[limits]\nopen_transactions_per_source = 1000000\nopen_transactions_per_client = 1000000\n")
        .process(BIN);
    let pol = p.dir.path().join("policies");
    let port = p.port(0);
    let base = format!("http://127.0.0.1:{port}");
    let pid = p.pid(0).unwrap();
    // The broker's log (a file the kit keeps), to look for what the reloads said.
    let wait_log = |needle: &str, within: Duration| {
        let deadline = Instant::now() + within;
        while !p.log(0).contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no `{needle}` in the log:\n{}",
                p.log(0)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for_port(port, "broker did not start");
    // The SIGHUP handler is in place once the watcher says it is watching.
    wait_log(
        "watching policies and relying parties",
        Duration::from_secs(10),
    );

    let assurance = pol.join("assurance.toml");
    let good = std::fs::read_to_string(&assurance).unwrap();
    assert!(good.contains("acr = \"aal2\"\n"));
    let with_aal2 = |acr: &str| good.replace("acr = \"aal2\"\n", &format!("acr = \"{acr}\"\n"));
    // Broken: the last valid text plus a level naming a method the broker does not know.
    let last_valid = with_aal2("urn:e2e:aal2:v2");
    let levels_line = last_valid.trim_end().lines().count() + 2;
    let broken = format!(
        "{}\n\n[[levels]]\nname = \"sms\"\nacr = \"urn:e2e:sms\"\nrequires = {{ methods = [\"sms_otp\"] }}\n",
        last_valid.trim_end()
    );
    let broken_msg = format!(
        "{}:{levels_line}: level `sms` names unknown method `sms_otp`",
        assurance.display()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let discovery = format!("{base}/.well-known/openid-configuration");
        let authorize = auth_url(&base);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut clients = Vec::new();
        for _ in 0..8 {
            let (http, discovery, authorize) = (http.clone(), discovery.clone(), authorize.clone());
            let (stop, done, failures) = (stop.clone(), done.clone(), failures.clone());
            clients.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let d = async {
                        let r = http
                            .get(&discovery)
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        if r.status() != 200 {
                            return Err(format!("discovery: {}", r.status()));
                        }
                        let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
                        match v["acr_values_supported"].as_array() {
                            Some(a) if !a.is_empty() => Ok(()),
                            _ => Err(format!("discovery without acr_values_supported: {v}")),
                        }
                    };
                    let a = async {
                        let r = http
                            .get(&authorize)
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        let to = r
                            .headers()
                            .get("location")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        if r.status() != 303 || !to.starts_with("/login/") {
                            return Err(format!("authorize: {} to `{to}`", r.status()));
                        }
                        Ok(())
                    };
                    for res in [d.await, a.await] {
                        match res {
                            Ok(()) => {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => failures.lock().unwrap().push(e),
                        }
                    }
                }
            }));
        }
        let acr = || async {
            let v: serde_json::Value = http
                .get(&discovery)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["acr_values_supported"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let shipped = acr().await;
        assert!(shipped.contains(&"aal2".to_string()), "{shipped:?}");
        let expect = |aal2: &str| -> Vec<String> {
            shipped
                .iter()
                .map(|a| {
                    if a == "aal2" {
                        aal2.to_string()
                    } else {
                        a.clone()
                    }
                })
                .collect()
        };
        let wait_acr = |want: Vec<String>, within: Duration| {
            let acr = &acr;
            async move {
                let deadline = Instant::now() + within;
                loop {
                    let now = acr().await;
                    if now == want {
                        return;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "discovery shows {now:?}, not {want:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        tokio::time::sleep(Duration::from_millis(300)).await;

        // 1. Several rewrites in place; the poll picks up the last.
        for v in ["urn:e2e:aal2:v1a", "urn:e2e:aal2:v1bb", "urn:e2e:aal2:v1"] {
            std::fs::write(&assurance, with_aal2(v)).unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        wait_acr(expect("urn:e2e:aal2:v1"), Duration::from_secs(5)).await;

        // 2. A rewrite followed by SIGHUP: reloaded on the signal, the process lives on.
        std::fs::write(&assurance, &last_valid).unwrap();
        let o = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        wait_acr(expect("urn:e2e:aal2:v2"), Duration::from_secs(5)).await;
        wait_log(
            "reloaded policies and relying parties (SIGHUP)",
            Duration::from_secs(5),
        );

        // 3. A broken file: reported with file and line, once; the last valid policy stays.
        std::fs::write(&assurance, &broken).unwrap();
        wait_log(&broken_msg, Duration::from_secs(5));
        assert_eq!(acr().await, expect("urn:e2e:aal2:v2"));
        // A further poll does not reload (or report) the same broken files again.
        tokio::time::sleep(Duration::from_millis(2300)).await;
        assert_eq!(acr().await, expect("urn:e2e:aal2:v2"));

        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.await.unwrap();
        }
        let failures = failures.lock().unwrap();
        assert!(
            failures.is_empty(),
            "{} of {} requests failed, first: {:?}",
            failures.len(),
            failures.len() + done.load(Ordering::Relaxed),
            &failures[..failures.len().min(5)]
        );
        assert!(done.load(Ordering::Relaxed) > 100, "the clients kept going");
    });
    let log = p.log(0);
    assert_eq!(log.matches(&broken_msg).count(), 1, "{log}");
    assert!(
        log.contains("reloaded policies and relying parties (file change)"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// `broker card sign` makes a CMS that openssl (an independent verifier) accepts, and the
/// broker's own API says valid — attached and detached.
#[test]
fn card_sign_cms_verifies_with_openssl() {
    let s = server();
    let card = s.issue_card("card");
    let doc = s.dir.path().join("doc.txt");
    std::fs::write(&doc, "申込書: 口座開設\n").unwrap();
    let ca = s.dir.path().join("data/demo-pki/sign-ca.crt.pem");
    for detached in [false, true] {
        let out = s.dir.path().join(format!("doc-{detached}.p7s"));
        let mut args = vec![
            "card",
            "sign",
            "--card",
            card.to_str().unwrap(),
            "--pin",
            "ABC123",
            "--out",
            out.to_str().unwrap(),
        ];
        if detached {
            args.push("--detached");
        }
        args.push(doc.to_str().unwrap());
        let o = s.cli(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut v = Command::new("openssl");
        v.args([
            "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any", "-in",
        ])
        .arg(&out)
        .arg("-CAfile")
        .arg(&ca)
        .args(["-out", "/dev/null"]);
        if detached {
            v.arg("-content").arg(&doc);
        }
        let o = v.output().unwrap();
        assert!(
            o.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(String::from_utf8_lossy(&o.stderr).contains("Verification successful"));
    }
    // A wrong PIN signs nothing.
    let o = s.cli(&[
        "card",
        "sign",
        "--card",
        card.to_str().unwrap(),
        "--pin",
        "WRONG1",
        doc.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
}

/// The OpenID conformance plans, mirrored by conformance/harness with two independent client
/// libraries (Python Authlib, node openid-client), against the real binary: every module's
/// result must be the one conformance/expectations.toml names.
#[test]
fn conformance_harness_matches_expectations() {
    let python = std::env::var("BROKER_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(&python);
    cmd.arg(repo().join("conformance/harness/run.py"))
        .args(["--bin", BIN])
        .current_dir(repo());
    if let Some(url) = db::test_database_url() {
        cmd.env("BROKER_DATABASE_URL", url);
    }
    let o = cmd.output().expect("python3 runs");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "harness failed:\n{out}\n{err}");
    let plans = std::fs::read_to_string(repo().join("conformance/harness/plans.toml")).unwrap();
    let modules: Vec<&str> = plans
        .lines()
        .filter_map(|l| l.trim().strip_prefix("{ name = \""))
        .map(|l| l.split('"').next().unwrap())
        .collect();
    assert_eq!(modules.len(), 47, "{modules:?}");
    for m in &modules {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("{m} "))),
            "module {m} missing from:\n{out}"
        );
    }
    assert!(
        out.contains("94 of 94 module runs as expected (47 modules × 2 client libraries)"),
        "{out}"
    );
}

/// The suite registrations load, and the plan configurations name those clients with the
/// secrets the registrations hash (a mismatch would fail the suite's first token request).
#[test]
fn conformance_suite_registrations_match_the_plan_configurations() {
    let rps = repo().join("conformance/relying-parties");
    let o = Command::new(BIN)
        .args(["policy", "check"])
        .current_dir(repo())
        .env("BROKER_RELYING_PARTIES_DIR", &rps)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("ok: 3 relying parties (suite-client, suite-client-post, suite-client2)")
    );
    let mut checked = 0;
    for e in std::fs::read_dir(repo().join("conformance/plans")).unwrap() {
        let plan: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        assert!(
            plan["server"]["discoveryUrl"]
                .as_str()
                .unwrap()
                .ends_with("/.well-known/openid-configuration")
        );
        for key in ["client", "client2", "client_secret_post"] {
            let Some(c) = plan.get(key) else { continue };
            let id = c["client_id"].as_str().unwrap();
            let reg = std::fs::read_to_string(rps.join(format!("{id}.toml"))).unwrap();
            let want = hex::encode(broker::clock::sha256(
                c["client_secret"].as_str().unwrap().as_bytes(),
            ));
            assert!(
                reg.contains(&want),
                "{id}: secret does not match its registration"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 5);
}

/// The helper run again on a login that stopped at its proofing stage (a wrong signature PIN)
/// gives each PIN to its own certificate: the signature PIN to the signature challenge, which
/// the login is at now — not the 4-digit PIN (once "bad PIN format").
#[test]
fn card_approve_again_after_a_wrong_signature_pin() {
    let s = server();
    let card = s.issue_card("card");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (browser, login) = rt.block_on(async {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = browser.get(auth_url(&s.issuer)).send().await.unwrap();
        let login = r.headers()["location"].to_str().unwrap().to_string();
        (browser, login)
    });
    let status = |browser: &reqwest::Client| -> serde_json::Value {
        rt.block_on(async {
            browser
                .get(format!("{}{login}/status", s.issuer))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    };
    let link = status(&browser)["helper_url"].as_str().unwrap().to_string();
    let approve = |sign_pin: &str| {
        s.cli(&[
            "card",
            "approve",
            "--card",
            card.to_str().unwrap(),
            "--pin",
            "1234",
            "--sign-pin",
            sign_pin,
            &link,
        ])
    };
    let o = approve("WRONG1");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("wrong signature PIN: 4 tries left"), "{err}");
    assert_eq!(status(&browser)["stage"], "signature");
    let o = approve("ABC123");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(status(&browser)["status"], "authenticated");
}

/// A set-top box's device flow by an independent client library (node openid-client) against
/// the real binary; the person opens the user-code page on a "phone" (HTTP with cookies),
/// confirms, and approves the login page's helper link with `broker card approve`.
#[test]
fn device_flow_by_node_openid_client_approved_with_the_card_helper() {
    use std::io::{BufRead, BufReader};
    let s = server();
    let card = s.issue_card("card");
    let mut node = Command::new("node")
        .arg(repo().join("conformance/harness/node/device.mjs"))
        .env("BROKER_ISSUER", &s.issuer)
        .env("CLIENT_ID", "catv")
        .env("CLIENT_SECRET", "catv-demo-secret")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (tests/run installs the harness's openid-client)");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(first.get("error").is_none(), "{first}");
    let complete = first["verification_uri_complete"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(complete.starts_with(&format!("{}/device?user_code=", s.issuer)));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let phone = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = phone
            .get(&complete)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let field = |name: &str| {
            page.split(&format!("name=\"{name}\" value=\""))
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_string()
        };
        let (csrf, code) = (field("csrf"), field("user_code"));
        assert_eq!(code, first["user_code"].as_str().unwrap());
        let r = phone
            .post(format!("{}/device", s.issuer))
            .form(&[
                ("user_code", code.as_str()),
                ("csrf", &csrf),
                ("action", "approve"),
            ])
            .send()
            .await
            .unwrap();
        let login = r.headers()["location"].to_str().unwrap().to_string();
        assert!(login.starts_with("/login/"), "{login}");
        let st: serde_json::Value = phone
            .get(format!("{}{login}/status", s.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let o = s.cli(&[
            "card",
            "approve",
            "--card",
            card.to_str().unwrap(),
            "--pin",
            "1234",
            "--sign-pin",
            "ABC123",
            st["helper_url"].as_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r = phone
            .get(format!("{}{login}/continue", s.issuer))
            .send()
            .await
            .unwrap();
        let cb = r.headers()["location"].to_str().unwrap().to_string();
        assert!(
            cb.starts_with(&format!("{}/device/callback?", s.issuer)),
            "{cb}"
        );
        let done = phone.get(&cb).send().await.unwrap().text().await.unwrap();
        assert!(done.contains("id=\"device-done\""), "{done}");
    });
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let _ = node.wait();
    assert!(second.get("error").is_none(), "{second}");
    assert_eq!(second["id_claims"]["aud"], "catv");
    assert_eq!(second["id_claims"]["acr"], "aal3");
    assert_eq!(second["id_claims"]["iss"], s.issuer);
    assert!(second["tokens"]["refresh_token"].is_string());
}
