//! Managed-object structures as clients send them (Register, the Key Value of a Get answer)
//! and the attributes requests carry (Template-Attribute in 1.x, Attributes in 2.x).
//!
//! The store keeps an object as its KMIP structure with Key Material only inside the Key Value:
//! attributes a client put in a Key Value, and the Key Block's Cryptographic Algorithm/Length,
//! become object attributes here, so that every later operation finds them in one place.

pub(crate) mod cert;
pub(crate) mod format;
pub(crate) mod keys;
pub(crate) mod pkcs12;
pub(crate) mod rekey;
pub(crate) mod template;
pub(crate) mod wrap;

use kmipd_proto::attributes::{AttrName, Attribute, Attributes, RequestAttributes};
use kmipd_proto::build;
use kmipd_proto::enums::{key_format_type as kft, object_type as ot};
use kmipd_proto::reader::{self, StructReader};
use kmipd_proto::tag;
use kmipd_ttlv::{Tag, Ttlv, Value};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::object::server_only;

/// Object Type Template (1.x; reserved in 2.x, so absent from the 2.x-based tables).
pub(crate) const TEMPLATE: u32 = 6;

/// The tag of an object type's structure.
pub(crate) fn object_tag(object_type: u32) -> Option<Tag> {
    Some(match object_type {
        ot::CERTIFICATE => tag::CERTIFICATE,
        ot::SYMMETRIC_KEY => tag::SYMMETRIC_KEY,
        ot::PUBLIC_KEY => tag::PUBLIC_KEY,
        ot::PRIVATE_KEY => tag::PRIVATE_KEY,
        ot::SPLIT_KEY => tag::SPLIT_KEY,
        TEMPLATE => tag::TEMPLATE,
        ot::SECRET_DATA => tag::SECRET_DATA,
        ot::OPAQUE_OBJECT => tag::OPAQUE_OBJECT,
        ot::PGP_KEY => tag::PGP_KEY,
        ot::CERTIFICATE_REQUEST => tag::CERTIFICATE_REQUEST,
        _ => return None,
    })
}

/// Reads the attributes of a request: the 1.x Template-Attribute-like structure `v1` or the
/// 2.x Attributes-like structure `v2`, whichever the request's version uses. 1.x template
/// references are resolved (their attributes apply unless the request gives its own).
/// Attributes only the server sets are dropped (clients such as MySQL keyring_okv send them).
pub(crate) fn request_attributes(
    ctx: &Ctx<'_>,
    r: &StructReader<'_>,
    v1: Tag,
    v2: Tag,
) -> Result<Attributes> {
    request_attributes_keeping(ctx, r, v1, v2, &[])
}

/// [`request_attributes`], keeping the server-set attributes of `keep` that a client may give
/// in this request (Register: Random Number Generator and Original Creation Date, which
/// describe how and when the client made the object, KMIP 1.4 §3.43-3.44).
pub(crate) fn request_attributes_keeping(
    ctx: &Ctx<'_>,
    r: &StructReader<'_>,
    v1: Tag,
    v2: Tag,
    keep: &[Tag],
) -> Result<Attributes> {
    let parsed = if ctx.v2() {
        match r.optional(v2) {
            Some(item) => RequestAttributes::from_v2_attributes(item)?,
            None => RequestAttributes::default(),
        }
    } else {
        match r.optional(v1) {
            Some(item) => RequestAttributes::from_v1_template(item)?,
            None => RequestAttributes::default(),
        }
    };
    // KMIP 1.4 §4 (Template-Attribute): a single-instance attribute of a later template wins
    // over an earlier template's, the request's own over every template's; for multi-instance
    // attributes the union of the values is used (the templates' first, then the request's).
    let mut from_templates = Attributes::new();
    for name in &parsed.template_names {
        for a in template::attributes_of(ctx, name)?.0 {
            if !crate::attrs::rule(&a.name).multi {
                from_templates.0.retain(|b| !b.name.same_attribute(&a.name));
            }
            from_templates.0.push(a);
        }
    }
    let own: Vec<Attribute> = parsed
        .attributes
        .0
        .into_iter()
        .filter(|a| !server_only(&a.name) || a.name.tag().is_some_and(|t| keep.contains(&t)))
        .collect();
    let mut attrs = Attributes::new();
    for a in from_templates.0 {
        let overridden = own.iter().any(|b| {
            b.name.same_attribute(&a.name)
                && (!crate::attrs::rule(&a.name).multi || b.value == a.value)
        });
        if !overridden {
            attrs.0.push(a);
        }
    }
    attrs.0.extend(own);
    Ok(attrs)
}

/// Adds `extra` attributes that `attrs` does not already have (the request's own win).
pub(crate) fn merge_missing(attrs: &mut Attributes, extra: Attributes) {
    for a in extra.0 {
        if !attrs.has(&a.name) {
            attrs.0.push(a);
        }
    }
}

