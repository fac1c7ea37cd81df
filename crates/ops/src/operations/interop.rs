//! Interop (KMIP 2.0 §6.1.26, 2.1 §6.1.26): test-harness control. Begin and End mark the
//! start and end of an interoperability test (identified by Interop Identifier) and change
//! nothing; Reset returns the server to a clean state for the caller: every object the caller
//! owns is deleted outright (not Destroyed: no metadata is left), so that the next test case
//! starts from an empty store as the OASIS cases assume (a Locate by Name expects one hit).
//!
//! Interop is a 2.x operation; the engine answers Operation Not Supported to a 1.x request.

use kmipd_proto::enums::interop_function as function;
use kmipd_proto::message::empty_payload;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::error::{Error, Result};
use kmipd_store::{Filter, Query};

/// Handles Interop.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let f = r.req_enum(tag::INTEROP_FUNCTION)?;
    r.text(tag::INTEROP_IDENTIFIER)?;
    match f {
        function::BEGIN | function::END => {}
        function::RESET => {
            let owner = ctx.principal.name().to_owned();
            let mine: Vec<String> = ctx
                .tx
                .find(&Query::new(vec![Filter::Owner(owner)]))?
                .into_iter()
                .map(|o| o.uid)
                .collect();
            for uid in mine {
                ctx.tx.delete(&uid);
            }
            ctx.id_placeholder = None;
        }
        _ => return Err(Error::InvalidField("Interop Function")),
    }
    Ok(Some(empty_payload(tag::RESPONSE_PAYLOAD)))
}
