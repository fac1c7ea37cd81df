//! Replays the committed fuzz corpora of the XML and JSON readers on stable, as part of
//! `cargo test` (`kmipd_test_support::fuzz`; see docs/fuzzing.md).

use kmipd_test_support::fuzz;

#[test]
fn xml_read_corpus() {
    fuzz::replay("xml_read", kmipd_proto::fuzzing::xml_read);
}

#[test]
fn json_read_corpus() {
    fuzz::replay("json_read", kmipd_proto::fuzzing::json_read);
}

#[test]
fn every_target_of_the_crate_is_replayed() {
    fuzz::check_targets(env!("CARGO_PKG_NAME"), &["xml_read", "json_read"]);
}
