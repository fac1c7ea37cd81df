//! The PostgreSQL store at start-up, and `kmipd migrate` from sled.
//!
//! **Start-up** ([`open_postgres`]). The options are checked first (a bad URL or CA file is a
//! mistake, not an outage: the node exits). Then the node connects; while PostgreSQL cannot
//! be reached it waits instead of exiting: one warning per attempt with the reason, attempts
//! spaced by a back-off from 1 s doubling up to 30 s (each attempt itself retries for up to
//! `store.deadline_ms`), until the database answers or the server is stopped; a database
//! whose schema is newer than this kmipd knows ends the start-up at once. Then the key
//! hierarchy ([`unlock_shared`]): the database's master key check value must unwrap with this
//! node's master key, else the node refuses to serve ([`StorageError::MasterKeyMismatch`]);
//! on an empty database the first node to store its KEK blob wins
//! (`PgStore::create_wrapped_kek`, an insert-if-absent), and a node that loses the race
//! unwraps the winner's blob, so two nodes starting at once end up with one KEK. Last, the
//! store is given the master key's unwrap as its KEK source (`PgStore::set_kek_source`), for
//! the KEKs of rotations run through other nodes.
//!
//! **Migration** ([`migrate_from_sled`]). The sled store (its server stopped) is backed up
//! next to its data directory first, then copied with `kmipd_store::copy_from_sled` (every
//! object re-wrapped under the sled store's current KEK, which becomes the database's; the
//! wrapped KEK blobs copied; count and digest compared), into a database that must hold no
//! object and no KEK.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kmipd_hsm::{MasterKey, Pkcs11MasterKey};
use kmipd_store::{ObjectStore, PgOptions, PgStore};
use tracing::{info, warn};

use super::{
    Durable, DurableStore, MASTER_CHECK, StorageError, open_master, open_sled, unlock_shared,
    unwrap_kek,
};
use crate::config::{Config, StoreBackend};

/// First pause between two connection attempts at start-up.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// Longest pause between two connection attempts at start-up.
const MAX_PAUSE: Duration = Duration::from_secs(30);

fn options(config: &Config) -> Result<PgOptions, StorageError> {
    config
        .store
        .pg_options()
        .ok_or_else(|| StorageError::Config("store.backend = \"postgres\" needs store.url".into()))
}

/// Opens the PostgreSQL store of `config`, waiting for the database while `abandoned` returns
/// false, and unlocks it (see the module doc).
pub fn open_postgres(
    config: &Config,
    abandoned: &dyn Fn() -> bool,
) -> Result<Durable, StorageError> {
    let opts = options(config)?;
    opts.check()?;
    let master: Arc<Pkcs11MasterKey> = Arc::new(open_master(config)?);
    let store = wait_for_database(&opts, abandoned)?;
    unlock_shared(&store, master.as_ref()).map_err(|e| match e {
        StorageError::Hsm(h) => StorageError::MasterKeyMismatch(format!(
            "this node's HSM master key ({}) cannot unwrap the database's KEK ({h}): every \
             node must use the same master key (the same PKCS#11 token and key label); \
             refusing to serve",
            master.id()
        )),
        other => other,
    })?;
    info!(master_key = %master.id(), "PostgreSQL store unlocked");
    let kek_unwrap_failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    store.set_kek_source(kek_source(master.clone(), kek_unwrap_failures.clone()));
    Ok(Durable {
        store: DurableStore::Postgres(Arc::new(store)),
        master,
        kek_unwrap_failures,
    })
}

/// How a node unwraps KEKs rotated through another node, when it first meets them: by its
/// master key, each HSM failure counted in `failures`.
pub(super) fn kek_source(
    master: Arc<dyn MasterKey>,
    failures: Arc<std::sync::atomic::AtomicU64>,
) -> kmipd_store::KekSource {
    Arc::new(move |id, blob: &[u8]| {
        let kek = unwrap_kek(master.as_ref(), id, blob).map_err(|e| {
            if matches!(e, StorageError::Hsm(_)) {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            e.to_string()
        })?;
        info!(kek = %id, "KEK learned from the database (rotated through another node)");
        Ok(kek)
    })
}

/// `PgStore::open`, again and again while it fails, until `abandoned`.
fn wait_for_database(
    opts: &PgOptions,
    abandoned: &dyn Fn() -> bool,
) -> Result<PgStore, StorageError> {
    let mut pause = FIRST_PAUSE;
    let mut attempt = 1u32;
    loop {
        if abandoned() {
            return Err(StorageError::Abandoned);
        }
        match PgStore::open(opts) {
            Ok(s) => {
                if attempt > 1 {
                    info!(attempt, "PostgreSQL reachable: starting");
                }
                return Ok(s);
            }
            // Written by a newer kmipd: no wait makes it readable.
            Err(e @ kmipd_store::StoreError::Incompatible(_)) => return Err(e.into()),
            Err(e) => {
                warn!(
                    attempt,
                    retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                    error = %e,
                    "PostgreSQL cannot be reached: waiting for it before serving"
                );
                let until = Instant::now() + pause;
                loop {
                    if abandoned() {
                        return Err(StorageError::Abandoned);
                    }
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::sleep(left.min(Duration::from_millis(100)));
                }
                pause = (pause * 2).min(MAX_PAUSE);
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// What `kmipd migrate` did. `Display` is the line it prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The backup of the sled store taken first.
    pub backup: PathBuf,
    /// Objects copied.
    pub objects: usize,
    /// Wrapped KEK blobs copied.
    pub wrapped_keks: usize,
    /// The digest both stores have.
    pub digest: String,
}

impl std::fmt::Display for Migrated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} objects and {} wrapped KEKs copied from sled into PostgreSQL; both hold the \
             same objects (count and digest {} checked); the sled store was backed up first \
             to {}",
            self.objects,
            self.wrapped_keks,
            self.digest,
            self.backup.display()
        )
    }
}

