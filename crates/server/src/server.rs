//! The KMIP listener: accept, TLS handshake, identity, the request loop, limits, shutdown.
//!
//! Start it with [`Server`] (a builder; tests pass a listener bound to port 0 and, if they
//! like, their own [`Engine`]) or [`run`] (mini-redis style: a listener, a configuration and a
//! shutdown future). [`Server::start`] returns a [`ServerHandle`] with the bound address and a
//! shutdown trigger.
//!
//! **Per connection** (one tokio task each, served concurrently):
//! 1. the total connection cap is checked at accept (over the cap: closed at once, logged);
//! 2. the first TLS record (the ClientHello) is read by hand so that a failed handshake can be
//!    logged with the offered versions and suites, then replayed into rustls; the whole
//!    handshake runs under `limits.handshake_timeout`;
//! 3. the identity comes from the verified client certificate only ([`crate::tls`]); the
//!    per-identity cap is checked;
//! 4. requests, one after another: the 8-byte TTLV header is awaited under
//!    `limits.idle_timeout`, checked with `kmipd_ttlv::frame_len` (an oversized length is
//!    refused from the header alone, before any allocation, with a KMIP error, then the
//!    connection is closed), the body is read under `limits.io_timeout`, the batch item count
//!    is checked (over the cap: a KMIP error response, the connection stays open), and the
//!    engine runs on the blocking pool, at most `limits.max_concurrent_requests` at a time.
//!    Undecodable TTLV with a readable header is answered Invalid Message by the engine.
//!
//! A slow or hostile client holds only its own connection slot and task: every read and write
//! has a deadline, and nothing is shared between connections but the engine and counters.
//!
//! **Shutdown**: the accept loop stops, idle connections close, a connection in the middle
//! of a request finishes it and writes the response; after `limits.shutdown_grace` whatever is
//! left is abandoned. Every committed change is already durable (the store syncs before the
//! engine answers), so nothing needs flushing beyond that.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kmipd_ops::{Answer, Engine, EngineConfig, Incident, Principal, Retry};
use kmipd_proto::enums::{result_reason, result_status};
use kmipd_proto::message::{ProtocolVersion, ResponseBatchItem, ResponseHeader, ResponseMessage};
use kmipd_proto::tag;
use kmipd_store::ObjectStore;
use kmipd_ttlv::{ErrorKind, HEADER_LEN, Limits, Ttlv, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::audit::{self, AuditLog, ItemSummary};
use crate::config::{Config, StoreBackend};
use crate::incidents::Incidents;
use crate::metrics::Metrics;
use crate::storage::StorageError;
use crate::tls::{HelloSummary, TlsError, identity_from_cert, parse_client_hello};

/// Why the server could not start. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// TLS files.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Store or HSM.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Binding a listener.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// Anything else at start-up.
    #[error("{0}")]
    Other(String),
}

/// Builds and starts a server. See the module docs.
pub struct Server {
    config: Config,
    engine: Option<Engine>,
    listener: Option<TcpListener>,
    metrics_listener: Option<TcpListener>,
    audit: Option<AuditLog>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

/// A running server: its addresses, its counters, and the way to stop it.
pub struct ServerHandle {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
    task: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The KMIP listener's address (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The metrics listener's address, when `[metrics]` is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The live counters (what `/metrics` shows).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A token whose cancellation starts the graceful shutdown (clone it freely).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Reads `[tls]`'s files again (client CA, CRLs, server certificates and keys) and uses
    /// them for every handshake from now on; connections already established are not
    /// affected. Sessions issued before cannot be resumed (a new session cache and new ticket
    /// keys): a resumed handshake does not check the client certificate again, so a client a
    /// new CRL revokes must not resume its way in. On error nothing changes and the server
    /// goes on with what it had. `kmipd serve` calls it on SIGHUP.
    pub fn reload_tls(&self) -> Result<(), crate::tls::TlsError> {
        let fresh = crate::tls::server_config(&self.shared.config.tls)?;
        let mut acceptor = self
            .shared
            .acceptor
            .write()
            .map_err(|_| crate::tls::TlsError::Rustls("TLS acceptor lock poisoned".into()))?;
        *acceptor = TlsAcceptor::from(fresh);
        Ok(())
    }

