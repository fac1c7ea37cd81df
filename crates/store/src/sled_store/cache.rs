//! The cache of decoded objects of a [`SledStore`](super::SledStore): by uid, the object as
//! a read decodes it from its record (parsed, key material unwrapped) and the record's
//! [`Revision`], so that a read of a recently written or read object skips sled, the parse,
//! the RFC 5649 unwrap and the record's SHA-256.
//!
//! **What it holds is what sled holds.** For every uid it has an entry for, the entry is the
//! decoding of the record sled has under that uid, except while a committed write is between
//! sled and the cache (before its commit is acknowledged: the committer updates the cache
//! after sled's writes and before any completion). So a read never gets an object that an
//! acknowledged commit changed or deleted, and never a change that is not yet acknowledged.
//! Three kinds of writer keep it so:
//! - the committer (`pipeline.rs`), after writing a round's frames into sled: each Put's
//!   object (decoded before it was encoded: the same object a read of the record gives) and
//!   revision replace the entry, each Delete removes it ([`ObjectCache::apply`]);
//! - a KEK rotation's re-wrap, which changes a record outside the committer: its
//!   compare-and-swap in sled and the entry's removal are one section under the cache's lock
//!   ([`ObjectCache::section`]); beginning and finishing a rotation, unlocking and restoring
//!   clear the cache;
//! - a read that missed fills the entry with what it decoded, unless some write ran since it
//!   looked ([`Miss`]: the cache's epoch, bumped by every write; a read that may have read sled
//!   before a write cannot put that older record back).
//!
//! The committer writes sled outside the lock; its update carries the epoch it saw before
//! writing sled, and if any other write (a re-wrap) ran in between, it removes its uids
//! instead of filling them: a re-wrap that swapped the committer's record in sled can never
//! be overwritten by the committer's older entry.
//!
//! **The committer's checks use it.** Between the committer's rounds, an entry's revision is
//! the revision of sled's record: the committer's own writes reach the cache before its next
//! round, a re-wrap changes sled and the entry under one lock, and a fill holds what sled had
//! with no write since its look-up (a fill of an older record can only happen while a round
//! is between its sled writes and its update, which then replaces it). So a commit's
//! expectation ([`Op::Expect`](super::commit::Op)) is checked against the entry when there is
//! one, without reading sled or hashing the record.
//!
//! **Bounds.** At most `max_entries` entries and `max_bytes` bytes (an estimate of each
//! decoded object's heap size, [`approx_size`]); the oldest entries (by when they were put)
//! go first. Either bound 0 disables the cache. Key material in an entry is the object's
//! `Zeroizing` byte strings: zeroized when the entry is dropped (evicted, replaced, removed,
//! cleared, or the store closed).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use kmipd_ttlv::{Ttlv, Value};

use crate::kek::KekId;
use crate::{ManagedObject, Revision};

/// Default bound of the cache in entries.
pub const DEFAULT_OBJECT_CACHE_ENTRIES: usize = 10_000;
/// Default bound of the cache in MiB (estimated decoded size).
pub const DEFAULT_OBJECT_CACHE_MB: u64 = 32;

/// One decoded object and the revision of its record.
pub(super) struct Cached {
    pub(super) object: ManagedObject,
    pub(super) revision: Revision,
    /// The object structure's wrapped form in the record and the KEK that wrapped it, when
    /// the committer put the entry (its Put had just made it): a later Put of the same uid
    /// and the same object structure under the same KEK writes these bytes again instead of
    /// wrapping anew ([`ObjectCache::sealed_for`]). Not secret (RFC 5649 output).
    sealed: Option<(KekId, Vec<u8>)>,
    /// [`approx_size`] of the object (and the wrapped form's bytes).
    size: usize,
}

impl Cached {
    pub(super) fn new(object: ManagedObject, revision: Revision) -> Arc<Cached> {
        Cached::written(object, revision, None)
    }

