//! THE retry policy for a request whose commit met a concurrent change.
//!
//! A commit carries a `Change::Expect` for every object the request read and then writes; when
//! a concurrent request changed such an object meanwhile, the store refuses the commit
//! ([`kmipd_store::StoreError::Conflict`], nothing stored) and the request is run again on
//! the new record. [`Retry`] says when: after a random pause of up to `attempt` milliseconds
//! (at most 8), so that requests contending for one object spread out instead of colliding
//! again, and at most [`Retry::MAX_ATTEMPTS`] runs in all; then the request fails with
//! General Failure, "retry the request" ([`crate::Conflict::into_answer`]).
//!
//! Every loop that commits under expectations uses it: [`crate::Engine::handle`] (the pause
//! on the calling thread), the grants of [`crate::Engine::grant`] and
//! [`crate::Engine::revoke_grant`], and a server that completes requests asynchronously
//! ([`crate::Engine::complete_then`], the pause on its timer).

use std::time::Duration;

use rand_core::{OsRng, RngCore};

/// Where a request is in its runs; see the module docs.
#[derive(Debug)]
pub struct Retry {
    /// Runs so far.
    runs: usize,
}

impl Default for Retry {
    fn default() -> Self {
        Retry::new()
    }
}

impl Retry {
    /// How many times in all a request is run when its commits keep finding objects changed
    /// by concurrent requests.
    pub const MAX_ATTEMPTS: usize = 32;

    /// Longest pause between two runs, in milliseconds.
    const MAX_PAUSE_MS: u32 = 8;

    /// Before the first run.
    pub fn new() -> Retry {
        Retry { runs: 1 }
    }

    /// After a run that conflicted: the pause before running again, or `None` when the runs
    /// are spent (give up).
    pub fn after_conflict(&mut self) -> Option<Duration> {
        if self.runs >= Retry::MAX_ATTEMPTS {
            return None;
        }
        let cap_ms = u32::try_from(self.runs)
            .unwrap_or(Retry::MAX_PAUSE_MS)
            .clamp(1, Retry::MAX_PAUSE_MS);
        self.runs = self.runs.saturating_add(1);
        // Jitter only, not a secret.
        let micros = OsRng.next_u32() % cap_ms.saturating_mul(1_000);
        Some(Duration::from_micros(u64::from(micros)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_a_cap_and_the_runs_end() {
        let mut r = Retry::new();
        let mut pauses = Vec::new();
        while let Some(p) = r.after_conflict() {
            pauses.push(p);
        }
        // MAX_ATTEMPTS runs: one first run and MAX_ATTEMPTS - 1 pauses before the others.
        assert_eq!(pauses.len(), Retry::MAX_ATTEMPTS - 1);
        for (i, p) in pauses.iter().enumerate() {
            let cap = Duration::from_millis(u64::try_from((i + 1).min(8)).unwrap());
            assert!(*p < cap, "pause {i}: {p:?} not under {cap:?}");
        }
        assert_eq!(r.after_conflict(), None, "spent stays spent");
    }
}
