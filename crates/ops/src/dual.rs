//! Dual control: objects whose sensitive operations need two people.
//!
//! An object **needs dual control** when it carries the server-owned vendor attribute
//! [`MARK_ATTRIBUTE`] (`y-kmipd-dual-control`, Boolean True; set by an administrator with
//! [`crate::Engine::set_dual_control`], `kmipd admin dual-control UID`) or when one of its Object
//! Groups is in the policy's [`Policy::dual_control_groups`](crate::Policy).
//!
//! For such an object, these operations are **guarded** ([`guard`]): Destroy, Get of an object
//! holding secret key material (anything but a Certificate or a Public Key; in the clear or
//! wrapped under any key, the requester's included), and Delete Attribute of the mark. A
//! guarded operation completes only for a requester holding an **approval** given by a second,
//! different administrator within the window ([`Policy::dual_control_window`](crate::Policy),
//! default [`DEFAULT_WINDOW`]):
//!
//! 1. The first request fails (Permission Denied) with a message naming the request id
//!    (`UID.XXXXXXXX`) and how to approve it; the pending request is stored on the object.
//! 2. An administrator other than the requester approves it: `kmipd admin approve ID` (the admin
//!    socket's identity `local-admin`, [`crate::Engine::approve_dual`]), or the same operation on
//!    the same object sent over KMIP by another administrator (that request fails too, saying
//!    it approved the pending one: it never performs the operation itself).
//! 3. The requester's retry of the same operation completes within the window from the
//!    approval, and uses the approval up (one approval, one operation).
//!
//! A request not approved within the window from its request, or an approval not used within the
//! window from its approval, **expires**: it is refused (approving it, or retrying with it) and
//! dropped, and the message says so. A self-approval is refused. Every step is a KMIP request
//! or an admin command, so each is in the audit log with its result message (request id,
//! approval, refusal, expiry).
//!
//! A Re-Key replacement inherits the mark but none of the requests (an approval is for one
//! object).
//!
//! **Where pending requests live.** On the object itself, as instances of the server-owned
//! vendor attribute [`REQUEST_ATTRIBUTE`] (`y-kmipd-dual-request`): they reach the store in the
//! same commit as any change, with the object's revision expected, through the `ObjectStore`
//! trait. So several kmipd nodes on one store see the same pending requests and approvals, and
//! an approval is used up exactly once (a second node's retry conflicts and reads it afresh).
//! The first request's failure still stores its pending request: the engine keeps the object
//! changes a guard asks for (`Ctx::keep`) through the failed item's rollback.

use kmipd_proto::attributes::{AttrName, Attribute};
use kmipd_proto::enums::object_type as ot;
use kmipd_proto::enums::operation as op;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::Value;

use crate::access::{Role, operation_name};
use crate::context::Ctx;
use crate::engine::Principal;
use crate::error::Error;
use crate::policy::Policy;

/// The vendor attribute that marks an object as needing dual control.
pub const MARK_ATTRIBUTE: &str = "y-kmipd-dual-control";
/// The vendor attribute holding one pending (or approved) request.
pub const REQUEST_ATTRIBUTE: &str = "y-kmipd-dual-request";
/// The approval window when the policy sets none: one hour.
pub const DEFAULT_WINDOW: i64 = 3_600;

fn custom(name: &str) -> AttrName {
    AttrName::Custom {
        vendor: None,
        name: name.to_owned(),
    }
}

/// True when `name` is the dual control mark (in either spelling). Allocates nothing: it is
/// asked of every attribute of every object a Get or Destroy reads.
pub fn is_mark(name: &AttrName) -> bool {
    name.is_custom_v1(MARK_ATTRIBUTE)
}

/// True when `name` is a stored request (never copied to a Re-Key replacement: an approval
/// is for one object).
pub(crate) fn is_request(name: &AttrName) -> bool {
    name.is_custom_v1(REQUEST_ATTRIBUTE)
}

/// Whether the object needs dual control under `policy`.
pub fn required(policy: &Policy, object: &ManagedObject) -> bool {
    let marked = object
        .attributes
        .iter()
        .any(|a| is_mark(&a.name) && a.value == Value::Boolean(true));
    marked
        || object
            .attributes
            .all(&AttrName::Std(tag::OBJECT_GROUP))
            .any(|v| matches!(v, Value::TextString(g) if policy.dual_control_groups.contains(g)))
}

/// Sets the mark on the object (true when it was not set).
pub(crate) fn mark(object: &mut ManagedObject) -> bool {
    if object.attributes.iter().any(|a| is_mark(&a.name)) {
        return false;
    }
    object.attributes.0.push(Attribute {
        name: custom(MARK_ATTRIBUTE),
        value: Value::Boolean(true),
    });
    true
}

