//! [`AsyncAccess`] for [`PgStore`](super::PgStore): reads fetched ahead and commits, run on the
//! caller's runtime (the server's async threads) rather than on the store's own, so that a
//! short request on PostgreSQL wakes no other thread than the connection's.
//!
//! The pool is the store's: a connection made here has its connection task on the caller's
//! runtime, one made by the blocking path on the store's runtime; either serves both (the
//! client talks to its connection task through a channel). Every bound of the blocking path
//! holds: `statement_timeout` on every connection, the store's deadline and the request's
//! (`until`, as [`crate::deadline::within`] gives the blocking path), the same retries on a
//! fresh connection, and the same resolution of a COMMIT whose outcome is unknown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    Inner, backend, classify, commit, retrying, revision, select_rows, select_sql,
    with_request_deadline,
};
use crate::prefetch::{AsyncAccess, Fetched, SettingValues, StoreFuture, Want};
use crate::{Change, StoreError};

/// The [`AsyncAccess`] of one store.
pub(crate) struct PgAsync(pub(crate) Arc<Inner>);

/// One object by identifier (the statement of `get_revised`).
const ONE_SQL: &str = "SELECT uid, record, revision FROM kmipd_objects WHERE uid = $1";
/// Several objects by identifier.
const MANY_SQL: &str = "SELECT uid, record, revision FROM kmipd_objects WHERE uid = ANY($1)";
/// One setting by key (a scalar parameter: PostgreSQL plans `= ANY($1)` afresh on every
/// call, `= $1` once per connection).
const ONE_META_SQL: &str = "SELECT key, value FROM kmipd_meta WHERE key = $1";
/// Settings by key.
const META_SQL: &str = "SELECT key, value FROM kmipd_meta WHERE key = ANY($1)";

/// Rows of one fetch: objects `(uid, record, revision)`, settings `(key, value)`, and each
/// search's `(uid, record)`.
type Rows = (
    Vec<(String, Vec<u8>, i64)>,
    Vec<(String, Vec<u8>)>,
    Vec<Vec<(String, Vec<u8>)>>,
);

/// `fut` bounded by the request's deadline (for [`retrying`]) and, as a backstop, by the
/// store's deadline plus a margin (as `PgStore::run`).
async fn bounded<T>(
    inner: &Inner,
    until: Instant,
    fut: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let limit = inner.deadline + Duration::from_secs(10);
    match tokio::time::timeout(limit, with_request_deadline(Some(until), fut)).await {
        Ok(r) => r,
        Err(_) => Err(backend(format!(
            "database operation did not finish within {limit:?}"
        ))),
    }
}

impl AsyncAccess for PgAsync {
    fn fetch(&self, want: Want, until: Instant) -> StoreFuture<Fetched> {
        let inner = self.0.clone();
        Box::pin(async move { bounded(&inner, until, fetch(&inner, want)).await })
    }

    /// `PgStore::commit_then`'s commit, on the caller's runtime, with the settings in
    /// `checked` read in its transaction.
    fn commit(
        &self,
        changes: Vec<Change>,
        checked: SettingValues,
        until: Instant,
    ) -> StoreFuture<()> {
        let inner = self.0.clone();
        Box::pin(async move {
            if changes.is_empty() {
                return check(&inner, checked, until).await;
            }
            let r = match bounded(
                &inner,
                until,
                commit::commit_checked(&inner, changes, checked),
            )
            .await
            {
                Err(StoreError::Backend(m))
                    if m.starts_with("database operation did not finish") =>
                {
                    Err(backend(format!("{m}; the commit's outcome is unknown")))
                }
                r => r,
            };
            inner.counts.count(&r);
            r
        })
    }

