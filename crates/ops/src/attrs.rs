//! The rules a client meets when it reads or changes attributes (KMIP 1.4 §3, 2.1 §4: each
//! attribute's "Attribute Rules" table), shared by Get Attributes, Get Attribute List, Add /
//! Modify / Delete / Set Attribute and Locate.
//!
//! - **Who may change what.** Only the attributes whose rules table says "Modifiable by client:
//!   Yes" may be added, modified or set by a client; some only in a given state (Activation
//!   Date while Pre-Active; Deactivation Date while Pre-Active or Active; Process Start and
//!   Protect Stop Date also only before the date is reached). Everything else (Unique
//!   Identifier, State, Cryptographic Algorithm/Length, Usage Mask, dates the server sets,
//!   Certificate Length, ...) is read-only: Attribute Read Only (2.x) / Permission Denied (1.x),
//!   and a state rule broken is Wrong Key Lifecycle State (2.x) / Permission Denied (1.x), as
//!   the SKLC/AKLC test cases expect. Only "Deletable by client: Yes" attributes may be deleted.
//! - **Custom attributes.** `x-` names (2.x: any vendor but `y`) belong to clients: added,
//!   modified, deleted freely, multi-instance. `y-` names are the server's: read-only.
//! - **One spelling for custom names.** A 1.x `x-foo` and a 2.x vendor attribute (`x`, `foo`)
//!   are the same attribute; [`AttrName::canonical`] turns both into the 1.x spelling and
//!   every lookup here compares canonical names ([`AttrName::same_attribute`]), whichever
//!   form the object was stored with.
//! - **Versions.** An attribute is visible to a request only when its version defines it as an
//!   attribute ([`visible`]): the tables' since/removed versions, plus Key Format Type and Opaque
//!   Data Type, which 1.x has as fields but not as attributes.
//! - **Name** is unique ("within a given key management server"): one rule for every path,
//!   [`check_names_free`] (2.x only, among the objects the caller may see, destroyed ones
//!   left out), with the OASIS case behind each part.

use kmipd_proto::attributes::{AttrName, Attribute, Attributes, date_seconds, name_value};
use kmipd_proto::build;
use kmipd_proto::enums::state;
use kmipd_proto::reader::StructReader;
use kmipd_proto::spec::Version;
use kmipd_proto::tag;
use kmipd_store::{Filter, ManagedObject, Query};
use kmipd_ttlv::{Tag, Ttlv, Value};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::object::{apply_dates, current_state, touch};

/// When a client may add or modify an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Never: the attribute is read-only for clients.
    Never,
    /// In any state.
    Always,
    /// Only while the object is Pre-Active.
    PreActive,
    /// Only while the object is Pre-Active or Active.
    PreActiveOrActive,
    /// Only while Pre-Active or Active and before the current date value is reached.
    PreActiveOrActiveBeforeDate,
}

/// A client's rights on one attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    /// Several instances are permitted.
    pub(crate) multi: bool,
    /// When a client may add or modify it.
    pub(crate) change: Change,
    /// A client may delete it.
    pub(crate) delete: bool,
}

const READ_ONLY: Rule = Rule {
    multi: false,
    change: Change::Never,
    delete: false,
};
const CLIENT_MULTI: Rule = Rule {
    multi: true,
    change: Change::Always,
    delete: true,
};
const CLIENT_SINGLE: Rule = Rule {
    multi: false,
    change: Change::Always,
    delete: true,
};

