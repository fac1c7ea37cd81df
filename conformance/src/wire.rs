//! The wire mode: the test cases replayed over mutual TLS to a kmipd process, as a client on the
//! network sees the server (framing, TLS, the identity from the client certificate, the store
//! and HSM of a real deployment), rather than to the engine called directly.
//!
//! - [`WireTarget`] is a [`Target`] over one `kmipd-client` connection (opened at the first
//!   request, reopened once when the server closed it between two requests).
//! - [`SpawnedServer`] is a fresh kmipd for one test case: `kmipd init` in a temporary folder
//!   (SoftHSM2 token and sled store by default, as a deployment; a PostgreSQL database instead
//!   of sled with [`SpawnOptions::postgres_url`]; `--no-hsm` for the in-memory store), then
//!   `kmipd serve` on `127.0.0.1:0`; the bound address is read from the server's
//!   `kmipd listening addr=...` log line. Dropping it kills and reaps the process and removes
//!   the folder.
//!
//! Every wait is bounded: `init` and start-up by [`SpawnOptions`], each connect, handshake,
//! write and read by the client's timeout. A wire target cannot move the server's clock
//! ([`Target::advance_clock`] is `false`), so the cases that replay a recorded timeline (the
//! Test Cases notes' TC_92 waits for a deactivation date) can pass only in-process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kmipd_client::{Client, Connector, TlsOptions};
use kmipd_ttlv::Ttlv;

use crate::Target;

/// The bound on each network wait of a wire target (connect, handshake, one request's write,
/// its response).
pub const NETWORK_TIMEOUT: Duration = Duration::from_secs(30);

/// One TLS connection's worth of settings: where the server is and who the client is.
#[derive(Clone)]
pub struct Endpoint {
    connector: Connector,
    addr: SocketAddr,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The server at `addr`, trusted through the CA certificates of `ca`, spoken to with the
    /// client certificate chain `cert` and its key `key` (PEM files); the server certificate must
    /// name `server_name`.
    pub fn from_files(
        addr: SocketAddr,
        server_name: &str,
        ca: &Path,
        cert: &Path,
        key: &Path,
    ) -> Result<Endpoint, String> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let options = TlsOptions {
            server_name: server_name.to_owned(),
            timeout: NETWORK_TIMEOUT,
            ..TlsOptions::default()
        };
        let connector = Connector::new(&read(ca)?, &read(cert)?, &read(key)?, options)
            .map_err(|e| format!("client TLS setup: {e}"))?;
        Ok(Endpoint { connector, addr })
    }

    /// A certificate folder holding `ca.pem`, `client.pem` and `client.key` (as `kmipd init`
    /// writes under `certs/`).
    pub fn from_cert_dir(
        addr: SocketAddr,
        server_name: &str,
        dir: &Path,
    ) -> Result<Endpoint, String> {
        Endpoint::from_files(
            addr,
            server_name,
            &dir.join("ca.pem"),
            &dir.join("client.pem"),
            &dir.join("client.key"),
        )
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TLS setup.
    pub fn connector(&self) -> &Connector {
        &self.connector
    }
}

/// A KMIP server over mutual TLS, as a [`Target`]. One connection, opened on the first request;
/// the spawned server it talks to (if any) lives as long as it.
pub struct WireTarget {
    // Dropped in this order: the connection, its runtime, then the server process.
    client: Option<Client>,
    runtime: tokio::runtime::Runtime,
    endpoint: Endpoint,
    server: Option<SpawnedServer>,
    /// The runner's endpoint for the server's Put and Notify messages, once subscribed.
    push: Option<crate::push_endpoint::PushEndpoint>,
}

impl std::fmt::Debug for WireTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireTarget")
            .field("endpoint", &self.endpoint)
            .field("connected", &self.client.is_some())
            .field("server", &self.server)
            .finish()
    }
}

