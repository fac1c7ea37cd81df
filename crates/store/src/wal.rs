//! A write-ahead log: segment files and frames. Generic (it knows nothing of sled); used by
//! [`SledStore`](crate::SledStore).
//!
//! **Files.** `<store>/wal/<id>.log`, `id` 16 decimal digits, zero-padded, increasing. Appends
//! go to the newest segment; a checkpoint (`sled_store/durable.rs`) switches to a new one and deletes the
//! older ones once sled has flushed everything they hold.
//!
//! **Frame.** `len` (u32 LE) ‖ `crc` (CRC-32 of the payload, u32 LE) ‖ payload (`len` bytes).
//! One frame per commit, written with one `write_all`. The payload format belongs to the store
//! (`sled_store/commit.rs`: format byte, frame number, the commit's prepared entries; key material is
//! already KEK-wrapped there, never plaintext).
//!
//! **Reading.** [`read_segment`] returns the frames up to the first one that is short or fails
//! its CRC (a torn tail: never acknowledged, because an acknowledgement needs an `fdatasync`
//! covering every earlier byte of the segment) and how many bytes it ignored from there.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A segment grows to about this size before the background thread checkpoints early.
pub(crate) const SEGMENT_LIMIT: u64 = 32 << 20;

/// Header of a frame: length and CRC-32.
const HEADER: usize = 8;

/// One open segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) id: u64,
    file: File,
}

/// The append side; its mutex is the store's commit mutex (frame numbers are taken and
/// frames appended under it, so frame order is the order of the numbers).
#[derive(Debug)]
pub(crate) struct Writer {
    current: Arc<Segment>,
    /// Number of the next frame (frame numbers are global and never reused).
    pub(crate) next_frame: u64,
}

/// The log: the writer and the segments not yet covered by a checkpoint.
#[derive(Debug)]
pub(crate) struct Wal {
    dir: PathBuf,
    writer: Mutex<Writer>,
    /// Segments whose frames may not be in sled's flushed state yet, oldest first (normally
    /// only the current one; two while a checkpoint runs).
    live: Mutex<Vec<Arc<Segment>>>,
    /// Bytes in the current segment (read by the background thread without the commit mutex).
    current_size: AtomicU64,
}

fn other(msg: &str) -> io::Error {
    io::Error::other(msg.to_owned())
}

/// `<wal dir>/<id>.log`.
pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.log"))
}

/// The segments in `dir` (id, path), oldest first. Other files are left alone.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .filter(|n| n.len() == 16 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((id, e.path()));
    }
    out.sort();
    Ok(out)
}

/// The frame around `payload`.
pub(crate) fn encode_frame(payload: &[u8]) -> io::Result<Vec<u8>> {
    let len = u32::try_from(payload.len()).map_err(|_| other("WAL frame longer than 4 GiB"))?;
    let mut out = Vec::with_capacity(payload.len().saturating_add(HEADER));
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// What a segment holds.
#[derive(Debug, Default)]
pub(crate) struct SegmentContents {
    /// Payloads of the valid frames, in order.
    pub(crate) frames: Vec<Vec<u8>>,
    /// Bytes from the first invalid frame to the end of the file (0 for a clean segment).
    pub(crate) torn_bytes: u64,
}

/// Reads the valid frames of a segment (see the module docs).
pub(crate) fn read_segment(path: &Path) -> io::Result<SegmentContents> {
    let bytes = std::fs::read(path)?;
    let mut out = SegmentContents::default();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let parsed = rest.split_first_chunk::<4>().and_then(|(len, r)| {
            let (crc, r) = r.split_first_chunk::<4>()?;
            let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
            let payload = r.get(..len)?;
            (crc32fast::hash(payload) == u32::from_le_bytes(*crc))
                .then(|| (payload, r.get(len..).unwrap_or_default()))
        });
        match parsed {
            Some((payload, r)) => {
                out.frames.push(payload.to_vec());
                rest = r;
            }
            None => {
                out.torn_bytes = u64::try_from(rest.len()).unwrap_or(u64::MAX);
                break;
            }
        }
    }
    Ok(out)
}

fn create_segment(dir: &Path, id: u64) -> io::Result<Arc<Segment>> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(segment_path(dir, id))?;
    sync_dir(dir)?;
    Ok(Arc::new(Segment { id, file }))
}

impl Wal {
    /// Starts a new, empty segment `id` in `dir` (created if needed, and made durable) whose
    /// first frame will be number `next_frame`.
    pub(crate) fn create(dir: &Path, id: u64, next_frame: u64) -> io::Result<Wal> {
        std::fs::create_dir_all(dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        let current = create_segment(dir, id)?;
        Ok(Wal {
            dir: dir.to_owned(),
            live: Mutex::new(vec![current.clone()]),
            writer: Mutex::new(Writer {
                current,
                next_frame,
            }),
            current_size: AtomicU64::new(0),
        })
    }

    /// The commit mutex.
    pub(crate) fn lock(&self) -> io::Result<MutexGuard<'_, Writer>> {
        self.writer.lock().map_err(|_| other("WAL lock poisoned"))
    }

