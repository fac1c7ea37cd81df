//! Managed objects through the Engine: Create, Create Key Pair, Get (format conversion and
//! AES key wrapping), Re-Key and Re-Key Key Pair, in 1.x and 2.x.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use kmipd_ops::{Engine, Principal};
use kmipd_proto::attributes::Attribute;
use kmipd_proto::build;
use kmipd_proto::enums::{
    block_cipher_mode, cryptographic_algorithm as alg, key_format_type as kft, link_type,
    object_type, operation as op, result_reason as rr, result_status as rs, state, wrapping_method,
};
use kmipd_proto::message::{ProtocolVersion, ResponseBatchItem};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use kmipd_test_support::engine;

const V14: ProtocolVersion = ProtocolVersion::V1_4;
const V21: ProtocolVersion = ProtocolVersion::V2_1;

fn send(
    engine: &Engine,
    v: ProtocolVersion,
    items: Vec<(u32, Vec<Ttlv>)>,
) -> Vec<ResponseBatchItem> {
    engine::send(engine, &Principal::new("a"), v, items)
}

fn ok(item: &ResponseBatchItem) -> StructReader<'_> {
    assert_eq!(item.result_status, rs::SUCCESS, "{item:?}");
    StructReader::any(item.payload.as_ref().unwrap()).unwrap()
}

fn v1_attrs(t: kmipd_ttlv::Tag, attrs: Vec<Attribute>) -> Ttlv {
    build::structure(t, attrs.iter().map(|a| a.to_v1(None)).collect())
}

fn aes(bits: i32, mask: i32) -> Vec<Attribute> {
    vec![
        Attribute::std(tag::CRYPTOGRAPHIC_ALGORITHM, Value::Enumeration(alg::AES)),
        Attribute::std(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(bits)),
        Attribute::std(tag::CRYPTOGRAPHIC_USAGE_MASK, Value::Integer(mask)),
    ]
}

fn create_aes(engine: &Engine, v: ProtocolVersion, bits: i32, extra: Vec<Attribute>) -> String {
    create_aes_mask(engine, v, bits, 12, extra)
}

fn create_aes_mask(
    engine: &Engine,
    v: ProtocolVersion,
    bits: i32,
    mask: i32,
    extra: Vec<Attribute>,
) -> String {
    let mut attrs = aes(bits, mask);
    attrs.extend(extra);
    let attrs = if v.is_v2() {
        build::structure(
            tag::ATTRIBUTES,
            attrs.iter().map(Attribute::to_v2).collect(),
        )
    } else {
        v1_attrs(tag::TEMPLATE_ATTRIBUTE, attrs)
    };
    let items = send(
        engine,
        v,
        vec![(
            op::CREATE,
            vec![
                build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
                attrs,
            ],
        )],
    );
    ok(&items[0])
        .req_text(tag::UNIQUE_IDENTIFIER)
        .unwrap()
        .to_owned()
}

fn key_block(get: &StructReader<'_>, object: kmipd_ttlv::Tag) -> Ttlv {
    let o = get.required(object).unwrap();
    StructReader::any(o)
        .unwrap()
        .required(tag::KEY_BLOCK)
        .unwrap()
        .clone()
}

fn get_attr(engine: &Engine, v: ProtocolVersion, uid: &str, name: &str) -> Vec<Ttlv> {
    let items = send(
        engine,
        v,
        vec![(
            op::GET_ATTRIBUTES,
            vec![
                build::unique_identifier(uid),
                build::text(tag::ATTRIBUTE_NAME, name),
            ],
        )],
    );
    ok(&items[0]).repeated(tag::ATTRIBUTE).cloned().collect()
}

