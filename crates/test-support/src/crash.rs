//! The shape of a SIGKILL crash test: the test binary re-runs itself as a child, filtered to
//! one test that does nothing unless an environment variable names the store's directory. The
//! child prints `READY` once its store is open and `ACK <payload>` after each acknowledged
//! write; the parent kills it at a random moment and checks every acknowledged write.

use std::io::{BufRead, BufReader, Stdout, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// A small pseudo-random sequence for kill timing (no dependency; print the seed).
pub struct Lcg(pub u64);

impl Lcg {
    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

/// The child's side: one line per write, each written and flushed whole (atomic on a pipe).
pub struct Acks(Mutex<Stdout>);

impl Default for Acks {
    fn default() -> Self {
        Acks(Mutex::new(std::io::stdout()))
    }
}

impl Acks {
    fn line(&self, line: &str) {
        let mut o = self.0.lock().expect("stdout lock");
        o.write_all(line.as_bytes()).expect("write to the parent");
        o.flush().expect("flush to the parent");
    }

    /// The store is open (and recovered): from here on a kill lands while writing.
    pub fn ready(&self) {
        self.line("READY\n");
    }

    /// `payload` (one line, no newline) was acknowledged.
    pub fn ack(&self, payload: &str) {
        self.line(&format!("ACK {payload}\n"));
    }
}

/// When the parent kills the child.
#[derive(Debug, Clone, Copy)]
pub struct Kill {
    /// Wait for `READY` (at most 30 s) before the delay; otherwise the kill may land while
    /// the store opens and recovers.
    pub after_ready: bool,
    /// How long after the start (or after `READY`).
    pub delay: Duration,
}

/// Runs the test `child_test` of this test binary with `env` set to `dir`, kills it with
/// SIGKILL as `kill` says, and returns the payloads of the `ACK` lines it printed.
pub fn run_child_and_kill(child_test: &str, env: &str, dir: &Path, kill: Kill) -> Vec<String> {
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args([child_test, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the crash child");
    let stdout = child.stdout.take().expect("the child's stdout");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may have written "test <name> ... " on the same line.
            if line.ends_with("READY") {
                let _ = ready_tx.send(());
            } else if let Some(payload) = line.strip_prefix("ACK ") {
                acked.push(payload.to_owned());
            }
        }
        acked
    });
    if kill.after_ready {
        let _ = ready_rx.recv_timeout(Duration::from_secs(30));
    }
    std::thread::sleep(kill.delay);
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    reader.join().expect("the reader thread")
}
