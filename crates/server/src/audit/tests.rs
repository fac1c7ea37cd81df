//! The audit log end to end: records made by a real engine, tampering caught, concurrency,
//! failures, rotation.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kmipd_ops::{Engine, Principal};
use kmipd_proto::build;
use kmipd_proto::enums::{object_type, operation};
use kmipd_proto::message::{ProtocolVersion, RequestBatchItem, RequestMessage, ResponseMessage};
use kmipd_proto::reader;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use super::record::{render, split_hash};
use super::*;

fn request(items: Vec<(u32, Vec<Ttlv>)>) -> Ttlv {
    RequestMessage::new(
        ProtocolVersion::V1_4,
        items
            .into_iter()
            .map(|(op, p)| RequestBatchItem::new(op, p))
            .collect(),
    )
    .to_ttlv()
}

const KEY: [u8; 16] = *b"\x8b\x13SECRETKEYBYTES";

fn register_key() -> Ttlv {
    request(vec![(
        operation::REGISTER,
        vec![
            build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
            build::structure(
                tag::TEMPLATE_ATTRIBUTE,
                vec![build::structure(
                    tag::ATTRIBUTE,
                    vec![
                        build::text(tag::ATTRIBUTE_NAME, "Cryptographic Usage Mask"),
                        build::int(tag::ATTRIBUTE_VALUE, 12),
                    ],
                )],
            ),
            build::structure(
                tag::SYMMETRIC_KEY,
                vec![build::structure(
                    tag::KEY_BLOCK,
                    vec![
                        build::enumeration(tag::KEY_FORMAT_TYPE, 1),
                        build::structure(
                            tag::KEY_VALUE,
                            vec![build::bytes(tag::KEY_MATERIAL, KEY.to_vec())],
                        ),
                        build::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, 3),
                        build::int(tag::CRYPTOGRAPHIC_LENGTH, 128),
                    ],
                )],
            ),
        ],
    )])
}

fn uid_of(response: &Ttlv) -> String {
    let m = ResponseMessage::from_ttlv(response).unwrap();
    let p = m.items[0].payload.as_ref().unwrap();
    reader::as_text(
        StructReader::any(p)
            .unwrap()
            .required(tag::UNIQUE_IDENTIFIER)
            .unwrap(),
    )
    .unwrap()
    .to_owned()
}

