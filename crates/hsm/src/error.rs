//! The one error type of the crate.
//!
//! Every variant's `Display` is a single line that names what is wrong and what to change, so
//! `kmipd` can print it and exit non-zero at start-up. No variant ever carries key material or
//! a PIN; PKCS#11 return values are shown by their `CKR_` name.

use std::path::PathBuf;

use cryptoki::error::{Error as CkError, RvError};

/// What can go wrong between kmipd and the HSM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// The configured PKCS#11 module file does not exist.
    #[error(
        "PKCS#11 module {} does not exist: set hsm.module to the HSM vendor's PKCS#11 library \
         (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so, installed by scripts/setup.sh)",
        path.display()
    )]
    ModuleNotFound {
        /// The configured path.
        path: PathBuf,
    },

    /// The file exists but could not be loaded as a PKCS#11 library.
    #[error(
        "{} is not a PKCS#11 library ({reason}): set hsm.module to the HSM vendor's PKCS#11 \
         shared library",
        path.display()
    )]
    ModuleNotPkcs11 {
        /// The configured path.
        path: PathBuf,
        /// Why loading failed (loader message or the missing symbol), on one line.
        reason: String,
    },

    /// C_Initialize failed.
    #[error("PKCS#11 module {} failed to initialise ({rv}): check the module's own configuration", path.display())]
    ModuleInit {
        /// The module.
        path: PathBuf,
        /// The PKCS#11 failure.
        rv: String,
    },

    /// No token carries the configured label.
    #[error(
        "no token labelled {label:?} in {}: set hsm.token_label to one of [{}] (or run kmipd init)",
        module.display(),
        quoted(available)
    )]
    TokenNotFound {
        /// The configured token label.
        label: String,
        /// The module searched.
        module: PathBuf,
        /// Labels of the initialised tokens that do exist.
        available: Vec<String>,
    },

    /// No slot with a token has the configured id.
    #[error(
        "no token in slot {slot} of {}: set hsm.slot to one of [{}] or use hsm.token_label",
        module.display(),
        available.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
    )]
    SlotNotFound {
        /// The configured slot id.
        slot: u64,
        /// The module searched.
        module: PathBuf,
        /// The slot ids that hold an initialised token.
        available: Vec<u64>,
    },

    /// Several tokens carry the configured label.
    #[error(
        "{count} tokens are labelled {label:?}: select one with hsm.slot instead of hsm.token_label"
    )]
    AmbiguousToken {
        /// The label.
        label: String,
        /// How many tokens carry it.
        count: usize,
    },

    /// C_Login answered CKR_PIN_INCORRECT.
    #[error("wrong PIN for token {token:?} (CKR_PIN_INCORRECT): fix the user PIN in {source_desc}")]
    PinIncorrect {
        /// The token label.
        token: String,
        /// Where the PIN came from ("file /x/pin", "environment variable KMIPD_HSM_PIN").
        source_desc: String,
    },

    /// The user PIN is locked after too many failures.
    #[error(
        "the user PIN of token {token:?} is locked (CKR_PIN_LOCKED): unlock it with the SO PIN (C_InitPIN), then fix {source_desc}"
    )]
    PinLocked {
        /// The token label.
        token: String,
        /// Where the PIN came from.
        source_desc: String,
    },

    /// The PIN could not be read from its configured source.
    #[error("cannot read the HSM PIN from {source_desc}: {reason}")]
    PinUnavailable {
        /// Where the PIN should have come from.
        source_desc: String,
        /// Why it could not be read.
        reason: String,
    },

    /// No key with the master key's label (or any of its rotated versions) is on the token.
    #[error(
        "master key {label:?} not found on token {token:?}: set hsm.key_label to the label of \
         the master key, or create it (kmipd init does, for SoftHSM2)"
    )]
    MasterKeyNotFound {
        /// The configured key label.
        label: String,
        /// The token searched.
        token: String,
    },

    /// The object with the master key's label is not a usable master key.
    #[error(
        "object {label:?} on token {token:?} is not a usable master key ({problem}): it must be \
         a non-extractable, sensitive AES-256 secret key with CKA_WRAP and CKA_UNWRAP"
    )]
    WrongKeyKind {
        /// The label.
        label: String,
        /// The token.
        token: String,
        /// The first property that is wrong.
        problem: String,
    },

    /// Several objects carry the master key's label.
    #[error(
        "{count} objects on token {token:?} are labelled {label:?}: give the master key a unique label"
    )]
    AmbiguousKey {
        /// The label.
        label: String,
        /// The token.
        token: String,
        /// How many objects carry it.
        count: usize,
    },

    /// The token does not offer CKM_AES_KEY_WRAP_PAD for C_WrapKey and C_UnwrapKey.
    #[error(
        "token {token:?} does not offer CKM_AES_KEY_WRAP_PAD (RFC 5649) for wrapping and \
         unwrapping: use an HSM or firmware that does"
    )]
    MechanismMissing {
        /// The token.
        token: String,
    },

    /// The configuration is inconsistent.
    #[error("hsm configuration: {0}")]
    Config(String),

    /// A KEK blob is not in this crate's format.
    #[error(
        "KEK blob is malformed ({0}): the stored KEK record is damaged; restore it from a backup"
    )]
    BadBlob(&'static str),

    /// A KEK blob names a master key that is not on the token.
    #[error(
        "KEK blob was wrapped by master key {label:?}, which is not on token {token:?}: restore \
         that key to the HSM or use the matching data directory"
    )]
    UnknownBlobKey {
        /// The label recorded in the blob.
        label: String,
        /// The token searched.
        token: String,
    },

    /// The HSM refused to unwrap the blob (integrity check of RFC 5649 failed).
    #[error(
        "master key {label:?} cannot unwrap the KEK blob ({rv}): the blob is damaged or was \
         made by another HSM key with the same label (SoftHSM2 reports a failed integrity \
         check as CKR_GENERAL_ERROR); restore the KEK record from a backup"
    )]
    UnwrapFailed {
        /// The master key used.
        label: String,
        /// The PKCS#11 failure.
        rv: String,
    },

    /// The KEK to wrap has an unsupported length.
    #[error("a KEK of {0} bytes cannot be wrapped: the KEK must be 16 to 64 bytes")]
    BadKekLength(usize),

    /// SoftHSM2 is not installed where we look.
    #[error(
        "SoftHSM2 is not installed (looked for {searched}): run scripts/setup.sh (apt-get install softhsm2) or set KMIPD_SOFTHSM2_MODULE to libsofthsm2.so"
    )]
    SoftHsmNotInstalled {
        /// The paths that were tried.
        searched: String,
    },

    /// The process environment names another SoftHSM2 configuration than the instance's.
    #[error(
        "SOFTHSM2_CONF is {actual} but this instance's SoftHSM2 configuration is {}: start the \
         process with SOFTHSM2_CONF={} (kmipd_hsm::ensure_softhsm_env re-executes with it)",
        expected.display(),
        expected.display()
    )]
    SoftHsmConfMismatch {
        /// The instance's `softhsm2.conf`.
        expected: PathBuf,
        /// What the environment says (or "unset").
        actual: String,
    },

    /// Provisioning found a token with the requested label already.
    #[error("a token labelled {label:?} already exists in {}: use it, or remove that directory to start over", tokendir.display())]
    TokenExists {
        /// The label.
        label: String,
        /// The SoftHSM2 token directory.
        tokendir: PathBuf,
    },

    /// Provisioning found no free slot to initialise a token in.
    #[error(
        "the PKCS#11 module offers no slot with an uninitialised token: free a slot or use another module"
    )]
    NoFreeSlot,

    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },

    /// Re-executing the process with SOFTHSM2_CONF set failed.
    #[error("cannot re-execute kmipd with SOFTHSM2_CONF set: {0}")]
    Reexec(std::io::Error),

    /// Any other PKCS#11 failure.
    #[error("PKCS#11 {op} failed: {rv}")]
    Pkcs11 {
        /// What we were doing.
        op: &'static str,
        /// The failure, by its `CKR_` name.
        rv: String,
    },
}

