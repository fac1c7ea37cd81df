//! Real clients' requests (`../shared/notes/clients.md`), each built as the client builds it,
//! and the checks of what the client relies on in the answers: shared by the engine's
//! in-process flows (`crates/ops/tests/clients.rs`) and the same clients' flows over mutual TLS
//! (`conformance/rust-clients/tests/client_flows.rs`), so that both send the same requests.
//! Each side keeps its own flow: the order of the calls, what only it can see (connections,
//! TLS sessions over the wire; formats and details in-process).

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use kmipd_proto::build;
use kmipd_proto::enums::{
    cryptographic_algorithm as alg, cryptographic_usage_mask as mask, object_type, operation,
    query_function, state,
};
use kmipd_proto::message::{ProtocolVersion, RequestBatchItem, RequestMessage, ResponseMessage};
use kmipd_proto::reader;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use crate::kmip::{attr, attr_at, child, name, ok, template, text, uid, usage, v1_value};

/// Query with Query Server Information (vSphere's first request).
pub fn query_server_information() -> Vec<Ttlv> {
    vec![build::enumeration(
        tag::QUERY_FUNCTION,
        query_function::QUERY_SERVER_INFORMATION,
    )]
}

/// The custom attributes vSphere tags a key with, in one batch.
pub const VSPHERE_TAGS: [&str; 3] = ["x-Vendor", "x-Product", "x-Product_Version"];

/// The Unique Batch Item IDs of vSphere's tagging batch (any bytes, echoed).
pub const VSPHERE_TAG_IDS: [&[u8]; 3] = [b"\x01\x02", b"\xff", b"vc-3"];

/// The value vSphere gives tag `n`.
pub fn vsphere_tag_value(n: &str) -> Value {
    text(&format!("{n}=7.0.3"))
}

/// vSphere's one request (1.1) of three Add Attribute on `key`, each with its Unique Batch
/// Item ID.
pub fn vsphere_tagging(key: &str) -> RequestMessage {
    let items = VSPHERE_TAGS
        .iter()
        .zip(VSPHERE_TAG_IDS)
        .map(|(n, id)| RequestBatchItem {
            unique_batch_item_id: Some(id.to_vec()),
            ..RequestBatchItem::new(
                operation::ADD_ATTRIBUTE,
                vec![
                    build::unique_identifier(key.to_owned()),
                    attr(n, vsphere_tag_value(n)),
                ],
            )
        })
        .collect();
    RequestMessage::new(ProtocolVersion::new(1, 1), items)
}

/// The answer to [`vsphere_tagging`]: three successes, each with its ID echoed, naming the key
/// and the attribute added.
pub fn check_vsphere_tagged(resp: &ResponseMessage, key: &str) {
    assert_eq!(resp.header.batch_count, 3);
    for ((got, id), n) in resp.items.iter().zip(VSPHERE_TAG_IDS).zip(VSPHERE_TAGS) {
        assert_eq!(got.unique_batch_item_id.as_deref(), Some(id));
        assert_eq!(got.operation, Some(operation::ADD_ATTRIBUTE));
        let payload = ok(got);
        assert_eq!(uid(&payload), key);
        assert_eq!(v1_value(&payload, n), Some(vsphere_tag_value(n)));
    }
}

/// The tags as Get Attributes gives them back after [`vsphere_tagging`] (`v1_attrs`).
pub fn vsphere_tags() -> Vec<(String, Value)> {
    VSPHERE_TAGS
        .iter()
        .map(|n| (n.to_string(), vsphere_tag_value(n)))
        .collect()
}

/// MySQL keyring_okv's Create (1.1): AES-256 with Attribute Index 0 on every attribute, a
/// Storage Status Mask in the template, Maximum Response Size in the header.
pub fn okv_create() -> RequestMessage {
    let idx = |n: &str, v: Value| attr_at(n, Some(0), v);
    let payload = vec![
        build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
        template(vec![
            idx("Cryptographic Algorithm", Value::Enumeration(alg::AES)),
            idx("Cryptographic Length", Value::Integer(256)),
            idx(
                "Cryptographic Usage Mask",
                Value::Integer(i32::try_from(mask::ENCRYPT | mask::DECRYPT).unwrap()),
            ),
            idx("Name", name("okv-mysql-master-key-1")),
            idx("Storage Status Mask", Value::Integer(1)),
        ]),
    ];
    let mut msg = RequestMessage::new(
        ProtocolVersion::new(1, 1),
        vec![RequestBatchItem::new(operation::CREATE, payload)],
    );
    msg.header.maximum_response_size = Some(65536);
    msg
}

