//! SQLite implementation of [`Store`]: one file, WAL, the embedded default.

use super::*;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

pub struct SqliteStore {
    pool: SqlitePool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

impl SqliteStore {
    /// Open (creating if missing) and migrate the database at `url` (`sqlite://PATH`).
    pub async fn connect(url: &str) -> Result<SqliteStore> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Db(format!("migration: {e}")))?;
        Ok(SqliteStore { pool })
    }
}

fn tx_from_row(r: &SqliteRow) -> Result<TxRecord> {
    Ok(TxRecord {
        id: r.try_get("id")?,
        browser_hash: r.try_get("browser_hash")?,
        helper_hash: r.try_get("helper_hash")?,
        client_id: r.try_get("client_id")?,
        request_json: r.try_get("request_json")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        status: TxStatus::parse(r.try_get::<&str, _>("status")?)?,
        challenge_nonce: r.try_get("challenge_nonce")?,
        challenge_expires_at: r.try_get("challenge_expires_at")?,
        challenge_used: r.try_get::<i64, _>("challenge_used")? != 0,
        binding_code: r.try_get("binding_code")?,
        csrf: r.try_get("csrf")?,
        account_id: r.try_get("account_id")?,
        facts_json: r.try_get("facts_json")?,
        session_hash: r.try_get("session_hash")?,
        stage: r.try_get("stage")?,
        pending_json: r.try_get("pending_json")?,
    })
}

fn code_from_row(r: &SqliteRow) -> Result<CodeRecord> {
    Ok(CodeRecord {
        code_hash: r.try_get("code_hash")?,
        grant_id: r.try_get("grant_id")?,
        client_id: r.try_get("client_id")?,
        account_id: r.try_get("account_id")?,
        data_json: r.try_get("data_json")?,
        expires_at: r.try_get("expires_at")?,
        used_at: r.try_get("used_at")?,
    })
}

