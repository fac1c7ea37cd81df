//! Reads fetched ahead, so that a request over a networked store (PostgreSQL) can be prepared
//! on an async thread without blocking it.
//!
//! A store whose reads wait on the network offers [`AsyncAccess`]
//! ([`ObjectStore::async_access`]): the objects, settings and searches a request names
//! ([`Want`]) read in one go, and a commit, both as futures that run on the caller's runtime.
//! The server fetches what a request will read, prepares the request against an [`Overlay`]
//! that serves exactly what was fetched, and when the preparation read something else the
//! overlay records it ([`Overlay::take_missed`]) and fails that read: the server discards
//! that preparation, fetches the missing items and prepares again. A preparation that read
//! nothing it lacked is the one completed; its commit is handed back
//! ([`Overlay::take_commit`]) for the server to await on its own task.
//!
//! Nothing is kept across requests but one thing: every overlay is filled for one request and
//! dropped with it, so what it serves is as fresh as a synchronous read at the same moment
//! (and every commit carries [`Change::Expect`] with the revisions read, as always). The one
//! thing is settings: a store may serve a setting from its memory of the last value it read
//! ([`Fetched::hinted`]; settings change seldom and every create reads the constraints),
//! and then what was served is checked against the database before the answer stands: inside
//! the commit's transaction ([`AsyncAccess::commit`]'s `checked`, a difference failing the
//! commit as a [`StoreError::Conflict`], so the request is prepared again from fresh reads),
//! or, for a request that commits nothing, by reading them again
//! ([`AsyncAccess::check_settings`]). So a setting changed through another node holds here
//! from the next request on, as before.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::{Change, CommitDone, ManagedObject, ObjectStore, Query, Revision, StoreError};

/// A store operation as a future that runs on the caller's runtime.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'static>>;

/// What a request reads from the store: objects by identifier, settings by name, searches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Want {
    /// Object identifiers ([`ObjectStore::get_revised`]).
    pub uids: Vec<String>,
    /// Setting names ([`ObjectStore::setting`]).
    pub settings: Vec<String>,
    /// Searches ([`ObjectStore::find`]).
    pub queries: Vec<Query>,
}

impl Want {
    /// Nothing wanted.
    pub fn is_empty(&self) -> bool {
        self.uids.is_empty() && self.settings.is_empty() && self.queries.is_empty()
    }

    /// Adds an object identifier (once).
    pub fn uid(&mut self, uid: &str) {
        if !self.uids.iter().any(|u| u == uid) {
            self.uids.push(uid.to_owned());
        }
    }

    /// Adds a setting name (once).
    pub fn setting(&mut self, name: &str) {
        if !self.settings.iter().any(|s| s == name) {
            self.settings.push(name.to_owned());
        }
    }

    /// Adds a search (once).
    pub fn query(&mut self, query: &Query) {
        if !self.queries.contains(query) {
            self.queries.push(query.clone());
        }
    }
}

/// One object as [`ObjectStore::get_revised`] reads it.
pub type ObjectRead = Result<Option<(ManagedObject, Revision)>, StoreError>;

/// What [`AsyncAccess::fetch`] read for a [`Want`]: one entry for each thing wanted. An object
/// that could not be read carries the error [`ObjectStore::get_revised`] would have returned.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Each wanted object (`None`: absent) with its revision.
    pub objects: Vec<(String, ObjectRead)>,
    /// Each wanted setting (`None`: never set).
    pub settings: Vec<(String, Option<Vec<u8>>)>,
    /// Each wanted search with the objects that satisfy it, in creation order.
    pub found: Vec<(Query, Vec<ManagedObject>)>,
    /// The names of the settings above served from the store's memory of its last read
    /// rather than read now: to be checked ([module docs](self)).
    pub hinted: Vec<String>,
}

/// Settings with the values a preparation was served.
pub type SettingValues = Vec<(String, Option<Vec<u8>>)>;

