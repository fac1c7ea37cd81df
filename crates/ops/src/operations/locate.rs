//! Locate (KMIP 1.4 §4.9, 2.1 §6.1.28): the objects that match every attribute of the request.
//!
//! **Matching.** Each attribute of the request (1.x `Attribute` items, their Attribute Index
//! ignored as the spec requires; 2.x one `Attributes` structure) must be matched by one
//! instance of the object's attribute of the same name (custom `x-` and 2.x vendor spellings
//! are the same attribute):
//! - plain values are equal (Date-Time and Date-Time Extended compared in seconds);
//! - Unique Identifier compares with the object's identifier;
//! - Cryptographic Usage Mask (and the other masks): every bit asked is set in the object's;
//! - structures match when every field given is present with a matching value (Link with only
//!   a Linked Object Identifier matches any Link Type);
//! - a date attribute given twice is a range, both ends included; a date at its largest
//!   possible value is no criterion at all;
//! - an attribute name this server does not know matches nothing (a misspelt name must not
//!   return every key).
//!
//! **Storage Status Mask**: without it, only on-line objects (not destroyed, not archived);
//! destroyed objects (State Destroyed or Destroyed Compromised) only when the Destroyed
//! Storage bit is set, archived ones (with an Archive Date) only with the Archival bit.
//! **Object Group Member** (KMIP 1.4 §4.9). Group Member Fresh keeps only objects whose Fresh
//! is true, oldest first: the group is handed out in the order it was filled (TC-152: key 1,
//! then, once a Get made it no longer fresh, key 2). When no fresh object matches and the
//! request asks only for the reserved group `default` ("“default” is a reserved Text String
//! for Object Group", 1.4 §3.33), the server generates one on the fly ("the server MAY choose
//! to generate a new object on-the-fly, based on server policy"): an AES-256 key for Encrypt
//! and Decrypt in the group `default`, owned by the caller, made as Create makes one (the
//! server policy applies; a caller whose role may not Create gets none), whose identifier is
//! the answer (TC-151). A group a client fills itself is never extended (TC-152: the third
//! Locate finds nothing). Group Member Default answers the group's *default object* first,
//! which by kmipd's policy is the member handed out least: the oldest member not yet served
//! (Fresh), then, once every member was served, the oldest member (TC-153 hands out keys 1,
//! 2, 3 and then key 1 again); the other members follow in the order the group was filled.
//! Only objects the caller may see are ever considered (the owner, an administrator, or an
//! identity granted Locate on the object: `access`).
//!
//! **Order** (except with an Object Group Member): newest first (descending creation order, as 2.x requires and the test cases
//! expect), stable across calls, so that Offset Items pages are consistent. Offset Items are
//! skipped, then at most Maximum Items returned. Located Items (the count of all matches) is
//! answered when the request has Offset Items and the version defines it (1.3+): the spec lets
//! a server add it without Offset Items too, but the test cases (TC-OFFSET: Maximum Items alone
//! answers without it, with Offset Items it comes back) show it only for paging clients.
//!
//! **ID Placeholder**: the identifier when exactly one is returned; emptied otherwise
//! (`Ctx::empty_placeholder`), so that a batched Get without identifier fails (Item Not Found)
//! rather than picks an arbitrary object.

use kmipd_proto::attributes::{AttrName, Attribute, date_seconds, name_value};
use kmipd_proto::build;
use kmipd_proto::enums::{
    cryptographic_algorithm, cryptographic_usage_mask as usage, object_group_member_option,
    object_type, state, storage_status_mask as ssm,
};
use kmipd_proto::reader::StructReader;
use kmipd_proto::spec::Version;
use kmipd_proto::tag;
use kmipd_store::{Filter, ManagedObject, Query};
use kmipd_ttlv::{Ttlv, Value};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::object::{current_state, new_object, uid_item, uid_value};
use crate::objects::{keys, template};

/// The largest Date-Time value: "equivalent to an undefined attribute".
const DATE_MAX: i64 = i64::MAX;

/// One criterion of the request.
enum Criterion {
    /// An instance of `name` matches `value`.
    Value(AttrName, Value),
    /// An instance of the date attribute `name` lies in `[from, to]`.
    Range(AttrName, i64, i64),
}

