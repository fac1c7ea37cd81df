//! The framer and the decoder agree on arbitrary bytes (see `kmipd_ttlv::fuzzing::frame_header`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kmipd_ttlv::fuzzing::frame_header(data);
});
