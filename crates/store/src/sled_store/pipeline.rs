//! The commit thread of [`SledStore`](crate::SledStore): one thread per store takes every
//! queued commit and runs a **round** for all of them (group commit).
//!
//! ```text
//! caller (commit_then)        committer thread, one round
//! encode records      ──mpsc──▶ take ≤ MAX_BATCH queued commits
//! (outside any lock)            check each against the round's earlier writes, then sled;
//! return                        render its journal entry, if any
//!                               one WAL frame for those that passed; the in-memory index
//!                               one fdatasync of the live WAL segments (sync_wal)
//!                               the frames into sled (plain inserts, frame number last)
//!                               the journal's lines to its file (no sync)
//!                               done(Ok) / done(Err), barriers answered
//! ```
//!
//! Everything that queues while a round waits for its `fdatasync` is the next round: under
//! load one sync covers many commits. No committer parks on a shared condition variable: a
//! caller of the blocking `commit` waits on its own channel and is the only thread woken for
//! it. One thread rather than an applier and a syncer handing batches to each other: a hand-off
//! (a futex wake and a context switch) cost more CPU than the overlap of one round's checks
//! with the previous round's sync saved (`docs/performance.md`).
//!
//! **Why sled is written after the sync, without a transaction.** The WAL frame is what makes
//! a batch atomic and durable; sled only holds its result. Writing a frame into sled once the
//! frame is durable means that nothing sled may write to disk on its own (a full log buffer,
//! a checkpoint's flush running beside the round) belongs to a commit that could still be
//! lost: a crash leaves sled with every change of a frame, some of them, or none, and the
//! replay at open completes it from the WAL (`durable.rs`, "Recovery"). sled's transactions
//! each sealed and wrote sled's log buffer (about 100 µs of CPU each against about 20 µs for
//! the same plain inserts: `docs/performance.md`).
//!
//! **Reads and checks.** Reads go to sled, which holds every acknowledged commit and nothing
//! that is not durable, or to the cache of decoded objects, which the round updates after
//! sled's writes and before its completions (`cache.rs`). The committer checks each commit's expectations ([`Op::Expect`], and
//! the records a search condition ([`Op::NoOther`]) reads) against the record as the round's
//! earlier commits left it, else sled's: the rounds before it are all in sled.
//!
//! **Completions.** Every commit carries a [`Completion`]; it is called exactly once, on the
//! committer thread (after its checks failed, or after the round's sync and sled's writes, or
//! their failure), or on the caller's thread (an encoding error, a locked or closed store). If
//! it is dropped without being called (the thread died, the store went away) its `Drop` calls
//! it with an error: a completion is never lost. Callbacks run on the committer thread, so they
//! must be quick and must not call back into the store (the blocking `commit` and the server
//! only send on a channel). An acknowledged commit is in sled.
//!
//! **Journal.** With a [`Journal`](crate::Journal) attached (`SledStore::attach_journal`), a
//! commit may carry one opaque entry, and an entry may come alone
//! (`SledStore::journal_then`). The committer renders it in [`Committer::take`] once the
//! commit's checks passed (a failed check drops it unrendered), so the journal's order is the
//! order of the commits in the frames; the round's lines go in its frame (a frame may carry
//! only lines), are written to the journal's file after the round's `fdatasync` and sled's
//! writes, before the frames are reported applied (a checkpoint waits for that, then syncs the
//! journal before it deletes the frames' segment), and a failed write poisons the store. Rendering is the only
//! work the journal adds to the serial path (a few µs per record; the caller summarized it).
//! [`ToCommitter::Run`] ends a round and runs a closure after it (the journal's rotation).
//!
//! **Barriers.** [`ToCommitter::Barrier`] is answered at the end of the round that took it:
//! every commit queued before it is then in sled (and journalled for a running backup). A
//! backup's cut and a KEK switch take the store's gate exclusively and then drain the queue
//! with a barrier: `commit_then` encodes and enqueues under the gate held shared, so every
//! commit encoded before the exclusive section is in sled when it begins.
//!
//! **Shutdown.** Dropping the store drops the only sender: the committer runs rounds for what
//! is still queued, calls every completion and returns; it is joined before the final
//! checkpoint.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};

