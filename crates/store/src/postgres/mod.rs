//! [`PgStore`]: the PostgreSQL backend, for several kmipd nodes on one database.
//!
//! **Stack.** tokio-postgres with deadpool-postgres (the pool) and tokio-postgres-rustls (TLS):
//! the maintained Rust stack that takes libpq-style multi-host URLs with
//! `target_session_attrs=read-write` (how a node finds the new primary after a failover).
//! The [`ObjectStore`] trait is synchronous: a `PgStore` owns a small tokio runtime (two
//! worker threads) on which every operation runs, and the calling thread waits on a channel.
//! Call it from threads that may block (a blocking pool, plain threads), **never from an
//! async executor thread**: the wait would stall that executor (it does not panic).
//! [`ObjectStore::commit_then`] spawns the commit on the store's runtime and calls `done`
//! there, so it never blocks its caller. [`ObjectStore::async_access`] (`fetch.rs`) gives the
//! same reads and commits as futures that run on the caller's runtime instead (the server's
//! async threads, for short requests: no hop to the store's runtime).
//!
//! **Schema.** `schema.rs` (versioned migrations applied at open; a newer schema is refused).
//! Records are the bytes of `record.rs`, as in sled: key material wrapped by the KEK (RFC
//! 5649), nothing in the clear at rest. The wrapped KEK blobs, the KEK check values, the
//! current KEK id and the master key's fingerprint live in the database (`keyring.rs`); the
//! only thing kept in memory is the unwrapped KEKs. Sequence numbers come from a database
//! sequence, revisions from another (a revision never repeats, unlike a content hash); a new
//! object gets its sequence number inside the commit that stores it
//! ([`ObjectStore::creation_sequence`] hands out provisional ones), not in a round trip of
//! its own.
//!
//! **Concurrency control** (`commit.rs`). Every commit is one READ COMMITTED transaction that
//! first takes transaction-level advisory locks, always in the same order: the KEK lock
//! (shared; a KEK switch takes it exclusively), then the search lock (only for a commit
//! carrying [`Change::ExpectNoOther`]; shared with per-Name locks for Name searches, see
//! `commit.rs`), then one lock per object the commit touches (and per Name), by a 64-bit hash
//! in ascending order. Only then does it read: under READ COMMITTED
//! each statement sees every transaction committed before it started, so the revisions it
//! checks for [`Change::Expect`] and the search it re-runs for `ExpectNoOther` see every
//! commit that held those locks before. Hence two nodes racing on one object or one Name
//! behave as two requests on one node: one wins, the other gets [`StoreError::Conflict`].
//! Locks on absent objects (an advisory lock needs no row) make "expected absent" hold too.
//! SERIALIZABLE would give the same without the locks but fails whole transactions under
//! contention (40001) and needs every commit re-run; the locks make waiting the common case
//! and keep the transaction a plain check-then-write.
//!
//! **Failures.** Serialization failures and deadlocks (40001, 40P01, not expected with the
//! lock order but handled), a lost or refused connection, a server shutting down and a
//! connection that landed on a read-only server (25006, after a failover) are retried on a
//! fresh connection before COMMIT, with a growing back-off during which no connection is held,
//! until the operation's deadline. A connection that failed in any way is discarded, never
//! returned to the pool. A COMMIT that fails (a connection lost during it, a session
//! terminated while it waited for a synchronous standby) has an unknown outcome: the store
//! asks the database on a new connection (`txid_status` of the transaction id read before
//! COMMIT) whether it committed, and runs it again only if it did not (identifiers are made
//! before the transaction, so a retry never creates a second object). Every statement is bounded by
//! `statement_timeout` (set on each connection), every connection attempt by the connect
//! timeout, and every operation by [`PgOptions::deadline`]: a hung server turns into a
//! [`StoreError::Backend`], never a hang.
//!
//! **Damaged records.** As sled: `get` reports [`StoreError::Corrupt`]; `all` and `find`
//! leave the record out and remember its uid ([`PgStore::corrupt_records`], diagnostics only).
//!
//! **Pool size.** PostgreSQL flushes every commit that is ready in one WAL flush, so
//! throughput grows with the number of concurrent transactions up to about 16-32 on these
//! cores (`docs/storage.md`): the pool defaults to 16 connections per node, which also keeps
//! three nodes well under PostgreSQL's default `max_connections` of 100.

mod commit;
mod copy;
mod fetch;
mod keyring;
mod schema;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::kek::{Kek, KekId, Keyring};
use crate::query::{Query, filter_prefix};
use crate::{Change, ManagedObject, ObjectStore, PROVISIONAL_SEQUENCE, Revision, StoreError};