/// Result with [`HsmError`].
pub type Result<T, E = HsmError> = std::result::Result<T, E>;

fn quoted(labels: &[String]) -> String {
    if labels.is_empty() {
        return "no initialised tokens".to_owned();
    }
    labels
        .iter()
        .map(|l| format!("{l:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A PKCS#11 failure as one short line: the `CKR_` name and the function.
pub(crate) fn rv_text(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, func) => format!("{} in C_{func:?}", ckr_name(*rv)),
        other => one_line(&other.to_string()),
    }
}

/// The return value of a failed PKCS#11 call, if it was one.
pub(crate) fn rv_of(e: &CkError) -> Option<RvError> {
    match e {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

/// `RvError`'s `Debug` is its variant name (`PinIncorrect`); turn it into `CKR_PIN_INCORRECT`.
fn ckr_name(rv: RvError) -> String {
    let name = format!("{rv:?}");
    let mut out = String::from("CKR");
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Collapses whitespace runs (newlines from loader messages included) into single spaces.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn pkcs11(op: &'static str) -> impl FnOnce(CkError) -> HsmError {
    move |e| HsmError::Pkcs11 {
        op,
        rv: rv_text(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ckr_names() {
        assert_eq!(ckr_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(
            ckr_name(RvError::KeyHandleInvalid),
            "CKR_KEY_HANDLE_INVALID"
        );
    }

    #[test]
    fn one_line_collapses_newlines() {
        assert_eq!(one_line("a\n b\tc  "), "a b c");
    }
}
