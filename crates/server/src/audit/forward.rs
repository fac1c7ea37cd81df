//! Forwarding the audit records to collectors (SIEMs): `[[audit.forward]]`.
//!
//! **Several destinations.** Each `[[audit.forward]]` entry gets a forwarder of its own (its
//! thread, connection, position, state file and backlog), so a collector that is down holds
//! back only its own destination. Entries are told apart by `name` (required when there are
//! several): the `destination` label of the metrics, and the default state file
//! `<audit log>.forward.NAME` (an unnamed single destination keeps `<audit log>.forward`).
//!
//! **The file stays the record of truth.** Requests never wait for forwarding: a thread of its
//! own (`kmipd-audit-forward`) reads the records back from the audit log (rotated files
//! included, oldest first) and sends them on, in record order. It sends only records the
//! writer has made durable ([`AuditLog::durable_seq`]; with the sled store's journal, the
//! records written after the `fdatasync` of the WAL frame that carries them, which a restart
//! puts back in the file if a crash took them), so a record a crash could still take back
//! never reaches the collector.
//!
//! **Acknowledged position.** After each batch is written to the socket, the number and hash
//! of its last record go into the state file (`<audit log>.forward` by default; one line
//! `SEQ HASH`, written to a temporary file, synced and renamed over the old one, so a crash
//! leaves the old or the new position, never a torn one). At start the forwarder continues
//! after that record; without a state file it starts at the first record it finds. Delivery is
//! **at least once**: a crash (or kill) after a batch was written and before its position was
//! saved sends that batch again at the next start (at most `batch` records, with the same
//! `seq` and `hash`, so the collector can drop them). A clean stop saves the position of every
//! batch it sent, and a restart then sends no record twice.
//!
//! **Backlog and retries.** The backlog is the records durable in the file and not yet
//! acknowledged: it lives in the file, not in memory; the forwarder holds at most `batch`
//! records at once. While the collector is unreachable or refuses the data, the forwarder
//! keeps its batch and retries, waiting 100 ms, then twice as long after each failure, up to
//! `retry_max`. A collector that closed the connection is noticed before the next write (a
//! read on the idle socket sees the end of stream) and the batch goes over a new connection.
//! Plain TCP has no acknowledgement of its own: a batch written into the kernel's buffers
//! while the collector dies is counted as sent.
//!
//! **Visibility.** Per destination (label `destination`, [`destination`]):
//! `kmipd_audit_forward_backlog` (records), `kmipd_audit_forward_failures_total`
//! (failed attempts: connect, write, state file), `kmipd_audit_forward_last_success_seconds`
//! (Unix time of the last batch sent) and `kmipd_audit_forward_acknowledged` (the last record
//! sent). A failure episode logs one warning (its first error) and one line when forwarding
//! works again (how many attempts failed), not a line per attempt.
//!
//! **Formats.** `json-lines`: the record's line from the file. `syslog`: one RFC 5424 message
//! per record, formatted by the `fasyslog` crate (maintained, small: the RFC 5424 header,
//! structured-data escaping and time stamp; the `syslog` crate's TCP sender has no timeouts and
//! `syslog_rfc5424` only parses), with the record's line as MSG. The transport is this
//! module's own (fasyslog's stream senders have no connect or write timeouts and cannot tell a
//! closed collector; `tls:` is rustls with the `ca` bundle as the only roots): each message
//! ends with LF, the non-transparent framing of RFC 6587 that
//! fasyslog's senders use too; a record's JSON never holds a raw LF.
//!
//! **Gaps.** A record number that jumps (rotated files moved away before they were sent) is
//! logged once and forwarding goes on from the record found.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::writer::{AuditLog, rotated_files};
use crate::config::{ForwardConfig, ForwardFormat};

/// How long the forwarder waits when there is nothing to send, between looks at the log.
const IDLE: Duration = Duration::from_millis(100);
/// First wait after a failure.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Deadline for connecting and for each write.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The forwarder's figures, shown by the metrics (`kmipd_audit_forward_*`).
#[derive(Debug, Default)]
pub struct ForwardStatus {
    /// Durable records not yet acknowledged.
    pub backlog: AtomicU64,
    /// Failed attempts.
    pub failures: AtomicU64,
    /// Unix time (seconds) of the last batch sent; 0 before the first.
    pub last_success: AtomicU64,
    /// The last record acknowledged.
    pub acknowledged: AtomicU64,
}

