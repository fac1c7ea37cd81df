//! Activate (KMIP 1.4 §4.19, 2.1 §6.1.1): a Pre-Active object becomes Active, with Activation
//! Date = now.
//!
//! Result reasons: Item/Object Not Found (no such object, or not visible); Permission Denied
//! (1.x) / Wrong Key Lifecycle State (2.x) when the object is not Pre-Active.

use kmipd_proto::reader::{self, StructReader};
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::lifecycle::{Event, transition};
use crate::object::{current_state, resolve_uid, touch, uid_item};

/// Handles Activate.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let mut obj = ctx.load(&uid)?;
    let state = current_state(&obj).ok_or(Error::Internal("object without State"))?;
    let next = transition(state, Event::Activate)?;
    obj.attributes.set(tag::STATE, Value::Enumeration(next));
    obj.attributes
        .set(tag::ACTIVATION_DATE, Value::DateTime(ctx.now));
    touch(ctx, &mut obj);
    ctx.tx.put(obj);
    // Not an ID Placeholder source (only creating operations and Locate are), but a Unique
    // Identifier of the response, which the 2.x Integer form counts.
    ctx.batch_uids.push(uid.clone());
    Ok(Some(reader::structure(
        tag::RESPONSE_PAYLOAD,
        vec![uid_item(&uid)],
    )))
}
