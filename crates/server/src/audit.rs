//! The audit log: one record per batch item, hash-chained, durable before the reply is sent.
//!
//! **What a record holds.** Time (RFC 3339, UTC), the caller's identity (from its verified
//! certificate), the peer address, the operation, the object identifiers the item named or
//! produced, the Result Status and Result Reason (and the server's fixed Result Message). Never
//! key material: the record is built only from those fields, never from payload bytes, so a
//! registered key's bytes cannot reach the file (a test registers a key and searches the file
//! for it).
//!
//! **Format.** One JSON object per line, fields in this order:
//! `{"seq":N,"time":..,"identity":..,"peer":..,"operation":..,"uids":[..],"status":..,
//! "reason":..,"message":..,"prev":"<hex>","hash":"<hex>"}`. `seq` counts records from 1.
//! `hash` is the SHA-256 of the line up to (not including) `,"hash":`, followed by `}`; that
//! is, of the record without its own hash. `prev` is the previous record's `hash` (64 zeros for
//! the first record).
//!
//! **What [`verify`] catches** and how it names it:
//! - a record **edited** without fixing its hash: its own `hash` does not match;
//! - a record edited and re-hashed: the next record's `prev` no longer matches it;
//! - a record **removed**: `seq` jumps (record N is missing);
//! - records **reordered**: a `seq` smaller than expected, or the expected one found later.
//!
//! A chain without a key proves order and integrity only up to its last record: whoever can
//! write the file can cut its tail, or rewrite every record from some point on. [`verify`]
//! returns the count, and [`head`] the last hash, so that an operator can keep both elsewhere
//! (a log shipper, a ticket) and notice a shorter or rewritten file later.
//!
//! **Durability.** A request's records are on disk (`fdatasync`) before its reply is sent.
//! Two threads of their own do the work, so no request thread waits on a lock or the disk:
//! the **writer** takes every submission queued so far, renders their records in order (the
//! chain), writes them with one `write` and hands them to the **syncer**, which runs one
//! `fdatasync` for everything written before it started and then answers each request
//! ([`AuditLog::submit`] resolves; [`AuditLog::append`] returns). While the syncer waits for
//! the disk the next submissions queue up at the writer: that is the group commit, and under
//! load one sync covers the records of many connections. After an I/O failure the log is
//! poisoned: every later request fails, and the server withholds its reply.
//!
//! **Crash.** A line torn by a crash (no final newline) was never acknowledged: its request got
//! no reply. [`AuditLog::open`] cuts it off so the chain continues from the last whole record.
//!
//! **Rotation.** [`AuditLog::rotate`] (the writer thread, between two writes) syncs the file,
//! renames it to [`rotated_name`] (`<file>.<last record number>`) and continues the chain in a
//! new file at the same path. Opening an empty log continues the newest rotated file's chain.
//! [`Verifier`] checks a chain across files, or from a given hash on.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use kmipd_proto::enums::result_status;
use kmipd_proto::message::ResponseMessage;
use kmipd_proto::reader::StructReader;
use kmipd_proto::spec;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Most identifiers recorded for one item (a Locate may answer thousands); the rest are counted.
const MAX_UIDS: usize = 64;

/// What went wrong with the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading, writing or syncing the file failed.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a record.
    #[error("audit record {record}: not a valid record ({reason})")]
    Malformed {
        /// The record number (line number, from 1).
        record: usize,
        /// Why.
        reason: String,
    },
    /// A record's content does not match its hash, or the next record's chain hash.
    #[error("audit record {record} was edited ({detail})")]
    Edited {
        /// The record number.
        record: usize,
        /// What does not match.
        detail: String,
    },
    /// A record is missing.
    #[error(
        "audit record {record} was removed (the record after record {after} is record {found})"
    )]
    Removed {
        /// The missing record's number.
        record: usize,
        /// The last good record before the gap.
        after: usize,
        /// The record found in its place.
        found: usize,
    },
    /// Records are out of order.
    #[error("audit records reordered: line {line} holds record {found}, expected record {record}")]
    Reordered {
        /// The record number expected at this line.
        record: usize,
        /// The line (from 1).
        line: usize,
        /// The record number found there.
        found: usize,
    },
    /// The audit log's lock was poisoned by a panic elsewhere.
    #[error("audit log unusable after an earlier failure")]
    Poisoned,
    /// A rotation was asked of a file that holds no record.
    #[error("audit log {0} holds no record: nothing to rotate")]
    NothingToRotate(PathBuf),
    /// The first record checked does not continue the hash given to [`Verifier::after`].
    #[error(
        "audit record {found} is the first one checked but does not continue the given hash \
         (records before it are missing, or the hash is not the one the earlier files end with)"
    )]
    Unanchored {
        /// Its record number.
        found: usize,
    },
}

/// One audit record (without its own hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Record number, from 1.
    pub seq: u64,
    /// RFC 3339 time, UTC.
    pub time: String,
    /// The caller's identity.
    pub identity: String,
    /// The peer's address.
    pub peer: String,
    /// The Operation's name (`Get`), or `-` when the request named none.
    pub operation: String,
    /// Unique Identifiers the item named or produced.
    pub uids: Vec<String>,
    /// Result Status name (`Success`, `OperationFailed`, `OperationUndone`, `NotRun`).
    pub status: String,
    /// Result Reason name, on failure.
    pub reason: Option<String>,
    /// Result Message (the server's fixed text), on failure.
    pub message: Option<String>,
    /// The previous record's hash.
    pub prev: String,
}

