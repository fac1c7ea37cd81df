//! Real clients' flows, each built as the client builds it (its protocol version, field shapes
//! and quirks, from `../shared/notes/clients.md`), sent as raw TTLV over mutual TLS to a kmipd
//! started by the test on 127.0.0.1 (`kmipd-client`'s `send_ttlv`), with the client's
//! connection habits: one connection per call (pg_tde, Synology DSM), no SNI (libkmip), TLS
//! session resumption under client certificates (Veeam), RSA-only suites (Synology DSM).
//! The same request shapes are tested against the engine in-process in
//! `crates/ops/tests/clients.rs`; here they cross the real server, its framing and its TLS.
//!
//! Every answer is checked by value; every wait is bounded (`BOUND`, the client's timeouts).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use common::{BOUND, Kmipd, Step};
use kmipd_client::{Client, Connector, TlsOptions};
use kmipd_proto::build;
use kmipd_proto::enums::{
    batch_error_continuation, cryptographic_algorithm as alg, cryptographic_usage_mask as mask,
    key_format_type as kft, object_type, operation, query_function, result_reason, result_status,
    secret_data_type, state,
};
use kmipd_proto::message::{
    ProtocolVersion, RequestBatchItem, RequestMessage, ResponseBatchItem, ResponseMessage,
};
use kmipd_proto::reader;
use kmipd_proto::tag;
use kmipd_test_support::clients;
use kmipd_test_support::kmip::{
    aes_key, assert_only_1_0, attr, child, failed, find, material_bytes, name, ok, secret_data,
    template, text, uid, uids, usage, v1_attrs, v1_value,
};
use kmipd_ttlv::{Ttlv, Value};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const V1_0: ProtocolVersion = ProtocolVersion::V1_0;
const V1_1: ProtocolVersion = ProtocolVersion::new(1, 1);
const V1_2: ProtocolVersion = ProtocolVersion::new(1, 2);
const V1_4: ProtocolVersion = ProtocolVersion::V1_4;

// ---------------------------------------------------------------------------------------------
// Helpers: TLS set-ups, exchanges, request pieces
// ---------------------------------------------------------------------------------------------

/// Bounds a future; a test that would hang fails instead.
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {BOUND:?}"))
}

/// A rustls client configuration for `who`, with `adjust` applied to the crypto provider and
/// only `versions` offered.
fn rustls_config(
    k: &Kmipd,
    who: &str,
    adjust: impl FnOnce(&mut rustls::crypto::CryptoProvider),
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&k.cert("ca")) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_slice_iter(&k.cert(who))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(&k.key(who)).unwrap();
    let mut provider = rustls::crypto::ring::default_provider();
    adjust(&mut provider);
    rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap()
}

fn options(version: ProtocolVersion, resumption: bool) -> TlsOptions {
    TlsOptions {
        version,
        resumption,
        timeout: std::time::Duration::from_secs(15),
        ..TlsOptions::default()
    }
}

/// libkmip's TLS: OpenSSL with no SNI set, no session kept between its per-call connections.
fn libkmip_connector(k: &Kmipd, version: ProtocolVersion) -> Connector {
    let mut config = rustls_config(k, "client", |_| {}, rustls::DEFAULT_VERSIONS);
    config.enable_sni = false;
    Connector::from_config(config, options(version, false)).unwrap()
}

/// A kmipd-client connector for identity `who` of `k` speaking `version`.
fn connector(k: &Kmipd, who: &str, version: ProtocolVersion, resumption: bool) -> Connector {
    Connector::new(
        &k.cert("ca"),
        &k.cert(who),
        &k.key(who),
        options(version, resumption),
    )
    .unwrap()
}

async fn connect(c: &Connector, k: &Kmipd) -> Client {
    bounded("connect", c.connect(k.addr)).await.unwrap()
}

/// Sends the message as raw TTLV; checks the answer is in the request's version and has one
/// item per request item.
async fn exchange(client: &mut Client, msg: &RequestMessage) -> ResponseMessage {
    let tree = bounded("exchange", client.send_ttlv(&msg.to_ttlv()))
        .await
        .unwrap();
    if msg.header.protocol_version == V1_0 {
        assert_only_1_0(&tree);
    }
    let resp = ResponseMessage::from_ttlv(&tree).unwrap();
    assert_eq!(
        resp.header.protocol_version, msg.header.protocol_version,
        "answered in the request's version"
    );
    assert_eq!(resp.items.len(), msg.items.len());
    for i in &resp.items {
        if let Some(m) = &i.result_message {
            assert!(m.is_ascii(), "non-ASCII Result Message {m:?}");
        }
    }
    resp
}

