//! The KEK and master key rotations (described in the module docs of [`crate::storage`]).

use std::time::Duration;

use kmipd_hsm::MasterKey;
use kmipd_store::KekId;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{KeyringStore, StorageError, new_kek, unwrap_kek};

/// Records re-wrapped per batch of a KEK rotation (each batch is fsynced).
pub const REWRAP_BATCH: usize = 256;

/// A finished KEK rotation. `Display` is the line `kmipd admin rotate-kek` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekRotated {
    /// The KEK that is current now.
    pub kek: KekId,
    /// An interrupted rotation was completed (with the KEK it had started).
    pub resumed: bool,
    /// Records re-wrapped.
    pub rewrapped: usize,
    /// KEKs no record needs any more.
    pub retired: Vec<KekId>,
    /// KEKs whose wrapped blob was removed (retired, or orphaned by an interrupted rotation).
    pub removed: Vec<KekId>,
    /// Damaged records that could not be re-wrapped.
    pub skipped: Vec<String>,
}

impl std::fmt::Display for KekRotated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids = |v: &[KekId]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(
            f,
            "KEK rotated{}: KEK {} is current, {} records re-wrapped",
            if self.resumed {
                " (an interrupted rotation completed)"
            } else {
                ""
            },
            self.kek,
            self.rewrapped
        )?;
        if !self.retired.is_empty() {
            write!(f, "; KEK {} retired", ids(&self.retired))?;
        }
        if !self.removed.is_empty() {
            write!(f, ", wrapped blob of KEK {} removed", ids(&self.removed))?;
        }
        if !self.skipped.is_empty() {
            write!(
                f,
                "; {} damaged records skipped (first: {})",
                self.skipped.len(),
                self.skipped.first().map(String::as_str).unwrap_or_default()
            )?;
        }
        Ok(())
    }
}

/// A finished master key rotation. `Display` is the line `kmipd admin rotate-master-key`
/// prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyRotated {
    /// The master key's id before.
    pub before: String,
    /// Its id now.
    pub current: String,
    /// KEK blobs re-wrapped.
    pub rewrapped: usize,
    /// Old versions destroyed.
    pub destroyed: Vec<String>,
}

impl std::fmt::Display for MasterKeyRotated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "master key rotated: {} is current (was {}), {} KEK blobs re-wrapped, ",
            self.current, self.before, self.rewrapped
        )?;
        if self.destroyed.is_empty() {
            write!(f, "no old version destroyed")
        } else {
            write!(f, "old versions destroyed: {}", self.destroyed.join(", "))
        }
    }
}

/// Removes the wrapped blobs of KEKs the store no longer requires (retired, or orphaned by an
/// interrupted rotation); returns their ids.
fn remove_unrequired_blobs(store: &dyn KeyringStore) -> Result<Vec<KekId>, StorageError> {
    let required = store.required_keks()?;
    let mut removed = Vec::new();
    for (id, _) in store.wrapped_keks()? {
        if !required.contains(&id) {
            store.remove_wrapped_kek(id)?;
            removed.push(id);
        }
    }
    Ok(removed)
}

/// Records per re-wrap batch, and the pause after each batch.
#[cfg(not(feature = "test-hooks"))]
fn rewrap_pace() -> (usize, Option<Duration>) {
    (REWRAP_BATCH, None)
}

/// Records per re-wrap batch, and the pause after each batch: with the `test-hooks` feature,
/// from `KMIPD_TEST_REWRAP_BATCH` and `KMIPD_TEST_REWRAP_PAUSE_MS` when set.
#[cfg(feature = "test-hooks")]
fn rewrap_pace() -> (usize, Option<Duration>) {
    let number = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let batch = number("KMIPD_TEST_REWRAP_BATCH")
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(REWRAP_BATCH);
    (
        batch,
        number("KMIPD_TEST_REWRAP_PAUSE_MS").map(Duration::from_millis),
    )
}

