//! PgStore against a real PostgreSQL (a private cluster per test binary,
//! `kmipd_test_support::pg`), each test in a schema of its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use kmipd_proto::attributes::AttrName;
use kmipd_proto::tag;
use kmipd_test_support::pg::PgCluster;
use kmipd_ttlv::{Ttlv, Value};

use super::*;
use crate::conditional_tests::{kek, named, no_other_named, obj};
use crate::{Filter, KekId, SledStore};

static SCHEMAS: AtomicU32 = AtomicU32::new(0);

/// A cluster and options for a new schema in its `postgres` database.
fn fresh() -> (Arc<PgCluster>, PgOptions) {
    let cluster = PgCluster::shared();
    let n = SCHEMAS.fetch_add(1, Ordering::Relaxed);
    let mut opts = PgOptions::new(cluster.url("postgres"));
    opts.schema = Some(format!("unit{n}"));
    opts.pool_size = 4;
    opts.deadline = Duration::from_secs(30);
    (cluster, opts)
}

fn versioned(uid: &str, seq: u64, version: u8) -> ManagedObject {
    obj(uid, seq, &[b'v', version])
}

/// A plain connection for poking at the database behind the store's back, on a runtime of
/// its own.
struct Raw {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Raw {
    fn connect(opts: &PgOptions) -> Raw {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut config: tokio_postgres::Config = opts.url.parse().unwrap();
        if let Some(s) = &opts.schema {
            config.options(format!("-c search_path={s}"));
        }
        let client = rt.block_on(async {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(async move {
                let _ = conn.await;
            });
            client
        });
        Raw { rt, client }
    }

    fn batch(&self, sql: &str) {
        self.rt.block_on(self.client.batch_execute(sql)).unwrap();
    }

    fn scalar_i64(&self, sql: &str) -> i64 {
        self.rt
            .block_on(self.client.query_one(sql, &[]))
            .unwrap()
            .get(0)
    }
}

#[test]
fn pg_store_conditional_commits() {
    let (_c, opts) = fresh();
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    crate::conditional_tests::conditional_commits(&s, &versioned);
}

/// Settings, shared by the nodes of one database.
#[test]
fn pg_store_settings_are_shared_by_nodes() {
    let (_c, opts) = fresh();
    let a = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let b = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    crate::conditional_tests::settings(&a);
    assert_eq!(b.setting("constraints").unwrap(), Some(b"two".to_vec()));
    b.set_setting("constraints", None).unwrap();
    assert_eq!(a.setting("constraints").unwrap(), None);
}

/// The asynchronous read path serves a setting from the node's memory of its last read, and
/// what it served is checked: a commit fails as a conflict (nothing written) when another
/// node changed the setting since, a check reads it again; either way the node then serves
/// the new value.
#[test]
fn a_setting_served_from_memory_is_checked_by_the_commit_and_by_a_check() {
    use crate::prefetch::Want;
    let (_c, opts) = fresh();
    let a = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let b = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let access = b.async_access().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let until = || std::time::Instant::now() + Duration::from_secs(30);
    let want = Want {
        settings: vec!["c".into()],
        ..Want::default()
    };
    let fetch = || rt.block_on(access.fetch(want.clone(), until())).unwrap();
    // The first read goes to the database; the next is served from memory.
    let first = fetch();
    assert_eq!(first.settings, vec![("c".to_owned(), None)]);
    assert!(first.hinted.is_empty());
    a.set_setting("c", Some(b"v1")).unwrap();
    let stale = fetch();
    assert_eq!(stale.settings, vec![("c".to_owned(), None)]);
    assert_eq!(stale.hinted, vec!["c".to_owned()]);
    // A commit prepared on the stale value fails and writes nothing...
    let put = |uid: &str| vec![Change::Put(obj(uid, 1, b"k"))];
    let checked = vec![("c".to_owned(), None)];
    let e = rt
        .block_on(access.commit(put("u1"), checked, until()))
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e:?}");
    assert_eq!(a.get("u1").unwrap(), None);
    // ...and the node now serves the new value (still from memory), with which it commits.
    let fresh = fetch();
    assert_eq!(fresh.settings, vec![("c".to_owned(), Some(b"v1".to_vec()))]);
    assert_eq!(fresh.hinted, vec!["c".to_owned()]);
    let checked = vec![("c".to_owned(), Some(b"v1".to_vec()))];
    rt.block_on(access.commit(put("u1"), checked.clone(), until()))
        .unwrap();
    assert!(a.get("u1").unwrap().is_some());
    // A check without a commit: true while unchanged, false once changed through A.
    assert!(
        rt.block_on(access.check_settings(checked.clone(), until()))
            .unwrap()
    );
    a.set_setting("c", None).unwrap();
    assert!(
        !rt.block_on(access.check_settings(checked, until()))
            .unwrap()
    );
    assert_eq!(fetch().settings, vec![("c".to_owned(), None)]);
    // A setting written through this node is read from the database next time.
    b.set_setting("c", Some(b"v2")).unwrap();
    let after_write = fetch();
    assert_eq!(
        after_write.settings,
        vec![("c".to_owned(), Some(b"v2".to_vec()))]
    );
    assert!(after_write.hinted.is_empty());
}

#[test]
fn pg_store_search_conditions() {
    let (_c, opts) = fresh();
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    crate::conditional_tests::search_conditions(&s);
}

/// Objects written through one node are read, found and changed through another at once;
/// sequence numbers from both nodes never repeat.
#[test]
fn two_nodes_see_one_world() {
    let (_c, opts) = fresh();
    let a = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let b = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let s1 = a.next_sequence().unwrap();
    let s2 = b.next_sequence().unwrap();
    let s3 = a.next_sequence().unwrap();
    assert!(s1 < s2 && s2 < s3, "{s1} {s2} {s3}");
    a.commit(vec![Change::Put(obj("K", s1, b"key-one"))])
        .unwrap();
    assert_eq!(b.get("K").unwrap(), Some(obj("K", s1, b"key-one")));
    // "Revoked" on B (state 5): A sees it on its next read, with no cache to go stale.
    let mut revoked = obj("K", s1, b"key-one");
    revoked.attributes.set(tag::STATE, Value::Enumeration(5));
    b.commit(vec![Change::Put(revoked.clone())]).unwrap();
    assert_eq!(a.get("K").unwrap(), Some(revoked.clone()));
    let q = Query::new(vec![Filter::Attr(
        AttrName::Std(tag::STATE),
        Value::Enumeration(5),
    )]);
    assert_eq!(a.find(&q).unwrap(), vec![revoked]);
    a.commit(vec![Change::Delete("K".into())]).unwrap();
    assert!(b.get("K").unwrap().is_none());
}

