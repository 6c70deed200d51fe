//! One way to start a broker for the tests and the benchmark programs. A [`Setup`] lays out a
//! data directory, the relying parties (the shipped ones, or another folder, plus extra files),
//! the policies (the shipped ones, with files replaced or added) and a `broker.toml`; then
//! starts the broker in process ([`Setup::in_process`]: its router on a loopback listener, for
//! the router tests and the benchmarks) or as real `broker serve` processes on one database
//! ([`Setup::processes`]: the end-to-end and multi-process tests). Which database it uses
//! follows the suite's pass ([`db`]).
//!
//! In policy files, `{issuer}` and `{demo}` stand for the base URL of the (first) listener,
//! which serves the demo OCSP responder and CRLs.

pub mod authenticator;
pub mod db;

use broker::app::Broker;
use broker::card::VirtualCard;
use broker::clock::Clock;
use broker::config::Config;
use broker::pki::demo::{CardRequest, DemoPki};
use std::future::IntoFuture;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The shipped development client (relying-parties/local-dev.toml).
pub const CLIENT: &str = "local-dev";
pub const SECRET: &str = "local-dev-secret";
pub const REDIRECT: &str = "http://127.0.0.1:8765/callback";
/// RFC 7636 appendix B's PKCE pair.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// The issuer of an in-process broker unless [`Setup::issuer_from_port`] is asked for: the
/// embedded default.
pub const DEFAULT_ISSUER: &str = "http://localhost:8080";
/// The PINs of every card the kit issues (user authentication, signature).
pub const AUTH_PIN: &str = "1234";
pub const SIGN_PIN: &str = "ABC123";

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A free loopback port (free when asked; bound by whoever asks first after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Wait (up to a minute) until something listens on loopback `port`.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The authorization URL of the shipped development client at `base`, with the PKCE challenge
/// of [`VERIFIER`] and `extra` parameters appended (already encoded).
pub fn authorize_url(base: &str, extra: &str) -> String {
    format!(
        "{base}/authorize?client_id={CLIENT}&redirect_uri=http%3A%2F%2F127.0.0.1%3A8765%2Fcallback&response_type=code&scope=openid%20profile&state=xyz&nonce=n-0S6&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}"
    )
}

/// How a broker's issuer is chosen.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IssuerChoice {
    /// The embedded default, [`DEFAULT_ISSUER`] (in process only).
    Default,
    /// `http://localhost:<port of the first listener>`.
    FromPort,
}

/// What a broker is started with. Build with the methods, then start with
/// [`Setup::in_process`] or [`Setup::processes`].
pub struct Setup {
    dir: tempfile::TempDir,
    relying_parties_from: PathBuf,
    extra_relying_parties: Vec<(String, String)>,
    policy_files: Vec<(String, String)>,
    toml: String,
    database: Option<String>,
    issuer: IssuerChoice,
}

impl Default for Setup {
    fn default() -> Self {
        Self::new()
    }
}

