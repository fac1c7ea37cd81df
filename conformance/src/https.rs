//! The HTTPS mode: the test cases replayed to kmipd's KMIP over HTTPS listener (`[https]`,
//! `POST /kmip`), each request in one message encoding ([`Encoding`]: TTLV, XML or JSON, chosen
//! per file by [`Encoding::for_file`], so the MSGENC-HTTPS, MSGENC-XML and MSGENC-JSON cases
//! each travel in the encoding they are about), over the same mutual TLS as the wire mode.
//!
//! A response must come back with status 200 and the request's content type; it is read back
//! into TTLV and compared as in every mode.

use std::path::Path;

use kmipd_client::HttpsClient;
use kmipd_ttlv::{Limits, Ttlv};

use crate::Target;
use crate::wire::{Endpoint, SpawnOptions, SpawnedServer, Unavailable};

/// A message encoding of the HTTPS transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/octet-stream`.
    Ttlv,
    /// `text/xml`.
    Xml,
    /// `application/json`.
    Json,
}

impl Encoding {
    /// The encoding a test case file is about: XML for `MSGENC-XML-*`, JSON for
    /// `MSGENC-JSON-*`, TTLV for everything else.
    pub fn for_file(path: &Path) -> Encoding {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("MSGENC-XML") {
            Encoding::Xml
        } else if name.starts_with("MSGENC-JSON") {
            Encoding::Json
        } else {
            Encoding::Ttlv
        }
    }

    /// The request's (and the expected response's) content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Ttlv => "application/octet-stream",
            Encoding::Xml => "text/xml",
            Encoding::Json => "application/json",
        }
    }

    fn encode(self, request: &Ttlv) -> Result<Vec<u8>, String> {
        Ok(match self {
            Encoding::Ttlv => kmipd_ttlv::encode_to_vec(request).map_err(|e| e.to_string())?,
            Encoding::Xml => {
                kmipd_proto::xml::write_item(request, &kmipd_proto::xml::XmlOptions::default())
                    .into_bytes()
            }
            Encoding::Json => kmipd_proto::json::to_string(request).into_bytes(),
        })
    }

    fn decode(self, body: &[u8]) -> Result<Ttlv, String> {
        let text = || std::str::from_utf8(body).map_err(|_| String::from("response is not UTF-8"));
        match self {
            Encoding::Ttlv => kmipd_ttlv::decode(body, &Limits::unbounded())
                .map_err(|e| format!("response not TTLV: {e}")),
            Encoding::Xml => kmipd_proto::xml::read_item(
                text()?,
                &kmipd_proto::xml::XmlOptions::default(),
                &mut kmipd_proto::xml::NoPlaceholders,
            )
            .map_err(|e| format!("response not KMIP XML: {e}")),
            Encoding::Json => kmipd_proto::json::from_str_with(text()?, &Limits::unbounded())
                .map_err(|e| format!("response not KMIP JSON: {e}")),
        }
    }
}

/// kmipd's HTTPS listener as a [`Target`]: one HTTP/1.1 connection, opened on the first
/// request; the spawned server it talks to (if any) lives as long as it.
pub struct HttpsTarget {
    // Dropped in this order: the connection, its runtime, then the server process.
    client: Option<HttpsClient>,
    runtime: tokio::runtime::Runtime,
    endpoint: Endpoint,
    encoding: Encoding,
    _server: Option<SpawnedServer>,
}

impl std::fmt::Debug for HttpsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsTarget")
            .field("endpoint", &self.endpoint)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

impl HttpsTarget {
    /// A target for the HTTPS listener at `endpoint`, sending `encoding`.
    pub fn new(endpoint: Endpoint, encoding: Encoding) -> Result<HttpsTarget, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the client runtime: {e}"))?;
        Ok(HttpsTarget {
            client: None,
            runtime,
            endpoint,
            encoding,
            _server: None,
        })
    }

    /// A fresh kmipd with its HTTPS listener, spoken to as the instance's `client`.
    pub fn spawn(
        kmipd: &Path,
        options: &SpawnOptions,
        encoding: Encoding,
    ) -> Result<HttpsTarget, String> {
        let options = SpawnOptions {
            https: true,
            ..options.clone()
        };
        let server = SpawnedServer::start(kmipd, &options)?;
        let mut target = HttpsTarget::new(server.https_endpoint("client")?, encoding)?;
        target._server = Some(server);
        Ok(target)
    }

    fn exchange(&mut self, body: Vec<u8>) -> Result<kmipd_client::HttpResponse, String> {
        let ct = self.encoding.content_type();
        let mut client = match self.client.take() {
            Some(c) => c,
            None => self
                .runtime
                .block_on(
                    self.endpoint
                        .connector()
                        .connect_https(self.endpoint.addr()),
                )
                .map_err(|e| format!("connecting to {}: {e}", self.endpoint.addr()))?,
        };
        let r = self
            .runtime
            .block_on(client.post_kmip(ct, body))
            .map_err(|e| e.to_string())?;
        self.client = Some(client);
        Ok(r)
    }
}

impl Target for HttpsTarget {
    fn send(&mut self, request: &Ttlv) -> Result<Ttlv, String> {
        let body = self.encoding.encode(request)?;
        let r = self.exchange(body)?;
        if r.status != 200 {
            return Err(format!("HTTP status {}: {}", r.status, r.text().trim()));
        }
        let expected = self.encoding.content_type();
        if r.content_type.as_deref() != Some(expected) {
            return Err(format!(
                "response content type {:?}, expected {expected}",
                r.content_type
            ));
        }
        self.encoding.decode(&r.body)
    }
}

/// A factory for [`crate::run_files`]: a new HTTPS connection per test case to one running
/// server's HTTPS listener, sending `encoding`.
pub fn server_factory(
    endpoint: Endpoint,
    encoding: Encoding,
) -> impl Fn() -> Box<dyn Target> + Send + Sync {
    move || -> Box<dyn Target> {
        match HttpsTarget::new(endpoint.clone(), encoding) {
            Ok(t) => Box::new(t),
            Err(e) => Box::new(Unavailable(e)),
        }
    }
}

/// A factory for [`crate::run_files`]: a fresh spawned kmipd with its HTTPS listener per test
/// case, sending `encoding`.
pub fn spawn_factory(
    kmipd: std::path::PathBuf,
    options: SpawnOptions,
    encoding: Encoding,
) -> impl Fn() -> Box<dyn Target> + Send + Sync {
    move || -> Box<dyn Target> {
        match HttpsTarget::spawn(&kmipd, &options, encoding) {
            Ok(t) => Box::new(t),
            Err(e) => Box::new(Unavailable(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_per_file() {
        let e = |p: &str| Encoding::for_file(Path::new(p));
        assert_eq!(
            e("2.1/profiles/mandatory/MSGENC-XML-M-1-21.xml"),
            Encoding::Xml
        );
        assert_eq!(
            e("1.0/profiles/mandatory/MSGENC-JSON-M-1-10.xml"),
            Encoding::Json
        );
        assert_eq!(
            e("1.4/profiles/mandatory/MSGENC-HTTPS-M-1-14.xml"),
            Encoding::Ttlv
        );
        assert_eq!(e("1.4/test-cases/BL-M-1-14.xml"), Encoding::Ttlv);
    }
}
