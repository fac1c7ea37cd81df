//! Online backup and offline restore (described in the module docs of [`crate::storage`]).

use std::path::{Path, PathBuf};

use kmipd_store::{ObjectStore, SledStore};

use super::{StorageError, open_sled};
use crate::config::Config;

/// A written backup. `Display` is the line `kmipd admin backup` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackedUp {
    /// The file.
    pub path: PathBuf,
    /// Object records in it.
    pub records: usize,
    /// Metadata entries (format, KEK check values, wrapped KEKs).
    pub meta: usize,
}

impl std::fmt::Display for BackedUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backup written to {}: {} records, {} metadata entries",
            self.path.display(),
            self.records,
            self.meta
        )
    }
}

/// Writes a consistent backup of `store` to `path` (absolute, must not exist) while it serves.
pub fn backup(store: &SledStore, path: &Path) -> Result<BackedUp, StorageError> {
    if !path.is_absolute() {
        return Err(StorageError::Refused(format!(
            "backup path {} is not absolute",
            path.display()
        )));
    }
    if path.exists() {
        return Err(StorageError::Refused(format!(
            "{} exists: choose a new file",
            path.display()
        )));
    }
    let info = store.backup(path)?;
    let done = BackedUp {
        path: path.to_owned(),
        records: info.records,
        meta: info.meta,
    };
    tracing::info!("{done}");
    Ok(done)
}

/// A restored store, unlocked. `Display` is the line `kmipd restore` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Object records restored.
    pub records: usize,
    /// Metadata entries restored.
    pub meta: usize,
    /// Objects readable once unlocked.
    pub objects: usize,
    /// Damaged records (restored as they were; unreadable): how many.
    pub damaged: usize,
    /// The first damaged record's identifier, when one could be read.
    pub first_damaged: Option<String>,
}

impl std::fmt::Display for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "restored {} records and {} metadata entries into {}; unlocked with the master key, \
             {} objects readable",
            self.records,
            self.meta,
            self.data_dir.display(),
            self.objects
        )?;
        if self.damaged > 0 {
            write!(
                f,
                "; {} damaged records (first: {})",
                self.damaged,
                self.first_damaged.as_deref().unwrap_or("unparsable")
            )?;
        }
        Ok(())
    }
}

/// `kmipd restore`: creates the sled store in `data_dir` (absent or empty) from `backup`, then
/// opens it with the configured HSM to prove that the master key unwraps its KEKs and counts
/// the readable objects. The server must not be running on `data_dir`.
pub fn restore(config: &Config, backup: &Path, data_dir: &Path) -> Result<Restored, StorageError> {
    let info = SledStore::restore(backup, data_dir)?;
    let mut c = config.clone();
    c.store.data_dir = data_dir.to_owned();
    let (checked, _) = open_sled(&c).map_err(|e| {
        StorageError::Refused(format!(
            "restored {} records into {}, but the store cannot be unlocked with the configured \
             master key: {e}",
            info.records,
            data_dir.display()
        ))
    })?;
    let objects = checked.all()?.len();
    let corrupt = checked.corrupt_records();
    let damaged = corrupt.len().max(info.unindexed);
    Ok(Restored {
        data_dir: data_dir.to_owned(),
        records: info.records,
        meta: info.meta,
        objects,
        damaged,
        first_damaged: corrupt.first().cloned(),
    })
}
