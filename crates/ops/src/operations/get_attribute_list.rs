//! Get Attribute List (KMIP 1.4 §4.13, 2.1 §6.1.21): the names of an object's attributes, each
//! once, in the object's order: 1.x Attribute Name text strings, 2.x Attribute Reference items
//! (an Enumeration naming the tag, or a vendor structure for custom attributes). Attributes
//! the request's version does not define are left out.
//!
//! Result reasons: Item/Object Not Found (no such object, or not visible).

use kmipd_proto::attributes::AttrName;
use kmipd_proto::build;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::attrs;
use crate::context::Ctx;
use crate::error::Result;
use crate::object::{resolve_uid, uid_item};

/// Handles Get Attribute List.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let obj = ctx.load(&uid)?;
    let mut names: Vec<AttrName> = Vec::new();
    for a in obj.attributes.iter() {
        let name = a.name.canonical();
        if attrs::visible(ctx, &name) && !names.contains(&name) {
            names.push(name);
        }
    }
    let mut items = vec![uid_item(&uid)];
    items.extend(names.iter().map(|n| {
        if ctx.v2() {
            attrs::reference_item(n)
        } else {
            build::text(tag::ATTRIBUTE_NAME, n.v1_name())
        }
    }));
    ctx.set_placeholder(&uid);
    Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, items)))
}

#[cfg(test)]
mod tests {
    use kmipd_proto::build;
    use kmipd_proto::message::ProtocolVersion;
    use kmipd_proto::tag;

    use super::handle;
    use crate::attrs::testing::*;
    use crate::engine::Principal;

    #[test]
    fn names_once_each_in_the_version_form() {
        let mut k = key("k1", "a", 1, Some("n1"));
        k.attributes.0.push(kmipd_proto::attributes::Attribute::std(
            tag::NAME,
            name_value("n2"),
        ));
        let s = store(vec![k]);
        with_ctx(
            &s,
            &Principal::new("a"),
            ProtocolVersion::new(1, 2),
            |ctx| {
                let out =
                    items(handle(ctx, &payload(vec![build::unique_identifier("k1")])).unwrap());
                let names: Vec<_> = out.iter().skip(1).cloned().collect();
                let n = build::text(tag::ATTRIBUTE_NAME, "Name");
                assert_eq!(names.iter().filter(|i| **i == n).count(), 1);
                assert!(names.contains(&build::text(tag::ATTRIBUTE_NAME, "State")));
                assert!(!names.contains(&build::text(tag::ATTRIBUTE_NAME, "Key Format Type")));
            },
        );
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V2_1, |ctx| {
            let out = items(handle(ctx, &payload(vec![build::unique_identifier("k1")])).unwrap());
            assert!(out.contains(&build::enumeration(
                tag::ATTRIBUTE_REFERENCE,
                tag::KEY_FORMAT_TYPE.value()
            )));
        });
    }
}