    /// Starts the graceful shutdown; returns at once.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Waits until the server has stopped (after [`ServerHandle::shutdown`], or the shutdown
    /// future given to [`run`]).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    /// Shuts down and waits for the end (at most `limits.shutdown_grace` plus a little).
    pub async fn stop(self) {
        self.shutdown();
        self.wait().await;
    }
}

impl Server {
    /// A server for `config`. Without [`Server::listener`] it binds `config.listen`; without
    /// [`Server::engine`] it opens the configured store (and HSM) at [`Server::start`].
    pub fn new(config: Config) -> Server {
        Server {
            config,
            engine: None,
            listener: None,
            metrics_listener: None,
            audit: None,
        }
    }

    /// Serves on this listener (e.g. bound to `127.0.0.1:0`) instead of `config.listen`.
    pub fn listener(mut self, listener: TcpListener) -> Server {
        self.listener = Some(listener);
        self
    }

    /// Serves metrics on this listener instead of `metrics.listen` (even when the
    /// configuration has no `[metrics]` table).
    pub fn metrics_listener(mut self, listener: TcpListener) -> Server {
        self.metrics_listener = Some(listener);
        self
    }

    /// Uses this engine instead of opening the configured store.
    pub fn engine(mut self, engine: Engine) -> Server {
        self.engine = Some(engine);
        self
    }

    /// Records every answered request in this audit log (instead of opening `audit.path`).
    pub fn audit_log(mut self, log: AuditLog) -> Server {
        self.audit = Some(log);
        self
    }

