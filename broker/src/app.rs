//! The running broker: configuration, the registry and policy snapshots, the store, keys,
//! trust anchors and clock, assembled once at start and shared (`Arc<Broker>`).

use crate::clock::{Clock, random_token};
use crate::config::Config;
use crate::oidc::keys::KeySet;
use crate::pki::{CertKind, TrustAnchor, TrustStore};
use crate::registry::Registry;
use crate::registry::policy::Policy;
use crate::store::Store;
use anyhow::Context;
use std::sync::{Arc, RwLock};

pub struct Broker {
    pub config: Config,
    /// Relying parties and policy, with what is derived from them, swapped whole.
    snapshot: RwLock<Arc<Snapshot>>,
    pub store: Arc<dyn Store>,
    /// The published signing keys, reloaded from the store by [`Broker::sync`].
    keys: RwLock<Arc<KeySet>>,
    pub trust: Arc<TrustStore>,
    pub clock: Arc<dyn Clock>,
    /// Revocation checker (OCSP/CRL behind the cache), rebuilt when a reload changes the
    /// policy's `[revocation]` section.
    checker: RwLock<Arc<crate::revocation::Checker>>,
    /// Broker events this process posted and applied already (purges): the sync that reads
    /// them back skips them.
    pub(crate) applied_here: std::sync::Mutex<std::collections::HashSet<i64>>,
    /// Where the checker fetches OCSP responses and CRLs (kept for rebuilding it).
    fetcher: Arc<dyn crate::revocation::Fetcher>,
    /// The demo CA (demo mode): revocation database, OCSP responder, CRL publisher.
    demo_ca: Option<Arc<crate::pki::demo::ca::DemoCa>>,
    /// SHA-256 of the operator's admin token (`data_dir/admin.token`).
    admin_token_sha256: [u8; 32],
    /// Server MAC key: pairwise subjects and helper-link derivation (separate labels).
    mac_key: crate::clock::ServerKey,
    /// The WebAuthn relying party (RP ID = the issuer's host, origin = the issuer's); `None`
    /// when the issuer's host is not a domain name (WebAuthn refuses IP addresses).
    webauthn: Option<webauthn_rs::Webauthn>,
}

/// The WebAuthn relying party of `issuer`: its host is the RP ID, its origin the only one
/// accepted.
fn webauthn_for(issuer: &str) -> Option<webauthn_rs::Webauthn> {
    let origin = url::Url::parse(issuer).ok()?;
    let Some(host) = origin.domain().map(str::to_string) else {
        tracing::warn!(
            issuer,
            "passkeys unavailable: WebAuthn needs an issuer whose host is a domain name"
        );
        return None;
    };
    match webauthn_rs::WebauthnBuilder::new(&host, &origin)
        .and_then(|b| b.rp_name("JPKI broker").build())
    {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(issuer, error = %e, "passkeys unavailable: the issuer is no WebAuthn origin");
            None
        }
    }
}

/// The operator's files as served at one moment, and what is derived from them alone.
pub struct Snapshot {
    pub registry: Arc<Registry>,
    pub policy: Arc<Policy>,
    /// `registry::files::content_digest` of the files.
    pub digest: String,
    /// The discovery document, serialized once (it depends only on the issuer and the policy).
    pub discovery: axum::body::Bytes,
}

impl Snapshot {
    fn new(issuer: &str, registry: Registry, policy: Policy, digest: String) -> Snapshot {
        let discovery = axum::body::Bytes::from(
            serde_json::to_vec(&crate::oidc::discovery::metadata(issuer, &policy))
                .unwrap_or_default(),
        );
        Snapshot {
            registry: Arc::new(registry),
            policy: Arc::new(policy),
            digest,
            discovery,
        }
    }
}

