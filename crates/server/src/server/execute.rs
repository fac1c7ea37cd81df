//! Running one request: light or heavy, the batch cap, incidents, metrics and the audit
//! record before the reply.
//!
//! At most `limits.max_concurrent_requests` requests run at a time (a semaphore). A *light*
//! request (`Engine::is_light`: reads, attribute edits, symmetric keys, symmetric and
//! public-key cryptography; small, bounded work) is prepared right on the async thread and its
//! store commit, if any, awaited without holding a thread (`Engine::complete_then`), run again
//! as `kmipd_ops::Retry` says when it meets a concurrent change, if the store's reads wait on
//! nothing but this process (`Engine::store_reads_are_local`: sled, memory). With a store
//! whose reads wait on the network but that offers asynchronous reads
//! (`Engine::async_access`: PostgreSQL), a light request that is also replayable
//! (`Engine::is_replayable`: its preparation leaves nothing in the engine's memory) runs on
//! the async thread too: what it names is fetched ahead on this task, it is prepared against
//! those reads (`kmipd_store::prefetch::Overlay`), prepared again after fetching whatever a
//! preparation read beyond them (bounded), and its commit awaited on this task ([`prefetched`]).
//! Anything else runs whole on the blocking pool (`Engine::handle`). Either way the store
//! work as a whole is bounded by `store.deadline_ms` from the request's arrival
//! (`kmipd_store::deadline`). Undecodable TTLV with a readable header is answered
//! Invalid Message; a batch over `limits.max_batch_items` gets an Invalid Message response and
//! the connection stays open.
//!
//! Then: the engine's incidents go to the operator ([`crate::incidents`]), each batch item is
//! counted (`kmipd_requests_total`), and the request's audit records are queued and awaited
//! ([`crate::audit`]): the reply is sent only once they are durable, and withheld (the
//! connection closed) if they cannot be written. With the sled store's journal
//! ([`AuditLog::journaled`]) a light request that commits has its success record summarized
//! here before the commit and made durable in the commit's own WAL frame
//! (`Engine::complete_journaled`): one `fdatasync` and no second queue; if the commit fails,
//! the failure is recorded through the queue as any other record.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kmipd_ops::{Answer, Engine, Incident, Principal, Retry};
use kmipd_proto::enums::{result_reason, result_status};
use kmipd_proto::message::{ProtocolVersion, ResponseBatchItem, ResponseHeader, ResponseMessage};
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};
use tracing::{debug, error, warn};

use super::Shared;
use crate::audit::{self, AuditLog, ItemSummary};

/// A client's address and its text as audit records carry it, formatted once (per connection
/// on the KMIP listener) rather than at every request.
pub(super) struct Peer {
    addr: SocketAddr,
    text: String,
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            text: addr.to_string(),
        }
    }
}

