#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Replays the committed fuzz corpora on stable, as part of `cargo test`.
//!
//! Every file in `fuzz/corpus/<target>/` (inputs libFuzzer found and `cargo fuzz cmin` kept) and
//! in `fuzz/regressions/<target>/` (every input that ever made a target fail) goes through the
//! very function the fuzz target calls. A missing or empty corpus is a failure, not a skip: the
//! corpus is part of the test suite. See docs/fuzzing.md.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// What a fuzz target calls on each input; panics when a property fails.
type Check = fn(&[u8]);

/// The fuzz targets and the function each one calls.
const TARGETS: [(&str, Check); 3] = [
    ("ttlv_decode", kmipd_ttlv::fuzzing::decode_bytes),
    ("ttlv_roundtrip", kmipd_ttlv::fuzzing::round_trip),
    ("frame_header", kmipd_ttlv::fuzzing::frame_header),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The regular, non-hidden files of `dir`, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let check = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, f)| *f)
        .unwrap();
    let corpus = fuzz_dir().join("corpus").join(target);
    assert!(
        corpus.is_dir(),
        "fuzz corpus {} is missing: run scripts/fuzz.sh and commit fuzz/corpus/{target}/",
        corpus.display()
    );
    let mut inputs = files(&corpus);
    assert!(
        !inputs.is_empty(),
        "fuzz corpus {} is empty: run scripts/fuzz.sh and commit it",
        corpus.display()
    );
    let corpus_len = inputs.len();
    let regressions = fuzz_dir().join("regressions").join(target);
    if regressions.is_dir() {
        inputs.extend(files(&regressions));
    }

    let mut failures = Vec::new();
    for path in &inputs {
        let data = std::fs::read(path).unwrap();
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failures.push(path.display().to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} inputs fail:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
    println!(
        "{target}: {corpus_len} corpus inputs and {} regressions pass",
        inputs.len() - corpus_len
    );
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

/// A corpus or regressions folder for a target that does not exist here would never be replayed.
#[test]
fn every_corpus_folder_is_replayed() {
    for kind in ["corpus", "regressions"] {
        let dir = fuzz_dir().join(kind);
        if !dir.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    TARGETS.iter().any(|(t, _)| *t == name),
                    "{} belongs to no target replayed by this test",
                    path.display()
                );
            }
        }
    }
}