use sled::IVec;

use super::cache::{ObjectCache, Update};
use super::commit::{
    Failure, Op, Prepared, Write, apply_writes, encode_payload, revision_of, set_frame_number,
};
use super::durable::Durability;
use super::index::MemIndex;
use crate::wal;
use crate::{CommitDone, JournalEntry, StoreError};

/// At most this many commits are taken into one round.
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

/// What the committer thread receives.
pub(super) enum ToCommitter {
    /// One commit's encoded changes, its journal entry, and its completion. Never both empty.
    Commit(Vec<Prepared>, Option<JournalEntry>, Completion),
    /// Answered once everything queued before it is in sled.
    Barrier(Sender<()>),
    /// Ends the round; run on the committer thread once the round is finished (its journal
    /// lines written), with the reason the store is poisoned, if it is. How the journal's
    /// owner acts between two rounds (an audit log's rotation).
    Run(Box<dyn FnOnce(Option<String>) + Send>),
}

/// What the committer owns: sled's trees, the in-memory index, the WAL and the backup
/// journal.
pub(super) struct Committer {
    pub(super) objects: sled::Tree,
    pub(super) refs: sled::Tree,
    pub(super) index: Arc<RwLock<MemIndex>>,
    pub(super) durable: Arc<Durability>,
    pub(super) journal: Arc<Mutex<Option<BTreeSet<String>>>>,
    /// The cache of decoded objects, updated once a round's writes are in sled (`cache.rs`).
    pub(super) cache: Arc<ObjectCache>,
}

/// One round: the commits taken, where each stands, and what the round writes.
#[derive(Default)]
struct Round {
    /// Checked, not yet in a frame.
    staged: Vec<(Vec<Prepared>, Completion)>,
    /// The journal lines of the staged commits, in their order (for their frame).
    staged_lines: Vec<u8>,
    /// The journal lines of the frames appended, in order: written to the journal after the
    /// round's sync.
    lines: Vec<u8>,
    /// The newest record each checked commit of the round wrote (`None`: deleted), for the
    /// checks of the commits after it.
    latest: HashMap<String, Option<IVec>>,
    /// The frames appended, with their writes in order.
    frames: Vec<(u64, Vec<Write>)>,
    /// Commits in those frames (or that only expected), to complete after the sync.
    done: Vec<Completion>,
    barriers: Vec<Sender<()>>,
    /// What the frames' writes do to the object cache, in order.
    cache: Vec<(String, Update)>,
}

impl Committer {
    /// The committer thread: returns once every sender is gone and the queue is empty.
    pub(super) fn run(self, from: Receiver<ToCommitter>) {
        while let Ok(first) = from.recv() {
            let mut round = Round::default();
            let mut taken = 0usize;
            let mut next = Some(first);
            let mut then = None;
            while let Some(msg) = next.take() {
                match msg {
                    ToCommitter::Commit(p, entry, c) => {
                        self.take(p, entry, c, &mut round);
                        taken = taken.saturating_add(1);
                    }
                    ToCommitter::Barrier(answer) => round.barriers.push(answer),
                    ToCommitter::Run(f) => {
                        then = Some(f);
                        break;
                    }
                }
                if taken < MAX_BATCH {
                    next = from.try_recv().ok();
                }
            }
            self.append(&mut round);
            self.finish(round);
            if let Some(f) = then {
                f(self.durable.poison.poisoned());
            }
        }
    }

