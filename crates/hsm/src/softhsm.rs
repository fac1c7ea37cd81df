//! SoftHSM2, the development and test HSM: finding the library, giving each kmipd instance its
//! own token directory, and provisioning a token with a master key (`kmipd init`).
//!
//! # One SoftHSM2 configuration per process
//!
//! SoftHSM2 reads the name of its configuration file from the `SOFTHSM2_CONF` environment
//! variable once, in C_Initialize, and C_Initialize happens once per process. Everything a
//! process does with SoftHSM2 therefore uses one `softhsm2.conf`, that is one token directory.
//! Setting the variable from inside a running, multi-threaded process is unsound (it is
//! `unsafe` in Rust 2024, and this workspace denies `unsafe`), so the variable has to be in
//! the process's environment from its start:
//!
//! * `kmipd` calls [`ensure_softhsm_env`] first thing in `main`; when the variable is not
//!   already the instance's file, it re-executes the same binary with the same arguments and
//!   the variable set (`execve`, same pid). An instance made by `kmipd init` thus needs no
//!   environment variable from the operator.
//! * [`provision_softhsm`] and [`crate::Pkcs11MasterKey::open`] check the variable and fail
//!   with [`HsmError::SoftHsmConfMismatch`] instead of silently using another token directory.
//! * Tests that provision instances run each instance in its own child process (see this
//!   crate's `tests/softhsm.rs`).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use cryptoki::session::UserType;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::config::HsmConfig;
use crate::error::{HsmError, Result, pkcs11};
use crate::master::{check_softhsm_env, generate_master_key};
use crate::module::{self, SOFTHSM2_CONF};

/// Environment variable that overrides where the SoftHSM2 library is.
pub const SOFTHSM2_MODULE_ENV: &str = "KMIPD_SOFTHSM2_MODULE";

/// Set in the re-executed process so a second mismatch fails instead of looping.
const REEXEC_MARKER: &str = "KMIPD_HSM_REEXECUTED";

/// Where distributions put `libsofthsm2.so`, Debian's first.
pub const SOFTHSM2_MODULE_PATHS: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
];

/// The SoftHSM2 library: `override_path` if given, else `$KMIPD_SOFTHSM2_MODULE` if set, else
/// the first of [`SOFTHSM2_MODULE_PATHS`] that exists.
pub fn find_softhsm_module(override_path: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = override_path {
        return Ok(p.to_owned());
    }
    if let Some(p) = std::env::var_os(SOFTHSM2_MODULE_ENV) {
        return Ok(PathBuf::from(p));
    }
    SOFTHSM2_MODULE_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| HsmError::SoftHsmNotInstalled {
            searched: SOFTHSM2_MODULE_PATHS.join(", "),
        })
}

/// `DIR/softhsm2.conf`.
pub fn softhsm_conf_path(dir: &Path) -> PathBuf {
    dir.join("softhsm2.conf")
}

/// Creates `DIR/tokens` (mode 0700) and writes `DIR/softhsm2.conf` pointing SoftHSM2 at it
/// (absolute path: the instance directory must not move afterwards, or this file must be
/// rewritten). Idempotent. Returns the configuration file's path. No PKCS#11 call.
pub fn write_softhsm_conf(dir: &Path) -> Result<PathBuf> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| HsmError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let dir = dir.canonicalize().map_err(io(dir))?;
    let tokens = dir.join("tokens");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&tokens)
        .map_err(io(&tokens))?;
    let conf = softhsm_conf_path(&dir);
    let text = format!(
        "# SoftHSM2 configuration of this kmipd instance, written by kmipd init.\n\
         # The token directory is absolute: rewrite it if the instance directory moves.\n\
         directories.tokendir = {}\n\
         objectstore.backend = file\n\
         log.level = ERROR\n\
         slots.removable = false\n\
         slots.mechanisms = ALL\n\
         library.reset_on_fork = false\n",
        tokens.display()
    );
    std::fs::write(&conf, text).map_err(io(&conf))?;
    Ok(conf)
}

/// Makes sure this process runs with `SOFTHSM2_CONF` set to `conf`: returns `Ok(())` if it
/// already does, otherwise replaces the process (`execve`, same pid, same arguments) by the
/// same executable with the variable set, and so returns only on failure.
///
/// Call it at the very start of `main`, before threads or a runtime are started and before
/// any PKCS#11 call: whatever the process did before is lost in the re-execution.
pub fn ensure_softhsm_env(conf: &Path) -> Result<()> {
    match check_softhsm_env(conf) {
        Ok(()) => return Ok(()),
        Err(e) if std::env::var_os(REEXEC_MARKER).is_some() => return Err(e),
        Err(HsmError::SoftHsmConfMismatch { .. }) => {}
        Err(e) => return Err(e),
    }
    let conf = conf.canonicalize().map_err(|source| HsmError::Io {
        path: conf.to_owned(),
        source,
    })?;
    let exe = std::env::current_exe().map_err(HsmError::Reexec)?;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from(&exe));
    let err = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env(SOFTHSM2_CONF, &conf)
        .env(REEXEC_MARKER, "1")
        .exec();
    Err(HsmError::Reexec(err))
}

