//! The audit journal: append-only segment files of length-framed, checksummed, SHA-256
//! hash-chained records with ed25519-signed checkpoints. The single source of truth: every
//! decision is appended and durable before it takes effect, and only this module writes it.
//!
//! It does not index, filter or export (see [`read`], [`verify`], [`export`]) and it never
//! drops a record silently: an append either returns a [`Recorded`] receipt after the record
//! is on disk (`sync_data`), or an error that the caller must treat as "did not happen".
//!
//! # Record format (an API boundary; also `docs/journal-format.md`)
//!
//! `journal/` holds segment files named by their first sequence number, `%020u.seg`. Each
//! begins with a 16-byte header, `OTGJRNL1` and the first seq (u64 LE), then records:
//!
//! ```text
//! frame:  body_len u32 LE | crc32c u32 LE (over body ‖ hash) | body | hash (32)
//! body:   version u8 (=1) | type u8 (0 event, 1 checkpoint) | seq u64 LE
//!         | wall_time i64 LE (ns since the Unix epoch, UTC) | mono_ns u64 LE
//!         | prev_hash (32) | payload: the `Event` as JSON (serde, snake_case)
//! hash:   SHA-256(body)
//! ```
//!
//! Segments are preallocated with zeros ahead of their records; a zero length prefix ends a
//! segment's records. Sequence numbers start at 1 and are contiguous across segments; the first record's
//! `prev_hash` is 32 zero bytes. A checkpoint is a record of type 1 whose payload is a
//! `JournalEvent::Checkpoint`: an ed25519 signature by the appliance key over
//! `otgate-journal-checkpoint-v1 ‖ covers_seq u64 LE ‖ head_hash`, where `covers_seq` and
//! `head_hash` are the previous record's. A checkpoint is written every N records or seconds,
//! at each segment close (every segment but the last ends with one) and at a clean shutdown.
//! `mono_ns` counts from the writer's open; each open writes a `JournalEvent::Opened`.
//!
//! # Guarantees
//!
//! - Group commit: one writer thread owns the file; appenders hand it their encoded event and
//!   wait; it writes a batch, calls `sync_data` once, then answers everybody.
//! - An exclusive lock (`journal/LOCK`) keeps a second writer out.
//! - A torn tail (a crash mid-write) is cut on open, kept aside under `journal/torn/`, and the
//!   cut is journaled (`JournalEvent::TailCut`).
//! - A signed head marker (`journal/HEAD`, see [`head`]) names the last durable checkpoint and
//!   whether the writer closed cleanly, so that records cut from the end are noticed.
//! - Disk budget: normal appends are refused with [`JournalError::BudgetExhausted`] once the
//!   budget less the reserve is used; [`Priority::Reserve`] appends (denials, break-glass) use the
//!   reserve.

mod config;
pub mod event;
pub mod export;
#[doc(hidden)]
pub mod fuzzing;
pub mod head;
pub mod keys;
pub mod read;
pub mod record;
pub mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Serialize;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::clock::{SharedClock, SystemClock};
pub use config::{parse_size, ConfigError};
pub use event::Event;

/// How the journal is written.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// A segment is closed (with a checkpoint) once it is at least this long.
    pub segment_bytes: u64,
    /// A checkpoint after this many records...
    pub checkpoint_every_records: u64,
    /// ...or this long after the last one, whichever comes first (only if records were added).
    pub checkpoint_every: Duration,
    /// The most the journal's segments may use on disk.
    pub budget_bytes: u64,
    /// The part of the budget kept for reserved appends (denials, break-glass).
    pub reserve_bytes: u64,
    /// The most records written with one `sync_data`.
    pub max_batch: usize,
    /// The most appends waiting for the writer at once (back-pressure beyond).
    pub queue_depth: usize,
    /// The wall clock that stamps records.
    pub clock: SharedClock,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            checkpoint_every_records: 10_000,
            checkpoint_every: Duration::from_secs(60),
            budget_bytes: 4 << 30,
            reserve_bytes: 64 << 20,
            max_batch: 4096,
            queue_depth: 8192,
            clock: Arc::new(SystemClock),
        }
    }
}

/// How an append may use the disk budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// Refused once the budget less the reserve is used.
    #[default]
    Normal,
    /// May use the reserve: denials, break-glass, and the journal's own records.
    Reserve,
}

/// A receipt that a record is durable in the journal. Only the journal makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Recorded {
    seq: u64,
    #[serde(with = "hex_hash")]
    hash: [u8; 32],
}

impl Recorded {
    /// The record's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// The record's SHA-256 hash.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }
}

pub(crate) mod hex_hash {
    //! Serialize 32-byte hashes as hex strings.
    pub fn serialize<S: serde::Serializer>(hash: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(hash))
    }
}

