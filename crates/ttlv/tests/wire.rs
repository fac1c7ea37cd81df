//! Hand-built wire cases: the KMIP specification's own encoding examples, and one test for
//! each kind of malformed input, each checking the error kind and its byte offset.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use kmipd_test_support::hex_bytes;
use kmipd_ttlv::{
    BigInteger, DecodeError, ErrorKind, HEADER_LEN, ItemType, Limits, Tag, Ttlv, Value, decode,
    encode_to_vec, frame_len,
};

fn tag(v: u32) -> Tag {
    Tag::new(v).unwrap()
}

fn err(bytes: &[u8]) -> DecodeError {
    decode(bytes, &Limits::default()).expect_err("input must be refused")
}

/// KMIP 1.4 §9.1.2 "Examples": each value, its exact bytes, both directions.
#[test]
fn specification_examples_decode_and_encode_exactly() {
    let cases: Vec<(&str, Value)> = vec![
        ("420020 02 00000004 00000008 00000000", Value::Integer(8)),
        (
            "420020 03 00000008 01B69B4BA5749200",
            Value::LongInteger(123_456_789_000_000_000),
        ),
        (
            "420020 04 00000010 0000000003FD35EB 6BC2DF4618080000",
            Value::BigInteger(BigInteger::from_twos_complement(
                &1_234_567_890_000_000_000_000_000_000u128.to_be_bytes(),
            )),
        ),
        (
            "420020 05 00000004 000000FF 00000000",
            Value::Enumeration(255),
        ),
        ("420020 06 00000008 0000000000000001", Value::Boolean(true)),
        (
            "420020 07 0000000B 48656C6C6F20576F726C640000000000",
            Value::TextString("Hello World".into()),
        ),
        (
            "420020 08 00000003 0102030000000000",
            Value::bytes(vec![1, 2, 3]),
        ),
        // Friday, March 14, 2008, 11:56:40 GMT
        (
            "420020 09 00000008 0000000047DA67F8",
            Value::DateTime(1_205_495_800),
        ),
        // 10 days
        (
            "420020 0A 00000004 000D2F00 00000000",
            Value::Interval(864_000),
        ),
        (
            "420020 01 00000020 420004 05 00000004 000000FE 00000000 \
             420005 02 00000004 000000FF 00000000",
            Value::Structure(vec![
                Ttlv::new(tag(0x42_0004), Value::Enumeration(254)),
                Ttlv::new(tag(0x42_0005), Value::Integer(255)),
            ]),
        ),
        // KMIP 2.x Date-Time Extended: microseconds, 8 bytes.
        (
            "420020 0B 00000008 0004549902C46F00",
            Value::DateTimeExtended(1_218_916_060_000_000),
        ),
        ("420020 01 00000000", Value::Structure(vec![])),
        ("420020 07 00000000", Value::TextString(String::new())),
        (
            "420020 08 00000008 0102030405060708",
            Value::bytes(vec![1, 2, 3, 4, 5, 6, 7, 8]),
        ),
        ("420020 06 00000008 0000000000000000", Value::Boolean(false)),
        ("420020 02 00000004 FFFFFFFF 00000000", Value::Integer(-1)),
    ];
    for (hex, value) in cases {
        let bytes = hex_bytes(hex);
        let item = Ttlv::new(tag(0x42_0020), value);
        assert_eq!(
            decode(&bytes, &Limits::default()).unwrap(),
            item,
            "decoding {hex}"
        );
        assert_eq!(encode_to_vec(&item).unwrap(), bytes, "encoding {hex}");
    }
}

#[test]
fn any_tag_is_kept_including_extensions_and_unknown_ones() {
    for t in [
        0x00_0000, 0x42_0001, 0x42_FFFF, 0x54_0001, 0x54_FFFF, 0xFF_FFFF,
    ] {
        let item = Ttlv::new(tag(t), Value::Integer(1));
        let bytes = encode_to_vec(&item).unwrap();
        assert_eq!(decode(&bytes, &Limits::default()).unwrap().tag.value(), t);
    }
}

#[test]
fn message_too_large_is_refused_before_looking_inside() {
    let bytes = hex_bytes("420020 07 00000010 41414141414141414141414141414141");
    let limits = Limits {
        max_message_len: bytes.len() - 1,
        ..Limits::default()
    };
    let e = decode(&bytes, &limits).unwrap_err();
    assert_eq!(e.kind, ErrorKind::MessageTooLarge { len: 24, max: 23 });
    assert_eq!(e.offset, 0);
}

#[test]
fn truncated_header() {
    let e = err(&hex_bytes("420020 02 0000"));
    assert_eq!(e.kind, ErrorKind::TruncatedHeader { available: 6 });
    assert_eq!(e.offset, 0);
    assert_eq!(err(&[]).kind, ErrorKind::TruncatedHeader { available: 0 });
}

