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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kmipd_ops::{Engine, EngineConfig, Principal};
use kmipd_proto::build;
use kmipd_proto::enums::{operation as op, result_status as rs};
use kmipd_proto::message::ProtocolVersion;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_store::{Kek, KekId, ObjectStore, SledStore};
use kmipd_test_support::crash::{Acks, Kill, Lcg, run_child_and_kill};
use kmipd_ttlv::Ttlv;
use zeroize::Zeroizing;

use engine::{TempDir, create_aes256_v2, key_material};
use kmipd_test_support::engine;

const CHILD_ENV: &str = "KMIPD_CRASH_CHILD";
const WRITERS: usize = 16;

fn kek() -> Kek {
    Kek::new(KekId(1), &Zeroizing::new([0x33; 32]))
}

fn call(engine: &Engine, operation: u32, payload: Vec<Ttlv>) -> Option<Ttlv> {
    let who = Principal::new("crash");
    let item = engine::one(engine, &who, ProtocolVersion::V2_1, operation, payload);
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
    let acks = Arc::new(Acks::default());
    acks.ready();
    let threads: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (engine, acks) = (engine.clone(), acks.clone());
            std::thread::spawn(move || {
                loop {
                    let created = call(&engine, op::CREATE, create_aes256_v2()).expect("create");
                    let uid = StructReader::any(&created)
                        .unwrap()
                        .req_text(tag::UNIQUE_IDENTIFIER)
                        .unwrap()
                        .to_owned();
                    let got =
                        call(&engine, op::GET, vec![build::unique_identifier(&uid)]).expect("get");
                    let bytes = key_material(&got).expect("key material");
                    acks.ack(&format!("{uid} {}", hex::encode(bytes)));
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
    let start = Instant::now();
    let mut acked: Vec<(String, Vec<u8>)> = Vec::new();
    let mut cycles = 0;
    let mut killed_mid_stream = 0;
    // Bounded by count and by time; on a loaded machine a cycle (start a debug binary, open
    // and recover the store, write, verify every key so far) can take seconds.
    while cycles < 24 && start.elapsed() < Duration::from_secs(40) {
        cycles += 1;
        // One cycle in four is killed at a random moment of start-up (opening, recovering);
        // the others at a random moment after the store is open, whatever the machine's load.
        let kill = Kill {
            after_ready: rng.below(4) != 0,
            delay: Duration::from_millis(20 + rng.below(300)),
        };
        let new: Vec<(String, Vec<u8>)> =
            run_child_and_kill("crash_child", CHILD_ENV, &dir.0, kill)
                .iter()
                .filter_map(|line| {
                    let mut f = line.split(' ');
                    match (f.next(), f.next(), f.next()) {
                        (Some(uid), Some(h), None) => {
                            let bytes = hex::decode(h).ok().filter(|b| b.len() == 32)?;
                            Some((uid.to_owned(), bytes))
                        }
                        _ => None,
                    }
                })
                .collect();
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
