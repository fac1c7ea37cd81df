//! Failures under load, over the real binary (harness: `tests/cluster/`): a node SIGKILLed,
//! PostgreSQL restarted, and a primary stopped and its synchronous standby promoted, while
//! client tasks create keys. What is asserted is what a client may rely on: every
//! acknowledged object is there afterwards, with the bytes it was served; failures during
//! the outage are KMIP General Failures on a connection that stays up; the nodes serve again
//! by themselves. How long they did not is measured and printed, never asserted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

// The shared harness.
mod cluster;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::{BOUND, Cluster, Node, connect, runtime};
use kmipd_client::Connector;
use kmipd_proto::enums::result_reason::GENERAL_FAILURE;
use kmipd_test_support::pg::PgCluster;

/// Short bounds so that an outage turns into errors within seconds.
const FAST: &str = "connect_timeout_ms = 1000\nstatement_timeout_ms = 2000\ndeadline_ms = 3000\n";

/// An acknowledged Create: uid, node, and the key bytes a Get on that node then served
/// (`None` when that Get failed).
type Acked = (String, usize, Option<Vec<u8>>);

/// What the client tasks saw.
#[derive(Default)]
struct Ledger {
    /// Acknowledged Creates.
    acked: Mutex<Vec<Acked>>,
    /// When each successful request (Create or Get) got its answer.
    successes: Mutex<Vec<Instant>>,
    /// Failures answered with General Failure.
    general_failures: AtomicUsize,
    /// Failures answered with another Result Reason (there should be none).
    other_failures: Mutex<Vec<String>>,
    /// Connections to kmipd that broke or could not be made.
    transport_errors: AtomicUsize,
    stop: AtomicBool,
}

