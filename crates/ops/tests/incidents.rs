//! Store and internal failures come back with the answer as incidents for the operator, while
//! the client gets General Failure and no detail (`incident.rs`): a damaged record read by Get,
//! a commit the store refuses, and nothing for ordinary failures or for a clean answer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kmipd_ops::{Answer, Engine, EngineConfig, IncidentKind, Principal};
use kmipd_proto::enums::{operation as op, result_reason as rr, result_status as rs};
use kmipd_proto::message::{ProtocolVersion, ResponseMessage};
use kmipd_store::{
    Change, CommitDone, ManagedObject, MemoryStore, ObjectStore, Revision, StoreError,
};

use engine::{by_uid, create_aes256_v2, message, ok_uid};
use kmipd_test_support::engine;

const V21: ProtocolVersion = ProtocolVersion::V2_1;

/// A memory store whose record `damaged` reads as damaged, and whose commits fail with a
/// backend error while `broken` is set.
struct Faulty {
    inner: MemoryStore,
    damaged: std::sync::Mutex<Option<String>>,
    broken: AtomicBool,
}

impl Faulty {
    fn check(&self, uid: &str) -> Result<(), StoreError> {
        if self.damaged.lock().unwrap().as_deref() == Some(uid) {
            return Err(StoreError::Corrupt {
                uid: uid.to_owned(),
                reason: "checksum mismatch".into(),
            });
        }
        Ok(())
    }

    fn refusal(&self) -> Option<StoreError> {
        self.broken
            .load(Ordering::SeqCst)
            .then(|| StoreError::Backend("fsync failed, store poisoned: EIO".into()))
    }
}

impl ObjectStore for Faulty {
    fn get(&self, uid: &str) -> Result<Option<ManagedObject>, StoreError> {
        self.check(uid)?;
        self.inner.get(uid)
    }
    fn get_revised(&self, uid: &str) -> Result<Option<(ManagedObject, Revision)>, StoreError> {
        self.check(uid)?;
        self.inner.get_revised(uid)
    }
    fn all(&self) -> Result<Vec<ManagedObject>, StoreError> {
        self.inner.all()
    }
    fn commit(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        match self.refusal() {
            Some(e) => Err(e),
            None => self.inner.commit(changes),
        }
    }
    fn commit_then(&self, changes: Vec<Change>, done: CommitDone) {
        match self.refusal() {
            Some(e) => done(Err(e)),
            None => self.inner.commit_then(changes, done),
        }
    }
    fn next_sequence(&self) -> Result<u64, StoreError> {
        self.inner.next_sequence()
    }
    fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.setting(name)
    }
    fn set_setting(&self, name: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        self.inner.set_setting(name, value)
    }
}

fn setup() -> (Arc<Faulty>, Engine, Principal) {
    let store = Arc::new(Faulty {
        inner: MemoryStore::new(),
        damaged: std::sync::Mutex::new(None),
        broken: AtomicBool::new(false),
    });
    let engine = Engine::new(store.clone(), EngineConfig::default());
    (store, engine, Principal::new("alice"))
}

fn first_result(a: &Answer) -> (u32, Option<u32>, Option<String>) {
    let m = ResponseMessage::from_ttlv(&a.response).unwrap();
    let i = &m.items[0];
    (i.result_status, i.result_reason, i.result_message.clone())
}

#[test]
fn a_damaged_record_read_by_get_is_an_incident_naming_the_object() {
    let (store, e, who) = setup();
    let create = message(V21, vec![(op::CREATE, create_aes256_v2())]);
    let created = e.handle(&who, &create.to_ttlv());
    assert!(created.incidents.is_empty(), "{:?}", created.incidents);
    let m = ResponseMessage::from_ttlv(&created.response).unwrap();
    let uid = ok_uid(&m.items[0]);
    *store.damaged.lock().unwrap() = Some(uid.clone());

    let get = message(V21, vec![(op::GET, by_uid(&uid))]);
    let answer = e.handle(&who, &get.to_ttlv());
    let (status, reason, text) = first_result(&answer);
    assert_eq!(
        (status, reason),
        (rs::OPERATION_FAILED, Some(rr::GENERAL_FAILURE))
    );
    assert_eq!(text.as_deref(), Some("internal server error"));
    assert_eq!(answer.incidents.len(), 1, "{:?}", answer.incidents);
    let i = &answer.incidents[0];
    assert_eq!(i.kind, IncidentKind::StoreCorrupt);
    assert_eq!(i.operation, Some(op::GET));
    assert_eq!(i.object.as_deref(), Some(uid.as_str()));
    assert!(i.detail.contains("checksum mismatch"), "{}", i.detail);

    // An ordinary failure is the client's business only.
    let missing = message(V21, vec![(op::GET, by_uid("no-such-object"))]);
    let answer = e.handle(&who, &missing.to_ttlv());
    assert_eq!(first_result(&answer).0, rs::OPERATION_FAILED);
    assert!(answer.incidents.is_empty(), "{:?}", answer.incidents);
}

#[test]
fn a_refused_commit_is_one_incident_for_the_request_sync_and_async() {
    let (store, e, who) = setup();
    store.broken.store(true, Ordering::SeqCst);
    let create = message(V21, vec![(op::CREATE, create_aes256_v2())]).to_ttlv();

    let answer = e.handle(&who, &create);
    let (status, reason, text) = first_result(&answer);
    assert_eq!(
        (status, reason),
        (rs::OPERATION_FAILED, Some(rr::GENERAL_FAILURE))
    );
    assert_eq!(text.as_deref(), Some("internal server error"));
    assert_eq!(answer.incidents.len(), 1, "{:?}", answer.incidents);
    let i = &answer.incidents[0];
    assert_eq!(
        (i.kind, i.operation),
        (IncidentKind::StoreBackend, Some(op::CREATE))
    );
    assert!(i.object.is_some(), "the one object the commit wrote");
    assert!(i.detail.contains("poisoned"), "{}", i.detail);

    let (tx, rx) = std::sync::mpsc::channel();
    e.complete_then(e.prepare(&who, &create), move |a| tx.send(a).unwrap());
    let answer = rx.recv().unwrap().unwrap();
    assert_eq!(first_result(&answer).1, Some(rr::GENERAL_FAILURE));
    assert_eq!(answer.incidents.len(), 1, "{:?}", answer.incidents);
    assert_eq!(answer.incidents[0].kind, IncidentKind::StoreBackend);

    // Once the store works again, no incident.
    store.broken.store(false, Ordering::SeqCst);
    let answer = e.handle(&who, &create);
    assert_eq!(first_result(&answer).0, rs::SUCCESS);
    assert!(answer.incidents.is_empty());
}
