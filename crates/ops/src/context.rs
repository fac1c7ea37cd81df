//! What an operation handler sees: the request's context ([`Ctx`]) and the batch's pending
//! changes ([`Tx`]), which reach the store in one atomic commit once the batch is done.

use std::cell::RefCell;
use std::collections::BTreeMap;

use kmipd_proto::message::ProtocolVersion;
use kmipd_proto::spec::Version;
use kmipd_store::{Change, ManagedObject, ObjectStore, Query, Revision};

use crate::Principal;
use crate::engine::EngineConfig;
use crate::error::{Error, Result};

/// The changes of one batch over the store: reads see earlier writes of the same batch.
pub(crate) struct Tx<'a> {
    store: &'a dyn ObjectStore,
    /// The batch's time: objects are read with their time-driven state changes applied
    /// (an Activation or Deactivation Date that has passed changes the State on read).
    now: i64,
    changes: BTreeMap<String, Option<ManagedObject>>,
    /// The revision of each object when this batch first read it from the store (`None`: it
    /// was absent). The commit expects every object it writes to be still at that revision
    /// ([`Change::Expect`]), so a concurrent request's acknowledged change is never
    /// overwritten with a record computed from an older one; the engine runs the request
    /// again instead. Objects seen only through [`Tx::find`] (Locate) carry no revision.
    read: RefCell<BTreeMap<String, Option<Revision>>>,
    /// The searches made through [`Tx::find_guarded`] (uniqueness checks) with the objects
    /// the store answered: the commit expects that nothing else matches them now
    /// ([`Change::ExpectNoOther`]), so two concurrent requests cannot both take a Name.
    searched: RefCell<Vec<(Query, Vec<String>)>>,
}

/// A point to roll back to (one batch item's start).
pub(crate) struct Savepoint(BTreeMap<String, Option<ManagedObject>>);

impl<'a> Tx<'a> {
    pub(crate) fn new(store: &'a dyn ObjectStore, now: i64) -> Self {
        Tx {
            store,
            now,
            changes: BTreeMap::new(),
            read: RefCell::new(BTreeMap::new()),
            searched: RefCell::new(Vec::new()),
        }
    }

    /// The object, as this batch sees it.
    pub(crate) fn get(&self, uid: &str) -> Result<Option<ManagedObject>> {
        let mut object = match self.changes.get(uid) {
            Some(change) => change.clone(),
            None => {
                let (object, revision) = match self.store.get_revised(uid)? {
                    Some((o, r)) => (Some(o), Some(r)),
                    None => (None, None),
                };
                self.read
                    .borrow_mut()
                    .entry(uid.to_owned())
                    .or_insert(revision);
                object
            }
        };
        if let Some(o) = object.as_mut() {
            crate::object::apply_dates(o, self.now);
        }
        Ok(object)
    }

    /// The objects satisfying `query` (on their stored attributes), as this batch sees them,
    /// in creation order (the store narrows by its indexes; this batch's own changes are
    /// checked directly). The query must not filter on what `apply_dates` changes (State).
    pub(crate) fn find(&self, query: &Query) -> Result<Vec<ManagedObject>> {
        Ok(self.merged(query, self.store.find(query)?))
    }

    /// The store's answer to `query` with this batch's changes in place of what they change.
    fn merged(&self, query: &Query, stored: Vec<ManagedObject>) -> Vec<ManagedObject> {
        let mut objects: Vec<ManagedObject> = stored
            .into_iter()
            .filter(|o| !self.changes.contains_key(&o.uid))
            .collect();
        objects.extend(
            self.changes
                .values()
                .flatten()
                .filter(|o| query.matches(o))
                .cloned(),
        );
        objects.sort_by_key(|o| o.sequence);
        for o in &mut objects {
            crate::object::apply_dates(o, self.now);
        }
        objects
    }

    /// [`find`](Self::find) for a check whose answer must still hold at commit (a Name that
    /// must be free): if this batch writes anything, its commit fails with a conflict (and
    /// the engine runs the request again) when another object matching `query` was stored
    /// meanwhile.
    pub(crate) fn find_guarded(&self, query: &Query) -> Result<Vec<ManagedObject>> {
        let stored = self.store.find(query)?;
        self.searched.borrow_mut().push((
            query.clone(),
            stored.iter().map(|o| o.uid.clone()).collect(),
        ));
        Ok(self.merged(query, stored))
    }

    /// Inserts or replaces an object.
    pub(crate) fn put(&mut self, object: ManagedObject) {
        self.changes.insert(object.uid.clone(), Some(object));
    }

    /// Removes an object entirely.
    pub(crate) fn delete(&mut self, uid: &str) {
        self.changes.insert(uid.to_owned(), None);
    }

