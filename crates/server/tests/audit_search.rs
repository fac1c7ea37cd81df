//! `kmipd audit search` through the binary, over records written by the audit writer
//! (`AuditLog`, the code a server records with) and rotated by it: the filters, the JSON
//! lines, reading across rotated files, and the refusal of a broken chain.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kmipd::audit::{AuditLog, ItemSummary};
use sha2::{Digest, Sha256};

const KMIPD: &str = env!("CARGO_BIN_EXE_kmipd");

fn item(op: &str, uids: &[&str], reason: Option<&str>) -> ItemSummary {
    ItemSummary {
        operation: op.to_owned(),
        uids: uids.iter().map(|u| (*u).to_owned()).collect(),
        status: if reason.is_some() {
            "OperationFailed"
        } else {
            "Success"
        }
        .to_owned(),
        reason: reason.map(str::to_owned),
        message: reason.map(|_| "object not found".to_owned()),
    }
}

/// Five records in two files: records 1-3 rotated into `audit.log.000000000003`, 4-5 in
/// `audit.log`. Returns (rotated, current).
fn write_log(dir: &Path) -> (PathBuf, PathBuf) {
    let path = dir.join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    log.append("alice", "127.0.0.1:1", &[item("Create", &["k1"], None)])
        .unwrap();
    log.append(
        "bob",
        "127.0.0.1:2",
        &[item("Get", &["k1"], Some("ItemNotFound"))],
    )
    .unwrap();
    log.append("alice", "127.0.0.1:1", &[item("Destroy", &["k1"], None)])
        .unwrap();
    let rotated = log.rotate().unwrap();
    log.append("alice", "127.0.0.1:1", &[item("Get", &["k2"], None)])
        .unwrap();
    log.append("bob", "127.0.0.1:2", &[item("Locate", &["k1", "k2"], None)])
        .unwrap();
    drop(log);
    let old = dir.join("audit.log.000000000003");
    assert!(old.exists(), "{rotated:?}");
    (old, path)
}

/// `kmipd audit search ARGS... FILES...`: (success, stdout, stderr).
fn search(args: &[&str], files: &[&PathBuf]) -> (bool, String, String) {
    let mut c = Command::new(KMIPD);
    c.args(["audit", "search"]).args(args).args(files);
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    kmipd_test_support::finish_bounded(child, Duration::from_secs(60))
}

