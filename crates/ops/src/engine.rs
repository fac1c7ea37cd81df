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
//! A commit that finds an object changed by a concurrent request runs the request again
//! ([`Retry`]); store and internal failures come back with the answer as incidents
//! ([`Answer`], `incident.rs`). Response headers take their time stamp from the engine's
//! [`Clock`].

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use kmipd_proto::enums::{batch_error_continuation as bec, operation as op, result_status};
use kmipd_proto::message::{
    BatchItemRef, ProtocolVersion, RequestHeader, RequestMessage, ResponseBatchItem,
    ResponseHeader, ResponseMessage,
};
use kmipd_proto::reader::StructReader;
use kmipd_proto::spec::Version;
use kmipd_proto::tag;
use kmipd_store::prefetch::{AsyncAccess, Overlay, Want};
use kmipd_store::{Change, ManagedObject, MemoryStore, ObjectStore, Revision, StoreError};
use kmipd_ttlv::{Limits, Ttlv, Value};

use crate::access::Role;
use crate::context::{Ctx, Tx};
use crate::dispatch;
use crate::error::Error;
use crate::incident::{Answer, Incident};
use crate::policy::Policy;
use crate::retry::Retry;

/// The six KMIP object states, in their enumeration order: what
/// [`Engine::objects_by_state`] counts.
pub const OBJECT_STATES: [u32; 6] = {
    use kmipd_proto::enums::state;
    [
        state::PRE_ACTIVE,
        state::ACTIVE,
        state::DEACTIVATED,
        state::COMPROMISED,
        state::DESTROYED,
        state::DESTROYED_COMPROMISED,
    ]
};

/// The identity of a client, from its verified certificate, with its role and scope
/// ([`crate::access`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    name: String,
    role: Role,
    /// The Object Groups its rights over others' objects are confined to (`None`: all).
    scope: Option<Arc<[String]>>,
    /// What the request's header narrows it by (a credential, a ticket's rights): only ever
    /// less than the certificate identity may do (`tickets.rs`).
    narrowing: Option<Arc<crate::tickets::Narrowing>>,
}

impl Principal {
    /// An ordinary client identity (role `client`).
    pub fn new(name: impl Into<String>) -> Principal {
        Principal::with_role(name, Role::Client)
    }

    /// An administrator: sees and may do everything.
    pub fn admin(name: impl Into<String>) -> Principal {
        Principal::with_role(name, Role::Administrator)
    }

    /// An identity with `role`, unscoped.
    pub fn with_role(name: impl Into<String>, role: Role) -> Principal {
        Principal {
            name: name.into(),
            role,
            scope: None,
            narrowing: None,
        }
    }

    /// The same identity narrowed by `narrowing` (a verified credential, a ticket's rights).
    #[must_use]
    pub fn narrowed(mut self, narrowing: Arc<crate::tickets::Narrowing>) -> Principal {
        self.narrowing = Some(narrowing);
        self
    }

    /// What the identity is narrowed by in this request, if anything.
    pub fn narrowing(&self) -> Option<&crate::tickets::Narrowing> {
        self.narrowing.as_deref()
    }

    /// The same identity confined to these Object Groups (`None`: not confined).
    #[must_use]
    pub fn scoped(mut self, groups: Option<Vec<String>>) -> Principal {
        self.scope = groups.map(Arc::from);
        self
    }

    /// The identity's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The identity's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The Object Groups the identity is confined to, if any.
    pub fn scope(&self) -> Option<&[String]> {
        self.scope.as_deref()
    }

    /// True for an administrator.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Administrator
    }

    /// True when this identity has every right on the object and may manage its grants (its
    /// owner, or an administrator within its scope). See [`crate::access::may_manage`].
    pub fn may_see(&self, object: &ManagedObject) -> bool {
        crate::access::may_manage(self, object)
    }

    /// True when this identity may perform `operation` (an Operation enumeration value) on the
    /// object (see [`crate::access::may_access`]).
    pub fn may(&self, object: &ManagedObject, operation: u32) -> bool {
        crate::access::may_access(self, object, operation)
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
    /// The time the engine acts at (activation and deactivation dates, Initial Date, ...).
    pub clock: Clock,
    /// The server policy at start ([`Engine::set_policy`] replaces it).
    pub policy: Policy,
    /// The Username and Password and Device credentials the server accepts in request headers
    /// (`credentials.rs`); empty: such credentials are not checked and change nothing.
    pub credentials: crate::credentials::Credentials,
    /// The CA with which Certify and Re-certify issue certificates (`issuing.rs`); `None`:
    /// they answer Feature Not Supported.
    pub issuing_ca: Option<std::sync::Arc<crate::issuing::IssuingCa>>,
    /// Who gets Put and Notify messages (`push.rs`); empty: none are made.
    pub push: Vec<crate::push::Subscription>,
}

/// Where the engine's "now" comes from: the system clock, or (in tests and the conformance
/// runner, which replays a test case's own timeline) any function.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// POSIX seconds from the system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(now))
    }

    /// A clock reading `f` (POSIX seconds).
    pub fn from_fn(f: impl Fn() -> i64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    /// The current time, POSIX seconds.
    pub fn now(&self) -> i64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
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
            clock: Clock::system(),
            policy: Policy::unrestricted(),
            credentials: crate::credentials::Credentials::default(),
            issuing_ca: None,
            push: Vec::new(),
        }
    }
}

