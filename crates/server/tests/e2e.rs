//! End to end: kmipd started in-process on 127.0.0.1 port 0 in a temporary instance made by
//! `init`, spoken to over mutual TLS with `kmipd-client`. TLS refusals, identities isolated and
//! a grant, audit tamper detection on the server's own file, a streamed encryption across two
//! connections of one identity (refused to another), each limit, a slowloris crowd,
//! graceful shutdown with requests in flight, and a restart that keeps every object.
//!
//! Every wait is bounded (client timeouts, `tokio::time::timeout`); bounds are generous, and
//! no assertion is about speed beyond "finished within the bound".
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::bounded;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kmipd::certs::{ClientEku, ClientOptions, DevCa, KeyKind};
use kmipd::config::Config;
use kmipd::{InitOptions, Instance, Server, ServerHandle};
use kmipd_client::{Client, Connector, Error, TlsOptions, item};
use kmipd_ops::{Engine, Principal};
use kmipd_proto::enums::{operation as op, result_status};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

struct Env {
    _tmp: tempfile::TempDir,
    inst: Instance,
}

fn instance(hsm: bool) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let inst = kmipd::init_instance_with(
        &tmp.path().join("kmipd"),
        &InitOptions {
            hsm,
            ..InitOptions::default()
        },
    )
    .unwrap();
    Env { _tmp: tmp, inst }
}

impl Env {
    fn config(&self) -> Config {
        self.inst.config().unwrap()
    }

    fn read(&self, p: PathBuf) -> Vec<u8> {
        std::fs::read(p).unwrap()
    }

    fn connector(&self, who: &str) -> Connector {
        self.connector_with(who, TlsOptions::default())
    }

    fn connector_with(&self, who: &str, options: TlsOptions) -> Connector {
        Connector::new(
            &self.read(self.inst.cert("ca")),
            &self.read(self.inst.cert(who)),
            &self.read(self.inst.key(who)),
            TlsOptions {
                timeout: Duration::from_secs(15),
                ..options
            },
        )
        .unwrap()
    }

    fn ca(&self) -> DevCa {
        self.inst.ca().unwrap()
    }

    fn audit_path(&self) -> PathBuf {
        let p = self.config().audit.path;
        if p.is_absolute() {
            p
        } else {
            self.inst.dir.join(p)
        }
    }
}

async fn start(config: Config, engine: Option<Engine>) -> ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut server = Server::new(config).listener(listener);
    if let Some(e) = engine {
        server = server.engine(e);
    }
    bounded("start", server.start()).await.unwrap()
}

/// A connection that works: the first request succeeds.
async fn connect(c: &Connector, addr: SocketAddr) -> Client {
    let mut client = bounded("connect", c.connect(addr)).await.unwrap();
    bounded("query", client.query()).await.unwrap();
    client
}

/// True when the server refused this connection: at the handshake, or (TLS 1.3, where the
/// client finishes first) at the first request.
async fn refused(c: &Connector, addr: SocketAddr) -> bool {
    match bounded("connect", c.connect(addr)).await {
        Err(_) => true,
        Ok(mut client) => bounded("first request", client.query()).await.is_err(),
    }
}

