//! Administration while kmipd serves: KEK and master key rotation, online backup, grants,
//! audit log rotation.
//!
//! # Why a socket
//!
//! The running server holds sled's file lock, so a second process cannot open the store to
//! rotate or back it up; and the server already holds the unlocked store, the master key session
//! and the engine. So `kmipd serve` also listens on a local Unix domain socket
//! (`[admin] socket`, default `admin.sock` beside the configuration), and `kmipd admin --config
//! FILE <command>` is a thin client of it. Only `kmipd restore` works offline
//! ([`crate::storage::restore`]): it creates a store, which must not be served while it is
//! filled.
//!
//! # Who may use it
//!
//! Whoever can connect to the socket is an administrator, so access is file permissions: the
//! socket is created mode 0600 (bound inside a private 0700 directory, then renamed into place,
//! so it is never reachable with wider permissions), owned by the service user. As a second
//! check the server reads the peer's credentials (`SO_PEERCRED`) and refuses any uid but its own
//! and root. Every command is recorded in the audit log (identity `local-admin`, or the
//! administrator who signed it with `--cert`/`--key` ([`crate::approval`]); peer
//! `unix:uid=N,pid=P`) with its outcome.
//!
//! # Protocol
//!
//! One connection, one request: a JSON object on one line (at most [`MAX_REQUEST`] bytes),
//! answered by one JSON line `{"ok": true|false, "message": "..."}`. See [`Request`]. The
//! message is what `kmipd admin` prints; it never contains key material.
//!
//! # Commands
//!
//! Commands run one at a time (a mutex), on the blocking pool (PKCS#11, the store, fsync). The
//! KEK and master key rotations and the backup are the key hierarchy's ([`crate::storage`],
//! which describes them and their crash safety); grants are the engine's; `rotate-audit` is
//! [`AuditLog::rotate`]. This module is the socket, its protocol and the audit record of each
//! command. Under `[policy] dual_control_commands` the rotations need two administrators'
//! signed commands ([`crate::approval`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kmipd_ops::access::{operation_by_name, operation_name};
use kmipd_ops::{Engine, Principal};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use zeroize::Zeroizing;

use crate::approval::{self, Decision, Pending, Signed};
use crate::audit::{AuditLog, ItemSummary};
use crate::clients::{EnrollError, Enrollment};
use crate::config::{IdentitySource, TlsConfig};
use crate::settings::Settings;
use crate::storage::{Durable, StorageError};

/// Largest request line accepted on the socket.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Deadline for a client to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The identity admin commands act as (in the audit log, and as the grantor).
pub const ADMIN_IDENTITY: &str = "local-admin";

/// One admin request (the JSON line a client sends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// A new KEK; every object re-wrapped under it, online.
    RotateKek {
        /// The requesting administrator's signature, when dual control applies
        /// ([`crate::approval`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed: Option<Signed>,
    },
    /// A new master key version in the HSM; the KEK blobs re-wrapped under it.
    RotateMasterKey {
        /// As for [`Request::RotateKek`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed: Option<Signed>,
    },
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
    /// Approves the pending dual control request `id` ([`kmipd_ops::dual`]) as `local-admin`.
    Approve {
        /// The request id (`UID.XXXXXXXX`, or `rotate-kek.XXXXXXXX` for an act on the key
        /// hierarchy) the refused request's message named.
        id: String,
        /// The approving administrator's signature: required for an act on the key hierarchy
        /// ([`crate::approval`]); for an object's request it approves as that administrator
        /// instead of `local-admin`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed: Option<Signed>,
    },
    /// Marks object `uid` as needing dual control ([`kmipd_ops::dual`]).
    DualControl {
        /// The object.
        uid: String,
    },
    /// Moves the audit log aside and continues its chain in a new file
    /// ([`AuditLog::rotate`]).
    RotateAudit,
    /// Reads the configuration file again and applies `[roles]` and `[policy]`
    /// ([`crate::settings`]).
    Reload,
    /// Stores a client CA: certificate and PKCS#8 key read by the server from these files
    /// ([`crate::clients`]).
    ClientImportCa {
        /// The CA certificate (PEM).
        cert: PathBuf,
        /// The CA private key (PKCS#8 PEM).
        key: PathBuf,
    },
    /// A new key and certificate for a client, written to the new folder `out`.
    ClientIssue {
        /// The client's name (its certificate's CN).
        name: String,
        /// Validity in days (default [`crate::clients::DEFAULT_DAYS`]).
        #[serde(default)]
        days: Option<u32>,
        /// `ec-p256` (default), `rsa-2048`, `rsa-3072`.
        #[serde(default)]
        key: Option<String>,
        /// The output folder (absolute; must not exist).
        out: PathBuf,
    },
    /// A certificate for a certificate signing request read from `csr`.
    ClientSign {
        /// The request (PEM).
        csr: PathBuf,
        /// The client's name (default: the request's CN).
        #[serde(default)]
        name: Option<String>,
        /// Validity in days.
        #[serde(default)]
        days: Option<u32>,
        /// The output folder (absolute; must not exist).
        out: PathBuf,
    },
    /// The enrolled client certificates.
    ClientList,
    /// Revokes a client's certificates (by name) or one certificate (by serial).
    ClientRevoke {
        /// A name or a serial number (hex).
        client: String,
        /// Why (default `unspecified`).
        #[serde(default)]
        reason: Option<String>,
    },
    /// A new key and certificate for an enrolled client; the old ones revoked (superseded).
    ClientRenew {
        /// The client's name.
        name: String,
        /// Validity in days.
        #[serde(default)]
        days: Option<u32>,
        /// The output folder (absolute; must not exist).
        out: PathBuf,
    },
}

