//! MAC Verify (KMIP 1.4 §4.34, 2.1 §6.1.30): checks MAC Data over Data (constant-time compare)
//! with a key whose usage mask has MAC Verify; answers a Validity Indicator. Streamed
//! (`operations::streaming`), the MAC Data may come with any part (the latest counts) and is
//! checked at the last one; the parts before answer the Correlation Value.

use kmipd_proto::build;
use kmipd_proto::enums::{cryptographic_usage_mask as mask, operation as op};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::crypto::digest;
use crate::crypto::stream::same_mac;
use crate::crypto::usage::Use;
use crate::error::{Error, Result};
use crate::object::uid_item;
use crate::operations::mac::{Part, mac_algorithm, mac_part};
use crate::operations::signature_verify::validity_payload;
use crate::operations::streaming::{self, Step};

/// Handles MAC Verify.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let step = streaming::step(ctx, &r, op::MAC_VERIFY)?;
    let prior = step.stream();
    let key = streaming::key(ctx, &r, prior, mask::MAC_VERIFY, Use::Process)?;
    if matches!(step, Step::Single) {
        let algorithm = mac_algorithm(&r, &key)?;
        let data = r.bytes(tag::DATA)?.ok_or(Error::MissingData("Data"))?;
        let mac = r
            .bytes(tag::MAC_DATA)?
            .ok_or(Error::MissingData("MAC Data"))?;
        let valid = digest::hmac_verify(algorithm, &key.material, data, mac)?;
        return Ok(Some(validity_payload(&key.obj.uid, valid)));
    }
    match mac_part(ctx, &r, &key, op::MAC_VERIFY, step)? {
        Part::More(value) => Ok(Some(build::structure(
            tag::RESPONSE_PAYLOAD,
            vec![uid_item(&key.obj.uid), streaming::correlation_item(value)],
        ))),
        Part::Last { mac, expected } => {
            let expected = expected.ok_or(Error::MissingData("MAC Data"))?;
            Ok(Some(validity_payload(
                &key.obj.uid,
                same_mac(&mac, &expected),
            )))
        }
    }
}