/// The parts of one batch item that are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemSummary {
    /// Operation name.
    pub operation: String,
    /// Unique Identifiers.
    pub uids: Vec<String>,
    /// Result Status name.
    pub status: String,
    /// Result Reason name.
    pub reason: Option<String>,
    /// Result Message.
    pub message: Option<String>,
}

/// Most submissions the writer renders into one `write` (and so at most one sync).
const MAX_JOBS_PER_WRITE: usize = 1024;

/// What the writer thread is asked.
enum ToWriter {
    /// One request's records.
    Job(Job),
    /// Move the file aside and continue the chain in a new one ([`AuditLog::rotate`]).
    Rotate(mpsc::Sender<Result<Rotated, AuditError>>),
}

/// A finished rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// Where the records written so far now are.
    pub file: PathBuf,
    /// The number of the last record in it.
    pub last_seq: u64,
    /// Its hash: the `prev` of the first record of the new file.
    pub last_hash: String,
}

/// One request's records, waiting for the writer.
struct Job {
    identity: String,
    peer: String,
    items: Vec<ItemSummary>,
    done: oneshot::Sender<Result<(), AuditError>>,
}

/// Records written to the file (page cache), waiting for the syncer.
struct Written {
    /// The file they were written to (a rotation may have replaced the writer's since).
    file: Arc<File>,
    done: Vec<oneshot::Sender<Result<(), AuditError>>>,
}

struct Inner {
    path: PathBuf,
    /// To the writer thread; `None` only while dropping.
    jobs: Option<mpsc::Sender<ToWriter>>,
    /// The writer and syncer threads, joined on drop so that the file is closed and every
    /// submitted record answered before the log goes away.
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer after the records already submitted; the syncer
        // ends when the writer has gone.
        drop(self.jobs.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// An open audit log; cheap to clone and share between connections.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A copy of an I/O error for each of the requests it failed (`io::Error` is not `Clone`).
fn io_copy(path: &Path, e: &std::io::Error) -> AuditError {
    AuditError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(e.kind(), e.to_string()),
    }
}

impl AuditLog {
    /// Opens (creating when absent) the audit log at `path`, continuing its chain, and starts
    /// its writer and syncer threads. A torn last line (crash during a write) is cut off.
    pub fn open(path: impl AsRef<Path>) -> Result<AuditLog, AuditError> {
        let path = path.as_ref();
        let err = io_err(path);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(&err)?;
        let (mut seq, mut last_hash) = last_record(&mut file, path, true)?;
        if seq == 0
            && let Some(rotated) = newest_rotated(path)?
        {
            // An empty file after a rotation (or a crash in the middle of one): the chain
            // goes on from the file the records were moved to.
            let mut f = File::open(&rotated).map_err(io_err(&rotated))?;
            (seq, last_hash) = last_record(&mut f, &rotated, false)?;
        }
        // The file's directory entry must survive a crash too.
        sync_parent(path);
        let (jobs, job_rx) = mpsc::channel::<ToWriter>();
        let (written, written_rx) = mpsc::channel::<Written>();
        let poisoned = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            path: path.to_owned(),
            file: Arc::new(file),
            seq,
            last_hash,
            poisoned: poisoned.clone(),
        };
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(f)
                .map_err(&err)
        };
        let w = spawn(
            "kmipd-audit-write",
            Box::new(move || writer.run(&job_rx, &written)),
        )?;
        let sync_path = path.to_owned();
        let s = spawn(
            "kmipd-audit-sync",
            Box::new(move || sync_loop(&sync_path, &written_rx, &poisoned)),
        )?;
        Ok(AuditLog {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                jobs: Some(jobs),
                threads: vec![w, s],
            }),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Moves the file aside, to `<file name>.<last record number, 12 digits>` beside it, and
    /// continues the chain (record numbers and hashes) in a new, empty file at the same path.
    /// Records submitted before this call are in the rotated file, later ones in the new
    /// file. The rotated file is synced before it is renamed, and the directory after the new
    /// file is made. Refused when the file holds no record. Blocking; not from async code.
    pub fn rotate(&self) -> Result<Rotated, AuditError> {
        let (tx, rx) = mpsc::channel();
        let jobs = self.inner.jobs.as_ref().ok_or(AuditError::Poisoned)?;
        jobs.send(ToWriter::Rotate(tx))
            .map_err(|_| AuditError::Poisoned)?;
        rx.recv().map_err(|_| AuditError::Poisoned)?
    }

    /// Records every batch item of one request/response exchange and returns once the records
    /// are durable. Blocking (waits for the writer's `fdatasync`); not from async code.
    pub fn record_batch(
        &self,
        identity: &str,
        peer: Option<SocketAddr>,
        request: &Ttlv,
        response: &Ttlv,
    ) -> Result<(), AuditError> {
        let items = summarize(request, response);
        let peer = peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
        self.append(identity, &peer, &items)
    }

    /// [`AuditLog::record_batch`] from async code: no thread is blocked while the records are
    /// written and synced.
    pub async fn record_batch_async(
        &self,
        identity: &str,
        peer: Option<SocketAddr>,
        request: &Ttlv,
        response: &Ttlv,
    ) -> Result<(), AuditError> {
        let items = summarize(request, response);
        let peer = peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
        self.submit(identity.to_owned(), peer, items).await
    }

    /// Appends one record per item and returns once they are durable. Blocking; not from
    /// async code (use [`AuditLog::submit`] there).
    pub fn append(
        &self,
        identity: &str,
        peer: &str,
        items: &[ItemSummary],
    ) -> Result<(), AuditError> {
        if items.is_empty() {
            return Ok(());
        }
        let rx = self.enqueue(identity.to_owned(), peer.to_owned(), items.to_vec())?;
        rx.blocking_recv().map_err(|_| AuditError::Poisoned)?
    }

