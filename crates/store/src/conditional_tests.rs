//! Conditional commits ([`Change::Expect`]), the same checks for every backend.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kmipd_proto::attributes::{AttrName, Attributes};
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use crate::{Change, Filter, ManagedObject, MemoryStore, ObjectStore, Query, StoreError};

/// Runs the conditional-commit checks against `s`; `obj(uid, seq, version)` makes an object
/// (`version` tells apart two records of the same uid).
pub(crate) fn conditional_commits(
    s: &dyn ObjectStore,
    obj: &dyn Fn(&str, u64, u8) -> ManagedObject,
) {
    let conflict_on = |r: Result<(), StoreError>, want: &str| match r {
        Err(StoreError::Conflict { uid }) => assert_eq!(uid, want),
        other => panic!("expected a conflict on {want}, got {other:?}"),
    };

    // Absent, expected absent: Ok.
    assert!(s.get_revised("A").unwrap().is_none());
    s.commit(vec![
        Change::Expect {
            uid: "A".into(),
            revision: None,
        },
        Change::Put(obj("A", 1, 0)),
    ])
    .unwrap();
    let (a0, rev0) = s.get_revised("A").unwrap().unwrap();
    assert_eq!(a0, obj("A", 1, 0));
    assert_eq!(
        s.get_revised("A").unwrap().unwrap().1,
        rev0,
        "stable while unchanged"
    );

    // Expectation holds: Ok, and the revision changes.
    s.commit(vec![
        Change::Put(obj("A", 1, 1)),
        Change::Expect {
            uid: "A".into(),
            revision: Some(rev0),
        },
    ])
    .unwrap();
    let (a1, rev1) = s.get_revised("A").unwrap().unwrap();
    assert_eq!(a1, obj("A", 1, 1));
    assert_ne!(rev1, rev0);

    // The same stale revision again: Conflict, and nothing of that commit stored.
    conflict_on(
        s.commit(vec![
            Change::Expect {
                uid: "A".into(),
                revision: Some(rev0),
            },
            Change::Put(obj("A", 1, 2)),
            Change::Put(obj("B", 2, 0)),
        ]),
        "A",
    );
    assert_eq!(s.get_revised("A").unwrap().unwrap(), (obj("A", 1, 1), rev1));
    assert!(s.get("B").unwrap().is_none());

    // Expected absent but present: Conflict.
    conflict_on(
        s.commit(vec![
            Change::Expect {
                uid: "A".into(),
                revision: None,
            },
            Change::Put(obj("C", 3, 0)),
        ]),
        "A",
    );
    assert!(s.get("C").unwrap().is_none());

    // Expected present at a revision but absent: Conflict.
    conflict_on(
        s.commit(vec![
            Change::Expect {
                uid: "B".into(),
                revision: Some(rev1),
            },
            Change::Put(obj("C", 3, 0)),
        ]),
        "B",
    );
    assert!(s.get("C").unwrap().is_none());

    // Only expectations: Ok or Conflict, nothing written.
    s.commit(vec![
        Change::Expect {
            uid: "A".into(),
            revision: Some(rev1),
        },
        Change::Expect {
            uid: "B".into(),
            revision: None,
        },
    ])
    .unwrap();
    conflict_on(
        s.commit(vec![Change::Expect {
            uid: "A".into(),
            revision: Some(rev0),
        }]),
        "A",
    );
    assert_eq!(s.get_revised("A").unwrap().unwrap(), (obj("A", 1, 1), rev1));

    // A delete, then the old revision no longer holds and absence does.
    s.commit(vec![
        Change::Expect {
            uid: "A".into(),
            revision: Some(rev1),
        },
        Change::Delete("A".into()),
    ])
    .unwrap();
    assert!(s.get_revised("A").unwrap().is_none());
    conflict_on(
        s.commit(vec![
            Change::Expect {
                uid: "A".into(),
                revision: Some(rev1),
            },
            Change::Put(obj("A", 1, 3)),
        ]),
        "A",
    );
    s.commit(vec![
        Change::Expect {
            uid: "A".into(),
            revision: None,
        },
        Change::Put(obj("A", 1, 3)),
    ])
    .unwrap();
    assert_eq!(s.get("A").unwrap().unwrap(), obj("A", 1, 3));
}

