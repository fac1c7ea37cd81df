//! The KMIP profile TLS suites through OpenSSL (`tls.profile_suites`), over the wire with
//! `openssl s_client`: each profile suite completes a KMIP Query when the option is on and is
//! refused when it is off; a modern client still gets rustls; and the same refusals (another
//! CA, expired, revoked, serverAuth-only EKU, no certificate) hold on both TLS paths, each
//! checked against a good certificate on the same path.
//!
//! Two in-process servers on 127.0.0.1 port 0 (on and off), `s_client` processes with bounded
//! waits (a reader thread and a channel; the process is killed at the end).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::{BOUND, bounded};

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kmipd::certs::{ClientEku, ClientOptions, DevCa};
use kmipd::{Server, ServerHandle};
use kmipd_client::{Connector, TlsOptions, item};
use kmipd_ops::Engine;
use kmipd_proto::build;
use kmipd_proto::enums::{operation as op, query_function, result_status};
use kmipd_proto::message::{ProtocolVersion, RequestMessage, ResponseMessage};
use kmipd_proto::tag;
use kmipd_ttlv::{HEADER_LEN, Limits};
use tokio::net::TcpListener;

/// The profile suites OpenSSL serves (OpenSSL names) that rustls cannot: every one must work.
const SUITES: [&str; 8] = [
    "AES128-SHA256",
    "AES256-SHA256",
    "DHE-RSA-AES128-SHA256",
    "DHE-RSA-AES256-SHA256",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-RSA-AES256-SHA384",
];

fn query_bytes() -> Vec<u8> {
    let request = RequestMessage::new(
        ProtocolVersion::new(1, 2),
        vec![item(
            op::QUERY,
            vec![build::enumeration(
                tag::QUERY_FUNCTION,
                query_function::QUERY_OPERATIONS,
            )],
        )],
    );
    kmipd_ttlv::encode_to_vec(&request.to_ttlv()).unwrap()
}

/// A client certificate and key as files.
struct Creds {
    cert: PathBuf,
    key: PathBuf,
}

/// `openssl s_client` sends a Query with `cipher` (TLS 1.2) and the client certificate
/// `creds` (none: no certificate); `Ok` with the response when the server answered one.
fn s_client(
    addr: SocketAddr,
    ca: &Path,
    cipher: Option<&str>,
    creds: Option<&Creds>,
) -> Result<ResponseMessage, String> {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-quiet", "-tls1_2", "-connect"])
        .arg(addr.to_string())
        .arg("-CAfile")
        .arg(ca)
        .arg("-verify_return_error");
    if let Some(c) = cipher {
        cmd.args(["-cipher", c]);
    }
    if let Some(c) = creds {
        cmd.arg("-cert").arg(&c.cert).arg("-key").arg(&c.key);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client (scripts/setup.sh installs openssl)");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut header = [0u8; HEADER_LEN];
        let result = stdout.read_exact(&mut header).and_then(|()| {
            let frame = kmipd_ttlv::frame_len(&header, &Limits::default())
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let mut message = header.to_vec();
            message.resize(frame.total_len, 0);
            stdout.read_exact(&mut message[HEADER_LEN..])?;
            Ok(message)
        });
        let _ = tx.send(result);
    });
    // A refused handshake may close the pipe before the request is written.
    let _ = stdin.write_all(&query_bytes());
    let _ = stdin.flush();
    let got = rx.recv_timeout(BOUND);
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err);
    match got {
        Ok(Ok(bytes)) => {
            let tree = kmipd_ttlv::decode(&bytes, &Limits::default()).map_err(|e| e.to_string())?;
            ResponseMessage::from_ttlv(&tree).map_err(|e| e.to_string())
        }
        Ok(Err(e)) => Err(format!("no response ({e}): {}", err.trim())),
        Err(_) => panic!("s_client: nothing within {BOUND:?}"),
    }
}

fn answered(r: &Result<ResponseMessage, String>) -> bool {
    r.as_ref()
        .is_ok_and(|m| m.items.first().map(|i| i.result_status) == Some(result_status::SUCCESS))
}

/// True when the rustls path refused this client (at the handshake, or at the first request in
/// TLS 1.3).
async fn rustls_refused(c: &Connector, addr: SocketAddr) -> bool {
    match bounded("connect", c.connect(addr)).await {
        Err(_) => true,
        Ok(mut client) => bounded("query", client.query()).await.is_err(),
    }
}

