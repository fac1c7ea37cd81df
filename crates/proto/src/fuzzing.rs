//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the stable tests that replay
//! their corpora (`tests/fuzz_corpus.rs`). Each panics when a property fails, which is how a
//! fuzzer learns of it. See docs/fuzzing.md.
#![allow(clippy::panic)]

use crate::{json, xml};

/// Reads arbitrary bytes as a KMIP XML document (no placeholders, no extra names); must never
/// panic, and whatever it accepts must be written and read back to the very same items.
pub fn xml_read(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let options = xml::XmlOptions::default();
    let Ok(doc) = xml::read_document(text, &options, &mut xml::NoPlaceholders) else {
        return;
    };
    let written = match (&doc.wrapper, doc.items.as_slice()) {
        (Some(wrapper), items) => xml::write_document(wrapper, items, &options),
        (None, [item]) => xml::write_item(item, &options),
        (None, items) => panic!("a document without wrapper read as {} items", items.len()),
    };
    match xml::read_document(&written, &options, &mut xml::NoPlaceholders) {
        Ok(again) if again == doc => {}
        Ok(_) => panic!("XML written from an accepted document reads as another:\n{written}"),
        Err(e) => panic!("XML written from an accepted document does not read: {e}\n{written}"),
    }
}

/// Reads arbitrary bytes as the KMIP JSON form of an item (default limits); must never panic,
/// and whatever it accepts must be written (compact and pretty) and read back to the same tree.
pub fn json_read(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(item) = json::from_str(text) else {
        return;
    };
    for written in [json::to_string(&item), json::to_string_pretty(&item)] {
        match json::from_str(&written) {
            Ok(again) if again == item => {}
            Ok(_) => panic!("JSON written from an accepted item reads as another:\n{written}"),
            Err(e) => panic!("JSON written from an accepted item does not read: {e}\n{written}"),
        }
    }
}
