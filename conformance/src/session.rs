//! One test case against one target: placeholders substituted into each request, each actual
//! response compared with the expected one under the OASIS "Permitted Test Case Variations".
//!
//! The state that carries from one request to the next (bindings, captures, which objects the
//! server generated) lives in [`State`], which is cheap to clone: order-insensitive matching
//! (attribute lists, Query answers) tries each candidate on a copy and keeps the copy that
//! matched, so a failed trial never leaves a half-made binding behind.

use std::collections::{HashMap, HashSet};

use kmipd_ttlv::{ItemType, Tag, Ttlv, Value};

use crate::placeholders::{Markers, Placeholder};
use crate::show;
use crate::tags::{self, enum_value};

/// The first difference between an expected and an actual response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Difference {
    /// Where, inside the message (`BatchItem[0]/ResponsePayload/UniqueIdentifier`).
    pub(crate) path: String,
    /// What (`expected "x", got "y"`).
    pub(crate) detail: String,
    /// The same without values that change from run to run (identifiers, dates, random bytes,
    /// result message texts), for the generated report.
    pub(crate) stable: String,
}

impl Difference {
    fn new(path: &str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self {
            path: path.to_owned(),
            stable: detail.clone(),
            detail,
        }
    }

    /// Sets the stable form of the detail.
    fn stable(mut self, stable: impl Into<String>) -> Self {
        self.stable = stable.into();
        self
    }
}

type Compared = Result<(), Difference>;

/// Per-file adjustments for known defects of the OASIS files.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Quirks {
    /// The responses say another protocol version than the requests (OMOS-O-1-14 says 1.3;
    /// TC_NP_2_12's server-to-client messages say 1.0 in a 1.2 case, with 1.2 content).
    pub(crate) response_version_may_vary: bool,
}

impl Quirks {
    /// The quirks of a file, from its name.
    pub(crate) fn for_file(name: &str) -> Self {
        Self {
            response_version_may_vary: name.contains("OMOS-O-1-14") || name.contains("TC_NP_2_12"),
        }
    }
}

/// What carries from one request to the next.
#[derive(Debug, Clone, Default)]
struct State {
    /// The time `$NOW` stands for in this file (whole seconds since the epoch).
    now: i64,
    /// Named placeholders (`$UNIQUE_IDENTIFIER_0`, `$DATA_0`, `$..._RANDOM_0`) -> actual value.
    named: HashMap<String, Value>,
    /// Literal identifiers of the expected responses (1.0-1.2 files) -> the server's.
    literal_uids: HashMap<String, Value>,
    /// Literal expected values that the server chose differently -> the actual ones, replayed
    /// into later requests that carry the expected value.
    replay: Vec<(Value, Value)>,
    /// The most recent actual Byte String of each tag in any response (`$DATA_0` in requests of
    /// the 1.2 files means "the Data of the most recent response").
    last_by_tag: HashMap<Tag, Value>,
    /// `$NOW±n` -> the value sent for it.
    sent_now: HashMap<String, Value>,
    /// Literal Date-Times sent in requests (a response carrying one must carry it exactly).
    sent_dates: Vec<Value>,
    /// How many of `sent_dates` were there before the current request.
    dates_before_request: usize,
    /// Identifiers of objects the server generated (Create, CreateKeyPair, ReKey, ...): their
    /// key material and crypto output may vary.
    generated: HashSet<String>,
    /// Identifiers of certificates the server issued (Certify, Re-certify).
    issued: HashSet<String>,
    /// Identifiers that some response of this file gave so far.
    seen: HashSet<String>,
    /// Identifiers of registered keys whose output is randomized: signatures (PSS, DSA, ECDSA)
    /// and public-key encryption (RSA OAEP and PKCS#1 v1.5).
    randomized: HashSet<String>,
    /// Counter for client-invented values.
    invented: u32,
    /// The request being compared carried server output replayed from an earlier response.
    replayed: bool,
    /// Seconds the runner moved the server's clock forward so far (the case's timeline).
    clock_advance: i64,
    /// The Asynchronous Correlation Value the batch item being compared sent (Poll, Cancel).
    sent_async: Option<Value>,
}

/// The comparison context of one batch item, refined on the way down the tree.
#[derive(Debug, Clone, Copy, Default)]
struct Ctx {
    /// The operation of the batch item.
    op: Option<u32>,
    /// Ciphertext, IV, tag, signature and MAC may vary (server-generated key or IV).
    vary_crypto: bool,
    /// The response's Data is random (RNG Retrieve).
    vary_data: bool,
    /// The object is server-generated: its key material may vary.
    generated_object: bool,
    /// The client did not ask for a Key Format Type: the server chooses.
    server_format: bool,
    /// Below a Key Block.
    in_key_block: bool,
    /// Below a Key Block in another format than the expected one (its Key Value differs).
    other_format: bool,
    /// Below a Digest.
    in_digest: bool,
    /// The protocol version of the response may differ (file quirk).
    version_may_vary: bool,
    /// RNG Seed: the length of the Data sent, the most Data Length the answer may give.
    seed_len: Option<usize>,
    /// The 2.x Attributes of a Certificate.
    certificate_attributes: bool,
    /// The object is a certificate the server issued (Certify, Re-certify): its issuer's
    /// choices may vary ([`tags::ISSUER_CHOSEN`]).
    issued_certificate: bool,
    /// Below the 1.x Attribute Value of an issuer's choice (Certificate Length).
    issuer_chosen_value: bool,
    /// PKCS#11 C_GetInfo in the expected and the actual answer: the Output Parameters are a
    /// CK_INFO whose vendor fields are the server's ([`ck_info_equivalent`]).
    pkcs11_get_info: bool,
}

/// Operation names used by the rules.
fn op_is(op: Option<u32>, name: &str) -> bool {
    op.is_some() && op == enum_value("Operation", name)
}

const GENERATING_OPS: [&str; 7] = [
    "Create",
    "CreateKeyPair",
    "ReKey",
    "ReKeyKeyPair",
    "DeriveKey",
    "CreateSplitKey",
    "JoinSplitKey",
];

/// Byte Strings that are crypto output (vary with a server-generated key or IV).
const CRYPTO_OUTPUT: [Tag; 5] = [
    tags::DATA,
    tags::IV_COUNTER_NONCE,
    tags::AUTHENTICATED_ENCRYPTION_TAG,
    tags::SIGNATURE_DATA,
    tags::MAC_DATA,
];

/// One test case being run.
#[derive(Debug)]
pub(crate) struct Session {
    markers: Markers,
    quirks: Quirks,
    state: State,
}

