//! Streamed cryptography through the Engine (`streams.rs`): parts give what the single-part
//! operation gives, a stream belongs to its identity and operation, a failed part leaves the
//! stream as it was, an AEAD decryption shows no plaintext before its tag is checked, and the
//! bounds (streams per identity, idle expiry) hold.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use kmipd_ops::{Clock, Engine, EngineConfig, Principal};
use kmipd_proto::enums::{result_reason as rr, result_status};
use kmipd_proto::reader::{as_bytes, as_enum};
use kmipd_proto::tag;
use kmipd_store::MemoryStore;
use kmipd_ttlv::Ttlv;

use engine::{batch_items, field, status, xml_request};
use kmipd_test_support::engine;

/// The answer's single batch item to `items` (KMIP XML) sent by `who` in `v`.
fn one(e: &Engine, who: &str, v: (u8, u8), items: &str) -> Ttlv {
    let resp = e.handle_message(&Principal::new(who), &xml_request(v, items));
    batch_items(&resp).remove(0)
}

fn bytes_of(item: &Ttlv, t: kmipd_ttlv::Tag) -> Option<Vec<u8>> {
    field(item, &[tag::RESPONSE_PAYLOAD, t]).map(|b| as_bytes(b).unwrap().to_vec())
}

fn ok(item: &Ttlv) -> &Ttlv {
    assert_eq!(status(item).0, result_status::SUCCESS, "{item:?}");
    item
}

fn hash_part(extra: &str, data: &str) -> String {
    format!(
        r#"<BatchItem><Operation type="Enumeration" value="Hash"/><RequestPayload>
<CryptographicParameters><HashingAlgorithm type="Enumeration" value="SHA_256"/></CryptographicParameters>
<Data type="ByteString" value="{data}"/>{extra}</RequestPayload></BatchItem>"#
    )
}

const INIT: &str = r#"<InitIndicator type="Boolean" value="true"/>"#;
const FINAL: &str = r#"<FinalIndicator type="Boolean" value="true"/>"#;

fn cv(value: &[u8]) -> String {
    format!(
        r#"<CorrelationValue type="ByteString" value="{}"/>"#,
        hex::encode(value)
    )
}

/// Opens a SHA-256 Hash stream as `who` with `data`; its Correlation Value.
fn open_hash(e: &Engine, who: &str, data: &str) -> Vec<u8> {
    let first = one(e, who, (2, 1), &hash_part(INIT, data));
    bytes_of(ok(&first), tag::CORRELATION_VALUE).expect("a Correlation Value")
}

const SHA256_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

#[test]
fn a_hash_in_parts_is_the_hash_of_the_whole_and_its_stream_then_closes() {
    let e = Engine::in_memory();
    let value = open_hash(&e, "a", "61");
    let middle = one(&e, "a", (2, 1), &hash_part(&cv(&value), "62"));
    assert_eq!(bytes_of(ok(&middle), tag::DATA), None);
    assert_eq!(
        bytes_of(&middle, tag::CORRELATION_VALUE),
        Some(value.clone())
    );
    let last = one(
        &e,
        "a",
        (2, 1),
        &hash_part(&format!("{}{FINAL}", cv(&value)), "63"),
    );
    assert_eq!(
        hex::encode(bytes_of(ok(&last), tag::DATA).unwrap()),
        SHA256_ABC
    );
    // Closed: the value names nothing any more (1.x has no Invalid Correlation Value).
    let again = one(&e, "a", (2, 1), &hash_part(&cv(&value), "64"));
    assert_eq!(status(&again).1, Some(rr::INVALID_CORRELATION_VALUE));
    let again = one(&e, "a", (1, 4), &hash_part(&cv(&value), "64"));
    assert_eq!(status(&again).1, Some(rr::ITEM_NOT_FOUND));
}

#[test]
fn another_identity_or_operation_cannot_use_a_stream_and_does_not_disturb_it() {
    let e = Engine::in_memory();
    let value = open_hash(&e, "a", "61");
    let theirs = one(&e, "b", (2, 1), &hash_part(&cv(&value), "ff"));
    assert_eq!(
        status(&theirs),
        (
            result_status::OPERATION_FAILED,
            Some(rr::INVALID_CORRELATION_VALUE)
        )
    );
    // The same value under another operation names nothing either.
    let mac = format!(
        r#"<BatchItem><Operation type="Enumeration" value="MAC"/><RequestPayload>
<Data type="ByteString" value="62"/>{}</RequestPayload></BatchItem>"#,
        cv(&value)
    );
    let wrong_op = one(&e, "a", (2, 1), &mac);
    assert_eq!(status(&wrong_op).1, Some(rr::INVALID_CORRELATION_VALUE));
    let last = one(
        &e,
        "a",
        (2, 1),
        &hash_part(&format!("{}{FINAL}", cv(&value)), "6263"),
    );
    assert_eq!(
        hex::encode(bytes_of(ok(&last), tag::DATA).unwrap()),
        SHA256_ABC
    );
}

