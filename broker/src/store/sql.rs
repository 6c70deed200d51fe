//! The [`Store`] over SQL, for both engines: SQLite (one file, WAL — the embedded default) and
//! PostgreSQL (shared by any number of broker processes). sqlx's `Any` driver carries the
//! queries; every statement is written once, in the subset both engines accept (`$n`
//! placeholders, `ON CONFLICT`, `RETURNING`), over TEXT and 64-bit integer columns only.
//!
//! Races between processes are settled by the database, never by the caller: single-use things
//! (challenges, codes, refresh tokens) are claimed by one conditional `UPDATE … RETURNING`, which
//! PostgreSQL serialises on the row lock and SQLite on its write lock (`BEGIN IMMEDIATE`).

use super::conn::{Backend, Lite, Tx, sqlite_path};
use super::query::{Exec, FromRow, Row, from_row, query, query_as, query_scalar};
use super::*;
use crate::authn::ceremony::Stage;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, Connection, Executor};
use std::time::Duration;

/// Which engine a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The engine of `url` (`sqlite:` or `postgres:`/`postgresql:`), if supported.
    pub fn of(url: &str) -> Option<Engine> {
        if url.starts_with("sqlite:") {
            Some(Engine::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Engine::Postgres)
        } else {
            None
        }
    }
}

/// Pool settings (`[database]` in broker.toml).
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Connections this process may hold open.
    pub max_connections: u32,
    /// How long a request waits for a connection before it fails (503).
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// Seconds expired codes, sessions and refresh tokens are kept (so that a replay still meets
/// its record) before `purge_expired` deletes them.
const EXPIRED_GRACE: i64 = 3600;

pub struct SqlStore {
    backend: Backend,
    engine: Engine,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl SqlStore {
    /// Connect to `url` and bring its schema up to date (creating a SQLite file if missing).
    pub async fn connect(url: &str, settings: PoolSettings) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let engine = Engine::of(url)
            .ok_or_else(|| StoreError::Db("unsupported database URL scheme".into()))?;
        let backend = match engine {
            Engine::Postgres => Backend::Postgres(
                AnyPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(settings.acquire_timeout)
                    // No ping before use: sqlx pings every connection it takes back, which
                    // finds one broken by a server restart (it is closed, not reused); a
                    // query on one that broke while idle fails as `Unavailable` (503).
                    .test_before_acquire(false)
                    .connect(url)
                    .await?,
            ),
            Engine::Sqlite => {
                // sqlx creates the file and brings its schema up to date; rusqlite serves it.
                let path = sqlite_path(url)?;
                let mut c = AnyConnection::connect(url).await?;
                c.execute("PRAGMA journal_mode = WAL").await?;
                SQLITE_MIGRATIONS
                    .run(&mut c)
                    .await
                    .map_err(|e| StoreError::Db(format!("migration: {e}")))?;
                c.close().await?;
                Backend::Sqlite(Lite::open(
                    path,
                    settings.max_connections,
                    settings.acquire_timeout,
                )?)
            }
        };
        if let Backend::Postgres(pool) = &backend {
            POSTGRES_MIGRATIONS
                .run(pool)
                .await
                .map_err(|e| StoreError::Db(format!("migration: {e}")))?;
        }
        Ok(SqlStore { backend, engine })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    async fn begin(&self) -> Result<Tx> {
        self.backend.begin().await
    }

    /// Find the account `cert` is linked to, or create one and link it. Safe against a
    /// concurrent first login with the same certificate in another process: the loser's new
    /// account is removed and the winner's returned.
    async fn find_or_link(
        db: &mut (impl Exec + ?Sized),
        cert: &CertLink,
        now: i64,
    ) -> Result<(String, bool)> {
        if let Some(a) = linked_account(db, cert).await? {
            return Ok((a, false));
        }
        let id = uuid::Uuid::new_v4().to_string();
        query("INSERT INTO accounts (id, created_at) VALUES ($1, $2)")
            .bind(&id)
            .bind(now)
            .execute(&mut *db)
            .await?;
        if insert_link(db, cert, &id, now).await? {
            audit(
                db,
                Some(&id),
                "account_created",
                &serde_json::json!({}),
                now,
            )
            .await?;
            audit(
                db,
                Some(&id),
                "certificate_linked",
                &serde_json::json!({
                    "certificate": cert.kind, "issuer": cert.issuer,
                    "serial": cert.serial, "how": "first_login",
                }),
                now,
            )
            .await?;
            return Ok((id, true));
        }
        query("DELETE FROM accounts WHERE id = $1")
            .bind(&id)
            .execute(&mut *db)
            .await?;
        let a = linked_account(db, cert)
            .await?
            .ok_or_else(|| StoreError::Corrupt("certificate link vanished".into()))?;
        Ok((a, false))
    }
}

/// Link `c` to `account_id` unless it is linked already; true if this call linked it.
async fn insert_link(
    db: &mut (impl Exec + ?Sized),
    c: &CertLink,
    account_id: &str,
    now: i64,
) -> Result<bool> {
    Ok(query(
        "INSERT INTO cert_links (issuer, serial, kind, account_id, not_after, linked_at, anchor)
         VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (issuer, serial) DO NOTHING",
    )
    .bind(&c.issuer)
    .bind(&c.serial)
    .bind(&c.kind)
    .bind(account_id)
    .bind(c.not_after)
    .bind(now)
    .bind(&c.anchor)
    .execute(&mut *db)
    .await?
    .rows_affected()
        == 1)
}

async fn linked_account(db: &mut (impl Exec + ?Sized), c: &CertLink) -> Result<Option<String>> {
    query_scalar("SELECT account_id FROM cert_links WHERE issuer = $1 AND serial = $2")
        .bind(&c.issuer)
        .bind(&c.serial)
        .fetch_optional(&mut *db)
        .await
}

/// Claim the transaction's unused challenge `nonce` at `stage`: true for exactly one caller.
async fn claim_challenge(
    db: &mut (impl Exec + ?Sized),
    helper_hash: &str,
    nonce: &str,
    stage: &str,
) -> Result<bool> {
    Ok(query(
        "UPDATE transactions SET challenge_used = 1
         WHERE helper_hash = $1 AND challenge_nonce = $2 AND challenge_used = 0
           AND status = 'pending' AND stage = $3",
    )
    .bind(helper_hash)
    .bind(nonce)
    .bind(stage)
    .execute(&mut *db)
    .await?
    .rows_affected()
        == 1)
}

async fn insert_session(db: &mut (impl Exec + ?Sized), s: &SessionRecord) -> Result<()> {
    query(
        "INSERT INTO sessions (id_hash, account_id, created_at, expires_at, facts_json)
         VALUES ($1,$2,$3,$4,$5)",
    )
    .bind(&s.id_hash)
    .bind(&s.account_id)
    .bind(s.created_at)
    .bind(s.expires_at)
    .bind(&s.facts_json)
    .execute(&mut *db)
    .await?;
    Ok(())
}

/// Mark a login transaction done — with the session it opens stored and bound in the same
/// statement sequence — unless it was done already.
async fn finish_login(db: &mut (impl Exec + ?Sized), f: Finish<'_>) -> Result<bool> {
    if let Some(s) = f.session {
        insert_session(db, s).await?;
    }
    Ok(query(
        "UPDATE transactions SET status = 'done', session_hash = COALESCE($2, session_hash)
         WHERE id = $1 AND status != 'done'",
    )
    .bind(f.tx_id)
    .bind(f.session.map(|s| s.id_hash.as_str()))
    .execute(&mut *db)
    .await?
    .rows_affected()
        == 1)
}

/// The ceremony stage of a transaction from its columns.
fn stage_from_columns(stage: &str, pending_json: Option<String>) -> Result<Stage> {
    match (stage, pending_json) {
        ("user_auth", _) => Ok(Stage::UserAuth),
        ("signature", Some(p)) => serde_json::from_str(&p)
            .map(|p| Stage::Proofing(Box::new(p)))
            .map_err(|e| StoreError::Corrupt(format!("pending authentication: {e}"))),
        (other, _) => Err(StoreError::Corrupt(format!("transaction stage {other}"))),
    }
}

/// The `pending_json` column of a stage.
fn pending_json(stage: &Stage) -> Result<Option<String>> {
    match stage {
        Stage::UserAuth => Ok(None),
        Stage::Proofing(p) => serde_json::to_string(p)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("pending authentication: {e}"))),
    }
}

