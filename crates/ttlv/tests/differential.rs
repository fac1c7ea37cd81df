//! Differential tests against NLnet Labs' `kmip-ttlv` crate, an independent implementation:
//! what we encode, it reads back as the same values; what it writes, we decode to the same
//! values. Interval and Date-Time Extended are left out: kmip-ttlv does not support them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(clippy::as_conversions)]

mod common;

use std::io::Cursor;

use kmip_ttlv::types::{
    SerializableTtlvType, TtlvBigInteger, TtlvBoolean, TtlvByteString, TtlvDateTime,
    TtlvEnumeration, TtlvInteger, TtlvLength, TtlvLongInteger, TtlvTag, TtlvTextString, TtlvType,
};
use kmipd_ttlv::{BigInteger, Limits, Tag, Ttlv, Value, decode, encode_to_vec};
use proptest::prelude::*;

/// Reads one item with kmip-ttlv's primitive readers into our tree type (for comparison).
fn theirs_read(cur: &mut Cursor<&[u8]>) -> Ttlv {
    let tag = TtlvTag::read(cur).unwrap();
    let tag = Tag::new(*tag).unwrap();
    let value = match TtlvType::read(cur).unwrap() {
        TtlvType::Structure => {
            let len = *TtlvLength::read(cur).unwrap();
            let end = cur.position() + u64::from(len);
            let mut children = Vec::new();
            while cur.position() < end {
                children.push(theirs_read(cur));
            }
            assert_eq!(cur.position(), end, "structure length");
            Value::Structure(children)
        }
        TtlvType::Integer => Value::Integer(*TtlvInteger::read(cur).unwrap()),
        TtlvType::LongInteger => Value::LongInteger(*TtlvLongInteger::read(cur).unwrap()),
        TtlvType::BigInteger => Value::BigInteger(BigInteger::from_twos_complement(
            &TtlvBigInteger::read(cur).unwrap(),
        )),
        TtlvType::Enumeration => Value::Enumeration(*TtlvEnumeration::read(cur).unwrap()),
        TtlvType::Boolean => Value::Boolean(*TtlvBoolean::read(cur).unwrap()),
        TtlvType::TextString => Value::TextString(TtlvTextString::read(cur).unwrap().0),
        TtlvType::ByteString => Value::bytes(TtlvByteString::read(cur).unwrap().0),
        TtlvType::DateTime => Value::DateTime(*TtlvDateTime::read(cur).unwrap()),
    };
    Ttlv::new(tag, value)
}

