//! Typed reading of decoded TTLV structures: a cursor over a structure's children with
//! `required`/`optional`/`repeated` accessors (the idea of mini-redis's `Parse`), and the typed
//! error every KMIP-level decoding failure becomes.
//!
//! The codec has already checked the wire form (lengths, padding, types); what is checked here
//! is KMIP shape: a field is present, has the item type the specification gives it, and holds a
//! value that makes sense.

use kmipd_ttlv::{BigInteger, ItemType, Tag, Ttlv, Value};

use crate::spec;

/// Why a TTLV tree is not the KMIP message or payload it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// A required field is absent.
    #[error("missing {}", name(*.0))]
    Missing(Tag),
    /// A field has another item type than the specification's.
    #[error("{} is not a {expected:?}", name(*tag))]
    WrongType {
        /// The field.
        tag: Tag,
        /// The item type it must have.
        expected: ItemType,
    },
    /// A field's value is out of range or otherwise meaningless.
    #[error("invalid value of {}", name(*.0))]
    InvalidValue(Tag),
    /// The item is not the one expected here.
    #[error("expected {}, found {}", name(*expected), name(*found))]
    WrongTag {
        /// The tag that belongs here.
        expected: Tag,
        /// The tag that was found.
        found: Tag,
    },
    /// A field that may appear only once appears more often.
    #[error("{} appears more than once", name(*.0))]
    Repeated(Tag),
}

impl ProtoError {
    /// The tag the error is about.
    pub fn tag(&self) -> Tag {
        match self {
            ProtoError::Missing(t)
            | ProtoError::WrongType { tag: t, .. }
            | ProtoError::InvalidValue(t)
            | ProtoError::Repeated(t) => *t,
            ProtoError::WrongTag { found, .. } => *found,
        }
    }
}

/// The spec name of a tag, for messages (`0x540001` for names the tables lack).
pub fn name(tag: Tag) -> String {
    spec::tag_by_value(tag.value()).map_or_else(|| tag.to_string(), |t| t.name.to_owned())
}

/// A read-only cursor over the children of one structure.
#[derive(Debug, Clone, Copy)]
pub struct StructReader<'a> {
    tag: Tag,
    items: &'a [Ttlv],
}

impl<'a> StructReader<'a> {
    /// Reads `item`, which must be a structure with tag `tag`.
    pub fn new(item: &'a Ttlv, tag: Tag) -> Result<Self, ProtoError> {
        if item.tag != tag {
            return Err(ProtoError::WrongTag {
                expected: tag,
                found: item.tag,
            });
        }
        Self::any(item)
    }

    /// Reads `item`, which must be a structure (of any tag).
    pub fn any(item: &'a Ttlv) -> Result<Self, ProtoError> {
        match &item.value {
            Value::Structure(items) => Ok(StructReader {
                tag: item.tag,
                items,
            }),
            _ => Err(ProtoError::WrongType {
                tag: item.tag,
                expected: ItemType::Structure,
            }),
        }
    }

