//! SIEM export: sends the journal's records, in order and each with its sequence number, to a
//! file (JSON lines, RFC 5424 lines or CEF lines) or to a syslog collector over TCP (RFC 6587
//! octet counting) or TLS (RFC 5425), once or following the journal as it grows.
//!
//! A durable cursor per destination (`DATA_DIR/export/<destination>.cursor.json`) holds the
//! last record known delivered. When the collector or the link is down, records wait in the
//! journal; after a reconnect they go out from the cursor on, in order, so there are no gaps.
//! Records past the cursor may be sent twice (after a crash or a broken connection): they are
//! marked by their sequence number, and nothing at or before the cursor is ever sent again.
//! See [`transport`] for what "delivered" means on a syslog connection.
//!
//! It reads the journal's files (no key, no lock) and never writes the journal: export progress
//! is not an audit decision, and journaling it would feed the export forever.

pub mod collector;
mod config;
pub mod format;
pub mod service;
pub mod transport;

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use config::ExportConfigError;
pub use format::Format;
pub use service::Exporter;
use transport::Sink;
pub use transport::TlsTrust;

use super::read::{JournalTail, ReadError};
use super::Journal;
use crate::datadir::DataDir;

/// Where records are exported to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `syslog+tcp://host:port`
    SyslogTcp {
        /// `host:port`
        address: String,
    },
    /// `syslog+tls://host:port`
    SyslogTls {
        /// `host:port`
        address: String,
        /// The host, for the TLS server name.
        host: String,
    },
    /// `file:PATH` (appended to; created if absent)
    File {
        /// The file.
        path: PathBuf,
    },
}

impl FromStr for Destination {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let address = |rest: &str| -> Result<(String, String), String> {
            let rest = rest.trim_end_matches('/');
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| {
                format!("`{text}` has no port; e.g. syslog+tls://siem.example:6514")
            })?;
            port.parse::<u16>()
                .map_err(|_| format!("`{port}` in `{text}` is not a port"))?;
            if host.is_empty() {
                return Err(format!("`{text}` has no host"));
            }
            Ok((
                rest.to_string(),
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
            ))
        };
        if let Some(rest) = text.strip_prefix("syslog+tcp://") {
            Ok(Destination::SyslogTcp {
                address: address(rest)?.0,
            })
        } else if let Some(rest) = text.strip_prefix("syslog+tls://") {
            let (address, host) = address(rest)?;
            Ok(Destination::SyslogTls { address, host })
        } else if let Some(rest) = text
            .strip_prefix("file://")
            .or_else(|| text.strip_prefix("file:"))
        {
            if rest.is_empty() {
                return Err("`file:` needs a path, e.g. file:/var/log/otgate-audit.jsonl".into());
            }
            Ok(Destination::File {
                path: PathBuf::from(rest),
            })
        } else {
            Err(format!(
                "`{text}` is not a destination; use syslog+tls://host:port, syslog+tcp://host:port or file:PATH"
            ))
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::SyslogTcp { address } => write!(f, "syslog+tcp://{address}"),
            Destination::SyslogTls { address, .. } => write!(f, "syslog+tls://{address}"),
            Destination::File { path } => write!(f, "file:{}", path.display()),
        }
    }
}

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Where to.
    pub destination: Destination,
    /// In which format.
    pub format: Format,
    /// The HOSTNAME of syslog messages and `dvchost` of CEF.
    pub hostname: String,
    /// Keep following the journal (and retrying the collector) until `stop` is set.
    pub follow: bool,
    /// TLS trust for `syslog+tls` (required there).
    pub tls_trust: Option<TlsTrust>,
    /// The TLS server name, if not the destination's host.
    pub server_name: Option<String>,
    /// TCP's ack timeout: a record is delivered once the connection outlives it after the write.
    pub ack_timeout: Duration,
    /// How often to look for new records when following.
    pub poll_interval: Duration,
    /// The longest wait between reconnection attempts.
    pub retry_max: Duration,
    /// The most records sent between two flushes.
    pub batch: u64,
    /// Set to stop a follow-mode export.
    pub stop: Arc<AtomicBool>,
    /// Export only records this open journal has made durable (inside the daemon).
    pub journal: Option<Journal>,
}

