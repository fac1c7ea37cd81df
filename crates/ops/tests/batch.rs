//! Batch and message semantics through the Engine (KMIP 1.4 §6-7 and §11.1, 2.1 §8-9): Batch
//! Error Continuation Stop/Continue/Undo, the ID Placeholder across items, the Unique Batch
//! Item ID echo, Maximum Response Size, versions (answer in the request's version, a newer
//! minor, a major mismatch), malformed messages, correlation values, Interop, Discover Versions
//! and Query in both major versions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use kmipd_ops::Principal;
use kmipd_proto::build;
use kmipd_proto::enums::{
    batch_error_continuation as bec, interop_function, object_type, operation as op,
    query_function as qf, result_reason as rr, result_status as rs, secret_data_type, state,
};
use kmipd_proto::message::{
    ProtocolVersion, RequestBatchItem, RequestHeader, RequestMessage, ResponseMessage,
};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_store::ObjectStore;
use kmipd_ttlv::{Ttlv, Value};

use engine::{Server, opaque_secret, uid_of};
use kmipd_test_support::engine;

const V21: ProtocolVersion = ProtocolVersion::V2_1;
const V14: ProtocolVersion = ProtocolVersion::V1_4;

fn header(v: ProtocolVersion, count: usize) -> RequestHeader {
    RequestHeader::new(v, i32::try_from(count).unwrap())
}

fn item(operation: u32, payload: Vec<Ttlv>) -> RequestBatchItem {
    RequestBatchItem::new(operation, payload)
}

fn message(v: ProtocolVersion, items: Vec<RequestBatchItem>) -> RequestMessage {
    RequestMessage {
        header: header(v, items.len()),
        items,
    }
}

fn register() -> RequestBatchItem {
    item(
        op::REGISTER,
        vec![
            build::enumeration(tag::OBJECT_TYPE, object_type::SECRET_DATA),
            build::structure(tag::ATTRIBUTES, vec![]),
            opaque_secret(secret_data_type::SEED, &[7u8; 16]),
        ],
    )
}

fn destroy(uid: &str) -> RequestBatchItem {
    item(op::DESTROY, vec![build::unique_identifier(uid)])
}

fn statuses(m: &ResponseMessage) -> Vec<u32> {
    m.items.iter().map(|a| a.result_status).collect()
}

#[test]
fn stop_is_the_default_ends_the_batch_and_keeps_what_was_done() {
    let s = Server::new();
    let mut m = message(V21, vec![register(), destroy("nope"), register()]);
    let answer = s.send_message(&m);
    assert_eq!(statuses(&answer), [rs::SUCCESS, rs::OPERATION_FAILED]);
    assert_eq!(answer.header.batch_count, 2);
    assert_eq!(answer.items[1].result_reason, Some(rr::OBJECT_NOT_FOUND));
    assert_eq!(s.count(), 1);
    m.header.batch_error_continuation_option = Some(bec::STOP);
    assert_eq!(
        statuses(&s.send_message(&m)),
        [rs::SUCCESS, rs::OPERATION_FAILED]
    );
    assert_eq!(s.count(), 2);
}

#[test]
fn continue_runs_every_item() {
    let s = Server::new();
    let mut m = message(V21, vec![register(), destroy("nope"), register()]);
    m.header.batch_error_continuation_option = Some(bec::CONTINUE);
    let answer = s.send_message(&m);
    assert_eq!(
        statuses(&answer),
        [rs::SUCCESS, rs::OPERATION_FAILED, rs::SUCCESS]
    );
    assert_eq!(answer.header.batch_count, 3);
    assert_eq!(s.count(), 2);
}