/// Handles Locate.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let maximum = r.int(tag::MAXIMUM_ITEMS)?;
    let offset = r.int(tag::OFFSET_ITEMS)?;
    let storage = match r.optional(tag::STORAGE_STATUS_MASK) {
        Some(item) => match item.value {
            Value::Integer(m) => {
                u32::try_from(m).map_err(|_| Error::InvalidField("Storage Status Mask"))?
            }
            _ => return Err(Error::InvalidField("Storage Status Mask")),
        },
        None => ssm::ON_LINE_STORAGE,
    };
    let group_member = r.enumeration(tag::OBJECT_GROUP_MEMBER)?;
    let requested = request_attributes(ctx, &r)?;
    let criteria = criteria(requested);

    let mut objects = ctx.tx.find(&index_query(&criteria))?;
    let fresh_only = group_member == Some(object_group_member_option::GROUP_MEMBER_FRESH);
    let default_member = group_member == Some(object_group_member_option::GROUP_MEMBER_DEFAULT);
    if fresh_only || default_member {
        // The order the group was filled in; for the default object, unserved members first.
        objects.sort_by_key(|o| (default_member && !is_fresh(o), o.sequence));
    } else {
        objects.sort_by_key(|o| std::cmp::Reverse(o.sequence));
    }
    let mut matches: Vec<String> = objects
        .iter()
        .filter(|o| ctx.may(o))
        .filter(|o| stored_as(o, storage))
        .filter(|o| !fresh_only || is_fresh(o))
        .filter(|o| criteria.iter().all(|c| c.matches(o)))
        .map(|o| o.uid.clone())
        .collect();
    if fresh_only && matches.is_empty() && asks_only_for_the_default_group(&criteria) {
        matches.push(generate_default_group_key(ctx)?);
    }
    let located = matches.len();
    let skip =
        usize::try_from(offset.unwrap_or(0)).map_err(|_| Error::InvalidField("Offset Items"))?;
    let take = match maximum {
        Some(m) => usize::try_from(m).map_err(|_| Error::InvalidField("Maximum Items"))?,
        None => usize::MAX,
    };
    let found: Vec<String> = matches.into_iter().skip(skip).take(take).collect();

    match found.as_slice() {
        [one] => ctx.set_placeholder(one),
        _ => ctx.empty_placeholder(),
    }
    let mut items = Vec::with_capacity(found.len().saturating_add(1));
    if offset.is_some() && ctx.spec >= Version::V1_3 {
        items.push(build::int(
            tag::LOCATED_ITEMS,
            i32::try_from(located).unwrap_or(i32::MAX),
        ));
    }
    items.extend(found.iter().map(uid_item));
    Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, items)))
}

/// True when the object has not yet been served to a client.
fn is_fresh(o: &ManagedObject) -> bool {
    o.attributes.get(tag::FRESH) == Some(&Value::Boolean(true))
}

/// The reserved Object Group (KMIP 1.4 §3.33, 2.1 §4.41).
pub(crate) const DEFAULT_GROUP: &str = "default";

/// True when the only criterion is Object Group `default`.
fn asks_only_for_the_default_group(criteria: &[Criterion]) -> bool {
    matches!(
        criteria,
        [Criterion::Value(AttrName::Std(t), Value::TextString(g))]
            if *t == tag::OBJECT_GROUP && g == DEFAULT_GROUP
    )
}

/// A new member of the `default` group, generated on the fly for Group Member Fresh (see the
/// module doc); its identifier. Made as Create makes a key: the caller's role must permit
/// Create, and the server policy applies.
fn generate_default_group_key(ctx: &mut Ctx<'_>) -> Result<String> {
    crate::access::check_operation(ctx.principal, kmipd_proto::enums::operation::CREATE)?;
    let mut attrs = kmipd_proto::attributes::Attributes::new();
    attrs.set(
        tag::CRYPTOGRAPHIC_ALGORITHM,
        Value::Enumeration(cryptographic_algorithm::AES),
    );
    attrs.set(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(256));
    attrs.set(
        tag::CRYPTOGRAPHIC_USAGE_MASK,
        Value::Integer(i32::try_from(usage::ENCRYPT | usage::DECRYPT).unwrap_or_default()),
    );
    attrs.set(
        tag::OBJECT_GROUP,
        Value::TextString(DEFAULT_GROUP.to_owned()),
    );
    let (object, _) = keys::new_symmetric(cryptographic_algorithm::AES, Some(256))?;
    template::server_defaults(&mut attrs, object_type::SYMMETRIC_KEY, &object, true);
    let mut obj = new_object(ctx, object_type::SYMMETRIC_KEY, Some(object), attrs)?;
    template::finish(ctx, &mut obj)?;
    let uid = obj.uid.clone();
    ctx.tx.put(obj);
    Ok(uid)
}

