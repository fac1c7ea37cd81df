//! Access control: who may do what with a managed object. Every check is here; the engine
//! calls [`check_operation`] before each batch item, [`may_access`] on every object an item
//! names (`Ctx::load`) or finds (Locate), and [`refusal`] to say how a refused object answers.
//!
//! **Roles** ([`Role`], assigned by configuration with [`RoleAssignments`]):
//! - `administrator`: everything, on every object, and alone the operations that change the
//!   whole server ([`ADMINISTRATOR_OPERATIONS`]: Set Constraints);
//! - `operator`: everything on its own objects; on every other object the lifecycle and
//!   attribute operations ([`OPERATOR_ON_OTHERS`]: Activate, Revoke, Destroy, Re-Key, Re-Key Key
//!   Pair, Archive, Recover, the attribute operations, Locate), never Get (key material) nor
//!   the cryptographic operations;
//! - `auditor`: only reads ([`AUDITOR_OPERATIONS`]: Locate, Get Attributes, Get Attribute List,
//!   Query, Discover Versions, Get Constraints), on every object; never key material, never a
//!   change;
//! - `client` (anyone in no list): everything on its own objects, nothing on others' but what
//!   their owners granted.
//!
//! A **scope** (Object Groups, [`RoleAssignments::scopes`]) confines an identity's rights over
//! objects it does not own to the objects of those groups: two tenants' operators each manage
//! their own group and never see the other's.
//!
//! - The **owner** of an object (the identity that created or registered it,
//!   `ManagedObject::owner`) may do everything with it (its role permitting the operation).
//! - Anyone else may perform on an object exactly the operations that its owner or an
//!   administrator **granted** them ([`crate::Engine::grant`]), plus what its role gives it on
//!   others' objects, and nothing else.
//!
//! **Invisible equals absent.** For an object the caller's role does not let it see, the object
//! does not exist: `Ctx::load` answers Not Found (Item Not Found in 1.x, Object Not Found in
//! 2.1), and Locate never returns it, exactly as for an identifier nobody ever used. A caller
//! can therefore not learn that an object exists from the difference between "not found" and
//! "permission denied". Only an operator or auditor, who may Locate the object anyway, gets
//! Permission Denied for an operation its role does not give it on that object.
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
use kmipd_proto::enums::operation as op;
use kmipd_proto::spec;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::Value;

use crate::engine::Principal;
use crate::error::Error;

/// What an identity is, by configuration ([`RoleAssignments`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Role {
    /// Everything, on every object.
    Administrator,
    /// The lifecycle and attributes of every object; never key material.
    Operator,
    /// Reads attributes and locates every object; never key material, never a change.
    Auditor,
    /// Its own objects, and what their owners granted it on others' (the default).
    #[default]
    Client,
}

impl Role {
    /// Every role, most privileged first.
    pub const ALL: [Role; 4] = [
        Role::Administrator,
        Role::Operator,
        Role::Auditor,
        Role::Client,
    ];

    /// The role's name in the configuration (`administrator`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Client => "client",
        }
    }
}

/// What an operator may do to objects it does not own (besides what it was granted).
pub const OPERATOR_ON_OTHERS: &[u32] = &[
    op::LOCATE,
    op::GET_ATTRIBUTES,
    op::GET_ATTRIBUTE_LIST,
    op::ADD_ATTRIBUTE,
    op::MODIFY_ATTRIBUTE,
    op::DELETE_ATTRIBUTE,
    op::SET_ATTRIBUTE,
    op::ACTIVATE,
    op::REVOKE,
    op::DESTROY,
    op::ARCHIVE,
    op::RECOVER,
    op::RE_KEY,
    op::RE_KEY_KEY_PAIR,
];

/// Everything an auditor may do at all (on any object).
pub const AUDITOR_OPERATIONS: &[u32] = &[
    op::DISCOVER_VERSIONS,
    op::QUERY,
    op::GET_CONSTRAINTS,
    op::LOCATE,
    op::GET_ATTRIBUTES,
    op::GET_ATTRIBUTE_LIST,
];

/// Operations that change the whole server's behaviour: administrators only.
pub const ADMINISTRATOR_OPERATIONS: &[u32] = &[op::SET_CONSTRAINTS];

/// Whether `role` permits `operation` at all, whatever the object. Only the auditor's role and
/// the server-wide settings ([`ADMINISTRATOR_OPERATIONS`]) are limited here; the rest is
/// limited per object ([`may_access`]).
fn role_permits(role: Role, operation: u32) -> bool {
    match role {
        Role::Auditor => AUDITOR_OPERATIONS.contains(&operation),
        Role::Administrator | Role::Operator | Role::Client => true,
    }
}