    /// A server setting (`ObjectStore::setting`), read from the store.
    pub(crate) fn setting(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.store.setting(name)?)
    }

    /// Stores (or removes) a server setting at once, outside the batch's commit.
    pub(crate) fn set_setting(&self, name: &str, value: Option<&[u8]>) -> Result<()> {
        Ok(self.store.set_setting(name, value)?)
    }

    /// The sequence number of a new object (possibly provisional, numbered at commit:
    /// `ObjectStore::creation_sequence`).
    pub(crate) fn next_sequence(&self) -> Result<u64> {
        Ok(self.store.creation_sequence()?)
    }

    /// The objects this batch writes, with what it writes (`None`: deleted).
    pub(crate) fn written(&self) -> impl Iterator<Item = (&String, &Option<ManagedObject>)> {
        self.changes.iter()
    }

    pub(crate) fn savepoint(&self) -> Savepoint {
        Savepoint(self.changes.clone())
    }

    pub(crate) fn rollback_to(&mut self, sp: Savepoint) {
        self.changes = sp.0;
    }

    pub(crate) fn rollback_all(&mut self) {
        self.changes.clear();
    }

    /// The changes, for the store's atomic commit: each write, preceded by the expectation
    /// that its object is still as this batch read it (when it read it from the store).
    pub(crate) fn into_changes(self) -> Vec<Change> {
        let read = self.read.into_inner();
        let mut out = Vec::with_capacity(self.changes.len().saturating_mul(2));
        if !self.changes.is_empty() {
            for (query, seen) in self.searched.into_inner() {
                out.push(Change::ExpectNoOther { query, seen });
            }
        }
        for (uid, o) in self.changes {
            if let Some(revision) = read.get(&uid) {
                out.push(Change::Expect {
                    uid: uid.clone(),
                    revision: *revision,
                });
            }
            out.push(match o {
                Some(o) => Change::Put(o),
                None => Change::Delete(uid),
            });
        }
        out
    }
}

/// Everything an operation handler may use.
pub(crate) struct Ctx<'a> {
    /// Who is asking (from the verified client certificate).
    pub(crate) principal: &'a Principal,
    /// The protocol version of the request, which the response uses.
    pub(crate) version: ProtocolVersion,
    /// The tables' version for `version`.
    pub(crate) spec: Version,
    /// The time of the request (seconds since the epoch), one value for the whole batch.
    pub(crate) now: i64,
    /// The batch's changes.
    pub(crate) tx: Tx<'a>,
    /// The ID Placeholder: the Unique Identifier of the last object an item of this batch
    /// created or named (KMIP 1.4 §6.1.x / 2.1 §6.1.x). `None` before any item set it;
    /// `Some("")` once an item *emptied* it ([`Ctx::empty_placeholder`]).
    pub(crate) id_placeholder: Option<String>,
    /// 2.x: the Unique Identifiers returned by earlier items of this batch, for the Integer
    /// and Enumeration forms of Unique Identifier.
    pub(crate) batch_uids: Vec<String>,
    /// 2.x: (Unique Identifier enumeration, identifier) of the objects earlier items of this
    /// batch produced, e.g. (Create, uid) or (Create Key Pair Private Key, uid).
    pub(crate) uid_by_kind: Vec<(u32, String)>,
    /// The engine's configuration.
    pub(crate) config: &'a EngineConfig,
    /// The server policy for this request (`policy.rs`).
    pub(crate) policy: &'a crate::policy::Policy,
    /// The Operation of the batch item being run (what a grantee must have been granted).
    pub(crate) operation: u32,
    /// Objects a refused item still changes (a dual control request or approval, `dual.rs`):
    /// the engine stores them through the item's rollback.
    pub(crate) kept: Vec<ManagedObject>,
    /// The open streams of streamed cryptography (`streams.rs`); `None` where no stream may
    /// run (internal contexts).
    pub(crate) streams: Option<&'a crate::streams::Streams>,
    /// What this request's steps do to the streams, applied once it has completed.
    pub(crate) stream_changes: Vec<crate::streams::Change>,
    /// The engine's Login tickets (`tickets.rs`).
    pub(crate) tickets: &'a crate::tickets::Tickets,
    /// The engine's PKCS#11 contexts (`operations/pkcs11.rs`).
    pub(crate) pkcs11: &'a crate::operations::pkcs11::Contexts,
}

impl Ctx<'_> {
    /// True when the request is KMIP 2.x.
    pub(crate) fn v2(&self) -> bool {
        self.version.is_v2()
    }

    /// The object with this identifier, if the caller may perform the current operation on it
    /// (`access::may_access`); otherwise [`Error::NotFound`] (an invisible object looks exactly
    /// like a missing one), or Permission Denied when the caller's role lets it see the object
    /// (`access::refusal`).
    pub(crate) fn load(&self, uid: &str) -> Result<ManagedObject> {
        match self.tx.get(uid)? {
            Some(o) if self.may(&o) => Ok(o),
            Some(o) => Err(crate::access::refusal(self.principal, &o, self.operation)),
            None => Err(Error::NotFound),
        }
    }

    /// True when the caller may perform the current operation on the object.
    pub(crate) fn may(&self, object: &ManagedObject) -> bool {
        self.principal.may(object, self.operation)
    }

    /// Keeps `object` (as changed by a refusal) through the current item's rollback.
    pub(crate) fn keep(&mut self, object: ManagedObject) {
        self.kept.push(object);
    }

    /// Records `uid` as the ID Placeholder and as this batch's latest identifier.
    pub(crate) fn set_placeholder(&mut self, uid: &str) {
        self.id_placeholder = Some(uid.to_owned());
        self.batch_uids.push(uid.to_owned());
    }

    /// Empties the ID Placeholder (a Locate that did not find exactly one object, a Check that
    /// refused, KMIP 1.4 §4.9 and §4.10): the later items that rely on it must fail, and they
    /// do with Item Not Found, since the empty identifier names no object (the KMIP 1.1 and
    /// 1.2 Test Cases, TC-152: a Get batched after a Locate that found nothing).
    pub(crate) fn empty_placeholder(&mut self) {
        self.id_placeholder = Some(String::new());
    }

    /// Records `uid` as what an item of this batch produced, for the 2.x Unique Identifier
    /// enumeration (`kind` is a Unique Identifier enumeration value such as Create).
    pub(crate) fn produced(&mut self, kind: u32, uid: &str) {
        self.uid_by_kind.push((kind, uid.to_owned()));
    }
}
