//! Log (KMIP 2.0 §6.1.29, 2.1 §6.1.29): the client asks the server to log a message.
//!
//! The engine does no I/O and keeps no audit trail, so a well-formed Log Message is accepted
//! and answered with success and an empty payload; nothing is recorded. (A server that keeps
//! an audit log would record the text here; the message is client-controlled and must be
//! treated as untrusted data there.) Log is a 2.x operation; the engine answers Operation Not
//! Supported to a 1.x request.

use kmipd_proto::message::empty_payload;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::error::Result;

/// Handles Log.
pub(crate) fn handle(_ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    r.req_text(tag::LOG_MESSAGE)?;
    Ok(Some(empty_payload(tag::RESPONSE_PAYLOAD)))
}
