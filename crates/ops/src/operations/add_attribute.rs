//! Add Attribute (KMIP 1.4 §4.14, 2.1 §6.1.2): a new instance of an attribute on an object.
//!
//! The attribute must be one a client may set (see `attrs`: read-only ones give Attribute Read
//! Only / Permission Denied, state rules Wrong Key Lifecycle State / Permission Denied), a
//! single-instance attribute must not be present yet (Attribute Single Valued / Invalid Field),
//! and in 2.x a Name must be free (`attrs::check_names_free`: Non Unique Name Attribute).
//! Last Change Date becomes now; an Activation Date in the past activates the object.
//!
//! 1.x takes `Attribute` (an Attribute Index sent is ignored: the server assigns it) and
//! answers it with its index when not 0; 2.x takes `New Attribute` and answers only the Unique
//! Identifier.

use kmipd_proto::attributes::Attribute;
use kmipd_proto::build;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::attrs;
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
            name: a.name.canonical(),
            value: a.value,
        }
    };
    let mut obj = ctx.load(&uid)?;
    // The answer shows the value as stored (Usage Limits gets its Count: `attrs::normalize`).
    let attr = attrs::normalize(attr, None)?;
    let index = attrs::add_instance(ctx, &mut obj, attr.clone())?;
    attrs::save(ctx, obj);
    let mut items = vec![uid_item(&uid)];
    if !ctx.v2() {
        items.push(attrs::v1_item(ctx.spec, &attr, index));
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

    fn add_v1(
        ctx: &mut crate::context::Ctx<'_>,
        uid: &str,
        name: &str,
        v: Value,
    ) -> crate::error::Result<Vec<kmipd_ttlv::Ttlv>> {
        handle(
            ctx,
            &payload(vec![build::unique_identifier(uid), v1_attr(name, None, v)]),
        )
        .map(items)
    }

    #[test]
    fn v1_custom_attributes_get_their_index_and_last_change_date_moves() {
        let s = store(vec![key("k1", "a", 1, None)]);
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V1_4, |ctx| {
            let first = add_v1(ctx, "k1", "x-a", Value::TextString("1".into())).unwrap();
            assert_eq!(
                first[1],
                v1_attr("x-a", None, Value::TextString("1".into()))
            );
            let second = add_v1(ctx, "k1", "x-a", Value::TextString("2".into())).unwrap();
            assert_eq!(
                second[1],
                v1_attr("x-a", Some(1), Value::TextString("2".into()))
            );
            assert_eq!(
                values(ctx, "k1", tag::LAST_CHANGE_DATE),
                vec![Value::DateTime(NOW)]
            );
        });
    }

    #[test]
    fn read_only_single_valued_and_state_rules() {
        let s = store(vec![
            key("k1", "a", 1, Some("taken")),
            key("k2", "a", 2, None),
        ]);
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V2_1, |ctx| {
            let add = |ctx: &mut crate::context::Ctx<'_>, uid: &str, item| {
                handle(
                    ctx,
                    &payload(vec![
                        build::unique_identifier(uid),
                        wrap(tag::NEW_ATTRIBUTE, item),
                    ]),
                )
            };
            let r = add(ctx, "k2", build::enumeration(tag::STATE, 2));
            assert!(matches!(r, Err(Error::AttributeReadOnly(_))), "{r:?}");
            add(ctx, "k2", build::text(tag::DESCRIPTION, "d1")).unwrap();
            let r = add(ctx, "k2", build::text(tag::DESCRIPTION, "d2"));
            assert!(matches!(r, Err(Error::AttributeSingleValued)), "{r:?}");
            let name = kmipd_ttlv::Ttlv::new(tag::NAME, name_value("taken"));
            let r = add(ctx, "k2", name.clone());
            assert!(matches!(r, Err(Error::NonUniqueName)), "{r:?}");
            let r = add(ctx, "k1", name);
            assert!(matches!(r, Err(Error::NonUniqueName)), "{r:?}");
            // 2.x answers the Unique Identifier only.
            let out = items(add(ctx, "k2", build::text(tag::OBJECT_GROUP, "g")).unwrap());
            assert_eq!(out, vec![build::unique_identifier("k2")]);
            // An Activation Date in the past activates the key.
            add(ctx, "k2", build::datetime(tag::ACTIVATION_DATE, NOW - 1)).unwrap();
            assert_eq!(values(ctx, "k2", tag::STATE), vec![Value::Enumeration(2)]);
        });
    }
}
