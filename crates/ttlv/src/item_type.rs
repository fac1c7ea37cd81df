//! The item types of TTLV (the fourth byte of an item header).

use std::fmt;

/// The type byte of a TTLV item. Closed: a type byte outside this set cannot be decoded,
/// because its length rules are unknown.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum ItemType {
    /// 0x01: a sequence of items.
    Structure,
    /// 0x02: 4-byte signed integer.
    Integer,
    /// 0x03: 8-byte signed integer.
    LongInteger,
    /// 0x04: two's complement, a multiple of 8 bytes.
    BigInteger,
    /// 0x05: 4-byte unsigned value.
    Enumeration,
    /// 0x06: 8 bytes, 0 or 1.
    Boolean,
    /// 0x07: UTF-8 text.
    TextString,
    /// 0x08: opaque bytes.
    ByteString,
    /// 0x09: 8-byte signed POSIX seconds.
    DateTime,
    /// 0x0A: 4-byte unsigned seconds.
    Interval,
    /// 0x0B: 8-byte signed POSIX microseconds (KMIP 2.0 and later).
    DateTimeExtended,
}

impl ItemType {
    /// Every item type, in wire order.
    pub const ALL: [ItemType; 11] = [
        Self::Structure,
        Self::Integer,
        Self::LongInteger,
        Self::BigInteger,
        Self::Enumeration,
        Self::Boolean,
        Self::TextString,
        Self::ByteString,
        Self::DateTime,
        Self::Interval,
        Self::DateTimeExtended,
    ];

    /// The type for a wire byte, if it is one.
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x01 => Self::Structure,
            0x02 => Self::Integer,
            0x03 => Self::LongInteger,
            0x04 => Self::BigInteger,
            0x05 => Self::Enumeration,
            0x06 => Self::Boolean,
            0x07 => Self::TextString,
            0x08 => Self::ByteString,
            0x09 => Self::DateTime,
            0x0A => Self::Interval,
            0x0B => Self::DateTimeExtended,
            _ => return None,
        })
    }

    /// The wire byte.
    pub const fn code(self) -> u8 {
        match self {
            Self::Structure => 0x01,
            Self::Integer => 0x02,
            Self::LongInteger => 0x03,
            Self::BigInteger => 0x04,
            Self::Enumeration => 0x05,
            Self::Boolean => 0x06,
            Self::TextString => 0x07,
            Self::ByteString => 0x08,
            Self::DateTime => 0x09,
            Self::Interval => 0x0A,
            Self::DateTimeExtended => 0x0B,
        }
    }

    /// The value length every item of this type must declare, if the type has a fixed size.
    pub const fn fixed_len(self) -> Option<u32> {
        match self {
            Self::Integer | Self::Enumeration | Self::Interval => Some(4),
            Self::LongInteger | Self::Boolean | Self::DateTime | Self::DateTimeExtended => Some(8),
            Self::Structure | Self::BigInteger | Self::TextString | Self::ByteString => None,
        }
    }

    /// The name used by the KMIP XML and JSON encodings (`LongInteger`, `DateTimeExtended`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Structure => "Structure",
            Self::Integer => "Integer",
            Self::LongInteger => "LongInteger",
            Self::BigInteger => "BigInteger",
            Self::Enumeration => "Enumeration",
            Self::Boolean => "Boolean",
            Self::TextString => "TextString",
            Self::ByteString => "ByteString",
            Self::DateTime => "DateTime",
            Self::Interval => "Interval",
            Self::DateTimeExtended => "DateTimeExtended",
        }
    }

    /// The type with the given [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for ItemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for t in ItemType::ALL {
            assert_eq!(ItemType::from_code(t.code()), Some(t));
            assert_eq!(ItemType::from_name(t.name()), Some(t));
        }
        assert_eq!(ItemType::from_code(0x00), None);
        assert_eq!(ItemType::from_code(0x0C), None);
        assert_eq!(ItemType::from_name("Bogus"), None);
    }
}