/// `kmipd migrate`: copies the sled store of `from` into the (empty) PostgreSQL store of
/// `to` (see the module doc). The sled store must not be served meanwhile (opening it fails
/// if a server holds it).
pub fn migrate_from_sled(from: &Config, to: &Config) -> Result<Migrated, StorageError> {
    if from.store.backend != StoreBackend::Sled {
        return Err(StorageError::Refused(format!(
            "--from-config: store.backend is \"{}\"; migrate copies a sled store",
            from.store.backend.name()
        )));
    }
    if to.store.backend != StoreBackend::Postgres {
        return Err(StorageError::Refused(format!(
            "--to-config: store.backend is \"{}\"; migrate copies into PostgreSQL",
            to.store.backend.name()
        )));
    }
    let opts = options(to)?;
    opts.check()?;
    let (sled, master) = open_sled(from)?;
    let target = PgStore::open(&opts)?;
    let objects = target.stored_objects()?;
    let keks = target.wrapped_keks()?.len();
    if objects != 0 || keks != 0 || !target.required_keks()?.is_empty() {
        return Err(StorageError::Refused(format!(
            "the PostgreSQL database is not empty ({objects} objects, {keks} wrapped KEKs): \
             migrate only into a new database; nothing copied"
        )));
    }
    // The new configuration's master key must be the old one: the KEK blobs are copied as
    // they are.
    let to_master: Arc<dyn MasterKey> = if to.hsm == from.hsm {
        master.clone()
    } else {
        let hsm = to.hsm.as_ref().ok_or_else(|| {
            StorageError::Config("--to-config: store.backend = \"postgres\" needs [hsm]".into())
        })?;
        Arc::new(Pkcs11MasterKey::open(hsm)?)
    };
    let current = sled
        .current_kek()?
        .ok_or_else(|| StorageError::Refused("the sled store has no KEK".into()))?;
    let blobs = sled.wrapped_keks()?;
    let blob = blobs
        .iter()
        .find(|(id, _)| *id == current)
        .map(|(_, b)| b.clone())
        .ok_or_else(|| {
            StorageError::Refused(format!("no wrapped blob for the current KEK {current}"))
        })?;
    let kek = unwrap_kek(master.as_ref(), current, &blob)?;
    to_master.unwrap_kek(&blob).map_err(|e| {
        StorageError::MasterKeyMismatch(format!(
            "--to-config's HSM master key ({}) cannot unwrap the sled store's KEK ({e}): both \
             configurations must use the same master key",
            to_master.id()
        ))
    })?;
    let backup = backup_path(&from.store.data_dir);
    let taken = sled.backup(&backup)?;
    info!(path = %backup.display(), records = taken.records, "sled store backed up before the migration");
    target.unlock(vec![kek])?;
    let report = kmipd_store::copy_from_sled(&sled, &target)?;
    super::KeyringStore::set_master_check(&target, &to_master.wrap_kek(MASTER_CHECK)?)?;
    // The count and digest were compared by the copy; read the objects once more through
    // the trait the server uses.
    let served = target.all()?.len();
    if served != report.objects {
        return Err(StorageError::Refused(format!(
            "after the copy PostgreSQL lists {served} objects, not {}",
            report.objects
        )));
    }
    let done = Migrated {
        backup,
        objects: report.objects,
        wrapped_keks: report.wrapped_keks,
        digest: report.digest,
    };
    info!("{done}");
    Ok(done)
}

/// A new file beside the data directory: `<data_dir>.before-migrate-<unix seconds>`.
fn backup_path(data_dir: &std::path::Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut name = data_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "data".into());
    name.push(format!(".before-migrate-{secs}"));
    data_dir.with_file_name(name)
}