const REGISTER_AES: &str = r#"<BatchItem><Operation type="Enumeration" value="Register"/><RequestPayload>
<ObjectType type="Enumeration" value="SymmetricKey"/>
<Attributes><CryptographicUsageMask type="Integer" value="Encrypt Decrypt MACGenerate"/>
<ActivationDate type="DateTime" value="2001-01-01T00:00:00+00:00"/></Attributes>
<SymmetricKey><KeyBlock><KeyFormatType type="Enumeration" value="Raw"/>
<KeyValue><KeyMaterial type="ByteString" value="000102030405060708090a0b0c0d0e0f"/></KeyValue>
<CryptographicAlgorithm type="Enumeration" value="AES"/>
<CryptographicLength type="Integer" value="128"/></KeyBlock></SymmetricKey>
</RequestPayload></BatchItem>"#;

fn register(e: &Engine, who: &str) -> String {
    let r = one(e, who, (2, 1), REGISTER_AES);
    let uid = field(ok(&r), &[tag::RESPONSE_PAYLOAD, tag::UNIQUE_IDENTIFIER]).unwrap();
    kmipd_proto::reader::as_text(uid).unwrap().to_owned()
}

const GCM: &str = r#"<CryptographicParameters><BlockCipherMode type="Enumeration" value="GCM"/>
<TagLength type="Integer" value="16"/></CryptographicParameters>
<IVCounterNonce type="ByteString" value="000102030405060708090a0b"/>"#;

fn crypt(op: &str, uid: &str, body: &str) -> String {
    format!(
        r#"<BatchItem><Operation type="Enumeration" value="{op}"/><RequestPayload>
<UniqueIdentifier type="TextString" value="{uid}"/>{body}</RequestPayload></BatchItem>"#
    )
}

/// `op` on `uid` with `body`, sent by `a` in 2.1: its batch item.
fn crypt_as_a(e: &Engine, op: &str, uid: &str, body: &str) -> Ttlv {
    one(e, "a", (2, 1), &crypt(op, uid, body))
}

