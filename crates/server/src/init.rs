//! `kmipd init --dir DIR`: a ready development instance.
//!
//! ```text
//! DIR/kmipd.toml                      the configuration (relative paths: DIR may be served from anywhere)
//! DIR/certs/ca.pem, ca.key            the development CA (ca.key lets tests issue more certificates)
//! DIR/certs/server-ec.pem/.key        ECDSA P-256 server certificate, SAN localhost + 127.0.0.1
//! DIR/certs/server-rsa.pem/.key       RSA-2048 server certificate, same SANs
//! DIR/certs/client.pem/.key           client identities (CN client, client2, admin), clientAuth EKU;
//! DIR/certs/client2.pem/.key          admin is listed in identity.administrators
//! DIR/certs/admin.pem/.key
//! DIR/certs/issuing-ca.pem/.key      RSA-2048 CA of Certify and Re-certify ([certify]; not
//!                                     trusted for TLS)
//! DIR/certs/clients.crl               kmipd's CRL of enrolled clients (empty; in tls.crls and
//!                                     admin.client_crl, see crate::clients)
//! DIR/softhsm2.conf, DIR/tokens/      the instance's own SoftHSM2 token with the master key
//! DIR/pin, DIR/so-pin                 its PINs (mode 0600)
//! DIR/data/                           the sled store
//! ```
//!
//! Every certificate is read back with `x509-parser` and checked (SANs, EKU) before `init`
//! reports success, and the written configuration is loaded and validated.
//!
//! **SoftHSM2 and the process environment.** SoftHSM2 reads `SOFTHSM2_CONF` once per process
//! (see `kmipd_hsm::softhsm`), so provisioning needs the process to run with
//! `SOFTHSM2_CONF=DIR/softhsm2.conf`. `kmipd init` arranges that itself (it writes the file,
//! then re-executes with the variable set). A library caller passes [`InitOptions::hsm`] =
//! `false` for an instance with the in-memory store and no HSM (in-process tests), or runs
//! the provisioning in a child process.
//!
//! **A failed init leaves nothing behind.** `DIR` must be absent or empty ([`check_fresh`]).
//! When init fails, what it made is removed: `DIR` itself when init created it, its contents
//! when it existed (empty) before. Across the re-execution the second process cannot tell
//! whether `DIR` existed before the first one ran, so the first leaves a marker file in a
//! directory it creates (removed again when init succeeds). Parent directories that had to be
//! made for `DIR` stay.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::certs::{CertError, ClientOptions, DevCa, KeyKind, inspect_pem};
use crate::config::{Config, ConfigError};

/// The SoftHSM2 token label `init` creates.
pub const DEV_TOKEN_LABEL: &str = "kmipd";
/// The master key label `init` creates.
pub const DEV_KEY_LABEL: &str = "kmipd-master";
/// The client identities `init` issues; the last one is an administrator.
pub const DEV_IDENTITIES: [&str; 3] = ["client", "client2", "admin"];

/// What to make.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Provision a SoftHSM2 token and use the durable sled store (the default). `false`:
    /// no HSM, `store.backend = "memory"` (for in-process tests; nothing persists).
    pub hsm: bool,
    /// The `listen` address written into the configuration.
    pub listen: SocketAddr,
    /// SoftHSM2 library (default: `kmipd_hsm::find_softhsm_module`).
    pub softhsm_module: Option<PathBuf>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            hsm: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 5696)),
            softhsm_module: None,
        }
    }
}

/// A development instance made by [`init_instance`].
#[derive(Debug, Clone)]
pub struct Instance {
    /// The instance directory (absolute).
    pub dir: PathBuf,
    /// `DIR/kmipd.toml`.
    pub config_path: PathBuf,
}

impl Instance {
    /// The instance at `dir` (made earlier by `init`).
    pub fn at(dir: impl Into<PathBuf>) -> Instance {
        let dir = dir.into();
        Instance {
            config_path: dir.join("kmipd.toml"),
            dir,
        }
    }

