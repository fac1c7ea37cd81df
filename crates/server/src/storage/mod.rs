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
//! rotation). The server implements it for the sled store and the PostgreSQL store
//! ([`DurableStore`]). Opening sled ([`open_durable`]), [`backup`] and [`restore`] are sled's.
//!
//! **PostgreSQL** (`postgres.rs`: start-up, the wait for the database, `kmipd migrate`).
//! Several nodes share the store, so two things are added: a first KEK stored only if no node
//! stored one first ([`KeyringStore::create_wrapped_kek`]; the loser unwraps the winner's),
//! and a master key check value (a fixed text wrapped by the master key) kept in the database:
//! [`unlock_shared`] refuses a node whose master key does not unwrap it, and the master key
//! rotation re-wraps it with the KEK blobs. A KEK rotation runs through any one node: the
//! other nodes learn the new KEK from the database when they first need it, its blob unwrapped
//! by their own master key (`PgStore::set_kek_source`, set by [`open_postgres`]; the
//! mechanism is described in `kmipd_store`'s `postgres/keyring.rs`); rotations take the
//! database's rotation lock ([`KeyringStore::lock_rotations`]) so that two nodes never rotate
//! at once. Backups are PostgreSQL's own ([`POSTGRES_BACKUP`]).
//!
//! Everything here blocks (the store, PKCS#11): call it before the runtime starts, or on
//! `spawn_blocking`.

use std::sync::Arc;

use kmipd_hsm::{MasterKey, Pkcs11MasterKey};
use kmipd_store::{Kek, KekId, MemoryStore, ObjectStore, PgStore, SledStore, StoreError};
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::config::{Config, StoreBackend};

mod backup;
mod postgres;
mod rotation;
#[cfg(test)]
mod tests;

pub use backup::{BackedUp, Restored, backup, restore};
pub use postgres::{Migrated, migrate_from_sled, open_postgres};
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
    /// This node's master key is not the store's (a store shared by several nodes).
    #[error("{0}")]
    MasterKeyMismatch(String),
    /// The server was stopped while it waited for the database.
    #[error("stopped while waiting for the database")]
    Abandoned,
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
    /// Stores the blob of KEK `id` only if the store holds none for it yet; whether it was
    /// stored. Several nodes starting on one new store agree on one first KEK this way: the
    /// node whose blob was not stored unwraps the one that was. A store of one node can
    /// keep the default.
    fn create_wrapped_kek(&self, id: KekId, blob: &[u8]) -> Result<bool, StoreError> {
        self.store_wrapped_kek(id, blob)?;
        Ok(true)
    }
    /// The master key check value the store keeps (a fixed text wrapped by the master key),
    /// for a store shared by nodes that must all use one master key; `None` when it keeps
    /// none (the default: one node's store, whose KEK blobs already prove the key).
    fn master_check(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    /// Keeps the master key check value (a store that keeps none ignores it).
    fn set_master_check(&self, blob: &[u8]) -> Result<(), StoreError> {
        let _ = blob;
        Ok(())
    }
    /// Keeps other rotations (of the KEK or the master key) from starting until the returned
    /// guard is dropped; fails when one is running. A store shared by several nodes locks
    /// across them; the default (one node's store) holds nothing.
    fn lock_rotations(&self) -> Result<Box<dyn Send>, StoreError> {
        Ok(Box::new(()))
    }
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

impl KeyringStore for PgStore {
    fn wrapped_keks(&self) -> Result<Vec<(KekId, Vec<u8>)>, StoreError> {
        PgStore::wrapped_keks(self)
    }
    fn store_wrapped_kek(&self, id: KekId, blob: &[u8]) -> Result<(), StoreError> {
        PgStore::store_wrapped_kek(self, id, blob)
    }
    fn create_wrapped_kek(&self, id: KekId, blob: &[u8]) -> Result<bool, StoreError> {
        PgStore::create_wrapped_kek(self, id, blob)
    }
    fn remove_wrapped_kek(&self, id: KekId) -> Result<(), StoreError> {
        PgStore::remove_wrapped_kek(self, id)
    }
    fn required_keks(&self) -> Result<Vec<KekId>, StoreError> {
        PgStore::required_keks(self)
    }
    fn current_kek(&self) -> Result<Option<KekId>, StoreError> {
        PgStore::current_kek(self)
    }
    fn unlock(&self, keks: Vec<Kek>) -> Result<(), StoreError> {
        PgStore::unlock(self, keks)
    }
    fn begin_kek_rotation(&self, new: Kek) -> Result<(), StoreError> {
        PgStore::begin_kek_rotation(self, new)
    }
    fn rewrap_step(&self, max: usize) -> Result<(usize, Vec<String>), StoreError> {
        PgStore::rewrap_step(self, max)
    }
    fn finish_kek_rotation(&self) -> Result<Vec<KekId>, StoreError> {
        PgStore::finish_kek_rotation(self)
    }
    fn master_check(&self) -> Result<Option<Vec<u8>>, StoreError> {
        PgStore::master_fingerprint(self)
    }
    fn set_master_check(&self, blob: &[u8]) -> Result<(), StoreError> {
        PgStore::set_master_fingerprint(self, blob)
    }
    fn lock_rotations(&self) -> Result<Box<dyn Send>, StoreError> {
        Ok(Box::new(PgStore::lock_rotations(self)?))
    }
}

/// The durable store: sled on this machine, or PostgreSQL shared by several nodes.
#[derive(Debug, Clone)]
pub enum DurableStore {
    /// `store.backend = "sled"`.
    Sled(Arc<SledStore>),
    /// `store.backend = "postgres"`.
    Postgres(Arc<PgStore>),
}

/// The durable store and the master key, held open by the server for the admin commands.
#[derive(Clone)]
pub struct Durable {
    /// The unlocked store.
    pub store: DurableStore,
    /// The master key in the HSM.
    pub master: Arc<dyn MasterKey>,
    /// HSM failures unwrapping a KEK met at run time (PostgreSQL: a KEK rotated through
    /// another node); `kmipd_hsm_failures_total{operation="unwrap_kek"}`. Always 0 with sled.
    pub kek_unwrap_failures: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("store", &self.store)
            .field("master", &self.master.id())
            .finish()
    }
}

