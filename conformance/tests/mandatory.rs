//! The ratchet: the mandatory test cases of the core profiles (BL, SKLC, SKFF, AKLC, CS-BC,
//! CS-AC, CS-RNG, OMOS, SASED, TL, AX, MSGENC) of KMIP 1.0 to 2.1, in-process against the real
//! engine. Every file listed in `conformance/passing.txt` must pass; files that pass but are not
//! listed are printed so that someone adds them (see conformance/README.md, "The ratchet").
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::path::Path;

use kmipd_conformance::{InProcess, core_mandatory, run_file, vector_key};
use kmipd_test_support::vectors_dir;

/// The listed files (one path relative to the vectors folder a line; `#` comments).
fn ratchet() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("passing.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn listed_mandatory_test_cases_keep_passing() {
    let dir = vectors_dir();
    let listed = ratchet();
    let mut files: BTreeSet<String> = core_mandatory(&dir)
        .unwrap()
        .iter()
        .map(|p| vector_key(p))
        .collect();
    assert!(
        files.len() > 350,
        "only {} mandatory files found",
        files.len()
    );
    for key in &listed {
        assert!(
            dir.join(key).is_file(),
            "passing.txt lists {key}, which is not under {}",
            dir.display()
        );
    }
    // Listed files outside the core selection run too.
    files.extend(listed.iter().cloned());

    let mut factory = InProcess::factory();
    let mut regressions = Vec::new();
    let mut unlisted = Vec::new();
    let mut passed = 0;
    for key in &files {
        let outcome = run_file(&dir.join(key), &mut factory);
        if outcome.passed {
            passed += 1;
            if !listed.contains(key) {
                unlisted.push(key.clone());
            }
        } else if listed.contains(key) {
            regressions.push(format!(
                "{key}: {}",
                outcome.first_difference.unwrap_or_default()
            ));
        }
    }
    println!("{passed} of {} mandatory test cases pass", files.len());
    if !unlisted.is_empty() {
        println!(
            "{} pass but are not in conformance/passing.txt (add them):",
            unlisted.len()
        );
        for key in &unlisted {
            println!("{key}");
        }
    }
    assert!(
        regressions.is_empty(),
        "{} test cases listed in conformance/passing.txt fail:\n{}",
        regressions.len(),
        regressions.join("\n")
    );
}