/// A log with five records made by a real engine: Register, Get (which returns the key),
/// Get of a missing object, and a batch of two.
fn sample(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    let engine = Engine::in_memory();
    let who = Principal::new("alice");
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let exchange = |req: Ttlv| {
        let resp = engine.handle_message(&who, &req);
        log.record_batch("alice", Some(peer), &req, &resp).unwrap();
        resp
    };
    let uid = uid_of(&exchange(register_key()));
    let uid_item = || vec![build::text(tag::UNIQUE_IDENTIFIER, uid.clone())];
    exchange(request(vec![(operation::GET, uid_item())]));
    exchange(request(vec![(
        operation::GET,
        vec![build::text(tag::UNIQUE_IDENTIFIER, "missing")],
    )]));
    exchange(request(vec![
        (operation::GET_ATTRIBUTES, uid_item()),
        (operation::DESTROY, uid_item()),
    ]));
    (path, uid)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Writes `lines` as the log at `path`, then verifies it.
fn write_and_verify(path: &Path, lines: &[String]) -> Result<usize, AuditError> {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(path, s).unwrap();
    verify(path)
}

/// Applies `edit` to the lines of the log at `path`, then verifies it.
fn edit_and_verify(path: &Path, edit: impl FnOnce(&mut Vec<String>)) -> Result<usize, AuditError> {
    let mut l = lines(path);
    edit(&mut l);
    write_and_verify(path, &l)
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "kmipd-audit-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn records_hold_who_what_and_result_and_never_key_material() {
    let dir = tempdir("content");
    let (path, uid) = sample(&dir);
    assert_eq!(verify(&path).unwrap(), 5);
    let text = std::fs::read(&path).unwrap();
    for needle in [
        &KEY[..],
        &KEY[2..],
        hex::encode(KEY).as_bytes(),
        b"SECRETKEYBYTES",
    ] {
        assert!(
            !text.windows(needle.len()).any(|w| w == needle),
            "key material in the audit log"
        );
    }
    let records: Vec<Record> = lines(&path)
        .iter()
        .map(|l| serde_json::from_str(&split_hash(l).unwrap().0).unwrap())
        .collect();
    let summary: Vec<(&str, &str, Option<&str>)> = records
        .iter()
        .map(|r| (r.operation.as_str(), r.status.as_str(), r.reason.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            ("Register", "Success", None),
            ("Get", "Success", None),
            ("Get", "OperationFailed", Some("ItemNotFound")),
            ("GetAttributes", "Success", None),
            ("Destroy", "Success", None),
        ]
    );
    assert_eq!(records[0].uids, vec![uid]);
    assert_eq!(records[2].uids, ["missing"]);
    assert!(
        records
            .iter()
            .all(|r| r.identity == "alice" && r.peer == "127.0.0.1:40000")
    );
    assert_eq!(records[0].prev, GENESIS);
    assert!(records[2].message.is_some());
    // Reopening continues the chain.
    let log = AuditLog::open(&path).unwrap();
    log.append(
        "bob",
        "-",
        &summarize(
            &register_key(),
            &Ttlv::new(tag::RESPONSE_MESSAGE, Value::Structure(vec![])),
        ),
    )
    .unwrap();
    assert_eq!(verify(&path).unwrap(), 6);
    let last: Record = serde_json::from_str(&split_hash(&lines(&path)[5]).unwrap().0).unwrap();
    assert_eq!((last.seq, last.status.as_str()), (6, "NotRun"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_edited_record_is_caught_with_or_without_a_fixed_hash() {
    let dir = tempdir("edit");
    let (path, _) = sample(&dir);
    let good = lines(&path);
    // Edited in place: its own hash no longer matches.
    let mut l = good.clone();
    l[2] = l[2].replace("alice", "mallory");
    let e = write_and_verify(&path, &l).unwrap_err();
    assert!(matches!(e, AuditError::Edited { record: 3, .. }), "{e}");
    assert!(e.to_string().contains("record 3 was edited"), "{e}");
    // Edited and re-hashed: the next record's chain hash gives it away.
    let (body, _) = split_hash(&l[2]).unwrap();
    let record: Record = serde_json::from_str(&body).unwrap();
    l[2] = render(&record).unwrap().0;
    let e = write_and_verify(&path, &l).unwrap_err();
    assert!(matches!(e, AuditError::Edited { record: 3, .. }), "{e}");
    // The last record edited.
    let mut l = good.clone();
    l[4] = l[4].replace("Success", "OperationFailed");
    assert!(matches!(
        write_and_verify(&path, &l),
        Err(AuditError::Edited { record: 5, .. })
    ));
    // Garbage.
    let mut l = good;
    l[1] = "not json".to_owned();
    assert!(matches!(
        write_and_verify(&path, &l),
        Err(AuditError::Malformed { record: 2, .. })
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_removed_record_is_caught() {
    let dir = tempdir("remove");
    let (path, _) = sample(&dir);
    let e = edit_and_verify(&path, |l| {
        l.remove(1);
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            AuditError::Removed {
                record: 2,
                after: 1,
                found: 3
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("record 2 was removed"), "{e}");
    assert!(matches!(
        edit_and_verify(&path, |l| {
            l.remove(0);
        }),
        Err(AuditError::Removed { record: 1, .. })
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn reordered_records_are_caught() {
    let dir = tempdir("reorder");
    let (path, _) = sample(&dir);
    let e = edit_and_verify(&path, |l| l.swap(1, 3)).unwrap_err();
    assert!(
        matches!(
            e,
            AuditError::Reordered {
                record: 2,
                line: 2,
                found: 4
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("reordered"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_torn_last_line_is_cut_and_the_chain_goes_on() {
    let dir = tempdir("torn");
    let (path, _) = sample(&dir);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"seq\":6,\"time\":\"20").unwrap();
    drop(f);
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(verify(&path).unwrap(), 5);
    log.append(
        "a",
        "-",
        &[ItemSummary {
            operation: "Query".into(),
            uids: vec![],
            status: "Success".into(),
            reason: None,
            message: None,
        }],
    )
    .unwrap();
    assert_eq!(verify(&path).unwrap(), 6);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A successful Get of object `u`.
fn successful_get() -> ItemSummary {
    ItemSummary {
        operation: "Get".into(),
        uids: vec!["u".into()],
        status: "Success".into(),
        reason: None,
        message: None,
    }
}

#[test]
fn concurrent_writers_share_syncs_and_keep_one_chain() {
    let dir = tempdir("concurrent");
    let path = dir.join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    let item = successful_get();
    std::thread::scope(|s| {
        for t in 0..8 {
            let log = log.clone();
            let item = item.clone();
            s.spawn(move || {
                for _ in 0..25 {
                    log.append(&format!("t{t}"), "-", &[item.clone(), item.clone()])
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(verify(&path).unwrap(), 400);
    let (n, h) = head(&path).unwrap();
    assert_eq!(n, 400);
    assert_eq!(h.len(), 64);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_write_failure_fails_that_request_and_poisons_the_log() {
    // /dev/full opens, and fails every write with ENOSPC.
    let log = AuditLog::open("/dev/full").unwrap();
    let item = successful_get();
    let first = log.append("alice", "-", std::slice::from_ref(&item));
    assert!(
        matches!(&first, Err(AuditError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::StorageFull),
        "{first:?}"
    );
    // After a failed write nothing is trusted any more: every later request fails.
    let later = log.append("alice", "-", std::slice::from_ref(&item));
    assert!(matches!(later, Err(AuditError::Poisoned)), "{later:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_submissions_share_syncs_and_a_dropped_one_is_still_recorded() {
    let dir = tempdir("async");
    let path = dir.join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    let item = successful_get();
    // Queued at the call, even if nobody awaits the answer.
    drop(log.submit("dropped".into(), "-".into(), vec![item.clone()]));
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let log = log.clone();
            let item = item.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    log.submit(format!("t{t}"), "-".into(), vec![item.clone()])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    drop(log); // joins the writer
    assert_eq!(verify(&path).unwrap(), 321);
    assert!(
        lines(&path)
            .iter()
            .any(|l| l.contains("\"identity\":\"dropped\""))
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn query_item() -> ItemSummary {
    ItemSummary {
        operation: "Query".into(),
        uids: vec![],
        status: "Success".into(),
        reason: None,
        message: None,
    }
}

/// The rotated files of the log at `path`, in chain order.
fn rotated(path: &Path) -> Vec<PathBuf> {
    rotated_files(path)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

fn append_n(log: &AuditLog, n: usize) {
    for _ in 0..n {
        log.append("a", "-", &[query_item()]).unwrap();
    }
}

/// A rotation moves the records aside and the chain goes on in a new file: each file
/// checks as part of the chain, in order, and the second alone only after the first's
/// last hash. Records submitted concurrently with the rotation land whole on one side.
#[test]
fn a_rotation_continues_the_chain_in_a_new_file() {
    let dir = tempdir("rotate");
    let path = dir.join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    assert!(matches!(log.rotate(), Err(AuditError::NothingToRotate(_))));
    append_n(&log, 5);
    let r = log.rotate().unwrap();
    assert_eq!(r.file, dir.join("audit.log.000000000005"));
    assert_eq!(
        (r.last_seq, r.last_hash.clone()),
        (5, head(&r.file).unwrap().1)
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    // Writers racing a second rotation.
    let mid = std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| append_n(&log, 25));
        }
        s.spawn(|| {
            // Once some of them are written (bounded: the writers need well under this).
            for _ in 0..2000 {
                if std::fs::metadata(&path).unwrap().len() > 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            log.rotate().unwrap()
        })
        .join()
        .unwrap()
    });
    append_n(&log, 1);
    drop(log);
    let mut files = rotated(&path);
    assert_eq!(files.len(), 2, "{files:?}");
    files.push(path.clone());
    let mut chain = Verifier::new();
    for f in &files {
        chain.file(f).unwrap();
    }
    assert_eq!((chain.records(), chain.last_seq()), (106, Some(106)));
    // The current file alone: it does not start the chain...
    assert!(matches!(
        verify(&path),
        Err(AuditError::Removed { record: 1, .. })
    ));
    // ...but continues the hash the rotated ones end with, and nothing else.
    let (_, second_head) = head(&files[0])
        .and_then(|_| {
            let mut v = Verifier::new();
            v.file(&files[0])?;
            v.file(&files[1])?;
            Ok((v.records(), v.last_hash().to_owned()))
        })
        .unwrap();
    let mut tail = Verifier::after(&second_head);
    tail.file(&path).unwrap();
    assert_eq!(second_head, mid.last_hash);
    let after_mid = usize::try_from(106 - mid.last_seq).unwrap();
    assert_eq!((tail.records(), tail.last_seq()), (after_mid, Some(106)));
    let first_of_current = usize::try_from(mid.last_seq + 1).unwrap();
    assert!(matches!(
        Verifier::after(&r.last_hash).file(&path),
        Err(AuditError::Unanchored { found }) if found == first_of_current
    ));
    // Out of order: the second file before the first.
    let mut wrong = Verifier::new();
    assert!(wrong.file(&files[1]).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The log and the files a rotation starts are created owner-only (0600; the umask would have
/// let 0644 through); the rotated file keeps that mode. A log that exists keeps its own mode.
#[test]
fn audit_files_are_created_owner_only() {
    let dir = tempdir("mode");
    let path = dir.join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    append_n(&log, 2);
    let first = log.rotate().unwrap();
    assert_eq!(mode(&first.file), 0o600);
    assert_eq!(mode(&path), 0o600, "the new file after a rotation");
    append_n(&log, 1);
    drop(log);
    // Not created by kmipd: left as the operator made it.
    let other = dir.join("other.log");
    std::fs::write(&other, "").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o640)).unwrap();
    drop(AuditLog::open(&other).unwrap());
    assert_eq!(mode(&other), 0o640);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Opening an empty audit log next to rotated ones (a restart right after a rotation, or
/// a crash between the rename and the new file) continues the newest rotated chain.
#[test]
fn an_empty_log_continues_the_newest_rotated_file() {
    let dir = tempdir("rotate-reopen");
    let path = dir.join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    append_n(&log, 3);
    log.rotate().unwrap();
    append_n(&log, 2);
    let second = log.rotate().unwrap();
    drop(log);
    // The crash case: the new file never made it.
    std::fs::remove_file(&path).unwrap();
    let log = AuditLog::open(&path).unwrap();
    append_n(&log, 1);
    drop(log);
    let mut chain = Verifier::new();
    for f in [dir.join("audit.log.000000000003"), second.file, path] {
        chain.file(&f).unwrap();
    }
    assert_eq!(chain.records(), 6);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A record's line is its JSON (the fields in `Record`'s order) with the hash of that JSON
/// added as the last field; the writer renders it in place from borrowed fields, and reading
/// it back gives the same JSON and hash (what `verify` checks).
#[test]
fn a_record_renders_as_its_json_with_the_hash_of_that_json() {
    use sha2::{Digest, Sha256};
    let record = Record {
        seq: 7,
        time: "2026-12-06T23:00:00Z".into(),
        identity: "CN=a \"quoted\" name".into(),
        peer: "127.0.0.1:5696".into(),
        operation: "Get".into(),
        uids: vec!["u1".into(), "u\u{e9}2".into()],
        status: "OperationFailed".into(),
        reason: Some("ItemNotFound".into()),
        message: None,
        prev: GENESIS.into(),
    };
    let body = serde_json::to_string(&record).unwrap();
    let (line, hash) = render(&record).unwrap();
    assert_eq!(hash, hex::encode(Sha256::digest(body.as_bytes())));
    let open = body.strip_suffix('}').unwrap();
    assert_eq!(line, format!("{open},\"hash\":\"{hash}\"}}"));
    let (read, stated) = split_hash(&line).unwrap();
    assert_eq!((read.as_str(), stated), (body.as_str(), hash.as_str()));
    assert_eq!(serde_json::from_str::<Record>(&read).unwrap(), record);
}

/// The sled store and the audit log opened as its journal, in `dir` (`store/`, `audit.log`).
fn journaled(dir: &Path) -> (std::sync::Arc<kmipd_store::SledStore>, AuditLog) {
    let kek = kmipd_store::Kek::new(kmipd_store::KekId(1), &zeroize::Zeroizing::new([7; 32]));
    let store =
        std::sync::Arc::new(kmipd_store::SledStore::open_with_kek(dir.join("store"), kek).unwrap());
    let log = AuditLog::open_journaled(dir.join("audit.log"), store.clone()).unwrap();
    (store, log)
}

/// As the store's journal: records from 8 threads in one chain, the file 0600, a rotation
/// that continues the chain, and a reopen that goes on from the file.
#[test]
fn as_the_stores_journal_records_keep_one_chain_across_rotation_and_reopen() {
    let dir = tempdir("journal");
    let path = dir.join("audit.log");
    {
        let (_store, log) = journaled(&dir);
        assert!(log.journaled());
        assert_eq!(mode(&path), 0o600);
        assert!(matches!(log.rotate(), Err(AuditError::NothingToRotate(_))));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| append_n(&log, 20));
            }
            s.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(5));
                while std::fs::metadata(&path).unwrap().len() == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                log.rotate().unwrap()
            });
        });
        assert_eq!(
            log.durable_seq().load(std::sync::atomic::Ordering::Acquire),
            160
        );
    }
    let (_store, log) = journaled(&dir);
    append_n(&log, 1);
    drop(log);
    let mut files = rotated(&path);
    assert_eq!(files.len(), 1, "{files:?}");
    files.push(path.clone());
    let mut chain = Verifier::new();
    for f in &files {
        chain.file(f).unwrap();
    }
    assert_eq!((chain.records(), chain.last_seq()), (161, Some(161)));
    std::fs::remove_dir_all(dir).unwrap();
}

/// A crash after the WAL frame's `fdatasync` but before the audit file kept the records (the
/// page cache lost): the store's WAL has them, and opening the log as the store's journal
/// appends them; the chain verifies and goes on.
#[test]
fn a_record_only_in_the_stores_wal_is_appended_at_open_and_the_chain_verifies() {
    let dir = tempdir("journal-crash");
    let image = tempdir("journal-crash-image");
    {
        let (store, log) = journaled(&dir);
        store.pause_checkpoints(true);
        store.checkpoint().unwrap();
        kmipd_test_support::copy_dir(&dir.join("store"), &image.join("store"));
        append_n(&log, 3);
        std::fs::copy(dir.join("audit.log"), image.join("audit.log")).unwrap();
        append_n(&log, 4);
        // The image: sled as of the checkpoint, the WAL as it is now, and the audit file
        // without the last four records.
        kmipd_test_support::copy_dir(
            &dir.join("store").join("wal"),
            &image.join("store").join("wal"),
        );
        assert_eq!(lines(&image.join("audit.log")).len(), 3);
    }
    let (_store, log) = journaled(&image);
    assert_eq!(
        log.durable_seq().load(std::sync::atomic::Ordering::Acquire),
        7
    );
    assert_eq!(verify(image.join("audit.log")).unwrap(), 7);
    assert_eq!(
        lines(&image.join("audit.log")),
        lines(&dir.join("audit.log"))
    );
    append_n(&log, 1);
    drop(log);
    assert_eq!(verify(image.join("audit.log")).unwrap(), 8);
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(image).unwrap();
}
