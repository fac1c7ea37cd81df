//! The workloads: their setup (keys to Get, names to Locate, a key to encrypt or sign with)
//! and one operation each.
//!
//! Requests that do not change are encoded once here; an operation writes the bytes and
//! checks the response's Result Status per batch item. A workload the server cannot do is
//! found during setup and becomes [`Setup::Unsupported`] with the server's own words.

use std::sync::Arc;

use kmipd_client::{Client, Error as ClientError, custom_attr, name_attr};
use kmipd_proto::attributes::Attribute;
use kmipd_proto::build;
use kmipd_proto::enums::{
    cryptographic_algorithm as alg, cryptographic_usage_mask as usage,
    digital_signature_algorithm as dsa, object_type, operation, result_status,
};
use kmipd_proto::message::{ProtocolVersion, RequestBatchItem, RequestMessage};
use kmipd_proto::reader;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use crate::{ClientPath, Workload};

/// Bytes encrypted per Encrypt.
const ENCRYPT_LEN: usize = 1024;
/// Bytes signed per Sign.
const SIGN_LEN: usize = 64;
/// The custom attribute the modify workload changes.
const MODIFY_ATTR: &str = "x-kmip-bench";

/// The outcome of setup.
pub(crate) enum Setup {
    /// Ready to measure.
    Ready(Plan),
    /// The server cannot do this workload; why, in its words.
    Unsupported(String),
}

/// What the workers share: the workload and its pre-encoded requests.
#[derive(Clone)]
pub(crate) struct Plan {
    workload: Workload,
    path: ClientPath,
    version: ProtocolVersion,
    /// Get: one request per key; Locate: one per name; Create/Encrypt/Sign: one.
    requests: Arc<Vec<Vec<u8>>>,
    /// Get: the keys; Locate: the names; Encrypt/Sign: the key (typed path).
    subjects: Arc<Vec<String>>,
}

/// A worker's position in the plan's requests.
pub(crate) struct WorkerState {
    next: usize,
    /// Modify: the value of the next change.
    counter: u64,
}

fn request(version: ProtocolVersion, op: u32, payload: Vec<Ttlv>) -> Ttlv {
    RequestMessage::new(version, vec![RequestBatchItem::new(op, payload)]).to_ttlv()
}

fn encode(version: ProtocolVersion, op: u32, payload: Vec<Ttlv>) -> Result<Vec<u8>, String> {
    kmipd_ttlv::encode_to_vec(&request(version, op, payload)).map_err(|e| e.to_string())
}

fn create_aes_payload(version: ProtocolVersion) -> Vec<Ttlv> {
    let a = [
        Attribute::std(tag::CRYPTOGRAPHIC_ALGORITHM, Value::Enumeration(alg::AES)),
        Attribute::std(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(256)),
        build::usage_mask_attr(usage::ENCRYPT | usage::DECRYPT),
    ];
    vec![
        build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
        build::attributes(version, tag::TEMPLATE_ATTRIBUTE, tag::ATTRIBUTES, &a),
    ]
}

fn encrypt_payload(uid: &str) -> Vec<Ttlv> {
    vec![
        build::unique_identifier(uid),
        build::gcm_parameters(16),
        build::bytes(tag::DATA, vec![0x5a; ENCRYPT_LEN]),
    ]
}

fn sign_payload(uid: &str) -> Vec<Ttlv> {
    vec![
        build::unique_identifier(uid),
        build::structure(
            tag::CRYPTOGRAPHIC_PARAMETERS,
            vec![build::enumeration(
                tag::DIGITAL_SIGNATURE_ALGORITHM,
                dsa::ECDSA_WITH_SHA256,
            )],
        ),
        build::bytes(tag::DATA, vec![0xa5; SIGN_LEN]),
    ]
}

/// The payload of an Add Attribute or a Modify Attribute of the modify workload's attribute.
fn attribute_edit_payload(version: ProtocolVersion, uid: &str, value: &str) -> Vec<Ttlv> {
    let a = custom_attr(MODIFY_ATTR, value);
    if version.is_v2() {
        vec![
            build::unique_identifier(uid),
            build::structure(tag::NEW_ATTRIBUTE, vec![a.to_v2()]),
        ]
    } else {
        vec![build::unique_identifier(uid), a.to_v1(None)]
    }
}

fn locate_payload(version: ProtocolVersion, name: &str) -> Vec<Ttlv> {
    let n = name_attr(name);
    if version.is_v2() {
        vec![build::structure(tag::ATTRIBUTES, vec![n.to_v2()])]
    } else {
        vec![n.to_v1(None)]
    }
}

