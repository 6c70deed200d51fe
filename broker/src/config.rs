//! `broker.toml`: where the broker listens, what it calls itself, where its data and
//! operator files are. Environment variables `BROKER_<KEY>` override single keys.
//!
//! Every invalid value stops start-up with one line naming the key and the problem.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use url::Url;

/// The validated configuration. Paths are absolute or relative to the working directory.
#[derive(Debug, Clone)]
pub struct Config {
    /// The issuer identifier (`iss`), also the public base URL of every endpoint.
    pub issuer: Url,
    pub listen: SocketAddr,
    pub database_url: String,
    pub data_dir: PathBuf,
    pub policies_dir: PathBuf,
    pub relying_parties_dir: PathBuf,
    /// Demo mode: a demo JPKI PKI is created under `data_dir` and trusted. Every page says DEMO.
    pub demo: bool,
    /// Allow an `http://` issuer on a host other than localhost. Never in production.
    pub danger_allow_http_issuer: bool,
    pub trust_anchors: Vec<AnchorConfig>,
    pub lifetimes: Lifetimes,
    pub database: DatabaseSettings,
    pub cluster: ClusterSettings,
    pub limits: Limits,
    pub card_app: CardApp,
}

/// `[card_app]`: the phone apps that open card-helper links themselves (universal links / app
/// links: docs/card-helper-protocol.md). The broker publishes them in
/// `/.well-known/apple-app-site-association` and `/.well-known/assetlinks.json`, scoped to the
/// helper links' path; a phone without such an app opens the link in its browser and gets a page
/// saying what to do.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CardApp {
    /// iOS apps, as `TEAMID.bundle.id`.
    pub apple_app_ids: Vec<String>,
    /// Android apps: package and the SHA-256 fingerprints of their signing certificates.
    pub android: Vec<AndroidApp>,
    /// Where a person without a card app gets one (shown on the link's page).
    pub install_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AndroidApp {
    pub package: String,
    pub sha256_cert_fingerprints: Vec<String>,
}

/// `[limits]`: what one client, one source address or one connection may hold of the broker.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Client connections open at once; further connections wait in the listen backlog (a
    /// warning is logged when the limit is reached).
    pub max_connections: usize,
    /// Seconds a client has to send a request's line and headers — counted from the
    /// connection's start, and again from the end of each response on a kept-alive connection
    /// (so it also closes idle connections).
    pub header_read_timeout: u64,
    /// Seconds a request with a body may take from its headers to its response — reading the
    /// body (one trickled in slowly) and handling it; past it the answer is 408 and the
    /// connection closes.
    pub request_timeout: u64,
    /// Bytes of request line and headers (more: 431). A connection's read buffer is bounded to
    /// twice this, so one slow connection holds at most that much memory.
    pub max_header_bytes: usize,
    /// Login transactions (started at /authorize, still waiting for the card, not expired) one
    /// relying party may have open; more are refused with `temporarily_unavailable`.
    pub open_transactions_per_client: i64,
    /// Login transactions one source address (an IPv4 address, an IPv6 /64) may have open.
    pub open_transactions_per_source: i64,
    /// Device grants (RFC 8628) one relying party may have waiting for their person.
    pub open_device_codes_per_client: i64,
    /// Pushed authorization requests (RFC 9126) one relying party may have waiting, unused
    /// and unexpired; more are refused with `temporarily_unavailable`.
    pub open_pushed_requests_per_client: i64,
    /// Wrong user codes one source address may type in ten minutes before the device page
    /// refuses it (guessing a user code: 20^8 codes).
    pub user_code_failures_per_source: i64,
    /// Behind a reverse proxy: the source address is the last one in `X-Forwarded-For` (the
    /// one the proxy appended), not the proxy's. Only set it when every request comes through
    /// the proxy.
    pub trust_forwarded_for: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: 20,
            request_timeout: 30,
            max_header_bytes: 16 * 1024,
            open_transactions_per_client: 20_000,
            open_transactions_per_source: 200,
            open_device_codes_per_client: 20_000,
            open_pushed_requests_per_client: 20_000,
            user_code_failures_per_source: 10,
            trust_forwarded_for: false,
        }
    }
}

/// `[database]`: this process's connection pool.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// Connections this process may hold (the sum over all processes must stay below the
    /// server's `max_connections`).
    pub max_connections: u32,
    /// Seconds a request waits for a connection before it fails with 503.
    pub acquire_timeout: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: 3,
        }
    }
}

