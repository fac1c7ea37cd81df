//! Destroy (KMIP 1.4 §4.21, 2.1 §6.1.15): the key material goes, the metadata stays. The stored
//! object structure is dropped (`ManagedObject::object = None`); the object keeps its
//! attributes, gains Destroy Date = now and becomes Destroyed (or Destroyed Compromised when it
//! was Compromised). Later Gets fail (Object Destroyed in 2.x, Item Not Found in 1.x); Get
//! Attributes still answers, with State Destroyed.
//!
//! Only Pre-Active, Deactivated and Compromised objects may be destroyed (`lifecycle`): an
//! Active object gets Permission Denied (1.x, 2.0) / Wrong Key Lifecycle State (2.1), an
//! already destroyed one Object Destroyed (2.x) / Item Not Found (1.x).

use kmipd_proto::enums::state;
use kmipd_proto::reader::{self, StructReader};
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::lifecycle::{Event, transition};
use crate::object::{current_state, resolve_uid, touch, uid_item};

/// Handles Destroy.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let mut obj = ctx.load(&uid)?;
    let current = current_state(&obj).ok_or(Error::Internal("object without State"))?;
    if matches!(current, state::DESTROYED | state::DESTROYED_COMPROMISED) {
        return Err(Error::Destroyed);
    }
    let next = transition(current, Event::Destroy)?;
    obj.object = None;
    obj.attributes.set(tag::STATE, Value::Enumeration(next));
    obj.attributes
        .set(tag::DESTROY_DATE, Value::DateTime(ctx.now));
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
