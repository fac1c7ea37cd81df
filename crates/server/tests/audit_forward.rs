//! Audit forwarding (`[audit.forward]`, `kmipd::audit::forward`): an in-process kmipd sends
//! its audit records to a test collector on 127.0.0.1 port 0. Every record arrives, in order,
//! as the line in the file; with the collector down for a while nothing is lost (the backlog
//! and failure metrics move, and drain after); a restart resumes after the last record sent,
//! without sending any twice (a clean stop).
//!
//! Every wait is bounded; no assertion is about speed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::{bounded, instance};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kmipd::config::{Config, ForwardConfig, ForwardFormat};
use kmipd::{Instance, Server, ServerHandle};
use kmipd_client::{Client, Connector, TlsOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn audit_path(inst: &Instance) -> PathBuf {
    let p = inst.config().unwrap().audit.path;
    if p.is_absolute() { p } else { inst.dir.join(p) }
}

fn config(inst: &Instance, collector: SocketAddr) -> Config {
    config_with(inst, collector, ForwardFormat::JsonLines)
}

fn config_with(inst: &Instance, collector: SocketAddr, format: ForwardFormat) -> Config {
    let mut c = inst.config().unwrap();
    c.audit.forward = vec![ForwardConfig {
        name: None,
        format,
        address: format!("tcp:{collector}"),
        ca: None,
        server_name: None,
        state: None,
        batch: 512,
        retry_max: Duration::from_millis(200),
    }];
    c
}

async fn start(config: Config) -> ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    bounded("start", Server::new(config).listener(listener).start())
        .await
        .unwrap()
}

async fn connect(c: &Connector, addr: SocketAddr) -> Client {
    let mut client = bounded("connect", c.connect(addr)).await.unwrap();
    bounded("query", client.query()).await.unwrap();
    client
}

