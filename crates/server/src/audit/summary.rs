//! What a record holds of a request/response exchange.
//!
//! Per batch item: the operation, the object identifiers the item named or produced, the Result
//! Status and Result Reason (and the server's fixed Result Message). The writer adds the time
//! (RFC 3339, UTC), the caller's identity (from its verified certificate) and the peer address.
//! Never key material: a summary is built only from those fields, never from payload bytes, so
//! a registered key's bytes cannot reach the file (a test registers a key and searches the file
//! for it).

use kmipd_proto::enums::result_status;
use kmipd_proto::message::ResponseMessage;
use kmipd_proto::reader::StructReader;
use kmipd_proto::spec;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

/// Most identifiers recorded for one item (a Locate may answer thousands); the rest are counted.
const MAX_UIDS: usize = 64;

/// The parts of one batch item that are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemSummary {
    /// Operation name.
    pub operation: String,
    /// Unique Identifiers.
    pub uids: Vec<String>,
    /// Result Status name.
    pub status: String,
    /// Result Reason name.
    pub reason: Option<String>,
    /// Result Message.
    pub message: Option<String>,
}

impl ItemSummary {
    /// The record of an act that is not a KMIP batch item (an admin command, a restore): Success
    /// with `result`'s message, or Operation Failed with its error.
    pub fn outcome<E: std::fmt::Display>(
        operation: impl Into<String>,
        uids: Vec<String>,
        result: &Result<String, E>,
    ) -> Self {
        let (status, message) = match result {
            Ok(m) => ("Success", m.clone()),
            Err(e) => ("OperationFailed", e.to_string()),
        };
        ItemSummary {
            operation: operation.into(),
            uids,
            status: status.into(),
            reason: None,
            message: Some(message),
        }
    }
}

/// The recorded parts of every batch item of an exchange. Items the server did not run (after
/// a failure under Stop) are recorded as `NotRun`; a request that could not be read at all is
/// recorded from the response's items.
pub fn summarize(request: &Ttlv, response: &Ttlv) -> Vec<ItemSummary> {
    // Read in place: the payloads (a Get's key) are looked at, not copied.
    let answers = ResponseMessage::read(response)
        .map(|(_, items)| items)
        .unwrap_or_default();
    let asked = request_items(request);
    let n = asked.len().max(answers.len()).max(1);
    (0..n)
        .map(|i| {
            let q = asked.get(i);
            let a = answers.get(i);
            let op = q.and_then(|q| q.0).or_else(|| a.and_then(|a| a.operation));
            let mut uids = Vec::new();
            if let Some(p) = q.and_then(|q| q.1) {
                collect_uids(p, &mut uids);
            }
            if let Some(p) = a.and_then(|a| a.payload) {
                collect_uids(p, &mut uids);
            }
            if uids.len() > MAX_UIDS {
                let more = uids.len().saturating_sub(MAX_UIDS);
                uids.truncate(MAX_UIDS);
                uids.push(format!("(+{more} more)"));
            }
            ItemSummary {
                operation: op.map_or_else(|| "-".to_owned(), |o| enum_name(tag::OPERATION, o)),
                uids,
                status: a.map_or_else(
                    || "NotRun".to_owned(),
                    |a| enum_name(tag::RESULT_STATUS, a.result_status),
                ),
                reason: a
                    .and_then(|a| a.result_reason)
                    .map(|r| enum_name(tag::RESULT_REASON, r)),
                message: a.and_then(|a| {
                    if a.result_status != result_status::SUCCESS {
                        a.result_message.map(str::to_owned)
                    } else {
                        a.payload.and_then(pkcs11_failure)
                    }
                }),
            }
        })
        .collect()
}

/// A PKCS#11 return code other than CKR_OK in a successful answer: the PKCS_11 operation
/// carries its failures (another identity's Correlation Value, a function kmipd does not offer)
/// inside a KMIP Success, so the record's message is where an auditor sees them.
fn pkcs11_failure(payload: &Ttlv) -> Option<String> {
    let Value::Structure(items) = &payload.value else {
        return None;
    };
    items.iter().find_map(|i| match i.value {
        Value::Enumeration(rv) if i.tag == tag::PKCS_11_RETURN_CODE && rv != 0 => Some(format!(
            "PKCS#11 return code {}",
            enum_name(tag::PKCS_11_RETURN_CODE, rv)
        )),
        _ => None,
    })
}

/// (Operation, Request Payload) of each batch item, read leniently (a malformed request still
/// shows what can be read).
fn request_items(request: &Ttlv) -> Vec<(Option<u32>, Option<&Ttlv>)> {
    let Ok(r) = StructReader::any(request) else {
        return Vec::new();
    };
    r.repeated(tag::BATCH_ITEM)
        .map(|b| match StructReader::any(b) {
            Ok(b) => (
                b.enumeration(tag::OPERATION).ok().flatten(),
                b.optional(tag::REQUEST_PAYLOAD),
            ),
            Err(_) => (None, None),
        })
        .collect()
}

/// Text identifiers at the top of a payload (Unique Identifier and the key-pair forms), in
/// order, without repeats. Nothing else of the payload is looked at.
fn collect_uids(payload: &Ttlv, out: &mut Vec<String>) {
    let Value::Structure(items) = &payload.value else {
        return;
    };
    for i in items {
        if ![
            tag::UNIQUE_IDENTIFIER,
            tag::PRIVATE_KEY_UNIQUE_IDENTIFIER,
            tag::PUBLIC_KEY_UNIQUE_IDENTIFIER,
        ]
        .contains(&i.tag)
        {
            continue;
        }
        let uid = match &i.value {
            Value::TextString(s) => s.clone(),
            // 2.x: an identifier of this batch by position or kind.
            Value::Integer(n) => format!("(batch item {n})"),
            Value::Enumeration(_) => "(placeholder)".to_owned(),
            _ => continue,
        };
        if !out.contains(&uid) {
            out.push(uid);
        }
    }
}

/// The XML name of an enumeration value of `t`, or its number in hex.
fn enum_name(t: kmipd_ttlv::Tag, v: u32) -> String {
    spec::enum_of_tag(t.value())
        .and_then(|e| e.canonical_name(v))
        .map_or_else(|| format!("0x{v:08X}"), str::to_owned)
}
