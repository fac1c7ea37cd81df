//! Concurrent requests on one object: no acknowledged change is lost. A commit expects every
//! object it writes to be still as its request read it (`Change::Expect`); when a concurrent
//! request changed it meanwhile, nothing of the commit is stored and the engine runs the
//! request again on the new record. Likewise a 2.x Name checked free must still be free at
//! commit (`Change::ExpectNoOther`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use kmipd_ops::{Engine, EngineConfig, Principal};
use kmipd_proto::attributes::AttrName;
use kmipd_proto::build;
use kmipd_proto::enums::{
    operation as op, result_reason as rr, result_status as rs, revocation_reason_code as rc, state,
};
use kmipd_proto::message::{ProtocolVersion, ResponseMessage};
use kmipd_proto::tag;
use kmipd_store::{Kek, KekId, ManagedObject, MemoryStore, ObjectStore, SledStore};
use kmipd_ttlv::{Ttlv, Value};
use zeroize::Zeroizing;

use engine::{
    TempDir, attr, by_uid, create_aes256_v2, create_named, message, ok_uid, one, uid_item,
};
use kmipd_test_support::engine;

const V21: ProtocolVersion = ProtocolVersion::V2_1;
const V14: ProtocolVersion = ProtocolVersion::V1_4;

/// A 1.4 Add Attribute of custom attribute `name` to `uid`.
fn add_custom(uid: &str, name: &str) -> Ttlv {
    message(
        V14,
        vec![(
            op::ADD_ATTRIBUTE,
            vec![
                uid_item(uid),
                attr(name, Value::TextString(format!("{name}-value"))),
            ],
        )],
    )
    .to_ttlv()
}

fn revoke_compromised(uid: &str) -> Ttlv {
    message(
        V21,
        vec![(
            op::REVOKE,
            vec![
                uid_item(uid),
                build::structure(
                    tag::REVOCATION_REASON,
                    vec![build::enumeration(
                        tag::REVOCATION_REASON_CODE,
                        rc::KEY_COMPROMISE,
                    )],
                ),
                build::datetime(tag::COMPROMISE_OCCURRENCE_DATE, 1_000_000_000),
            ],
        )],
    )
    .to_ttlv()
}

fn has_custom(o: &ManagedObject, name: &str) -> bool {
    o.attributes
        .iter()
        .any(|a| matches!(&a.name, AttrName::Custom { name: n, .. } if n == name))
}

fn status(answer: &Ttlv) -> (u32, Option<u32>) {
    let m = ResponseMessage::from_ttlv(answer).unwrap();
    (m.items[0].result_status, m.items[0].result_reason)
}

/// An active AES key of `who`'s.
fn active_key(e: &Engine, who: &Principal) -> String {
    let uid = ok_uid(&one(e, who, V21, op::CREATE, create_aes256_v2()));
    let a = one(e, who, V21, op::ACTIVATE, by_uid(&uid));
    assert_eq!(a.result_status, rs::SUCCESS);
    uid
}

/// The security case: an attribute edit computed from the Active record must not bring the
/// key back to Active over a Revoke acknowledged in between.
#[test]
fn a_revoke_is_not_undone_by_an_edit_prepared_before_it() {
    let store = Arc::new(MemoryStore::new());
    let e = Engine::new(store.clone(), EngineConfig::default());
    let who = Principal::new("alice");
    let uid = active_key(&e, &who);
    let edit = add_custom(&uid, "x-note");

    let stale = e.prepare(&who, &edit); // reads the Active record
    let revoked = e
        .complete(e.prepare(&who, &revoke_compromised(&uid)))
        .unwrap()
        .response;
    assert_eq!(status(&revoked), (rs::SUCCESS, None));
    // Its commit fails and stores nothing: the key stays Compromised, without the note.
    let conflict = e.complete(stale).unwrap_err();
    assert_eq!(
        status(&conflict.into_answer()),
        (rs::OPERATION_FAILED, Some(rr::GENERAL_FAILURE))
    );
    let o = store.get(&uid).unwrap().unwrap();
    assert_eq!(
        o.attributes.get(tag::STATE),
        Some(&Value::Enumeration(state::COMPROMISED))
    );
    assert!(!has_custom(&o, "x-note"));
    // Sent as usual, the edit runs on the revoked record: both changes are kept.
    assert_eq!(status(&e.handle_message(&who, &edit)), (rs::SUCCESS, None));
    let o = store.get(&uid).unwrap().unwrap();
    assert_eq!(
        o.attributes.get(tag::STATE),
        Some(&Value::Enumeration(state::COMPROMISED))
    );
    assert!(has_custom(&o, "x-note"));
}

