//! The server's constraints (KMIP 2.1 Set Constraints §6.1.52, Get Constraints §6.1.22, the
//! Constraint structure §7.6): "constraints that will be applied to Managed Objects during
//! operations", a server-wide setting that administrators set.
//!
//! **What a constraint means.** The specification says only that a Constraint (Object Types,
//! Object Groups, Attributes, each optional) "is applied to operations that create Managed
//! Objects", and that a request that violates one fails with Constraint Violation; how it
//! applies is left to the server. kmipd reads the Constraints as an **allow-list for new
//! objects**: a constraint *applies* to a new object when it names no Object Types or names the
//! object's type; when at least one constraint applies, the new object must **satisfy one of
//! them**: be in one of its Object Groups (when it names any) and carry every one of its
//! Attributes with that value (one instance equal, for a multi-instance attribute). An object
//! of a type no constraint names is not constrained. This is the only reading under which the
//! Test Cases note's example (TC-MD-24-21: symmetric keys of Group1 AES-256, symmetric keys
//! AES-192) is satisfiable at all: with "every applicable constraint must hold", no key of
//! Group1 could exist. Checked at the end of every creating operation, after the server policy
//! (`objects::template::finish`: Create, Create Key Pair, Register, Re-Key, Re-Key Key Pair,
//! Derive Key, ...; and Import): Constraint Violation in 2.x (Permission Denied in 1.x, which
//! has no such reason). Existing objects are not re-checked.
//!
//! **Where they live.** In the store, as the server setting [`SETTING`]
//! (`ObjectStore::setting`): the TTLV encoding of the Constraints structure as it was set, so
//! they survive restarts, travel with backups and are shared by every node of a PostgreSQL
//! store. Set Constraints without Constraints, or with an empty one, removes them.

use kmipd_proto::attributes::Attribute;
use kmipd_proto::reader::{StructReader, as_enum, as_text};
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::{Limits, Ttlv, Value};

use crate::context::Tx;
use crate::error::{Error, Result};

/// The name of the store setting that holds the constraints.
pub(crate) const SETTING: &str = "constraints";
/// The most Constraint structures kept.
pub(crate) const MAX_CONSTRAINTS: usize = 256;
/// The most bytes of their encoding kept.
pub(crate) const MAX_ENCODED_LEN: usize = 64 * 1024;

/// One Constraint; a field `None` when omitted (unrestricted in that respect).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Constraint {
    object_types: Option<Vec<u32>>,
    object_groups: Option<Vec<String>>,
    attributes: Vec<Attribute>,
}

impl Constraint {
    fn read(item: &Ttlv) -> Result<Constraint> {
        let r = StructReader::new(item, tag::CONSTRAINT)?;
        let known = [tag::OBJECT_TYPES, tag::OBJECT_GROUPS, tag::ATTRIBUTES];
        if r.items().iter().any(|i| !known.contains(&i.tag)) {
            return Err(Error::InvalidField(
                "a Constraint holds only Object Types, Object Groups and Attributes",
            ));
        }
        let object_types = match r.structure(tag::OBJECT_TYPES)? {
            Some(s) => Some(
                s.repeated(tag::OBJECT_TYPE)
                    .map(as_enum)
                    .collect::<std::result::Result<Vec<u32>, _>>()?,
            ),
            None => None,
        };
        let object_groups = match r.structure(tag::OBJECT_GROUPS)? {
            Some(s) => Some(
                s.repeated(tag::OBJECT_GROUP)
                    .map(|i| as_text(i).map(str::to_owned))
                    .collect::<std::result::Result<Vec<String>, _>>()?,
            ),
            None => None,
        };
        let attributes = match r.structure(tag::ATTRIBUTES)? {
            Some(s) => s
                .items()
                .iter()
                .map(Attribute::from_v2)
                .collect::<std::result::Result<Vec<Attribute>, _>>()?,
            None => Vec::new(),
        };
        Ok(Constraint {
            object_types,
            object_groups,
            attributes,
        })
    }

    fn applies_to(&self, object: &ManagedObject) -> bool {
        self.object_types
            .as_ref()
            .is_none_or(|types| types.contains(&object.object_type))
    }

    fn satisfied_by(&self, object: &ManagedObject) -> bool {
        let in_groups = self.object_groups.as_ref().is_none_or(|groups| {
            object
                .attributes
                .all(&kmipd_proto::attributes::AttrName::Std(tag::OBJECT_GROUP))
                .any(|v| matches!(v, Value::TextString(g) if groups.contains(g)))
        });
        in_groups
            && self
                .attributes
                .iter()
                .all(|a| object.attributes.all(&a.name).any(|v| *v == a.value))
    }
}

/// Reads a Constraints structure (as Set Constraints sends it): every Constraint well-formed,
/// within the bounds.
pub(crate) fn read(item: &Ttlv) -> Result<Vec<Constraint>> {
    let r = StructReader::new(item, tag::CONSTRAINTS)?;
    if r.items().iter().any(|i| i.tag != tag::CONSTRAINT) {
        return Err(Error::InvalidField(
            "Constraints holds only Constraint structures",
        ));
    }
    if r.items().len() > MAX_CONSTRAINTS {
        return Err(Error::InvalidField("too many constraints"));
    }
    r.items().iter().map(Constraint::read).collect()
}

