//! Access control: who may do what with a managed object.
//!
//! - The **owner** of an object (the identity that created or registered it,
//!   `ManagedObject::owner`) may do everything with it.
//! - An **administrator** ([`Principal::admin`]) may do everything with every object.
//! - Anyone else may perform on an object exactly the operations that its owner or an
//!   administrator **granted** them ([`crate::Engine::grant`]), and nothing else.
//!
//! **Invisible equals absent.** For any other operation the object does not exist for that
//! caller: `Ctx::load` answers Not Found (Item Not Found in 1.x, Object Not Found in 2.1), and
//! Locate never returns it, exactly as for an identifier nobody ever used. A caller can therefore
//! not learn that an object exists from the difference between "not found" and "permission
//! denied".
//!
//! **Where grants live.** On the object itself, as instances of the server-owned vendor attribute
//! `y-kmipd-grant` (one instance per grantee): its Text String value is the comma-separated XML
//! names of the granted operations, a space, then the grantee's identity (`Get,Locate client2`;
//! the identity is everything after the first space, so it may itself contain spaces). `y-`
//! attributes are read-only to clients (see `attrs`), so grants change only through the
//! library calls here; the store format is unchanged, and grants travel with the object through
//! backups and restarts. The attribute is returned by Get Attributes like any other attribute
//! (to those who may call Get Attributes on the object).

use kmipd_proto::attributes::{AttrName, Attribute};
use kmipd_proto::spec;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::Value;

use crate::engine::Principal;

/// The name of the vendor attribute that holds one grant.
pub const GRANT_ATTRIBUTE: &str = "y-kmipd-grant";

/// Operations on an object granted to one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The identity the operations are granted to.
    pub grantee: String,
    /// The granted operations (KMIP Operation enumeration values), ascending, no duplicates.
    pub operations: Vec<u32>,
}

impl Grant {
    /// The attribute value that stores this grant.
    fn to_value(&self) -> Value {
        let names: Vec<String> = self.operations.iter().map(|o| operation_name(*o)).collect();
        Value::TextString(format!("{} {}", names.join(","), self.grantee))
    }

    /// Reads a stored grant; `None` when the value is not one.
    fn from_value(value: &Value) -> Option<Grant> {
        let Value::TextString(s) = value else {
            return None;
        };
        let (ops, grantee) = s.split_once(' ')?;
        let mut operations = ops
            .split(',')
            .map(operation_by_name)
            .collect::<Option<Vec<u32>>>()?;
        operations.sort_unstable();
        operations.dedup();
        (!grantee.is_empty()).then(|| Grant {
            grantee: grantee.to_owned(),
            operations,
        })
    }
}

fn grant_name() -> AttrName {
    AttrName::Custom {
        vendor: None,
        name: GRANT_ATTRIBUTE.to_owned(),
    }
}

fn is_grant(name: &AttrName) -> bool {
    name.canonical() == grant_name()
}

/// The grants stored on an object (unreadable instances are ignored: they grant nothing).
pub fn grants(object: &ManagedObject) -> Vec<Grant> {
    object
        .attributes
        .iter()
        .filter(|a| is_grant(&a.name))
        .filter_map(|a| Grant::from_value(&a.value))
        .collect()
}

/// True when `who` may perform `operation` on `object`: its owner, an administrator, or an
/// identity the operation was granted to.
pub fn may_access(who: &Principal, object: &ManagedObject, operation: u32) -> bool {
    who.may_see(object)
        || grants(object)
            .iter()
            .any(|g| g.grantee == who.name() && g.operations.contains(&operation))
}

/// Replaces the object's grants by `grants` (grants without operations are dropped).
pub(crate) fn set_grants(object: &mut ManagedObject, grants: &[Grant]) {
    object.attributes.0.retain(|a| !is_grant(&a.name));
    for g in grants.iter().filter(|g| !g.operations.is_empty()) {
        object.attributes.0.push(Attribute {
            name: grant_name(),
            value: g.to_value(),
        });
    }
}

/// Adds `operations` to what `grantee` holds on the object.
pub(crate) fn add_grant(object: &mut ManagedObject, grantee: &str, operations: &[u32]) {
    let mut all = grants(object);
    match all.iter_mut().find(|g| g.grantee == grantee) {
        Some(g) => g.operations.extend_from_slice(operations),
        None => all.push(Grant {
            grantee: grantee.to_owned(),
            operations: operations.to_vec(),
        }),
    }
    for g in &mut all {
        g.operations.sort_unstable();
        g.operations.dedup();
    }
    set_grants(object, &all);
}

/// Removes `operations` (all of them when `None`) from what `grantee` holds on the object;
/// true when something was removed.
pub(crate) fn remove_grant(
    object: &mut ManagedObject,
    grantee: &str,
    operations: Option<&[u32]>,
) -> bool {
    let mut all = grants(object);
    let mut removed = false;
    for g in all.iter_mut().filter(|g| g.grantee == grantee) {
        let before = g.operations.len();
        match operations {
            Some(ops) => g.operations.retain(|o| !ops.contains(o)),
            None => g.operations.clear(),
        }
        removed |= g.operations.len() != before;
    }
    set_grants(object, &all);
    removed
}

