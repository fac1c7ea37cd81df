//! Get (KMIP 1.4 §4.11, 2.1 §6.1.22): the object itself, in its stored format or in the Key
//! Format Type the client asks for, optionally wrapped per a Key Wrapping Specification (a key
//! registered wrapped is unwrapped first when asked Not Wrapped or wrapped anew: `wrap`). The
//! Key Value carries Key Material only (PyKMIP and Veeam fail on attributes inside it).
//!
//! Get works in any state but the destroyed ones (Pre-Active keys included, as vSphere needs).
//! Result reasons: Item/Object Not Found; Object Destroyed (2.x; Item Not Found in 1.x); Object
//! Archived for an archived object (`archive`); Key Format Type Not Supported; Key Compression
//! Type Not Supported; Sensitive / Not Extractable for an unwrapped export of a protected key
//! (1.4+).

use kmipd_proto::build;
use kmipd_proto::enums::{key_wrap_type, operation};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::{Ttlv, Value};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::object::{resolve_uid, uid_item};
use crate::objects::{format, wrap};

/// Handles Get.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let mut obj = ctx.load(&uid)?;
    let object = object_part(ctx, &r, &mut obj)?;
    let object_type = obj.object_type;
    if obj.attributes.get(tag::FRESH) == Some(&Value::Boolean(true)) {
        // Served once: no longer Fresh (2.1 §4.24). The object itself is written back (its
        // answer is already made): no copy.
        obj.attributes.set(tag::FRESH, Value::Boolean(false));
        ctx.tx.put(obj);
    }
    ctx.set_placeholder(&uid);
    Ok(Some(build::structure(
        tag::RESPONSE_PAYLOAD,
        vec![
            Ttlv::new(tag::OBJECT_TYPE, Value::Enumeration(object_type)),
            uid_item(&uid),
            object,
        ],
    )))
}

/// The object part of a Get answer: `obj` in the Key Format Type, compression and wrapping `r`
/// asks for, after every refusal Get makes (destroyed, archived, One Time Pad, dual control,
/// Sensitive / Not Extractable). Export answers with the same part (`export`).
pub(crate) fn object_part(
    ctx: &mut Ctx<'_>,
    r: &StructReader<'_>,
    obj: &mut ManagedObject,
) -> Result<Ttlv> {
    if obj.object.is_none() {
        return Err(Error::Destroyed);
    }
    if crate::operations::archive::is_archived(obj) {
        return Err(Error::ObjectArchived);
    }
    crate::operations::one_time_pad::check_export(obj)?;
    if crate::dual::guarded(operation::GET, obj) {
        let before = obj.attributes.clone();
        crate::dual::guard(ctx, obj, operation::GET)?;
        if obj.attributes != before {
            ctx.tx.put(obj.clone());
        }
    }
    let body = obj.object.as_ref().ok_or(Error::Destroyed)?;
    let wanted_format = r.enumeration(tag::KEY_FORMAT_TYPE)?;
    let compression = r.enumeration(tag::KEY_COMPRESSION_TYPE)?;
    let wrap_type = r.enumeration(tag::KEY_WRAP_TYPE)?;
    let spec = r.optional(tag::KEY_WRAPPING_SPECIFICATION);
    // A key registered wrapped comes out unwrapped when asked Not Wrapped or wrapped anew.
    let unwrapped;
    let body = if wrap_type == Some(key_wrap_type::NOT_WRAPPED) || spec.is_some() {
        unwrapped = wrap::unwrap_stored(ctx, body.clone())?;
        &unwrapped
    } else {
        body
    };
    let mut object = format::convert(ctx, obj, body, wanted_format, compression)?;
    match spec {
        Some(spec) => object = wrap::wrap_object(ctx, obj, object, spec)?,
        None => {
            wrap::check_exportable(obj)?;
            if wrap_type.is_some() {
                object = wrap::stored_wrap(object, wrap_type)?;
            }
        }
    }
    Ok(object)
}
