//! A small async KMIP client over mutual TLS (tokio-rustls), for kmipd's end-to-end tests, the
//! benchmark and command-line tools.
//!
//! - [`Connector`] holds the TLS setup (CA bundle, client certificate and key, server name) and
//!   opens connections; connections made by one `Connector` resume TLS sessions from each
//!   other unless resumption was turned off ([`TlsOptions::resumption`]).
//! - [`Client`] is one connection: [`Client::send`] takes a typed request and returns the typed
//!   response; [`Client::send_ttlv`] sends any tree (malformed requests for tests);
//!   [`Client::send_bytes`] any bytes. Responses are framed with `kmipd_ttlv`: the 8-byte header
//!   is read first and a response longer than the client's limit is refused before its body is
//!   read.
//! - Convenience calls (Create, Register, Get, Locate, Encrypt, ...) build the payload in the
//!   connection's protocol version (1.x Template-Attribute / Attribute, 2.x Attributes) and fail
//!   with [`Error::Kmip`] when the server answers a failure.
//!
//! Every network wait is bounded by [`TlsOptions::timeout`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kmipd_proto::attributes::{AttrName, Attribute};
use kmipd_proto::build;
use kmipd_proto::enums::{
    cryptographic_algorithm, cryptographic_usage_mask as usage, key_format_type, object_type,
    operation, query_function, result_status, secret_data_type,
};
use kmipd_proto::message::{
    ProtocolVersion, RequestBatchItem, RequestMessage, ResponseBatchItem, ResponseMessage,
};
use kmipd_proto::reader::{self, ProtoError, StructReader};
use kmipd_proto::tag;
use kmipd_ttlv::{HEADER_LEN, Limits, Ttlv, Value};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use zeroize::Zeroizing;

