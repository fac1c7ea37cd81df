//! The store and its key hierarchy: opening and unlocking it at start-up, a new KEK, the KEK
//! and master key rotations, backup and restore.
//!
//! # The hierarchy
//!
//! The master key lives in the HSM and never leaves it. It wraps the KEKs (32-byte AES keys,
//! RFC 5649 key wrap through PKCS#11); the store keeps each KEK only as that wrapped blob
//! beside the records. The store wraps every object's key material with its current KEK. At
//! start-up ([`open_durable`], then [`unlock`]) each KEK the store's records require is
//! unwrapped by the HSM (one PKCS#11 call each, at start-up and rotation only) and handed to
//! the store.
//!
//! **A new KEK** (a new store, or a KEK rotation) is 32 bytes from OpenSSL's CSPRNG, wrapped
//! by the master key, and its blob is stored durably *before* the store registers the KEK. A
//! crash in between leaves an orphan blob and nothing that needs it: a new store opens as new
//! again; [`unlock`] ignores an orphan beside KEKs in use (logging it), and the next KEK
//! rotation removes it.
//!
//! # Rotations (`rotation.rs`)
//!
//! **KEK** ([`rotate_kek`]): a new KEK as above; then `begin_kek_rotation` (it becomes
//! current, durably), `rewrap_step` in batches of [`REWRAP_BATCH`] records (each batch
//! fsynced) until nothing is left, `finish_kek_rotation`, and the retired KEKs' blobs are
//! removed. A crash at any point leaves every object readable: before registration the new
//! blob is an orphan that [`unlock`] ignores; after it, both KEKs are required and unwrapped at
//! start-up. Running the rotation again after an interrupted one (a crash, or the server's
//! shutdown between two batches) resumes it with the KEK it started (the store still requires
//! more than one KEK), instead of starting another.
//!
//! **Master key** ([`rotate_master_key`]): `MasterKey::rotate` over every KEK blob (a new HSM
//! key version), each new blob stored durably, then `confirm_rotation` with the blobs now
//! stored, which destroys the versions none of them names. A crash before the confirmation
//! leaves old and new versions on the token, so every blob, old or new, unwraps.
//!
//! **Test hooks.** With the `test-hooks` cargo feature (never in a release build: only the
//! crate's own tests enable it), two environment variables of the server process slow a KEK
//! rotation down so that tests can kill it in the middle: `KMIPD_TEST_REWRAP_BATCH` (records
//! per batch, default [`REWRAP_BATCH`]) and `KMIPD_TEST_REWRAP_PAUSE_MS` (a sleep after each
//! batch, default 0). They change nothing else; without the feature they are not read.
//!
//! # Backup and restore (`backup.rs`)
//!
//! [`backup`] writes a consistent copy of the store while it serves; the records stay wrapped
//! and the wrapped KEK blobs are included, so a restore needs the same master key. [`restore`]
//! (offline, `kmipd restore`) fills a new data directory from a backup, then unlocks it with
//! the configured master key to prove that it can.
//!
//! # Backends
//!
//! The unlock and the rotations take the store as a [`KeyringStore`]: what the hierarchy needs
//! of a durable backend (its wrapped blobs, the KEKs its records require, the steps of a
//! rotation). The server implements it for the sled store, the one it opens; opening
//! ([`open_durable`]), [`backup`] and [`restore`] are sled's.
//!
//! Everything here blocks (the store, PKCS#11): call it before the runtime starts, or on
//! `spawn_blocking`.

use std::sync::Arc;

use kmipd_hsm::{MasterKey, Pkcs11MasterKey};
use kmipd_store::{Kek, KekId, MemoryStore, ObjectStore, SledStore, StoreError};
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::config::{Config, StoreBackend};

mod backup;
mod rotation;
#[cfg(test)]
mod tests;

pub use backup::{BackedUp, Restored, backup, restore};
pub use rotation::{KekRotated, MasterKeyRotated, REWRAP_BATCH, rotate_kek, rotate_master_key};

