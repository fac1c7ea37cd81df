//! Persistence of managed objects behind a storage trait.
//!
//! The engine reads objects one by one and writes all the changes of one request in one
//! [`ObjectStore::commit`], which is atomic: either every change is stored or none is (Batch
//! Error Continuation Undo and crash safety rely on it). A success answer is sent only after
//! `commit` returned, so a durable backend must have the changes on stable storage by then.
//!
//! [`MemoryStore`] keeps everything in memory (tests, the conformance runner).

mod memory;

pub use memory::MemoryStore;

use kmipd_proto::attributes::Attributes;
use kmipd_ttlv::Ttlv;

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

/// One change of a commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Insert or replace an object.
    Put(ManagedObject),
    /// Remove an object entirely.
    Delete(String),
}

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, corruption); the message is for the operator's log only.
    #[error("storage backend failure: {0}")]
    Backend(String),
    /// A stored record could not be read back.
    #[error("stored record {uid} is unreadable: {reason}")]
    Corrupt {
        /// The object.
        uid: String,
        /// Why.
        reason: String,
    },
}

/// Persistence of managed objects.
pub trait ObjectStore: Send + Sync {
    /// The object with this identifier.
    fn get(&self, uid: &str) -> Result<Option<ManagedObject>, StoreError>;
    /// Every object, in creation order (Locate filters them; an indexed backend narrows first).
    fn all(&self) -> Result<Vec<ManagedObject>, StoreError>;
    /// Applies every change atomically.
    fn commit(&self, changes: Vec<Change>) -> Result<(), StoreError>;
    /// A fresh sequence number (monotonic, never reused).
    fn next_sequence(&self) -> Result<u64, StoreError>;
}
