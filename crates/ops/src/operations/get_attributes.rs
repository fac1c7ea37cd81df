//! Get Attributes (KMIP 1.4 §4.12, 2.1 §6.1.20): every attribute of an object, or the named
//! ones (1.x Attribute Name list, 2.x Attribute Reference list).
//!
//! A named attribute the object lacks is simply left out (success, possibly with no attribute
//! at all, as vSphere expects for an `x-` attribute not yet set); every instance of a
//! multi-instance attribute is returned. 1.x answers a list of Attribute structures, with the
//! Attribute Index only when it is not 0 (the test cases show none); 2.x answers one Attributes
//! structure, present even when empty. Attributes the request's version does not define are
//! never returned. The object may be destroyed: its metadata remains readable.
//!
//! An attribute named twice in one request is Invalid Message (the KMIP 1.1 and 1.2 Test Cases,
//! TC-171: "Attribute Name specified more than once"): the request is ambiguous about how
//! often each instance is to be returned, and silently folding the names would hide a client
//! bug.
//!
//! Result reasons: Item/Object Not Found (no such object, or not visible); Invalid Field (an
//! Attribute Reference that is not a tag or vendor reference); Invalid Message (a name twice).

use kmipd_proto::attributes::AttrName;
use kmipd_proto::build;
use kmipd_proto::reader::{self, StructReader};
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::attrs;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::object::{resolve_uid, uid_item};

/// Handles Get Attributes.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let obj = ctx.load(&uid)?;
    let wanted: Vec<AttrName> = if ctx.v2() {
        r.repeated(tag::ATTRIBUTE_REFERENCE)
            .map(attrs::read_reference)
            .collect::<Result<_>>()?
    } else {
        r.repeated(tag::ATTRIBUTE_NAME)
            .map(|i| Ok(AttrName::from_v1_name(reader::as_text(i)?).canonical()))
            .collect::<Result<_>>()?
    };
    // (per-name index, attribute) in the order of the request, or the object's order.
    let indexed = obj.attributes.indexed();
    let selected: Vec<_> = if wanted.is_empty() {
        indexed
            .into_iter()
            .filter(|(_, a)| attrs::visible(ctx, &a.name))
            .collect()
    } else {
        let mut out = Vec::new();
        for (k, name) in wanted.iter().enumerate() {
            if wanted.iter().take(k).any(|n| n.same_attribute(name)) {
                return Err(Error::InvalidMessage(
                    "an attribute is named more than once",
                ));
            }
            if !attrs::visible(ctx, name) {
                continue;
            }
            out.extend(
                indexed
                    .iter()
                    .filter(|(_, a)| a.name.same_attribute(name))
                    .copied(),
            );
        }
        out
    };
    let mut items = vec![uid_item(&uid)];
    items.extend(attrs::listed(ctx.spec, selected));
    ctx.set_placeholder(&uid);
    Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, items)))
}

#[cfg(test)]
mod tests {
    use kmipd_proto::build;
    use kmipd_proto::message::ProtocolVersion;
    use kmipd_proto::reader;
    use kmipd_proto::tag;
    use kmipd_ttlv::Value;

    use super::handle;
    use crate::attrs::testing::*;
    use crate::engine::Principal;
    use crate::error::Error;

