//! MAC (KMIP 1.4 §4.33, 2.1 §6.1.29): HMAC-SHA1/224/256/384/512 of Data with an Active key
//! whose usage mask has MAC Generate. The algorithm is the Cryptographic Parameters' (request,
//! then the key's attribute), else the key's own (an HMAC key). Streamed
//! (`operations::streaming`), HMAC runs on between the parts (`crypto::stream`); the parts
//! before the last answer the Unique Identifier and the Correlation Value, the last one the
//! MAC Data.

use kmipd_proto::build;
use kmipd_proto::enums::{cryptographic_usage_mask as mask, operation as op};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::crypto::params::Params;
use crate::crypto::stream::{self, Engine, State};
use crate::crypto::usage::{self, Key, Use};
use crate::crypto::{digest, ossl};
use crate::error::{Error, Result};
use crate::object::uid_item;
use crate::operations::streaming::{self, Step};

/// The MAC algorithm for this request and key.
pub(crate) fn mac_algorithm(r: &StructReader<'_>, key: &Key) -> Result<u32> {
    let params = Params::in_request(r)?.or(&key.params);
    params
        .cryptographic_algorithm
        .or(key.algorithm)
        .ok_or(Error::BadCryptographicParameters("no MAC algorithm"))
}

/// A streamed MAC or MAC Verify part: the stream's state after `data`, and the MAC when the
/// part is the last. Shared with MAC Verify.
pub(crate) fn mac_part(
    ctx: &mut Ctx<'_>,
    r: &StructReader<'_>,
    key: &Key,
    operation: u32,
    step: Step,
) -> Result<Part> {
    let data = streaming::data(r)?;
    match step {
        Step::Single => Err(Error::Internal("a single-part MAC as a stream")),
        Step::Open => {
            let algorithm = mac_algorithm(r, key)?;
            let mut h = stream::hmac_start(algorithm, &key.material)?;
            h.update(data).map_err(ossl)?;
            let params = Params {
                cryptographic_algorithm: Some(algorithm),
                ..Params::default()
            };
            let mut state = State::new(Engine::Digest(h), params);
            state.expected = r.bytes(tag::MAC_DATA)?.map(<[u8]>::to_vec);
            let value = streaming::open(ctx, operation, Some(&key.obj.uid), state)?;
            Ok(Part::More(value))
        }
        Step::Continue {
            value,
            mut stream,
            last,
        } => {
            let algorithm = stream
                .state
                .params
                .cryptographic_algorithm
                .ok_or(Error::Internal("a MAC stream without its algorithm"))?;
            if let Some(m) = r.bytes(tag::MAC_DATA)? {
                stream.state.expected = Some(m.to_vec());
            }
            let Engine::Digest(h) = &mut stream.state.engine else {
                return Err(Error::Internal("a MAC stream without a digest"));
            };
            h.update(data).map_err(ossl)?;
            let part = if last {
                let mac = stream::hmac_finish(algorithm, &key.material, h)?;
                Part::Last {
                    mac,
                    expected: stream.state.expected.take(),
                }
            } else {
                Part::More(value.clone())
            };
            streaming::advance(ctx, value, stream, last);
            Ok(part)
        }
    }
}

/// What a streamed MAC part produced.
pub(crate) enum Part {
    /// Not the last part: the stream's Correlation Value.
    More(Vec<u8>),
    /// The last part: the MAC, and the MAC Data to check (MAC Verify) if any was given.
    Last {
        /// The MAC of all the parts.
        mac: Vec<u8>,
        /// The MAC Data sent with the stream.
        expected: Option<Vec<u8>>,
    },
}

/// Handles MAC.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let step = streaming::step(ctx, &r, op::MAC)?;
    let prior = step.stream();
    let key = streaming::key(ctx, &r, prior, mask::MAC_GENERATE, Use::Protect)?;
    let mut out = vec![uid_item(&key.obj.uid)];
    if matches!(step, Step::Single) {
        let algorithm = mac_algorithm(&r, &key)?;
        let data = r.bytes(tag::DATA)?.ok_or(Error::MissingData("Data"))?;
        usage::consume(ctx, &key, data.len())?;
        out.push(build::bytes(
            tag::MAC_DATA,
            digest::hmac(algorithm, &key.material, data)?,
        ));
    } else {
        usage::consume(ctx, &key, streaming::data(&r)?.len())?;
        match mac_part(ctx, &r, &key, op::MAC, step)? {
            Part::More(value) => out.push(streaming::correlation_item(value)),
            Part::Last { mac, .. } => out.push(build::bytes(tag::MAC_DATA, mac)),
        }
    }
    Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, out)))
}
