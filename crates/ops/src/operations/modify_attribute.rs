//! Modify Attribute (KMIP 1.4 §4.15, 2.1 §6.1.34): a new value for one existing instance.
//!
//! - 1.x: `Attribute` with an optional Attribute Index (0 when absent); an index past the last
//!   instance is Index Out Of Bounds. The answer echoes the attribute with its new value.
//! - 2.x: `New Attribute`, and `Current Attribute` to say which instance; without it the
//!   attribute must have exactly one instance (several: Multi Valued Attribute). A Current
//!   Attribute that matches no instance is Attribute Instance Not Found. The answer is the
//!   Unique Identifier only.
//!
//! An attribute the object lacks is Attribute Not Found (1.x Invalid Field): new attributes
//! come only through Add Attribute. The client-modifiability and state rules are in `attrs`
//! (e.g. Activation Date only while Pre-Active: Wrong Key Lifecycle State / Permission
//! Denied). Modifying Activation or Deactivation Date to now or the past drives the State.

use kmipd_proto::attributes::Attribute;
use kmipd_proto::reader::{self, StructReader};
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::attrs::{self, canon};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::object::{resolve_uid, uid_item};

/// Handles Modify Attribute.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let (new, index, current) = if ctx.v2() {
        let new = attrs::read_v2_wrapped(r.required(tag::NEW_ATTRIBUTE)?)?;
        let current = r
            .optional(tag::CURRENT_ATTRIBUTE)
            .map(attrs::read_v2_wrapped)
            .transpose()?;
        if current
            .as_ref()
            .is_some_and(|c| !attrs::same(&c.name, &new.name))
        {
            return Err(Error::InvalidField(
                "Current and New Attribute name different attributes",
            ));
        }
        (new, None, current)
    } else {
        let (a, index) = Attribute::from_v1(r.required(tag::ATTRIBUTE)?)?;
        let index = usize::try_from(index.unwrap_or(0)).map_err(|_| Error::IndexOutOfBounds)?;
        let a = Attribute {
            name: canon(&a.name),
            value: a.value,
        };
        (a, Some(index), None)
    };
    let mut obj = ctx.load(&uid)?;
    attrs::check_known(ctx, &new.name)?;
    let positions = attrs::positions(&obj.attributes, &new.name);
    if positions.is_empty() {
        // A read-only attribute the object lacks is refused as read-only, not as missing.
        attrs::check_change(ctx, &obj, &new.name, None)?;
        return Err(Error::AttributeNotFound);
    }
    let k = match (index, &current) {
        (Some(i), _) => i,
        (None, Some(c)) => positions
            .iter()
            .position(|p| obj.attributes.0.get(*p).is_some_and(|a| a.value == c.value))
            .ok_or(Error::IndexOutOfBounds)?,
        (None, None) if positions.len() == 1 => 0,
        (None, None) => return Err(Error::MultiValuedAttribute),
    };
    let pos = *positions.get(k).ok_or(Error::IndexOutOfBounds)?;
    attrs::replace_instance(ctx, &mut obj, pos, new.clone())?;
    attrs::save(ctx, obj);
    let mut items = vec![uid_item(&uid)];
    if !ctx.v2() {
        items.push(attrs::v1_item(&new, k));
    }
    Ok(Some(reader::structure(tag::RESPONSE_PAYLOAD, items)))
}
