//! The flows of real KMIP clients (docs: ../shared/notes/clients.md), each as the client sends
//! it: its protocol version, its field shapes and quirks, and assertions on exactly what the
//! client relies on in the answers. Flows already covered by `tests/attributes.rs` (Percona's
//! Locate paging, pg_tde's 1.0 Locate, visibility, vSphere's first x- attribute batch on a
//! registered object, 2.1 unique Name) are not repeated here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use kmipd_ops::{Engine, Principal};
use kmipd_proto::build;
use kmipd_proto::enums::{
    batch_error_continuation, credential_type, cryptographic_algorithm as alg,
    cryptographic_usage_mask as mask, key_format_type as kft, object_type, operation,
    query_function, result_reason, result_status, secret_data_type, state,
};
use kmipd_proto::message::{
    ProtocolVersion, RequestBatchItem, RequestMessage, ResponseBatchItem, ResponseMessage,
};
use kmipd_proto::reader::{self, StructReader};
use kmipd_proto::tag;
use kmipd_test_support::kmip::{
    aes_key, assert_only_1_0, child, failed, find, key_block, key_value_material_only,
    material_bytes, template, text, uid, v1_attrs, v1_value,
};
use kmipd_ttlv::{Ttlv, Value};

use engine::{attr, by_uid, create_aes256_v2, name, ok, secret_data, uids};
use kmipd_test_support::{clients, engine};

const V1_1: ProtocolVersion = ProtocolVersion::new(1, 1);
const V1_2: ProtocolVersion = ProtocolVersion::new(1, 2);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn item(op: u32, payload: Vec<Ttlv>) -> RequestBatchItem {
    RequestBatchItem::new(op, payload)
}

fn exchange(e: &Engine, who: &str, msg: &RequestMessage) -> ResponseMessage {
    let resp = engine::exchange(e, &Principal::new(who), msg);
    assert_eq!(
        resp.header.protocol_version, msg.header.protocol_version,
        "answered in the request's version"
    );
    resp
}

/// One request of one batch item; returns its answer.
fn one(
    e: &Engine,
    who: &str,
    v: ProtocolVersion,
    op: u32,
    payload: Vec<Ttlv>,
) -> ResponseBatchItem {
    let resp = exchange(e, who, &RequestMessage::new(v, vec![item(op, payload)]));
    assert_eq!(resp.items.len(), 1);
    resp.items.into_iter().next().unwrap()
}

fn register(
    e: &Engine,
    who: &str,
    v: ProtocolVersion,
    ot: u32,
    attrs: Vec<Ttlv>,
    object: Ttlv,
) -> String {
    let got = one(
        e,
        who,
        v,
        operation::REGISTER,
        vec![
            build::enumeration(tag::OBJECT_TYPE, ot),
            template(attrs),
            object,
        ],
    );
    let payload = ok(&got);
    assert_eq!(
        payload.iter().map(|i| i.tag).collect::<Vec<_>>(),
        [tag::UNIQUE_IDENTIFIER],
        "a Register answer is the Unique Identifier only"
    );
    uid(&payload)
}

fn create_aes256(e: &Engine, who: &str, v: ProtocolVersion, extra: Vec<Ttlv>) -> String {
    let mut attrs = vec![
        attr("Cryptographic Algorithm", Value::Enumeration(alg::AES)),
        attr("Cryptographic Length", Value::Integer(256)),
        attr(
            "Cryptographic Usage Mask",
            Value::Integer(i32::try_from(mask::ENCRYPT | mask::DECRYPT).unwrap()),
        ),
    ];
    attrs.extend(extra);
    let got = one(
        e,
        who,
        v,
        operation::CREATE,
        vec![
            build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
            template(attrs),
        ],
    );
    let payload = ok(&got);
    assert_eq!(
        reader::as_enum(find(&payload, tag::OBJECT_TYPE)).unwrap(),
        object_type::SYMMETRIC_KEY
    );
    uid(&payload)
}

fn activate(e: &Engine, who: &str, v: ProtocolVersion, u: &str) {
    let payload = ok(&one(e, who, v, operation::ACTIVATE, by_uid(u)));
    assert_eq!(uid(&payload), u);
}

fn get_attributes(e: &Engine, who: &str, v: ProtocolVersion, u: &str, names: &[&str]) -> Vec<Ttlv> {
    let mut payload = by_uid(u);
    payload.extend(names.iter().map(|n| build::text(tag::ATTRIBUTE_NAME, *n)));
    ok(&one(e, who, v, operation::GET_ATTRIBUTES, payload))
}

fn state_of(e: &Engine, who: &str, v: ProtocolVersion, u: &str) -> u32 {
    let got = get_attributes(e, who, v, u, &["State"]);
    match v1_value(&got, "State") {
        Some(Value::Enumeration(s)) => s,
        other => panic!("State: {other:?}"),
    }
}

/// A Get answer's object structure (Symmetric Key, Secret Data, Private Key, ...).
fn get(e: &Engine, who: &str, v: ProtocolVersion, payload: Vec<Ttlv>) -> (u32, Ttlv) {
    let got = ok(&one(e, who, v, operation::GET, payload));
    let ot = reader::as_enum(find(&got, tag::OBJECT_TYPE)).unwrap();
    let object = got
        .iter()
        .find(|i| ![tag::OBJECT_TYPE, tag::UNIQUE_IDENTIFIER].contains(&i.tag))
        .unwrap()
        .clone();
    (ot, object)
}