    /// Hands one request's records to the writer; the future resolves once they are durable
    /// (or the log failed). The records are queued at once, in call order: a request whose
    /// future is dropped still gets its records.
    pub fn submit(
        &self,
        identity: String,
        peer: String,
        items: Vec<ItemSummary>,
    ) -> impl Future<Output = Result<(), AuditError>> + Send + 'static {
        let queued = if items.is_empty() {
            None
        } else {
            Some(self.enqueue(identity, peer, items))
        };
        async move {
            match queued {
                None => Ok(()),
                Some(Err(e)) => Err(e),
                Some(Ok(rx)) => rx.await.map_err(|_| AuditError::Poisoned)?,
            }
        }
    }

    fn enqueue(
        &self,
        identity: String,
        peer: String,
        items: Vec<ItemSummary>,
    ) -> Result<oneshot::Receiver<Result<(), AuditError>>, AuditError> {
        let (done, rx) = oneshot::channel();
        let job = Job {
            identity,
            peer,
            items,
            done,
        };
        let jobs = self.inner.jobs.as_ref().ok_or(AuditError::Poisoned)?;
        jobs.send(ToWriter::Job(job))
            .map_err(|_| AuditError::Poisoned)?;
        Ok(rx)
    }
}

/// The writer thread's state: the file's tail and the chain.
struct Writer {
    path: PathBuf,
    file: Arc<File>,
    seq: u64,
    last_hash: String,
    /// Set by either thread after an I/O failure: from then on nothing is written and every
    /// request fails (after a failed `fdatasync` Linux may have dropped the dirty pages, so a
    /// later successful one would prove nothing).
    poisoned: Arc<AtomicBool>,
}

impl Writer {
    /// Takes every queued submission, renders them into one buffer, writes it with one
    /// `write` (a crash leaves whole records or a torn last line) and passes them to the
    /// syncer. While the syncer waits for the disk, the next submissions queue up here: that
    /// is the group commit, without a lock or a thread per waiting request.
    fn run(mut self, jobs: &mpsc::Receiver<ToWriter>, written: &mpsc::Sender<Written>) {
        let mut buf = String::new();
        let mut carried: Option<ToWriter> = None;
        loop {
            let first = match carried.take() {
                Some(m) => m,
                None => match jobs.recv() {
                    Ok(m) => m,
                    Err(_) => return,
                },
            };
            let first = match first {
                ToWriter::Job(j) => j,
                ToWriter::Rotate(reply) => {
                    let _ = reply.send(self.rotate());
                    continue;
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_JOBS_PER_WRITE {
                match jobs.try_recv() {
                    Ok(ToWriter::Job(j)) => batch.push(j),
                    // After this batch: a rotation splits the records where it was asked.
                    Ok(other) => {
                        carried = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.write_batch(batch, &mut buf, written);
        }
    }

    fn write_batch(&mut self, batch: Vec<Job>, buf: &mut String, written: &mpsc::Sender<Written>) {
        if self.poisoned.load(Ordering::Acquire) {
            for j in batch {
                let _ = j.done.send(Err(AuditError::Poisoned));
            }
            return;
        }
        buf.clear();
        let time = now_rfc3339();
        let (mut seq, mut prev) = (self.seq, self.last_hash.clone());
        let mut done = Vec::with_capacity(batch.len());
        for j in batch {
            let mark = (buf.len(), seq, prev.clone());
            match render_job(&j, &time, &mut seq, &mut prev, buf) {
                Ok(()) => done.push(j.done),
                Err(e) => {
                    // This request only: its records are dropped, the chain goes on.
                    buf.truncate(mark.0);
                    (seq, prev) = (mark.1, mark.2);
                    let _ = j.done.send(Err(e));
                }
            }
        }
        if done.is_empty() {
            return;
        }
        if let Err(e) = (&*self.file).write_all(buf.as_bytes()) {
            self.poisoned.store(true, Ordering::Release);
            for d in done {
                let _ = d.send(Err(io_copy(&self.path, &e)));
            }
            return;
        }
        (self.seq, self.last_hash) = (seq, prev);
        let w = Written {
            file: self.file.clone(),
            done,
        };
        if let Err(mpsc::SendError(w)) = written.send(w) {
            for d in w.done {
                let _ = d.send(Err(AuditError::Poisoned));
            }
        }
    }

    /// Syncs the file, renames it to its rotated name and creates a new one at the path.
    /// A failure before the rename changes nothing; one after it poisons the log (there is no
    /// file to write to).
    fn rotate(&mut self) -> Result<Rotated, AuditError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(AuditError::Poisoned);
        }
        let err = io_err(&self.path);
        if self.file.metadata().map_err(&err)?.len() == 0 {
            return Err(AuditError::NothingToRotate(self.path.clone()));
        }
        let rotated = rotated_name(&self.path, self.seq);
        if rotated.exists() {
            return Err(AuditError::Io {
                path: rotated,
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a rotated audit log of that name exists already",
                ),
            });
        }
        self.file.sync_data().map_err(&err)?;
        std::fs::rename(&self.path, &rotated).map_err(&err)?;
        let created = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&self.path);
        match created {
            Ok(f) => {
                self.file = Arc::new(f);
                sync_parent(&self.path);
                Ok(Rotated {
                    file: rotated,
                    last_seq: self.seq,
                    last_hash: self.last_hash.clone(),
                })
            }
            Err(e) => {
                self.poisoned.store(true, Ordering::Release);
                Err(io_copy(&self.path, &e))
            }
        }
    }
}

/// Makes the directory entries of `path`'s directory durable (best effort: a directory that
/// cannot be opened is the file system's to report on the next write).
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Where a rotation moves the file whose last record is `last_seq`: `<name>.<12 digits>`
/// beside it (so rotated files sort in chain order).
pub fn rotated_name(path: &Path, last_seq: u64) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "audit.log".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!("{name}.{last_seq:012}"))
}