impl WireTarget {
    /// A target for the server at `endpoint` (a running server: `--server`).
    pub fn new(endpoint: Endpoint) -> Result<WireTarget, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the client runtime: {e}"))?;
        Ok(WireTarget {
            client: None,
            runtime,
            endpoint,
            server: None,
            push: None,
        })
    }

    /// A fresh kmipd (see [`SpawnedServer::start`]) and a target speaking to it as the
    /// instance's `client` identity.
    pub fn spawn(kmipd: &Path, options: &SpawnOptions) -> Result<WireTarget, String> {
        let server = SpawnedServer::start(kmipd, options)?;
        let endpoint = server.endpoint("client")?;
        let mut target = WireTarget::new(endpoint)?;
        target.server = Some(server);
        Ok(target)
    }

    fn connect(&self) -> Result<Client, String> {
        self.runtime
            .block_on(self.endpoint.connector.connect(self.endpoint.addr))
            .map_err(|e| format!("connecting to {}: {e}", self.endpoint.addr))
    }

    /// Why the transport failed, with the spawned server's last log lines when it died.
    fn transport_error(&mut self, e: &kmipd_client::Error) -> String {
        match self.server.as_mut().and_then(SpawnedServer::exit_report) {
            Some(report) => format!("{e} ({report})"),
            None => e.to_string(),
        }
    }
}

/// Failures that mean "the server had closed this connection before reading the request": the
/// request was not processed, so sending it again on a new connection is safe.
fn closed_before_request(e: &kmipd_client::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e,
        kmipd_client::Error::Io(io) if matches!(
            io.kind(),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        )
    )
}

impl Target for WireTarget {
    fn send(&mut self, request: &Ttlv) -> Result<Ttlv, String> {
        let (mut client, reused) = match self.client.take() {
            Some(c) => (c, true),
            None => (self.connect()?, false),
        };
        let mut result = self.runtime.block_on(client.send_ttlv(request));
        if reused && result.as_ref().is_err_and(closed_before_request) {
            client = self.connect()?;
            result = self.runtime.block_on(client.send_ttlv(request));
        }
        match result {
            Ok(response) => {
                self.client = Some(client);
                Ok(response)
            }
            Err(e) => Err(self.transport_error(&e)),
        }
    }

    // advance_clock: the default (`false`); a server over the network keeps its own clock.

    /// A spawned server only, before the first request: the runner opens its endpoint
    /// ([`crate::push_endpoint`]) and restarts the server with a `[[push]]` destination for the
    /// identity `client` pointing to it.
    fn subscribe(&mut self, put: bool, notify: bool) -> Result<(), String> {
        if self.client.is_some() {
            return Err(String::from(
                "a subscription comes before the first request",
            ));
        }
        let Some(server) = self.server.as_mut() else {
            return Err(String::from(
                "a running server (--server) has no push destination for the runner",
            ));
        };
        let endpoint = crate::push_endpoint::PushEndpoint::start(&server.instance_dir())?;
        let mut events = Vec::new();
        if put {
            events.push("\"put\"");
        }
        if notify {
            events.push("\"notify\"");
        }
        let table = format!(
            "\n[[push]]\nidentity = \"client\"\naddress = \"{}\"\n\
             client_cert = \"certs/push-client.pem\"\nclient_key = \"certs/push-client.key\"\n\
             events = [{}]\nretry_max = \"1s\"\n",
            endpoint.addr(),
            events.join(", ")
        );
        server.restart_with(&table)?;
        self.endpoint.addr = server.addr();
        self.push = Some(endpoint);
        Ok(())
    }

    fn pushed(&mut self, wait: bool) -> Result<Option<Ttlv>, String> {
        match self.push.as_mut() {
            Some(p) => p.next(wait),
            None => Ok(None),
        }
    }

    fn answer_pushed(&mut self, response: &Ttlv) -> Result<(), String> {
        match self.push.as_mut() {
            Some(p) => p.answer(response),
            None => Err(String::from("not subscribed")),
        }
    }

