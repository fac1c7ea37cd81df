//! The record format.
//!
//! One JSON object per line, fields in this order:
//! `{"seq":N,"time":..,"identity":..,"peer":..,"operation":..,"uids":[..],"status":..,
//! "reason":..,"message":..,"prev":"<hex>","hash":"<hex>"}`. `seq` counts records from 1.
//! `hash` is the SHA-256 of the line up to (not including) `,"hash":`, followed by `}`; that
//! is, of the record without its own hash. `prev` is the previous record's `hash` (64 zeros for
//! the first record, [`GENESIS`]).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AuditError;

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record (without its own hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Record number, from 1.
    pub seq: u64,
    /// RFC 3339 time, UTC.
    pub time: String,
    /// The caller's identity.
    pub identity: String,
    /// The peer's address.
    pub peer: String,
    /// The Operation's name (`Get`), or `-` when the request named none.
    pub operation: String,
    /// Unique Identifiers the item named or produced.
    pub uids: Vec<String>,
    /// Result Status name (`Success`, `OperationFailed`, `OperationUndone`, `NotRun`).
    pub status: String,
    /// Result Reason name, on failure.
    pub reason: Option<String>,
    /// Result Message (the server's fixed text), on failure.
    pub message: Option<String>,
    /// The previous record's hash.
    pub prev: String,
}

/// A record's fields, borrowed: serializes exactly as [`Record`] does (the same fields in the
/// same order), so the writer renders a record without copying its fields first.
#[derive(Debug, Serialize)]
pub(super) struct RecordRef<'a> {
    pub(super) seq: u64,
    pub(super) time: &'a str,
    pub(super) identity: &'a str,
    pub(super) peer: &'a str,
    pub(super) operation: &'a str,
    pub(super) uids: &'a [String],
    pub(super) status: &'a str,
    pub(super) reason: Option<&'a str>,
    pub(super) message: Option<&'a str>,
    pub(super) prev: &'a str,
}

#[cfg(test)]
impl Record {
    fn borrowed(&self) -> RecordRef<'_> {
        RecordRef {
            seq: self.seq,
            time: &self.time,
            identity: &self.identity,
            peer: &self.peer,
            operation: &self.operation,
            uids: &self.uids,
            status: &self.status,
            reason: self.reason.as_deref(),
            message: self.message.as_deref(),
            prev: &self.prev,
        }
    }
}

/// Appends the record's line and a newline to `out` (the JSON serialized in place, hashed
/// there, then its closing brace replaced by the hash field) and returns the hash, 64 hex
/// digits.
pub(super) fn render_into(
    record: &RecordRef<'_>,
    out: &mut Vec<u8>,
) -> Result<[u8; 64], AuditError> {
    let malformed = |reason: String| AuditError::Malformed {
        record: usize::try_from(record.seq).unwrap_or(usize::MAX),
        reason,
    };
    let start = out.len();
    serde_json::to_writer(&mut *out, record).map_err(|e| malformed(e.to_string()))?;
    let digest = Sha256::digest(out.get(start..).unwrap_or_default());
    let mut hash = [0u8; 64];
    hex::encode_to_slice(digest, &mut hash).map_err(|e| malformed(e.to_string()))?;
    if out.pop() != Some(b'}') {
        return Err(malformed("not a JSON object".to_owned()));
    }
    out.extend_from_slice(b",\"hash\":\"");
    out.extend_from_slice(&hash);
    out.extend_from_slice(b"\"}\n");
    Ok(hash)
}

/// The record's line (without newline) and its hash (tests: the writer uses [`render_into`]).
#[cfg(test)]
pub(super) fn render(record: &Record) -> Result<(String, String), AuditError> {
    let mut out = Vec::new();
    let hash = render_into(&record.borrowed(), &mut out)?;
    out.pop();
    let text = |b: Vec<u8>| {
        String::from_utf8(b).map_err(|e| AuditError::Malformed {
            record: usize::try_from(record.seq).unwrap_or(usize::MAX),
            reason: e.to_string(),
        })
    };
    Ok((text(out)?, text(hash.to_vec())?))
}

/// Splits a line into the record without its hash (what was hashed) and the stated hash.
pub(super) fn split_hash(line: &str) -> Option<(String, &str)> {
    let (open, rest) = line.rsplit_once(",\"hash\":\"")?;
    let hash = rest.strip_suffix("\"}")?;
    Some((format!("{open}}}"), hash))
}
