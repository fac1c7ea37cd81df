//! The commit pipeline of [`SledStore`](crate::SledStore): an **applier** thread and a **syncer** thread per
//! store (the pattern of the server's audit log writer).
//!
//! ```text
//! caller (commit_then)        applier thread                    syncer thread
//! encode records      ──mpsc──▶ take ≤ MAX_BATCH queued ──mpsc──▶ take everything handed over
//! (outside any lock)            check expectations against        one fdatasync of the live
//! return                        its in-memory view, one WAL       WAL segments (sync_wal),
//!                               frame for the batch, then the     then the frames into sled
//!                               pending records and the index     (plain inserts), then
//!                               failed commits: done(Err)         done(Ok) / done(Err)
//! ```
//!
//! While the syncer runs its `fdatasync`, the applier checks and appends the next batch: the
//! two stages overlap, and everything that queued during one stage is covered by the next
//! round of it (group commit). No committer parks on a shared condition variable: a caller of
//! the blocking `commit` waits on its own channel and is the only thread woken for it.
//!
//! **Why sled is written after the sync, without a transaction.** The WAL frame is what makes
//! a batch atomic and durable; sled only holds its result. Writing a frame into sled once the
//! frame is durable means that nothing sled may write to disk on its own (a full log buffer,
//! a checkpoint's flush running beside the syncer) belongs to a commit that could still be
//! lost: a crash leaves sled with every change of a frame, some of them, or none, and the
//! replay at open completes it from the WAL (`durable.rs`, "Recovery"). sled's transactions
//! each sealed and wrote sled's log buffer (about 100 µs of CPU each against about 20 µs for
//! the same plain inserts: `docs/performance.md`).
//!
//! **Pending records.** Between its frame's append and its writes into sled, a commit's
//! records are in [`Pending`] (uid → the newest record of a frame not yet in sled, or its
//! deletion), which every read consults before sled: a read sees a commit as soon as its
//! frame is appended, as it did when the applier wrote sled itself. The applier checks
//! expectations ([`Op::Expect`], the records a search condition reads) against the commits of
//! its batch so far, then `Pending`, then sled. The syncer removes a frame's entries once they
//! are in sled (unless a later frame replaced them), so `Pending` holds at most the frames of
//! one or two sync rounds.
//!
//! **Completions.** Every commit carries a [`Completion`]; it is called exactly once, on the
//! applier thread (the commit failed its checks), on the syncer thread (after the sync and
//! sled's writes, or their failure), or on the caller's thread (an encoding error, a locked
//! or closed store). If it is dropped without being called (a thread died, the store went
//! away) its `Drop` calls it with an error: a completion is never lost. Callbacks run on the
//! pipeline threads, so they must be quick and must not call back into the store (the
//! blocking `commit` and the server only send on a channel). An acknowledged commit is in
//! sled.
//!
//! **Barriers.** [`ToApplier::Barrier`] is passed on to the syncer, which answers it once
//! every commit queued before it is in sled (and journalled for a running backup). A backup's
//! cut and a KEK switch take the store's gate exclusively and then drain the pipeline with a
//! barrier: `commit_then` encodes and enqueues under the gate held shared, so every commit
//! encoded before the exclusive section is in sled when it begins.
//!
//! **Shutdown.** Dropping the store drops the only sender: the applier handles what is still
//! queued and returns, which closes the syncer's channel; the syncer syncs and writes what it
//! was handed, calls every completion and returns. Both are joined before the final
//! checkpoint.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};

use sled::IVec;

use super::commit::{
    Failure, Op, Prepared, Write, apply_writes, encode_payload, revision_of, set_frame_number,
};
use super::durable::Durability;
use super::index::MemIndex;
use crate::wal;
use crate::{CommitDone, StoreError};

/// At most this many commits are checked together and appended as one WAL frame.
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
    /// Answered (by the syncer) once everything queued before it is in sled.
    Barrier(Sender<()>),
}

/// What the syncer thread receives.
pub(super) enum ToSyncer {
    /// Commits that passed their checks: the frame that holds their writes (`None`: they
    /// wrote nothing, only expectations) and those writes, in order.
    Batch {
        frame: Option<u64>,
        writes: Vec<Write>,
        done: Vec<Completion>,
    },
    /// Answered once every batch before it is in sled.
    Barrier(Sender<()>),
}

