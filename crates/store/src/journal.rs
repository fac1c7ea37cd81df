//! A journal whose records are made durable by the store's own commits: the interface through
//! which a [`SledStore`](crate::SledStore) orders and makes durable the records of another log
//! (the server's audit log) in the same `fdatasync` as the commits they describe.
//!
//! The store knows nothing of the records' format. An entry is opaque ([`JournalEntry`]); the
//! [`Journal`] renders it into bytes (whole lines: the audit chain's records) on the store's
//! committer thread, in the order the committer takes commits, so the file's order is the
//! order of the frames. The rendered bytes travel in the commit's WAL frame; once the frame's
//! `fdatasync` returns they are durable, and the committer writes them to the journal's file
//! ([`Journal::write`], no sync). The journal's file is synced before a checkpoint deletes the
//! WAL segments that hold its lines ([`Journal::sync`]); at open, the lines of the frames still
//! in the WAL are handed to the journal when it is attached ([`Journal::recover`]), which
//! appends those its file lacks. How the sled store does each step: `sled_store/pipeline.rs`
//! and `docs/storage.md` ("The journal").
//!
//! Other stores (PostgreSQL, memory) do not journal ([`ObjectStore::journals`] is false): the
//! server keeps its own writer thread for the audit log with them.
//!
//! [`ObjectStore::journals`]: crate::ObjectStore::journals

/// One opaque record for the attached [`Journal`] (the server's audit record of a request),
/// rendered by the journal itself on the store's committer thread.
pub type JournalEntry = Box<dyn std::any::Any + Send>;

/// A log whose records a [`SledStore`](crate::SledStore) makes durable in its commits' WAL
/// frames (see the module docs). Every method but [`recover`](Self::recover) is called on the
/// store's committer thread, one at a time and in the store's order; [`sync`](Self::sync) also
/// from checkpoints. Each must be quick: the committer's serial path waits for it.
pub trait Journal: Send + Sync {
    /// Renders `entry` as the next records of the chain, appended to `out` (whole lines). On
    /// an error nothing is appended and the chain does not advance: the commit that carried
    /// the entry fails alone.
    fn render(&self, entry: JournalEntry, out: &mut Vec<u8>) -> Result<(), String>;

    /// Writes lines rendered by [`render`](Self::render), in order, at the end of the file,
    /// without a sync: they are already durable in a synced WAL frame. A failure poisons the
    /// store.
    fn write(&self, lines: &[u8]) -> Result<(), String>;

    /// Makes everything written so far durable (`fdatasync`): before a checkpoint deletes the
    /// WAL segments whose frames hold those lines, and at the store's close.
    fn sync(&self) -> Result<(), String>;

    /// At attach: the lines found in the WAL frames the store still holds, in order (most of
    /// them may already be in the file). Appends those past the file's last record, then
    /// syncs. Fails when they do not continue the file.
    fn recover(&self, lines: &[u8]) -> Result<(), String>;
}
