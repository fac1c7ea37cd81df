//! Get Constraints (KMIP 2.0/2.1 §6.1.22): the server's constraints on new objects, as Set
//! Constraints set them (`constraints.rs`); an empty Constraints structure when there are none.

use kmipd_proto::build;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::error::Result;

/// Handles Get Constraints.
pub(crate) fn handle(ctx: &mut Ctx<'_>, _payload: &Ttlv) -> Result<Option<Ttlv>> {
    let constraints = crate::constraints::stored(&ctx.tx)?;
    Ok(Some(build::structure(
        tag::RESPONSE_PAYLOAD,
        vec![constraints],
    )))
}
