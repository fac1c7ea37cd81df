//! A commit of a [`SledStore`](super::SledStore), from changes to sled and the WAL.
//!
//! [`SledStore::prepare`](super::SledStore) encodes each change on the caller's thread
//! (records KEK-wrapped, index terms computed, expectations first so they are checked against
//! the state before the commit's own writes); the committer thread (`pipeline.rs`) checks the
//! expectations and appends one WAL frame for a batch ([`encode_payload`]); once that frame
//! is synced, the same thread writes it into sled with plain inserts ([`apply_writes`]), the frame's number last, under `refs`' key `0xFF`.
//! The recovery at open decodes the frames ([`decode_payload`]) and applies them with the
//! same function.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sled::IVec;

use super::cache::Cached;
use super::index::Select;
use super::{SledStore, backend};
use crate::query::{Query, Term, filter_prefix, index_terms};
use crate::record;
use crate::{Change, Revision, StoreError};

/// Key in `refs` of the number of the last WAL frame applied to sled (written after the
/// frame's changes). Not UTF-8, so never a uid.
pub(super) const APPLIED_KEY: &[u8] = &[0xFF];
/// Format byte of the WAL frame payloads this build writes without journal lines (2: no index
/// keys; 1, still replayed: each Put also carried the record's `refs` value).
const WAL_FORMAT: u8 = 2;
/// Format byte of a frame that also carries journal lines (format 2 and one `A` field): only
/// such frames use it, so a store without a journal stays readable by builds before it.
const WAL_FORMAT_JOURNAL: u8 = 3;

