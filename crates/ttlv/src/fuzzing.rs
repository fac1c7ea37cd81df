//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the stable tests that replay
//! their corpora (`tests/fuzz_corpus.rs`). Each panics when a property fails, which is how a
//! fuzzer learns of it.
#![allow(clippy::panic)]

use crate::{HEADER_LEN, Limits, decode, encode_to_vec, frame_len};

mod frame_header;

pub use frame_header::frame_header;

/// Decodes arbitrary bytes under default limits; must never panic.
pub fn decode_bytes(data: &[u8]) {
    let _ = decode(data, &Limits::default());
}

/// Decode, encode, decode: whatever the strict decoder accepts must re-encode to the very same
/// bytes and decode to the same tree, and the framer must agree on its length.
pub fn round_trip(data: &[u8]) {
    let limits = Limits::default();
    let Ok(tree) = decode(data, &limits) else {
        return;
    };
    let bytes = match encode_to_vec(&tree) {
        Ok(bytes) => bytes,
        Err(e) => panic!("accepted input failed to encode: {e}"),
    };
    if bytes != data {
        panic!("re-encoding differs from the accepted input");
    }
    match decode(&bytes, &limits) {
        Ok(again) if again == tree => {}
        Ok(_) => panic!("second decode gave another tree"),
        Err(e) => panic!("re-encoded bytes do not decode: {e}"),
    }
    let Some(header) = data.first_chunk::<HEADER_LEN>() else {
        panic!("accepted input shorter than a header");
    };
    match frame_len(header, &limits) {
        Ok(frame) if frame.total_len == data.len() => {}
        Ok(frame) => panic!(
            "framer says {} bytes, decoder {}",
            frame.total_len,
            data.len()
        ),
        Err(e) => panic!("framer refuses an accepted input: {e}"),
    }
}
