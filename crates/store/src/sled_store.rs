//! [`SledStore`]: the durable embedded backend (sled 0.34, pinned: see `durable.rs`).
//!
//! **Trees.** `objects` (uid → record, `record.rs`), `refs` (under the non-UTF-8 key `0xFF`
//! the number of the last WAL frame applied; store format 1 also kept index keys here and in
//! the `index` and `seq` trees, which opening a format-1 store drops), `meta` (store format,
//! KEKs, the server settings of `ObjectStore::setting` under `setting/NAME`). Creation order and the index terms of Locate live in memory (`index.rs`), built
//! from `objects` at open.
//!
//! **Modules**, one job each:
//! - `open.rs`: opening, the store format, recovery (WAL replay) and the index built at open;
//! - `keyring.rs`: unlocking with the KEKs, their check values and wrapped blobs, KEK rotation;
//! - `commit.rs`: a commit's encoding (`prepare`), its writes into sled (`apply_writes`) and
//!   the WAL payload codec;
//! - `pipeline.rs`: the committer thread that checks, appends, syncs and writes queued
//!   commits into sled, one round for everything queued;
//! - `durable.rs`: the WAL's group `fdatasync`, checkpoints, the fsyncs of sled's own files
//!   and the poisoned state;
//! - `index.rs`: the in-memory index;
//! - `cache.rs`: the bounded cache of decoded objects that reads consult before sled;
//! - `object_store.rs`: the [`ObjectStore`](crate::ObjectStore) impl (reads, damaged records, `commit_then`);
//! - `backup.rs`: online backup and restore.
//!
//! The write-ahead log itself (`wal.rs`, segments of checksummed frames) is not sled-specific
//! and lives at the crate root.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, RwLock};

use crate::{Change, Journal, JournalEntry, StoreError};

mod backup;
mod cache;
mod commit;
mod durable;
mod index;
mod keyring;
mod object_store;
mod open;
mod pipeline;

pub use backup::BackupInfo;
pub use cache::{DEFAULT_OBJECT_CACHE_ENTRIES, DEFAULT_OBJECT_CACHE_MB};
pub use durable::SyncStats;
pub use open::{DEFAULT_CACHE_CAPACITY_MB, STORE_FORMAT, SledOptions};

use crate::kek::Keyring;
use cache::ObjectCache;
use durable::Durability;
use index::MemIndex;
use pipeline::{Completion, ToCommitter};

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The durable sled backend.
pub struct SledStore {
    dir: PathBuf,
    objects: sled::Tree,
    refs: sled::Tree,
    meta: sled::Tree,
    /// Creation order and index terms (`index.rs`), updated by the committer.
    index: Arc<RwLock<MemIndex>>,
    keyring: RwLock<Keyring>,
    /// Commits hold it shared; a KEK switch and the end of a backup hold it exclusively.
    gate: RwLock<()>,
    /// While a backup runs: the uids changed since it started (shared with the committer).
    journal: Arc<Mutex<Option<BTreeSet<String>>>>,
    /// The journal lines found in the WAL at open, until a journal takes them
    /// ([`attach_journal`](SledStore::attach_journal)).
    recovered_lines: Mutex<Vec<u8>>,
    sequence: AtomicU64,
    corrupt: Mutex<BTreeSet<String>>,
    /// The committer's queue (`pipeline.rs`); `None` once the store is closing.
    to_committer: Option<Sender<ToCommitter>>,
    /// The committer thread (joined on drop).
    pipeline: Vec<std::thread::JoinHandle<()>>,
    /// sled, the WAL, group commit and checkpoints (shared with the background thread).
    durable: Arc<Durability>,
    /// The background checkpoint thread (stopped and joined on drop).
    background: Option<std::thread::JoinHandle<()>>,
    /// Decoded objects by uid (`cache.rs`), updated by the committer (shared with it).
    cache: Arc<ObjectCache>,
}

impl Drop for SledStore {
    /// Closes the committer's queue and waits for it: everything queued is applied,
    /// synced and completed. Then stops the background thread and checkpoints, and cuts the
    /// zeros written ahead in the last segment (a clean close leaves one empty WAL segment).
    fn drop(&mut self) {
        self.to_committer = None;
        for t in self.pipeline.drain(..) {
            let _ = t.join();
        }
        self.durable.stop();
        if let Some(t) = self.background.take() {
            let _ = t.join();
        }
        if self.durable.checkpoint().is_ok() {
            let _ = self.durable.wal.trim();
        }
    }
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// What the durability layer did so far.
    pub fn sync_stats(&self) -> SyncStats {
        self.durable.syncer.counters.snapshot()
    }