/// The client's rights on an attribute (the spec's rules tables, the same in 1.x and 2.x for
/// the attributes both define).
pub(crate) fn rule(name: &AttrName) -> Rule {
    let t = match name {
        AttrName::Custom { .. } => {
            return if name.v1_name().starts_with("y-") {
                Rule {
                    multi: true,
                    ..READ_ONLY
                }
            } else {
                CLIENT_MULTI
            };
        }
        AttrName::Std(t) => *t,
    };
    if [
        tag::NAME,
        tag::CRYPTOGRAPHIC_PARAMETERS,
        tag::OBJECT_GROUP,
        tag::APPLICATION_SPECIFIC_INFORMATION,
        tag::ALTERNATIVE_NAME,
        tag::KEY_VALUE_LOCATION,
        tag::LINK,
    ]
    .contains(&t)
    {
        return CLIENT_MULTI;
    }
    if [
        tag::USAGE_LIMITS,
        tag::CONTACT_INFORMATION,
        tag::DESCRIPTION,
        tag::COMMENT,
        tag::PROTECTION_LEVEL,
        tag::PROTECTION_PERIOD,
        tag::QUANTUM_SAFE,
        tag::ROTATE_NAME,
    ]
    .contains(&t)
    {
        return CLIENT_SINGLE;
    }
    let single = |change| Rule {
        multi: false,
        change,
        delete: false,
    };
    if t == tag::SENSITIVE || t == tag::EXTRACTABLE {
        single(Change::Always)
    } else if t == tag::ACTIVATION_DATE {
        single(Change::PreActive)
    } else if t == tag::DEACTIVATION_DATE {
        single(Change::PreActiveOrActive)
    } else if t == tag::PROCESS_START_DATE || t == tag::PROTECT_STOP_DATE {
        single(Change::PreActiveOrActiveBeforeDate)
    } else if [
        tag::DIGEST,
        tag::CERTIFICATE,
        tag::DIGITAL_SIGNATURE_ALGORITHM,
    ]
    .contains(&t)
    {
        Rule {
            multi: true,
            ..READ_ONLY
        }
    } else {
        READ_ONLY
    }
}

/// Checks that a client may add or modify `name` on `obj` now (`current` is the instance
/// being replaced, for the date rules).
pub(crate) fn check_change(
    ctx: &Ctx<'_>,
    obj: &ManagedObject,
    name: &AttrName,
    current: Option<&Value>,
) -> Result<()> {
    let st = current_state(obj);
    if matches!(st, Some(state::DESTROYED | state::DESTROYED_COMPROMISED)) {
        return Err(Error::WrongState("the object is destroyed"));
    }
    let pre_or_active = matches!(st, Some(state::PRE_ACTIVE | state::ACTIVE));
    match rule(name).change {
        Change::Never => Err(Error::AttributeReadOnly("not modifiable by a client")),
        Change::Always => Ok(()),
        Change::PreActive if st == Some(state::PRE_ACTIVE) => Ok(()),
        Change::PreActive => Err(Error::WrongState(
            "the attribute may change only while Pre-Active",
        )),
        Change::PreActiveOrActive if pre_or_active => Ok(()),
        Change::PreActiveOrActive => Err(Error::WrongState(
            "the attribute may change only while Pre-Active or Active",
        )),
        Change::PreActiveOrActiveBeforeDate => {
            let reached = current.and_then(date_seconds).is_some_and(|d| d <= ctx.now);
            if pre_or_active && !reached {
                Ok(())
            } else {
                Err(Error::WrongState(
                    "the date may change only before it is reached",
                ))
            }
        }
    }
}

/// Checks that a client may delete `name` from `obj`.
pub(crate) fn check_delete(obj: &ManagedObject, name: &AttrName) -> Result<()> {
    if matches!(
        current_state(obj),
        Some(state::DESTROYED | state::DESTROYED_COMPROMISED)
    ) {
        return Err(Error::WrongState("the object is destroyed"));
    }
    if rule(name).delete {
        Ok(())
    } else {
        Err(Error::AttributeReadOnly("not deletable by a client"))
    }
}

/// True when the request's version defines this attribute.
pub(crate) fn visible(ctx: &Ctx<'_>, name: &AttrName) -> bool {
    visible_in(ctx.spec, name)
}

/// True when `version` defines this attribute.
pub(crate) fn visible_in(version: Version, name: &AttrName) -> bool {
    match name {
        AttrName::Std(t) => {
            let v2_only = [tag::KEY_FORMAT_TYPE, tag::OPAQUE_DATA_TYPE].contains(t);
            name.defined_in(version) && !(v2_only && version < Version::V2_0)
        }
        AttrName::Custom { .. } => true,
    }
}