/// Two nodes read one object at one revision and both commit a change expecting it: exactly
/// one wins, the other gets a Conflict and nothing of it is stored. Then many increments
/// from both nodes with retries: every acknowledged one is in the final value.
#[test]
fn two_nodes_racing_on_one_object() {
    let (_c, opts) = fresh();
    let a = Arc::new(PgStore::open_with_kek(&opts, kek(1, 1)).unwrap());
    let b = Arc::new(PgStore::open_with_kek(&opts, kek(1, 1)).unwrap());
    a.commit(vec![Change::Put(versioned("X", 1, 0))]).unwrap();
    for round in 1..=10u8 {
        let (_, rev) = a.get_revised("X").unwrap().unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = [(a.clone(), 0u8), (b.clone(), 100u8)]
            .into_iter()
            .map(|(s, tagv)| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    s.commit(vec![
                        Change::Expect {
                            uid: "X".into(),
                            revision: Some(rev),
                        },
                        Change::Put(versioned("X", 1, round.wrapping_add(tagv))),
                    ])
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let wins: Vec<usize> = (0..2).filter(|i| results[*i].is_ok()).collect();
        assert_eq!(wins.len(), 1, "round {round}: {results:?}");
        let loser = 1 - wins[0];
        assert!(
            matches!(&results[loser], Err(StoreError::Conflict { uid }) if uid == "X"),
            "{results:?}"
        );
        let winner_version = round.wrapping_add(if wins[0] == 0 { 0 } else { 100 });
        assert_eq!(b.get("X").unwrap(), Some(versioned("X", 1, winner_version)));
    }

    // Counter increments: read, expect, write; retry on conflict.
    a.commit(vec![Change::Put(counter(0))]).unwrap();
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || {
                let mut acked = 0u64;
                let mut conflicts = 0u64;
                while acked < 10 {
                    let (o, rev) = s.get_revised("C").unwrap().unwrap();
                    let n = count_of(&o);
                    match s.commit(vec![
                        Change::Expect {
                            uid: "C".into(),
                            revision: Some(rev),
                        },
                        Change::Put(counter(n + 1)),
                    ]) {
                        Ok(()) => acked += 1,
                        Err(StoreError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                (acked, conflicts)
            })
        })
        .collect();
    let acked: u64 = threads.into_iter().map(|t| t.join().unwrap().0).sum();
    assert_eq!(count_of(&a.get("C").unwrap().unwrap()), acked);
    assert_eq!(acked, 60);
}

fn counter(n: u64) -> ManagedObject {
    obj("C", 1, &n.to_be_bytes())
}

fn count_of(o: &ManagedObject) -> u64 {
    let Some(Ttlv {
        value: Value::Structure(f),
        ..
    }) = &o.object
    else {
        panic!("no object")
    };
    let Value::ByteString(b) = &f[0].value else {
        panic!("no bytes")
    };
    u64::from_be_bytes(b.as_slice().try_into().unwrap())
}

/// Two nodes each searched a Name, found nothing and create an object of that Name at the
/// same moment: exactly one wins, and the Name is held by one object.
#[test]
fn two_nodes_racing_on_one_name() {
    let (_c, opts) = fresh();
    let a = Arc::new(PgStore::open_with_kek(&opts, kek(1, 1)).unwrap());
    let b = Arc::new(PgStore::open_with_kek(&opts, kek(1, 1)).unwrap());
    for round in 0..10u64 {
        let name = format!("name{round}");
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = [(a.clone(), "a"), (b.clone(), "b")]
            .into_iter()
            .map(|(s, node)| {
                let barrier = barrier.clone();
                let name = name.clone();
                std::thread::spawn(move || {
                    let uid = format!("{node}{round}");
                    let seq = s.next_sequence().unwrap();
                    let found = s
                        .find(&Query::new(vec![Filter::Name(name.clone())]))
                        .unwrap();
                    assert!(found.is_empty());
                    barrier.wait();
                    (
                        uid.clone(),
                        s.commit(vec![
                            no_other_named(&name, &[]),
                            Change::Put(named(&uid, seq, &name)),
                        ]),
                    )
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<&String> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(u, _)| u)
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        for (uid, r) in &results {
            if let Err(e) = r {
                assert!(
                    matches!(e, StoreError::Conflict { uid: other } if other == winners[0]),
                    "{uid}: {e:?}"
                );
            }
        }
        let holders = a.find(&Query::new(vec![Filter::Name(name)])).unwrap();
        assert_eq!(holders.len(), 1);
        assert_eq!(&holders[0].uid, winners[0]);
    }
}

/// Two nodes, each searching the Name the other one writes: at most one may pass (in either
/// order the second one's search finds the first one's object), so exactly one does.
#[test]
fn two_nodes_each_writing_the_name_the_other_searched() {
    let (_c, opts) = fresh();
    let a = Arc::new(PgStore::open_with_kek(&opts, kek(1, 1)).unwrap());
    let b = Arc::new(PgStore::open_with_kek(&opts, kek(1, 1)).unwrap());
    for round in 0..10u64 {
        let (x, y) = (format!("x{round}"), format!("y{round}"));
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = [(a.clone(), x.clone(), y.clone()), (b.clone(), y, x)]
            .into_iter()
            .map(|(s, searched, written)| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let seq = s.next_sequence().unwrap();
                    let uid = format!("holder-of-{written}");
                    barrier.wait();
                    s.commit(vec![
                        no_other_named(&searched, &[]),
                        Change::Put(named(&uid, seq, &written)),
                    ])
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(StoreError::Conflict { .. }))),
            "{results:?}"
        );
    }
}

/// Locate's indexed filters are answered by the terms index, not by reading every record.
#[test]
fn find_narrows_through_the_terms_index() {
    let (_c, opts) = fresh();
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let objects: Vec<Change> = (0..3000u64)
        .map(|i| Change::Put(obj(&format!("u{i:05}"), i, b"m")))
        .collect();
    s.commit(objects).unwrap();
    let raw = Raw::connect(&opts);
    raw.batch("ANALYZE");
    let q = Query::new(vec![Filter::Name("name-u01234".into())]);
    assert_eq!(s.find(&q).unwrap(), vec![obj("u01234", 1234, b"m")]);
    reads_the_terms_index(&raw, &q, &[]);
}

/// Asserts that PostgreSQL plans `q`'s select (its first parameter, a term, written in; then
/// the `more` parameters) through the terms index, not a scan of the objects; the term in hex.
fn reads_the_terms_index(raw: &Raw, q: &Query, more: &[(&str, String)]) -> String {
    let (sql, params) = select_sql(q, None).unwrap();
    let Param::Bytes(term) = &params[0] else {
        panic!("{params:?}")
    };
    let hex: String = term.iter().map(|b| format!("{b:02x}")).collect();
    let mut sql = sql.replace("$1", &format!("'\\x{hex}'::bytea"));
    for (name, value) in more {
        sql = sql.replace(name, value);
    }
    let plan: Vec<String> = raw
        .rt
        .block_on(raw.client.query(&format!("EXPLAIN {sql}"), &[]))
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("kmipd_terms_term"), "{plan}");
    assert!(!plan.contains("Seq Scan on kmipd_objects"), "{plan}");
    hex
}

/// The rotation scheduler's query reads the rotation due date index, and the schema 3 migration
/// adds that index's terms for objects stored before it.
#[test]
fn rotation_due_reads_its_index_and_the_migration_fills_it() {
    let (_c, opts) = fresh();
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let rotating = |uid: &str, seq: u64, initial: i64, interval: u32| {
        let mut o = obj(uid, seq, b"m");
        o.attributes
            .set(tag::ROTATE_AUTOMATIC, Value::Boolean(true));
        o.attributes
            .set(tag::INITIAL_DATE, Value::DateTime(initial));
        o.attributes
            .set(tag::ROTATE_INTERVAL, Value::Interval(interval));
        o
    };
    let mut objects: Vec<Change> = (0..2000u64)
        .map(|i| Change::Put(obj(&format!("u{i:05}"), i, b"m")))
        .collect();
    objects.push(Change::Put(rotating("due", 3000, 1_000, 100)));
    objects.push(Change::Put(rotating("later", 3001, 1_000, 900)));
    s.commit(objects).unwrap();
    let due = |s: &PgStore| -> Vec<String> {
        s.find(&Query::new(vec![Filter::RotationDue(1_500)]))
            .unwrap()
            .into_iter()
            .map(|o| o.uid)
            .collect()
    };
    assert_eq!(due(&s), ["due"]);
    let raw = Raw::connect(&opts);
    raw.batch("ANALYZE");
    let q = Query::new(vec![Filter::RotationDue(1_500)]);
    let hex = reads_the_terms_index(
        &raw,
        &q,
        &[("$2", i64::MIN.to_string()), ("$3", "1500".into())],
    );
    drop(s);
    // A database of schema 2: no rotation terms. Opening it migrates and fills them.
    raw.batch(&format!(
        "DELETE FROM kmipd_terms WHERE term = '\\x{hex}'::bytea; \
         DELETE FROM kmipd_schema WHERE version >= 3"
    ));
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    assert_eq!(due(&s), ["due"]);
    assert_eq!(
        raw.scalar_i64(&format!(
            "SELECT count(*) FROM kmipd_terms WHERE term = '\\x{hex}'::bytea"
        )),
        2
    );
}

/// Every row of `kmipd_terms`, sorted: (uid, term, date).
fn term_rows(raw: &Raw) -> Vec<(String, Vec<u8>, Option<i64>)> {
    raw.rt
        .block_on(raw.client.query(
            "SELECT uid, term, date FROM kmipd_terms ORDER BY uid, term, date",
            &[],
        ))
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Asserts that `kmipd_terms` holds exactly the index terms of the stored objects: no term
/// missing, none left over from an older record, none twice.
fn terms_are_the_records_terms(s: &PgStore, raw: &Raw) {
    let mut want = Vec::new();
    for o in s.all().unwrap() {
        for (term, date) in crate::query::index_terms(&o).unwrap() {
            want.push((o.uid.clone(), term, date));
        }
    }
    want.sort();
    assert_eq!(term_rows(raw), want);
}

/// The shared Locate check (every kind of term, after updates that change only some terms,
/// deletes and a uid created again), and the terms table equal to the records' terms after it.
#[test]
fn pg_store_locate_after_updates() {
    let (_c, opts) = fresh();
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    crate::conditional_tests::locate_after_updates(&s);
    terms_are_the_records_terms(&s, &Raw::connect(&opts));
}

/// An update writes only the terms that changed: the rows of the unchanged terms are the same
/// tuples as before (their `ctid`s, where a delete and insert would move them), and a
/// rewrite without any change of terms touches no term row.
#[test]
fn an_update_writes_only_the_terms_that_changed() {
    let (_c, opts) = fresh();
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let raw = Raw::connect(&opts);
    let mut a = obj("A", 1, b"a");
    s.commit(vec![Change::Put(a.clone())]).unwrap();
    let ctids = || -> Vec<(String, Vec<u8>)> {
        raw.rt
            .block_on(raw.client.query(
                "SELECT ctid::text, term FROM kmipd_terms WHERE uid = 'A' ORDER BY term",
                &[],
            ))
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let before = ctids();
    // No term changes (key material only).
    a.object = obj("A", 1, b"other").object;
    s.commit(vec![Change::Put(a.clone())]).unwrap();
    assert_eq!(ctids(), before);
    // One term changes (the state): only its row is new.
    a.attributes.set(tag::STATE, Value::Enumeration(2));
    s.commit(vec![Change::Put(a.clone())]).unwrap();
    let after = ctids();
    let kept = after.iter().filter(|r| before.contains(r)).count();
    assert_eq!(after.len(), before.len());
    assert_eq!(kept, before.len() - 1, "{before:?}\n{after:?}");
    terms_are_the_records_terms(&s, &raw);
}

/// A record that no longer parses (its old terms unknown) can still be replaced or deleted:
/// all its term rows go (deleted by uid) and the new record's terms are written.
#[test]
fn a_damaged_record_is_replaced_with_its_terms() {
    let (_c, opts) = fresh();
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let raw = Raw::connect(&opts);
    s.commit(vec![
        Change::Put(obj("bad", 1, b"k1")),
        Change::Put(obj("gone", 2, b"k2")),
        Change::Put(obj("kept", 3, b"k3")),
    ])
    .unwrap();
    raw.batch(
        "UPDATE kmipd_objects SET record = set_byte(record, 3, get_byte(record, 3) # 1) \
         WHERE uid IN ('bad', 'gone')",
    );
    let mut fixed = obj("bad", 1, b"k1");
    fixed.owner = "bob".into();
    s.commit(vec![
        Change::Put(fixed.clone()),
        Change::Delete("gone".into()),
    ])
    .unwrap();
    terms_are_the_records_terms(&s, &raw);
    assert_eq!(
        s.find(&Query::new(vec![Filter::Owner("bob".into())]))
            .unwrap(),
        vec![fixed]
    );
    assert_eq!(
        s.find(&Query::new(vec![Filter::Owner("alice".into())]))
            .unwrap(),
        vec![obj("kept", 3, b"k3")]
    );
}

/// A database of schema version 5 with objects in it (the terms rows of version 5 are those
/// of versions 6 and 7: those migrations change indexes and the begin function, not data):
/// opening it migrates to the newest version, drops the two indexes, keeps every Locate result, and later updates keep the
/// terms exact.
#[test]
fn schema_5_with_data_upgrades_and_keeps_locate_results() {
    let (_c, opts) = fresh();
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let mut objects: Vec<ManagedObject> = (0..50u64)
        .map(|i| obj(&format!("u{i:02}"), i, &[u8::try_from(i).unwrap()]))
        .collect();
    s.commit(objects.iter().cloned().map(Change::Put).collect())
        .unwrap();
    objects[7].attributes.set(tag::STATE, Value::Enumeration(2));
    s.commit(vec![
        Change::Put(objects[7].clone()),
        Change::Delete("u08".into()),
    ])
    .unwrap();
    let queries = [
        Query::new(vec![Filter::Owner("alice".into())]),
        Query::new(vec![Filter::Name("name-u03".into())]),
        Query::new(vec![Filter::Attr(
            AttrName::Std(tag::STATE),
            Value::Enumeration(2),
        )]),
        Query::new(vec![Filter::Attr(
            AttrName::Custom {
                vendor: None,
                name: "x-app".into(),
            },
            Value::TextString("app1".into()),
        )]),
        Query::new(vec![Filter::Date(
            AttrName::Std(tag::INITIAL_DATE),
            1_010,
            1_020,
        )]),
    ];
    let results = |s: &PgStore| -> Vec<Vec<ManagedObject>> {
        queries.iter().map(|q| s.find(q).unwrap()).collect()
    };
    let before = results(&s);
    assert_eq!(before[2].len(), 1);
    assert_eq!(before[4].len(), 11);
    drop(s);
    // Back to version 5: its indexes and its seven-argument begin function only.
    let raw = Raw::connect(&opts);
    raw.batch(
        "CREATE INDEX kmipd_terms_uid ON kmipd_terms (uid); \
         CREATE INDEX kmipd_objects_kek ON kmipd_objects (kek_id) WHERE kek_id IS NOT NULL; \
         DROP FUNCTION kmipd_begin(integer, integer, integer, integer, bigint[], integer, \
             boolean, text[], text[]); \
         DELETE FROM kmipd_schema WHERE version >= 6",
    );
    let index = |name: &str| {
        raw.scalar_i64(&format!(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() \
             AND indexname = '{name}'"
        ))
    };
    assert_eq!(index("kmipd_terms_uid"), 1);
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    assert_eq!(
        raw.scalar_i64("SELECT max(version)::bigint FROM kmipd_schema"),
        i64::from(SCHEMA_VERSION)
    );
    assert_eq!(index("kmipd_terms_uid"), 0);
    assert_eq!(index("kmipd_objects_kek"), 0);
    assert_eq!(results(&s), before);
    objects[7].attributes.set(tag::STATE, Value::Enumeration(1));
    s.commit(vec![
        Change::Put(objects[7].clone()),
        Change::Delete("u15".into()),
    ])
    .unwrap();
    terms_are_the_records_terms(&s, &raw);
    assert_eq!(s.find(&queries[2]).unwrap(), vec![]);
    assert_eq!(s.find(&queries[4]).unwrap().len(), 10);
}

/// The write statement's term deletes find their rows through `kmipd_terms_term` (the only
/// index of `kmipd_terms` since version 6), never by scanning the table: in the plan
/// PostgreSQL makes for a commit that changes two terms of an object among a few thousand,
/// and in the generic plan of the same statement (what a connection may keep once it has
/// run it a few times).
#[test]
fn the_term_deletes_read_the_terms_index() {
    let (_c, opts) = fresh();
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    s.commit(
        (0..3000u64)
            .map(|i| Change::Put(obj(&format!("u{i:05}"), i, b"m")))
            .collect(),
    )
    .unwrap();
    let state = crate::query::filter_prefix(&Filter::Attr(
        AttrName::Std(tag::STATE),
        Value::Enumeration(1),
    ))
    .unwrap();
    let date =
        crate::query::filter_prefix(&Filter::Date(AttrName::Std(tag::INITIAL_DATE), 0, 0)).unwrap();
    let hex = |b: &[u8]| -> String { b.iter().map(|b| format!("{b:02x}")).collect() };
    let sql =
        commit::term_deletes_for_tests(("u00007", date.clone(), 1007), ("u00007", state.clone()));
    let raw = Raw::connect(&opts);
    raw.batch(&format!("ANALYZE; PREPARE w AS {sql}"));
    let explain = || -> String {
        let plan: Vec<String> = raw
            .rt
            .block_on(raw.client.query(
                &format!(
                    "EXPLAIN EXECUTE w('{{u00007}}', '{{\"\\\\x{}\"}}', '{{1007}}', \
                     '{{u00007}}', '{{\"\\\\x{}\"}}', '{}')",
                    hex(&date),
                    hex(&state),
                    uuid_text()
                ),
                &[],
            ))
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        plan.join("\n")
    };
    for mode in ["force_custom_plan", "force_generic_plan"] {
        raw.batch(&format!("SET plan_cache_mode = {mode}"));
        let plan = explain();
        assert_eq!(
            plan.matches("Index Scan using kmipd_terms_term").count(),
            2,
            "{mode}: {plan}"
        );
        assert!(!plan.contains("Seq Scan"), "{mode}: {plan}");
    }
    // And the statement deletes exactly those two rows.
    let before = raw.scalar_i64("SELECT count(*) FROM kmipd_terms");
    raw.batch(&format!(
        "BEGIN; EXECUTE w('{{u00007}}', '{{\"\\\\x{}\"}}', '{{1007}}', '{{u00007}}', \
         '{{\"\\\\x{}\"}}', '{}'); COMMIT",
        hex(&date),
        hex(&state),
        uuid_text()
    ));
    assert_eq!(
        raw.scalar_i64("SELECT count(*) FROM kmipd_terms"),
        before - 2
    );
    assert_eq!(
        raw.scalar_i64("SELECT count(*) FROM kmipd_terms WHERE uid = 'u00007'"),
        i64::try_from(
            crate::query::index_terms(&obj("u00007", 7, b"m"))
                .unwrap()
                .len()
        )
        .unwrap()
            - 2
    );
}

fn uuid_text() -> &'static str {
    "00000000-0000-4000-8000-000000000001"
}

#[test]
fn a_newer_schema_is_refused() {
    let (_c, opts) = fresh();
    drop(PgStore::open(&opts).unwrap());
    let raw = Raw::connect(&opts);
    raw.batch(&format!(
        "INSERT INTO kmipd_schema (version) VALUES ({})",
        SCHEMA_VERSION + 1
    ));
    let err = PgStore::open(&opts).unwrap_err();
    assert!(matches!(err, StoreError::Incompatible(_)), "{err:?}");
    assert!(err.to_string().contains("newer than this kmipd"), "{err}");
    // Reopening an up-to-date schema applies nothing again.
    raw.batch(&format!(
        "DELETE FROM kmipd_schema WHERE version = {}",
        SCHEMA_VERSION + 1
    ));
    drop(PgStore::open(&opts).unwrap());
    assert_eq!(
        raw.scalar_i64("SELECT count(*) FROM kmipd_schema"),
        i64::from(SCHEMA_VERSION)
    );
}

/// The key bytes are nowhere in the database in the clear; the attributes are (the scan
/// would see them).
#[test]
fn records_at_rest_hold_no_key_bytes() {
    let (_c, opts) = fresh();
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let key: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    s.commit(vec![Change::Put(obj("secret-uid", 1, &key))])
        .unwrap();
    let raw = Raw::connect(&opts);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let found = |needle: &str| {
        raw.scalar_i64(&format!(
            "SELECT (SELECT count(*) FROM kmipd_objects WHERE position('\\x{needle}'::bytea in record) > 0) \
             + (SELECT count(*) FROM kmipd_terms WHERE position('\\x{needle}'::bytea in term) > 0) \
             + (SELECT count(*) FROM kmipd_keks WHERE position('\\x{needle}'::bytea in coalesce(check_value, '') || coalesce(wrapped, '')) > 0) \
             + (SELECT count(*) FROM kmipd_meta WHERE position('\\x{needle}'::bytea in value) > 0)"
        ))
    };
    assert_eq!(found(&hex), 0, "key bytes in the clear");
    // Any 8-byte window of the key.
    for w in 0..(32 - 8) {
        assert_eq!(found(&hex[w * 2..w * 2 + 16]), 0);
    }
    let uid_hex: String = b"name-secret-uid"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(found(&uid_hex) > 0, "the scan sees clear attributes");
    assert_eq!(
        s.get("secret-uid").unwrap(),
        Some(obj("secret-uid", 1, &key))
    );
}

/// A row lock held by another session makes a commit fail after `statement_timeout`, and a
/// lock the statement timeout does not see through (statement timeout longer than the
/// deadline) after the deadline: errors, never a hang. Both stores serve again afterwards.
#[test]
fn blocked_statements_end_in_errors() {
    let (_c, mut opts) = fresh();
    opts.statement_timeout = Duration::from_millis(300);
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    s.commit(vec![Change::Put(versioned("A", 1, 0))]).unwrap();
    let raw = Raw::connect(&opts);
    raw.batch("BEGIN; SELECT * FROM kmipd_objects WHERE uid = 'A' FOR UPDATE");
    let err = s
        .commit(vec![Change::Put(versioned("A", 1, 1))])
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(m) if m.contains("statement timed out")),
        "{err:?}"
    );
    raw.batch("ROLLBACK");
    s.commit(vec![Change::Put(versioned("A", 1, 2))]).unwrap();
    assert_eq!(s.get("A").unwrap(), Some(versioned("A", 1, 2)));

    let mut slow = opts.clone();
    slow.statement_timeout = Duration::from_secs(120);
    slow.deadline = Duration::from_millis(800);
    let t = PgStore::open(&slow).unwrap();
    t.unlock(vec![kek(1, 1)]).unwrap();
    raw.batch(&format!("SELECT pg_advisory_lock({})", object_lock("A")));
    let err = t
        .commit(vec![Change::Put(versioned("A", 1, 3))])
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(m) if m.contains("did not finish within")),
        "{err:?}"
    );
    raw.batch(&format!("SELECT pg_advisory_unlock({})", object_lock("A")));
    t.commit(vec![Change::Put(versioned("A", 1, 4))]).unwrap();
    assert_eq!(s.get("A").unwrap(), Some(versioned("A", 1, 4)));
}

