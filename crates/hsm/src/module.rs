//! Loading a PKCS#11 module and calling C_Initialize exactly once per process, and finding a
//! token.
//!
//! PKCS#11 allows one C_Initialize per module per process (a second one answers
//! CKR_CRYPTOKI_ALREADY_INITIALIZED), and configuration that the module reads in C_Initialize
//! (SoftHSM2 reads `SOFTHSM2_CONF`) is fixed from then on. So loaded modules live in a
//! process-wide registry keyed by the module's canonical path, together with the
//! `SOFTHSM2_CONF` that was in force when it was initialised, and are never finalised.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::slot::Slot;

use crate::config::TokenSelector;
use crate::error::{HsmError, Result, one_line, pkcs11, rv_of, rv_text};

/// The environment variable SoftHSM2 reads its configuration file name from.
pub const SOFTHSM2_CONF: &str = "SOFTHSM2_CONF";

struct Loaded {
    module: PathBuf,
    ctx: Pkcs11,
    softhsm2_conf: Option<OsString>,
}

static LOADED: Mutex<Vec<Loaded>> = Mutex::new(Vec::new());

/// The initialised context of `module`, loading and initialising it on first use.
pub(crate) fn context(module: &Path) -> Result<Pkcs11> {
    if !module.exists() {
        return Err(HsmError::ModuleNotFound {
            path: module.to_owned(),
        });
    }
    let canonical = module.canonicalize().map_err(|source| HsmError::Io {
        path: module.to_owned(),
        source,
    })?;
    let env_conf = std::env::var_os(SOFTHSM2_CONF);
    let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(l) = loaded.iter().find(|l| l.module == canonical) {
        if l.softhsm2_conf != env_conf {
            // Only reachable if something changed the environment after start-up.
            return Err(HsmError::SoftHsmConfMismatch {
                expected: l
                    .softhsm2_conf
                    .clone()
                    .map(PathBuf::from)
                    .unwrap_or_default(),
                actual: describe_env(env_conf.as_ref()),
            });
        }
        return Ok(l.ctx.clone());
    }
    let not_pkcs11 = |reason: String| HsmError::ModuleNotPkcs11 {
        path: module.to_owned(),
        reason: one_line(&reason),
    };
    let ctx = match Pkcs11::new(&canonical) {
        Ok(ctx) => ctx,
        Err(CkError::LibraryLoading(e)) => return Err(not_pkcs11(e.to_string())),
        Err(CkError::MissingSymbol(sym)) => return Err(not_pkcs11(format!("no symbol {sym}"))),
        Err(e) => return Err(not_pkcs11(rv_text(&e))),
    };
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        Err(e) if rv_of(&e) == Some(RvError::CryptokiAlreadyInitialized) => {}
        Err(e) => {
            return Err(HsmError::ModuleInit {
                path: module.to_owned(),
                rv: rv_text(&e),
            });
        }
    }
    loaded.push(Loaded {
        module: canonical,
        ctx: ctx.clone(),
        softhsm2_conf: env_conf,
    });
    Ok(ctx)
}

pub(crate) fn describe_env(v: Option<&OsString>) -> String {
    match v {
        Some(v) => PathBuf::from(v).display().to_string(),
        None => "unset".to_owned(),
    }
}

/// The slot of the token `selector` names, and the token's label.
pub(crate) fn find_token(
    ctx: &Pkcs11,
    module: &Path,
    selector: &TokenSelector,
) -> Result<(Slot, String)> {
    let tokens = initialised_tokens(ctx)?;
    match selector {
        TokenSelector::Label(label) => {
            let matching: Vec<&(Slot, String)> =
                tokens.iter().filter(|(_, l)| l == label).collect();
            match matching.as_slice() {
                [one] => Ok((one.0, one.1.clone())),
                [] => Err(HsmError::TokenNotFound {
                    label: label.clone(),
                    module: module.to_owned(),
                    available: tokens.into_iter().map(|(_, l)| l).collect(),
                }),
                many => Err(HsmError::AmbiguousToken {
                    label: label.clone(),
                    count: many.len(),
                }),
            }
        }
        TokenSelector::Slot(id) => tokens
            .iter()
            .find(|(s, _)| s.id() == *id)
            .cloned()
            .ok_or_else(|| HsmError::SlotNotFound {
                slot: *id,
                module: module.to_owned(),
                available: tokens.iter().map(|(s, _)| s.id()).collect(),
            }),
    }
}

/// Every slot with an initialised token, and the token's label (trailing blanks removed).
pub(crate) fn initialised_tokens(ctx: &Pkcs11) -> Result<Vec<(Slot, String)>> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(pkcs11("C_GetSlotList"))?;
    slots
        .into_iter()
        .map(|slot| {
            let info = ctx.get_token_info(slot).map_err(pkcs11("C_GetTokenInfo"))?;
            Ok((slot, info.label().trim_end().to_owned()))
        })
        .collect()
}
