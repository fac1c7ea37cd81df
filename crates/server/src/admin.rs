//! Administration while kmipd serves: KEK and master key rotation, online backup, grants,
//! audit log rotation.
//!
//! # Why a socket
//!
//! The running server holds sled's file lock, so a second process cannot open the store to
//! rotate or back it up; and the server already holds the unlocked store, the master key session
//! and the engine. So `kmipd serve` also listens on a local Unix domain socket
//! (`[admin] socket`, default `admin.sock` beside the configuration), and `kmipd admin --config
//! FILE <command>` is a thin client of it. Only `kmipd restore` works offline: it creates a
//! store, which must not be served while it is filled.
//!
//! # Who may use it
//!
//! Whoever can connect to the socket is an administrator, so access is file permissions: the
//! socket is created mode 0600 (bound inside a private 0700 directory, then renamed into place,
//! so it is never reachable with wider permissions), owned by the service user. As a second
//! check the server reads the peer's credentials (`SO_PEERCRED`) and refuses any uid but its own
//! and root. Every command is recorded in the audit log (identity `local-admin`, peer
//! `unix:uid=N,pid=P`) with its outcome.
//!
//! # Protocol
//!
//! One connection, one request: a JSON object on one line (at most [`MAX_REQUEST`] bytes),
//! answered by one JSON line `{"ok": true|false, "message": "..."}`. See [`Request`]. The
//! message is what `kmipd admin` prints; it never contains key material.
//!
//! # Rotations
//!
//! Commands run one at a time (a mutex), on the blocking pool (PKCS#11, sled, fsync).
//!
//! **KEK** ([`Admin::rotate_kek`]): a new 32-byte KEK from OpenSSL's CSPRNG, wrapped by the
//! master key and stored (`store_wrapped_kek`, durable) *before* it is registered; then
//! `begin_kek_rotation` (it becomes current, durably), `rewrap_step` in batches until nothing is
//! left, `finish_kek_rotation`, and the retired KEKs' blobs are removed. A crash at any point
//! leaves every object readable: before registration the new blob is an orphan that the
//! start-up unlock ([`unlock_required`]) ignores; after it, both KEKs are required and unwrapped
//! at start-up. Running `rotate-kek` again after an interrupted rotation resumes it with the
//! KEK it started (the store still requires more than one KEK), instead of starting another.
//!
//! **Master key** ([`Admin::rotate_master_key`]): `MasterKey::rotate` over every KEK blob (a
//! new HSM key version), each new blob stored durably, then `confirm_rotation` with the blobs
//! now stored, which destroys the versions none of them names. A crash before the
//! confirmation leaves old and new versions on the token, so every blob, old or new, unwraps.
//!
//! **Test hooks.** Two environment variables of the *server* process slow a KEK rotation down
//! so that tests can kill it in the middle: `KMIPD_TEST_REWRAP_BATCH` (records per batch,
//! default 256) and `KMIPD_TEST_REWRAP_PAUSE_MS` (a sleep after each batch, default 0). They
//! change nothing else.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kmipd_hsm::{MasterKey, Pkcs11MasterKey};
use kmipd_ops::access::{operation_by_name, operation_name};
use kmipd_ops::{Engine, Principal};
use kmipd_store::{Kek, KekId, ObjectStore, SledStore};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use zeroize::Zeroizing;

use crate::audit::{AuditLog, ItemSummary};
use crate::config::Config;
use crate::storage::StorageError;

/// Largest request line accepted on the socket.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Deadline for a client to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The identity admin commands act as (in the audit log, and as the grantor).
pub const ADMIN_IDENTITY: &str = "local-admin";
/// Records re-wrapped per batch of a KEK rotation (each batch is fsynced).
pub const REWRAP_BATCH: usize = 256;

/// One admin request (the JSON line a client sends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// A new KEK; every object re-wrapped under it, online.
    RotateKek,
    /// A new master key version in the HSM; the KEK blobs re-wrapped under it.
    RotateMasterKey,
    /// An online, consistent backup of the store to `path` (absolute; must not exist).
    Backup {
        /// Where the server writes the file.
        path: PathBuf,
    },
    /// Grants `operations` on object `uid` to `identity`.
    Grant {
        /// The object.
        uid: String,
        /// The grantee.
        identity: String,
        /// Operation names (`Get`, `GetAttributes`, `Get Attributes`, `0x0A`).
        operations: Vec<String>,
    },
    /// Takes back `operations` (all when absent) granted on `uid` to `identity`.
    RevokeGrant {
        /// The object.
        uid: String,
        /// The grantee.
        identity: String,
        /// Operation names; `None` takes everything back.
        #[serde(default)]
        operations: Option<Vec<String>>,
    },
    /// Lists the grants on `uid`.
    Grants {
        /// The object.
        uid: String,
    },
    /// Moves the audit log aside and continues its chain in a new file
    /// ([`AuditLog::rotate`]).
    RotateAudit,
}

