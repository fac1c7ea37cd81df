//! Checking a chain.
//!
//! **What [`verify`] catches** and how it names it:
//! - a record **edited** without fixing its hash: its own `hash` does not match;
//! - a record edited and re-hashed: the next record's `prev` no longer matches it;
//! - a record **removed**: `seq` jumps (record N is missing);
//! - records **reordered**: a `seq` smaller than expected, or the expected one found later.
//!
//! A chain without a key proves order and integrity only up to its last record: whoever can
//! write the file can cut its tail, or rewrite every record from some point on. [`verify`]
//! returns the count, and [`head`] the last hash, so that an operator can keep both elsewhere
//! (a log shipper, a ticket) and notice a shorter or rewritten file later.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::record::{GENESIS, Record, split_hash};
use super::{AuditError, io_err};

/// Checks the whole chain of the file at `path`, which must start the chain (record 1);
/// returns the number of records. The error names the first record that was edited, removed
/// or reordered.
pub fn verify(path: impl AsRef<Path>) -> Result<usize, AuditError> {
    head(path).map(|(n, _)| n)
}

/// The number of records and the last record's hash (what an operator keeps elsewhere to
/// detect a cut or rewritten tail later), after checking the chain as [`verify`] does.
pub fn head(path: impl AsRef<Path>) -> Result<(usize, String), AuditError> {
    let mut v = Verifier::new();
    v.file(path.as_ref())?;
    Ok((v.records(), v.last_hash().to_owned()))
}

/// Checks a chain across files, in order: the rotated files of an audit log, oldest first,
/// then the current one. Each file must continue the one before it (record numbers and
/// hashes); the first must start the chain, or continue the hash given to
/// [`Verifier::after`].
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The record number expected next (`None`: the first record checked sets it).
    next_seq: Option<u64>,
    prev: String,
    records: usize,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new()
    }
}

impl Verifier {
    /// A chain from its first record (record 1, after 64 zeros).
    pub fn new() -> Self {
        Verifier {
            next_seq: Some(1),
            prev: GENESIS.to_owned(),
            records: 0,
        }
    }

    /// A chain that continues a record whose hash is `hash` (the last hash of the files
    /// before, kept by the operator, or printed by `kmipd admin rotate-audit`).
    pub fn after(hash: &str) -> Self {
        Verifier {
            next_seq: None,
            prev: hash.to_ascii_lowercase(),
            records: 0,
        }
    }

    /// Records checked so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// The hash of the last record checked (the starting hash before any).
    pub fn last_hash(&self) -> &str {
        &self.prev
    }

    /// The number of the last record checked, if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.next_seq
            .map(|n| n.saturating_sub(1))
            .filter(|_| self.records > 0)
    }

    /// Checks the next file of the chain, reading it line by line (memory does not grow with
    /// the file). Record numbers in errors are the records' own.
    pub fn file(&mut self, path: &Path) -> Result<(), AuditError> {
        self.file_with(path, |_, _| {})
    }

    /// [`Verifier::file`], handing each record to `each` (with its line) once its own hash and
    /// its `prev` are checked, in file order: what `kmipd audit search` reads the files with.
    /// A record re-hashed after an edit is only found out at the next record's `prev`, so
    /// `each` has seen it by then; the error still names it.
    pub fn file_with(
        &mut self,
        path: &Path,
        mut each: impl FnMut(&Record, &str),
    ) -> Result<(), AuditError> {
        let file = File::open(path).map_err(io_err(path))?;
        let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        for (i, text) in BufReader::new(file).lines().enumerate() {
            let line = i.saturating_add(1);
            let text = text.map_err(io_err(path))?;
            let malformed = |reason: String| AuditError::Malformed {
                record: line,
                reason,
            };
            let (body, stated) =
                split_hash(&text).ok_or_else(|| malformed("no hash field".to_owned()))?;
            let record: Record =
                serde_json::from_str(&body).map_err(|e| malformed(e.to_string()))?;
            let found = as_usize(record.seq);
            let expected = match self.next_seq {
                Some(n) => n,
                None if record.prev == self.prev => record.seq,
                None => return Err(AuditError::Unanchored { found }),
            };
            if record.seq != expected {
                if record.seq < expected || seq_after_line(path, line, expected)? {
                    return Err(AuditError::Reordered {
                        record: as_usize(expected),
                        line,
                        found,
                    });
                }
                return Err(AuditError::Removed {
                    record: as_usize(expected),
                    after: as_usize(expected.saturating_sub(1)),
                    found,
                });
            }
            if hex::encode(Sha256::digest(body.as_bytes())) != stated {
                return Err(AuditError::Edited {
                    record: found,
                    detail: "its content does not match its hash".to_owned(),
                });
            }
            if record.prev != self.prev {
                return Err(AuditError::Edited {
                    record: found.saturating_sub(1),
                    detail: format!("record {found} carries a different hash of it"),
                });
            }
            stated.clone_into(&mut self.prev);
            self.next_seq = Some(record.seq.saturating_add(1));
            self.records = self.records.saturating_add(1);
            each(&record, &text);
        }
        Ok(())
    }
}

/// True when a line after line `after` of the file holds record `seq` (a second pass, only
/// once a record is out of place: it tells a reordering from a removal).
fn seq_after_line(path: &Path, after: usize, seq: u64) -> Result<bool, AuditError> {
    #[derive(Deserialize)]
    struct SeqOnly {
        seq: u64,
    }
    let file = File::open(path).map_err(io_err(path))?;
    for text in BufReader::new(file).lines().skip(after) {
        let text = text.map_err(io_err(path))?;
        if serde_json::from_str::<SeqOnly>(&text).is_ok_and(|r| r.seq == seq) {
            return Ok(true);
        }
    }
    Ok(false)
}