fn tx_from_row(r: &Row) -> Result<TxRecord> {
    Ok(TxRecord {
        id: r.try_get("id")?,
        browser_hash: r.try_get("browser_hash")?,
        helper_hash: r.try_get("helper_hash")?,
        client_id: r.try_get("client_id")?,
        request_json: r.try_get("request_json")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        status: TxStatus::parse(&r.try_get::<String>("status")?)?,
        challenge_nonce: r.try_get("challenge_nonce")?,
        challenge_expires_at: r.try_get("challenge_expires_at")?,
        challenge_used: r.try_get::<i64>("challenge_used")? != 0,
        binding_code: r.try_get("binding_code")?,
        csrf: r.try_get("csrf")?,
        account_id: r.try_get("account_id")?,
        facts_json: r.try_get("facts_json")?,
        session_hash: r.try_get("session_hash")?,
        stage: stage_from_columns(
            &r.try_get::<String>("stage")?,
            r.try_get::<Option<String>>("pending_json")?,
        )?,
        source_hash: r.try_get("source_hash")?,
    })
}

/// Mark a single-use row (a code, a refresh token) used — only if it is unused — inside `db`:
/// `Fresh` with the row as it was, else the row as it is (`Replayed`) or `NotFound`. `spend`
/// and `find` are the table's conditional UPDATE … RETURNING * and its SELECT by key. The
/// caller commits or rolls back.
async fn spend<T>(
    db: &mut (impl Exec + ?Sized),
    spend: &'static str,
    find: &'static str,
    key: &str,
    now: i64,
) -> Result<Redeem<T>>
where
    T: FromRow + Send,
{
    let fresh: Option<T> = query_as(spend)
        .bind(now)
        .bind(key)
        .fetch_optional(&mut *db)
        .await?;
    if let Some(row) = fresh {
        return Ok(Redeem::Fresh(row));
    }
    let old: Option<T> = query_as(find).bind(key).fetch_optional(&mut *db).await?;
    Ok(old.map_or(Redeem::NotFound, Redeem::Replayed))
}

const SPEND_CODE: &str =
    "UPDATE codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL RETURNING *";
const FIND_CODE: &str = "SELECT * FROM codes WHERE code_hash = $1";
const SPEND_REFRESH: &str =
    "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL RETURNING *";
const FIND_REFRESH: &str = "SELECT * FROM refresh_tokens WHERE token_hash = $1";

from_row! {
    VerifiedClaimsRecord { account_id, claims_json, evidence_json, verified_at, sign_issuer,
        sign_serial, sign_anchor, stale_since, stale_reason }
    VerificationRecord { id, client_id, document_sha256, verdict, reasons_json, cert_issuer,
        cert_serial, revocation_json, created_at, retain_until }
    SessionRecord { id_hash, account_id, created_at, expires_at, facts_json }
    CodeRecord { code_hash, grant_id, client_id, account_id, data_json, expires_at, used_at }
    GrantRecord { id, client_id, account_id, scope, created_at, revoked_at, claims_json, sid }
    OutboxRecord { id, client_id, uri, sub, sid, created_at, next_attempt_at, attempts,
        lease_until, delivered_at, failed_at, last_error, kind, event_json }
    RefreshRecord { token_hash, grant_id, data_json, created_at, expires_at, used_at }
    SigningKeyRecord { kid, alg, private_pem, created_at, status, activate_at, retire_at }
    EventRecord { id, kind, payload, created_at }
    AuditEventRecord { id, account_id, kind, detail_json, created_at }
    LinkRow { issuer, serial, account_id }
    PasskeyRecord { id, account_id, cred_id, user_handle, credential_json, name,
        backup_eligible, backup_state, sign_count, card_anchor, card_issuer, card_serial,
        card_not_after, created_at, last_used_at, suspended_at, suspended_reason }
    CeremonyRecord { id_hash, purpose, binding, account_id, state_json, expires_at }
    PushedRequestRecord { id_hash, client_id, params_json, created_at, expires_at, used_at }
    AnchoredLink { anchor, issuer, serial, not_after }
    DeviceGrantRecord { id, device_code_hash, user_code, client_id, request_json, created_at,
        expires_at, poll_interval, last_poll_at, status, code_hash, browser_hash }
}

/// A certificate's link as read by `accounts_by_cert_pair`.
struct LinkRow {
    issuer: String,
    serial: String,
    account_id: String,
}

/// Queue outbox items (logout tokens, SETs) in the caller's database transaction.
async fn queue(db: &mut (impl Exec + ?Sized), items: &[OutboxRecord]) -> Result<()> {
    for o in items {
        query(
            "INSERT INTO logout_outbox (id, client_id, uri, sub, sid, created_at,
               next_attempt_at, attempts, kind, event_json) VALUES ($1,$2,$3,$4,$5,$6,$7,0,$8,$9)",
        )
        .bind(&o.id)
        .bind(&o.client_id)
        .bind(&o.uri)
        .bind(&o.sub)
        .bind(&o.sid)
        .bind(o.created_at)
        .bind(o.next_attempt_at)
        .bind(&o.kind)
        .bind(&o.event_json)
        .execute(&mut *db)
        .await?;
    }
    Ok(())
}

