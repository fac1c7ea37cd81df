//! The open audit log: appending records durably, recovery after a crash, rotation.
//!
//! **Two ways to durability.** With the sled store, [`AuditLog::open_journaled`] makes the
//! log the store's journal ([`kmipd_store::Journal`], implemented here by `FileJournal`): the
//! store's committer thread renders each record into the chain in the order of its commits,
//! carries it in a WAL frame (a light request's success record in its own commit's frame), and
//! writes it to the file once that frame is synced; its checkpoints sync the file, and the
//! records the WAL holds and the file lacks after a crash are appended when the log is opened
//! again (`docs/storage.md`, "The journal"). One `fdatasync` then covers a durable request's
//! change and its record. Otherwise ([`AuditLog::open`]: PostgreSQL, the memory store,
//! tests) the log has a writer thread of its own, described next.
//!
//! **Durability.** A request's records are on disk (`fdatasync`) before its reply is sent.
//! A thread of its own does the work, so no request thread waits on a lock or the disk: the
//! **writer** takes every submission queued so far, renders their records in order (the
//! chain), writes them with one `write`, runs one `fdatasync` and then answers each request
//! ([`AuditLog::submit`] resolves; [`AuditLog::append`] returns). While it waits for the disk
//! the next submissions queue up: that is the group commit, and under load one sync covers
//! the records of many connections. (A separate syncer thread, fed by the writer, let one
//! batch's rendering overlap the previous batch's sync, but its hand-off cost more CPU per
//! request than that saved: `docs/performance.md`.) After an I/O failure the log is
//! poisoned: every later request fails, and the server withholds its reply.
//!
//! **Permissions.** The log is created mode 0600 ([`FILE_MODE`], like the PIN file), and so
//! is each new file a rotation starts: records name every identity and object. A rotation
//! renames the file, which keeps its mode. A log that exists already keeps its mode (one made
//! by an older kmipd may be 0644: `chmod 600` it).
//!
//! **Crash.** A line torn by a crash (no final newline) was never acknowledged: its request got
//! no reply. [`AuditLog::open`] cuts it off so the chain continues from the last whole record.
//!
//! **Rotation.** [`AuditLog::rotate`] (the writer thread, between two writes) syncs the file,
//! renames it to [`rotated_name`] (`<file>.<last record number>`) and continues the chain in a
//! new file at the same path. Opening an empty log continues the newest rotated file's chain.
//! [`Verifier`](super::Verifier) checks a chain across files, or from a given hash on.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use kmipd_store::{Journal, JournalEntry, SledStore};
use kmipd_ttlv::Ttlv;
use tokio::sync::oneshot;

use super::record::{GENESIS, Record, RecordRef, render_into, split_hash};
use super::summary::{ItemSummary, summarize};
use super::{AuditError, io_copy, io_err};

/// The mode audit files are created with: owner read and write only.
pub const FILE_MODE: u32 = 0o600;

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
    entry: Entry,
    done: oneshot::Sender<Result<(), AuditError>>,
}

/// One request's records, before they are rendered: the store's journal entry
/// ([`kmipd_store::JournalEntry`]) when the log is the sled store's journal.
pub(crate) struct Entry {
    identity: String,
    peer: String,
    items: Vec<ItemSummary>,
}

impl Entry {
    /// The records of one request (one per item).
    pub(crate) fn new(identity: String, peer: String, items: Vec<ItemSummary>) -> Entry {
        Entry {
            identity,
            peer,
            items,
        }
    }
}

/// Where records go.
enum Sink {
    /// The writer thread's queue (PostgreSQL and memory stores, tests).
    Writer(mpsc::Sender<ToWriter>),
    /// The sled store's committer, which orders, carries and writes the records with its
    /// commits ([`FileJournal`]).
    Store(Arc<SledStore>),
}