#[test]
fn undo_answers_operation_undone_and_leaves_no_trace() {
    let s = Server::new();
    let mut m = message(
        V21,
        vec![
            register(),
            item(op::ACTIVATE, vec![]),
            destroy("nope"),
            register(),
        ],
    );
    m.header.batch_error_continuation_option = Some(bec::UNDO);
    let answer = s.send_message(&m);
    assert_eq!(
        statuses(&answer),
        [
            rs::OPERATION_UNDONE,
            rs::OPERATION_UNDONE,
            rs::OPERATION_FAILED
        ]
    );
    // Undone is not a failure: the payload stays, but the object is gone.
    let uid = uid_of(&answer.items[0]);
    assert_eq!(uid_of(&answer.items[1]), uid);
    assert!(answer.items[0].result_reason.is_none());
    assert!(s.store.get(&uid).unwrap().is_none());
    assert_eq!(s.count(), 0);
    // An undone batch in which nothing fails is simply done.
    let mut m = message(V21, vec![register(), item(op::ACTIVATE, vec![])]);
    m.header.batch_error_continuation_option = Some(bec::UNDO);
    assert_eq!(statuses(&s.send_message(&m)), [rs::SUCCESS, rs::SUCCESS]);
    assert_eq!(s.count(), 1);
}

#[test]
fn the_id_placeholder_carries_across_items() {
    let s = Server::new();
    let m = message(
        V21,
        vec![
            register(),
            item(op::ACTIVATE, vec![]),
            item(
                op::REVOKE,
                vec![build::structure(
                    tag::REVOCATION_REASON,
                    vec![build::enumeration(tag::REVOCATION_REASON_CODE, 5)],
                )],
            ),
            item(op::DESTROY, vec![]),
        ],
    );
    let answer = s.send_message(&m);
    assert!(
        answer.items.iter().all(|a| a.result_status == rs::SUCCESS),
        "{answer:?}"
    );
    let uid = uid_of(&answer.items[0]);
    for a in &answer.items {
        assert_eq!(uid_of(a), uid);
    }
    let o = s.store.get(&uid).unwrap().unwrap();
    assert_eq!(
        o.attributes.get(tag::STATE),
        Some(&Value::Enumeration(state::DESTROYED))
    );
    // A new message starts without a placeholder.
    let a = s.send_message(&message(V21, vec![item(op::ACTIVATE, vec![])]));
    assert_eq!(a.items[0].result_status, rs::OPERATION_FAILED);
}

#[test]
fn unique_batch_item_ids_are_echoed_on_success_and_failure() {
    let s = Server::new();
    let mut a = register();
    a.unique_batch_item_id = Some(vec![0x01]);
    let mut b = destroy("nope");
    b.unique_batch_item_id = Some(vec![0xAB, 0xCD]);
    let c = register();
    let mut m = message(V14, vec![a, b, c]);
    m.header.batch_error_continuation_option = Some(bec::CONTINUE);
    let answer = s.send_message(&m);
    let ids: Vec<Option<Vec<u8>>> = answer
        .items
        .iter()
        .map(|a| a.unique_batch_item_id.clone())
        .collect();
    assert_eq!(ids, [Some(vec![0x01]), Some(vec![0xAB, 0xCD]), None]);
    assert_eq!(answer.items[1].operation, Some(op::DESTROY));
}

#[test]
fn maximum_response_size_gives_response_too_large_and_keeps_nothing() {
    let s = Server::new();
    let query = item(
        op::QUERY,
        vec![
            build::enumeration(tag::QUERY_FUNCTION, qf::QUERY_OPERATIONS),
            build::enumeration(tag::QUERY_FUNCTION, qf::QUERY_OBJECTS),
        ],
    );
    let mut m = message(V21, vec![register(), query]);
    m.header.maximum_response_size = Some(256);
    let answer = s.send_message(&m);
    assert_eq!(
        statuses(&answer),
        [rs::OPERATION_FAILED, rs::OPERATION_FAILED]
    );
    for a in &answer.items {
        assert_eq!(a.result_reason, Some(rr::RESPONSE_TOO_LARGE));
        assert!(a.payload.is_none());
    }
    assert_eq!(answer.items[1].operation, Some(op::QUERY));
    assert_eq!(s.count(), 0, "nothing of a too large answer is kept");
    m.header.maximum_response_size = Some(4096);
    assert_eq!(statuses(&s.send_message(&m)), [rs::SUCCESS, rs::SUCCESS]);
    assert_eq!(s.count(), 1);
}

