//! Discover Versions (KMIP 1.4 §4.26, 2.1 §6.1.19): the protocol versions this server speaks,
//! newest first; when the client lists versions, those of its list that the server supports,
//! in the client's order.

use kmipd_proto::message::ProtocolVersion;
use kmipd_proto::reader::{self, StructReader};
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::error::Result;

/// Handles Discover Versions.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let asked = r
        .repeated(tag::PROTOCOL_VERSION)
        .map(ProtocolVersion::from_ttlv)
        .collect::<Result<Vec<_>, _>>()?;
    let served = &ctx.config.versions;
    let versions: Vec<ProtocolVersion> = if asked.is_empty() {
        served.clone()
    } else {
        asked.into_iter().filter(|v| served.contains(v)).collect()
    };
    Ok(Some(reader::structure(
        tag::RESPONSE_PAYLOAD,
        versions.into_iter().map(ProtocolVersion::to_ttlv).collect(),
    )))
}