impl Request {
    /// The command name, as typed after `kmipd admin`.
    pub fn name(&self) -> &'static str {
        match self {
            Request::RotateKek { .. } => "rotate-kek",
            Request::RotateMasterKey { .. } => "rotate-master-key",
            Request::Backup { .. } => "backup",
            Request::Grant { .. } => "grant",
            Request::RevokeGrant { .. } => "revoke-grant",
            Request::Grants { .. } => "grants",
            Request::Approve { .. } => "approve",
            Request::DualControl { .. } => "dual-control",
            Request::RotateAudit => "rotate-audit",
            Request::Reload => "reload",
            Request::ClientImportCa { .. } => "client import-ca",
            Request::ClientIssue { .. } => "client issue",
            Request::ClientSign { .. } => "client sign",
            Request::ClientList => "client list",
            Request::ClientRevoke { .. } => "client revoke",
            Request::ClientRenew { .. } => "client renew",
        }
    }

    fn uid(&self) -> Option<&str> {
        match self {
            Request::Grant { uid, .. }
            | Request::RevokeGrant { uid, .. }
            | Request::Grants { uid }
            | Request::DualControl { uid } => Some(uid),
            Request::Approve { id, .. } if !Pending::is_act(id) => kmipd_ops::dual::uid_of(id),
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
    /// The store or the HSM: the key hierarchy's errors.
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
    /// Client enrollment refused ([`crate::clients`]).
    #[error(transparent)]
    Enroll(#[from] EnrollError),
}

/// Reloads the server's TLS configuration (set by the server once it runs).
pub type TlsReload = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Revocation reasons `client revoke` accepts (RFC 5280 names).
pub const REVOCATION_REASONS: [&str; 7] = [
    "unspecified",
    "key-compromise",
    "ca-compromise",
    "affiliation-changed",
    "superseded",
    "cessation-of-operation",
    "privilege-withdrawn",
];

/// What the admin socket acts on.
pub struct Admin {
    engine: Engine,
    client_crl: Option<PathBuf>,
    tls_reload: std::sync::OnceLock<TlsReload>,
    seen: Arc<crate::clients::Seen>,
    durable: Option<Durable>,
    audit: Option<AuditLog>,
    principal: Principal,
    one_at_a_time: Mutex<()>,
    stop: CancellationToken,
    settings: Option<Arc<Settings>>,
    signers: Option<(TlsConfig, IdentitySource)>,
    pending: Pending,
    /// Who signed the command being executed (its audit record's identity instead of
    /// `local-admin`); set by `signer`, taken by `execute`.
    signed_by: Mutex<Option<String>>,
    /// Where an HSM failure of a rotation is counted (`kmipd_hsm_failures_total`).
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
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
            client_crl: None,
            tls_reload: std::sync::OnceLock::new(),
            seen: Arc::default(),
            durable,
            audit,
            principal: Principal::admin(ADMIN_IDENTITY),
            one_at_a_time: Mutex::new(()),
            stop,
            settings: None,
            signers: None,
            pending: Pending::default(),
            signed_by: Mutex::new(None),
            metrics: None,
        }
    }

    /// Lets `reload` act on these settings (a server's).
    #[must_use]
    pub fn with_settings(mut self, settings: Arc<Settings>) -> Admin {
        self.settings = Some(settings);
        self
    }

    /// Lets administrators sign commands with client certificates of `tls`, their identity
    /// taken by `source` ([`crate::approval`]).
    #[must_use]
    pub fn with_signers(mut self, tls: TlsConfig, source: IdentitySource) -> Admin {
        self.signers = Some((tls, source));
        self
    }

    /// The principal who signed `act`/`subject` (under the current roles).
    fn signer(
        &self,
        signed: Option<&Signed>,
        act: &str,
        subject: &str,
    ) -> Result<Principal, AdminError> {
        let signed = signed.ok_or_else(|| {
            AdminError::Refused(format!(
                "dual control: {act} must be signed by an administrator's certificate \
                 (kmipd admin --cert FILE --key FILE ...)"
            ))
        })?;
        let (tls, source) = self
            .signers
            .as_ref()
            .ok_or_else(|| AdminError::Refused("this server takes no signed commands".into()))?;
        let settings = self
            .settings
            .as_ref()
            .ok_or_else(|| AdminError::Refused("this server takes no signed commands".into()))?;
        let names = approval::verify(signed, act, subject, approval::now(), None, tls, *source)
            .map_err(|e| AdminError::Refused(format!("dual control: {e}")))?;
        let principal = settings.principal(&names);
        if let Ok(mut by) = self.signed_by.lock() {
            *by = Some(principal.name().to_owned());
        }
        approval::administrator(&principal)
            .map_err(|e| AdminError::Refused(format!("dual control: {e}")))?;
        Ok(principal)
    }

    /// Dual control of a key hierarchy act: `Ok(None)` when it does not apply, `Ok(Some(note))`
    /// when approved (the note names both administrators), `Err` when refused or pending.
    fn dual_gate(&self, act: &str, signed: Option<&Signed>) -> Result<Option<String>, AdminError> {
        let Some(settings) = self.settings.as_ref().filter(|s| s.needs_dual_control(act)) else {
            return Ok(None);
        };
        let who = self.signer(signed, act, "")?;
        match self.pending.request(
            act,
            who.name(),
            approval::now(),
            settings.dual_control_window(),
        ) {
            Decision::Go(approver) => Ok(Some(format!(
                " (dual control: requested by {}, approved by {approver})",
                who.name()
            ))),
            Decision::Wait(message) => Err(AdminError::Refused(message)),
        }
    }

    /// Reads the configuration file again and applies its reloadable settings.
    pub fn reload(&self) -> Result<String, AdminError> {
        let settings = self
            .settings
            .as_ref()
            .ok_or_else(|| AdminError::Refused("this server has nothing to reload".into()))?;
        settings.reload().map_err(AdminError::Refused)
    }

    /// Where client revocations write kmipd's CRL (`[admin] client_crl`).
    pub fn with_client_crl(mut self, path: Option<PathBuf>) -> Admin {
        self.client_crl = path;
        self
    }

    /// Where the rotations count their HSM failures (the server's metrics).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Admin {
        self.metrics = Some(metrics);
        self
    }

    /// Counts `result`'s HSM failure, if it is one, under `operation`.
    fn count_hsm_failure<T>(
        &self,
        operation: crate::metrics::HsmOperation,
        result: Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        if let (Err(StorageError::Hsm(_)), Some(m)) = (&result, &self.metrics) {
            m.hsm_failed(operation);
        }
        result
    }

    /// The server's record of client certificates met ([`crate::clients::Seen`]).
    pub fn with_seen(mut self, seen: Arc<crate::clients::Seen>) -> Admin {
        self.seen = seen;
        self
    }

    /// How to reload the server's TLS configuration after a client revocation (set once).
    pub fn set_tls_reload(&self, reload: TlsReload) {
        let _ = self.tls_reload.set(reload);
    }

    /// Runs one command (blocking) and records it in the audit log. `Ok` is the line printed.
    pub fn execute(&self, request: &Request, peer: &str) -> Result<String, AdminError> {
        let (result, signer) = {
            let _one = self
                .one_at_a_time
                .lock()
                .map_err(|_| AdminError::Refused("an earlier admin command panicked".into()))?;
            let result = match request {
                Request::RotateKek { signed } => self
                    .dual_gate("rotate-kek", signed.as_ref())
                    .and_then(|note| Ok(self.rotate_kek()? + note.as_deref().unwrap_or(""))),
                Request::RotateMasterKey { signed } => self
                    .dual_gate("rotate-master-key", signed.as_ref())
                    .and_then(|note| Ok(self.rotate_master_key()? + note.as_deref().unwrap_or(""))),
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
                Request::Approve { id, signed } => self.approve(id, signed.as_ref()),
                Request::DualControl { uid } => self.dual_control(uid),
                Request::RotateAudit => self.rotate_audit(),
                Request::Reload => self.reload(),
                Request::ClientImportCa { cert, key } => self.client_import_ca(cert, key),
                Request::ClientIssue {
                    name,
                    days,
                    key,
                    out,
                } => self.client_issue(name, *days, key.as_deref(), out),
                Request::ClientSign {
                    csr,
                    name,
                    days,
                    out,
                } => self.client_sign(csr, name.as_deref(), *days, out),
                Request::ClientList => self.client_list(),
                Request::ClientRevoke { client, reason } => {
                    self.client_revoke(client, reason.as_deref())
                }
                Request::ClientRenew { name, days, out } => self.client_renew(name, *days, out),
            };
            // Taken under the same lock as the command: the next command's signer is its own.
            let signer = self.signed_by.lock().ok().and_then(|mut by| by.take());
            (result, signer)
        };
        if let Some(audit) = &self.audit {
            let item = ItemSummary::outcome(
                format!("admin {}", request.name()),
                request.uid().map(str::to_owned).into_iter().collect(),
                &result,
            );
            // A signed command is recorded under its signer's identity.
            let identity = signer.unwrap_or_else(|| ADMIN_IDENTITY.to_owned());
            if let Err(e) = audit.append(&identity, peer, &[item]) {
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

    fn enrollment(&self) -> Enrollment<'_> {
        Enrollment::new(&self.engine, &self.principal)
    }

    fn read_pem(path: &Path, what: &str) -> Result<Zeroizing<String>, AdminError> {
        std::fs::read_to_string(path)
            .map(Zeroizing::new)
            .map_err(|e| AdminError::Refused(format!("{what} {}: {e}", path.display())))
    }

    fn client_import_ca(&self, cert: &Path, key: &Path) -> Result<String, AdminError> {
        let cert = Self::read_pem(cert, "CA certificate")?;
        let key = Self::read_pem(key, "CA key")?;
        let mut message = self.enrollment().import_ca(&cert, &key)?;
        if let Some(path) = &self.client_crl {
            let crl = self.enrollment().crl()?;
            self.publish_crl(path, &crl)?;
            message.push_str(&format!("; CRL written to {}", path.display()));
        }
        Ok(message)
    }

    fn written(w: &crate::clients::Written) -> String {
        let files: Vec<String> = w
            .files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        format!(
            "client {} enrolled: serial {}, valid until {}; wrote {} in {}",
            w.record.name,
            w.record.serial,
            w.record.not_after,
            files.join(", "),
            w.files
                .first()
                .and_then(|f| f.parent())
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        )
    }

    fn client_issue(
        &self,
        name: &str,
        days: Option<u32>,
        key: Option<&str>,
        out: &Path,
    ) -> Result<String, AdminError> {
        let kind = crate::clients::key_kind(key.unwrap_or("ec-p256"))?;
        let w = self.enrollment().issue(name, days, kind, out)?;
        Ok(Self::written(&w))
    }

    fn client_sign(
        &self,
        csr: &Path,
        name: Option<&str>,
        days: Option<u32>,
        out: &Path,
    ) -> Result<String, AdminError> {
        let csr = Self::read_pem(csr, "certificate signing request")?;
        let w = self.enrollment().sign(&csr, name, days, out)?;
        Ok(Self::written(&w))
    }

    fn client_list(&self) -> Result<String, AdminError> {
        let list = self.enrollment().list()?;
        if list.is_empty() {
            return Ok("no enrolled clients".to_owned());
        }
        let mut lines = vec![format!(
            "{:<24} {:<32} {:<21} {:<9} {:<21} STATUS",
            "NAME", "SERIAL", "NOT AFTER", "KEY", "LAST SEEN"
        )];
        for r in &list {
            let seen = self
                .seen
                .last_seen(&r.serial)
                .and_then(|t| t.replace_nanosecond(0).ok())
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| "-".to_owned());
            lines.push(format!(
                "{:<24} {:<32} {:<21} {:<9} {:<21} {}",
                r.name, r.serial, r.not_after, r.key, seen, r.status
            ));
        }
        Ok(lines.join("\n"))
    }

    /// Writes kmipd's CRL atomically, then reloads TLS so that the next handshake uses it.
    fn publish_crl(&self, path: &Path, crl: &str) -> Result<(), AdminError> {
        let tmp = path.with_extension("crl.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(crl.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| AdminError::Refused(format!("CRL {}: {e}", path.display())))?;
        if let Some(reload) = self.tls_reload.get() {
            reload().map_err(|e| {
                AdminError::Refused(format!(
                    "CRL written to {} but TLS not reloaded: {e}",
                    path.display()
                ))
            })?;
        }
        Ok(())
    }

    fn crl_path(&self) -> Result<&Path, AdminError> {
        self.client_crl.as_deref().ok_or_else(|| {
            AdminError::Refused(
                "admin.client_crl is not set: kmipd has nowhere to publish its CRL (set it, and \
                 list the same file in tls.crls)"
                    .to_owned(),
            )
        })
    }

    fn client_revoke(&self, client: &str, reason: Option<&str>) -> Result<String, AdminError> {
        let reason = reason.unwrap_or("unspecified");
        if !REVOCATION_REASONS.contains(&reason) {
            return Err(AdminError::Refused(format!(
                "unknown reason {reason:?}: {}",
                REVOCATION_REASONS.join(", ")
            )));
        }
        let path = self.crl_path()?.to_owned();
        let (crl, revoked) = self.enrollment().revoke(client, reason)?;
        self.seen.revoke(revoked.iter().map(|r| r.serial.as_str()));
        self.publish_crl(&path, &crl)?;
        let list: Vec<String> = revoked
            .iter()
            .map(|r| format!("{} serial {}", r.name, r.serial))
            .collect();
        Ok(format!(
            "revoked ({reason}): {}; CRL {} published and in use",
            list.join(", "),
            path.display()
        ))
    }

    fn client_renew(
        &self,
        name: &str,
        days: Option<u32>,
        out: &Path,
    ) -> Result<String, AdminError> {
        let path = self.crl_path()?.to_owned();
        let (w, crl, replaced) = self.enrollment().renew(name, days, out)?;
        self.seen.revoke(replaced.iter().map(|r| r.serial.as_str()));
        self.publish_crl(&path, &crl)?;
        Ok(format!(
            "{}; the previous certificates are revoked (superseded)",
            Self::written(&w)
        ))
    }

    fn durable(&self, what: &str) -> Result<&Durable, AdminError> {
        self.durable.as_ref().ok_or_else(|| {
            AdminError::Refused(format!(
                "{what} needs the durable store (store.backend = \"sled\" or \"postgres\" with \
                 an HSM); this server runs without one"
            ))
        })
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

    /// KEK rotation ([`crate::storage::rotate_kek`]); resumes an interrupted one.
    pub fn rotate_kek(&self) -> Result<String, AdminError> {
        let d = self.durable("rotate-kek")?;
        let store = d.keyring();
        let done = self.count_hsm_failure(
            crate::metrics::HsmOperation::RotateKek,
            crate::storage::rotate_kek(store, d.master.as_ref(), &self.stop),
        )?;
        Ok(done.to_string())
    }

    /// Master key rotation ([`crate::storage::rotate_master_key`]).
    pub fn rotate_master_key(&self) -> Result<String, AdminError> {
        let d = self.durable("rotate-master-key")?;
        let done = self.count_hsm_failure(
            crate::metrics::HsmOperation::RotateMasterKey,
            crate::storage::rotate_master_key(d.keyring(), d.master.as_ref()),
        )?;
        Ok(done.to_string())
    }

    /// Online backup to `path` ([`crate::storage::backup`]).
    pub fn backup(&self, path: &Path) -> Result<String, AdminError> {
        let d = self.durable("backup")?;
        Ok(crate::storage::backup(d.sled_for_backup()?, path)?.to_string())
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

    fn approve(&self, id: &str, signed: Option<&Signed>) -> Result<String, AdminError> {
        if Pending::is_act(id) {
            let who = self.signer(signed, "approve", id)?;
            let window = self
                .settings
                .as_ref()
                .map_or(kmipd_ops::dual::DEFAULT_WINDOW, |s| s.dual_control_window());
            return self
                .pending
                .approve(id, who.name(), approval::now(), window)
                .map_err(AdminError::Refused);
        }
        let who = match signed {
            Some(_) => self.signer(signed, "approve", id)?,
            None => self.principal.clone(),
        };
        self.engine.approve_dual(&who, id).map_err(|e| match e {
            kmipd_ops::Error::NotFound => {
                AdminError::Engine(format!("no pending dual control request {id}"))
            }
            e => AdminError::Engine(e.to_string()),
        })
    }

    fn dual_control(&self, uid: &str) -> Result<String, AdminError> {
        let set = self
            .engine
            .set_dual_control(&self.principal, uid)
            .map_err(|e| Self::engine_error(uid, e))?;
        Ok(if set {
            format!("{uid} now needs dual control")
        } else {
            format!("{uid} already needed dual control")
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

#[cfg(test)]
mod tests {
    use super::*;

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
