//! kmipd: the KMIP server (mutual TLS on port 5696) around the `kmipd-ops` engine.
//!
//! The binary (`src/main.rs`) is a thin CLI over this library, so the end-to-end tests can run
//! the same server in-process:
//!
//! ```ignore
//! let inst = kmipd::init_instance_with(dir, &kmipd::InitOptions { hsm: false, ..Default::default() })?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let handle = kmipd::Server::new(inst.config()?).listener(listener).start().await?;
//! // ... connect to handle.local_addr() with inst.cert("client") / inst.key("client") ...
//! handle.stop().await;
//! ```
//!
//! Public modules (what `main.rs`, the tests and other crates use): [`config`] (the TOML
//! file), [`init`] (development instances), [`certs`] (development certificates),
//! [`storage`] (the store and its key hierarchy: open and unlock with the HSM's master key,
//! KEK and master key rotations, backup, offline restore), [`logging`], [`admin`] (the local
//! admin socket and its protocol: rotations, backup, grants, audit rotation and client
//! enrollment while serving), [`clients`] (the client CA and the enrolled clients),
//! [`audit`] (the hash-chained audit log), [`settings`] (what `kmipd admin reload`
//! changes: roles and policy), [`rotation`] (the automatic rotation scheduler). Inside the
//! crate: `server` (connections
//! and limits; [`Server`] and the rest re-exported here), `tls` (rustls, certificate choice,
//! identity; [`TlsError`]), `tls_profile` (the KMIP profile suites through OpenSSL), `metrics` ([`Metrics`]), `incidents` (store and internal failures
//! for the operator).

pub mod admin;
pub mod approval;
pub mod audit;
pub mod certs;
pub mod clients;
pub mod config;
mod incidents;
pub mod init;
pub mod logging;
pub(crate) mod metrics;
mod plain_http;
pub mod push;
pub mod rotation;
pub(crate) mod server;
pub mod settings;
pub mod storage;
pub(crate) mod tls;
pub(crate) mod tls_profile;

#[cfg(test)]
mod smoke;

pub use config::Config;
pub use init::{InitError, InitOptions, Instance, init_instance, init_instance_with};
pub use metrics::Metrics;
pub use server::{
    Server, ServerHandle, StartError, reload_signal, run, serve_until, shutdown_signal,
};
pub use tls::TlsError;