    /// A spawned instance's `admin` identity (`kmipd init` lists it in
    /// `identity.administrators`), before the first request; a running server's (`--server`)
    /// administrators are not known.
    fn administrator(&mut self) -> bool {
        if self.client.is_some() {
            return false;
        }
        match self.server.as_ref().map(|s| s.endpoint("admin")) {
            Some(Ok(endpoint)) => {
                self.endpoint = endpoint;
                true
            }
            _ => false,
        }
    }
}

impl Drop for WireTarget {
    fn drop(&mut self) {
        // A polite close_notify (bounded by the client's timeout); the server would take a bare
        // TCP close quietly too.
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.shutdown());
        }
    }
}

/// A target whose every request fails with one reason (a server that could not be started):
/// the test case fails with that reason and the run goes on.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl Target for Unavailable {
    fn send(&mut self, _request: &Ttlv) -> Result<Ttlv, String> {
        Err(self.0.clone())
    }
}

/// How [`SpawnedServer::start`] makes its instance.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// The SoftHSM2 token and the sled store (`kmipd init` without `--no-hsm`), as a real
    /// deployment. `false`: `--no-hsm`, the in-memory store.
    pub hsm: bool,
    /// Bound on `kmipd init` and, separately, on the server's start-up.
    pub start_timeout: Duration,
    /// With `hsm`: keep the objects in this PostgreSQL database instead of sled (`[store]
    /// backend = "postgres"`, `url = ...` in the instance's `kmipd.toml`).
    pub postgres_url: Option<String>,
    /// Also serve KMIP over HTTPS (`[https]` on another loopback port).
    pub https: bool,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            hsm: true,
            start_timeout: Duration::from_secs(60),
            postgres_url: None,
            https: false,
        }
    }
}

/// The log line `kmipd serve` writes once it is bound (`tracing` text format).
const LISTENING: &str = "kmipd listening addr=";
/// The log line of the HTTPS listener (written before [`LISTENING`]).
const HTTPS_LISTENING: &str = "KMIP over HTTPS on https://";

/// A kmipd process on a temporary instance. Dropping it kills and reaps the process and removes
/// the temporary folder.
#[derive(Debug)]
pub struct SpawnedServer {
    child: Option<Child>,
    /// The temporary folder: the instance (`kmipd/`) and the logs.
    root: PathBuf,
    addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    /// The binary and options it was started with (for [`SpawnedServer::restart_with`]).
    kmipd: PathBuf,
    options: SpawnOptions,
}

impl SpawnedServer {
    /// `kmipd init --dir TMP/kmipd --listen 127.0.0.1:0 [--no-hsm]`, then
    /// `kmipd serve --config TMP/kmipd/kmipd.toml` with its log in `TMP/serve.log`, waiting
    /// for the log line that gives the bound address.
    pub fn start(kmipd: &Path, options: &SpawnOptions) -> Result<SpawnedServer, String> {
        let root = fresh_temp_dir()?;
        // From here on the guard owns the folder (and later the process).
        let mut guard = SpawnedServer {
            child: None,
            root,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            https_addr: None,
            kmipd: kmipd.to_path_buf(),
            options: options.clone(),
        };
        let instance = guard.root.join("kmipd");
        let init_log = guard.root.join("init.log");
        let mut init = Command::new(kmipd);
        init.arg("init")
            .arg("--dir")
            .arg(&instance)
            .args(["--listen", "127.0.0.1:0"]);
        if !options.hsm {
            init.arg("--no-hsm");
        }
        let status = run_bounded(&mut init, &init_log, options.start_timeout)
            .map_err(|e| format!("kmipd init: {e}"))?;
        if !status.success() {
            return Err(format!(
                "kmipd init failed ({status}): {}",
                tail(&init_log, 3)
            ));
        }
        if let Some(url) = &options.postgres_url {
            use_postgres(&instance.join("kmipd.toml"), url)?;
        }
        // The OASIS profiles' mandatory cases create 3DES keys and RSA-1024 pairs, which
        // kmipd's default policy refuses for new keys (docs/policy.md): the conformance runs
        // measure the protocol, so their servers have no algorithm rule.
        let config = instance.join("kmipd.toml");
        let mut text =
            std::fs::read_to_string(&config).map_err(|e| format!("{}: {e}", config.display()))?;
        text.push_str("\n[policy]\nenforce_algorithms = false\n");
        // The header credentials the OASIS cases assume valid, as in-process.
        text.push_str(&crate::case_credentials_toml());
        if options.https {
            text.push_str("\n[https]\nlisten = \"127.0.0.1:0\"\n");
        }
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        guard.serve()?;
        Ok(guard)
    }