/// Why the store could not be opened, or a key hierarchy operation failed. `Display` is one
/// line, without key material.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The HSM (module, token, PIN, master key): kmipd-hsm's one-line errors.
    #[error("hsm: {0}")]
    Hsm(#[from] kmipd_hsm::HsmError),
    /// The store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Configuration gap (validated configs do not hit it), or stored metadata that does not
    /// fit (a KEK blob missing or of the wrong length).
    #[error("{0}")]
    Config(String),
    /// Random generation failed.
    #[error("random key generation: {0}")]
    Random(String),
    /// The operation cannot be done on this store as it is (nothing to rotate, a backup path
    /// that exists, ...); nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// The server is shutting down: a KEK rotation stopped between two batches.
    #[error("interrupted by shutdown after {0}; run the command again to complete it")]
    Interrupted(String),
}

/// What the key hierarchy needs of a durable store. The methods are the store's own (see
/// `SledStore`): the wrapped KEK blobs it keeps, the KEKs its records require, the steps of a
/// KEK rotation.
pub trait KeyringStore: Send + Sync {
    /// Every wrapped KEK blob the store holds, by KEK id.
    fn wrapped_keks(&self) -> Result<Vec<(KekId, Vec<u8>)>, StoreError>;
    /// Stores (durably) the wrapped blob of KEK `id`, replacing any earlier one.
    fn store_wrapped_kek(&self, id: KekId, blob: &[u8]) -> Result<(), StoreError>;
    /// Removes the blob of a KEK that no record requires.
    fn remove_wrapped_kek(&self, id: KekId) -> Result<(), StoreError>;
    /// The KEKs the store needs to read its records (empty for a new store).
    fn required_keks(&self) -> Result<Vec<KekId>, StoreError>;
    /// The KEK new records are wrapped with, once unlocked.
    fn current_kek(&self) -> Result<Option<KekId>, StoreError>;
    /// Supplies the KEKs (a new store registers the first one).
    fn unlock(&self, keks: Vec<Kek>) -> Result<(), StoreError>;
    /// Registers `new` and makes it current (durably).
    fn begin_kek_rotation(&self, new: Kek) -> Result<(), StoreError>;
    /// Re-wraps at most `max` records under the current KEK: how many, and the damaged ones
    /// skipped.
    fn rewrap_step(&self, max: usize) -> Result<(usize, Vec<String>), StoreError>;
    /// Ends a rotation once nothing is left to re-wrap: the KEKs retired.
    fn finish_kek_rotation(&self) -> Result<Vec<KekId>, StoreError>;
}

impl KeyringStore for SledStore {
    fn wrapped_keks(&self) -> Result<Vec<(KekId, Vec<u8>)>, StoreError> {
        SledStore::wrapped_keks(self)
    }
    fn store_wrapped_kek(&self, id: KekId, blob: &[u8]) -> Result<(), StoreError> {
        SledStore::store_wrapped_kek(self, id, blob)
    }
    fn remove_wrapped_kek(&self, id: KekId) -> Result<(), StoreError> {
        SledStore::remove_wrapped_kek(self, id)
    }
    fn required_keks(&self) -> Result<Vec<KekId>, StoreError> {
        SledStore::required_keks(self)
    }
    fn current_kek(&self) -> Result<Option<KekId>, StoreError> {
        SledStore::current_kek(self)
    }
    fn unlock(&self, keks: Vec<Kek>) -> Result<(), StoreError> {
        SledStore::unlock(self, keks)
    }
    fn begin_kek_rotation(&self, new: Kek) -> Result<(), StoreError> {
        SledStore::begin_kek_rotation(self, new)
    }
    fn rewrap_step(&self, max: usize) -> Result<(usize, Vec<String>), StoreError> {
        SledStore::rewrap_step(self, max)
    }
    fn finish_kek_rotation(&self) -> Result<Vec<KekId>, StoreError> {
        SledStore::finish_kek_rotation(self)
    }
}

/// The durable store and the master key, held open by the server for the admin commands.
#[derive(Clone)]
pub struct Durable {
    /// The unlocked store.
    pub store: Arc<SledStore>,
    /// The master key in the HSM.
    pub master: Arc<dyn MasterKey>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("store", &self.store)
            .field("master", &self.master.id())
            .finish()
    }
}

/// Opens the configured store, unlocked.
pub fn open_store(config: &Config) -> Result<Arc<dyn ObjectStore>, StorageError> {
    match config.store.backend {
        StoreBackend::Memory => Ok(Arc::new(MemoryStore::new())),
        StoreBackend::Sled => {
            let durable = open_durable(config)?;
            let store: Arc<dyn ObjectStore> = durable.store;
            Ok(store)
        }
    }
}

