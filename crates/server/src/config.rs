//! The TOML configuration of `kmipd serve` (documented key by key in `docs/configuration.md`).
//!
//! One typed struct, read with serde and `deny_unknown_fields` on every table, so a misspelt
//! key is an error that names the key instead of a silently ignored setting. Defaults are
//! named `DEFAULT_*` constants; relative paths are resolved against the configuration file's
//! directory ([`Config::resolve_paths`]), so an instance directory made by `kmipd init` can be
//! served from anywhere. Durations are strings with a unit (`"10s"`, `"500ms"`, `"5m"`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kmipd_hsm::HsmConfig;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Default KMIP listen address (IANA port 5696, loopback: a development instance).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5696";
/// Default metrics listen address (loopback only).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9696";
/// Default KMIP over HTTPS listen address (loopback), when `[https]` is present.
pub const DEFAULT_HTTPS_LISTEN: &str = "127.0.0.1:5697";
/// Default admin console listen address (loopback), when `[console]` is present.
pub const DEFAULT_CONSOLE_LISTEN: &str = "127.0.0.1:5698";
/// Default largest request message, header included (1 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;
/// Default TLS handshake deadline.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection may stay idle between requests.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default deadline for the rest of a request once its first byte arrived, and for writing a
/// response.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on open connections (TLS handshakes included).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default cap on open connections of one identity.
pub const DEFAULT_MAX_CONNECTIONS_PER_IDENTITY: usize = 64;
/// Default cap on batch items in one request.
pub const DEFAULT_MAX_BATCH_ITEMS: usize = 256;
/// Default cap on requests executed at the same time (engine calls on the blocking pool).
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 64;
/// Default time given to requests in flight at shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default number of TLS sessions kept for resumption by session id.
pub const DEFAULT_SESSION_CACHE_SIZE: usize = 1024;
/// Default path of the administration socket (relative to the configuration's directory).
pub const DEFAULT_ADMIN_SOCKET: &str = "admin.sock";
/// Longest Unix domain socket path Linux accepts (`sun_path` is 108 bytes, NUL included).
pub const MAX_SOCKET_PATH: usize = 107;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the KMIP (TLS) listener binds.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Certificates, keys, CRLs and the client certificate policy.
    pub tls: TlsConfig,
    /// Where a client's identity comes from, and who administers.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Resource limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The optional Prometheus endpoint; absent means no metrics listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
    /// The optional KMIP over HTTPS listener; absent means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<HttpsConfig>,
    /// The optional admin web console; absent means none (`crates/server/src/server/console/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<ConsoleConfig>,
    /// The issuing CA of Certify and Re-certify (`kmipd_ops::issuing`); absent means those
    /// operations answer Feature Not Supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certify: Option<CertifyConfig>,
    /// Persistence.
    pub store: StoreConfig,
    /// The audit log.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The HSM holding the master key (required by the `sled` store backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsm: Option<HsmConfig>,
    /// The local administration socket (`kmipd admin ...`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Roles of identities (`docs/access-control.md`); reloaded by `kmipd admin reload`.
    #[serde(default)]
    pub roles: RolesConfig,
    /// The server policy on new keys (`docs/policy.md`); reloaded by `kmipd admin reload`.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The automatic rotation scheduler (`docs/policy.md`).
    #[serde(default)]
    pub rotation: RotationConfig,
    /// Username and Password and Device credentials accepted in request headers
    /// (`docs/access-control.md`); none: header credentials are not checked.
    #[serde(default)]
    pub credentials: CredentialsConfig,
    /// `[[push]]`: clients that get the server-to-client messages Put and Notify (KMIP 1.4
    /// §5; [`crate::push`], `docs/access-control.md`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub push: Vec<PushConfig>,
    /// The file this configuration was read from (what `kmipd admin reload` reads again).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[[push]]`: one client identity that gets Put and Notify messages at an endpoint of its own.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// The subscribed identity, as kmipd names clients (the identity of its certificate): what
    /// it may Get decides what it is sent.
    pub identity: String,
    /// The destination's name: the `destination` label of its metrics (default: the
    /// identity). Letters, digits, `.`, `_`, `-`; unique.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The client's endpoint, `HOST:PORT` (mutual TLS, KMIP framing).
    pub address: String,
    /// The PEM bundle of the CA certificates the endpoint's certificate must chain to
    /// (default: `tls.client_ca`, the CA of the client certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// The name the endpoint's certificate must carry (default: the identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The certificate kmipd presents as TLS client, with `client_key` (default: the server's
    /// own, `tls.ecdsa_cert` or else `tls.rsa_cert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// The key of `client_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// What it gets: `put` (each new object it may Get) and/or `notify` (each change of the
    /// attributes of an object it may read).
    #[serde(default = "d_push_events")]
    pub events: Vec<PushEvent>,
    /// The protocol version of the messages (`"1.4"`; default: the version of the request
    /// that made the change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Most messages waiting for delivery; beyond, new ones are dropped (counted, audited).
    #[serde(default = "d_push_queue")]
    pub queue: usize,
    /// Bound on each connect, handshake, write and read.
    #[serde(default = "d_push_timeout", with = "duration")]
    pub timeout: Duration,
    /// Attempts per message before it is given up (audited as failed).
    #[serde(default = "d_push_attempts")]
    pub attempts: u32,
    /// Longest pause between two attempts (the pause doubles from 100 ms).
    #[serde(default = "d_push_retry_max", with = "duration")]
    pub retry_max: Duration,
}

/// `push.events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PushEvent {
    /// Put of each new object.
    Put,
    /// Notify of each attribute change.
    Notify,
}

fn d_push_events() -> Vec<PushEvent> {
    vec![PushEvent::Put, PushEvent::Notify]
}

fn d_push_queue() -> usize {
    1024
}

fn d_push_timeout() -> Duration {
    Duration::from_secs(10)
}

fn d_push_attempts() -> u32 {
    5
}

fn d_push_retry_max() -> Duration {
    Duration::from_secs(30)
}

impl PushConfig {
    /// The destination's name (`name`, or else the identity).
    pub fn destination(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.identity)
    }

    /// The protocol version of `version`, if set.
    pub fn protocol_version(
        &self,
    ) -> Result<Option<kmipd_proto::message::ProtocolVersion>, String> {
        let Some(v) = &self.version else {
            return Ok(None);
        };
        let bad = || format!("push.version {v:?}: expected MAJOR.MINOR, 1.0 to 2.1");
        let (major, minor) = v.split_once('.').ok_or_else(bad)?;
        let version = kmipd_proto::message::ProtocolVersion::new(
            major.parse().map_err(|_| bad())?,
            minor.parse().map_err(|_| bad())?,
        );
        version.spec().map(|_| Some(version)).ok_or_else(bad)
    }
}

/// `[credentials]`: the header credentials kmipd accepts (see
/// [`kmipd_ops::credentials`]); passwords only as Argon2 PHC strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    /// `[[credentials.users]]`: `username`, `password_hash`.
    #[serde(default)]
    pub users: Vec<UserCredential>,
    /// `[[credentials.devices]]`: `name`, the fields that must match, `password_hash`.
    #[serde(default)]
    pub devices: Vec<DeviceCredential>,
}

/// One `[[credentials.users]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserCredential {
    /// The Username.
    pub username: String,
    /// The Argon2 hash of the password (`$argon2id$v=19$...`).
    pub password_hash: String,
}

/// One `[[credentials.devices]]` entry: each field given must match the credential's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCredential {
    /// The device's name (the label of the objects it creates).
    pub name: String,
    /// Device Serial Number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// Device Identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_identifier: Option<String>,
    /// Network Identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_identifier: Option<String>,
    /// Machine Identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_identifier: Option<String>,
    /// Media Identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_identifier: Option<String>,
    /// The Argon2 hash of the device's Password, when it must send one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
}

/// `[roles]`: one list of identity patterns per role, and the scopes (see
/// [`kmipd_ops::access::RoleAssignments`]). An identity in no list has the `client` role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RolesConfig {
    /// Administrators (with `identity.administrators`).
    #[serde(default)]
    pub administrator: Vec<String>,
    /// Operators.
    #[serde(default)]
    pub operator: Vec<String>,
    /// Auditors.
    #[serde(default)]
    pub auditor: Vec<String>,
    /// Pattern -> Object Groups the identities it matches are confined to.
    #[serde(default)]
    pub scopes: std::collections::BTreeMap<String, Vec<String>>,
}

