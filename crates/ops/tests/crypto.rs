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
use kmipd_proto::reader::{StructReader, as_bytes, as_enum};
use kmipd_proto::tag;
use kmipd_proto::xml::{self, NoPlaceholders, XmlOptions};
use kmipd_ttlv::Ttlv;

fn request(items: &str) -> Ttlv {
    let text = format!(
        r#"<RequestMessage><RequestHeader><ProtocolVersion>
<ProtocolVersionMajor type="Integer" value="2"/><ProtocolVersionMinor type="Integer" value="1"/>
</ProtocolVersion><BatchCount type="Integer" value="{}"/></RequestHeader>{items}</RequestMessage>"#,
        items.matches("<BatchItem>").count()
    );
    xml::read_item(&text, &XmlOptions::default(), &mut NoPlaceholders).unwrap()
}

const REGISTER: &str = r#"<BatchItem><Operation type="Enumeration" value="Register"/><RequestPayload>
<ObjectType type="Enumeration" value="SymmetricKey"/>
<Attributes><CryptographicUsageMask type="Integer" value="Encrypt Decrypt"/>
<ActivationDate type="DateTime" value="2001-01-01T00:00:00+00:00"/></Attributes>
<SymmetricKey><KeyBlock><KeyFormatType type="Enumeration" value="Raw"/>
<KeyValue><KeyMaterial type="ByteString" value="00000000000000000000000000000000"/></KeyValue>
<CryptographicAlgorithm type="Enumeration" value="AES"/>
<CryptographicLength type="Integer" value="128"/></KeyBlock></SymmetricKey>
</RequestPayload></BatchItem>"#;

fn items(response: &Ttlv) -> Vec<Ttlv> {
    StructReader::any(response)
        .unwrap()
        .repeated(tag::BATCH_ITEM)
        .cloned()
        .collect()
}

fn field<'a>(item: &'a Ttlv, path: &[kmipd_ttlv::Tag]) -> Option<&'a Ttlv> {
    let mut cur = item;
    for t in path {
        cur = StructReader::any(cur).ok()?.optional(*t)?;
    }
    Some(cur)
}

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
        &request(&format!("{REGISTER}{enc}{dec_bad}")),
    );
    let it = items(&resp);
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
    let resp = engine.handle_message(&Principal::new("a"), &request(hash));
    let it = items(&resp);
    let data = field(&it[0], &[tag::RESPONSE_PAYLOAD, tag::DATA]).unwrap();
    assert_eq!(
        hex::encode(as_bytes(data).unwrap()),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
