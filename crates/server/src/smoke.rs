//! Smoke tests: the whole server in-process on 127.0.0.1:0, an instance made by `init`
//! (without HSM), real TLS round trips. The full end-to-end suite lives in `tests/`.

use std::sync::Arc;

use kmipd_proto::enums::{operation, result_reason, result_status};
use kmipd_proto::message::{ProtocolVersion, RequestBatchItem, RequestMessage, ResponseMessage};
use kmipd_ttlv::{Limits, Ttlv};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::init::{InitOptions, Instance, init_instance_with};
use crate::{Server, ServerHandle};

async fn start(
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut crate::Config),
) -> (Instance, ServerHandle) {
    let inst = init_instance_with(
        &dir.join("inst"),
        &InitOptions {
            hsm: false,
            ..InitOptions::default()
        },
    )
    .unwrap();
    let mut config = inst.config().unwrap();
    tweak(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle = Server::new(config)
        .listener(listener)
        .metrics_listener(metrics)
        .start()
        .await
        .unwrap();
    (inst, handle)
}

fn client_config(
    inst: &Instance,
    who: Option<&str>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    suites: Option<&[rustls::CipherSuite]>,
) -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(s) = suites {
        provider.cipher_suites.retain(|c| s.contains(&c.suite()));
    }
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(inst.cert("ca")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let c = match who {
        Some(name) => {
            let chain = CertificateDer::pem_file_iter(inst.cert(name))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(inst.key(name)).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    Arc::new(c)
}

async fn connect(
    handle: &ServerHandle,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(handle.local_addr()).await?;
    TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

async fn roundtrip(stream: &mut TlsStream<TcpStream>, request: &[u8]) -> std::io::Result<Ttlv> {
    stream.write_all(request).await?;
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await?;
    let frame = kmipd_ttlv::frame_len(&header, &Limits::default()).unwrap();
    let mut msg = header.to_vec();
    msg.resize(frame.total_len, 0);
    stream.read_exact(&mut msg[8..]).await?;
    Ok(kmipd_ttlv::decode(&msg, &Limits::default()).unwrap())
}

fn discover_versions(items: usize) -> Vec<u8> {
    let m = RequestMessage::new(
        ProtocolVersion::V1_4,
        (0..items)
            .map(|_| RequestBatchItem::new(operation::DISCOVER_VERSIONS, vec![]))
            .collect(),
    );
    kmipd_ttlv::encode_to_vec(&m.to_ttlv()).unwrap()
}

fn v12_v13() -> Vec<&'static rustls::SupportedProtocolVersion> {
    vec![&rustls::version::TLS13, &rustls::version::TLS12]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_versions_over_mutual_tls_then_limits_then_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let (inst, handle) = start(tmp.path(), |c| c.limits.max_batch_items = 3).await;
    let cfg = client_config(&inst, Some("client"), &v12_v13(), None);
    let mut s = connect(&handle, cfg.clone()).await.unwrap();

    // Several requests on one connection.
    for _ in 0..3 {
        let r =
            ResponseMessage::from_ttlv(&roundtrip(&mut s, &discover_versions(1)).await.unwrap())
                .unwrap();
        assert_eq!(r.items.len(), 1);
        assert_eq!(r.items[0].result_status, result_status::SUCCESS);
        assert_eq!(r.items[0].operation, Some(operation::DISCOVER_VERSIONS));
    }

    // Over the batch cap: a KMIP error, and the connection stays usable.
    let r = ResponseMessage::from_ttlv(&roundtrip(&mut s, &discover_versions(4)).await.unwrap())
        .unwrap();
    assert_eq!(r.items[0].result_status, result_status::OPERATION_FAILED);
    assert_eq!(
        r.items[0].result_reason,
        Some(result_reason::INVALID_MESSAGE)
    );
    assert_eq!(r.header.protocol_version, ProtocolVersion::V1_4);
    let r = ResponseMessage::from_ttlv(&roundtrip(&mut s, &discover_versions(3)).await.unwrap())
        .unwrap();
    assert_eq!(r.items.len(), 3);

    // Malformed TTLV with a readable header: Invalid Message, connection kept.
    let mut bad = discover_versions(1);
    if let Some(b) = bad.get_mut(8..11) {
        b.copy_from_slice(&[0x42, 0x00, 0x77]);
    }
    bad[11] = 0x09; // an unknown item type inside the structure
    let r = ResponseMessage::from_ttlv(&roundtrip(&mut s, &bad).await.unwrap()).unwrap();
    assert_eq!(
        r.items[0].result_reason,
        Some(result_reason::INVALID_MESSAGE)
    );
    let r = ResponseMessage::from_ttlv(&roundtrip(&mut s, &discover_versions(1)).await.unwrap())
        .unwrap();
    assert_eq!(r.items[0].result_status, result_status::SUCCESS);

    // An oversized length in the header: refused from the header alone, then closed.
    let mut huge = vec![0x42, 0x00, 0x78, 0x01];
    huge.extend_from_slice(&(64u32 << 20).to_be_bytes());
    let r = ResponseMessage::from_ttlv(&roundtrip(&mut s, &huge).await.unwrap()).unwrap();
    assert_eq!(
        r.items[0].result_reason,
        Some(result_reason::INVALID_MESSAGE)
    );
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
    assert!(rest.is_empty());

    // Session resumption with client authentication: the second connection resumes.
    let s2 = connect(&handle, cfg.clone()).await.unwrap();
    assert_eq!(
        s2.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    drop(s2);

    // No client certificate: refused, counted as a handshake failure.
    let before = handle.metrics().handshake_failures();
    let anon = client_config(&inst, None, &v12_v13(), None);
    if let Ok(mut s) = connect(&handle, anon).await {
        // TLS 1.3: the client learns of the refusal at its first read.
        assert!(roundtrip(&mut s, &discover_versions(1)).await.is_err());
    }
    for _ in 0..50 {
        if handle.metrics().handshake_failures() > before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(handle.metrics().handshake_failures(), before + 1);

    // Metrics endpoint.
    let mut m = TcpStream::connect(handle.metrics_addr().unwrap())
        .await
        .unwrap();
    m.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    m.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        text.contains("kmipd_requests_total{operation=\"DiscoverVersions\",result=\"Success\"}"),
        "{text}"
    );

    // The audit log holds the requests; the chain verifies.
    let n = crate::audit::verify(inst.dir.join("audit.log")).unwrap();
    assert!(n >= 8, "{n} records");

    // Graceful shutdown: the listener is gone afterwards.
    let addr = handle.local_addr();
    handle.stop().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_clients_get_the_certificate_their_suites_need() {
    let tmp = tempfile::tempdir().unwrap();
    let (inst, handle) = start(tmp.path(), |_| {}).await;
    let tls12 = [&rustls::version::TLS12];
    for (suite, alg) in [
        (
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            "EC",
        ),
        (
            rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            "RSA",
        ),
    ] {
        let cfg = client_config(&inst, Some("client2"), &tls12, Some(&[suite]));
        let mut s = connect(&handle, cfg).await.unwrap();
        let (_, conn) = s.get_ref();
        assert_eq!(conn.negotiated_cipher_suite().unwrap().suite(), suite);
        let leaf = &conn.peer_certificates().unwrap()[0];
        assert_eq!(crate::certs::inspect_der(leaf).unwrap().key_algorithm, alg);
        let r =
            ResponseMessage::from_ttlv(&roundtrip(&mut s, &discover_versions(1)).await.unwrap())
                .unwrap();
        assert_eq!(r.items[0].result_status, result_status::SUCCESS);
    }
    handle.stop().await;
}