/// `[policy]` (see `docs/policy.md` and [`kmipd_ops::policy`]). Names are the KMIP XML names
/// (`AES`, `SymmetricKey`, `P_256`, `Encrypt`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Apply the algorithm rules to new keys (default true); false: any algorithm kmipd
    /// implements.
    #[serde(default = "yes")]
    pub enforce_algorithms: bool,
    /// The allowed keys; when absent, kmipd's recommended list
    /// ([`kmipd_ops::Policy::recommended`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<AllowRule>>,
    /// Object Type -> the Cryptographic Usage Mask (names) of new objects that give none.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub usage_mask: std::collections::BTreeMap<String, Vec<String>>,
    /// Object Type -> the longest use of a new object (`"730d"`): its Deactivation Date.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub crypto_period: std::collections::BTreeMap<String, String>,
    /// Object Type -> the Rotate Interval (`"90d"`) of new objects that give none, with
    /// Rotate Automatic True.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub rotate_interval: std::collections::BTreeMap<String, String>,
    /// Object Groups whose objects need dual control ([`kmipd_ops::dual`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dual_control_groups: Vec<String>,
    /// How long a dual control request waits for approval, and an approval for its use
    /// (`"1h"`, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dual_control_window: Option<String>,
    /// Acts on the key hierarchy that need two administrators' signatures
    /// ([`crate::approval`]): `rotate-kek`, `rotate-master-key`, `restore`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dual_control_commands: Vec<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            enforce_algorithms: true,
            allow: None,
            usage_mask: std::collections::BTreeMap::new(),
            crypto_period: std::collections::BTreeMap::new(),
            rotate_interval: std::collections::BTreeMap::new(),
            dual_control_groups: Vec::new(),
            dual_control_window: None,
            dual_control_commands: Vec::new(),
        }
    }
}

/// `[rotation]`: the scheduler that re-keys objects due for automatic rotation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// Run the scheduler (default true; it only acts on objects with Rotate Automatic True).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How often it looks for due objects.
    #[serde(default = "d_rotation_every", with = "duration")]
    pub check_every: Duration,
}

/// Default `rotation.check_every`.
pub const DEFAULT_ROTATION_CHECK_EVERY: Duration = Duration::from_secs(60);

fn d_rotation_every() -> Duration {
    DEFAULT_ROTATION_CHECK_EVERY
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            enabled: true,
            check_every: DEFAULT_ROTATION_CHECK_EVERY,
        }
    }
}

/// One `[[policy.allow]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// Cryptographic Algorithm (`AES`, `RSA`, `EC`, `HMAC_SHA256`, ...).
    pub algorithm: String,
    /// Object Types (`SymmetricKey`, `PrivateKey`, `PublicKey`); empty: all three.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub object_types: Vec<String>,
    /// Allowed lengths in bits; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lengths: Vec<i32>,
    /// The smallest length in bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<i32>,
    /// Allowed curves (`P_256`, ...); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub curves: Vec<String>,
}

impl Config {
    /// The engine's policy from `[policy]`; `Err` names the key or name that is wrong.
    pub fn policy(&self) -> Result<kmipd_ops::Policy, String> {
        use kmipd_ops::policy::{AlgorithmRule, Policy, value};
        use kmipd_proto::tag;
        let p = &self.policy;
        let lookup = |t, what: &str, key: &str, name: &str| {
            value(t, name).ok_or_else(|| format!("policy.{key}: unknown {what} {name:?}"))
        };
        let object_type = |key: &str, name: &str| {
            let v = lookup(tag::OBJECT_TYPE, "Object Type", key, name)?;
            Ok::<u32, String>(v)
        };
        let allow = match (&p.allow, p.enforce_algorithms) {
            (_, false) => None,
            (None, true) => Policy::recommended().allow,
            (Some(rules), true) => {
                let mut out = Vec::with_capacity(rules.len());
                for r in rules {
                    out.push(AlgorithmRule {
                        algorithm: lookup(
                            tag::CRYPTOGRAPHIC_ALGORITHM,
                            "Cryptographic Algorithm",
                            "allow",
                            &r.algorithm,
                        )?,
                        object_types: r
                            .object_types
                            .iter()
                            .map(|n| object_type("allow", n))
                            .collect::<Result<_, _>>()?,
                        lengths: r.lengths.clone(),
                        min_length: r.min_length,
                        curves: r
                            .curves
                            .iter()
                            .map(|n| lookup(tag::RECOMMENDED_CURVE, "curve", "allow", n))
                            .collect::<Result<_, _>>()?,
                    });
                }
                Some(out)
            }
        };
        let mut usage_masks = Vec::new();
        for (t, names) in &p.usage_mask {
            let mut mask = 0u32;
            for n in names {
                mask |= lookup(
                    tag::CRYPTOGRAPHIC_USAGE_MASK,
                    "Cryptographic Usage Mask bit",
                    "usage_mask",
                    n,
                )?;
            }
            if mask == 0 {
                return Err(format!("policy.usage_mask.{t}: no usage"));
            }
            usage_masks.push((object_type("usage_mask", t)?, mask));
        }
        let mut crypto_periods = Vec::new();
        for (t, period) in &p.crypto_period {
            let d =
                duration::parse(period).map_err(|e| format!("policy.crypto_period.{t}: {e}"))?;
            let secs = i64::try_from(d.as_secs())
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| format!("policy.crypto_period.{t}: must be longer than 0"))?;
            crypto_periods.push((object_type("crypto_period", t)?, secs));
        }
        let mut rotate_intervals = Vec::new();
        for (t, interval) in &p.rotate_interval {
            let d = duration::parse(interval)
                .map_err(|e| format!("policy.rotate_interval.{t}: {e}"))?;
            let secs = u32::try_from(d.as_secs())
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| {
                    format!("policy.rotate_interval.{t}: must be between 1s and 49710d")
                })?;
            rotate_intervals.push((object_type("rotate_interval", t)?, secs));
        }
        if p.dual_control_groups.iter().any(String::is_empty) {
            return Err("policy.dual_control_groups: an empty Object Group".to_owned());
        }
        let dual_control_window = p
            .dual_control_window
            .as_deref()
            .map(|w| {
                let d =
                    duration::parse(w).map_err(|e| format!("policy.dual_control_window: {e}"))?;
                i64::try_from(d.as_secs())
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| "policy.dual_control_window: must be longer than 0".to_owned())
            })
            .transpose()?;
        Ok(Policy {
            allow,
            usage_masks,
            crypto_periods,
            rotate_intervals,
            dual_control_groups: p.dual_control_groups.clone(),
            dual_control_window,
        })
    }

    /// `policy.dual_control_commands`, checked: each one of [`crate::approval::COMMANDS`].
    pub fn dual_control_commands(&self) -> Result<Vec<String>, String> {
        for c in &self.policy.dual_control_commands {
            if !crate::approval::COMMANDS.contains(&c.as_str()) {
                return Err(format!(
                    "policy.dual_control_commands: unknown command {c:?} (one of {})",
                    crate::approval::COMMANDS.join(", ")
                ));
            }
        }
        Ok(self.policy.dual_control_commands.clone())
    }

    /// The issuing CA of `[certify]`, read from its files; `None` without the table.
    pub fn issuing_ca(
        &self,
    ) -> Result<Option<std::sync::Arc<kmipd_ops::issuing::IssuingCa>>, String> {
        let Some(c) = &self.certify else {
            return Ok(None);
        };
        let read =
            |p: &PathBuf| std::fs::read(p).map_err(|e| format!("[certify] {}: {e}", p.display()));
        let cert = read(&c.ca_cert)?;
        let key = zeroize::Zeroizing::new(read(&c.ca_key)?);
        kmipd_ops::issuing::IssuingCa::from_pem(&cert, &key, c.days)
            .map(Some)
            .map_err(|e| format!("[certify]: {e}"))
    }

    /// The header credentials of `[credentials]`.
    pub fn credentials(&self) -> kmipd_ops::credentials::Credentials {
        use kmipd_ops::credentials::{Credentials, Device, User};
        let c = &self.credentials;
        Credentials {
            users: c
                .users
                .iter()
                .map(|u| User {
                    username: u.username.clone(),
                    password_hash: u.password_hash.clone(),
                })
                .collect(),
            devices: c
                .devices
                .iter()
                .map(|d| Device {
                    name: d.name.clone(),
                    serial_number: d.serial_number.clone(),
                    device_identifier: d.device_identifier.clone(),
                    network_identifier: d.network_identifier.clone(),
                    machine_identifier: d.machine_identifier.clone(),
                    media_identifier: d.media_identifier.clone(),
                    password_hash: d.password_hash.clone(),
                })
                .collect(),
        }
    }

    /// The role assignments of `[roles]`, `identity.administrators` included.
    pub fn role_assignments(&self) -> kmipd_ops::access::RoleAssignments {
        let r = &self.roles;
        kmipd_ops::access::RoleAssignments {
            administrator: self
                .identity
                .administrators
                .iter()
                .chain(&r.administrator)
                .cloned()
                .collect(),
            operator: r.operator.clone(),
            auditor: r.auditor.clone(),
            scopes: r.scopes.clone(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5696))
}

