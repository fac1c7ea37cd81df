//! [`SledStore`]: the durable embedded backend (sled 0.34).
//!
//! **Trees.** `objects` (uid → record, `record.rs`), `refs` (under the non-UTF-8 key `0xFF`
//! the number of the last WAL frame applied; store format 1 also kept index keys here and in
//! the `index` and `seq` trees, which opening a format-1 store drops), `meta` (store format,
//! KEKs). Creation order and the index terms of Locate live in memory (`index.rs`), built
//! from `objects` at open. One commit is one sled transaction over `objects` and `refs` plus
//! one frame appended to the write-ahead log (`<dir>/wal/`, `wal.rs`), both under the commit
//! mutex, then the in-memory index is updated, then a group `fdatasync` of the log;
//! the applier and syncer threads of `pipeline.rs` do both stages, so
//! [`ObjectStore::commit_then`] never waits for I/O. sled itself is flushed by checkpoints
//! (`durable.rs`). [`SledStore::open_with`] replays the
//! frames sled had not flushed before a crash; writes that bypass the log end with a
//! checkpoint.
//!
//! **Keys.** The store is opened locked; [`SledStore::unlock`] takes the KEKs (plain, from
//! the HSM layer, which keeps their wrapped blobs here with
//! [`SledStore::store_wrapped_kek`]). Every record with key material names the KEK that
//! wrapped it, so a KEK rotation rewrites records one by one and a crash at any point leaves
//! each record readable under the KEK it names; the old KEK is retired only after a scan
//! finds no record that still needs it.
//!
//! **Damaged records.** A record that fails its checksum or its unwrap is reported as
//! [`StoreError::Corrupt`] by `get`, and left out (and remembered, [`SledStore::corrupt_records`])
//! by `all` and `find`, so one bad record does not stop Locate for everything else.
//!
//! **Backup.** [`SledStore::backup`] streams every record and the metadata (key material
//! stays wrapped) while commits go on: changes made during the copy are journalled and
//! re-read at the end under a short write lock, so the file is the state at one instant.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, RwLock};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::durable::{Durability, FileSyncer, SyncStats, sync_dir};
use crate::kek::{Kek, KekId};
use crate::query::{Filter, Query, Term, filter_prefix, index_terms};
use crate::record;
use crate::wal::{self, Wal};
use crate::{Change, ManagedObject, ObjectStore, Revision, StoreError};

const META_FORMAT: &[u8] = b"format";
const META_CURRENT: &[u8] = b"kek/current";
const META_CHECK: &str = "kek/check/";
const META_WRAPPED: &str = "kek/wrapped/";
const META_RETIRED: &str = "kek/retired/";
/// What a KEK's check value wraps: proves at unlock that the key is the one registered.
const CHECK_PLAIN: &[u8] = b"kmipd store KEK check v1";

/// Key in `refs` of the number of the last WAL frame applied to sled (written in the same
/// transaction as the frame's changes). Not UTF-8, so never a uid.
const APPLIED_KEY: &[u8] = &[0xFF];
/// Format byte of the WAL frame payloads this build writes (2: no index keys; 1, still
/// replayed: each Put also carried the record's `refs` value).
const WAL_FORMAT: u8 = 2;
/// The store format this build writes under `meta`'s `format` key. 2: the indexes are in
/// memory; 1: they were sled trees (`index`, `seq`, `refs`), dropped when a format-1 store is
/// opened. Records have their own format byte (`record::FORMAT_VERSION`).
pub const STORE_FORMAT: u8 = 2;

const BACKUP_MAGIC: &[u8; 8] = b"KMIPDBAK";
const BACKUP_VERSION: u8 = 1;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn meta_key(prefix: &str, id: KekId) -> Vec<u8> {
    let mut k = prefix.as_bytes().to_vec();
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

fn id_from_meta_key(prefix: &str, key: &[u8]) -> Option<KekId> {
    let rest = key.strip_prefix(prefix.as_bytes())?;
    Some(KekId(u32::from_be_bytes(rest.try_into().ok()?)))
}

fn push_lp(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), StoreError> {
    let len = u32::try_from(bytes.len()).map_err(|_| backend("field longer than 4 GiB"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Splits length-prefixed fields.
fn split_lp(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        if rest.len() < len {
            return None;
        }
        let (field, rest) = rest.split_at(len);
        out.push(field);
        bytes = rest;
    }
    Some(out)
}

/// The KEKs in memory.
#[derive(Default)]
struct Keyring {
    current: Option<KekId>,
    keks: BTreeMap<KekId, Arc<Kek>>,
}

/// What a finished KEK rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KekRotation {
    /// Records re-wrapped under the new KEK.
    pub rewrapped: usize,
    /// Records that could not be re-wrapped because they are damaged (see `corrupt_records`).
    pub skipped_corrupt: Vec<String>,
    /// KEKs no record needs any more (their wrapped blobs may be deleted).
    pub retired: Vec<KekId>,
}

/// What a backup or restore copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupInfo {
    /// Object records.
    pub records: usize,
    /// Metadata entries (format, KEK check values and wrapped KEKs).
    pub meta: usize,
    /// Records that could not be parsed (restore: copied but not indexed).
    pub unindexed: usize,
}

/// Default bound of sled's page cache, in MiB (sled's own default is 1 GiB).
pub const DEFAULT_CACHE_CAPACITY_MB: u64 = 64;

/// How a [`SledStore`] opens its sled database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SledOptions {
    /// Bound of sled's page cache in MiB (`sled::Config::cache_capacity`). sled's default of
    /// 1 GiB is far more than a key store needs and grows the resident size under a long run.
    pub cache_capacity_mb: u64,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            cache_capacity_mb: DEFAULT_CACHE_CAPACITY_MB,
        }
    }
}

impl SledOptions {
    /// The cache bound in bytes (saturating).
    pub fn cache_capacity_bytes(&self) -> u64 {
        self.cache_capacity_mb.saturating_mul(1024 * 1024)
    }
}

