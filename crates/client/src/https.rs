//! KMIP over HTTPS: one HTTP/1.1 connection (hyper) over the same mutual TLS as
//! [`Connector::connect`], for kmipd's `[https]` listener (`POST /kmip`).

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use kmipd_ttlv::{Limits, Ttlv};

use crate::{Connector, Error, Result};

/// One HTTP/1.1 connection to a KMIP HTTPS listener.
pub struct HttpsClient {
    sender: SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
    timeout: Duration,
    max_response_len: usize,
}

impl std::fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsClient").finish_non_exhaustive()
    }
}

/// An HTTP response, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The `Allow` header, if any.
    pub allow: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as text (lossy), for one-line error bodies.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Connector {
    /// Connects (mutual TLS) and starts an HTTP/1.1 connection on it. Needs a tokio runtime
    /// that runs spawned tasks (the connection is driven by one).
    pub async fn connect_https(&self, addr: SocketAddr) -> Result<HttpsClient> {
        let timeout = self.options.timeout;
        let stream = self.connect_tls(addr).await?;
        let (sender, conn) = tokio::time::timeout(
            timeout,
            hyper::client::conn::http1::handshake(TokioIo::new(stream)),
        )
        .await
        .map_err(|_| Error::Timeout("starting HTTP"))?
        .map_err(http_err)?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(HttpsClient {
            sender,
            driver,
            timeout,
            max_response_len: self.options.max_response_len,
        })
    }
}

impl HttpsClient {
    /// Sends one request (`content_type` as given, or none) and reads the whole response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<HttpResponse> {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "kmip");
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(http_err)?;
        let max = self.max_response_len;
        let sender = &mut self.sender;
        tokio::time::timeout(self.timeout, async move {
            sender.ready().await.map_err(http_err)?;
            let response = sender.send_request(request).await.map_err(http_err)?;
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let status = response.status().as_u16();
            let content_type = header("content-type");
            let allow = header("allow");
            let body = Limited::new(response.into_body(), max)
                .collect()
                .await
                .map_err(http_err)?
                .to_bytes()
                .to_vec();
            Ok(HttpResponse {
                status,
                content_type,
                allow,
                body,
            })
        })
        .await
        .map_err(|_| Error::Timeout("waiting for the HTTP response"))?
    }

    /// `POST /kmip` with this body and content type.
    pub async fn post_kmip(&mut self, content_type: &str, body: Vec<u8>) -> Result<HttpResponse> {
        self.request("POST", "/kmip", Some(content_type), body)
            .await
    }

    /// Sends a TTLV request (`application/octet-stream`) and reads the TTLV response; a status
    /// other than 200 is [`Error::Frame`] with the status and the body's first line.
    pub async fn send_ttlv(&mut self, request: &Ttlv) -> Result<Ttlv> {
        let bytes = kmipd_ttlv::encode_to_vec(request)?;
        let r = self.post_kmip("application/octet-stream", bytes).await?;
        if r.status != 200 {
            return Err(Error::Frame(format!(
                "status {}: {}",
                r.status,
                r.text().trim()
            )));
        }
        let limits = Limits {
            max_message_len: self.max_response_len,
            ..Limits::default()
        };
        kmipd_ttlv::decode(&r.body, &limits).map_err(|e| Error::Frame(e.to_string()))
    }
}

/// An HTTP-level failure (hyper), as the I/O error it is.
fn http_err(e: impl std::fmt::Display) -> Error {
    Error::Io(std::io::Error::other(format!("HTTP: {e}")))
}

impl Drop for HttpsClient {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
