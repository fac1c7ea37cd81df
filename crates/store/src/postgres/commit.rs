//! One commit = one transaction (the concurrency control is described in the module doc of
//! `postgres/mod.rs`).
//!
//! The search lock: a commit whose search conditions all have a Name filter (the engine's
//! Name uniqueness checks) takes it shared, plus one lock per Name it searched and per Name
//! it writes, so such commits wait for each other only when they share a Name; any other
//! search condition takes it exclusively. Sound because every object a Name query matches
//! has that Name: of two commits where each writes what the other searched, both lock that
//! Name. Commits without search conditions take no search lock: they check nothing a
//! search could invalidate, so they serialize after any search that missed them.
//!
//! Round trips of one attempt: (1) `BEGIN` and `kmipd_begin` (schema version 6 and later, one
//! prepared statement), sent together: the advisory locks, then the current KEK id, the
//! sequence numbers of the objects the commit creates (one per provisional number, see
//! [`ObjectStore::creation_sequence`]), the current revision of every uid the commit expects
//! or writes and the record of every uid it writes, and, for a commit that writes, the
//! transaction id and a new commit token; with them, the settings the request was served from
//! the node's memory (`checked`, `prefetch.rs`), read in the same transaction, a changed one
//! ending the attempt with `Conflict`. The expectations are checked on those revisions:
//! read after the locks, they cannot change before the transaction ends (every writer takes
//! the object's lock), so a failed one ends the attempt with `Conflict` before anything is
//! written. The records are encoded after it, with those numbers; the index terms to delete
//! and insert are the difference between the replaced records' terms and the new ones' (only
//! what changed is written). (2) Each search condition re-run (only when the commit has them).
//! (3) Every write in one statement, shaped for the commit (`write_statement`:
//! data-modifying CTEs on one snapshot, so the term deletes never see the new terms), sent
//! together with `COMMIT`; a failed statement aborts the transaction, so the `COMMIT` rolls
//! it back. Only a connection lost before both answers arrive leaves the outcome unknown,
//! and the transaction id and the commit token, both known from (1), resolve it (`resolve`).
//! A commit of expectations only writes nothing and commits after (2). Encoding (key wrap
//! under the current KEK) happens in each attempt, so an attempt that finds another node
//! switched the KEK re-encodes under the new one.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::types::ToSql;

use crate::kek::KekId;
use crate::query::{Filter, Query, filter_prefix, index_terms, is_name_term};
use crate::record;
use crate::{Change, ManagedObject, PROVISIONAL_SEQUENCE, Revision, StoreError};

use super::fetch::{compare_settings, read_settings};
use super::{
    Conn, Failure, Inner, LOCK_KEK, LOCK_NS, LOCK_SEARCH, Param, backend, classify, describe,
    object_lock, retrying, revision, select_rows, select_sql, seq_key, term_lock,
};
use crate::prefetch::SettingValues;

/// A commit's first statement (schema version 6 and later): its locks, then the current KEK
/// id, the sequence numbers of its new objects, and for a commit that writes its transaction
/// id, commit token and the current records of the uids it writes (whose terms it replaces).
const BEGIN_SQL: &str = "SELECT kek, txid, token, seqs, found_uids, found_revisions, \
     found_records FROM kmipd_begin($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// How a commit with search conditions takes the search lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SearchLock {
    /// No search condition.
    None,
    /// Every search has a Name filter: the search lock shared, plus a lock per Name searched
    /// and per Name the commit writes (in the sorted key list).
    ByName,
    /// A search without a Name filter: the search lock exclusively.
    All,
}

/// What a commit checks and writes, independent of the attempt.
struct Plan {
    expects: Vec<(String, Option<Revision>)>,
    /// The SQL of each search condition (its query, leaving out what was seen).
    searches: Vec<(Query, String, Vec<Param>)>,
    search_lock: SearchLock,
    /// The final state of each written uid (`None`: deleted), later changes winning.
    writes: BTreeMap<String, Option<ManagedObject>>,
    /// Object (and Name) lock keys, ascending, deduplicated.
    locks: Vec<i64>,
    /// The provisional sequence numbers of the written objects, ascending.
    provisional: Vec<u64>,
}

