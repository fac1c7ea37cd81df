//! `kmipd init` through the binary, which re-executes itself for SoftHSM2: a failed init leaves
//! nothing behind, whether it created the directory or found it empty.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KMIPD: &str = env!("CARGO_BIN_EXE_kmipd");
/// Bound on one `kmipd init`.
const BOUND: Duration = Duration::from_secs(120);

/// `kmipd init --dir DIR [--no-hsm]` with SoftHSM2 looked for at `module`; (exit code, stderr).
fn init(dir: &Path, module: &Path, hsm: bool) -> (Option<i32>, String) {
    let mut cmd = Command::new(KMIPD);
    cmd.args(["init", "--dir"])
        .arg(dir)
        .env("KMIPD_SOFTHSM2_MODULE", module)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if !hsm {
        cmd.arg("--no-hsm");
    }
    let mut child = cmd.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("kmipd init did not finish within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), err.join().unwrap())
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_failed_init_leaves_no_partial_instance_directory() {
    let tmp = tempfile::tempdir().unwrap();
    // The PKCS#11 module is missing: init fails in the re-executed process, after it wrote the
    // SoftHSM2 configuration and the certificates.
    let missing = tmp.path().join("no-such-libsofthsm2.so");

    // The directory did not exist: it is gone again.
    let dir = tmp.path().join("inst");
    let (code, err) = init(&dir, &missing, true);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no-such-libsofthsm2.so"), "{err}");
    assert!(!dir.exists(), "left behind: {:?}", entries(&dir));

    // It existed, empty: it stays, empty.
    std::fs::create_dir(&dir).unwrap();
    let (code, err) = init(&dir, &missing, true);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(entries(&dir), Vec::<String>::new());

    // The same directory then takes an instance, and holds no trace of the failed attempts.
    let (code, err) = init(&dir, &missing, false);
    assert_eq!(code, Some(0), "{err}");
    let made = entries(&dir);
    assert_eq!(made, ["certs", "data", "kmipd.toml"], "{made:?}");

    // Not fresh: refused with a clear message, nothing of it touched.
    let (code, err) = init(&dir, &missing, true);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(entries(&dir), made);
    assert!(dir.join("certs/ca.pem").exists());
}
