//! The audit log: one record per batch item, hash-chained, durable before the reply is sent.
//!
//! Each mechanism is described in the module that implements it:
//! - `audit/record.rs`: what a line holds and how it is hashed and chained (the format,
//!   [`Record`]).
//! - `audit/summary.rs`: which parts of a request and its response a record takes, never key
//!   material ([`summarize`]).
//! - `audit/writer.rs`: the open log ([`AuditLog`]): the sled store's journal (the records
//!   made durable in the store's WAL frames) or its own writer thread (group commit; the
//!   reply waits for `fdatasync`), file permissions, crash recovery and rotation.
//! - `audit/verify.rs`: checking a chain, within a file or across rotated files
//!   ([`Verifier`]), and what each kind of tampering is reported as.
//! - `audit/forward.rs`: sending the records on to a collector (`[audit.forward]`), from the
//!   file, resuming after a restart ([`forward`]).
//! - `audit/search.rs`: finding records across files while checking their chain
//!   ([`search`], [`Filter`]; `kmipd audit search`).

use std::path::{Path, PathBuf};

pub mod forward;
mod record;
mod search;
mod summary;
#[cfg(test)]
mod tests;
mod verify;
mod writer;

pub use record::{GENESIS, Record};
pub use search::{Filter, SearchError, Searched, parse_time, search};
pub use summary::{ItemSummary, summarize};
pub use verify::{Verifier, head, verify};
pub use writer::{AuditLog, FILE_MODE, Rotated, rotated_files, rotated_name};

/// What went wrong with the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading, writing or syncing the file failed.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a record.
    #[error("audit record {record}: not a valid record ({reason})")]
    Malformed {
        /// The record number (line number, from 1).
        record: usize,
        /// Why.
        reason: String,
    },
    /// A record's content does not match its hash, or the next record's chain hash.
    #[error("audit record {record} was edited ({detail})")]
    Edited {
        /// The record number.
        record: usize,
        /// What does not match.
        detail: String,
    },
    /// A record is missing.
    #[error(
        "audit record {record} was removed (the record after record {after} is record {found})"
    )]
    Removed {
        /// The missing record's number.
        record: usize,
        /// The last good record before the gap.
        after: usize,
        /// The record found in its place.
        found: usize,
    },
    /// Records are out of order.
    #[error("audit records reordered: line {line} holds record {found}, expected record {record}")]
    Reordered {
        /// The record number expected at this line.
        record: usize,
        /// The line (from 1).
        line: usize,
        /// The record number found there.
        found: usize,
    },
    /// The audit log's lock was poisoned by a panic elsewhere.
    #[error("audit log unusable after an earlier failure")]
    Poisoned,
    /// The sled store that carries the records ([`AuditLog::open_journaled`]) failed them
    /// (poisoned, closing) or could not take the log.
    #[error("audit log in the store's journal: {0}")]
    Store(String),
    /// A rotation was asked of a file that holds no record.
    #[error("audit log {0} holds no record: nothing to rotate")]
    NothingToRotate(PathBuf),
    /// The first record checked does not continue the hash given to [`Verifier::after`].
    #[error(
        "audit record {found} is the first one checked but does not continue the given hash \
         (records before it are missing, or the hash is not the one the earlier files end with)"
    )]
    Unanchored {
        /// Its record number.
        found: usize,
    },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A copy of an I/O error for each of the requests it failed (`io::Error` is not `Clone`).
fn io_copy(path: &Path, e: &std::io::Error) -> AuditError {
    AuditError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(e.kind(), e.to_string()),
    }
}
