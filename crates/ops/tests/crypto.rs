//! The cryptographic operations through the Engine: a batch registers a known key and uses it
//! through the ID Placeholder, and the answer must carry the known-answer bytes (NIST AES-GCM
//! test case 2, as CS-BC-M-GCM-1; FIPS 180 SHA-256), or the expected Result Reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use kmipd_ops::{Engine, Principal};
use kmipd_proto::reader::{as_bytes, as_enum};
use kmipd_proto::tag;

use engine::{batch_items, field, xml_request};
use kmipd_test_support::engine;

const REGISTER: &str = r#"<BatchItem><Operation type="Enumeration" value="Register"/><RequestPayload>
<ObjectType type="Enumeration" value="SymmetricKey"/>
<Attributes><CryptographicUsageMask type="Integer" value="Encrypt Decrypt"/>
<ActivationDate type="DateTime" value="2001-01-01T00:00:00+00:00"/></Attributes>
<SymmetricKey><KeyBlock><KeyFormatType type="Enumeration" value="Raw"/>
<KeyValue><KeyMaterial type="ByteString" value="00000000000000000000000000000000"/></KeyValue>
<CryptographicAlgorithm type="Enumeration" value="AES"/>
<CryptographicLength type="Integer" value="128"/></KeyBlock></SymmetricKey>
</RequestPayload></BatchItem>"#;

#[test]
fn register_then_gcm_encrypt_decrypt_with_the_placeholder() {
    let engine = Engine::in_memory();
    let enc = r#"<BatchItem><Operation type="Enumeration" value="Encrypt"/><RequestPayload>
<CryptographicParameters><BlockCipherMode type="Enumeration" value="GCM"/>
<TagLength type="Integer" value="16"/></CryptographicParameters>
<Data type="ByteString" value="00000000000000000000000000000000"/>
<IVCounterNonce type="ByteString" value="000000000000000000000000"/>
</RequestPayload></BatchItem>"#;
    let dec_bad = r#"<BatchItem><Operation type="Enumeration" value="Decrypt"/><RequestPayload>
<CryptographicParameters><BlockCipherMode type="Enumeration" value="GCM"/></CryptographicParameters>
<Data type="ByteString" value="0388dace60b6a392f328c2b971b2fe78"/>
<IVCounterNonce type="ByteString" value="000000000000000000000000"/>
<AuthenticatedEncryptionTag type="ByteString" value="006e47d42cec13bdf53a67b21257bddf"/>
</RequestPayload></BatchItem>"#;
    let resp = engine.handle_message(
        &Principal::new("a"),
        &xml_request((2, 1), &format!("{REGISTER}{enc}{dec_bad}")),
    );
    let it = batch_items(&resp);
    assert_eq!(it.len(), 3);
    let data = field(&it[1], &[tag::RESPONSE_PAYLOAD, tag::DATA]).unwrap();
    assert_eq!(
        hex::encode(as_bytes(data).unwrap()),
        "0388dace60b6a392f328c2b971b2fe78"
    );
    let t = field(
        &it[1],
        &[tag::RESPONSE_PAYLOAD, tag::AUTHENTICATED_ENCRYPTION_TAG],
    )
    .unwrap();
    assert_eq!(
        hex::encode(as_bytes(t).unwrap()),
        "ab6e47d42cec13bdf53a67b21257bddf"
    );
    let reason = field(&it[2], &[tag::RESULT_REASON]).unwrap();
    assert_eq!(
        as_enum(reason).unwrap(),
        kmipd_proto::enums::result_reason::CRYPTOGRAPHIC_FAILURE
    );
}

