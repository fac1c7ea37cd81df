//! The state of streamed Encrypt/Decrypt (Init Indicator, Correlation Value, Final Indicator;
//! KMIP 1.3+): what the server keeps between the requests of one stream.
//!
//! OpenSSL's cipher contexts cannot move between threads, so the state kept is data: the
//! input received so far (zeroized on drop) and how much output was sent. Each step re-runs
//! the cipher over the whole input and sends the new part of the output (for the stream
//! ciphers and GCM, output byte i depends only on input bytes up to i). The table is
//! process-wide and bounded ([`MAX_STREAMS`]; the oldest stream is dropped first); Correlation
//! Values are 16 random bytes, so engines in one process do not see each other's streams.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};

use zeroize::Zeroizing;

use super::params::Params;
use super::sym::Dir;
use crate::error::{Error, Result};

/// Streams kept at most at once.
pub(crate) const MAX_STREAMS: usize = 1024;

/// One open stream.
#[derive(Clone)]
pub(crate) struct Stream {
    /// The key's Unique Identifier.
    pub(crate) uid: String,
    /// Encrypt or decrypt.
    pub(crate) dir: Dir,
    /// The parameters of the first request.
    pub(crate) params: Params,
    /// IV/Counter/Nonce.
    pub(crate) iv: Option<Vec<u8>>,
    /// Additional authenticated data (first request).
    pub(crate) aad: Vec<u8>,
    /// The input so far.
    pub(crate) input: Zeroizing<Vec<u8>>,
    /// How many output bytes were sent.
    pub(crate) sent: usize,
    /// Insertion order, for eviction.
    seq: u64,
}

struct Table {
    streams: BTreeMap<Vec<u8>, Stream>,
    next: u64,
}

static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(|| {
    Mutex::new(Table {
        streams: BTreeMap::new(),
        next: 0,
    })
});

fn table() -> Result<std::sync::MutexGuard<'static, Table>> {
    TABLE
        .lock()
        .map_err(|_| Error::Internal("stream table poisoned"))
}

impl Stream {
    /// A new stream (not yet stored).
    pub(crate) fn new(
        uid: String,
        dir: Dir,
        params: Params,
        iv: Option<Vec<u8>>,
        aad: Vec<u8>,
    ) -> Stream {
        Stream {
            uid,
            dir,
            params,
            iv,
            aad,
            input: Zeroizing::new(Vec::new()),
            sent: 0,
            seq: 0,
        }
    }
}

/// Stores `stream` under a new Correlation Value, which it returns.
pub(crate) fn open(mut stream: Stream) -> Result<Vec<u8>> {
    let id = super::keygen::symmetric(16)?.to_vec();
    let mut t = table()?;
    stream.seq = t.next;
    t.next = t.next.wrapping_add(1);
    while t.streams.len() >= MAX_STREAMS {
        let oldest = t
            .streams
            .iter()
            .min_by_key(|(_, s)| s.seq)
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => t.streams.remove(&k),
            None => break,
        };
    }
    t.streams.insert(id.clone(), stream);
    Ok(id)
}

/// The stream of a Correlation Value (a copy; [`put`] stores the updated one).
pub(crate) fn get(id: &[u8]) -> Result<Stream> {
    table()?
        .streams
        .get(id)
        .cloned()
        .ok_or(Error::InvalidField("unknown Correlation Value"))
}

/// Stores the updated stream under its Correlation Value.
pub(crate) fn put(id: &[u8], stream: Stream) -> Result<()> {
    table()?.streams.insert(id.to_vec(), stream);
    Ok(())
}

/// Ends a stream.
pub(crate) fn close(id: &[u8]) -> Result<()> {
    table()?.streams.remove(id);
    Ok(())
}
