//! Add Attribute (KMIP 1.4 §4.14, 2.1 §6.1.2): a new instance of an attribute on an object.
//!
//! The attribute must be one a client may set (see `attrs`: read-only ones give Attribute Read
//! Only / Permission Denied, state rules Wrong Key Lifecycle State / Permission Denied), a
//! single-instance attribute must not be present yet (Attribute Single Valued / Invalid Field),
//! and a Name must not be used by any other object (Non Unique Name Attribute / Invalid Field).
//! Last Change Date becomes now; an Activation Date in the past activates the object.
//!
//! 1.x takes `Attribute` (an Attribute Index sent is ignored: the server assigns it) and
//! answers it with its index when not 0; 2.x takes `New Attribute` and answers only the Unique
//! Identifier.

use kmipd_proto::attributes::Attribute;
use kmipd_proto::reader::{self, StructReader};
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::attrs::{self, canon};
use crate::context::Ctx;
use crate::error::Result;
use crate::object::{resolve_uid, uid_item};

/// Handles Add Attribute.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let attr = if ctx.v2() {
        attrs::read_v2_wrapped(r.required(tag::NEW_ATTRIBUTE)?)?
    } else {
        let (a, _index) = Attribute::from_v1(r.required(tag::ATTRIBUTE)?)?;
        Attribute {
            name: canon(&a.name),
            value: a.value,
        }
    };
    let mut obj = ctx.load(&uid)?;
    let index = attrs::add_instance(ctx, &mut obj, attr.clone())?;
    attrs::save(ctx, obj);
    let mut items = vec![uid_item(&uid)];
    if !ctx.v2() {
        items.push(attrs::v1_item(&attr, index));
    }
    Ok(Some(reader::structure(tag::RESPONSE_PAYLOAD, items)))
}
