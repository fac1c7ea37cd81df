//! The engine: a request message in, a response message out, against a store.
//!
//! Batch semantics (KMIP 1.4 §7.x, 2.1 §8.x): items run in order; the ID Placeholder carries
//! over from item to item; with Batch Error Continuation Option
//! - Stop (the default): the first failure ends the batch; later items are not answered;
//! - Continue: every item runs; a failed item's own changes are rolled back;
//! - Undo: the first failure rolls back the whole batch; the earlier items are answered
//!   Operation Undone and leave no trace.
//!
//! The surviving changes reach the store in one atomic commit before the response is built.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kmipd_proto::enums::{batch_error_continuation as bec, result_status};
use kmipd_proto::message::{
    ProtocolVersion, RequestHeader, RequestMessage, ResponseBatchItem, ResponseHeader,
    ResponseMessage,
};
use kmipd_proto::spec::Version;
use kmipd_proto::tag;
use kmipd_store::{ManagedObject, MemoryStore, ObjectStore};
use kmipd_ttlv::{Limits, Ttlv};

use crate::context::{Ctx, Tx};
use crate::dispatch;
use crate::error::Error;

/// The identity of a client, from its verified certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    name: String,
    admin: bool,
}

impl Principal {
    /// An ordinary client identity.
    pub fn new(name: impl Into<String>) -> Principal {
        Principal {
            name: name.into(),
            admin: false,
        }
    }

    /// An administrator: sees and may do everything.
    pub fn admin(name: impl Into<String>) -> Principal {
        Principal {
            name: name.into(),
            admin: true,
        }
    }

    /// The identity's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when this identity may see the object (its owner, or an administrator).
    pub fn may_see(&self, object: &ManagedObject) -> bool {
        self.admin || object.owner == self.name
    }
}

/// What the server says about itself and what it accepts.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Vendor Identification (Query Server Information).
    pub vendor: String,
    /// Server Name (Query Server Information).
    pub server_name: String,
    /// Protocol versions served, newest first (Discover Versions order).
    pub versions: Vec<ProtocolVersion>,
    /// Limits on decoding request bytes.
    pub limits: Limits,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            vendor: "kmipd".to_owned(),
            server_name: "kmipd".to_owned(),
            versions: vec![
                ProtocolVersion::new(2, 1),
                ProtocolVersion::new(2, 0),
                ProtocolVersion::new(1, 4),
                ProtocolVersion::new(1, 3),
                ProtocolVersion::new(1, 2),
                ProtocolVersion::new(1, 1),
                ProtocolVersion::new(1, 0),
            ],
            limits: Limits::default(),
        }
    }
}