/// How a lost COMMIT is resolved: by the commit token its transaction inserted, not by its
/// transaction id alone. After a failover the promoted standby reuses the ids of
/// transactions the old primary never replicated, so an id may belong to another, committed
/// transaction: without its token, the lost commit did not commit.
#[test]
fn a_lost_commit_is_resolved_by_its_commit_token() {
    let (_c, opts) = fresh();
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let raw = Raw::connect(&opts);
    let mut n = 0;
    let mut txn = |token: bool, end: &str| {
        n += 1;
        let t = format!("00000000-0000-4000-8000-{n:012}");
        raw.batch("BEGIN");
        let id = raw.scalar_i64("SELECT txid_current()");
        if token {
            raw.batch(&format!(
                "INSERT INTO kmipd_commit_tokens (token) VALUES ('{t}')"
            ));
        }
        raw.batch(end);
        (id, t)
    };
    let committed = txn(true, "COMMIT");
    let aborted = txn(true, "ROLLBACK");
    // Another transaction committed under this id; the lost commit's token is not there.
    let reused = txn(false, "COMMIT");
    // An id this server never handed out (a promoted standby that never saw it).
    let future = (
        committed.0 + 1_000_000,
        "00000000-0000-4000-8000-999999999999".to_owned(),
    );
    let inner = s.inner.clone();
    let answers = s
        .run(move |_| async move {
            let mut out = Vec::new();
            for (txid, token) in [committed, aborted, reused, future] {
                out.push(commit::resolve_for_tests(&inner, txid, &token).await);
            }
            Ok(out)
        })
        .unwrap();
    assert_eq!(answers, vec![Ok(true), Ok(false), Ok(false), Ok(false)]);
}

