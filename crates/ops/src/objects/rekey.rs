//! What Re-Key and Re-Key Key Pair share (KMIP 1.4 §4.4-4.5, 2.1 §6.1.41-6.1.42): the
//! replacement's attributes copied from the existing key (Table 173: not the dates of its
//! past, its identity, its state, its digest, its links or its RNG), its dates moved by the
//! Offset, the Names taken over from the existing key, and the links between the two.

use kmipd_proto::attributes::{AttrName, Attribute, Attributes};
use kmipd_proto::enums::link_type;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::{Tag, Value};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::object::touch;

/// Attributes never copied to the replacement (the server sets them anew, or they describe the
/// existing key's own history).
const NOT_COPIED: [Tag; 19] = [
    tag::SHORT_UNIQUE_IDENTIFIER,
    tag::UNIQUE_IDENTIFIER,
    tag::OBJECT_TYPE,
    tag::STATE,
    tag::INITIAL_DATE,
    tag::LAST_CHANGE_DATE,
    tag::ORIGINAL_CREATION_DATE,
    tag::DESTROY_DATE,
    tag::COMPROMISE_OCCURRENCE_DATE,
    tag::COMPROMISE_DATE,
    tag::REVOCATION_REASON,
    tag::ARCHIVE_DATE,
    tag::DIGEST,
    tag::LINK,
    tag::RANDOM_NUMBER_GENERATOR,
    tag::FRESH,
    tag::ALWAYS_SENSITIVE,
    tag::NEVER_EXTRACTABLE,
    tag::NAME,
];

/// Dates moved together with the Activation Date when an Offset is given.
const SHIFTED: [Tag; 3] = [
    tag::PROCESS_START_DATE,
    tag::PROTECT_STOP_DATE,
    tag::DEACTIVATION_DATE,
];

fn date(attrs: &Attributes, t: Tag) -> Option<i64> {
    match attrs.get(t) {
        Some(Value::DateTime(d)) => Some(*d),
        _ => None,
    }
}

/// The existing key's attributes for its replacement, dates per the Offset, then the
/// request's attributes (Names are added to the inherited ones; others replace).
pub(crate) fn replacement_attributes(
    ctx: &Ctx<'_>,
    old: &ManagedObject,
    offset: Option<u32>,
    requested: Attributes,
) -> Attributes {
    let mut attrs = Attributes::new();
    for a in old.attributes.iter() {
        if let AttrName::Std(t) = a.name
            && NOT_COPIED.contains(&t)
        {
            continue;
        }
        if crate::dual::is_request(&a.name) {
            continue;
        }
        attrs.0.push(a.clone());
    }
    // The replacement takes over the Names.
    for v in old.attributes.all(&AttrName::Std(tag::NAME)) {
        attrs.0.push(Attribute::std(tag::NAME, v.clone()));
    }
    if let Some(offset) = offset {
        let at2 = ctx.now.saturating_add(i64::from(offset));
        let delta = date(&old.attributes, tag::ACTIVATION_DATE).map(|at1| at2.saturating_sub(at1));
        attrs.set(tag::ACTIVATION_DATE, Value::DateTime(at2));
        for t in SHIFTED {
            match (date(&old.attributes, t), delta) {
                (Some(d), Some(delta)) => attrs.set(t, Value::DateTime(d.saturating_add(delta))),
                _ => {
                    attrs.remove_all(&AttrName::Std(t));
                }
            }
        }
    }
    for a in requested.0 {
        if a.name == AttrName::Std(tag::NAME) {
            if !attrs
                .0
                .iter()
                .any(|x| x.name == a.name && x.value == a.value)
            {
                attrs.0.push(a);
            }
        } else {
            attrs.set_named(a.name.clone(), a.value);
        }
    }
    attrs
}

/// Takes the Names off an existing key (they move to its replacement).
pub(crate) fn strip_names(ctx: &mut Ctx<'_>, uid: &str) -> Result<()> {
    let mut old = ctx.load(uid)?;
    old.attributes.remove_all(&AttrName::Std(tag::NAME));
    ctx.tx.put(old);
    Ok(())
}

/// Marks the existing key `uid` as replaced by `new_uid`: Names removed, Replacement Object
/// link added.
pub(crate) fn retire(ctx: &mut Ctx<'_>, uid: &str, new_uid: &str) -> Result<()> {
    let mut old = ctx.load(uid)?;
    old.attributes.remove_all(&AttrName::Std(tag::NAME));
    old.attributes.add(Attribute::std(
        tag::LINK,
        link(link_type::REPLACEMENT_OBJECT_LINK, new_uid),
    ));
    touch(ctx, &mut old);
    ctx.tx.put(old);
    Ok(())
}

/// The Replaced Object link of a replacement key.
pub(crate) fn replaced_link(old_uid: &str) -> Attribute {
    Attribute::std(tag::LINK, link(link_type::REPLACED_OBJECT_LINK, old_uid))
}

fn link(kind: u32, uid: &str) -> Value {
    Value::Structure(vec![
        kmipd_proto::build::enumeration(tag::LINK_TYPE, kind),
        kmipd_proto::build::text(tag::LINKED_OBJECT_IDENTIFIER, uid),
    ])
}

/// The existing key to replace: present, not destroyed, of the expected object type.
pub(crate) fn existing(ctx: &Ctx<'_>, uid: &str, object_type: u32) -> Result<ManagedObject> {
    let old = ctx.load(uid)?;
    if old.object.is_none() {
        return Err(Error::Destroyed);
    }
    if old.object_type != object_type {
        return Err(Error::IllegalOperation(
            "not a key of the type this operation replaces",
        ));
    }
    Ok(old)
}

/// The Linked Object Identifier of the first Link of `kind`.
pub(crate) fn linked(obj: &ManagedObject, kind: u32) -> Option<String> {
    obj.attributes
        .all(&AttrName::Std(tag::LINK))
        .find_map(|v| match v {
            Value::Structure(items) => {
                let is_kind = items
                    .iter()
                    .any(|i| i.tag == tag::LINK_TYPE && i.value == Value::Enumeration(kind));
                if !is_kind {
                    return None;
                }
                items
                    .iter()
                    .find(|i| i.tag == tag::LINKED_OBJECT_IDENTIFIER)
                    .and_then(|i| match &i.value {
                        Value::TextString(s) => Some(s.clone()),
                        _ => None,
                    })
            }
            _ => None,
        })
}