struct Inner {
    path: PathBuf,
    /// Set by the writer or syncer after a failed write or sync (shared with them).
    poisoned: Arc<AtomicBool>,
    /// The number of the last record known durable (set by the writer after each sync, or by
    /// the journal once the WAL frame that carries it is synced).
    durable: Arc<AtomicU64>,
    /// `None` only while dropping.
    sink: Option<Sink>,
    /// The file's state when the log is the store's journal.
    journal: Option<Arc<FileJournal>>,
    /// The writer thread, joined on drop so that the file is closed and every submitted
    /// record answered before the log goes away.
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer after the records already submitted. (The
        // store's committer answers what was queued when the store closes.)
        drop(self.sink.take());
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

impl AuditLog {
    /// Opens (creating when absent) the audit log at `path`, continuing its chain, and starts
    /// its writer thread. A torn last line (crash during a write) is cut off.
    pub fn open(path: impl AsRef<Path>) -> Result<AuditLog, AuditError> {
        let path = path.as_ref();
        let err = io_err(path);
        let writer = Writer::open(path)?;
        let (poisoned, durable) = (writer.poisoned.clone(), writer.durable.clone());
        let (jobs, job_rx) = mpsc::channel::<ToWriter>();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(f)
                .map_err(&err)
        };
        let w = spawn("kmipd-audit-write", Box::new(move || writer.run(&job_rx)))?;
        Ok(AuditLog {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                poisoned,
                durable,
                sink: Some(Sink::Writer(jobs)),
                journal: None,
                threads: vec![w],
            }),
        })
    }

    /// Opens the audit log at `path` as the journal of the sled `store`
    /// ([`SledStore::attach_journal`]): a request's records are rendered by the store's
    /// committer thread, in the order of its commits, carried in the WAL frame of the commit
    /// they describe ([`kmipd_store::ObjectStore::commit_journaled`]) or of a frame of their
    /// own, and written to the file once that frame is synced: one `fdatasync` makes a
    /// durable request's change and its record durable. The file is synced before a
    /// checkpoint deletes the WAL segments that hold its lines; the records found in the WAL
    /// at open that the file lacks (a crash between the frame's sync and the file's) are
    /// appended first. No writer thread. Blocking.
    pub fn open_journaled(
        path: impl AsRef<Path>,
        store: Arc<SledStore>,
    ) -> Result<AuditLog, AuditError> {
        let path = path.as_ref();
        let writer = Writer::open(path)?;
        let (poisoned, durable) = (writer.poisoned.clone(), writer.durable.clone());
        let journal = Arc::new(FileJournal {
            writer: Mutex::new(writer),
        });
        store
            .attach_journal(journal.clone())
            .map_err(|e| AuditError::Store(e.to_string()))?;
        Ok(AuditLog {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                poisoned,
                durable,
                sink: Some(Sink::Store(store)),
                journal: Some(journal),
                threads: Vec::new(),
            }),
        })
    }

    /// Whether the records are the sled store's journal ([`AuditLog::open_journaled`]): a
    /// light request's record then goes with its commit
    /// ([`kmipd_ops::Engine::complete_journaled`]) when its engine runs on that store.
    pub fn journaled(&self) -> bool {
        self.inner.journal.is_some()
    }

    /// The journal entry of one request's records, for
    /// [`kmipd_ops::Engine::complete_journaled`].
    pub(crate) fn entry(identity: String, peer: String, items: Vec<ItemSummary>) -> JournalEntry {
        Box::new(Entry::new(identity, peer, items))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The flag a failed write or sync sets (every later request then fails): what the
    /// `kmipd_audit_poisoned` gauge shows. Does not keep the log open.
    pub fn poisoned_flag(&self) -> Arc<AtomicBool> {
        self.inner.poisoned.clone()
    }

    /// The number of the last record on disk (synced): the forwarder
    /// ([`super::forward`]) sends records up to it, never one a crash could still take back.
    pub fn durable_seq(&self) -> Arc<AtomicU64> {
        self.inner.durable.clone()
    }

    /// Moves the file aside, to `<file name>.<last record number, 12 digits>` beside it, and
    /// continues the chain (record numbers and hashes) in a new, empty file at the same path.
    /// Records submitted before this call are in the rotated file, later ones in the new
    /// file. The rotated file is synced before it is renamed, and the directory after the new
    /// file is made. Refused when the file holds no record. Blocking; not from async code.
    pub fn rotate(&self) -> Result<Rotated, AuditError> {
        let (tx, rx) = mpsc::channel();
        match self.inner.sink.as_ref().ok_or(AuditError::Poisoned)? {
            Sink::Writer(jobs) => jobs
                .send(ToWriter::Rotate(tx))
                .map_err(|_| AuditError::Poisoned)?,
            Sink::Store(store) => {
                let journal = self.inner.journal.clone().ok_or(AuditError::Poisoned)?;
                // Between two of the committer's rounds: every record queued before is in the
                // file, none after.
                store
                    .run_between_rounds(Box::new(move |poisoned| {
                        let rotated = match poisoned {
                            Some(why) => Err(AuditError::Store(why)),
                            None => journal.with(Writer::rotate),
                        };
                        let _ = tx.send(rotated);
                    }))
                    .map_err(|e| AuditError::Store(e.to_string()))?;
            }
        }
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
        let entry = Entry::new(identity, peer, items);
        match self.inner.sink.as_ref().ok_or(AuditError::Poisoned)? {
            Sink::Writer(jobs) => jobs
                .send(ToWriter::Job(Job { entry, done }))
                .map_err(|_| AuditError::Poisoned)?,
            Sink::Store(store) => {
                let poisoned = self.inner.poisoned.clone();
                store.journal_then(
                    Box::new(entry),
                    Box::new(move |r| {
                        let r = r.map_err(|e| {
                            // Only a poisoned or closing store fails an entry of its own.
                            poisoned.store(true, Ordering::Release);
                            AuditError::Store(e.to_string())
                        });
                        let _ = done.send(r);
                    }),
                );
            }
        }
        Ok(rx)
    }
}