/// The record numbers of `--json` output.
fn seqs(out: &str) -> Vec<u64> {
    out.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn filters_json_and_rotated_files() {
    let dir = tempfile::tempdir().unwrap();
    let (old, cur) = write_log(dir.path());
    let files = [&old, &cur];
    let json = |args: &[&str]| {
        let mut a = args.to_vec();
        a.push("--json");
        let (ok, out, err) = search(&a, &files);
        assert!(ok, "{args:?}: {out}{err}");
        assert!(err.contains("chain intact"), "{err}");
        seqs(&out)
    };
    assert_eq!(json(&[]), [1, 2, 3, 4, 5]);
    assert_eq!(json(&["--identity", "alice"]), [1, 3, 4]);
    assert_eq!(json(&["--identity", "ALICE"]), Vec::<u64>::new());
    assert_eq!(json(&["--object", "k1"]), [1, 2, 3, 5]);
    assert_eq!(json(&["--operation", "get"]), [2, 4]);
    assert_eq!(json(&["--result", "ItemNotFound"]), [2]);
    assert_eq!(json(&["--result", "success"]), [1, 3, 4, 5]);
    assert_eq!(
        json(&[
            "--identity",
            "alice",
            "--operation",
            "Get",
            "--object",
            "k2"
        ]),
        [4]
    );
    assert_eq!(json(&["--since", "2000-01-01"]), [1, 2, 3, 4, 5]);
    assert_eq!(
        json(&["--since", "2999-01-01T00:00:00Z"]),
        Vec::<u64>::new()
    );
    assert_eq!(
        json(&["--until", "2000-01-01T00:00:00Z"]),
        Vec::<u64>::new()
    );
    assert_eq!(json(&["--until", "2999-01-01"]), [1, 2, 3, 4, 5]);

    // A JSON match is the file's own line (hash included), so it can be checked again.
    let (ok, out, err) = search(&["--json", "--operation", "Destroy"], &files);
    assert!(ok, "{err}");
    let file_line = std::fs::read_to_string(&old)
        .unwrap()
        .lines()
        .nth(2)
        .unwrap()
        .to_owned();
    assert_eq!(out, format!("{file_line}\n"));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for key in [
        "seq",
        "time",
        "identity",
        "peer",
        "operation",
        "uids",
        "status",
        "reason",
        "message",
        "prev",
        "hash",
    ] {
        assert!(v.get(key).is_some(), "{key} missing in {v}");
    }
    assert_eq!(v["identity"], "alice");
    assert_eq!(v["uids"], serde_json::json!(["k1"]));
    assert!(err.contains("1 of 5 records matched"), "{err}");

    // Text: one line per match.
    let (ok, out, _) = search(&["--result", "ItemNotFound"], &files);
    assert!(ok);
    let line = out.trim();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(line.starts_with("2 "), "{line}");
    for part in [
        "bob",
        "127.0.0.1:2",
        "Get",
        "OperationFailed/ItemNotFound",
        "[k1]",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }

    // The current file alone does not start the chain: refused, unless --after anchors it.
    let (ok, out, err) = search(&["--json"], &[&cur]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains("audit.log: audit record 1 was removed"),
        "{err}"
    );
    let (_, hash) = kmipd::audit::head(&old).unwrap();
    let (ok, out, err) = search(&["--json", "--after", &hash], &[&cur]);
    assert!(ok, "{err}");
    assert_eq!(seqs(&out), [4, 5]);
    // Files out of order.
    let (ok, _, err) = search(&[], &[&cur, &old]);
    assert!(!ok, "{err}");
    // A bad time is a usage error.
    let (ok, _, err) = search(&["--since", "yesterday"], &files);
    assert!(!ok && err.contains("not an RFC 3339 time"), "{err}");
}

/// Replaces line `n` (from 1) of `path` by `f(line)`.
fn edit_line(path: &Path, n: usize, f: impl Fn(&str) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| if i + 1 == n { f(l) } else { l.to_owned() })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn a_broken_chain_stops_the_search() {
    let dir = tempfile::tempdir().unwrap();
    let (old, cur) = write_log(dir.path());
    // Record 3 edited in place (not re-hashed): found at record 3 itself.
    let copy = dir.path().join("copy");
    std::fs::copy(&old, &copy).unwrap();
    edit_line(&copy, 3, |l| l.replace("\"alice\"", "\"eve\""));
    let (ok, out, err) = search(&["--json"], &[&copy, &cur]);
    assert!(!ok, "{out}{err}");
    assert!(
        err.contains(&format!(
            "{}: audit record 3 was edited (its content does not match its hash)",
            copy.display()
        )),
        "{err}"
    );
    // Only records confirmed by the next one before the break were printed (record 2's
    // successor is the broken record 3), and nothing of the second file.
    assert_eq!(seqs(&out), [1]);
    assert!(!err.contains("chain intact"), "{err}");

    // Record 2 edited and re-hashed: only record 3 shows it; record 2 is not printed as a
    // match even though it is read before the break is seen.
    edit_line(&old, 2, |l| {
        let open = l
            .rsplit_once(",\"hash\":\"")
            .unwrap()
            .0
            .replace("\"bob\"", "\"eve\"");
        let hash = hex::encode(Sha256::digest(format!("{open}}}").as_bytes()));
        format!("{open},\"hash\":\"{hash}\"}}")
    });
    let (ok, out, err) = search(&["--json", "--identity", "eve"], &[&old, &cur]);
    assert!(!ok, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("audit record 2 was edited (record 3 carries a different hash of it)"),
        "{err}"
    );
    assert!(err.contains(&old.display().to_string()), "{err}");

    // A record removed from the current file of an intact log.
    let dir2 = tempfile::tempdir().unwrap();
    let (old2, cur2) = write_log(dir2.path());
    let text = std::fs::read_to_string(&cur2).unwrap();
    let rest: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(&cur2, rest).unwrap();
    let (ok, out, err) = search(&["--operation", "Locate"], &[&old2, &cur2]);
    assert!(!ok && out.is_empty(), "{out}{err}");
    assert!(err.contains("audit record 4 was removed"), "{err}");
}