    /// An entry for a Put's object, with the wrapped form its record holds.
    pub(super) fn written(
        object: ManagedObject,
        revision: Revision,
        sealed: Option<(KekId, Vec<u8>)>,
    ) -> Arc<Cached> {
        let size = approx_size(&object).saturating_add(sealed.as_ref().map_or(0, |(_, w)| w.len()));
        Arc::new(Cached {
            object,
            revision,
            sealed,
            size,
        })
    }

    /// One that is never put in the cache (it is off): its size is not estimated.
    pub(super) fn uncounted(object: ManagedObject, revision: Revision) -> Arc<Cached> {
        Arc::new(Cached {
            object,
            revision,
            sealed: None,
            size: 0,
        })
    }
}

/// What a write does to one uid's entry.
pub(super) enum Update {
    /// The uid's new record, decoded.
    Put(Arc<Cached>),
    /// Deleted, or changed in a way that has no decoded form at hand.
    Remove,
}

/// A miss: the epoch at the time of the look-up, for [`ObjectCache::fill`].
#[derive(Clone, Copy)]
pub(super) struct Miss(u64);

struct Entry {
    cached: Arc<Cached>,
    /// When it was put (matches its item in `order`).
    stamp: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Entry>,
    /// Entries by when they were put, oldest first; an item whose stamp no longer matches its
    /// entry's is stale (the entry was replaced or removed) and skipped.
    order: VecDeque<(String, u64)>,
    bytes: usize,
    /// Bumped by every write (committer round, re-wrap, clear).
    epoch: u64,
    stamp: u64,
}

/// The cache (see the module's documentation).
pub(super) struct ObjectCache {
    inner: Mutex<Inner>,
    max_entries: usize,
    max_bytes: usize,
}

/// The cache's lock held by a writer: its changes to sled and to the cache are one section.
pub(super) struct Section<'a> {
    cache: &'a ObjectCache,
    inner: MutexGuard<'a, Inner>,
}

impl Section<'_> {
    /// Removes `uid`'s entry.
    pub(super) fn remove(&mut self, uid: &str) {
        self.cache.remove_locked(&mut self.inner, uid);
    }
}

impl Drop for Section<'_> {
    fn drop(&mut self) {
        self.inner.epoch = self.inner.epoch.wrapping_add(1);
    }
}

impl ObjectCache {
    /// A cache of at most `max_entries` entries and `max_bytes` bytes (either 0: disabled).
    pub(super) fn new(max_entries: usize, max_bytes: usize) -> ObjectCache {
        ObjectCache {
            inner: Mutex::new(Inner::default()),
            max_entries,
            max_bytes,
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.max_entries > 0 && self.max_bytes > 0
    }

    fn lock(&self) -> Option<MutexGuard<'_, Inner>> {
        // A poisoned lock (a panic while holding it) leaves the cache unused: reads go to sled.
        self.inner.lock().ok()
    }

    /// The entry of `uid`, or a [`Miss`] to fill it with (`Err(None)`: disabled).
    pub(super) fn get(&self, uid: &str) -> Result<Arc<Cached>, Option<Miss>> {
        if !self.enabled() {
            return Err(None);
        }
        let inner = self.lock().ok_or(None)?;
        match inner.map.get(uid) {
            Some(e) => Ok(e.cached.clone()),
            None => Err(Some(Miss(inner.epoch))),
        }
    }

    /// The revision of `uid`'s entry, if it has one. Between the committer's rounds this is
    /// the revision of sled's record (the committer's check uses it instead of reading sled).
    pub(super) fn revision(&self, uid: &str) -> Option<Revision> {
        if !self.enabled() {
            return None;
        }
        self.lock()?.map.get(uid).map(|e| e.cached.revision)
    }

