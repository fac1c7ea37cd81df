//! Properties over generated inputs: encoding then decoding is the identity; decoding never
//! panics, whatever the bytes; whatever decodes re-encodes to the very same bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use kmipd_ttlv::{
    HEADER_LEN, Limits, Value, decode, encode, encode_byte_string, encode_text, encode_to_vec,
    encode_value, encoded_len, frame_len, fuzzing,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_is_identity(tree in common::arb_tree(true)) {
        let bytes = encode_to_vec(&tree).unwrap();
        prop_assert_eq!(bytes.len(), encoded_len(&tree));
        prop_assert_eq!(bytes.len() % 8, 0);
        let back = decode(&bytes, &Limits::unbounded()).unwrap();
        prop_assert_eq!(&back, &tree);
        let header: &[u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
        prop_assert_eq!(frame_len(header, &Limits::unbounded()).unwrap().total_len, bytes.len());
    }

    /// `encode_value` appends what `encode` appends for the item made of the same tag and value.
    #[test]
    fn encode_value_appends_what_encode_appends(tree in common::arb_tree(true)) {
        let mut by_item = b"prefix".to_vec();
        encode(&tree, &mut by_item).unwrap();
        let mut by_parts = b"prefix".to_vec();
        encode_value(tree.tag, &tree.value, &mut by_parts).unwrap();
        prop_assert_eq!(by_parts, by_item);
    }

    /// The borrowed forms of the two string types append what `encode` appends.
    #[test]
    fn encode_text_and_byte_string_append_what_encode_appends(
        text in ".{0,40}",
        bytes in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let tag = kmipd_ttlv::Tag::new(0x42_0001).unwrap();
        let (mut by_item, mut borrowed) = (Vec::new(), Vec::new());
        encode(&kmipd_ttlv::Ttlv::new(tag, Value::TextString(text.clone())), &mut by_item).unwrap();
        encode_text(tag, &text, &mut borrowed).unwrap();
        let as_bytes = Value::ByteString(zeroize::Zeroizing::new(bytes.clone()));
        encode(&kmipd_ttlv::Ttlv::new(tag, as_bytes), &mut by_item).unwrap();
        encode_byte_string(tag, &bytes, &mut borrowed).unwrap();
        prop_assert_eq!(borrowed, by_item);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::decode_bytes(&bytes);
        fuzzing::round_trip(&bytes);
    }

    /// Random bytes are almost always refused at the first header; corrupting valid encodings
    /// reaches deeper: every single-byte change is either refused or accepted and re-encoded
    /// identically.
    #[test]
    fn corrupted_encodings_are_refused_or_round_trip(
        tree in common::arb_tree(true),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode_to_vec(&tree).unwrap();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        fuzzing::round_trip(&bytes);
        let cut = cut.index(bytes.len());
        fuzzing::round_trip(&bytes[..cut]);
    }
}
