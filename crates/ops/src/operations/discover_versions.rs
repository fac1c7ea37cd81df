//! Discover Versions (KMIP 1.4 §4.26, 2.1 §6.1.16): the protocol versions this server speaks.
//!
//! - The client lists versions: those of its list that the server supports, in the client's
//!   order (its order of preference); an empty answer when none is supported.
//! - The client lists none: the served versions up to the request's own version, in the
//!   configured order (newest first by default). The specification says the server SHOULD
//!   list all it supports; the KMIP Test Cases notes (TC-161 for 1.1 and 1.2, TC-Q-S2C-2 for
//!   1.4) answer exactly the versions up to the request's, and a client that speaks newer
//!   versions names them in its list, so this is what kmipd answers: a 1.2 client that sends
//!   no list is not offered versions it cannot know.

use kmipd_proto::build;
use kmipd_proto::message::ProtocolVersion;
use kmipd_proto::reader::StructReader;
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
        // In the configured order (the server's preference, newest first by default).
        served
            .iter()
            .copied()
            .filter(|v| *v <= ctx.version)
            .collect()
    } else {
        asked.into_iter().filter(|v| served.contains(v)).collect()
    };
    Ok(Some(build::structure(
        tag::RESPONSE_PAYLOAD,
        versions.into_iter().map(ProtocolVersion::to_ttlv).collect(),
    )))
}