impl Session {
    /// A session over a document read with `markers`, with `$NOW` at `now` (POSIX seconds).
    pub(crate) fn new(markers: Markers, quirks: Quirks, now: i64) -> Self {
        Self {
            markers,
            quirks,
            state: State {
                now,
                ..State::default()
            },
        }
    }

    /// Objects an earlier (setup) file had the server generate.
    pub(crate) fn inherit_generated(&mut self, ids: HashSet<String>) {
        self.state.generated.extend(ids);
    }

    /// The objects the server generated so far.
    pub(crate) fn generated(&self) -> HashSet<String> {
        self.state.generated.clone()
    }

    /// Records that the server's clock was moved forward by `seconds`.
    pub(crate) fn clock_advanced(&mut self, seconds: i64) {
        self.state.clock_advance = self.state.clock_advance.saturating_add(seconds);
    }

    /// The literal Time Stamp of a recorded response (`None` for `$NOW` and when absent).
    pub(crate) fn recorded_time(&self, response: &Ttlv) -> Option<i64> {
        let stamp = response
            .child(tags::RESPONSE_HEADER)?
            .child(tags::TIME_STAMP)?;
        if self.markers.lookup(&stamp.value).is_some() {
            return None;
        }
        kmipd_proto::attributes::date_seconds(&stamp.value)
    }

    /// The request to send for a request of the document.
    pub(crate) fn prepare(&mut self, template: &Ttlv) -> Result<Ttlv, String> {
        self.state.replayed = false;
        self.state.dates_before_request = self.state.sent_dates.len();
        let mut request = template.clone();
        self.substitute(&mut request, false)?;
        Ok(request)
    }

    /// The document's answer to a server-to-client message, to send back to the server: its
    /// placeholders filled, as a request's. Its dates (the recording client's time stamp) fix
    /// nothing about the objects.
    pub(crate) fn prepare_answer(&mut self, template: &Ttlv) -> Result<Ttlv, String> {
        let dates = self.state.sent_dates.len();
        let mut answer = template.clone();
        let filled = self.substitute(&mut answer, false);
        self.state.sent_dates.truncate(dates);
        filled.map(|()| answer)
    }

