//! A small cache of parsed OpenSSL keys for Sign and Signature Verify.
//!
//! **Why.** OpenSSL 3 decodes a DER key through its provider decoder machinery, which costs
//! more than the RSA or ECDSA operation itself: the profile of kmip-bench's sign workload put
//! 67% of Sign's CPU in `PKey::private_key_from_pkcs8` (`docs/performance.md`). A key object is
//! signed with many times, so the parsed `PKey` is kept here.
//!
//! **Key.** An entry is found by the object's Unique Identifier *and* the SHA-256 of the DER
//! bytes it was parsed from. The caller always hands in the key material it just loaded from
//! the store, so an object whose key material changed (re-registered under the same uid, a
//! restore, another store in the same process) hashes to a different entry: a stale key can
//! never be served. The DER bytes themselves are not kept (they stay in the caller's
//! `Zeroizing` buffers); only the digest and OpenSSL's parsed key are.
//!
//! **Bound.** At most [`CAPACITY`] entries; a miss on a full cache evicts the least recently
//! used entry (a linear scan of 256 ticks, only on that path).
//!
//! **Destroy.** The cache is consulted only after the engine loaded the object and checked its
//! state and usage mask, so a Destroyed (or Deactivated, Compromised) object's key is never
//! *used* from here. Destroy also calls [`forget`], so the parsed private key does not stay in
//! memory after the object is gone (OpenSSL clears private-key numbers when the last reference
//! is freed; a Sign still running with a clone finishes first). Entries of a store that is
//! closed without Destroy (tests, `restore`) age out by the LRU bound.
//!
//! `PKey<T>` is `Send + Sync` in the `openssl` crate (a reference-counted `EVP_PKEY`, which
//! OpenSSL allows to be used from several threads, each with its own `EVP_PKEY_CTX`); a clone
//! is a reference count increment.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use openssl::pkey::{PKey, Private, Public};
use sha2::{Digest, Sha256};

use super::keygen::{parse_private, parse_public};
use crate::error::Result;

/// Most entries kept by the process's cache.
pub(crate) const CAPACITY: usize = 256;

/// A parsed key: Sign needs the private key; Signature Verify takes a public key or a private
/// key's DER.
#[derive(Clone)]
pub(crate) enum Parsed {
    /// From PKCS#8, PKCS#1 or SEC1 private-key DER.
    Private(PKey<Private>),
    /// From SubjectPublicKeyInfo or PKCS#1 public-key DER.
    Public(PKey<Public>),
}

struct Entry {
    key: Parsed,
    last_used: u64,
}

/// (object uid, SHA-256 of the DER key bytes).
type Id = (String, [u8; 32]);

struct Entries {
    map: BTreeMap<Id, Entry>,
    tick: u64,
}

/// A bounded LRU map of parsed keys.
pub(crate) struct KeyCache {
    capacity: usize,
    inner: Mutex<Entries>,
}

/// The process's cache (one engine per process; tests share it harmlessly: an entry is only
/// found with the same uid *and* the same key bytes).
static CACHE: KeyCache = KeyCache::new(CAPACITY);

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<PKey<Private>>();
    send_sync::<PKey<Public>>();
};

