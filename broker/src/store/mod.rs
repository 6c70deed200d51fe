//! Persistence. The only module that knows SQL; callers use the [`Store`] trait and these
//! plain records. SQLite is the embedded default; PostgreSQL serves any number of processes
//! (`sql.rs` implements both).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use crate::oidc::keys::SigningKeyRecord;

mod conn;
mod query;
pub mod sql;

/// Store failures. The detail is for logs, never for clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(String),
    /// The database cannot be reached (down, restarting, pool exhausted): retrying later may
    /// succeed. The failed database transaction was not committed (if the connection broke
    /// while a COMMIT was in flight, whether it committed cannot be known).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let unavailable = match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            // PostgreSQL shutting down or starting up (class 57: operator intervention),
            // connection exceptions (08), too many connections / out of resources (53).
            sqlx::Error::Database(d) => d.code().is_some_and(|c| {
                c.starts_with("57P") || c.starts_with("08") || c.starts_with("53")
            }),
            _ => false,
        };
        if unavailable {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Db(e.to_string())
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        match &e {
            // Another process holding the file's lock past busy_timeout, a full or failing
            // disk, a file that cannot be opened: retrying later may succeed.
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull | CannotOpen
                ) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Db(e.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    Pending,
    Authenticated,
    Done,
}

impl TxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TxStatus::Pending => "pending",
            TxStatus::Authenticated => "authenticated",
            TxStatus::Done => "done",
        }
    }
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "pending" => TxStatus::Pending,
            "authenticated" => TxStatus::Authenticated,
            "done" => TxStatus::Done,
            other => return Err(StoreError::Corrupt(format!("transaction status {other}"))),
        })
    }
}

/// A login transaction (from /authorize until the code).
#[derive(Debug, Clone)]
pub struct TxRecord {
    pub id: String,
    /// Hash of the secret in the browser's transaction cookie.
    pub browser_hash: String,
    /// Hash of the secret in the card-helper link.
    pub helper_hash: String,
    pub client_id: String,
    /// The validated authorization request, JSON.
    pub request_json: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub status: TxStatus,
    pub challenge_nonce: String,
    pub challenge_expires_at: i64,
    pub challenge_used: bool,
    /// Short code shown on the login page and by the helper, to compare.
    pub binding_code: String,
    pub csrf: String,
    pub account_id: Option<String>,
    pub facts_json: Option<String>,
    pub session_hash: Option<String>,
    /// What the ceremony waits for (columns `stage` and `pending_json`).
    pub stage: crate::authn::ceremony::Stage,
    /// Server HMAC of the source address (IPv4, or IPv6 /64) that started it, if known.
    pub source_hash: Option<String>,
}

/// How many login transactions may be open (not done, not expired) at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxCaps {
    pub per_client: i64,
    pub per_source: i64,
}

/// The outcome of [`Store::create_tx`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxCreated {
    Created,
    /// Nothing stored: the relying party has `per_client` transactions open.
    ClientFull,
    /// Nothing stored: the source address has `per_source` transactions open.
    SourceFull,
}

/// The outcome of identity proofing, to store in one step.
#[derive(Debug, Clone)]
pub struct Proofing {
    pub auth: CertLink,
    pub sign: CertLink,
    /// Trust-anchor label of the signature certificate.
    pub sign_anchor: String,
    pub claims_json: String,
    pub evidence_json: String,
    pub facts_json: String,
    /// Which account the certificates join, decided by `authn::proofing::decide_link`. The
    /// store re-checks it inside the database transaction: a certificate is linked to one
    /// account only, and never moves.
    pub plan: crate::authn::proofing::LinkPlan,
}

/// One entry of the audit log (and, when it names an account, of the person's record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEventRecord {
    pub id: i64,
    pub account_id: Option<String>,
    /// `account_created`, `certificate_linked`, `identity_proofed`.
    pub kind: String,
    pub detail_json: String,
    pub created_at: i64,
}

/// An account's verified claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaimsRecord {
    pub account_id: String,
    pub claims_json: String,
    pub evidence_json: String,
    pub verified_at: i64,
    pub sign_issuer: String,
    pub sign_serial: String,
    /// Label of the trust anchor that issued the signature certificate.
    pub sign_anchor: String,
    pub stale_since: Option<i64>,
    pub stale_reason: Option<String>,
}