#[test]
fn versions_answer_in_the_request_version_or_the_newest_minor_of_its_major() {
    let s = Server::new();
    for (asked, answered) in [
        ((1, 1), (1, 1)),
        ((1, 2), (1, 2)),
        ((1, 4), (1, 4)),
        ((1, 7), (1, 4)),
        ((2, 0), (2, 0)),
        ((2, 1), (2, 1)),
        ((2, 9), (2, 1)),
    ] {
        let v = ProtocolVersion::new(asked.0, asked.1);
        let m = message(v, vec![item(op::DISCOVER_VERSIONS, vec![])]);
        let answer = s.send_message(&m);
        assert_eq!(
            answer.header.protocol_version,
            ProtocolVersion::new(answered.0, answered.1),
            "{v}"
        );
        assert_eq!(statuses(&answer), [rs::SUCCESS], "{v}");
    }
}

#[test]
fn a_major_version_mismatch_gets_one_item_without_operation() {
    let s = Server::new();
    for v in [ProtocolVersion::new(3, 0), ProtocolVersion::new(0, 9)] {
        let m = message(v, vec![register(), item(op::QUERY, vec![])]);
        let answer = s.send_message(&m);
        assert_eq!(answer.header.protocol_version, V21);
        assert_eq!(answer.header.batch_count, 1);
        assert_eq!(answer.items.len(), 1);
        let a = &answer.items[0];
        assert_eq!(a.operation, None);
        assert_eq!(a.result_status, rs::OPERATION_FAILED);
        assert_eq!(a.result_reason, Some(rr::UNSUPPORTED_PROTOCOL_VERSION));
    }
    assert_eq!(s.count(), 0);
}

#[test]
fn operations_a_version_does_not_define_are_not_supported() {
    let s = Server::new();
    // Discover Versions came with 1.1.
    let old = s.send_message(&message(
        ProtocolVersion::new(1, 0),
        vec![item(op::DISCOVER_VERSIONS, vec![])],
    ));
    assert_eq!(old.header.protocol_version, ProtocolVersion::new(1, 0));
    assert_eq!(
        old.items[0].result_reason,
        Some(rr::OPERATION_NOT_SUPPORTED)
    );
    let interop = item(
        op::INTEROP,
        vec![build::enumeration(
            tag::INTEROP_FUNCTION,
            interop_function::BEGIN,
        )],
    );
    let log = item(op::LOG, vec![build::text(tag::LOG_MESSAGE, "hello")]);
    let mut m = message(V14, vec![interop.clone(), log.clone()]);
    m.header.batch_error_continuation_option = Some(bec::CONTINUE);
    let answer = s.send_message(&m);
    for a in &answer.items {
        assert_eq!(a.result_reason, Some(rr::OPERATION_NOT_SUPPORTED));
    }
    let answer = s.send_message(&message(V21, vec![interop, log]));
    assert_eq!(statuses(&answer), [rs::SUCCESS, rs::SUCCESS]);
    let unknown = s.send_message(&message(V21, vec![item(0x7777, vec![])]));
    assert_eq!(
        unknown.items[0].result_reason,
        Some(rr::OPERATION_NOT_SUPPORTED)
    );
}