fn issued_connector(env: &Env, ca: &DevCa, cn: &str, opts: &ClientOptions) -> Connector {
    let issued = ca.issue_client(cn, opts).unwrap();
    Connector::new(
        &env.read(env.inst.cert("ca")),
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
        TlsOptions {
            timeout: Duration::from_secs(15),
            ..TlsOptions::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tls_refusal() {
    let env = instance(false);
    let ca = env.ca();
    let expired = ca
        .issue_client(
            "late",
            &ClientOptions {
                not_before: time::OffsetDateTime::now_utc() - time::Duration::days(30),
                not_after: time::OffsetDateTime::now_utc() - time::Duration::days(1),
                ..ClientOptions::default()
            },
        )
        .unwrap();
    let revoked = ca
        .issue_client("revoked", &ClientOptions::default())
        .unwrap();
    let crl_path = env.inst.dir.join("certs").join("test.crl");
    std::fs::write(&crl_path, ca.crl(&[&revoked.serial]).unwrap()).unwrap();
    let mut config = env.config();
    config.tls.crls = vec![crl_path];
    let server = start(config, None).await;
    let addr = server.local_addr();

    // The good client gets through, including with session resumption and RSA-only offers.
    let good = env.connector("client");
    connect(&good, addr).await;
    let mut again = connect(&good, addr).await;
    assert!(again.resumed(), "a second connection resumes the session");
    bounded("discover", again.discover_versions())
        .await
        .unwrap();

    let ca_pem = env.read(env.inst.cert("ca"));
    let anonymous = Connector::without_client_cert(&ca_pem, TlsOptions::default()).unwrap();
    assert!(refused(&anonymous, addr).await, "no client certificate");

    let stranger = DevCa::generate("some other CA").unwrap();
    let foreign = stranger
        .issue_client("client", &ClientOptions::default())
        .unwrap();
    let unknown_ca = Connector::new(
        &ca_pem,
        foreign.cert_pem.as_bytes(),
        foreign.key_pem.as_bytes(),
        TlsOptions::default(),
    )
    .unwrap();
    assert!(refused(&unknown_ca, addr).await, "unknown CA");

    let late = Connector::new(
        &ca_pem,
        expired.cert_pem.as_bytes(),
        expired.key_pem.as_bytes(),
        TlsOptions::default(),
    )
    .unwrap();
    assert!(refused(&late, addr).await, "expired certificate");

    let wrong_eku = issued_connector(
        &env,
        &ca,
        "server-like",
        &ClientOptions {
            eku: ClientEku::ServerAuthOnly,
            ..ClientOptions::default()
        },
    );
    assert!(refused(&wrong_eku, addr).await, "serverAuth-only EKU");

    let crl_listed = Connector::new(
        &ca_pem,
        revoked.cert_pem.as_bytes(),
        revoked.key_pem.as_bytes(),
        TlsOptions::default(),
    )
    .unwrap();
    assert!(refused(&crl_listed, addr).await, "revoked by CRL");

    // An RSA client certificate from the right CA is fine; so is TLS for the good client after
    // all those refusals.
    let rsa = issued_connector(
        &env,
        &ca,
        "rsa-client",
        &ClientOptions {
            key: KeyKind::Rsa2048,
            ..ClientOptions::default()
        },
    );
    connect(&rsa, addr).await;
    connect(&good, addr).await;
    bounded("stop", server.stop()).await;
}

/// A CRL rewritten while the server runs applies from `reload_tls` (SIGHUP) on: the revoked
/// client is refused, even with a session it could have resumed; a broken file is refused and
/// changes nothing; established connections and other clients go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_tls_applies_a_new_crl_to_new_connections() {
    let env = instance(false);
    let ca = env.ca();
    let victim = ca
        .issue_client("victim", &ClientOptions::default())
        .unwrap();
    let other = ca.issue_client("other", &ClientOptions::default()).unwrap();
    let crl_path = env.inst.dir.join("certs").join("reload.crl");
    std::fs::write(&crl_path, ca.crl(&[&other.serial]).unwrap()).unwrap();
    let mut config = env.config();
    config.tls.crls = vec![crl_path.clone()];
    let server = start(config, None).await;
    let addr = server.local_addr();
    let victim_tls = Connector::new(
        &env.read(env.inst.cert("ca")),
        victim.cert_pem.as_bytes(),
        victim.key_pem.as_bytes(),
        TlsOptions {
            timeout: Duration::from_secs(15),
            ..TlsOptions::default()
        },
    )
    .unwrap();
    let mut established = connect(&victim_tls, addr).await;
    assert!(
        connect(&victim_tls, addr).await.resumed(),
        "a session to resume"
    );
    let good = env.connector("client");
    connect(&good, addr).await;

    // Not a CRL: the reload fails and the old CRL stays in force.
    std::fs::write(&crl_path, "not a CRL").unwrap();
    assert!(server.reload_tls().is_err());
    connect(&victim_tls, addr).await;

    std::fs::write(&crl_path, ca.crl(&[&other.serial, &victim.serial]).unwrap()).unwrap();
    server.reload_tls().unwrap();
    assert!(
        refused(&victim_tls, addr).await,
        "revoked by the reloaded CRL"
    );
    // The connection made before the reload is not cut; the good client gets a full
    // handshake, then resumes again.
    bounded("established", established.query()).await.unwrap();
    assert!(
        !connect(&good, addr).await.resumed(),
        "old sessions are not resumed"
    );
    assert!(connect(&good, addr).await.resumed());
    bounded("stop", server.stop()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_identities_are_isolated_then_a_grant_and_its_revocation() {
    let env = instance(false);
    let engine = Engine::in_memory();
    let server = start(env.config(), Some(engine.clone())).await;
    let addr = server.local_addr();
    let mut alice = connect(&env.connector("client"), addr).await;
    let mut bob = connect(&env.connector("client2"), addr).await;

    let a = alice.create_aes(256, Some("alice-key")).await.unwrap();
    let b = bob.create_aes(256, Some("bob-key")).await.unwrap();
    let not_found = |e: Error| {
        let nobody = e.result_reason();
        assert!(matches!(e, Error::Kmip { .. }), "{e:?}");
        nobody
    };
    // Reference: what an identifier nobody used gets.
    let absent = not_found(bob.get("no-such-object").await.unwrap_err());
    assert_eq!(not_found(bob.get(&a).await.unwrap_err()), absent);
    assert_eq!(not_found(bob.get_attributes(&a).await.unwrap_err()), absent);
    assert_eq!(not_found(bob.destroy(&a).await.unwrap_err()), absent);
    assert!(bob.locate_by_name("alice-key").await.unwrap().is_empty());
    assert_eq!(bob.locate(&[]).await.unwrap(), vec![b.clone()]);
    assert_eq!(not_found(alice.get(&b).await.unwrap_err()), absent);
    assert!(alice.locate_by_name("bob-key").await.unwrap().is_empty());
    // Alice's key survived bob's attempts.
    assert_eq!(alice.get_key_bytes(&a).await.unwrap().len(), 32);

    // The administrator sees both.
    let mut admin = connect(&env.connector("admin"), addr).await;
    let mut all = admin.locate(&[]).await.unwrap();
    all.sort();
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(all, both);

    // Alice (the owner) grants Get and Locate to client2; the grant works over the wire.
    engine
        .grant(
            &Principal::new("client"),
            &a,
            "client2",
            &[op::GET, op::LOCATE],
        )
        .unwrap();
    assert_eq!(
        bob.locate_by_name("alice-key").await.unwrap(),
        vec![a.clone()]
    );
    assert_eq!(bob.get_key_bytes(&a).await.unwrap().len(), 32);
    assert_eq!(not_found(bob.destroy(&a).await.unwrap_err()), absent);
    assert_eq!(not_found(bob.get_attributes(&a).await.unwrap_err()), absent);
    // Revoked: absent again.
    assert!(
        engine
            .revoke_grant(&Principal::new("client"), &a, "client2", None)
            .unwrap()
    );
    assert_eq!(not_found(bob.get(&a).await.unwrap_err()), absent);
    assert!(bob.locate_by_name("alice-key").await.unwrap().is_empty());
    bounded("stop", server.stop()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_audit_file_records_every_item_and_tampering_is_caught() {
    let env = instance(false);
    let server = start(env.config(), None).await;
    let addr = server.local_addr();
    let mut c = connect(&env.connector("client"), addr).await;
    let secret = b"very-secret-password-bytes";
    let uid = c.register_secret(secret, Some("s")).await.unwrap();
    c.get(&uid).await.unwrap();
    assert!(c.get("missing").await.is_err());
    let batch = c.request(vec![item(op::QUERY, vec![]), item(op::LOCATE, vec![])]);
    c.send(&batch).await.unwrap();
    bounded("stop", server.stop()).await;

    let path = env.audit_path();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("very-secret-password-bytes"));
    assert!(!text.contains(&kmipd_hex(secret)));
    // connect's Query, Register, Get, failed Get, Query+Locate.
    let n = kmipd::audit::verify(&path).unwrap();
    assert_eq!(n, 6, "{text}");
    assert!(text.contains("\"identity\":\"client\""));
    assert!(text.contains(&uid));

    let lines: Vec<&str> = text.lines().collect();
    let write = |ls: &[String]| std::fs::write(&path, ls.join("\n") + "\n").unwrap();
    let owned = |ls: &[&str]| ls.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();

    let mut edited = owned(&lines);
    edited[2] = edited[2].replace("\"client\"", "\"client2\"");
    write(&edited);
    let e = kmipd::audit::verify(&path).unwrap_err();
    assert!(e.to_string().contains("record 3 was edited"), "{e}");

    let mut removed = owned(&lines);
    removed.remove(3);
    write(&removed);
    let e = kmipd::audit::verify(&path).unwrap_err();
    assert!(e.to_string().contains("record 4 was removed"), "{e}");

    let mut reordered = owned(&lines);
    reordered.swap(1, 2);
    write(&reordered);
    let e = kmipd::audit::verify(&path).unwrap_err();
    assert!(e.to_string().contains("reordered"), "{e}");

    write(&owned(&lines));
    assert_eq!(kmipd::audit::verify(&path).unwrap(), 6);
}

/// The items of a payload with tag `t`, as bytes.
fn bytes_in(items: &[kmipd_ttlv::Ttlv], t: kmipd_ttlv::Tag) -> Option<Vec<u8>> {
    items
        .iter()
        .find(|i| i.tag == t)
        .and_then(|i| kmipd_proto::reader::as_bytes(i).ok())
        .map(<[u8]>::to_vec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_encryption_spans_connections_of_its_identity_only_and_is_audited() {
    use kmipd_proto::{build, enums::result_reason, tag};
    let env = instance(false);
    let server = start(env.config(), None).await;
    let addr = server.local_addr();
    let mut first = connect(&env.connector("client"), addr).await;
    let mut second = connect(&env.connector("client"), addr).await;
    let mut other = connect(&env.connector("client2"), addr).await;
    let uid = first.create_aes(256, None).await.unwrap();
    first.activate(&uid).await.unwrap();
    let plain = b"a message longer than one AES block, sent in two parts".to_vec();
    let whole = first.encrypt(&uid, &plain).await.unwrap();

    let (p1, p2) = plain.split_at(20);
    let opened = first
        .call(
            op::ENCRYPT,
            vec![
                build::unique_identifier(&uid),
                build::gcm_parameters(16),
                build::bytes(tag::DATA, p1.to_vec()),
                build::bytes(tag::IV_COUNTER_NONCE, whole.iv.clone()),
                build::boolean(tag::INIT_INDICATOR, true),
            ],
        )
        .await
        .unwrap();
    let value = bytes_in(&opened, tag::CORRELATION_VALUE).expect("a Correlation Value");
    let mut streamed = bytes_in(&opened, tag::DATA).unwrap_or_default();
    let part = |data: &[u8], last: bool| {
        let mut p = vec![
            build::unique_identifier(&uid),
            build::bytes(tag::DATA, data.to_vec()),
            build::bytes(tag::CORRELATION_VALUE, value.clone()),
        ];
        if last {
            p.push(build::boolean(tag::FINAL_INDICATOR, true));
        }
        p
    };
    // Another identity presenting the value: as if it named nothing.
    let refused = other.call(op::ENCRYPT, part(p2, true)).await.unwrap_err();
    assert_eq!(
        refused.result_reason(),
        Some(result_reason::INVALID_CORRELATION_VALUE),
        "{refused:?}"
    );
    // The same identity continues on another connection.
    let last = second.call(op::ENCRYPT, part(p2, true)).await.unwrap();
    streamed.extend(bytes_in(&last, tag::DATA).unwrap_or_default());
    assert_eq!(streamed, whole.data);
    assert_eq!(
        bytes_in(&last, tag::AUTHENTICATED_ENCRYPTION_TAG),
        Some(whole.tag.clone())
    );
    bounded("stop", server.stop()).await;

    // Three connections' Queries, Create, Activate, Encrypt, and the three streamed parts (one
    // refused).
    let path = env.audit_path();
    assert_eq!(kmipd::audit::verify(&path).unwrap(), 9);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"identity\":\"client2\""), "{text}");
}

fn kmipd_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_limit_refuses_with_its_reason() {
    let env = instance(false);
    let mut config = env.config();
    config.limits.max_message_size = 4096;
    config.limits.max_batch_items = 4;
    config.limits.max_connections = 6;
    config.limits.max_connections_per_identity = 2;
    config.limits.idle_timeout = Duration::from_secs(2);
    let server = start(config, None).await;
    let addr = server.local_addr();
    let client = env.connector("client");

    // Oversized message: refused from its header (no body ever sent), then closed.
    let mut c = connect(&client, addr).await;
    let header = [0x42, 0x00, 0x78, 0x01, 0x00, 0x10, 0x00, 0x00]; // Request Message, 1 MiB
    c.send_bytes(&header).await.unwrap();
    match bounded("oversize answer", c.read_response()).await {
        Ok(tree) => {
            let m = kmipd_proto::message::ResponseMessage::from_ttlv(&tree).unwrap();
            assert_eq!(m.items[0].result_status, result_status::OPERATION_FAILED);
            assert!(bounded("closed", c.query()).await.is_err(), "closed after");
        }
        Err(e) => assert!(!matches!(e, Error::Timeout(_)), "{e:?}"),
    }
    drop(c);

    // Batch item cap: refused with a KMIP error; the connection stays usable.
    let mut c = connect(&client, addr).await;
    let five = c.request((0..5).map(|_| item(op::QUERY, vec![])).collect());
    let r = bounded("batch", c.send(&five)).await.unwrap();
    assert!(
        r.items
            .iter()
            .all(|i| i.result_status == result_status::OPERATION_FAILED),
        "{r:?}"
    );
    let four = c.request((0..4).map(|_| item(op::QUERY, vec![])).collect());
    let r = bounded("batch", c.send(&four)).await.unwrap();
    assert!(
        r.items
            .iter()
            .all(|i| i.result_status == result_status::SUCCESS)
    );

    // Per-identity cap: client has `c` open; a second is fine, a third is refused, and another
    // identity still gets in.
    let _c2 = connect(&client, addr).await;
    assert!(refused(&client, addr).await, "per-identity cap");
    let other = env.connector("client2");
    let _o1 = connect(&other, addr).await;
    let _o2 = connect(&other, addr).await;
    let admin = env.connector("admin");
    let _a1 = connect(&admin, addr).await;
    drop((_c2, _o1, _o2, _a1));
    drop(c);

    // Idle timeout: a connection left idle is closed by the server.
    let mut idle = connect(&client, addr).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        bounded("after idle", idle.query()).await.is_err(),
        "idle timeout"
    );
    bounded("stop", server.stop()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_connection_cap_refuses_the_next_connection() {
    let env = instance(false);
    let mut config = env.config();
    config.limits.max_connections = 3;
    let server = start(config, None).await;
    let addr = server.local_addr();
    let c = env.connector("client");
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(connect(&c, addr).await);
    }
    assert!(
        refused(&env.connector("client2"), addr).await,
        "over the total cap"
    );
    drop(open);
    // Slots free again (the server notices the closes within the bound).
    let mut ok = false;
    for _ in 0..50 {
        if !refused(&c, addr).await {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "connections accepted again once others closed");
    bounded("stop", server.stop()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_crowd_does_not_hold_up_a_normal_client() {
    let env = instance(false);
    let server = start(env.config(), None).await;
    let addr = server.local_addr();
    // 64 connections trickling a TLS ClientHello one byte at a time.
    let stop = tokio_util_like_flag();
    let mut trickles = Vec::new();
    for _ in 0..64 {
        let stop = stop.clone();
        trickles.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return;
            };
            let hello = [
                0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ];
            for b in hello.iter().cycle().take(200) {
                if stop.load(std::sync::atomic::Ordering::Relaxed)
                    || s.write_all(&[*b]).await.is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    // And 16 authenticated connections trickling a request body.
    let client = env.connector("client2");
    for _ in 0..16 {
        let stop = stop.clone();
        let mut c = connect(&client, addr).await;
        trickles.push(tokio::spawn(async move {
            let _ = c
                .send_bytes(&[0x42, 0x00, 0x78, 0x01, 0x00, 0x00, 0x01, 0x00])
                .await;
            for _ in 0..100 {
                if stop.load(std::sync::atomic::Ordering::Relaxed)
                    || c.send_bytes(&[0]).await.is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let normal = env.connector("client");
    bounded("normal client amid slowloris", async {
        let mut c = connect(&normal, addr).await;
        for i in 0..20 {
            let uid = c.create_aes(128, Some(&format!("k{i}"))).await.unwrap();
            c.get(&uid).await.unwrap();
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in trickles {
        let _ = bounded("trickler", t).await;
    }
    bounded("stop", server.stop()).await;
}

fn tokio_util_like_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false))
}

/// SoftHSM2 reads `SOFTHSM2_CONF` once per process, so an instance with a token runs in a child
/// process of this test binary started with the variable set (as in `crates/hsm/tests`).
#[test]
fn shutdown_finishes_requests_in_flight_and_a_restart_keeps_every_object() {
    const NAME: &str = "shutdown_finishes_requests_in_flight_and_a_restart_keeps_every_object";
    if let Some(dir) = std::env::var_os(CHILD_DIR_ENV) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(shutdown_and_restart(PathBuf::from(dir)));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap().join("kmipd");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, &dir)
        .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("child process did not finish within 240 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        status.success() && out.contains("1 passed"),
        "child failed ({status}):\n--- stdout\n{out}\n--- stderr\n{err}"
    );
}

const CHILD_DIR_ENV: &str = "KMIPD_E2E_CHILD_DIR";

async fn shutdown_and_restart(dir: PathBuf) {
    let inst = kmipd::init_instance_with(&dir, &InitOptions::default()).unwrap();
    let env = Env {
        _tmp: tempfile::tempdir().unwrap(),
        inst,
    };
    let server = start(env.config(), None).await;
    let addr = server.local_addr();
    let connector = env.connector("client");
    // Some objects first.
    let mut c = connect(&connector, addr).await;
    let mut kept = Vec::new();
    for i in 0..5 {
        kept.push(
            c.create_aes(256, Some(&format!("before-{i}")))
                .await
                .unwrap(),
        );
    }
    let secret = c.register_secret(b"pw", Some("pw")).await.unwrap();
    kept.push(secret.clone());

    // Four clients create keys in a loop while the server is told to stop.
    let mut workers = Vec::new();
    for w in 0..4 {
        let connector = connector.clone();
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            let Ok(mut c) = connector.connect(addr).await else {
                return (done, None);
            };
            for i in 0..10_000 {
                match c.create_aes(128, Some(&format!("w{w}-{i}"))).await {
                    Ok(uid) => done.push(uid),
                    Err(e) => return (done, Some(e)),
                }
            }
            (done, None)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    bounded("graceful stop", server.stop()).await;
    for w in workers {
        let (done, err) = bounded("worker", w).await.unwrap();
        kept.extend(done);
        // The end is a closed connection, never a torn or garbled response.
        if let Some(e) = err {
            assert!(
                matches!(e, Error::Io(_)),
                "a request cut by shutdown fails as a closed connection: {e:?}"
            );
        }
    }
    assert!(kept.len() > 6, "the workers got answers before the stop");
    // After the stop, nobody is served.
    assert!(
        bounded("after stop", connector.connect(addr))
            .await
            .is_err()
            || refused(&connector, addr).await
    );

    // Restart on the same instance: every acknowledged object is there.
    let server = start(env.config(), None).await;
    let addr = server.local_addr();
    let mut c = connect(&connector, addr).await;
    for uid in &kept {
        bounded("get after restart", c.get(uid))
            .await
            .unwrap_or_else(|e| panic!("object {uid} lost across restart: {e:?}"));
    }
    assert_eq!(&*c.get_key_bytes(&secret).await.unwrap(), b"pw");
    assert_eq!(
        c.locate_by_name("before-3").await.unwrap(),
        vec![kept[3].clone()]
    );
    // The audit chain survived the restart too.
    bounded("stop", server.stop()).await;
    assert!(kmipd::audit::verify(env.audit_path()).unwrap() >= kept.len());
}

/// The Unique Identifier of a response payload's items.
fn uid_of(items: &[kmipd_ttlv::Ttlv]) -> String {
    items
        .iter()
        .find(|i| i.tag == kmipd_proto::tag::UNIQUE_IDENTIFIER)
        .and_then(|i| match &i.value {
            kmipd_ttlv::Value::TextString(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certify_over_the_wire_issues_with_the_issuing_ca_which_tls_does_not_trust() {
    use kmipd_proto::build;
    use kmipd_proto::enums::{
        certificate_request_type, cryptographic_algorithm, key_format_type, object_type,
    };
    use kmipd_proto::tag;
    use openssl::x509::X509;

    let env = instance(false);
    // `init` configured an issuing CA of its own, unlike the client CA.
    let issuing = X509::from_pem(&env.read(env.inst.cert("issuing-ca"))).unwrap();
    let client_ca = X509::from_pem(&env.read(env.inst.cert("ca"))).unwrap();
    assert_ne!(issuing.to_der().unwrap(), client_ca.to_der().unwrap());
    let server = start(env.config(), None).await;
    let addr = server.local_addr();
    let mut alice = connect(&env.connector("client"), addr).await;

    let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let pk = alice
        .register(
            object_type::PUBLIC_KEY,
            build::structure(
                tag::PUBLIC_KEY,
                vec![build::byte_key_block(
                    key_format_type::X_509,
                    key.public_key_to_der().unwrap(),
                    Some((cryptographic_algorithm::RSA, 2048)),
                )],
            ),
            &[],
        )
        .await
        .unwrap();
    let mut name = openssl::x509::X509Name::builder().unwrap();
    name.append_entry_by_text("CN", "client").unwrap();
    let mut req = openssl::x509::X509ReqBuilder::new().unwrap();
    req.set_subject_name(&name.build()).unwrap();
    req.set_pubkey(&key).unwrap();
    req.sign(&key, openssl::hash::MessageDigest::sha256())
        .unwrap();
    let csr = req.build().to_der().unwrap();
    let certify = |who_key: &str| {
        vec![
            build::unique_identifier(who_key),
            build::enumeration(
                tag::CERTIFICATE_REQUEST_TYPE,
                certificate_request_type::PKCS_10,
            ),
            build::bytes(tag::CERTIFICATE_REQUEST_VALUE, csr.clone()),
        ]
    };
    // Another identity cannot certify alice's key.
    let mut bob = connect(&env.connector("client2"), addr).await;
    assert!(bob.call(op::CERTIFY, certify(&pk)).await.is_err());
    let cert_uid = uid_of(&alice.call(op::CERTIFY, certify(&pk)).await.unwrap());
    let got = alice.get(&cert_uid).await.unwrap();
    let mut der = None;
    for i in &got {
        i.walk(&mut |item, _| {
            if item.tag == tag::CERTIFICATE_VALUE
                && let kmipd_ttlv::Value::ByteString(b) = &item.value
            {
                der = Some(b.clone());
            }
        });
    }
    let cert = X509::from_der(&der.unwrap()).unwrap();
    assert!(cert.verify(&issuing.public_key().unwrap()).unwrap());
    assert!(cert.public_key().unwrap().public_eq(&key));
    // A certificate for the subject "client" with its key does not open a TLS connection:
    // the server trusts the client CA only.
    let forged = Connector::new(
        &env.read(env.inst.cert("ca")),
        &cert.to_pem().unwrap(),
        &key.private_key_to_pem_pkcs8().unwrap(),
        TlsOptions {
            timeout: Duration::from_secs(15),
            ..TlsOptions::default()
        },
    )
    .unwrap();
    assert!(refused(&forged, addr).await);
    bounded("stop", server.stop()).await;
}
