//! Strategies shared by the property and differential tests.
#![allow(unreachable_pub)]

use kmipd_ttlv::{BigInteger, Tag, Ttlv, Value};
use proptest::prelude::*;

/// Any 24-bit tag, biased towards KMIP's and the extension range.
pub fn arb_tag() -> impl Strategy<Value = Tag> {
    prop_oneof![
        (0x42_0000u32..=0x42_FFFF),
        (0x54_0000u32..=0x54_FFFF),
        (0u32..=Tag::MAX),
    ]
    .prop_map(|v| Tag::new(v).unwrap())
}

/// Leaf values; `all_types` adds Interval and Date-Time Extended (which kmip-ttlv lacks).
pub fn arb_leaf(all_types: bool) -> BoxedStrategy<Value> {
    let common = prop_oneof![
        any::<i32>().prop_map(Value::Integer),
        any::<i64>().prop_map(Value::LongInteger),
        prop::collection::vec(any::<u8>(), 0..40)
            .prop_map(|b| Value::BigInteger(BigInteger::from_twos_complement(&b))),
        any::<u32>().prop_map(Value::Enumeration),
        any::<bool>().prop_map(Value::Boolean),
        ".{0,40}".prop_map(Value::TextString),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Value::bytes),
        any::<i64>().prop_map(Value::DateTime),
    ];
    if all_types {
        prop_oneof![
            8 => common,
            1 => any::<u32>().prop_map(Value::Interval),
            1 => any::<i64>().prop_map(Value::DateTimeExtended),
        ]
        .boxed()
    } else {
        common.boxed()
    }
}

/// Trees up to 6 levels deep and a few hundred items.
pub fn arb_tree(all_types: bool) -> impl Strategy<Value = Ttlv> {
    let leaf = (arb_tag(), arb_leaf(all_types)).prop_map(|(t, v)| Ttlv::new(t, v));
    leaf.prop_recursive(6, 256, 8, |inner| {
        (arb_tag(), prop::collection::vec(inner, 0..8))
            .prop_map(|(t, children)| Ttlv::new(t, Value::Structure(children)))
    })
}
