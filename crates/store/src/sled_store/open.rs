//! Opening a [`SledStore`] and recovering it: sled's configuration, the store format (a
//! format-1 store's index trees are dropped), the replay of the WAL frames sled had not
//! flushed before a crash (frame number = last applied + 1, in order; a torn tail and
//! everything after a gap was never acknowledged: see `docs/storage.md`), the in-memory index
//! built from the records (damaged ones left out and remembered), then the pipeline and
//! background checkpoint threads and a first checkpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};

use super::commit::{APPLIED_KEY, apply_writes, decode_payload, encode_payload, set_frame_number};
use super::durable::{Durability, FileSyncer};
use super::index::MemIndex;
use super::keyring::META_CURRENT;
use super::pipeline::Committer;
use super::{SledStore, backend};
use crate::StoreError;
use crate::kek::KekId;
use crate::kek::Keyring;
use crate::query::index_terms;
use crate::record;
use crate::wal::{self, Wal};

use super::cache::{DEFAULT_OBJECT_CACHE_ENTRIES, DEFAULT_OBJECT_CACHE_MB, ObjectCache};

/// Default bound of sled's page cache, in MiB (sled's own default is 1 GiB).
pub const DEFAULT_CACHE_CAPACITY_MB: u64 = 64;

/// How a [`SledStore`] opens its sled database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SledOptions {
    /// Bound of sled's page cache in MiB (`sled::Config::cache_capacity`). sled's default of
    /// 1 GiB is far more than a key store needs and grows the resident size under a long run.
    pub cache_capacity_mb: u64,
    /// Bound of the cache of decoded objects (`cache.rs`) in entries; 0 disables it.
    pub object_cache_entries: usize,
    /// Bound of the cache of decoded objects in MiB (their estimated decoded size); 0
    /// disables it.
    pub object_cache_mb: u64,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            cache_capacity_mb: DEFAULT_CACHE_CAPACITY_MB,
            object_cache_entries: DEFAULT_OBJECT_CACHE_ENTRIES,
            object_cache_mb: DEFAULT_OBJECT_CACHE_MB,
        }
    }
}

impl SledOptions {
    /// The cache bound in bytes (saturating).
    pub fn cache_capacity_bytes(&self) -> u64 {
        self.cache_capacity_mb.saturating_mul(1024 * 1024)
    }

    /// The object cache's bound in bytes (saturating).
    pub fn object_cache_bytes(&self) -> usize {
        usize::try_from(self.object_cache_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
    }
}

pub(super) const META_FORMAT: &[u8] = b"format";

/// The store format this build writes under `meta`'s `format` key. 2: the indexes are in
/// memory; 1: they were sled trees (`index`, `seq`, `refs`), dropped when a format-1 store is
/// opened. Records have their own format byte (`record::FORMAT_VERSION`).
pub const STORE_FORMAT: u8 = 2;

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
        // Checkpoints flush and fsync sled (durable.rs): its periodic flusher is not needed.
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
        let (mut applied, recovered) = replay(&objects, &refs, &segments, &syncer)?;
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
        if !recovered.is_empty() {
            // The journal lines of the old segments, which the checkpoint below deletes, are
            // carried into the new one until a journal takes them (`attach_journal`).
            applied = carry_lines(&log, &objects, &refs, &recovered)?;
        }
        let durable = Arc::new(Durability::new(db, syncer, log, applied));
        if !recovered.is_empty() {
            durable.journal.hold_from(first_segment);
        }
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
            recovered_lines: Mutex::new(recovered),
            sequence: AtomicU64::new(last),
            corrupt: Mutex::new(unindexed),
            to_committer: None,
            pipeline: Vec::new(),
            durable,
            background: None,
            cache: Arc::new(ObjectCache::new(
                options.object_cache_entries,
                options.object_cache_bytes(),
            )),
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

    /// Starts the committer thread (`pipeline.rs`).
    fn start_pipeline(&mut self) -> Result<(), StoreError> {
        let (to_committer, committer_rx) = mpsc::channel();
        let committer = Committer {
            objects: self.objects.clone(),
            refs: self.refs.clone(),
            index: self.index.clone(),
            durable: self.durable.clone(),
            journal: self.journal.clone(),
            cache: self.cache.clone(),
        };
        self.pipeline.push(
            std::thread::Builder::new()
                .name("kmipd-store-commit".into())
                .spawn(move || committer.run(committer_rx))
                .map_err(backend)?,
        );
        self.to_committer = Some(to_committer);
        Ok(())
    }
}

/// The number of the last WAL frame sled has applied (0: none yet).
pub(super) fn applied_frame(refs: &sled::Tree) -> Result<u64, StoreError> {
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
/// Returns the number of the last frame applied to sled, and the journal lines of every
/// frame kept (applied or skipped), in order: the journal's file may lack any of them.
fn replay(
    objects: &sled::Tree,
    refs: &sled::Tree,
    segments: &[(u64, PathBuf)],
    syncer: &FileSyncer,
) -> Result<(u64, Vec<u8>), StoreError> {
    let mut applied = applied_frame(refs)?;
    let mut lines = Vec::new();
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
            let decoded = decode_payload(payload).ok_or_else(|| {
                backend(format!(
                    "WAL frame in {} is of an unknown format (written by a newer kmipd?)",
                    path.display()
                ))
            })?;
            let n = decoded.frame;
            if n <= applied {
                count(&counters.skipped_frames, 1);
            } else if n == applied.saturating_add(1) {
                apply_writes(objects, refs, &decoded.writes, n).map_err(backend)?;
                applied = n;
                count(&counters.replayed_frames, 1);
            } else {
                gap = true;
                count(&counters.discarded_bytes, frame_len);
                continue;
            }
            lines.extend_from_slice(decoded.lines);
        }
    }
    Ok((applied, lines))
}

/// At open, before the first checkpoint deletes the old segments: appends the journal lines
/// they held as one frame (lines only) to the new segment, syncs it and records it as applied
/// in sled. Returns its number.
fn carry_lines(
    log: &Wal,
    objects: &sled::Tree,
    refs: &sled::Tree,
    lines: &[u8],
) -> Result<u64, StoreError> {
    let mut payload = encode_payload(&[], lines)?;
    let mut w = log.lock().map_err(backend)?;
    let n = w.next_frame;
    set_frame_number(&mut payload, n).map_err(backend)?;
    let frame = wal::encode_frame(&payload).map_err(backend)?;
    log.append(&mut w, &frame).map_err(backend)?;
    w.next_frame = n.saturating_add(1);
    drop(w);
    log.sync().map_err(backend)?;
    apply_writes(objects, refs, &[], n).map_err(backend)?;
    Ok(n)
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