/// A KEK of id `id` whose 32 bytes are all `b`.
pub(crate) fn kek(id: u32, b: u8) -> crate::Kek {
    crate::Kek::new(crate::KekId(id), &zeroize::Zeroizing::new([b; 32]))
}

/// An object with key material `material`, a Name, and indexed attributes.
pub(crate) fn obj(uid: &str, seq: u64, material: &[u8]) -> ManagedObject {
    let mut attributes = Attributes::new();
    attributes.set(tag::OBJECT_TYPE, Value::Enumeration(2));
    attributes.set(tag::STATE, Value::Enumeration(1));
    attributes.set(
        tag::INITIAL_DATE,
        Value::DateTime(1000 + i64::try_from(seq).unwrap()),
    );
    attributes.set_named(
        AttrName::Custom {
            vendor: None,
            name: "x-app".into(),
        },
        Value::TextString(format!("app{}", seq % 2)),
    );
    attributes.set(
        tag::NAME,
        Value::Structure(vec![Ttlv::new(
            tag::NAME_VALUE,
            Value::TextString(format!("name-{uid}")),
        )]),
    );
    ManagedObject {
        uid: uid.into(),
        object_type: 2,
        owner: "alice".into(),
        object: Some(Ttlv::new(
            tag::SYMMETRIC_KEY,
            Value::Structure(vec![Ttlv::new(
                tag::KEY_MATERIAL,
                Value::ByteString(zeroize::Zeroizing::new(material.to_vec())),
            )]),
        )),
        attributes,
        sequence: seq,
    }
}

/// An object with one Name.
pub(crate) fn named(uid: &str, seq: u64, name: &str) -> ManagedObject {
    let mut attributes = kmipd_proto::attributes::Attributes::new();
    attributes.set(
        tag::NAME,
        Value::Structure(vec![Ttlv::new(
            tag::NAME_VALUE,
            Value::TextString(name.into()),
        )]),
    );
    ManagedObject {
        uid: uid.into(),
        object_type: 2,
        owner: "o".into(),
        object: None,
        attributes,
        sequence: seq,
    }
}