    /// Binds (if needed), opens the store (if needed; on the blocking pool), builds TLS and
    /// starts serving. Returns once the server accepts connections.
    pub async fn start(self) -> Result<ServerHandle, StartError> {
        let Server {
            config,
            engine,
            listener,
            metrics_listener,
            audit,
        } = self;
        let tls = crate::tls::server_config(&config.tls)?;
        let listener = match listener {
            Some(l) => l,
            None => TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?,
        };
        let metrics_listener = match (metrics_listener, &config.metrics) {
            (Some(l), _) => Some(l),
            (None, Some(m)) => {
                Some(
                    TcpListener::bind(m.listen)
                        .await
                        .map_err(|source| StartError::Bind {
                            addr: m.listen,
                            source,
                        })?,
                )
            }
            (None, None) => None,
        };
        // The sled store is opened here (not through storage::open_store) so that the admin
        // socket keeps the store and the master key for rotations and backups.
        let (engine, durable) = match engine {
            Some(e) => (e, None),
            None => {
                let c = config.clone();
                let opened = tokio::task::spawn_blocking(move || match c.store.backend {
                    StoreBackend::Sled => crate::storage::open_durable(&c).map(|d| {
                        let store: Arc<dyn ObjectStore> = d.store.clone();
                        (store, Some(d))
                    }),
                    StoreBackend::Memory => crate::storage::open_store(&c).map(|s| (s, None)),
                })
                .await
                .map_err(|e| StartError::Other(format!("store opening task: {e}")))?;
                let (store, durable) = opened?;
                let mut ec = EngineConfig::default();
                ec.limits.max_message_len = config.limits.max_message_size;
                (Engine::new(store, ec), durable)
            }
        };
        let audit = match audit {
            Some(a) => a,
            None => {
                let path = config.audit.path.clone();
                tokio::task::spawn_blocking(move || AuditLog::open(path))
                    .await
                    .map_err(|e| StartError::Other(format!("audit opening task: {e}")))?
                    .map_err(|e| StartError::Other(e.to_string()))?
            }
        };
        let local_addr = listener
            .local_addr()
            .map_err(|e| StartError::Other(format!("listener address: {e}")))?;
        let metrics_addr = match &metrics_listener {
            Some(l) => Some(
                l.local_addr()
                    .map_err(|e| StartError::Other(format!("metrics address: {e}")))?,
            ),
            None => None,
        };
        let watched = durable.as_ref().map(|d| d.store.clone());
        let stop = CancellationToken::new();
        let mut admin_task = None;
        if config.admin.enabled {
            let path = config.admin.socket.clone();
            let listener =
                crate::admin::bind(&path).map_err(|e| StartError::Other(e.to_string()))?;
            let admin = crate::admin::Admin::new(
                engine.clone(),
                durable,
                Some(audit.clone()),
                stop.clone(),
            );
            admin_task = Some(tokio::spawn(crate::admin::serve(
                listener,
                path,
                Arc::new(admin),
                stop.clone(),
            )));
        }
        let metrics = Arc::new(Metrics::default());
        if let Some(store) = &watched {
            metrics.watch_store(store);
        }
        let incidents = Arc::new(Incidents::new(metrics.clone(), watched.as_ref()));
        drop(watched);
        tokio::spawn(incidents.clone().watch(stop.clone()));
        let mut limits = engine.config().limits;
        limits.max_message_len = config.limits.max_message_size;
        let shared = Arc::new(Shared {
            acceptor: std::sync::RwLock::new(TlsAcceptor::from(tls)),
            conn_slots: Arc::new(Semaphore::new(config.limits.max_connections)),
            exec_slots: Arc::new(Semaphore::new(config.limits.max_concurrent_requests)),
            per_identity: Mutex::new(HashMap::new()),
            engine,
            metrics: metrics.clone(),
            incidents,
            limits,
            audit,
            stop: stop.clone(),
            hard_stop: CancellationToken::new(),
            config,
        });
        if let Some(l) = metrics_listener {
            tokio::spawn(crate::metrics::serve(l, metrics.clone(), stop.clone()));
            if let Some(a) = metrics_addr {
                info!(addr = %a, "metrics on http://{a}/metrics");
            }
        }
        info!(addr = %local_addr, "kmipd listening");
        let grace = shared.config.limits.shutdown_grace;
        let handle_shared = shared.clone();
        let task = tokio::spawn(async move {
            accept_loop(listener, shared).await;
            // The admin socket is gone and its commands answered (or abandoned) before the
            // server counts as stopped.
            if let Some(t) = admin_task {
                let _ = tokio::time::timeout(grace, t).await;
            }
        });
        Ok(ServerHandle {
            local_addr,
            metrics_addr,
            stop,
            metrics,
            task,
            shared: handle_shared,
        })
    }
}

/// Serves on `listener` until `shutdown` completes, then shuts down gracefully.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let hangup = reload_signal()?;
    let handle = Server::new(config).listener(listener).start().await?;
    serve_until(handle, shutdown, hangup).await
}

/// The SIGHUP stream for [`serve_until`]. Take it before [`Server::start`]: from then on a
/// SIGHUP no longer ends the process (its default), even before the server listens.
pub fn reload_signal() -> Result<tokio::signal::unix::Signal, StartError> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| StartError::Other(format!("SIGHUP handler: {e}")))
}

/// Serves with a started server until `shutdown` completes (or the server is stopped
/// otherwise), then shuts down gracefully. Meanwhile each signal on `hangup`
/// ([`reload_signal`]) reloads `[tls]` ([`ServerHandle::reload_tls`]); a failed reload is
/// logged and changes nothing.
pub async fn serve_until(
    handle: ServerHandle,
    shutdown: impl Future<Output = ()>,
    mut hangup: tokio::signal::unix::Signal,
) -> Result<(), StartError> {
    let token = handle.shutdown_token();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => {
                token.cancel();
                break;
            }
            () = token.cancelled() => break,
            Some(()) = hangup.recv() => match handle.reload_tls() {
                Ok(()) => info!("SIGHUP: TLS certificates, client CA and CRLs reloaded"),
                Err(e) => error!(error = %e, "SIGHUP: TLS reload failed; keeping the previous TLS configuration"),
            },
        }
    }
    handle.wait().await;
    Ok(())
}