/// Why the journal could not be opened or an append did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A file operation failed while opening.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the journal's lock.
    #[error("the journal at {} is locked by another process (is `otgate serve` running?)", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A segment is damaged in a way that is not a torn tail.
    #[error("journal segment {} is damaged at byte {offset}: {detail}", segment.display())]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Where.
        offset: u64,
        /// What.
        detail: String,
    },
    /// Normal appends are refused: the budget less the reserve is used (fail closed).
    #[error("journal budget exhausted: {used} of {budget} bytes used, {reserve} kept in reserve for denials and break-glass; a {needed}-byte record was refused")]
    BudgetExhausted {
        /// Bytes used.
        used: u64,
        /// The budget.
        budget: u64,
        /// The reserve.
        reserve: u64,
        /// The refused record's size.
        needed: u64,
    },
    /// Even the reserve is used up.
    #[error("journal reserve exhausted: {used} of {budget} bytes used; a {needed}-byte reserved record was refused")]
    ReserveExhausted {
        /// Bytes used.
        used: u64,
        /// The budget.
        budget: u64,
        /// The refused record's size.
        needed: u64,
    },
    /// The event is larger than a record may be.
    #[error("event of {len} bytes exceeds the journal's record limit of {max} bytes")]
    TooLarge {
        /// Its encoded size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Only the journal itself writes this kind of event.
    #[error("`{kind}` events are written only by the journal itself")]
    Internal {
        /// The event kind.
        kind: &'static str,
    },
    /// The event could not be encoded.
    #[error("cannot encode event: {reason}")]
    Encode {
        /// The serializer's message.
        reason: String,
    },
    /// Writing or syncing failed; the batch did not happen and the journal stopped.
    #[error("journal write to {} failed: {reason}", path.display())]
    WriteFailed {
        /// The segment.
        path: PathBuf,
        /// The I/O error's message.
        reason: String,
    },
    /// The journal's writer has stopped (after a failed write, or while closing).
    #[error("the journal is closed: {reason}")]
    Closed {
        /// Why.
        reason: String,
    },
}

type Reply = Result<Recorded, JournalError>;

/// How the writer answers one append.
enum Responder {
    Async(oneshot::Sender<Reply>),
    Blocking(std::sync::mpsc::SyncSender<Reply>),
}

impl Responder {
    fn send(self, reply: Reply) {
        // The appender may have given up waiting (a dropped future); the record stands either way.
        let _ = match self {
            Responder::Async(tx) => tx.send(reply).map_err(|_| ()),
            Responder::Blocking(tx) => tx.send(reply).map_err(|_| ()),
        };
    }
}

/// One append on its way to the writer.
struct Request {
    /// The event, already encoded as JSON by the appender (in parallel, off the writer thread).
    payload: Vec<u8>,
    priority: Priority,
    responder: Responder,
    /// Held until the writer answers: bounds the appends in flight.
    _permit: OwnedSemaphorePermit,
}

/// What the handles share with the writer thread.
#[derive(Debug, Default)]
struct Status {
    head_seq: u64,
    head_hash: [u8; 32],
    used_bytes: u64,
    failed: Option<String>,
}

struct Inner {
    dir: PathBuf,
    public_key: VerifyingKey,
    /// Requests to the writer thread; `None` once closing.
    sender: Mutex<Option<std::sync::mpsc::Sender<Request>>>,
    /// Bounds the appends in flight (`queue_depth`).
    permits: Arc<Semaphore>,
    status: Arc<Mutex<Status>>,
    /// The writer thread, joined when the last handle drops (releasing the lock).
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    budget_bytes: u64,
    reserve_bytes: u64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = thread.join();
        }
    }
}

/// A handle on the open journal. Clone it freely; the writer closes (with a checkpoint) when
/// the last handle drops.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// The journal's head and disk use, as last written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Head {
    /// The last sequence number written (0 if none).
    pub seq: u64,
    /// Its hash.
    #[serde(with = "hex_hash")]
    pub hash: [u8; 32],
    /// Bytes used by the segments.
    pub used_bytes: u64,
}

