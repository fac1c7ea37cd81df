//! `Engine::handle_bytes` over a memory store never panics and always answers a Response
//! Message (see `kmipd_ops::fuzzing::handle_bytes`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kmipd_ops::fuzzing::handle_bytes(data);
});
