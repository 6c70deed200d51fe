//! Operator policy from `policies/*.toml`: named assurance levels, their acr values, and which
//! authentication facts reach them. The code knows facts; only the policy names levels.

use super::{FileError, line_of};
use serde::Deserialize;
use serde_spanned::Spanned;
use std::path::{Path, PathBuf};

/// One assurance level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    pub name: String,
    /// The `acr` value put in ID tokens and accepted in `acr_values`.
    pub acr: String,
    pub requires: Requirements,
    /// A session older than this (seconds since the authentication) no longer reaches the
    /// level: asking for it again means authenticating again.
    pub max_session_age: Option<i64>,
}

/// What a session's facts must show to reach a level. Every set field must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Requirements {
    /// The authentication method must be one of these (empty: any).
    pub methods: Vec<String>,
    /// The key is held in hardware as its issuer vouches (the card; not a passkey, whose
    /// hardware the broker cannot know without attestation).
    pub hardware_key: bool,
    /// The key cannot leave its device (the card; a passkey that is not backup-eligible).
    pub device_bound: bool,
    /// The authentication is bound to the broker's origin (a passkey; not the card's link).
    pub phishing_resistant: bool,
    /// The holder proved knowledge of a PIN or passed user verification.
    pub user_verified: bool,
    /// The certificate's revocation status was confirmed good (not fail-open).
    pub revocation_confirmed: bool,
    /// The account is proofed: current verified claims from the signature certificate.
    pub proofed: bool,
}

/// The signature-verification API (`[signatures]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignaturesPolicy {
    /// How long verification records are kept (犯収法: seven years from the transaction).
    pub retention_days: i64,
    /// Requests per second per client (a client's `api_rate_per_second` overrides it).
    pub rate_per_second: u32,
    /// Items in one batch request.
    pub max_batch: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
}

