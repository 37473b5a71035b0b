//! The journal's single writer: opens (lock, scan, torn-tail cut), then owns the segment file on
//! its own thread, writing batches of records with one `sync_data` each (group commit),
//! checkpointing, rotating segments, keeping the signed head marker and enforcing the disk
//! budget.
//!
//! Nobody is answered before their record is durable. After a failed write the batch is rolled
//! back (zeroed), every appender in it gets an error and the writer stops: the journal fails
//! closed rather than guess what reached the disk.
//!
//! Why segments are preallocated: a `sync_data` after an append that grows the file must also
//! commit the new size and extents (a filesystem journal commit); one after overwriting blocks
//! that are already allocated and written needs only the data. So the open segment is kept
//! zero-filled ahead of its records (growing by chunks of up to [`MAX_PREALLOC`], in the same
//! sync as a batch), and most batches are overwrites. A zero length prefix is the end of the
//! records. A closed segment is trimmed to its records. Readers never see a partial batch: the
//! batch is written with its first length prefix zeroed, and that prefix last.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};

use super::event::{CheckpointReason, Event, JournalEvent};
use super::head::{HeadMarker, HeadWriter};
use super::read::list_segments;
use super::record::{self, RecordType, GENESIS_HASH, HASH_LEN, SEGMENT_HEADER_LEN};
use super::{JournalConfig, JournalError, Priority, Recorded, Request, Responder, Status};

/// Start the writer: open the journal in `dir`, write its opening records durably, then hand
/// the file to a new thread that serves `receiver`.
pub(super) fn start(
    dir: &Path,
    key: SigningKey,
    config: JournalConfig,
    receiver: Receiver<Request>,
    status: Arc<Mutex<Status>>,
) -> Result<std::thread::JoinHandle<()>, JournalError> {
    let writer = Writer::open(dir, key, config, status)?;
    std::thread::Builder::new()
        .name("otgate-journal".into())
        .spawn(move || writer.run(receiver))
        .map_err(|source| JournalError::Io {
            action: "start the writer thread for",
            path: dir.into(),
            source,
        })
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))
}

/// What a scan of one segment found.
#[derive(Debug)]
struct Scan {
    /// The last valid record (seq, hash), if any.
    last: Option<(u64, [u8; HASH_LEN])>,
    /// Records since the last checkpoint in this segment.
    since_checkpoint: u64,
    /// Bytes up to the end of the last valid record.
    valid_len: u64,
    /// Why scanning stopped before the end, if it did.
    failure: Option<String>,
    /// How many bytes from `valid_len` on are not the zero fill (to be cut).
    torn_len: usize,
}

fn scan(bytes: &[u8], first_seq: u64) -> Scan {
    let mut offset = SEGMENT_HEADER_LEN;
    let mut scan = Scan {
        last: None,
        since_checkpoint: 0,
        valid_len: offset as u64,
        failure: None,
        torn_len: 0,
    };
    let mut expected = first_seq;
    while let Some(rest) = bytes.get(offset..).filter(|rest| !rest.is_empty()) {
        if record::at_end(rest) {
            let garbage = record::nonzero_len(rest);
            if garbage > 0 {
                scan.failure = Some(format!(
                    "{garbage} bytes after the end of the records are not the zero fill"
                ));
            }
            break;
        }
        let raw = match record::decode(rest) {
            Ok(raw) => raw,
            Err(e) => {
                scan.failure = Some(e.to_string());
                break;
            }
        };
        if raw.seq != expected {
            scan.failure = Some(format!(
                "expected record seq {expected}, found seq {}",
                raw.seq
            ));
            break;
        }
        if let Some((_, prev)) = scan.last {
            if raw.prev_hash != prev {
                scan.failure = Some(format!(
                    "record seq {} does not chain to seq {}",
                    raw.seq,
                    raw.seq - 1
                ));
                break;
            }
        }
        scan.since_checkpoint = match raw.record_type {
            RecordType::Checkpoint => 0,
            RecordType::Event => scan.since_checkpoint + 1,
        };
        scan.last = Some((raw.seq, raw.hash));
        expected += 1;
        offset += raw.frame_len;
        scan.valid_len = offset as u64;
    }
    if scan.failure.is_some() {
        scan.torn_len =
            record::nonzero_len(bytes.get(scan.valid_len as usize..).unwrap_or_default());
    }
    scan
}