/// The rotated file of `path` with the highest record number, if any.
fn newest_rotated(path: &Path) -> Result<Option<PathBuf>, AuditError> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(None);
    };
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_owned(),
        None => PathBuf::from("."),
    };
    let prefix = format!("{name}.");
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
        let entry = entry.map_err(io_err(&dir))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(digits) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(n) = digits.parse::<u64>()
            && best.as_ref().is_none_or(|(m, _)| n > *m)
        {
            best = Some((n, entry.path()));
        }
    }
    Ok(best.map(|(_, p)| p))
}

/// Renders one request's records (one per item) onto `buf`, advancing the chain.
fn render_job(
    job: &Job,
    time: &str,
    seq: &mut u64,
    prev: &mut String,
    buf: &mut String,
) -> Result<(), AuditError> {
    for item in &job.items {
        *seq = seq.saturating_add(1);
        let record = Record {
            seq: *seq,
            time: time.to_owned(),
            identity: job.identity.clone(),
            peer: job.peer.clone(),
            operation: item.operation.clone(),
            uids: item.uids.clone(),
            status: item.status.clone(),
            reason: item.reason.clone(),
            message: item.message.clone(),
            prev: std::mem::take(prev),
        };
        let (line, hash) = render(&record)?;
        buf.push_str(&line);
        buf.push('\n');
        *prev = hash;
    }
    Ok(())
}

/// The syncer thread: one `fdatasync` (per file: two around a rotation) covers everything
/// written before it started, then every request it covered is answered.
fn sync_loop(path: &Path, written: &mpsc::Receiver<Written>, poisoned: &AtomicBool) {
    while let Ok(first) = written.recv() {
        let mut batch = vec![first];
        while let Ok(w) = written.try_recv() {
            batch.push(w);
        }
        let mut files: Vec<Arc<File>> = Vec::new();
        for w in &batch {
            if !files.iter().any(|f| Arc::ptr_eq(f, &w.file)) {
                files.push(w.file.clone());
            }
        }
        let synced = if poisoned.load(Ordering::Acquire) {
            Err(None)
        } else {
            files.iter().try_for_each(|f| f.sync_data()).map_err(Some)
        };
        if synced.is_err() {
            poisoned.store(true, Ordering::Release);
        }
        for d in batch.into_iter().flat_map(|w| w.done) {
            let r = match &synced {
                Ok(()) => Ok(()),
                Err(Some(e)) => Err(io_copy(path, e)),
                Err(None) => Err(AuditError::Poisoned),
            };
            let _ = d.send(r);
        }
    }
}

/// The record's line (without newline) and its hash.
fn render(record: &Record) -> Result<(String, String), AuditError> {
    let body = serde_json::to_string(record).map_err(|e| AuditError::Malformed {
        record: usize::try_from(record.seq).unwrap_or(usize::MAX),
        reason: e.to_string(),
    })?;
    let open = body.strip_suffix('}').unwrap_or(&body);
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    Ok((format!("{open},\"hash\":\"{hash}\"}}"), hash))
}

/// Splits a line into the record without its hash (what was hashed) and the stated hash.
fn split_hash(line: &str) -> Option<(String, &str)> {
    let (open, rest) = line.rsplit_once(",\"hash\":\"")?;
    let hash = rest.strip_suffix("\"}")?;
    Some((format!("{open}}}"), hash))
}

/// The last record's number and hash; with `cut`, a torn last line is cut off (otherwise it
/// is ignored).
fn last_record(file: &mut File, path: &Path, cut: bool) -> Result<(u64, String), AuditError> {
    let err = io_err(path);
    let len = file.metadata().map_err(&err)?.len();
    if len == 0 {
        return Ok((0, GENESIS.to_owned()));
    }
    // Records are small: the last whole one lies in the last 1 MiB.
    let start = len.saturating_sub(1 << 20);
    file.seek(SeekFrom::Start(start)).map_err(&err)?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).map_err(&err)?;
    let whole = match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) => i.saturating_add(1),
        None => 0,
    };
    if cut && whole < tail.len() {
        let keep = start.saturating_add(u64::try_from(whole).unwrap_or(u64::MAX));
        file.set_len(keep).map_err(&err)?;
        file.sync_data().map_err(&err)?;
    }
    let text = String::from_utf8_lossy(tail.get(..whole).unwrap_or_default());
    let Some(line) = text.lines().last() else {
        return Ok((0, GENESIS.to_owned()));
    };
    let (body, hash) = split_hash(line).ok_or_else(|| AuditError::Malformed {
        record: 0,
        reason: "last line has no hash".to_owned(),
    })?;
    let record: Record = serde_json::from_str(&body).map_err(|e| AuditError::Malformed {
        record: 0,
        reason: e.to_string(),
    })?;
    Ok((record.seq, hash.to_owned()))
}

/// Checks the whole chain of the file at `path`, which must start the chain (record 1);
/// returns the number of records. The error names the first record that was edited, removed
/// or reordered.
pub fn verify(path: impl AsRef<Path>) -> Result<usize, AuditError> {
    head(path).map(|(n, _)| n)
}

