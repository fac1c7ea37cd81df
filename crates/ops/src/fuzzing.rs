//! The entry point shared by the cargo-fuzz target `engine_handle_bytes` (`fuzz/`) and the
//! stable test that replays its corpus (`tests/fuzz_corpus.rs`). It panics when a property
//! fails, which is how a fuzzer learns of it. See docs/fuzzing.md.
#![allow(clippy::panic)]

use kmipd_proto::message::ResponseMessage;
use kmipd_ttlv::{HEADER_LEN, Limits, decode, frame_len};

use crate::{Engine, Principal};

/// Feeds arbitrary bytes to a fresh engine over an empty [`kmipd_store::MemoryStore`], as one
/// or more requests: each message the framer accepts in turn is one request (so a later one
/// can use the objects an earlier one made), and whatever is left is the last. The engine must
/// never panic, and every answer must be a Response Message in TTLV that decodes under the
/// default limits.
pub fn handle_bytes(data: &[u8]) {
    let engine = Engine::in_memory();
    let who = Principal::new("fuzz");
    let limits = Limits::default();
    let mut rest = data;
    while !rest.is_empty() {
        let len = rest
            .first_chunk::<HEADER_LEN>()
            .and_then(|header| frame_len(header, &limits).ok())
            .map(|frame| frame.total_len)
            .filter(|len| *len <= rest.len())
            .unwrap_or(rest.len());
        let (request, after) = rest.split_at(len);
        rest = after;
        let answer = engine.handle_bytes(&who, request);
        let tree = match decode(&answer, &limits) {
            Ok(tree) => tree,
            Err(e) => panic!("the answer does not decode: {e}"),
        };
        if let Err(e) = ResponseMessage::from_ttlv(&tree) {
            panic!("the answer is not a Response Message: {e}");
        }
    }
}
