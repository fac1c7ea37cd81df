//! Automatic rotation (KMIP 2.1 §4.48-4.54): an object with Rotate Automatic True and a Rotate
//! Interval is re-keyed by the server once `now - Initial Date >= Rotate Interval`, with the
//! equivalent of Re-Key (a Symmetric Key) or Re-Key Key Pair (a Private Key and its Public
//! Key): a new object of the same algorithm and length, the existing one's attributes, its Names
//! moved to the replacement, Replaced/Replacement Object links, the dates moved by the Rotate
//! Offset, all as the operation itself does (`operations/re_key*.rs`, run here unchanged). Then
//! the replacement gets Rotate Date (now), Rotate Generation (the existing one's plus one) and
//! Rotate Latest True, and the existing object Rotate Latest False. Rotate Automatic, Interval,
//! Offset and Name are copied, so the replacement is rotated in its turn.
//!
//! **Who.** The rotation acts as the administrator identity [`ROTATION_IDENTITY`]; the
//! replacement belongs to the existing object's owner (as for an operator's Re-Key). The server
//! records each rotation in its audit log under that identity.
//!
//! **Several nodes, crashes.** One rotation is one batch: the due check, the Re-Key and the
//! attribute changes are read and written through one `Tx` and reach the store in one atomic
//! commit, conditional on the existing object being unchanged since it was read
//! (`Change::Expect`). When two schedulers (two kmipd nodes on one PostgreSQL store) rotate the
//! same object at once, one commit wins; the other finds the object changed (its commit
//! conflicts, or a check such as the Name now held by the replacement fails), reads it again,
//! sees it replaced (Rotate Latest False) and does nothing. A crash before the commit leaves the
//! old state, after it the finished new state. A rotation that fails (the policy refuses the
//! algorithm, a store error) changes nothing and is tried again at the next run.
//!
//! **Which objects.** Found with the store query [`Filter::RotationDue`]: the objects with Rotate
//! Automatic True whose Initial Date plus Rotate Interval has passed, read from an index ordered
//! by that date (both backends keep it with the object's other index terms), so a run reads only
//! the objects due, not every object that rotates. Only Active objects are rotated: a Pre-Active object is not in use yet,
//! and a Deactivated, Compromised or Destroyed one is not to be renewed.

use kmipd_proto::build;
use kmipd_proto::enums::{link_type, object_type as ot, operation as op, state};
use kmipd_proto::message::ProtocolVersion;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_store::{Filter, ManagedObject, Query, StoreError};
use kmipd_ttlv::{Ttlv, Value};

use crate::access::Role;
use crate::context::{Ctx, Tx};
use crate::engine::{Engine, Principal};
use crate::error::Error;
use crate::object::current_state;
use crate::retry::Retry;

/// The identity automatic rotations act as (and are audited under).
pub const ROTATION_IDENTITY: &str = "kmipd:rotation";

/// One rotation done: the object replaced and its replacement (for a key pair, the private
/// keys; `public` holds the public keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The Operation whose equivalent was performed (Re-Key or Re-Key Key Pair).
    pub operation: u32,
    /// The existing object.
    pub old: String,
    /// Its replacement.
    pub new: String,
    /// Re-Key Key Pair: (existing, replacement) public keys.
    pub public: Option<(String, String)>,
}

/// The outcome of rotating one due object.
#[derive(Debug)]
pub enum Outcome {
    /// Rotated.
    Rotated(Rotation),
    /// Not due any more when read in the rotation's own transaction (another node rotated it,
    /// or it changed); nothing done.
    NotDue(String),
    /// The rotation failed; nothing changed; it is tried again at the next run.
    Failed {
        /// The object.
        uid: String,
        /// Why.
        error: Error,
    },
}

fn boolean(o: &ManagedObject, t: kmipd_ttlv::Tag) -> Option<bool> {
    match o.attributes.get(t) {
        Some(Value::Boolean(b)) => Some(*b),
        _ => None,
    }
}