#[test]
fn malformed_messages() {
    let s = Server::new();
    // Batch Count disagrees with the items.
    let mut m = message(V21, vec![register()]);
    m.header.batch_count = 2;
    let answer = s.send_message(&m);
    assert_eq!(answer.items[0].result_reason, Some(rr::INVALID_MESSAGE));
    assert_eq!(s.count(), 0);
    // One unreadable batch item fails alone (Operation as a Text String).
    let mut m = message(V21, vec![register(), register()]);
    m.header.batch_error_continuation_option = Some(bec::CONTINUE);
    let mut tree = m.to_ttlv();
    if let Value::Structure(children) = &mut tree.value {
        children[1] = build::structure(
            tag::BATCH_ITEM,
            vec![
                build::text(tag::OPERATION, "Register"),
                build::bytes(tag::UNIQUE_BATCH_ITEM_ID, vec![9]),
            ],
        );
    }
    let answer = s.send_tree(&tree);
    assert_eq!(statuses(&answer), [rs::OPERATION_FAILED, rs::SUCCESS]);
    assert_eq!(answer.items[0].result_reason, Some(rr::INVALID_MESSAGE));
    assert_eq!(answer.items[0].unique_batch_item_id, Some(vec![9]));
    assert_eq!(s.count(), 1);
    // No header: one item without Operation, Invalid Message.
    let bare = build::structure(tag::REQUEST_MESSAGE, vec![register().to_ttlv()]);
    let answer = s.send_tree(&bare);
    assert_eq!(answer.items.len(), 1);
    assert_eq!(answer.items[0].operation, None);
    assert_eq!(answer.items[0].result_reason, Some(rr::INVALID_MESSAGE));
    // Not a request at all.
    let answer = s.send_tree(&build::structure(tag::RESPONSE_MESSAGE, vec![]));
    assert_eq!(answer.items[0].result_reason, Some(rr::INVALID_MESSAGE));
    // Undecodable bytes.
    let bytes = s
        .engine
        .handle_bytes(&s.who, &[0x42, 0x00, 0x78, 0x01, 0, 0, 0, 9]);
    let tree = kmipd_ttlv::decode(&bytes, &kmipd_ttlv::Limits::default()).unwrap();
    let answer = ResponseMessage::from_ttlv(&tree).unwrap();
    assert_eq!(answer.items[0].result_reason, Some(rr::INVALID_MESSAGE));
}

#[test]
fn a_critical_message_extension_is_refused() {
    let s = Server::new();
    let mut critical = register();
    critical.message_extension = Some(build::structure(
        tag::MESSAGE_EXTENSION,
        vec![
            build::text(tag::VENDOR_IDENTIFICATION, "acme"),
            build::boolean(tag::CRITICALITY_INDICATOR, true),
            build::structure(tag::VENDOR_EXTENSION, vec![]),
        ],
    ));
    let answer = s.send_message(&message(V14, vec![critical.clone()]));
    assert_eq!(
        answer.items[0].result_reason,
        Some(rr::FEATURE_NOT_SUPPORTED)
    );
    let mut optional = critical;
    optional.message_extension = Some(build::structure(
        tag::MESSAGE_EXTENSION,
        vec![
            build::text(tag::VENDOR_IDENTIFICATION, "acme"),
            build::boolean(tag::CRITICALITY_INDICATOR, false),
            build::structure(tag::VENDOR_EXTENSION, vec![]),
        ],
    ));
    let answer = s.send_message(&message(V14, vec![optional]));
    assert_eq!(statuses(&answer), [rs::SUCCESS]);
}

#[test]
fn correlation_values() {
    let s = Server::new();
    let mut m = message(V14, vec![item(op::DISCOVER_VERSIONS, vec![])]);
    m.header.client_correlation_value = Some("client-side".into());
    let a = s.send_message(&m).header;
    assert_eq!(a.client_correlation_value, None, "not echoed to the client");
    let first = a
        .server_correlation_value
        .expect("server correlation value");
    let again = s.send_message(&m).header.server_correlation_value.unwrap();
    assert_ne!(first, again, "unique per response");
    let old = s.send_message(&message(
        ProtocolVersion::new(1, 2),
        vec![item(op::DISCOVER_VERSIONS, vec![])],
    ));
    assert_eq!(
        old.header.server_correlation_value, None,
        "1.2 has no such field"
    );
}

