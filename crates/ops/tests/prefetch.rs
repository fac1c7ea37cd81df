//! Preparing over reads fetched ahead (`Engine::prepare_over`, `kmipd_store::prefetch`), as the
//! server does for light requests on PostgreSQL, gives the answers `Engine::handle` gives, and
//! a preparation that missed a read is run again after fetching it and committed once. The
//! fetches here read a memory store synchronously (the PostgreSQL fetch itself is tested over
//! the wire in `crates/server/tests/postgres.rs`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kmipd_ops::{Answer, Clock, Engine, EngineConfig, Principal};
use kmipd_proto::enums::{operation as op, result_status as rs};
use kmipd_proto::message::{ProtocolVersion, ResponseMessage};
use kmipd_store::prefetch::{Fetched, Want};
use kmipd_store::{Change, CommitDone, ManagedObject, MemoryStore, ObjectStore, Revision};
use kmipd_store::{Query, StoreError};
use kmipd_ttlv::Ttlv;

use engine::{by_uid, create_named, message, ok_uid};
use kmipd_test_support::engine;

const V21: ProtocolVersion = ProtocolVersion::V2_1;

/// A memory store that counts its commits.
struct Counting {
    inner: MemoryStore,
    commits: AtomicUsize,
}

impl ObjectStore for Counting {
    fn get(&self, uid: &str) -> Result<Option<ManagedObject>, StoreError> {
        self.inner.get(uid)
    }
    fn get_revised(&self, uid: &str) -> Result<Option<(ManagedObject, Revision)>, StoreError> {
        self.inner.get_revised(uid)
    }
    fn all(&self) -> Result<Vec<ManagedObject>, StoreError> {
        self.inner.all()
    }
    fn find(&self, query: &Query) -> Result<Vec<ManagedObject>, StoreError> {
        self.inner.find(query)
    }
    fn commit(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.inner.commit(changes)
    }
    fn commit_then(&self, changes: Vec<Change>, done: CommitDone) {
        done(self.commit(changes));
    }
    fn next_sequence(&self) -> Result<u64, StoreError> {
        self.inner.next_sequence()
    }
    fn reads_are_local(&self) -> bool {
        true
    }
    fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.setting(name)
    }
    fn set_setting(&self, name: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        self.inner.set_setting(name, value)
    }
}

/// What a fetch of `want` reads from `store`, now.
fn fetch(store: &dyn ObjectStore, want: &Want) -> Fetched {
    Fetched {
        objects: want
            .uids
            .iter()
            .map(|u| (u.clone(), store.get_revised(u)))
            .collect(),
        settings: want
            .settings
            .iter()
            .map(|s| (s.clone(), store.setting(s).unwrap()))
            .collect(),
        found: want
            .queries
            .iter()
            .map(|q| (q.clone(), store.find(q).unwrap()))
            .collect(),
        hinted: Vec::new(),
    }
}

/// The server's loop (`execute.rs`, `prefetched`) with synchronous fetches: the answer and the
/// number of fetches.
fn over_overlay(
    e: &Engine,
    store: &dyn ObjectStore,
    who: &Principal,
    request: &Ttlv,
) -> (Answer, usize) {
    assert!(Engine::is_light(request) && Engine::is_replayable(request));
    let mut want = Engine::reads_ahead(request);
    let mut overlay = e.overlay();
    let mut fetches = 0;
    let prepared = loop {
        if !want.is_empty() {
            fetches += 1;
            assert!(fetches <= 4, "bounded");
            overlay.add(fetch(store, &want));
        }
        let prepared = e.prepare_over(&overlay, who, request);
        assert!(!overlay.unsupported());
        want = overlay.take_missed();
        if want.is_empty() {
            break prepared;
        }
    };
    let answer = Arc::new(Mutex::new(None));
    let slot = answer.clone();
    e.complete_then_over(&overlay, prepared, move |o| {
        *slot.lock().unwrap() = Some(o);
    });
    if let Some((changes, done)) = overlay.take_commit() {
        done(store.commit(changes));
    }
    let outcome = answer.lock().unwrap().take().expect("completed");
    match outcome {
        Ok(answer) => (answer, fetches),
        Err(_) => panic!("no concurrent request here"),
    }
}

