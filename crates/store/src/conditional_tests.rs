//! Conditional commits ([`Change::Expect`]), the same checks for every backend.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{Change, ManagedObject, MemoryStore, ObjectStore, StoreError};

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
