//! The key lifecycle through the Engine (KMIP 2.1 §4.57, 1.4 §3.22): every transition the
//! specification permits and every one it refuses, Revoke with each reason, Destroy in each
//! state, Activation and Deactivation Dates in the past, and Check. Objects are Secret Data
//! registered through the Engine; assertions read the store itself.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use kmipd_ops::{Engine, EngineConfig, Principal};
use kmipd_proto::attributes::Attribute;
use kmipd_proto::build;
use kmipd_proto::enums::{
    cryptographic_usage_mask as cum, object_type, operation as op, result_reason as rr,
    result_status as rs, revocation_reason_code as rc, secret_data_type, state,
};
use kmipd_proto::message::{ProtocolVersion, ResponseBatchItem};
use kmipd_proto::tag;
use kmipd_store::{ManagedObject, MemoryStore, ObjectStore};
use kmipd_ttlv::{Ttlv, Value};

use engine::{Server, opaque_secret, uid_item, uid_of};
use kmipd_test_support::engine;

const V21: ProtocolVersion = ProtocolVersion::V2_1;
const V14: ProtocolVersion = ProtocolVersion::V1_4;

/// The lifecycle tests' requests and readings, on the shared harness's server.
trait Lifecycle {
    /// Registers Secret Data with these (2.x-form) attributes; returns its identifier.
    fn register(&self, v: ProtocolVersion, attrs: Vec<Ttlv>) -> String;
    /// The stored object `uid`.
    fn object(&self, uid: &str) -> ManagedObject;
    /// The State of `uid`.
    fn state(&self, uid: &str) -> u32;
    /// The date attribute `t` of `uid`, if set.
    fn date(&self, uid: &str, t: kmipd_ttlv::Tag) -> Option<i64>;
    /// Revokes `uid` with reason `code`.
    fn revoke(&self, v: ProtocolVersion, uid: &str, code: u32) -> ResponseBatchItem;
    /// An object in `s`, built through operations only.
    fn in_state(&self, s: u32) -> String;
}

impl Lifecycle for Server {
    /// Registers Secret Data with these (2.x-form) attributes; returns its identifier.
    fn register(&self, v: ProtocolVersion, attrs: Vec<Ttlv>) -> String {
        let a = self.one(v, op::REGISTER, register_payload(v, attrs));
        assert_eq!(a.result_status, rs::SUCCESS, "{a:?}");
        uid_of(&a)
    }

    fn object(&self, uid: &str) -> ManagedObject {
        self.store.get(uid).unwrap().expect("object in the store")
    }

    fn state(&self, uid: &str) -> u32 {
        match self.object(uid).attributes.get(tag::STATE) {
            Some(Value::Enumeration(s)) => *s,
            other => panic!("State {other:?}"),
        }
    }

    fn date(&self, uid: &str, t: kmipd_ttlv::Tag) -> Option<i64> {
        match self.object(uid).attributes.get(t) {
            Some(Value::DateTime(d)) => Some(*d),
            None => None,
            other => panic!("{t} is {other:?}"),
        }
    }

    fn revoke(&self, v: ProtocolVersion, uid: &str, code: u32) -> ResponseBatchItem {
        self.one(v, op::REVOKE, revoke_payload(uid, code, None))
    }