    /// The structure's own tag.
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// Every child, in order.
    pub fn items(&self) -> &'a [Ttlv] {
        self.items
    }

    /// The first child with this tag.
    pub fn optional(&self, tag: Tag) -> Option<&'a Ttlv> {
        self.items.iter().find(|i| i.tag == tag)
    }

    /// The child with this tag, which must be present (the first when repeated).
    pub fn required(&self, tag: Tag) -> Result<&'a Ttlv, ProtoError> {
        self.optional(tag).ok_or(ProtoError::Missing(tag))
    }

    /// The child with this tag, at most once.
    pub fn single(&self, tag: Tag) -> Result<Option<&'a Ttlv>, ProtoError> {
        let mut it = self.repeated(tag);
        let first = it.next();
        if it.next().is_some() {
            return Err(ProtoError::Repeated(tag));
        }
        Ok(first)
    }

    /// Every child with this tag, in order.
    pub fn repeated(&self, tag: Tag) -> impl Iterator<Item = &'a Ttlv> + use<'a> {
        self.items.iter().filter(move |i| i.tag == tag)
    }

    /// An optional Text String.
    pub fn text(&self, tag: Tag) -> Result<Option<&'a str>, ProtoError> {
        self.optional(tag).map(as_text).transpose()
    }

    /// A required Text String.
    pub fn req_text(&self, tag: Tag) -> Result<&'a str, ProtoError> {
        as_text(self.required(tag)?)
    }

    /// An optional Integer.
    pub fn int(&self, tag: Tag) -> Result<Option<i32>, ProtoError> {
        self.optional(tag).map(as_int).transpose()
    }

    /// A required Integer.
    pub fn req_int(&self, tag: Tag) -> Result<i32, ProtoError> {
        as_int(self.required(tag)?)
    }

    /// An optional Long Integer.
    pub fn long(&self, tag: Tag) -> Result<Option<i64>, ProtoError> {
        self.optional(tag).map(as_long).transpose()
    }

    /// An optional Enumeration.
    pub fn enumeration(&self, tag: Tag) -> Result<Option<u32>, ProtoError> {
        self.optional(tag).map(as_enum).transpose()
    }

    /// A required Enumeration.
    pub fn req_enum(&self, tag: Tag) -> Result<u32, ProtoError> {
        as_enum(self.required(tag)?)
    }

    /// An optional Boolean.
    pub fn boolean(&self, tag: Tag) -> Result<Option<bool>, ProtoError> {
        self.optional(tag).map(as_bool).transpose()
    }

    /// An optional Byte String.
    pub fn bytes(&self, tag: Tag) -> Result<Option<&'a [u8]>, ProtoError> {
        self.optional(tag).map(as_bytes).transpose()
    }

    /// A required Byte String.
    pub fn req_bytes(&self, tag: Tag) -> Result<&'a [u8], ProtoError> {
        as_bytes(self.required(tag)?)
    }

    /// An optional Big Integer.
    pub fn big(&self, tag: Tag) -> Result<Option<&'a BigInteger>, ProtoError> {
        self.optional(tag).map(as_big).transpose()
    }

    /// An optional Date-Time (or Date-Time Extended, in seconds).
    pub fn datetime(&self, tag: Tag) -> Result<Option<i64>, ProtoError> {
        self.optional(tag).map(as_datetime).transpose()
    }

    /// An optional Interval.
    pub fn interval(&self, tag: Tag) -> Result<Option<u32>, ProtoError> {
        self.optional(tag).map(as_interval).transpose()
    }

    /// An optional structure.
    pub fn structure(&self, tag: Tag) -> Result<Option<StructReader<'a>>, ProtoError> {
        self.optional(tag).map(StructReader::any).transpose()
    }
}

fn wrong(item: &Ttlv, expected: ItemType) -> ProtoError {
    ProtoError::WrongType {
        tag: item.tag,
        expected,
    }
}

/// The item's Text String.
pub fn as_text(item: &Ttlv) -> Result<&str, ProtoError> {
    match &item.value {
        Value::TextString(s) => Ok(s),
        _ => Err(wrong(item, ItemType::TextString)),
    }
}

/// The item's Integer.
pub fn as_int(item: &Ttlv) -> Result<i32, ProtoError> {
    match item.value {
        Value::Integer(v) => Ok(v),
        _ => Err(wrong(item, ItemType::Integer)),
    }
}

/// The item's Long Integer.
pub fn as_long(item: &Ttlv) -> Result<i64, ProtoError> {
    match item.value {
        Value::LongInteger(v) => Ok(v),
        _ => Err(wrong(item, ItemType::LongInteger)),
    }
}

/// The item's Enumeration.
pub fn as_enum(item: &Ttlv) -> Result<u32, ProtoError> {
    match item.value {
        Value::Enumeration(v) => Ok(v),
        _ => Err(wrong(item, ItemType::Enumeration)),
    }
}

/// The item's Boolean.
pub fn as_bool(item: &Ttlv) -> Result<bool, ProtoError> {
    match item.value {
        Value::Boolean(v) => Ok(v),
        _ => Err(wrong(item, ItemType::Boolean)),
    }
}

/// The item's Byte String.
pub fn as_bytes(item: &Ttlv) -> Result<&[u8], ProtoError> {
    match &item.value {
        Value::ByteString(v) => Ok(v),
        _ => Err(wrong(item, ItemType::ByteString)),
    }
}

/// The item's Big Integer.
pub fn as_big(item: &Ttlv) -> Result<&BigInteger, ProtoError> {
    match &item.value {
        Value::BigInteger(v) => Ok(v),
        _ => Err(wrong(item, ItemType::BigInteger)),
    }
}

/// The item's Date-Time in seconds (a Date-Time Extended is truncated to seconds).
pub fn as_datetime(item: &Ttlv) -> Result<i64, ProtoError> {
    match item.value {
        Value::DateTime(v) => Ok(v),
        Value::DateTimeExtended(v) => Ok(v.div_euclid(1_000_000)),
        _ => Err(wrong(item, ItemType::DateTime)),
    }
}

/// The item's Interval.
pub fn as_interval(item: &Ttlv) -> Result<u32, ProtoError> {
    match item.value {
        Value::Interval(v) => Ok(v),
        _ => Err(wrong(item, ItemType::Interval)),
    }
}