impl Journal {
    /// Open the journal in `dir` (creating it if absent), take its exclusive lock, cut and
    /// journal a torn tail, and start the writer. Writes `Created` (new journal) or `Opened`.
    pub fn open(
        dir: &Path,
        key: SigningKey,
        config: JournalConfig,
    ) -> Result<Journal, JournalError> {
        let public_key = key.verifying_key();
        let budget_bytes = config.budget_bytes;
        let reserve_bytes = config.reserve_bytes.min(config.budget_bytes);
        let permits = Arc::new(Semaphore::new(config.queue_depth.max(1)));
        let (sender, receiver) = std::sync::mpsc::channel();
        let status = Arc::new(Mutex::new(Status::default()));
        let thread = writer::start(dir, key, config, receiver, status.clone())?;
        Ok(Journal {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                public_key,
                sender: Mutex::new(Some(sender)),
                permits,
                status,
                thread: Mutex::new(Some(thread)),
                budget_bytes,
                reserve_bytes,
            }),
        })
    }

    /// For tests (here and in other modules): treat `data_root` as a data directory, load its
    /// `appliance.key` or make one (with `appliance.pub`), and open `data_root/journal` with
    /// the default configuration.
    pub fn open_for_tests(data_root: &Path) -> Result<Journal, JournalError> {
        let data_dir = crate::datadir::DataDir::new(data_root);
        let key_path = data_dir.appliance_key();
        let key =
            keys::load_or_generate_appliance_key(&key_path).map_err(|e| JournalError::Io {
                action: "load or make the appliance key",
                path: key_path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        Journal::open(&data_dir.journal_dir(), key, JournalConfig::default())
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The public key that verifies this journal's checkpoints.
    pub fn public_key(&self) -> VerifyingKey {
        self.inner.public_key
    }

    /// The head as last written.
    pub fn head(&self) -> Head {
        match self.inner.status.lock() {
            Ok(s) => Head {
                seq: s.head_seq,
                hash: s.head_hash,
                used_bytes: s.used_bytes,
            },
            Err(_) => Head {
                seq: 0,
                hash: [0; 32],
                used_bytes: 0,
            },
        }
    }

    /// The configured budget and reserve, in bytes.
    pub fn budget(&self) -> (u64, u64) {
        (self.inner.budget_bytes, self.inner.reserve_bytes)
    }

    fn prepare(&self, event: &Event) -> Result<Vec<u8>, JournalError> {
        if let Event::Journal(e) = event {
            if e.is_internal() {
                return Err(JournalError::Internal {
                    kind: event::Subjects::kind(e),
                });
            }
        }
        let payload = serde_json::to_vec(event).map_err(|e| JournalError::Encode {
            reason: e.to_string(),
        })?;
        let max = record::MAX_BODY_LEN as usize - record::BODY_HEADER_LEN;
        if payload.len() > max {
            return Err(JournalError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        Ok(payload)
    }

    fn submit(&self, request: Request) -> Result<(), JournalError> {
        let closed = || JournalError::Closed {
            reason: self.failure(),
        };
        let sender = self.inner.sender.lock().map_err(|_| closed())?;
        let Some(sender) = sender.as_ref() else {
            return Err(closed());
        };
        sender.send(request).map_err(|_| closed())
    }

    fn failure(&self) -> String {
        self.inner
            .status
            .lock()
            .ok()
            .and_then(|s| s.failed.clone())
            .unwrap_or_else(|| "the writer has stopped".into())
    }

    /// Append `event`; returns once it is durable. Normal priority (refused near the budget).
    pub async fn append(&self, event: Event) -> Result<Recorded, JournalError> {
        self.append_with(event, Priority::Normal).await
    }

    /// Append `event` using the reserve if needed (denials, break-glass).
    pub async fn append_reserved(&self, event: Event) -> Result<Recorded, JournalError> {
        self.append_with(event, Priority::Reserve).await
    }

    /// Append `event` with the given priority; returns once it is durable.
    pub async fn append_with(
        &self,
        event: Event,
        priority: Priority,
    ) -> Result<Recorded, JournalError> {
        let payload = self.prepare(&event)?;
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| JournalError::Closed {
                reason: self.failure(),
            })?;
        let (tx, rx) = oneshot::channel();
        self.submit(Request {
            payload,
            priority,
            responder: Responder::Async(tx),
            _permit: permit,
        })?;
        rx.await.map_err(|_| JournalError::Closed {
            reason: self.failure(),
        })?
    }

    /// Append `event` from synchronous code; blocks until it is durable. Do not call it on an
    /// async runtime's thread (use [`Journal::append`] there).
    pub fn append_blocking(&self, event: Event) -> Result<Recorded, JournalError> {
        self.append_blocking_with(event, Priority::Normal)
    }

    /// [`Journal::append_blocking`] using the reserve if needed.
    pub fn append_reserved_blocking(&self, event: Event) -> Result<Recorded, JournalError> {
        self.append_blocking_with(event, Priority::Reserve)
    }

    /// Append `event` with the given priority from synchronous code.
    pub fn append_blocking_with(
        &self,
        event: Event,
        priority: Priority,
    ) -> Result<Recorded, JournalError> {
        let payload = self.prepare(&event)?;
        let permits = self.inner.permits.clone();
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => futures::executor::block_on(permits.acquire_owned()).map_err(|_| {
                JournalError::Closed {
                    reason: self.failure(),
                }
            })?,
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.submit(Request {
            payload,
            priority,
            responder: Responder::Blocking(tx),
            _permit: permit,
        })?;
        rx.recv().map_err(|_| JournalError::Closed {
            reason: self.failure(),
        })?
    }
}

#[cfg(test)]
mod tests;