    fn check_settings(&self, checked: SettingValues, until: Instant) -> StoreFuture<bool> {
        let inner = self.0.clone();
        Box::pin(async move {
            match check(&inner, checked, until).await {
                Ok(()) => Ok(true),
                Err(StoreError::Conflict { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
    }
}

/// Reads the settings in `checked` now (remembering what it read): `Conflict` when one no
/// longer has the value given.
async fn check(
    inner: &Arc<Inner>,
    checked: SettingValues,
    until: Instant,
) -> Result<(), StoreError> {
    if checked.is_empty() {
        return Ok(());
    }
    let keys: Arc<Vec<String>> = Arc::new(
        checked
            .iter()
            .map(|(name, _)| crate::setting_key(name))
            .collect(),
    );
    let read = bounded(inner, until, async {
        retrying(inner, |conn| {
            let keys = keys.clone();
            async move {
                let c = conn.client()?;
                let rows = read_settings(c, &keys).await.map_err(|e| classify(&e))?;
                conn.release();
                Ok(rows)
            }
        })
        .await
    })
    .await?;
    compare_settings(inner, &checked, &read)
}

/// The rows of `kmipd_meta` under `keys` (`(key, value)`).
pub(crate) async fn read_settings(
    c: &deadpool_postgres::ClientWrapper,
    keys: &[String],
) -> Result<Vec<(String, Vec<u8>)>, tokio_postgres::Error> {
    by_keys(c, keys, ONE_META_SQL, META_SQL)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// The rows of the statement `one` (`key = $1`) for a single key, of `many` (`key = ANY($1)`)
/// for several; no query for none.
async fn by_keys(
    c: &deadpool_postgres::ClientWrapper,
    keys: &[String],
    one: &str,
    many: &str,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    match keys {
        [] => Ok(Vec::new()),
        [key] => {
            let stmt = c.prepare_cached(one).await?;
            c.query(&stmt, &[key]).await
        }
        keys => {
            let stmt = c.prepare_cached(many).await?;
            c.query(&stmt, &[&keys]).await
        }
    }
}

/// Whether each setting in `checked` has the value given in `read` (the rows of
/// [`read_settings`] for their keys); remembers what was read. `Conflict` naming the first that
/// differs.
pub(crate) fn compare_settings(
    inner: &Inner,
    checked: &SettingValues,
    read: &[(String, Vec<u8>)],
) -> Result<(), StoreError> {
    let mut changed = None;
    for (name, served) in checked {
        let key = crate::setting_key(name);
        let now = read.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
        if now != *served && changed.is_none() {
            changed = Some(name.clone());
        }
        inner.remember_hint(name, now);
    }
    match changed {
        None => Ok(()),
        Some(name) => Err(StoreError::Conflict {
            uid: format!("(the setting {name})"),
        }),
    }
}

/// Reads everything `want` names over one connection, the statements pipelined (sent
/// together, one round trip once they are prepared on the connection), then decodes.
async fn fetch(inner: &Arc<Inner>, want: Want) -> Result<Fetched, StoreError> {
    if want.is_empty() {
        return Ok(Fetched::default());
    }
    if !want.queries.is_empty() {
        // As `find`: a locked store refuses searches before reading.
        inner.current()?;
    }
    let searches = want
        .queries
        .iter()
        .map(|q| select_sql(q, None))
        .collect::<Result<Vec<_>, _>>()?;
    // Settings this node read or wrote before are served from its memory (and checked before
    // the answer stands: `prefetch.rs`); the others are read now.
    let hinted: Vec<(String, Option<Vec<u8>>)> = want
        .settings
        .iter()
        .filter_map(|name| Some((name.clone(), inner.hint(name)?)))
        .collect();
    let to_read: Vec<String> = want
        .settings
        .iter()
        .filter(|name| !hinted.iter().any(|(h, _)| h == *name))
        .cloned()
        .collect();
    let keys: Vec<String> = to_read.iter().map(|s| crate::setting_key(s)).collect();
    let nothing_to_read = want.uids.is_empty() && want.queries.is_empty() && keys.is_empty();
    let (want, searches, keys) = (Arc::new(want), Arc::new(searches), Arc::new(keys));
    let (objects, settings, found): Rows = if nothing_to_read {
        Rows::default()
    } else {
        retrying(inner, |conn| {
            let (want, searches, keys) = (want.clone(), searches.clone(), keys.clone());
            async move {
                let c = conn.client()?;
                let objects = async {
                    by_keys(c, &want.uids, ONE_SQL, MANY_SQL)
                        .await?
                        .iter()
                        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                };
                let settings = read_settings(c, keys.as_slice());
                let (objects, settings) =
                    tokio::try_join!(objects, settings).map_err(|e| classify(&e))?;
                let mut found = Vec::with_capacity(searches.len());
                for (sql, params) in searches.iter() {
                    found.push(select_rows(c, sql, params).await?);
                }
                conn.release();
                Ok((objects, settings, found))
            }
        })
        .await?
    };
    let mut out = Fetched::default();
    for uid in &want.uids {
        let read = match objects.iter().find(|(u, _, _)| u == uid) {
            Some((_, raw, rev)) => inner
                .decode(uid, raw)
                .await
                .map(|o| Some((o, revision(*rev)))),
            None => Ok(None),
        };
        out.objects.push((uid.clone(), read));
    }
    for (name, key) in to_read.iter().zip(keys.iter()) {
        let value = settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone());
        inner.remember_hint(name, value.clone());
        out.settings.push((name.clone(), value));
    }
    for (name, value) in hinted {
        out.hinted.push(name.clone());
        out.settings.push((name, value));
    }
    for (query, rows) in want.queries.iter().zip(found) {
        let objects = inner
            .decode_listed(rows)
            .await?
            .into_iter()
            .filter(|o| query.matches(o))
            .collect();
        out.found.push((query.clone(), objects));
    }
    Ok(out)
}
