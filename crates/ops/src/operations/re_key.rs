//! Re-Key (KMIP 1.4 §4.4, 2.1 §6.1.41): a new symmetric key replaces an existing one. The
//! replacement gets the existing key's attributes (Table 173 exceptions), its Names, its dates
//! moved by the Offset, new key material of the same algorithm and length, and a Replaced
//! Object link; the existing key loses its Names and gains a Replacement Object link. The
//! replacement's Unique Identifier becomes the ID Placeholder.
//!
//! Result reasons: Item/Object Not Found; Object Destroyed (2.x); Illegal Operation (1.x) /
//! Invalid Field (2.x) for an object that is not a symmetric key.

use kmipd_proto::enums::{object_type as ot, unique_identifier as uid_kind};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::attrs;
use crate::context::Ctx;
use crate::error::Result;
use crate::object::{new_object, resolve_uid, uid_payload};
use crate::objects::{self, keys, rekey, template};

/// Handles Re-Key.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let old = rekey::existing(ctx, &uid, ot::SYMMETRIC_KEY)?;
    let offset = r.interval(tag::OFFSET)?;
    let requested = objects::request_attributes(ctx, &r, tag::TEMPLATE_ATTRIBUTE, tag::ATTRIBUTES)?;
    let mut attrs = rekey::replacement_attributes(ctx, &old, offset, requested);
    let (algorithm, bits) = keys::algorithm_and_length(&attrs)?;
    let (object, _) = keys::new_symmetric(algorithm, bits)?;
    template::server_defaults(&mut attrs, ot::SYMMETRIC_KEY, &object, true);
    let mut new = new_object(ctx, ot::SYMMETRIC_KEY, Some(object), attrs)?;
    // The replacement belongs to the existing key's owner (an operator re-keys for it).
    new.owner.clone_from(&old.owner);
    new.attributes.add(rekey::replaced_link(&uid));
    template::finish(ctx, &mut new)?;
    let new_uid = new.uid.clone();
    rekey::retire(ctx, &uid, &new_uid)?;
    attrs::check_names_free(ctx, new.attributes.name_values())?;
    ctx.tx.put(new);
    ctx.set_placeholder(&new_uid);
    ctx.produced(uid_kind::RE_KEY, &new_uid);
    Ok(Some(uid_payload(&new_uid)))
}
