//! The keys of a [`SledStore`]: unlocking, the registered KEKs and KEK rotation.
//!
//! The store is opened locked; [`SledStore::unlock`] takes the KEKs (plain, from the HSM
//! layer, which keeps their wrapped blobs here with [`SledStore::store_wrapped_kek`]). Each
//! registered KEK has a check value in `meta` (a constant wrapped by it) that proves at unlock
//! that a key given under its id is the right one. Every record with key material names the
//! KEK that wrapped it, so a KEK rotation rewrites records one by one and a crash at any point
//! leaves each record readable under the KEK it names; the old KEK is retired only after a
//! scan finds no record that still needs it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::{SledStore, backend};
use crate::StoreError;
use crate::kek::{Kek, KekId, KekRotation, Keyring};
use crate::record;

pub(super) const META_CURRENT: &[u8] = b"kek/current";
const META_CHECK: &str = "kek/check/";
const META_WRAPPED: &str = "kek/wrapped/";
const META_RETIRED: &str = "kek/retired/";
/// What a KEK's check value wraps: proves at unlock that the key is the one registered.
const CHECK_PLAIN: &[u8] = b"kmipd store KEK check v1";

fn meta_key(prefix: &str, id: KekId) -> Vec<u8> {
    let mut k = prefix.as_bytes().to_vec();
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

fn id_from_meta_key(prefix: &str, key: &[u8]) -> Option<KekId> {
    let rest = key.strip_prefix(prefix.as_bytes())?;
    Some(KekId(u32::from_be_bytes(rest.try_into().ok()?)))
}

impl SledStore {
    /// Opens and unlocks with one KEK (a new store registers it as its first KEK).
    pub fn open_with_kek(dir: impl AsRef<Path>, kek: Kek) -> Result<SledStore, StoreError> {
        let s = SledStore::open(dir)?;
        s.unlock(vec![kek])?;
        Ok(s)
    }

    /// Supplies the KEKs. A new store registers the first one as its current KEK; otherwise
    /// every KEK the store still needs ([`required_keks`](Self::required_keks)) must be given,
    /// each matching its registered check value.
    pub fn unlock(&self, keks: Vec<Kek>) -> Result<(), StoreError> {
        let mut ring = self
            .keyring
            .write()
            .map_err(|_| backend("keyring lock poisoned"))?;
        let fresh = ring.current.is_none();
        let mut given = BTreeMap::new();
        for kek in keks {
            let id = kek.id();
            match self.meta.get(meta_key(META_CHECK, id)).map_err(backend)? {
                Some(check) => verify_check(&kek, &check)?,
                None if fresh && given.is_empty() => {
                    let _g = self.gate.write().map_err(|_| backend("gate poisoned"))?;
                    self.register(&kek)?;
                    self.meta
                        .insert(META_CURRENT, &id.0.to_be_bytes())
                        .map_err(backend)?;
                    ring.current = Some(id);
                }
                None => {
                    return Err(StoreError::Kek(format!(
                        "KEK {id} is not registered in this store (introduce a new KEK with rotate_kek)"
                    )));
                }
            }
            given.insert(id, Arc::new(kek));
        }
        for id in self.required_keks()? {
            if !given.contains_key(&id) {
                return Err(StoreError::Kek(format!(
                    "KEK {id} is still needed by this store but was not supplied"
                )));
            }
        }
        ring.keks = given;
        drop(ring);
        self.cache.clear();
        self.checkpoint()
    }

    fn register(&self, kek: &Kek) -> Result<(), StoreError> {
        let check = kek
            .wrap(CHECK_PLAIN)
            .map_err(|e| StoreError::Kek(format!("wrap check value: {e}")))?;
        self.meta
            .insert(meta_key(META_CHECK, kek.id()), check)
            .map_err(backend)?;
        self.meta
            .remove(meta_key(META_RETIRED, kek.id()))
            .map_err(backend)?;
        Ok(())
    }

    /// The KEKs that must be supplied at unlock: registered and not retired.
    pub fn required_keks(&self) -> Result<Vec<KekId>, StoreError> {
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(META_CHECK) {
            let (k, _) = kv.map_err(backend)?;
            if let Some(id) = id_from_meta_key(META_CHECK, &k)
                && !self
                    .meta
                    .contains_key(meta_key(META_RETIRED, id))
                    .map_err(backend)?
            {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// The KEK new records are wrapped with, once one is registered.
    pub fn current_kek(&self) -> Result<Option<KekId>, StoreError> {
        Ok(self
            .keyring
            .read()
            .map_err(|_| backend("keyring lock poisoned"))?
            .current)
    }

    /// Keeps the HSM layer's wrapped form of a KEK (durable on return). The store never sees
    /// the master key and cannot unwrap it.
    pub fn store_wrapped_kek(&self, id: KekId, blob: &[u8]) -> Result<(), StoreError> {
        let _g = self.gate.read().map_err(|_| backend("gate poisoned"))?;
        self.meta
            .insert(meta_key(META_WRAPPED, id), blob)
            .map_err(backend)?;
        drop(_g);
        self.checkpoint()
    }

    /// Every wrapped KEK blob kept, by id.
    pub fn wrapped_keks(&self) -> Result<Vec<(KekId, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(META_WRAPPED) {
            let (k, v) = kv.map_err(backend)?;
            if let Some(id) = id_from_meta_key(META_WRAPPED, &k) {
                out.push((id, v.to_vec()));
            }
        }
        Ok(out)
    }

    /// Deletes the wrapped blob of a retired KEK.
    pub fn remove_wrapped_kek(&self, id: KekId) -> Result<(), StoreError> {
        if self.required_keks()?.contains(&id) {
            return Err(StoreError::Kek(format!("KEK {id} is still needed")));
        }
        self.meta
            .remove(meta_key(META_WRAPPED, id))
            .map_err(backend)?;
        self.checkpoint()
    }

    pub(super) fn kek(&self, id: KekId) -> Result<Arc<Kek>, StoreError> {
        Keyring::kek(&self.keyring, id)
    }

    pub(super) fn current(&self) -> Result<Arc<Kek>, StoreError> {
        Keyring::current(&self.keyring)
    }

    /// Rotates to `new`: registers it as the current KEK, re-wraps every record, and retires
    /// the KEKs no record needs any more. Online; resumable after a crash (call it again with
    /// the same KEK after unlocking with the old and the new one).
    pub fn rotate_kek(&self, new: Kek) -> Result<KekRotation, StoreError> {
        KekRotation::run(
            || self.begin_kek_rotation(new),
            |max| self.rewrap_step(max),
            || self.finish_kek_rotation(),
        )
    }

    /// First step of a rotation: `new` is registered and becomes the KEK of every write
    /// from now on (durable before return). Both KEKs stay required until
    /// [`finish_kek_rotation`](Self::finish_kek_rotation).
    pub fn begin_kek_rotation(&self, new: Kek) -> Result<(), StoreError> {
        let id = new.id();
        let _g = self.exclusive()?;
        let mut ring = self
            .keyring
            .write()
            .map_err(|_| backend("keyring lock poisoned"))?;
        if ring.keks.is_empty() {
            return Err(StoreError::Locked);
        }
        match self.meta.get(meta_key(META_CHECK, id)).map_err(backend)? {
            Some(check) => verify_check(&new, &check)?,
            None => self.register(&new)?,
        }
        self.meta
            .insert(META_CURRENT, &id.0.to_be_bytes())
            .map_err(backend)?;
        ring.current = Some(id);
        ring.keks.insert(id, Arc::new(new));
        drop(ring);
        self.cache.clear();
        drop(_g);
        self.checkpoint()
    }

    /// Re-wraps up to `max` records not under the current KEK (durable before return).
    /// Returns how many were re-wrapped and the damaged records that were skipped.
    pub fn rewrap_step(&self, max: usize) -> Result<(usize, Vec<String>), StoreError> {
        let current = self.current()?;
        let mut done = 0;
        let mut skipped = Vec::new();
        for kv in self.objects.iter() {
            if done >= max {
                break;
            }
            let (k, raw) = kv.map_err(backend)?;
            let uid = String::from_utf8_lossy(&k).into_owned();
            let parsed = match record::parse(&uid, &raw) {
                Ok(p) => p,
                Err(_) => {
                    skipped.push(uid);
                    continue;
                }
            };
            let Some((id, wrapped)) = &parsed.wrapped else {
                continue;
            };
            if *id == current.id() {
                continue;
            }
            let object = match self
                .kek(*id)
                .and_then(|kek| record::open_sealed(&uid, wrapped, &kek))
            {
                Ok(o) => o,
                Err(_) => {
                    skipped.push(uid);
                    continue;
                }
            };
            let new_raw = record::rewrap(&parsed, &object, &current)?;
            let _g = self.gate.read().map_err(|_| backend("gate poisoned"))?;
            // The swap and the cache entry's removal in one section (`cache.rs`): a changed
            // record means a changed revision.
            let mut section = self.cache.section();
            let swapped = self
                .objects
                .compare_and_swap(&k, Some(&raw), Some(new_raw))
                .map_err(backend)?;
            match section.as_mut() {
                Some(s) => s.remove(&uid),
                None => self.cache.clear(),
            }
            drop(section);
            if swapped.is_ok() {
                self.journal(std::iter::once(uid));
                done += 1;
            }
        }
        for s in &skipped {
            if let Ok(mut c) = self.corrupt.lock() {
                c.insert(s.clone());
            }
        }
        if done > 0 {
            self.checkpoint()?;
        }
        Ok((done, skipped))
    }

    /// Last step of a rotation: if no readable record needs an older KEK, retires every
    /// KEK but the current one and returns them; otherwise fails (run `rewrap_step` again).
    pub fn finish_kek_rotation(&self) -> Result<Vec<KekId>, StoreError> {
        let current = self.current()?.id();
        for kv in self.objects.iter() {
            let (k, raw) = kv.map_err(backend)?;
            let uid = String::from_utf8_lossy(&k).into_owned();
            let Ok(parsed) = record::parse(&uid, &raw) else {
                continue;
            };
            if let Some((id, wrapped)) = &parsed.wrapped
                && *id != current
                && self
                    .kek(*id)
                    .and_then(|kek| record::open_sealed(&uid, wrapped, &kek))
                    .is_ok()
            {
                return Err(StoreError::Kek(format!(
                    "rotation not finished: {uid} is still wrapped by KEK {id}"
                )));
            }
        }
        let mut retired = Vec::new();
        for id in self.required_keks()? {
            if id != current {
                self.meta
                    .insert(meta_key(META_RETIRED, id), &[])
                    .map_err(backend)?;
                retired.push(id);
            }
        }
        self.checkpoint()?;
        if let Ok(mut ring) = self.keyring.write() {
            ring.keks.retain(|id, _| *id == current);
        }
        self.cache.clear();
        Ok(retired)
    }
}

fn verify_check(kek: &Kek, check: &[u8]) -> Result<(), StoreError> {
    match kek.unwrap(check) {
        Ok(p) if p.as_slice() == CHECK_PLAIN => Ok(()),
        _ => Err(StoreError::Kek(format!(
            "the key given as KEK {} is not the one this store registered under that id",
            kek.id()
        ))),
    }
}
