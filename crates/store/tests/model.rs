//! Model test: random sequences of commits (puts and deletes), gets, finds, listings and
//! reopenings run against `MemoryStore` (the model) and `SledStore`; every answer must be equal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use kmipd_proto::attributes::{AttrName, Attributes};
use kmipd_proto::tag;
use kmipd_store::{
    Change, Filter, Kek, KekId, ManagedObject, MemoryStore, ObjectStore, Query, SledStore,
};
use kmipd_ttlv::{Ttlv, Value};
use proptest::prelude::*;
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
    Get(usize),
    Find(Vec<Filter>),
    All,
    Reopen,
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
    )
        .prop_map(|(u, seq, owner, name, st, app, date, material)| {
            let mut a = Attributes::new();
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
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(
            prop_oneof![
                3 => object().prop_map(Change::Put),
                1 => (0..UIDS.len()).prop_map(|u| Change::Delete(UIDS[u].into())),
            ],
            0..4
        )
        .prop_map(Op::Commit),
        2 => (0..UIDS.len()).prop_map(Op::Get),
        3 => prop::collection::vec(filter(), 0..3).prop_map(Op::Find),
        1 => Just(Op::All),
        1 => Just(Op::Reopen),
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
        };
        seen.insert(uid, c);
    }
    seen.into_values().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sled_store_answers_like_the_memory_store(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let model = MemoryStore::new();
        let mut sled = Some(SledStore::open_with_kek(dir.path(), kek()).unwrap());
        for op in ops {
            let s = sled.as_ref().unwrap();
            match op {
                Op::Commit(changes) => {
                    let changes = one_per_uid(changes);
                    model.commit(changes.clone()).unwrap();
                    s.commit(changes).unwrap();
                }
                Op::Get(u) => prop_assert_eq!(model.get(UIDS[u]).unwrap(), s.get(UIDS[u]).unwrap()),
                Op::Find(filters) => {
                    let q = Query::new(filters);
                    prop_assert_eq!(model.find(&q).unwrap(), s.find(&q).unwrap(), "{:?}", q);
                }
                Op::All => prop_assert_eq!(model.all().unwrap(), s.all().unwrap()),
                Op::Reopen => {
                    drop(sled.take());
                    sled = Some(SledStore::open_with_kek(dir.path(), kek()).unwrap());
                }
            }
        }
        prop_assert_eq!(model.all().unwrap(), sled.as_ref().unwrap().all().unwrap());
    }
}
