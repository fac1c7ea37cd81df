//! The commit pipeline of [`SledStore`](crate::SledStore): an **applier** thread and a **syncer** thread per
//! store (the pattern of the server's audit log writer).
//!
//! ```text
//! caller (commit_then)        applier thread                    syncer thread
//! encode records      ──mpsc──▶ take ≤ MAX_BATCH queued ──mpsc──▶ take everything handed over
//! (outside any lock)            one sled transaction +            one fdatasync of the live
//! return                        one WAL frame (apply_batch),      WAL segments (sync_wal)
//!                               then the in-memory index          done(Ok) / done(Err)
//!                               failed commits: done(Err)
//! ```
//!
//! While the syncer runs its `fdatasync`, the applier applies and appends the next batch: the
//! two stages overlap, and everything that queued during one stage is covered by the next
//! round of it (group commit). No committer parks on a shared condition variable: a caller of
//! the blocking `commit` waits on its own channel and is the only thread woken for it.
//!
//! **Completions.** Every commit carries a [`Completion`]; it is called exactly once, on the
//! applier thread (the commit failed to apply), on the syncer thread (after the sync, or its
//! failure), or on the caller's thread (an encoding error, a locked or closed store). If it is
//! dropped without being called (a thread died, the store went away) its `Drop` calls it
//! with an error: a completion is never lost. Callbacks run on the pipeline threads, so they
//! must be quick and must not call back into the store (the blocking `commit` and the server
//! only send on a channel).
//!
//! **Barriers.** [`ToApplier::Barrier`] is answered once every commit queued before it has
//! been applied (and journalled for a running backup). A backup's cut and a KEK switch take
//! the store's gate exclusively and then drain the applier with a barrier: `commit_then`
//! encodes and enqueues under the gate held shared, so every commit encoded before the
//! exclusive section is in sled when it begins (the same guarantee the gate gave when
//! callers applied their own commits).
//!
//! **Shutdown.** Dropping the store drops the only sender: the applier applies what is still
//! queued and returns, which closes the syncer's channel; the syncer syncs what it was handed,
//! calls every completion and returns. Both are joined before the final checkpoint.

use std::collections::BTreeSet;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};

use super::commit::{Failure, Op, Prepared, apply, encode_payload, set_frame_number};
use super::durable::Durability;
use super::index::MemIndex;
use crate::wal;
use crate::{CommitDone, StoreError};

/// At most this many commits are applied as one sled transaction and one WAL frame.
pub(super) const MAX_BATCH: usize = 1024;

/// The completion of one commit: calls `done` exactly once (with an error if dropped unused).
pub(crate) struct Completion(Option<CommitDone>);

impl Completion {
    pub(crate) fn new(done: CommitDone) -> Completion {
        Completion(Some(done))
    }

    /// Calls the callback with the outcome.
    pub(crate) fn complete(mut self, result: Result<(), StoreError>) {
        if let Some(done) = self.0.take() {
            done(result);
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            done(Err(StoreError::Backend(
                "the store shut down before this commit completed".to_owned(),
            )));
        }
    }
}

/// What the applier thread receives.
pub(super) enum ToApplier {
    /// One commit's encoded changes (never empty) and its completion.
    Commit(Vec<Prepared>, Completion),
    /// Answered once everything queued before it is applied.
    Barrier(Sender<()>),
}

/// What the applier owns: the trees a commit writes, the in-memory index, the WAL and the
/// backup journal.
pub(super) struct Applier {
    pub(super) objects: sled::Tree,
    pub(super) refs: sled::Tree,
    pub(super) index: Arc<RwLock<MemIndex>>,
    pub(super) durable: Arc<Durability>,
    pub(super) journal: Arc<Mutex<Option<BTreeSet<String>>>>,
}