    /// Stops the server, appends `toml` to its `kmipd.toml` and starts it again on the same
    /// instance (a new port): a configuration the runner adds before the first request
    /// (`[[push]]`).
    pub fn restart_with(&mut self, toml: &str) -> Result<(), String> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let config = self.instance_dir().join("kmipd.toml");
        let mut text =
            std::fs::read_to_string(&config).map_err(|e| format!("{}: {e}", config.display()))?;
        text.push_str(toml);
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        self.serve()
    }

    /// `kmipd serve` on the instance, waiting for the log line that gives the bound address.
    fn serve(&mut self) -> Result<(), String> {
        let (kmipd, options) = (self.kmipd.clone(), self.options.clone());
        let instance = self.instance_dir();
        let guard = self;
        let serve_log = guard.root.join("serve.log");
        let log = std::fs::File::create(&serve_log)
            .map_err(|e| format!("{}: {e}", serve_log.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", serve_log.display()))?;
        let child = Command::new(&kmipd)
            .arg("serve")
            .arg("--config")
            .arg(instance.join("kmipd.toml"))
            // The address line is an info event; a RUST_LOG of the caller must not hide it.
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log2)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", kmipd.display()))?;
        guard.child = Some(child);
        let deadline = Instant::now() + options.start_timeout;
        loop {
            if let Some(addr) = listening_addr(&serve_log, LISTENING) {
                guard.addr = addr;
                if options.https {
                    guard.https_addr = listening_addr(&serve_log, HTTPS_LISTENING);
                    if guard.https_addr.is_none() {
                        return Err(format!(
                            "kmipd serve: no HTTPS listener: {}",
                            tail(&serve_log, 3)
                        ));
                    }
                }
                return Ok(());
            }
            if let Some(report) = guard.exit_report() {
                return Err(format!("kmipd serve: {report}"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "kmipd serve: not listening after {:?}: {}",
                    options.start_timeout,
                    tail(&serve_log, 3)
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The instance folder (`kmipd init --dir`).
    pub fn instance_dir(&self) -> PathBuf {
        self.root.join("kmipd")
    }

    /// An endpoint for this server as the identity `who` (`client`, `client2`, `admin`).
    pub fn endpoint(&self, who: &str) -> Result<Endpoint, String> {
        let certs = self.instance_dir().join("certs");
        Endpoint::from_files(
            self.addr,
            "localhost",
            &certs.join("ca.pem"),
            &certs.join(format!("{who}.pem")),
            &certs.join(format!("{who}.key")),
        )
    }

    /// An endpoint for this server's HTTPS listener (started with [`SpawnOptions::https`]) as
    /// the identity `who`.
    pub fn https_endpoint(&self, who: &str) -> Result<Endpoint, String> {
        let addr = self
            .https_addr
            .ok_or_else(|| String::from("the server was started without HTTPS"))?;
        let mut endpoint = self.endpoint(who)?;
        endpoint.addr = addr;
        Ok(endpoint)
    }

    /// When the process has exited: its status and last log lines.
    fn exit_report(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        Some(format!(
            "the server exited ({status}): {}",
            tail(&self.root.join("serve.log"), 3)
        ))
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Points the `[store]` of an instance's `kmipd.toml` (sled, as `kmipd init` writes it with
/// an HSM) at a PostgreSQL database.
fn use_postgres(config: &Path, url: &str) -> Result<(), String> {
    const SLED: &str = "backend = \"sled\"\ndata_dir = \"data\"\n";
    let text = std::fs::read_to_string(config).map_err(|e| format!("{}: {e}", config.display()))?;
    if !text.contains(SLED) {
        return Err(format!(
            "{}: no sled [store] to replace (kmipd init without an HSM?)",
            config.display()
        ));
    }
    let text = text.replace(SLED, &format!("backend = \"postgres\"\nurl = {url:?}\n"));
    std::fs::write(config, text).map_err(|e| format!("{}: {e}", config.display()))
}

/// A new, empty folder under the system's temporary folder, private to this process.
fn fresh_temp_dir() -> Result<PathBuf, String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!(
            "kmip-conformance-{}-{n}-{nanos:08x}",
            std::process::id()
        ));
        match std::fs::DirBuilder::new().create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
    }
    Err(format!(
        "cannot create a temporary folder in {}",
        base.display()
    ))
}

/// Runs a command with its output in `log`, killing it when it takes longer than `timeout`.
fn run_bounded(
    command: &mut Command,
    log: &Path,
    timeout: Duration,
) -> Result<std::process::ExitStatus, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start it: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("not done after {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.to_string());
            }
        }
    }
}

/// The address after `marker` (`kmipd listening addr=...`) in a log, once it is there.
fn listening_addr(log: &Path, marker: &str) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().find_map(|line| {
        let rest = line.split_once(marker)?.1;
        rest.split(|c: char| c.is_whitespace() || c == '/')
            .next()?
            .parse()
            .ok()
    })
}

