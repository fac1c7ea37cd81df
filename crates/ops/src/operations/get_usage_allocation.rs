//! Get Usage Allocation (KMIP 1.4 §4.18, 2.1 §6.1.27): the client takes Usage Limits Count
//! units of the object's Usage Limits for protection it applies itself; the server assumes they
//! are all consumed.
//!
//! Only an object that may apply protection now may be allocated from: an Active key whose
//! Protect Stop Date has not passed, whose Cryptographic Usage Mask allows a protecting use
//! (Encrypt, Sign, MAC Generate, Wrap Key), and which has Usage Limits (the same checks as a
//! protecting cryptographic operation, `crate::crypto::usage`). More than the remaining Usage
//! Limits Count is Permission Denied (TC_51: "Unable to allocate requested amount"), as is an
//! object without Usage Limits. Access: the owner, an administrator, or a grantee of Get Usage
//! Allocation (`crate::access`). The new count is stored with the request's other changes in
//! the batch's one commit, and audited as every request is.

use kmipd_proto::enums::cryptographic_usage_mask as mask;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::crypto::usage::{self, Use};
use crate::error::{Error, Result};
use crate::object::uid_payload;

/// The usage mask bits of protecting uses.
const PROTECTING: u32 = mask::ENCRYPT | mask::SIGN | mask::MAC_GENERATE | mask::WRAP_KEY;

/// Handles Get Usage Allocation.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let amount = r
        .long(tag::USAGE_LIMITS_COUNT)?
        .ok_or(Error::MissingData("Usage Limits Count"))?;
    if amount <= 0 {
        return Err(Error::InvalidField("Usage Limits Count"));
    }
    let key = usage::load(ctx, &r, PROTECTING, Use::Protect)?;
    let uid = key.obj.uid.clone();
    usage::draw(ctx, &uid, amount)?;
    Ok(Some(uid_payload(&uid)))
}
