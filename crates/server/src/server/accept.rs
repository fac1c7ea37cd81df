//! Accepting connections: the accept loop, the TLS handshake, the client's identity, and
//! each connection's life until it closes.
//!
//! **Per connection** (one tokio task each, served concurrently):
//! 1. the total connection cap (`limits.max_connections`) is checked at accept (over the cap:
//!    closed at once, logged);
//! 2. the first TLS record (the ClientHello) is read by hand so that a failed handshake can be
//!    logged with the offered versions and suites, then replayed into rustls ([`Replay`] says
//!    why not `LazyConfigAcceptor`); the whole handshake runs under
//!    `limits.handshake_timeout`; each handshake takes the current TLS configuration (SIGHUP
//!    replaces it); with `tls.profile_suites`, a ClientHello that offers only the KMIP profile
//!    suites goes to OpenSSL instead ([`crate::tls_profile`]), and from there on the
//!    connection is the same (a [`Tls`] either way);
//! 3. the identity comes from the verified client certificate only ([`crate::tls`]); the
//!    per-identity cap (`limits.max_connections_per_identity`) is checked;
//! 4. requests, one after another, read and written by a [`Connection`] and run by
//!    [`execute`].
//!
//! **Shutdown**: the accept loop stops, idle connections close, a connection in the middle
//! of a request finishes it and writes the response; after `limits.shutdown_grace` whatever is
//! left is abandoned (the hard stop). Every committed change is already durable (the store
//! syncs before the engine answers), so nothing needs flushing beyond that.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::Shared;
use super::connection::{Connection, End};
use super::execute::execute;
use crate::tls::{HelloSummary, identity_from_cert, parse_client_hello};

/// What a listener's connections speak once the TLS handshake and the identity checks are
/// done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// KMIP messages in TTLV, one after another (`listen`, port 5696).
    Kmip,
    /// HTTP/1.1, `POST /kmip` (`[https]`, [`super::https`]).
    Https,
    /// HTTP/1.1, the admin web console (`[console]`, [`super::console`]).
    Console,
}

/// Accepts connections until shutdown begins, each on its own task; then waits for them
/// (`limits.shutdown_grace`, then the hard stop).
pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, protocol: Protocol) {
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
                connection(&shared, tcp, peer, protocol).await;
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
    if protocol == Protocol::Kmip {
        info!("kmipd stopped");
    }
}

/// A TCP stream whose first bytes were already read (the ClientHello record), replayed first.
///
/// Why not `tokio_rustls::LazyConfigAcceptor`, which also reads the ClientHello before the
/// handshake goes on: its `ClientHello` (rustls 0.23) gives the offered cipher suites and the
/// SNI but not the offered protocol versions (neither `supported_versions` nor the legacy
/// version field), and it keeps the raw bytes. The offered versions are what a failed
/// handshake's log line most needs (an old client offering only TLS 1.0 or 1.1 is the usual
/// case; `docs/configuration.md` shows the line), so the first record is read here, parsed
/// by [`parse_client_hello`] for the log, and replayed into rustls.
pub(super) struct Replay {
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

/// A client's TLS stream: rustls, or OpenSSL for the KMIP profile suites
/// ([`crate::tls_profile`]).
pub(super) enum Tls {
    /// The default.
    Rustls(Box<tokio_rustls::server::TlsStream<Replay>>),
    /// `tls.profile_suites`, for a client that offered nothing rustls serves.
    Openssl(tokio_openssl::SslStream<Replay>),
}

/// What an established TLS session tells about itself.
pub(super) struct Session {
    /// `rustls` or `openssl`.
    pub(super) library: &'static str,
    /// `TLSv1.2`, `TLSv1.3`.
    pub(super) version: String,
    /// The IANA name of the suite.
    pub(super) suite: String,
    /// A resumed session (always false with OpenSSL: resumption is off there).
    pub(super) resumed: bool,
    /// The client's end-entity certificate (DER), verified.
    pub(super) peer_cert: Option<Vec<u8>>,
}

impl Tls {
    /// The session's facts (see [`Session`]).
    pub(super) fn session(&self) -> Session {
        match self {
            Tls::Rustls(t) => {
                let c = t.get_ref().1;
                Session {
                    library: "rustls",
                    version: match c.protocol_version() {
                        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
                        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
                        Some(v) => format!("{v:?}"),
                        None => String::new(),
                    },
                    suite: c
                        .negotiated_cipher_suite()
                        .map(|s| format!("{:?}", s.suite()))
                        .unwrap_or_default(),
                    resumed: matches!(c.handshake_kind(), Some(rustls::HandshakeKind::Resumed)),
                    peer_cert: c
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.to_vec()),
                }
            }
            Tls::Openssl(t) => {
                let ssl = t.ssl();
                Session {
                    library: "openssl",
                    version: ssl.version_str().to_owned(),
                    suite: ssl
                        .current_cipher()
                        .map(|c| c.standard_name().unwrap_or(c.name()).to_owned())
                        .unwrap_or_default(),
                    resumed: ssl.session_reused(),
                    peer_cert: ssl.peer_certificate().and_then(|c| c.to_der().ok()),
                }
            }
        }
    }
}