impl Plan {
    fn new(changes: Vec<Change>) -> Result<Plan, StoreError> {
        let mut plan = Plan {
            expects: Vec::new(),
            searches: Vec::new(),
            search_lock: SearchLock::None,
            writes: BTreeMap::new(),
            locks: Vec::new(),
            provisional: Vec::new(),
        };
        let mut name_locks = Vec::new();
        for c in changes {
            match c {
                Change::Expect { uid, revision } => plan.expects.push((uid, revision)),
                Change::ExpectNoOther { query, seen } => {
                    // Every object the query matches has this Name.
                    let name = query.filters.iter().find(|f| matches!(f, Filter::Name(_)));
                    match name {
                        Some(f) if plan.search_lock != SearchLock::All => {
                            plan.search_lock = SearchLock::ByName;
                            name_locks.push(term_lock(&filter_prefix(f)?));
                        }
                        _ => plan.search_lock = SearchLock::All,
                    }
                    let (sql, params) = select_sql(&query, Some(seen))?;
                    plan.searches.push((query, sql, params));
                }
                Change::Put(o) => {
                    plan.writes.insert(o.uid.clone(), Some(o));
                }
                Change::Delete(uid) => {
                    plan.writes.insert(uid, None);
                }
            }
        }
        if plan.search_lock == SearchLock::ByName {
            // The Names this commit writes: a concurrent search for one of them waits for it
            // (else two commits that each write the Name the other searched could both pass).
            for o in plan.writes.values().flatten() {
                for (term, _) in index_terms(o)? {
                    if is_name_term(&term) {
                        name_locks.push(term_lock(&term));
                    }
                }
            }
        } else {
            name_locks.clear();
        }
        plan.locks = plan
            .expects
            .iter()
            .map(|(u, _)| u.as_str())
            .chain(plan.writes.keys().map(String::as_str))
            .map(object_lock)
            .chain(name_locks)
            .collect();
        plan.locks.sort_unstable();
        plan.locks.dedup();
        plan.provisional = plan
            .writes
            .values()
            .flatten()
            .map(|o| o.sequence)
            .filter(|s| *s >= PROVISIONAL_SEQUENCE)
            .collect();
        plan.provisional.sort_unstable();
        plan.provisional.dedup();
        Ok(plan)
    }

    /// How `kmipd_begin` takes the search lock: 0 not at all, 1 shared, 2 exclusively.
    fn search_mode(&self) -> i32 {
        match self.search_lock {
            SearchLock::None => 0,
            SearchLock::ByName => 1,
            SearchLock::All => 2,
        }
    }
}

/// The encoded writes of one attempt, as column arrays.
#[derive(Default)]
pub(crate) struct Encoded {
    put_uids: Vec<String>,
    put_seqs: Vec<i64>,
    put_keks: Vec<Option<i64>>,
    put_records: Vec<Vec<u8>>,
    /// The terms to insert: those of the new records that the replaced ones lacked.
    term_uids: Vec<String>,
    terms: Vec<Vec<u8>>,
    term_dates: Vec<Option<i64>>,
    /// The terms to delete: those of the replaced records that the new ones lack, with a
    /// date and without.
    gone_dated_uids: Vec<String>,
    gone_dated_terms: Vec<Vec<u8>>,
    gone_dates: Vec<i64>,
    gone_undated_uids: Vec<String>,
    gone_undated_terms: Vec<Vec<u8>>,
    /// The commit token (from `kmipd_begin`).
    token: String,
    /// Some put replaces a stored row (an upsert then, else a plain insert).
    replaces: bool,
    /// Some put brings a sequence number not taken from `kmipd_sequence` in this commit (a
    /// copy from sled): the sequence is advanced past `max_seq`.
    advance: bool,
    /// Uids whose stored record does not parse (its terms unknown): all their terms are
    /// deleted by uid (a scan of `kmipd_terms`; damaged records only).
    purge: Vec<String>,
    deleted: Vec<String>,
    written: Vec<String>,
    max_seq: i64,
    kek: Option<KekId>,
}