/// `[cluster]`: how processes sharing one database follow each other.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Seconds between polls of the store for signing-key changes and broker events
    /// (revocation-cache purges).
    pub sync_interval: u64,
    /// Default seconds from `broker keys rotate` until the new key signs (it is published at
    /// once). At least 2 × sync_interval + the JWKS cache lifetime (300 s).
    pub key_rotation_lead: i64,
    /// Default seconds a replaced key stays published after the new key starts signing. At
    /// least the longest token lifetime + 300 s.
    pub key_retire_grace: i64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            sync_interval: 2,
            key_rotation_lead: 3600,
            key_retire_grace: 86_400,
        }
    }
}

/// How long RPs may cache the JWKS (Cache-Control max-age on /jwks).
pub const JWKS_MAX_AGE: i64 = 300;

impl Config {
    /// The shortest safe lead time of a key rotation: every process has polled the new key
    /// twice, and a JWKS cached just before it was stored has expired.
    pub fn min_rotation_lead(&self) -> i64 {
        2 * self.cluster.sync_interval as i64 + JWKS_MAX_AGE
    }

    /// The shortest safe grace period of a replaced key: the tokens it signed have expired.
    pub fn min_retire_grace(&self) -> i64 {
        self.lifetimes.access_token.max(self.lifetimes.id_token) + JWKS_MAX_AGE
    }
}

/// A configured JPKI CA certificate (PEM or DER file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorConfig {
    pub kind: crate::pki::CertKind,
    pub file: PathBuf,
    pub label: Option<String>,
}

/// Every time window, in seconds. Defaults are the values named in the docs.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Lifetimes {
    /// Authorization code (FAPI 2.0 asks ≤ 60 s).
    pub code: i64,
    pub access_token: i64,
    pub id_token: i64,
    pub refresh_token: i64,
    /// A login transaction, from /authorize to code.
    pub transaction: i64,
    /// A card challenge (single use).
    pub challenge: i64,
    /// The SSO session, absolute.
    pub session: i64,
    /// A device code and its user code (RFC 8628), from /device_authorization to the tokens.
    pub device_code: i64,
    /// A pushed authorization request's `request_uri` (RFC 9126), from the push to
    /// `/authorize`; under 60 s (FAPI 2.0 asks < 600 s; a browser follows it at once).
    pub pushed_request: i64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            code: 60,
            access_token: 600,
            id_token: 600,
            refresh_token: 30 * 24 * 3600,
            transaction: 600,
            challenge: 180,
            session: 12 * 3600,
            device_code: 600,
            pushed_request: 55,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    issuer: Option<String>,
    listen: Option<String>,
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    policies_dir: Option<PathBuf>,
    relying_parties_dir: Option<PathBuf>,
    demo: Option<bool>,
    danger_allow_http_issuer: Option<bool>,
    #[serde(default)]
    trust_anchors: Vec<AnchorConfig>,
    #[serde(default)]
    lifetimes: Lifetimes,
    #[serde(default)]
    database: DatabaseSettings,
    #[serde(default)]
    cluster: ClusterSettings,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    card_app: CardApp,
}

/// One line: which key (or file position) and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Keys that may be overridden from the environment as `BROKER_<KEY>` (upper case).
const ENV_KEYS: &[&str] = &[
    "issuer",
    "listen",
    "database_url",
    "data_dir",
    "policies_dir",
    "relying_parties_dir",
    "demo",
    "danger_allow_http_issuer",
];