/// The number of records and the last record's hash (what an operator keeps elsewhere to
/// detect a cut or rewritten tail later), after checking the chain as [`verify`] does.
pub fn head(path: impl AsRef<Path>) -> Result<(usize, String), AuditError> {
    let mut v = Verifier::new();
    v.file(path.as_ref())?;
    Ok((v.records(), v.last_hash().to_owned()))
}

/// Checks a chain across files, in order: the rotated files of an audit log, oldest first,
/// then the current one. Each file must continue the one before it (record numbers and
/// hashes); the first must start the chain, or continue the hash given to
/// [`Verifier::after`].
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The record number expected next (`None`: the first record checked sets it).
    next_seq: Option<u64>,
    prev: String,
    records: usize,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new()
    }
}

impl Verifier {
    /// A chain from its first record (record 1, after 64 zeros).
    pub fn new() -> Self {
        Verifier {
            next_seq: Some(1),
            prev: GENESIS.to_owned(),
            records: 0,
        }
    }

    /// A chain that continues a record whose hash is `hash` (the last hash of the files
    /// before, kept by the operator, or printed by `kmipd admin rotate-audit`).
    pub fn after(hash: &str) -> Self {
        Verifier {
            next_seq: None,
            prev: hash.to_ascii_lowercase(),
            records: 0,
        }
    }

    /// Records checked so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// The hash of the last record checked (the starting hash before any).
    pub fn last_hash(&self) -> &str {
        &self.prev
    }

    /// The number of the last record checked, if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.next_seq
            .map(|n| n.saturating_sub(1))
            .filter(|_| self.records > 0)
    }

    /// Checks the next file of the chain, reading it line by line (memory does not grow with
    /// the file). Record numbers in errors are the records' own.
    pub fn file(&mut self, path: &Path) -> Result<(), AuditError> {
        let file = File::open(path).map_err(io_err(path))?;
        let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        for (i, text) in BufReader::new(file).lines().enumerate() {
            let line = i.saturating_add(1);
            let text = text.map_err(io_err(path))?;
            let malformed = |reason: String| AuditError::Malformed {
                record: line,
                reason,
            };
            let (body, stated) =
                split_hash(&text).ok_or_else(|| malformed("no hash field".to_owned()))?;
            let record: Record =
                serde_json::from_str(&body).map_err(|e| malformed(e.to_string()))?;
            let found = as_usize(record.seq);
            let expected = match self.next_seq {
                Some(n) => n,
                None if record.prev == self.prev => record.seq,
                None => return Err(AuditError::Unanchored { found }),
            };
            if record.seq != expected {
                if record.seq < expected || seq_after_line(path, line, expected)? {
                    return Err(AuditError::Reordered {
                        record: as_usize(expected),
                        line,
                        found,
                    });
                }
                return Err(AuditError::Removed {
                    record: as_usize(expected),
                    after: as_usize(expected.saturating_sub(1)),
                    found,
                });
            }
            if hex::encode(Sha256::digest(body.as_bytes())) != stated {
                return Err(AuditError::Edited {
                    record: found,
                    detail: "its content does not match its hash".to_owned(),
                });
            }
            if record.prev != self.prev {
                return Err(AuditError::Edited {
                    record: found.saturating_sub(1),
                    detail: format!("record {found} carries a different hash of it"),
                });
            }
            stated.clone_into(&mut self.prev);
            self.next_seq = Some(record.seq.saturating_add(1));
            self.records = self.records.saturating_add(1);
        }
        Ok(())
    }
}

