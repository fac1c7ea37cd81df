//! Login tickets (KMIP 2.0/2.1 Login §6.1.30, Logout §6.1.31, Delegated Login §6.1.12) and
//! the narrowing of a request's identity by what its header carries.
//!
//! **What a ticket is.** Login and Delegated Login answer with a Ticket (Ticket Type Login, a
//! Ticket Value of 32 random bytes). A later request may carry it in its header as a
//! Credential of type Ticket; the request then runs as the identity that obtained the ticket,
//! narrowed by it ([`Narrowing`]). Logout ends a ticket.
//!
//! **Bound to the TLS identity.** The identity of a request always comes from its verified
//! client certificate. A ticket is kept under the certificate identity that obtained it and is
//! found only by requests of that same identity: presented by anyone else it is an Invalid
//! Ticket, exactly as a value never given. So a ticket never lets one certificate act as
//! another; it can only narrow what its own certificate may do:
//! - a Login ticket carries the narrowing of the request that obtained it (a Username and
//!   Password or Device credential, or the rights of the ticket it was obtained with);
//! - a Delegated Login ticket adds its Rights: a request with it may perform only the
//!   operations that at least one of its Right structures allows, on the objects and Object
//!   Groups the Right names (a field omitted is unrestricted, as the specification says), and
//!   never more than the certificate identity itself may (the rights are checked in addition
//!   to the role, owner and grants of `access.rs`). An operation outside the rights is Not
//!   Authorised. Usage Limits in a Right are refused (Feature Not Supported): kmipd does not
//!   count uses per right.
//!
//! **Bounds.** A ticket lives its Lease Time (0 or none: [`DEFAULT_LIFETIME_SECONDS`]; at most
//! [`MAX_LIFETIME_SECONDS`]) and serves at most its Request Count requests (0 or none:
//! unlimited within its lifetime); each request that presents it counts once, whatever it
//! does, and a request the engine runs again after a store conflict may count again (never
//! fewer). A ticket used up answers Usage Limit Exceeded until it expires; an expired, logged
//! out or unknown one answers Invalid Ticket. An identity holds at most
//! [`MAX_PER_IDENTITY`] live tickets (one more Login is refused with Permission Denied until
//! one expires or is logged out). Tickets live in the engine's memory only: a restart ends
//! them all (the client logs in again).
//!
//! Tickets are KMIP 2.x: the operations answer Operation Not Supported in 1.x, and a Ticket
//! credential is a 2.x Credential Type.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::{Ttlv, Value};

use crate::error::{Error, Result};

/// Lifetime of a ticket asked for without a Lease Time (or with 0), in seconds.
pub const DEFAULT_LIFETIME_SECONDS: i64 = 3600;
/// The longest lifetime a ticket gets, in seconds (a longer Lease Time is shortened).
pub const MAX_LIFETIME_SECONDS: i64 = 8 * 3600;
/// The most live tickets one identity may hold.
pub const MAX_PER_IDENTITY: usize = 64;
/// Length of a Ticket Value, in bytes.
const TICKET_LEN: usize = 32;

/// One Right of a Delegated Login (2.1 §7.34): what a ticket holder may do. `None` for a field
/// omitted: unrestricted in that respect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Right {
    /// The Operation enumeration values allowed.
    pub operations: Option<Vec<u32>>,
    /// The Unique Identifiers of the objects allowed.
    pub objects: Option<Vec<String>>,
    /// The Object Groups whose objects are allowed.
    pub object_groups: Option<Vec<String>>,
}

impl Right {
    /// Whether this right allows `operation` at all (whatever the object).
    fn allows_operation(&self, operation: u32) -> bool {
        self.operations
            .as_ref()
            .is_none_or(|ops| ops.contains(&operation))
    }

    /// Whether this right allows `operation` on `object`.
    fn allows(&self, operation: u32, object: &ManagedObject) -> bool {
        self.allows_operation(operation)
            && self
                .objects
                .as_ref()
                .is_none_or(|uids| uids.contains(&object.uid))
            && self.object_groups.as_ref().is_none_or(|groups| {
                object
                    .attributes
                    .all(&kmipd_proto::attributes::AttrName::Std(tag::OBJECT_GROUP))
                    .any(|v| matches!(v, Value::TextString(g) if groups.contains(g)))
            })
    }

