//! Archive (KMIP 1.4 §4.22, 2.1 §6.1.4): the object leaves on-line storage for archival
//! storage. kmipd keeps one store: an archived object is the same record with an Archive Date
//! (set here, to now), so its key material stays exactly as stored (encrypted at rest by the
//! store's backend, never unwrapped here), and it persists through the `ObjectStore` like
//! any change. What "archived" means to the other operations:
//! - Locate's default Storage Status Mask (on-line only) does not see it; the Archival Storage
//!   bit does (`locate::in_storage`);
//! - Get answers Object Archived (`get`); Get Attributes and the other attribute operations
//!   still answer (TC_101 reads the Archive Date of an archived key);
//! - Recover (`recover`) brings it back on-line and removes the Archive Date.
//!
//! The State does not change. Archiving an archived object is Object Archived; a destroyed
//! object may be archived too (its metadata is all that is left). Access: the owner, an
//! administrator, or a grantee of Archive (`access`); the server's audit log records it as
//! every operation.

use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::object::{resolve_uid, save_and_answer};

/// Handles Archive.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = resolve_uid(ctx, &r)?;
    let mut obj = ctx.load(&uid)?;
    if is_archived(&obj) {
        return Err(Error::ObjectArchived);
    }
    obj.attributes
        .set(tag::ARCHIVE_DATE, Value::DateTime(ctx.now));
    Ok(Some(save_and_answer(ctx, obj, &uid)))
}

/// Whether the object is in archival storage (it has an Archive Date).
pub(crate) fn is_archived(obj: &kmipd_store::ManagedObject) -> bool {
    obj.attributes.get(tag::ARCHIVE_DATE).is_some()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kmipd_proto::enums::{operation as op, result_reason as rr, result_status as rs};
    use kmipd_proto::tag;
    use kmipd_store::ObjectStore;
    use kmipd_ttlv::{Ttlv, Value};

    use crate::attrs::testing::{key, store};
    use crate::engine::testing::call;
    use crate::{Engine, EngineConfig};

    fn uid() -> Vec<Ttlv> {
        vec![Ttlv::new(
            tag::UNIQUE_IDENTIFIER,
            Value::TextString("k1".to_owned()),
        )]
    }

    /// How many objects Locate finds, with this Storage Status Mask when given.
    fn located(engine: &Engine, version: (i32, i32), mask: Option<i32>) -> usize {
        let payload = mask
            .map(|m| vec![Ttlv::new(tag::STORAGE_STATUS_MASK, Value::Integer(m))])
            .unwrap_or_default();
        let (status, _, payload) = call(engine, version, op::LOCATE, payload);
        assert_eq!(status, rs::SUCCESS);
        payload.map_or(0, |p| match p.value {
            Value::Structure(items) => items
                .iter()
                .filter(|c| c.tag == tag::UNIQUE_IDENTIFIER)
                .count(),
            _ => 0,
        })
    }

    #[test]
    fn archive_hides_from_locate_refuses_get_and_recover_brings_it_back() {
        for version in [(1, 4), (2, 1)] {
            // `call` asks as principal "a", the owner of k1.
            let objects = Arc::new(store(vec![key("k1", "a", 1, None)]));
            let engine = Engine::new(objects.clone(), EngineConfig::default());
            assert_eq!(located(&engine, version, None), 1);
            let (status, reason, _) = call(&engine, version, op::ARCHIVE, uid());
            assert_eq!((status, reason), (rs::SUCCESS, None));
            // Archived: out of the default Locate set, in the archival one; Get refused.
            assert_eq!(located(&engine, version, None), 0);
            assert_eq!(located(&engine, version, Some(2)), 1);
            assert_eq!(located(&engine, version, Some(1 | 2)), 1);
            let (status, reason, _) = call(&engine, version, op::GET, uid());
            assert_eq!(
                (status, reason),
                (rs::OPERATION_FAILED, Some(rr::OBJECT_ARCHIVED))
            );
            // Stored with its Archive Date (the record itself, as any backend keeps it).
            let stored = objects.get("k1").unwrap().unwrap();
            assert!(stored.attributes.get(tag::ARCHIVE_DATE).is_some());
            assert!(stored.object.is_some());
            // Archiving twice: Object Archived.
            let (status, reason, _) = call(&engine, version, op::ARCHIVE, uid());
            assert_eq!(
                (status, reason),
                (rs::OPERATION_FAILED, Some(rr::OBJECT_ARCHIVED))
            );

            let (status, reason, _) = call(&engine, version, op::RECOVER, uid());
            assert_eq!((status, reason), (rs::SUCCESS, None));
            assert_eq!(located(&engine, version, None), 1);
            assert_eq!(located(&engine, version, Some(2)), 0);
            let (status, reason, _) = call(&engine, version, op::GET, uid());
            assert_eq!((status, reason), (rs::SUCCESS, None));
        }
    }

    #[test]
    fn only_the_owner_archives() {
        let engine = Engine::new(
            Arc::new(store(vec![key("k1", "someone else", 1, None)])),
            EngineConfig::default(),
        );
        for o in [op::ARCHIVE, op::RECOVER] {
            let (status, reason, _) = call(&engine, (1, 4), o, uid());
            assert_eq!(
                (status, reason),
                (rs::OPERATION_FAILED, Some(rr::ITEM_NOT_FOUND))
            );
        }
    }
}