impl ExportOptions {
    /// Defaults for `destination` and `format`.
    pub fn new(destination: Destination, format: Format) -> ExportOptions {
        ExportOptions {
            destination,
            format,
            hostname: default_hostname(),
            follow: false,
            tls_trust: None,
            server_name: None,
            ack_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(200),
            retry_max: Duration::from_secs(10),
            batch: 1000,
            stop: Arc::new(AtomicBool::new(false)),
            journal: None,
        }
    }
}

/// This machine's host name (`/etc/hostname`), or `otgate`.
pub fn default_hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "otgate".into())
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    /// Messages written (including any sent again after a reconnect).
    pub sent: u64,
    /// The cursor at the end: the last record known delivered.
    pub confirmed_seq: u64,
    /// Connections made (or files opened).
    pub connections: u64,
    /// Connection attempts or connections that failed.
    pub failures: u64,
}

/// Progress, for the operator.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ExportNotice {
    /// Connected (or opened the file); sending from `from_seq`.
    Connected {
        /// The first seq to be sent.
        from_seq: u64,
    },
    /// The destination failed; retrying after `retry_in` (follow mode).
    Failed {
        /// What happened.
        error: String,
        /// When the next attempt is.
        retry_in: Duration,
    },
    /// The cursor moved.
    Confirmed {
        /// The last record delivered.
        seq: u64,
    },
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The destination cannot be reached or written (records wait in the journal).
    #[error("cannot export to {destination} (records wait in the journal; the cursor is at seq {confirmed_seq})")]
    Unreachable {
        /// The destination.
        destination: String,
        /// The last delivered seq.
        confirmed_seq: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The collector did not confirm the last records; they will be sent again next time.
    #[error("{destination} did not confirm records after seq {confirmed_seq}; they will be sent again next time ({reason})")]
    Unconfirmed {
        /// The destination.
        destination: String,
        /// The last delivered seq.
        confirmed_seq: u64,
        /// Why.
        reason: String,
    },
    /// TLS needs a CA file or a pin, or the configuration is invalid.
    #[error("TLS: {0}")]
    Tls(String),
    /// The journal could not be read (export stops rather than skip a record).
    #[error("cannot read the journal")]
    Read(#[from] ReadError),
    /// The cursor file could not be read or written.
    #[error("export cursor {}: {reason}", path.display())]
    Cursor {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// The durable cursor of one destination and format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The destination, as given.
    pub destination: String,
    /// The format.
    pub format: String,
    /// The last record known delivered (0: none).
    pub confirmed_seq: u64,
    /// When it last moved.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// The cursor file of a destination and format.
pub fn cursor_path(data_dir: &DataDir, destination: &Destination, format: Format) -> PathBuf {
    let name = format!("{destination} {format:?}");
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    let slug: String = destination
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    data_dir.export_dir().join(format!(
        "{slug}-{}.cursor.json",
        digest.get(..12).unwrap_or_default()
    ))
}

/// Read a cursor (`None` if there is none yet).
pub fn load_cursor(path: &Path) -> Result<Option<Cursor>, ExportError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ExportError::Cursor {
                path: path.into(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ExportError::Cursor {
            path: path.into(),
            reason: e.to_string(),
        }),
    }
}

/// Write a cursor durably (temporary file, `fsync`, rename, `fsync` of the directory).
fn store_cursor(path: &Path, cursor: &Cursor) -> Result<(), ExportError> {
    let fail = |e: io::Error| ExportError::Cursor {
        path: path.into(),
        reason: e.to_string(),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(cursor).map_err(|e| fail(io::Error::other(e)))?;
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp).map_err(fail)?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(fail)?;
    }
    std::fs::rename(&tmp, path).map_err(fail)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail)
}