/// Every commit that writes leaves its token, and only such commits.
#[test]
fn a_commit_that_writes_stores_one_commit_token() {
    let (_c, opts) = fresh();
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let raw = Raw::connect(&opts);
    let tokens = || raw.scalar_i64("SELECT count(*) FROM kmipd_commit_tokens");
    let before = tokens();
    s.commit(vec![Change::Put(versioned("T", 1, 0))]).unwrap();
    assert_eq!(tokens(), before + 1);
    // A commit refused by its expectation writes nothing, its token neither.
    let refused = s.commit(vec![
        Change::Expect {
            uid: "T".into(),
            revision: None,
        },
        Change::Put(versioned("T", 1, 1)),
    ]);
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "{refused:?}"
    );
    assert_eq!(tokens(), before + 1);
}

/// The dangerous case of a failover: the session is terminated while its COMMIT waits for a
/// synchronous standby that never answers. The commit record is already flushed, so the
/// transaction did commit; the store learns it from the database (instead of reporting a
/// failure, or running the commit again, which would wait forever too).
#[test]
fn a_commit_whose_session_dies_in_commit_is_resolved() {
    // A cluster of its own: synchronous_standby_names is cluster-wide.
    let cluster = PgCluster::start();
    let mut opts = PgOptions::new(cluster.url("postgres"));
    opts.pool_size = 2;
    opts.deadline = Duration::from_secs(60);
    let s = Arc::new(PgStore::open_with_kek(&opts, kek(1, 1)).unwrap());
    cluster.psql(
        "postgres",
        "ALTER SYSTEM SET synchronous_standby_names = 'nobody'",
    );
    cluster.psql("postgres", "SELECT pg_reload_conf()");
    let committer = {
        let s = s.clone();
        std::thread::spawn(move || s.commit(vec![Change::Put(versioned("D", 1, 0))]))
    };
    let mut terminated = false;
    for _ in 0..600 {
        let n = cluster.psql(
            "postgres",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE wait_event = 'SyncRep'",
        );
        if n.trim() != "0" {
            terminated = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(terminated, "the commit never waited for the standby");
    let result = committer.join().unwrap();
    cluster.psql("postgres", "ALTER SYSTEM RESET synchronous_standby_names");
    cluster.psql("postgres", "SELECT pg_reload_conf()");
    result.unwrap();
    assert_eq!(s.get("D").unwrap(), Some(versioned("D", 1, 0)));
}

/// PostgreSQL restarted: a store whose pooled connections all died reconnects by itself; a
/// commit made while the server is down fails after the deadline with the reason, and one
/// made just before the server comes back waits for it and succeeds.
#[test]
fn the_store_reconnects_after_a_database_restart() {
    let cluster = PgCluster::start();
    let mut opts = PgOptions::new(cluster.url("postgres"));
    opts.pool_size = 3;
    opts.connect_timeout = Duration::from_secs(2);
    opts.deadline = Duration::from_secs(60);
    let s = Arc::new(PgStore::open_with_kek(&opts, kek(1, 1)).unwrap());
    for i in 0..3u64 {
        s.commit(vec![Change::Put(versioned(&format!("r{i}"), i, 0))])
            .unwrap();
    }
    cluster.stop();
    let mut short = opts.clone();
    short.deadline = Duration::from_millis(500);
    let err = PgStore::open(&short).unwrap_err().to_string();
    assert!(
        err.contains("connect") || err.contains("connection"),
        "{err}"
    );
    let waiting = {
        let s = s.clone();
        std::thread::spawn(move || s.commit(vec![Change::Put(versioned("during", 9, 0))]))
    };
    cluster.start_again();
    waiting.join().unwrap().unwrap();
    assert_eq!(s.get("during").unwrap(), Some(versioned("during", 9, 0)));
    for i in 0..3u64 {
        assert_eq!(
            s.get(&format!("r{i}")).unwrap(),
            Some(versioned(&format!("r{i}"), i, 0))
        );
    }
}

/// `commit_then` does not block and reports the outcome once, from the store's runtime.
#[test]
fn commit_then_reports_the_outcome() {
    let (_c, opts) = fresh();
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    s.commit_then(
        vec![Change::Put(versioned("CT", 1, 0))],
        Box::new(move |r| tx.send(r).unwrap()),
    );
    rx.recv().unwrap().unwrap();
    assert_eq!(s.get("CT").unwrap(), Some(versioned("CT", 1, 0)));
    s.commit_then(
        vec![Change::Expect {
            uid: "CT".into(),
            revision: None,
        }],
        Box::new(move |r| tx2.send(r).unwrap()),
    );
    assert!(matches!(
        rx.recv().unwrap(),
        Err(StoreError::Conflict { uid }) if uid == "CT"
    ));
}

#[test]
fn damaged_records_are_reported_like_sled() {
    let (_c, opts) = fresh();
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    s.commit(vec![
        Change::Put(obj("good", 1, b"k1")),
        Change::Put(obj("bad", 2, b"k2")),
    ])
    .unwrap();
    let raw = Raw::connect(&opts);
    raw.batch(
        "UPDATE kmipd_objects SET record = set_byte(record, length(record) - 10, \
         get_byte(record, length(record) - 10) # 1) WHERE uid = 'bad'",
    );
    assert!(matches!(s.get("bad"), Err(StoreError::Corrupt { uid, .. }) if uid == "bad"));
    assert_eq!(s.all().unwrap(), vec![obj("good", 1, b"k1")]);
    assert_eq!(s.corrupt_records(), vec!["bad".to_owned()]);
}

#[test]
fn keyring_lives_in_the_database() {
    let (_c, opts) = fresh();
    let s = PgStore::open(&opts).unwrap();
    assert!(s.wrapped_keks().unwrap().is_empty());
    assert!(matches!(s.all(), Err(StoreError::Locked)));
    assert!(s.create_wrapped_kek(KekId(1), b"blob-1").unwrap());
    assert!(!s.create_wrapped_kek(KekId(1), b"other").unwrap());
    s.unlock(vec![kek(1, 1)]).unwrap();
    s.set_master_fingerprint(b"fp").unwrap();
    s.commit(vec![Change::Put(obj("A", 1, b"material"))])
        .unwrap();

    // Another node: the same blob, the same fingerprint; the wrong key refused.
    let t = PgStore::open(&opts).unwrap();
    assert_eq!(
        t.wrapped_keks().unwrap(),
        vec![(KekId(1), b"blob-1".to_vec())]
    );
    assert_eq!(t.master_fingerprint().unwrap(), Some(b"fp".to_vec()));
    assert_eq!(t.current_kek().unwrap(), Some(KekId(1)));
    assert!(matches!(t.unlock(vec![kek(1, 9)]), Err(StoreError::Kek(_))));
    assert!(matches!(t.unlock(vec![kek(2, 2)]), Err(StoreError::Kek(_))));
    t.unlock(vec![kek(1, 1)]).unwrap();
    assert_eq!(t.get("A").unwrap(), Some(obj("A", 1, b"material")));

    // Rotation on node s; node t, which does not hold KEK 2, may no longer write.
    s.store_wrapped_kek(KekId(2), b"blob-2").unwrap();
    let report = s.rotate_kek(kek(2, 2)).unwrap();
    assert_eq!(report.rewrapped, 1);
    assert_eq!(report.retired, vec![KekId(1)]);
    assert_eq!(s.required_keks().unwrap(), vec![KekId(2)]);
    assert!(matches!(
        t.commit(vec![Change::Put(obj("B", 2, b"m"))]),
        Err(StoreError::Kek(_))
    ));
    assert!(t.get("B").unwrap().is_none());
    s.remove_wrapped_kek(KekId(1)).unwrap();
    assert!(s.remove_wrapped_kek(KekId(2)).is_err());
    let u = PgStore::open_with_kek(&opts, kek(2, 2)).unwrap();
    assert_eq!(u.get("A").unwrap(), Some(obj("A", 1, b"material")));
    assert_eq!(
        u.wrapped_keks().unwrap(),
        vec![(KekId(2), b"blob-2".to_vec())]
    );
}

/// A rotation over many records in small steps re-wraps every readable one and reports the
/// damaged one, which does not stop it.
#[test]
fn rotation_in_steps_skips_damaged_records() {
    let (_c, opts) = fresh();
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let objects: Vec<Change> = (0..250u64)
        .map(|i| Change::Put(obj(&format!("r{i:03}"), i, &i.to_be_bytes())))
        .collect();
    s.commit(objects).unwrap();
    let raw = Raw::connect(&opts);
    raw.batch(
        "UPDATE kmipd_objects SET record = set_byte(record, length(record) - 10, \
         get_byte(record, length(record) - 10) # 1) WHERE uid = 'r007'",
    );
    s.begin_kek_rotation(kek(2, 2)).unwrap();
    let mut total = 0;
    let skipped = loop {
        let (done, skipped) = s.rewrap_step(40).unwrap();
        assert!(done <= 40);
        total += done;
        if done == 0 {
            break skipped;
        }
    };
    assert_eq!(total, 249);
    assert_eq!(skipped, vec!["r007".to_owned()]);
    assert_eq!(s.finish_kek_rotation().unwrap(), vec![KekId(1)]);
    let t = PgStore::open_with_kek(&opts, kek(2, 2)).unwrap();
    assert_eq!(t.all().unwrap().len(), 249);
    assert_eq!(
        t.get("r100").unwrap(),
        Some(obj("r100", 100, &100u64.to_be_bytes()))
    );
}

#[test]
fn copy_from_sled_keeps_every_object_and_blob() {
    let (_c, opts) = fresh();
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open_with_kek(dir.path(), kek(1, 1)).unwrap();
    sled.store_wrapped_kek(KekId(1), b"wrapped-kek-1").unwrap();
    sled.set_setting("constraints", Some(b"c")).unwrap();
    let mut objects = Vec::new();
    for i in 0..600u64 {
        let seq = sled.next_sequence().unwrap();
        objects.push(obj(&format!("uid-{i:04}"), seq, &i.to_be_bytes()));
    }
    sled.commit(objects.iter().cloned().map(Change::Put).collect())
        .unwrap();
    sled.commit(vec![Change::Delete("uid-0007".into())])
        .unwrap();
    let pg = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let report = copy_from_sled(&sled, &pg).unwrap();
    assert_eq!(report.objects, 599);
    assert_eq!(report.wrapped_keks, 1);
    assert_eq!(pg.all().unwrap(), sled.all().unwrap());
    let q = Query::new(vec![Filter::Name("name-uid-0042".into())]);
    assert_eq!(pg.find(&q).unwrap(), sled.find(&q).unwrap());
    assert_eq!(pg.find(&q).unwrap().len(), 1);
    assert_eq!(
        pg.wrapped_keks().unwrap(),
        vec![(KekId(1), b"wrapped-kek-1".to_vec())]
    );
    assert!(pg.next_sequence().unwrap() > 600);
    assert_eq!(pg.setting("constraints").unwrap(), Some(b"c".to_vec()));
    // Not into a store that holds objects.
    assert!(copy_from_sled(&sled, &pg).is_err());
}

/// A CA and a server certificate for 127.0.0.1 signed by it (PEM): (CA, server cert, key).
fn tls_material() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), server.pem(), key.serialize_pem())
}

