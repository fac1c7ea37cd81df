#![allow(clippy::panic)]
//! Replays the committed fuzz corpora of the codec's targets on stable, as part of `cargo test`
//! (`kmipd_test_support::fuzz`; see docs/fuzzing.md).

use kmipd_test_support::fuzz;

/// What a fuzz target calls on each input; panics when a property fails.
type Check = fn(&[u8]);

/// The fuzz targets of this crate and the function each one calls.
const TARGETS: [(&str, Check); 3] = [
    ("ttlv_decode", kmipd_ttlv::fuzzing::decode_bytes),
    ("ttlv_roundtrip", kmipd_ttlv::fuzzing::round_trip),
    ("frame_header", kmipd_ttlv::fuzzing::frame_header),
];

fn replay(target: &str) {
    let (_, check) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .copied()
        .unwrap_or_else(|| panic!("no target {target}"));
    fuzz::replay(target, check);
}

#[test]
fn ttlv_decode_corpus() {
    replay("ttlv_decode");
}

#[test]
fn ttlv_roundtrip_corpus() {
    replay("ttlv_roundtrip");
}

#[test]
fn frame_header_corpus() {
    replay("frame_header");
}

#[test]
fn every_target_of_the_crate_is_replayed() {
    fuzz::check_targets(env!("CARGO_PKG_NAME"), &TARGETS.map(|(t, _)| t));
}

/// A corpus or regressions folder for a target that does not exist here would never be replayed.
#[test]
fn every_corpus_folder_is_replayed() {
    fuzz::check_every_folder_has_a_target();
}