fn items(t: &Ttlv) -> ResponseMessage {
    ResponseMessage::from_ttlv(t).unwrap()
}

#[test]
fn answers_over_reads_fetched_ahead_equal_the_blocking_path_s_and_a_miss_commits_once() {
    let store = Arc::new(Counting {
        inner: MemoryStore::new(),
        commits: AtomicUsize::new(0),
    });
    let config = EngineConfig {
        clock: Clock::from_fn(|| 1_700_000_000),
        ..EngineConfig::default()
    };
    let e = Engine::new(store.clone(), config);
    let who = Principal::new("alice");

    // A named Create: its Name search is not fetched ahead, so a second fetch, one commit.
    let (created, fetches) = over_overlay(&e, store.as_ref(), &who, &create_named("k1"));
    assert_eq!(fetches, 2, "the constraints, then the missed Name search");
    assert_eq!(store.commits.load(Ordering::Relaxed), 1);
    let uid = ok_uid(&items(&created.response).items[0]);
    assert_eq!(store.all().unwrap().len(), 1, "one object");

    // Reads: the same answers both ways (the first Get also clears Fresh: one commit).
    for request in [
        message(V21, vec![(op::GET, by_uid(&uid))]),
        message(V21, vec![(op::GET_ATTRIBUTES, by_uid(&uid))]),
        message(V21, vec![(op::GET_ATTRIBUTE_LIST, by_uid(&uid))]),
        message(V21, vec![(op::GET, by_uid("no-such-object"))]),
        message(
            V21,
            vec![(op::GET_ATTRIBUTES, by_uid(&uid)), (op::GET, by_uid(&uid))],
        ),
    ] {
        let request = request.to_ttlv();
        let (fetched, fetches) = over_overlay(&e, store.as_ref(), &who, &request);
        assert_eq!(fetches, 1, "the object named, fetched ahead");
        let blocking = e.handle(&who, &request);
        let (a, b) = (items(&fetched.response), items(&blocking.response));
        // Each response has a Server Correlation Value of its own.
        assert_eq!(a.header.time_stamp, b.header.time_stamp);
        assert_eq!(a.items, b.items);
    }

    // A second Create of the Name is refused the same way, and stores nothing.
    let commits = store.commits.load(Ordering::Relaxed);
    let (refused, _) = over_overlay(&e, store.as_ref(), &who, &create_named("k1"));
    let blocking = e.handle(&who, &create_named("k1"));
    let (a, b) = (items(&refused.response), items(&blocking.response));
    assert_ne!(a.items[0].result_status, rs::SUCCESS);
    assert_eq!(a.items[0], b.items[0]);
    assert_eq!(store.commits.load(Ordering::Relaxed), commits);
    assert_eq!(store.all().unwrap().len(), 1);
}

#[test]
fn requests_that_leave_state_behind_are_not_replayable() {
    let get = message(V21, vec![(op::GET, by_uid("x"))]);
    assert!(Engine::is_replayable(&get.to_ttlv()));
    let mut pending = get.clone();
    pending.header.asynchronous_indicator = Some(true);
    assert!(!Engine::is_replayable(&pending.to_ttlv()));
    let login = message(V21, vec![(op::LOGIN, Vec::new())]);
    assert!(!Engine::is_replayable(&login.to_ttlv()));
    let mixed = message(V21, vec![(op::GET, by_uid("x")), (op::LOGOUT, Vec::new())]);
    assert!(!Engine::is_replayable(&mixed.to_ttlv()));
    let want = Engine::reads_ahead(&create_named("n"));
    assert_eq!(want.settings, vec!["constraints".to_owned()]);
    assert!(want.uids.is_empty());
    assert_eq!(
        Engine::reads_ahead(&get.to_ttlv()).uids,
        vec!["x".to_owned()]
    );
}
