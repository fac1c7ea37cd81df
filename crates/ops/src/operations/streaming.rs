//! The request side of streamed cryptography, shared by Encrypt, Decrypt, Sign, Signature
//! Verify, MAC, MAC Verify and Hash: reading Init Indicator, Correlation Value and Final
//! Indicator (KMIP 2.1 §6.1: "Multi-part cryptographic operations"), finding the stream a
//! request continues, and staging what the step does to it. The table, its bounds and its
//! ownership rules: `crate::streams`; the cryptographic state: `crate::crypto::stream`.
//!
//! - No Init Indicator and no Correlation Value, or Init and Final Indicator together without
//!   a Correlation Value: a single-part operation.
//! - Init Indicator (without Final): the first part; the answer carries a new Correlation Value.
//! - A Correlation Value (without Init): a later part, the last one with Final Indicator. Its
//!   key is the stream's: a request that names another key is refused (Invalid Field).
//!
//! Data may be absent from a first or final part (it is then empty).

use kmipd_proto::build;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::crypto::stream::State;
use crate::crypto::usage::{self, Key, Use};
use crate::error::{Error, Result};
use crate::object::uid_item;
use crate::streams::{Change, Stream};

/// What a request is, as a part of a stream.
pub(crate) enum Step {
    /// A single-part operation.
    Single,
    /// The first part of a new stream.
    Open,
    /// A later part of the stream under `value`.
    Continue {
        /// The Correlation Value.
        value: Vec<u8>,
        /// A copy of the stream, to advance.
        stream: Box<Stream>,
        /// True for the final part.
        last: bool,
    },
}

impl Step {
    /// The stream a later part continues.
    pub(crate) fn stream(&self) -> Option<&Stream> {
        match self {
            Step::Continue { stream, .. } => Some(stream),
            _ => None,
        }
    }
}

/// Reads the indicators of a request of `operation`.
pub(crate) fn step(ctx: &Ctx<'_>, r: &StructReader<'_>, operation: u32) -> Result<Step> {
    let correlation = r.bytes(tag::CORRELATION_VALUE)?;
    let init = r.boolean(tag::INIT_INDICATOR)?.unwrap_or(false);
    let last = r.boolean(tag::FINAL_INDICATOR)?.unwrap_or(false);
    let streams = || {
        ctx.streams
            .ok_or(Error::FeatureNotSupported("streamed cryptography here"))
    };
    match (init, correlation) {
        (false, None) => Ok(Step::Single),
        (true, None) if last => Ok(Step::Single),
        (true, _) => {
            streams()?;
            Ok(Step::Open)
        }
        (false, Some(value)) => {
            let stream =
                Box::new(streams()?.fetch(ctx.principal.name(), operation, value, ctx.now)?);
            Ok(Step::Continue {
                value: value.to_vec(),
                stream,
                last,
            })
        }
    }
}

/// The key of a request: the one it names; for a later part, the stream's (a request may
/// repeat its Unique Identifier, not name another).
pub(crate) fn key(
    ctx: &mut Ctx<'_>,
    r: &StructReader<'_>,
    stream: Option<&Stream>,
    mask: u32,
    how: Use,
) -> Result<Key> {
    let Some(uid) = stream.and_then(|s| s.uid.as_deref()) else {
        return usage::load(ctx, r, mask, how);
    };
    if r.optional(tag::UNIQUE_IDENTIFIER).is_some() {
        let key = usage::load(ctx, r, mask, how)?;
        if key.obj.uid != uid {
            return Err(Error::InvalidField(
                "the Unique Identifier is not the stream's",
            ));
        }
        return Ok(key);
    }
    let named = build::structure(tag::REQUEST_PAYLOAD, vec![uid_item(uid)]);
    usage::load(ctx, &StructReader::any(&named)?, mask, how)
}

/// The Data of a part (empty when absent).
pub(crate) fn data<'a>(r: &StructReader<'a>) -> Result<&'a [u8]> {
    Ok(r.bytes(tag::DATA)?.unwrap_or_default())
}

/// Opens a stream of `operation` (on key `uid`) for the requester with `state`: its
/// Correlation Value, kept once the request completes.
pub(crate) fn open(
    ctx: &mut Ctx<'_>,
    operation: u32,
    uid: Option<&str>,
    state: State,
) -> Result<Vec<u8>> {
    let streams = ctx
        .streams
        .ok_or(Error::FeatureNotSupported("streamed cryptography here"))?;
    let who = ctx.principal.name();
    let value = streams.reserve(who, ctx.now)?;
    let stream = Stream::new(who, operation, uid.map(str::to_owned), state);
    ctx.stream_changes.push(Change::Open(value.clone(), stream));
    Ok(value)
}

/// Keeps the advanced `stream` (a part that is not the last), or closes it (the last).
pub(crate) fn advance(ctx: &mut Ctx<'_>, value: Vec<u8>, stream: Box<Stream>, last: bool) {
    let change = if last {
        Change::Close(value, stream.owner().to_owned())
    } else {
        Change::Advance(value, *stream)
    };
    ctx.stream_changes.push(change);
}

/// The Correlation Value item of an answer.
pub(crate) fn correlation_item(value: Vec<u8>) -> Ttlv {
    build::bytes(tag::CORRELATION_VALUE, value)
}
