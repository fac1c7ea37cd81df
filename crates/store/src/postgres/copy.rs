//! Copying a sled store into an empty PostgreSQL store (the store half of `kmipd migrate`).
//!
//! Every object is copied with its sequence (creation order and Locate order are kept), in
//! commits of a few hundred objects, re-wrapped under the PostgreSQL store's current KEK
//! (unlock it with the sled store's current KEK, so both hold the same key). The wrapped KEK
//! blobs are copied as they are (the master key unwraps them as before), and so are the server
//! settings (`ObjectStore::setting`). The database
//! sequence is moved past the highest copied sequence. Then the copy is checked: the same
//! number of objects, and the same digest: SHA-256 over every object in creation order of
//! its uid and its record encoded under one KEK (record encoding and AES key wrap are
//! deterministic, so equal objects give equal bytes).

use sha2::Digest as _;

use crate::kek::Kek;
use crate::{Change, ManagedObject, ObjectStore, SledStore, StoreError, record};

use super::{PgStore, backend};

/// What [`copy_from_sled`] copied and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Objects copied.
    pub objects: usize,
    /// Wrapped KEK blobs copied.
    pub wrapped_keks: usize,
    /// The digest both stores have (hex).
    pub digest: String,
}

const BATCH: usize = 256;

/// The count-and-digest of a listing.
fn digest(objects: &[ManagedObject], kek: &Kek) -> Result<String, StoreError> {
    let mut h = sha2::Sha256::new();
    for o in objects {
        let rec = record::encode(o, kek)?;
        for field in [o.uid.as_bytes(), rec.as_slice()] {
            let len = u64::try_from(field.len()).map_err(backend)?;
            h.update(len.to_be_bytes());
            h.update(field);
        }
    }
    Ok(h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>())
}

/// Copies every object and wrapped KEK blob of `from` (unlocked) into `to` (unlocked, and
/// holding no object), then checks count and digest. Refuses a sled store with damaged
/// records (they cannot be re-wrapped: repair or remove them first).
pub fn copy_from_sled(from: &SledStore, to: &PgStore) -> Result<CopyReport, StoreError> {
    if to.stored_objects()? != 0 {
        return Err(backend("the PostgreSQL store is not empty"));
    }
    let objects = from.all()?;
    let damaged = from.corrupt_records();
    if !damaged.is_empty() {
        return Err(backend(format!(
            "the sled store has {} damaged records (first: {}); nothing copied",
            damaged.len(),
            damaged.first().map(String::as_str).unwrap_or_default()
        )));
    }
    let blobs = from.wrapped_keks()?;
    for (id, blob) in &blobs {
        to.store_wrapped_kek(*id, blob)?;
    }
    for (name, value) in from.settings()? {
        to.set_setting(&name, Some(&value))?;
    }
    for chunk in objects.chunks(BATCH) {
        to.commit(chunk.iter().cloned().map(Change::Put).collect())?;
    }
    let copied = to.all()?;
    if copied.len() != objects.len() {
        return Err(backend(format!(
            "copy check failed: {} objects in sled, {} in PostgreSQL",
            objects.len(),
            copied.len()
        )));
    }
    let kek = to.inner.current()?;
    let want = digest(&objects, &kek)?;
    let got = digest(&copied, &kek)?;
    if want != got {
        return Err(backend(format!(
            "copy check failed: digest {want} in sled, {got} in PostgreSQL"
        )));
    }
    Ok(CopyReport {
        objects: copied.len(),
        wrapped_keks: blobs.len(),
        digest: got,
    })
}
