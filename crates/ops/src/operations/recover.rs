//! Recover (KMIP 1.4 §4.23, 2.1 §6.1.45): an archived object returns to on-line storage: its
//! Archive Date is removed ("The server SHALL delete this attribute whenever a Recover
//! operation is performed", Archive Date, 1.4 §3.32), so Locate's default mask and Get see it
//! again (see `archive` for what archived means). Recovering an on-line object changes
//! nothing and succeeds: it is where the request wants it. Access and audit as Archive.

use kmipd_proto::attributes::AttrName;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::error::Result;
use crate::object::{resolve_uid, save_and_answer, uid_payload};
use crate::operations::archive::is_archived;

/// Handles Recover.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let mut obj = ctx.load(&uid)?;
    if !is_archived(&obj) {
        ctx.batch_uids.push(uid.clone());
        return Ok(Some(uid_payload(&uid)));
    }
    obj.attributes.remove_all(&AttrName::Std(tag::ARCHIVE_DATE));
    Ok(Some(save_and_answer(ctx, obj, &uid)))
}
