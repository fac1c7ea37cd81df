//! Export (KMIP 2.0/2.1 §6.1.19): an object with all its attributes, as Import takes them
//! back (on this server or another one).
//!
//! The object part is exactly what Get gives (the same Key Format Type, compression and
//! wrapping choices, the same Sensitive / Not Extractable and One Time Pad refusals, dual
//! control; Fresh is left as it is, since only Get serves an object, 2.1 §4.24); the
//! Attributes are every attribute Get Attributes would list (the server-owned `y-`
//! attributes of kmipd, such as grants, are left out: they mean nothing elsewhere).
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
use crate::error::{Error, Result};
use crate::object::{resolve_uid, uid_item};
use crate::objects::{format, wrap};

/// Handles Export.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let mut obj = ctx.load(&uid)?;
    if !ctx.principal.may(&obj, op::GET) {
        return Err(crate::access::refusal(ctx.principal, &obj, op::GET));
    }
    if obj.object.is_none() {
        return Err(Error::Destroyed);
    }
    if crate::operations::archive::is_archived(&obj) {
        return Err(Error::ObjectArchived);
    }
    if crate::dual::guarded(op::GET, &obj) {
        let before = obj.attributes.clone();
        crate::dual::guard(ctx, &mut obj, op::GET)?;
        if obj.attributes != before {
            ctx.tx.put(obj.clone());
        }
    }
    crate::operations::one_time_pad::check_export(&obj)?;
    let body = obj.object.as_ref().ok_or(Error::Destroyed)?;
    let wanted_format = r.enumeration(tag::KEY_FORMAT_TYPE)?;
    let compression = r.enumeration(tag::KEY_COMPRESSION_TYPE)?;
    let wrap_type = r.enumeration(tag::KEY_WRAP_TYPE)?;
    let mut object = format::convert(ctx, &obj, body, wanted_format, compression)?;
    match r.optional(tag::KEY_WRAPPING_SPECIFICATION) {
        Some(spec) => object = wrap::wrap_object(ctx, &obj, object, spec)?,
        None => {
            wrap::check_exportable(&obj)?;
            if wrap_type.is_some() {
                object = wrap::stored_wrap(object, wrap_type)?;
            }
        }
    }
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