/// True when a line after line `after` of the file holds record `seq` (a second pass, only
/// once a record is out of place: it tells a reordering from a removal).
fn seq_after_line(path: &Path, after: usize, seq: u64) -> Result<bool, AuditError> {
    #[derive(Deserialize)]
    struct SeqOnly {
        seq: u64,
    }
    let file = File::open(path).map_err(io_err(path))?;
    for text in BufReader::new(file).lines().skip(after) {
        let text = text.map_err(io_err(path))?;
        if serde_json::from_str::<SeqOnly>(&text).is_ok_and(|r| r.seq == seq) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The recorded parts of every batch item of an exchange. Items the server did not run (after
/// a failure under Stop) are recorded as `NotRun`; a request that could not be read at all is
/// recorded from the response's items.
pub fn summarize(request: &Ttlv, response: &Ttlv) -> Vec<ItemSummary> {
    let answers = ResponseMessage::from_ttlv(response)
        .map(|m| m.items)
        .unwrap_or_default();
    let asked = request_items(request);
    let n = asked.len().max(answers.len()).max(1);
    (0..n)
        .map(|i| {
            let q = asked.get(i);
            let a = answers.get(i);
            let op = q.and_then(|q| q.0).or_else(|| a.and_then(|a| a.operation));
            let mut uids = Vec::new();
            if let Some(p) = q.and_then(|q| q.1) {
                collect_uids(p, &mut uids);
            }
            if let Some(p) = a.and_then(|a| a.payload.as_ref()) {
                collect_uids(p, &mut uids);
            }
            if uids.len() > MAX_UIDS {
                let more = uids.len().saturating_sub(MAX_UIDS);
                uids.truncate(MAX_UIDS);
                uids.push(format!("(+{more} more)"));
            }
            ItemSummary {
                operation: op.map_or_else(|| "-".to_owned(), |o| enum_name(tag::OPERATION, o)),
                uids,
                status: a.map_or_else(
                    || "NotRun".to_owned(),
                    |a| enum_name(tag::RESULT_STATUS, a.result_status),
                ),
                reason: a
                    .and_then(|a| a.result_reason)
                    .map(|r| enum_name(tag::RESULT_REASON, r)),
                message: a
                    .filter(|a| a.result_status != result_status::SUCCESS)
                    .and_then(|a| a.result_message.clone()),
            }
        })
        .collect()
}

/// (Operation, Request Payload) of each batch item, read leniently (a malformed request still
/// shows what can be read).
fn request_items(request: &Ttlv) -> Vec<(Option<u32>, Option<&Ttlv>)> {
    let Ok(r) = StructReader::any(request) else {
        return Vec::new();
    };
    r.repeated(tag::BATCH_ITEM)
        .map(|b| match StructReader::any(b) {
            Ok(b) => (
                b.enumeration(tag::OPERATION).ok().flatten(),
                b.optional(tag::REQUEST_PAYLOAD),
            ),
            Err(_) => (None, None),
        })
        .collect()
}

/// Text identifiers at the top of a payload (Unique Identifier and the key-pair forms), in
/// order, without repeats. Nothing else of the payload is looked at.
fn collect_uids(payload: &Ttlv, out: &mut Vec<String>) {
    let Value::Structure(items) = &payload.value else {
        return;
    };
    for i in items {
        if ![
            tag::UNIQUE_IDENTIFIER,
            tag::PRIVATE_KEY_UNIQUE_IDENTIFIER,
            tag::PUBLIC_KEY_UNIQUE_IDENTIFIER,
        ]
        .contains(&i.tag)
        {
            continue;
        }
        let uid = match &i.value {
            Value::TextString(s) => s.clone(),
            // 2.x: an identifier of this batch by position or kind.
            Value::Integer(n) => format!("(batch item {n})"),
            Value::Enumeration(_) => "(placeholder)".to_owned(),
            _ => continue,
        };
        if !out.contains(&uid) {
            out.push(uid);
        }
    }
}

/// The XML name of an enumeration value of `t`, or its number in hex.
fn enum_name(t: kmipd_ttlv::Tag, v: u32) -> String {
    spec::enum_of_tag(t.value())
        .and_then(|e| e.canonical_name(v))
        .map_or_else(|| format!("0x{v:08X}"), str::to_owned)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmipd_ops::{Engine, Principal};
    use kmipd_proto::enums::{object_type, operation};
    use kmipd_proto::message::{ProtocolVersion, RequestBatchItem, RequestMessage};
    use kmipd_proto::reader;

    fn request(items: Vec<(u32, Vec<Ttlv>)>) -> Ttlv {
        RequestMessage::new(
            ProtocolVersion::V1_4,
            items
                .into_iter()
                .map(|(op, p)| RequestBatchItem::new(op, p))
                .collect(),
        )
        .to_ttlv()
    }

    const KEY: [u8; 16] = *b"\x8b\x13SECRETKEYBYTES";

    fn register_key() -> Ttlv {
        request(vec![(
            operation::REGISTER,
            vec![
                reader::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
                reader::structure(
                    tag::TEMPLATE_ATTRIBUTE,
                    vec![reader::structure(
                        tag::ATTRIBUTE,
                        vec![
                            reader::text(tag::ATTRIBUTE_NAME, "Cryptographic Usage Mask"),
                            reader::int(tag::ATTRIBUTE_VALUE, 12),
                        ],
                    )],
                ),
                reader::structure(
                    tag::SYMMETRIC_KEY,
                    vec![reader::structure(
                        tag::KEY_BLOCK,
                        vec![
                            reader::enumeration(tag::KEY_FORMAT_TYPE, 1),
                            reader::structure(
                                tag::KEY_VALUE,
                                vec![reader::bytes(tag::KEY_MATERIAL, KEY.to_vec())],
                            ),
                            reader::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, 3),
                            reader::int(tag::CRYPTOGRAPHIC_LENGTH, 128),
                        ],
                    )],
                ),
            ],
        )])
    }

    fn uid_of(response: &Ttlv) -> String {
        let m = ResponseMessage::from_ttlv(response).unwrap();
        let p = m.items[0].payload.as_ref().unwrap();
        reader::as_text(
            StructReader::any(p)
                .unwrap()
                .required(tag::UNIQUE_IDENTIFIER)
                .unwrap(),
        )
        .unwrap()
        .to_owned()
    }

    /// A log with five records made by a real engine: Register, Get (which returns the key),
    /// Get of a missing object, and a batch of two.
    fn sample(dir: &Path) -> (PathBuf, String) {
        let path = dir.join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        let engine = Engine::in_memory();
        let who = Principal::new("alice");
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let exchange = |req: Ttlv| {
            let resp = engine.handle_message(&who, &req);
            log.record_batch("alice", Some(peer), &req, &resp).unwrap();
            resp
        };
        let uid = uid_of(&exchange(register_key()));
        let uid_item = || vec![reader::text(tag::UNIQUE_IDENTIFIER, uid.clone())];
        exchange(request(vec![(operation::GET, uid_item())]));
        exchange(request(vec![(
            operation::GET,
            vec![reader::text(tag::UNIQUE_IDENTIFIER, "missing")],
        )]));
        exchange(request(vec![
            (operation::GET_ATTRIBUTES, uid_item()),
            (operation::DESTROY, uid_item()),
        ]));
        (path, uid)
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Writes `lines` as the log at `path`, then verifies it.
    fn write_and_verify(path: &Path, lines: &[String]) -> Result<usize, AuditError> {
        let mut s = lines.join("\n");
        s.push('\n');
        std::fs::write(path, s).unwrap();
        verify(path)
    }

    /// Applies `edit` to the lines of the log at `path`, then verifies it.
    fn edit_and_verify(
        path: &Path,
        edit: impl FnOnce(&mut Vec<String>),
    ) -> Result<usize, AuditError> {
        let mut l = lines(path);
        edit(&mut l);
        write_and_verify(path, &l)
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "kmipd-audit-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn records_hold_who_what_and_result_and_never_key_material() {
        let dir = tempdir("content");
        let (path, uid) = sample(&dir);
        assert_eq!(verify(&path).unwrap(), 5);
        let text = std::fs::read(&path).unwrap();
        for needle in [
            &KEY[..],
            &KEY[2..],
            hex::encode(KEY).as_bytes(),
            b"SECRETKEYBYTES",
        ] {
            assert!(
                !text.windows(needle.len()).any(|w| w == needle),
                "key material in the audit log"
            );
        }
        let records: Vec<Record> = lines(&path)
            .iter()
            .map(|l| serde_json::from_str(&split_hash(l).unwrap().0).unwrap())
            .collect();
        let summary: Vec<(&str, &str, Option<&str>)> = records
            .iter()
            .map(|r| (r.operation.as_str(), r.status.as_str(), r.reason.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                ("Register", "Success", None),
                ("Get", "Success", None),
                ("Get", "OperationFailed", Some("ItemNotFound")),
                ("GetAttributes", "Success", None),
                ("Destroy", "Success", None),
            ]
        );
        assert_eq!(records[0].uids, vec![uid]);
        assert_eq!(records[2].uids, ["missing"]);
        assert!(
            records
                .iter()
                .all(|r| r.identity == "alice" && r.peer == "127.0.0.1:40000")
        );
        assert_eq!(records[0].prev, GENESIS);
        assert!(records[2].message.is_some());
        // Reopening continues the chain.
        let log = AuditLog::open(&path).unwrap();
        log.append(
            "bob",
            "-",
            &summarize(
                &register_key(),
                &Ttlv::new(tag::RESPONSE_MESSAGE, Value::Structure(vec![])),
            ),
        )
        .unwrap();
        assert_eq!(verify(&path).unwrap(), 6);
        let last: Record = serde_json::from_str(&split_hash(&lines(&path)[5]).unwrap().0).unwrap();
        assert_eq!((last.seq, last.status.as_str()), (6, "NotRun"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_edited_record_is_caught_with_or_without_a_fixed_hash() {
        let dir = tempdir("edit");
        let (path, _) = sample(&dir);
        let good = lines(&path);
        // Edited in place: its own hash no longer matches.
        let mut l = good.clone();
        l[2] = l[2].replace("alice", "mallory");
        let e = write_and_verify(&path, &l).unwrap_err();
        assert!(matches!(e, AuditError::Edited { record: 3, .. }), "{e}");
        assert!(e.to_string().contains("record 3 was edited"), "{e}");
        // Edited and re-hashed: the next record's chain hash gives it away.
        let (body, _) = split_hash(&l[2]).unwrap();
        let record: Record = serde_json::from_str(&body).unwrap();
        l[2] = render(&record).unwrap().0;
        let e = write_and_verify(&path, &l).unwrap_err();
        assert!(matches!(e, AuditError::Edited { record: 3, .. }), "{e}");
        // The last record edited.
        let mut l = good.clone();
        l[4] = l[4].replace("Success", "OperationFailed");
        assert!(matches!(
            write_and_verify(&path, &l),
            Err(AuditError::Edited { record: 5, .. })
        ));
        // Garbage.
        let mut l = good;
        l[1] = "not json".to_owned();
        assert!(matches!(
            write_and_verify(&path, &l),
            Err(AuditError::Malformed { record: 2, .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_removed_record_is_caught() {
        let dir = tempdir("remove");
        let (path, _) = sample(&dir);
        let e = edit_and_verify(&path, |l| {
            l.remove(1);
        })
        .unwrap_err();
        assert!(
            matches!(
                e,
                AuditError::Removed {
                    record: 2,
                    after: 1,
                    found: 3
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("record 2 was removed"), "{e}");
        assert!(matches!(
            edit_and_verify(&path, |l| {
                l.remove(0);
            }),
            Err(AuditError::Removed { record: 1, .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reordered_records_are_caught() {
        let dir = tempdir("reorder");
        let (path, _) = sample(&dir);
        let e = edit_and_verify(&path, |l| l.swap(1, 3)).unwrap_err();
        assert!(
            matches!(
                e,
                AuditError::Reordered {
                    record: 2,
                    line: 2,
                    found: 4
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("reordered"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_cut_and_the_chain_goes_on() {
        let dir = tempdir("torn");
        let (path, _) = sample(&dir);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":6,\"time\":\"20").unwrap();
        drop(f);
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(verify(&path).unwrap(), 5);
        log.append(
            "a",
            "-",
            &[ItemSummary {
                operation: "Query".into(),
                uids: vec![],
                status: "Success".into(),
                reason: None,
                message: None,
            }],
        )
        .unwrap();
        assert_eq!(verify(&path).unwrap(), 6);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A successful Get of object `u`.
    fn successful_get() -> ItemSummary {
        ItemSummary {
            operation: "Get".into(),
            uids: vec!["u".into()],
            status: "Success".into(),
            reason: None,
            message: None,
        }
    }

    #[test]
    fn concurrent_writers_share_syncs_and_keep_one_chain() {
        let dir = tempdir("concurrent");
        let path = dir.join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        let item = successful_get();
        std::thread::scope(|s| {
            for t in 0..8 {
                let log = log.clone();
                let item = item.clone();
                s.spawn(move || {
                    for _ in 0..25 {
                        log.append(&format!("t{t}"), "-", &[item.clone(), item.clone()])
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(verify(&path).unwrap(), 400);
        let (n, h) = head(&path).unwrap();
        assert_eq!(n, 400);
        assert_eq!(h.len(), 64);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_write_failure_fails_that_request_and_poisons_the_log() {
        // /dev/full opens, and fails every write with ENOSPC.
        let log = AuditLog::open("/dev/full").unwrap();
        let item = successful_get();
        let first = log.append("alice", "-", std::slice::from_ref(&item));
        assert!(
            matches!(&first, Err(AuditError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::StorageFull),
            "{first:?}"
        );
        // After a failed write nothing is trusted any more: every later request fails.
        let later = log.append("alice", "-", std::slice::from_ref(&item));
        assert!(matches!(later, Err(AuditError::Poisoned)), "{later:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_submissions_share_syncs_and_a_dropped_one_is_still_recorded() {
        let dir = tempdir("async");
        let path = dir.join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        let item = successful_get();
        // Queued at the call, even if nobody awaits the answer.
        drop(log.submit("dropped".into(), "-".into(), vec![item.clone()]));
        let tasks: Vec<_> = (0..32)
            .map(|t| {
                let log = log.clone();
                let item = item.clone();
                tokio::spawn(async move {
                    for _ in 0..10 {
                        log.submit(format!("t{t}"), "-".into(), vec![item.clone()])
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        drop(log); // joins the writer and the syncer
        assert_eq!(verify(&path).unwrap(), 321);
        assert!(
            lines(&path)
                .iter()
                .any(|l| l.contains("\"identity\":\"dropped\""))
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn query_item() -> ItemSummary {
        ItemSummary {
            operation: "Query".into(),
            uids: vec![],
            status: "Success".into(),
            reason: None,
            message: None,
        }
    }

    fn append_n(log: &AuditLog, n: usize) {
        for _ in 0..n {
            log.append("a", "-", &[query_item()]).unwrap();
        }
    }

    /// A rotation moves the records aside and the chain goes on in a new file: each file
    /// checks as part of the chain, in order, and the second alone only after the first's
    /// last hash. Records submitted concurrently with the rotation land whole on one side.
    #[test]
    fn a_rotation_continues_the_chain_in_a_new_file() {
        let dir = tempdir("rotate");
        let path = dir.join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        assert!(matches!(log.rotate(), Err(AuditError::NothingToRotate(_))));
        append_n(&log, 5);
        let r = log.rotate().unwrap();
        assert_eq!(r.file, dir.join("audit.log.000000000005"));
        assert_eq!(
            (r.last_seq, r.last_hash.clone()),
            (5, head(&r.file).unwrap().1)
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        // Writers racing a second rotation.
        let mid = std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| append_n(&log, 25));
            }
            s.spawn(|| {
                // Once some of them are written (bounded: the writers need well under this).
                for _ in 0..2000 {
                    if std::fs::metadata(&path).unwrap().len() > 0 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                log.rotate().unwrap()
            })
            .join()
            .unwrap()
        });
        append_n(&log, 1);
        drop(log);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p != &path)
            .collect();
        files.sort();
        assert_eq!(files.len(), 2, "{files:?}");
        files.push(path.clone());
        let mut chain = Verifier::new();
        for f in &files {
            chain.file(f).unwrap();
        }
        assert_eq!((chain.records(), chain.last_seq()), (106, Some(106)));
        // The current file alone: it does not start the chain...
        assert!(matches!(
            verify(&path),
            Err(AuditError::Removed { record: 1, .. })
        ));
        // ...but continues the hash the rotated ones end with, and nothing else.
        let (_, second_head) = head(&files[0])
            .and_then(|_| {
                let mut v = Verifier::new();
                v.file(&files[0])?;
                v.file(&files[1])?;
                Ok((v.records(), v.last_hash().to_owned()))
            })
            .unwrap();
        let mut tail = Verifier::after(&second_head);
        tail.file(&path).unwrap();
        assert_eq!(second_head, mid.last_hash);
        let after_mid = usize::try_from(106 - mid.last_seq).unwrap();
        assert_eq!((tail.records(), tail.last_seq()), (after_mid, Some(106)));
        let first_of_current = usize::try_from(mid.last_seq + 1).unwrap();
        assert!(matches!(
            Verifier::after(&r.last_hash).file(&path),
            Err(AuditError::Unanchored { found }) if found == first_of_current
        ));
        // Out of order: the second file before the first.
        let mut wrong = Verifier::new();
        assert!(wrong.file(&files[1]).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Opening an empty audit log next to rotated ones (a restart right after a rotation, or
    /// a crash between the rename and the new file) continues the newest rotated chain.
    #[test]
    fn an_empty_log_continues_the_newest_rotated_file() {
        let dir = tempdir("rotate-reopen");
        let path = dir.join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        append_n(&log, 3);
        log.rotate().unwrap();
        append_n(&log, 2);
        let second = log.rotate().unwrap();
        drop(log);
        // The crash case: the new file never made it.
        std::fs::remove_file(&path).unwrap();
        let log = AuditLog::open(&path).unwrap();
        append_n(&log, 1);
        drop(log);
        let mut chain = Verifier::new();
        for f in [dir.join("audit.log.000000000003"), second.file, path] {
            chain.file(&f).unwrap();
        }
        assert_eq!(chain.records(), 6);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
