//! The Key Encryption Key: the AES-256 key that wraps every object's key material before it
//! reaches the disk (AES key wrap with padding, RFC 5649).
//!
//! The KEK itself is never stored in the clear: the HSM layer wraps it with the master key
//! and keeps the blob in the store's metadata ([`SledStore::store_wrapped_kek`]); at start-up
//! it unwraps the blob and hands the plain KEK to [`SledStore::unlock`]. In memory the key is
//! zeroized when dropped and, where the OS allows, locked out of swap (`mlock`); failing to
//! lock is reported as an [`MlockWarning`], not an error (containers often forbid it).
//!
//! [`SledStore::store_wrapped_kek`]: crate::SledStore::store_wrapped_kek
//! [`SledStore::unlock`]: crate::SledStore::unlock

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use aes_kw::KekAes256;
use zeroize::{Zeroize, Zeroizing};

/// Which KEK wrapped a record (recorded in every record that holds key material).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KekId(pub u32);

impl fmt::Display for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why the KEK could not be locked in memory (it stays usable, but may reach swap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlockWarning(pub String);

impl fmt::Display for MlockWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the key encryption key could not be locked in memory: {}",
            self.0
        )
    }
}

/// A 32-byte AES-256 Key Encryption Key with its identifier.
pub struct Kek {
    // Declared before `key`: unlocked after the explicit zeroize in `Drop`, before the free.
    lock: Result<region::LockGuard, MlockWarning>,
    key: Box<Zeroizing<[u8; 32]>>,
    id: KekId,
}

impl Kek {
    /// A KEK from its 32 bytes. The bytes are copied into a locked, zeroized-on-drop buffer.
    pub fn new(id: KekId, key: &Zeroizing<[u8; 32]>) -> Kek {
        let mut boxed = Box::new(Zeroizing::new([0u8; 32]));
        boxed.copy_from_slice(key.as_slice());
        let lock = region::lock(boxed.as_ptr(), 32).map_err(|e| MlockWarning(e.to_string()));
        Kek {
            lock,
            key: boxed,
            id,
        }
    }

    /// A KEK from a slice, which must be exactly 32 bytes.
    pub fn from_slice(id: KekId, key: &[u8]) -> Option<Kek> {
        let arr: [u8; 32] = key.try_into().ok()?;
        let arr = Zeroizing::new(arr);
        Some(Kek::new(id, &arr))
    }

    /// Its identifier.
    pub fn id(&self) -> KekId {
        self.id
    }

    /// Why the key could not be kept out of swap, if it could not.
    pub fn mlock_warning(&self) -> Option<&MlockWarning> {
        self.lock.as_ref().err()
    }

    /// The raw key bytes (for the HSM layer, which wraps them with the master key).
    pub fn expose(&self) -> &[u8; 32] {
        &self.key
    }

    /// RFC 5649 wrap of `plain`.
    pub(crate) fn wrap(&self, plain: &[u8]) -> Result<Vec<u8>, String> {
        let kw = KekAes256::new(self.expose().into());
        kw.wrap_with_padding_vec(plain).map_err(|e| e.to_string())
    }

    /// RFC 5649 unwrap; fails when the blob was altered or wrapped by another key.
    pub(crate) fn unwrap(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
        let kw = KekAes256::new(self.expose().into());
        kw.unwrap_with_padding_vec(wrapped)
            .map(Zeroizing::new)
            .map_err(|e| e.to_string())
    }
}

impl Drop for Kek {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .field("mlocked", &self.lock.is_ok())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_unwraps_and_refuses_other_keys_and_altered_blobs() {
        let a = Kek::new(KekId(1), &Zeroizing::new([7; 32]));
        let b = Kek::new(KekId(2), &Zeroizing::new([8; 32]));
        let w = a.wrap(b"secret key bytes").unwrap();
        assert!(!w.windows(6).any(|x| x == b"secret"));
        assert_eq!(a.unwrap(&w).unwrap().as_slice(), b"secret key bytes");
        assert!(b.unwrap(&w).is_err());
        let mut bad = w.clone();
        bad[3] ^= 1;
        assert!(a.unwrap(&bad).is_err());
        assert!(!format!("{a:?}").contains('7'));
        assert!(Kek::from_slice(KekId(3), &[0; 31]).is_none());
    }
}

/// The unwrapped KEKs of an unlocked store, the one piece of key state a backend keeps in
/// memory (sled and PostgreSQL alike): which KEK wraps new writes and every KEK a stored
/// record may name. Shared behind a `RwLock`; the functions below are the one place that
/// reads it.
#[derive(Default)]
pub(crate) struct Keyring {
    /// The KEK of new writes (`None`: locked).
    pub(crate) current: Option<KekId>,
    /// Every KEK supplied at unlock or registered since.
    pub(crate) keks: BTreeMap<KekId, Arc<Kek>>,
}