    /// An object in `s`, built through operations only.
    fn in_state(&self, s: u32) -> String {
        let uid = self.register(V21, vec![build::usage_mask(cum::ENCRYPT)]);
        let ok = |a: ResponseBatchItem| assert_eq!(a.result_status, rs::SUCCESS, "{a:?}");
        match s {
            state::PRE_ACTIVE => {}
            state::ACTIVE => ok(self.one(V21, op::ACTIVATE, vec![uid_item(&uid)])),
            state::DEACTIVATED => {
                ok(self.one(V21, op::ACTIVATE, vec![uid_item(&uid)]));
                ok(self.revoke(V21, &uid, rc::CESSATION_OF_OPERATION));
            }
            state::COMPROMISED => ok(self.revoke(V21, &uid, rc::KEY_COMPROMISE)),
            state::DESTROYED => ok(self.one(V21, op::DESTROY, vec![uid_item(&uid)])),
            state::DESTROYED_COMPROMISED => {
                ok(self.revoke(V21, &uid, rc::KEY_COMPROMISE));
                ok(self.one(V21, op::DESTROY, vec![uid_item(&uid)]));
            }
            other => panic!("no state {other}"),
        }
        assert_eq!(self.state(&uid), s);
        uid
    }
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn register_payload(v: ProtocolVersion, attrs: Vec<Ttlv>) -> Vec<Ttlv> {
    let attributes = if v.is_v2() {
        build::structure(tag::ATTRIBUTES, attrs)
    } else {
        build::structure(
            tag::TEMPLATE_ATTRIBUTE,
            attrs
                .into_iter()
                .map(|a| Attribute::std(a.tag, a.value).to_v1(None))
                .collect(),
        )
    };
    vec![
        build::enumeration(tag::OBJECT_TYPE, object_type::SECRET_DATA),
        attributes,
        opaque_secret(secret_data_type::PASSWORD, b"correct horse"),
    ]
}

fn revoke_payload(uid: &str, code: u32, occurrence: Option<i64>) -> Vec<Ttlv> {
    let mut p = vec![
        uid_item(uid),
        build::structure(
            tag::REVOCATION_REASON,
            vec![
                build::enumeration(tag::REVOCATION_REASON_CODE, code),
                build::text(tag::REVOCATION_MESSAGE, "test"),
            ],
        ),
    ];
    if let Some(d) = occurrence {
        p.push(build::datetime(tag::COMPROMISE_OCCURRENCE_DATE, d));
    }
    p
}

const STATES: [u32; 6] = [
    state::PRE_ACTIVE,
    state::ACTIVE,
    state::DEACTIVATED,
    state::COMPROMISED,
    state::DESTROYED,
    state::DESTROYED_COMPROMISED,
];

#[derive(Debug, Clone, Copy)]
enum Event {
    Activate,
    RevokeCompromise,
    RevokeOther,
    Destroy,
}

/// The specification's numbered transitions (2.1 §4.57, items 2-10); anything else is refused.
fn permitted(s: u32, e: Event) -> Option<u32> {
    match (s, e) {
        (state::PRE_ACTIVE, Event::Activate) => Some(state::ACTIVE),
        (state::PRE_ACTIVE | state::ACTIVE | state::DEACTIVATED, Event::RevokeCompromise) => {
            Some(state::COMPROMISED)
        }
        (state::DESTROYED, Event::RevokeCompromise) => Some(state::DESTROYED_COMPROMISED),
        (state::ACTIVE, Event::RevokeOther) => Some(state::DEACTIVATED),
        (state::PRE_ACTIVE | state::DEACTIVATED, Event::Destroy) => Some(state::DESTROYED),
        (state::COMPROMISED, Event::Destroy) => Some(state::DESTROYED_COMPROMISED),
        _ => None,
    }
}

fn apply(s: &Server, v: ProtocolVersion, uid: &str, e: Event) -> ResponseBatchItem {
    match e {
        Event::Activate => s.one(v, op::ACTIVATE, vec![uid_item(uid)]),
        Event::RevokeCompromise => s.revoke(v, uid, rc::CA_COMPROMISE),
        Event::RevokeOther => s.revoke(v, uid, rc::SUPERSEDED),
        Event::Destroy => s.one(v, op::DESTROY, vec![uid_item(uid)]),
    }
}

#[test]
fn every_state_and_event_in_2_1_follows_the_specification() {
    for from in STATES {
        for e in [
            Event::Activate,
            Event::RevokeCompromise,
            Event::RevokeOther,
            Event::Destroy,
        ] {
            let s = Server::new();
            let uid = s.in_state(from);
            let a = apply(&s, V21, &uid, e);
            match permitted(from, e) {
                Some(to) => {
                    assert_eq!(a.result_status, rs::SUCCESS, "{from} {e:?}: {a:?}");
                    assert_eq!(uid_of(&a), uid);
                    assert_eq!(s.state(&uid), to, "{from} {e:?}");
                }
                None => {
                    assert_eq!(a.result_status, rs::OPERATION_FAILED, "{from} {e:?}");
                    let destroyed = matches!(from, state::DESTROYED | state::DESTROYED_COMPROMISED);
                    let want = if destroyed && matches!(e, Event::Destroy) {
                        rr::OBJECT_DESTROYED
                    } else {
                        rr::WRONG_KEY_LIFECYCLE_STATE
                    };
                    assert_eq!(a.result_reason, Some(want), "{from} {e:?}");
                    assert!(a.payload.is_none());
                    assert_eq!(s.state(&uid), from, "a refusal changes nothing");
                }
            }
        }
    }
}

#[test]
fn refusals_in_1_4_are_permission_denied_and_a_destroyed_object_is_not_found() {
    let s = Server::new();
    let active = s.in_state(state::ACTIVE);
    let a = s.one(V14, op::DESTROY, vec![uid_item(&active)]);
    assert_eq!(a.result_reason, Some(rr::PERMISSION_DENIED));
    let a = s.one(V14, op::ACTIVATE, vec![uid_item(&active)]);
    assert_eq!(a.result_reason, Some(rr::PERMISSION_DENIED));
    let pre = s.in_state(state::PRE_ACTIVE);
    let a = s.revoke(V14, &pre, rc::UNSPECIFIED);
    assert_eq!(a.result_reason, Some(rr::PERMISSION_DENIED));
    let gone = s.in_state(state::DESTROYED);
    let a = s.one(V14, op::DESTROY, vec![uid_item(&gone)]);
    assert_eq!(a.result_reason, Some(rr::ITEM_NOT_FOUND));
    // 2.0 also answers Permission Denied (its OASIS case AKLC-M-2-20 says so).
    let a = s.one(ProtocolVersion::V2_0, op::DESTROY, vec![uid_item(&active)]);
    assert_eq!(a.result_reason, Some(rr::PERMISSION_DENIED));
}

#[test]
fn activate_sets_the_activation_date_and_uses_the_id_placeholder() {
    let s = Server::new();
    let before = now();
    let m = s.send(
        V21,
        vec![
            (op::REGISTER, register_payload(V21, vec![])),
            (op::ACTIVATE, vec![]),
        ],
    );
    assert!(
        m.items.iter().all(|a| a.result_status == rs::SUCCESS),
        "{m:?}"
    );
    let uid = uid_of(&m.items[0]);
    assert_eq!(uid_of(&m.items[1]), uid);
    assert_eq!(s.state(&uid), state::ACTIVE);
    assert!(s.date(&uid, tag::ACTIVATION_DATE).unwrap() >= before);
}

#[test]
fn revoke_with_each_reason_code() {
    let compromise = [rc::KEY_COMPROMISE, rc::CA_COMPROMISE];
    for code in [
        rc::UNSPECIFIED,
        rc::KEY_COMPROMISE,
        rc::CA_COMPROMISE,
        rc::AFFILIATION_CHANGED,
        rc::SUPERSEDED,
        rc::CESSATION_OF_OPERATION,
        rc::PRIVILEGE_WITHDRAWN,
    ] {
        for v in [V14, V21] {
            let s = Server::new();
            let uid = s.in_state(state::ACTIVE);
            let before = now();
            let a = s.revoke(v, &uid, code);
            assert_eq!(a.result_status, rs::SUCCESS, "{code} {v}: {a:?}");
            let o = s.object(&uid);
            let reason = match o.attributes.get(tag::REVOCATION_REASON) {
                Some(Value::Structure(items)) => items.clone(),
                other => panic!("Revocation Reason {other:?}"),
            };
            assert_eq!(reason[0].value, Value::Enumeration(code));
            assert_eq!(reason[1].value, Value::TextString("test".into()));
            if compromise.contains(&code) {
                assert_eq!(s.state(&uid), state::COMPROMISED);
                assert!(s.date(&uid, tag::COMPROMISE_DATE).unwrap() >= before);
                // No occurrence date given: the Initial Date.
                assert_eq!(
                    s.date(&uid, tag::COMPROMISE_OCCURRENCE_DATE),
                    s.date(&uid, tag::INITIAL_DATE)
                );
                assert_eq!(s.date(&uid, tag::DEACTIVATION_DATE), None);
            } else {
                assert_eq!(s.state(&uid), state::DEACTIVATED);
                assert!(s.date(&uid, tag::DEACTIVATION_DATE).unwrap() >= before);
                assert_eq!(s.date(&uid, tag::COMPROMISE_DATE), None);
            }
        }
    }
}

#[test]
fn compromise_occurrence_date_is_kept_and_refused_with_other_reasons() {
    let s = Server::new();
    let uid = s.in_state(state::ACTIVE);
    let when = 946_684_800; // 2000-01-01
    let a = s.one(
        V21,
        op::REVOKE,
        revoke_payload(&uid, rc::SUPERSEDED, Some(when)),
    );
    assert_eq!(a.result_reason, Some(rr::INVALID_FIELD));
    assert_eq!(s.state(&uid), state::ACTIVE);
    let a = s.one(
        V21,
        op::REVOKE,
        revoke_payload(&uid, rc::KEY_COMPROMISE, Some(when)),
    );
    assert_eq!(a.result_status, rs::SUCCESS);
    assert_eq!(s.date(&uid, tag::COMPROMISE_OCCURRENCE_DATE), Some(when));
}

#[test]
fn revoke_needs_a_known_reason() {
    let s = Server::new();
    let uid = s.in_state(state::ACTIVE);
    let a = s.revoke(V21, &uid, 0x99);
    assert_eq!(a.result_reason, Some(rr::INVALID_FIELD));
    let a = s.one(V21, op::REVOKE, vec![uid_item(&uid)]);
    assert_eq!(a.result_status, rs::OPERATION_FAILED);
    assert_eq!(s.state(&uid), state::ACTIVE);
    let a = s.revoke(V21, "no-such-object", rc::UNSPECIFIED);
    assert_eq!(a.result_reason, Some(rr::OBJECT_NOT_FOUND));
}

#[test]
fn destroy_drops_the_material_and_keeps_the_metadata() {
    for (from, to) in [
        (state::PRE_ACTIVE, state::DESTROYED),
        (state::DEACTIVATED, state::DESTROYED),
        (state::COMPROMISED, state::DESTROYED_COMPROMISED),
    ] {
        let s = Server::new();
        let uid = s.in_state(from);
        let before = now();
        let a = s.one(V21, op::DESTROY, vec![uid_item(&uid)]);
        assert_eq!(a.result_status, rs::SUCCESS);
        let o = s.object(&uid);
        assert!(o.object.is_none(), "key material removed");
        assert_eq!(s.state(&uid), to);
        assert!(s.date(&uid, tag::DESTROY_DATE).unwrap() >= before);
        assert!(o.attributes.get(tag::CRYPTOGRAPHIC_USAGE_MASK).is_some());
        // Get of a destroyed object fails; its attributes remain readable.
        let a = s.one(V21, op::GET, vec![uid_item(&uid)]);
        assert_eq!(a.result_status, rs::OPERATION_FAILED);
        assert_eq!(a.result_reason, Some(rr::OBJECT_DESTROYED));
        let a = s.one(V14, op::GET, vec![uid_item(&uid)]);
        assert_eq!(a.result_reason, Some(rr::ITEM_NOT_FOUND));
    }
}

#[test]
fn dates_in_the_past_at_registration() {
    let s = Server::new();
    let past = now() - 3600;
    let future = now() + 3600;
    let uid = s.register(V21, vec![build::datetime(tag::ACTIVATION_DATE, past)]);
    assert_eq!(s.state(&uid), state::ACTIVE);
    let uid = s.register(
        V21,
        vec![
            build::datetime(tag::ACTIVATION_DATE, past),
            build::datetime(tag::DEACTIVATION_DATE, past + 60),
        ],
    );
    assert_eq!(s.state(&uid), state::DEACTIVATED);
    // A deactivated object may be destroyed, and revoked for compromise (BL-M-7).
    let uid2 = s.register(
        V21,
        vec![
            build::datetime(tag::ACTIVATION_DATE, past),
            build::datetime(tag::DEACTIVATION_DATE, past + 60),
        ],
    );
    assert_eq!(
        s.revoke(V21, &uid2, rc::KEY_COMPROMISE).result_status,
        rs::SUCCESS
    );
    assert_eq!(s.state(&uid2), state::COMPROMISED);
    let a = s.one(V21, op::DESTROY, vec![uid_item(&uid)]);
    assert_eq!(a.result_status, rs::SUCCESS);
    let uid = s.register(V21, vec![build::datetime(tag::ACTIVATION_DATE, future)]);
    assert_eq!(s.state(&uid), state::PRE_ACTIVE);
    let uid = s.register(V14, vec![build::datetime(tag::ACTIVATION_DATE, past)]);
    assert_eq!(s.state(&uid), state::ACTIVE);
}

#[test]
fn check_usage_mask_and_placeholder() {
    let s = Server::new();
    let uid = s.register(V21, vec![build::usage_mask(cum::DECRYPT)]);
    let a = s.one(
        V21,
        op::CHECK,
        vec![uid_item(&uid), build::usage_mask(cum::DECRYPT)],
    );
    assert_eq!(a.result_status, rs::SUCCESS);
    assert_eq!(uid_of(&a), uid);
    let a = s.one(
        V21,
        op::CHECK,
        vec![
            uid_item(&uid),
            build::usage_mask(cum::ENCRYPT | cum::DECRYPT),
        ],
    );
    assert_eq!(
        a.result_reason,
        Some(rr::INCOMPATIBLE_CRYPTOGRAPHIC_USAGE_MASK)
    );
    assert!(a.payload.is_none());
    let a = s.one(
        V14,
        op::CHECK,
        vec![uid_item(&uid), build::usage_mask(cum::ENCRYPT)],
    );
    assert_eq!(a.result_reason, Some(rr::PERMISSION_DENIED));
    // In a batch, Check uses the ID Placeholder.
    let m = s.send(
        V21,
        vec![
            (
                op::REGISTER,
                register_payload(V21, vec![build::usage_mask(cum::SIGN)]),
            ),
            (op::CHECK, vec![build::usage_mask(cum::SIGN)]),
        ],
    );
    assert!(
        m.items.iter().all(|a| a.result_status == rs::SUCCESS),
        "{m:?}"
    );
}

#[test]
fn check_lease_time_and_usage_limits() {
    let s = Server::new();
    let uid = s.register(
        V21,
        vec![
            build::usage_mask(cum::ENCRYPT),
            Ttlv::new(tag::LEASE_TIME, Value::Interval(600)),
            build::structure(
                tag::USAGE_LIMITS,
                vec![
                    build::long(tag::USAGE_LIMITS_TOTAL, 100),
                    build::long(tag::USAGE_LIMITS_COUNT, 100),
                    build::enumeration(tag::USAGE_LIMITS_UNIT, 2),
                ],
            ),
        ],
    );
    let check = |extra: Ttlv| s.one(V21, op::CHECK, vec![uid_item(&uid), extra]);
    let lease = |n| Ttlv::new(tag::LEASE_TIME, Value::Interval(n));
    assert_eq!(check(lease(600)).result_status, rs::SUCCESS);
    assert_eq!(check(lease(601)).result_reason, Some(rr::PERMISSION_DENIED));
    assert_eq!(
        check(build::long(tag::USAGE_LIMITS_COUNT, 100)).result_status,
        rs::SUCCESS
    );
    assert_eq!(
        check(build::long(tag::USAGE_LIMITS_COUNT, 101)).result_reason,
        Some(rr::USAGE_LIMIT_EXCEEDED)
    );
}

/// The State an engine reports through GetAttributes (2.1).
fn reported_state(s: &Server, uid: &str) -> u32 {
    let a = s.one(
        V21,
        op::GET_ATTRIBUTES,
        vec![
            uid_item(uid),
            Ttlv::new(
                tag::ATTRIBUTE_REFERENCE,
                Value::Enumeration(tag::STATE.value()),
            ),
        ],
    );
    assert_eq!(a.result_status, rs::SUCCESS, "{a:?}");
    let mut found = None;
    a.payload.unwrap().walk(&mut |i, _| {
        if i.tag == tag::STATE {
            found = Some(i.value.clone());
        }
    });
    match found {
        Some(Value::Enumeration(v)) => v,
        other => panic!("no State in GetAttributes: {other:?}"),
    }
}

#[test]
fn a_deactivation_date_that_passes_changes_the_state_seen_by_reads_and_locate() {
    use std::sync::atomic::{AtomicI64, Ordering};
    let offset = Arc::new(AtomicI64::new(0));
    let clock_offset = Arc::clone(&offset);
    let store = Arc::new(MemoryStore::new());
    let config = EngineConfig {
        clock: kmipd_ops::Clock::from_fn(move || now() + clock_offset.load(Ordering::Relaxed)),
        ..EngineConfig::default()
    };
    let s = Server {
        engine: Engine::new(store.clone(), config),
        store,
        who: Principal::new("alice"),
    };
    let deactivation = Attribute::std(tag::DEACTIVATION_DATE, Value::DateTime(now() + 100)).to_v2();
    let uid = s.register(V21, vec![build::usage_mask(cum::ENCRYPT), deactivation]);
    let ok = |a: ResponseBatchItem| assert_eq!(a.result_status, rs::SUCCESS, "{a:?}");
    ok(s.one(V21, op::ACTIVATE, vec![uid_item(&uid)]));
    assert_eq!(reported_state(&s, &uid), state::ACTIVE);
    // Nothing wrote the object, but 200 seconds later its Deactivation Date has passed.
    offset.store(200, Ordering::Relaxed);
    assert_eq!(reported_state(&s, &uid), state::DEACTIVATED);
    let located = s.one(
        V21,
        op::LOCATE,
        vec![build::structure(
            tag::ATTRIBUTES,
            vec![Ttlv::new(
                tag::STATE,
                Value::Enumeration(state::DEACTIVATED),
            )],
        )],
    );
    assert_eq!(located.result_status, rs::SUCCESS, "{located:?}");
    assert_eq!(uid_of(&located), uid);
}
