//! Put and Notify over the wire (`[[push]]`, `kmipd::push`): an in-process kmipd delivers the
//! server-to-client messages of a client's changes to a test endpoint (mutual TLS, a
//! certificate from the instance CA naming the subscribed identity) on 127.0.0.1 port 0. A
//! Create gives a Put with the key bytes Get shows, an Add and a Modify Attribute a Notify each;
//! a destination that is down fails nothing and slows nothing the client sees, and its message
//! arrives once the endpoint is up (retried), each fate in the audit log and the metrics.
//!
//! Every wait is bounded; no assertion is about speed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::{bounded, connect, instance};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kmipd::certs::{ClientEku, ClientOptions};
use kmipd::config::{Config, PushConfig, PushEvent};
use kmipd::{Instance, Server, ServerHandle};
use kmipd_proto::build;
use kmipd_proto::enums::{
    cryptographic_algorithm as alg, object_type, operation as op, put_function, result_status,
};
use kmipd_proto::tag;
use kmipd_ttlv::{Limits, Ttlv, Value};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The client's endpoint: a TLS listener with a certificate naming `client` (serverAuth),
/// requiring a client certificate from the instance CA; each message it reads goes to the
/// channel and is answered Success without payload, as KMIP 1.4 §5 asks.
async fn endpoint(inst: &Instance, listener: TcpListener) -> mpsc::UnboundedReceiver<Ttlv> {
    endpoint_named(inst, listener, "client").await
}

/// [`endpoint`] with a certificate naming `name`.
async fn endpoint_named(
    inst: &Instance,
    listener: TcpListener,
    name: &str,
) -> mpsc::UnboundedReceiver<Ttlv> {
    let ca = inst.ca().unwrap();
    let issued = ca
        .issue_client(
            name,
            &ClientOptions {
                eku: ClientEku::ServerAuthOnly,
                sans: vec![name.to_owned()],
                ..ClientOptions::default()
            },
        )
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                loop {
                    let mut header = [0u8; kmipd_ttlv::HEADER_LEN];
                    if tls.read_exact(&mut header).await.is_err() {
                        return;
                    }
                    let frame = kmipd_ttlv::frame_len(&header, &Limits::default()).unwrap();
                    let mut bytes = header.to_vec();
                    bytes.resize(frame.total_len, 0);
                    tls.read_exact(&mut bytes[kmipd_ttlv::HEADER_LEN..])
                        .await
                        .unwrap();
                    let message = kmipd_ttlv::decode(&bytes, &Limits::default()).unwrap();
                    let answer = answer(&message);
                    let _ = tx.send(message);
                    let out = kmipd_ttlv::encode_to_vec(&answer).unwrap();
                    if tls.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    rx
}

/// The client's answer: a Response Message, one Success item without payload.
fn answer(message: &Ttlv) -> Ttlv {
    let header = message.child(tag::REQUEST_HEADER).unwrap();
    let version = header.child(tag::PROTOCOL_VERSION).unwrap().clone();
    let operation = message
        .child(tag::BATCH_ITEM)
        .unwrap()
        .child(tag::OPERATION)
        .unwrap()
        .clone();
    build::structure(
        tag::RESPONSE_MESSAGE,
        vec![
            build::structure(
                tag::RESPONSE_HEADER,
                vec![
                    version,
                    Ttlv::new(tag::TIME_STAMP, Value::DateTime(0)),
                    build::int(tag::BATCH_COUNT, 1),
                ],
            ),
            build::structure(
                tag::BATCH_ITEM,
                vec![
                    operation,
                    build::enumeration(tag::RESULT_STATUS, result_status::SUCCESS),
                    build::structure(tag::RESPONSE_PAYLOAD, vec![]),
                ],
            ),
        ],
    )
}

/// A configuration sending `client`'s Put and Notify messages to `addr`, kmipd presenting a
/// client certificate of the instance CA.
fn config(inst: &Instance, tmp: &tempfile::TempDir, addr: SocketAddr) -> Config {
    let issued = inst
        .ca()
        .unwrap()
        .issue_client("kmipd-push", &ClientOptions::default())
        .unwrap();
    let (cert, key) = (tmp.path().join("push.pem"), tmp.path().join("push.key"));
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    std::fs::write(&key, issued.key_pem.as_bytes()).unwrap();
    let mut c = inst.config().unwrap();
    c.push = vec![PushConfig {
        identity: "client".to_owned(),
        name: None,
        address: addr.to_string(),
        ca: None,
        server_name: None,
        client_cert: Some(cert),
        client_key: Some(key),
        events: vec![PushEvent::Put, PushEvent::Notify],
        version: None,
        queue: 16,
        timeout: Duration::from_secs(5),
        attempts: 100,
        retry_max: Duration::from_millis(100),
    }];
    c
}

async fn start(config: Config) -> ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    bounded("start", Server::new(config).listener(listener).start())
        .await
        .unwrap()
}

