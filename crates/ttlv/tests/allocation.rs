//! A header that claims 4 GiB must cost nothing: this binary counts every allocation and
//! checks that refusing such input allocates (almost) nothing.
#![allow(unsafe_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use kmipd_ttlv::{ErrorKind, HEADER_LEN, Limits, decode, frame_len};

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only adds a counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Only one test in this binary, so no other thread allocates while it measures.
#[test]
fn huge_claims_allocate_nothing() {
    let limits = Limits::unbounded();
    let mut claims: Vec<[u8; 16]> = Vec::new();
    for code in [0x01u8, 0x04, 0x07, 0x08] {
        // Structure, Big Integer, Text String, Byte String claiming 0xFFFFFFF8 bytes.
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&[0x42, 0x00, 0x78, code, 0xFF, 0xFF, 0xFF, 0xF8]);
        claims.push(b);
    }
    let before = ALLOCATED.load(Ordering::SeqCst);
    for bytes in &claims {
        let e = decode(bytes, &limits).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::LengthOverrun { .. }), "{e}");
        let header: &[u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
        let refused = frame_len(header, &Limits::default()).unwrap_err();
        assert!(matches!(refused.kind, ErrorKind::MessageTooLarge { .. }));
    }
    let spent = ALLOCATED.load(Ordering::SeqCst) - before;
    assert_eq!(spent, 0, "refusing 4 GiB claims allocated {spent} bytes");
}
