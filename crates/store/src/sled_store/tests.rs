#![allow(clippy::as_conversions, clippy::indexing_slicing)]

use super::commit::{APPLIED_KEY, push_lp};
use super::open::{META_FORMAT, applied_frame};
use super::pipeline::Completion;
use super::*;
use crate::conditional_tests::{kek, obj};
use crate::kek::KekId;
use crate::query::{Filter, Query};
use crate::{Change, ManagedObject, ObjectStore, Revision, record, wal};
use kmipd_proto::attributes::AttrName;
use kmipd_proto::tag;
use kmipd_test_support::copy_dir;
use kmipd_ttlv::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

fn material(i: usize) -> Vec<u8> {
    format!("MATERIAL-{i:04}-0123456789abcdef").into_bytes()
}

fn fill(s: &SledStore, n: usize) {
    for i in 0..n {
        s.commit(vec![Change::Put(obj(
            &format!("k{i}"),
            i as u64 + 1,
            &material(i),
        ))])
        .unwrap();
    }
}

fn check_all(s: &SledStore, n: usize) {
    for i in 0..n {
        let o = s.get(&format!("k{i}")).unwrap().unwrap();
        assert_eq!(o, obj(&format!("k{i}"), i as u64 + 1, &material(i)));
    }
}

#[test]
fn survives_reopen_and_keeps_creation_order_and_indexes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
        fill(&s, 10);
        s.commit(vec![Change::Delete("k3".into())]).unwrap();
        let st = s.sync_stats();
        assert_eq!(st.commits, 11);
        // Each sequential commit waited for its own WAL fdatasync.
        assert!(st.wal_fsyncs >= 11 && st.group_syncs >= 11, "{st:?}");
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert!(matches!(s.get("k1"), Err(StoreError::Locked)));
    s.unlock(vec![kek(1, 1)]).unwrap();
    let uids: Vec<String> = s.all().unwrap().into_iter().map(|o| o.uid).collect();
    assert_eq!(uids, ["k0", "k1", "k2", "k4", "k5", "k6", "k7", "k8", "k9"]);
    let q = |f: Vec<Filter>| -> Vec<String> {
        s.find(&Query::new(f))
            .unwrap()
            .into_iter()
            .map(|o| o.uid)
            .collect()
    };
    assert_eq!(q(vec![Filter::Name("name-k5".into())]), ["k5"]);
    assert_eq!(
        q(vec![Filter::Date(
            AttrName::Std(tag::INITIAL_DATE),
            1003,
            1005
        )]),
        ["k2", "k4"]
    );
    let app1 = Filter::Attr(
        AttrName::Custom {
            vendor: None,
            name: "x-app".into(),
        },
        Value::TextString("app1".into()),
    );
    assert_eq!(
        q(vec![app1, Filter::Owner("alice".into())]),
        ["k0", "k2", "k4", "k6", "k8"]
    );
    assert!(q(vec![Filter::Owner("bob".into())]).is_empty());
    assert!(s.next_sequence().unwrap() > 10);
}

#[test]
fn no_key_material_and_no_kek_in_the_files() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open_with_kek(dir.path(), kek(1, 0x5a)).unwrap();
        fill(&s, 20);
    }
    let needles: Vec<Vec<u8>> = (0..20).map(material).chain([vec![0x5a; 32]]).collect();
    for f in walk(dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        for n in &needles {
            assert!(!bytes.windows(n.len()).any(|w| w == n.as_slice()), "{f:?}");
        }
    }
}

pub(crate) fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn wrong_or_missing_keks_are_refused_at_unlock() {
    let dir = tempfile::tempdir().unwrap();
    drop(SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap());
    let s = SledStore::open(dir.path()).unwrap();
    assert!(matches!(s.unlock(vec![kek(1, 2)]), Err(StoreError::Kek(_))));
    assert!(matches!(s.unlock(vec![kek(2, 2)]), Err(StoreError::Kek(_))));
    assert!(matches!(s.unlock(vec![]), Err(StoreError::Kek(_))));
    s.unlock(vec![kek(1, 1)]).unwrap();
    assert_eq!(s.required_keks().unwrap(), [KekId(1)]);
}

#[test]
fn wrapped_kek_blobs_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.store_wrapped_kek(KekId(1), b"blob-1").unwrap();
        s.store_wrapped_kek(KekId(2), b"blob-2").unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        s.wrapped_keks().unwrap(),
        [
            (KekId(1), b"blob-1".to_vec()),
            (KekId(2), b"blob-2".to_vec())
        ]
    );
}

#[test]
fn a_damaged_record_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    fill(&s, 5);
    // One byte flipped in k2's record (past sled's own checksums: what a bad disk block or
    // a memory error would leave), in the attributes and, separately, in k3's wrapped object.
    for (uid, at) in [("k2", 30usize), ("k3", 0)] {
        let mut raw = s.objects.get(uid).unwrap().unwrap().to_vec();
        let i = if at == 0 { raw.len() - 10 } else { at };
        raw[i] ^= 0x01;
        s.objects.insert(uid, raw).unwrap();
    }
    // The cache of decoded objects still holds what was written (the damage is behind it):
    // the damage shows once the record is read from sled.
    assert_eq!(s.get("k2").unwrap().unwrap(), obj("k2", 3, &material(2)));
    s.cache.clear();
    for uid in ["k2", "k3"] {
        match s.get(uid) {
            Err(StoreError::Corrupt { uid: u, reason }) => {
                assert_eq!(u, uid);
                assert!(!reason.is_empty());
            }
            other => panic!("{uid}: {other:?}"),
        }
    }
    // Found by a read, remembered as by a scan.
    assert_eq!(s.corrupt_records(), ["k2", "k3"]);
    assert!(s.get("k1").unwrap().is_some());
    let uids: Vec<String> = s.all().unwrap().into_iter().map(|o| o.uid).collect();
    assert_eq!(uids, ["k0", "k1", "k4"]);
    assert_eq!(s.corrupt_records(), ["k2", "k3"]);
    assert_eq!(
        s.find(&Query::new(vec![Filter::Name("name-k2".into())]))
            .unwrap(),
        []
    );
    // Writes go on, including replacing the damaged object.
    s.commit(vec![Change::Put(obj("k2", 3, b"fresh"))]).unwrap();
    assert_eq!(s.get("k2").unwrap().unwrap().sequence, 3);
    s.commit(vec![Change::Delete("k3".into())]).unwrap();
    assert!(s.get("k3").unwrap().is_none());
}

#[test]
fn a_record_moved_under_another_uid_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    fill(&s, 2);
    let raw = s.objects.get("k0").unwrap().unwrap();
    s.objects.insert("k1", raw).unwrap();
    // Behind the cache of decoded objects, which holds k1 as written.
    s.cache.clear();
    assert!(matches!(s.get("k1"), Err(StoreError::Corrupt { .. })));
}

#[test]
fn kek_rotation_rewraps_everything_and_retires_the_old_kek() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
        fill(&s, 50);
        let r = s.rotate_kek(kek(2, 2)).unwrap();
        assert_eq!(r.rewrapped, 50);
        assert_eq!(r.retired, [KekId(1)]);
        // Objects after the rotation.
        s.commit(vec![Change::Put(obj("k50", 51, &material(50)))])
            .unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.required_keks().unwrap(), [KekId(2)]);
    s.unlock(vec![kek(2, 2)]).unwrap();
    check_all(&s, 51);
}

