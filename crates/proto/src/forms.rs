//! The text forms of values that the KMIP XML and JSON encodings share, so that both read and
//! write them by one set of rules (`docs/encodings.md`):
//!
//! - **hex numbers**: `0x` (or `0X`) and hex digits of either case; written in upper case at
//!   the full width of the value (8 digits for 4-byte values, 16 for 8-byte ones). On input,
//!   leading zeros are free and the value must fit: at most 8 (16) significant digits.
//! - **hex bytes** (Byte String, Big Integer): pairs of hex digits, an optional `0x` before.
//! - **enumeration names**: the names of the item's enumeration table; the item's table is its
//!   tag's, except that an Attribute Value takes the table of the attribute named by the
//!   Attribute Name that precedes it among its siblings (KMIP 1.x attributes), and an Attribute
//!   Reference's values are tags, written with their names.
//! - **masks** (an Integer whose table is a mask): the names of its bits and one hex value for
//!   the bits no name covers; on input names and hex values separated by `|` or white space.
//! - **dates**: ISO 8601 / RFC 3339 (`crate::datetime`), or a hex number when the time does not
//!   fit the years 0000 to 9999.
//! - **tag names**: a tag is written by name only when the name leads back to the same tag.

use kmipd_ttlv::{Tag, Ttlv, Value};

use crate::datetime;
use crate::spec::{self, EnumDef};
use crate::tag;

/// The digits of a `0x` hex value, or `None` if `text` does not start with `0x` (or `0X`).
pub(crate) fn hex_digits(text: &str) -> Option<&str> {
    text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"))
}

/// Why a hex number is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HexError {
    /// No `0x`, no digits, or a character that is not a hex digit.
    Invalid,
    /// More significant digits than the value holds.
    TooWide,
}

/// Hex digits (without `0x`) as a number of at most `width` significant digits (leading zeros
/// are free).
fn digits_value(digits: &str, width: usize) -> Result<u64, HexError> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(HexError::Invalid);
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > width.min(16) {
        return Err(HexError::TooWide);
    }
    if significant.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(significant, 16).map_err(|_| HexError::Invalid)
}

/// A `0x` hex number of at most `width` significant digits.
pub(crate) fn parse_hex(text: &str, width: usize) -> Result<u64, HexError> {
    digits_value(hex_digits(text).ok_or(HexError::Invalid)?, width)
}

/// A `0x` hex number of at most 32 bits.
pub(crate) fn parse_hex32(text: &str) -> Result<u32, HexError> {
    let v = parse_hex(text, 8)?;
    u32::try_from(v).map_err(|_| HexError::TooWide)
}

/// A `0x` hex number of at most 64 bits.
pub(crate) fn parse_hex64(text: &str) -> Result<u64, HexError> {
    parse_hex(text, 16)
}

/// A 4-byte value in hex, full width.
pub(crate) fn hex32(v: u32) -> String {
    format!("0x{v:08X}")
}

/// An 8-byte value in hex, full width.
pub(crate) fn hex64(v: u64) -> String {
    format!("0x{v:016X}")
}

/// The bits of an Integer.
pub(crate) fn i32_bits(v: i32) -> u32 {
    u32::from_be_bytes(v.to_be_bytes())
}

/// The Integer of these bits.
pub(crate) fn i32_of_bits(v: u32) -> i32 {
    i32::from_be_bytes(v.to_be_bytes())
}

/// The bits of a Long Integer or a time.
pub(crate) fn i64_bits(v: i64) -> u64 {
    u64::from_be_bytes(v.to_be_bytes())
}

/// The Long Integer or time of these bits.
pub(crate) fn i64_of_bits(v: u64) -> i64 {
    i64::from_be_bytes(v.to_be_bytes())
}

/// Bytes from hex digits, with an optional `0x` before; `None` unless every character is a
/// hex digit and they come in pairs.
pub(crate) fn parse_hex_bytes(text: &str) -> Option<Vec<u8>> {
    hex::decode(hex_digits(text).unwrap_or(text)).ok()
}

/// The enumeration (or mask) table of an item with this tag among these preceding `siblings`:
/// the tag's own table (from `tag_table`, which knows the spec's tables and any extra ones),
/// but for an Attribute Value the table of the attribute named by the last Attribute Name
/// before it (none when there is no such sibling or the attribute has no table).
pub(crate) fn value_table(
    tag: Tag,
    siblings: &[Ttlv],
    tag_table: impl Fn(u32) -> Option<&'static EnumDef>,
) -> Option<&'static EnumDef> {
    if tag == tag::ATTRIBUTE_VALUE {
        let name = siblings.iter().rev().find_map(|s| match &s.value {
            Value::TextString(n) if s.tag == tag::ATTRIBUTE_NAME => Some(n.as_str()),
            _ => None,
        })?;
        return spec::attribute_value_enum(name);
    }
    tag_table(tag.value())
}

/// Whether the values of an item with this tag are tags (Attribute Reference), named by the
/// tags' names.
pub(crate) fn values_are_tags(tag: Tag) -> bool {
    tag == tag::ATTRIBUTE_REFERENCE
}

/// A non-zero mask as the names of its bits joined by `separator`, with the bits no name
/// covers as one hex value.
pub(crate) fn mask_text(table: &EnumDef, bits: u32, separator: &str) -> String {
    let (mut words, left) = table.mask_names(bits);
    let hex = hex32(left);
    if left != 0 {
        words.push(&hex);
    }
    words.join(separator)
}

