//! The in-memory index of a [`SledStore`](super::SledStore): creation order and the index
//! terms of every object (`query.rs`), built from the `objects` tree when the store opens
//! and kept current by the committer thread, which updates it after each WAL append and
//! before the commit is acknowledged.
//!
//! sled holds only the records: an index kept as sled keys (about 12 per object) made every
//! write about four times the sled work and left most of sled's files and page-table memory
//! to index pages (`docs/performance.md`).
//!
//! **Memory.** Objects are numbered (slots, reused after a removal) and term prefixes are
//! interned, so a posting is a 4-byte slot (with the date for a date term) and an object
//! lists its terms as 4-byte ids: about 400 bytes per object with a 36-character uid and
//! nine terms. A term is dropped with its last object and a slot is reused, so nothing here
//! outlives the objects it describes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::query::Term;

/// An object's number in the index.
type Slot = u32;
/// An interned term prefix's number.
type TermId = u32;

/// A number as an index into a `Vec` (`usize::MAX`, found nowhere, if it did not fit).
fn at(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// What the index knows of one object.
struct Object {
    uid: Arc<str>,
    sequence: u64,
    /// Its exact-match terms.
    exact: Box<[TermId]>,
    /// Its date terms, with the date.
    dates: Box<[(TermId, i64)]>,
}

/// Postings that can tell when they are empty.
trait Postings: Default {
    fn is_empty(&self) -> bool;
}

impl<T: Ord> Postings for BTreeSet<T> {
    fn is_empty(&self) -> bool {
        BTreeSet::is_empty(self)
    }
}

/// Interned prefixes, each with its postings.
struct Table<P> {
    ids: HashMap<Arc<[u8]>, TermId>,
    terms: Vec<Option<(Arc<[u8]>, P)>>,
    free: Vec<TermId>,
}

impl<P> Default for Table<P> {
    fn default() -> Self {
        Table {
            ids: HashMap::new(),
            terms: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<P: Postings> Table<P> {
    /// The id of `prefix`, a new one (with empty postings) if it is not interned yet.
    /// `None` only past 2^32 distinct prefixes.
    fn intern(&mut self, prefix: &[u8]) -> Option<TermId> {
        if let Some(id) = self.ids.get(prefix) {
            return Some(*id);
        }
        let prefix: Arc<[u8]> = Arc::from(prefix);
        let id = match self.free.pop() {
            Some(id) => id,
            None => TermId::try_from(self.terms.len()).ok()?,
        };
        let entry = Some((prefix.clone(), P::default()));
        match self.terms.get_mut(at(id)) {
            Some(t) => *t = entry,
            None => self.terms.push(entry),
        }
        self.ids.insert(prefix, id);
        Some(id)
    }

    /// The bytes of the interned prefix `id`.
    fn prefix(&self, id: TermId) -> Option<&[u8]> {
        self.terms.get(at(id))?.as_ref().map(|(p, _)| &**p)
    }

    fn postings(&self, prefix: &[u8]) -> Option<&P> {
        let id = self.ids.get(prefix)?;
        self.terms.get(at(*id))?.as_ref().map(|(_, p)| p)
    }

    fn postings_mut(&mut self, id: TermId) -> Option<&mut P> {
        self.terms.get_mut(at(id))?.as_mut().map(|(_, p)| p)
    }

    /// Forgets the term if no object has it any more.
    fn release_if_empty(&mut self, id: TermId) {
        let Some(slot) = self.terms.get_mut(at(id)) else {
            return;
        };
        if slot.as_ref().is_some_and(|(_, p)| p.is_empty())
            && let Some((prefix, _)) = slot.take()
        {
            self.ids.remove(&prefix);
            self.free.push(id);
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Creation order and index terms of every indexed object.
#[derive(Default)]
pub(super) struct MemIndex {
    objects: Vec<Option<Object>>,
    free: Vec<Slot>,
    by_uid: HashMap<Arc<str>, Slot>,
    order: BTreeSet<(u64, Slot)>,
    exact: Table<BTreeSet<Slot>>,
    dates: Table<BTreeSet<(i64, Slot)>>,
}

/// What a query asks of the index: a term prefix and, for a date term, the range.
pub(super) type Select = (Vec<u8>, Option<(i64, i64)>);

impl MemIndex {
    /// Indexes `uid` with these terms, replacing what was indexed for it. Returns false (and
    /// indexes nothing for it) only past 2^32 objects or distinct terms.
    ///
    /// A replace (the uid is indexed) keeps the object's slot and every term it had already
    /// (same prefix, and for a date term the same date): only the terms that changed are
    /// looked up and their postings touched, which is what most replaces need (a first Get's
    /// Fresh flag, a Destroy's state and dates).
    pub(super) fn put(&mut self, uid: &str, sequence: u64, terms: &[Term]) -> bool {
        if let Some(&slot) = self.by_uid.get(uid)
            && let Some(old) = self.objects.get_mut(at(slot)).and_then(Option::take)
        {
            return self.replace(slot, old, sequence, terms);
        }
        let uid: Arc<str> = match self.by_uid.get_key_value(uid) {
            Some((k, _)) => k.clone(),
            None => Arc::from(uid),
        };
        self.remove(&uid);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => match Slot::try_from(self.objects.len()) {
                Ok(s) => s,
                Err(_) => return false,
            },
        };
        let mut exact = Vec::new();
        let mut dates = Vec::new();
        for (prefix, date) in terms {
            match *date {
                None => {
                    if let Some(id) = self.post_exact(prefix, slot) {
                        exact.push(id);
                    }
                }
                Some(d) => {
                    if let Some(id) = self.post_date(prefix, d, slot) {
                        dates.push((id, d));
                    }
                }
            }
        }
        self.order.insert((sequence, slot));
        self.by_uid.insert(uid.clone(), slot);
        let object = Some(Object {
            uid,
            sequence,
            exact: exact.into_boxed_slice(),
            dates: dates.into_boxed_slice(),
        });
        match self.objects.get_mut(at(slot)) {
            Some(o) => *o = object,
            None => self.objects.push(object),
        }
        true
    }

    /// [`put`](Self::put) of an indexed object, `old` taken out of its `slot`: the terms it
    /// keeps are found among its own (a few, compared by their bytes), the others interned
    /// and posted, the ones it lost unposted (and released when no object has them).
    fn replace(&mut self, slot: Slot, old: Object, sequence: u64, terms: &[Term]) -> bool {
        let mut kept_exact = vec![false; old.exact.len()];
        let mut kept_dates = vec![false; old.dates.len()];
        let mut exact = Vec::with_capacity(old.exact.len());
        let mut dates = Vec::with_capacity(old.dates.len());
        for (prefix, date) in terms {
            match *date {
                None => {
                    let had = old
                        .exact
                        .iter()
                        .zip(kept_exact.iter_mut())
                        .find(|(id, kept)| {
                            !**kept && self.exact.prefix(**id) == Some(prefix.as_slice())
                        });
                    if let Some((id, kept)) = had {
                        *kept = true;
                        exact.push(*id);
                        continue;
                    }
                    if let Some(id) = self.post_exact(prefix, slot) {
                        exact.push(id);
                    }
                }
                Some(d) => {
                    let had =
                        old.dates
                            .iter()
                            .zip(kept_dates.iter_mut())
                            .find(|((id, was), kept)| {
                                !**kept
                                    && *was == d
                                    && self.dates.prefix(*id) == Some(prefix.as_slice())
                            });
                    if let Some(((id, _), kept)) = had {
                        *kept = true;
                        dates.push((*id, d));
                        continue;
                    }
                    if let Some(id) = self.post_date(prefix, d, slot) {
                        dates.push((id, d));
                    }
                }
            }
        }
        for (id, kept) in old.exact.iter().zip(&kept_exact) {
            if !kept {
                if let Some(p) = self.exact.postings_mut(*id) {
                    p.remove(&slot);
                }
                self.exact.release_if_empty(*id);
            }
        }
        for ((id, d), kept) in old.dates.iter().zip(&kept_dates) {
            if !kept {
                if let Some(p) = self.dates.postings_mut(*id) {
                    p.remove(&(*d, slot));
                }
                self.dates.release_if_empty(*id);
            }
        }
        if old.sequence != sequence {
            self.order.remove(&(old.sequence, slot));
            self.order.insert((sequence, slot));
        }
        let object = Some(Object {
            uid: old.uid,
            sequence,
            exact: exact.into_boxed_slice(),
            dates: dates.into_boxed_slice(),
        });
        match self.objects.get_mut(at(slot)) {
            Some(o) => *o = object,
            None => return false,
        }
        true
    }

    /// Interns the exact term `prefix` and posts `slot` under it; `None` past 2^32 terms.
    fn post_exact(&mut self, prefix: &[u8], slot: Slot) -> Option<TermId> {
        let id = self.exact.intern(prefix)?;
        if let Some(p) = self.exact.postings_mut(id) {
            p.insert(slot);
        }
        Some(id)
    }

    /// Interns the date term `prefix` and posts `slot` under it at `date`; `None` past 2^32
    /// terms.
    fn post_date(&mut self, prefix: &[u8], date: i64, slot: Slot) -> Option<TermId> {
        let id = self.dates.intern(prefix)?;
        if let Some(p) = self.dates.postings_mut(id) {
            p.insert((date, slot));
        }
        Some(id)
    }

    /// Forgets `uid` (nothing if it is not indexed).
    pub(super) fn remove(&mut self, uid: &str) {
        let Some(slot) = self.by_uid.remove(uid) else {
            return;
        };
        let Some(object) = self.objects.get_mut(at(slot)).and_then(Option::take) else {
            return;
        };
        self.order.remove(&(object.sequence, slot));
        for id in object.exact.iter() {
            if let Some(p) = self.exact.postings_mut(*id) {
                p.remove(&slot);
            }
            self.exact.release_if_empty(*id);
        }
        for (id, d) in object.dates.iter() {
            if let Some(p) = self.dates.postings_mut(*id) {
                p.remove(&(*d, slot));
            }
            self.dates.release_if_empty(*id);
        }
        self.free.push(slot);
    }

    fn uid(&self, slot: Slot) -> Option<Arc<str>> {
        Some(self.objects.get(at(slot))?.as_ref()?.uid.clone())
    }

    /// Every indexed uid, in creation order (by sequence, then uid).
    pub(super) fn in_order(&self) -> Vec<Arc<str>> {
        let mut out: Vec<(u64, Arc<str>)> = self
            .order
            .iter()
            .filter_map(|(seq, s)| Some((*seq, self.uid(*s)?)))
            .collect();
        // Already in sequence order (a linear pass): this only orders equal sequences.
        out.sort();
        out.into_iter().map(|(_, u)| u).collect()
    }

    /// The slots with one term.
    fn slots(&self, (prefix, range): &Select) -> BTreeSet<Slot> {
        match range {
            None => self.exact.postings(prefix).cloned().unwrap_or_default(),
            Some((from, to)) => {
                let mut out = BTreeSet::new();
                if from > to {
                    return out;
                }
                if let Some(set) = self.dates.postings(prefix) {
                    for (d, slot) in set.range((*from, 0)..) {
                        if d > to {
                            break;
                        }
                        out.insert(*slot);
                    }
                }
                out
            }
        }
    }

    /// The uids with every one of these terms (none for no terms).
    pub(super) fn select(&self, terms: &[Select]) -> Vec<Arc<str>> {
        let mut sets: Vec<BTreeSet<Slot>> = terms.iter().map(|t| self.slots(t)).collect();
        sets.sort_by_key(BTreeSet::len);
        let mut sets = sets.into_iter();
        let mut slots = sets.next().unwrap_or_default();
        for s in sets {
            slots.retain(|slot| s.contains(slot));
        }
        slots.into_iter().filter_map(|s| self.uid(s)).collect()
    }

    /// The highest sequence number indexed (0 when empty).
    pub(super) fn last_sequence(&self) -> u64 {
        self.order.last().map_or(0, |(s, _)| *s)
    }

    /// How many objects are indexed.
    pub(super) fn len(&self) -> usize {
        self.by_uid.len()
    }
}

#[cfg(test)]
#[allow(clippy::as_conversions)]
mod tests {
    use super::*;

    fn exact(p: &str) -> Term {
        (p.as_bytes().to_vec(), None)
    }

    fn date(p: &str, d: i64) -> Term {
        (p.as_bytes().to_vec(), Some(d))
    }

    fn select(ix: &MemIndex, terms: &[(&str, Option<(i64, i64)>)]) -> Vec<String> {
        let terms: Vec<Select> = terms
            .iter()
            .map(|(p, r)| (p.as_bytes().to_vec(), *r))
            .collect();
        let mut out: Vec<String> = ix.select(&terms).iter().map(|u| u.to_string()).collect();
        out.sort();
        out
    }

    #[test]
    fn put_replace_remove() {
        let mut ix = MemIndex::default();
        assert!(ix.put("a", 2, &[exact("state=1"), date("init", 10)]));
        assert!(ix.put("b", 1, &[exact("state=1"), date("init", 20)]));
        assert_eq!(select(&ix, &[("state=1", None)]), ["a", "b"]);
        assert_eq!(select(&ix, &[("init", Some((10, 19)))]), ["a"]);
        assert_eq!(select(&ix, &[("init", Some((10, 20)))]), ["a", "b"]);
        assert_eq!(
            select(&ix, &[("init", Some((15, 25))), ("state=1", None)]),
            ["b"]
        );
        assert!(select(&ix, &[("init", Some((21, 30)))]).is_empty());
        assert!(select(&ix, &[("init", Some((20, 10)))]).is_empty());
        assert!(select(&ix, &[("state=9", None)]).is_empty());
        assert!(select(&ix, &[]).is_empty());
        let order: Vec<String> = ix.in_order().iter().map(|u| u.to_string()).collect();
        assert_eq!(order, ["b", "a"]);
        assert_eq!(ix.last_sequence(), 2);

        // A replace drops the old terms.
        ix.put("a", 2, &[exact("state=2"), date("init", 10)]);
        assert_eq!(select(&ix, &[("state=1", None)]), ["b"]);
        assert_eq!(select(&ix, &[("state=2", None)]), ["a"]);
        assert_eq!(ix.len(), 2);

        // The last object of a term takes the term with it; slots and term ids are reused.
        ix.remove("a");
        ix.remove("a");
        assert!(select(&ix, &[("state=2", None)]).is_empty());
        assert!(ix.exact.postings(b"state=2").is_none());
        ix.put("c", 3, &[exact("state=3")]);
        assert_eq!(ix.objects.len(), 2);
        assert_eq!(select(&ix, &[("state=3", None)]), ["c"]);
        ix.remove("b");
        ix.remove("c");
        assert!(ix.exact.is_empty() && ix.dates.is_empty() && ix.order.is_empty());
        assert_eq!((ix.len(), ix.last_sequence()), (0, 0));
        assert_eq!(
            ix.exact.terms.len(),
            2,
            "ids were reused: {:?}",
            ix.exact.free
        );
    }

    /// The index agrees with a plain model over random puts and removes.
    #[test]
    fn agrees_with_a_model() {
        use std::collections::BTreeMap;
        let mut ix = MemIndex::default();
        let mut model: BTreeMap<String, (u64, Vec<Term>)> = BTreeMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for step in 0..4000u64 {
            let uid = format!("u{}", next(200));
            if next(4) == 0 {
                ix.remove(&uid);
                model.remove(&uid);
            } else {
                let mut terms = vec![exact(&format!("s{}", next(3))), date("d", next(50) as i64)];
                if next(2) == 0 {
                    terms.push(exact(&format!("n{}", next(1000))));
                }
                terms.sort();
                terms.dedup();
                assert!(ix.put(&uid, step, &terms));
                model.insert(uid, (step, terms));
            }
            let (s, d) = (format!("s{}", next(3)), next(50) as i64);
            let want: Vec<String> = model
                .iter()
                .filter(|(_, (_, t))| t.contains(&exact(&s)))
                .filter(|(_, (_, t))| {
                    t.iter()
                        .any(|(p, x)| p == b"d" && x.is_some_and(|x| (d..=d + 10).contains(&x)))
                })
                .map(|(u, _)| u.clone())
                .collect();
            assert_eq!(select(&ix, &[(&s, None), ("d", Some((d, d + 10)))]), want);
        }
        let mut order: Vec<(u64, String)> =
            model.iter().map(|(u, (s, _))| (*s, u.clone())).collect();
        order.sort();
        let got: Vec<String> = ix.in_order().iter().map(|u| u.to_string()).collect();
        assert_eq!(got, order.into_iter().map(|(_, u)| u).collect::<Vec<_>>());
        assert_eq!(ix.len(), model.len());
        // Every name term still interned belongs to an indexed object.
        let live = ix.exact.ids.len();
        let distinct: BTreeSet<Vec<u8>> = model
            .values()
            .flat_map(|(_, t)| {
                t.iter()
                    .filter(|(_, d)| d.is_none())
                    .map(|(p, _)| p.clone())
            })
            .collect();
        assert_eq!(live, distinct.len());
        // Every exact term's postings are exactly the objects that have it (replaces kept,
        // added and dropped terms; the sequences changed at every put).
        for p in &distinct {
            let want: Vec<String> = model
                .iter()
                .filter(|(_, (_, t))| t.iter().any(|(q, d)| q == p && d.is_none()))
                .map(|(u, _)| u.clone())
                .collect();
            assert_eq!(
                select(&ix, &[(std::str::from_utf8(p).unwrap(), None)]),
                want
            );
        }
    }

    /// A replace that keeps some terms, changes a date and drops a term leaves the postings
    /// and the term table as a remove and a fresh put would.
    #[test]
    fn a_replace_keeps_what_did_not_change() {
        let mut ix = MemIndex::default();
        assert!(ix.put(
            "a",
            1,
            &[exact("owner"), exact("state=1"), date("init", 10)]
        ));
        assert!(ix.put("b", 2, &[exact("owner"), date("init", 10)]));
        let slot = ix.by_uid["a"];
        assert!(ix.put(
            "a",
            1,
            &[exact("owner"), exact("state=2"), date("init", 11)]
        ));
        assert_eq!(ix.by_uid["a"], slot);
        assert_eq!(select(&ix, &[("owner", None)]), ["a", "b"]);
        assert_eq!(select(&ix, &[("state=2", None)]), ["a"]);
        assert!(
            ix.exact.postings(b"state=1").is_none(),
            "dropped with its last object"
        );
        assert_eq!(select(&ix, &[("init", Some((10, 10)))]), ["b"]);
        assert_eq!(select(&ix, &[("init", Some((11, 11)))]), ["a"]);
        assert!(ix.put("a", 5, &[exact("owner")]));
        let order: Vec<String> = ix.in_order().iter().map(|u| u.to_string()).collect();
        assert_eq!(order, ["b", "a"]);
        assert_eq!(select(&ix, &[("init", Some((0, 99)))]), ["b"]);
        ix.remove("a");
        ix.remove("b");
        assert!(ix.exact.is_empty() && ix.dates.is_empty() && ix.order.is_empty());
    }
}
