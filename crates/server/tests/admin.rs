//! The admin commands against a real `kmipd` child process (the binary, over its own SoftHSM2
//! token made by `kmipd init`): KEK and master key rotation while serving, a SIGKILL in the middle
//! of a KEK rotation and its completion after a restart, an online backup restored into a new
//! directory and served, and grants through the admin socket as seen by `client2`; a record
//! damaged on disk and read by Get reaches the operator (log and metrics) and not the client;
//! dual control: a marked object's Get approved through the admin socket, audited.
//!
//! Each server is a child process (SoftHSM2 reads `SOFTHSM2_CONF` once per process, and `kmipd
//! serve` sets it itself), killed when its handle drops. Every wait is bounded: child processes
//! have deadlines and are killed past them; client calls have timeouts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kmipd_client::{Client, Connector, TlsOptions};

mod cluster;

// The kmipd binary, the bound on one admin command or server start, `kmipd init`, bounded
// commands, the client's runtime, connectors and connections: the harness shared with the
// multi-node tests.
use cluster::{BOUND, KMIPD, connect, connector_in, init, run_bounded, runtime};

fn finish(child: Child) -> (bool, String, String) {
    kmipd_test_support::finish_bounded(child, BOUND)
}

/// `kmipd admin --config CONFIG <args>`.
fn admin_cmd(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(KMIPD);
    cmd.args(["admin", "--config"]).arg(config).args(args);
    cmd
}

/// Runs an admin command that must succeed; returns its one line.
fn admin_ok(config: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run_bounded(admin_cmd(config, args));
    assert!(ok, "kmipd admin {args:?} failed: {out}{err}");
    assert_eq!(out.lines().count(), 1, "one line: {out:?}");
    assert!(err.is_empty(), "nothing on stderr: {err:?}");
    out.trim().to_owned()
}

