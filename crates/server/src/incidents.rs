//! The operator's side of the engine's incidents (`kmipd_ops::incident`): store failures
//! other than a Conflict and internal errors, which the client sees only as General Failure,
//! "internal server error".
//!
//! Each incident is logged at `error` with its kind, the operation, the object (where known),
//! the client's identity and address and the detail, and counted in
//! `kmipd_internal_errors_total{kind}` ([`crate::metrics`]). A damaged record read by a request
//! is also remembered by the store, as one found by a scan (`kmipd_store_corrupt_records`).
//!
//! A **poisoned store** (a failed fsync: nothing more can be committed until a restart) is
//! reported once, not per request: one `error` line when it is first noticed, by a request
//! that failed on it or by [`Incidents::watch`], which looks every second (a checkpoint can
//! poison the store while no request runs), and the gauge `kmipd_store_poisoned`. Requests
//! that fail on it afterwards are counted, not logged one by one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use kmipd_ops::{Incident, IncidentKind};
use kmipd_store::SledStore;
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::metrics::Metrics;

/// Logs and counts incidents; reports a poisoned store once. Shared by the connections.
#[derive(Debug)]
pub(crate) struct Incidents {
    metrics: Arc<Metrics>,
    /// The durable store, whose poisoning is reported (none with the memory backend).
    store: Option<Weak<SledStore>>,
    poison_reported: AtomicBool,
}

impl Incidents {
    /// How often [`Incidents::watch`] looks at the store.
    const WATCH_EVERY: Duration = Duration::from_secs(1);

    pub(crate) fn new(metrics: Arc<Metrics>, store: Option<&Arc<SledStore>>) -> Incidents {
        Incidents {
            metrics,
            store: store.map(Arc::downgrade),
            poison_reported: AtomicBool::new(false),
        }
    }

    /// Logs and counts the incidents of one request by `identity` from `peer`.
    pub(crate) fn report(&self, incidents: &[Incident], identity: &str, peer: SocketAddr) {
        for i in incidents {
            self.metrics.internal_error(i.kind);
            if i.kind == IncidentKind::StoreBackend && self.poisoned() {
                continue;
            }
            error!(
                kind = i.kind.label(),
                operation = %i.operation_name(),
                object = i.object.as_deref().unwrap_or("-"),
                identity,
                %peer,
                detail = %i.detail,
                "request failed: internal error (the client got General Failure)"
            );
        }
    }

    /// Whether the store is poisoned; the first time it is, logs it (once per process).
    pub(crate) fn poisoned(&self) -> bool {
        let Some(why) = self
            .store
            .as_ref()
            .and_then(Weak::upgrade)
            .and_then(|s| s.poisoned())
        else {
            return false;
        };
        if !self.poison_reported.swap(true, Ordering::SeqCst) {
            error!(
                reason = %why,
                "store poisoned: nothing more can be committed; every change fails until \
                 kmipd is restarted on a healthy disk (changes already acknowledged are \
                 durable)"
            );
        }
        true
    }

    /// Looks at the store every second until it is poisoned (and reported) or `stop`.
    pub(crate) async fn watch(self: Arc<Self>, stop: CancellationToken) {
        if self.store.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(Incidents::WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {
                    if self.poisoned() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Mutex;

    use kmipd_store::{Kek, KekId};

    /// Where a test's log lines go.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
            let w = self.clone();
            tracing_subscriber::fmt()
                .with_writer(move || w.clone())
                .with_ansi(false)
                .finish()
        }

        fn errors(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .filter(|l| l.contains(" ERROR "))
                .map(str::to_owned)
                .collect()
        }
    }

    fn incident(kind: IncidentKind, object: &str) -> Incident {
        Incident {
            kind,
            operation: None,
            object: Some(object.to_owned()),
            detail: format!("{} failure", kind.label()),
        }
    }

    fn setup() -> (
        tempfile::TempDir,
        Arc<SledStore>,
        Arc<Metrics>,
        Arc<Incidents>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let kek = Kek::new(KekId(1), &zeroize::Zeroizing::new([7; 32]));
        let store = Arc::new(SledStore::open_with_kek(dir.path(), kek).unwrap());
        let metrics = Arc::new(Metrics::default());
        metrics.watch_store(&crate::storage::DurableStore::Sled(store.clone()));
        let incidents = Arc::new(Incidents::new(metrics.clone(), Some(&store)));
        (dir, store, metrics, incidents)
    }

    /// Each incident is one error line and one count; once the store is poisoned, its
    /// failures are counted but the poisoning is logged once, and the gauge says so.
    #[test]
    fn a_poisoned_store_is_one_log_line_and_a_gauge_while_each_failure_is_counted() {
        let (_dir, store, metrics, incidents) = setup();
        let log = Captured::default();
        let peer: SocketAddr = "127.0.0.1:5696".parse().unwrap();
        tracing::subscriber::with_default(log.subscriber(), || {
            incidents.report(&[incident(IncidentKind::StoreCorrupt, "k1")], "alice", peer);
            incidents.report(&[incident(IncidentKind::StoreBackend, "k2")], "alice", peer);
            assert!(!incidents.poisoned());
            store.poison_for_tests("test: fsync failed");
            for _ in 0..3 {
                incidents.report(&[incident(IncidentKind::StoreBackend, "k3")], "bob", peer);
            }
            assert!(incidents.poisoned());
        });
        let errors = log.errors();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].contains("object=\"k1\"") && errors[0].contains("alice"));
        assert!(errors[1].contains("object=\"k2\""), "{}", errors[1]);
        assert!(errors[2].contains("store poisoned"), "{}", errors[2]);
        assert!(errors[2].contains("test: fsync failed"), "{}", errors[2]);
        let m = metrics.render();
        assert!(m.contains("kmipd_store_poisoned 1\n"), "{m}");
        assert!(
            m.contains("kmipd_internal_errors_total{kind=\"store_backend\"} 4\n"),
            "{m}"
        );
        assert!(
            m.contains("kmipd_internal_errors_total{kind=\"store_corrupt\"} 1\n"),
            "{m}"
        );
    }

    /// A store poisoned while no request runs is noticed by the watcher, logged once.
    #[test]
    fn the_watcher_reports_a_poisoning_without_requests() {
        let (_dir, store, metrics, incidents) = setup();
        let log = Captured::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _guard = tracing::subscriber::set_default(log.subscriber());
        store.poison_for_tests("test: checkpoint fsync failed");
        let stop = CancellationToken::new();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), incidents.clone().watch(stop))
                .await
                .expect("the watcher ends once the poisoning is reported");
        });
        assert!(incidents.poisoned());
        let errors = log.errors();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].contains("checkpoint fsync failed"),
            "{}",
            errors[0]
        );
        assert!(metrics.render().contains("kmipd_store_poisoned 1\n"));
    }
}