/// Runs one request (see the module docs), then waits (without holding a thread) for its audit
/// records to be durable; the encoded response, or `None` when no response may be sent.
pub(super) async fn execute(
    shared: &Shared,
    principal: &Principal,
    peer: &Peer,
    message: Vec<u8>,
) -> Option<Vec<u8>> {
    let started = Instant::now();
    let permit = tokio::select! {
        () = shared.hard_stop.cancelled() => return None,
        p = shared.exec_slots.clone().acquire_owned() => p.ok()?,
    };
    let engine = &shared.engine;
    let limits = shared.limits;
    let max_batch = shared.config.limits.max_batch_items;
    // A light request (reads, attribute edits, symmetric keys, symmetric and public-key
    // cryptography: small, bounded work) runs right here, and its store commit, if any, is
    // awaited without holding a thread. Anything else runs on the blocking pool.
    let blocking = |f: Box<dyn FnOnce() -> Processed + Send>| async move {
        let task = tokio::task::spawn_blocking(f);
        tokio::select! {
            () = shared.hard_stop.cancelled() => None,
            j = task => Some(j),
        }
    };
    // `store.deadline_ms` bounds the request's store work as a whole, counted from its
    // arrival, as well as each store operation (a networked store only).
    let until = started + Duration::from_millis(shared.config.store.deadline_ms);
    let decoded = kmipd_ttlv::decode(&message, &limits);
    // A networked store with asynchronous reads (PostgreSQL): a light request whose
    // preparation leaves nothing behind is prepared here too, against what was fetched ahead.
    if let Ok(tree) = &decoded
        && !engine.store_reads_are_local()
        && Engine::is_light(tree)
        && Engine::is_replayable(tree)
        && batch_len(tree) <= max_batch
        && let Some(access) = engine.async_access()
    {
        match prefetched(shared, access.as_ref(), principal, tree, until).await {
            Prefetched::Answered(answer, fetches) => {
                shared.metrics.prefetched(match fetches {
                    0 => "no_fetch",
                    1 => "one_fetch",
                    _ => "refetched",
                });
                drop(permit);
                let out = finish(tree, answer);
                return conclude(shared, principal, peer, started, out).await;
            }
            Prefetched::Stopped => return None,
            Prefetched::Blocking => shared.metrics.prefetched("blocking"),
        }
    }
    let joined = match decoded {
        Ok(tree)
            if engine.store_reads_are_local()
                && Engine::is_light(&tree)
                && batch_len(&tree) <= max_batch =>
        {
            // Run again when the commit finds an object changed by a concurrent request.
            let mut retry = Retry::new();
            let journaled = shared.audit.journaled();
            let (answer, audited) = loop {
                let prepared = engine.prepare(principal, &tree);
                let (answered, answer) = tokio::sync::oneshot::channel();
                // With the sled store's journal, the success record is summarized here (not
                // on the store's commit thread) and made durable in the commit's own frame.
                let mut summarized = None;
                engine.complete_journaled(
                    prepared,
                    |response| {
                        if !journaled {
                            return None;
                        }
                        let items = audit::summarize(&tree, response);
                        summarized = Some(items.clone());
                        Some(AuditLog::entry(
                            principal.name().to_owned(),
                            peer.text.clone(),
                            items,
                        ))
                    },
                    move |outcome, durable| {
                        let _ = answered.send((outcome, durable));
                    },
                );
                let (outcome, durable) = tokio::select! {
                    () = shared.hard_stop.cancelled() => return None,
                    r = answer => r.ok()?,
                };
                match outcome {
                    Ok(answer) => break (answer, summarized.filter(|_| durable)),
                    Err(conflict) => match retry.after_conflict() {
                        Some(pause) => tokio::time::sleep(pause).await,
                        None => break (Answer::clean(conflict.into_answer()), None),
                    },
                }
            };
            drop(permit);
            Ok(match audited {
                Some(items) => Processed {
                    audited: true,
                    ..finish_summarized(answer, items)
                },
                None => finish(&tree, answer),
            })
        }
        decoded => {
            let (engine, principal) = (engine.clone(), principal.clone());
            blocking(Box::new(move || {
                let out = kmipd_store::deadline::within(until, || {
                    process(&engine, &principal, decoded, max_batch)
                });
                drop(permit);
                out
            }))
            .await?
        }
    };
    let out = match joined {
        Ok(v) => v,
        Err(e) => {
            error!(error = %e, "request task failed; closing the connection");
            return None;
        }
    };
    conclude(shared, principal, peer, started, out).await
}

/// Incidents, metrics and the audit records of a processed request, then its response (`None`
/// when none may be sent).
async fn conclude(
    shared: &Shared,
    principal: &Principal,
    peer: &Peer,
    started: Instant,
    out: Processed,
) -> Option<Vec<u8>> {
    if let Some(r) = &out.refusal {
        shared.metrics.refused("max_batch_items");
        warn!(reason = %r, "request refused: limits.max_batch_items");
    }
    shared
        .incidents
        .report(&out.incidents, principal.name(), peer.addr);
    let elapsed = started.elapsed();
    for item in &out.items {
        shared.metrics.item(&item.operation, &item.status);
        if item.reason.as_deref() == Some("PermissionDenied") {
            shared.metrics.denied(principal.name());
        }
        // The audit log holds the same facts durably; this line is for debugging.
        debug!(
            operation = %item.operation,
            object = %item.uids.join(","),
            result = %item.status,
            reason = item.reason.as_deref().unwrap_or(""),
            duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "request"
        );
    }
    // Queued now, in this order; the reply waits until the records are on disk (unless they
    // became durable with the request's commit).
    if !out.audited {
        let audited =
            shared
                .audit
                .submit(principal.name().to_owned(), peer.text.clone(), out.items);
        let audited = tokio::select! {
            () = shared.hard_stop.cancelled() => return None,
            r = audited => r,
        };
        if let Err(e) = audited {
            error!(error = %e, "audit record not written: response withheld, closing the connection");
            return None;
        }
    }
    // The changes are durable and audited: their Put and Notify messages go to their queues
    // (never waiting; `crate::push`).
    shared.push.deliver(out.pushes);
    Some(out.response)
}

/// How a request prepared against reads fetched ahead ended.
enum Prefetched {
    /// Completed (committed, if it changed anything), after this many fetches (in all runs).
    Answered(Answer, usize),
    /// It needs what an overlay does not serve, or kept reading more than was fetched: run
    /// it on the blocking pool (its preparations left nothing behind).
    Blocking,
    /// The server is stopping hard.
    Stopped,
}