/// With a CA file the store speaks TLS only, verifying the server against that CA; a
/// server certificate from another CA is refused, and so is a URL that wants TLS when no CA
/// is configured.
#[test]
fn tls_with_a_ca_file() {
    let cluster = PgCluster::start();
    let (ca, cert, key) = tls_material();
    cluster.enable_tls(&cert, &key);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let mut opts = PgOptions::new(cluster.url("postgres"));
    opts.ca_file = Some(ca_file);
    opts.pool_size = 2;
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    s.commit(vec![Change::Put(versioned("T", 1, 0))]).unwrap();
    assert_eq!(s.get("T").unwrap(), Some(versioned("T", 1, 0)));
    let plain_left = cluster.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = 'kmipd' AND NOT s.ssl",
    );
    let tls = cluster.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = 'kmipd' AND s.ssl",
    );
    assert_eq!(plain_left.trim(), "0");
    assert_ne!(tls.trim(), "0");

    let (other_ca, _, _) = tls_material();
    let other = dir.path().join("other.pem");
    std::fs::write(&other, &other_ca).unwrap();
    let mut wrong = opts.clone();
    wrong.ca_file = Some(other);
    wrong.deadline = Duration::from_secs(2);
    let err = PgStore::open(&wrong).unwrap_err().to_string();
    assert!(
        err.contains("certificate") || err.contains("Certificate"),
        "{err}"
    );

    let mut no_ca = PgOptions::new(format!("{}?sslmode=require", cluster.url("postgres")));
    no_ca.deadline = Duration::from_secs(2);
    let err = PgStore::open(&no_ca).unwrap_err().to_string();
    assert!(err.contains("no CA file"), "{err}");
}