/// Gauge `broker_policy_snapshot{digest}`: 1 for the digest served now, 0 for the one before.
fn publish_snapshot_digest(before: Option<&str>, digest: &str) {
    if let Some(old) = before.filter(|o| *o != digest) {
        metrics::gauge!("broker_policy_snapshot", "digest" => old.to_string()).set(0.0);
    }
    if before != Some(digest) {
        tracing::info!(%digest, "serving policy snapshot");
    }
    metrics::gauge!("broker_policy_snapshot", "digest" => digest.to_string()).set(1.0);
}

/// Make jsonwebtoken use aws-lc-rs (it panics on first use otherwise when features collide).
pub fn install_crypto_provider() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

impl Broker {
    /// Assemble a broker from `config`: load operator files, open the store, create keys and
    /// (in demo mode) the demo PKI on first start.
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Broker>> {
        let fetcher = Arc::new(crate::revocation::HttpFetcher::new()?);
        Self::start_with(config, clock, fetcher).await
    }

    /// As [`Broker::start`], with the revocation fetcher given (tests count or fake upstreams).
    pub async fn start_with(
        config: Config,
        clock: Arc<dyn Clock>,
        fetcher: Arc<dyn crate::revocation::Fetcher>,
    ) -> anyhow::Result<Arc<Broker>> {
        install_crypto_provider();
        metrics_handle();
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
        let mut registry = Registry::load_dir(&config.relying_parties_dir)?;
        let policy = Policy::load_dir(&config.policies_dir)?;
        registry.check_against(&policy)?;
        registry.restrict_claims(&policy);
        registry.add_account_client(config.issuer_str());
        let digest = crate::registry::files::content_digest(&[
            &config.relying_parties_dir,
            &config.policies_dir,
        ]);
        let trust = Arc::new(load_trust(&config, Some(clock.now()))?);
        let store = open_store(&config).await?;
        let now = clock.now().unix_timestamp();
        let keys = load_or_create_keys(store.as_ref(), now).await?;
        let mac = store.secret("mac_key", &random_token()).await?;
        let mac_key = crate::clock::ServerKey::new(mac.as_bytes());
        let checker = crate::revocation::Checker::new(
            policy.revocation.clone(),
            config.issuer_str(),
            fetcher.clone(),
            clock.clone(),
        );
        let demo_ca = if config.demo {
            Some(Arc::new(crate::pki::demo::ca::DemoCa::open(
                &config.data_dir.join("demo-pki"),
            )?))
        } else {
            None
        };
        let admin_token_sha256 = admin_token(&config.data_dir)?;
        for w in crate::revocation::source_warnings(&policy.revocation, &trust.labels()) {
            tracing::warn!("{w}");
        }
        publish_snapshot_digest(None, &digest);
        let snapshot = Snapshot::new(config.issuer_str(), registry, policy, digest);
        let webauthn = webauthn_for(config.issuer_str());
        Ok(Arc::new(Broker {
            webauthn,
            config,
            snapshot: RwLock::new(Arc::new(snapshot)),
            store,
            keys: RwLock::new(Arc::new(keys)),
            trust,
            clock,
            checker: RwLock::new(checker),
            applied_here: Default::default(),
            fetcher,
            demo_ca,
            admin_token_sha256,
            mac_key,
        }))
    }

    /// The WebAuthn relying party, if the issuer can be one.
    pub fn webauthn(&self) -> Option<&webauthn_rs::Webauthn> {
        self.webauthn.as_ref()
    }

    /// The snapshot of the operator's files being served.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current relying-party snapshot.
    pub fn registry(&self) -> Arc<Registry> {
        self.snapshot().registry.clone()
    }

