//! Several `kmipd serve` processes on one PostgreSQL database (the harness is
//! `tests/cluster/`): one world seen through either node, a revocation through one node
//! refused by the other at once (and the server's constraints set through one node enforced by
//! the other at once), two Creates of one Name on two nodes at once, a node started
//! while PostgreSQL is down, a node whose master key differs, the admin commands with
//! PostgreSQL, and `kmipd migrate` from a sled instance.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod cluster;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::{BOUND, Cluster, KMIPD, Node, connect, run_bounded, runtime};
use kmipd_proto::build;
use kmipd_proto::enums::{
    object_type as ot, operation as op, result_reason, revocation_reason_code as rc,
};
use kmipd_proto::tag;
use kmipd_test_support::pg::PgCluster;

/// What only this binary asks of a node: its log.
impl Node {
    /// How many log lines contain `needle`.
    fn log_count(&self, needle: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until `needle` was logged `n` times.
    fn wait_for_log(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + BOUND;
        while self.log_count(needle) < n {
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged {n} times:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// What only this binary asks of an instance: a metrics listener, the admin command.
impl Cluster {
    /// [`Cluster::node_config`] with a metrics listener on a free loopback port.
    fn node_config_with_metrics(&self, name: &str) -> PathBuf {
        let path = self.node_config(name);
        cluster::with_metrics(&path);
        path
    }

    /// `kmipd admin --config CONFIG <args>`: (success, stdout, stderr).
    fn admin(&self, config: &Path, args: &[&str]) -> (bool, String, String) {
        let mut cmd = Command::new(KMIPD);
        cmd.args(["admin", "--config"]).arg(config).args(args);
        run_bounded(cmd)
    }
}

#[test]
fn a_client_alternating_between_two_nodes_sees_one_world() {
    let c = Cluster::new();
    // Both start at once on the empty database: they must agree on one KEK (else B could
    // not read what A stored).
    let mut a = Node::spawn(&c.node_config_own_hsm("a"));
    let mut b = Node::spawn(&c.node_config_own_hsm("b"));
    a.wait_listening();
    b.wait_listening();
    let conn = c.connector("client");
    let uid = runtime().block_on(async {
        let mut on_a = connect(&conn, a.addr()).await;
        let mut on_b = connect(&conn, b.addr()).await;
        let uid = on_a.create_aes(256, Some("one-world")).await.unwrap();
        let on_a_bytes = on_a.get_key_bytes(&uid).await.unwrap();
        let on_b_bytes = on_b.get_key_bytes(&uid).await.unwrap();
        assert_eq!(on_a_bytes.len(), 32);
        assert_eq!(*on_a_bytes, *on_b_bytes, "both nodes serve the same key");
        assert_eq!(
            on_b.locate_by_name("one-world").await.unwrap(),
            vec![uid.clone()]
        );
        on_a.activate(&uid).await.unwrap();
        on_b.revoke(&uid, rc::CESSATION_OF_OPERATION).await.unwrap();
        // The revocation through B is what A sees: the key can be destroyed on A now (an
        // active key could not).
        on_a.destroy(&uid).await.unwrap();
        let e = on_b.get_key_bytes(&uid).await.unwrap_err();
        assert!(
            e.result_reason().is_some(),
            "B refuses the destroyed key with a KMIP error: {e:?}"
        );
        // A second object made on B is seen on A.
        let other = on_b.create_aes(128, Some("made-on-b")).await.unwrap();
        assert_eq!(
            on_a.locate_by_name("made-on-b").await.unwrap(),
            vec![other.clone()]
        );
        assert_eq!(
            *on_a.get_key_bytes(&other).await.unwrap(),
            *on_b.get_key_bytes(&other).await.unwrap()
        );
        uid
    });
    a.stop();
    b.stop();
    // Each node audited what it answered, in its own chain: the Create in A's file, the
    // Revoke in B's (docs/audit.md: a search spans every node's files).
    let records = |node: &str| {
        let path = c.dir.join(format!("audit-{node}.log"));
        let mut cmd = std::process::Command::new(KMIPD);
        cmd.args(["audit", "verify"]).arg(&path);
        let (ok, out, err) = run_bounded(cmd);
        assert!(ok, "audit verify {node}: {out}{err}");
        std::fs::read_to_string(path).unwrap()
    };
    let (in_a, in_b) = (records("a"), records("b"));
    let has = |log: &str, op: &str| {
        log.lines()
            .any(|l| l.contains(&format!("\"operation\":\"{op}\"")) && l.contains(&uid))
    };
    assert!(has(&in_a, "Create") && has(&in_a, "Destroy"), "{in_a}");
    assert!(has(&in_b, "Revoke") && !has(&in_b, "Create"), "{in_b}");
    assert!(!has(&in_a, "Revoke"), "{in_a}");
}

#[test]
fn metrics_show_the_postgres_store_s_figures() {
    let c = Cluster::new();
    let a = Node::start(&c.node_config_with_metrics("a"));
    let conn = c.connector("client");
    runtime().block_on(async {
        let mut cl = connect(&conn, a.addr()).await;
        for i in 0..3 {
            cl.create_aes(256, Some(&format!("counted-{i}")))
                .await
                .unwrap();
        }
        // A second Create of one Name fails: a conflict or a refusal, not a database failure.
        assert!(cl.create_aes(256, Some("counted-0")).await.is_err());
    });
    let m = a.scrape();
    let value = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{m}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(value("kmipd_store_objects"), 3, "{m}");
    assert!(value("kmipd_store_commits_total") >= 3, "{m}");
    assert_eq!(value("kmipd_store_pool_size"), 16, "the default pool_size");
    assert!(value("kmipd_store_pool_connections") >= 1, "{m}");
    assert_eq!(
        value("kmipd_store_commit_failures_total{kind=\"database\"}"),
        0,
        "{m}"
    );
    assert_eq!(value("kmipd_store_corrupt_records"), 0);
    a.stop();
}

/// Light requests on PostgreSQL are prepared on the async threads against reads fetched ahead
/// (`kmipd_store::prefetch`): a 2.x Create with a Name, whose Name search is not among the
/// reads fetched ahead, after a second fetch, and committed once; a Get after one fetch.
#[test]
fn light_requests_run_on_reads_fetched_ahead_and_a_missed_search_commits_once() {
    let c = Cluster::new();
    let a = Node::start(&c.node_config_with_metrics("a"));
    let conn = c.connector("client");
    let rt = runtime();
    let mut cl = rt.block_on(connect(&conn, a.addr()));
    let name = "fetched-after-a-miss";
    let delta = |before: &str, after: &str, series: &str| {
        cluster::sample(after, series).saturating_sub(cluster::sample(before, series))
    };
    let outcome = |o: &str| format!("kmipd_prefetched_requests_total{{outcome=\"{o}\"}}");
    let before = a.scrape();
    let uid = rt.block_on(cl.create_aes(256, Some(name))).unwrap();
    let created = a.scrape();
    assert_eq!(
        delta(&before, &created, "kmipd_store_commits_total"),
        1,
        "the Create committed once:\n{created}"
    );
    assert_eq!(
        delta(&before, &created, &outcome("refetched")),
        1,
        "the Name search fetched after a first preparation missed it:\n{created}"
    );
    let key = rt.block_on(cl.get_key_bytes(&uid)).unwrap();
    assert_eq!(key.len(), 32);
    // A second Create of the Name is refused, as on the blocking path, and stores nothing.
    let got = a.scrape();
    assert!(rt.block_on(cl.create_aes(256, Some(name))).is_err());
    let refused = a.scrape();
    assert_eq!(delta(&got, &refused, "kmipd_store_commits_total"), 0);
    let found = rt.block_on(cl.locate_by_name(name)).unwrap();
    assert_eq!(found, vec![uid], "one object under the Name");
    let after = a.scrape();
    assert_eq!(
        delta(&created, &got, &outcome("one_fetch")),
        1,
        "the Get:\n{got}"
    );
    assert_eq!(delta(&got, &refused, &outcome("refetched")), 1, "{refused}");
    assert_eq!(delta(&before, &after, &outcome("blocking")), 0, "{after}");
    a.stop();
}

/// PostgreSQL down while light requests run on the async path: a Get and a Create fail with
/// General Failure within the request deadline (`store.deadline_ms`), the connection to the
/// client stays up, and the node serves again once PostgreSQL is back.
#[test]
fn a_postgres_outage_fails_light_requests_with_general_failure_within_the_deadline() {
    use kmipd_proto::enums::result_reason::GENERAL_FAILURE;
    const DEADLINE: Duration = Duration::from_millis(3000);
    // A PostgreSQL of this test's own: it is stopped and started.
    let pg = Arc::new(PgCluster::start());
    let c = Cluster::on(pg.clone());
    let config = c.node_config_with(
        "a",
        &c.url(),
        "connect_timeout_ms = 1000\nstatement_timeout_ms = 2000\ndeadline_ms = 3000\n",
    );
    cluster::with_metrics(&config);
    let a = Node::start(&config);
    let conn = c.connector("client");
    let rt = runtime();
    let mut cl = rt.block_on(connect(&conn, a.addr()));
    let uid = rt.block_on(cl.create_aes(256, None)).unwrap();
    rt.block_on(cl.get(&uid)).unwrap();
    pg.stop();
    for what in ["Get", "Create"] {
        let started = Instant::now();
        let failed = rt.block_on(async {
            match what {
                "Get" => cl.get(&uid).await.map(|_| ()),
                _ => cl.create_aes(256, None).await.map(|_| ()),
            }
        });
        let took = started.elapsed();
        let e = failed.expect_err("PostgreSQL is down");
        assert_eq!(e.result_reason(), Some(GENERAL_FAILURE), "{what}: {e}");
        assert!(
            took < DEADLINE + Duration::from_millis(1500),
            "{what} failed after {took:?}, past its deadline of {DEADLINE:?}"
        );
    }
    pg.start_again();
    let back = Instant::now() + BOUND;
    loop {
        match rt.block_on(cl.get(&uid)) {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.result_reason(), Some(GENERAL_FAILURE), "{e}");
                assert!(
                    Instant::now() < back,
                    "no Get succeeded after the restart: {e}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let m = a.scrape();
    assert!(
        cluster::sample(&m, "kmipd_prefetched_requests_total{outcome=\"one_fetch\"}") >= 4,
        "the requests ran on the async path:\n{m}"
    );
    assert_eq!(
        cluster::sample(&m, "kmipd_prefetched_requests_total{outcome=\"blocking\"}"),
        0,
        "{m}"
    );
    a.stop();
}

/// Also the server's constraints (Set Constraints, a setting in `kmipd_meta`): set through one
/// node, enforced by the other from its next request.
#[test]
fn a_key_revoked_and_constraints_set_through_one_node_hold_on_the_other_at_once() {
    let c = Cluster::new();
    let a = Node::start(&c.node_config("a"));
    let b = Node::start(&c.node_config("b"));
    let conn = c.connector("client");
    runtime().block_on(async {
        let mut on_a = connect(&conn, a.addr()).await;
        let mut on_b = connect(&conn, b.addr()).await;
        // B makes a 128-bit key before any constraint.
        on_b.create_aes(128, None).await.unwrap();
        let uid = on_a.create_aes(256, None).await.unwrap();
        on_a.activate(&uid).await.unwrap();
        // B uses the key (and would have cached it, if it cached).
        let sealed = on_b.encrypt(&uid, b"before the revocation").await.unwrap();
        assert_eq!(
            &*on_b.decrypt(&uid, &sealed).await.unwrap(),
            b"before the revocation"
        );
        on_a.revoke(&uid, rc::KEY_COMPROMISE).await.unwrap();
        // The very next request on B is refused: no node answers from a stale copy.
        let e = on_b
            .encrypt(&uid, b"after the revocation")
            .await
            .unwrap_err();
        assert!(e.result_reason().is_some(), "a KMIP refusal: {e:?}");

        // An administrator on A allows only 256-bit symmetric keys: B's very next 128-bit
        // Create is refused, a 256-bit one is made; B's Get Constraints shows them.
        let mut admin_on_a = connect(&c.connector("admin"), a.addr()).await;
        let only_256 = build::structure(
            tag::CONSTRAINTS,
            vec![build::structure(
                tag::CONSTRAINT,
                vec![
                    build::structure(
                        tag::OBJECT_TYPES,
                        vec![build::enumeration(tag::OBJECT_TYPE, ot::SYMMETRIC_KEY)],
                    ),
                    build::structure(
                        tag::ATTRIBUTES,
                        vec![build::int(tag::CRYPTOGRAPHIC_LENGTH, 256)],
                    ),
                ],
            )],
        );
        admin_on_a
            .call(op::SET_CONSTRAINTS, vec![only_256.clone()])
            .await
            .unwrap();
        let e = on_b.create_aes(128, None).await.unwrap_err();
        assert_eq!(
            e.result_reason(),
            Some(result_reason::CONSTRAINT_VIOLATION),
            "{e:?}"
        );
        on_b.create_aes(256, None).await.unwrap();
        assert_eq!(
            on_b.call(op::GET_CONSTRAINTS, vec![]).await.unwrap(),
            vec![only_256]
        );
        // Cleared through A: B makes the 128-bit key again.
        admin_on_a.call(op::SET_CONSTRAINTS, vec![]).await.unwrap();
        on_b.create_aes(128, None).await.unwrap();
    });
    a.stop();
    b.stop();
}

#[test]
fn two_creates_of_one_name_on_two_nodes_at_once_exactly_one_succeeds() {
    let c = Cluster::new();
    let a = Node::start(&c.node_config("a"));
    let b = Node::start(&c.node_config("b"));
    let conn = c.connector("client");
    let rt = runtime();
    for round in 0..10 {
        let name = format!("contested-{round}");
        let (ra, rb) = rt.block_on(async {
            let mut on_a = connect(&conn, a.addr()).await;
            let mut on_b = connect(&conn, b.addr()).await;
            let barrier = Arc::new(tokio::sync::Barrier::new(2));
            let (na, nb) = (name.clone(), name.clone());
            let (ba, bb) = (barrier.clone(), barrier);
            let ta = tokio::spawn(async move {
                ba.wait().await;
                on_a.create_aes(256, Some(&na)).await
            });
            let tb = tokio::spawn(async move {
                bb.wait().await;
                on_b.create_aes(256, Some(&nb)).await
            });
            (ta.await.unwrap(), tb.await.unwrap())
        });
        let made: Vec<String> = [&ra, &rb]
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();
        assert_eq!(
            made.len(),
            1,
            "round {round}: exactly one Create succeeds: {ra:?} / {rb:?}"
        );
        let refused = if ra.is_err() { &ra } else { &rb };
        assert!(
            refused.as_ref().unwrap_err().result_reason().is_some(),
            "the other is a KMIP refusal: {refused:?}"
        );
        rt.block_on(async {
            for node in [&a, &b] {
                let mut cl = connect(&conn, node.addr()).await;
                assert_eq!(cl.locate_by_name(&name).await.unwrap(), made);
            }
        });
    }
    a.stop();
    b.stop();
}

#[test]
fn a_node_started_while_postgres_is_down_waits_then_serves_and_a_signal_stops_the_wait() {
    // A cluster of this test's own: it is stopped and started.
    let pg = Arc::new(PgCluster::start());
    let c = Cluster::on(pg.clone());
    let config = c.node_config("a");
    pg.stop();
    // A node that waits and is told to stop exits cleanly.
    let quitter = Node::spawn(&config);
    quitter.wait_for_log("PostgreSQL cannot be reached", 1);
    quitter.stop();
    // A node that waits serves once the database is back.
    let mut a = Node::spawn(&config);
    a.wait_for_log("PostgreSQL cannot be reached", 2);
    assert!(a.log_count("WARN") >= 2, "warnings:\n{}", a.log_text());
    assert_eq!(a.log_count("kmipd listening"), 0);
    pg.start_again();
    let addr = a.wait_listening();
    let conn = c.connector("client");
    runtime().block_on(async {
        let mut cl = connect(&conn, addr).await;
        let uid = cl.create_aes(256, Some("after-the-wait")).await.unwrap();
        assert_eq!(cl.get_key_bytes(&uid).await.unwrap().len(), 32);
    });
    a.stop();
}

#[test]
fn a_node_whose_master_key_differs_refuses_to_serve() {
    let c = Cluster::new();
    let a = Node::start(&c.node_config("a"));
    // Another instance: its own SoftHSM2 token, so another master key, on the same database.
    let other = Cluster::on(c.pg.clone());
    let config = other.node_config_with(
        "stranger",
        &c.url(),
        "connect_timeout_ms = 2000\ndeadline_ms = 10000\n",
    );
    let (status, log) = Node::spawn(&config).wait_exit();
    assert!(!status.success(), "the stranger must not serve:\n{log}");
    assert!(log.contains("master key"), "a clear error:\n{log}");
    assert!(log.contains("refusing to serve"), "{log}");
    assert!(!log.contains("kmipd listening"), "{log}");
    a.stop();
}

#[test]
fn a_node_on_a_schema_newer_than_it_knows_exits_at_once_instead_of_waiting() {
    let c = Cluster::new();
    let a = Node::start(&c.node_config("a"));
    a.stop();
    // A newer kmipd upgraded the schema: this one cannot read it, and no wait would help.
    c.pg.psql(
        &c.db,
        &format!(
            "INSERT INTO kmipd_schema (version) VALUES ({})",
            kmipd_store::SCHEMA_VERSION + 1
        ),
    );
    let (status, log) = Node::spawn(&c.node_config("a")).wait_exit();
    assert!(!status.success(), "it must not serve:\n{log}");
    assert!(
        log.contains("newer than this kmipd"),
        "a clear error:\n{log}"
    );
    assert!(
        !log.contains("PostgreSQL cannot be reached"),
        "no waiting:\n{log}"
    );
    assert!(!log.contains("kmipd listening"), "{log}");
}

/// The KEK rotated through A's admin socket: B, which was unlocked with the old KEK only,
/// learns the new one from the database (once) when its commit finds it current and when it
/// reads a re-wrapped object, and serves old and new objects; then the master key rotation
/// through A, B restarted after it, and the backup commands pointing to PostgreSQL's tools.
#[test]
fn admin_commands_with_postgres_rotate_the_kek_and_the_master_key_and_refuse_backups_with_directions()
 {
    let c = Cluster::new();
    let config_a = c.node_config("a");
    let config_b = c.node_config("b");
    let a = Node::start(&config_a);
    let b = Node::start(&config_b);
    let conn = c.connector("client");
    let rt = runtime();
    let (uid, bytes) = rt.block_on(async {
        let mut cl = connect(&conn, a.addr()).await;
        let uid = cl.create_aes(256, None).await.unwrap();
        let bytes = cl.get_key_bytes(&uid).await.unwrap().to_vec();
        (uid, bytes)
    });
    let (ok, out, err) = c.admin(&config_a, &["rotate-kek"]);
    assert!(ok, "rotate-kek: {out}{err}");
    assert!(
        out.contains("KEK 2 is current, 1 records re-wrapped; KEK 1 retired"),
        "{out}"
    );
    assert_eq!(
        c.pg.psql(
            &c.db,
            "SELECT count(*) FROM kmipd_objects WHERE kek_id <> 2"
        )
        .trim(),
        "0"
    );
    // B learns KEK 2 once: at its first request below, or earlier if its rotation
    // scheduler's scan (a background read, `[rotation]`) meets a re-wrapped record first.
    let learned = "KEK learned from the database";
    let mut keys = vec![(uid, bytes)];
    rt.block_on(async {
        // B creates first (its commit finds KEK 2 current), then reads the re-wrapped key.
        let mut on_b = connect(&conn, b.addr()).await;
        let by_b = on_b.create_aes(256, None).await.unwrap();
        let by_b_bytes = on_b.get_key_bytes(&by_b).await.unwrap().to_vec();
        assert_eq!(
            on_b.get_key_bytes(&keys[0].0).await.unwrap().to_vec(),
            keys[0].1
        );
        // A created under KEK 2 too; each node reads what the other wrote.
        let mut on_a = connect(&conn, a.addr()).await;
        assert_eq!(
            on_a.get_key_bytes(&by_b).await.unwrap().to_vec(),
            by_b_bytes
        );
        let by_a = on_a.create_aes(256, None).await.unwrap();
        let by_a_bytes = on_a.get_key_bytes(&by_a).await.unwrap().to_vec();
        assert_eq!(
            on_b.get_key_bytes(&by_a).await.unwrap().to_vec(),
            by_a_bytes
        );
        keys.push((by_b, by_b_bytes));
        keys.push((by_a, by_a_bytes));
    });
    assert_eq!(b.log_count(learned), 1, "{}", b.log_text());
    assert_eq!(a.log_count(learned), 0);
    let (ok, _, err) = c.admin(&config_a, &["backup", "/tmp/never-written.backup"]);
    assert!(!ok);
    assert!(
        err.contains("pg_dump") && err.contains("pg_basebackup"),
        "{err}"
    );
    let (ok, out, err) = c.admin(&config_a, &["rotate-master-key"]);
    assert!(ok, "rotate-master-key: {out}{err}");
    assert!(out.contains("master key rotated"), "{out}");
    // B dies (SIGKILL) and restarts after the rotations through A: the check value and the
    // KEK blob were re-wrapped under the new master key version, and B serves the same keys.
    b.kill9();
    let b = Node::start(&config_b);
    rt.block_on(async {
        let mut cl = connect(&conn, b.addr()).await;
        for (uid, bytes) in &keys {
            assert_eq!(&cl.get_key_bytes(uid).await.unwrap().to_vec(), bytes);
        }
    });
    // `kmipd restore` with a PostgreSQL configuration points to PostgreSQL's tools.
    let mut cmd = std::process::Command::new(KMIPD);
    cmd.args(["restore", "--config"])
        .arg(&config_a)
        .arg("/tmp/no-such.backup");
    let (ok, _, err) = run_bounded(cmd);
    assert!(!ok);
    assert!(err.contains("pg_dump"), "{err}");
    a.stop();
    b.stop();
}

#[test]
fn migrate_copies_a_sled_instance_into_postgres_that_then_serves_the_same_keys() {
    let c = Cluster::new();
    let conn = c.connector("client");
    let rt = runtime();
    // A sled instance with objects made through the KMIP client.
    let sled = Node::start(&c.sled_config());
    let keys = rt.block_on(async {
        let mut cl = connect(&conn, sled.addr()).await;
        let mut keys = Vec::new();
        for i in 0..20 {
            let uid = cl
                .create_aes(256, Some(&format!("migrated-{i}")))
                .await
                .unwrap();
            keys.push((uid.clone(), cl.get_key_bytes(&uid).await.unwrap().to_vec()));
        }
        keys
    });
    sled.stop();
    let to = c.node_config("a");
    let migrate = |to: &std::path::Path| {
        let mut cmd = std::process::Command::new(KMIPD);
        cmd.args(["migrate", "--from-config"])
            .arg(c.sled_config())
            .arg("--to-config")
            .arg(to);
        run_bounded(cmd)
    };
    let (ok, out, err) = migrate(&to);
    assert!(ok, "migrate: {out}{err}");
    assert!(out.contains("20 objects"), "{out}");
    assert!(out.contains("backed up first"), "{out}");
    // A second run refuses the database, which is no longer empty.
    let (ok, out, err) = migrate(&to);
    assert!(!ok, "{out}");
    assert!(err.contains("not empty"), "{err}");
    let a = Node::start(&to);
    rt.block_on(async {
        let mut cl = connect(&conn, a.addr()).await;
        for (uid, bytes) in &keys {
            assert_eq!(
                &cl.get_key_bytes(uid).await.unwrap().to_vec(),
                bytes,
                "{uid}"
            );
        }
        assert_eq!(
            cl.locate_by_name("migrated-7").await.unwrap(),
            vec![keys[7].0.clone()]
        );
    });
    a.stop();
}