/// Executes KMIP requests against a store. Cheap to share between threads (`Arc` inside).
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn ObjectStore>,
    config: Arc<EngineConfig>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Engine {
    /// An engine over `store`.
    pub fn new(store: Arc<dyn ObjectStore>, config: EngineConfig) -> Engine {
        Engine {
            store,
            config: Arc::new(config),
        }
    }

    /// A fresh engine over an empty in-memory store, default configuration.
    pub fn in_memory() -> Engine {
        Engine::new(Arc::new(MemoryStore::new()), EngineConfig::default())
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// A request's bytes in, the response's bytes out. Undecodable bytes get an Invalid Message
    /// response in KMIP 1.0 form.
    pub fn handle_bytes(&self, principal: &Principal, request: &[u8]) -> Vec<u8> {
        let response = match kmipd_ttlv::decode(request, &self.config.limits) {
            Ok(tree) => self.handle_message(principal, &tree),
            Err(_) => message_error(
                ProtocolVersion::V1_0,
                None,
                &Error::InvalidMessage("undecodable TTLV"),
            ),
        };
        kmipd_ttlv::encode_to_vec(&response).unwrap_or_default()
    }

    /// A Request Message tree in, the Response Message tree out. Never panics.
    pub fn handle_message(&self, principal: &Principal, request: &Ttlv) -> Ttlv {
        let message = match RequestMessage::from_ttlv(request) {
            Ok(m) => m,
            Err(e) => {
                let header = RequestMessage::salvage_header(request);
                let version = header.as_ref().map_or(ProtocolVersion::V1_0, |h| {
                    self.answer_version(h.protocol_version)
                });
                let err = if request.tag == tag::REQUEST_MESSAGE {
                    Error::Proto(e)
                } else {
                    Error::InvalidMessage("not a request message")
                };
                let err = match err {
                    Error::Proto(_) => Error::InvalidMessage("malformed request"),
                    other => other,
                };
                return message_error(version, header.as_ref(), &err);
            }
        };
        self.run(principal, &message).to_ttlv()
    }

    /// The version to answer a request of `asked` in: the same when served; the newest minor
    /// of the same major when the minor is newer than ours; otherwise `None`.
    fn served(&self, asked: ProtocolVersion) -> Option<ProtocolVersion> {
        if self.config.versions.contains(&asked) {
            return Some(asked);
        }
        self.config
            .versions
            .iter()
            .filter(|v| v.major == asked.major && v.minor < asked.minor)
            .max()
            .copied()
    }

    fn answer_version(&self, asked: ProtocolVersion) -> ProtocolVersion {
        self.served(asked).unwrap_or_else(|| {
            self.config
                .versions
                .iter()
                .filter(|v| v.major == asked.major)
                .max()
                .or_else(|| self.config.versions.iter().max())
                .copied()
                .unwrap_or(ProtocolVersion::V1_0)
        })
    }

    fn run(&self, principal: &Principal, message: &RequestMessage) -> ResponseMessage {
        let header = &message.header;
        let Some(version) = self.served(header.protocol_version) else {
            let v = self.answer_version(header.protocol_version);
            return error_response(
                v,
                header,
                &message.items,
                &Error::UnsupportedProtocolVersion,
            );
        };
        if usize::try_from(header.batch_count).ok() != Some(message.items.len()) {
            return error_response(
                version,
                header,
                &message.items,
                &Error::InvalidMessage("batch count does not match the batch items"),
            );
        }
        let spec = version.spec().unwrap_or(Version::V1_0);
        let option = header.batch_error_continuation_option.unwrap_or(bec::STOP);
        let mut ctx = Ctx {
            principal,
            version,
            spec,
            now: now(),
            tx: Tx::new(self.store.as_ref()),
            id_placeholder: None,
            batch_uids: Vec::new(),
            uid_by_kind: Vec::new(),
            config: &self.config,
        };
        let mut answers: Vec<ResponseBatchItem> = Vec::with_capacity(message.items.len());
        let mut failed = false;
        for item in &message.items {
            let sp = ctx.tx.savepoint();
            let result = dispatch::dispatch(&mut ctx, item.operation, item.payload.as_ref());
            match result {
                Ok(payload) => answers.push(ResponseBatchItem {
                    operation: Some(item.operation),
                    unique_batch_item_id: item.unique_batch_item_id.clone(),
                    result_status: result_status::SUCCESS,
                    result_reason: None,
                    result_message: None,
                    payload,
                }),
                Err(err) => {
                    ctx.tx.rollback_to(sp);
                    answers.push(failure(version, Some(item.operation), item, &err));
                    if option == bec::CONTINUE {
                        continue;
                    }
                    failed = true;
                    break;
                }
            }
        }
        if failed && option == bec::UNDO {
            ctx.tx.rollback_all();
            let last = answers.len().saturating_sub(1);
            for a in answers.iter_mut().take(last) {
                a.result_status = result_status::OPERATION_UNDONE;
                a.payload = None;
            }
        }
        let changes = ctx.tx.into_changes();
        if !changes.is_empty() {
            if let Err(e) = self.store.commit(changes) {
                let err = Error::Store(e);
                return error_response(version, header, &message.items, &err);
            }
        }
        let response = ResponseMessage {
            header: response_header(version, header, answers.len()),
            items: answers,
        };
        self.enforce_size(response, header)
    }

    /// Maximum Response Size: an answer that would be larger becomes Response Too Large.
    fn enforce_size(&self, response: ResponseMessage, header: &RequestHeader) -> ResponseMessage {
        let Some(max) = header.maximum_response_size else {
            return response;
        };
        let len = kmipd_ttlv::encoded_len(&response.to_ttlv());
        if usize::try_from(max).is_ok_and(|m| len <= m) {
            return response;
        }
        let version = response.header.protocol_version;
        let items = response
            .items
            .into_iter()
            .map(|a| ResponseBatchItem {
                operation: a.operation,
                unique_batch_item_id: a.unique_batch_item_id,
                result_status: result_status::OPERATION_FAILED,
                result_reason: Some(Error::ResponseTooLarge.result_reason(version)),
                result_message: Some(Error::ResponseTooLarge.client_message()),
                payload: None,
            })
            .collect();
        ResponseMessage {
            header: response.header,
            items,
        }
    }
}

fn response_header(version: ProtocolVersion, req: &RequestHeader, count: usize) -> ResponseHeader {
    let v14 = version >= ProtocolVersion::new(1, 4);
    ResponseHeader {
        protocol_version: version,
        time_stamp: now(),
        client_correlation_value: req.client_correlation_value.clone().filter(|_| v14),
        server_correlation_value: req.server_correlation_value.clone().filter(|_| v14),
        batch_count: i32::try_from(count).unwrap_or(i32::MAX),
    }
}

fn failure(
    version: ProtocolVersion,
    operation: Option<u32>,
    item: &kmipd_proto::message::RequestBatchItem,
    err: &Error,
) -> ResponseBatchItem {
    ResponseBatchItem {
        operation,
        unique_batch_item_id: item.unique_batch_item_id.clone(),
        result_status: result_status::OPERATION_FAILED,
        result_reason: Some(err.result_reason(version)),
        result_message: Some(err.client_message()),
        payload: None,
    }
}

/// Every item of the request fails with the same error.
fn error_response(
    version: ProtocolVersion,
    header: &RequestHeader,
    items: &[kmipd_proto::message::RequestBatchItem],
    err: &Error,
) -> ResponseMessage {
    let answers: Vec<ResponseBatchItem> = items
        .iter()
        .map(|i| failure(version, Some(i.operation), i, err))
        .collect();
    ResponseMessage {
        header: response_header(version, header, answers.len()),
        items: answers,
    }
}

/// The response to a message that could not be read as a request.
fn message_error(version: ProtocolVersion, header: Option<&RequestHeader>, err: &Error) -> Ttlv {
    let item = ResponseBatchItem {
        operation: None,
        unique_batch_item_id: None,
        result_status: result_status::OPERATION_FAILED,
        result_reason: Some(err.result_reason(version)),
        result_message: Some(err.client_message()),
        payload: None,
    };
    let header = match header {
        Some(h) => response_header(version, h, 1),
        None => ResponseHeader {
            protocol_version: version,
            time_stamp: now(),
            client_correlation_value: None,
            server_correlation_value: None,
            batch_count: 1,
        },
    };
    ResponseMessage {
        header,
        items: vec![item],
    }
    .to_ttlv()
}
