//! Sign (KMIP 1.4 §4.31, 2.1 §6.1.50): RSA PSS / PKCS#1 v1.5 and ECDSA over Data or Digested
//! Data with an Active private key whose usage mask has Sign (see `crate::crypto::asym`).

use kmipd_proto::build;
use kmipd_proto::enums::cryptographic_usage_mask as mask;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::crypto::asym::{self, Input};
use crate::crypto::params::Params;
use crate::crypto::usage::{self, Use};
use crate::error::{Error, Result};
use crate::object::uid_item;

/// What a Sign or Signature Verify request signs: its Data, else its Digested Data.
pub(crate) fn signed_input<'a>(r: &StructReader<'a>) -> Result<Input<'a>> {
    match (r.bytes(tag::DATA)?, r.bytes(tag::DIGESTED_DATA)?) {
        (Some(d), _) => Ok(Input::Data(d)),
        (None, Some(d)) => Ok(Input::Digest(d)),
        (None, None) => Err(Error::MissingData("Data or Digested Data")),
    }
}

/// Handles Sign.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let key = usage::load(ctx, &r, mask::SIGN, Use::Protect)?;
    let params = Params::in_request(&r)?.or(&key.params);
    let input = signed_input(&r)?;
    if r.optional(tag::INIT_INDICATOR).is_some() || r.optional(tag::CORRELATION_VALUE).is_some() {
        return Err(Error::FeatureNotSupported("streamed signing"));
    }
    let len = match input {
        Input::Data(d) | Input::Digest(d) => d.len(),
    };
    usage::consume(ctx, &key, len)?;
    let scheme = asym::scheme(&params, key.algorithm)?;
    let sig = asym::sign(&key.obj.uid, &key.material, scheme, &params, input)?;
    Ok(Some(build::structure(
        tag::RESPONSE_PAYLOAD,
        vec![
            uid_item(&key.obj.uid),
            build::bytes(tag::SIGNATURE_DATA, sig),
        ],
    )))
}
