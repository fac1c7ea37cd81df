//! Opening the store at start-up: the sled database, the master key in the HSM, and the KEK
//! between them.
//!
//! The store keeps each KEK only wrapped by the master key. At start-up every wrapped blob is
//! unwrapped by the HSM (one PKCS#11 call each, at start-up only) and handed to
//! `SledStore::unlock`. A new store gets a fresh random KEK (OpenSSL's CSPRNG), whose wrapped
//! blob is stored *before* the KEK is registered, so a crash in between leaves a store that the
//! next start opens as new again.
//!
//! Everything here blocks (sled, PKCS#11): call it before the runtime starts, or on
//! `spawn_blocking`.

use std::sync::Arc;

use kmipd_hsm::MasterKey;
use kmipd_store::{Kek, KekId, MemoryStore, ObjectStore, SledStore};
use zeroize::Zeroizing;

use crate::config::{Config, StoreBackend};

/// Why the store could not be opened. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The HSM (module, token, PIN, master key): kmipd-hsm's one-line errors.
    #[error("hsm: {0}")]
    Hsm(#[from] kmipd_hsm::HsmError),
    /// The store.
    #[error("store: {0}")]
    Store(#[from] kmipd_store::StoreError),
    /// Configuration gap (validated configs do not hit it).
    #[error("{0}")]
    Config(String),
    /// Random generation failed.
    #[error("random key generation: {0}")]
    Random(String),
}

/// Opens the configured store, unlocked.
pub fn open_store(config: &Config) -> Result<Arc<dyn ObjectStore>, StorageError> {
    match config.store.backend {
        StoreBackend::Memory => Ok(Arc::new(MemoryStore::new())),
        // One way to open a sled store: the KEKs it requires, unwrapped by the master key.
        StoreBackend::Sled => {
            let durable = crate::admin::open_durable(config)?;
            let store: Arc<dyn ObjectStore> = durable.store;
            Ok(store)
        }
    }
}

/// Unwraps the store's KEKs with the master key and unlocks the store; a new store gets a
/// new KEK.
pub fn unlock(store: &SledStore, master: &dyn MasterKey) -> Result<(), StorageError> {
    let blobs = store.wrapped_keks()?;
    let keks = if blobs.is_empty() {
        let mut key = Zeroizing::new([0u8; 32]);
        openssl::rand::rand_bytes(key.as_mut_slice())
            .map_err(|e| StorageError::Random(e.to_string()))?;
        let id = KekId(1);
        let blob = master.wrap_kek(key.as_slice())?;
        store.store_wrapped_kek(id, &blob)?;
        vec![Kek::new(id, &key)]
    } else {
        let mut keks = Vec::new();
        for (id, blob) in blobs {
            let plain = master.unwrap_kek(&blob)?;
            let kek = Kek::from_slice(id, &plain).ok_or_else(|| {
                StorageError::Config(format!("wrapped KEK {id} is not 32 bytes long"))
            })?;
            keks.push(kek);
        }
        keks
    };
    for k in &keks {
        if let Some(w) = k.mlock_warning() {
            tracing::warn!(kek = %k.id(), "{w}");
        }
    }
    store.unlock(keks)?;
    Ok(())
}
