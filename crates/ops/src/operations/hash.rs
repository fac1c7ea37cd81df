//! Hash (KMIP 1.4 §4.35, 2.1 §6.1.22): the digest of Data with the Hashing Algorithm of the
//! request's Cryptographic Parameters (SHA-1, SHA-224/256/384/512; see `crate::crypto::digest`).

use kmipd_proto::build;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::crypto::digest;
use crate::crypto::params::Params;
use crate::error::{Error, Result};

/// Handles Hash.
pub(crate) fn handle(_ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let params = Params::read(r.required(tag::CRYPTOGRAPHIC_PARAMETERS)?)?;
    let hashing = params
        .hashing_algorithm
        .ok_or(Error::MissingData("Hashing Algorithm"))?;
    if r.optional(tag::INIT_INDICATOR).is_some() || r.optional(tag::CORRELATION_VALUE).is_some() {
        return Err(Error::FeatureNotSupported("streamed Hash"));
    }
    let data = r.bytes(tag::DATA)?.ok_or(Error::MissingData("Data"))?;
    Ok(Some(build::structure(
        tag::RESPONSE_PAYLOAD,
        vec![build::bytes(tag::DATA, digest::hash(hashing, data)?)],
    )))
}