fn locate(e: &Engine, who: &str, v: ProtocolVersion, attrs: Vec<Ttlv>) -> Vec<String> {
    uids(&ok(&one(e, who, v, operation::LOCATE, attrs)))
}

fn ascii_only(resp: &ResponseMessage) {
    for i in &resp.items {
        if let Some(m) = &i.result_message {
            assert!(m.is_ascii(), "non-ASCII Result Message: {m:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// vSphere 7 (KMIP 1.1)
// ---------------------------------------------------------------------------------------------

#[test]
fn vsphere_health_checks_queries_creates_unnamed_tags_and_gets_a_pre_active_key() {
    let e = Engine::in_memory();
    // DiscoverVersions with an empty payload, as a health check, again and again.
    let mut answers = Vec::new();
    for _ in 0..3 {
        let payload = ok(&one(&e, "vc", V1_1, operation::DISCOVER_VERSIONS, vec![]));
        let versions: Vec<ProtocolVersion> = payload
            .iter()
            .map(|p| ProtocolVersion::from_ttlv(p).unwrap())
            .collect();
        assert!(versions.contains(&V1_1), "{versions:?}");
        assert!(versions.contains(&ProtocolVersion::V1_0));
        answers.push(versions);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]));

    let info = ok(&one(
        &e,
        "vc",
        V1_1,
        operation::QUERY,
        clients::query_server_information(),
    ));
    assert_eq!(
        reader::as_text(find(&info, tag::VENDOR_IDENTIFICATION)).unwrap(),
        "kmipd"
    );

    // Create AES-256 with no Name: the server names nothing either.
    let key = create_aes256(&e, "vc", V1_1, vec![]);
    let attrs = get_attributes(&e, "vc", V1_1, &key, &["Name", "x-Product_Version"]);
    assert_eq!(attrs, by_uid(&key), "no Name, no x-Product_Version yet");

    // One batch of three AddAttribute, each Unique Batch Item ID echoed.
    let resp = exchange(&e, "vc", &clients::vsphere_tagging(&key));
    clients::check_vsphere_tagged(&resp, &key);
    let attrs = get_attributes(&e, "vc", V1_1, &key, &clients::VSPHERE_TAGS);
    assert_eq!(v1_attrs(&attrs), clients::vsphere_tags());

    // Get while still Pre-Active (vSphere never activates).
    assert_eq!(state_of(&e, "vc", V1_1, &key), state::PRE_ACTIVE);
    let (ot, object) = get(&e, "vc", V1_1, by_uid(&key));
    assert_eq!(ot, object_type::SYMMETRIC_KEY);
    assert_eq!(material_bytes(&object).len(), 32);
    let kb = child(&object, tag::KEY_BLOCK);
    assert_eq!(
        reader::as_enum(child(kb, tag::KEY_FORMAT_TYPE)).unwrap(),
        kft::RAW
    );
    assert_eq!(
        reader::as_enum(child(kb, tag::CRYPTOGRAPHIC_ALGORITHM)).unwrap(),
        alg::AES
    );
    assert_eq!(
        reader::as_int(child(kb, tag::CRYPTOGRAPHIC_LENGTH)).unwrap(),
        256
    );
}

// ---------------------------------------------------------------------------------------------
// Percona MySQL keyring_kmip (libkmip: Register and GetAttributes 1.4, the rest 1.0)
// ---------------------------------------------------------------------------------------------

#[test]
fn percona_mysql_registers_activates_reads_and_erases_a_key_and_a_secret() {
    let e = Engine::in_memory();
    let v10 = ProtocolVersion::V1_0;
    let v14 = ProtocolVersion::V1_4;
    let key_bytes: Vec<u8> = (0u8..32).collect();
    let secret_bytes = b"mysql-secret-of-arbitrary-length".to_vec();
    let key = register(
        &e,
        "mysql",
        v14,
        object_type::SYMMETRIC_KEY,
        vec![
            attr("Name", name("percona_binlog_key")),
            attr("Object Group", text("percona")),
            attr(
                "Cryptographic Usage Mask",
                Value::Integer(i32::try_from(mask::ENCRYPT | mask::DECRYPT).unwrap()),
            ),
        ],
        aes_key(&key_bytes),
    );
    let secret = register(
        &e,
        "mysql",
        v14,
        object_type::SECRET_DATA,
        vec![
            attr("Name", name("percona_secret")),
            attr("Object Group", text("percona")),
            attr(
                "Cryptographic Usage Mask",
                Value::Integer(i32::try_from(mask::DERIVE_KEY | mask::EXPORT).unwrap()),
            ),
        ],
        secret_data(secret_data_type::PASSWORD, kft::OPAQUE, &secret_bytes),
    );
    for (u, n, bytes, ot) in [
        (
            &key,
            "percona_binlog_key",
            &key_bytes,
            object_type::SYMMETRIC_KEY,
        ),
        (
            &secret,
            "percona_secret",
            &secret_bytes,
            object_type::SECRET_DATA,
        ),
    ] {
        activate(&e, "mysql", v10, u);
        assert_eq!(state_of(&e, "mysql", v14, u), state::ACTIVE);
        let (got_ot, object) = get(&e, "mysql", v10, by_uid(u));
        assert_eq!(got_ot, ot);
        assert_eq!(&material_bytes(&object), bytes);
        let attrs = get_attributes(&e, "mysql", v14, u, &["Name"]);
        assert_eq!(v1_attrs(&attrs), [("Name".to_owned(), name(n))]);
    }
    let secret_mask = get_attributes(&e, "mysql", v14, &secret, &["Cryptographic Usage Mask"]);
    assert_eq!(
        v1_value(&secret_mask, "Cryptographic Usage Mask"),
        Some(Value::Integer(
            i32::try_from(mask::DERIVE_KEY | mask::EXPORT).unwrap()
        ))
    );

    // Erase: Revoke (reason 1, Unspecified) then Destroy.
    let revoke = one(
        &e,
        "mysql",
        v10,
        operation::REVOKE,
        vec![
            build::unique_identifier(key.clone()),
            build::structure(
                tag::REVOCATION_REASON,
                vec![build::enumeration(tag::REVOCATION_REASON_CODE, 1)],
            ),
        ],
    );
    assert_eq!(uid(&ok(&revoke)), key);
    assert_eq!(state_of(&e, "mysql", v14, &key), state::DEACTIVATED);
    assert_eq!(
        uid(&ok(&one(
            &e,
            "mysql",
            v10,
            operation::DESTROY,
            by_uid(&key)
        ))),
        key
    );
    assert_eq!(state_of(&e, "mysql", v14, &key), state::DESTROYED);
    failed(
        &one(&e, "mysql", v10, operation::GET, by_uid(&key)),
        result_reason::ITEM_NOT_FOUND,
    );
    // At the next start, the Object Group lists only what is left.
    let group = vec![attr("Object Group", text("percona"))];
    assert_eq!(locate(&e, "mysql", v10, group), [secret.as_str()]);
}

// ---------------------------------------------------------------------------------------------
// Percona Server for MongoDB (KMIP 1.0)
// ---------------------------------------------------------------------------------------------

#[test]
fn percona_mongodb_speaks_1_0_and_never_sees_a_newer_field_or_attribute() {
    let e = Engine::in_memory();
    let v = ProtocolVersion::V1_0;
    let send = |op: u32, payload: Vec<Ttlv>| {
        let msg = RequestMessage::new(v, vec![item(op, payload)]);
        let out = e.handle_message(&Principal::new("psmdb"), &msg.to_ttlv());
        assert_only_1_0(&out);
        let resp = ResponseMessage::from_ttlv(&out).unwrap();
        assert_eq!(resp.header.protocol_version, v);
        resp.items.into_iter().next().unwrap()
    };
    let key_bytes = [0x42u8; 32];
    let key = uid(&ok(&send(
        operation::REGISTER,
        vec![
            build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
            template(vec![attr(
                "Cryptographic Usage Mask",
                Value::Integer(i32::try_from(mask::ENCRYPT | mask::DECRYPT).unwrap()),
            )]),
            aes_key(&key_bytes),
        ],
    )));
    ok(&send(operation::ACTIVATE, by_uid(&key)));
    // Get, Raw only (asked for, and by default).
    for payload in [
        by_uid(&key),
        vec![
            build::unique_identifier(key.clone()),
            build::enumeration(tag::KEY_FORMAT_TYPE, kft::RAW),
        ],
    ] {
        let got = ok(&send(operation::GET, payload));
        let object = find(&got, tag::SYMMETRIC_KEY);
        assert_eq!(
            reader::as_enum(child(child(object, tag::KEY_BLOCK), tag::KEY_FORMAT_TYPE)).unwrap(),
            kft::RAW
        );
        assert_eq!(material_bytes(object), key_bytes);
    }
    // Polling the State, as the client does.
    for _ in 0..3 {
        let got = ok(&send(
            operation::GET_ATTRIBUTES,
            vec![
                build::unique_identifier(key.clone()),
                build::text(tag::ATTRIBUTE_NAME, "State"),
            ],
        ));
        assert_eq!(
            v1_attrs(&got),
            [("State".to_owned(), Value::Enumeration(state::ACTIVE))]
        );
    }
    // Every attribute: none that 1.0 lacks (Fresh, Original Creation Date, Always Sensitive...).
    let all = ok(&send(operation::GET_ATTRIBUTES, by_uid(&key)));
    let names: Vec<String> = v1_attrs(&all).into_iter().map(|(n, _)| n).collect();
    for n in [
        "Fresh",
        "Original Creation Date",
        "Always Sensitive",
        "Sensitive",
    ] {
        assert!(!names.iter().any(|x| x == n), "{n} in a 1.0 answer");
    }
    for n in ["State", "Cryptographic Algorithm", "Initial Date", "Digest"] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    ok(&send(operation::GET_ATTRIBUTE_LIST, by_uid(&key)));
    // Item Not Found means "no key".
    let missing = send(operation::GET, by_uid("no-such-key"));
    failed(&missing, result_reason::ITEM_NOT_FOUND);
    let missing = send(
        operation::GET_ATTRIBUTES,
        vec![
            build::unique_identifier("no-such-key"),
            build::text(tag::ATTRIBUTE_NAME, "State"),
        ],
    );
    failed(&missing, result_reason::ITEM_NOT_FOUND);
}

// ---------------------------------------------------------------------------------------------
// MongoDB CSFLE via libmongocrypt
// ---------------------------------------------------------------------------------------------

#[test]
fn libmongocrypt_registers_a_96_byte_seed_and_gets_it_under_1_0() {
    let e = Engine::in_memory();
    let v = ProtocolVersion::V1_0;
    let seed: Vec<u8> = (0u8..96).collect();
    let u = register(
        &e,
        "mongocrypt",
        v,
        object_type::SECRET_DATA,
        vec![attr("Cryptographic Usage Mask", Value::Integer(0))],
        secret_data(secret_data_type::SEED, kft::OPAQUE, &seed),
    );
    activate(&e, "mongocrypt", v, &u);
    for _ in 0..2 {
        let (ot, object) = get(&e, "mongocrypt", v, by_uid(&u));
        assert_eq!(ot, object_type::SECRET_DATA);
        assert_eq!(
            reader::as_enum(child(&object, tag::SECRET_DATA_TYPE)).unwrap(),
            secret_data_type::SEED
        );
        assert_eq!(
            reader::as_enum(child(child(&object, tag::KEY_BLOCK), tag::KEY_FORMAT_TYPE)).unwrap(),
            kft::OPAQUE
        );
        assert_eq!(material_bytes(&object), seed);
    }
}

#[test]
fn libmongocrypt_delegated_mode_encrypts_and_decrypts_aes_cbc_with_a_server_iv() {
    let e = Engine::in_memory();
    let key = create_aes256(&e, "mongocrypt", V1_2, vec![]);
    activate(&e, "mongocrypt", V1_2, &key);
    let params = |encrypt: bool| {
        let mut p = vec![
            build::enumeration(tag::BLOCK_CIPHER_MODE, 1),
            build::enumeration(tag::PADDING_METHOD, 3),
            build::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, alg::AES),
        ];
        if encrypt {
            p.push(build::boolean(tag::RANDOM_IV, true));
        }
        build::structure(tag::CRYPTOGRAPHIC_PARAMETERS, p)
    };
    let plaintext: Vec<u8> = (0u8..96).rev().collect();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let enc = ok(&one(
            &e,
            "mongocrypt",
            V1_2,
            operation::ENCRYPT,
            vec![
                build::unique_identifier(key.clone()),
                params(true),
                build::bytes(tag::DATA, plaintext.clone()),
            ],
        ));
        assert_eq!(uid(&enc), key);
        let ct = reader::as_bytes(find(&enc, tag::DATA)).unwrap().to_vec();
        let iv = reader::as_bytes(find(&enc, tag::IV_COUNTER_NONCE))
            .unwrap()
            .to_vec();
        assert_eq!(iv.len(), 16, "a CBC IV is one block");
        assert_eq!(ct.len(), 112, "PKCS#5 pads 96 bytes with a full block");
        let dec = ok(&one(
            &e,
            "mongocrypt",
            V1_2,
            operation::DECRYPT,
            vec![
                build::unique_identifier(key.clone()),
                params(false),
                build::bytes(tag::DATA, ct.clone()),
                build::bytes(tag::IV_COUNTER_NONCE, iv.clone()),
            ],
        ));
        assert_eq!(reader::as_bytes(find(&dec, tag::DATA)).unwrap(), plaintext);
        seen.push((iv, ct));
    }
    assert_ne!(seen[0].0, seen[1].0, "a fresh random IV per Encrypt");
    assert_ne!(seen[0].1, seen[1].1);
}