#[test]
fn create_gives_a_pre_active_raw_key_of_the_asked_length_and_get_converts_it() {
    let engine = Engine::in_memory();
    let uid = create_aes(&engine, V14, 192, vec![]);
    let items = send(
        &engine,
        V14,
        vec![
            (op::GET, vec![build::unique_identifier(uid.clone())]),
            (
                op::GET,
                vec![
                    build::unique_identifier(uid.clone()),
                    build::enumeration(tag::KEY_FORMAT_TYPE, kft::TRANSPARENT_SYMMETRIC_KEY),
                ],
            ),
            (
                op::GET,
                vec![
                    build::unique_identifier(uid.clone()),
                    build::enumeration(tag::KEY_FORMAT_TYPE, kft::PKCS_8),
                ],
            ),
        ],
    );
    let kb = key_block(&ok(&items[0]), tag::SYMMETRIC_KEY);
    let kb = StructReader::any(&kb).unwrap();
    assert_eq!(kb.req_enum(tag::KEY_FORMAT_TYPE).unwrap(), kft::RAW);
    let kv = StructReader::any(kb.required(tag::KEY_VALUE).unwrap()).unwrap();
    let raw = kv.req_bytes(tag::KEY_MATERIAL).unwrap().to_vec();
    assert_eq!(raw.len(), 24);
    let kb2 = key_block(&ok(&items[1]), tag::SYMMETRIC_KEY);
    let kb2 = StructReader::any(&kb2).unwrap();
    let kv2 = StructReader::any(kb2.required(tag::KEY_VALUE).unwrap()).unwrap();
    let km = StructReader::any(kv2.required(tag::KEY_MATERIAL).unwrap()).unwrap();
    assert_eq!(km.req_bytes(tag::KEY).unwrap(), raw.as_slice());
    assert_eq!(items[2].result_status, rs::OPERATION_FAILED);
    assert_eq!(
        items[2].result_reason,
        Some(rr::KEY_FORMAT_TYPE_NOT_SUPPORTED)
    );
    let st = get_attr(&engine, V14, &uid, "State");
    assert!(format!("{st:?}").contains(&format!("Enumeration(0x{:08X})", state::PRE_ACTIVE)));
}

#[test]
fn create_without_algorithm_is_invalid_field_in_1x_and_missing_data_in_2x() {
    let engine = Engine::in_memory();
    for (v, reason) in [(V14, rr::INVALID_FIELD), (V21, rr::MISSING_DATA)] {
        let items = send(
            &engine,
            v,
            vec![(
                op::CREATE,
                vec![build::enumeration(
                    tag::OBJECT_TYPE,
                    object_type::SYMMETRIC_KEY,
                )],
            )],
        );
        assert_eq!(items[0].result_reason, Some(reason), "{v}");
    }
    let items = send(
        &engine,
        V14,
        vec![(
            op::CREATE,
            vec![
                build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
                v1_attrs(tag::TEMPLATE_ATTRIBUTE, aes(100, 12)),
            ],
        )],
    );
    assert_eq!(items[0].result_reason, Some(rr::INVALID_FIELD));
}

#[test]
fn create_key_pair_links_the_keys_and_get_gives_transparent_rsa() {
    let engine = Engine::in_memory();
    let common = vec![
        Attribute::std(tag::CRYPTOGRAPHIC_ALGORITHM, Value::Enumeration(alg::RSA)),
        Attribute::std(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(1024)),
    ];
    let items = send(
        &engine,
        V14,
        vec![
            (
                op::CREATE_KEY_PAIR,
                vec![v1_attrs(tag::COMMON_TEMPLATE_ATTRIBUTE, common)],
            ),
            // The ID Placeholder is the private key.
            (
                op::GET,
                vec![build::enumeration(
                    tag::KEY_FORMAT_TYPE,
                    kft::TRANSPARENT_RSA_PRIVATE_KEY,
                )],
            ),
        ],
    );
    let pair = ok(&items[0]);
    let private = pair
        .req_text(tag::PRIVATE_KEY_UNIQUE_IDENTIFIER)
        .unwrap()
        .to_owned();
    let public = pair
        .req_text(tag::PUBLIC_KEY_UNIQUE_IDENTIFIER)
        .unwrap()
        .to_owned();
    let get = ok(&items[1]);
    assert_eq!(get.req_text(tag::UNIQUE_IDENTIFIER).unwrap(), private);
    let kb = key_block(&get, tag::PRIVATE_KEY);
    let kb = StructReader::any(&kb).unwrap();
    let kv = StructReader::any(kb.required(tag::KEY_VALUE).unwrap()).unwrap();
    let km = StructReader::any(kv.required(tag::KEY_MATERIAL).unwrap()).unwrap();
    assert!(km.big(tag::MODULUS).unwrap().is_some());
    assert!(km.big(tag::PRIVATE_EXPONENT).unwrap().is_some());
    let links = format!("{:?}", get_attr(&engine, V14, &private, "Link"));
    assert!(links.contains(&public));
    assert!(links.contains(&format!(
        "Enumeration(0x{:08X})",
        link_type::PUBLIC_KEY_LINK
    )));
    let links = format!("{:?}", get_attr(&engine, V14, &public, "Link"));
    assert!(links.contains(&private));
}

