//! Prometheus metrics, kept in atomics and rendered in the text exposition format, served by
//! the plain-HTTP listener ([`crate::plain_http`], `[metrics]`, loopback by default).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use kmipd_ops::IncidentKind;
use kmipd_store::{PgStore, SledStore};

use crate::storage::DurableStore;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the request latency histogram buckets.
pub(crate) const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Most identities with a series of their own in `kmipd_permission_denied_total` (bounded
/// label cardinality); later ones are counted under `identity="(other)"`.
pub(crate) const MAX_IDENTITIES: usize = 1000;

/// The server's counters. Shared (`Arc`) between connections and the metrics listener.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Operation -> result status -> count (nested so that counting an existing series
    /// looks it up by `&str`, allocating nothing).
    requests: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
    buckets: [AtomicU64; 12],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    open_connections: AtomicU64,
    connections_total: AtomicU64,
    handshake_failures: AtomicU64,
    refusals: Mutex<BTreeMap<&'static str, u64>>,
    /// Requests prepared against reads fetched ahead (PostgreSQL), by how they ended.
    prefetched: Mutex<BTreeMap<&'static str, u64>>,
    /// Established TLS connections by library, version and suite.
    tls_connections: Mutex<BTreeMap<(&'static str, String, String), u64>>,
    /// Batch items answered Permission Denied, by identity (at most [`MAX_IDENTITIES`]
    /// identities, then `(other)`).
    denied: Mutex<BTreeMap<String, u64>>,
    /// Incidents (`kmipd_ops::incident`) by kind.
    internal_errors: Mutex<BTreeMap<&'static str, u64>>,
    /// The durable store, for its gauges and counters (none with the memory backend). Weak:
    /// the metrics do not keep a closing store open.
    store: OnceLock<Watched>,
    /// The audit log's poisoned flag (`AuditLog::poisoned_flag`).
    audit_poisoned: OnceLock<Arc<AtomicBool>>,
    /// Each audit forwarding destination's figures (`[[audit.forward]]`), by name.
    audit_forward: Mutex<Vec<(String, Arc<crate::audit::forward::ForwardStatus>)>>,
    /// Each push destination's figures (`[[push]]`), by name.
    push: Mutex<Vec<(String, Arc<crate::push::PushStatus>)>>,
    /// `[tls]`'s certificate files (role, path) and CRL files, read at each scrape.
    tls_files: OnceLock<TlsFiles>,
    /// The engine, for `kmipd_keys_due_deactivation`, `kmipd_keys_past_crypto_period` and
    /// `kmipd_rotation_*` (store queries at most once per [`DUE_MAX_AGE`]; the last counts in
    /// between).
    engine: OnceLock<kmipd_ops::Engine>,
    due: Mutex<Option<(std::time::Instant, KeyCounts)>>,
    /// Failed HSM calls by operation ([`HsmOperation`]).
    hsm_failures: Mutex<BTreeMap<&'static str, u64>>,
    /// The durable store's count of failed runtime KEK unwraps (`unwrap_kek`).
    kek_unwrap_failures: OnceLock<Arc<AtomicU64>>,
}

/// A runtime HSM call that can fail, the `operation` label of `kmipd_hsm_failures_total`
/// (a fixed set: every one has a series from the start, at 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HsmOperation {
    /// `kmipd admin rotate-kek`: wrapping the new KEK under the master key.
    RotateKek,
    /// `kmipd admin rotate-master-key`: the new master key and the KEKs rewrapped under it.
    RotateMasterKey,
    /// A KEK met at run time unwrapped by the master key (PostgreSQL: rotated through
    /// another node), counted by [`crate::storage::Durable::kek_unwrap_failures`].
    UnwrapKek,
}

impl HsmOperation {
    /// Every operation, in label order.
    pub(crate) const ALL: [HsmOperation; 3] = [
        HsmOperation::RotateKek,
        HsmOperation::RotateMasterKey,
        HsmOperation::UnwrapKek,
    ];

    /// Its label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            HsmOperation::RotateKek => "rotate_kek",
            HsmOperation::RotateMasterKey => "rotate_master_key",
            HsmOperation::UnwrapKek => "unwrap_kek",
        }
    }
}

/// The `state` label of `kmipd_objects` for a KMIP State.
fn state_label(s: u32) -> &'static str {
    use kmipd_proto::enums::state;
    match s {
        state::PRE_ACTIVE => "pre_active",
        state::ACTIVE => "active",
        state::DEACTIVATED => "deactivated",
        state::COMPROMISED => "compromised",
        state::DESTROYED => "destroyed",
        state::DESTROYED_COMPROMISED => "destroyed_compromised",
        _ => "unknown",
    }
}