/// Completes on SIGTERM or SIGINT (for [`run`] in `main`).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => info!("SIGTERM: shutting down"),
                _ = i.recv() => info!("SIGINT: shutting down"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

struct Shared {
    config: Config,
    /// Replaced by [`ServerHandle::reload_tls`]; each handshake takes a clone.
    acceptor: std::sync::RwLock<TlsAcceptor>,
    engine: Engine,
    metrics: Arc<Metrics>,
    incidents: Arc<Incidents>,
    conn_slots: Arc<Semaphore>,
    exec_slots: Arc<Semaphore>,
    per_identity: Mutex<HashMap<String, usize>>,
    limits: Limits,
    audit: AuditLog,
    stop: CancellationToken,
    hard_stop: CancellationToken,
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shared.stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = shared.conn_slots.clone().try_acquire_owned() else {
            shared.metrics.refused("max_connections");
            warn!(%peer, limit = shared.config.limits.max_connections,
                "connection refused: limits.max_connections reached");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let span = info_span!("conn", %peer, identity = tracing::field::Empty);
        tracker.spawn(
            async move {
                shared.metrics.connection_opened();
                connection(&shared, tcp, peer).await;
                shared.metrics.connection_closed();
                drop(permit);
            }
            .instrument(span),
        );
    }
    drop(listener);
    tracker.close();
    let open = tracker.len();
    if open > 0 {
        info!(
            connections = open,
            "stopped accepting; waiting for requests in flight"
        );
    }
    let grace = shared.config.limits.shutdown_grace;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(
            connections = tracker.len(),
            grace = ?grace,
            "shutdown grace period over; abandoning the remaining connections"
        );
        shared.hard_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
    }
    info!("kmipd stopped");
}

/// A TCP stream whose first bytes were already read (the ClientHello record), replayed first.
struct Replay {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(rest) = this.prefix.get(this.pos..)
            && !rest.is_empty()
        {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(rest.get(..n).unwrap_or_default());
            this.pos += n;
            if this.pos >= this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type Tls = tokio_rustls::server::TlsStream<Replay>;

/// Reads the first TLS record (normally the whole ClientHello).
async fn read_first_record(tcp: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = [0u8; 5];
    tcp.read_exact(&mut head).await?;
    let [content_type, _, _, hi, lo] = head;
    let mut record = head.to_vec();
    if content_type == 22 {
        // Handshake record: at most 2^14 bytes of plaintext (RFC 8446 §5.1).
        let len = usize::from(u16::from_be_bytes([hi, lo])).min(16_384);
        record.resize(5 + len, 0);
        if let Some(body) = record.get_mut(5..) {
            tcp.read_exact(body).await?;
        }
    }
    Ok(record)
}

enum Handshake {
    Done(Box<Tls>),
    Failed,
}

async fn handshake(shared: &Shared, mut tcp: TcpStream, peer: SocketAddr) -> Handshake {
    let mut hello: Option<HelloSummary> = None;
    let fail = |hello: &Option<HelloSummary>, reason: &str| {
        shared.metrics.handshake_failed();
        let (versions, suites) = hello.as_ref().map_or_else(
            || ("?".to_owned(), "?".to_owned()),
            |h| (h.versions_list(), h.suites_list()),
        );
        warn!(%peer, offered_versions = %versions, offered_suites = %suites, reason,
            "TLS handshake failed");
    };
    let work = async {
        let record = match read_first_record(&mut tcp).await {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err("connection closed before a ClientHello".to_owned());
            }
            Err(e) => return Err(format!("reading the ClientHello: {e}")),
        };
        hello = record.get(5..).and_then(parse_client_hello);
        if record.first() != Some(&22) {
            return Err("not TLS (the first record is not a handshake record)".to_owned());
        }
        let stream = Replay {
            prefix: record,
            pos: 0,
            inner: tcp,
        };
        let acceptor = shared
            .acceptor
            .read()
            .map_err(|_| "TLS acceptor lock poisoned".to_owned())?
            .clone();
        acceptor.accept(stream).await.map_err(|e| e.to_string())
    };
    let timeout = shared.config.limits.handshake_timeout;
    let result = tokio::select! {
        () = shared.stop.cancelled() => return Handshake::Failed,
        r = tokio::time::timeout(timeout, work) => r,
    };
    match result {
        Ok(Ok(tls)) => Handshake::Done(Box::new(tls)),
        Ok(Err(reason)) => {
            if reason.starts_with("connection closed before") {
                // Port probes and load-balancer health checks: not worth a warning.
                shared.metrics.handshake_failed();
                debug!(%peer, "connection closed before a ClientHello");
            } else {
                fail(&hello, &reason);
            }
            Handshake::Failed
        }
        Err(_) => {
            fail(
                &hello,
                &format!("handshake not finished within limits.handshake_timeout ({timeout:?})"),
            );
            Handshake::Failed
        }
    }
}

/// Holds one of an identity's connection slots.
struct IdentitySlot<'a> {
    shared: &'a Shared,
    identity: String,
}