impl Setup {
    /// The shipped relying parties and policies, the suite's database, no other setting.
    pub fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().expect("a temporary directory"),
            relying_parties_from: repo().join("relying-parties"),
            extra_relying_parties: Vec::new(),
            policy_files: Vec::new(),
            toml: String::new(),
            database: None,
            issuer: IssuerChoice::Default,
        }
    }

    /// The relying parties of folder `dir` instead of the shipped ones.
    pub fn relying_parties_from(mut self, dir: &Path) -> Setup {
        self.relying_parties_from = dir.to_path_buf();
        self
    }

    /// One more relying-party file (`name`, TOML text).
    pub fn relying_party(mut self, name: &str, text: &str) -> Setup {
        self.extra_relying_parties.push((name.into(), text.into()));
        self
    }

    /// A policy file replaced or added by name (`{issuer}`, `{demo}` as in the crate's text).
    pub fn policy_file(mut self, name: &str, text: &str) -> Setup {
        self.policy_files.push((name.into(), text.into()));
        self
    }

    /// TOML appended to broker.toml (tables such as `[cluster]` included).
    pub fn toml(mut self, text: &str) -> Setup {
        self.toml.push_str(text);
        self.toml.push('\n');
        self
    }

    /// This database instead of the suite's.
    pub fn database(mut self, url: &str) -> Setup {
        self.database = Some(url.into());
        self
    }

    /// Issuer `http://localhost:<port>` of the first listener (processes always have it).
    pub fn issuer_from_port(mut self) -> Setup {
        self.issuer = IssuerChoice::FromPort;
        self
    }

    /// The directory that holds everything (data, relying parties, policies, broker.toml).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Lays out the relying parties, the policies and broker.toml for a broker whose first
    /// listener is at `base`; the path of broker.toml.
    fn write(&mut self, base: &str, issuer: Option<&str>) -> PathBuf {
        let root = self.dir.path().to_path_buf();
        let rps = root.join("relying-parties");
        std::fs::create_dir_all(&rps).expect("relying-parties folder");
        for e in std::fs::read_dir(&self.relying_parties_from).expect("relying parties") {
            let p = e.expect("a relying-party file").path();
            if let Some(name) = p.file_name() {
                std::fs::copy(&p, rps.join(name)).expect("relying-party copy");
            }
        }
        for (name, text) in &self.extra_relying_parties {
            std::fs::write(rps.join(name), text).expect("relying-party file");
        }
        let pol = root.join("policies");
        std::fs::create_dir_all(&pol).expect("policies folder");
        let fill = |t: &str| t.replace("{issuer}", base).replace("{demo}", base);
        for e in std::fs::read_dir(repo().join("policies")).expect("shipped policies") {
            let p = e.expect("a policy file").path();
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let text = match self.policy_files.iter().find(|(n, _)| n == name) {
                Some((_, t)) => t.clone(),
                None => std::fs::read_to_string(&p).expect("policy file"),
            };
            std::fs::write(pol.join(name), fill(&text)).expect("policy copy");
        }
        for (name, text) in &self.policy_files {
            if !pol.join(name).exists() {
                std::fs::write(pol.join(name), fill(text)).expect("policy file");
            }
        }
        if self.database.is_none() {
            self.database = db::test_database_url();
        }
        let quoted = |p: &Path| format!("{:?}", p.display().to_string());
        let mut text = format!(
            "data_dir = {}\npolicies_dir = {}\nrelying_parties_dir = {}\n",
            quoted(&root.join("data")),
            quoted(&pol),
            quoted(&rps),
        );
        if let Some(issuer) = issuer {
            text.push_str(&format!("issuer = {issuer:?}\n"));
        }
        if let Some(url) = &self.database {
            text.push_str(&format!("database_url = {url:?}\n"));
        }
        // The caller's settings last (their tables close the top-level keys above).
        text.push_str(&self.toml);
        let cfg = root.join("broker.toml");
        std::fs::write(&cfg, text).expect("broker.toml");
        cfg
    }

    /// The broker in this process, its router served on a loopback listener (the one the
    /// revocation checker reaches the demo responder through), with `clock`, and the
    /// configuration changed by `edit` once loaded.
    pub async fn in_process(
        mut self,
        clock: Arc<dyn Clock>,
        edit: impl FnOnce(&mut Config),
    ) -> InProcess {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback listener");
        let port = listener.local_addr().expect("its address").port();
        let base = format!("http://127.0.0.1:{port}");
        let issuer =
            (self.issuer == IssuerChoice::FromPort).then(|| format!("http://localhost:{port}"));
        let cfg = self.write(&base, issuer.as_deref());
        let mut config = Config::load(Some(&cfg), |_| None).expect("the kit's broker.toml");
        edit(&mut config);
        let broker = Broker::start(config, clock).await.expect("broker starts");
        let app = broker::http::app(broker.clone());
        tokio::spawn(axum::serve(listener, app.clone()).into_future());
        InProcess {
            dir: self.dir,
            broker,
            app,
            base,
        }
    }

    /// `n` `broker serve` processes of binary `bin` on one database and one data directory,
    /// each on its own loopback port, all with the issuer of the first. The first starts alone
    /// (it makes the demo PKI and the first keys); the others find them. Logs go to
    /// `broker-<i>.log` in the directory, at `info`.
    pub fn processes(mut self, bin: &str, n: usize) -> Processes {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let issuer = format!("http://localhost:{}", ports[0]);
        let cfg = self.write(&format!("http://127.0.0.1:{}", ports[0]), Some(&issuer));
        let mut p = Processes {
            bin: bin.into(),
            cfg,
            database: self.database.clone(),
            issuer,
            ports,
            children: Vec::new(),
            dir: self.dir,
        };
        for i in 0..n {
            let child = p.spawn(i);
            p.children.push(Some(child));
            wait_for_port(
                p.ports[i],
                &format!("broker {i} did not start: {}", p.log(i)),
            );
        }
        p
    }

    /// The files only, for a broker on a free port that is not started here (a command
    /// expected to refuse the configuration, say).
    pub fn configured(mut self) -> Configured {
        let port = free_port();
        let issuer = format!("http://localhost:{port}");
        let cfg = self.write(&format!("http://127.0.0.1:{port}"), Some(&issuer));
        Configured { cfg, dir: self.dir }
    }

    /// One `broker serve` process: [`Setup::processes`] with one.
    pub fn process(self, bin: &str) -> Processes {
        self.processes(bin, 1)
    }
}

