//! The KMIP engine: typed requests in, responses out, against an [`kmipd_store::ObjectStore`].
//! No sockets, no TLS: the server crate feeds it bytes, the conformance runner feeds it trees.
//!
//! - [`engine`]: batches (order, error continuation, ID Placeholder, Maximum Response Size) and
//!   versions.
//! - `dispatch`: the one exhaustive match from Operation to handler; `operations/`: one file
//!   per operation.
//! - [`error`]: the error type and the one mapping to KMIP Result Reasons.
//! - [`incident`]: store and internal failures, handed back with the answer for the operator.
//! - [`retry`]: the one retry policy for commits that meet a concurrent change.
//! - `lifecycle`: the state machine of KMIP's key lifecycle.
//! - [`access`]: roles, owners, grants and scopes; [`policy`]: the server policy on new keys;
//!   [`rotation`]: automatic rotation (the Rotate attributes); [`tickets`]: Login tickets and
//!   the narrowing of an identity by its header's credentials.

pub mod access;
mod attrs;
mod constraints;
mod context;
pub mod credentials;
pub(crate) mod crypto;
mod dispatch;
pub mod dual;
pub mod engine;
pub mod error;
pub mod fuzzing;
pub mod incident;
pub mod issuing;
mod keyblock;
mod lifecycle;
mod object;
mod objects;
mod operations;
mod pending;
pub mod policy;
pub mod push;
pub mod retry;
pub mod rotation;
mod streams;
pub mod tickets;

pub use engine::{Clock, Conflict, Engine, EngineConfig, OBJECT_STATES, Prepared, Principal};
pub use error::Error;
pub use incident::{Answer, Incident, IncidentKind};
pub use policy::Policy;
pub use retry::Retry;
