//! Durability: what makes a successful commit survive a power cut, and group commit.
//!
//! **Why an fsync after sled's flush.** sled 0.34's `Db::flush` writes its buffers and ends
//! in `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` on Linux (upstream issue 1452).
//! That call starts and waits for the write-back of the page-cache range, but it does not
//! flush the drive's volatile write cache and does not write file metadata (a grown file
//! size, a new file's directory entry), so an acknowledged write can still be lost on power
//! failure. After sled's flush we therefore call `fdatasync` on sled's log file (`db`) —
//! which also issues the cache flush and persists the size — and `fsync` every file sled
//! created since the last sync (`blobs/*`, `snap.*`) and the directories that got new entries.
//!
//! **Group commit.** A commit applies its transaction (memory only), takes a ticket, and waits
//! until a sync that started after its ticket has completed. The first waiter that finds no
//! sync running becomes the leader: it notes the last ticket handed out, syncs, and marks
//! everything up to that ticket durable; the others wait on a condition variable. While one
//! sync runs, every new committer queues and the next leader covers them all with one sync,
//! so 64 writers share a handful of syncs instead of queueing behind 64.
//!
//! **A failed fsync poisons the store.** After an fsync error Linux may have dropped the dirty
//! pages, so a later successful fsync would not prove the earlier writes durable; every later
//! commit fails until the process restarts and recovers from what is on disk.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

/// Counters of what the durability layer did (for tests and the operator).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    /// Commits that waited for durability.
    pub commits: u64,
    /// Group syncs run (sled flush + fsyncs); fewer than `commits` under concurrency.
    pub group_syncs: u64,
    /// `fdatasync` calls on sled's log file.
    pub log_fsyncs: u64,
    /// `fsync` calls on other new files (blobs, snapshots).
    pub file_fsyncs: u64,
    /// `fsync` calls on directories.
    pub dir_fsyncs: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    commits: AtomicU64,
    group_syncs: AtomicU64,
    log_fsyncs: AtomicU64,
    file_fsyncs: AtomicU64,
    dir_fsyncs: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> SyncStats {
        SyncStats {
            commits: self.commits.load(Ordering::Relaxed),
            group_syncs: self.group_syncs.load(Ordering::Relaxed),
            log_fsyncs: self.log_fsyncs.load(Ordering::Relaxed),
            file_fsyncs: self.file_fsyncs.load(Ordering::Relaxed),
            dir_fsyncs: self.dir_fsyncs.load(Ordering::Relaxed),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
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
        let log = File::open(dir.join("db"))?;
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

    /// Makes everything sled wrote so far durable.
    pub(crate) fn sync(&self, db: &sled::Db) -> io::Result<()> {
        bump(&self.counters.group_syncs);
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
        for sub in [None, Some("blobs")] {
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

/// fsync of a directory (its entries: new, renamed and removed files).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[derive(Debug, Default)]
struct GroupState {
    /// Last ticket handed out.
    issued: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// A sync is running.
    leader: bool,
    /// A sync failed: nothing is durable any more.
    poisoned: Option<String>,
}

/// Leader/follower group commit over any sync function.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<GroupState>,
    cv: Condvar,
}

impl GroupCommit {
    /// A ticket for changes already applied (in memory) by the caller.
    pub(crate) fn ticket(&self) -> Result<u64, String> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| "group commit lock poisoned")?;
        if let Some(p) = &st.poisoned {
            return Err(p.clone());
        }
        st.issued = st.issued.saturating_add(1);
        Ok(st.issued)
    }

    /// Returns once a sync that started after `ticket` was issued has completed.
    pub(crate) fn wait(
        &self,
        ticket: u64,
        sync: impl Fn() -> io::Result<()>,
    ) -> Result<(), String> {
        let poisoned = |_| "group commit lock poisoned".to_owned();
        let mut st = self.state.lock().map_err(poisoned)?;
        loop {
            if let Some(p) = &st.poisoned {
                return Err(p.clone());
            }
            if st.durable >= ticket {
                return Ok(());
            }
            if st.leader {
                st = self.cv.wait(st).map_err(poisoned)?;
                continue;
            }
            st.leader = true;
            let target = st.issued;
            drop(st);
            let result = sync();
            st = self.state.lock().map_err(poisoned)?;
            st.leader = false;
            match result {
                Ok(()) => st.durable = st.durable.max(target),
                Err(e) => st.poisoned = Some(format!("fsync failed, store poisoned: {e}")),
            }
            self.cv.notify_all();
        }
    }
}

impl FileSyncer {
    pub(crate) fn count_commit(&self) {
        bump(&self.counters.commits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Every waiter returns only after a sync that began after its write completed, and
    /// concurrent waiters share syncs.
    #[test]
    fn group_commit_covers_every_waiter_with_shared_syncs() {
        let g = Arc::new(GroupCommit::default());
        let written = Arc::new(AtomicU64::new(0));
        let durable = Arc::new(AtomicU64::new(0));
        let syncs = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..64)
            .map(|_| {
                let (g, written, durable, syncs) =
                    (g.clone(), written.clone(), durable.clone(), syncs.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                        let t = g.ticket().unwrap();
                        g.wait(t, || {
                            let seen = written.load(Ordering::SeqCst);
                            std::thread::sleep(Duration::from_micros(300));
                            syncs.fetch_add(1, Ordering::SeqCst);
                            durable.fetch_max(seen, Ordering::SeqCst);
                            Ok(())
                        })
                        .unwrap();
                        assert!(durable.load(Ordering::SeqCst) >= mine);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = syncs.load(Ordering::SeqCst);
        assert!((1..64 * 20).contains(&n), "{n} syncs for 1280 commits");
    }

    #[test]
    fn a_failed_sync_poisons_every_later_commit() {
        let g = GroupCommit::default();
        let t = g.ticket().unwrap();
        assert!(g.wait(t, || Err(io::Error::other("disk gone"))).is_err());
        assert!(g.ticket().is_err());
    }
}
