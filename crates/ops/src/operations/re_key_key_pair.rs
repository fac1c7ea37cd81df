//! Re-Key Key Pair (KMIP 1.4 §4.5, 2.1 §6.1.42): a new key pair replaces an existing one.
//! Each replacement key gets the attributes of the key it replaces (Table 173 exceptions),
//! its Names, dates moved by the Offset, then the request's Common/Private/Public attributes;
//! new key material of the same algorithm and length; a Replaced Object link to the key it
//! replaces and the Private/Public Key links of the new pair. The existing keys lose their
//! Names and gain Replacement Object links. The new Private Key Unique Identifier becomes the
//! ID Placeholder.

use kmipd_proto::attributes::Attributes;
use kmipd_proto::enums::{link_type, object_type as ot, unique_identifier as uid_kind};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::error::Result;
use crate::object::uid_value;
use crate::objects::rekey;
use crate::operations::create_key_pair::{
    PairAttributes, make_pair, pair_attributes, pair_response,
};

/// Handles Re-Key Key Pair.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let private_uid = match r.optional(tag::PRIVATE_KEY_UNIQUE_IDENTIFIER) {
        Some(item) => uid_value(ctx, item)?,
        None => crate::object::placeholder(ctx, "no Private Key Unique Identifier")?,
    };
    let old_private = rekey::existing(ctx, &private_uid, ot::PRIVATE_KEY)?;
    let old_public = match rekey::linked(&old_private, link_type::PUBLIC_KEY_LINK) {
        Some(u) => Some(rekey::existing(ctx, &u, ot::PUBLIC_KEY)?),
        None => None,
    };
    let offset = r.interval(tag::OFFSET)?;
    let requested = pair_attributes(ctx, &r)?;
    let private = rekey::replacement_attributes(ctx, &old_private, offset, requested.private);
    let public = match &old_public {
        Some(p) => rekey::replacement_attributes(ctx, p, offset, requested.public),
        None => {
            let mut a = Attributes::new();
            a.0.extend(requested.public.0);
            a
        }
    };
    // Names move to the replacements: take them off the existing keys first.
    rekey::strip_names(ctx, &old_private.uid)?;
    if let Some(p) = &old_public {
        rekey::strip_names(ctx, &p.uid)?;
    }
    let extra_private = vec![rekey::replaced_link(&old_private.uid)];
    let extra_public = old_public
        .as_ref()
        .map(|p| vec![rekey::replaced_link(&p.uid)])
        .unwrap_or_default();
    let (new_private, new_public) = make_pair(
        ctx,
        PairAttributes { private, public },
        extra_private,
        extra_public,
    )?;
    // The replacements belong to the existing keys' owner (an operator re-keys for it).
    for uid in [&new_private, &new_public] {
        if let Some(mut o) = ctx.tx.get(uid)? {
            o.owner.clone_from(&old_private.owner);
            ctx.tx.put(o);
        }
    }
    // Now that the new identifiers exist, point the existing keys at them.
    rekey::retire(ctx, &old_private.uid, &new_private)?;
    if let Some(p) = &old_public {
        rekey::retire(ctx, &p.uid, &new_public)?;
    }
    ctx.set_placeholder(&new_private);
    ctx.produced(uid_kind::RE_KEY_KEY_PAIR, &new_private);
    ctx.produced(uid_kind::RE_KEY_KEY_PAIR_PRIVATE_KEY, &new_private);
    ctx.produced(uid_kind::RE_KEY_KEY_PAIR_PUBLIC_KEY, &new_public);
    Ok(Some(pair_response(&new_private, &new_public)))
}
