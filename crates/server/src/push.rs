//! Delivery of the server-to-client messages Put and Notify (KMIP 1.4 §5) to the endpoints of
//! `[[push]]`.
//!
//! The engine hands a committed request's messages over with its answer
//! ([`kmipd_ops::Answer::pushes`]: who may get what is decided there, `kmipd_ops::push`).
//! Here each destination has a bounded queue and a task of its own that opens a mutual-TLS
//! connection to the client's endpoint (kmipd as TLS client with its server certificate or
//! `client_cert`; the endpoint's certificate must chain to `ca` and name `server_name`, by
//! default the subscribed identity), writes each message as a KMIP Request Message and reads
//! the client's Response Message, each step bounded by `timeout`. A failed attempt drops the
//! connection and is retried after a pause that doubles from 100 ms up to `retry_max`, at most
//! `attempts` times; a client that answers with a failure is not asked again.
//!
//! The request path never waits: a message is queued with `try_send`, and a full queue drops
//! it. Every message ends in exactly one audit record (operation Put or Notify, the object,
//! Success or Operation Failed with why: delivered, refused by the client, given up, dropped,
//! still queued when the server stopped; a message whose attempt the stop interrupts is
//! recorded as given up)
//! under the subscribed identity, with the endpoint's address as peer, and in the
//! `kmipd_push_*` metrics of its destination. Key bytes are never logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kmipd_ops::push::Push;
use kmipd_proto::tag;
use kmipd_ttlv::{Limits, Ttlv, Value};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::audit::{AuditLog, ItemSummary};
use crate::config::{Config, PushConfig};

/// First pause after a failed attempt.
const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// Largest answer read from a client (an answer to Put or Notify has no payload).
const MAX_ANSWER: usize = 64 * 1024;

/// One destination's figures (`kmipd_push_*{destination}`).
#[derive(Debug, Default)]
pub struct PushStatus {
    /// Messages queued and not yet delivered or given up.
    pub queued: AtomicU64,
    /// Messages the client took (answered Success).
    pub delivered: AtomicU64,
    /// Messages given up (every attempt failed) or refused by the client.
    pub failed: AtomicU64,
    /// Messages dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Failed attempts (connect, handshake, write, read).
    pub attempt_failures: AtomicU64,
}

/// What cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The TLS settings of a destination cannot be used.
    #[error("push {destination}: {reason}")]
    Tls {
        /// The destination.
        destination: String,
        /// Why.
        reason: String,
    },
}

/// The senders of every destination.
#[derive(Debug, Default)]
pub struct Pusher {
    queues: HashMap<String, Queue>,
    audit: Option<AuditLog>,
}

#[derive(Debug)]
struct Queue {
    tx: mpsc::Sender<Push>,
    status: Arc<PushStatus>,
    address: String,
}

impl Pusher {
    /// Starts a task per `[[push]]` destination (on the current tokio runtime); each ends
    /// when `stop` is cancelled. `status` gets each destination's figures as it starts.
    pub fn start(
        config: &Config,
        audit: &AuditLog,
        stop: &CancellationToken,
        status: &mut dyn FnMut(&str, Arc<PushStatus>),
    ) -> Result<Pusher, PushError> {
        let mut queues = HashMap::new();
        for p in &config.push {
            let destination = p.destination().to_owned();
            let (connector, name) = tls_client(config, p).map_err(|reason| PushError::Tls {
                destination: destination.clone(),
                reason,
            })?;
            let (tx, rx) = mpsc::channel(p.queue);
            let figures = Arc::new(PushStatus::default());
            status(&destination, figures.clone());
            let worker = Worker {
                destination: destination.clone(),
                address: p.address.clone(),
                connector,
                name,
                timeout: p.timeout,
                attempts: p.attempts,
                retry_max: p.retry_max,
                status: figures.clone(),
                audit: audit.clone(),
                stop: stop.clone(),
                connection: None,
            };
            tokio::spawn(worker.run(rx));
            queues.insert(
                destination,
                Queue {
                    tx,
                    status: figures,
                    address: p.address.clone(),
                },
            );
        }
        Ok(Pusher {
            queues,
            audit: Some(audit.clone()),
        })
    }