/// Asynchronous reads and commits of a networked store, run on the caller's runtime.
pub trait AsyncAccess: Send + Sync {
    /// Reads everything `want` names, in as few round trips as the store can. Bounded by
    /// `until` (the request's deadline) and the store's own deadline, whichever ends first.
    fn fetch(&self, want: Want, until: Instant) -> StoreFuture<Fetched>;
    /// [`ObjectStore::commit`] as a future, bounded as `fetch`; it fails with
    /// [`StoreError::Conflict`] (nothing written) when a setting in `checked` no longer has
    /// the value given, read in the commit's own transaction.
    fn commit(
        &self,
        changes: Vec<Change>,
        checked: SettingValues,
        until: Instant,
    ) -> StoreFuture<()>;
    /// Reads the settings in `checked` now: true when each still has the value given.
    fn check_settings(&self, checked: SettingValues, until: Instant) -> StoreFuture<bool>;
}

/// A store that serves what was fetched for one request ([module docs](self)). Reads of
/// anything else fail and are recorded; writes other than a commit, and [`ObjectStore::all`]
/// and [`ObjectStore::next_sequence`], are not served at all ([`Overlay::unsupported`]: run
/// the request the blocking way). A commit is not run: it is kept for
/// [`Overlay::take_commit`].
pub struct Overlay {
    base: Arc<dyn ObjectStore>,
    objects: HashMap<String, ObjectRead>,
    settings: HashMap<String, Result<Option<Vec<u8>>, StoreError>>,
    /// The settings served from the store's memory rather than read ([`Fetched::hinted`]).
    hinted: Vec<String>,
    found: Vec<(Query, Result<Vec<ManagedObject>, StoreError>)>,
    missed: Mutex<Want>,
    unsupported: AtomicBool,
    commit: Mutex<Option<(Vec<Change>, CommitDone)>>,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("objects", &self.objects.len())
            .field("settings", &self.settings.len())
            .field("found", &self.found.len())
            .finish_non_exhaustive()
    }
}

/// The error a read of something not fetched fails with (the answer it leads to is
/// discarded).
fn not_fetched() -> StoreError {
    StoreError::Backend("read not fetched ahead (the request is prepared again)".into())
}

/// A copy of a store error (errors are kept per item and may be read more than once).
fn duplicate(e: &StoreError) -> StoreError {
    match e {
        StoreError::Backend(m) => StoreError::Backend(m.clone()),
        StoreError::Incompatible(m) => StoreError::Incompatible(m.clone()),
        StoreError::Corrupt { uid, reason } => StoreError::Corrupt {
            uid: uid.clone(),
            reason: reason.clone(),
        },
        StoreError::Locked => StoreError::Locked,
        StoreError::Kek(m) => StoreError::Kek(m.clone()),
        StoreError::Conflict { uid } => StoreError::Conflict { uid: uid.clone() },
    }
}

impl Overlay {
    /// An empty overlay over `base` (which only hands out creation sequence numbers).
    pub fn new(base: Arc<dyn ObjectStore>) -> Overlay {
        Overlay {
            base,
            objects: HashMap::new(),
            settings: HashMap::new(),
            hinted: Vec::new(),
            found: Vec::new(),
            missed: Mutex::new(Want::default()),
            unsupported: AtomicBool::new(false),
            commit: Mutex::new(None),
        }
    }

    /// Serves `fetched` from now on (in addition to what it served before).
    pub fn add(&mut self, fetched: Fetched) {
        for (uid, o) in fetched.objects {
            self.objects.insert(uid, o);
        }
        for (name, v) in fetched.settings {
            let hinted = fetched.hinted.contains(&name);
            self.hinted.retain(|h| *h != name);
            if hinted {
                self.hinted.push(name.clone());
            }
            self.settings.insert(name, Ok(v));
        }
        for (q, objects) in fetched.found {
            self.found.retain(|(seen, _)| *seen != q);
            self.found.push((q, Ok(objects)));
        }
    }

    /// Serves `error` for everything `want` names: what a synchronous read of each would have
    /// met (the database is unreachable, the deadline passed).
    pub fn fail(&mut self, want: &Want, error: &StoreError) {
        for uid in &want.uids {
            self.objects.insert(uid.clone(), Err(duplicate(error)));
        }
        for name in &want.settings {
            self.hinted.retain(|h| h != name);
            self.settings.insert(name.clone(), Err(duplicate(error)));
        }
        for q in &want.queries {
            self.found.retain(|(seen, _)| seen != q);
            self.found.push((q.clone(), Err(duplicate(error))));
        }
    }

