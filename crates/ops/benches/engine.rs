//! The engine's throughput: Creates (AES-256) per second at 1, 16 and 64 concurrent writer
//! threads, durable over a `SledStore` (temporary directory, random KEK; every Create is on
//! stable storage before its response exists), and Gets per second; plus Create and Get over
//! `MemoryStore` (the engine's own cost without persistence). Requests go in and responses come
//! out as TTLV bytes (`Engine::handle_bytes`), as the server hands them over. Results:
//! docs/performance.md ("Engine").
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::as_conversions,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kmipd_ops::{Engine, EngineConfig, Principal};
use kmipd_proto::build;
use kmipd_proto::enums::{cryptographic_algorithm as alg, operation as op, result_status as rs};
use kmipd_proto::message::{ProtocolVersion, RequestBatchItem, RequestMessage, ResponseMessage};
use kmipd_proto::tag;
use kmipd_store::{Kek, KekId, MemoryStore, ObjectStore, SledStore};
use kmipd_ttlv::{Limits, Value};
use zeroize::Zeroizing;

fn request(operation: u32, payload: Vec<kmipd_ttlv::Ttlv>) -> Vec<u8> {
    let msg = RequestMessage::new(
        ProtocolVersion::V2_1,
        vec![RequestBatchItem::new(operation, payload)],
    );
    kmipd_ttlv::encode_to_vec(&msg.to_ttlv()).unwrap()
}

fn create_request() -> Vec<u8> {
    request(
        op::CREATE,
        build::create_symmetric_key_v2(alg::AES, 256, 12),
    )
}

fn get_request(uid: &str) -> Vec<u8> {
    request(op::GET, vec![build::unique_identifier(uid)])
}

/// The response's first item succeeded; its Unique Identifier.
fn succeeded(response: &[u8]) -> String {
    let tree = kmipd_ttlv::decode(response, &Limits::default()).unwrap();
    let item = ResponseMessage::from_ttlv(&tree)
        .unwrap()
        .items
        .into_iter()
        .next()
        .unwrap();
    assert_eq!(item.result_status, rs::SUCCESS, "{:?}", item.result_message);
    let mut uid = String::new();
    item.payload.unwrap().walk(&mut |i, _| {
        if i.tag == tag::UNIQUE_IDENTIFIER
            && let Value::TextString(s) = &i.value
        {
            uid = s.clone();
        }
    });
    uid
}

fn sled_engine(dir: &std::path::Path) -> Engine {
    let mut key = Zeroizing::new([0u8; 32]);
    openssl::rand::rand_bytes(key.as_mut_slice()).unwrap();
    let store = SledStore::open_with_kek(dir, Kek::new(KekId(1), &key)).unwrap();
    Engine::new(Arc::new(store), EngineConfig::default())
}

fn memory_engine() -> Engine {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    Engine::new(store, EngineConfig::default())
}

/// `writers` threads each doing `per` Creates; the time until all are done.
fn create_round(engine: &Engine, writers: u64, per: u64, req: &[u8]) -> Duration {
    let who = Principal::new("bench");
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..writers {
            s.spawn(|| {
                for _ in 0..per {
                    succeeded(&engine.handle_bytes(&who, req));
                }
            });
        }
    });
    start.elapsed()
}

fn creates(c: &mut Criterion, name: &str, engine: &Engine, writer_counts: &[u64]) {
    let req = create_request();
    let per = 16u64;
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    for &writers in writer_counts {
        g.throughput(Throughput::Elements(writers * per));
        g.bench_function(format!("{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| create_round(engine, writers, per, &req))
                    .sum()
            })
        });
    }
    g.finish();
}

/// Gets of 10,000 objects that were each served once already (a repeat Get only reads), and,
/// with `first`, the first Get of a fresh object: KMIP 2.1 clears its Fresh attribute, which
/// is a write (durable over sled).
fn gets(c: &mut Criterion, name: &str, engine: &Engine, first: bool) {
    let who = Principal::new("bench");
    let create = create_request();
    let reqs: Vec<Vec<u8>> = (0..10_000)
        .map(|_| get_request(&succeeded(&engine.handle_bytes(&who, &create))))
        .collect();
    for req in &reqs {
        succeeded(&engine.handle_bytes(&who, req));
    }
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("repeat_get_of_10k", |b| {
        b.iter(|| {
            i = (i + 1) % reqs.len();
            engine.handle_bytes(&who, &reqs[i])
        })
    });
    if first {
        g.sample_size(10);
        g.bench_function("first_get", |b| {
            b.iter_batched(
                || get_request(&succeeded(&engine.handle_bytes(&who, &create))),
                |req| engine.handle_bytes(&who, &req),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn durable(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let engine = sled_engine(dir.path());
    creates(c, "engine_sled_create", &engine, &[1, 16, 64]);
    let dir = tempfile::tempdir().unwrap();
    let engine = sled_engine(dir.path());
    gets(c, "engine_sled_get", &engine, true);
}

fn memory(c: &mut Criterion) {
    let engine = memory_engine();
    creates(c, "engine_memory_create", &engine, &[1, 16]);
    let engine = memory_engine();
    gets(c, "engine_memory_get", &engine, false);
}

criterion_group!(benches, durable, memory);
criterion_main!(benches);
