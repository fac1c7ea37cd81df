//! `kmip-bench`: a native KMIP load generator over mutual TLS.
//!
//! It measures any KMIP server (kmipd, PyKMIP's server, ...) with a closed loop: N connections,
//! each sending one request and waiting for its response before the next. Latencies go into an
//! HDR histogram (microsecond resolution, 3 significant digits); the run is bounded by a
//! request count or a duration and stops by itself.
//!
//! Requests are encoded once, before the clock starts, wherever they do not change between
//! operations (Get of a given key, Create, Locate of a given name, Encrypt, Sign): the hot loop
//! writes bytes, reads the framed response and checks each batch item's Result Status. This
//! keeps the generator's own cost low, since it shares the machine with the server
//! (`--client typed` runs the same workloads through `kmipd-client`'s convenience calls, to
//! measure what they add).
//!
//! A workload the server cannot do (PyKMIP's server has no ECDSA key pairs, no AES-GCM, no
//! Locate by Name filter in some versions) is detected during setup, before measuring, and
//! reported as `unsupported` (exit status 3) rather than as a number.

mod ops;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use kmipd_client::{Client, Connector, TlsOptions};
use kmipd_proto::message::ProtocolVersion;

use crate::ops::{Plan, Setup};

/// A KMIP load generator over mutual TLS.
#[derive(Debug, Parser)]
#[command(name = "kmip-bench", version, about)]
struct Args {
    /// The server, HOST:PORT.
    #[arg(long)]
    server: String,
    /// CA certificate(s) that signed the server's certificate (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// Client certificate chain (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Client private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The name the server certificate must carry (no SNI is sent for IP addresses).
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Concurrent connections (one closed-loop worker each).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// What each operation does.
    #[arg(long, value_enum)]
    workload: Workload,
    /// Stop after this many operations (all connections together).
    #[arg(long, conflicts_with = "seconds", required_unless_present = "seconds")]
    requests: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<f64>,
    /// KMIP protocol version of the requests (1.0 .. 2.1). Default 1.2, except 1.4 for
    /// `encrypt` (AES-GCM's tag field exists from 1.4).
    #[arg(long)]
    version: Option<String>,
    /// A new TLS connection for every operation (connect, handshake, one request, close):
    /// measures handshakes per second.
    #[arg(long)]
    reconnect: bool,
    /// With --reconnect: no TLS session resumption (every handshake is a full one).
    #[arg(long, requires = "reconnect")]
    no_resumption: bool,
    /// Keys created during setup for `get`, `locate` and `modify` (spread over the connections).
    #[arg(long, default_value_t = 64)]
    keys: usize,
    /// Runtime threads of the generator (1: a single-threaded runtime, leaving the other
    /// cores to the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// `raw`: requests encoded once, responses checked for Result Status; `typed`: through
    /// kmipd-client's convenience calls (for comparison).
    #[arg(long, value_enum, default_value_t = ClientPath::Raw)]
    client: ClientPath,
    /// Print a JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// Bound on every network wait, in seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
}

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    /// Get of keys created during setup.
    Get,
    /// Create of an AES-256 key (durable on kmipd).
    Create,
    /// Create, Get, Destroy (one operation = the three requests).
    Cycle,
    /// Locate by Name of keys created during setup.
    Locate,
    /// Modify Attribute (a custom attribute, a new value each time) of keys created during
    /// setup: a durable write that does not grow the store.
    Modify,
    /// AES-GCM Encrypt of 1 KiB.
    Encrypt,
    /// ECDSA P-256 Sign (SHA-256) of 64 bytes.
    Sign,
    /// Each connection sends one Discover Versions, then stays open and idle until the end
    /// of `--seconds` (to measure the server's memory per idle connection).
    Idle,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Get => "get",
            Workload::Create => "create",
            Workload::Cycle => "cycle",
            Workload::Locate => "locate",
            Workload::Modify => "modify",
            Workload::Encrypt => "encrypt",
            Workload::Sign => "sign",
            Workload::Idle => "idle",
        }
    }
}

/// How requests are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ClientPath {
    /// Pre-encoded requests, light response check.
    Raw,
    /// kmipd-client convenience calls.
    Typed,
}

fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    let (major, minor) = s
        .split_once('.')
        .ok_or_else(|| format!("version {s:?}: expected MAJOR.MINOR"))?;
    let major: i32 = major.parse().map_err(|_| format!("version {s:?}"))?;
    let minor: i32 = minor.parse().map_err(|_| format!("version {s:?}"))?;
    let known = matches!((major, minor), (1, 0..=4) | (2, 0..=1));
    if !known {
        return Err(format!(
            "version {s:?}: kmip-bench speaks 1.0-1.4, 2.0 and 2.1"
        ));
    }
    Ok(ProtocolVersion::new(major, minor))
}

/// Per-worker results.
struct WorkerResult {
    hist: Histogram<u64>,
    errors: u64,
    resumed: u64,
    first_error: Option<String>,
}

