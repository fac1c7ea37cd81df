//! Building TTLV trees: one constructor per item type, and the payload pieces that every writer
//! of KMIP requests or responses needs (the server's operations, the client, the benchmark and
//! the tests): a Unique Identifier, a Key Block, the Cryptographic Parameters of AES-GCM, a
//! Cryptographic Usage Mask, a Name, and attributes in a version's request form.
//!
//! Reading is the other direction ([`crate::reader`]).

use kmipd_ttlv::{Tag, Ttlv, Value};

use crate::attributes::Attribute;
use crate::enums::{block_cipher_mode, cryptographic_algorithm, name_type, object_type};
use crate::message::ProtocolVersion;
use crate::tag;

/// Builds a structure.
pub fn structure(tag: Tag, items: Vec<Ttlv>) -> Ttlv {
    Ttlv::new(tag, Value::Structure(items))
}

/// Builds a Text String item.
pub fn text(tag: Tag, s: impl Into<String>) -> Ttlv {
    Ttlv::new(tag, Value::TextString(s.into()))
}

/// Builds an Integer item.
pub fn int(tag: Tag, v: i32) -> Ttlv {
    Ttlv::new(tag, Value::Integer(v))
}

/// Builds an Enumeration item.
pub fn enumeration(tag: Tag, v: u32) -> Ttlv {
    Ttlv::new(tag, Value::Enumeration(v))
}

/// Builds a Boolean item.
pub fn boolean(tag: Tag, v: bool) -> Ttlv {
    Ttlv::new(tag, Value::Boolean(v))
}

/// Builds a Byte String item.
pub fn bytes(tag: Tag, v: impl Into<Vec<u8>>) -> Ttlv {
    Ttlv::new(tag, Value::bytes(v.into()))
}

/// Builds a Date-Time item.
pub fn datetime(tag: Tag, v: i64) -> Ttlv {
    Ttlv::new(tag, Value::DateTime(v))
}

/// Builds a Long Integer item.
pub fn long(tag: Tag, v: i64) -> Ttlv {
    Ttlv::new(tag, Value::LongInteger(v))
}

/// A Unique Identifier item (the text form).
pub fn unique_identifier(uid: impl Into<String>) -> Ttlv {
    text(tag::UNIQUE_IDENTIFIER, uid)
}

/// A Key Block: the Key Format Type, a Key Value holding `material` (a Key Material item, a Byte
/// String or a structure of key parts), then `extra` (Cryptographic Algorithm and Length, ...).
pub fn key_block(format: u32, material: Ttlv, extra: impl IntoIterator<Item = Ttlv>) -> Ttlv {
    let mut items = vec![
        enumeration(tag::KEY_FORMAT_TYPE, format),
        structure(tag::KEY_VALUE, vec![material]),
    ];
    items.extend(extra);
    structure(tag::KEY_BLOCK, items)
}

/// A Key Block of a byte-string format (Raw, Opaque, PKCS#1, PKCS#8, ...) holding `material`,
/// with the Cryptographic Algorithm and Length when given.
pub fn byte_key_block(
    format: u32,
    material: impl Into<Vec<u8>>,
    algorithm: Option<(u32, i32)>,
) -> Ttlv {
    key_block(
        format,
        bytes(tag::KEY_MATERIAL, material),
        algorithm.into_iter().flat_map(|(alg, bits)| {
            [
                enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, alg),
                int(tag::CRYPTOGRAPHIC_LENGTH, bits),
            ]
        }),
    )
}

/// The Cryptographic Parameters of AES-GCM with a tag of `tag_length` bytes.
///
/// The fields follow the specification's order of Cryptographic Parameters (Block Cipher Mode,
/// ..., Cryptographic Algorithm, ..., Tag Length): strict servers (PyKMIP) refuse another.
pub fn gcm_parameters(tag_length: i32) -> Ttlv {
    structure(
        tag::CRYPTOGRAPHIC_PARAMETERS,
        vec![
            enumeration(tag::BLOCK_CIPHER_MODE, block_cipher_mode::GCM),
            enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, cryptographic_algorithm::AES),
            int(tag::TAG_LENGTH, tag_length),
        ],
    )
}

/// The value of a mask attribute (Cryptographic Usage Mask, ...): an Integer with these bits.
pub fn mask(bits: u32) -> Value {
    Value::Integer(i32::from_be_bytes(bits.to_be_bytes()))
}

/// A Cryptographic Usage Mask item (the 2.x attribute form) of these
/// [`crate::enums::cryptographic_usage_mask`] bits.
pub fn usage_mask(bits: u32) -> Ttlv {
    Ttlv::new(tag::CRYPTOGRAPHIC_USAGE_MASK, mask(bits))
}