/// Refuses a name that is not an attribute this version defines (1.x: an unknown name that is
/// not a custom `x-`/`y-` one).
pub(crate) fn check_known(ctx: &Ctx<'_>, name: &AttrName) -> Result<()> {
    match name {
        AttrName::Std(_) if visible(ctx, name) => Ok(()),
        AttrName::Std(_) => Err(Error::InvalidAttribute(
            "not an attribute of this protocol version",
        )),
        AttrName::Custom {
            vendor: Some(_), ..
        } => Ok(()),
        AttrName::Custom { vendor: None, name } => {
            if name.starts_with("x-") || name.starts_with("y-") || ctx.v2() {
                Ok(())
            } else {
                Err(Error::InvalidAttribute("unknown attribute name"))
            }
        }
    }
}

/// Positions in `attrs.0` of the instances of `name`, in order.
pub(crate) fn positions(attrs: &Attributes, name: &AttrName) -> Vec<usize> {
    attrs
        .0
        .iter()
        .enumerate()
        .filter(|(_, a)| a.name.same_attribute(name))
        .map(|(i, _)| i)
        .collect()
}

/// Which of the instances at `positions` (from [`positions`]) has `value`: its index among them,
/// or Attribute Instance Not Found ([`Error::IndexOutOfBounds`]).
pub(crate) fn instance_with_value(
    attrs: &Attributes,
    positions: &[usize],
    value: &Value,
) -> Result<usize> {
    positions
        .iter()
        .position(|p| attrs.0.get(*p).is_some_and(|a| a.value == *value))
        .ok_or(Error::IndexOutOfBounds)
}

/// The 1.x Attribute structure of an instance for `version` (Attribute Index written only when
/// not 0; fields of a structured value that `version` lacks left out).
pub(crate) fn v1_item(version: Version, attr: &Attribute, index: usize) -> Ttlv {
    let index = if index == 0 {
        None
    } else {
        i32::try_from(index).ok()
    };
    for_version(version, attr).to_v1(index)
}

/// The attribute list of an answer or message (Get Attributes, Put, Notify) in `version`'s
/// form: one 2.x Attributes structure (present even when empty), or the 1.x Attribute
/// structures, each with its per-name index ([`v1_item`]).
pub(crate) fn listed<'a>(
    version: Version,
    attributes: impl IntoIterator<Item = (usize, &'a Attribute)>,
) -> Vec<Ttlv> {
    let attributes = attributes.into_iter();
    if version >= Version::V2_0 {
        vec![build::structure(
            tag::ATTRIBUTES,
            attributes
                .map(|(_, a)| for_version(version, a).to_v2())
                .collect(),
        )]
    } else {
        attributes.map(|(i, a)| v1_item(version, a, i)).collect()
    }
}

/// The attribute as `version` defines it: the fields of a structured value that the version
/// lacks are left out (the Digest's Key Format Type is a 1.1 addition; tags newer than the
/// version in any structure).
pub(crate) fn for_version(version: Version, attr: &Attribute) -> Attribute {
    let Value::Structure(items) = &attr.value else {
        return attr.clone();
    };
    let digest_v10 = attr.name == AttrName::Std(tag::DIGEST) && version < Version::V1_1;
    let kept = items
        .iter()
        .filter(|i| !(digest_v10 && i.tag == tag::KEY_FORMAT_TYPE))
        .filter(|i| {
            kmipd_proto::spec::tag_by_value(i.tag.value()).is_none_or(|d| d.defined_in(version))
        })
        .cloned()
        .collect();
    Attribute {
        name: attr.name.clone(),
        value: Value::Structure(kept),
    }
}

