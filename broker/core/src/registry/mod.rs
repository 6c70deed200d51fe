//! The relying-party registry: one TOML file per RP under `relying-parties/`, validated into
//! one immutable snapshot. A broken file is reported as `file:line: reason`.

use serde::Deserialize;
use serde_spanned::Spanned;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use url::Url;

pub mod files;
pub mod policy;

/// The kinds of relying party the operator distinguishes (policy may set minimums per kind).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RpKind {
    PublicSector,
    Bank,
    Hospital,
    Catv,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// Public client: no secret; PKCE is what protects the code.
    None,
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectType {
    Pairwise,
    Public,
}

/// The security profile a client is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// OpenID Connect as the broker speaks it to every relying party (PKCE, RFC 9207 `iss`).
    #[default]
    Oidc,
    /// FAPI 2.0 Security Profile (final): a confidential client with private_key_jwt (PS256,
    /// ES256, EdDSA), pushed authorization requests only, codes of at most 60 s.
    Fapi2,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Oidc => "oidc",
            Profile::Fapi2 => "fapi2",
        }
    }
}

/// The JWS algorithms FAPI 2.0 allows (Security Profile §5.4.1): PS256, ES256, EdDSA (Ed25519).
pub const FAPI2_ALGS: &[&str] = &["PS256", "ES256", "EdDSA"];

/// JWS algorithms an RP may ask for its ID tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
pub enum SigAlg {
    ES256,
    RS256,
    PS256,
}

impl SigAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigAlg::ES256 => "ES256",
            SigAlg::RS256 => "RS256",
            SigAlg::PS256 => "PS256",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    /// The broker's APIs (`permissions`); a client with permissions may use it whether or not
    /// it lists it. Listed alone, the client is API-only and registers no redirect URIs.
    ClientCredentials,
    /// RFC 8628, for devices without a browser (a set-top box): the person approves on a phone
    /// or computer. Listed without authorization_code, the client registers no redirect URIs.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:device_code")]
    DeviceCode,
}

/// Scopes the broker knows. Others in a request are ignored (OIDC Core 5.4 / 3.1.2.1).
pub const SUPPORTED_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "name",
    "birthdate",
    "gender",
    "address",
    "offline_access",
];

/// Scopes for APIs rather than people, granted by client_credentials to RPs whose registration
/// lists them in `permissions`.
pub const API_SCOPES: &[&str] = &["signatures:verify"];

/// Claims the broker can release (the basic four of the signature certificate, and the
/// OpenID Connect for Identity Assurance container).
pub const SUPPORTED_CLAIMS: &[&str] =
    &["name", "birthdate", "gender", "address", "verified_claims"];

/// One registered relying party, validated.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub display_name: String,
    pub display_name_ja: String,
    pub kind: RpKind,
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser back to (exact match).
    pub post_logout_redirect_uris: Vec<String>,
    /// OpenID Connect Back-Channel Logout 1.0: where logout tokens are POSTed.
    pub backchannel_logout_uri: Option<String>,
    /// RFC 8935 push delivery of Security Event Tokens (CAEP credential-change).
    pub signals_uri: Option<String>,
    pub auth_method: AuthMethod,
    /// `oidc` (default) or `fapi2`.
    pub profile: Profile,
    /// Authorization requests only by PAR (RFC 9126): `/authorize` takes a `request_uri` of
    /// this client and nothing else. Always true for `fapi2`.
    pub require_par: bool,
    /// SHA-256 of the client secret (never the secret itself).
    pub client_secret_sha256: Option<[u8; 32]>,
    /// The client's public keys for `private_key_jwt`.
    pub jwks: Option<jsonwebtoken::jwk::JwkSet>,
    pub scopes: BTreeSet<String>,
    pub claims: BTreeSet<String>,
    pub subject_type: SubjectType,
    /// The sector for pairwise `sub` (host of the redirect URIs unless configured).
    pub sector: String,
    pub id_token_alg: SigAlg,
    pub grant_types: Vec<GrantType>,
    /// The lowest level (acr) this RP accepts; checked against the policy at start/reload.
    pub min_acr: Option<String>,
    /// API scopes this client may obtain with client_credentials (e.g. `signatures:verify`).
    pub permissions: Vec<String>,
    /// Requests per second to the broker's APIs (None: the policy's default).
    pub api_rate_per_second: Option<u32>,
    /// Clients whose access tokens this client may introspect (it is their resource server);
    /// a client introspects its own tokens only, otherwise.
    pub resource_server_for: Vec<String>,
    /// A confidential client may redeem codes obtained without PKCE (OpenID conformance-suite
    /// registrations, old RPs). Logged at load; never for public clients. A code obtained
    /// without a challenge is then redeemed without a verifier — and one with a verifier is
    /// refused (RFC 9700 §2.1.1: no PKCE downgrade).
    pub danger_allow_code_without_pkce: bool,
    /// The broker's own account page (built in, not from a file): no consent page, not listed.
    pub first_party: bool,
    /// File it came from (for messages).
    pub source: PathBuf,
}

