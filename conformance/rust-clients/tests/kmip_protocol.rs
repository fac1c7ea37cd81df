//! NLnet Labs' `kmip-protocol` crate (a Rust KMIP client with its own TLS stack: rustls 0.19,
//! synchronous) against a kmipd started by the test on 127.0.0.1, port 0, over mutual TLS.
//!
//! The client verifies the server's certificate against the instance's CA for the DNS name
//! `localhost` (kmipd's development certificates carry it; the client cannot verify an IP
//! address), offers ECDHE suites only, and sends the requests of its own high-level calls: KMIP
//! 1.0 headers for most operations, 1.1 for Discover Versions, 1.2 for Query, Sign and RNG
//! Retrieve. Create and Locate have no high-level call; they go through `do_request` with the
//! crate's own request types. Every answer is checked by value: the created key's length, the
//! signature verified with OpenSSL against the public key fetched with Get, the random bytes'
//! length and freshness, the states after Revoke and Destroy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::as_conversions
)]

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{Kmipd, Row, Step, record};
use kmip_protocol::client::tls::rustls::connect_with_tcpstream_factory;
use kmip_protocol::client::{ClientCertificate, ConnectionSettings, Error};
use kmip_protocol::types::common::{
    AttributeIndex, AttributeName, AttributeValue, CryptographicAlgorithm, KeyFormatType,
    KeyMaterial, NameType, NameValue, ObjectType, Operation, State, UniqueIdentifier,
};
use kmip_protocol::types::request::{self, RequestPayload, TemplateAttribute};
use kmip_protocol::types::response::{ManagedObject, ResponsePayload};

const CLIENT: &str = common::KMIP_PROTOCOL;

type Client<T> = kmip_protocol::client::Client<T>;

/// Settings as an application would write them: host `localhost`, the CA, the client's PEMs,
/// timeouts (connect, read and write: every wait of this synchronous client is bounded).
fn settings(k: &Kmipd, who: &str) -> ConnectionSettings {
    ConnectionSettings {
        host: "localhost".into(),
        port: k.addr.port(),
        ca_cert: Some(k.cert("ca")),
        client_cert: Some(ClientCertificate::SeparatePem {
            cert_bytes: k.cert(who),
            key_bytes: Some(k.key(who)),
        }),
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(20)),
        write_timeout: Some(Duration::from_secs(20)),
        max_response_bytes: Some(1 << 20),
        ..ConnectionSettings::default()
    }
}

/// Connects as the crate does, except that the TCP connection goes to 127.0.0.1 whatever
/// `localhost` resolves to first (the test server listens on IPv4 only); the TLS server name
/// stays `localhost`. The crate's own `connect` sets no read or write timeout: the factory does.
fn connect(k: &Kmipd, who: &str) -> Client<impl std::io::Read + std::io::Write + use<>> {
    let addr = SocketAddr::from(([127, 0, 0, 1], k.addr.port()));
    connect_with_tcpstream_factory(&settings(k, who), move |_, s| {
        let tcp = TcpStream::connect_timeout(&addr, s.connect_timeout.unwrap())?;
        tcp.set_read_timeout(s.read_timeout)?;
        tcp.set_write_timeout(s.write_timeout)?;
        Ok(tcp)
    })
    .unwrap()
}

/// The steps, each a row of the table, with the protocol version the crate sends for it.
const STEPS: &[(&str, &str)] = &[
    ("Query (operations, objects, server information)", "1.2"),
    ("Create AES-256 (do_request)", "1.0"),
    ("Activate", "1.0"),
    ("Get (Raw key of the created length)", "1.0"),
    ("Locate by Name (do_request)", "1.0"),
    ("ModifyAttribute Name (rename_key)", "1.0"),
    ("CreateKeyPair RSA-2048", "1.0"),
    ("Sign RSA PKCS#1 v1.5 SHA-256, verified with OpenSSL", "1.2"),
    ("RNGRetrieve", "1.2"),
    ("Revoke (cessation of operation)", "1.0"),
    ("Destroy", "1.0"),
];

