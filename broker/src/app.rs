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
    registry: RwLock<Arc<Registry>>,
    policy: RwLock<Arc<Policy>>,
    pub store: Arc<dyn Store>,
    pub keys: KeySet,
    pub trust: Arc<TrustStore>,
    pub clock: Arc<dyn Clock>,
    /// Server MAC key: pairwise subjects and helper-link derivation (separate labels).
    mac_key: aws_lc_rs::hmac::Key,
}

/// Make jsonwebtoken use aws-lc-rs (it panics on first use otherwise when features collide).
pub fn install_crypto_provider() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

impl Broker {
    /// Assemble a broker from `config`: load operator files, open the store, create keys and
    /// (in demo mode) the demo PKI on first start.
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Broker>> {
        install_crypto_provider();
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
        let registry = Registry::load_dir(&config.relying_parties_dir)?;
        let policy = Policy::load_dir(&config.policies_dir)?;
        let trust = Arc::new(load_trust(&config, clock.now())?);
        let store: Arc<dyn Store> = Arc::new(
            crate::store::sqlite::SqliteStore::connect(&config.database_url)
                .await
                .context("cannot open the database")?,
        );
        let now = clock.now().unix_timestamp();
        let keys = KeySet::load_or_create(store.as_ref(), now).await?;
        let mac = store.secret("mac_key", &random_token()).await?;
        let mac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, mac.as_bytes());
        Ok(Arc::new(Broker {
            config,
            registry: RwLock::new(Arc::new(registry)),
            policy: RwLock::new(Arc::new(policy)),
            store,
            keys,
            trust,
            clock,
            mac_key,
        }))
    }

    /// The current relying-party snapshot.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current policy snapshot.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn issuer(&self) -> &str {
        self.config.issuer_str()
    }

    pub fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    /// HMAC-SHA256 under the server key of `label` ‖ 0 ‖ `data`, base64url.
    pub fn mac(&self, label: &str, data: &[u8]) -> String {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.mac_key);
        ctx.update(label.as_bytes());
        ctx.update(&[0]);
        ctx.update(data);
        crate::clock::b64url(ctx.sign().as_ref())
    }

    pub fn demo(&self) -> bool {
        self.config.demo
    }
}

/// Trust anchors: the configured CA files, plus the demo PKI's CAs in demo mode.
fn load_trust(config: &Config, now: time::OffsetDateTime) -> anyhow::Result<TrustStore> {
    let mut anchors = Vec::new();
    if config.demo {
        let (demo, created) =
            crate::pki::demo::DemoPki::load_or_create(&config.data_dir.join("demo-pki"), now)
                .context("demo PKI")?;
        if created {
            tracing::warn!(dir = %config.data_dir.join("demo-pki").display(), "DEMO: created a demo JPKI PKI");
        }
        anchors.extend(demo.anchors());
    }
    for a in &config.trust_anchors {
        let bytes = std::fs::read(&a.file)
            .with_context(|| format!("trust anchor {}: cannot read", a.file.display()))?;
        let der = match pem::parse(&bytes) {
            Ok(p) if p.tag() == "CERTIFICATE" => p.into_contents(),
            Ok(p) => anyhow::bail!(
                "trust anchor {}: PEM block is `{}`, expected CERTIFICATE",
                a.file.display(),
                p.tag()
            ),
            Err(_) => bytes,
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
    if !anchors.iter().any(|a| a.kind == CertKind::UserAuth) {
        anyhow::bail!(
            "no user-authentication trust anchor: configure [[trust_anchors]] with kind = \"user_auth\" (or run in demo mode)"
        );
    }
    TrustStore::new(anchors).map_err(|e| anyhow::anyhow!("trust anchors: {e}"))
}