/// The audit file as the sled store's journal ([`AuditLog::open_journaled`]): the file's
/// tail and the chain, behind a lock taken by the store's committer thread (render, write),
/// its checkpoints (sync) and a rotation (run on the committer thread between two rounds).
struct FileJournal {
    writer: Mutex<Writer>,
}

impl FileJournal {
    /// Runs `f` on the file's state; a poisoned lock (a panic in here) is a poisoned log.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        let mut w = self.writer.lock().map_err(|_| AuditError::Poisoned)?;
        if w.poisoned.load(Ordering::Acquire) {
            return Err(AuditError::Poisoned);
        }
        f(&mut w)
    }
}

impl Journal for FileJournal {
    /// Renders the entry's records onto `out`, advancing the chain (the committer writes the
    /// frame's lines only after it is synced, and a failure there poisons the store, so the
    /// chain never needs to go back).
    fn render(&self, entry: JournalEntry, out: &mut Vec<u8>) -> Result<(), String> {
        let entry = entry
            .downcast::<Entry>()
            .map_err(|_| "not an audit record".to_owned())?;
        self.with(|w| {
            let time = now_rfc3339();
            let (mark, seq, prev) = (out.len(), w.seq, w.last_hash.clone());
            render_job(&entry, &time, &mut w.seq, &mut w.last_hash, out).inspect_err(|_| {
                out.truncate(mark);
                (w.seq, w.last_hash) = (seq, prev);
            })
        })
        .map_err(|e| e.to_string())
    }

    /// Appends the lines (already durable in a synced WAL frame): from now on the forwarder
    /// may send them.
    fn write(&self, lines: &[u8]) -> Result<(), String> {
        self.with(|w| {
            if let Err(e) = (&w.file).write_all(lines) {
                w.poisoned.store(true, Ordering::Release);
                return Err(io_copy(&w.path, &e));
            }
            w.durable.fetch_max(w.seq, Ordering::AcqRel);
            Ok(())
        })
        .map_err(|e| e.to_string())
    }

    /// Syncs outside the lock (on a duplicate of the file's descriptor), so the committer
    /// does not wait for a checkpoint's sync. A rotation meanwhile synced the old file itself.
    fn sync(&self) -> Result<(), String> {
        let (file, path, poisoned) = self
            .with(|w| {
                let file = w.file.try_clone().map_err(io_err(&w.path))?;
                Ok((file, w.path.clone(), w.poisoned.clone()))
            })
            .map_err(|e| e.to_string())?;
        file.sync_data().map_err(|e| {
            poisoned.store(true, Ordering::Release);
            io_copy(&path, &e).to_string()
        })
    }

    /// Appends the WAL's records that follow the file's last one (each must continue the
    /// chain), then syncs the file.
    fn recover(&self, lines: &[u8]) -> Result<(), String> {
        self.with(|w| {
            let mut missing = Vec::new();
            for line in String::from_utf8_lossy(lines).lines() {
                let (body, hash) = split_hash(line).ok_or_else(|| AuditError::Malformed {
                    record: 0,
                    reason: "a record in the store's WAL has no hash".to_owned(),
                })?;
                let record: Record =
                    serde_json::from_str(&body).map_err(|e| AuditError::Malformed {
                        record: 0,
                        reason: e.to_string(),
                    })?;
                if record.seq <= w.seq {
                    continue;
                }
                if record.seq != w.seq.saturating_add(1) || record.prev != w.last_hash {
                    return Err(AuditError::Store(format!(
                        "the store's WAL holds audit record {} but {} ends with record {}:                          the records do not continue the file's chain",
                        record.seq,
                        w.path.display(),
                        w.seq
                    )));
                }
                missing.extend_from_slice(line.as_bytes());
                missing.push(b'\n');
                (w.seq, w.last_hash) = (record.seq, hash.to_owned());
            }
            let err = io_err(&w.path);
            (&w.file).write_all(&missing).map_err(&err)?;
            w.file.sync_data().map_err(&err)?;
            w.durable.fetch_max(w.seq, Ordering::AcqRel);
            Ok(())
        })
        .map_err(|e| e.to_string())
    }
}

