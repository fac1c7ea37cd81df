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
use kmipd_proto::build;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::attrs;
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
            .is_some_and(|c| !c.name.same_attribute(&new.name))
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
            name: a.name.canonical(),
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
        (None, Some(c)) => attrs::instance_with_value(&obj.attributes, &positions, &c.value)?,
        (None, None) if positions.len() == 1 => 0,
        (None, None) => return Err(Error::MultiValuedAttribute),
    };
    let pos = *positions.get(k).ok_or(Error::IndexOutOfBounds)?;
    // The answer shows the value as stored (`attrs::normalize`).
    let stored = obj.attributes.0.get(pos).map(|a| a.value.clone());
    let new = attrs::normalize(new, stored.as_ref())?;
    attrs::replace_instance(ctx, &mut obj, pos, new.clone())?;
    attrs::save(ctx, obj);
    let mut items = vec![uid_item(&uid)];
    if !ctx.v2() {
        items.push(attrs::v1_item(ctx.spec, &new, k));
    }
    Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, items)))
}

#[cfg(test)]
mod tests {
    use kmipd_proto::build;
    use kmipd_proto::enums::state;
    use kmipd_proto::message::ProtocolVersion;
    use kmipd_proto::tag;
    use kmipd_ttlv::{Ttlv, Value};

    use super::handle;
    use crate::attrs::testing::*;
    use crate::engine::Principal;
    use crate::error::{Error, Result};

    fn modify_v1(
        ctx: &mut crate::context::Ctx<'_>,
        name: &str,
        index: Option<i32>,
        v: Value,
    ) -> Result<Vec<Ttlv>> {
        handle(
            ctx,
            &payload(vec![
                build::unique_identifier("k1"),
                v1_attr(name, index, v),
            ]),
        )
        .map(items)
    }

    #[test]
    fn v1_activation_date_drives_the_state_then_is_frozen() {
        let s = store(vec![key("k1", "a", 1, Some("n"))]);
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V1_0, |ctx| {
            // Absent: Modify does not create it.
            let r = modify_v1(ctx, "Activation Date", None, Value::DateTime(NOW - 5));
            assert!(matches!(r, Err(Error::AttributeNotFound)), "{r:?}");
            ctx.tx.put({
                let mut o = ctx.tx.get("k1").unwrap().unwrap();
                o.attributes
                    .set(tag::ACTIVATION_DATE, Value::DateTime(NOW + 1000));
                o
            });
            let out = modify_v1(ctx, "Activation Date", None, Value::DateTime(NOW - 5)).unwrap();
            assert_eq!(
                out[1],
                v1_attr("Activation Date", None, Value::DateTime(NOW - 5))
            );
            assert_eq!(
                values(ctx, "k1", tag::STATE),
                vec![Value::Enumeration(state::ACTIVE)]
            );
            let r = modify_v1(ctx, "Activation Date", None, Value::DateTime(NOW));
            assert!(matches!(r, Err(Error::WrongState(_))), "{r:?}");
            let r = modify_v1(ctx, "Name", Some(1), name_value("m"));
            assert!(matches!(r, Err(Error::IndexOutOfBounds)), "{r:?}");
            let r = modify_v1(ctx, "Cryptographic Algorithm", None, Value::Enumeration(2));
            assert!(matches!(r, Err(Error::AttributeReadOnly(_))), "{r:?}");
        });
    }

    #[test]
    fn v2_current_attribute_selects_the_instance() {
        let s = store(vec![key_with_groups(&["g1", "g2"])]);
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V2_1, |ctx| {
            let new = wrap(tag::NEW_ATTRIBUTE, build::text(tag::OBJECT_GROUP, "g3"));
            let r = handle(
                ctx,
                &payload(vec![build::unique_identifier("k1"), new.clone()]),
            );
            assert!(matches!(r, Err(Error::MultiValuedAttribute)), "{r:?}");
            let missing = wrap(tag::CURRENT_ATTRIBUTE, build::text(tag::OBJECT_GROUP, "zz"));
            let r = handle(
                ctx,
                &payload(vec![build::unique_identifier("k1"), missing, new.clone()]),
            );
            assert!(matches!(r, Err(Error::IndexOutOfBounds)), "{r:?}");
            let current = wrap(tag::CURRENT_ATTRIBUTE, build::text(tag::OBJECT_GROUP, "g2"));
            let out = items(
                handle(
                    ctx,
                    &payload(vec![build::unique_identifier("k1"), current, new]),
                )
                .unwrap(),
            );
            assert_eq!(out, vec![build::unique_identifier("k1")]);
            assert_eq!(
                values(ctx, "k1", tag::OBJECT_GROUP),
                vec![
                    Value::TextString("g1".into()),
                    Value::TextString("g3".into())
                ]
            );
            // A vendor attribute stored in 1.x spelling is modified through its 2.x form.
            ctx.tx.put({
                let mut o = ctx.tx.get("k1").unwrap().unwrap();
                o.attributes.0.push(kmipd_proto::attributes::Attribute {
                    name: kmipd_proto::attributes::AttrName::Custom {
                        vendor: None,
                        name: "x-V2".into(),
                    },
                    value: Value::Integer(0),
                });
                o
            });
            let new = wrap(tag::NEW_ATTRIBUTE, vendor("x", "V2", Value::Integer(1)));
            handle(ctx, &payload(vec![build::unique_identifier("k1"), new])).unwrap();
            let o = ctx.tx.get("k1").unwrap().unwrap();
            assert_eq!(
                o.attributes
                    .iter()
                    .filter(|a| a.name.v1_name() == "x-V2")
                    .map(|a| a.value.clone())
                    .collect::<Vec<_>>(),
                vec![Value::Integer(1)]
            );
        });
    }
}