#[test]
fn declared_length_running_past_the_input() {
    // A Text String that claims 16 bytes (padded) with 8 present.
    let e = err(&hex_bytes("420020 07 00000009 4142434445464748"));
    assert_eq!(
        e.kind,
        ErrorKind::LengthOverrun {
            item_type: ItemType::TextString,
            declared: 16,
            available: 8
        }
    );
    assert_eq!(e.offset, 0);
}

#[test]
fn child_running_past_its_parent_structure() {
    // The structure declares 16 bytes; its child claims 16 value bytes after its 8-byte header.
    let bytes =
        hex_bytes("420020 01 00000010 420021 08 00000010 0000000000000000 0000000000000000");
    let e = err(&bytes);
    assert_eq!(
        e.kind,
        ErrorKind::LengthOverrun {
            item_type: ItemType::ByteString,
            declared: 16,
            available: 8
        }
    );
    assert_eq!(e.offset, 8);
}

#[test]
fn unknown_item_type() {
    for code in [0x00u8, 0x0C, 0x80, 0xFF] {
        let mut bytes = hex_bytes("420020 02 00000004 00000001 00000000");
        bytes[3] = code;
        let e = err(&bytes);
        assert_eq!(
            e.kind,
            ErrorKind::UnknownItemType {
                code,
                tag: tag(0x42_0020)
            }
        );
        assert_eq!(e.offset, 0);
    }
}

#[test]
fn wrong_length_for_each_fixed_size_type() {
    for (t, expected) in [
        (ItemType::Integer, 4u32),
        (ItemType::Enumeration, 4),
        (ItemType::Interval, 4),
        (ItemType::LongInteger, 8),
        (ItemType::Boolean, 8),
        (ItemType::DateTime, 8),
        (ItemType::DateTimeExtended, 8),
    ] {
        // Declare 8 for the 4-byte types and 4 for the 8-byte ones; 16 bytes of zero follow.
        let declared = if expected == 4 { 8 } else { 4 };
        let mut bytes = vec![0x42, 0x00, 0x20, t.code()];
        bytes.extend_from_slice(&u32::to_be_bytes(declared));
        bytes.extend_from_slice(&[0; 8]);
        let e = err(&bytes);
        assert_eq!(
            e.kind,
            ErrorKind::InvalidFixedLength {
                item_type: t,
                expected,
                declared
            }
        );
        assert_eq!(e.offset, 0);
    }
}

#[test]
fn big_integer_length_not_a_positive_multiple_of_eight() {
    let e = err(&hex_bytes("420020 04 00000004 0000000100000000"));
    assert_eq!(e.kind, ErrorKind::InvalidBigIntegerLength { declared: 4 });
    let e = err(&hex_bytes("420020 04 00000000"));
    assert_eq!(e.kind, ErrorKind::InvalidBigIntegerLength { declared: 0 });
}

#[test]
fn non_zero_padding_after_fixed_and_variable_values() {
    // Integer: 4 bytes of padding, the third of which is 0x01.
    let e = err(&hex_bytes("420020 02 00000004 00000008 00000100"));
    assert_eq!(e.kind, ErrorKind::NonZeroPadding { byte: 0x01 });
    assert_eq!(e.offset, 8 + 4 + 2);
    // Text String "abc": 5 bytes of padding, the last of which is 0x20.
    let e = err(&hex_bytes("420020 07 00000003 6162630000000020"));
    assert_eq!(e.kind, ErrorKind::NonZeroPadding { byte: 0x20 });
    assert_eq!(e.offset, 15);
    // Byte String inside a structure.
    let e = err(&hex_bytes(
        "420020 01 00000010 420021 08 00000001 FFFF000000000000",
    ));
    assert_eq!(e.kind, ErrorKind::NonZeroPadding { byte: 0xFF });
    assert_eq!(e.offset, 8 + 8 + 1);
}

#[test]
fn structure_not_filled_exactly_by_its_items() {
    // Declared 20 bytes: one 16-byte Integer, then 4 bytes that cannot be an item.
    let e = err(&hex_bytes(
        "420020 01 00000014 420021 02 00000004 00000001 00000000 00000000",
    ));
    assert_eq!(
        e.kind,
        ErrorKind::StructureLengthMismatch {
            declared: 20,
            consumed: 16,
            left: 4
        }
    );
    assert_eq!(e.offset, 24);
}

#[test]
fn trailing_bytes_after_the_message() {
    let e = err(&hex_bytes("420020 02 00000004 00000001 00000000 00"));
    assert_eq!(e.kind, ErrorKind::TrailingBytes { count: 1 });
    assert_eq!(e.offset, 16);
    // A second complete item is trailing data too.
    let e = err(&hex_bytes(
        "420020 02 00000004 00000001 00000000 420020 02 00000004 00000001 00000000",
    ));
    assert_eq!(e.kind, ErrorKind::TrailingBytes { count: 16 });
}

