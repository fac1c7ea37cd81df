//! Key export protection for Get: Sensitive and Extractable (1.4+), and wrapping a key with
//! another key per a Key Wrapping Specification.

use kmipd_proto::attributes::Attributes;
use kmipd_proto::enums::key_wrap_type;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::{Ttlv, Value};

use crate::context::Ctx;
use crate::error::{Error, Result};

fn flag(attrs: &Attributes, t: kmipd_ttlv::Tag) -> Option<bool> {
    match attrs.get(t) {
        Some(Value::Boolean(b)) => Some(*b),
        _ => None,
    }
}

/// A key may leave in the clear unless it is Sensitive or not Extractable.
pub(crate) fn check_exportable(obj: &ManagedObject) -> Result<()> {
    if flag(&obj.attributes, tag::SENSITIVE) == Some(true) {
        return Err(Error::Sensitive);
    }
    if flag(&obj.attributes, tag::EXTRACTABLE) == Some(false) {
        return Err(Error::NotExtractable);
    }
    Ok(())
}

/// Key Wrap Type without a wrapping specification: Not Wrapped and As Registered both give
/// the key as stored.
pub(crate) fn stored_wrap(object: Ttlv, wrap_type: Option<u32>) -> Result<Ttlv> {
    match wrap_type {
        None | Some(key_wrap_type::NOT_WRAPPED | key_wrap_type::AS_REGISTERED) => Ok(object),
        Some(_) => Err(Error::InvalidField("Key Wrap Type")),
    }
}

/// The object with its Key Block wrapped per `spec`.
pub(crate) fn wrap_object(
    _ctx: &Ctx<'_>,
    obj: &ManagedObject,
    _object: Ttlv,
    _spec: &Ttlv,
) -> Result<Ttlv> {
    if flag(&obj.attributes, tag::EXTRACTABLE) == Some(false) {
        return Err(Error::NotExtractable);
    }
    Err(Error::FeatureNotSupported("key wrapping"))
}