// ---------------------------------------------------------------------------------------------
// Synology DSM (KMIP 1.2)
// ---------------------------------------------------------------------------------------------

#[test]
fn synology_registers_a_secret_renames_it_finds_it_and_activates_it() {
    let e = Engine::in_memory();
    let v = V1_2;
    let q = ok(&one(
        &e,
        "dsm",
        v,
        operation::QUERY,
        clients::synology_query(),
    ));
    clients::check_synology_query(&q);

    let by_name = |n: &str| vec![attr("Name", name(n))];
    assert!(locate(&e, "dsm", v, by_name("dsm-volume1")).is_empty());

    let secret = register(
        &e,
        "dsm",
        v,
        object_type::SECRET_DATA,
        vec![
            attr("Cryptographic Usage Mask", Value::Integer(0)),
            attr("Operation Policy Name", text("default")),
            attr("Name", name("dsm-pending")),
        ],
        secret_data(
            secret_data_type::PASSWORD,
            kft::OPAQUE,
            b"volume1 passphrase",
        ),
    );
    let modified = ok(&one(
        &e,
        "dsm",
        v,
        operation::MODIFY_ATTRIBUTE,
        vec![
            build::unique_identifier(secret.clone()),
            attr("Name", name("dsm-volume1")),
        ],
    ));
    assert_eq!(uid(&modified), secret);
    assert_eq!(
        v1_attrs(&modified),
        [("Name".to_owned(), name("dsm-volume1"))],
        "the answer echoes the attribute with its new value"
    );
    assert_eq!(
        locate(&e, "dsm", v, by_name("dsm-volume1")),
        [secret.as_str()]
    );
    assert!(locate(&e, "dsm", v, by_name("dsm-pending")).is_empty());
    activate(&e, "dsm", v, &secret);
    let attrs = get_attributes(&e, "dsm", v, &secret, &["Operation Policy Name", "State"]);
    assert_eq!(v1_attrs(&attrs), clients::synology_activated());
}