#[test]
fn a_rotation_interrupted_after_n_records_leaves_everything_readable() {
    for n in [0, 1, 17, 49] {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
            fill(&s, 50);
            s.begin_kek_rotation(kek(2, 2)).unwrap();
            // Written during the rotation: under the new KEK.
            s.commit(vec![Change::Put(obj("k50", 51, &material(50)))])
                .unwrap();
            let (done, _) = s.rewrap_step(n).unwrap();
            assert_eq!(done, n);
            // "Crash": the store is dropped mid-rotation.
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.required_keks().unwrap(), [KekId(1), KekId(2)]);
        assert!(
            s.unlock(vec![kek(2, 2)]).is_err(),
            "the old KEK is still needed"
        );
        s.unlock(vec![kek(1, 1), kek(2, 2)]).unwrap();
        check_all(&s, 51);
        assert!(s.finish_kek_rotation().is_err());
        let r = s.rotate_kek(kek(2, 2)).unwrap();
        assert_eq!(r.rewrapped, 50 - n);
        drop(s);
        let s = SledStore::open_with_kek(dir.path(), kek(2, 2)).unwrap();
        check_all(&s, 51);
    }
}

#[test]
fn backup_while_writing_then_restore() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SledStore::open_with_kek(dir.path().join("db"), kek(1, 1)).unwrap());
    s.store_wrapped_kek(KekId(1), b"hsm-blob").unwrap();
    fill(&s, 200);
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            for i in 200..400 {
                s.commit(vec![
                    Change::Put(obj(&format!("k{i}"), i as u64 + 1, &material(i))),
                    Change::Delete(format!("k{}", i - 200)),
                ])
                .unwrap();
            }
        })
    };
    let backup = dir.path().join("store.bak");
    let info = s.backup(&backup).unwrap();
    writer.join().unwrap();
    assert!(info.records >= 200);
    let bytes = std::fs::read(&backup).unwrap();
    for i in 0..400 {
        let m = material(i);
        assert!(!bytes.windows(m.len()).any(|w| w == m.as_slice()));
    }
    let restored = dir.path().join("restored");
    let restore_info = SledStore::restore(&backup, &restored).unwrap();
    assert_eq!(restore_info.records, info.records);
    let r = SledStore::open(&restored).unwrap();
    assert_eq!(
        r.wrapped_keks().unwrap(),
        [(KekId(1), b"hsm-blob".to_vec())]
    );
    r.unlock(vec![kek(1, 1)]).unwrap();
    // A consistent cut: every commit replaced k(i-200) by k(i) atomically, so exactly 200
    // objects, a contiguous window.
    let all = r.all().unwrap();
    assert_eq!(all.len(), 200);
    // The backup reported what the file holds.
    assert_eq!(info.records, all.len());
    let first = all[0].sequence;
    for (j, o) in all.iter().enumerate() {
        assert_eq!(o.sequence, first + j as u64);
        let i = usize::try_from(o.sequence - 1).unwrap();
        assert_eq!(*o, obj(&format!("k{i}"), o.sequence, &material(i)));
    }
    // Indexes were rebuilt.
    let last = &all[199].uid;
    let found = r
        .find(&Query::new(vec![Filter::Name(format!("name-{last}"))]))
        .unwrap();
    assert_eq!(found.len(), 1);
    // A damaged backup is refused.
    let mut bad = bytes.clone();
    bad[100] ^= 1;
    std::fs::write(&backup, bad).unwrap();
    assert!(SledStore::restore(&backup, dir.path().join("again")).is_err());
}

#[test]
fn concurrent_writers_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap());
    let before = s.sync_stats();
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    let n = t * 100 + i;
                    s.commit(vec![Change::Put(obj(&format!("k{n}"), n as u64, b"m"))])
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = s.sync_stats();
    let commits = st.commits - before.commits;
    let syncs = st.group_syncs - before.group_syncs;
    assert_eq!(commits, 640);
    assert!(
        syncs >= 1 && syncs < commits,
        "{syncs} syncs for {commits} commits"
    );
    // Every group sync fdatasyncs the live WAL segment(s): one, two during a checkpoint.
    assert!(st.wal_fsyncs >= st.group_syncs && st.wal_fsyncs <= 2 * st.group_syncs);
    // One WAL frame (one sled transaction) per batch of commits, never more than commits.
    let frames = st.wal_frames - before.wal_frames;
    assert!(
        frames >= 1 && frames <= commits,
        "{frames} frames for {commits} commits"
    );
    assert_eq!(s.all().unwrap().len(), 640);
}

#[test]
fn the_page_cache_is_bounded_by_the_options() {
    assert_eq!(
        SledOptions::default().cache_capacity_mb,
        DEFAULT_CACHE_CAPACITY_MB
    );
    assert_eq!(SledOptions::default().cache_capacity_bytes(), 64 << 20);
    let huge = SledOptions {
        cache_capacity_mb: u64::MAX,
        ..SledOptions::default()
    };
    assert_eq!(huge.cache_capacity_bytes(), u64::MAX);
    // A store with a tiny cache works and reads back what it wrote.
    let dir = tempfile::tempdir().unwrap();
    let tiny = SledOptions {
        cache_capacity_mb: 1,
        ..SledOptions::default()
    };
    {
        let s = SledStore::open_with(dir.path(), &tiny).unwrap();
        s.unlock(vec![kek(1, 1)]).unwrap();
        fill(&s, 10);
    }
    let s = SledStore::open_with(dir.path(), &tiny).unwrap();
    s.unlock(vec![kek(1, 1)]).unwrap();
    check_all(&s, 10);
}

// ---- write-ahead log --------------------------------------------------------------------------

/// A store with background checkpoints paused, and a copy of its files right after a
/// checkpoint: sled's durable state, the base of crash images.
/// A temporary directory with the three paths of a crash test: the live store, its files as
/// of its last checkpoint (`base`), and the crash image.
fn crash_dirs() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (live, base, image) = (
        dir.path().join("live"),
        dir.path().join("base"),
        dir.path().join("image"),
    );
    (dir, live, base, image)
}

fn paused_store_and_base(live: &Path, base: &Path) -> SledStore {
    let s = SledStore::open_with_kek(live, kek(1, 1)).unwrap();
    s.pause_checkpoints(true);
    s.checkpoint().unwrap();
    copy_dir(live, base);
    s
}

/// The crash image "sled never flushed anything since `base`, the WAL is as it is now":
/// `base` plus the live store's WAL segments, in `image`.
fn crash_image(base: &Path, live: &Path, image: &Path) {
    copy_dir(base, image);
    copy_dir(&live.join("wal"), &image.join("wal"));
}

fn last_segment(dir: &Path) -> PathBuf {
    wal::list_segments(&dir.join("wal"))
        .unwrap()
        .pop()
        .unwrap()
        .1
}

