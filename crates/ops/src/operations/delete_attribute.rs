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
use kmipd_proto::build;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use crate::attrs;
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
        let name = AttrName::from_v1_name(r.req_text(tag::ATTRIBUTE_NAME)?).canonical();
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
    if crate::dual::is_mark(&name) {
        // The dual control mark: an administrator removes it, with a second one's approval.
        if !ctx.principal.is_admin() {
            return Err(Error::PermissionDenied(
                "only an administrator removes the dual control mark",
            ));
        }
        crate::dual::guard(
            ctx,
            &mut obj,
            kmipd_proto::enums::operation::DELETE_ATTRIBUTE,
        )?;
    } else {
        attrs::check_delete(&obj, &name)?;
    }
    let (remove, index): (Vec<usize>, usize) = match target {
        Target::Index(i) => (vec![*positions.get(i).ok_or(Error::IndexOutOfBounds)?], i),
        Target::Value(v) => {
            let k = attrs::instance_with_value(&obj.attributes, &positions, &v)?;
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
            ctx.spec,
            &Attribute {
                name: a.name.canonical(),
                value: a.value,
            },
            index,
        ));
    }
    Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, items)))
}

#[cfg(test)]
mod tests {
    use kmipd_proto::build;
    use kmipd_proto::message::ProtocolVersion;
    use kmipd_proto::tag;
    use kmipd_ttlv::Value;

    use super::handle;
    use crate::attrs::testing::*;
    use crate::engine::Principal;
    use crate::error::Error;

    #[test]
    fn v1_answers_the_deleted_instance_and_refuses_read_only_or_absent() {
        let s = store(vec![key_with_groups(&["g1", "g2"])]);
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V1_4, |ctx| {
            let del = |ctx: &mut crate::context::Ctx<'_>, name: &str, index: Option<i32>| {
                let mut p = vec![
                    build::unique_identifier("k1"),
                    build::text(tag::ATTRIBUTE_NAME, name),
                ];
                if let Some(i) = index {
                    p.push(build::int(tag::ATTRIBUTE_INDEX, i));
                }
                handle(ctx, &payload(p)).map(items)
            };
            let out = del(ctx, "Object Group", Some(1)).unwrap();
            assert_eq!(
                out[1],
                v1_attr("Object Group", Some(1), Value::TextString("g2".into()))
            );
            assert!(matches!(
                del(ctx, "Object Group", Some(1)),
                Err(Error::IndexOutOfBounds)
            ));
            assert!(matches!(
                del(ctx, "State", None),
                Err(Error::AttributeReadOnly(_))
            ));
            assert!(matches!(
                del(ctx, "x-none", None),
                Err(Error::AttributeNotFound)
            ));
            assert_eq!(
                values(ctx, "k1", tag::OBJECT_GROUP),
                vec![Value::TextString("g1".into())]
            );
        });
    }

    #[test]
    fn v2_reference_deletes_every_instance() {
        let mut k = key("k1", "a", 1, Some("n1"));
        k.attributes.0.push(kmipd_proto::attributes::Attribute::std(
            tag::NAME,
            name_value("n2"),
        ));
        let s = store(vec![k]);
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V2_1, |ctx| {
            let out = items(
                handle(
                    ctx,
                    &payload(vec![
                        build::unique_identifier("k1"),
                        build::enumeration(tag::ATTRIBUTE_REFERENCE, tag::NAME.value()),
                    ]),
                )
                .unwrap(),
            );
            assert_eq!(out, vec![build::unique_identifier("k1")]);
            assert!(values(ctx, "k1", tag::NAME).is_empty());
        });
    }

    #[test]
    fn v2_reference_with_an_empty_vendor_names_the_standard_attribute() {
        // PyKMIP 0.11's delete_attribute at 2.0 sends this form.
        let s = store(vec![key("k1", "a", 1, Some("n1"))]);
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V2_0, |ctx| {
            let reference = build::structure(
                tag::ATTRIBUTE_REFERENCE,
                vec![
                    build::text(tag::VENDOR_IDENTIFICATION, ""),
                    build::text(tag::ATTRIBUTE_NAME, "Name"),
                ],
            );
            handle(
                ctx,
                &payload(vec![build::unique_identifier("k1"), reference]),
            )
            .unwrap();
            assert!(values(ctx, "k1", tag::NAME).is_empty());
        });
    }
}