/// What went wrong starting the forwarder.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The address is not `tcp:HOST:PORT`, `tls:HOST:PORT` or `unix:/path`.
    #[error("audit.forward.address {0:?}: expected tcp:HOST:PORT, tls:HOST:PORT or unix:/path")]
    Address(String),
    /// The TLS settings cannot be used.
    #[error("audit.forward: {0}")]
    Tls(String),
    /// The state file exists but cannot be read or parsed.
    #[error("audit forwarding state {path}: {reason}")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The thread could not be started.
    #[error("audit forwarding thread: {0}")]
    Thread(std::io::Error),
}

/// Where the records go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Tcp(String),
    Tls(String),
    Unix(PathBuf),
}

fn parse_address(a: &str) -> Result<Target, ForwardError> {
    if let Some(rest) = a.strip_prefix("tcp:").filter(|r| r.contains(':')) {
        Ok(Target::Tcp(rest.to_owned()))
    } else if let Some(rest) = a.strip_prefix("tls:").filter(|r| r.contains(':')) {
        Ok(Target::Tls(rest.to_owned()))
    } else if let Some(rest) = a.strip_prefix("unix:").filter(|r| !r.is_empty()) {
        Ok(Target::Unix(PathBuf::from(rest)))
    } else {
        Err(ForwardError::Address(a.to_owned()))
    }
}

/// The state file's path for the log at `audit`: `state`, or `<audit>.forward` (with
/// `.NAME` for a named destination).
pub fn state_path(config: &ForwardConfig, audit: &Path) -> PathBuf {
    config.state.clone().unwrap_or_else(|| {
        let mut s = audit.as_os_str().to_owned();
        s.push(".forward");
        if let Some(n) = &config.name {
            s.push(".");
            s.push(n);
        }
        PathBuf::from(s)
    })
}

/// The destination's label in the metrics and the log: its name, or `default`.
pub fn destination(config: &ForwardConfig) -> &str {
    config.name.as_deref().unwrap_or("default")
}

