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
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::lifecycle::Event;
use crate::object::{current_state, next_state, resolve_uid, save_and_answer, transition_state};

/// Handles Destroy.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let mut obj = ctx.load(&uid)?;
    if matches!(
        current_state(&obj),
        Some(state::DESTROYED | state::DESTROYED_COMPROMISED)
    ) {
        return Err(Error::Destroyed);
    }
    // The state allows Destroy (checked without changing it) before dual control records a
    // request.
    next_state(&obj, Event::Destroy)?;
    crate::dual::guard(ctx, &mut obj, kmipd_proto::enums::operation::DESTROY)?;
    transition_state(&mut obj, Event::Destroy)?;
    obj.object = None;
    // The parsed key of Sign / Signature Verify goes with the material (`crypto::key_cache`).
    crate::crypto::key_cache::forget(&uid);
    obj.attributes
        .set(tag::DESTROY_DATE, Value::DateTime(ctx.now));
    Ok(Some(save_and_answer(ctx, obj, &uid)))
}
