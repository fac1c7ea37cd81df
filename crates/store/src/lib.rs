//! Persistence of managed objects behind a storage trait.
//!
//! The engine reads objects one by one and writes all the changes of one request in one
//! [`ObjectStore::commit`], which is atomic: either every change is stored or none is (Batch
//! Error Continuation Undo and crash safety rely on it). A success answer is sent only after
//! `commit` returned, so a durable backend must have the changes on stable storage by then.
//!
//! - [`MemoryStore`] keeps everything in memory (tests, the conformance runner).
//! - [`SledStore`] is the durable embedded backend: records in a versioned format (see
//!   `docs/storage.md`), key material wrapped by a [`Kek`] (RFC 5649), indexes for
//!   [`ObjectStore::find`], a write-ahead log with group commit (a committer thread appends
//!   queued commits as one WAL frame, covers them with one shared `fdatasync`, then writes
//!   them into sled) and background checkpoints that flush and fsync sled.
//! - [`PgStore`] keeps the same records in PostgreSQL, for several kmipd nodes on one
//!   database (`postgres/mod.rs`: one commit = one transaction, advisory locks, retries).
//!
//! The trait is synchronous and transactional (one commit = one transaction), so that a
//! networked SQL backend can sit behind it later. Reads and the blocking `commit` belong on a
//! blocking thread pool; an async server commits with [`ObjectStore::commit_then`] and awaits
//! its completion (for `SledStore` it never waits for I/O). A networked store also offers
//! [`ObjectStore::async_access`]: reads fetched ahead as futures, served to the engine by a
//! [`prefetch::Overlay`], so that short requests need no blocking thread either.

pub mod deadline;
mod journal;
mod kek;
mod memory;
mod postgres;
pub mod prefetch;
mod query;
mod record;
mod sled_store;
mod wal;

#[cfg(test)]
mod conditional_tests;

pub use journal::{Journal, JournalEntry};
pub use kek::{Kek, KekId, KekRotation, MlockWarning};
pub use memory::MemoryStore;
pub use postgres::{
    CopyReport, DEFAULT_POOL_SIZE, KekSource, PgOptions, PgStats, PgStore, RotationLock,
    SCHEMA_VERSION, copy_from_sled,
};
pub use query::{Filter, Query, rotation_due_at};
pub use record::FORMAT_VERSION;
pub use sled_store::{
    BackupInfo, DEFAULT_CACHE_CAPACITY_MB, DEFAULT_OBJECT_CACHE_ENTRIES, DEFAULT_OBJECT_CACHE_MB,
    STORE_FORMAT, SledOptions, SledStore, SyncStats,
};

use kmipd_proto::attributes::Attributes;
use kmipd_ttlv::Ttlv;

/// Where provisional sequence numbers start ([`ObjectStore::creation_sequence`]); no stored
/// object has one.
pub const PROVISIONAL_SEQUENCE: u64 = 1 << 63;

/// A managed object with everything kmipd keeps about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedObject {
    /// Unique Identifier.
    pub uid: String,
    /// Object Type (enumeration value).
    pub object_type: u32,
    /// The identity that created it.
    pub owner: String,
    /// The object itself (Symmetric Key, Certificate, ... structure, in the 2.x form without
    /// attributes inside the Key Value); `None` once destroyed.
    pub object: Option<Ttlv>,
    /// Its attributes (State, dates, names, links, ...).
    pub attributes: Attributes,
    /// Creation order, for a stable Locate order.
    pub sequence: u64,
}

/// What a stored object's record was when it was read ([`ObjectStore::get_revised`]): equal
/// revisions mean the same stored record. Opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Revision(pub [u8; 16]);

/// One change of a commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Insert or replace an object.
    Put(ManagedObject),
    /// Remove an object entirely.
    Delete(String),
    /// A condition, not a write: the whole commit fails with [`StoreError::Conflict`] and
    /// stores nothing unless object `uid` is still the record read at `revision` (`None`: it
    /// must still be absent). Checked atomically with the commit's writes, against the state
    /// the commit applies to (including commits applied just before it in the same batch).
    Expect {
        /// The object.
        uid: String,
        /// Its revision when it was read (`None`: it was absent).
        revision: Option<Revision>,
    },
    /// A condition on a search, not a write: the whole commit fails with
    /// [`StoreError::Conflict`] (naming one object found) and stores nothing if an object
    /// that is not in `seen` satisfies `query` on its stored attributes. How a request that
    /// searched (2.x Name uniqueness) proves that nothing it looked for appeared since.
    /// Checked atomically with the commit's writes, against the state before them (including
    /// commits applied just before it). A stored object that satisfies the query but could
    /// not be read (a damaged record that `find` left out) also fails it.
    ExpectNoOther {
        /// What was searched.
        query: Query,
        /// The objects the search found.
        seen: Vec<String>,
    },
}

/// What can go wrong in a store. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, sled); the message is for the operator's log only.
    #[error("storage backend failure: {0}")]
    Backend(String),
    /// The store was written by a newer kmipd (a database schema or store format this build
    /// does not know): waiting or retrying cannot help; upgrade this node.
    #[error("incompatible store: {0}")]
    Incompatible(String),
    /// A stored record could not be read back (checksum, format, unwrap failure). Only this
    /// object is affected.
    #[error("stored record {uid} is unreadable: {reason}")]
    Corrupt {
        /// The object.
        uid: String,
        /// Why.
        reason: String,
    },
    /// The store was opened but no Key Encryption Key was supplied yet ([`SledStore::unlock`]).
    #[error("the store is locked: unlock it with its key encryption key first")]
    Locked,
    /// A Key Encryption Key does not fit this store (wrong key for its id, unknown id, the
    /// current KEK missing at unlock).
    #[error("key encryption key: {0}")]
    Kek(String),
    /// A [`Change::Expect`] (or [`Change::ExpectNoOther`]) did not hold: the object changed (or
    /// appeared) since it was read. Nothing of the
    /// commit was stored; the caller may read again and retry.
    #[error("object {uid} changed concurrently")]
    Conflict {
        /// The object whose expectation failed.
        uid: String,
    },
}