/// The attributes of the key [`okv_create`] made (Get Attributes of all): AES-256, its Name,
/// and no Storage Status Mask (tolerated in the template, not kept).
pub fn check_okv_created(attrs: &[Ttlv]) {
    assert_eq!(
        v1_value(attrs, "Cryptographic Algorithm"),
        Some(Value::Enumeration(alg::AES))
    );
    assert_eq!(
        v1_value(attrs, "Cryptographic Length"),
        Some(Value::Integer(256))
    );
    assert_eq!(
        v1_value(attrs, "Name"),
        Some(name("okv-mysql-master-key-1"))
    );
    assert_eq!(
        v1_value(attrs, "Storage Status Mask"),
        None,
        "not an attribute: tolerated, not stored"
    );
}

/// keyring_okv's Get of `key` (1.1), Maximum Response Size in the header.
pub fn okv_get(key: &str) -> RequestMessage {
    let mut msg = RequestMessage::new(
        ProtocolVersion::new(1, 1),
        vec![RequestBatchItem::new(
            operation::GET,
            crate::kmip::by_uid(key),
        )],
    );
    msg.header.maximum_response_size = Some(65536);
    msg
}

/// Veeam's Create Key Pair (1.4): RSA-2048, a named private key for Decrypt and a named public
/// key for Encrypt.
pub fn veeam_create_key_pair() -> Vec<Ttlv> {
    vec![
        build::structure(
            tag::COMMON_TEMPLATE_ATTRIBUTE,
            vec![
                attr("Cryptographic Algorithm", Value::Enumeration(alg::RSA)),
                attr("Cryptographic Length", Value::Integer(2048)),
            ],
        ),
        build::structure(
            tag::PRIVATE_KEY_TEMPLATE_ATTRIBUTE,
            vec![usage(mask::DECRYPT), attr("Name", name("veeam-priv"))],
        ),
        build::structure(
            tag::PUBLIC_KEY_TEMPLATE_ATTRIBUTE,
            vec![usage(mask::ENCRYPT), attr("Name", name("veeam-pub"))],
        ),
    ]
}

/// The Key Block of a half of [`veeam_create_key_pair`]'s pair says RSA, 2048 bits.
pub fn check_rsa_2048(object: &Ttlv) {
    let kb = child(object, tag::KEY_BLOCK);
    assert_eq!(
        reader::as_enum(child(kb, tag::CRYPTOGRAPHIC_ALGORITHM)).unwrap(),
        alg::RSA
    );
    assert_eq!(
        reader::as_int(child(kb, tag::CRYPTOGRAPHIC_LENGTH)).unwrap(),
        2048
    );
}

/// The custom attributes a storage array (1.0) registers and locates its secrets by.
pub fn array_attributes(serial: &str, slot: i32) -> Vec<Ttlv> {
    vec![
        attr("x-array-serial", text(serial)),
        attr("x-array-slot", Value::Integer(slot)),
    ]
}

/// Synology DSM's Query (1.2): Query Operations and Query Objects.
pub fn synology_query() -> Vec<Ttlv> {
    vec![
        build::enumeration(tag::QUERY_FUNCTION, query_function::QUERY_OPERATIONS),
        build::enumeration(tag::QUERY_FUNCTION, query_function::QUERY_OBJECTS),
    ]
}

/// The answer to [`synology_query`] offers the operations DSM uses and Secret Data.
pub fn check_synology_query(q: &[Ttlv]) {
    let ops: Vec<u32> = q
        .iter()
        .filter(|i| i.tag == tag::OPERATION)
        .map(|i| reader::as_enum(i).unwrap())
        .collect();
    for op in [
        operation::REGISTER,
        operation::LOCATE,
        operation::MODIFY_ATTRIBUTE,
        operation::ACTIVATE,
        operation::GET,
    ] {
        assert!(ops.contains(&op), "{op} not in Query Operations");
    }
    assert!(
        q.iter().any(|i| i.tag == tag::OBJECT_TYPE
            && reader::as_enum(i).unwrap() == object_type::SECRET_DATA)
    );
}

/// What DSM reads back of its activated secret: Operation Policy Name and State
/// (`v1_attrs` of Get Attributes of those two).
pub fn synology_activated() -> [(String, Value); 2] {
    [
        ("Operation Policy Name".to_owned(), text("default")),
        ("State".to_owned(), Value::Enumeration(state::ACTIVE)),
    ]
}
