//! The in-memory index of a [`SledStore`](super::SledStore): creation order and the index
//! terms of every object (`query.rs`), built from the `objects` tree when the store opens
//! and kept current by the applier thread, which updates it after each sled transaction and
//! before the commit is acknowledged.
//!
//! sled holds only the records: an index kept as sled keys (about 12 per object) made every
//! write about four times the sled work and left most of sled's files and page-table memory
//! to index pages (`docs/performance.md`). A term's posting set is dropped with its last
//! object, so nothing here outlives the objects it describes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::query::Term;

/// What the index knows of one object.
struct Entry {
    sequence: u64,
    /// The prefixes of its exact-match terms (shared with the `exact` map's keys).
    exact: Box<[Arc<[u8]>]>,
    /// Its date terms: the attribute's prefix (shared with `dates`) and the date.
    dates: Box<[(Arc<[u8]>, i64)]>,
}

/// The objects with a date term under one prefix, by date.
type DatePostings = BTreeSet<(i64, Arc<str>)>;

/// Creation order and index terms of every indexed object.
#[derive(Default)]
pub(super) struct MemIndex {
    objects: HashMap<Arc<str>, Entry>,
    order: BTreeSet<(u64, Arc<str>)>,
    exact: HashMap<Arc<[u8]>, BTreeSet<Arc<str>>>,
    dates: HashMap<Arc<[u8]>, DatePostings>,
}

/// The shared copy of `key` in `map` (a new one if the map does not have it yet).
fn interned<V>(map: &HashMap<Arc<[u8]>, V>, key: Vec<u8>) -> Arc<[u8]> {
    match map.get_key_value(key.as_slice()) {
        Some((k, _)) => k.clone(),
        None => Arc::from(key),
    }
}

impl MemIndex {
    /// Indexes `uid` with these terms, replacing what was indexed for it.
    pub(super) fn put(&mut self, uid: &str, sequence: u64, terms: Vec<Term>) {
        let uid: Arc<str> = match self.objects.get_key_value(uid) {
            Some((k, _)) => k.clone(),
            None => Arc::from(uid),
        };
        self.remove(&uid);
        let mut exact = Vec::new();
        let mut dates = Vec::new();
        for (prefix, date) in terms {
            match date {
                None => {
                    let p = interned(&self.exact, prefix);
                    self.exact.entry(p.clone()).or_default().insert(uid.clone());
                    exact.push(p);
                }
                Some(d) => {
                    let p = interned(&self.dates, prefix);
                    self.dates
                        .entry(p.clone())
                        .or_default()
                        .insert((d, uid.clone()));
                    dates.push((p, d));
                }
            }
        }
        self.order.insert((sequence, uid.clone()));
        self.objects.insert(
            uid,
            Entry {
                sequence,
                exact: exact.into_boxed_slice(),
                dates: dates.into_boxed_slice(),
            },
        );
    }

    /// Forgets `uid` (nothing if it is not indexed).
    pub(super) fn remove(&mut self, uid: &str) {
        let Some((uid, entry)) = self.objects.remove_entry(uid) else {
            return;
        };
        self.order.remove(&(entry.sequence, uid.clone()));
        for p in entry.exact.iter() {
            if let Some(set) = self.exact.get_mut(p) {
                set.remove(&uid);
                if set.is_empty() {
                    self.exact.remove(p);
                }
            }
        }
        for (p, d) in entry.dates.iter() {
            if let Some(set) = self.dates.get_mut(p) {
                set.remove(&(*d, uid.clone()));
                if set.is_empty() {
                    self.dates.remove(p);
                }
            }
        }
    }

    /// Every indexed uid, in creation order.
    pub(super) fn in_order(&self) -> Vec<Arc<str>> {
        self.order.iter().map(|(_, u)| u.clone()).collect()
    }

    /// The uids with the exact-match term `prefix`.
    pub(super) fn exact(&self, prefix: &[u8]) -> BTreeSet<Arc<str>> {
        self.exact.get(prefix).cloned().unwrap_or_default()
    }

    /// The uids with a date term under `prefix` in `[from, to]`.
    pub(super) fn dates(&self, prefix: &[u8], from: i64, to: i64) -> BTreeSet<Arc<str>> {
        let mut out = BTreeSet::new();
        if from > to {
            return out;
        }
        if let Some(set) = self.dates.get(prefix) {
            let low: Arc<str> = Arc::from("");
            for (d, uid) in set.range((from, low)..) {
                if *d > to {
                    break;
                }
                out.insert(uid.clone());
            }
        }
        out
    }

    /// The highest sequence number indexed (0 when empty).
    pub(super) fn last_sequence(&self) -> u64 {
        self.order.last().map_or(0, |(s, _)| *s)
    }

    /// How many objects are indexed.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.objects.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(p: &str) -> Term {
        (p.as_bytes().to_vec(), None)
    }

    fn date(p: &str, d: i64) -> Term {
        (p.as_bytes().to_vec(), Some(d))
    }

    fn uids(set: BTreeSet<Arc<str>>) -> Vec<String> {
        set.into_iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn put_replace_remove() {
        let mut ix = MemIndex::default();
        ix.put("a", 2, vec![exact("state=1"), date("init", 10)]);
        ix.put("b", 1, vec![exact("state=1"), date("init", 20)]);
        assert_eq!(uids(ix.exact(b"state=1")), ["a", "b"]);
        assert_eq!(uids(ix.dates(b"init", 10, 19)), ["a"]);
        assert_eq!(uids(ix.dates(b"init", 10, 20)), ["a", "b"]);
        assert!(ix.dates(b"init", 21, 30).is_empty());
        assert!(ix.dates(b"init", 20, 10).is_empty());
        let order: Vec<String> = ix.in_order().iter().map(|u| u.to_string()).collect();
        assert_eq!(order, ["b", "a"]);
        assert_eq!(ix.last_sequence(), 2);

        // A replace drops the old terms.
        ix.put("a", 2, vec![exact("state=2"), date("init", 10)]);
        assert_eq!(uids(ix.exact(b"state=1")), ["b"]);
        assert_eq!(uids(ix.exact(b"state=2")), ["a"]);
        assert_eq!(ix.len(), 2);

        // The last object of a term takes the term with it.
        ix.remove("a");
        ix.remove("a");
        assert!(ix.exact(b"state=2").is_empty());
        assert!(!ix.exact.contains_key(b"state=2".as_slice()));
        ix.remove("b");
        assert!(ix.exact.is_empty() && ix.dates.is_empty() && ix.order.is_empty());
        assert_eq!((ix.len(), ix.last_sequence()), (0, 0));
    }

    #[test]
    fn terms_are_shared_between_objects() {
        let mut ix = MemIndex::default();
        ix.put("a", 1, vec![exact("owner")]);
        ix.put("b", 2, vec![exact("owner")]);
        let (ka, kb) = (&ix.objects["a"].exact[0], &ix.objects["b"].exact[0]);
        assert!(Arc::ptr_eq(ka, kb));
    }
}
