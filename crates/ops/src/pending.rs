//! Asynchronous operations (KMIP 1.4 §7.6 / 2.1 §8.6, Poll 1.4 §4.27, Cancel 1.4 §4.26): a
//! request whose header carries Asynchronous Indicator true and that holds one batch item
//! (not Poll or Cancel) is not run at once: the engine answers Result Status Operation
//! Pending with a fresh Asynchronous Correlation Value (16 random bytes), and keeps the item
//! here. Poll with that value runs it then, as the polling identity at the Poll's time, and
//! answers with the item's own Operation and result; Cancel drops it (Cancellation Result
//! Canceled: it never ran). A request of several items runs synchronously, as a server MAY
//! (their ID Placeholder ties them together).
//!
//! Pending items belong to the identity that sent them (the principal's name): Poll and
//! Cancel from any connection of that identity find them, and nobody else's (another
//! identity gets Invalid Asynchronous Correlation Value, 2.x, or Item Not Found, 1.x, as
//! for a value never given). Bounds: at most [`MAX_PER_IDENTITY`] pending items per
//! identity (beyond that, requests run synchronously) and each lives [`LIFETIME_SECONDS`].
//! Pending items live in the engine's memory only: a restart forgets them (they never ran,
//! so nothing of them was stored; the client's Poll then gets the error above).
//!
//! A polled or canceled item leaves the table only once the Poll's request has completed
//! (its changes durable): a Poll run again after a store conflict ([`crate::Retry`]) finds
//! it still there. Two Polls of one value at the same moment may both run it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use kmipd_proto::message::RequestBatchItem;

/// The most items one identity may have pending.
pub(crate) const MAX_PER_IDENTITY: usize = 64;
/// How long a pending item waits for its Poll, in seconds.
pub(crate) const LIFETIME_SECONDS: i64 = 3600;

struct Entry {
    item: RequestBatchItem,
    created: i64,
}

/// The pending items of every identity: name -> correlation value -> item.
#[derive(Default)]
pub(crate) struct Pending(Mutex<BTreeMap<String, BTreeMap<Vec<u8>, Entry>>>);

impl Pending {
    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeMap<Vec<u8>, Entry>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `item` for `who`; its Asynchronous Correlation Value, or `None` when `who`
    /// already has [`MAX_PER_IDENTITY`] items pending.
    pub(crate) fn defer(&self, who: &str, item: RequestBatchItem, now: i64) -> Option<Vec<u8>> {
        let mut table = self.table();
        let mine = table.entry(who.to_owned()).or_default();
        mine.retain(|_, e| now.saturating_sub(e.created) < LIFETIME_SECONDS);
        if mine.len() >= MAX_PER_IDENTITY {
            return None;
        }
        let value = uuid::Uuid::new_v4().as_bytes().to_vec();
        mine.insert(value.clone(), Entry { item, created: now });
        Some(value)
    }

    /// `who`'s pending item under `value`, if it exists and has not expired.
    pub(crate) fn peek(&self, who: &str, value: &[u8], now: i64) -> Option<RequestBatchItem> {
        let table = self.table();
        let entry = table.get(who)?.get(value)?;
        (now.saturating_sub(entry.created) < LIFETIME_SECONDS).then(|| entry.item.clone())
    }