/// The client_id of the broker's own account page, which logs people in through the same
/// authorization endpoint as any relying party (and so steps up to the card the same way).
pub const ACCOUNT_CLIENT: &str = "broker-account";

impl Client {
    pub fn allows_grant(&self, g: GrantType) -> bool {
        self.grant_types.contains(&g)
    }
    pub fn is_public(&self) -> bool {
        self.auth_method == AuthMethod::None
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    client_id: Spanned<String>,
    display_name: Spanned<String>,
    display_name_ja: Option<String>,
    kind: RpKind,
    #[serde(default = "no_uris")]
    redirect_uris: Spanned<Vec<Spanned<String>>>,
    /// Where RP-initiated logout may send the browser back to (exact match).
    #[serde(default = "no_uris")]
    post_logout_redirect_uris: Spanned<Vec<Spanned<String>>>,
    /// Where the broker POSTs a logout token when a session of this client's person ends.
    backchannel_logout_uri: Option<Spanned<String>>,
    /// Where the broker pushes Security Event Tokens (RFC 8935) about its people.
    signals_uri: Option<Spanned<String>>,
    token_endpoint_auth_method: Spanned<AuthMethod>,
    profile: Option<Spanned<Profile>>,
    require_pushed_authorization_requests: Option<Spanned<bool>>,
    client_secret_sha256: Option<Spanned<String>>,
    jwks: Option<Spanned<toml::Value>>,
    #[serde(default = "default_scopes")]
    scopes: Spanned<Vec<String>>,
    #[serde(default = "no_claims")]
    claims: Spanned<Vec<String>>,
    #[serde(default = "default_subject_type")]
    subject_type: SubjectType,
    sector_identifier: Option<Spanned<String>>,
    #[serde(default = "default_alg")]
    id_token_signed_response_alg: SigAlg,
    #[serde(default = "default_grants")]
    grant_types: Vec<GrantType>,
    min_acr: Option<String>,
    #[serde(default = "no_claims")]
    permissions: Spanned<Vec<String>>,
    api_rate_per_second: Option<u32>,
    #[serde(default = "no_claims")]
    resource_server_for: Spanned<Vec<String>>,
    danger_allow_code_without_pkce: Option<Spanned<bool>>,
    /// Let a client-secret client hold API permissions (benchmarks against providers whose
    /// clients use secrets); refused for public clients, logged at load.
    danger_allow_api_with_client_secret: Option<bool>,
}

fn default_scopes() -> Spanned<Vec<String>> {
    Spanned::new(0..0, vec!["openid".to_string()])
}
fn no_uris() -> Spanned<Vec<Spanned<String>>> {
    Spanned::new(0..0, vec![])
}
fn no_claims() -> Spanned<Vec<String>> {
    Spanned::new(0..0, vec![])
}
fn default_subject_type() -> SubjectType {
    SubjectType::Pairwise
}
fn default_alg() -> SigAlg {
    SigAlg::ES256
}
fn default_grants() -> Vec<GrantType> {
    vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
}

/// `file:line: reason`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{}:{line}: {reason}", file.display())]
pub struct FileError {
    pub file: PathBuf,
    pub line: usize,
    pub reason: String,
}

/// 1-based line number of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// `line: message` of a TOML error, for messages of the form `file:line: message`.
pub fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
    format!("{line}: {}", e.message().trim())
}

/// The validated set of relying parties. Immutable: a reload builds a new one.
#[derive(Debug, Default)]
pub struct Registry {
    clients: HashMap<String, Arc<Client>>,
}