#[test]
fn commits_only_in_the_wal_are_replayed_and_a_torn_tail_is_cut() {
    let (dir, live, base, image) = crash_dirs();
    let s = paused_store_and_base(&live, &base);
    fill(&s, 10);
    s.commit(vec![Change::Delete("k3".into())]).unwrap();
    crash_image(&base, &live, &image);
    drop(s);
    // A commit that was being appended when the power went: a partial frame, then garbage.
    let seg = last_segment(&image);
    let mut bytes = std::fs::read(&seg).unwrap();
    let frame = wal::encode_frame(b"\x01never acknowledged").unwrap();
    bytes.extend_from_slice(&frame[..11]);
    bytes.extend_from_slice(&[0xAB; 40]);
    std::fs::write(&seg, &bytes).unwrap();

    let base2 = dir.path().join("base2");
    let image2 = dir.path().join("image2");
    {
        let r = SledStore::open(&image).unwrap();
        let st = r.sync_stats();
        assert_eq!(st.replayed_frames, 11, "{st:?}");
        assert_eq!(st.discarded_bytes, 51, "{st:?}");
        // The recovery checkpoint deleted the replayed segments.
        assert_eq!(wal::list_segments(&image.join("wal")).unwrap().len(), 1);
        r.unlock(vec![kek(1, 1)]).unwrap();
        let uids: Vec<String> = r.all().unwrap().into_iter().map(|o| o.uid).collect();
        assert_eq!(uids, ["k0", "k1", "k2", "k4", "k5", "k6", "k7", "k8", "k9"]);
        assert!(r.get("k3").unwrap().is_none());
        let found = r
            .find(&Query::new(vec![Filter::Name("name-k7".into())]))
            .unwrap();
        assert_eq!(found.len(), 1);
        // The sequence counter was re-derived after the replay.
        assert!(r.next_sequence().unwrap() > 10);
        // New commits after the cut survive the next crash, through the WAL again.
        r.pause_checkpoints(true);
        r.checkpoint().unwrap();
        copy_dir(&image, &base2);
        r.commit(vec![Change::Put(obj("k3", 4, &material(3)))])
            .unwrap();
        crash_image(&base2, &image, &image2);
    }
    let r = SledStore::open_with_kek(&image2, kek(1, 1)).unwrap();
    assert_eq!(r.sync_stats().replayed_frames, 1);
    assert_eq!(r.sync_stats().discarded_bytes, 0);
    check_all(&r, 10);
}

/// A checkpoint's new segment has zeros written ahead of its frames: a crash image whose
/// newest segment is one replays every frame, reads the zeros after the last one as the end,
/// and discards only the bytes of a frame torn over them.
#[test]
fn a_segment_with_zeros_ahead_replays_and_cuts_only_a_frame_torn_over_them() {
    let (dir, live, _base, image) = crash_dirs();
    let s = paused_store_and_base(&live, &dir.path().join("unused"));
    // The next segment gets twice what this one holds: room for the same frames.
    fill(&s, 10);
    s.checkpoint().unwrap();
    let base = dir.path().join("base-after-checkpoint");
    copy_dir(&live, &base);
    fill(&s, 10);
    crash_image(&base, &live, &image);
    drop(s);
    let seg = last_segment(&image);
    let mut bytes = std::fs::read(&seg).unwrap();
    let frames = wal::read_segment(&seg).unwrap().frames;
    assert_eq!(frames.len(), 10);
    let end: usize = frames.iter().map(|f| 8 + f.len()).sum();
    assert!(
        bytes.len() > end + 11,
        "no zeros ahead: {} bytes",
        bytes.len()
    );
    assert!(bytes[end..].iter().all(|b| *b == 0));
    let torn = wal::encode_frame(b"\x01never acknowledged").unwrap();
    bytes[end..end + 11].copy_from_slice(&torn[..11]);
    std::fs::write(&seg, &bytes).unwrap();
    let r = SledStore::open_with_kek(&image, kek(1, 1)).unwrap();
    let st = r.sync_stats();
    assert_eq!(st.replayed_frames, 10, "{st:?}");
    assert_eq!(st.discarded_bytes, 11, "{st:?}");
    check_all(&r, 10);
}

#[test]
fn frames_sled_already_has_are_skipped_so_replaying_twice_changes_nothing() {
    let (_dir, live, base, image) = crash_dirs();
    let s = paused_store_and_base(&live, &base);
    fill(&s, 8);
    s.commit(vec![
        Change::Put(obj("k2", 3, b"replaced")),
        Change::Delete("k5".into()),
    ])
    .unwrap();
    crash_image(&base, &live, &image);
    let expected = s.all().unwrap();
    drop(s);
    let segments: Vec<(PathBuf, Vec<u8>)> = wal::list_segments(&image.join("wal"))
        .unwrap()
        .into_iter()
        .map(|(_, p)| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    {
        let r = SledStore::open_with_kek(&image, kek(1, 1)).unwrap();
        assert_eq!(r.sync_stats().replayed_frames, 9);
        assert_eq!(r.all().unwrap(), expected);
    }
    // The same segments again (as if their deletion had not reached the disk).
    for (p, b) in &segments {
        std::fs::write(p, b).unwrap();
    }
    let r = SledStore::open_with_kek(&image, kek(1, 1)).unwrap();
    let st = r.sync_stats();
    assert_eq!((st.replayed_frames, st.skipped_frames), (0, 9), "{st:?}");
    assert_eq!(r.all().unwrap(), expected);
    assert_eq!(
        r.find(&Query::new(vec![Filter::Owner("alice".into())]))
            .unwrap(),
        expected
    );
}

/// The scenario the frame numbers exist for: records re-wrapped under a new KEK, the old KEK
/// retired, then a crash that leaves old WAL segments (written under the old KEK) on disk.
/// Replaying them would bring back records only the retired KEK opens.
#[test]
fn a_crash_after_a_kek_rotation_does_not_bring_back_records_under_the_retired_kek() {
    let (dir, live, base, image) = crash_dirs();
    let s = paused_store_and_base(&live, &base);
    fill(&s, 20);
    let old_wal = dir.path().join("old-wal");
    copy_dir(&live.join("wal"), &old_wal);
    let r = s.rotate_kek(kek(2, 2)).unwrap();
    assert_eq!((r.rewrapped, r.retired), (20, vec![KekId(1)]));
    // The rotation's checkpoints deleted the segments written under KEK 1.
    assert!(s.sync_stats().checkpoints >= 3);
    s.commit(vec![Change::Put(obj("k20", 21, &material(20)))])
        .unwrap();
    // Crash image: the files as they are, plus the old segments (a deletion that never
    // reached the disk).
    copy_dir(&live, &image);
    copy_dir(&old_wal, &image.join("wal"));
    drop(s);
    let r = SledStore::open(&image).unwrap();
    assert_eq!(r.required_keks().unwrap(), [KekId(2)]);
    r.unlock(vec![kek(2, 2)]).unwrap();
    check_all(&r, 21);
    assert!(r.corrupt_records().is_empty());
    assert!(r.sync_stats().skipped_frames >= 20, "{:?}", r.sync_stats());
}

#[test]
fn a_checkpoint_keeps_one_segment_and_a_clean_close_leaves_it_empty() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
        s.pause_checkpoints(true);
        fill(&s, 3);
        let seg = last_segment(dir.path());
        let held = std::fs::metadata(&seg).unwrap().len();
        assert!(held > 0);
        let before = s.sync_stats().checkpoints;
        s.checkpoint().unwrap();
        assert_eq!(s.sync_stats().checkpoints, before + 1);
        let segs = wal::list_segments(&dir.path().join("wal")).unwrap();
        assert_eq!(segs.len(), 1);
        // The new segment holds only the zeros written ahead for the next frames.
        assert_no_frames(&segs[0].1);
        assert_eq!(
            std::fs::metadata(&segs[0].1).unwrap().len(),
            wal::prefill_after(held)
        );
        assert!(segs[0].1 != seg);
        // Background checkpoints run when resumed.
        s.pause_checkpoints(false);
        fill(&s, 4);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while s.sync_stats().checkpoints == before + 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "no background checkpoint"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let segs = wal::list_segments(&dir.path().join("wal")).unwrap();
    assert_eq!(segs.len(), 1);
    // The close cut the zeros written ahead.
    assert_eq!(std::fs::metadata(&segs[0].1).unwrap().len(), 0);
    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    assert_eq!(s.sync_stats().replayed_frames, 0);
    assert_eq!(s.sync_stats().discarded_bytes, 0);
    check_all(&s, 4);
}