/// The writer thread's state: the file's tail and the chain.
struct Writer {
    path: PathBuf,
    file: File,
    seq: u64,
    last_hash: String,
    /// Set after an I/O failure: from then on nothing is written and every request fails
    /// (after a failed `fdatasync` Linux may have dropped the dirty pages, so a later
    /// successful one would prove nothing).
    poisoned: Arc<AtomicBool>,
    /// The number of the last record synced (the forwarder sends records up to it).
    durable: Arc<AtomicU64>,
}

impl Writer {
    /// Opens (creating when absent) the file, cuts a torn last line and finds where the chain
    /// goes on (the newest rotated file's last record when the file is empty).
    fn open(path: &Path) -> Result<Writer, AuditError> {
        let err = io_err(path);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(FILE_MODE)
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
        Ok(Writer {
            path: path.to_owned(),
            file,
            seq,
            last_hash,
            poisoned: Arc::new(AtomicBool::new(false)),
            durable: Arc::new(AtomicU64::new(seq)),
        })
    }

    /// Takes every queued submission, renders them into one buffer, writes it with one
    /// `write` (a crash leaves whole records or a torn last line), syncs and answers. While
    /// it waits for the disk, the next submissions queue up: that is the group commit,
    /// without a lock or a thread per waiting request.
    fn run(mut self, jobs: &mpsc::Receiver<ToWriter>) {
        let mut buf = Vec::new();
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
            self.write_batch(batch, &mut buf);
        }
    }

    fn write_batch(&mut self, batch: Vec<Job>, buf: &mut Vec<u8>) {
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
            match render_job(&j.entry, &time, &mut seq, &mut prev, buf) {
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
        let written = (&self.file)
            .write_all(buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            self.poisoned.store(true, Ordering::Release);
            for d in done {
                let _ = d.send(Err(io_copy(&self.path, &e)));
            }
            return;
        }
        (self.seq, self.last_hash) = (seq, prev);
        self.durable.fetch_max(self.seq, Ordering::AcqRel);
        for d in done {
            let _ = d.send(Ok(()));
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
            .mode(FILE_MODE)
            .open(&self.path);
        match created {
            Ok(f) => {
                self.file = f;
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

/// The rotated files of the audit log at `path` (`<name>.<12 digits>`, [`rotated_name`]), each
/// with the number of its last record, in chain order (oldest first). Other files are left out.
pub fn rotated_files(path: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(log_dir(path))? {
        let entry = entry?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(digits) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(n) = digits.parse::<u64>() {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The directory of the audit log at `path` (`.` for a bare file name).
fn log_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The rotated file of `path` with the highest record number, if any.
fn newest_rotated(path: &Path) -> Result<Option<PathBuf>, AuditError> {
    let mut rotated = rotated_files(path).map_err(io_err(log_dir(path)))?;
    Ok(rotated.pop().map(|(_, p)| p))
}

/// Renders one request's records (one per item, each line with its newline) onto `buf`,
/// advancing the chain; the fields are serialized from where they are, not copied first.
fn render_job(
    job: &Entry,
    time: &str,
    seq: &mut u64,
    prev: &mut String,
    buf: &mut Vec<u8>,
) -> Result<(), AuditError> {
    for item in &job.items {
        *seq = seq.saturating_add(1);
        let record = RecordRef {
            seq: *seq,
            time,
            identity: &job.identity,
            peer: &job.peer,
            operation: &item.operation,
            uids: &item.uids,
            status: &item.status,
            reason: item.reason.as_deref(),
            message: item.message.as_deref(),
            prev,
        };
        let hash = render_into(&record, buf)?;
        prev.clear();
        prev.push_str(
            std::str::from_utf8(&hash).map_err(|e| AuditError::Malformed {
                record: usize::try_from(*seq).unwrap_or(usize::MAX),
                reason: e.to_string(),
            })?,
        );
    }
    Ok(())
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

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "-".to_owned())
}