    /// The wrapped form of `object`'s object structure under the KEK `kek`, when `uid`'s
    /// entry holds one made for an equal object structure (uid, KEK and structure equal:
    /// RFC 5649 makes the same bytes), so a Put that leaves the key material as it was (a
    /// first Get's Fresh flag, an attribute edit) does not wrap it again. The structures
    /// are compared without an early exit in byte strings (key material).
    pub(super) fn sealed_for(&self, object: &ManagedObject, kek: KekId) -> Option<Vec<u8>> {
        if !self.enabled() {
            return None;
        }
        let new = object.object.as_ref()?;
        let inner = self.lock()?;
        let cached = &inner.map.get(&object.uid)?.cached;
        let (id, wrapped) = cached.sealed.as_ref()?;
        let old = cached.object.object.as_ref()?;
        (*id == kek && cached.object.uid == object.uid && same_structure(old, new))
            .then(|| wrapped.clone())
    }

    /// Fills `uid`'s entry with what a read decoded after `miss`, unless a write ran since.
    pub(super) fn fill(&self, miss: Miss, uid: &str, cached: Arc<Cached>) {
        let Some(mut inner) = self.lock() else {
            return;
        };
        if inner.epoch == miss.0 && !inner.map.contains_key(uid) {
            self.put_locked(&mut inner, uid, cached);
        }
    }

    /// The epoch now: a committer round takes it before writing sled and passes it to
    /// [`apply`](Self::apply).
    pub(super) fn epoch(&self) -> u64 {
        self.lock().map_or(0, |i| i.epoch)
    }

    /// A committer round's updates, in order, once its writes are in sled (and before any of
    /// its commits is acknowledged). If another write ran since `epoch` (a re-wrap swapped a
    /// record), every uid is removed instead of filled.
    pub(super) fn apply(&self, epoch: u64, updates: impl IntoIterator<Item = (String, Update)>) {
        let Some(inner) = self.lock() else {
            return;
        };
        let mut section = Section { cache: self, inner };
        let fill = section.inner.epoch == epoch && self.enabled();
        for (uid, update) in updates {
            match update {
                Update::Put(c) if fill => self.put_locked(&mut section.inner, &uid, c),
                Update::Put(_) | Update::Remove => section.remove(&uid),
            }
        }
    }

    /// The lock for a write outside the committer: sled's write and the cache's update (by
    /// [`Section`]) while it is held. `None` if the lock is poisoned.
    pub(super) fn section(&self) -> Option<Section<'_>> {
        Some(Section {
            cache: self,
            inner: self.lock()?,
        })
    }

    /// Drops every entry (a KEK switch, an unlock, a restore, a failed write into sled).
    pub(super) fn clear(&self) {
        if let Some(inner) = self.lock() {
            let mut section = Section { cache: self, inner };
            section.inner.map.clear();
            section.inner.order.clear();
            section.inner.bytes = 0;
        } else {
            // Poisoned: replace the contents anyway, nothing stale may stay.
            self.inner.clear_poison();
            if let Ok(mut inner) = self.inner.lock() {
                let epoch = inner.epoch.wrapping_add(1);
                *inner = Inner {
                    epoch,
                    ..Inner::default()
                };
            }
        }
    }

    fn remove_locked(&self, inner: &mut Inner, uid: &str) {
        if let Some(old) = inner.map.remove(uid) {
            inner.bytes = inner.bytes.saturating_sub(entry_bytes(uid, &old.cached));
        }
    }

    fn put_locked(&self, inner: &mut Inner, uid: &str, cached: Arc<Cached>) {
        let bytes = entry_bytes(uid, &cached);
        if bytes > self.max_bytes || self.max_entries == 0 {
            self.remove_locked(inner, uid);
            return;
        }
        inner.stamp = inner.stamp.wrapping_add(1);
        let stamp = inner.stamp;
        let old = inner.map.insert(uid.to_owned(), Entry { cached, stamp });
        if let Some(old) = old {
            inner.bytes = inner.bytes.saturating_sub(entry_bytes(uid, &old.cached));
        }
        inner.bytes = inner.bytes.saturating_add(bytes);
        inner.order.push_back((uid.to_owned(), stamp));
        while inner.map.len() > self.max_entries || inner.bytes > self.max_bytes {
            let Some((oldest, stamp)) = inner.order.pop_front() else {
                break;
            };
            if inner.map.get(&oldest).is_some_and(|e| e.stamp == stamp) {
                self.remove_locked(inner, &oldest);
            }
        }
        // Stale items (replaced or removed entries) are dropped once they are half the queue.
        if inner.order.len() > inner.map.len().saturating_mul(2).saturating_add(64) {
            let Inner { map, order, .. } = inner;
            order.retain(|(uid, stamp)| map.get(uid).is_some_and(|e| e.stamp == *stamp));
        }
    }

    /// Entries and bytes held (tests).
    #[cfg(test)]
    pub(super) fn usage(&self) -> (usize, usize) {
        self.lock().map_or((0, 0), |i| (i.map.len(), i.bytes))
    }
}