    /// Checks one commit against the state the round's earlier commits left (a failed check
    /// completes it alone) and stages it. A commit with a search condition ([`Op::NoOther`])
    /// first has the staged commits appended and indexed, so that its search sees them.
    ///
    /// Its journal entry, if any, is rendered here, once the checks passed (a commit that
    /// fails them drops its entry unrendered), so the journal's order is the order of the
    /// commits in the frames.
    fn take(
        &self,
        prepared: Vec<Prepared>,
        entry: Option<JournalEntry>,
        done: Completion,
        round: &mut Round,
    ) {
        let searches = prepared.iter().any(|p| matches!(p.op, Op::NoOther(_)));
        if searches && !round.staged.is_empty() {
            self.append(round);
        }
        if let Err(e) = self.check(&prepared, &round.latest) {
            return done.complete(Err(e));
        }
        if let Some(entry) = entry {
            let Some(journal) = self.durable.journal.get() else {
                return done.complete(Err(StoreError::Backend(
                    "a journal entry, but no journal is attached".to_owned(),
                )));
            };
            let mark = round.staged_lines.len();
            if let Err(e) = journal.render(entry, &mut round.staged_lines) {
                round.staged_lines.truncate(mark);
                return done.complete(Err(StoreError::Backend(format!(
                    "journal entry not rendered: {e}"
                ))));
            }
        }
        for p in &prepared {
            match &p.op {
                Op::Put { record, .. } => {
                    round.latest.insert(p.uid.clone(), Some(record.clone()));
                }
                Op::Delete => {
                    round.latest.insert(p.uid.clone(), None);
                }
                Op::Expect(_) | Op::NoOther(_) => {}
            }
        }
        round.staged.push((prepared, done));
    }

