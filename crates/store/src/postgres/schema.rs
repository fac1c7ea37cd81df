//! The PostgreSQL schema and its versioned migrations, applied when a [`PgStore`] opens.
//!
//! `kmipd_schema` lists the versions applied. Opening takes a transaction-level advisory lock
//! (so nodes starting together migrate one after the other), refuses a database whose highest
//! version is newer than [`SCHEMA_VERSION`] (written by a newer kmipd: this binary would not
//! know what its rows mean), and applies the missing migrations in order, each with its row in
//! `kmipd_schema`, all in one transaction.
//!
//! Version 1:
//! - `kmipd_objects(uid, sequence, revision, kek_id, record)`: one row per object. `record` is
//!   the record of `record.rs` (the same bytes as sled's, key material wrapped by the KEK);
//!   `sequence` is the creation order as an order-preserving `bigint` (the u64 with its top bit
//!   flipped); `revision` comes from the sequence `kmipd_revision` and changes with every write
//!   of the row; `kek_id` names the KEK that wrapped the record's material (NULL: none), so a
//!   KEK rotation finds what it must re-wrap by an index. `uid` uses the "C" collation: byte
//!   order, as sled and the in-memory store sort.
//! - `kmipd_terms(term, date, uid)`: the index terms of `query.rs` (`index_terms`), one row per
//!   term of each object, rewritten with the object. [`ObjectStore::find`] narrows by them.
//! - `kmipd_keks(id, check_value, wrapped, retired)`: per KEK, the check value proving a key
//!   is the registered one, the HSM layer's wrapped blob, and whether it was retired.
//! - `kmipd_meta(key, value)`: `kek/current` (the current KEK id, 4 bytes big-endian) and
//!   `master/fingerprint` (what the HSM layer records of its master key), and the server settings
//!   under `setting/NAME` (`ObjectStore::setting`: the Set Constraints constraints).
//! - sequences `kmipd_sequence` ([`ObjectStore::next_sequence`]) and `kmipd_revision`.
//!
//! Version 2:
//! - `kmipd_commit_tokens(token, at)`: one row per commit that wrote, inserted by the commit
//!   itself (a `gen_random_uuid()`), so that a commit whose COMMIT was lost can be told
//!   committed or not by looking its token up (`commit.rs`); rows older than a few minutes
//!   are deleted now and then.
//!
//! Version 3:
//! - the rotation due date term of `query.rs` (`rotation_term`, what
//!   [`Filter::RotationDue`](crate::Filter::RotationDue) reads) in `kmipd_terms`: new commits
//!   write it with the other terms; the migration adds it for the objects already stored
//!   ([`ROTATION_TERMS`], reading each record once, in the migration's transaction).
//!
//! Version 4:
//! - the function `kmipd_begin`, a commit's first statement (`commit.rs`): it takes the
//!   commit's advisory locks in the order given (the KEK lock shared, the search lock shared or
//!   exclusive or not at all, then the object and Name locks), and only then, each in a
//!   statement of its own and so on a snapshot taken after the locks (a VOLATILE PL/pgSQL
//!   function takes a new snapshot per statement under READ COMMITTED), reads the current KEK
//!   id and takes the sequence numbers of the new objects; for a commit that writes it also
//!   gives the transaction id and a new commit token. One prepared statement instead of a
//!   simple query of several statements that PostgreSQL parsed and planned on every commit.
//!   As first written it also set `plan_cache_mode = force_generic_plan` for the rest of the
//!   transaction (PostgreSQL keeps planning the write statement afresh, its array parameters
//!   making the generic plan look costlier): that saved some CPU per create, but a generic
//!   plan is made once per connection, while the table is small, and kept: the write
//!   statement's expectation check (`bad`, a join of the expected uids with `kmipd_objects`)
//!   was planned as a sequential scan of `kmipd_objects` (auto_explain), which costs about
//!   20 ms of PostgreSQL CPU per commit with an expectation (a Destroy) once the table holds
//!   some 40,000 objects: the cycle benchmark fell from about 300 to 67-75 per second.
//!   Version 5 undoes it.
//!
//! Version 5:
//! - `kmipd_begin` again, without the `plan_cache_mode` setting: PostgreSQL chooses between
//!   the custom and the generic plan of each statement itself.
//!
//! Version 6 (fewer index entries per write):
//! - `kmipd_terms_uid` dropped: a commit deletes an object's old terms through
//!   `kmipd_terms_term` (term, date, uid), by the terms of the record it replaces, which
//!   `kmipd_begin` now returns (the record's terms are a function of it, `index_terms`), and
//!   writes only the terms that changed. Every term row thus costs one B-tree entry, not two.
//! - `kmipd_objects_kek` dropped: a partial index on `kek_id IS NOT NULL` holds nearly every
//!   row, and the KEK rotation's `kek_id <> current` cannot be answered by it (it pages
//!   through the primary key).
//! - `kmipd_begin` with two more arguments, the uids the commit expects or writes and those it
//!   writes: after the locks it also returns the current revision of each that exists and
//!   the record of each written one (`found_uids`, `found_revisions`, `found_records`), so
//!   the expectations are checked there (under the locks) and the write statement carries no
//!   check. The seven-argument function of version 5 stays for nodes of the previous version
//!   during a rolling upgrade (they still write correctly: they delete terms by uid, a scan
//!   of `kmipd_terms` now).
//!
//! Version 7 (no planning per commit):
//! - `kmipd_begin` again, same arguments and answers, with a branch for the usual commit of
//!   one object: one sequence number is `nextval` in a plain assignment, and the one uid's
//!   current row is read by `uid = u`, a scalar. PL/pgSQL caches the plan of each statement,
//!   but PostgreSQL kept planning the array forms (`uid = ANY(uids)`, `generate_series(1,
//!   fresh)`) afresh on every call (a generic plan with an array of unknown length costs more
//!   than the custom one): 61 µs of planning per create of the 500 µs PostgreSQL spent
//!   (pg_stat_statements with `track = all`). The scalar forms get the generic plan after five
//!   calls, which is the custom one (an index scan of the primary key). Commits of several
//!   objects keep the array forms; a commit that creates nothing takes no sequence query.
//!
//! [`PgStore`]: super::PgStore
//! [`ObjectStore::find`]: crate::ObjectStore::find
//! [`ObjectStore::next_sequence`]: crate::ObjectStore::next_sequence

