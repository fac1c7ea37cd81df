//! The decoded tree: items and their values.

use std::fmt;

use zeroize::Zeroizing;

use crate::{ItemType, Tag};

/// One TTLV item: a tag and a value (whose variant is the item type).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Ttlv {
    /// The item's tag.
    pub tag: Tag,
    /// The item's value.
    pub value: Value,
}

impl Ttlv {
    /// An item from a tag and a value.
    pub const fn new(tag: Tag, value: Value) -> Self {
        Self { tag, value }
    }

    /// The item type of the value.
    pub const fn item_type(&self) -> ItemType {
        self.value.item_type()
    }

    /// The children, if this is a Structure.
    pub fn children(&self) -> Option<&[Ttlv]> {
        match &self.value {
            Value::Structure(items) => Some(items),
            _ => None,
        }
    }

    /// The first child with the given tag, if this is a Structure that has one.
    pub fn child(&self, tag: Tag) -> Option<&Ttlv> {
        self.children()?.iter().find(|c| c.tag == tag)
    }

    /// Calls `f` on this item and every item below it, depth first, parents before children.
    pub fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Ttlv, usize)) {
        fn go<'a>(item: &'a Ttlv, depth: usize, f: &mut impl FnMut(&'a Ttlv, usize)) {
            f(item, depth);
            if let Value::Structure(children) = &item.value {
                for c in children {
                    go(c, depth + 1, f);
                }
            }
        }
        go(self, 0, f);
    }
}

/// The value of an item. Byte strings and big integers (which carry key material) are zeroized
/// when dropped and never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// A sequence of items.
    Structure(Vec<Ttlv>),
    /// 32-bit signed integer.
    Integer(i32),
    /// 64-bit signed integer.
    LongInteger(i64),
    /// Arbitrary-precision two's complement integer.
    BigInteger(BigInteger),
    /// 32-bit enumeration value.
    Enumeration(u32),
    /// Boolean.
    Boolean(bool),
    /// UTF-8 text.
    TextString(String),
    /// Opaque bytes.
    ByteString(Zeroizing<Vec<u8>>),
    /// Seconds since the POSIX epoch.
    DateTime(i64),
    /// A number of seconds.
    Interval(u32),
    /// Microseconds since the POSIX epoch (KMIP 2.0 and later).
    DateTimeExtended(i64),
}

impl Value {
    /// The item type of this value.
    pub const fn item_type(&self) -> ItemType {
        match self {
            Self::Structure(_) => ItemType::Structure,
            Self::Integer(_) => ItemType::Integer,
            Self::LongInteger(_) => ItemType::LongInteger,
            Self::BigInteger(_) => ItemType::BigInteger,
            Self::Enumeration(_) => ItemType::Enumeration,
            Self::Boolean(_) => ItemType::Boolean,
            Self::TextString(_) => ItemType::TextString,
            Self::ByteString(_) => ItemType::ByteString,
            Self::DateTime(_) => ItemType::DateTime,
            Self::Interval(_) => ItemType::Interval,
            Self::DateTimeExtended(_) => ItemType::DateTimeExtended,
        }
    }

    /// A Byte String value from bytes.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self::ByteString(Zeroizing::new(bytes.into()))
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Structure(items) => f.debug_tuple("Structure").field(items).finish(),
            Self::Integer(v) => write!(f, "Integer({v})"),
            Self::LongInteger(v) => write!(f, "LongInteger({v})"),
            Self::BigInteger(v) => write!(f, "{v:?}"),
            Self::Enumeration(v) => write!(f, "Enumeration(0x{v:08X})"),
            Self::Boolean(v) => write!(f, "Boolean({v})"),
            Self::TextString(v) => write!(f, "TextString({v:?})"),
            Self::ByteString(v) => write!(f, "ByteString(<{} bytes>)", v.len()),
            Self::DateTime(v) => write!(f, "DateTime({v})"),
            Self::Interval(v) => write!(f, "Interval({v})"),
            Self::DateTimeExtended(v) => write!(f, "DateTimeExtended({v})"),
        }
    }
}

/// A Big Integer: big-endian two's complement bytes whose length is a non-zero multiple of 8,
/// exactly as on the wire (KMIP 1.4 §9.1.1.4: "padded with the minimal number of leading
/// sign-extended bytes to make the length a multiple of eight bytes").
///
/// The bytes are kept as received, so that encoding reproduces them exactly; constructors from
/// other lengths sign-extend. Zeroized on drop; `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct BigInteger(Zeroizing<Vec<u8>>);

impl BigInteger {
    /// A Big Integer from big-endian two's complement bytes of any length, sign-extended on the
    /// left to a multiple of 8 bytes (an empty input is zero).
    pub fn from_twos_complement(bytes: &[u8]) -> Self {
        let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
        let fill = if negative { 0xFF } else { 0x00 };
        let padded = bytes.len().div_ceil(8).max(1) * 8;
        let mut v = Zeroizing::new(Vec::with_capacity(padded));
        v.resize(padded - bytes.len(), fill);
        v.extend_from_slice(bytes);
        Self(v)
    }

    /// A Big Integer from a non-negative big-endian magnitude (a leading zero byte is added where
    /// the top bit is set, so that the value stays positive).
    pub fn from_unsigned(magnitude: &[u8]) -> Self {
        if magnitude.first().is_some_and(|b| b & 0x80 != 0) {
            let mut v = Zeroizing::new(Vec::with_capacity(magnitude.len() + 1));
            v.push(0);
            v.extend_from_slice(magnitude);
            Self::from_twos_complement(&v)
        } else {
            Self::from_twos_complement(magnitude)
        }
    }

    /// Wire bytes, whose length the caller has checked to be a non-zero multiple of 8.
    pub(crate) fn from_wire(bytes: Zeroizing<Vec<u8>>) -> Self {
        debug_assert!(!bytes.is_empty() && bytes.len().is_multiple_of(8));
        Self(bytes)
    }

    /// The two's complement bytes, a non-zero multiple of 8 long.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether the value is negative.
    pub fn is_negative(&self) -> bool {
        self.0.first().is_some_and(|b| b & 0x80 != 0)
    }
}

impl fmt::Debug for BigInteger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BigInteger(<{} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_integer_sign_extends() {
        assert_eq!(BigInteger::from_twos_complement(&[]).as_bytes(), &[0u8; 8]);
        assert_eq!(
            BigInteger::from_twos_complement(&[0x01]).as_bytes(),
            &[0, 0, 0, 0, 0, 0, 0, 1]
        );
        let neg = BigInteger::from_twos_complement(&[0x80, 0x00]);
        assert_eq!(
            neg.as_bytes(),
            &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x80, 0x00]
        );
        assert!(neg.is_negative());
        let pos = BigInteger::from_unsigned(&[0x80; 8]);
        assert_eq!(pos.as_bytes().len(), 16);
        assert!(!pos.is_negative());
        assert_eq!(
            BigInteger::from_twos_complement(&[7; 16]).as_bytes(),
            &[7; 16]
        );
    }

    #[test]
    fn debug_never_shows_secret_bytes() {
        let v = Value::bytes(vec![0xAB; 4]);
        assert_eq!(format!("{v:?}"), "ByteString(<4 bytes>)");
        let b = Value::BigInteger(BigInteger::from_twos_complement(&[0xCD; 3]));
        assert_eq!(format!("{b:?}"), "BigInteger(<8 bytes>)");
    }
}