pub(super) fn push_lp(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), StoreError> {
    let len = u32::try_from(bytes.len()).map_err(|_| backend("field longer than 4 GiB"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Splits length-prefixed fields.
fn split_lp(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        if rest.len() < len {
            return None;
        }
        let (field, rest) = rest.split_at(len);
        out.push(field);
        bytes = rest;
    }
    Some(out)
}

impl SledStore {
    /// Encodes the changes of a commit (the caller's thread, no lock but the shared gate).
    /// Expectations come first, so that they are checked against the state before the
    /// commit's own writes. With the object cache on, each Put keeps its object (moved, not
    /// copied) and its record's revision, for the committer to put in the cache.
    pub(super) fn prepare(&self, changes: Vec<Change>) -> Result<Vec<Prepared>, StoreError> {
        let kek = self.current()?;
        let mut prepared = Vec::with_capacity(changes.len());
        for c in &changes {
            match c {
                Change::Expect { uid, revision } => prepared.push(Prepared {
                    uid: uid.clone(),
                    op: Op::Expect(*revision),
                }),
                Change::ExpectNoOther { query, seen } => prepared.push(Prepared {
                    uid: String::new(),
                    op: Op::NoOther(Box::new(Search {
                        terms: select_terms(query)?,
                        query: query.clone(),
                        seen: seen.iter().cloned().collect(),
                    })),
                }),
                Change::Put(_) | Change::Delete(_) => {}
            }
        }
        let caching = self.cache.enabled();
        for c in changes {
            match c {
                Change::Put(o) => {
                    // The wrapped object of the uid's cached entry, when this Put leaves the
                    // object structure as it was (`ObjectCache::sealed_for`; none when the
                    // cache is off).
                    let reuse = self.cache.sealed_for(&o, kek.id());
                    let (record, sealed) = record::encode_sealed(&o, &kek, reuse)?;
                    let record = IVec::from(record);
                    let terms = index_terms(&o)?;
                    self.sequence.fetch_max(o.sequence, Ordering::Relaxed);
                    let uid = o.uid.clone();
                    let sequence = o.sequence;
                    let cached = caching.then(|| {
                        let revision = revision_of(&record);
                        Cached::written(o, revision, sealed.map(|w| (kek.id(), w)))
                    });
                    prepared.push(Prepared {
                        uid,
                        op: Op::Put {
                            record,
                            sequence,
                            terms,
                            cached,
                        },
                    });
                }
                Change::Delete(uid) => prepared.push(Prepared {
                    uid,
                    op: Op::Delete,
                }),
                Change::Expect { .. } | Change::ExpectNoOther { .. } => {}
            }
        }
        Ok(prepared)
    }
}

/// A change with its record encoded, ready for the transaction.
pub(super) struct Prepared {
    pub(super) uid: String,
    pub(super) op: Op,
}

/// What a [`Prepared`] does to its uid.
pub(super) enum Op {
    /// The encoded record, and what the in-memory index needs (not in the WAL: a replay
    /// rebuilds the index from the records).
    Put {
        record: IVec,
        sequence: u64,
        terms: Vec<Term>,
        /// The object this record encodes and the record's revision, for the object cache
        /// (`None` when it is off).
        cached: Option<Arc<Cached>>,
    },
    Delete,
    /// A condition checked by the committer, never written (nor logged in the WAL).
    Expect(Option<Revision>),
    /// A condition on a search ([`Change::ExpectNoOther`]), checked by the committer against
    /// the index; never written. Its `uid` is empty.
    NoOther(Box<Search>),
}

/// A [`Change::ExpectNoOther`], ready for the committer.
pub(super) struct Search {
    pub(super) query: Query,
    /// The query's index terms (empty: every object is a candidate).
    pub(super) terms: Vec<Select>,
    pub(super) seen: BTreeSet<String>,
}

impl Prepared {
    /// A write (Put or Delete), not an expectation.
    pub(super) fn writes(&self) -> bool {
        matches!(self.op, Op::Put { .. } | Op::Delete)
    }
}

/// The revision of a raw stored record: the first 16 bytes of its SHA-256.
pub(super) fn revision_of(raw: &[u8]) -> Revision {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(raw);
    let mut r = [0u8; 16];
    if let Some(head) = digest.first_chunk::<16>() {
        r = *head;
    }
    Revision(r)
}

/// One write of a frame: the uid and its new record (`None`: deleted).
pub(super) type Write = (String, Option<IVec>);

/// Writes one synced WAL frame into sled with plain inserts, in the frame's order, then
/// `frame` as the last applied frame under `refs`' key `0xFF`. Used by the syncer thread
/// once the frame is durable in the WAL (`pipeline.rs`) and by the replay at open. Not atomic
/// in sled, and need not be: every write is of a frame already durable in the WAL, the
/// frame's number comes last (sled recovers a prefix of its log, so a frame number on disk
/// means the frame's writes are there too), and re-applying a frame writes the same values
/// (`durable.rs`, "Recovery").
pub(super) fn apply_writes(
    objects: &sled::Tree,
    refs: &sled::Tree,
    writes: &[Write],
    frame: u64,
) -> Result<(), sled::Error> {
    for (uid, record) in writes {
        match record {
            Some(r) => objects.insert(uid.as_bytes(), r.clone())?,
            None => objects.remove(uid.as_bytes())?,
        };
    }
    refs.insert(APPLIED_KEY, &frame.to_be_bytes())?;
    Ok(())
}

/// Why applying a commit failed.
pub(super) enum Failure {
    /// An expectation failed (nothing applied, nothing appended): this commit's fault.
    Aborted(StoreError),
    /// Storage, WAL or a poisoned store: nothing more can be committed.
    Other(String),
}

impl Failure {
    pub(super) fn into_error(self) -> StoreError {
        match self {
            Failure::Aborted(e) => e,
            Failure::Other(m) => StoreError::Backend(m),
        }
    }
}

/// The WAL payload of a commit: format byte, frame number (8 bytes BE, set under the commit
/// mutex by [`set_frame_number`]), then one lp field per change: `P` lp(uid) lp(record) or
/// `D` lp(uid). The record is the encoded one (key material KEK-wrapped). Format 1 had a
/// third field after a Put's record (its index keys), which a replay ignores. Expectations
/// are not written: a logged commit already passed them. Journal lines (`crate::journal`),
/// when there are any, follow as one last field `A` lp(lines), and the format byte is then 3.
pub(super) fn encode_payload(prepared: &[&Prepared], lines: &[u8]) -> Result<Vec<u8>, StoreError> {
    let format = if lines.is_empty() {
        WAL_FORMAT
    } else {
        WAL_FORMAT_JOURNAL
    };
    let mut out = vec![format];
    out.extend_from_slice(&0u64.to_be_bytes());
    let mut change = Vec::new();
    for p in prepared {
        change.clear();
        match &p.op {
            Op::Put { record, .. } => {
                change.push(b'P');
                push_lp(&mut change, p.uid.as_bytes())?;
                push_lp(&mut change, record)?;
            }
            Op::Delete => {
                change.push(b'D');
                push_lp(&mut change, p.uid.as_bytes())?;
            }
            Op::Expect(_) | Op::NoOther(_) => continue,
        }
        push_lp(&mut out, &change)?;
    }
    if !lines.is_empty() {
        change.clear();
        change.push(b'A');
        push_lp(&mut change, lines)?;
        push_lp(&mut out, &change)?;
    }
    Ok(out)
}

pub(super) fn set_frame_number(payload: &mut [u8], n: u64) -> std::io::Result<()> {
    payload
        .get_mut(1..9)
        .ok_or_else(|| std::io::Error::other("WAL payload too short"))?
        .copy_from_slice(&n.to_be_bytes());
    Ok(())
}

/// A decoded WAL payload: its frame number, its writes, and its journal lines (empty when
/// it has none).
pub(super) struct Decoded<'a> {
    pub(super) frame: u64,
    pub(super) writes: Vec<Write>,
    pub(super) lines: &'a [u8],
}

/// Parses a WAL payload (format 1, 2 or 3) back into its frame number, writes (a replay's
/// index is rebuilt from the records) and journal lines.
pub(super) fn decode_payload(payload: &[u8]) -> Option<Decoded<'_>> {
    let (format, rest) = payload.split_first()?;
    if !matches!(*format, 1 | WAL_FORMAT | WAL_FORMAT_JOURNAL) {
        return None;
    }
    let mut lines: &[u8] = &[];
    let (n, rest) = rest.split_first_chunk::<8>()?;
    let mut prepared = Vec::new();
    for change in split_lp(rest)? {
        let (kind, fields) = change.split_first()?;
        let fields = split_lp(fields)?;
        let put = |uid: &[u8], record: &[u8]| {
            Some((
                String::from_utf8(uid.to_vec()).ok()?,
                Some(IVec::from(record)),
            ))
        };
        match (*format, kind, fields.as_slice()) {
            (1, b'P', [uid, rec, _]) | (WAL_FORMAT | WAL_FORMAT_JOURNAL, b'P', [uid, rec]) => {
                prepared.push(put(uid, rec)?);
            }
            (_, b'D', [uid]) => prepared.push((String::from_utf8(uid.to_vec()).ok()?, None)),
            (WAL_FORMAT_JOURNAL, b'A', [text]) if lines.is_empty() => lines = text,
            _ => return None,
        }
    }
    Some(Decoded {
        frame: u64::from_be_bytes(*n),
        writes: prepared,
        lines,
    })
}

/// The index terms of the indexed filters of `query` (none: the query needs a scan).
pub(super) fn select_terms(query: &Query) -> Result<Vec<Select>, StoreError> {
    query
        .filters
        .iter()
        .filter(|f| f.indexed())
        .map(|f| Ok((filter_prefix(f)?, crate::query::term_range(f))))
        .collect()
}
