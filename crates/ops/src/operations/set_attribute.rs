//! Set Attribute (KMIP 2.1 §6.1.51): adds the attribute when the object has none, replaces it
//! when it has exactly one instance, and refuses when it has several (Multi Valued Attribute).
//! The same client-modifiability, state, value and Name-uniqueness rules as Add and Modify
//! Attribute apply (`attrs`). 2.1 only: earlier versions have no such operation.

use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::attrs;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::object::{resolve_uid, uid_payload};

/// Handles Set Attribute.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    if !ctx.v2() {
        return Err(Error::OperationNotSupported);
    }
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let new = attrs::read_v2_wrapped(r.required(tag::NEW_ATTRIBUTE)?)?;
    let mut obj = ctx.load(&uid)?;
    attrs::check_known(ctx, &new.name)?;
    let positions = attrs::positions(&obj.attributes, &new.name);
    match positions.as_slice() {
        [] => {
            attrs::add_instance(ctx, &mut obj, new)?;
        }
        [pos] => attrs::replace_instance(ctx, &mut obj, *pos, new)?,
        _ => return Err(Error::MultiValuedAttribute),
    }
    attrs::save(ctx, obj);
    Ok(Some(uid_payload(&uid)))
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
    fn adds_then_replaces_and_is_2x_only() {
        let s = store(vec![key("k1", "a", 1, None)]);
        let set = |ctx: &mut crate::context::Ctx<'_>, v: &str| {
            handle(
                ctx,
                &payload(vec![
                    build::unique_identifier("k1"),
                    wrap(tag::NEW_ATTRIBUTE, build::text(tag::CONTACT_INFORMATION, v)),
                ]),
            )
        };
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V2_1, |ctx| {
            set(ctx, "c1").unwrap();
            set(ctx, "c2").unwrap();
            assert_eq!(
                values(ctx, "k1", tag::CONTACT_INFORMATION),
                vec![Value::TextString("c2".into())]
            );
        });
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V1_4, |ctx| {
            assert!(matches!(set(ctx, "c3"), Err(Error::OperationNotSupported)));
        });
    }
}
