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