/// A segment with no frames: empty, or only the zeros written ahead of its first frame.
fn assert_no_frames(segment: &Path) {
    let bytes = std::fs::read(segment).unwrap();
    assert!(bytes.iter().all(|b| *b == 0), "{}", segment.display());
    let contents = wal::read_segment(segment).unwrap();
    assert!(contents.frames.is_empty());
    assert_eq!(contents.torn_bytes, 0);
}

/// Concurrent commits are applied in batches (one sled transaction); a commit whose
/// transaction aborts (an expectation that no longer holds for the object it replaces) fails
/// alone and the others of its batch are applied, indexed and durable.
#[test]
fn a_commit_that_aborts_fails_alone_in_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap());
    s.pause_checkpoints(true);
    fill(&s, 1);
    let stale = Revision([7; 16]);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..10)
                    .map(|i| {
                        let n = if t == 0 && i % 3 == 0 {
                            0
                        } else {
                            t * 100 + i + 1
                        };
                        let mut changes = vec![Change::Put(obj(&format!("k{n}"), n as u64, b"m"))];
                        if n == 0 {
                            changes.push(Change::Expect {
                                uid: "k0".into(),
                                revision: Some(stale),
                            });
                        }
                        s.commit(changes).is_ok()
                    })
                    .collect::<Vec<bool>>()
            })
        })
        .collect();
    let results: Vec<Vec<bool>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for (t, r) in results.iter().enumerate() {
        for (i, ok) in r.iter().enumerate() {
            assert_eq!(*ok, !(t == 0 && i % 3 == 0), "thread {t} commit {i}");
        }
    }
    let count = 1 + 16 * 10 - 4;
    let owned = Query::new(vec![Filter::Owner("alice".into())]);
    assert_eq!(s.all().unwrap().len(), count);
    assert_eq!(s.find(&owned).unwrap().len(), count);
    // The failed commits left k0 as it was, in the index too.
    let name = Query::new(vec![Filter::Name("name-k0".into())]);
    assert_eq!(s.find(&name).unwrap(), vec![obj("k0", 1, &material(0))]);
    // And durable.
    drop(Arc::try_unwrap(s).unwrap());
    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    assert_eq!(s.all().unwrap().len(), count);
    assert_eq!(s.find(&owned).unwrap().len(), count);
}

/// A store of format 1 (indexes as sled trees, WAL frames with index keys) opens: its index
/// trees are dropped, a format-1 WAL frame is replayed, the indexes are rebuilt in memory
/// from the records, and the store is format 2 from then on.
#[test]
fn a_format_1_store_is_migrated_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
        fill(&s, 3);
    }
    // Make it look like format 1: the format byte, index trees with entries (one naming an
    // object that does not exist), refs entries beside the applied frame, and a format-1
    // frame in the WAL holding k3 that sled never got.
    let applied;
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert(META_FORMAT, &[1])
            .unwrap();
        db.open_tree("index")
            .unwrap()
            .insert(b"o\0\0\0\x05alicek9", &[])
            .unwrap();
        db.open_tree("seq")
            .unwrap()
            .insert(9u64.to_be_bytes(), b"k9".as_slice())
            .unwrap();
        let refs = db.open_tree("refs").unwrap();
        refs.insert("k0", &[0, 0, 0, 1, 0]).unwrap();
        applied = applied_frame(&refs).unwrap();
        db.flush().unwrap();
    }
    let k3 = obj("k3", 4, &material(3));
    let record = record::encode(&k3, &kek(1, 1)).unwrap();
    let mut change = vec![b'P'];
    push_lp(&mut change, b"k3").unwrap();
    push_lp(&mut change, &record).unwrap();
    push_lp(&mut change, b"\0\0\0\x01x").unwrap();
    let mut payload = vec![1];
    payload.extend_from_slice(&(applied + 1).to_be_bytes());
    push_lp(&mut payload, &change).unwrap();
    let segs = wal::list_segments(&dir.path().join("wal")).unwrap();
    let (_, last) = segs.last().unwrap();
    std::fs::write(last, wal::encode_frame(&payload).unwrap()).unwrap();

    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    assert_eq!(s.sync_stats().replayed_frames, 1);
    check_all(&s, 4);
    let uids =
        |q: Query| -> Vec<String> { s.find(&q).unwrap().into_iter().map(|o| o.uid).collect() };
    assert_eq!(
        uids(Query::new(vec![Filter::Owner("alice".into())])),
        ["k0", "k1", "k2", "k3"]
    );
    assert_eq!(
        uids(Query::new(vec![Filter::Name("name-k3".into())])),
        ["k3"]
    );
    let all: Vec<String> = s.all().unwrap().into_iter().map(|o| o.uid).collect();
    assert_eq!(all, ["k0", "k1", "k2", "k3"]);
    assert_eq!(
        s.meta.get(META_FORMAT).unwrap().unwrap().as_ref(),
        [STORE_FORMAT]
    );
    drop(s);
    let db = sled::open(dir.path()).unwrap();
    let names: Vec<Vec<u8>> = db.tree_names().into_iter().map(|n| n.to_vec()).collect();
    assert!(!names.contains(&b"index".to_vec()) && !names.contains(&b"seq".to_vec()));
    let refs: Vec<_> = db
        .open_tree("refs")
        .unwrap()
        .iter()
        .keys()
        .map(|k| k.unwrap().to_vec())
        .collect();
    assert_eq!(refs, [APPLIED_KEY.to_vec()]);
}

/// An older kmipd refuses a store of a newer format instead of misreading it; this build
/// refuses format 3.
#[test]
fn a_store_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap());
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert(META_FORMAT, &[STORE_FORMAT + 1])
            .unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("newer kmipd"), "{err}");
}

// ---- commit pipeline (pipeline.rs) ------------------------------------------------------------

/// A `done` that counts its calls in `calls[i]` and reports `(i, ok)` on `tx`.
fn counting_done(
    i: usize,
    calls: &Arc<Vec<AtomicU64>>,
    tx: &mpsc::Sender<(usize, bool)>,
) -> crate::CommitDone {
    let (calls, tx) = (calls.clone(), tx.clone());
    Box::new(move |r: Result<(), StoreError>| {
        calls[i].fetch_add(1, Ordering::SeqCst);
        let _ = tx.send((i, r.is_ok()));
    })
}

fn counters(n: usize) -> Arc<Vec<AtomicU64>> {
    Arc::new((0..n).map(|_| AtomicU64::new(0)).collect())
}

