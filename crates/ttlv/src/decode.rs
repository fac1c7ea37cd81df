//! Strict decoding of one TTLV item (with everything inside it) from a byte slice.

use zeroize::Zeroizing;

use crate::error::{DecodeError, ErrorKind};
use crate::{BigInteger, ItemType, Limits, Tag, Ttlv, Value};

/// Decodes exactly one item from `bytes`, which must hold that item and nothing else.
///
/// Every rule of the format is enforced; see [`ErrorKind`] for the list. The [`Limits`] are
/// checked before any allocation: the input length first, then each item's declared length
/// against the bytes actually present, then depth and item count as the tree is built.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Ttlv, DecodeError> {
    if bytes.len() > limits.max_message_len {
        return Err(err(
            0,
            ErrorKind::MessageTooLarge {
                len: to_u64(bytes.len()),
                max: limits.max_message_len,
            },
        ));
    }
    let mut decoder = Decoder {
        buf: bytes,
        items: 0,
        max_items: limits.max_items,
        max_depth: limits.effective_depth(),
    };
    let (item, end) = decoder.item(0, bytes.len(), 0)?;
    if end != bytes.len() {
        return Err(err(
            end,
            ErrorKind::TrailingBytes {
                count: bytes.len() - end,
            },
        ));
    }
    Ok(item)
}

struct Decoder<'a> {
    buf: &'a [u8],
    items: usize,
    max_items: usize,
    max_depth: usize,
}

/// A parsed 8-byte item header.
pub(crate) struct Header {
    pub(crate) tag: Tag,
    pub(crate) item_type: ItemType,
    pub(crate) len: u32,
}

impl Header {
    /// Parses and checks a header on its own: known type, fixed lengths, Big Integer lengths.
    /// `offset` is where the header starts, for error reporting.
    pub(crate) fn parse(bytes: [u8; 8], offset: usize) -> Result<Self, DecodeError> {
        let [t0, t1, t2, code, l0, l1, l2, l3] = bytes;
        let tag = Tag::from_bytes([t0, t1, t2]);
        let len = u32::from_be_bytes([l0, l1, l2, l3]);
        let item_type = ItemType::from_code(code)
            .ok_or_else(|| err(offset, ErrorKind::UnknownItemType { code, tag }))?;
        if let Some(expected) = item_type.fixed_len()
            && len != expected
        {
            return Err(err(
                offset,
                ErrorKind::InvalidFixedLength {
                    item_type,
                    expected,
                    declared: len,
                },
            ));
        }
        if item_type == ItemType::BigInteger && (len == 0 || !len.is_multiple_of(8)) {
            return Err(err(
                offset,
                ErrorKind::InvalidBigIntegerLength { declared: len },
            ));
        }
        Ok(Self {
            tag,
            item_type,
            len,
        })
    }

    /// Length of the value with its padding (Structures carry no padding of their own).
    pub(crate) fn padded_len(&self) -> u64 {
        let len = u64::from(self.len);
        match self.item_type {
            ItemType::Structure => len,
            _ => len.div_ceil(8) * 8,
        }
    }
}