    /// Checkpoints now: sled flushed and fsynced, WAL segments before this point deleted
    /// (the background thread does it every second when anything was written). Every write
    /// that does not go through the WAL ends with one.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.durable.checkpoint().map_err(StoreError::Backend)
    }

    /// Tests only (cargo feature `test-hooks`, which the kmipd binary does not enable): stops
    /// (`true`) or resumes timed and size-triggered checkpoints, so that commits stay in the
    /// WAL and a crash image exercises replay. Explicit checkpoints (metadata writes,
    /// [`checkpoint`](Self::checkpoint), drop) still run.
    #[cfg(feature = "test-hooks")]
    pub fn pause_checkpoints(&self, paused: bool) {
        self.durable.pause(paused);
    }

    /// Tests only (cargo feature `test-hooks`): poisons the store as a failed fsync does
    /// (`durable.rs`), so that what follows can be tested without a failing disk.
    #[cfg(feature = "test-hooks")]
    pub fn poison_for_tests(&self, why: &str) {
        self.durable.poison.poison(why.to_owned());
    }

    /// The number of objects in the store: the indexed ones (a record that could not be
    /// parsed at open is not counted; see [`corrupt_records`](Self::corrupt_records)).
    pub fn stored_objects(&self) -> usize {
        self.index.read().map_or(0, |i| i.len())
    }

    /// Why the store is poisoned (a failed fsync: nothing more can be committed), if it is.
    pub fn poisoned(&self) -> Option<String> {
        self.durable.poison.poisoned()
    }

    /// Records found damaged since the store was opened (at open, by a read or by a scan).
    pub fn corrupt_records(&self) -> Vec<String> {
        self.corrupt
            .lock()
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Attaches `journal` (`crate::journal`; once per store, before any journal entry is
    /// committed): from now on a commit's entry ([`ObjectStore::commit_journaled`]) is
    /// rendered by it on the committer thread, carried in the commit's WAL frame and written
    /// to its file after the frame's sync; checkpoints sync it before deleting segments. The
    /// lines found in the WAL at open are first handed to [`Journal::recover`], which appends
    /// those its file lacks.
    ///
    /// [`ObjectStore::commit_journaled`]: crate::ObjectStore::commit_journaled
    pub fn attach_journal(&self, journal: Arc<dyn Journal>) -> Result<(), StoreError> {
        let mut recovered = self
            .recovered_lines
            .lock()
            .map_err(|_| backend("recovered journal lock poisoned"))?;
        if self.durable.journal.get().is_some() {
            return Err(backend("a journal is attached already"));
        }
        journal
            .recover(&recovered)
            .map_err(|e| backend(format!("journal recovery: {e}")))?;
        self.durable.journal.set(journal).map_err(backend)?;
        *recovered = Vec::new();
        Ok(())
    }

    /// Makes one journal entry durable with no change to the store: it takes its place in the
    /// journal's order among the commits (`pipeline.rs`), and `done` gets the outcome once the
    /// WAL frame that carries it is synced and its lines are written. Never waits for I/O.
    pub fn journal_then(&self, entry: JournalEntry, done: crate::CommitDone) {
        self.queue(Vec::new(), Some(entry), done);
    }

    /// Runs `f` on the committer thread between two rounds: every commit and entry queued
    /// before it is then durable and its journal lines written, none queued after it is yet.
    /// `f` gets the reason the store is poisoned, if it is; it is dropped uncalled when the
    /// store is closing. How the journal's owner rotates its file.
    pub fn run_between_rounds(
        &self,
        f: Box<dyn FnOnce(Option<String>) + Send>,
    ) -> Result<(), StoreError> {
        self.to_committer
            .as_ref()
            .ok_or_else(|| backend("the store is closing"))?
            .send(ToCommitter::Run(f))
            .map_err(|_| backend("the store's commit thread is gone"))
    }

    /// Encodes a commit's changes on the caller's thread and queues them, with its journal
    /// entry, for the committer thread (`pipeline.rs`). Waits for nothing but the gate held
    /// shared.
    fn queue(&self, changes: Vec<Change>, entry: Option<JournalEntry>, done: crate::CommitDone) {
        let done = Completion::new(done);
        if changes.is_empty() && entry.is_none() {
            return done.complete(Ok(()));
        }
        let gate = match self.gate.read() {
            Ok(g) => g,
            Err(_) => return done.complete(Err(backend("gate poisoned"))),
        };
        let prepared = match self.prepare(changes) {
            Ok(p) => p,
            Err(e) => {
                drop(gate);
                return done.complete(Err(e));
            }
        };
        let sent = match &self.to_committer {
            Some(tx) => tx
                .send(ToCommitter::Commit(prepared, entry, done))
                .map_err(|e| e.0),
            None => Err(ToCommitter::Commit(prepared, entry, done)),
        };
        drop(gate);
        if let Err(ToCommitter::Commit(_, _, done)) = sent {
            done.complete(Err(backend("the store is closing")));
        }
    }

    /// Takes the gate exclusively, then waits until every commit queued so far is applied
    /// (and journalled): from here until the guard is dropped, sled holds every commit that
    /// was encoded before, and no new one is encoded.
    fn exclusive(&self) -> Result<std::sync::RwLockWriteGuard<'_, ()>, StoreError> {
        let g = self.gate.write().map_err(|_| backend("gate poisoned"))?;
        let (tx, rx) = mpsc::channel();
        self.to_committer
            .as_ref()
            .ok_or_else(|| backend("the store is closing"))?
            .send(ToCommitter::Barrier(tx))
            .map_err(|_| backend("the store's commit thread is gone"))?;
        rx.recv()
            .map_err(|_| backend("the store's commit thread is gone"))?;
        Ok(g)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod journal_tests;