/// One operation in one request; its batch item.
async fn one(
    client: &mut Client,
    v: ProtocolVersion,
    op: u32,
    payload: Vec<Ttlv>,
) -> ResponseBatchItem {
    let msg = RequestMessage::new(v, vec![RequestBatchItem::new(op, payload)]);
    let item = exchange(client, &msg)
        .await
        .items
        .into_iter()
        .next()
        .unwrap();
    assert_eq!(item.operation, Some(op));
    item
}

/// A new connection for one call, closed after it (libkmip, Synology DSM).
async fn one_shot(c: &Connector, k: &Kmipd, op: u32, payload: Vec<Ttlv>) -> ResponseBatchItem {
    let mut client = connect(c, k).await;
    let v = c.options().version;
    let item = one(&mut client, v, op, payload).await;
    bounded("close", client.shutdown()).await.unwrap();
    item
}

fn by_uid(u: &str) -> Vec<Ttlv> {
    vec![build::unique_identifier(u)]
}

fn register_payload(ot: u32, attrs: Vec<Ttlv>, object: Ttlv) -> Vec<Ttlv> {
    vec![
        build::enumeration(tag::OBJECT_TYPE, ot),
        template(attrs),
        object,
    ]
}

/// A Register answer: the Unique Identifier and nothing else.
fn registered(item: &ResponseBatchItem) -> String {
    let payload = ok(item);
    assert_eq!(
        payload.iter().map(|i| i.tag).collect::<Vec<_>>(),
        [tag::UNIQUE_IDENTIFIER],
        "a Register answer is the Unique Identifier only"
    );
    uid(&payload)
}

/// The object structure of a Get answer (its Object Type and identifier checked).
fn got_object(item: &ResponseBatchItem, id: &str, ot: u32) -> Ttlv {
    let got = ok(item);
    assert_eq!(uid(&got), id);
    assert_eq!(reader::as_enum(find(&got, tag::OBJECT_TYPE)).unwrap(), ot);
    got.iter()
        .find(|i| ![tag::OBJECT_TYPE, tag::UNIQUE_IDENTIFIER].contains(&i.tag))
        .unwrap()
        .clone()
}

fn key_format(object: &Ttlv) -> u32 {
    reader::as_enum(child(child(object, tag::KEY_BLOCK), tag::KEY_FORMAT_TYPE)).unwrap()
}

/// Get by identifier; the object structure (see `got_object`).
async fn get_object(client: &mut Client, v: ProtocolVersion, id: &str, ot: u32) -> Ttlv {
    got_object(&one(client, v, operation::GET, by_uid(id)).await, id, ot)
}

/// Register; the new object's identifier (see `registered`).
async fn register(
    client: &mut Client,
    v: ProtocolVersion,
    ot: u32,
    attrs: Vec<Ttlv>,
    object: Ttlv,
) -> String {
    registered(
        &one(
            client,
            v,
            operation::REGISTER,
            register_payload(ot, attrs, object),
        )
        .await,
    )
}

async fn get_attributes(
    client: &mut Client,
    v: ProtocolVersion,
    id: &str,
    names: &[&str],
) -> Vec<Ttlv> {
    let mut payload = by_uid(id);
    payload.extend(names.iter().map(|n| build::text(tag::ATTRIBUTE_NAME, *n)));
    ok(&one(client, v, operation::GET_ATTRIBUTES, payload).await)
}

