//! KMIP over HTTPS (`[https]`): the KMIP 2.x HTTPS transport (KMIP Profiles, HTTPS and
//! Additional Message Encodings), served by hyper (HTTP/1.1) on the connections the
//! `accept` module hands over: the same TLS configuration, client certificate identity,
//! connection caps, engine, limits, audit and metrics as port 5696.
//!
//! **Requests.** `POST /kmip` with the message as TTLV (`Content-Type:
//! application/octet-stream`), KMIP XML (`text/xml`, or `application/xml`) or KMIP JSON
//! (`application/json`); the response (200) is the KMIP response message in the request's
//! encoding and content type. XML and JSON are turned into TTLV with `kmipd_proto::xml` and
//! `kmipd_proto::json` and run exactly as a TTLV request (`execute`: the same decoding limits,
//! batch cap, audit record before the reply); an undecodable TTLV body gets the same Invalid
//! Message response as on port 5696.
//!
//! **Refusals**, each with a one-line `text/plain` body and counted in
//! `kmipd_refusals_total{reason}`: another path, 404 (`https_not_found`); another method,
//! 405 with `Allow: POST` (`https_method`); another content type, 415
//! (`https_content_type`); a `Content-Length` over `limits.max_message_size`, 413 before any
//! of the body is read (`max_message_size`; a chunked body is cut at the same size); an XML or
//! JSON body that is not a KMIP message, 400 with the reader's one-line reason
//! (`https_bad_body`).
//!
//! **Deadlines.** A request's head must arrive within `limits.idle_timeout` of the connection's
//! start or of the previous response (hyper's header read timeout, which runs while the
//! connection is idle too); its body within `limits.io_timeout` (408 otherwise); a response
//! write that makes no progress for `limits.io_timeout` closes the connection
//! ([`WriteDeadline`]). At shutdown an
//! idle connection closes, one in the middle of a request answers it first (hyper's graceful
//! shutdown), and the hard stop abandons what is left.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use kmipd_ops::Principal;
use kmipd_ops::access::CertNames;
use kmipd_proto::xml::{NoPlaceholders, XmlOptions};
use kmipd_ttlv::Limits;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::{debug, info, warn};

use super::Shared;
use super::accept::Tls;
use super::execute::execute;

/// The one path KMIP requests are posted to.
pub(crate) const KMIP_PATH: &str = "/kmip";