mod https;
pub use https::{HttpResponse, HttpsClient};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A certificate or key could not be read.
    #[error("bad {what}: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// TLS configuration refused (e.g. key does not match certificate).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The server name is not a valid DNS name or IP address.
    #[error("invalid server name {0:?}")]
    ServerName(String),
    /// Connecting, the handshake, reading or writing failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A network wait took longer than the configured timeout.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The response's header or body is not acceptable TTLV.
    #[error("bad response: {0}")]
    Frame(String),
    /// The response is not a well-formed Response Message.
    #[error("bad response message: {0}")]
    Proto(#[from] ProtoError),
    /// The request could not be encoded.
    #[error("request not encodable: {0}")]
    Encode(#[from] kmipd_ttlv::EncodeError),
    /// The server answered a failure.
    #[error("KMIP failure: status {status}, reason {reason:?}, message {message:?}")]
    Kmip {
        /// Result Status.
        status: u32,
        /// Result Reason.
        reason: Option<u32>,
        /// Result Message.
        message: Option<String>,
    },
    /// The response lacks something the call needs.
    #[error("unexpected response: {0}")]
    Unexpected(&'static str),
}

impl Error {
    /// The Result Reason of a KMIP failure.
    pub fn result_reason(&self) -> Option<u32> {
        match self {
            Error::Kmip { reason, .. } => *reason,
            _ => None,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// The name the server's certificate must carry (no SNI is needed by kmipd; the name is
    /// still checked). Default `localhost`.
    pub server_name: String,
    /// Resume TLS sessions between connections of one [`Connector`] (tickets and session IDs).
    /// Default on.
    pub resumption: bool,
    /// The protocol version of requests. Default 2.1.
    pub version: ProtocolVersion,
    /// Largest response accepted (header included), checked from the response's header.
    /// Default 16 MiB.
    pub max_response_len: usize,
    /// Bound on every network wait (connect, handshake, one request's write and its response).
    /// Default 30 s.
    pub timeout: Duration,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            server_name: "localhost".to_owned(),
            resumption: true,
            version: ProtocolVersion::V2_1,
            max_response_len: 16 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

/// The TLS setup for connections to one server.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    server_name: ServerName<'static>,
    options: TlsOptions,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn pem_err(what: &'static str) -> impl Fn(rustls::pki_types::pem::Error) -> Error {
    move |e| Error::Pem {
        what,
        reason: e.to_string(),
    }
}

impl Connector {
    /// A connector trusting the CA certificates of `ca_pem`, authenticating with the
    /// certificate chain of `cert_pem` and the private key of `key_pem`.
    pub fn new(
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
        options: TlsOptions,
    ) -> Result<Connector> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.map_err(pem_err("CA certificate"))?)?;
        }
        if roots.is_empty() {
            return Err(Error::Pem {
                what: "CA certificate",
                reason: "no certificate found".to_owned(),
            });
        }
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(pem_err("client certificate"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(pem_err("client key"))?;
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
        let config = builder.with_client_auth_cert(chain, key)?;
        Connector::from_config(config, options)
    }

    /// A connector over a ready rustls configuration (for tests that need unusual TLS, e.g. no
    /// client certificate at all).
    pub fn from_config(mut config: rustls::ClientConfig, options: TlsOptions) -> Result<Connector> {
        if !options.resumption {
            config.resumption = rustls::client::Resumption::disabled();
        }
        let server_name = ServerName::try_from(options.server_name.clone())
            .map_err(|_| Error::ServerName(options.server_name.clone()))?;
        Ok(Connector {
            tls: TlsConnector::from(Arc::new(config)),
            server_name,
            options,
        })
    }

    /// A connector without a client certificate (the server should refuse it).
    pub fn without_client_cert(ca_pem: &[u8], options: TlsOptions) -> Result<Connector> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.map_err(pem_err("CA certificate"))?)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Connector::from_config(config, options)
    }

    /// The options.
    pub fn options(&self) -> &TlsOptions {
        &self.options
    }

    /// Connects and completes the TLS handshake: the bare TLS stream (for tests that write
    /// their own bytes, and for [`Connector::connect_https`]).
    pub async fn connect_tls(&self, addr: SocketAddr) -> Result<TlsStream<TcpStream>> {
        let t = self.options.timeout;
        let tcp = tokio::time::timeout(t, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout("connecting"))??;
        tcp.set_nodelay(true)?;
        let mut stream = tokio::time::timeout(t, self.tls.connect(self.server_name.clone(), tcp))
            .await
            .map_err(|_| Error::Timeout("in the TLS handshake"))??;
        // TLS 1.3: the server's verdict on the client certificate arrives after the client
        // considers the handshake done; callers see a refusal at the first read.
        stream.flush().await?;
        Ok(stream)
    }

    /// Connects and completes the TLS handshake.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Client> {
        let t = self.options.timeout;
        let stream = self.connect_tls(addr).await?;
        Ok(Client {
            stream,
            version: self.options.version,
            max_response_len: self.options.max_response_len,
            timeout: t,
        })
    }
}

/// One connection to a KMIP server.
pub struct Client {
    stream: TlsStream<TcpStream>,
    version: ProtocolVersion,
    max_response_len: usize,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Ciphertext with what decrypting it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The ciphertext.
    pub data: Vec<u8>,
    /// The IV/nonce the server chose.
    pub iv: Vec<u8>,
    /// The authentication tag.
    pub tag: Vec<u8>,
}

impl Client {
    /// The protocol version of requests.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Changes the protocol version of later requests.
    pub fn set_version(&mut self, version: ProtocolVersion) {
        self.version = version;
    }

    /// True when this connection's TLS session was resumed.
    pub fn resumed(&self) -> bool {
        self.stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// The negotiated TLS version.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        self.stream.get_ref().1.protocol_version()
    }

    /// Sends raw bytes as they are (no framing check).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        tokio::time::timeout(self.timeout, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| Error::Timeout("writing the request"))??;
        Ok(())
    }

    /// Reads one response message: the 8-byte header, its length checked against the limit,
    /// then the body.
    pub async fn read_response(&mut self) -> Result<Ttlv> {
        let limits = Limits {
            max_message_len: self.max_response_len,
            ..Limits::default()
        };
        tokio::time::timeout(self.timeout, async {
            let mut header = [0u8; HEADER_LEN];
            self.stream.read_exact(&mut header).await?;
            let frame =
                kmipd_ttlv::frame_len(&header, &limits).map_err(|e| Error::Frame(e.to_string()))?;
            let mut bytes = Zeroizing::new(vec![0u8; frame.total_len]);
            let (head, body) = bytes.split_at_mut(HEADER_LEN);
            head.copy_from_slice(&header);
            self.stream.read_exact(body).await?;
            kmipd_ttlv::decode(&bytes, &limits).map_err(|e| Error::Frame(e.to_string()))
        })
        .await
        .map_err(|_| Error::Timeout("waiting for the response"))?
    }

    /// Sends any tree and reads the response tree.
    pub async fn send_ttlv(&mut self, request: &Ttlv) -> Result<Ttlv> {
        let bytes = Zeroizing::new(kmipd_ttlv::encode_to_vec(request)?);
        self.send_bytes(&bytes).await?;
        self.read_response().await
    }

    /// Sends a request message and reads the response message.
    pub async fn send(&mut self, request: &RequestMessage) -> Result<ResponseMessage> {
        let tree = self.send_ttlv(&request.to_ttlv()).await?;
        Ok(ResponseMessage::from_ttlv(&tree)?)
    }

    /// A request of this connection's version with these batch items.
    pub fn request(&self, items: Vec<RequestBatchItem>) -> RequestMessage {
        RequestMessage::new(self.version, items)
    }

    /// Sends one operation and returns its response payload's items; a failure is
    /// [`Error::Kmip`].
    pub async fn call(&mut self, op: u32, payload: Vec<Ttlv>) -> Result<Vec<Ttlv>> {
        let request = self.request(vec![item(op, payload)]);
        let response = self.send(&request).await?;
        let first = response
            .items
            .into_iter()
            .next()
            .ok_or(Error::Unexpected("no batch item"))?;
        payload_of(first)
    }

    /// Closes the connection (TLS close_notify).
    pub async fn shutdown(mut self) -> Result<()> {
        tokio::time::timeout(self.timeout, self.stream.shutdown())
            .await
            .map_err(|_| Error::Timeout("closing"))??;
        Ok(())
    }

    // --- Convenience calls -------------------------------------------------------------------

    /// Discover Versions: the versions the server offers, newest first.
    pub async fn discover_versions(&mut self) -> Result<Vec<ProtocolVersion>> {
        let items = self.call(operation::DISCOVER_VERSIONS, vec![]).await?;
        items
            .iter()
            .filter(|i| i.tag == tag::PROTOCOL_VERSION)
            .map(|i| ProtocolVersion::from_ttlv(i).map_err(Error::from))
            .collect()
    }

    /// Query Operations, Objects and Server Information: the response payload's items.
    pub async fn query(&mut self) -> Result<Vec<Ttlv>> {
        let functions = [
            query_function::QUERY_OPERATIONS,
            query_function::QUERY_OBJECTS,
            query_function::QUERY_SERVER_INFORMATION,
        ];
        let payload = functions
            .iter()
            .map(|f| build::enumeration(tag::QUERY_FUNCTION, *f))
            .collect();
        self.call(operation::QUERY, payload).await
    }

    /// The attributes in this version's request form.
    fn attributes_payload(&self, attrs: &[Attribute]) -> Vec<Ttlv> {
        vec![build::attributes(
            self.version,
            tag::TEMPLATE_ATTRIBUTE,
            tag::ATTRIBUTES,
            attrs,
        )]
    }

    /// Create: an AES key of `bits`, usable to encrypt and decrypt, with an optional Name.
    pub async fn create_aes(&mut self, bits: i32, name: Option<&str>) -> Result<String> {
        let mut attrs = vec![
            Attribute::std(
                tag::CRYPTOGRAPHIC_ALGORITHM,
                Value::Enumeration(cryptographic_algorithm::AES),
            ),
            Attribute::std(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(bits)),
            build::usage_mask_attr(usage::ENCRYPT | usage::DECRYPT),
        ];
        attrs.extend(name.map(name_attr));
        self.create(object_type::SYMMETRIC_KEY, &attrs).await
    }

    /// Create with any attributes; returns the Unique Identifier.
    pub async fn create(&mut self, object_type: u32, attrs: &[Attribute]) -> Result<String> {
        let mut payload = vec![build::enumeration(tag::OBJECT_TYPE, object_type)];
        payload.extend(self.attributes_payload(attrs));
        let items = self.call(operation::CREATE, payload).await?;
        uid_in(&items)
    }

    /// Register a symmetric key (Raw format) of `algorithm` with these bytes.
    pub async fn register_symmetric(
        &mut self,
        algorithm: u32,
        key: &[u8],
        name: Option<&str>,
    ) -> Result<String> {
        let bits = i32::try_from(key.len().saturating_mul(8)).unwrap_or(i32::MAX);
        let object = build::structure(
            tag::SYMMETRIC_KEY,
            vec![build::byte_key_block(
                key_format_type::RAW,
                key.to_vec(),
                Some((algorithm, bits)),
            )],
        );
        let mut attrs = vec![build::usage_mask_attr(usage::ENCRYPT | usage::DECRYPT)];
        if self.version.is_v2() {
            attrs.push(Attribute::std(
                tag::CRYPTOGRAPHIC_ALGORITHM,
                Value::Enumeration(algorithm),
            ));
            attrs.push(Attribute::std(
                tag::CRYPTOGRAPHIC_LENGTH,
                Value::Integer(bits),
            ));
        }
        attrs.extend(name.map(name_attr));
        self.register(object_type::SYMMETRIC_KEY, object, &attrs)
            .await
    }

    /// Register a Secret Data (Password) holding these bytes.
    pub async fn register_secret(&mut self, secret: &[u8], name: Option<&str>) -> Result<String> {
        let object = build::structure(
            tag::SECRET_DATA,
            vec![
                build::enumeration(tag::SECRET_DATA_TYPE, secret_data_type::PASSWORD),
                build::byte_key_block(key_format_type::RAW, secret.to_vec(), None),
            ],
        );
        let mut attrs = vec![build::usage_mask_attr(usage::VERIFY)];
        attrs.extend(name.map(name_attr));
        self.register(object_type::SECRET_DATA, object, &attrs)
            .await
    }

    /// Register any object structure with these attributes.
    pub async fn register(
        &mut self,
        object_type: u32,
        object: Ttlv,
        attrs: &[Attribute],
    ) -> Result<String> {
        let mut payload = vec![build::enumeration(tag::OBJECT_TYPE, object_type)];
        payload.extend(self.attributes_payload(attrs));
        payload.push(object);
        let items = self.call(operation::REGISTER, payload).await?;
        uid_in(&items)
    }

    /// Get: the response payload's items (Object Type, Unique Identifier, the object).
    pub async fn get(&mut self, uid: &str) -> Result<Vec<Ttlv>> {
        self.call(operation::GET, vec![build::unique_identifier(uid)])
            .await
    }

    /// Get, then the Key Material bytes of the returned key (Raw / Opaque formats).
    pub async fn get_key_bytes(&mut self, uid: &str) -> Result<Zeroizing<Vec<u8>>> {
        let items = self.get(uid).await?;
        find_key_material(&items)
            .map(|b| Zeroizing::new(b.to_vec()))
            .ok_or(Error::Unexpected("no Key Material in the Get response"))
    }

    /// Get Attributes (all of them).
    pub async fn get_attributes(&mut self, uid: &str) -> Result<Vec<Attribute>> {
        let items = self
            .call(
                operation::GET_ATTRIBUTES,
                vec![build::unique_identifier(uid)],
            )
            .await?;
        let mut out = Vec::new();
        for i in &items {
            if i.tag == tag::ATTRIBUTE && !self.version.is_v2() {
                out.push(Attribute::from_v1(i)?.0);
            } else if i.tag == tag::ATTRIBUTES {
                for child in StructReader::any(i)?.items() {
                    out.push(Attribute::from_v2(child)?);
                }
            }
        }
        Ok(out)
    }

    /// Locate by attributes: the identifiers found.
    pub async fn locate(&mut self, attrs: &[Attribute]) -> Result<Vec<String>> {
        let payload = if self.version.is_v2() {
            vec![build::structure(
                tag::ATTRIBUTES,
                attrs.iter().map(Attribute::to_v2).collect(),
            )]
        } else {
            attrs.iter().map(|a| a.to_v1(None)).collect()
        };
        let items = self.call(operation::LOCATE, payload).await?;
        items
            .iter()
            .filter(|i| i.tag == tag::UNIQUE_IDENTIFIER)
            .map(|i| Ok(reader::as_text(i)?.to_owned()))
            .collect()
    }

    /// Locate by Name.
    pub async fn locate_by_name(&mut self, name: &str) -> Result<Vec<String>> {
        self.locate(&[name_attr(name)]).await
    }

    /// Activate.
    pub async fn activate(&mut self, uid: &str) -> Result<()> {
        self.call(operation::ACTIVATE, vec![build::unique_identifier(uid)])
            .await?;
        Ok(())
    }

    /// Revoke with a Revocation Reason Code.
    pub async fn revoke(&mut self, uid: &str, reason: u32) -> Result<()> {
        let reason = build::structure(
            tag::REVOCATION_REASON,
            vec![build::enumeration(tag::REVOCATION_REASON_CODE, reason)],
        );
        self.call(
            operation::REVOKE,
            vec![build::unique_identifier(uid), reason],
        )
        .await?;
        Ok(())
    }

    /// Destroy.
    pub async fn destroy(&mut self, uid: &str) -> Result<()> {
        self.call(operation::DESTROY, vec![build::unique_identifier(uid)])
            .await?;
        Ok(())
    }

    /// Encrypt with AES-GCM (16-byte tag, IV chosen by the server).
    pub async fn encrypt(&mut self, uid: &str, plaintext: &[u8]) -> Result<Sealed> {
        let items = self
            .call(
                operation::ENCRYPT,
                vec![
                    build::unique_identifier(uid),
                    build::gcm_parameters(16),
                    build::bytes(tag::DATA, plaintext.to_vec()),
                ],
            )
            .await?;
        let bytes_of = |t| {
            items
                .iter()
                .find(|i| i.tag == t)
                .and_then(|i| reader::as_bytes(i).ok())
                .map(<[u8]>::to_vec)
        };
        Ok(Sealed {
            data: bytes_of(tag::DATA).ok_or(Error::Unexpected("no Data"))?,
            iv: bytes_of(tag::IV_COUNTER_NONCE).ok_or(Error::Unexpected("no IV"))?,
            tag: bytes_of(tag::AUTHENTICATED_ENCRYPTION_TAG)
                .ok_or(Error::Unexpected("no Authenticated Encryption Tag"))?,
        })
    }

    /// Decrypt AES-GCM output of [`Client::encrypt`].
    pub async fn decrypt(&mut self, uid: &str, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>> {
        let items = self
            .call(
                operation::DECRYPT,
                vec![
                    build::unique_identifier(uid),
                    build::gcm_parameters(16),
                    build::bytes(tag::DATA, sealed.data.clone()),
                    build::bytes(tag::IV_COUNTER_NONCE, sealed.iv.clone()),
                    build::bytes(tag::AUTHENTICATED_ENCRYPTION_TAG, sealed.tag.clone()),
                ],
            )
            .await?;
        items
            .iter()
            .find(|i| i.tag == tag::DATA)
            .and_then(|i| reader::as_bytes(i).ok())
            .map(|b| Zeroizing::new(b.to_vec()))
            .ok_or(Error::Unexpected("no Data"))
    }
}

/// A batch item of `op` with these payload items.
pub fn item(op: u32, payload: Vec<Ttlv>) -> RequestBatchItem {
    RequestBatchItem::new(op, payload)
}

/// The payload items of a successful batch item; [`Error::Kmip`] for a failed one.
pub fn payload_of(item: ResponseBatchItem) -> Result<Vec<Ttlv>> {
    if item.result_status != result_status::SUCCESS {
        return Err(Error::Kmip {
            status: item.result_status,
            reason: item.result_reason,
            message: item.result_message,
        });
    }
    match item.payload {
        Some(p) => Ok(StructReader::any(&p)?.items().to_vec()),
        None => Ok(Vec::new()),
    }
}

pub use kmipd_proto::build::name_attr;

/// A custom attribute (`x-name`) with a text value.
pub fn custom_attr(name: &str, value: &str) -> Attribute {
    Attribute {
        name: AttrName::from_v1_name(name),
        value: Value::TextString(value.to_owned()),
    }
}

fn uid_in(items: &[Ttlv]) -> Result<String> {
    items
        .iter()
        .find(|i| i.tag == tag::UNIQUE_IDENTIFIER)
        .ok_or(Error::Unexpected("no Unique Identifier"))
        .and_then(|i| Ok(reader::as_text(i)?.to_owned()))
}

/// The first Key Material byte string anywhere in these items.
fn find_key_material(items: &[Ttlv]) -> Option<&[u8]> {
    for i in items {
        if i.tag == tag::KEY_MATERIAL
            && let Value::ByteString(b) = &i.value
        {
            return Some(b);
        }
        if let Value::Structure(children) = &i.value
            && let Some(b) = find_key_material(children)
        {
            return Some(b);
        }
    }
    None
}
