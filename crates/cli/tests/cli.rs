//! The real `kmip` binary against a real kmipd: one server (in-process, memory store, on
//! 127.0.0.1 port 0) shared by every test of this file, each test with its own profile folder
//! and a cleared environment. Asserts what scripts rely on: the exact command forms of issue
//! 15, their output, the JSON shape, each exit code, the 0600 mode of files with key material.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value as Json;

struct Shared {
    _runtime: tokio::runtime::Runtime,
    _tmp: tempfile::TempDir,
    addr: SocketAddr,
    inst: kmipd::Instance,
}

/// The one server of this file, started at first use.
fn server() -> &'static Shared {
    static SERVER: OnceLock<Shared> = OnceLock::new();
    SERVER.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let inst = kmipd::init_instance_with(
            &tmp.path().join("kmipd"),
            &kmipd::InitOptions {
                hsm: false,
                ..kmipd::InitOptions::default()
            },
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = inst.config().unwrap();
        let handle = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tokio::time::timeout(
                Duration::from_secs(30),
                kmipd::Server::new(config).listener(listener).start(),
            )
            .await
            .expect("server start within 30 s")
            .unwrap()
        });
        let addr = handle.local_addr();
        // The handle stays alive with the runtime for the whole test binary.
        std::mem::forget(handle);
        Shared {
            _runtime: runtime,
            _tmp: tmp,
            addr,
            inst,
        }
    })
}

/// A folder of its own for one test's profile file.
struct Home(tempfile::TempDir);

impl Home {
    fn new() -> Home {
        Home(tempfile::tempdir().unwrap())
    }

    /// `kmip` with only this folder as its environment (no KMIP_* from the caller).
    fn kmip(&self) -> Command {
        let mut c = Command::cargo_bin("kmip").unwrap();
        c.env_clear()
            .env("HOME", self.0.path())
            .env("XDG_CONFIG_HOME", self.0.path().join("config"))
            .current_dir(self.0.path())
            .timeout(Duration::from_secs(60));
        c
    }

