//! The KMIP JSON encoding of a TTLV tree (KMIP Additional Message Encodings v1.0 §4, the JSON
//! profile of KMIP Profiles 1.3 and later), both ways.
//!
//! Every item is a JSON object `{"tag": ..., "type": ..., "value": ...}`:
//!
//! - `tag`: the tag's normalized name (`"BatchCount"`), or `"0x"` and 6 hex digits for a tag
//!   the tables do not know (`"0x540001"`); both are accepted for every tag.
//! - `type`: the item type's name (`"Integer"`, `"DateTimeExtended"`, ...); omitted for a
//!   Structure (an explicit `"Structure"` is accepted).
//! - `value`, by type (first the form written, then the other forms read):
//!
//! | type | written | also read |
//! |---|---|---|
//! | Structure | array of items | |
//! | Integer | number; for a mask tag, names joined by `\|` (`"Encrypt\|Decrypt"`, leftover bits as hex), `0` when empty | `"0x"` + hex; a mask string may mix names and hex |
//! | LongInteger | number if `\|v\| < 2^52`, else `"0x"` + 16 hex digits | either form for any value |
//! | BigInteger | `"0x"` + the two's complement bytes in hex (a multiple of 8 bytes) | a number; hex of any even length (sign-extended) |
//! | Enumeration | the value's name, else `"0x"` + 8 hex digits | a number |
//! | Boolean | `true` / `false` | `"0x0000000000000000"` / `"0x0000000000000001"` |
//! | TextString | string | |
//! | ByteString | hex without `0x` (lower case) | upper case |
//! | DateTime | ISO 8601 `"2012-04-27T08:12:24+00:00"` (hex if beyond year 9999) | any UTC offset or `Z`; hex; a number of seconds |
//! | Interval | number | `"0x"` + hex |
//! | DateTimeExtended | ISO 8601 with microseconds `"...T08:12:24.000001+00:00"` | as DateTime, in microseconds |
//!
//! Hex numbers (`"0x..."`) are written with upper-case digits at full width (8 digits for
//! 4-byte values, 16 for 8-byte ones); on input, fewer digits are accepted as long as the value
//! fits, and so are lower-case digits.
//!
//! As in the XML encoding, the `AttributeValue` of a KMIP 1.x `Attribute` takes its
//! enumeration (or mask) from the sibling `AttributeName` that precedes it: the value of
//! `{"AttributeName": "Cryptographic Usage Mask"}` is written `"Encrypt|Decrypt"`; and the
//! values of an `AttributeReference` are tags, written by name. These rules, the hex width, the
//! mask and date forms are those of [`crate::forms`], shared with the XML encoding.
//!
//! Reading is strict about everything else: an object with members other than `tag`, `type` and
//! `value`, a value of the wrong JSON type, a number out of range, a name that is not in the
//! enumeration, a date with fractions of a second finer than the type carries, all fail with a
//! [`JsonError`] that carries the path of tag names down to the faulty item.
//!
//! Whatever is written reads back to the same tree, so that `TTLV -> JSON -> TTLV` is exact.

use std::fmt;

use kmipd_ttlv::{BigInteger, ItemType, Limits, Tag, Ttlv, Value};
use serde_json::{Map, Number, Value as Json};

use crate::forms::{self, HexError, MaskError};
use crate::spec::{self, EnumDef};

/// LongInteger values whose magnitude reaches this are written as hex: a JSON number is an IEEE
/// double in most readers, exact only up to 52 bits of mantissa.
const JSON_EXACT_LIMIT: i64 = 1 << 52;
/// Offending text quoted in an error is cut to this many characters.
const QUOTE_MAX: usize = 64;

/// Why a JSON document is not a valid KMIP JSON item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonErrorKind {
    /// The text is not JSON at all.
    #[error("invalid JSON text: {0}")]
    Syntax(String),
    /// An item is not a JSON object.
    #[error("an item must be a JSON object with \"tag\", \"type\" and \"value\"")]
    NotAnObject,
    /// An item lacks a required member (`tag` or `value`).
    #[error("missing member \"{0}\"")]
    MissingMember(&'static str),
    /// An item has a member other than `tag`, `type` and `value`.
    #[error("unexpected member \"{0}\"")]
    UnexpectedMember(String),
    /// `tag` or `type` is not a JSON string.
    #[error("member \"{0}\" must be a string")]
    MemberNotString(&'static str),
    /// The tag is neither a known name nor `0x` and at most 6 hex digits.
    #[error("unknown tag {0:?}")]
    UnknownTag(String),
    /// The type is not one of the TTLV item type names.
    #[error("unknown type {0:?}")]
    UnknownType(String),
    /// The value is of a JSON type that this item type cannot take.
    #[error("a {item_type} value cannot be a JSON {found}")]
    WrongJsonType {
        /// The item's type.
        item_type: ItemType,
        /// What was found: `string`, `number`, `boolean`, `array`, `object` or `null`.
        found: &'static str,
    },
    /// A hex value has no digits, or a character that is not a hex digit, or (for a byte
    /// string) an odd number of digits. The text is not quoted: it may be key material.
    #[error("invalid hex value for a {0}")]
    InvalidHex(ItemType),
    /// A number or hex value does not fit the item type (or is not a whole number).
    #[error("{value} is out of range for a {item_type}")]
    OutOfRange {
        /// The item's type.
        item_type: ItemType,
        /// The offending value, as written.
        value: String,
    },
    /// A name that is not a value of the item's enumeration (or mask).
    #[error("{name:?} is not a value of {enumeration}")]
    UnknownEnumName {
        /// The offending name.
        name: String,
        /// The enumeration's normalized name.
        enumeration: &'static str,
    },
    /// A name where no enumeration or mask is known for the item (an unknown tag, an Integer
    /// that is not a mask, an `AttributeValue` whose `AttributeName` has none).
    #[error("{0:?} is a name, but no enumeration or mask is known for this item")]
    NoEnumeration(String),
    /// A mask string with no names or hex values in it.
    #[error("empty mask {0:?}")]
    EmptyMask(String),
    /// A Boolean hex value other than 0 or 1.
    #[error("{0:?} is not a Boolean (0x0000000000000000 or 0x0000000000000001)")]
    InvalidBoolean(String),
    /// A date-time that is not ISO 8601 `YYYY-MM-DDTHH:MM:SS[.fraction][Z|+HH:MM|-HH:MM]`, or
    /// that does not exist, or is finer than the type's resolution, or out of range.
    #[error("invalid date-time {0:?}")]
    InvalidDateTime(String),
    /// Structures nested deeper than [`Limits::max_depth`].
    #[error("structures nested deeper than {0} levels")]
    TooDeep(usize),
    /// More items than [`Limits::max_items`].
    #[error("more than {0} items")]
    TooManyItems(usize),
}

/// A JSON document that is not a valid KMIP JSON item: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct JsonError {
    path: Vec<String>,
    kind: JsonErrorKind,
}

