//! The automatic rotation scheduler: every `[rotation] check_every` it asks the engine to
//! rotate the objects that are due ([`kmipd_ops::rotation`], which describes the semantics and
//! why several nodes on one store rotate each object once), on the blocking pool, and records
//! each rotation in the audit log as identity `kmipd:rotation`, peer `scheduler`, operation
//! `ReKey` or `ReKeyKeyPair` with the old and new identifiers. A failed rotation is audited and
//! logged, and tried again at the next run.

use std::time::Duration;

use kmipd_ops::Engine;
use kmipd_ops::access::operation_name;
use kmipd_ops::rotation::{Outcome, ROTATION_IDENTITY};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::audit::{AuditLog, ItemSummary};

/// The audit record's peer for the scheduler's rotations.
pub const ROTATION_PEER: &str = "scheduler";

/// One run: rotates what is due, audits each outcome; the outcomes.
pub fn run_once(engine: &Engine, audit: Option<&AuditLog>) -> Vec<Outcome> {
    let outcomes = match engine.rotate_due() {
        Ok(o) => o,
        Err(e) => {
            error!(error = %e, "rotation: cannot list the objects due");
            return Vec::new();
        }
    };
    for o in &outcomes {
        let item = match o {
            Outcome::Rotated(r) => {
                info!(old = %r.old, new = %r.new, "rotation: object rotated");
                let mut uids = vec![r.old.clone(), r.new.clone()];
                if let Some((old, new)) = &r.public {
                    uids.extend([old.clone(), new.clone()]);
                }
                ItemSummary {
                    operation: operation_name(r.operation),
                    uids,
                    status: "Success".into(),
                    reason: None,
                    message: Some("automatic rotation".into()),
                }
            }
            Outcome::NotDue(_) => continue,
            Outcome::Failed { uid, error } => {
                warn!(%uid, error = %error, "rotation failed; tried again at the next run");
                ItemSummary {
                    operation: "ReKey".into(),
                    uids: vec![uid.clone()],
                    status: "OperationFailed".into(),
                    reason: None,
                    message: Some(format!("automatic rotation: {}", error.client_message())),
                }
            }
        };
        if let Some(a) = audit
            && let Err(e) = a.append(ROTATION_IDENTITY, ROTATION_PEER, &[item])
        {
            error!(error = %e, "rotation: audit record not written");
        }
    }
    outcomes
}

/// Runs [`run_once`] every `every` until `stop`.
pub async fn schedule(engine: Engine, audit: AuditLog, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let (e, a) = (engine.clone(), audit.clone());
        if let Err(err) = tokio::task::spawn_blocking(move || run_once(&e, Some(&a))).await {
            error!(error = %err, "rotation run panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    use kmipd_ops::rotation::Outcome;
    use kmipd_ops::{Clock, EngineConfig, Policy, Principal};
    use kmipd_proto::build;
    use kmipd_proto::enums::{cryptographic_algorithm as alg, object_type, operation};
    use kmipd_proto::message::{ProtocolVersion, RequestBatchItem, RequestMessage};
    use kmipd_proto::tag;
    use kmipd_store::MemoryStore;
    use kmipd_ttlv::{Ttlv, Value};

    use super::*;

    /// A 2.1 Create of an Active AES-256 key rotated every day.
    fn create() -> Ttlv {
        let attrs = build::structure(
            tag::ATTRIBUTES,
            vec![
                build::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, alg::AES),
                build::int(tag::CRYPTOGRAPHIC_LENGTH, 256),
                build::int(tag::CRYPTOGRAPHIC_USAGE_MASK, 0x0C),
                Ttlv::new(tag::ACTIVATION_DATE, Value::DateTime(1_000)),
                Ttlv::new(tag::ROTATE_AUTOMATIC, Value::Boolean(true)),
                Ttlv::new(tag::ROTATE_INTERVAL, Value::Interval(86_400)),
            ],
        );
        RequestMessage::new(
            ProtocolVersion::V2_1,
            vec![RequestBatchItem::new(
                operation::CREATE,
                vec![
                    build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
                    attrs,
                ],
            )],
        )
        .to_ttlv()
    }

    #[test]
    fn a_run_rotates_what_is_due_and_audits_it_as_kmipd_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = AuditLog::open(&path).unwrap();
        let now = Arc::new(AtomicI64::new(1_000));
        let clock = now.clone();
        let engine = Engine::new(
            Arc::new(MemoryStore::new()),
            EngineConfig {
                clock: Clock::from_fn(move || clock.load(Ordering::SeqCst)),
                policy: Policy::unrestricted(),
                ..EngineConfig::default()
            },
        );
        engine.handle_message(&Principal::new("app"), &create());
        assert!(run_once(&engine, Some(&audit)).is_empty());
        now.store(1_000 + 86_400, Ordering::SeqCst);
        let outcomes = run_once(&engine, Some(&audit));
        let [Outcome::Rotated(r)] = outcomes.as_slice() else {
            panic!("{outcomes:?}");
        };
        drop(audit);
        assert_eq!(crate::audit::verify(&path).unwrap(), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"identity\":\"kmipd:rotation\""), "{text}");
        assert!(text.contains("\"ReKey\""), "{text}");
        assert!(text.contains(&r.old) && text.contains(&r.new), "{text}");
    }
}
