//! THE retry policy for a request whose commit met a concurrent change.
//!
//! A commit carries a `Change::Expect` for every object the request read and then writes; when
//! a concurrent request changed such an object meanwhile, the store refuses the commit
//! ([`kmipd_store::StoreError::Conflict`], nothing stored) and the request is run again on
//! the new record. [`Retry`] says when: after a random pause (full jitter) under a ceiling
//! that doubles with every conflict, 1 ms before the second run, 2 ms, 4 ms, ... up to 128 ms,
//! and at most [`Retry::MAX_ATTEMPTS`] runs in all; then the request fails with General
//! Failure, "retry the request" ([`crate::Conflict::into_answer`]). Requests contending for
//! one object thus spread out further each time they collide: under load a commit (over sled,
//! with its fsync) can take longer than a few milliseconds, and pauses that stayed that short
//! let the same contenders collide again until their runs were spent. The pauses of one
//! request add up to less than [`Retry::MAX_TOTAL_PAUSE`] (3.2 s; half that on average), and
//! only a request that conflicted 31 times waits that long.
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

    /// Ceiling of the longest pauses, in milliseconds; the first ceilings are 1, 2, 4, ...
    const MAX_PAUSE_MS: u32 = 128;

    /// Bound on the sum of one request's pauses: the sum of the ceilings of its
    /// `MAX_ATTEMPTS - 1` pauses (1 + 2 + ... + 64 + 24 × 128 ms).
    pub const MAX_TOTAL_PAUSE: Duration = Duration::from_millis(127 + 24 * 128);

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
        let cap_ms = Retry::ceiling_ms(self.runs);
        self.runs = self.runs.saturating_add(1);
        // Jitter only, not a secret.
        let micros = OsRng.next_u32() % cap_ms.saturating_mul(1_000);
        Some(Duration::from_micros(u64::from(micros)))
    }

    /// The ceiling of the pause after run `runs` (1 based): 2^(runs-1) ms, at most
    /// [`Retry::MAX_PAUSE_MS`].
    fn ceiling_ms(runs: usize) -> u32 {
        u32::try_from(runs.saturating_sub(1))
            .ok()
            .and_then(|shift| 1_u32.checked_shl(shift))
            .map_or(Retry::MAX_PAUSE_MS, |c| c.min(Retry::MAX_PAUSE_MS))
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
        let mut ceilings = Duration::ZERO;
        for (i, p) in pauses.iter().enumerate() {
            // 1, 2, 4, ... 128 ms, then 128 ms.
            let cap = Duration::from_millis(1 << i.min(7));
            assert!(*p < cap, "pause {i}: {p:?} not under {cap:?}");
            ceilings += cap;
        }
        assert_eq!(ceilings, Retry::MAX_TOTAL_PAUSE);
        assert!(pauses.iter().sum::<Duration>() < Retry::MAX_TOTAL_PAUSE);
        assert_eq!(r.after_conflict(), None, "spent stays spent");
    }
}
