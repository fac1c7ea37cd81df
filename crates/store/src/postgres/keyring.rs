//! The KEKs of a [`PgStore`]: the same API as [`SledStore`]'s, kept in `kmipd_keks` and
//! `kmipd_meta` (see `schema.rs`), so the server treats both backends alike.
//!
//! The database holds the wrapped blobs (the HSM layer wraps and unwraps them with the master
//! key), a check value per registered KEK (proving at unlock that a key is the registered
//! one), the retired flags and the current KEK id. A node keeps only the unwrapped KEKs.
//! Changes of the current KEK take the KEK advisory lock exclusively; every commit takes it
//! shared and compares the current id with the KEK it encoded with (`commit.rs`), so after a
//! KEK switch on one node no node writes under the old KEK.
//!
//! **A KEK rotation through one node** ([`PgStore::rotate_kek`]) makes a KEK current that the
//! other nodes were not given at unlock. Each of them learns it by id from the database
//! (`Inner::learn_kek`) the first time it needs it: when it reads a record wrapped under it
//! (a record the rotation re-wrapped, or one a node wrote since), or when a commit finds it
//! current (then the commit is encoded again under it). Learning reads the KEK's wrapped blob
//! and check value from `kmipd_keks`, has the blob unwrapped by the node's [`KekSource`] (the
//! server passes its HSM master key's unwrap: one PKCS#11 call per KEK and node), and keeps
//! the KEK only if it matches the registered check value. A node without a source treats such
//! records as damaged, as sled would, until it is restarted (unlock unwraps every required KEK).
//! Rotations (KEK and master key) take the rotation lock ([`PgStore::lock_rotations`]) so that
//! two nodes never rotate at once.
//!
//! [`SledStore`]: crate::SledStore

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_postgres::types::ToSql;

use crate::kek::{Kek, KekId};
use crate::record;
use crate::{KekRotation, StoreError};

use super::{
    Conn, Failure, Inner, LOCK_KEK, LOCK_NS, LOCK_ROTATION, Param, PgStore, backend, classify,
    object_lock, retrying,
};

/// How a node unwraps a KEK's blob from the database (the master key's unwrap, given by the
/// server): the KEK with that id, or why not.
pub type KekSource = Arc<dyn Fn(KekId, &[u8]) -> Result<Kek, String> + Send + Sync>;

/// The rotation lock of the database, held until dropped ([`PgStore::lock_rotations`]).
pub struct RotationLock {
    _conn: Conn,
}

impl std::fmt::Debug for RotationLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotationLock").finish_non_exhaustive()
    }
}

/// What a KEK's check value wraps (the same text as sled's).
const CHECK_PLAIN: &[u8] = b"kmipd store KEK check v1";
const META_CURRENT: &str = "kek/current";
const META_MASTER: &str = "master/fingerprint";

fn verify_check(kek: &Kek, check: &[u8]) -> Result<(), StoreError> {
    match kek.unwrap(check) {
        Ok(p) if p.as_slice() == CHECK_PLAIN => Ok(()),
        _ => Err(StoreError::Kek(format!(
            "the key given as KEK {} is not the one this store registered under that id",
            kek.id()
        ))),
    }
}

fn db<T>(r: Result<T, tokio_postgres::Error>) -> Result<T, Failure> {
    r.map_err(|e| classify(&e))
}

async fn begin_exclusive(conn: &Conn) -> Result<(), Failure> {
    db(conn
        .client()?
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({LOCK_NS}, {LOCK_KEK})"
        ))
        .await)
}

async fn current_in(conn: &Conn) -> Result<Option<KekId>, Failure> {
    let row = db(conn
        .client()?
        .query_opt(
            "SELECT value FROM kmipd_meta WHERE key = $1",
            &[&META_CURRENT],
        )
        .await)?;
    match row {
        None => Ok(None),
        Some(r) => {
            let v: Vec<u8> = db(r.try_get(0))?;
            let b: [u8; 4] = v
                .as_slice()
                .try_into()
                .map_err(|_| Failure::Fatal(backend("damaged current KEK id")))?;
            Ok(Some(KekId(u32::from_be_bytes(b))))
        }
    }
}