/// `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM bundle of the CA certificates that issue client certificates.
    pub client_ca: PathBuf,
    /// PEM chain (leaf first) of the ECDSA server certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecdsa_cert: Option<PathBuf>,
    /// PEM PKCS#8 (or SEC1) private key of the ECDSA server certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecdsa_key: Option<PathBuf>,
    /// PEM chain (leaf first) of the RSA server certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsa_cert: Option<PathBuf>,
    /// PEM PKCS#8 (or PKCS#1) private key of the RSA server certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsa_key: Option<PathBuf>,
    /// PEM CRL files checked against client certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crls: Vec<PathBuf>,
    /// Client certificate Extended Key Usage policy.
    #[serde(default)]
    pub client_eku: EkuPolicy,
    /// TLS protocol versions accepted.
    #[serde(default = "default_versions")]
    pub versions: Vec<TlsVersion>,
    /// Issue TLS session tickets (stateless resumption).
    #[serde(default = "yes")]
    pub session_tickets: bool,
    /// Sessions kept for resumption by session id (0 disables the cache).
    #[serde(default = "default_session_cache_size")]
    pub session_cache_size: usize,
    /// Serve clients that offer only the KMIP profile suites (RSA key exchange, CBC) through
    /// OpenSSL (`crate::tls_profile`).
    #[serde(default)]
    pub profile_suites: bool,
}

fn default_versions() -> Vec<TlsVersion> {
    vec![TlsVersion::Tls12, TlsVersion::Tls13]
}
fn yes() -> bool {
    true
}
fn default_session_cache_size() -> usize {
    DEFAULT_SESSION_CACHE_SIZE
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3.
    #[serde(rename = "1.3")]
    Tls13,
}

/// What a client certificate's Extended Key Usage must say.
///
/// rustls itself refuses a certificate whose EKU extension lacks clientAuth; the question is
/// only whether a certificate *without* the extension is accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EkuPolicy {
    /// The extension must be present and list clientAuth (the default: a server or CA
    /// certificate cannot be used as a client identity by accident).
    #[default]
    Require,
    /// A certificate without the extension is accepted; one with it must list clientAuth.
    AllowAbsent,
}

/// `[identity]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Which part of the verified client certificate names the client.
    #[serde(default)]
    pub source: IdentitySource,
    /// Identities that see and may do everything.
    #[serde(default)]
    pub administrators: Vec<String>,
}

/// Where a client's identity is read from in its certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentitySource {
    /// The subject's (first) Common Name.
    #[default]
    Cn,
    /// The whole subject, RFC 4514 style (`CN=client, O=kmipd dev`).
    Subject,
    /// The first DNS name of the Subject Alternative Name.
    SanDns,
    /// The first e-mail address (rfc822Name) of the Subject Alternative Name.
    SanEmail,
    /// The first URI of the Subject Alternative Name.
    SanUri,
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request message in bytes, TTLV header included; checked from the header.
    #[serde(default = "d_max_message")]
    pub max_message_size: usize,
    /// Deadline for the TLS handshake.
    #[serde(default = "d_handshake", with = "duration")]
    pub handshake_timeout: Duration,
    /// How long a connection may wait for its next request.
    #[serde(default = "d_idle", with = "duration")]
    pub idle_timeout: Duration,
    /// Deadline for the rest of a request once it started, and for writing a response.
    #[serde(default = "d_io", with = "duration")]
    pub io_timeout: Duration,
    /// Open connections in total (handshakes included).
    #[serde(default = "d_max_conn")]
    pub max_connections: usize,
    /// Open connections of one identity.
    #[serde(default = "d_max_conn_id")]
    pub max_connections_per_identity: usize,
    /// Batch items in one request.
    #[serde(default = "d_max_batch")]
    pub max_batch_items: usize,
    /// Requests executed at the same time.
    #[serde(default = "d_max_concurrent")]
    pub max_concurrent_requests: usize,
    /// Time given to requests in flight after SIGTERM/SIGINT.
    #[serde(default = "d_grace", with = "duration")]
    pub shutdown_grace: Duration,
}

fn d_max_message() -> usize {
    DEFAULT_MAX_MESSAGE_SIZE
}
fn d_handshake() -> Duration {
    DEFAULT_HANDSHAKE_TIMEOUT
}
fn d_idle() -> Duration {
    DEFAULT_IDLE_TIMEOUT
}
fn d_io() -> Duration {
    DEFAULT_IO_TIMEOUT
}
fn d_max_conn() -> usize {
    DEFAULT_MAX_CONNECTIONS
}
fn d_max_conn_id() -> usize {
    DEFAULT_MAX_CONNECTIONS_PER_IDENTITY
}
fn d_max_batch() -> usize {
    DEFAULT_MAX_BATCH_ITEMS
}
fn d_max_concurrent() -> usize {
    DEFAULT_MAX_CONCURRENT_REQUESTS
}
fn d_grace() -> Duration {
    DEFAULT_SHUTDOWN_GRACE
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            io_timeout: DEFAULT_IO_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_identity: DEFAULT_MAX_CONNECTIONS_PER_IDENTITY,
            max_batch_items: DEFAULT_MAX_BATCH_ITEMS,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter (`info`, `kmipd=debug,warn`); `RUST_LOG` overrides it.
    #[serde(default = "d_level")]
    pub level: String,
}

