//! RNG Retrieve (KMIP 1.3 §4.35, 2.1 §6.1.45): Data Length bytes from OpenSSL's DRBG
//! (SP 800-90A CTR_DRBG with AES-256, seeded from the OS; the same source as new keys,
//! `crate::crypto::keygen::symmetric`), at most 1 MiB per request.

use kmipd_proto::build;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::crypto::keygen;
use crate::error::{Error, Result};

/// The largest Data Length served.
const MAX_LEN: usize = 1 << 20;

/// Handles RNG Retrieve.
pub(crate) fn handle(_ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let len = r.req_int(tag::DATA_LENGTH)?;
    let len = usize::try_from(len).map_err(|_| Error::InvalidField("Data Length"))?;
    if len == 0 || len > MAX_LEN {
        return Err(Error::InvalidField("Data Length"));
    }
    let data = keygen::symmetric(len)?;
    Ok(Some(build::structure(
        tag::RESPONSE_PAYLOAD,
        vec![build::bytes(tag::DATA, data.to_vec())],
    )))
}