async fn start(config: kmipd::Config) -> ServerHandle {
    bounded(
        "start",
        Server::new(config)
            .listener(TcpListener::bind("127.0.0.1:0").await.unwrap())
            .engine(Engine::in_memory())
            .start(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_suites_through_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let inst = common::instance(&tmp);
    let ca = inst.ca().unwrap();
    let ca_pem = inst.cert("ca");
    let files = tmp.path().join("creds");
    std::fs::create_dir(&files).unwrap();
    let write = |name: &str, cert: &str, key: &str| {
        let c = Creds {
            cert: files.join(format!("{name}.pem")),
            key: files.join(format!("{name}.key")),
        };
        std::fs::write(&c.cert, cert).unwrap();
        std::fs::write(&c.key, key).unwrap();
        c
    };
    let issue = |ca: &DevCa, name: &str, opts: &ClientOptions| {
        let i = ca.issue_client(name, opts).unwrap();
        (write(name, &i.cert_pem, &i.key_pem), i)
    };
    let good = Creds {
        cert: inst.cert("client"),
        key: inst.key("client"),
    };
    let (revoked, revoked_issued) = issue(&ca, "revoked", &ClientOptions::default());
    let (expired, _) = issue(
        &ca,
        "late",
        &ClientOptions {
            not_before: time::OffsetDateTime::now_utc() - time::Duration::days(30),
            not_after: time::OffsetDateTime::now_utc() - time::Duration::days(1),
            ..ClientOptions::default()
        },
    );
    let (server_eku, _) = issue(
        &ca,
        "server-like",
        &ClientOptions {
            eku: ClientEku::ServerAuthOnly,
            ..ClientOptions::default()
        },
    );
    let stranger = DevCa::generate("some other CA").unwrap();
    let (foreign, _) = issue(&stranger, "client", &ClientOptions::default());
    let crl = inst.dir.join("certs").join("test.crl");
    std::fs::write(&crl, ca.crl(&[&revoked_issued.serial]).unwrap()).unwrap();

    let mut config = inst.config().unwrap();
    config.tls.crls = vec![crl];
    // Two servers on one instance: no admin socket, an audit file each.
    config.admin.enabled = false;
    let mut on = config.clone();
    on.tls.profile_suites = true;
    on.audit.path = tmp.path().join("audit-on.log");
    let off = start(config).await;
    let on = start(on).await;

    // On: every profile suite completes a Query through OpenSSL; off: each is refused.
    for suite in SUITES {
        let r = s_client(on.local_addr(), &ca_pem, Some(suite), Some(&good));
        assert!(answered(&r), "{suite} with profile_suites on: {r:?}");
        let r = s_client(off.local_addr(), &ca_pem, Some(suite), Some(&good));
        assert!(r.is_err(), "{suite} with profile_suites off: {r:?}");
    }
    let metrics = on.metrics().render();
    for (version, suite) in [
        ("TLSv1.2", "TLS_RSA_WITH_AES_128_CBC_SHA256"),
        ("TLSv1.2", "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256"),
        ("TLSv1.2", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"),
    ] {
        let line = format!(
            "kmipd_tls_connections_total{{library=\"openssl\",version=\"{version}\",suite=\"{suite}\"}} 1"
        );
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }
    assert!(!metrics.contains("library=\"rustls\""), "{metrics}");

    // A modern client still gets rustls, with the option on: kmipd-client (TLS 1.3) and
    // s_client with its default suites (TLS 1.2, ECDHE-AEAD).
    let read = |p: PathBuf| std::fs::read(p).unwrap();
    let connector = |cert: &Creds| {
        Connector::new(
            &read(ca_pem.clone()),
            &read(cert.cert.clone()),
            &read(cert.key.clone()),
            TlsOptions {
                timeout: Duration::from_secs(15),
                ..TlsOptions::default()
            },
        )
        .unwrap()
    };
    let mut modern = bounded("connect", connector(&good).connect(on.local_addr()))
        .await
        .unwrap();
    bounded("query", modern.query()).await.unwrap();
    let r = s_client(on.local_addr(), &ca_pem, None, Some(&good));
    assert!(answered(&r), "s_client default suites: {r:?}");
    let metrics = on.metrics().render();
    assert!(
        metrics.contains("kmipd_tls_connections_total{library=\"rustls\",version=\"TLSv1.3\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("kmipd_tls_connections_total{library=\"rustls\",version=\"TLSv1.2\""),
        "{metrics}"
    );

    // The same refusals on both paths (rustls: kmipd-client; OpenSSL: s_client with a profile
    // suite), each path first shown to accept the good certificate.
    assert!(!rustls_refused(&connector(&good), on.local_addr()).await);
    assert!(answered(&s_client(
        on.local_addr(),
        &ca_pem,
        Some("AES128-SHA256"),
        Some(&good)
    )));
    for (what, creds) in [
        ("another CA", &foreign),
        ("expired", &expired),
        ("revoked by CRL", &revoked),
        ("serverAuth-only EKU", &server_eku),
    ] {
        assert!(
            rustls_refused(&connector(creds), on.local_addr()).await,
            "rustls served a client certificate: {what}"
        );
        let r = s_client(on.local_addr(), &ca_pem, Some("AES128-SHA256"), Some(creds));
        assert!(
            r.is_err(),
            "OpenSSL served a client certificate: {what}: {r:?}"
        );
    }
    let anonymous =
        Connector::without_client_cert(&read(ca_pem.clone()), TlsOptions::default()).unwrap();
    assert!(rustls_refused(&anonymous, on.local_addr()).await);
    let r = s_client(on.local_addr(), &ca_pem, Some("AES128-SHA256"), None);
    assert!(
        r.is_err(),
        "OpenSSL served a client without a certificate: {r:?}"
    );

    drop(modern);
    bounded("stop on", on.stop()).await;
    bounded("stop off", off.stop()).await;
}
