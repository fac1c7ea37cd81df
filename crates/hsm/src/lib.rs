//! The master key of kmipd: a non-extractable AES-256 key inside an HSM, reached through
//! PKCS#11 (`cryptoki`), whose only job is to wrap the store's Key Encryption Key (KEK).
//!
//! # Why this shape
//!
//! The store wraps every object's key material with a 32-byte KEK that it keeps in memory
//! (`crates/store`). The KEK itself rests only as a blob wrapped by the master key, and the
//! master key never leaves the HSM. So the HSM is called at start-up (unwrap the KEK once) and
//! at rotation (wrap again), never per request: a slow or remote HSM costs nothing at run time,
//! and the [`MasterKey`] trait stays small: [`MasterKey::wrap_kek`],
//! [`MasterKey::unwrap_kek`], [`MasterKey::id`], plus [`MasterKey::rotate`] and
//! [`MasterKey::confirm_rotation`].
//!
//! # How the KEK is wrapped
//!
//! With CKM_AES_KEY_WRAP_PAD (RFC 5649, AES key wrap with padding: an integrity-checked,
//! deterministic wrap, the same mechanism the store uses for objects) through
//! C_WrapKey/C_UnwrapKey. The KEK has to come back into host memory, so it passes through a
//! short-lived *session* object: to wrap, C_CreateObject a generic secret with the KEK as
//! CKA_VALUE (CKA_TOKEN=false, CKA_EXTRACTABLE=true), C_WrapKey it under the master key,
//! C_DestroyObject it; to unwrap, C_UnwrapKey into such a session object, read its CKA_VALUE,
//! destroy it. The simpler C_Encrypt/C_Decrypt with CKM_AES_KEY_WRAP_PAD is not used because
//! SoftHSM2 (2.6, our development HSM) offers the key-wrap mechanisms only for
//! C_WrapKey/C_UnwrapKey (C_EncryptInit answers CKR_MECHANISM_INVALID), as do several
//! hardware HSMs; C_WrapKey is what PKCS#11 defines these mechanisms for. No fallback to
//! CKM_AES_KEY_WRAP is needed on SoftHSM2.
//!
//! The master key is created with CKA_WRAP/CKA_UNWRAP only (no CKA_ENCRYPT/CKA_DECRYPT), so even
//! a logged-in session cannot use it to decrypt arbitrary data. [`Pkcs11MasterKey::open`]
//! refuses a key that is not AES-256, sensitive, non-extractable, wrap and unwrap.
//!
//! A KEK blob is `[1][label length][label of the master key version][RFC 5649 output]`. The
//! label lets a blob name the master key version that wrapped it, which is what makes rotation
//! crash-safe: old and new versions coexist on the token until the caller confirms the new
//! blobs are stored (see [`MasterKey::rotate`]).
//!
//! # Blocking
//!
//! Every call here is a blocking PKCS#11 call (a network HSM can take milliseconds to seconds).
//! The API is synchronous on purpose; async callers run it with `tokio::task::spawn_blocking`
//! (or before the runtime starts). It is called at start-up and at rotation only.
//!
//! # One PKCS#11 initialisation per process, one SoftHSM2 configuration per process
//!
//! Each module is loaded and C_Initialize'd once per process and never finalised (see
//! `module.rs`). SoftHSM2 reads `SOFTHSM2_CONF` in that C_Initialize, so a process can use
//! only one SoftHSM2 token directory: see [`softhsm`] for how `kmipd` and the tests live with
//! that ([`ensure_softhsm_env`]).
//!
//! # Secrets
//!
//! The PIN comes from an environment variable or a file named by [`HsmConfig`], never from the
//! configuration text, and is held in a [`secrecy::SecretString`]. Unwrapped KEKs are returned
//! in [`Zeroizing`]; the copy this crate makes to create the session object is zeroized.
//! Buffers `cryptoki` allocates internally while reading CKA_VALUE are freed without zeroizing
//! (outside our control); they hold the KEK for microseconds, at start-up and rotation only.

mod config;
mod error;
mod master;
mod module;
pub mod softhsm;

pub use config::HsmConfig;
pub use error::{HsmError, Result};
pub use master::Pkcs11MasterKey;
pub use module::SOFTHSM2_CONF;
pub use softhsm::{
    Provisioned, ensure_softhsm_env, find_softhsm_module, provision_softhsm, softhsm_conf_path,
    write_softhsm_conf,
};
pub use zeroize::Zeroizing;

/// The key that wraps the store's KEK. Implemented by [`Pkcs11MasterKey`]; the store holds an
/// `Arc<dyn MasterKey>` (tests may use a software stand-in).
///
/// Every method may block on the HSM (see the crate docs).
pub trait MasterKey: Send + Sync {
    /// Wraps `kek` (16 to 64 bytes; the store's KEK is 32) into an opaque blob that names the
    /// master key version used. The blob never contains the KEK bytes in the clear.
    fn wrap_kek(&self, kek: &[u8]) -> Result<Vec<u8>>;

    /// The KEK inside `blob`, with whichever master key version wrapped it (the current one or
    /// an older version not yet retired by [`MasterKey::confirm_rotation`]).
    fn unwrap_kek(&self, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>>;

    /// Identifies the master key version that [`MasterKey::wrap_kek`] uses now, for logs and
    /// for the store's records, e.g. `pkcs11:token=kmipd;object=kmipd-master.v2`.
    fn id(&self) -> String;

    /// Master key rotation, step 1: creates a new master key version in the HSM, re-wraps every
    /// blob (unwrap with the version it names, wrap with the new one) and returns the new
    /// blobs in the same order. From now on [`MasterKey::wrap_kek`] uses the new version. The
    /// old versions stay in the HSM, so the old blobs stay readable: a crash before the caller
    /// has stored the new blobs loses nothing. If any blob cannot be unwrapped, nothing is
    /// created.
    fn rotate(&self, blobs: &[Vec<u8>]) -> Result<Vec<Vec<u8>>>;

    /// Master key rotation, step 2, once the new blobs are durably stored: destroys every
    /// version of the master key that is neither the current one nor named by one of
    /// `stored_blobs` (pass every blob still kept anywhere, backups included, to keep their
    /// versions). Returns the labels destroyed.
    fn confirm_rotation(&self, stored_blobs: &[Vec<u8>]) -> Result<Vec<String>>;
}