    /// Forgets `who`'s item under `value` (polled or canceled).
    pub(crate) fn remove(&self, who: &str, value: &[u8]) {
        let mut table = self.table();
        if let Some(mine) = table.get_mut(who) {
            mine.remove(value);
            if mine.is_empty() {
                table.remove(who);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kmipd_proto::message::RequestBatchItem;

    use super::{LIFETIME_SECONDS, MAX_PER_IDENTITY, Pending};

    fn item(operation: u32) -> RequestBatchItem {
        RequestBatchItem {
            operation,
            ephemeral: None,
            unique_batch_item_id: None,
            payload: None,
            message_extension: None,
        }
    }

    #[test]
    fn items_are_the_owners_bounded_and_expire() {
        let p = Pending::default();
        let v = p.defer("alice", item(8), 100).unwrap();
        assert_eq!(p.peek("alice", &v, 101).map(|i| i.operation), Some(8));
        assert!(p.peek("bob", &v, 101).is_none());
        assert!(p.peek("alice", &v, 100 + LIFETIME_SECONDS).is_none());
        p.remove("alice", &v);
        assert!(p.peek("alice", &v, 101).is_none());
        for _ in 0..MAX_PER_IDENTITY {
            assert!(p.defer("carol", item(8), 100).is_some());
        }
        assert!(p.defer("carol", item(8), 100).is_none());
        // Expired items make room.
        assert!(p.defer("carol", item(8), 100 + LIFETIME_SECONDS).is_some());
    }

    /// A one-item request of 1.4 with Asynchronous Indicator true.
    fn asynchronous(op: u32, payload: Vec<kmipd_ttlv::Ttlv>) -> kmipd_ttlv::Ttlv {
        let mut req = crate::engine::testing::request(1, 4, op, payload);
        if let kmipd_ttlv::Value::Structure(parts) = &mut req.value
            && let Some(kmipd_ttlv::Value::Structure(header)) =
                parts.first_mut().map(|h| &mut h.value)
        {
            header.push(kmipd_proto::build::boolean(
                kmipd_proto::tag::ASYNCHRONOUS_INDICATOR,
                true,
            ));
        }
        req
    }

    #[test]
    fn pending_items_run_at_poll_for_their_identity_only_once() {
        use kmipd_proto::enums::{operation as op, result_reason as rr, result_status as rs};
        use kmipd_proto::message::ResponseMessage;
        use kmipd_proto::tag;
        use kmipd_ttlv::Value;

        use crate::{Engine, Principal};

        let engine = Engine::in_memory();
        let alice = Principal::new("alice");
        let locate = |who: &Principal| {
            let resp = engine.handle_message(
                who,
                &crate::engine::testing::request(1, 4, op::LOCATE, vec![]),
            );
            crate::engine::testing::first_item(&resp)
                .2
                .map_or(0, |p| match p.value {
                    Value::Structure(v) => v.len(),
                    _ => 0,
                })
        };
        let aes = vec![
            kmipd_proto::build::enumeration(tag::OBJECT_TYPE, 2),
            kmipd_proto::build::structure(
                tag::TEMPLATE_ATTRIBUTE,
                vec![
                    crate::attrs::testing::v1_attr(
                        "Cryptographic Algorithm",
                        None,
                        Value::Enumeration(3),
                    ),
                    crate::attrs::testing::v1_attr(
                        "Cryptographic Length",
                        None,
                        Value::Integer(128),
                    ),
                    crate::attrs::testing::v1_attr(
                        "Cryptographic Usage Mask",
                        None,
                        Value::Integer(4 | 8),
                    ),
                ],
            ),
        ];
        let resp = ResponseMessage::from_ttlv(
            &engine.handle_message(&alice, &asynchronous(op::CREATE, aes)),
        )
        .unwrap();
        let item = resp.items.first().unwrap();
        assert_eq!(item.result_status, rs::OPERATION_PENDING);
        assert_eq!(item.operation, Some(op::CREATE));
        let value = item.asynchronous_correlation_value.clone().unwrap();
        // Nothing ran yet.
        assert_eq!(locate(&alice), 0);
        let poll = |who: &Principal, o: u32| {
            let req = crate::engine::testing::request(
                1,
                4,
                o,
                vec![kmipd_proto::build::bytes(
                    tag::ASYNCHRONOUS_CORRELATION_VALUE,
                    value.clone(),
                )],
            );
            ResponseMessage::from_ttlv(&engine.handle_message(who, &req))
                .unwrap()
                .items
                .remove(0)
        };
        // Another identity cannot poll or cancel it.
        let other = poll(&Principal::new("bob"), op::POLL);
        assert_eq!(
            (other.result_status, other.result_reason),
            (rs::OPERATION_FAILED, Some(rr::ITEM_NOT_FOUND))
        );
        let other = poll(&Principal::new("bob"), op::CANCEL);
        assert_eq!(other.result_reason, Some(rr::ITEM_NOT_FOUND));
        // The owner's Poll runs it, answered as Create.
        let done = poll(&alice, op::POLL);
        assert_eq!(
            (done.operation, done.result_status),
            (Some(op::CREATE), rs::SUCCESS)
        );
        assert_eq!(locate(&alice), 1);
        // Once only.
        let again = poll(&alice, op::POLL);
        assert_eq!(again.result_reason, Some(rr::ITEM_NOT_FOUND));
        assert_eq!(locate(&alice), 1);

        // Cancel: the item never runs.
        let resp = ResponseMessage::from_ttlv(
            &engine.handle_message(&alice, &asynchronous(op::LOCATE, vec![])),
        )
        .unwrap();
        let value2 = resp
            .items
            .first()
            .unwrap()
            .asynchronous_correlation_value
            .clone()
            .unwrap();
        let req = crate::engine::testing::request(
            1,
            4,
            op::CANCEL,
            vec![kmipd_proto::build::bytes(
                tag::ASYNCHRONOUS_CORRELATION_VALUE,
                value2.clone(),
            )],
        );
        let canceled = ResponseMessage::from_ttlv(&engine.handle_message(&alice, &req))
            .unwrap()
            .items
            .remove(0);
        assert_eq!(
            (canceled.operation, canceled.result_status),
            (Some(op::CANCEL), rs::SUCCESS)
        );
        let req = crate::engine::testing::request(
            1,
            4,
            op::POLL,
            vec![kmipd_proto::build::bytes(
                tag::ASYNCHRONOUS_CORRELATION_VALUE,
                value2,
            )],
        );
        let gone = ResponseMessage::from_ttlv(&engine.handle_message(&alice, &req))
            .unwrap()
            .items
            .remove(0);
        assert_eq!(gone.result_reason, Some(rr::ITEM_NOT_FOUND));
    }
}