impl JsonError {
    fn new(kind: JsonErrorKind) -> Self {
        Self {
            path: Vec::new(),
            kind,
        }
    }

    fn within(mut self, label: String) -> Self {
        self.path.insert(0, label);
        self
    }

    /// What is wrong.
    pub fn kind(&self) -> &JsonErrorKind {
        &self.kind
    }

    /// Where: the tags (normalized names, or hex for unknown tags) from the outermost item
    /// down to the faulty one; `[n]` stands for the n-th element (from 0) of a Structure where
    /// the element's own tag could not be read. Empty for an error in the outermost item before
    /// its tag is known.
    pub fn path(&self) -> &[String] {
        &self.path
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "at {}: {}", self.path.join("/"), self.kind)
        }
    }
}

impl From<JsonErrorKind> for JsonError {
    fn from(kind: JsonErrorKind) -> Self {
        Self::new(kind)
    }
}

// ------------------------------------------------------------------------------------------
// Writing
// ------------------------------------------------------------------------------------------

/// The JSON form of a TTLV item (canonical: see the [module documentation](self)).
pub fn to_json(item: &Ttlv) -> Json {
    write_item(item, &[])
}

/// The JSON text of a TTLV item, compact.
pub fn to_string(item: &Ttlv) -> String {
    to_json(item).to_string()
}

/// The JSON text of a TTLV item, indented for humans.
pub fn to_string_pretty(item: &Ttlv) -> String {
    // Serializing a `serde_json::Value` cannot fail; fall back to the compact form regardless.
    let json = to_json(item);
    serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string())
}

fn write_item(item: &Ttlv, siblings: &[Ttlv]) -> Json {
    let mut object = Map::with_capacity(3);
    object.insert("tag".to_owned(), Json::String(tag_label(item.tag)));
    if !matches!(item.value, Value::Structure(_)) {
        object.insert(
            "type".to_owned(),
            Json::String(item.item_type().name().to_owned()),
        );
    }
    let enumeration = forms::value_table(item.tag, siblings, spec::enum_of_tag);
    let value = match &item.value {
        Value::Structure(children) => Json::Array(
            children
                .iter()
                .enumerate()
                .map(|(i, child)| write_item(child, children.get(..i).unwrap_or(&[])))
                .collect(),
        ),
        Value::Integer(v) => match enumeration.filter(|e| e.is_mask) {
            Some(mask) if *v != 0 => Json::String(forms::mask_text(mask, forms::i32_bits(*v), "|")),
            _ => Json::from(*v),
        },
        Value::LongInteger(v) => {
            if v.unsigned_abs() < JSON_EXACT_LIMIT.unsigned_abs() {
                Json::from(*v)
            } else {
                Json::String(forms::hex64(forms::i64_bits(*v)))
            }
        }
        Value::BigInteger(b) => Json::String(format!("0x{}", hex::encode_upper(b.as_bytes()))),
        Value::Enumeration(v) => {
            let name = if forms::values_are_tags(item.tag) {
                forms::tag_name(*v)
            } else {
                enumeration.and_then(|e| e.canonical_name(*v))
            };
            Json::String(name.map_or_else(|| forms::hex32(*v), str::to_owned))
        }
        Value::Boolean(v) => Json::Bool(*v),
        Value::TextString(s) => Json::String(s.clone()),
        Value::ByteString(b) => Json::String(hex::encode(b.as_slice())),
        Value::DateTime(secs) => Json::String(forms::datetime_text(*secs)),
        Value::Interval(v) => Json::from(*v),
        Value::DateTimeExtended(micros) => Json::String(forms::datetime_extended_text(*micros)),
    };
    object.insert("value".to_owned(), value);
    Json::Object(object)
}

/// The name written for a tag: its normalized name ([`forms::tag_name`]), else `0x` and 6 hex
/// digits.
fn tag_label(tag: Tag) -> String {
    forms::tag_name(tag.value()).map_or_else(|| format!("0x{:06X}", tag.value()), str::to_owned)
}

// ------------------------------------------------------------------------------------------
// Reading
// ------------------------------------------------------------------------------------------

/// Reads a TTLV item from its JSON form, with the default [`Limits`] on depth and item count.
pub fn from_json(json: &Json) -> Result<Ttlv, JsonError> {
    from_json_with(json, &Limits::default())
}

/// Reads a TTLV item from its JSON form, within `limits` (`max_depth` and `max_items`; the
/// byte length of the result is not checked here: encode it to find out).
pub fn from_json_with(json: &Json, limits: &Limits) -> Result<Ttlv, JsonError> {
    let mut reader = Reader {
        max_depth: limits.max_depth.min(Limits::HARD_MAX_DEPTH),
        items_left: limits.max_items,
        max_items: limits.max_items,
    };
    reader.item(json, &[], 1)
}

/// Reads a TTLV item from JSON text, with the default [`Limits`].
pub fn from_str(text: &str) -> Result<Ttlv, JsonError> {
    from_str_with(text, &Limits::default())
}

/// Reads a TTLV item from JSON text, within `limits` (see [`from_json_with`]).
pub fn from_str_with(text: &str, limits: &Limits) -> Result<Ttlv, JsonError> {
    let json: Json = serde_json::from_str(text)
        .map_err(|e| JsonError::new(JsonErrorKind::Syntax(e.to_string())))?;
    from_json_with(&json, limits)
}

struct Reader {
    max_depth: usize,
    items_left: usize,
    max_items: usize,
}

