//! Arbitrary bytes through the strict decoder under default limits: it must never panic
//! (nor overflow the stack, nor allocate past what the input holds).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kmipd_ttlv::fuzzing::decode_bytes(data);
});