/// The last record acknowledged, from the state file (0 when there is none).
pub fn read_state(path: &Path) -> Result<u64, ForwardError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => {
            return Err(ForwardError::State {
                path: path.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ForwardError::State {
            path: path.to_owned(),
            reason: "expected `SEQ HASH`".to_owned(),
        })
}

/// Writes the state atomically: a temporary file beside it, synced, renamed over it, and the
/// directory synced.
fn write_state(path: &Path, seq: u64, hash: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(format!("{seq} {hash}\n").as_bytes())?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Starts the forwarder for `log` as `config` says; it runs until `stop` is cancelled (join
/// the handle to wait for it).
pub fn start(
    config: &ForwardConfig,
    log: &AuditLog,
    status: Arc<ForwardStatus>,
    stop: CancellationToken,
) -> Result<JoinHandle<()>, ForwardError> {
    let target = parse_address(&config.address)?;
    let tls = match &target {
        Target::Tls(addr) => Some(tls_client(config, addr)?),
        _ => None,
    };
    let state = state_path(config, log.path());
    let acked = read_state(&state)?;
    status.acknowledged.store(acked, Ordering::Relaxed);
    let forwarder = Forwarder {
        target,
        format: config.format,
        state,
        batch: config.batch.max(1),
        retry_max: config.retry_max.max(FIRST_RETRY),
        tail: Tail::new(log.path().to_owned(), acked.saturating_add(1)),
        durable: log.durable_seq(),
        status,
        stop,
        conn: None,
        acked,
        tls,
        syslog: syslog_context(),
    };
    std::thread::Builder::new()
        .name("kmipd-audit-forward".to_owned())
        .spawn(move || forwarder.run())
        .map_err(ForwardError::Thread)
}

/// The TLS client for `tls:HOST:PORT`: trusts the CA certificates of `ca` only, and checks
/// `server_name` (default HOST) in the collector's certificate. No client certificate.
fn tls_client(
    config: &ForwardConfig,
    addr: &str,
) -> Result<
    (
        Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    ),
    ForwardError,
> {
    use rustls_pki_types::pem::PemObject;
    let ca = config
        .ca
        .as_ref()
        .ok_or_else(|| ForwardError::Tls("a tls: address needs ca (a PEM bundle)".to_owned()))?;
    let mut roots = rustls::RootCertStore::empty();
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(ca)
        .map_err(|e| ForwardError::Tls(format!("ca {}: {e}", ca.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| ForwardError::Tls(format!("ca {}: {e}", ca.display())))?;
        roots
            .add(cert)
            .map_err(|e| ForwardError::Tls(format!("ca {}: {e}", ca.display())))?;
    }
    let client = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ForwardError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = match &config.server_name {
        Some(n) => n.clone(),
        None => addr
            .rsplit_once(':')
            .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_owned())
            .unwrap_or_default(),
    };
    let name = rustls_pki_types::ServerName::try_from(host.clone())
        .map_err(|e| ForwardError::Tls(format!("server name {host:?}: {e}")))?;
    Ok((Arc::new(client), name))
}

/// One record read back from the log.
struct Line {
    seq: u64,
    hash: String,
    /// The line as in the file, without its newline.
    text: String,
}

#[derive(Deserialize)]
struct SeqHash {
    seq: u64,
    hash: String,
}

/// Reads the chain's records in order from the rotated files and the live file, following
/// rotations (`tail -F`).
struct Tail {
    path: PathBuf,
    /// The record expected next.
    next: u64,
    /// The open file, its inode, and whether it is a rotated (final) one.
    open: Option<(BufReader<File>, u64, bool)>,
    /// A partial last line (the writer's `write` not seen whole yet).
    partial: String,
    /// A record read but not yet durable.
    held: Option<Line>,
}

impl Tail {
    fn new(path: PathBuf, next: u64) -> Tail {
        Tail {
            path,
            next,
            open: None,
            partial: String::new(),
            held: None,
        }
    }

    /// The file holding record `self.next`: the oldest rotated file whose last record is at or
    /// after it, or the live file.
    fn open_next(&mut self) -> std::io::Result<()> {
        let next = rotated_files(&self.path)?
            .into_iter()
            .find(|(n, _)| *n >= self.next);
        let (path, rotated) = match next {
            Some((_, p)) => (p, true),
            None => (self.path.clone(), false),
        };
        let f = File::open(&path)?;
        let ino = f.metadata()?.ino();
        self.partial.clear();
        self.open = Some((BufReader::new(f), ino, rotated));
        Ok(())
    }

    /// Up to `max` records from `self.next` on, none after record `durable`.
    fn read(&mut self, max: usize, durable: u64) -> std::io::Result<Vec<Line>> {
        let mut out = Vec::new();
        // At most a few file switches per call (rotated files, then the live one).
        let mut switches = 0u32;
        while switches < 64 {
            if let Some(h) = self.held.take() {
                if h.seq > durable {
                    self.held = Some(h);
                    return Ok(out);
                }
                self.accept(h, &mut out);
            }
            if out.len() >= max {
                return Ok(out);
            }
            if self.open.is_none() {
                self.open_next()?;
            }
            let Some((reader, ino, rotated)) = self.open.as_mut() else {
                return Ok(out);
            };
            let n = reader.read_line(&mut self.partial)?;
            if n > 0 && self.partial.ends_with('\n') {
                let text = std::mem::take(&mut self.partial);
                let text = text.trim_end_matches('\n').to_owned();
                if let Ok(r) = serde_json::from_str::<SeqHash>(&text)
                    && r.seq >= self.next
                {
                    self.held = Some(Line {
                        seq: r.seq,
                        hash: r.hash,
                        text,
                    });
                }
                continue;
            }
            if n > 0 {
                // A line still being written: its end comes later.
                continue;
            }
            // End of this file.
            if *rotated {
                self.open = None;
                switches = switches.saturating_add(1);
                continue;
            }
            let moved = match std::fs::metadata(&self.path) {
                Ok(m) => m.ino() != *ino,
                Err(_) => false,
            };
            if !moved {
                return Ok(out);
            }
            // Rotated away: the old file is final now; read what is left, then switch.
            let mut rest = String::new();
            reader.read_to_string(&mut rest)?;
            let tail = std::mem::take(&mut self.partial) + &rest;
            for text in tail.lines() {
                if let Ok(r) = serde_json::from_str::<SeqHash>(text)
                    && r.seq >= self.next
                {
                    self.accept(
                        Line {
                            seq: r.seq,
                            hash: r.hash,
                            text: text.to_owned(),
                        },
                        &mut out,
                    );
                }
            }
            self.open = None;
            switches = switches.saturating_add(1);
        }
        Ok(out)
    }

    fn accept(&mut self, l: Line, out: &mut Vec<Line>) {
        if l.seq > self.next {
            warn!(
                expected = self.next,
                found = l.seq,
                "audit forwarding: records {}..{} are not beside the audit log (moved away?); forwarding goes on from record {}",
                self.next,
                l.seq.saturating_sub(1),
                l.seq
            );
        }
        self.next = l.seq.saturating_add(1);
        out.push(l);
    }
}

/// A connection to the collector.
enum Conn {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Unix(UnixStream),
}

fn tcp_connect(a: &str) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in std::net::ToSocketAddrs::to_socket_addrs(a)? {
        match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            Ok(s) => {
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address")))
}

impl Conn {
    fn open(
        target: &Target,
        tls: Option<&(
            Arc<rustls::ClientConfig>,
            rustls_pki_types::ServerName<'static>,
        )>,
    ) -> std::io::Result<Conn> {
        match target {
            Target::Tls(a) => {
                let Some((config, name)) = tls else {
                    return Err(std::io::Error::other("no TLS configuration"));
                };
                let mut sock = tcp_connect(a)?;
                let mut conn = rustls::ClientConnection::new(config.clone(), name.clone())
                    .map_err(std::io::Error::other)?;
                while conn.is_handshaking() {
                    conn.complete_io(&mut sock)?;
                }
                Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(conn, sock))))
            }
            Target::Tcp(a) => tcp_connect(a).map(Conn::Tcp),
            Target::Unix(p) => {
                let s = UnixStream::connect(p)?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok(Conn::Unix(s))
            }
        }
    }

    /// Whether the collector closed its end (or the connection failed): a read on the idle
    /// socket sees the end of stream or an error. Whatever a collector sends is discarded.
    fn closed(&mut self) -> bool {
        let mut buf = [0u8; 512];
        let r = match self {
            Conn::Tcp(s) => s
                .set_nonblocking(true)
                .and_then(|()| s.read(&mut buf))
                .and_then(|n| s.set_nonblocking(false).map(|()| n)),
            Conn::Tls(s) => s
                .sock
                .set_nonblocking(true)
                .and_then(|()| s.read(&mut buf))
                .and_then(|n| s.sock.set_nonblocking(false).map(|()| n)),
            Conn::Unix(s) => s
                .set_nonblocking(true)
                .and_then(|()| s.read(&mut buf))
                .and_then(|n| s.set_nonblocking(false).map(|()| n)),
        };
        match r {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let back = match self {
                    Conn::Tcp(s) => s.set_nonblocking(false),
                    Conn::Tls(s) => s.sock.set_nonblocking(false),
                    Conn::Unix(s) => s.set_nonblocking(false),
                };
                back.is_err()
            }
            Err(_) => true,
        }
    }

    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(b).and_then(|()| s.flush()),
            Conn::Tls(s) => s.write_all(b).and_then(|()| s.flush()),
            Conn::Unix(s) => s.write_all(b).and_then(|()| s.flush()),
        }
    }
}