/// Rotates the KEK (see the module docs); resumes an interrupted rotation. `stop` interrupts
/// it between two batches ([`StorageError::Interrupted`]; running it again completes it).
pub fn rotate_kek(
    store: &dyn KeyringStore,
    master: &dyn MasterKey,
    stop: &CancellationToken,
) -> Result<KekRotated, StorageError> {
    let _one_rotation = store.lock_rotations()?;
    let current = store
        .current_kek()?
        .ok_or_else(|| StorageError::Refused("the store has no KEK yet".into()))?;
    let required = store.required_keks()?;
    let resumed = required.len() > 1;
    let kek = if resumed {
        // An interrupted rotation: finish it with the KEK it made current.
        let blobs = store.wrapped_keks()?;
        let blob = blobs
            .iter()
            .find(|(id, _)| *id == current)
            .map(|(_, b)| b)
            .ok_or_else(|| {
                StorageError::Refused(format!("no wrapped blob for the current KEK {current}"))
            })?;
        unwrap_kek(master, current, blob)?
    } else {
        remove_unrequired_blobs(store)?;
        let highest = store
            .wrapped_keks()?
            .iter()
            .map(|(id, _)| id.0)
            .chain(required.iter().map(|id| id.0))
            .chain(std::iter::once(current.0))
            .max()
            .unwrap_or(current.0);
        let id = KekId(
            highest
                .checked_add(1)
                .ok_or_else(|| StorageError::Refused("KEK ids exhausted".into()))?,
        );
        new_kek(store, master, id)?
    };
    let new_id = kek.id();
    info!(kek = %new_id, resumed, "KEK rotation: starting");
    store.begin_kek_rotation(kek)?;
    let (batch, pause) = rewrap_pace();
    let mut rewrapped = 0usize;
    let skipped = loop {
        if stop.is_cancelled() {
            return Err(StorageError::Interrupted(format!(
                "re-wrapping {rewrapped} records under KEK {new_id}"
            )));
        }
        let (done, skipped) = store.rewrap_step(batch)?;
        rewrapped = rewrapped.saturating_add(done);
        if done == 0 {
            break skipped;
        }
        info!(kek = %new_id, rewrapped, "KEK rotation: batch re-wrapped");
        if let Some(p) = pause {
            std::thread::sleep(p);
        }
    };
    let retired = store.finish_kek_rotation()?;
    let removed = remove_unrequired_blobs(store)?;
    let done = KekRotated {
        kek: new_id,
        resumed,
        rewrapped,
        retired,
        removed,
        skipped,
    };
    info!("{done}");
    Ok(done)
}

/// Rotates the master key (see the module docs).
pub fn rotate_master_key(
    store: &dyn KeyringStore,
    master: &dyn MasterKey,
) -> Result<MasterKeyRotated, StorageError> {
    let _one_rotation = store.lock_rotations()?;
    let before = master.id();
    remove_unrequired_blobs(store)?;
    let blobs = store.wrapped_keks()?;
    if blobs.is_empty() {
        return Err(StorageError::Refused("the store holds no KEK blob".into()));
    }
    let mut old: Vec<Vec<u8>> = blobs.iter().map(|(_, b)| b.clone()).collect();
    // A shared store's master key check value is re-wrapped with the KEKs (last).
    let check = store.master_check()?;
    old.extend(check.iter().cloned());
    let mut new = master.rotate(&old)?;
    if new.len() != old.len() {
        return Err(StorageError::Refused(format!(
            "the HSM returned {} blobs for {} KEKs; nothing stored (the old version stays)",
            new.len(),
            old.len()
        )));
    }
    let new_check = match check {
        Some(_) => new.pop(),
        None => None,
    };
    for ((id, _), blob) in blobs.iter().zip(&new) {
        store.store_wrapped_kek(*id, blob)?;
    }
    // Only what is durably stored now keeps its master key version.
    let mut stored: Vec<Vec<u8>> = store.wrapped_keks()?.into_iter().map(|(_, b)| b).collect();
    if let Some(c) = new_check {
        store.set_master_check(&c)?;
        stored.push(c);
    }
    let destroyed = master.confirm_rotation(&stored)?;
    let done = MasterKeyRotated {
        before,
        current: master.id(),
        rewrapped: new.len(),
        destroyed,
    };
    info!("{done}");
    Ok(done)
}