fn d_level() -> String {
    "info".to_owned()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: d_level(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[metrics]`: its presence enables the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Plain-HTTP address serving `GET /metrics`.
    #[serde(default = "d_metrics_listen")]
    pub listen: SocketAddr,
}

fn d_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9696))
}

/// `[https]`: its presence enables KMIP over HTTPS (`POST /kmip`, same TLS and limits).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsConfig {
    /// Address the HTTPS listener binds.
    #[serde(default = "d_https_listen")]
    pub listen: SocketAddr,
}

fn d_https_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5697))
}

/// `[console]`: its presence enables the admin web console (same TLS and client certificate
/// identity as `listen`; administrators, operators and auditors only).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Address the console listener binds.
    #[serde(default = "d_console_listen")]
    pub listen: SocketAddr,
}

fn d_console_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5698))
}

/// `[certify]`: the CA with which kmipd issues certificates for the public keys it holds
/// (Certify, Re-certify; `kmipd_ops::issuing`). Not the client CA of `[tls] client_ca` and
/// `kmipd admin client`: certificates any client may obtain must not be TLS client
/// certificates kmipd trusts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertifyConfig {
    /// The issuing CA certificate (PEM; Basic Constraints CA:TRUE).
    pub ca_cert: PathBuf,
    /// Its private key (PEM, PKCS#8 or traditional).
    pub ca_key: PathBuf,
    /// Validity of the certificates it issues, in days (1 to 3650).
    #[serde(default = "d_certify_days")]
    pub days: u32,
}

fn d_certify_days() -> u32 {
    kmipd_ops::issuing::DEFAULT_DAYS
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sled` (durable; needs `[hsm]`) or `memory` (tests only: lost at exit).
    #[serde(default)]
    pub backend: StoreBackend,
    /// Directory of the sled database.
    #[serde(default = "d_data_dir")]
    pub data_dir: PathBuf,
    /// Bound of sled's page cache in MiB (sled's own default is 1 GiB).
    #[serde(default = "d_cache_capacity_mb")]
    pub cache_capacity_mb: u64,
    /// sled only: bound of the cache of decoded objects in entries (0: no cache).
    #[serde(default = "d_object_cache_entries")]
    pub object_cache_entries: usize,
    /// sled only: bound of the cache of decoded objects in MiB, their estimated decoded size
    /// (0: no cache).
    #[serde(default = "d_object_cache_mb")]
    pub object_cache_mb: u64,
    /// PostgreSQL only: libpq-style URL or key=value string; several hosts and
    /// `target_session_attrs=read-write` for a primary with standbys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// PostgreSQL only: PEM CA file verifying the database server's certificate; when set,
    /// TLS is required and verified (host name included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PostgreSQL only: connections this node keeps at most.
    #[serde(default = "d_pool_size")]
    pub pool_size: usize,
    /// PostgreSQL only: the longest one SQL statement may run (`statement_timeout`), in ms.
    #[serde(default = "d_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// PostgreSQL only: the longest one connection attempt may take (per host), in ms.
    #[serde(default = "d_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// PostgreSQL only: the longest a request's store work may take, counted from the
    /// request's arrival, and the longest any one store operation may take (waits for a
    /// connection and retries after a failover included), in ms; past it the request fails.
    #[serde(default = "d_deadline_ms")]
    pub deadline_ms: u64,
}

/// Default `store.statement_timeout_ms`.
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 5_000;
/// Default `store.connect_timeout_ms`.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Default `store.deadline_ms`.
pub const DEFAULT_DEADLINE_MS: u64 = 15_000;

fn d_pool_size() -> usize {
    kmipd_store::DEFAULT_POOL_SIZE
}
fn d_statement_timeout_ms() -> u64 {
    DEFAULT_STATEMENT_TIMEOUT_MS
}
fn d_connect_timeout_ms() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}
fn d_deadline_ms() -> u64 {
    DEFAULT_DEADLINE_MS
}

fn d_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn d_cache_capacity_mb() -> u64 {
    kmipd_store::DEFAULT_CACHE_CAPACITY_MB
}
fn d_object_cache_entries() -> usize {
    kmipd_store::DEFAULT_OBJECT_CACHE_ENTRIES
}
fn d_object_cache_mb() -> u64 {
    kmipd_store::DEFAULT_OBJECT_CACHE_MB
}

impl StoreConfig {
    /// The options the PostgreSQL store is opened with (`None` without `store.url`).
    pub fn pg_options(&self) -> Option<kmipd_store::PgOptions> {
        let url = self.url.as_ref()?;
        let mut o = kmipd_store::PgOptions::new(url.clone());
        o.ca_file = self.ca_file.clone();
        o.pool_size = self.pool_size;
        o.statement_timeout = Duration::from_millis(self.statement_timeout_ms);
        o.connect_timeout = Duration::from_millis(self.connect_timeout_ms);
        o.deadline = Duration::from_millis(self.deadline_ms);
        Some(o)
    }

    /// The options the sled store is opened with.
    pub fn sled_options(&self) -> kmipd_store::SledOptions {
        kmipd_store::SledOptions {
            cache_capacity_mb: self.cache_capacity_mb,
            object_cache_entries: self.object_cache_entries,
            object_cache_mb: self.object_cache_mb,
        }
    }
}

/// Storage backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreBackend {
    /// sled, key material wrapped by a KEK that the HSM's master key wraps.
    #[default]
    Sled,
    /// In memory, for tests; nothing survives a restart.
    Memory,
    /// PostgreSQL (`store.url`), shared by several kmipd nodes; key material wrapped as with
    /// sled, the wrapped KEK in the database.
    Postgres,
}

impl StoreBackend {
    /// The name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            StoreBackend::Sled => "sled",
            StoreBackend::Memory => "memory",
            StoreBackend::Postgres => "postgres",
        }
    }
}

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The hash-chained audit log file (created when absent; one record per batch item).
    #[serde(default = "d_audit_path")]
    pub path: PathBuf,
    /// `[[audit.forward]]` (or one `[audit.forward]` table): also send the records to these
    /// collectors, each with its own position and backlog (off when empty).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub forward: Vec<ForwardConfig>,
}

/// `[audit.forward]` (one table) or `[[audit.forward]]` (an array of them).
fn one_or_many<'de, D>(d: D) -> Result<Vec<ForwardConfig>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<ForwardConfig>),
        One(Box<ForwardConfig>),
    }
    // Deserialized as a plain value first, so a mistake inside a destination is reported with
    // its own message rather than as "matches no variant".
    let value = toml::Value::deserialize(d)?;
    let parsed = match value {
        toml::Value::Array(_) => Vec::<ForwardConfig>::deserialize(value).map(OneOrMany::Many),
        other => ForwardConfig::deserialize(other).map(|f| OneOrMany::One(Box::new(f))),
    }
    .map_err(serde::de::Error::custom)?;
    Ok(match parsed {
        OneOrMany::Many(v) => v,
        OneOrMany::One(f) => vec![*f],
    })
}

fn d_audit_path() -> PathBuf {
    PathBuf::from("audit.log")
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            path: d_audit_path(),
            forward: Vec::new(),
        }
    }
}

/// `[audit.forward]`: where the audit records are forwarded ([`crate::audit::forward`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// The destination's name: the `destination` label of its metrics and the suffix of its
    /// default state file. Required when there are several; letters, digits, `.`, `_`, `-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What each record is sent as.
    #[serde(default)]
    pub format: ForwardFormat,
    /// `tcp:HOST:PORT`, `tls:HOST:PORT` or `unix:/path/to/socket` (a stream socket).
    pub address: String,
    /// With `tls:`, the PEM bundle of the CA certificates the collector's certificate must
    /// chain to (required then).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// With `tls:`, the name the collector's certificate must carry (default: HOST).
    #[serde(default)]
    pub server_name: Option<String>,
    /// The file keeping the last record the collector took (default: the audit log's path
    /// with `.forward` appended, and `.NAME` for a named destination).
    #[serde(default)]
    pub state: Option<PathBuf>,
    /// Most records read from the log and held in memory at once (one write to the socket).
    #[serde(default = "d_forward_batch")]
    pub batch: usize,
    /// Longest wait between two attempts while the collector is unreachable.
    #[serde(default = "d_forward_retry_max", with = "duration")]
    pub retry_max: Duration,
}

fn d_forward_batch() -> usize {
    512
}

fn d_forward_retry_max() -> Duration {
    Duration::from_secs(30)
}

/// `audit.forward.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardFormat {
    /// Each record's line from the file, hash included, newline-terminated.
    #[default]
    JsonLines,
    /// RFC 5424 syslog messages (facility authpriv, app name `kmipd`, MSGID `audit`, the
    /// record's line as MSG), framed as RFC 6587 non-transparent framing (LF trailer).
    Syslog,
}

/// `[admin]`: the local administration socket that `kmipd admin` connects to (see
/// [`crate::admin`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Listen on the socket while serving (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Path of the Unix domain socket (created mode 0600, removed at shutdown).
    #[serde(default = "d_admin_socket")]
    pub socket: PathBuf,
    /// Where `kmipd admin client revoke` publishes kmipd's CRL of its enrolled clients
    /// ([`crate::clients`]); list the same file in `tls.crls` so that handshakes use it.
    #[serde(default)]
    pub client_crl: Option<PathBuf>,
}

fn d_admin_socket() -> PathBuf {
    PathBuf::from(DEFAULT_ADMIN_SOCKET)
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            socket: d_admin_socket(),
            client_crl: None,
        }
    }
}

/// A configuration that could not be read or is inconsistent. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, a wrong type.
    #[error("configuration {path}{location}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// ` line N` when known.
        location: String,
        /// The parser's message, naming the key.
        message: String,
    },
    /// Keys that parse but do not fit together.
    #[error("configuration {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What to change.
        message: String,
    },
}