#[test]
fn gcm_in_parts_matches_one_part_and_decryption_shows_no_plaintext_before_its_tag() {
    let e = Engine::in_memory();
    let uid = register(&e, "a");
    let plain = "00112233445566778899aabbccddeeff0011223344";
    let whole = crypt_as_a(
        &e,
        "Encrypt",
        &uid,
        &format!(r#"{GCM}<Data type="ByteString" value="{plain}"/>"#),
    );
    let cipher = bytes_of(ok(&whole), tag::DATA).unwrap();
    let tag_whole = bytes_of(&whole, tag::AUTHENTICATED_ENCRYPTION_TAG).unwrap();

    // Encrypt in three parts: the ciphertext comes as the data does, the tag at the end.
    let (p1, p2, p3) = (&plain[..10], &plain[10..30], &plain[30..]);
    let first = crypt_as_a(
        &e,
        "Encrypt",
        &uid,
        &format!(r#"{GCM}<Data type="ByteString" value="{p1}"/>{INIT}"#),
    );
    let value = bytes_of(ok(&first), tag::CORRELATION_VALUE).unwrap();
    let mut streamed = bytes_of(&first, tag::DATA).unwrap_or_default();
    let second = crypt_as_a(
        &e,
        "Encrypt",
        &uid,
        &format!(r#"<Data type="ByteString" value="{p2}"/>{}"#, cv(&value)),
    );
    streamed.extend(bytes_of(ok(&second), tag::DATA).unwrap_or_default());
    let last = crypt_as_a(
        &e,
        "Encrypt",
        &uid,
        &format!(
            r#"<Data type="ByteString" value="{p3}"/>{}{FINAL}"#,
            cv(&value)
        ),
    );
    streamed.extend(bytes_of(ok(&last), tag::DATA).unwrap_or_default());
    assert_eq!(streamed, cipher);
    assert_eq!(
        bytes_of(&last, tag::AUTHENTICATED_ENCRYPTION_TAG),
        Some(tag_whole.clone())
    );

    // Decrypt in two parts, first with a wrong tag (sent with the last part), then (a new
    // stream) with the right one (sent with the first part, kept for the last).
    let (c1, c2) = cipher.split_at(7);
    for (tag_hex, good) in [("00".repeat(16), false), (hex::encode(&tag_whole), true)] {
        let tag_item =
            format!(r#"<AuthenticatedEncryptionTag type="ByteString" value="{tag_hex}"/>"#);
        let (early, late) = if good {
            (tag_item.as_str(), "")
        } else {
            ("", tag_item.as_str())
        };
        let first = crypt_as_a(
            &e,
            "Decrypt",
            &uid,
            &format!(
                r#"{GCM}<Data type="ByteString" value="{}"/>{early}{INIT}"#,
                hex::encode(c1)
            ),
        );
        assert_eq!(
            bytes_of(ok(&first), tag::DATA),
            None,
            "plaintext before the tag"
        );
        let value = bytes_of(&first, tag::CORRELATION_VALUE).unwrap();
        let last = crypt_as_a(
            &e,
            "Decrypt",
            &uid,
            &format!(
                r#"<Data type="ByteString" value="{}"/>{}{FINAL}{late}"#,
                hex::encode(c2),
                cv(&value)
            ),
        );
        if good {
            assert_eq!(hex::encode(bytes_of(ok(&last), tag::DATA).unwrap()), plain);
        } else {
            assert_eq!(status(&last).1, Some(rr::CRYPTOGRAPHIC_FAILURE));
            assert_eq!(bytes_of(&last, tag::DATA), None);
        }
    }
}

#[test]
fn a_refused_part_leaves_its_stream_as_it_was() {
    let e = Engine::in_memory();
    let uid = register(&e, "a");
    let other = register(&e, "a");
    let mac = |uid: &str, body: &str| {
        format!(
            r#"<BatchItem><Operation type="Enumeration" value="MAC"/><RequestPayload>
<UniqueIdentifier type="TextString" value="{uid}"/>
<CryptographicParameters><CryptographicAlgorithm type="Enumeration" value="HMAC_SHA256"/></CryptographicParameters>
{body}</RequestPayload></BatchItem>"#
        )
    };
    let whole = one(
        &e,
        "a",
        (1, 4),
        &mac(&uid, r#"<Data type="ByteString" value="01020304"/>"#),
    );
    let expected = bytes_of(ok(&whole), tag::MAC_DATA).unwrap();
    let first = one(
        &e,
        "a",
        (1, 4),
        &mac(
            &uid,
            &format!(r#"<Data type="ByteString" value="0102"/>{INIT}"#),
        ),
    );
    let value = bytes_of(ok(&first), tag::CORRELATION_VALUE).unwrap();
    // A part naming another key is refused, and its data is not taken.
    let wrong = one(
        &e,
        "a",
        (1, 4),
        &mac(
            &other,
            &format!(r#"<Data type="ByteString" value="ffff"/>{}"#, cv(&value)),
        ),
    );
    assert_eq!(status(&wrong).1, Some(rr::INVALID_FIELD));
    let last = one(
        &e,
        "a",
        (1, 4),
        &mac(
            &uid,
            &format!(
                r#"<Data type="ByteString" value="0304"/>{}{FINAL}"#,
                cv(&value)
            ),
        ),
    );
    assert_eq!(bytes_of(ok(&last), tag::MAC_DATA), Some(expected));
}

#[test]
fn streams_are_bounded_per_identity_and_expire_when_idle() {
    let now = Arc::new(AtomicI64::new(1_700_000_000));
    let clock = {
        let now = Arc::clone(&now);
        Clock::from_fn(move || now.load(Ordering::SeqCst))
    };
    let e = Engine::new(
        Arc::new(MemoryStore::new()),
        EngineConfig {
            clock,
            ..EngineConfig::default()
        },
    );
    // MAX_PER_IDENTITY (streams.rs) streams open; the next one is refused.
    let mut opened = Vec::new();
    let refused = loop {
        let r = one(&e, "a", (2, 1), &hash_part(INIT, "61"));
        if status(&r).0 != result_status::SUCCESS {
            break r;
        }
        opened.push(bytes_of(&r, tag::CORRELATION_VALUE).unwrap());
        assert!(opened.len() <= 64, "no bound");
    };
    assert_eq!(opened.len(), 64);
    assert_eq!(
        as_enum(field(&refused, &[tag::RESULT_REASON]).unwrap()).unwrap(),
        rr::GENERAL_FAILURE
    );
    // Another identity is not bound by a's streams.
    open_hash(&e, "b", "61");
    // Idle past the limit: a's streams are gone, and a may open new ones.
    now.fetch_add(601, Ordering::SeqCst);
    let late = one(
        &e,
        "a",
        (2, 1),
        &hash_part(&format!("{}{FINAL}", cv(&opened[0])), "62"),
    );
    assert_eq!(status(&late).1, Some(rr::INVALID_CORRELATION_VALUE));
    open_hash(&e, "a", "61");
}
