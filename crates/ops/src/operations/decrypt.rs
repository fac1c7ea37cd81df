//! Decrypt (KMIP 1.4 §4.30, 2.1 §6.1.12): see `crate::crypto::cipher_op`, shared with
//! Encrypt.

use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::crypto::{cipher_op, sym::Dir};
use crate::error::Result;

/// Handles Decrypt.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    cipher_op::handle(ctx, payload, Dir::Decrypt)
}