/// What the workers share.
struct Shared {
    connector: Connector,
    addr: SocketAddr,
    plan: Plan,
    /// Operations left to start (count-bounded runs); u64::MAX when time-bounded.
    remaining: AtomicU64,
    /// Set once every worker is connected (time-bounded runs).
    deadline: std::sync::OnceLock<Instant>,
    reconnect: bool,
    idle: bool,
}

impl Shared {
    /// Takes the right to start one more operation.
    fn next(&self) -> bool {
        if let Some(d) = self.deadline.get()
            && Instant::now() >= *d
        {
            return false;
        }
        self.remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
            .is_ok()
    }
}

fn new_hist() -> Result<Histogram<u64>, String> {
    // 1 µs .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())
}

async fn worker(
    shared: Arc<Shared>,
    index: usize,
    connected: Arc<tokio::sync::Barrier>,
    start: Arc<tokio::sync::Barrier>,
) -> Result<WorkerResult, String> {
    let mut r = WorkerResult {
        hist: new_hist()?,
        errors: 0,
        resumed: 0,
        first_error: None,
    };
    let mut conn: Option<Client> = None;
    if !shared.reconnect {
        match shared.connector.connect(shared.addr).await {
            Ok(c) => conn = Some(c),
            Err(e) => {
                connected.wait().await;
                start.wait().await;
                return Err(format!("connection {index}: {e}"));
            }
        }
    }
    let mut state = shared.plan.worker_state(index);
    connected.wait().await;
    start.wait().await;
    while shared.next() {
        let t0 = Instant::now();
        let outcome = if shared.reconnect {
            match shared.connector.connect(shared.addr).await {
                Ok(mut c) => {
                    let res = shared.plan.run(&mut c, &mut state).await;
                    if c.resumed() {
                        r.resumed = r.resumed.saturating_add(1);
                    }
                    let closed = c.shutdown().await;
                    res.and(closed.map_err(|e| e.to_string()))
                }
                Err(e) => Err(e.to_string()),
            }
        } else {
            let c = match conn.as_mut() {
                Some(c) => Ok(c),
                None => match shared.connector.connect(shared.addr).await {
                    Ok(c) => Ok(conn.insert(c)),
                    Err(e) => Err(e.to_string()),
                },
            };
            match c {
                Ok(c) => {
                    let res = shared.plan.run(c, &mut state).await;
                    if res.is_err() {
                        // The connection may be out of step: start again on a new one.
                        conn = None;
                    }
                    res
                }
                Err(e) => Err(e),
            }
        };
        let idle_until = if shared.idle {
            shared.deadline.get().copied()
        } else {
            None
        };
        let micros = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        match outcome {
            Ok(()) => {
                r.hist.saturating_record(micros.max(1));
            }
            Err(e) => {
                r.errors = r.errors.saturating_add(1);
                if r.first_error.is_none() {
                    r.first_error = Some(e);
                }
            }
        }
        if let Some(until) = idle_until {
            tokio::time::sleep_until(until.into()).await;
            break;
        }
    }
    if let Some(c) = conn {
        // Best effort; the numbers are already taken.
        let _ = c.shutdown().await;
    }
    Ok(r)
}