/// A KEK rotation through one node: another node that has a KEK source learns the new KEK
/// from the database, once, when it first reads a record wrapped under it or when a commit
/// finds it current (the write is then wrapped under it); a node without a source sees such a
/// record as damaged. Two rotations cannot run at once.
#[test]
fn a_kek_rotated_through_one_node_is_learned_by_the_others() {
    let (_c, opts) = fresh();
    let a = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    // The test's "master key": a KEK's blob is its bytes reversed.
    let source = |count: Arc<AtomicU32>| -> KekSource {
        Arc::new(move |id, blob: &[u8]| {
            count.fetch_add(1, Ordering::Relaxed);
            let bytes: Vec<u8> = blob.iter().rev().copied().collect();
            Kek::from_slice(id, &bytes).ok_or_else(|| "not 32 bytes".to_owned())
        })
    };
    let (b_unwraps, d_unwraps) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let b = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    b.set_kek_source(source(b_unwraps.clone()));
    let d = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    d.set_kek_source(source(d_unwraps.clone()));
    let plain = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let wrong = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    wrong.set_kek_source(Arc::new(|id, _blob: &[u8]| {
        Kek::from_slice(id, &[9; 32]).ok_or_else(|| "not 32 bytes".to_owned())
    }));
    let s1 = a.next_sequence().unwrap();
    a.commit(vec![Change::Put(obj("old", s1, b"old-key"))])
        .unwrap();
    assert_eq!(b.get("old").unwrap(), Some(obj("old", s1, b"old-key")));

    // The rotation, its blob stored first (as the server does), under the rotation lock.
    let lock = a.lock_rotations().unwrap();
    assert!(matches!(b.lock_rotations(), Err(StoreError::Kek(_))));
    let new = kek(2, 2);
    let blob: Vec<u8> = new.expose().iter().rev().copied().collect();
    a.store_wrapped_kek(KekId(2), &blob).unwrap();
    let done = a.rotate_kek(new).unwrap();
    assert_eq!((done.rewrapped, done.retired.clone()), (1, vec![KekId(1)]));
    drop(lock);
    // Dropping the guard closes its connection; PostgreSQL releases the session's lock when
    // its backend notices, a moment later: B gets the lock within a bounded wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match b.lock_rotations() {
            Ok(l) => break drop(l),
            Err(StoreError::Kek(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the rotation lock was not released: {e}"),
        }
    }

    // B reads the re-wrapped record: it learns KEK 2, once.
    for _ in 0..3 {
        assert_eq!(b.get("old").unwrap(), Some(obj("old", s1, b"old-key")));
    }
    assert_eq!(b_unwraps.load(Ordering::Relaxed), 1);
    // D writes first: its commit finds KEK 2 current, learns it and wraps under it (A, which
    // holds only KEK 2 since the rotation retired KEK 1, reads it).
    let s2 = d.next_sequence().unwrap();
    d.commit(vec![Change::Put(obj("by-d", s2, b"d-key"))])
        .unwrap();
    assert_eq!(d_unwraps.load(Ordering::Relaxed), 1);
    assert_eq!(a.get("by-d").unwrap(), Some(obj("by-d", s2, b"d-key")));
    assert_eq!(b.get("by-d").unwrap(), Some(obj("by-d", s2, b"d-key")));
    assert_eq!(
        d.find(&Query::default()).unwrap(),
        vec![obj("old", s1, b"old-key"), obj("by-d", s2, b"d-key")]
    );
    // Without a source: the record is damaged for that node, and its writes are refused.
    assert!(matches!(
        plain.get("old"),
        Err(StoreError::Corrupt { uid, .. }) if uid == "old"
    ));
    let s3 = plain.next_sequence().unwrap();
    assert!(matches!(
        plain.commit(vec![Change::Put(obj("by-plain", s3, b"p-key"))]),
        Err(StoreError::Kek(_))
    ));
    // A blob that unwraps to another key than the registered KEK 2 is not learned.
    assert!(matches!(
        wrong.get("old"),
        Err(StoreError::Corrupt { reason, .. }) if reason.contains("not the one this store registered")
    ));
    assert!(wrong.inner.kek(KekId(2)).is_err());
}