    fn substitute(&mut self, item: &mut Ttlv, uid_like: bool) -> Result<(), String> {
        let tag = item.tag;
        match &mut item.value {
            Value::Structure(children) => {
                let names_uid = attribute_name(children) == Some("Unique Identifier");
                for child in children.iter_mut() {
                    let like = tags::IDENTIFIERS.contains(&child.tag)
                        || (child.tag == tags::ATTRIBUTE_VALUE && names_uid);
                    self.substitute(child, like)?;
                }
            }
            value => {
                if let Some(text) = self.markers.lookup(value) {
                    let text = text.to_owned();
                    let resolved = self.placeholder_value(tag, value.item_type(), &text)?;
                    if resolved.item_type() != value.item_type() {
                        return Err(format!(
                            "{text} is a {}, the request needs a {}",
                            resolved.item_type(),
                            value.item_type()
                        ));
                    }
                    *value = resolved;
                    self.state.replayed |= value.item_type() == kmipd_ttlv::ItemType::ByteString;
                    return Ok(());
                }
                match value {
                    Value::TextString(s) if uid_like => {
                        if let Some(actual) = self.state.literal_uids.get(s.as_str()) {
                            *value = actual.clone();
                        }
                    }
                    Value::ByteString(_) => {
                        if let Some((_, actual)) =
                            self.state.replay.iter().find(|(e, _)| e == value)
                        {
                            *value = actual.clone();
                            self.state.replayed = true;
                        }
                    }
                    Value::DateTime(_) | Value::DateTimeExtended(_) => {
                        self.state.sent_dates.push(value.clone());
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The value to send for a placeholder of a request.
    fn placeholder_value(&mut self, tag: Tag, ty: ItemType, text: &str) -> Result<Value, String> {
        let state = &mut self.state;
        match Placeholder::classify(text) {
            Placeholder::Now(offset) => {
                let secs = state
                    .now
                    .checked_add(offset)
                    .ok_or_else(|| format!("{text} is out of range"))?;
                let v = match ty {
                    ItemType::DateTimeExtended => Value::DateTimeExtended(
                        secs.checked_mul(1_000_000)
                            .ok_or_else(|| format!("{text} is out of range"))?,
                    ),
                    _ => Value::DateTime(secs),
                };
                state.sent_now.insert(text.to_owned(), v.clone());
                Ok(v)
            }
            Placeholder::Uid(_) | Placeholder::ClientRandom(_) => {
                if let Some(v) = state.named.get(text) {
                    return Ok(v.clone());
                }
                // Never seen in a response (or client-chosen): invent a fresh value.
                state.invented += 1;
                let fresh = format!("kmip-conformance-{}-{}", state.now, state.invented);
                let v = match ty {
                    ItemType::ByteString => Value::bytes(fresh.into_bytes()),
                    _ => Value::TextString(fresh),
                };
                state.named.insert(text.to_owned(), v.clone());
                Ok(v)
            }
            Placeholder::Server(_) => state
                .named
                .get(text)
                .or_else(|| state.last_by_tag.get(&tag))
                .cloned()
                .ok_or_else(|| format!("{text} is used before any response gave it a value")),
        }
    }

    /// Compares an actual response message with the expected one, given the request sent.
    pub(crate) fn compare(&mut self, expected: &Ttlv, actual: &Ttlv, sent: &Ttlv) -> Compared {
        // Dates sent in a request the case shows refused in every item fixed nothing: a later
        // response shows the object's own dates (TC-IMPEXP-3-20: an Import refused with
        // Object Already Exists sends the recording server's Initial Date).
        let mut succeeded = false;
        expected.walk(&mut |item, _| {
            succeeded |= item.tag == tags::RESULT_STATUS
                && item.value == Value::Enumeration(kmipd_proto::enums::result_status::SUCCESS);
        });
        if !succeeded {
            self.state
                .sent_dates
                .truncate(self.state.dates_before_request);
        }
        let result = self.compare_message(expected, actual, sent);
        // Whatever the outcome, remember the Byte Strings of the response.
        actual.walk(&mut |item, _| {
            if let Value::ByteString(_) = item.value {
                self.state.last_by_tag.insert(item.tag, item.value.clone());
            }
        });
        result
    }

    /// Compares a message the server sent to the client (Put, Notify: KMIP 1.4 §5) with the
    /// expected Request Message of the document, under the same rules as a response: the
    /// object's identifier binds as in a response, the key material of an object the server
    /// generated, Digest values, Lease Time and dates the client did not fix may vary, and
    /// the attributes are a subset in any order.
    pub(crate) fn compare_pushed(&mut self, expected: &Ttlv, actual: &Ttlv) -> Compared {
        if actual.tag != tags::REQUEST_MESSAGE {
            return Err(Difference::new(
                "",
                format!("expected a RequestMessage, got {}", tags::name(actual.tag)),
            ));
        }
        let children = |t: &Ttlv, tag: Tag| -> Vec<Ttlv> {
            t.children()
                .unwrap_or_default()
                .iter()
                .filter(|c| c.tag == tag)
                .cloned()
                .collect()
        };
        let (e_items, a_items) = (
            children(expected, tags::BATCH_ITEM),
            children(actual, tags::BATCH_ITEM),
        );
        if e_items.len() != a_items.len() {
            let (n, m) = (e_items.len(), a_items.len());
            return Err(Difference::new(
                "BatchItem",
                format!("expected {n} batch items, got {m}"),
            ));
        }
        let ctx = Ctx {
            version_may_vary: self.quirks.response_version_may_vary,
            ..Ctx::default()
        };
        match (
            expected.child(tags::REQUEST_HEADER),
            actual.child(tags::REQUEST_HEADER),
        ) {
            (Some(e), Some(a)) => {
                let es: Vec<&Ttlv> = e.children().unwrap_or_default().iter().collect();
                let as_: Vec<&Ttlv> = a.children().unwrap_or_default().iter().collect();
                self.ordered(&es, &as_, "RequestHeader", ctx)?;
            }
            (Some(_), None) => return Err(Difference::new("RequestHeader", "missing")),
            _ => {}
        }
        for (i, (e, a)) in e_items.iter().zip(&a_items).enumerate() {
            let op = match e.child(tags::OPERATION).map(|o| &o.value) {
                Some(Value::Enumeration(v)) => Some(*v),
                _ => None,
            };
            let generated = a
                .child(tags::REQUEST_PAYLOAD)
                .and_then(|p| p.child(tags::UNIQUE_IDENTIFIER))
                .is_some_and(|u| {
                    matches!(&u.value, Value::TextString(s) if self.state.generated.contains(s))
                });
            let ctx = Ctx {
                op,
                generated_object: generated,
                ..ctx
            };
            let es: Vec<&Ttlv> = e.children().unwrap_or_default().iter().collect();
            let as_: Vec<&Ttlv> = a.children().unwrap_or_default().iter().collect();
            self.ordered(&es, &as_, &format!("BatchItem[{i}]"), ctx)?;
        }
        Ok(())
    }

    fn compare_message(&mut self, expected: &Ttlv, actual: &Ttlv, sent: &Ttlv) -> Compared {
        if actual.tag != tags::RESPONSE_MESSAGE {
            return Err(Difference::new(
                "",
                format!("expected a ResponseMessage, got {}", tags::name(actual.tag)),
            ));
        }
        let items = |t: &'_ Ttlv| -> Vec<Ttlv> {
            t.children()
                .unwrap_or_default()
                .iter()
                .filter(|c| c.tag == tags::BATCH_ITEM)
                .cloned()
                .collect()
        };
        let (e_items, a_items, s_items) = (items(expected), items(actual), items(sent));
        if e_items.len() != a_items.len() {
            let first = a_items
                .first()
                .map(|a| status_summary(a, tags::RESULT_STATUS, true))
                .unwrap_or_default();
            let stable = a_items
                .first()
                .map(|a| status_summary(a, tags::RESULT_STATUS, false))
                .unwrap_or_default();
            let (n, m) = (e_items.len(), a_items.len());
            return Err(Difference::new(
                "BatchItem",
                format!("expected {n} batch items, got {m}{first}"),
            )
            .stable(format!("expected {n} batch items, got {m}{stable}")));
        }
        let ctx = Ctx {
            version_may_vary: self.quirks.response_version_may_vary,
            ..Ctx::default()
        };
        match (
            expected.child(tags::RESPONSE_HEADER),
            actual.child(tags::RESPONSE_HEADER),
        ) {
            (Some(e), Some(a)) => {
                let skip = |c: &&Ttlv| {
                    c.tag != tags::SERVER_CORRELATION_VALUE
                        && c.tag != tags::CLIENT_CORRELATION_VALUE
                };
                let es: Vec<&Ttlv> = e
                    .children()
                    .unwrap_or_default()
                    .iter()
                    .filter(skip)
                    .collect();
                let as_: Vec<&Ttlv> = a
                    .children()
                    .unwrap_or_default()
                    .iter()
                    .filter(skip)
                    .collect();
                self.ordered(&es, &as_, "ResponseHeader", ctx)?;
            }
            (Some(_), None) => return Err(Difference::new("ResponseHeader", "missing")),
            _ => {}
        }
        for (i, (e, a)) in e_items.iter().zip(&a_items).enumerate() {
            let path = format!("BatchItem[{i}]");
            self.compare_batch_item(e, a, s_items.get(i), &path, ctx)?;
        }
        Ok(())
    }

    fn compare_batch_item(
        &mut self,
        e: &Ttlv,
        a: &Ttlv,
        sent: Option<&Ttlv>,
        path: &str,
        ctx: Ctx,
    ) -> Compared {
        let op = match e.child(tags::OPERATION).map(|o| &o.value) {
            Some(Value::Enumeration(v)) => Some(*v),
            _ => None,
        };
        if op_is(op, "RNGSeed") && refused_seed_met_by_unused_seed(e, a) {
            return Ok(());
        }
        // Status and reason first: the most useful first difference.
        for tag in [tags::RESULT_STATUS, tags::RESULT_REASON] {
            let (ev, av) = (e.child(tag), a.child(tag));
            if ev.map(|x| &x.value) != av.map(|x| &x.value) {
                let shown =
                    |x: Option<&Ttlv>| x.map_or("none".to_owned(), |x| show::value(tag, &x.value));
                let (ev, av) = (shown(ev), shown(av));
                return Err(Difference::new(
                    &format!("{path}/{}", tags::name(tag)),
                    format!("expected {ev}, got {av}{}", status_summary(a, tag, true)),
                )
                .stable(format!(
                    "expected {ev}, got {av}{}",
                    status_summary(a, tag, false)
                )));
            }
        }
        let a_payload = a.child(tags::RESPONSE_PAYLOAD);
        let s_payload = sent.and_then(|s| s.child(tags::REQUEST_PAYLOAD));
        let key = a_payload
            .and_then(|p| p.child(tags::UNIQUE_IDENTIFIER))
            .or_else(|| s_payload.and_then(|p| p.child(tags::UNIQUE_IDENTIFIER)))
            .and_then(|u| match &u.value {
                Value::TextString(s) => Some(s.clone()),
                _ => None,
            });
        let generated = key
            .as_ref()
            .is_some_and(|k| self.state.generated.contains(k));
        self.state.sent_async = s_payload
            .and_then(|p| p.child(tags::ASYNCHRONOUS_CORRELATION_VALUE))
            .map(|c| c.value.clone());
        let has = |p: Option<&Ttlv>, tag: Tag| p.and_then(|p| p.child(tag)).is_some();
        let server_iv =
            !has(s_payload, tags::IV_COUNTER_NONCE) && has(a_payload, tags::IV_COUNTER_NONCE);
        let randomized = key
            .as_ref()
            .is_some_and(|k| self.state.randomized.contains(k))
            || s_payload.is_some_and(randomized_signature);
        let ctx = Ctx {
            op,
            // RSA encryption (OAEP, PKCS#1 v1.5) is randomized; decrypting a fixed ciphertext
            // under a key the server generated gives the server's own plaintext, unless the
            // ciphertext is the server's own output replayed.
            vary_crypto: (op_is(op, "Encrypt") && (generated || server_iv || randomized))
                || (op_is(op, "Decrypt") && generated && !self.state.replayed)
                || (op_is(op, "Sign") && (generated || randomized))
                || (op_is(op, "MAC") && generated),
            vary_data: op_is(op, "RNGRetrieve"),
            seed_len: s_payload
                .filter(|_| op_is(op, "RNGSeed"))
                .and_then(|p| p.child(tags::DATA))
                .and_then(|d| match &d.value {
                    Value::ByteString(b) => Some(b.len()),
                    _ => None,
                }),
            generated_object: generated,
            issued_certificate: key.as_ref().is_some_and(|k| self.state.issued.contains(k)),
            pkcs11_get_info: op_is(op, "PKCS_11")
                && [e, a].iter().all(|m| {
                    m.child(tags::RESPONSE_PAYLOAD)
                        .and_then(|p| p.child(tags::PKCS_11_FUNCTION))
                        .is_some_and(|f| {
                            Some(&f.value)
                                == enum_value("PKCS#11 Function", "C_GetInfo")
                                    .map(Value::Enumeration)
                                    .as_ref()
                        })
                }),
            server_format: (op_is(op, "Get") || op_is(op, "Export"))
                && !s_payload.is_some_and(|p| p.walk_any(|c| c.tag == tags::KEY_FORMAT_TYPE)),
            ..ctx
        };
        let keep = |c: &&Ttlv| c.tag != tags::RESULT_MESSAGE;
        let es: Vec<&Ttlv> = e
            .children()
            .unwrap_or_default()
            .iter()
            .filter(keep)
            .collect();
        let as_: Vec<&Ttlv> = a
            .children()
            .unwrap_or_default()
            .iter()
            .filter(keep)
            .collect();
        let result = self.ordered(&es, &as_, path, ctx);
        let success = matches!(
            a.child(tags::RESULT_STATUS).map(|s| &s.value),
            Some(Value::Enumeration(0))
        );
        if success && let Some(payload) = a_payload {
            let ids = payload
                .children()
                .unwrap_or_default()
                .iter()
                .filter_map(|c| match (&c.value, tags::IDENTIFIERS.contains(&c.tag)) {
                    (Value::TextString(s), true) => Some(s.clone()),
                    _ => None,
                });
            let ids: Vec<String> = ids.collect();
            if op_is(op, "Locate") {
                // An object that a Locate names before any response gave it is one the server
                // made on the fly (Group Member Fresh, KMIP 1.4 §4.9: "the server MAY choose to
                // generate a new object on-the-fly"): server-generated, like a Create's.
                let new = ids
                    .iter()
                    .filter(|u| !self.state.seen.contains(*u))
                    .cloned();
                self.state.generated.extend(new.collect::<Vec<_>>());
            }
            self.state.seen.extend(ids.iter().cloned());
            let ids = ids.into_iter();
            if op_is(op, "Certify") || op_is(op, "ReCertify") {
                self.state.issued.extend(ids);
            } else if GENERATING_OPS.iter().any(|name| op_is(op, name)) {
                self.state.generated.extend(ids);
            } else if op_is(op, "Register")
                && (s_payload.is_some_and(randomized_signature)
                    || s_payload.is_some_and(|p| p.child(tags::PUBLIC_KEY).is_some()))
            {
                self.state.randomized.extend(ids);
            }
        }
        result
    }

    /// Compares one item.
    fn item(&mut self, e: &Ttlv, a: &Ttlv, path: &str, ctx: Ctx, uid_like: bool) -> Compared {
        if e.tag != a.tag {
            return Err(Difference::new(
                path,
                format!("expected {}, got {}", self.describe(e), show::item(a)),
            )
            .stable(format!(
                "expected {}, got {}",
                self.describe(e),
                show::stable_item(a)
            )));
        }
        if let Some(text) = self.markers.lookup(&e.value) {
            let text = text.to_owned();
            return self.placeholder(&text, e, a, path);
        }
        if e.item_type() != a.item_type() {
            return Err(Difference::new(
                path,
                format!("expected a {}, got {}", e.item_type(), show::item(a)),
            )
            .stable(format!(
                "expected a {}, got a {}",
                e.item_type(),
                a.item_type()
            )));
        }
        match (&e.value, &a.value) {
            (Value::Structure(es), Value::Structure(as_)) => {
                self.structure(e.tag, es, as_, path, ctx)
            }
            _ => self.leaf(e, a, path, ctx, uid_like),
        }
    }

    /// An expected placeholder against the actual value.
    fn placeholder(&mut self, text: &str, e: &Ttlv, a: &Ttlv, path: &str) -> Compared {
        if e.item_type() != a.item_type() {
            return Err(Difference::new(
                path,
                format!(
                    "expected a {} ({text}), got {}",
                    e.item_type(),
                    show::item(a)
                ),
            )
            .stable(format!(
                "expected a {} ({text}), got a {}",
                e.item_type(),
                a.item_type()
            )));
        }
        let state = &mut self.state;
        match Placeholder::classify(text) {
            Placeholder::Now(offset) => match state.sent_now.get(text) {
                Some(sent)
                    if offset != 0
                        && *sent != a.value
                        && !shifted_by_clock(
                            sent,
                            &a.value,
                            state.clock_advance,
                            elapsed_since(state.now),
                        ) =>
                {
                    Err(Difference::new(
                        path,
                        format!(
                            "expected {text} as sent ({}), got {}",
                            show::value(e.tag, sent),
                            show::value(a.tag, &a.value)
                        ),
                    )
                    .stable(format!("expected {text} as sent, got another date")))
                }
                _ => Ok(()),
            },
            Placeholder::Uid(_) | Placeholder::ClientRandom(_) => match state.named.get(text) {
                Some(bound) if *bound == a.value => Ok(()),
                Some(bound) => Err(Difference::new(
                    path,
                    format!(
                        "expected {text} = {}, got {}",
                        show::value(e.tag, bound),
                        show::value(a.tag, &a.value)
                    ),
                )
                .stable(format!(
                    "expected {text} (bound earlier), got another value"
                ))),
                None => {
                    let clash = state.named.iter().find(|(name, v)| {
                        **v == a.value && matches!(Placeholder::classify(name), Placeholder::Uid(_))
                    });
                    if let Some((other, _)) = clash {
                        let mut both = [other.clone(), text.to_owned()];
                        both.sort();
                        let [x, y] = both;
                        return Err(Difference::new(
                            path,
                            format!(
                                "the server gave {} for both {x} and {y}",
                                show::value(a.tag, &a.value)
                            ),
                        )
                        .stable(format!(
                            "the server gave the same value for both {x} and {y}"
                        )));
                    }
                    state.named.insert(text.to_owned(), a.value.clone());
                    Ok(())
                }
            },
            Placeholder::Server(_) => {
                state.named.insert(text.to_owned(), a.value.clone());
                Ok(())
            }
        }
    }

    fn structure(&mut self, tag: Tag, es: &[Ttlv], as_: &[Ttlv], path: &str, ctx: Ctx) -> Compared {
        let mut ctx = ctx;
        if tag == tags::PROTOCOL_VERSION && ctx.version_may_vary {
            return Ok(());
        }
        // The Random Number Generator attribute describes the server's own generator (the
        // cases show the recording server's ANSI X9.31): present, value the server's.
        if tag == tags::RANDOM_NUMBER_GENERATOR
            || (tag == tags::ATTRIBUTE
                && attribute_name(es) == Some(RNG_NAME)
                && attribute_name(as_) == Some(RNG_NAME))
        {
            return Ok(());
        }
        if tag == tags::SERVER_INFORMATION {
            // Vendor-specific content.
            return Ok(());
        }
        if tag == tags::KEY_BLOCK {
            ctx.in_key_block = true;
            let format = |items: &[Ttlv]| {
                items
                    .iter()
                    .find(|c| c.tag == tags::KEY_FORMAT_TYPE)
                    .map(|c| c.value.clone())
            };
            if ctx.server_format && format(es) != format(as_) {
                // Another format than the test case shows: its key value cannot be compared.
                ctx.other_format = true;
            }
        }
        if tag == tags::KEY_VALUE && ctx.other_format {
            return Ok(());
        }
        if tag == tags::DIGEST {
            ctx.in_digest = true;
        }
        let (es, as_): (Vec<&Ttlv>, Vec<&Ttlv>) = if tag == tags::ATTRIBUTE {
            // AttributeIndex 0 may appear (or not). Of a certificate the server issued, the
            // indices are the server's: it made every instance of its Names and Links in one
            // step ("an index number assigned by the key management server", KMIP 1.4
            // §2.1.1), and the 1.0/1.1 and 1.2 versions of TC_134 show opposite assignments
            // for the same Re-certify. Each expected instance must still match its own actual
            // one.
            let issued = ctx.issued_certificate;
            let keep = |c: &&Ttlv| {
                !(c.tag == tags::ATTRIBUTE_INDEX && (issued || c.value == Value::Integer(0)))
            };
            (
                es.iter().filter(keep).collect(),
                as_.iter().filter(keep).collect(),
            )
        } else if ctx.in_digest
            && (tag == tags::DIGEST || tag == tags::ATTRIBUTE_VALUE)
            && !es.iter().any(|c| c.tag == tags::KEY_FORMAT_TYPE)
        {
            // A Digest's Key Format Type is required for keys and secret data only (KMIP 2.1
            // Table 69, 1.4 Table 88: "Yes, if the Managed Object is a key or secret data
            // object"): a server may give it for a certificate where the recording one did not
            // (TC-PKCS12-2 shows none, TC-CERTATTR-1 and TC-IMPEXP-5 show one). One way only:
            // a Key Format Type the case expects must be there.
            (
                es.iter().collect(),
                as_.iter()
                    .filter(|c| c.tag != tags::KEY_FORMAT_TYPE)
                    .collect(),
            )
        } else {
            (es.iter().collect(), as_.iter().collect())
        };
        let payload = tag == tags::RESPONSE_PAYLOAD;
        if payload && op_is(ctx.op, "Query") {
            return self.query_answer(&es, &as_, path, ctx);
        }
        if tag == tags::ATTRIBUTES {
            let certificate = enum_value("Object Type", "Certificate").map(Value::Enumeration);
            let ctx = Ctx {
                certificate_attributes: es
                    .iter()
                    .any(|c| c.tag == tags::OBJECT_TYPE && Some(&c.value) == certificate.as_ref()),
                ..ctx
            };
            return self.subset(&es, &as_, path, ctx, false);
        }
        let unordered: fn(Tag) -> bool = if payload && op_is(ctx.op, "Locate") {
            |t| t == tags::UNIQUE_IDENTIFIER
        } else if payload && op_is(ctx.op, "GetAttributeList") {
            |t| t == tags::ATTRIBUTE_NAME || t == tags::ATTRIBUTE_REFERENCE
        } else {
            |t| t == tags::ATTRIBUTE
        };
        let (e_set, e_seq): (Vec<&Ttlv>, Vec<&Ttlv>) = es.iter().partition(|c| unordered(c.tag));
        let (a_set, a_seq): (Vec<&Ttlv>, Vec<&Ttlv>) = as_.iter().partition(|c| unordered(c.tag));
        self.ordered(&e_seq, &a_seq, path, ctx)?;
        let exact = payload && op_is(ctx.op, "Locate");
        self.subset(&e_set, &a_set, path, ctx, exact)
    }

    /// A Query answer describes the server that gives it. The Operation and Object Type lists
    /// and the descriptive structures (RNG Parameters, Profile, Validation and Capability
    /// Information, Client Registration Method, Extension Information, ...) of the cases are
    /// those of the server that recorded them, and the Test Cases notes show mutually
    /// contradictory example servers (TC-Q-CAP-1 and -2, TC-Q-RNGS-2 and -3). So their content
    /// is the server's own: the answer must be made only of items a Query answer may hold, must
    /// list operations and object types where the case expects them, and everything else
    /// (e.g. an Application Namespace the case asked about) is compared as usual.
    fn query_answer(&mut self, es: &[&Ttlv], as_: &[&Ttlv], path: &str, ctx: Ctx) -> Compared {
        const DESCRIPTIVE: [Tag; 10] = [
            tags::OPERATION,
            tags::OBJECT_TYPE,
            tags::EXTENSION_INFORMATION,
            tags::ATTESTATION_TYPE,
            tags::RNG_PARAMETERS,
            tags::PROFILE_INFORMATION,
            tags::VALIDATION_INFORMATION,
            tags::CAPABILITY_INFORMATION,
            tags::CLIENT_REGISTRATION_METHOD,
            tags::DEFAULTS_INFORMATION,
        ];
        // Compared as usual (Vendor Identification's value and Server Information's content
        // are the server's; see `leaf` and `structure`).
        const OTHERS: [Tag; 4] = [
            tags::VENDOR_IDENTIFICATION,
            tags::SERVER_INFORMATION,
            tags::APPLICATION_NAMESPACE,
            tags::PROTECTION_STORAGE_MASKS,
        ];
        if let Some(odd) = as_
            .iter()
            .find(|a| !DESCRIPTIVE.contains(&a.tag) && !OTHERS.contains(&a.tag))
        {
            return Err(Difference::new(
                path,
                format!("a Query answer cannot hold {}", show::item(odd)),
            ));
        }
        for t in [tags::OPERATION, tags::OBJECT_TYPE] {
            if es.iter().any(|e| e.tag == t) && !as_.iter().any(|a| a.tag == t) {
                return Err(Difference::new(
                    path,
                    format!("Query answer lists no {}", tags::name(t)),
                ));
            }
        }
        let es: Vec<&Ttlv> = es
            .iter()
            .copied()
            .filter(|e| !DESCRIPTIVE.contains(&e.tag))
            .collect();
        self.subset(&es, as_, path, ctx, false)
    }

    /// Children compared in order, one for one.
    fn ordered(&mut self, es: &[&Ttlv], as_: &[&Ttlv], path: &str, ctx: Ctx) -> Compared {
        let names_uid = attribute_name_of(es) == Some("Unique Identifier");
        // A 1.x Digest is the Attribute Value of an Attribute named Digest.
        let names_digest = attribute_name_of(es) == Some("Digest");
        let names_issuer_choice =
            ctx.issued_certificate && attribute_name_of(es) == Some("Certificate Length");
        for i in 0..es.len().max(as_.len()) {
            match (es.get(i), as_.get(i)) {
                (Some(e), Some(a)) => {
                    let child = child_path(path, es, i, e.tag);
                    let like = tags::IDENTIFIERS.contains(&e.tag)
                        || (e.tag == tags::ATTRIBUTE_VALUE && names_uid);
                    let ctx = Ctx {
                        in_digest: ctx.in_digest
                            || (e.tag == tags::ATTRIBUTE_VALUE && names_digest),
                        issuer_chosen_value: ctx.issuer_chosen_value
                            || (e.tag == tags::ATTRIBUTE_VALUE && names_issuer_choice),
                        ..ctx
                    };
                    self.item(e, a, &child, ctx, like)?;
                }
                (Some(e), None) => {
                    let child = child_path(path, es, i, e.tag);
                    return Err(Difference::new(
                        &child,
                        format!("missing (expected {})", self.describe(e)),
                    ));
                }
                (None, Some(a)) => {
                    return Err(
                        Difference::new(path, format!("unexpected {}", show::item(a)))
                            .stable(format!("unexpected {}", show::stable_item(a))),
                    );
                }
                (None, None) => {}
            }
        }
        Ok(())
    }

    /// Each expected child matches a distinct actual child, in any order; with `exact`, no
    /// actual child is left over.
    fn subset(
        &mut self,
        es: &[&Ttlv],
        as_: &[&Ttlv],
        path: &str,
        ctx: Ctx,
        exact: bool,
    ) -> Compared {
        let mut used = vec![false; as_.len()];
        for e in es {
            let child = format!("{path}/{}", label(e));
            let mut nearest: Option<Difference> = None;
            let mut found = false;
            for (j, a) in as_.iter().enumerate() {
                if used.get(j).copied().unwrap_or(true) || a.tag != e.tag {
                    continue;
                }
                let saved = self.state.clone();
                match self.item(e, a, &child, ctx, tags::IDENTIFIERS.contains(&e.tag)) {
                    Ok(()) => {
                        if let Some(u) = used.get_mut(j) {
                            *u = true;
                        }
                        found = true;
                        break;
                    }
                    Err(d) => {
                        self.state = saved;
                        let telling = match e.children() {
                            Some(_) => label(e) == label(a),
                            None => as_.iter().filter(|x| x.tag == e.tag).count() == 1,
                        };
                        if nearest.is_none() && telling {
                            nearest = Some(d);
                        }
                    }
                }
            }
            if !found {
                return Err(nearest.unwrap_or_else(|| {
                    Difference::new(&child, format!("missing (expected {})", self.describe(e)))
                }));
            }
        }
        let left_over = used.iter().position(|u| !u).and_then(|j| as_.get(j));
        if exact && let Some(a) = left_over {
            return Err(
                Difference::new(path, format!("unexpected {}", show::item(a)))
                    .stable(format!("unexpected {}", show::stable_item(a))),
            );
        }
        Ok(())
    }

    /// A primitive value.
    fn leaf(&mut self, e: &Ttlv, a: &Ttlv, path: &str, ctx: Ctx, uid_like: bool) -> Compared {
        let tag = e.tag;
        // Lease Time is the server's lease policy (the 1.0, 1.1 and 1.2 versions of TC_95 expect
        // 16, 0 and 3600 seconds for the same request).
        let ignored = tag == tags::TIME_STAMP
            || tag == tags::LEASE_TIME
            || tag == tags::VENDOR_IDENTIFICATION && op_is(ctx.op, "Query")
            || tag == tags::DIGEST_VALUE
            || (tag == tags::KEY_VALUE && ctx.other_format)
            || (tag == tags::KEY_FORMAT_TYPE
                && (ctx.in_digest || ctx.server_format || ctx.certificate_attributes));
        if ignored {
            return Ok(());
        }
        // A certificate the server issued (Certify, Re-certify) is signed by the server's own
        // issuing CA: its bytes and length, the issuer's name and the serial number ("The
        // server SHALL set these values based on the information it extracts from a X.509
        // certificate that is created as a result of a Certify or a Re-certify operation",
        // KMIP 1.4 §3.13-3.15, 2.1 §4.10-4.13; the serial is the CA's choice, RFC 5280
        // §4.1.2.2) are the server's, captured and replayed like generated key material. The
        // subject, the key, the algorithms and everything else are compared.
        if ctx.issued_certificate && (tags::ISSUER_CHOSEN.contains(&tag) || ctx.issuer_chosen_value)
        {
            if e.value != a.value {
                self.state.replay.push((e.value.clone(), a.value.clone()));
            }
            return Ok(());
        }
        // RNG Seed's Data Length is "the amount of seed data used", and "the server MAY elect
        // to ignore the information provided by the client ... by returning zero" (KMIP 1.4
        // §4.36, 2.1 §6.1.46): any amount from 0 to what was sent (CS-RNG-O-1, -2 and -3 send
        // the same 32 bytes and show 32, 16 and 0).
        if tag == tags::DATA_LENGTH
            && let Some(sent) = ctx.seed_len
            && let Value::Integer(used) = a.value
            && usize::try_from(used).is_ok_and(|used| used <= sent)
        {
            return Ok(());
        }
        // PKCS#11 C_GetInfo answers the server's own CK_INFO: its manufacturer, description
        // and library version describe the implementation (PKCS#11 v3.0 §3.1, CK_INFO: "ID of the
        // Cryptoki library manufacturer", "description of the library", "Cryptoki library
        // version number"); the Cryptoki version and the flags must be the case's.
        if tag == tags::PKCS_11_OUTPUT_PARAMETERS
            && ctx.pkcs11_get_info
            && let (Value::ByteString(ev), Value::ByteString(av)) = (&e.value, &a.value)
            && ck_info_equivalent(ev, av)
        {
            return Ok(());
        }
        let state = &mut self.state;
        match &e.value {
            // Dates the request did not fix may vary.
            Value::DateTime(_) | Value::DateTimeExtended(_)
                if !state.sent_dates.contains(&e.value) || e.value == a.value =>
            {
                return Ok(());
            }
            Value::TextString(s) if uid_like => {
                return match state.literal_uids.get(s.as_str()) {
                    Some(bound) if *bound != a.value => Err(Difference::new(
                        path,
                        format!(
                            "expected the identifier first seen as {}, i.e. {}, got {}",
                            show::value(tag, &e.value),
                            show::value(tag, bound),
                            show::value(tag, &a.value)
                        ),
                    )
                    .stable(format!(
                        "expected the identifier first seen as {}, got another",
                        show::value(tag, &e.value)
                    ))),
                    Some(_) => Ok(()),
                    None => {
                        state.literal_uids.insert(s.clone(), a.value.clone());
                        Ok(())
                    }
                };
            }
            // The Asynchronous Correlation Value is the server's (KMIP 1.4 §6.8): where the
            // item sent one (Poll, Cancel) the answer must carry that one, whatever literal the
            // recording server's value was (1.0 TC_32's Cancel shows its own 8 bytes); a new one
            // (Operation Pending) is any.
            // A literal Short Unique Identifier is the recording server's, "generated by the
            // key management system" from its Unique Identifier (KMIP 2.1 §4.56), which may
            // vary like the identifier itself: TC-IMPEXP-3-20 shows the placeholder
            // $SHORT_UNIQUE_IDENTIFIER_0 for an object and later the recording server's
            // literal for the same object. The answer must be a Short Unique Identifier this
            // server already gave for a placeholder of the file.
            Value::ByteString(_) if tag == tags::SHORT_UNIQUE_IDENTIFIER => {
                let given = state
                    .named
                    .iter()
                    .any(|(name, v)| name.starts_with("$SHORT_UNIQUE_IDENTIFIER") && *v == a.value);
                if given {
                    return Ok(());
                }
            }
            Value::ByteString(_) if tag == tags::ASYNCHRONOUS_CORRELATION_VALUE => {
                match &state.sent_async {
                    Some(sent) if *sent != a.value => {}
                    _ => return Ok(()),
                }
            }
            Value::ByteString(_) | Value::BigInteger(_) => {
                let varies = (ctx.vary_crypto && CRYPTO_OUTPUT.contains(&tag))
                    || (ctx.vary_data && tag == tags::DATA)
                    || (ctx.in_key_block && ctx.generated_object);
                if varies {
                    if e.value != a.value {
                        state.replay.push((e.value.clone(), a.value.clone()));
                    }
                    return Ok(());
                }
            }
            _ => {}
        }
        if e.value == a.value
            || state
                .replay
                .iter()
                .any(|(x, y)| *x == e.value && *y == a.value)
        {
            return Ok(());
        }
        Err(Difference::new(
            path,
            format!(
                "expected {}, got {}",
                show::value(tag, &e.value),
                show::value(tag, &a.value)
            ),
        )
        .stable(format!(
            "expected {}, got {}",
            show::stable(tag, &e.value),
            show::stable(tag, &a.value)
        )))
    }

    /// An expected item for a message, with placeholders by name.
    fn describe(&self, e: &Ttlv) -> String {
        match self.markers.lookup(&e.value) {
            Some(text) => format!("{} {text}", tags::name(e.tag)),
            None => show::item(e),
        }
    }
}

/// ` (ResultReason ..., ResultMessage "...")` of an actual batch item, for messages (without
/// the `shown` tag; the message text only `with_message`).
/// Length of a CK_INFO in the KMIP PKCS#11 Profile's encoding: cryptokiVersion (CK_VERSION, 2
/// bytes), manufacturerID (32), flags (a CK_ULONG, 8 bytes big-endian), libraryDescription
/// (32), libraryVersion (2).
const CK_INFO_LEN: usize = 76;

/// Whether `actual` is a CK_INFO that may stand for `expected`: the same length and layout, the
/// same cryptokiVersion and flags, and blank-padded text (no NUL, UTF-8) in the two vendor
/// strings; the vendor strings and the libraryVersion may differ.
pub(crate) fn ck_info_equivalent(expected: &[u8], actual: &[u8]) -> bool {
    let text = |b: &[u8]| !b.contains(&0) && std::str::from_utf8(b).is_ok();
    expected.len() == CK_INFO_LEN
        && actual.len() == CK_INFO_LEN
        && expected.get(0..2) == actual.get(0..2)
        && expected.get(34..42) == actual.get(34..42)
        && actual.get(2..34).is_some_and(text)
        && actual.get(42..74).is_some_and(text)
}

/// RNG Seed refused with Permission Denied (CS-RNG-O-4) is met by a server that takes no seed
/// from any client and says so with Success and Data Length 0: "The server MAY elect to ignore
/// the information provided by the client (i.e. not accept the seeding material) and MAY
/// indicate this to the client by returning zero as the value in the Data Length response. A
/// client SHALL NOT consider a response from a server which does not use the provided data as
/// an error" (KMIP 1.4 §4.36, 2.1 §6.1.46). Both answers mean "your seed was not used"; the
/// CS-RNG-O cases send the same request and show the answers of four differently configured
/// servers (used 32, 16, 0, refused). Data Length above 0 (the seed was used) still fails.
fn refused_seed_met_by_unused_seed(e: &Ttlv, a: &Ttlv) -> bool {
    let status = |t: &Ttlv| match t.child(tags::RESULT_STATUS).map(|s| &s.value) {
        Some(Value::Enumeration(v)) => Some(*v),
        _ => None,
    };
    let reason = e.child(tags::RESULT_REASON).map(|r| &r.value);
    let unused = a
        .child(tags::RESPONSE_PAYLOAD)
        .and_then(|p| p.child(tags::DATA_LENGTH))
        .is_some_and(|d| d.value == Value::Integer(0));
    e.child(tags::OPERATION).map(|o| &o.value) == a.child(tags::OPERATION).map(|o| &o.value)
        && status(e) == enum_value("Result Status", "OperationFailed")
        && reason.is_some_and(|r| {
            Some(r)
                == enum_value("Result Reason", "PermissionDenied")
                    .map(Value::Enumeration)
                    .as_ref()
        })
        && status(a) == enum_value("Result Status", "Success")
        && unused
}

fn status_summary(a: &Ttlv, shown: Tag, with_message: bool) -> String {
    let mut parts = Vec::new();
    if let Some(r) = a
        .child(tags::RESULT_REASON)
        .filter(|_| shown != tags::RESULT_REASON)
    {
        parts.push(format!("ResultReason {}", show::value(r.tag, &r.value)));
    }
    if let Some(m) = a.child(tags::RESULT_MESSAGE).filter(|_| with_message) {
        parts.push(format!("ResultMessage {}", show::value(m.tag, &m.value)));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// The Attribute Name among the children of a 1.x Attribute.
/// A date the server computed after the runner moved its clock forward: the sent `$NOW±n` may
/// come back later by at most the time the clock moved (a date derived from "now", such as a
/// replacement key's dates after a ReKey, lives on the server's shifted timeline), plus the
/// real seconds that passed since the file started (`elapsed`): the server's "now" moves on
/// while the file runs, by more than a second on a slow store or a loaded machine.
fn shifted_by_clock(sent: &Value, actual: &Value, advance: i64, elapsed: i64) -> bool {
    match (sent, actual) {
        (Value::DateTime(s), Value::DateTime(a)) => {
            advance > 0 && *a > *s && *a - *s <= advance.saturating_add(elapsed)
        }
        _ => false,
    }
}

/// Whole seconds since `start` (POSIX seconds), rounded up; 0 if the clock went back.
fn elapsed_since(start: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(start);
    now.saturating_sub(start).max(0).saturating_add(1)
}

/// The 1.x name of the Random Number Generator attribute.
const RNG_NAME: &str = "Random Number Generator";

fn attribute_name(children: &[Ttlv]) -> Option<&str> {
    children.iter().find_map(|c| match &c.value {
        Value::TextString(s) if c.tag == tags::ATTRIBUTE_NAME => Some(s.as_str()),
        _ => None,
    })
}

fn attribute_name_of<'a>(children: &[&'a Ttlv]) -> Option<&'a str> {
    children.iter().find_map(|c| match &c.value {
        Value::TextString(s) if c.tag == tags::ATTRIBUTE_NAME => Some(s.as_str()),
        _ => None,
    })
}

/// How a child appears in a path of an order-insensitive list: `Attribute(Name)` for 1.x
/// attributes, the tag name otherwise.
fn label(t: &Ttlv) -> String {
    match t.children().and_then(attribute_name) {
        Some(name) if t.tag == tags::ATTRIBUTE => format!("Attribute({name})"),
        _ => tags::name(t.tag),
    }
}

/// `path/Name` or `path/Name[i]` when the tag repeats among the siblings.
fn child_path(path: &str, siblings: &[&Ttlv], i: usize, tag: Tag) -> String {
    let name = tags::name(tag);
    let same: Vec<usize> = siblings
        .iter()
        .enumerate()
        .filter(|(_, s)| s.tag == tag)
        .map(|(j, _)| j)
        .collect();
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    if same.len() > 1 {
        let n = same.iter().position(|j| *j == i).unwrap_or_default();
        format!("{prefix}{name}[{n}]")
    } else {
        format!("{prefix}{name}")
    }
}

/// Whether a request (payload) asks for a randomized signature scheme: PSS padding, DSA or
/// ECDSA (by algorithm or digital signature algorithm).
fn randomized_signature(payload: &Ttlv) -> bool {
    let pss = enum_value("Padding Method", "PSS");
    let algorithms = ["DSA", "ECDSA", "EC"].map(|n| enum_value("Cryptographic Algorithm", n));
    let schemes = [
        "RSASSA_PSS",
        "DSAWithSHA_1",
        "DSAWithSHA224",
        "DSAWithSHA256",
        "ECDSAWithSHA_1",
        "ECDSAWithSHA224",
        "ECDSAWithSHA256",
        "ECDSAWithSHA384",
        "ECDSAWithSHA512",
    ]
    .map(|n| enum_value("Digital Signature Algorithm", n));
    payload.walk_any(|c| match c.value {
        Value::Enumeration(v) => {
            (c.tag == tags::PADDING_METHOD && Some(v) == pss)
                || (c.tag == tags::CRYPTOGRAPHIC_ALGORITHM && algorithms.contains(&Some(v)))
                || (c.tag == tags::DIGITAL_SIGNATURE_ALGORITHM && schemes.contains(&Some(v)))
        }
        _ => false,
    })
}

/// `any` over a tree.
trait WalkAny {
    fn walk_any(&self, f: impl Fn(&Ttlv) -> bool) -> bool;
}

impl WalkAny for Ttlv {
    fn walk_any(&self, f: impl Fn(&Ttlv) -> bool) -> bool {
        let mut found = false;
        self.walk(&mut |item, _| found = found || f(item));
        found
    }
}
