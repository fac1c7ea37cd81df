//! The wire gate of the README's test command: the core mandatory test cases (the set of
//! `tests/mandatory.rs`, about 380 files) replayed over mutual TLS, each against a fresh kmipd
//! process (`kmipd init` with its SoftHSM2 token and sled store in a temporary folder, then
//! `kmipd serve` on a loopback port), as the instance's `client` identity:
//!
//! - every core mandatory file has the same outcome over the wire as in-process (so every one
//!   that passes in-process passes over the wire; the known defects fail in both);
//! - every file of `conformance/wire-differences.txt` (whose wire outcome differs from the
//!   in-process one, from which `docs/conformance.md` renders its wire columns) still differs
//!   exactly as listed, and no core mandatory file is listed.
//!
//! The same core mandatory files also run over the wire against one `kmipd serve` whose store
//! is PostgreSQL (`[store] backend = "postgres"`, a database of the test binary's private
//! cluster, `kmipd_test_support::pg`), with the same outcome as in-process: one server for all
//! of them, one file at a time, its tables emptied (`TRUNCATE kmipd_objects, kmipd_terms`)
//! before each file so that every file meets an empty server as with a fresh one (a node keeps
//! no object state in memory; its KEK and schema stay).
//!
//! The kmipd binary is built by this test (`cargo build -p kmipd`, a no-op when it is current)
//! in the test's own target folder and profile, or taken from `$KMIPD_BIN`. Four files run at a
//! time (a spawned server mostly waits: init, SoftHSM2, fsync); every wait is bounded by the
//! runner (start-up, connect, each read).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kmipd_conformance::report::WireDifference;
use kmipd_conformance::wire::{
    SpawnOptions, SpawnedServer, Unavailable, WireTarget, spawn_factory,
};
use kmipd_conformance::{FileOutcome, InProcess, Target, core_mandatory, run_files, vector_key};
use kmipd_test_support::pg::PgCluster;
use kmipd_test_support::vectors_dir;

/// Files in flight at once.
const JOBS: usize = 4;