impl Drop for IdentitySlot<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.shared.per_identity.lock()
            && let Some(n) = m.get_mut(&self.identity)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.identity);
            }
        }
    }
}

fn take_identity_slot<'a>(shared: &'a Shared, identity: &str) -> Option<IdentitySlot<'a>> {
    let mut m = shared.per_identity.lock().ok()?;
    let n = m.entry(identity.to_owned()).or_insert(0);
    if *n >= shared.config.limits.max_connections_per_identity {
        return None;
    }
    *n += 1;
    Some(IdentitySlot {
        shared,
        identity: identity.to_owned(),
    })
}

async fn connection(shared: &Shared, tcp: TcpStream, peer: SocketAddr) {
    let mut tls = match handshake(shared, tcp, peer).await {
        Handshake::Done(t) => t,
        Handshake::Failed => return,
    };
    let (_, conn) = tls.get_ref();
    let source = shared.config.identity.source;
    let identity = match conn.peer_certificates().and_then(|c| c.first()) {
        Some(cert) => identity_from_cert(cert, source),
        None => Err(crate::tls::IdentityError::Missing("certificate")),
    };
    let version = conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    let suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    let resumed = matches!(conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
    let identity = match identity {
        Ok(i) => i,
        Err(e) => {
            shared.metrics.refused("no_identity");
            warn!(%peer, reason = %e, ?source, "connection refused: no identity in the client certificate");
            close(&mut tls, shared).await;
            return;
        }
    };
    tracing::Span::current().record("identity", identity.as_str());
    let Some(_slot) = take_identity_slot(shared, &identity) else {
        shared.metrics.refused("max_connections_per_identity");
        warn!(%peer, %identity, limit = shared.config.limits.max_connections_per_identity,
            "connection refused: limits.max_connections_per_identity reached");
        close(&mut tls, shared).await;
        return;
    };
    info!(tls_version = %version, cipher_suite = %suite, resumed, "connection established");
    let principal = if shared.config.identity.administrators.contains(&identity) {
        Principal::admin(identity.clone())
    } else {
        Principal::new(identity.clone())
    };
    let end = serve_requests(shared, &mut tls, &principal, peer).await;
    match end {
        End::ClientClosed => debug!("connection closed by the client"),
        End::Shutdown => debug!("connection closed for shutdown"),
        End::Closed => {}
    }
    close(&mut tls, shared).await;
}

async fn close(tls: &mut Tls, shared: &Shared) {
    let _ = tokio::time::timeout(
        shared.config.limits.io_timeout.min(Duration::from_secs(1)),
        tls.shutdown(),
    )
    .await;
}

enum End {
    ClientClosed,
    Shutdown,
    /// Closed by the server for a reason already logged.
    Closed,
}

async fn serve_requests(
    shared: &Shared,
    tls: &mut Tls,
    principal: &Principal,
    peer: SocketAddr,
) -> End {
    let limits = &shared.config.limits;
    loop {
        // Wait for the next request: idle timeout, or shutdown while idle.
        let mut header = [0u8; HEADER_LEN];
        let first = tokio::select! {
            () = shared.stop.cancelled() => return End::Shutdown,
            r = tokio::time::timeout(limits.idle_timeout, tls.read(&mut header[..1])) => r,
        };
        match first {
            Err(_) => {
                shared.metrics.refused("idle_timeout");
                info!(idle_timeout = ?limits.idle_timeout, "connection closed: idle timeout");
                return End::Closed;
            }
            Ok(Ok(0)) => return End::ClientClosed,
            Ok(Ok(_)) => {}
            // Many clients end with a plain TCP close, no close_notify.
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return End::ClientClosed,
            Ok(Err(e)) => {
                info!(error = %e, "connection closed: read failed");
                return End::Closed;
            }
        }
        let started = Instant::now();
        // The rest of the request is read to the end even during shutdown (it is in flight),
        // but under the I/O deadline and the hard stop.
        let rest = async {
            tls.read_exact(&mut header[1..]).await?;
            Ok::<_, io::Error>(())
        };
        match io_deadline(shared, rest).await {
            Ok(()) => {}
            Err(reason) => {
                warn!(reason, "connection closed: incomplete request header");
                return End::Closed;
            }
        }
        let frame = match kmipd_ttlv::frame_len(&header, &shared.limits) {
            Ok(f) => f,
            Err(e) => {
                if let ErrorKind::MessageTooLarge { len, max } = e.kind {
                    shared.metrics.refused("max_message_size");
                    warn!(
                        len,
                        max,
                        "request refused: larger than limits.max_message_size; \
                        answering Invalid Message and closing"
                    );
                    let msg = format!("request of {len} bytes exceeds the limit of {max} bytes");
                    let now = shared.engine.config().clock.now();
                    let refusal = error_response(ProtocolVersion::V1_0, &msg, now);
                    let response = kmipd_ttlv::encode_to_vec(&refusal).unwrap_or_default();
                    let _ = io_deadline(shared, write_response(tls, &response)).await;
                } else {
                    shared.metrics.refused("bad_header");
                    warn!(error = %e, "connection closed: unreadable TTLV header");
                }
                return End::Closed;
            }
        };
        let mut message = Vec::with_capacity(frame.total_len);
        message.extend_from_slice(&header);
        message.resize(frame.total_len, 0);
        let body = async {
            if let Some(body) = message.get_mut(HEADER_LEN..) {
                tls.read_exact(body).await?;
            }
            Ok::<_, io::Error>(())
        };
        if let Err(reason) = io_deadline(shared, body).await {
            shared.metrics.refused("incomplete_request");
            warn!(
                reason,
                expected = frame.total_len,
                "connection closed: incomplete request"
            );
            return End::Closed;
        }
        let span = info_span!("request", bytes = frame.total_len);
        let outcome = execute(shared, principal, peer, message)
            .instrument(span)
            .await;
        let Some(response) = outcome else {
            return End::Closed;
        };
        if let Err(reason) = io_deadline(shared, write_response(tls, &response)).await {
            warn!(reason, "connection closed: response not written");
            return End::Closed;
        }
        shared.metrics.latency(started.elapsed());
    }
}

async fn write_response(tls: &mut Tls, response: &[u8]) -> io::Result<()> {
    tls.write_all(response).await?;
    tls.flush().await
}

/// Runs `f` under `limits.io_timeout` and the hard stop; `Err` says why it did not finish.
async fn io_deadline<T>(
    shared: &Shared,
    f: impl Future<Output = io::Result<T>>,
) -> Result<T, String> {
    let t = shared.config.limits.io_timeout;
    tokio::select! {
        () = shared.hard_stop.cancelled() => Err("shutdown grace period over".to_owned()),
        r = tokio::time::timeout(t, f) => match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => {
                shared.metrics.refused("io_timeout");
                Err(format!("limits.io_timeout ({t:?}) exceeded"))
            }
        },
    }
}