fn step(flow: &str) -> Step {
    let (order, (flow, protocol)) = STEPS
        .iter()
        .enumerate()
        .find(|(_, (f, _))| *f == flow)
        .unwrap_or_else(|| panic!("unknown step {flow}"));
    Step::new(CLIENT, protocol, *flow, order + 1)
}

fn uid(s: &str) -> Option<UniqueIdentifier> {
    Some(UniqueIdentifier(s.to_owned()))
}

fn locate<T: std::io::Read + std::io::Write>(
    c: &Client<T>,
    attrs: Vec<request::Attribute>,
) -> Vec<String> {
    match c.do_request(RequestPayload::Locate(attrs)).unwrap() {
        ResponsePayload::Locate(l) => l.unique_identifiers.into_iter().map(|u| u.0).collect(),
        other => panic!("not a Locate answer: {other:?}"),
    }
}

fn state<T: std::io::Read + std::io::Write>(c: &Client<T>, id: &str) -> State {
    let payload = RequestPayload::GetAttributes(uid(id), Some(vec![AttributeName("State".into())]));
    match c.do_request(payload).unwrap() {
        ResponsePayload::GetAttributes(a) => {
            assert_eq!(a.unique_identifier.0, id);
            let attrs = a.attributes.unwrap();
            assert_eq!(attrs.len(), 1, "{attrs:?}");
            match &attrs[0].value {
                AttributeValue::State(s) => *s,
                other => panic!("State: {other:?}"),
            }
        }
        other => panic!("not a Get Attributes answer: {other:?}"),
    }
}

fn key_bytes(m: &KeyMaterial) -> Vec<u8> {
    match m {
        KeyMaterial::Bytes(b) => b.clone(),
        KeyMaterial::TransparentSymmetricKey(t) => t.key.clone(),
        other => panic!("unexpected Key Material {other:?}"),
    }
}

/// The public key as OpenSSL sees it: PKCS#1 RSAPublicKey or X.509 SubjectPublicKeyInfo DER.
fn openssl_public_key(der: &[u8]) -> openssl::pkey::PKey<openssl::pkey::Public> {
    match openssl::rsa::Rsa::public_key_from_der_pkcs1(der) {
        Ok(rsa) => openssl::pkey::PKey::from_rsa(rsa).unwrap(),
        Err(_) => openssl::pkey::PKey::public_key_from_der(der).unwrap(),
    }
}

