//! The framer and the decoder must agree on every input, accepted or not.
//!
//! A server reads an 8-byte header, asks [`frame_len`] how long the message is, reads exactly
//! that many bytes and decodes them. This checks, for arbitrary bytes and under both the default
//! and deliberately tight [`Limits`], that:
//!
//! 1. a header the framer refuses is refused by the decoder too, with the very same error
//!    (or, for `MessageTooLarge`, with `MessageTooLarge` or `LengthOverrun` at offset 0);
//! 2. a header the framer accepts announces `total_len >= 8`, a multiple of 8 for every type but
//!    Structure, and `body_len() == total_len - 8`;
//! 3. input shorter than `total_len` is refused by the decoder;
//! 4. the framed message (`total_len` bytes) either decodes to an item of the announced tag and
//!    type, or is refused *inside* its value (offset >= 8): the decoder never refuses a header
//!    the framer has approved;
//! 5. decoding the whole input gives the same answer as decoding the framed message, except that
//!    an accepted message followed by more bytes is `TrailingBytes` at `total_len`.
#![allow(clippy::panic)]

use crate::{ErrorKind, HEADER_LEN, ItemType, Limits, decode, frame_len};

/// Checks the framing properties under default and tight limits; panics when one fails.
pub fn frame_header(data: &[u8]) {
    check(data, &Limits::default());
    check(
        data,
        &Limits {
            max_message_len: 256,
            max_depth: 3,
            max_items: 12,
        },
    );
}

fn check(data: &[u8], limits: &Limits) {
    let Some(header) = data.first_chunk::<HEADER_LEN>() else {
        match decode(data, limits) {
            Err(e) if matches!(e.kind, ErrorKind::TruncatedHeader { .. }) && e.offset == 0 => {}
            other => panic!("input shorter than a header: {other:?}"),
        }
        return;
    };
    let whole = decode(data, limits);
    let frame = match frame_len(header, limits) {
        Ok(frame) => frame,
        Err(refused) => {
            assert_refused_alike(&refused, whole.as_ref().err(), data.len(), limits);
            return;
        }
    };

    let total = frame.total_len;
    if total < HEADER_LEN || frame.body_len() != total - HEADER_LEN {
        panic!("framer announces {total} bytes, body {}", frame.body_len());
    }
    if frame.item_type != ItemType::Structure && !total.is_multiple_of(8) {
        panic!(
            "framer announces {total} bytes for a {}, not a multiple of 8",
            frame.item_type
        );
    }
    if total > limits.max_message_len {
        panic!(
            "framer accepts {total} bytes over the limit of {}",
            limits.max_message_len
        );
    }

    let Some(message) = data.get(..total) else {
        if let Ok(tree) = whole {
            panic!(
                "decoder accepts {} bytes ({tree:?}), framer wants {total}",
                data.len()
            );
        }
        return;
    };
    let framed = decode(message, limits);
    match &framed {
        Ok(tree) => {
            if tree.tag != frame.tag || tree.item_type() != frame.item_type {
                panic!("framer says {frame:?}, decoder {tree:?}");
            }
        }
        Err(e) if e.offset < HEADER_LEN => {
            panic!("framer approves a header the decoder refuses: {e}");
        }
        Err(_) => {}
    }

    if data.len() == total {
        if framed != whole {
            panic!("decoding the same bytes twice differs: {framed:?} / {whole:?}");
        }
        return;
    }
    if data.len() > limits.max_message_len {
        // The whole input is refused for its size before anything is read.
        match whole {
            Err(e) if e.offset == 0 && matches!(e.kind, ErrorKind::MessageTooLarge { .. }) => {}
            other => panic!("input over the limit decodes to {other:?}"),
        }
        return;
    }
    match (framed, whole) {
        (Ok(_), Err(e))
            if e.offset == total
                && e.kind
                    == ErrorKind::TrailingBytes {
                        count: data.len() - total,
                    } => {}
        (Err(a), Err(b)) if a == b => {}
        (a, b) => panic!("framed message decodes to {a:?}, the whole input to {b:?}"),
    }
}

fn assert_refused_alike(
    refused: &crate::FrameError,
    decoded: Option<&crate::DecodeError>,
    len: usize,
    limits: &Limits,
) {
    let Some(decoded) = decoded else {
        panic!("framer refuses ({refused}) what the decoder accepts");
    };
    if refused.offset != 0 {
        panic!("framer error not at offset 0: {refused}");
    }
    match refused.kind {
        ErrorKind::MessageTooLarge { .. } => {
            // Announced more than the limit: the decoder refuses the input for its own size, or
            // (when it is within the limit) because the header runs past its end.
            let fine = decoded.offset == 0
                && if len > limits.max_message_len {
                    matches!(decoded.kind, ErrorKind::MessageTooLarge { .. })
                } else {
                    matches!(decoded.kind, ErrorKind::LengthOverrun { .. })
                };
            if !fine {
                panic!("framer: {refused}; decoder: {decoded}");
            }
        }
        _ if len > limits.max_message_len => {
            if !matches!(decoded.kind, ErrorKind::MessageTooLarge { .. }) || decoded.offset != 0 {
                panic!("framer: {refused}; decoder on an oversized input: {decoded}");
            }
        }
        _ => {
            if refused != decoded {
                panic!("framer: {refused}; decoder: {decoded}");
            }
        }
    }
}
