//! An in-memory [`ObjectStore`]: a map behind a lock. Nothing survives the process.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Change, ManagedObject, ObjectStore, Revision, StoreError};

/// Objects in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Each object with the stamp of the Put that stored it (its revision).
    objects: RwLock<BTreeMap<String, (ManagedObject, u64)>>,
    sequence: AtomicU64,
    /// The last revision stamp given (under the write lock).
    stamp: AtomicU64,
    /// The settings ([`ObjectStore::setting`]).
    settings: RwLock<BTreeMap<String, Vec<u8>>>,
}

/// A stamp as a [`Revision`]: its bytes, zero-padded.
fn revision(stamp: u64) -> Revision {
    let mut r = [0u8; 16];
    let (head, _) = r.split_at_mut(8);
    head.copy_from_slice(&stamp.to_be_bytes());
    Revision(r)
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Backend("memory store lock poisoned".into())
}

impl ObjectStore for MemoryStore {
    fn get(&self, uid: &str) -> Result<Option<ManagedObject>, StoreError> {
        Ok(self
            .objects
            .read()
            .map_err(poisoned)?
            .get(uid)
            .map(|(o, _)| o.clone()))
    }

    fn get_revised(&self, uid: &str) -> Result<Option<(ManagedObject, Revision)>, StoreError> {
        Ok(self
            .objects
            .read()
            .map_err(poisoned)?
            .get(uid)
            .map(|(o, stamp)| (o.clone(), revision(*stamp))))
    }

    fn all(&self) -> Result<Vec<ManagedObject>, StoreError> {
        let mut v: Vec<ManagedObject> = self
            .objects
            .read()
            .map_err(poisoned)?
            .values()
            .map(|(o, _)| o.clone())
            .collect();
        v.sort_by_key(|o| o.sequence);
        Ok(v)
    }

    /// In memory nothing waits: the commit is done before `done` is called, here.
    fn commit_then(&self, changes: Vec<Change>, done: crate::CommitDone) {
        done(self.commit(changes));
    }

    fn commit(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        let mut map = self.objects.write().map_err(poisoned)?;
        for c in &changes {
            match c {
                Change::Expect {
                    uid,
                    revision: want,
                } => {
                    let now = map.get(uid).map(|(_, stamp)| revision(*stamp));
                    if now != *want {
                        return Err(StoreError::Conflict { uid: uid.clone() });
                    }
                }
                Change::ExpectNoOther { query, seen } => {
                    if let Some((uid, _)) = map
                        .iter()
                        .find(|(uid, (o, _))| !seen.contains(uid) && query.matches(o))
                    {
                        return Err(StoreError::Conflict { uid: uid.clone() });
                    }
                }
                Change::Put(_) | Change::Delete(_) => {}
            }
        }
        for c in changes {
            match c {
                Change::Put(o) => {
                    let stamp = self.stamp.fetch_add(1, Ordering::Relaxed).saturating_add(1);
                    map.insert(o.uid.clone(), (o, stamp));
                }
                Change::Delete(uid) => {
                    map.remove(&uid);
                }
                Change::Expect { .. } | Change::ExpectNoOther { .. } => {}
            }
        }
        Ok(())
    }

    fn next_sequence(&self) -> Result<u64, StoreError> {
        Ok(self.sequence.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn reads_are_local(&self) -> bool {
        true
    }

    fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.settings.read().map_err(poisoned)?.get(name).cloned())
    }

    fn set_setting(&self, name: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let mut settings = self.settings.write().map_err(poisoned)?;
        match value {
            Some(v) => settings.insert(name.to_owned(), v.to_vec()),
            None => settings.remove(name),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmipd_proto::attributes::Attributes;

    fn obj(uid: &str, seq: u64) -> ManagedObject {
        ManagedObject {
            uid: uid.into(),
            object_type: 2,
            owner: "o".into(),
            object: None,
            attributes: Attributes::new(),
            sequence: seq,
        }
    }

    #[test]
    fn commit_puts_and_deletes_and_all_keeps_creation_order() {
        let s = MemoryStore::new();
        s.commit(vec![Change::Put(obj("b", 1)), Change::Put(obj("a", 2))])
            .unwrap();
        assert_eq!(
            s.all()
                .unwrap()
                .iter()
                .map(|o| o.uid.as_str())
                .collect::<Vec<_>>(),
            ["b", "a"]
        );
        s.commit(vec![Change::Delete("b".into())]).unwrap();
        assert!(s.get("b").unwrap().is_none());
        assert!(s.get("a").unwrap().is_some());
        assert!(s.next_sequence().unwrap() < s.next_sequence().unwrap());
    }
}