    /// Queues each message for its destination without waiting; a full queue drops it
    /// (counted and audited).
    pub fn deliver(&self, pushes: Vec<Push>) {
        for push in pushes {
            let Some(q) = self.queues.get(&push.destination) else {
                // The engine only names configured destinations.
                continue;
            };
            q.status.queued.fetch_add(1, Ordering::Relaxed);
            match q.tx.try_send(push) {
                Ok(()) => {}
                Err(
                    mpsc::error::TrySendError::Full(push) | mpsc::error::TrySendError::Closed(push),
                ) => {
                    q.status.queued.fetch_sub(1, Ordering::Relaxed);
                    q.status.dropped.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        destination = %push.destination,
                        operation = push.operation_name(),
                        object = %push.uid,
                        "push dropped: the destination's queue is full"
                    );
                    if let Some(audit) = &self.audit {
                        let record = summary(&push, Err("dropped: the queue is full".to_owned()));
                        // Queued at once; nobody waits for it to be durable.
                        drop(audit.submit(push.identity.clone(), q.address.clone(), vec![record]));
                    }
                }
            }
        }
    }
}

/// The audit record of one message's fate.
fn summary(push: &Push, outcome: Result<String, String>) -> ItemSummary {
    ItemSummary::outcome(push.operation_name(), vec![push.uid.clone()], &outcome)
}