/// A message encoding of the HTTPS transport, from the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// `application/octet-stream`: TTLV bytes.
    Ttlv,
    /// `text/xml` (or `application/xml`): KMIP XML.
    Xml,
    /// `application/json`: KMIP JSON.
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` value names (parameters such as `charset` ignored).
    pub(crate) fn of(content_type: &str) -> Option<Encoding> {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/octet-stream" => Some(Encoding::Ttlv),
            "text/xml" | "application/xml" => Some(Encoding::Xml),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }

    /// The `Content-Type` of responses in this encoding.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Encoding::Ttlv => "application/octet-stream",
            Encoding::Xml => "text/xml",
            Encoding::Json => "application/json",
        }
    }

    /// The request body as TTLV bytes; `Err` is a one-line reason for the client.
    pub(crate) fn request_message(self, body: &[u8], limits: &Limits) -> Result<Vec<u8>, String> {
        let text =
            || std::str::from_utf8(body).map_err(|_| "request body is not UTF-8 text".to_owned());
        let tree = match self {
            Encoding::Ttlv => return Ok(body.to_vec()),
            Encoding::Xml => {
                kmipd_proto::xml::read_item(text()?, &XmlOptions::default(), &mut NoPlaceholders)
                    .map_err(|e| format!("request body is not a KMIP XML message: {e}"))?
            }
            Encoding::Json => kmipd_proto::json::from_str_with(text()?, limits)
                .map_err(|e| format!("request body is not a KMIP JSON message: {e}"))?,
        };
        kmipd_ttlv::encode_to_vec(&tree).map_err(|e| format!("request not encodable: {e}"))
    }

    /// A TTLV response message (the server's own) in this encoding.
    pub(crate) fn response_body(self, response: Vec<u8>) -> Result<Vec<u8>, String> {
        if self == Encoding::Ttlv {
            return Ok(response);
        }
        let tree = kmipd_ttlv::decode(&response, &Limits::unbounded())
            .map_err(|e| format!("response not decodable: {e}"))?;
        Ok(match self {
            Encoding::Xml => kmipd_proto::xml::write_item(&tree, &XmlOptions::default()),
            Encoding::Json | Encoding::Ttlv => kmipd_proto::json::to_string(&tree),
        }
        .into_bytes())
    }
}

/// Serves HTTP/1.1 requests on one established TLS connection of the client certificate's
/// `names` until it closes (see the module docs for the deadlines and shutdown).
pub(super) async fn serve(shared: &Shared, stream: Box<Tls>, names: &CertNames, peer: SocketAddr) {
    let service = hyper::service::service_fn(|req| async move {
        // The role is looked up at each request (`kmipd admin reload` may change it).
        let principal = shared.settings.principal(names);
        Ok::<_, Infallible>(handle(shared, &principal, peer, req).await)
    });
    serve_http1(shared, stream, service, Listener::Https).await;
}

/// Which HTTP listener a connection belongs to (log lines, and whether an idle close counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Listener {
    /// KMIP over HTTPS: an idle close is a refusal (`kmipd_refusals_total{reason="idle_timeout"}`),
    /// as on port 5696.
    Https,
    /// The admin console: browsers keep idle connections open, so an idle close is routine and
    /// logged at debug only.
    Console,
}

/// Serves HTTP/1.1 with `service` on one established TLS connection until it closes, with the
/// deadlines and shutdown of the module docs: a request head within `limits.idle_timeout`, a
/// response write that stalls for `limits.io_timeout` ends it ([`WriteDeadline`]), graceful
/// close at shutdown and abandon at the hard stop. Shared by KMIP over HTTPS and the console.
pub(super) async fn serve_http1<S, B>(
    shared: &Shared,
    stream: Box<Tls>,
    service: S,
    listener: Listener,
) where
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limits = &shared.config.limits;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .keep_alive(true);
    let stream = WriteDeadline::new(stream, limits.io_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shared.stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                r = conn.as_mut() => r,
                () = shared.hard_stop.cancelled() => return,
            }
        }
    };
    let what = match listener {
        Listener::Https => "HTTPS",
        Listener::Console => "console",
    };
    match result {
        Ok(()) => debug!("{what} connection closed"),
        Err(e) if e.is_timeout() && listener == Listener::Console => {
            debug!("console connection closed: no request head within limits.idle_timeout");
        }
        Err(e) if e.is_timeout() => {
            shared.metrics.refused("idle_timeout");
            info!(idle_timeout = ?limits.idle_timeout, "{what} connection closed: no request head within limits.idle_timeout");
        }
        Err(e) => info!(error = %e, "{what} connection closed"),
    }
}

/// A stream whose writes (and flushes) fail with `TimedOut` once they have made no progress for
/// `limit` (`limits.io_timeout`): a client that stops reading its responses does not hold its
/// connection and task forever.
struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// Armed while a write or flush is pending.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            sleep: None,
        }
    }

    /// After a write or flush poll: disarm on progress; on `Pending`, arm the deadline (or
    /// check it) and fail once it has passed.
    fn watch<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.sleep = None;
            return r;
        }
        let limit = self.limit;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("response not written within limits.io_timeout ({limit:?})"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response with a one-line plain-text body.
fn plain(status: StatusCode, line: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{line}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A refusal: counted, logged at debug, answered with a one-line body.
fn refuse(
    shared: &Shared,
    reason: &'static str,
    status: StatusCode,
    line: &str,
) -> Response<Full<Bytes>> {
    shared.metrics.refused(reason);
    debug!(status = status.as_u16(), reason, "HTTPS request refused");
    plain(status, line)
}

/// One HTTP request: checks, the body, the engine, the answer in the request's encoding.
async fn handle(
    shared: &Shared,
    principal: &Principal,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    if req.uri().path() != KMIP_PATH {
        return refuse(
            shared,
            "https_not_found",
            StatusCode::NOT_FOUND,
            "not found: KMIP requests are POSTed to /kmip",
        );
    }
    if req.method() != Method::POST {
        let mut r = refuse(
            shared,
            "https_method",
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: KMIP requests are POSTed to /kmip",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(encoding) = Encoding::of(content_type) else {
        return refuse(
            shared,
            "https_content_type",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported content type: send application/octet-stream (TTLV), text/xml or \
             application/json",
        );
    };
    let max = shared.config.limits.max_message_size;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let too_large = |len: String| {
        warn!(
            len,
            max, "HTTPS request refused: larger than limits.max_message_size"
        );
        let mut r = refuse(
            shared,
            "max_message_size",
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request of {len} bytes exceeds the limit of {max} bytes"),
        );
        // The body is not read: the connection cannot carry another request.
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        r
    };
    if let Some(len) = declared
        && usize::try_from(len).map_or(true, |l| l > max)
    {
        return too_large(len.to_string());
    }
    let io_timeout = shared.config.limits.io_timeout;
    let body = Limited::new(req.into_body(), max).collect();
    let body = tokio::select! {
        () = shared.hard_stop.cancelled() => {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "server shutting down");
        }
        r = tokio::time::timeout(io_timeout, body) => r,
    };
    let body = match body {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return too_large(format!("more than {max}"));
        }
        Ok(Err(e)) => {
            info!(error = %e, "HTTPS request body not read");
            return plain(StatusCode::BAD_REQUEST, "request body not read");
        }
        Err(_) => {
            return refuse(
                shared,
                "io_timeout",
                StatusCode::REQUEST_TIMEOUT,
                &format!("request body not received within {io_timeout:?}"),
            );
        }
    };
    let message = match encoding.request_message(&body, &shared.limits) {
        Ok(m) => m,
        Err(line) => return refuse(shared, "https_bad_body", StatusCode::BAD_REQUEST, &line),
    };
    let Some(response) = execute(shared, principal, &peer.into(), message).await else {
        // Already logged (audit failure, hard stop): no answer may be given.
        let mut r = plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "no response: see the server log",
        );
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return r;
    };
    let body = match encoding.response_body(response) {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "HTTPS response not converted");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal server error");
        }
    };
    shared.metrics.latency(started.elapsed());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stalled_write_fails_after_the_deadline() {
        use tokio::io::AsyncWriteExt;
        // The peer never reads: the 64-byte pipe fills and the write stays pending.
        let (near, _far) = tokio::io::duplex(64);
        let mut w = WriteDeadline::new(near, Duration::from_millis(50));
        let e = tokio::time::timeout(Duration::from_secs(30), w.write_all(&[0u8; 4096]))
            .await
            .expect("the deadline ends the write")
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        // A peer that reads lets the same amount through.
        let (near, mut far) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut far, &mut sink)
                .await
                .map(|_| sink.len())
        });
        let mut w = WriteDeadline::new(near, Duration::from_secs(30));
        w.write_all(&[0u8; 4096]).await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap().unwrap(), 4096);
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Encoding::of("application/octet-stream"),
            Some(Encoding::Ttlv)
        );
        assert_eq!(Encoding::of("Text/XML; charset=utf-8"), Some(Encoding::Xml));
        assert_eq!(Encoding::of("application/xml"), Some(Encoding::Xml));
        assert_eq!(Encoding::of(" application/json ;x=y"), Some(Encoding::Json));
        assert_eq!(Encoding::of("text/plain"), None);
        assert_eq!(Encoding::of(""), None);
    }
}
