//! The journal facility (`crate::journal`): entries rendered in the committer's order, carried
//! in the WAL frame, written after the sync, synced before segments go, recovered at open.
#![allow(clippy::as_conversions, clippy::indexing_slicing)]

use super::*;
use crate::conditional_tests::{kek, obj};
use crate::{Change, CommitDone, ObjectStore};
use std::sync::mpsc;

/// A journal whose "file" is a vector: line `"<seq> <label>\n"`, chained by number only.
/// `write_enabled` false simulates lines that never reached the file (lost page cache).
#[derive(Default)]
struct TestJournal {
    state: Mutex<TestState>,
}

#[derive(Default)]
struct TestState {
    rendered: u64,
    file: Vec<u8>,
    lost_writes: bool,
    syncs: u64,
    recovered: Vec<u8>,
}

impl TestJournal {
    fn with_file(file: &[u8]) -> TestJournal {
        let j = TestJournal::default();
        {
            let mut s = j.state.lock().unwrap();
            s.file = file.to_vec();
            s.rendered = last_seq(file);
        }
        j
    }

    fn file(&self) -> String {
        String::from_utf8(self.state.lock().unwrap().file.clone()).unwrap()
    }
}

fn last_seq(file: &[u8]) -> u64 {
    String::from_utf8_lossy(file)
        .lines()
        .last()
        .map_or(0, |l| l.split(' ').next().unwrap().parse().unwrap())
}

impl Journal for TestJournal {
    fn render(&self, entry: JournalEntry, out: &mut Vec<u8>) -> Result<(), String> {
        let label = entry.downcast::<String>().map_err(|_| "not a label")?;
        if label.as_str() == "unrenderable" {
            return Err("refused".into());
        }
        let mut s = self.state.lock().unwrap();
        s.rendered += 1;
        out.extend_from_slice(format!("{} {label}\n", s.rendered).as_bytes());
        Ok(())
    }

    fn write(&self, lines: &[u8]) -> Result<(), String> {
        let mut s = self.state.lock().unwrap();
        if !s.lost_writes {
            s.file.extend_from_slice(lines);
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), String> {
        self.state.lock().unwrap().syncs += 1;
        Ok(())
    }

    fn recover(&self, lines: &[u8]) -> Result<(), String> {
        let mut s = self.state.lock().unwrap();
        s.recovered = lines.to_vec();
        let mut last = last_seq(&s.file);
        for line in String::from_utf8_lossy(lines).lines() {
            let seq: u64 = line.split(' ').next().unwrap().parse().unwrap();
            if seq <= last {
                continue;
            }
            if seq != last + 1 {
                return Err(format!("record {seq} after {last}"));
            }
            s.file.extend_from_slice(format!("{line}\n").as_bytes());
            last = seq;
        }
        s.rendered = last;
        s.syncs += 1;
        Ok(())
    }
}

fn entry(label: &str) -> Option<JournalEntry> {
    Some(Box::new(label.to_owned()))
}

/// A completion and the receiver of its outcome.
fn done() -> (CommitDone, mpsc::Receiver<Result<(), StoreError>>) {
    let (tx, rx) = mpsc::channel();
    (
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
        rx,
    )
}

fn commit_with(s: &SledStore, changes: Vec<Change>, label: &str) -> Result<(), StoreError> {
    let (d, rx) = done();
    s.commit_journaled(changes, entry(label), d);
    rx.recv().unwrap()
}

fn only(s: &SledStore, label: &str) -> Result<(), StoreError> {
    let (d, rx) = done();
    s.journal_then(Box::new(label.to_owned()), d);
    rx.recv().unwrap()
}

fn attached(dir: &std::path::Path, file: &[u8]) -> (SledStore, Arc<TestJournal>) {
    let s = SledStore::open_with_kek(dir, kek(1, 1)).unwrap();
    let j = Arc::new(TestJournal::with_file(file));
    s.attach_journal(j.clone()).unwrap();
    (s, j)
}

#[test]
fn entries_are_written_in_commit_order_and_a_failed_check_drops_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (s, j) = attached(dir.path(), b"");
    assert!(s.journals());
    commit_with(&s, vec![Change::Put(obj("a", 1, b"k"))], "create a").unwrap();
    only(&s, "get a").unwrap();
    // An expectation that does not hold: nothing stored, and its entry never rendered.
    let stale = Change::Expect {
        uid: "a".into(),
        revision: None,
    };
    let r = commit_with(&s, vec![stale, Change::Delete("a".into())], "destroy a");
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    // An entry the journal refuses fails its commit alone, which stores nothing.
    let r = commit_with(&s, vec![Change::Put(obj("b", 2, b"k"))], "unrenderable");
    assert!(matches!(r, Err(StoreError::Backend(_))), "{r:?}");
    assert_eq!(s.get("b").unwrap(), None);
    commit_with(&s, vec![Change::Delete("a".into())], "destroy a").unwrap();
    assert_eq!(j.file(), "1 create a\n2 get a\n3 destroy a\n");
    // Each durable entry was one WAL sync, its lines in the frame (no journal sync needed).
    let st = s.sync_stats();
    assert_eq!(st.commits, 3, "{st:?}");
    assert_eq!(j.state.lock().unwrap().syncs, 1, "only the one at attach");
    // A checkpoint syncs the journal before it deletes the segments.
    s.checkpoint().unwrap();
    assert_eq!(j.state.lock().unwrap().syncs, 2);
}

#[test]
fn an_entry_without_a_journal_fails_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    assert!(!s.journals());
    let r = commit_with(&s, vec![Change::Put(obj("a", 1, b"k"))], "create a");
    assert!(matches!(r, Err(StoreError::Backend(_))), "{r:?}");
    assert_eq!(s.get("a").unwrap(), None);
    // Without an entry, commits go on as ever.
    s.commit(vec![Change::Put(obj("a", 1, b"k"))]).unwrap();
}