    /// `DIR/certs/<name>.pem` (e.g. `ca`, `client`, `server-ec`).
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join("certs").join(format!("{name}.pem"))
    }

    /// `DIR/certs/<name>.key`.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join("certs").join(format!("{name}.key"))
    }

    /// The development CA, read back (to issue more certificates or CRLs in tests).
    pub fn ca(&self) -> Result<DevCa, InitError> {
        let read = |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| io(&p, e));
        Ok(DevCa::from_pem(
            &read(self.cert("ca"))?,
            &read(self.key("ca"))?,
        )?)
    }

    /// Issues a client certificate (clientAuth, subject CN = the name) by `ca` for each of
    /// `names` into `certs/NAME.pem` and `certs/NAME.key` (mode 0600), each checked: `init`'s
    /// [`DEV_IDENTITIES`], and the further identities a test gives roles to.
    pub fn issue_clients(&self, ca: &DevCa, names: &[&str]) -> Result<(), InitError> {
        for &name in names {
            let issued = ca.issue_client(name, &ClientOptions::default())?;
            let s = inspect_pem(&issued.cert_pem)?;
            if s.subject_cn.as_deref() != Some(name) || !s.client_auth {
                return Err(InitError::CertCheck(name.into(), format!("{s:?}")));
            }
            write_file(&self.cert(name), &issued.cert_pem, false)?;
            write_file(&self.key(name), &issued.key_pem, true)?;
        }
        Ok(())
    }

    /// The configuration, loaded and validated.
    pub fn config(&self) -> Result<Config, ConfigError> {
        Config::load(&self.config_path)
    }
}

/// Why `init` failed. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The directory already holds something.
    #[error(
        "{0} is not empty: kmipd init refuses to overwrite an existing instance (choose a new directory)"
    )]
    NotEmpty(PathBuf),
    /// Filesystem failure.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// Certificate generation.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// A generated certificate is not what it should be (a bug).
    #[error("generated certificate {0} failed its check: {1}")]
    CertCheck(String, String),
    /// SoftHSM2 provisioning.
    #[error(transparent)]
    Hsm(#[from] kmipd_hsm::HsmError),
    /// The written configuration does not load (a bug).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

fn io(path: &Path, source: std::io::Error) -> InitError {
    InitError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Marks an instance directory that init created (see the module docs).
const MADE_BY_INIT: &str = ".kmipd-init-made-this-directory";

/// Fails unless `dir` is absent or empty. What `kmipd init` writes before re-executing itself
/// (`softhsm2.conf`, an empty `tokens/`, the marker of a directory it created) is tolerated.
pub fn check_fresh(dir: &Path) -> Result<(), InitError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = entry.file_name();
        let ok = if name == "softhsm2.conf" || name == MADE_BY_INIT {
            true
        } else if name == "tokens" {
            std::fs::read_dir(entry.path())
                .map(|mut d| d.next().is_none())
                .unwrap_or(false)
        } else {
            false
        };
        if !ok {
            return Err(InitError::NotEmpty(dir.to_owned()));
        }
    }
    Ok(())
}

fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), InitError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| io(path, e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io(path, e))
}

fn mkdir(path: &Path, mode: u32) -> Result<(), InitError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| io(path, e))
}

/// Makes a development instance in `dir` with the default options (SoftHSM2 token, sled
/// store); see the module docs for the environment SoftHSM2 needs.
pub fn init_instance(dir: &Path) -> Result<Instance, InitError> {
    init_instance_with(dir, &InitOptions::default())
}

/// Makes a development instance in `dir`. When it fails after `dir` was found fresh, what it
/// made is removed again (the directory too, when init created it), so that the same command
/// can simply be run again.
pub fn init_instance_with(dir: &Path, opts: &InitOptions) -> Result<Instance, InitError> {
    check_fresh(dir)?;
    let existed = existed_before_init(dir);
    let made = make_instance(dir, opts);
    match &made {
        Ok(_) => {
            // Only a directory made by `kmipd init` has one; it was already tolerated.
            let _ = std::fs::remove_file(dir.join(MADE_BY_INIT));
        }
        Err(_) => remove_partial(dir, existed),
    }
    made
}

/// `dir` exists and was not created by this init (nor by the `kmipd init` that re-executed
/// into this process).
fn existed_before_init(dir: &Path) -> bool {
    dir.exists() && !dir.join(MADE_BY_INIT).exists()
}

