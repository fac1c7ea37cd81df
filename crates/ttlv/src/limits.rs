//! Resource limits, enforced by the decoder and the framer before anything is allocated.

/// Bounds on what [`decode`](crate::decode) and [`frame_len`](crate::frame_len) accept.
///
/// Each bound stops one way of making a peer spend memory or time. The defaults suit a KMIP
/// server: real requests are a few hundred bytes to a few kilobytes, at most ten levels deep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole message (header included), in bytes. Stops a peer from making the server
    /// buffer a body it announced in an 8-byte header ("4 GiB follow"): the framer refuses the
    /// header before a byte of the body is read or allocated.
    pub max_message_len: usize,
    /// Deepest nesting of Structures (the outermost item is depth 1). Stops stack exhaustion by
    /// `Structure(Structure(Structure(...)))`, which costs the sender 8 bytes per level.
    /// Values above [`Limits::HARD_MAX_DEPTH`] are treated as that.
    pub max_depth: usize,
    /// Most items in one message. Stops a flood of tiny items (8 bytes each on the wire, around
    /// 64 bytes each in memory) from multiplying memory use.
    pub max_items: usize,
}

impl Limits {
    /// Default [`max_message_len`](Self::max_message_len): 1 MiB.
    pub const DEFAULT_MAX_MESSAGE_LEN: usize = 1 << 20;
    /// Default [`max_depth`](Self::max_depth).
    pub const DEFAULT_MAX_DEPTH: usize = 32;
    /// Default [`max_items`](Self::max_items).
    pub const DEFAULT_MAX_ITEMS: usize = 16_384;
    /// The decoder recurses once per level; this bounds its stack whatever the configuration.
    pub const HARD_MAX_DEPTH: usize = 256;

    /// Limits with no practical bound except [`Limits::HARD_MAX_DEPTH`]; for tests and tools that
    /// read trusted local files, never for network input.
    pub const fn unbounded() -> Self {
        Self {
            max_message_len: usize::MAX,
            max_depth: Self::HARD_MAX_DEPTH,
            max_items: usize::MAX,
        }
    }

    pub(crate) fn effective_depth(&self) -> usize {
        self.max_depth.min(Self::HARD_MAX_DEPTH)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_len: Self::DEFAULT_MAX_MESSAGE_LEN,
            max_depth: Self::DEFAULT_MAX_DEPTH,
            max_items: Self::DEFAULT_MAX_ITEMS,
        }
    }
}
