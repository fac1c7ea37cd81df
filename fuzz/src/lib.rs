//! Properties checked by the fuzz targets that `kmipd_ttlv::fuzzing` does not provide.
//!
//! Each module is a single file that `crates/ttlv/tests/fuzz_corpus.rs` also includes (with
//! `#[path]`), so that the stable test suite replays the committed corpus through exactly the
//! code the fuzzer ran.

pub mod frame_header;
