//! Attribute operations and Locate through the public engine, in the flows real clients use
//! (docs: ../shared/notes/clients.md): vSphere's GetAttributes of an `x-` attribute not yet set
//! and its batch of Add Attributes, Percona's Locate by Object Group paged with Offset Items,
//! pg_tde's Locate under a 1.0 header, and Locate never showing another client's objects.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use kmipd_ops::{Engine, Principal};
use kmipd_proto::build;
use kmipd_proto::enums::{object_type, operation, result_reason, result_status};
use kmipd_proto::message::{ProtocolVersion, RequestBatchItem, RequestMessage, ResponseBatchItem};
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use engine::{attr, name, ok, secret_data, uids};
use kmipd_test_support::engine;

fn request(version: ProtocolVersion, items: Vec<(u32, Vec<Ttlv>)>) -> Ttlv {
    RequestMessage::new(
        version,
        items
            .into_iter()
            .enumerate()
            .map(|(i, (op, payload))| RequestBatchItem {
                unique_batch_item_id: Some(vec![u8::try_from(i).unwrap()]),
                ..RequestBatchItem::new(op, payload)
            })
            .collect(),
    )
    .to_ttlv()
}

/// Sends a batch whose items carry Unique Batch Item IDs 0, 1, ...; the answers.
fn send(
    e: &Engine,
    who: &str,
    version: ProtocolVersion,
    items: Vec<(u32, Vec<Ttlv>)>,
) -> Vec<ResponseBatchItem> {
    engine::exchange_tree(e, &Principal::new(who), &request(version, items)).items
}

/// Registers a 1.x Secret Data with these template attributes; returns its identifier.
fn register(e: &Engine, who: &str, attrs: Vec<Ttlv>) -> String {
    let secret = secret_data(2, 2, &[7u8; 16]);
    let mut template = vec![attr(
        "Cryptographic Usage Mask",
        Value::Integer(0x0000_0200),
    )];
    template.extend(attrs);
    let items = send(
        e,
        who,
        ProtocolVersion::V1_4,
        vec![(
            operation::REGISTER,
            vec![
                build::enumeration(tag::OBJECT_TYPE, object_type::SECRET_DATA),
                build::structure(tag::TEMPLATE_ATTRIBUTE, template),
                secret,
            ],
        )],
    );
    uids(&ok(&items[0])).remove(0)
}

#[test]
fn vsphere_reads_an_unset_custom_attribute_then_adds_three_in_one_batch() {
    let e = Engine::in_memory();
    let uid = register(&e, "vc", vec![]);
    let v = ProtocolVersion::new(1, 1);
    let got = send(
        &e,
        "vc",
        v,
        vec![(
            operation::GET_ATTRIBUTES,
            vec![
                build::unique_identifier(uid.clone()),
                build::text(tag::ATTRIBUTE_NAME, "x-Product_Version"),
            ],
        )],
    );
    assert_eq!(ok(&got[0]), vec![build::unique_identifier(uid.clone())]);
    let add = |n: &str| {
        (
            operation::ADD_ATTRIBUTE,
            vec![
                build::unique_identifier(uid.clone()),
                attr(n, Value::TextString(format!("{n}-value"))),
            ],
        )
    };
    let got = send(
        &e,
        "vc",
        v,
        vec![add("x-Product"), add("x-Product_Version"), add("x-Vendor")],
    );
    assert_eq!(got.len(), 3);
    for (i, item) in got.iter().enumerate() {
        assert_eq!(
            item.unique_batch_item_id,
            Some(vec![u8::try_from(i).unwrap()])
        );
        ok(item);
    }
    let got = send(
        &e,
        "vc",
        v,
        vec![(
            operation::GET_ATTRIBUTES,
            vec![
                build::unique_identifier(uid.clone()),
                build::text(tag::ATTRIBUTE_NAME, "x-Product_Version"),
            ],
        )],
    );
    assert_eq!(
        ok(&got[0])[1],
        attr(
            "x-Product_Version",
            Value::TextString("x-Product_Version-value".into())
        )
    );
}

