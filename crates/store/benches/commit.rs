//! Durable commits per second with group commit at 1, 16 and 64 concurrent writers (each
//! commit one new object with 32 bytes of key material, on stable storage before `commit`
//! returns: one WAL append and a shared fdatasync, see docs/storage.md), and gets per second
//! (read + checksum + unwrap). Results: docs/performance.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::as_conversions)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kmipd_proto::attributes::Attributes;
use kmipd_proto::tag;
use kmipd_store::{Change, Kek, KekId, ManagedObject, ObjectStore, SledStore};
use kmipd_ttlv::{Ttlv, Value};
use zeroize::Zeroizing;

fn object(n: u64) -> ManagedObject {
    let mut attributes = Attributes::new();
    attributes.set(tag::OBJECT_TYPE, Value::Enumeration(2));
    attributes.set(tag::STATE, Value::Enumeration(1));
    attributes.set(tag::CRYPTOGRAPHIC_ALGORITHM, Value::Enumeration(3));
    attributes.set(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(256));
    attributes.set(tag::CRYPTOGRAPHIC_USAGE_MASK, Value::Integer(12));
    attributes.set(tag::INITIAL_DATE, Value::DateTime(1_700_000_000));
    ManagedObject {
        uid: format!("{n:016x}-bench"),
        object_type: 2,
        owner: "bench".into(),
        object: Some(Ttlv::new(
            tag::SYMMETRIC_KEY,
            Value::Structure(vec![Ttlv::new(
                tag::KEY_BLOCK,
                Value::Structure(vec![Ttlv::new(
                    tag::KEY_MATERIAL,
                    Value::ByteString(Zeroizing::new(n.to_be_bytes().repeat(4))),
                )]),
            )]),
        )),
        attributes,
        sequence: n,
    }
}

fn store(dir: &std::path::Path) -> Arc<SledStore> {
    Arc::new(SledStore::open_with_kek(dir, Kek::new(KekId(1), &Zeroizing::new([1; 32]))).unwrap())
}

fn commits(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let next = Arc::new(AtomicU64::new(1));
    let mut g = c.benchmark_group("durable_commits");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    for writers in [1u64, 16, 64] {
        let per = 16u64;
        g.throughput(Throughput::Elements(writers * per));
        g.bench_function(format!("{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let threads: Vec<_> = (0..writers)
                        .map(|_| {
                            let (s, next) = (s.clone(), next.clone());
                            std::thread::spawn(move || {
                                for _ in 0..per {
                                    let n = next.fetch_add(1, Ordering::Relaxed);
                                    s.commit(vec![Change::Put(object(n))]).unwrap();
                                }
                            })
                        })
                        .collect();
                    for t in threads {
                        t.join().unwrap();
                    }
                }
                start.elapsed()
            })
        });
    }
    g.finish();
    let st = s.sync_stats();
    eprintln!(
        "sync stats: {} commits, {} group syncs ({:.1} commits per sync), {} WAL frames \
         ({:.1} commits per sled transaction), {} checkpoints",
        st.commits,
        st.group_syncs,
        st.commits as f64 / st.group_syncs.max(1) as f64,
        st.wal_frames,
        st.commits as f64 / st.wal_frames.max(1) as f64,
        st.checkpoints
    );
}

fn gets(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let n = 10_000u64;
    for chunk in (1..=n).collect::<Vec<_>>().chunks(500) {
        s.commit(chunk.iter().map(|&i| Change::Put(object(i))).collect())
            .unwrap();
    }
    let mut g = c.benchmark_group("gets");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("get_10k_objects", |b| {
        b.iter(|| {
            i = i % n + 1;
            s.get(&format!("{i:016x}-bench")).unwrap().unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, commits, gets);
criterion_main!(benches);