/// What the key gauges show.
#[derive(Debug, Clone)]
struct KeyCounts {
    /// (window label, objects due within it).
    due: Vec<(&'static str, usize)>,
    /// Active objects past their type's crypto period.
    past_period: usize,
    /// Objects due for automatic rotation, and the longest wait (seconds).
    rotation: (usize, i64),
    /// Objects by their current state ([`kmipd_ops::OBJECT_STATES`] order).
    by_state: [(u32, usize); 6],
}

/// How old the `kmipd_keys_due_deactivation` counts may be in a scrape.
const DUE_MAX_AGE: Duration = Duration::from_secs(60);

/// The windows of `kmipd_keys_due_deactivation` (label, seconds).
const DUE_WITHIN: [(&str, i64); 2] = [("7d", 7 * 86_400), ("30d", 30 * 86_400)];

/// One family labelled by destination (`kmipd_audit_forward_*` over a forwarding's status,
/// `kmipd_push_*` over a push destination's): name, type, help, and its value for a
/// destination.
type DestinationFamily<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

type ForwardFamily = DestinationFamily<crate::audit::forward::ForwardStatus>;

type PushFamily = DestinationFamily<crate::push::PushStatus>;

/// Each family with its value for each destination.
fn render_by_destination<T>(
    o: &mut String,
    families: &[DestinationFamily<T>],
    destinations: &[(String, Arc<T>)],
) {
    for (name, kind, help, value) in families {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (destination, f) in destinations {
            let _ = writeln!(o, "{name}{{destination=\"{destination}\"}} {}", value(f));
        }
    }
}

/// The files behind the certificate expiry gauges.
#[derive(Debug, Default)]
struct TlsFiles {
    /// (role label, PEM file): `server_ecdsa`, `server_rsa` (the leaf, first in the chain),
    /// `client_ca` (the earliest not-after of the bundle).
    certificates: Vec<(&'static str, PathBuf)>,
    crls: Vec<PathBuf>,
}

impl Metrics {
    /// One batch item answered.
    pub(crate) fn item(&self, operation: &str, result: &str) {
        if let Ok(mut m) = self.requests.lock() {
            if let Some(n) = m.get_mut(operation).and_then(|r| r.get_mut(result)) {
                *n += 1;
            } else {
                *m.entry(operation.to_owned())
                    .or_default()
                    .entry(result.to_owned())
                    .or_default() += 1;
            }
        }
    }