#[test]
fn get_wraps_with_an_active_aes_key_per_rfc_3394() {
    let engine = Engine::in_memory();
    let activation = Attribute::std(tag::ACTIVATION_DATE, Value::DateTime(1));
    // Active (Activation Date in the past), allowed to wrap keys (mask Wrap Key).
    let kek = create_aes_mask(&engine, V14, 256, 0x10, vec![activation]);
    let key = create_aes(&engine, V14, 128, vec![]);
    let spec = build::structure(
        tag::KEY_WRAPPING_SPECIFICATION,
        vec![
            build::enumeration(tag::WRAPPING_METHOD, wrapping_method::ENCRYPT),
            build::structure(
                tag::ENCRYPTION_KEY_INFORMATION,
                vec![
                    build::unique_identifier(kek.clone()),
                    build::structure(
                        tag::CRYPTOGRAPHIC_PARAMETERS,
                        vec![build::enumeration(
                            tag::BLOCK_CIPHER_MODE,
                            block_cipher_mode::NISTKEY_WRAP,
                        )],
                    ),
                ],
            ),
            build::enumeration(tag::ENCODING_OPTION, 1),
        ],
    );
    let items = send(
        &engine,
        V14,
        vec![(op::GET, vec![build::unique_identifier(key), spec])],
    );
    let kb = key_block(&ok(&items[0]), tag::SYMMETRIC_KEY);
    let kb = StructReader::any(&kb).unwrap();
    // 16 key bytes wrapped: 24 bytes, with the wrapping data describing the key used.
    assert_eq!(kb.req_bytes(tag::KEY_VALUE).unwrap().len(), 24);
    let kwd = StructReader::any(kb.required(tag::KEY_WRAPPING_DATA).unwrap()).unwrap();
    let eki = StructReader::any(kwd.required(tag::ENCRYPTION_KEY_INFORMATION).unwrap()).unwrap();
    assert_eq!(eki.req_text(tag::UNIQUE_IDENTIFIER).unwrap(), kek);
}

#[test]
fn re_key_moves_names_and_links_both_keys() {
    let engine = Engine::in_memory();
    let name = Attribute::std(
        tag::NAME,
        Value::Structure(vec![
            build::text(tag::NAME_VALUE, "k"),
            build::enumeration(tag::NAME_TYPE, 1),
        ]),
    );
    let old = create_aes(&engine, V21, 128, vec![name]);
    let items = send(
        &engine,
        V21,
        vec![(op::RE_KEY, vec![build::unique_identifier(old.clone())])],
    );
    let new = ok(&items[0])
        .req_text(tag::UNIQUE_IDENTIFIER)
        .unwrap()
        .to_owned();
    assert_ne!(new, old);
    let get = |uid: &str| {
        let items = send(
            &engine,
            V21,
            vec![(op::GET_ATTRIBUTES, vec![build::unique_identifier(uid)])],
        );
        let p = ok(&items[0]);
        format!("{:?}", p.required(tag::ATTRIBUTES).unwrap())
    };
    let old_attrs = get(&old);
    let new_attrs = get(&new);
    assert!(!old_attrs.contains("TextString(\"k\")"));
    assert!(new_attrs.contains("TextString(\"k\")"));
    assert!(old_attrs.contains(&new));
    assert!(new_attrs.contains(&old));
    assert!(new_attrs.contains(&format!(
        "Enumeration(0x{:08X})",
        link_type::REPLACED_OBJECT_LINK
    )));
}

#[test]
fn create_makes_skipjack_keys_of_80_bits_only_and_secret_data_is_a_password_by_default() {
    let engine = Engine::in_memory();
    let skipjack = |bits: i32| {
        let attrs = vec![
            Attribute::std(
                tag::CRYPTOGRAPHIC_ALGORITHM,
                Value::Enumeration(alg::SKIPJACK),
            ),
            Attribute::std(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(bits)),
        ];
        send(
            &engine,
            V14,
            vec![
                (
                    op::CREATE,
                    vec![
                        build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
                        v1_attrs(tag::TEMPLATE_ATTRIBUTE, attrs),
                    ],
                ),
                (op::GET, vec![]),
            ],
        )
    };
    let items = skipjack(80);
    let block = key_block(&ok(&items[1]), tag::SYMMETRIC_KEY);
    let kb = StructReader::any(&block).unwrap();
    let kv = StructReader::any(kb.required(tag::KEY_VALUE).unwrap()).unwrap();
    assert_eq!(kv.req_bytes(tag::KEY_MATERIAL).unwrap().len(), 10);
    assert_eq!(skipjack(128)[0].result_reason, Some(rr::INVALID_FIELD));

    let items = send(
        &engine,
        V21,
        vec![
            (
                op::CREATE,
                vec![
                    build::enumeration(tag::OBJECT_TYPE, object_type::SECRET_DATA),
                    build::structure(
                        tag::ATTRIBUTES,
                        vec![build::int(tag::CRYPTOGRAPHIC_LENGTH, 80)],
                    ),
                ],
            ),
            (op::GET, vec![]),
        ],
    );
    let secret = ok(&items[1]).required(tag::SECRET_DATA).unwrap().clone();
    let kind = StructReader::any(&secret)
        .unwrap()
        .req_enum(tag::SECRET_DATA_TYPE)
        .unwrap();
    assert_eq!(kind, kmipd_proto::enums::secret_data_type::PASSWORD);
}

