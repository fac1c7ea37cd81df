//! A write-ahead log: segment files and frames. Generic (it knows nothing of sled); used by
//! [`SledStore`](crate::SledStore).
//!
//! **Files.** `<store>/wal/<id>.log`, `id` 16 decimal digits, zero-padded, increasing. Appends
//! go to the newest segment; a checkpoint (`sled_store/durable.rs`) switches to a new one and deletes the
//! older ones once sled has flushed everything they hold.
//!
//! **Zeros written ahead.** A new segment is created with zeros already written and made
//! durable (twice what the segment before it held, [`prefill_after`]), and frames
//! overwrite them from the start. A commit's `fdatasync` then writes only the frames' data
//! pages: appending to a file also changes its size and allocates blocks, so each sync wrote the
//! data, then the allocation metadata, then the inode (three device writes and waits on ext4;
//! `docs/performance.md`, "Fifth round"). A segment that outgrows its zeros simply
//! grows as before.
//!
//! **Frame.** `len` (u32 LE, never 0) ‖ `crc` (CRC-32 of the payload, u32 LE) ‖ payload (`len`
//! bytes). One frame per commit, written with one `write_all`. The payload format belongs to the store
//! (`sled_store/commit.rs`: format byte, frame number, the commit's prepared entries; key material is
//! already KEK-wrapped there, never plaintext).
//!
//! **Reading.** [`read_segment`] returns the frames up to the first one that is short, fails its
//! CRC or has length 0 (the zeros not yet overwritten, or a torn tail: never acknowledged,
//! because an acknowledgement needs an `fdatasync` covering every earlier byte of the segment)
//! and how many bytes it ignored from there up to the last non-zero byte (0 when only zeros
//! follow the last frame).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A segment grows to about this size before the background thread checkpoints early.
pub(crate) const SEGMENT_LIMIT: u64 = 32 << 20;

/// Header of a frame: length and CRC-32.
const HEADER: usize = 8;

/// The most zeros a new segment gets: a segment is checkpointed early once it holds
/// [`SEGMENT_LIMIT`], and frames committed meanwhile still find zeros.
const PREFILL_MAX: u64 = SEGMENT_LIMIT + SEGMENT_LIMIT / 4;

/// The zeros written ahead into a new segment when the one before it held `previous` bytes:
/// twice that (checkpoints come about once a second, so the next segment holds about as much as
/// the last; twice leaves room for a slower checkpoint or a busier second), in whole 4 KiB
/// pages, at most [`PREFILL_MAX`]. An idle store's next segment gets none, and a lightly used
/// one a page or so.
pub(crate) fn prefill_after(previous: u64) -> u64 {
    const PAGE: u64 = 4096;
    previous
        .saturating_mul(2)
        .div_ceil(PAGE)
        .saturating_mul(PAGE)
        .min(PREFILL_MAX)
}

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

/// The frame around `payload` (never empty: a length of 0 marks where the frames end).
pub(crate) fn encode_frame(payload: &[u8]) -> io::Result<Vec<u8>> {
    if payload.is_empty() {
        return Err(other("empty WAL frame"));
    }
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
    /// Bytes from the first invalid frame to the last non-zero byte of the file (0 for a clean
    /// segment, whether or not zeros follow its last frame).
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
            let len = usize::try_from(u32::from_le_bytes(*len))
                .ok()
                .filter(|l| *l > 0)?;
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
                let written = rest.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
                out.torn_bytes = u64::try_from(written).unwrap_or(u64::MAX);
                break;
            }
        }
    }
    Ok(out)
}

/// A new segment file with `prefill` bytes of zeros written and made durable (the file's
/// position stays at 0, where the first frame goes), and its directory entry made durable.
/// Without room for the zeros (a nearly full disk) the segment starts empty and grows with its
/// frames, as segments did before zeros were written ahead: a checkpoint never fails for them.
/// On failure the file is removed again, so that the next attempt can create it.
fn create_segment(dir: &Path, id: u64, prefill: u64) -> io::Result<Arc<Segment>> {
    let path = segment_path(dir, id);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let made = if prefill > 0 && write_zeros(&file, prefill).is_err() {
        file.set_len(0)
    } else {
        Ok(())
    }
    .and_then(|()| sync_dir(dir));
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(Arc::new(Segment { id, file }))
}

/// Writes `len` zeros from the start of `file` (its position unmoved) and syncs it.
fn write_zeros(file: &File, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 1 << 20;
    // Tests: a disk with room for only part of the zeros.
    #[cfg(test)]
    if let Some(room) = tests::FAIL_ZEROS_AFTER
        .with(std::cell::Cell::get)
        .filter(|room| *room < len)
    {
        file.write_all_at(&vec![0u8; usize::try_from(room).unwrap_or(0)], 0)?;
        return Err(io::Error::other("no space left on device (test)"));
    }
    let zeros = vec![0u8; usize::try_from(len.min(CHUNK)).unwrap_or(0)];
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(CHUNK);
        let part = zeros
            .get(..usize::try_from(n).unwrap_or(usize::MAX))
            .ok_or_else(|| other("WAL prefill chunk"))?;
        file.write_all_at(part, at)?;
        at = at.saturating_add(n);
    }
    file.sync_all()
}

