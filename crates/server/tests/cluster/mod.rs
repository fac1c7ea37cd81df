//! A harness for tests of several `kmipd serve` processes on one PostgreSQL database, shared
//! by the tests that need it (`mod cluster;`): one instance made by `kmipd init` (certificates,
//! one SoftHSM2 token directory that every node uses, so every node has the same master key,
//! or a copy per node for nodes that start at the same moment),
//! a private PostgreSQL cluster from `kmipd_test_support::pg`, and one configuration file per
//! node (its own audit log and admin socket, the database shared).
//!
//! Every wait is bounded: child processes are killed past [`BOUND`] and when their handle
//! drops; client calls have timeouts. Nothing here asserts speed.
// Each test crate includes this module and uses only part of it.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kmipd_client::{Client, Connector, TlsOptions};
use kmipd_test_support::pg::PgCluster;

/// The binary under test.
pub const KMIPD: &str = env!("CARGO_BIN_EXE_kmipd");
/// Bound on one command, one server start, one wait.
pub const BOUND: Duration = Duration::from_secs(120);

/// Runs a command to completion within [`BOUND`]; (success, stdout, stderr).
pub fn run_bounded(mut cmd: Command) -> (bool, String, String) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    kmipd_test_support::finish_bounded(child, BOUND)
}