impl AsyncRead for Tls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Tls::Rustls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
            Tls::Openssl(t) => Pin::new(t).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Tls::Rustls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
            Tls::Openssl(t) => Pin::new(t).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Tls::Rustls(t) => Pin::new(t.as_mut()).poll_flush(cx),
            Tls::Openssl(t) => Pin::new(t).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Tls::Rustls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
            Tls::Openssl(t) => Pin::new(t).poll_shutdown(cx),
        }
    }
}

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
        let acceptors = shared
            .acceptor
            .read()
            .map_err(|_| "TLS acceptor lock poisoned".to_owned())?
            .clone();
        if let (Some(profile), Some(h)) = (&acceptors.profile, &hello)
            && profile.wants(h)
        {
            return profile
                .accept(stream)
                .await
                .map(Tls::Openssl)
                .map_err(|e| format!("{e} (OpenSSL, KMIP profile suites)"));
        }
        acceptors
            .rustls
            .accept(stream)
            .await
            .map(|t| Tls::Rustls(Box::new(t)))
            .map_err(|e| e.to_string())
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

/// One connection, from the handshake to the close: identity, the per-identity cap, then its
/// requests (KMIP messages one after another, or HTTP requests).
async fn connection(shared: &Arc<Shared>, tcp: TcpStream, peer: SocketAddr, protocol: Protocol) {
    let tls = match handshake(shared, tcp, peer).await {
        Handshake::Done(t) => t,
        Handshake::Failed => return,
    };
    let Session {
        library,
        version,
        suite,
        resumed,
        peer_cert,
    } = tls.session();
    shared.metrics.tls_connection(library, &version, &suite);
    if library == "openssl" {
        info!(%peer, tls_version = %version, cipher_suite = %suite,
            "TLS on a KMIP profile suite through OpenSSL (tls.profile_suites)");
    }
    let source = shared.config.identity.source;
    let identity = match &peer_cert {
        Some(cert) => identity_from_cert(cert, source),
        None => Err(crate::tls::IdentityError::Missing("certificate")),
    };
    let mut conn = Connection::new(tls, shared);
    let identity = match identity {
        Ok(i) => i,
        Err(e) => {
            shared.metrics.refused("no_identity");
            warn!(%peer, reason = %e, ?source, "connection refused: no identity in the client certificate");
            conn.close().await;
            return;
        }
    };
    tracing::Span::current().record("identity", identity.as_str());
    let Some(_slot) = take_identity_slot(shared, &identity) else {
        shared.metrics.refused("max_connections_per_identity");
        warn!(%peer, %identity, limit = shared.config.limits.max_connections_per_identity,
            "connection refused: limits.max_connections_per_identity reached");
        conn.close().await;
        return;
    };
    info!(tls_version = %version, cipher_suite = %suite, tls_library = library, resumed, ?protocol, "connection established");
    // For `kmipd admin client list` (last seen) and revocation while connected.
    let serial = peer_cert
        .as_deref()
        .and_then(crate::clients::Seen::serial_of);
    if let Some(s) = &serial {
        shared.seen.saw(s);
    }
    // The role is looked up at each request (`kmipd admin reload` may change it).
    let names = peer_cert
        .as_deref()
        .map(|cert| crate::settings::cert_names(cert, &identity))
        .unwrap_or_else(|| kmipd_ops::access::CertNames::identity(&identity));
    if protocol == Protocol::Https {
        super::https::serve(shared, conn.into_stream(), &names, peer).await;
        return;
    }
    if protocol == Protocol::Console {
        super::console::serve(shared, conn.into_stream(), names, serial, peer).await;
        return;
    }
    let end = serve_requests(shared, &mut conn, &names, serial.as_deref(), peer).await;
    match end {
        End::ClientClosed => debug!("connection closed by the client"),
        End::Shutdown => debug!("connection closed for shutdown"),
        End::Closed => {}
    }
    conn.close().await;
}

/// Reads, runs and answers requests until the connection is to end.
async fn serve_requests(
    shared: &Shared,
    conn: &mut Connection<'_>,
    names: &kmipd_ops::access::CertNames,
    serial: Option<&str>,
    peer: SocketAddr,
) -> End {
    let revoked = shared.seen.revoked(serial);
    tokio::pin!(revoked);
    let peer = super::execute::Peer::from(peer);
    loop {
        // A revocation closes the connection at once, idle or in the middle of a request.
        let read = tokio::select! {
            r = conn.read_request() => r,
            () = revoked.as_mut() => Err(End::Closed),
        };
        let request = match read {
            Ok(r) => r,
            Err(End::Closed) if serial.is_some_and(|s| shared.seen.is_revoked(s)) => {
                shared.metrics.refused("client_revoked");
                warn!(
                    "connection closed: its client certificate was revoked (kmipd admin client revoke)"
                );
                return End::Closed;
            }
            Err(end) => return end,
        };
        if serial.is_some_and(|s| shared.seen.is_revoked(s)) {
            shared.metrics.refused("client_revoked");
            warn!(
                "connection closed: its client certificate was revoked (kmipd admin client revoke)"
            );
            return End::Closed;
        }
        let span = info_span!("request", bytes = request.message.len());
        let principal = shared.settings.principal(names);
        let outcome = execute(shared, &principal, &peer, request.message)
            .instrument(span)
            .await;
        let Some(response) = outcome else {
            return End::Closed;
        };
        if let Err(reason) = conn.write(&response).await {
            warn!(reason, "connection closed: response not written");
            return End::Closed;
        }
        shared.metrics.latency(request.started.elapsed());
    }
}
