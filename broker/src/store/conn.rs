//! Connections of the `SqlStore` (sql.rs): sqlx's pool for PostgreSQL; for SQLite, a fixed set
//! of rusqlite connections of our own — one writer, which also serves reads while it is free,
//! and readers for the reads that come while a transaction holds it — whose statements run on
//! the calling thread (see [`super::query`]).
//!
//! Why not sqlx for SQLite: sqlx runs each SQLite connection on a worker thread, so every
//! statement was a thread round trip (two context switches on one core, with futex and epoll
//! calls — a quarter of the server's CPU per login), and its pool pinged each connection it
//! took back, another round trip. A SQLite connection is a file handle: it cannot go stale, so
//! there is nothing to check. One writer: SQLite admits one writer at a time, and writers
//! queueing here (in order, without blocking a thread) replace writers racing for the file
//! lock in SQLite's busy handler, which sleeps. Another process writing the same file (the
//! `broker` CLI) can still make the writer wait in that handler, on the caller's thread, for
//! as long as its write lasts (`busy_timeout` caps it at 5 s).

use super::query::{Exec, Target};
use super::{Result, StoreError};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// A SQLite connection and whether a transaction was left open on it (a [`Tx`] dropped
/// before commit or rollback, e.g. by an error): rolled back before the next use.
pub(super) struct LiteConn {
    conn: rusqlite::Connection,
    dirty: bool,
}

/// SQLite's connections.
pub(super) struct Lite {
    readers: Vec<Arc<Mutex<LiteConn>>>,
    next: AtomicUsize,
    writer: Arc<Mutex<LiteConn>>,
    /// How long a request waits for a connection before it fails (503), as with the pool.
    acquire_timeout: Duration,
    /// Bumped on each use of the writer; the checkpointer works when it moved.
    writes: Arc<AtomicU64>,
    /// Dropped with the store: the checkpointer thread then ends.
    _checkpointer: mpsc::Sender<()>,
}

/// Statements run on the calling thread, so nothing here may wait long: the writer never
/// checkpoints (`wal_autocheckpoint = 0`; with `synchronous = NORMAL` a commit in WAL mode
/// does not fsync), a thread of the store's own does it instead.
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                       PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;
                       PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;";

/// How often the checkpointer copies the write-ahead log back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// The file of a `sqlite:` URL (`sqlite://PATH?mode=rwc`, `sqlite:PATH`).
pub(super) fn sqlite_path(url: &str) -> Result<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Db("not a sqlite: URL".into()))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Db(
            "an in-memory SQLite database is not supported: name a file".into(),
        ));
    }
    Ok(path)
}

fn open(path: &str) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(PRAGMAS)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

fn shared(conn: rusqlite::Connection) -> Arc<Mutex<LiteConn>> {
    Arc::new(Mutex::new(LiteConn { conn, dirty: false }))
}

/// Copy the log back into the database after writes, until the store is dropped: a passive
/// checkpoint (it never waits for readers or the writer) copies most of it while writes go
/// on; a second one, with the writer held (writes queue for it, reads go on), copies the rest,
/// so that the next write starts the log over. Without that moment the log never ends on a
/// fully copied frame under steady writes, and grows without bound (1.4 GB in 20 s of
/// logins), slowing every read that searches it.
fn checkpointer(
    conn: rusqlite::Connection,
    writer: Arc<Mutex<LiteConn>>,
    writes: Arc<AtomicU64>,
) -> Result<mpsc::Sender<()>> {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let mut seen = writes.load(Ordering::Relaxed);
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(CHECKPOINT_EVERY) {
                let now = writes.load(Ordering::Relaxed);
                if now != seen {
                    seen = now;
                    let passive = || {
                        if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                            tracing::warn!(error = %e, "SQLite checkpoint failed");
                        }
                    };
                    passive();
                    let _writer = writer.blocking_lock();
                    passive();
                }
            }
            // A last one, so that a closed store leaves a short log behind.
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
        })
        .map_err(|e| StoreError::Db(format!("cannot start the SQLite checkpoint thread: {e}")))?;
    Ok(tx)
}