    /// `kmip` with the connection flags of the dev client identity.
    fn kmip_as(&self, who: &str) -> Command {
        let s = server();
        let mut c = self.kmip();
        c.arg("--server")
            .arg(s.addr.to_string())
            .arg("--ca")
            .arg(s.inst.cert("ca"))
            .arg("--cert")
            .arg(s.inst.cert(who))
            .arg("--key")
            .arg(s.inst.key(who));
        c
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(mut c: Command, args: &[&str]) -> Out {
    let o = c.args(args).output().unwrap();
    Out {
        code: o.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(o.stdout).unwrap(),
        stderr: String::from_utf8(o.stderr).unwrap(),
    }
}

/// Runs and requires success; returns standard output.
fn ok(c: Command, args: &[&str]) -> String {
    let o = run(c, args);
    assert_eq!(o.code, 0, "kmip {args:?} failed: {}", o.stderr);
    o.stdout
}

fn json(c: Command, args: &[&str]) -> Json {
    serde_json::from_str(&ok(c, args)).unwrap()
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[test]
fn the_scripted_forms_of_the_issue_work_as_written() {
    let h = Home::new();
    let name = unique("k");
    let created = ok(
        h.kmip_as("client"),
        &[
            "create",
            "--algorithm",
            "AES",
            "--length",
            "256",
            "--name",
            &name,
            "--quiet",
        ],
    );
    let uid = created.trim().to_owned();
    assert!(
        !uid.is_empty() && !uid.contains(char::is_whitespace),
        "{created:?}"
    );
    assert_eq!(created, format!("{uid}\n"), "only the identifier");

    let found = ok(h.kmip_as("client"), &["locate", "--name", &name, "--quiet"]);
    assert_eq!(found, format!("{uid}\n"));

    let shown = json(h.kmip_as("client"), &["show", &uid, "--json"]);
    assert_eq!(shown["unique_identifier"], uid.as_str());
    assert_eq!(shown["object_type"], "SymmetricKey");
    assert_eq!(shown["state"], "PreActive");
    assert_eq!(shown["cryptographic_algorithm"], "AES");
    assert_eq!(shown["cryptographic_length"], 256);
    assert_eq!(shown["names"], serde_json::json!([name]));
    assert_eq!(shown["attributes"]["Name"], serde_json::json!([name]));
    assert_eq!(
        shown["attributes"]["CryptographicUsageMask"],
        serde_json::json!(["Encrypt|Decrypt"])
    );

    let state = |h: &Home| json(h.kmip_as("client"), &["show", &uid, "--json"])["state"].clone();
    ok(h.kmip_as("client"), &["activate", &uid]);
    assert_eq!(state(&h), "Active");
    ok(
        h.kmip_as("client"),
        &["revoke", &uid, "--reason", "key-compromise"],
    );
    assert_eq!(state(&h), "Compromised");
    ok(h.kmip_as("client"), &["destroy", &uid]);
    assert_eq!(state(&h), "DestroyedCompromised");

    // A destroyed key's material is gone: Get fails as a KMIP failure.
    let gone = run(h.kmip_as("client"), &["get", &uid, "--reveal"]);
    assert_eq!(gone.code, 1, "{}", gone.stderr);
}

#[test]
fn get_of_an_unknown_identifier_exits_1_with_the_result_reason() {
    let h = Home::new();
    // KMIP 2.1 (the default) says Object Not Found, 1.4 Item Not Found.
    for (version, reason) in [("2.1", "Object Not Found"), ("1.4", "Item Not Found")] {
        let o = run(
            h.kmip_as("client"),
            &["--kmip-version", version, "get", "no-such-object"],
        );
        assert_eq!(o.code, 1);
        assert_eq!(o.stdout, "");
        let lines: Vec<&str> = o.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {:?}", o.stderr);
        let expected = format!("kmip: KMIP failure: Operation Failed: {reason}");
        assert!(lines[0].starts_with(&expected), "{}", lines[0]);
    }
}

#[test]
fn key_material_only_when_asked_and_files_are_0600() {
    let h = Home::new();
    let uid = ok(h.kmip_as("client"), &["create", "-q"]).trim().to_owned();

    let summary = ok(h.kmip_as("client"), &["get", &uid]);
    assert!(summary.contains("hidden"), "{summary}");
    let revealed = ok(h.kmip_as("client"), &["get", &uid, "--reveal", "--quiet"]);
    let hex_key = revealed.trim();
    assert_eq!(hex_key.len(), 64, "256 bits in hex: {revealed:?}");
    assert!(!summary.contains(hex_key), "no material without --reveal");

    let as_json = json(h.kmip_as("client"), &["get", &uid, "--json"]);
    assert!(as_json.get("key_material").is_none(), "{as_json}");
    assert_eq!(as_json["key_format_type"], "Raw");
    let revealed_json = json(h.kmip_as("client"), &["get", &uid, "--json", "--reveal"]);
    assert_eq!(revealed_json["key_material"], hex_key);

    // An existing world-readable file is narrowed to 0600 before the key is written.
    let file = h.path("key.bin");
    std::fs::write(&file, b"old").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let written = ok(
        h.kmip_as("client"),
        &["get", &uid, "--out", file.to_str().unwrap()],
    );
    assert!(!written.contains(hex_key));
    assert_eq!(hex::encode(std::fs::read(&file).unwrap()), hex_key);
    assert_eq!(mode_of(&file), 0o600);
    let fresh = h.path("fresh.bin");
    ok(
        h.kmip_as("client"),
        &["get", &uid, "-q", "-o", fresh.to_str().unwrap()],
    );
    assert_eq!(mode_of(&fresh), 0o600);
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn each_exit_code() {
    let h = Home::new();
    let s = server();
    // 2: usage, from clap and from a missing server.
    assert_eq!(run(h.kmip(), &["create", "--no-such-flag"]).code, 2);
    assert_eq!(run(h.kmip(), &[]).code, 2);
    let no_server = run(h.kmip(), &["locate", "--quiet"]);
    assert_eq!(no_server.code, 2);
    assert!(
        no_server.stderr.contains("--server"),
        "{}",
        no_server.stderr
    );
    assert_eq!(
        run(h.kmip_as("client"), &["revoke", "x", "--reason", "bored"]).code,
        2
    );
    // 3: nothing listens; a server certificate from a CA we do not trust; a client
    // certificate the server does not trust (refused at the handshake or first read).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let mut c = h.kmip_as("client");
    c.args(["--server", &closed_addr]);
    let refused = run(c, &["locate"]);
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    let mut c = h.kmip_as("client");
    c.arg("--ca").arg(s.inst.cert("client"));
    assert_eq!(run(c, &["locate"]).code, 3);
    let stranger = kmipd::certs::DevCa::generate("stranger").unwrap();
    let issued = stranger
        .issue_client("client", &kmipd::certs::ClientOptions::default())
        .unwrap();
    std::fs::write(h.path("s.pem"), &issued.cert_pem).unwrap();
    std::fs::write(h.path("s.key"), &issued.key_pem).unwrap();
    let mut c = h.kmip_as("client");
    c.arg("--cert")
        .arg(h.path("s.pem"))
        .arg("--key")
        .arg(h.path("s.key"));
    let untrusted = run(c, &["locate"]);
    assert_eq!(untrusted.code, 3, "{}", untrusted.stderr);
    // 4: a file that is not there; a profile file that is not TOML.
    let mut c = h.kmip_as("client");
    c.arg("--cert").arg(h.path("missing.pem"));
    assert_eq!(run(c, &["locate"]).code, 4);
    let bad = h.path("bad.toml");
    std::fs::write(&bad, "this is [not toml").unwrap();
    let mut c = h.kmip_as("client");
    c.arg("--config").arg(&bad);
    assert_eq!(run(c, &["locate"]).code, 4);
}

/// A TLS server with kmipd's server certificate that answers its one connection's first
/// request with `answer` (a whole TTLV item) and then closes; gives up after 30 s unasked.
fn wrong_server(answer: Vec<u8>) -> SocketAddr {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{Read, Write};
    let s = server();
    let chain = CertificateDer::pem_file_iter(s.inst.cert("server-ec"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(s.inst.key("server-ec")).unwrap();
    let config = std::sync::Arc::new(
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        let tcp = loop {
            match listener.accept() {
                Ok((tcp, _)) => break tcp,
                Err(_) if std::time::Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => return,
            }
        };
        tcp.set_nonblocking(false).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut header = [0u8; 8];
        if tls.read_exact(&mut header).is_err() {
            return;
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let mut body = vec![0u8; usize::try_from(len).unwrap()];
        if tls.read_exact(&mut body).is_ok() {
            let _ = tls.write_all(&answer);
            let _ = tls.flush();
        }
        tls.conn.send_close_notify();
        let _ = tls.flush();
    });
    addr
}

#[test]
fn a_response_that_does_not_fit_the_request_exits_5() {
    let h = Home::new();
    // A well-formed TTLV item, but an Integer where a Response Message structure belongs.
    let integer = vec![0x42, 0x00, 0x7B, 0x02, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0];
    // A header announcing an item longer than any message the client accepts.
    let oversized = vec![0x42, 0x00, 0x7B, 0x01, 0x7f, 0xff, 0xff, 0xf8];
    for answer in [integer, oversized] {
        let addr = wrong_server(answer);
        let mut c = h.kmip_as("client");
        c.args(["--server", &addr.to_string()]);
        let out = run(c, &["locate"]);
        assert_eq!(out.code, 5, "{}", out.stderr);
        assert!(out.stderr.contains("response"), "{}", out.stderr);
    }
}

#[test]
fn a_profile_replaces_the_flags() {
    let h = Home::new();
    let s = server();
    ok(h.kmip_as("client"), &["profile", "add", "dev"]);
    let file = h.path("config").join("kmip").join("config.toml");
    assert_eq!(mode_of(&file), 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("default = \"dev\""), "{text}");
    assert!(text.contains(&s.addr.to_string()), "{text}");

    // No connection flags at all: the default profile.
    let name = unique("p");
    let uid = ok(h.kmip(), &["create", "--name", &name, "--quiet"]);
    assert_eq!(ok(h.kmip(), &["locate", "--name", &name, "-q"]), uid);

    // A second profile with another identity, chosen with --profile and KMIP_PROFILE: that
    // identity does not see the first one's key.
    ok(h.kmip_as("client2"), &["profile", "add", "other"]);
    let listed = json(h.kmip(), &["profile", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(
        ok(
            h.kmip(),
            &["--profile", "other", "locate", "--name", &name, "-q"]
        ),
        ""
    );
    let mut c = h.kmip();
    c.env("KMIP_PROFILE", "other");
    assert_eq!(ok(c, &["locate", "--name", &name, "-q"]), "");
    // A flag overrides the profile's setting.
    let mut c = h.kmip();
    c.env("KMIP_PROFILE", "other");
    c.arg("--cert")
        .arg(s.inst.cert("client"))
        .arg("--key")
        .arg(s.inst.key("client"));
    assert_eq!(ok(c, &["locate", "--name", &name, "-q"]), uid);

    assert_eq!(run(h.kmip(), &["--profile", "nope", "locate"]).code, 2);
    let removed = json(h.kmip(), &["profile", "remove", "other", "--json"]);
    assert_eq!(removed["name"], "other");
    assert_eq!(
        json(h.kmip(), &["profile", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn kmip_1_4_requests_work_too() {
    let h = Home::new();
    let name = unique("v14");
    let uid = ok(
        h.kmip_as("client"),
        &[
            "--kmip-version",
            "1.4",
            "create",
            "--name",
            &name,
            "-q",
            "--length",
            "128",
        ],
    );
    let found = ok(
        h.kmip_as("client"),
        &["--kmip-version", "1.4", "locate", "--name", &name, "-q"],
    );
    assert_eq!(found, uid);
    let shown = json(
        h.kmip_as("client"),
        &["--kmip-version", "1.4", "show", uid.trim(), "--json"],
    );
    assert_eq!(shown["cryptographic_length"], 128);
    assert_eq!(shown["names"], serde_json::json!([name]));
}

#[test]
fn register_from_files_then_get_gives_the_same_bytes() {
    let h = Home::new();
    // A raw AES key.
    let key: Vec<u8> = (1u8..=32).collect();
    std::fs::write(h.path("aes.bin"), &key).unwrap();
    let uid = ok(h.kmip_as("client"), &["register", "aes.bin", "-q"]);
    let shown = json(h.kmip_as("client"), &["show", uid.trim(), "--json"]);
    assert_eq!(shown["cryptographic_algorithm"], "AES");
    assert_eq!(shown["cryptographic_length"], 256);
    let back = ok(h.kmip_as("client"), &["get", uid.trim(), "--reveal", "-q"]);
    assert_eq!(back.trim(), hex::encode(&key));

    // A certificate and its PKCS#8 key in PEM; the certificate comes back as the same DER,
    // written as PEM on request.
    let ca = kmipd::certs::DevCa::generate("register test").unwrap();
    let issued = ca
        .issue_client("someone", &kmipd::certs::ClientOptions::default())
        .unwrap();
    std::fs::write(h.path("c.pem"), &issued.cert_pem).unwrap();
    std::fs::write(h.path("c.key"), &issued.key_pem).unwrap();
    let cert = ok(
        h.kmip_as("client"),
        &["register", "c.pem", "--type", "certificate", "-q"],
    );
    let shown = json(h.kmip_as("client"), &["show", cert.trim(), "--json"]);
    assert_eq!(shown["object_type"], "Certificate");
    ok(
        h.kmip_as("client"),
        &["get", cert.trim(), "--out", "back.pem", "--pem", "-q"],
    );
    assert_eq!(
        std::fs::read_to_string(h.path("back.pem")).unwrap().trim(),
        issued.cert_pem.trim()
    );
    let private = ok(
        h.kmip_as("client"),
        &[
            "register",
            "c.key",
            "--type",
            "private-key",
            "--name",
            &unique("pk"),
            "-q",
        ],
    );
    let shown = json(h.kmip_as("client"), &["show", private.trim(), "--json"]);
    assert_eq!(shown["object_type"], "PrivateKey");
    // Algorithm and length read from the PKCS#8 key (kmipd's policy requires them).
    assert_eq!(shown["cryptographic_algorithm"], "EC");
    assert_eq!(shown["cryptographic_length"], 256);

    // A PEM block of another kind is refused before anything is sent (exit 4).
    std::fs::write(
        h.path("bad.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let bad = run(
        h.kmip_as("client"),
        &["register", "bad.pem", "--type", "private-key"],
    );
    assert_eq!(bad.code, 4, "{}", bad.stderr);
}

#[test]
fn encrypt_decrypt_mac_sign_verify_hash_rng() {
    let h = Home::new();
    let k = |args: &[&str]| ok(h.kmip_as("client"), args).trim().to_owned();
    let plain: Vec<u8> = (0..1000u32)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    std::fs::write(h.path("plain.bin"), &plain).unwrap();

    let aes = k(&["create", "-q"]);
    k(&["activate", &aes]);
    k(&["encrypt", &aes, "--in", "plain.bin", "--out", "sealed.bin"]);
    let sealed = std::fs::read(h.path("sealed.bin")).unwrap();
    assert_eq!(
        sealed.len(),
        12 + plain.len() + 16,
        "IV || ciphertext || tag"
    );
    assert_ne!(&sealed[12..12 + plain.len()], plain.as_slice());
    assert_eq!(mode_of(&h.path("sealed.bin")), 0o600);
    k(&["decrypt", &aes, "-i", "sealed.bin", "-o", "back.bin"]);
    assert_eq!(std::fs::read(h.path("back.bin")).unwrap(), plain);
    // Standard input and output, as in a pipe.
    let mut c = h.kmip_as("client");
    c.write_stdin(plain.clone());
    let piped = c.args(["encrypt", &aes]).output().unwrap();
    assert!(piped.status.success());
    let mut c = h.kmip_as("client");
    c.write_stdin(piped.stdout);
    let unpiped = c.args(["decrypt", &aes]).output().unwrap();
    assert_eq!(unpiped.stdout, plain);
    // A flipped bit in the tag is refused by the server.
    let mut bad = sealed.clone();
    *bad.last_mut().unwrap() ^= 1;
    std::fs::write(h.path("bad.bin"), &bad).unwrap();
    assert_eq!(
        run(h.kmip_as("client"), &["decrypt", &aes, "-i", "bad.bin"]).code,
        1
    );

    let hmac = k(&[
        "create",
        "--algorithm",
        "HMAC-SHA256",
        "--length",
        "256",
        "-q",
    ]);
    k(&["activate", &hmac]);
    k(&["mac", &hmac, "--in", "plain.bin", "--out", "mac.bin"]);
    assert_eq!(std::fs::read(h.path("mac.bin")).unwrap().len(), 32);
    k(&["mac", &hmac, "--in", "plain.bin", "--check", "mac.bin"]);
    std::fs::write(h.path("other.bin"), b"other").unwrap();
    let mismatch = run(
        h.kmip_as("client"),
        &["mac", &hmac, "--in", "other.bin", "--check", "mac.bin"],
    );
    assert_eq!(mismatch.code, 6, "{}", mismatch.stderr);

    let pair = json(
        h.kmip_as("client"),
        &[
            "create",
            "--type",
            "key-pair",
            "--algorithm",
            "EC",
            "--curve",
            "P-256",
            "--name",
            &unique("ec"),
            "--json",
        ],
    );
    let private = pair["private_key_unique_identifier"]
        .as_str()
        .unwrap()
        .to_owned();
    let public = pair["public_key_unique_identifier"]
        .as_str()
        .unwrap()
        .to_owned();
    k(&["activate", &private, &public]);
    let alg = "ecdsa-with-sha256";
    k(&[
        "sign",
        &private,
        "--in",
        "plain.bin",
        "--algorithm",
        alg,
        "--out",
        "sig.bin",
    ]);
    let valid = run(
        h.kmip_as("client"),
        &[
            "verify",
            &public,
            "--in",
            "plain.bin",
            "--signature",
            "sig.bin",
            "--algorithm",
            alg,
        ],
    );
    assert_eq!((valid.code, valid.stdout.as_str()), (0, "valid\n"));
    let invalid = run(
        h.kmip_as("client"),
        &[
            "verify",
            &public,
            "--in",
            "other.bin",
            "--signature",
            "sig.bin",
            "--algorithm",
            alg,
        ],
    );
    assert_eq!((invalid.code, invalid.stdout.as_str()), (6, "invalid\n"));

    // SHA-256("abc"), FIPS 180-2 appendix B.1.
    std::fs::write(h.path("abc"), b"abc").unwrap();
    assert_eq!(
        k(&["hash", "--in", "abc"]),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );

    let r1 = k(&["rng", "16"]);
    let r2 = k(&["rng", "16"]);
    assert_eq!(r1.len(), 32);
    assert_ne!(r1, r2);
}

#[test]
fn attributes_rekey_and_locate_filters() {
    let h = Home::new();
    let k = |args: &[&str]| ok(h.kmip_as("client"), args).trim().to_owned();
    let show = |uid: &str| json(h.kmip_as("client"), &["show", uid, "--json"]);
    let name = unique("attr");
    let uid = k(&["create", "--name", &name, "-q"]);

    k(&["attributes", "add", &uid, "x-owner=alice"]);
    assert_eq!(
        show(&uid)["attributes"]["x-owner"],
        serde_json::json!(["alice"])
    );
    k(&["attributes", "modify", &uid, "x-owner=bob"]);
    assert_eq!(
        show(&uid)["attributes"]["x-owner"],
        serde_json::json!(["bob"])
    );
    k(&[
        "attributes",
        "set",
        &uid,
        "Contact Information=ops@example.com",
    ]);
    assert_eq!(
        show(&uid)["attributes"]["ContactInformation"],
        serde_json::json!(["ops@example.com"])
    );
    assert_eq!(
        k(&["locate", "--attr", "x-owner=bob", "--name", &name, "-q"]),
        uid
    );
    k(&["attributes", "delete", &uid, "x-owner"]);
    assert!(show(&uid)["attributes"].get("x-owner").is_none());
    // 1.4 has no Set Attribute: refused before anything is sent.
    let old = run(
        h.kmip_as("client"),
        &["--kmip-version", "1.4", "attributes", "set", &uid, "x-a=b"],
    );
    assert_eq!(old.code, 2);

    let new = k(&["rekey", &uid, "-q"]);
    assert_ne!(new, uid);
    assert_eq!(show(&new)["names"], serde_json::json!([name]));
    assert_eq!(show(&uid)["names"], serde_json::json!([]));
    assert_eq!(k(&["locate", "--name", &name, "-q"]), new);

    // Filters and paging.
    let group = unique("group");
    let g = format!("Object Group={group}");
    let a = k(&["create", "--attr", &g, "-q"]);
    let b = k(&["create", "--attr", &g, "--length", "128", "-q"]);
    k(&["activate", &a]);
    assert_eq!(
        k(&["locate", "--group", &group, "--state", "active", "-q"]),
        a
    );
    assert_eq!(
        k(&["locate", "--group", &group, "--state", "pre-active", "-q"]),
        b
    );
    assert_eq!(
        k(&["locate", "--group", &group, "--length", "128", "-q"]),
        b
    );
    let both = json(
        h.kmip_as("client"),
        &["locate", "--group", &group, "--json"],
    );
    let mut found: Vec<String> =
        serde_json::from_value(both["unique_identifiers"].clone()).unwrap();
    found.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(found, expected);
    let mut paged: Vec<String> = k(&["locate", "--group", &group, "--all", "--max", "1", "-q"])
        .lines()
        .map(str::to_owned)
        .collect();
    paged.sort();
    assert_eq!(paged, expected, "--all pages through every match");
    let page = k(&["locate", "--group", &group, "--max", "1", "-q"]);
    assert_eq!(page.lines().count(), 1);
    let rest = k(&[
        "locate", "--group", &group, "--max", "1", "--offset", "1", "-q",
    ]);
    assert_eq!(rest.lines().count(), 1);
    assert_ne!(page, rest);
    // Destroy what locate found, through standard input.
    let mut c = h.kmip_as("client");
    c.write_stdin(format!("{a}\n{b}\n"));
    k(&["revoke", &a, "--reason", "cessation-of-operation"]);
    let destroyed = c.args(["destroy", "-", "-q"]).output().unwrap();
    assert!(destroyed.status.success());
    assert_eq!(
        String::from_utf8(destroyed.stdout).unwrap(),
        format!("{a}\n{b}\n")
    );
    assert_eq!(show(&b)["state"], "Destroyed");
}

/// `locate --due-within`: the keys whose Deactivation Date falls within the duration from now,
/// asked over the wire as a range of Deactivation Dates.
#[test]
fn locate_keys_due_within_a_duration() {
    let h = Home::new();
    let k = |args: &[&str]| ok(h.kmip_as("client"), args).trim().to_owned();
    let group = unique("due");
    let g = format!("Object Group={group}");
    let now = time::OffsetDateTime::now_utc();
    let date = |days: i64| {
        (now + time::Duration::days(days))
            .replace_nanosecond(0)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let soon = k(&[
        "create",
        "--attr",
        &g,
        "--attr",
        &format!("Deactivation Date={}", date(10)),
        "-q",
    ]);
    let later = k(&[
        "create",
        "--attr",
        &g,
        "--attr",
        &format!("Deactivation Date={}", date(60)),
        "-q",
    ]);
    let never = k(&["create", "--attr", &g, "-q"]);
    let found = |within: &str| {
        let mut v: Vec<String> = k(&["locate", "--group", &group, "--due-within", within, "-q"])
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert_eq!(found("30d"), vec![soon.clone()]);
    let mut both = vec![soon.clone(), later.clone()];
    both.sort();
    assert_eq!(found("9w"), both);
    assert!(found("1d").is_empty());
    assert!(!found("9w").contains(&never));
    let bad = run(
        h.kmip_as("client"),
        &["locate", "--due-within", "30x", "-q"],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("not a duration"), "{}", bad.stderr);
}

#[test]
fn server_information_and_offline_commands() {
    let h = Home::new();
    let versions = json(h.kmip_as("client"), &["discover-versions", "--json"]);
    let list = versions["versions"].as_array().unwrap();
    assert_eq!(list[0], "2.1", "newest first: {versions}");
    assert!(list.contains(&Json::from("1.0")));
    let q = json(h.kmip_as("client"), &["query", "--json"]);
    let ops = q["operations"].as_array().unwrap();
    for op in ["Create", "Locate", "Destroy"] {
        assert!(ops.contains(&Json::from(op)), "{op} in {q}");
    }

    // A Protocol Version 1.4 structure, in JSON, XML and TTLV (KMIP 1.4 §9.1).
    let hex_expected =
        "420069010000002042006a0200000004000000010000000042006b02000000040000000400000000";
    std::fs::write(
        h.path("pv.json"),
        r#"{"tag":"ProtocolVersion","value":[{"tag":"ProtocolVersionMajor","type":"Integer","value":1},{"tag":"ProtocolVersionMinor","type":"Integer","value":4}]}"#,
    )
    .unwrap();
    assert_eq!(
        ok(h.kmip(), &["ttlv", "encode", "pv.json"]).trim(),
        hex_expected
    );
    std::fs::write(h.path("pv.hex"), hex_expected).unwrap();
    let xml = ok(h.kmip(), &["ttlv", "decode", "pv.hex", "--to", "xml"]);
    assert!(xml.contains("ProtocolVersionMinor"), "{xml}");
    std::fs::write(h.path("pv.xml"), &xml).unwrap();
    assert_eq!(
        ok(h.kmip(), &["ttlv", "encode", "pv.xml", "--from", "xml"]).trim(),
        hex_expected
    );
    let dump = ok(h.kmip(), &["ttlv", "decode", "pv.hex"]);
    assert!(
        dump.contains("ProtocolVersionMajor") && dump.contains("= 1"),
        "{dump}"
    );
    assert_eq!(run(h.kmip(), &["ttlv", "decode", "pv.json"]).code, 4);

    let completion = ok(h.kmip(), &["completions", "bash"]);
    assert!(completion.contains("kmip") && completion.contains("discover-versions"));
    let man = ok(h.kmip(), &["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH kmip"),
        "{}",
        &man[..80.min(man.len())]
    );
}

/// The flow of docs/clients.md: kmipd takes its dev CA, issues a certificate to a new client
/// through its admin socket, and `kmip` uses that certificate to create, locate, show and
/// destroy a key; once revoked, the client is refused (exit 3) without a restart.
#[test]
fn an_enrolled_client_uses_kmip_until_revoked() {
    use kmipd::admin::{Request, call};
    let h = Home::new();
    let s = server();
    let socket = s.inst.config().unwrap().admin.socket;
    let admin = |r: Request| {
        let answer = call(&socket, &r, Some(Duration::from_secs(60))).unwrap();
        assert!(answer.ok, "{}: {}", r.name(), answer.message);
        answer.message
    };
    admin(Request::ClientImportCa {
        cert: s.inst.cert("ca"),
        key: s.inst.key("ca"),
    });
    let out = h.path("enrolled");
    admin(Request::ClientIssue {
        name: "backup-server".into(),
        days: Some(30),
        key: None,
        out: out.clone(),
    });
    let mut flags = vec![
        "--server".to_owned(),
        s.addr.to_string(),
        "--ca".to_owned(),
        out.join("ca.pem").display().to_string(),
    ];
    flags.extend([
        "--cert".to_owned(),
        out.join("backup-server.pem").display().to_string(),
        "--key".to_owned(),
        out.join("backup-server.key").display().to_string(),
    ]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    ok(
        h.kmip(),
        &[&flags[..], &["profile", "add", "backup"]].concat(),
    );
    let name = unique("enrolled");
    let uid = ok(
        h.kmip(),
        &[
            "create",
            "--algorithm",
            "AES",
            "--length",
            "256",
            "--name",
            &name,
            "--quiet",
        ],
    );
    let uid = uid.trim();
    assert_eq!(
        ok(h.kmip(), &["locate", "--name", &name, "--quiet"]).trim(),
        uid
    );
    let shown = json(h.kmip(), &["show", uid, "--json"]);
    assert_eq!(shown["state"], "PreActive");
    // Its objects are its own: the dev identity `client` does not see them.
    assert_eq!(
        ok(h.kmip_as("client"), &["locate", "--name", &name, "-q"]),
        ""
    );
    ok(h.kmip(), &["destroy", uid]);
    assert_eq!(
        json(h.kmip(), &["show", uid, "--json"])["state"],
        "Destroyed"
    );

    admin(Request::ClientRevoke {
        client: "backup-server".into(),
        reason: Some("cessation-of-operation".into()),
    });
    let refused = run(h.kmip(), &["locate", "--name", &name, "-q"]);
    assert_eq!(
        refused.code, 3,
        "a revoked client is refused: {}",
        refused.stderr
    );
}

#[test]
fn secrets_key_pairs_and_wrapped_export() {
    let h = Home::new();
    let k = |args: &[&str]| ok(h.kmip_as("client"), args).trim().to_owned();
    let show = |uid: &str| json(h.kmip_as("client"), &["show", uid, "--json"]);

    // Secret data made by the server, and one registered from a file.
    let made = k(&["create", "--type", "secret", "--length", "256", "-q"]);
    assert_eq!(show(&made)["object_type"], "SecretData");
    assert_eq!(k(&["get", &made, "--reveal", "-q"]).len(), 64);
    std::fs::write(h.path("pw.txt"), b"correct horse").unwrap();
    let registered = k(&["register", "pw.txt", "--type", "secret", "-q"]);
    assert_eq!(
        k(&["get", &registered, "--reveal", "-q"]),
        hex::encode(b"correct horse")
    );

    // An RSA pair; the private key out as PKCS#8 PEM, registered back as a private key.
    let pair = json(
        h.kmip_as("client"),
        &[
            "create",
            "--type",
            "key-pair",
            "--algorithm",
            "RSA",
            "--length",
            "2048",
            "--json",
        ],
    );
    let private = pair["private_key_unique_identifier"].as_str().unwrap();
    let public = pair["public_key_unique_identifier"].as_str().unwrap();
    assert_eq!(show(public)["object_type"], "PublicKey");
    assert_eq!(show(private)["cryptographic_length"], 2048);
    k(&[
        "get", private, "--format", "pkcs8", "--out", "rsa.key", "--pem", "-q",
    ]);
    let pem = std::fs::read_to_string(h.path("rsa.key")).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert_eq!(mode_of(&h.path("rsa.key")), 0o600);
    let again = k(&["register", "rsa.key", "--type", "private-key", "-q"]);
    let shown = show(&again);
    assert_eq!(shown["cryptographic_length"], 2048, "read from the key");
    assert_eq!(shown["object_type"], "PrivateKey");
    assert_eq!(shown["cryptographic_algorithm"], "RSA");

    // A key wrapped under another on the way out. AES key wrap adds 8 bytes to what it wraps:
    // the bare key with --wrap-raw, the TTLV Key Value (16 bytes of headers more) by default.
    let kek = k(&["create", "--usage", "wrap-key,unwrap-key", "-q"]);
    k(&["activate", &kek]);
    let key = k(&["create", "-q"]);
    let raw = k(&["get", &key, "--reveal", "-q"]);
    let wrapped = |extra: &[&str]| {
        let mut args = vec![
            "get",
            key.as_str(),
            "--wrap-with",
            kek.as_str(),
            "--reveal",
            "--json",
        ];
        args.extend_from_slice(extra);
        let j = json(h.kmip_as("client"), &args);
        assert_eq!(j["wrapped"], true);
        j["key_material"].as_str().unwrap().to_owned()
    };
    let bare = wrapped(&["--wrap-raw"]);
    assert_eq!(bare.len(), raw.len() + 16);
    assert!(!bare.contains(&raw));
    assert_eq!(wrapped(&[]).len(), raw.len() + 16 + 32);
}