/// One signature verification, as kept for the retention period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationRecord {
    pub id: String,
    pub client_id: String,
    pub document_sha256: Option<String>,
    pub verdict: String,
    pub reasons_json: String,
    pub cert_issuer: Option<String>,
    pub cert_serial: Option<String>,
    pub revocation_json: Option<String>,
    pub created_at: i64,
    pub retain_until: i64,
}

/// A certificate to link to an account on a successful card login.
#[derive(Debug, Clone)]
pub struct CertLink {
    pub issuer: String,
    pub serial: String,
    pub kind: String,
    pub not_after: i64,
    /// The trust anchor (label) that issued it.
    pub anchor: Option<String>,
}

/// A passkey of an account (table `passkeys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    pub id: String,
    pub account_id: String,
    /// base64url of the WebAuthn credential ID.
    pub cred_id: String,
    /// The WebAuthn user handle given at enrolment (a UUID).
    pub user_handle: String,
    /// webauthn-rs `Passkey`, JSON (public key, counter, flags).
    pub credential_json: String,
    pub name: String,
    pub backup_eligible: i64,
    pub backup_state: i64,
    pub sign_count: i64,
    /// The card certificate of the login that enrolled it.
    pub card_anchor: String,
    pub card_issuer: String,
    pub card_serial: String,
    pub card_not_after: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub suspended_at: Option<i64>,
    pub suspended_reason: Option<String>,
}

/// A WebAuthn ceremony begun (table `webauthn_ceremonies`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CeremonyRecord {
    pub id_hash: String,
    /// `login` or `enrol`.
    pub purpose: String,
    /// login: the transaction id; enrol: the session's id hash.
    pub binding: String,
    pub account_id: Option<String>,
    /// webauthn-rs ceremony state, JSON (kept server side only).
    pub state_json: String,
    pub expires_at: i64,
}

/// A pushed authorization request (table `pushed_requests`, RFC 9126).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedRequestRecord {
    /// Hash of the `request_uri`'s secret (`oidc::par::new_request_uri`).
    pub id_hash: String,
    pub client_id: String,
    /// The authorization request's parameters, as pushed: a JSON array of `[name, value]`.
    pub params_json: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// A user-authentication certificate linked to an account, with its issuing anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchoredLink {
    pub anchor: String,
    pub issuer: String,
    pub serial: String,
    pub not_after: i64,
}

/// What a passkey login's use of the passkey changes (after webauthn-rs verified it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyUse<'a> {
    pub id: &'a str,
    /// The counter the passkey had when the assertion was verified against it.
    pub seen_count: i64,
    pub new_count: i64,
    pub backup_state: i64,
    pub backup_eligible: i64,
    pub credential_json: &'a str,
}

