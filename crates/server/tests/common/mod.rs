//! Helpers shared by the server's integration tests (`mod common;`): an instance without an
//! HSM, a bound on every wait, so a test that would hang fails instead, and a mutual-TLS client
//! for an instance's identity.
// Each test crate includes this module and uses only part of it.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kmipd_client::{Client, Connector, TlsOptions};

/// A development instance without a SoftHSM2 token, in `tmp`'s `kmipd` directory.
pub fn instance(tmp: &tempfile::TempDir) -> kmipd::Instance {
    kmipd::init_instance_with(
        &tmp.path().join("kmipd"),
        &kmipd::InitOptions {
            hsm: false,
            ..kmipd::InitOptions::default()
        },
    )
    .unwrap()
}

/// How long any single wait of a test may take.
pub const BOUND: Duration = Duration::from_secs(30);

/// Bounds a future; a test that would hang fails instead.
pub async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {BOUND:?}"))
}

/// A client of the server at `addr` with `who`'s certificate and key from `inst`, trusting the
/// instance's CA.
pub async fn connect(inst: &kmipd::Instance, who: &str, addr: SocketAddr) -> Client {
    let read = |p: PathBuf| std::fs::read(p).unwrap();
    let c = Connector::new(
        &read(inst.cert("ca")),
        &read(inst.cert(who)),
        &read(inst.key(who)),
        TlsOptions {
            timeout: Duration::from_secs(15),
            ..TlsOptions::default()
        },
    )
    .unwrap();
    bounded("connect", c.connect(addr)).await.unwrap()
}