impl Applier {
    /// The applier thread: returns once every sender is gone and the queue is empty; the
    /// syncer's channel closes when `to_syncer` is dropped on return.
    pub(super) fn run(self, from: Receiver<ToApplier>, to_syncer: Sender<Vec<Completion>>) {
        let mut commits: Vec<(Vec<Prepared>, Completion)> = Vec::new();
        while let Ok(first) = from.recv() {
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    ToApplier::Commit(p, c) => commits.push((p, c)),
                    ToApplier::Barrier(answer) => {
                        self.apply_batch(std::mem::take(&mut commits), &to_syncer);
                        let _ = answer.send(());
                    }
                }
                if commits.len() < MAX_BATCH {
                    next = from.try_recv().ok();
                }
            }
            self.apply_batch(std::mem::take(&mut commits), &to_syncer);
        }
    }

    /// Applies one batch: one transaction and one frame for all of it; if that aborts (a
    /// failed expectation) each commit is retried alone, in order, so that only the culprit
    /// fails. A batch with a search condition ([`Op::NoOther`]) is applied commit by commit,
    /// the index updated after each, so that each search sees the commits before it.
    /// Failed commits complete here; the others go to the syncer.
    fn apply_batch(
        &self,
        batch: Vec<(Vec<Prepared>, Completion)>,
        to_syncer: &Sender<Vec<Completion>>,
    ) {
        if batch.is_empty() {
            return;
        }
        let one_by_one = batch
            .iter()
            .any(|(p, _)| p.iter().any(|p| matches!(p.op, Op::NoOther(_))));
        let results: Vec<Result<(), StoreError>> = if one_by_one {
            batch
                .iter()
                .map(|(p, _)| {
                    self.check_searches(p)?;
                    let mine: Vec<&Prepared> = p.iter().collect();
                    self.apply_and_append(&mine).map_err(Failure::into_error)?;
                    let mut index = self
                        .index
                        .write()
                        .map_err(|_| StoreError::Backend("index lock poisoned".into()))?;
                    for p in p {
                        index_one(&mut index, p);
                    }
                    Ok(())
                })
                .collect()
        } else {
            let all: Vec<&Prepared> = batch.iter().flat_map(|(p, _)| p.iter()).collect();
            match self.apply_and_append(&all) {
                Ok(()) => batch.iter().map(|_| Ok(())).collect(),
                Err(Failure::Aborted(e)) if batch.len() == 1 => vec![Err(e)],
                Err(Failure::Aborted(_)) => batch
                    .iter()
                    .map(|(p, _)| {
                        let mine: Vec<&Prepared> = p.iter().collect();
                        self.apply_and_append(&mine).map_err(Failure::into_error)
                    })
                    .collect(),
                Err(Failure::Other(msg)) => batch
                    .iter()
                    .map(|_| Err(StoreError::Backend(msg.clone())))
                    .collect(),
            }
        };
        if let Ok(mut j) = self.journal.lock()
            && let Some(set) = j.as_mut()
        {
            for ((p, _), r) in batch.iter().zip(&results) {
                if r.is_ok() {
                    set.extend(p.iter().filter(|p| p.writes()).map(|p| p.uid.clone()));
                }
            }
        }
        // The index before any completion: a commit's effects are all visible once it is
        // acknowledged. (A poisoned lock would mean a panic in here; the index is then left
        // as it is, and every later commit fails on the poison check above.)
        let mut index = if one_by_one {
            None
        } else {
            self.index.write().ok()
        };
        let mut applied = Vec::with_capacity(batch.len());
        for ((prepared, done), r) in batch.into_iter().zip(results) {
            match r {
                Ok(()) => {
                    if let Some(index) = index.as_mut() {
                        for p in &prepared {
                            index_one(index, p);
                        }
                    }
                    applied.push(done);
                }
                Err(e) => done.complete(Err(e)),
            }
        }
        drop(index);
        if !applied.is_empty() {
            // If the syncer is gone the completions come back in the error and their drop
            // reports the failure.
            let _ = to_syncer.send(applied);
        }
    }

    /// The search conditions of one commit, against the index and the records as they are
    /// (every commit before it applied and indexed): fails with [`StoreError::Conflict`] on
    /// the first object that satisfies a search's query and is not among what it saw. The
    /// candidates are the index's answer (every object when the query has no indexed
    /// filter); each is checked on its stored attributes (parsed, not unwrapped).
    fn check_searches(&self, commit: &[Prepared]) -> Result<(), StoreError> {
        for p in commit {
            let Op::NoOther(search) = &p.op else {
                continue;
            };
            let candidates = {
                let index = self
                    .index
                    .read()
                    .map_err(|_| StoreError::Backend("index lock poisoned".into()))?;
                if search.terms.is_empty() {
                    index.in_order()
                } else {
                    index.select(&search.terms)
                }
            };
            for uid in candidates {
                if search.seen.contains(&*uid) {
                    continue;
                }
                let Some(raw) = self
                    .objects
                    .get(uid.as_bytes())
                    .map_err(|e| StoreError::Backend(e.to_string()))?
                else {
                    continue;
                };
                let matches = match crate::record::parse(&uid, &raw) {
                    Ok(parsed) => search.query.matches(&parsed.into_shell()),
                    Err(_) => false,
                };
                if matches {
                    return Err(StoreError::Conflict {
                        uid: uid.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Under the commit mutex: applies `items` as one sled transaction and appends their
    /// writes as one WAL frame (same order). Items that are all expectations are checked in a
    /// transaction that writes nothing, and no frame is appended.
    fn apply_and_append(&self, items: &[&Prepared]) -> Result<(), Failure> {
        if let Some(p) = self.durable.poison.poisoned() {
            return Err(Failure::Other(p));
        }
        let other = |e: &dyn std::fmt::Display| Failure::Other(e.to_string());
        if !items.iter().any(|p| p.writes()) {
            return apply(&self.objects, &self.refs, items, None);
        }
        let mut payload = encode_payload(items).map_err(|e| other(&e))?;
        let wal = &self.durable.wal;
        let mut w = wal.lock().map_err(|e| other(&e))?;
        let n = w.next_frame;
        apply(&self.objects, &self.refs, items, Some(n))?;
        let appended = set_frame_number(&mut payload, n)
            .and_then(|()| wal::encode_frame(&payload))
            .and_then(|frame| Ok((wal.append(&mut w, &frame)?, frame.len())));
        let (size, len) = match appended {
            Ok(a) => a,
            Err(e) => {
                // sled has the changes in memory but the log may end in a partial frame: no
                // later frame could be trusted after it.
                let why = format!("WAL append failed, store poisoned: {e}");
                self.durable.poison.poison(why.clone());
                return Err(Failure::Other(why));
            }
        };
        w.next_frame = n.saturating_add(1);
        drop(w);
        self.durable
            .syncer
            .counters
            .wal_frames
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let before = size.saturating_sub(u64::try_from(len).unwrap_or(u64::MAX));
        if size >= wal::SEGMENT_LIMIT && before < wal::SEGMENT_LIMIT {
            self.durable.kick();
        }
        Ok(())
    }
}

/// Applies one applied change to the index.
fn index_one(index: &mut MemIndex, p: &Prepared) {
    match &p.op {
        Op::Put {
            sequence, terms, ..
        } => {
            // False only past 2^32 objects or terms, which memory bounds long before.
            let indexed = index.put(&p.uid, *sequence, terms);
            debug_assert!(indexed, "index full");
        }
        Op::Delete => index.remove(&p.uid),
        Op::Expect(_) | Op::NoOther(_) => {}
    }
}

/// The syncer thread: for everything handed over since its last round, one `fdatasync` of
/// the live WAL segments, then each completion. Returns once the applier is gone and the
/// channel is empty.
pub(super) fn run_syncer(durable: &Durability, from: Receiver<Vec<Completion>>) {
    while let Ok(mut round) = from.recv() {
        while let Ok(more) = from.try_recv() {
            round.extend(more);
        }
        let n = u64::try_from(round.len()).unwrap_or(u64::MAX);
        match durable.sync_wal(n) {
            Ok(()) => {
                for done in round {
                    done.complete(Ok(()));
                }
            }
            Err(why) => {
                for done in round {
                    done.complete(Err(StoreError::Backend(why.clone())));
                }
            }
        }
    }
}