struct Forwarder {
    target: Target,
    format: ForwardFormat,
    state: PathBuf,
    batch: usize,
    retry_max: Duration,
    tail: Tail,
    durable: Arc<AtomicU64>,
    status: Arc<ForwardStatus>,
    stop: CancellationToken,
    conn: Option<Conn>,
    acked: u64,
    /// With `tls:`, the client configuration and the name to verify.
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
    /// The RFC 5424 header fields (host name, app name, process id, facility).
    syslog: fasyslog::format::SyslogContext,
}

/// A record as one RFC 5424 message (formatted by `fasyslog`): severity informational for a
/// success, notice otherwise; MSGID `audit`; structured data `[kmipd@32473 seq=".." hash=".."]`
/// (32473 is the example enterprise number of RFC 5612); MSG the record's line.
fn syslog_message(context: &fasyslog::format::SyslogContext, l: &Line) -> String {
    let severity = if l.text.contains("\"status\":\"Success\"") {
        fasyslog::Severity::INFORMATIONAL
    } else {
        fasyslog::Severity::NOTICE
    };
    let mut sd = Vec::new();
    if let Ok(mut e) = fasyslog::SDElement::new("kmipd@32473")
        && e.add_param("seq", l.seq.to_string()).is_ok()
        && e.add_param("hash", l.hash.clone()).is_ok()
    {
        sd.push(e);
    }
    context
        .format_rfc5424(severity, Some("audit"), sd, Some(&l.text))
        .to_string()
}

