//! Shared by the interoperability tests: a kmipd started in-process on 127.0.0.1 (port 0) in a
//! temporary instance made by `init` (no HSM, memory store), stopped and removed on drop; and
//! the results file `target/interop/rust-clients.json` that `conformance/python/interop_doc.py`
//! merges into `docs/interoperability.md` (its format is described at the top of that script).
//!
//! Every wait is bounded: the server's start and stop here, the clients' own timeouts in the
//! tests.
#![allow(
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use kmipd::{InitOptions, Instance, Server, ServerHandle};

/// Bound on the server's start and stop, and on each client call in the async tests.
pub const BOUND: Duration = Duration::from_secs(30);

/// A running kmipd with its own instance directory; stopped and deleted on drop.
pub struct Kmipd {
    pub rt: tokio::runtime::Runtime,
    pub inst: Instance,
    pub addr: SocketAddr,
    handle: Option<ServerHandle>,
    _tmp: tempfile::TempDir,
}

impl Kmipd {
    /// `kmipd init` (no HSM) in a temporary directory, then serve on 127.0.0.1 port 0.
    pub fn start() -> Kmipd {
        Kmipd::start_with(None)
    }

    /// [`Kmipd::start`], serving with `engine` (and its store) when given instead of the
    /// instance's memory store.
    pub fn start_with(engine: Option<kmipd_ops::Engine>) -> Kmipd {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let inst = kmipd::init_instance_with(
            &tmp.path().join("kmipd"),
            &InitOptions {
                hsm: false,
                ..InitOptions::default()
            },
        )
        .unwrap();
        let config = inst.config().unwrap();
        let handle = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut server = Server::new(config).listener(listener);
            if let Some(e) = engine {
                server = server.engine(e);
            }
            tokio::time::timeout(BOUND, server.start())
                .await
                .expect("kmipd did not start in time")
                .unwrap()
        });
        Kmipd {
            addr: handle.local_addr(),
            rt,
            inst,
            handle: Some(handle),
            _tmp: tmp,
        }
    }

    /// `certs/<name>.pem`.
    pub fn cert(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.inst.cert(name)).unwrap()
    }

    /// `certs/<name>.key`.
    pub fn key(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.inst.key(name)).unwrap()
    }
}

impl Drop for Kmipd {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            // A server that will not stop must not hang the test run either.
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(BOUND, h.stop()).await });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Results, in the shape conformance/python/interop_doc.py reads
// ---------------------------------------------------------------------------------------------

/// Where the renderer looks: `<workspace>/target/interop/` (whatever `CARGO_TARGET_DIR` is).
pub fn results_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/interop/rust-clients.json")
}

static RESULTS_LOCK: Mutex<()> = Mutex::new(());

