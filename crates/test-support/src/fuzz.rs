//! Replaying the committed fuzz corpora on stable, as part of `cargo test`.
//!
//! Every file in `fuzz/corpus/<target>/` (the inputs libFuzzer found and `cargo fuzz cmin`
//! kept), in `fuzz/seeds/<target>/` (a handful of inputs written from the project's own tests,
//! which cmin never removes) and in `fuzz/regressions/<target>/` (every input that ever made a
//! target fail) goes through the very function the fuzz target calls. A missing or empty corpus
//! is a failure, not a skip: the corpus is part of the test suite. Each crate replays its own
//! targets in its `tests/fuzz_corpus.rs`; [`TARGETS`] says which crate that is, and
//! [`check_targets`] that the crate replays all of them. See docs/fuzzing.md.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// Every fuzz target (as in `fuzz/Cargo.toml` and `scripts/fuzz.sh`) and the package whose
/// `tests/fuzz_corpus.rs` replays its corpus.
pub const TARGETS: [(&str, &str); 6] = [
    ("ttlv_decode", "kmipd-ttlv"),
    ("ttlv_roundtrip", "kmipd-ttlv"),
    ("frame_header", "kmipd-ttlv"),
    ("xml_read", "kmipd-proto"),
    ("json_read", "kmipd-proto"),
    ("engine_handle_bytes", "kmipd-ops"),
];

/// The `fuzz/` directory of the workspace.
pub fn fuzz_dir() -> PathBuf {
    crate::workspace_root().join("fuzz")
}

/// The regular, non-hidden files of `dir`, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Runs every corpus and regression input of `target` through `check` (the function the fuzz
/// target calls); fails naming every input that panics.
pub fn replay(target: &str, check: fn(&[u8])) {
    assert!(
        TARGETS.iter().any(|(t, _)| *t == target),
        "{target} is not in kmipd_test_support::fuzz::TARGETS"
    );
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
    for kind in ["seeds", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        if dir.is_dir() {
            inputs.extend(files(&dir));
        }
    }

    let mut failures = Vec::new();
    for path in &inputs {
        let data =
            std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
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
        "{target}: {corpus_len} corpus inputs and {} seeds and regressions pass",
        inputs.len() - corpus_len
    );
}

/// Asserts that `replayed` (the targets a package's `tests/fuzz_corpus.rs` replays) are
/// exactly the targets [`TARGETS`] gives to `package`.
pub fn check_targets(package: &str, replayed: &[&str]) {
    let mut owned: Vec<&str> = TARGETS
        .iter()
        .filter(|(_, p)| *p == package)
        .map(|(t, _)| *t)
        .collect();
    let mut replayed = replayed.to_vec();
    owned.sort_unstable();
    replayed.sort_unstable();
    assert_eq!(
        replayed, owned,
        "{package} must replay exactly its fuzz targets"
    );
}

/// Asserts that every folder of `fuzz/corpus/`, `fuzz/seeds/` and `fuzz/regressions/` belongs
/// to a target of [`TARGETS`] (a folder of no target would never be replayed).
pub fn check_every_folder_has_a_target() {
    for kind in ["corpus", "seeds", "regressions"] {
        let dir = fuzz_dir().join(kind);
        if !dir.is_dir() {
            continue;
        }
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                assert!(
                    TARGETS.iter().any(|(t, _)| *t == name),
                    "{} belongs to no target replayed by a fuzz_corpus test",
                    path.display()
                );
            }
        }
    }
}