/// Writes one item with kmip-ttlv's primitive writers (structure headers by hand: kmip-ttlv
/// has no writer for a dynamic structure outside its serde layer).
fn theirs_write(item: &Ttlv, out: &mut Vec<u8>) {
    TtlvTag::from(item.tag.to_bytes()).write(out).unwrap();
    match &item.value {
        Value::Structure(children) => {
            let mut body = Vec::new();
            for c in children {
                theirs_write(c, &mut body);
            }
            TtlvType::Structure.write(out).unwrap();
            TtlvLength::new(body.len() as u32).write(out).unwrap();
            out.extend_from_slice(&body);
        }
        Value::Integer(v) => TtlvInteger(*v).write(out).unwrap(),
        Value::LongInteger(v) => TtlvLongInteger(*v).write(out).unwrap(),
        Value::BigInteger(v) => TtlvBigInteger(v.as_bytes().to_vec()).write(out).unwrap(),
        Value::Enumeration(v) => TtlvEnumeration(*v).write(out).unwrap(),
        Value::Boolean(v) => TtlvBoolean(*v).write(out).unwrap(),
        Value::TextString(v) => TtlvTextString(v.clone()).write(out).unwrap(),
        Value::ByteString(v) => TtlvByteString(v.to_vec()).write(out).unwrap(),
        Value::DateTime(v) => TtlvDateTime(*v).write(out).unwrap(),
        Value::Interval(_) | Value::DateTimeExtended(_) => unreachable!("not generated"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn what_we_encode_they_read_as_the_same_values(tree in common::arb_tree(false)) {
        let bytes = encode_to_vec(&tree).unwrap();
        let mut cur = Cursor::new(bytes.as_slice());
        let theirs = theirs_read(&mut cur);
        prop_assert_eq!(cur.position(), bytes.len() as u64, "they consumed every byte");
        prop_assert_eq!(theirs, tree);
    }

    #[test]
    fn what_they_write_we_decode_to_the_same_values(tree in common::arb_tree(false)) {
        let mut bytes = Vec::new();
        theirs_write(&tree, &mut bytes);
        prop_assert_eq!(decode(&bytes, &Limits::unbounded()).unwrap(), tree.clone());
        // Both sides produce the very same bytes.
        prop_assert_eq!(encode_to_vec(&tree).unwrap(), bytes);
    }

    /// Big Integers of any length: kmip-ttlv sign-extends on write as we do on construction.
    #[test]
    fn big_integer_sign_extension_agrees(raw in prop::collection::vec(any::<u8>(), 1..40)) {
        let mut theirs = Vec::new();
        TtlvBigInteger(raw.clone()).write(&mut theirs).unwrap();
        let ours = BigInteger::from_twos_complement(&raw);
        prop_assert_eq!(&theirs[..], &encode_to_vec(&Ttlv::new(
            Tag::new(0x42_0020).unwrap(), Value::BigInteger(ours))).unwrap()[3..]);
    }
}

/// kmip-ttlv's serde deserializer (its high-level API, the way kmip-protocol reads real
/// responses) reads our encoding of a request-shaped structure. (Its serializer, kmip-ttlv
/// 0.3.5 with serde 1.0.2xx, refuses every struct with a leaf field here — `UnexpectedTtlvField
/// { expected: Value, actual: TypeAndLengthAndValue }` — so the writing direction is covered by
/// its primitive writers above.)
mod serde_layer {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename = "0x420069")]
    struct ProtocolVersion {
        #[serde(rename = "0x42006A")]
        major: i32,
        #[serde(rename = "0x42006B")]
        minor: i32,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename = "0x420077")]
    struct Header {
        #[serde(rename = "0x420069")]
        version: ProtocolVersion,
        #[serde(rename = "0x420050")]
        max_response_size: i32,
        #[serde(rename = "0x420092")]
        time_stamp: i64,
        #[serde(rename = "0x420055")]
        name: String,
        #[serde(rename = "0x420008")]
        flag: bool,
        #[serde(rename = "0x42000D")]
        batch_count: i32,
    }

    fn t(v: u32) -> Tag {
        Tag::new(v).unwrap()
    }

    fn ours() -> Ttlv {
        Ttlv::new(
            t(0x42_0077),
            Value::Structure(vec![
                Ttlv::new(
                    t(0x42_0069),
                    Value::Structure(vec![
                        Ttlv::new(t(0x42_006A), Value::Integer(1)),
                        Ttlv::new(t(0x42_006B), Value::Integer(4)),
                    ]),
                ),
                Ttlv::new(t(0x42_0050), Value::Integer(4096)),
                Ttlv::new(t(0x42_0092), Value::LongInteger(1_700_000_000)),
                Ttlv::new(t(0x42_0055), Value::TextString("kmipd ✓".into())),
                Ttlv::new(t(0x42_0008), Value::Boolean(true)),
                Ttlv::new(t(0x42_000D), Value::Integer(1)),
            ]),
        )
    }

    fn theirs() -> Header {
        Header {
            version: ProtocolVersion { major: 1, minor: 4 },
            max_response_size: 4096,
            time_stamp: 1_700_000_000,
            name: "kmipd ✓".into(),
            flag: true,
            batch_count: 1,
        }
    }

    #[test]
    fn their_deserializer_reads_our_encoding() {
        let bytes = encode_to_vec(&ours()).unwrap();
        let back: Header = kmip_ttlv::from_slice(&bytes).unwrap();
        assert_eq!(back, theirs());
    }
}
