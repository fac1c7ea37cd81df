//! Revoke (KMIP 1.4 §4.20, 2.1 §6.1.44): a Key Compromise or CA Compromise reason makes the
//! object Compromised (Destroyed Compromised when it was Destroyed), sets Compromise Date = now
//! and Compromise Occurrence Date = the request's value, else the object's Initial Date; any
//! other reason makes an Active object Deactivated with Deactivation Date = now. The Revocation
//! Reason (code and optional message) is kept as the object's Revocation Reason attribute.
//!
//! Which states may be revoked is `lifecycle`'s table. Result reasons: Item/Object Not Found;
//! Permission Denied (1.x, 2.0) / Wrong Key Lifecycle State (2.1) for a refused transition;
//! Invalid Field for an unknown reason code, or a Compromise Occurrence Date given with a
//! reason other than a compromise ("SHALL NOT be specified").

use kmipd_proto::enums::revocation_reason_code as code;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::lifecycle::Event;
use crate::object::{resolve_uid, save_and_answer, transition_state};

/// Handles Revoke.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let reason_item = r.required(tag::REVOCATION_REASON)?;
    let reason = StructReader::new(reason_item, tag::REVOCATION_REASON)?;
    let reason_code = reason.req_enum(tag::REVOCATION_REASON_CODE)?;
    let defined = kmipd_proto::spec::enum_of_tag(tag::REVOCATION_REASON_CODE.value())
        .and_then(|e| e.entry(reason_code))
        .is_some_and(|e| e.defined_in(ctx.spec));
    if !defined {
        return Err(Error::InvalidField("Revocation Reason Code"));
    }
    // The message must be text when present.
    reason.text(tag::REVOCATION_MESSAGE)?;
    let occurrence = r.datetime(tag::COMPROMISE_OCCURRENCE_DATE)?;
    let compromise = matches!(reason_code, code::KEY_COMPROMISE | code::CA_COMPROMISE);
    if occurrence.is_some() && !compromise {
        return Err(Error::InvalidField(
            "Compromise Occurrence Date with a reason other than compromise",
        ));
    }

    let mut obj = ctx.load(&uid)?;
    let event = if compromise {
        Event::RevokeCompromise
    } else {
        Event::RevokeOther
    };
    transition_state(&mut obj, event)?;
    obj.attributes
        .set(tag::REVOCATION_REASON, reason_item.value.clone());
    if compromise {
        let initial = match obj.attributes.get(tag::INITIAL_DATE) {
            Some(Value::DateTime(d)) => Some(*d),
            _ => None,
        };
        obj.attributes
            .set(tag::COMPROMISE_DATE, Value::DateTime(ctx.now));
        if let Some(date) = occurrence.or(initial) {
            obj.attributes
                .set(tag::COMPROMISE_OCCURRENCE_DATE, Value::DateTime(date));
        }
    } else {
        obj.attributes
            .set(tag::DEACTIVATION_DATE, Value::DateTime(ctx.now));
    }
    Ok(Some(save_and_answer(ctx, obj, &uid)))
}