pub use copy::{CopyReport, copy_from_sled};
pub use keyring::{KekSource, RotationLock};
pub use schema::SCHEMA_VERSION;

/// Default pool size (see the module doc).
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How a [`PgStore`] reaches its database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// libpq-style connection URL or key=value string, e.g.
    /// `postgresql://kmipd@db1:5432,db2:5432/kmipd?target_session_attrs=read-write`. Several
    /// hosts are tried in turn; `target_session_attrs=read-write` skips standbys. A password
    /// goes in the URL (tokio-postgres reads neither `PGPASSWORD` nor `~/.pgpass`).
    pub url: String,
    /// PEM file of the CA(s) that signed the PostgreSQL server's certificate. When set, TLS is
    /// required (a server without TLS is refused, whatever `sslmode` says) and the certificate
    /// chain and host name are verified (libpq's `verify-full`). When unset, connections are
    /// in plain text, and a URL that asks for `sslmode=require` is refused at open.
    pub ca_file: Option<PathBuf>,
    /// Connections per node ([`DEFAULT_POOL_SIZE`]).
    pub pool_size: usize,
    /// `statement_timeout` of every connection: the longest one statement may run.
    pub statement_timeout: Duration,
    /// The longest a connection attempt (per host) may take.
    pub connect_timeout: Duration,
    /// The longest one store operation may take, retries and waits for a connection
    /// included.
    pub deadline: Duration,
    /// A schema to keep the tables in (created if missing); `None`: the connection's default
    /// (`public`). Letters, digits and `_` only.
    pub schema: Option<String>,
}

impl PgOptions {
    /// Checks what [`PgStore::open`] checks before it connects (the URL, the CA file, TLS
    /// required without a CA file, the schema name), so that a caller waiting for the
    /// database to come up can tell a mistake from an outage.
    pub fn check(&self) -> Result<(), StoreError> {
        let config = tokio_postgres::Config::from_str(&self.url)
            .map_err(|e| backend(format!("PostgreSQL URL: {e}")))?;
        if tls(self)?.is_none() && config.get_ssl_mode() == SslMode::Require {
            return Err(backend(
                "the PostgreSQL URL requires TLS (sslmode=require) but no CA file is \
                 configured to verify the server with",
            ));
        }
        if let Some(schema) = &self.schema
            && !valid_schema(schema)
        {
            return Err(backend(format!(
                "PostgreSQL schema name {schema:?}: letters, digits and _ only"
            )));
        }
        Ok(())
    }

    /// Options with the defaults: pool 16, statement timeout 5 s, connect timeout 5 s,
    /// deadline 15 s, no TLS, the default schema.
    pub fn new(url: impl Into<String>) -> PgOptions {
        PgOptions {
            url: url.into(),
            ca_file: None,
            pool_size: DEFAULT_POOL_SIZE,
            statement_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(15),
            schema: None,
        }
    }
}

/// What the tasks of one store share.
pub(crate) struct Inner {
    pub(crate) pool: Pool,
    pub(crate) keyring: RwLock<Keyring>,
    pub(crate) corrupt: Mutex<BTreeSet<String>>,
    pub(crate) deadline: Duration,
    pub(crate) counts: Counts,
    /// How this node unwraps a KEK it was not given (`keyring.rs`), set by the server.
    pub(crate) kek_source: OnceLock<KekSource>,
    /// One KEK learned at a time.
    pub(crate) learning: tokio::sync::Mutex<()>,
    /// The last object count of [`PgStore::object_count`] and when it was taken.
    counted: Mutex<Option<(Instant, u64)>>,
    /// The next provisional sequence number, less [`PROVISIONAL_SEQUENCE`].
    provisional: AtomicU64,
    /// The last value this node read of each setting, by name (forgotten when it writes one):
    /// what the read path serves without reading, checked before an answer stands
    /// (`prefetch.rs`, `fetch.rs`).
    hints: Mutex<HashMap<String, Option<Vec<u8>>>>,
}

/// Commit outcomes counted by [`PgStore::stats`].
#[derive(Default)]
pub(crate) struct Counts {
    /// Commits that wrote, for the clean-up of the commit tokens (`commit.rs`).
    written: AtomicU64,
    commits: AtomicU64,
    conflicts: AtomicU64,
    database: AtomicU64,
    keyring: AtomicU64,
    corrupt: AtomicU64,
}

impl Counts {
    /// Counts a commit that wrote; true every `every` of them.
    pub(crate) fn tick_written(&self, every: u64) -> bool {
        let n = self.written.fetch_add(1, Ordering::Relaxed);
        every > 0 && n % every == every - 1
    }