/// One request for a guarded act and its approval. The rules of expiry and approval here are
/// shared by object dual control (`A` = the guarded operation, an Operation enumeration value,
/// stored on the object) and the server's dual control of commands (`A` = the command's name,
/// kept in the server's memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<A = u32> {
    /// `UID.XXXXXXXX` for an object's request.
    pub id: String,
    /// The guarded act.
    pub act: A,
    /// Who asked.
    pub requester: String,
    /// When (POSIX seconds).
    pub requested_at: i64,
    /// Who approved, and when.
    pub approval: Option<(String, i64)>,
}

impl<A> Request<A> {
    /// The time after which it is expired: `window` after its approval, or after the request
    /// while it is not approved.
    pub fn expires(&self, window: i64) -> i64 {
        match &self.approval {
            Some((_, at)) => at.saturating_add(window),
            None => self.requested_at.saturating_add(window),
        }
    }

    /// `approver` approves it at `now`, unless it is the requester's own or already approved
    /// (the refusal's message). Expiry is the caller's to check first.
    pub fn approve(&mut self, approver: &str, now: i64) -> Result<(), String> {
        if self.requester == approver {
            return Err(format!(
                "dual control request {}: a self-approval is refused (requested by {})",
                self.id, self.requester
            ));
        }
        if let Some((by, _)) = &self.approval {
            return Err(format!(
                "dual control request {} is already approved by {by}",
                self.id
            ));
        }
        self.approval = Some((approver.to_owned(), now));
        Ok(())
    }
}

/// Drops the requests expired at `now`; what a message says of them (empty when none were).
pub fn drop_expired<A>(all: &mut Vec<Request<A>>, now: i64, window: i64) -> String {
    let expired: Vec<String> = all
        .iter()
        .filter(|r| now > r.expires(window))
        .map(|r| r.id.clone())
        .collect();
    all.retain(|r| now <= r.expires(window));
    if expired.is_empty() {
        String::new()
    } else {
        format!(" (expired and dropped: {})", expired.join(", "))
    }
}

impl Request {
    /// Stored as lines: id, operation, requested at, approved at (or `-`), approver (or empty),
    /// requester (identities hold no line breaks).
    fn to_value(&self) -> Value {
        let (approver, at) = match &self.approval {
            Some((who, at)) => (who.as_str(), at.to_string()),
            None => ("", "-".to_owned()),
        };
        Value::TextString(format!(
            "{}\n{}\n{}\n{at}\n{approver}\n{}",
            self.id,
            operation_name(self.act),
            self.requested_at,
            self.requester
        ))
    }

    fn from_value(value: &Value) -> Option<Request> {
        let Value::TextString(s) = value else {
            return None;
        };
        let mut lines = s.splitn(6, '\n');
        let id = lines.next()?.to_owned();
        let act = crate::access::operation_by_name(lines.next()?)?;
        let requested_at = lines.next()?.parse().ok()?;
        let approved_at = lines.next()?;
        let approver = lines.next()?;
        let requester = lines.next()?.to_owned();
        let approval = match approved_at {
            "-" => None,
            at => Some((approver.to_owned(), at.parse().ok()?)),
        };
        Some(Request {
            id,
            act,
            requester,
            requested_at,
            approval,
        })
    }
}

/// The requests stored on an object (unreadable instances are ignored).
pub fn requests(object: &ManagedObject) -> Vec<Request> {
    object
        .attributes
        .iter()
        .filter(|a| is_request(&a.name))
        .filter_map(|a| Request::from_value(&a.value))
        .collect()
}

fn set_requests(object: &mut ManagedObject, requests: &[Request]) {
    object.attributes.0.retain(|a| !is_request(&a.name));
    for r in requests {
        object.attributes.0.push(Attribute {
            name: custom(REQUEST_ATTRIBUTE),
            value: r.to_value(),
        });
    }
}

/// Puts the requests stored on `from` (a refusal's object) on `into` (the same object as the
/// batch sees it after the refused item's rollback), replacing those `into` has.
pub(crate) fn carry_requests(from: &ManagedObject, into: &mut ManagedObject) {
    set_requests(into, &requests(from));
}

fn window(policy: &Policy) -> i64 {
    policy.dual_control_window.unwrap_or(DEFAULT_WINDOW)
}

