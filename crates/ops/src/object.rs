//! Helpers shared by the operations: naming the object a request is about, making new managed
//! objects with the attributes the server sets, time-driven state changes, and writing
//! attributes in the request's version.

use kmipd_proto::attributes::{AttrName, Attribute, Attributes, write_attributes};
use kmipd_proto::build;
use kmipd_proto::enums::{state, unique_identifier as uid_enum};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::{Ttlv, Value};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::lifecycle::{Event, transition};

/// The object a request names: its Unique Identifier (text; in 2.x also the Enumeration and
/// Integer forms), or, when absent, the ID Placeholder.
pub(crate) fn resolve_uid(ctx: &Ctx<'_>, r: &StructReader<'_>) -> Result<String> {
    match r.optional(tag::UNIQUE_IDENTIFIER) {
        Some(item) => uid_value(ctx, item),
        None => placeholder(ctx, "no Unique Identifier and no ID Placeholder"),
    }
}

/// The ID Placeholder: Missing Data when no item set it, Item Not Found when one emptied it
/// ([`Ctx::empty_placeholder`]).
pub(crate) fn placeholder(ctx: &Ctx<'_>, missing: &'static str) -> Result<String> {
    match ctx.id_placeholder.as_deref() {
        None => Err(Error::MissingData(missing)),
        Some("") => Err(Error::NotFound),
        Some(uid) => Ok(uid.to_owned()),
    }
}

/// Reads one Unique Identifier item (any of its forms).
pub(crate) fn uid_value(ctx: &Ctx<'_>, item: &Ttlv) -> Result<String> {
    match &item.value {
        Value::TextString(s) => Ok(s.clone()),
        Value::Enumeration(e) if ctx.v2() => match *e {
            uid_enum::ID_PLACEHOLDER => placeholder(ctx, "no ID Placeholder"),
            kind => ctx
                .uid_by_kind
                .iter()
                .rev()
                .find(|(k, _)| *k == kind)
                .map(|(_, u)| u.clone())
                .ok_or(Error::MissingData("no such identifier in this batch")),
        },
        Value::Integer(i) if ctx.v2() => {
            let idx = usize::try_from(*i).map_err(|_| Error::InvalidField("Unique Identifier"))?;
            ctx.batch_uids
                .get(idx)
                .cloned()
                .ok_or(Error::InvalidField("Unique Identifier"))
        }
        _ => Err(Error::InvalidField("Unique Identifier")),
    }
}

/// The Unique Identifier item of a response payload.
pub(crate) use kmipd_proto::build::unique_identifier as uid_item;

/// A response payload that holds only the Unique Identifier.
pub(crate) fn uid_payload(uid: &str) -> Ttlv {
    build::structure(tag::RESPONSE_PAYLOAD, vec![uid_item(uid)])
}

/// A fresh Unique Identifier: a time-ordered UUID (version 7, RFC 9562: 48 bits of Unix time in
/// milliseconds, then a counter and random bits; ordered within this process).
///
/// Ordered identifiers keep the stores' key order close to creation order: sled's `objects`
/// tree and PostgreSQL's primary-key index take each new object at their right edge, and the
/// objects clients use most (the recent ones) share pages that stay cached. Random (version 4)
/// identifiers scattered every insert, read and destroy over the whole tree, so the CPU per
/// request grew with the store (`docs/performance.md`, "Fifth round"). The
/// identifier tells its creation time to the millisecond, which Initial Date already tells
/// anyone allowed to see the object; identifiers were never secrets (access is by owner and
/// grant, `docs/access-control.md`).
pub(crate) fn new_uid() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Attributes a client may never set (the server owns them), and Storage Status Mask, which is
/// not an attribute at all (a Locate field) but which MySQL keyring_okv puts in its Create
/// template: dropped from a request rather than stored and answered as an attribute.
pub(crate) fn server_only(name: &AttrName) -> bool {
    let Some(t) = name.tag() else {
        return false;
    };
    [
        tag::UNIQUE_IDENTIFIER,
        tag::OBJECT_TYPE,
        tag::STATE,
        tag::INITIAL_DATE,
        tag::LAST_CHANGE_DATE,
        tag::DESTROY_DATE,
        tag::COMPROMISE_DATE,
        tag::DIGEST,
        tag::ORIGINAL_CREATION_DATE,
        tag::FRESH,
        tag::KEY_VALUE_PRESENT,
        tag::RANDOM_NUMBER_GENERATOR,
        tag::ALWAYS_SENSITIVE,
        tag::NEVER_EXTRACTABLE,
        tag::STORAGE_STATUS_MASK,
    ]
    .contains(&t)
}