// ---------------------------------------------------------------------------------------------
// MySQL Enterprise keyring_okv (KMIP 1.1)
// ---------------------------------------------------------------------------------------------

#[test]
fn keyring_okv_creates_with_attribute_indexes_a_response_size_and_a_read_only_attribute() {
    let e = Engine::in_memory();
    let resp = exchange(&e, "okv", &clients::okv_create());
    let created = ok(&resp.items[0]);
    let key = uid(&created);
    let attrs = get_attributes(&e, "okv", V1_1, &key, &[]);
    clients::check_okv_created(&attrs);
    let got = ok(&exchange(&e, "okv", &clients::okv_get(&key)).items[0]);
    assert_eq!(material_bytes(find(&got, tag::SYMMETRIC_KEY)).len(), 32);
}

// ---------------------------------------------------------------------------------------------
// Veeam (KMIP 1.4)
// ---------------------------------------------------------------------------------------------

#[test]
fn veeam_creates_an_rsa_2048_pair_activates_and_gets_both_halves_with_bare_key_values() {
    let e = Engine::in_memory();
    let v = ProtocolVersion::V1_4;
    let got = ok(&one(
        &e,
        "veeam",
        v,
        operation::CREATE_KEY_PAIR,
        clients::veeam_create_key_pair(),
    ));
    let private = reader::as_text(find(&got, tag::PRIVATE_KEY_UNIQUE_IDENTIFIER))
        .unwrap()
        .to_owned();
    let public = reader::as_text(find(&got, tag::PUBLIC_KEY_UNIQUE_IDENTIFIER))
        .unwrap()
        .to_owned();
    assert_ne!(private, public);
    for (u, ot, t) in [
        (&private, object_type::PRIVATE_KEY, tag::PRIVATE_KEY),
        (&public, object_type::PUBLIC_KEY, tag::PUBLIC_KEY),
    ] {
        activate(&e, "veeam", v, u);
        let (got_ot, object) = get(&e, "veeam", v, by_uid(u));
        assert_eq!(got_ot, ot);
        assert_eq!(object.tag, t);
        let der = material_bytes(&object);
        assert!(der.len() > 256, "a 2048-bit key: {} bytes", der.len());
        clients::check_rsa_2048(&object);
    }
    // Asked in another format too, the Key Value stays bare.
    let (_, object) = get(
        &e,
        "veeam",
        v,
        vec![
            build::unique_identifier(public.clone()),
            build::enumeration(tag::KEY_FORMAT_TYPE, kft::TRANSPARENT_RSA_PUBLIC_KEY),
        ],
    );
    let material = key_value_material_only(&object);
    assert!(
        StructReader::any(&material)
            .unwrap()
            .optional(tag::MODULUS)
            .is_some()
    );
}