/// A Register request's object, ready for the store, with the attributes it carried.
pub(crate) struct Parsed {
    /// The object structure (Key Value with Key Material only).
    pub(crate) object: Ttlv,
    /// Attributes found in the object (Key Value attributes, Key Block algorithm/length,
    /// certificate fields).
    pub(crate) attributes: Attributes,
}

/// Checks and normalises a registered object of type `object_type`.
pub(crate) fn parse_object(ctx: &Ctx<'_>, object_type: u32, item: &Ttlv) -> Result<Parsed> {
    let r = StructReader::any(item)?;
    let mut attributes = Attributes::new();
    let object = match object_type {
        ot::SYMMETRIC_KEY | ot::PUBLIC_KEY | ot::PRIVATE_KEY => {
            let kb = key_block(ctx, r.required(tag::KEY_BLOCK)?, &mut attributes)?;
            build::structure(item.tag, vec![kb])
        }
        ot::SECRET_DATA => {
            let sdt = r.required(tag::SECRET_DATA_TYPE)?;
            reader::as_enum(sdt)?;
            let kb = key_block(ctx, r.required(tag::KEY_BLOCK)?, &mut attributes)?;
            build::structure(item.tag, vec![sdt.clone(), kb])
        }
        ot::SPLIT_KEY => {
            let kb = key_block(ctx, r.required(tag::KEY_BLOCK)?, &mut attributes)?;
            split_key(&r, kb)?
        }
        ot::OPAQUE_OBJECT => {
            let odt = r.required(tag::OPAQUE_DATA_TYPE)?;
            reader::as_enum(odt)?;
            let odv = r.required(tag::OPAQUE_DATA_VALUE)?;
            reader::as_bytes(odv)?;
            build::structure(item.tag, vec![odt.clone(), odv.clone()])
        }
        ot::CERTIFICATE => {
            let ct = r.req_enum(tag::CERTIFICATE_TYPE)?;
            let der = r.req_bytes(tag::CERTIFICATE_VALUE)?;
            attributes = cert::attributes(ctx, ct, der)?;
            item.clone()
        }
        ot::PGP_KEY => {
            // A PGP key (KMIP 1.2+ §2.2.9): its PGP Key Version and a Key Block whose Raw Key
            // Material is the key as the client holds it (a transferable key, often
            // ASCII-armored): kept as given, as an Opaque Object is.
            let version = r.required(tag::PGP_KEY_VERSION)?;
            if reader::as_int(version)? < 1 {
                return Err(Error::InvalidField("PGP Key Version"));
            }
            let kb = key_block(ctx, r.required(tag::KEY_BLOCK)?, &mut attributes)?;
            build::structure(item.tag, vec![version.clone(), kb])
        }
        TEMPLATE if !ctx.v2() => {
            // The Template's content stays in the object; its Names name the template itself.
            let parsed = RequestAttributes::from_v1_template(item)?;
            let mut kept = Vec::new();
            for a in parsed.attributes.0 {
                if a.name == AttrName::Std(tag::NAME) {
                    attributes.0.push(a);
                } else {
                    kept.push(a.to_v1(None));
                }
            }
            build::structure(item.tag, kept)
        }
        _ => return Err(Error::FeatureNotSupported("object type")),
    };
    Ok(Parsed { object, attributes })
}

/// A Split Key structure with its fields checked (KMIP 1.4 §2.2.5): 1 <= Key Part Identifier
/// <= Split Key Parts, 1 <= Split Key Threshold <= Split Key Parts, Prime Field Size present
/// exactly for Polynomial Sharing Prime Field; fields in the spec's order, `kb` the normalised
/// Key Block.
pub(crate) fn split_key(r: &StructReader<'_>, kb: Ttlv) -> Result<Ttlv> {
    use kmipd_proto::enums::split_key_method as skm;
    let parts = r.req_int(tag::SPLIT_KEY_PARTS)?;
    let id = r.req_int(tag::KEY_PART_IDENTIFIER)?;
    let threshold = r.req_int(tag::SPLIT_KEY_THRESHOLD)?;
    let method = r.req_enum(tag::SPLIT_KEY_METHOD)?;
    let prime = r.optional(tag::PRIME_FIELD_SIZE);
    if !(1..=parts).contains(&id) {
        return Err(Error::InvalidField("Key Part Identifier"));
    }
    if !(1..=parts).contains(&threshold) {
        return Err(Error::InvalidField("Split Key Threshold"));
    }
    if prime.is_some() != (method == skm::POLYNOMIAL_SHARING_PRIME_FIELD) {
        return Err(Error::InvalidField("Prime Field Size"));
    }
    let mut items = vec![
        build::int(tag::SPLIT_KEY_PARTS, parts),
        build::int(tag::KEY_PART_IDENTIFIER, id),
        build::int(tag::SPLIT_KEY_THRESHOLD, threshold),
        build::enumeration(tag::SPLIT_KEY_METHOD, method),
    ];
    items.extend(prime.cloned());
    items.push(kb);
    Ok(build::structure(tag::SPLIT_KEY, items))
}