impl Lite {
    /// Open the writer first (it switches the file to WAL), then `readers`; the file exists
    /// already (sqlx made it and ran the migrations).
    pub(super) fn open(path: &str, readers: u32, acquire_timeout: Duration) -> Result<Lite> {
        let writer = shared(open(path)?);
        let mut r = Vec::new();
        for _ in 0..readers.max(1) {
            r.push(shared(open(path)?));
        }
        let writes = Arc::new(AtomicU64::new(0));
        let checkpoints = checkpointer(open(path)?, writer.clone(), writes.clone())?;
        Ok(Lite {
            readers: r,
            next: AtomicUsize::new(0),
            writer,
            acquire_timeout,
            writes,
            _checkpointer: checkpoints,
        })
    }

    async fn wait(&self, m: &Arc<Mutex<LiteConn>>) -> Result<OwnedMutexGuard<LiteConn>> {
        tokio::time::timeout(self.acquire_timeout, m.clone().lock_owned())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "no SQLite connection free within {:?} (acquire_timeout)",
                    self.acquire_timeout
                ))
            })
    }

    /// For reads: the writer when it is free, else a free reader, else a reader in turn.
    ///
    /// The writer first because its page cache stays valid across its own writes, while a
    /// reader's is dropped at the first read after any write elsewhere and refilled from the
    /// file (a login's reads then re-read the pages its writes just wrote: ~5% of the server's
    /// CPU per login). Reads are statements on the calling thread that hold the connection
    /// only while they run, so a write never waits long behind one; the readers serve reads
    /// while a write transaction holds the writer.
    async fn reader(&self) -> Result<OwnedMutexGuard<LiteConn>> {
        if let Ok(g) = self.writer.clone().try_lock_owned() {
            return Ok(clean(g));
        }
        for r in &self.readers {
            if let Ok(g) = r.clone().try_lock_owned() {
                return Ok(g);
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.wait(&self.readers[i]).await
    }

    async fn writer(&self) -> Result<OwnedMutexGuard<LiteConn>> {
        let g = clean(self.wait(&self.writer).await?);
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(g)
    }
}

/// The writer with any transaction a dropped [`Tx`] left open rolled back.
fn clean(mut g: OwnedMutexGuard<LiteConn>) -> OwnedMutexGuard<LiteConn> {
    if g.dirty {
        // Best effort: a failed ROLLBACK means no transaction was open after all.
        let _ = g.conn.execute_batch("ROLLBACK");
        g.dirty = false;
    }
    g
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

impl Exec for Conn {
    fn target(&mut self) -> Target<'_> {
        match self {
            Conn::Pool(c) => Target::Pg(c),
            Conn::Lite(g) => Target::Lite(&mut g.conn),
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

impl Exec for Tx {
    fn target(&mut self) -> Target<'_> {
        match self {
            Tx::Pg(t) => Target::Pg(t.as_mut().expect("transaction in use")),
            Tx::Lite { guard, .. } => Target::Lite(&mut guard.conn),
        }
    }
}

impl Tx {
    pub(super) async fn commit(mut self) -> Result<()> {
        self.end("COMMIT").await
    }

    pub(super) async fn rollback(mut self) -> Result<()> {
        self.end("ROLLBACK").await
    }

    async fn end(&mut self, sql: &'static str) -> Result<()> {
        match self {
            Tx::Pg(t) => {
                let t = t.take().expect("transaction in use");
                if sql == "COMMIT" {
                    Ok(t.commit().await?)
                } else {
                    Ok(t.rollback().await?)
                }
            }
            Tx::Lite { guard, open } => {
                guard.conn.execute_batch(sql)?;
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
    pub(super) async fn read(&self) -> Result<Conn> {
        match self {
            Backend::Postgres(p) => Ok(Conn::Pool(p.acquire().await?)),
            Backend::Sqlite(l) => Ok(Conn::Lite(l.reader().await?)),
        }
    }

    /// A connection for a write of one statement (no transaction needed).
    pub(super) async fn write(&self) -> Result<Conn> {
        match self {
            Backend::Postgres(p) => Ok(Conn::Pool(p.acquire().await?)),
            Backend::Sqlite(l) => Ok(Conn::Lite(l.writer().await?)),
        }
    }

    /// A write transaction. SQLite takes its write lock up front (`BEGIN IMMEDIATE`: a
    /// deferred transaction that later writes could fail with SQLITE_BUSY); PostgreSQL locks
    /// rows as they are touched.
    pub(super) async fn begin(&self) -> Result<Tx> {
        match self {
            Backend::Postgres(p) => Ok(Tx::Pg(Some(p.begin().await?))),
            Backend::Sqlite(l) => {
                let guard = l.writer().await?;
                guard.conn.execute_batch("BEGIN IMMEDIATE")?;
                Ok(Tx::Lite { guard, open: true })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::query::{query, query_scalar};
    use super::*;

    /// A SQLite backend on a new file (kept while the directory lives).
    fn lite(readers: u32, timeout: Duration) -> (tempfile::TempDir, Backend) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let b = Backend::Sqlite(Lite::open(path.to_str().unwrap(), readers, timeout).unwrap());
        (dir, b)
    }

    /// Run one statement on the writer.
    async fn write(b: &Backend, sql: &'static str) {
        query(sql)
            .execute(&mut b.write().await.unwrap())
            .await
            .unwrap();
    }

    async fn values(b: &Backend) -> Vec<i64> {
        query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(&mut b.read().await.unwrap())
            .await
            .unwrap()
    }

    /// A transaction dropped half-way (an error returned with `?` mid-way) leaves nothing
    /// behind: the writer rolls it back before its next use, which then works normally.
    #[tokio::test]
    async fn dropped_sqlite_transaction_is_rolled_back_before_the_next_write() {
        let (_dir, b) = lite(2, Duration::from_secs(1));
        write(&b, "CREATE TABLE t (v BIGINT)").await;
        {
            let mut tx = b.begin().await.unwrap();
            query("INSERT INTO t (v) VALUES (1)")
                .execute(&mut tx)
                .await
                .unwrap();
            // Dropped here without commit.
        }
        assert!(
            values(&b).await.is_empty(),
            "readers never see the uncommitted row"
        );
        write(&b, "INSERT INTO t (v) VALUES (2)").await;
        let mut tx = b.begin().await.unwrap();
        query("INSERT INTO t (v) VALUES (3)")
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(values(&b).await, [2, 3]);
    }

    /// `$n` is the n-th bound value whatever the order the placeholders appear in (SQLite
    /// numbers them by first appearance); a count that does not match is an error, not a
    /// silent NULL.
    #[tokio::test]
    async fn placeholders_bind_by_number_and_the_count_must_match() {
        let (_dir, b) = lite(1, Duration::from_secs(1));
        let v: String = query_scalar("SELECT $2 || ':' || $1 || ':' || $2")
            .bind("a")
            .bind("b")
            .fetch_one(&mut b.read().await.unwrap())
            .await
            .unwrap();
        assert_eq!(v, "b:a:b");
        let n: Option<i64> = query_scalar("SELECT $1")
            .bind(None::<i64>)
            .fetch_one(&mut b.read().await.unwrap())
            .await
            .unwrap();
        assert_eq!(n, None);
        let e = query("SELECT $1, $2")
            .bind(1)
            .execute(&mut b.read().await.unwrap())
            .await
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "database: 1 values bound to a statement with 2 placeholders"
        );
    }

    #[test]
    fn sqlite_urls_name_a_file() {
        assert_eq!(
            sqlite_path("sqlite://data/b.db?mode=rwc").unwrap(),
            "data/b.db"
        );
        assert_eq!(sqlite_path("sqlite:/tmp/b.db").unwrap(), "/tmp/b.db");
        for bad in ["sqlite::memory:", "sqlite://", "sqlite://?mode=memory"] {
            let e = sqlite_path(bad).err().unwrap().to_string();
            assert!(
                e.contains("in-memory SQLite database is not supported"),
                "{bad}: {e}"
            );
        }
    }

    /// Reads go to the writer while it is free (its page cache survives its own writes) and
    /// to a reader while a transaction holds it — without waiting for the transaction, and
    /// without seeing its uncommitted rows. A TEMP table, seen only by the connection that
    /// made it, tells the writer apart.
    #[tokio::test]
    async fn reads_use_the_writer_when_it_is_free_and_a_reader_when_it_is_not() {
        let (_dir, b) = lite(1, Duration::from_millis(100));
        write(&b, "CREATE TABLE t (v BIGINT)").await;
        write(&b, "CREATE TEMP TABLE mark (v BIGINT)").await;
        assert!(read_on_writer(&b).await, "a free writer serves reads");
        let mut tx = b.begin().await.unwrap();
        query("INSERT INTO t (v) VALUES (1)")
            .execute(&mut tx)
            .await
            .unwrap();
        assert!(
            !read_on_writer(&b).await,
            "a reader serves reads during a transaction"
        );
        assert!(values(&b).await.is_empty(), "uncommitted rows stay unseen");
        tx.commit().await.unwrap();
        assert_eq!(values(&b).await, [1]);
        assert!(read_on_writer(&b).await);
    }

    /// Whether a read saw the writer's TEMP table `mark`.
    async fn read_on_writer(b: &Backend) -> bool {
        query("SELECT v FROM mark")
            .fetch_all(&mut b.read().await.unwrap())
            .await
            .is_ok()
    }

    /// A writer held longer than `acquire_timeout` makes the next writer fail as unavailable
    /// (503), not wait for ever.
    #[tokio::test]
    async fn a_busy_sqlite_writer_times_out_like_the_pool() {
        let (_dir, b) = lite(1, Duration::from_millis(100));
        let held = b.begin().await.unwrap();
        match b.write().await {
            Err(StoreError::Unavailable(why)) => assert!(why.contains("acquire_timeout"), "{why}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a second writer while the first holds it"),
        }
        drop(held);
        assert!(b.write().await.is_ok());
    }

    /// The writer never checkpoints (it would fsync on the request's thread); the store's
    /// checkpointer copies the log back into the database file after writes.
    #[tokio::test]
    async fn the_checkpointer_copies_the_log_back_after_writes() {
        let (dir, b) = lite(1, Duration::from_secs(1));
        let auto: i64 = query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&mut b.write().await.unwrap())
            .await
            .unwrap();
        assert_eq!(auto, 0, "the writer does not checkpoint");
        write(&b, "CREATE TABLE t (v TEXT)").await;
        let file = dir.path().join("t.db");
        let before = std::fs::metadata(&file).unwrap().len();
        for v in 0..100 {
            query("INSERT INTO t (v) VALUES ($1)")
                .bind("x".repeat(1000) + &v.to_string())
                .execute(&mut b.write().await.unwrap())
                .await
                .unwrap();
        }
        // 100 KB of rows: in the log until a checkpoint copies them into the file.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::metadata(&file).unwrap().len() < before + 100_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(row_count(&b).await, 100);
    }

    /// Under writes that never pause the log still starts over: it stays far smaller than
    /// what was written through it.
    #[tokio::test]
    async fn the_log_starts_over_under_steady_writes() {
        let (dir, b) = lite(1, Duration::from_secs(1));
        write(&b, "CREATE TABLE t (v TEXT)").await;
        let wal = dir.path().join("t.db-wal");
        let (mut commits, mut largest) = (0u64, 0u64);
        let end = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < end {
            query("INSERT INTO t (v) VALUES ($1)")
                .bind("x".repeat(3000))
                .execute(&mut b.write().await.unwrap())
                .await
                .unwrap();
            commits += 1;
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        // Each commit appends at least one 4 KiB page to the log; a log that never started
        // over would be at least that large. (The file keeps its largest size when it starts
        // over, so this is the most that piled up between two checkpoints.)
        let written = commits * 4096;
        assert!(commits > 1000, "{commits} commits");
        assert!(
            largest < written / 2,
            "log reached {largest} bytes after {written} bytes written"
        );
    }

    async fn row_count(b: &Backend) -> i64 {
        query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut b.read().await.unwrap())
            .await
            .unwrap()
    }
}