impl Decoder<'_> {
    /// Decodes the item starting at `pos`, which must end by `end`. Returns the item and the
    /// offset just past it (padding included). `depth` is the number of enclosing Structures.
    fn item(&mut self, pos: usize, end: usize, depth: usize) -> Result<(Ttlv, usize), DecodeError> {
        let available = end.saturating_sub(pos);
        let header_bytes = self
            .buf
            .get(pos..end)
            .and_then(|rest| rest.first_chunk::<8>())
            .copied()
            .ok_or_else(|| err(pos, ErrorKind::TruncatedHeader { available }))?;
        self.items += 1;
        if self.items > self.max_items {
            return Err(err(
                pos,
                ErrorKind::TooManyItems {
                    max: self.max_items,
                },
            ));
        }
        let header = Header::parse(header_bytes, pos)?;
        let value_pos = pos + 8;
        let room = end - value_pos;
        let padded = header.padded_len();
        if padded > to_u64(room) {
            return Err(err(
                pos,
                ErrorKind::LengthOverrun {
                    item_type: header.item_type,
                    declared: padded,
                    available: room,
                },
            ));
        }
        // Both fit in `room`, hence in usize.
        let len = to_usize(header.len);
        let value_end = value_pos + len;
        let item_end = value_pos + to_usize_u64(padded);
        let raw = self.slice(value_pos, value_end)?;
        check_padding(self.slice(value_end, item_end)?, value_end)?;

        let value = match header.item_type {
            ItemType::Structure => {
                if depth >= self.max_depth {
                    return Err(err(
                        pos,
                        ErrorKind::TooDeep {
                            max: self.max_depth,
                        },
                    ));
                }
                let mut children = Vec::with_capacity(count_items(raw));
                let mut at = value_pos;
                while at < value_end {
                    if value_end - at < 8 {
                        return Err(err(
                            at,
                            ErrorKind::StructureLengthMismatch {
                                declared: header.len,
                                consumed: at - value_pos,
                                left: value_end - at,
                            },
                        ));
                    }
                    let (child, next) = self.item(at, value_end, depth + 1)?;
                    children.push(child);
                    at = next;
                }
                Value::Structure(children)
            }
            ItemType::Integer => Value::Integer(i32::from_be_bytes(fixed(raw, pos)?)),
            ItemType::LongInteger => Value::LongInteger(i64::from_be_bytes(fixed(raw, pos)?)),
            ItemType::Enumeration => Value::Enumeration(u32::from_be_bytes(fixed(raw, pos)?)),
            ItemType::Interval => Value::Interval(u32::from_be_bytes(fixed(raw, pos)?)),
            ItemType::DateTime => Value::DateTime(i64::from_be_bytes(fixed(raw, pos)?)),
            ItemType::DateTimeExtended => {
                Value::DateTimeExtended(i64::from_be_bytes(fixed(raw, pos)?))
            }
            ItemType::Boolean => match u64::from_be_bytes(fixed(raw, pos)?) {
                0 => Value::Boolean(false),
                1 => Value::Boolean(true),
                value => return Err(err(value_pos, ErrorKind::InvalidBoolean { value })),
            },
            ItemType::TextString => match std::str::from_utf8(raw) {
                Ok(s) => Value::TextString(s.to_owned()),
                Err(e) => return Err(err(value_pos + e.valid_up_to(), ErrorKind::InvalidUtf8)),
            },
            ItemType::ByteString => Value::ByteString(Zeroizing::new(raw.to_vec())),
            ItemType::BigInteger => {
                Value::BigInteger(BigInteger::from_wire(Zeroizing::new(raw.to_vec())))
            }
        };
        Ok((
            Ttlv {
                tag: header.tag,
                value,
            },
            item_end,
        ))
    }

    fn slice(&self, from: usize, to: usize) -> Result<&[u8], DecodeError> {
        // Unreachable after the overrun check; reported rather than panicking.
        self.buf.get(from..to).ok_or_else(|| {
            err(
                from,
                ErrorKind::LengthOverrun {
                    item_type: ItemType::Structure,
                    declared: to_u64(to.saturating_sub(from)),
                    available: self.buf.len().saturating_sub(from),
                },
            )
        })
    }
}

/// How many items a Structure's value holds, by hopping from header to header (a cheap first
/// pass so that the children's vector is allocated once, at its exact size). Malformed content
/// only ends the count early: the decoding pass reports it.
fn count_items(mut content: &[u8]) -> usize {
    let mut n = 0;
    while let Some(header) = content.first_chunk::<8>() {
        let [_, _, _, code, l0, l1, l2, l3] = *header;
        let len = u64::from(u32::from_be_bytes([l0, l1, l2, l3]));
        let padded = if code == ItemType::Structure.code() {
            len
        } else {
            len.div_ceil(8) * 8
        };
        let Some(rest) = content.get(8..) else { break };
        let Some(rest) = rest.get(to_usize_u64(padded)..) else {
            break;
        };
        n += 1;
        content = rest;
    }
    n
}

fn check_padding(padding: &[u8], offset: usize) -> Result<(), DecodeError> {
    match padding.iter().position(|&b| b != 0) {
        None => Ok(()),
        Some(i) => Err(err(
            offset + i,
            ErrorKind::NonZeroPadding {
                byte: padding.get(i).copied().unwrap_or_default(),
            },
        )),
    }
}

/// The value bytes of a fixed-size item as an array (its length was checked in the header).
fn fixed<const N: usize>(raw: &[u8], pos: usize) -> Result<[u8; N], DecodeError> {
    raw.first_chunk::<N>().copied().ok_or_else(|| {
        err(
            pos,
            ErrorKind::InvalidFixedLength {
                item_type: ItemType::Integer,
                expected: u32::try_from(N).unwrap_or(u32::MAX),
                declared: u32::try_from(raw.len()).unwrap_or(u32::MAX),
            },
        )
    })
}

pub(crate) fn err(offset: usize, kind: ErrorKind) -> DecodeError {
    DecodeError { kind, offset }
}

pub(crate) fn to_usize(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

pub(crate) fn to_usize_u64(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

pub(crate) fn to_u64(v: usize) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}
