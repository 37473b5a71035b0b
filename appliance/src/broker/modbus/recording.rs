//! Session recordings: one JSON-lines file per broker session under `DataDir::sessions_dir()`,
//! read back by `otgate replay` and `otgate sessions`.
//!
//! A recording opens with a `session` line, has one `transaction` line per request (what was
//! asked, the decision, the response or exception and who produced it, the latency, the values
//! written and read) and closes with an `end` line. It holds no secret: Modbus carries none, and
//! identities are names. The journal, not the recording, is the record of decisions; a recording
//! is for people reading what happened, so it stays off the broker's critical path: a
//! [`Recorder`] serializes lines into memory, and one background thread (`otgate-recorder`,
//! shared by all sessions) writes them, in order, at the latest [`RECORDING_LAG`] after they were
//! made (the session asks through [`Recorder::flush_due`]) and in full when the session ends
//! ([`Recorder::finish`]). Nothing is fsynced. Memory is bounded: a session holds at most
//! [`MAX_UNSENT`] bytes not yet handed over, and the queue to the writer at most
//! [`WRITER_QUEUE`] chunks; beyond that lines are dropped, counted, and the drop is noted in the
//! recording, never blocking the session.
//!
//! Files are created with `create_new` and never overwritten; session ids are restricted to
//! `[A-Za-z0-9._-]` so an id can never name a path outside the sessions directory.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use otgate_policy::modbus::ModbusOp;
use serde::{Deserialize, Serialize};

/// The file extension of recordings.
pub const EXTENSION: &str = "jsonl";

/// The longest a recorded line waits in memory before it is handed to the writer thread.
pub const RECORDING_LAG: Duration = Duration::from_secs(1);
/// A session hands its buffered lines to the writer thread once they reach this size.
const FLUSH_AT: usize = 16 * 1024;
/// The most bytes a session keeps while the writer's queue is full; further lines are dropped.
pub const MAX_UNSENT: usize = 256 * 1024;
/// Chunks queued for the writer thread across all sessions (each at most about `FLUSH_AT`).
pub const WRITER_QUEUE: usize = 1024;

/// Longest line a recording reader accepts (a transaction line is far below this).
const MAX_LINE: usize = 64 * 1024;

/// What went wrong with a recording.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordingError {
    /// The session id has characters that could escape the sessions directory.
    #[error(
        "session id {id:?} may only use letters, digits, '.', '_' and '-' (and not start with '.')"
    )]
    BadSessionId {
        /// The id given.
        id: String,
    },
    /// The file could not be created, written or read.
    #[error("recording {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A line is not a recording line.
    #[error("recording {path}, line {line}: not a recording line")]
    Format {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A line is longer than any the broker writes.
    #[error("recording {path}, line {line}: longer than {MAX_LINE} bytes")]
    LineTooLong {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },
}

/// Whether the broker forwarded a request or refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Forwarded to the PLC.
    Forwarded,
    /// Refused by the broker; the PLC never saw it.
    Refused,
}

/// Who produced an exception response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExceptionSource {
    /// The PLC answered with an exception.
    Plc,
    /// The broker answered (refusal, or a gateway exception for a PLC down or slow).
    Broker,
}

/// What the client got back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ResponseRecord {
    /// A normal response from the PLC.
    Ok {
        /// Values read (registers, or bits as 0/1), when the response carries any.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        values: Vec<u16>,
    },
    /// An exception response.
    Exception {
        /// The exception code.
        code: u8,
        /// Who sent it.
        source: ExceptionSource,
    },
    /// No response: the session ended before the PLC answered.
    None,
}

/// One line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RecordLine {
    /// The session's opening line.
    Session {
        /// The session id.
        session_id: String,
        /// The grant.
        grant_id: String,
        /// The IT identity.
        identity: String,
        /// The OT asset.
        asset_id: String,
        /// The PLC address forwarded to.
        upstream: String,
        /// When the session started.
        started_at: DateTime<Utc>,
    },
    /// One request and what became of it.
    Transaction(TransactionRecord),
    /// Lines left out because the recording could not keep up (the journal has every decision).
    Dropped {
        /// How many.
        lines: u64,
    },
    /// The session's closing line.
    End {
        /// When the session ended.
        ended_at: DateTime<Utc>,
        /// Why, in words.
        reason: String,
        /// Requests forwarded.
        forwarded: u64,
        /// Requests refused.
        refused: u64,
    },
}

