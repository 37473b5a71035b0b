//! Reading the journal without its key or its lock: [`JournalReader`] walks the segments in
//! order and yields each [`StoredRecord`], from the first or from a given sequence number.
//!
//! It checks each frame (length, CRC-32C, hash) but not the chain or the signatures; that is
//! [`super::verify`]'s job. A zero length prefix ends a segment's records (segments are
//! preallocated with zeros; what follows is [`super::verify`]'s concern). A partial frame at the
//! very end of the last segment is a write in progress (or a torn tail not yet cut) and ends the
//! iteration quietly; anything else that does not decode is an error naming the segment, the
//! byte offset and the last good seq. [`JournalTail`] reads only new bytes, a chunk at a time,
//! and stops at the zero fill, so following a preallocated segment costs what its records do.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::event::Event;
use super::record::{self, FrameError, HASH_LEN, SEGMENT_HEADER_LEN};

/// One record as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredRecord {
    /// Sequence number (from 1, contiguous).
    pub seq: u64,
    /// Wall-clock time when it was written.
    pub wall_time: DateTime<Utc>,
    /// Monotonic nanoseconds since the writer opened the journal.
    pub mono_ns: u64,
    /// What happened.
    pub event: Event,
    /// The previous record's hash.
    #[serde(with = "super::hex_hash")]
    pub prev_hash: [u8; HASH_LEN],
    /// This record's hash (SHA-256 of its body).
    #[serde(with = "super::hex_hash")]
    pub hash: [u8; HASH_LEN],
}

impl StoredRecord {
    /// Whether this record is a signed checkpoint.
    pub fn is_checkpoint(&self) -> bool {
        matches!(
            self.event,
            Event::Journal(super::event::JournalEvent::Checkpoint { .. })
        )
    }
}

/// Why the journal could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A segment does not begin with a valid header.
    #[error("{} is not a journal segment (bad header)", segment.display())]
    Header {
        /// The segment file.
        segment: PathBuf,
    },
    /// Bytes that do not form a valid record.
    #[error("{} at byte {offset} (after seq {after_seq}): {error}", segment.display())]
    Frame {
        /// The segment file.
        segment: PathBuf,
        /// Where the bad frame begins.
        offset: u64,
        /// The last good record before it (0 for none).
        after_seq: u64,
        /// What is wrong.
        error: FrameError,
    },
    /// A record whose payload is not an event this version understands.
    #[error("record seq {seq}: payload is not a known event: {reason}")]
    Event {
        /// The record.
        seq: u64,
        /// The decoder's message.
        reason: String,
    },
}

/// The segment files in `dir`, ordered by first sequence number.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(first) = entry
            .file_name()
            .to_str()
            .and_then(record::parse_segment_name)
        {
            segments.push((first, entry.path()));
        }
    }
    segments.sort();
    Ok(segments)
}