/// Reads a 2.x Attribute Reference: an Enumeration naming a tag, or a structure with Vendor
/// Identification and Attribute Name. Without a vendor (Vendor Identification absent or
/// empty) the name is read as a 1.x Attribute Name: a standard attribute's name ("Name", the
/// form PyKMIP's `delete_attribute` sends at 2.0) names that attribute, anything else a custom
/// one; with a vendor it is that vendor's attribute.
pub(crate) fn read_reference(item: &Ttlv) -> Result<AttrName> {
    match &item.value {
        Value::Enumeration(v) => Tag::new(*v)
            .map(AttrName::Std)
            .map_err(|_| Error::InvalidField("Attribute Reference")),
        Value::Structure(_) => {
            let r = StructReader::any(item)?;
            let vendor = r
                .text(tag::VENDOR_IDENTIFICATION)?
                .filter(|v| !v.is_empty());
            let name = r.req_text(tag::ATTRIBUTE_NAME)?;
            Ok(match vendor {
                None => AttrName::from_v1_name(name).canonical(),
                Some(v) => AttrName::Custom {
                    vendor: Some(v.to_owned()),
                    name: name.to_owned(),
                }
                .canonical(),
            })
        }
        _ => Err(Error::InvalidField("Attribute Reference")),
    }
}

/// The 2.x Attribute Reference item for an attribute.
pub(crate) fn reference_item(name: &AttrName) -> Ttlv {
    match name {
        AttrName::Std(t) => build::enumeration(tag::ATTRIBUTE_REFERENCE, t.value()),
        AttrName::Custom { .. } => {
            let full = name.v1_name();
            let (vendor, short) = match full.split_once('-') {
                Some((v, n)) if !v.is_empty() && !n.is_empty() => (v.to_owned(), n.to_owned()),
                _ => (String::new(), full.clone()),
            };
            build::structure(
                tag::ATTRIBUTE_REFERENCE,
                vec![
                    build::text(tag::VENDOR_IDENTIFICATION, vendor),
                    build::text(tag::ATTRIBUTE_NAME, short),
                ],
            )
        }
    }
}

/// Reads the single attribute inside a 2.x New Attribute / Current Attribute structure.
pub(crate) fn read_v2_wrapped(item: &Ttlv) -> Result<Attribute> {
    let r = StructReader::any(item)?;
    let mut children = r.items().iter();
    let (Some(child), None) = (children.next(), children.next()) else {
        return Err(Error::InvalidField("exactly one attribute expected"));
    };
    let mut a = Attribute::from_v2(child)?;
    a.name = a.name.canonical();
    Ok(a)
}

/// Light validation of a value a client sets: the item type of the well-known attributes,
/// and a non-empty Name.
pub(crate) fn check_value(attr: &Attribute) -> Result<()> {
    let AttrName::Std(t) = attr.name else {
        return Ok(());
    };
    let ok = match &attr.value {
        Value::Structure(items) => {
            if t == tag::NAME {
                name_value(&attr.value).is_some_and(|n| !n.is_empty())
            } else if t == tag::LINK {
                items.iter().any(|i| i.tag == tag::LINKED_OBJECT_IDENTIFIER)
            } else {
                [
                    tag::CRYPTOGRAPHIC_PARAMETERS,
                    tag::APPLICATION_SPECIFIC_INFORMATION,
                    tag::ALTERNATIVE_NAME,
                    tag::KEY_VALUE_LOCATION,
                    tag::USAGE_LIMITS,
                ]
                .contains(&t)
            }
        }
        Value::TextString(_) => [
            tag::OBJECT_GROUP,
            tag::CONTACT_INFORMATION,
            tag::DESCRIPTION,
            tag::COMMENT,
            tag::ROTATE_NAME,
        ]
        .contains(&t),
        Value::DateTime(_) | Value::DateTimeExtended(_) => [
            tag::ACTIVATION_DATE,
            tag::DEACTIVATION_DATE,
            tag::PROCESS_START_DATE,
            tag::PROTECT_STOP_DATE,
        ]
        .contains(&t),
        Value::Boolean(_) => [tag::SENSITIVE, tag::EXTRACTABLE, tag::QUANTUM_SAFE].contains(&t),
        _ => ![
            tag::NAME,
            tag::LINK,
            tag::OBJECT_GROUP,
            tag::DESCRIPTION,
            tag::COMMENT,
            tag::ACTIVATION_DATE,
            tag::DEACTIVATION_DATE,
            tag::PROCESS_START_DATE,
            tag::PROTECT_STOP_DATE,
            tag::SENSITIVE,
            tag::EXTRACTABLE,
        ]
        .contains(&t),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidAttributeValue(
            "wrong type for this attribute",
        ))
    }
}

