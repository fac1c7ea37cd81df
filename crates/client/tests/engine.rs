//! The client against an in-process mutual-TLS server over the engine: every convenience call
//! in 1.x and 2.x, the framing limit, TLS session resumption, and refusal without a client
//! certificate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kmipd_client::{Connector, Error, TlsOptions, custom_attr, item};
use kmipd_ops::{Engine, Principal};
use kmipd_proto::build;
use kmipd_proto::enums::{cryptographic_algorithm, operation, revocation_reason_code};
use kmipd_proto::message::ProtocolVersion;
use kmipd_proto::tag;
use kmipd_ttlv::{HEADER_LEN, Limits};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>, cn: &str, eku| {
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![eku];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["localhost".into()],
        "localhost",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(vec![], "client", ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca: ca.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

/// A mutual-TLS KMIP server over an in-memory engine; every client is `client`.
async fn serve(pki: &Pki) -> SocketAddr {
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(pki.ca.as_bytes()) {
            r.add(c.unwrap()).unwrap();
        }
        Arc::new(r)
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            CertificateDer::pem_slice_iter(pki.server_cert.as_bytes())
                .map(Result::unwrap)
                .collect(),
            PrivateKeyDer::from_pem_slice(pki.server_key.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let engine = Engine::in_memory();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let engine = engine.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let who = Principal::new("client");
                loop {
                    let mut header = [0u8; HEADER_LEN];
                    if tls.read_exact(&mut header).await.is_err() {
                        return;
                    }
                    let Ok(frame) = kmipd_ttlv::frame_len(&header, &Limits::default()) else {
                        return;
                    };
                    let mut bytes = vec![0u8; frame.total_len];
                    bytes[..HEADER_LEN].copy_from_slice(&header);
                    if tls.read_exact(&mut bytes[HEADER_LEN..]).await.is_err() {
                        return;
                    }
                    let out = engine.handle_bytes(&who, &bytes);
                    if tls.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn connector(pki: &Pki, version: ProtocolVersion) -> Connector {
    Connector::new(
        pki.ca.as_bytes(),
        pki.client_cert.as_bytes(),
        pki.client_key.as_bytes(),
        TlsOptions {
            version,
            timeout: Duration::from_secs(10),
            ..TlsOptions::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn every_convenience_call_in_1_x_and_2_x() {
    let pki = pki();
    let addr = serve(&pki).await;
    for version in [
        ProtocolVersion::V1_0,
        ProtocolVersion::new(1, 2),
        ProtocolVersion::V1_4,
        ProtocolVersion::V2_0,
        ProtocolVersion::V2_1,
    ] {
        let mut c = connector(&pki, version).connect(addr).await.unwrap();
        if version > ProtocolVersion::V1_0 {
            let versions = c.discover_versions().await.unwrap();
            assert!(versions.contains(&version), "{versions:?}");
        }
        assert!(!c.query().await.unwrap().is_empty());
        let name = format!("k-{version}");
        let uid = c.create_aes(256, Some(&name)).await.unwrap();
        assert_eq!(c.locate_by_name(&name).await.unwrap(), vec![uid.clone()]);
        assert_eq!(c.get_key_bytes(&uid).await.unwrap().len(), 32);
        let attrs = c.get_attributes(&uid).await.unwrap();
        assert!(
            attrs.iter().any(
                |a| a.name == kmipd_proto::attributes::AttrName::Std(tag::CRYPTOGRAPHIC_LENGTH)
            ),
            "{attrs:?}"
        );
        c.activate(&uid).await.unwrap();
        if version >= ProtocolVersion::V1_4 {
            let sealed = c.encrypt(&uid, b"attack at dawn").await.unwrap();
            assert_ne!(sealed.data, b"attack at dawn");
            assert_eq!(&*c.decrypt(&uid, &sealed).await.unwrap(), b"attack at dawn");
            let mut bad = sealed.clone();
            bad.tag[0] ^= 1;
            assert!(matches!(
                c.decrypt(&uid, &bad).await,
                Err(Error::Kmip { .. })
            ));
        }
        let secret = c
            .register_secret(b"hunter2", Some(&format!("s-{version}")))
            .await
            .unwrap();
        assert_eq!(&*c.get_key_bytes(&secret).await.unwrap(), b"hunter2");
        let key = [9u8; 16];
        let sym = c
            .register_symmetric(cryptographic_algorithm::AES, &key, None)
            .await
            .unwrap();
        assert_eq!(&*c.get_key_bytes(&sym).await.unwrap(), &key);
        assert!(
            c.locate(&[custom_attr("x-none", "v")])
                .await
                .unwrap()
                .is_empty()
        );
        c.revoke(&uid, revocation_reason_code::CESSATION_OF_OPERATION)
            .await
            .unwrap();
        c.destroy(&uid).await.unwrap();
        c.destroy(&secret).await.unwrap();
        let gone = c.get(&uid).await.unwrap_err();
        assert!(gone.result_reason().is_some(), "{gone:?}");
        // A raw batch of two items.
        let req = c.request(vec![
            item(operation::QUERY, vec![]),
            item(operation::LOCATE, vec![]),
        ]);
        let resp = c.send(&req).await.unwrap();
        assert_eq!(resp.items.len(), 2);
        assert_eq!(resp.header.protocol_version, version);
        c.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn raw_trees_sessions_resume_and_limits_hold() {
    let pki = pki();
    let addr = serve(&pki).await;
    let conn = connector(&pki, ProtocolVersion::V1_4);
    let mut c = conn.connect(addr).await.unwrap();
    assert!(!c.resumed());
    // A tree that is not a request message still gets a KMIP answer.
    let answer = c
        .send_ttlv(&build::structure(tag::REQUEST_MESSAGE, vec![]))
        .await
        .unwrap();
    assert_eq!(answer.tag, tag::RESPONSE_MESSAGE);
    c.shutdown().await.unwrap();
    let again = conn.connect(addr).await.unwrap();
    let mut again = again;
    again.discover_versions().await.unwrap();
    assert!(
        again.resumed(),
        "the second connection resumes the first's session"
    );

    let no_resume = Connector::new(
        pki.ca.as_bytes(),
        pki.client_cert.as_bytes(),
        pki.client_key.as_bytes(),
        TlsOptions {
            resumption: false,
            ..TlsOptions::default()
        },
    )
    .unwrap();
    for _ in 0..2 {
        let mut c = no_resume.connect(addr).await.unwrap();
        c.discover_versions().await.unwrap();
        assert!(!c.resumed());
    }

    // A response longer than the client's limit is refused from its header.
    let small = Connector::new(
        pki.ca.as_bytes(),
        pki.client_cert.as_bytes(),
        pki.client_key.as_bytes(),
        TlsOptions {
            max_response_len: 64,
            ..TlsOptions::default()
        },
    )
    .unwrap();
    let mut c = small.connect(addr).await.unwrap();
    assert!(matches!(c.query().await, Err(Error::Frame(_))));
}

#[tokio::test]
async fn a_client_without_certificate_or_with_a_wrong_name_is_refused() {
    let pki = pki();
    let addr = serve(&pki).await;
    let anonymous =
        Connector::without_client_cert(pki.ca.as_bytes(), TlsOptions::default()).unwrap();
    // TLS 1.3: the refusal may arrive at the first read rather than in connect.
    match anonymous.connect(addr).await {
        Err(_) => {}
        Ok(mut c) => assert!(c.discover_versions().await.is_err()),
    }
    let wrong_name = Connector::new(
        pki.ca.as_bytes(),
        pki.client_cert.as_bytes(),
        pki.client_key.as_bytes(),
        TlsOptions {
            server_name: "kmip.example.com".into(),
            ..TlsOptions::default()
        },
    )
    .unwrap();
    assert!(wrong_name.connect(addr).await.is_err());
    assert!(matches!(
        Connector::new(
            b"",
            pki.client_cert.as_bytes(),
            pki.client_key.as_bytes(),
            TlsOptions::default()
        ),
        Err(Error::Pem { .. })
    ));
}