/// The constraints in force: the stored Constraints structure (an empty one when none).
pub(crate) fn stored(tx: &Tx<'_>) -> Result<Ttlv> {
    match tx.setting(SETTING)? {
        None => Ok(kmipd_proto::build::structure(tag::CONSTRAINTS, Vec::new())),
        Some(bytes) => kmipd_ttlv::decode(&bytes, &Limits::default())
            .map_err(|_| Error::Internal("the stored constraints do not decode")),
    }
}

/// Refuses a new object that no applicable constraint allows (see the module doc).
pub(crate) fn check_new(tx: &Tx<'_>, object: &ManagedObject) -> Result<()> {
    let Some(bytes) = tx.setting(SETTING)? else {
        return Ok(());
    };
    let item = kmipd_ttlv::decode(&bytes, &Limits::default())
        .map_err(|_| Error::Internal("the stored constraints do not decode"))?;
    let constraints = read(&item).map_err(|_| Error::Internal("the stored constraints"))?;
    let mut applicable = constraints
        .iter()
        .filter(|c| c.applies_to(object))
        .peekable();
    if applicable.peek().is_none() || applicable.any(|c| c.satisfied_by(object)) {
        Ok(())
    } else {
        Err(Error::ConstraintViolation(
            "the new object satisfies none of the server's constraints for its type",
        ))
    }
}

#[cfg(test)]
mod tests {
    use kmipd_proto::attributes::Attributes;
    use kmipd_proto::build;
    use kmipd_proto::enums::{cryptographic_algorithm as alg, object_type as ot};
    use kmipd_proto::tag;
    use kmipd_store::ManagedObject;
    use kmipd_ttlv::Value;

    use super::{Constraint, read};

    /// The constraints of TC-MD-24-21.
    fn case() -> Vec<Constraint> {
        let constraint = |group: Option<&str>, bits: i32| {
            let mut items = vec![build::structure(
                tag::OBJECT_TYPES,
                vec![build::enumeration(tag::OBJECT_TYPE, ot::SYMMETRIC_KEY)],
            )];
            if let Some(g) = group {
                items.push(build::structure(
                    tag::OBJECT_GROUPS,
                    vec![build::text(tag::OBJECT_GROUP, g)],
                ));
            }
            items.push(build::structure(
                tag::ATTRIBUTES,
                vec![
                    build::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, alg::AES),
                    build::int(tag::CRYPTOGRAPHIC_LENGTH, bits),
                ],
            ));
            build::structure(tag::CONSTRAINT, items)
        };
        read(&build::structure(
            tag::CONSTRAINTS,
            vec![constraint(Some("Group1"), 256), constraint(None, 192)],
        ))
        .unwrap()
    }

    fn key(object_type: u32, bits: i32, group: Option<&str>) -> ManagedObject {
        let mut attributes = Attributes::new();
        attributes.set(tag::CRYPTOGRAPHIC_ALGORITHM, Value::Enumeration(alg::AES));
        attributes.set(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(bits));
        if let Some(g) = group {
            attributes.set(tag::OBJECT_GROUP, Value::TextString(g.to_owned()));
        }
        ManagedObject {
            uid: "k".into(),
            object_type,
            owner: "a".into(),
            object: None,
            attributes,
            sequence: 1,
        }
    }

    fn allowed(cs: &[Constraint], o: &ManagedObject) -> bool {
        let applicable: Vec<&Constraint> = cs.iter().filter(|c| c.applies_to(o)).collect();
        applicable.is_empty() || applicable.iter().any(|c| c.satisfied_by(o))
    }

    #[test]
    fn a_new_object_must_satisfy_one_constraint_of_its_type() {
        let cs = case();
        assert!(allowed(&cs, &key(ot::SYMMETRIC_KEY, 256, Some("Group1"))));
        assert!(allowed(&cs, &key(ot::SYMMETRIC_KEY, 192, Some("Group1"))));
        assert!(allowed(&cs, &key(ot::SYMMETRIC_KEY, 192, None)));
        assert!(!allowed(&cs, &key(ot::SYMMETRIC_KEY, 256, None)));
        assert!(!allowed(&cs, &key(ot::SYMMETRIC_KEY, 128, Some("Group1"))));
        assert!(!allowed(&cs, &key(ot::SYMMETRIC_KEY, 256, Some("Group2"))));
        // A type no constraint names is not constrained.
        assert!(allowed(&cs, &key(ot::SECRET_DATA, 128, None)));
    }

    #[test]
    fn a_malformed_constraint_is_refused() {
        let wrong_child = build::structure(
            tag::CONSTRAINTS,
            vec![build::structure(
                tag::CONSTRAINT,
                vec![build::enumeration(tag::OBJECT_TYPE, ot::SYMMETRIC_KEY)],
            )],
        );
        assert!(read(&wrong_child).is_err());
        let not_a_constraint =
            build::structure(tag::CONSTRAINTS, vec![build::text(tag::OBJECT_GROUP, "g")]);
        assert!(read(&not_a_constraint).is_err());
        let too_many = build::structure(
            tag::CONSTRAINTS,
            (0..=super::MAX_CONSTRAINTS)
                .map(|_| build::structure(tag::CONSTRAINT, Vec::new()))
                .collect(),
        );
        assert!(read(&too_many).is_err());
    }
}