/// The records of frames appended but not yet written into sled (module docs): uid → (the
/// frame, the record or `None` for a deletion). Consulted by every read before sled.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    map: RwLock<HashMap<String, (u64, Option<IVec>)>>,
}

impl Pending {
    /// The pending state of `uid`: `Some(None)` if a pending frame deletes it, `None` if no
    /// pending frame touches it (sled has its latest state).
    pub(crate) fn get(&self, uid: &str) -> Result<Option<Option<IVec>>, StoreError> {
        let map = self
            .map
            .read()
            .map_err(|_| StoreError::Backend("pending records lock poisoned".into()))?;
        if map.is_empty() {
            return Ok(None);
        }
        Ok(map.get(uid).map(|(_, r)| r.clone()))
    }

    /// Frame `frame` was appended with these writes.
    fn publish(&self, frame: u64, writes: &[Write]) {
        if let Ok(mut map) = self.map.write() {
            for (uid, record) in writes {
                map.insert(uid.clone(), (frame, record.clone()));
            }
        }
    }

    /// Frame `frame`'s writes are in sled: its entries go, unless a later frame replaced them.
    fn retire(&self, frame: u64, writes: &[Write]) {
        if let Ok(mut map) = self.map.write() {
            for (uid, _) in writes {
                if map.get(uid).is_some_and(|(f, _)| *f == frame) {
                    map.remove(uid);
                }
            }
        }
    }
}

/// What the applier owns: the trees it reads, the pending records, the in-memory index and
/// the WAL.
pub(super) struct Applier {
    pub(super) objects: sled::Tree,
    pub(super) pending: Arc<Pending>,
    pub(super) index: Arc<RwLock<MemIndex>>,
    pub(super) durable: Arc<Durability>,
}

/// Commits of a batch that passed their checks and wait for their frame.
#[derive(Default)]
struct Staged {
    commits: Vec<(Vec<Prepared>, Completion)>,
    /// The newest record each staged commit wrote (`None`: deleted), for the checks of the
    /// commits after it.
    latest: HashMap<String, Option<IVec>>,
}

impl Staged {
    fn add(&mut self, prepared: Vec<Prepared>, done: Completion) {
        for p in &prepared {
            match &p.op {
                Op::Put { record, .. } => {
                    self.latest.insert(p.uid.clone(), Some(record.clone()));
                }
                Op::Delete => {
                    self.latest.insert(p.uid.clone(), None);
                }
                Op::Expect(_) | Op::NoOther(_) => {}
            }
        }
        self.commits.push((prepared, done));
    }
}

