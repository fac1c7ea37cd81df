//! The KMIP listener: mutual TLS on a TCP listener, one task per connection, limits on
//! everything a client can make the server wait for or hold, graceful shutdown.
//!
//! Start it with [`Server`] (a builder; tests pass a listener bound to port 0 and, if they
//! like, their own `Engine`) or [`run`]; [`Server::start`] returns a [`ServerHandle`] with the
//! bound address and a shutdown trigger. The parts, each described in its module:
//! - `start`: start-up wiring, the handle, signals;
//! - `accept`: the accept loop, the TLS handshake, identity and the connection caps, each
//!   connection's life, shutdown;
//! - `connection`: a `Connection` reads and writes whole KMIP messages under deadlines;
//! - `execute`: one request, light or heavy, its incidents, metrics and audit record;
//! - `https`: KMIP over HTTPS (`[https]`), the same connections speaking HTTP/1.1;
//! - `console`: the admin web console (`[console]`), the same connections serving HTML.
//!
//! A slow or hostile client holds only its own connection slot and task: every read and write
//! has a deadline, and nothing is shared between connections but the engine and counters
//! ([`Shared`]).

mod accept;
mod connection;
mod console;
mod execute;
mod https;
mod start;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kmipd_ops::Engine;
use kmipd_ttlv::Limits;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::incidents::Incidents;
use crate::metrics::Metrics;

pub use start::{
    Server, ServerHandle, StartError, reload_signal, run, serve_until, shutdown_signal,
};

/// The TLS configurations a handshake uses: rustls, and OpenSSL for the KMIP profile suites
/// when `tls.profile_suites` is on. Replaced whole by [`ServerHandle::reload_tls`].
#[derive(Clone)]
struct Acceptors {
    rustls: TlsAcceptor,
    profile: Option<Arc<crate::tls_profile::ProfileTls>>,
}

impl Acceptors {
    /// Both configurations from `[tls]`'s files.
    fn build(tls: &crate::config::TlsConfig) -> Result<Acceptors, crate::tls::TlsError> {
        Ok(Acceptors {
            rustls: TlsAcceptor::from(crate::tls::server_config(tls)?),
            profile: crate::tls_profile::ProfileTls::build(tls)?,
        })
    }
}

/// What every connection of one server shares.
struct Shared {
    config: Config,
    /// Roles (and policy), replaced by `kmipd admin reload`.
    settings: Arc<crate::settings::Settings>,
    /// Client certificates met and revoked while serving ([`crate::clients::Seen`]).
    seen: Arc<crate::clients::Seen>,
    /// Replaced by [`ServerHandle::reload_tls`]; each handshake takes a clone.
    acceptor: std::sync::RwLock<Acceptors>,
    engine: Engine,
    metrics: Arc<Metrics>,
    incidents: Arc<Incidents>,
    /// `limits.max_connections`.
    conn_slots: Arc<Semaphore>,
    /// `limits.max_concurrent_requests`.
    exec_slots: Arc<Semaphore>,
    /// Open connections by identity (`limits.max_connections_per_identity`).
    per_identity: Mutex<HashMap<String, usize>>,
    /// Decoding limits (the engine's, with `limits.max_message_size`).
    limits: Limits,
    audit: AuditLog,
    /// The delivery of Put and Notify messages (`[[push]]`).
    push: crate::push::Pusher,
    /// Shutdown began: stop accepting, close idle connections.
    stop: CancellationToken,
    /// The grace period is over: abandon what is left.
    hard_stop: CancellationToken,
    /// When the server started (the console's uptime).
    started: std::time::Instant,
    /// The console's CSRF key (random at each start).
    console_key: console::CsrfKey,
}
