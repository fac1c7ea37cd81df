//! Sending requests through an [`Engine`] in the engine's integration tests
//! (`crates/ops/tests`), with the helpers they share re-exported so that a test binary
//! imports one module. Behind the `engine` feature, which only kmipd-ops's dev-dependency
//! enables.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use kmipd_ops::{Engine, EngineConfig, Principal};
use kmipd_proto::message::{ProtocolVersion, RequestMessage, ResponseBatchItem, ResponseMessage};
use kmipd_store::{MemoryStore, ObjectStore};
use kmipd_ttlv::Ttlv;

pub use crate::TempDir;
pub use crate::kmip::{
    attr, attr_at, batch_items, by_uid, create_aes256_v2, create_named, field, key_material,
    message, name, ok, ok_uid, opaque_secret, result_message, secret_data, status, uid_item,
    uid_of, uids, xml_request,
};

/// Sends a request tree to `e` as `who`; the answer, read as a Response Message.
pub fn exchange_tree(e: &Engine, who: &Principal, request: &Ttlv) -> ResponseMessage {
    ResponseMessage::from_ttlv(&e.handle_message(who, request)).unwrap()
}

/// Sends a request message to `e` as `who`; the answer.
pub fn exchange(e: &Engine, who: &Principal, msg: &RequestMessage) -> ResponseMessage {
    exchange_tree(e, who, &msg.to_ttlv())
}

/// Sends a batch of (operation, payload items) in `v`; the answers of its items.
pub fn send(
    e: &Engine,
    who: &Principal,
    v: ProtocolVersion,
    items: Vec<(u32, Vec<Ttlv>)>,
) -> Vec<ResponseBatchItem> {
    exchange(e, who, &message(v, items)).items
}

/// Sends one operation in `v`; the answer of its one batch item.
pub fn one(
    e: &Engine,
    who: &Principal,
    v: ProtocolVersion,
    operation: u32,
    payload: Vec<Ttlv>,
) -> ResponseBatchItem {
    let mut items = send(e, who, v, vec![(operation, payload)]);
    assert_eq!(items.len(), 1);
    items.remove(0)
}

/// An engine over a [`MemoryStore`] the test can read, and the identity that sends.
pub struct Server {
    /// The engine.
    pub engine: Engine,
    /// The store under it, for the test to read.
    pub store: Arc<MemoryStore>,
    /// The identity requests come from.
    pub who: Principal,
}

impl Default for Server {
    fn default() -> Server {
        Server::new()
    }
}

impl Server {
    /// A fresh engine over an empty store; requests come from `alice`.
    pub fn new() -> Server {
        let store = Arc::new(MemoryStore::new());
        Server {
            engine: Engine::new(store.clone(), EngineConfig::default()),
            store,
            who: Principal::new("alice"),
        }
    }

    /// Sends a request message.
    pub fn send_message(&self, m: &RequestMessage) -> ResponseMessage {
        exchange(&self.engine, &self.who, m)
    }

    /// Sends a request tree (which need not be a well-formed request).
    pub fn send_tree(&self, t: &Ttlv) -> ResponseMessage {
        exchange_tree(&self.engine, &self.who, t)
    }

    /// Sends a batch of (operation, payload items) in `v`.
    pub fn send(&self, v: ProtocolVersion, items: Vec<(u32, Vec<Ttlv>)>) -> ResponseMessage {
        self.send_message(&message(v, items))
    }

    /// Sends one operation in `v`; the answer of its one batch item.
    pub fn one(&self, v: ProtocolVersion, operation: u32, payload: Vec<Ttlv>) -> ResponseBatchItem {
        one(&self.engine, &self.who, v, operation, payload)
    }

    /// How many objects the store holds.
    pub fn count(&self) -> usize {
        self.store.all().unwrap().len()
    }
}
