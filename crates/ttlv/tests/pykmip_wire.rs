//! Real traffic: the requests and responses PyKMIP 0.11's client wrote and read (KMIP 1.2, 1.4
//! and 2.0) decode, re-encode byte-identically, and agree item by item with PyKMIP's own
//! decoded view of them (the `.txt` files: tag, type and value of every item, in order).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use kmipd_test_support::{files_with_suffix, hex_bytes, vector_path};
use kmipd_ttlv::{Limits, Ttlv, Value, decode, encode_to_vec};

/// One item as PyKMIP printed it: `NAME (0x42XXXX) Type = value`.
#[derive(Debug, PartialEq)]
struct Line {
    tag: u32,
    item_type: String,
    value: Option<String>,
}

fn parse_view(text: &str, section: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut in_section = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("==== ") {
            in_section = rest.starts_with(section);
            continue;
        }
        let Some(open) = line.find("(0x") else {
            continue;
        };
        if !in_section {
            continue;
        }
        let close = open + line[open..].find(')').unwrap();
        let tag = u32::from_str_radix(&line[open + 3..close], 16).unwrap();
        let rest = line[close + 1..].trim();
        let (item_type, value) = match rest.split_once(" = ") {
            Some((t, v)) => (t.to_string(), Some(v.to_string())),
            None => (rest.to_string(), None),
        };
        lines.push(Line {
            tag,
            item_type,
            value,
        });
    }
    lines
}

fn our_view(tree: &Ttlv) -> Vec<Line> {
    let mut lines = Vec::new();
    tree.walk(&mut |item, _| {
        let value = match &item.value {
            Value::Structure(_) => None,
            Value::Integer(v) => Some(v.to_string()),
            Value::DateTime(v) => Some(v.to_string()),
            Value::Enumeration(v) => Some(format!("0x{v:08X}")),
            Value::TextString(s) => Some(format!("'{s}'")),
            Value::ByteString(b) => Some(hex::encode(b.as_slice())),
            other => panic!("type not in the captures: {other:?}"),
        };
        lines.push(Line {
            tag: item.tag.value(),
            item_type: item.item_type().to_string(),
            value,
        });
    });
    lines
}

#[test]
fn pykmip_captures_decode_reencode_and_match_pykmips_view() {
    let dir = vector_path("pykmip-wire");
    let files = files_with_suffix(&dir, ".hex");
    assert_eq!(
        files.len(),
        48,
        "24 request/response pairs expected in {}",
        dir.display()
    );
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let bytes = hex_bytes(&std::fs::read_to_string(&file).unwrap());
        let tree = decode(&bytes, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            encode_to_vec(&tree).unwrap(),
            bytes,
            "{name}: re-encoding differs"
        );

        let stem = name.rsplit_once('.').unwrap().0; // "04_get_1.2.request"
        let (base, section) = stem.rsplit_once('.').unwrap();
        let text = std::fs::read_to_string(dir.join(format!("{base}.txt"))).unwrap();
        let mut theirs = parse_view(&text, section);
        // PyKMIP prints enumerations as "0x00000001 (CREATE)" and some integers (2.0 usage
        // masks) as "0x0000000C (usage mask)": keep the number, in our notation.
        for line in &mut theirs {
            match (line.item_type.as_str(), line.value.as_deref()) {
                ("Enumeration", Some(v)) => line.value = Some(v[..10].to_string()),
                ("Integer", Some(v)) if v.starts_with("0x") => {
                    let n = i64::from_str_radix(&v[2..10], 16).unwrap();
                    line.value = Some(i32::try_from(n).unwrap().to_string());
                }
                _ => {}
            }
        }
        assert!(!theirs.is_empty(), "{name}: no decoded view in {base}.txt");
        assert_eq!(
            our_view(&tree),
            theirs,
            "{name}: differs from PyKMIP's view"
        );
    }
}