    #[test]
    fn v1_named_attributes_and_a_missing_one_is_left_out() {
        let s = store(vec![key("k1", "a", 1, Some("n1"))]);
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V1_4, |ctx| {
            let out = items(
                handle(
                    ctx,
                    &payload(vec![
                        build::unique_identifier("k1"),
                        build::text(tag::ATTRIBUTE_NAME, "State"),
                        build::text(tag::ATTRIBUTE_NAME, "x-absent"),
                        build::text(tag::ATTRIBUTE_NAME, "Name"),
                    ]),
                )
                .unwrap(),
            );
            assert_eq!(out.len(), 3);
            assert_eq!(out[0], build::unique_identifier("k1"));
            assert_eq!(
                out[1],
                v1_attr("State", None, Value::Enumeration(1)),
                "no Attribute Index 0"
            );
            assert_eq!(out[2], v1_attr("Name", None, name_value("n1")));
            assert_eq!(ctx.id_placeholder.as_deref(), Some("k1"));
        });
    }

    #[test]
    fn v1_all_attributes_leave_out_2x_only_ones() {
        let s = store(vec![key("k1", "a", 1, None)]);
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V1_0, |ctx| {
            let out = items(handle(ctx, &payload(vec![build::unique_identifier("k1")])).unwrap());
            let names: Vec<String> = out
                .iter()
                .filter_map(|i| i.child(tag::ATTRIBUTE_NAME))
                .map(|n| reader::as_text(n).unwrap().to_owned())
                .collect();
            assert!(names.contains(&"Cryptographic Usage Mask".to_owned()));
            assert!(!names.contains(&"Key Format Type".to_owned()), "{names:?}");
        });
    }

    #[test]
    fn v2_vendor_reference_finds_a_1x_custom_attribute_and_empty_attributes_is_present() {
        let mut k = key("k1", "a", 1, None);
        k.attributes.0.push(kmipd_proto::attributes::Attribute {
            name: kmipd_proto::attributes::AttrName::Custom {
                vendor: None,
                name: "x-Barcode".into(),
            },
            value: Value::TextString("XX1".into()),
        });
        let s = store(vec![k]);
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V2_1, |ctx| {
            let reference = build::structure(
                tag::ATTRIBUTE_REFERENCE,
                vec![
                    build::text(tag::VENDOR_IDENTIFICATION, "x"),
                    build::text(tag::ATTRIBUTE_NAME, "Barcode"),
                ],
            );
            let out = items(
                handle(
                    ctx,
                    &payload(vec![build::unique_identifier("k1"), reference]),
                )
                .unwrap(),
            );
            assert_eq!(
                out[1],
                build::structure(
                    tag::ATTRIBUTES,
                    vec![vendor("x", "Barcode", Value::TextString("XX1".into()))]
                )
            );
            let none = items(
                handle(
                    ctx,
                    &payload(vec![
                        build::unique_identifier("k1"),
                        build::enumeration(tag::ATTRIBUTE_REFERENCE, tag::DESCRIPTION.value()),
                    ]),
                )
                .unwrap(),
            );
            assert_eq!(none[1], build::structure(tag::ATTRIBUTES, vec![]));
        });
    }

    #[test]
    fn an_attribute_named_twice_is_invalid_message() {
        let s = store(vec![key("k1", "a", 1, Some("n1"))]);
        with_ctx(
            &s,
            &Principal::new("a"),
            ProtocolVersion::new(1, 2),
            |ctx| {
                let r = handle(
                    ctx,
                    &payload(vec![
                        build::unique_identifier("k1"),
                        build::text(tag::ATTRIBUTE_NAME, "Object Type"),
                        build::text(tag::ATTRIBUTE_NAME, "State"),
                        build::text(tag::ATTRIBUTE_NAME, "Object Type"),
                    ]),
                );
                assert!(matches!(r, Err(Error::InvalidMessage(_))), "{r:?}");
            },
        );
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V2_1, |ctx| {
            let r = handle(
                ctx,
                &payload(vec![
                    build::unique_identifier("k1"),
                    build::enumeration(tag::ATTRIBUTE_REFERENCE, tag::STATE.value()),
                    build::enumeration(tag::ATTRIBUTE_REFERENCE, tag::STATE.value()),
                ]),
            );
            assert!(matches!(r, Err(Error::InvalidMessage(_))), "{r:?}");
        });
    }

    #[test]
    fn another_owners_object_is_not_found() {
        let s = store(vec![key("k1", "a", 1, None)]);
        with_ctx(&s, &Principal::new("b"), ProtocolVersion::V1_4, |ctx| {
            let r = handle(ctx, &payload(vec![build::unique_identifier("k1")]));
            assert!(matches!(r, Err(Error::NotFound)));
        });
    }
}