    /// Swap in a new relying-party and policy snapshot, whole (see `service::reload`), and
    /// publish the `digest` of its files. Requests in flight keep the snapshot they started
    /// with. A changed `[revocation]` section gets a new revocation checker (with an empty
    /// cache: answers cached under the old sources or bounds are not kept); true if so.
    pub fn swap_snapshots(&self, registry: Registry, policy: Policy, digest: String) -> bool {
        let revocation_changed = policy.revocation != *self.checker().policy();
        if revocation_changed {
            for w in crate::revocation::source_warnings(&policy.revocation, &self.trust.labels()) {
                tracing::warn!("{w}");
            }
            let checker = crate::revocation::Checker::new(
                policy.revocation.clone(),
                self.config.issuer_str(),
                self.fetcher.clone(),
                self.clock.clone(),
            );
            *self.checker.write().unwrap_or_else(|e| e.into_inner()) = checker;
            tracing::warn!(
                "the [revocation] policy changed: revocation checker rebuilt, its cache starts empty"
            );
        }
        let next = Arc::new(Snapshot::new(
            self.config.issuer_str(),
            registry,
            policy,
            digest,
        ));
        let before = std::mem::replace(
            &mut *self.snapshot.write().unwrap_or_else(|e| e.into_inner()),
            next.clone(),
        );
        publish_snapshot_digest(Some(&before.digest), &next.digest);
        revocation_changed
    }

    /// The revocation checker in force.
    pub fn checker(&self) -> Arc<crate::revocation::Checker> {
        self.checker
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Digest of the policy and relying-party files being served.
    pub fn snapshot_digest(&self) -> String {
        self.snapshot().digest.clone()
    }

    /// The discovery document of the snapshot being served.
    pub fn discovery_json(&self) -> axum::body::Bytes {
        self.snapshot().discovery.clone()
    }

    /// The signing keys as last loaded.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serve `keys` from now on (`service::cluster::sync` after a rotation).
    pub fn set_keys(&self, keys: KeySet) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }

    /// The current policy snapshot.
    pub fn policy(&self) -> Arc<Policy> {
        self.snapshot().policy.clone()
    }

    pub fn issuer(&self) -> &str {
        self.config.issuer_str()
    }

    pub fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    /// HMAC-SHA256 under the server key of `label` ‖ 0 ‖ `data`, base64url.
    pub fn mac(&self, label: &str, data: &[u8]) -> String {
        self.mac_key.mac(label, data)
    }

    /// The server's MAC key.
    pub fn server_key(&self) -> &crate::clock::ServerKey {
        &self.mac_key
    }

    pub fn demo(&self) -> bool {
        self.config.demo
    }

    pub fn demo_ca(&self) -> Option<Arc<crate::pki::demo::ca::DemoCa>> {
        self.demo_ca.clone()
    }

    /// Does `presented` equal the operator's admin token?
    pub fn admin_token_matches(&self, presented: &str) -> bool {
        !presented.is_empty()
            && crate::clock::ct_eq(
                &crate::clock::sha256(presented.as_bytes()),
                &self.admin_token_sha256,
            )
    }

    /// The CA certificate (DER) of the trust anchor labelled `label`.
    pub fn anchor_der(&self, label: &str) -> Option<Arc<[u8]>> {
        self.trust.anchor_der(label)
    }
}

/// Start-up: load the published keys, first generating and storing a signing key for any
/// algorithm that has none active now (safe when several processes start at once).
pub async fn load_or_create_keys(store: &dyn Store, now: i64) -> anyhow::Result<KeySet> {
    use crate::oidc::keys::{ALGS, active_record, new_record};
    let recs = store.signing_keys().await?;
    for (alg, _) in ALGS {
        if !recs.iter().any(|k| active_record(k, alg, now)) {
            store
                .insert_first_signing_key(&new_record(alg, now, now)?, now)
                .await?;
        }
    }
    Ok(KeySet::from_records(&store.signing_keys().await?, now)?)
}

/// Open (and migrate) the configured database with this process's pool settings.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let settings = crate::store::sql::PoolSettings {
        max_connections: config.database.max_connections,
        acquire_timeout: std::time::Duration::from_secs(config.database.acquire_timeout),
    };
    Ok(Arc::new(
        crate::store::sql::SqlStore::connect(&config.database_url, settings)
            .await
            .context("cannot open the database")?,
    ))
}