/// Normalises a Key Block: attributes inside the Key Value move out; Cryptographic
/// Algorithm/Length become attributes; a missing length of a raw symmetric key is derived.
fn key_block(ctx: &Ctx<'_>, item: &Ttlv, attrs: &mut Attributes) -> Result<Ttlv> {
    let kb = StructReader::new(item, tag::KEY_BLOCK)?;
    let format = kb.req_enum(tag::KEY_FORMAT_TYPE)?;
    if let Some(c) = kb.optional(tag::KEY_COMPRESSION_TYPE) {
        reader::as_enum(c)?;
    }
    let value = kb.optional(tag::KEY_VALUE);
    let algorithm = kb.enumeration(tag::CRYPTOGRAPHIC_ALGORITHM)?;
    let mut length = kb.int(tag::CRYPTOGRAPHIC_LENGTH)?;
    let wrapped = kb.optional(tag::KEY_WRAPPING_DATA).is_some();
    let mut items = Vec::with_capacity(kb.items().len());
    for child in kb.items() {
        if child.tag == tag::KEY_VALUE {
            items.push(key_value(ctx, child, attrs, wrapped)?);
        } else {
            items.push(child.clone());
        }
    }
    match value {
        // A key kept elsewhere (KMIP 1.4 §3.41-3.42, the MDO cases): the server records Key
        // Value Present = false; the client may say where it is (Key Value Location). Such
        // an object can be managed but not used or exported (Key Value Not Present).
        None if wrapped => return Err(Error::MissingData("Key Value")),
        None => attrs.set(tag::KEY_VALUE_PRESENT, Value::Boolean(false)),
        Some(v) if length.is_none() && !wrapped => length = derived_length(format, v),
        Some(_) => {}
    }
    if let Some(a) = algorithm
        && !attrs.has(&AttrName::Std(tag::CRYPTOGRAPHIC_ALGORITHM))
    {
        attrs.set(tag::CRYPTOGRAPHIC_ALGORITHM, Value::Enumeration(a));
    }
    if let Some(l) = length
        && algorithm.is_some()
        && !attrs.has(&AttrName::Std(tag::CRYPTOGRAPHIC_LENGTH))
    {
        attrs.set(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(l));
    }
    Ok(build::structure(tag::KEY_BLOCK, items))
}

/// The Key Value with Key Material only; its attributes are appended to `attrs`.
fn key_value(ctx: &Ctx<'_>, value: &Ttlv, attrs: &mut Attributes, wrapped: bool) -> Result<Ttlv> {
    if let Value::ByteString(_) = value.value {
        if wrapped {
            return Ok(value.clone());
        }
        return Err(Error::InvalidField("Key Value"));
    }
    let r = StructReader::new(value, tag::KEY_VALUE)?;
    let material = r.required(tag::KEY_MATERIAL)?;
    for child in r.items() {
        if child.tag == tag::ATTRIBUTE && !ctx.v2() {
            let (a, _) = Attribute::from_v1(child)?;
            push_client_attr(attrs, a);
        } else if child.tag == tag::ATTRIBUTES || child.tag == tag::ATTRIBUTE {
            for a in RequestAttributes::from_v2_attributes(child)?.attributes.0 {
                push_client_attr(attrs, a);
            }
        } else if child.tag != tag::KEY_MATERIAL {
            return Err(Error::InvalidField("Key Value"));
        }
    }
    Ok(build::structure(tag::KEY_VALUE, vec![material.clone()]))
}

fn push_client_attr(attrs: &mut Attributes, a: Attribute) {
    if !server_only(&a.name) {
        attrs.0.push(a);
    }
}

/// The length in bits of a symmetric key given without one.
fn derived_length(format: u32, value: &Ttlv) -> Option<i32> {
    let r = StructReader::new(value, tag::KEY_VALUE).ok()?;
    let material = r.optional(tag::KEY_MATERIAL)?;
    let bytes = match format {
        kft::RAW => reader::as_bytes(material).ok()?,
        kft::TRANSPARENT_SYMMETRIC_KEY => {
            StructReader::any(material).ok()?.bytes(tag::KEY).ok()??
        }
        _ => return None,
    };
    i32::try_from(bytes.len()).ok()?.checked_mul(8)
}

/// `items` (a structure's children) with each item of `new`'s tag replaced by `new`.
pub(crate) fn with_child(items: &[Ttlv], new: &Ttlv) -> Vec<Ttlv> {
    items
        .iter()
        .map(|i| {
            if i.tag == new.tag {
                new.clone()
            } else {
                i.clone()
            }
        })
        .collect()
}