impl Reader {
    fn item(&mut self, json: &Json, siblings: &[Ttlv], depth: usize) -> Result<Ttlv, JsonError> {
        self.items_left = self
            .items_left
            .checked_sub(1)
            .ok_or(JsonErrorKind::TooManyItems(self.max_items))?;
        let object = json.as_object().ok_or(JsonErrorKind::NotAnObject)?;
        if let Some(other) = object
            .keys()
            .find(|k| !matches!(k.as_str(), "tag" | "type" | "value"))
        {
            return Err(JsonErrorKind::UnexpectedMember(quote(other)).into());
        }
        let tag_text = object
            .get("tag")
            .ok_or(JsonErrorKind::MissingMember("tag"))?
            .as_str()
            .ok_or(JsonErrorKind::MemberNotString("tag"))?;
        let tag = parse_tag(tag_text)?;
        let label = tag_label(tag);
        self.item_body(object, tag, siblings, depth)
            .map_err(|e| e.within(label))
    }

    fn item_body(
        &mut self,
        object: &Map<String, Json>,
        tag: Tag,
        siblings: &[Ttlv],
        depth: usize,
    ) -> Result<Ttlv, JsonError> {
        let item_type = match object.get("type") {
            None => ItemType::Structure,
            Some(t) => {
                let name = t.as_str().ok_or(JsonErrorKind::MemberNotString("type"))?;
                ItemType::from_name(name).ok_or_else(|| JsonErrorKind::UnknownType(quote(name)))?
            }
        };
        let json = object
            .get("value")
            .ok_or(JsonErrorKind::MissingMember("value"))?;
        let value = match item_type {
            ItemType::Structure => Value::Structure(self.children(json, depth)?),
            _ if forms::values_are_tags(tag) => scalar(item_type, json, Names::Tags)?,
            _ => scalar(
                item_type,
                json,
                Names::Table(forms::value_table(tag, siblings, spec::enum_of_tag)),
            )?,
        };
        Ok(Ttlv::new(tag, value))
    }

    fn children(&mut self, json: &Json, depth: usize) -> Result<Vec<Ttlv>, JsonError> {
        let items = json.as_array().ok_or(JsonErrorKind::WrongJsonType {
            item_type: ItemType::Structure,
            found: json_type(json),
        })?;
        if depth >= self.max_depth && !items.is_empty() {
            return Err(JsonErrorKind::TooDeep(self.max_depth).into());
        }
        let mut out = Vec::with_capacity(items.len().min(self.items_left));
        for (i, child) in items.iter().enumerate() {
            let item = self.item(child, &out, depth + 1).map_err(|e| {
                if e.path.is_empty() {
                    e.within(format!("[{i}]"))
                } else {
                    e
                }
            })?;
            out.push(item);
        }
        Ok(out)
    }
}

/// A tag from its name or from `0x` and at most 6 hex digits.
fn parse_tag(text: &str) -> Result<Tag, JsonErrorKind> {
    let unknown = || JsonErrorKind::UnknownTag(quote(text));
    if forms::hex_digits(text).is_some() {
        let v = forms::parse_hex(text, 6).map_err(|_| unknown())?;
        let v = u32::try_from(v).map_err(|_| unknown())?;
        return Tag::new(v).map_err(|_| unknown());
    }
    let def = spec::tag_by_xml_name(text).ok_or_else(unknown)?;
    Tag::new(def.tag).map_err(|_| unknown())
}

/// Where the names of an item's values come from.
#[derive(Clone, Copy)]
enum Names {
    /// An enumeration or mask table, if the item has one.
    Table(Option<&'static EnumDef>),
    /// Tag names (Attribute Reference).
    Tags,
}

fn scalar(item_type: ItemType, json: &Json, names: Names) -> Result<Value, JsonErrorKind> {
    let enumeration = match names {
        Names::Table(table) => table,
        Names::Tags => None,
    };
    let wrong = || JsonErrorKind::WrongJsonType {
        item_type,
        found: json_type(json),
    };
    let out_of_range = |value: &dyn fmt::Display| JsonErrorKind::OutOfRange {
        item_type,
        value: quote(&value.to_string()),
    };
    Ok(match item_type {
        ItemType::Integer => {
            let mask = enumeration.filter(|e| e.is_mask);
            match json {
                Json::Number(n) => {
                    let v = whole_number(n).ok_or_else(|| out_of_range(n))?;
                    match (i32::try_from(v), mask) {
                        (Ok(v), _) => Value::Integer(v),
                        (Err(_), Some(_)) => Value::Integer(forms::i32_of_bits(
                            u32::try_from(v).map_err(|_| out_of_range(n))?,
                        )),
                        (Err(_), None) => return Err(out_of_range(n)),
                    }
                }
                Json::String(s) => match mask {
                    Some(mask) => Value::Integer(forms::i32_of_bits(parse_mask(s, mask)?)),
                    None if forms::hex_digits(s).is_some() => {
                        Value::Integer(forms::i32_of_bits(hex_u32(item_type, s)?))
                    }
                    None => return Err(JsonErrorKind::NoEnumeration(quote(s))),
                },
                _ => return Err(wrong()),
            }
        }
        ItemType::LongInteger => Value::LongInteger(match json {
            Json::Number(n) => whole_number(n)
                .and_then(|v| i64::try_from(v).ok())
                .ok_or_else(|| out_of_range(n))?,
            Json::String(s) => forms::i64_of_bits(hex_u64(item_type, s)?),
            _ => return Err(wrong()),
        }),
        ItemType::BigInteger => Value::BigInteger(match json {
            Json::Number(n) => {
                let v = whole_number(n).ok_or_else(|| out_of_range(n))?;
                match i64::try_from(v) {
                    Ok(small) => BigInteger::from_twos_complement(&small.to_be_bytes()),
                    Err(_) => BigInteger::from_twos_complement(&v.to_be_bytes()),
                }
            }
            Json::String(s) => {
                if forms::hex_digits(s).unwrap_or(s).is_empty() {
                    return Err(JsonErrorKind::InvalidHex(item_type));
                }
                let bytes = zeroize::Zeroizing::new(
                    forms::parse_hex_bytes(s).ok_or(JsonErrorKind::InvalidHex(item_type))?,
                );
                BigInteger::from_twos_complement(&bytes)
            }
            _ => return Err(wrong()),
        }),
        ItemType::Enumeration => Value::Enumeration(match json {
            Json::Number(n) => whole_number(n)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| out_of_range(n))?,
            Json::String(s) if forms::hex_digits(s).is_some() => hex_u32(item_type, s)?,
            Json::String(s) => match names {
                Names::Table(table) => enum_value(table, s)?,
                Names::Tags => spec::tag_by_xml_name(s).map(|t| t.tag).ok_or_else(|| {
                    JsonErrorKind::UnknownEnumName {
                        name: quote(s),
                        enumeration: "Tag",
                    }
                })?,
            },
            _ => return Err(wrong()),
        }),
        ItemType::Boolean => Value::Boolean(match json {
            Json::Bool(b) => *b,
            Json::String(s) => match forms::parse_hex64(s) {
                Ok(0) => false,
                Ok(1) => true,
                _ => return Err(JsonErrorKind::InvalidBoolean(quote(s))),
            },
            _ => return Err(wrong()),
        }),
        ItemType::TextString => match json {
            Json::String(s) => Value::TextString(s.clone()),
            _ => return Err(wrong()),
        },
        ItemType::ByteString => match json {
            Json::String(s) => {
                Value::bytes(hex::decode(s).map_err(|_| JsonErrorKind::InvalidHex(item_type))?)
            }
            _ => return Err(wrong()),
        },
        ItemType::DateTime => Value::DateTime(match json {
            Json::Number(n) => whole_number(n)
                .and_then(|v| i64::try_from(v).ok())
                .ok_or_else(|| out_of_range(n))?,
            Json::String(s) if forms::hex_digits(s).is_some() => {
                forms::i64_of_bits(hex_u64(item_type, s)?)
            }
            Json::String(s) => {
                forms::parse_datetime(s).ok_or_else(|| JsonErrorKind::InvalidDateTime(quote(s)))?
            }
            _ => return Err(wrong()),
        }),
        ItemType::Interval => Value::Interval(match json {
            Json::Number(n) => whole_number(n)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| out_of_range(n))?,
            Json::String(s) => hex_u32(item_type, s)?,
            _ => return Err(wrong()),
        }),
        ItemType::DateTimeExtended => Value::DateTimeExtended(match json {
            Json::Number(n) => whole_number(n)
                .and_then(|v| i64::try_from(v).ok())
                .ok_or_else(|| out_of_range(n))?,
            Json::String(s) if forms::hex_digits(s).is_some() => {
                forms::i64_of_bits(hex_u64(item_type, s)?)
            }
            Json::String(s) => forms::parse_datetime_extended(s)
                .ok_or_else(|| JsonErrorKind::InvalidDateTime(quote(s)))?,
            _ => return Err(wrong()),
        }),
        // Structures are read by the caller.
        ItemType::Structure => return Err(wrong()),
    })
}