#[test]
fn invalid_utf8_in_a_text_string() {
    // "ab" then a lone continuation byte.
    let e = err(&hex_bytes("420020 07 00000003 616280 0000000000"));
    assert_eq!(e.kind, ErrorKind::InvalidUtf8);
    assert_eq!(e.offset, 8 + 2);
}

#[test]
fn boolean_other_than_zero_or_one() {
    let e = err(&hex_bytes("420020 06 00000008 0000000000000002"));
    assert_eq!(e.kind, ErrorKind::InvalidBoolean { value: 2 });
    assert_eq!(e.offset, 8);
    let e = err(&hex_bytes("420020 06 00000008 0100000000000001"));
    assert_eq!(
        e.kind,
        ErrorKind::InvalidBoolean {
            value: 0x0100_0000_0000_0001
        }
    );
}

fn nested(depth: usize) -> Vec<u8> {
    let mut item = Ttlv::new(tag(0x42_0020), Value::Structure(vec![]));
    for _ in 1..depth {
        item = Ttlv::new(tag(0x42_0020), Value::Structure(vec![item]));
    }
    encode_to_vec(&item).unwrap()
}

#[test]
fn nesting_deeper_than_the_limit() {
    let limits = Limits {
        max_depth: 4,
        ..Limits::default()
    };
    assert!(decode(&nested(4), &limits).is_ok());
    let e = decode(&nested(5), &limits).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooDeep { max: 4 });
    assert_eq!(e.offset, 4 * 8, "the fifth structure header");
    // The hard cap holds whatever the configuration says.
    let huge = Limits {
        max_depth: usize::MAX,
        ..Limits::unbounded()
    };
    let e = decode(&nested(Limits::HARD_MAX_DEPTH + 1), &huge).unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::TooDeep {
            max: Limits::HARD_MAX_DEPTH
        }
    );
}

#[test]
fn more_items_than_the_limit() {
    let children = (0..10)
        .map(|i| Ttlv::new(tag(0x42_0021), Value::Integer(i)))
        .collect();
    let bytes = encode_to_vec(&Ttlv::new(tag(0x42_0020), Value::Structure(children))).unwrap();
    assert!(
        decode(
            &bytes,
            &Limits {
                max_items: 11,
                ..Limits::default()
            }
        )
        .is_ok()
    );
    let e = decode(
        &bytes,
        &Limits {
            max_items: 10,
            ..Limits::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooManyItems { max: 10 });
    assert_eq!(e.offset, 8 + 9 * 16, "the eleventh item");
}

#[test]
fn framer_reads_lengths_from_the_header_and_refuses_early() {
    let limits = Limits::default();
    let item = Ttlv::new(
        tag(0x42_0078),
        Value::Structure(vec![Ttlv::new(
            tag(0x42_0021),
            Value::TextString("abc".into()),
        )]),
    );
    let bytes = encode_to_vec(&item).unwrap();
    let frame = frame_len(bytes[..HEADER_LEN].try_into().unwrap(), &limits).unwrap();
    assert_eq!(frame.total_len, bytes.len());
    assert_eq!(frame.body_len(), bytes.len() - HEADER_LEN);
    assert_eq!(frame.tag, tag(0x42_0078));
    assert_eq!(frame.item_type, ItemType::Structure);

    // A leaf: the padding counts.
    let leaf = hex_bytes("420020 07 00000003");
    assert_eq!(
        frame_len(leaf[..].try_into().unwrap(), &limits)
            .unwrap()
            .total_len,
        16
    );

    // A header that claims 4 GiB is refused from its 8 bytes.
    let e = frame_len(&[0x42, 0x00, 0x78, 0x01, 0xFF, 0xFF, 0xFF, 0xF8], &limits).unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::MessageTooLarge {
            len: 0xFFFF_FFF8 + 8,
            max: Limits::DEFAULT_MAX_MESSAGE_LEN
        }
    );
    // The header's own faults are found too.
    let e = frame_len(&[0x42, 0x00, 0x78, 0x0C, 0, 0, 0, 8], &limits).unwrap_err();
    assert!(matches!(
        e.kind,
        ErrorKind::UnknownItemType { code: 0x0C, .. }
    ));
    let e = frame_len(&[0x42, 0x00, 0x20, 0x02, 0, 0, 0, 8], &limits).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::InvalidFixedLength { .. }));
}

#[test]
fn errors_render_with_their_offset() {
    let e = err(&hex_bytes("420020 06 00000008 0000000000000002"));
    assert_eq!(
        e.to_string(),
        "boolean value 0x0000000000000002 is neither 0 nor 1 at byte 8"
    );
}