fn attr(name: &str, value: Value) -> Ttlv {
    build::structure(
        tag::ATTRIBUTE,
        vec![
            build::text(tag::ATTRIBUTE_NAME, name),
            Ttlv::new(tag::ATTRIBUTE_VALUE, value),
        ],
    )
}

fn create_payload() -> Vec<Ttlv> {
    vec![
        build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
        build::structure(
            tag::TEMPLATE_ATTRIBUTE,
            vec![
                attr("Cryptographic Algorithm", Value::Enumeration(alg::AES)),
                attr("Cryptographic Length", Value::Integer(256)),
                attr("Cryptographic Usage Mask", Value::Integer(12)),
            ],
        ),
    ]
}

fn uid_of(items: &[Ttlv]) -> String {
    match &items
        .iter()
        .find(|i| i.tag == tag::UNIQUE_IDENTIFIER)
        .unwrap()
        .value
    {
        Value::TextString(s) => s.clone(),
        other => panic!("{other:?}"),
    }
}

fn find(item: &Ttlv, t: kmipd_ttlv::Tag) -> Option<Value> {
    let mut out = None;
    item.walk(&mut |i, _| {
        if i.tag == t && out.is_none() {
            out = Some(i.value.clone());
        }
    });
    out
}

/// The operation and payload of a pushed message.
fn parts(message: &Ttlv) -> (Value, Ttlv) {
    let item = message.child(tag::BATCH_ITEM).unwrap();
    (
        item.child(tag::OPERATION).unwrap().value.clone(),
        item.child(tag::REQUEST_PAYLOAD).unwrap().clone(),
    )
}