impl Request {
    /// The command name, as typed after `kmipd admin`.
    pub fn name(&self) -> &'static str {
        match self {
            Request::RotateKek => "rotate-kek",
            Request::RotateMasterKey => "rotate-master-key",
            Request::Backup { .. } => "backup",
            Request::Grant { .. } => "grant",
            Request::RevokeGrant { .. } => "revoke-grant",
            Request::Grants { .. } => "grants",
            Request::RotateAudit => "rotate-audit",
        }
    }

    fn uid(&self) -> Option<&str> {
        match self {
            Request::Grant { uid, .. }
            | Request::RevokeGrant { uid, .. }
            | Request::Grants { uid } => Some(uid),
            _ => None,
        }
    }
}

/// The answer line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The command succeeded.
    pub ok: bool,
    /// One line for the operator.
    pub message: String,
}

/// Why an admin command failed. `Display` is one line, without key material.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The store or the HSM.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The engine (grants).
    #[error("{0}")]
    Engine(String),
    /// The request cannot be served (bad argument, wrong backend, ...).
    #[error("{0}")]
    Refused(String),
    /// Talking to the socket.
    #[error("{0}")]
    Socket(String),
    /// The server is shutting down.
    #[error("interrupted by shutdown after {0}; run the command again to complete it")]
    Interrupted(String),
}

impl From<kmipd_store::StoreError> for AdminError {
    fn from(e: kmipd_store::StoreError) -> Self {
        AdminError::Storage(StorageError::Store(e))
    }
}