/// Whether `role` gives `operation` on objects the identity does not own.
fn role_on_others(role: Role, operation: u32) -> bool {
    match role {
        Role::Administrator => true,
        Role::Operator => OPERATOR_ON_OTHERS.contains(&operation),
        Role::Auditor => AUDITOR_OPERATIONS.contains(&operation),
        Role::Client => false,
    }
}

/// The refusal of an operation the caller's role never permits (checked before each batch
/// item): Permission Denied, naming the rule.
pub fn check_operation(who: &Principal, operation: u32) -> Result<(), Error> {
    if ADMINISTRATOR_OPERATIONS.contains(&operation) && who.role() != Role::Administrator {
        return Err(Error::PermissionDenied(
            "only an administrator changes the server's settings",
        ));
    }
    if !role_permits(who.role(), operation) {
        return Err(Error::PermissionDenied(
            "the auditor role only locates objects and reads their attributes",
        ));
    }
    if who
        .narrowing()
        .is_some_and(|n| !n.allows_operation(operation))
    {
        return Err(Error::NotAuthorised(
            "the ticket's rights do not include this operation",
        ));
    }
    Ok(())
}

/// Whether the identity's scope (if any) includes the object: one of the object's Object
/// Groups is in it.
fn in_scope(who: &Principal, object: &ManagedObject) -> bool {
    match who.scope() {
        None => true,
        Some(groups) => object
            .attributes
            .all(&AttrName::Std(tag::OBJECT_GROUP))
            .any(|v| matches!(v, Value::TextString(g) if groups.iter().any(|s| s == g))),
    }
}

/// True when `who` may see the object at all through its role (Locate it): owner,
/// administrator, operator or auditor (within its scope). A grantee sees an object only
/// through its granted operations ([`may_access`]).
pub fn role_sees(who: &Principal, object: &ManagedObject) -> bool {
    object.owner == who.name() || (in_scope(who, object) && role_on_others(who.role(), op::LOCATE))
}

/// How an object the caller may not perform the operation on answers: Permission Denied when
/// the caller's role lets it see the object (an operator's Get of another's key), otherwise
/// Not Found, exactly as a missing object.
pub fn refusal(who: &Principal, object: &ManagedObject, operation: u32) -> Error {
    if let Some(n) = who.narrowing()
        && base_access(who, object, operation)
    {
        // Refused only by what the request's header narrows the identity by: the
        // certificate identity itself may do it, so nothing is hidden by saying so.
        return if n.credential_allows(object) {
            Error::NotAuthorised("the ticket's rights do not include this object")
        } else {
            Error::PermissionDenied("the object belongs to another credential")
        };
    }
    if role_sees(who, object) {
        Error::PermissionDenied("the caller's role does not permit this operation on this object")
    } else {
        Error::NotFound
    }
}

/// The names a verified client certificate gives, which role patterns match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertNames {
    /// The identity (`[identity] source` of the certificate).
    pub identity: String,
    /// The subject's Common Names.
    pub cn: Vec<String>,
    /// The subject's Organizational Unit names.
    pub ou: Vec<String>,
    /// The whole subject, RFC 4514 style (`CN=client, O=kmipd dev`).
    pub subject: String,
    /// The Subject Alternative Names: DNS names, e-mail addresses and URIs.
    pub san: Vec<String>,
}

impl CertNames {
    /// Names for an identity known only by its name (tests, tools): every pattern without a
    /// field prefix matches it, `cn:` patterns too.
    pub fn identity(name: &str) -> CertNames {
        CertNames {
            identity: name.to_owned(),
            cn: vec![name.to_owned()],
            ..CertNames::default()
        }
    }
}

/// Which identities have which role, and which are confined to Object Groups: `[roles]` of the
/// configuration. Each entry is a pattern: an exact identity (`client2`), or a field prefix and
/// a glob where `*` matches any run of characters: `cn:audit-*`, `ou:storage`,
/// `san:*.example.com`, `subject:CN=ops*`, `identity:ops-*`. An identity in several lists has
/// the most privileged role (administrator, then operator, then auditor); in none, `client`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleAssignments {
    /// Patterns of administrators.
    pub administrator: Vec<String>,
    /// Patterns of operators.
    pub operator: Vec<String>,
    /// Patterns of auditors.
    pub auditor: Vec<String>,
    /// Pattern -> the Object Groups an identity it matches is confined to (the union when
    /// several match).
    pub scopes: std::collections::BTreeMap<String, Vec<String>>,
}