/// The attributes of the request, names canonical.
fn request_attributes(ctx: &Ctx<'_>, r: &StructReader<'_>) -> Result<Vec<Attribute>> {
    let mut out = Vec::new();
    if ctx.v2() {
        for group in r.repeated(tag::ATTRIBUTES) {
            for child in StructReader::any(group)?.items() {
                out.push(Attribute::from_v2(child)?);
            }
        }
    } else {
        for item in r.repeated(tag::ATTRIBUTE) {
            out.push(Attribute::from_v1(item)?.0);
        }
    }
    for a in &mut out {
        a.name = a.name.canonical();
        // 2.x: a Unique Identifier may be given in its Enumeration or Integer form.
        if a.name == AttrName::Std(tag::UNIQUE_IDENTIFIER)
            && !matches!(a.value, Value::TextString(_))
        {
            let item = Ttlv::new(tag::UNIQUE_IDENTIFIER, a.value.clone());
            a.value = Value::TextString(uid_value(ctx, &item)?);
        }
    }
    Ok(out)
}

/// Groups date attributes given twice into ranges; drops dates at their largest value.
fn criteria(attrs_in: Vec<Attribute>) -> Vec<Criterion> {
    let mut out: Vec<Criterion> = Vec::new();
    let mut dates: Vec<(AttrName, Vec<i64>)> = Vec::new();
    for a in attrs_in {
        match date_seconds(&a.value) {
            Some(d) => {
                if d == DATE_MAX || d == i64::MAX.div_euclid(1_000_000) {
                    continue;
                }
                match dates.iter_mut().find(|(n, _)| *n == a.name) {
                    Some((_, v)) => v.push(d),
                    None => dates.push((a.name, vec![d])),
                }
            }
            None => out.push(Criterion::Value(a.name, a.value)),
        }
    }
    for (name, values) in dates {
        match values.as_slice() {
            [from, to] => out.push(Criterion::Range(name, *from.min(to), *from.max(to))),
            _ => out.extend(
                values
                    .into_iter()
                    .map(|d| Criterion::Value(name.clone(), Value::DateTime(d))),
            ),
        }
    }
    out
}

/// The criteria the store's indexes can narrow by (a necessary condition of each; the full
/// matching below still decides): Name by its Name Value, plain values of an attribute
/// (not masks, structures, the identifier, or State, which reads change with time) by
/// equality, dates by range.
fn index_query(criteria: &[Criterion]) -> Query {
    let mut filters = Vec::new();
    for c in criteria {
        match c {
            Criterion::Value(AttrName::Std(t), v @ Value::Structure(_)) if *t == tag::NAME => {
                if let Some(n) = name_value(v) {
                    filters.push(Filter::Name(n.to_owned()));
                }
            }
            Criterion::Value(name, Value::DateTime(d)) => {
                filters.push(Filter::Date(name.clone(), *d, *d));
            }
            Criterion::Value(name, v)
                if !is_mask(name)
                    && *name != AttrName::Std(tag::UNIQUE_IDENTIFIER)
                    && *name != AttrName::Std(tag::STATE)
                    && !matches!(v, Value::Structure(_) | Value::DateTimeExtended(_)) =>
            {
                filters.push(Filter::Attr(name.clone(), v.clone()));
            }
            Criterion::Value(..) => {}
            Criterion::Range(name, from, to) => {
                filters.push(Filter::Date(name.clone(), *from, *to));
            }
        }
    }
    Query::new(filters)
}

