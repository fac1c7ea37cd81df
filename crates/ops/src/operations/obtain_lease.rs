//! Obtain Lease (KMIP 1.4 §4.17, 2.1 §6.1.35): the Lease Time the server grants for an object
//! (how long the client may use its cached copy before asking again) and the object's Last
//! Change Date (so the client can tell whether its cached attributes are stale).
//!
//! The lease granted is the object's Lease Time attribute: the specification has the server
//! store there the longest lease it serves, and every object gets one at creation
//! (`objects::template::LEASE_TIME`, an hour). An object without the attribute gets that
//! default. Nothing about the object changes.
//!
//! Policy (the specification leaves it to the server: "if the server determines that a new
//! lease SHALL NOT be issued ... error"): no lease for a Compromised object (the case TC-95
//! describes) nor for a destroyed one: Permission Denied in every version (the reason both the
//! 1.x and 2.x error tables give). Pre-Active, Active and Deactivated objects get a lease (a
//! Deactivated key may still decrypt and verify). Result reasons otherwise: Item/Object Not
//! Found for an object that does not exist or that the caller may not see.

use kmipd_proto::build;
use kmipd_proto::enums::state;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::object::{apply_dates, current_state, resolve_uid, uid_item};
use crate::objects::template::LEASE_TIME;

/// Handles Obtain Lease.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let mut obj = ctx.load(&uid)?;
    apply_dates(&mut obj, ctx.now);
    match current_state(&obj) {
        Some(state::COMPROMISED) => {
            return Err(Error::PermissionDenied(
                "the object is Compromised: no lease is given",
            ));
        }
        Some(state::DESTROYED | state::DESTROYED_COMPROMISED) => {
            return Err(Error::PermissionDenied(
                "the object is destroyed: no lease is given",
            ));
        }
        _ => {}
    }
    let lease = match obj.attributes.get(tag::LEASE_TIME) {
        Some(Value::Interval(s)) => *s,
        _ => LEASE_TIME,
    };
    let last_change = match obj.attributes.get(tag::LAST_CHANGE_DATE) {
        Some(Value::DateTime(d)) => *d,
        _ => return Err(Error::Internal("object without Last Change Date")),
    };
    // Not an ID Placeholder source, but a Unique Identifier of the response, which the 2.x
    // Integer form counts.
    ctx.batch_uids.push(uid.clone());
    Ok(Some(build::structure(
        tag::RESPONSE_PAYLOAD,
        vec![
            uid_item(&uid),
            Ttlv::new(tag::LEASE_TIME, Value::Interval(lease)),
            Ttlv::new(tag::LAST_CHANGE_DATE, Value::DateTime(last_change)),
        ],
    )))
}