    /// Appends one frame to the current segment (page cache only; see [`Wal::sync`]). The
    /// caller holds the commit mutex (`w`). Returns the size of the segment afterwards.
    pub(crate) fn append(&self, w: &mut Writer, frame: &[u8]) -> io::Result<u64> {
        (&w.current.file).write_all(frame)?;
        let add = u64::try_from(frame.len()).unwrap_or(u64::MAX);
        Ok(self
            .current_size
            .fetch_add(add, Ordering::Relaxed)
            .saturating_add(add))
    }

    /// Bytes written to the current segment.
    pub(crate) fn current_size(&self) -> u64 {
        self.current_size.load(Ordering::Relaxed)
    }

    /// `fdatasync` of every live segment; returns how many were synced. Everything appended
    /// before the call is durable when it returns (a segment dropped from the live list was
    /// covered by a checkpoint instead).
    pub(crate) fn sync(&self) -> io::Result<u64> {
        let live = self
            .live
            .lock()
            .map_err(|_| other("WAL lock poisoned"))?
            .clone();
        for s in &live {
            s.file.sync_data()?;
        }
        Ok(u64::try_from(live.len()).unwrap_or(u64::MAX))
    }

    /// The next segment, created and made durable (outside the commit mutex: the directory
    /// fsync does not hold up commits). Only one caller at a time (checkpoints are serialized).
    pub(crate) fn create_next(&self) -> io::Result<Arc<Segment>> {
        let id = self.lock()?.current.id.saturating_add(1);
        create_segment(&self.dir, id)
    }

    /// Under the commit mutex: appends go to `next` (from [`Wal::create_next`]) from now on.
    /// Returns its id; every older segment only holds frames already applied to sled.
    pub(crate) fn switch(&self, w: &mut Writer, next: Arc<Segment>) -> io::Result<u64> {
        let id = next.id;
        self.live
            .lock()
            .map_err(|_| other("WAL lock poisoned"))?
            .push(next.clone());
        w.current = next;
        self.current_size.store(0, Ordering::Relaxed);
        Ok(id)
    }

    /// The id of the current segment.
    pub(crate) fn current_id(&self, w: &Writer) -> u64 {
        w.current.id
    }

    /// After a checkpoint: forgets and deletes every segment older than `keep` (also files
    /// left by an earlier run), then makes the deletions durable. Returns how many were deleted.
    pub(crate) fn retire_before(&self, keep: u64) -> io::Result<u64> {
        self.live
            .lock()
            .map_err(|_| other("WAL lock poisoned"))?
            .retain(|s| s.id >= keep);
        let mut removed = 0u64;
        for (id, path) in list_segments(&self.dir)? {
            if id < keep {
                std::fs::remove_file(path)?;
                removed = removed.saturating_add(1);
            }
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }
}

/// fsync of a directory (its entries: new, renamed and removed files).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn frames_round_trip_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), 1, 1).unwrap();
        {
            let mut w = wal.lock().unwrap();
            for p in [&b"one"[..], b"", b"three"] {
                wal.append(&mut w, &encode_frame(p).unwrap()).unwrap();
            }
        }
        assert_eq!(wal.sync().unwrap(), 1);
        let path = segment_path(dir.path(), 1);
        let clean = read_segment(&path).unwrap();
        assert_eq!(clean.frames, [b"one".to_vec(), vec![], b"three".to_vec()]);
        assert_eq!(clean.torn_bytes, 0);
        // A partial frame, then a frame with a bad CRC.
        let mut bytes = std::fs::read(&path).unwrap();
        let full = bytes.len();
        let next = encode_frame(b"four").unwrap();
        bytes.extend_from_slice(&next[..6]);
        std::fs::write(&path, &bytes).unwrap();
        let torn = read_segment(&path).unwrap();
        assert_eq!(torn.frames.len(), 3);
        assert_eq!(torn.torn_bytes, 6);
        bytes.truncate(full);
        let mut bad = next.clone();
        bad[9] ^= 1;
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(&encode_frame(b"five").unwrap());
        std::fs::write(&path, &bytes).unwrap();
        let torn = read_segment(&path).unwrap();
        assert_eq!(torn.frames.len(), 3);
        assert_eq!(torn.torn_bytes, u64::try_from(bytes.len() - full).unwrap());
    }

    #[test]
    fn switch_and_retire_keep_only_the_newest_segment() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), 7, 1).unwrap();
        {
            let mut w = wal.lock().unwrap();
            wal.append(&mut w, &encode_frame(b"x").unwrap()).unwrap();
        }
        let next = wal.create_next().unwrap();
        let keep = wal.switch(&mut wal.lock().unwrap(), next).unwrap();
        assert_eq!(keep, 8);
        assert_eq!(wal.sync().unwrap(), 2);
        assert_eq!(wal.retire_before(keep).unwrap(), 1);
        assert_eq!(wal.sync().unwrap(), 1);
        let ids: Vec<u64> = list_segments(dir.path())
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, [8]);
    }
}
