//! Encoding: the exact inverse of [`decode`](crate::decode).

use crate::{ItemType, Ttlv, Value};

/// An item too long for the 4-byte TTLV length field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("item {tag} would be {len} bytes long, more than a TTLV length can express")]
pub struct EncodeError {
    /// The tag of the item.
    pub tag: crate::Tag,
    /// Its length.
    pub len: usize,
}

/// Appends the encoding of `item` to `out`, in one pass: each Structure's length is written as
/// a placeholder and patched once its contents are written.
///
/// On error (a value longer than 4 GiB), `out` is left as it was.
pub fn encode(item: &Ttlv, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let result = write_item(item, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Appends the encoding of an item made of `tag` and `value`, exactly as [`encode`] would
/// encode `Ttlv::new(tag, value.clone())`, without building (cloning) that item.
///
/// On error (a value longer than 4 GiB), `out` is left as it was.
pub fn encode_value(tag: crate::Tag, value: &Value, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let result = write_parts(tag, value, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Appends a Text String item of `tag` holding `text`, as [`encode_value`] would append
/// `Value::TextString(text.to_owned())`, without the owned copy.
///
/// On error (a value longer than 4 GiB), `out` is left as it was.
pub fn encode_text(tag: crate::Tag, text: &str, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode_variable(tag, ItemType::TextString, text.as_bytes(), out)
}

/// Appends a Byte String item of `tag` holding `bytes`, as [`encode_value`] would append
/// `Value::ByteString` of a copy of them, without the copy.
///
/// On error (a value longer than 4 GiB), `out` is left as it was.
pub fn encode_byte_string(
    tag: crate::Tag,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    encode_variable(tag, ItemType::ByteString, bytes, out)
}

fn encode_variable(
    tag: crate::Tag,
    item_type: ItemType,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&tag.to_bytes());
    out.push(item_type.code());
    let result = variable(out, tag, bytes);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Encodes `item` into a new vector of exactly the right capacity.
pub fn encode_to_vec(item: &Ttlv) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(encoded_len(item));
    encode(item, &mut out)?;
    Ok(out)
}

/// The number of bytes [`encode`] writes for `item`, padding included.
pub fn encoded_len(item: &Ttlv) -> usize {
    8 + match &item.value {
        Value::Structure(children) => children.iter().map(encoded_len).sum(),
        Value::TextString(s) => padded(s.len()),
        Value::ByteString(b) => padded(b.len()),
        Value::BigInteger(b) => b.as_bytes().len(),
        Value::Integer(_)
        | Value::Enumeration(_)
        | Value::Interval(_)
        | Value::LongInteger(_)
        | Value::Boolean(_)
        | Value::DateTime(_)
        | Value::DateTimeExtended(_) => 8,
    }
}

fn padded(len: usize) -> usize {
    len.div_ceil(8) * 8
}

fn write_item(item: &Ttlv, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    write_parts(item.tag, &item.value, out)
}

fn write_parts(tag: crate::Tag, value: &Value, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.extend_from_slice(&tag.to_bytes());
    out.push(value.item_type().code());
    match value {
        Value::Structure(children) => {
            let len_at = out.len();
            out.extend_from_slice(&[0; 4]);
            for child in children {
                write_item(child, out)?;
            }
            let len = out.len() - len_at - 4;
            let len32 = u32::try_from(len).map_err(|_| EncodeError { tag, len })?;
            if let Some(slot) = out.get_mut(len_at..len_at + 4) {
                slot.copy_from_slice(&len32.to_be_bytes());
            }
        }
        Value::Integer(v) => fixed4(out, v.to_be_bytes()),
        Value::Enumeration(v) | Value::Interval(v) => fixed4(out, v.to_be_bytes()),
        Value::LongInteger(v) | Value::DateTime(v) | Value::DateTimeExtended(v) => {
            fixed8(out, v.to_be_bytes())
        }
        Value::Boolean(v) => fixed8(out, u64::from(*v).to_be_bytes()),
        Value::TextString(s) => variable(out, tag, s.as_bytes())?,
        Value::ByteString(b) => variable(out, tag, b)?,
        Value::BigInteger(b) => variable(out, tag, b.as_bytes())?,
    }
    Ok(())
}

fn fixed4(out: &mut Vec<u8>, v: [u8; 4]) {
    out.extend_from_slice(&4u32.to_be_bytes());
    out.extend_from_slice(&v);
    out.extend_from_slice(&[0; 4]);
}

fn fixed8(out: &mut Vec<u8>, v: [u8; 8]) {
    out.extend_from_slice(&8u32.to_be_bytes());
    out.extend_from_slice(&v);
}

fn variable(out: &mut Vec<u8>, tag: crate::Tag, bytes: &[u8]) -> Result<(), EncodeError> {
    let len = bytes.len();
    let len32 = u32::try_from(len).map_err(|_| EncodeError { tag, len })?;
    out.extend_from_slice(&len32.to_be_bytes());
    out.extend_from_slice(bytes);
    out.resize(out.len() + (padded(len) - len), 0);
    Ok(())
}