/// Whether two object structures are equal (tags, types and values), byte strings and big
/// integers compared in time that depends on their lengths only.
fn same_structure(a: &Ttlv, b: &Ttlv) -> bool {
    fn same_bytes(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
    }
    if a.tag != b.tag {
        return false;
    }
    match (&a.value, &b.value) {
        (Value::Structure(x), Value::Structure(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_structure(p, q))
        }
        (Value::ByteString(x), Value::ByteString(y)) => same_bytes(x, y),
        (Value::BigInteger(x), Value::BigInteger(y)) => same_bytes(x.as_bytes(), y.as_bytes()),
        (x, y) => x == y,
    }
}

/// The bytes an entry is counted for: its estimated size, the map's key and the queue's copy.
fn entry_bytes(uid: &str, cached: &Cached) -> usize {
    cached.size.saturating_add(uid.len().saturating_mul(2))
}

/// An estimate of the heap a decoded object takes: its structs, strings and byte strings, and
/// every TTLV item of its object structure and attributes.
pub(super) fn approx_size(o: &ManagedObject) -> usize {
    let mut n = std::mem::size_of::<ManagedObject>()
        .saturating_add(std::mem::size_of::<Cached>())
        .saturating_add(o.uid.len())
        .saturating_add(o.owner.len());
    if let Some(object) = &o.object {
        n = n.saturating_add(ttlv_size(object));
    }
    for a in o.attributes.iter() {
        n = n
            .saturating_add(std::mem::size_of_val(a))
            .saturating_add(value_size(&a.value));
        if let kmipd_proto::attributes::AttrName::Custom { vendor, name } = &a.name {
            n = n
                .saturating_add(name.len())
                .saturating_add(vendor.as_ref().map_or(0, String::len));
        }
    }
    n
}

fn ttlv_size(t: &Ttlv) -> usize {
    std::mem::size_of::<Ttlv>().saturating_add(value_size(&t.value))
}