/// Name uniqueness, the one rule for every path that gives an object a Name: Create, Create
/// Key Pair, Register, Re-Key and Derive Key (the new objects' Names) and Add, Modify and Set
/// Attribute (the new Name). Fails with [`Error::NonUniqueName`] when one of `names` is the
/// Name Value of an object that holds it against this request:
///
/// - **Version: KMIP 2.x only.** 2.1 BL-M-8-21 registers an object named `BL-M-8-21`, adds
///   that Name to it again and expects Non-Unique Name Attribute (so an object being edited
///   holds its own Names too). 1.x has no such Result Reason, and no 1.0-1.4 case gives an
///   object a Name already in use (the Names repeated in SASED-M-2-10 or TC-312-10 are 1.x
///   template references, not new Names): a 1.x request is not checked.
/// - **Visibility: only objects the caller may see hold a Name against it** (its own objects;
///   every object, within its scope, for an administrator, operator or auditor:
///   `access::role_sees`). No OASIS case names objects under two identities;
///   an object the caller cannot see is absent for it ("invisible equals absent",
///   `docs/ARCHITECTURE.md`), so a refusal never reveals it.
/// - **Destroyed objects hold no Name.** An object in state Destroyed or Destroyed
///   Compromised keeps its attributes but gives up its Names, so a replacement may take the
///   Name of the key it replaces (Locate leaves such objects out by default as well). No
///   OASIS case reuses a destroyed object's Name; BL-M-8-21 destroys its object only after
///   the refusal.
///
/// The search is guarded (`Tx::find_guarded`): if an object with one of these Names appears
/// before the request commits, the commit fails and the request runs again.
pub(crate) fn check_names_free<'a>(
    ctx: &Ctx<'_>,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    if !ctx.v2() {
        return Ok(());
    }
    for name in names {
        let holders = ctx
            .tx
            .find_guarded(&Query::new(vec![Filter::Name(name.to_owned())]))?;
        let held = holders.iter().any(|o| {
            crate::access::role_sees(ctx.principal, o)
                && !matches!(
                    current_state(o),
                    Some(state::DESTROYED | state::DESTROYED_COMPROMISED)
                )
        });
        if held {
            return Err(Error::NonUniqueName);
        }
    }
    Ok(())
}

/// Adds an instance after the checks of Add Attribute (and Set Attribute on an absent
/// attribute): a client-settable attribute, not a second instance of a single-instance one,
/// a plausible value, a Name not already in use. Returns the new instance's index.
pub(crate) fn add_instance(
    ctx: &Ctx<'_>,
    obj: &mut ManagedObject,
    attr: Attribute,
) -> Result<usize> {
    check_known(ctx, &attr.name)?;
    check_change(ctx, obj, &attr.name, None)?;
    let existing = positions(&obj.attributes, &attr.name).len();
    if existing > 0 && !rule(&attr.name).multi {
        return Err(Error::AttributeSingleValued);
    }
    check_value(&attr)?;
    let attr = normalize(attr, None)?;
    if attr.name == AttrName::Std(tag::NAME) {
        check_names_free(ctx, name_value(&attr.value))?;
    }
    obj.attributes.0.push(Attribute {
        name: attr.name.canonical(),
        value: attr.value,
    });
    Ok(existing)
}

/// Replaces the instance at `pos` (a position in `obj.attributes.0`) after the checks of
/// Modify Attribute.
pub(crate) fn replace_instance(
    ctx: &Ctx<'_>,
    obj: &mut ManagedObject,
    pos: usize,
    attr: Attribute,
) -> Result<()> {
    let current = obj
        .attributes
        .0
        .get(pos)
        .map(|a| a.value.clone())
        .ok_or(Error::Internal("attribute position out of range"))?;
    check_change(ctx, obj, &attr.name, Some(&current))?;
    check_value(&attr)?;
    let attr = normalize(attr, Some(&current))?;
    if attr.name == AttrName::Std(tag::NAME) && name_value(&attr.value) != name_value(&current) {
        check_names_free(ctx, name_value(&attr.value))?;
    }
    let slot = obj
        .attributes
        .0
        .get_mut(pos)
        .ok_or(Error::Internal("attribute position out of range"))?;
    *slot = Attribute {
        name: attr.name.canonical(),
        value: attr.value,
    };
    Ok(())
}