impl Durable {
    /// The store for the engine.
    pub fn objects(&self) -> Arc<dyn ObjectStore> {
        match &self.store {
            DurableStore::Sled(s) => s.clone(),
            DurableStore::Postgres(s) => s.clone(),
        }
    }

    /// The sled store, if that is the backend.
    pub fn sled(&self) -> Option<&Arc<SledStore>> {
        match &self.store {
            DurableStore::Sled(s) => Some(s),
            DurableStore::Postgres(_) => None,
        }
    }

    /// The store for the key hierarchy ([`rotate_kek`], [`rotate_master_key`]).
    pub fn keyring(&self) -> &dyn KeyringStore {
        match &self.store {
            DurableStore::Sled(s) => s.as_ref(),
            DurableStore::Postgres(s) => s.as_ref(),
        }
    }

    /// The sled store, for [`backup`]; with PostgreSQL the refusal names PostgreSQL's tools.
    pub fn sled_for_backup(&self) -> Result<&SledStore, StorageError> {
        match &self.store {
            DurableStore::Sled(s) => Ok(s.as_ref()),
            DurableStore::Postgres(_) => Err(StorageError::Refused(POSTGRES_BACKUP.into())),
        }
    }
}

/// Where backups of a PostgreSQL store come from (the admin command's and `kmipd restore`'s
/// answer).
pub const POSTGRES_BACKUP: &str = "with store.backend = \"postgres\", back up and restore the \
    database with PostgreSQL's tools: pg_dump/pg_restore (logical) or pg_basebackup with WAL \
    archiving (physical, point-in-time recovery); the wrapped KEKs are in the database, so a \
    restored database needs the same HSM master key";

/// Opens the configured store, unlocked. With PostgreSQL it waits for the database (see
/// [`open_postgres`]) until `abandoned` returns true.
pub fn open_store(
    config: &Config,
    abandoned: &dyn Fn() -> bool,
) -> Result<(Arc<dyn ObjectStore>, Option<Durable>), StorageError> {
    match config.store.backend {
        StoreBackend::Memory => Ok((Arc::new(MemoryStore::new()), None)),
        StoreBackend::Sled => {
            let durable = open_durable(config)?;
            Ok((durable.objects(), Some(durable)))
        }
        StoreBackend::Postgres => {
            let durable = open_postgres(config, abandoned)?;
            Ok((durable.objects(), Some(durable)))
        }
    }
}