fn create_key_pair_payload(version: ProtocolVersion) -> Vec<Ttlv> {
    let common = [
        Attribute::std(tag::CRYPTOGRAPHIC_ALGORITHM, Value::Enumeration(alg::ECDSA)),
        Attribute::std(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(256)),
    ];
    vec![
        build::attributes(
            version,
            tag::COMMON_TEMPLATE_ATTRIBUTE,
            tag::COMMON_ATTRIBUTES,
            &common,
        ),
        build::attributes(
            version,
            tag::PRIVATE_KEY_TEMPLATE_ATTRIBUTE,
            tag::PRIVATE_KEY_ATTRIBUTES,
            &[build::usage_mask_attr(usage::SIGN)],
        ),
        build::attributes(
            version,
            tag::PUBLIC_KEY_TEMPLATE_ATTRIBUTE,
            tag::PUBLIC_KEY_ATTRIBUTES,
            &[build::usage_mask_attr(usage::VERIFY)],
        ),
    ]
}

/// The text of the first item of `t` among `items`.
fn text_of(items: &[Ttlv], t: kmipd_ttlv::Tag) -> Option<String> {
    items
        .iter()
        .find(|i| i.tag == t)
        .and_then(|i| reader::as_text(i).ok())
        .map(str::to_owned)
}

fn children(t: &Ttlv) -> &[Ttlv] {
    match &t.value {
        Value::Structure(c) => c,
        _ => &[],
    }
}

/// Checks every batch item of a response for Success; returns the first item's payload items.
fn check(response: &Ttlv) -> Result<&[Ttlv], String> {
    if response.tag != tag::RESPONSE_MESSAGE {
        return Err("not a Response Message".into());
    }
    let mut first: Option<&[Ttlv]> = None;
    let mut seen = false;
    for item in children(response)
        .iter()
        .filter(|i| i.tag == tag::BATCH_ITEM)
    {
        seen = true;
        let c = children(item);
        let status = c
            .iter()
            .find(|i| i.tag == tag::RESULT_STATUS)
            .and_then(|i| reader::as_enum(i).ok());
        if status != Some(result_status::SUCCESS) {
            let reason = c
                .iter()
                .find(|i| i.tag == tag::RESULT_REASON)
                .and_then(|i| reader::as_enum(i).ok());
            let message = text_of(c, tag::RESULT_MESSAGE);
            return Err(format!(
                "KMIP failure: status {status:?}, reason {reason:?}, message {message:?}"
            ));
        }
        if first.is_none() {
            first = Some(
                c.iter()
                    .find(|i| i.tag == tag::RESPONSE_PAYLOAD)
                    .map_or(&[][..], children),
            );
        }
    }
    if !seen {
        return Err("response without a batch item".into());
    }
    Ok(first.unwrap_or(&[]))
}

async fn send_raw(c: &mut Client, bytes: &[u8]) -> Result<Ttlv, String> {
    c.send_bytes(bytes).await.map_err(|e| e.to_string())?;
    c.read_response().await.map_err(|e| e.to_string())
}

/// A failure during setup: the server's refusal makes the workload unsupported; anything
/// else (I/O, TLS) is an error.
enum SetupFailure {
    Unsupported(String),
    Error(String),
}

impl From<ClientError> for SetupFailure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Kmip { .. } => SetupFailure::Unsupported(e.to_string()),
            other => SetupFailure::Error(other.to_string()),
        }
    }
}

/// A setup call's failure, named `what` when the server refused it (then unsupported).
fn refused(what: &'static str) -> impl Fn(ClientError) -> SetupFailure {
    move |e| match e {
        ClientError::Kmip { .. } => SetupFailure::Unsupported(format!("{what}: {e}")),
        o => SetupFailure::Error(o.to_string()),
    }
}

/// Runs `bytes` once during setup; a KMIP failure means unsupported.
async fn probe(c: &mut Client, bytes: &[u8], what: &str) -> Result<(), SetupFailure> {
    let response = send_raw(c, bytes).await.map_err(SetupFailure::Error)?;
    match check(&response) {
        Ok(_) => Ok(()),
        Err(e) => Err(SetupFailure::Unsupported(format!("{what}: {e}"))),
    }
}

/// Prepares the workload on the setup connection.
pub(crate) async fn setup(
    c: &mut Client,
    workload: Workload,
    keys: usize,
    path: ClientPath,
) -> Result<Setup, String> {
    match setup_inner(c, workload, keys, path).await {
        Ok(plan) => Ok(Setup::Ready(plan)),
        Err(SetupFailure::Unsupported(why)) => Ok(Setup::Unsupported(why)),
        Err(SetupFailure::Error(e)) => Err(format!("setup: {e}")),
    }
}