/// A `kmipd serve` child process; SIGKILLed when dropped.
pub struct Node {
    child: Child,
    addr: Arc<Mutex<Option<SocketAddr>>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// Starts `kmipd serve --config CONFIG --listen 127.0.0.1:0` and returns at once (see
    /// [`Node::wait_listening`]).
    pub fn spawn(config: &Path) -> Node {
        let mut cmd = Command::new(KMIPD);
        cmd.args(["serve", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        reap_with_test_process(child.id());
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr = Arc::new(Mutex::new(None));
        {
            let (log, addr) = (log.clone(), addr.clone());
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(a) = line.split("kmipd listening addr=").nth(1) {
                        *addr.lock().unwrap() = a.trim().parse().ok();
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        Node { child, addr, log }
    }

    /// Starts a node and waits until it listens.
    pub fn start(config: &Path) -> Node {
        let mut n = Node::spawn(config);
        n.wait_listening();
        n
    }

    /// Waits for the "listening" line; panics with the log if the process exits first.
    pub fn wait_listening(&mut self) -> SocketAddr {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(a) = *self.addr.lock().unwrap() {
                return a;
            }
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "kmipd exited with {s} before listening:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "kmipd did not listen:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The KMIP address (after [`Node::wait_listening`]).
    pub fn addr(&self) -> SocketAddr {
        self.addr
            .lock()
            .unwrap()
            .expect("the node is not listening yet")
    }

    /// Everything the node logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits for the process to exit on its own; its status and log.
    pub fn wait_exit(mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(200));
                return (s, self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "kmipd did not exit:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let (s, log) = self.wait_exit();
        assert!(s.success(), "kmipd exited with {s}:\n{log}");
    }

    /// `GET /metrics` of a node configured with `[metrics]` (after it listens), at the address
    /// it logged.
    pub fn scrape(&self) -> String {
        use std::io::{Read, Write};
        let log = self.log_text();
        let addr: SocketAddr = log
            .lines()
            .find_map(|l| l.split("metrics on http://").nth(1))
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
            .expect("no metrics listener logged");
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        out
    }

    /// SIGKILL, at once.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `Drop` kills a node, but a test binary killed with SIGKILL runs no `Drop`: a detached `sh`
/// loop SIGKILLs the node once the test process is gone (checked once a second), and ends by
/// itself once the node is gone (exited and reaped).
fn reap_with_test_process(pid: u32) {
    let script = format!(
        "while [ -d /proc/{test} ] && [ -d /proc/{pid} ]; do sleep 1; done; \
         [ -d /proc/{test} ] || kill -9 {pid} 2>/dev/null",
        test = std::process::id()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    // Reaped by nobody while the test runs (a zombie at most, gone with the test process).
    if let Err(e) = cmd.spawn() {
        panic!("cannot start the node's watchdog: {e}");
    }
}

/// One instance directory (certificates, the SoftHSM2 token every node uses) and one
/// PostgreSQL database.
pub struct Cluster {
    _tmp: tempfile::TempDir,
    /// The instance directory (`kmipd init`); its `kmipd.toml` is a sled instance.
    pub dir: PathBuf,
    /// The PostgreSQL cluster.
    pub pg: Arc<PgCluster>,
    /// The database the nodes share.
    pub db: String,
}

impl Cluster {
    /// A new instance and a new database on the PostgreSQL cluster shared by this test binary.
    pub fn new() -> Cluster {
        Cluster::on(PgCluster::shared())
    }

    /// A new instance and a new database on `pg` (e.g. a cluster of the test's own, to stop
    /// and start).
    pub fn on(pg: Arc<PgCluster>) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap().join("kmipd");
        let mut cmd = Command::new(KMIPD);
        cmd.args(["init", "--dir"]).arg(&dir);
        let (ok, out, err) = run_bounded(cmd);
        assert!(ok, "kmipd init failed:\n{out}\n{err}");
        let db = pg.create_database();
        Cluster {
            _tmp: tmp,
            dir,
            pg,
            db,
        }
    }

    /// The URL of the shared database.
    pub fn url(&self) -> String {
        self.pg.url(&self.db)
    }

    /// The sled configuration `kmipd init` wrote.
    pub fn sled_config(&self) -> PathBuf {
        self.dir.join("kmipd.toml")
    }

    /// Writes `DIR/<name>.toml`: the instance's configuration with the PostgreSQL store at
    /// `url`, and its own audit log and admin socket; `extra_store` is appended to `[store]`.
    pub fn node_config_with(&self, name: &str, url: &str, extra_store: &str) -> PathBuf {
        let text = std::fs::read_to_string(self.sled_config()).unwrap();
        let sled = "backend = \"sled\"\ndata_dir = \"data\"\n";
        assert!(text.contains(sled), "init's [store] changed:\n{text}");
        let store = format!("backend = \"postgres\"\nurl = {url:?}\n{extra_store}");
        let mut text = text.replace(sled, &store);
        // The admin socket goes into init's own [admin] table when it wrote one.
        let socket = format!("socket = \"admin-{name}.sock\"\n");
        if text.contains("\n[admin]\n") {
            text = text.replacen("\n[admin]\n", &format!("\n[admin]\n{socket}"), 1);
        } else {
            text.push_str(&format!("\n[admin]\n{socket}"));
        }
        text.push_str(&format!("\n[audit]\npath = \"audit-{name}.log\"\n"));
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// [`Cluster::node_config`], but the node gets its own copy of the SoftHSM2 token (the
    /// same master key, as in an HSM cluster whose partitions replicate one key), made now.
    ///
    /// For nodes that start at the same moment: SoftHSM2 rewrites its token file at every
    /// login, and another process reading that file at that moment fails with
    /// CKR_GENERAL_ERROR (seen in CI). A network HSM has no such file; the master key
    /// rotation test keeps the shared token, whose nodes start one after the other.
    pub fn node_config_own_hsm(&self, name: &str) -> PathBuf {
        let path = self.node_config(name);
        let tokens = self.dir.join(format!("tokens-{name}"));
        let (ok, out, err) = run_bounded({
            let mut cmd = Command::new("cp");
            cmd.arg("-a").arg(self.dir.join("tokens")).arg(&tokens);
            cmd
        });
        assert!(ok, "cp tokens: {out}{err}");
        let conf = std::fs::read_to_string(self.dir.join("softhsm2.conf")).unwrap();
        let shared = format!(
            "directories.tokendir = {}\n",
            self.dir.join("tokens").display()
        );
        assert!(
            conf.contains(&shared),
            "init's softhsm2.conf changed:\n{conf}"
        );
        let own = format!("directories.tokendir = {}\n", tokens.display());
        let conf_path = self.dir.join(format!("softhsm2-{name}.conf"));
        std::fs::write(&conf_path, conf.replace(&shared, &own)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let line = "softhsm2_conf = \"softhsm2.conf\"\n";
        assert!(text.contains(line), "init's [hsm] changed:\n{text}");
        let text = text.replace(line, &format!("softhsm2_conf = \"softhsm2-{name}.conf\"\n"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// [`Cluster::node_config_with`] on the shared database, short timeouts.
    pub fn node_config(&self, name: &str) -> PathBuf {
        self.node_config_with(
            name,
            &self.url(),
            "connect_timeout_ms = 2000\nstatement_timeout_ms = 5000\ndeadline_ms = 10000\n",
        )
    }

    /// A client connector with identity `who` (`client`, `client2`, `admin`).
    pub fn connector(&self, who: &str) -> Connector {
        connector_in(&self.dir, who)
    }
}

/// `kmipd init --dir DIR` through the binary, with its SoftHSM2 token (a sled store that
/// survives restarts) or without (`--no-hsm`: an in-memory store).
pub fn init(dir: &Path, hsm: bool) {
    let mut cmd = Command::new(KMIPD);
    cmd.args(["init", "--dir"]).arg(dir);
    if !hsm {
        cmd.arg("--no-hsm");
    }
    let (ok, out, err) = run_bounded(cmd);
    assert!(ok, "kmipd init failed:\n{out}\n{err}");
}

/// A client connector with identity `who` of the instance in `dir` (made by `kmipd init`).
pub fn connector_in(dir: &Path, who: &str) -> Connector {
    let read = |p: PathBuf| std::fs::read(p).unwrap();
    let certs = dir.join("certs");
    Connector::new(
        &read(certs.join("ca.pem")),
        &read(certs.join(format!("{who}.pem"))),
        &read(certs.join(format!("{who}.key"))),
        TlsOptions {
            timeout: Duration::from_secs(30),
            ..TlsOptions::default()
        },
    )
    .unwrap()
}

/// Appends a metrics listener on a free loopback port to the configuration at `config`.
pub fn with_metrics(config: &Path) {
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str("\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(config, text).unwrap();
}

/// The value of the sample `series` (name and labels) in a scrape; 0 when absent (a counter
/// with labels has no series until it moves).
pub fn sample(scrape: &str, series: &str) -> u64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// A small runtime for the clients.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A client connected to `addr`.
pub async fn connect(c: &Connector, addr: SocketAddr) -> Client {
    c.connect(addr).await.unwrap()
}