/// The audit file's lines (every record of answered requests is in it).
fn file_lines(inst: &Instance) -> Vec<String> {
    std::fs::read_to_string(audit_path(inst))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Reads lines from the forwarder's connection until `want` lines were received in all.
async fn collect(
    lines: &mut tokio::io::Lines<BufReader<TcpStream>>,
    got: &mut Vec<String>,
    want: usize,
) {
    while got.len() < want {
        match bounded("a forwarded line", lines.next_line())
            .await
            .unwrap()
        {
            Some(l) => got.push(l),
            None => panic!("the forwarder closed after {} of {want} lines", got.len()),
        }
    }
}

/// The value of `name` for the unnamed destination (`destination="default"`).
fn metric(server: &ServerHandle, name: &str) -> u64 {
    metric_of(server, name, "default")
}

/// The value of `name{destination="DESTINATION"}`.
fn metric_of(server: &ServerHandle, name: &str, destination: &str) -> u64 {
    let text = server.metrics().render();
    let series = format!("{name}{{destination=\"{destination}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("{series} not exported:\n{text}"))
        .parse()
        .unwrap()
}

fn connector(inst: &Instance) -> Connector {
    Connector::new(
        &std::fs::read(inst.cert("ca")).unwrap(),
        &std::fs::read(inst.cert("client")).unwrap(),
        &std::fs::read(inst.key("client")).unwrap(),
        TlsOptions {
            timeout: Duration::from_secs(15),
            ..TlsOptions::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_in_order_survive_an_outage_and_resume_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let inst = instance(&tmp);
    let connector = connector(&inst);
    let collector = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = collector.local_addr().unwrap();
    let server = start(config(&inst, collector_addr)).await;
    let mut c = connect(&connector, server.local_addr()).await;
    for _ in 0..5 {
        c.create_aes(128, None).await.unwrap();
    }

    // 1. Every record arrives, in order, exactly as the line in the file.
    let (stream, _) = bounded("forwarder connects", collector.accept())
        .await
        .unwrap();
    let mut lines = BufReader::new(stream).lines();
    let mut got = Vec::new();
    let want = file_lines(&inst);
    assert!(want.len() >= 6, "a Query and five Creates were audited");
    collect(&mut lines, &mut got, want.len()).await;
    assert_eq!(got, want);

    // 2. The collector goes away; requests go on and are answered (forwarding never blocks
    //    them); the backlog and the failures show it.
    drop(lines);
    drop(collector);
    for _ in 0..5 {
        c.create_aes(128, None).await.unwrap();
    }
    let mut saw_backlog = false;
    for _ in 0..300 {
        if metric(&server, "kmipd_audit_forward_backlog") > 0
            && metric(&server, "kmipd_audit_forward_failures_total") > 0
        {
            saw_backlog = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        saw_backlog,
        "backlog and failures shown while the collector is down"
    );
    // Back up on the same port: what was missed arrives, nothing twice, and the backlog
    // drains.
    let collector = TcpListener::bind(collector_addr).await.unwrap();
    let (stream, _) = bounded("forwarder reconnects", collector.accept())
        .await
        .unwrap();
    let mut lines = BufReader::new(stream).lines();
    let want = file_lines(&inst);
    collect(&mut lines, &mut got, want.len()).await;
    assert_eq!(got, want, "nothing lost or repeated across the outage");
    let mut drained = false;
    for _ in 0..300 {
        if metric(&server, "kmipd_audit_forward_backlog") == 0 {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(drained, "the backlog drains once the collector is back");
    assert!(metric(&server, "kmipd_audit_forward_last_success_seconds") > 0);

    // 3. A clean restart resumes after the last record sent: the new connection carries the
    //    new records only.
    drop(c);
    bounded("stop", server.stop()).await;
    let sent = want.len();
    let state =
        std::fs::read_to_string(format!("{}.forward", audit_path(&inst).display())).unwrap();
    assert!(
        state.starts_with(&format!("{sent} ")),
        "state file names the last record sent: {state}"
    );
    // The old connection ends with the old server.
    assert!(
        bounded("old connection ends", lines.next_line())
            .await
            .unwrap()
            .is_none()
    );
    let server = start(config(&inst, collector_addr)).await;
    let mut c = connect(&connector, server.local_addr()).await;
    for _ in 0..3 {
        c.create_aes(128, None).await.unwrap();
    }
    let (stream, _) = bounded("forwarder connects after restart", collector.accept())
        .await
        .unwrap();
    let mut lines = BufReader::new(stream).lines();
    let want = file_lines(&inst);
    let mut after = Vec::new();
    collect(&mut lines, &mut after, want.len() - sent).await;
    assert_eq!(after, want[sent..], "exactly the records after the restart");
    assert!(after[0].starts_with(&format!("{{\"seq\":{},", sent + 1)));
    drop(c);
    bounded("stop", server.stop()).await;
    assert!(
        bounded("connection ends", lines.next_line())
            .await
            .unwrap()
            .is_none(),
        "no record sent twice"
    );
}

/// Syslog over TCP: one RFC 5424 message per record, in order: `<PRI>1 TIMESTAMP HOST kmipd
/// PROCID audit [kmipd@32473 seq=".." hash=".."] LINE`, PRI authpriv (10) with severity
/// informational (6) for a success and notice (5) for a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tcp_carries_every_record_as_an_rfc5424_message() {
    let tmp = tempfile::tempdir().unwrap();
    let inst = instance(&tmp);
    let connector = connector(&inst);
    let collector = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = start(config_with(
        &inst,
        collector.local_addr().unwrap(),
        ForwardFormat::Syslog,
    ))
    .await;
    let mut c = connect(&connector, server.local_addr()).await;
    c.create_aes(128, None).await.unwrap();
    // A failure too: a Get of an object that does not exist.
    assert!(c.get("no-such-object").await.is_err());
    let (stream, _) = bounded("forwarder connects", collector.accept())
        .await
        .unwrap();
    let mut lines = BufReader::new(stream).lines();
    let want = file_lines(&inst);
    assert!(want.len() >= 3);
    let mut got = Vec::new();
    collect(&mut lines, &mut got, want.len()).await;
    for (msg, line) in got.iter().zip(&want) {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let pri = if record["status"] == "Success" {
            86
        } else {
            85
        };
        let mut f = msg.splitn(7, ' ');
        assert_eq!(f.next().unwrap(), format!("<{pri}>1"), "{msg}");
        let ts = f.next().unwrap();
        assert!(
            ts.ends_with('Z') && ts.contains('T'),
            "RFC 3339 time: {msg}"
        );
        assert!(!f.next().unwrap().is_empty(), "host name: {msg}");
        assert_eq!(f.next().unwrap(), "kmipd");
        assert_eq!(f.next().unwrap(), std::process::id().to_string());
        assert_eq!(f.next().unwrap(), "audit");
        let rest = f.next().unwrap();
        let sd = format!(
            "[kmipd@32473 seq=\"{}\" hash=\"{}\"] ",
            record["seq"],
            record["hash"].as_str().unwrap()
        );
        assert_eq!(rest.strip_prefix(&sd), Some(line.as_str()), "{msg}");
    }
    assert!(
        want.iter()
            .any(|l| l.contains("\"status\":\"OperationFailed\"")),
        "a failed item was forwarded too"
    );
    drop(c);
    bounded("stop", server.stop()).await;
}

/// Syslog over TLS: the forwarder verifies the collector's certificate against `ca` and
/// `server_name`, and every record arrives in order inside an RFC 5424 message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tls_verifies_the_collector_and_carries_every_record() {
    use rustls_pki_types::pem::PemObject;
    let tmp = tempfile::tempdir().unwrap();
    let inst = instance(&tmp);
    let connector = connector(&inst);
    // The collector presents the instance's server certificate (SAN localhost).
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(inst.cert("server-ec"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(inst.key("server-ec")).unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server_config));
    let collector = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = config_with(
        &inst,
        collector.local_addr().unwrap(),
        ForwardFormat::Syslog,
    );
    let forward = config.audit.forward.first_mut().unwrap();
    forward.address = format!("tls:{}", collector.local_addr().unwrap());
    forward.ca = Some(inst.cert("ca"));
    // First a name the certificate does not carry: the forwarder refuses the collector, sends
    // nothing and counts the failure.
    forward.server_name = Some("not-the-collector.example".to_owned());
    let mut good = config.clone();
    if let Some(f) = good.audit.forward.first_mut() {
        f.server_name = Some("localhost".to_owned());
    }
    let server = start(config).await;
    let mut c = connect(&connector, server.local_addr()).await;
    c.create_aes(128, None).await.unwrap();
    let (stream, _) = bounded("forwarder connects", collector.accept())
        .await
        .unwrap();
    assert!(
        bounded("handshake", acceptor.accept(stream)).await.is_err(),
        "the forwarder refuses a collector whose certificate lacks the name"
    );
    let mut failed = false;
    for _ in 0..300 {
        if metric(&server, "kmipd_audit_forward_failures_total") > 0 {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failed, "the refused handshake is counted");
    assert_eq!(metric(&server, "kmipd_audit_forward_acknowledged"), 0);
    drop(c);
    bounded("stop", server.stop()).await;
    // With the right name, after a restart: every record, from the first.
    let server = start(good).await;
    let mut c = connect(&connector, server.local_addr()).await;
    c.create_aes(128, None).await.unwrap();
    let mut tls = None;
    for _ in 0..10 {
        let (stream, _) = bounded("forwarder connects", collector.accept())
            .await
            .unwrap();
        // A retry of the first server may still be queued on the listener: skip it.
        if let Ok(t) = bounded("handshake", acceptor.accept(stream)).await {
            tls = Some(t);
            break;
        }
    }
    let tls = tls.expect("a handshake with the right name succeeds");
    let mut lines = BufReader::new(tls).lines();
    let want = file_lines(&inst);
    assert!(want.len() >= 2);
    let mut got = Vec::new();
    while got.len() < want.len() {
        match bounded("a forwarded line", lines.next_line())
            .await
            .unwrap()
        {
            Some(l) => got.push(l),
            None => panic!("closed after {} lines", got.len()),
        }
    }
    for (msg, line) in got.iter().zip(&want) {
        assert!(msg.starts_with("<86>1 "), "{msg}");
        assert!(msg.ends_with(&format!("] {line}")), "{msg}");
    }
    drop(c);
    bounded("stop", server.stop()).await;
}

/// Several `[[audit.forward]]` destinations are independent: with one collector down, the
/// other receives every record, while the down one's backlog and failures grow under its own
/// `destination` label and it has no position; once it is up it receives every record from
/// the first, and each destination keeps its own state file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_destination_has_its_own_position_backlog_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let inst = instance(&tmp);
    let connector = connector(&inst);
    let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // A port nobody listens on (yet): connections are refused.
    let down_addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = config(&inst, up.local_addr().unwrap());
    let mut second = config.audit.forward[0].clone();
    config.audit.forward[0].name = Some("siem".to_owned());
    second.name = Some("archive".to_owned());
    second.address = format!("tcp:{down_addr}");
    config.audit.forward.push(second);
    let server = start(config).await;
    let mut c = connect(&connector, server.local_addr()).await;
    for _ in 0..3 {
        c.create_aes(128, None).await.unwrap();
    }
    let (stream, _) = bounded("siem connects", up.accept()).await.unwrap();
    let mut siem = BufReader::new(stream).lines();
    let want = file_lines(&inst);
    let mut got = Vec::new();
    collect(&mut siem, &mut got, want.len()).await;
    assert_eq!(got, want, "the reachable destination gets every record");
    let mut seen = false;
    for _ in 0..300 {
        if metric_of(&server, "kmipd_audit_forward_backlog", "archive") > 0
            && metric_of(&server, "kmipd_audit_forward_failures_total", "archive") > 0
            && metric_of(&server, "kmipd_audit_forward_backlog", "siem") == 0
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen, "the down destination's backlog, not the other's");
    assert_eq!(
        metric_of(&server, "kmipd_audit_forward_acknowledged", "archive"),
        0
    );
    assert_eq!(
        metric_of(&server, "kmipd_audit_forward_failures_total", "siem"),
        0
    );
    // The archive comes up: it gets every record from the first.
    let archive_listener = TcpListener::bind(down_addr).await.unwrap();
    let (stream, _) = bounded("archive connects", archive_listener.accept())
        .await
        .unwrap();
    let mut archive = BufReader::new(stream).lines();
    let mut got = Vec::new();
    collect(&mut archive, &mut got, want.len()).await;
    assert_eq!(got[..], want[..], "the archive starts at the first record");
    drop(c);
    bounded("stop", server.stop()).await;
    let audit = audit_path(&inst).display().to_string();
    for name in ["siem", "archive"] {
        let state = std::fs::read_to_string(format!("{audit}.forward.{name}")).unwrap();
        let acked: usize = state.split(' ').next().unwrap().parse().unwrap();
        assert!(acked >= want.len(), "{name}: {state}");
    }
    assert!(
        !std::path::Path::new(&format!("{audit}.forward")).exists(),
        "named destinations do not use the unnamed state file"
    );
}
