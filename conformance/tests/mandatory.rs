//! The conformance gate of the README's test command, in-process against the real engine:
//!
//! - every mandatory test case of the core profiles (BL, SKLC, SKFF, AKLC, CS-BC, CS-AC, CS-RNG,
//!   OMOS, SASED, TL, AX, MSGENC) of KMIP 1.0 to 2.1 passes, except the files listed in
//!   `conformance/known-defects.txt`, each with the verified reason why no correct server can
//!   pass it (the list also names Test Cases notes of the scope with such defects); a
//!   listed file that starts passing fails the test too, so the list stays true;
//! - every file listed in `conformance/passing.txt` (Test Cases notes and optional cases that
//!   pass today: ReKey, ReKeyKeyPair, Discover Versions, Query, ...) keeps passing; files outside
//!   the core set that pass but are not listed are printed so that someone adds them;
//! - `docs/conformance.md` is what the runner generates from this very run and
//!   `conformance/wire-differences.txt` (the files whose outcome over the wire differs, checked
//!   by `tests/wire.rs`): it is generated, never written by hand; regenerate it with the command
//!   at its top when this fails.
//!
//! The same gate (core mandatory cases, listed cases and known defects; not the report) also
//! runs over the PostgreSQL store: each file against a fresh engine over a `PgStore` on a
//! schema of its own in a private PostgreSQL cluster (`kmipd_test_support::pg`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kmipd_conformance::report::WireDifference;
use kmipd_conformance::{
    FileOutcome, InProcess, Target, VERSIONS, collect_files, core_mandatory, report, run_file,
    run_files, vector_key,
};
use kmipd_store::{Kek, KekId, PgOptions, PgStore};
use kmipd_test_support::pg::PgCluster;
use kmipd_test_support::vectors_dir;

/// The command at the top of docs/conformance.md.
const REGENERATE: &str = "cargo build -p kmipd && cargo run -p kmipd-conformance -- --spawn \
                          target/debug/kmipd --report docs/conformance.md \
                          --write-wire-differences conformance/wire-differences.txt \
                          ../shared/kmip-vectors";

/// Non-empty, non-comment lines of a file next to this crate's manifest.
fn lines(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// `path<TAB>reason` lines of known-defects.txt.
fn known_defects() -> BTreeMap<String, String> {
    lines("known-defects.txt")
        .into_iter()
        .map(|l| {
            let (path, reason) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("known-defects.txt: no reason for {l}"));
            assert!(
                !reason.trim().is_empty(),
                "known-defects.txt: empty reason for {path}"
            );
            (path.to_owned(), reason.trim().to_owned())
        })
        .collect()
}

/// The files the gate judges: (core mandatory, listed as passing, known defects).
struct Gate {
    core: BTreeSet<String>,
    listed: BTreeSet<String>,
    defects: BTreeMap<String, String>,
}

impl Gate {
    fn load() -> Gate {
        let dir = vectors_dir();
        let defects = known_defects();
        let listed: BTreeSet<String> = lines("passing.txt").into_iter().collect();
        let core: BTreeSet<String> = core_mandatory(&dir)
            .unwrap()
            .iter()
            .map(|p| vector_key(p))
            .collect();
        assert!(
            core.len() > 350,
            "only {} mandatory files found",
            core.len()
        );
        for key in listed.iter().chain(defects.keys()) {
            assert!(
                dir.join(key).is_file(),
                "{key} is listed but is not under {}",
                dir.display()
            );
        }
        Gate {
            core,
            listed,
            defects,
        }
    }

    /// Every file the gate judges.
    fn keys(&self) -> BTreeSet<String> {
        let defect_keys: BTreeSet<String> = self.defects.keys().cloned().collect();
        let all: BTreeSet<String> = self.core.union(&self.listed).cloned().collect();
        all.union(&defect_keys).cloned().collect()
    }

    /// The gate's failures over these outcomes, and how many judged files passed.
    fn judge(&self, by_key: &BTreeMap<String, &FileOutcome>) -> (Vec<String>, usize) {
        let mut failures = Vec::new();
        let mut passed = 0;
        // (defects outside the core and listed sets are run and checked too)
        for key in self.keys() {
            let outcome = by_key
                .get(&key)
                .unwrap_or_else(|| panic!("{key} was not run"));
            let defect = self.defects.get(&key);
            match (outcome.passed, defect) {
                (true, None) => passed += 1,
                (true, Some(_)) => failures.push(format!(
                    "{key} passes now: remove it from conformance/known-defects.txt"
                )),
                (false, Some(_)) => {}
                (false, None) => failures.push(format!(
                    "{key}: {}",
                    outcome.first_difference.clone().unwrap_or_default()
                )),
            }
        }
        (failures, passed)
    }
}

