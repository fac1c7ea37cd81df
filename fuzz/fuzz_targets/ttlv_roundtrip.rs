//! Whatever the strict decoder accepts must re-encode to the very same bytes, decode to the
//! same tree, and be framed at exactly its length (see `kmipd_ttlv::fuzzing::round_trip`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kmipd_ttlv::fuzzing::round_trip(data);
});