/// The durable sled backend.
pub struct SledStore {
    dir: PathBuf,
    objects: sled::Tree,
    refs: sled::Tree,
    meta: sled::Tree,
    /// Creation order and index terms (`index.rs`), updated by the applier.
    index: Arc<RwLock<MemIndex>>,
    keyring: RwLock<Keyring>,
    /// Commits hold it shared; a KEK switch and the end of a backup hold it exclusively.
    gate: RwLock<()>,
    /// While a backup runs: the uids changed since it started (shared with the applier).
    journal: Arc<Mutex<Option<BTreeSet<String>>>>,
    sequence: AtomicU64,
    corrupt: Mutex<BTreeSet<String>>,
    /// The applier's queue (`pipeline.rs`); `None` once the store is closing.
    to_applier: Option<Sender<ToApplier>>,
    /// The applier and syncer threads (joined on drop).
    pipeline: Vec<std::thread::JoinHandle<()>>,
    /// sled, the WAL, group commit and checkpoints (shared with the background thread).
    durable: Arc<Durability>,
    /// The background checkpoint thread (stopped and joined on drop).
    background: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SledStore {
    /// Closes the applier's queue and waits for the pipeline: everything queued is applied,
    /// synced and completed. Then stops the background thread and checkpoints (a clean close
    /// leaves an empty WAL).
    fn drop(&mut self) {
        self.to_applier = None;
        for t in self.pipeline.drain(..) {
            let _ = t.join();
        }
        self.durable.stop();
        if let Some(t) = self.background.take() {
            let _ = t.join();
        }
        let _ = self.durable.checkpoint();
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
    /// Opens (creating if needed) the store in `dir`, locked: objects are readable once
    /// [`unlock`](Self::unlock) got the KEKs. The wrapped KEK blobs are readable now. Uses
    /// the default [`SledOptions`].
    pub fn open(dir: impl AsRef<Path>) -> Result<SledStore, StoreError> {
        SledStore::open_with(dir, &SledOptions::default())
    }

    /// [`open`](Self::open) with explicit options (the page cache bound).
    pub fn open_with(
        dir: impl AsRef<Path>,
        options: &SledOptions,
    ) -> Result<SledStore, StoreError> {
        let dir = dir.as_ref().to_owned();
        std::fs::create_dir_all(&dir).map_err(backend)?;
        // Every commit flushes and fsyncs (durable.rs): sled's periodic flusher is not needed.
        let config = sled::Config::new()
            .path(&dir)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(options.cache_capacity_bytes())
            .flush_every_ms(None);
        // A store dropped a moment ago in this process may still hold sled's file lock
        // while sled's background threads wind down: retry for a short while.
        let mut attempts = 0u32;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                // sled reports its flock failure as ErrorKind::Other with this text.
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && attempts < 500 =>
                {
                    attempts = attempts.saturating_add(1);
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(backend(e)),
            }
        };
        let tree = |n: &str| db.open_tree(n).map_err(backend);
        let (objects, refs, meta) = (tree("objects")?, tree("refs")?, tree("meta")?);
        let format = match meta.get(META_FORMAT).map_err(backend)? {
            None => None,
            Some(v) => match v.first() {
                Some(&v) if v <= STORE_FORMAT => Some(v),
                _ => {
                    return Err(backend(format!(
                        "the store in {} was written by a newer kmipd (format {:?})",
                        dir.display(),
                        v.first()
                    )));
                }
            },
        };
        if format.is_some_and(|f| f < STORE_FORMAT) {
            drop_index_trees(&db, &refs)?;
        }
        let syncer = FileSyncer::new(&dir).map_err(backend)?;
        // Recovery: commits acknowledged from the WAL that sled had not flushed.
        let wal_dir = dir.join("wal");
        let segments = wal::list_segments(&wal_dir).map_err(backend)?;
        let applied = replay(&objects, &refs, &segments, &syncer)?;
        if format != Some(STORE_FORMAT) {
            meta.insert(META_FORMAT, &[STORE_FORMAT]).map_err(backend)?;
        }
        // After the replay.
        let (index, unindexed) = build_index(&objects)?;
        let last = index.last_sequence();
        let current = match meta.get(META_CURRENT).map_err(backend)? {
            Some(v) => Some(KekId(u32::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| backend("damaged current KEK id"))?,
            ))),
            None => None,
        };
        let first_segment = segments.last().map_or(1, |(id, _)| id.saturating_add(1));
        let log =
            Wal::create(&wal_dir, first_segment, applied.saturating_add(1)).map_err(backend)?;
        let durable = Arc::new(Durability::new(db, syncer, log));
        let mut store = SledStore {
            dir,
            objects,
            refs,
            meta,
            index: Arc::new(RwLock::new(index)),
            keyring: RwLock::new(Keyring {
                current,
                keks: BTreeMap::new(),
            }),
            gate: RwLock::new(()),
            journal: Arc::new(Mutex::new(None)),
            sequence: AtomicU64::new(last),
            corrupt: Mutex::new(unindexed),
            to_applier: None,
            pipeline: Vec::new(),
            durable,
            background: None,
        };
        store.start_pipeline()?;
        // The replayed frames and the format byte into sled's durable state; the old
        // segments go.
        store.checkpoint()?;
        let d = store.durable.clone();
        store.background = Some(
            std::thread::Builder::new()
                .name("kmipd-store-checkpoint".into())
                .spawn(move || d.run_background())
                .map_err(backend)?,
        );
        Ok(store)
    }

    /// Opens and unlocks with one KEK (a new store registers it as its first KEK).
    pub fn open_with_kek(dir: impl AsRef<Path>, kek: Kek) -> Result<SledStore, StoreError> {
        let s = SledStore::open(dir)?;
        s.unlock(vec![kek])?;
        Ok(s)
    }

    /// Supplies the KEKs. A new store registers the first one as its current KEK; otherwise
    /// every KEK the store still needs ([`required_keks`](Self::required_keks)) must be given,
    /// each matching its registered check value.
    pub fn unlock(&self, keks: Vec<Kek>) -> Result<(), StoreError> {
        let mut ring = self
            .keyring
            .write()
            .map_err(|_| backend("keyring lock poisoned"))?;
        let fresh = ring.current.is_none();
        let mut given = BTreeMap::new();
        for kek in keks {
            let id = kek.id();
            match self.meta.get(meta_key(META_CHECK, id)).map_err(backend)? {
                Some(check) => verify_check(&kek, &check)?,
                None if fresh && given.is_empty() => {
                    let _g = self.gate.write().map_err(|_| backend("gate poisoned"))?;
                    self.register(&kek)?;
                    self.meta
                        .insert(META_CURRENT, &id.0.to_be_bytes())
                        .map_err(backend)?;
                    ring.current = Some(id);
                }
                None => {
                    return Err(StoreError::Kek(format!(
                        "KEK {id} is not registered in this store (introduce a new KEK with rotate_kek)"
                    )));
                }
            }
            given.insert(id, Arc::new(kek));
        }
        for id in self.required_keks()? {
            if !given.contains_key(&id) {
                return Err(StoreError::Kek(format!(
                    "KEK {id} is still needed by this store but was not supplied"
                )));
            }
        }
        ring.keks = given;
        drop(ring);
        self.checkpoint()
    }

    fn register(&self, kek: &Kek) -> Result<(), StoreError> {
        let check = kek
            .wrap(CHECK_PLAIN)
            .map_err(|e| StoreError::Kek(format!("wrap check value: {e}")))?;
        self.meta
            .insert(meta_key(META_CHECK, kek.id()), check)
            .map_err(backend)?;
        self.meta
            .remove(meta_key(META_RETIRED, kek.id()))
            .map_err(backend)?;
        Ok(())
    }

    /// The KEKs that must be supplied at unlock: registered and not retired.
    pub fn required_keks(&self) -> Result<Vec<KekId>, StoreError> {
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(META_CHECK) {
            let (k, _) = kv.map_err(backend)?;
            if let Some(id) = id_from_meta_key(META_CHECK, &k)
                && !self
                    .meta
                    .contains_key(meta_key(META_RETIRED, id))
                    .map_err(backend)?
            {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// The KEK new records are wrapped with, once one is registered.
    pub fn current_kek(&self) -> Result<Option<KekId>, StoreError> {
        Ok(self
            .keyring
            .read()
            .map_err(|_| backend("keyring lock poisoned"))?
            .current)
    }

    /// Keeps the HSM layer's wrapped form of a KEK (durable on return). The store never sees
    /// the master key and cannot unwrap it.
    pub fn store_wrapped_kek(&self, id: KekId, blob: &[u8]) -> Result<(), StoreError> {
        let _g = self.gate.read().map_err(|_| backend("gate poisoned"))?;
        self.meta
            .insert(meta_key(META_WRAPPED, id), blob)
            .map_err(backend)?;
        drop(_g);
        self.checkpoint()
    }

    /// Every wrapped KEK blob kept, by id.
    pub fn wrapped_keks(&self) -> Result<Vec<(KekId, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(META_WRAPPED) {
            let (k, v) = kv.map_err(backend)?;
            if let Some(id) = id_from_meta_key(META_WRAPPED, &k) {
                out.push((id, v.to_vec()));
            }
        }
        Ok(out)
    }

    /// Deletes the wrapped blob of a retired KEK.
    pub fn remove_wrapped_kek(&self, id: KekId) -> Result<(), StoreError> {
        if self.required_keks()?.contains(&id) {
            return Err(StoreError::Kek(format!("KEK {id} is still needed")));
        }
        self.meta
            .remove(meta_key(META_WRAPPED, id))
            .map_err(backend)?;
        self.checkpoint()
    }

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

    /// Tests only: stops (`true`) or resumes timed and size-triggered checkpoints, so that
    /// commits stay in the WAL and a crash image exercises replay. Explicit checkpoints
    /// (metadata writes, [`checkpoint`](Self::checkpoint), drop) still run.
    #[doc(hidden)]
    pub fn pause_checkpoints(&self, paused: bool) {
        self.durable.pause(paused);
    }

    /// The number of objects in the store: the indexed ones (a record that could not be
    /// parsed at open is not counted; see [`corrupt_records`](Self::corrupt_records)).
    pub fn stored_objects(&self) -> usize {
        self.index.read().map_or(0, |i| i.len())
    }

    /// Records found damaged since the store was opened.
    pub fn corrupt_records(&self) -> Vec<String> {
        self.corrupt
            .lock()
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn kek(&self, id: KekId) -> Result<Arc<Kek>, StoreError> {
        let ring = self
            .keyring
            .read()
            .map_err(|_| backend("keyring lock poisoned"))?;
        if ring.keks.is_empty() {
            return Err(StoreError::Locked);
        }
        ring.keks
            .get(&id)
            .cloned()
            .ok_or_else(|| StoreError::Kek(format!("KEK {id} was not supplied at unlock")))
    }

    fn current(&self) -> Result<Arc<Kek>, StoreError> {
        let ring = self
            .keyring
            .read()
            .map_err(|_| backend("keyring lock poisoned"))?;
        let id = ring.current.ok_or(StoreError::Locked)?;
        ring.keks.get(&id).cloned().ok_or(StoreError::Locked)
    }

    /// Parses and unwraps one record.
    fn decode(&self, uid: &str, raw: &[u8]) -> Result<ManagedObject, StoreError> {
        let parsed = record::parse(uid, raw)?;
        let mut o = parsed.shell();
        if let Some((id, wrapped)) = &parsed.wrapped {
            let kek = match self.kek(*id) {
                Ok(k) => k,
                Err(StoreError::Kek(reason)) => {
                    return Err(StoreError::Corrupt {
                        uid: uid.to_owned(),
                        reason,
                    });
                }
                Err(e) => return Err(e),
            };
            o.object = Some(record::open_sealed(uid, wrapped, &kek)?);
        }
        Ok(o)
    }

    /// Loads for a listing: a damaged record is remembered and left out.
    fn load_listed(&self, uid: &str) -> Result<Option<ManagedObject>, StoreError> {
        let Some(raw) = self.objects.get(uid.as_bytes()).map_err(backend)? else {
            return Ok(None);
        };
        match self.decode(uid, &raw) {
            Ok(o) => Ok(Some(o)),
            Err(StoreError::Corrupt { uid, .. }) => {
                if let Ok(mut c) = self.corrupt.lock() {
                    c.insert(uid);
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn journal(&self, uids: impl Iterator<Item = String>) {
        if let Ok(mut j) = self.journal.lock()
            && let Some(set) = j.as_mut()
        {
            set.extend(uids);
        }
    }

    // ---- applying commits ----------------------------------------------------------------

    /// Starts the applier and syncer threads (`pipeline.rs`).
    fn start_pipeline(&mut self) -> Result<(), StoreError> {
        let (to_syncer, syncer_rx) = mpsc::channel();
        let d = self.durable.clone();
        self.pipeline.push(
            std::thread::Builder::new()
                .name("kmipd-store-sync".into())
                .spawn(move || pipeline::run_syncer(&d, syncer_rx))
                .map_err(backend)?,
        );
        let (to_applier, applier_rx) = mpsc::channel();
        let applier = Applier {
            objects: self.objects.clone(),
            refs: self.refs.clone(),
            index: self.index.clone(),
            durable: self.durable.clone(),
            journal: self.journal.clone(),
        };
        self.pipeline.push(
            std::thread::Builder::new()
                .name("kmipd-store-apply".into())
                .spawn(move || applier.run(applier_rx, to_syncer))
                .map_err(backend)?,
        );
        self.to_applier = Some(to_applier);
        Ok(())
    }

    /// Takes the gate exclusively, then waits until every commit queued so far is applied
    /// (and journalled): from here until the guard is dropped, sled holds every commit that
    /// was encoded before, and no new one is encoded.
    fn exclusive(&self) -> Result<std::sync::RwLockWriteGuard<'_, ()>, StoreError> {
        let g = self.gate.write().map_err(|_| backend("gate poisoned"))?;
        let (tx, rx) = mpsc::channel();
        self.to_applier
            .as_ref()
            .ok_or_else(|| backend("the store is closing"))?
            .send(ToApplier::Barrier(tx))
            .map_err(|_| backend("the store's applier thread is gone"))?;
        rx.recv()
            .map_err(|_| backend("the store's applier thread is gone"))?;
        Ok(g)
    }

    /// Encodes the changes of a commit (the caller's thread, no lock but the shared gate).
    /// Expectations come first, so that they are checked against the state before the
    /// commit's own writes.
    fn prepare(&self, changes: &[Change]) -> Result<Vec<Prepared>, StoreError> {
        let kek = self.current()?;
        let mut prepared = Vec::with_capacity(changes.len());
        for c in changes {
            match c {
                Change::Expect { uid, revision } => prepared.push(Prepared {
                    uid: uid.clone(),
                    op: Op::Expect(*revision),
                }),
                Change::ExpectNoOther { query, seen } => prepared.push(Prepared {
                    uid: String::new(),
                    op: Op::NoOther(Box::new(Search {
                        terms: select_terms(query)?,
                        query: query.clone(),
                        seen: seen.iter().cloned().collect(),
                    })),
                }),
                Change::Put(_) | Change::Delete(_) => {}
            }
        }
        for c in changes {
            match c {
                Change::Put(o) => {
                    let record = record::encode(o, &kek)?;
                    let terms = index_terms(o)?;
                    self.sequence.fetch_max(o.sequence, Ordering::Relaxed);
                    prepared.push(Prepared {
                        uid: o.uid.clone(),
                        op: Op::Put {
                            record,
                            sequence: o.sequence,
                            terms,
                        },
                    });
                }
                Change::Delete(uid) => prepared.push(Prepared {
                    uid: uid.clone(),
                    op: Op::Delete,
                }),
                Change::Expect { .. } | Change::ExpectNoOther { .. } => {}
            }
        }
        Ok(prepared)
    }

    // ---- KEK rotation ----------------------------------------------------------------------

    /// Rotates to `new`: registers it as the current KEK, re-wraps every record, and retires
    /// the KEKs no record needs any more. Online; resumable after a crash (call it again with
    /// the same KEK after unlocking with the old and the new one).
    pub fn rotate_kek(&self, new: Kek) -> Result<KekRotation, StoreError> {
        self.begin_kek_rotation(new)?;
        let mut report = KekRotation::default();
        loop {
            let (done, skipped) = self.rewrap_step(256)?;
            report.rewrapped = report.rewrapped.saturating_add(done);
            if done == 0 {
                report.skipped_corrupt = skipped;
                break;
            }
        }
        report.retired = self.finish_kek_rotation()?;
        Ok(report)
    }

    /// First step of a rotation: `new` is registered and becomes the KEK of every write
    /// from now on (durable before return). Both KEKs stay required until
    /// [`finish_kek_rotation`](Self::finish_kek_rotation).
    pub fn begin_kek_rotation(&self, new: Kek) -> Result<(), StoreError> {
        let id = new.id();
        let _g = self.exclusive()?;
        let mut ring = self
            .keyring
            .write()
            .map_err(|_| backend("keyring lock poisoned"))?;
        if ring.keks.is_empty() {
            return Err(StoreError::Locked);
        }
        match self.meta.get(meta_key(META_CHECK, id)).map_err(backend)? {
            Some(check) => verify_check(&new, &check)?,
            None => self.register(&new)?,
        }
        self.meta
            .insert(META_CURRENT, &id.0.to_be_bytes())
            .map_err(backend)?;
        ring.current = Some(id);
        ring.keks.insert(id, Arc::new(new));
        drop(ring);
        drop(_g);
        self.checkpoint()
    }

    /// Re-wraps up to `max` records not under the current KEK (durable before return).
    /// Returns how many were re-wrapped and the damaged records that were skipped.
    pub fn rewrap_step(&self, max: usize) -> Result<(usize, Vec<String>), StoreError> {
        let current = self.current()?;
        let mut done = 0;
        let mut skipped = Vec::new();
        for kv in self.objects.iter() {
            if done >= max {
                break;
            }
            let (k, raw) = kv.map_err(backend)?;
            let uid = String::from_utf8_lossy(&k).into_owned();
            let parsed = match record::parse(&uid, &raw) {
                Ok(p) => p,
                Err(_) => {
                    skipped.push(uid);
                    continue;
                }
            };
            let Some((id, wrapped)) = &parsed.wrapped else {
                continue;
            };
            if *id == current.id() {
                continue;
            }
            let object = match self
                .kek(*id)
                .and_then(|kek| record::open_sealed(&uid, wrapped, &kek))
            {
                Ok(o) => o,
                Err(_) => {
                    skipped.push(uid);
                    continue;
                }
            };
            let new_raw = record::rewrap(&parsed, &object, &current)?;
            let _g = self.gate.read().map_err(|_| backend("gate poisoned"))?;
            let swapped = self
                .objects
                .compare_and_swap(&k, Some(&raw), Some(new_raw))
                .map_err(backend)?;
            if swapped.is_ok() {
                self.journal(std::iter::once(uid));
                done += 1;
            }
        }
        for s in &skipped {
            if let Ok(mut c) = self.corrupt.lock() {
                c.insert(s.clone());
            }
        }
        if done > 0 {
            self.checkpoint()?;
        }
        Ok((done, skipped))
    }

    /// Last step of a rotation: if no readable record needs an older KEK, retires every
    /// KEK but the current one and returns them; otherwise fails (run `rewrap_step` again).
    pub fn finish_kek_rotation(&self) -> Result<Vec<KekId>, StoreError> {
        let current = self.current()?.id();
        for kv in self.objects.iter() {
            let (k, raw) = kv.map_err(backend)?;
            let uid = String::from_utf8_lossy(&k).into_owned();
            let Ok(parsed) = record::parse(&uid, &raw) else {
                continue;
            };
            if let Some((id, wrapped)) = &parsed.wrapped
                && *id != current
                && self
                    .kek(*id)
                    .and_then(|kek| record::open_sealed(&uid, wrapped, &kek))
                    .is_ok()
            {
                return Err(StoreError::Kek(format!(
                    "rotation not finished: {uid} is still wrapped by KEK {id}"
                )));
            }
        }
        let mut retired = Vec::new();
        for id in self.required_keks()? {
            if id != current {
                self.meta
                    .insert(meta_key(META_RETIRED, id), &[])
                    .map_err(backend)?;
                retired.push(id);
            }
        }
        self.checkpoint()?;
        if let Ok(mut ring) = self.keyring.write() {
            ring.keks.retain(|id, _| *id == current);
        }
        Ok(retired)
    }

    // ---- backup and restore ----------------------------------------------------------------

    /// Writes a consistent copy of the store to `path` while it keeps serving. Records stay
    /// as they are on disk (key material wrapped); the metadata (check values, wrapped KEKs)
    /// is included, so a restore needs the same KEKs. The file is fsynced before return.
    pub fn backup(&self, path: impl AsRef<Path>) -> Result<BackupInfo, StoreError> {
        let path = path.as_ref();
        let tmp = path.with_extension("partial");
        let file = File::create(&tmp).map_err(backend)?;
        let mut w = CrcWriter::new(BufWriter::new(file));
        let mut info = BackupInfo::default();
        w.write_all(BACKUP_MAGIC)?;
        w.write_all(&[BACKUP_VERSION])?;
        *self
            .journal
            .lock()
            .map_err(|_| backend("journal poisoned"))? = Some(BTreeSet::new());
        let result = (|| {
            for kv in self.objects.iter() {
                let (k, v) = kv.map_err(backend)?;
                w.entry(b'R', &k, Some(&v))?;
                info.records = info.records.saturating_add(1);
            }
            // The cut: every commit encoded so far is applied and journalled, and no new one
            // is encoded while the journal is replayed and the metadata read.
            let _g = self.exclusive()?;
            let changed = self
                .journal
                .lock()
                .map_err(|_| backend("journal poisoned"))?
                .take()
                .unwrap_or_default();
            for uid in changed {
                match self.objects.get(uid.as_bytes()).map_err(backend)? {
                    Some(v) => w.entry(b'R', uid.as_bytes(), Some(&v))?,
                    None => w.entry(b'X', uid.as_bytes(), None)?,
                }
            }
            for kv in self.meta.iter() {
                let (k, v) = kv.map_err(backend)?;
                w.entry(b'M', &k, Some(&v))?;
                info.meta = info.meta.saturating_add(1);
            }
            Ok::<(), StoreError>(())
        })();
        if let Ok(mut j) = self.journal.lock() {
            *j = None;
        }
        result?;
        let crc = w.crc.clone().finalize();
        let mut inner = w.inner;
        inner.write_all(b"E").map_err(backend)?;
        inner.write_all(&crc.to_be_bytes()).map_err(backend)?;
        let file = inner.into_inner().map_err(|e| backend(e.error()))?;
        file.sync_all().map_err(backend)?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(backend)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent).map_err(backend)?;
        }
        Ok(info)
    }

    /// Creates a store in `dir` (absent or empty) from a backup file. The indexes are built
    /// from the records when the store is opened (no KEK needed: attributes are stored in the
    /// clear); open it afterwards and unlock it with the KEKs of the backed-up store. The
    /// backup's store format entry is not copied: the store is in this build's format.
    pub fn restore(
        backup: impl AsRef<Path>,
        dir: impl AsRef<Path>,
    ) -> Result<BackupInfo, StoreError> {
        let dir = dir.as_ref();
        if dir.exists() && std::fs::read_dir(dir).map_err(backend)?.next().is_some() {
            return Err(backend(format!(
                "restore target {} is not empty",
                dir.display()
            )));
        }
        let mut bytes = Vec::new();
        File::open(backup.as_ref())
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(backend)?;
        let (body, trailer) = bytes
            .split_last_chunk::<5>()
            .ok_or_else(|| backend("backup file truncated"))?;
        let (end, crc) = trailer
            .split_first()
            .ok_or_else(|| backend("backup truncated"))?;
        if *end != b'E' || crc32fast::hash(body).to_be_bytes() != *crc {
            return Err(backend("backup file damaged or truncated (checksum)"));
        }
        let rest = body
            .strip_prefix(BACKUP_MAGIC.as_slice())
            .and_then(|r| r.strip_prefix(&[BACKUP_VERSION]))
            .ok_or_else(|| backend("not a kmipd backup of a known version"))?;
        let mut records: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let mut meta = Vec::new();
        let mut cur = rest;
        while let Some((kind, r)) = cur.split_first() {
            let (key, r) = take_lp(r)?;
            let (value, r) = if *kind == b'X' {
                (&[][..], r)
            } else {
                take_lp(r)?
            };
            match kind {
                b'R' => {
                    records.insert(key.to_vec(), Some(value.to_vec()));
                }
                b'X' => {
                    records.insert(key.to_vec(), None);
                }
                b'M' => meta.push((key.to_vec(), value.to_vec())),
                _ => return Err(backend("backup file: unknown entry")),
            }
            cur = r;
        }
        let store = SledStore::open(dir)?;
        let mut info = BackupInfo::default();
        for (k, v) in meta {
            if k != META_FORMAT {
                store.meta.insert(k, v).map_err(backend)?;
            }
            info.meta = info.meta.saturating_add(1);
        }
        for (k, v) in records.into_iter().filter_map(|(k, v)| Some((k, v?))) {
            let uid = String::from_utf8_lossy(&k).into_owned();
            store.objects.insert(&k, v.as_slice()).map_err(backend)?;
            info.records = info.records.saturating_add(1);
            if record::parse(&uid, &v).is_err() {
                info.unindexed = info.unindexed.saturating_add(1);
            }
        }
        store.checkpoint()?;
        Ok(info)
    }
}

fn take_lp(b: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    let (len, rest) = b
        .split_first_chunk::<4>()
        .ok_or_else(|| backend("backup file: truncated entry"))?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(backend)?;
    if rest.len() < len {
        return Err(backend("backup file: truncated entry"));
    }
    Ok(rest.split_at(len))
}

fn verify_check(kek: &Kek, check: &[u8]) -> Result<(), StoreError> {
    match kek.unwrap(check) {
        Ok(p) if p.as_slice() == CHECK_PLAIN => Ok(()),
        _ => Err(StoreError::Kek(format!(
            "the key given as KEK {} is not the one this store registered under that id",
            kek.id()
        ))),
    }
}

/// A writer that keeps a CRC-32 of what went through it.
struct CrcWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> CrcWriter<W> {
    fn new(inner: W) -> Self {
        CrcWriter {
            inner,
            crc: crc32fast::Hasher::new(),
        }
    }

    fn write_all(&mut self, b: &[u8]) -> Result<(), StoreError> {
        self.crc.update(b);
        self.inner.write_all(b).map_err(backend)
    }

    fn entry(&mut self, kind: u8, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        let mut buf = vec![kind];
        push_lp(&mut buf, key)?;
        if let Some(v) = value {
            push_lp(&mut buf, v)?;
        }
        self.write_all(&buf)
    }
}

/// A change with its record encoded, ready for the transaction.
struct Prepared {
    uid: String,
    op: Op,
}

/// What a [`Prepared`] does to its uid.
enum Op {
    /// The encoded record, and what the in-memory index needs (not in the WAL: a replay
    /// rebuilds the index from the records).
    Put {
        record: Vec<u8>,
        sequence: u64,
        terms: Vec<Term>,
    },
    Delete,
    /// A condition checked in the transaction, never written (nor logged in the WAL).
    Expect(Option<Revision>),
    /// A condition on a search ([`Change::ExpectNoOther`]), checked by the applier against
    /// the index before the commit's transaction; never written. Its `uid` is empty.
    NoOther(Box<Search>),
}

/// A [`Change::ExpectNoOther`], ready for the applier.
struct Search {
    query: Query,
    /// The query's index terms (empty: every object is a candidate).
    terms: Vec<Select>,
    seen: BTreeSet<String>,
}

impl Prepared {
    /// A write (Put or Delete), not an expectation.
    fn writes(&self) -> bool {
        matches!(self.op, Op::Put { .. } | Op::Delete)
    }
}

/// The revision of a raw stored record: the first 16 bytes of its SHA-256.
fn revision_of(raw: &[u8]) -> Revision {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(raw);
    let mut r = [0u8; 16];
    if let Some(head) = digest.first_chunk::<16>() {
        r = *head;
    }
    Revision(r)
}

type TxErr = ConflictableTransactionError<StoreError>;

/// Applies prepared changes as one sled transaction over `objects` and `refs`, recording
/// `frame` (if any) as the last applied WAL frame in `refs`. An expectation reads the uid's
/// record in the transaction (so it sees the writes before it) and aborts everything with
/// [`StoreError::Conflict`] if it does not hold. Used by `commit` (under the commit mutex) and
/// by the WAL replay at open (which has no expectations). The in-memory index is the
/// caller's business.
fn apply(
    objects: &sled::Tree,
    refs: &sled::Tree,
    prepared: &[&Prepared],
    frame: Option<u64>,
) -> Result<(), Failure> {
    let result = (objects, refs).transaction(|(objects, refs)| {
        for p in prepared {
            let key = p.uid.as_bytes();
            match &p.op {
                Op::Expect(want) => {
                    let now = objects.get(key)?.map(|raw| revision_of(&raw));
                    if now != *want {
                        return Err(TxErr::Abort(StoreError::Conflict { uid: p.uid.clone() }));
                    }
                }
                Op::Put { record, .. } => {
                    objects.insert(key, record.as_slice())?;
                }
                Op::Delete => {
                    objects.remove(key)?;
                }
                Op::NoOther(_) => {}
            }
        }
        if let Some(frame) = frame {
            refs.insert(APPLIED_KEY, &frame.to_be_bytes())?;
        }
        Ok(())
    });
    match result {
        Ok(()) => Ok(()),
        Err(TransactionError::Abort(e)) => Err(Failure::Aborted(e)),
        Err(TransactionError::Storage(e)) => Err(Failure::Other(e.to_string())),
    }
}

/// Why applying a commit failed.
enum Failure {
    /// The transaction aborted (nothing applied, nothing appended): this commit's fault.
    Aborted(StoreError),
    /// Storage, WAL or a poisoned store: nothing more can be committed.
    Other(String),
}

impl Failure {
    fn into_error(self) -> StoreError {
        match self {
            Failure::Aborted(e) => e,
            Failure::Other(m) => StoreError::Backend(m),
        }
    }
}

/// The WAL payload of a commit: format byte, frame number (8 bytes BE, set under the commit
/// mutex by [`set_frame_number`]), then one lp field per change: `P` lp(uid) lp(record) or
/// `D` lp(uid). The record is the encoded one (key material KEK-wrapped). Format 1 had a
/// third field after a Put's record (its index keys), which a replay ignores. Expectations
/// are not written: a logged commit already passed them.
fn encode_payload(prepared: &[&Prepared]) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![WAL_FORMAT];
    out.extend_from_slice(&0u64.to_be_bytes());
    let mut change = Vec::new();
    for p in prepared {
        change.clear();
        match &p.op {
            Op::Put { record, .. } => {
                change.push(b'P');
                push_lp(&mut change, p.uid.as_bytes())?;
                push_lp(&mut change, record)?;
            }
            Op::Delete => {
                change.push(b'D');
                push_lp(&mut change, p.uid.as_bytes())?;
            }
            Op::Expect(_) | Op::NoOther(_) => continue,
        }
        push_lp(&mut out, &change)?;
    }
    Ok(out)
}

fn set_frame_number(payload: &mut [u8], n: u64) -> std::io::Result<()> {
    payload
        .get_mut(1..9)
        .ok_or_else(|| std::io::Error::other("WAL payload too short"))?
        .copy_from_slice(&n.to_be_bytes());
    Ok(())
}

/// Parses a WAL payload (format 1 or 2) back into its frame number and prepared changes
/// (with no index terms: a replay's index is rebuilt from the records).
fn decode_payload(payload: &[u8]) -> Option<(u64, Vec<Prepared>)> {
    let (format, rest) = payload.split_first()?;
    if !matches!(*format, 1 | WAL_FORMAT) {
        return None;
    }
    let (n, rest) = rest.split_first_chunk::<8>()?;
    let mut prepared = Vec::new();
    for change in split_lp(rest)? {
        let (kind, fields) = change.split_first()?;
        let fields = split_lp(fields)?;
        let put = |uid: &[u8], record: &[u8]| {
            Some(Prepared {
                uid: String::from_utf8(uid.to_vec()).ok()?,
                op: Op::Put {
                    record: record.to_vec(),
                    sequence: 0,
                    terms: Vec::new(),
                },
            })
        };
        match (*format, kind, fields.as_slice()) {
            (1, b'P', [uid, rec, _]) | (WAL_FORMAT, b'P', [uid, rec]) => {
                prepared.push(put(uid, rec)?);
            }
            (_, b'D', [uid]) => prepared.push(Prepared {
                uid: String::from_utf8(uid.to_vec()).ok()?,
                op: Op::Delete,
            }),
            _ => return None,
        }
    }
    Some((u64::from_be_bytes(*n), prepared))
}

/// The number of the last WAL frame sled has applied (0: none yet).
fn applied_frame(refs: &sled::Tree) -> Result<u64, StoreError> {
    match refs.get(APPLIED_KEY).map_err(backend)? {
        None => Ok(0),
        Some(v) => v
            .as_ref()
            .first_chunk::<8>()
            .map(|b| u64::from_be_bytes(*b))
            .ok_or_else(|| backend("damaged WAL position")),
    }
}

/// Recovery: applies, in order, the frames of `segments` that sled does not have yet (frame
/// number = last applied + 1); skips those it has; ignores a segment's torn tail and, after
/// a gap in the numbering, everything else (never acknowledged: see `docs/storage.md`).
/// Returns the number of the last frame applied to sled.
fn replay(
    objects: &sled::Tree,
    refs: &sled::Tree,
    segments: &[(u64, PathBuf)],
    syncer: &FileSyncer,
) -> Result<u64, StoreError> {
    let mut applied = applied_frame(refs)?;
    let counters = &syncer.counters;
    let count = |c: &AtomicU64, n: u64| {
        c.fetch_add(n, Ordering::Relaxed);
    };
    let mut gap = false;
    for (_, path) in segments {
        let contents = wal::read_segment(path).map_err(backend)?;
        count(&counters.discarded_bytes, contents.torn_bytes);
        for payload in &contents.frames {
            let frame_len = u64::try_from(payload.len())
                .unwrap_or(u64::MAX)
                .saturating_add(8);
            if gap {
                count(&counters.discarded_bytes, frame_len);
                continue;
            }
            let (n, prepared) = decode_payload(payload).ok_or_else(|| {
                backend(format!(
                    "WAL frame in {} is of an unknown format (written by a newer kmipd?)",
                    path.display()
                ))
            })?;
            if n <= applied {
                count(&counters.skipped_frames, 1);
            } else if n == applied.saturating_add(1) {
                let items: Vec<&Prepared> = prepared.iter().collect();
                apply(objects, refs, &items, Some(n)).map_err(Failure::into_error)?;
                applied = n;
                count(&counters.replayed_frames, 1);
            } else {
                gap = true;
                count(&counters.discarded_bytes, frame_len);
            }
        }
    }
    Ok(applied)
}

/// The index terms of the indexed filters of `query` (none: the query needs a scan).
fn select_terms(query: &Query) -> Result<Vec<Select>, StoreError> {
    query
        .filters
        .iter()
        .filter(|f| f.indexed())
        .map(|f| {
            let range = match f {
                Filter::Date(_, from, to) => Some((*from, *to)),
                _ => None,
            };
            Ok((filter_prefix(f)?, range))
        })
        .collect()
}

/// Drops what store format 1 kept in sled for its indexes: the `index` and `seq` trees and
/// every `refs` entry but the applied WAL frame. Idempotent (a crash before the new format
/// byte is flushed makes the next open do it again).
fn drop_index_trees(db: &sled::Db, refs: &sled::Tree) -> Result<(), StoreError> {
    for name in ["index", "seq"] {
        db.drop_tree(name).map_err(backend)?;
    }
    for kv in refs.iter() {
        let (k, _) = kv.map_err(backend)?;
        if k.as_ref() != APPLIED_KEY {
            refs.remove(k).map_err(backend)?;
        }
    }
    Ok(())
}

/// The in-memory index of every record in `objects`, and the uids of the records that could
/// not be parsed (left out of it, and reported by `corrupt_records`).
fn build_index(objects: &sled::Tree) -> Result<(MemIndex, BTreeSet<String>), StoreError> {
    let mut index = MemIndex::default();
    let mut damaged = BTreeSet::new();
    for kv in objects.iter() {
        let (k, raw) = kv.map_err(backend)?;
        let uid = String::from_utf8_lossy(&k).into_owned();
        match record::parse(&uid, &raw).and_then(|p| {
            let shell = p.into_shell();
            Ok((shell.sequence, index_terms(&shell)?))
        }) {
            Ok((sequence, terms)) => {
                if !index.put(&uid, sequence, &terms) {
                    return Err(backend("more than 2^32 objects or index terms"));
                }
            }
            Err(_) => {
                damaged.insert(uid);
            }
        }
    }
    Ok((index, damaged))
}

impl ObjectStore for SledStore {
    fn get(&self, uid: &str) -> Result<Option<ManagedObject>, StoreError> {
        match self.objects.get(uid.as_bytes()).map_err(backend)? {
            Some(raw) => self.decode(uid, &raw).map(Some),
            None => Ok(None),
        }
    }

    /// The record is read once; its revision is the first 16 bytes of its SHA-256.
    fn get_revised(&self, uid: &str) -> Result<Option<(ManagedObject, Revision)>, StoreError> {
        match self.objects.get(uid.as_bytes()).map_err(backend)? {
            Some(raw) => Ok(Some((self.decode(uid, &raw)?, revision_of(&raw)))),
            None => Ok(None),
        }
    }

    fn all(&self) -> Result<Vec<ManagedObject>, StoreError> {
        self.current()?;
        let uids = self
            .index
            .read()
            .map_err(|_| backend("index lock poisoned"))?
            .in_order();
        let mut out = Vec::with_capacity(uids.len());
        for uid in uids {
            if let Some(o) = self.load_listed(&uid)? {
                out.push(o);
            }
        }
        Ok(out)
    }

    fn find(&self, query: &Query) -> Result<Vec<ManagedObject>, StoreError> {
        self.current()?;
        let terms = select_terms(query)?;
        if terms.is_empty() {
            return Ok(self
                .all()?
                .into_iter()
                .filter(|o| query.matches(o))
                .collect());
        }
        let uids = self
            .index
            .read()
            .map_err(|_| backend("index lock poisoned"))?
            .select(&terms);
        let mut out = Vec::with_capacity(uids.len());
        for uid in uids {
            if let Some(o) = self.load_listed(&uid)?
                && query.matches(&o)
            {
                out.push(o);
            }
        }
        out.sort_by(|a, b| (a.sequence, &a.uid).cmp(&(b.sequence, &b.uid)));
        Ok(out)
    }

    /// Encodes on the caller's thread, then queues for the applier (`pipeline.rs`) and
    /// returns. Waits for nothing but the gate held shared (taken exclusively only for a
    /// backup's final cut and a KEK switch, each a short in-memory section). `done` runs on
    /// the store's applier or syncer thread (or on this one for an encoding error or a locked
    /// or closed store): it must be quick and must not call back into the store.
    fn commit_then(&self, changes: Vec<Change>, done: crate::CommitDone) {
        let done = Completion::new(done);
        if changes.is_empty() {
            return done.complete(Ok(()));
        }
        let gate = match self.gate.read() {
            Ok(g) => g,
            Err(_) => return done.complete(Err(backend("gate poisoned"))),
        };
        let prepared = match self.prepare(&changes) {
            Ok(p) => p,
            Err(e) => {
                drop(gate);
                return done.complete(Err(e));
            }
        };
        drop(changes);
        let sent = match &self.to_applier {
            Some(tx) => tx.send(ToApplier::Commit(prepared, done)).map_err(|e| e.0),
            None => Err(ToApplier::Commit(prepared, done)),
        };
        drop(gate);
        if let Err(ToApplier::Commit(_, done)) = sent {
            done.complete(Err(backend("the store is closing")));
        }
    }

    /// [`commit_then`](Self::commit_then), then waits on a channel of its own for the
    /// completion (no other committer is woken for it).
    fn commit(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.commit_then(
            changes,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv()
            .map_err(|_| backend("the commit's completion was lost"))?
    }

    fn next_sequence(&self) -> Result<u64, StoreError> {
        Ok(self
            .sequence
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1))
    }
}

mod index;
mod pipeline;
use index::{MemIndex, Select};
use pipeline::{Applier, Completion, ToApplier};

#[cfg(test)]
mod tests;