/// The kmipd binary: `$KMIPD_BIN`, or built here with cargo into this test's target folder.
fn kmipd_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("KMIPD_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "KMIPD_BIN={} is not a file", bin.display());
        return bin;
    }
    // target/<profile>/deps/wire-<hash>: the binary goes to target/<profile>/kmipd.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
    let target_dir = profile_dir.parent().unwrap();
    let profile = profile_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut build = std::process::Command::new(env!("CARGO"));
    build
        .args(["build", "--quiet", "-p", "kmipd", "--bin", "kmipd"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile.as_str() {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    let status = build.status().unwrap();
    assert!(
        status.success(),
        "cargo build -p kmipd failed ({status}); or set KMIPD_BIN to a kmipd binary"
    );
    let bin = profile_dir.join("kmipd");
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

/// The parsed lines of conformance/wire-differences.txt.
fn listed_differences() -> Vec<WireDifference> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("wire-differences.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|l| WireDifference::parse(l).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

#[test]
fn core_mandatory_cases_have_the_same_outcome_over_the_wire() {
    let dir = vectors_dir();
    let kmipd = kmipd_binary();
    let differences = listed_differences();
    let core = core_mandatory(&dir).unwrap();
    assert!(
        core.len() > 350,
        "only {} mandatory files found",
        core.len()
    );
    let core_keys: Vec<String> = core.iter().map(|p| vector_key(p)).collect();
    for d in &differences {
        assert!(
            !core_keys.contains(&d.key),
            "{} is a core mandatory case: it must have the same outcome over the wire as \
             in-process, it cannot be listed in wire-differences.txt",
            d.key
        );
        assert!(
            dir.join(&d.key).is_file(),
            "{} is listed but missing",
            d.key
        );
    }
    let mut files = core.clone();
    files.extend(differences.iter().map(|d| dir.join(&d.key)));

    let local_factory = || -> Box<dyn Target> { Box::new(InProcess::new()) };
    let local = run_files(&files, 1, &local_factory, &mut |_, _| {});
    let started = Instant::now();
    let wire_factory = spawn_factory(kmipd, SpawnOptions::default());
    let wire = run_files(&files, JOBS, &wire_factory, &mut |_, _| {});
    let elapsed = started.elapsed();

    let local: BTreeMap<String, FileOutcome> = local
        .into_iter()
        .map(|(p, o)| (vector_key(&p), o))
        .collect();
    let mut mismatches = Vec::new();
    let mut passed = 0;
    for (path, w) in &wire {
        let key = vector_key(path);
        let l = &local[&key];
        passed += usize::from(w.passed);
        if core_keys.contains(&key) {
            if l.passed != w.passed {
                mismatches.push(format!(
                    "{key}: in-process {}, over the wire {}: {}",
                    if l.passed { "passes" } else { "fails" },
                    if w.passed { "passes" } else { "fails" },
                    w.first_difference
                        .clone()
                        .or_else(|| l.first_difference.clone())
                        .unwrap_or_default()
                ));
            }
        } else {
            let listed = differences.iter().find(|d| d.key == key).unwrap();
            let actual = WireDifference::of(key.clone(), w);
            if &actual != listed {
                mismatches.push(format!(
                    "{key}: wire-differences.txt says `{}`, the wire run gives `{}` \
                     (regenerate it with the command at the top of docs/conformance.md)",
                    listed.line(),
                    actual.line()
                ));
            }
        }
    }
    println!(
        "{} files over the wire ({} core mandatory, {} listed differences) in {:.0?} with {JOBS} \
         at a time: {passed} passed",
        wire.len(),
        core.len(),
        differences.len(),
        elapsed
    );
    assert!(
        mismatches.is_empty(),
        "{} wire mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn core_mandatory_cases_have_the_same_outcome_over_the_wire_on_postgresql() {
    let dir = vectors_dir();
    let kmipd = kmipd_binary();
    let core = core_mandatory(&dir).unwrap();
    assert!(
        core.len() > 350,
        "only {} mandatory files found",
        core.len()
    );
    let cluster = PgCluster::shared();
    let db = cluster.create_database();
    let options = SpawnOptions {
        postgres_url: Some(cluster.url(&db)),
        ..SpawnOptions::default()
    };
    let server = SpawnedServer::start(&kmipd, &options).unwrap();
    let endpoint = server.endpoint("client").unwrap();
    // The server made the tables at start-up (its migrations): they exist to be emptied.
    let emptied = std::sync::atomic::AtomicUsize::new(0);
    let factory = || -> Box<dyn Target> {
        cluster.psql(&db, "TRUNCATE kmipd_objects, kmipd_terms");
        emptied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match WireTarget::new(endpoint.clone()) {
            Ok(t) => Box::new(t),
            Err(e) => Box::new(Unavailable(e)),
        }
    };
    let started = Instant::now();
    let wire = run_files(&core, 1, &factory, &mut |_, _| {});
    let elapsed = started.elapsed();
    assert_eq!(
        emptied.load(std::sync::atomic::Ordering::Relaxed),
        core.len(),
        "one target per file, each on an emptied database"
    );
    let local_factory = || -> Box<dyn Target> { Box::new(InProcess::new()) };
    let local = run_files(&core, 1, &local_factory, &mut |_, _| {});
    let mut mismatches = Vec::new();
    let mut passed = 0;
    for ((path, w), (_, l)) in wire.iter().zip(&local) {
        passed += usize::from(w.passed);
        if w.passed != l.passed {
            mismatches.push(format!(
                "{}: in-process {}, over the wire on PostgreSQL {}: {}",
                vector_key(path),
                if l.passed { "passes" } else { "fails" },
                if w.passed { "passes" } else { "fails" },
                w.first_difference
                    .clone()
                    .or_else(|| l.first_difference.clone())
                    .unwrap_or_default()
            ));
        }
    }
    // Every commit that wrote left its token (kept minutes): the server's writes went to
    // this database.
    let commits: usize = cluster
        .psql(&db, "SELECT count(*) FROM kmipd_commit_tokens")
        .trim()
        .parse()
        .unwrap();
    println!(
        "{} core mandatory files over the wire on one PostgreSQL-backed kmipd in {elapsed:.0?}: \
         {passed} passed ({commits} commits recorded in the database)",
        wire.len()
    );
    assert!(commits > 0, "the server committed nothing to PostgreSQL");
    drop(server);
    assert!(
        mismatches.is_empty(),
        "{} mismatches over the wire on PostgreSQL:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// The message encoding profiles' mandatory cases (MSGENC-HTTPS, MSGENC-XML, MSGENC-JSON of
/// 1.0 to 2.1) over kmipd's KMIP over HTTPS listener, each file in the encoding it is about,
/// against one spawned kmipd (the cases only Query, so they can share it): every one passes.
#[test]
fn message_encoding_cases_pass_over_https() {
    use kmipd_conformance::https::{Encoding, server_factory};

    let dir = vectors_dir();
    let files: Vec<PathBuf> = core_mandatory(&dir)
        .unwrap()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("MSGENC-"))
        })
        .collect();
    let count = |e: Encoding| files.iter().filter(|f| Encoding::for_file(f) == e).count();
    // Six versions each (1.0-1.4, 2.1; 2.0 has none).
    assert_eq!(
        [
            count(Encoding::Ttlv),
            count(Encoding::Xml),
            count(Encoding::Json)
        ],
        [6, 6, 6],
        "{files:?}"
    );
    let options = SpawnOptions {
        hsm: false,
        https: true,
        ..SpawnOptions::default()
    };
    let server = SpawnedServer::start(&kmipd_binary(), &options).unwrap();
    let endpoint = server.https_endpoint("client").unwrap();
    let mut failures = Vec::new();
    for encoding in [Encoding::Ttlv, Encoding::Xml, Encoding::Json] {
        let group: Vec<PathBuf> = files
            .iter()
            .filter(|f| Encoding::for_file(f) == encoding)
            .cloned()
            .collect();
        let factory = server_factory(endpoint.clone(), encoding);
        for (path, outcome) in run_files(&group, JOBS, &factory, &mut |_, _| {}) {
            if !outcome.passed {
                failures.push(format!(
                    "{} ({encoding:?}): {}",
                    vector_key(&path),
                    outcome.first_difference.unwrap_or_default()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