/// Commits `commits` so that the applier takes them as one batch: a first commit (of `Z`) is
/// queued while the test holds the WAL, so the applier blocks on it while the others queue up.
/// Returns each commit's outcome (the first one's too, at index 0), after checking that every
/// completion ran exactly once.
fn in_one_batch(s: &SledStore, commits: Vec<Vec<Change>>) -> Vec<bool> {
    let n = commits.len() + 1;
    let calls = counters(n);
    let (tx, rx) = mpsc::channel();
    let held = s.durable.wal.lock().unwrap();
    s.commit_then(
        vec![Change::Put(versioned("Z", 9, 0))],
        counting_done(0, &calls, &tx),
    );
    std::thread::sleep(std::time::Duration::from_millis(100));
    for (i, c) in commits.into_iter().enumerate() {
        s.commit_then(c, counting_done(i + 1, &calls, &tx));
    }
    drop(held);
    drop(tx);
    let mut ok = vec![false; n];
    for _ in 0..n {
        let (i, r) = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
        ok[i] = r;
    }
    assert!(calls.iter().all(|c| c.load(Ordering::SeqCst) == 1));
    ok
}

/// `commit_then` from many threads: every `done` is called exactly once, with Ok; after it
/// the object is readable, and it survives a crash image (sled's files as of the last
/// checkpoint plus the WAL), i.e. it was in the fdatasynced log when `done` ran.
#[test]
fn commit_then_from_many_threads_completes_each_once_and_durably() {
    let (_dir, live, base, image) = crash_dirs();
    let s = Arc::new(paused_store_and_base(&live, &base));
    let before = s.sync_stats();
    let (threads, per) = (8usize, 40usize);
    let n = threads * per;
    let calls = counters(n);
    let (tx, rx) = mpsc::channel();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (s, calls, tx) = (s.clone(), calls.clone(), tx.clone());
            std::thread::spawn(move || {
                for j in 0..per {
                    let i = t * per + j;
                    let o = obj(&format!("k{i}"), i as u64 + 1, &material(i));
                    s.commit_then(vec![Change::Put(o)], counting_done(i, &calls, &tx));
                }
            })
        })
        .collect();
    drop(tx);
    for w in workers {
        w.join().unwrap();
    }
    let mut seen = 0;
    while let Ok((i, ok)) = rx.recv_timeout(std::time::Duration::from_secs(30)) {
        assert!(ok, "commit {i} failed");
        let o = s.get(&format!("k{i}")).unwrap().unwrap();
        assert_eq!(o, obj(&format!("k{i}"), i as u64 + 1, &material(i)));
        seen += 1;
        if seen == n {
            break;
        }
    }
    assert_eq!(seen, n);
    let st = s.sync_stats();
    assert_eq!(st.commits - before.commits, n as u64);
    assert!(st.group_syncs > before.group_syncs);
    crash_image(&base, &live, &image);
    drop(Arc::try_unwrap(s).unwrap());
    assert!(calls.iter().all(|c| c.load(Ordering::SeqCst) == 1));
    let r = SledStore::open_with_kek(&image, kek(1, 1)).unwrap();
    assert!(r.sync_stats().replayed_frames > 0);
    check_all(&r, n);
}

/// Dropping the store completes what is still queued (applied, synced, `done(Ok)`), and
/// the commits are there after reopening.
#[test]
fn dropping_the_store_completes_queued_commits() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    let n = 300;
    let calls = counters(n);
    let (tx, rx) = mpsc::channel();
    for i in 0..n {
        let o = obj(&format!("k{i}"), i as u64 + 1, &material(i));
        s.commit_then(vec![Change::Put(o)], counting_done(i, &calls, &tx));
    }
    drop(s);
    drop(tx);
    let results: Vec<(usize, bool)> = rx.iter().collect();
    assert_eq!(results.len(), n);
    assert!(results.iter().all(|(_, ok)| *ok));
    assert!(calls.iter().all(|c| c.load(Ordering::SeqCst) == 1));
    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    check_all(&s, n);
}

/// Once the store is poisoned every commit completes with Err (never dropped), including
/// the ones queued around the moment it happened; each `done` is called exactly once.
#[test]
fn a_poisoned_store_completes_every_commit_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    fill(&s, 2);
    let n = 200;
    let calls = counters(n);
    let (tx, rx) = mpsc::channel();
    for i in 0..n {
        if i == n / 2 {
            s.durable.poison.poison("test: disk gone".into());
        }
        let o = obj(&format!("p{i}"), i as u64 + 10, b"m");
        s.commit_then(vec![Change::Put(o)], counting_done(i, &calls, &tx));
    }
    drop(tx);
    let mut results = Vec::new();
    for _ in 0..n {
        results.push(rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap());
    }
    // Everything queued after the poison failed (earlier ones may have, too).
    assert!(results.iter().all(|(i, ok)| *i < n / 2 || !*ok));
    let err = s
        .commit(vec![Change::Put(obj("late", 999, b"m"))])
        .unwrap_err();
    assert!(err.to_string().contains("disk gone"), "{err}");
    drop(s);
    assert!(calls.iter().all(|c| c.load(Ordering::SeqCst) == 1));
}

/// An error before anything is queued (here: no KEK to encode with) completes at once, on
/// the caller's thread, before `commit_then` returns; an empty commit completes with Ok.
#[test]
fn an_encoding_error_completes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let got = Arc::new(Mutex::new(None));
    let g = got.clone();
    s.commit_then(
        vec![Change::Put(obj("k0", 1, b"m"))],
        Box::new(move |r| *g.lock().unwrap() = Some(r)),
    );
    assert!(matches!(
        got.lock().unwrap().take(),
        Some(Err(StoreError::Locked))
    ));
    let g = got.clone();
    s.commit_then(vec![], Box::new(move |r| *g.lock().unwrap() = Some(r)));
    assert!(matches!(got.lock().unwrap().take(), Some(Ok(()))));
}

/// A completion dropped without being called (a pipeline thread gone) reports an error.
#[test]
fn a_dropped_completion_reports_an_error() {
    let got = Arc::new(Mutex::new(None));
    let g = got.clone();
    drop(Completion::new(Box::new(move |r| {
        *g.lock().unwrap() = Some(r)
    })));
    assert!(matches!(
        got.lock().unwrap().take(),
        Some(Err(StoreError::Backend(_)))
    ));
}

// ---- conditional commits (Change::Expect) ------------------------------------------------------

fn versioned(uid: &str, seq: u64, version: u8) -> ManagedObject {
    obj(uid, seq, &[b'v', version])
}

fn expect(uid: &str, revision: Option<Revision>) -> Change {
    Change::Expect {
        uid: uid.into(),
        revision,
    }
}

#[test]
fn sled_store_search_conditions() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    crate::conditional_tests::search_conditions(&s);
}

/// Two commits in one batch that each searched for a Name, found nothing and add an object of
/// that Name: the second sees the first (applied and indexed before it is checked), so
/// exactly one wins; a commit of another Name in the same batch is not affected.
#[test]
fn search_conditions_in_one_batch_see_each_other() {
    use crate::conditional_tests::{named, no_other_named};
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    s.pause_checkpoints(true);
    let ok = in_one_batch(
        &s,
        vec![
            vec![no_other_named("n", &[]), Change::Put(named("P", 1, "n"))],
            vec![no_other_named("n", &[]), Change::Put(named("Q", 2, "n"))],
            vec![no_other_named("m", &[]), Change::Put(named("R", 3, "m"))],
        ],
    );
    assert!(ok[0] && ok[3], "{ok:?}");
    assert!(ok[1] && !ok[2], "the first queued wins: {ok:?}");
    let found = s.find(&Query::new(vec![Filter::Name("n".into())])).unwrap();
    assert_eq!(found, vec![named("P", 1, "n")]);
    assert!(s.get("Q").unwrap().is_none());
}