fn refresh_from_row(r: &SqliteRow) -> Result<RefreshRecord> {
    Ok(RefreshRecord {
        token_hash: r.try_get("token_hash")?,
        grant_id: r.try_get("grant_id")?,
        data_json: r.try_get("data_json")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        used_at: r.try_get("used_at")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_tx(&self, t: &TxRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO transactions (id, browser_hash, helper_hash, client_id, request_json,
               created_at, expires_at, status, challenge_nonce, challenge_expires_at,
               challenge_used, binding_code, csrf, account_id, facts_json, session_hash,
               stage, pending_json)
             VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
        .bind(&t.stage)
        .bind(&t.pending_json)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_tx(&self, id: &str) -> Result<Option<TxRecord>> {
        sqlx::query("SELECT * FROM transactions WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(tx_from_row)
            .transpose()
    }

    async fn get_tx_by_helper(&self, helper_hash: &str) -> Result<Option<TxRecord>> {
        sqlx::query("SELECT * FROM transactions WHERE helper_hash = ?")
            .bind(helper_hash)
            .fetch_optional(&self.pool)
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
        facts_json: &str,
        now: i64,
    ) -> Result<CardLoginOutcome> {
        let mut db = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let used: Option<i64> = sqlx::query_scalar(
            "SELECT challenge_used FROM transactions
             WHERE helper_hash = ? AND challenge_nonce = ? AND status = 'pending'
               AND stage = 'user_auth'",
        )
        .bind(helper_hash)
        .bind(nonce)
        .fetch_optional(&mut *db)
        .await?;
        if used != Some(0) {
            return Ok(CardLoginOutcome::ChallengeUsed);
        }
        let existing: Option<String> =
            sqlx::query_scalar("SELECT account_id FROM cert_links WHERE issuer = ? AND serial = ?")
                .bind(&cert.issuer)
                .bind(&cert.serial)
                .fetch_optional(&mut *db)
                .await?;
        let (account_id, new_account) = match existing {
            Some(a) => (a, false),
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                sqlx::query("INSERT INTO accounts (id, created_at) VALUES (?, ?)")
                    .bind(&id)
                    .bind(now)
                    .execute(&mut *db)
                    .await?;
                sqlx::query(
                    "INSERT INTO cert_links (issuer, serial, kind, account_id, not_after, linked_at)
                     VALUES (?,?,?,?,?,?)",
                )
                .bind(&cert.issuer)
                .bind(&cert.serial)
                .bind(&cert.kind)
                .bind(&id)
                .bind(cert.not_after)
                .bind(now)
                .execute(&mut *db)
                .await?;
                (id, true)
            }
        };
        sqlx::query(
            "UPDATE transactions SET challenge_used = 1, status = 'authenticated',
               account_id = ?, facts_json = ?
             WHERE helper_hash = ? AND challenge_used = 0",
        )
        .bind(&account_id)
        .bind(facts_json)
        .bind(helper_hash)
        .execute(&mut *db)
        .await?;
        db.commit().await?;
        Ok(CardLoginOutcome::Authenticated {
            account_id,
            new_account,
        })
    }

    async fn account_by_cert(&self, issuer: &str, serial: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT account_id FROM cert_links WHERE issuer = ? AND serial = ?")
                .bind(issuer)
                .bind(serial)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn begin_proofing(
        &self,
        helper_hash: &str,
        nonce: &str,
        new_nonce: &str,
        new_expires_at: i64,
        pending_json: &str,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE transactions SET stage = 'signature', challenge_nonce = ?,
               challenge_expires_at = ?, pending_json = ?
             WHERE helper_hash = ? AND challenge_nonce = ? AND challenge_used = 0
               AND status = 'pending' AND stage = 'user_auth'",
        )
        .bind(new_nonce)
        .bind(new_expires_at)
        .bind(pending_json)
        .bind(helper_hash)
        .bind(nonce)
        .execute(&self.pool)
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
        let mut db = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let used: Option<i64> = sqlx::query_scalar(
            "SELECT challenge_used FROM transactions
             WHERE helper_hash = ? AND challenge_nonce = ? AND status = 'pending'
               AND stage = 'signature'",
        )
        .bind(helper_hash)
        .bind(nonce)
        .fetch_optional(&mut *db)
        .await?;
        if used != Some(0) {
            return Ok(CardLoginOutcome::ChallengeUsed);
        }
        let linked = |c: &CertLink| {
            sqlx::query_scalar::<_, String>(
                "SELECT account_id FROM cert_links WHERE issuer = ? AND serial = ?",
            )
            .bind(c.issuer.clone())
            .bind(c.serial.clone())
        };
        let by_auth = linked(&p.auth).fetch_optional(&mut *db).await?;
        let by_sign = linked(&p.sign).fetch_optional(&mut *db).await?;
        let (account_id, new_account) = match by_auth.or(by_sign).or(p.renewal_of.clone()) {
            Some(a) => (a, false),
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                sqlx::query("INSERT INTO accounts (id, created_at) VALUES (?, ?)")
                    .bind(&id)
                    .bind(now)
                    .execute(&mut *db)
                    .await?;
                (id, true)
            }
        };
        for c in [&p.auth, &p.sign] {
            sqlx::query(
                "INSERT INTO cert_links (issuer, serial, kind, account_id, not_after, linked_at)
                 VALUES (?,?,?,?,?,?)
                 ON CONFLICT (issuer, serial) DO UPDATE SET account_id = excluded.account_id",
            )
            .bind(&c.issuer)
            .bind(&c.serial)
            .bind(&c.kind)
            .bind(&account_id)
            .bind(c.not_after)
            .bind(now)
            .execute(&mut *db)
            .await?;
        }
        sqlx::query(
            "INSERT INTO verified_claims (account_id, claims_json, evidence_json, verified_at,
               sign_issuer, sign_serial, sign_anchor, stale_since, stale_reason)
             VALUES (?,?,?,?,?,?,?,NULL,NULL)
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
        .execute(&mut *db)
        .await?;
        sqlx::query(
            "UPDATE transactions SET challenge_used = 1, status = 'authenticated',
               account_id = ?, facts_json = ?, pending_json = NULL
             WHERE helper_hash = ? AND challenge_used = 0",
        )
        .bind(&account_id)
        .bind(&p.facts_json)
        .bind(helper_hash)
        .execute(&mut *db)
        .await?;
        db.commit().await?;
        Ok(CardLoginOutcome::Authenticated {
            account_id,
            new_account,
        })
    }

    async fn verified_claims(&self, account_id: &str) -> Result<Option<VerifiedClaimsRecord>> {
        let row = sqlx::query("SELECT * FROM verified_claims WHERE account_id = ?")
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(VerifiedClaimsRecord {
                account_id: r.try_get("account_id")?,
                claims_json: r.try_get("claims_json")?,
                evidence_json: r.try_get("evidence_json")?,
                verified_at: r.try_get("verified_at")?,
                sign_issuer: r.try_get("sign_issuer")?,
                sign_serial: r.try_get("sign_serial")?,
                sign_anchor: r.try_get("sign_anchor")?,
                stale_since: r.try_get("stale_since")?,
                stale_reason: r.try_get("stale_reason")?,
            })
        })
        .transpose()
    }

    async fn mark_claims_stale(
        &self,
        sign_issuer: &str,
        sign_serial: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE verified_claims SET stale_since = ?, stale_reason = ?
             WHERE sign_issuer = ? AND sign_serial = ? AND stale_since IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(sign_issuer)
        .bind(sign_serial)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn bind_tx_session(&self, tx_id: &str, session_hash: &str) -> Result<()> {
        sqlx::query("UPDATE transactions SET session_hash = ? WHERE id = ?")
            .bind(session_hash)
            .bind(tx_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn finish_tx(&self, tx_id: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE transactions SET status = 'done' WHERE id = ? AND status != 'done'",
        )
        .bind(tx_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, account_id, created_at, expires_at, facts_json)
             VALUES (?,?,?,?,?)",
        )
        .bind(&s.id_hash)
        .bind(&s.account_id)
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(&s.facts_json)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_session(&self, id_hash: &str) -> Result<Option<SessionRecord>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE id_hash = ?")
            .bind(id_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(SessionRecord {
                id_hash: r.try_get("id_hash")?,
                account_id: r.try_get("account_id")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
                facts_json: r.try_get("facts_json")?,
            })
        })
        .transpose()
    }

    async fn delete_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = ?")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_consent(&self, account_id: &str, client_id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT scope FROM consents WHERE account_id = ? AND client_id = ?")
                .bind(account_id)
                .bind(client_id)
                .fetch_optional(&self.pool)
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
        sqlx::query(
            "INSERT INTO consents (account_id, client_id, scope, granted_at) VALUES (?,?,?,?)
             ON CONFLICT (account_id, client_id) DO UPDATE SET scope = excluded.scope,
               granted_at = excluded.granted_at",
        )
        .bind(account_id)
        .bind(client_id)
        .bind(scope)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn insert_code(&self, c: &CodeRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO codes (code_hash, grant_id, client_id, account_id, data_json, expires_at, used_at)
             VALUES (?,?,?,?,?,?,?)",
        )
        .bind(&c.code_hash)
        .bind(&c.grant_id)
        .bind(&c.client_id)
        .bind(&c.account_id)
        .bind(&c.data_json)
        .bind(c.expires_at)
        .bind(c.used_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn redeem_code(&self, code_hash: &str, now: i64) -> Result<Redeem<CodeRecord>> {
        let row = sqlx::query(
            "UPDATE codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL RETURNING *",
        )
        .bind(now)
        .bind(code_hash)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(r) = row {
            return Ok(Redeem::Fresh(code_from_row(&r)?));
        }
        let row = sqlx::query("SELECT * FROM codes WHERE code_hash = ?")
            .bind(code_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Redeem::Replayed(code_from_row(&r)?),
            None => Redeem::NotFound,
        })
    }

    async fn create_grant(&self, g: &GrantRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO grants (id, client_id, account_id, scope, created_at, revoked_at, claims_json)
             VALUES (?,?,?,?,?,?,?)",
        )
        .bind(&g.id)
        .bind(&g.client_id)
        .bind(&g.account_id)
        .bind(&g.scope)
        .bind(g.created_at)
        .bind(g.revoked_at)
        .bind(&g.claims_json)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_grant(&self, id: &str) -> Result<Option<GrantRecord>> {
        let row = sqlx::query("SELECT * FROM grants WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(GrantRecord {
                id: r.try_get("id")?,
                client_id: r.try_get("client_id")?,
                account_id: r.try_get("account_id")?,
                scope: r.try_get("scope")?,
                created_at: r.try_get("created_at")?,
                revoked_at: r.try_get("revoked_at")?,
                claims_json: r.try_get("claims_json")?,
            })
        })
        .transpose()
    }

    async fn revoke_grant(&self, id: &str, now: i64) -> Result<()> {
        let mut db = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("UPDATE grants SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *db)
            .await?;
        sqlx::query("UPDATE refresh_tokens SET used_at = ? WHERE grant_id = ? AND used_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *db)
            .await?;
        db.commit().await?;
        Ok(())
    }

    async fn insert_refresh(&self, r: &RefreshRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, grant_id, data_json, created_at, expires_at, used_at)
             VALUES (?,?,?,?,?,?)",
        )
        .bind(&r.token_hash)
        .bind(&r.grant_id)
        .bind(&r.data_json)
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(r.used_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_refresh(&self, token_hash: &str) -> Result<Option<RefreshRecord>> {
        sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(refresh_from_row)
            .transpose()
    }

    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new: &RefreshRecord,
        now: i64,
    ) -> Result<Redeem<RefreshRecord>> {
        let mut db = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(
            "UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL RETURNING *",
        )
        .bind(now)
        .bind(old_hash)
        .fetch_optional(&mut *db)
        .await?;
        let Some(row) = row else {
            let old = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = ?")
                .bind(old_hash)
                .fetch_optional(&mut *db)
                .await?;
            db.rollback().await?;
            return Ok(match old {
                Some(r) => Redeem::Replayed(refresh_from_row(&r)?),
                None => Redeem::NotFound,
            });
        };
        let old = refresh_from_row(&row)?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, grant_id, data_json, created_at, expires_at, used_at)
             VALUES (?,?,?,?,?,?)",
        )
        .bind(&new.token_hash)
        .bind(&new.grant_id)
        .bind(&new.data_json)
        .bind(new.created_at)
        .bind(new.expires_at)
        .bind(new.used_at)
        .execute(&mut *db)
        .await?;
        db.commit().await?;
        Ok(Redeem::Fresh(old))
    }

    async fn revoke_jti(&self, jti: &str, expires_at: i64) -> Result<()> {
        sqlx::query("INSERT OR IGNORE INTO revoked_jti (jti, expires_at) VALUES (?, ?)")
            .bind(jti)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn is_jti_revoked(&self, jti: &str) -> Result<bool> {
        let r: Option<i64> = sqlx::query_scalar("SELECT 1 FROM revoked_jti WHERE jti = ?")
            .bind(jti)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.is_some())
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, kid")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SigningKeyRecord {
                    kid: r.try_get("kid")?,
                    alg: r.try_get("alg")?,
                    private_pem: r.try_get("private_pem")?,
                    created_at: r.try_get("created_at")?,
                    status: r.try_get("status")?,
                })
            })
            .collect()
    }

    async fn insert_signing_key(&self, k: &SigningKeyRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_pem, created_at, status) VALUES (?,?,?,?,?)",
        )
        .bind(&k.kid)
        .bind(&k.alg)
        .bind(&k.private_pem)
        .bind(k.created_at)
        .bind(&k.status)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn secret(&self, name: &str, candidate: &str) -> Result<String> {
        sqlx::query("INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)")
            .bind(name)
            .bind(candidate)
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM secrets WHERE name = ?")
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn counts(&self) -> Result<Counts> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM accounts) AS accounts,
                    (SELECT COUNT(*) FROM cert_links) AS cert_links,
                    (SELECT COUNT(*) FROM sessions) AS sessions,
                    (SELECT COUNT(*) FROM codes) AS codes,
                    (SELECT COUNT(*) FROM grants) AS grants,
                    (SELECT COUNT(*) FROM refresh_tokens) AS refresh_tokens,
                    (SELECT COUNT(*) FROM consents) AS consents,
                    (SELECT COUNT(*) FROM verified_claims) AS verified_claims,
                    (SELECT COUNT(*) FROM signature_verifications) AS signature_verifications",
        )
        .fetch_one(&self.pool)
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
        })
    }

    async fn purge_expired(&self, before: i64) -> Result<u64> {
        let mut n = 0;
        for q in [
            "DELETE FROM transactions WHERE expires_at < ?",
            "DELETE FROM codes WHERE expires_at < ?",
            "DELETE FROM sessions WHERE expires_at < ?",
            "DELETE FROM refresh_tokens WHERE expires_at < ?",
            "DELETE FROM revoked_jti WHERE expires_at < ?",
        ] {
            n += sqlx::query(q)
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(n)
    }

    async fn insert_verifications(&self, records: &[VerificationRecord]) -> Result<()> {
        let mut db = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for r in records {
            sqlx::query(
                "INSERT INTO signature_verifications (id, client_id, document_sha256, verdict,
                   reasons_json, cert_issuer, cert_serial, revocation_json, created_at, retain_until)
                 VALUES (?,?,?,?,?,?,?,?,?,?)",
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
            .execute(&mut *db)
            .await?;
        }
        db.commit().await?;
        Ok(())
    }

    async fn get_verification(&self, id: &str) -> Result<Option<VerificationRecord>> {
        let row = sqlx::query("SELECT * FROM signature_verifications WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(VerificationRecord {
                id: r.try_get("id")?,
                client_id: r.try_get("client_id")?,
                document_sha256: r.try_get("document_sha256")?,
                verdict: r.try_get("verdict")?,
                reasons_json: r.try_get("reasons_json")?,
                cert_issuer: r.try_get("cert_issuer")?,
                cert_serial: r.try_get("cert_serial")?,
                revocation_json: r.try_get("revocation_json")?,
                created_at: r.try_get("created_at")?,
                retain_until: r.try_get("retain_until")?,
            })
        })
        .transpose()
    }

    async fn purge_verifications(&self, before: i64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM signature_verifications WHERE retain_until < ?")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}
