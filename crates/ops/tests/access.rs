//! Access control through the public engine: two identities cannot see each other's objects
//! (Get, Get Attributes, Locate, Destroy answer exactly as for a missing object), an owner
//! grants named operations to another identity and revokes them, and only the owner or an
//! administrator may grant.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use kmipd_ops::access::{self, Grant};
use kmipd_ops::{Engine, Error, Principal};
use kmipd_proto::enums::{object_type, operation as op, result_reason, result_status};
use kmipd_proto::message::{
    ProtocolVersion, RequestBatchItem, RequestHeader, RequestMessage, ResponseBatchItem,
    ResponseMessage,
};
use kmipd_proto::reader::{self, StructReader};
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

fn request(version: ProtocolVersion, operation: u32, payload: Vec<Ttlv>) -> Ttlv {
    RequestMessage {
        header: RequestHeader {
            protocol_version: version,
            maximum_response_size: None,
            client_correlation_value: None,
            server_correlation_value: None,
            asynchronous_indicator: None,
            attestation_capable_indicator: None,
            authentication: None,
            batch_error_continuation_option: None,
            batch_order_option: None,
            time_stamp: None,
            batch_count: 1,
        },
        items: vec![RequestBatchItem {
            operation,
            ephemeral: None,
            unique_batch_item_id: None,
            payload: Some(reader::structure(tag::REQUEST_PAYLOAD, payload)),
            message_extension: None,
        }],
    }
    .to_ttlv()
}

fn send(
    e: &Engine,
    who: &Principal,
    version: ProtocolVersion,
    operation: u32,
    payload: Vec<Ttlv>,
) -> ResponseBatchItem {
    let out = e.handle_message(who, &request(version, operation, payload));
    ResponseMessage::from_ttlv(&out).unwrap().items.remove(0)
}

fn payload_items(item: &ResponseBatchItem) -> Vec<Ttlv> {
    assert_eq!(
        item.result_status,
        result_status::SUCCESS,
        "{:?} {:?}",
        item.result_reason,
        item.result_message
    );
    StructReader::any(item.payload.as_ref().unwrap())
        .unwrap()
        .items()
        .to_vec()
}

fn uids(items: &[Ttlv]) -> Vec<String> {
    items
        .iter()
        .filter(|i| i.tag == tag::UNIQUE_IDENTIFIER)
        .map(|i| reader::as_text(i).unwrap().to_owned())
        .collect()
}

/// Creates an AES-256 key named `name` (2.1) and returns its identifier.
fn create(e: &Engine, who: &Principal, name: &str) -> String {
    let attrs = reader::structure(
        tag::ATTRIBUTES,
        vec![
            reader::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, 3),
            reader::int(tag::CRYPTOGRAPHIC_LENGTH, 256),
            reader::int(tag::CRYPTOGRAPHIC_USAGE_MASK, 0x0C),
            reader::structure(
                tag::NAME,
                vec![
                    reader::text(tag::NAME_VALUE, name),
                    reader::enumeration(tag::NAME_TYPE, 1),
                ],
            ),
        ],
    );
    let item = send(
        e,
        who,
        ProtocolVersion::V2_1,
        op::CREATE,
        vec![
            reader::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
            attrs,
        ],
    );
    uids(&payload_items(&item)).remove(0)
}

fn by_uid(uid: &str) -> Vec<Ttlv> {
    vec![reader::text(tag::UNIQUE_IDENTIFIER, uid)]
}

fn locate_by_name(e: &Engine, who: &Principal, v: ProtocolVersion, name: &str) -> Vec<String> {
    let name = reader::structure(
        tag::NAME,
        vec![
            reader::text(tag::NAME_VALUE, name),
            reader::enumeration(tag::NAME_TYPE, 1),
        ],
    );
    let payload = if v.is_v2() {
        vec![reader::structure(tag::ATTRIBUTES, vec![name])]
    } else {
        vec![reader::structure(
            tag::ATTRIBUTE,
            vec![
                reader::text(tag::ATTRIBUTE_NAME, "Name"),
                Ttlv::new(tag::ATTRIBUTE_VALUE, name.value),
            ],
        )]
    };
    uids(&payload_items(&send(e, who, v, op::LOCATE, payload)))
}

/// The failure an identifier nobody ever used gets, for comparison.
fn failure(item: &ResponseBatchItem) -> (u32, Option<u32>, Option<String>) {
    (
        item.result_status,
        item.result_reason,
        item.result_message.clone(),
    )
}

#[test]
fn two_identities_cannot_see_each_others_objects_which_look_absent() {
    let e = Engine::in_memory();
    let alice = Principal::new("alice");
    let bob = Principal::new("bob");
    let a = create(&e, &alice, "alice-key");
    let b = create(&e, &bob, "bob-key");
    for v in [
        ProtocolVersion::V1_4,
        ProtocolVersion::V2_0,
        ProtocolVersion::V2_1,
    ] {
        for operation in [op::GET, op::GET_ATTRIBUTES, op::DESTROY, op::ACTIVATE] {
            let theirs = send(&e, &bob, v, operation, by_uid(&a));
            let nobodys = send(&e, &bob, v, operation, by_uid("no-such-object"));
            assert_eq!(theirs.result_status, result_status::OPERATION_FAILED);
            assert_eq!(failure(&theirs), failure(&nobodys), "{v} op {operation}");
            let expected = if v >= ProtocolVersion::V2_1 {
                result_reason::OBJECT_NOT_FOUND
            } else {
                result_reason::ITEM_NOT_FOUND
            };
            assert_eq!(theirs.result_reason, Some(expected));
        }
        assert!(locate_by_name(&e, &bob, v, "alice-key").is_empty());
        assert_eq!(locate_by_name(&e, &bob, v, "bob-key"), vec![b.clone()]);
        assert_eq!(locate_by_name(&e, &alice, v, "alice-key"), vec![a.clone()]);
        let all_of_bob = uids(&payload_items(&send(&e, &bob, v, op::LOCATE, vec![])));
        assert_eq!(all_of_bob, vec![b.clone()]);
    }
    // Nothing happened to alice's key: she still gets it, and an administrator sees both.
    payload_items(&send(
        &e,
        &alice,
        ProtocolVersion::V2_1,
        op::GET,
        by_uid(&a),
    ));
    let admin = Principal::admin("root");
    let all = uids(&payload_items(&send(
        &e,
        &admin,
        ProtocolVersion::V2_1,
        op::LOCATE,
        vec![],
    )));
    assert_eq!(all, [b, a]);
}