#[test]
fn interop_reset_deletes_the_callers_objects_only() {
    let s = Server::new();
    s.send_message(&message(V21, vec![register(), register()]));
    let bob = Principal::new("bob");
    s.engine
        .handle_message(&bob, &message(V21, vec![register()]).to_ttlv());
    assert_eq!(s.count(), 3);
    let reset = |f| {
        item(
            op::INTEROP,
            vec![
                build::enumeration(tag::INTEROP_FUNCTION, f),
                build::text(tag::INTEROP_IDENTIFIER, "T-1"),
            ],
        )
    };
    let answer = s.send_message(&message(
        V21,
        vec![reset(interop_function::BEGIN), reset(interop_function::END)],
    ));
    assert_eq!(statuses(&answer), [rs::SUCCESS, rs::SUCCESS]);
    assert_eq!(s.count(), 3);
    let answer = s.send_message(&message(V21, vec![reset(interop_function::RESET)]));
    assert_eq!(statuses(&answer), [rs::SUCCESS]);
    let left = s.store.all().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].owner, "bob");
    let bad = s.send_message(&message(V21, vec![reset(9)]));
    assert_eq!(bad.items[0].result_reason, Some(rr::INVALID_FIELD));
}

fn versions_of(payload: Option<&Ttlv>) -> Vec<(i32, i32)> {
    StructReader::any(payload.unwrap())
        .unwrap()
        .repeated(tag::PROTOCOL_VERSION)
        .map(|v| {
            let v = ProtocolVersion::from_ttlv(v).unwrap();
            (v.major, v.minor)
        })
        .collect()
}

#[test]
fn discover_versions() {
    let s = Server::new();
    let ask = |v: ProtocolVersion, list: &[(i32, i32)]| {
        let payload = list
            .iter()
            .map(|(a, b)| ProtocolVersion::new(*a, *b).to_ttlv())
            .collect();
        let answer = s.send_message(&message(v, vec![item(op::DISCOVER_VERSIONS, payload)]));
        versions_of(answer.items[0].payload.as_ref())
    };
    assert_eq!(
        ask(ProtocolVersion::new(1, 2), &[]),
        [(1, 2), (1, 1), (1, 0)]
    );
    assert_eq!(
        ask(V21, &[]),
        [(2, 1), (2, 0), (1, 4), (1, 3), (1, 2), (1, 1), (1, 0)]
    );
    assert_eq!(ask(V14, &[(9, 31)]), Vec::<(i32, i32)>::new());
    assert_eq!(
        ask(
            ProtocolVersion::new(1, 1),
            &[(1, 0), (2, 1), (3, 0), (1, 4)]
        ),
        [(1, 0), (2, 1), (1, 4)]
    );
}

fn query(s: &Server, v: ProtocolVersion, functions: &[u32]) -> (u32, Option<u32>, Vec<Ttlv>) {
    let payload = functions
        .iter()
        .map(|f| build::enumeration(tag::QUERY_FUNCTION, *f))
        .collect();
    let mut answer = s.send_message(&message(v, vec![item(op::QUERY, payload)]));
    let a = answer.items.remove(0);
    let items = match a.payload.map(|p| p.value) {
        Some(Value::Structure(items)) => items,
        _ => Vec::new(),
    };
    (a.result_status, a.result_reason, items)
}