#[test]
fn many_writers_keep_the_journal_in_the_order_of_the_frames() {
    let dir = tempfile::tempdir().unwrap();
    let (s, j) = attached(dir.path(), b"");
    let s = Arc::new(s);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let uid = format!("t{t}-{i}");
                    commit_with(
                        &s,
                        vec![Change::Put(obj(&uid, (t * 100 + i + 1) as u64, b"k"))],
                        &uid,
                    )
                    .unwrap();
                    only(&s, &format!("get {uid}")).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let file = j.file();
    let lines: Vec<&str> = file.lines().collect();
    assert_eq!(lines.len(), 800);
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("{} ", i + 1)), "{l}");
    }
    // Every thread's create precedes its get.
    for t in 0..8 {
        for i in 0..50 {
            let uid = format!("t{t}-{i}");
            let c = lines.iter().position(|l| l.ends_with(&format!(" {uid}")));
            let g = lines
                .iter()
                .position(|l| l.ends_with(&format!(" get {uid}")));
            assert!(c.unwrap() < g.unwrap(), "{uid}");
        }
    }
    // Group commit still groups: fewer WAL syncs than durable entries.
    let st = s.sync_stats();
    assert!(st.group_syncs <= st.commits, "{st:?}");
}

/// A crash after the frame's sync but before the lines reached the journal's file (or before
/// the file's sync): the next open hands the WAL's lines to the journal, which appends what it
/// lacks; the store's change and its line are both there.
#[test]
fn a_crash_image_with_the_line_only_in_the_wal_recovers_it() {
    let dir = tempfile::tempdir().unwrap();
    let (live, base, image) = (
        dir.path().join("live"),
        dir.path().join("base"),
        dir.path().join("image"),
    );
    let file_at_crash;
    {
        let s = SledStore::open_with_kek(&live, kek(1, 1)).unwrap();
        let j = Arc::new(TestJournal::default());
        s.attach_journal(j.clone()).unwrap();
        s.pause_checkpoints(true);
        s.checkpoint().unwrap();
        kmipd_test_support::copy_dir(&live, &base);
        commit_with(&s, vec![Change::Put(obj("a", 1, b"k"))], "create a").unwrap();
        j.state.lock().unwrap().lost_writes = true;
        commit_with(&s, vec![Change::Put(obj("b", 2, b"k"))], "create b").unwrap();
        only(&s, "get b").unwrap();
        file_at_crash = j.state.lock().unwrap().file.clone();
        assert_eq!(file_at_crash, b"1 create a\n");
        kmipd_test_support::copy_dir(&base, &image);
        kmipd_test_support::copy_dir(&live.join("wal"), &image.join("wal"));
    }
    let (s, j) = attached(&image, &file_at_crash);
    assert_eq!(s.sync_stats().replayed_frames, 3);
    assert!(s.get("a").unwrap().is_some() && s.get("b").unwrap().is_some());
    assert_eq!(j.file(), "1 create a\n2 create b\n3 get b\n");
    // The chain goes on after the recovered lines.
    only(&s, "get a").unwrap();
    assert_eq!(j.file().lines().last(), Some("4 get a"));
}

/// Lines found at open survive opens that attach no journal (an offline tool) and checkpoints,
/// until a journal takes them.
#[test]
fn recovered_lines_wait_for_a_journal_across_opens() {
    let dir = tempfile::tempdir().unwrap();
    let (live, base, image) = (
        dir.path().join("live"),
        dir.path().join("base"),
        dir.path().join("image"),
    );
    {
        let s = SledStore::open_with_kek(&live, kek(1, 1)).unwrap();
        let j = Arc::new(TestJournal::default());
        s.attach_journal(j.clone()).unwrap();
        s.pause_checkpoints(true);
        s.checkpoint().unwrap();
        kmipd_test_support::copy_dir(&live, &base);
        j.state.lock().unwrap().lost_writes = true;
        commit_with(&s, vec![Change::Put(obj("a", 1, b"k"))], "create a").unwrap();
        kmipd_test_support::copy_dir(&base, &image);
        kmipd_test_support::copy_dir(&live.join("wal"), &image.join("wal"));
    }
    for _ in 0..2 {
        let s = SledStore::open_with_kek(&image, kek(1, 1)).unwrap();
        s.commit(vec![Change::Put(obj("c", 3, b"k"))]).unwrap();
        s.checkpoint().unwrap();
        s.checkpoint().unwrap();
    }
    let (s, j) = attached(&image, b"");
    assert_eq!(j.file(), "1 create a\n");
    assert!(s.get("a").unwrap().is_some());
    // Once taken, the next checkpoints let the segments go, and a reopen finds no lines.
    s.checkpoint().unwrap();
    drop(s);
    let (_s, j) = attached(&image, b"1 create a\n");
    assert!(j.state.lock().unwrap().recovered.is_empty());
}

/// `run_between_rounds` runs after everything queued before it is durable and written.
#[test]
fn run_between_rounds_sees_every_earlier_entry_written() {
    let dir = tempfile::tempdir().unwrap();
    let (s, j) = attached(dir.path(), b"");
    let (d, rx) = done();
    s.commit_journaled(vec![Change::Put(obj("a", 1, b"k"))], entry("create a"), d);
    let (tx, seen) = mpsc::channel();
    let j2 = j.clone();
    s.run_between_rounds(Box::new(move |poisoned| {
        let _ = tx.send((j2.file(), poisoned));
    }))
    .unwrap();
    rx.recv().unwrap().unwrap();
    let (file, poisoned) = seen.recv().unwrap();
    assert_eq!(file, "1 create a\n");
    assert_eq!(poisoned, None);
}