/// One request and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionRecord {
    /// When the request arrived.
    pub at: DateTime<Utc>,
    /// The client's transaction id.
    pub transaction_id: u16,
    /// The unit id.
    pub unit: u8,
    /// The raw function code.
    pub function: u8,
    /// The operations (two for FC 23), empty if the request did not decode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<ModbusOp>,
    /// Values written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_written: Vec<u16>,
    /// Forwarded or refused.
    pub decision: Decision,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the client got back.
    pub response: ResponseRecord,
    /// Microseconds from the request's arrival to the response's dispatch to the client.
    pub latency_us: u64,
}

/// Check that a session id is safe to use as a file name.
pub fn check_session_id(id: &str) -> Result<(), RecordingError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(RecordingError::BadSessionId { id: id.to_owned() })
    }
}

/// The recording file of `session_id` in `dir`.
pub fn recording_path(dir: &Path, session_id: &str) -> Result<PathBuf, RecordingError> {
    check_session_id(session_id)?;
    Ok(dir.join(format!("{session_id}.{EXTENSION}")))
}

/// Writes one session's recording, off the session's critical path (see the module doc).
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    file: Arc<File>,
    /// Serialized lines not yet handed to the writer thread.
    unsent: Vec<u8>,
    /// When the oldest unsent line was made.
    unsent_since: Option<tokio::time::Instant>,
    /// Lines dropped since the last one handed over (queue full, or memory bound reached).
    dropped: u64,
    /// Set by the writer thread after a write error; later lines are dropped (the journal stays
    /// the truth).
    failed: Arc<AtomicBool>,
}

/// A piece of one recording for the writer thread.
struct Chunk {
    path: PathBuf,
    file: Arc<File>,
    bytes: Vec<u8>,
    failed: Arc<AtomicBool>,
    /// Told once this chunk (and so every earlier one of the recording) is written.
    written: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The queue of the one thread that writes every recording, started on first use.
fn writer_queue() -> Option<&'static SyncSender<Chunk>> {
    static QUEUE: OnceLock<Option<SyncSender<Chunk>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (sender, receiver) = std::sync::mpsc::sync_channel::<Chunk>(WRITER_QUEUE);
            let spawned = std::thread::Builder::new()
                .name("otgate-recorder".into())
                .spawn(move || {
                    for chunk in receiver {
                        if !chunk.bytes.is_empty() && !chunk.failed.load(Ordering::Relaxed) {
                            if let Err(error) = (&*chunk.file).write_all(&chunk.bytes) {
                                tracing::warn!(path = %chunk.path.display(), %error, "session recording stopped");
                                chunk.failed.store(true, Ordering::Relaxed);
                            }
                        }
                        if let Some(written) = chunk.written {
                            let _ = written.send(());
                        }
                    }
                });
            match spawned {
                Ok(_) => Some(sender),
                Err(error) => {
                    tracing::warn!(%error, "cannot start the recording writer; sessions are not recorded");
                    None
                }
            }
        })
        .as_ref()
}