/// Runs one request on the blocking pool, then waits (without holding a thread) for its audit
/// records to be durable; `None` when no response may be sent.
async fn execute(
    shared: &Shared,
    principal: &Principal,
    peer: SocketAddr,
    message: Vec<u8>,
) -> Option<Vec<u8>> {
    let started = Instant::now();
    let permit = tokio::select! {
        () = shared.hard_stop.cancelled() => return None,
        p = shared.exec_slots.clone().acquire_owned() => p.ok()?,
    };
    let engine = &shared.engine;
    let limits = shared.limits;
    let max_batch = shared.config.limits.max_batch_items;
    // A light request (reads, attribute edits, symmetric keys, symmetric and public-key
    // cryptography: small, bounded work) runs right here, and its store commit, if any, is
    // awaited without holding a thread. Anything else runs on the blocking pool.
    let blocking = |f: Box<dyn FnOnce() -> Processed + Send>| async move {
        let task = tokio::task::spawn_blocking(f);
        tokio::select! {
            () = shared.hard_stop.cancelled() => None,
            j = task => Some(j),
        }
    };
    let joined = match kmipd_ttlv::decode(&message, &limits) {
        Ok(tree) if Engine::is_light(&tree) && batch_len(&tree) <= max_batch => {
            // Run again when the commit finds an object changed by a concurrent request.
            let mut retry = Retry::new();
            let answer = loop {
                let prepared = engine.prepare(principal, &tree);
                let (answered, answer) = tokio::sync::oneshot::channel();
                engine.complete_then(prepared, move |outcome| {
                    let _ = answered.send(outcome);
                });
                let outcome = tokio::select! {
                    () = shared.hard_stop.cancelled() => return None,
                    r = answer => r.ok()?,
                };
                match outcome {
                    Ok(answer) => break answer,
                    Err(conflict) => match retry.after_conflict() {
                        Some(pause) => tokio::time::sleep(pause).await,
                        None => break Answer::clean(conflict.into_answer()),
                    },
                }
            };
            drop(permit);
            Ok(finish(&tree, answer))
        }
        decoded => {
            let (engine, principal) = (engine.clone(), principal.clone());
            blocking(Box::new(move || {
                let out = process(&engine, &principal, decoded, max_batch);
                drop(permit);
                out
            }))
            .await?
        }
    };
    let out = match joined {
        Ok(v) => v,
        Err(e) => {
            error!(error = %e, "request task failed; closing the connection");
            return None;
        }
    };
    if let Some(r) = &out.refusal {
        shared.metrics.refused("max_batch_items");
        warn!(reason = %r, "request refused: limits.max_batch_items");
    }
    shared
        .incidents
        .report(&out.incidents, principal.name(), peer);
    let elapsed = started.elapsed();
    for item in &out.items {
        shared.metrics.item(&item.operation, &item.status);
        // The audit log holds the same facts durably; this line is for debugging.
        debug!(
            operation = %item.operation,
            object = %item.uids.join(","),
            result = %item.status,
            reason = item.reason.as_deref().unwrap_or(""),
            duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "request"
        );
    }
    // Queued now, in this order; the reply waits until the records are on disk.
    let audited = shared
        .audit
        .submit(principal.name().to_owned(), peer.to_string(), out.items);
    let audited = tokio::select! {
        () = shared.hard_stop.cancelled() => return None,
        r = audited => r,
    };
    if let Err(e) = audited {
        error!(error = %e, "audit record not written: response withheld, closing the connection");
        return None;
    }
    Some(out.response)
}

