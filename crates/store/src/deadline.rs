//! One deadline for all the store work of one request.
//!
//! A request may read and write the store several times (a Locate then a Get, a commit after
//! reads, retries after a failover). A backend that waits on a network (`PgStore`) bounds each
//! operation by its own deadline; the caller of a request also bounds the whole of it by
//! running the request inside [`within`]: every store operation started on that thread then
//! ends by the earlier of its own deadline and the request's, failing with a message naming
//! the request's deadline. Backends that never wait on anything but this process (sled,
//! memory) ignore it.
//!
//! The deadline is per thread because the engine calls the store synchronously on the thread
//! that runs the request (the server's blocking pool); nothing is left behind when [`within`]
//! returns or unwinds.

use std::cell::Cell;
use std::time::Instant;

thread_local! {
    static REQUEST: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f` (one request) with every store operation it starts on this thread bounded by
/// `deadline`. Nested calls keep the earlier deadline.
pub fn within<R>(deadline: Instant, f: impl FnOnce() -> R) -> R {
    /// Restores the outer deadline even if `f` unwinds.
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            REQUEST.with(|r| r.set(self.0));
        }
    }
    let outer = REQUEST.with(Cell::get);
    let _restore = Restore(outer);
    let effective = outer.map_or(deadline, |o| o.min(deadline));
    REQUEST.with(|r| r.set(Some(effective)));
    f()
}

/// The deadline of the request running on this thread, if any.
pub(crate) fn current() -> Option<Instant> {
    REQUEST.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn within_sets_nests_to_the_earlier_and_restores() {
        assert_eq!(current(), None);
        let now = Instant::now();
        let (early, late) = (now + Duration::from_secs(1), now + Duration::from_secs(9));
        within(late, || {
            assert_eq!(current(), Some(late));
            within(early, || assert_eq!(current(), Some(early)));
            // An inner call cannot extend the outer deadline.
            within(late + Duration::from_secs(5), || {
                assert_eq!(current(), Some(late));
            });
            assert_eq!(current(), Some(late));
        });
        assert_eq!(current(), None);
        let unwound = std::panic::catch_unwind(|| within(early, || panic!("inside")));
        assert!(unwound.is_err());
        assert_eq!(current(), None, "restored after an unwind");
    }
}