fn syslog_context() -> fasyslog::format::SyslogContext {
    let mut c = fasyslog::format::SyslogContext::new();
    c.facility(fasyslog::Facility::AUTHPRIV).appname("kmipd");
    c
}

impl Forwarder {
    fn run(mut self) {
        let mut pending: Vec<Line> = Vec::new();
        let mut retry = FIRST_RETRY;
        // Failed attempts of the current episode (0: forwarding works).
        let mut failing: u64 = 0;
        while !self.stop.is_cancelled() {
            let durable = self.durable.load(Ordering::Acquire);
            self.status
                .backlog
                .store(durable.saturating_sub(self.acked), Ordering::Relaxed);
            if pending.is_empty() {
                match self.tail.read(self.batch, durable) {
                    Ok(lines) => pending = lines,
                    Err(e) => {
                        self.failed(&mut failing, &format!("reading the audit log: {e}"));
                        self.pause(&mut retry);
                        continue;
                    }
                }
            }
            if pending.is_empty() {
                self.sleep(IDLE);
                continue;
            }
            match self.send(&pending) {
                Ok(()) => {
                    if failing > 0 {
                        info!(
                            failed_attempts = failing,
                            "audit forwarding to {} works again",
                            self.describe()
                        );
                        failing = 0;
                    }
                    retry = FIRST_RETRY;
                    pending.clear();
                }
                Err(e) => {
                    self.conn = None;
                    self.failed(&mut failing, &e);
                    self.pause(&mut retry);
                }
            }
        }
    }

    fn describe(&self) -> String {
        match &self.target {
            Target::Tcp(a) => format!("tcp:{a}"),
            Target::Tls(a) => format!("tls:{a}"),
            Target::Unix(p) => format!("unix:{}", p.display()),
        }
    }

