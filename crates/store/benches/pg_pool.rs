//! PgStore throughput by pool size (an ad-hoc run, not criterion: each figure is one timed
//! window): 64 threads create objects (a sequence number, then one commit with an
//! expectation of absence and the Put, as the server's Create does) for a few seconds at pool
//! sizes 8, 16 and 32, then create objects with a Name (a search, then a commit with the
//! search condition), then get them. PostgreSQL is a private cluster on this machine with
//! fsync on (`kmipd_test_support::pg`). Results: docs/storage.md.
//!
//! `cargo bench -p kmipd-store --bench pg_pool` (`PG_BENCH_SECS` sets the window,
//! `PG_BENCH_POOLS` the pool sizes, e.g. `16,32`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::as_conversions,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kmipd_proto::attributes::Attributes;
use kmipd_proto::tag;
use kmipd_store::{
    Change, Filter, Kek, KekId, ManagedObject, ObjectStore, PgOptions, PgStore, Query,
};
use kmipd_test_support::pg::PgCluster;
use kmipd_ttlv::{Ttlv, Value};
use zeroize::Zeroizing;

const THREADS: u64 = 64;

fn object(uid: String, seq: u64) -> ManagedObject {
    let mut attributes = Attributes::new();
    attributes.set(tag::OBJECT_TYPE, Value::Enumeration(2));
    attributes.set(tag::STATE, Value::Enumeration(1));
    attributes.set(tag::CRYPTOGRAPHIC_ALGORITHM, Value::Enumeration(3));
    attributes.set(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(256));
    attributes.set(tag::INITIAL_DATE, Value::DateTime(1_700_000_000));
    ManagedObject {
        uid,
        object_type: 2,
        owner: "bench".into(),
        object: Some(Ttlv::new(
            tag::SYMMETRIC_KEY,
            Value::Structure(vec![Ttlv::new(
                tag::KEY_MATERIAL,
                Value::ByteString(Zeroizing::new(seq.to_be_bytes().repeat(4))),
            )]),
        )),
        attributes,
        sequence: seq,
    }
}

/// Runs `op(thread, i)` from THREADS threads for `secs`; operations per second.
fn window(secs: u64, op: impl Fn(u64, u64) + Send + Sync + 'static) -> f64 {
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (op, stop, done) = (op.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    op(t, i);
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let secs: u64 = std::env::var("PG_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let cluster = PgCluster::start();
    println!("PgStore, {THREADS} threads, {secs} s windows, fsync on");
    let pools: Vec<usize> = std::env::var("PG_BENCH_POOLS")
        .ok()
        .map(|s| s.split(',').filter_map(|p| p.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![8, 16, 32]);
    for pool in pools {
        let mut opts = PgOptions::new(cluster.url("postgres"));
        opts.schema = Some(format!("bench{pool}"));
        opts.pool_size = pool;
        let kek = Kek::new(KekId(1), &Zeroizing::new([7; 32]));
        let s = Arc::new(PgStore::open_with_kek(&opts, kek).unwrap());
        // Objects created by each thread (uids `{thread}-{0..n}`), for the gets.
        let created: Arc<Vec<AtomicU64>> =
            Arc::new((0..THREADS).map(|_| AtomicU64::new(0)).collect());
        let (s2, c2) = (s.clone(), created.clone());
        let creates = window(secs, move |t, i| {
            let seq = s2.next_sequence().unwrap();
            let uid = format!("{t:03}-{i:08}");
            s2.commit(vec![
                Change::Expect {
                    uid: uid.clone(),
                    revision: None,
                },
                Change::Put(object(uid, seq)),
            ])
            .unwrap();
            c2[t as usize].store(i + 1, Ordering::Relaxed);
        });
        // Creates with a Name, as a 2.x Create with a Name: a search for the Name, then the
        // commit with the search condition (per-Name locks, see postgres/commit.rs).
        let s4 = s.clone();
        let named = window(secs, move |t, i| {
            let seq = s4.next_sequence().unwrap();
            let uid = format!("named-{t:03}-{i:08}");
            let name = format!("name-{t:03}-{i:08}");
            let q = Query::new(vec![Filter::Name(name.clone())]);
            let seen: Vec<String> = s4.find(&q).unwrap().into_iter().map(|o| o.uid).collect();
            let mut o = object(uid.clone(), seq);
            o.attributes.set(
                tag::NAME,
                Value::Structure(vec![Ttlv::new(tag::NAME_VALUE, Value::TextString(name))]),
            );
            s4.commit(vec![
                Change::ExpectNoOther { query: q, seen },
                Change::Expect {
                    uid,
                    revision: None,
                },
                Change::Put(o),
            ])
            .unwrap();
        });
        let s3 = s.clone();
        let gets = window(secs, move |t, i| {
            let n = created[t as usize].load(Ordering::Relaxed).max(1);
            let uid = format!("{t:03}-{:08}", i % n);
            assert!(s3.get(&uid).unwrap().is_some(), "{uid}");
        });
        println!(
            "pool {pool:>2}: creates {creates:>7.0}/s   named creates {named:>7.0}/s   gets {gets:>7.0}/s"
        );
    }
}
