//! Multi-part ("streamed") cryptography (KMIP 1.3+: Init Indicator, Correlation Value, Final
//! Indicator; 1.4 §4.29-4.35, 2.1 §6.1 and §6.1.x of Encrypt, Decrypt, Sign, Signature
//! Verify, MAC, MAC Verify and Hash): the server-side state of the open streams.
//!
//! The first request of a stream (Init Indicator true) opens it: the engine answers with a
//! fresh Correlation Value (16 random bytes, never chosen by the client), under which the
//! stream's state is kept here; each later request names it, the one with Final Indicator true
//! closes it. What a stream keeps is the running cryptographic state only (an OpenSSL cipher or
//! digest context, see `crypto::stream`), never the key: every step loads the key again, so a
//! key revoked, destroyed or no longer permitted mid-stream stops the stream at its next step.
//!
//! - **Owned.** A stream belongs to the identity that opened it (the principal's name) and to
//!   its operation: another identity, or another operation, presenting its Correlation Value
//!   gets what an unknown value gets (Invalid Correlation Value in 2.x, Item Not Found in 1.x,
//!   which has no such reason), so a value's existence is not revealed.
//! - **Bounded.** At most [`MAX_PER_IDENTITY`] open streams per identity and [`MAX_STREAMS`] in
//!   all (one more is refused, nothing is evicted); a stream idle for [`IDLE_SECONDS`] is
//!   dropped; a stream that must hold its output back (AEAD decryption keeps the plaintext until
//!   the tag has been checked at the final step) holds at most [`MAX_HELD_BYTES`].
//! - **Zeroized.** The states are dropped with their OpenSSL contexts, which OpenSSL cleanses
//!   on free, and held bytes are `Zeroizing`.
//! - **In memory only.** Streams are lost on restart (and are per engine: the nodes of a
//!   PostgreSQL cluster do not share them); a client whose server restarted gets the refusal
//!   above and starts again.
//!
//! A step's new state is staged in the request's context ([`Change`]) and applied here only
//! once the request has completed (its commit, if any, durable): a request run again after a
//! store conflict ([`crate::Retry`]) starts from the same state, and a failed item leaves its
//! stream as it was. The steps of one stream are the client's sequence: of two steps of one
//! stream run at the same moment, the one completed last finds the stream moved on and its new
//! state is dropped (the stream then continues from the other).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::crypto::stream::State;
use crate::error::{Error, Result};

/// The most streams one identity may have open.
pub(crate) const MAX_PER_IDENTITY: usize = 64;
/// The most streams open in all.
pub(crate) const MAX_STREAMS: usize = 4096;
/// How long a stream may wait for its next step, in seconds.
pub(crate) const IDLE_SECONDS: i64 = 600;
/// The most bytes a stream may hold back (AEAD decryption).
pub(crate) const MAX_HELD_BYTES: usize = 16 << 20;

/// One open stream.
pub(crate) struct Stream {
    /// The identity that opened it.
    owner: String,
    /// Its Operation (Encrypt, Sign, ...).
    pub(crate) operation: u32,
    /// The key's Unique Identifier (none for Hash).
    pub(crate) uid: Option<String>,
    /// The cryptographic state.
    pub(crate) state: State,
    /// When its last step completed.
    last_used: i64,
    /// How many steps completed (a staged change applies only to the step it followed).
    steps: u64,
}

impl Stream {
    /// A new stream of `operation` on key `uid`, for `owner`.
    pub(crate) fn new(owner: &str, operation: u32, uid: Option<String>, state: State) -> Stream {
        Stream {
            owner: owner.to_owned(),
            operation,
            uid,
            state,
            last_used: 0,
            steps: 0,
        }
    }

    /// A copy to advance (the table keeps the original until the step completes).
    fn duplicate(&self) -> Result<Stream> {
        Ok(Stream {
            owner: self.owner.clone(),
            operation: self.operation,
            uid: self.uid.clone(),
            state: self.state.duplicate()?,
            last_used: self.last_used,
            steps: self.steps,
        })
    }
}

/// What a completed step does to the table.
pub(crate) enum Change {
    /// Opens a stream under a new Correlation Value.
    Open(Vec<u8>, Stream),
    /// Stores a stream's advanced state.
    Advance(Vec<u8>, Stream),
    /// Closes a stream (its final step).
    Close(Vec<u8>, String),
}

/// The open streams: Correlation Value -> stream.
#[derive(Default)]
pub(crate) struct Streams(Mutex<BTreeMap<Vec<u8>, Stream>>);

