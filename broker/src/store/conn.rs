//! Connections of [`super::sql::SqlStore`]: sqlx's pool for PostgreSQL; for SQLite, a fixed set
//! of connections of our own — readers, and one writer.
//!
//! Why not sqlx's pool for SQLite: it pings every connection it takes back (sqlx-core
//! `Floating::return_to_pool`), and a SQLite connection lives on a worker thread, so every
//! query cost a second thread round trip — on one core, two more context switches per query —
//! and the one write connection stayed busy for that ping after each statement. A SQLite
//! connection is a file handle: it cannot go stale, so there is nothing to check. One writer:
//! SQLite admits one writer at a time, and writers queueing here (in order, without blocking a
//! thread) replace writers racing for the file lock in SQLite's busy handler, which sleeps.

use sqlx::AnyConnection;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Connection, Executor};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

type SqlResult<T> = std::result::Result<T, sqlx::Error>;

/// A SQLite connection and whether a transaction was left open on it (a [`Tx`] dropped
/// before commit or rollback, e.g. by an error): rolled back before the next use.
pub(super) struct LiteConn {
    conn: AnyConnection,
    dirty: bool,
}

/// SQLite's connections.
pub(super) struct Lite {
    readers: Vec<Arc<Mutex<LiteConn>>>,
    next: AtomicUsize,
    writer: Arc<Mutex<LiteConn>>,
    /// How long a request waits for a connection before it fails (503), as with the pool.
    acquire_timeout: Duration,
}

const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                       PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;";

async fn open(url: &str) -> SqlResult<Arc<Mutex<LiteConn>>> {
    let mut conn = AnyConnection::connect(url).await?;
    conn.execute(PRAGMAS).await?;
    Ok(Arc::new(Mutex::new(LiteConn { conn, dirty: false })))
}

impl Lite {
    /// Open the writer first (it creates the file and switches it to WAL), then `readers`.
    pub(super) async fn open(
        url: &str,
        readers: u32,
        acquire_timeout: Duration,
    ) -> SqlResult<Lite> {
        let writer = open(url).await?;
        let mut r = Vec::new();
        for _ in 0..readers.max(1) {
            r.push(open(url).await?);
        }
        Ok(Lite {
            readers: r,
            next: AtomicUsize::new(0),
            writer,
            acquire_timeout,
        })
    }

    async fn wait(&self, m: &Arc<Mutex<LiteConn>>) -> SqlResult<OwnedMutexGuard<LiteConn>> {
        tokio::time::timeout(self.acquire_timeout, m.clone().lock_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)
    }

    async fn reader(&self) -> SqlResult<OwnedMutexGuard<LiteConn>> {
        // A free reader if there is one, else wait for one in turn.
        for r in &self.readers {
            if let Ok(g) = r.clone().try_lock_owned() {
                return Ok(g);
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.wait(&self.readers[i]).await
    }

    async fn writer(&self) -> SqlResult<OwnedMutexGuard<LiteConn>> {
        let mut g = self.wait(&self.writer).await?;
        if g.dirty {
            // Best effort: a failed ROLLBACK means no transaction was open after all.
            let _ = g.conn.execute("ROLLBACK").await;
            g.dirty = false;
        }
        Ok(g)
    }
}

/// Where the store's queries go.
pub(super) enum Backend {
    Postgres(AnyPool),
    Sqlite(Lite),
}

/// One connection for one or more statements outside a transaction.
pub(super) enum Conn {
    Pool(PoolConnection<Any>),
    Lite(OwnedMutexGuard<LiteConn>),
}

impl Deref for Conn {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            Conn::Pool(c) => c,
            Conn::Lite(g) => &g.conn,
        }
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Conn::Pool(c) => &mut *c,
            Conn::Lite(g) => &mut g.conn,
        }
    }
}

/// A write transaction. Dropped without [`Tx::commit`]: rolled back (PostgreSQL: by sqlx;
/// SQLite: before the writer's next use).
pub(super) enum Tx {
    Pg(Option<sqlx::Transaction<'static, Any>>),
    Lite {
        guard: OwnedMutexGuard<LiteConn>,
        open: bool,
    },
}

impl Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            Tx::Pg(t) => t.as_ref().expect("transaction in use"),
            Tx::Lite { guard, .. } => &guard.conn,
        }
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Tx::Pg(t) => t.as_mut().expect("transaction in use"),
            Tx::Lite { guard, .. } => &mut guard.conn,
        }
    }
}