#[test]
fn query_answers_in_the_request_version() {
    let s = Server::new();
    let all = [
        qf::QUERY_OPERATIONS,
        qf::QUERY_OBJECTS,
        qf::QUERY_SERVER_INFORMATION,
    ];
    let (status, _, v14) = query(&s, V14, &all);
    assert_eq!(status, rs::SUCCESS);
    let ops14: Vec<&Value> = v14
        .iter()
        .filter(|i| i.tag == tag::OPERATION)
        .map(|i| &i.value)
        .collect();
    assert!(ops14.contains(&&Value::Enumeration(op::REVOKE)));
    assert!(
        !ops14.contains(&&Value::Enumeration(op::INTEROP)),
        "2.x only"
    );
    assert!(v14.iter().any(|i| i.tag == tag::OBJECT_TYPE));
    let info = v14
        .iter()
        .find(|i| i.tag == tag::SERVER_INFORMATION)
        .unwrap();
    assert_eq!(
        info.value,
        Value::Structure(vec![]),
        "1.x defines no fields"
    );
    assert!(v14.iter().any(|i| i.tag == tag::VENDOR_IDENTIFICATION));

    let (_, _, v21) = query(&s, V21, &all);
    assert!(
        v21.iter()
            .any(|i| i.value == Value::Enumeration(op::INTEROP))
    );
    let info = v21
        .iter()
        .find(|i| i.tag == tag::SERVER_INFORMATION)
        .unwrap();
    let info = StructReader::any(info).unwrap();
    assert_eq!(info.req_text(tag::SERVER_NAME).unwrap(), "kmipd");

    // Query Capabilities came with 1.3; Defaults Information with 2.0.
    let (_, reason, _) = query(&s, ProtocolVersion::new(1, 2), &[qf::QUERY_CAPABILITIES]);
    assert_eq!(reason, Some(rr::INVALID_FIELD));
    let (_, reason, _) = query(&s, V14, &[qf::QUERY_DEFAULTS_INFORMATION]);
    assert_eq!(reason, Some(rr::INVALID_FIELD));
    let (_, _, caps) = query(&s, V14, &[qf::QUERY_CAPABILITIES, qf::QUERY_RNGS]);
    // In the response payload's order: RNG Parameters before Capability Information.
    assert_eq!(caps[0].tag, tag::RNG_PARAMETERS);
    let cap = StructReader::any(&caps[1]).unwrap();
    assert_eq!(cap.boolean(tag::BATCH_UNDO_CAPABILITY).unwrap(), Some(true));
    assert!(
        cap.optional(tag::QUANTUM_SAFE_CAPABILITY).is_none(),
        "2.1 only"
    );
    let (status, _, extras) = query(
        &s,
        V21,
        &[
            qf::QUERY_DEFAULTS_INFORMATION,
            qf::QUERY_STORAGE_PROTECTION_MASKS,
            qf::QUERY_PROFILES,
        ],
    );
    assert_eq!(status, rs::SUCCESS);
    // Profiles first (the claimed server profiles; see operations/query.rs), then the rest.
    let tags: Vec<_> = extras
        .iter()
        .map(|i| i.tag)
        .filter(|t| *t != tag::PROFILE_INFORMATION)
        .collect();
    assert_eq!(
        tags,
        [tag::DEFAULTS_INFORMATION, tag::PROTECTION_STORAGE_MASKS]
    );
    assert_eq!(extras[0].tag, tag::PROFILE_INFORMATION);
    // No Query Function: an empty answer.
    let (status, _, none) = query(&s, V21, &[]);
    assert_eq!((status, none.len()), (rs::SUCCESS, 0));
}

/// `prepare` answers without storing anything; `complete` stores the changes and gives the
/// same answer `handle_message` would. A first Get clears Fresh (a change), a repeat Get has
/// none; dropping a prepared request discards its changes.
#[test]
fn prepare_stores_nothing_and_complete_stores_the_changes() {
    let s = Server::new();
    let created = s.one(V21, op::CREATE, engine::create_aes256_v2());
    let uid = uid_of(&created);
    let fresh = |s: &Server| {
        s.store
            .get(&uid)
            .unwrap()
            .unwrap()
            .attributes
            .get(tag::FRESH)
            .cloned()
    };
    assert_eq!(fresh(&s), Some(Value::Boolean(true)));

    let get = message(V21, vec![item(op::GET, engine::by_uid(&uid))]).to_ttlv();
    assert!(kmipd_ops::Engine::is_light(&get));
    // Prepared, then dropped: the object stays Fresh.
    let dropped = s.engine.prepare(&s.who, &get);
    assert!(dropped.needs_commit(), "a first Get clears Fresh");
    drop(dropped);
    assert_eq!(fresh(&s), Some(Value::Boolean(true)));
    // Prepared: nothing stored yet; completed: stored, and the answer is a success.
    let prepared = s.engine.prepare(&s.who, &get);
    assert!(prepared.needs_commit());
    assert_eq!(fresh(&s), Some(Value::Boolean(true)));
    let answer =
        ResponseMessage::from_ttlv(&s.engine.complete(prepared).unwrap().response).unwrap();
    assert_eq!(answer.items[0].result_status, rs::SUCCESS);
    assert_eq!(fresh(&s), Some(Value::Boolean(false)));
    // A repeat Get changes nothing: no commit, the same items as handle_message answers
    // (the headers differ by their server correlation value).
    let again = s.engine.prepare(&s.who, &get);
    assert!(!again.needs_commit());
    let via_prepare =
        ResponseMessage::from_ttlv(&s.engine.complete(again).unwrap().response).unwrap();
    let direct = ResponseMessage::from_ttlv(&s.engine.handle_message(&s.who, &get)).unwrap();
    assert_eq!(via_prepare.items, direct.items);
    assert_eq!(via_prepare.items[0].result_status, rs::SUCCESS);
}

