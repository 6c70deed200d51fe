//! The revocation checker: OCSP first, CRL as fallback, behind a bounded, single-flight cache.
//!
//! Every certificate that authenticates a person (and later signs a document) goes through
//! [`Checker::check`]. A cache hit costs a hash lookup; a miss makes one upstream fetch however
//! many logins wait for it (moka coalesces them); an entry close to expiry is served and
//! refreshed in the background; failures are cached briefly so a dead responder is not
//! hammered. What to do when no answer can be had is the policy's decision (`assurance`).

use crate::clock::Clock;
use crate::pki::crl::CrlIndex;
use crate::pki::ocsp::{self, CertId, Freshness, NonceCheck};
use crate::pki::{CertStatus, ValidatedCert};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

pub mod fetch;

pub use crate::registry::policy::{IssuerSources, RevocationPolicy};
pub use fetch::{Fetcher, HttpFetcher};

/// What the checker needs of a certificate: its CA (trust-anchor label and certificate) and
/// its serial. A validated certificate gives one; so does a stored (issuer, serial) pair.
#[derive(Debug, Clone)]
pub struct CertRef {
    pub anchor_label: String,
    pub issuer_cert_der: Arc<[u8]>,
    /// Minimal big-endian serial bytes.
    pub serial: Vec<u8>,
}

impl From<&ValidatedCert> for CertRef {
    fn from(c: &ValidatedCert) -> CertRef {
        CertRef {
            anchor_label: c.anchor_label.clone(),
            issuer_cert_der: c.issuer_cert_der.clone(),
            serial: c.serial.clone(),
        }
    }
}

/// What an operator must hear about `policy`'s revocation sources against the trust anchors
/// in force: an anchor without a source (logins under it fail closed), a source naming an anchor
/// that is not configured (it is never used — a mistyped label). Logged at start and on reload;
/// `broker policy check` reports them.
pub fn source_warnings(policy: &RevocationPolicy, labels: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for l in labels {
        if !policy.issuers.iter().any(|s| s.anchor == *l) {
            out.push(format!(
                "trust anchor `{l}` has no revocation source ([[revocation.issuers]] anchor = \"{l}\"): logins and signatures under this CA fail closed"
            ));
        }
    }
    for s in &policy.issuers {
        if !labels.contains(&s.anchor.as_str()) {
            out.push(format!(
                "revocation sources name anchor `{}`, which is not a configured trust anchor ({}): they are never used",
                s.anchor,
                labels.join(", ")
            ));
        }
    }
    out
}

/// Which source answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Ocsp,
    Crl,
}

/// What the broker learned about one certificate, and from where — kept as evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub status: CertStatus,
    pub source: SourceKind,
    /// Responder URL or CRL location.
    pub location: String,
    #[serde(with = "time::serde::rfc3339")]
    pub this_update: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_update: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
    /// The broker trusts this answer until then at the latest, whatever its nextUpdate: for a
    /// CRL, the end of the CRL's freshness (`max_cache_seconds` after it was fetched).
    #[serde(skip)]
    pub trusted_until: Option<OffsetDateTime>,
}

impl Evidence {
    /// The location as it may be shown outside the broker: an http(s) responder or CRL URL, but
    /// never a local file path.
    pub fn public_location(&self) -> &str {
        if self.location.starts_with("http://") || self.location.starts_with("https://") {
            &self.location
        } else {
            "local CRL file"
        }
    }
}

/// No revocation answer could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    /// The policy names no OCSP responder or CRL for this certificate's CA.
    #[error("no revocation source is configured for CA `{anchor}`")]
    NoSources { anchor: String },
    /// Every source failed; each cause is named.
    #[error("revocation status unavailable: {}", causes.join("; "))]
    Unavailable { causes: Vec<String> },
}

impl RevocationError {
    /// What may be said outside the broker (a person's page, the helper, a bank): no
    /// responder URL, CRL location or file path — those stay in the log.
    pub fn public_message(&self) -> &'static str {
        match self {
            RevocationError::NoSources { .. } => {
                "no revocation source is configured for this certificate's CA"
            }
            RevocationError::Unavailable { .. } => "the revocation sources did not answer",
        }
    }
}