#[test]
fn a_key_registered_without_its_value_is_managed_but_not_used_and_keeps_its_creation_date() {
    let engine = Engine::in_memory();
    let location = Attribute::std(
        tag::KEY_VALUE_LOCATION,
        Value::Structure(vec![
            build::text(tag::KEY_VALUE_LOCATION_VALUE, "HSM-1"),
            build::enumeration(tag::KEY_VALUE_LOCATION_TYPE, 1),
        ]),
    );
    let made = Attribute::std(tag::ORIGINAL_CREATION_DATE, Value::DateTime(38_520));
    let attrs = vec![
        location,
        made.clone(),
        Attribute::std(tag::CRYPTOGRAPHIC_USAGE_MASK, Value::Integer(4)),
        Attribute::std(tag::ACTIVATION_DATE, Value::DateTime(1)),
    ];
    let block = build::structure(
        tag::KEY_BLOCK,
        vec![
            build::enumeration(tag::KEY_FORMAT_TYPE, kft::RAW),
            build::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, alg::AES),
            build::int(tag::CRYPTOGRAPHIC_LENGTH, 128),
        ],
    );
    let items = send(
        &engine,
        V14,
        vec![(
            op::REGISTER,
            vec![
                build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
                v1_attrs(tag::TEMPLATE_ATTRIBUTE, attrs),
                build::structure(tag::SYMMETRIC_KEY, vec![block.clone()]),
            ],
        )],
    );
    let uid = ok(&items[0])
        .req_text(tag::UNIQUE_IDENTIFIER)
        .unwrap()
        .to_owned();
    let present = get_attr(&engine, V14, &uid, "Key Value Present");
    assert_eq!(
        present[0].children().unwrap()[1].value,
        Value::Boolean(false)
    );
    assert_eq!(get_attr(&engine, V14, &uid, "Key Value Location").len(), 1);
    let date = get_attr(&engine, V14, &uid, "Original Creation Date");
    assert_eq!(
        date[0].children().unwrap()[1].value,
        Value::DateTime(38_520)
    );
    // Get gives the Key Block as registered; using the key is Key Value Not Present.
    let items = send(
        &engine,
        V14,
        vec![
            (op::GET, vec![build::unique_identifier(uid.clone())]),
            (
                op::ENCRYPT,
                vec![
                    build::unique_identifier(uid.clone()),
                    build::bytes(tag::DATA, vec![0u8; 16]),
                ],
            ),
        ],
    );
    assert_eq!(key_block(&ok(&items[0]), tag::SYMMETRIC_KEY), block);
    assert_eq!(items[1].result_reason, Some(rr::KEY_VALUE_NOT_PRESENT));

    // A key the server creates gets its own Original Creation Date, whatever the request says.
    let created = create_aes(&engine, V14, 128, vec![made]);
    let date = get_attr(&engine, V14, &created, "Original Creation Date");
    assert_ne!(
        date[0].children().unwrap()[1].value,
        Value::DateTime(38_520)
    );
}

#[test]
fn register_keeps_the_clients_random_number_generator() {
    let engine = Engine::in_memory();
    let client_rng = Attribute::std(
        tag::RANDOM_NUMBER_GENERATOR,
        Value::Structure(vec![build::enumeration(tag::RNG_ALGORITHM, 1)]),
    );
    let items = send(
        &engine,
        V14,
        vec![(
            op::REGISTER,
            vec![
                build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
                v1_attrs(tag::TEMPLATE_ATTRIBUTE, vec![client_rng.clone()]),
                build::structure(
                    tag::SYMMETRIC_KEY,
                    vec![build::byte_key_block(
                        kft::RAW,
                        vec![1u8; 16],
                        Some((alg::AES, 128)),
                    )],
                ),
            ],
        )],
    );
    let uid = ok(&items[0])
        .req_text(tag::UNIQUE_IDENTIFIER)
        .unwrap()
        .to_owned();
    let rng = get_attr(&engine, V14, &uid, "Random Number Generator");
    assert_eq!(rng[0].children().unwrap()[1].value, client_rng.value);
    // A created key's describes the server's own generator.
    let created = create_aes(&engine, V14, 128, vec![]);
    let rng = get_attr(&engine, V14, &created, "Random Number Generator");
    assert_eq!(rng.len(), 1);
    assert_ne!(rng[0].children().unwrap()[1].value, client_rng.value);
}