/// The last `n` lines of a log, joined with ` | ` (for one-line error messages).
fn tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    lines.get(start..).unwrap_or_default().join(" | ")
}

/// A factory for [`crate::run_file`]: a fresh spawned kmipd per test case (a failure to start
/// one fails that test case with the reason).
pub fn spawn_factory(
    kmipd: PathBuf,
    options: SpawnOptions,
) -> impl Fn() -> Box<dyn Target> + Send + Sync {
    move || -> Box<dyn Target> {
        match WireTarget::spawn(&kmipd, &options) {
            Ok(t) => Box::new(t),
            Err(e) => Box::new(Unavailable(e)),
        }
    }
}

/// A factory for [`crate::run_file`]: a new connection per test case to one running server.
pub fn server_factory(endpoint: Endpoint) -> impl Fn() -> Box<dyn Target> + Send + Sync {
    move || -> Box<dyn Target> {
        match WireTarget::new(endpoint.clone()) {
            Ok(t) => Box::new(t),
            Err(e) => Box::new(Unavailable(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_the_address() {
        let dir = fresh_temp_dir().unwrap();
        let log = dir.join("serve.log");
        std::fs::write(
            &log,
            "2026-11-30T02:48:22.358461Z  INFO kmipd::server: kmipd listening \
             addr=127.0.0.1:46479\n",
        )
        .unwrap();
        assert_eq!(
            listening_addr(&log, LISTENING),
            Some(SocketAddr::from(([127, 0, 0, 1], 46479)))
        );
        std::fs::write(
            &log,
            "2026-12-06T19:23:41.817306Z  INFO kmipd::server::start: KMIP over HTTPS on \
             https://127.0.0.1:15697/kmip addr=127.0.0.1:15697\n",
        )
        .unwrap();
        assert_eq!(
            listening_addr(&log, HTTPS_LISTENING),
            Some(SocketAddr::from(([127, 0, 0, 1], 15697)))
        );
        std::fs::write(&log, "a\n\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&log, 3), "b | c | d");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_binary_is_a_reason_not_a_panic() {
        let make = spawn_factory(PathBuf::from("/nonexistent/kmipd"), SpawnOptions::default());
        let mut target = make();
        let request = Ttlv::new(
            crate::tags::REQUEST_MESSAGE,
            kmipd_ttlv::Value::Structure(Vec::new()),
        );
        let e = target.send(&request).unwrap_err();
        assert!(e.contains("kmipd init"), "{e}");
    }
}