/// The value a client-set attribute is stored with. Usage Limits: the server keeps the Usage
/// Limits Count ("The Usage Limits Count value SHALL NOT be set or modified by the client via
/// the Add Attribute or Modify Attribute operations", KMIP 1.4 §3.21; it "is set to the Usage
/// Limits Total value" when the attribute is set), so a new or changed Usage Limits gets Count =
/// Total, in the structure's order (Total, Count, Unit); once the Count was drawn on (Get Usage
/// Allocation, or a protecting use) the attribute can no longer be changed. Anything else is
/// stored as given. `current` is the instance being replaced.
pub(crate) fn normalize(attr: Attribute, current: Option<&Value>) -> Result<Attribute> {
    if attr.name != AttrName::Std(tag::USAGE_LIMITS) {
        return Ok(attr);
    }
    let field = |v: &Value, t| match v {
        Value::Structure(items) => items.iter().find(|i| i.tag == t).map(|i| i.value.clone()),
        _ => None,
    };
    if let Some(cur) = current
        && field(cur, tag::USAGE_LIMITS_COUNT) != field(cur, tag::USAGE_LIMITS_TOTAL)
    {
        return Err(Error::AttributeReadOnly(
            "Usage Limits, once allocated or used",
        ));
    }
    let Some(Value::LongInteger(total)) = field(&attr.value, tag::USAGE_LIMITS_TOTAL) else {
        return Err(Error::InvalidAttributeValue("Usage Limits Total"));
    };
    let unit = field(&attr.value, tag::USAGE_LIMITS_UNIT)
        .or_else(|| current.and_then(|c| field(c, tag::USAGE_LIMITS_UNIT)));
    Ok(Attribute {
        name: attr.name,
        value: usage_limits(total, total, unit),
    })
}

/// A Usage Limits value, its fields in the spec's order (Total, Count, Unit).
pub(crate) fn usage_limits(total: i64, count: i64, unit: Option<Value>) -> Value {
    let mut items = vec![
        Ttlv::new(tag::USAGE_LIMITS_TOTAL, Value::LongInteger(total)),
        Ttlv::new(tag::USAGE_LIMITS_COUNT, Value::LongInteger(count)),
    ];
    items.extend(unit.map(|u| Ttlv::new(tag::USAGE_LIMITS_UNIT, u)));
    Value::Structure(items)
}