/// Sleep up to `duration`, waking early if `stop` is set.
fn nap(duration: Duration, stop: &AtomicBool) {
    let until = Instant::now() + duration;
    while !stop.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

enum Step {
    Read(ReadError),
    Io(io::Error),
}

impl From<ReadError> for Step {
    fn from(e: ReadError) -> Self {
        Step::Read(e)
    }
}

/// What an exporter is doing or last did, for `otgate audit export --status`. It is written
/// beside the cursor (`<destination>.status.json`) when the exporter starts, connects, fails and
/// stops; not durably: it is for the operator, the cursor is the truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportStatus {
    /// The destination, as given.
    pub destination: String,
    /// The format.
    pub format: String,
    /// The exporting process.
    pub pid: u32,
    /// Whether it follows the journal (the daemon's exporter, or `--follow`).
    pub follow: bool,
    /// When it started.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Whether it is connected now (as of its last change).
    pub connected: bool,
    /// When it last connected.
    pub last_connected_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The last failure (connection refused, reset, TLS), if any.
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Failures since it started.
    pub failures: u64,
    /// When it stopped (`None` while it runs, or if it was killed).
    pub stopped_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The status file beside a cursor file.
pub fn status_path(cursor_path: &Path) -> PathBuf {
    let name = cursor_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let stem = name.strip_suffix(".cursor.json").unwrap_or(name);
    cursor_path.with_file_name(format!("{stem}.status.json"))
}

/// Read a status file (`None` if there is none).
pub fn load_status(path: &Path) -> Result<Option<ExportStatus>, ExportError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ExportError::Cursor {
                path: path.into(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ExportError::Cursor {
            path: path.into(),
            reason: e.to_string(),
        }),
    }
}

/// Every destination under the data dir's `export/`: its cursor (confirmed seq 0 if none has
/// been written yet) and its status file if there is one.
pub fn list(data_dir: &DataDir) -> Result<Vec<(Cursor, Option<ExportStatus>)>, ExportError> {
    let dir = data_dir.export_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ExportError::Cursor {
                path: dir,
                reason: e.to_string(),
            })
        }
    };
    let mut stems = std::collections::BTreeSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name
            .strip_suffix(".cursor.json")
            .or_else(|| name.strip_suffix(".status.json"))
        {
            stems.insert(stem.to_string());
        }
    }
    let mut found = Vec::new();
    for stem in stems {
        let cursor_file = dir.join(format!("{stem}.cursor.json"));
        let status = load_status(&status_path(&cursor_file))?;
        let cursor = match (load_cursor(&cursor_file)?, &status) {
            (Some(cursor), _) => cursor,
            (None, Some(status)) => Cursor {
                destination: status.destination.clone(),
                format: status.format.clone(),
                confirmed_seq: 0,
                updated_at: status.started_at,
            },
            (None, None) => continue,
        };
        found.push((cursor, status));
    }
    found.sort_by(|a, b| (&a.0.destination, &a.0.format).cmp(&(&b.0.destination, &b.0.format)));
    Ok(found)
}

/// Keeps the status file of one export run.
struct StatusFile {
    path: PathBuf,
    status: ExportStatus,
}

impl StatusFile {
    fn start(path: PathBuf, cursor: &Cursor, follow: bool) -> StatusFile {
        let file = StatusFile {
            path,
            status: ExportStatus {
                destination: cursor.destination.clone(),
                format: cursor.format.clone(),
                pid: std::process::id(),
                follow,
                started_at: chrono::Utc::now(),
                connected: false,
                last_connected_at: None,
                last_error: None,
                last_error_at: None,
                failures: 0,
                stopped_at: None,
            },
        };
        file.store();
        file
    }

    fn record(&mut self, notice: &ExportNotice) {
        let now = chrono::Utc::now();
        match notice {
            ExportNotice::Connected { .. } => {
                self.status.connected = true;
                self.status.last_connected_at = Some(now);
            }
            ExportNotice::Failed { error, .. } => {
                self.status.connected = false;
                self.status.last_error = Some(error.clone());
                self.status.last_error_at = Some(now);
                self.status.failures += 1;
            }
            ExportNotice::Confirmed { .. } => return,
        }
        self.store();
    }