impl Tx {
    pub(super) async fn commit(mut self) -> SqlResult<()> {
        self.end("COMMIT").await
    }

    pub(super) async fn rollback(mut self) -> SqlResult<()> {
        self.end("ROLLBACK").await
    }

    async fn end(&mut self, sql: &'static str) -> SqlResult<()> {
        match self {
            Tx::Pg(t) => {
                let t = t.take().expect("transaction in use");
                if sql == "COMMIT" {
                    t.commit().await
                } else {
                    t.rollback().await
                }
            }
            Tx::Lite { guard, open } => {
                guard.conn.execute(sql).await?;
                *open = false;
                Ok(())
            }
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let Tx::Lite { guard, open: true } = self {
            guard.dirty = true;
        }
    }
}

impl Backend {
    /// A connection for reads.
    pub(super) async fn read(&self) -> SqlResult<Conn> {
        match self {
            Backend::Postgres(p) => Ok(Conn::Pool(p.acquire().await?)),
            Backend::Sqlite(l) => Ok(Conn::Lite(l.reader().await?)),
        }
    }

    /// A connection for a write of one statement (no transaction needed).
    pub(super) async fn write(&self) -> SqlResult<Conn> {
        match self {
            Backend::Postgres(p) => Ok(Conn::Pool(p.acquire().await?)),
            Backend::Sqlite(l) => Ok(Conn::Lite(l.writer().await?)),
        }
    }

    /// A write transaction. SQLite takes its write lock up front (`BEGIN IMMEDIATE`: a
    /// deferred transaction that later writes could fail with SQLITE_BUSY); PostgreSQL locks
    /// rows as they are touched.
    pub(super) async fn begin(&self) -> SqlResult<Tx> {
        match self {
            Backend::Postgres(p) => Ok(Tx::Pg(Some(p.begin().await?))),
            Backend::Sqlite(l) => {
                let mut guard = l.writer().await?;
                guard.conn.execute("BEGIN IMMEDIATE").await?;
                Ok(Tx::Lite { guard, open: true })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SQLite backend on a new file (kept while the directory lives).
    async fn lite(readers: u32, timeout: Duration) -> (tempfile::TempDir, Backend) {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let b = Backend::Sqlite(Lite::open(&url, readers, timeout).await.unwrap());
        (dir, b)
    }

    async fn count(b: &Backend) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *b.read().await.unwrap())
            .await
            .unwrap()
    }

    /// A transaction dropped half-way (an error returned with `?` mid-way) leaves nothing
    /// behind: the writer rolls it back before its next use, which then works normally.
    #[tokio::test]
    async fn dropped_sqlite_transaction_is_rolled_back_before_the_next_write() {
        let (_dir, b) = lite(2, Duration::from_secs(1)).await;
        sqlx::query("CREATE TABLE t (v BIGINT)")
            .execute(&mut *b.write().await.unwrap())
            .await
            .unwrap();
        {
            let mut tx = b.begin().await.unwrap();
            sqlx::query("INSERT INTO t (v) VALUES (1)")
                .execute(&mut *tx)
                .await
                .unwrap();
            // Dropped here without commit.
        }
        assert_eq!(count(&b).await, 0, "readers never see the uncommitted row");
        sqlx::query("INSERT INTO t (v) VALUES (2)")
            .execute(&mut *b.write().await.unwrap())
            .await
            .unwrap();
        let mut tx = b.begin().await.unwrap();
        sqlx::query("INSERT INTO t (v) VALUES (3)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let v: Vec<i64> = sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(&mut *b.read().await.unwrap())
            .await
            .unwrap();
        assert_eq!(v, [2, 3]);
    }

    /// A writer held longer than `acquire_timeout` makes the next writer fail with the pool's
    /// timeout (the store maps it to 503), not wait for ever.
    #[tokio::test]
    async fn a_busy_sqlite_writer_times_out_like_the_pool() {
        let (_dir, b) = lite(1, Duration::from_millis(100)).await;
        let held = b.begin().await.unwrap();
        assert!(matches!(b.write().await, Err(sqlx::Error::PoolTimedOut)));
        drop(held);
        assert!(b.write().await.is_ok());
    }
}