/// New objects get their sequence numbers in the commit that stores them: provisional numbers
/// before (sorting after every stored object), then fresh numbers from `kmipd_sequence` in the
/// order of the provisional ones, the same in the row and in the record, across nodes.
#[test]
fn provisional_sequence_numbers_are_numbered_at_commit() {
    // `obj` with its dates fixed, so that only the sequence number differs.
    let obj = |uid: &str, seq: u64, material: &[u8]| {
        let mut o = obj(uid, 0, material);
        o.sequence = seq;
        o
    };
    let (_c, opts) = fresh();
    let a = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let b = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let first = a.next_sequence().unwrap();
    let (p1, p2) = (
        a.creation_sequence().unwrap(),
        a.creation_sequence().unwrap(),
    );
    assert!(p1 >= crate::PROVISIONAL_SEQUENCE && p2 > p1, "{p1} {p2}");
    // One commit, the uids in the opposite order of the provisional numbers.
    a.commit(vec![
        Change::Put(obj("k-1", p2, b"second")),
        Change::Put(obj("k-2", p1, b"first")),
    ])
    .unwrap();
    let pb = b.creation_sequence().unwrap();
    b.commit(vec![Change::Put(obj("k-3", pb, b"third"))])
        .unwrap();
    let all = b.all().unwrap();
    let uids: Vec<&str> = all.iter().map(|o| o.uid.as_str()).collect();
    assert_eq!(uids, ["k-2", "k-1", "k-3"]);
    let seqs: Vec<u64> = all.iter().map(|o| o.sequence).collect();
    assert!(
        seqs[0] > first && seqs[0] < seqs[1] && seqs[1] < seqs[2],
        "{seqs:?}"
    );
    assert!(seqs[2] < crate::PROVISIONAL_SEQUENCE);
    assert!(a.next_sequence().unwrap() > seqs[2]);
    for (o, (material, seq)) in all.iter().zip([
        (&b"first"[..], seqs[0]),
        (b"second", seqs[1]),
        (b"third", seqs[2]),
    ]) {
        assert_eq!(o, &obj(&o.uid, seq, material));
        assert_eq!(a.get(&o.uid).unwrap().as_ref(), Some(o));
    }
    // A rewrite keeps the number (the record read back carries it).
    let mut again = all[0].clone();
    again.attributes.set(tag::STATE, Value::Enumeration(2));
    a.commit(vec![Change::Put(again.clone())]).unwrap();
    assert_eq!(b.get("k-2").unwrap(), Some(again));
}

