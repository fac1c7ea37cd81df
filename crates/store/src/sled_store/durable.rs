//! Durability: what makes a successful commit survive a power cut — the write-ahead log,
//! group commit and checkpoints.
//!
//! **Commit.** The store's committer thread (`pipeline.rs`) checks a commit's conditions and
//! appends one frame to the current WAL segment (`wal.rs`) under the commit mutex; commits
//! queued together share one frame. It then runs one `fdatasync` of every live WAL segment
//! ([`Durability::sync_wal`]) for everything in its round, writes those frames into sled (plain inserts, each frame's number last, in
//! `refs` under key `0xFF`; [`Durability::applied_through`]), and completes the commits. That
//! `fdatasync` is the only I/O a commit waits for. sled only ever receives frames already
//! durable in the WAL.
//!
//! **Checkpoint** ([`Durability::checkpoint`]): a new segment is created; under the commit
//! mutex, appends switch to it; it waits until the committer has written every frame of the
//! older segments into sled; then sled's `flush()` and the fsyncs below
//! ([`FileSyncer::sync`]); then the older segments are deleted. Every frame of a deleted
//! segment was in sled before the flush began, so it is in sled's durable state. A background thread checkpoints every second when
//! anything was written, early when a segment passes 32 MiB, and the store checkpoints on
//! drop; every write that bypasses the WAL (metadata, KEK registration and rotation steps,
//! restore) ends with a checkpoint before it returns.
//!
//! **Why an fsync after sled's flush.** sled 0.34's `Db::flush` writes its buffers and ends
//! in `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` on Linux (upstream issue 1452).
//! That call starts and waits for the write-back of the page-cache range, but it does not
//! flush the drive's volatile write cache and does not write file metadata (a grown file
//! size, a new file's directory entry), so a flushed write can still be lost on power
//! failure. A checkpoint therefore calls `fdatasync` on sled's log file (`db`) — which also
//! issues the cache flush and persists the size — and `fsync`s every file sled created since
//! the last checkpoint (`blobs/*`, `snap.*`) and the directories that got new entries. That
//! list of files is sled 0.34.7's (`SLED_DIRS`), which is why `Cargo.toml` pins sled to
//! exactly that version, and a test fails when a store's directory holds any other file.
//!
//! **Recovery** (`SledStore::open_with`): the frames whose number is above the one sled
//! recorded are applied in order; those at or below it are skipped (sled has them); a
//! segment's torn tail, and everything after a gap in the numbering, was never acknowledged
//! and is ignored. Then a checkpoint and a fresh segment. `SyncStats` counts all of it.
//! Why that is atomic without sled transactions: sled is written only with frames already
//! durable in the WAL, so whatever part of a frame sled kept after a crash, the frame itself
//! is in the WAL; a frame's number is written after its changes, and sled recovers a prefix
//! of its log (the same property the frame numbers relied on when each frame was a sled
//! transaction), so a recorded number means all of that frame and the ones before it are
//! there; a frame above it is applied again whole, and each change of a frame is a whole
//! record or a deletion, so applying it again over some of its own changes gives the same
//! state.
//!
//! **Group commit.** While the committer runs one round's `fdatasync`, the next commits queue
//! up, and its next round covers all of them. So 64 writers share a handful of syncs, and no
//! committer parks on a shared condition variable (each blocking caller waits on its own
//! channel; see `pipeline.rs`). A frame appended before a checkpoint's segment
//! switch is covered either by its round's sync (its segment is still live: [`Wal::sync`] syncs
//! every live segment) or by the checkpoint (the segment leaves the live list only after
//! sled's flush and fsyncs).
//!
//! **A failed fsync poisons the store.** After an fsync error Linux may have dropped the dirty
//! pages, so a later successful fsync would not prove the earlier writes durable; every later
//! commit fails until the process restarts and recovers from what is on disk. The same for a
//! failed WAL append (the segment may end in a partial frame) and a failed checkpoint flush;
//! a poisoned store does not checkpoint any more (not even on drop), so the WAL stays as the
//! last acknowledged state left it.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use crate::Journal;
use crate::wal::{Wal, sync_dir};