fn ms(micros: u64) -> f64 {
    // Microseconds are far below 2^52: the conversion is exact.
    f64::from(u32::try_from(micros).unwrap_or(u32::MAX)) / 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn json_f(x: f64) -> serde_json::Value {
    serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

async fn run(args: Args) -> Result<(serde_json::Value, bool), String> {
    let version = match (&args.version, args.workload) {
        (Some(v), _) => parse_version(v)?,
        (None, Workload::Encrypt) => ProtocolVersion::V1_4,
        (None, _) => ProtocolVersion::new(1, 2),
    };
    if args.workload == Workload::Idle && (args.seconds.is_none() || args.reconnect) {
        return Err("--workload idle needs --seconds (how long to hold the connections)".into());
    }
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    let addr = args
        .server
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", args.server))?
        .next()
        .ok_or_else(|| format!("{}: no address", args.server))?;
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let timeout = Duration::try_from_secs_f64(args.timeout).map_err(|e| e.to_string())?;
    let options = TlsOptions {
        server_name: args.server_name.clone(),
        resumption: !args.no_resumption,
        version,
        timeout,
        ..TlsOptions::default()
    };
    let connector = Connector::new(
        &read(&args.ca)?,
        &read(&args.cert)?,
        &read(&args.key)?,
        options,
    )
    .map_err(|e| e.to_string())?;

    let mut base = serde_json::json!({
        "workload": args.workload.name(),
        "connections": args.connections,
        "version": version.to_string(),
        "reconnect": args.reconnect,
        "resumption": args.reconnect && !args.no_resumption,
        "client": match args.client { ClientPath::Raw => "raw", ClientPath::Typed => "typed" },
    });

    // Setup on its own connection, closed before the workers connect (servers cap the
    // connections of one identity).
    let setup = {
        let mut c = connector
            .connect(addr)
            .await
            .map_err(|e| format!("setup connection: {e}"))?;
        let s = ops::setup(&mut c, args.workload, args.keys.max(1), args.client).await;
        let _ = c.shutdown().await;
        s?
    };
    let plan = match setup {
        Setup::Ready(plan) => plan,
        Setup::Unsupported(why) => {
            if let Some(o) = base.as_object_mut() {
                o.insert("unsupported".into(), why.into());
            }
            return Ok((base, false));
        }
    };

    let run_for = match args.seconds {
        Some(s) => Some(Duration::try_from_secs_f64(s).map_err(|e| e.to_string())?),
        None => None,
    };
    let shared = Arc::new(Shared {
        connector,
        addr,
        plan,
        remaining: AtomicU64::new(args.requests.unwrap_or(u64::MAX)),
        deadline: std::sync::OnceLock::new(),
        reconnect: args.reconnect,
        idle: args.workload == Workload::Idle,
    });
    // Every worker connects, then the clock starts and the workers are released.
    let parties = args.connections.saturating_add(1);
    let connected = Arc::new(tokio::sync::Barrier::new(parties));
    let start = Arc::new(tokio::sync::Barrier::new(parties));
    let connect_started = Instant::now();
    let mut tasks = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let fut = worker(shared.clone(), i, connected.clone(), start.clone());
        tasks.push(tokio::spawn(fut));
    }
    connected.wait().await;
    let started = Instant::now();
    if let Some(d) = run_for {
        let _ = shared.deadline.set(started + d);
    }
    start.wait().await;
    let connect_secs = started.duration_since(connect_started).as_secs_f64();

    let mut hist = new_hist()?;
    let mut errors = 0u64;
    let mut resumed = 0u64;
    let mut first_error: Option<String> = None;
    let mut worker_failures = 0u64;
    for t in tasks {
        match t.await {
            Ok(Ok(r)) => {
                hist.add(&r.hist).map_err(|e| e.to_string())?;
                errors = errors.saturating_add(r.errors);
                resumed = resumed.saturating_add(r.resumed);
                if first_error.is_none() {
                    first_error = r.first_error;
                }
            }
            Ok(Err(e)) => {
                worker_failures = worker_failures.saturating_add(1);
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
            Err(e) => return Err(format!("worker panicked: {e}")),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let ok = hist.len();
    let ops_per_sec = if secs > 0.0 {
        f64::from(u32::try_from(ok).unwrap_or(u32::MAX)) / secs
    } else {
        0.0
    };
    let q = |p: f64| round3(ms(hist.value_at_quantile(p)));
    let obj = base
        .as_object_mut()
        .ok_or_else(|| "internal: JSON base".to_owned())?;
    obj.insert("ops".into(), ok.into());
    obj.insert(
        "requests_per_op".into(),
        shared_requests_per_op(args.workload).into(),
    );
    obj.insert("seconds".into(), json_f(round3(secs)));
    obj.insert("ops_per_sec".into(), json_f(ops_per_sec.round()));
    obj.insert("p50_ms".into(), json_f(q(0.50)));
    obj.insert("p90_ms".into(), json_f(q(0.90)));
    obj.insert("p99_ms".into(), json_f(q(0.99)));
    obj.insert("p999_ms".into(), json_f(q(0.999)));
    obj.insert("max_ms".into(), json_f(round3(ms(hist.max()))));
    obj.insert("mean_ms".into(), json_f(round3(hist.mean() / 1000.0)));
    obj.insert(
        "errors".into(),
        errors.saturating_add(worker_failures).into(),
    );
    if args.reconnect {
        obj.insert("resumed".into(), resumed.into());
    }
    obj.insert("connect_seconds".into(), json_f(round3(connect_secs)));
    if let Some(e) = first_error {
        obj.insert("first_error".into(), e.into());
    }
    Ok((base, true))
}

fn shared_requests_per_op(w: Workload) -> u64 {
    if w == Workload::Cycle { 3 } else { 1 }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let json = args.json;
    let threads = args.threads.max(1);
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kmip-bench: error: runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(args)) {
        Ok((report, supported)) => {
            print_human(&report);
            if json {
                println!("{report}");
            }
            if supported {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("kmip-bench: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn print_human(r: &serde_json::Value) {
    let g = |k: &str| r.get(k).map_or_else(String::new, ToString::to_string);
    if let Some(why) = r.get("unsupported") {
        eprintln!("{}: unsupported by this server: {why}", g("workload"));
        return;
    }
    eprintln!(
        "{} x{} (KMIP {}{}): {} ops in {} s = {} ops/s; latency ms p50 {} p90 {} p99 {} max {}; \
         errors {}{}",
        g("workload"),
        g("connections"),
        g("version").trim_matches('"'),
        if r.get("reconnect") == Some(&serde_json::Value::Bool(true)) {
            format!(", reconnect, resumed {}", g("resumed"))
        } else {
            String::new()
        },
        g("ops"),
        g("seconds"),
        g("ops_per_sec"),
        g("p50_ms"),
        g("p90_ms"),
        g("p99_ms"),
        g("max_ms"),
        g("errors"),
        r.get("first_error")
            .map_or_else(String::new, |e| format!(" (first: {e})")),
    );
}