/// Rounds of fetching what a preparation missed before the request goes to the blocking pool.
const MAX_FETCH_ROUNDS: usize = 4;

/// A light, replayable request over a store with asynchronous reads (PostgreSQL), on this
/// task: fetch what it names ([`Engine::reads_ahead`]), prepare it against those reads
/// ([`Engine::prepare_over`]); when the preparation read something more, drop it, fetch that
/// and prepare again (at most [`MAX_FETCH_ROUNDS`] fetches); then await its commit here, and
/// run it again from fresh reads as [`Retry`] says when the commit meets a concurrent change.
/// A fetch that fails (the database unreachable, `until` passed) is served to the preparation
/// as the error of each read it covered, so the answer is the one a synchronous read would
/// have led to (General Failure, an incident).
async fn prefetched(
    shared: &Shared,
    access: &dyn kmipd_store::prefetch::AsyncAccess,
    principal: &Principal,
    tree: &Ttlv,
    until: Instant,
) -> Prefetched {
    let engine = &shared.engine;
    let mut retry = Retry::new();
    let mut want = Engine::reads_ahead(tree);
    let mut total = 0usize;
    loop {
        let mut overlay = engine.overlay();
        let mut fetches = 0usize;
        let prepared = loop {
            if !want.is_empty() {
                if fetches == MAX_FETCH_ROUNDS {
                    return Prefetched::Blocking;
                }
                fetches = fetches.saturating_add(1);
                total = total.saturating_add(1);
                let wanted = std::mem::take(&mut want);
                let fetched = tokio::select! {
                    () = shared.hard_stop.cancelled() => return Prefetched::Stopped,
                    r = access.fetch(wanted.clone(), until) => r,
                };
                match fetched {
                    Ok(f) => overlay.add(f),
                    Err(e) => overlay.fail(&wanted, &e),
                }
            }
            let prepared = engine.prepare_over(&overlay, principal, tree);
            if overlay.unsupported() {
                return Prefetched::Blocking;
            }
            want = overlay.take_missed();
            if want.is_empty() {
                break prepared;
            }
        };
        let (answered, answer) = tokio::sync::oneshot::channel();
        engine.complete_then_over(&overlay, prepared, move |outcome| {
            let _ = answered.send(outcome);
        });
        // Settings served from the store's memory are checked before the answer stands: by
        // the commit, in its transaction, or else by reading them again.
        let hinted = overlay.hinted();
        let committed = overlay.take_commit();
        let checked_by_commit = committed.is_some();
        if let Some((changes, done)) = committed {
            let stored = tokio::select! {
                () = shared.hard_stop.cancelled() => return Prefetched::Stopped,
                r = access.commit(changes, hinted.clone(), until) => r,
            };
            done(stored);
        }
        let Ok(outcome) = answer.await else {
            return Prefetched::Stopped;
        };
        if !checked_by_commit && !hinted.is_empty() {
            let still = tokio::select! {
                () = shared.hard_stop.cancelled() => return Prefetched::Stopped,
                r = access.check_settings(hinted, until) => r,
            };
            total = total.saturating_add(1);
            match still {
                Ok(true) => {}
                // Changed (the store now knows the new value): prepare again, fresh.
                Ok(false) => {
                    if total > MAX_FETCH_ROUNDS.saturating_mul(2) {
                        return Prefetched::Blocking;
                    }
                    want = overlay.served();
                    continue;
                }
                // Nothing was written: the blocking path reads afresh and meets the failure.
                Err(_) => return Prefetched::Blocking,
            }
        }
        match outcome {
            Ok(answer) => return Prefetched::Answered(answer, total),
            Err(conflict) => match retry.after_conflict() {
                Some(pause) => {
                    tokio::select! {
                        () = shared.hard_stop.cancelled() => return Prefetched::Stopped,
                        () = tokio::time::sleep(pause) => {}
                    }
                    // Everything read again, fresh.
                    want = overlay.served();
                }
                None => {
                    return Prefetched::Answered(Answer::clean(conflict.into_answer()), total);
                }
            },
        }
    }
}

struct Processed {
    response: Vec<u8>,
    items: Vec<ItemSummary>,
    /// Store and internal failures, for the operator.
    incidents: Vec<Incident>,
    /// Why the request was refused before the engine (batch cap).
    refusal: Option<String>,
    /// The server-to-client messages its committed changes call for.
    pushes: Vec<kmipd_ops::push::Push>,
    /// Whether `items` are durable already (in the store's journal, with the commit).
    audited: bool,
}