/// `plan`'s writes encoded under the current KEK, provisional sequence numbers replaced by
/// `numbers` (taken from the database, one per provisional number, in the same order); the
/// index terms to delete and to insert are the difference between the terms of the records
/// in `old` (the stored records of the written uids, read under the commit's locks) and those
/// of the new ones.
fn encode(
    inner: &Inner,
    plan: &Plan,
    numbers: &[u64],
    old: &BTreeMap<String, &[u8]>,
) -> Result<Encoded, StoreError> {
    let kek = inner.current()?;
    let mut e = Encoded {
        kek: Some(kek.id()),
        ..Encoded::default()
    };
    for (uid, o) in &plan.writes {
        e.written.push(uid.clone());
        let (old_terms, old_seq) = match old.get(uid) {
            None => (Vec::new(), None),
            Some(raw) => match record::parse(uid, raw) {
                Ok(parsed) => {
                    let shell = parsed.into_shell();
                    (index_terms(&shell)?, Some(shell.sequence))
                }
                Err(_) => {
                    e.purge.push(uid.clone());
                    (Vec::new(), None)
                }
            },
        };
        let Some(o) = o else {
            e.deleted.push(uid.clone());
            for term in old_terms {
                e.gone(uid, term);
            }
            continue;
        };
        e.replaces |= old.contains_key(uid);
        e.advance |= o.sequence < PROVISIONAL_SEQUENCE && old_seq != Some(o.sequence);
        let numbered;
        let o = if o.sequence >= PROVISIONAL_SEQUENCE {
            let i = plan
                .provisional
                .binary_search(&o.sequence)
                .map_err(|_| backend("a provisional sequence number left unnumbered"))?;
            let mut copy = o.clone();
            copy.sequence = *numbers
                .get(i)
                .ok_or_else(|| backend("fewer sequence numbers than provisional ones"))?;
            numbered = copy;
            &numbered
        } else {
            o
        };
        e.put_uids.push(uid.clone());
        e.put_seqs.push(seq_key(o.sequence));
        e.put_keks
            .push(o.object.as_ref().map(|_| i64::from(kek.id().0)));
        e.put_records.push(record::encode(o, &kek)?);
        e.max_seq = e.max_seq.max(i64::try_from(o.sequence).unwrap_or(i64::MAX));
        // Both lists sorted and deduplicated (`index_terms`): merge them.
        let new_terms = index_terms(o)?;
        let (mut olds, mut news) = (
            old_terms.into_iter().peekable(),
            new_terms.into_iter().peekable(),
        );
        loop {
            let order = match (olds.peek(), news.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => a.cmp(b),
            };
            match order {
                Ordering::Equal => {
                    olds.next();
                    news.next();
                }
                Ordering::Less => {
                    if let Some(term) = olds.next() {
                        e.gone(uid, term);
                    }
                }
                Ordering::Greater => {
                    if let Some((term, date)) = news.next() {
                        e.term_uids.push(uid.clone());
                        e.terms.push(term);
                        e.term_dates.push(date);
                    }
                }
            }
        }
    }
    Ok(e)
}

impl Encoded {
    /// A term of `uid`'s replaced record that its new state lacks.
    fn gone(&mut self, uid: &str, (term, date): crate::query::Term) {
        match date {
            Some(d) => {
                self.gone_dated_uids.push(uid.to_owned());
                self.gone_dated_terms.push(term);
                self.gone_dates.push(d);
            }
            None => {
                self.gone_undated_uids.push(uid.to_owned());
                self.gone_undated_terms.push(term);
            }
        }
    }
}