/// An enumeration value from its name.
fn enum_value(enumeration: Option<&'static EnumDef>, name: &str) -> Result<u32, JsonErrorKind> {
    let enumeration = enumeration.ok_or_else(|| JsonErrorKind::NoEnumeration(quote(name)))?;
    enumeration
        .value_by_xml_name(name)
        .ok_or_else(|| JsonErrorKind::UnknownEnumName {
            name: quote(name),
            enumeration: enumeration.xml_name,
        })
}

/// A mask from names and hex values separated by `|` or white space
/// ([`forms::parse_mask`]).
fn parse_mask(text: &str, mask: &'static EnumDef) -> Result<u32, JsonErrorKind> {
    forms::parse_mask(text, Some(mask)).map_err(|e| match e {
        MaskError::Empty => JsonErrorKind::EmptyMask(quote(text)),
        MaskError::UnknownName(name) => JsonErrorKind::UnknownEnumName {
            name: quote(name),
            enumeration: mask.xml_name,
        },
        MaskError::Hex(word, e) => hex_error(ItemType::Integer, word, e),
    })
}

fn hex_error(item_type: ItemType, text: &str, e: HexError) -> JsonErrorKind {
    match e {
        HexError::Invalid => JsonErrorKind::InvalidHex(item_type),
        HexError::TooWide => JsonErrorKind::OutOfRange {
            item_type,
            value: quote(text),
        },
    }
}

/// A `0x` hex value of at most 32 bits.
fn hex_u32(item_type: ItemType, text: &str) -> Result<u32, JsonErrorKind> {
    forms::parse_hex32(text).map_err(|e| hex_error(item_type, text, e))
}

/// A `0x` hex value of at most 64 bits.
fn hex_u64(item_type: ItemType, text: &str) -> Result<u64, JsonErrorKind> {
    forms::parse_hex64(text).map_err(|e| hex_error(item_type, text, e))
}

/// A JSON number as a whole number, if it is one (`3`, `-3`, `3.0`, `3e2`; not `3.5`).
fn whole_number(n: &Number) -> Option<i128> {
    if let Some(v) = n.as_i64() {
        return Some(i128::from(v));
    }
    if let Some(v) = n.as_u64() {
        return Some(i128::from(v));
    }
    let f = n.as_f64()?;
    if !f.is_finite() || f.fract() != 0.0 || f.abs() > 1e30 {
        return None;
    }
    format!("{f:.0}").parse().ok()
}