/// Executes KMIP requests against a store. Cheap to share between threads (`Arc` inside).
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn ObjectStore>,
    config: Arc<EngineConfig>,
    /// The current server policy (each request takes the one of the moment it starts).
    policy: Arc<RwLock<Arc<Policy>>>,
    /// The items of asynchronous requests waiting for their Poll (`pending.rs`).
    pending: Arc<crate::pending::Pending>,
    /// The open streams of streamed cryptography (`streams.rs`).
    streams: Arc<crate::streams::Streams>,
    /// The live Login tickets (`tickets.rs`).
    tickets: Arc<crate::tickets::Tickets>,
    /// The live PKCS#11 contexts (`operations/pkcs11.rs`).
    pkcs11: Arc<crate::operations::pkcs11::Contexts>,
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
        let policy = Arc::new(RwLock::new(Arc::new(config.policy.clone())));
        Engine {
            store,
            config: Arc::new(config),
            policy,
            pending: Arc::default(),
            streams: Arc::default(),
            tickets: Arc::default(),
            pkcs11: Arc::default(),
        }
    }

    /// Replaces the server policy for every request that starts from now on (all clones of
    /// this engine share it).
    pub fn set_policy(&self, policy: Policy) {
        let mut current = self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = Arc::new(policy);
    }

    /// The current server policy.
    pub fn policy(&self) -> Arc<Policy> {
        let current = self
            .policy
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&current)
    }

    /// A fresh engine over an empty in-memory store, default configuration.
    pub fn in_memory() -> Engine {
        Engine::new(Arc::new(MemoryStore::new()), EngineConfig::default())
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The Login tickets (for the engine's own transactions outside a request).
    pub(crate) fn tickets_ref(&self) -> &crate::tickets::Tickets {
        self.tickets.as_ref()
    }

    /// The PKCS#11 contexts (for the engine's own transactions outside a request).
    pub(crate) fn pkcs11_ref(&self) -> &crate::operations::pkcs11::Contexts {
        self.pkcs11.as_ref()
    }

    /// The store (for the engine's own transactions outside a request: `rotation.rs`).
    pub(crate) fn store_ref(&self) -> &dyn ObjectStore {
        self.store.as_ref()
    }

    /// A request's bytes in, the response's bytes out. Undecodable bytes get an Invalid Message
    /// response in KMIP 1.0 form.
    /// The incidents are dropped, as by [`Engine::handle_message`].
    pub fn handle_bytes(&self, principal: &Principal, request: &[u8]) -> Vec<u8> {
        let response = match kmipd_ttlv::decode(request, &self.config.limits) {
            Ok(tree) => self.handle_message(principal, &tree),
            Err(_) => self.undecodable_response(),
        };
        kmipd_ttlv::encode_to_vec(&response).unwrap_or_default()
    }

    /// The answer to a request that is not TTLV within the limits: a KMIP 1.0 Response
    /// Message with one batch item, Invalid Message.
    pub fn undecodable_response(&self) -> Ttlv {
        single_failure(
            ProtocolVersion::V1_0,
            &Error::InvalidMessage("undecodable TTLV"),
            self.config.clock.now(),
        )
        .to_ttlv()
    }

    /// A Request Message tree in, the Response Message tree out. Never panics.
    ///
    /// A message whose header is unreadable, or that holds something other than a header and
    /// batch items, gets one batch item without Operation, Invalid Message (KMIP 1.4 §11.1
    /// "Message cannot be parsed"). A readable header with an unreadable batch item fails that
    /// item only, Invalid Message ("Error parsing batch item"), under the batch's error
    /// continuation option.
    ///
    /// A request whose commit finds an object changed by a concurrent request since it read
    /// it ([`Conflict`]) is run again as [`Retry`] says (pausing this thread).
    ///
    /// The answer's incidents (store and internal failures, `incident.rs`) are dropped: this
    /// is for tests and in-process tools. A server calls [`Engine::handle`] and logs them.
    pub fn handle_message(&self, principal: &Principal, request: &Ttlv) -> Ttlv {
        self.handle(principal, request).response
    }

    /// [`Engine::handle_message`] with the incidents met on the way, for the operator.
    pub fn handle(&self, principal: &Principal, request: &Ttlv) -> Answer {
        let mut retry = Retry::new();
        loop {
            match self.complete(self.prepare(principal, request)) {
                Ok(answer) => return answer,
                Err(conflict) => match retry.after_conflict() {
                    Some(pause) => std::thread::sleep(pause),
                    None => return Answer::clean(conflict.into_answer()),
                },
            }
        }
    }

    /// The first half of [`Engine::handle_message`]: runs every batch item against the store
    /// and in memory, without storing anything. Its changes are stored, and its answer made
    /// final, by [`Engine::complete`]; a [`Prepared`] without changes
    /// ([`Prepared::needs_commit`] false) completes without touching the store. Dropping a
    /// `Prepared` discards its changes. Does not block on I/O except for the store's reads.
    pub fn prepare(&self, principal: &Principal, request: &Ttlv) -> Prepared {
        self.prepare_in(self.store.as_ref(), principal, request)
    }

    /// [`Engine::prepare`] against `overlay` (what was fetched ahead for this request,
    /// [`kmipd_store::prefetch`]) instead of the store: never blocks. When it read something
    /// not fetched ([`Overlay::take_missed`] not empty) or asked what an overlay does not
    /// serve ([`Overlay::unsupported`]), the result is meaningless: drop it, fetch what was
    /// missed (or run the request with [`Engine::handle`]) and prepare again. Only for
    /// [replayable](Self::is_replayable) requests, whose preparation leaves nothing behind.
    pub fn prepare_over(
        &self,
        overlay: &Overlay,
        principal: &Principal,
        request: &Ttlv,
    ) -> Prepared {
        self.prepare_in(overlay, principal, request)
    }

    fn prepare_in(
        &self,
        store: &dyn ObjectStore,
        principal: &Principal,
        request: &Ttlv,
    ) -> Prepared {
        // The batch items are read in place: their payloads are borrowed, not copied.
        if let Ok((header, items)) = RequestMessage::read(request) {
            let items = items.into_iter().map(Item::Read).collect();
            return self.run(store, principal, &header, items);
        }
        let header = if request.tag == tag::REQUEST_MESSAGE {
            RequestMessage::salvage_header(request)
        } else {
            None
        };
        let err = Error::InvalidMessage("malformed request message");
        let now = self.config.clock.now();
        let Some(header) = header else {
            return Prepared::answer(single_failure(ProtocolVersion::V1_0, &err, now));
        };
        match salvage_items(request) {
            Some(items) if !items.is_empty() => self.run(store, principal, &header, items),
            _ => {
                let version = self.answer_version(header.protocol_version);
                Prepared::answer(single_failure(version, &err, now))
            }
        }
    }

    /// The second half of [`Engine::handle`]: stores the changes of `prepared` in one
    /// commit (blocking until they are durable) and returns the Response Message and the
    /// incidents; when the commit fails, every item of the request fails with the store's
    /// error, nothing of the batch is kept, and the failure is an incident. `Err` when an
    /// object the request read has changed since (a concurrent request's commit): nothing was
    /// stored, and the request should be prepared again ([`Retry`]).
    pub fn complete(&self, prepared: Prepared) -> Result<Answer, Conflict> {
        let Prepared {
            response,
            changes,
            items,
            incidents,
            consumed,
            streamed,
            pushes,
        } = prepared;
        if changes.is_empty() {
            forget(&self.pending, &consumed);
            self.streams.apply(streamed, self.config.clock.now());
            return Ok(Answer {
                response: response.into_ttlv(),
                incidents,
                pushes: Vec::new(),
            });
        }
        let subject = commit_subject(&changes);
        let version = response.header.protocol_version;
        let stored = self.store.commit(changes);
        let failed = Failed {
            items,
            subject,
            now: self.config.clock.now(),
        };
        let answer = answer_after_commit(
            version,
            response.into_ttlv(),
            incidents,
            &failed,
            stored,
            pushes,
        );
        if answer.is_ok() {
            forget(&self.pending, &consumed);
            self.streams.apply(streamed, self.config.clock.now());
        }
        answer
    }

    /// [`Engine::complete`] without blocking: the changes go to the store with
    /// [`ObjectStore::commit_then`], and `done` gets the outcome once they are durable
    /// (or failed), possibly on the store's thread and possibly before this returns. `done`
    /// must be quick (an async server sends on a channel).
    pub fn complete_then(
        &self,
        prepared: Prepared,
        done: impl FnOnce(Result<Answer, Conflict>) + Send + 'static,
    ) {
        self.complete_journaled_in(
            self.store.as_ref(),
            prepared,
            |_| None,
            move |answer, _| done(answer),
        );
    }

    /// [`Engine::complete_then`] for a request prepared with [`Engine::prepare_over`]: its
    /// commit is handed to `overlay` ([`Overlay::take_commit`]), for the caller to run
    /// ([`AsyncAccess::commit`]) and then pass its outcome on; `done` is called then (at once
    /// when there is nothing to commit).
    pub fn complete_then_over(
        &self,
        overlay: &Overlay,
        prepared: Prepared,
        done: impl FnOnce(Result<Answer, Conflict>) + Send + 'static,
    ) {
        self.complete_journaled_in(overlay, prepared, |_| None, move |answer, _| done(answer));
    }

    /// [`Engine::complete_then`] with a record of the request (the server's audit record) made
    /// durable together with its commit, when the store [journals](ObjectStore::journals):
    /// `journal` is called here, on the caller's thread, with the response the request gets if
    /// its commit succeeds (and only when there is a commit and the store journals), and its
    /// entry goes with the changes to [`ObjectStore::commit_journaled`]. `done` gets the
    /// outcome and whether the entry is durable: `true` only when the commit was stored with
    /// it. When the commit's checks fail ([`Conflict`]) or it fails, the entry was dropped
    /// unwritten; a request run again makes a new one.
    pub fn complete_journaled(
        &self,
        prepared: Prepared,
        journal: impl FnOnce(&Ttlv) -> Option<kmipd_store::JournalEntry>,
        done: impl FnOnce(Result<Answer, Conflict>, bool) + Send + 'static,
    ) {
        self.complete_journaled_in(self.store.as_ref(), prepared, journal, done);
    }

    fn complete_journaled_in(
        &self,
        store: &dyn ObjectStore,
        prepared: Prepared,
        journal: impl FnOnce(&Ttlv) -> Option<kmipd_store::JournalEntry>,
        done: impl FnOnce(Result<Answer, Conflict>, bool) + Send + 'static,
    ) {
        let Prepared {
            response,
            changes,
            items,
            incidents,
            consumed,
            streamed,
            pushes,
        } = prepared;
        if changes.is_empty() {
            forget(&self.pending, &consumed);
            self.streams.apply(streamed, self.config.clock.now());
            done(
                Ok(Answer {
                    response: response.into_ttlv(),
                    incidents,
                    pushes: Vec::new(),
                }),
                false,
            );
            return;
        }
        let subject = commit_subject(&changes);
        let version = response.header.protocol_version;
        // Built here rather than in the completion, which runs on the store's commit thread.
        let success = response.into_ttlv();
        let entry = if store.journals() {
            journal(&success)
        } else {
            None
        };
        let journaled = entry.is_some();
        let clock = self.config.clock.clone();
        let pending = Arc::clone(&self.pending);
        let streams = Arc::clone(&self.streams);
        store.commit_journaled(
            changes,
            entry,
            Box::new(move |stored| {
                let committed = stored.is_ok();
                let failed = Failed {
                    items,
                    subject,
                    now: clock.now(),
                };
                let answer =
                    answer_after_commit(version, success, incidents, &failed, stored, pushes);
                if answer.is_ok() {
                    forget(&pending, &consumed);
                    streams.apply(streamed, clock.now());
                }
                done(answer, journaled && committed);
            }),
        );
    }

    /// Whether the store's reads wait only on this process ([`ObjectStore::reads_are_local`]).
    /// A server runs [light](Self::is_light) requests on its async threads only then; with a
    /// store that waits on the network (PostgreSQL) every request goes to threads that may
    /// block.
    pub fn store_reads_are_local(&self) -> bool {
        self.store.reads_are_local()
    }

    /// The store's asynchronous reads and commits ([`ObjectStore::async_access`]), if it
    /// has them (PostgreSQL): a server prepares [light](Self::is_light),
    /// [replayable](Self::is_replayable) requests on its async threads against an
    /// [overlay](Self::overlay) of what it fetched with them.
    pub fn async_access(&self) -> Option<Arc<dyn AsyncAccess>> {
        self.store.async_access()
    }

    /// An empty [`Overlay`] over the store, for one request ([`Engine::prepare_over`]).
    pub fn overlay(&self) -> Overlay {
        Overlay::new(Arc::clone(&self.store))
    }

    /// Whether preparing `request` leaves nothing behind in the engine's memory, so that a
    /// preparation may be dropped and run again (as [`Engine::prepare_over`] needs): no
    /// Asynchronous Indicator (a deferred request is kept for Poll), no Authentication (a
    /// Login ticket with a usage limit is used up when presented), and no Login, Logout,
    /// Delegated Login (tickets) or PKCS#11 (contexts) item. Streamed cryptography stages its
    /// changes until completion, as the commit does. Anything unreadable is not replayable.
    pub fn is_replayable(request: &Ttlv) -> bool {
        let Some(header) = request
            .children()
            .into_iter()
            .flatten()
            .find(|c| c.tag == tag::REQUEST_HEADER)
        else {
            return false;
        };
        let header_ok = header.children().into_iter().flatten().all(|f| {
            f.tag != tag::AUTHENTICATION
                && !(f.tag == tag::ASYNCHRONOUS_INDICATOR && f.value != Value::Boolean(false))
        });
        let items_ok = request
            .children()
            .into_iter()
            .flatten()
            .filter(|c| c.tag == tag::BATCH_ITEM)
            .all(|item| {
                item.children().into_iter().flatten().any(|f| {
                    f.tag == tag::OPERATION
                        && matches!(f.value, Value::Enumeration(code)
                            if crate::dispatch::Op::from_code(code).is_some()
                                && ![op::LOGIN, op::LOGOUT, op::DELEGATED_LOGIN, op::PKCS_11]
                                    .contains(&code))
                })
            });
        header_ok && items_ok
    }

    /// What preparing `request` will most likely read, to fetch before the first
    /// preparation ([`Engine::prepare_over`]): every Unique Identifier the batch items name
    /// (the objects themselves, wrapping keys, ...), and the constraints setting when an item
    /// creates an object. Anything else it reads is fetched after a first preparation misses
    /// it.
    pub fn reads_ahead(request: &Ttlv) -> Want {
        fn uids(t: &Ttlv, want: &mut Want) {
            match &t.value {
                Value::TextString(s) if t.tag == tag::UNIQUE_IDENTIFIER => want.uid(s),
                Value::Structure(c) => c.iter().for_each(|c| uids(c, want)),
                _ => {}
            }
        }
        let mut want = Want::default();
        for item in request
            .children()
            .into_iter()
            .flatten()
            .filter(|c| c.tag == tag::BATCH_ITEM)
        {
            for f in item.children().into_iter().flatten() {
                match &f.value {
                    Value::Enumeration(code)
                        if f.tag == tag::OPERATION
                            && [op::CREATE, op::CREATE_SPLIT_KEY, op::JOIN_SPLIT_KEY]
                                .contains(code) =>
                    {
                        want.setting(crate::constraints::SETTING);
                    }
                    _ if f.tag == tag::REQUEST_PAYLOAD => uids(f, &mut want),
                    _ => {}
                }
            }
        }
        want
    }

    /// Whether every batch item of `request` names a light operation (small, bounded work:
    /// reads, attribute edits, symmetric and public-key cryptography; see the list in
    /// `dispatch.rs`) and the batch is short, so that a server may [`prepare`](Self::prepare)
    /// it on an async thread. Anything unreadable is not light.
    pub fn is_light(request: &Ttlv) -> bool {
        /// Longest batch run inline.
        const MAX_LIGHT_ITEMS: usize = 8;
        let Value::Structure(children) = &request.value else {
            return false;
        };
        let mut items = 0usize;
        for c in children {
            if c.tag != tag::BATCH_ITEM {
                continue;
            }
            items = items.saturating_add(1);
            let light = c.children().into_iter().flatten().any(|f| {
                f.tag == tag::OPERATION
                    && matches!(f.value, Value::Enumeration(code)
                        if crate::dispatch::Op::from_code(code).is_some_and(|o| o.is_light()))
            });
            if !light || items > MAX_LIGHT_ITEMS {
                return false;
            }
        }
        items > 0
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

    fn run(
        &self,
        store: &dyn ObjectStore,
        principal: &Principal,
        header: &RequestHeader,
        items: Vec<Item<'_>>,
    ) -> Prepared {
        let Some(version) = self.served(header.protocol_version) else {
            // KMIP 1.4 §11.1: a major version mismatch gets a header and one batch item
            // without Operation (Invalid Message in 1.x, Unsupported Protocol Version in 2.x).
            let version = self.answer_version(header.protocol_version);
            return Prepared::answer(single_failure(
                version,
                &Error::UnsupportedProtocolVersion,
                self.config.clock.now(),
            ));
        };
        if usize::try_from(header.batch_count).ok() != Some(items.len()) {
            return Prepared::answer(error_response(
                version,
                &echoes(&items),
                &Error::InvalidMessage("batch count does not match the batch items"),
                self.config.clock.now(),
            ));
        }
        let spec = version.spec().unwrap_or(Version::V1_0);
        let option = header.batch_error_continuation_option.unwrap_or(bec::STOP);
        if ![bec::STOP, bec::CONTINUE, bec::UNDO].contains(&option) {
            return Prepared::answer(error_response(
                version,
                &echoes(&items),
                &Error::InvalidField("Batch Error Continuation Option"),
                self.config.clock.now(),
            ));
        }
        let now = self.config.clock.now();
        // The header's credentials (a ticket, a username and password, a device) narrow the
        // certificate identity for this request; a bad one fails every item.
        let narrowed = match self.authenticate(principal, header, version, now) {
            Ok(p) => p,
            Err(err) => {
                return Prepared::answer(error_response(version, &echoes(&items), &err, now));
            }
        };
        let principal: &Principal = &narrowed;
        if header.asynchronous_indicator == Some(true)
            && let Some(pending) = self.defer(principal, version, &items, now)
        {
            return pending;
        }
        let policy = self.policy();
        let mut ctx = Ctx {
            principal,
            policy: &policy,
            version,
            spec,
            now,
            tx: Tx::new(store, now),
            id_placeholder: None,
            batch_uids: Vec::new(),
            uid_by_kind: Vec::new(),
            config: &self.config,
            operation: 0,
            kept: Vec::new(),
            streams: Some(&self.streams),
            stream_changes: Vec::new(),
            tickets: &self.tickets,
            pkcs11: &self.pkcs11,
        };
        let mut kept: Vec<ManagedObject> = Vec::new();
        let mut answers: Vec<ResponseBatchItem> = Vec::with_capacity(items.len());
        let mut incidents = Vec::new();
        let mut consumed = Vec::new();
        let mut failed = false;
        for item in &items {
            let sp = ctx.tx.savepoint();
            let streamed_before = ctx.stream_changes.len();
            // Poll answers with the polled item's Operation.
            let mut answered_as = item.operation();
            let result = match item {
                Item::Read(item) if matches!(item.operation, op::POLL | op::CANCEL) => {
                    self.poll_or_cancel(&mut ctx, item, &mut consumed, &mut answered_as)
                }
                Item::Read(item) => run_item(&mut ctx, item),
                Item::Unreadable { .. } => Err(Error::InvalidMessage("unreadable batch item")),
            };
            match result {
                Ok(payload) => answers.push(ResponseBatchItem {
                    operation: answered_as,
                    unique_batch_item_id: item.echo().unique_batch_item_id,
                    result_status: result_status::SUCCESS,
                    result_reason: None,
                    result_message: None,
                    asynchronous_correlation_value: None,
                    payload,
                }),
                Err(err) => {
                    ctx.tx.rollback_to(sp);
                    ctx.stream_changes.truncate(streamed_before);
                    // What the refusal records (dual control) survives its rollback.
                    let refused: Vec<ManagedObject> = ctx.kept.drain(..).collect();
                    for o in refused {
                        keep_requests(&mut ctx.tx, &o);
                        kept.push(o);
                    }
                    answers.push(ResponseBatchItem {
                        operation: answered_as,
                        ..failure(version, &item.echo(), &err)
                    });
                    incidents.extend(Incident::of(&err, item.operation(), item.object()));
                    if option == bec::CONTINUE {
                        continue;
                    }
                    failed = true;
                    break;
                }
            }
        }
        if failed && option == bec::UNDO {
            // Every earlier item was performed and is now undone: its changes go, its answer
            // stays (Operation Undone is not a failure, so the payload remains, as the 3.0
            // BL-M-2 case shows); the failed item keeps its failure.
            ctx.tx.rollback_all();
            ctx.stream_changes.clear();
            for o in &kept {
                keep_requests(&mut ctx.tx, o);
            }
            let last = answers.len().saturating_sub(1);
            for a in answers.iter_mut().take(last) {
                a.result_status = result_status::OPERATION_UNDONE;
            }
        }
        let streamed = std::mem::take(&mut ctx.stream_changes);
        let pushes = self.pushes_for(store, &ctx.tx, version);
        let changes = ctx.tx.into_changes();
        // What a failed commit's answer echoes; nothing to commit, nothing to keep.
        let items = if changes.is_empty() {
            Vec::new()
        } else {
            echoes(&items)
        };
        let response = ResponseMessage {
            header: response_header(version, answers.len(), now),
            items: answers,
        };
        // Maximum Response Size: an answer that would be larger becomes Response Too Large,
        // and then nothing of the batch is kept (the client never learns what was done).
        let response = match self.enforce_size(response, header) {
            Ok(response) => response,
            Err(too_large) => {
                return Prepared {
                    incidents,
                    ..Prepared::answer(too_large)
                };
            }
        };
        Prepared {
            response,
            changes,
            items,
            incidents,
            consumed,
            streamed,
            pushes,
        }
    }

    /// The Put and Notify messages that the batch's surviving changes call for (`push.rs`):
    /// each written object against what the store held before the request.
    fn pushes_for(
        &self,
        store: &dyn ObjectStore,
        tx: &Tx<'_>,
        version: ProtocolVersion,
    ) -> Vec<crate::push::Push> {
        if self.config.push.is_empty() {
            return Vec::new();
        }
        let policy = self.policy();
        let mut out = Vec::new();
        for (uid, after) in tx.written() {
            // A store that cannot read the record now cannot commit over it either.
            let Ok(before) = store.get(uid) else {
                continue;
            };
            out.extend(crate::push::messages_for(
                &self.config.push,
                &policy,
                version,
                before.as_ref(),
                after.as_ref(),
            ));
        }
        out
    }

    /// The principal a request runs as: the certificate identity, narrowed by the header's
    /// Authentication (`tickets.rs`): a Ticket (2.x) by what the ticket carries; a Username
    /// and Password or Device credential, when the server has credentials configured, by the
    /// verified credential (`credentials.rs`). Other credential types change nothing.
    fn authenticate<'p>(
        &self,
        principal: &'p Principal,
        header: &RequestHeader,
        version: ProtocolVersion,
        now: i64,
    ) -> Result<std::borrow::Cow<'p, Principal>, Error> {
        use kmipd_proto::enums::credential_type as ct;
        let Some(auth) = &header.authentication else {
            // No credentials: the certificate identity as it is, not a copy.
            return Ok(std::borrow::Cow::Borrowed(principal));
        };
        let mut narrowed = principal.clone();
        for credential in StructReader::new(auth, tag::AUTHENTICATION)?.repeated(tag::CREDENTIAL) {
            let r = StructReader::new(credential, tag::CREDENTIAL)?;
            let value = r.required(tag::CREDENTIAL_VALUE)?;
            match r.req_enum(tag::CREDENTIAL_TYPE)? {
                ct::TICKET if version.is_v2() => {
                    let ticket = StructReader::new(value, tag::CREDENTIAL_VALUE)?
                        .required(tag::TICKET)
                        .map_err(|_| Error::InvalidTicket)?;
                    let ticket = crate::tickets::read_ticket(ticket)?;
                    let narrowing = self.tickets.present(principal.name(), &ticket, now)?;
                    narrowed = narrowed.narrowed(narrowing);
                }
                ct::USERNAME_AND_PASSWORD | ct::DEVICE => {
                    if let Some(label) = self.config.credentials.verify(value)? {
                        let mut narrowing = narrowed.narrowing().cloned().unwrap_or_default();
                        narrowing.credential = Some(label);
                        narrowed = narrowed.narrowed(Arc::new(narrowing));
                    }
                }
                _ => {}
            }
        }
        Ok(std::borrow::Cow::Owned(narrowed))
    }

    /// An asynchronous request (`pending.rs`): its one item kept for a later Poll, answered
    /// Operation Pending; `None` when it is to run at once (several items, Poll or Cancel,
    /// an unknown operation, or the identity's pending items at their cap).
    fn defer(
        &self,
        principal: &Principal,
        version: ProtocolVersion,
        items: &[Item<'_>],
        now: i64,
    ) -> Option<Prepared> {
        let [Item::Read(item)] = items else {
            return None;
        };
        if matches!(item.operation, op::POLL | op::CANCEL)
            || dispatch::Op::from_code(item.operation).is_none()
        {
            return None;
        }
        let value = self.pending.defer(principal.name(), item.to_item(), now)?;
        Some(Prepared::answer(ResponseMessage {
            header: response_header(version, 1, now),
            items: vec![ResponseBatchItem {
                operation: Some(item.operation),
                unique_batch_item_id: item.unique_batch_item_id.map(<[u8]>::to_vec),
                result_status: result_status::OPERATION_PENDING,
                result_reason: None,
                result_message: None,
                asynchronous_correlation_value: Some(value),
                payload: None,
            }],
        }))
    }

    /// Poll (runs the pending item named by the Asynchronous Correlation Value, answering as
    /// its Operation through `answered_as`) or Cancel (drops it: Canceled).
    fn poll_or_cancel(
        &self,
        ctx: &mut Ctx<'_>,
        item: &BatchItemRef<'_>,
        consumed: &mut Vec<(String, Vec<u8>)>,
        answered_as: &mut Option<u32>,
    ) -> Result<Option<Ttlv>, Error> {
        ctx.operation = item.operation;
        crate::access::check_operation(ctx.principal, item.operation)?;
        let payload = item
            .payload
            .ok_or(Error::MissingData("Asynchronous Correlation Value"))?;
        let value = StructReader::any(payload)?
            .req_bytes(tag::ASYNCHRONOUS_CORRELATION_VALUE)?
            .to_vec();
        let who = ctx.principal.name().to_owned();
        let deferred = self
            .pending
            .peek(&who, &value, ctx.now)
            .ok_or(Error::InvalidAsyncCorrelationValue)?;
        consumed.push((who, value.clone()));
        if item.operation == op::CANCEL {
            return Ok(Some(kmipd_proto::build::structure(
                tag::RESPONSE_PAYLOAD,
                vec![
                    kmipd_proto::build::bytes(tag::ASYNCHRONOUS_CORRELATION_VALUE, value),
                    kmipd_proto::build::enumeration(
                        tag::CANCELLATION_RESULT,
                        kmipd_proto::enums::cancellation_result::CANCELED,
                    ),
                ],
            )));
        }
        *answered_as = Some(deferred.operation);
        run_item(ctx, &deferred.borrowed())
    }

    /// Grants `operations` (Operation enumeration values) on object `uid` to `grantee`, adding
    /// to what it already holds. Only the object's owner or an administrator may grant;
    /// anyone else gets [`Error::NotFound`], as if the object did not exist.
    pub fn grant(
        &self,
        who: &Principal,
        uid: &str,
        grantee: &str,
        operations: &[u32],
    ) -> Result<(), Error> {
        if grantee.is_empty() || grantee.contains(char::is_control) {
            return Err(Error::InvalidField("grantee"));
        }
        if operations.is_empty() {
            return Err(Error::MissingData("no operation to grant"));
        }
        self.edit_owned(who, uid, |object| {
            crate::access::add_grant(object, grantee, operations);
            (true, ())
        })
    }

    /// Takes back `operations` (every operation when `None`) granted on object `uid` to
    /// `grantee`; true when something was taken back. Only the owner or an administrator.
    pub fn revoke_grant(
        &self,
        who: &Principal,
        uid: &str,
        grantee: &str,
        operations: Option<&[u32]>,
    ) -> Result<bool, Error> {
        self.edit_owned(who, uid, |object| {
            let removed = crate::access::remove_grant(object, grantee, operations);
            (removed, removed)
        })
    }

    /// Marks object `uid` as needing dual control (`dual.rs`); true when it was not marked.
    /// Administrators only (anyone else: [`Error::NotFound`]).
    pub fn set_dual_control(&self, who: &Principal, uid: &str) -> Result<bool, Error> {
        if !who.is_admin() {
            return Err(Error::NotFound);
        }
        self.edit_owned(who, uid, |object| {
            let changed = crate::dual::mark(object);
            (changed, changed)
        })
    }

    /// Approves the pending dual control request `id` (`dual.rs`) as `who`, an administrator
    /// other than its requester. `Ok`: the line for the operator; `Err`: the refusal (an
    /// expired request is dropped, and refused).
    pub fn approve_dual(&self, who: &Principal, id: &str) -> Result<String, Error> {
        let uid = crate::dual::uid_of(id).ok_or(Error::NotFound)?;
        if !who.is_admin() {
            return Err(Error::NotFound);
        }
        let now = self.config.clock.now();
        let policy = self.policy();
        self.edit_owned(who, uid, |object| {
            crate::dual::approve(who, object, id, now, &policy)
        })?
        .map_err(Error::Policy)
    }

    /// How many objects are due to leave the Active state within `within` seconds: a
    /// Deactivation Date after now and at most `within` seconds from now, and not destroyed.
    /// Served by the store's date index (cost: the objects with a Deactivation Date in the
    /// range); for the `kmipd_keys_due_deactivation` metric.
    pub fn due_for_deactivation(&self, within: i64) -> Result<usize, Error> {
        use kmipd_proto::enums::state;
        let now = self.config.clock.now();
        let query = kmipd_store::Query::new(vec![kmipd_store::Filter::Date(
            kmipd_proto::attributes::AttrName::Std(tag::DEACTIVATION_DATE),
            now.saturating_add(1),
            now.saturating_add(within),
        )]);
        Ok(self
            .store
            .find(&query)?
            .iter()
            .filter(|o| {
                !matches!(
                    o.attributes.get(tag::STATE),
                    Some(Value::Enumeration(
                        state::DESTROYED | state::DESTROYED_COMPROMISED | state::DEACTIVATED
                    ))
                )
            })
            .count())
    }

    /// How many objects are in each state, in the order of [`OBJECT_STATES`]: the state an
    /// object has now (a Pre-Active object past its Activation Date counts as Active, an
    /// Active one past its Deactivation Date as Deactivated). One query per state through the
    /// store's State index; each object is read once. For the `kmipd_objects{state}` metric
    /// (the server asks at most once a minute).
    pub fn objects_by_state(&self) -> Result<[(u32, usize); 6], Error> {
        let now = self.config.clock.now();
        let mut counts = OBJECT_STATES.map(|s| (s, 0usize));
        for s in OBJECT_STATES {
            let query = kmipd_store::Query::new(vec![kmipd_store::Filter::Attr(
                kmipd_proto::attributes::AttrName::Std(tag::STATE),
                Value::Enumeration(s),
            )]);
            for mut o in self.store.find(&query)? {
                crate::object::apply_dates(&mut o, now);
                let now_state = crate::object::current_state(&o);
                if let Some(c) = counts.iter_mut().find(|(st, _)| Some(*st) == now_state) {
                    c.1 = c.1.saturating_add(1);
                }
            }
        }
        Ok(counts)
    }

    /// The objects whose attributes `who` may read (Get Attributes, as a KMIP request would
    /// be allowed), in creation order, each **without its key material** (`object` is `None`):
    /// what the admin console lists and shows.
    pub fn inventory(&self, who: &Principal) -> Result<Vec<ManagedObject>, Error> {
        let mut all = self.store.all()?;
        all.retain(|o| who.may(o, op::GET_ATTRIBUTES));
        all.sort_by_key(|o| o.sequence);
        for o in &mut all {
            o.object = None;
        }
        Ok(all)
    }

    /// Object `uid` when `who` may read its attributes, **without its key material**
    /// (`object` is `None`); Not Found otherwise, as for a KMIP request.
    pub fn describe(&self, who: &Principal, uid: &str) -> Result<ManagedObject, Error> {
        match self.store.get(uid)? {
            Some(mut o) if who.may(&o, op::GET_ATTRIBUTES) => {
                o.object = None;
                Ok(o)
            }
            _ => Err(Error::NotFound),
        }
    }

    /// The grants on object `uid`, for its owner or an administrator.
    pub fn grants(&self, who: &Principal, uid: &str) -> Result<Vec<crate::access::Grant>, Error> {
        Ok(crate::access::grants(&self.owned(who, uid)?.0))
    }

    /// The stored object and its revision, when `who` is its owner or an administrator.
    fn owned(&self, who: &Principal, uid: &str) -> Result<(ManagedObject, Revision), Error> {
        match self.store.get_revised(uid)? {
            Some((o, r)) if who.may_see(&o) => Ok((o, r)),
            _ => Err(Error::NotFound),
        }
    }

    /// Reads object `uid` (owner or administrator only), lets `edit` change it, and stores it
    /// if `edit` says so, provided nobody changed it meanwhile (else it starts over as
    /// [`Retry`] says). `edit`'s last answer.
    fn edit_owned<T>(
        &self,
        who: &Principal,
        uid: &str,
        mut edit: impl FnMut(&mut ManagedObject) -> (bool, T),
    ) -> Result<T, Error> {
        let mut retry = Retry::new();
        loop {
            let (mut object, revision) = self.owned(who, uid)?;
            let (changed, answer) = edit(&mut object);
            if !changed {
                return Ok(answer);
            }
            object.attributes.set(
                tag::LAST_CHANGE_DATE,
                kmipd_ttlv::Value::DateTime(self.config.clock.now()),
            );
            let changes = vec![
                Change::Expect {
                    uid: uid.to_owned(),
                    revision: Some(revision),
                },
                Change::Put(object),
            ];
            match self.store.commit(changes) {
                Ok(()) => return Ok(answer),
                Err(e @ StoreError::Conflict { .. }) => match retry.after_conflict() {
                    Some(pause) => std::thread::sleep(pause),
                    None => return Err(e.into()),
                },
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The response when it fits the request's Maximum Response Size; otherwise (`Err`) the
    /// same batch items answered Response Too Large.
    fn enforce_size(
        &self,
        response: ResponseMessage,
        header: &RequestHeader,
    ) -> Result<ResponseMessage, ResponseMessage> {
        let Some(max) = header.maximum_response_size else {
            return Ok(response);
        };
        let len = kmipd_ttlv::encoded_len(&response.to_ttlv());
        if usize::try_from(max).is_ok_and(|m| len <= m) {
            return Ok(response);
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
                asynchronous_correlation_value: None,
                payload: None,
            })
            .collect();
        Err(ResponseMessage {
            header: response.header,
            items,
        })
    }
}

/// Stores the dual control requests a refusal recorded on `refused` (`dual.rs`) on the object
/// as the batch now sees it (after the rollback), and nothing else of the refused item.
fn keep_requests(tx: &mut Tx<'_>, refused: &ManagedObject) {
    if let Ok(Some(mut current)) = tx.get(&refused.uid) {
        crate::dual::carry_requests(refused, &mut current);
        tx.put(current);
    }
}

/// The commit of a prepared request found an object changed since the request read it, by a
/// concurrent request's commit: nothing was stored. Prepare the request again, or give up
/// and send [`Conflict::into_answer`].
#[derive(Debug)]
pub struct Conflict {
    answer: Ttlv,
}

impl Conflict {
    /// The answer when giving up: every item failed, General Failure, "retry".
    pub fn into_answer(self) -> Ttlv {
        self.answer
    }
}

/// What answering a failed commit needs.
struct Failed {
    /// The request's items, each answered with the failure.
    items: Vec<Echo>,
    /// The one object the commit changed, if it changed one.
    subject: Option<String>,
    /// The time stamp of the answer.
    now: i64,
}

/// The one object a commit changes, when it changes exactly one (the incident's object).
/// Forgets the pending items a completed request polled or canceled.
fn forget(pending: &crate::pending::Pending, consumed: &[(String, Vec<u8>)]) {
    for (who, value) in consumed {
        pending.remove(who, value);
    }
}

fn commit_subject(changes: &[Change]) -> Option<String> {
    let mut uids = changes.iter().filter_map(|c| match c {
        Change::Put(o) => Some(o.uid.as_str()),
        Change::Delete(uid) => Some(uid.as_str()),
        Change::Expect { .. } | Change::ExpectNoOther { .. } => None,
    });
    let first = uids.next()?;
    uids.all(|u| u == first).then(|| first.to_owned())
}

/// The answer once the store has the commit's outcome.
fn answer_after_commit(
    version: ProtocolVersion,
    response: Ttlv,
    mut incidents: Vec<Incident>,
    failed: &Failed,
    stored: Result<(), StoreError>,
    pushes: Vec<crate::push::Push>,
) -> Result<Answer, Conflict> {
    match stored {
        // The server-to-client messages only once the change is durable.
        Ok(()) => Ok(Answer {
            response,
            incidents,
            pushes,
        }),
        Err(e @ StoreError::Conflict { .. }) => Err(Conflict {
            answer: error_response(version, &failed.items, &Error::Store(e), failed.now)
                .into_ttlv(),
        }),
        Err(e) => {
            let err = Error::Store(e);
            // One incident for the commit: its operation when the request has one item.
            let operation = match failed.items.as_slice() {
                [only] => only.operation,
                _ => None,
            };
            incidents.extend(Incident::of(&err, operation, failed.subject.as_deref()));
            Ok(Answer {
                response: error_response(version, &failed.items, &err, failed.now).into_ttlv(),
                incidents,
                pushes: Vec::new(),
            })
        }
    }
}

/// A request run by [`Engine::prepare`]: its answer, and the changes [`Engine::complete`]
/// stores before that answer may be sent.
pub struct Prepared {
    response: ResponseMessage,
    changes: Vec<Change>,
    /// The request's items, to fail them all if the commit fails (empty without changes).
    items: Vec<Echo>,
    /// Store and internal failures of its items, for the operator.
    incidents: Vec<Incident>,
    /// The pending asynchronous items (identity, correlation value) this request polled or
    /// canceled: they leave the table once it has completed (`pending.rs`).
    consumed: Vec<(String, Vec<u8>)>,
    /// What its streamed steps do to the open streams, applied once it has completed
    /// (`streams.rs`).
    streamed: Vec<crate::streams::Change>,
    /// The server-to-client messages its commit calls for (`push.rs`), handed out with the
    /// answer once the commit is durable.
    pushes: Vec<crate::push::Push>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the payloads or the changes: they may hold key material.
        f.debug_struct("Prepared")
            .field("items", &self.response.items.len())
            .field("changes", &self.changes.len())
            .field("incidents", &self.incidents)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// An answer with nothing to store.
    fn answer(response: ResponseMessage) -> Prepared {
        Prepared {
            response,
            changes: Vec::new(),
            items: Vec::new(),
            incidents: Vec::new(),
            consumed: Vec::new(),
            streamed: Vec::new(),
            pushes: Vec::new(),
        }
    }

    /// Whether [`Engine::complete`] has changes to store (and so blocks until they are
    /// durable).
    pub fn needs_commit(&self) -> bool {
        !self.changes.is_empty()
    }
}

/// One batch item of a request, borrowed from the request message: read, or unreadable
/// (what could be read of it is echoed).
enum Item<'a> {
    Read(BatchItemRef<'a>),
    Unreadable {
        operation: Option<u32>,
        unique_batch_item_id: Option<&'a [u8]>,
    },
}

impl Item<'_> {
    fn operation(&self) -> Option<u32> {
        match self {
            Item::Read(i) => Some(i.operation),
            Item::Unreadable { operation, .. } => *operation,
        }
    }

    /// The Unique Identifier the item's payload names, if any (the object of an incident).
    fn object(&self) -> Option<&str> {
        let Item::Read(i) = self else { return None };
        StructReader::any(i.payload?)
            .ok()?
            .text(tag::UNIQUE_IDENTIFIER)
            .ok()
            .flatten()
    }

    /// What a failure answer echoes of it.
    fn echo(&self) -> Echo {
        let (operation, unique_batch_item_id) = match self {
            Item::Read(i) => (Some(i.operation), i.unique_batch_item_id),
            Item::Unreadable {
                operation,
                unique_batch_item_id,
            } => (*operation, *unique_batch_item_id),
        };
        Echo {
            operation,
            unique_batch_item_id: unique_batch_item_id.map(<[u8]>::to_vec),
        }
    }
}

/// What the answer to a failed batch item echoes of it (kept past the request message for a
/// commit that fails).
struct Echo {
    operation: Option<u32>,
    unique_batch_item_id: Option<Vec<u8>>,
}

fn echoes(items: &[Item<'_>]) -> Vec<Echo> {
    items.iter().map(Item::echo).collect()
}

/// The batch items of a request message that did not read as a whole; `None` when the message
/// holds anything but a header and batch items.
fn salvage_items(request: &Ttlv) -> Option<Vec<Item<'_>>> {
    let r = StructReader::any(request).ok()?;
    let mut items = Vec::new();
    for child in r.items() {
        if child.tag == tag::REQUEST_HEADER {
            continue;
        }
        if child.tag != tag::BATCH_ITEM {
            return None;
        }
        items.push(match BatchItemRef::from_ttlv(child) {
            Ok(item) => Item::Read(item),
            Err(_) => {
                let r = StructReader::any(child).ok();
                Item::Unreadable {
                    operation: r.and_then(|r| r.enumeration(tag::OPERATION).ok().flatten()),
                    unique_batch_item_id: r
                        .and_then(|r| r.bytes(tag::UNIQUE_BATCH_ITEM_ID).ok().flatten()),
                }
            }
        });
    }
    Some(items)
}

/// Runs one batch item: the operation must exist in the request's version, and a critical
/// Message Extension (none is understood) refuses the item (KMIP 1.4 §11.1).
fn run_item(ctx: &mut Ctx<'_>, item: &BatchItemRef<'_>) -> Result<Option<Ttlv>, Error> {
    let defined = kmipd_proto::spec::enum_of_tag(tag::OPERATION.value())
        .and_then(|e| e.entry(item.operation))
        .is_some_and(|e| e.defined_in(ctx.spec));
    if !defined {
        return Err(Error::OperationNotSupported);
    }
    if let Some(ext) = item.message_extension {
        let critical = StructReader::any(ext)?.boolean(tag::CRITICALITY_INDICATOR)?;
        if critical != Some(false) {
            return Err(Error::FeatureNotSupported("critical message extension"));
        }
    }
    ctx.operation = item.operation;
    crate::access::check_operation(ctx.principal, item.operation)?;
    dispatch::dispatch(ctx, item.operation, item.payload)
}

/// A response header stamped `now` (the engine's [`Clock`]).
fn response_header(version: ProtocolVersion, count: usize, now: i64) -> ResponseHeader {
    // KMIP 1.4 §6.18/2.1 §9.9-9.10: in a client-to-server operation the Client Correlation Value
    // travels in the request only, and the server provides its own Server Correlation Value
    // (globally unique, for both sides' logs) in the response.
    let server_correlation =
        (version >= ProtocolVersion::V1_4).then(|| uuid::Uuid::new_v4().to_string());
    ResponseHeader {
        protocol_version: version,
        time_stamp: now,
        client_correlation_value: None,
        server_correlation_value: server_correlation,
        batch_count: i32::try_from(count).unwrap_or(i32::MAX),
    }
}

fn failure(version: ProtocolVersion, item: &Echo, err: &Error) -> ResponseBatchItem {
    ResponseBatchItem {
        operation: item.operation,
        unique_batch_item_id: item.unique_batch_item_id.clone(),
        result_status: result_status::OPERATION_FAILED,
        result_reason: Some(err.result_reason(version)),
        result_message: Some(err.client_message()),
        asynchronous_correlation_value: None,
        payload: None,
    }
}

/// Every item of the request fails with the same error.
fn error_response(
    version: ProtocolVersion,
    items: &[Echo],
    err: &Error,
    now: i64,
) -> ResponseMessage {
    let answers: Vec<ResponseBatchItem> = items.iter().map(|i| failure(version, i, err)).collect();
    ResponseMessage {
        header: response_header(version, answers.len(), now),
        items: answers,
    }
}

/// A header and one batch item without Operation that fails with `err`.
fn single_failure(version: ProtocolVersion, err: &Error, now: i64) -> ResponseMessage {
    ResponseMessage {
        header: response_header(version, 1, now),
        items: vec![ResponseBatchItem {
            operation: None,
            unique_batch_item_id: None,
            result_status: result_status::OPERATION_FAILED,
            result_reason: Some(err.result_reason(version)),
            result_message: Some(err.client_message()),
            asynchronous_correlation_value: None,
            payload: None,
        }],
    }
}

/// Unit-test helpers that drive the whole engine: a one-item request message, the first answer
/// of a response, both in one call.
#[cfg(test)]
pub(crate) mod testing {
    use kmipd_proto::build;
    use kmipd_proto::message::ResponseMessage;
    use kmipd_proto::tag;
    use kmipd_ttlv::Ttlv;

    use super::{Engine, Principal};

    /// A request message of protocol version `major.minor` with one batch item: `op` with
    /// `payload` as its Request Payload.
    pub(crate) fn request(major: i32, minor: i32, op: u32, payload: Vec<Ttlv>) -> Ttlv {
        build::structure(
            tag::REQUEST_MESSAGE,
            vec![
                build::structure(
                    tag::REQUEST_HEADER,
                    vec![
                        build::structure(
                            tag::PROTOCOL_VERSION,
                            vec![
                                build::int(tag::PROTOCOL_VERSION_MAJOR, major),
                                build::int(tag::PROTOCOL_VERSION_MINOR, minor),
                            ],
                        ),
                        build::int(tag::BATCH_COUNT, 1),
                    ],
                ),
                build::structure(
                    tag::BATCH_ITEM,
                    vec![
                        build::enumeration(tag::OPERATION, op),
                        build::structure(tag::REQUEST_PAYLOAD, payload),
                    ],
                ),
            ],
        )
    }

    /// The first batch item of a response message: Result Status, Result Reason, payload.
    pub(crate) fn first_item(resp: &Ttlv) -> (u32, Option<u32>, Option<Ttlv>) {
        let m = ResponseMessage::from_ttlv(resp).unwrap();
        let i = m.items.into_iter().next().unwrap();
        (i.result_status, i.result_reason, i.payload)
    }

    /// Sends `engine` a one-item request of `version` (major, minor) as principal `a` and
    /// answers its first batch item (see [`first_item`]).
    pub(crate) fn call(
        engine: &Engine,
        version: (i32, i32),
        op: u32,
        payload: Vec<Ttlv>,
    ) -> (u32, Option<u32>, Option<Ttlv>) {
        let (major, minor) = version;
        let req = request(major, minor, op, payload);
        first_item(&engine.handle_message(&Principal::new("a"), &req))
    }
}
