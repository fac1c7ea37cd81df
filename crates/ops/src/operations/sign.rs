//! Sign (KMIP 1.4 §4.31, 2.1 §6.1.50): RSA PSS / PKCS#1 v1.5 and ECDSA over Data or Digested
//! Data with an Active private key whose usage mask has Sign (see `crate::crypto::asym`).
//! Streamed (`operations::streaming`), the Data of the parts is digested as it comes with the
//! scheme's hash (the first part's parameters) and the last part signs that digest, as the
//! single-part operation signs the digest of its Data; the parts before answer the Unique
//! Identifier and the Correlation Value. Digested Data is single-part only.

use kmipd_proto::build;
use kmipd_proto::enums::{cryptographic_usage_mask as mask, operation as op};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::crypto::asym::{self, Input};
use crate::crypto::ossl;
use crate::crypto::params::Params;
use crate::crypto::stream::{self, Engine, State};
use crate::crypto::usage::{self, Key, Use};
use crate::error::{Error, Result};
use crate::object::uid_item;
use crate::operations::streaming::{self, Step};

/// What a Sign or Signature Verify request signs: its Data, else its Digested Data.
pub(crate) fn signed_input<'a>(r: &StructReader<'a>) -> Result<Input<'a>> {
    match (r.bytes(tag::DATA)?, r.bytes(tag::DIGESTED_DATA)?) {
        (Some(d), _) => Ok(Input::Data(d)),
        (None, Some(d)) => Ok(Input::Digest(d)),
        (None, None) => Err(Error::MissingData("Data or Digested Data")),
    }
}

/// What a streamed Sign or Signature Verify part produced.
pub(crate) enum Part {
    /// Not the last part: the stream's Correlation Value.
    More(Vec<u8>),
    /// The last part: the digest of all the Data, the parameters, and the Signature Data sent
    /// with the stream (Signature Verify) if any.
    Last {
        /// The digest of the parts' Data.
        digest: Vec<u8>,
        /// The first part's parameters.
        params: Params,
        /// The Signature Data to check.
        expected: Option<Vec<u8>>,
    },
}

/// A streamed Sign or Signature Verify part (`operation`) with `key`. Shared with Signature
/// Verify.
pub(crate) fn signature_part(
    ctx: &mut Ctx<'_>,
    r: &StructReader<'_>,
    key: &Key,
    operation: u32,
    step: Step,
) -> Result<Part> {
    if r.optional(tag::DIGESTED_DATA).is_some() {
        return Err(Error::InvalidField("Digested Data in a streamed operation"));
    }
    let data = streaming::data(r)?;
    let signature = r.bytes(tag::SIGNATURE_DATA)?.map(<[u8]>::to_vec);
    match step {
        Step::Single => Err(Error::Internal("a single-part signature as a stream")),
        Step::Open => {
            let params = Params::in_request(r)?.or(&key.params);
            let scheme = asym::scheme(&params, key.algorithm)?;
            let mut h = stream::digest(scheme.hash)?;
            h.update(data).map_err(ossl)?;
            let mut state = State::new(Engine::Digest(h), params);
            state.expected = signature;
            let value = streaming::open(ctx, operation, Some(&key.obj.uid), state)?;
            Ok(Part::More(value))
        }
        Step::Continue {
            value,
            mut stream,
            last,
        } => {
            if signature.is_some() {
                stream.state.expected = signature;
            }
            let Engine::Digest(h) = &mut stream.state.engine else {
                return Err(Error::Internal("a signature stream without a digest"));
            };
            h.update(data).map_err(ossl)?;
            let part = if last {
                Part::Last {
                    digest: h.finish().map_err(ossl)?.to_vec(),
                    params: stream.state.params.clone(),
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

/// Handles Sign.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let step = streaming::step(ctx, &r, op::SIGN)?;
    let prior = step.stream();
    let key = streaming::key(ctx, &r, prior, mask::SIGN, Use::Protect)?;
    let mut out = vec![uid_item(&key.obj.uid)];
    if !matches!(step, Step::Single) {
        usage::consume(ctx, &key, streaming::data(&r)?.len())?;
        match signature_part(ctx, &r, &key, op::SIGN, step)? {
            Part::More(value) => out.push(streaming::correlation_item(value)),
            Part::Last { digest, params, .. } => {
                let scheme = asym::scheme(&params, key.algorithm)?;
                let input = Input::Digest(&digest);
                let sig = asym::sign(&key.obj.uid, &key.material, scheme, &params, input)?;
                out.push(build::bytes(tag::SIGNATURE_DATA, sig));
            }
        }
        return Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, out)));
    }
    let params = Params::in_request(&r)?.or(&key.params);
    let input = signed_input(&r)?;
    let len = match input {
        Input::Data(d) | Input::Digest(d) => d.len(),
    };
    usage::consume(ctx, &key, len)?;
    let scheme = asym::scheme(&params, key.algorithm)?;
    let sig = asym::sign(&key.obj.uid, &key.material, scheme, &params, input)?;
    out.push(build::bytes(tag::SIGNATURE_DATA, sig));
    Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, out)))
}