/// Stores a changed object: the time-driven state changes (an Activation or Deactivation
/// Date set to the past), Last Change Date = now, and the ID Placeholder.
pub(crate) fn save(ctx: &mut Ctx<'_>, mut obj: ManagedObject) {
    apply_dates(&mut obj, ctx.now);
    touch(ctx, &mut obj);
    let uid = obj.uid.clone();
    ctx.tx.put(obj);
    ctx.set_placeholder(&uid);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom(vendor: Option<&str>, name: &str) -> AttrName {
        AttrName::Custom {
            vendor: vendor.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    #[test]
    fn rules_follow_the_spec_tables() {
        assert_eq!(rule(&AttrName::Std(tag::STATE)).change, Change::Never);
        assert_eq!(
            rule(&AttrName::Std(tag::CRYPTOGRAPHIC_ALGORITHM)).change,
            Change::Never
        );
        assert_eq!(
            rule(&AttrName::Std(tag::ACTIVATION_DATE)).change,
            Change::PreActive
        );
        assert!(rule(&AttrName::Std(tag::NAME)).multi);
        assert!(!rule(&AttrName::Std(tag::DESCRIPTION)).multi);
        assert!(rule(&custom(None, "x-a")).delete);
        assert_eq!(rule(&custom(None, "y-a")).change, Change::Never);
    }

    #[test]
    fn key_format_type_is_an_attribute_only_in_2x() {
        let kft = AttrName::Std(tag::KEY_FORMAT_TYPE);
        assert!(!visible_in(Version::V1_4, &kft));
        assert!(visible_in(Version::V2_1, &kft));
        assert!(visible_in(Version::V1_0, &AttrName::Std(tag::STATE)));
    }

    #[test]
    fn a_1_0_digest_has_no_key_format_type() {
        let digest = Attribute::std(
            tag::DIGEST,
            Value::Structure(vec![
                build::enumeration(tag::HASHING_ALGORITHM, 6),
                build::bytes(tag::DIGEST_VALUE, vec![1u8; 32]),
                build::enumeration(tag::KEY_FORMAT_TYPE, 1),
            ]),
        );
        let children = |v: Version| match for_version(v, &digest).value {
            Value::Structure(items) => items.len(),
            _ => 0,
        };
        assert_eq!(children(Version::V1_0), 2);
        assert_eq!(children(Version::V1_1), 3);
    }

    #[test]
    fn references_round_trip() {
        let n = custom(None, "x-ID");
        assert_eq!(read_reference(&reference_item(&n)).unwrap(), n);
        let s = AttrName::Std(tag::STATE);
        assert_eq!(read_reference(&reference_item(&s)).unwrap(), s);
    }

    #[test]
    fn a_reference_without_vendor_names_a_standard_attribute_by_its_name() {
        let reference = |vendor: Option<&str>, name: &str| {
            let mut items: Vec<Ttlv> = vendor
                .map(|v| build::text(tag::VENDOR_IDENTIFICATION, v))
                .into_iter()
                .collect();
            items.push(build::text(tag::ATTRIBUTE_NAME, name));
            read_reference(&build::structure(tag::ATTRIBUTE_REFERENCE, items)).unwrap()
        };
        assert_eq!(reference(Some(""), "Name"), AttrName::Std(tag::NAME));
        assert_eq!(reference(None, "Name"), AttrName::Std(tag::NAME));
        assert_eq!(reference(Some(""), "x-ID"), custom(None, "x-ID"));
        // A vendor's attribute of the same name is that vendor's, not the standard one.
        assert_eq!(reference(Some("acme"), "Name"), custom(None, "acme-Name"));
    }
}

/// A handler test bench: objects put straight into a store, a [`Ctx`] over it.
#[cfg(test)]
pub(crate) mod testing {
    use kmipd_proto::attributes::{AttrName, Attribute, Attributes};
    use kmipd_proto::build;
    use kmipd_proto::enums::{object_type, state};
    use kmipd_proto::message::ProtocolVersion;
    use kmipd_proto::tag;
    use kmipd_store::{Change, ManagedObject, MemoryStore, ObjectStore};
    use kmipd_ttlv::{Tag, Ttlv, Value};

    use crate::context::{Ctx, Tx};
    use crate::engine::{EngineConfig, Principal};

    /// The time of every test request.
    pub(crate) const NOW: i64 = 1_700_000_000;

    /// A symmetric key `uid` owned by `owner`, Pre-Active, named `name` when given.
    pub(crate) fn key(uid: &str, owner: &str, sequence: u64, name: Option<&str>) -> ManagedObject {
        let mut attributes = Attributes::new();
        attributes.set(tag::UNIQUE_IDENTIFIER, Value::TextString(uid.to_owned()));
        attributes.set(
            tag::OBJECT_TYPE,
            Value::Enumeration(object_type::SYMMETRIC_KEY),
        );
        attributes.set(tag::CRYPTOGRAPHIC_ALGORITHM, Value::Enumeration(3));
        attributes.set(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(128));
        attributes.set(tag::CRYPTOGRAPHIC_USAGE_MASK, Value::Integer(4 | 8));
        attributes.set(tag::STATE, Value::Enumeration(state::PRE_ACTIVE));
        attributes.set(tag::INITIAL_DATE, Value::DateTime(NOW - 100));
        attributes.set(tag::LAST_CHANGE_DATE, Value::DateTime(NOW - 100));
        attributes.set(tag::KEY_FORMAT_TYPE, Value::Enumeration(1));
        if let Some(n) = name {
            attributes.0.push(Attribute::std(tag::NAME, name_value(n)));
        }
        ManagedObject {
            uid: uid.to_owned(),
            object_type: object_type::SYMMETRIC_KEY,
            owner: owner.to_owned(),
            object: Some(build::structure(tag::SYMMETRIC_KEY, Vec::new())),
            attributes,
            sequence,
        }
    }

    /// [`key`] `k1` owned by `a`, with one Object Group instance per entry of `groups`.
    pub(crate) fn key_with_groups(groups: &[&str]) -> ManagedObject {
        let mut k = key("k1", "a", 1, None);
        for g in groups {
            k.attributes.0.push(Attribute::std(
                tag::OBJECT_GROUP,
                Value::TextString((*g).into()),
            ));
        }
        k
    }

    /// A Name attribute value.
    pub(crate) fn name_value(n: &str) -> Value {
        Value::Structure(vec![
            build::text(tag::NAME_VALUE, n),
            build::enumeration(tag::NAME_TYPE, 1),
        ])
    }

    /// A store holding these objects.
    pub(crate) fn store(objects: Vec<ManagedObject>) -> MemoryStore {
        let s = MemoryStore::new();
        s.commit(objects.into_iter().map(Change::Put).collect())
            .unwrap();
        s
    }

    /// Runs `f` with a context of `version` for principal `who` over `store`.
    pub(crate) fn with_ctx<R>(
        store: &MemoryStore,
        who: &Principal,
        version: ProtocolVersion,
        f: impl FnOnce(&mut Ctx<'_>) -> R,
    ) -> R {
        let config = EngineConfig::default();
        let mut ctx = Ctx {
            principal: who,
            version,
            spec: version.spec().unwrap(),
            now: NOW,
            tx: Tx::new(store, NOW),
            id_placeholder: None,
            batch_uids: Vec::new(),
            uid_by_kind: Vec::new(),
            config: &config,
            policy: &config.policy,
            operation: 0,
            kept: Vec::new(),
            streams: None,
            stream_changes: Vec::new(),
            tickets: &crate::tickets::Tickets::default(),
            pkcs11: &crate::operations::pkcs11::Contexts::default(),
        };
        f(&mut ctx)
    }

    /// A request payload.
    pub(crate) fn payload(items: Vec<Ttlv>) -> Ttlv {
        build::structure(tag::REQUEST_PAYLOAD, items)
    }

    /// A 1.x Attribute structure.
    pub(crate) fn v1_attr(name: &str, index: Option<i32>, value: Value) -> Ttlv {
        let mut items = vec![build::text(tag::ATTRIBUTE_NAME, name)];
        if let Some(i) = index {
            items.push(build::int(tag::ATTRIBUTE_INDEX, i));
        }
        items.push(Ttlv::new(tag::ATTRIBUTE_VALUE, value));
        build::structure(tag::ATTRIBUTE, items)
    }

    /// A 2.x wrapper (New Attribute, Current Attribute) around one attribute item.
    pub(crate) fn wrap(t: Tag, item: Ttlv) -> Ttlv {
        build::structure(t, vec![item])
    }

    /// A 2.x vendor attribute item.
    pub(crate) fn vendor(v: &str, name: &str, value: Value) -> Ttlv {
        build::structure(
            tag::ATTRIBUTE,
            vec![
                build::text(tag::VENDOR_IDENTIFICATION, v),
                build::text(tag::ATTRIBUTE_NAME, name),
                Ttlv::new(tag::ATTRIBUTE_VALUE, value),
            ],
        )
    }

    /// The children of a response payload.
    pub(crate) fn items(response: Option<Ttlv>) -> Vec<Ttlv> {
        match response.unwrap().value {
            Value::Structure(v) => v,
            other => panic!("not a structure: {other:?}"),
        }
    }

    /// Every value of a standard attribute of an object as the batch sees it.
    pub(crate) fn values(ctx: &Ctx<'_>, uid: &str, t: Tag) -> Vec<Value> {
        let o = ctx.tx.get(uid).unwrap().unwrap();
        o.attributes.all(&AttrName::Std(t)).cloned().collect()
    }
}