    /// Reads a Right structure; Usage Limits are refused (not counted per right).
    fn read(item: &Ttlv) -> Result<Right> {
        let r = StructReader::new(item, tag::RIGHT)?;
        if r.optional(tag::USAGE_LIMITS).is_some() {
            return Err(Error::FeatureNotSupported("usage limits in a right"));
        }
        let operations = match r.structure(tag::OPERATIONS)? {
            Some(s) => Some(
                s.repeated(tag::OPERATION)
                    .map(kmipd_proto::reader::as_enum)
                    .collect::<std::result::Result<Vec<u32>, _>>()?,
            ),
            None => None,
        };
        let objects = match r.structure(tag::OBJECTS)? {
            Some(s) => Some(
                s.repeated(tag::UNIQUE_IDENTIFIER)
                    .map(|i| kmipd_proto::reader::as_text(i).map(str::to_owned))
                    .collect::<std::result::Result<Vec<String>, _>>()?,
            ),
            None => None,
        };
        let object_groups = match r.structure(tag::OBJECT_GROUPS)? {
            Some(s) => Some(
                s.repeated(tag::OBJECT_GROUP)
                    .map(|i| kmipd_proto::reader::as_text(i).map(str::to_owned))
                    .collect::<std::result::Result<Vec<String>, _>>()?,
            ),
            None => None,
        };
        Ok(Right {
            operations,
            objects,
            object_groups,
        })
    }
}

/// Reads the Rights structure of a Delegated Login (at least one Right).
pub(crate) fn read_rights(item: &Ttlv) -> Result<Vec<Right>> {
    let r = StructReader::new(item, tag::RIGHTS)?;
    let rights = r
        .repeated(tag::RIGHT)
        .map(Right::read)
        .collect::<Result<Vec<Right>>>()?;
    if rights.is_empty() {
        return Err(Error::InvalidField("Rights holds no Right"));
    }
    Ok(rights)
}

/// What narrows a request below its certificate identity: a verified credential of the header
/// (Username and Password, Device) and the rights of the Delegated Login tickets it came
/// through. Every part only takes away ([`crate::access::may_access`] checks them in addition
/// to the role, owner and grants).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Narrowing {
    /// The verified credential's label (`user:NAME`, `device:NAME`): objects created under a
    /// credential carry it ([`CREDENTIAL_ATTRIBUTE`]) and a request under another credential
    /// of the same certificate identity may not touch them.
    pub credential: Option<String>,
    /// The rights of each Delegated Login on the way; an operation must be allowed by one
    /// Right of every set.
    pub rights: Vec<Vec<Right>>,
}

/// The server-owned vendor attribute naming the credential an object was created under.
pub const CREDENTIAL_ATTRIBUTE: &str = "y-kmipd-credential";

impl Narrowing {
    /// Whether the rights allow `operation` at all (checked before an item runs).
    pub(crate) fn allows_operation(&self, operation: u32) -> bool {
        self.rights
            .iter()
            .all(|set| set.iter().any(|r| r.allows_operation(operation)))
    }

    /// Whether the rights allow `operation` on `object`.
    pub(crate) fn rights_allow(&self, operation: u32, object: &ManagedObject) -> bool {
        self.rights
            .iter()
            .all(|set| set.iter().any(|r| r.allows(operation, object)))
    }

    /// Whether the credential allows touching `object`: it was created under no credential, or
    /// under this one.
    pub(crate) fn credential_allows(&self, object: &ManagedObject) -> bool {
        let Some(mine) = &self.credential else {
            return true;
        };
        let name = kmipd_proto::attributes::AttrName::Custom {
            vendor: None,
            name: CREDENTIAL_ATTRIBUTE.to_owned(),
        };
        object
            .attributes
            .all(&name)
            .all(|v| matches!(v, Value::TextString(c) if c == mine))
    }
}

struct Ticket {
    narrowing: Arc<Narrowing>,
    expires: i64,
    /// Requests left; `None`: unlimited until it expires.
    remaining: Option<u32>,
}

/// The live tickets of every identity: identity -> Ticket Value -> ticket.
#[derive(Default)]
pub(crate) struct Tickets(Mutex<BTreeMap<String, BTreeMap<Vec<u8>, Ticket>>>);

impl Tickets {
    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeMap<Vec<u8>, Ticket>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new ticket for `who`, carrying `narrowing`, living `lease` seconds (0: the default)
    /// for `count` requests (0: unlimited). Permission Denied when `who` holds
    /// [`MAX_PER_IDENTITY`] live tickets.
    pub(crate) fn issue(
        &self,
        who: &str,
        narrowing: Narrowing,
        lease: i64,
        count: u32,
        now: i64,
    ) -> Result<Vec<u8>> {
        let lifetime = if lease <= 0 {
            DEFAULT_LIFETIME_SECONDS
        } else {
            lease.min(MAX_LIFETIME_SECONDS)
        };
        let mut value = vec![0u8; TICKET_LEN];
        openssl::rand::rand_bytes(&mut value)
            .map_err(|_| Error::Internal("random bytes for a ticket"))?;
        let mut table = self.table();
        let mine = table.entry(who.to_owned()).or_default();
        mine.retain(|_, t| t.expires > now);
        if mine.len() >= MAX_PER_IDENTITY {
            return Err(Error::PermissionDenied(
                "too many live tickets for this identity: log out of one first",
            ));
        }
        mine.insert(
            value.clone(),
            Ticket {
                narrowing: Arc::new(narrowing),
                expires: now.saturating_add(lifetime),
                remaining: (count > 0).then_some(count),
            },
        );
        Ok(value)
    }