/// What [`provision_softhsm`] made.
#[derive(Debug)]
pub struct Provisioned {
    /// The `[hsm]` configuration of the instance (absolute paths; the PIN is in `DIR/pin`).
    pub config: HsmConfig,
    /// The user PIN, also written to `DIR/pin` (mode 0600).
    pub pin: SecretString,
}

/// Creates a SoftHSM2 token with a master key inside `dir` (`kmipd init`):
///
/// 1. `DIR/softhsm2.conf` and `DIR/tokens/` ([`write_softhsm_conf`]);
/// 2. checks that this process runs with `SOFTHSM2_CONF` = `DIR/softhsm2.conf` (call
///    [`ensure_softhsm_env`] first; see the module docs);
/// 3. a random SO PIN and user PIN, written to `DIR/so-pin` and `DIR/pin` (mode 0600);
/// 4. C_InitToken on a free slot with `token_label`, C_InitPIN;
/// 5. the master key: C_GenerateKey CKM_AES_KEY_GEN, 32 bytes, token object, sensitive,
///    non-extractable, CKA_WRAP/CKA_UNWRAP, labelled `key_label`.
///
/// Refuses if a token labelled `token_label` already exists in this directory. The SoftHSM2
/// library is [`find_softhsm_module`]`(module)`.
pub fn provision_softhsm(
    dir: &Path,
    token_label: &str,
    key_label: &str,
    module: Option<&Path>,
) -> Result<Provisioned> {
    if token_label.is_empty() || token_label.len() > 32 {
        return Err(HsmError::Config(
            "token label must be 1 to 32 bytes (PKCS#11 CK_TOKEN_INFO.label)".into(),
        ));
    }
    let module = find_softhsm_module(module)?;
    let conf = write_softhsm_conf(dir)?;
    check_softhsm_env(&conf)?;
    let dir = dir.canonicalize().map_err(|source| HsmError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let ctx = module::context(&module)?;
    if module::initialised_tokens(&ctx)?
        .iter()
        .any(|(_, l)| l == token_label)
    {
        return Err(HsmError::TokenExists {
            label: token_label.to_owned(),
            tokendir: dir.join("tokens"),
        });
    }
    let free = ctx
        .get_slots_with_token()
        .map_err(pkcs11("C_GetSlotList"))?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|i| !i.token_initialized())
                .unwrap_or(false)
        })
        .ok_or(HsmError::NoFreeSlot)?;

    let so_pin = random_pin()?;
    let pin = random_pin()?;
    let pin_file = dir.join("pin");
    write_secret_file(&dir.join("so-pin"), &so_pin)?;
    write_secret_file(&pin_file, &pin)?;

    ctx.init_token(free, &so_pin, token_label)
        .map_err(pkcs11("C_InitToken"))?;
    // SoftHSM2 moves an initialised token to a new slot id: look it up again by label.
    let (slot, _) = module::find_token(
        &ctx,
        &module,
        &crate::config::TokenSelector::Label(token_label.to_owned()),
    )?;
    {
        let session = ctx.open_rw_session(slot).map_err(pkcs11("C_OpenSession"))?;
        session
            .login(UserType::So, Some(&so_pin))
            .map_err(pkcs11("C_Login (SO)"))?;
        session.init_pin(&pin).map_err(pkcs11("C_InitPIN"))?;
        session.logout().map_err(pkcs11("C_Logout (SO)"))?;
        session
            .login(UserType::User, Some(&pin))
            .map_err(pkcs11("C_Login"))?;
        generate_master_key(&session, key_label)?;
        session.logout().map_err(pkcs11("C_Logout"))?;
    }

    let config = HsmConfig {
        module,
        token_label: Some(token_label.to_owned()),
        slot: None,
        key_label: key_label.to_owned(),
        pin_env: None,
        pin_file: Some(pin_file),
        softhsm2_conf: Some(conf),
    };
    config.validate()?;
    Ok(Provisioned { config, pin })
}

/// 32 hex digits from the OS random source.
fn random_pin() -> Result<SecretString> {
    let path = Path::new("/dev/urandom");
    let mut bytes = Zeroizing::new([0u8; 16]);
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(bytes.as_mut_slice()))
        .map_err(|source| HsmError::Io {
            path: path.to_owned(),
            source,
        })?;
    let mut hex = String::with_capacity(32);
    for b in bytes.iter() {
        hex.push_str(&format!("{b:02x}"));
    }
    Ok(SecretString::from(hex))
}

/// Writes `secret` and a newline to `path` with mode 0600 (through a temporary file and a
/// rename, so a crash leaves the old file or the new one).
fn write_secret_file(path: &Path, secret: &SecretString) -> Result<()> {
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| HsmError::Io { path: p, source }
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(secret.expose_secret().as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}