/// A Cryptographic Usage Mask attribute of these bits.
pub fn usage_mask_attr(bits: u32) -> Attribute {
    Attribute::std(tag::CRYPTOGRAPHIC_USAGE_MASK, mask(bits))
}

/// The value of a Name attribute: `name` as an Uninterpreted Text String.
pub fn name(name: &str) -> Value {
    Value::Structure(vec![
        text(tag::NAME_VALUE, name),
        enumeration(tag::NAME_TYPE, name_type::UNINTERPRETED_TEXT_STRING),
    ])
}

/// A Name attribute: `name` as an Uninterpreted Text String.
pub fn name_attr(n: &str) -> Attribute {
    Attribute::std(tag::NAME, name(n))
}

/// The 2.x Create payload of a symmetric key: Object Type, then Attributes with the algorithm,
/// the length in bits and the Cryptographic Usage Mask.
pub fn create_symmetric_key_v2(algorithm: u32, bits: i32, usage: u32) -> Vec<Ttlv> {
    vec![
        enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
        structure(
            tag::ATTRIBUTES,
            vec![
                enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, algorithm),
                int(tag::CRYPTOGRAPHIC_LENGTH, bits),
                usage_mask(usage),
            ],
        ),
    ]
}

/// Attributes in the request form of `version`: a structure of `v1_tag` holding 1.x Attribute
/// items (Template-Attribute, Common Template-Attribute, ...), or one of `v2_tag` holding the
/// 2.x attribute items (Attributes, Common Attributes, ...).
pub fn attributes(version: ProtocolVersion, v1_tag: Tag, v2_tag: Tag, attrs: &[Attribute]) -> Ttlv {
    if version.is_v2() {
        structure(v2_tag, attrs.iter().map(Attribute::to_v2).collect())
    } else {
        structure(v1_tag, attrs.iter().map(|a| a.to_v1(None)).collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]

    use super::*;
    use crate::enums::{cryptographic_usage_mask as usage, key_format_type};

    #[test]
    fn gcm_parameters_follow_the_spec_field_order() {
        let p = gcm_parameters(16);
        assert_eq!(p.tag, tag::CRYPTOGRAPHIC_PARAMETERS);
        let Value::Structure(fields) = &p.value else {
            panic!("not a structure: {p:?}");
        };
        let tags: Vec<_> = fields.iter().map(|f| f.tag).collect();
        assert_eq!(
            tags,
            [
                tag::BLOCK_CIPHER_MODE,
                tag::CRYPTOGRAPHIC_ALGORITHM,
                tag::TAG_LENGTH
            ]
        );
        assert_eq!(fields[2].value, Value::Integer(16));
    }

    #[test]
    fn byte_key_blocks_hold_the_material_then_algorithm_and_length() {
        let kb = byte_key_block(key_format_type::RAW, vec![7; 16], Some((3, 128)));
        let Value::Structure(fields) = &kb.value else {
            panic!("not a structure: {kb:?}");
        };
        let tags: Vec<_> = fields.iter().map(|f| f.tag).collect();
        assert_eq!(
            tags,
            [
                tag::KEY_FORMAT_TYPE,
                tag::KEY_VALUE,
                tag::CRYPTOGRAPHIC_ALGORITHM,
                tag::CRYPTOGRAPHIC_LENGTH
            ]
        );
        assert_eq!(
            fields[1],
            structure(tag::KEY_VALUE, vec![bytes(tag::KEY_MATERIAL, vec![7; 16])])
        );
        assert_eq!(fields[3].value, Value::Integer(128));
        let bare = byte_key_block(key_format_type::OPAQUE, vec![1], None);
        assert_eq!(bare.children().map(<[Ttlv]>::len), Some(2));
    }

    #[test]
    fn masks_keep_every_bit() {
        assert_eq!(
            usage_mask(usage::ENCRYPT | usage::DECRYPT).value,
            Value::Integer(12)
        );
        assert_eq!(mask(0x8000_0001), Value::Integer(i32::MIN + 1));
    }

    #[test]
    fn attributes_take_the_form_of_the_version() {
        let a = [usage_mask_attr(usage::SIGN)];
        let v2 = attributes(
            ProtocolVersion::V2_1,
            tag::TEMPLATE_ATTRIBUTE,
            tag::ATTRIBUTES,
            &a,
        );
        assert_eq!(
            v2,
            structure(tag::ATTRIBUTES, vec![usage_mask(usage::SIGN)])
        );
        let v1 = attributes(
            ProtocolVersion::V1_4,
            tag::TEMPLATE_ATTRIBUTE,
            tag::ATTRIBUTES,
            &a,
        );
        assert_eq!(v1.tag, tag::TEMPLATE_ATTRIBUTE);
        assert_eq!(v1.children(), Some(&[a[0].to_v1(None)][..]));
    }
}
