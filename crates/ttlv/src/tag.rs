//! Tags: 3 bytes on the wire, open-ended in this crate.

use std::fmt;

/// A TTLV tag: a 24-bit number.
///
/// KMIP's own tags are `0x420000..=0x42FFFF`; `0x540000..=0x54FFFF` are reserved for extensions.
/// This type accepts every 24-bit value: deciding what is acceptable is the business of the
/// layers above.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(u32);

/// A number that does not fit in the 3 bytes of a TTLV tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("tag 0x{0:X} does not fit in 3 bytes")]
pub struct InvalidTag(pub u32);

impl Tag {
    /// The largest tag TTLV can carry.
    pub const MAX: u32 = 0x00FF_FFFF;

    /// A tag from a number; fails if it does not fit in 3 bytes.
    pub const fn new(value: u32) -> Result<Self, InvalidTag> {
        if value > Self::MAX {
            Err(InvalidTag(value))
        } else {
            Ok(Self(value))
        }
    }

    /// A tag from its 3 wire bytes (big-endian).
    pub const fn from_bytes(bytes: [u8; 3]) -> Self {
        Self(u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]))
    }

    /// The tag's 3 wire bytes (big-endian).
    pub const fn to_bytes(self) -> [u8; 3] {
        let b = self.0.to_be_bytes();
        [b[1], b[2], b[3]]
    }

    /// The tag as a number.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// Whether the tag is in the KMIP extension range `0x540000..=0x54FFFF`.
    pub const fn is_extension(self) -> bool {
        self.0 >> 16 == 0x54
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag(0x{:06X})", self.0)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:06X}", self.0)
    }
}

impl TryFrom<u32> for Tag {
    type Error = InvalidTag;
    fn try_from(value: u32) -> Result<Self, InvalidTag> {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_range() {
        let t = Tag::new(0x54_0001).unwrap();
        assert_eq!(t.to_bytes(), [0x54, 0x00, 0x01]);
        assert_eq!(Tag::from_bytes([0x54, 0x00, 0x01]), t);
        assert!(t.is_extension());
        assert!(!Tag::new(0x42_0001).unwrap().is_extension());
        assert_eq!(Tag::new(0x0100_0000), Err(InvalidTag(0x0100_0000)));
        assert_eq!(t.to_string(), "0x540001");
    }
}