/// The longest a batch waits for more appenders (see `run`).
const MAX_LINGER: Duration = Duration::from_millis(2);
/// The zero fill kept ahead of the records grows by chunks from this size...
pub(super) const MIN_PREALLOC: u64 = 64 << 10;
/// ...doubling up to this one.
pub(super) const MAX_PREALLOC: u64 = 8 << 20;
/// Zeros to write from.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// Write `len` zero bytes into `file` at `offset`.
fn write_zeros(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < len {
        let n = (len - done).min(ZEROS.len() as u64);
        file.write_all_at(ZEROS.get(..n as usize).unwrap_or_default(), offset + done)?;
        done += n;
    }
    Ok(())
}

pub(super) struct Writer {
    dir: PathBuf,
    key: SigningKey,
    key_id: String,
    config: JournalConfig,
    /// The open segment, written after its last record.
    file: File,
    segment_path: PathBuf,
    /// Where its records end.
    segment_len: u64,
    /// Its size on disk: records, then zero fill.
    capacity: u64,
    /// The signed head marker (`journal/HEAD`).
    head: HeadWriter,
    /// The last checkpoint record written, once durable named by the head marker.
    last_checkpoint_record: Option<Recorded>,
    /// The head marker is behind the last durable checkpoint.
    marker_due: bool,
    /// The batch's answers (kept to reuse its allocation).
    accepted: Vec<(Responder, Recorded)>,
    next_seq: u64,
    head_hash: [u8; HASH_LEN],
    used_bytes: u64,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    /// `mono_ns` counts from here.
    mono_anchor: Instant,
    status: Arc<Mutex<Status>>,
    /// The batch being encoded.
    buf: Vec<u8>,
    budget_low_written: bool,
    /// Held for the writer's life: the exclusive lock on `journal/LOCK`.
    _lock: File,
}

