//! Replays the committed fuzz corpus of `Engine::handle_bytes` on stable, as part of
//! `cargo test` (`kmipd_test_support::fuzz`; see docs/fuzzing.md).

use kmipd_test_support::fuzz;

#[test]
fn engine_handle_bytes_corpus() {
    fuzz::replay("engine_handle_bytes", kmipd_ops::fuzzing::handle_bytes);
}

#[test]
fn every_target_of_the_crate_is_replayed() {
    fuzz::check_targets(env!("CARGO_PKG_NAME"), &["engine_handle_bytes"]);
}