/// Whether `operation` on `object` is guarded (see the module docs; the mark's removal is
/// guarded by Delete Attribute itself).
pub(crate) fn guarded(operation: u32, object: &ManagedObject) -> bool {
    match operation {
        op::DESTROY => true,
        op::GET => {
            object.object.is_some()
                && ![ot::CERTIFICATE, ot::PUBLIC_KEY].contains(&object.object_type)
        }
        _ => false,
    }
}

/// The dual control check of the current operation on `object` (see the module docs). `Ok`:
/// the operation may go on (the object may have changed: an approval used up, expired requests
/// dropped; the caller stores it). `Err`: refused; what the refusal records on the object is
/// kept by the engine through the item's rollback.
pub(crate) fn guard(
    ctx: &mut Ctx<'_>,
    object: &mut ManagedObject,
    operation: u32,
) -> Result<(), Error> {
    if !required(ctx.policy, object) {
        return Ok(());
    }
    let window = window(ctx.policy);
    let now = ctx.now;
    let who = ctx.principal.name().to_owned();
    let mut all = requests(object);
    let expired_note = drop_expired(&mut all, now, window);
    let what = format!("{} of {}", operation_name(operation), object.uid);
    // The requester's own approved request: used up, the operation goes on.
    if let Some(i) = all
        .iter()
        .position(|r| r.act == operation && r.requester == who && r.approval.is_some())
    {
        all.remove(i);
        set_requests(object, &all);
        return Ok(());
    }
    if let Some(r) = all
        .iter()
        .find(|r| r.act == operation && r.requester == who)
    {
        let id = r.id.clone();
        let until = r.expires(window);
        set_requests(object, &all);
        ctx.keep(object.clone());
        return Err(Error::Policy(format!(
            "dual control: {what} awaits approval of request {id} by a second administrator \
             (kmipd admin approve {id}, or the same request from another administrator) until \
             {until}{expired_note}"
        )));
    }
    // Another identity's pending request for the same operation: an administrator's identical
    // request approves it.
    if ctx.principal.role() == Role::Administrator
        && let Some(r) = all
            .iter_mut()
            .find(|r| r.act == operation && r.requester != who && r.approval.is_none())
    {
        r.approval = Some((who.clone(), now));
        let (id, requester) = (r.id.clone(), r.requester.clone());
        set_requests(object, &all);
        ctx.keep(object.clone());
        return Err(Error::Policy(format!(
            "dual control: approved request {id} of {requester} for {what}; its retry within \
             {window}s completes it (this request performs nothing){expired_note}"
        )));
    }
    let id = format!("{}.{}", object.uid, short_id());
    all.push(Request {
        id: id.clone(),
        act: operation,
        requester: who,
        requested_at: now,
        approval: None,
    });
    set_requests(object, &all);
    ctx.keep(object.clone());
    Err(Error::Policy(format!(
        "dual control: {what} needs the approval of a second administrator: request {id} \
         (kmipd admin approve {id}, or the same request from another administrator, within \
         {window}s); then retry{expired_note}"
    )))
}

fn short_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    u.chars().take(8).collect()
}

/// Approves request `id` as `who` at `now` on `object` (see [`crate::Engine::approve_dual`]):
/// `Ok(message)` when approved (the object changed), `Err` when refused (the object may still
/// have changed: an expired request dropped).
pub(crate) fn approve(
    who: &Principal,
    object: &mut ManagedObject,
    id: &str,
    now: i64,
    policy: &Policy,
) -> (bool, Result<String, String>) {
    let window = window(policy);
    let mut all = requests(object);
    let Some(i) = all.iter().position(|r| r.id == id) else {
        return (false, Err(format!("no pending dual control request {id}")));
    };
    let Some(r) = all.get_mut(i) else {
        return (false, Err(format!("no pending dual control request {id}")));
    };
    if now > r.expires(window) {
        all.remove(i);
        set_requests(object, &all);
        return (
            true,
            Err(format!(
                "dual control request {id} expired; refused and dropped"
            )),
        );
    }
    if who.role() != Role::Administrator {
        return (false, Err("only an administrator approves".to_owned()));
    }
    if let Err(refusal) = r.approve(who.name(), now) {
        return (false, Err(refusal));
    }
    let message = format!(
        "approved dual control request {id} ({} of {} by {}); its retry within {window}s \
         completes it",
        operation_name(r.act),
        object.uid,
        r.requester
    );
    set_requests(object, &all);
    (true, Ok(message))
}

/// The object identifier a request id names.
pub fn uid_of(id: &str) -> Option<&str> {
    id.rsplit_once('.')
        .map(|(uid, _)| uid)
        .filter(|u| !u.is_empty())
}
