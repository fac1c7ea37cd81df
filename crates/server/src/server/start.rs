//! Start-up wiring: [`Server`] (a builder) opens what the configuration names (the listeners,
//! the store and HSM, the audit log, the admin socket, the metrics listener) and starts the
//! accept loop; [`ServerHandle`] is the running server (its addresses, its counters, TLS
//! reload, shutdown). [`run`] and [`serve_until`] drive it with signals, mini-redis style: a
//! listener, a configuration and a shutdown future.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use kmipd_ops::{Engine, EngineConfig};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::accept::Protocol;
use super::{Acceptors, Shared, accept};
use crate::audit::AuditLog;
use crate::config::Config;
use crate::incidents::Incidents;
use crate::metrics::Metrics;
use crate::storage::StorageError;
use crate::tls::TlsError;

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
    https_listener: Option<TcpListener>,
    console_listener: Option<TcpListener>,
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
    https_addr: Option<SocketAddr>,
    console_addr: Option<SocketAddr>,
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
            .field("https_addr", &self.https_addr)
            .field("console_addr", &self.console_addr)
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

    /// The KMIP over HTTPS listener's address, when `[https]` is configured.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// The admin console listener's address, when `[console]` is configured.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console_addr
    }

    /// What the server's connections share (for the console's handler tests).
    #[cfg(test)]
    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
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
        reload_acceptor(&self.shared)
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
            https_listener: None,
            console_listener: None,
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

    /// Serves KMIP over HTTPS on this listener instead of `https.listen` (even when the
    /// configuration has no `[https]` table).
    pub fn https_listener(mut self, listener: TcpListener) -> Server {
        self.https_listener = Some(listener);
        self
    }

    /// Serves the admin console on this listener instead of `console.listen` (even when the
    /// configuration has no `[console]` table).
    pub fn console_listener(mut self, listener: TcpListener) -> Server {
        self.console_listener = Some(listener);
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
            https_listener,
            console_listener,
            audit,
        } = self;
        let tls = Acceptors::build(&config.tls)?;
        if tls.profile.is_some() {
            info!(
                "tls.profile_suites is on: clients that offer only the KMIP profile suites (TLS 1.2 \
                 RSA key exchange, CBC) are served by OpenSSL; every other client by rustls"
            );
        }
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
        let https_listener = match (https_listener, &config.https) {
            (Some(l), _) => Some(l),
            (None, Some(h)) => {
                Some(
                    TcpListener::bind(h.listen)
                        .await
                        .map_err(|source| StartError::Bind {
                            addr: h.listen,
                            source,
                        })?,
                )
            }
            (None, None) => None,
        };
        let console_listener = match (console_listener, &config.console) {
            (Some(l), _) => Some(l),
            (None, Some(c)) => {
                Some(
                    TcpListener::bind(c.listen)
                        .await
                        .map_err(|source| StartError::Bind {
                            addr: c.listen,
                            source,
                        })?,
                )
            }
            (None, None) => None,
        };
        let console_addr = match &console_listener {
            Some(l) => Some(
                l.local_addr()
                    .map_err(|e| StartError::Other(format!("console address: {e}")))?,
            ),
            None => None,
        };
        // The admin socket keeps the durable store and the master key for rotations and
        // backups. With PostgreSQL the opening waits for the database; if this future is
        // dropped meanwhile (a shutdown signal), `abandoned` ends the wait.
        let (engine, durable) = match engine {
            Some(e) => (e, None),
            None => {
                let c = config.clone();
                let abandoned = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let _abandon_on_drop = AbandonOnDrop(abandoned.clone());
                let opened = tokio::task::spawn_blocking(move || {
                    let gone = || abandoned.load(std::sync::atomic::Ordering::Relaxed);
                    crate::storage::open_store(&c, &gone)
                })
                .await
                .map_err(|e| StartError::Other(format!("store opening task: {e}")))?;
                let (store, durable) = opened?;
                let mut ec = EngineConfig::default();
                ec.limits.max_message_len = config.limits.max_message_size;
                ec.credentials = config.credentials();
                ec.issuing_ca = config.issuing_ca().map_err(StartError::Other)?;
                ec.push = config.push_subscriptions().map_err(StartError::Other)?;
                (Engine::new(store, ec), durable)
            }
        };
        let audit = match audit {
            Some(a) => a,
            None => {
                let path = config.audit.path.clone();
                // With sled, the records ride in the store's commits (one fdatasync for a
                // change and its record); otherwise the log's own writer thread.
                let sled = durable.as_ref().and_then(|d| d.sled()).cloned();
                tokio::task::spawn_blocking(move || match sled {
                    Some(store) => AuditLog::open_journaled(path, store),
                    None => AuditLog::open(path),
                })
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
        let https_addr = match &https_listener {
            Some(l) => Some(
                l.local_addr()
                    .map_err(|e| StartError::Other(format!("HTTPS address: {e}")))?,
            ),
            None => None,
        };
        let watched = durable.clone();
        let stop = CancellationToken::new();
        let settings = Arc::new(
            crate::settings::Settings::new(&config, engine.clone()).map_err(StartError::Other)?,
        );
        let seen = Arc::new(crate::clients::Seen::default());
        let metrics = Arc::new(Metrics::default());
        let mut admin_task = None;
        let mut admin_for_reload = None;
        if config.admin.enabled {
            let path = config.admin.socket.clone();
            let listener =
                crate::admin::bind(&path).map_err(|e| StartError::Other(e.to_string()))?;
            let admin = Arc::new(
                crate::admin::Admin::new(
                    engine.clone(),
                    durable,
                    Some(audit.clone()),
                    stop.clone(),
                )
                .with_settings(settings.clone())
                .with_signers(config.tls.clone(), config.identity.source)
                .with_client_crl(config.admin.client_crl.clone())
                .with_seen(seen.clone())
                .with_metrics(metrics.clone()),
            );
            admin_for_reload = Some(admin.clone());
            admin_task = Some(tokio::spawn(crate::admin::serve(
                listener,
                path,
                admin,
                stop.clone(),
            )));
        }
        if let Some(d) = &watched {
            metrics.watch_store(&d.store);
            metrics.watch_hsm(d);
        }
        metrics.watch_audit(&audit);
        metrics.watch_engine(&engine);
        let mut forwarders = Vec::with_capacity(config.audit.forward.len());
        for f in &config.audit.forward {
            let status = Arc::new(crate::audit::forward::ForwardStatus::default());
            metrics.watch_forward(crate::audit::forward::destination(f), status.clone());
            forwarders.push(
                crate::audit::forward::start(f, &audit, status, stop.clone())
                    .map_err(|e| StartError::Other(e.to_string()))?,
            );
        }
        let push = crate::push::Pusher::start(&config, &audit, &stop, &mut |d, status| {
            metrics.watch_push(d, status);
        })
        .map_err(|e| StartError::Other(e.to_string()))?;
        metrics.watch_tls(&config.tls);
        let sled = watched.as_ref().and_then(|d| d.sled());
        let incidents = Arc::new(Incidents::new(metrics.clone(), sled));
        drop(watched);
        tokio::spawn(incidents.clone().watch(stop.clone()));
        if config.rotation.enabled {
            tokio::spawn(crate::rotation::schedule(
                engine.clone(),
                audit.clone(),
                config.rotation.check_every,
                stop.clone(),
            ));
        }
        let mut limits = engine.config().limits;
        limits.max_message_len = config.limits.max_message_size;
        let shared = Arc::new(Shared {
            seen,
            acceptor: std::sync::RwLock::new(tls),
            conn_slots: Arc::new(Semaphore::new(config.limits.max_connections)),
            exec_slots: Arc::new(Semaphore::new(config.limits.max_concurrent_requests)),
            per_identity: Mutex::new(HashMap::new()),
            engine,
            settings,
            metrics: metrics.clone(),
            incidents,
            limits,
            audit,
            push,
            stop: stop.clone(),
            hard_stop: CancellationToken::new(),
            started: std::time::Instant::now(),
            console_key: super::console::CsrfKey::random()
                .map_err(|e| StartError::Other(format!("console CSRF key: {e}")))?,
            config,
        });
        if let Some(admin) = admin_for_reload {
            // A client revocation reloads TLS as SIGHUP does (the admin holds no strong
            // reference: the server's state goes when the server goes).
            let weak = Arc::downgrade(&shared);
            admin.set_tls_reload(Box::new(move || match weak.upgrade() {
                Some(s) => reload_acceptor(&s).map_err(|e| e.to_string()),
                None => Err("the server has stopped".to_owned()),
            }));
        }
        if let Some(l) = metrics_listener {
            tokio::spawn(crate::plain_http::serve(
                l,
                metrics.clone(),
                shared.config.admin.client_crl.clone(),
                stop.clone(),
            ));
            if let Some(a) = metrics_addr {
                info!(addr = %a, "metrics on http://{a}/metrics");
            }
        }
        let https_task = match (https_listener, https_addr) {
            (Some(l), Some(a)) => {
                info!(addr = %a, "KMIP over HTTPS on https://{a}/kmip");
                Some(tokio::spawn(accept::accept_loop(
                    l,
                    shared.clone(),
                    Protocol::Https,
                )))
            }
            _ => None,
        };
        let console_task = match (console_listener, console_addr) {
            (Some(l), Some(a)) => {
                info!(addr = %a, "admin console on https://{a}/");
                Some(tokio::spawn(accept::accept_loop(
                    l,
                    shared.clone(),
                    Protocol::Console,
                )))
            }
            _ => None,
        };
        info!(addr = %local_addr, "kmipd listening");
        let grace = shared.config.limits.shutdown_grace;
        let handle_shared = shared.clone();
        let task = tokio::spawn(async move {
            accept::accept_loop(listener, shared, Protocol::Kmip).await;
            if let Some(t) = https_task {
                let _ = t.await;
            }
            if let Some(t) = console_task {
                let _ = t.await;
            }
            // The admin socket is gone and its commands answered (or abandoned) before the
            // server counts as stopped.
            if let Some(t) = admin_task {
                let _ = tokio::time::timeout(grace, t).await;
            }
            // The forwarders stop at their next look at the token (within 100 ms, or one write).
            for f in forwarders {
                let _ = tokio::task::spawn_blocking(move || f.join()).await;
            }
        });
        Ok(ServerHandle {
            local_addr,
            metrics_addr,
            https_addr,
            console_addr,
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

/// Sets its flag when dropped (a start-up abandoned while the store opens).
struct AbandonOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// [`ServerHandle::reload_tls`]'s work, also done after a client revocation
/// ([`crate::admin`]).
fn reload_acceptor(shared: &Shared) -> Result<(), crate::tls::TlsError> {
    let fresh = Acceptors::build(&shared.config.tls)?;
    let mut acceptor = shared
        .acceptor
        .write()
        .map_err(|_| crate::tls::TlsError::Rustls("TLS acceptor lock poisoned".into()))?;
    *acceptor = fresh;
    Ok(())
}