/// True when the object is in one of the storages the mask asks for.
fn stored_as(o: &ManagedObject, mask: u32) -> bool {
    let destroyed = matches!(
        current_state(o),
        Some(state::DESTROYED | state::DESTROYED_COMPROMISED)
    );
    let archived = o.attributes.get(tag::ARCHIVE_DATE).is_some();
    if destroyed {
        mask & ssm::DESTROYED_STORAGE != 0
    } else if archived {
        mask & ssm::ARCHIVAL_STORAGE != 0
    } else {
        mask & ssm::ON_LINE_STORAGE != 0
    }
}

impl Criterion {
    fn matches(&self, o: &ManagedObject) -> bool {
        match self {
            Criterion::Value(name, wanted) => {
                if *name == AttrName::Std(tag::UNIQUE_IDENTIFIER) {
                    return matches!(wanted, Value::TextString(u) if *u == o.uid);
                }
                let mask = is_mask(name);
                o.attributes
                    .iter()
                    .filter(|a| a.name.same_attribute(name))
                    .any(|a| {
                        if mask {
                            mask_covers(&a.value, wanted)
                        } else {
                            value_matches(&a.value, wanted)
                        }
                    })
            }
            Criterion::Range(name, from, to) => o.attributes.has_date_in(name, *from, *to),
        }
    }
}

/// Attributes compared as bit masks.
fn is_mask(name: &AttrName) -> bool {
    [
        AttrName::Std(tag::CRYPTOGRAPHIC_USAGE_MASK),
        AttrName::Std(tag::PROTECTION_STORAGE_MASK),
    ]
    .contains(name)
}

/// Every bit of `wanted` is set in `have`.
fn mask_covers(have: &Value, wanted: &Value) -> bool {
    match (have, wanted) {
        (Value::Integer(h), Value::Integer(w)) => h & w == *w,
        _ => false,
    }
}