/// Counters of what the durability layer did (for tests and the operator).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    /// Commits acknowledged as durable by a group sync.
    pub commits: u64,
    /// Group syncs run (the committer thread's rounds, each one `fdatasync` round over the live
    /// WAL segments); fewer than `commits` under concurrency.
    pub group_syncs: u64,
    /// `fdatasync` calls on WAL segments (one per group sync, two while a checkpoint runs).
    pub wal_fsyncs: u64,
    /// WAL frames appended: one per round of the committer thread (more when a commit with a
    /// search condition had the commits before it in the round appended first).
    pub wal_frames: u64,
    /// Checkpoints completed (sled flush + fsyncs, then older WAL segments deleted).
    pub checkpoints: u64,
    /// `fdatasync` calls on sled's log file (one per checkpoint).
    pub log_fsyncs: u64,
    /// `fsync` calls on other new files (blobs, snapshots).
    pub file_fsyncs: u64,
    /// `fsync` calls on directories.
    pub dir_fsyncs: u64,
    /// WAL frames applied to sled at open (commits sled had not flushed before a crash).
    pub replayed_frames: u64,
    /// WAL frames found at open that sled already had (skipped).
    pub skipped_frames: u64,
    /// WAL bytes ignored at open: a torn tail and anything after it (never acknowledged).
    pub discarded_bytes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    commits: AtomicU64,
    group_syncs: AtomicU64,
    wal_fsyncs: AtomicU64,
    pub(crate) wal_frames: AtomicU64,
    checkpoints: AtomicU64,
    log_fsyncs: AtomicU64,
    file_fsyncs: AtomicU64,
    dir_fsyncs: AtomicU64,
    pub(crate) replayed_frames: AtomicU64,
    pub(crate) skipped_frames: AtomicU64,
    pub(crate) discarded_bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> SyncStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SyncStats {
            commits: l(&self.commits),
            group_syncs: l(&self.group_syncs),
            wal_fsyncs: l(&self.wal_fsyncs),
            wal_frames: l(&self.wal_frames),
            checkpoints: l(&self.checkpoints),
            log_fsyncs: l(&self.log_fsyncs),
            file_fsyncs: l(&self.file_fsyncs),
            dir_fsyncs: l(&self.dir_fsyncs),
            replayed_frames: l(&self.replayed_frames),
            skipped_frames: l(&self.skipped_frames),
            discarded_bytes: l(&self.discarded_bytes),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// sled's log file, relative to the store directory: the only file sled 0.34.7 rewrites in
/// place, so the only one a checkpoint `fdatasync`s every time.
const SLED_LOG: &str = "db";

/// The directories a checkpoint scans for files sled created since the last one (`None`: the
/// store directory itself). Every file sled 0.34.7 writes is in one of them, and each, but
/// the log, is written once (`conf`, `snap.<16 hex digits>` renamed from its `.generating`
/// temporary, `blobs/<n>`), so fsyncing it once when it appears is enough. sled is pinned to
/// `=0.34.7` because of this: a sled that writes another file, or rewrites one of these in
/// place, would not be durable. [`sled_file`] names them, and a test fails when a store's
/// directory holds a file it does not know.
const SLED_DIRS: [Option<&str>; 2] = [None, Some("blobs")];

/// True when `rel` (a file's path relative to the store directory, `/`-separated) is one of
/// sled 0.34.7's files that [`FileSyncer`] makes durable (see [`SLED_DIRS`]).
#[cfg(test)]
pub(crate) fn sled_file(rel: &str) -> bool {
    let hex16 = |s: &str| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if rel == SLED_LOG || rel == "conf" {
        return true;
    }
    if let Some(snap) = rel.strip_prefix("snap.") {
        return hex16(snap.strip_suffix(".generating").unwrap_or(snap));
    }
    rel.strip_prefix("blobs/")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// fsyncs sled's files after sled's own flush.
#[derive(Debug)]
pub(crate) struct FileSyncer {
    dir: PathBuf,
    log: File,
    /// Files (relative to `dir`) already fsynced once; sled never rewrites them in place
    /// except the log.
    known: Mutex<BTreeSet<OsString>>,
    pub(crate) counters: Counters,
}

impl FileSyncer {
    /// Opens sled's log file in `dir` and makes the directory tree as it is now durable.
    pub(crate) fn new(dir: &Path) -> io::Result<FileSyncer> {
        let log = File::open(dir.join(SLED_LOG))?;
        let s = FileSyncer {
            dir: dir.to_owned(),
            log,
            known: Mutex::new(BTreeSet::new()),
            counters: Counters::default(),
        };
        s.sync_new_files()?;
        sync_dir(dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(s)
    }

    /// Makes everything sled applied so far durable (the heavy part of a checkpoint).
    pub(crate) fn sync(&self, db: &sled::Db) -> io::Result<()> {
        db.flush().map_err(io::Error::other)?;
        self.log.sync_data()?;
        bump(&self.counters.log_fsyncs);
        self.sync_new_files()
    }

    /// fsyncs files that appeared since the last call, then their directories.
    fn sync_new_files(&self) -> io::Result<()> {
        let mut known = self
            .known
            .lock()
            .map_err(|_| io::Error::other("file syncer lock poisoned"))?;
        for sub in SLED_DIRS {
            let dir = match sub {
                Some(s) => self.dir.join(s),
                None => self.dir.clone(),
            };
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut new = false;
            for e in entries {
                let e = e?;
                if !e.file_type()?.is_file() {
                    continue;
                }
                let rel = match sub {
                    Some(s) => Path::new(s).join(e.file_name()).into_os_string(),
                    None => e.file_name(),
                };
                if known.contains(&rel) {
                    continue;
                }
                // A snapshot may be renamed away between the listing and the open.
                match File::open(e.path()) {
                    Ok(f) => {
                        f.sync_all()?;
                        bump(&self.counters.file_fsyncs);
                    }
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(err),
                }
                known.insert(rel);
                new = true;
            }
            if new {
                sync_dir(&dir)?;
                bump(&self.counters.dir_fsyncs);
            }
        }
        Ok(())
    }
}

/// Whether the store is poisoned (see the module docs): set once, never cleared.
#[derive(Debug, Default)]
pub(crate) struct Poison {
    why: Mutex<Option<String>>,
}

impl Poison {
    /// Marks the store poisoned (a failed fsync, append or checkpoint flush). The first
    /// reason is kept.
    pub(crate) fn poison(&self, why: String) {
        if let Ok(mut p) = self.why.lock()
            && p.is_none()
        {
            *p = Some(why);
        }
    }

    /// Why the store is poisoned, if it is.
    pub(crate) fn poisoned(&self) -> Option<String> {
        match self.why.lock() {
            Ok(p) => p.clone(),
            Err(_) => Some("poison lock poisoned".to_owned()),
        }
    }
}

/// How often the background thread checkpoints when anything was written.
pub(crate) const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Background {
    stop: bool,
    /// Tests only (`test-hooks`): no timed or size-triggered checkpoints (explicit ones
    /// still run).
    #[cfg(feature = "test-hooks")]
    paused: bool,
    /// The current segment passed its size limit.
    kick: bool,
}

impl Background {
    /// Whether timed checkpoints are paused (only ever by a test hook).
    #[cfg(feature = "test-hooks")]
    fn paused(&self) -> bool {
        self.paused
    }

    /// Whether timed checkpoints are paused (only ever by a test hook).
    #[cfg(not(feature = "test-hooks"))]
    fn paused(&self) -> bool {
        false
    }
}

/// The [`Journal`] attached to the store, if any (set once, by `SledStore::attach_journal`),
/// and the WAL segment from which a checkpoint must keep segments until then.
#[derive(Default)]
pub(crate) struct Attached {
    journal: OnceLock<Arc<dyn Journal>>,
    /// While journal lines recovered at open wait for their journal: the first segment that
    /// holds them (checkpoints delete no segment from it on).
    hold: Mutex<Option<u64>>,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("journal", &self.journal.get().is_some())
            .field("hold", &self.hold.lock().ok().and_then(|h| *h))
            .finish()
    }
}

impl Attached {
    /// The journal, once attached.
    pub(crate) fn get(&self) -> Option<&Arc<dyn Journal>> {
        self.journal.get()
    }

    /// Attaches `journal` (once) and lifts the hold on the WAL segments.
    pub(crate) fn set(&self, journal: Arc<dyn Journal>) -> Result<(), String> {
        self.journal
            .set(journal)
            .map_err(|_| "a journal is attached already".to_owned())?;
        if let Ok(mut h) = self.hold.lock() {
            *h = None;
        }
        Ok(())
    }

    /// Checkpoints keep WAL segments from `segment` on until a journal is attached.
    pub(crate) fn hold_from(&self, segment: u64) {
        if let Ok(mut h) = self.hold.lock() {
            *h = Some(segment);
        }
    }

    /// The oldest segment a checkpoint that would keep `keep` and newer must keep.
    fn keep(&self, keep: u64) -> u64 {
        match self.hold.lock() {
            Ok(h) => h.map_or(keep, |held| held.min(keep)),
            // Unknown: keep every segment.
            Err(_) => 0,
        }
    }
}

/// Everything a commit, a checkpoint and the background thread share.
#[derive(Debug)]
pub(crate) struct Durability {
    pub(crate) db: sled::Db,
    pub(crate) syncer: FileSyncer,
    pub(crate) wal: Wal,
    pub(crate) poison: Poison,
    /// The journal whose lines ride in the WAL frames (`crate::journal`), if attached.
    pub(crate) journal: Attached,
    /// The number of the last frame written into sled (by the committer; at open, the replay's
    /// last), for checkpoints to wait on.
    applied: Mutex<u64>,
    applied_changed: Condvar,
    /// One checkpoint at a time.
    checkpointing: Mutex<()>,
    background: Mutex<Background>,
    wake: Condvar,
}

impl Durability {
    pub(crate) fn new(db: sled::Db, syncer: FileSyncer, wal: Wal, applied: u64) -> Durability {
        Durability {
            db,
            syncer,
            wal,
            poison: Poison::default(),
            journal: Attached::default(),
            applied: Mutex::new(applied),
            applied_changed: Condvar::new(),
            checkpointing: Mutex::new(()),
            background: Mutex::new(Background::default()),
            wake: Condvar::new(),
        }
    }

    /// A commit round's sync (`pipeline.rs`): one `fdatasync` of every live WAL segment, which
    /// makes every frame appended before the call durable (a segment no longer live was
    /// covered by a checkpoint instead), on behalf of `commits` commits. Fails without syncing
    /// if the store is poisoned; a failed fsync poisons it.
    pub(crate) fn sync_wal(&self, commits: u64) -> Result<(), String> {
        if let Some(p) = self.poison.poisoned() {
            return Err(p);
        }
        match self.wal.sync() {
            Ok(n) => {
                let c = &self.syncer.counters;
                bump(&c.group_syncs);
                c.wal_fsyncs.fetch_add(n, Ordering::Relaxed);
                c.commits.fetch_add(commits, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                let why = format!("fsync failed, store poisoned: {e}");
                self.poison.poison(why.clone());
                Err(why)
            }
        }
    }

    /// The committer wrote frames up to `frame` into sled.
    pub(crate) fn applied_through(&self, frame: u64) {
        if let Ok(mut a) = self.applied.lock() {
            *a = frame.max(*a);
            self.applied_changed.notify_all();
        }
    }

    /// Waits until every frame up to `frame` is in sled (the committer writes each within
    /// its round); fails if the store is poisoned meanwhile (nothing more is written then).
    fn wait_applied(&self, frame: u64) -> Result<(), String> {
        let mut a = self
            .applied
            .lock()
            .map_err(|_| "applied frame lock poisoned".to_owned())?;
        while *a < frame {
            if let Some(p) = self.poison.poisoned() {
                return Err(p);
            }
            a = self
                .applied_changed
                .wait_timeout(a, Duration::from_millis(50))
                .map_err(|_| "applied frame lock poisoned".to_owned())?
                .0;
        }
        Ok(())
    }

    /// Checkpoint: under the commit mutex, appends switch to a new segment (if the current one
    /// holds anything); once the committer has written every frame appended so far into sled,
    /// sled is flushed and its files fsynced (`FileSyncer::sync`); then the older segments
    /// are deleted. Every frame of a deleted segment was in sled before the flush began, so
    /// it is in sled's durable state. Also the way every
    /// write that bypasses the WAL (metadata, re-wraps, restore) is made durable. A failed
    /// flush or fsync poisons the store; a poisoned store does not checkpoint any more.
    pub(crate) fn checkpoint(&self) -> Result<(), String> {
        let _one = self
            .checkpointing
            .lock()
            .map_err(|_| "checkpoint lock poisoned".to_owned())?;
        if let Some(p) = self.poison.poisoned() {
            return Err(p);
        }
        // Only this thread switches segments, so a non-empty segment stays non-empty until
        // the switch below.
        let next = if self.wal.current_size() > 0 {
            Some(self.wal.create_next().map_err(|e| e.to_string())?)
        } else {
            None
        };
        let (keep, last) = {
            let mut w = self.wal.lock().map_err(|e| e.to_string())?;
            let last = w.next_frame.saturating_sub(1);
            let keep = match next {
                Some(next) => self.wal.switch(&mut w, next).map_err(|e| e.to_string())?,
                None => self.wal.current_id(&w),
            };
            (keep, last)
        };
        self.wait_applied(last)?;
        if let Err(e) = self.syncer.sync(&self.db) {
            let why = format!("checkpoint fsync failed, store poisoned: {e}");
            self.poison.poison(why.clone());
            return Err(why);
        }
        // The journal's lines of every frame up to `last` were written before the frame went
        // into sled (`pipeline.rs`): once synced, the segments holding them may go.
        if let Some(j) = self.journal.get()
            && let Err(e) = j.sync()
        {
            let why = format!("journal fsync failed, store poisoned: {e}");
            self.poison.poison(why.clone());
            return Err(why);
        }
        self.wal
            .retire_before(self.journal.keep(keep))
            .map_err(|e| e.to_string())?;
        bump(&self.syncer.counters.checkpoints);
        Ok(())
    }

    /// Asks the background thread for an early checkpoint (the segment is full).
    pub(crate) fn kick(&self) {
        if let Ok(mut b) = self.background.lock() {
            b.kick = true;
            self.wake.notify_all();
        }
    }

    /// Tests: stops (or resumes) timed and size-triggered checkpoints.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn pause(&self, paused: bool) {
        if let Ok(mut b) = self.background.lock() {
            b.paused = paused;
        }
    }

    /// Makes the background thread return.
    pub(crate) fn stop(&self) {
        if let Ok(mut b) = self.background.lock() {
            b.stop = true;
            self.wake.notify_all();
        }
    }

    /// The background thread: a checkpoint every [`CHECKPOINT_INTERVAL`] if anything was
    /// written, and early when a segment passes `wal::SEGMENT_LIMIT`. Returns after
    /// [`Durability::stop`] or once the store is poisoned.
    pub(crate) fn run_background(&self) {
        let Ok(mut b) = self.background.lock() else {
            return;
        };
        loop {
            if b.stop {
                return;
            }
            if !b.kick {
                b = match self.wake.wait_timeout(b, CHECKPOINT_INTERVAL) {
                    Ok((b, _)) => b,
                    Err(_) => return,
                };
                if b.stop {
                    return;
                }
            }
            b.kick = false;
            if b.paused() || self.wal.current_size() == 0 {
                continue;
            }
            drop(b);
            let failed = self.checkpoint().is_err() && self.poison.poisoned().is_some();
            b = match self.background.lock() {
                Ok(b) => b,
                Err(_) => return,
            };
            if failed {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poison_keeps_the_first_reason() {
        let p = Poison::default();
        assert_eq!(p.poisoned(), None);
        p.poison("disk gone".into());
        p.poison("later".into());
        assert_eq!(p.poisoned().as_deref(), Some("disk gone"));
    }
}