struct Processed {
    response: Vec<u8>,
    items: Vec<ItemSummary>,
    /// Store and internal failures, for the operator.
    incidents: Vec<Incident>,
    /// Why the request was refused before the engine (batch cap).
    refusal: Option<String>,
}

/// Batch cap, engine; the items to audit. Blocking: the engine's store commit waits for its
/// fsync. An undecodable request is answered Invalid Message without the engine.
fn process(
    engine: &Engine,
    principal: &Principal,
    decoded: Result<Ttlv, kmipd_ttlv::DecodeError>,
    max_batch: usize,
) -> Processed {
    let (request, answer, refusal) = match decoded {
        Ok(tree) => {
            let batch = batch_len(&tree);
            if batch > max_batch {
                let version = request_version(&tree).unwrap_or(ProtocolVersion::V1_0);
                let msg = format!("{batch} batch items exceed the limit of {max_batch}");
                let now = engine.config().clock.now();
                let response = Answer::clean(error_response(version, &msg, now));
                // Recorded as one refused item, not as items that never ran.
                let empty = Ttlv {
                    tag: tag::REQUEST_MESSAGE,
                    value: Value::Structure(Vec::new()),
                };
                (empty, response, Some(msg))
            } else {
                let answer = engine.handle(principal, &tree);
                (tree, answer, None)
            }
        }
        Err(e) => {
            debug!(error = %e, "undecodable request: answering Invalid Message");
            let response = Answer::clean(engine.undecodable_response());
            let empty = Ttlv {
                tag: tag::REQUEST_MESSAGE,
                value: Value::Structure(Vec::new()),
            };
            (empty, response, None)
        }
    };
    Processed {
        refusal,
        ..finish(&request, answer)
    }
}