/// The statement that makes every write of a commit (its expectations were checked after
/// its locks, in `kmipd_begin`), with its parameters: data-modifying CTEs on one snapshot, so
/// the term deletes see only the old terms. Only what the commit needs is in it (a create is
/// one insert into each table), and prepared once per connection for each shape. The terms
/// that changed are deleted through `kmipd_terms_term` (dated terms by their date, the others
/// by `date IS NULL`: both index conditions); the terms of a record that did not parse
/// (`purge`) by uid, a scan of `kmipd_terms`.
fn write_statement(e: &Encoded) -> (String, Vec<&(dyn ToSql + Sync)>) {
    fn arg<'a>(params: &mut Vec<&'a (dyn ToSql + Sync)>, v: &'a (dyn ToSql + Sync)) -> usize {
        params.push(v);
        params.len()
    }
    let mut ctes: Vec<String> = Vec::new();
    let mut p: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if !e.purge.is_empty() {
        let u = arg(&mut p, &e.purge);
        ctes.push(format!(
            "purge AS (DELETE FROM kmipd_terms WHERE uid = ANY(${u}::text[]))"
        ));
    }
    if !e.gone_dated_uids.is_empty() {
        let (u, t, d) = (
            arg(&mut p, &e.gone_dated_uids),
            arg(&mut p, &e.gone_dated_terms),
            arg(&mut p, &e.gone_dates),
        );
        ctes.push(format!(
            "del_dated AS (DELETE FROM kmipd_terms k \
             USING unnest(${u}::text[], ${t}::bytea[], ${d}::bigint[]) AS g(u, t, d) \
             WHERE k.term = g.t AND k.date = g.d AND k.uid = g.u)"
        ));
    }
    if !e.gone_undated_uids.is_empty() {
        let (u, t) = (
            arg(&mut p, &e.gone_undated_uids),
            arg(&mut p, &e.gone_undated_terms),
        );
        ctes.push(format!(
            "del_undated AS (DELETE FROM kmipd_terms k \
             USING unnest(${u}::text[], ${t}::bytea[]) AS g(u, t) \
             WHERE k.term = g.t AND k.date IS NULL AND k.uid = g.u)"
        ));
    }
    if !e.deleted.is_empty() {
        let u = arg(&mut p, &e.deleted);
        ctes.push(format!(
            "del_objects AS (DELETE FROM kmipd_objects WHERE uid = ANY(${u}::text[]))"
        ));
    }
    if !e.put_uids.is_empty() {
        let (u, s, k, r) = (
            arg(&mut p, &e.put_uids),
            arg(&mut p, &e.put_seqs),
            arg(&mut p, &e.put_keks),
            arg(&mut p, &e.put_records),
        );
        let upsert = if e.replaces {
            " ON CONFLICT (uid) DO UPDATE SET sequence = EXCLUDED.sequence, \
             revision = EXCLUDED.revision, kek_id = EXCLUDED.kek_id, record = EXCLUDED.record"
        } else {
            ""
        };
        ctes.push(format!(
            "put AS (INSERT INTO kmipd_objects (uid, sequence, revision, kek_id, record) \
             SELECT u, s, nextval('kmipd_revision'), k, r \
             FROM unnest(${u}::text[], ${s}::bigint[], ${k}::bigint[], ${r}::bytea[]) \
             AS t(u, s, k, r){upsert})"
        ));
    }
    if !e.term_uids.is_empty() {
        let (u, t, d) = (
            arg(&mut p, &e.term_uids),
            arg(&mut p, &e.terms),
            arg(&mut p, &e.term_dates),
        );
        ctes.push(format!(
            "ins_terms AS (INSERT INTO kmipd_terms (uid, term, date) \
             SELECT u, t, d FROM unnest(${u}::text[], ${t}::bytea[], ${d}::bigint[]) AS x(u, t, d))"
        ));
    }
    let tail = if e.advance {
        let m = arg(&mut p, &e.max_seq);
        ctes.push(format!(
            "advance AS (SELECT nextval('kmipd_sequence') FROM generate_series(1, \
             GREATEST(0, ${m}::bigint - (SELECT CASE WHEN is_called THEN last_value \
             ELSE last_value - 1 END FROM kmipd_sequence))))"
        ));
        "SELECT count(*) FROM advance"
    } else {
        "SELECT 1"
    };
    let t = arg(&mut p, &e.token);
    ctes.push(format!(
        "tok AS (INSERT INTO kmipd_commit_tokens (token) VALUES (${t}::text::uuid))"
    ));
    (format!("WITH {} {tail}", ctes.join(", ")), p)
}

/// The write statement of a commit that only deletes one dated and one undated term (its
/// parameters: the dated term's uid, term and date, the other's uid and term, the token).
#[cfg(test)]
pub(crate) fn term_deletes_for_tests(
    dated: (&str, Vec<u8>, i64),
    undated: (&str, Vec<u8>),
) -> String {
    let mut e = Encoded::default();
    e.gone(dated.0, (dated.1, Some(dated.2)));
    e.gone(undated.0, (undated.1, None));
    write_statement(&e).0
}