    fn finish(&mut self, result: &Result<ExportReport, ExportError>) {
        let now = chrono::Utc::now();
        self.status.connected = false;
        self.status.stopped_at = Some(now);
        if let Err(e) = result {
            self.status.last_error = Some(e.to_string());
            self.status.last_error_at = Some(now);
            self.status.failures += 1;
        }
        self.store();
    }

    /// Write it (temporary file and rename; a failure is only traced).
    fn store(&self) {
        let tmp = self.path.with_extension("tmp");
        let written = serde_json::to_vec_pretty(&self.status)
            .map_err(io::Error::other)
            .and_then(|bytes| {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&tmp, bytes)
            })
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            tracing::warn!(path = %self.path.display(), error = %e, "export: cannot write the status file");
        }
    }
}

/// Export the journal of `data_dir` as `options` say. Blocking: run it on its own thread
/// (or `spawn_blocking`) when following. Its progress is kept in the status file beside the
/// cursor ([`status_path`]).
pub fn export(
    data_dir: &DataDir,
    options: &ExportOptions,
    mut notice: impl FnMut(&ExportNotice),
) -> Result<ExportReport, ExportError> {
    let path = cursor_path(data_dir, &options.destination, options.format);
    let cursor = load_cursor(&path)?.unwrap_or(Cursor {
        destination: options.destination.to_string(),
        format: format!("{:?}", options.format).to_lowercase(),
        confirmed_seq: 0,
        updated_at: chrono::Utc::now(),
    });
    let mut status = StatusFile::start(status_path(&path), &cursor, options.follow);
    let result = run(data_dir, options, path, cursor, |n: &ExportNotice| {
        status.record(n);
        notice(n);
    });
    status.finish(&result);
    result
}

