//! Reading KMIP answers and building the request fields that the engine's tests
//! (`crates/ops/tests`) and the interoperability tests over the wire
//! (`conformance/rust-clients/tests`) share, and the request messages, answers and KMIP XML
//! requests of the engine's tests.  Every helper asserts: a test fails with the
//! answer in its message when the answer is not what it expects.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use kmipd_proto::attributes::AttrName;
use kmipd_proto::build;
use kmipd_proto::enums::cryptographic_usage_mask as usage_mask;
use kmipd_proto::enums::{cryptographic_algorithm as alg, key_format_type as kft, result_status};
use kmipd_proto::message::{ProtocolVersion, RequestBatchItem, RequestMessage, ResponseBatchItem};
use kmipd_proto::reader::{self, StructReader};
use kmipd_proto::spec::{self, Version};
use kmipd_proto::tag;
use kmipd_proto::xml::{self, NoPlaceholders, XmlOptions};
use kmipd_ttlv::{Tag, Ttlv, Value};

/// The payload's children of a successful answer (asserts Success).
pub fn ok(item: &ResponseBatchItem) -> Vec<Ttlv> {
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

/// Asserts an Operation Failed answer with this Result Reason.
pub fn failed(item: &ResponseBatchItem, reason: u32) {
    assert_eq!(
        item.result_status,
        result_status::OPERATION_FAILED,
        "{:?}",
        item.result_message
    );
    assert_eq!(
        item.result_reason,
        Some(reason),
        "{:?}",
        item.result_message
    );
}

/// The first item of tag `t` (asserts there is one).
pub fn find(items: &[Ttlv], t: Tag) -> &Ttlv {
    items
        .iter()
        .find(|i| i.tag == t)
        .unwrap_or_else(|| panic!("no {} in {items:?}", reader::name(t)))
}

/// The Unique Identifier among `items`.
pub fn uid(items: &[Ttlv]) -> String {
    reader::as_text(find(items, tag::UNIQUE_IDENTIFIER))
        .unwrap()
        .to_owned()
}

/// Every Unique Identifier among `items`, in order.
pub fn uids(items: &[Ttlv]) -> Vec<String> {
    items
        .iter()
        .filter(|i| i.tag == tag::UNIQUE_IDENTIFIER)
        .map(|i| reader::as_text(i).unwrap().to_owned())
        .collect()
}

/// The child of tag `t` of a structure (asserts there is one).
pub fn child(item: &Ttlv, t: Tag) -> &Ttlv {
    StructReader::any(item)
        .unwrap()
        .optional(t)
        .unwrap_or_else(|| panic!("no {} in {item:?}", reader::name(t)))
}

/// A Text String value.
pub fn text(s: &str) -> Value {
    Value::TextString(s.to_owned())
}

/// A 1.x Template-Attribute of these Attribute items.
pub fn template(attrs: Vec<Ttlv>) -> Ttlv {
    build::structure(tag::TEMPLATE_ATTRIBUTE, attrs)
}

/// A key object (`object_type_tag`) with one Key Block: format, Key Value holding `material`,
/// then `extra` (algorithm, length, ...).
pub fn key_block(object_type_tag: Tag, format: u32, material: Ttlv, extra: Vec<Ttlv>) -> Ttlv {
    build::structure(
        object_type_tag,
        vec![build::key_block(format, material, extra)],
    )
}

/// A raw AES Symmetric Key of these bytes.
pub fn aes_key(bytes: &[u8]) -> Ttlv {
    let bits = i32::try_from(bytes.len() * 8).unwrap();
    build::structure(
        tag::SYMMETRIC_KEY,
        vec![build::byte_key_block(
            kft::RAW,
            bytes.to_vec(),
            Some((alg::AES, bits)),
        )],
    )
}

/// The Key Material of a key object, asserting that its Key Value holds nothing else (no
/// attributes inside the Key Value, as clients that read `KeyValue[0]` expect).
pub fn key_value_material_only(object: &Ttlv) -> Ttlv {
    let kv = child(child(object, tag::KEY_BLOCK), tag::KEY_VALUE);
    let children = kv.children().expect("a Key Value structure");
    assert_eq!(
        children.iter().map(|c| c.tag).collect::<Vec<_>>(),
        [tag::KEY_MATERIAL],
        "the Key Value holds Key Material only"
    );
    children[0].clone()
}

/// The key bytes of a key object whose Key Value is raw Key Material only.
pub fn material_bytes(object: &Ttlv) -> Vec<u8> {
    reader::as_bytes(&key_value_material_only(object))
        .unwrap()
        .to_vec()
}

/// The 1.x Attribute items among `items`, as (name, value).
pub fn v1_attrs(items: &[Ttlv]) -> Vec<(String, Value)> {
    items
        .iter()
        .filter(|i| i.tag == tag::ATTRIBUTE)
        .map(|a| {
            let r = StructReader::any(a).unwrap();
            (
                r.req_text(tag::ATTRIBUTE_NAME).unwrap().to_owned(),
                r.required(tag::ATTRIBUTE_VALUE).unwrap().value.clone(),
            )
        })
        .collect()
}

/// The value of the 1.x attribute named `n` among `items`.
pub fn v1_value(items: &[Ttlv], n: &str) -> Option<Value> {
    v1_attrs(items)
        .into_iter()
        .find(|(k, _)| k == n)
        .map(|(_, v)| v)
}

/// Asserts that every tag and attribute name in `tree` exists in KMIP 1.0 (what a 1.0-only
/// client such as pg_tde's libkmip can read).
pub fn assert_only_1_0(tree: &Ttlv) {
    let def = spec::tag_by_value(tree.tag.value());
    assert!(
        def.is_none_or(|d| d.defined_in(Version::V1_0)),
        "{} is not a KMIP 1.0 field",
        reader::name(tree.tag)
    );
    if tree.tag == tag::ATTRIBUTE_NAME {
        let n = reader::as_text(tree).unwrap();
        assert!(
            AttrName::from_v1_name(n).defined_in(Version::V1_0),
            "attribute {n} is not a KMIP 1.0 attribute"
        );
        assert_ne!(n, "Fresh");
    }
    if let Some(children) = tree.children() {
        children.iter().for_each(assert_only_1_0);
    }
}

/// A Name attribute value (Uninterpreted Text String).
pub use kmipd_proto::build::name;

/// A 1.x Attribute, with an Attribute Index when given.
pub fn attr_at(name: &str, index: Option<i32>, value: Value) -> Ttlv {
    let mut items = vec![build::text(tag::ATTRIBUTE_NAME, name)];
    if let Some(i) = index {
        items.push(build::int(tag::ATTRIBUTE_INDEX, i));
    }
    items.push(Ttlv::new(tag::ATTRIBUTE_VALUE, value));
    build::structure(tag::ATTRIBUTE, items)
}

/// A 1.x Attribute without Attribute Index.
pub fn attr(name: &str, value: Value) -> Ttlv {
    attr_at(name, None, value)
}

/// A Secret Data structure of Secret Data Type `kind` whose Key Block holds `bytes` in
/// `format`.
pub fn secret_data(kind: u32, format: u32, bytes: &[u8]) -> Ttlv {
    build::structure(
        tag::SECRET_DATA,
        vec![
            build::enumeration(tag::SECRET_DATA_TYPE, kind),
            build::byte_key_block(format, bytes.to_vec(), None),
        ],
    )
}

/// A 1.x Cryptographic Usage Mask attribute.
pub fn usage(m: u32) -> Ttlv {
    attr("Cryptographic Usage Mask", build::mask(m))
}

// The engine's tests: building request messages, reading answers, KMIP XML requests.

/// A request message of `v` with one batch item per (operation, payload items).
pub fn message(v: ProtocolVersion, items: Vec<(u32, Vec<Ttlv>)>) -> RequestMessage {
    RequestMessage::new(
        v,
        items
            .into_iter()
            .map(|(operation, payload)| RequestBatchItem::new(operation, payload))
            .collect(),
    )
}

/// The Unique Identifier of an answer's payload (an undone item keeps its payload).
pub fn uid_of(item: &ResponseBatchItem) -> String {
    StructReader::any(item.payload.as_ref().expect("payload"))
        .unwrap()
        .req_text(tag::UNIQUE_IDENTIFIER)
        .unwrap()
        .to_owned()
}

/// The Unique Identifier of an answer, which must be a success.
pub fn ok_uid(item: &ResponseBatchItem) -> String {
    assert_eq!(item.result_status, result_status::SUCCESS, "{item:?}");
    uid_of(item)
}

/// The Key Material bytes somewhere in `t` (the last Byte String one), if any.
pub fn key_material(t: &Ttlv) -> Option<Vec<u8>> {
    let mut out = None;
    t.walk(&mut |i, _| {
        if i.tag == tag::KEY_MATERIAL
            && let Value::ByteString(b) = &i.value
        {
            out = Some(b.to_vec());
        }
    });
    out
}

/// A Unique Identifier item.
pub use kmipd_proto::build::unique_identifier as uid_item;

/// A payload that names one object.
pub fn by_uid(uid: &str) -> Vec<Ttlv> {
    vec![uid_item(uid)]
}

/// The 2.x Create payload of an AES-256 key for Encrypt and Decrypt.
pub fn create_aes256_v2() -> Vec<Ttlv> {
    build::create_symmetric_key_v2(alg::AES, 256, usage_mask::ENCRYPT | usage_mask::DECRYPT)
}

/// A 2.1 Create request of an AES-256 key named `n`.
pub fn create_named(n: &str) -> Ttlv {
    let mut payload = create_aes256_v2();
    if let Value::Structure(attrs) = &mut payload[1].value {
        attrs.push(Ttlv::new(tag::NAME, name(n)));
    }
    message(
        ProtocolVersion::V2_1,
        vec![(kmipd_proto::enums::operation::CREATE, payload)],
    )
    .to_ttlv()
}

/// A Secret Data structure of Secret Data Type `kind` holding `bytes` (Opaque format).
pub fn opaque_secret(kind: u32, bytes: &[u8]) -> Ttlv {
    secret_data(kind, kft::OPAQUE, bytes)
}

/// A request message of version (major, minor) from the KMIP XML of its batch items.
pub fn xml_request(v: (u8, u8), items: &str) -> Ttlv {
    let (major, minor) = v;
    let text = format!(
        r#"<RequestMessage><RequestHeader><ProtocolVersion>
<ProtocolVersionMajor type="Integer" value="{major}"/>
<ProtocolVersionMinor type="Integer" value="{minor}"/>
</ProtocolVersion><BatchCount type="Integer" value="{}"/></RequestHeader>{items}</RequestMessage>"#,
        items.matches("<BatchItem>").count()
    );
    xml::read_item(&text, &XmlOptions::default(), &mut NoPlaceholders).unwrap()
}

/// The Batch Items of a response tree.
pub fn batch_items(response: &Ttlv) -> Vec<Ttlv> {
    StructReader::any(response)
        .unwrap()
        .repeated(tag::BATCH_ITEM)
        .cloned()
        .collect()
}

/// (Result Status, Result Reason) of a response Batch Item tree.
pub fn status(item: &Ttlv) -> (u32, Option<u32>) {
    (
        reader::as_enum(field(item, &[tag::RESULT_STATUS]).unwrap()).unwrap(),
        field(item, &[tag::RESULT_REASON]).map(|r| reader::as_enum(r).unwrap()),
    )
}

/// The Result Message of a response Batch Item tree ("" without one).
pub fn result_message(item: &Ttlv) -> String {
    field(item, &[tag::RESULT_MESSAGE])
        .and_then(|m| reader::as_text(m).ok())
        .unwrap_or_default()
        .to_owned()
}

/// The item at `path` (a tag a level) below `item`, if there is one.
pub fn field<'a>(item: &'a Ttlv, path: &[Tag]) -> Option<&'a Ttlv> {
    let mut cur = item;
    for t in path {
        cur = StructReader::any(cur).ok()?.optional(*t)?;
    }
    Some(cur)
}