/// Batch cap, engine; the items to audit. Blocking: the engine's store commit waits for its
/// fsync. An undecodable request is answered Invalid Message without the engine.
fn process(
    engine: &Engine,
    principal: &Principal,
    decoded: Result<Ttlv, kmipd_ttlv::DecodeError>,
    max_batch: usize,
) -> Processed {
    let (request, answer, refusal) = match decoded {
        Ok(tree) => {
            let batch = batch_len(&tree);
            if batch > max_batch {
                let version = request_version(&tree).unwrap_or(ProtocolVersion::V1_0);
                let msg = format!("{batch} batch items exceed the limit of {max_batch}");
                let now = engine.config().clock.now();
                let response = Answer::clean(error_response(version, &msg, now));
                // Recorded as one refused item, not as items that never ran.
                let empty = Ttlv {
                    tag: tag::REQUEST_MESSAGE,
                    value: Value::Structure(Vec::new()),
                };
                (empty, response, Some(msg))
            } else {
                let answer = engine.handle(principal, &tree);
                (tree, answer, None)
            }
        }
        Err(e) => {
            debug!(error = %e, "undecodable request: answering Invalid Message");
            let response = Answer::clean(engine.undecodable_response());
            let empty = Ttlv {
                tag: tag::REQUEST_MESSAGE,
                value: Value::Structure(Vec::new()),
            };
            (empty, response, None)
        }
    };
    Processed {
        refusal,
        ..finish(&request, answer)
    }
}

/// The items to audit, the encoded answer and the incidents of a completed request.
fn finish(request: &Ttlv, answer: Answer) -> Processed {
    let items = audit::summarize(request, &answer.response);
    finish_summarized(answer, items)
}

/// [`finish`] with the items summarized already.
fn finish_summarized(answer: Answer, items: Vec<ItemSummary>) -> Processed {
    let response = kmipd_ttlv::encode_to_vec(&answer.response).unwrap_or_default();
    Processed {
        response,
        items,
        incidents: answer.incidents,
        refusal: None,
        pushes: answer.pushes,
        audited: false,
    }
}

/// The number of batch items in a request message.
fn batch_len(request: &Ttlv) -> usize {
    children(request)
        .iter()
        .filter(|c| c.tag == tag::BATCH_ITEM)
        .count()
}

fn children(t: &Ttlv) -> &[Ttlv] {
    match &t.value {
        Value::Structure(c) => c,
        _ => &[],
    }
}

fn child(t: &Ttlv, tag: kmipd_ttlv::Tag) -> Option<&Ttlv> {
    children(t).iter().find(|c| c.tag == tag)
}

fn request_version(request: &Ttlv) -> Option<ProtocolVersion> {
    let header = child(request, tag::REQUEST_HEADER)?;
    ProtocolVersion::from_ttlv(child(header, tag::PROTOCOL_VERSION)?).ok()
}

/// A one-item Invalid Message response (for refusals the engine does not see), stamped `now`
/// (the engine's clock).
pub(super) fn error_response(version: ProtocolVersion, message: &str, now: i64) -> Ttlv {
    let response = ResponseMessage {
        header: ResponseHeader {
            protocol_version: version,
            time_stamp: now,
            client_correlation_value: None,
            server_correlation_value: None,
            batch_count: 1,
        },
        items: vec![ResponseBatchItem {
            operation: None,
            unique_batch_item_id: None,
            result_status: result_status::OPERATION_FAILED,
            result_reason: Some(result_reason::INVALID_MESSAGE),
            result_message: Some(message.to_owned()),
            asynchronous_correlation_value: None,
            payload: None,
        }],
    };
    response.to_ttlv()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmipd_ttlv::Limits;

    #[test]
    fn error_response_is_a_readable_kmip_response() {
        let bytes =
            kmipd_ttlv::encode_to_vec(&error_response(ProtocolVersion::new(1, 4), "too big", 7))
                .unwrap();
        let tree = kmipd_ttlv::decode(&bytes, &Limits::default()).unwrap();
        let r = ResponseMessage::from_ttlv(&tree).unwrap();
        assert_eq!(r.header.protocol_version, ProtocolVersion::new(1, 4));
        assert_eq!(r.header.time_stamp, 7);
        assert_eq!(r.items.len(), 1);
        assert_eq!(
            r.items[0].result_reason,
            Some(result_reason::INVALID_MESSAGE)
        );
        let empty = Ttlv {
            tag: tag::REQUEST_MESSAGE,
            value: Value::Structure(Vec::new()),
        };
        let s = audit::summarize(&empty, &tree);
        assert_eq!(s[0].status, "OperationFailed");
        assert_eq!(s[0].reason.as_deref(), Some("InvalidMessage"));
    }
}
