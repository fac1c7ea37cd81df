//! MAC Verify (KMIP 1.4 §4.34, 2.1 §6.1.30): checks MAC Data over Data (constant-time compare)
//! with a key whose usage mask has MAC Verify; answers a Validity Indicator.

use kmipd_proto::enums::{cryptographic_usage_mask as mask, validity_indicator};
use kmipd_proto::reader::{self, StructReader};
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::crypto::digest;
use crate::crypto::usage::{self, Use};
use crate::error::{Error, Result};
use crate::object::uid_item;
use crate::operations::mac::mac_algorithm;

/// Handles MAC Verify.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let key = usage::load(ctx, &r, mask::MAC_VERIFY, Use::Process)?;
    let algorithm = mac_algorithm(&r, &key)?;
    let data = r.bytes(tag::DATA)?.ok_or(Error::MissingData("Data"))?;
    let mac = r
        .bytes(tag::MAC_DATA)?
        .ok_or(Error::MissingData("MAC Data"))?;
    let indicator = if digest::hmac_verify(algorithm, &key.material, data, mac)? {
        validity_indicator::VALID
    } else {
        validity_indicator::INVALID
    };
    Ok(Some(reader::structure(
        tag::RESPONSE_PAYLOAD,
        vec![
            uid_item(&key.obj.uid),
            reader::enumeration(tag::VALIDITY_INDICATOR, indicator),
        ],
    )))
}
