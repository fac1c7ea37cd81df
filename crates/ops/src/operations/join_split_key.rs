//! Join Split Key (KMIP 1.4 §4.39, 2.1 §6.1.31): combines Split Key objects into a new
//! Symmetric Key or Secret Data.
//!
//! The named objects must all be Split Keys of one split (same Split Key Method, Parts and
//! Threshold; distinct Key Part Identifiers), readable by the caller (owner, administrator or
//! grantee of Join Split Key), with their material in the clear. Fewer than the threshold, or
//! shares that do not belong together, are Cryptographic Failure (as the OASIS cases TC-SJ-1
//! and TC-SJ-3 expect). The new object gets the request's attributes (Cryptographic Algorithm
//! and Length default to the shares' Key Block), a Raw (Symmetric Key) or Opaque (Secret Data,
//! of the request's Secret Data Type, Password by default) Key Block, is Pre-Active, owned by
//! the caller and the ID Placeholder. The secret itself exists only in zeroized buffers.

use kmipd_proto::build;
use kmipd_proto::enums::{
    key_format_type as kft, object_type as ot, secret_data_type, split_key_method as skm,
    unique_identifier as uid_kind,
};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};
use zeroize::Zeroizing;

use crate::attrs;
use crate::context::Ctx;
use crate::crypto::split;
use crate::error::{Error, Result};
use crate::keyblock::{key_block, object_body};
use crate::object::{attr_enum, attr_int, new_object, uid_payload};
use crate::objects::{self, keys, template};

/// One share: its split's (method, parts, threshold), Key Part Identifier and material.
struct Share {
    split: (u32, i32, i32),
    id: i32,
    algorithm: Option<u32>,
    bits: Option<i32>,
    material: Zeroizing<Vec<u8>>,
}

/// Handles Join Split Key.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let object_type = r.req_enum(tag::OBJECT_TYPE)?;
    if !matches!(object_type, ot::SYMMETRIC_KEY | ot::SECRET_DATA) {
        return Err(Error::InvalidField("Object Type"));
    }
    let mut attrs = objects::request_attributes(ctx, &r, tag::TEMPLATE_ATTRIBUTE, tag::ATTRIBUTES)?;
    let mut shares = Vec::new();
    for item in r.repeated(tag::UNIQUE_IDENTIFIER) {
        let uid = kmipd_proto::reader::as_text(item)?;
        shares.push(share(ctx, uid)?);
    }
    let first = shares
        .first()
        .ok_or(Error::MissingData("Unique Identifier"))?;
    let (method, _parts, threshold) = first.split;
    if shares.iter().any(|s| s.split != first.split) {
        return Err(Error::CryptographicFailure(
            "the split keys are not of one split",
        ));
    }
    if usize::try_from(threshold).map_or(true, |t| shares.len() < t) {
        return Err(Error::CryptographicFailure(
            "fewer split keys than the Split Key Threshold",
        ));
    }
    let secret = match method {
        skm::XOR => {
            let all: Vec<&[u8]> = shares.iter().map(|s| s.material.as_slice()).collect();
            split::xor_join(&all)?
        }
        skm::POLYNOMIAL_SHARING_GF_2_8 => {
            let mut points = Vec::with_capacity(shares.len());
            for s in &shares {
                let x = u8::try_from(s.id)
                    .map_err(|_| Error::CryptographicFailure("Key Part Identifier"))?;
                points.push((x, s.material.as_slice()));
            }
            split::gf256_join(&points)?
        }
        _ => return Err(Error::FeatureNotSupported("Split Key Method")),
    };
    let object = if object_type == ot::SYMMETRIC_KEY {
        let algorithm = attr_enum(&attrs, tag::CRYPTOGRAPHIC_ALGORITHM)
            .or(first.algorithm)
            .ok_or(Error::MissingData("Cryptographic Algorithm"))?;
        let bits = i32::try_from(secret.len())
            .ok()
            .and_then(|n| n.checked_mul(8))
            .ok_or(Error::InvalidField("Cryptographic Length"))?;
        if attr_int(&attrs, tag::CRYPTOGRAPHIC_LENGTH)
            .or(first.bits)
            .is_some_and(|asked| asked != bits)
        {
            return Err(Error::CryptographicFailure(
                "the joined key is not of the Cryptographic Length",
            ));
        }
        keys::symmetric_len(algorithm, Some(bits))?;
        attrs.set(tag::CRYPTOGRAPHIC_ALGORITHM, Value::Enumeration(algorithm));
        attrs.set(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(bits));
        build::structure(
            tag::SYMMETRIC_KEY,
            vec![build::byte_key_block(
                kft::RAW,
                secret.to_vec(),
                Some((algorithm, bits)),
            )],
        )
    } else {
        let kind = r
            .enumeration(tag::SECRET_DATA_TYPE)?
            .unwrap_or(secret_data_type::PASSWORD);
        keys::secret_data(kind, &secret)
    };
    attrs::check_names_free(ctx, attrs.name_values())?;
    template::server_defaults(&mut attrs, object_type, &object, false);
    let mut obj = new_object(ctx, object_type, Some(object), attrs)?;
    template::finish(ctx, &mut obj)?;
    let uid = obj.uid.clone();
    ctx.tx.put(obj);
    ctx.set_placeholder(&uid);
    ctx.produced(uid_kind::JOIN_SPLIT_KEY, &uid);
    Ok(Some(uid_payload(&uid)))
}

/// The Split Key object `uid`, checked.
fn share(ctx: &Ctx<'_>, uid: &str) -> Result<Share> {
    let obj = ctx.load(uid)?;
    if obj.object_type != ot::SPLIT_KEY {
        return Err(Error::CryptographicFailure("not a Split Key"));
    }
    let body = object_body(&obj)?;
    let r = StructReader::any(body)?;
    let kb = key_block(body)?;
    if kb.wrapped {
        return Err(Error::KeyValueNotPresent);
    }
    Ok(Share {
        split: (
            r.req_enum(tag::SPLIT_KEY_METHOD)?,
            r.req_int(tag::SPLIT_KEY_PARTS)?,
            r.req_int(tag::SPLIT_KEY_THRESHOLD)?,
        ),
        id: r.req_int(tag::KEY_PART_IDENTIFIER)?,
        algorithm: kb.algorithm,
        bits: attr_int(&obj.attributes, tag::CRYPTOGRAPHIC_LENGTH),
        material: kb.bytes()?,
    })
}