    /// The record of `uid` as the commits before this one left it: written earlier in this
    /// round, else in sled.
    fn current(
        &self,
        uid: &str,
        latest: &HashMap<String, Option<IVec>>,
    ) -> Result<Option<IVec>, StoreError> {
        if let Some(r) = latest.get(uid) {
            return Ok(r.clone());
        }
        self.objects
            .get(uid.as_bytes())
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    /// A commit's conditions: each [`Op::Expect`] against the uid's current record, each
    /// search ([`Op::NoOther`]) against the index and the current records. Fails with
    /// [`StoreError::Conflict`] on the first that does not hold.
    fn check(
        &self,
        commit: &[Prepared],
        latest: &HashMap<String, Option<IVec>>,
    ) -> Result<(), StoreError> {
        if let Some(p) = self.durable.poison.poisoned() {
            return Err(StoreError::Backend(p));
        }
        for p in commit {
            match &p.op {
                Op::Expect(want) => {
                    // Outside the round, the cache's revision when it has the uid: it is
                    // sled's between rounds (`cache.rs`).
                    let now = match (latest.contains_key(&p.uid), self.cache.revision(&p.uid)) {
                        (false, Some(r)) => Some(r),
                        _ => self.current(&p.uid, latest)?.map(|raw| revision_of(&raw)),
                    };
                    if now != *want {
                        return Err(StoreError::Conflict { uid: p.uid.clone() });
                    }
                }
                Op::NoOther(_) => self.check_search(p, latest)?,
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
    fn check_search(
        &self,
        p: &Prepared,
        latest: &HashMap<String, Option<IVec>>,
    ) -> Result<(), StoreError> {
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
            let Some(raw) = self.current(&uid, latest)? else {
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

    /// Appends the staged commits' writes as one WAL frame (none if they only expected) and
    /// indexes them; they then wait for the round's sync. A failed append poisons the store
    /// and fails them all.
    fn append(&self, round: &mut Round) {
        let commits = std::mem::take(&mut round.staged);
        let lines = std::mem::take(&mut round.staged_lines);
        if commits.is_empty() {
            return;
        }
        let frame = match self.append_frame(&commits, &lines) {
            Ok(f) => f,
            Err(e) => {
                let why = e.into_error().to_string();
                for (_, done) in commits {
                    done.complete(Err(StoreError::Backend(why.clone())));
                }
                return;
            }
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
        for (prepared, done) in commits {
            for p in prepared {
                match p.op {
                    Op::Put { record, cached, .. } => {
                        let update = cached.map_or(Update::Remove, Update::Put);
                        round.cache.push((p.uid.clone(), update));
                        writes.push((p.uid, Some(record)));
                    }
                    Op::Delete => {
                        round.cache.push((p.uid.clone(), Update::Remove));
                        writes.push((p.uid, None));
                    }
                    Op::Expect(_) | Op::NoOther(_) => {}
                }
            }
            round.done.push(done);
        }
        if let Some(n) = frame {
            round.frames.push((n, writes));
            round.lines.extend_from_slice(&lines);
        }
    }

    /// Under the commit mutex: appends the writes of `commits` and their journal `lines` as
    /// one WAL frame (same order) and returns its number; `None` (nothing appended) when they
    /// write nothing and have no lines.
    fn append_frame(
        &self,
        commits: &[(Vec<Prepared>, Completion)],
        lines: &[u8],
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
        if items.is_empty() && lines.is_empty() {
            return Ok(None);
        }
        let mut payload = encode_payload(&items, lines).map_err(|e| {
            // The lines advanced the journal's chain: no later line could follow them.
            if !lines.is_empty() {
                self.durable
                    .poison
                    .poison(format!("WAL frame not encoded, store poisoned: {e}"));
            }
            Failure::Aborted(e)
        })?;
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

    /// The end of a round: one `fdatasync` of the live WAL segments, the frames into sled,
    /// then every completion and barrier.
    fn finish(&self, round: Round) {
        let Round {
            frames,
            done,
            barriers,
            cache,
            lines,
            ..
        } = round;
        let outcome = if done.is_empty() && frames.is_empty() {
            Ok(())
        } else {
            let n = u64::try_from(done.len()).unwrap_or(u64::MAX);
            // The cache after sled and before any completion: an acknowledged commit is in
            // both (`cache.rs`); after a failure sled may hold part of the round.
            let epoch = self.cache.epoch();
            let written = self
                .durable
                .sync_wal(n)
                .and_then(|()| self.write_into_sled(&frames))
                .and_then(|()| self.write_journal(&lines))
                .map(|()| {
                    if let Some((n, _)) = frames.last() {
                        self.durable.applied_through(*n);
                    }
                });
            match &written {
                Ok(()) => self.cache.apply(epoch, cache),
                Err(_) => self.cache.clear(),
            }
            written
        };
        for d in done {
            d.complete(match &outcome {
                Ok(()) => Ok(()),
                Err(why) => Err(StoreError::Backend(why.clone())),
            });
        }
        // A failure drops the answers: the barriers' callers get an error.
        if outcome.is_ok() {
            for answer in barriers {
                let _ = answer.send(());
            }
        }
    }

    /// The round's journal lines (in synced frames) to the journal's file, once the frames
    /// are in sled and before they are reported applied: a checkpoint, which waits for that,
    /// syncs the journal before it deletes the frames' segment. So a record appears in the
    /// file when its change is visible, just before the commit is acknowledged. A failure
    /// poisons the store (the lines are in the WAL, and the next open hands them to the
    /// journal again).
    fn write_journal(&self, lines: &[u8]) -> Result<(), String> {
        if lines.is_empty() {
            return Ok(());
        }
        let Some(journal) = self.durable.journal.get() else {
            return Ok(());
        };
        journal.write(lines).map_err(|e| {
            let why = format!("journal write failed, store poisoned: {e}");
            self.durable.poison.poison(why.clone());
            why
        })
    }

    /// The round's frames (synced) into sled, in order, each then journalled for a running
    /// backup (the caller then writes the journal's lines and reports the frames applied to
    /// checkpoints). A sled error poisons the store (the frames are in
    /// the WAL, which the next open replays).
    fn write_into_sled(&self, frames: &[(u64, Vec<Write>)]) -> Result<(), String> {
        for (n, writes) in frames {
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
        }
        Ok(())
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