impl Writer {
    fn open(
        dir: &Path,
        key: SigningKey,
        config: JournalConfig,
        status: Arc<Mutex<Status>>,
    ) -> Result<Writer, JournalError> {
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        #[allow(clippy::incompatible_msrv)]
        // std's file locks (Rust 1.89); the toolchain here is newer.
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::Locked { path: lock_path })
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(JournalError::Io {
                    action: "lock",
                    path: lock_path,
                    source,
                })
            }
        }

        let mut segments = list_segments(dir).map_err(io("list", dir))?;
        let mut internal: Vec<JournalEvent> = Vec::new();
        let key_id = record::key_id(&key.verifying_key());
        // The last segment, with a valid header. A segment whose header is damaged (not merely
        // torn while being created) is moved aside as evidence and journaled, so that the
        // appliance still opens (break-glass must be able to record).
        let mut last = None;
        while let Some((first_seq, path)) = segments.last().cloned() {
            let mut bytes = fs::read(&path).map_err(io("read", &path))?;
            let header = record::segment_header(first_seq);
            let written = record::nonzero_len(&bytes);
            if record::parse_segment_header(&bytes).is_none()
                && written <= SEGMENT_HEADER_LEN
                && header.starts_with(bytes.get(..written).unwrap_or_default())
            {
                // A crash while the segment was being created (a part of its header, then
                // nothing but zeros): finish its header.
                if let Some(start) = bytes.get_mut(..SEGMENT_HEADER_LEN) {
                    start.copy_from_slice(&header);
                } else {
                    bytes = header.to_vec();
                }
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.write_all_at(&header, 0).and_then(|()| f.sync_all()))
                    .map_err(io("write", &path))?;
            }
            if record::parse_segment_header(&bytes) == Some(first_seq) {
                last = Some((first_seq, path, bytes));
                break;
            }
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let torn_dir = dir.join("torn");
            fs::create_dir_all(&torn_dir).map_err(io("create", &torn_dir))?;
            let saved_as = format!("{name}-header.bin");
            fs::rename(&path, torn_dir.join(&saved_as)).map_err(io("move aside", &path))?;
            sync_dir(dir)?;
            tracing::error!(segment = %name, "journal segment with a damaged header moved aside");
            internal.push(JournalEvent::TailCut {
                segment: name,
                offset: 0,
                bytes: bytes.len() as u64,
                reason: format!("segment header is not OTGJRNL1 with first seq {first_seq}"),
                saved_as,
            });
            segments.pop();
        }
        let (first_seq, segment_path, bytes) = match last {
            Some(last) => last,
            None => {
                let path = dir.join(record::segment_name(1));
                create_segment(&path, 1, MIN_PREALLOC.min(config.segment_bytes))?;
                sync_dir(dir)?;
                segments.push((1, path.clone()));
                internal.insert(
                    0,
                    JournalEvent::Created {
                        public_key: hex::encode(key.verifying_key().as_bytes()),
                        key_id: key_id.clone(),
                    },
                );
                (1, path, record::segment_header(1).to_vec())
            }
        };
        let found = scan(&bytes, first_seq);
        if let Some(reason) = &found.failure {
            let cut_start = found.valid_len as usize;
            let cut = bytes
                .get(cut_start..cut_start + found.torn_len)
                .unwrap_or_default();
            let torn_dir = dir.join("torn");
            fs::create_dir_all(&torn_dir).map_err(io("create", &torn_dir))?;
            let name = segment_path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let saved_as = format!("{name}-{}.bin", found.valid_len);
            let saved_path = torn_dir.join(&saved_as);
            fs::write(&saved_path, cut)
                .and_then(|()| File::open(&saved_path).and_then(|f| f.sync_all()))
                .map_err(io("save the torn tail to", &saved_path))?;
            let file = OpenOptions::new()
                .write(true)
                .open(&segment_path)
                .map_err(io("open", &segment_path))?;
            // Back to the zero fill, keeping the file's size.
            write_zeros(&file, found.valid_len, cut.len() as u64)
                .and_then(|()| file.sync_all())
                .map_err(io("cut the torn tail of", &segment_path))?;
            tracing::warn!(segment = %name, offset = found.valid_len, bytes = cut.len(), %reason, "cut a torn journal tail");
            internal.push(JournalEvent::TailCut {
                segment: name,
                offset: found.valid_len,
                bytes: cut.len() as u64,
                reason: reason.clone(),
                saved_as,
            });
        }
        let (head_seq, head_hash, since_checkpoint) = match found.last {
            Some((seq, hash)) => (seq, hash, found.since_checkpoint),
            None => match segments.len().checked_sub(2).and_then(|i| segments.get(i)) {
                // The last segment is empty: the head is the previous segment's last record.
                Some((prev_first, prev_path)) => {
                    let prev = fs::read(prev_path).map_err(io("read", prev_path))?;
                    match scan(&prev, *prev_first).last {
                        Some((seq, hash)) => (seq, hash, 0),
                        None => (first_seq.saturating_sub(1), GENESIS_HASH, 0),
                    }
                }
                None => (first_seq.saturating_sub(1), GENESIS_HASH, 0),
            },
        };
        // Closed segments count with their size, the open one with its records only (its zero
        // fill is at most one chunk of preallocation).
        let mut used_bytes = found.valid_len;
        for (_, path) in segments.iter().filter(|(_, p)| *p != segment_path) {
            used_bytes += fs::metadata(path).map_err(io("stat", path))?.len();
        }
        let file = OpenOptions::new()
            .write(true)
            .open(&segment_path)
            .map_err(io("open", &segment_path))?;
        let capacity = file.metadata().map_err(io("stat", &segment_path))?.len();
        let segment_len = found.valid_len;
        // Did the last writer close cleanly (its signed head names the journal's last record)?
        let marker = super::head::read(dir).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "journal: cannot read the head marker");
            None
        });
        let clean = marker.is_some_and(|m| {
            m.clean && m.checkpoint_seq == head_seq && m.checkpoint_hash == head_hash
        });
        if let Some(m) = marker.filter(|m| m.checkpoint_seq > head_seq) {
            tracing::error!(
                journal_ends = head_seq,
                signed_head = m.checkpoint_seq,
                "the journal ends before the record its signed head marker names: records were cut"
            );
        }
        let unclean_stop = head_seq > 0 && !clean;
        if unclean_stop {
            tracing::warn!(head_seq, "journal: the last writer did not close cleanly");
        }
        internal.push(JournalEvent::Opened {
            head_seq,
            pid: std::process::id(),
            unclean_stop,
            signed_head_seq: marker.map(|m| m.checkpoint_seq),
        });
        let head = HeadWriter::open(dir).map_err(io("open", &super::head::path(dir)))?;

        let mut writer = Writer {
            dir: dir.to_path_buf(),
            key,
            key_id,
            config,
            file,
            segment_path,
            segment_len,
            capacity,
            head,
            last_checkpoint_record: None,
            marker_due: false,
            accepted: Vec::new(),
            next_seq: head_seq + 1,
            head_hash,
            used_bytes,
            since_checkpoint,
            last_checkpoint: Instant::now(),
            mono_anchor: Instant::now(),
            status,
            buf: Vec::with_capacity(1 << 16),
            budget_low_written: false,
            _lock: lock,
        };
        writer.buf.clear();
        for event in internal {
            writer.push_internal(&event);
        }
        writer.flush().map_err(|e| match e {
            JournalError::WriteFailed { path, reason } => JournalError::Io {
                action: "write",
                path,
                source: std::io::Error::other(reason),
            },
            other => other,
        })?;
        Ok(writer)
    }

    fn run(mut self, receiver: Receiver<Request>) {
        let mut batch: Vec<Request> = Vec::new();
        // The size of the last batch and how long writing it took (for the linger).
        let mut last_batch = 0usize;
        let mut last_sync = Duration::ZERO;
        loop {
            let first = match self.until_checkpoint_due() {
                Some(wait) => match receiver.recv_timeout(wait) {
                    Ok(request) => Some(request),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match receiver.recv() {
                    Ok(request) => Some(request),
                    Err(_) => break,
                },
            };
            if let Some(first) = first {
                let arrived = Instant::now();
                batch.push(first);
                let max = self.config.max_batch.max(1);
                // Linger briefly while the appenders of the last batch come back, so that
                // concurrent appenders share one sync instead of splitting into two.
                let target = last_batch.clamp(1, max);
                let linger = (last_sync / 2).min(MAX_LINGER);
                while batch.len() < max {
                    match receiver.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) if batch.len() < target => {
                            let left = linger.saturating_sub(arrived.elapsed());
                            if left.is_zero() {
                                break;
                            }
                            match receiver.recv_timeout(left) {
                                Ok(request) => batch.push(request),
                                Err(_) => break,
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
            last_batch = batch.len();
            let started = Instant::now();
            if let Err(e) = self.commit(&mut batch) {
                tracing::error!(error = %e, "journal writer stopped");
                return;
            }
            if last_batch > 0 {
                last_sync = started.elapsed();
            }
        }
        if self.since_checkpoint > 0 {
            self.buf.clear();
            self.push_checkpoint(CheckpointReason::Shutdown);
            if let Err(e) = self.flush() {
                tracing::error!(error = %e, "journal: final checkpoint failed");
                return;
            }
        }
        // A clean close: the head marker names the last record, a checkpoint.
        match self.last_checkpoint_record {
            Some(last) if last.seq + 1 == self.next_seq => {
                self.write_marker(last, true);
            }
            _ => {}
        }
    }

    /// Sign and write the head marker naming checkpoint `record`. A failure is reported, not
    /// fatal: the marker is a second witness, the journal stays the truth.
    fn write_marker(&mut self, record: Recorded, clean: bool) {
        let marker = HeadMarker::sign(&self.key, record.seq, record.hash, clean);
        match self.head.write(&marker) {
            Ok(()) => self.marker_due = false,
            Err(e) => tracing::error!(
                error = %e,
                path = %self.head.path().display(),
                "journal: cannot update the signed head marker"
            ),
        }
    }

    fn until_checkpoint_due(&self) -> Option<Duration> {
        (self.since_checkpoint > 0).then(|| {
            self.config
                .checkpoint_every
                .saturating_sub(self.last_checkpoint.elapsed())
        })
    }

    /// Encode, write and sync one batch, then answer it. An error means the writer must stop.
    fn commit(&mut self, batch: &mut Vec<Request>) -> Result<(), JournalError> {
        self.buf.clear();
        let budget = self.config.budget_bytes;
        let reserve = self.config.reserve_bytes.min(budget);
        let mut accepted = std::mem::take(&mut self.accepted);
        accepted.clear();
        for request in batch.drain(..) {
            let needed = record::frame_len(request.payload.len()) as u64;
            let used = self.used_bytes + self.buf.len() as u64;
            let limit = match request.priority {
                Priority::Normal => budget - reserve,
                Priority::Reserve => budget,
            };
            if used + needed > limit {
                let refusal = match request.priority {
                    Priority::Normal => {
                        if !self.budget_low_written {
                            self.budget_low_written = true;
                            tracing::error!(
                                used,
                                budget,
                                reserve,
                                "journal budget reached: normal appends are refused"
                            );
                            self.push_internal(&JournalEvent::BudgetLow {
                                used_bytes: used,
                                budget_bytes: budget,
                                reserve_bytes: reserve,
                            });
                        }
                        JournalError::BudgetExhausted {
                            used,
                            budget,
                            reserve,
                            needed,
                        }
                    }
                    Priority::Reserve => JournalError::ReserveExhausted {
                        used,
                        budget,
                        needed,
                    },
                };
                request.responder.send(Err(refusal));
                continue;
            }
            let recorded = self.push_record(RecordType::Event, &request.payload);
            accepted.push((request.responder, recorded));
        }
        let periodic = self.since_checkpoint > 0
            && (self.since_checkpoint >= self.config.checkpoint_every_records
                || self.last_checkpoint.elapsed() >= self.config.checkpoint_every);
        let rotate = self.segment_len + self.buf.len() as u64 >= self.config.segment_bytes
            && (self.since_checkpoint > 0 || !self.buf.is_empty());
        if rotate {
            self.push_checkpoint(CheckpointReason::SegmentClose);
        } else if periodic {
            self.push_checkpoint(CheckpointReason::Periodic);
        }
        self.accepted = accepted;
        self.flush()?;
        if rotate {
            self.rotate()?;
        }
        Ok(())
    }

    /// The size the open segment should have once its records end at `end`: unchanged while at
    /// least a quarter chunk of zero fill is left, else one chunk (doubling from
    /// [`MIN_PREALLOC`] to [`MAX_PREALLOC`]) past `end`, but not past the segment size.
    fn capacity_for(&self, end: u64) -> u64 {
        let chunk = self.capacity.clamp(MIN_PREALLOC, MAX_PREALLOC);
        if end + chunk / 4 <= self.capacity {
            return self.capacity;
        }
        let cap = (end + chunk).min(self.config.segment_bytes.max(end));
        cap.max(self.capacity)
    }

    /// Write and sync `buf`, then answer the accepted appenders. On failure roll back (zero the
    /// batch's bytes) and answer errors.
    fn flush(&mut self) -> Result<(), JournalError> {
        if !self.buf.is_empty() {
            let start = self.segment_len;
            let end = start + self.buf.len() as u64;
            let capacity = self.capacity_for(end);
            // The first length prefix goes last, so that a reader sees all of the batch or none.
            let mut prefix = [0u8; 4];
            if let Some(first) = self.buf.get_mut(..4) {
                prefix.copy_from_slice(first);
                first.fill(0);
            }
            let written = self
                .file
                .write_all_at(&self.buf, start)
                .and_then(|()| {
                    let filled = self.capacity.max(end);
                    write_zeros(&self.file, filled, capacity.saturating_sub(filled))
                })
                .and_then(|()| self.file.write_all_at(&prefix, start))
                .and_then(|()| self.file.sync_data());
            if let Err(e) = written {
                let reason = e.to_string();
                // Zero the batch so that no unacknowledged bytes stay behind, if we can.
                let _ = write_zeros(&self.file, start, end - start)
                    .and_then(|()| self.file.sync_data());
                if let Ok(mut status) = self.status.lock() {
                    status.failed = Some(format!(
                        "a write to {} failed: {reason}",
                        self.segment_path.display()
                    ));
                }
                for (responder, _) in self.accepted.drain(..) {
                    responder.send(Err(JournalError::WriteFailed {
                        path: self.segment_path.clone(),
                        reason: reason.clone(),
                    }));
                }
                return Err(JournalError::WriteFailed {
                    path: self.segment_path.clone(),
                    reason,
                });
            }
            self.capacity = capacity.max(end);
            self.segment_len = end;
            self.used_bytes += self.buf.len() as u64;
            self.buf.clear();
        }
        if let Ok(mut status) = self.status.lock() {
            status.head_seq = self.next_seq - 1;
            status.head_hash = self.head_hash;
            status.used_bytes = self.used_bytes;
        }
        for (responder, recorded) in self.accepted.drain(..) {
            responder.send(Ok(recorded));
        }
        // After the appenders: the marker is not on their path.
        if self.marker_due {
            if let Some(last) = self.last_checkpoint_record {
                self.write_marker(last, false);
            }
        }
        Ok(())
    }

    fn push_record(&mut self, record_type: RecordType, payload: &[u8]) -> Recorded {
        let seq = self.next_seq;
        let wall = self
            .config
            .clock
            .now_utc()
            .timestamp_nanos_opt()
            .unwrap_or(i64::MAX);
        let mono = u64::try_from(self.mono_anchor.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let hash = record::encode(
            &mut self.buf,
            record_type,
            seq,
            wall,
            mono,
            &self.head_hash,
            payload,
        );
        self.next_seq += 1;
        self.head_hash = hash;
        let recorded = Recorded { seq, hash };
        match record_type {
            RecordType::Event => self.since_checkpoint += 1,
            RecordType::Checkpoint => {
                self.since_checkpoint = 0;
                self.last_checkpoint = Instant::now();
                self.last_checkpoint_record = Some(recorded);
                self.marker_due = true;
            }
        }
        recorded
    }

    fn push_internal(&mut self, event: &JournalEvent) {
        match serde_json::to_vec(&Event::Journal(event.clone())) {
            Ok(payload) => {
                self.push_record(RecordType::Event, &payload);
            }
            Err(e) => tracing::error!(error = %e, "journal: cannot encode an internal event"),
        }
    }

    fn push_checkpoint(&mut self, reason: CheckpointReason) {
        let covers_seq = self.next_seq - 1;
        let signature = self
            .key
            .sign(&record::checkpoint_message(covers_seq, &self.head_hash));
        let event = Event::Journal(JournalEvent::Checkpoint {
            covers_seq,
            head_hash: hex::encode(self.head_hash),
            key_id: self.key_id.clone(),
            signature: hex::encode(signature.to_bytes()),
            reason,
        });
        match serde_json::to_vec(&event) {
            Ok(payload) => {
                self.push_record(RecordType::Checkpoint, &payload);
            }
            Err(e) => tracing::error!(error = %e, "journal: cannot encode a checkpoint"),
        }
    }

    /// Close the current segment (its checkpoint is already written): trim it to its records,
    /// then start the next one, preallocated.
    fn rotate(&mut self) -> Result<(), JournalError> {
        let path = self.dir.join(record::segment_name(self.next_seq));
        let initial = MIN_PREALLOC
            .min(self.config.segment_bytes)
            .max(SEGMENT_HEADER_LEN as u64);
        let result = self
            .file
            .set_len(self.segment_len)
            .and_then(|()| self.file.sync_all())
            .map_err(io("trim", &self.segment_path))
            .and_then(|()| create_segment(&path, self.next_seq, initial))
            .and_then(|()| sync_dir(&self.dir))
            .and_then(|()| {
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io("open", &path))
            });
        match result {
            Ok(file) => {
                self.file = file;
                self.segment_path = path;
                self.segment_len = SEGMENT_HEADER_LEN as u64;
                self.capacity = initial;
                self.used_bytes += SEGMENT_HEADER_LEN as u64;
                Ok(())
            }
            Err(e) => {
                if let Ok(mut status) = self.status.lock() {
                    status.failed = Some(format!("cannot start a new segment: {e}"));
                }
                Err(e)
            }
        }
    }
}

/// Create a segment: its header, then zeros up to `size` bytes, synced.
fn create_segment(path: &Path, first_seq: u64, size: u64) -> Result<(), JournalError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io("create", path))?;
    file.write_all_at(&record::segment_header(first_seq), 0)
        .and_then(|()| {
            let header = SEGMENT_HEADER_LEN as u64;
            write_zeros(&file, header, size.saturating_sub(header))
        })
        .and_then(|()| file.sync_all())
        .map_err(io("write", path))
}