/// The master key of the configured `[hsm]`.
fn open_master(config: &Config) -> Result<Pkcs11MasterKey, StorageError> {
    let hsm = config.hsm.as_ref().ok_or_else(|| {
        StorageError::Config(format!(
            "store.backend = \"{}\" needs an [hsm] table",
            config.store.backend.name()
        ))
    })?;
    Ok(Pkcs11MasterKey::open(hsm)?)
}

/// Opens the configured sled store and the master key, and unlocks the store ([`unlock`]).
pub fn open_durable(config: &Config) -> Result<Durable, StorageError> {
    let (store, master) = open_sled(config)?;
    Ok(Durable {
        store: DurableStore::Sled(store),
        master,
        kek_unwrap_failures: Arc::default(),
    })
}

/// The sled store, unlocked, and the master key.
fn open_sled(config: &Config) -> Result<(Arc<SledStore>, Arc<dyn MasterKey>), StorageError> {
    let master = open_master(config)?;
    let store = SledStore::open_with(&config.store.data_dir, &config.store.sled_options())?;
    unlock(&store, &master)?;
    Ok((Arc::new(store), Arc::new(master)))
}

/// Unlocks `store` with the KEKs it requires, each unwrapped by the master key. Wrapped blobs
/// of KEKs the store does not require are left alone: a retired KEK whose blob was not removed
/// yet, or a new KEK whose rotation was interrupted before it was registered (the next KEK
/// rotation removes both). A new store gets a new KEK.
pub fn unlock(store: &dyn KeyringStore, master: &dyn MasterKey) -> Result<(), StorageError> {
    unlock_keks(store, master)
}

/// [`unlock`] for a store shared by several nodes: first the store's master key check value
/// must unwrap with this node's master key (else [`StorageError::MasterKeyMismatch`]); a
/// store without one gets it once its KEKs unwrapped.
pub fn unlock_shared(store: &dyn KeyringStore, master: &dyn MasterKey) -> Result<(), StorageError> {
    let check = store.master_check()?;
    if let Some(check) = &check {
        verify_master_check(master, check)?;
    }
    unlock_keks(store, master)?;
    if check.is_none() {
        // The KEKs unwrapped: this master key is the store's. Nodes racing here store the
        // same proof (the master key's wrap is deterministic).
        store.set_master_check(&master.wrap_kek(MASTER_CHECK)?)?;
    }
    Ok(())
}

/// What the master key check value wraps.
const MASTER_CHECK: &[u8] = b"kmipd master key check v1 (32 b)";

/// Fails unless `check` unwraps to [`MASTER_CHECK`] with this master key.
fn verify_master_check(master: &dyn MasterKey, check: &[u8]) -> Result<(), StorageError> {
    match master.unwrap_kek(check) {
        Ok(plain) if plain.as_slice() == MASTER_CHECK => Ok(()),
        outcome => {
            let why = match outcome {
                Err(e) => e.to_string(),
                Ok(_) => "it unwraps to something else".into(),
            };
            Err(StorageError::MasterKeyMismatch(format!(
                "this node's HSM master key ({}) is not the one the store was set up with: \
                 the store's master key check value does not unwrap with it ({why}). Every \
                 node must use the same master key (the same PKCS#11 token and key label); \
                 refusing to serve",
                master.id()
            )))
        }
    }
}

fn unlock_keks(store: &dyn KeyringStore, master: &dyn MasterKey) -> Result<(), StorageError> {
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
    let mut blobs = store.wrapped_keks()?;
    if blobs.is_empty() {
        match first_kek(store, master)? {
            Some(kek) => {
                store.unlock(vec![kek])?;
                return Ok(());
            }
            // Another node stored its first KEK first: use that one.
            None => blobs = store.wrapped_keks()?,
        }
    }
    let keks = if blobs.is_empty() {
        return Err(StorageError::Config(
            "the store's first KEK blob vanished while this node started".into(),
        ));
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

/// KEK 1 of a new store, unless another node stored a blob for it first (`None`).
fn first_kek(
    store: &dyn KeyringStore,
    master: &dyn MasterKey,
) -> Result<Option<Kek>, StorageError> {
    let mut key = Zeroizing::new([0u8; 32]);
    openssl::rand::rand_bytes(key.as_mut_slice())
        .map_err(|e| StorageError::Random(e.to_string()))?;
    let blob = master.wrap_kek(key.as_slice())?;
    if !store.create_wrapped_kek(KekId(1), &blob)? {
        return Ok(None);
    }
    let kek = Kek::new(KekId(1), &key);
    warn_unlocked_memory(&kek);
    Ok(Some(kek))
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