impl From<kmipd_hsm::HsmError> for AdminError {
    fn from(e: kmipd_hsm::HsmError) -> Self {
        AdminError::Storage(StorageError::Hsm(e))
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

/// Opens the configured sled store and the master key, and unlocks the store
/// ([`unlock_required`]). Blocking (PKCS#11, sled).
pub fn open_durable(config: &Config) -> Result<Durable, StorageError> {
    let hsm = config.hsm.as_ref().ok_or_else(|| {
        StorageError::Config("store.backend = \"sled\" needs an [hsm] table".into())
    })?;
    let master = Pkcs11MasterKey::open(hsm)?;
    let store = SledStore::open_with(&config.store.data_dir, &config.store.sled_options())?;
    unlock_required(&store, &master)?;
    Ok(Durable {
        store: Arc::new(store),
        master: Arc::new(master),
    })
}

/// Unlocks `store` with the KEKs it requires, each unwrapped by the master key. Wrapped blobs
/// of KEKs the store does not require are left alone: a retired KEK whose blob was not removed
/// yet, or a new KEK whose rotation was interrupted before it was registered (the next
/// `rotate-kek` removes both). A new store gets a new KEK ([`crate::storage::unlock`]).
pub fn unlock_required(store: &SledStore, master: &dyn MasterKey) -> Result<(), StorageError> {
    let required = store.required_keks()?;
    if required.is_empty() {
        return crate::storage::unlock(store, master);
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
        let plain = master.unwrap_kek(blob)?;
        let kek = Kek::from_slice(*id, &plain).ok_or_else(|| {
            StorageError::Config(format!("wrapped KEK {id} is not 32 bytes long"))
        })?;
        if let Some(w) = kek.mlock_warning() {
            warn!(kek = %id, "{w}");
        }
        keks.push(kek);
    }
    for (id, _) in blobs.iter().filter(|(id, _)| !required.contains(id)) {
        info!(kek = %id, "wrapped KEK not required by the store (left by an interrupted or \
            unfinished rotation); ignored, the next rotate-kek removes it");
    }
    store.unlock(keks)?;
    Ok(())
}

/// What the admin socket acts on.
pub struct Admin {
    engine: Engine,
    durable: Option<Durable>,
    audit: Option<AuditLog>,
    principal: Principal,
    one_at_a_time: Mutex<()>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

impl Admin {
    /// Commands over `engine`; rotations and backups need `durable` (the sled backend).
    /// `stop` interrupts a KEK rotation between batches.
    pub fn new(
        engine: Engine,
        durable: Option<Durable>,
        audit: Option<AuditLog>,
        stop: CancellationToken,
    ) -> Admin {
        Admin {
            engine,
            durable,
            audit,
            principal: Principal::admin(ADMIN_IDENTITY),
            one_at_a_time: Mutex::new(()),
            stop,
        }
    }

    /// Runs one command (blocking) and records it in the audit log. `Ok` is the line printed.
    pub fn execute(&self, request: &Request, peer: &str) -> Result<String, AdminError> {
        let result = {
            let _one = self
                .one_at_a_time
                .lock()
                .map_err(|_| AdminError::Refused("an earlier admin command panicked".into()))?;
            match request {
                Request::RotateKek => self.rotate_kek(),
                Request::RotateMasterKey => self.rotate_master_key(),
                Request::Backup { path } => self.backup(path),
                Request::Grant {
                    uid,
                    identity,
                    operations,
                } => self.grant(uid, identity, operations),
                Request::RevokeGrant {
                    uid,
                    identity,
                    operations,
                } => self.revoke_grant(uid, identity, operations.as_deref()),
                Request::Grants { uid } => self.grants(uid),
                Request::RotateAudit => self.rotate_audit(),
            }
        };
        if let Some(audit) = &self.audit {
            let item = ItemSummary {
                operation: format!("admin {}", request.name()),
                uids: request.uid().map(str::to_owned).into_iter().collect(),
                status: if result.is_ok() {
                    "Success".into()
                } else {
                    "OperationFailed".into()
                },
                reason: None,
                message: Some(match &result {
                    Ok(m) => m.clone(),
                    Err(e) => e.to_string(),
                }),
            };
            if let Err(e) = audit.append(ADMIN_IDENTITY, peer, &[item]) {
                error!(error = %e, "audit record of an admin command not written");
                return Err(AdminError::Refused(format!(
                    "the command ran ({}) but its audit record could not be written: {e}",
                    match &result {
                        Ok(_) => "successfully".to_owned(),
                        Err(e) => format!("and failed: {e}"),
                    }
                )));
            }
        }
        result
    }

    fn durable(&self, what: &str) -> Result<&Durable, AdminError> {
        self.durable.as_ref().ok_or_else(|| {
            AdminError::Refused(format!(
                "{what} needs the durable store (store.backend = \"sled\" with an HSM); this \
                 server runs without one"
            ))
        })
    }

    /// Removes the wrapped blobs of KEKs the store no longer requires (retired, or orphaned by
    /// an interrupted rotation); returns their ids.
    fn remove_unrequired_blobs(store: &SledStore) -> Result<Vec<KekId>, AdminError> {
        let required = store.required_keks()?;
        let mut removed = Vec::new();
        for (id, _) in store.wrapped_keks()? {
            if !required.contains(&id) {
                store.remove_wrapped_kek(id)?;
                removed.push(id);
            }
        }
        Ok(removed)
    }

    /// Moves the audit log aside and continues its chain in a new file
    /// ([`AuditLog::rotate`]); this command's own record is the first of the new file.
    pub fn rotate_audit(&self) -> Result<String, AdminError> {
        let audit = self
            .audit
            .as_ref()
            .ok_or_else(|| AdminError::Refused("this server keeps no audit log".into()))?;
        let r = audit
            .rotate()
            .map_err(|e| AdminError::Refused(format!("audit log not rotated: {e}")))?;
        Ok(format!(
            "audit log rotated: records 1-{} end in {} with hash {}; the chain goes on in {}",
            r.last_seq,
            r.file.display(),
            r.last_hash,
            audit.path().display()
        ))
    }

    /// KEK rotation (see the module docs). Resumes an interrupted one.
    pub fn rotate_kek(&self) -> Result<String, AdminError> {
        let d = self.durable("rotate-kek")?;
        let store = &d.store;
        let current = store
            .current_kek()?
            .ok_or_else(|| AdminError::Refused("the store has no KEK yet".into()))?;
        let required = store.required_keks()?;
        let resumed = required.len() > 1;
        let kek = if resumed {
            // An interrupted rotation: finish it with the KEK it made current.
            let blobs = store.wrapped_keks()?;
            let blob = blobs
                .iter()
                .find(|(id, _)| *id == current)
                .map(|(_, b)| b)
                .ok_or_else(|| {
                    AdminError::Refused(format!("no wrapped blob for the current KEK {current}"))
                })?;
            let plain = d.master.unwrap_kek(blob)?;
            Kek::from_slice(current, &plain).ok_or_else(|| {
                AdminError::Refused(format!("wrapped KEK {current} is not 32 bytes long"))
            })?
        } else {
            Self::remove_unrequired_blobs(store)?;
            let highest = store
                .wrapped_keks()?
                .iter()
                .map(|(id, _)| id.0)
                .chain(required.iter().map(|id| id.0))
                .chain(std::iter::once(current.0))
                .max()
                .unwrap_or(current.0);
            let id = KekId(
                highest
                    .checked_add(1)
                    .ok_or_else(|| AdminError::Refused("KEK ids exhausted".into()))?,
            );
            let mut key = Zeroizing::new([0u8; 32]);
            openssl::rand::rand_bytes(key.as_mut_slice())
                .map_err(|e| StorageError::Random(e.to_string()))?;
            let blob = d.master.wrap_kek(key.as_slice())?;
            // Durable before the KEK wraps anything: a crash leaves an ignored orphan blob.
            store.store_wrapped_kek(id, &blob)?;
            Kek::new(id, &key)
        };
        let new_id = kek.id();
        info!(kek = %new_id, resumed, "KEK rotation: starting");
        store.begin_kek_rotation(kek)?;
        let batch = env_number("KMIPD_TEST_REWRAP_BATCH")
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0)
            .unwrap_or(REWRAP_BATCH);
        let pause = env_number("KMIPD_TEST_REWRAP_PAUSE_MS").map(Duration::from_millis);
        let mut rewrapped = 0usize;
        let skipped = loop {
            if self.stop.is_cancelled() {
                return Err(AdminError::Interrupted(format!(
                    "re-wrapping {rewrapped} records under KEK {new_id}"
                )));
            }
            let (done, skipped) = store.rewrap_step(batch)?;
            rewrapped = rewrapped.saturating_add(done);
            if done == 0 {
                break skipped;
            }
            info!(kek = %new_id, rewrapped, "KEK rotation: batch re-wrapped");
            if let Some(p) = pause {
                std::thread::sleep(p);
            }
        };
        let retired = store.finish_kek_rotation()?;
        let removed = Self::remove_unrequired_blobs(store)?;
        let ids = |v: &[KekId]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut msg = format!(
            "KEK rotated{}: KEK {new_id} is current, {rewrapped} records re-wrapped",
            if resumed {
                " (an interrupted rotation completed)"
            } else {
                ""
            }
        );
        if !retired.is_empty() {
            msg.push_str(&format!("; KEK {} retired", ids(&retired)));
        }
        if !removed.is_empty() {
            msg.push_str(&format!(", wrapped blob of KEK {} removed", ids(&removed)));
        }
        if !skipped.is_empty() {
            msg.push_str(&format!(
                "; {} damaged records skipped (first: {})",
                skipped.len(),
                skipped.first().map(String::as_str).unwrap_or_default()
            ));
        }
        info!("{msg}");
        Ok(msg)
    }

    /// Master key rotation (see the module docs).
    pub fn rotate_master_key(&self) -> Result<String, AdminError> {
        let d = self.durable("rotate-master-key")?;
        let store = &d.store;
        let before = d.master.id();
        Self::remove_unrequired_blobs(store)?;
        let blobs = store.wrapped_keks()?;
        if blobs.is_empty() {
            return Err(AdminError::Refused("the store holds no KEK blob".into()));
        }
        let old: Vec<Vec<u8>> = blobs.iter().map(|(_, b)| b.clone()).collect();
        let new = d.master.rotate(&old)?;
        if new.len() != blobs.len() {
            return Err(AdminError::Refused(format!(
                "the HSM returned {} blobs for {} KEKs; nothing stored (the old version stays)",
                new.len(),
                blobs.len()
            )));
        }
        for ((id, _), blob) in blobs.iter().zip(&new) {
            store.store_wrapped_kek(*id, blob)?;
        }
        // Only what is durably stored now keeps its master key version.
        let stored: Vec<Vec<u8>> = store.wrapped_keks()?.into_iter().map(|(_, b)| b).collect();
        let destroyed = d.master.confirm_rotation(&stored)?;
        let msg = format!(
            "master key rotated: {} is current (was {before}), {} KEK blobs re-wrapped, {}",
            d.master.id(),
            new.len(),
            if destroyed.is_empty() {
                "no old version destroyed".to_owned()
            } else {
                format!("old versions destroyed: {}", destroyed.join(", "))
            }
        );
        info!("{msg}");
        Ok(msg)
    }

    /// Online backup to `path`.
    pub fn backup(&self, path: &Path) -> Result<String, AdminError> {
        let d = self.durable("backup")?;
        if !path.is_absolute() {
            return Err(AdminError::Refused(format!(
                "backup path {} is not absolute",
                path.display()
            )));
        }
        if path.exists() {
            return Err(AdminError::Refused(format!(
                "{} exists: choose a new file",
                path.display()
            )));
        }
        let info = d.store.backup(path)?;
        let msg = format!(
            "backup written to {}: {} records, {} metadata entries",
            path.display(),
            info.records,
            info.meta
        );
        info!("{msg}");
        Ok(msg)
    }

    fn operations(names: &[String]) -> Result<Vec<u32>, AdminError> {
        if names.is_empty() {
            return Err(AdminError::Refused("no operation named".into()));
        }
        names
            .iter()
            .map(|n| {
                operation_by_name(n).ok_or_else(|| {
                    AdminError::Refused(format!(
                        "unknown operation {n:?} (use KMIP names: Get, GetAttributes, Locate, ...)"
                    ))
                })
            })
            .collect()
    }

    fn engine_error(uid: &str, e: kmipd_ops::Error) -> AdminError {
        match e {
            kmipd_ops::Error::NotFound => AdminError::Engine(format!("object {uid} not found")),
            e => AdminError::Engine(format!("object {uid}: {e}")),
        }
    }

    fn names(ops: &[u32]) -> String {
        ops.iter()
            .map(|o| operation_name(*o))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn grant(&self, uid: &str, identity: &str, names: &[String]) -> Result<String, AdminError> {
        let ops = Self::operations(names)?;
        self.engine
            .grant(&self.principal, uid, identity, &ops)
            .map_err(|e| Self::engine_error(uid, e))?;
        Ok(format!(
            "granted {} on {uid} to {identity}",
            Self::names(&ops)
        ))
    }

    fn revoke_grant(
        &self,
        uid: &str,
        identity: &str,
        names: Option<&[String]>,
    ) -> Result<String, AdminError> {
        let ops = names.map(Self::operations).transpose()?;
        let removed = self
            .engine
            .revoke_grant(&self.principal, uid, identity, ops.as_deref())
            .map_err(|e| Self::engine_error(uid, e))?;
        let what = ops
            .as_deref()
            .map_or_else(|| "every grant".into(), Self::names);
        Ok(if removed {
            format!("revoked {what} on {uid} from {identity}")
        } else {
            format!("nothing to revoke: {identity} held no such grant on {uid}")
        })
    }

    fn grants(&self, uid: &str) -> Result<String, AdminError> {
        let grants = self
            .engine
            .grants(&self.principal, uid)
            .map_err(|e| Self::engine_error(uid, e))?;
        if grants.is_empty() {
            return Ok(format!("{uid}: no grants"));
        }
        let list: Vec<String> = grants
            .iter()
            .map(|g| format!("{} {}", g.grantee, Self::names(&g.operations)))
            .collect();
        Ok(format!("{uid}: {}", list.join("; ")))
    }
}

// ---- the socket ------------------------------------------------------------------------------

/// Binds the admin socket at `path`, mode 0600, never reachable with wider permissions: bound in
/// a fresh 0700 directory beside it, chmod'ed, then renamed into place. A stale socket left by a
/// killed server is replaced; any other file at `path` is an error.
pub fn bind(path: &Path) -> Result<UnixListener, AdminError> {
    let fail = |what: &str, e: std::io::Error| {
        AdminError::Socket(format!(
            "admin socket {}: {what}: {e} (set admin.socket, or admin.enabled = false)",
            path.display()
        ))
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if StdUnixStream::connect(path).is_ok() {
                return Err(AdminError::Socket(format!(
                    "admin socket {} is in use: is another kmipd serving this instance?",
                    path.display()
                )));
            }
            std::fs::remove_file(path).map_err(|e| fail("removing the stale socket", e))?;
        }
        Ok(_) => {
            return Err(AdminError::Socket(format!(
                "admin socket {} exists and is not a socket: remove it or set admin.socket",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail("cannot inspect", e)),
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let private = parent.join(format!(".admin-sock.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| fail("creating a private directory", e))?;
    let tmp = private.join("s");
    let result = (|| {
        let listener = UnixListener::bind(&tmp).map_err(|e| fail("bind", e))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| fail("chmod 0600", e))?;
        std::fs::rename(&tmp, path).map_err(|e| fail("rename into place", e))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    result
}

/// The uid this process runs as (the owner of `/proc/self`), when it can be read.
fn own_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Serves the admin socket until `stop`, then removes the socket file.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    admin: Arc<Admin>,
    stop: CancellationToken,
) {
    info!(socket = %path.display(), "admin socket listening");
    let me = own_uid();
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "admin socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let cred = stream.peer_cred().ok();
        let peer = cred.map_or_else(
            || "unix".to_owned(),
            |c| {
                format!(
                    "unix:uid={},pid={}",
                    c.uid(),
                    c.pid().map_or_else(|| "?".to_owned(), |p| p.to_string())
                )
            },
        );
        if let (Some(me), Some(c)) = (me, cred)
            && c.uid() != me
            && c.uid() != 0
        {
            warn!(%peer, "admin socket: connection refused: not the service user or root");
            continue;
        }
        let admin = admin.clone();
        tracker.spawn(async move { connection(stream, admin, peer).await });
    }
    drop(listener);
    let _ = std::fs::remove_file(&path);
    tracker.close();
    if !tracker.is_empty() {
        info!("admin socket closed; waiting for the admin command in flight");
    }
    tracker.wait().await;
}

async fn connection(stream: UnixStream, admin: Arc<Admin>, peer: String) {
    let (read, mut write) = stream.into_split();
    let limit = u64::try_from(MAX_REQUEST).unwrap_or(u64::MAX);
    let mut reader = tokio::io::BufReader::new(read.take(limit));
    let mut line = String::new();
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Err(_) => Response {
            ok: false,
            message: format!("no request within {REQUEST_TIMEOUT:?}"),
        },
        Ok(Err(e)) => Response {
            ok: false,
            message: format!("unreadable request: {e}"),
        },
        Ok(Ok(_)) if !line.ends_with('\n') => Response {
            ok: false,
            message: format!("request incomplete or longer than {MAX_REQUEST} bytes"),
        },
        Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim()) {
            Err(e) => Response {
                ok: false,
                message: format!("bad request: {e}"),
            },
            Ok(request) => {
                info!(%peer, command = request.name(), "admin command");
                let a = admin.clone();
                let p = peer.clone();
                let name = request.name();
                match tokio::task::spawn_blocking(move || a.execute(&request, &p)).await {
                    Ok(Ok(message)) => Response { ok: true, message },
                    Ok(Err(e)) => {
                        warn!(%peer, command = name, error = %e, "admin command failed");
                        Response {
                            ok: false,
                            message: e.to_string(),
                        }
                    }
                    Err(e) => Response {
                        ok: false,
                        message: format!("admin task failed: {e}"),
                    },
                }
            }
        },
    };
    let mut out = serde_json::to_string(&response)
        .unwrap_or_else(|_| "{\"ok\":false,\"message\":\"response not encodable\"}".to_owned());
    out.push('\n');
    let _ = write.write_all(out.as_bytes()).await;
    let _ = write.shutdown().await;
}

// ---- the client side (`kmipd admin`) --------------------------------------------------------

/// Sends `request` to the admin socket at `path` and returns the answer. Blocking; waits for the
/// command to finish (a rotation of a large store can take minutes) unless `timeout` is given.
pub fn call(
    path: &Path,
    request: &Request,
    timeout: Option<Duration>,
) -> Result<Response, AdminError> {
    let mut stream = StdUnixStream::connect(path).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                " (is kmipd serve running with this configuration?)"
            }
            std::io::ErrorKind::PermissionDenied => {
                " (only the user kmipd runs as may use the admin socket)"
            }
            _ => "",
        };
        AdminError::Socket(format!(
            "cannot connect to the admin socket {}: {e}{hint}",
            path.display()
        ))
    })?;
    let io =
        |e: std::io::Error| AdminError::Socket(format!("admin socket {}: {e}", path.display()));
    stream.set_read_timeout(timeout).map_err(io)?;
    let mut line = serde_json::to_string(request)
        .map_err(|e| AdminError::Socket(format!("encoding the request: {e}")))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream.take(1 << 20))
        .read_line(&mut answer)
        .map_err(io)?;
    if answer.trim().is_empty() {
        return Err(AdminError::Socket(format!(
            "admin socket {}: the server closed the connection without an answer (did it stop?)",
            path.display()
        )));
    }
    serde_json::from_str(answer.trim())
        .map_err(|e| AdminError::Socket(format!("unreadable answer from the server: {e}")))
}