impl Config {
    /// Reads, parses, resolves relative paths against the file's directory, and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let base = if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        };
        config.resolve_paths(base);
        config.validate(path)?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Parses TOML text (`path` only names the file in errors). Paths stay as written.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let location = e
                .span()
                .and_then(|s| text.get(..s.start))
                .map(|before| format!(" line {}", before.matches('\n').count() + 1))
                .unwrap_or_default();
            ConfigError::Parse {
                path: path.to_owned(),
                location,
                message: e.message().trim().replace('\n', " "),
            }
        })
    }

    /// Makes every relative path relative to `base` (the configuration file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let t = &mut self.tls;
        fix(&mut t.client_ca);
        for p in [
            &mut t.ecdsa_cert,
            &mut t.ecdsa_key,
            &mut t.rsa_cert,
            &mut t.rsa_key,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        t.crls.iter_mut().for_each(fix);
        fix(&mut self.store.data_dir);
        if let Some(p) = self.store.ca_file.as_mut() {
            fix(p);
        }
        fix(&mut self.audit.path);
        for f in &mut self.audit.forward {
            f.state.iter_mut().chain(f.ca.iter_mut()).for_each(fix);
        }
        if let Some(c) = self.certify.as_mut() {
            fix(&mut c.ca_cert);
            fix(&mut c.ca_key);
        }
        fix(&mut self.admin.socket);
        if let Some(p) = self.admin.client_crl.as_mut() {
            fix(p);
        }
        if let Some(h) = self.hsm.as_mut() {
            h.resolve_relative_to(base);
        }
        for p in &mut self.push {
            p.ca.iter_mut()
                .chain(p.client_cert.iter_mut())
                .chain(p.client_key.iter_mut())
                .for_each(fix);
        }
    }

    /// Checks what serde cannot: pairs of certificate and key, non-zero limits, an HSM for the
    /// durable store.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let t = &self.tls;
        let pair = |c: &Option<PathBuf>, k: &Option<PathBuf>, name: &str| match (c, k) {
            (Some(_), Some(_)) => Ok(true),
            (None, None) => Ok(false),
            _ => Err(invalid(format!(
                "tls.{name}_cert and tls.{name}_key go together: set both or neither"
            ))),
        };
        let ec = pair(&t.ecdsa_cert, &t.ecdsa_key, "ecdsa")?;
        let rsa = pair(&t.rsa_cert, &t.rsa_key, "rsa")?;
        if !ec && !rsa {
            return Err(invalid(
                "no server certificate: set tls.ecdsa_cert/tls.ecdsa_key or tls.rsa_cert/tls.rsa_key"
                    .into(),
            ));
        }
        if t.profile_suites && !t.versions.contains(&TlsVersion::Tls12) {
            return Err(invalid(
                "tls.profile_suites needs \"1.2\" in tls.versions (the profile suites are \
                 TLS 1.2 suites)"
                    .into(),
            ));
        }
        if t.versions.is_empty() {
            return Err(invalid(
                "tls.versions is empty: list \"1.2\" and/or \"1.3\"".into(),
            ));
        }
        let l = &self.limits;
        for (name, v) in [
            ("max_message_size", l.max_message_size),
            ("max_connections", l.max_connections),
            (
                "max_connections_per_identity",
                l.max_connections_per_identity,
            ),
            ("max_batch_items", l.max_batch_items),
            ("max_concurrent_requests", l.max_concurrent_requests),
        ] {
            if v == 0 {
                return Err(invalid(format!("limits.{name} must be at least 1")));
            }
        }
        if l.max_message_size < 8 {
            return Err(invalid(
                "limits.max_message_size must be at least 8 bytes".into(),
            ));
        }
        for (name, d) in [
            ("handshake_timeout", l.handshake_timeout),
            ("idle_timeout", l.idle_timeout),
            ("io_timeout", l.io_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(format!("limits.{name} must be longer than 0")));
            }
        }
        if self.store.cache_capacity_mb == 0 {
            return Err(invalid("store.cache_capacity_mb must be at least 1".into()));
        }
        self.validate_postgres().map_err(invalid)?;
        let backend = self.store.backend;
        if backend != StoreBackend::Memory {
            match &self.hsm {
                None => {
                    return Err(invalid(format!(
                        "store.backend = \"{}\" needs an [hsm] table: the master key wraps \
                         the key encryption key",
                        backend.name()
                    )));
                }
                Some(h) => h.validate().map_err(|e| invalid(format!("[hsm]: {e}")))?,
            }
        }
        if self.admin.enabled && self.admin.socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(invalid(format!(
                "admin.socket {} is longer than {MAX_SOCKET_PATH} bytes (the Unix socket limit): \
                 choose a shorter path",
                self.admin.socket.display()
            )));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid(format!("log.level {:?}: {e}", self.log.level)))?;
        self.role_assignments().validate().map_err(invalid)?;
        self.credentials().validate().map_err(invalid)?;
        self.issuing_ca().map_err(invalid)?;
        self.policy().map_err(invalid)?;
        self.dual_control_commands().map_err(invalid)?;
        self.validate_forward().map_err(invalid)?;
        self.validate_push().map_err(invalid)?;
        if self.rotation.check_every.is_zero() {
            return Err(invalid("rotation.check_every must be longer than 0".into()));
        }
        Ok(())
    }
}

impl Config {
    /// The PostgreSQL keys: required with the backend, refused without it.
    /// `[[push]]`: names well-formed and unique, a client certificate and key in pairs (or the
    /// server's own), something to send, a version kmipd speaks, non-zero bounds.
    fn validate_push(&self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        for p in &self.push {
            let n = p.destination();
            if n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return Err(format!(
                    "push: destination name {n:?}: letters, digits, '.', '_' and '-' only \
                     (set push.name)"
                ));
            }
            if !names.insert(n.to_owned()) {
                return Err(format!("push: two destinations named {n:?}"));
            }
            if p.client_cert.is_some() != p.client_key.is_some() {
                return Err(format!("push {n}: client_cert and client_key go together"));
            }
            if p.client_cert.is_none()
                && self.tls.ecdsa_cert.is_none()
                && self.tls.rsa_cert.is_none()
            {
                return Err(format!("push {n}: no client certificate (set client_cert)"));
            }
            if p.events.is_empty() {
                return Err(format!("push {n}: events is empty"));
            }
            if p.queue == 0 || p.attempts == 0 || p.timeout.is_zero() {
                return Err(format!(
                    "push {n}: queue, attempts and timeout must be above 0"
                ));
            }
            p.protocol_version()?;
            if !p.address.contains(':') {
                return Err(format!(
                    "push {n}: address {:?}: expected HOST:PORT",
                    p.address
                ));
            }
        }
        Ok(())
    }

    /// The engine's subscriptions of `[[push]]`, each identity with the role and scope
    /// `[roles]` gives it.
    pub fn push_subscriptions(&self) -> Result<Vec<kmipd_ops::push::Subscription>, String> {
        let roles = self.role_assignments();
        self.push
            .iter()
            .map(|p| {
                Ok(kmipd_ops::push::Subscription {
                    destination: p.destination().to_owned(),
                    principal: roles
                        .principal(&kmipd_ops::access::CertNames::identity(&p.identity)),
                    put: p.events.contains(&PushEvent::Put),
                    notify: p.events.contains(&PushEvent::Notify),
                    version: p.protocol_version()?,
                })
            })
            .collect()
    }

    /// `[[audit.forward]]`: names well-formed, and required and unique when there are several;
    /// no two destinations share a state file.
    fn validate_forward(&self) -> Result<(), String> {
        let all = &self.audit.forward;
        let mut names = std::collections::BTreeSet::new();
        let mut states = std::collections::BTreeSet::new();
        for f in all {
            match &f.name {
                Some(n) => {
                    if n.is_empty()
                        || !n
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                    {
                        return Err(format!(
                            "audit.forward: name {n:?}: letters, digits, '.', '_' and '-' only"
                        ));
                    }
                    if !names.insert(n.clone()) {
                        return Err(format!("audit.forward: two destinations named {n:?}"));
                    }
                }
                None if all.len() > 1 => {
                    return Err(format!(
                        "audit.forward: with several destinations each needs a name ({} has none)",
                        f.address
                    ));
                }
                None => {}
            }
            let state = crate::audit::forward::state_path(f, &self.audit.path);
            if !states.insert(state.clone()) {
                return Err(format!(
                    "audit.forward: two destinations share the state file {}",
                    state.display()
                ));
            }
        }
        Ok(())
    }

    fn validate_postgres(&self) -> Result<(), String> {
        let st = &self.store;
        if st.backend != StoreBackend::Postgres {
            let set = [
                ("url", st.url.is_some()),
                ("ca_file", st.ca_file.is_some()),
                ("pool_size", st.pool_size != kmipd_store::DEFAULT_POOL_SIZE),
                (
                    "statement_timeout_ms",
                    st.statement_timeout_ms != DEFAULT_STATEMENT_TIMEOUT_MS,
                ),
                (
                    "connect_timeout_ms",
                    st.connect_timeout_ms != DEFAULT_CONNECT_TIMEOUT_MS,
                ),
                ("deadline_ms", st.deadline_ms != DEFAULT_DEADLINE_MS),
            ];
            if let Some((key, _)) = set.iter().find(|(_, s)| *s) {
                return Err(format!(
                    "store.{key} is for store.backend = \"postgres\" (the backend is \"{}\")",
                    st.backend.name()
                ));
            }
            return Ok(());
        }
        let url = st.url.as_deref().unwrap_or_default().trim();
        if url.is_empty() {
            return Err("store.backend = \"postgres\" needs store.url, e.g. \
                 \"postgresql://kmipd@db1:5432,db2:5432/kmipd?target_session_attrs=read-write\""
                .into());
        }
        let uri = url.starts_with("postgresql://") || url.starts_with("postgres://");
        if !uri && !url.contains('=') {
            return Err("store.url must be a postgresql:// URL or a libpq key=value string".into());
        }
        if st.pool_size == 0 {
            return Err("store.pool_size must be at least 1".into());
        }
        for (key, ms) in [
            ("statement_timeout_ms", st.statement_timeout_ms),
            ("connect_timeout_ms", st.connect_timeout_ms),
            ("deadline_ms", st.deadline_ms),
        ] {
            if ms == 0 {
                return Err(format!("store.{key} must be at least 1"));
            }
        }
        if st.deadline_ms < st.statement_timeout_ms {
            return Err(format!(
                "store.deadline_ms ({}) is shorter than store.statement_timeout_ms ({}): a \
                 request's store deadline must leave room for one statement",
                st.deadline_ms, st.statement_timeout_ms
            ));
        }
        Ok(())
    }
}