    /// Presents `value` for one request of `who`: the ticket's narrowing, its count taken
    /// down by one. Invalid Ticket when `who` holds no live ticket of that value; Usage Limit
    /// Exceeded when it has served its Request Count.
    pub(crate) fn present(&self, who: &str, value: &[u8], now: i64) -> Result<Arc<Narrowing>> {
        let mut table = self.table();
        let ticket = table
            .get_mut(who)
            .and_then(|mine| mine.get_mut(value))
            .filter(|t| t.expires > now)
            .ok_or(Error::InvalidTicket)?;
        match ticket.remaining.as_mut() {
            Some(0) => Err(Error::UsageLimitExceeded),
            Some(n) => {
                *n = n.saturating_sub(1);
                Ok(Arc::clone(&ticket.narrowing))
            }
            None => Ok(Arc::clone(&ticket.narrowing)),
        }
    }

    /// Ends `who`'s ticket `value`; Invalid Ticket when there is no such live ticket.
    pub(crate) fn logout(&self, who: &str, value: &[u8], now: i64) -> Result<()> {
        let mut table = self.table();
        let mine = table.get_mut(who).ok_or(Error::InvalidTicket)?;
        let removed = mine.remove(value).ok_or(Error::InvalidTicket)?;
        if mine.is_empty() {
            table.remove(who);
        }
        if removed.expires > now {
            Ok(())
        } else {
            Err(Error::InvalidTicket)
        }
    }
}

/// Reads a Ticket structure: its Ticket Value (Ticket Type must be Login).
pub(crate) fn read_ticket(item: &Ttlv) -> Result<Vec<u8>> {
    let r = StructReader::new(item, tag::TICKET)?;
    if r.req_enum(tag::TICKET_TYPE)? != kmipd_proto::enums::ticket_type::LOGIN {
        return Err(Error::InvalidTicket);
    }
    Ok(r.req_bytes(tag::TICKET_VALUE)?.to_vec())
}

/// The Ticket structure of a value.
pub(crate) fn ticket_item(value: Vec<u8>) -> Ttlv {
    kmipd_proto::build::structure(
        tag::TICKET,
        vec![
            kmipd_proto::build::enumeration(
                tag::TICKET_TYPE,
                kmipd_proto::enums::ticket_type::LOGIN,
            ),
            kmipd_proto::build::bytes(tag::TICKET_VALUE, value),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::{MAX_PER_IDENTITY, Narrowing, Tickets};
    use crate::error::Error;

    #[test]
    fn a_ticket_is_its_identitys_counted_and_expires() {
        let t = Tickets::default();
        let v = t.issue("a", Narrowing::default(), 10, 2, 100).unwrap();
        assert_eq!(v.len(), 32);
        // Another identity never finds it.
        assert!(matches!(t.present("b", &v, 101), Err(Error::InvalidTicket)));
        assert!(t.present("a", &v, 101).is_ok());
        assert!(t.present("a", &v, 102).is_ok());
        assert!(matches!(
            t.present("a", &v, 103),
            Err(Error::UsageLimitExceeded)
        ));
        // Unlimited count, but the lease ends it.
        let u = t.issue("a", Narrowing::default(), 10, 0, 100).unwrap();
        for now in 100..110 {
            assert!(t.present("a", &u, now).is_ok());
        }
        assert!(matches!(t.present("a", &u, 110), Err(Error::InvalidTicket)));
        // Logout ends it; only its identity can log it out.
        let w = t.issue("a", Narrowing::default(), 0, 0, 100).unwrap();
        assert!(matches!(t.logout("b", &w, 101), Err(Error::InvalidTicket)));
        t.logout("a", &w, 101).unwrap();
        assert!(matches!(t.present("a", &w, 101), Err(Error::InvalidTicket)));
    }

    #[test]
    fn live_tickets_per_identity_are_bounded() {
        let t = Tickets::default();
        for _ in 0..MAX_PER_IDENTITY {
            t.issue("a", Narrowing::default(), 100, 0, 0).unwrap();
        }
        assert!(matches!(
            t.issue("a", Narrowing::default(), 100, 0, 0),
            Err(Error::PermissionDenied(_))
        ));
        // Another identity is not affected; once they expire, new ones are given.
        assert!(t.issue("b", Narrowing::default(), 100, 0, 0).is_ok());
        assert!(t.issue("a", Narrowing::default(), 100, 0, 100).is_ok());
    }

    #[test]
    fn the_lease_is_capped() {
        let t = Tickets::default();
        let v = t
            .issue("a", Narrowing::default(), i64::from(u32::MAX), 0, 0)
            .unwrap();
        assert!(t.present("a", &v, super::MAX_LIFETIME_SECONDS - 1).is_ok());
        assert!(matches!(
            t.present("a", &v, super::MAX_LIFETIME_SECONDS),
            Err(Error::InvalidTicket)
        ));
    }
}