/// Append an audit event (in the caller's database transaction, so it exists exactly when
/// what it records does).
async fn audit(
    db: &mut (impl Exec + ?Sized),
    account_id: Option<&str>,
    kind: &str,
    detail: &serde_json::Value,
    now: i64,
) -> Result<()> {
    query(
        "INSERT INTO audit_events (account_id, kind, detail_json, created_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(account_id)
    .bind(kind)
    .bind(detail.to_string())
    .bind(now)
    .execute(&mut *db)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for SqlStore {
    async fn create_tx(&self, t: &TxRecord, caps: TxCaps) -> Result<TxCreated> {
        // The counts read the partial indexes of pending transactions. No bound value in a
        // LIMIT or an `IS NULL`: SQLite would prepare the statement again at every use
        // (bench/run: −16% logins at 16 until it did not). A transaction without a source
        // matches no source row (`= NULL`).
        let mut db = self.backend.write().await?;
        let inserted = query(
            "INSERT INTO transactions (id, browser_hash, helper_hash, client_id, request_json,
               created_at, expires_at, status, challenge_nonce, challenge_expires_at,
               challenge_used, binding_code, csrf, account_id, facts_json, session_hash,
               stage, pending_json, source_hash)
             SELECT $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19
             WHERE (SELECT COUNT(*) FROM transactions
                      WHERE client_id = $4 AND status = 'pending' AND expires_at > $6) < $20
               AND (SELECT COUNT(*) FROM transactions
                      WHERE source_hash = $19 AND status = 'pending' AND expires_at > $6) < $21",
        )
        .bind(&t.id)
        .bind(&t.browser_hash)
        .bind(&t.helper_hash)
        .bind(&t.client_id)
        .bind(&t.request_json)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(t.status.as_str())
        .bind(&t.challenge_nonce)
        .bind(t.challenge_expires_at)
        .bind(t.challenge_used as i64)
        .bind(&t.binding_code)
        .bind(&t.csrf)
        .bind(&t.account_id)
        .bind(&t.facts_json)
        .bind(&t.session_hash)
        .bind(t.stage.name())
        .bind(pending_json(&t.stage)?)
        .bind(&t.source_hash)
        .bind(caps.per_client)
        .bind(caps.per_source)
        .execute(&mut db)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            return Ok(TxCreated::Created);
        }
        // Refused: say which cap (only on this path does the count cost a second statement).
        let open_for_client: i64 = query_scalar(
            "SELECT COUNT(*) FROM transactions
             WHERE client_id = $1 AND status = 'pending' AND expires_at > $2",
        )
        .bind(&t.client_id)
        .bind(t.created_at)
        .fetch_one(&mut db)
        .await?;
        Ok(if open_for_client >= caps.per_client {
            TxCreated::ClientFull
        } else {
            TxCreated::SourceFull
        })
    }

    async fn count_transactions(&self) -> Result<i64> {
        query_scalar("SELECT COUNT(*) FROM transactions")
            .fetch_one(&mut self.backend.read().await?)
            .await
    }

    async fn get_tx(&self, id: &str) -> Result<Option<TxRecord>> {
        query("SELECT * FROM transactions WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut self.backend.read().await?)
            .await?
            .as_ref()
            .map(tx_from_row)
            .transpose()
    }

    async fn get_tx_by_helper(&self, helper_hash: &str) -> Result<Option<TxRecord>> {
        query("SELECT * FROM transactions WHERE helper_hash = $1")
            .bind(helper_hash)
            .fetch_optional(&mut self.backend.read().await?)
            .await?
            .as_ref()
            .map(tx_from_row)
            .transpose()
    }

    async fn complete_card_login(
        &self,
        helper_hash: &str,
        nonce: &str,
        cert: &CertLink,
        known_account: Option<&str>,
        facts_json: &str,
        now: i64,
    ) -> Result<CardLoginOutcome> {
        if let Some(account_id) = known_account {
            // A returning card: one conditional UPDATE claims the challenge and authenticates.
            let r = query(
                "UPDATE transactions SET challenge_used = 1, status = 'authenticated',
                   account_id = $1, facts_json = $2
                 WHERE helper_hash = $3 AND challenge_nonce = $4 AND challenge_used = 0
                   AND status = 'pending' AND stage = 'user_auth'",
            )
            .bind(account_id)
            .bind(facts_json)
            .bind(helper_hash)
            .bind(nonce)
            .execute(&mut self.backend.write().await?)
            .await?;
            return Ok(if r.rows_affected() == 1 {
                CardLoginOutcome::Authenticated {
                    account_id: account_id.to_string(),
                    new_account: false,
                }
            } else {
                CardLoginOutcome::ChallengeUsed
            });
        }
        let mut db = self.begin().await?;
        if !claim_challenge(&mut db, helper_hash, nonce, "user_auth").await? {
            db.rollback().await?;
            return Ok(CardLoginOutcome::ChallengeUsed);
        }
        let (account_id, new_account) = Self::find_or_link(&mut db, cert, now).await?;
        query(
            "UPDATE transactions SET status = 'authenticated', account_id = $1, facts_json = $2
             WHERE helper_hash = $3",
        )
        .bind(&account_id)
        .bind(facts_json)
        .bind(helper_hash)
        .execute(&mut db)
        .await?;
        db.commit().await?;
        Ok(CardLoginOutcome::Authenticated {
            account_id,
            new_account,
        })
    }

    async fn account_by_cert(&self, issuer: &str, serial: &str) -> Result<Option<String>> {
        Ok(
            query_scalar("SELECT account_id FROM cert_links WHERE issuer = $1 AND serial = $2")
                .bind(issuer)
                .bind(serial)
                .fetch_optional(&mut self.backend.read().await?)
                .await?,
        )
    }

    async fn put_ceremony(&self, c: &CeremonyRecord) -> Result<()> {
        // A login transaction or session holds one open ceremony: a new one replaces it.
        query(
            "INSERT INTO webauthn_ceremonies (id_hash, purpose, binding, account_id, state_json,
               expires_at) VALUES ($1,$2,$3,$4,$5,$6)
             ON CONFLICT (purpose, binding) DO UPDATE SET id_hash = excluded.id_hash,
               account_id = excluded.account_id, state_json = excluded.state_json,
               expires_at = excluded.expires_at",
        )
        .bind(&c.id_hash)
        .bind(&c.purpose)
        .bind(&c.binding)
        .bind(&c.account_id)
        .bind(&c.state_json)
        .bind(c.expires_at)
        .execute(&mut self.backend.write().await?)
        .await?;
        Ok(())
    }

    async fn take_ceremony(&self, id_hash: &str, now: i64) -> Result<Option<CeremonyRecord>> {
        let c: Option<CeremonyRecord> =
            query_as("DELETE FROM webauthn_ceremonies WHERE id_hash = $1 RETURNING *")
                .bind(id_hash)
                .fetch_optional(&mut self.backend.write().await?)
                .await?;
        Ok(c.filter(|c| c.expires_at > now))
    }

    async fn insert_passkey(
        &self,
        p: &PasskeyRecord,
        max: usize,
        now: i64,
    ) -> Result<PasskeyInsert> {
        let mut db = self.begin().await?;
        let known: Option<i64> = query_scalar("SELECT 1 FROM passkeys WHERE cred_id = $1")
            .bind(&p.cred_id)
            .fetch_optional(&mut db)
            .await?;
        if known.is_some() {
            db.rollback().await?;
            return Ok(PasskeyInsert::Duplicate);
        }
        // The count and the insert in one statement: two enrolments at once cannot both pass.
        let r = query(
            "INSERT INTO passkeys (id, account_id, cred_id, user_handle, credential_json, name,
               backup_eligible, backup_state, sign_count, card_anchor, card_issuer, card_serial,
               card_not_after, created_at)
             SELECT $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14
             WHERE (SELECT COUNT(*) FROM passkeys WHERE account_id = $2) < $15
             ON CONFLICT (cred_id) DO NOTHING",
        )
        .bind(&p.id)
        .bind(&p.account_id)
        .bind(&p.cred_id)
        .bind(&p.user_handle)
        .bind(&p.credential_json)
        .bind(&p.name)
        .bind(p.backup_eligible)
        .bind(p.backup_state)
        .bind(p.sign_count)
        .bind(&p.card_anchor)
        .bind(&p.card_issuer)
        .bind(&p.card_serial)
        .bind(p.card_not_after)
        .bind(p.created_at)
        .bind(max as i64)
        .execute(&mut db)
        .await?;
        if r.rows_affected() != 1 {
            db.rollback().await?;
            return Ok(PasskeyInsert::TooMany);
        }
        audit(
            &mut db,
            Some(&p.account_id),
            "passkey_added",
            &serde_json::json!({
                "passkey": p.id, "name": p.name,
                "kind": crate::authn::passkey::kind(p.backup_eligible != 0),
                "card": { "issuer": p.card_issuer, "serial": p.card_serial },
            }),
            now,
        )
        .await?;
        db.commit().await?;
        Ok(PasskeyInsert::Inserted)
    }

    async fn passkeys_of(&self, account_id: &str) -> Result<Vec<PasskeyRecord>> {
        Ok(
            query_as("SELECT * FROM passkeys WHERE account_id = $1 ORDER BY created_at, id")
                .bind(account_id)
                .fetch_all(&mut self.backend.read().await?)
                .await?,
        )
    }

    async fn passkey_by_cred(&self, cred_id: &str) -> Result<Option<PasskeyRecord>> {
        Ok(query_as("SELECT * FROM passkeys WHERE cred_id = $1")
            .bind(cred_id)
            .fetch_optional(&mut self.backend.read().await?)
            .await?)
    }

    async fn user_auth_links(&self, account_id: &str) -> Result<Vec<AnchoredLink>> {
        Ok(query_as(
            "SELECT anchor, issuer, serial, not_after FROM cert_links
             WHERE account_id = $1 AND kind = 'user_auth' AND anchor IS NOT NULL",
        )
        .bind(account_id)
        .fetch_all(&mut self.backend.read().await?)
        .await?)
    }

    async fn complete_passkey_login(
        &self,
        tx_id: &str,
        account_id: &str,
        facts_json: &str,
        used: &PasskeyUse<'_>,
        now: i64,
    ) -> Result<PasskeyLoginOutcome> {
        let mut db = self.begin().await?;
        let r = query(
            "UPDATE passkeys SET sign_count = $1, backup_state = $2, backup_eligible = $3,
               credential_json = $4, last_used_at = $5
             WHERE id = $6 AND account_id = $7 AND sign_count = $8 AND suspended_at IS NULL",
        )
        .bind(used.new_count)
        .bind(used.backup_state)
        .bind(used.backup_eligible)
        .bind(used.credential_json)
        .bind(now)
        .bind(used.id)
        .bind(account_id)
        .bind(used.seen_count)
        .execute(&mut db)
        .await?;
        if r.rows_affected() != 1 {
            db.rollback().await?;
            return Ok(PasskeyLoginOutcome::PasskeyChanged);
        }
        let r = query(
            "UPDATE transactions SET challenge_used = 1, status = 'authenticated',
               account_id = $1, facts_json = $2
             WHERE id = $3 AND status = 'pending' AND challenge_used = 0 AND expires_at > $4",
        )
        .bind(account_id)
        .bind(facts_json)
        .bind(tx_id)
        .bind(now)
        .execute(&mut db)
        .await?;
        if r.rows_affected() != 1 {
            db.rollback().await?;
            return Ok(PasskeyLoginOutcome::NotPending);
        }
        db.commit().await?;
        Ok(PasskeyLoginOutcome::Authenticated)
    }

    async fn create_device_grant(&self, g: &DeviceGrantRecord, per_client: i64) -> Result<bool> {
        Ok(query(
            "INSERT INTO device_grants (id, device_code_hash, user_code, client_id, request_json,
               created_at, expires_at, poll_interval, status)
             SELECT $1,$2,$3,$4,$5,$6,$7,$8,$9
             WHERE (SELECT COUNT(*) FROM device_grants
                      WHERE client_id = $4 AND status = 'pending' AND expires_at > $6) < $10",
        )
        .bind(&g.id)
        .bind(&g.device_code_hash)
        .bind(&g.user_code)
        .bind(&g.client_id)
        .bind(&g.request_json)
        .bind(g.created_at)
        .bind(g.expires_at)
        .bind(g.poll_interval)
        .bind(&g.status)
        .bind(per_client)
        .execute(&mut self.backend.write().await?)
        .await?
        .rows_affected()
            == 1)
    }

    async fn device_grant(&self, id: &str) -> Result<Option<DeviceGrantRecord>> {
        Ok(query_as("SELECT * FROM device_grants WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut self.backend.read().await?)
            .await?)
    }

    async fn device_grant_by_user_code(
        &self,
        user_code: &str,
    ) -> Result<Option<DeviceGrantRecord>> {
        Ok(query_as("SELECT * FROM device_grants WHERE user_code = $1")
            .bind(user_code)
            .fetch_optional(&mut self.backend.read().await?)
            .await?)
    }

    async fn device_grant_by_device_code(
        &self,
        device_code_hash: &str,
    ) -> Result<Option<DeviceGrantRecord>> {
        Ok(
            query_as("SELECT * FROM device_grants WHERE device_code_hash = $1")
                .bind(device_code_hash)
                .fetch_optional(&mut self.backend.read().await?)
                .await?,
        )
    }

    async fn take_up_device_grant(&self, id: &str, browser_hash: &str, now: i64) -> Result<bool> {
        Ok(query(
            "UPDATE device_grants SET browser_hash = $1
             WHERE id = $2 AND status = 'pending' AND expires_at > $3",
        )
        .bind(browser_hash)
        .bind(id)
        .bind(now)
        .execute(&mut self.backend.write().await?)
        .await?
        .rows_affected()
            == 1)
    }

    async fn settle_device_grant(
        &self,
        id: &str,
        browser_hash: &str,
        code_hash: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        Ok(query(
            "UPDATE device_grants SET status = $1, code_hash = $2
             WHERE id = $3 AND browser_hash = $4 AND status = 'pending' AND expires_at > $5",
        )
        .bind(if code_hash.is_some() {
            "approved"
        } else {
            "denied"
        })
        .bind(code_hash)
        .bind(id)
        .bind(browser_hash)
        .bind(now)
        .execute(&mut self.backend.write().await?)
        .await?
        .rows_affected()
            == 1)
    }

    async fn record_device_poll(&self, id: &str, now: i64, slow_down: bool) -> Result<()> {
        query(
            "UPDATE device_grants SET last_poll_at = $1, poll_interval = poll_interval + $2
             WHERE id = $3",
        )
        .bind(now)
        .bind(if slow_down { 5 } else { 0 })
        .bind(id)
        .execute(&mut self.backend.write().await?)
        .await?;
        Ok(())
    }

    async fn redeem_device_grant(&self, id: &str) -> Result<bool> {
        Ok(query(
            "UPDATE device_grants SET status = 'redeemed' WHERE id = $1 AND status = 'approved'",
        )
        .bind(id)
        .execute(&mut self.backend.write().await?)
        .await?
        .rows_affected()
            == 1)
    }

    async fn user_code_failures(
        &self,
        source_hash: &str,
        window_start: i64,
        now: i64,
        add: bool,
    ) -> Result<i64> {
        if add {
            query(
                "INSERT INTO device_code_failures (source_hash, window_start, failures)
                 VALUES ($1, $2, 1)
                 ON CONFLICT (source_hash) DO UPDATE SET
                   failures = CASE WHEN device_code_failures.window_start < $3 THEN 1
                                   ELSE device_code_failures.failures + 1 END,
                   window_start = CASE WHEN device_code_failures.window_start < $3 THEN $2
                                       ELSE device_code_failures.window_start END",
            )
            .bind(source_hash)
            .bind(now)
            .bind(window_start)
            .execute(&mut self.backend.write().await?)
            .await?;
        }
        let n: Option<i64> = query_scalar(
            "SELECT failures FROM device_code_failures WHERE source_hash = $1 AND window_start >= $2",
        )
        .bind(source_hash)
        .bind(window_start)
        .fetch_optional(&mut self.backend.read().await?)
        .await?;
        Ok(n.unwrap_or(0))
    }

    async fn grants_of_session(&self, sid: &str) -> Result<Vec<GrantRecord>> {
        Ok(
            query_as("SELECT * FROM grants WHERE sid = $1 AND revoked_at IS NULL")
                .bind(sid)
                .fetch_all(&mut self.backend.read().await?)
                .await?,
        )
    }

    async fn end_session(&self, id_hash: &str, logouts: &[OutboxRecord]) -> Result<()> {
        let mut db = self.begin().await?;
        query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&mut db)
            .await?;
        queue(&mut db, logouts).await?;
        db.commit().await?;
        Ok(())
    }

    async fn signal_revoked_cert(
        &self,
        issuer: &str,
        serial: &str,
        revoke_grants: bool,
        signals: &[OutboxRecord],
        now: i64,
    ) -> Result<Option<String>> {
        let mut db = self.begin().await?;
        let account: Option<String> = query_scalar(
            "UPDATE cert_links SET revoked_at = $1
             WHERE issuer = $2 AND serial = $3 AND revoked_at IS NULL RETURNING account_id",
        )
        .bind(now)
        .bind(issuer)
        .bind(serial)
        .fetch_optional(&mut db)
        .await?;
        let Some(account) = account else {
            db.rollback().await?;
            return Ok(None);
        };
        query("DELETE FROM sessions WHERE account_id = $1")
            .bind(&account)
            .execute(&mut db)
            .await?;
        if revoke_grants {
            query(
                "UPDATE refresh_tokens SET used_at = $1 WHERE used_at IS NULL AND grant_id IN
                   (SELECT id FROM grants WHERE account_id = $2 AND revoked_at IS NULL)",
            )
            .bind(now)
            .bind(&account)
            .execute(&mut db)
            .await?;
            query("UPDATE grants SET revoked_at = $1 WHERE account_id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(&account)
                .execute(&mut db)
                .await?;
        }
        queue(&mut db, signals).await?;
        audit(
            &mut db,
            Some(&account),
            "certificate_revoked",
            &serde_json::json!({
                "issuer": issuer, "serial": serial, "grants_revoked": revoke_grants,
                "signals": signals.len(),
            }),
            now,
        )
        .await?;
        db.commit().await?;
        Ok(Some(account))
    }

    async fn linked_certs_of_anchor(
        &self,
        anchor: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<AnchoredLink>> {
        Ok(query_as(
            "SELECT anchor, issuer, serial, not_after FROM cert_links
             WHERE anchor = $1 AND serial > $2 AND revoked_at IS NULL
             ORDER BY serial LIMIT $3",
        )
        .bind(anchor)
        .bind(after)
        .bind(limit)
        .fetch_all(&mut self.backend.read().await?)
        .await?)
    }

    async fn insert_pushed_request(
        &self,
        r: &PushedRequestRecord,
        per_client: i64,
    ) -> Result<bool> {
        Ok(query(
            "INSERT INTO pushed_requests (id_hash, client_id, params_json, created_at, expires_at)
             SELECT $1,$2,$3,$4,$5
             WHERE (SELECT COUNT(*) FROM pushed_requests
                      WHERE client_id = $2 AND used_at IS NULL AND expires_at > $4) < $6",
        )
        .bind(&r.id_hash)
        .bind(&r.client_id)
        .bind(&r.params_json)
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(per_client)
        .execute(&mut self.backend.write().await?)
        .await?
        .rows_affected()
            == 1)
    }

    async fn take_pushed_request(
        &self,
        id_hash: &str,
        client_id: &str,
        now: i64,
    ) -> Result<std::result::Result<String, crate::oidc::par::Refusal>> {
        use crate::oidc::par::Refusal;
        let taken: Option<String> = query_scalar(
            "UPDATE pushed_requests SET used_at = $1
             WHERE id_hash = $2 AND client_id = $3 AND used_at IS NULL AND expires_at > $1
             RETURNING params_json",
        )
        .bind(now)
        .bind(id_hash)
        .bind(client_id)
        .fetch_optional(&mut self.backend.write().await?)
        .await?;
        if let Some(p) = taken {
            return Ok(Ok(p));
        }
        // Not taken: say why (a read; nothing is written).
        let r: Option<PushedRequestRecord> =
            query_as("SELECT * FROM pushed_requests WHERE id_hash = $1")
                .bind(id_hash)
                .fetch_optional(&mut self.backend.read().await?)
                .await?;
        Ok(Err(match r {
            None => Refusal::Unknown,
            Some(r) if r.client_id != client_id => Refusal::OtherClient,
            Some(r) if r.used_at.is_some() => Refusal::Used,
            Some(_) => Refusal::Expired,
        }))
    }

    async fn grants_of_account(&self, account_id: &str) -> Result<Vec<GrantRecord>> {
        Ok(
            query_as("SELECT * FROM grants WHERE account_id = $1 AND revoked_at IS NULL")
                .bind(account_id)
                .fetch_all(&mut self.backend.read().await?)
                .await?,
        )
    }

    async fn lease_logouts(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRecord>> {
        // The conditions stand in the outer WHERE too: PostgreSQL checks them again on a row
        // another process updated meanwhile, so two processes never lease one token.
        Ok(query_as(
            "UPDATE logout_outbox SET lease_until = $1, attempts = attempts + 1
             WHERE id IN (SELECT id FROM logout_outbox
                          WHERE delivered_at IS NULL AND failed_at IS NULL
                            AND next_attempt_at <= $2
                            AND (lease_until IS NULL OR lease_until < $2)
                          ORDER BY next_attempt_at LIMIT $3)
               AND delivered_at IS NULL AND failed_at IS NULL
               AND (lease_until IS NULL OR lease_until < $2)
             RETURNING *",
        )
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut self.backend.write().await?)
        .await?)
    }

    async fn settle_logout(
        &self,
        id: &str,
        now: i64,
        outcome: std::result::Result<(), (&str, Option<i64>)>,
    ) -> Result<()> {
        let q = match outcome {
            Ok(()) => query(
                "UPDATE logout_outbox SET delivered_at = $1, lease_until = NULL WHERE id = $2",
            )
            .bind(now)
            .bind(id),
            Err((why, Some(next))) => query(
                "UPDATE logout_outbox SET next_attempt_at = $1, last_error = $2, lease_until = NULL
                 WHERE id = $3",
            )
            .bind(next)
            .bind(why)
            .bind(id),
            Err((why, None)) => query(
                "UPDATE logout_outbox SET failed_at = $1, last_error = $2, lease_until = NULL
                 WHERE id = $3",
            )
            .bind(now)
            .bind(why)
            .bind(id),
        };
        q.execute(&mut self.backend.write().await?).await?;
        Ok(())
    }

    async fn pending_logouts(&self) -> Result<i64> {
        Ok(query_scalar(
            "SELECT COUNT(*) FROM logout_outbox WHERE delivered_at IS NULL AND failed_at IS NULL",
        )
        .fetch_one(&mut self.backend.read().await?)
        .await?)
    }

    async fn logout_outbox(&self) -> Result<Vec<OutboxRecord>> {
        Ok(
            query_as("SELECT * FROM logout_outbox ORDER BY created_at, id")
                .fetch_all(&mut self.backend.read().await?)
                .await?,
        )
    }

    async fn suspend_passkey(&self, id: &str, reason: &str, now: i64) -> Result<()> {
        let mut db = self.begin().await?;
        let account: Option<String> = query_scalar(
            "UPDATE passkeys SET suspended_at = $1, suspended_reason = $2
             WHERE id = $3 AND suspended_at IS NULL RETURNING account_id",
        )
        .bind(now)
        .bind(reason)
        .bind(id)
        .fetch_optional(&mut db)
        .await?;
        if let Some(a) = account {
            audit(
                &mut db,
                Some(&a),
                "passkey_suspended",
                &serde_json::json!({ "passkey": id, "reason": reason }),
                now,
            )
            .await?;
        }
        db.commit().await?;
        Ok(())
    }

    async fn rename_passkey(&self, account_id: &str, id: &str, name: &str) -> Result<bool> {
        Ok(
            query("UPDATE passkeys SET name = $1 WHERE id = $2 AND account_id = $3")
                .bind(name)
                .bind(id)
                .bind(account_id)
                .execute(&mut self.backend.write().await?)
                .await?
                .rows_affected()
                == 1,
        )
    }

    async fn remove_passkey(&self, account_id: &str, id: &str, now: i64) -> Result<bool> {
        let mut db = self.begin().await?;
        let r = query("DELETE FROM passkeys WHERE id = $1 AND account_id = $2")
            .bind(id)
            .bind(account_id)
            .execute(&mut db)
            .await?;
        if r.rows_affected() != 1 {
            db.rollback().await?;
            return Ok(false);
        }
        audit(
            &mut db,
            Some(account_id),
            "passkey_removed",
            &serde_json::json!({ "passkey": id }),
            now,
        )
        .await?;
        db.commit().await?;
        Ok(true)
    }

    async fn accounts_by_cert_pair(
        &self,
        a: (&str, &str),
        b: (&str, &str),
    ) -> Result<(Option<String>, Option<String>)> {
        let rows: Vec<LinkRow> = query_as(
            "SELECT issuer, serial, account_id FROM cert_links
             WHERE (issuer = $1 AND serial = $2) OR (issuer = $3 AND serial = $4)",
        )
        .bind(a.0)
        .bind(a.1)
        .bind(b.0)
        .bind(b.1)
        .fetch_all(&mut self.backend.read().await?)
        .await?;
        let of = |(issuer, serial): (&str, &str)| {
            rows.iter()
                .find(|r| r.issuer == issuer && r.serial == serial)
                .map(|r| r.account_id.clone())
        };
        Ok((of(a), of(b)))
    }

    async fn begin_proofing(
        &self,
        helper_hash: &str,
        nonce: &str,
        new_nonce: &str,
        new_expires_at: i64,
        pending: &crate::authn::ceremony::PendingAuth,
    ) -> Result<bool> {
        let pending_json = serde_json::to_string(pending)
            .map_err(|e| StoreError::Corrupt(format!("pending authentication: {e}")))?;
        let r = query(
            "UPDATE transactions SET stage = 'signature', challenge_nonce = $1,
               challenge_expires_at = $2, pending_json = $3
             WHERE helper_hash = $4 AND challenge_nonce = $5 AND challenge_used = 0
               AND status = 'pending' AND stage = 'user_auth'",
        )
        .bind(new_nonce)
        .bind(new_expires_at)
        .bind(&pending_json)
        .bind(helper_hash)
        .bind(nonce)
        .execute(&mut self.backend.write().await?)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn complete_proofing(
        &self,
        helper_hash: &str,
        nonce: &str,
        p: &Proofing,
        now: i64,
    ) -> Result<CardLoginOutcome> {
        use crate::authn::proofing::{LinkPlan, LinkReason};
        let mut db = self.begin().await?;
        if !claim_challenge(&mut db, helper_hash, nonce, "signature").await? {
            db.rollback().await?;
            return Ok(CardLoginOutcome::ChallengeUsed);
        }
        let (account_id, new_account, reasons) = match &p.plan {
            LinkPlan::New => {
                let id = uuid::Uuid::new_v4().to_string();
                query("INSERT INTO accounts (id, created_at) VALUES ($1, $2)")
                    .bind(&id)
                    .bind(now)
                    .execute(&mut db)
                    .await?;
                audit(
                    &mut db,
                    Some(&id),
                    "account_created",
                    &serde_json::json!({}),
                    now,
                )
                .await?;
                (id, true, [LinkReason::NewAccount, LinkReason::NewAccount])
            }
            LinkPlan::Existing {
                account_id,
                auth,
                sign,
            } => (account_id.clone(), false, [*auth, *sign]),
        };
        // Each certificate joins this account unless it is linked already — to this account
        // and no other. Links never move: one linked elsewhere meanwhile (another process
        // proofing at the same moment) undoes everything, the challenge included.
        for (link, reason) in [(&p.auth, reasons[0]), (&p.sign, reasons[1])] {
            if insert_link(&mut db, link, &account_id, now).await? {
                audit(
                    &mut db,
                    Some(&account_id),
                    "certificate_linked",
                    &serde_json::json!({
                        "certificate": link.kind, "issuer": link.issuer,
                        "serial": link.serial, "how": reason,
                    }),
                    now,
                )
                .await?;
            } else if linked_account(&mut db, link).await?.as_deref() != Some(&account_id) {
                db.rollback().await?;
                return Ok(CardLoginOutcome::LinkConflict);
            }
        }
        query(
            "INSERT INTO verified_claims (account_id, claims_json, evidence_json, verified_at,
               sign_issuer, sign_serial, sign_anchor, stale_since, stale_reason)
             VALUES ($1,$2,$3,$4,$5,$6,$7,NULL,NULL)
             ON CONFLICT (account_id) DO UPDATE SET claims_json = excluded.claims_json,
               evidence_json = excluded.evidence_json, verified_at = excluded.verified_at,
               sign_issuer = excluded.sign_issuer, sign_serial = excluded.sign_serial,
               sign_anchor = excluded.sign_anchor, stale_since = NULL, stale_reason = NULL",
        )
        .bind(&account_id)
        .bind(&p.claims_json)
        .bind(&p.evidence_json)
        .bind(now)
        .bind(&p.sign.issuer)
        .bind(&p.sign.serial)
        .bind(&p.sign_anchor)
        .execute(&mut db)
        .await?;
        audit(
            &mut db,
            Some(&account_id),
            "identity_proofed",
            &serde_json::json!({"issuer": p.sign.issuer, "serial": p.sign.serial}),
            now,
        )
        .await?;
        query(
            "UPDATE transactions SET status = 'authenticated', account_id = $1,
               facts_json = $2
             WHERE helper_hash = $3",
        )
        .bind(&account_id)
        .bind(&p.facts_json)
        .bind(helper_hash)
        .execute(&mut db)
        .await?;
        db.commit().await?;
        Ok(CardLoginOutcome::Authenticated {
            account_id,
            new_account,
        })
    }

    async fn verified_claims(&self, account_id: &str) -> Result<Option<VerifiedClaimsRecord>> {
        Ok(
            query_as("SELECT * FROM verified_claims WHERE account_id = $1")
                .bind(account_id)
                .fetch_optional(&mut self.backend.read().await?)
                .await?,
        )
    }

    async fn audit_events(&self, account_id: &str) -> Result<Vec<AuditEventRecord>> {
        Ok(query_as(
            "SELECT id, account_id, kind, detail_json, created_at FROM audit_events
             WHERE account_id = $1 ORDER BY id",
        )
        .bind(account_id)
        .fetch_all(&mut self.backend.read().await?)
        .await?)
    }

    async fn mark_claims_stale(
        &self,
        sign_issuer: &str,
        sign_serial: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool> {
        let r = query(
            "UPDATE verified_claims SET stale_since = $1, stale_reason = $2
             WHERE sign_issuer = $3 AND sign_serial = $4 AND stale_since IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(sign_issuer)
        .bind(sign_serial)
        .execute(&mut self.backend.write().await?)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn bind_tx_session(&self, tx_id: &str, session_hash: &str) -> Result<()> {
        query("UPDATE transactions SET session_hash = $1 WHERE id = $2")
            .bind(session_hash)
            .bind(tx_id)
            .execute(&mut self.backend.write().await?)
            .await?;
        Ok(())
    }

    async fn finish_tx(&self, f: Finish<'_>) -> Result<bool> {
        if f.session.is_none() {
            // One statement: no transaction needed.
            return finish_login(&mut self.backend.write().await?, f).await;
        }
        let mut db = self.begin().await?;
        if !finish_login(&mut db, f).await? {
            db.rollback().await?;
            return Ok(false);
        }
        db.commit().await?;
        Ok(true)
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<()> {
        insert_session(&mut self.backend.write().await?, s).await
    }

    async fn get_session(&self, id_hash: &str) -> Result<Option<SessionRecord>> {
        Ok(query_as("SELECT * FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .fetch_optional(&mut self.backend.read().await?)
            .await?)
    }

    async fn session_with_consent(
        &self,
        id_hash: &str,
        client_id: &str,
    ) -> Result<Option<(SessionRecord, Option<String>)>> {
        let row = query(
            "SELECT s.id_hash, s.account_id, s.created_at, s.expires_at, s.facts_json,
                    c.scope AS consented
             FROM sessions s LEFT JOIN consents c
               ON c.account_id = s.account_id AND c.client_id = $2
             WHERE s.id_hash = $1",
        )
        .bind(id_hash)
        .bind(client_id)
        .fetch_optional(&mut self.backend.read().await?)
        .await?;
        row.map(|r| Ok((SessionRecord::from_row(&r)?, r.try_get("consented")?)))
            .transpose()
    }

    async fn delete_session(&self, id_hash: &str) -> Result<()> {
        query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&mut self.backend.write().await?)
            .await?;
        Ok(())
    }

    async fn get_consent(&self, account_id: &str, client_id: &str) -> Result<Option<String>> {
        Ok(
            query_scalar("SELECT scope FROM consents WHERE account_id = $1 AND client_id = $2")
                .bind(account_id)
                .bind(client_id)
                .fetch_optional(&mut self.backend.read().await?)
                .await?,
        )
    }

    async fn put_consent(
        &self,
        account_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> Result<()> {
        query(
            "INSERT INTO consents (account_id, client_id, scope, granted_at) VALUES ($1,$2,$3,$4)
             ON CONFLICT (account_id, client_id) DO UPDATE SET scope = excluded.scope,
               granted_at = excluded.granted_at",
        )
        .bind(account_id)
        .bind(client_id)
        .bind(scope)
        .bind(now)
        .execute(&mut self.backend.write().await?)
        .await?;
        Ok(())
    }

    async fn insert_code(&self, c: &CodeRecord, finish: Option<Finish<'_>>) -> Result<bool> {
        let mut db = self.begin().await?;
        if let Some(f) = finish
            && !finish_login(&mut db, f).await?
        {
            db.rollback().await?;
            return Ok(false);
        }
        query(
            "INSERT INTO codes (code_hash, grant_id, client_id, account_id, data_json, expires_at, used_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7)",
        )
        .bind(&c.code_hash)
        .bind(&c.grant_id)
        .bind(&c.client_id)
        .bind(&c.account_id)
        .bind(&c.data_json)
        .bind(c.expires_at)
        .bind(c.used_at)
        .execute(&mut db)
        .await?;
        db.commit().await?;
        Ok(true)
    }

    async fn get_code(&self, code_hash: &str) -> Result<Option<CodeRecord>> {
        Ok(query_as(FIND_CODE)
            .bind(code_hash)
            .fetch_optional(&mut self.backend.read().await?)
            .await?)
    }

    async fn redeem_code_with_grant(
        &self,
        code_hash: &str,
        g: &GrantRecord,
        refresh: Option<&RefreshRecord>,
        now: i64,
    ) -> Result<Redeem<CodeRecord>> {
        let mut db = self.begin().await?;
        let code = match spend(&mut db, SPEND_CODE, FIND_CODE, code_hash, now).await? {
            Redeem::Fresh(c) => c,
            other => {
                db.rollback().await?;
                return Ok(other);
            }
        };
        query(
            "INSERT INTO grants (id, client_id, account_id, scope, created_at, revoked_at, claims_json, sid)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
        )
        .bind(&g.id)
        .bind(&g.client_id)
        .bind(&g.account_id)
        .bind(&g.scope)
        .bind(g.created_at)
        .bind(g.revoked_at)
        .bind(&g.claims_json)
        .bind(&g.sid)
        .execute(&mut db)
        .await?;
        if let Some(r) = refresh {
            insert_refresh_row(&mut db, r).await?;
        }
        db.commit().await?;
        Ok(Redeem::Fresh(code))
    }

    async fn get_grant(&self, id: &str) -> Result<Option<GrantRecord>> {
        Ok(query_as("SELECT * FROM grants WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut self.backend.read().await?)
            .await?)
    }

    async fn revoke_grant(&self, id: &str, now: i64) -> Result<()> {
        let mut db = self.begin().await?;
        query("UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut db)
            .await?;
        query("UPDATE refresh_tokens SET used_at = $1 WHERE grant_id = $2 AND used_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut db)
            .await?;
        db.commit().await?;
        Ok(())
    }

    async fn get_refresh(&self, token_hash: &str) -> Result<Option<RefreshRecord>> {
        Ok(query_as(FIND_REFRESH)
            .bind(token_hash)
            .fetch_optional(&mut self.backend.read().await?)
            .await?)
    }

    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new: &RefreshRecord,
        now: i64,
    ) -> Result<Redeem<RefreshRecord>> {
        let mut db = self.begin().await?;
        let old = match spend(&mut db, SPEND_REFRESH, FIND_REFRESH, old_hash, now).await? {
            Redeem::Fresh(r) => r,
            other => {
                db.rollback().await?;
                return Ok(other);
            }
        };
        insert_refresh_row(&mut db, new).await?;
        db.commit().await?;
        Ok(Redeem::Fresh(old))
    }

    async fn claim_assertion_jti(
        &self,
        client_id: &str,
        jti_hash: &str,
        keep_until: i64,
    ) -> Result<bool> {
        Ok(query(
            "INSERT INTO client_assertion_jtis (client_id, jti_hash, expires_at)
             VALUES ($1, $2, $3) ON CONFLICT (client_id, jti_hash) DO NOTHING",
        )
        .bind(client_id)
        .bind(jti_hash)
        .bind(keep_until)
        .execute(&mut self.backend.write().await?)
        .await?
        .rows_affected()
            == 1)
    }

    async fn revoke_jti(&self, jti: &str, expires_at: i64) -> Result<()> {
        query("INSERT INTO revoked_jti (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(jti)
            .bind(expires_at)
            .execute(&mut self.backend.write().await?)
            .await?;
        Ok(())
    }

    async fn is_jti_revoked(&self, jti: &str) -> Result<bool> {
        let r: Option<i64> = query_scalar("SELECT 1 FROM revoked_jti WHERE jti = $1")
            .bind(jti)
            .fetch_optional(&mut self.backend.read().await?)
            .await?;
        Ok(r.is_some())
    }

    async fn live_grant(&self, id: &str, jti: &str) -> Result<Option<GrantRecord>> {
        Ok(query_as(
            "SELECT * FROM grants WHERE id = $1 AND revoked_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM revoked_jti WHERE jti = $2)",
        )
        .bind(id)
        .bind(jti)
        .fetch_optional(&mut self.backend.read().await?)
        .await?)
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        Ok(
            query_as("SELECT * FROM signing_keys ORDER BY activate_at, created_at, kid")
                .fetch_all(&mut self.backend.read().await?)
                .await?,
        )
    }

    async fn insert_first_signing_key(&self, k: &SigningKeyRecord, now: i64) -> Result<bool> {
        let mut db = self.begin().await?;
        // A marker row per algorithm serialises processes starting together: each updates it
        // (PostgreSQL row lock; SQLite holds its write lock already) before looking.
        let marker = format!("signing_key_lock:{}", k.alg);
        query("INSERT INTO secrets (name, value) VALUES ($1, '') ON CONFLICT DO NOTHING")
            .bind(&marker)
            .execute(&mut db)
            .await?;
        query("UPDATE secrets SET value = $2 WHERE name = $1")
            .bind(&marker)
            .bind(&k.kid)
            .execute(&mut db)
            .await?;
        let active: Option<i64> = query_scalar(
            "SELECT 1 FROM signing_keys WHERE alg = $1 AND activate_at <= $2
               AND (retire_at IS NULL OR retire_at > $2)",
        )
        .bind(&k.alg)
        .bind(now)
        .fetch_optional(&mut db)
        .await?;
        if active.is_some() {
            db.rollback().await?;
            return Ok(false);
        }
        insert_key(&mut db, k).await?;
        db.commit().await?;
        Ok(true)
    }

    async fn rotate_signing_key(
        &self,
        next: &SigningKeyRecord,
        retire_at: i64,
        now: i64,
    ) -> Result<RotateOutcome> {
        let mut db = self.begin().await?;
        // Lock out a concurrent rotation of the same algorithm (PostgreSQL row locks; SQLite
        // holds its write lock already).
        query("UPDATE signing_keys SET status = status WHERE alg = $1")
            .bind(&next.alg)
            .execute(&mut db)
            .await?;
        let pending = query(
            "SELECT kid, activate_at FROM signing_keys WHERE alg = $1 AND activate_at > $2
             ORDER BY activate_at LIMIT 1",
        )
        .bind(&next.alg)
        .bind(now)
        .fetch_optional(&mut db)
        .await?;
        if let Some(r) = pending {
            db.rollback().await?;
            return Ok(RotateOutcome::AlreadyPending {
                kid: r.try_get("kid")?,
                activate_at: r.try_get("activate_at")?,
            });
        }
        query("UPDATE signing_keys SET retire_at = $1 WHERE alg = $2 AND retire_at IS NULL")
            .bind(retire_at)
            .bind(&next.alg)
            .execute(&mut db)
            .await?;
        insert_key(&mut db, next).await?;
        db.commit().await?;
        Ok(RotateOutcome::Rotated)
    }

    async fn post_event(&self, kind: &str, payload: &str, now: i64) -> Result<i64> {
        query_scalar(
            "INSERT INTO broker_events (kind, payload, created_at) VALUES ($1, $2, $3)
             RETURNING id",
        )
        .bind(kind)
        .bind(payload)
        .bind(now)
        .fetch_one(&mut self.backend.write().await?)
        .await
    }

    async fn events_since(&self, since: i64, after_id: i64) -> Result<Vec<EventRecord>> {
        Ok(query_as(
            "SELECT id, kind, payload, created_at FROM broker_events
             WHERE created_at >= $1 OR id > $2 ORDER BY id",
        )
        .bind(since)
        .bind(after_id)
        .fetch_all(&mut self.backend.read().await?)
        .await?)
    }

    async fn secret(&self, name: &str, candidate: &str) -> Result<String> {
        query("INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(candidate)
            .execute(&mut self.backend.write().await?)
            .await?;
        Ok(query_scalar("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&mut self.backend.read().await?)
            .await?)
    }

    async fn counts(&self) -> Result<Counts> {
        let row = query(
            "SELECT (SELECT COUNT(*) FROM accounts) AS accounts,
                    (SELECT COUNT(*) FROM cert_links) AS cert_links,
                    (SELECT COUNT(*) FROM sessions) AS sessions,
                    (SELECT COUNT(*) FROM codes) AS codes,
                    (SELECT COUNT(*) FROM grants) AS grants,
                    (SELECT COUNT(*) FROM refresh_tokens) AS refresh_tokens,
                    (SELECT COUNT(*) FROM consents) AS consents,
                    (SELECT COUNT(*) FROM verified_claims) AS verified_claims,
                    (SELECT COUNT(*) FROM signature_verifications) AS signature_verifications,
                    (SELECT COUNT(*) FROM passkeys) AS passkeys,
                    (SELECT COUNT(*) FROM webauthn_ceremonies) AS webauthn_ceremonies,
                    (SELECT COUNT(*) FROM device_grants) AS device_grants,
                    (SELECT COUNT(*) FROM pushed_requests) AS pushed_requests",
        )
        .fetch_one(&mut self.backend.read().await?)
        .await?;
        Ok(Counts {
            accounts: row.try_get("accounts")?,
            cert_links: row.try_get("cert_links")?,
            sessions: row.try_get("sessions")?,
            codes: row.try_get("codes")?,
            grants: row.try_get("grants")?,
            refresh_tokens: row.try_get("refresh_tokens")?,
            consents: row.try_get("consents")?,
            verified_claims: row.try_get("verified_claims")?,
            signature_verifications: row.try_get("signature_verifications")?,
            passkeys: row.try_get("passkeys")?,
            webauthn_ceremonies: row.try_get("webauthn_ceremonies")?,
            device_grants: row.try_get("device_grants")?,
            pushed_requests: row.try_get("pushed_requests")?,
        })
    }

    async fn purge_expired(&self, now: i64) -> Result<u64> {
        let mut n = 0;
        for (q, grace) in [
            // Unauthenticated requests create these: they go as soon as they expire.
            ("DELETE FROM transactions WHERE expires_at < $1", 0),
            ("DELETE FROM client_assertion_jtis WHERE expires_at < $1", 0),
            ("DELETE FROM webauthn_ceremonies WHERE expires_at < $1", 0),
            // A used or expired request_uri is refused as such for an hour, then unknown.
            (
                "DELETE FROM pushed_requests WHERE expires_at < $1",
                EXPIRED_GRACE,
            ),
            // Delivered or given-up logout tokens are kept a week (what was sent, when).
            (
                "DELETE FROM logout_outbox WHERE COALESCE(delivered_at, failed_at) < $1",
                7 * 24 * 3600,
            ),
            // A device polling after expiry hears expired_token for an hour, then its code
            // is unknown.
            (
                "DELETE FROM device_grants WHERE expires_at < $1",
                EXPIRED_GRACE,
            ),
            (
                "DELETE FROM device_code_failures WHERE window_start < $1",
                EXPIRED_GRACE,
            ),
            // A replay of these meets its record (and revokes what it produced) for an hour.
            ("DELETE FROM codes WHERE expires_at < $1", EXPIRED_GRACE),
            ("DELETE FROM sessions WHERE expires_at < $1", EXPIRED_GRACE),
            (
                "DELETE FROM refresh_tokens WHERE expires_at < $1",
                EXPIRED_GRACE,
            ),
            (
                "DELETE FROM revoked_jti WHERE expires_at < $1",
                EXPIRED_GRACE,
            ),
            (
                "DELETE FROM signing_keys WHERE retire_at < $1",
                EXPIRED_GRACE,
            ),
            (
                "DELETE FROM broker_events WHERE created_at < $1",
                2 * EXPIRED_GRACE,
            ),
        ] {
            n += query(q)
                .bind(now - grace)
                .execute(&mut self.backend.write().await?)
                .await?
                .rows_affected();
        }
        Ok(n)
    }

    async fn insert_verifications(&self, records: &[VerificationRecord]) -> Result<()> {
        let mut db = self.begin().await?;
        for r in records {
            query(
                "INSERT INTO signature_verifications (id, client_id, document_sha256, verdict,
                   reasons_json, cert_issuer, cert_serial, revocation_json, created_at, retain_until)
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
            )
            .bind(&r.id)
            .bind(&r.client_id)
            .bind(&r.document_sha256)
            .bind(&r.verdict)
            .bind(&r.reasons_json)
            .bind(&r.cert_issuer)
            .bind(&r.cert_serial)
            .bind(&r.revocation_json)
            .bind(r.created_at)
            .bind(r.retain_until)
            .execute(&mut db)
            .await?;
        }
        db.commit().await?;
        Ok(())
    }

    async fn get_verification(&self, id: &str) -> Result<Option<VerificationRecord>> {
        Ok(
            query_as("SELECT * FROM signature_verifications WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut self.backend.read().await?)
                .await?,
        )
    }

    async fn purge_verifications(&self, before: i64) -> Result<u64> {
        Ok(
            query("DELETE FROM signature_verifications WHERE retain_until < $1")
                .bind(before)
                .execute(&mut self.backend.write().await?)
                .await?
                .rows_affected(),
        )
    }
}

async fn insert_key(db: &mut (impl Exec + ?Sized), k: &SigningKeyRecord) -> Result<()> {
    query(
        "INSERT INTO signing_keys (kid, alg, private_pem, created_at, status, activate_at,
           retire_at) VALUES ($1,$2,$3,$4,$5,$6,$7)",
    )
    .bind(&k.kid)
    .bind(&k.alg)
    .bind(&k.private_pem)
    .bind(k.created_at)
    .bind(&k.status)
    .bind(k.activate_at)
    .bind(k.retire_at)
    .execute(&mut *db)
    .await?;
    Ok(())
}

async fn insert_refresh_row(db: &mut (impl Exec + ?Sized), r: &RefreshRecord) -> Result<()> {
    query(
        "INSERT INTO refresh_tokens (token_hash, grant_id, data_json, created_at, expires_at, used_at)
         VALUES ($1,$2,$3,$4,$5,$6)",
    )
    .bind(&r.token_hash)
    .bind(&r.grant_id)
    .bind(&r.data_json)
    .bind(r.created_at)
    .bind(r.expires_at)
    .bind(r.used_at)
    .execute(&mut *db)
    .await?;
    Ok(())
}