#[test]
fn a_grant_opens_exactly_the_granted_operations_until_it_is_revoked() {
    let e = Engine::in_memory();
    let alice = Principal::new("alice");
    let bob = Principal::new("bob");
    let a = create(&e, &alice, "shared");
    let v = ProtocolVersion::V2_1;

    e.grant(&alice, &a, "bob", &[op::GET, op::LOCATE]).unwrap();
    assert_eq!(
        e.grants(&alice, &a).unwrap(),
        [Grant {
            grantee: "bob".into(),
            operations: vec![op::LOCATE, op::GET]
        }]
    );
    assert_eq!(locate_by_name(&e, &bob, v, "shared"), vec![a.clone()]);
    let got = payload_items(&send(&e, &bob, v, op::GET, by_uid(&a)));
    assert!(got.iter().any(|i| i.tag == tag::SYMMETRIC_KEY));
    // Not granted: still absent.
    for operation in [op::GET_ATTRIBUTES, op::DESTROY, op::ACTIVATE] {
        let r = send(&e, &bob, v, operation, by_uid(&a));
        assert_eq!(r.result_reason, Some(result_reason::OBJECT_NOT_FOUND));
    }
    // A third identity sees nothing; the grantee cannot pass the grant on.
    assert!(locate_by_name(&e, &Principal::new("carol"), v, "shared").is_empty());
    assert!(matches!(
        e.grant(&bob, &a, "carol", &[op::GET]),
        Err(Error::NotFound)
    ));
    assert!(matches!(e.grants(&bob, &a), Err(Error::NotFound)));

    // The grant attribute is the server's: the owner cannot forge or delete it over KMIP.
    let attrs = payload_items(&send(&e, &alice, v, op::GET_ATTRIBUTES, by_uid(&a)));
    let text = format!("{attrs:?}");
    assert!(text.contains("kmipd-grant"), "{text}");
    let forged = send(
        &e,
        &alice,
        v,
        op::ADD_ATTRIBUTE,
        vec![
            reader::text(tag::UNIQUE_IDENTIFIER, a.clone()),
            reader::structure(
                tag::NEW_ATTRIBUTE,
                vec![reader::structure(
                    tag::ATTRIBUTE,
                    vec![
                        reader::text(tag::VENDOR_IDENTIFICATION, "y"),
                        reader::text(tag::ATTRIBUTE_NAME, "kmipd-grant"),
                        reader::text(tag::ATTRIBUTE_VALUE, "Destroy bob"),
                    ],
                )],
            ),
        ],
    );
    assert_eq!(forged.result_status, result_status::OPERATION_FAILED);

    // Revoking Get leaves Locate; revoking everything closes the object again.
    assert!(e.revoke_grant(&alice, &a, "bob", Some(&[op::GET])).unwrap());
    let r = send(&e, &bob, v, op::GET, by_uid(&a));
    assert_eq!(r.result_reason, Some(result_reason::OBJECT_NOT_FOUND));
    assert_eq!(locate_by_name(&e, &bob, v, "shared"), vec![a.clone()]);
    assert!(e.revoke_grant(&alice, &a, "bob", None).unwrap());
    assert!(!e.revoke_grant(&alice, &a, "bob", None).unwrap());
    assert!(locate_by_name(&e, &bob, v, "shared").is_empty());
    assert!(e.grants(&alice, &a).unwrap().is_empty());

    // An administrator may grant on anyone's object, including Destroy.
    let admin = Principal::admin("root");
    e.grant(
        &admin,
        &a,
        "bob",
        &[access::operation_by_name("Destroy").unwrap()],
    )
    .unwrap();
    let r = send(&e, &bob, v, op::DESTROY, by_uid(&a));
    assert_eq!(r.result_status, result_status::SUCCESS, "{r:?}");
    let r = send(&e, &alice, v, op::GET, by_uid(&a));
    assert_eq!(r.result_status, result_status::OPERATION_FAILED);
}

#[test]
fn grants_are_refused_for_missing_objects_and_empty_requests() {
    let e = Engine::in_memory();
    let alice = Principal::new("alice");
    let a = create(&e, &alice, "k");
    assert!(matches!(
        e.grant(&alice, "nope", "bob", &[op::GET]),
        Err(Error::NotFound)
    ));
    assert!(e.grant(&alice, &a, "bob", &[]).is_err());
    assert!(e.grant(&alice, &a, "", &[op::GET]).is_err());
    assert!(e.grant(&alice, &a, "bob\nop", &[op::GET]).is_err());
}