/// The heap a value owns (its inline size is counted with its item).
fn value_size(v: &Value) -> usize {
    match v {
        Value::Structure(items) => items
            .iter()
            .fold(0usize, |n, t| n.saturating_add(ttlv_size(t))),
        Value::TextString(s) => s.len(),
        Value::ByteString(b) => b.len(),
        Value::BigInteger(b) => b.as_bytes().len(),
        Value::Integer(_)
        | Value::LongInteger(_)
        | Value::Enumeration(_)
        | Value::Boolean(_)
        | Value::DateTime(_)
        | Value::Interval(_)
        | Value::DateTimeExtended(_) => 0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kmipd_proto::attributes::Attributes;

    fn obj(uid: &str, material: usize) -> ManagedObject {
        ManagedObject {
            uid: uid.into(),
            object_type: 2,
            owner: "o".into(),
            object: Some(Ttlv::new(
                kmipd_proto::tag::KEY_MATERIAL,
                Value::ByteString(zeroize::Zeroizing::new(vec![7; material])),
            )),
            attributes: Attributes::new(),
            sequence: 1,
        }
    }

    fn rev(b: u8) -> Revision {
        Revision([b; 16])
    }

    fn hit(c: &ObjectCache, uid: &str) -> Option<Revision> {
        c.get(uid).ok().map(|e| e.revision)
    }

    fn put(c: &ObjectCache, uid: &str, r: u8) {
        let e = c.epoch();
        c.apply(
            e,
            [(
                uid.to_owned(),
                Update::Put(Cached::new(obj(uid, 16), rev(r))),
            )],
        );
    }

    #[test]
    fn bounded_by_entries_oldest_first() {
        let c = ObjectCache::new(3, 1 << 20);
        for (i, u) in ["a", "b", "c", "d"].iter().enumerate() {
            put(&c, u, u8::try_from(i).unwrap());
        }
        assert_eq!(hit(&c, "a"), None);
        assert_eq!(hit(&c, "d"), Some(rev(3)));
        assert_eq!(c.usage().0, 3);
        // Replacing "b" makes it the newest: "c" goes next.
        put(&c, "b", 9);
        put(&c, "e", 4);
        assert_eq!(hit(&c, "c"), None);
        assert_eq!(hit(&c, "b"), Some(rev(9)));
        // Many replacements of one entry do not grow the queue without bound.
        for _ in 0..1000 {
            put(&c, "b", 1);
        }
        assert!(c.inner.lock().unwrap().order.len() < 100);
    }

    #[test]
    fn bounded_by_bytes_and_disabled_by_zero() {
        let one = entry_bytes("a", &Cached::new(obj("a", 1000), rev(0)));
        let c = ObjectCache::new(100, one * 2 + one / 2);
        let e = c.epoch();
        c.apply(
            e,
            ["a", "b", "c"].map(|u| (u.to_owned(), Update::Put(Cached::new(obj(u, 1000), rev(1))))),
        );
        assert_eq!(c.usage(), (2, 2 * one));
        assert_eq!(hit(&c, "a"), None);
        // An entry larger than the bound is not kept (and drops an older one of its uid).
        let big = Cached::new(obj("b", 10_000), rev(2));
        c.apply(c.epoch(), [("b".to_owned(), Update::Put(big))]);
        assert_eq!(hit(&c, "b"), None);
        assert_eq!(c.usage(), (1, one));
        for c in [ObjectCache::new(0, 1 << 20), ObjectCache::new(10, 0)] {
            assert!(!c.enabled());
            put(&c, "a", 1);
            assert!(matches!(c.get("a"), Err(None)));
        }
    }

    #[test]
    fn a_fill_after_a_write_is_refused() {
        let c = ObjectCache::new(10, 1 << 20);
        let Err(Some(miss)) = c.get("a") else {
            panic!("a miss")
        };
        // A committer round ran between the look-up and the fill: the fill may hold an older
        // record than sled's, and is dropped.
        c.apply(c.epoch(), [("b".to_owned(), Update::Remove)]);
        c.fill(miss, "a", Cached::new(obj("a", 1), rev(1)));
        assert_eq!(hit(&c, "a"), None);
        let Err(Some(miss)) = c.get("a") else {
            panic!("a miss")
        };
        c.fill(miss, "a", Cached::new(obj("a", 1), rev(2)));
        assert_eq!(hit(&c, "a"), Some(rev(2)));
        // A fill never replaces an entry a write put.
        put(&c, "c", 5);
        let Err(Some(miss)) = c.get("d") else {
            panic!("a miss")
        };
        c.fill(miss, "c", Cached::new(obj("c", 1), rev(4)));
        assert_eq!(hit(&c, "c"), Some(rev(5)));
    }

    #[test]
    fn a_committer_round_after_another_write_removes_instead_of_filling() {
        let c = ObjectCache::new(10, 1 << 20);
        put(&c, "a", 1);
        let epoch = c.epoch();
        // A re-wrap swaps "a" in sled between the round's epoch and its update.
        c.section().unwrap().remove("a");
        c.apply(
            epoch,
            [(
                "a".to_owned(),
                Update::Put(Cached::new(obj("a", 1), rev(2))),
            )],
        );
        assert_eq!(hit(&c, "a"), None);
        put(&c, "a", 3);
        c.clear();
        assert_eq!(hit(&c, "a"), None);
        assert_eq!(c.usage(), (0, 0));
    }
}
