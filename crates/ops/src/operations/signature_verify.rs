//! Signature Verify (KMIP 1.4 §4.32, 2.1 §6.1.51): checks Signature Data over Data or Digested
//! Data with a public key (or a private key's public half) whose usage mask has Verify. The
//! answer is a Validity Indicator; a wrong signature is Invalid, not an error. Streamed
//! (`operations::streaming`, as Sign), the Signature Data may come with any part (the latest
//! counts) and is checked at the last one; the parts before answer the Correlation Value.

use kmipd_proto::build;
use kmipd_proto::enums::{cryptographic_usage_mask as mask, operation as op, validity_indicator};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::crypto::asym::{self, Input};
use crate::crypto::params::Params;
use crate::crypto::usage::Use;
use crate::error::{Error, Result};
use crate::object::uid_item;
use crate::operations::sign::{Part, signature_part, signed_input};
use crate::operations::streaming::{self, Step};

/// Handles Signature Verify.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let step = streaming::step(ctx, &r, op::SIGNATURE_VERIFY)?;
    let prior = step.stream();
    let key = streaming::key(ctx, &r, prior, mask::VERIFY, Use::Process)?;
    if !matches!(step, Step::Single) {
        return match signature_part(ctx, &r, &key, op::SIGNATURE_VERIFY, step)? {
            Part::More(value) => Ok(Some(build::structure(
                tag::RESPONSE_PAYLOAD,
                vec![uid_item(&key.obj.uid), streaming::correlation_item(value)],
            ))),
            Part::Last {
                digest,
                params,
                expected,
            } => {
                let sig = expected.ok_or(Error::MissingData("Signature Data"))?;
                let scheme = asym::scheme(&params, key.algorithm)?;
                let input = Input::Digest(&digest);
                let valid =
                    asym::verify(&key.obj.uid, &key.material, scheme, &params, input, &sig)?;
                Ok(Some(validity_payload(&key.obj.uid, valid)))
            }
        };
    }
    let params = Params::in_request(&r)?.or(&key.params);
    let input = signed_input(&r)?;
    let sig = r
        .bytes(tag::SIGNATURE_DATA)?
        .ok_or(Error::MissingData("Signature Data"))?;
    let scheme = asym::scheme(&params, key.algorithm)?;
    let valid = asym::verify(&key.obj.uid, &key.material, scheme, &params, input, sig)?;
    Ok(Some(validity_payload(&key.obj.uid, valid)))
}

/// The answer of Signature Verify and MAC Verify: the key's Unique Identifier and the Validity
/// Indicator (Valid or Invalid).
pub(crate) fn validity_payload(uid: &str, valid: bool) -> Ttlv {
    let indicator = if valid {
        validity_indicator::VALID
    } else {
        validity_indicator::INVALID
    };
    build::structure(
        tag::RESPONSE_PAYLOAD,
        vec![
            uid_item(uid),
            build::enumeration(tag::VALIDITY_INDICATOR, indicator),
        ],
    )
}