/// Opens the configured sled store and the master key, and unlocks the store ([`unlock`]).
pub fn open_durable(config: &Config) -> Result<Durable, StorageError> {
    let hsm = config.hsm.as_ref().ok_or_else(|| {
        StorageError::Config("store.backend = \"sled\" needs an [hsm] table".into())
    })?;
    let master = Pkcs11MasterKey::open(hsm)?;
    let store = SledStore::open_with(&config.store.data_dir, &config.store.sled_options())?;
    unlock(&store, &master)?;
    Ok(Durable {
        store: Arc::new(store),
        master: Arc::new(master),
    })
}

/// Unlocks `store` with the KEKs it requires, each unwrapped by the master key. Wrapped blobs
/// of KEKs the store does not require are left alone: a retired KEK whose blob was not removed
/// yet, or a new KEK whose rotation was interrupted before it was registered (the next KEK
/// rotation removes both). A new store gets a new KEK.
pub fn unlock(store: &dyn KeyringStore, master: &dyn MasterKey) -> Result<(), StorageError> {
    let required = store.required_keks()?;
    if required.is_empty() {
        return unlock_new(store, master);
    }
    let blobs = store.wrapped_keks()?;
    let mut keks = Vec::new();
    for id in &required {
        let blob = blobs
            .iter()
            .find(|(b, _)| b == id)
            .map(|(_, blob)| blob)
            .ok_or_else(|| {
                StorageError::Config(format!(
                    "the store needs KEK {id} but holds no wrapped blob for it: restore the \
                     store's metadata from a backup"
                ))
            })?;
        keks.push(unwrap_kek(master, *id, blob)?);
    }
    for (id, _) in blobs.iter().filter(|(id, _)| !required.contains(id)) {
        info!(kek = %id, "wrapped KEK not required by the store (left by an interrupted or \
            unfinished rotation); ignored, the next rotate-kek removes it");
    }
    store.unlock(keks)?;
    Ok(())
}

/// A store that requires no KEK: a new one gets KEK 1 ([`new_kek`]); one whose first KEK's
/// blob was stored but not registered (a crash in between) is unlocked with what it holds.
fn unlock_new(store: &dyn KeyringStore, master: &dyn MasterKey) -> Result<(), StorageError> {
    let blobs = store.wrapped_keks()?;
    let keks = if blobs.is_empty() {
        vec![new_kek(store, master, KekId(1))?]
    } else {
        let mut keks = Vec::new();
        for (id, blob) in blobs {
            keks.push(unwrap_kek(master, id, &blob)?);
        }
        keks
    };
    store.unlock(keks)?;
    Ok(())
}

/// A new KEK `id`: random, wrapped by the master key, its blob stored durably before anything
/// uses it (see the module docs).
fn new_kek(
    store: &dyn KeyringStore,
    master: &dyn MasterKey,
    id: KekId,
) -> Result<Kek, StorageError> {
    let mut key = Zeroizing::new([0u8; 32]);
    openssl::rand::rand_bytes(key.as_mut_slice())
        .map_err(|e| StorageError::Random(e.to_string()))?;
    let blob = master.wrap_kek(key.as_slice())?;
    store.store_wrapped_kek(id, &blob)?;
    let kek = Kek::new(id, &key);
    warn_unlocked_memory(&kek);
    Ok(kek)
}

/// KEK `id` from its wrapped blob.
fn unwrap_kek(master: &dyn MasterKey, id: KekId, blob: &[u8]) -> Result<Kek, StorageError> {
    let plain = master.unwrap_kek(blob)?;
    let kek = Kek::from_slice(id, &plain)
        .ok_or_else(|| StorageError::Config(format!("wrapped KEK {id} is not 32 bytes long")))?;
    warn_unlocked_memory(&kek);
    Ok(kek)
}

/// Logs when a KEK's memory could not be locked (it may then be swapped out).
fn warn_unlocked_memory(kek: &Kek) {
    if let Some(w) = kek.mlock_warning() {
        warn!(kek = %kek.id(), "{w}");
    }
}