/// Many threads edit one object at once; every acknowledged edit is in the final record.
fn every_concurrent_edit_is_kept(store: Arc<dyn ObjectStore>) {
    let e = Engine::new(store.clone(), EngineConfig::default());
    let who = Principal::new("alice");
    let uid = active_key(&e, &who);
    const THREADS: usize = 8;
    const EDITS: usize = 25;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (e, who, uid) = (&e, &who, &uid);
            s.spawn(move || {
                for i in 0..EDITS {
                    let answer = e.handle_message(who, &add_custom(uid, &format!("x-t{t}-{i}")));
                    assert_eq!(status(&answer), (rs::SUCCESS, None), "thread {t} edit {i}");
                }
            });
        }
    });
    let o = store.get(&uid).unwrap().unwrap();
    for t in 0..THREADS {
        for i in 0..EDITS {
            assert!(has_custom(&o, &format!("x-t{t}-{i}")), "edit {t}/{i} lost");
        }
    }
}

#[test]
fn every_concurrent_edit_of_one_object_is_kept_in_memory() {
    every_concurrent_edit_is_kept(Arc::new(MemoryStore::new()));
}

#[test]
fn every_concurrent_edit_of_one_object_is_kept_over_sled() {
    let tmp = TempDir::new("concurrent-edits");
    let kek = Kek::new(KekId(1), &Zeroizing::new([0x5a; 32]));
    let store = SledStore::open_with_kek(&tmp.0, kek).unwrap();
    every_concurrent_edit_is_kept(Arc::new(store));
}

/// Two 2.1 Creates of one Name, both checked before either commits: the second's commit
/// fails (the Name was taken meanwhile) and, run again, it is refused as a non-unique Name.
#[test]
fn a_name_checked_free_is_still_free_at_commit() {
    let store = Arc::new(MemoryStore::new());
    let e = Engine::new(store.clone(), EngineConfig::default());
    let who = Principal::new("alice");
    let first = e.prepare(&who, &create_named("db-key"));
    let second = e.prepare(&who, &create_named("db-key"));
    assert_eq!(
        status(&e.complete(first).unwrap().response),
        (rs::SUCCESS, None)
    );
    let conflict = e.complete(second).unwrap_err();
    assert_eq!(
        status(&conflict.into_answer()),
        (rs::OPERATION_FAILED, Some(rr::GENERAL_FAILURE))
    );
    assert_eq!(store.all().unwrap().len(), 1);
    assert_eq!(
        status(&e.handle_message(&who, &create_named("db-key"))),
        (rs::OPERATION_FAILED, Some(rr::NON_UNIQUE_NAME_ATTRIBUTE))
    );
}

/// Threads create keys of the same names at once over sled: each name is taken exactly once,
/// every other attempt is refused as a non-unique Name.
#[test]
fn concurrent_creates_of_one_name_over_sled_take_it_once() {
    let tmp = TempDir::new("concurrent-names");
    let kek = Kek::new(KekId(1), &Zeroizing::new([0x5a; 32]));
    let store: Arc<dyn ObjectStore> = Arc::new(SledStore::open_with_kek(&tmp.0, kek).unwrap());
    let e = Engine::new(store.clone(), EngineConfig::default());
    let who = Principal::new("alice");
    const THREADS: usize = 6;
    const NAMES: usize = 10;
    let outcomes: Vec<Vec<(u32, Option<u32>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (e, who) = (&e, &who);
                s.spawn(move || {
                    (0..NAMES)
                        .map(|i| status(&e.handle_message(who, &create_named(&format!("n{i}")))))
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for i in 0..NAMES {
        let won = outcomes
            .iter()
            .filter(|o| o[i] == (rs::SUCCESS, None))
            .count();
        let refused = outcomes
            .iter()
            .filter(|o| o[i] == (rs::OPERATION_FAILED, Some(rr::NON_UNIQUE_NAME_ATTRIBUTE)))
            .count();
        assert_eq!((won, refused), (1, THREADS - 1), "name n{i}: {outcomes:?}");
    }
    assert_eq!(store.all().unwrap().len(), NAMES);
}