/// The object count for metrics is counted again only when the last count is older than
/// asked.
#[test]
fn the_object_count_is_kept_for_its_age() {
    let (_c, opts) = fresh();
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let long = Duration::from_secs(3600);
    assert_eq!(s.object_count(long).unwrap(), 0);
    s.commit(vec![Change::Put(obj("a", 1, b"a-key"))]).unwrap();
    assert_eq!(s.object_count(long).unwrap(), 0, "the last count, kept");
    assert_eq!(s.object_count(Duration::ZERO).unwrap(), 1, "counted again");
    assert_eq!(s.object_count(long).unwrap(), 1);
    assert_eq!(s.stored_objects().unwrap(), 1);
}

/// A request's deadline (`crate::deadline::within`) bounds every store operation the request
/// starts, reads and commits alike, ahead of the operation's own deadline: once it has passed
/// the operation fails naming it and stores nothing; with time left, or outside any request,
/// the same operations succeed.
#[test]
fn a_request_deadline_bounds_every_operation_of_the_request() {
    let (_c, opts) = fresh();
    let s = PgStore::open_with_kek(&opts, kek(1, 1)).unwrap();
    let seq = s.next_sequence().unwrap();
    s.commit(vec![Change::Put(obj("R", seq, b"bytes"))])
        .unwrap();
    let passed = std::time::Instant::now();
    let read = crate::deadline::within(passed, || s.get("R"));
    let e = read.unwrap_err().to_string();
    assert!(e.contains("the request's deadline"), "{e}");
    let write = crate::deadline::within(passed, || {
        s.commit(vec![Change::Put(obj("W", seq + 1, b"never"))])
    });
    let e = write.unwrap_err().to_string();
    assert!(e.contains("the request's deadline"), "{e}");
    let (tx, rx) = std::sync::mpsc::channel();
    crate::deadline::within(passed, || {
        s.commit_then(
            vec![Change::Put(obj("W", seq + 1, b"never"))],
            Box::new(move |r| tx.send(r).unwrap()),
        );
    });
    let e = rx.recv().unwrap().unwrap_err().to_string();
    assert!(e.contains("the request's deadline"), "{e}");
    assert!(s.get("W").unwrap().is_none(), "nothing of a refused commit");
    // With time left the same request works, and outside any request too.
    let later = std::time::Instant::now() + Duration::from_secs(60);
    let got = crate::deadline::within(later, || s.get("R")).unwrap();
    assert_eq!(got, Some(obj("R", seq, b"bytes")));
    crate::deadline::within(later, || {
        s.commit(vec![Change::Put(obj("W", seq + 1, b"stored"))])
    })
    .unwrap();
    assert_eq!(s.get("W").unwrap(), Some(obj("W", seq + 1, b"stored")));
}