/// The Operation enumeration value of a name: the XML name (`GetAttributes`) or the
/// specification's name (`Get Attributes`), case-insensitively; or a number (`0x0A`, `10`).
pub fn operation_by_name(name: &str) -> Option<u32> {
    let table = spec::enum_of_tag(tag::OPERATION.value())?;
    let name = name.trim();
    if let Some(v) = table.value_by_xml_name(name) {
        return Some(v);
    }
    if let Some(hex) = name.strip_prefix("0x").or_else(|| name.strip_prefix("0X")) {
        return u32::from_str_radix(hex, 16)
            .ok()
            .filter(|v| table.entry(*v).is_some());
    }
    if let Ok(v) = name.parse::<u32>() {
        return table.entry(v).is_some().then_some(v);
    }
    let squashed: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    table
        .values
        .iter()
        .find(|e| {
            e.xml_name.eq_ignore_ascii_case(&squashed)
                || e.xml_name
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect::<String>()
                    .eq_ignore_ascii_case(&squashed)
        })
        .map(|e| e.value)
}

/// The XML name of an Operation (`GetAttributes`), or its number in hex when it has none.
pub fn operation_name(operation: u32) -> String {
    spec::enum_of_tag(tag::OPERATION.value())
        .and_then(|t| t.canonical_name(operation))
        .map_or_else(|| format!("0x{operation:08X}"), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmipd_proto::attributes::Attributes;
    use kmipd_proto::enums::operation as op;

    fn object(owner: &str) -> ManagedObject {
        ManagedObject {
            uid: "u1".into(),
            object_type: 2,
            owner: owner.into(),
            object: None,
            attributes: Attributes::new(),
            sequence: 1,
        }
    }

    #[test]
    fn names_read_in_every_spelling_and_write_back() {
        assert_eq!(operation_by_name("GetAttributes"), Some(op::GET_ATTRIBUTES));
        assert_eq!(
            operation_by_name("get attributes"),
            Some(op::GET_ATTRIBUTES)
        );
        assert_eq!(operation_by_name("Re-key"), Some(op::RE_KEY));
        assert_eq!(operation_by_name("0x0A"), Some(op::GET));
        assert_eq!(operation_by_name("10"), Some(op::GET));
        assert_eq!(operation_by_name("Gte"), None);
        assert_eq!(operation_name(op::GET_ATTRIBUTES), "GetAttributes");
        assert_eq!(
            operation_by_name(&operation_name(op::RE_KEY)),
            Some(op::RE_KEY)
        );
    }

    #[test]
    fn owner_admin_and_grantees_for_their_operations_only() {
        let mut o = object("alice");
        assert!(may_access(&Principal::new("alice"), &o, op::DESTROY));
        assert!(may_access(&Principal::admin("root"), &o, op::DESTROY));
        assert!(!may_access(&Principal::new("bob"), &o, op::GET));
        add_grant(&mut o, "bob smith", &[op::GET, op::LOCATE]);
        add_grant(&mut o, "bob smith", &[op::GET]);
        assert_eq!(
            grants(&o),
            [Grant {
                grantee: "bob smith".into(),
                operations: vec![op::LOCATE, op::GET]
            }]
        );
        assert_eq!(
            o.attributes.iter().next().map(|a| a.value.clone()),
            Some(Value::TextString("Locate,Get bob smith".into()))
        );
        let bob = Principal::new("bob smith");
        assert!(may_access(&bob, &o, op::GET));
        assert!(!may_access(&bob, &o, op::DESTROY));
        assert!(!may_access(&Principal::new("bob"), &o, op::GET));
        assert!(remove_grant(&mut o, "bob smith", Some(&[op::GET])));
        assert!(!may_access(&bob, &o, op::GET));
        assert!(may_access(&bob, &o, op::LOCATE));
        assert!(remove_grant(&mut o, "bob smith", None));
        assert!(!remove_grant(&mut o, "bob smith", None));
        assert!(grants(&o).is_empty());
        assert_eq!(o.attributes.iter().count(), 0);
    }

    #[test]
    fn a_2x_vendor_spelling_is_the_same_attribute_and_junk_grants_nothing() {
        let mut o = object("alice");
        o.attributes.0.push(Attribute {
            name: AttrName::Custom {
                vendor: Some("y".into()),
                name: "kmipd-grant".into(),
            },
            value: Value::TextString("Get carol".into()),
        });
        o.attributes.0.push(Attribute {
            name: grant_name(),
            value: Value::TextString("Frobnicate dave".into()),
        });
        o.attributes.0.push(Attribute {
            name: grant_name(),
            value: Value::Integer(3),
        });
        assert!(may_access(&Principal::new("carol"), &o, op::GET));
        assert!(!may_access(&Principal::new("dave"), &o, op::GET));
        assert_eq!(grants(&o).len(), 1);
    }
}