fn poisoned() -> crate::StoreError {
    crate::StoreError::Backend("keyring lock poisoned".to_owned())
}

impl Keyring {
    /// The KEK `id`: [`StoreError::Locked`](crate::StoreError::Locked) before unlock, a
    /// `Kek` error when it was not supplied.
    pub(crate) fn kek(ring: &RwLock<Keyring>, id: KekId) -> Result<Arc<Kek>, crate::StoreError> {
        let ring = ring.read().map_err(|_| poisoned())?;
        if ring.keks.is_empty() {
            return Err(crate::StoreError::Locked);
        }
        ring.keks
            .get(&id)
            .cloned()
            .ok_or_else(|| crate::StoreError::Kek(format!("KEK {id} was not supplied at unlock")))
    }

    /// The KEK of new writes ([`StoreError::Locked`](crate::StoreError::Locked) before unlock).
    pub(crate) fn current(ring: &RwLock<Keyring>) -> Result<Arc<Kek>, crate::StoreError> {
        let ring = ring.read().map_err(|_| poisoned())?;
        let id = ring.current.ok_or(crate::StoreError::Locked)?;
        ring.keks.get(&id).cloned().ok_or(crate::StoreError::Locked)
    }

    /// Parses a stored record and unwraps its key material; a record wrapped by a KEK that
    /// was not supplied is [`StoreError::Corrupt`](crate::StoreError::Corrupt) (only that
    /// object is affected).
    pub(crate) fn decode(
        ring: &RwLock<Keyring>,
        uid: &str,
        raw: &[u8],
    ) -> Result<crate::ManagedObject, crate::StoreError> {
        match Keyring::decode_or_missing(ring, uid, raw)? {
            Ok(o) => Ok(o),
            Err(id) => Err(crate::StoreError::Corrupt {
                uid: uid.to_owned(),
                reason: format!("KEK {id} was not supplied at unlock"),
            }),
        }
    }

    /// [`decode`](Self::decode), except that a record wrapped by a KEK this keyring does not
    /// hold gives that KEK's id (`Ok(Err(id))`): a store shared by several nodes may learn it
    /// (PostgreSQL, `postgres/keyring.rs`).
    pub(crate) fn decode_or_missing(
        ring: &RwLock<Keyring>,
        uid: &str,
        raw: &[u8],
    ) -> Result<Result<crate::ManagedObject, KekId>, crate::StoreError> {
        let mut parsed = crate::record::parse(uid, raw)?;
        let object = match parsed.wrapped.take() {
            Some((id, wrapped)) => {
                let kek = match Keyring::kek(ring, id) {
                    Ok(k) => k,
                    Err(crate::StoreError::Kek(_)) => return Ok(Err(id)),
                    Err(e) => return Err(e),
                };
                Some(crate::record::open_sealed(uid, &wrapped, &kek)?)
            }
            None => None,
        };
        let mut o = parsed.into_shell();
        o.object = object;
        Ok(Ok(o))
    }
}

/// What a finished KEK rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KekRotation {
    /// Records re-wrapped under the new KEK.
    pub rewrapped: usize,
    /// Records that could not be re-wrapped because they are damaged (see `corrupt_records`).
    pub skipped_corrupt: Vec<String>,
    /// KEKs no record needs any more (their wrapped blobs may be deleted).
    pub retired: Vec<KekId>,
}

impl KekRotation {
    /// Records re-wrapped per step of [`KekRotation::run`].
    const STEP: usize = 256;

    /// A whole rotation from its three steps, the same for every backend: `begin` registers
    /// the new KEK, `step(max)` re-wraps up to `max` records (how many it did, and the
    /// damaged ones it skipped) until it does none, `finish` retires the KEKs no record needs.
    pub(crate) fn run(
        begin: impl FnOnce() -> Result<(), crate::StoreError>,
        mut step: impl FnMut(usize) -> Result<(usize, Vec<String>), crate::StoreError>,
        finish: impl FnOnce() -> Result<Vec<KekId>, crate::StoreError>,
    ) -> Result<KekRotation, crate::StoreError> {
        begin()?;
        let mut report = KekRotation::default();
        loop {
            let (done, skipped) = step(KekRotation::STEP)?;
            report.rewrapped = report.rewrapped.saturating_add(done);
            if done == 0 {
                report.skipped_corrupt = skipped;
                break;
            }
        }
        report.retired = finish()?;
        Ok(report)
    }
}