impl Config {
    /// Load from `path` (or the embedded default when `None`), then apply `env` overrides.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let (mut table, origin, base) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    ConfigError(format!("config file {}: cannot read: {e}", p.display()))
                })?;
                let table: toml::Table = toml::from_str(&text).map_err(|e| {
                    ConfigError(format!(
                        "{}:{}",
                        p.display(),
                        crate::registry::describe_toml_error(&text, &e)
                    ))
                })?;
                let base = p.parent().map(Path::to_path_buf).unwrap_or_default();
                (table, p.display().to_string(), base)
            }
            None => (
                toml::Table::new(),
                "embedded default".to_string(),
                PathBuf::new(),
            ),
        };
        for key in ENV_KEYS {
            let var = format!("BROKER_{}", key.to_uppercase());
            if let Some(v) = env(&var) {
                let value = match *key {
                    "demo" | "danger_allow_http_issuer" => match v.as_str() {
                        "true" | "1" => toml::Value::Boolean(true),
                        "false" | "0" => toml::Value::Boolean(false),
                        _ => {
                            return Err(ConfigError(format!(
                                "environment {var}: expected true or false, got `{v}`"
                            )));
                        }
                    },
                    _ => toml::Value::String(v),
                };
                table.insert((*key).to_string(), value);
            }
        }
        let raw: RawConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError(format!("{origin}: {}", e.message())))?;
        Self::validate(raw, &base)
    }

    fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
        let key_err = |key: &str, msg: String| ConfigError(format!("config key `{key}`: {msg}"));
        let demo = raw.demo.unwrap_or(raw.trust_anchors.is_empty());
        let issuer_s = raw
            .issuer
            .unwrap_or_else(|| "http://localhost:8080".to_string());
        let issuer = Url::parse(&issuer_s)
            .map_err(|e| key_err("issuer", format!("`{issuer_s}` is not a URL ({e})")))?;
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(key_err(
                "issuer",
                format!("`{issuer_s}` must not have a query or fragment"),
            ));
        }
        if issuer_s.ends_with('/') {
            return Err(key_err(
                "issuer",
                format!("`{issuer_s}` must not end with `/`"),
            ));
        }
        let danger_http = raw.danger_allow_http_issuer.unwrap_or(false);
        match issuer.scheme() {
            "https" => {}
            "http" => {
                let local = issuer.host_str() == Some("localhost");
                if !(danger_http || (demo && local)) {
                    return Err(key_err(
                        "issuer",
                        format!(
                            "`{issuer_s}` uses http; only https is allowed (http://localhost in demo mode, or set danger_allow_http_issuer = true)"
                        ),
                    ));
                }
            }
            other => {
                return Err(key_err(
                    "issuer",
                    format!("scheme `{other}` is not http or https"),
                ));
            }
        }
        if issuer.host_str().is_none() {
            return Err(key_err("issuer", format!("`{issuer_s}` has no host")));
        }
        let listen_s = raw.listen.unwrap_or_else(|| "127.0.0.1:8080".to_string());
        let listen: SocketAddr = listen_s.parse().map_err(|_| {
            key_err(
                "listen",
                format!("`{listen_s}` is not an address:port such as 127.0.0.1:8080"),
            )
        })?;
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let data_dir = resolve(raw.data_dir.unwrap_or_else(|| PathBuf::from("data")));
        let database_url = raw.database_url.unwrap_or_else(|| {
            format!("sqlite://{}?mode=rwc", data_dir.join("broker.db").display())
        });
        if crate::store::sql::Engine::of(&database_url).is_none() {
            return Err(key_err(
                "database_url",
                format!(
                    "`{}` is not supported: use sqlite://PATH or postgres://USER@HOST/DB",
                    redact_url(&database_url)
                ),
            ));
        }
        if !(1..=1000).contains(&raw.database.max_connections) {
            return Err(key_err(
                "database.max_connections",
                format!("{} is out of range 1..=1000", raw.database.max_connections),
            ));
        }
        if !(1..=300).contains(&raw.database.acquire_timeout) {
            return Err(key_err(
                "database.acquire_timeout",
                format!(
                    "{} is out of range 1..=300 seconds",
                    raw.database.acquire_timeout
                ),
            ));
        }
        if !(1..=300).contains(&raw.cluster.sync_interval) {
            return Err(key_err(
                "cluster.sync_interval",
                format!(
                    "{} is out of range 1..=300 seconds",
                    raw.cluster.sync_interval
                ),
            ));
        }
        let lt = raw.lifetimes;
        for (name, v, max) in [
            ("code", lt.code, 600),
            ("access_token", lt.access_token, 86_400),
            ("id_token", lt.id_token, 86_400),
            ("refresh_token", lt.refresh_token, 400 * 86_400),
            ("transaction", lt.transaction, 3_600),
            ("challenge", lt.challenge, 600),
            ("session", lt.session, 30 * 86_400),
            ("pushed_request", lt.pushed_request, 59),
        ] {
            if v <= 0 || v > max {
                return Err(key_err(
                    &format!("lifetimes.{name}"),
                    format!("{v} is out of range 1..={max} seconds"),
                ));
            }
        }
        let lim = raw.limits;
        for (name, v, range) in [
            ("max_connections", lim.max_connections as i64, 1..=1_000_000),
            (
                "header_read_timeout",
                lim.header_read_timeout as i64,
                1..=600,
            ),
            (
                "max_header_bytes",
                lim.max_header_bytes as i64,
                4096..=1_048_576,
            ),
            (
                "open_transactions_per_client",
                lim.open_transactions_per_client,
                1..=100_000_000,
            ),
            (
                "open_transactions_per_source",
                lim.open_transactions_per_source,
                1..=100_000_000,
            ),
            (
                "open_pushed_requests_per_client",
                lim.open_pushed_requests_per_client,
                1..=100_000_000,
            ),
        ] {
            if !range.contains(&v) {
                return Err(key_err(
                    &format!("limits.{name}"),
                    format!("{v} is out of range {}..={}", range.start(), range.end()),
                ));
            }
        }
        let trust_anchors = raw
            .trust_anchors
            .into_iter()
            .map(|a| AnchorConfig {
                file: resolve(a.file),
                ..a
            })
            .collect();
        let c = Ok::<_, ConfigError>(Config {
            issuer,
            listen,
            database_url,
            policies_dir: resolve(
                raw.policies_dir
                    .unwrap_or_else(|| PathBuf::from("policies")),
            ),
            relying_parties_dir: resolve(
                raw.relying_parties_dir
                    .unwrap_or_else(|| PathBuf::from("relying-parties")),
            ),
            data_dir,
            demo,
            danger_allow_http_issuer: danger_http,
            trust_anchors,
            lifetimes: lt,
            database: raw.database,
            cluster: raw.cluster,
            limits: lim,
            card_app: raw.card_app,
        })?;
        let (lead, grace) = (c.cluster.key_rotation_lead, c.cluster.key_retire_grace);
        if lead < c.min_rotation_lead() {
            return Err(key_err(
                "cluster.key_rotation_lead",
                format!(
                    "{lead} is shorter than {} seconds (2 × sync_interval + the 300 s JWKS cache lifetime)",
                    c.min_rotation_lead()
                ),
            ));
        }
        if grace < c.min_retire_grace() {
            return Err(key_err(
                "cluster.key_retire_grace",
                format!(
                    "{grace} is shorter than {} seconds (the longest token lifetime + 300 s)",
                    c.min_retire_grace()
                ),
            ));
        }
        Ok(c)
    }

    /// The issuer as a string without trailing slash (what goes into `iss`).
    pub fn issuer_str(&self) -> &str {
        self.issuer.as_str().trim_end_matches('/')
    }
}

