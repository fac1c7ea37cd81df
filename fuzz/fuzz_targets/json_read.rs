//! The KMIP JSON reader never panics, and whatever it accepts is written and read back to the
//! same tree (see `kmipd_proto::fuzzing::json_read`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kmipd_proto::fuzzing::json_read(data);
});
