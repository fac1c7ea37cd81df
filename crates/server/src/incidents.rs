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
