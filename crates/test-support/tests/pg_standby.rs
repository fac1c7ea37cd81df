//! The primary + synchronous standby of `pg.rs`: a committed row survives the primary's
//! immediate stop and the standby's promotion, and the promoted standby takes writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kmipd_test_support::pg::PgCluster;

#[test]
fn synchronous_standby_survives_failover() {
    let primary = PgCluster::start();
    let db = primary.create_database();
    primary.psql(&db, "CREATE TABLE t (v int)");
    let standby = primary.start_standby();
    assert!(standby.in_recovery());
    assert!(!primary.in_recovery());
    primary.require_synchronous_standby();
    // Acknowledged by a synchronous commit: on the standby's disk before the reply.
    primary.psql(&db, "INSERT INTO t VALUES (42)");
    assert_eq!(
        primary
            .psql("postgres", "SELECT sync_state FROM pg_stat_replication")
            .trim(),
        "sync"
    );

    primary.stop_immediate();
    standby.promote();
    assert!(!standby.in_recovery());
    assert_eq!(standby.psql(&db, "SELECT sum(v) FROM t").trim(), "42");
    // The promoted standby does not wait for a standby of its own.
    standby.psql(&db, "INSERT INTO t VALUES (1)");
    assert_eq!(standby.psql(&db, "SELECT sum(v) FROM t").trim(), "43");
    // A new database on the promoted standby does not clash with the primary's names.
    let db2 = standby.create_database();
    assert_ne!(db2, db);

    // The old primary comes back as it was (read-write, its own timeline): a failover
    // manager would rewind it; here it is only shown to start again.
    primary.start_again();
    assert!(!primary.in_recovery());
}