/// Why a mask text is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MaskError<'a> {
    /// Nothing but separators.
    Empty,
    /// A word that is neither a hex number nor a name of the table (or there is no table).
    UnknownName(&'a str),
    /// A hex number that does not fit 32 bits, or is malformed.
    Hex(&'a str, HexError),
}

/// A mask from names (of `table`) and hex numbers, separated by `|` or white space, OR-ed.
pub(crate) fn parse_mask<'a>(text: &'a str, table: Option<&EnumDef>) -> Result<u32, MaskError<'a>> {
    let mut bits = 0u32;
    let mut words = 0usize;
    for word in text
        .split(|c: char| c == '|' || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        words += 1;
        bits |= if hex_digits(word).is_some() {
            parse_hex32(word).map_err(|e| MaskError::Hex(word, e))?
        } else {
            table
                .and_then(|t| t.value_by_xml_name(word))
                .ok_or(MaskError::UnknownName(word))?
        };
    }
    if words == 0 {
        return Err(MaskError::Empty);
    }
    Ok(bits)
}

/// The text of a Date-Time (seconds): ISO 8601 in UTC, or hex beyond the years 0000 to 9999.
pub(crate) fn datetime_text(secs: i64) -> String {
    secs.checked_mul(1_000_000)
        .and_then(|us| datetime::format(us, false))
        .unwrap_or_else(|| hex64(i64_bits(secs)))
}

/// The text of a Date-Time Extended (microseconds): ISO 8601 with microseconds in UTC, or hex
/// beyond the years 0000 to 9999.
pub(crate) fn datetime_extended_text(micros: i64) -> String {
    datetime::format(micros, true).unwrap_or_else(|| hex64(i64_bits(micros)))
}

/// A Date-Time (seconds) from ISO 8601 text, which may not hold fractions of a second.
pub(crate) fn parse_datetime(text: &str) -> Option<i64> {
    match datetime::parse(text) {
        Some(us) if us % 1_000_000 == 0 => Some(us / 1_000_000),
        _ => None,
    }
}

/// A Date-Time Extended (microseconds) from ISO 8601 text.
pub(crate) fn parse_datetime_extended(text: &str) -> Option<i64> {
    datetime::parse(text)
}

/// The name a tag is written with: its XML name, when the tables know it and the name leads
/// back to the same tag.
pub(crate) fn tag_name(tag: u32) -> Option<&'static str> {
    spec::tag_by_value(tag)
        .filter(|d| spec::tag_by_xml_name(d.xml_name).is_some_and(|back| back.tag == d.tag))
        .map(|d| d.xml_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enums;

    #[test]
    fn hex_numbers_have_one_width_rule() {
        assert_eq!(parse_hex32("0xFFFFFFFF"), Ok(u32::MAX));
        assert_eq!(parse_hex32("0x0000000000000001"), Ok(1));
        assert_eq!(parse_hex32("0x1ffffffff"), Err(HexError::TooWide));
        assert_eq!(parse_hex32("0x+1"), Err(HexError::Invalid));
        assert_eq!(parse_hex32("0x"), Err(HexError::Invalid));
        assert_eq!(parse_hex32("12"), Err(HexError::Invalid));
        assert_eq!(parse_hex64("0Xffffffffffffffff"), Ok(u64::MAX));
        assert_eq!(hex32(10), "0x0000000A");
        assert_eq!(hex64(10), "0x000000000000000A");
    }

    #[test]
    fn masks_of_names_and_hex() {
        let table = spec::enum_of_tag(tag::CRYPTOGRAPHIC_USAGE_MASK.value());
        let both =
            enums::cryptographic_usage_mask::ENCRYPT | enums::cryptographic_usage_mask::DECRYPT;
        assert_eq!(parse_mask("Encrypt|Decrypt", table), Ok(both));
        assert_eq!(parse_mask(" Encrypt  Decrypt ", table), Ok(both));
        assert_eq!(parse_mask("0x4 Decrypt", table), Ok(both));
        assert_eq!(parse_mask("0x4", None), Ok(4));
        assert_eq!(parse_mask(" | ", table), Err(MaskError::Empty));
        assert_eq!(
            parse_mask("Nope", table),
            Err(MaskError::UnknownName("Nope"))
        );
        assert_eq!(
            parse_mask("Encrypt", None),
            Err(MaskError::UnknownName("Encrypt"))
        );
        let table = table.unwrap_or_else(|| panic!("no usage mask table"));
        assert_eq!(
            mask_text(table, both | 0x4000_0000, " "),
            "Encrypt Decrypt 0x40000000"
        );
        assert_eq!(mask_text(table, both, "|"), "Encrypt|Decrypt");
    }

    #[test]
    fn attribute_values_take_the_table_of_the_preceding_name() {
        let name = |n: &str| Ttlv::new(tag::ATTRIBUTE_NAME, Value::TextString(n.into()));
        let table = |siblings: &[Ttlv]| {
            value_table(tag::ATTRIBUTE_VALUE, siblings, spec::enum_of_tag).map(|t| t.xml_name)
        };
        assert_eq!(
            table(&[name("Object Type")]),
            spec::enum_of_tag(tag::OBJECT_TYPE.value()).map(|t| t.xml_name)
        );
        assert_eq!(table(&[name("Object Type"), name("Name")]), None);
        assert_eq!(table(&[]), None);
    }
}
