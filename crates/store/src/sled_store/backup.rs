//! Online backup and restore of a [`SledStore`].
//!
//! [`SledStore::backup`] streams every record and the metadata (key material stays wrapped)
//! while commits go on: changes made during the copy are journalled (by the committer thread
//! and the re-wrap of a KEK rotation) and re-read at the end under a short exclusive section,
//! so the file is the state at one instant. The scan is no snapshot (a key deleted ahead of it
//! or inserted behind it is not met), so the records a backup reports are counted on the file's
//! content: the keys the scan wrote, updated by the replay's records and removals (the backup
//! keeps those keys in memory while it runs). The file: magic, version, entries (`R` record,
//! `X` removed record, `M` metadata; length-prefixed key and value), `E` and a CRC-32 of
//! everything before it. [`SledStore::restore`] checks the CRC and writes a new store.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use super::commit::push_lp;
use super::open::META_FORMAT;
use super::{SledStore, backend};
use crate::StoreError;
use crate::record;
use crate::wal::sync_dir;

const BACKUP_MAGIC: &[u8; 8] = b"KMIPDBAK";
const BACKUP_VERSION: u8 = 1;

/// What a backup or restore copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupInfo {
    /// Object records: those the file holds (what a restore of it yields), or those restored.
    pub records: usize,
    /// Metadata entries (format, KEK check values and wrapped KEKs).
    pub meta: usize,
    /// Records that could not be parsed (restore: copied but not indexed).
    pub unindexed: usize,
}

impl SledStore {
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
            // The keys the file holds a record for: the scan's, then the replay's changes.
            let mut held = BTreeSet::new();
            for kv in self.objects.iter() {
                let (k, v) = kv.map_err(backend)?;
                w.entry(b'R', &k, Some(&v))?;
                held.insert(k);
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
                let key = sled::IVec::from(uid.as_bytes());
                match self.objects.get(&key).map_err(backend)? {
                    Some(v) => {
                        w.entry(b'R', &key, Some(&v))?;
                        held.insert(key);
                    }
                    None => {
                        w.entry(b'X', &key, None)?;
                        held.remove(&key);
                    }
                }
            }
            info.records = held.len();
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

    pub(super) fn journal(&self, uids: impl Iterator<Item = String>) {
        if let Ok(mut j) = self.journal.lock()
            && let Some(set) = j.as_mut()
        {
            set.extend(uids);
        }
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