/// Whether the object is due for automatic rotation at `now`.
pub fn is_due(o: &ManagedObject, now: i64) -> bool {
    if boolean(o, tag::ROTATE_AUTOMATIC) != Some(true)
        || boolean(o, tag::ROTATE_LATEST) == Some(false)
        || current_state(o) != Some(state::ACTIVE)
        || !matches!(o.object_type, ot::SYMMETRIC_KEY | ot::PRIVATE_KEY)
        || crate::objects::rekey::linked(o, link_type::REPLACEMENT_OBJECT_LINK).is_some()
    {
        return false;
    }
    let interval = match o.attributes.get(tag::ROTATE_INTERVAL) {
        Some(Value::Interval(i)) if *i > 0 => i64::from(*i),
        _ => return false,
    };
    let initial = match o.attributes.get(tag::INITIAL_DATE) {
        Some(Value::DateTime(d)) => *d,
        _ => return false,
    };
    now.saturating_sub(initial) >= interval
}

impl Engine {
    /// The identifiers of the objects due for automatic rotation now.
    pub fn due_for_rotation(&self) -> Result<Vec<String>, Error> {
        let now = self.config().clock.now();
        let query = Query::new(vec![Filter::RotationDue(now)]);
        let mut due: Vec<ManagedObject> = self.store_ref().find(&query)?;
        for o in &mut due {
            crate::object::apply_dates(o, now);
        }
        Ok(due
            .into_iter()
            .filter(|o| is_due(o, now))
            .map(|o| o.uid)
            .collect())
    }

    /// The objects due for automatic rotation now and not rotated yet, and how long the one
    /// that waits longest has been due (seconds; 0 when none): the scheduler's lag, for the
    /// `kmipd_rotation_due_objects` and `kmipd_rotation_lag_seconds` metrics. Read from the
    /// same index as [`Engine::due_for_rotation`].
    pub fn rotation_lag(&self) -> Result<(usize, i64), Error> {
        let now = self.config().clock.now();
        let mut due: Vec<ManagedObject> = self
            .store_ref()
            .find(&Query::new(vec![Filter::RotationDue(now)]))?;
        let mut count = 0;
        let mut lag = 0;
        for o in &mut due {
            crate::object::apply_dates(o, now);
            if is_due(o, now) {
                count += 1;
                let since = kmipd_store::rotation_due_at(o).map_or(0, |d| now.saturating_sub(d));
                lag = lag.max(since);
            }
        }
        Ok((count, lag))
    }

    /// Rotates every object due now (see the module docs); one outcome per due object.
    pub fn rotate_due(&self) -> Result<Vec<Outcome>, Error> {
        Ok(self
            .due_for_rotation()?
            .into_iter()
            .map(|uid| match self.rotate(&uid) {
                Ok(Some(r)) => Outcome::Rotated(r),
                Ok(None) => Outcome::NotDue(uid),
                Err(error) => Outcome::Failed { uid, error },
            })
            .collect())
    }

