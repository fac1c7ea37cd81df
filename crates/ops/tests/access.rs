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
use kmipd_proto::build;
use kmipd_proto::enums::{object_type, operation as op, result_reason, result_status};
use kmipd_proto::message::{ProtocolVersion, ResponseBatchItem};
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use engine::{attr, by_uid, ok, one, uids};
use kmipd_test_support::engine;

/// Creates an AES-256 key named `name` (2.1) and returns its identifier.
fn create(e: &Engine, who: &Principal, name: &str) -> String {
    let attrs = build::structure(
        tag::ATTRIBUTES,
        vec![
            build::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, 3),
            build::int(tag::CRYPTOGRAPHIC_LENGTH, 256),
            build::int(tag::CRYPTOGRAPHIC_USAGE_MASK, 0x0C),
            Ttlv::new(tag::NAME, engine::name(name)),
        ],
    );
    let item = one(
        e,
        who,
        ProtocolVersion::V2_1,
        op::CREATE,
        vec![
            build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
            attrs,
        ],
    );
    uids(&ok(&item)).remove(0)
}

fn locate_by_name(e: &Engine, who: &Principal, v: ProtocolVersion, name: &str) -> Vec<String> {
    let payload = if v.is_v2() {
        vec![build::structure(
            tag::ATTRIBUTES,
            vec![Ttlv::new(tag::NAME, engine::name(name))],
        )]
    } else {
        vec![attr("Name", engine::name(name))]
    };
    uids(&ok(&one(e, who, v, op::LOCATE, payload)))
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
            let theirs = one(&e, &bob, v, operation, by_uid(&a));
            let nobodys = one(&e, &bob, v, operation, by_uid("no-such-object"));
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
        let all_of_bob = uids(&ok(&one(&e, &bob, v, op::LOCATE, vec![])));
        assert_eq!(all_of_bob, vec![b.clone()]);
    }
    // Nothing happened to alice's key: she still gets it, and an administrator sees both.
    ok(&one(&e, &alice, ProtocolVersion::V2_1, op::GET, by_uid(&a)));
    let admin = Principal::admin("root");
    let all = uids(&ok(&one(
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
    let got = ok(&one(&e, &bob, v, op::GET, by_uid(&a)));
    assert!(got.iter().any(|i| i.tag == tag::SYMMETRIC_KEY));
    // Not granted: still absent.
    for operation in [op::GET_ATTRIBUTES, op::DESTROY, op::ACTIVATE] {
        let r = one(&e, &bob, v, operation, by_uid(&a));
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
    let attrs = ok(&one(&e, &alice, v, op::GET_ATTRIBUTES, by_uid(&a)));
    let text = format!("{attrs:?}");
    assert!(text.contains("kmipd-grant"), "{text}");
    let forged = one(
        &e,
        &alice,
        v,
        op::ADD_ATTRIBUTE,
        vec![
            build::unique_identifier(a.clone()),
            build::structure(
                tag::NEW_ATTRIBUTE,
                vec![build::structure(
                    tag::ATTRIBUTE,
                    vec![
                        build::text(tag::VENDOR_IDENTIFICATION, "y"),
                        build::text(tag::ATTRIBUTE_NAME, "kmipd-grant"),
                        build::text(tag::ATTRIBUTE_VALUE, "Destroy bob"),
                    ],
                )],
            ),
        ],
    );
    assert_eq!(forged.result_status, result_status::OPERATION_FAILED);

    // Revoking Get leaves Locate; revoking everything closes the object again.
    assert!(e.revoke_grant(&alice, &a, "bob", Some(&[op::GET])).unwrap());
    let r = one(&e, &bob, v, op::GET, by_uid(&a));
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
    let r = one(&e, &bob, v, op::DESTROY, by_uid(&a));
    assert_eq!(r.result_status, result_status::SUCCESS, "{r:?}");
    let r = one(&e, &alice, v, op::GET, by_uid(&a));
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