/// Path of the operator's admin token inside `data_dir`.
pub fn admin_token_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("admin.token")
}

/// Read (or create, mode 0600) the admin token; keep only its hash in memory.
fn admin_token(data_dir: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    let path = admin_token_path(data_dir);
    let token = match std::fs::read_to_string(&path) {
        Ok(t) => t.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let t = random_token();
            write_private(&path, t.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            t
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if token.len() < 32 {
        anyhow::bail!(
            "{}: the admin token is shorter than 32 characters",
            path.display()
        );
    }
    Ok(crate::clock::sha256(token.as_bytes()))
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)?.write_all(bytes)
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static H: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    H.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (embedding); then ours only renders.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Trust anchors: the configured CA files, plus the demo PKI's CAs in demo mode — created at
/// `now` if given and missing (the server's start), else only loaded if it exists (operator
/// tools).
pub fn load_trust(
    config: &Config,
    create_demo_at: Option<time::OffsetDateTime>,
) -> anyhow::Result<TrustStore> {
    let mut anchors = Vec::new();
    let demo_dir = config.data_dir.join("demo-pki");
    match create_demo_at {
        Some(now) if config.demo => {
            let (demo, created) =
                crate::pki::demo::DemoPki::load_or_create(&demo_dir, now).context("demo PKI")?;
            if created {
                tracing::warn!(dir = %demo_dir.display(), "DEMO: created a demo JPKI PKI");
            }
            anchors.extend(demo.anchors());
        }
        None if config.demo && demo_dir.exists() => {
            anchors.extend(
                crate::pki::demo::DemoPki::load(&demo_dir)
                    .context("demo PKI")?
                    .anchors(),
            );
        }
        _ => {}
    }
    anchors.extend(configured_anchors(config)?);
    if !anchors.iter().any(|a| a.kind == CertKind::UserAuth) {
        anyhow::bail!(
            "no user-authentication trust anchor: configure [[trust_anchors]] with kind = \"user_auth\" (or run in demo mode)"
        );
    }
    TrustStore::new(anchors).map_err(|e| anyhow::anyhow!("trust anchors: {e}"))
}

/// The `[[trust_anchors]]` of the configuration, read from their files: one CA certificate
/// per file (PEM or DER). A PEM file with several certificates is refused — each CA generation
/// needs its own label (revocation sources name anchors by label), and taking only the first
/// would silently distrust the others.
pub fn configured_anchors(config: &Config) -> anyhow::Result<Vec<TrustAnchor>> {
    let mut anchors = Vec::new();
    for a in &config.trust_anchors {
        let bytes = std::fs::read(&a.file)
            .with_context(|| format!("trust anchor {}: cannot read", a.file.display()))?;
        let der = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            let blocks = pem::parse_many(&bytes)
                .map_err(|e| anyhow::anyhow!("trust anchor {}: not PEM: {e}", a.file.display()))?;
            match blocks.as_slice() {
                [one] if one.tag() == "CERTIFICATE" => one.contents().to_vec(),
                [one] => anyhow::bail!(
                    "trust anchor {}: PEM block is `{}`, expected CERTIFICATE",
                    a.file.display(),
                    one.tag()
                ),
                [] => anyhow::bail!("trust anchor {}: no PEM block", a.file.display()),
                many => anyhow::bail!(
                    "trust anchor {}: the file holds {} certificates; give each CA certificate its own [[trust_anchors]] entry (and label)",
                    a.file.display(),
                    many.len()
                ),
            }
        } else {
            bytes
        };
        anchors.push(TrustAnchor {
            kind: a.kind,
            label: a
                .label
                .clone()
                .unwrap_or_else(|| a.file.display().to_string()),
            cert_der: der,
            demo: false,
        });
    }
    Ok(anchors)
}