impl Ledger {
    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn acked_on(&self, node: usize) -> usize {
        self.acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, n, _)| *n == node)
            .count()
    }

    fn success(&self) {
        self.successes.lock().unwrap().push(Instant::now());
    }

    fn failure(&self, e: &kmipd_client::Error) -> bool {
        match e.result_reason() {
            Some(GENERAL_FAILURE) => {
                self.general_failures.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(_) => {
                self.other_failures.lock().unwrap().push(format!("{e}"));
                true
            }
            None => {
                self.transport_errors.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Waits (bounded) until `cond` holds.
    async fn wait_until(&self, what: &str, cond: impl Fn(&Ledger) -> bool) {
        let deadline = Instant::now() + BOUND;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "{what}: not reached within {BOUND:?} ({} acknowledged, {} general failures, \
                 {} transport errors, other failures {:?})",
                self.acked_count(),
                self.general_failures.load(Ordering::Relaxed),
                self.transport_errors.load(Ordering::Relaxed),
                self.other_failures.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One client task: Create an AES key, Get it, again, on one connection to node `node`
/// (reconnecting when the connection breaks), until told to stop.
async fn create_loop(conn: Connector, addr: SocketAddr, node: usize, ledger: Arc<Ledger>) {
    while !ledger.stop.load(Ordering::Relaxed) {
        let mut client =
            match tokio::time::timeout(Duration::from_secs(5), conn.connect(addr)).await {
                Ok(Ok(c)) => c,
                _ => {
                    ledger.transport_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
        while !ledger.stop.load(Ordering::Relaxed) {
            match client.create_aes(256, None).await {
                Ok(uid) => {
                    ledger.success();
                    let bytes = match client.get_key_bytes(&uid).await {
                        Ok(b) => {
                            ledger.success();
                            Some(b.to_vec())
                        }
                        Err(e) => {
                            ledger.failure(&e);
                            None
                        }
                    };
                    ledger.acked.lock().unwrap().push((uid, node, bytes));
                }
                Err(e) => {
                    if !ledger.failure(&e) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// Starts `per_node` client tasks on each address.
fn start_load(
    rt: &tokio::runtime::Runtime,
    conn: &Connector,
    addrs: &[SocketAddr],
    per_node: usize,
    ledger: &Arc<Ledger>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (node, addr) in addrs.iter().enumerate() {
        for _ in 0..per_node {
            tasks.push(rt.spawn(create_loop(conn.clone(), *addr, node, ledger.clone())));
        }
    }
    tasks
}

fn stop_load(
    rt: &tokio::runtime::Runtime,
    ledger: &Ledger,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) {
    ledger.stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for t in tasks {
            tokio::time::timeout(BOUND, t).await.unwrap().unwrap();
        }
    });
}

/// Every acknowledged object is served by the node at `addr`, with the bytes served when it
/// was made. Returns the acknowledged uids.
fn check_acknowledged(
    rt: &tokio::runtime::Runtime,
    conn: &Connector,
    addr: SocketAddr,
    ledger: &Ledger,
) -> BTreeSet<String> {
    let acked = ledger.acked.lock().unwrap().clone();
    assert!(!acked.is_empty(), "the load acknowledged nothing");
    rt.block_on(async {
        let mut cl = connect(conn, addr).await;
        for (uid, _, bytes) in &acked {
            let got = cl
                .get_key_bytes(uid)
                .await
                .unwrap_or_else(|e| panic!("acknowledged {uid} is not served: {e}"));
            assert_eq!(got.len(), 32, "{uid}");
            if let Some(b) = bytes {
                assert_eq!(
                    &got.to_vec(),
                    b,
                    "{uid} has other bytes than it was served with"
                );
            }
        }
    });
    acked.into_iter().map(|(u, _, _)| u).collect()
}

/// Objects present but never acknowledged (a Create whose answer was lost or failed after
/// its commit) are whole: a Get serves a 32-byte key for each.
fn check_unacknowledged(
    rt: &tokio::runtime::Runtime,
    conn: &Connector,
    addr: SocketAddr,
    acked: &BTreeSet<String>,
) -> usize {
    rt.block_on(async {
        let mut cl = connect(conn, addr).await;
        let all = cl.locate(&[]).await.unwrap();
        let present: BTreeSet<String> = all.into_iter().collect();
        let missing: Vec<&String> = acked.difference(&present).collect();
        assert!(
            missing.is_empty(),
            "Locate misses acknowledged objects: {missing:?}"
        );
        let extra: Vec<&String> = present.difference(acked).collect();
        for uid in &extra {
            let got = cl
                .get_key_bytes(uid)
                .await
                .unwrap_or_else(|e| panic!("unacknowledged {uid} is present but broken: {e}"));
            assert_eq!(got.len(), 32, "{uid}");
        }
        extra.len()
    })
}

/// The longest interval without a successful request between `from` and the last success.
fn longest_gap(ledger: &Ledger, from: Instant) -> Duration {
    let mut times = ledger.successes.lock().unwrap().clone();
    times.sort();
    let mut gap = Duration::ZERO;
    let mut prev: Option<Instant> = None;
    for t in times {
        if let Some(p) = prev
            && t >= from
        {
            gap = gap.max(t.saturating_duration_since(p.max(from)));
        }
        prev = Some(t);
    }
    gap
}

#[test]
fn sigkill_of_a_node_under_load_loses_no_acknowledged_object() {
    let c = Cluster::new();
    // Each node with its own HSM holding the same master key (an HSM cluster's replicated
    // partitions), as well as the shared token the other tests use.
    let a = Node::start(&c.node_config_own_hsm("a"));
    let b = Node::start(&c.node_config_own_hsm("b"));
    let conn = c.connector("client");
    let rt = runtime();
    let ledger = Arc::new(Ledger::default());
    let tasks = start_load(&rt, &conn, &[a.addr()], 4, &ledger);
    rt.block_on(ledger.wait_until("40 acknowledged Creates", |l| l.acked_count() >= 40));
    // Killed with requests in flight: no shutdown, no flush, nothing.
    a.kill9();
    stop_load(&rt, &ledger, tasks);
    assert!(
        ledger.other_failures.lock().unwrap().is_empty(),
        "{:?}",
        ledger.other_failures.lock().unwrap()
    );
    let acked = check_acknowledged(&rt, &conn, b.addr(), &ledger);
    let extra = check_unacknowledged(&rt, &conn, b.addr(), &acked);
    println!(
        "SIGKILL under load: {} acknowledged objects all served by the other node; {extra} \
         unacknowledged but whole",
        acked.len()
    );
    b.stop();
}

#[test]
fn postgres_restarted_under_load_fails_requests_cleanly_and_kmipd_serves_again() {
    // A cluster of this test's own: it is stopped and started.
    let pg = Arc::new(PgCluster::start());
    let c = Cluster::on(pg.clone());
    let a = Node::start(&c.node_config_with("a", &c.url(), FAST));
    let b = Node::start(&c.node_config_with("b", &c.url(), FAST));
    let conn = c.connector("client");
    let rt = runtime();
    let ledger = Arc::new(Ledger::default());
    let tasks = start_load(&rt, &conn, &[a.addr(), b.addr()], 2, &ledger);
    rt.block_on(ledger.wait_until("30 acknowledged Creates", |l| l.acked_count() >= 30));
    // Sessions terminated, new connections refused, until every request then in flight
    // has failed past its deadline.
    pg.stop();
    rt.block_on(
        ledger.wait_until("General Failures while PostgreSQL is down", |l| {
            l.general_failures.load(Ordering::Relaxed) >= 4
        }),
    );
    let before = ledger.acked_count();
    pg.start_again();
    let restarted = Instant::now();
    // kmipd was not restarted: both nodes serve again by themselves.
    rt.block_on(
        ledger.wait_until("Creates on both nodes after the restart", |l| {
            let acked = l.acked.lock().unwrap();
            (0..2).all(|n| acked.iter().skip(before).any(|(_, node, _)| *node == n))
        }),
    );
    let back = restarted.elapsed();
    stop_load(&rt, &ledger, tasks);
    let failures = ledger.other_failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "only General Failures: {failures:?}");
    assert_eq!(
        ledger.transport_errors.load(Ordering::Relaxed),
        0,
        "the client connections to kmipd stay up while PostgreSQL is down"
    );
    let acked = check_acknowledged(&rt, &conn, a.addr(), &ledger);
    check_acknowledged(&rt, &conn, b.addr(), &ledger);
    let extra = check_unacknowledged(&rt, &conn, b.addr(), &acked);
    println!(
        "PostgreSQL restart under load: {} General Failures; both nodes served again {:.1} s \
         after PostgreSQL started; {} acknowledged objects intact, {extra} unacknowledged but \
         whole",
        ledger.general_failures.load(Ordering::Relaxed),
        back.as_secs_f64(),
        acked.len()
    );
    a.stop();
    b.stop();
}

#[test]
fn nodes_follow_a_promoted_synchronous_standby_without_a_restart() {
    let primary = Arc::new(PgCluster::start());
    // The database exists before the base backup, so the standby has it.
    let c = Cluster::on(primary.clone());
    let standby = primary.start_standby();
    primary.require_synchronous_standby();
    let url = format!(
        "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/{}?target_session_attrs=read-write",
        primary.port(),
        standby.port(),
        c.db
    );
    let a = Node::start(&c.node_config_with("a", &url, FAST));
    let b = Node::start(&c.node_config_with("b", &url, FAST));
    let conn = c.connector("client");
    let rt = runtime();
    let ledger = Arc::new(Ledger::default());
    let tasks = start_load(&rt, &conn, &[a.addr(), b.addr()], 2, &ledger);
    rt.block_on(ledger.wait_until("30 acknowledged Creates", |l| l.acked_count() >= 30));
    let (on_a, on_b) = (ledger.acked_on(0), ledger.acked_on(1));
    let stopped = Instant::now();
    primary.stop_immediate();
    standby.promote();
    let promoted = stopped.elapsed();
    rt.block_on(
        ledger.wait_until("Creates on both nodes after the promotion", |l| {
            l.acked_on(0) >= on_a + 20 && l.acked_on(1) >= on_b + 20
        }),
    );
    stop_load(&rt, &ledger, tasks);
    let gap = longest_gap(&ledger, stopped);
    assert!(!standby.in_recovery(), "the standby was promoted");
    let failures = ledger.other_failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "only General Failures: {failures:?}");
    let acked = check_acknowledged(&rt, &conn, a.addr(), &ledger);
    check_acknowledged(&rt, &conn, b.addr(), &ledger);
    let extra = check_unacknowledged(&rt, &conn, a.addr(), &acked);
    println!(
        "failover: primary stopped (immediate) and standby promoted in {:.2} s; longest time \
         without a successful request {:.2} s; {} General Failures; {} acknowledged objects \
         intact on the new primary, {extra} unacknowledged but whole",
        promoted.as_secs_f64(),
        gap.as_secs_f64(),
        ledger.general_failures.load(Ordering::Relaxed),
        acked.len()
    );
    a.stop();
    b.stop();
}