/// Builds a new managed object owned by the caller, with the attributes the server sets:
/// Unique Identifier, Object Type, State (Pre-Active, or Active when an Activation Date in the
/// past was given), Initial Date, Last Change Date, Original Creation Date (1.4+) and, for
/// objects made by the server, the client's attributes.
pub(crate) fn new_object(
    ctx: &Ctx<'_>,
    object_type: u32,
    object: Option<Ttlv>,
    client_attributes: Attributes,
) -> Result<ManagedObject> {
    let uid = new_uid();
    let mut attributes = Attributes::new();
    attributes.set(tag::UNIQUE_IDENTIFIER, Value::TextString(uid.clone()));
    attributes.set(tag::OBJECT_TYPE, Value::Enumeration(object_type));
    for a in client_attributes.0 {
        attributes.0.push(a);
    }
    attributes.set(tag::STATE, Value::Enumeration(state::PRE_ACTIVE));
    attributes.set(tag::INITIAL_DATE, Value::DateTime(ctx.now));
    attributes.set(tag::LAST_CHANGE_DATE, Value::DateTime(ctx.now));
    attributes.set(tag::ORIGINAL_CREATION_DATE, Value::DateTime(ctx.now));
    // Created under a verified credential: only that credential (or its certificate identity
    // without one) may touch it (`tickets.rs`).
    if let Some(label) = ctx
        .principal
        .narrowing()
        .and_then(|n| n.credential.as_ref())
    {
        attributes.0.push(kmipd_proto::attributes::Attribute {
            name: kmipd_proto::attributes::AttrName::Custom {
                vendor: None,
                name: crate::tickets::CREDENTIAL_ATTRIBUTE.to_owned(),
            },
            value: Value::TextString(label.clone()),
        });
    }
    let mut obj = ManagedObject {
        uid,
        object_type,
        owner: ctx.principal.name().to_owned(),
        object,
        attributes,
        sequence: ctx.tx.next_sequence()?,
    };
    apply_dates(&mut obj, ctx.now);
    Ok(obj)
}

/// Applies the time-driven transitions: an Activation Date at or before `now` makes a
/// Pre-Active object Active; a Deactivation Date at or before `now` makes a Pre-Active or
/// Active object Deactivated.
pub(crate) fn apply_dates(obj: &mut ManagedObject, now: i64) {
    let date = |t| match obj.attributes.get(t) {
        Some(Value::DateTime(d)) => Some(*d),
        _ => None,
    };
    let current = current_state(obj);
    let activation = date(tag::ACTIVATION_DATE);
    let deactivation = date(tag::DEACTIVATION_DATE);
    if current == Some(state::PRE_ACTIVE) && activation.is_some_and(|d| d <= now) {
        obj.attributes
            .set(tag::STATE, Value::Enumeration(state::ACTIVE));
    }
    let current = current_state(obj);
    if matches!(current, Some(state::PRE_ACTIVE | state::ACTIVE))
        && deactivation.is_some_and(|d| d <= now)
    {
        obj.attributes
            .set(tag::STATE, Value::Enumeration(state::DEACTIVATED));
    }
}

/// The object's State.
pub(crate) fn current_state(obj: &ManagedObject) -> Option<u32> {
    match obj.attributes.get(tag::STATE) {
        Some(Value::Enumeration(s)) => Some(*s),
        _ => None,
    }
}

/// Marks a change: Last Change Date = now.
pub(crate) fn touch(ctx: &Ctx<'_>, obj: &mut ManagedObject) {
    obj.attributes
        .set(tag::LAST_CHANGE_DATE, Value::DateTime(ctx.now));
}

/// Moves the object's State by a lifecycle `event`: the next state, or `lifecycle`'s refusal.
pub(crate) fn transition_state(obj: &mut ManagedObject, event: Event) -> Result<()> {
    let next = next_state(obj, event)?;
    obj.attributes.set(tag::STATE, Value::Enumeration(next));
    Ok(())
}

/// The State a lifecycle `event` would move the object to, or `lifecycle`'s refusal; the
/// object is left as it is.
pub(crate) fn next_state(obj: &ManagedObject, event: Event) -> Result<u32> {
    let current = current_state(obj).ok_or(Error::Internal("object without State"))?;
    transition(current, event)
}

/// Ends an operation that changed an existing object: Last Change Date = now, the object is
/// written back, and the answer is its Unique Identifier. Not an ID Placeholder source (only
/// creating operations and Locate are), but a Unique Identifier of the response, which the 2.x
/// Integer form counts.
pub(crate) fn save_and_answer(ctx: &mut Ctx<'_>, mut obj: ManagedObject, uid: &str) -> Ttlv {
    touch(ctx, &mut obj);
    ctx.tx.put(obj);
    ctx.batch_uids.push(uid.to_owned());
    uid_payload(uid)
}

/// Attributes in the request's version: 1.x a list of `Attribute` (with Attribute Index when
/// `with_index`), 2.x one `Attributes` structure. Attributes the version lacks are left out.
pub(crate) fn attributes_out(
    ctx: &Ctx<'_>,
    attrs: &[(usize, &Attribute)],
    with_index: bool,
) -> Vec<Ttlv> {
    let items = write_attributes(attrs, ctx.spec, with_index);
    if ctx.v2() {
        vec![build::structure(tag::ATTRIBUTES, items)]
    } else {
        items
    }
}

/// A standard attribute's value as an Enumeration.
pub(crate) fn attr_enum(attrs: &Attributes, t: kmipd_ttlv::Tag) -> Option<u32> {
    match attrs.get(t) {
        Some(Value::Enumeration(v)) => Some(*v),
        _ => None,
    }
}

/// A standard attribute's value as an Integer.
pub(crate) fn attr_int(attrs: &Attributes, t: kmipd_ttlv::Tag) -> Option<i32> {
    match attrs.get(t) {
        Some(Value::Integer(v)) => Some(*v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::new_uid;

    /// Identifiers are version 7 UUIDs in their hyphenated text form, and each one sorts after
    /// the one made before it (as text, which is how both stores order their keys), even many
    /// within one millisecond.
    #[test]
    fn new_uids_are_uuid_v7_and_sort_in_creation_order() {
        let uids: Vec<String> = (0..10_000).map(|_| new_uid()).collect();
        for pair in uids.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}: not in creation order");
        }
        for u in [&uids[0], &uids[9_999]] {
            let parsed = uuid::Uuid::parse_str(u).unwrap();
            assert_eq!(parsed.get_version_num(), 7, "{u}");
            assert_eq!(parsed.hyphenated().to_string(), *u);
        }
    }
}