/// A device's grant (RFC 8628; table `device_grants`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGrantRecord {
    pub id: String,
    pub device_code_hash: String,
    pub user_code: String,
    pub client_id: String,
    /// `oidc::device::DeviceRequest`, JSON.
    pub request_json: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub poll_interval: i64,
    pub last_poll_at: Option<i64>,
    /// `oidc::device::Status`.
    pub status: String,
    pub code_hash: Option<String>,
    pub browser_hash: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasskeyInsert {
    Inserted,
    /// The credential ID is registered already (to this account or another).
    Duplicate,
    /// The account holds the policy's maximum.
    TooMany,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasskeyLoginOutcome {
    Authenticated,
    /// The transaction is no longer waiting (finished, expired, or the card answered).
    NotPending,
    /// The passkey changed since it was read (another login with it, a removal, a
    /// suspension): nothing written.
    PasskeyChanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardLoginOutcome {
    /// The transaction is now authenticated for this account.
    Authenticated {
        account_id: String,
        new_account: bool,
    },
    /// The challenge was used already (or the transaction is gone).
    ChallengeUsed,
    /// A certificate to link was linked to another account meanwhile (a concurrent login in
    /// another process): nothing was stored, the challenge is still unused.
    LinkConflict,
}

/// A login transaction ending: marked done, and — when the login opens an SSO session on
/// the way back to the relying party — the session stored and bound to it, all at once.
#[derive(Debug, Clone, Copy)]
pub struct Finish<'a> {
    pub tx_id: &'a str,
    pub session: Option<&'a SessionRecord>,
}

impl<'a> Finish<'a> {
    /// Only the transaction (its session, if any, exists already).
    pub fn tx(tx_id: &'a str) -> Self {
        Finish {
            tx_id,
            session: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id_hash: String,
    pub account_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub facts_json: String,
}

#[derive(Debug, Clone)]
pub struct CodeRecord {
    pub code_hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub account_id: String,
    pub data_json: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeem<T> {
    /// First use: the record, now marked used.
    Fresh(T),
    /// Used before: the record (its grant should be revoked).
    Replayed(T),
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub id: String,
    pub client_id: String,
    pub account_id: String,
    pub scope: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// The authorization request's `claims` parameter (JSON), if any.
    pub claims_json: Option<String>,
    /// The SSO session it came from (`sid`).
    pub sid: Option<String>,
}

/// A logout token to deliver (table `logout_outbox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// Also the logout token's `jti`.
    pub id: String,
    pub client_id: String,
    pub uri: String,
    pub sub: String,
    pub sid: Option<String>,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub attempts: i64,
    pub lease_until: Option<i64>,
    pub delivered_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub last_error: Option<String>,
    /// `logout` (a back-channel logout token) or `set` (a Security Event Token, RFC 8935 push).
    pub kind: String,
    /// For a SET: its `events` claim (JSON).
    pub event_json: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub token_hash: String,
    pub grant_id: String,
    pub data_json: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// Why a rotation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    Rotated,
    /// A next key of this algorithm is published but not yet signing.
    AlreadyPending {
        kid: String,
        activate_at: i64,
    },
}

/// An event every broker process applies to its own caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    pub created_at: i64,
}

/// Row counts, for tests that prove nothing was stored on a failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub accounts: i64,
    pub cert_links: i64,
    pub sessions: i64,
    pub codes: i64,
    pub grants: i64,
    pub refresh_tokens: i64,
    pub consents: i64,
    pub verified_claims: i64,
    pub signature_verifications: i64,
    pub passkeys: i64,
    pub webauthn_ceremonies: i64,
    pub device_grants: i64,
    pub pushed_requests: i64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Store a new login transaction, unless its client or its source already has as many
    /// open ones as `caps` allow (one statement: the count and the insert are not separable).
    async fn create_tx(&self, tx: &TxRecord, caps: TxCaps) -> Result<TxCreated>;
    /// Login transactions in the store, open or not (tests show nothing was stored).
    async fn count_transactions(&self) -> Result<i64>;
    async fn get_tx(&self, id: &str) -> Result<Option<TxRecord>>;
    async fn get_tx_by_helper(&self, helper_hash: &str) -> Result<Option<TxRecord>>;
    /// In one database transaction: find or create the account of `cert`, link it, and mark
    /// the transaction authenticated — only if its challenge `nonce` is still unused.
    /// `known_account`: the account `cert` was found linked to just before (links are never
    /// removed), for which claiming the challenge and authenticating is one statement.
    async fn complete_card_login(
        &self,
        helper_hash: &str,
        nonce: &str,
        cert: &CertLink,
        known_account: Option<&str>,
        facts_json: &str,
        now: i64,
    ) -> Result<CardLoginOutcome>;
    /// The account a certificate is linked to.
    async fn account_by_cert(&self, issuer: &str, serial: &str) -> Result<Option<String>>;
    /// The accounts two certificates (issuer, serial) are linked to, read in one statement so
    /// that both answers describe the same moment (a link committed between two separate
    /// reads would show one certificate linked and its partner not).
    async fn accounts_by_cert_pair(
        &self,
        a: (&str, &str),
        b: (&str, &str),
    ) -> Result<(Option<String>, Option<String>)>;
    /// Move a pending transaction from its user-authentication challenge (`nonce`, unused) to a
    /// signature-certificate challenge (`new_nonce`): the proofing stage, keeping what the user
    /// authentication established. False if the challenge was used meanwhile.
    async fn begin_proofing(
        &self,
        helper_hash: &str,
        nonce: &str,
        new_nonce: &str,
        new_expires_at: i64,
        pending: &crate::authn::ceremony::PendingAuth,
    ) -> Result<bool>;
    /// In one database transaction: the signature challenge `nonce` is used; the account is
    /// the plan's (or a new one); the certificates not linked yet are linked to it — if one
    /// is linked to another account by then, `LinkConflict` and nothing is stored; its
    /// verified claims are replaced; each new link and the proofing are audit events; the
    /// transaction is authenticated.
    async fn complete_proofing(
        &self,
        helper_hash: &str,
        nonce: &str,
        p: &Proofing,
        now: i64,
    ) -> Result<CardLoginOutcome>;
    async fn verified_claims(&self, account_id: &str) -> Result<Option<VerifiedClaimsRecord>>;
    /// Keep a WebAuthn ceremony's state until it is finished or expires; it replaces the open
    /// ceremony of the same purpose and binding, if any.
    async fn put_ceremony(&self, c: &CeremonyRecord) -> Result<()>;
    /// Take (delete) a ceremony: `Some` once, if it had not expired at `now`.
    async fn take_ceremony(&self, id_hash: &str, now: i64) -> Result<Option<CeremonyRecord>>;
    /// Add a passkey to its account (and an audit event), unless its credential ID is known
    /// already or the account holds `max` passkeys.
    async fn insert_passkey(
        &self,
        p: &PasskeyRecord,
        max: usize,
        now: i64,
    ) -> Result<PasskeyInsert>;
    /// The passkeys of an account, oldest first.
    async fn passkeys_of(&self, account_id: &str) -> Result<Vec<PasskeyRecord>>;
    async fn passkey_by_cred(&self, cred_id: &str) -> Result<Option<PasskeyRecord>>;
    /// The user-authentication certificates linked to an account whose anchor is known.
    async fn user_auth_links(&self, account_id: &str) -> Result<Vec<AnchoredLink>>;
    /// In one database transaction: the passkey's counter, flags and last use updated if it
    /// is still as it was read (`seen_count`, not suspended); the login transaction
    /// authenticated for `account_id` if it is still pending (its card challenge spent).
    async fn complete_passkey_login(
        &self,
        tx_id: &str,
        account_id: &str,
        facts_json: &str,
        used: &PasskeyUse<'_>,
        now: i64,
    ) -> Result<PasskeyLoginOutcome>;
    /// Store a new device grant unless its client has `per_client` pending ones (one
    /// statement); false at the cap.
    async fn create_device_grant(&self, g: &DeviceGrantRecord, per_client: i64) -> Result<bool>;
    async fn device_grant(&self, id: &str) -> Result<Option<DeviceGrantRecord>>;
    async fn device_grant_by_user_code(&self, user_code: &str)
    -> Result<Option<DeviceGrantRecord>>;
    async fn device_grant_by_device_code(
        &self,
        device_code_hash: &str,
    ) -> Result<Option<DeviceGrantRecord>>;
    /// The browser that took a pending grant's user code up (the last one to do so).
    async fn take_up_device_grant(&self, id: &str, browser_hash: &str, now: i64) -> Result<bool>;
    /// A pending grant taken up by `browser_hash`, unexpired, becomes approved (with the
    /// approval's code) or denied; false if it was not so.
    async fn settle_device_grant(
        &self,
        id: &str,
        browser_hash: &str,
        code_hash: Option<&str>,
        now: i64,
    ) -> Result<bool>;
    /// Record a poll (and, when too soon, grow the interval by 5 seconds).
    async fn record_device_poll(&self, id: &str, now: i64, slow_down: bool) -> Result<()>;
    /// An approved grant becomes redeemed; false if it was not approved (a second poll).
    async fn redeem_device_grant(&self, id: &str) -> Result<bool>;
    /// Wrong user codes from `source_hash` in the window that started at or after
    /// `window_start`; with `add`, one more is counted first (a window older than
    /// `window_start` starts again at `now`).
    async fn user_code_failures(
        &self,
        source_hash: &str,
        window_start: i64,
        now: i64,
        add: bool,
    ) -> Result<i64>;
    /// The live grants (client, account) that came from the SSO session `sid`.
    async fn grants_of_session(&self, sid: &str) -> Result<Vec<GrantRecord>>;
    /// End an SSO session and queue its logout tokens, in one database transaction.
    async fn end_session(&self, id_hash: &str, logouts: &[OutboxRecord]) -> Result<()>;
    /// Lease up to `limit` logout tokens due at `now` until `lease_until` (one process gets
    /// each), counting the attempt.
    async fn lease_logouts(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRecord>>;
    /// A leased logout token's outcome: delivered; or retry at `next_attempt_at`; or failed
    /// for good (`next_attempt_at` None).
    async fn settle_logout(
        &self,
        id: &str,
        now: i64,
        outcome: std::result::Result<(), (&str, Option<i64>)>,
    ) -> Result<()>;
    /// The broker learned that certificate (issuer, serial) is revoked: mark its link (once)
    /// and, in the same database transaction, end the account's sessions, revoke its grants
    /// when `revoke_grants` (their refresh and access tokens stop), and queue `signals`.
    /// None if the certificate is not linked or was marked before (nothing is written).
    async fn signal_revoked_cert(
        &self,
        issuer: &str,
        serial: &str,
        revoke_grants: bool,
        signals: &[OutboxRecord],
        now: i64,
    ) -> Result<Option<String>>;
    /// Certificates linked under trust anchor `anchor`, not yet known revoked, with a serial
    /// after `after`, in serial order, at most `limit` (a CRL sweep's page).
    async fn linked_certs_of_anchor(
        &self,
        anchor: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<AnchoredLink>>;
    /// Keep a pushed authorization request, unless its client has `per_client` open (unused,
    /// unexpired) already: false then. The count and the insert are one statement.
    async fn insert_pushed_request(&self, r: &PushedRequestRecord, per_client: i64)
    -> Result<bool>;
    /// Take a pushed request back, once, for `client_id`: its `params_json`, or why not (one
    /// conditional update; another client's attempt does not spend it).
    async fn take_pushed_request(
        &self,
        id_hash: &str,
        client_id: &str,
        now: i64,
    ) -> Result<std::result::Result<String, crate::oidc::par::Refusal>>;
    /// The live grants of an account.
    async fn grants_of_account(&self, account_id: &str) -> Result<Vec<GrantRecord>>;
    /// Logout tokens not delivered and not given up on.
    async fn pending_logouts(&self) -> Result<i64>;
    async fn logout_outbox(&self) -> Result<Vec<OutboxRecord>>;
    /// Suspend a passkey for good (its card revoked, expired, or its counter went back),
    /// with an audit event.
    async fn suspend_passkey(&self, id: &str, reason: &str, now: i64) -> Result<()>;
    /// Rename one of `account_id`'s passkeys; false if it has no such passkey.
    async fn rename_passkey(&self, account_id: &str, id: &str, name: &str) -> Result<bool>;
    /// Remove one of `account_id`'s passkeys (and an audit event); false if none.
    async fn remove_passkey(&self, account_id: &str, id: &str, now: i64) -> Result<bool>;
    /// The audit events of an account, oldest first (what its person's record shows).
    async fn audit_events(&self, account_id: &str) -> Result<Vec<AuditEventRecord>>;
    /// Mark the claims resting on signature certificate (issuer, serial) stale.
    async fn mark_claims_stale(
        &self,
        sign_issuer: &str,
        sign_serial: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool>;
    /// Record which SSO session the transaction's browser now holds.
    async fn bind_tx_session(&self, tx_id: &str, session_hash: &str) -> Result<()>;
    /// Mark the transaction done (storing the session it opens, if any, in the same database
    /// transaction); false, and nothing stored, if it was done already (a code exists).
    async fn finish_tx(&self, f: Finish<'_>) -> Result<bool>;

    async fn create_session(&self, s: &SessionRecord) -> Result<()>;
    async fn get_session(&self, id_hash: &str) -> Result<Option<SessionRecord>>;
    /// The session and what its person consented to for `client_id`, in one query.
    async fn session_with_consent(
        &self,
        id_hash: &str,
        client_id: &str,
    ) -> Result<Option<(SessionRecord, Option<String>)>>;
    async fn delete_session(&self, id_hash: &str) -> Result<()>;

    async fn get_consent(&self, account_id: &str, client_id: &str) -> Result<Option<String>>;
    async fn put_consent(
        &self,
        account_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> Result<()>;

    /// Store a code; with `finish`, in the same database transaction as marking that login
    /// transaction done (and storing the session it opens) — false (nothing stored) if it was
    /// done already.
    async fn insert_code(&self, c: &CodeRecord, finish: Option<Finish<'_>>) -> Result<bool>;
    /// The code, used or not (nothing changes).
    async fn get_code(&self, code_hash: &str) -> Result<Option<CodeRecord>>;
    /// In one database transaction: mark the code used (only if unused), store its grant and,
    /// if given, its first refresh token. `Replayed` (nothing stored) if it was used meanwhile.
    /// A failure leaves the code unused, so the token request can be retried.
    async fn redeem_code_with_grant(
        &self,
        code_hash: &str,
        grant: &GrantRecord,
        refresh: Option<&RefreshRecord>,
        now: i64,
    ) -> Result<Redeem<CodeRecord>>;

    async fn get_grant(&self, id: &str) -> Result<Option<GrantRecord>>;
    /// Revoke a grant and every refresh token of it.
    async fn revoke_grant(&self, id: &str, now: i64) -> Result<()>;

    async fn get_refresh(&self, token_hash: &str) -> Result<Option<RefreshRecord>>;
    /// Mark `old_hash` used and insert `new` in one step; a used token gives `Replayed`.
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new: &RefreshRecord,
        now: i64,
    ) -> Result<Redeem<RefreshRecord>>;

    /// Record a client assertion's `jti` (hash) for `client_id` until `keep_until`: true the
    /// first time, false (a replay) if it is recorded already — across processes.
    async fn claim_assertion_jti(
        &self,
        client_id: &str,
        jti_hash: &str,
        keep_until: i64,
    ) -> Result<bool>;

    async fn revoke_jti(&self, jti: &str, expires_at: i64) -> Result<()>;
    async fn is_jti_revoked(&self, jti: &str) -> Result<bool>;
    /// The grant `id` if neither it nor the access token `jti` was revoked: what an access
    /// token presented to the broker needs, in one round trip.
    async fn live_grant(&self, id: &str, jti: &str) -> Result<Option<GrantRecord>>;

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>>;
    /// Store `k` (active from `now`) unless a key of its algorithm is active at `now`; false
    /// (nothing stored) if one is, also when another process stores one concurrently.
    async fn insert_first_signing_key(&self, k: &SigningKeyRecord, now: i64) -> Result<bool>;
    /// Store `next` (published now, signing from `next.activate_at`) and schedule every
    /// unretired key of its algorithm to retire at `retire_at`; refused while an earlier
    /// rotation is still pending at `now`.
    async fn rotate_signing_key(
        &self,
        next: &SigningKeyRecord,
        retire_at: i64,
        now: i64,
    ) -> Result<RotateOutcome>;

    /// Record an event for every process; its id.
    async fn post_event(&self, kind: &str, payload: &str, now: i64) -> Result<i64>;
    /// Events created at or after `since`, or with an id above `after_id`, by id.
    async fn events_since(&self, since: i64, after_id: i64) -> Result<Vec<EventRecord>>;

    /// The stored secret `name`, storing `candidate` first if there is none.
    async fn secret(&self, name: &str, candidate: &str) -> Result<String>;

    async fn counts(&self) -> Result<Counts>;

    /// Record verifications (one database transaction for a batch).
    async fn insert_verifications(&self, records: &[VerificationRecord]) -> Result<()>;
    async fn get_verification(&self, id: &str) -> Result<Option<VerificationRecord>>;
    /// Delete verification records whose retention ended before `before`.
    async fn purge_verifications(&self, before: i64) -> Result<u64>;

    /// Delete what expired by `now`: login transactions and client-assertion jtis at once;
    /// codes, sessions, refresh tokens, revoked-token markers and retired signing keys an hour
    /// later; broker events after two hours. Returns the number of rows deleted.
    async fn purge_expired(&self, now: i64) -> Result<u64>;
}