#[test]
fn hash_sha256_known_answer() {
    let engine = Engine::in_memory();
    let hash = r#"<BatchItem><Operation type="Enumeration" value="Hash"/><RequestPayload>
<CryptographicParameters><HashingAlgorithm type="Enumeration" value="SHA_256"/></CryptographicParameters>
<Data type="ByteString" value="616263"/></RequestPayload></BatchItem>"#;
    let resp = engine.handle_message(&Principal::new("a"), &xml_request((2, 1), hash));
    let it = batch_items(&resp);
    let data = field(&it[0], &[tag::RESPONSE_PAYLOAD, tag::DATA]).unwrap();
    assert_eq!(
        hex::encode(as_bytes(data).unwrap()),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn rng_seed_uses_none_of_the_data_and_requires_some() {
    let engine = Engine::in_memory();
    let seed = r#"<BatchItem><Operation type="Enumeration" value="RNGSeed"/><RequestPayload>
<Data type="ByteString" value="333c06587706225099a67438f263f8f9"/></RequestPayload></BatchItem>"#;
    let empty = r#"<BatchItem><Operation type="Enumeration" value="RNGSeed"/><RequestPayload>
</RequestPayload></BatchItem>"#;
    for version in [(1, 4), (2, 1)] {
        let resp = engine.handle_message(
            &Principal::new("a"),
            &xml_request(version, &format!("{seed}{empty}")),
        );
        let it = batch_items(&resp);
        let used = field(&it[0], &[tag::RESPONSE_PAYLOAD, tag::DATA_LENGTH]).unwrap();
        assert_eq!(kmipd_proto::reader::as_int(used).unwrap(), 0);
        let status = field(&it[1], &[tag::RESULT_STATUS]).unwrap();
        assert_eq!(
            as_enum(status).unwrap(),
            kmipd_proto::enums::result_status::OPERATION_FAILED
        );
    }
}

#[test]
fn get_usage_allocation_draws_on_the_usage_limits_count_until_it_is_spent() {
    let engine = Engine::in_memory();
    let who = Principal::new("a");
    let register = r#"<BatchItem><Operation type="Enumeration" value="Register"/><RequestPayload>
<ObjectType type="Enumeration" value="SymmetricKey"/><TemplateAttribute>
<Attribute><AttributeName type="TextString" value="Cryptographic Usage Mask"/>
<AttributeValue type="Integer" value="Encrypt"/></Attribute>
<Attribute><AttributeName type="TextString" value="Activation Date"/>
<AttributeValue type="DateTime" value="2001-01-01T00:00:00+00:00"/></Attribute></TemplateAttribute>
<SymmetricKey><KeyBlock><KeyFormatType type="Enumeration" value="Raw"/>
<KeyValue><KeyMaterial type="ByteString" value="00000000000000000000000000000000"/></KeyValue>
<CryptographicAlgorithm type="Enumeration" value="AES"/>
<CryptographicLength type="Integer" value="128"/></KeyBlock></SymmetricKey>
</RequestPayload></BatchItem>"#;
    let limits = r#"<BatchItem><Operation type="Enumeration" value="AddAttribute"/><RequestPayload>
<Attribute><AttributeName type="TextString" value="Usage Limits"/><AttributeValue>
<UsageLimitsTotal type="LongInteger" value="10"/>
<UsageLimitsUnit type="Enumeration" value="Byte"/></AttributeValue></Attribute>
</RequestPayload></BatchItem>"#;
    let allocate = |n: i64| {
        format!(
            r#"<BatchItem><Operation type="Enumeration" value="GetUsageAllocation"/><RequestPayload>
<UsageLimitsCount type="LongInteger" value="{n}"/></RequestPayload></BatchItem>"#
        )
    };
    let status =
        |item: &kmipd_ttlv::Ttlv| as_enum(field(item, &[tag::RESULT_STATUS]).unwrap()).unwrap();
    let reason =
        |item: &kmipd_ttlv::Ttlv| as_enum(field(item, &[tag::RESULT_REASON]).unwrap()).unwrap();
    use kmipd_proto::enums::{result_reason as rr, result_status as rs};

    // Without Usage Limits there is nothing to allocate from.
    let resp = engine.handle_message(
        &who,
        &xml_request((1, 4), &format!("{register}{}", allocate(1))),
    );
    let it = batch_items(&resp);
    assert_eq!(status(&it[0]), rs::SUCCESS);
    assert_eq!(reason(&it[1]), rr::PERMISSION_DENIED);

    // The echo of Add Attribute shows the Count the server set (= Total).
    let resp = engine.handle_message(
        &who,
        &xml_request(
            (1, 4),
            &format!("{register}{limits}{}{}", allocate(6), allocate(4)),
        ),
    );
    let it = batch_items(&resp);
    let count = field(
        &it[1],
        &[
            tag::RESPONSE_PAYLOAD,
            tag::ATTRIBUTE,
            tag::ATTRIBUTE_VALUE,
            tag::USAGE_LIMITS_COUNT,
        ],
    )
    .unwrap();
    assert_eq!(count.value, kmipd_ttlv::Value::LongInteger(10));
    assert_eq!(status(&it[2]), rs::SUCCESS);
    assert_eq!(status(&it[3]), rs::SUCCESS);
    let uid = kmipd_proto::reader::as_text(
        field(&it[3], &[tag::RESPONSE_PAYLOAD, tag::UNIQUE_IDENTIFIER]).unwrap(),
    )
    .unwrap()
    .to_owned();

    // All 10 are allocated: one more unit is refused, and the limits can no longer change.
    let by_uid = format!(r#"<UniqueIdentifier type="TextString" value="{uid}"/>"#);
    let more = allocate(1).replace("<RequestPayload>", &format!("<RequestPayload>{by_uid}"));
    let modify = limits
        .replace("AddAttribute", "ModifyAttribute")
        .replace("<RequestPayload>", &format!("<RequestPayload>{by_uid}"));
    for (version, request) in [((1, 4), &more), ((2, 1), &more), ((1, 4), &modify)] {
        let resp = engine.handle_message(&who, &xml_request(version, request));
        let it = batch_items(&resp);
        assert_eq!(status(&it[0]), rs::OPERATION_FAILED, "{request}");
    }
    let resp = engine.handle_message(&who, &xml_request((2, 1), &more));
    assert_eq!(reason(&batch_items(&resp)[0]), rr::PERMISSION_DENIED);

    // Another identity sees no such object.
    let resp = engine.handle_message(&Principal::new("b"), &xml_request((1, 4), &more));
    assert_eq!(reason(&batch_items(&resp)[0]), rr::ITEM_NOT_FOUND);
}

/// A key registered wrapped (RFC 3394 §4.1: KEK 000102...0F, key 00112233...FF) comes back
/// unwrapped when asked Not Wrapped, by Get and by Export alike, if its wrapping key may unwrap
/// (Unwrap Key); a key whose mask allows only Wrap Key may not be used to unwrap.
#[test]
fn a_key_registered_wrapped_is_unwrapped_by_a_get_not_wrapped_when_its_kek_may_unwrap() {
    for (mask, unwraps) in [("WrapKey UnwrapKey", true), ("WrapKey", false)] {
        let engine = Engine::in_memory();
        let kek = format!(
            r#"<BatchItem><Operation type="Enumeration" value="Register"/><RequestPayload>
<ObjectType type="Enumeration" value="SymmetricKey"/>
<Attributes><CryptographicUsageMask type="Integer" value="{mask}"/>
<ActivationDate type="DateTime" value="2001-01-01T00:00:00+00:00"/></Attributes>
<SymmetricKey><KeyBlock><KeyFormatType type="Enumeration" value="Raw"/>
<KeyValue><KeyMaterial type="ByteString" value="000102030405060708090a0b0c0d0e0f"/></KeyValue>
<CryptographicAlgorithm type="Enumeration" value="AES"/>
<CryptographicLength type="Integer" value="128"/></KeyBlock></SymmetricKey>
</RequestPayload></BatchItem>"#
        );
        let resp = engine.handle_message(&Principal::new("a"), &xml_request((2, 0), &kek));
        let kek_uid = kmipd_proto::reader::as_text(
            field(
                &batch_items(&resp)[0],
                &[tag::RESPONSE_PAYLOAD, tag::UNIQUE_IDENTIFIER],
            )
            .unwrap(),
        )
        .unwrap()
        .to_owned();
        let wrapped = format!(
            r#"<BatchItem><Operation type="Enumeration" value="Register"/><RequestPayload>
<ObjectType type="Enumeration" value="SymmetricKey"/>
<Attributes><CryptographicUsageMask type="Integer" value="Encrypt Decrypt"/></Attributes>
<SymmetricKey><KeyBlock><KeyFormatType type="Enumeration" value="Raw"/>
<KeyValue type="ByteString" value="1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5"/>
<CryptographicAlgorithm type="Enumeration" value="AES"/>
<CryptographicLength type="Integer" value="128"/>
<KeyWrappingData><WrappingMethod type="Enumeration" value="Encrypt"/>
<EncryptionKeyInformation><UniqueIdentifier type="TextString" value="{kek_uid}"/>
<CryptographicParameters><BlockCipherMode type="Enumeration" value="NISTKeyWrap"/></CryptographicParameters>
</EncryptionKeyInformation><EncodingOption type="Enumeration" value="NoEncoding"/></KeyWrappingData>
</KeyBlock></SymmetricKey></RequestPayload></BatchItem>
<BatchItem><Operation type="Enumeration" value="Get"/><RequestPayload>
<KeyWrapType type="Enumeration" value="AsRegistered"/></RequestPayload></BatchItem>
<BatchItem><Operation type="Enumeration" value="Get"/><RequestPayload>
<KeyWrapType type="Enumeration" value="NotWrapped"/></RequestPayload></BatchItem>"#
        );
        let resp = engine.handle_message(&Principal::new("a"), &xml_request((2, 0), &wrapped));
        let mut it = batch_items(&resp);
        let uid = kmipd_proto::reader::as_text(
            field(&it[0], &[tag::RESPONSE_PAYLOAD, tag::UNIQUE_IDENTIFIER]).unwrap(),
        )
        .unwrap()
        .to_owned();
        let export = format!(
            r#"<BatchItem><Operation type="Enumeration" value="Export"/><RequestPayload>
<UniqueIdentifier type="TextString" value="{uid}"/>
<KeyWrapType type="Enumeration" value="NotWrapped"/></RequestPayload></BatchItem>"#
        );
        let resp = engine.handle_message(&Principal::new("a"), &xml_request((2, 0), &export));
        it.extend(batch_items(&resp));
        let as_registered = field(
            &it[1],
            &[tag::RESPONSE_PAYLOAD, tag::SYMMETRIC_KEY, tag::KEY_BLOCK],
        )
        .unwrap();
        assert!(field(as_registered, &[tag::KEY_WRAPPING_DATA]).is_some());
        for n in [2, 3] {
            let material = field(
                &it[n],
                &[
                    tag::RESPONSE_PAYLOAD,
                    tag::SYMMETRIC_KEY,
                    tag::KEY_BLOCK,
                    tag::KEY_VALUE,
                    tag::KEY_MATERIAL,
                ],
            );
            if unwraps {
                assert_eq!(
                    hex::encode(as_bytes(material.unwrap()).unwrap()),
                    "00112233445566778899aabbccddeeff"
                );
                let kb = field(
                    &it[n],
                    &[tag::RESPONSE_PAYLOAD, tag::SYMMETRIC_KEY, tag::KEY_BLOCK],
                )
                .unwrap();
                assert!(field(kb, &[tag::KEY_WRAPPING_DATA]).is_none());
            } else {
                assert!(material.is_none());
                assert_eq!(
                    as_enum(field(&it[n], &[tag::RESULT_REASON]).unwrap()).unwrap(),
                    kmipd_proto::enums::result_reason::INCOMPATIBLE_CRYPTOGRAPHIC_USAGE_MASK
                );
            }
        }
    }
}