/// Applies `changes` in one transaction, retried as the module doc says.
pub(crate) async fn commit(inner: &Arc<Inner>, changes: Vec<Change>) -> Result<(), StoreError> {
    commit_checked(inner, changes, Vec::new()).await
}

/// [`commit`], failing with `Conflict` (nothing written) when a setting in `checked` no longer
/// has the value given: read in the first round trip, after `kmipd_begin`, in the same
/// transaction (`prefetch.rs`: settings served from the node's memory).
pub(crate) async fn commit_checked(
    inner: &Arc<Inner>,
    changes: Vec<Change>,
    checked: SettingValues,
) -> Result<(), StoreError> {
    let plan = Arc::new(Plan::new(changes)?);
    let checked = Arc::new(checked);
    let writes = !plan.writes.is_empty();
    let r = retrying(inner, |conn| {
        let (inner, plan, checked) = (inner.clone(), plan.clone(), checked.clone());
        async move { attempt(&inner, &plan, &checked, conn).await }
    })
    .await;
    if r.is_ok() && writes && inner.counts.tick_written(TOKEN_CLEANUP_EVERY) {
        let inner = inner.clone();
        tokio::spawn(async move { forget_old_tokens(&inner).await });
    }
    r
}

async fn attempt(
    inner: &Inner,
    plan: &Plan,
    checked: &SettingValues,
    conn: Conn,
) -> Result<(), Failure> {
    let c = conn.client()?;
    let writes = !plan.writes.is_empty();
    // (1) BEGIN and `kmipd_begin`, sent together (prepared once per connection).
    let begin = c
        .prepare_cached(BEGIN_SQL)
        .await
        .map_err(|e| classify(&e))?;
    let fresh = i32::try_from(plan.provisional.len())
        .map_err(|_| Failure::Fatal(backend("too many new objects in one commit")))?;
    let search_mode = plan.search_mode();
    let written: Vec<&str> = plan.writes.keys().map(String::as_str).collect();
    let mut uids: Vec<&str> = plan.expects.iter().map(|(u, _)| u.as_str()).collect();
    uids.extend_from_slice(&written);
    uids.sort_unstable();
    uids.dedup();
    let begin_params: [&(dyn ToSql + Sync); 9] = [
        &LOCK_NS,
        &LOCK_KEK,
        &LOCK_SEARCH,
        &search_mode,
        &plan.locks,
        &fresh,
        &writes,
        &uids,
        &written,
    ];
    let checked_keys: Vec<String> = checked
        .iter()
        .map(|(name, _)| crate::setting_key(name))
        .collect();
    let (begun, row, settings) = tokio::join!(
        biased;
        c.batch_execute("BEGIN"),
        c.query_one(&begin, &begin_params),
        read_settings(c, &checked_keys)
    );
    begun.map_err(|e| classify(&e))?;
    let row = row.map_err(|e| classify(&e))?;
    let settings = settings.map_err(|e| classify(&e))?;
    if let Err(e) = compare_settings(inner, checked, &settings) {
        return Err(conn.abort(e).await);
    }
    let db_kek: Option<Vec<u8>> = row.try_get(0).map_err(|e| classify(&e))?;
    let txid: Option<i64> = row.try_get(1).map_err(|e| classify(&e))?;
    let token: Option<String> = row.try_get(2).map_err(|e| classify(&e))?;
    let seqs: Vec<i64> = row.try_get(3).map_err(|e| classify(&e))?;
    let found_uids: Option<Vec<String>> = row.try_get(4).map_err(|e| classify(&e))?;
    let found_revisions: Option<Vec<i64>> = row.try_get(5).map_err(|e| classify(&e))?;
    let found_records: Option<Vec<Option<Vec<u8>>>> = row.try_get(6).map_err(|e| classify(&e))?;
    let found_uids = found_uids.unwrap_or_default();
    let found_revisions = found_revisions.unwrap_or_default();
    let found_records = found_records.unwrap_or_default();
    if found_revisions.len() != found_uids.len() || found_records.len() != found_uids.len() {
        let e = backend("kmipd_begin gave arrays of different lengths");
        return Err(conn.abort(e).await);
    }
    // (2) The expectations, on what `kmipd_begin` read after the locks: nobody can change
    // an expected object before this transaction ends (every writer takes its lock).
    let now: BTreeMap<&str, Revision> = found_uids
        .iter()
        .map(String::as_str)
        .zip(found_revisions.iter().map(|r| revision(*r)))
        .collect();
    for (uid, want) in &plan.expects {
        if now.get(uid.as_str()) != want.as_ref() {
            return Err(conn.abort(StoreError::Conflict { uid: uid.clone() }).await);
        }
    }
    let old: BTreeMap<String, &[u8]> = found_uids
        .iter()
        .zip(&found_records)
        .filter_map(|(u, r)| Some((u.clone(), r.as_deref()?)))
        .collect();
    let mut numbers: Vec<u64> = seqs
        .into_iter()
        .filter_map(|n| u64::try_from(n).ok())
        .collect();
    numbers.sort_unstable();
    if numbers.len() != plan.provisional.len() {
        let e = backend("the database gave fewer sequence numbers than asked for");
        return Err(conn.abort(e).await);
    }
    let enc = match encode(inner, plan, &numbers, &old) {
        Ok(enc) => enc,
        Err(e) => return Err(conn.abort(e).await),
    };
    if !enc.put_uids.is_empty() {
        let db_kek = db_kek
            .as_deref()
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(|b| KekId(u32::from_be_bytes(b)));
        if db_kek != enc.kek {
            return Err(kek_changed(inner, db_kek, conn).await);
        }
    }
    // (2) The search conditions, run again.
    for (query, sql, params) in &plan.searches {
        let rows = select_rows(c, sql, params).await?;
        for (uid, raw) in rows {
            // As sled: matched on the stored attributes; a record that does not parse is no
            // conflict, one whose material does not unwrap is.
            if let Ok(parsed) = record::parse(&uid, &raw)
                && query.matches(&parsed.into_shell())
            {
                return Err(conn.abort(StoreError::Conflict { uid }).await);
            }
        }
    }
    if enc.written.is_empty() {
        // Only expectations: they held; nothing to make durable.
        return conn.commit().await;
    }
    let (Some(txid), Some(token)) = (txid, token) else {
        let e = backend("kmipd_begin gave no transaction id or commit token for a write");
        return Err(conn.abort(e).await);
    };
    // (3) Every write, then COMMIT, sent together.
    let lost = Lost {
        txid,
        token: token.clone(),
    };
    let mut enc = enc;
    enc.token = token;
    let (sql, params) = write_statement(&enc);
    let stmt = c.prepare_cached(&sql).await.map_err(|e| classify(&e))?;
    let (written, committed) = tokio::join!(
        biased;
        c.execute(&stmt, &params),
        c.batch_execute("COMMIT")
    );
    match written {
        Ok(_) => {}
        // The statement failed: the transaction is aborted and the COMMIT rolled it back.
        // (The connection is not reused.)
        Err(e) if e.as_db_error().is_some() => return Err(classify(&e)),
        // No answer: the COMMIT may have run.
        Err(e) => return Err(Failure::Unknown(lost, describe(&e))),
    }
    // (4) The COMMIT's answer. Any failure here has an unknown outcome (a lost connection, or
    // a terminated session whose commit record may already be flushed): the caller asks the
    // database about this transaction instead of guessing (`resolve`).
    match committed {
        Ok(()) => {
            conn.release();
            Ok(())
        }
        Err(e) => Err(Failure::Unknown(lost, describe(&e))),
    }
}

