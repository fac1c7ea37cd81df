//! The JSON encoding against real messages: every PyKMIP wire capture and every golden TTLV of
//! the KMIP Additional Message Encodings document goes TTLV -> JSON text -> TTLV unchanged, and
//! the TTLV re-encoded from the JSON is byte-identical to the original bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use kmipd_proto::json;
use kmipd_test_support::{files_with_suffix, hex_bytes, vector_path};
use kmipd_ttlv::{Limits, decode, encode_to_vec};

/// TTLV bytes -> tree -> JSON text -> tree -> bytes; returns the JSON text.
fn round_trip(label: &str, bytes: &[u8]) -> String {
    let tree = decode(bytes, &Limits::unbounded())
        .unwrap_or_else(|e| panic!("{label}: capture does not decode: {e}"));
    let text = json::to_string(&tree);
    let back = json::from_str(&text).unwrap_or_else(|e| panic!("{label}: {e}\n{text}"));
    assert_eq!(back, tree, "{label}: JSON changed the tree\n{text}");
    let pretty = json::from_str(&json::to_string_pretty(&tree)).unwrap();
    assert_eq!(pretty, tree, "{label}: pretty JSON changed the tree");
    assert_eq!(
        encode_to_vec(&back).unwrap(),
        bytes,
        "{label}: TTLV from JSON differs from the original bytes"
    );
    text
}

#[test]
fn pykmip_captures_round_trip() {
    let files = files_with_suffix(&vector_path("pykmip-wire"), ".hex");
    assert!(
        files.len() >= 48,
        "expected 24 request/response pairs, found {}",
        files.len()
    );
    for path in &files {
        let bytes = hex_bytes(&std::fs::read_to_string(path).unwrap());
        round_trip(&path.display().to_string(), &bytes);
    }
}

#[test]
fn golden_pairs_round_trip() {
    let path = vector_path("ttlv/msgenc-v1.0-xml-ttlv-pairs.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let pairs = doc["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 36);
    for pair in pairs {
        let label = format!("{} #{}", pair["label"], pair["index"]);
        let bytes = hex_bytes(pair["ttlv_hex"].as_str().unwrap());
        let text = round_trip(&label, &bytes);
        // The names of the spec's XML are the names of its JSON: every element name of the XML
        // form appears as a tag of the JSON form.
        let xml = pair["xml"].as_str().unwrap();
        for name in xml
            .split('<')
            .skip(1)
            .filter(|s| !s.starts_with('/') && !s.starts_with('!') && !s.starts_with('?'))
            .filter_map(|s| {
                s.split(|c: char| c.is_whitespace() || c == '>' || c == '/')
                    .next()
            })
        {
            assert!(
                text.contains(&format!("\"tag\":\"{name}\"")),
                "{label}: tag {name} missing from {text}"
            );
        }
    }
}