impl Recorder {
    /// Create the recording of `session_id` in `dir` (creating `dir`); never overwrites.
    pub fn create(dir: &Path, session_id: &str) -> Result<Self, RecordingError> {
        let path = recording_path(dir, session_id)?;
        let io_err = |source| RecordingError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err)?;
        Ok(Self {
            path,
            file: Arc::new(file),
            unsent: Vec::new(),
            unsent_since: None,
            dropped: 0,
            failed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Add one line. No I/O here: the line is serialized into memory and handed to the writer
    /// thread in chunks. A full queue or a failed disk drops lines (counted), never blocks.
    pub fn write(&mut self, line: &RecordLine) {
        if self.failed.load(Ordering::Relaxed) {
            return;
        }
        if self.unsent.len() >= MAX_UNSENT {
            self.dropped += 1;
            return;
        }
        if self.dropped > 0 {
            let note = RecordLine::Dropped {
                lines: std::mem::take(&mut self.dropped),
            };
            self.serialize(&note);
        }
        self.serialize(line);
        if self.unsent.len() >= FLUSH_AT {
            self.send();
        }
    }

    fn serialize(&mut self, line: &RecordLine) {
        let before = self.unsent.len();
        match serde_json::to_writer(&mut self.unsent, line) {
            Ok(()) => {
                self.unsent.push(b'\n');
                self.unsent_since
                    .get_or_insert_with(tokio::time::Instant::now);
            }
            Err(error) => {
                self.unsent.truncate(before);
                tracing::warn!(path = %self.path.display(), %error, "a recording line could not be written");
            }
        }
    }

    /// When the unsent lines should be handed over ([`RECORDING_LAG`] after the oldest), if any.
    pub fn flush_due(&self) -> Option<tokio::time::Instant> {
        self.unsent_since.map(|since| since + RECORDING_LAG)
    }

    /// Hand the unsent lines to the writer thread now (without waiting for the write).
    pub fn send(&mut self) {
        let _ = self.hand_over(None);
    }

    fn hand_over(&mut self, written: Option<tokio::sync::oneshot::Sender<()>>) -> bool {
        let Some(queue) = writer_queue() else {
            self.failed.store(true, Ordering::Relaxed);
            return false;
        };
        let chunk = Chunk {
            path: self.path.clone(),
            file: Arc::clone(&self.file),
            bytes: std::mem::take(&mut self.unsent),
            failed: Arc::clone(&self.failed),
            written,
        };
        match queue.try_send(chunk) {
            Ok(()) => {
                self.unsent_since = None;
                true
            }
            Err(TrySendError::Full(chunk) | TrySendError::Disconnected(chunk)) => {
                // Keep the lines and try again at the next line or tick.
                self.unsent = chunk.bytes;
                false
            }
        }
    }

    /// Hand over everything and wait until it is written (at most a few seconds: a stuck disk
    /// must not hold the end of a session forever).
    pub async fn finish(mut self) {
        const FINISH_WAIT: Duration = Duration::from_secs(5);
        let give_up = tokio::time::Instant::now() + FINISH_WAIT;
        if self.dropped > 0 {
            let note = RecordLine::Dropped {
                lines: std::mem::take(&mut self.dropped),
            };
            self.serialize(&note);
        }
        loop {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if self.hand_over(Some(tx)) {
                let _ = tokio::time::timeout_at(give_up, rx).await;
                return;
            }
            if self.failed.load(Ordering::Relaxed) || tokio::time::Instant::now() >= give_up {
                tracing::warn!(path = %self.path.display(), "the end of a session recording was not written");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Recorder {
    /// A recorder dropped without [`Recorder::finish`] still hands its lines over.
    fn drop(&mut self) {
        if !self.unsent.is_empty() {
            self.send();
        }
    }
}

/// Read a whole recording.
pub fn read_recording(path: &Path) -> Result<Vec<RecordLine>, RecordingError> {
    let io_err = |source| RecordingError::Io {
        path: path.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io_err)?);
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        number += 1;
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(io_err)?;
        if n == 0 {
            break;
        }
        if buf.len() > MAX_LINE {
            return Err(RecordingError::LineTooLong {
                path: path.to_owned(),
                line: number,
            });
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line = serde_json::from_slice(&buf).map_err(|source| RecordingError::Format {
            path: path.to_owned(),
            line: number,
            source,
        })?;
        lines.push(line);
    }
    Ok(lines)
}

/// The session ids that have recordings in `dir`, sorted.
pub fn list_recordings(dir: &Path) -> Result<Vec<String>, RecordingError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RecordingError::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| RecordingError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name.strip_suffix(".jsonl") {
            if check_session_id(id).is_ok() {
                ids.push(id.to_owned());
            }
        }
    }
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_cannot_escape_the_directory() {
        for bad in ["", "../x", "a/b", ".hidden", "a b", "é"] {
            assert!(check_session_id(bad).is_err(), "{bad:?}");
        }
        for good in ["s-1", "2026-11-28T0600.abc_1"] {
            assert!(check_session_id(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn writes_and_reads_back_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let mut recorder = Recorder::create(dir.path(), "s-1").unwrap();
        let start = RecordLine::Session {
            session_id: "s-1".into(),
            grant_id: "g-1".into(),
            identity: "alice".into(),
            asset_id: "line3-plc".into(),
            upstream: "127.0.0.1:502".into(),
            started_at: Utc::now(),
        };
        let tx = RecordLine::Transaction(TransactionRecord {
            at: Utc::now(),
            transaction_id: 7,
            unit: 1,
            function: 6,
            ops: Vec::new(),
            values_written: vec![42],
            decision: Decision::Refused,
            reason: Some("outside the grant".into()),
            response: ResponseRecord::Exception {
                code: 2,
                source: ExceptionSource::Broker,
            },
            latency_us: 12,
        });
        recorder.write(&start);
        recorder.write(&tx);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(recorder.finish());
        assert_eq!(
            read_recording(&dir.path().join("s-1.jsonl")).unwrap(),
            vec![start, tx]
        );
        assert!(Recorder::create(dir.path(), "s-1").is_err());
        assert_eq!(list_recordings(dir.path()).unwrap(), vec!["s-1".to_owned()]);
    }

    #[test]
    fn a_damaged_line_names_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, "{\"type\":\"end\",\"ended_at\":\"2026-01-01T00:00:00Z\",\"reason\":\"r\",\"forwarded\":0,\"refused\":0}\nnot json\n").unwrap();
        let error = read_recording(&path).unwrap_err();
        assert!(
            matches!(error, RecordingError::Format { line: 2, .. }),
            "{error}"
        );
    }
}