async fn checks_in(conn: &Conn) -> Result<BTreeMap<KekId, (Vec<u8>, bool)>, Failure> {
    let rows = db(conn
        .client()?
        .query(
            "SELECT id, check_value, retired FROM kmipd_keks WHERE check_value IS NOT NULL",
            &[],
        )
        .await)?;
    let mut out = BTreeMap::new();
    for r in rows {
        let id: i64 = db(r.try_get(0))?;
        let id = u32::try_from(id).map_err(|_| Failure::Fatal(backend("damaged KEK id")))?;
        out.insert(KekId(id), (db(r.try_get(1))?, db(r.try_get(2))?));
    }
    Ok(out)
}

async fn register(conn: &Conn, kek: &Kek) -> Result<(), Failure> {
    let check = kek
        .wrap(CHECK_PLAIN)
        .map_err(|e| Failure::Fatal(StoreError::Kek(format!("wrap check value: {e}"))))?;
    db(conn
        .client()?
        .execute(
            "INSERT INTO kmipd_keks (id, check_value, retired) VALUES ($1, $2, false) \
             ON CONFLICT (id) DO UPDATE SET check_value = EXCLUDED.check_value, retired = false",
            &[&i64::from(kek.id().0), &check],
        )
        .await)?;
    Ok(())
}

async fn set_current(conn: &Conn, id: KekId) -> Result<(), Failure> {
    db(conn
        .client()?
        .execute(
            "INSERT INTO kmipd_meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&META_CURRENT, &id.0.to_be_bytes().to_vec()],
        )
        .await)?;
    Ok(())
}

impl Inner {
    /// Learns KEK `id` from the database (see the module doc); nothing to do when this node
    /// holds it. `StoreError::Kek` when it cannot be learned (no source, not registered, does
    /// not unwrap, not the registered key), `StoreError::Backend` when the database does not
    /// answer.
    pub(crate) async fn learn_kek(&self, id: KekId) -> Result<(), StoreError> {
        let _one_at_a_time = self.learning.lock().await;
        if self.kek(id).is_ok() {
            return Ok(());
        }
        let source = self.kek_source.get().cloned().ok_or_else(|| {
            StoreError::Kek(format!(
                "KEK {id} was not supplied at unlock (and this node cannot unwrap KEKs from the \
                 database)"
            ))
        })?;
        let key = i64::from(id.0);
        let (wrapped, check) = retrying(self, |conn| async move {
            let row = db(conn
                .client()?
                .query_opt(
                    "SELECT wrapped, check_value FROM kmipd_keks WHERE id = $1",
                    &[&key],
                )
                .await)?;
            let out: (Option<Vec<u8>>, Option<Vec<u8>>) = match row {
                Some(r) => (db(r.try_get(0))?, db(r.try_get(1))?),
                None => (None, None),
            };
            conn.release();
            Ok(out)
        })
        .await?;
        let (Some(wrapped), Some(check)) = (wrapped, check) else {
            return Err(StoreError::Kek(format!(
                "KEK {id} is not registered in the database with a wrapped blob"
            )));
        };
        let kek = tokio::task::spawn_blocking(move || source(id, &wrapped))
            .await
            .map_err(|e| backend(format!("unwrapping KEK {id}: {e}")))?
            .map_err(|e| StoreError::Kek(format!("KEK {id} does not unwrap on this node: {e}")))?;
        if kek.id() != id {
            return Err(StoreError::Kek(format!(
                "asked for KEK {id}, the KEK source gave KEK {}",
                kek.id()
            )));
        }
        verify_check(&kek, &check)?;
        self.keyring
            .write()
            .map_err(|_| backend("keyring lock poisoned"))?
            .keks
            .insert(id, Arc::new(kek));
        Ok(())
    }
}

impl PgStore {
    /// Gives this node a way to unwrap the KEKs it was not given at unlock (a KEK rotation run
    /// through another node; see the module doc). Set once; later calls change nothing.
    pub fn set_kek_source(&self, source: KekSource) {
        let _ = self.inner.kek_source.set(source);
    }