    /// One request message answered after `d`.
    pub(crate) fn latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (b, le) in self.buckets.iter().zip(LATENCY_BUCKETS) {
            if secs <= le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// A connection was accepted (TCP).
    pub(crate) fn connection_opened(&self) {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection ended.
    pub(crate) fn connection_closed(&self) {
        let _ = self
            .open_connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }

    /// A TLS handshake failed or timed out.
    pub(crate) fn handshake_failed(&self) {
        self.handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A TLS connection established with `library` (`rustls`, `openssl`), `version` and
    /// `suite` (finite sets: the configured suites).
    pub(crate) fn tls_connection(&self, library: &'static str, version: &str, suite: &str) {
        if let Ok(mut m) = self.tls_connections.lock() {
            *m.entry((library, version.to_owned(), suite.to_owned()))
                .or_default() += 1;
        }
    }

    /// A batch item of `identity` was answered Permission Denied.
    pub(crate) fn denied(&self, identity: &str) {
        if let Ok(mut m) = self.denied.lock() {
            let key = if m.contains_key(identity) || m.len() < MAX_IDENTITIES {
                identity
            } else {
                "(other)"
            };
            *m.entry(key.to_owned()).or_default() += 1;
        }
    }

    /// A connection or request was refused by a limit (`reason` is a fixed label).
    pub(crate) fn refused(&self, reason: &'static str) {
        if let Ok(mut m) = self.refusals.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }

    /// A light request on a store with asynchronous reads was prepared against reads fetched
    /// ahead: `outcome` is `no_fetch` (it read nothing), `one_fetch`, `refetched` (a preparation read more than the first
    /// fetch, which was fetched before preparing again) or `blocking` (sent to the blocking
    /// pool after all).
    pub(crate) fn prefetched(&self, outcome: &'static str) {
        if let Ok(mut m) = self.prefetched.lock() {
            *m.entry(outcome).or_default() += 1;
        }
    }

    /// An incident of the engine (a store or internal failure; `kind` is its label).
    pub(crate) fn internal_error(&self, kind: IncidentKind) {
        if let Ok(mut m) = self.internal_errors.lock() {
            *m.entry(kind.label()).or_default() += 1;
        }
    }

    /// A runtime HSM call failed.
    pub(crate) fn hsm_failed(&self, operation: HsmOperation) {
        if let Ok(mut m) = self.hsm_failures.lock() {
            *m.entry(operation.label()).or_default() += 1;
        }
    }

    /// Adds the store's figures to the exposition (once; later calls are ignored).
    pub(crate) fn watch_store(&self, store: &DurableStore) {
        let _ = self.store.set(match store {
            DurableStore::Sled(s) => Watched::Sled(Arc::downgrade(s)),
            DurableStore::Postgres(s) => Watched::Postgres(Arc::downgrade(s)),
        });
    }

    /// Counts `durable`'s failed runtime KEK unwraps under `unwrap_kek` (once).
    pub(crate) fn watch_hsm(&self, durable: &crate::storage::Durable) {
        let _ = self
            .kek_unwrap_failures
            .set(durable.kek_unwrap_failures.clone());
    }

    /// Adds `kmipd_keys_due_deactivation{within}` from this engine's store (once).
    pub(crate) fn watch_engine(&self, engine: &kmipd_ops::Engine) {
        let _ = self.engine.set(engine.clone());
    }

    /// The due counts, from the cache when younger than [`DUE_MAX_AGE`]; `None` when the
    /// store query fails (the series are left out).
    fn due_counts(&self, engine: &kmipd_ops::Engine) -> Option<KeyCounts> {
        let mut cache = self.due.lock().ok()?;
        if let Some((at, counts)) = cache.as_ref()
            && at.elapsed() < DUE_MAX_AGE
        {
            return Some(counts.clone());
        }
        let counts = KeyCounts {
            due: DUE_WITHIN
                .iter()
                .map(|(label, secs)| engine.due_for_deactivation(*secs).map(|n| (*label, n)))
                .collect::<Result<Vec<_>, _>>()
                .ok()?,
            past_period: engine.past_crypto_period().ok()?,
            rotation: engine.rotation_lag().ok()?,
            by_state: engine.objects_by_state().ok()?,
        };
        *cache = Some((std::time::Instant::now(), counts.clone()));
        Some(counts)
    }

    /// Adds the audit log's `kmipd_audit_poisoned` gauge (once; later calls are ignored).
    pub(crate) fn watch_audit(&self, audit: &crate::audit::AuditLog) {
        let _ = self.audit_poisoned.set(audit.poisoned_flag());
    }

    /// Adds the `kmipd_audit_forward_*` series of one destination (label `destination`).
    pub(crate) fn watch_forward(
        &self,
        destination: &str,
        status: Arc<crate::audit::forward::ForwardStatus>,
    ) {
        if let Ok(mut all) = self.audit_forward.lock() {
            all.push((destination.to_owned(), status));
        }
    }

    /// Adds the `kmipd_push_*` series of one destination (label `destination`).
    pub(crate) fn watch_push(&self, destination: &str, status: Arc<crate::push::PushStatus>) {
        if let Ok(mut all) = self.push.lock() {
            all.push((destination.to_owned(), status));
        }
    }

    /// Adds the certificate and CRL expiry gauges for `[tls]`'s files (once). The files are
    /// read at each scrape: after a renewal on disk the gauges show the new files (which
    /// SIGHUP or `kmipd admin reload` puts in use).
    pub(crate) fn watch_tls(&self, tls: &crate::config::TlsConfig) {
        let mut certificates = vec![("client_ca", tls.client_ca.clone())];
        if let Some(p) = &tls.ecdsa_cert {
            certificates.push(("server_ecdsa", p.clone()));
        }
        if let Some(p) = &tls.rsa_cert {
            certificates.push(("server_rsa", p.clone()));
        }
        let _ = self.tls_files.set(TlsFiles {
            certificates,
            crls: tls.crls.clone(),
        });
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u64 {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// Handshake failures so far.
    pub fn handshake_failures(&self) -> u64 {
        self.handshake_failures.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP kmipd_requests_total KMIP batch items answered, by operation and result status.\n\
             # TYPE kmipd_requests_total counter"
        );
        if let Ok(m) = self.requests.lock() {
            for (op, res, n) in m
                .iter()
                .flat_map(|(op, r)| r.iter().map(move |(res, n)| (op, res, n)))
            {
                let _ = writeln!(
                    o,
                    "kmipd_requests_total{{operation=\"{}\",result=\"{}\"}} {n}",
                    escape(op),
                    escape(res)
                );
            }
        }
        let _ = writeln!(
            o,
            "# HELP kmipd_request_duration_seconds Time from a request's arrival to its response.\n\
             # TYPE kmipd_request_duration_seconds histogram"
        );
        for (b, le) in self.buckets.iter().zip(LATENCY_BUCKETS) {
            let _ = writeln!(
                o,
                "kmipd_request_duration_seconds_bucket{{le=\"{le}\"}} {}",
                b.load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let sum_us = self.latency_sum_us.load(Ordering::Relaxed);
        let _ = writeln!(
            o,
            "kmipd_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             kmipd_request_duration_seconds_sum {}.{:06}\n\
             kmipd_request_duration_seconds_count {count}",
            sum_us / 1_000_000,
            sum_us % 1_000_000
        );
        let _ = writeln!(
            o,
            "# HELP kmipd_open_connections Connections open now.\n\
             # TYPE kmipd_open_connections gauge\n\
             kmipd_open_connections {}\n\
             # HELP kmipd_connections_total Connections accepted.\n\
             # TYPE kmipd_connections_total counter\n\
             kmipd_connections_total {}\n\
             # HELP kmipd_tls_handshake_failures_total TLS handshakes that failed or timed out.\n\
             # TYPE kmipd_tls_handshake_failures_total counter\n\
             kmipd_tls_handshake_failures_total {}",
            self.open_connections.load(Ordering::Relaxed),
            self.connections_total.load(Ordering::Relaxed),
            self.handshake_failures.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            o,
            "# HELP kmipd_tls_connections_total TLS connections established, by TLS library \
             (openssl: the KMIP profile suites, tls.profile_suites), version and cipher suite.\n\
             # TYPE kmipd_tls_connections_total counter"
        );
        if let Ok(m) = self.tls_connections.lock() {
            for ((library, version, suite), n) in m.iter() {
                let _ = writeln!(
                    o,
                    "kmipd_tls_connections_total{{library=\"{library}\",version=\"{}\",suite=\"{}\"}} {n}",
                    escape(version),
                    escape(suite)
                );
            }
        }
        let _ = writeln!(
            o,
            "# HELP kmipd_refusals_total Connections and requests refused by a limit, by reason.\n\
             # TYPE kmipd_refusals_total counter"
        );
        if let Ok(m) = self.refusals.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(o, "kmipd_refusals_total{{reason=\"{reason}\"}} {n}");
            }
        }
        if let Ok(m) = self.prefetched.lock()
            && !m.is_empty()
        {
            let _ = writeln!(
                o,
                "# HELP kmipd_prefetched_requests_total Light requests prepared on the async \
                 threads against reads fetched ahead (PostgreSQL), by outcome: no_fetch, \
                 one_fetch, refetched, blocking.\n\
                 # TYPE kmipd_prefetched_requests_total counter"
            );
            for (outcome, n) in m.iter() {
                let _ = writeln!(
                    o,
                    "kmipd_prefetched_requests_total{{outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            o,
            "# HELP kmipd_permission_denied_total Batch items answered Permission Denied, by \
             identity (the first {MAX_IDENTITIES} identities, then (other)).\n\
             # TYPE kmipd_permission_denied_total counter"
        );
        if let Ok(m) = self.denied.lock() {
            for (identity, n) in m.iter() {
                let _ = writeln!(
                    o,
                    "kmipd_permission_denied_total{{identity=\"{}\"}} {n}",
                    escape(identity)
                );
            }
        }
        let _ = writeln!(
            o,
            "# HELP kmipd_internal_errors_total Store and internal failures met by requests \
             (answered General Failure; each one logged), by kind.\n\
             # TYPE kmipd_internal_errors_total counter"
        );
        if let Ok(m) = self.internal_errors.lock() {
            for kind in IncidentKind::ALL.map(IncidentKind::label) {
                let n = m.get(kind).copied().unwrap_or(0);
                let _ = writeln!(o, "kmipd_internal_errors_total{{kind=\"{kind}\"}} {n}");
            }
        }
        if let Some(flag) = self.audit_poisoned.get() {
            let _ = writeln!(
                o,
                "# HELP kmipd_audit_poisoned 1 when a failed write or fsync poisoned the audit log \
                 (every request fails; restart on a healthy disk).\n\
                 # TYPE kmipd_audit_poisoned gauge\n\
                 kmipd_audit_poisoned {}",
                u8::from(flag.load(Ordering::Acquire))
            );
        }
        let forward = self
            .audit_forward
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        if !forward.is_empty() {
            let families: [ForwardFamily; 4] = [
                (
                    "kmipd_audit_forward_backlog",
                    "gauge",
                    "Audit records durable in the file and not yet sent to the collector \
                     ([[audit.forward]]).",
                    |f| f.backlog.load(Ordering::Relaxed),
                ),
                (
                    "kmipd_audit_forward_failures_total",
                    "counter",
                    "Failed attempts to forward audit records (connect, send, saving the \
                     position).",
                    |f| f.failures.load(Ordering::Relaxed),
                ),
                (
                    "kmipd_audit_forward_last_success_seconds",
                    "gauge",
                    "Unix time of the last batch of audit records sent (0: none yet).",
                    |f| f.last_success.load(Ordering::Relaxed),
                ),
                (
                    "kmipd_audit_forward_acknowledged",
                    "gauge",
                    "The last audit record sent to the collector.",
                    |f| f.acknowledged.load(Ordering::Relaxed),
                ),
            ];
            render_by_destination(&mut o, &families, &forward);
        }
        let push = self.push.lock().map(|a| a.clone()).unwrap_or_default();
        if !push.is_empty() {
            let families: [PushFamily; 5] = [
                (
                    "kmipd_push_queued",
                    "gauge",
                    "Put and Notify messages waiting for delivery ([[push]]).",
                    |f| f.queued.load(Ordering::Relaxed),
                ),
                (
                    "kmipd_push_delivered_total",
                    "counter",
                    "Put and Notify messages the client took.",
                    |f| f.delivered.load(Ordering::Relaxed),
                ),
                (
                    "kmipd_push_failed_total",
                    "counter",
                    "Put and Notify messages given up after every attempt, or refused by the \
                     client.",
                    |f| f.failed.load(Ordering::Relaxed),
                ),
                (
                    "kmipd_push_dropped_total",
                    "counter",
                    "Put and Notify messages dropped because the destination's queue was full.",
                    |f| f.dropped.load(Ordering::Relaxed),
                ),
                (
                    "kmipd_push_attempt_failures_total",
                    "counter",
                    "Failed delivery attempts (connect, TLS handshake, write, read).",
                    |f| f.attempt_failures.load(Ordering::Relaxed),
                ),
            ];
            render_by_destination(&mut o, &families, &push);
        }
        let _ = writeln!(
            o,
            "# HELP kmipd_hsm_failures_total Runtime HSM calls that failed, by operation \
             (a master key or KEK rotation, a KEK met at run time unwrapped).\n\
             # TYPE kmipd_hsm_failures_total counter"
        );
        if let Ok(m) = self.hsm_failures.lock() {
            for op in HsmOperation::ALL {
                let n = match (op, self.kek_unwrap_failures.get()) {
                    (HsmOperation::UnwrapKek, Some(c)) => c.load(Ordering::Relaxed),
                    _ => m.get(op.label()).copied().unwrap_or(0),
                };
                let _ = writeln!(
                    o,
                    "kmipd_hsm_failures_total{{operation=\"{}\"}} {n}",
                    op.label()
                );
            }
        }
        if let Some(files) = self.tls_files.get() {
            render_tls_files(&mut o, files);
        }
        if let Some(counts) = self.engine.get().and_then(|e| self.due_counts(e)) {
            let _ = writeln!(
                o,
                "# HELP kmipd_keys_due_deactivation Objects whose Deactivation Date falls within the \
                 window from now (not yet deactivated or destroyed; counted at most once a minute).\n\
                 # TYPE kmipd_keys_due_deactivation gauge"
            );
            for (label, n) in &counts.due {
                let _ = writeln!(o, "kmipd_keys_due_deactivation{{within=\"{label}\"}} {n}");
            }
            let _ = writeln!(
                o,
                "# HELP kmipd_keys_past_crypto_period Active objects used longer than the crypto \
                 period [policy] gives their type (made before the policy, or given a later \
                 Deactivation Date).\n\
                 # TYPE kmipd_keys_past_crypto_period gauge\n\
                 kmipd_keys_past_crypto_period {}\n\
                 # HELP kmipd_rotation_due_objects Objects due for automatic rotation and not \
                 rotated yet.\n\
                 # TYPE kmipd_rotation_due_objects gauge\n\
                 kmipd_rotation_due_objects {}\n\
                 # HELP kmipd_rotation_lag_seconds How long the object due for automatic \
                 rotation the longest has waited (0: none due).\n\
                 # TYPE kmipd_rotation_lag_seconds gauge\n\
                 kmipd_rotation_lag_seconds {}",
                counts.past_period, counts.rotation.0, counts.rotation.1
            );
            let _ = writeln!(
                o,
                "# HELP kmipd_objects Managed objects by their current state (a destroyed object \
                 keeps its metadata; counted at most once a minute).\n\
                 # TYPE kmipd_objects gauge"
            );
            for (s, n) in &counts.by_state {
                let _ = writeln!(o, "kmipd_objects{{state=\"{}\"}} {n}", state_label(*s));
            }
        }
        match self.store.get() {
            Some(Watched::Sled(s)) => {
                if let Some(store) = s.upgrade() {
                    render_sled(&mut o, &store);
                }
            }
            Some(Watched::Postgres(s)) => {
                if let Some(store) = s.upgrade() {
                    render_postgres(&mut o, &store);
                }
            }
            None => {}
        }
        o
    }
}

/// `kmipd_certificate_not_after_seconds{certificate,file}` and
/// `kmipd_crl_next_update_seconds{file}` (Unix times). A file that cannot be read or parsed
/// has no series (an alert on `absent` or on the series count notices it).
fn render_tls_files(o: &mut String, files: &TlsFiles) {
    use x509_parser::prelude::FromDer;
    let pems = |path: &PathBuf| -> Vec<Vec<u8>> {
        std::fs::read(path)
            .map(|bytes| {
                x509_parser::pem::Pem::iter_from_buffer(&bytes)
                    .filter_map(Result::ok)
                    .map(|p| p.contents)
                    .collect()
            })
            .unwrap_or_default()
    };
    let _ = writeln!(
        o,
        "# HELP kmipd_certificate_not_after_seconds When a [tls] certificate expires (Unix time): \
         the server certificates' leaf, the client CA bundle's earliest.\n\
         # TYPE kmipd_certificate_not_after_seconds gauge"
    );
    for (role, path) in &files.certificates {
        let ders = pems(path);
        let not_after = ders.iter().filter_map(|der| {
            x509_parser::certificate::X509Certificate::from_der(der)
                .ok()
                .map(|(_, c)| c.validity().not_after.timestamp())
        });
        let value = if *role == "client_ca" {
            not_after.min()
        } else {
            not_after.take(1).next()
        };
        if let Some(t) = value {
            let _ = writeln!(
                o,
                "kmipd_certificate_not_after_seconds{{certificate=\"{role}\",file=\"{}\"}} {t}",
                escape(&path.display().to_string())
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP kmipd_crl_next_update_seconds A [tls] CRL's Next Update (Unix time).\n\
         # TYPE kmipd_crl_next_update_seconds gauge"
    );
    for path in &files.crls {
        let next = pems(path).iter().find_map(|der| {
            x509_parser::revocation_list::CertificateRevocationList::from_der(der)
                .ok()
                .and_then(|(_, crl)| crl.next_update())
                .map(|t| t.timestamp())
        });
        if let Some(t) = next {
            let _ = writeln!(
                o,
                "kmipd_crl_next_update_seconds{{file=\"{}\"}} {t}",
                escape(&path.display().to_string())
            );
        }
    }
}

/// The store [`Metrics`] reports on (not kept open by it).
#[derive(Debug)]
enum Watched {
    Sled(Weak<SledStore>),
    Postgres(Weak<PgStore>),
}

/// How old the object count of a PostgreSQL store may be in a scrape: the count is a
/// `count(*)` over every object, taken by a scrape at most this often per node.
const PG_OBJECT_COUNT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// The PostgreSQL store's figures. May block: the object count is a query when the last one
/// is older than [`PG_OBJECT_COUNT_MAX_AGE`] (bounded by the statement timeout; left out when
/// it fails).
fn render_postgres(o: &mut String, store: &PgStore) {
    let st = store.stats();
    if let Ok(n) = store.object_count(PG_OBJECT_COUNT_MAX_AGE) {
        let _ = writeln!(
            o,
            "# HELP kmipd_store_objects Objects in the store (a destroyed object keeps its metadata).\n\
             # TYPE kmipd_store_objects gauge\n\
             kmipd_store_objects {n}"
        );
    }
    let _ = writeln!(
        o,
        "# HELP kmipd_store_commits_total Store commits made durable by this node.\n\
         # TYPE kmipd_store_commits_total counter\n\
         kmipd_store_commits_total {}\n\
         # HELP kmipd_store_commit_failures_total Store commits of this node that failed, by kind (conflict: a concurrent change; database: unreachable, timed out or unknown outcome; keyring; corrupt).\n\
         # TYPE kmipd_store_commit_failures_total counter",
        st.commits
    );
    for (kind, n) in st.commit_failures {
        let _ = writeln!(
            o,
            "kmipd_store_commit_failures_total{{kind=\"{kind}\"}} {n}"
        );
    }
    let _ = writeln!(
        o,
        "# HELP kmipd_store_pool_size Largest number of database connections of this node (store.pool_size).\n\
         # TYPE kmipd_store_pool_size gauge\n\
         kmipd_store_pool_size {}\n\
         # HELP kmipd_store_pool_connections Database connections open now.\n\
         # TYPE kmipd_store_pool_connections gauge\n\
         kmipd_store_pool_connections {}\n\
         # HELP kmipd_store_pool_connections_in_use Database connections in use now.\n\
         # TYPE kmipd_store_pool_connections_in_use gauge\n\
         kmipd_store_pool_connections_in_use {}\n\
         # HELP kmipd_store_pool_waiting Store operations waiting for a database connection now.\n\
         # TYPE kmipd_store_pool_waiting gauge\n\
         kmipd_store_pool_waiting {}\n\
         # HELP kmipd_store_corrupt_records Records found damaged since the store was opened.\n\
         # TYPE kmipd_store_corrupt_records gauge\n\
         kmipd_store_corrupt_records {}",
        st.pool_max,
        st.pool_open,
        st.pool_open.saturating_sub(st.pool_idle),
        st.pool_waiting,
        store.corrupt_records().len()
    );
}

/// The sled store's figures.
fn render_sled(o: &mut String, store: &SledStore) {
    {
        {
            let st = store.sync_stats();
            let _ = writeln!(
                o,
                "# HELP kmipd_store_objects Objects in the store (a destroyed object keeps its metadata).\n\
                 # TYPE kmipd_store_objects gauge\n\
                 kmipd_store_objects {}\n\
                 # HELP kmipd_store_commits_total Store commits made durable.\n\
                 # TYPE kmipd_store_commits_total counter\n\
                 kmipd_store_commits_total {}\n\
                 # HELP kmipd_store_wal_syncs_total Group fdatasync rounds of the store's write-ahead log.\n\
                 # TYPE kmipd_store_wal_syncs_total counter\n\
                 kmipd_store_wal_syncs_total {}\n\
                 # HELP kmipd_store_checkpoints_total Checkpoints of sled (its files flushed, older log segments deleted).\n\
                 # TYPE kmipd_store_checkpoints_total counter\n\
                 kmipd_store_checkpoints_total {}\n\
                 # HELP kmipd_store_corrupt_records Records found damaged since the store was opened.\n\
                 # TYPE kmipd_store_corrupt_records gauge\n\
                 kmipd_store_corrupt_records {}\n\
                 # HELP kmipd_store_poisoned 1 when a failed fsync poisoned the store (nothing more can be committed; restart on a healthy disk).\n\
                 # TYPE kmipd_store_poisoned gauge\n\
                 kmipd_store_poisoned {}",
                store.stored_objects(),
                st.commits,
                st.group_syncs,
                st.checkpoints,
                store.corrupt_records().len(),
                u8::from(store.poisoned().is_some()),
            );
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_every_family() {
        let m = Metrics::default();
        m.item("Create", "Success");
        m.item("Create", "Success");
        m.item("Get", "Operation Failed");
        m.latency(Duration::from_millis(3));
        m.connection_opened();
        m.handshake_failed();
        m.refused("max_connections");
        m.internal_error(IncidentKind::StoreCorrupt);
        let t = m.render();
        assert!(
            t.contains("kmipd_requests_total{operation=\"Create\",result=\"Success\"} 2"),
            "{t}"
        );
        assert!(t.contains("kmipd_request_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(t.contains("kmipd_request_duration_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(t.contains("kmipd_request_duration_seconds_count 1"));
        assert!(t.contains("kmipd_open_connections 1"));
        assert!(t.contains("kmipd_tls_handshake_failures_total 1"));
        assert!(t.contains("kmipd_refusals_total{reason=\"max_connections\"} 1"));
        assert!(t.contains("kmipd_internal_errors_total{kind=\"store_corrupt\"} 1\n"));
        assert!(t.contains("kmipd_internal_errors_total{kind=\"internal\"} 0\n"));
        assert!(t.contains("kmipd_hsm_failures_total{operation=\"rotate_kek\"} 0\n"));
        m.hsm_failed(HsmOperation::RotateKek);
        let t = m.render();
        assert!(t.contains("kmipd_hsm_failures_total{operation=\"rotate_kek\"} 1\n"));
        assert!(t.contains("kmipd_hsm_failures_total{operation=\"rotate_master_key\"} 0\n"));
    }

    #[test]
    fn permission_denied_by_identity_is_bounded() {
        let m = Metrics::default();
        m.denied("alice");
        m.denied("alice");
        for i in 0..MAX_IDENTITIES {
            m.denied(&format!("id{i}"));
        }
        m.denied("alice");
        let t = m.render();
        assert!(
            t.contains("kmipd_permission_denied_total{identity=\"alice\"} 3\n"),
            "{t}"
        );
        // alice and the first MAX_IDENTITIES - 1 others have their own series; the last one
        // is counted under (other).
        assert!(t.contains("kmipd_permission_denied_total{identity=\"(other)\"} 1\n"));
        let series = t
            .lines()
            .filter(|l| l.starts_with("kmipd_permission_denied_total{"))
            .count();
        assert_eq!(series, MAX_IDENTITIES + 1);
    }

    #[test]
    fn certificate_and_crl_expiry_gauges() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["kmipd".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 5, 17);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        let issuer = rcgen::Issuer::new(params, key);
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert.pem()).unwrap();
        let crl = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2030, 1, 1),
            next_update: rcgen::date_time_ymd(2030, 2, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap();
        let crl_path = dir.path().join("crl.pem");
        std::fs::write(&crl_path, crl.pem().unwrap()).unwrap();
        let m = Metrics::default();
        let t = m.render();
        assert!(!t.contains("kmipd_certificate_not_after_seconds"), "{t}");
        m.tls_files
            .set(TlsFiles {
                certificates: vec![
                    ("client_ca", ca.clone()),
                    ("server_rsa", dir.path().join("missing.pem")),
                ],
                crls: vec![crl_path],
            })
            .unwrap();
        let t = m.render();
        // 2031-05-17T00:00:00Z and 2030-02-01T00:00:00Z.
        assert!(
            t.contains(&format!(
                "kmipd_certificate_not_after_seconds{{certificate=\"client_ca\",file=\"{}\"}} 1936742400\n",
                ca.display()
            )),
            "{t}"
        );
        assert!(
            !t.contains("server_rsa"),
            "an unreadable file has no series: {t}"
        );
        assert!(t.contains("} 1896134400\n"), "{t}");
        assert!(t.contains("kmipd_crl_next_update_seconds{file="), "{t}");
    }

    #[test]
    fn keys_due_for_deactivation_by_window() {
        use kmipd_proto::attributes::Attributes;
        use kmipd_proto::enums::state;
        use kmipd_store::{Change, ManagedObject, MemoryStore, ObjectStore};
        use kmipd_ttlv::Value;
        const NOW: i64 = 1_800_000_000;
        const DAY: i64 = 86_400;
        let store = Arc::new(MemoryStore::new());
        let object = |uid: &str, days: i64, st: u32| {
            let mut attributes = Attributes::new();
            attributes.set(
                kmipd_proto::tag::DEACTIVATION_DATE,
                Value::DateTime(NOW + days * DAY),
            );
            attributes.set(kmipd_proto::tag::STATE, Value::Enumeration(st));
            ManagedObject {
                uid: uid.into(),
                object_type: 2,
                owner: "o".into(),
                object: None,
                attributes,
                sequence: 1,
            }
        };
        let objects = [
            object("a", 3, state::ACTIVE),
            object("b", 20, state::ACTIVE),
            object("c", 29, state::PRE_ACTIVE),
            object("d", 60, state::ACTIVE),
            object("e", 5, state::DESTROYED),
            object("f", -1, state::DEACTIVATED),
            // Stored Active, its Deactivation Date passed: Deactivated now.
            object("g", -2, state::ACTIVE),
        ];
        store
            .commit(objects.into_iter().map(Change::Put).collect())
            .unwrap();
        let engine = kmipd_ops::Engine::new(
            store,
            kmipd_ops::EngineConfig {
                clock: kmipd_ops::Clock::from_fn(|| NOW),
                ..kmipd_ops::EngineConfig::default()
            },
        );
        let m = Metrics::default();
        assert!(!m.render().contains("kmipd_keys_due_deactivation"));
        m.watch_engine(&engine);
        let t = m.render();
        assert!(
            t.contains("kmipd_keys_due_deactivation{within=\"7d\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("kmipd_keys_due_deactivation{within=\"30d\"} 3\n"),
            "{t}"
        );
        // The same objects by their state now.
        for (label, n) in [
            ("pre_active", 1),
            ("active", 3),
            ("deactivated", 2),
            ("compromised", 0),
            ("destroyed", 1),
            ("destroyed_compromised", 0),
        ] {
            assert!(
                t.contains(&format!("kmipd_objects{{state=\"{label}\"}} {n}\n")),
                "{label}: {t}"
            );
        }
    }

    #[test]
    fn keys_past_their_crypto_period_and_rotation_lag() {
        use kmipd_proto::attributes::Attributes;
        use kmipd_proto::enums::state;
        use kmipd_proto::tag;
        use kmipd_store::{Change, ManagedObject, MemoryStore, ObjectStore};
        use kmipd_ttlv::Value;
        const NOW: i64 = 1_800_000_000;
        const DAY: i64 = 86_400;
        let key = |uid: &str, st: u32, dates: &[(kmipd_ttlv::Tag, i64)], rotate: Option<u32>| {
            let mut attributes = Attributes::new();
            attributes.set(tag::STATE, Value::Enumeration(st));
            for (t, days) in dates {
                attributes.set(*t, Value::DateTime(NOW + days * DAY));
            }
            if let Some(days) = rotate {
                attributes.set(tag::ROTATE_AUTOMATIC, Value::Boolean(true));
                attributes.set(tag::ROTATE_INTERVAL, Value::Interval(days * 86_400));
            }
            ManagedObject {
                uid: uid.into(),
                object_type: kmipd_proto::enums::object_type::SYMMETRIC_KEY,
                owner: "o".into(),
                object: None,
                attributes,
                sequence: 1,
            }
        };
        let (i, a, d) = (
            tag::INITIAL_DATE,
            tag::ACTIVATION_DATE,
            tag::DEACTIVATION_DATE,
        );
        let objects = [
            key("old", state::ACTIVE, &[(i, -100), (a, -100)], None),
            key("young", state::ACTIVE, &[(i, -10), (a, -10)], None),
            // Its Deactivation Date passed: no longer Active, whatever the stored State says.
            key(
                "lapsed",
                state::ACTIVE,
                &[(i, -100), (a, -100), (d, -1)],
                None,
            ),
            key("waiting", state::PRE_ACTIVE, &[(i, -100)], None),
            key(
                "activated-late",
                state::ACTIVE,
                &[(i, -100), (a, -30)],
                None,
            ),
            key("rotating", state::ACTIVE, &[(i, -3), (a, -3)], Some(1)),
            key("not-yet", state::ACTIVE, &[(i, -3), (a, -3)], Some(10)),
            key("unused", state::PRE_ACTIVE, &[(i, -3)], Some(1)),
        ];
        let store = Arc::new(MemoryStore::new());
        store
            .commit(objects.into_iter().map(Change::Put).collect())
            .unwrap();
        let engine = kmipd_ops::Engine::new(
            store,
            kmipd_ops::EngineConfig {
                clock: kmipd_ops::Clock::from_fn(|| NOW),
                ..kmipd_ops::EngineConfig::default()
            },
        );
        let m = Metrics::default();
        m.watch_engine(&engine);
        // No crypto period in the policy: nothing is past one.
        assert!(m.render().contains("kmipd_keys_past_crypto_period 0\n"));
        engine.set_policy(kmipd_ops::Policy {
            crypto_periods: vec![(kmipd_proto::enums::object_type::SYMMETRIC_KEY, 90 * DAY)],
            ..kmipd_ops::Policy::default()
        });
        let m = Metrics::default();
        m.watch_engine(&engine);
        let t = m.render();
        assert!(t.contains("kmipd_keys_past_crypto_period 1\n"), "{t}");
        assert!(t.contains("kmipd_rotation_due_objects 1\n"), "{t}");
        assert!(
            t.contains(&format!("kmipd_rotation_lag_seconds {}\n", 2 * DAY)),
            "{t}"
        );
    }

    #[test]
    fn the_store_s_figures_while_it_is_open() {
        use kmipd_store::{Change, Kek, KekId, ManagedObject, ObjectStore};
        let m = Metrics::default();
        assert!(!m.render().contains("kmipd_store_objects"));
        let dir = tempfile::tempdir().unwrap();
        let kek = Kek::new(KekId(1), &zeroize::Zeroizing::new([7; 32]));
        let store = Arc::new(SledStore::open_with_kek(dir.path(), kek).unwrap());
        m.watch_store(&DurableStore::Sled(store.clone()));
        for (i, uid) in ["a", "b"].into_iter().enumerate() {
            let o = ManagedObject {
                uid: uid.into(),
                object_type: 7,
                owner: "o".into(),
                object: None,
                attributes: kmipd_proto::attributes::Attributes::new(),
                sequence: u64::try_from(i).unwrap(),
            };
            store.commit(vec![Change::Put(o)]).unwrap();
        }
        let t = m.render();
        assert!(t.contains("kmipd_store_objects 2\n"), "{t}");
        assert!(t.contains("kmipd_store_commits_total 2\n"), "{t}");
        assert!(t.contains("kmipd_store_corrupt_records 0"), "{t}");
        assert!(t.contains("kmipd_store_poisoned 0"), "{t}");
        // A closed store is no longer reported (and not kept open by the metrics).
        drop(store);
        assert!(!m.render().contains("kmipd_store_objects"));
    }
}
