//! Delete Attribute (KMIP 1.4 §4.16, 2.1 §6.1.13): removes attribute instances a client may
//! delete (`attrs`: "Deletable by client"; others are Attribute Read Only / Permission Denied).
//!
//! - 1.x: Attribute Name and an optional Attribute Index (0 when absent): that one instance;
//!   an index past the last instance is Index Out Of Bounds. The answer carries the deleted
//!   attribute (with its index when not 0).
//! - 2.x: `Current Attribute` deletes the instance with that value (none: Attribute Instance
//!   Not Found); an `Attribute Reference` alone deletes every instance. The answer is the
//!   Unique Identifier only.
//!
//! Deleting an attribute the object lacks is Attribute Not Found (1.x Invalid Field).

use kmipd_proto::attributes::{AttrName, Attribute};
use kmipd_proto::reader::{self, StructReader};
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use crate::attrs::{self, canon};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::object::{resolve_uid, uid_item};

/// Which instances to delete.
enum Target {
    /// The n-th instance (1.x).
    Index(usize),
    /// The instance with this value (2.x Current Attribute).
    Value(Value),
    /// Every instance (2.x Attribute Reference alone).
    All,
}

/// Handles Delete Attribute.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let (name, target) = if ctx.v2() {
        match (
            r.optional(tag::CURRENT_ATTRIBUTE),
            r.optional(tag::ATTRIBUTE_REFERENCE),
        ) {
            (Some(c), _) => {
                let a = attrs::read_v2_wrapped(c)?;
                (a.name, Target::Value(a.value))
            }
            (None, Some(reference)) => (attrs::read_reference(reference)?, Target::All),
            (None, None) => {
                return Err(Error::MissingData(
                    "Current Attribute or Attribute Reference required",
                ));
            }
        }
    } else {
        let name = canon(&AttrName::from_v1_name(r.req_text(tag::ATTRIBUTE_NAME)?));
        let index = usize::try_from(r.int(tag::ATTRIBUTE_INDEX)?.unwrap_or(0))
            .map_err(|_| Error::IndexOutOfBounds)?;
        (name, Target::Index(index))
    };
    let mut obj = ctx.load(&uid)?;
    attrs::check_known(ctx, &name)?;
    let positions = attrs::positions(&obj.attributes, &name);
    if positions.is_empty() {
        attrs::check_delete(&obj, &name)?;
        return Err(Error::AttributeNotFound);
    }
    attrs::check_delete(&obj, &name)?;
    let (remove, index): (Vec<usize>, usize) = match target {
        Target::Index(i) => (vec![*positions.get(i).ok_or(Error::IndexOutOfBounds)?], i),
        Target::Value(v) => {
            let k = positions
                .iter()
                .position(|p| obj.attributes.0.get(*p).is_some_and(|a| a.value == v))
                .ok_or(Error::IndexOutOfBounds)?;
            (positions.get(k).copied().into_iter().collect(), k)
        }
        Target::All => (positions, 0),
    };
    let mut removed: Vec<Attribute> = Vec::new();
    for p in remove.into_iter().rev() {
        if p < obj.attributes.0.len() {
            removed.push(obj.attributes.0.remove(p));
        }
    }
    let first = removed.pop();
    attrs::save(ctx, obj);
    let mut items = vec![uid_item(&uid)];
    if !ctx.v2()
        && let Some(a) = first
    {
        items.push(attrs::v1_item(
            &Attribute {
                name: canon(&a.name),
                value: a.value,
            },
            index,
        ));
    }
    Ok(Some(reader::structure(tag::RESPONSE_PAYLOAD, items)))
}