async fn setup_inner(
    c: &mut Client,
    workload: Workload,
    keys: usize,
    path: ClientPath,
) -> Result<Plan, SetupFailure> {
    let v = c.version();
    let err = SetupFailure::Error;
    let mut plan = Plan {
        workload,
        path,
        version: v,
        requests: Arc::new(Vec::new()),
        subjects: Arc::new(Vec::new()),
    };
    match workload {
        Workload::Get => {
            let mut uids = Vec::with_capacity(keys);
            let mut reqs = Vec::with_capacity(keys);
            for _ in 0..keys {
                let uid = c.create_aes(256, None).await.map_err(|e| match e {
                    ClientError::Kmip { .. } => SetupFailure::Error(format!("Create: {e}")),
                    o => SetupFailure::Error(o.to_string()),
                })?;
                reqs.push(
                    encode(v, operation::GET, vec![build::unique_identifier(&uid)]).map_err(err)?,
                );
                uids.push(uid);
            }
            if let Some(first) = reqs.first() {
                probe(c, first, "Get").await?;
            }
            plan.requests = Arc::new(reqs);
            plan.subjects = Arc::new(uids);
        }
        Workload::Create | Workload::Cycle => {
            let create = encode(v, operation::CREATE, create_aes_payload(v)).map_err(err)?;
            let response = send_raw(c, &create).await.map_err(err)?;
            let uid = check(&response)
                .ok()
                .and_then(|p| text_of(p, tag::UNIQUE_IDENTIFIER))
                .ok_or_else(|| SetupFailure::Error(format!("Create failed: {response:?}")))?;
            if workload == Workload::Cycle {
                c.get(&uid)
                    .await
                    .map_err(|e| SetupFailure::Error(format!("Get: {e}")))?;
                c.destroy(&uid)
                    .await
                    .map_err(|e| SetupFailure::Error(format!("Destroy: {e}")))?;
            }
            plan.requests = Arc::new(vec![create]);
        }
        Workload::Locate => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let pid = std::process::id();
            let mut names = Vec::with_capacity(keys);
            let mut uids = Vec::with_capacity(keys);
            let mut reqs = Vec::with_capacity(keys);
            for i in 0..keys {
                let name = format!("kmip-bench-{pid}-{stamp}-{i}");
                let uid = c.create_aes(256, Some(&name)).await?;
                reqs.push(encode(v, operation::LOCATE, locate_payload(v, &name)).map_err(err)?);
                names.push(name);
                uids.push(uid);
            }
            if let (Some(name), Some(uid)) = (names.first(), uids.first()) {
                let found = c.locate_by_name(name).await?;
                if found != [uid.clone()] {
                    return Err(SetupFailure::Unsupported(format!(
                        "Locate by Name does not filter: one name found {} objects",
                        found.len()
                    )));
                }
            }
            plan.requests = Arc::new(reqs);
            plan.subjects = Arc::new(names);
        }
        Workload::Modify => {
            let mut uids = Vec::with_capacity(keys);
            for _ in 0..keys {
                let uid = c.create_aes(256, None).await?;
                c.call(
                    operation::ADD_ATTRIBUTE,
                    attribute_edit_payload(v, &uid, "0"),
                )
                .await
                .map_err(refused("Add Attribute"))?;
                uids.push(uid);
            }
            if let Some(uid) = uids.first() {
                let req = encode(
                    v,
                    operation::MODIFY_ATTRIBUTE,
                    attribute_edit_payload(v, uid, "1"),
                )
                .map_err(err)?;
                probe(c, &req, "Modify Attribute").await?;
            }
            plan.subjects = Arc::new(uids);
        }
        Workload::Idle => {
            let req = encode(v, operation::DISCOVER_VERSIONS, vec![]).map_err(err)?;
            probe(c, &req, "Discover Versions").await?;
            plan.requests = Arc::new(vec![req]);
        }
        Workload::Encrypt => {
            let uid = c.create_aes(256, None).await?;
            c.activate(&uid).await?;
            let req = encode(v, operation::ENCRYPT, encrypt_payload(&uid)).map_err(err)?;
            probe(c, &req, "AES-GCM Encrypt").await?;
            plan.requests = Arc::new(vec![req]);
            plan.subjects = Arc::new(vec![uid]);
        }
        Workload::Sign => {
            let items = c
                .call(operation::CREATE_KEY_PAIR, create_key_pair_payload(v))
                .await
                .map_err(refused("Create Key Pair ECDSA P-256"))?;
            let uid = text_of(&items, tag::PRIVATE_KEY_UNIQUE_IDENTIFIER).ok_or_else(|| {
                SetupFailure::Error("Create Key Pair: no Private Key Unique Identifier".into())
            })?;
            c.activate(&uid).await?;
            let req = encode(v, operation::SIGN, sign_payload(&uid)).map_err(err)?;
            probe(c, &req, "ECDSA Sign").await?;
            plan.requests = Arc::new(vec![req]);
            plan.subjects = Arc::new(vec![uid]);
        }
    }
    Ok(plan)
}