fn redact_url(s: &str) -> String {
    match Url::parse(s) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("broker.toml");
        std::fs::write(&p, text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Config::load(Some(&p), |k| {
            env.iter().find(|(a, _)| a == k).map(|(_, b)| b.clone())
        })
    }

    #[test]
    fn embedded_default_is_demo_on_localhost() {
        let c = Config::load(None, |_| None).unwrap();
        assert_eq!(c.issuer_str(), "http://localhost:8080");
        assert!(c.demo);
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.database_url.starts_with("sqlite://"));
    }

    /// The shipped broker.toml says what the embedded default is, and is it: demo mode because
    /// no trust anchors are configured (not because it says `demo = true`), the same limits.
    #[test]
    fn shipped_broker_toml_is_the_embedded_default() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../broker.toml");
        let shipped = Config::load(Some(&p), |_| None).unwrap();
        let embedded = Config::load(None, |_| None).unwrap();
        assert!(shipped.demo && embedded.demo);
        assert_eq!(shipped.issuer, embedded.issuer);
        assert_eq!(
            format!("{:?}", shipped.limits),
            format!("{:?}", embedded.limits)
        );
        assert_eq!(
            format!("{:?}", shipped.lifetimes),
            format!("{:?}", embedded.lifetimes)
        );
        // With a trust anchor added, demo mode is off.
        let text = std::fs::read_to_string(&p).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let with_anchor = dir.path().join("broker.toml");
        std::fs::write(
            &with_anchor,
            text.replace(
                "# [[trust_anchors]]\n# kind = \"user_auth\"          # or \"signature\"\n# file = \"certs/jpki-authca02.pem\"",
                "[[trust_anchors]]\nkind = \"user_auth\"\nfile = \"certs/jpki-authca02.pem\"",
            )
            .replace("issuer = \"http://localhost:8080\"", "issuer = \"https://idp.example.jp\""),
        )
        .unwrap();
        let c = Config::load(Some(&with_anchor), |_| None).unwrap();
        assert_eq!(c.trust_anchors.len(), 1);
        assert!(!c.demo);
    }

    #[test]
    fn env_overrides_a_key() {
        let c = load_str(
            "listen = \"127.0.0.1:9000\"\n",
            &[("BROKER_LISTEN", "127.0.0.1:9100")],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9100);
    }

    #[test]
    fn invalid_values_name_the_key() {
        let e = load_str("listen = \"nowhere\"\n", &[]).unwrap_err().0;
        assert_eq!(
            e,
            "config key `listen`: `nowhere` is not an address:port such as 127.0.0.1:8080"
        );
        let e = load_str("issuer = \"https://idp.example.jp/\"\n", &[])
            .unwrap_err()
            .0;
        assert!(e.starts_with("config key `issuer`:"), "{e}");
        let e = load_str("[lifetimes]\ncode = 0\n", &[]).unwrap_err().0;
        assert_eq!(
            e,
            "config key `lifetimes.code`: 0 is out of range 1..=600 seconds"
        );
        let e = load_str("bogus = 1\n", &[]).unwrap_err().0;
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let e = load_str("", &[("BROKER_DEMO", "maybe")]).unwrap_err().0;
        assert_eq!(
            e,
            "environment BROKER_DEMO: expected true or false, got `maybe`"
        );
    }

    #[test]
    fn http_issuer_needs_demo_localhost_or_danger() {
        let e = load_str("issuer = \"http://idp.example.jp\"\ndemo = true\n", &[])
            .unwrap_err()
            .0;
        assert!(e.contains("uses http"), "{e}");
        let c = load_str(
            "issuer = \"http://idp.example.jp\"\ndanger_allow_http_issuer = true\n",
            &[],
        )
        .unwrap();
        assert!(c.danger_allow_http_issuer);
        let e = load_str("issuer = \"http://localhost:8080\"\ndemo = false\n", &[])
            .unwrap_err()
            .0;
        assert!(e.contains("uses http"), "{e}");
    }

    #[test]
    fn database_and_cluster_settings_are_checked() {
        let c = load_str(
            "database_url = \"postgres://broker@db.internal/broker\"\n[database]\nmax_connections = 32\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.database_url, "postgres://broker@db.internal/broker");
        assert_eq!(c.database.max_connections, 32);
        assert_eq!(c.cluster.sync_interval, 2);
        let e = load_str("database_url = \"mysql://u:secret@h/db\"\n", &[])
            .unwrap_err()
            .0;
        assert!(e.starts_with("config key `database_url`: "), "{e}");
        assert!(!e.contains("secret"), "the password is redacted: {e}");
        let e = load_str("[database]\nmax_connections = 0\n", &[])
            .unwrap_err()
            .0;
        assert_eq!(
            e,
            "config key `database.max_connections`: 0 is out of range 1..=1000"
        );
        let e = load_str("[cluster]\nkey_rotation_lead = 60\n", &[])
            .unwrap_err()
            .0;
        assert_eq!(
            e,
            "config key `cluster.key_rotation_lead`: 60 is shorter than 304 seconds (2 × sync_interval + the 300 s JWKS cache lifetime)"
        );
        let e = load_str("[limits]\nmax_header_bytes = 100\n", &[])
            .unwrap_err()
            .0;
        assert_eq!(
            e,
            "config key `limits.max_header_bytes`: 100 is out of range 4096..=1048576"
        );
        let c = load_str("[limits]\nopen_transactions_per_source = 5\n", &[]).unwrap();
        assert_eq!(c.limits.open_transactions_per_source, 5);
        assert_eq!(c.limits.max_connections, 1024);
        let e = load_str("[cluster]\nkey_retire_grace = 600\n", &[])
            .unwrap_err()
            .0;
        assert_eq!(
            e,
            "config key `cluster.key_retire_grace`: 600 is shorter than 900 seconds (the longest token lifetime + 300 s)"
        );
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let e = load_str("issuer = \"x\"\nlisten = \n", &[]).unwrap_err().0;
        assert!(e.contains("broker.toml:2:"), "{e}");
    }
}
