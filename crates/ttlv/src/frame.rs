//! Framing for byte streams, without I/O.
//!
//! A KMIP message on a TLS stream is one TTLV item. Its 8-byte header says how many bytes
//! follow, so a reader needs exactly two reads: the header, then the body. [`frame_len`] checks
//! the header (known type, legal length, within [`Limits::max_message_len`]) **before** the
//! reader allocates a buffer for the body.
//!
//! With tokio, the server does:
//!
//! ```ignore
//! let mut header = [0u8; HEADER_LEN];
//! stream.read_exact(&mut header).await?;
//! let frame = kmipd_ttlv::frame_len(&header, &limits)?;      // refuse before allocating
//! let mut message = Vec::with_capacity(frame.total_len);
//! message.extend_from_slice(&header);
//! message.resize(frame.total_len, 0);
//! stream.read_exact(&mut message[HEADER_LEN..]).await?;
//! let tree = kmipd_ttlv::decode(&message, &limits)?;
//! ```

use crate::decode::{Header, err, to_u64, to_usize_u64};
use crate::error::ErrorKind;
use crate::{DecodeError, ItemType, Limits, Tag};

/// Length of a TTLV item header.
pub const HEADER_LEN: usize = 8;

/// Errors of [`frame_len`] are decoding errors at offset 0 (the header):
/// [`ErrorKind::UnknownItemType`], [`ErrorKind::InvalidFixedLength`],
/// [`ErrorKind::InvalidBigIntegerLength`] or [`ErrorKind::MessageTooLarge`].
pub type FrameError = DecodeError;

/// What a header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Tag of the item (a server checks it is a Request Message).
    pub tag: Tag,
    /// Type of the item (a server checks it is a Structure).
    pub item_type: ItemType,
    /// Length of the whole item, header and padding included.
    pub total_len: usize,
}

impl Frame {
    /// Bytes that follow the header.
    pub fn body_len(&self) -> usize {
        self.total_len - HEADER_LEN
    }
}

/// Reads an item header and tells how long the whole item is, or why it must be refused.
pub fn frame_len(header: &[u8; HEADER_LEN], limits: &Limits) -> Result<Frame, FrameError> {
    let parsed = Header::parse(*header, 0)?;
    let total = parsed.padded_len() + to_u64(HEADER_LEN);
    if total > to_u64(limits.max_message_len) {
        return Err(err(
            0,
            ErrorKind::MessageTooLarge {
                len: total,
                max: limits.max_message_len,
            },
        ));
    }
    Ok(Frame {
        tag: parsed.tag,
        item_type: parsed.item_type,
        total_len: to_usize_u64(total),
    })
}
