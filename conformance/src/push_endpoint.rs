//! The runner's client endpoint in the wire mode: where a spawned kmipd sends its
//! server-to-client messages (Put, Notify; KMIP 1.4 §5) through `[[push]]`.
//!
//! A TLS listener on 127.0.0.1 port 0, on a thread and runtime of its own (kmipd connects
//! whenever it has a message, while the runner may be waiting on its own request). Its
//! certificate comes from the instance's development CA (`certs/ca.pem`, `ca.key`) and names
//! `client`, the identity the runner's requests come from, as kmipd checks; it requires kmipd
//! to present a certificate from that CA (mutual TLS), which [`PushEndpoint::start`] issues
//! too (`certs/push-client.pem`). Each message read is handed to the runner
//! ([`PushEndpoint::next`]), and the connection waits for the runner's answer
//! ([`PushEndpoint::answer`]) before it reads the next one. Every wait is bounded.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use kmipd_ttlv::{Limits, Ttlv};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::wire::NETWORK_TIMEOUT;

/// A message kmipd sent, and where its answer goes.
type Received = (Ttlv, oneshot::Sender<Ttlv>);

/// The listener, while the target lives; dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct PushEndpoint {
    addr: SocketAddr,
    received: std_mpsc::Receiver<Received>,
    /// The answer channel of the message [`PushEndpoint::next`] gave last.
    answer_to: Option<oneshot::Sender<Ttlv>>,
    /// Dropped with the endpoint: the thread's accept loop ends.
    _stop: oneshot::Sender<()>,
}

impl PushEndpoint {
    /// Issues the endpoint's certificate and kmipd's client certificate (written as
    /// `certs/push-client.pem` and `.key`) from the CA of the instance folder `instance`, and
    /// starts listening.
    pub(crate) fn start(instance: &Path) -> Result<PushEndpoint, String> {
        let certs = instance.join("certs");
        let read = |name: &str| {
            std::fs::read_to_string(certs.join(name))
                .map_err(|e| format!("{}: {e}", certs.join(name).display()))
        };
        let (ca_pem, ca_key) = (read("ca.pem")?, read("ca.key")?);
        let ca_key = rcgen::KeyPair::from_pem(&ca_key).map_err(|e| format!("ca.key: {e}"))?;
        let issuer =
            rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|e| format!("ca.pem: {e}"))?;
        let (endpoint_cert, endpoint_key) = issue(
            &issuer,
            "client",
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (kmipd_cert, kmipd_key) = issue(
            &issuer,
            "kmipd-push",
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let write = |name: &str, text: &str| {
            std::fs::write(certs.join(name), text)
                .map_err(|e| format!("{}: {e}", certs.join(name).display()))
        };
        write("push-client.pem", &kmipd_cert)?;
        write("push-client.key", &kmipd_key)?;

        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| format!("ca.pem: {e}"))?;
        roots.add(ca).map_err(|e| format!("ca.pem: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| format!("endpoint TLS: {e}"))?;
        let chain = vec![
            CertificateDer::from_pem_slice(endpoint_cert.as_bytes())
                .map_err(|e| format!("endpoint certificate: {e}"))?,
        ];
        let key = PrivateKeyDer::from_pem_slice(endpoint_key.as_bytes())
            .map_err(|e| format!("endpoint key: {e}"))?;
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("endpoint TLS: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| format!("endpoint TLS: {e}"))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("push endpoint: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("push endpoint: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("push endpoint: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("push endpoint runtime: {e}"))?;
        let (sent, received) = std_mpsc::channel::<Received>();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("push-endpoint".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = stopped => {}
                        () = accept_loop(listener, acceptor, sent) => {}
                    }
                });
            })
            .map_err(|e| format!("push endpoint thread: {e}"))?;
        Ok(PushEndpoint {
            addr,
            received,
            answer_to: None,
            _stop: stop,
        })
    }

    /// The listening address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next message kmipd sent; with `wait`, waiting up to [`NETWORK_TIMEOUT`].
    pub(crate) fn next(&mut self, wait: bool) -> Result<Option<Ttlv>, String> {
        let got = if wait {
            match self.received.recv_timeout(NETWORK_TIMEOUT) {
                Ok(m) => Some(m),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(String::from("the push endpoint stopped"));
                }
            }
        } else {
            self.received.try_recv().ok()
        };
        Ok(got.map(|(message, answer_to)| {
            self.answer_to = Some(answer_to);
            message
        }))
    }

    /// Sends `response` back on the connection of the message [`PushEndpoint::next`] gave
    /// last.
    pub(crate) fn answer(&mut self, response: &Ttlv) -> Result<(), String> {
        let to = self
            .answer_to
            .take()
            .ok_or_else(|| String::from("no message to answer"))?;
        to.send(response.clone())
            .map_err(|_| String::from("the server's connection is gone"))
    }
}

/// A certificate (ECDSA P-256, a day either side of now) for `cn`, also a DNS name, with one
/// Extended Key Usage; (certificate, key) PEM.
fn issue(
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
    cn: &str,
    eku: rcgen::ExtendedKeyUsagePurpose,
) -> Result<(String, String), String> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("key: {e}"))?;
    let mut params =
        rcgen::CertificateParams::new(vec![cn.to_owned()]).map_err(|e| format!("{cn}: {e}"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![eku];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(1);
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|e| format!("{cn}: {e}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    sent: std_mpsc::Sender<Received>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let (acceptor, sent) = (acceptor.clone(), sent.clone());
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(NETWORK_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            serve(tls, sent).await;
        });
    }
}

/// One connection from kmipd: each message to the runner, its answer back.
async fn serve(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    sent: std_mpsc::Sender<Received>,
) {
    let limits = Limits::default();
    loop {
        let mut header = [0u8; kmipd_ttlv::HEADER_LEN];
        // kmipd keeps its connection open between messages: no bound on this wait.
        if tls.read_exact(&mut header).await.is_err() {
            return;
        }
        let Ok(frame) = kmipd_ttlv::frame_len(&header, &limits) else {
            return;
        };
        let mut bytes = header.to_vec();
        bytes.resize(frame.total_len, 0);
        let Some(body) = bytes.get_mut(kmipd_ttlv::HEADER_LEN..) else {
            return;
        };
        if !matches!(
            tokio::time::timeout(NETWORK_TIMEOUT, tls.read_exact(body)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let Ok(message) = kmipd_ttlv::decode(&bytes, &limits) else {
            return;
        };
        let (answer_to, answer) = oneshot::channel();
        if sent.send((message, answer_to)).is_err() {
            return;
        }
        let Ok(Ok(answer)) = tokio::time::timeout(Duration::from_secs(60), answer).await else {
            return;
        };
        let Ok(out) = kmipd_ttlv::encode_to_vec(&answer) else {
            return;
        };
        if tls.write_all(&out).await.is_err() || tls.flush().await.is_err() {
            return;
        }
    }
}