impl Applier {
    /// The applier thread: returns once every sender is gone and the queue is empty; the
    /// syncer's channel closes when `to_syncer` is dropped on return.
    pub(super) fn run(self, from: Receiver<ToApplier>, to_syncer: Sender<ToSyncer>) {
        let mut commits: Vec<(Vec<Prepared>, Completion)> = Vec::new();
        while let Ok(first) = from.recv() {
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    ToApplier::Commit(p, c) => commits.push((p, c)),
                    ToApplier::Barrier(answer) => {
                        self.apply_batch(std::mem::take(&mut commits), &to_syncer);
                        let _ = to_syncer.send(ToSyncer::Barrier(answer));
                    }
                }
                if commits.len() < MAX_BATCH {
                    next = from.try_recv().ok();
                }
            }
            self.apply_batch(std::mem::take(&mut commits), &to_syncer);
        }
    }

    /// Checks each commit of a batch in order against the state the commits before it left
    /// (a failed check completes that commit alone), then appends one frame for those that
    /// passed. A commit with a search condition ([`Op::NoOther`]) first has the commits
    /// before it appended and indexed, so that its search sees them.
    fn apply_batch(&self, batch: Vec<(Vec<Prepared>, Completion)>, to_syncer: &Sender<ToSyncer>) {
        let mut staged = Staged::default();
        for (prepared, done) in batch {
            let searches = prepared.iter().any(|p| matches!(p.op, Op::NoOther(_)));
            if searches && !staged.commits.is_empty() {
                self.append(std::mem::take(&mut staged), to_syncer);
            }
            match self.check(&prepared, &staged) {
                Ok(()) => staged.add(prepared, done),
                Err(e) => done.complete(Err(e)),
            }
        }
        self.append(staged, to_syncer);
    }

    /// The record of `uid` as the commits before this one left it: staged in this batch,
    /// else pending, else in sled.
    fn current(&self, uid: &str, staged: &Staged) -> Result<Option<IVec>, StoreError> {
        if let Some(r) = staged.latest.get(uid) {
            return Ok(r.clone());
        }
        if let Some(r) = self.pending.get(uid)? {
            return Ok(r);
        }
        self.objects
            .get(uid.as_bytes())
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    /// A commit's conditions: each [`Op::Expect`] against the uid's current record, each
    /// search ([`Op::NoOther`]) against the index and the current records. Fails with
    /// [`StoreError::Conflict`] on the first that does not hold.
    fn check(&self, commit: &[Prepared], staged: &Staged) -> Result<(), StoreError> {
        if let Some(p) = self.durable.poison.poisoned() {
            return Err(StoreError::Backend(p));
        }
        for p in commit {
            match &p.op {
                Op::Expect(want) => {
                    let now = self.current(&p.uid, staged)?.map(|raw| revision_of(&raw));
                    if now != *want {
                        return Err(StoreError::Conflict { uid: p.uid.clone() });
                    }
                }
                Op::NoOther(_) => self.check_search(p, staged)?,
                Op::Put { .. } | Op::Delete => {}
            }
        }
        Ok(())
    }

    /// A search condition, against the index and the records as they are (every commit
    /// before it appended and indexed): fails with [`StoreError::Conflict`] on the first
    /// object that satisfies the search's query and is not among what it saw. The candidates
    /// are the index's answer (every object when the query has no indexed filter); each is
    /// checked on its stored attributes (parsed, not unwrapped).
    fn check_search(&self, p: &Prepared, staged: &Staged) -> Result<(), StoreError> {
        let Op::NoOther(search) = &p.op else {
            return Ok(());
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
            let Some(raw) = self.current(&uid, staged)? else {
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
        Ok(())
    }

    /// Appends the staged commits' writes as one WAL frame (none if they only expected),
    /// publishes them as pending, indexes them and hands them to the syncer. A failed append
    /// poisons the store and fails them all.
    fn append(&self, staged: Staged, to_syncer: &Sender<ToSyncer>) {
        let commits = staged.commits;
        if commits.is_empty() {
            return;
        }
        let fail = |commits: Vec<(Vec<Prepared>, Completion)>, e: &StoreError| {
            for (_, done) in commits {
                done.complete(Err(match e {
                    StoreError::Backend(m) => StoreError::Backend(m.clone()),
                    other => StoreError::Backend(other.to_string()),
                }));
            }
        };
        let frame = match self.append_frame(&commits) {
            Ok(f) => f,
            Err(e) => return fail(commits, &e.into_error()),
        };
        // The index before any completion: a commit's effects are all visible once it is
        // acknowledged. (A poisoned lock would mean a panic in here; the index is then left
        // as it is.)
        if let Ok(mut index) = self.index.write() {
            for p in commits.iter().flat_map(|(p, _)| p) {
                index_one(&mut index, p);
            }
        }
        let mut writes = Vec::new();
        let mut done = Vec::with_capacity(commits.len());
        for (prepared, d) in commits {
            for p in prepared {
                match p.op {
                    Op::Put { record, .. } => writes.push((p.uid, Some(record))),
                    Op::Delete => writes.push((p.uid, None)),
                    Op::Expect(_) | Op::NoOther(_) => {}
                }
            }
            done.push(d);
        }
        if let Some(n) = frame {
            self.pending.publish(n, &writes);
        }
        // If the syncer is gone the completions come back in the error and their drop
        // reports the failure.
        let _ = to_syncer.send(ToSyncer::Batch {
            frame,
            writes,
            done,
        });
    }

    /// Under the commit mutex: appends the writes of `commits` as one WAL frame (same order)
    /// and returns its number; `None` (nothing appended) when they write nothing.
    fn append_frame(
        &self,
        commits: &[(Vec<Prepared>, Completion)],
    ) -> Result<Option<u64>, Failure> {
        if let Some(p) = self.durable.poison.poisoned() {
            return Err(Failure::Other(p));
        }
        let other = |e: &dyn std::fmt::Display| Failure::Other(e.to_string());
        let items: Vec<&Prepared> = commits
            .iter()
            .flat_map(|(p, _)| p)
            .filter(|p| p.writes())
            .collect();
        if items.is_empty() {
            return Ok(None);
        }
        let mut payload = encode_payload(&items).map_err(Failure::Aborted)?;
        let wal = &self.durable.wal;
        let mut w = wal.lock().map_err(|e| other(&e))?;
        let n = w.next_frame;
        let appended = set_frame_number(&mut payload, n)
            .and_then(|()| wal::encode_frame(&payload))
            .and_then(|frame| Ok((wal.append(&mut w, &frame)?, frame.len())));
        let (size, len) = match appended {
            Ok(a) => a,
            Err(e) => {
                // The log may end in a partial frame: no later frame could be trusted after it.
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
        Ok(Some(n))
    }
}

/// Applies one appended change to the index.
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

/// What the syncer owns: sled's trees, the pending records, the backup journal.
pub(super) struct Syncer {
    pub(super) objects: sled::Tree,
    pub(super) refs: sled::Tree,
    pub(super) pending: Arc<Pending>,
    pub(super) durable: Arc<Durability>,
    pub(super) journal: Arc<Mutex<Option<BTreeSet<String>>>>,
}

impl Syncer {
    /// The syncer thread: for everything handed over since its last round, one `fdatasync`
    /// of the live WAL segments, then each frame's writes into sled, then each completion
    /// and barrier. Returns once the applier is gone and the channel is empty.
    pub(super) fn run(self, from: Receiver<ToSyncer>) {
        while let Ok(first) = from.recv() {
            let mut round = vec![first];
            while let Ok(more) = from.try_recv() {
                round.push(more);
            }
            let commits = round
                .iter()
                .map(|m| match m {
                    ToSyncer::Batch { done, .. } => done.len(),
                    ToSyncer::Barrier(_) => 0,
                })
                .sum::<usize>();
            let n = u64::try_from(commits).unwrap_or(u64::MAX);
            let outcome = self
                .durable
                .sync_wal(n)
                .and_then(|()| self.write_into_sled(&round));
            for m in round {
                match m {
                    ToSyncer::Batch { done, .. } => {
                        for d in done {
                            d.complete(match &outcome {
                                Ok(()) => Ok(()),
                                Err(why) => Err(StoreError::Backend(why.clone())),
                            });
                        }
                    }
                    // A failure drops the answer: the barrier's caller gets an error.
                    ToSyncer::Barrier(answer) => {
                        if outcome.is_ok() {
                            let _ = answer.send(());
                        }
                    }
                }
            }
        }
    }

    /// The round's frames (synced) into sled, in order, each then journalled for a running
    /// backup, retired from the pending records and reported to checkpoints. A sled error
    /// poisons the store (the frames stay pending and in the WAL, which the next open
    /// replays).
    fn write_into_sled(&self, round: &[ToSyncer]) -> Result<(), String> {
        for m in round {
            let ToSyncer::Batch {
                frame: Some(n),
                writes,
                ..
            } = m
            else {
                continue;
            };
            if let Err(e) = apply_writes(&self.objects, &self.refs, writes, *n) {
                let why = format!("writing into sled failed, store poisoned: {e}");
                self.durable.poison.poison(why.clone());
                return Err(why);
            }
            // After sled's writes: a backup's scan that began before them sees them, or
            // the journal has them.
            if let Ok(mut j) = self.journal.lock()
                && let Some(set) = j.as_mut()
            {
                set.extend(writes.iter().map(|(uid, _)| uid.clone()));
            }
            self.pending.retire(*n, writes);
            self.durable.applied_through(*n);
        }
        Ok(())
    }
}
