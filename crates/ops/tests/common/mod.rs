//! The engine harness the integration tests share: building request messages (typed or from
//! KMIP XML), sending them through an [`Engine`], reading the answers (success, payload items,
//! Unique Identifiers), the request fields and objects tests register, and a temporary
//! directory. Each test binary uses a part of it, hence `dead_code` is allowed.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::sync::Arc;

use kmipd_ops::{Engine, EngineConfig, Principal};
use kmipd_proto::build;
use kmipd_proto::enums::{
    cryptographic_algorithm as alg, cryptographic_usage_mask as usage, key_format_type as kft,
    result_status,
};
use kmipd_proto::message::{
    ProtocolVersion, RequestBatchItem, RequestMessage, ResponseBatchItem, ResponseMessage,
};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_proto::xml::{self, NoPlaceholders, XmlOptions};
use kmipd_store::{MemoryStore, ObjectStore};
// Not every test binary that includes this module uses them.
#[allow(unused_imports)]
pub(crate) use kmipd_test_support::kmip::{attr, attr_at, name, ok, secret_data, uids};
use kmipd_ttlv::{Tag, Ttlv, Value};

// ---------------------------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------------------------

/// A request message of `v` with one batch item per (operation, payload items).
pub(crate) fn message(v: ProtocolVersion, items: Vec<(u32, Vec<Ttlv>)>) -> RequestMessage {
    RequestMessage::new(
        v,
        items
            .into_iter()
            .map(|(operation, payload)| RequestBatchItem::new(operation, payload))
            .collect(),
    )
}

/// Sends a request tree to `e` as `who`; the answer, read as a Response Message.
pub(crate) fn exchange_tree(e: &Engine, who: &Principal, request: &Ttlv) -> ResponseMessage {
    ResponseMessage::from_ttlv(&e.handle_message(who, request)).unwrap()
}

/// Sends a request message to `e` as `who`; the answer.
pub(crate) fn exchange(e: &Engine, who: &Principal, msg: &RequestMessage) -> ResponseMessage {
    exchange_tree(e, who, &msg.to_ttlv())
}

/// Sends a batch of (operation, payload items) in `v`; the answers of its items.
pub(crate) fn send(
    e: &Engine,
    who: &Principal,
    v: ProtocolVersion,
    items: Vec<(u32, Vec<Ttlv>)>,
) -> Vec<ResponseBatchItem> {
    exchange(e, who, &message(v, items)).items
}

/// Sends one operation in `v`; the answer of its one batch item.
pub(crate) fn one(
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
pub(crate) struct Server {
    pub(crate) engine: Engine,
    pub(crate) store: Arc<MemoryStore>,
    pub(crate) who: Principal,
}

impl Server {
    /// A fresh engine over an empty store; requests come from `alice`.
    pub(crate) fn new() -> Server {
        let store = Arc::new(MemoryStore::new());
        Server {
            engine: Engine::new(store.clone(), EngineConfig::default()),
            store,
            who: Principal::new("alice"),
        }
    }

    /// Sends a request message.
    pub(crate) fn send_message(&self, m: &RequestMessage) -> ResponseMessage {
        exchange(&self.engine, &self.who, m)
    }

    /// Sends a request tree (which need not be a well-formed request).
    pub(crate) fn send_tree(&self, t: &Ttlv) -> ResponseMessage {
        exchange_tree(&self.engine, &self.who, t)
    }

    /// Sends a batch of (operation, payload items) in `v`.
    pub(crate) fn send(&self, v: ProtocolVersion, items: Vec<(u32, Vec<Ttlv>)>) -> ResponseMessage {
        self.send_message(&message(v, items))
    }

    /// Sends one operation in `v`; the answer of its one batch item.
    pub(crate) fn one(
        &self,
        v: ProtocolVersion,
        operation: u32,
        payload: Vec<Ttlv>,
    ) -> ResponseBatchItem {
        one(&self.engine, &self.who, v, operation, payload)
    }

    /// How many objects the store holds.
    pub(crate) fn count(&self) -> usize {
        self.store.all().unwrap().len()
    }
}

// ---------------------------------------------------------------------------------------------
// Reading answers
// ---------------------------------------------------------------------------------------------

/// The Unique Identifier of an answer's payload (an undone item keeps its payload).
pub(crate) fn uid_of(item: &ResponseBatchItem) -> String {
    StructReader::any(item.payload.as_ref().expect("payload"))
        .unwrap()
        .req_text(tag::UNIQUE_IDENTIFIER)
        .unwrap()
        .to_owned()
}

/// The Unique Identifier of an answer, which must be a success.
pub(crate) fn ok_uid(item: &ResponseBatchItem) -> String {
    assert_eq!(item.result_status, result_status::SUCCESS, "{item:?}");
    uid_of(item)
}

/// The Key Material bytes somewhere in `t` (the last Byte String one), if any.
pub(crate) fn key_material(t: &Ttlv) -> Option<Vec<u8>> {
    let mut out = None;
    t.walk(&mut |i, _| {
        if i.tag == tag::KEY_MATERIAL
            && let Value::ByteString(b) = &i.value
        {
            out = Some(b.to_vec());
        }
    });
    out
}

// ---------------------------------------------------------------------------------------------
// Request fields and objects
// ---------------------------------------------------------------------------------------------

/// A Unique Identifier item.
pub(crate) use kmipd_proto::build::unique_identifier as uid_item;

/// A payload that names one object.
pub(crate) fn by_uid(uid: &str) -> Vec<Ttlv> {
    vec![uid_item(uid)]
}

/// The 2.x Create payload of an AES-256 key for Encrypt and Decrypt.
pub(crate) fn create_aes256_v2() -> Vec<Ttlv> {
    build::create_symmetric_key_v2(alg::AES, 256, usage::ENCRYPT | usage::DECRYPT)
}

/// A Secret Data structure of Secret Data Type `kind` holding `bytes` (Opaque format).
pub(crate) fn opaque_secret(kind: u32, bytes: &[u8]) -> Ttlv {
    secret_data(kind, kft::OPAQUE, bytes)
}

// ---------------------------------------------------------------------------------------------
// KMIP XML requests
// ---------------------------------------------------------------------------------------------

/// A request message of version (major, minor) from the KMIP XML of its batch items.
pub(crate) fn xml_request(v: (u8, u8), items: &str) -> Ttlv {
    let (major, minor) = v;
    let text = format!(
        r#"<RequestMessage><RequestHeader><ProtocolVersion>
<ProtocolVersionMajor type="Integer" value="{major}"/>
<ProtocolVersionMinor type="Integer" value="{minor}"/>
</ProtocolVersion><BatchCount type="Integer" value="{}"/></RequestHeader>{items}</RequestMessage>"#,
        items.matches("<BatchItem>").count()
    );
    xml::read_item(&text, &XmlOptions::default(), &mut NoPlaceholders).unwrap()
}

/// The Batch Items of a response tree.
pub(crate) fn batch_items(response: &Ttlv) -> Vec<Ttlv> {
    StructReader::any(response)
        .unwrap()
        .repeated(tag::BATCH_ITEM)
        .cloned()
        .collect()
}

/// The item at `path` (a tag a level) below `item`, if there is one.
pub(crate) fn field<'a>(item: &'a Ttlv, path: &[Tag]) -> Option<&'a Ttlv> {
    let mut cur = item;
    for t in path {
        cur = StructReader::any(cur).ok()?.optional(*t)?;
    }
    Some(cur)
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// A directory removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    /// An empty directory `kmipd-<name>-<pid>` under the system's temporary directory.
    pub(crate) fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("kmipd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