/// Durations as strings with a unit: `ms`, `s`, `m`, `h` (`"250ms"`, `"10s"`, `"5m"`).
pub mod duration {
    use super::*;

    /// Parses `"<integer><unit>"`.
    pub fn parse(s: &str) -> Result<Duration, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("duration {s:?} has no unit (ms, s, m or h)"))?;
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("duration {s:?} does not start with a whole number"))?;
        let secs = |mult: u64| {
            n.checked_mul(mult)
                .map(Duration::from_secs)
                .ok_or_else(|| format!("duration {s:?} is too long"))
        };
        match unit {
            "ms" => Ok(Duration::from_millis(n)),
            "s" => secs(1),
            "m" => secs(60),
            "h" => secs(3600),
            "d" => secs(86_400),
            _ => Err(format!("duration {s:?}: unit must be ms, s, m, h or d")),
        }
    }

    /// Formats as the largest unit that divides the duration exactly.
    pub fn format(d: &Duration) -> String {
        let ms = d.as_millis();
        if !ms.is_multiple_of(1000) {
            return format!("{ms}ms");
        }
        let s = d.as_secs();
        if s != 0 && s.is_multiple_of(86_400) {
            format!("{}d", s / 86_400)
        } else if s != 0 && s.is_multiple_of(3600) {
            format!("{}h", s / 3600)
        } else if s != 0 && s.is_multiple_of(60) {
            format!("{}m", s / 60)
        } else {
            format!("{s}s")
        }
    }

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[tls]
client_ca = "certs/ca.pem"
ecdsa_cert = "certs/server-ec.pem"
ecdsa_key = "certs/server-ec.key"