#[test]
fn every_high_level_call_against_a_running_kmipd() {
    // Every row "not run" first: a failure part-way leaves no stale "pass" from an earlier run.
    let pending: Vec<Row> = STEPS
        .iter()
        .enumerate()
        .map(|(order, (flow, protocol))| Row {
            client: CLIENT,
            version: protocol,
            flow: (*flow).to_owned(),
            order: order + 1,
            result: "fail",
            note: "not run: an earlier step of the kmip-protocol test failed".to_owned(),
        })
        .collect();
    record(&pending);

    let k = Kmipd::start();
    let c = connect(&k, "client");

    let s = step("Query (operations, objects, server information)");
    let q = c.query().unwrap();
    assert_eq!(q.vendor_identification.as_deref(), Some("kmipd"));
    let ops = q.operations.unwrap();
    for op in [
        Operation::Create,
        Operation::CreateKeyPair,
        Operation::Locate,
        Operation::Get,
        Operation::ModifyAttribute,
        Operation::Activate,
        Operation::Revoke,
        Operation::Destroy,
        Operation::Query,
        Operation::Sign,
        Operation::RNGRetrieve,
    ] {
        assert!(ops.contains(&op), "{op:?} not in {ops:?}");
    }
    let objects = q.object_types.unwrap();
    for ot in [
        ObjectType::SymmetricKey,
        ObjectType::PublicKey,
        ObjectType::PrivateKey,
    ] {
        assert!(objects.contains(&ot), "{ot:?} not in {objects:?}");
    }
    s.pass();

    let s = step("Create AES-256 (do_request)");
    let name = "kmip-protocol-aes";
    let created = c
        .do_request(RequestPayload::Create(
            ObjectType::SymmetricKey,
            TemplateAttribute::unnamed(vec![
                request::Attribute::CryptographicAlgorithm(CryptographicAlgorithm::AES),
                request::Attribute::CryptographicLength(256),
                // Encrypt | Decrypt: the crate's usage-mask helper takes one flag only.
                request::Attribute(
                    AttributeName("Cryptographic Usage Mask".into()),
                    Option::<AttributeIndex>::None,
                    AttributeValue::Integer(0x0c),
                ),
                request::Attribute::Name(name.into()),
            ]),
        ))
        .unwrap();
    let ResponsePayload::Create(created) = created else {
        panic!("not a Create answer: {created:?}");
    };
    assert_eq!(created.object_type, ObjectType::SymmetricKey);
    let aes = created.unique_identifier.0.clone();
    assert!(!aes.is_empty());
    assert_eq!(state(&c, &aes), State::PreActive);
    s.pass();

    let s = step("Activate");
    c.activate_key(&aes).unwrap();
    assert_eq!(state(&c, &aes), State::Active);
    s.pass();

    let s = step("Get (Raw key of the created length)");
    let mut seen = Vec::new();
    for _ in 0..2 {
        let got = c.get_key(&aes).unwrap();
        assert_eq!(got.unique_identifier.0, aes);
        assert_eq!(got.object_type, ObjectType::SymmetricKey);
        let ManagedObject::SymmetricKey(key) = got.cryptographic_object else {
            panic!("not a Symmetric Key: {:?}", got.cryptographic_object);
        };
        let kb = key.key_block;
        assert_eq!(kb.key_format_type, KeyFormatType::Raw);
        assert_eq!(
            kb.cryptographic_algorithm,
            Some(CryptographicAlgorithm::AES)
        );
        assert_eq!(kb.cryptographic_length, Some(256));
        assert!(kb.key_value.attributes.is_none(), "Key Material only");
        let bytes = key_bytes(&kb.key_value.key_material);
        assert_eq!(bytes.len(), 32, "AES-256 is 32 bytes");
        assert!(bytes.iter().any(|b| *b != 0));
        seen.push(bytes);
    }
    assert_eq!(seen[0], seen[1], "the same key each time");
    s.pass();

    let s = step("Locate by Name (do_request)");
    assert_eq!(
        locate(&c, vec![request::Attribute::Name(name.into())]),
        [aes.as_str()]
    );
    assert!(locate(&c, vec![request::Attribute::Name("no-such-name".into())]).is_empty());
    let by_type = locate(
        &c,
        vec![
            request::Attribute::ObjectType(ObjectType::SymmetricKey),
            request::Attribute::CryptographicAlgorithm(CryptographicAlgorithm::AES),
        ],
    );
    assert_eq!(by_type, [aes.as_str()]);
    s.pass();

    let s = step("ModifyAttribute Name (rename_key)");
    let renamed = "kmip-protocol-aes-renamed";
    let m = c.rename_key(&aes, renamed.into()).unwrap();
    assert_eq!(m.unique_identifier.0, aes);
    assert_eq!(m.attribute.name.0, "Name");
    assert_eq!(
        m.attribute.value,
        AttributeValue::Name(NameValue(renamed.into()), NameType::UninterpretedTextString)
    );
    assert_eq!(
        locate(&c, vec![request::Attribute::Name(renamed.into())]),
        [aes.as_str()]
    );
    assert!(locate(&c, vec![request::Attribute::Name(name.into())]).is_empty());
    s.pass();

    let s = step("CreateKeyPair RSA-2048");
    let (private, public) = c
        .create_rsa_key_pair(
            2048,
            "kmip-protocol-rsa-private".into(),
            "kmip-protocol-rsa-public".into(),
        )
        .unwrap();
    assert_ne!(private, public);
    let got = c.get_key(&public).unwrap();
    assert_eq!(got.object_type, ObjectType::PublicKey);
    let ManagedObject::PublicKey(pk) = got.cryptographic_object else {
        panic!("not a Public Key: {:?}", got.cryptographic_object);
    };
    assert_eq!(
        pk.key_block.cryptographic_algorithm,
        Some(CryptographicAlgorithm::RSA)
    );
    assert_eq!(pk.key_block.cryptographic_length, Some(2048));
    let public_der = key_bytes(&pk.key_block.key_value.key_material);
    let public_key = openssl_public_key(&public_der);
    assert_eq!(public_key.bits(), 2048);
    let got = c.get_key(&private).unwrap();
    assert_eq!(got.object_type, ObjectType::PrivateKey);
    assert_eq!(
        locate(
            &c,
            vec![request::Attribute::Name("kmip-protocol-rsa-private".into())]
        ),
        [private.as_str()]
    );
    s.pass();

    let s = step("Sign RSA PKCS#1 v1.5 SHA-256, verified with OpenSSL");
    c.activate_key(&private).unwrap();
    let data = b"kmipd interoperability: signed by the server, verified here";
    let signed = c.sign(&private, data).unwrap();
    assert_eq!(signed.unique_identifier.0, private);
    assert_eq!(signed.signature_data.len(), 256);
    let verify = |msg: &[u8]| {
        let mut v =
            openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &public_key)
                .unwrap();
        v.set_rsa_padding(openssl::rsa::Padding::PKCS1).unwrap();
        v.update(msg).unwrap();
        v.verify(&signed.signature_data).unwrap()
    };
    assert!(
        verify(data),
        "the signature verifies with the public key from Get"
    );
    assert!(!verify(b"other data"), "and only for the signed data");
    s.pass();

    let s = step("RNGRetrieve");
    let a = c.rng_retrieve(32).unwrap().data;
    let b = c.rng_retrieve(32).unwrap().data;
    assert_eq!(a.len(), 32);
    assert_eq!(b.len(), 32);
    assert_ne!(a, b, "fresh bytes each time");
    assert_eq!(c.rng_retrieve(1000).unwrap().data.len(), 1000);
    s.pass();

    let s = step("Revoke (cessation of operation)");
    c.revoke_key(&private).unwrap();
    assert_eq!(state(&c, &private), State::Deactivated);
    assert!(
        matches!(c.sign(&private, data), Err(Error::ServerError(_))),
        "a revoked key no longer signs"
    );
    c.revoke_key(&aes).unwrap();
    assert_eq!(state(&c, &aes), State::Deactivated);
    s.pass();

    let s = step("Destroy");
    for id in [&private, &public, &aes] {
        c.destroy_key(id).unwrap();
        assert!(
            matches!(c.get_key(id), Err(Error::ItemNotFound(_))),
            "{id} is gone"
        );
    }
    assert!(locate(&c, vec![request::Attribute::Name(renamed.into())]).is_empty());
    s.pass();
}

/// A second identity's client sees nothing of the first one's, through the same crate.
#[test]
fn a_second_identity_neither_finds_nor_reads_the_first_ones_keys() {
    let k = Kmipd::start();
    let s = Step::new(
        CLIENT,
        "1.0",
        "A second identity neither finds nor reads the first one's keys",
        STEPS.len() + 1,
    );
    let alice = connect(&k, "client");
    let bob = connect(&k, "client2");
    let (private, _public) = alice
        .create_rsa_key_pair(2048, "alice-private".into(), "alice-public".into())
        .unwrap();
    assert!(locate(&bob, vec![request::Attribute::Name("alice-private".into())]).is_empty());
    assert!(matches!(bob.get_key(&private), Err(Error::ItemNotFound(_))));
    assert_eq!(
        locate(
            &alice,
            vec![request::Attribute::Name("alice-private".into())]
        ),
        [private]
    );
    s.pass();
}