fn json_type(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// Offending text for an error message, cut short.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX) {
        Some((end, _)) => format!("{}...", text.get(..end).unwrap_or_default()),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tag(v: u32) -> Tag {
        Tag::new(v).unwrap()
    }

    fn item(t: u32, value: Value) -> Ttlv {
        Ttlv::new(tag(t), value)
    }

    /// `value` is written as `expected` and `expected` reads back to `value`.
    fn both_ways(t: u32, value: Value, expected: Json) {
        let it = item(t, value);
        let written = to_json(&it);
        assert_eq!(written, expected);
        assert_eq!(from_json(&written).unwrap(), it);
        assert_eq!(from_str(&to_string(&it)).unwrap(), it);
        assert_eq!(from_str(&to_string_pretty(&it)).unwrap(), it);
    }

    /// `json` reads as `value` (an accepted, non-canonical form).
    fn reads(t: u32, json: Json, value: Value) {
        assert_eq!(from_json(&json).unwrap(), item(t, value), "{json}");
    }

    fn fails(json: Json) -> JsonError {
        from_json(&json).unwrap_err()
    }

    const BATCH_COUNT: u32 = 0x42_000D;
    const USAGE_MASK: u32 = 0x42_002C;
    const OPERATION: u32 = 0x42_005C;
    const EXT: u32 = 0x54_0001;

    #[test]
    fn structure_omits_type_and_holds_an_array() {
        let it = item(
            0x42_0069,
            Value::Structure(vec![
                item(0x42_006A, Value::Integer(1)),
                item(0x42_006B, Value::Integer(4)),
            ]),
        );
        let expected = json!({"tag": "ProtocolVersion", "value": [
            {"tag": "ProtocolVersionMajor", "type": "Integer", "value": 1},
            {"tag": "ProtocolVersionMinor", "type": "Integer", "value": 4},
        ]});
        assert_eq!(to_json(&it), expected);
        assert_eq!(from_json(&expected).unwrap(), it);
        assert_eq!(
            to_string(&it),
            r#"{"tag":"ProtocolVersion","value":[{"tag":"ProtocolVersionMajor","type":"Integer","value":1},{"tag":"ProtocolVersionMinor","type":"Integer","value":4}]}"#
        );
        both_ways(
            0x42_0069,
            Value::Structure(vec![]),
            json!({"tag": "ProtocolVersion", "value": []}),
        );
        reads(
            0x42_0069,
            json!({"tag": "ProtocolVersion", "type": "Structure", "value": []}),
            Value::Structure(vec![]),
        );
    }

    #[test]
    fn tags_by_name_or_hex() {
        both_ways(
            EXT,
            Value::TextString("x".into()),
            json!({"tag": "0x540001", "type": "TextString", "value": "x"}),
        );
        reads(
            BATCH_COUNT,
            json!({"tag": "0x42000D", "type": "Integer", "value": 1}),
            Value::Integer(1),
        );
        reads(
            BATCH_COUNT,
            json!({"tag": "0x42000d", "type": "Integer", "value": 1}),
            Value::Integer(1),
        );
        reads(
            EXT,
            json!({"tag": "0x540001", "type": "Integer", "value": 1}),
            Value::Integer(1),
        );
        // A KMIP tag unknown to the tables is written in hex.
        both_ways(
            0x42_FFF0,
            Value::Integer(3),
            json!({"tag": "0x42FFF0", "type": "Integer", "value": 3}),
        );
    }

    #[test]
    fn integer_forms() {
        both_ways(
            BATCH_COUNT,
            Value::Integer(-5),
            json!({"tag": "BatchCount", "type": "Integer", "value": -5}),
        );
        both_ways(
            BATCH_COUNT,
            Value::Integer(i32::MAX),
            json!({"tag": "BatchCount", "type": "Integer", "value": 2147483647}),
        );
        reads(
            BATCH_COUNT,
            json!({"tag": "BatchCount", "type": "Integer", "value": "0x0000000A"}),
            Value::Integer(10),
        );
        reads(
            BATCH_COUNT,
            json!({"tag": "BatchCount", "type": "Integer", "value": "0xa"}),
            Value::Integer(10),
        );
        reads(
            BATCH_COUNT,
            json!({"tag": "BatchCount", "type": "Integer", "value": "0xFFFFFFFF"}),
            Value::Integer(-1),
        );
        reads(
            BATCH_COUNT,
            json!({"tag": "BatchCount", "type": "Integer", "value": 3.0}),
            Value::Integer(3),
        );
    }

    #[test]
    fn masks_as_names_joined_by_bars() {
        both_ways(
            USAGE_MASK,
            Value::Integer(12),
            json!({"tag": "CryptographicUsageMask", "type": "Integer", "value": "Encrypt|Decrypt"}),
        );
        both_ways(
            USAGE_MASK,
            Value::Integer(0),
            json!({"tag": "CryptographicUsageMask", "type": "Integer", "value": 0}),
        );
        // Bits without a name are kept, in hex.
        both_ways(
            USAGE_MASK,
            Value::Integer(0x0100_0004),
            json!({"tag": "CryptographicUsageMask", "type": "Integer", "value": "Encrypt|0x01000000"}),
        );
        both_ways(
            USAGE_MASK,
            Value::Integer(i32::MIN),
            json!({"tag": "CryptographicUsageMask", "type": "Integer", "value": "0x80000000"}),
        );
        reads(
            USAGE_MASK,
            json!({"tag": "CryptographicUsageMask", "type": "Integer", "value": "Decrypt | Encrypt"}),
            Value::Integer(12),
        );
        reads(
            USAGE_MASK,
            json!({"tag": "CryptographicUsageMask", "type": "Integer", "value": "Decrypt Encrypt"}),
            Value::Integer(12),
        );
        reads(
            USAGE_MASK,
            json!({"tag": "CryptographicUsageMask", "type": "Integer", "value": "Decrypt|0x00000004"}),
            Value::Integer(12),
        );
        reads(
            USAGE_MASK,
            json!({"tag": "CryptographicUsageMask", "type": "Integer", "value": 12}),
            Value::Integer(12),
        );
        reads(
            USAGE_MASK,
            json!({"tag": "CryptographicUsageMask", "type": "Integer", "value": "0x0000000C"}),
            Value::Integer(12),
        );
        reads(
            USAGE_MASK,
            json!({"tag": "CryptographicUsageMask", "type": "Integer", "value": 4294967295u32}),
            Value::Integer(-1),
        );
    }

    #[test]
    fn long_integer_forms() {
        let t = 0x42_0001; // any tag: the tables do not matter for a Long Integer
        let label = tag_label(tag(t));
        both_ways(
            t,
            Value::LongInteger(1000),
            json!({"tag": label, "type": "LongInteger", "value": 1000}),
        );
        both_ways(
            t,
            Value::LongInteger(-(1 << 52) + 1),
            json!({"tag": label, "type": "LongInteger", "value": -(1i64 << 52) + 1}),
        );
        both_ways(
            t,
            Value::LongInteger(1 << 52),
            json!({"tag": label, "type": "LongInteger", "value": "0x0010000000000000"}),
        );
        both_ways(
            t,
            Value::LongInteger(-1 << 52),
            json!({"tag": label, "type": "LongInteger", "value": "0xFFF0000000000000"}),
        );
        both_ways(
            t,
            Value::LongInteger(i64::MIN),
            json!({"tag": label, "type": "LongInteger", "value": "0x8000000000000000"}),
        );
        reads(
            t,
            json!({"tag": label, "type": "LongInteger", "value": i64::MAX}),
            Value::LongInteger(i64::MAX),
        );
        reads(
            t,
            json!({"tag": label, "type": "LongInteger", "value": "0x10"}),
            Value::LongInteger(16),
        );
    }

    #[test]
    fn big_integer_forms() {
        let bi = |b: &[u8]| Value::BigInteger(BigInteger::from_twos_complement(b));
        both_ways(
            EXT,
            bi(&[0, 0, 0, 0, 0, 1, 0, 1]),
            json!({"tag": "0x540001", "type": "BigInteger", "value": "0x0000000000010001"}),
        );
        both_ways(
            EXT,
            bi(&[0xFF; 16]),
            json!({"tag": "0x540001", "type": "BigInteger", "value": "0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"}),
        );
        reads(
            EXT,
            json!({"tag": "0x540001", "type": "BigInteger", "value": 65537}),
            bi(&[1, 0, 1]),
        );
        reads(
            EXT,
            json!({"tag": "0x540001", "type": "BigInteger", "value": -1}),
            bi(&[0xFF]),
        );
        reads(
            EXT,
            json!({"tag": "0x540001", "type": "BigInteger", "value": u64::MAX}),
            bi(&[0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
        );
        reads(
            EXT,
            json!({"tag": "0x540001", "type": "BigInteger", "value": "0x010001"}),
            bi(&[1, 0, 1]),
        );
        reads(
            EXT,
            json!({"tag": "0x540001", "type": "BigInteger", "value": "0x80"}),
            bi(&[0x80]),
        );
        reads(
            EXT,
            json!({"tag": "0x540001", "type": "BigInteger", "value": "0000000000010001"}),
            bi(&[1, 0, 1]),
        );
    }

    #[test]
    fn enumeration_forms() {
        both_ways(
            OPERATION,
            Value::Enumeration(0x18),
            json!({"tag": "Operation", "type": "Enumeration", "value": "Query"}),
        );
        both_ways(
            OPERATION,
            Value::Enumeration(0x8000_0001),
            json!({"tag": "Operation", "type": "Enumeration", "value": "0x80000001"}),
        );
        both_ways(
            EXT,
            Value::Enumeration(7),
            json!({"tag": "0x540001", "type": "Enumeration", "value": "0x00000007"}),
        );
        reads(
            OPERATION,
            json!({"tag": "Operation", "type": "Enumeration", "value": 24}),
            Value::Enumeration(0x18),
        );
        reads(
            OPERATION,
            json!({"tag": "Operation", "type": "Enumeration", "value": "0x18"}),
            Value::Enumeration(0x18),
        );
    }

    #[test]
    fn boolean_forms() {
        both_ways(
            EXT,
            Value::Boolean(true),
            json!({"tag": "0x540001", "type": "Boolean", "value": true}),
        );
        both_ways(
            EXT,
            Value::Boolean(false),
            json!({"tag": "0x540001", "type": "Boolean", "value": false}),
        );
        reads(
            EXT,
            json!({"tag": "0x540001", "type": "Boolean", "value": "0x0000000000000001"}),
            Value::Boolean(true),
        );
        reads(
            EXT,
            json!({"tag": "0x540001", "type": "Boolean", "value": "0x0000000000000000"}),
            Value::Boolean(false),
        );
    }

    #[test]
    fn text_and_byte_strings() {
        both_ways(
            EXT,
            Value::TextString("héllo \"x\"\n".into()),
            json!({"tag": "0x540001", "type": "TextString", "value": "héllo \"x\"\n"}),
        );
        both_ways(
            EXT,
            Value::TextString(String::new()),
            json!({"tag": "0x540001", "type": "TextString", "value": ""}),
        );
        both_ways(
            EXT,
            Value::bytes(vec![0x01, 0xAB, 0xFF]),
            json!({"tag": "0x540001", "type": "ByteString", "value": "01abff"}),
        );
        both_ways(
            EXT,
            Value::bytes(vec![]),
            json!({"tag": "0x540001", "type": "ByteString", "value": ""}),
        );
        reads(
            EXT,
            json!({"tag": "0x540001", "type": "ByteString", "value": "01ABFF"}),
            Value::bytes(vec![0x01, 0xAB, 0xFF]),
        );
    }

    /// Seconds of 0000-01-01T00:00:00Z and of 10000-01-01T00:00:00Z since the epoch: the range
    /// the text form holds.
    const FIRST_SECOND: i64 = -62_167_219_200;
    const END_SECOND: i64 = 253_402_300_800;

    #[test]
    fn date_time_forms() {
        let t = 0x42_0092; // Time Stamp
        both_ways(
            t,
            Value::DateTime(1_335_514_344),
            json!({"tag": "TimeStamp", "type": "DateTime", "value": "2012-04-27T08:12:24+00:00"}),
        );
        both_ways(
            t,
            Value::DateTime(0),
            json!({"tag": "TimeStamp", "type": "DateTime", "value": "1970-01-01T00:00:00+00:00"}),
        );
        both_ways(
            t,
            Value::DateTime(-1),
            json!({"tag": "TimeStamp", "type": "DateTime", "value": "1969-12-31T23:59:59+00:00"}),
        );
        both_ways(
            t,
            Value::DateTime(951_782_400),
            json!({"tag": "TimeStamp", "type": "DateTime", "value": "2000-02-29T00:00:00+00:00"}),
        );
        both_ways(
            t,
            Value::DateTime(FIRST_SECOND),
            json!({"tag": "TimeStamp", "type": "DateTime", "value": "0000-01-01T00:00:00+00:00"}),
        );
        both_ways(
            t,
            Value::DateTime(END_SECOND - 1),
            json!({"tag": "TimeStamp", "type": "DateTime", "value": "9999-12-31T23:59:59+00:00"}),
        );
        // Beyond what ISO 8601's four-digit years hold: hex.
        both_ways(
            t,
            Value::DateTime(END_SECOND),
            json!({"tag": "TimeStamp", "type": "DateTime", "value": "0x0000003AFFF44180"}),
        );
        both_ways(
            t,
            Value::DateTime(i64::MIN),
            json!({"tag": "TimeStamp", "type": "DateTime", "value": "0x8000000000000000"}),
        );
        for (text, secs) in [
            ("2012-04-27T08:12:24Z", 1_335_514_344),
            ("2012-04-27T08:12:24", 1_335_514_344),
            ("2012-04-27T18:12:24+10:00", 1_335_514_344),
            ("2012-04-27T03:12:24-0500", 1_335_514_344),
            ("2012-04-27T08:12:24.000Z", 1_335_514_344),
            ("0x000000004F9A54E8", 1_335_514_344),
        ] {
            reads(
                t,
                json!({"tag": "TimeStamp", "type": "DateTime", "value": text}),
                Value::DateTime(secs),
            );
        }
        reads(
            t,
            json!({"tag": "TimeStamp", "type": "DateTime", "value": 1_335_514_344}),
            Value::DateTime(1_335_514_344),
        );
    }

    #[test]
    fn date_time_extended_forms() {
        both_ways(
            EXT,
            Value::DateTimeExtended(1_335_514_344_000_001),
            json!({"tag": "0x540001", "type": "DateTimeExtended", "value": "2012-04-27T08:12:24.000001+00:00"}),
        );
        both_ways(
            EXT,
            Value::DateTimeExtended(-1),
            json!({"tag": "0x540001", "type": "DateTimeExtended", "value": "1969-12-31T23:59:59.999999+00:00"}),
        );
        both_ways(
            EXT,
            Value::DateTimeExtended(i64::MAX),
            json!({"tag": "0x540001", "type": "DateTimeExtended", "value": "0x7FFFFFFFFFFFFFFF"}),
        );
        reads(
            EXT,
            json!({"tag": "0x540001", "type": "DateTimeExtended", "value": "2012-04-27T08:12:24.5Z"}),
            Value::DateTimeExtended(1_335_514_344_500_000),
        );
        reads(
            EXT,
            json!({"tag": "0x540001", "type": "DateTimeExtended", "value": "2012-04-27T08:12:24.123456000Z"}),
            Value::DateTimeExtended(1_335_514_344_123_456),
        );
        reads(
            EXT,
            json!({"tag": "0x540001", "type": "DateTimeExtended", "value": 12}),
            Value::DateTimeExtended(12),
        );
        reads(
            EXT,
            json!({"tag": "0x540001", "type": "DateTimeExtended", "value": "0x0C"}),
            Value::DateTimeExtended(12),
        );
    }

    #[test]
    fn interval_forms() {
        both_ways(
            EXT,
            Value::Interval(u32::MAX),
            json!({"tag": "0x540001", "type": "Interval", "value": 4294967295u32}),
        );
        reads(
            EXT,
            json!({"tag": "0x540001", "type": "Interval", "value": "0x00000E10"}),
            Value::Interval(3600),
        );
    }

    #[test]
    fn attribute_value_takes_the_enumeration_of_its_attribute_name() {
        let attribute = |name: &str, value: Value| {
            item(
                0x42_0008,
                Value::Structure(vec![
                    item(0x42_000A, Value::TextString(name.into())),
                    item(0x42_000B, value),
                ]),
            )
        };
        let it = attribute("Cryptographic Usage Mask", Value::Integer(12));
        let written = to_json(&it);
        assert_eq!(written["value"][1]["value"], json!("Encrypt|Decrypt"));
        assert_eq!(from_json(&written).unwrap(), it);

        let it = attribute("Cryptographic Algorithm", Value::Enumeration(3));
        let written = to_json(&it);
        assert_eq!(written["value"][1]["value"], json!("AES"));
        assert_eq!(from_json(&written).unwrap(), it);

        let it = attribute("Object Type", Value::Enumeration(2));
        assert_eq!(to_json(&it)["value"][1]["value"], json!("SymmetricKey"));

        // No enumeration known for the attribute: hex, and names are refused.
        let it = attribute("x-custom", Value::Enumeration(2));
        let written = to_json(&it);
        assert_eq!(written["value"][1]["value"], json!("0x00000002"));
        assert_eq!(from_json(&written).unwrap(), it);
        let err = fails(json!({"tag": "Attribute", "value": [
            {"tag": "AttributeName", "type": "TextString", "value": "x-custom"},
            {"tag": "AttributeValue", "type": "Enumeration", "value": "AES"},
        ]}));
        assert_eq!(err.kind(), &JsonErrorKind::NoEnumeration("AES".into()));
        assert_eq!(err.path(), ["Attribute", "AttributeValue"]);
    }

    #[test]
    fn errors_carry_their_kind_and_path() {
        let wrap = |inner: Json| json!({"tag": "RequestMessage", "value": [{"tag": "BatchItem", "value": [inner]}]});
        let cases: Vec<(Json, JsonErrorKind, Vec<&str>)> = vec![
            (
                wrap(json!(3)),
                JsonErrorKind::NotAnObject,
                vec!["RequestMessage", "BatchItem", "[0]"],
            ),
            (
                wrap(json!({"type": "Integer", "value": 1})),
                JsonErrorKind::MissingMember("tag"),
                vec!["RequestMessage", "BatchItem", "[0]"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "Integer"})),
                JsonErrorKind::MissingMember("value"),
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "Integer", "value": 1, "name": "x"})),
                JsonErrorKind::UnexpectedMember("name".into()),
                vec!["RequestMessage", "BatchItem", "[0]"],
            ),
            (
                wrap(json!({"tag": 66, "type": "Integer", "value": 1})),
                JsonErrorKind::MemberNotString("tag"),
                vec!["RequestMessage", "BatchItem", "[0]"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": 2, "value": 1})),
                JsonErrorKind::MemberNotString("type"),
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "NoSuchTag", "type": "Integer", "value": 1})),
                JsonErrorKind::UnknownTag("NoSuchTag".into()),
                vec!["RequestMessage", "BatchItem", "[0]"],
            ),
            (
                wrap(json!({"tag": "0x1000000", "type": "Integer", "value": 1})),
                JsonErrorKind::UnknownTag("0x1000000".into()),
                vec!["RequestMessage", "BatchItem", "[0]"],
            ),
            (
                wrap(json!({"tag": "0xZZ", "type": "Integer", "value": 1})),
                JsonErrorKind::UnknownTag("0xZZ".into()),
                vec!["RequestMessage", "BatchItem", "[0]"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "Int", "value": 1})),
                JsonErrorKind::UnknownType("Int".into()),
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "Integer", "value": true})),
                JsonErrorKind::WrongJsonType {
                    item_type: ItemType::Integer,
                    found: "boolean",
                },
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "value": {}})),
                JsonErrorKind::WrongJsonType {
                    item_type: ItemType::Structure,
                    found: "object",
                },
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "TextString", "value": 1})),
                JsonErrorKind::WrongJsonType {
                    item_type: ItemType::TextString,
                    found: "number",
                },
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "ByteString", "value": "0g"})),
                JsonErrorKind::InvalidHex(ItemType::ByteString),
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "ByteString", "value": "abc"})),
                JsonErrorKind::InvalidHex(ItemType::ByteString),
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "ByteString", "value": "0x01"})),
                JsonErrorKind::InvalidHex(ItemType::ByteString),
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "Integer", "value": "0x"})),
                JsonErrorKind::InvalidHex(ItemType::Integer),
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "BigInteger", "value": "0x123"})),
                JsonErrorKind::InvalidHex(ItemType::BigInteger),
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "Integer", "value": 2147483648u32})),
                JsonErrorKind::OutOfRange {
                    item_type: ItemType::Integer,
                    value: "2147483648".into(),
                },
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "Integer", "value": 1.5})),
                JsonErrorKind::OutOfRange {
                    item_type: ItemType::Integer,
                    value: "1.5".into(),
                },
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "Integer", "value": "0x100000000"})),
                JsonErrorKind::OutOfRange {
                    item_type: ItemType::Integer,
                    value: "0x100000000".into(),
                },
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "Enumeration", "value": -1})),
                JsonErrorKind::OutOfRange {
                    item_type: ItemType::Enumeration,
                    value: "-1".into(),
                },
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "Interval", "value": -1})),
                JsonErrorKind::OutOfRange {
                    item_type: ItemType::Interval,
                    value: "-1".into(),
                },
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "LongInteger", "value": u64::MAX})),
                JsonErrorKind::OutOfRange {
                    item_type: ItemType::LongInteger,
                    value: "18446744073709551615".into(),
                },
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "Operation", "type": "Enumeration", "value": "Frobnicate"})),
                JsonErrorKind::UnknownEnumName {
                    name: "Frobnicate".into(),
                    enumeration: "Operation",
                },
                vec!["RequestMessage", "BatchItem", "Operation"],
            ),
            (
                wrap(
                    json!({"tag": "CryptographicUsageMask", "type": "Integer", "value": "Encrypt|Frobnicate"}),
                ),
                JsonErrorKind::UnknownEnumName {
                    name: "Frobnicate".into(),
                    enumeration: "CryptographicUsageMask",
                },
                vec!["RequestMessage", "BatchItem", "CryptographicUsageMask"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "Integer", "value": "Encrypt"})),
                JsonErrorKind::NoEnumeration("Encrypt".into()),
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "0x540001", "type": "Enumeration", "value": "Query"})),
                JsonErrorKind::NoEnumeration("Query".into()),
                vec!["RequestMessage", "BatchItem", "0x540001"],
            ),
            (
                wrap(json!({"tag": "CryptographicUsageMask", "type": "Integer", "value": " | "})),
                JsonErrorKind::EmptyMask(" | ".into()),
                vec!["RequestMessage", "BatchItem", "CryptographicUsageMask"],
            ),
            (
                wrap(
                    json!({"tag": "BatchCount", "type": "Boolean", "value": "0x0000000000000002"}),
                ),
                JsonErrorKind::InvalidBoolean("0x0000000000000002".into()),
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
            (
                wrap(json!({"tag": "BatchCount", "type": "Boolean", "value": "true"})),
                JsonErrorKind::InvalidBoolean("true".into()),
                vec!["RequestMessage", "BatchItem", "BatchCount"],
            ),
        ];
        for (input, kind, path) in cases {
            let err = fails(input.clone());
            assert_eq!(err.kind(), &kind, "{input}");
            assert_eq!(err.path(), path.as_slice(), "{input}");
        }
        let err = from_str("{\"tag\": ").unwrap_err();
        assert!(matches!(err.kind(), JsonErrorKind::Syntax(_)));
        assert!(err.path().is_empty());
        let err = fails(json!({"tag": "BatchCount", "type": "Integer", "value": "x"}));
        assert_eq!(
            err.to_string(),
            "at BatchCount: \"x\" is a name, but no enumeration or mask is known for this item"
        );
    }

    #[test]
    fn invalid_date_times() {
        // The forms themselves are tested in crate::datetime; here, that a refusal is reported
        // as InvalidDateTime (or InvalidHex) with the offending text.
        for text in [
            "2012-04-27 08:12:24Z",
            "2013-02-29T00:00:00Z",
            "2012-04-27T08:12:24.5Z", // finer than a Date Time holds
            "0xG",
        ] {
            let err = fails(json!({"tag": "TimeStamp", "type": "DateTime", "value": text}));
            let expected = if text.starts_with("0x") {
                JsonErrorKind::InvalidHex(ItemType::DateTime)
            } else {
                JsonErrorKind::InvalidDateTime(text.into())
            };
            assert_eq!(err.kind(), &expected, "{text}");
        }
        let err = fails(
            json!({"tag": "0x540001", "type": "DateTimeExtended", "value": "2012-04-27T08:12:24.0000001Z"}),
        );
        assert!(matches!(err.kind(), JsonErrorKind::InvalidDateTime(_)));
    }

    #[test]
    fn limits_on_depth_and_items() {
        let mut json = json!({"tag": "0x540001", "type": "Integer", "value": 1});
        for _ in 0..40 {
            json = json!({"tag": "0x540002", "value": [json]});
        }
        assert_eq!(
            fails(json.clone()).kind(),
            &JsonErrorKind::TooDeep(Limits::DEFAULT_MAX_DEPTH)
        );
        assert!(from_json_with(&json, &Limits::unbounded()).is_ok());
        let many = json!({"tag": "0x540002", "value": vec![json!({"tag": "0x540001", "type": "Integer", "value": 1}); 10]});
        let limits = Limits {
            max_items: 5,
            ..Limits::default()
        };
        assert_eq!(
            from_json_with(&many, &limits).unwrap_err().kind(),
            &JsonErrorKind::TooManyItems(5)
        );
        let limits = Limits {
            max_items: 11,
            ..Limits::default()
        };
        assert!(from_json_with(&many, &limits).is_ok());
    }

    #[test]
    fn long_quotes_are_cut() {
        let long = "A".repeat(1000);
        let err = fails(json!({"tag": long, "type": "Integer", "value": 1}));
        match err.kind() {
            JsonErrorKind::UnknownTag(t) => assert_eq!(t.len(), QUOTE_MAX + 3),
            other => panic!("{other:?}"),
        }
    }
}