/// Evidence is shared (`Arc`): a cache hit clones a pointer, not strings.
type Outcome = Result<Arc<Evidence>, RevocationError>;

/// A cache entry: the outcome and when (by the broker's clock) it stops being usable.
struct Cached {
    outcome: Outcome,
    valid_until: OffsetDateTime,
    refresh_from: OffsetDateTime,
    refreshing: AtomicBool,
    ttl: Duration,
}

/// Cache key: SHA-1 of the issuer's public key (as in the OCSP CertID) and the serial.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    issuer_key_hash: [u8; 20],
    serial: Vec<u8>,
}

struct TtlExpiry;

impl moka::Expiry<Key, Arc<Cached>> for TtlExpiry {
    fn expire_after_create(&self, _: &Key, v: &Arc<Cached>, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_update(
        &self,
        _: &Key,
        v: &Arc<Cached>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// The read side of the cache: sharded maps behind read locks, so a hit is a hash lookup
/// without the bookkeeping moka does on reads. moka remains the cache of record (capacity,
/// TTL, single flight); its eviction listener removes what it evicts from here.
struct FastMap {
    shards: Vec<RwLock<HashMap<Key, Arc<Cached>>>>,
    per_shard_cap: usize,
}

const SHARDS: usize = 16;

impl FastMap {
    fn new(capacity: u64) -> FastMap {
        FastMap {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            per_shard_cap: (capacity as usize / SHARDS).max(16),
        }
    }
    fn shard(&self, k: &Key) -> &RwLock<HashMap<Key, Arc<Cached>>> {
        let b = k.serial.last().copied().unwrap_or(0) ^ k.issuer_key_hash[0];
        &self.shards[b as usize % SHARDS]
    }
    fn get(&self, k: &Key) -> Option<Arc<Cached>> {
        self.shard(k)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(k)
            .cloned()
    }
    fn insert(&self, k: Key, v: Arc<Cached>, now: OffsetDateTime) {
        let mut m = self.shard(&k).write().unwrap_or_else(|e| e.into_inner());
        if m.len() >= self.per_shard_cap {
            // Safety valve against entries moka evicted before they got here.
            m.retain(|_, c| c.valid_until > now);
        }
        m.insert(k, v);
    }
    fn remove(&self, k: &Key) {
        self.shard(k)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(k);
    }
    fn clear(&self) {
        for s in &self.shards {
            s.write().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}

/// (SHA-1 of the issuer's name, SHA-1 of its key) as in an OCSP CertID.
type IssuerHashes = ([u8; 20], [u8; 20]);

/// A loaded CRL and until when it is used without fetching it again.
struct LoadedCrl {
    index: Arc<CrlIndex>,
    /// min(nextUpdate, fetched + `max_cache_seconds`): a revocation published at the same
    /// location is seen within `max_cache_seconds`, as for OCSP answers, although the CRL
    /// itself says it is good until its nextUpdate (J-LIS: a day; often a week).
    fresh_until: OffsetDateTime,
    /// SHA-256 of the bytes fetched: the same bytes again are not parsed again.
    digest: [u8; 32],
}

pub struct Checker {
    policy: RevocationPolicy,
    /// Sources by anchor label, with `{issuer}` expanded.
    sources: HashMap<String, IssuerSources>,
    fetcher: Arc<dyn Fetcher>,
    clock: Arc<dyn Clock>,
    cache: moka::future::Cache<Key, Arc<Cached>>,
    fast: Arc<FastMap>,
    crls: RwLock<HashMap<String, LoadedCrl>>,
    /// The newest thisUpdate seen per CRL location (kept through purges): an older CRL is
    /// never taken.
    crl_newest: std::sync::Mutex<HashMap<String, OffsetDateTime>>,
    /// Loads of one CRL location coalesce too.
    crl_loads: moka::future::Cache<String, Result<Arc<CrlIndex>, String>>,
    /// (issuer name hash, issuer key hash) per anchor label.
    issuer_ids: RwLock<HashMap<String, IssuerHashes>>,
    /// Counters resolved once (the hot path does not look them up by name).
    hits: metrics::Counter,
    misses: metrics::Counter,
}

impl Checker {
    pub fn new(
        policy: RevocationPolicy,
        issuer_url: &str,
        fetcher: Arc<dyn Fetcher>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Checker> {
        let sources = policy
            .issuers
            .iter()
            .map(|s| {
                let expand = |u: &String| u.replace("{issuer}", issuer_url);
                (
                    s.anchor.clone(),
                    IssuerSources {
                        anchor: s.anchor.clone(),
                        ocsp_url: s.ocsp_url.as_ref().map(expand),
                        crls: s.crls.iter().map(expand).collect(),
                    },
                )
            })
            .collect();
        let fast = Arc::new(FastMap::new(policy.cache_capacity));
        let evicted = fast.clone();
        let cache = moka::future::Cache::builder()
            .max_capacity(policy.cache_capacity)
            .expire_after(TtlExpiry)
            .eviction_listener(move |k: Arc<Key>, _, cause| {
                if cause != moka::notification::RemovalCause::Replaced {
                    evicted.remove(&k);
                }
            })
            .build();
        let crl_loads = moka::future::Cache::builder()
            .max_capacity(1024)
            // Coalescing only: a finished load lives a moment, the index itself lives in `crls`.
            .time_to_live(Duration::from_millis(1))
            .build();
        Arc::new(Checker {
            policy,
            sources,
            fetcher,
            clock,
            cache,
            fast,
            crls: RwLock::new(HashMap::new()),
            crl_newest: Default::default(),
            crl_loads,
            issuer_ids: RwLock::new(HashMap::new()),
            hits: metrics::counter!("revocation_cache_hits_total"),
            misses: metrics::counter!("revocation_cache_misses_total"),
        })
    }

    pub fn policy(&self) -> &RevocationPolicy {
        &self.policy
    }

    /// The CertID of `cert`; the issuer's hashes are computed once per anchor (hot path).
    fn key(&self, cert: &CertRef) -> Result<(Key, CertId), RevocationError> {
        let known = self
            .issuer_ids
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cert.anchor_label)
            .copied();
        let id = match known {
            Some((issuer_name_hash, issuer_key_hash)) => CertId {
                issuer_name_hash,
                issuer_key_hash,
                serial: cert.serial.clone(),
            },
            None => {
                let id = CertId::new(&cert.issuer_cert_der, &cert.serial).map_err(|e| {
                    RevocationError::Unavailable {
                        causes: vec![format!("cannot form the OCSP CertID: {e}")],
                    }
                })?;
                self.issuer_ids
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        cert.anchor_label.clone(),
                        (id.issuer_name_hash, id.issuer_key_hash),
                    );
                id
            }
        };
        Ok((
            Key {
                issuer_key_hash: id.issuer_key_hash,
                serial: id.serial.clone(),
            },
            id,
        ))
    }

    /// The revocation status of `cert` (already validated against its CA).
    pub async fn check(self: &Arc<Self>, cert: &ValidatedCert) -> Outcome {
        self.check_ref(&CertRef::from(cert)).await
    }

    /// The revocation status of a certificate known by CA and serial (e.g. a stored one).
    pub async fn check_ref(self: &Arc<Self>, cert: &CertRef) -> Outcome {
        let (key, id) = self.key(cert)?;
        let now = self.clock.now();
        if let Some(c) = self.fast.get(&key) {
            if c.valid_until > now {
                self.hits.increment(1);
                if now >= c.refresh_from && !c.refreshing.swap(true, Ordering::AcqRel) {
                    let me = self.clone();
                    let (k, cert) = (key.clone(), cert.clone());
                    tokio::spawn(async move {
                        let fresh = me.fetch(&cert, &id).await;
                        me.cache.insert(k.clone(), fresh.clone()).await;
                        me.fast.insert(k, fresh, me.clock.now());
                    });
                }
                return c.outcome.clone();
            }
            self.fast.remove(&key);
            self.cache.invalidate(&key).await;
        }
        self.misses.increment(1);
        let me = self.clone();
        let c = self
            .cache
            .get_with(key.clone(), async move { me.fetch(cert, &id).await })
            .await;
        if c.valid_until > now {
            self.fast.insert(key, c.clone(), now);
        }
        c.outcome.clone()
    }

    /// Forget what is cached about one certificate of the CA `anchor`, and the CA's loaded
    /// CRLs: the next check asks upstream (and reloads the CRLs if it gets that far).
    pub async fn purge(&self, anchor: &str, issuer_cert_der: &[u8], serial: &[u8]) -> bool {
        let Ok(id) = CertId::new(issuer_cert_der, serial) else {
            return false;
        };
        let key = Key {
            issuer_key_hash: id.issuer_key_hash,
            serial: id.serial,
        };
        let had = self.fast.get(&key).is_some() || self.cache.contains_key(&key);
        self.fast.remove(&key);
        self.cache.invalidate(&key).await;
        if let Some(src) = self.sources.get(anchor) {
            for loc in &src.crls {
                self.crls
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(loc);
                // A load that finished a moment ago is not handed out again either.
                self.crl_loads.invalidate(loc).await;
            }
        }
        had
    }

    /// Forget everything cached, CRLs included.
    pub fn purge_all(&self) {
        self.fast.clear();
        self.cache.invalidate_all();
        self.crls.write().unwrap_or_else(|e| e.into_inner()).clear();
        self.crl_loads.invalidate_all();
    }

    /// Ask upstream and wrap the outcome with its cache lifetime.
    async fn fetch(&self, cert: &CertRef, id: &CertId) -> Arc<Cached> {
        let outcome = self.fetch_outcome(cert, id).await;
        let now = self.clock.now();
        let max = time::Duration::seconds(self.policy.max_cache_seconds as i64);
        let (valid_until, refresh_from) = match &outcome {
            Ok(ev) => {
                let until = ev.next_update.map_or(now + max, |n| n.min(now + max));
                let until = ev.trusted_until.map_or(until, |t| t.min(until));
                let ahead = time::Duration::seconds(self.policy.refresh_ahead_seconds as i64);
                (until, until - ahead)
            }
            Err(_) => {
                let until =
                    now + time::Duration::seconds(self.policy.negative_cache_seconds as i64);
                (until, until)
            }
        };
        let ttl = Duration::try_from(valid_until - now).unwrap_or(Duration::ZERO);
        Arc::new(Cached {
            outcome,
            valid_until,
            refresh_from,
            refreshing: AtomicBool::new(false),
            ttl,
        })
    }

    async fn fetch_outcome(&self, cert: &CertRef, id: &CertId) -> Outcome {
        let Some(src) = self.sources.get(&cert.anchor_label) else {
            metrics::counter!("revocation_failures_total", "cause" => "no_source").increment(1);
            return Err(RevocationError::NoSources {
                anchor: cert.anchor_label.clone(),
            });
        };
        let mut causes = Vec::new();
        if let Some(url) = &src.ocsp_url {
            match self.ask_ocsp(url, cert, id).await {
                Ok(ev) => return Ok(Arc::new(ev)),
                Err((cause, msg)) => {
                    metrics::counter!("revocation_failures_total", "cause" => cause).increment(1);
                    causes.push(format!("OCSP {url}: {msg}"));
                }
            }
        }
        for loc in &src.crls {
            match self.crl(loc, cert).await {
                Ok((idx, fresh_until)) => {
                    return Ok(Arc::new(Evidence {
                        status: idx.status(&cert.serial),
                        source: SourceKind::Crl,
                        location: loc.clone(),
                        this_update: idx.this_update(),
                        next_update: Some(idx.next_update()),
                        checked_at: self.clock.now(),
                        trusted_until: Some(fresh_until),
                    }));
                }
                Err(msg) => {
                    metrics::counter!("revocation_failures_total", "cause" => "crl").increment(1);
                    causes.push(format!("CRL {loc}: {msg}"));
                }
            }
        }
        if causes.is_empty() {
            return Err(RevocationError::NoSources {
                anchor: cert.anchor_label.clone(),
            });
        }
        Err(RevocationError::Unavailable { causes })
    }

    fn freshness(&self) -> Freshness {
        Freshness {
            max_skew: time::Duration::seconds(self.policy.max_skew_seconds as i64),
            max_age_without_next_update: time::Duration::seconds(
                self.policy.max_age_without_next_update_seconds as i64,
            ),
        }
    }

    async fn ask_ocsp(
        &self,
        url: &str,
        cert: &CertRef,
        id: &CertId,
    ) -> Result<Evidence, (&'static str, String)> {
        let nonce = self
            .policy
            .ocsp_nonce
            .then(crate::clock::random_bytes::<16>);
        let req = ocsp::build_request(std::slice::from_ref(id), nonce.as_ref().map(|n| &n[..]))
            .map_err(|e| ("request", e.to_string()))?;
        let started = Instant::now();
        let timeout = Duration::from_millis(self.policy.timeout_ms);
        let body = self.fetcher.post_ocsp(url, req, timeout).await;
        metrics::histogram!("revocation_upstream_seconds", "source" => "ocsp")
            .record(started.elapsed().as_secs_f64());
        let body = body.map_err(|e| (e.cause(), e.to_string()))?;
        let check = match &nonce {
            Some(n) => NonceCheck::Sent(n),
            None => NonceCheck::NotSent,
        };
        let now = self.clock.now();
        let ans = ocsp::verify_response(
            &body,
            &cert.issuer_cert_der,
            id,
            check,
            now,
            self.freshness(),
        )
        .map_err(|e| ("ocsp_invalid", e.to_string()))?;
        Ok(Evidence {
            status: ans.status,
            source: SourceKind::Ocsp,
            location: url.to_string(),
            this_update: ans.this_update,
            next_update: ans.next_update,
            checked_at: now,
            trusted_until: None,
        })
    }

    /// The CRL at `loc` and until when it is fresh, loaded (once, however many ask at the
    /// same time) if absent or no longer fresh.
    async fn crl(
        &self,
        loc: &str,
        cert: &CertRef,
    ) -> Result<(Arc<CrlIndex>, OffsetDateTime), String> {
        let now = self.clock.now();
        if let Some(c) = self.loaded_crl(loc)
            && c.1 > now
        {
            return Ok(c);
        }
        let issuer = cert.issuer_cert_der.clone();
        self.crl_loads
            .get_with(loc.to_string(), self.load_crl(loc, issuer))
            .await?;
        self.loaded_crl(loc)
            .ok_or_else(|| format!("the CRL at {loc} was purged while loading"))
    }

    fn loaded_crl(&self, loc: &str) -> Option<(Arc<CrlIndex>, OffsetDateTime)> {
        self.crls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(loc)
            .map(|c| (c.index.clone(), c.fresh_until))
    }

    async fn load_crl(
        &self,
        loc: &str,
        issuer_cert_der: Arc<[u8]>,
    ) -> Result<Arc<CrlIndex>, String> {
        let started = Instant::now();
        let timeout = Duration::from_millis(self.policy.timeout_ms.max(10_000));
        let der = self.fetcher.get(loc, timeout).await;
        metrics::histogram!("revocation_upstream_seconds", "source" => "crl")
            .record(started.elapsed().as_secs_f64());
        let mut der = der.map_err(|e| e.to_string())?;
        let digest = crate::clock::sha256(&der);
        let now = self.clock.now();
        let fresh_for = time::Duration::seconds(self.policy.max_cache_seconds as i64);
        {
            // Unchanged since it was last fetched: fresh again, without parsing it again.
            let mut crls = self.crls.write().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = crls.get_mut(loc)
                && c.digest == digest
                && c.index.next_update() > now
            {
                c.fresh_until = c.index.next_update().min(now + fresh_for);
                return Ok(c.index.clone());
            }
        }
        // Operators' CRL files are often PEM (`X509 CRL`); J-LIS and HTTP sources send DER.
        if der.starts_with(b"-----BEGIN") {
            der = match pem::parse(&der) {
                Ok(p) if p.tag() == "X509 CRL" => p.into_contents(),
                Ok(p) => return Err(format!("PEM block is `{}`, expected X509 CRL", p.tag())),
                Err(e) => return Err(format!("not a PEM CRL: {e}")),
            };
        }
        let max_skew = time::Duration::seconds(self.policy.max_skew_seconds as i64);
        let idx = tokio::task::spawn_blocking(move || {
            CrlIndex::parse_and_verify(&der, &issuer_cert_der, OffsetDateTime::now_utc(), max_skew)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        // Freshness against the broker's own clock (injectable), not only the wall clock.
        if idx.next_update() + max_skew < now {
            return Err(format!("the CRL expired at {}", idx.next_update()));
        }
        let idx = Arc::new(idx);
        let fresh_until = idx.next_update().min(now + fresh_for);
        {
            // An older CRL than the newest seen at this location (a stale mirror, a replayed
            // file) would bring back certificates revoked since: refused. The CRL in use, if
            // any, stays in use (it is newer); after a purge there is none, and the check
            // fails closed.
            let mut newest = self.crl_newest.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(seen) = newest.get(loc)
                && idx.this_update() < *seen
            {
                let msg = format!(
                    "the CRL fetched (thisUpdate {}) is older than one seen before at this location (thisUpdate {seen})",
                    idx.this_update()
                );
                tracing::warn!(location = loc, "{msg}");
                // The newer CRL in use stays the answer, asked again after the negative-cache
                // time (not at every check).
                let mut crls = self.crls.write().unwrap_or_else(|e| e.into_inner());
                return match crls.get_mut(loc) {
                    Some(c) if c.index.next_update() > now => {
                        c.fresh_until = now
                            + time::Duration::seconds(self.policy.negative_cache_seconds as i64);
                        Ok(c.index.clone())
                    }
                    _ => Err(msg),
                };
            }
            newest.insert(loc.to_string(), idx.this_update());
            let mut crls = self.crls.write().unwrap_or_else(|e| e.into_inner());
            crls.insert(
                loc.to_string(),
                LoadedCrl {
                    index: idx.clone(),
                    fresh_until,
                    digest,
                },
            );
        }
        tracing::info!(location = loc, entries = idx.len(), next_update = %idx.next_update(), "CRL loaded");
        Ok(idx)
    }

    /// Reload every loaded CRL that is within `refresh_ahead` of the end of its freshness
    /// (its nextUpdate, or `max_cache_seconds` after it was fetched). Run periodically, so that
    /// logins do not wait for a CRL download.
    /// Reload the CRLs that are due (before their freshness ends). Returns each anchor whose
    /// CRL changed, with the new index (the signals sweep its linked certificates).
    pub async fn refresh_crls(
        &self,
        issuer_of: impl Fn(&str) -> Option<Arc<[u8]>>,
    ) -> Vec<(String, Arc<CrlIndex>)> {
        let mut changed = Vec::new();
        let now = self.clock.now();
        let ahead = time::Duration::seconds(self.policy.refresh_ahead_seconds as i64);
        let due: Vec<String> = self
            .crls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, c)| c.fresh_until - ahead <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for loc in due {
            // Every anchor that lists this location, until one's key verifies the CRL.
            let anchors: Vec<&str> = self
                .sources
                .values()
                .filter(|s| s.crls.contains(&loc))
                .map(|s| s.anchor.as_str())
                .collect();
            let before = self
                .crls
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&loc)
                .map(|c| c.index.clone());
            let mut last_err = None;
            for anchor in &anchors {
                let Some(issuer) = issuer_of(anchor) else {
                    continue;
                };
                match self.load_crl(&loc, issuer).await {
                    Ok(idx) => {
                        last_err = None;
                        if !before.as_ref().is_some_and(|b| Arc::ptr_eq(b, &idx)) {
                            changed.push((anchor.to_string(), idx));
                        }
                        break;
                    }
                    Err(e) => last_err = Some(e),
                }
            }
            if let Some(e) = last_err {
                tracing::warn!(location = %loc, error = %e, "CRL refresh failed");
            }
        }
        changed
    }
}