impl Streams {
    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Stream>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new Correlation Value for a stream `who` opens now, or the refusal when `who` (or the
    /// server) has as many streams open as allowed. Idle streams are dropped first.
    pub(crate) fn reserve(&self, who: &str, now: i64) -> Result<Vec<u8>> {
        let mut table = self.table();
        table.retain(|_, s| now.saturating_sub(s.last_used) < IDLE_SECONDS);
        let mine = table.values().filter(|s| s.owner == who).count();
        if mine >= MAX_PER_IDENTITY || table.len() >= MAX_STREAMS {
            return Err(Error::TooManyStreams);
        }
        Ok(crate::crypto::keygen::symmetric(16)?.to_vec())
    }

    /// A copy of `who`'s stream of `operation` under `value`, to advance by one step.
    pub(crate) fn fetch(
        &self,
        who: &str,
        operation: u32,
        value: &[u8],
        now: i64,
    ) -> Result<Stream> {
        let table = self.table();
        match table.get(value) {
            Some(s)
                if s.owner == who
                    && s.operation == operation
                    && now.saturating_sub(s.last_used) < IDLE_SECONDS =>
            {
                s.duplicate()
            }
            _ => Err(Error::InvalidCorrelationValue),
        }
    }

    /// Applies the changes of a completed request, at `now`.
    pub(crate) fn apply(&self, changes: Vec<Change>, now: i64) {
        if changes.is_empty() {
            return;
        }
        let mut table = self.table();
        for change in changes {
            match change {
                Change::Open(value, mut stream) => {
                    let mine = table.values().filter(|s| s.owner == stream.owner).count();
                    // Bounds re-checked: concurrent openings may have filled them since.
                    if mine < MAX_PER_IDENTITY && table.len() < MAX_STREAMS {
                        stream.last_used = now;
                        table.insert(value, stream);
                    }
                }
                Change::Advance(value, mut stream) => {
                    if let Some(current) = table.get_mut(&value)
                        && current.owner == stream.owner
                        && current.steps == stream.steps
                    {
                        stream.steps = stream.steps.saturating_add(1);
                        stream.last_used = now;
                        *current = stream;
                    }
                }
                Change::Close(value, owner) => {
                    if table.get(&value).is_some_and(|s| s.owner == owner) {
                        table.remove(&value);
                    }
                }
            }
        }
    }

    /// How many streams are open.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table().len()
    }
}

impl Stream {
    /// The identity that opened it.
    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::params::Params;
    use crate::crypto::stream::{Engine, digest};
    use kmipd_proto::enums::{hashing_algorithm as ha, operation as op};

    fn state() -> State {
        State::new(
            Engine::Digest(digest(ha::SHA_256).unwrap()),
            Params::default(),
        )
    }

    #[test]
    fn a_step_applies_only_to_the_state_it_advanced() {
        let streams = Streams::default();
        let value = streams.reserve("a", 100).unwrap();
        streams.apply(
            vec![Change::Open(
                value.clone(),
                Stream::new("a", op::HASH, None, state()),
            )],
            100,
        );
        // Two steps fetched from the same state: the first one completed wins.
        let one = streams.fetch("a", op::HASH, &value, 101).unwrap();
        let two = streams.fetch("a", op::HASH, &value, 101).unwrap();
        streams.apply(vec![Change::Advance(value.clone(), one)], 102);
        streams.apply(vec![Change::Advance(value.clone(), two)], 103);
        let now = streams.fetch("a", op::HASH, &value, 104).unwrap();
        assert_eq!((now.steps, now.last_used), (1, 102));
        // Closing needs the owner.
        streams.apply(vec![Change::Close(value.clone(), "b".to_owned())], 105);
        assert_eq!(streams.len(), 1);
        streams.apply(vec![Change::Close(value.clone(), "a".to_owned())], 105);
        assert_eq!(streams.len(), 0);
        assert!(matches!(
            streams.fetch("a", op::HASH, &value, 106),
            Err(Error::InvalidCorrelationValue)
        ));
    }

    #[test]
    fn openings_beyond_the_bound_are_not_kept() {
        let streams = Streams::default();
        let mut changes = Vec::new();
        for _ in 0..=MAX_PER_IDENTITY {
            // Reserved before any opening is applied (concurrent requests).
            let value = streams.reserve("a", 1).unwrap();
            changes.push(Change::Open(
                value,
                Stream::new("a", op::HASH, None, state()),
            ));
        }
        streams.apply(changes, 1);
        assert_eq!(streams.len(), MAX_PER_IDENTITY);
        assert!(matches!(
            streams.reserve("a", 2),
            Err(Error::TooManyStreams)
        ));
        assert!(streams.reserve("b", 2).is_ok());
    }
}