// ---------------------------------------------------------------------------------------------
// A storage array (KMIP 1.0): one request of four batch items
// ---------------------------------------------------------------------------------------------

fn array_batch(e: &Engine, serial: &str, slot: i32, opaque_get: bool) -> ResponseMessage {
    let mut get = vec![];
    if opaque_get {
        get.push(build::enumeration(tag::KEY_FORMAT_TYPE, kft::OPAQUE));
    }
    let mut msg = RequestMessage::new(
        ProtocolVersion::V1_0,
        vec![
            item(
                operation::QUERY,
                vec![
                    build::enumeration(tag::QUERY_FUNCTION, query_function::QUERY_OPERATIONS),
                    build::enumeration(tag::QUERY_FUNCTION, query_function::QUERY_OBJECTS),
                ],
            ),
            item(
                operation::LOCATE,
                vec![
                    attr("x-array-serial", text(serial)),
                    attr("x-array-slot", Value::Integer(slot)),
                ],
            ),
            item(operation::GET, get),
            item(operation::GET_ATTRIBUTES, vec![]),
        ],
    );
    msg.header.batch_error_continuation_option = Some(batch_error_continuation::CONTINUE);
    let out = e.handle_message(&Principal::new("array"), &msg.to_ttlv());
    assert_only_1_0(&out);
    ResponseMessage::from_ttlv(&out).unwrap()
}