/// A broker in this process.
pub struct InProcess {
    /// Holds the data directory, relying parties, policies and broker.toml.
    pub dir: tempfile::TempDir,
    pub broker: Arc<Broker>,
    pub app: axum::Router,
    /// Base URL of the loopback listener (`http://127.0.0.1:<port>`).
    pub base: String,
}

impl InProcess {
    /// The demo PKI the broker made in its data directory.
    pub fn demo_pki(&self) -> DemoPki {
        DemoPki::load(&self.broker.config.data_dir.join("demo-pki")).expect("the demo PKI")
    }

    /// A fresh virtual card of [`person`] in `<dir>/<name>`.
    pub fn card(&self, name: &str) -> VirtualCard {
        issue_card(&self.demo_pki(), &self.dir.path().join(name), &person())
    }
}

/// A broker's files, not started.
pub struct Configured {
    cfg: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Configured {
    /// The broker.toml written.
    pub fn config_path(&self) -> &Path {
        &self.cfg
    }

    /// Run a `broker` subcommand of binary `bin` with this configuration.
    pub fn cli(&self, bin: &str, args: &[&str]) -> Output {
        Command::new(bin)
            .arg("--config")
            .arg(&self.cfg)
            .args(args)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .output()
            .expect("broker runs")
    }
}

/// Broker processes (one or more) on one database.
pub struct Processes {
    bin: PathBuf,
    cfg: PathBuf,
    /// The database (`None`: SQLite in the data directory).
    pub database: Option<String>,
    /// The one issuer every process serves.
    pub issuer: String,
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
    pub dir: tempfile::TempDir,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Processes {
    fn spawn(&self, i: usize) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("broker-{i}.log")))
            .expect("log file");
        Command::new(&self.bin)
            .arg("--config")
            .arg(&self.cfg)
            .arg("serve")
            .current_dir(self.dir.path())
            .env("BROKER_LISTEN", format!("127.0.0.1:{}", self.ports[i]))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("broker serve starts")
    }

    /// Port of process `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    /// Base URL of process `i` (`http://localhost:<port>`).
    pub fn base(&self, i: usize) -> String {
        format!("http://localhost:{}", self.ports[i])
    }

    /// The broker.toml every process reads.
    pub fn config_path(&self) -> &Path {
        &self.cfg
    }

    /// What process `i` has logged so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("broker-{i}.log"))).unwrap_or_default()
    }

    /// Stop process `i` (SIGKILL) and wait for it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start process `i` again (after [`Processes::kill`]) and wait until it listens.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let child = self.spawn(i);
        self.children[i] = Some(child);
        wait_for_port(self.ports[i], &format!("broker {i} did not restart"));
    }

    /// Whether process `i` is still running (not killed, not exited).
    pub fn is_running(&mut self, i: usize) -> bool {
        self.children[i]
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The OS process id of process `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(Child::id)
    }

    /// Run a `broker` subcommand with the processes' configuration.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("--config")
            .arg(&self.cfg)
            .args(args)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .output()
            .expect("broker runs")
    }

    /// `broker card issue` into `<dir>/<name>`; the card's folder.
    pub fn issue_card(&self, name: &str) -> PathBuf {
        let out = self.dir.path().join(name);
        let o = self.cli(&["card", "issue", "--out", &out.display().to_string()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    }
}

/// The person on every card the kit issues unless told otherwise.
pub fn person() -> CardRequest {
    let now = time::OffsetDateTime::now_utc();
    CardRequest {
        name: "試験\u{3000}花子".into(),
        name_substituted: None,
        birthdate: time::macros::date!(1985 - 06 - 15),
        gender: 2,
        address: "東京都千代田区サンプル町1-1".into(),
        address_substituted: None,
        not_before: now - time::Duration::days(1),
        not_after: now + time::Duration::days(365),
    }
}

/// A virtual card for `req` from `pki` in folder `out`, with [`AUTH_PIN`] and [`SIGN_PIN`].
pub fn issue_card(pki: &DemoPki, out: &Path, req: &CardRequest) -> VirtualCard {
    let issued = pki.issue_card(req).expect("the demo PKI issues the card");
    VirtualCard::create(out, &issued, AUTH_PIN, SIGN_PIN).expect("the virtual card")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_pair_is_rfc7636s() {
        let s256 = broker::clock::b64url(&broker::clock::sha256(VERIFIER.as_bytes()));
        assert_eq!(s256, CHALLENGE);
    }
}