[store]
backend = "memory"
"#;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("test.toml"))
    }

    #[test]
    fn the_issuing_ca_is_read_and_checked_and_absent_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let ca = kmipd_ops::issuing::generate_rsa("issuing").unwrap();
        let (cert, key) = ca.to_pem().unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert).unwrap();
        std::fs::write(dir.path().join("ca.key"), key.as_bytes()).unwrap();
        // Another key than the certificate's.
        let (_, other) = kmipd_ops::issuing::generate_rsa("other")
            .unwrap()
            .to_pem()
            .unwrap();
        std::fs::write(dir.path().join("other.key"), other.as_bytes()).unwrap();
        assert!(parse(MINIMAL).unwrap().issuing_ca().unwrap().is_none());
        let with = |key: &str, days: &str| {
            let mut c = parse(&format!(
                "{MINIMAL}\n[certify]\nca_cert = \"ca.pem\"\nca_key = \"{key}\"\n{days}"
            ))
            .unwrap();
            c.resolve_paths(dir.path());
            c
        };
        let c = with("ca.key", "");
        assert_eq!(c.certify.as_ref().unwrap().days, 365);
        assert_eq!(c.issuing_ca().unwrap().unwrap().days(), 365);
        c.validate(Path::new("t")).unwrap();
        for (key, days, needle) in [
            ("other.key", "", "does not belong"),
            ("missing.key", "", "missing.key"),
            ("ca.key", "days = 0", "1 to 3650"),
        ] {
            let err = with(key, days).issuing_ca().unwrap_err();
            assert!(err.contains(needle), "{err}");
            assert!(with(key, days).validate(Path::new("t")).is_err());
        }
    }

    #[test]
    fn minimal_config_takes_the_defaults() {
        let c = parse(MINIMAL).unwrap();
        c.validate(Path::new("t")).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.limits, LimitsConfig::default());
        assert_eq!(c.tls.client_eku, EkuPolicy::Require);
        assert_eq!(c.identity.source, IdentitySource::Cn);
        assert!(c.metrics.is_none());
        assert_eq!(c.tls.versions, vec![TlsVersion::Tls12, TlsVersion::Tls13]);
        assert!(c.admin.enabled);
        assert_eq!(c.admin.socket, Path::new(DEFAULT_ADMIN_SOCKET));
    }

    #[test]
    fn credentials_are_read_and_unusable_ones_refused() {
        let hash = kmipd_ops::credentials::hash_password("pw", 64, 1).unwrap();
        let c = parse(&format!(
            "{MINIMAL}\n[[credentials.users]]\nusername = \"fred\"\npassword_hash = \"{hash}\"\n\
             [[credentials.devices]]\nname = \"d\"\ndevice_identifier = \"dev-7\"\n"
        ))
        .unwrap();
        c.validate(Path::new("t")).unwrap();
        let creds = c.credentials();
        assert_eq!(creds.users.len(), 1);
        assert_eq!(creds.users[0].username, "fred");
        assert_eq!(creds.devices[0].device_identifier.as_deref(), Some("dev-7"));
        assert!(parse(MINIMAL).unwrap().credentials().is_empty());
        let plain = parse(&format!(
            "{MINIMAL}\n[[credentials.users]]\nusername = \"fred\"\npassword_hash = \"pw\"\n"
        ))
        .unwrap();
        let e = plain.validate(Path::new("t")).unwrap_err().to_string();
        assert!(e.contains("fred"), "{e}");
        let e = parse(&format!(
            "{MINIMAL}\n[[credentials.users]]\nusername = \"f\"\npassword = \"x\"\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `password`"), "{e}");
    }

    #[test]
    fn the_admin_table_rejects_unknown_keys_and_long_paths() {
        let c = parse(&format!(
            "{MINIMAL}\n[admin]\nsocket = \"/run/kmipd/admin.sock\"\n"
        ))
        .unwrap();
        assert_eq!(c.admin.socket, Path::new("/run/kmipd/admin.sock"));
        let e = parse(&format!("{MINIMAL}\n[admin]\nsokcet = \"x\"\n")).unwrap_err();
        assert!(e.to_string().contains("unknown field `sokcet`"), "{e}");
        let long = format!("/{}", "a".repeat(120));
        let c = parse(&format!("{MINIMAL}\n[admin]\nsocket = \"{long}\"\n")).unwrap();
        let e = c.validate(Path::new("t")).unwrap_err().to_string();
        assert!(e.contains("admin.socket"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected_by_name_with_their_line() {
        let e = parse(&format!("{MINIMAL}\n[limits]\nmax_conections = 3\n")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("unknown field `max_conections`"), "{msg}");
        assert!(msg.contains("line 11"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
        let e = parse(&format!("colour = 1\n{MINIMAL}")).unwrap_err();
        assert!(e.to_string().contains("unknown field `colour`"), "{e}");
        let e = parse(&MINIMAL.replace("[store]", "[store]\ndatadir = \"x\"")).unwrap_err();
        assert!(e.to_string().contains("`datadir`"), "{e}");
    }

    #[test]
    fn the_store_cache_capacity_parses_and_defaults_to_64_mib() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.store.cache_capacity_mb, 64);
        assert_eq!(c.store.sled_options(), kmipd_store::SledOptions::default());
        let c = parse(&MINIMAL.replace("[store]", "[store]\ncache_capacity_mb = 16")).unwrap();
        c.validate(Path::new("t")).unwrap();
        assert_eq!(c.store.cache_capacity_mb, 16);
        assert_eq!(c.store.sled_options().cache_capacity_bytes(), 16 << 20);
        let e = parse(&MINIMAL.replace("[store]", "[store]\ncache_capacity = 16")).unwrap_err();
        assert!(
            e.to_string().contains("unknown field `cache_capacity`"),
            "{e}"
        );
        assert!(parse(&MINIMAL.replace("[store]", "[store]\ncache_capacity_mb = -1")).is_err());
        let c = parse(&MINIMAL.replace("[store]", "[store]\ncache_capacity_mb = 0")).unwrap();
        let e = c.validate(Path::new("t")).unwrap_err().to_string();
        assert!(e.contains("store.cache_capacity_mb"), "{e}");
    }

    #[test]
    fn the_object_cache_bounds_parse_default_and_0_disables() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(
            (c.store.object_cache_entries, c.store.object_cache_mb),
            (10_000, 32)
        );
        let c = parse(&MINIMAL.replace(
            "[store]",
            "[store]\nobject_cache_entries = 0\nobject_cache_mb = 8",
        ))
        .unwrap();
        c.validate(Path::new("t")).unwrap();
        let o = c.store.sled_options();
        assert_eq!(
            (o.object_cache_entries, o.object_cache_bytes()),
            (0, 8 << 20)
        );
    }

    #[test]
    fn durations_and_enums_parse() {
        let c = parse(&format!(
            "{MINIMAL}\n[limits]\nidle_timeout = \"250ms\"\nhandshake_timeout = \"2m\"\n\
             [identity]\nsource = \"san-dns\"\nadministrators = [\"admin\"]\n[log]\nformat = \"json\"\n"
        ))
        .unwrap();
        assert_eq!(c.limits.idle_timeout, Duration::from_millis(250));
        assert_eq!(c.limits.handshake_timeout, Duration::from_secs(120));
        assert_eq!(c.identity.source, IdentitySource::SanDns);
        assert_eq!(c.log.format, LogFormat::Json);
        let e = parse(&format!("{MINIMAL}\n[limits]\nidle_timeout = 5\n")).unwrap_err();
        assert!(
            e.to_string().contains("idle_timeout") || e.to_string().contains("string"),
            "{e}"
        );
        let e = parse(&format!("{MINIMAL}\n[limits]\nidle_timeout = \"5 days\"\n")).unwrap_err();
        assert!(e.to_string().contains("unit"), "{e}");
        for d in ["250ms", "10s", "5m", "2h", "0s"] {
            assert_eq!(duration::format(&duration::parse(d).unwrap()), d);
        }
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        let c = parse(&MINIMAL.replace("ecdsa_key = \"certs/server-ec.key\"", "")).unwrap();
        let e = c.validate(Path::new("t")).unwrap_err().to_string();
        assert!(e.contains("tls.ecdsa_cert and tls.ecdsa_key"), "{e}");
        let c = parse(&MINIMAL.replace("backend = \"memory\"", "")).unwrap();
        let e = c.validate(Path::new("t")).unwrap_err().to_string();
        assert!(e.contains("[hsm]"), "{e}");
        let c = parse(&format!("{MINIMAL}\n[limits]\nmax_batch_items = 0\n")).unwrap();
        let e = c.validate(Path::new("t")).unwrap_err().to_string();
        assert!(e.contains("limits.max_batch_items"), "{e}");
    }

    const HSM: &str = "\n[hsm]\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"kmipd\"\n\
        key_label = \"kmipd-master\"\npin_env = \"KMIPD_PIN\"\n";

    #[test]
    fn the_postgres_backend_takes_its_keys_and_checks_them() {
        let pg = MINIMAL.replace(
            "backend = \"memory\"",
            "backend = \"postgres\"\nurl = \"postgresql://kmipd@db1,db2/kmipd?target_session_attrs=read-write\"\n\
             ca_file = \"certs/pg-ca.pem\"\npool_size = 8\nstatement_timeout_ms = 2000\n\
             connect_timeout_ms = 1000\ndeadline_ms = 9000",
        );
        let mut c = parse(&format!("{pg}{HSM}")).unwrap();
        c.validate(Path::new("t")).unwrap();
        assert_eq!(c.store.backend, StoreBackend::Postgres);
        c.resolve_paths(Path::new("/inst"));
        let o = c.store.pg_options().unwrap();
        assert_eq!(o.pool_size, 8);
        assert_eq!(o.statement_timeout, Duration::from_secs(2));
        assert_eq!(o.connect_timeout, Duration::from_secs(1));
        assert_eq!(o.deadline, Duration::from_secs(9));
        assert_eq!(
            o.ca_file.as_deref(),
            Some(Path::new("/inst/certs/pg-ca.pem"))
        );
        // Round trip.
        let again = parse(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        // The [hsm] table is required, as for sled.
        let e = parse(&pg).unwrap().validate(Path::new("t")).unwrap_err();
        assert!(
            e.to_string().contains("\"postgres\" needs an [hsm] table"),
            "{e}"
        );
        // A missing URL, zero sizes, a deadline shorter than a statement.
        let cases = [
            (
                "url = \"postgresql://kmipd@db1,db2/kmipd?target_session_attrs=read-write\"",
                "",
                "needs store.url",
            ),
            (
                "url = \"postgresql://kmipd@db1,db2/kmipd?target_session_attrs=read-write\"",
                "url = \"db1\"",
                "postgresql:// URL",
            ),
            ("pool_size = 8", "pool_size = 0", "store.pool_size"),
            (
                "deadline_ms = 9000",
                "deadline_ms = 0",
                "store.deadline_ms must",
            ),
            (
                "deadline_ms = 9000",
                "deadline_ms = 1000",
                "shorter than store.statement_timeout_ms",
            ),
        ];
        for (from, to, want) in cases {
            let c = parse(&format!("{}{HSM}", pg.replace(from, to))).unwrap();
            let e = c.validate(Path::new("t")).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        // PostgreSQL keys with another backend are a mistake, named.
        let c = parse(&MINIMAL.replace("[store]", "[store]\nurl = \"postgresql://x/y\"")).unwrap();
        let e = c.validate(Path::new("t")).unwrap_err().to_string();
        assert!(
            e.contains("store.url is for store.backend = \"postgres\""),
            "{e}"
        );
        let e = parse(&MINIMAL.replace("[store]", "[store]\npool_sise = 3")).unwrap_err();
        assert!(e.to_string().contains("pool_sise"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let mut c = parse(MINIMAL).unwrap();
        c.resolve_paths(Path::new("/inst"));
        assert_eq!(c.tls.client_ca, Path::new("/inst/certs/ca.pem"));
        assert_eq!(c.store.data_dir, Path::new("/inst/data"));
        assert_eq!(c.admin.socket, Path::new("/inst/admin.sock"));
    }

    #[test]
    fn dual_control_groups_and_window() {
        let c = parse(&format!(
            "{MINIMAL}\n[policy]\ndual_control_groups = [\"vault\"]\ndual_control_window = \"30m\"\n"
        ))
        .unwrap();
        let p = c.policy().unwrap();
        assert_eq!(p.dual_control_groups, vec!["vault".to_owned()]);
        assert_eq!(p.dual_control_window, Some(1_800));
        assert_eq!(
            parse(MINIMAL)
                .unwrap()
                .policy()
                .unwrap()
                .dual_control_window,
            None
        );
        for (bad, named) in [
            ("dual_control_window = \"0s\"", "policy.dual_control_window"),
            ("dual_control_groups = [\"\"]", "policy.dual_control_groups"),
        ] {
            let e = parse(&format!("{MINIMAL}\n[policy]\n{bad}\n"))
                .unwrap()
                .policy()
                .unwrap_err();
            assert!(e.contains(named), "{e}");
        }
    }

    #[test]
    fn one_forward_table_or_several_named_destinations() {
        let one = parse(&format!(
            "{MINIMAL}\n[audit.forward]\naddress = \"tcp:127.0.0.1:514\"\n"
        ))
        .unwrap();
        assert_eq!(one.audit.forward.len(), 1);
        assert_eq!(one.audit.forward[0].name, None);
        let two = parse(&format!(
            "{MINIMAL}\n[[audit.forward]]\nname = \"siem\"\naddress = \"tcp:127.0.0.1:514\"\n\
             [[audit.forward]]\nname = \"archive\"\nformat = \"syslog\"\naddress = \"unix:/run/a.sock\"\n"
        ))
        .unwrap();
        assert_eq!(two.audit.forward.len(), 2);
        assert_eq!(two.audit.forward[1].format, ForwardFormat::Syslog);
        two.validate_forward().unwrap();
        // What check-config prints reads back the same.
        let again = parse(&toml::to_string(&two).unwrap()).unwrap();
        assert_eq!(again.audit.forward, two.audit.forward);
        for (bad, says) in [
            (
                "[[audit.forward]]\naddress = \"tcp:a:1\"\n[[audit.forward]]\nname = \"b\"\naddress = \"tcp:b:1\"\n",
                "each needs a name",
            ),
            (
                "[[audit.forward]]\nname = \"a\"\naddress = \"tcp:a:1\"\n[[audit.forward]]\nname = \"a\"\naddress = \"tcp:b:1\"\n",
                "two destinations named",
            ),
            (
                "[[audit.forward]]\nname = \"a/b\"\naddress = \"tcp:a:1\"\n",
                "letters, digits",
            ),
            (
                "[[audit.forward]]\nname = \"a\"\nstate = \"/s\"\naddress = \"tcp:a:1\"\n[[audit.forward]]\nname = \"b\"\nstate = \"/s\"\naddress = \"tcp:b:1\"\n",
                "share the state file",
            ),
        ] {
            let e = parse(&format!("{MINIMAL}\n{bad}"))
                .unwrap()
                .validate_forward()
                .unwrap_err();
            assert!(e.contains(says), "{e}");
        }
        // A mistake inside a destination is named.
        let e = parse(&format!(
            "{MINIMAL}\n[audit.forward]\naddress = \"tcp:a:1\"\nbatchsize = 3\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("batchsize"), "{e}");
    }

    #[test]
    fn dual_control_commands_are_checked() {
        let c = parse(&format!(
            "{MINIMAL}\n[policy]\ndual_control_commands = [\"rotate-kek\", \"restore\"]\n"
        ))
        .unwrap();
        assert_eq!(
            c.dual_control_commands().unwrap(),
            vec!["rotate-kek".to_owned(), "restore".to_owned()]
        );
        let c = parse(&format!(
            "{MINIMAL}\n[policy]\ndual_control_commands = [\"backup\"]\n"
        ))
        .unwrap();
        let e = c.dual_control_commands().unwrap_err();
        assert!(e.contains("unknown command \"backup\""), "{e}");
    }

    #[test]
    fn the_policy_is_the_recommended_one_by_default_and_names_a_wrong_name() {
        use kmipd_proto::enums::{cryptographic_algorithm as alg, object_type as ot};
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.policy().unwrap(), kmipd_ops::Policy::recommended());
        let off = parse(&format!(
            "{MINIMAL}\n[policy]\nenforce_algorithms = false\n"
        ))
        .unwrap();
        assert_eq!(off.policy().unwrap(), kmipd_ops::Policy::unrestricted());
        let custom = parse(&format!(
            "{MINIMAL}\n[policy]\n[[policy.allow]]\nalgorithm = \"AES\"\nobject_types = [\"SymmetricKey\"]\n\
             lengths = [256]\n[policy.usage_mask]\nSymmetricKey = [\"Encrypt\", \"WrapKey\"]\n\
             [policy.crypto_period]\nSymmetricKey = \"90d\"\n"
        ))
        .unwrap();
        let p = custom.policy().unwrap();
        let rules = p.allow.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].algorithm, alg::AES);
        assert_eq!(rules[0].object_types, vec![ot::SYMMETRIC_KEY]);
        assert_eq!(p.usage_masks, vec![(ot::SYMMETRIC_KEY, 0x04 | 0x10)]);
        assert_eq!(p.crypto_periods, vec![(ot::SYMMETRIC_KEY, 90 * 86_400)]);
        for (bad, named) in [
            (
                "[[policy.allow]]\nalgorithm = \"AES256\"",
                "unknown Cryptographic Algorithm \"AES256\"",
            ),
            (
                "[[policy.allow]]\nalgorithm = \"EC\"\ncurves = [\"P-256\"]",
                "unknown curve \"P-256\"",
            ),
            (
                "[policy.usage_mask]\nSymmetricKey = [\"Encrypts\"]",
                "\"Encrypts\"",
            ),
            (
                "[policy.crypto_period]\nSymetricKey = \"1d\"",
                "unknown Object Type \"SymetricKey\"",
            ),
            (
                "[policy.crypto_period]\nSymmetricKey = \"1y\"",
                "policy.crypto_period.SymmetricKey",
            ),
        ] {
            let c = parse(&format!("{MINIMAL}\n[policy]\n{bad}\n")).unwrap();
            let e = c.validate(Path::new("t")).unwrap_err().to_string();
            assert!(e.contains(named), "{e}");
        }
    }

    #[test]
    fn the_console_is_off_unless_its_table_is_present() {
        assert_eq!(parse(MINIMAL).unwrap().console, None);
        let c = parse(&format!("{MINIMAL}\n[console]\n")).unwrap();
        assert_eq!(
            c.console.map(|c| c.listen.to_string()),
            Some(DEFAULT_CONSOLE_LISTEN.to_owned())
        );
        let c = parse(&format!(
            "{MINIMAL}\n[console]\nlisten = \"0.0.0.0:8443\"\n"
        ))
        .unwrap();
        assert_eq!(c.console.map(|c| c.listen.port()), Some(8443));
        let e = parse(&format!("{MINIMAL}\n[console]\nport = 1\n")).unwrap_err();
        assert!(e.to_string().contains("port"), "{e}");
    }

    #[test]
    fn push_destinations_take_defaults_and_are_checked() {
        let table = "\n[[push]]\nidentity = \"agent\"\naddress = \"127.0.0.1:7000\"\n";
        let c = parse(&format!("{MINIMAL}{table}")).unwrap();
        let p = &c.push[0];
        assert_eq!(p.destination(), "agent");
        assert_eq!(p.events, [PushEvent::Put, PushEvent::Notify]);
        assert_eq!((p.queue, p.attempts), (1024, 5));
        assert_eq!(p.protocol_version(), Ok(None));
        let subscriptions = c.push_subscriptions().unwrap();
        assert_eq!(subscriptions[0].principal.name(), "agent");
        assert!(subscriptions[0].put && subscriptions[0].notify);
        for (extra, wrong) in [
            (format!("{table}{table}"), "two destinations"),
            (format!("{table}version = \"1.9\"\n"), "push.version"),
            (format!("{table}events = []\n"), "events is empty"),
            (format!("{table}client_cert = \"x.pem\"\n"), "go together"),
        ] {
            let c = parse(&format!("{MINIMAL}{extra}")).unwrap();
            let e = c.validate(Path::new("/etc/kmipd/kmipd.toml")).unwrap_err();
            assert!(e.to_string().contains(wrong), "{wrong}: {e}");
        }
    }

    #[test]
    fn the_example_config_in_docs_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/kmipd.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let c = Config::parse(&text, &path).unwrap();
        c.validate(&path).unwrap();
        assert!(c.metrics.is_some(), "the example shows the metrics table");
        assert!(c.hsm.is_some(), "the example shows the hsm table");
        // Serializing and parsing again gives the same configuration.
        let again = Config::parse(&toml::to_string(&c).unwrap(), &path).unwrap();
        assert_eq!(again, c);
    }
}
