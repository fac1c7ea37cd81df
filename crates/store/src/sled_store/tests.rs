#![allow(clippy::as_conversions, clippy::indexing_slicing)]

use super::*;
use kmipd_proto::attributes::{AttrName, Attributes};
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};
use zeroize::Zeroizing;

fn kek(id: u32, b: u8) -> Kek {
    Kek::new(KekId(id), &Zeroizing::new([b; 32]))
}

fn obj(uid: &str, seq: u64, material: &[u8]) -> ManagedObject {
    let mut attributes = Attributes::new();
    attributes.set(tag::OBJECT_TYPE, Value::Enumeration(2));
    attributes.set(tag::STATE, Value::Enumeration(1));
    attributes.set(
        tag::INITIAL_DATE,
        Value::DateTime(1000 + i64::try_from(seq).unwrap()),
    );
    attributes.set_named(
        AttrName::Custom {
            vendor: None,
            name: "x-app".into(),
        },
        Value::TextString(format!("app{}", seq % 2)),
    );
    attributes.set(
        tag::NAME,
        Value::Structure(vec![Ttlv::new(
            tag::NAME_VALUE,
            Value::TextString(format!("name-{uid}")),
        )]),
    );
    ManagedObject {
        uid: uid.into(),
        object_type: 2,
        owner: "alice".into(),
        object: Some(Ttlv::new(
            tag::SYMMETRIC_KEY,
            Value::Structure(vec![Ttlv::new(
                tag::KEY_MATERIAL,
                Value::ByteString(Zeroizing::new(material.to_vec())),
            )]),
        )),
        attributes,
        sequence: seq,
    }
}

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
        assert!(st.log_fsyncs >= 11 && st.group_syncs >= 11, "{st:?}");
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
    for uid in ["k2", "k3"] {
        match s.get(uid) {
            Err(StoreError::Corrupt { uid: u, reason }) => {
                assert_eq!(u, uid);
                assert!(!reason.is_empty());
            }
            other => panic!("{uid}: {other:?}"),
        }
    }
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
    SledStore::restore(&backup, &restored).unwrap();
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
    assert_eq!(st.log_fsyncs, st.group_syncs);
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
    };
    assert_eq!(huge.cache_capacity_bytes(), u64::MAX);
    // A store with a tiny cache works and reads back what it wrote.
    let dir = tempfile::tempdir().unwrap();
    let tiny = SledOptions {
        cache_capacity_mb: 1,
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
