//! MAC Verify (KMIP 1.4 §4.34, 2.1 §6.1.30): checks MAC Data over Data (constant-time compare)
//! with a key whose usage mask has MAC Verify; answers a Validity Indicator.

use kmipd_proto::enums::cryptographic_usage_mask as mask;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::crypto::digest;
use crate::crypto::usage::{self, Use};
use crate::error::{Error, Result};
use crate::operations::mac::mac_algorithm;
use crate::operations::signature_verify::validity_payload;

/// Handles MAC Verify.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let key = usage::load(ctx, &r, mask::MAC_VERIFY, Use::Process)?;
    let algorithm = mac_algorithm(&r, &key)?;
    let data = r.bytes(tag::DATA)?.ok_or(Error::MissingData("Data"))?;
    let mac = r
        .bytes(tag::MAC_DATA)?
        .ok_or(Error::MissingData("MAC Data"))?;
    let valid = digest::hmac_verify(algorithm, &key.material, data, mac)?;
    Ok(Some(validity_payload(&key.obj.uid, valid)))
}
