//! Activate (KMIP 1.4 §4.19, 2.1 §6.1.1): a Pre-Active object becomes Active, with Activation
//! Date = now.
//!
//! Result reasons: Item/Object Not Found (no such object, or not visible); Permission Denied
//! (1.x) / Wrong Key Lifecycle State (2.x) when the object is not Pre-Active.

use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use crate::context::Ctx;
use crate::error::Result;
use crate::lifecycle::Event;
use crate::object::{resolve_uid, save_and_answer, transition_state};

/// Handles Activate.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let mut obj = ctx.load(&uid)?;
    transition_state(&mut obj, Event::Activate)?;
    obj.attributes
        .set(tag::ACTIVATION_DATE, Value::DateTime(ctx.now));
    Ok(Some(save_and_answer(ctx, obj, &uid)))
}