/// A commit whose COMMIT failed: what identifies it in the database.
pub(crate) struct Lost {
    /// Its transaction id (`txid_current()`), to see whether a session still runs it.
    pub(crate) txid: i64,
    /// The token it inserted into `kmipd_commit_tokens` (a UUID, as text).
    pub(crate) token: String,
}

/// The database names another current KEK than the one this attempt encoded with (a KEK
/// switch by another node): adopt it, learning it from the database first when this node
/// does not hold it (`keyring.rs`), and encode again; fail when it cannot be learned.
async fn kek_changed(inner: &Inner, db_kek: Option<KekId>, conn: Conn) -> Failure {
    let Some(id) = db_kek else {
        let e = StoreError::Kek(
            "the database names no current KEK: the store was not initialised".into(),
        );
        return conn.abort(e).await;
    };
    // The transaction ends first: learning waits on the database and the HSM.
    let _ = conn.abort(StoreError::Locked).await;
    match inner.learn_kek(id).await {
        Ok(()) => match inner.keyring.write() {
            Ok(mut ring) => {
                ring.current = Some(id);
                Failure::Retry("the current KEK changed; encoding again".into())
            }
            Err(_) => Failure::Fatal(backend("keyring lock poisoned")),
        },
        Err(StoreError::Kek(why)) => Failure::Fatal(StoreError::Kek(format!(
            "the store's current KEK is now {id} (switched by another node), which this node \
             cannot use: {why}"
        ))),
        Err(e) => Failure::Fatal(e),
    }
}