    /// Takes the database's rotation lock: a session-level advisory lock on a connection kept
    /// for it until the returned guard is dropped (closing the connection releases it, even
    /// when this process dies). Fails at once when another node holds it.
    pub fn lock_rotations(&self) -> Result<RotationLock, StoreError> {
        let conn = self.run(|inner| async move {
            let conn = match inner.conn().await {
                Ok(c) => c,
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(m) | Failure::Unknown(_, m)) => return Err(backend(m)),
            };
            let got = conn
                .client()
                .map_err(|_| backend("no connection"))?
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2)",
                    &[&LOCK_NS, &LOCK_ROTATION],
                )
                .await
                .and_then(|r| r.try_get::<_, bool>(0))
                .map_err(|e| backend(super::describe(&e)))?;
            if !got {
                return Err(StoreError::Kek(
                    "another node is rotating the KEK or the master key: run this again once \
                     it is done"
                        .into(),
                ));
            }
            Ok(conn)
        })?;
        Ok(RotationLock { _conn: conn })
    }

    /// Supplies the KEKs. A new store registers the first one as its current KEK; otherwise
    /// every KEK the store still needs ([`required_keks`](Self::required_keks)) must be given,
    /// each matching its registered check value. Concurrent unlocks of a new store by several
    /// nodes register one KEK: the others are checked against it.
    pub fn unlock(&self, keks: Vec<Kek>) -> Result<(), StoreError> {
        let keks: Arc<Vec<Arc<Kek>>> = Arc::new(keks.into_iter().map(Arc::new).collect());
        let given = keks.clone();
        let current = self.run(move |inner| async move {
            retrying(&inner, |conn| {
                let keks = keks.clone();
                async move {
                    begin_exclusive(&conn).await?;
                    let mut current = current_in(&conn).await?;
                    let checks = checks_in(&conn).await?;
                    let fresh = current.is_none();
                    for (i, kek) in keks.iter().enumerate() {
                        match checks.get(&kek.id()) {
                            Some((check, _)) => {
                                if let Err(e) = verify_check(kek, check) {
                                    return Err(conn.abort(e).await);
                                }
                            }
                            None if fresh && i == 0 => {
                                register(&conn, kek).await?;
                                set_current(&conn, kek.id()).await?;
                                current = Some(kek.id());
                            }
                            None => {
                                let e = StoreError::Kek(format!(
                                    "KEK {} is not registered in this store (introduce a new \
                                     KEK with rotate_kek)",
                                    kek.id()
                                ));
                                return Err(conn.abort(e).await);
                            }
                        }
                    }
                    for (id, (_, retired)) in &checks {
                        if !retired && !keks.iter().any(|k| k.id() == *id) {
                            let e = StoreError::Kek(format!(
                                "KEK {id} is still needed by this store but was not supplied"
                            ));
                            return Err(conn.abort(e).await);
                        }
                    }
                    conn.commit().await?;
                    Ok(current)
                }
            })
            .await
        })?;
        let mut ring = self
            .inner
            .keyring
            .write()
            .map_err(|_| backend("keyring lock poisoned"))?;
        ring.keks = given.iter().map(|k| (k.id(), k.clone())).collect();
        ring.current = current;
        Ok(())
    }

    /// The KEKs that must be supplied at unlock: registered and not retired.
    pub fn required_keks(&self) -> Result<Vec<KekId>, StoreError> {
        self.run(|inner| async move {
            retrying(&inner, |conn| async move {
                let checks = checks_in(&conn).await?;
                conn.release();
                Ok(checks
                    .into_iter()
                    .filter(|(_, (_, retired))| !retired)
                    .map(|(id, _)| id)
                    .collect())
            })
            .await
        })
    }

    /// The KEK new records are wrapped with, as the database says now.
    pub fn current_kek(&self) -> Result<Option<KekId>, StoreError> {
        self.run(|inner| async move {
            retrying(&inner, |conn| async move {
                let c = current_in(&conn).await?;
                conn.release();
                Ok(c)
            })
            .await
        })
    }

    /// Keeps (or replaces) the HSM layer's wrapped form of a KEK; durable on return.
    pub fn store_wrapped_kek(&self, id: KekId, blob: &[u8]) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO kmipd_keks (id, wrapped) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET wrapped = EXCLUDED.wrapped",
            vec![Param::Int(i64::from(id.0)), Param::Bytes(blob.to_vec())],
        )
        .map(drop)
    }

    /// Keeps the wrapped form of a KEK only if no blob is kept for that id yet; returns
    /// whether it was stored. How nodes starting on a new database agree on one first KEK:
    /// the node whose blob was not stored reads the one that was.
    pub fn create_wrapped_kek(&self, id: KekId, blob: &[u8]) -> Result<bool, StoreError> {
        let stored = self.execute(
            "INSERT INTO kmipd_keks (id, wrapped) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET wrapped = EXCLUDED.wrapped \
             WHERE kmipd_keks.wrapped IS NULL",
            vec![Param::Int(i64::from(id.0)), Param::Bytes(blob.to_vec())],
        )?;
        Ok(stored == 1)
    }

    /// Every wrapped KEK blob kept, by id.
    pub fn wrapped_keks(&self) -> Result<Vec<(KekId, Vec<u8>)>, StoreError> {
        self.run(|inner| async move {
            retrying(&inner, |conn| async move {
                let rows = db(conn
                    .client()?
                    .query(
                        "SELECT id, wrapped FROM kmipd_keks WHERE wrapped IS NOT NULL ORDER BY id",
                        &[],
                    )
                    .await)?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let id: i64 = db(r.try_get(0))?;
                    let id =
                        u32::try_from(id).map_err(|_| Failure::Fatal(backend("damaged KEK id")))?;
                    out.push((KekId(id), db(r.try_get(1))?));
                }
                conn.release();
                Ok(out)
            })
            .await
        })
    }

    /// Deletes the wrapped blob of a KEK no record needs (refused for a required one).
    pub fn remove_wrapped_kek(&self, id: KekId) -> Result<(), StoreError> {
        self.run(move |inner| async move {
            retrying(&inner, |conn| async move {
                begin_exclusive(&conn).await?;
                let checks = checks_in(&conn).await?;
                if checks.get(&id).is_some_and(|(_, retired)| !retired) {
                    let e = StoreError::Kek(format!("KEK {id} is still needed"));
                    return Err(conn.abort(e).await);
                }
                db(conn
                    .client()?
                    .execute(
                        "UPDATE kmipd_keks SET wrapped = NULL WHERE id = $1",
                        &[&i64::from(id.0)],
                    )
                    .await)?;
                conn.commit().await?;
                Ok(())
            })
            .await
        })
    }

    /// The value of `kmipd_meta` row `key`, if any.
    pub(crate) fn meta_value(&self, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        let key = Arc::new(key);
        self.run(|inner| async move {
            retrying(&inner, |conn| {
                let key = key.clone();
                async move {
                    // Prepared once per connection: read on every Create (the constraints
                    // setting), where an unnamed statement cost a round trip and a parse
                    // and plan each time.
                    let c = conn.client()?;
                    let stmt = db(c
                        .prepare_cached("SELECT value FROM kmipd_meta WHERE key = $1")
                        .await)?;
                    let row = db(c.query_opt(&stmt, &[&*key]).await)?;
                    let v = match row {
                        Some(r) => Some(db(r.try_get(0))?),
                        None => None,
                    };
                    conn.release();
                    Ok(v)
                }
            })
            .await
        })
    }

    /// Sets (`Some`) or deletes (`None`) `kmipd_meta` row `key`.
    pub(crate) fn set_meta_value(
        &self,
        key: String,
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        match value {
            Some(v) => self.execute(
                "INSERT INTO kmipd_meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                vec![Param::Text(key), Param::Bytes(v.to_vec())],
            ),
            None => self.execute(
                "DELETE FROM kmipd_meta WHERE key = $1",
                vec![Param::Text(key)],
            ),
        }
        .map(drop)
    }

    /// What the HSM layer recorded of the master key (to refuse a node whose master key
    /// differs), if anything.
    pub fn master_fingerprint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.meta_value(META_MASTER.to_owned())
    }

    /// Records the master key's fingerprint (replacing the previous one).
    pub fn set_master_fingerprint(&self, fingerprint: &[u8]) -> Result<(), StoreError> {
        self.set_meta_value(META_MASTER.to_owned(), Some(fingerprint))
    }

    /// One statement in its own transaction, retried as every operation is; the rows it
    /// changed.
    fn execute(&self, sql: &'static str, params: Vec<Param>) -> Result<u64, StoreError> {
        let params = Arc::new(params);
        self.run(move |inner| async move {
            retrying(&inner, |conn| {
                let params = params.clone();
                async move {
                    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(Param::as_sql).collect();
                    let n = db(conn.client()?.execute(sql, &refs).await)?;
                    conn.release();
                    Ok(n)
                }
            })
            .await
        })
    }

    /// Rotates to `new`: registers it as the current KEK, re-wraps every record, and retires
    /// the KEKs no record needs any more. Online; resumable (call it again with the same KEK
    /// after unlocking with the old and the new one).
    pub fn rotate_kek(&self, new: Kek) -> Result<KekRotation, StoreError> {
        KekRotation::run(
            || self.begin_kek_rotation(new),
            |max| self.rewrap_step(max),
            || self.finish_kek_rotation(),
        )
    }

    /// First step of a rotation: `new` is registered and becomes the KEK of every write from
    /// now on, on every node (a node that does not hold it learns it at its next commit, or
    /// fails that commit when it cannot; see the module doc). Both KEKs stay required until
    /// [`finish_kek_rotation`].
    ///
    /// [`finish_kek_rotation`]: Self::finish_kek_rotation
    pub fn begin_kek_rotation(&self, new: Kek) -> Result<(), StoreError> {
        self.inner.current()?;
        let new = Arc::new(new);
        let kek = new.clone();
        self.run(move |inner| async move {
            retrying(&inner, |conn| {
                let kek = kek.clone();
                async move {
                    begin_exclusive(&conn).await?;
                    let checks = checks_in(&conn).await?;
                    match checks.get(&kek.id()) {
                        Some((check, _)) => {
                            if let Err(e) = verify_check(&kek, check) {
                                return Err(conn.abort(e).await);
                            }
                            // Required again (a resumed rotation).
                            db(conn
                                .client()?
                                .execute(
                                    "UPDATE kmipd_keks SET retired = false WHERE id = $1",
                                    &[&i64::from(kek.id().0)],
                                )
                                .await)?;
                        }
                        None => register(&conn, &kek).await?,
                    }
                    set_current(&conn, kek.id()).await?;
                    conn.commit().await?;
                    Ok(())
                }
            })
            .await
        })?;
        let mut ring = self
            .inner
            .keyring
            .write()
            .map_err(|_| backend("keyring lock poisoned"))?;
        ring.current = Some(new.id());
        ring.keks.insert(new.id(), new);
        Ok(())
    }

    /// Re-wraps up to `max` records not under the current KEK, in one transaction (durable
    /// before return). Returns how many were re-wrapped and the damaged records skipped.
    pub fn rewrap_step(&self, max: usize) -> Result<(usize, Vec<String>), StoreError> {
        let current = self.inner.current()?;
        let cur = i64::from(current.id().0);
        self.run(move |inner| async move {
            // Which records to re-wrap (read without locks, re-checked under them): pages in
            // uid order until `max` good ones are found; damaged ones are skipped.
            let page = i64::try_from(max.clamp(1, 10_000)).unwrap_or(1);
            let mut pick = Vec::new();
            let mut skipped = Vec::new();
            let mut after = String::new();
            while pick.len() < max {
                let from = after.clone();
                let rows = retrying(&inner, |conn| {
                    let from = from.clone();
                    async move {
                        let rows = db(conn
                            .client()?
                            .query(
                                "SELECT uid, record FROM kmipd_objects \
                                 WHERE kek_id IS NOT NULL AND kek_id <> $1 AND uid > $2 \
                                 ORDER BY uid LIMIT $3",
                                &[&cur, &from, &page],
                            )
                            .await)?;
                        let mut out = Vec::with_capacity(rows.len());
                        for r in rows {
                            out.push((
                                db(r.try_get::<_, String>(0))?,
                                db(r.try_get::<_, Vec<u8>>(1))?,
                            ));
                        }
                        conn.release();
                        Ok(out)
                    }
                })
                .await?;
                let Some((last, _)) = rows.last() else {
                    break;
                };
                after = last.clone();
                for (uid, raw) in rows {
                    if rewrapped(&inner, &uid, &raw, &current).is_err() {
                        skipped.push(uid);
                    } else if pick.len() < max {
                        pick.push(uid);
                    }
                }
            }
            if let Ok(mut c) = inner.corrupt.lock() {
                c.extend(skipped.iter().cloned());
            }
            if pick.is_empty() {
                return Ok((0, skipped));
            }
            let pick = Arc::new(pick);
            let done = retrying(&inner, |conn| {
                let (inner, pick, current) = (inner.clone(), pick.clone(), current.clone());
                async move {
                    let mut locks: Vec<i64> = pick.iter().map(|u| object_lock(u)).collect();
                    locks.sort_unstable();
                    locks.dedup();
                    let mut sql = format!(
                        "BEGIN; SELECT pg_advisory_xact_lock_shared({LOCK_NS}, {LOCK_KEK});"
                    );
                    for k in locks {
                        sql.push_str(&format!("SELECT pg_advisory_xact_lock({k});"));
                    }
                    let c = conn.client()?;
                    db(c.batch_execute(&sql).await)?;
                    let rows = db(c
                        .query(
                            "SELECT uid, record FROM kmipd_objects \
                             WHERE uid = ANY($1::text[]) AND kek_id IS NOT NULL AND kek_id <> $2",
                            &[&*pick, &cur],
                        )
                        .await)?;
                    let mut uids = Vec::new();
                    let mut records = Vec::new();
                    for r in rows {
                        let uid: String = db(r.try_get(0))?;
                        let raw: Vec<u8> = db(r.try_get(1))?;
                        if let Ok(new_raw) = rewrapped(&inner, &uid, &raw, &current) {
                            uids.push(uid);
                            records.push(new_raw);
                        }
                    }
                    db(c.execute(
                        "UPDATE kmipd_objects o SET record = t.r, kek_id = $3, \
                             revision = nextval('kmipd_revision') \
                             FROM unnest($1::text[], $2::bytea[]) AS t(u, r) WHERE o.uid = t.u",
                        &[&uids, &records, &cur],
                    )
                    .await)?;
                    conn.commit().await?;
                    Ok(uids.len())
                }
            })
            .await?;
            Ok((done, skipped))
        })
    }

    /// Last step of a rotation: if no readable record needs an older KEK, retires every KEK
    /// but the current one and returns them; otherwise fails (run `rewrap_step` again).
    pub fn finish_kek_rotation(&self) -> Result<Vec<KekId>, StoreError> {
        let current = self.inner.current()?.id();
        let cur = i64::from(current.0);
        let retired = self.run(move |inner| async move {
            retrying(&inner, |conn| {
                let inner = inner.clone();
                async move {
                    begin_exclusive(&conn).await?;
                    let rows = db(conn
                        .client()?
                        .query(
                            "SELECT uid, record FROM kmipd_objects \
                             WHERE kek_id IS NOT NULL AND kek_id <> $1 ORDER BY uid",
                            &[&cur],
                        )
                        .await)?;
                    for r in rows {
                        let uid: String = db(r.try_get(0))?;
                        let raw: Vec<u8> = db(r.try_get(1))?;
                        if let Ok(parsed) = record::parse(&uid, &raw)
                            && let Some((id, wrapped)) = &parsed.wrapped
                            && inner
                                .kek(*id)
                                .and_then(|k| record::open_sealed(&uid, wrapped, &k))
                                .is_ok()
                        {
                            let e = StoreError::Kek(format!(
                                "rotation not finished: {uid} is still wrapped by KEK {id}"
                            ));
                            return Err(conn.abort(e).await);
                        }
                    }
                    let rows = db(conn
                        .client()?
                        .query(
                            "UPDATE kmipd_keks SET retired = true WHERE check_value IS NOT NULL \
                             AND NOT retired AND id <> $1 RETURNING id",
                            &[&cur],
                        )
                        .await)?;
                    let mut ids = Vec::new();
                    for r in rows {
                        let id: i64 = db(r.try_get(0))?;
                        ids.push(KekId(
                            u32::try_from(id)
                                .map_err(|_| Failure::Fatal(backend("damaged KEK id")))?,
                        ));
                    }
                    conn.commit().await?;
                    ids.sort();
                    Ok(ids)
                }
            })
            .await
        })?;
        if let Ok(mut ring) = self.inner.keyring.write() {
            ring.keks.retain(|id, _| *id == current);
        }
        Ok(retired)
    }
}

/// The record re-wrapped under `current`, if it parses and unwraps.
fn rewrapped(inner: &Inner, uid: &str, raw: &[u8], current: &Kek) -> Result<Vec<u8>, StoreError> {
    let parsed = record::parse(uid, raw)?;
    let Some((id, wrapped)) = &parsed.wrapped else {
        return Err(backend("no key material"));
    };
    let object = record::open_sealed(uid, wrapped, &*inner.kek(*id)?)?;
    record::rewrap(&parsed, &object, current)
}
