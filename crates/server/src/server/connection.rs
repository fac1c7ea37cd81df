//! [`Connection`]: one client's TLS stream, read and written in whole KMIP messages, with a
//! deadline on every wait (as mini-redis's `Connection` owns framing for its handler).
//!
//! **Reading a request.** The first byte of the 8-byte TTLV header is awaited under
//! `limits.idle_timeout`, or until shutdown begins (an idle connection then closes). From
//! there the request is in flight and is read to its end even during shutdown, but under
//! `limits.io_timeout` and the hard stop: the rest of the header, checked with
//! `kmipd_ttlv::frame_len` (an oversized length is refused from the header alone, before any
//! allocation, with an Invalid Message response, then the connection is closed; an unreadable
//! header closes it), then the body. **Writing** the response has the same deadline.
//!
//! A slow or hostile client holds only its own connection: every read and write has a
//! deadline, counted in `kmipd_refusals_total{reason}` when it passes.

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use kmipd_proto::message::ProtocolVersion;
use kmipd_ttlv::{ErrorKind, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{info, warn};

use super::Shared;
use super::accept::Tls;
use super::execute::error_response;

/// A client's TLS stream after the handshake; see the module docs.
pub(super) struct Connection<'a> {
    stream: Box<Tls>,
    shared: &'a Shared,
}

/// One request message, read whole.
pub(super) struct Request {
    /// Its bytes, header included.
    pub(super) message: Vec<u8>,
    /// When its first byte arrived (the latency metric starts there).
    pub(super) started: Instant,
}

/// Why a connection ends.
pub(super) enum End {
    /// The client closed it between requests.
    ClientClosed,
    /// Shutdown began while it was idle.
    Shutdown,
    /// Closed by the server for a reason already logged.
    Closed,
}

impl<'a> Connection<'a> {
    pub(super) fn new(stream: Box<Tls>, shared: &'a Shared) -> Connection<'a> {
        Connection { stream, shared }
    }

    /// The TLS stream, for another protocol than TTLV messages (HTTPS).
    pub(super) fn into_stream(self) -> Box<Tls> {
        self.stream
    }

    /// The next request; `Err` when the connection is to end (already logged).
    pub(super) async fn read_request(&mut self) -> Result<Request, End> {
        let shared = self.shared;
        let limits = &shared.config.limits;
        // Wait for the next request: idle timeout, or shutdown while idle.
        let mut header = [0u8; HEADER_LEN];
        let first = tokio::select! {
            () = shared.stop.cancelled() => return Err(End::Shutdown),
            r = tokio::time::timeout(limits.idle_timeout, self.stream.read(&mut header[..1])) => r,
        };
        match first {
            Err(_) => {
                shared.metrics.refused("idle_timeout");
                info!(idle_timeout = ?limits.idle_timeout, "connection closed: idle timeout");
                return Err(End::Closed);
            }
            Ok(Ok(0)) => return Err(End::ClientClosed),
            Ok(Ok(_)) => {}
            // Many clients end with a plain TCP close, no close_notify.
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(End::ClientClosed);
            }
            Ok(Err(e)) => {
                info!(error = %e, "connection closed: read failed");
                return Err(End::Closed);
            }
        }
        let started = Instant::now();
        // The rest of the request is read to the end even during shutdown (it is in flight),
        // but under the I/O deadline and the hard stop.
        let stream = &mut self.stream;
        let rest = async {
            stream.read_exact(&mut header[1..]).await?;
            Ok::<_, io::Error>(())
        };
        if let Err(reason) = io_deadline(shared, rest).await {
            warn!(reason, "connection closed: incomplete request header");
            return Err(End::Closed);
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
                    let _ = self.write(&response).await;
                } else {
                    shared.metrics.refused("bad_header");
                    warn!(error = %e, "connection closed: unreadable TTLV header");
                }
                return Err(End::Closed);
            }
        };
        let mut message = Vec::with_capacity(frame.total_len);
        message.extend_from_slice(&header);
        message.resize(frame.total_len, 0);
        let stream = &mut self.stream;
        let body = async {
            if let Some(body) = message.get_mut(HEADER_LEN..) {
                stream.read_exact(body).await?;
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
            return Err(End::Closed);
        }
        Ok(Request { message, started })
    }

    /// Writes a response message under the I/O deadline; `Err` says why it was not written.
    pub(super) async fn write(&mut self, response: &[u8]) -> Result<(), String> {
        let stream = &mut self.stream;
        let write = async {
            stream.write_all(response).await?;
            stream.flush().await
        };
        io_deadline(self.shared, write).await
    }

    /// Sends close_notify, waiting at most a second (or `limits.io_timeout` if shorter).
    pub(super) async fn close(&mut self) {
        let _ = tokio::time::timeout(
            self.shared
                .config
                .limits
                .io_timeout
                .min(Duration::from_secs(1)),
            self.stream.shutdown(),
        )
        .await;
    }
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
