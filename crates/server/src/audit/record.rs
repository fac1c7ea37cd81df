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

/// The record's line (without newline) and its hash.
pub(super) fn render(record: &Record) -> Result<(String, String), AuditError> {
    let body = serde_json::to_string(record).map_err(|e| AuditError::Malformed {
        record: usize::try_from(record.seq).unwrap_or(usize::MAX),
        reason: e.to_string(),
    })?;
    let open = body.strip_suffix('}').unwrap_or(&body);
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    Ok((format!("{open},\"hash\":\"{hash}\"}}"), hash))
}

/// Splits a line into the record without its hash (what was hashed) and the stated hash.
pub(super) fn split_hash(line: &str) -> Option<(String, &str)> {
    let (open, rest) = line.rsplit_once(",\"hash\":\"")?;
    let hash = rest.strip_suffix("\"}")?;
    Some((format!("{open}}}"), hash))
}
