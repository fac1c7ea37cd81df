//! Crash test of the store's write-ahead log: a child process (this test binary, re-run with
//! `KMIPD_WAL_CRASH_CHILD` set and filtered to `wal_crash_child`) commits objects from several
//! threads and prints each uid only after `commit` returned; the parent SIGKILLs it at random
//! moments (also during open and recovery), reopens the store and finds every acknowledged
//! object with the same bytes. The same approach as `crates/ops/tests/crash.rs`, without the
//! engine, so commits are faster and a kill lands between WAL append, fdatasync and checkpoint.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kmipd_proto::attributes::Attributes;
use kmipd_proto::tag;
use kmipd_store::{Change, Kek, KekId, ManagedObject, ObjectStore, SledStore};
use kmipd_test_support::crash::{Acks, Kill, Lcg, run_child_and_kill};
use kmipd_ttlv::{Ttlv, Value};
use zeroize::Zeroizing;

const CHILD_ENV: &str = "KMIPD_WAL_CRASH_CHILD";
const WRITERS: u64 = 8;

fn kek() -> Kek {
    Kek::new(KekId(1), &Zeroizing::new([0x21; 32]))
}

fn material(uid: &str) -> Vec<u8> {
    format!("{uid}-material-0123456789").into_bytes()
}

fn object(uid: &str, seq: u64) -> ManagedObject {
    let mut attributes = Attributes::new();
    attributes.set(tag::OBJECT_TYPE, Value::Enumeration(2));
    attributes.set(tag::STATE, Value::Enumeration(1));
    ManagedObject {
        uid: uid.into(),
        object_type: 2,
        owner: "crash".into(),
        object: Some(Ttlv::new(
            tag::SYMMETRIC_KEY,
            Value::Structure(vec![Ttlv::new(
                tag::KEY_MATERIAL,
                Value::ByteString(Zeroizing::new(material(uid))),
            )]),
        )),
        attributes,
        sequence: seq,
    }
}

fn stored_material(o: &ManagedObject) -> Option<Vec<u8>> {
    match &o.object.as_ref()?.value {
        Value::Structure(items) => items.iter().find_map(|t| match &t.value {
            Value::ByteString(b) => Some(b.to_vec()),
            _ => None,
        }),
        _ => None,
    }
}

/// The child: commits forever; one line per acknowledged object. Every commit puts a new
/// object and replaces the previous one of the same thread (two changes, one transaction).
#[test]
fn wal_crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = Arc::new(SledStore::open_with_kek(PathBuf::from(dir), kek()).unwrap());
    let acks = Arc::new(Acks::default());
    acks.ready();
    let pid = std::process::id();
    let counter = Arc::new(AtomicU64::new(0));
    for t in 0..WRITERS {
        let (store, acks, counter) = (store.clone(), acks.clone(), counter.clone());
        std::thread::spawn(move || {
            loop {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let uid = format!("p{pid}-t{t}-{n}");
                let seq = store.next_sequence().unwrap();
                store
                    .commit(vec![
                        Change::Put(object(&uid, seq)),
                        Change::Put(object(&format!("p{pid}-t{t}-last"), seq)),
                    ])
                    .unwrap();
                acks.ack(&uid);
            }
        });
    }
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn verify(dir: &Path, acked: &[String]) -> (u64, u64) {
    let store = SledStore::open_with_kek(dir, kek()).unwrap();
    for uid in acked {
        let o = store
            .get(uid)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {uid} lost"));
        assert_eq!(stored_material(&o), Some(material(uid)), "{uid}");
    }
    let all = store.all().unwrap();
    assert!(all.len() >= acked.len());
    // Creation order and the sequence counter survive too.
    assert!(all.windows(2).all(|w| w[0].sequence <= w[1].sequence));
    let max = all.iter().map(|o| o.sequence).max().unwrap_or(0);
    assert!(store.next_sequence().unwrap() > max);
    let st = store.sync_stats();
    (st.replayed_frames, st.skipped_frames)
}

#[test]
fn every_acknowledged_commit_survives_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let start = Instant::now();
    let mut acked: Vec<String> = Vec::new();
    let (mut cycles, mut mid_stream, mut from_wal) = (0u64, 0u64, 0u64);
    let mut rng = Lcg(u64::from(std::process::id()));
    while cycles < 16 && start.elapsed() < Duration::from_secs(30) {
        cycles += 1;
        // One kill in four lands during open and recovery; the others while committing,
        // before or after the background checkpoint (every second).
        let kill = Kill {
            after_ready: rng.below(4) != 0,
            delay: Duration::from_millis(20 + rng.below(1500)),
        };
        let new = run_child_and_kill("wal_crash_child", CHILD_ENV, &dir, kill);
        if !new.is_empty() {
            mid_stream += 1;
        }
        acked.extend(new);
        let (replayed, skipped) = verify(&dir, &acked);
        from_wal += replayed + skipped;
    }
    eprintln!(
        "{cycles} cycles, {} acknowledged commits, {mid_stream} kills while writing, \
         {from_wal} WAL frames found at reopen",
        acked.len()
    );
    assert!(cycles >= 3, "only {cycles} cycles");
    assert!(mid_stream >= 2, "the child hardly ever wrote: {mid_stream}");
    assert!(from_wal > 0, "no kill left anything in the WAL");
}