/// The last record's seq in the journal `dir` (0 if none), reading only its last segments.
pub fn head_seq(dir: &Path) -> Result<u64, ReadError> {
    let segments = list_segments(dir).map_err(|source| ReadError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    // The last segment may hold no record yet: start one segment earlier.
    let from = segments
        .len()
        .checked_sub(2)
        .and_then(|i| segments.get(i))
        .map_or(0, |(first, _)| *first);
    let mut head = 0;
    for record in JournalReader::from_seq(dir, from)? {
        head = record?.seq;
    }
    Ok(head)
}

/// Iterates the journal's records in order. See the module doc.
#[derive(Debug)]
pub struct JournalReader {
    pending: VecDeque<(u64, PathBuf)>,
    current: Option<Segment>,
    from_seq: u64,
    last_seq: u64,
    failed: bool,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    bytes: Vec<u8>,
    offset: usize,
    is_last: bool,
}

impl JournalReader {
    /// Read the journal in `dir` from its first record.
    pub fn open(dir: &Path) -> Result<JournalReader, ReadError> {
        Self::from_seq(dir, 0)
    }

    /// Read the journal in `dir` from record `seq` on (segments wholly before it are skipped).
    pub fn from_seq(dir: &Path, seq: u64) -> Result<JournalReader, ReadError> {
        let segments = list_segments(dir).map_err(|source| ReadError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        // Keep the last segment whose first seq is <= seq, and all after it.
        let start = segments
            .iter()
            .rposition(|(first, _)| *first <= seq)
            .unwrap_or(0);
        let pending: VecDeque<_> = segments.into_iter().skip(start).collect();
        Ok(JournalReader {
            pending,
            current: None,
            from_seq: seq,
            last_seq: 0,
            failed: false,
        })
    }

    fn next_segment(&mut self) -> Result<bool, ReadError> {
        let Some((_, path)) = self.pending.pop_front() else {
            return Ok(false);
        };
        let bytes = std::fs::read(&path).map_err(|source| ReadError::Io {
            path: path.clone(),
            source,
        })?;
        if record::parse_segment_header(&bytes).is_none() {
            return Err(ReadError::Header { segment: path });
        }
        let is_last = self.pending.is_empty();
        self.current = Some(Segment {
            path,
            bytes,
            offset: SEGMENT_HEADER_LEN,
            is_last,
        });
        Ok(true)
    }

    fn next_record(&mut self) -> Result<Option<StoredRecord>, ReadError> {
        loop {
            let Some(segment) = self.current.as_mut() else {
                if self.next_segment()? {
                    continue;
                }
                return Ok(None);
            };
            let rest = segment.bytes.get(segment.offset..).unwrap_or_default();
            if record::at_end(rest) {
                self.current = None;
                continue;
            }
            let raw = match record::decode(rest) {
                Ok(raw) => raw,
                Err(FrameError::Truncated { .. }) if segment.is_last => return Ok(None),
                // A write torn by a crash, not yet cut (the next open cuts it).
                Err(_) if segment.is_last && record::is_torn_write(rest) => return Ok(None),
                Err(error) => {
                    return Err(ReadError::Frame {
                        segment: segment.path.clone(),
                        offset: segment.offset as u64,
                        after_seq: self.last_seq,
                        error,
                    })
                }
            };
            segment.offset += raw.frame_len;
            self.last_seq = raw.seq;
            if raw.seq < self.from_seq {
                continue;
            }
            return decode_record(&raw).map(Some);
        }
    }
}

/// Turn a decoded frame into a [`StoredRecord`] (parsing its event).
pub(crate) fn decode_record(raw: &record::RawRecord<'_>) -> Result<StoredRecord, ReadError> {
    let event: Event = serde_json::from_slice(raw.payload).map_err(|e| ReadError::Event {
        seq: raw.seq,
        reason: e.to_string(),
    })?;
    Ok(StoredRecord {
        seq: raw.seq,
        wall_time: DateTime::<Utc>::from_timestamp_nanos(raw.wall_nanos),
        mono_ns: raw.mono_ns,
        event,
        prev_hash: raw.prev_hash,
        hash: raw.hash,
    })
}

impl Iterator for JournalReader {
    type Item = Result<StoredRecord, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_record() {
            Ok(record) => record.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// How much [`JournalTail`] reads at once (more when a frame is larger).
const READ_CHUNK: usize = 256 << 10;

/// Read up to `len` bytes of `file` from `offset` into `buf` (fewer at the file's end).
fn read_at_most(
    file: &std::fs::File,
    offset: u64,
    len: usize,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    buf.resize(len, 0);
    let mut filled = 0;
    while let Some(space) = buf.get_mut(filled..).filter(|s| !s.is_empty()) {
        match file.read_at(space, offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(())
}

/// Follows the journal as it grows: each [`JournalTail::read_up_to`] returns the records
/// written since the last call (up to a limit), reading only the new bytes. Used by the sled
/// state and by follow-mode export, which must see every record exactly once, in order.
#[derive(Debug)]
pub struct JournalTail {
    dir: PathBuf,
    /// The segment being followed (first seq, path) and the offset of the next frame in it.
    position: Option<(u64, PathBuf, u64)>,
    next_seq: u64,
}

impl JournalTail {
    /// Follow the journal in `dir` from record `from_seq` on.
    pub fn new(dir: &Path, from_seq: u64) -> JournalTail {
        JournalTail {
            dir: dir.to_path_buf(),
            position: None,
            next_seq: from_seq.max(1),
        }
    }

    /// The seq the next returned record will have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The records from the next one up to `limit` (inclusive) that are on disk now.
    pub fn read_up_to(&mut self, limit: u64) -> Result<Vec<StoredRecord>, ReadError> {
        let mut records = Vec::new();
        self.read_each(limit, |record| {
            records.push(record);
            Ok::<(), ReadError>(())
        })?;
        Ok(records)
    }

    /// Call `each` for every record from the next one up to `limit` that is on disk now; stops
    /// at the first error from `each` (that record is returned again by the next call).
    pub fn read_each<E: From<ReadError>>(
        &mut self,
        limit: u64,
        mut each: impl FnMut(StoredRecord) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut count = 0;
        // The segment whose end was read once more after a later segment appeared.
        let mut rechecked: Option<u64> = None;
        let mut buf = Vec::new();
        while self.next_seq <= limit {
            let (first, path, offset) = match self.position.take() {
                Some(position) => position,
                None => {
                    let segments = list_segments(&self.dir).map_err(|source| ReadError::Io {
                        path: self.dir.clone(),
                        source,
                    })?;
                    let at = segments
                        .iter()
                        .rposition(|(first, _)| *first <= self.next_seq);
                    match at.and_then(|i| segments.into_iter().nth(i)) {
                        Some((first, path)) => (first, path, SEGMENT_HEADER_LEN as u64),
                        None => return Ok(count),
                    }
                }
            };
            let file = std::fs::File::open(&path).map_err(|source| ReadError::Io {
                path: path.clone(),
                source,
            })?;
            // Read from `at`, a chunk at a time, until the end of the records on disk now.
            let mut at = offset;
            let mut want = READ_CHUNK;
            let mut stop = false;
            loop {
                read_at_most(&file, at, want, &mut buf).map_err(|source| ReadError::Io {
                    path: path.clone(),
                    source,
                })?;
                let at_eof = buf.len() < want;
                let mut used = 0usize;
                let mut more = None;
                while let Some(rest) = buf.get(used..).filter(|r| !r.is_empty()) {
                    if record::at_end(rest) && (rest.len() >= 4 || at_eof) {
                        break;
                    }
                    let raw = match record::decode(rest) {
                        Ok(raw) => raw,
                        Err(FrameError::Truncated { needed, .. }) => {
                            if !at_eof {
                                more = Some(needed);
                            }
                            break;
                        }
                        // A write torn by a crash, not yet cut (the next open cuts it).
                        Err(_) if record::is_torn_write(rest) => break,
                        Err(error) => {
                            let error = ReadError::Frame {
                                segment: path.clone(),
                                offset: at + used as u64,
                                after_seq: self.next_seq.saturating_sub(1),
                                error,
                            };
                            self.position = Some((first, path, at + used as u64));
                            return Err(error.into());
                        }
                    };
                    if raw.seq > limit {
                        stop = true;
                        break;
                    }
                    if raw.seq >= self.next_seq {
                        let record = match decode_record(&raw) {
                            Ok(record) => record,
                            Err(e) => {
                                self.position = Some((first, path, at + used as u64));
                                return Err(e.into());
                            }
                        };
                        if let Err(e) = each(record) {
                            self.position = Some((first, path, at + used as u64));
                            return Err(e);
                        }
                        count += 1;
                        self.next_seq = raw.seq + 1;
                    }
                    used += raw.frame_len;
                    if self.next_seq > limit {
                        stop = true;
                        break;
                    }
                }
                at += used as u64;
                match more {
                    // A frame continues past this chunk: read again from it, far enough.
                    Some(needed) if !stop => want = needed.max(READ_CHUNK),
                    _ => break,
                }
            }
            if stop || self.next_seq > limit {
                self.position = Some((first, path, at));
                break;
            }
            // Everything on disk in this segment is read: move on if a later segment exists.
            let segments = list_segments(&self.dir).map_err(|source| ReadError::Io {
                path: self.dir.clone(),
                source,
            })?;
            match segments.into_iter().find(|(f, _)| *f > first) {
                // The segment was closed after this read began: read its end once more first.
                Some(_) if rechecked != Some(first) => {
                    rechecked = Some(first);
                    self.position = Some((first, path, at));
                }
                Some((next_first, next_path)) => {
                    self.position = Some((next_first, next_path, SEGMENT_HEADER_LEN as u64))
                }
                None => {
                    self.position = Some((first, path, at));
                    break;
                }
            }
        }
        Ok(count)
    }
}