    /// Sends a batch and saves its position.
    fn send(&mut self, lines: &[Line]) -> Result<(), String> {
        if self.conn.as_mut().is_some_and(Conn::closed) {
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(
                Conn::open(&self.target, self.tls.as_ref())
                    .map_err(|e| format!("connecting: {e}"))?,
            );
        }
        let mut buf = Vec::new();
        for l in lines {
            match self.format {
                ForwardFormat::JsonLines => buf.extend_from_slice(l.text.as_bytes()),
                ForwardFormat::Syslog => {
                    buf.extend_from_slice(syslog_message(&self.syslog, l).as_bytes())
                }
            }
            // JSON lines; for syslog the LF trailer of RFC 6587 non-transparent framing (a
            // record's JSON never holds a raw newline).
            buf.push(b'\n');
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err("no connection".to_owned());
        };
        conn.write_all(&buf).map_err(|e| format!("sending: {e}"))?;
        let Some(last) = lines.last() else {
            return Ok(());
        };
        // Sent: a failure to save the position only means a resend after a restart.
        self.acked = last.seq;
        self.status.acknowledged.store(last.seq, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.status.last_success.store(now, Ordering::Relaxed);
        let durable = self.durable.load(Ordering::Acquire);
        self.status
            .backlog
            .store(durable.saturating_sub(self.acked), Ordering::Relaxed);
        if let Err(e) = write_state(&self.state, last.seq, &last.hash) {
            self.status.failures.fetch_add(1, Ordering::Relaxed);
            warn!(error = %e, state = %self.state.display(), "audit forwarding: saving the position failed (records may be sent again after a restart)");
        }
        Ok(())
    }

    fn failed(&self, failing: &mut u64, error: &str) {
        self.status.failures.fetch_add(1, Ordering::Relaxed);
        if *failing == 0 {
            warn!(
                error,
                "audit forwarding to {} failed; retrying (one line when it works again)",
                self.describe()
            );
        }
        *failing = failing.saturating_add(1);
    }

    fn pause(&self, retry: &mut Duration) {
        self.sleep(*retry);
        *retry = retry.saturating_mul(2).min(self.retry_max);
    }

    /// Sleeps `d`, or less when stopped.
    fn sleep(&self, d: Duration) {
        let mut left = d;
        while !left.is_zero() && !self.stop.is_cancelled() {
            let step = left.min(IDLE);
            std::thread::sleep(step);
            left = left.saturating_sub(step);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn item(n: usize) -> super::super::ItemSummary {
        super::super::ItemSummary {
            operation: "Get".to_owned(),
            uids: vec![format!("uid-{n}")],
            status: "Success".to_owned(),
            reason: None,
            message: None,
        }
    }

    /// Records written before and after two rotations (one before the forwarder starts, one
    /// while it runs) all arrive once, in chain order, as the lines of the rotated files and
    /// then of the live file.
    #[test]
    fn follows_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        for n in 0..3 {
            log.append("a", "-", &[item(n)]).unwrap();
        }
        let first = log.rotate().unwrap();
        log.append("a", "-", &[item(3), item(4)]).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config = ForwardConfig {
            name: None,
            format: ForwardFormat::JsonLines,
            address: format!("tcp:{}", listener.local_addr().unwrap()),
            ca: None,
            server_name: None,
            state: None,
            batch: 2,
            retry_max: Duration::from_millis(200),
        };
        let stop = CancellationToken::new();
        let status = Arc::new(ForwardStatus::default());
        let handle = start(&config, &log, status.clone(), stop.clone()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut lines = std::io::BufReader::new(stream).lines();
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(lines.next().unwrap().unwrap());
        }
        let second = log.rotate().unwrap();
        log.append("a", "-", &[item(5)]).unwrap();
        got.push(lines.next().unwrap().unwrap());
        let mut want = Vec::new();
        for f in [&first.file, &second.file, &path] {
            want.extend(
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .map(str::to_owned),
            );
        }
        assert_eq!(want.len(), 6);
        assert_eq!(got, want);
        stop.cancel();
        handle.join().unwrap();
        assert_eq!(status.acknowledged.load(Ordering::Relaxed), 6);
        assert_eq!(read_state(&state_path(&config, &path)).unwrap(), 6);
    }

    /// A unix stream socket as the collector: every record arrives, as its line.
    #[test]
    fn unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let sock = dir.path().join("siem.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let log = AuditLog::open(&path).unwrap();
        log.append("a", "-", &[item(0), item(1)]).unwrap();
        let config = ForwardConfig {
            name: None,
            format: ForwardFormat::JsonLines,
            address: format!("unix:{}", sock.display()),
            ca: None,
            server_name: None,
            state: None,
            batch: 512,
            retry_max: Duration::from_millis(200),
        };
        let stop = CancellationToken::new();
        let status = Arc::new(ForwardStatus::default());
        let handle = start(&config, &log, status, stop.clone()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut lines = std::io::BufReader::new(stream).lines();
        let got: Vec<String> = (0..2).map(|_| lines.next().unwrap().unwrap()).collect();
        let want: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(got, want);
        stop.cancel();
        handle.join().unwrap();
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("tcp:127.0.0.1:6514").unwrap(),
            Target::Tcp("127.0.0.1:6514".to_owned())
        );
        assert_eq!(
            parse_address("unix:/run/siem.sock").unwrap(),
            Target::Unix(PathBuf::from("/run/siem.sock"))
        );
        assert!(parse_address("127.0.0.1:6514").is_err());
        assert!(parse_address("tcp:host").is_err());
        assert!(parse_address("unix:").is_err());
    }

    #[test]
    fn state_round_trip_and_atomic_replace() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.log.forward");
        assert_eq!(read_state(&p).unwrap(), 0);
        write_state(&p, 7, "ab").unwrap();
        write_state(&p, 9, "cd").unwrap();
        assert_eq!(read_state(&p).unwrap(), 9);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "9 cd\n");
        std::fs::write(&p, "garbage").unwrap();
        assert!(read_state(&p).is_err());
    }
}