// ---- offline restore -------------------------------------------------------------------------

/// `kmipd restore`: creates the store in `data_dir` (absent or empty) from `backup`, then opens
/// it with the configured HSM to prove that the master key unwraps its KEKs and counts the
/// readable objects. Blocking; the server must not be running on `data_dir`.
pub fn restore(config: &Config, backup: &Path, data_dir: &Path) -> Result<String, AdminError> {
    let info = SledStore::restore(backup, data_dir)?;
    let mut c = config.clone();
    c.store.data_dir = data_dir.to_owned();
    let checked = open_durable(&c).map_err(|e| {
        AdminError::Refused(format!(
            "restored {} records into {}, but the store cannot be unlocked with the configured \
             master key: {e}",
            info.records,
            data_dir.display()
        ))
    })?;
    let objects = checked.store.all()?.len();
    let corrupt = checked.store.corrupt_records();
    let mut msg = format!(
        "restored {} records and {} metadata entries into {}; unlocked with the master key, \
         {objects} objects readable",
        info.records,
        info.meta,
        data_dir.display()
    );
    if !corrupt.is_empty() || info.unindexed > 0 {
        msg.push_str(&format!(
            "; {} damaged records (first: {})",
            corrupt.len().max(info.unindexed),
            corrupt.first().map(String::as_str).unwrap_or("unparsable")
        ));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    //! Crash points of the rotations that a child process cannot reach without a hook: a KEK
    //! blob stored but never registered, and master key blobs re-wrapped but never stored. The
    //! master key here is a software stand-in with versions, like the HSM's.

    use std::collections::{BTreeMap, BTreeSet};

    use kmipd_ops::EngineConfig;
    use kmipd_proto::enums::{cryptographic_algorithm as alg, object_type, operation as op};
    use kmipd_proto::message::{
        ProtocolVersion, RequestBatchItem, RequestMessage, ResponseMessage,
    };
    use kmipd_proto::reader as r;
    use kmipd_proto::tag;
    use kmipd_ttlv::{Ttlv, Value};

    use super::*;

    /// Versioned software "master key": a blob is `[version] ++ (kek XOR version)`.
    struct SoftMaster {
        current: Mutex<u8>,
        live: Mutex<BTreeSet<u8>>,
    }

    impl SoftMaster {
        fn new() -> SoftMaster {
            SoftMaster {
                current: Mutex::new(1),
                live: Mutex::new(BTreeSet::from([1])),
            }
        }
        fn wrap_with(v: u8, kek: &[u8]) -> Vec<u8> {
            std::iter::once(v)
                .chain(kek.iter().map(|b| b ^ v))
                .collect()
        }
    }

    impl MasterKey for SoftMaster {
        fn wrap_kek(&self, kek: &[u8]) -> kmipd_hsm::Result<Vec<u8>> {
            Ok(Self::wrap_with(*self.current.lock().unwrap(), kek))
        }
        fn unwrap_kek(&self, blob: &[u8]) -> kmipd_hsm::Result<Zeroizing<Vec<u8>>> {
            let v = blob[0];
            assert!(
                self.live.lock().unwrap().contains(&v),
                "version {v} destroyed"
            );
            Ok(Zeroizing::new(blob[1..].iter().map(|b| b ^ v).collect()))
        }
        fn id(&self) -> String {
            format!("soft.v{}", self.current.lock().unwrap())
        }
        fn rotate(&self, blobs: &[Vec<u8>]) -> kmipd_hsm::Result<Vec<Vec<u8>>> {
            let plain: Vec<_> = blobs.iter().map(|b| self.unwrap_kek(b).unwrap()).collect();
            let mut cur = self.current.lock().unwrap();
            *cur += 1;
            self.live.lock().unwrap().insert(*cur);
            Ok(plain.iter().map(|k| Self::wrap_with(*cur, k)).collect())
        }
        fn confirm_rotation(&self, stored: &[Vec<u8>]) -> kmipd_hsm::Result<Vec<String>> {
            let cur = *self.current.lock().unwrap();
            let named: BTreeSet<u8> = stored.iter().map(|b| b[0]).collect();
            let mut live = self.live.lock().unwrap();
            let gone: Vec<u8> = live
                .iter()
                .copied()
                .filter(|v| *v != cur && !named.contains(v))
                .collect();
            gone.iter().for_each(|v| {
                live.remove(v);
            });
            Ok(gone.iter().map(|v| format!("soft.v{v}")).collect())
        }
    }

    fn call(engine: &Engine, operation: u32, payload: Vec<Ttlv>) -> Ttlv {
        let msg = RequestMessage::new(
            ProtocolVersion::V2_1,
            vec![RequestBatchItem::new(operation, payload)],
        );
        let resp = engine.handle_message(&Principal::new("t"), &msg.to_ttlv());
        let item = ResponseMessage::from_ttlv(&resp)
            .unwrap()
            .items
            .into_iter()
            .next()
            .unwrap();
        item.payload.expect("success")
    }

    fn find(t: &Ttlv, wanted: kmipd_ttlv::Tag) -> Option<Value> {
        let mut out = None;
        t.walk(&mut |i, _| {
            if i.tag == wanted && out.is_none() {
                out = Some(i.value.clone());
            }
        });
        out
    }

    fn create(engine: &Engine) -> String {
        let payload = call(
            engine,
            op::CREATE,
            vec![
                r::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
                r::structure(
                    tag::ATTRIBUTES,
                    vec![
                        r::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, alg::AES),
                        r::int(tag::CRYPTOGRAPHIC_LENGTH, 256),
                        r::int(tag::CRYPTOGRAPHIC_USAGE_MASK, 12),
                    ],
                ),
            ],
        );
        match find(&payload, tag::UNIQUE_IDENTIFIER) {
            Some(Value::TextString(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    fn key_bytes(engine: &Engine, uid: &str) -> Vec<u8> {
        let payload = call(engine, op::GET, vec![r::text(tag::UNIQUE_IDENTIFIER, uid)]);
        match find(&payload, tag::KEY_MATERIAL) {
            Some(Value::ByteString(b)) => b.to_vec(),
            other => panic!("{other:?}"),
        }
    }

    fn open(dir: &Path, master: &Arc<SoftMaster>) -> (Engine, Admin) {
        let store = Arc::new(SledStore::open(dir).unwrap());
        unlock_required(&store, master.as_ref()).unwrap();
        let engine = Engine::new(store.clone(), EngineConfig::default());
        let durable = Durable {
            store,
            master: master.clone(),
        };
        let admin = Admin::new(
            engine.clone(),
            Some(durable),
            None,
            CancellationToken::new(),
        );
        (engine, admin)
    }

    #[test]
    fn a_crash_between_storing_a_new_kek_blob_and_registering_it() {
        let tmp = tempfile::tempdir().unwrap();
        let master = Arc::new(SoftMaster::new());
        let (engine, admin) = open(tmp.path(), &master);
        let keys: BTreeMap<String, Vec<u8>> = (0..10)
            .map(|_| {
                let uid = create(&engine);
                let b = key_bytes(&engine, &uid);
                (uid, b)
            })
            .collect();
        // What rotate-kek does first, then the "crash".
        let blob = master.wrap_kek(&[7u8; 32]).unwrap();
        let store = admin.durable.as_ref().unwrap().store.clone();
        store.store_wrapped_kek(KekId(2), &blob).unwrap();
        drop((engine, admin, store));

        // The old unlock gives every blob to the store and fails on the unregistered one;
        // unlock_required ignores it.
        {
            let store = SledStore::open(tmp.path()).unwrap();
            let e = crate::storage::unlock(&store, master.as_ref()).unwrap_err();
            assert!(e.to_string().contains("not registered"), "{e}");
        }
        let (engine, admin) = open(tmp.path(), &master);
        for (uid, b) in &keys {
            assert_eq!(&key_bytes(&engine, uid), b);
        }
        let msg = admin.rotate_kek().unwrap();
        assert!(
            msg.starts_with("KEK rotated: KEK 2 is current, 10 records re-wrapped"),
            "{msg}"
        );
        let store = admin.durable.as_ref().unwrap().store.clone();
        assert_eq!(store.required_keks().unwrap(), vec![KekId(2)]);
        assert_eq!(store.wrapped_keks().unwrap().len(), 1);
        drop((engine, admin, store));
        let (engine, _admin) = open(tmp.path(), &master);
        for (uid, b) in &keys {
            assert_eq!(&key_bytes(&engine, uid), b);
        }
    }

    #[test]
    fn a_crash_between_master_key_rotate_and_storing_the_new_blobs() {
        let tmp = tempfile::tempdir().unwrap();
        let master = Arc::new(SoftMaster::new());
        let (engine, admin) = open(tmp.path(), &master);
        let uid = create(&engine);
        let bytes = key_bytes(&engine, &uid);
        let store = admin.durable.as_ref().unwrap().store.clone();
        let blobs: Vec<Vec<u8>> = store
            .wrapped_keks()
            .unwrap()
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        let _unstored = master.rotate(&blobs).unwrap();
        drop((engine, admin, store));

        let (engine, admin) = open(tmp.path(), &master);
        assert_eq!(key_bytes(&engine, &uid), bytes);
        let msg = admin.rotate_master_key().unwrap();
        assert!(msg.contains("soft.v3 is current"), "{msg}");
        assert!(
            msg.contains("old versions destroyed: soft.v1, soft.v2"),
            "{msg}"
        );
        drop((engine, admin));
        let (engine, _admin) = open(tmp.path(), &master);
        assert_eq!(key_bytes(&engine, &uid), bytes);
    }

    #[test]
    fn requests_round_trip_as_json_lines() {
        let r = Request::RevokeGrant {
            uid: "u".into(),
            identity: "client 2".into(),
            operations: None,
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(
            line,
            r#"{"command":"revoke-grant","uid":"u","identity":"client 2","operations":null}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        let e = serde_json::from_str::<Request>(r#"{"command":"grants","uid":"u","x":1}"#);
        assert!(e.is_err(), "unknown fields are refused");
        let e = serde_json::from_str::<Request>(r#"{"command":"format-disk"}"#);
        assert!(e.is_err());
    }
}
