//! MAC (KMIP 1.4 §4.33, 2.1 §6.1.29): HMAC-SHA1/224/256/384/512 of Data with an Active key
//! whose usage mask has MAC Generate. The algorithm is the Cryptographic Parameters' (request,
//! then the key's attribute), else the key's own (an HMAC key).

use kmipd_proto::build;
use kmipd_proto::enums::cryptographic_usage_mask as mask;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::crypto::digest;
use crate::crypto::params::Params;
use crate::crypto::usage::{self, Key, Use};
use crate::error::{Error, Result};
use crate::object::uid_item;

/// The MAC algorithm for this request and key.
pub(crate) fn mac_algorithm(r: &StructReader<'_>, key: &Key) -> Result<u32> {
    let params = Params::in_request(r)?.or(&key.params);
    params
        .cryptographic_algorithm
        .or(key.algorithm)
        .ok_or(Error::BadCryptographicParameters("no MAC algorithm"))
}

/// Handles MAC.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let key = usage::load(ctx, &r, mask::MAC_GENERATE, Use::Protect)?;
    if r.optional(tag::INIT_INDICATOR).is_some() || r.optional(tag::CORRELATION_VALUE).is_some() {
        return Err(Error::FeatureNotSupported("streamed MAC"));
    }
    let algorithm = mac_algorithm(&r, &key)?;
    let data = r.bytes(tag::DATA)?.ok_or(Error::MissingData("Data"))?;
    usage::consume(ctx, &key, data.len())?;
    let mac = digest::hmac(algorithm, &key.material, data)?;
    Ok(Some(build::structure(
        tag::RESPONSE_PAYLOAD,
        vec![uid_item(&key.obj.uid), build::bytes(tag::MAC_DATA, mac)],
    )))
}
