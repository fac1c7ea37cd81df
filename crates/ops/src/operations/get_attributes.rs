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
//! Result reasons: Item/Object Not Found (no such object, or not visible); Invalid Field (an
//! Attribute Reference that is not a tag or vendor reference).

use kmipd_proto::attributes::AttrName;
use kmipd_proto::reader::{self, StructReader};
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::attrs::{self, canon};
use crate::context::Ctx;
use crate::error::Result;
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
            .map(|i| Ok(canon(&AttrName::from_v1_name(reader::as_text(i)?))))
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
            if wanted.iter().take(k).any(|n| attrs::same(n, name)) || !attrs::visible(ctx, name) {
                continue;
            }
            out.extend(
                indexed
                    .iter()
                    .filter(|(_, a)| attrs::same(&a.name, name))
                    .copied(),
            );
        }
        out
    };
    let mut items = vec![uid_item(&uid)];
    if ctx.v2() {
        items.push(reader::structure(
            tag::ATTRIBUTES,
            selected.iter().map(|(_, a)| a.to_v2()).collect(),
        ));
    } else {
        items.extend(selected.iter().map(|(i, a)| attrs::v1_item(a, *i)));
    }
    ctx.set_placeholder(&uid);
    Ok(Some(reader::structure(tag::RESPONSE_PAYLOAD, items)))
}