impl Plan {
    /// Worker `index` starts at its own key.
    pub(crate) fn worker_state(&self, index: usize) -> WorkerState {
        WorkerState {
            next: index,
            counter: 0,
        }
    }

    fn pick<'a, T>(list: &'a [T], state: &mut WorkerState) -> Result<&'a T, String> {
        let n = list.len();
        if n == 0 {
            return Err("internal: empty plan".into());
        }
        let i = state.next % n;
        state.next = state.next.wrapping_add(1);
        list.get(i).ok_or_else(|| "internal: index".to_owned())
    }

    /// The next Modify Attribute's key (the worker's next one) and value (one this worker
    /// has not set before).
    fn modify_target(&self, state: &mut WorkerState) -> Result<(String, String), String> {
        state.counter = state.counter.wrapping_add(1);
        let value = format!("{}-{}", state.next, state.counter);
        let uid = Self::pick(&self.subjects, state)?;
        Ok((uid.clone(), value))
    }

    fn modify_request(&self, state: &mut WorkerState) -> Result<Vec<u8>, String> {
        let (uid, value) = self.modify_target(state)?;
        encode(
            self.version,
            operation::MODIFY_ATTRIBUTE,
            attribute_edit_payload(self.version, &uid, &value),
        )
    }

    /// One operation on `c`.
    pub(crate) async fn run(&self, c: &mut Client, state: &mut WorkerState) -> Result<(), String> {
        match self.path {
            ClientPath::Raw => self.run_raw(c, state).await,
            ClientPath::Typed => self.run_typed(c, state).await.map_err(|e| e.to_string()),
        }
    }

    async fn run_raw(&self, c: &mut Client, state: &mut WorkerState) -> Result<(), String> {
        match self.workload {
            Workload::Get
            | Workload::Create
            | Workload::Encrypt
            | Workload::Sign
            | Workload::Idle => {
                let req = Self::pick(&self.requests, state)?;
                let response = send_raw(c, req).await?;
                check(&response).map(|_| ())
            }
            Workload::Locate => {
                let req = Self::pick(&self.requests, state)?;
                let response = send_raw(c, req).await?;
                let found = check(&response)?
                    .iter()
                    .filter(|i| i.tag == tag::UNIQUE_IDENTIFIER)
                    .count();
                if found == 1 {
                    Ok(())
                } else {
                    Err(format!("Locate by Name found {found} objects"))
                }
            }
            Workload::Modify => {
                let req = self.modify_request(state)?;
                let response = send_raw(c, &req).await?;
                check(&response).map(|_| ())
            }
            Workload::Cycle => {
                let create = Self::pick(&self.requests, state)?;
                let response = send_raw(c, create).await?;
                let uid = text_of(check(&response)?, tag::UNIQUE_IDENTIFIER)
                    .ok_or_else(|| "Create: no Unique Identifier".to_owned())?;
                for op in [operation::GET, operation::DESTROY] {
                    let req = encode(self.version, op, vec![build::unique_identifier(&uid)])?;
                    let response = send_raw(c, &req).await?;
                    check(&response)?;
                }
                Ok(())
            }
        }
    }

    async fn run_typed(&self, c: &mut Client, state: &mut WorkerState) -> Result<(), ClientError> {
        let subject = |state: &mut WorkerState| {
            Self::pick(&self.subjects, state)
                .map(String::as_str)
                .map_err(|_| ClientError::Unexpected("empty plan"))
        };
        match self.workload {
            Workload::Get => {
                c.get(subject(state)?).await?;
            }
            Workload::Create => {
                c.create_aes(256, None).await?;
            }
            Workload::Cycle => {
                let uid = c.create_aes(256, None).await?;
                c.get(&uid).await?;
                c.destroy(&uid).await?;
            }
            Workload::Modify => {
                let (uid, value) = self
                    .modify_target(state)
                    .map_err(|_| ClientError::Unexpected("empty plan"))?;
                c.call(
                    operation::MODIFY_ATTRIBUTE,
                    attribute_edit_payload(self.version, &uid, &value),
                )
                .await?;
            }
            Workload::Locate => {
                let found = c.locate_by_name(subject(state)?).await?;
                if found.len() != 1 {
                    return Err(ClientError::Unexpected("Locate by Name: not one object"));
                }
            }
            Workload::Encrypt => {
                c.encrypt(subject(state)?, &[0x5a; ENCRYPT_LEN]).await?;
            }
            Workload::Idle => {
                c.discover_versions().await?;
            }
            Workload::Sign => {
                c.call(operation::SIGN, sign_payload(subject(state)?))
                    .await?;
            }
        }
        Ok(())
    }
}