#[test]
fn every_core_mandatory_case_passes_and_listed_cases_keep_passing() {
    let dir = vectors_dir();
    let gate = Gate::load();
    let (core, listed, defects) = (&gate.core, &gate.listed, &gate.defects);
    // Every 1.0-2.1 file runs once: the gate reads the outcomes, the report renders them all.
    let version_dirs: Vec<_> = VERSIONS.iter().map(|v| dir.join(v)).collect();
    let mut factory = InProcess::factory();
    let outcomes: Vec<(std::path::PathBuf, FileOutcome)> = collect_files(&version_dirs)
        .unwrap()
        .into_iter()
        .map(|p| {
            let o = run_file(&p, &mut factory);
            (p, o)
        })
        .collect();
    let by_key: BTreeMap<String, &FileOutcome> =
        outcomes.iter().map(|(p, o)| (vector_key(p), o)).collect();
    let (failures, passed) = gate.judge(&by_key);
    let mut unlisted = Vec::new();
    for (p, o) in &outcomes {
        let key = vector_key(p);
        if o.passed && !core.contains(&key) && !listed.contains(&key) {
            unlisted.push(key);
        }
    }
    let core_passed = core.iter().filter(|k| !defects.contains_key(*k)).count();
    println!(
        "{passed} test cases pass: the {core_passed} core mandatory cases without a known defect \
         and the listed ones; {} known defects",
        defects.len()
    );
    for key in &unlisted {
        println!("passes but is not listed: {key}");
    }
    assert!(
        failures.is_empty(),
        "{} conformance failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The wire columns: these outcomes, except where conformance/wire-differences.txt says the
    // wire run differs (tests/wire.rs checks that list over the wire).
    let differences: Vec<WireDifference> = lines("wire-differences.txt")
        .iter()
        .filter_map(|l| WireDifference::parse(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let wire = report::apply_differences(&outcomes, &differences);
    let generated = report::render(&outcomes, &wire, REGENERATE);
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/conformance.md");
    let current = std::fs::read_to_string(&doc).unwrap_or_default();
    assert!(
        current == generated,
        "docs/conformance.md is out of date: regenerate it with the command at its top"
    );
}

/// The gate over the PostgreSQL store: every file the gate judges, each against a fresh
/// engine over a `PgStore` on an empty schema of its own, with the same verdicts as over the
/// in-memory store.
#[test]
fn the_gate_holds_over_the_postgresql_store() {
    let dir = vectors_dir();
    let gate = Gate::load();
    let cluster = PgCluster::shared();
    let url = cluster.url(&cluster.create_database());
    let schemas = std::sync::atomic::AtomicU32::new(0);
    let factory = || -> Box<dyn Target> {
        let n = schemas.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut opts = PgOptions::new(url.clone());
        opts.schema = Some(format!("case{n}"));
        opts.pool_size = 2;
        let kek = Kek::new(KekId(1), &zeroize::Zeroizing::new([0x5a; 32]));
        let store = PgStore::open_with_kek(&opts, kek).unwrap();
        Box::new(InProcess::with_store(std::sync::Arc::new(store)))
    };
    // Four files at a time: each mostly waits for PostgreSQL (schema creation, WAL flushes).
    let files: Vec<std::path::PathBuf> = gate.keys().iter().map(|k| dir.join(k)).collect();
    let outcomes = run_files(&files, 4, &factory, &mut |_, _| {});
    let by_key: BTreeMap<String, &FileOutcome> =
        outcomes.iter().map(|(p, o)| (vector_key(p), o)).collect();
    let (failures, passed) = gate.judge(&by_key);
    println!(
        "over PostgreSQL: {passed} test cases pass ({} files run, {} known defects)",
        outcomes.len(),
        gate.defects.len()
    );
    assert!(
        failures.is_empty(),
        "{} conformance failures over PostgreSQL:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