impl Default for SignaturesPolicy {
    fn default() -> Self {
        SignaturesPolicy {
            retention_days: 7 * 366,
            rate_per_second: 200,
            max_batch: 1000,
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Identity proofing (`[proofing]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProofingPolicy {
    /// A first login with an unlinked user-authentication certificate may create an account
    /// without proofing (it then has no verified claims and reaches no level that requires
    /// `proofed`). Default: false — every account starts with proofing.
    pub allow_unproofed: bool,
    /// `verification.trust_framework` of `verified_claims` (a URI for a private framework:
    /// there is no registered value for JPKI proofing).
    pub trust_framework: String,
}

impl Default for ProofingPolicy {
    fn default() -> Self {
        ProofingPolicy {
            allow_unproofed: false,
            trust_framework: "https://jpki-broker.example/trust-framework/jpki-signature".into(),
        }
    }
}

/// What the broker does when it learns that a card certificate linked to an account is revoked
/// (`[signals]`): the account's sessions end (back-channel logout to their relying parties),
/// relying parties that registered a `signals_uri` get a CAEP credential-change SET, and —
/// with `revoke_grants` — every grant of the account is revoked (refresh and access tokens stop).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalsPolicy {
    pub revoke_grants: bool,
}

impl Default for SignalsPolicy {
    fn default() -> Self {
        SignalsPolicy {
            revoke_grants: true,
        }
    }
}

/// What a passkey login does when the card behind the passkey is no longer current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardGone {
    /// The passkey is suspended (for good, on a revocation: the person removes it and enrols
    /// another with a live card).
    Suspend,
    /// The passkey logs in, at no level that asks for a confirmed revocation status.
    Keep,
}

/// Passkeys (`[passkeys]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasskeyPolicy {
    /// Passkeys may be enrolled and used to log in.
    pub enabled: bool,
    /// The level (name or acr) a card login must have reached for its session to enrol a
    /// passkey. Empty: the highest level of the policy.
    pub enrol_level: String,
    /// The card certificate that enrolled a passkey (or the renewed card after it) revoked.
    pub card_revoked: CardGone,
    /// … expired, with no renewed card linked to the account since.
    pub card_expired: CardGone,
    /// Seconds a started passkey ceremony may be finished in.
    pub ceremony_seconds: i64,
    /// Passkeys one account may hold.
    pub max_per_account: usize,
}

impl Default for PasskeyPolicy {
    fn default() -> Self {
        PasskeyPolicy {
            enabled: true,
            enrol_level: String::new(),
            card_revoked: CardGone::Suspend,
            card_expired: CardGone::Suspend,
            ceremony_seconds: 300,
            max_per_account: 20,
        }
    }
}

impl Policy {
    /// The level a session must reach to enrol a passkey.
    pub fn enrol_level(&self) -> Option<&Level> {
        let want = &self.passkeys.enrol_level;
        if want.is_empty() {
            return self.levels.last();
        }
        self.levels
            .iter()
            .find(|l| &l.name == want || &l.acr == want)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicyFile {
    #[serde(default)]
    levels: Vec<Spanned<RawLevel>>,
    revocation: Option<Spanned<RevocationPolicy>>,
    proofing: Option<ProofingPolicy>,
    passkeys: Option<Spanned<PasskeyPolicy>>,
    signals: Option<SignalsPolicy>,
    signatures: Option<SignaturesPolicy>,
    /// The lowest level (acr) per kind of relying party.
    minimums: Option<Spanned<std::collections::BTreeMap<super::RpKind, String>>>,
    /// Which claims each kind of relying party may receive at most.
    claim_release: Option<Spanned<std::collections::BTreeMap<super::RpKind, Vec<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevel {
    name: String,
    acr: String,
    #[serde(default)]
    requires: Requirements,
    max_session_age: Option<i64>,
}

/// Methods the broker implements; a policy naming another is refused.
pub const KNOWN_METHODS: &[&str] = &["jpki_user_auth", "jpki_signature", "passkey"];

/// The validated policy set. Levels are in file order, lowest first.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub levels: Vec<Level>,
    /// Revocation checking (`[revocation]`, in one file at most).
    pub revocation: RevocationPolicy,
    /// The signature-verification API (`[signatures]`).
    pub signatures: SignaturesPolicy,
    /// Identity proofing (`[proofing]`).
    pub proofing: ProofingPolicy,
    /// Passkeys (`[passkeys]`).
    pub passkeys: PasskeyPolicy,
    /// Signals to relying parties (`[signals]`).
    pub signals: SignalsPolicy,
    /// The lowest level (acr) each kind of relying party gets (`[minimums]`).
    pub minimums: std::collections::BTreeMap<super::RpKind, String>,
    /// The most each kind of relying party may receive (`[claim_release]`); a kind not
    /// listed is limited by its registrations only.
    pub claim_release: std::collections::BTreeMap<super::RpKind, Vec<String>>,
    pub sources: Vec<PathBuf>,
    /// Where `[passkeys]` was set (its enrol level is checked once every level is known).
    pub passkeys_line: Option<(PathBuf, usize)>,
}

impl Policy {
    pub fn load_dir(dir: &Path) -> Result<Policy, FileError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| FileError {
                file: dir.to_path_buf(),
                line: 0,
                reason: format!("cannot read the policy directory: {e}"),
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut policy = Policy::default();
        let mut revocation_seen: Option<(PathBuf, usize)> = None;
        for f in &files {
            let text = std::fs::read_to_string(f).map_err(|e| FileError {
                file: f.clone(),
                line: 0,
                reason: format!("cannot read: {e}"),
            })?;
            if let Some(line) = policy.add_file(f, &text)? {
                if let Some((first, _)) = &revocation_seen {
                    return Err(FileError {
                        file: f.clone(),
                        line,
                        reason: format!("[revocation] is already set in {}", first.display()),
                    });
                }
                revocation_seen = Some((f.clone(), line));
            }
        }
        if policy.levels.is_empty() {
            return Err(FileError {
                file: dir.to_path_buf(),
                line: 0,
                reason: "no [[levels]] defined in any policy file".into(),
            });
        }
        if policy.enrol_level().is_none() {
            let (file, line) = policy
                .passkeys_line
                .clone()
                .unwrap_or((dir.to_path_buf(), 0));
            return Err(FileError {
                file,
                line,
                reason: format!(
                    "[passkeys] enrol_level `{}` is not a level of the policy",
                    policy.passkeys.enrol_level
                ),
            });
        }
        if let Some((file, line)) = revocation_seen {
            policy
                .check_fail_open()
                .map_err(|reason| FileError { file, line, reason })?;
        }
        policy.sources = files;
        Ok(policy)
    }

    /// Add the levels (and `[revocation]`) of one file; returns the line of its `[revocation]`.
    ///
    /// Long, and kept so: each section of a policy file checked in the order it is written,
    /// each error naming its key's line.
    pub fn add_file(&mut self, file: &Path, text: &str) -> Result<Option<usize>, FileError> {
        let raw: RawPolicyFile = toml::from_str(text).map_err(|e| FileError {
            file: file.to_path_buf(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
            reason: e.message().trim().to_string(),
        })?;
        for l in raw.levels {
            let line = line_of(text, l.span().start);
            let l = l.into_inner();
            let err = |reason: String| FileError {
                file: file.to_path_buf(),
                line,
                reason,
            };
            if l.name.is_empty() || l.acr.is_empty() {
                return Err(err("a level needs a non-empty name and acr".into()));
            }
            if self
                .levels
                .iter()
                .any(|x| x.name == l.name || x.acr == l.acr)
            {
                return Err(err(format!(
                    "level `{}` (acr `{}`) is defined twice",
                    l.name, l.acr
                )));
            }
            for m in &l.requires.methods {
                if !KNOWN_METHODS.contains(&m.as_str()) {
                    return Err(err(format!(
                        "level `{}` names unknown method `{m}` (known: {})",
                        l.name,
                        KNOWN_METHODS.join(", ")
                    )));
                }
            }
            if l.max_session_age.is_some_and(|m| m <= 0) {
                return Err(err(format!(
                    "level `{}`: max_session_age must be a positive number of seconds",
                    l.name
                )));
            }
            self.levels.push(Level {
                name: l.name,
                acr: l.acr,
                requires: l.requires,
                max_session_age: l.max_session_age,
            });
        }
        if let Some(p) = raw.proofing {
            self.proofing = p;
        }
        if let Some(p) = raw.passkeys {
            let line = line_of(text, p.span().start);
            let p = p.into_inner();
            let err = |reason: String| FileError {
                file: file.to_path_buf(),
                line,
                reason,
            };
            if !(30..=3600).contains(&p.ceremony_seconds) {
                return Err(err("[passkeys] ceremony_seconds must be 30..3600".into()));
            }
            if p.max_per_account == 0 {
                return Err(err("[passkeys] max_per_account must be at least 1".into()));
            }
            self.passkeys = p;
            self.passkeys_line = Some((file.to_path_buf(), line));
        }
        if let Some(sg) = raw.signals {
            self.signals = sg;
        }
        if let Some(sg) = raw.signatures {
            self.signatures = sg;
        }
        if let Some(c) = raw.claim_release {
            let line = line_of(text, c.span().start);
            for (kind, claims) in c.into_inner() {
                if let Some(bad) = claims
                    .iter()
                    .find(|c| !super::SUPPORTED_CLAIMS.contains(&c.as_str()))
                {
                    return Err(FileError {
                        file: file.to_path_buf(),
                        line,
                        reason: format!(
                            "claim_release for {kind:?} names unknown claim `{bad}` (known: {})",
                            super::SUPPORTED_CLAIMS.join(", ")
                        ),
                    });
                }
                self.claim_release.insert(kind, claims);
            }
        }
        if let Some(m) = raw.minimums {
            let line = line_of(text, m.span().start);
            for (kind, acr) in m.into_inner() {
                if !self.levels.iter().any(|l| l.acr == acr) {
                    return Err(FileError {
                        file: file.to_path_buf(),
                        line,
                        reason: format!(
                            "minimum `{acr}` for {kind:?} is not the acr of a level defined so far"
                        ),
                    });
                }
                self.minimums.insert(kind, acr);
            }
        }
        Ok(raw.revocation.map(|r| {
            let line = line_of(text, r.span().start);
            self.revocation = r.into_inner();
            line
        }))
    }

    /// Fail-open levels must exist and must not require a confirmed revocation status.
    fn check_fail_open(&self) -> Result<(), String> {
        for name in &self.revocation.fail_open_levels {
            match self.levels.iter().find(|l| &l.name == name) {
                None => return Err(format!("fail_open_levels names unknown level `{name}`")),
                Some(l) if l.requires.revocation_confirmed => {
                    return Err(format!(
                        "level `{name}` requires revocation_confirmed and cannot be fail-open"
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The minimum acr of a relying party of `kind` with registered minimum `client_min`:
    /// the higher of the two.
    pub fn minimum_for(&self, kind: super::RpKind, client_min: Option<&str>) -> Option<String> {
        let rank = |a: &str| self.levels.iter().position(|l| l.acr == a);
        let k = self.minimums.get(&kind).map(String::as_str);
        match (k, client_min) {
            (Some(a), Some(b)) => Some(if rank(a) >= rank(b) { a } else { b }.to_string()),
            (a, b) => a.or(b).map(str::to_string),
        }
    }

    pub fn acr_values(&self) -> Vec<&str> {
        self.levels.iter().map(|l| l.acr.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_policy_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
        let p = Policy::load_dir(&dir).unwrap();
        assert!(p.levels.len() >= 2);
        assert!(!p.revocation.issuers.is_empty());
        assert!(
            p.revocation.fail_open_levels.is_empty(),
            "fail closed by default"
        );
    }

    #[test]
    fn fail_open_levels_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let levels = "[[levels]]\nname = \"low\"\nacr = \"low\"\n\n[[levels]]\nname = \"high\"\nacr = \"high\"\nrequires = { revocation_confirmed = true }\n";
        std::fs::write(dir.path().join("a.toml"), levels).unwrap();
        std::fs::write(
            dir.path().join("b.toml"),
            "\n[revocation]\nfail_open_levels = [\"high\"]\n",
        )
        .unwrap();
        let e = Policy::load_dir(dir.path()).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert_eq!(
            e.reason,
            "level `high` requires revocation_confirmed and cannot be fail-open"
        );
        std::fs::write(
            dir.path().join("b.toml"),
            "[revocation]\nfail_open_levels = [\"nope\"]\n",
        )
        .unwrap();
        assert_eq!(
            Policy::load_dir(dir.path()).unwrap_err().reason,
            "fail_open_levels names unknown level `nope`"
        );
        std::fs::write(
            dir.path().join("b.toml"),
            "[revocation]\nfail_open_levels = [\"low\"]\n",
        )
        .unwrap();
        assert_eq!(
            Policy::load_dir(dir.path())
                .unwrap()
                .revocation
                .fail_open_levels,
            ["low"]
        );
        std::fs::write(
            dir.path().join("c.toml"),
            "[revocation]\nmax_cache_seconds = 1\n",
        )
        .unwrap();
        let e = Policy::load_dir(dir.path()).unwrap_err();
        assert!(
            e.reason.starts_with("[revocation] is already set in"),
            "{e}"
        );
    }

    #[test]
    fn passkey_settings_are_checked_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let levels = "[[levels]]\nname = \"low\"\nacr = \"aal1\"\n\n[[levels]]\nname = \"high\"\nacr = \"aal3\"\n";
        std::fs::write(dir.path().join("a.toml"), levels).unwrap();
        // Unset: the highest level enrols, and a card gone suspends.
        let p = Policy::load_dir(dir.path()).unwrap();
        assert_eq!(p.enrol_level().unwrap().acr, "aal3");
        assert_eq!(p.passkeys.card_revoked, CardGone::Suspend);
        assert_eq!(p.passkeys.card_expired, CardGone::Suspend);
        for (text, line, says) in [
            (
                "\n[passkeys]\nenrol_level = \"aal9\"\n",
                2,
                "enrol_level `aal9` is not a level",
            ),
            (
                "[passkeys]\nceremony_seconds = 5\n",
                1,
                "ceremony_seconds must be 30..3600",
            ),
            (
                "[passkeys]\nmax_per_account = 0\n",
                1,
                "max_per_account must be at least 1",
            ),
            (
                "[passkeys]\ncard_revoked = \"ignore\"\n",
                2,
                "unknown variant `ignore`",
            ),
            ("[passkeys]\nsynced = false\n", 2, "unknown field `synced`"),
        ] {
            std::fs::write(dir.path().join("b.toml"), text).unwrap();
            let e = Policy::load_dir(dir.path()).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.reason.contains(says), "{text}: {e}");
            assert!(e.file.ends_with("b.toml"), "{e}");
        }
        std::fs::write(
            dir.path().join("b.toml"),
            "[passkeys]\nenrol_level = \"low\"\ncard_expired = \"keep\"\n",
        )
        .unwrap();
        let p = Policy::load_dir(dir.path()).unwrap();
        assert_eq!(p.enrol_level().unwrap().acr, "aal1");
        assert_eq!(p.passkeys.card_expired, CardGone::Keep);
    }

    #[test]
    fn unknown_method_is_refused_with_line() {
        let mut p = Policy::default();
        let text = "[[levels]]\nname = \"a\"\nacr = \"a\"\n\n[[levels]]\nname = \"b\"\nacr = \"b\"\nrequires = { methods = [\"sms\"] }\n";
        let e = p.add_file(Path::new("p.toml"), text).unwrap_err();
        // The line of the offending level's [[levels]] header.
        assert_eq!(e.line, 5, "{e}");
        assert!(e.reason.contains("unknown method `sms`"), "{e}");
    }
}

/// Operator settings (`[revocation]` in a policy file). Every window is in seconds.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationPolicy {
    /// Upper bound on how long a good answer is trusted (the TTL is min(nextUpdate, this)).
    /// This is how long a card revoked meanwhile can still log in, at most.
    pub max_cache_seconds: u64,
    /// How long a failure (responder down, bad response) is remembered.
    pub negative_cache_seconds: u64,
    /// An entry with less than this left is served and refreshed in the background.
    pub refresh_ahead_seconds: u64,
    /// Per upstream request.
    pub timeout_ms: u64,
    /// Clock skew tolerated on thisUpdate/nextUpdate.
    pub max_skew_seconds: u64,
    /// An OCSP response without nextUpdate is fresh for this long after thisUpdate.
    pub max_age_without_next_update_seconds: u64,
    /// Maximum number of cached certificate statuses.
    pub cache_capacity: u64,
    /// Send an OCSP nonce (responses that omit it are still accepted; a different one is not).
    pub ocsp_nonce: bool,
    /// Levels that may be granted when no revocation answer could be had (fail-open).
    /// Empty (the default): fail closed. Such levels cannot require `revocation_confirmed`.
    pub fail_open_levels: Vec<String>,
    /// Where to ask, per trust anchor.
    pub issuers: Vec<IssuerSources>,
}

impl Default for RevocationPolicy {
    fn default() -> Self {
        RevocationPolicy {
            max_cache_seconds: 300,
            negative_cache_seconds: 10,
            refresh_ahead_seconds: 60,
            timeout_ms: 2000,
            max_skew_seconds: 300,
            max_age_without_next_update_seconds: 3600,
            cache_capacity: 1_000_000,
            ocsp_nonce: true,
            fail_open_levels: vec![],
            issuers: vec![],
        }
    }
}

/// Revocation sources of one CA (named by its trust-anchor label). JPKI's CRL distribution
/// points are directory names and its OCSP responder serves registered verifiers only, so the
/// operator says where to ask. `{issuer}` in a URL stands for the broker's issuer URL.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IssuerSources {
    pub anchor: String,
    pub ocsp_url: Option<String>,
    /// CRL locations: http(s) URLs or `file:` paths.
    #[serde(default)]
    pub crls: Vec<String>,
}
