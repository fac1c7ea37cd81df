//! Key Format Type conversion for Get: the stored Key Block in the format a client asks for.
//!
//! Symmetric keys: Raw <-> Transparent Symmetric Key. Other conversions are Key Format Type
//! Not Supported. A Key Compression Type is refused unless it is the uncompressed EC point
//! form a key already has.

use kmipd_proto::enums::key_format_type as kft;
use kmipd_proto::reader::{self, StructReader};
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::{Ttlv, Value};

use crate::context::Ctx;
use crate::error::{Error, Result};

/// EC Public Key Type Uncompressed (Key Compression Type 1).
const EC_UNCOMPRESSED: u32 = 1;

/// The object structure `body` of `obj` with its Key Block in format `wanted`.
pub(crate) fn convert(
    _ctx: &Ctx<'_>,
    _obj: &ManagedObject,
    body: &Ttlv,
    wanted: Option<u32>,
    compression: Option<u32>,
) -> Result<Ttlv> {
    let r = StructReader::any(body)?;
    let Some(kb_item) = r.optional(tag::KEY_BLOCK) else {
        // Certificates, opaque objects: no key format to speak of.
        if wanted.is_some() {
            return Err(Error::KeyFormatTypeNotSupported);
        }
        if compression.is_some() {
            return Err(Error::KeyCompressionTypeNotSupported);
        }
        return Ok(body.clone());
    };
    let kb = StructReader::new(kb_item, tag::KEY_BLOCK)?;
    let stored = kb.req_enum(tag::KEY_FORMAT_TYPE)?;
    if let Some(c) = compression
        && c != EC_UNCOMPRESSED
    {
        return Err(Error::KeyCompressionTypeNotSupported);
    }
    let Some(wanted) = wanted.filter(|w| *w != stored) else {
        return Ok(body.clone());
    };
    if kb.optional(tag::KEY_WRAPPING_DATA).is_some() {
        return Err(Error::KeyFormatTypeNotSupported);
    }
    let value = StructReader::new(kb.required(tag::KEY_VALUE)?, tag::KEY_VALUE)?;
    let material = value.required(tag::KEY_MATERIAL)?;
    let new_material = convert_material(stored, wanted, material)?;
    let items = kb
        .items()
        .iter()
        .map(|i| {
            if i.tag == tag::KEY_FORMAT_TYPE {
                reader::enumeration(tag::KEY_FORMAT_TYPE, wanted)
            } else if i.tag == tag::KEY_VALUE {
                reader::structure(tag::KEY_VALUE, vec![new_material.clone()])
            } else {
                i.clone()
            }
        })
        .collect();
    let new_kb = reader::structure(tag::KEY_BLOCK, items);
    let children = r
        .items()
        .iter()
        .map(|i| {
            if i.tag == tag::KEY_BLOCK {
                new_kb.clone()
            } else {
                i.clone()
            }
        })
        .collect();
    Ok(reader::structure(body.tag, children))
}

/// The Key Material item in another format.
fn convert_material(stored: u32, wanted: u32, material: &Ttlv) -> Result<Ttlv> {
    match (stored, wanted) {
        (kft::RAW, kft::TRANSPARENT_SYMMETRIC_KEY) => {
            let key = reader::as_bytes(material)?;
            Ok(reader::structure(
                tag::KEY_MATERIAL,
                vec![reader::bytes(tag::KEY, key.to_vec())],
            ))
        }
        (kft::TRANSPARENT_SYMMETRIC_KEY, kft::RAW) => {
            let key = StructReader::any(material)?.req_bytes(tag::KEY)?;
            Ok(Ttlv::new(tag::KEY_MATERIAL, Value::bytes(key.to_vec())))
        }
        _ => Err(Error::KeyFormatTypeNotSupported),
    }
}
