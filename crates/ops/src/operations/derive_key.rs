//! DeriveKey: not implemented yet.

use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::error::{Error, Result};

/// Handles DeriveKey.
pub(crate) fn handle(_ctx: &mut Ctx<'_>, _payload: &Ttlv) -> Result<Option<Ttlv>> {
    Err(Error::OperationNotSupported)
}
