//! The checks every cryptographic operation makes on its key before using it, in one place:
//! the object is a key with material, its State allows the use, the Process Start Date and
//! Protect Stop Date allow it, its Cryptographic Usage Mask includes the use, and its Usage
//! Limits are not exhausted.
//!
//! - *Protect* uses (Encrypt, Sign, MAC) need an Active key before its Protect Stop Date.
//! - *Process* uses (Decrypt, Signature Verify, MAC Verify) also accept Deactivated and
//!   Compromised keys (KMIP 1.4 §3.22 / 2.1 §4.57: such keys may still process protected
//!   data), from the Process Start Date on.
//!
//! A State or date refusal is [`Error::WrongState`] (1.x, 2.0: Permission Denied; 2.1: Wrong
//! Key Lifecycle State, as CS-BC-M-14 and CS-AC-M-8 expect); a mask refusal is
//! [`Error::IncompatibleUsageMask`]; exhausted Usage Limits are Permission Denied in every
//! version (CS-BC-M-7).

use kmipd_proto::enums::{state, usage_limits_unit};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::Value;
use zeroize::Zeroizing;

use super::params::Params;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::keyblock::{key_block, object_body};
use crate::object::{apply_dates, current_state, resolve_uid};

/// How an operation uses a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// Encrypt, Sign, MAC.
    Protect,
    /// Decrypt, Signature Verify, MAC Verify.
    Process,
}

/// A key ready for a cryptographic operation.
pub(crate) struct Key {
    /// The managed object.
    pub(crate) obj: ManagedObject,
    /// The key block's Cryptographic Algorithm.
    pub(crate) algorithm: Option<u32>,
    /// The key bytes (Raw/Transparent Symmetric key, or the DER of an asymmetric key).
    pub(crate) material: Zeroizing<Vec<u8>>,
    /// The key's Cryptographic Parameters attribute (first instance), for defaults.
    pub(crate) params: Params,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("uid", &self.obj.uid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Loads the key the request names (or the ID Placeholder), checks that it may be used for
/// `mask` (a Cryptographic Usage Mask bit) in the way `how`, and records it as the ID
/// Placeholder.
pub(crate) fn load(ctx: &mut Ctx<'_>, r: &StructReader<'_>, mask: u32, how: Use) -> Result<Key> {
    let uid = resolve_uid(ctx, r)?;
    let mut obj = ctx.load(&uid)?;
    apply_dates(&mut obj, ctx.now);
    let st = current_state(&obj).ok_or(Error::Internal("object without State"))?;
    let allowed = match how {
        Use::Protect => st == state::ACTIVE,
        Use::Process => matches!(st, state::ACTIVE | state::DEACTIVATED | state::COMPROMISED),
    };
    if !allowed {
        return Err(
            if matches!(st, state::DESTROYED | state::DESTROYED_COMPROMISED) {
                Error::Destroyed
            } else {
                Error::WrongState("the key's State does not allow this use")
            },
        );
    }
    let date = |t| match obj.attributes.get(t) {
        Some(Value::DateTime(d)) => Some(*d),
        _ => None,
    };
    match how {
        Use::Protect if date(tag::PROTECT_STOP_DATE).is_some_and(|d| d <= ctx.now) => {
            return Err(Error::WrongState("the key's Protect Stop Date has passed"));
        }
        Use::Process if date(tag::PROCESS_START_DATE).is_some_and(|d| d > ctx.now) => {
            return Err(Error::WrongState(
                "the key's Process Start Date is not reached",
            ));
        }
        _ => {}
    }
    if let Some(Value::Integer(m)) = obj.attributes.get(tag::CRYPTOGRAPHIC_USAGE_MASK) {
        let m = u32::from_ne_bytes(m.to_ne_bytes());
        if m & mask == 0 {
            return Err(Error::IncompatibleUsageMask);
        }
    }
    let body = object_body(&obj)?;
    let kb = key_block(body)?;
    if kb.wrapped {
        return Err(Error::KeyValueNotPresent);
    }
    // Secret Data carries no algorithm in its Key Block: its attribute's (a One Time Pad).
    let algorithm = kb
        .algorithm
        .or(match obj.attributes.get(tag::CRYPTOGRAPHIC_ALGORITHM) {
            Some(Value::Enumeration(a)) => Some(*a),
            _ => None,
        });
    let material = kb.bytes()?;
    let params = Params::of_object(&obj.attributes)?;
    ctx.set_placeholder(&uid);
    Ok(Key {
        obj,
        algorithm,
        material,
        params,
    })
}

/// Counts one use of `bytes` bytes against the key's Usage Limits (when it has them), and
/// stores the new count; refuses the use when the limit would be exceeded.
pub(crate) fn consume(ctx: &mut Ctx<'_>, key: &Key, bytes: usize) -> Result<()> {
    let Some(limits) = key.obj.attributes.get(tag::USAGE_LIMITS) else {
        return Ok(());
    };
    let item = kmipd_ttlv::Ttlv::new(tag::USAGE_LIMITS, limits.clone());
    let r = StructReader::any(&item)?;
    let total = r.long(tag::USAGE_LIMITS_TOTAL)?;
    let count = r.long(tag::USAGE_LIMITS_COUNT)?.or(total);
    if count.is_none() {
        return Ok(());
    }
    let unit = r.enumeration(tag::USAGE_LIMITS_UNIT)?;
    let need = match unit {
        Some(usage_limits_unit::OBJECT) => 1,
        _ => i64::try_from(bytes).map_err(|_| Error::InvalidField("Data"))?,
    };
    draw(ctx, &key.obj.uid, need)
}

/// Takes `need` units from the Usage Limits Count of object `uid` (which has Usage Limits) and
/// stores the new count; Permission Denied (every version, CS-BC-M-7 and TC_51) when fewer are
/// left. Protecting uses and Get Usage Allocation both draw here.
pub(crate) fn draw(ctx: &mut Ctx<'_>, uid: &str, need: i64) -> Result<()> {
    let mut obj = ctx.load(uid)?;
    let Some(limits) = obj.attributes.get(tag::USAGE_LIMITS) else {
        return Err(Error::PermissionDenied("the object has no Usage Limits"));
    };
    let item = kmipd_ttlv::Ttlv::new(tag::USAGE_LIMITS, limits.clone());
    let r = StructReader::any(&item)?;
    let total = r.long(tag::USAGE_LIMITS_TOTAL)?;
    let count = r
        .long(tag::USAGE_LIMITS_COUNT)?
        .or(total)
        .ok_or(Error::PermissionDenied("the object has no Usage Limits"))?;
    if need > count {
        return Err(Error::PermissionDenied(
            "the key's Usage Limits are exhausted",
        ));
    }
    let unit = r.optional(tag::USAGE_LIMITS_UNIT).map(|u| u.value.clone());
    let value =
        crate::attrs::usage_limits(total.unwrap_or(count), count.saturating_sub(need), unit);
    obj.attributes.set(tag::USAGE_LIMITS, value);
    ctx.tx.put(obj);
    Ok(())
}