/// The fields a pattern may name.
const PATTERN_FIELDS: [&str; 5] = ["identity", "cn", "ou", "san", "subject"];

impl RoleAssignments {
    /// Refuses a pattern that can never match (empty, or a field prefix with nothing after).
    pub fn validate(&self) -> Result<(), String> {
        let all = self
            .administrator
            .iter()
            .chain(&self.operator)
            .chain(&self.auditor)
            .chain(self.scopes.keys());
        for p in all {
            let glob = match p.split_once(':') {
                Some((field, glob)) if PATTERN_FIELDS.contains(&field) => glob,
                _ => p.as_str(),
            };
            if glob.is_empty() {
                return Err(format!("roles: empty pattern {p:?}"));
            }
        }
        for (p, groups) in &self.scopes {
            if groups.is_empty() || groups.iter().any(String::is_empty) {
                return Err(format!("roles.scopes: {p:?} names no Object Group"));
            }
        }
        Ok(())
    }

    /// The role of the identity these names belong to.
    pub fn role_of(&self, names: &CertNames) -> Role {
        let any = |list: &[String]| list.iter().any(|p| pattern_matches(p, names));
        if any(&self.administrator) {
            Role::Administrator
        } else if any(&self.operator) {
            Role::Operator
        } else if any(&self.auditor) {
            Role::Auditor
        } else {
            Role::Client
        }
    }

    /// The Object Groups the identity is confined to, if a scope pattern matches it.
    pub fn scope_of(&self, names: &CertNames) -> Option<Vec<String>> {
        let mut groups: Vec<String> = Vec::new();
        let mut matched = false;
        for (p, g) in &self.scopes {
            if pattern_matches(p, names) {
                matched = true;
                groups.extend(g.iter().cloned());
            }
        }
        groups.sort();
        groups.dedup();
        matched.then_some(groups)
    }

    /// The principal of the identity these names belong to: its role and scope.
    pub fn principal(&self, names: &CertNames) -> Principal {
        Principal::with_role(names.identity.clone(), self.role_of(names))
            .scoped(self.scope_of(names))
    }
}

/// Whether `pattern` (see [`RoleAssignments`]) matches the certificate's names.
pub fn pattern_matches(pattern: &str, names: &CertNames) -> bool {
    let any = |values: &[String], glob: &str| values.iter().any(|v| glob_matches(glob, v));
    match pattern.split_once(':') {
        Some(("identity", g)) => glob_matches(g, &names.identity),
        Some(("cn", g)) => any(&names.cn, g),
        Some(("ou", g)) => any(&names.ou, g),
        Some(("san", g)) => any(&names.san, g),
        Some(("subject", g)) => glob_matches(g, &names.subject),
        _ => glob_matches(pattern, &names.identity),
    }
}

/// `*` matches any run of characters (none included); everything else matches itself.
fn glob_matches(glob: &str, text: &str) -> bool {
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for m in middle {
        match rest.split_once(m) {
            Some((_, after)) => rest = after,
            None => return false,
        }
    }
    rest.ends_with(last)
}

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

/// True when `who` may perform `operation` on `object`: the role permits the operation, and
/// the caller is its owner, has a role that gives the operation on others' objects (within its
/// scope), or was granted the operation; and the request's narrowing (a credential, a
/// ticket's rights: `tickets.rs`) allows it.
pub fn may_access(who: &Principal, object: &ManagedObject, operation: u32) -> bool {
    base_access(who, object, operation)
        && who
            .narrowing()
            .is_none_or(|n| n.credential_allows(object) && n.rights_allow(operation, object))
}

/// [`may_access`] for the certificate identity, without what the request's header narrows
/// it by.
fn base_access(who: &Principal, object: &ManagedObject, operation: u32) -> bool {
    role_permits(who.role(), operation)
        && (object.owner == who.name()
            || (in_scope(who, object) && role_on_others(who.role(), operation))
            || grants(object)
                .iter()
                .any(|g| g.grantee == who.name() && g.operations.contains(&operation)))
}

/// True when `who` may manage the object's grants (and edit it through the engine's
/// library calls): its owner or an administrator (within its scope).
pub fn may_manage(who: &Principal, object: &ManagedObject) -> bool {
    object.owner == who.name() || (who.role() == Role::Administrator && in_scope(who, object))
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