/// Whether the commit `lost` committed, asked on fresh connections until the database
/// answers or `until` (extended by a few seconds) passes.
///
/// The commit token decides: it was inserted by the commit's own transaction, so it is
/// there exactly when that transaction committed on the server now answering. A transaction
/// id alone is not enough: after a failover the promoted standby hands out again the ids
/// that the old primary used for transactions it never replicated, so `txid_status` of a
/// lost commit's id may report another transaction's commit. `txid_status` is asked first,
/// only to wait while a session still runs the transaction ("in progress": on the same
/// server, its COMMIT may yet succeed); once it is not running, the token is final.
pub(crate) async fn resolve(inner: &Inner, lost: &Lost, until: Instant) -> Result<bool, String> {
    let until = until.max(Instant::now() + Duration::from_secs(5));
    let mut last = String::new();
    loop {
        if Instant::now() >= until {
            return Err(format!("the database did not answer in time ({last})"));
        }
        match inner.conn().await {
            Ok(conn) => {
                let Ok(c) = conn.client() else { continue };
                let running = c
                    .query_one("SELECT txid_status($1)", &[&lost.txid])
                    .await
                    .and_then(|r| r.try_get::<_, Option<String>>(0));
                match running {
                    Ok(Some(s)) if s == "in progress" => {
                        conn.release();
                        last = format!("transaction {} still in progress", lost.txid);
                    }
                    // Finished, unknown to this server, or "in the future" of this server
                    // (a promoted standby that never saw it): the token decides.
                    Ok(_) => return token_stored(conn, &lost.token).await,
                    Err(e) if e.as_db_error().is_some() => {
                        return token_stored(conn, &lost.token).await;
                    }
                    Err(e) => last = describe(&e),
                }
            }
            Err(Failure::Retry(m) | Failure::Unknown(_, m)) => last = m,
            Err(Failure::Fatal(e)) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the commit token is stored (a fresh statement: after a failed one, such as an
/// id "in the future", the connection is still usable outside a transaction).
async fn token_stored(conn: Conn, token: &str) -> Result<bool, String> {
    let c = conn.client().map_err(|_| "no connection".to_owned())?;
    let found = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM kmipd_commit_tokens WHERE token = $1::text::uuid)",
            &[&token],
        )
        .await
        .and_then(|r| r.try_get::<_, bool>(0))
        .map_err(|e| describe(&e))?;
    conn.release();
    Ok(found)
}

/// Deletes the commit tokens older than [`TOKEN_TTL`]: a lost commit is resolved within its
/// operation's deadline, long before. Run now and then (every [`TOKEN_CLEANUP_EVERY`]
/// commits of a node, off the commit's path); several nodes may run it at once.
pub(crate) async fn forget_old_tokens(inner: &Inner) {
    if let Ok(conn) = inner.conn().await
        && let Ok(c) = conn.client()
        && c.execute(TOKEN_CLEANUP_SQL, &[&TOKEN_TTL]).await.is_ok()
    {
        conn.release();
    }
}

/// How long a commit token is kept.
pub(crate) const TOKEN_TTL: &str = "5 minutes";
/// Commits of a node between two clean-ups of the commit tokens.
pub(crate) const TOKEN_CLEANUP_EVERY: u64 = 1024;
const TOKEN_CLEANUP_SQL: &str =
    "DELETE FROM kmipd_commit_tokens WHERE at < now() - $1::text::interval";

#[cfg(test)]
pub(crate) async fn resolve_for_tests(
    inner: &Inner,
    txid: i64,
    token: &str,
) -> Result<bool, String> {
    let lost = Lost {
        txid,
        token: token.to_owned(),
    };
    resolve(inner, &lost, Instant::now()).await
}