/// `have` matches `wanted`: equal, or for structures every field of `wanted` matches a field
/// of `have` with the same tag.
fn value_matches(have: &Value, wanted: &Value) -> bool {
    match (have, wanted) {
        (Value::Structure(h), Value::Structure(w)) => w.iter().all(|wf| {
            h.iter()
                .filter(|hf| hf.tag == wf.tag)
                .any(|hf| value_matches(&hf.value, &wf.value))
        }),
        (Value::DateTime(_) | Value::DateTimeExtended(_), _) => {
            date_seconds(have).is_some() && date_seconds(have) == date_seconds(wanted)
        }
        _ => have == wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::testing::name_value;
    use crate::attrs::testing::*;
    use crate::engine::Principal;
    use kmipd_proto::message::ProtocolVersion;
    use kmipd_proto::reader;

    fn uids(out: &[Ttlv]) -> Vec<String> {
        out.iter()
            .filter(|i| i.tag == tag::UNIQUE_IDENTIFIER)
            .map(|i| reader::as_text(i).unwrap().to_owned())
            .collect()
    }

    fn objects() -> Vec<ManagedObject> {
        let mut destroyed = key("k4", "a", 4, Some("n4"));
        destroyed
            .attributes
            .set(tag::STATE, Value::Enumeration(state::DESTROYED));
        let mut dated = key("k3", "a", 3, None);
        dated
            .attributes
            .set(tag::PROTECT_STOP_DATE, Value::DateTime(1000));
        vec![
            key("k1", "a", 1, Some("n1")),
            key("k2", "a", 2, Some("n2")),
            dated,
            destroyed,
            key("other", "b", 5, Some("n5")),
        ]
    }

    #[test]
    fn newest_first_visible_only_online_only_and_paged() {
        let s = store(objects());
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V1_4, |ctx| {
            let out = items(handle(ctx, &payload(vec![])).unwrap());
            assert_eq!(uids(&out), ["k3", "k2", "k1"]);
            assert!(out.iter().all(|i| i.tag != tag::LOCATED_ITEMS));
            assert_eq!(ctx.id_placeholder.as_deref(), Some(""), "emptied");
            let out = items(
                handle(
                    ctx,
                    &payload(vec![
                        build::int(tag::MAXIMUM_ITEMS, 1),
                        build::int(tag::OFFSET_ITEMS, 1),
                    ]),
                )
                .unwrap(),
            );
            assert_eq!(out.first(), Some(&build::int(tag::LOCATED_ITEMS, 3)));
            assert_eq!(uids(&out), ["k2"]);
            assert_eq!(ctx.id_placeholder.as_deref(), Some("k2"));
            // Maximum Items alone: the first page, without the count.
            let out =
                items(handle(ctx, &payload(vec![build::int(tag::MAXIMUM_ITEMS, 1)])).unwrap());
            assert_eq!(uids(&out), ["k3"]);
            assert!(out.iter().all(|i| i.tag != tag::LOCATED_ITEMS));
        });
        // 1.0 does not define Located Items; libkmip sends Offset Items anyway.
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V1_0, |ctx| {
            let out = items(handle(ctx, &payload(vec![build::int(tag::OFFSET_ITEMS, 0)])).unwrap());
            assert_eq!(uids(&out), ["k3", "k2", "k1"]);
            assert!(out.iter().all(|i| i.tag != tag::LOCATED_ITEMS));
        });
        with_ctx(
            &s,
            &Principal::admin("root"),
            ProtocolVersion::V2_1,
            |ctx| {
                let all = build::int(tag::STORAGE_STATUS_MASK, 1 | 4);
                let out = items(
                    handle(
                        ctx,
                        &payload(vec![all, build::structure(tag::ATTRIBUTES, vec![])]),
                    )
                    .unwrap(),
                );
                assert_eq!(uids(&out), ["other", "k4", "k3", "k2", "k1"]);
            },
        );
    }

    #[test]
    fn group_member_default_answers_the_oldest_unserved_member_then_the_oldest() {
        let default_member = || {
            payload(vec![
                build::int(tag::MAXIMUM_ITEMS, 1),
                build::enumeration(
                    tag::OBJECT_GROUP_MEMBER,
                    object_group_member_option::GROUP_MEMBER_DEFAULT,
                ),
            ])
        };
        let mut objs = objects();
        for (o, fresh) in objs.iter_mut().zip([false, true, true]) {
            o.attributes.set(tag::FRESH, Value::Boolean(fresh));
        }
        let s = store(objs);
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V1_4, |ctx| {
            let out = items(handle(ctx, &default_member()).unwrap());
            assert_eq!(uids(&out), ["k2"], "the oldest member not yet served");
        });
        let mut objs = objects();
        for o in &mut objs {
            o.attributes.set(tag::FRESH, Value::Boolean(false));
        }
        let s = store(objs);
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V1_4, |ctx| {
            let out = items(handle(ctx, &default_member()).unwrap());
            assert_eq!(uids(&out), ["k1"], "every member served: the oldest");
        });
    }

    #[test]
    fn fresh_from_the_default_group_is_generated_once_and_a_client_group_is_never_extended() {
        let fresh_from = |group: &str| {
            payload(vec![
                build::int(tag::MAXIMUM_ITEMS, 1),
                build::enumeration(
                    tag::OBJECT_GROUP_MEMBER,
                    object_group_member_option::GROUP_MEMBER_FRESH,
                ),
                build::structure(
                    tag::ATTRIBUTE,
                    vec![
                        build::text(tag::ATTRIBUTE_NAME, "Object Group"),
                        build::text(tag::ATTRIBUTE_VALUE, group),
                    ],
                ),
            ])
        };
        let s = store(vec![]);
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V1_4, |ctx| {
            assert!(uids(&items(handle(ctx, &fresh_from("mine")).unwrap())).is_empty());
            let first = uids(&items(handle(ctx, &fresh_from(DEFAULT_GROUP)).unwrap()));
            assert_eq!(first.len(), 1);
            assert_eq!(ctx.id_placeholder.as_deref(), Some(first[0].as_str()));
            let made = ctx.tx.get(&first[0]).unwrap().unwrap();
            assert_eq!(made.owner, "a");
            assert_eq!(
                made.attributes.get(tag::OBJECT_GROUP),
                Some(&Value::TextString(DEFAULT_GROUP.into()))
            );
            assert_eq!(made.attributes.get(tag::FRESH), Some(&Value::Boolean(true)));
            assert_eq!(
                made.attributes.get(tag::CRYPTOGRAPHIC_LENGTH),
                Some(&Value::Integer(256))
            );
            // Still fresh (nobody got it): found again, not generated again.
            let again = uids(&items(handle(ctx, &fresh_from(DEFAULT_GROUP)).unwrap()));
            assert_eq!(again, first);
        });
    }

    #[test]
    fn group_member_fresh_hands_out_the_oldest_fresh_object_first() {
        let mut objs = objects();
        for (o, fresh) in objs.iter_mut().zip([false, true, true]) {
            o.attributes.set(tag::FRESH, Value::Boolean(fresh));
        }
        let s = store(objs);
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V1_4, |ctx| {
            let out = items(
                handle(
                    ctx,
                    &payload(vec![
                        build::int(tag::MAXIMUM_ITEMS, 1),
                        build::enumeration(
                            tag::OBJECT_GROUP_MEMBER,
                            object_group_member_option::GROUP_MEMBER_FRESH,
                        ),
                    ]),
                )
                .unwrap(),
            );
            assert_eq!(uids(&out), ["k2"]);
        });
    }

    #[test]
    fn filters_names_masks_dates_and_unknown_names() {
        let s = store(objects());
        with_ctx(&s, &Principal::new("a"), ProtocolVersion::V1_4, |ctx| {
            let by = |ctx: &mut Ctx<'_>, attrs: Vec<Ttlv>| {
                uids(&items(handle(ctx, &payload(attrs)).unwrap()))
            };
            assert_eq!(
                by(ctx, vec![v1_attr("Name", None, name_value("n2"))]),
                ["k2"]
            );
            assert_eq!(ctx.id_placeholder.as_deref(), Some("k2"));
            assert!(by(ctx, vec![v1_attr("Name", None, name_value("n5"))]).is_empty());
            assert_eq!(
                by(
                    ctx,
                    vec![v1_attr("Cryptographic Usage Mask", None, Value::Integer(4))]
                )
                .len(),
                3
            );
            assert!(
                by(
                    ctx,
                    vec![v1_attr(
                        "Cryptographic Usage Mask",
                        None,
                        Value::Integer(1 | 4)
                    )]
                )
                .is_empty()
            );
            assert!(
                by(
                    ctx,
                    vec![v1_attr("x-Nmae", None, Value::TextString("n1".into()))]
                )
                .is_empty()
            );
            assert_eq!(
                by(
                    ctx,
                    vec![
                        v1_attr("Protect Stop Date", None, Value::DateTime(500)),
                        v1_attr("Protect Stop Date", None, Value::DateTime(1500)),
                    ]
                ),
                ["k3"]
            );
            assert!(
                by(
                    ctx,
                    vec![
                        v1_attr("Protect Stop Date", None, Value::DateTime(1001)),
                        v1_attr("Protect Stop Date", None, Value::DateTime(1500)),
                    ]
                )
                .is_empty()
            );
            assert_eq!(
                by(
                    ctx,
                    vec![v1_attr(
                        "Unique Identifier",
                        None,
                        Value::TextString("k1".into())
                    )]
                ),
                ["k1"]
            );
            assert!(
                by(
                    ctx,
                    vec![v1_attr(
                        "Unique Identifier",
                        None,
                        Value::TextString("k4".into())
                    )]
                )
                .is_empty()
            );
        });
    }

    #[test]
    fn masks_need_every_bit_and_structures_match_partially() {
        assert!(mask_covers(
            &Value::Integer(0b1100),
            &Value::Integer(0b0100)
        ));
        assert!(!mask_covers(
            &Value::Integer(0b1000),
            &Value::Integer(0b0100)
        ));
        let link = Value::Structure(vec![
            build::enumeration(tag::LINK_TYPE, 1),
            build::text(tag::LINKED_OBJECT_IDENTIFIER, "u1"),
        ]);
        let only_id = Value::Structure(vec![build::text(tag::LINKED_OBJECT_IDENTIFIER, "u1")]);
        let other = Value::Structure(vec![build::text(tag::LINKED_OBJECT_IDENTIFIER, "u2")]);
        assert!(value_matches(&link, &only_id));
        assert!(!value_matches(&link, &other));
        assert!(value_matches(
            &Value::DateTime(5),
            &Value::DateTimeExtended(5_000_000)
        ));
    }
}