#[test]
fn storage_array_queries_locates_by_custom_attributes_and_gets_by_placeholder_in_one_batch() {
    let e = Engine::in_memory();
    let v = ProtocolVersion::V1_0;
    let custom = clients::array_attributes;
    let blob = [0xa5u8; 48];
    let opaque = register(
        &e,
        "array",
        v,
        object_type::SECRET_DATA,
        custom("SN-1", 7),
        secret_data(secret_data_type::SEED, kft::OPAQUE, &blob),
    );
    // Same serial, another slot: the non-text attribute must tell them apart.
    let raw = register(
        &e,
        "array",
        v,
        object_type::SYMMETRIC_KEY,
        custom("SN-1", 8),
        aes_key(&[3u8; 32]),
    );

    let resp = array_batch(&e, "SN-1", 7, true);
    assert_eq!(resp.items.len(), 4);
    let q = ok(&resp.items[0]);
    assert!(q.iter().any(|i| i.tag == tag::OPERATION));
    assert_eq!(uids(&ok(&resp.items[1])), [opaque.as_str()]);
    let got = ok(&resp.items[2]);
    assert_eq!(uid(&got), opaque);
    let object = find(&got, tag::SECRET_DATA);
    assert_eq!(
        reader::as_enum(child(child(object, tag::KEY_BLOCK), tag::KEY_FORMAT_TYPE)).unwrap(),
        kft::OPAQUE
    );
    assert_eq!(material_bytes(object), blob);
    let attrs = ok(&resp.items[3]);
    assert_eq!(uid(&attrs), opaque);
    assert_eq!(v1_value(&attrs, "x-array-serial"), Some(text("SN-1")));
    assert_eq!(v1_value(&attrs, "x-array-slot"), Some(Value::Integer(7)));

    // A Raw symmetric key cannot be served as Opaque: that item alone fails, the placeholder
    // set by Locate still serves Get Attributes.
    let resp = array_batch(&e, "SN-1", 8, true);
    assert_eq!(uids(&ok(&resp.items[1])), [raw.as_str()]);
    failed(&resp.items[2], result_reason::KEY_FORMAT_TYPE_NOT_SUPPORTED);
    assert!(resp.items[2].result_message.as_ref().unwrap().is_ascii());
    let attrs = ok(&resp.items[3]);
    assert_eq!(uid(&attrs), raw);
    assert_eq!(v1_value(&attrs, "x-array-slot"), Some(Value::Integer(8)));
    // Asked in its own format, it is served.
    let resp = array_batch(&e, "SN-1", 8, false);
    assert_eq!(
        material_bytes(find(&ok(&resp.items[2]), tag::SYMMETRIC_KEY)),
        [3u8; 32]
    );

    // Nothing located: no placeholder, so Get and Get Attributes fail instead of guessing.
    let resp = array_batch(&e, "SN-2", 7, true);
    assert!(uids(&ok(&resp.items[1])).is_empty());
    for i in &resp.items[2..] {
        assert_eq!(i.result_status, result_status::OPERATION_FAILED);
    }
}

// ---------------------------------------------------------------------------------------------
// NetApp ONTAP
// ---------------------------------------------------------------------------------------------

#[test]
fn netapp_sixteen_custom_text_attributes_on_one_key_all_come_back() {
    let e = Engine::in_memory();
    let v = V1_2;
    let names: Vec<String> = (0..16).map(|i| format!("x-NETAPP-Attr{i:02}")).collect();
    let value = |i: usize| text(&format!("cluster-a/node-{i}/{}", "v".repeat(i * 4)));
    let extra = names
        .iter()
        .enumerate()
        .map(|(i, n)| attr(n, value(i)))
        .collect();
    let key = create_aes256(&e, "ontap", v, extra);
    let all = get_attributes(&e, "ontap", v, &key, &[]);
    let custom: Vec<(String, Value)> = v1_attrs(&all)
        .into_iter()
        .filter(|(n, _)| n.starts_with("x-NETAPP-"))
        .collect();
    let expected: Vec<(String, Value)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), value(i)))
        .collect();
    assert_eq!(custom, expected);
    let wanted: Vec<&str> = names.iter().rev().map(String::as_str).collect();
    let named = get_attributes(&e, "ontap", v, &key, &wanted);
    assert_eq!(
        v1_attrs(&named),
        expected.into_iter().rev().collect::<Vec<_>>(),
        "in the order asked"
    );
    let list = ok(&one(
        &e,
        "ontap",
        v,
        operation::GET_ATTRIBUTE_LIST,
        by_uid(&key),
    ));
    for n in &names {
        assert!(list.iter().any(|i| reader::as_text(i).ok() == Some(n)));
    }
    assert_eq!(
        locate(&e, "ontap", v, vec![attr("x-NETAPP-Attr15", value(15))]),
        [key]
    );
}

// ---------------------------------------------------------------------------------------------
// FortiGate, ScyllaDB: Locate by Name really filters
// ---------------------------------------------------------------------------------------------