/// The highest schema version this build knows.
pub const SCHEMA_VERSION: i32 = 7;

/// The version whose migration adds the rotation due date terms of the objects stored before
/// it (done in Rust by `migrate`, its SQL is empty).
pub(crate) const ROTATION_TERMS: i32 = 3;

/// The migrations, in order: (version, SQL).
pub(crate) const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE kmipd_objects (
    uid text COLLATE "C" PRIMARY KEY,
    sequence bigint NOT NULL,
    revision bigint NOT NULL,
    kek_id bigint,
    record bytea NOT NULL
);
CREATE INDEX kmipd_objects_order ON kmipd_objects (sequence, uid);
CREATE INDEX kmipd_objects_kek ON kmipd_objects (kek_id) WHERE kek_id IS NOT NULL;
CREATE TABLE kmipd_terms (
    term bytea NOT NULL,
    date bigint,
    uid text COLLATE "C" NOT NULL
);
CREATE INDEX kmipd_terms_term ON kmipd_terms (term, date, uid);
CREATE INDEX kmipd_terms_uid ON kmipd_terms (uid);
CREATE TABLE kmipd_keks (
    id bigint PRIMARY KEY,
    check_value bytea,
    wrapped bytea,
    retired boolean NOT NULL DEFAULT false
);
CREATE TABLE kmipd_meta (
    key text PRIMARY KEY,
    value bytea NOT NULL
);
CREATE SEQUENCE kmipd_sequence MINVALUE 1 START 1;
CREATE SEQUENCE kmipd_revision MINVALUE 1 START 1;
"#,
    ),
    (
        2,
        r#"
CREATE TABLE kmipd_commit_tokens (
    token uuid PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX kmipd_commit_tokens_at ON kmipd_commit_tokens USING brin (at);
"#,
    ),
    (ROTATION_TERMS, "SELECT 1;"),
    (
        4,
        r#"
CREATE OR REPLACE FUNCTION kmipd_begin(
    ns integer, kek_lock integer, search_lock integer, search_mode integer, locks bigint[],
    fresh integer, writes boolean,
    OUT kek bytea, OUT txid bigint, OUT token text, OUT seqs bigint[])
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    k bigint;
BEGIN
    PERFORM set_config('plan_cache_mode', 'force_generic_plan', true);
    PERFORM pg_advisory_xact_lock_shared(ns, kek_lock);
    IF search_mode = 1 THEN
        PERFORM pg_advisory_xact_lock_shared(ns, search_lock);
    ELSIF search_mode = 2 THEN
        PERFORM pg_advisory_xact_lock(ns, search_lock);
    END IF;
    FOREACH k IN ARRAY locks LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
    SELECT m.value INTO kek FROM kmipd_meta m WHERE m.key = 'kek/current';
    seqs := ARRAY(SELECT nextval('kmipd_sequence') FROM generate_series(1, fresh));
    IF writes THEN
        txid := txid_current();
        token := gen_random_uuid()::text;
    END IF;
END
$fn$;
"#,
    ),
    (
        5,
        r#"
CREATE OR REPLACE FUNCTION kmipd_begin(
    ns integer, kek_lock integer, search_lock integer, search_mode integer, locks bigint[],
    fresh integer, writes boolean,
    OUT kek bytea, OUT txid bigint, OUT token text, OUT seqs bigint[])
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    k bigint;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(ns, kek_lock);
    IF search_mode = 1 THEN
        PERFORM pg_advisory_xact_lock_shared(ns, search_lock);
    ELSIF search_mode = 2 THEN
        PERFORM pg_advisory_xact_lock(ns, search_lock);
    END IF;
    FOREACH k IN ARRAY locks LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
    SELECT m.value INTO kek FROM kmipd_meta m WHERE m.key = 'kek/current';
    seqs := ARRAY(SELECT nextval('kmipd_sequence') FROM generate_series(1, fresh));
    IF writes THEN
        txid := txid_current();
        token := gen_random_uuid()::text;
    END IF;
END
$fn$;
"#,
    ),
    (
        6,
        r#"
DROP INDEX IF EXISTS kmipd_terms_uid;
DROP INDEX IF EXISTS kmipd_objects_kek;
CREATE OR REPLACE FUNCTION kmipd_begin(
    ns integer, kek_lock integer, search_lock integer, search_mode integer, locks bigint[],
    fresh integer, writes boolean, uids text[], written text[],
    OUT kek bytea, OUT txid bigint, OUT token text, OUT seqs bigint[],
    OUT found_uids text[], OUT found_revisions bigint[], OUT found_records bytea[])
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    k bigint;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(ns, kek_lock);
    IF search_mode = 1 THEN
        PERFORM pg_advisory_xact_lock_shared(ns, search_lock);
    ELSIF search_mode = 2 THEN
        PERFORM pg_advisory_xact_lock(ns, search_lock);
    END IF;
    FOREACH k IN ARRAY locks LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
    SELECT m.value INTO kek FROM kmipd_meta m WHERE m.key = 'kek/current';
    seqs := ARRAY(SELECT nextval('kmipd_sequence') FROM generate_series(1, fresh));
    IF writes THEN
        txid := txid_current();
        token := gen_random_uuid()::text;
    END IF;
    IF cardinality(uids) > 0 THEN
        SELECT array_agg(o.uid), array_agg(o.revision),
               array_agg(CASE WHEN o.uid = ANY(written) THEN o.record END)
            INTO found_uids, found_revisions, found_records
            FROM kmipd_objects o WHERE o.uid = ANY(uids);
    END IF;
END
$fn$;
"#,
    ),
    (
        7,
        r#"
CREATE OR REPLACE FUNCTION kmipd_begin(
    ns integer, kek_lock integer, search_lock integer, search_mode integer, locks bigint[],
    fresh integer, writes boolean, uids text[], written text[],
    OUT kek bytea, OUT txid bigint, OUT token text, OUT seqs bigint[],
    OUT found_uids text[], OUT found_revisions bigint[], OUT found_records bytea[])
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    k bigint;
    u text;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(ns, kek_lock);
    IF search_mode = 1 THEN
        PERFORM pg_advisory_xact_lock_shared(ns, search_lock);
    ELSIF search_mode = 2 THEN
        PERFORM pg_advisory_xact_lock(ns, search_lock);
    END IF;
    FOREACH k IN ARRAY locks LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
    SELECT m.value INTO kek FROM kmipd_meta m WHERE m.key = 'kek/current';
    IF fresh = 0 THEN
        seqs := '{}';
    ELSIF fresh = 1 THEN
        seqs := ARRAY[nextval('kmipd_sequence')];
    ELSE
        seqs := ARRAY(SELECT nextval('kmipd_sequence') FROM generate_series(1, fresh));
    END IF;
    IF writes THEN
        txid := txid_current();
        token := gen_random_uuid()::text;
    END IF;
    IF cardinality(uids) = 1 THEN
        u := uids[1];
        SELECT ARRAY[o.uid], ARRAY[o.revision],
               ARRAY[CASE WHEN o.uid = ANY(written) THEN o.record END]
            INTO found_uids, found_revisions, found_records
            FROM kmipd_objects o WHERE o.uid = u;
    ELSIF cardinality(uids) > 1 THEN
        SELECT array_agg(o.uid), array_agg(o.revision),
               array_agg(CASE WHEN o.uid = ANY(written) THEN o.record END)
            INTO found_uids, found_revisions, found_records
            FROM kmipd_objects o WHERE o.uid = ANY(uids);
    END IF;
END
$fn$;
"#,
    ),
];

/// Creates the version table if needed (idempotent, run under the migration lock).
pub(crate) const CREATE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS kmipd_schema (\
     version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())";