async fn state_of(client: &mut Client, v: ProtocolVersion, id: &str) -> u32 {
    match v1_value(&get_attributes(client, v, id, &["State"]).await, "State") {
        Some(Value::Enumeration(s)) => s,
        other => panic!("State: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// vSphere 7 (KMIP 1.1)
// ---------------------------------------------------------------------------------------------

#[test]
fn vsphere_7_health_checks_creates_tags_and_gets_a_pre_active_key() {
    vsphere_7_health_checks_creates_tags_and_gets_a_pre_active_key_on(&Kmipd::start());
}

fn vsphere_7_health_checks_creates_tags_and_gets_a_pre_active_key_on(k: &Kmipd) {
    let s = Step::new(
        common::VSPHERE,
        "1.1",
        "Discover Versions (health check, x3), Query Server Information, Create AES-256 \
         unnamed, Get Attributes before tagging, batch of 3 Add Attribute x- (Unique Batch Item \
         IDs echoed), Get while Pre-Active",
        1,
    );
    k.rt.block_on(async {
        let c = connector(k, "client", V1_1, true);
        let mut vc = connect(&c, k).await;
        let mut answers = Vec::new();
        for _ in 0..3 {
            let payload = ok(&one(&mut vc, V1_1, operation::DISCOVER_VERSIONS, vec![]).await);
            let versions: Vec<ProtocolVersion> = payload
                .iter()
                .map(|p| ProtocolVersion::from_ttlv(p).unwrap())
                .collect();
            assert!(
                versions.contains(&V1_1) && versions.contains(&V1_0),
                "{versions:?}"
            );
            answers.push(versions);
        }
        assert!(answers.windows(2).all(|w| w[0] == w[1]));

        let info = ok(&one(
            &mut vc,
            V1_1,
            operation::QUERY,
            clients::query_server_information(),
        )
        .await);
        assert_eq!(
            reader::as_text(find(&info, tag::VENDOR_IDENTIFICATION)).unwrap(),
            "kmipd"
        );

        let created = ok(&one(
            &mut vc,
            V1_1,
            operation::CREATE,
            vec![
                build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
                template(vec![
                    attr("Cryptographic Algorithm", Value::Enumeration(alg::AES)),
                    attr("Cryptographic Length", Value::Integer(256)),
                    usage(mask::ENCRYPT | mask::DECRYPT),
                ]),
            ],
        )
        .await);
        let key = uid(&created);
        let attrs = get_attributes(&mut vc, V1_1, &key, &["Name", "x-Product_Version"]).await;
        assert_eq!(
            attrs,
            by_uid(&key),
            "no Name, no x-Product_Version yet: an empty list"
        );

        let resp = exchange(&mut vc, &clients::vsphere_tagging(&key)).await;
        clients::check_vsphere_tagged(&resp, &key);
        let attrs = get_attributes(&mut vc, V1_1, &key, &clients::VSPHERE_TAGS).await;
        assert_eq!(v1_attrs(&attrs), clients::vsphere_tags());

        assert_eq!(state_of(&mut vc, V1_1, &key).await, state::PRE_ACTIVE);
        let object = get_object(&mut vc, V1_1, &key, object_type::SYMMETRIC_KEY).await;
        assert_eq!(key_format(&object), kft::RAW);
        assert_eq!(material_bytes(&object).len(), 32);
        bounded("close", vc.shutdown()).await.unwrap();
    });
    s.pass();
}

// ---------------------------------------------------------------------------------------------
// pg_tde (libkmip): a new TLS connection per call, no SNI
// ---------------------------------------------------------------------------------------------

#[test]
fn pg_tde_registers_then_locates_one_by_name_and_gets_it_a_connection_per_call_without_sni() {
    pg_tde_registers_then_locates_one_by_name_and_gets_it_a_connection_per_call_without_sni_on(
        &Kmipd::start(),
    );
}

fn pg_tde_registers_then_locates_one_by_name_and_gets_it_a_connection_per_call_without_sni_on(
    k: &Kmipd,
) {
    let register = Step::new(
        common::PG_TDE,
        "1.4",
        "Register AES-128 with Name (no Activate); new TLS connection per call, no SNI",
        1,
    );
    let locate = Step::new(
        common::PG_TDE,
        "1.0",
        "Locate (Object Type, Name, Maximum Items 16, Offset Items 0) finds exactly one; Get \
         returns the registered bytes; new TLS connection per call, no SNI",
        2,
    );
    k.rt.block_on(async {
        let v14 = libkmip_connector(k, V1_4);
        let v10 = libkmip_connector(k, V1_0);
        let principal: Vec<u8> = (100u8..116).collect();
        let mut keys = Vec::new();
        for (i, bytes) in [principal.clone(), vec![9u8; 16]].into_iter().enumerate() {
            let n = format!("pg_tde_principal_{i}");
            let item = one_shot(
                &v14,
                k,
                operation::REGISTER,
                register_payload(
                    object_type::SYMMETRIC_KEY,
                    vec![attr("Name", name(&n)), usage(mask::ENCRYPT | mask::DECRYPT)],
                    aes_key(&bytes),
                ),
            )
            .await;
            keys.push(registered(&item));
        }
        register.pass();

        let locate_payload = |n: &str| {
            vec![
                build::int(tag::MAXIMUM_ITEMS, 16),
                build::int(tag::OFFSET_ITEMS, 0),
                attr(
                    "Object Type",
                    Value::Enumeration(object_type::SYMMETRIC_KEY),
                ),
                attr("Name", name(n)),
            ]
        };
        let located =
            async |n: &str| ok(&one_shot(&v10, k, operation::LOCATE, locate_payload(n)).await);
        let found = located("pg_tde_principal_0").await;
        assert_eq!(
            found,
            by_uid(&keys[0]),
            "exactly one, and no Located Items (a 1.3 field) in a 1.0 answer"
        );
        let none = located("pg_tde_principal_9").await;
        assert!(none.is_empty());
        let object = got_object(
            &one_shot(&v10, k, operation::GET, by_uid(&keys[0])).await,
            &keys[0],
            object_type::SYMMETRIC_KEY,
        );
        assert_eq!(material_bytes(&object), principal);
        // Never activated: still Pre-Active, and served all the same.
        let mut c = connect(&v10, k).await;
        assert_eq!(state_of(&mut c, V1_0, &keys[0]).await, state::PRE_ACTIVE);
        assert!(!c.resumed(), "libkmip keeps no session");
    });
    locate.pass();
}

// ---------------------------------------------------------------------------------------------
// Percona MySQL keyring_kmip
// ---------------------------------------------------------------------------------------------

#[test]
fn percona_mysql_pages_its_object_group_16_at_a_time_reads_each_and_erases_one() {
    percona_mysql_pages_its_object_group_16_at_a_time_reads_each_and_erases_one_on(&Kmipd::start());
}

fn percona_mysql_pages_its_object_group_16_at_a_time_reads_each_and_erases_one_on(k: &Kmipd) {
    let s_register = Step::new(
        common::PERCONA_MYSQL,
        "1.4",
        "Register 18 AES-256 keys and 2 Secret Data (Derive Key | Export) in Object Group \
         \"percona\"",
        1,
    );
    let s_activate = Step::new(common::PERCONA_MYSQL, "1.0", "Activate each", 2);
    let s_locate = Step::new(
        common::PERCONA_MYSQL,
        "1.4",
        "Locate by Object Group, 16 per page with Offset Items, Located Items = 20",
        3,
    );
    let s_read = Step::new(
        common::PERCONA_MYSQL,
        "1.0",
        "Get every object (bytes as registered); Get Attributes (Name) under 1.4",
        4,
    );
    let s_erase = Step::new(
        common::PERCONA_MYSQL,
        "1.0",
        "Erase: Revoke (reason 1) then Destroy; the group lists 19",
        5,
    );
    k.rt.block_on(async {
        let mut c = connect(&connector(k, "client", V1_4, true), k).await;
        let group = || attr("Object Group", text("percona"));
        let mut objects = Vec::new();
        for i in 0..20u8 {
            let secret = i >= 18;
            let n = format!("percona_{i}");
            let bytes: Vec<u8> = (0..32).map(|b| b ^ i.wrapping_mul(37)).collect();
            let (ot, m, object) = if secret {
                (
                    object_type::SECRET_DATA,
                    mask::DERIVE_KEY | mask::EXPORT,
                    secret_data(secret_data_type::PASSWORD, kft::OPAQUE, &bytes),
                )
            } else {
                (
                    object_type::SYMMETRIC_KEY,
                    mask::ENCRYPT | mask::DECRYPT,
                    aes_key(&bytes),
                )
            };
            let id = register(
                &mut c,
                V1_4,
                ot,
                vec![attr("Name", name(&n)), group(), usage(m)],
                object,
            )
            .await;
            objects.push((id, n, bytes, ot));
        }
        // Someone else's group on the same server.
        one(
            &mut c,
            V1_4,
            operation::REGISTER,
            register_payload(
                object_type::SYMMETRIC_KEY,
                vec![attr("Object Group", text("other"))],
                aes_key(&[1u8; 32]),
            ),
        )
        .await;
        s_register.pass();

        for (id, ..) in &objects {
            let a = ok(&one(&mut c, V1_0, operation::ACTIVATE, by_uid(id)).await);
            assert_eq!(uid(&a), *id);
        }
        for (id, ..) in &objects {
            assert_eq!(state_of(&mut c, V1_4, id).await, state::ACTIVE);
        }
        s_activate.pass();

        let page_at = |offset: i32| {
            vec![
                build::int(tag::MAXIMUM_ITEMS, 16),
                build::int(tag::OFFSET_ITEMS, offset),
                group(),
            ]
        };
        let mut seen = Vec::new();
        let mut offset = 0;
        loop {
            let page = ok(&one(&mut c, V1_4, operation::LOCATE, page_at(offset)).await);
            assert_eq!(
                reader::as_int(find(&page, tag::LOCATED_ITEMS)).unwrap(),
                20,
                "Located Items counts every match, not the page"
            );
            let ids = uids(&page);
            assert!(ids.len() <= 16);
            if ids.is_empty() {
                break;
            }
            offset += i32::try_from(ids.len()).unwrap();
            seen.extend(ids);
        }
        assert_eq!(offset, 20);
        let mut expected: Vec<String> = objects.iter().map(|o| o.0.clone()).collect();
        let mut got = seen.clone();
        expected.sort();
        got.sort();
        got.dedup();
        assert_eq!(got, expected, "each object once, none of the other group");
        s_locate.pass();

        for (id, n, bytes, ot) in &objects {
            let object = get_object(&mut c, V1_0, id, *ot).await;
            assert_eq!(&material_bytes(&object), bytes);
            let attrs = get_attributes(&mut c, V1_4, id, &["Name"]).await;
            assert_eq!(v1_attrs(&attrs), [("Name".to_owned(), name(n))]);
        }
        s_read.pass();

        let victim = objects[0].0.clone();
        let revoked = ok(&one(
            &mut c,
            V1_0,
            operation::REVOKE,
            vec![
                build::unique_identifier(victim.clone()),
                build::structure(
                    tag::REVOCATION_REASON,
                    vec![build::enumeration(tag::REVOCATION_REASON_CODE, 1)],
                ),
            ],
        )
        .await);
        assert_eq!(uid(&revoked), victim);
        assert_eq!(state_of(&mut c, V1_4, &victim).await, state::DEACTIVATED);
        assert_eq!(
            uid(&ok(
                &one(&mut c, V1_0, operation::DESTROY, by_uid(&victim)).await
            )),
            victim
        );
        let gone = one(&mut c, V1_0, operation::GET, by_uid(&victim)).await;
        assert_eq!(gone.result_status, result_status::OPERATION_FAILED);
        let page = ok(&one(&mut c, V1_4, operation::LOCATE, page_at(16)).await);
        assert_eq!(reader::as_int(find(&page, tag::LOCATED_ITEMS)).unwrap(), 19);
        assert_eq!(uids(&page).len(), 3);
    });
    s_erase.pass();
}

// ---------------------------------------------------------------------------------------------
// Percona Server for MongoDB (KMIP 1.0)
// ---------------------------------------------------------------------------------------------

#[test]
fn percona_server_for_mongodb_speaks_1_0_only_and_reads_item_not_found_as_no_key() {
    percona_server_for_mongodb_speaks_1_0_only_and_reads_item_not_found_as_no_key_on(
        &Kmipd::start(),
    );
}

fn percona_server_for_mongodb_speaks_1_0_only_and_reads_item_not_found_as_no_key_on(k: &Kmipd) {
    let s = Step::new(
        common::PERCONA_MONGODB,
        "1.0",
        "Register AES-256, Activate, Get (Raw, asked and by default), polling Get Attributes \
         (State); Item Not Found for a missing key; no field or attribute newer than 1.0 in any \
         answer",
        1,
    );
    k.rt.block_on(async {
        let mut c = connect(&connector(k, "client", V1_0, true), k).await;
        let key_bytes = [0x42u8; 32];
        let key = register(
            &mut c,
            V1_0,
            object_type::SYMMETRIC_KEY,
            vec![usage(mask::ENCRYPT | mask::DECRYPT)],
            aes_key(&key_bytes),
        )
        .await;
        ok(&one(&mut c, V1_0, operation::ACTIVATE, by_uid(&key)).await);
        for payload in [
            by_uid(&key),
            vec![
                build::unique_identifier(key.clone()),
                build::enumeration(tag::KEY_FORMAT_TYPE, kft::RAW),
            ],
        ] {
            let object = got_object(
                &one(&mut c, V1_0, operation::GET, payload).await,
                &key,
                object_type::SYMMETRIC_KEY,
            );
            assert_eq!(key_format(&object), kft::RAW);
            assert_eq!(material_bytes(&object), key_bytes);
        }
        for _ in 0..3 {
            let got = get_attributes(&mut c, V1_0, &key, &["State"]).await;
            assert_eq!(
                v1_attrs(&got),
                [("State".to_owned(), Value::Enumeration(state::ACTIVE))]
            );
        }
        // Every attribute, checked field by field for 1.0 by `exchange`.
        let all = get_attributes(&mut c, V1_0, &key, &[]).await;
        assert!(v1_value(&all, "Fresh").is_none());
        assert!(v1_value(&all, "Initial Date").is_some());
        failed(
            &one(&mut c, V1_0, operation::GET, by_uid("no-such-key")).await,
            result_reason::ITEM_NOT_FOUND,
        );
        failed(
            &one(
                &mut c,
                V1_0,
                operation::GET_ATTRIBUTES,
                vec![
                    build::unique_identifier("no-such-key"),
                    build::text(tag::ATTRIBUTE_NAME, "State"),
                ],
            )
            .await,
            result_reason::ITEM_NOT_FOUND,
        );
    });
    s.pass();
}

// ---------------------------------------------------------------------------------------------
// Synology DSM (KMIP 1.2): RSA only, a connection per operation
// ---------------------------------------------------------------------------------------------

#[test]
fn synology_dsm_over_rsa_suites_registers_renames_finds_and_activates_a_secret() {
    synology_dsm_over_rsa_suites_registers_renames_finds_and_activates_a_secret_on(&Kmipd::start());
}

fn synology_dsm_over_rsa_suites_registers_renames_finds_and_activates_a_secret_on(k: &Kmipd) {
    let s = Step::new(
        common::SYNOLOGY,
        "1.2",
        "Query, Locate (Name) finds none, Register Secret Data with Operation Policy Name \
         \"default\", Modify Attribute (Name) echoed, Locate (Name), Activate; a TLS 1.2 \
         ECDHE-RSA connection per operation",
        1,
    );
    k.rt.block_on(async {
        // Only ECDHE-RSA suites: the handshake succeeds only with kmipd's RSA certificate.
        let config = rustls_config(
            k,
            "client",
            |p| {
                p.cipher_suites = vec![
                    rustls::crypto::ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                    rustls::crypto::ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                ];
            },
            &[&rustls::version::TLS12],
        );
        let dsm = Connector::from_config(config, options(V1_2, false)).unwrap();
        let probe = connect(&dsm, k).await;
        assert_eq!(probe.tls_version(), Some(rustls::ProtocolVersion::TLSv1_2));
        drop(probe);

        let q = ok(&one_shot(&dsm, k, operation::QUERY, clients::synology_query()).await);
        clients::check_synology_query(&q);

        let located = async |n: &str| {
            let by_name = vec![attr("Name", name(n))];
            ok(&one_shot(&dsm, k, operation::LOCATE, by_name).await)
        };
        assert!(located("dsm-volume1").await.is_empty());
        let passphrase = b"volume1 passphrase".to_vec();
        let secret = registered(
            &one_shot(
                &dsm,
                k,
                operation::REGISTER,
                register_payload(
                    object_type::SECRET_DATA,
                    vec![
                        attr("Cryptographic Usage Mask", Value::Integer(0)),
                        attr("Operation Policy Name", text("default")),
                        attr("Name", name("dsm-pending")),
                    ],
                    secret_data(secret_data_type::PASSWORD, kft::OPAQUE, &passphrase),
                ),
            )
            .await,
        );
        let modified = ok(&one_shot(
            &dsm,
            k,
            operation::MODIFY_ATTRIBUTE,
            vec![
                build::unique_identifier(secret.clone()),
                attr("Name", name("dsm-volume1")),
            ],
        )
        .await);
        assert_eq!(uid(&modified), secret);
        assert_eq!(
            v1_attrs(&modified),
            [("Name".to_owned(), name("dsm-volume1"))],
            "the answer echoes the attribute with its new value"
        );
        assert_eq!(uids(&located("dsm-volume1").await), [secret.as_str()]);
        assert!(located("dsm-pending").await.is_empty());
        ok(&one_shot(&dsm, k, operation::ACTIVATE, by_uid(&secret)).await);
        let mut c = connect(&dsm, k).await;
        let attrs =
            get_attributes(&mut c, V1_2, &secret, &["Operation Policy Name", "State"]).await;
        assert_eq!(v1_attrs(&attrs), clients::synology_activated());
        let object = get_object(&mut c, V1_2, &secret, object_type::SECRET_DATA).await;
        assert_eq!(material_bytes(&object), passphrase);
    });
    s.pass();
}

// ---------------------------------------------------------------------------------------------
// MySQL Enterprise keyring_okv (KMIP 1.1)
// ---------------------------------------------------------------------------------------------

#[test]
fn mysql_keyring_okv_creates_with_attribute_indexes_a_response_size_and_a_read_only_attribute() {
    mysql_keyring_okv_creates_with_attribute_indexes_a_response_size_and_a_read_only_attribute_on(
        &Kmipd::start(),
    );
}

fn mysql_keyring_okv_creates_with_attribute_indexes_a_response_size_and_a_read_only_attribute_on(
    k: &Kmipd,
) {
    let s = Step::new(
        common::KEYRING_OKV,
        "1.1",
        "Create AES-256 with Attribute Index 0 on every attribute, Maximum Response Size in the \
         header, Storage Status Mask in the template (tolerated); Get",
        1,
    );
    k.rt.block_on(async {
        let mut c = connect(&connector(k, "client", V1_1, true), k).await;
        let key = uid(&ok(&exchange(&mut c, &clients::okv_create()).await.items[0]));
        let attrs = get_attributes(&mut c, V1_1, &key, &[]).await;
        clients::check_okv_created(&attrs);
        let object = got_object(
            &exchange(&mut c, &clients::okv_get(&key)).await.items[0],
            &key,
            object_type::SYMMETRIC_KEY,
        );
        assert_eq!(material_bytes(&object).len(), 32);
    });
    s.pass();
}

// ---------------------------------------------------------------------------------------------
// Veeam (KMIP 1.4): TLS session resumption under client certificates
// ---------------------------------------------------------------------------------------------

#[test]
fn veeam_creates_an_rsa_pair_on_one_connection_and_gets_it_on_resumed_ones() {
    veeam_creates_an_rsa_pair_on_one_connection_and_gets_it_on_resumed_ones_on(&Kmipd::start());
}

fn veeam_creates_an_rsa_pair_on_one_connection_and_gets_it_on_resumed_ones_on(k: &Kmipd) {
    let s13 = Step::new(
        common::VEEAM,
        "1.4",
        "Create Key Pair RSA-2048, Activate, Get public and private (Key Value = Key Material \
         only, halves match); TLS 1.3 session resumed, same identity",
        1,
    );
    let s12 = Step::new(
        common::VEEAM,
        "1.4",
        "The same over TLS 1.2, session resumed",
        2,
    );
    k.rt.block_on(async {
        for (tls, step) in [
            (&rustls::version::TLS13, s13),
            (&rustls::version::TLS12, s12),
        ] {
            let config = rustls_config(k, "client", |_| {}, &[tls]);
            let veeam = Connector::from_config(config, options(V1_4, true)).unwrap();
            let mut first = connect(&veeam, k).await;
            assert!(!first.resumed());
            let created = ok(&one(
                &mut first,
                V1_4,
                operation::CREATE_KEY_PAIR,
                clients::veeam_create_key_pair(),
            )
            .await);
            let private = reader::as_text(find(&created, tag::PRIVATE_KEY_UNIQUE_IDENTIFIER))
                .unwrap()
                .to_owned();
            let public = reader::as_text(find(&created, tag::PUBLIC_KEY_UNIQUE_IDENTIFIER))
                .unwrap()
                .to_owned();
            bounded("close", first.shutdown()).await.unwrap();

            // Later connections resume the session; the identity is the certificate's still
            // (the objects are the first connection's owner's).
            let mut ders = Vec::new();
            for (id, ot) in [
                (&private, object_type::PRIVATE_KEY),
                (&public, object_type::PUBLIC_KEY),
            ] {
                let mut c = connect(&veeam, k).await;
                assert!(c.resumed(), "{tls:?}: the session is resumed");
                assert_eq!(c.tls_version(), Some(tls.version));
                ok(&one(&mut c, V1_4, operation::ACTIVATE, by_uid(id)).await);
                let object = get_object(&mut c, V1_4, id, ot).await;
                clients::check_rsa_2048(&object);
                ders.push((key_format(&object), material_bytes(&object)));
                bounded("close", c.shutdown()).await.unwrap();
            }
            // The halves belong together: the private key's modulus is the public key's.
            let private_key = match ders[0].0 {
                kft::PKCS_1 => openssl::rsa::Rsa::private_key_from_der(&ders[0].1).unwrap(),
                kft::PKCS_8 => openssl::pkey::PKey::private_key_from_der(&ders[0].1)
                    .unwrap()
                    .rsa()
                    .unwrap(),
                other => panic!("private key format {other}"),
            };
            let public_key = match ders[1].0 {
                kft::PKCS_1 => openssl::rsa::Rsa::public_key_from_der_pkcs1(&ders[1].1).unwrap(),
                kft::X_509 => openssl::pkey::PKey::public_key_from_der(&ders[1].1)
                    .unwrap()
                    .rsa()
                    .unwrap(),
                other => panic!("public key format {other}"),
            };
            assert_eq!(private_key.n(), public_key.n());
            assert_eq!(private_key.size(), 256);
            private_key.check_key().unwrap();
            step.pass();
        }
    });
}

// ---------------------------------------------------------------------------------------------
// A storage array (KMIP 1.0): four batch items, Get and Get Attributes by ID Placeholder
// ---------------------------------------------------------------------------------------------

#[test]
fn storage_array_batch_of_query_locate_get_and_get_attributes_by_id_placeholder() {
    storage_array_batch_of_query_locate_get_and_get_attributes_by_id_placeholder_on(&Kmipd::start());
}

fn storage_array_batch_of_query_locate_get_and_get_attributes_by_id_placeholder_on(k: &Kmipd) {
    let s = Step::new(
        common::STORAGE_ARRAY,
        "1.0",
        "One request of four batch items: Query, Locate (x- text and integer attributes), Get \
         (Opaque) and Get Attributes by ID Placeholder; a failed Get does not stop Get \
         Attributes",
        1,
    );
    k.rt.block_on(async {
        let mut c = connect(&connector(k, "client", V1_0, true), k).await;
        let custom = clients::array_attributes;
        let blob = [0xa5u8; 48];
        let opaque = register(
            &mut c,
            V1_0,
            object_type::SECRET_DATA,
            custom("SN-1", 7),
            secret_data(secret_data_type::SEED, kft::OPAQUE, &blob),
        )
        .await;
        let raw = register(
            &mut c,
            V1_0,
            object_type::SYMMETRIC_KEY,
            custom("SN-1", 8),
            aes_key(&[3u8; 32]),
        )
        .await;
        let batch = |serial: &str, slot: i32| {
            let mut msg = RequestMessage::new(
                V1_0,
                vec![
                    RequestBatchItem::new(
                        operation::QUERY,
                        vec![
                            build::enumeration(
                                tag::QUERY_FUNCTION,
                                query_function::QUERY_OPERATIONS,
                            ),
                            build::enumeration(tag::QUERY_FUNCTION, query_function::QUERY_OBJECTS),
                        ],
                    ),
                    RequestBatchItem::new(operation::LOCATE, custom(serial, slot)),
                    RequestBatchItem::new(
                        operation::GET,
                        vec![build::enumeration(tag::KEY_FORMAT_TYPE, kft::OPAQUE)],
                    ),
                    RequestBatchItem::new(operation::GET_ATTRIBUTES, vec![]),
                ],
            );
            msg.header.batch_error_continuation_option = Some(batch_error_continuation::CONTINUE);
            msg
        };

        let resp = exchange(&mut c, &batch("SN-1", 7)).await;
        let ops: Vec<Option<u32>> = resp.items.iter().map(|i| i.operation).collect();
        assert_eq!(
            ops,
            [
                Some(operation::QUERY),
                Some(operation::LOCATE),
                Some(operation::GET),
                Some(operation::GET_ATTRIBUTES)
            ]
        );
        assert!(ok(&resp.items[0]).iter().any(|i| i.tag == tag::OPERATION));
        assert_eq!(uids(&ok(&resp.items[1])), [opaque.as_str()]);
        let object = got_object(&resp.items[2], &opaque, object_type::SECRET_DATA);
        assert_eq!(key_format(&object), kft::OPAQUE);
        assert_eq!(material_bytes(&object), blob);
        let attrs = ok(&resp.items[3]);
        assert_eq!(uid(&attrs), opaque);
        assert_eq!(v1_value(&attrs, "x-array-serial"), Some(text("SN-1")));
        assert_eq!(v1_value(&attrs, "x-array-slot"), Some(Value::Integer(7)));

        // The Raw key cannot be served as Opaque: that item alone fails.
        let resp = exchange(&mut c, &batch("SN-1", 8)).await;
        assert_eq!(uids(&ok(&resp.items[1])), [raw.as_str()]);
        failed(&resp.items[2], result_reason::KEY_FORMAT_TYPE_NOT_SUPPORTED);
        let attrs = ok(&resp.items[3]);
        assert_eq!(uid(&attrs), raw);
        assert_eq!(v1_value(&attrs, "x-array-slot"), Some(Value::Integer(8)));

        // Nothing located: no placeholder, so Get and Get Attributes fail, never guess.
        let resp = exchange(&mut c, &batch("SN-2", 7)).await;
        assert!(uids(&ok(&resp.items[1])).is_empty());
        for i in &resp.items[2..] {
            assert_eq!(i.result_status, result_status::OPERATION_FAILED);
        }
    });
    s.pass();
}

// ---------------------------------------------------------------------------------------------
// Every flow on a node whose store is PostgreSQL
// ---------------------------------------------------------------------------------------------

/// Every flow above, one after another, against one kmipd whose store is PostgreSQL (a
/// `PgStore` on a database of the test binary's private cluster, `kmipd_test_support::pg`,
/// under the engine the server runs): the same requests and checks, through the store several
/// nodes share (every request on the blocking pool, each commit one database transaction).
/// The flows' rows of `docs/interoperability.md` come from the runs above: this thread records
/// none. `conformance/tests/wire.rs` runs the OASIS cases against the `kmipd serve` binary
/// configured with `[store] backend = "postgres"`.
#[test]
fn every_flow_passes_on_a_postgresql_backed_node() {
    common::RECORDING.set(false);
    let cluster = kmipd_test_support::pg::PgCluster::shared();
    let db = cluster.create_database();
    let kek = kmipd_store::Kek::new(kmipd_store::KekId(1), &zeroize::Zeroizing::new([0x5a; 32]));
    let store =
        kmipd_store::PgStore::open_with_kek(&kmipd_store::PgOptions::new(cluster.url(&db)), kek)
            .unwrap();
    let engine = kmipd_ops::Engine::new(Arc::new(store), kmipd_ops::EngineConfig::default());
    let k = Kmipd::start_with(Some(engine));
    vsphere_7_health_checks_creates_tags_and_gets_a_pre_active_key_on(&k);
    pg_tde_registers_then_locates_one_by_name_and_gets_it_a_connection_per_call_without_sni_on(&k);
    percona_mysql_pages_its_object_group_16_at_a_time_reads_each_and_erases_one_on(&k);
    percona_server_for_mongodb_speaks_1_0_only_and_reads_item_not_found_as_no_key_on(&k);
    synology_dsm_over_rsa_suites_registers_renames_finds_and_activates_a_secret_on(&k);
    mysql_keyring_okv_creates_with_attribute_indexes_a_response_size_and_a_read_only_attribute_on(
        &k,
    );
    veeam_creates_an_rsa_pair_on_one_connection_and_gets_it_on_resumed_ones_on(&k);
    storage_array_batch_of_query_locate_get_and_get_attributes_by_id_placeholder_on(&k);
    // The flows' objects are in the database, not in the node.
    let stored: u64 = cluster
        .psql(&db, "SELECT count(*) FROM kmipd_objects")
        .trim()
        .parse()
        .unwrap();
    assert!(stored > 0, "the flows stored nothing in PostgreSQL");
}
