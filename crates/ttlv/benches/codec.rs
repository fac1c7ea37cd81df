//! Codec speed on typical traffic: a KMIP 1.2 Create request for an AES-256 key (four template
//! attributes and a Name, 400 bytes on the wire) and the Get response carrying that key.
//! Results are recorded in docs/performance.md.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kmipd_ttlv::{Limits, Tag, Ttlv, Value, decode, encode, encode_to_vec};

fn t(v: u32) -> Tag {
    Tag::new(v).unwrap()
}

fn s(tag: u32, children: Vec<Ttlv>) -> Ttlv {
    Ttlv::new(t(tag), Value::Structure(children))
}

fn leaf(tag: u32, value: Value) -> Ttlv {
    Ttlv::new(t(tag), value)
}

fn attribute(name: &str, value: Value) -> Ttlv {
    s(
        0x42_0008,
        vec![
            leaf(0x42_000A, Value::TextString(name.into())),
            leaf(0x42_000B, value),
        ],
    )
}

fn header(request: bool) -> Ttlv {
    let version = s(
        0x42_0069,
        vec![
            leaf(0x42_006A, Value::Integer(1)),
            leaf(0x42_006B, Value::Integer(2)),
        ],
    );
    if request {
        s(0x42_0077, vec![version, leaf(0x42_000D, Value::Integer(1))])
    } else {
        s(
            0x42_007A,
            vec![
                version,
                leaf(0x42_0092, Value::DateTime(1_795_321_146)),
                leaf(0x42_000D, Value::Integer(1)),
            ],
        )
    }
}

/// Create (symmetric key; AES, 256 bits, Encrypt|Decrypt, a Name).
fn create_request() -> Ttlv {
    s(
        0x42_0078,
        vec![
            header(true),
            s(
                0x42_000F,
                vec![
                    leaf(0x42_005C, Value::Enumeration(1)),
                    s(
                        0x42_0079,
                        vec![
                            leaf(0x42_0057, Value::Enumeration(2)),
                            s(
                                0x42_0091,
                                vec![
                                    attribute("Cryptographic Algorithm", Value::Enumeration(3)),
                                    attribute("Cryptographic Length", Value::Integer(256)),
                                    attribute("Cryptographic Usage Mask", Value::Integer(12)),
                                    attribute(
                                        "Name",
                                        Value::Structure(vec![
                                            leaf(
                                                0x42_0055,
                                                Value::TextString("benchmark-key-0001".into()),
                                            ),
                                            leaf(0x42_0054, Value::Enumeration(1)),
                                        ]),
                                    ),
                                    attribute("Object Group", Value::TextString("default".into())),
                                ],
                            ),
                        ],
                    ),
                ],
            ),
        ],
    )
}

/// Get response carrying a raw AES-256 key.
fn get_response() -> Ttlv {
    s(
        0x42_007B,
        vec![
            header(false),
            s(
                0x42_000F,
                vec![
                    leaf(0x42_005C, Value::Enumeration(10)),
                    leaf(0x42_007F, Value::Enumeration(0)),
                    s(
                        0x42_007C,
                        vec![
                            leaf(0x42_0057, Value::Enumeration(2)),
                            leaf(
                                0x42_0094,
                                Value::TextString("0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9".into()),
                            ),
                            s(
                                0x42_008F,
                                vec![s(
                                    0x42_0040,
                                    vec![
                                        leaf(0x42_0042, Value::Enumeration(1)),
                                        s(
                                            0x42_0045,
                                            vec![leaf(0x42_0043, Value::bytes(vec![0x5A; 32]))],
                                        ),
                                        leaf(0x42_0028, Value::Enumeration(3)),
                                        leaf(0x42_002A, Value::Integer(256)),
                                    ],
                                )],
                            ),
                        ],
                    ),
                ],
            ),
        ],
    )
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    for (name, tree) in [
        ("create_request", create_request()),
        ("get_response", get_response()),
    ] {
        let bytes = encode_to_vec(&tree).unwrap();
        assert_eq!(decode(&bytes, &limits).unwrap(), tree);
        let mut group = c.benchmark_group(format!("{name}_{}B", bytes.len()));
        group.throughput(Throughput::Bytes(u64::try_from(bytes.len()).unwrap()));
        group.bench_function("decode", |b| {
            b.iter(|| decode(black_box(&bytes), &limits).unwrap())
        });
        let mut out = Vec::with_capacity(bytes.len());
        group.bench_function("encode", |b| {
            b.iter(|| {
                out.clear();
                encode(black_box(&tree), &mut out).unwrap();
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