    /// The settings served from the store's memory, with the values served: what must be
    /// checked before the answer stands ([module docs](self)).
    pub fn hinted(&self) -> SettingValues {
        self.hinted
            .iter()
            .filter_map(|name| match self.settings.get(name) {
                Some(Ok(v)) => Some((name.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    /// Everything served so far (to fetch again after a conflict).
    pub fn served(&self) -> Want {
        Want {
            uids: self.objects.keys().cloned().collect(),
            settings: self.settings.keys().cloned().collect(),
            queries: self.found.iter().map(|(q, _)| q.clone()).collect(),
        }
    }

    /// What was read and not served since the last call (the preparation that read it must
    /// be discarded).
    pub fn take_missed(&self) -> Want {
        std::mem::take(&mut *self.missed.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// True once something was asked that an overlay does not serve (a setting written, a
    /// blocking commit, every object, a sequence number from the store): the request must run
    /// the blocking way.
    pub fn unsupported(&self) -> bool {
        self.unsupported.load(Ordering::Relaxed)
    }

    /// The commit handed to [`ObjectStore::commit_then`], to run and then call back.
    pub fn take_commit(&self) -> Option<(Vec<Change>, CommitDone)> {
        self.commit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn miss(&self, f: impl FnOnce(&mut Want)) -> StoreError {
        f(&mut self.missed.lock().unwrap_or_else(PoisonError::into_inner));
        not_fetched()
    }

    fn refuse(&self, what: &str) -> StoreError {
        self.unsupported.store(true, Ordering::Relaxed);
        StoreError::Backend(format!("{what} is not served ahead"))
    }
}

impl ObjectStore for Overlay {
    fn get(&self, uid: &str) -> Result<Option<ManagedObject>, StoreError> {
        Ok(self.get_revised(uid)?.map(|(o, _)| o))
    }

    fn get_revised(&self, uid: &str) -> Result<Option<(ManagedObject, Revision)>, StoreError> {
        match self.objects.get(uid) {
            Some(Ok(o)) => Ok(o.clone()),
            Some(Err(e)) => Err(duplicate(e)),
            None => Err(self.miss(|w| w.uid(uid))),
        }
    }

    fn all(&self) -> Result<Vec<ManagedObject>, StoreError> {
        Err(self.refuse("every object"))
    }

    fn find(&self, query: &Query) -> Result<Vec<ManagedObject>, StoreError> {
        match self.found.iter().find(|(q, _)| q == query) {
            Some((_, Ok(found))) => Ok(found.clone()),
            Some((_, Err(e))) => Err(duplicate(e)),
            None => Err(self.miss(|w| w.query(query))),
        }
    }

    fn commit(&self, _changes: Vec<Change>) -> Result<(), StoreError> {
        Err(self.refuse("a blocking commit"))
    }

    fn commit_then(&self, changes: Vec<Change>, done: CommitDone) {
        let mut slot = self.commit.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_some() {
            drop(slot);
            return done(Err(self.refuse("a second commit")));
        }
        *slot = Some((changes, done));
    }

    fn next_sequence(&self) -> Result<u64, StoreError> {
        Err(self.refuse("a sequence number"))
    }

    fn creation_sequence(&self) -> Result<u64, StoreError> {
        // Provisional numbers are made in memory by a networked store (no round trip).
        if self.base.reads_are_local() {
            return self.base.creation_sequence();
        }
        match self.base.async_access() {
            Some(_) => self.base.creation_sequence(),
            None => Err(self.refuse("a sequence number")),
        }
    }

    fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.settings.get(name) {
            Some(Ok(v)) => Ok(v.clone()),
            Some(Err(e)) => Err(duplicate(e)),
            None => Err(self.miss(|w| w.setting(name))),
        }
    }

    fn set_setting(&self, _name: &str, _value: Option<&[u8]>) -> Result<(), StoreError> {
        Err(self.refuse("writing a setting"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn object(uid: &str) -> ManagedObject {
        ManagedObject {
            uid: uid.into(),
            object_type: 2,
            owner: "alice".into(),
            object: None,
            attributes: Default::default(),
            sequence: 1,
        }
    }

    #[test]
    fn serves_what_was_fetched_and_records_the_rest() {
        let mut overlay = Overlay::new(Arc::new(MemoryStore::new()));
        let rev = Revision([7; 16]);
        overlay.add(Fetched {
            objects: vec![
                ("a".into(), Ok(Some((object("a"), rev)))),
                ("gone".into(), Ok(None)),
            ],
            settings: vec![("constraints".into(), None)],
            found: vec![(Query::default(), vec![object("a")])],
            hinted: Vec::new(),
        });
        assert_eq!(overlay.get_revised("a").unwrap(), Some((object("a"), rev)));
        assert_eq!(overlay.get("gone").unwrap(), None);
        assert_eq!(overlay.setting("constraints").unwrap(), None);
        assert_eq!(overlay.find(&Query::default()).unwrap(), vec![object("a")]);
        assert!(overlay.take_missed().is_empty());
        assert!(overlay.get("b").is_err());
        assert!(overlay.setting("other").is_err());
        let missed = overlay.take_missed();
        assert_eq!(missed.uids, vec!["b".to_owned()]);
        assert_eq!(missed.settings, vec!["other".to_owned()]);
        assert!(overlay.take_missed().is_empty(), "taken once");
        assert!(!overlay.unsupported());
    }

    #[test]
    fn failures_are_served_as_the_store_error_and_writes_are_refused() {
        let mut overlay = Overlay::new(Arc::new(MemoryStore::new()));
        let want = Want {
            uids: vec!["a".into()],
            settings: vec!["s".into()],
            queries: vec![Query::default()],
        };
        overlay.fail(&want, &StoreError::Backend("down".into()));
        assert!(matches!(overlay.get("a"), Err(StoreError::Backend(m)) if m == "down"));
        assert!(matches!(overlay.setting("s"), Err(StoreError::Backend(m)) if m == "down"));
        assert!(overlay.find(&Query::default()).is_err());
        assert!(overlay.take_missed().is_empty(), "a failure is not a miss");
        assert_eq!(overlay.served().uids, vec!["a".to_owned()]);
        assert!(overlay.set_setting("s", None).is_err());
        assert!(overlay.unsupported());
    }

    #[test]
    fn a_commit_is_kept_for_the_caller() {
        let overlay = Overlay::new(Arc::new(MemoryStore::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        overlay.commit_then(
            vec![Change::Delete("a".into())],
            Box::new(move |r| {
                let _ = tx.send(r.is_ok());
            }),
        );
        assert!(rx.try_recv().is_err(), "not run by the overlay");
        let (changes, done) = overlay.take_commit().unwrap();
        assert_eq!(changes, vec![Change::Delete("a".into())]);
        done(Ok(()));
        assert!(rx.recv().unwrap());
        assert!(overlay.take_commit().is_none());
    }

    #[test]
    fn settings_served_from_memory_are_listed_for_checking_until_read_again() {
        let mut overlay = Overlay::new(Arc::new(MemoryStore::new()));
        overlay.add(Fetched {
            settings: vec![("c".into(), Some(b"v1".to_vec())), ("d".into(), None)],
            hinted: vec!["c".into()],
            ..Fetched::default()
        });
        assert_eq!(overlay.setting("c").unwrap(), Some(b"v1".to_vec()));
        assert_eq!(
            overlay.hinted(),
            vec![("c".to_owned(), Some(b"v1".to_vec()))]
        );
        // Read again from the database: nothing left to check.
        overlay.add(Fetched {
            settings: vec![("c".into(), Some(b"v2".to_vec()))],
            ..Fetched::default()
        });
        assert_eq!(overlay.setting("c").unwrap(), Some(b"v2".to_vec()));
        assert_eq!(overlay.hinted(), vec![]);
        // A failed read is not checked either (the preparation saw the error).
        overlay.add(Fetched {
            settings: vec![("d".into(), None)],
            hinted: vec!["d".into()],
            ..Fetched::default()
        });
        assert_eq!(overlay.hinted(), vec![("d".to_owned(), None)]);
        overlay.fail(
            &Want {
                settings: vec!["d".into()],
                ..Want::default()
            },
            &StoreError::Backend("down".into()),
        );
        assert_eq!(overlay.hinted(), vec![]);
    }
}