    fn count(&self, r: &Result<(), StoreError>) {
        let c = match r {
            Ok(()) => &self.commits,
            Err(StoreError::Conflict { .. }) => &self.conflicts,
            Err(StoreError::Backend(_) | StoreError::Incompatible(_)) => &self.database,
            Err(StoreError::Kek(_) | StoreError::Locked) => &self.keyring,
            Err(StoreError::Corrupt { .. }) => &self.corrupt,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What [`PgStore::stats`] reports: commits and failed commits of this node since the store
/// was opened, and its connection pool now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgStats {
    /// Commits made durable.
    pub commits: u64,
    /// Failed commits by kind: `conflict` (an expectation did not hold: a concurrent change,
    /// answered as such), `database` (unreachable, timed out, or a COMMIT of unknown outcome),
    /// `keyring` (locked, or a KEK switch by another node), `corrupt` (a damaged record).
    pub commit_failures: [(&'static str, u64); 4],
    /// The pool's largest size (`pool_size`).
    pub pool_max: usize,
    /// Connections open now.
    pub pool_open: usize,
    /// Connections open and idle now (open minus idle: in use).
    pub pool_idle: usize,
    /// Operations waiting for a connection now.
    pub pool_waiting: usize,
}

/// The PostgreSQL backend (see the module doc).
pub struct PgStore {
    runtime: Option<tokio::runtime::Runtime>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    /// Stops the runtime without waiting for tasks (commits in flight are dropped: their
    /// connections close, so PostgreSQL rolls back what was not committed).
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

pub(crate) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Why one attempt of an operation failed.
pub(crate) enum Failure {
    /// Nothing was committed and trying again may work (connection, failover, serialization).
    Retry(String),
    /// Final.
    Fatal(StoreError),
    /// COMMIT failed (typically the connection was lost): the outcome is unknown until the
    /// database is asked about this transaction.
    Unknown(commit::Lost, String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Fatal(e)
    }
}

/// Sorts a database error into retryable or final.
pub(crate) fn classify(e: &tokio_postgres::Error) -> Failure {
    let msg = describe(e);
    match e.code() {
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::READ_ONLY_SQL_TRANSACTION
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || c.code().starts_with("08") =>
        {
            Failure::Retry(msg)
        }
        Some(c) if *c == SqlState::QUERY_CANCELED => {
            Failure::Fatal(backend(format!("statement timed out or cancelled: {msg}")))
        }
        Some(_) => Failure::Fatal(backend(msg)),
        // No SQLSTATE: the connection (I/O, closed, TLS).
        None => Failure::Retry(msg),
    }
}

/// A database error with its server message (tokio-postgres's Display omits it).
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => chain(e),
    }
}

/// An error with its sources ("handshake failed: invalid peer certificate: UnknownIssuer").
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// A pooled connection that is returned to the pool only when marked clean; otherwise (an
/// error, a cancelled future) it is closed, so no connection in an unknown state is reused.
pub(crate) struct Conn {
    obj: Option<Object>,
    clean: bool,
}

impl Conn {
    pub(crate) fn client(&self) -> Result<&deadpool_postgres::ClientWrapper, Failure> {
        match &self.obj {
            Some(o) => Ok(o),
            None => Err(Failure::Retry("connection already released".into())),
        }
    }

    /// Back to the pool.
    pub(crate) fn release(mut self) {
        self.clean = true;
    }

    /// Commits the transaction and gives the connection back.
    pub(crate) async fn commit(self) -> Result<(), Failure> {
        self.client()?
            .batch_execute("COMMIT")
            .await
            .map_err(|e| classify(&e))?;
        self.release();
        Ok(())
    }

    /// Ends a failed transaction without writing and gives the connection back (closed when
    /// the ROLLBACK fails); `e`, the failure to return.
    pub(crate) async fn abort(self, e: StoreError) -> Failure {
        if let Ok(c) = self.client()
            && c.batch_execute("ROLLBACK").await.is_ok()
        {
            self.release();
        }
        Failure::Fatal(e)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.clean
            && let Some(o) = self.obj.take()
        {
            drop(Object::take(o));
        }
    }
}

impl Inner {
    /// The setting `name` as this node last read it, if it did (and has not written it since).
    pub(crate) fn hint(&self, name: &str) -> Option<Option<Vec<u8>>> {
        self.hints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Remembers `value` as the setting `name` just read.
    pub(crate) fn remember_hint(&self, name: &str, value: Option<Vec<u8>>) {
        self.hints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), value);
    }

    /// Forgets the setting `name` (the next read goes to the database).
    pub(crate) fn forget_hint(&self, name: &str) {
        self.hints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    pub(crate) async fn conn(&self) -> Result<Conn, Failure> {
        match self.pool.get().await {
            Ok(obj) => Ok(Conn {
                obj: Some(obj),
                clean: false,
            }),
            Err(e) => Err(Failure::Retry(format!(
                "no database connection: {}",
                chain(&e)
            ))),
        }
    }

    pub(crate) fn kek(&self, id: KekId) -> Result<Arc<Kek>, StoreError> {
        Keyring::kek(&self.keyring, id)
    }

    pub(crate) fn current(&self) -> Result<Arc<Kek>, StoreError> {
        Keyring::current(&self.keyring)
    }

    /// Parses and unwraps one record. A record wrapped by a KEK this node does not hold (a
    /// KEK rotation run through another node) makes it learn that KEK from the database first
    /// (`keyring.rs`); one it cannot learn is Corrupt, as with sled.
    pub(crate) async fn decode(&self, uid: &str, raw: &[u8]) -> Result<ManagedObject, StoreError> {
        let id = match Keyring::decode_or_missing(&self.keyring, uid, raw)? {
            Ok(o) => return Ok(o),
            Err(id) => id,
        };
        match self.learn_kek(id).await {
            Ok(()) => Keyring::decode(&self.keyring, uid, raw),
            Err(StoreError::Kek(reason)) => Err(StoreError::Corrupt {
                uid: uid.to_owned(),
                reason,
            }),
            Err(e) => Err(e),
        }
    }

    /// Decodes listed rows: damaged records are remembered and left out.
    async fn decode_listed(
        &self,
        rows: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<ManagedObject>, StoreError> {
        let mut out = Vec::with_capacity(rows.len());
        for (uid, raw) in rows {
            match self.decode(&uid, &raw).await {
                Ok(o) => out.push(o),
                Err(StoreError::Corrupt { uid, .. }) => {
                    if let Ok(mut c) = self.corrupt.lock() {
                        c.insert(uid);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// Runs `attempt` on fresh connections until it succeeds, fails for good, or the deadline
/// passes (the operation's own, or the request's if it ends first: [`crate::deadline`]);
/// sleeps between attempts without holding a connection. A failed COMMIT is resolved by
/// asking the database: committed is success, not committed is retried.
pub(crate) async fn retrying<T, F, Fut>(inner: &Inner, mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut(Conn) -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
    T: Default,
{
    let own = Instant::now() + inner.deadline;
    let request = REQUEST_UNTIL.try_with(|u| *u).ok();
    let (until, bound) = match request {
        Some(r) if r < own => (r, String::from("the request's deadline")),
        _ => (own, format!("{:?}", inner.deadline)),
    };
    let mut backoff = Duration::from_millis(20);
    let mut last = String::from("deadline exceeded before the first attempt");
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(backend(format!(
                "database operation did not succeed within {bound}: {last}"
            )));
        }
        let result = tokio::time::timeout(left, async {
            let conn = inner.conn().await?;
            attempt(conn).await
        })
        .await;
        match result {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(Failure::Fatal(e))) => return Err(e),
            Ok(Err(Failure::Retry(m))) => last = m,
            Ok(Err(Failure::Unknown(lost, m))) => {
                match commit::resolve(inner, &lost, until).await {
                    Ok(true) => return Ok(T::default()),
                    // Nothing was committed: as safe to try again as any failure before COMMIT.
                    Ok(false) => last = format!("COMMIT failed and did not commit: {m}"),
                    Err(e) => {
                        return Err(backend(format!(
                            "COMMIT failed ({m}) and its outcome is unknown: {e}"
                        )));
                    }
                }
            }
            Err(_) => {
                return Err(backend(format!(
                    "database operation did not finish within {bound} (last error: {last})"
                )));
            }
        }
        let pause = backoff.min(until.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

tokio::task_local! {
    /// The end of the request an operation runs for ([`crate::deadline::within`] on the
    /// calling thread), carried onto the store's runtime by [`PgStore::run`] and
    /// [`PgStore::commit_then`].
    static REQUEST_UNTIL: Instant;
}

/// `fut` with the calling thread's request deadline, if any, visible to [`retrying`].
async fn with_request_deadline<T>(request: Option<Instant>, fut: impl Future<Output = T>) -> T {
    match request {
        Some(until) => REQUEST_UNTIL.scope(until, fut).await,
        None => fut.await,
    }
}

/// The advisory lock namespace of kmipd's global locks (the two-int4 key space, apart from
/// the one-bigint key space of the object locks).
pub(crate) const LOCK_NS: i32 = 0x6b6d_6970; // "kmip"
/// Global lock: KEK switches (exclusive) against commits (shared).
pub(crate) const LOCK_KEK: i32 = 1;
/// Global lock: commits with a search condition.
pub(crate) const LOCK_SEARCH: i32 = 2;
/// Global lock: schema migrations.
pub(crate) const LOCK_MIGRATE: i32 = 3;
/// Global lock (session level): KEK and master key rotations, one at a time.
pub(crate) const LOCK_ROTATION: i32 = 4;

/// The advisory lock key of an object: 64 bits of the SHA-256 of its uid.
pub(crate) fn object_lock(uid: &str) -> i64 {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(uid.as_bytes());
    let mut k = [0u8; 8];
    if let Some(head) = d.first_chunk::<8>() {
        k = *head;
    }
    i64::from_be_bytes(k)
}

/// The advisory lock key of an index term (a Name): 64 bits of the SHA-256 of a domain tag
/// and the term, so that it never equals an object's key by construction of the input.
pub(crate) fn term_lock(term: &[u8]) -> i64 {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(b"\0kmipd term lock\0");
    h.update(term);
    let d = h.finalize();
    let mut k = [0u8; 8];
    if let Some(head) = d.first_chunk::<8>() {
        k = *head;
    }
    i64::from_be_bytes(k)
}

/// A creation sequence as an order-preserving bigint.
pub(crate) fn seq_key(s: u64) -> i64 {
    i64::from_be_bytes((s ^ (1u64 << 63)).to_be_bytes())
}

/// A revision number as a [`Revision`].
pub(crate) fn revision(n: i64) -> Revision {
    let mut r = [0u8; 16];
    let (head, _) = r.split_at_mut(8);
    head.copy_from_slice(&n.to_be_bytes());
    Revision(r)
}

/// One SQL parameter of a dynamically built query.
#[derive(Debug)]
pub(crate) enum Param {
    Bytes(Vec<u8>),
    Int(i64),
    Text(String),
    Texts(Vec<String>),
}

impl Param {
    pub(crate) fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Param::Bytes(b) => b,
            Param::Int(i) => i,
            Param::Text(t) => t,
            Param::Texts(t) => t,
        }
    }
}

/// The SQL that selects `uid, record` of the objects that may satisfy `query` (its indexed
/// filters, through `kmipd_terms`), leaving out `exclude`, in creation order. The caller
/// still applies [`Query::matches`].
pub(crate) fn select_sql(
    query: &Query,
    exclude: Option<Vec<String>>,
) -> Result<(String, Vec<Param>), StoreError> {
    let mut sql = String::from("SELECT uid, record FROM kmipd_objects WHERE TRUE");
    let mut params = Vec::new();
    for f in query.filters.iter().filter(|f| f.indexed()) {
        params.push(Param::Bytes(filter_prefix(f)?));
        let n = params.len();
        match crate::query::term_range(f) {
            Some((from, to)) => {
                params.push(Param::Int(from));
                params.push(Param::Int(to));
                sql.push_str(&format!(
                    " AND uid IN (SELECT uid FROM kmipd_terms WHERE term = ${n} \
                     AND date BETWEEN ${} AND ${})",
                    n + 1,
                    n + 2
                ));
            }
            _ => sql.push_str(&format!(
                " AND uid IN (SELECT uid FROM kmipd_terms WHERE term = ${n})"
            )),
        }
    }
    if let Some(seen) = exclude.filter(|s| !s.is_empty()) {
        params.push(Param::Texts(seen));
        sql.push_str(&format!(" AND NOT (uid = ANY(${}))", params.len()));
    }
    sql.push_str(" ORDER BY sequence, uid");
    Ok((sql, params))
}

/// Runs a [`select_sql`] query: `(uid, record)` rows.
pub(crate) async fn select_rows(
    client: &deadpool_postgres::ClientWrapper,
    sql: &str,
    params: &[Param],
) -> Result<Vec<(String, Vec<u8>)>, Failure> {
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(Param::as_sql).collect();
    let stmt = client.prepare_cached(sql).await.map_err(|e| classify(&e))?;
    let rows = client.query(&stmt, &refs).await.map_err(|e| classify(&e))?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .map_err(|e| classify(&e))
}

/// Checks that a schema name is a plain identifier.
fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.chars().next().is_some_and(|c| !c.is_ascii_digit())
}

/// The TLS connector of `opts`, or `None` for plain connections.
fn tls(opts: &PgOptions) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, StoreError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let Some(ca) = &opts.ca_file else {
        return Ok(None);
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| backend(format!("PostgreSQL CA file {}: {e}", ca.display())))?;
    if certs.is_empty() {
        return Err(backend(format!(
            "PostgreSQL CA file {} holds no certificate",
            ca.display()
        )));
    }
    for c in certs {
        roots
            .add(c)
            .map_err(|e| backend(format!("PostgreSQL CA file {}: {e}", ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(backend)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
}

impl PgStore {
    /// Connects, applies the schema migrations (refusing a newer schema) and returns the
    /// store, locked: [`unlock`](Self::unlock) it with its KEKs before reading objects. Waits
    /// for the database up to the deadline.
    pub fn open(opts: &PgOptions) -> Result<PgStore, StoreError> {
        let mut config = tokio_postgres::Config::from_str(&opts.url)
            .map_err(|e| backend(format!("PostgreSQL URL: {e}")))?;
        let tls = tls(opts)?;
        match (&tls, config.get_ssl_mode()) {
            (Some(_), _) => {
                config.ssl_mode(SslMode::Require);
            }
            (None, SslMode::Require) => {
                return Err(backend(
                    "the PostgreSQL URL requires TLS (sslmode=require) but no CA file is \
                     configured to verify the server with",
                ));
            }
            (None, _) => {
                config.ssl_mode(SslMode::Disable);
            }
        }
        let mut options = config.get_options().unwrap_or_default().to_owned();
        let ms = opts.statement_timeout.as_millis();
        options.push_str(&format!(
            " -c statement_timeout={ms} -c idle_in_transaction_session_timeout={}",
            ms.saturating_mul(2)
        ));
        if let Some(schema) = &opts.schema {
            if !valid_schema(schema) {
                return Err(backend(format!(
                    "PostgreSQL schema name {schema:?}: letters, digits and _ only"
                )));
            }
            options.push_str(&format!(" -c search_path={schema}"));
        }
        config.options(options.trim());
        config.connect_timeout(opts.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("kmipd");
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kmipd-pg")
            .enable_all()
            .build()
            .map_err(backend)?;
        let manager = match tls {
            Some(t) => Manager::from_config(config, t, manager_config),
            None => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(opts.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(backend)?;
        let store = PgStore {
            runtime: Some(runtime),
            inner: Arc::new(Inner {
                pool,
                keyring: RwLock::new(Keyring::default()),
                corrupt: Mutex::new(BTreeSet::new()),
                deadline: opts.deadline,
                counts: Counts::default(),
                kek_source: OnceLock::new(),
                learning: tokio::sync::Mutex::new(()),
                counted: Mutex::new(None),
                provisional: AtomicU64::new(0),
                hints: Mutex::new(HashMap::new()),
            }),
        };
        let schema = opts.schema.clone();
        store.run(move |inner| async move { migrate(&inner, schema).await })?;
        Ok(store)
    }

    /// Opens and unlocks with one KEK (a new store registers it as its first KEK).
    pub fn open_with_kek(opts: &PgOptions, kek: Kek) -> Result<PgStore, StoreError> {
        let s = PgStore::open(opts)?;
        s.unlock(vec![kek])?;
        Ok(s)
    }

    /// Runs `f` on the store's runtime and waits for it (bounded by the deadline plus a
    /// margin, as a backstop for the operation's own bounds).
    pub(crate) fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let rt = self
            .runtime
            .as_ref()
            .ok_or_else(|| backend("the store is closed"))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = with_request_deadline(crate::deadline::current(), f(self.inner.clone()));
        let limit = self.inner.deadline + Duration::from_secs(10);
        rt.spawn(async move {
            let r = match tokio::time::timeout(limit, fut).await {
                Ok(r) => r,
                Err(_) => Err(backend(format!(
                    "database operation did not finish within {limit:?}"
                ))),
            };
            let _ = tx.send(r);
        });
        rx.recv()
            .map_err(|_| backend("the store's runtime stopped during the operation"))?
    }

    /// Records found damaged since the store was opened (by this node).
    pub fn corrupt_records(&self) -> Vec<String> {
        self.inner
            .corrupt
            .lock()
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// This node's commit counts and its connection pool now (never waits on the database).
    pub fn stats(&self) -> PgStats {
        let c = &self.inner.counts;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let pool = self.inner.pool.status();
        PgStats {
            commits: n(&c.commits),
            commit_failures: [
                ("conflict", n(&c.conflicts)),
                ("database", n(&c.database)),
                ("keyring", n(&c.keyring)),
                ("corrupt", n(&c.corrupt)),
            ],
            pool_max: pool.max_size,
            pool_open: pool.size,
            pool_idle: pool.available,
            pool_waiting: pool.waiting,
        }
    }

    /// [`stored_objects`](Self::stored_objects), counted again only when this node's last
    /// count is older than `max_age` (else that count): for figures read often, such as a
    /// metrics scrape, where a `count(*)` each time would scan the table every few seconds.
    pub fn object_count(&self, max_age: Duration) -> Result<u64, StoreError> {
        if let Ok(last) = self.inner.counted.lock()
            && let Some((at, n)) = *last
            && at.elapsed() < max_age
        {
            return Ok(n);
        }
        let n = self.stored_objects()?;
        if let Ok(mut last) = self.inner.counted.lock() {
            *last = Some((Instant::now(), n));
        }
        Ok(n)
    }

    /// The number of objects in the database (a `count(*)`).
    pub fn stored_objects(&self) -> Result<u64, StoreError> {
        self.run(|inner| async move {
            retrying(&inner, |conn| async move {
                let row = conn
                    .client()?
                    .query_one("SELECT count(*) FROM kmipd_objects", &[])
                    .await
                    .map_err(|e| classify(&e))?;
                let n: i64 = row.try_get(0).map_err(|e| classify(&e))?;
                conn.release();
                Ok(u64::try_from(n).unwrap_or_default())
            })
            .await
        })
    }
}

/// Migration [`schema::ROTATION_TERMS`]: the rotation due date term of every stored object that
/// has one (inside the migration's transaction).
async fn add_rotation_terms(c: &deadpool_postgres::ClientWrapper) -> Result<(), Failure> {
    let rows = c
        .query("SELECT uid, record FROM kmipd_objects", &[])
        .await
        .map_err(|e| classify(&e))?;
    for row in rows {
        let uid: String = row.try_get(0).map_err(|e| classify(&e))?;
        let bytes: Vec<u8> = row.try_get(1).map_err(|e| classify(&e))?;
        let parsed = crate::record::parse(&uid, &bytes).map_err(Failure::Fatal)?;
        if let Some((term, Some(date))) = crate::query::rotation_term(&parsed.into_shell()) {
            c.execute(
                "INSERT INTO kmipd_terms (uid, term, date) VALUES ($1, $2, $3)",
                &[&uid, &term, &date],
            )
            .await
            .map_err(|e| classify(&e))?;
        }
    }
    Ok(())
}

/// Applies the missing migrations under the migration lock; refuses a newer schema.
async fn migrate(inner: &Arc<Inner>, schema: Option<String>) -> Result<(), StoreError> {
    retrying(inner, move |conn| {
        let schema = schema.clone();
        async move {
            let c = conn.client()?;
            let mut sql = String::from("BEGIN;");
            sql.push_str(&format!(
                "SELECT pg_advisory_xact_lock({LOCK_NS}, {LOCK_MIGRATE});"
            ));
            if let Some(s) = &schema {
                sql.push_str(&format!("CREATE SCHEMA IF NOT EXISTS {s};"));
            }
            sql.push_str(schema::CREATE_VERSION_TABLE);
            c.batch_execute(&sql).await.map_err(|e| classify(&e))?;
            let row = c
                .query_one("SELECT max(version) FROM kmipd_schema", &[])
                .await
                .map_err(|e| classify(&e))?;
            let have: Option<i32> = row.try_get(0).map_err(|e| classify(&e))?;
            let have = have.unwrap_or(0);
            if have > SCHEMA_VERSION {
                let _ = c.batch_execute("ROLLBACK").await;
                return Err(Failure::Fatal(StoreError::Incompatible(format!(
                    "the database schema is version {have}, newer than this kmipd knows \
                     ({SCHEMA_VERSION}): it was written by a newer kmipd; upgrade this node"
                ))));
            }
            for (version, ddl) in schema::MIGRATIONS {
                if *version > have {
                    c.batch_execute(ddl).await.map_err(|e| classify(&e))?;
                    c.execute("INSERT INTO kmipd_schema (version) VALUES ($1)", &[version])
                        .await
                        .map_err(|e| classify(&e))?;
                    if *version == schema::ROTATION_TERMS {
                        add_rotation_terms(c).await?;
                    }
                }
            }
            c.batch_execute("COMMIT").await.map_err(|e| classify(&e))?;
            conn.release();
            Ok(())
        }
    })
    .await
}

impl ObjectStore for PgStore {
    fn get(&self, uid: &str) -> Result<Option<ManagedObject>, StoreError> {
        Ok(self.get_revised(uid)?.map(|(o, _)| o))
    }

    /// The record and its revision, read in one statement.
    fn get_revised(&self, uid: &str) -> Result<Option<(ManagedObject, Revision)>, StoreError> {
        let uid = uid.to_owned();
        self.run(move |inner| async move {
            let row = retrying(&inner, |conn| {
                let uid = uid.clone();
                async move {
                    let c = conn.client()?;
                    let stmt = c
                        .prepare_cached("SELECT record, revision FROM kmipd_objects WHERE uid = $1")
                        .await
                        .map_err(|e| classify(&e))?;
                    let row = c
                        .query_opt(&stmt, &[&uid])
                        .await
                        .map_err(|e| classify(&e))?;
                    let out = match row {
                        Some(r) => Some((
                            r.try_get::<_, Vec<u8>>(0).map_err(|e| classify(&e))?,
                            r.try_get::<_, i64>(1).map_err(|e| classify(&e))?,
                        )),
                        None => None,
                    };
                    conn.release();
                    Ok(out)
                }
            })
            .await?;
            match row {
                Some((raw, rev)) => Ok(Some((inner.decode(&uid, &raw).await?, revision(rev)))),
                None => Ok(None),
            }
        })
    }

    fn all(&self) -> Result<Vec<ManagedObject>, StoreError> {
        self.find(&Query::default())
    }

    /// Narrows by the indexed filters in the database (`kmipd_terms`), in creation order,
    /// then applies [`Query::matches`] to the decoded objects.
    fn find(&self, query: &Query) -> Result<Vec<ManagedObject>, StoreError> {
        self.inner.current()?;
        let (sql, params) = select_sql(query, None)?;
        let query = query.clone();
        self.run(move |inner| async move {
            let params = Arc::new(params);
            let sql = Arc::new(sql);
            let rows = retrying(&inner, |conn| {
                let (sql, params) = (sql.clone(), params.clone());
                async move {
                    let rows = select_rows(conn.client()?, &sql, &params).await?;
                    conn.release();
                    Ok(rows)
                }
            })
            .await?;
            Ok(inner
                .decode_listed(rows)
                .await?
                .into_iter()
                .filter(|o| query.matches(o))
                .collect())
        })
    }

    /// One transaction (`commit.rs`).
    fn commit(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.run(move |inner| async move {
            let r = commit::commit(&inner, changes).await;
            inner.counts.count(&r);
            r
        })
    }

    /// Spawns [`commit`](Self::commit) on the store's runtime; `done` runs there.
    fn commit_then(&self, changes: Vec<Change>, done: crate::CommitDone) {
        let Some(rt) = self.runtime.as_ref() else {
            return done(Err(backend("the store is closed")));
        };
        let inner = self.inner.clone();
        let limit = self.inner.deadline + Duration::from_secs(10);
        let request = crate::deadline::current();
        rt.spawn(async move {
            let r = if changes.is_empty() {
                Ok(())
            } else {
                let commit = with_request_deadline(request, commit::commit(&inner, changes));
                match tokio::time::timeout(limit, commit).await {
                    Ok(r) => r,
                    Err(_) => Err(backend(format!(
                        "commit did not finish within {limit:?}; its outcome is unknown"
                    ))),
                }
            };
            inner.counts.count(&r);
            done(r);
        });
    }

    /// A provisional number, without a round trip: the commit that stores the object takes
    /// its sequence number from `kmipd_sequence` in its own first round trip (`commit.rs`).
    fn creation_sequence(&self) -> Result<u64, StoreError> {
        let n = self.inner.provisional.fetch_add(1, Ordering::Relaxed);
        Ok(PROVISIONAL_SEQUENCE | (n & !PROVISIONAL_SEQUENCE))
    }

    /// `nextval` of the database sequence `kmipd_sequence` (shared by every node).
    fn next_sequence(&self) -> Result<u64, StoreError> {
        self.run(|inner| async move {
            retrying(&inner, |conn| async move {
                let row = conn
                    .client()?
                    .query_one("SELECT nextval('kmipd_sequence')", &[])
                    .await
                    .map_err(|e| classify(&e))?;
                let n: i64 = row.try_get(0).map_err(|e| classify(&e))?;
                conn.release();
                u64::try_from(n).map_err(|_| Failure::Fatal(backend("negative sequence")))
            })
            .await
        })
    }

    /// Reads and commits on the caller's runtime (`fetch.rs`).
    fn async_access(&self) -> Option<Arc<dyn crate::prefetch::AsyncAccess>> {
        Some(Arc::new(fetch::PgAsync(self.inner.clone())))
    }

    /// From `kmipd_meta` (`setting/NAME`).
    fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.meta_value(crate::setting_key(name))
    }

    /// Into `kmipd_meta`, one statement (every node reads it from there).
    fn set_setting(&self, name: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        // Forgotten first: a failed write may still have happened.
        self.inner.forget_hint(name);
        self.set_meta_value(crate::setting_key(name), value)
    }
}
