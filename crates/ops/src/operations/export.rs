//! Export (KMIP 2.0/2.1 §6.1.19): an object with all its attributes, as Import takes them
//! back (on this server or another one).
//!
//! The object part is exactly what Get gives, made by the same code (`get::object_part`: the
//! same Key Format Type, compression and wrapping choices, a key registered wrapped unwrapped
//! when asked, the same Sensitive / Not Extractable and One Time Pad refusals, dual control;
//! Fresh is left as it is, since only Get serves an object, 2.1 §4.24); the Attributes are
//! every attribute Get Attributes would list (the server-owned `y-` attributes of kmipd, such
//! as grants, are left out: they mean nothing elsewhere).
//!
//! Access: the caller must be allowed both Export and Get on the object (the key material
//! leaves the server): its owner, an administrator, or a grantee of both; an operator's or
//! auditor's role never gives it on another's object.

use kmipd_proto::build;
use kmipd_proto::enums::operation as op;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use crate::attrs;
use crate::context::Ctx;
use crate::error::Result;
use crate::object::{resolve_uid, uid_item};

/// Handles Export.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let mut obj = ctx.load(&uid)?;
    if !ctx.principal.may(&obj, op::GET) {
        return Err(crate::access::refusal(ctx.principal, &obj, op::GET));
    }
    let object = crate::operations::get::object_part(ctx, &r, &mut obj)?;
    let attributes = build::structure(
        tag::ATTRIBUTES,
        obj.attributes
            .0
            .iter()
            .filter(|a| attrs::visible(ctx, &a.name) && !is_server_owned(&a.name))
            .map(|a| attrs::for_version(ctx.spec, a).to_v2())
            .collect(),
    );
    // Fresh stays as it is: only a Get serves an object (2.1 §4.24, "served via the Get
    // operation"), and the exported copy carries the attribute to its Import.
    ctx.set_placeholder(&uid);
    Ok(Some(build::structure(
        tag::RESPONSE_PAYLOAD,
        vec![
            Ttlv::new(tag::OBJECT_TYPE, Value::Enumeration(obj.object_type)),
            uid_item(&uid),
            attributes,
            object,
        ],
    )))
}

/// kmipd's own `y-` attributes (grants, credential labels, dual control): server state, not
/// part of the object.
/// (In either spelling: 1.x `y-name`, 2.x vendor `y` and name `name`.)
pub(crate) fn is_server_owned(name: &kmipd_proto::attributes::AttrName) -> bool {
    matches!(name, kmipd_proto::attributes::AttrName::Custom { .. })
        && name.v1_name().starts_with("y-")
}