#[test]
fn sled_store_locate_after_updates() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    crate::conditional_tests::locate_after_updates(&s);
}

/// Settings, and they survive a reopen.
#[test]
fn sled_store_settings_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
        crate::conditional_tests::settings(&s);
    }
    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    assert_eq!(s.setting("constraints").unwrap(), Some(b"two".to_vec()));
    assert_eq!(s.setting("other").unwrap(), None);
    assert_eq!(
        s.settings().unwrap(),
        vec![("constraints".to_owned(), b"two".to_vec())]
    );
}

#[test]
fn sled_store_conditional_commits() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    crate::conditional_tests::conditional_commits(&s, &versioned);
}

/// A commit made only of expectations appends no WAL frame.
#[test]
fn a_commit_of_expectations_only_writes_no_frame() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    s.commit(vec![Change::Put(versioned("A", 1, 0))]).unwrap();
    let (_, rev) = s.get_revised("A").unwrap().unwrap();
    let frames = s.sync_stats().wal_frames;
    s.commit(vec![expect("A", Some(rev)), expect("B", None)])
        .unwrap();
    assert!(matches!(
        s.commit(vec![expect("A", None)]),
        Err(StoreError::Conflict { uid }) if uid == "A"
    ));
    assert_eq!(s.sync_stats().wal_frames, frames);
}

/// Two commits from the same base revision queued into one batch: the first applied wins,
/// the second conflicts alone, and a non-conflicting commit of the same batch is applied.
#[test]
fn concurrent_conflicting_commits_in_one_batch_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    s.pause_checkpoints(true);
    s.commit(vec![Change::Put(versioned("A", 1, 0))]).unwrap();
    let (_, base) = s.get_revised("A").unwrap().unwrap();
    let ok = in_one_batch(
        &s,
        vec![
            vec![expect("A", Some(base)), Change::Put(versioned("A", 1, 1))],
            vec![
                expect("A", Some(base)),
                Change::Put(versioned("A", 1, 2)),
                Change::Put(versioned("X", 3, 0)),
            ],
            vec![expect("Y", None), Change::Put(versioned("Y", 4, 0))],
        ],
    );
    assert!(ok[0] && ok[3], "{ok:?}");
    assert!(ok[1] != ok[2], "exactly one of the two wins: {ok:?}");
    let winner = if ok[1] { 1 } else { 2 };
    assert_eq!(s.get("A").unwrap().unwrap(), versioned("A", 1, winner));
    assert_eq!(s.get("X").unwrap().is_some(), ok[2]);
    assert_eq!(s.get("Y").unwrap().unwrap(), versioned("Y", 4, 0));
}

/// The loser of a conflict gets `StoreError::Conflict` with its uid (blocking commits).
#[test]
fn the_losing_commit_gets_conflict_with_the_uid() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap());
    s.commit(vec![Change::Put(versioned("A", 1, 0))]).unwrap();
    let (_, base) = s.get_revised("A").unwrap().unwrap();
    let workers: Vec<_> = (1..=8u8)
        .map(|v| {
            let s = s.clone();
            std::thread::spawn(move || {
                s.commit(vec![
                    expect("A", Some(base)),
                    Change::Put(versioned("A", 1, v)),
                ])
                .map(|()| v)
            })
        })
        .collect();
    let results: Vec<Result<u8, StoreError>> =
        workers.into_iter().map(|w| w.join().unwrap()).collect();
    let winners: Vec<u8> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, StoreError::Conflict { uid } if uid == "A"),
                "{e:?}"
            );
        }
    }
    assert_eq!(s.get("A").unwrap().unwrap(), versioned("A", 1, winners[0]));
}

/// A Put committed after a passed expectation is in the WAL like any other and survives a
/// crash (replayed without re-checking); a conflicting commit left nothing to replay.
#[test]
fn a_conditional_commit_survives_a_crash_through_the_wal() {
    let (_dir, live, base, image) = crash_dirs();
    let s = paused_store_and_base(&live, &base);
    s.commit(vec![expect("A", None), Change::Put(versioned("A", 1, 0))])
        .unwrap();
    let (_, rev0) = s.get_revised("A").unwrap().unwrap();
    s.commit(vec![
        expect("A", Some(rev0)),
        Change::Put(versioned("A", 1, 1)),
    ])
    .unwrap();
    assert!(matches!(
        s.commit(vec![
            expect("A", Some(rev0)),
            Change::Put(versioned("A", 1, 2)),
            Change::Put(versioned("B", 2, 0)),
        ]),
        Err(StoreError::Conflict { .. })
    ));
    let (_, rev1) = s.get_revised("A").unwrap().unwrap();
    crash_image(&base, &live, &image);
    drop(s);
    let r = SledStore::open_with_kek(&image, kek(1, 1)).unwrap();
    assert_eq!(r.sync_stats().replayed_frames, 2);
    let (a, rev) = r.get_revised("A").unwrap().unwrap();
    assert_eq!(a, versioned("A", 1, 1));
    assert_eq!(rev, rev1, "the same record after the replay");
    assert!(r.get("B").unwrap().is_none());
}

