//! RNG Seed (KMIP 1.4 §4.36, 2.1 §6.1.46): the client offers seeding material; the answer's
//! Data Length is how much of it the server used.
//!
//! kmipd uses none of it and answers Data Length 0, as the spec allows ("The server MAY elect to
//! ignore the information provided by the client ... by returning zero as the value in the Data
//! Length response"): its generator is OpenSSL's CTR-DRBG seeded from the operating system
//! (`crate::crypto::keygen`), and bytes from a client are not entropy the server can vouch for.
//! Since the request changes nothing, any authenticated client may send it; it is audited as
//! every request is. The Data is still required (Invalid Field when missing or empty), so a
//! malformed request is not acknowledged as if it had been accepted.

use kmipd_proto::build;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::error::{Error, Result};

/// Handles RNG Seed.
pub(crate) fn handle(_ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let data = r.bytes(tag::DATA)?.ok_or(Error::MissingData("Data"))?;
    if data.is_empty() {
        return Err(Error::InvalidField("Data"));
    }
    Ok(Some(build::structure(
        tag::RESPONSE_PAYLOAD,
        vec![build::int(tag::DATA_LENGTH, 0)],
    )))
}