impl Wal {
    /// Starts a new, empty segment `id` in `dir` (created if needed, and made durable) whose
    /// first frame will be number `next_frame`.
    pub(crate) fn create(dir: &Path, id: u64, next_frame: u64) -> io::Result<Wal> {
        std::fs::create_dir_all(dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        let current = create_segment(dir, id, 0)?;
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

    /// The next segment, created with its zeros written ahead ([`prefill_after`] the current
    /// segment's size) and made durable, outside the commit mutex: neither the zeros nor the
    /// fsyncs hold up commits. Only one caller at a time (checkpoints are serialized).
    pub(crate) fn create_next(&self) -> io::Result<Arc<Segment>> {
        let id = self.lock()?.current.id.saturating_add(1);
        create_segment(&self.dir, id, prefill_after(self.current_size()))
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

    /// At a clean close (nothing appends any more): cuts the current segment's zeros not yet
    /// overwritten, so that a closed store's log holds frames only (a clean close after a
    /// checkpoint leaves one empty segment, readable by kmipd versions that wrote no zeros).
    pub(crate) fn trim(&self) -> io::Result<()> {
        let w = self.lock()?;
        w.current.file.set_len(self.current_size())?;
        w.current.file.sync_all()
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
    use std::cell::Cell;

    thread_local! {
        /// Tests: [`write_zeros`] on this thread writes this many zeros, then fails as a full
        /// disk does.
        pub(super) static FAIL_ZEROS_AFTER: Cell<Option<u64>> = const { Cell::new(None) };
    }

    /// Without room for the zeros, the next segment starts empty (what the failed write left is
    /// cut), frames append to it and read back, and the checkpoint's switch goes on.
    #[test]
    fn a_segment_without_room_for_its_zeros_starts_empty_and_takes_frames() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), 1, 1).unwrap();
        {
            let mut w = wal.lock().unwrap();
            wal.append(&mut w, &encode_frame(&[7u8; 5000]).unwrap())
                .unwrap();
        }
        FAIL_ZEROS_AFTER.with(|f| f.set(Some(4096)));
        let next = wal.create_next();
        FAIL_ZEROS_AFTER.with(|f| f.set(None));
        let next = next.unwrap();
        let path = segment_path(dir.path(), 2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        {
            let mut w = wal.lock().unwrap();
            wal.switch(&mut w, next).unwrap();
            wal.append(&mut w, &encode_frame(b"one").unwrap()).unwrap();
        }
        wal.sync().unwrap();
        let r = read_segment(&path).unwrap();
        assert_eq!(r.frames, [b"one".to_vec()]);
        assert_eq!(r.torn_bytes, 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 11);
    }

    #[test]
    fn frames_round_trip_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), 1, 1).unwrap();
        {
            let mut w = wal.lock().unwrap();
            for p in [&b"one"[..], b"2", b"three"] {
                wal.append(&mut w, &encode_frame(p).unwrap()).unwrap();
            }
        }
        assert_eq!(wal.sync().unwrap(), 1);
        let path = segment_path(dir.path(), 1);
        let clean = read_segment(&path).unwrap();
        assert_eq!(
            clean.frames,
            [b"one".to_vec(), b"2".to_vec(), b"three".to_vec()]
        );
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
    fn an_empty_frame_is_refused_since_length_zero_marks_the_end() {
        assert!(encode_frame(b"").is_err());
    }

    #[test]
    fn prefill_is_twice_the_last_segment_in_pages_and_bounded() {
        assert_eq!(prefill_after(0), 0);
        assert_eq!(prefill_after(1), 4096);
        assert_eq!(prefill_after(4097), 12288);
        assert_eq!(prefill_after(10 << 20), 20 << 20);
        assert_eq!(prefill_after(SEGMENT_LIMIT), PREFILL_MAX);
        assert_eq!(prefill_after(u64::MAX), PREFILL_MAX);
    }

    /// The next segment gets its zeros ahead; frames overwrite them from the start, the zeros
    /// after the last frame read as a clean end, and a torn frame over them counts only its own
    /// bytes, while anything non-zero after a length of 0 counts as torn up to its last byte.
    #[test]
    fn a_segment_with_zeros_ahead_reads_its_frames_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), 1, 1).unwrap();
        let first = encode_frame(&[7u8; 5000]).unwrap();
        {
            let mut w = wal.lock().unwrap();
            wal.append(&mut w, &first).unwrap();
        }
        assert_eq!(
            std::fs::metadata(segment_path(dir.path(), 1))
                .unwrap()
                .len(),
            5008
        );
        let next = wal.create_next().unwrap();
        let path = segment_path(dir.path(), 2);
        let prefill = prefill_after(5008);
        assert_eq!(prefill, 12288);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 12288);
        assert!(bytes.iter().all(|b| *b == 0));
        assert!(read_segment(&path).unwrap().frames.is_empty());
        assert_eq!(read_segment(&path).unwrap().torn_bytes, 0);
        {
            let mut w = wal.lock().unwrap();
            wal.switch(&mut w, next).unwrap();
            for p in [&b"one"[..], b"two"] {
                wal.append(&mut w, &encode_frame(p).unwrap()).unwrap();
            }
        }
        wal.sync().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 12288, "frames overwrite the zeros");
        let clean = read_segment(&path).unwrap();
        assert_eq!(clean.frames, [b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(clean.torn_bytes, 0);
        // A frame torn over the zeros: only its own bytes are discarded.
        let end = 2 * (HEADER + 3);
        let mut torn = bytes.clone();
        torn[end..end + 6].copy_from_slice(&encode_frame(b"three").unwrap()[..6]);
        std::fs::write(&path, &torn).unwrap();
        let r = read_segment(&path).unwrap();
        assert_eq!(r.frames.len(), 2);
        assert_eq!(r.torn_bytes, 6);
        // A length of 0 with non-zero bytes after it: torn up to the last non-zero byte.
        let mut gap = bytes;
        gap[end + 100] = 0xAB;
        std::fs::write(&path, &gap).unwrap();
        let r = read_segment(&path).unwrap();
        assert_eq!(r.frames.len(), 2);
        assert_eq!(r.torn_bytes, 101);
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