/// Every file sled writes must be one the checkpoint's fsyncs know (`durable::sled_file`), or
/// the WAL's own: a sled that writes anything else (a new release) fails here instead of
/// losing acknowledged writes silently. Covers the log, `conf`, snapshots and blobs (a large
/// record), after writes, checkpoints and a reopen.
#[test]
fn a_sled_directory_holds_only_files_the_durability_code_knows() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![0x5a; 300 * 1024];
    {
        let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
        fill(&s, 50);
        s.commit(vec![Change::Put(obj("big", 1000, &big))]).unwrap();
        s.checkpoint().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    s.unlock(vec![kek(1, 1)]).unwrap();
    s.commit(vec![Change::Put(obj("big2", 1001, &big))])
        .unwrap();
    s.commit(vec![Change::Delete("k3".into())]).unwrap();
    s.checkpoint().unwrap();

    let wal_dir = dir.path().join("wal");
    let segments: Vec<PathBuf> = wal::list_segments(&wal_dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let mut files = Vec::new();
    let mut pending = vec![dir.path().to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                pending.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    let mut unknown = Vec::new();
    let mut blobs = 0;
    for f in &files {
        let rel = f.strip_prefix(dir.path()).unwrap();
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_str().unwrap())
            .collect::<Vec<_>>()
            .join("/");
        if rel.starts_with("blobs/") {
            blobs += 1;
        }
        let known = if rel.starts_with("wal/") {
            segments.contains(f)
        } else {
            durable::sled_file(&rel)
        };
        if !known {
            unknown.push(rel);
        }
    }
    assert!(
        unknown.is_empty(),
        "files the durability code does not know (check sled_store/durable.rs): {unknown:?}"
    );
    assert!(files.iter().any(|f| f.ends_with("db")), "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("conf")), "{files:?}");
    assert!(
        blobs > 0,
        "no blob written, the test does not cover them: {files:?}"
    );
    assert!(!segments.is_empty());
    assert_eq!(s.get("big2").unwrap().unwrap(), obj("big2", 1001, &big));
}

/// The rotation scheduler's query is answered by the in-memory index of rotation due dates
/// (rebuilt from the records at open), never by reading every record.
#[test]
fn rotation_due_is_answered_by_the_index_also_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rotating = |uid: &str, seq: u64, automatic: bool, initial: i64, interval: u32| {
        let mut o = obj(uid, seq, b"m");
        o.attributes
            .set(tag::ROTATE_AUTOMATIC, Value::Boolean(automatic));
        o.attributes
            .set(tag::INITIAL_DATE, Value::DateTime(initial));
        o.attributes
            .set(tag::ROTATE_INTERVAL, Value::Interval(interval));
        o
    };
    let query = Query::new(vec![Filter::RotationDue(1_500)]);
    assert_eq!(
        super::commit::select_terms(&query).unwrap().len(),
        1,
        "an index term, so find reads the index"
    );
    let due = |s: &SledStore| -> Vec<String> {
        s.find(&query).unwrap().into_iter().map(|o| o.uid).collect()
    };
    {
        let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
        s.commit(vec![
            Change::Put(rotating("due", 1, true, 1_000, 100)),
            Change::Put(rotating("exactly", 2, true, 1_000, 500)),
            Change::Put(rotating("later", 3, true, 1_000, 900)),
            Change::Put(rotating("manual", 4, false, 1_000, 100)),
            Change::Put(obj("plain", 5, b"m")),
        ])
        .unwrap();
        assert_eq!(due(&s), ["due", "exactly"]);
        // A changed interval moves the object in the index.
        s.commit(vec![Change::Put(rotating("later", 3, true, 1_000, 400))])
            .unwrap();
        assert_eq!(due(&s), ["due", "exactly", "later"]);
    }
    let s = SledStore::open(dir.path()).unwrap();
    s.unlock(vec![kek(1, 1)]).unwrap();
    assert_eq!(due(&s), ["due", "exactly", "later"]);
}

// ---- the cache of decoded objects (cache.rs) ---------------------------------------------------

/// The store answers `uid` as sled does: the cached read (object and revision) equals a read
/// that bypasses the cache.
fn reads_as_sled(s: &SledStore, uid: &str) -> Option<(ManagedObject, Revision)> {
    let cached = s.get_revised(uid).unwrap();
    assert_eq!(cached, s.get_uncached(uid).unwrap(), "{uid}");
    assert_eq!(
        s.get(uid).unwrap(),
        cached.as_ref().map(|(o, _)| o.clone()),
        "{uid}"
    );
    cached
}

fn cache_entries(s: &SledStore) -> usize {
    s.cache.usage().0
}

/// A read after each kind of commit (put, modify, delete, a conflict, expectations only, a
/// search condition that failed) and after a KEK rotation's re-wrap returns exactly what sled
/// returns; the committer fills the cache with what it wrote.
#[test]
fn a_cached_read_after_each_kind_of_commit_is_what_sled_holds() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    assert!(s.cache.enabled());
    // Put: in the cache from the committer, before any read.
    s.commit(vec![Change::Put(versioned("A", 1, 0))]).unwrap();
    assert_eq!(cache_entries(&s), 1);
    let (o, r0) = reads_as_sled(&s, "A").unwrap();
    assert_eq!(o, versioned("A", 1, 0));
    // Modify, conditional on the read.
    s.commit(vec![
        expect("A", Some(r0)),
        Change::Put(versioned("A", 1, 1)),
    ])
    .unwrap();
    let (o, r1) = reads_as_sled(&s, "A").unwrap();
    assert_eq!(o, versioned("A", 1, 1));
    assert_ne!(r0, r1);
    // A conflict changes nothing.
    assert!(matches!(
        s.commit(vec![
            expect("A", Some(r0)),
            Change::Put(versioned("A", 1, 2))
        ]),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(reads_as_sled(&s, "A").unwrap().1, r1);
    // Expectations only, and a failed search condition, change nothing.
    s.commit(vec![expect("A", Some(r1))]).unwrap();
    assert_eq!(reads_as_sled(&s, "A").unwrap().1, r1);
    let taken = crate::conditional_tests::named("N", 5, "n");
    s.commit(vec![Change::Put(taken)]).unwrap();
    assert!(matches!(
        s.commit(vec![
            crate::conditional_tests::no_other_named("n", &[]),
            Change::Put(versioned("A", 1, 3)),
        ]),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(reads_as_sled(&s, "A").unwrap().1, r1);
    // Several writes of one uid in one commit: the last counts.
    s.commit(vec![
        Change::Put(versioned("B", 2, 0)),
        Change::Put(versioned("B", 2, 1)),
    ])
    .unwrap();
    assert_eq!(reads_as_sled(&s, "B").unwrap().0, versioned("B", 2, 1));
    s.commit(vec![
        Change::Put(versioned("C", 3, 0)),
        Change::Delete("C".into()),
    ])
    .unwrap();
    assert_eq!(reads_as_sled(&s, "C"), None);
    // Delete.
    s.commit(vec![expect("A", Some(r1)), Change::Delete("A".into())])
        .unwrap();
    assert_eq!(reads_as_sled(&s, "A"), None);
    // Created again after the delete.
    s.commit(vec![expect("A", None), Change::Put(versioned("A", 1, 4))])
        .unwrap();
    assert_eq!(reads_as_sled(&s, "A").unwrap().0, versioned("A", 1, 4));
    // A read fills the cache: an object written before a reopen.
    drop(s);
    let s = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    assert_eq!(cache_entries(&s), 0);
    let (_, rb) = reads_as_sled(&s, "B").unwrap();
    assert_eq!(cache_entries(&s), 1);
    // A KEK rotation re-wraps the records (new bytes, new revisions): the cache follows, and a
    // commit conditional on what was read before it conflicts, as without a cache.
    fill(&s, 20);
    for i in 0..20 {
        reads_as_sled(&s, &format!("k{i}"));
    }
    s.begin_kek_rotation(kek(2, 2)).unwrap();
    assert_eq!(cache_entries(&s), 0);
    reads_as_sled(&s, "B");
    let (done, _) = s.rewrap_step(5).unwrap();
    assert_eq!(done, 5);
    let (_, rb2) = reads_as_sled(&s, "B").unwrap();
    assert_ne!(rb, rb2, "B was re-wrapped");
    assert!(matches!(
        s.commit(vec![expect("B", Some(rb)), Change::Delete("B".into())]),
        Err(StoreError::Conflict { .. })
    ));
    let r = s.rotate_kek(kek(2, 2)).unwrap();
    assert_eq!(r.retired, [KekId(1)]);
    for uid in ["A", "B", "N"]
        .into_iter()
        .map(String::from)
        .chain((0..20).map(|i| format!("k{i}")))
    {
        assert!(reads_as_sled(&s, &uid).is_some(), "{uid}");
    }
}

/// Listings read through the cache and agree with sled; with the cache off (either bound 0)
/// nothing is kept and reads are the same.
#[test]
fn listings_and_a_disabled_cache_read_as_sled() {
    for (entries, mb) in [(10_000, 32), (0, 32), (10_000, 0), (3, 32)] {
        let dir = tempfile::tempdir().unwrap();
        let options = SledOptions {
            object_cache_entries: entries,
            object_cache_mb: mb,
            ..SledOptions::default()
        };
        let s = SledStore::open_with(dir.path(), &options).unwrap();
        s.unlock(vec![kek(1, 1)]).unwrap();
        fill(&s, 10);
        s.commit(vec![Change::Delete("k3".into())]).unwrap();
        assert!(cache_entries(&s) <= entries.min(if mb == 0 { 0 } else { 10 }));
        let all = s.all().unwrap();
        assert_eq!(all.len(), 9);
        for o in &all {
            assert_eq!(
                Some(o.clone()),
                s.get_uncached(&o.uid).unwrap().map(|(o, _)| o)
            );
            reads_as_sled(&s, &o.uid);
        }
        assert!(cache_entries(&s) <= entries.min(if mb == 0 { 0 } else { 10 }));
        let app1 = s
            .find(&Query::new(vec![Filter::Attr(
                AttrName::Custom {
                    vendor: None,
                    name: "x-app".into(),
                },
                Value::TextString("app1".into()),
            )]))
            .unwrap();
        assert_eq!(app1.len(), 5, "k0, k2, k4, k6, k8 have seq 1, 3, 5, 7, 9");
    }
}

/// Reads racing commits on one object never return a revision older than the last
/// acknowledged commit's, nor an object a later acknowledged delete removed, nor an object with
/// another object's revision; each writer's commits, conditional on its own reads, never
/// conflict; eviction (a cache of 2 entries over 4 objects) races too.
#[test]
fn reads_racing_commits_never_go_back_past_an_acknowledged_commit() {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicU64;
    let dir = tempfile::tempdir().unwrap();
    let options = SledOptions {
        object_cache_entries: 2,
        ..SledOptions::default()
    };
    let s = Arc::new(SledStore::open_with(dir.path(), &options).unwrap());
    s.unlock(vec![kek(1, 1)]).unwrap();
    const UIDS: [&str; 4] = ["A", "B", "C", "D"];
    const STEPS: u64 = 300;
    // Per uid: the last step acknowledged and the last step begun (each step a Put of that
    // version, every fifth a Delete).
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..4).map(|_| AtomicU64::new(0)).collect());
    let begun: Arc<Vec<AtomicU64>> = Arc::new((0..4).map(|_| AtomicU64::new(0)).collect());
    let truth: Arc<Mutex<HashMap<(usize, u64), Revision>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let version = |o: &ManagedObject| -> u64 {
        match o.attributes.get(tag::INITIAL_DATE) {
            Some(Value::DateTime(d)) => u64::try_from(*d - 1_000_000).unwrap(),
            other => panic!("{other:?}"),
        }
    };
    let at = |uid: usize, v: u64| {
        let mut o = obj(UIDS[uid], 1, &material(usize::try_from(v).unwrap()));
        o.attributes.set(
            tag::INITIAL_DATE,
            Value::DateTime(1_000_000 + i64::try_from(v).unwrap()),
        );
        o
    };
    let writers: Vec<_> = (0..UIDS.len())
        .map(|u| {
            let (s, acked, begun, truth) = (s.clone(), acked.clone(), begun.clone(), truth.clone());
            std::thread::spawn(move || {
                for v in 1..=STEPS {
                    begun[u].store(v, Ordering::SeqCst);
                    let change = if v % 5 == 0 {
                        Change::Delete(UIDS[u].into())
                    } else {
                        Change::Put(at(u, v))
                    };
                    // Conditional on what this writer (the only one of the uid) read: the
                    // committer's check (against the cache's revision) must let it pass.
                    let read = s.get_revised(UIDS[u]).unwrap().map(|(_, r)| r);
                    s.commit(vec![expect(UIDS[u], read), change]).unwrap();
                    if v % 5 != 0 {
                        let (_, r) = s.get_uncached(UIDS[u]).unwrap().unwrap();
                        truth.lock().unwrap().insert((u, v), r);
                    }
                    acked[u].store(v, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..3)
        .map(|k| {
            let (s, acked, begun, stop) = (s.clone(), acked.clone(), begun.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut reads = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let u = usize::try_from(reads % 4).unwrap() ^ (k % 2);
                    reads += 1;
                    let floor = acked[u].load(Ordering::SeqCst);
                    let got = s.get_revised(UIDS[u]).unwrap();
                    let ceiling = begun[u].load(Ordering::SeqCst);
                    match got {
                        Some((o, r)) => {
                            let v = version(&o);
                            assert_eq!(o, at(u, v));
                            assert!(
                                v >= floor && v <= ceiling && v % 5 != 0,
                                "{}: read version {v} after {floor} was acknowledged",
                                UIDS[u]
                            );
                            seen.push((u, v, r));
                        }
                        None => assert!(
                            floor == 0 || (floor..=ceiling).any(|d| d % 5 == 0),
                            "{}: read nothing after {floor} was acknowledged",
                            UIDS[u]
                        ),
                    }
                }
                (seen, reads)
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let truth = truth.lock().unwrap();
    let mut total = 0;
    for r in readers {
        let (seen, reads) = r.join().unwrap();
        total += reads;
        for (u, v, r) in seen {
            assert_eq!(truth.get(&(u, v)), Some(&r), "{} version {v}", UIDS[u]);
        }
    }
    assert!(total > 100, "the readers ran: {total}");
    for uid in UIDS {
        reads_as_sled(&s, uid);
    }
}

/// A Put that leaves the object structure as it was writes the wrapped form the cached entry
/// holds (`ObjectCache::sealed_for`), and that is the record a fresh wrap gives; a Put that
/// changes the key material, or one with the cache off, wraps anew. Each reads back from sled.
#[test]
fn a_put_of_the_same_object_structure_writes_the_same_wrapped_form() {
    for cache in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let options = if cache {
            SledOptions::default()
        } else {
            SledOptions {
                object_cache_entries: 0,
                ..SledOptions::default()
            }
        };
        let s = SledStore::open_with(dir.path(), &options).unwrap();
        s.unlock(vec![kek(1, 1)]).unwrap();
        let first = obj("A", 1, b"material one");
        s.commit(vec![Change::Put(first.clone())]).unwrap();
        let mut edited = first.clone();
        edited.attributes.set(tag::STATE, Value::Enumeration(2));
        if cache {
            let ring = s.current().unwrap();
            assert!(s.cache.sealed_for(&edited, ring.id()).is_some());
            assert!(s.cache.sealed_for(&edited, KekId(2)).is_none());
            let other = obj("A", 1, b"material two");
            assert!(s.cache.sealed_for(&other, ring.id()).is_none());
        }
        s.commit(vec![Change::Put(edited.clone())]).unwrap();
        let fresh = record::encode(&edited, &s.current().unwrap()).unwrap();
        assert_eq!(
            s.objects.get(b"A").unwrap().unwrap().as_ref(),
            fresh.as_slice()
        );
        assert_eq!(reads_as_sled(&s, "A").unwrap().0, edited);
        let rekeyed = obj("A", 1, b"material two");
        s.commit(vec![Change::Put(rekeyed.clone())]).unwrap();
        assert_eq!(reads_as_sled(&s, "A").unwrap().0, rekeyed);
        assert_eq!(s.get_uncached("A").unwrap().unwrap().0, rekeyed);
    }
}