/// `kmipd init`'s first step with an HSM: makes sure this process runs with the instance's
/// `SOFTHSM2_CONF`. Writes `DIR/softhsm2.conf` and `DIR/tokens/` (creating `DIR`, marked, when
/// absent), then returns if the process already runs with it, or re-executes the process with
/// the variable set (and so returns only on failure). On failure what it made is removed.
/// Call it before any thread is started.
pub fn softhsm_env(dir: &Path) -> Result<(), InitError> {
    check_fresh(dir)?;
    let existed = existed_before_init(dir);
    let result = (|| {
        if !dir.exists() {
            mkdir(dir, 0o700)?;
            write_file(
                &dir.join(MADE_BY_INIT),
                "kmipd init created this directory; a failed init removes it.\n",
                false,
            )?;
        }
        let conf = kmipd_hsm::write_softhsm_conf(dir)?;
        kmipd_hsm::ensure_softhsm_env(&conf)?;
        Ok(())
    })();
    if result.is_err() {
        remove_partial(dir, existed);
    }
    result
}

/// Removes a failed init's files: `dir` itself unless it `existed` before init, else its
/// contents. `dir` held nothing but what this init (or the `kmipd init` that re-executed into
/// it) wrote: [`check_fresh`] said so before anything was made.
fn remove_partial(dir: &Path, existed: bool) {
    if !existed {
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let _ = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

fn make_instance(dir: &Path, opts: &InitOptions) -> Result<Instance, InitError> {
    mkdir(dir, 0o700)?;
    let dir = dir.canonicalize().map_err(|e| io(dir, e))?;
    let inst = Instance::at(&dir);
    let certs = dir.join("certs");
    mkdir(&certs, 0o700)?;

    let ca = DevCa::generate("kmipd development CA")?;
    write_file(&inst.cert("ca"), ca.cert_pem(), false)?;
    write_file(&inst.key("ca"), ca.key_pem(), true)?;
    // kmipd's CRL of its enrolled clients (crate::clients), empty until a revocation.
    write_file(&certs.join("clients.crl"), &ca.crl(&[])?, false)?;
    for (name, kind, alg) in [
        ("server-ec", KeyKind::EcdsaP256, "EC"),
        ("server-rsa", KeyKind::Rsa2048, "RSA"),
    ] {
        let issued = ca.issue_server(kind, &[])?;
        let s = inspect_pem(&issued.cert_pem)?;
        let sans_ok = s.dns_names.iter().any(|d| d == "localhost")
            && s.ip_addresses
                .contains(&std::net::IpAddr::from([127, 0, 0, 1]));
        if !sans_ok || !s.server_auth || s.key_algorithm != alg {
            return Err(InitError::CertCheck(name.into(), format!("{s:?}")));
        }
        write_file(&inst.cert(name), &issued.cert_pem, false)?;
        write_file(&inst.key(name), &issued.key_pem, true)?;
    }
    inst.issue_clients(&ca, &DEV_IDENTITIES)?;
    // The issuing CA of Certify and Re-certify: its own CA, never the client CA above (a
    // certificate any client can obtain must not open a TLS connection to kmipd).
    let issuing = kmipd_ops::issuing::generate_rsa("kmipd issuing CA")
        .and_then(|ca| ca.to_pem())
        .map_err(|e| InitError::CertCheck("issuing-ca".into(), e.to_string()))?;
    write_file(&inst.cert("issuing-ca"), &issuing.0, false)?;
    write_file(&inst.key("issuing-ca"), &issuing.1, true)?;
    mkdir(&dir.join("data"), 0o700)?;

    let (store, hsm) = if opts.hsm {
        let p = kmipd_hsm::provision_softhsm(
            &dir,
            DEV_TOKEN_LABEL,
            DEV_KEY_LABEL,
            opts.softhsm_module.as_deref(),
        )?;
        let module = p.config.module.display().to_string();
        (
            "backend = \"sled\"\ndata_dir = \"data\"\n".to_owned(),
            format!(
                "\n# The instance's own SoftHSM2 token; kmipd sets SOFTHSM2_CONF itself.\n\
                 [hsm]\nmodule = {module:?}\ntoken_label = {DEV_TOKEN_LABEL:?}\n\
                 key_label = {DEV_KEY_LABEL:?}\npin_file = \"pin\"\n\
                 softhsm2_conf = \"softhsm2.conf\"\n"
            ),
        )
    } else {
        (
            "# In memory: nothing survives a restart (made by init without an HSM).\n\
             backend = \"memory\"\ndata_dir = \"data\"\n"
                .to_owned(),
            String::new(),
        )
    };
    let text = format!(
        "# kmipd development instance, written by `kmipd init`.\n\
         # Every key is described in docs/configuration.md. Relative paths are relative to\n\
         # this file's directory.\n\
         listen = \"{listen}\"\n\n\
         [tls]\n\
         client_ca = \"certs/ca.pem\"\n\
         ecdsa_cert = \"certs/server-ec.pem\"\n\
         ecdsa_key = \"certs/server-ec.key\"\n\
         rsa_cert = \"certs/server-rsa.pem\"\n\
         rsa_key = \"certs/server-rsa.key\"\n\
         client_eku = \"require\"\n\
         crls = [\"certs/clients.crl\"]\n\n\
         [identity]\n\
         source = \"cn\"\n\
         administrators = [\"admin\"]\n\n\
         [log]\n\
         format = \"text\"\n\
         level = \"info\"\n\n\
         # `kmipd admin client revoke` publishes kmipd's CRL here (docs/clients.md).\n\
         [admin]\n\
         client_crl = \"certs/clients.crl\"\n\n\
         # The CA of Certify and Re-certify (docs/configuration.md); not the client CA.\n\
         [certify]\n\
         ca_cert = \"certs/issuing-ca.pem\"\n\
         ca_key = \"certs/issuing-ca.key\"\n\n\
         # Uncomment for Prometheus metrics on http://127.0.0.1:9696/metrics\n\
         # [metrics]\n\
         # listen = \"127.0.0.1:9696\"\n\n\
         [store]\n\
         {store}{hsm}",
        listen = opts.listen,
    );
    write_file(&inst.config_path, &text, false)?;
    inst.config()?;
    Ok(inst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreBackend;

    #[test]
    fn init_without_hsm_makes_a_loadable_instance_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("inst");
        let opts = InitOptions {
            hsm: false,
            ..InitOptions::default()
        };
        let inst = init_instance_with(&dir, &opts).unwrap();
        let c = inst.config().unwrap();
        assert_eq!(c.store.backend, StoreBackend::Memory);
        assert_eq!(c.identity.administrators, vec!["admin".to_owned()]);
        for name in [
            "ca",
            "server-ec",
            "server-rsa",
            "client",
            "client2",
            "admin",
        ] {
            assert!(inst.cert(name).exists(), "{name}");
            assert!(inst.key(name).exists(), "{name}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(inst.key("client"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let admin = inspect_pem(&std::fs::read_to_string(inst.cert("admin")).unwrap()).unwrap();
        assert!(admin.client_auth);
        assert!(inst.ca().is_ok());
        let e = init_instance_with(&dir, &opts).unwrap_err();
        assert!(matches!(e, InitError::NotEmpty(_)), "{e}");
        // The TLS configuration builds from what init wrote.
        crate::tls::server_config(&c.tls).unwrap();
    }

    /// An init that fails half way (here: no SoftHSM2 library where it is told to look,
    /// after the certificates were written) leaves nothing behind, and the same command then
    /// works; a directory that was not fresh is never touched.
    #[test]
    fn a_failed_init_removes_what_it_made() {
        let tmp = tempfile::tempdir().unwrap();
        let broken = InitOptions {
            hsm: true,
            softhsm_module: Some(tmp.path().join("no-such-libsofthsm2.so")),
            ..InitOptions::default()
        };
        // The directory did not exist: it is gone again.
        let dir = tmp.path().join("inst");
        assert!(init_instance_with(&dir, &broken).is_err());
        assert!(!dir.exists());
        // It existed, empty: it stays, empty.
        std::fs::create_dir(&dir).unwrap();
        assert!(init_instance_with(&dir, &broken).is_err());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let ok = InitOptions {
            hsm: false,
            ..InitOptions::default()
        };
        init_instance_with(&dir, &ok).unwrap();
        // Not fresh: refused, and nothing of it removed.
        let before = std::fs::read_dir(&dir).unwrap().count();
        assert!(matches!(
            init_instance_with(&dir, &broken),
            Err(InitError::NotEmpty(_))
        ));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), before);
        assert!(dir.join("certs/ca.pem").exists());
    }
}
