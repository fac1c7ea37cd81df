//! Helpers shared by kmipd's tests: where the OASIS KMIP test vectors are, how to read the
//! hex files that hold wire captures, copying a store's directory, the child process of the
//! SIGKILL crash tests ([`crash`]), reading KMIP answers in tests ([`kmip`]), replaying the
//! fuzz corpora ([`fuzz`]), a private PostgreSQL cluster ([`pg`]), a temporary directory
//! ([`TempDir`]) and, behind the `engine` feature, the engine harness of kmipd-ops's
//! integration tests (`engine`; kmipd-ops's dev-dependency on this crate enables it, a
//! dev-dependency cycle Cargo allows). Only ever a dev-dependency: a library, so each test
//! binary takes the helpers it uses and no `dead_code` allowance is needed.
#![allow(clippy::panic, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// Environment variable that points at a copy of the KMIP test vectors.
pub const VECTORS_ENV: &str = "KMIPD_VECTORS";

/// The directory of the KMIP test vectors: `$KMIPD_VECTORS` if set, else
/// `../shared/kmip-vectors` beside the workspace.
///
/// Panics with instructions when the directory is missing: tests that need the vectors fail
/// loudly, they never skip.
pub fn vectors_dir() -> PathBuf {
    let dir = match std::env::var_os(VECTORS_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("../shared/kmip-vectors"),
    };
    if !dir.join("README.md").is_file() {
        panic!(
            "KMIP test vectors not found at {}.\n\
             Put the OASIS KMIP test cases there (or set {VECTORS_ENV} to their directory).\n\
             OASIS publishes them with the KMIP Profiles and Test Cases documents at \
             https://docs.oasis-open.org/kmip/ (e.g. \
             https://docs.oasis-open.org/kmip/kmip-profiles/v2.1/os/test-cases/kmip-v2.1/ and \
             https://docs.oasis-open.org/kmip/profiles/v1.4/os/test-cases/kmip-v1.4/); the \
             expected layout is described in docs/testing.md.",
            dir.display()
        );
    }
    dir
}

/// A file or directory under [`vectors_dir`], which must exist.
pub fn vector_path(relative: &str) -> PathBuf {
    let path = vectors_dir().join(relative);
    assert!(path.exists(), "missing KMIP test vector {}", path.display());
    path
}

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// All files under `dir` (recursively) whose name ends with `suffix`, sorted.
pub fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("cannot read directory {}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Copies the directory tree `from` to `to` (created when absent): a store's files as a crash
/// would leave them, when nothing writes to `from` meanwhile.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to)
        .unwrap_or_else(|e| panic!("cannot create directory {}: {e}", to.display()));
    let entries = std::fs::read_dir(from)
        .unwrap_or_else(|e| panic!("cannot read directory {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap_or_else(|e| {
                panic!(
                    "cannot copy {} to {}: {e}",
                    entry.path().display(),
                    target.display()
                )
            });
        }
    }
}

/// Decodes hex that may contain white space (as in capture files).
pub fn hex_bytes(text: &str) -> Vec<u8> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&compact).unwrap_or_else(|e| panic!("invalid hex: {e}"))
}

/// Deterministic bindings for the placeholders of the OASIS XML test cases, for tests that only
/// need well-typed values: times from the placeholder's offset around a fixed instant, and every
/// other placeholder a value of the declared type derived from its text. (The conformance
/// runner binds placeholders for real; this is for codec and model tests.)
pub fn fixed_placeholder(
    _tag: kmipd_ttlv::Tag,
    ty: kmipd_ttlv::ItemType,
    text: &str,
) -> Result<kmipd_ttlv::Value, String> {
    use kmipd_ttlv::{BigInteger, ItemType, Value};
    const NOW: i64 = 1_700_000_000;
    let time = |s: &str| -> Result<i64, String> {
        let rest = s
            .strip_prefix("$NOW")
            .ok_or_else(|| format!("not a time: {s}"))?;
        if rest.is_empty() {
            Ok(NOW)
        } else {
            rest.parse::<i64>()
                .map(|d| NOW + d)
                .map_err(|e| e.to_string())
        }
    };
    let seed: u32 = text
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    Ok(match ty {
        ItemType::DateTime => Value::DateTime(time(text)?),
        ItemType::DateTimeExtended => Value::DateTimeExtended(time(text)? * 1_000_000),
        ItemType::TextString => Value::TextString(text.trim_start_matches('$').to_lowercase()),
        ItemType::ByteString => Value::bytes(text.as_bytes().to_vec()),
        ItemType::Integer => Value::Integer(i32::from_ne_bytes((seed & 0x7FFF).to_ne_bytes())),
        ItemType::LongInteger => Value::LongInteger(i64::from(seed)),
        ItemType::Interval => Value::Interval(seed),
        ItemType::Enumeration => Value::Enumeration(seed),
        ItemType::Boolean => Value::Boolean(seed.is_multiple_of(2)),
        ItemType::BigInteger => {
            Value::BigInteger(BigInteger::from_twos_complement(text.as_bytes()))
        }
        ItemType::Structure => return Err(format!("placeholder {text} for a structure")),
    })
}

pub mod clients;
pub mod crash;
#[cfg(feature = "engine")]
pub mod engine;
pub mod fuzz;
pub mod kmip;
pub mod pg;

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// An empty directory `kmipd-<name>-<pid>` under the system's temporary directory.
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("kmipd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create the temporary directory");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits for `child` (spawned with piped stdout and stderr) for at most `bound`, reading both
/// pipes on threads so that a chatty child cannot block on a full pipe; kills it and panics
/// past `bound`. (success, stdout, stderr).
pub fn finish_bounded(
    mut child: std::process::Child,
    bound: std::time::Duration,
) -> (bool, String, String) {
    let deadline = std::time::Instant::now() + bound;
    let out = read_to_end_on_a_thread(child.stdout.take());
    let err = read_to_end_on_a_thread(child.stderr.take());
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the child") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {child:?} did not finish within {bound:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = out.join().expect("the stdout reader");
    let err = err.join().expect("the stderr reader");
    (status.success(), out, err)
}

fn read_to_end_on_a_thread<R: std::io::Read + Send + 'static>(
    pipe: Option<R>,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            p.read_to_string(&mut s).expect("read the child's output");
        }
        s
    })
}
