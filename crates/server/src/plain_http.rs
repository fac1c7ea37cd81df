//! The plain-HTTP listener (`[metrics] listen`, loopback by default), served by hyper:
//!
//! - `GET /metrics`: the Prometheus exposition text ([`crate::metrics`]);
//! - `GET /crl`: kmipd's CRL of its enrolled clients (`[admin] client_crl`, see
//!   [`crate::clients`]) in DER (`application/pkix-crl`, what a CRL distribution point
//!   serves), and `GET /crl.pem` the same in PEM. A CRL is signed by the client CA and public,
//!   so plain HTTP is what CRL distribution points use. The file is read at each request: a
//!   revocation replaces it, and the next download has it.
//!
//! Anything else is 404, a method other than GET (or HEAD) 405, each with a one-line body.
//! The request head must arrive within 5 s, one request per connection, and a connection
//! ends within 30 s whatever happens. Nothing on this listener touches KMIP state.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::metrics::Metrics;

/// The longest the request head may take to arrive.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one connection may last.
const CONNECTION_LIMIT: Duration = Duration::from_secs(30);

/// What the listener serves.
struct Sources {
    metrics: Arc<Metrics>,
    crl: Option<PathBuf>,
}

/// Serves `listener` (see the module docs) until `stop` is cancelled.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    crl: Option<PathBuf>,
    stop: CancellationToken,
) {
    let sources = Arc::new(Sources { metrics, crl });
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let sources = sources.clone();
                async move { Ok::<_, Infallible>(answer(&sources, &req).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(false);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIMIT, conn).await {
                debug!(error = %e, "metrics listener: connection ended");
            }
        });
    }
}

async fn answer(sources: &Sources, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET\n".into(),
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            // Blocking: the PostgreSQL store's figures are a query.
            let metrics = sources.metrics.clone();
            match tokio::task::spawn_blocking(move || metrics.render()).await {
                Ok(body) => {
                    let mut r = text(StatusCode::OK, body);
                    r.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    r
                }
                Err(_) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "metrics could not be rendered\n".into(),
                ),
            }
        }
        path @ ("/crl" | "/crl.pem") => match &sources.crl {
            None => text(
                StatusCode::NOT_FOUND,
                "no client CRL: [admin] client_crl is not set\n".into(),
            ),
            Some(file) => crl(file, path == "/crl.pem").await,
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try GET /metrics or GET /crl\n".into(),
        ),
    }
}

/// The CRL file, in DER or as written (PEM).
async fn crl(file: &Path, pem: bool) -> Response<Full<Bytes>> {
    let path = file.to_owned();
    let read = tokio::task::spawn_blocking(move || std::fs::read(path)).await;
    let Ok(Ok(bytes)) = read else {
        debug!(file = %file.display(), "client CRL not readable");
        return text(
            StatusCode::NOT_FOUND,
            "no client CRL yet: kmipd writes it at its first client revocation\n".into(),
        );
    };
    let (body, content_type) = if pem {
        (bytes, "application/x-pem-file")
    } else {
        match CertificateRevocationListDer::from_pem_slice(&bytes) {
            Ok(der) => (der.as_ref().to_vec(), "application/pkix-crl"),
            Err(_) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the client CRL file is not a PEM CRL\n".into(),
                );
            }
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A plain-text response.
fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