fn run(
    data_dir: &DataDir,
    options: &ExportOptions,
    path: PathBuf,
    mut cursor: Cursor,
    mut notice: impl FnMut(&ExportNotice),
) -> Result<ExportReport, ExportError> {
    let journal_dir = data_dir.journal_dir();
    let (tls, pinned) = match (&options.destination, &options.tls_trust) {
        (Destination::SyslogTls { .. }, Some(trust)) => {
            let (config, pinned) = transport::client_config(trust).map_err(ExportError::Tls)?;
            (Some(config), pinned)
        }
        (Destination::SyslogTls { .. }, None) => {
            return Err(ExportError::Tls(
                "syslog+tls needs --ca FILE or --pin-sha256 HEX".into(),
            ))
        }
        _ => (None, None),
    };
    let mut report = ExportReport {
        confirmed_seq: cursor.confirmed_seq,
        ..ExportReport::default()
    };
    let mut sink: Option<Sink> = None;
    let mut tail = JournalTail::new(&journal_dir, cursor.confirmed_seq + 1);
    let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut backoff = Duration::from_millis(100);
    let destination = options.destination.to_string();
    let margin = options.ack_timeout + options.ack_timeout / 2;

    loop {
        let stopping = options.stop.load(Ordering::SeqCst);
        if sink.is_none() {
            if stopping {
                break;
            }
            let opened = match &options.destination {
                Destination::File { path } => Sink::open_file(path),
                Destination::SyslogTcp { address } => Sink::connect(address, options.ack_timeout),
                Destination::SyslogTls { address, host } => {
                    let name = options.server_name.clone().unwrap_or_else(|| host.clone());
                    let config = tls
                        .clone()
                        .ok_or_else(|| ExportError::Tls("no TLS configuration".into()))?;
                    Sink::connect_tls(address, &name, config, options.ack_timeout)
                }
            };
            match opened {
                Ok(opened) => {
                    sink = Some(opened);
                    report.connections += 1;
                    backoff = Duration::from_millis(100);
                    // Everything past the cursor is sent (again): no gaps, duplicates marked by seq.
                    tail = JournalTail::new(&journal_dir, cursor.confirmed_seq + 1);
                    pending.clear();
                    notice(&ExportNotice::Connected {
                        from_seq: cursor.confirmed_seq + 1,
                    });
                }
                Err(source) => {
                    let source = match &options.tls_trust {
                        Some(TlsTrust::Pin(pin)) => {
                            transport::explain_pin_mismatch(source, pin, pinned.as_ref())
                        }
                        _ => source,
                    };
                    report.failures += 1;
                    if !options.follow {
                        return Err(ExportError::Unreachable {
                            destination,
                            confirmed_seq: cursor.confirmed_seq,
                            source,
                        });
                    }
                    notice(&ExportNotice::Failed {
                        error: source.to_string(),
                        retry_in: backoff,
                    });
                    nap(backoff, &options.stop);
                    backoff = (backoff * 2).min(options.retry_max);
                    continue;
                }
            }
        }
        let Some(open) = sink.as_mut() else { continue };
        let limit = options.journal.as_ref().map_or(u64::MAX, |j| j.head().seq);
        let batch_end = tail
            .next_seq()
            .saturating_add(options.batch.max(1) - 1)
            .min(limit);
        let step = (|| -> Result<u64, Step> {
            open.check_alive().map_err(Step::Io)?;
            if stopping {
                return Ok(0);
            }
            let sent = tail.read_each(batch_end, |record| {
                let body = format::format(options.format, &record, &options.hostname);
                let message = match (&options.destination, options.format) {
                    (Destination::File { .. }, _) | (_, Format::Rfc5424) => body,
                    // Over syslog, JSON and CEF travel as the MSG of an RFC 5424 message.
                    _ => format::rfc5424(&record, &options.hostname, &body),
                };
                open.send(&message).map_err(Step::Io)?;
                pending.push_back((record.seq, Instant::now()));
                Ok::<(), Step>(())
            })?;
            if sent > 0 {
                open.flush().map_err(Step::Io)?;
                open.check_alive().map_err(Step::Io)?;
            }
            Ok(sent)
        })();
        let sent = match step {
            Ok(sent) => sent,
            Err(Step::Read(e)) => return Err(ExportError::Read(e)),
            Err(Step::Io(source)) => {
                report.failures += 1;
                sink = None;
                if !options.follow {
                    return Err(ExportError::Unreachable {
                        destination,
                        confirmed_seq: cursor.confirmed_seq,
                        source,
                    });
                }
                notice(&ExportNotice::Failed {
                    error: source.to_string(),
                    retry_in: backoff,
                });
                nap(backoff, &options.stop);
                backoff = (backoff * 2).min(options.retry_max);
                continue;
            }
        };
        report.sent += sent;
        // What is delivered: everything flushed to a file; on a connection, what it outlived.
        let mut confirmed = cursor.confirmed_seq;
        let now = Instant::now();
        while let Some(&(seq, at)) = pending.front() {
            if open.confirms_on_flush() || now.duration_since(at) >= margin {
                confirmed = seq;
                pending.pop_front();
            } else {
                break;
            }
        }
        let idle = sent == 0;
        let finishing = idle && (!options.follow || stopping);
        if finishing && !pending.is_empty() {
            match open.finish(options.ack_timeout * 2) {
                Ok(()) => {
                    if let Some(&(seq, _)) = pending.back() {
                        confirmed = seq;
                    }
                    pending.clear();
                }
                Err(e) => {
                    advance(&path, &mut cursor, confirmed, &mut report, &mut notice)?;
                    return Err(ExportError::Unconfirmed {
                        destination,
                        confirmed_seq: cursor.confirmed_seq,
                        reason: e.to_string(),
                    });
                }
            }
        }
        advance(&path, &mut cursor, confirmed, &mut report, &mut notice)?;
        if finishing {
            break;
        }
        if idle {
            nap(options.poll_interval, &options.stop);
        }
    }
    Ok(report)
}

fn advance(
    path: &Path,
    cursor: &mut Cursor,
    confirmed: u64,
    report: &mut ExportReport,
    notice: &mut impl FnMut(&ExportNotice),
) -> Result<(), ExportError> {
    if confirmed > cursor.confirmed_seq {
        cursor.confirmed_seq = confirmed;
        cursor.updated_at = chrono::Utc::now();
        store_cursor(path, cursor)?;
        report.confirmed_seq = confirmed;
        notice(&ExportNotice::Confirmed { seq: confirmed });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