    /// Rotates object `uid` if it is due (checked in the rotation's own transaction); `None`
    /// when it is not (any more).
    pub fn rotate(&self, uid: &str) -> Result<Option<Rotation>, Error> {
        let who = Principal::with_role(ROTATION_IDENTITY, Role::Administrator);
        let mut retry = Retry::new();
        loop {
            let now = self.config().clock.now();
            let policy = self.policy();
            let version = ProtocolVersion::V2_1;
            let mut ctx = Ctx {
                principal: &who,
                version,
                spec: version.spec().ok_or(Error::Internal("2.1 tables"))?,
                now,
                tx: Tx::new(self.store_ref(), now),
                id_placeholder: None,
                batch_uids: Vec::new(),
                uid_by_kind: Vec::new(),
                config: self.config(),
                policy: &policy,
                operation: op::RE_KEY,
                kept: Vec::new(),
                streams: None,
                stream_changes: Vec::new(),
                tickets: self.tickets_ref(),
                pkcs11: self.pkcs11_ref(),
            };
            let old = ctx.load(uid)?;
            if !is_due(&old, now) {
                return Ok(None);
            }
            let rotation = match rotate_in(&mut ctx, &old) {
                Ok(r) => r,
                // A concurrent rotation committed after this one read the object (its checks,
                // such as the Name now held by the replacement, then fail): no longer due.
                Err(_) if !self.still_due(uid)? => return Ok(None),
                Err(e) => return Err(e),
            };
            match self.store_ref().commit(ctx.tx.into_changes()) {
                Ok(()) => return Ok(Some(rotation)),
                Err(StoreError::Conflict { .. }) => match retry.after_conflict() {
                    Some(pause) => std::thread::sleep(pause),
                    None => return Err(Error::GeneralFailure("rotation kept conflicting")),
                },
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Engine {
    /// Whether object `uid`, read afresh from the store, is due now.
    fn still_due(&self, uid: &str) -> Result<bool, Error> {
        let now = self.config().clock.now();
        Ok(self.store_ref().get(uid)?.is_some_and(|mut o| {
            crate::object::apply_dates(&mut o, now);
            is_due(&o, now)
        }))
    }
}

/// The Re-Key (Key Pair) of `old` and the Rotate attributes, in `ctx`'s transaction.
fn rotate_in(ctx: &mut Ctx<'_>, old: &ManagedObject) -> Result<Rotation, Error> {
    let offset = match old.attributes.get(tag::ROTATE_OFFSET) {
        Some(Value::Interval(i)) => Some(*i),
        _ => None,
    };
    let offset_item = offset.map(|o| Ttlv::new(tag::OFFSET, Value::Interval(o)));
    let generation = match old.attributes.get(tag::ROTATE_GENERATION) {
        Some(Value::Integer(g)) => *g,
        _ => 0,
    };
    let (operation, payload) = if old.object_type == ot::PRIVATE_KEY {
        let mut items = vec![build::text(tag::PRIVATE_KEY_UNIQUE_IDENTIFIER, &old.uid)];
        items.extend(offset_item);
        (
            op::RE_KEY_KEY_PAIR,
            build::structure(tag::REQUEST_PAYLOAD, items),
        )
    } else {
        let mut items = vec![build::unique_identifier(&old.uid)];
        items.extend(offset_item);
        (op::RE_KEY, build::structure(tag::REQUEST_PAYLOAD, items))
    };
    ctx.operation = operation;
    let answer = crate::dispatch::dispatch(ctx, operation, Some(&payload))?
        .ok_or(Error::Internal("re-key without answer"))?;
    let r = StructReader::any(&answer)?;
    let text = |t| -> Result<String, Error> {
        r.text(t)?
            .map(str::to_owned)
            .ok_or(Error::Internal("re-key answer without identifier"))
    };
    let (new, public) = if operation == op::RE_KEY_KEY_PAIR {
        let new = text(tag::PRIVATE_KEY_UNIQUE_IDENTIFIER)?;
        let new_public = text(tag::PUBLIC_KEY_UNIQUE_IDENTIFIER)?;
        let old_public = crate::objects::rekey::linked(old, link_type::PUBLIC_KEY_LINK);
        (new, old_public.map(|p| (p, new_public)))
    } else {
        (text(tag::UNIQUE_IDENTIFIER)?, None)
    };
    let next = generation.saturating_add(1);
    let mut pairs = vec![(old.uid.clone(), new.clone())];
    pairs.extend(public.clone());
    for (was, now_uid) in &pairs {
        mark(ctx, was, |o| {
            o.attributes.set(tag::ROTATE_LATEST, Value::Boolean(false));
        })?;
        let now = ctx.now;
        mark(ctx, now_uid, |o| {
            o.attributes.set(tag::ROTATE_LATEST, Value::Boolean(true));
            o.attributes
                .set(tag::ROTATE_GENERATION, Value::Integer(next));
            o.attributes.set(tag::ROTATE_DATE, Value::DateTime(now));
        })?;
    }
    Ok(Rotation {
        operation,
        old: old.uid.clone(),
        new,
        public,
    })
}

/// Changes an object of this transaction.
fn mark(ctx: &mut Ctx<'_>, uid: &str, f: impl FnOnce(&mut ManagedObject)) -> Result<(), Error> {
    let mut o = ctx.tx.get(uid)?.ok_or(Error::NotFound)?;
    f(&mut o);
    ctx.tx.put(o);
    Ok(())
}
