//! Crash test: a child process runs concurrent Creates through the engine over a `SledStore`
//! and prints each Create only after the engine acknowledged it (and a Get returned its key
//! bytes); the parent kills it with SIGKILL at random moments, reopens the store, and finds
//! every acknowledged key again with the same bytes. Repeated over many cycles, bounded in
//! time.
//!
//! The child is this test binary itself, run with `KMIPD_CRASH_CHILD` set and filtered to
//! `crash_child` (which does nothing in an ordinary run), so no separate binary has to be
//! built first.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kmipd_ops::{Engine, EngineConfig, Principal};
use kmipd_proto::enums::{operation as op, result_status as rs};
use kmipd_proto::message::ProtocolVersion;
use kmipd_proto::reader::{self as r, StructReader};
use kmipd_proto::tag;
use kmipd_store::{Kek, KekId, ObjectStore, SledStore};
use kmipd_ttlv::Ttlv;
use zeroize::Zeroizing;

mod common;
use common::{TempDir, create_aes256_v2, key_material};

const CHILD_ENV: &str = "KMIPD_CRASH_CHILD";
const WRITERS: usize = 16;

fn kek() -> Kek {
    Kek::new(KekId(1), &Zeroizing::new([0x33; 32]))
}

fn call(engine: &Engine, operation: u32, payload: Vec<Ttlv>) -> Option<Ttlv> {
    let who = Principal::new("crash");
    let item = common::one(engine, &who, ProtocolVersion::V2_1, operation, payload);
    (item.result_status == rs::SUCCESS).then_some(item.payload?)
}

/// The child: Creates forever from `WRITERS` threads; one line per acknowledged key.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = SledStore::open_with_kek(PathBuf::from(dir), kek()).unwrap();
    let engine = Arc::new(Engine::new(Arc::new(store), EngineConfig::default()));
    let out = Arc::new(Mutex::new(std::io::stdout()));
    {
        // Opened and recovered: from here on a kill lands while writing.
        let mut o = out.lock().unwrap();
        o.write_all(b"READY\n").unwrap();
        o.flush().unwrap();
    }
    let threads: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (engine, out) = (engine.clone(), out.clone());
            std::thread::spawn(move || {
                loop {
                    let created = call(&engine, op::CREATE, create_aes256_v2()).expect("create");
                    let uid = StructReader::any(&created)
                        .unwrap()
                        .req_text(tag::UNIQUE_IDENTIFIER)
                        .unwrap()
                        .to_owned();
                    let got = call(
                        &engine,
                        op::GET,
                        vec![r::text(tag::UNIQUE_IDENTIFIER, &uid)],
                    )
                    .expect("get");
                    let bytes = key_material(&got).expect("key material");
                    // One write per line (atomic on a pipe), flushed before the next Create.
                    let line = format!("ACK {uid} {}\n", hex::encode(bytes));
                    let mut o = out.lock().unwrap();
                    o.write_all(line.as_bytes()).unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    // The writers run until the parent kills the process.
    drop(threads);
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// A small pseudo-random sequence (no extra dependency; the seed is printed).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn verify(dir: &Path, acked: &[(String, Vec<u8>)]) -> usize {
    let store = SledStore::open_with_kek(dir, kek()).unwrap();
    for (uid, bytes) in acked {
        let o = store
            .get(uid)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {uid} lost"));
        assert_eq!(
            key_material(o.object.as_ref().unwrap()).as_deref(),
            Some(bytes.as_slice()),
            "{uid}: key bytes differ"
        );
    }
    store.all().unwrap().len()
}

#[test]
fn every_acknowledged_create_survives_sigkill() {
    let dir = TempDir(std::env::temp_dir().join(format!("kmipd-crash-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let seed = now.as_secs() ^ u64::from(now.subsec_nanos()) << 20;
    eprintln!("crash test seed {seed}");
    let mut rng = Lcg(seed);
    let exe = std::env::current_exe().unwrap();
    let start = Instant::now();
    let mut acked: Vec<(String, Vec<u8>)> = Vec::new();
    let mut cycles = 0;
    let mut killed_mid_stream = 0;
    // Bounded by count and by time; on a loaded machine a cycle (start a debug binary, open
    // and recover the store, write, verify every key so far) can take seconds.
    while cycles < 24 && start.elapsed() < Duration::from_secs(40) {
        cycles += 1;
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir.0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may have written "test crash_child ... " on the same line.
                if line.ends_with("READY") {
                    let _ = ready_tx.send(());
                    continue;
                }
                let mut f = line.split(' ');
                if let (Some("ACK"), Some(uid), Some(h), None) =
                    (f.next(), f.next(), f.next(), f.next())
                    && let Ok(bytes) = hex::decode(h)
                    && bytes.len() == 32
                {
                    lines.push((uid.to_owned(), bytes));
                }
            }
            lines
        });
        // One cycle in four is killed at a random moment of start-up (opening, recovering);
        // the others at a random moment after the store is open, whatever the machine's load.
        if rng.below(4) != 0 {
            let _ = ready_rx.recv_timeout(Duration::from_secs(30));
        }
        std::thread::sleep(Duration::from_millis(20 + rng.below(300)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let new = reader.join().unwrap();
        if !new.is_empty() {
            killed_mid_stream += 1;
        }
        acked.extend(new);
        let stored = verify(&dir.0, &acked);
        assert!(stored >= acked.len());
    }
    eprintln!(
        "{cycles} cycles, {} acknowledged creates, {killed_mid_stream} kills while writing",
        acked.len()
    );
    assert!(cycles >= 3, "only {cycles} cycles");
    assert!(
        killed_mid_stream >= 2,
        "the child hardly ever wrote: {killed_mid_stream}"
    );
}
