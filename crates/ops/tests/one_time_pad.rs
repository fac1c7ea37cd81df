//! One Time Pads through the Engine (`operations/one_time_pad.rs`): a pad encrypts by XOR,
//! and its key material never leaves the server, neither by Get nor by Export.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use kmipd_ops::{Engine, Principal};
use kmipd_proto::enums::{result_reason as rr, result_status};
use kmipd_proto::reader::{as_bytes, as_text};
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use engine::{batch_items, field, status, xml_request};
use kmipd_test_support::engine;

fn one(e: &Engine, items: &str) -> Ttlv {
    let resp = e.handle_message(&Principal::new("a"), &xml_request((2, 1), items));
    batch_items(&resp).remove(0)
}

const PAD: &str = "fc932e1428bd";

const REGISTER_PAD: &str = r#"<BatchItem><Operation type="Enumeration" value="Register"/><RequestPayload>
<ObjectType type="Enumeration" value="SecretData"/>
<Attributes>
<CryptographicUsageMask type="Integer" value="Encrypt Decrypt"/>
<CryptographicAlgorithm type="Enumeration" value="OneTimePad"/>
<CryptographicLength type="Integer" value="48"/>
</Attributes>
<SecretData><SecretDataType type="Enumeration" value="Password"/>
<KeyBlock><KeyFormatType type="Enumeration" value="Opaque"/>
<KeyValue><KeyMaterial type="ByteString" value="fc932e1428bd"/></KeyValue>
</KeyBlock></SecretData>
</RequestPayload></BatchItem>"#;

fn by_uid(op: &str, uid: &str, body: &str) -> String {
    format!(
        r#"<BatchItem><Operation type="Enumeration" value="{op}"/><RequestPayload>
<UniqueIdentifier type="TextString" value="{uid}"/>{body}</RequestPayload></BatchItem>"#
    )
}

#[test]
fn a_pad_encrypts_by_xor_and_its_material_leaves_neither_by_get_nor_by_export() {
    let e = Engine::in_memory();
    let reg = one(&e, REGISTER_PAD);
    assert_eq!(status(&reg).0, result_status::SUCCESS, "{reg:?}");
    let uid = as_text(field(&reg, &[tag::RESPONSE_PAYLOAD, tag::UNIQUE_IDENTIFIER]).unwrap())
        .unwrap()
        .to_owned();
    let act = one(&e, &by_uid("Activate", &uid, ""));
    assert_eq!(status(&act).0, result_status::SUCCESS, "{act:?}");

    let enc = one(
        &e,
        &by_uid(
            "Encrypt",
            &uid,
            r#"<Data type="ByteString" value="010203040506"/>"#,
        ),
    );
    assert_eq!(status(&enc).0, result_status::SUCCESS, "{enc:?}");
    let sealed = as_bytes(field(&enc, &[tag::RESPONSE_PAYLOAD, tag::DATA]).unwrap()).unwrap();
    let expected: Vec<u8> = hex::decode(PAD)
        .unwrap()
        .iter()
        .zip([1u8, 2, 3, 4, 5, 6])
        .map(|(p, d)| p ^ d)
        .collect();
    assert_eq!(sealed, expected.as_slice());

    for op in ["Get", "Export"] {
        let item = one(&e, &by_uid(op, &uid, ""));
        assert_eq!(
            status(&item),
            (result_status::OPERATION_FAILED, Some(rr::PERMISSION_DENIED)),
            "{op}: {item:?}"
        );
        let shown = format!("{item:?}").to_lowercase();
        assert!(!shown.contains(PAD), "{op} leaked the pad: {shown}");
    }
}