#[test]
fn locate_by_object_group_pages_newest_first_and_counts_located_items() {
    let e = Engine::in_memory();
    let group = || attr("Object Group", Value::TextString("mysql".into()));
    let registered: Vec<String> = (0..5).map(|_| register(&e, "db", vec![group()])).collect();
    register(
        &e,
        "db",
        vec![attr("Object Group", Value::TextString("other".into()))],
    );
    let page = |offset: i32| {
        let got = send(
            &e,
            "db",
            ProtocolVersion::V1_4,
            vec![(
                operation::LOCATE,
                vec![
                    build::int(tag::MAXIMUM_ITEMS, 2),
                    build::int(tag::OFFSET_ITEMS, offset),
                    group(),
                ],
            )],
        );
        ok(&got[0])
    };
    let mut seen = Vec::new();
    for offset in [0, 2, 4] {
        let p = page(offset);
        assert_eq!(p[0], build::int(tag::LOCATED_ITEMS, 5));
        seen.extend(uids(&p));
    }
    let newest_first: Vec<String> = registered.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
}

#[test]
fn locate_under_a_1_0_header_finds_one_by_name_and_never_another_clients_object() {
    let e = Engine::in_memory();
    let mine = register(&e, "pg", vec![attr("Name", name("tde-key-1"))]);
    register(&e, "intruder-target", vec![attr("Name", name("master"))]);
    let locate = |who: &str, n: &str| {
        let got = send(
            &e,
            who,
            ProtocolVersion::V1_0,
            vec![(
                operation::LOCATE,
                vec![
                    build::int(tag::MAXIMUM_ITEMS, 16),
                    build::int(tag::OFFSET_ITEMS, 0),
                    attr("Object Type", Value::Enumeration(object_type::SECRET_DATA)),
                    attr("Name", name(n)),
                ],
            )],
        );
        ok(&got[0])
    };
    let found = locate("pg", "tde-key-1");
    assert_eq!(
        found,
        vec![build::unique_identifier(mine)],
        "no Located Items in 1.0"
    );
    assert!(locate("pg", "master").is_empty());
    assert!(locate("pg", "tde-key-2").is_empty());
}

/// The one Name rule (`attrs::check_names_free`): a Name is checked in KMIP 2.x only, and is
/// held only by objects the caller may see that are not destroyed.
#[test]
fn a_name_is_held_in_2_x_by_visible_objects_that_are_not_destroyed() {
    let e = Engine::in_memory();
    let v14 = ProtocolVersion::V1_4;
    let v21 = ProtocolVersion::V2_1;
    let add_name = |who: &str, version: ProtocolVersion, uid: &str, n: &str| {
        let new = if version == v21 {
            build::structure(tag::NEW_ATTRIBUTE, vec![Ttlv::new(tag::NAME, name(n))])
        } else {
            attr("Name", name(n))
        };
        let got = send(
            &e,
            who,
            version,
            vec![(
                operation::ADD_ATTRIBUTE,
                vec![build::text(tag::UNIQUE_IDENTIFIER, uid), new],
            )],
        );
        (got[0].result_status, got[0].result_reason)
    };
    let success = (result_status::SUCCESS, None);
    let taken = (
        result_status::OPERATION_FAILED,
        Some(result_reason::NON_UNIQUE_NAME_ATTRIBUTE),
    );
    // Version: 1.x registers and adds a Name in use; 2.x refuses it.
    register(&e, "a", vec![attr("Name", name("dup"))]);
    register(&e, "a", vec![attr("Name", name("dup"))]);
    let third = register(&e, "a", vec![]);
    assert_eq!(add_name("a", v14, &third, "dup"), success);
    let fourth = register(&e, "a", vec![]);
    assert_eq!(add_name("a", v21, &fourth, "dup"), taken);
    // Visibility: objects another identity cannot see do not hold their Names against it.
    let bs = register(&e, "b", vec![]);
    assert_eq!(add_name("b", v21, &bs, "dup"), success);
    // Destroyed objects hold no Name.
    let old = register(&e, "c", vec![attr("Name", name("gone"))]);
    let new = register(&e, "c", vec![]);
    assert_eq!(add_name("c", v21, &new, "gone"), taken);
    let destroyed = send(
        &e,
        "c",
        v21,
        vec![(
            operation::DESTROY,
            vec![build::text(tag::UNIQUE_IDENTIFIER, old)],
        )],
    );
    ok(&destroyed[0]);
    assert_eq!(add_name("c", v21, &new, "gone"), success);
}