/// The completion of [`ObjectStore::commit_then`]: called once with the commit's outcome.
pub type CommitDone = Box<dyn FnOnce(Result<(), StoreError>) + Send + 'static>;

/// Persistence of managed objects.
pub trait ObjectStore: Send + Sync {
    /// The object with this identifier.
    fn get(&self, uid: &str) -> Result<Option<ManagedObject>, StoreError>;
    /// The object with this identifier and its current revision, read together.
    fn get_revised(&self, uid: &str) -> Result<Option<(ManagedObject, Revision)>, StoreError>;
    /// Every object, in creation order (sequence, then identifier).
    fn all(&self) -> Result<Vec<ManagedObject>, StoreError>;
    /// The objects that satisfy every filter of `query`, in creation order. A backend with
    /// indexes narrows by its indexed filters first; the answer is exactly
    /// `all()` filtered by [`Query::matches`].
    fn find(&self, query: &Query) -> Result<Vec<ManagedObject>, StoreError> {
        Ok(self
            .all()?
            .into_iter()
            .filter(|o| query.matches(o))
            .collect())
    }
    /// Applies every change atomically; on success the changes are durable. Blocking.
    /// Fails with [`StoreError::Conflict`], storing nothing, if a [`Change::Expect`] or
    /// [`Change::ExpectNoOther`] of the commit does not hold.
    fn commit(&self, changes: Vec<Change>) -> Result<(), StoreError>;
    /// [`commit`](Self::commit) without waiting: the changes are applied atomically, and
    /// `done` is called exactly once with the outcome when they are durable (or have failed),
    /// possibly on another thread, possibly before this returns. Never waits for I/O, so an
    /// async server may call it on its event-loop threads and await `done`. `done` may run on
    /// a thread of the store: it must be quick and must not call back into the store (send
    /// on a channel, wake a task).
    fn commit_then(&self, changes: Vec<Change>, done: CommitDone);
    /// [`commit_then`](Self::commit_then) with one opaque record for the store's attached
    /// [`Journal`], made durable with the commit (the same WAL frame, the same `fdatasync`)
    /// when the commit succeeds, and dropped unrendered when it does not. Only a store that
    /// [`journals`](Self::journals) takes the entry: the default (PostgreSQL, memory) ignores
    /// it and just commits, so a caller gives one only when `journals()` said true. With no
    /// changes and an entry, a journalling store makes just the entry durable.
    fn commit_journaled(
        &self,
        changes: Vec<Change>,
        entry: Option<JournalEntry>,
        done: CommitDone,
    ) {
        drop(entry);
        self.commit_then(changes, done);
    }
    /// Whether a [`Journal`] is attached, so that [`commit_journaled`](Self::commit_journaled)
    /// makes its entries durable with the commits. `false` by default (PostgreSQL, memory).
    fn journals(&self) -> bool {
        false
    }
    /// A fresh sequence number (monotonic, never reused by a stored object).
    fn next_sequence(&self) -> Result<u64, StoreError>;
    /// The sequence number of an object about to be created: [`next_sequence`] (the default),
    /// or a provisional number, [`PROVISIONAL_SEQUENCE`] or above, which the commit that first
    /// stores the object replaces with a fresh sequence number (the provisional numbers of one
    /// commit keep their order). A store whose `next_sequence` costs a round trip to a database
    /// takes the numbers inside the commit instead (PostgreSQL). Until then the object sorts
    /// after every stored one, as the newest.
    ///
    /// [`next_sequence`]: Self::next_sequence
    fn creation_sequence(&self) -> Result<u64, StoreError> {
        self.next_sequence()
    }
    /// Whether reads and [`next_sequence`](Self::next_sequence) wait on nothing but this
    /// process's memory and local disk (an in-process store), so that a server may run short
    /// requests on its async threads. `false` (the default, and PostgreSQL's answer: its reads
    /// wait on the network) means every call may block for long: a server must call the
    /// store only from threads that may block.
    fn reads_are_local(&self) -> bool {
        false
    }
    /// Asynchronous reads and commits that run on the caller's runtime ([`prefetch`]), for a
    /// store whose reads wait on the network (PostgreSQL), so that a server can prepare short
    /// requests on its async threads against what it fetched ahead ([`prefetch::Overlay`]).
    /// `None` (the default): none.
    fn async_access(&self) -> Option<std::sync::Arc<dyn prefetch::AsyncAccess>> {
        None
    }
    /// A server-wide setting kept with the objects (`name` to its bytes; Set Constraints keeps
    /// the server's constraints so), `None` when never set or removed. Beside the backend's
    /// own metadata under the key `setting/NAME`: sled's `meta` tree (in its backups),
    /// PostgreSQL's `kmipd_meta` (shared by every node), or memory.
    fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores (`Some`) or removes (`None`) a setting, durable on return. Not part of a
    /// [`commit`](Self::commit): the last call wins. Blocking.
    fn set_setting(&self, name: &str, value: Option<&[u8]>) -> Result<(), StoreError>;
}

/// The metadata key of setting `name` ([`ObjectStore::setting`]), the same in every backend.
pub(crate) fn setting_key(name: &str) -> String {
    format!("setting/{name}")
}