/// `complete_then` gives the answer `complete` would, after the store's commit: a Create is
/// stored when `done` runs, and a request without changes is answered at once.
#[test]
fn complete_then_answers_once_the_changes_are_stored() {
    let s = Server::new();
    let create = message(V21, vec![item(op::CREATE, engine::create_aes256_v2())]).to_ttlv();
    let (tx, rx) = std::sync::mpsc::channel();
    s.engine
        .complete_then(s.engine.prepare(&s.who, &create), move |answer| {
            tx.send(answer.unwrap().response).unwrap();
        });
    let answer = ResponseMessage::from_ttlv(&rx.recv().unwrap()).unwrap();
    let uid = uid_of(&answer.items[0]);
    assert!(s.store.get(&uid).unwrap().is_some());
    // Nothing to store: `done` runs before complete_then returns.
    let get = message(
        V21,
        vec![item(op::GET_ATTRIBUTE_LIST, engine::by_uid(&uid))],
    )
    .to_ttlv();
    let prepared = s.engine.prepare(&s.who, &get);
    assert!(!prepared.needs_commit());
    let (tx, rx) = std::sync::mpsc::channel();
    s.engine
        .complete_then(prepared, move |a| tx.send(a.unwrap().response).unwrap());
    let answered = rx
        .try_recv()
        .expect("answered before complete_then returned");
    let answered = ResponseMessage::from_ttlv(&answered).unwrap();
    assert_eq!(answered.items[0].result_status, rs::SUCCESS);
}

/// Which requests a server may prepare on its async threads: every item light, a short batch.
#[test]
fn light_requests_are_reads_and_short_batches() {
    use kmipd_ops::Engine;
    let get = || item(op::GET, engine::by_uid("x"));
    assert!(Engine::is_light(&message(V21, vec![get()]).to_ttlv()));
    assert!(Engine::is_light(
        &message(V14, vec![get(), item(op::ACTIVATE, engine::by_uid("x"))]).to_ttlv()
    ));
    // Symmetric key generation is light; asymmetric key generation, scans, RSA private-key
    // work and key parsing are not.
    assert!(Engine::is_light(
        &message(V21, vec![item(op::CREATE, engine::create_aes256_v2())]).to_ttlv()
    ));
    for heavy in [
        op::CREATE_KEY_PAIR,
        op::REGISTER,
        op::LOCATE,
        op::SIGN,
        op::DECRYPT,
        op::DERIVE_KEY,
    ] {
        let m = message(V21, vec![get(), item(heavy, Vec::new())]);
        assert!(!Engine::is_light(&m.to_ttlv()), "operation {heavy:#x}");
    }
    // Too many items, no items, an unknown operation, not a request at all.
    assert!(!Engine::is_light(
        &message(V21, (0..9).map(|_| get()).collect()).to_ttlv()
    ));
    assert!(Engine::is_light(
        &message(V21, (0..8).map(|_| get()).collect()).to_ttlv()
    ));
    assert!(!Engine::is_light(&message(V21, Vec::new()).to_ttlv()));
    assert!(!Engine::is_light(
        &message(V21, vec![item(0x7777, Vec::new())]).to_ttlv()
    ));
    assert!(!Engine::is_light(&Ttlv::new(
        tag::REQUEST_MESSAGE,
        Value::Integer(1)
    )));
}