impl Registry {
    pub fn get(&self, client_id: &str) -> Option<&Arc<Client>> {
        self.clients.get(client_id)
    }
    /// Relying parties registered by the operator's files (not the built-in account page).
    pub fn len(&self) -> usize {
        self.clients.values().filter(|c| !c.first_party).count()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn clients(&self) -> impl Iterator<Item = &Arc<Client>> {
        self.clients.values()
    }

    /// Narrow every client's releasable claims to its kind's `[claim_release]` in the policy
    /// (registration ∩ policy). Logs what a registration asked for beyond the policy.
    pub fn restrict_claims(&mut self, policy: &policy::Policy) {
        for c in self.clients.values_mut() {
            let Some(allowed) = policy.claim_release.get(&c.kind) else {
                continue;
            };
            let dropped: Vec<String> = c
                .claims
                .iter()
                .filter(|x| !allowed.contains(x))
                .cloned()
                .collect();
            if !dropped.is_empty() {
                tracing::warn!(client = %c.client_id, kind = ?c.kind, dropped = ?dropped, "policy claim_release withholds claims the registration lists");
                let mut narrowed = (**c).clone();
                narrowed.claims.retain(|x| allowed.contains(x));
                *c = Arc::new(narrowed);
            }
        }
    }

    /// Cross-check against the policy (every `min_acr` must be a level's acr) and within the
    /// registry (every `resource_server_for` names a registered client).
    pub fn check_against(&self, policy: &policy::Policy) -> Result<(), FileError> {
        let line_of_key = |c: &Client, key: &str| {
            let text = std::fs::read_to_string(&c.source).unwrap_or_default();
            text.lines()
                .position(|l| l.trim_start().starts_with(key))
                .map_or(1, |i| i + 1)
        };
        for c in self.clients.values() {
            if let Some(other) = c
                .resource_server_for
                .iter()
                .find(|o| !self.clients.contains_key(*o))
            {
                return Err(FileError {
                    file: c.source.clone(),
                    line: line_of_key(c, "resource_server_for"),
                    reason: format!(
                        "resource_server_for names `{other}`, which is not a registered client"
                    ),
                });
            }
        }
        for c in self.clients.values() {
            if let Some(m) = &c.min_acr
                && !policy.levels.iter().any(|l| &l.acr == m)
            {
                let text = std::fs::read_to_string(&c.source).unwrap_or_default();
                let line = text
                    .lines()
                    .position(|l| l.trim_start().starts_with("min_acr"))
                    .map_or(1, |i| i + 1);
                return Err(FileError {
                    file: c.source.clone(),
                    line,
                    reason: format!(
                        "min_acr `{m}` is not a level of the policy ({})",
                        policy.acr_values().join(", ")
                    ),
                });
            }
        }
        Ok(())
    }

    /// Add the broker's own account page as a public client of `issuer` (PKCE, `openid` only,
    /// its callback on the issuer).
    pub fn add_account_client(&mut self, issuer: &str) {
        let host = url::Url::parse(issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        let client = Client {
            client_id: ACCOUNT_CLIENT.into(),
            display_name: "Your account".into(),
            display_name_ja: "アカウント".into(),
            kind: RpKind::Other,
            redirect_uris: vec![format!("{issuer}/account/callback")],
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
            signals_uri: None,
            auth_method: AuthMethod::None,
            profile: Profile::Oidc,
            require_par: false,
            client_secret_sha256: None,
            jwks: None,
            scopes: ["openid".to_string()].into(),
            claims: BTreeSet::new(),
            subject_type: SubjectType::Pairwise,
            sector: host,
            id_token_alg: SigAlg::ES256,
            grant_types: vec![GrantType::AuthorizationCode],
            min_acr: None,
            permissions: vec![],
            api_rate_per_second: None,
            resource_server_for: vec![],
            danger_allow_code_without_pkce: false,
            first_party: true,
            source: PathBuf::from("(built in)"),
        };
        self.clients
            .insert(client.client_id.clone(), Arc::new(client));
    }

    /// Load every `*.toml` in `dir` (sorted by name). The first broken file stops the load.
    pub fn load_dir(dir: &Path) -> Result<Registry, FileError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| FileError {
                file: dir.to_path_buf(),
                line: 0,
                reason: format!("cannot read the relying-party directory: {e}"),
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut reg = Registry::default();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| FileError {
                file: f.clone(),
                line: 0,
                reason: format!("cannot read: {e}"),
            })?;
            let client = parse_client(&f, &text)?;
            if client.client_id == ACCOUNT_CLIENT {
                return Err(FileError {
                    file: f.clone(),
                    line: line_of(&text, text.find("client_id").unwrap_or(0)),
                    reason: format!(
                        "client_id `{ACCOUNT_CLIENT}` is the broker's own account page"
                    ),
                });
            }
            if let Some(prev) = reg.clients.get(&client.client_id) {
                return Err(FileError {
                    file: f.clone(),
                    line: 1,
                    reason: format!(
                        "client_id `{}` is already registered by {}",
                        client.client_id,
                        prev.source.display()
                    ),
                });
            }
            reg.clients
                .insert(client.client_id.clone(), Arc::new(client));
        }
        Ok(reg)
    }
}