fn digest(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

impl KeyCache {
    pub(crate) const fn new(capacity: usize) -> KeyCache {
        KeyCache {
            capacity,
            inner: Mutex::new(Entries {
                map: BTreeMap::new(),
                tick: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Every mutation is one map call, so a panic elsewhere while the lock was held left a
        // consistent map: keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached key of (`uid`, `der`), or `parse(der)` remembered under it. Parse failures
    /// are not cached.
    fn get_or_parse(
        &self,
        uid: &str,
        der: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<Parsed>,
    ) -> Result<Parsed> {
        let id = (uid.to_owned(), digest(der));
        {
            let mut e = self.lock();
            e.tick = e.tick.wrapping_add(1);
            let tick = e.tick;
            if let Some(entry) = e.map.get_mut(&id) {
                entry.last_used = tick;
                return Ok(entry.key.clone());
            }
        }
        // Parse outside the lock: it is the slow part.
        let key = parse(der)?;
        let mut e = self.lock();
        if self.capacity == 0 {
            return Ok(key);
        }
        if !e.map.contains_key(&id) && e.map.len() >= self.capacity {
            let oldest = e
                .map
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                e.map.remove(&k);
            }
        }
        let last_used = e.tick;
        e.map.insert(
            id,
            Entry {
                key: key.clone(),
                last_used,
            },
        );
        Ok(key)
    }

    fn private(&self, uid: &str, der: &[u8]) -> Result<PKey<Private>> {
        match self.get_or_parse(uid, der, |d| parse_private(d).map(Parsed::Private))? {
            Parsed::Private(k) => Ok(k),
            // The same bytes, cached as a public key, cannot parse as a private one.
            Parsed::Public(_) => parse_private(der),
        }
    }

    fn verifying(&self, uid: &str, der: &[u8]) -> Result<Parsed> {
        self.get_or_parse(uid, der, |d| match parse_public(d) {
            Ok(k) => Ok(Parsed::Public(k)),
            Err(_) => parse_private(d).map(Parsed::Private),
        })
    }

    fn forget(&self, uid: &str) {
        self.lock().map.retain(|(u, _), _| u != uid);
    }

    #[cfg(test)]
    fn len_of(&self, uid: &str) -> usize {
        self.lock().map.keys().filter(|(u, _)| u == uid).count()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().map.len()
    }
}

/// The private key of object `uid` whose material is `der` (PKCS#8, PKCS#1 or SEC1 DER).
pub(crate) fn private(uid: &str, der: &[u8]) -> Result<PKey<Private>> {
    CACHE.private(uid, der)
}

/// The key Signature Verify uses for object `uid` with material `der`: the public key of
/// SubjectPublicKeyInfo or PKCS#1 DER, else the private key of a private key's DER.
pub(crate) fn verifying(uid: &str, der: &[u8]) -> Result<Parsed> {
    CACHE.verifying(uid, der)
}

/// Drops every entry of object `uid` (Destroy).
pub(crate) fn forget(uid: &str) {
    CACHE.forget(uid);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keygen;
    use kmipd_proto::enums::recommended_curve;

    #[test]
    fn entries_are_keyed_by_uid_and_material_and_forgotten() {
        let c = KeyCache::new(CAPACITY);
        let a = keygen::ec(recommended_curve::P_256).unwrap();
        let b = keygen::ec(recommended_curve::P_256).unwrap();
        let uid = "k1";
        let ka = c.private(uid, &a.private_pkcs8).unwrap();
        assert_eq!(c.len_of(uid), 1);
        let again = c.private(uid, &a.private_pkcs8).unwrap();
        assert_eq!(c.len_of(uid), 1, "a hit adds nothing");
        assert!(ka.public_eq(&again));
        // New material under the same uid is parsed, never served from the old entry.
        let kb = c.private(uid, &b.private_pkcs8).unwrap();
        assert!(!kb.public_eq(&ka));
        assert_eq!(c.len_of(uid), 2);
        // The same material under another uid is another entry.
        c.private("k2", &a.private_pkcs8).unwrap();
        assert_eq!(c.len_of("k2"), 1);
        // Verify with the public key's DER is one more entry.
        let Parsed::Public(p) = c.verifying(uid, &b.public_spki).unwrap() else {
            panic!("a public key")
        };
        assert!(p.public_eq(&kb));
        assert_eq!(c.len_of(uid), 3);
        // A public key cached for Verify does not make Sign work.
        assert!(c.private(uid, &b.public_spki).is_err());
        c.forget(uid);
        assert_eq!(c.len_of(uid), 0);
        assert_eq!(c.len_of("k2"), 1);
        // Garbage is refused and not cached.
        assert!(c.private(uid, b"not a key").is_err());
        assert_eq!(c.len_of(uid), 0);
    }

    #[test]
    fn the_cache_stays_bounded_and_evicts_the_least_recently_used() {
        let c = KeyCache::new(4);
        let k = keygen::ec(recommended_curve::P_256).unwrap();
        for i in 0..4 {
            c.private(&format!("k{i}"), &k.private_pkcs8).unwrap();
        }
        // k0 is used again, so k1 is the least recently used when k4 comes.
        c.private("k0", &k.private_pkcs8).unwrap();
        c.private("k4", &k.private_pkcs8).unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c.len_of("k1"), 0);
        for u in ["k0", "k2", "k3", "k4"] {
            assert_eq!(c.len_of(u), 1, "{u}");
        }
        let none = KeyCache::new(0);
        none.private("k0", &k.private_pkcs8).unwrap();
        assert_eq!(none.len(), 0);
    }
}
