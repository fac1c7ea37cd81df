//! Create Split Key (KMIP 1.4 §4.38, 2.1 §6.1.13): splits a key into Split Key Parts shares,
//! each registered as a Split Key object of its own, any Split Key Threshold of which give the
//! key back (Join Split Key).
//!
//! The key is the existing Symmetric Key or Secret Data the request names (its material in the
//! clear, not wrapped; the caller must be allowed Create Split Key on it: owner, administrator
//! or grantee), or, without a Unique Identifier, a new Symmetric Key of the request's
//! Cryptographic Algorithm and Length that is never stored whole. Methods: XOR (threshold =
//! parts) and Polynomial Sharing GF(2^8) (`crate::crypto::split`); GF(2^16) and Prime Field are
//! Feature Not Supported. Each share keeps the key's Cryptographic Algorithm and Length in its
//! Key Block, gets the request's attributes, is Pre-Active and owned by the caller, and is
//! linked to its neighbours (Previous Link / Next Link, in Key Part Identifier order) and,
//! when one was named, to the split key (Parent Link). The ID Placeholder becomes part 1. All
//! shares are stored in the batch's one commit; the request is audited as every request is.

use kmipd_proto::attributes::Attribute;
use kmipd_proto::build;
use kmipd_proto::enums::{
    key_format_type as kft, link_type, object_type as ot, split_key_method as skm,
    unique_identifier as uid_kind,
};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;
use zeroize::Zeroizing;

use crate::attrs;
use crate::context::Ctx;
use crate::crypto::split;
use crate::error::{Error, Result};
use crate::keyblock::{key_block, object_body};
use crate::object::{attr_int, new_object, resolve_uid, uid_item};
use crate::objects::{self, keys, template};
use crate::operations::create_key_pair::link;

/// Handles Create Split Key.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    if r.req_enum(tag::OBJECT_TYPE)? != ot::SPLIT_KEY {
        return Err(Error::InvalidField("Object Type"));
    }
    let parts = r.req_int(tag::SPLIT_KEY_PARTS)?;
    let threshold = r.req_int(tag::SPLIT_KEY_THRESHOLD)?;
    let method = r.req_enum(tag::SPLIT_KEY_METHOD)?;
    let attrs = objects::request_attributes(ctx, &r, tag::TEMPLATE_ATTRIBUTE, tag::ATTRIBUTES)?;
    if attrs.name_values().next().is_some() && parts > 1 {
        // A Name names one object; the shares are several.
        return Err(Error::InvalidField("Name"));
    }
    let n = usize::try_from(parts).map_err(|_| Error::InvalidField("Split Key Parts"))?;
    let t = usize::try_from(threshold).map_err(|_| Error::InvalidField("Split Key Threshold"))?;

    // The key to split: (material, algorithm and length for the shares' Key Blocks, parent).
    let named = match r.optional(tag::UNIQUE_IDENTIFIER) {
        Some(_) => Some(resolve_uid(ctx, &r)?),
        None => None,
    };
    let (secret, algorithm, parent) = match named {
        Some(uid) => {
            let obj = ctx.load(&uid)?;
            if !matches!(obj.object_type, ot::SYMMETRIC_KEY | ot::SECRET_DATA) {
                return Err(Error::InvalidField("Unique Identifier"));
            }
            let kb = key_block(object_body(&obj)?)?;
            if kb.wrapped {
                return Err(Error::KeyValueNotPresent);
            }
            let bits = attr_int(&obj.attributes, tag::CRYPTOGRAPHIC_LENGTH);
            let algorithm = kb.algorithm.zip(bits);
            (kb.bytes()?, algorithm, Some(obj.uid.clone()))
        }
        None => {
            let (algorithm, bits) = keys::algorithm_and_length(&attrs)?;
            let len = keys::symmetric_len(algorithm, bits)?;
            let bits = bits.ok_or(Error::MissingData("Cryptographic Length"))?;
            (
                crate::crypto::keygen::symmetric(len)?,
                Some((algorithm, bits)),
                None,
            )
        }
    };
    let shares: Vec<Zeroizing<Vec<u8>>> = match method {
        skm::XOR if threshold == parts => split::xor_split(&secret, n)?,
        skm::XOR => return Err(Error::InvalidField("Split Key Threshold")),
        skm::POLYNOMIAL_SHARING_GF_2_8 => split::gf256_split(&secret, n, t)?,
        _ => return Err(Error::FeatureNotSupported("Split Key Method")),
    };

    let mut objects = Vec::with_capacity(n);
    for (id, share) in (1..=parts).zip(shares.iter()) {
        let body = build::structure(
            tag::SPLIT_KEY,
            vec![
                build::int(tag::SPLIT_KEY_PARTS, parts),
                build::int(tag::KEY_PART_IDENTIFIER, id),
                build::int(tag::SPLIT_KEY_THRESHOLD, threshold),
                build::enumeration(tag::SPLIT_KEY_METHOD, method),
                build::byte_key_block(kft::RAW, share.to_vec(), algorithm),
            ],
        );
        let mut a = attrs.clone();
        if let Some((alg, bits)) = algorithm {
            a.set(
                tag::CRYPTOGRAPHIC_ALGORITHM,
                kmipd_ttlv::Value::Enumeration(alg),
            );
            a.set(tag::CRYPTOGRAPHIC_LENGTH, kmipd_ttlv::Value::Integer(bits));
        }
        template::server_defaults(&mut a, ot::SPLIT_KEY, &body, true);
        let mut obj = new_object(ctx, ot::SPLIT_KEY, Some(body), a)?;
        template::finish(ctx, &mut obj)?;
        if let Some(p) = &parent {
            obj.attributes
                .add(Attribute::std(tag::LINK, link(link_type::PARENT_LINK, p)));
        }
        objects.push(obj);
    }
    let uids: Vec<String> = objects.iter().map(|o| o.uid.clone()).collect();
    for (i, obj) in objects.iter_mut().enumerate() {
        if let Some(prev) = i.checked_sub(1).and_then(|p| uids.get(p)) {
            obj.attributes.add(Attribute::std(
                tag::LINK,
                link(link_type::PREVIOUS_LINK, prev),
            ));
        }
        if let Some(next) = uids.get(i.saturating_add(1)) {
            obj.attributes
                .add(Attribute::std(tag::LINK, link(link_type::NEXT_LINK, next)));
        }
    }
    attrs::check_names_free(ctx, attrs.name_values())?;
    for obj in objects {
        ctx.tx.put(obj);
    }
    for uid in &uids {
        ctx.produced(uid_kind::CREATE_SPLIT_KEY, uid);
    }
    if let Some(first) = uids.first() {
        ctx.set_placeholder(first);
    }
    Ok(Some(build::structure(
        tag::RESPONSE_PAYLOAD,
        uids.iter().map(uid_item).collect(),
    )))
}