thread_local! {
    /// Whether the [`Step`]s of this thread write their rows (false: a run of the flows whose
    /// rows come from another run, such as the one on PostgreSQL).
    pub static RECORDING: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// One cell of the interoperability table.
#[derive(Clone, Debug)]
pub struct Row {
    /// The client, as listed in [`crate::common::clients`] (`clients.rs`).
    pub client: &'static str,
    /// The KMIP protocol version on the wire.
    pub version: &'static str,
    /// What was done.
    pub flow: String,
    /// Position of the flow in the client's table.
    pub order: usize,
    /// "pass" or "fail".
    pub result: &'static str,
    /// Why, for a failure.
    pub note: String,
}

/// Writes rows into the results file, replacing earlier rows of the same client, flow and
/// version. Test binaries run one after another; the tests of one binary share the lock.
pub fn record(rows: &[Row]) {
    let _guard = RESULTS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = results_file();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut all: Vec<serde_json::Value> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("rows").and_then(|r| r.as_array()).cloned())
        .unwrap_or_default();
    let field =
        |r: &serde_json::Value, k: &str| r.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    for row in rows {
        all.retain(|r| {
            !(field(r, "client").as_deref() == Some(row.client)
                && field(r, "flow").as_deref() == Some(row.flow.as_str())
                && field(r, "version").as_deref() == Some(row.version))
        });
        let mut v = serde_json::json!({
            "client": row.client,
            "version": row.version,
            "flow": row.flow,
            "order": row.order,
            "result": row.result,
        });
        if !row.note.is_empty() {
            v["note"] = serde_json::Value::from(row.note.clone());
        }
        all.push(v);
    }
    all.sort_by_key(|r| {
        (
            field(r, "client"),
            r.get("order").and_then(serde_json::Value::as_u64),
            field(r, "flow"),
            field(r, "version"),
        )
    });
    let mut clients = serde_json::Map::new();
    for (name, order, connect) in CLIENTS {
        if all
            .iter()
            .any(|r| field(r, "client").as_deref() == Some(*name))
        {
            let connect = if *name == KMIP_PROTOCOL {
                (*connect).to_owned()
            } else {
                format!("{SHAPED}\n\n{connect}")
            };
            clients.insert(
                (*name).to_owned(),
                serde_json::json!({"order": order, "connect": connect}),
            );
        }
    }
    let doc = serde_json::json!({
        "source": "conformance/rust-clients",
        "command": "cargo test -p kmipd-interop && python3 conformance/python/interop_doc.py",
        "clients": clients,
        "rows": all,
    });
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

/// A row that says "fail" unless [`Step::pass`] is called: a panic in between records the
/// failure (with the panic's place in the note) as the test unwinds.
pub struct Step {
    row: Row,
    done: bool,
}

impl Step {
    pub fn new(
        client: &'static str,
        version: &'static str,
        flow: impl Into<String>,
        order: usize,
    ) -> Step {
        Step {
            row: Row {
                client,
                version,
                flow: flow.into(),
                order,
                result: "fail",
                note: String::new(),
            },
            done: false,
        }
    }

    pub fn pass(mut self) {
        self.row.result = "pass";
        self.done = true;
        if RECORDING.get() {
            record(std::slice::from_ref(&self.row));
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if !self.done && RECORDING.get() {
            let test = std::thread::current().name().unwrap_or("?").to_owned();
            self.row.note =
                format!("kmipd-interop test `{test}` failed at this step (see the test output)");
            record(std::slice::from_ref(&self.row));
        }
    }
}

/// Every client of this crate: its name in the table, its place, and how to connect it.
pub const CLIENTS: &[(&str, u32, &str)] = &[
    (KMIP_PROTOCOL, 30, KMIP_PROTOCOL_CONNECT),
    (VSPHERE, 40, VSPHERE_CONNECT),
    (PG_TDE, 41, PG_TDE_CONNECT),
    (PERCONA_MYSQL, 42, PERCONA_MYSQL_CONNECT),
    (PERCONA_MONGODB, 43, PERCONA_MONGODB_CONNECT),
    (SYNOLOGY, 44, SYNOLOGY_CONNECT),
    (KEYRING_OKV, 45, KEYRING_OKV_CONNECT),
    (VEEAM, 46, VEEAM_CONNECT),
    (STORAGE_ARRAY, 47, STORAGE_ARRAY_CONNECT),
];

pub const VSPHERE: &str = "VMware vSphere 7 (client-shaped flow)";
pub const PG_TDE: &str = "pg_tde / libkmip (client-shaped flow)";
pub const PERCONA_MYSQL: &str = "Percona Server for MySQL keyring_kmip (client-shaped flow)";
pub const PERCONA_MONGODB: &str = "Percona Server for MongoDB (client-shaped flow)";
pub const SYNOLOGY: &str = "Synology DSM (client-shaped flow)";
pub const KEYRING_OKV: &str = "MySQL Enterprise keyring_okv (client-shaped flow)";
pub const VEEAM: &str = "Veeam Backup & Replication (client-shaped flow)";
pub const STORAGE_ARRAY: &str = "Storage array, four-item 1.0 batch (client-shaped flow)";

/// Said first for every client-shaped flow.
const SHAPED: &str = "\
Not the product itself: its requests as `../shared/notes/clients.md` records them, built as raw
TTLV and sent over mutual TLS to a running kmipd by
`conformance/rust-clients/tests/client_flows.rs`.";

const VSPHERE_CONNECT: &str = "\
vCenter: Configure > Security > Key Providers > Add Standard Key Provider, with kmipd's host
name (or address) and port 5696. Make vCenter trust kmipd by uploading the CA certificate
(`DIR/certs/ca.pem`); make kmipd trust vCenter by letting vCenter generate a CSR, signing it
with your CA as a client certificate (Extended Key Usage clientAuth, or none: kmipd refuses a
certificate whose EKU lacks clientAuth) and uploading the signed certificate to vCenter. The
identity is the certificate's CN. vCenter speaks KMIP 1.1, tags keys with `x-` custom
attributes and never activates them. The server certificate must carry the name or address
vCenter is given.";

const PG_TDE_CONNECT: &str = "\
`SELECT pg_tde_add_global_key_provider_kmip('kmipd', 'kmipd.example', 5696,
'DIR/certs/ca.pem', 'client.pem', 'client.key');` (the server CA, then the client certificate
and its key; check the argument order in your pg_tde version's documentation). libkmip opens a
new TLS connection per call, sends no SNI and may not verify the server certificate: kmipd
needs neither SNI nor session reuse. It registers under a KMIP 1.4 header and locates under
1.0.";

const PERCONA_MYSQL_CONNECT: &str = "\
`component_keyring_kmip`, loaded from the `mysqld.my` manifest and configured in
`component_keyring_kmip.cnf`: `server_addr`, `server_port` (5696), `client_ca` (the client
*certificate*, e.g. `client.pem`), `client_key` (its key) and `server_ca` (`DIR/certs/ca.pem`).
Keys live in an Object Group; at start the component pages through it 16 at a time with Offset
Items and reads Located Items (a KMIP 1.3 field, answered under 1.3 and later headers).";

const PERCONA_MONGODB_CONNECT: &str = "\
`mongod --enableEncryption --kmipServerName kmipd.example --kmipPort 5696 --kmipServerCAFile
DIR/certs/ca.pem --kmipClientCertificateFile client-with-key.pem` (the client certificate and
its key concatenated into one PEM), or the same under `security.kmip` in the configuration
file. The server certificate must carry the name given as `kmipServerName`. It speaks KMIP 1.0
only: kmipd answers in the request's version and never sends it a newer field or attribute.";

const SYNOLOGY_CONNECT: &str = "\
DSM 7: the KMIP key manager settings (remote KMIP server): host name, port 5696, the server CA
(`DIR/certs/ca.pem`) and a client certificate and key for DSM (sign DSM's CSR with your CA, or
import a pair). DSM wants RSA: kmipd serves its RSA certificate to a client that offers only
ECDHE-RSA suites (the test offers exactly those, over TLS 1.2). One connection per operation;
KMIP 1.2.";

const KEYRING_OKV_CONNECT: &str = "\
`keyring_okv` (replaced by `component_keyring_kmip` in recent MySQL Enterprise releases):
`okvclient.ora` with `SERVER=kmipd.example:5696` in the configured directory, and its `ssl/`
subdirectory holding `CA.pem` (`DIR/certs/ca.pem`), `cert.pem` and `key.pem` (the client
certificate and key). KMIP 1.1, Attribute Index 0 on every attribute, a Maximum Response Size in
each header; give each MySQL server its own client certificate.";

const VEEAM_CONNECT: &str = "\
Add a KMS server in Veeam's backup infrastructure: the server's DNS name, port 5696, the server
CA certificate (`DIR/certs/ca.pem`) and a client certificate with its private key as a PFX
(`openssl pkcs12 -export -in client.pem -inkey client.key -out veeam.pfx`). Veeam speaks KMIP
1.4, creates RSA-2048 pairs and resumes TLS sessions with its client certificate: kmipd resumes
them (TLS 1.3 tickets; TLS 1.2 tickets or session IDs) with the identity of the original
handshake.";

const STORAGE_ARRAY_CONNECT: &str = "\
A typical array's key manager settings: the KMIP server's host name and port 5696, the server
CA (`DIR/certs/ca.pem`), a client certificate and key (usually the array's CSR signed by your
CA, clientAuth EKU), sometimes vendor `x-` attributes. This flow models an array that sends one
KMIP 1.0 request of Query, Locate by its `x-` attributes, then Get and Get Attributes by ID
Placeholder. Arrays that offer only `AES*-SHA` (RSA key exchange, CBC) suites cannot connect to
kmipd (rustls); kmipd logs the offered suites when a handshake fails.";

pub const KMIP_PROTOCOL: &str = "kmip-protocol 0.4.3 (NLnet Labs, Rust)";

const KMIP_PROTOCOL_CONNECT: &str = "\
The crate's synchronous client with its own TLS stack (`features = [\"tls-with-rustls\"]`, rustls
0.19; `tls-with-openssl` and the tokio variants take the same settings), tested by
`conformance/rust-clients/tests/kmip_protocol.rs`:

```rust
let settings = ConnectionSettings {
    host: \"localhost\".into(),      // a DNS name: the crate cannot verify an IP address
    port: 5696,
    ca_cert: Some(std::fs::read(\"DIR/certs/ca.pem\")?),
    client_cert: Some(ClientCertificate::SeparatePem {
        cert_bytes: std::fs::read(\"DIR/certs/client.pem\")?,
        key_bytes: Some(std::fs::read(\"DIR/certs/client.key\")?), // PKCS#8 PEM only
    }),
    connect_timeout: Some(Duration::from_secs(10)),
    ..Default::default()
};
let client = kmip_protocol::client::tls::rustls::connect(&settings)?;
```

The server certificate must name `localhost` (kmipd's development certificates do; a real one
must carry the host name clients use). rustls 0.19 offers ECDHE suites only (TLS 1.2 and
1.3); kmipd chooses its ECDSA or RSA certificate from the ClientHello. The crate's `connect`
sets no read or write timeout: use `connect_with_tcpstream_factory` and set them on the
`TcpStream`. It speaks KMIP 1.0 for most
operations, 1.1 for Discover Versions and 1.2 for Query, Sign and RNG Retrieve, never
negotiates, and has no high-level Create, Register or Locate (build them with `do_request`).";