/// Parse and validate one relying-party file.
///
/// Long, and kept so: it is the list of every check a registration passes, in the order an
/// operator reads the file (identity, redirect URIs, authentication, scopes and claims, grants,
/// API permissions, danger settings), each failing with the key's `file:line`; split into
/// pieces, the order and the shared error context would be harder to see.
pub fn parse_client(file: &Path, text: &str) -> Result<Client, FileError> {
    let err = |span: std::ops::Range<usize>, reason: String| FileError {
        file: file.to_path_buf(),
        line: line_of(text, span.start),
        reason,
    };
    let raw: RawClient = toml::from_str(text).map_err(|e| FileError {
        file: file.to_path_buf(),
        line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
        reason: e.message().trim().to_string(),
    })?;

    let cid = raw.client_id.get_ref();
    if cid.is_empty()
        || cid.len() > 128
        || !cid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        return Err(err(
            raw.client_id.span(),
            format!("client_id `{cid}` must be 1–128 characters of A–Z a–z 0–9 - . _"),
        ));
    }
    if raw.display_name.get_ref().trim().is_empty() {
        return Err(err(raw.display_name.span(), "display_name is empty".into()));
    }

    // Grant types: the code flow, the device grant, or the broker's APIs alone
    // (client_credentials).
    let code_flow = raw.grant_types.contains(&GrantType::AuthorizationCode);
    let device = raw.grant_types.contains(&GrantType::DeviceCode);
    if !code_flow && !device && !raw.grant_types.contains(&GrantType::ClientCredentials) {
        return Err(err(
            raw.client_id.span(),
            "grant_types must include authorization_code or urn:ietf:params:oauth:grant-type:device_code (or client_credentials for an API-only client)".into(),
        ));
    }
    if !code_flow && !device && raw.grant_types.contains(&GrantType::RefreshToken) {
        return Err(err(
            raw.client_id.span(),
            "grant_types: refresh_token needs authorization_code or the device grant".into(),
        ));
    }
    if raw.grant_types.contains(&GrantType::ClientCredentials) {
        if raw.permissions.get_ref().is_empty() {
            return Err(err(
                raw.client_id.span(),
                "grant_types: client_credentials gives access to the broker's APIs only; list them in `permissions`".into(),
            ));
        }
        if *raw.token_endpoint_auth_method.get_ref() == AuthMethod::None {
            return Err(err(
                raw.token_endpoint_auth_method.span(),
                "client_credentials needs a confidential client (not token_endpoint_auth_method = \"none\")".into(),
            ));
        }
    }
    // Redirect URIs: absolute, no fragment, https unless loopback (RFC 8252 §7.3); none for
    // an API-only client, at least one for the code flow.
    if code_flow && raw.redirect_uris.get_ref().is_empty() {
        return Err(err(
            raw.redirect_uris.span(),
            "redirect_uris must list at least one URI".into(),
        ));
    }
    if !code_flow && !raw.redirect_uris.get_ref().is_empty() {
        return Err(err(
            raw.redirect_uris.span(),
            "redirect_uris are for the authorization code flow, which this client does not use"
                .into(),
        ));
    }
    let mut hosts = BTreeSet::new();
    let mut redirect_uris = Vec::new();
    let mut post_logout_redirect_uris = Vec::new();
    let mut backchannel_logout_uri = None;
    let mut signals_uri = None;
    // Role of each URI: 0 a redirect URI, 1 a post-logout redirect URI, 2 the back-channel
    // logout URI, 3 the SET push URI; each is checked the same way.
    let all = raw
        .redirect_uris
        .get_ref()
        .iter()
        .map(|u| (u, 0))
        .chain(
            raw.post_logout_redirect_uris
                .get_ref()
                .iter()
                .map(|u| (u, 1)),
        )
        .chain(raw.backchannel_logout_uri.iter().map(|u| (u, 2)))
        .chain(raw.signals_uri.iter().map(|u| (u, 3)));
    for (u, role) in all {
        let s = u.get_ref();
        let parsed = Url::parse(s)
            .map_err(|e| err(u.span(), format!("redirect URI `{s}` is not absolute: {e}")))?;
        if parsed.fragment().is_some() {
            return Err(err(u.span(), format!("redirect URI `{s}` has a fragment")));
        }
        let loopback = matches!(
            parsed.host_str(),
            Some("localhost") | Some("127.0.0.1") | Some("[::1]")
        );
        match parsed.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => {
                return Err(err(
                    u.span(),
                    format!("redirect URI `{s}` uses http on a non-loopback host"),
                ));
            }
            other => {
                return Err(err(
                    u.span(),
                    format!(
                        "redirect URI `{s}` has scheme `{other}`; only https (or http on loopback) is allowed"
                    ),
                ));
            }
        }
        match role {
            1 => {
                post_logout_redirect_uris.push(s.clone());
                continue;
            }
            2 => {
                backchannel_logout_uri = Some(s.clone());
                continue;
            }
            3 => {
                signals_uri = Some(s.clone());
                continue;
            }
            _ => {}
        }
        if let Some(h) = parsed.host_str() {
            hosts.insert(h.to_string());
        }
        redirect_uris.push(s.clone());
    }

    // Client authentication.
    let method = *raw.token_endpoint_auth_method.get_ref();
    let mut secret = None;
    let mut jwks = None;
    match method {
        AuthMethod::None => {
            if let Some(s) = &raw.client_secret_sha256 {
                return Err(err(
                    s.span(),
                    "client_secret_sha256 is set but token_endpoint_auth_method is `none`".into(),
                ));
            }
        }
        AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost => {
            let Some(s) = &raw.client_secret_sha256 else {
                return Err(err(
                    raw.token_endpoint_auth_method.span(),
                    format!(
                        "{} needs client_secret_sha256 (make one with `broker rp secret`)",
                        method.as_str()
                    ),
                ));
            };
            let bytes = hex::decode(s.get_ref())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    err(
                        s.span(),
                        "client_secret_sha256 must be 64 hexadecimal characters (SHA-256 of the secret)"
                            .into(),
                    )
                })?;
            secret = Some(bytes);
        }
        AuthMethod::PrivateKeyJwt => {
            let Some(j) = &raw.jwks else {
                return Err(err(
                    raw.token_endpoint_auth_method.span(),
                    "private_key_jwt needs `jwks` with the client's public keys".into(),
                ));
            };
            let json = serde_json::to_value(j.get_ref())
                .map_err(|e| err(j.span(), format!("jwks: {e}")))?;
            let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(json)
                .map_err(|e| err(j.span(), format!("jwks is not a JWK Set: {e}")))?;
            if set.keys.is_empty() {
                return Err(err(j.span(), "jwks has no keys".into()));
            }
            for k in &set.keys {
                if k.is_supported() && jsonwebtoken::DecodingKey::from_jwk(k).is_ok() {
                    continue;
                }
                return Err(err(
                    j.span(),
                    format!(
                        "jwks key {:?} is not a usable public key",
                        k.common.key_id.as_deref().unwrap_or("(no kid)")
                    ),
                ));
            }
            jwks = Some(set);
        }
    }
    if method != AuthMethod::PrivateKeyJwt
        && let Some(j) = &raw.jwks
    {
        return Err(err(
            j.span(),
            "jwks is only used with token_endpoint_auth_method = \"private_key_jwt\"".into(),
        ));
    }

    let mut scopes = BTreeSet::new();
    for s in raw.scopes.get_ref() {
        if !SUPPORTED_SCOPES.contains(&s.as_str()) {
            return Err(err(
                raw.scopes.span(),
                format!(
                    "scope `{s}` is not one the broker supports ({})",
                    SUPPORTED_SCOPES.join(", ")
                ),
            ));
        }
        scopes.insert(s.clone());
    }
    if !scopes.contains("openid") {
        return Err(err(
            raw.scopes.span(),
            "scopes must include `openid`".into(),
        ));
    }
    let mut claims = BTreeSet::new();
    for c in raw.claims.get_ref() {
        if !SUPPORTED_CLAIMS.contains(&c.as_str()) {
            return Err(err(
                raw.claims.span(),
                format!(
                    "claim `{c}` is not one the broker can release ({})",
                    SUPPORTED_CLAIMS.join(", ")
                ),
            ));
        }
        claims.insert(c.clone());
    }

    let sector = match &raw.sector_identifier {
        Some(s) => {
            let v = s.get_ref().trim();
            if v.is_empty() || v.contains('/') || v.contains(' ') {
                return Err(err(
                    s.span(),
                    format!("sector_identifier `{v}` must be a host name"),
                ));
            }
            v.to_string()
        }
        None if raw.subject_type == SubjectType::Pairwise && hosts.len() > 1 => {
            return Err(err(
                raw.redirect_uris.span(),
                format!(
                    "redirect URIs span several hosts ({}); pairwise subjects need sector_identifier",
                    hosts.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        None if device && hosts.is_empty() && raw.subject_type == SubjectType::Pairwise => {
            return Err(err(
                raw.client_id.span(),
                "a device-grant client without redirect URIs needs sector_identifier for its pairwise subjects".into(),
            ));
        }
        None => hosts.into_iter().next().unwrap_or_default(),
    };

    for p in raw.permissions.get_ref() {
        if !API_SCOPES.contains(&p.as_str()) {
            return Err(err(
                raw.permissions.span(),
                format!(
                    "permission `{p}` is not an API scope of the broker ({})",
                    API_SCOPES.join(", ")
                ),
            ));
        }
        // The broker's APIs serve banks: key-based client authentication only, unless the
        // registration says otherwise in a danger_ setting (still never a public client).
        let secret_allowed = raw.danger_allow_api_with_client_secret == Some(true)
            && matches!(
                method,
                AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
            );
        if method != AuthMethod::PrivateKeyJwt && !secret_allowed {
            return Err(err(
                raw.permissions.span(),
                format!(
                    "permission `{p}` needs token_endpoint_auth_method = \"private_key_jwt\" (not `{}`)",
                    method.as_str()
                ),
            ));
        }
    }
    let no_pkce = match &raw.danger_allow_code_without_pkce {
        Some(v) if *v.get_ref() && method == AuthMethod::None => {
            return Err(err(
                v.span(),
                "danger_allow_code_without_pkce is only for confidential clients: a public client must use PKCE".into(),
            ));
        }
        Some(v) => *v.get_ref(),
        None => false,
    };
    if !raw.permissions.get_ref().is_empty() && method != AuthMethod::PrivateKeyJwt {
        tracing::warn!(client = %raw.client_id.get_ref(), "danger_allow_api_with_client_secret: this client uses the broker's APIs with a client secret");
    }
    if no_pkce {
        tracing::warn!(client = %raw.client_id.get_ref(), "danger_allow_code_without_pkce: this client may obtain codes without PKCE");
    }

    // The profile: FAPI 2.0 asks for all of these at registration (Security Profile §5.3.2).
    let profile = raw.profile.as_ref().map_or(Profile::Oidc, |p| *p.get_ref());
    let profile_span = raw
        .profile
        .as_ref()
        .map_or(raw.client_id.span(), |p| p.span());
    let require_par = match (&raw.require_pushed_authorization_requests, profile) {
        (Some(v), Profile::Fapi2) if !*v.get_ref() => {
            return Err(err(
                v.span(),
                "profile fapi2 needs pushed authorization requests: require_pushed_authorization_requests cannot be false".into(),
            ));
        }
        (_, Profile::Fapi2) => true,
        (Some(v), Profile::Oidc) => *v.get_ref(),
        (None, Profile::Oidc) => false,
    };
    if require_par && !code_flow {
        return Err(err(
            raw.client_id.span(),
            "require_pushed_authorization_requests is for the authorization code flow, which this client does not use".into(),
        ));
    }
    if profile == Profile::Fapi2 {
        if method != AuthMethod::PrivateKeyJwt {
            return Err(err(
                raw.token_endpoint_auth_method.span(),
                format!(
                    "profile fapi2 needs token_endpoint_auth_method = \"private_key_jwt\" (not `{}`): FAPI 2.0 clients are confidential and authenticate with a key",
                    method.as_str()
                ),
            ));
        }
        if let Some(v) = &raw.danger_allow_code_without_pkce
            && *v.get_ref()
        {
            return Err(err(
                v.span(),
                "profile fapi2 needs PKCE: danger_allow_code_without_pkce is not allowed".into(),
            ));
        }
        if !FAPI2_ALGS.contains(&raw.id_token_signed_response_alg.as_str()) {
            return Err(err(
                profile_span,
                format!(
                    "profile fapi2 allows ID tokens in {} only (id_token_signed_response_alg is {})",
                    FAPI2_ALGS.join(", "),
                    raw.id_token_signed_response_alg.as_str()
                ),
            ));
        }
        if let Some(k) = jwks.as_ref().and_then(|set| {
            set.keys.iter().find(|k| {
                k.common
                    .key_algorithm
                    .is_some_and(|a| !FAPI2_ALGS.contains(&format!("{a:?}").as_str()))
            })
        }) {
            return Err(err(
                raw.jwks.as_ref().map_or(profile_span.clone(), |j| j.span()),
                format!(
                    "profile fapi2 allows keys for {} only (jwks key {:?} is for {:?})",
                    FAPI2_ALGS.join(", "),
                    k.common.key_id.as_deref().unwrap_or("(no kid)"),
                    k.common.key_algorithm.unwrap()
                ),
            ));
        }
        if raw.grant_types.contains(&GrantType::DeviceCode) {
            return Err(err(
                profile_span,
                "profile fapi2 allows the authorization code, refresh token and client credentials grants only (not the device grant)".into(),
            ));
        }
    }
    let display_name = raw.display_name.into_inner();
    Ok(Client {
        client_id: raw.client_id.into_inner(),
        display_name_ja: raw.display_name_ja.unwrap_or_else(|| display_name.clone()),
        display_name,
        kind: raw.kind,
        redirect_uris,
        post_logout_redirect_uris,
        backchannel_logout_uri,
        signals_uri,
        auth_method: method,
        profile,
        require_par,
        client_secret_sha256: secret,
        jwks,
        scopes,
        claims,
        subject_type: raw.subject_type,
        sector,
        id_token_alg: raw.id_token_signed_response_alg,
        grant_types: raw.grant_types,
        min_acr: raw.min_acr,
        permissions: raw.permissions.into_inner(),
        api_rate_per_second: raw.api_rate_per_second,
        resource_server_for: raw.resource_server_for.into_inner(),
        danger_allow_code_without_pkce: no_pkce,
        first_party: false,
        source: file.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
client_id = "city"
display_name = "City portal"
kind = "public_sector"
redirect_uris = ["https://city.example.jp/cb"]
token_endpoint_auth_method = "client_secret_basic"
client_secret_sha256 = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
scopes = ["openid", "profile"]
"#;

    fn parse(text: &str) -> Result<Client, FileError> {
        parse_client(Path::new("rp.toml"), text)
    }

    #[test]
    fn good_file_parses_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.client_id, "city");
        assert_eq!(c.sector, "city.example.jp");
        assert_eq!(c.subject_type, SubjectType::Pairwise);
        assert_eq!(c.id_token_alg, SigAlg::ES256);
        assert!(c.allows_grant(GrantType::RefreshToken));
    }

    #[test]
    fn errors_carry_file_and_line() {
        let bad = GOOD.replace("https://city.example.jp/cb", "http://city.example.jp/cb");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.line, 5);
        assert_eq!(
            e.to_string(),
            "rp.toml:5: redirect URI `http://city.example.jp/cb` uses http on a non-loopback host"
        );
        let bad = GOOD.replace("2bb80d", "zz");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.line, 7);
        assert!(e.reason.contains("64 hexadecimal"), "{e}");
        let bad = GOOD.replace("kind = \"public_sector\"", "kind = \"casino\"");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        let bad = GOOD.replace("\"profile\"", "\"email\"");
        let e = parse(&bad).unwrap_err();
        assert!(e.reason.starts_with("scope `email` is not one"), "{e}");
        let bad = GOOD.replace("client_secret_sha256 = ", "# ");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.line, 6);
        let bad = format!("{GOOD}colour = \"red\"\n");
        let e = parse(&bad).unwrap_err();
        assert!(e.reason.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn api_permissions_need_private_key_jwt_unless_danger_setting() {
        let with_perm = format!("{GOOD}permissions = [\"signatures:verify\"]\n");
        assert_eq!(
            parse(&with_perm).unwrap_err().to_string(),
            "rp.toml:9: permission `signatures:verify` needs token_endpoint_auth_method = \"private_key_jwt\" (not `client_secret_basic`)"
        );
        let relaxed = format!("{with_perm}danger_allow_api_with_client_secret = true\n");
        assert_eq!(parse(&relaxed).unwrap().permissions, ["signatures:verify"]);
        // Never for a public client.
        let public = relaxed
            .replace("client_secret_basic", "none")
            .replace("client_secret_sha256 = ", "# ");
        assert!(
            parse(&public)
                .unwrap_err()
                .reason
                .starts_with("permission `signatures:verify` needs")
        );
    }

    /// A client for the broker's APIs alone registers no redirect URIs (it never sees a person).
    #[test]
    fn api_only_clients_need_no_redirect_uris() {
        let api = r#"
client_id = "bank-api"
display_name = "Bank back office"
kind = "bank"
token_endpoint_auth_method = "client_secret_basic"
client_secret_sha256 = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
grant_types = ["client_credentials"]
permissions = ["signatures:verify"]
danger_allow_api_with_client_secret = true
"#;
        let c = parse(api).unwrap();
        assert!(c.redirect_uris.is_empty());
        assert!(!c.allows_grant(GrantType::AuthorizationCode));
        for (change, reason) in [
            (
                ("permissions = [\"signatures:verify\"]", "permissions = []"),
                "grant_types: client_credentials gives access to the broker's APIs only; list them in `permissions`",
            ),
            (
                (
                    "grant_types = [\"client_credentials\"]",
                    "grant_types = [\"client_credentials\", \"refresh_token\"]",
                ),
                "grant_types: refresh_token needs authorization_code or the device grant",
            ),
            (
                (
                    "grant_types = [\"client_credentials\"]",
                    "grant_types = [\"client_credentials\"]\nredirect_uris = [\"https://x.example.jp/cb\"]",
                ),
                "redirect_uris are for the authorization code flow, which this client does not use",
            ),
            (
                (
                    "grant_types = [\"client_credentials\"]",
                    "grant_types = [\"refresh_token\"]",
                ),
                "grant_types must include authorization_code or urn:ietf:params:oauth:grant-type:device_code (or client_credentials for an API-only client)",
            ),
        ] {
            let e = parse(&api.replace(change.0, change.1)).unwrap_err();
            assert_eq!(e.reason, reason);
        }
        // The code flow still needs its redirect URIs.
        let e = parse(&GOOD.replace("redirect_uris = [\"https://city.example.jp/cb\"]\n", ""))
            .unwrap_err();
        assert_eq!(e.reason, "redirect_uris must list at least one URI");
    }

    #[test]
    fn benchmark_relying_parties_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/relying-parties");
        let reg = Registry::load_dir(&dir).unwrap();
        assert!(reg.get("bench-public").unwrap().is_public());
        assert_eq!(
            reg.get("bench-confidential").unwrap().permissions,
            ["signatures:verify"]
        );
    }

    #[test]
    fn loopback_http_is_allowed_and_multi_host_needs_sector() {
        let ok = GOOD.replace("https://city.example.jp/cb", "http://127.0.0.1:9999/cb");
        assert!(parse(&ok).is_ok());
        let two = GOOD.replace(
            "[\"https://city.example.jp/cb\"]",
            "[\"https://a.example.jp/cb\", \"https://b.example.jp/cb\"]",
        );
        assert!(
            parse(&two)
                .unwrap_err()
                .reason
                .contains("sector_identifier")
        );
        let with_sector = format!("{two}sector_identifier = \"example.jp\"\n");
        assert_eq!(parse(&with_sector).unwrap().sector, "example.jp");
    }

    const FAPI: &str = r#"
client_id = "fapi"
display_name = "Bank"
kind = "bank"
redirect_uris = ["https://bank.example.jp/cb"]
profile = "fapi2"
token_endpoint_auth_method = "private_key_jwt"
id_token_signed_response_alg = "PS256"
[jwks]
keys = [{ kty = "EC", crv = "P-256", alg = "ES256", kid = "k1", x = "jMQ0zPyr2wYwjBXu2CYdK8egXgM05hxBhICfXnJZT5M", y = "Q0aF83uk4rq6Sy6UzZG0ACbKeW_fIRHcZoydAQVZONk" }]
"#;

    /// A fapi2 registration: PAR always; everything FAPI 2.0 asks of a client at registration,
    /// each refused with the key's line.
    #[test]
    fn a_fapi2_client_is_registered_with_what_the_profile_needs_or_refused() {
        let c = parse(FAPI).unwrap();
        assert_eq!(c.profile, Profile::Fapi2);
        assert!(c.require_par);
        assert!(!parse(GOOD).unwrap().require_par);
        let opted = format!("{GOOD}require_pushed_authorization_requests = true\n");
        assert!(parse(&opted).unwrap().require_par);
        let refused = |text: &str| parse(text).unwrap_err();
        let e = refused(&FAPI.replace(
            "profile = \"fapi2\"",
            "profile = \"fapi2\"\nrequire_pushed_authorization_requests = false",
        ));
        assert_eq!(e.line, 7);
        assert!(
            e.reason.contains("needs pushed authorization requests"),
            "{e}"
        );
        let e = refused(&FAPI.replace("\"PS256\"", "\"RS256\""));
        assert_eq!(e.line, 6);
        assert_eq!(
            e.reason,
            "profile fapi2 allows ID tokens in PS256, ES256, EdDSA only (id_token_signed_response_alg is RS256)"
        );
        let e = refused(&FAPI.replace("alg = \"ES256\"", "alg = \"RS256\""));
        assert!(e.reason.contains("jwks key \"k1\" is for RS256"), "{e}");
        let e = refused(&FAPI.replace("[jwks]", "danger_allow_code_without_pkce = true\n[jwks]"));
        assert!(e.reason.contains("profile fapi2 needs PKCE"), "{e}");
        let e = refused(&FAPI.replace(
            "profile = \"fapi2\"",
            "profile = \"fapi2\"\ngrant_types = [\"authorization_code\", \"urn:ietf:params:oauth:grant-type:device_code\"]",
        ));
        assert!(e.reason.contains("not the device grant"), "{e}");
        let secret = GOOD.replace(
            "kind = \"public_sector\"",
            "kind = \"bank\"\nprofile = \"fapi2\"",
        );
        let e = refused(&secret);
        assert_eq!(e.line, 7);
        assert!(
            e.reason.starts_with("profile fapi2 needs token_endpoint_auth_method = \"private_key_jwt\" (not `client_secret_basic`)"),
            "{e}"
        );
        let e = refused(&format!("{GOOD}profile = \"fapi3\"\n"));
        assert!(e.reason.contains("unknown variant `fapi3`"), "{e}");
    }

    #[test]
    fn shipped_examples_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../relying-parties");
        let reg = Registry::load_dir(&dir).unwrap();
        for id in [
            "city-portal",
            "hospital",
            "bank",
            "catv",
            "local-dev",
            "local-dev-spa",
        ] {
            assert!(reg.get(id).is_some(), "example {id} missing");
        }
    }
}