#[test]
fn locate_by_name_finds_exactly_its_own_key_and_a_misspelled_name_finds_nothing() {
    let e = Engine::in_memory();
    for v in [V1_2, ProtocolVersion::V1_4] {
        let a_name = format!("forti-{v}-a");
        let b_name = format!("scylla-{v}-b");
        let a = create_aes256(&e, "app", v, vec![attr("Name", name(&a_name))]);
        let b = create_aes256(&e, "app", v, vec![attr("Name", name(&b_name))]);
        let by = |attrs: Vec<Ttlv>| locate(&e, "app", v, attrs);
        assert_eq!(by(vec![attr("Name", name(&a_name))]), [a.as_str()]);
        assert_eq!(by(vec![attr("Name", name(&b_name))]), [b.as_str()]);
        assert!(by(vec![attr("Name", name("no-such-name"))]).is_empty());
        // With the Object Type, as FortiGate sends it.
        assert_eq!(
            by(vec![
                attr(
                    "Object Type",
                    Value::Enumeration(object_type::SYMMETRIC_KEY)
                ),
                attr("Name", name(&b_name)),
            ]),
            [b.as_str()]
        );
        // Scylla's misspelling: an attribute no object has finds nothing (never "everything"),
        // so the client sees "no key" rather than someone else's.
        assert!(by(vec![attr("Nmae", name(&a_name))]).is_empty());
        assert!(by(vec![attr("Name", text(&a_name))]).is_empty());
        assert!(by(vec![attr("x-Nmae", name(&a_name))]).is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// A Credential in the request header (Fortanix-style clients)
// ---------------------------------------------------------------------------------------------

fn with_credential(v: ProtocolVersion, user: &str, items: Vec<RequestBatchItem>) -> RequestMessage {
    let mut msg = RequestMessage::new(v, items);
    msg.header.authentication = Some(build::structure(
        tag::AUTHENTICATION,
        vec![build::structure(
            tag::CREDENTIAL,
            vec![
                build::enumeration(tag::CREDENTIAL_TYPE, credential_type::USERNAME_AND_PASSWORD),
                build::structure(
                    tag::CREDENTIAL_VALUE,
                    vec![
                        build::text(tag::USERNAME, user),
                        build::text(tag::PASSWORD, "s3cret"),
                    ],
                ),
            ],
        )],
    ));
    msg
}

#[test]
fn a_username_password_credential_is_accepted_and_the_identity_stays_the_principals() {
    let e = Engine::in_memory();
    for v in [
        ProtocolVersion::V1_0,
        V1_2,
        ProtocolVersion::V1_4,
        ProtocolVersion::V2_1,
    ] {
        let create = if v.is_v2() {
            item(operation::CREATE, create_aes256_v2())
        } else {
            item(
                operation::CREATE,
                vec![
                    build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
                    template(vec![
                        attr("Cryptographic Algorithm", Value::Enumeration(alg::AES)),
                        attr("Cryptographic Length", Value::Integer(256)),
                    ]),
                ],
            )
        };
        // "alice" (by certificate) claims to be "admin" in the header.
        let resp = exchange(&e, "alice", &with_credential(v, "admin", vec![create]));
        let key = uid(&ok(&resp.items[0]));
        // The object is alice's: she reads it without any credential...
        let (_, object) = get(&e, "alice", v, by_uid(&key));
        assert_eq!(material_bytes(&object).len(), 32);
        // ...and bob, claiming to be alice, neither reads nor finds it.
        let resp = exchange(
            &e,
            "bob",
            &with_credential(
                v,
                "alice",
                vec![
                    item(operation::GET, by_uid(&key)),
                    item(operation::LOCATE, vec![]),
                ],
            ),
        );
        let not_found = if v.is_v2() {
            result_reason::OBJECT_NOT_FOUND
        } else {
            result_reason::ITEM_NOT_FOUND
        };
        failed(&resp.items[0], not_found);
        assert_eq!(resp.items.len(), 1, "Stop is the default");
        let resp = exchange(
            &e,
            "bob",
            &with_credential(v, "alice", vec![item(operation::LOCATE, vec![])]),
        );
        assert!(uids(&ok(&resp.items[0])).is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// PyKMIP's decoder quirks that the engine decides
// ---------------------------------------------------------------------------------------------

#[test]
fn result_messages_are_ascii_in_every_version() {
    let e = Engine::in_memory();
    let key = create_aes256(&e, "py", ProtocolVersion::V1_4, vec![]);
    for (major, minor) in [
        (1, 0),
        (1, 1),
        (1, 2),
        (1, 3),
        (1, 4),
        (2, 0),
        (2, 1),
        (3, 0),
    ] {
        let v = ProtocolVersion::new(major, minor);
        let items = vec![
            item(operation::GET, by_uid("missing")),
            item(operation::GET, vec![]),
            item(
                operation::GET,
                vec![
                    build::unique_identifier(key.clone()),
                    build::enumeration(tag::KEY_FORMAT_TYPE, kft::PKCS_12),
                ],
            ),
            item(operation::ENCRYPT, by_uid(&key)),
            item(operation::CREATE, vec![]),
            item(
                operation::CREATE,
                vec![build::enumeration(
                    tag::OBJECT_TYPE,
                    object_type::SYMMETRIC_KEY,
                )],
            ),
            item(operation::DESTROY, by_uid(&key)),
            item(0x7fff, vec![]),
            item(
                operation::ADD_ATTRIBUTE,
                vec![
                    build::unique_identifier(key.clone()),
                    attr("State", Value::Enumeration(state::ACTIVE)),
                ],
            ),
            item(operation::ACTIVATE, by_uid("missing")),
        ];
        let mut msg = RequestMessage::new(v, items);
        msg.header.batch_error_continuation_option = Some(batch_error_continuation::CONTINUE);
        let out = e.handle_message(&Principal::new("other"), &msg.to_ttlv());
        let resp = ResponseMessage::from_ttlv(&out).unwrap();
        assert!(!resp.items.is_empty());
        assert!(
            resp.items
                .iter()
                .any(|i| i.result_status != result_status::SUCCESS)
        );
        ascii_only(&resp);
    }
    // A message that does not parse as a request.
    let bad = build::structure(tag::REQUEST_MESSAGE, vec![build::int(tag::BATCH_COUNT, 1)]);
    let out = e.handle_message(&Principal::new("py"), &bad);
    ascii_only(&ResponseMessage::from_ttlv(&out).unwrap());
}

#[test]
fn kmip_2_0_get_answers_a_bare_key_value_even_when_registered_with_attributes_inside() {
    let e = Engine::in_memory();
    let v = ProtocolVersion::V2_0;
    let key_bytes = [9u8; 16];
    let object = key_block(
        tag::SYMMETRIC_KEY,
        kft::RAW,
        build::bytes(tag::KEY_MATERIAL, key_bytes.to_vec()),
        vec![
            build::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, alg::AES),
            build::int(tag::CRYPTOGRAPHIC_LENGTH, 128),
        ],
    );
    // The Key Value as the spec allows it: Key Material then Attributes.
    let kb = child(&object, tag::KEY_BLOCK);
    let kb_items: Vec<Ttlv> = kb
        .children()
        .unwrap()
        .iter()
        .map(|i| {
            if i.tag == tag::KEY_VALUE {
                build::structure(
                    tag::KEY_VALUE,
                    vec![
                        build::bytes(tag::KEY_MATERIAL, key_bytes.to_vec()),
                        build::structure(
                            tag::ATTRIBUTES,
                            vec![build::text(tag::DESCRIPTION, "inside the key value")],
                        ),
                    ],
                )
            } else {
                i.clone()
            }
        })
        .collect();
    let object = build::structure(
        tag::SYMMETRIC_KEY,
        vec![build::structure(tag::KEY_BLOCK, kb_items)],
    );
    let reg = ok(&one(
        &e,
        "py",
        v,
        operation::REGISTER,
        vec![
            build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
            build::structure(
                tag::ATTRIBUTES,
                vec![build::int(tag::CRYPTOGRAPHIC_USAGE_MASK, 12)],
            ),
            object,
        ],
    ));
    let key = uid(&reg);
    let (_, got) = get(&e, "py", v, by_uid(&key));
    assert_eq!(material_bytes(&got), key_bytes);
    // The attribute that came inside the Key Value is an ordinary attribute now.
    let attrs = ok(&one(
        &e,
        "py",
        v,
        operation::GET_ATTRIBUTES,
        vec![
            build::unique_identifier(key.clone()),
            build::enumeration(tag::ATTRIBUTE_REFERENCE, tag::DESCRIPTION.value()),
        ],
    ));
    assert_eq!(
        find(&attrs, tag::ATTRIBUTES).children().unwrap(),
        [build::text(tag::DESCRIPTION, "inside the key value")]
    );
    // A created key, asked for in Transparent form: still bare.
    let created = create_aes_v2(&e, "py", v);
    let (_, got) = get(
        &e,
        "py",
        v,
        vec![
            build::unique_identifier(created),
            build::enumeration(tag::KEY_FORMAT_TYPE, kft::TRANSPARENT_SYMMETRIC_KEY),
        ],
    );
    let material = key_value_material_only(&got);
    assert_eq!(
        reader::as_bytes(child(&material, tag::KEY)).unwrap().len(),
        32
    );
}

fn create_aes_v2(e: &Engine, who: &str, v: ProtocolVersion) -> String {
    uid(&ok(&one(e, who, v, operation::CREATE, create_aes256_v2())))
}

#[test]
fn kmip_2_0_get_attributes_always_answers_an_attributes_structure() {
    let e = Engine::in_memory();
    let v = ProtocolVersion::V2_0;
    let key = create_aes_v2(&e, "py", v);
    let ask = |refs: Vec<Ttlv>| {
        let mut payload = by_uid(&key);
        payload.extend(refs);
        ok(&one(&e, "py", v, operation::GET_ATTRIBUTES, payload))
    };
    // An attribute the key lacks: an empty Attributes structure, not a missing one.
    let got = ask(vec![Ttlv::new(
        tag::ATTRIBUTE_REFERENCE,
        Value::Enumeration(tag::DESCRIPTION.value()),
    )]);
    assert_eq!(uid(&got), key);
    assert_eq!(
        find(&got, tag::ATTRIBUTES).children().map(<[Ttlv]>::len),
        Some(0)
    );
    // A vendor attribute not set yet: the same.
    let got = ask(vec![build::structure(
        tag::ATTRIBUTE_REFERENCE,
        vec![
            build::text(tag::VENDOR_IDENTIFICATION, "x"),
            build::text(tag::ATTRIBUTE_NAME, "Product_Version"),
        ],
    )]);
    assert_eq!(
        find(&got, tag::ATTRIBUTES).children().map(<[Ttlv]>::len),
        Some(0)
    );
    // One that is set: inside the Attributes structure, tagged by itself.
    let got = ask(vec![Ttlv::new(
        tag::ATTRIBUTE_REFERENCE,
        Value::Enumeration(tag::CRYPTOGRAPHIC_LENGTH.value()),
    )]);
    assert_eq!(
        find(&got, tag::ATTRIBUTES).children().unwrap(),
        [build::int(tag::CRYPTOGRAPHIC_LENGTH, 256)]
    );
    // Every attribute: many, all inside the one structure.
    let got = ask(vec![]);
    assert_eq!(got.len(), 2, "Unique Identifier and Attributes only");
    assert!(find(&got, tag::ATTRIBUTES).children().unwrap().len() > 5);
}