/// The items to audit, the encoded answer and the incidents of a completed request.
fn finish(request: &Ttlv, answer: Answer) -> Processed {
    let items = audit::summarize(request, &answer.response);
    let response = kmipd_ttlv::encode_to_vec(&answer.response).unwrap_or_default();
    Processed {
        response,
        items,
        incidents: answer.incidents,
        refusal: None,
    }
}

/// The number of batch items in a request message.
fn batch_len(request: &Ttlv) -> usize {
    children(request)
        .iter()
        .filter(|c| c.tag == tag::BATCH_ITEM)
        .count()
}

fn children(t: &Ttlv) -> &[Ttlv] {
    match &t.value {
        Value::Structure(c) => c,
        _ => &[],
    }
}

fn child(t: &Ttlv, tag: kmipd_ttlv::Tag) -> Option<&Ttlv> {
    children(t).iter().find(|c| c.tag == tag)
}

fn request_version(request: &Ttlv) -> Option<ProtocolVersion> {
    let header = child(request, tag::REQUEST_HEADER)?;
    ProtocolVersion::from_ttlv(child(header, tag::PROTOCOL_VERSION)?).ok()
}

/// A one-item Invalid Message response (for refusals the engine does not see), stamped `now`
/// (the engine's clock).
fn error_response(version: ProtocolVersion, message: &str, now: i64) -> Ttlv {
    let response = ResponseMessage {
        header: ResponseHeader {
            protocol_version: version,
            time_stamp: now,
            client_correlation_value: None,
            server_correlation_value: None,
            batch_count: 1,
        },
        items: vec![ResponseBatchItem {
            operation: None,
            unique_batch_item_id: None,
            result_status: result_status::OPERATION_FAILED,
            result_reason: Some(result_reason::INVALID_MESSAGE),
            result_message: Some(message.to_owned()),
            payload: None,
        }],
    };
    response.to_ttlv()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_is_a_readable_kmip_response() {
        let bytes =
            kmipd_ttlv::encode_to_vec(&error_response(ProtocolVersion::new(1, 4), "too big", 7))
                .unwrap();
        let tree = kmipd_ttlv::decode(&bytes, &Limits::default()).unwrap();
        let r = ResponseMessage::from_ttlv(&tree).unwrap();
        assert_eq!(r.header.protocol_version, ProtocolVersion::new(1, 4));
        assert_eq!(r.header.time_stamp, 7);
        assert_eq!(r.items.len(), 1);
        assert_eq!(
            r.items[0].result_reason,
            Some(result_reason::INVALID_MESSAGE)
        );
        let empty = Ttlv {
            tag: tag::REQUEST_MESSAGE,
            value: Value::Structure(Vec::new()),
        };
        let s = audit::summarize(&empty, &tree);
        assert_eq!(s[0].status, "OperationFailed");
        assert_eq!(s[0].reason.as_deref(), Some("InvalidMessage"));
    }
}
