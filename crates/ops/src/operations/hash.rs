//! Hash (KMIP 1.4 §4.35, 2.1 §6.1.22): the digest of Data with the Hashing Algorithm of the
//! request's Cryptographic Parameters (SHA-1, SHA-224/256/384/512; see `crate::crypto::digest`).
//! Streamed (Init Indicator, Correlation Value, Final Indicator: `operations::streaming`), the
//! digest runs on between the parts with the first part's Hashing Algorithm; the parts before
//! the last answer only the Correlation Value, the last one the digest.

use kmipd_proto::build;
use kmipd_proto::enums::operation as op;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::crypto::params::Params;
use crate::crypto::stream::{self, Engine, State};
use crate::crypto::{digest, ossl};
use crate::error::{Error, Result};
use crate::operations::streaming::{self, Step};

/// Handles Hash.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let answer = |items| Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, items)));
    match streaming::step(ctx, &r, op::HASH)? {
        Step::Single => {
            let hashing = hashing(&r)?;
            let data = r.bytes(tag::DATA)?.ok_or(Error::MissingData("Data"))?;
            answer(vec![build::bytes(tag::DATA, digest::hash(hashing, data)?)])
        }
        Step::Open => {
            let hashing = hashing(&r)?;
            // The same algorithms as the single-part form.
            digest::hash(hashing, &[])?;
            let mut h = stream::digest(hashing)?;
            h.update(streaming::data(&r)?).map_err(ossl)?;
            let params = Params {
                hashing_algorithm: Some(hashing),
                ..Params::default()
            };
            let value =
                streaming::open(ctx, op::HASH, None, State::new(Engine::Digest(h), params))?;
            answer(vec![streaming::correlation_item(value)])
        }
        Step::Continue {
            value,
            mut stream,
            last,
        } => {
            let Engine::Digest(h) = &mut stream.state.engine else {
                return Err(Error::Internal("a Hash stream without a digest"));
            };
            h.update(streaming::data(&r)?).map_err(ossl)?;
            let items = if last {
                vec![build::bytes(tag::DATA, h.finish().map_err(ossl)?.to_vec())]
            } else {
                vec![streaming::correlation_item(value.clone())]
            };
            streaming::advance(ctx, value, stream, last);
            answer(items)
        }
    }
}

/// The Hashing Algorithm of the request's Cryptographic Parameters.
fn hashing(r: &StructReader<'_>) -> Result<u32> {
    Params::read(r.required(tag::CRYPTOGRAPHIC_PARAMETERS)?)?
        .hashing_algorithm
        .ok_or(Error::MissingData("Hashing Algorithm"))
}