/// A search condition on the Name `n`, having seen `seen`.
pub(crate) fn no_other_named(n: &str, seen: &[&str]) -> Change {
    Change::ExpectNoOther {
        query: Query::new(vec![Filter::Name(n.into())]),
        seen: seen.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Runs the search-condition checks ([`Change::ExpectNoOther`]) against `s` (empty).
pub(crate) fn search_conditions(s: &dyn ObjectStore) {
    // Nothing named n: a commit that adds one passes (checked before its own writes).
    s.commit(vec![
        no_other_named("n", &[]),
        Change::Put(named("A", 1, "n")),
    ])
    .unwrap();
    // Now A has it: a second one that saw nothing conflicts on A, and stores nothing.
    match s.commit(vec![
        no_other_named("n", &[]),
        Change::Put(named("B", 2, "n")),
    ]) {
        Err(StoreError::Conflict { uid }) => assert_eq!(uid, "A"),
        other => panic!("expected a conflict on A, got {other:?}"),
    }
    assert!(s.get("B").unwrap().is_none());
    // Having seen A it passes; an object of another name is no conflict either.
    s.commit(vec![
        no_other_named("n", &["A"]),
        Change::Put(named("B", 2, "n")),
    ])
    .unwrap();
    s.commit(vec![
        no_other_named("m", &[]),
        Change::Put(named("C", 3, "m")),
    ])
    .unwrap();
    // Alone (no write): checked all the same.
    assert!(s.commit(vec![no_other_named("n", &["A"])]).is_err());
    s.commit(vec![no_other_named("n", &["A", "B"])]).unwrap();
    // Gone objects are no conflict.
    s.commit(vec![Change::Delete("A".into()), Change::Delete("B".into())])
        .unwrap();
    s.commit(vec![no_other_named("n", &[])]).unwrap();
    let found = s.find(&Query::new(vec![Filter::Name("m".into())])).unwrap();
    assert_eq!(found, vec![named("C", 3, "m")]);
}

/// Settings ([`ObjectStore::setting`]), the same checks for every backend: absent until set,
/// read back, replaced, removed, each name on its own, never an object.
pub(crate) fn settings(s: &dyn ObjectStore) {
    assert_eq!(s.setting("constraints").unwrap(), None);
    s.set_setting("constraints", Some(b"one")).unwrap();
    s.set_setting("other", Some(b"")).unwrap();
    assert_eq!(s.setting("constraints").unwrap(), Some(b"one".to_vec()));
    s.set_setting("constraints", Some(b"two")).unwrap();
    assert_eq!(s.setting("constraints").unwrap(), Some(b"two".to_vec()));
    assert_eq!(s.setting("other").unwrap(), Some(Vec::new()));
    s.set_setting("other", None).unwrap();
    assert_eq!(s.setting("other").unwrap(), None);
    assert_eq!(s.setting("constraints").unwrap(), Some(b"two".to_vec()));
    // Removing what is absent is no error.
    s.set_setting("never", None).unwrap();
    assert!(s.all().unwrap().is_empty(), "a setting is not an object");
}

#[test]
fn memory_store_settings() {
    settings(&MemoryStore::new());
}

#[test]
fn memory_store_search_conditions() {
    search_conditions(&MemoryStore::new());
}

fn plain(uid: &str, seq: u64, version: u8) -> ManagedObject {
    ManagedObject {
        uid: uid.into(),
        object_type: 2,
        owner: format!("owner-{version}"),
        object: None,
        attributes: kmipd_proto::attributes::Attributes::new(),
        sequence: seq,
    }
}

#[test]
fn memory_store_conditional_commits() {
    conditional_commits(&MemoryStore::new(), &plain);
}

/// The queries of [`locate_after_updates`]: one per kind of index term (owner, Name, a
/// standard and a custom attribute, a date range, the rotation due date), and pairs of them.
fn term_queries() -> Vec<Query> {
    let state = |n| Filter::Attr(AttrName::Std(tag::STATE), Value::Enumeration(n));
    let app = |v: &str| {
        Filter::Attr(
            AttrName::Custom {
                vendor: None,
                name: "x-app".into(),
            },
            Value::TextString(v.into()),
        )
    };
    let initial = |from, to| Filter::Date(AttrName::Std(tag::INITIAL_DATE), from, to);
    let mut out: Vec<Query> = [
        Filter::Owner("alice".into()),
        Filter::Owner("bob".into()),
        Filter::Name("name-A".into()),
        Filter::Name("name-B".into()),
        Filter::Name("second".into()),
        Filter::Name("renamed".into()),
        state(1),
        state(2),
        app("app0"),
        app("app1"),
        app("moved"),
        initial(0, i64::MAX),
        initial(1_000, 1_002),
        initial(5_000, 5_000),
        Filter::RotationDue(10_000),
        Filter::RotationDue(1_000_000),
        Filter::Attr(AttrName::Std(tag::OBJECT_TYPE), Value::Enumeration(2)),
    ]
    .into_iter()
    .map(|f| Query::new(vec![f]))
    .collect();
    out.push(Query::new(vec![Filter::Owner("alice".into()), state(2)]));
    out.push(Query::new(vec![app("app1"), initial(0, 5_000)]));
    out.push(Query::default());
    out
}

/// Locate (`find`) by every kind of index term gives the same objects, in the same order, as
/// [`MemoryStore`] (a scan, no index) after the same commits: creates, then updates that
/// change, add and remove terms of each kind (owner, Name, attribute, date, rotation), leave
/// the terms alone, delete objects and create one again under a deleted uid.
pub(crate) fn locate_after_updates(s: &dyn ObjectStore) {
    let oracle = MemoryStore::new();
    let both = |changes: Vec<Change>| {
        s.commit(changes.clone()).unwrap();
        oracle.commit(changes).unwrap();
    };
    let check = |when: &str| {
        for q in term_queries() {
            let uids = |store: &dyn ObjectStore| -> Vec<String> {
                store.find(&q).unwrap().into_iter().map(|o| o.uid).collect()
            };
            assert_eq!(uids(s), uids(&oracle), "{when}: {q:?}");
        }
        assert_eq!(s.all().unwrap(), oracle.all().unwrap(), "{when}");
    };
    let rotating = |o: &mut ManagedObject, initial: i64, interval: u32| {
        o.attributes
            .set(tag::ROTATE_AUTOMATIC, Value::Boolean(true));
        o.attributes
            .set(tag::INITIAL_DATE, Value::DateTime(initial));
        o.attributes
            .set(tag::ROTATE_INTERVAL, Value::Interval(interval));
    };
    let mut a = obj("A", 1, b"a");
    let b = obj("B", 2, b"b");
    let mut c = obj("C", 3, b"c");
    rotating(&mut c, 1_000, 500);
    let d = obj("D", 4, b"d");
    both(vec![
        Change::Put(a.clone()),
        Change::Put(b.clone()),
        Change::Put(c.clone()),
        Change::Put(d.clone()),
    ]);
    check("created");

    // A: a second Name, another state and custom value, a new Initial Date; B: another
    // owner and no custom attribute; C: rotation due later; D unchanged (no term changes).
    a.attributes.add(kmipd_proto::attributes::Attribute {
        name: AttrName::Std(tag::NAME),
        value: Value::Structure(vec![Ttlv::new(
            tag::NAME_VALUE,
            Value::TextString("second".into()),
        )]),
    });
    a.attributes.set(tag::STATE, Value::Enumeration(2));
    a.attributes.set_named(
        AttrName::Custom {
            vendor: None,
            name: "x-app".into(),
        },
        Value::TextString("moved".into()),
    );
    a.attributes.set(tag::INITIAL_DATE, Value::DateTime(5_000));
    let mut b2 = b.clone();
    b2.owner = "bob".into();
    b2.attributes.remove_all(&AttrName::Custom {
        vendor: None,
        name: "x-app".into(),
    });
    rotating(&mut c, 1_000, 900_000);
    both(vec![
        Change::Put(a.clone()),
        Change::Put(b2.clone()),
        Change::Put(c.clone()),
        Change::Put(d.clone()),
    ]);
    check("updated");

    // A: its first Name renamed, rotation off; C deleted; B back as it was.
    a.attributes.set(
        tag::NAME,
        Value::Structure(vec![Ttlv::new(
            tag::NAME_VALUE,
            Value::TextString("renamed".into()),
        )]),
    );
    c.attributes
        .remove_all(&AttrName::Std(tag::ROTATE_AUTOMATIC));
    both(vec![
        Change::Put(a.clone()),
        Change::Put(b.clone()),
        Change::Delete("C".into()),
    ]);
    check("renamed and deleted");

    // Two writes of one uid in one commit (the last wins), and C again under its old uid.
    let mut d2 = d.clone();
    d2.attributes.set(tag::STATE, Value::Enumeration(2));
    both(vec![
        Change::Put(d2),
        Change::Put(d.clone()),
        Change::Put(obj("C", 5, b"c2")),
    ]);
    check("rewritten");
    both(vec![Change::Delete("A".into()), Change::Delete("D".into())]);
    check("deleted");
}
