//! [`ObjectStore`] for [`SledStore`]: reads (from the cache of decoded objects, `cache.rs`,
//! else a record parsed and its key material unwrapped with the KEK it names), `find` through the in-memory index, and `commit_then`, which
//! encodes on the caller's thread and queues for the committer thread (`pipeline.rs`).
//!
//! **Damaged records.** A record that fails its checksum or its unwrap is reported as
//! [`StoreError::Corrupt`] by `get`, and left out by `all` and `find`, so one bad record does
//! not stop Locate for everything else; either way it is remembered
//! ([`SledStore::corrupt_records`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};

use super::cache::Cached;
use super::commit::{revision_of, select_terms};
use super::{SledStore, backend};
use crate::query::Query;
use crate::{Change, ManagedObject, ObjectStore, Revision, StoreError};

impl SledStore {
    /// Parses and unwraps one record.
    fn decode(&self, uid: &str, raw: &[u8]) -> Result<ManagedObject, StoreError> {
        crate::kek::Keyring::decode(&self.keyring, uid, raw)
    }

    /// [`decode`](Self::decode) for a read: a damaged record is remembered, then reported.
    fn decode_read(&self, uid: &str, raw: &[u8]) -> Result<ManagedObject, StoreError> {
        self.decode(uid, raw).inspect_err(|e| {
            if let StoreError::Corrupt { uid, .. } = e
                && let Ok(mut c) = self.corrupt.lock()
            {
                c.insert(uid.clone());
            }
        })
    }

    /// The raw record of `uid` (sled holds every acknowledged commit: `pipeline.rs`).
    fn raw(&self, uid: &str) -> Result<Option<sled::IVec>, StoreError> {
        self.objects.get(uid.as_bytes()).map_err(backend)
    }

    /// A read through the object cache (`cache.rs`): its entry, else the record decoded
    /// (and put in the cache unless a write ran meanwhile). A damaged record is remembered,
    /// then reported.
    fn read(&self, uid: &str) -> Result<Option<Arc<Cached>>, StoreError> {
        let miss = match self.cache.get(uid) {
            Ok(hit) => return Ok(Some(hit)),
            Err(miss) => miss,
        };
        let Some(raw) = self.raw(uid)? else {
            return Ok(None);
        };
        let object = self.decode_read(uid, &raw)?;
        let Some(miss) = miss else {
            return Ok(Some(Cached::uncounted(object, revision_of(&raw))));
        };
        let cached = Cached::new(object, revision_of(&raw));
        self.cache.fill(miss, uid, cached.clone());
        Ok(Some(cached))
    }

    /// A read that bypasses the object cache (tests: what sled holds).
    #[cfg(test)]
    pub(super) fn get_uncached(
        &self,
        uid: &str,
    ) -> Result<Option<(ManagedObject, Revision)>, StoreError> {
        match self.raw(uid)? {
            Some(raw) => Ok(Some((self.decode_read(uid, &raw)?, revision_of(&raw)))),
            None => Ok(None),
        }
    }

    /// Loads for a listing: a damaged record is remembered and left out. An object in the
    /// cache comes from there; one read from sled is not put in it (a listing would push
    /// out what reads use).
    fn load_listed(&self, uid: &str) -> Result<Option<ManagedObject>, StoreError> {
        if let Ok(hit) = self.cache.get(uid) {
            return Ok(Some(hit.object.clone()));
        }
        let Some(raw) = self.raw(uid)? else {
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
}

impl SledStore {
    /// Every server setting kept (`ObjectStore::setting`): name and value, by name.
    pub fn settings(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = crate::setting_key("");
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(prefix.as_bytes()) {
            let (k, v) = kv.map_err(backend)?;
            if let Some(name) = k
                .strip_prefix(prefix.as_bytes())
                .and_then(|n| std::str::from_utf8(n).ok())
            {
                out.push((name.to_owned(), v.to_vec()));
            }
        }
        Ok(out)
    }
}

impl ObjectStore for SledStore {
    /// From the object cache, else sled (`cache.rs`).
    fn get(&self, uid: &str) -> Result<Option<ManagedObject>, StoreError> {
        if !self.cache.enabled() {
            return match self.raw(uid)? {
                Some(raw) => self.decode_read(uid, &raw).map(Some),
                None => Ok(None),
            };
        }
        Ok(self.read(uid)?.map(|c| c.object.clone()))
    }

    /// From the object cache, else sled: the record is read once; its revision is the first
    /// 16 bytes of its SHA-256.
    fn get_revised(&self, uid: &str) -> Result<Option<(ManagedObject, Revision)>, StoreError> {
        Ok(self.read(uid)?.map(|c| match Arc::try_unwrap(c) {
            Ok(c) => (c.object, c.revision),
            Err(c) => (c.object.clone(), c.revision),
        }))
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

    /// Encodes on the caller's thread, then queues for the committer thread (`pipeline.rs`) and
    /// returns. Waits for nothing but the gate held shared (taken exclusively only for a
    /// backup's final cut and a KEK switch, each a short in-memory section). `done` runs on
    /// the store's committer thread (or on this one for an encoding error or a locked
    /// or closed store): it must be quick and must not call back into the store.
    fn commit_then(&self, changes: Vec<Change>, done: crate::CommitDone) {
        self.queue(changes, None, done);
    }

    /// [`commit_then`](Self::commit_then) with the entry rendered on the committer thread into
    /// the commit's WAL frame, after the commit's checks passed (`pipeline.rs`); fails the
    /// commit when no journal is attached.
    fn commit_journaled(
        &self,
        changes: Vec<Change>,
        entry: Option<crate::JournalEntry>,
        done: crate::CommitDone,
    ) {
        self.queue(changes, entry, done);
    }

    /// Once [`attach_journal`](SledStore::attach_journal) has run.
    fn journals(&self) -> bool {
        self.durable.journal.get().is_some()
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

    /// sled reads its page cache or the local disk.
    fn reads_are_local(&self) -> bool {
        true
    }

    /// From the `meta` tree (`setting/NAME`).
    fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .meta
            .get(crate::setting_key(name))
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    /// Into the `meta` tree, then a checkpoint (as the KEK metadata): durable on return.
    fn set_setting(&self, name: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let gate = self.gate.read().map_err(|_| backend("gate poisoned"))?;
        let key = crate::setting_key(name);
        match value {
            Some(v) => self.meta.insert(key, v).map(drop),
            None => self.meta.remove(key).map(drop),
        }
        .map_err(backend)?;
        drop(gate);
        self.checkpoint()
    }
}
