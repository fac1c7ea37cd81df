//! Model test: random sequences of commits (puts and deletes), gets, finds, listings and
//! reopenings run against `MemoryStore` (the model) and `SledStore`; every answer must be equal.
//! A reopen is either clean (the store is dropped: checkpoint) or a crash: the new store opens
//! a crash image made of sled's files as of the last checkpoint plus the WAL as it is now, so
//! every commit since that checkpoint comes back through WAL replay.
//!
//! The same operations run against `PgStore` on a private PostgreSQL cluster
//! (`kmipd_test_support::pg`), a fresh schema per case; there a reopen and a "crash" both
//! open a new store on the same schema (PostgreSQL's own crash recovery is not ours to test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use kmipd_proto::attributes::{AttrName, Attributes};
use kmipd_proto::tag;
use kmipd_store::{
    Change, Filter, Kek, KekId, ManagedObject, MemoryStore, ObjectStore, PgOptions, PgStore, Query,
    SledStore, StoreError,
};
use kmipd_test_support::copy_dir;
use kmipd_ttlv::{Ttlv, Value};
use proptest::prelude::*;
use std::path::Path;
use zeroize::Zeroizing;

const UIDS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

fn custom() -> AttrName {
    AttrName::Custom {
        vendor: None,
        name: "x-app".into(),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Commit(Vec<Change>),
    /// A commit with a search condition: the changes, the query's filters, what it "saw".
    Guarded(Vec<Change>, Vec<Filter>, Vec<String>),
    Get(usize),
    Find(Vec<Filter>),
    All,
    Reopen,
    Crash,
}

fn object() -> impl Strategy<Value = ManagedObject> {
    (
        0..UIDS.len(),
        0u64..30,
        prop::sample::select(vec!["alice", "bob"]),
        prop::option::of(prop::sample::select(vec!["n1", "n2", "n3"])),
        1u32..4,
        prop::option::of(prop::sample::select(vec!["p", "q"])),
        0i64..10,
        prop::option::of(prop::collection::vec(any::<u8>(), 1..40)),
        // Rotate Automatic (true or false), Initial Date and Rotate Interval.
        prop::option::of((any::<bool>(), 0i64..10, 1u32..5)),
    )
        .prop_map(|(u, seq, owner, name, st, app, date, material, rotate)| {
            let mut a = Attributes::new();
            if let Some((automatic, initial, interval)) = rotate {
                a.set(tag::ROTATE_AUTOMATIC, Value::Boolean(automatic));
                a.set(tag::INITIAL_DATE, Value::DateTime(initial));
                a.set(tag::ROTATE_INTERVAL, Value::Interval(interval));
            }
            a.set(tag::OBJECT_TYPE, Value::Enumeration(2));
            a.set(tag::STATE, Value::Enumeration(st));
            a.set(tag::ACTIVATION_DATE, Value::DateTime(date));
            if let Some(n) = name {
                a.set(
                    tag::NAME,
                    Value::Structure(vec![Ttlv::new(
                        tag::NAME_VALUE,
                        Value::TextString(n.into()),
                    )]),
                );
            }
            if let Some(app) = app {
                a.set_named(custom(), Value::TextString(app.into()));
            }
            ManagedObject {
                uid: UIDS[u].into(),
                object_type: 2,
                owner: owner.into(),
                object: material.map(|m| {
                    Ttlv::new(
                        tag::SYMMETRIC_KEY,
                        Value::Structure(vec![Ttlv::new(
                            tag::KEY_MATERIAL,
                            Value::ByteString(Zeroizing::new(m)),
                        )]),
                    )
                }),
                attributes: a,
                sequence: seq,
            }
        })
}

fn filter() -> impl Strategy<Value = Filter> {
    prop_oneof![
        prop::sample::select(vec!["alice", "bob", "carol"]).prop_map(|o| Filter::Owner(o.into())),
        prop::sample::select(vec!["n1", "n2", "n4"]).prop_map(|n| Filter::Name(n.into())),
        (1u32..4).prop_map(|s| Filter::Attr(AttrName::Std(tag::STATE), Value::Enumeration(s))),
        prop::sample::select(vec!["p", "q"])
            .prop_map(|v| Filter::Attr(custom(), Value::TextString(v.into()))),
        // Not indexed: checked on every object.
        Just(Filter::Attr(
            AttrName::Std(tag::CRYPTOGRAPHIC_USAGE_MASK),
            Value::Integer(4)
        )),
        (-1i64..11, 0i64..6).prop_map(|(from, len)| Filter::Date(
            AttrName::Std(tag::ACTIVATION_DATE),
            from,
            from + len
        )),
        (-1i64..16).prop_map(Filter::RotationDue),
    ]
}

fn changes(max: usize) -> impl Strategy<Value = Vec<Change>> {
    prop::collection::vec(
        prop_oneof![
            3 => object().prop_map(Change::Put),
            1 => (0..UIDS.len()).prop_map(|u| Change::Delete(UIDS[u].into())),
        ],
        0..max,
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => changes(4).prop_map(Op::Commit),
        2 => (
            changes(3),
            prop::collection::vec(filter(), 0..3),
            prop::sample::subsequence(UIDS.to_vec(), 0..=UIDS.len()),
        )
            .prop_map(|(c, f, seen)| {
                Op::Guarded(c, f, seen.into_iter().map(str::to_owned).collect())
            }),
        2 => (0..UIDS.len()).prop_map(Op::Get),
        3 => prop::collection::vec(filter(), 0..3).prop_map(Op::Find),
        1 => Just(Op::All),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

fn kek() -> Kek {
    Kek::new(KekId(7), &Zeroizing::new([0x42; 32]))
}

/// The engine's changes are a map (one change per uid); keep that shape.
fn one_per_uid(changes: Vec<Change>) -> Vec<Change> {
    let mut seen = std::collections::BTreeMap::new();
    for c in changes {
        let uid = match &c {
            Change::Put(o) => o.uid.clone(),
            Change::Delete(u) => u.clone(),
            Change::Expect { uid, .. } => uid.clone(),
            Change::ExpectNoOther { .. } => unreachable!("not generated here"),
        };
        seen.insert(uid, c);
    }
    seen.into_values().collect()
}

/// Opens `dir` with background checkpoints paused and copies it to `base` (sled's files
/// right after the open's checkpoint).
fn open_paused(dir: &Path, base: &Path) -> SledStore {
    let s = SledStore::open_with_kek(dir, kek()).unwrap();
    s.pause_checkpoints(true);
    let _ = std::fs::remove_dir_all(base);
    copy_dir(dir, base);
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sled_store_answers_like_the_memory_store(ops in prop::collection::vec(op(), 1..40)) {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let mut dir = tmp.path().join("store0");
        let mut images = 0;
        let mut frames = 0u64;
        let model = MemoryStore::new();
        let mut sled = Some(open_paused(&dir, &base));
        for op in ops {
            let s = sled.as_ref().unwrap();
            match op {
                Op::Commit(changes) => {
                    let changes = one_per_uid(changes);
                    if !changes.is_empty() {
                        frames += 1;
                    }
                    model.commit(changes.clone()).unwrap();
                    s.commit(changes).unwrap();
                }
                Op::Guarded(changes, filters, seen) => {
                    let changes = one_per_uid(changes);
                    let writes = !changes.is_empty();
                    let mut all = changes;
                    all.push(Change::ExpectNoOther { query: Query::new(filters), seen });
                    let want = model.commit(all.clone());
                    let got = s.commit(all);
                    prop_assert_eq!(want.is_ok(), got.is_ok(), "{:?} vs {:?}", want, got);
                    for r in [&want, &got] {
                        if let Err(e) = r {
                            prop_assert!(matches!(e, StoreError::Conflict { .. }), "{:?}", e);
                        }
                    }
                    if got.is_ok() && writes {
                        frames += 1;
                    }
                }
                Op::Get(u) => prop_assert_eq!(model.get(UIDS[u]).unwrap(), s.get(UIDS[u]).unwrap()),
                Op::Find(filters) => {
                    let q = Query::new(filters);
                    prop_assert_eq!(model.find(&q).unwrap(), s.find(&q).unwrap(), "{:?}", q);
                }
                Op::All => prop_assert_eq!(model.all().unwrap(), s.all().unwrap()),
                Op::Reopen => {
                    drop(sled.take());
                    sled = Some(open_paused(&dir, &base));
                    frames = 0;
                }
                Op::Crash => {
                    images += 1;
                    let image = tmp.path().join(format!("store{images}"));
                    copy_dir(&base, &image);
                    copy_dir(&dir.join("wal"), &image.join("wal"));
                    drop(sled.take());
                    dir = image;
                    let s = open_paused(&dir, &base);
                    prop_assert_eq!(s.sync_stats().replayed_frames, frames);
                    sled = Some(s);
                    frames = 0;
                }
            }
        }
        prop_assert_eq!(model.all().unwrap(), sled.as_ref().unwrap().all().unwrap());
    }
}

fn open_pg(opts: &PgOptions) -> PgStore {
    PgStore::open_with_kek(opts, kek()).unwrap()
}

/// One case against a fresh schema of `cluster`.
fn pg_case(
    cluster: &kmipd_test_support::pg::PgCluster,
    n: u32,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let mut opts = PgOptions::new(cluster.url("postgres"));
    opts.schema = Some(format!("model{n}"));
    opts.pool_size = 2;
    let model = MemoryStore::new();
    let mut pg = Some(open_pg(&opts));
    for op in ops {
        let s = pg.as_ref().unwrap();
        match op {
            Op::Commit(changes) => {
                let changes = one_per_uid(changes);
                model.commit(changes.clone()).unwrap();
                s.commit(changes).unwrap();
            }
            Op::Guarded(changes, filters, seen) => {
                let mut all = one_per_uid(changes);
                all.push(Change::ExpectNoOther {
                    query: Query::new(filters),
                    seen,
                });
                let want = model.commit(all.clone());
                let got = s.commit(all);
                prop_assert_eq!(want.is_ok(), got.is_ok(), "{:?} vs {:?}", want, got);
                for r in [&want, &got] {
                    if let Err(e) = r {
                        prop_assert!(matches!(e, StoreError::Conflict { .. }), "{:?}", e);
                    }
                }
            }
            Op::Get(u) => prop_assert_eq!(model.get(UIDS[u]).unwrap(), s.get(UIDS[u]).unwrap()),
            Op::Find(filters) => {
                let q = Query::new(filters);
                prop_assert_eq!(model.find(&q).unwrap(), s.find(&q).unwrap(), "{:?}", q);
            }
            Op::All => prop_assert_eq!(model.all().unwrap(), s.all().unwrap()),
            Op::Reopen | Op::Crash => {
                drop(pg.take());
                pg = Some(open_pg(&opts));
            }
        }
    }
    prop_assert_eq!(model.all().unwrap(), pg.as_ref().unwrap().all().unwrap());
    Ok(())
}

/// The model test against `PgStore`: one cluster for every case (started and stopped by
/// this test), a schema per case; fewer cases than sled, each commit being a real
/// transaction with its WAL flush.
#[test]
fn pg_store_answers_like_the_memory_store() {
    let cluster = kmipd_test_support::pg::PgCluster::shared();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 32,
        ..ProptestConfig::default()
    });
    let n = std::sync::atomic::AtomicU32::new(0);
    let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| {
        let case = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        pg_case(&cluster, case, ops)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