/// The TLS client of a destination: trusts `ca` (default `tls.client_ca`), presents
/// `client_cert` (default the server's certificate), checks `server_name` (default the
/// identity).
fn tls_client(
    config: &Config,
    p: &PushConfig,
) -> Result<(TlsConnector, ServerName<'static>), String> {
    let ca = p.ca.as_ref().unwrap_or(&config.tls.client_ca);
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).map_err(|e| format!("ca {}: {e}", ca.display()))?
    {
        let cert = cert.map_err(|e| format!("ca {}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("ca {}: {e}", ca.display()))?;
    }
    let (cert, key) = match (&p.client_cert, &p.client_key) {
        (Some(c), Some(k)) => (c, k),
        _ => match (
            &config.tls.ecdsa_cert,
            &config.tls.ecdsa_key,
            &config.tls.rsa_cert,
            &config.tls.rsa_key,
        ) {
            (Some(c), Some(k), _, _) | (None, _, Some(c), Some(k)) => (c, k),
            _ => return Err("no client certificate (set client_cert and client_key)".to_owned()),
        },
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("client_cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("client_cert {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("client_key {}: {e}", key.display()))?;
    let client = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("client_cert {}: {e}", cert.display()))?;
    let host = p.server_name.clone().unwrap_or_else(|| p.identity.clone());
    let name =
        ServerName::try_from(host.clone()).map_err(|e| format!("server name {host:?}: {e}"))?;
    Ok((TlsConnector::from(Arc::new(client)), name))
}

/// One destination's delivery task.
struct Worker {
    destination: String,
    address: String,
    connector: TlsConnector,
    name: ServerName<'static>,
    timeout: Duration,
    attempts: u32,
    retry_max: Duration,
    status: Arc<PushStatus>,
    audit: AuditLog,
    stop: CancellationToken,
    /// The open connection, reused from message to message.
    connection: Option<TlsStream<TcpStream>>,
}

/// Why an attempt failed, and whether another one may help.
enum Failure {
    /// Transport (connect, handshake, write, read, an unreadable answer): retried.
    Transport(String),
    /// The client answered, with a failure: not retried.
    Refused(String),
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Push>) {
        loop {
            let push = tokio::select! {
                () = self.stop.cancelled() => break,
                p = rx.recv() => match p {
                    Some(p) => p,
                    None => return,
                },
            };
            let outcome = self.deliver(&push).await;
            self.status.queued.fetch_sub(1, Ordering::Relaxed);
            match &outcome {
                Ok(_) => {
                    self.status.delivered.fetch_add(1, Ordering::Relaxed);
                    debug!(destination = %self.destination, operation = push.operation_name(),
                        object = %push.uid, "push delivered");
                }
                Err(e) => {
                    self.status.failed.fetch_add(1, Ordering::Relaxed);
                    warn!(destination = %self.destination, operation = push.operation_name(),
                        object = %push.uid, error = %e, "push not delivered");
                }
            }
            let record = summary(&push, outcome);
            if let Err(e) = self
                .audit
                .submit(push.identity.clone(), self.address.clone(), vec![record])
                .await
            {
                warn!(destination = %self.destination, error = %e, "push audit record not written");
            }
        }
        // Stopping: what is still queued is not sent, and says so in the audit log.
        rx.close();
        while let Ok(push) = rx.try_recv() {
            self.status.queued.fetch_sub(1, Ordering::Relaxed);
            self.status.failed.fetch_add(1, Ordering::Relaxed);
            let record = summary(&push, Err("not delivered: the server stopped".to_owned()));
            drop(
                self.audit
                    .submit(push.identity.clone(), self.address.clone(), vec![record]),
            );
        }
    }

    /// Every attempt for one message; `Ok(what)` or `Err(why)` for its audit record.
    async fn deliver(&mut self, push: &Push) -> Result<String, String> {
        let bytes = kmipd_ttlv::encode_to_vec(&push.message)
            .map_err(|e| format!("cannot encode the message: {e}"))?;
        let mut pause = FIRST_PAUSE;
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match self.attempt(&bytes).await {
                Ok(()) => {
                    return Ok(format!(
                        "delivered to {} ({})",
                        self.destination, self.address
                    ));
                }
                Err(Failure::Refused(why)) => {
                    return Err(format!(
                        "refused by {} ({}): {why}",
                        self.destination, self.address
                    ));
                }
                Err(Failure::Transport(why)) => {
                    self.connection = None;
                    self.status.attempt_failures.fetch_add(1, Ordering::Relaxed);
                    debug!(destination = %self.destination, attempt, error = %why, "push attempt failed");
                    last = why;
                }
            }
            if attempt < self.attempts {
                tokio::select! {
                    () = self.stop.cancelled() => break,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = pause.saturating_mul(2).min(self.retry_max);
            }
        }
        Err(format!(
            "not delivered to {} ({}) after {} attempts: {last}",
            self.destination, self.address, self.attempts
        ))
    }

    /// One attempt: (re)connect if needed, write, read the answer.
    async fn attempt(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let bound = self.timeout;
        let within = |what: &'static str| {
            move |_| Failure::Transport(format!("{what}: no progress in {bound:?}"))
        };
        let mut stream = match self.connection.take() {
            Some(s) => s,
            None => {
                let tcp = tokio::time::timeout(bound, TcpStream::connect(&self.address))
                    .await
                    .map_err(within("connect"))?
                    .map_err(|e| Failure::Transport(format!("connect: {e}")))?;
                let _ = tcp.set_nodelay(true);
                tokio::time::timeout(bound, self.connector.connect(self.name.clone(), tcp))
                    .await
                    .map_err(within("TLS handshake"))?
                    .map_err(|e| Failure::Transport(format!("TLS handshake: {e}")))?
            }
        };
        tokio::time::timeout(bound, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
        .map_err(within("write"))?
        .map_err(|e| Failure::Transport(format!("write: {e}")))?;
        let answer = tokio::time::timeout(bound, read_message(&mut stream))
            .await
            .map_err(within("read"))?
            .map_err(Failure::Transport)?;
        self.connection = Some(stream);
        check_answer(&answer).map_err(Failure::Refused)
    }
}

/// Reads one TTLV message.
async fn read_message(stream: &mut TlsStream<TcpStream>) -> Result<Ttlv, String> {
    let limits = Limits {
        max_message_len: MAX_ANSWER,
        ..Limits::default()
    };
    let mut header = [0u8; kmipd_ttlv::HEADER_LEN];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let frame = kmipd_ttlv::frame_len(&header, &limits).map_err(|e| format!("answer: {e}"))?;
    let mut bytes = header.to_vec();
    bytes.resize(frame.total_len, 0);
    let body = bytes
        .get_mut(kmipd_ttlv::HEADER_LEN..)
        .ok_or_else(|| "answer: short".to_owned())?;
    stream
        .read_exact(body)
        .await
        .map_err(|e| format!("read: {e}"))?;
    kmipd_ttlv::decode(&bytes, &limits).map_err(|e| format!("answer: {e}"))
}

/// `Ok` when every batch item of the client's Response Message says Success.
fn check_answer(answer: &Ttlv) -> Result<(), String> {
    if answer.tag != tag::RESPONSE_MESSAGE {
        return Err("the answer is not a Response Message".to_owned());
    }
    let items: Vec<&Ttlv> = answer
        .children()
        .unwrap_or_default()
        .iter()
        .filter(|c| c.tag == tag::BATCH_ITEM)
        .collect();
    if items.is_empty() {
        return Err("the answer has no batch item".to_owned());
    }
    for item in items {
        let status = item.child(tag::RESULT_STATUS).map(|s| &s.value);
        if status
            != Some(&Value::Enumeration(
                kmipd_proto::enums::result_status::SUCCESS,
            ))
        {
            let reason = match item.child(tag::RESULT_REASON).map(|r| &r.value) {
                Some(Value::Enumeration(r)) => {
                    kmipd_proto::spec::enum_of_tag(tag::RESULT_REASON.value())
                        .and_then(|e| e.entry(*r))
                        .map_or_else(|| format!("reason {r:#x}"), |e| e.xml_name.to_owned())
                }
                _ => "no reason".to_owned(),
            };
            return Err(format!("answered a failure ({reason})"));
        }
    }
    Ok(())
}