/// Runs an admin command that must fail; returns its one error line.
fn admin_err(config: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run_bounded(admin_cmd(config, args));
    assert!(!ok, "kmipd admin {args:?} should fail: {out}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("kmipd: error: "), "{err}");
    err.trim().to_owned()
}

/// A `kmipd serve` child process; SIGKILLed when dropped.
struct Served {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Served {
    /// Starts `kmipd serve --config CONFIG --listen 127.0.0.1:0` with extra environment and
    /// waits for its "listening" line.
    fn start(config: &Path, env: &[(&str, &str)]) -> Served {
        let mut cmd = Command::new(KMIPD);
        cmd.args(["serve", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(a) = line.split("kmipd listening addr=").nth(1) {
                        let _ = tx.send(a.trim().to_owned());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let addr = match rx.recv_timeout(BOUND) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "kmipd serve did not start:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Served { child, addr, log }
    }

    fn log_count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until `needle` was logged `n` times.
    fn wait_for_log(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + BOUND;
        while self.log_count(needle) < n {
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged {n} times:\n{}",
                self.log.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                assert!(s.success(), "kmipd exited with {s}");
                return;
            }
            assert!(Instant::now() < deadline, "kmipd did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, at once.
    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Instance {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Instance {
    fn new(hsm: bool) -> Instance {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap().join("kmipd");
        init(&dir, hsm);
        Instance { _tmp: tmp, dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.join("kmipd.toml")
    }

    fn connector(&self, who: &str) -> Connector {
        connector_in(&self.dir, who)
    }
}

/// Creates `n` AES-256 keys named `{prefix}-{i}`; returns uid → key bytes.
async fn create_keys(c: &mut Client, prefix: &str, n: usize) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for i in 0..n {
        let uid = c
            .create_aes(256, Some(&format!("{prefix}-{i}")))
            .await
            .unwrap();
        let bytes = c.get_key_bytes(&uid).await.unwrap().to_vec();
        assert_eq!(bytes.len(), 32);
        out.insert(uid, bytes);
    }
    out
}

/// A writer on its own connection creating keys `{prefix}-{i}-0` one at a time, at least
/// `at_least` of them, until `stop` is set; it returns what it made.
fn spawn_writer(
    rt: &tokio::runtime::Runtime,
    connector: &Connector,
    addr: SocketAddr,
    prefix: &'static str,
    at_least: usize,
) -> (
    Arc<std::sync::atomic::AtomicBool>,
    tokio::task::JoinHandle<BTreeMap<String, Vec<u8>>>,
) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let connector = connector.clone();
        let stop = stop.clone();
        rt.spawn(async move {
            let mut c = connector.connect(addr).await.unwrap();
            let mut made = BTreeMap::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || i < at_least {
                made.extend(create_keys(&mut c, &format!("{prefix}-{i}"), 1).await);
                i += 1;
            }
            made
        })
    };
    (stop, writer)
}

/// Every object is there with the same key bytes.
async fn assert_all_readable(c: &mut Client, keys: &BTreeMap<String, Vec<u8>>, when: &str) {
    for (uid, bytes) in keys {
        let got = c
            .get_key_bytes(uid)
            .await
            .unwrap_or_else(|e| panic!("{when}: object {uid} unreadable: {e:?}"));
        assert_eq!(&*got, bytes, "{when}: object {uid} has other key bytes");
    }
}

#[test]
fn kek_and_master_key_rotation_while_serving_keep_every_object() {
    let inst = Instance::new(true);
    let cfg = inst.config();
    let rt = runtime();
    let server = Served::start(&cfg, &[]);
    let addr = server.addr;
    let connector = inst.connector("client");
    let mut keys = rt.block_on(async {
        let mut c = connect(&connector, addr).await;
        create_keys(&mut c, "before", 40).await
    });
    let secret = rt.block_on(async {
        let mut c = connect(&connector, addr).await;
        c.register_secret(b"a password", Some("pw")).await.unwrap()
    });

    // A writer keeps creating keys while the KEK rotates and the master key rotates.
    let (stop, writer) = spawn_writer(&rt, &connector, addr, "during", 5);
    let line = admin_ok(&cfg, &["rotate-kek"]);
    assert!(
        line.starts_with("kmipd: rotate-kek: KEK rotated: KEK 2 is current"),
        "{line}"
    );
    assert!(line.contains("KEK 1 retired"), "{line}");
    let line = admin_ok(&cfg, &["rotate-master-key"]);
    assert!(line.contains("kmipd-master.v2 is current"), "{line}");
    assert!(
        line.contains("old versions destroyed: kmipd-master"),
        "{line}"
    );
    // A second KEK rotation, its KEK wrapped by the new master key version.
    let line = admin_ok(&cfg, &["rotate-kek"]);
    assert!(line.contains("KEK 3 is current"), "{line}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = rt.block_on(writer).unwrap();
    assert!(during.len() >= 5);
    keys.extend(during);
    rt.block_on(async {
        let mut c = connect(&connector, addr).await;
        keys.extend(create_keys(&mut c, "after", 10).await);
        assert_all_readable(&mut c, &keys, "after the rotations").await;
        assert_eq!(&*c.get_key_bytes(&secret).await.unwrap(), b"a password");
    });
    server.stop();

    // A restart unwraps the current KEK with the current master key version.
    let server = Served::start(&cfg, &[]);
    rt.block_on(async {
        let mut c = connect(&connector, server.addr).await;
        assert_all_readable(&mut c, &keys, "after a restart").await;
        assert_eq!(&*c.get_key_bytes(&secret).await.unwrap(), b"a password");
    });
    server.stop();
    // Every admin command is in the audit chain.
    let (ok, out, err) = run_bounded({
        let mut c = Command::new(KMIPD);
        c.args(["audit", "verify"]).arg(inst.dir.join("audit.log"));
        c
    });
    assert!(ok, "{out}{err}");
    let audit = std::fs::read_to_string(inst.dir.join("audit.log")).unwrap();
    assert_eq!(audit.matches("\"admin rotate-kek\"").count(), 2);
    assert_eq!(audit.matches("\"admin rotate-master-key\"").count(), 1);
}

/// What a cycle writer had acknowledged when the server died: uids created, served (the first
/// Get, which clears Fresh: a durable write) and destroyed.
#[derive(Default)]
struct Acked {
    created: Vec<String>,
    served: Vec<String>,
    destroyed: Vec<String>,
}

/// SIGKILL while four connections run Create, Get, Destroy cycles: after the restart every
/// acknowledged change is in the store and has its audit record (an acknowledgement waits for
/// both to be durable: with sled, in one WAL frame), and the chain verifies.
#[test]
fn a_kill_under_load_keeps_every_acknowledged_change_and_its_audit_record() {
    let inst = Instance::new(true);
    let cfg = inst.config();
    let rt = runtime();
    let server = Served::start(&cfg, &[]);
    let connector = inst.connector("client");
    // A record reaches the file just before its reply is sent, and each connection has one
    // request in flight: 44 Destroys in the file mean at least 40 acknowledged.
    let acked = killed_under_cycles(&rt, server, &connector, 4, &inst.dir, ("Destroy", 44));
    let count = |f: fn(&Acked) -> usize| acked.iter().map(f).sum::<usize>();
    assert!(
        count(|a| a.destroyed.len()) >= 40,
        "cycles ran before the kill"
    );

    // The restart recovers the store and cuts a torn last audit line, if any.
    let server = Served::start(&cfg, &[]);
    rt.block_on(async {
        let mut c = connect(&connector, server.addr).await;
        for a in &acked {
            // Destroyed or not, an object's metadata stays readable.
            for uid in &a.created {
                let attrs = c.get_attributes(uid).await;
                assert!(attrs.is_ok(), "created object {uid} lost: {attrs:?}");
            }
            for uid in &a.destroyed {
                assert!(
                    c.get(uid).await.is_err(),
                    "destroyed object {uid} served again"
                );
            }
        }
    });
    server.stop();
    assert_acked_recorded(&acked, &success_records(&[inst.dir.join("audit.log")]));
}

/// `n` connections running Create, Get, Destroy cycles against `addr` until `stop` is set
/// or a request fails; each answers what it had acknowledged.
fn cycle_writers(
    rt: &tokio::runtime::Runtime,
    connector: &Connector,
    addr: SocketAddr,
    n: usize,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Acked>> {
    (0..n)
        .map(|w| {
            let (connector, stop) = (connector.clone(), stop.clone());
            rt.spawn(async move {
                let mut a = Acked::default();
                let Ok(mut c) = connector.connect(addr).await else {
                    return a;
                };
                for i in 0..100_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let Ok(uid) = c.create_aes(128, Some(&format!("w{w}-{i}"))).await else {
                        break;
                    };
                    a.created.push(uid.clone());
                    if c.get(&uid).await.is_err() {
                        break;
                    }
                    a.served.push(uid.clone());
                    if c.destroy(&uid).await.is_err() {
                        break;
                    }
                    a.destroyed.push(uid);
                }
                a
            })
        })
        .collect()
}

/// Runs `n` [`cycle_writers`] against `server` until its audit log (in `dir`) holds `records.1`
/// records of operation `records.0` (or [`BOUND`] passes), SIGKILLs it, and answers what each
/// writer had acknowledged.
fn killed_under_cycles(
    rt: &tokio::runtime::Runtime,
    server: Served,
    connector: &Connector,
    n: usize,
    dir: &Path,
    records: (&str, usize),
) -> Vec<Acked> {
    // Never set: the kill ends the writers.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers = cycle_writers(rt, connector, server.addr, n, &stop);
    let needle = format!("\"{}\"", records.0);
    let deadline = Instant::now() + BOUND;
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(dir.join("audit.log")).unwrap_or_default();
        if text.matches(needle.as_str()).count() >= records.1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill9();
    writers
        .into_iter()
        .map(|h| rt.block_on(h).unwrap())
        .collect()
}

/// The rotated files of `dir/audit.log` (`audit.log.<record number>`), in chain order.
fn rotated_audit_files(dir: &Path) -> Vec<PathBuf> {
    kmipd::audit::rotated_files(&dir.join("audit.log"))
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// The Success records of `files` (one chain, verified on the way), counted by (operation,
/// uid).
fn success_records(files: &[PathBuf]) -> BTreeMap<(String, String), usize> {
    let mut records: BTreeMap<(String, String), usize> = BTreeMap::new();
    kmipd::audit::search(
        kmipd::audit::Verifier::new(),
        files,
        &kmipd::audit::Filter::default(),
        |r, _| {
            if r.status == "Success" {
                for uid in &r.uids {
                    *records
                        .entry((r.operation.clone(), uid.clone()))
                        .or_default() += 1;
                }
            }
            Ok(())
        },
    )
    .unwrap();
    records
}

/// Asserts that every acknowledged Create, first Get and Destroy has exactly one record.
fn assert_acked_recorded(acked: &[Acked], records: &BTreeMap<(String, String), usize>) {
    for a in acked {
        for (op, uids) in [
            ("Create", &a.created),
            ("Get", &a.served),
            ("Destroy", &a.destroyed),
        ] {
            for uid in uids {
                assert_eq!(
                    records.get(&(op.to_owned(), uid.clone())),
                    Some(&1),
                    "the acknowledged {op} of {uid} has no audit record (or several)"
                );
            }
        }
    }
}

/// The converse of the test above, which holds now that a light request's audit record rides
/// in its commit's WAL frame (one `fdatasync` for both): after a SIGKILL under load, every
/// live object in the store (what Locate finds: each connection's object between its Create
/// and its Destroy, acknowledged or not) has the Success record of its Create, every object
/// destroyed without its Destroy being acknowledged has the Destroy's record, and the chain
/// verifies.
#[test]
fn a_kill_under_load_leaves_no_stored_object_without_its_create_record() {
    let inst = Instance::new(true);
    let cfg = inst.config();
    let rt = runtime();
    let server = Served::start(&cfg, &[]);
    let connector = inst.connector("client");
    let acked = killed_under_cycles(&rt, server, &connector, 8, &inst.dir, ("Create", 80));
    // Up to one Create per connection recorded and not yet answered at the kill.
    assert!(acked.iter().map(|a| a.created.len()).sum::<usize>() >= 72);

    // The restart appends what the WAL holds and the file lacks; the records are read once the
    // Locate is answered (nothing else runs), before this test's own Gets add records.
    let server = Served::start(&cfg, &[]);
    let mut c = rt.block_on(connect(&connector, server.addr));
    let stored = rt.block_on(c.locate(&[])).unwrap();
    let records = success_records(&[inst.dir.join("audit.log")]);
    let destroyed_unacked = rt.block_on(async {
        let mut gone = Vec::new();
        for a in &acked {
            for uid in a.served.iter().filter(|u| !a.destroyed.contains(u)) {
                if c.get(uid).await.is_err() {
                    gone.push(uid.clone());
                }
            }
        }
        gone
    });
    drop(c);
    server.stop();
    // Each connection's object between its Create and its Destroy (with eight connections
    // some are always in that span).
    assert!(
        !stored.is_empty() && stored.len() <= 8,
        "{} live objects",
        stored.len()
    );
    for uid in &stored {
        assert_eq!(
            records.get(&("Create".to_owned(), uid.clone())),
            Some(&1),
            "object {uid} is in the store without the record of its Create"
        );
    }
    for uid in &destroyed_unacked {
        assert_eq!(
            records.get(&("Destroy".to_owned(), uid.clone())),
            Some(&1),
            "object {uid} was destroyed without the record of its Destroy"
        );
    }
    assert_acked_recorded(&acked, &records);
}

/// `kmipd admin rotate-audit`, three times while eight connections run cycles: the files
/// together hold one unbroken chain with every acknowledged request's record once.
#[test]
fn rotating_the_audit_log_under_load_keeps_the_chain_and_every_record() {
    let inst = Instance::new(true);
    let cfg = inst.config();
    let rt = runtime();
    let server = Served::start(&cfg, &[]);
    let connector = inst.connector("client");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers = cycle_writers(&rt, &connector, server.addr, 8, &stop);
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        let line = admin_ok(&cfg, &["rotate-audit"]);
        assert!(line.contains("audit log rotated"), "{line}");
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<Acked> = writers
        .into_iter()
        .map(|h| rt.block_on(h).unwrap())
        .collect();
    server.stop();
    let mut files = rotated_audit_files(&inst.dir);
    assert_eq!(files.len(), 3, "{files:?}");
    files.push(inst.dir.join("audit.log"));
    let records = success_records(&files);
    assert!(acked.iter().map(|a| a.destroyed.len()).sum::<usize>() >= 8);
    assert_acked_recorded(&acked, &records);
}

#[test]
fn a_kill_during_a_kek_rotation_leaves_every_object_readable_and_the_rotation_completable() {
    let inst = Instance::new(true);
    let cfg = inst.config();
    let rt = runtime();
    // Batches of 5 records with a pause after each: the rotation of 60 records takes seconds.
    let slow = [
        ("KMIPD_TEST_REWRAP_BATCH", "5"),
        ("KMIPD_TEST_REWRAP_PAUSE_MS", "150"),
    ];
    let server = Served::start(&cfg, &slow);
    let connector = inst.connector("client");
    let keys = rt.block_on(async {
        let mut c = connect(&connector, server.addr).await;
        create_keys(&mut c, "k", 60).await
    });
    // On a new connection to `addr`, every object reads with its bytes.
    let all_readable = |addr: SocketAddr, when: &str| {
        rt.block_on(async {
            let mut c = connect(&connector, addr).await;
            assert_all_readable(&mut c, &keys, when).await;
        });
    };
    let rotation = admin_cmd(&cfg, &["rotate-kek"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Two batches (10 records) re-wrapped under KEK 2, then SIGKILL.
    server.wait_for_log("KEK rotation: batch re-wrapped", 2);
    server.kill9();
    let (ok, _, err) = finish(rotation);
    assert!(!ok, "the interrupted rotation reports failure");
    assert!(
        err.contains("closed the connection without an answer"),
        "{err}"
    );

    // Restart: both KEKs are unwrapped; every object reads with its bytes, whichever KEK
    // wraps it.
    let server = Served::start(&cfg, &[]);
    all_readable(server.addr, "after a kill mid-rotation");
    // Running the command again completes the interrupted rotation (same KEK 2).
    let line = admin_ok(&cfg, &["rotate-kek"]);
    assert!(
        line.contains("(an interrupted rotation completed): KEK 2 is current"),
        "{line}"
    );
    let rewrapped: usize = line
        .split(", ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line}"));
    assert!(
        (1..=50).contains(&rewrapped),
        "the rest of the records, not all 60: {line}"
    );
    assert!(line.contains("KEK 1 retired"), "{line}");
    all_readable(server.addr, "after completing the rotation");
    server.stop();
    let server = Served::start(&cfg, &[]);
    all_readable(server.addr, "after a restart with KEK 1 retired");
    // The next rotation is an ordinary one.
    let line = admin_ok(&cfg, &["rotate-kek"]);
    assert!(
        line.contains("KEK rotated: KEK 3 is current, 60 records"),
        "{line}"
    );
    server.stop();
}

#[test]
fn a_backup_taken_while_serving_restores_into_a_new_directory_that_serves_every_object() {
    let inst = Instance::new(true);
    let cfg = inst.config();
    let rt = runtime();
    let server = Served::start(&cfg, &[]);
    let connector = inst.connector("client");
    let mut keys = rt.block_on(async {
        let mut c = connect(&connector, server.addr).await;
        create_keys(&mut c, "b", 30).await
    });
    // A writer runs during the backup; what it had before the backup started is in it.
    let (stop, writer) = spawn_writer(&rt, &connector, server.addr, "w", 0);
    std::thread::sleep(Duration::from_millis(200));
    let backup = inst.dir.join("backups").join("one.kmipdbak");
    std::fs::create_dir_all(backup.parent().unwrap()).unwrap();
    let line = admin_ok(&cfg, &["backup", backup.to_str().unwrap()]);
    assert!(
        line.starts_with("kmipd: backup: backup written to"),
        "{line}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = rt.block_on(writer).unwrap();
    // Refuses to overwrite.
    let e = admin_err(&cfg, &["backup", backup.to_str().unwrap()]);
    assert!(e.contains("exists"), "{e}");
    server.stop();

    // Restore into a new data directory, offline, and serve it with a configuration that
    // points there (same HSM, its own audit log).
    let restored = inst.dir.join("restored-data");
    let restore = || {
        run_bounded({
            let mut c = Command::new(KMIPD);
            c.args(["restore", "--config"])
                .arg(&cfg)
                .arg("--data-dir")
                .arg(&restored)
                .arg(&backup);
            c
        })
    };
    let (ok, out, err) = restore();
    assert!(ok, "restore failed: {out}{err}");
    assert!(out.contains("unlocked with the master key"), "{out}");
    // Restoring onto a non-empty directory is refused.
    let (ok, _, err) = restore();
    assert!(!ok && err.contains("not empty"), "{err}");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("data_dir = \"data\""));
    let text = text.replace("data_dir = \"data\"", "data_dir = \"restored-data\"")
        + "\n[audit]\npath = \"restored-audit.log\"\n";
    let cfg2 = inst.dir.join("restored.toml");
    std::fs::write(&cfg2, text).unwrap();
    let server = Served::start(&cfg2, &[]);
    rt.block_on(async {
        let mut c = connect(&connector, server.addr).await;
        assert_all_readable(&mut c, &keys, "in the restored store").await;
        // What the writer made during the backup: each either wholly there or absent.
        let mut present = 0;
        for (uid, bytes) in &during {
            if let Ok(got) = c.get_key_bytes(uid).await {
                assert_eq!(&*got, bytes);
                present += 1;
            }
        }
        assert!(present > 0, "keys made before the backup's cut are in it");
        keys.extend(create_keys(&mut c, "after-restore", 3).await);
        assert_eq!(c.locate_by_name("b-7").await.unwrap().len(), 1);
    });
    server.stop();
}

#[test]
fn grants_through_the_admin_socket_change_what_client2_sees() {
    let inst = Instance::new(false);
    let cfg = inst.config();
    let rt = runtime();
    let server = Served::start(&cfg, &[]);
    let sock = inst.dir.join("admin.sock");
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "socket mode 0600");
    let owner = inst.connector("client");
    let other = inst.connector("client2");
    let addr = server.addr;
    let uid = rt.block_on(async {
        let mut c = connect(&owner, addr).await;
        c.create_aes(256, Some("shared-key")).await.unwrap()
    });
    let sees = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            let mut c = connect(&other, addr).await;
            let get = c.get_key_bytes(&uid).await.is_ok();
            let located = c.locate_by_name("shared-key").await.unwrap() == vec![uid.clone()];
            (get, located)
        })
    };
    assert_eq!(sees(&rt), (false, false), "client2 sees nothing at first");

    let line = admin_ok(&cfg, &["grant", &uid, "client2", "Get, Locate"]);
    assert_eq!(
        line,
        format!("kmipd: grant: granted Get,Locate on {uid} to client2")
    );
    assert_eq!(sees(&rt), (true, true));
    let line = admin_ok(&cfg, &["grants", &uid]);
    assert_eq!(line, format!("kmipd: grants: {uid}: client2 Locate,Get"));

    let line = admin_ok(&cfg, &["revoke-grant", &uid, "client2", "Get"]);
    assert!(line.contains("revoked Get"), "{line}");
    assert_eq!(sees(&rt), (false, true));
    let line = admin_ok(&cfg, &["revoke-grant", &uid, "client2"]);
    assert!(line.contains("revoked every grant"), "{line}");
    assert_eq!(sees(&rt), (false, false));
    let line = admin_ok(&cfg, &["grants", &uid]);
    assert!(line.ends_with("no grants"), "{line}");

    // Failures: one line, non-zero exit.
    let e = admin_err(&cfg, &["grant", &uid, "client2", "Get,Frobnicate"]);
    assert!(e.contains("unknown operation \"Frobnicate\""), "{e}");
    let e = admin_err(&cfg, &["grant", "no-such-uid", "client2", "Get"]);
    assert!(e.contains("object no-such-uid not found"), "{e}");
    let e = admin_err(&cfg, &["rotate-kek"]);
    assert!(e.contains("needs the durable store"), "{e}");
    server.stop();
    assert!(!sock.exists(), "the socket is removed at shutdown");
    let e = admin_err(&cfg, &["grants", &uid]);
    assert!(e.contains("is kmipd serve running"), "{e}");
}

/// `kmipd serve` reloads `[tls]` on SIGHUP; a reload that fails (an unreadable client CA)
/// keeps the previous configuration: the server still answers, and stops cleanly on SIGTERM.
#[test]
fn sighup_reloads_tls_and_a_failed_reload_keeps_the_server_going() {
    let inst = Instance::new(false);
    let rt = runtime();
    let server = Served::start(&inst.config(), &[]);
    let client = inst.connector("client");
    let addr = server.addr;
    let hup = || {
        let pid = server.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    hup();
    server.wait_for_log("SIGHUP: TLS certificates, client CA and CRLs reloaded", 1);
    rt.block_on(async {
        connect(&client, addr).await;
    });
    let ca = inst.dir.join("certs").join("ca.pem");
    let good_ca = std::fs::read(&ca).unwrap();
    std::fs::write(&ca, "not a certificate").unwrap();
    hup();
    server.wait_for_log("SIGHUP: TLS reload failed", 1);
    // The client CA read at start still verifies new connections.
    std::fs::write(&ca, good_ca).unwrap();
    rt.block_on(async {
        connect(&client, addr).await;
    });
    server.stop();
}

/// `kmipd admin rotate-audit` moves the audit log aside while the server serves; the chain
/// goes on in the new file, and `kmipd audit verify` checks the files together (the current
/// one alone only after the rotated one's last hash).
#[test]
fn rotate_audit_continues_the_chain_and_verify_checks_the_files_together() {
    let inst = Instance::new(false);
    let cfg = inst.config();
    let rt = runtime();
    let server = Served::start(&cfg, &[]);
    let connector = inst.connector("client");
    let addr = server.addr;
    rt.block_on(async {
        let mut c = connect(&connector, addr).await;
        create_keys(&mut c, "before", 3).await;
    });
    let line = admin_ok(&cfg, &["rotate-audit"]);
    assert!(
        line.contains("kmipd: rotate-audit: audit log rotated: records 1-"),
        "{line}"
    );
    let hash = line
        .split("with hash ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap()
        .to_owned();
    rt.block_on(async {
        let mut c = connect(&connector, addr).await;
        create_keys(&mut c, "after", 2).await;
    });
    server.stop();
    let current = inst.dir.join("audit.log");
    let rotated = rotated_audit_files(&inst.dir);
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    assert!(line.contains(&rotated[0].display().to_string()), "{line}");
    // The new file starts with the command's own record.
    let first = std::fs::read_to_string(&current).unwrap();
    assert!(
        first
            .lines()
            .next()
            .unwrap()
            .contains("\"admin rotate-audit\""),
        "{first}"
    );
    let verify = |args: &[&str], files: &[&PathBuf]| {
        let mut c = Command::new(KMIPD);
        c.args(["audit", "verify"]).args(args);
        for f in files {
            c.arg(f);
        }
        run_bounded(c)
    };
    let (ok, out, err) = verify(&[], &[&rotated[0], &current]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("chain intact"), "{out}");
    let (ok, _, err) = verify(&[], &[&current]);
    assert!(!ok && err.contains("was removed"), "{err}");
    assert!(err.contains("give those files first, or --after"), "{err}");
    let (ok, out, err) = verify(&["--after", &hash], &[&current]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = verify(&[], &[&current, &rotated[0]]);
    assert!(!ok, "{err}");
}

/// `METHOD PATH` on the plain-HTTP listener at `addr`: the status line, the whole response
/// as text (lossy) and its body bytes.
fn http(addr: SocketAddr, method: &str, path: &str) -> (String, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(BOUND)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let body = out[split + 4..].to_vec();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.lines().next().unwrap().to_owned();
    (status, text, body)
}

/// `GET /metrics` on `addr`: the exposition text.
fn scrape(addr: SocketAddr) -> String {
    let (status, text, _) = http(addr, "GET", "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{text}");
    text
}

/// Adds a metrics listener on a free loopback port to the configuration at `config`.
fn with_metrics_listener(config: &Path) {
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str("\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(config, text).unwrap();
}

/// The address of `server`'s metrics listener, from its log.
fn metrics_addr(server: &Served) -> SocketAddr {
    server.wait_for_log("metrics on http://", 1);
    let log = server.log.lock().unwrap();
    let line = log
        .iter()
        .find(|l| l.contains("metrics on http://"))
        .unwrap();
    let rest = line.split("metrics on http://").nth(1).unwrap();
    rest.split('/').next().unwrap().parse().unwrap()
}

/// The value of the sample `series` (name and labels) in a scrape.
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} not in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// A record damaged on disk (one byte flipped inside sled, past its own checksums, as a bad
/// disk block would leave it), then Get over the wire: the client gets General Failure and no
/// detail; the operator's log has exactly one `error` line, naming the object, and the
/// metrics show it (`kmipd_internal_errors_total{kind="store_corrupt"}` moves, the damaged
/// record is counted). The other objects are served as before.
#[test]
fn a_damaged_record_read_by_get_reaches_the_operator_not_the_client() {
    use kmipd_proto::enums::{result_reason, result_status};
    let inst = Instance::new(true);
    with_metrics_listener(&inst.config());
    let connector = inst.connector("client");
    let rt = runtime();

    let server = Served::start(&inst.config(), &[]);
    let (damaged, intact) = rt.block_on(async {
        let mut c = connect(&connector, server.addr).await;
        let d = c.create_aes(256, Some("to-be-damaged")).await.unwrap();
        let i = c.create_aes(256, Some("intact")).await.unwrap();
        (d, i)
    });
    server.stop();
    {
        let db = sled::open(inst.dir.join("data")).unwrap();
        let objects = db.open_tree("objects").unwrap();
        let mut raw = objects.get(damaged.as_bytes()).unwrap().unwrap().to_vec();
        raw[30] ^= 0x01;
        objects.insert(damaged.as_bytes(), raw).unwrap();
        db.flush().unwrap();
    }

    let server = Served::start(&inst.config(), &[]);
    let metrics = metrics_addr(&server);
    const SERIES: &str = "kmipd_internal_errors_total{kind=\"store_corrupt\"}";
    assert_eq!(sample(&scrape(metrics), SERIES), 0);
    assert_eq!(server.log_count(" ERROR "), 0);

    rt.block_on(async {
        let mut c = connect(&connector, server.addr).await;
        match c.get(&damaged).await {
            Err(kmipd_client::Error::Kmip {
                status,
                reason,
                message,
            }) => {
                assert_eq!(status, result_status::OPERATION_FAILED);
                assert_eq!(reason, Some(result_reason::GENERAL_FAILURE));
                // No internals: not the record's fault, not the store's words.
                assert_eq!(message.as_deref(), Some("internal server error"));
            }
            other => panic!("Get of a damaged record: {other:?}"),
        }
        c.get_key_bytes(&intact).await.unwrap();
    });

    // Counted before the response was sent; logged before it too, read from the pipe here.
    let after = scrape(metrics);
    assert_eq!(sample(&after, SERIES), 1, "{after}");
    assert_eq!(sample(&after, "kmipd_store_corrupt_records"), 1, "{after}");
    assert_eq!(sample(&after, "kmipd_store_poisoned"), 0, "{after}");
    server.wait_for_log(" ERROR ", 1);
    let stopped = server.log.clone();
    server.stop();
    let log = stopped.lock().unwrap();
    let errors: Vec<&String> = log.iter().filter(|l| l.contains(" ERROR ")).collect();
    assert_eq!(
        errors.len(),
        1,
        "exactly one error line:\n{}",
        log.join("\n")
    );
    let line = errors[0];
    assert!(line.contains(&format!("object=\"{damaged}\"")), "{line}");
    assert!(line.contains("kind=\"store_corrupt\""), "{line}");
    assert!(line.contains("operation=Get"), "{line}");
    assert!(line.contains("identity=\"client\""), "{line}");
    assert!(!line.contains(&intact), "{line}");
}

/// A connector for a certificate and key written by `kmipd admin client issue|sign`.
fn enrolled_connector(inst: &Instance, cert: &Path, key_pem: &[u8]) -> Connector {
    Connector::new(
        &std::fs::read(inst.dir.join("certs").join("ca.pem")).unwrap(),
        &std::fs::read(cert).unwrap(),
        key_pem,
        TlsOptions {
            timeout: Duration::from_secs(30),
            ..TlsOptions::default()
        },
    )
    .unwrap()
}

/// True when a new connection with this identity completes a request.
fn admitted(rt: &tokio::runtime::Runtime, c: &Connector, addr: SocketAddr) -> bool {
    rt.block_on(async {
        match c.connect(addr).await {
            Err(_) => false,
            Ok(mut client) => client.query().await.is_ok(),
        }
    })
}

/// Client enrollment through the binary: the CA imported into the store, a client issued
/// (PEM files and a PKCS#12 bundle) and a CSR signed, each admitted at once; the refusals
/// (weak key, bad signature, taken name, bad name) store nothing; a revocation refuses the
/// client's next handshake without a restart while others go on; a renewal replaces the
/// certificate; every act is in the audit chain.
#[test]
fn client_enrollment_issue_sign_list_revoke_renew() {
    use rustls_pki_types::pem::PemObject;
    let inst = Instance::new(false);
    let cfg = inst.config();
    with_metrics_listener(&cfg);
    let rt = runtime();
    let server = Served::start(&cfg, &[]);
    let addr = server.addr;
    let metrics = metrics_addr(&server);
    let work = inst.dir.parent().unwrap().to_path_buf();
    let out = |name: &str| work.join(name);
    let arg = |p: &Path| p.to_str().unwrap().to_owned();

    let e = admin_err(
        &cfg,
        &["client", "issue", "array-1", "--out", &arg(&out("o0"))],
    );
    assert!(e.contains("holds no client CA"), "{e}");
    let certs = inst.dir.join("certs");
    let (ca_pem, ca_key) = (arg(&certs.join("ca.pem")), arg(&certs.join("ca.key")));
    let import_ca = ["client", "import-ca", "--cert", &ca_pem, "--key", &ca_key];
    let line = admin_ok(&cfg, &import_ca);
    assert!(line.contains("wrapped under the KEK"), "{line}");
    // Once only.
    let e = admin_err(&cfg, &import_ca);
    assert!(e.contains("already holds a client CA"), "{e}");

    // Issue: key (0600), certificate, CA, PKCS#12 and its password (0600).
    let o1 = out("o1");
    let line = admin_ok(
        &cfg,
        &[
            "client",
            "issue",
            "array-1",
            "--days",
            "30",
            "--out",
            &arg(&o1),
        ],
    );
    assert!(
        line.starts_with("kmipd: client issue: client array-1 enrolled: serial "),
        "{line}"
    );
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(o1.join("array-1.key")), 0o600);
    assert_eq!(mode(o1.join("array-1.p12")), 0o600);
    assert_eq!(mode(o1.join("array-1.p12.password")), 0o600);
    assert_eq!(
        std::fs::read(o1.join("ca.pem")).unwrap(),
        std::fs::read(certs.join("ca.pem")).unwrap()
    );
    let p12 = openssl::pkcs12::Pkcs12::from_der(&std::fs::read(o1.join("array-1.p12")).unwrap())
        .unwrap()
        .parse2(&std::fs::read_to_string(o1.join("array-1.p12.password")).unwrap())
        .unwrap();
    assert_eq!(
        p12.cert.unwrap().to_pem().unwrap(),
        std::fs::read(o1.join("array-1.pem")).unwrap()
    );
    let array1 = enrolled_connector(
        &inst,
        &o1.join("array-1.pem"),
        &std::fs::read(o1.join("array-1.key")).unwrap(),
    );
    assert!(
        admitted(&rt, &array1, addr),
        "an issued client connects at once"
    );

    // Sign a CSR made elsewhere (its key never leaves it).
    let vc_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "vcenter");
    let csr = params.serialize_request(&vc_key).unwrap().pem().unwrap();
    std::fs::write(work.join("vc.csr"), &csr).unwrap();
    let o2 = out("o2");
    let line = admin_ok(
        &cfg,
        &[
            "client",
            "sign",
            &arg(&work.join("vc.csr")),
            "--out",
            &arg(&o2),
        ],
    );
    assert!(line.contains("client vcenter enrolled"), "{line}");
    let vcenter = enrolled_connector(
        &inst,
        &o2.join("vcenter.pem"),
        vc_key.serialize_pem().as_bytes(),
    );
    assert!(admitted(&rt, &vcenter, addr));

    // Refusals, each one line, nothing stored.
    let rsa = openssl::rsa::Rsa::generate(1024).unwrap();
    let weak = openssl::pkey::PKey::from_rsa(rsa).unwrap();
    let mut req = openssl::x509::X509ReqBuilder::new().unwrap();
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "weak").unwrap();
    req.set_subject_name(&name.build()).unwrap();
    req.set_pubkey(&weak).unwrap();
    req.sign(&weak, openssl::hash::MessageDigest::sha256())
        .unwrap();
    std::fs::write(work.join("weak.csr"), req.build().to_pem().unwrap()).unwrap();
    let e = admin_err(
        &cfg,
        &[
            "client",
            "sign",
            &arg(&work.join("weak.csr")),
            "--out",
            &arg(&out("o3")),
        ],
    );
    assert!(e.contains("1024 bits: at least 2048"), "{e}");
    let mut der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec();
    let last = der.len() - 2;
    der[last] ^= 0x01;
    let tampered = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        openssl::base64::encode_block(&der)
    );
    std::fs::write(work.join("bad.csr"), tampered).unwrap();
    let e = admin_err(
        &cfg,
        &[
            "client",
            "sign",
            &arg(&work.join("bad.csr")),
            "--name",
            "other",
            "--out",
            &arg(&out("o4")),
        ],
    );
    assert!(e.contains("signature does not verify"), "{e}");
    let e = admin_err(
        &cfg,
        &["client", "issue", "array-1", "--out", &arg(&out("o5"))],
    );
    assert!(e.contains("already enrolled"), "{e}");
    let e = admin_err(
        &cfg,
        &["client", "issue", "bad name", "--out", &arg(&out("o6"))],
    );
    assert!(e.contains("refused"), "{e}");
    for o in ["o3", "o4", "o5", "o6"] {
        assert!(!out(o).exists(), "{o}: nothing written");
    }
    let (ok, listed, _) = run_bounded(admin_cmd(&cfg, &["client", "list"]));
    assert!(ok);
    let rows: Vec<&str> = listed.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "two clients enrolled, no more: {listed}");
    assert!(rows.iter().all(|r| r.ends_with("active")), "{listed}");

    // Last seen: both have connected by now (a date, not "-").
    for r in &rows {
        let last_seen = r.split_whitespace().nth(4).unwrap();
        assert!(last_seen.ends_with('Z'), "{listed}");
    }
    // A connection array-1 holds open while it is revoked.
    let mut held = rt.block_on(array1.connect(addr)).unwrap();
    rt.block_on(held.query()).unwrap();

    // Revoke array-1: its next handshake is refused, vcenter goes on; no restart.
    let line = admin_ok(
        &cfg,
        &["client", "revoke", "array-1", "--reason", "key-compromise"],
    );
    assert!(
        line.contains("revoked (key-compromise): array-1 serial"),
        "{line}"
    );
    // Its idle connection is closed by the server at once, before it sends anything.
    server.wait_for_log("its client certificate was revoked", 1);
    assert!(!admitted(&rt, &array1, addr), "a revoked client is refused");
    assert!(
        rt.block_on(held.query()).is_err(),
        "its open connection was closed"
    );
    assert!(admitted(&rt, &vcenter, addr));
    // kmipd's CRL is served for download: DER at /crl (listing array-1's serial), PEM at
    // /crl.pem; other paths and methods are refused.
    let (status, text, der) = http(metrics, "GET", "/crl");
    assert_eq!(status, "HTTP/1.1 200 OK", "{text}");
    assert!(text.contains("application/pkix-crl"), "{text}");
    let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
    let array1_pem = std::fs::read(o1.join("array-1.pem")).unwrap();
    let array1_der = rustls_pki_types::CertificateDer::from_pem_slice(&array1_pem).unwrap();
    let (_, array1_cert) = x509_parser::parse_x509_certificate(&array1_der).unwrap();
    assert!(
        crl.iter_revoked_certificates()
            .any(|r| r.raw_serial() == array1_cert.raw_serial()),
        "the CRL lists array-1"
    );
    let (status, text, pem) = http(metrics, "GET", "/crl.pem");
    assert_eq!(status, "HTTP/1.1 200 OK", "{text}");
    assert!(pem.starts_with(b"-----BEGIN X509 CRL-----"), "{text}");
    assert!(http(metrics, "GET", "/nothing").0.contains(" 404 "));
    assert!(http(metrics, "POST", "/crl").0.contains(" 405 "));

    // Renew vcenter? It made its own key: refused. Renew an issued one instead.
    let e = admin_err(
        &cfg,
        &["client", "renew", "vcenter", "--out", &arg(&out("o7"))],
    );
    assert!(e.contains("made its own key"), "{e}");
    let o8 = out("o8");
    admin_ok(
        &cfg,
        &[
            "client",
            "issue",
            "array-2",
            "--key",
            "rsa-2048",
            "--out",
            &arg(&o8),
        ],
    );
    let old = enrolled_connector(
        &inst,
        &o8.join("array-2.pem"),
        &std::fs::read(o8.join("array-2.key")).unwrap(),
    );
    assert!(admitted(&rt, &old, addr));
    let o9 = out("o9");
    let line = admin_ok(&cfg, &["client", "renew", "array-2", "--out", &arg(&o9)]);
    assert!(line.contains("previous certificates are revoked"), "{line}");
    let new = enrolled_connector(
        &inst,
        &o9.join("array-2.pem"),
        &std::fs::read(o9.join("array-2.key")).unwrap(),
    );
    assert!(admitted(&rt, &new, addr));
    assert!(
        !admitted(&rt, &old, addr),
        "the renewed-away certificate is refused"
    );
    assert!(
        openssl::x509::X509::from_pem(&std::fs::read(o9.join("array-2.pem")).unwrap())
            .unwrap()
            .public_key()
            .unwrap()
            .rsa()
            .is_ok(),
        "a renewal keeps the key type"
    );

    // Every act is in the audit chain with the names and serials.
    let audit = std::fs::read_to_string(inst.dir.join("audit.log")).unwrap();
    for (what, n) in [
        ("\"admin client import-ca\"", 2),
        ("\"admin client issue\"", 5),
        ("\"admin client sign\"", 3),
        ("\"admin client revoke\"", 1),
        ("\"admin client renew\"", 2),
    ] {
        assert_eq!(audit.matches(what).count(), n, "{what} in {audit}");
    }
    assert!(audit.contains("client vcenter enrolled: serial"));
    server.stop();
}

/// The metric names of `docs/alerts.yml`'s `expr:` lines (every `kmipd_*` word).
fn alert_rule_metrics() -> std::collections::BTreeSet<String> {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/alerts.yml");
    let text = std::fs::read_to_string(&rules).unwrap();
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("expr:"))
        .flat_map(|expr| {
            expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("kmipd_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every metric the alert rules use is exported by a running kmipd (sled store, SoftHSM2
/// token, the TLS files `kmipd init` makes): each has its `# TYPE` line in a scrape. Also the
/// gauges added for the rules hold real values: the certificate expiry of the instance's files,
/// the audit log not poisoned, a Permission Denied counted for the caller, the objects counted
/// by state after a create, activate, revoke and destroy, the HSM failure counters at 0.
#[test]
fn alert_rules_use_only_exported_metrics() {
    let names = alert_rule_metrics();
    assert!(names.len() >= 9, "{names:?}");
    let inst = Instance::new(true);
    let mut config = std::fs::read_to_string(inst.config()).unwrap();
    // Forwarding to a collector that is not there: its series exist all the same.
    config.push_str(
        "\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[audit.forward]\naddress = \"tcp:127.0.0.1:9\"\n",
    );
    std::fs::write(inst.config(), config).unwrap();
    let server = Served::start(&inst.config(), &[]);
    let metrics = metrics_addr(&server);
    // The default policy refuses a 3DES key with Permission Denied: counted for the caller.
    let rt = runtime();
    let connector = inst.connector("client");
    rt.block_on(async {
        use kmipd_proto::attributes::Attribute;
        use kmipd_proto::enums::{cryptographic_algorithm, object_type, result_reason};
        use kmipd_proto::tag;
        use kmipd_ttlv::Value;
        let mut c = connect(&connector, server.addr).await;
        let des3 = [
            Attribute::std(
                tag::CRYPTOGRAPHIC_ALGORITHM,
                Value::Enumeration(cryptographic_algorithm::DES3),
            ),
            Attribute::std(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(168)),
        ];
        let e = c
            .create(object_type::SYMMETRIC_KEY, &des3)
            .await
            .unwrap_err();
        assert_eq!(e.result_reason(), Some(result_reason::PERMISSION_DENIED));
        // Objects in five states: as created, activated, compromised, deactivated, destroyed.
        use kmipd_proto::enums::revocation_reason_code as reason;
        let mut uids = Vec::new();
        for i in 0..5 {
            uids.push(
                c.create_aes(256, Some(&format!("by-state-{i}")))
                    .await
                    .unwrap(),
            );
        }
        c.revoke(&uids[2], reason::KEY_COMPROMISE).await.unwrap();
        for uid in &uids[1..] {
            if uid != &uids[2] {
                c.activate(uid).await.unwrap();
            }
        }
        for uid in &uids[3..] {
            c.revoke(uid, reason::CESSATION_OF_OPERATION).await.unwrap();
        }
        c.destroy(&uids[4]).await.unwrap();
    });
    let text = scrape(metrics);
    let by_state = |state: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("kmipd_objects{{state=\"{state}\"}} ")))
            .and_then(|v| v.parse::<u64>().ok())
    };
    assert_eq!(by_state("pre_active"), Some(1), "{text}");
    assert_eq!(by_state("active"), Some(1), "{text}");
    assert_eq!(by_state("compromised"), Some(1), "{text}");
    assert_eq!(by_state("destroyed"), Some(1), "{text}");
    assert_eq!(by_state("deactivated"), Some(1), "{text}");
    assert_eq!(by_state("destroyed_compromised"), Some(0), "{text}");
    for op in ["rotate_kek", "rotate_master_key", "unwrap_kek"] {
        assert!(
            text.contains(&format!(
                "kmipd_hsm_failures_total{{operation=\"{op}\"}} 0\n"
            )),
            "{text}"
        );
    }
    let denied: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("kmipd_permission_denied_total{"))
        .collect();
    assert_eq!(denied.len(), 1, "{text}");
    assert!(
        denied[0].contains("client") && denied[0].ends_with("} 1"),
        "{denied:?}"
    );
    let exported: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for name in &names {
        assert!(
            exported.contains(name.as_str()),
            "docs/alerts.yml uses {name}, which kmipd does not export:\n{text}"
        );
    }
    assert!(text.contains("kmipd_audit_poisoned 0\n"), "{text}");
    let not_after = text
        .lines()
        .filter(|l| l.starts_with("kmipd_certificate_not_after_seconds{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .collect::<Vec<_>>();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // The CA and at least one server certificate, all valid now.
    assert!(not_after.len() >= 2, "{text}");
    assert!(not_after.iter().all(|t| *t > now), "{not_after:?} {now}");
    server.stop();
}

/// Dual control over the wire with the real binary: an object marked through the admin socket
/// refuses its owner's Get with a request id, `kmipd admin approve ID` (local-admin, a second
/// identity) approves it, the owner's retry gets the key once; the request, the approval and a
/// refused second approval are in the audit log.
#[test]
fn dual_control_request_approve_retry_over_the_wire() {
    let inst = Instance::new(false);
    let cfg = inst.config();
    let rt = runtime();
    let server = Served::start(&cfg, &[]);
    let owner = inst.connector("client");
    let addr = server.addr;
    let uid = rt.block_on(async {
        let mut c = connect(&owner, addr).await;
        c.create_aes(256, Some("two-person-key")).await.unwrap()
    });
    let line = admin_ok(&cfg, &["dual-control", &uid]);
    assert_eq!(
        line,
        format!("kmipd: dual-control: {uid} now needs dual control")
    );
    let get = || {
        rt.block_on(async {
            let mut c = connect(&owner, addr).await;
            c.get_key_bytes(&uid).await
        })
    };
    let refused = get().unwrap_err();
    let kmipd_client::Error::Kmip { message, .. } = &refused else {
        panic!("not a KMIP failure: {refused}");
    };
    let message = message.clone().unwrap_or_default();
    assert!(
        message.contains("needs the approval of a second administrator"),
        "{message}"
    );
    let id = message
        .split_whitespace()
        .skip_while(|w| *w != "request")
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(id.starts_with(&format!("{uid}.")), "{id}");
    let line = admin_ok(&cfg, &["approve", &id]);
    assert!(
        line.contains(&format!("approved dual control request {id}")),
        "{line}"
    );
    let e = admin_err(&cfg, &["approve", &id]);
    assert!(e.contains("already approved by local-admin"), "{e}");
    assert_eq!(get().unwrap().len(), 32, "the retry gets the key");
    assert!(get().is_err(), "the approval is used up");
    server.stop();
    let audit = std::fs::read_to_string(inst.dir.join("audit.log")).unwrap();
    let with_id: Vec<&str> = audit.lines().filter(|l| l.contains(&id)).collect();
    assert!(
        with_id.iter().any(|l| l.contains("needs the approval")),
        "the request is audited: {with_id:?}"
    );
    assert!(
        with_id
            .iter()
            .any(|l| l.contains("admin approve") && l.contains("approved dual control")),
        "the approval is audited: {with_id:?}"
    );
    assert!(
        with_id.iter().any(|l| l.contains("already approved")),
        "the refusal is audited: {with_id:?}"
    );
}

/// Dual control of the key hierarchy (`policy.dual_control_commands`, `kmipd::approval`): a
/// KEK rotation must be signed by an administrator's certificate, waits for a second
/// administrator's signed approval (unsigned, non-administrator and self-approvals refused),
/// runs on the requester's retry and uses the approval up; the reload summary names the
/// settings; an offline restore needs two administrators' approvals of that very backup file.
/// Every step is in the audit log.
#[test]
fn dual_control_of_kek_rotation_and_restore() {
    let inst = Instance::new(true);
    let cfg = inst.config();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(
        "\n[roles]\nadministrator = [\"client2\"]\n\n[policy]\n\
         dual_control_commands = [\"rotate-kek\", \"restore\"]\ndual_control_window = \"1h\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let certs = inst.dir.join("certs");
    let signer = |who: &str| {
        vec![
            "--cert".to_owned(),
            certs
                .join(format!("{who}.pem"))
                .to_str()
                .unwrap()
                .to_owned(),
            "--key".to_owned(),
            certs
                .join(format!("{who}.key"))
                .to_str()
                .unwrap()
                .to_owned(),
        ]
    };
    let signed = |who: &str, args: &[&str]| {
        let mut all = signer(who);
        all.extend(args.iter().map(|a| (*a).to_owned()));
        all
    };
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let server = Served::start(&cfg, &[]);

    let line = admin_ok(&cfg, &["reload"]);
    assert!(
        line.contains(
            "dual control (0 object groups, window 3600s, key hierarchy acts: rotate-kek,restore)"
        ),
        "{line}"
    );
    let e = admin_err(&cfg, &["rotate-kek"]);
    assert!(e.contains("must be signed by an administrator"), "{e}");
    let e = admin_err(&cfg, &refs(&signed("client", &["rotate-kek"])));
    assert!(e.contains("client is not an administrator"), "{e}");
    let e = admin_err(&cfg, &refs(&signed("admin", &["rotate-kek"])));
    assert!(
        e.contains("needs the approval of a second administrator"),
        "{e}"
    );
    let id = e
        .split_whitespace()
        .skip_while(|w| *w != "request")
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(id.starts_with("rotate-kek."), "{id}");
    let e = admin_err(&cfg, &["approve", &id]);
    assert!(e.contains("must be signed"), "{e}");
    let e = admin_err(&cfg, &refs(&signed("admin", &["approve", &id])));
    assert!(e.contains("self-approval is refused"), "{e}");
    let e = admin_err(&cfg, &refs(&signed("client", &["approve", &id])));
    assert!(e.contains("client is not an administrator"), "{e}");
    let line = admin_ok(&cfg, &refs(&signed("client2", &["approve", &id])));
    assert!(
        line.contains(&format!("approved dual control request {id}")),
        "{line}"
    );
    let line = admin_ok(&cfg, &refs(&signed("admin", &["rotate-kek"])));
    assert!(
        line.contains("requested by admin, approved by client2"),
        "the retry rotates: {line}"
    );
    let e = admin_err(&cfg, &refs(&signed("admin", &["rotate-kek"])));
    assert!(
        e.contains("needs the approval"),
        "the approval is used up: {e}"
    );
    // Not listed: the master key rotation needs no approval.
    admin_ok(&cfg, &["rotate-master-key"]);
    // A signed approval of an object's request approves as that administrator.
    let rt = runtime();
    let owner = inst.connector("client");
    let addr = server.addr;
    let key = rt.block_on(async {
        let mut c = connect(&owner, addr).await;
        c.create_aes(256, None).await.unwrap()
    });
    admin_ok(&cfg, &["dual-control", &key]);
    let get = || {
        rt.block_on(async {
            let mut c = connect(&owner, addr).await;
            c.get_key_bytes(&key).await
        })
    };
    let refused = get().unwrap_err().to_string();
    let object_request = refused
        .split_whitespace()
        .skip_while(|w| *w != "request")
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(object_request.starts_with(&format!("{key}.")), "{refused}");
    admin_ok(
        &cfg,
        &refs(&signed("client2", &["approve", &object_request])),
    );
    assert_eq!(get().unwrap().len(), 32, "approved by client2");
    let backup = inst.dir.join("one.kmipdbak");
    admin_ok(&cfg, &["backup", backup.to_str().unwrap()]);
    server.stop();

    let approve = |who: &str| {
        let mut c = Command::new(KMIPD);
        c.arg("approve-restore").args(signer(who)).arg(&backup);
        let (ok, out, err) = run_bounded(c);
        assert!(ok, "approve-restore: {out}{err}");
        let file = inst.dir.join(format!("{who}.approval"));
        std::fs::write(&file, out).unwrap();
        file
    };
    let (admin_approval, client2_approval) = (approve("admin"), approve("client2"));
    let restored = inst.dir.join("restored-data");
    let restore = |approvals: &[&PathBuf]| {
        let mut c = Command::new(KMIPD);
        c.args(["restore", "--config"])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(&restored);
        for a in approvals {
            c.arg("--approval").arg(a);
        }
        c.arg(&backup);
        run_bounded(c)
    };
    let (ok, _, err) = restore(&[&admin_approval, &admin_approval]);
    assert!(!ok && err.contains("two different administrators"), "{err}");
    assert!(!restored.exists(), "nothing restored");
    let (ok, out, err) = restore(&[&admin_approval, &client2_approval]);
    assert!(ok, "restore: {out}{err}");
    assert!(out.contains("approved by admin and client2"), "{out}");

    let audit = std::fs::read_to_string(inst.dir.join("audit.log")).unwrap();
    let with_id: Vec<&str> = audit.lines().filter(|l| l.contains(&id)).collect();
    for what in [
        "needs the approval",
        "self-approval",
        "approved dual control",
    ] {
        assert!(
            with_id.iter().any(|l| l.contains(what)),
            "{what}: {with_id:?}"
        );
    }
    assert!(audit.contains("approved by client2"), "{audit}");
    // Signed commands are recorded under their signer's identity.
    let record = |needle: &str| {
        audit
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in {audit}"))
            .to_owned()
    };
    assert!(
        record("needs the approval of a second administrator: request rotate-kek.")
            .contains("\"identity\":\"admin\""),
        "the request is admin's"
    );
    assert!(
        record(&format!("approved dual control request {id}")).contains("\"identity\":\"client2\""),
        "the approval is client2's"
    );
    assert!(
        record(&format!("approved dual control request {object_request}"))
            .contains("\"identity\":\"client2\""),
        "the object approval is client2's"
    );
    assert!(
        record("\"admin dual-control\"").contains("\"identity\":\"local-admin\""),
        "unsigned commands stay local-admin's"
    );
    assert!(audit.contains("two different administrators"), "{audit}");
    assert!(audit.contains("approved by admin and client2"), "{audit}");
}