fn attribute_names(payload: &Ttlv) -> Vec<String> {
    payload
        .children()
        .unwrap()
        .iter()
        .filter(|c| c.tag == tag::ATTRIBUTE)
        .map(|a| match &a.child(tag::ATTRIBUTE_NAME).unwrap().value {
            Value::TextString(s) => s.clone(),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn metric(server: &ServerHandle, name: &str) -> u64 {
    let text = server.metrics().render();
    let series = format!("{name}{{destination=\"client\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("{series} not exported:\n{text}"))
        .parse()
        .unwrap()
}

fn audit_lines(inst: &Instance, operation: &str) -> Vec<String> {
    let p = inst.config().unwrap().audit.path;
    let p = if p.is_absolute() { p } else { inst.dir.join(p) };
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter(|l| l.contains(&format!("\"operation\":\"{operation}\"")))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_puts_the_key_and_attribute_edits_notify() {
    let tmp = tempfile::tempdir().unwrap();
    let inst = instance(&tmp);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut pushed = endpoint(&inst, listener).await;
    let server = start(config(&inst, &tmp, addr)).await;
    let mut client = connect(&inst, "client", server.local_addr()).await;
    client.set_version(kmipd_proto::message::ProtocolVersion::V1_4);

    let created = bounded("create", client.call(op::CREATE, create_payload()))
        .await
        .unwrap();
    let uid = uid_of(&created);
    let put = bounded("the Put", pushed.recv()).await.unwrap();
    let (operation, payload) = parts(&put);
    assert_eq!(operation, Value::Enumeration(op::PUT));
    assert_eq!(
        payload.child(tag::UNIQUE_IDENTIFIER).unwrap().value,
        Value::TextString(uid.clone())
    );
    assert_eq!(
        payload.child(tag::PUT_FUNCTION).unwrap().value,
        Value::Enumeration(put_function::NEW)
    );
    let got = bounded(
        "get",
        client.call(op::GET, vec![build::unique_identifier(&uid)]),
    )
    .await
    .unwrap();
    let material = got.iter().find_map(|i| find(i, tag::KEY_MATERIAL)).unwrap();
    match &material {
        Value::ByteString(b) => assert_eq!(b.len(), 32),
        other => panic!("{other:?}"),
    }
    assert_eq!(find(&payload, tag::KEY_MATERIAL), Some(material));

    // The first Get served the Fresh key: a Notify of that change.
    let fresh = bounded("the Notify of Fresh", pushed.recv()).await.unwrap();
    assert!(attribute_names(&parts(&fresh).1).contains(&"Fresh".to_owned()));

    bounded(
        "add attribute",
        client.call(
            op::ADD_ATTRIBUTE,
            vec![
                build::unique_identifier(&uid),
                attr("x-owner", Value::TextString("team-a".into())),
            ],
        ),
    )
    .await
    .unwrap();
    bounded(
        "modify attribute",
        client.call(
            op::MODIFY_ATTRIBUTE,
            vec![
                build::unique_identifier(&uid),
                attr("x-owner", Value::TextString("team-b".into())),
            ],
        ),
    )
    .await
    .unwrap();
    for want in ["team-a", "team-b"] {
        let notify = bounded("a Notify", pushed.recv()).await.unwrap();
        let (operation, payload) = parts(&notify);
        assert_eq!(operation, Value::Enumeration(op::NOTIFY));
        let x = payload
            .children()
            .unwrap()
            .iter()
            .find(|a| {
                a.tag == tag::ATTRIBUTE
                    && a.child(tag::ATTRIBUTE_NAME).unwrap().value
                        == Value::TextString("x-owner".into())
            })
            .unwrap()
            .child(tag::ATTRIBUTE_VALUE)
            .unwrap()
            .value
            .clone();
        assert_eq!(x, Value::TextString(want.into()));
        assert!(find(&payload, tag::KEY_MATERIAL).is_none());
    }
    // Each delivery is audited once its answer is read (the record follows the delivery).
    bounded("the audit records", async {
        while audit_lines(&inst, "Notify").len() < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let puts = audit_lines(&inst, "Put");
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert!(
        puts[0].contains(&uid) && puts[0].contains("Success"),
        "{}",
        puts[0]
    );
    assert_eq!(metric(&server, "kmipd_push_delivered_total"), 4);
    assert_eq!(metric(&server, "kmipd_push_failed_total"), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_is_down_fails_nothing_and_is_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let inst = instance(&tmp);
    // A port nobody listens on (yet).
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let server = start(config(&inst, &tmp, addr)).await;
    let mut client = connect(&inst, "client", server.local_addr()).await;
    client.set_version(kmipd_proto::message::ProtocolVersion::V1_4);
    // The client's requests are answered while the endpoint is down.
    let created = bounded("create", client.call(op::CREATE, create_payload()))
        .await
        .unwrap();
    let uid = uid_of(&created);
    let again = bounded("create", client.call(op::CREATE, create_payload()))
        .await
        .unwrap();
    assert_ne!(uid_of(&again), uid);
    bounded("failed attempts", async {
        while metric(&server, "kmipd_push_attempt_failures_total") < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(metric(&server, "kmipd_push_delivered_total"), 0);
    assert!(metric(&server, "kmipd_push_queued") >= 1);

    // The endpoint comes up: the queued Puts arrive, in order.
    let listener = TcpListener::bind(addr).await.unwrap();
    let mut pushed = endpoint(&inst, listener).await;
    let first = bounded("the first Put", pushed.recv()).await.unwrap();
    assert_eq!(
        parts(&first).1.child(tag::UNIQUE_IDENTIFIER).unwrap().value,
        Value::TextString(uid)
    );
    bounded("the second Put", pushed.recv()).await.unwrap();
    bounded("delivered", async {
        while metric(&server, "kmipd_push_delivered_total") < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(metric(&server, "kmipd_push_failed_total"), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_certified_for_another_identity_gets_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let inst = instance(&tmp);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A certificate of the same CA, but not naming the subscribed identity `client`.
    let mut pushed = endpoint_named(&inst, listener, "mallory").await;
    let mut c = config(&inst, &tmp, addr);
    c.push[0].attempts = 2;
    let server = start(c).await;
    let mut client = connect(&inst, "client", server.local_addr()).await;
    client.set_version(kmipd_proto::message::ProtocolVersion::V1_4);
    let created = bounded("create", client.call(op::CREATE, create_payload()))
        .await
        .unwrap();
    let uid = uid_of(&created);
    // Every attempt fails the certificate check: the message is given up, and audited so.
    bounded("given up", async {
        while metric(&server, "kmipd_push_failed_total") < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(metric(&server, "kmipd_push_attempt_failures_total"), 2);
    assert_eq!(metric(&server, "kmipd_push_delivered_total"), 0);
    assert!(pushed.try_recv().is_err(), "the endpoint read a message");
    bounded("the audit record", async {
        while audit_lines(&inst, "Put").is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let puts = audit_lines(&inst, "Put");
    assert!(
        puts[0].contains(&uid)
            && puts[0].contains("OperationFailed")
            && puts[0].contains("TLS handshake"),
        "{}",
        puts[0]
    );
    server.stop().await;
}
