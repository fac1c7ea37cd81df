//! Check (KMIP 1.4 §4.10, 2.1 §6.1.7): may the caller use the object as the request describes?
//!
//! - Cryptographic Usage Mask: every bit asked must be in the object's Cryptographic Usage Mask,
//!   else Incompatible Cryptographic Usage Mask (2.x; Permission Denied in 1.x).
//! - Usage Limits Count: the object's remaining Usage Limits Count (when it has Usage Limits)
//!   must cover it, else Usage Limit Exceeded (2.x; Permission Denied in 1.x).
//! - Lease Time: at most the object's Lease Time (when it has one), else Permission Denied.
//!
//! A refusal empties the ID Placeholder, as the specification requires. The refusal is an
//! Operation Failed answer without payload (the OASIS cases expect exactly that; a failed
//! batch item carries no Response Payload), so the attributes that caused it are named in the
//! Result Message rather than echoed in a payload.

use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::{Ttlv, Value};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::object::{attr_int, resolve_uid, uid_payload};

/// Handles Check.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let count = r.long(tag::USAGE_LIMITS_COUNT)?;
    let mask = r.int(tag::CRYPTOGRAPHIC_USAGE_MASK)?;
    let lease = r.interval(tag::LEASE_TIME)?;
    let obj = ctx.load(&uid)?;
    if let Err(e) = check(&obj, mask, count, lease) {
        ctx.empty_placeholder();
        return Err(e);
    }
    ctx.batch_uids.push(uid.clone());
    Ok(Some(uid_payload(&uid)))
}

fn check(
    obj: &ManagedObject,
    mask: Option<i32>,
    count: Option<i64>,
    lease: Option<u32>,
) -> Result<()> {
    if let Some(asked) = mask {
        let allowed = attr_int(&obj.attributes, tag::CRYPTOGRAPHIC_USAGE_MASK).unwrap_or(0);
        if asked & !allowed != 0 {
            return Err(Error::IncompatibleUsageMask);
        }
    }
    if let Some(asked) = count
        && usage_limits_count(obj).is_some_and(|left| asked > left)
    {
        return Err(Error::UsageLimitExceeded);
    }
    if let Some(asked) = lease
        && let Some(Value::Interval(max)) = obj.attributes.get(tag::LEASE_TIME)
        && asked > *max
    {
        return Err(Error::PermissionDenied("lease time longer than allowed"));
    }
    Ok(())
}

/// The remaining count of the object's Usage Limits, when it has them.
fn usage_limits_count(obj: &ManagedObject) -> Option<i64> {
    let Some(Value::Structure(items)) = obj.attributes.get(tag::USAGE_LIMITS) else {
        return None;
    };
    items
        .iter()
        .find(|i| i.tag == tag::USAGE_LIMITS_COUNT)
        .and_then(|i| match i.value {
            Value::LongInteger(v) => Some(v),
            _ => None,
        })
}
