//! Searching audit files (`kmipd audit search`), checking their chain while reading them.
//!
//! The files are read once, in the order given (rotated files oldest first, then the current
//! one), through [`Verifier::file_with`]: the chain rules are the verifier's, not repeated
//! here. A record is handed to the caller only once the **next** record has confirmed it (its
//! `prev` is the record's hash), so a record edited and re-hashed is never printed as a match;
//! the last record of the last file has no successor and is handed over when the reading ends
//! without a problem (the limit of a keyless chain, see `verify.rs`). On the first problem the
//! search stops with the file and the verifier's error, which names the record: matches
//! already handed over are all before it.
//!
//! [`Filter`]: every criterion given must hold (AND). `identity` is compared exactly,
//! `object` must be one of the record's `uids`, `operation` and `result` ignore case (`result`
//! is the record's `status` or its `reason`), `since` is inclusive and `until` exclusive.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::AuditError;
use super::record::Record;
use super::verify::Verifier;

/// What a record must match. Empty: every record.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The caller's identity, exactly.
    pub identity: Option<String>,
    /// One of the record's Unique Identifiers.
    pub object: Option<String>,
    /// The operation name (`Get`), any case.
    pub operation: Option<String>,
    /// The Result Status (`Success`, `OperationFailed`) or Result Reason (`ItemNotFound`), any
    /// case.
    pub result: Option<String>,
    /// Records at this time or later.
    pub since: Option<OffsetDateTime>,
    /// Records before this time.
    pub until: Option<OffsetDateTime>,
}

impl Filter {
    /// True when `record` meets every criterion given.
    pub fn matches(&self, record: &Record) -> bool {
        let same = |want: &Option<String>, have: &str| {
            want.as_ref().is_none_or(|w| w.eq_ignore_ascii_case(have))
        };
        let result_ok = self.result.as_ref().is_none_or(|w| {
            w.eq_ignore_ascii_case(&record.status)
                || record
                    .reason
                    .as_ref()
                    .is_some_and(|r| w.eq_ignore_ascii_case(r))
        });
        let time_ok = if self.since.is_none() && self.until.is_none() {
            true
        } else {
            OffsetDateTime::parse(&record.time, &Rfc3339).is_ok_and(|t| {
                self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
            })
        };
        self.identity.as_ref().is_none_or(|i| *i == record.identity)
            && self
                .object
                .as_ref()
                .is_none_or(|o| record.uids.iter().any(|u| u == o))
            && same(&self.operation, &record.operation)
            && result_ok
            && time_ok
    }
}

/// Parses a `--since`/`--until` time: RFC 3339 (`2026-12-06T20:00:00Z`) or a date
/// (`2026-12-06`, midnight UTC).
pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    OffsetDateTime::parse(&format!("{s}T00:00:00Z"), &Rfc3339).map_err(|_| {
        format!("{s:?} is not an RFC 3339 time (2026-12-06T20:00:00Z) or a date (2026-12-06)")
    })
}

/// How a search that read every file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Searched {
    /// Records read (and checked).
    pub records: usize,
    /// Records that matched.
    pub matched: usize,
    /// The last record's number, if any.
    pub last_seq: Option<u64>,
    /// The last record's hash.
    pub last_hash: String,
}

/// Why a search stopped.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The chain is broken (or a file unreadable) in this file.
    #[error("{}: {source}", file.display())]
    Chain {
        /// The file.
        file: PathBuf,
        /// The verifier's finding.
        source: AuditError,
    },
    /// Handing a match over failed (the output was closed).
    #[error("writing a match: {0}")]
    Output(std::io::Error),
}

/// Reads `files` in order through `chain` (a [`Verifier`] from record 1 or after a hash) and
/// hands each confirmed record that matches `filter` to `out` (the record and its line, as in
/// the file). Stops at the first broken link, or when `out` fails.
pub fn search(
    mut chain: Verifier,
    files: &[impl AsRef<Path>],
    filter: &Filter,
    mut out: impl FnMut(&Record, &str) -> std::io::Result<()>,
) -> Result<Searched, SearchError> {
    // The last record read, when it matched: handed over once the next record confirms it.
    let mut pending: Option<(Record, String)> = None;
    let mut matched = 0usize;
    let mut failed: Option<std::io::Error> = None;
    let mut emit = |r: &Record, line: &str, failed: &mut Option<std::io::Error>| {
        if failed.is_none()
            && let Err(e) = out(r, line)
        {
            *failed = Some(e);
        }
    };
    for file in files {
        let file = file.as_ref();
        chain
            .file_with(file, |record, line| {
                if let Some((r, l)) = pending.take() {
                    emit(&r, &l, &mut failed);
                }
                if filter.matches(record) {
                    matched = matched.saturating_add(1);
                    pending = Some((record.clone(), line.to_owned()));
                }
            })
            .map_err(|source| SearchError::Chain {
                file: file.to_owned(),
                source,
            })?;
        if let Some(e) = failed.take() {
            return Err(SearchError::Output(e));
        }
    }
    if let Some((r, l)) = pending.take() {
        emit(&r, &l, &mut failed);
    }
    if let Some(e) = failed {
        return Err(SearchError::Output(e));
    }
    Ok(Searched {
        records: chain.records(),
        matched,
        last_seq: chain.last_seq(),
        last_hash: chain.last_hash().to_owned(),
    })
}