#[test]
fn a_name_in_use_cannot_be_added_again_in_2_1() {
    let e = Engine::in_memory();
    let uid = register(&e, "a", vec![attr("Name", name("dup"))]);
    let got = send(
        &e,
        "a",
        ProtocolVersion::V2_1,
        vec![(
            operation::ADD_ATTRIBUTE,
            vec![
                build::unique_identifier(uid),
                build::structure(tag::NEW_ATTRIBUTE, vec![Ttlv::new(tag::NAME, name("dup"))]),
            ],
        )],
    );
    assert_eq!(got[0].result_status, result_status::OPERATION_FAILED);
    assert_eq!(
        got[0].result_reason,
        Some(result_reason::NON_UNIQUE_NAME_ATTRIBUTE)
    );
}

/// KMIP 1.x templates (1.4 §4, Template-Attribute): a single-instance attribute given in the
/// request wins over the template's, a multi-instance one is the union of both (the
/// template's first), as the 1.2 Test Case TC-312 shows with `x-ID`.
/// Object Type Template (1.x; "(Reserved)" in the 2.x table).
const TEMPLATE_OBJECT_TYPE: u32 = 6;

#[test]
fn a_template_gives_way_to_the_request_for_single_values_and_adds_to_multi_instance_ones() {
    let e = Engine::in_memory();
    let v = ProtocolVersion::new(1, 2);
    let text = |s: &str| Value::TextString(s.into());
    let registered = send(
        &e,
        "t",
        v,
        vec![(
            operation::REGISTER,
            vec![
                build::enumeration(tag::OBJECT_TYPE, TEMPLATE_OBJECT_TYPE),
                build::structure(tag::TEMPLATE_ATTRIBUTE, vec![attr("Name", name("tpl"))]),
                build::structure(
                    tag::TEMPLATE,
                    vec![
                        attr("Contact Information", text("from-template")),
                        attr("x-ID", text("from-template")),
                        attr("Object Group", text("g1")),
                    ],
                ),
            ],
        )],
    );
    ok(&registered[0]);
    let created = send(
        &e,
        "t",
        v,
        vec![(
            operation::CREATE,
            vec![
                build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
                build::structure(
                    tag::TEMPLATE_ATTRIBUTE,
                    vec![
                        build::structure(
                            tag::NAME,
                            vec![
                                build::text(tag::NAME_VALUE, "tpl"),
                                build::enumeration(tag::NAME_TYPE, 1),
                            ],
                        ),
                        attr("Cryptographic Algorithm", Value::Enumeration(3)),
                        attr("Cryptographic Length", Value::Integer(128)),
                        attr("Cryptographic Usage Mask", Value::Integer(0x0c)),
                        attr("Contact Information", text("from-request")),
                        attr("x-ID", text("from-request")),
                    ],
                ),
            ],
        )],
    );
    let uid = uids(&ok(&created[0])).remove(0);
    let got = send(
        &e,
        "t",
        v,
        vec![(
            operation::GET_ATTRIBUTES,
            vec![build::unique_identifier(uid)],
        )],
    );
    let all = kmipd_test_support::kmip::v1_attrs(&ok(&got[0]));
    let values = |n: &str| -> Vec<Value> {
        all.iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(values("Contact Information"), [text("from-request")]);
    assert_eq!(
        values("x-ID"),
        [text("from-template"), text("from-request")]
    );
    assert_eq!(values("Object Group"), [text("g1")]);
}
