//! Decoding errors: one kind per violation of the format, each with the byte offset.

use crate::{ItemType, Tag};

/// Why a byte sequence is not acceptable TTLV, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct DecodeError {
    /// What is wrong.
    pub kind: ErrorKind,
    /// Offset from the start of the input of the item header or value byte at fault.
    pub offset: usize,
}

/// The violations the decoder tells apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The input is longer than [`Limits::max_message_len`](crate::Limits::max_message_len).
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Length of the input (or as announced by a header).
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The input ends before an item header is complete.
    #[error("truncated item header: {available} of 8 bytes")]
    TruncatedHeader {
        /// Bytes left where a header was expected.
        available: usize,
    },
    /// An item's declared length runs past the end of the input or of its parent Structure.
    #[error(
        "item of type {item_type} declares {declared} bytes (padded) but only {available} remain"
    )]
    LengthOverrun {
        /// The type of the item.
        item_type: ItemType,
        /// Declared length, padding included.
        declared: u64,
        /// Bytes remaining in the input or the enclosing structure.
        available: usize,
    },
    /// The type byte is not one of the eleven TTLV item types.
    #[error("unknown item type 0x{code:02X} (tag {tag})")]
    UnknownItemType {
        /// The type byte.
        code: u8,
        /// The tag of the item.
        tag: Tag,
    },
    /// A fixed-size type (Integer, Long Integer, Enumeration, Boolean, Date-Time, Interval,
    /// Date-Time Extended) declares a length other than its size.
    #[error("{item_type} must have length {expected}, declared {declared}")]
    InvalidFixedLength {
        /// The type of the item.
        item_type: ItemType,
        /// The required length.
        expected: u32,
        /// The declared length.
        declared: u32,
    },
    /// A Big Integer's length is zero or not a multiple of 8.
    #[error("Big Integer length {declared} is not a positive multiple of 8")]
    InvalidBigIntegerLength {
        /// The declared length.
        declared: u32,
    },
    /// A padding byte is not zero.
    #[error("non-zero padding byte 0x{byte:02X}")]
    NonZeroPadding {
        /// The offending byte.
        byte: u8,
    },
    /// A Structure's children do not fill its declared length exactly.
    #[error(
        "structure declares {declared} bytes but its items end after {consumed}, leaving {left}"
    )]
    StructureLengthMismatch {
        /// The structure's declared length.
        declared: u32,
        /// Bytes taken by the complete items inside it.
        consumed: usize,
        /// Bytes left over, too few for another item.
        left: usize,
    },
    /// Bytes follow the end of the (single) top-level item.
    #[error("{count} trailing bytes after the message")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A Text String is not valid UTF-8.
    #[error("text string is not valid UTF-8")]
    InvalidUtf8,
    /// A Boolean's value is neither 0 nor 1.
    #[error("boolean value 0x{value:016X} is neither 0 nor 1")]
    InvalidBoolean {
        /// The 8-byte value.
        value: u64,
    },
    /// Structures nest deeper than [`Limits::max_depth`](crate::Limits::max_depth).
    #[error("structures nest deeper than {max}")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The message has more items than [`Limits::max_items`](crate::Limits::max_items).
    #[error("more than {max} items")]
    TooManyItems {
        /// The limit.
        max: usize,
    },
}
