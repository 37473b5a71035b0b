//! `otgate audit`: verify, show and export the journal.
//!
//! `verify` and `show` only read (no key, no lock), so they work while the daemon runs.
//! `export` keeps a durable cursor per destination under `DATA_DIR/export/`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, FixedOffset, Utc};

use super::{hint, Globals};
use crate::journal::event::Subjects;
use crate::journal::export;
use crate::journal::read::{JournalReader, StoredRecord};
use crate::journal::verify::{self, Damage};

const VERIFY_HELP: &str = "\
Walks every segment, record, hash link and checkpoint signature. Exit 0 when intact (prints the
record count and head hash), 1 at the first damage (which record, segment and byte, and how).

Example:
  otgate audit verify --data-dir /var/lib/otgate
  otgate audit verify --public-key /media/usb/appliance.pub --json";

const SHOW_HELP: &str = "\
Filters combine (all must match). --kind matches a kind (`grant_activated`), a category
(`access`) or both (`access.grant_activated`).

Example:
  otgate audit show --since 2026-11-28T06:00:00+01:00 --asset line3-plc
  otgate audit show --kind access --actor alice --json";

const EXPORT_HELP: &str = "\
Sends every record after the destination's cursor (DATA_DIR/export/), in order, each with its
sequence number; the cursor moves only over records known delivered, so an outage leaves them
waiting in the journal and a later run (or --follow) sends them without gaps. Records past the
cursor may arrive twice after a crash; their seq marks them. Syslog uses RFC 6587 octet counting
over TCP, or RFC 5425 over TLS (verify the collector with --ca or --pin-sha256).

`otgate serve` runs an exporter itself when appliance.toml has an [export] table (to, format,
ca / pinned_certificate / pin_sha256, retry_max; see docs/journal-format.md). --status shows every
destination's cursor, how far it lags the journal, and its last error, whoever exports.

Example:
  otgate audit export --to syslog+tls://siem.example:6514 --ca /etc/otgate/siem-ca.pem --follow
  otgate audit export --to file:/media/usb/audit.jsonl --format json
  otgate audit export --status --json";

/// The `otgate audit` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Verify the journal's chain and signed checkpoints; report the first damage precisely.
    #[command(after_help = VERIFY_HELP)]
    Verify(VerifyArgs),
    /// Show journal records, filtered by time, actor, asset, kind, grant or session.
    #[command(after_help = SHOW_HELP)]
    Show(ShowArgs),
    /// Export the journal to a SIEM (syslog over TLS or TCP, or a file), from its durable cursor.
    #[command(after_help = EXPORT_HELP)]
    Export(ExportArgs),
    /// Testing only: append notes from concurrent writers until killed, printing each
    /// acknowledged seq (used by the crash tests). Never on a real appliance's data dir.
    #[command(hide = true)]
    DangerStressWriter(StressArgs),
}

/// Arguments of `otgate audit export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// syslog+tls://HOST:PORT, syslog+tcp://HOST:PORT or file:PATH.
    #[arg(long, value_name = "DEST", value_parser = |s: &str| s.parse::<export::Destination>(), required_unless_present = "status")]
    pub to: Option<export::Destination>,
    /// Show each destination's cursor, lag and last error instead of exporting.
    #[arg(long, conflicts_with_all = ["to", "follow"])]
    pub status: bool,
    /// With --status: one JSON object per destination (JSON lines).
    #[arg(long, requires = "status")]
    pub json: bool,
    /// Message format (default: rfc5424 for syslog, json for files).
    #[arg(long, value_enum)]
    pub format: Option<export::Format>,
    /// Keep following the journal and retrying the collector until interrupted.
    #[arg(long)]
    pub follow: bool,
    /// PEM file of the CA(s) that sign the collector's certificate (syslog+tls).
    #[arg(long, value_name = "FILE", conflicts_with = "pin_sha256")]
    pub ca: Option<PathBuf>,
    /// SHA-256 (hex) of the collector's certificate, instead of a CA (syslog+tls).
    #[arg(long, value_name = "HEX", value_parser = parse_pin)]
    pub pin_sha256: Option<[u8; 32]>,
    /// The TLS server name to verify, if not the destination's host.
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// The HOSTNAME in syslog messages (default: this machine's).
    #[arg(long)]
    pub hostname: Option<String>,
    /// How long TCP may leave a write unacknowledged; a record counts as delivered once the
    /// connection outlives this after it was written.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub ack_timeout: std::time::Duration,
}

fn parse_pin(text: &str) -> Result<[u8; 32], String> {
    let mut pin = [0u8; 32];
    hex::decode_to_slice(text.trim().replace(':', ""), &mut pin)
        .map_err(|_| format!("`{text}` is not a SHA-256 in hex (64 hex digits)"))?;
    Ok(pin)
}

/// Arguments of the hidden `otgate audit danger-stress-writer`.
#[derive(Debug, clap::Args)]
pub struct StressArgs {
    /// Concurrent writer threads.
    #[arg(long, default_value_t = 8)]
    pub writers: u32,
    /// Notes per writer (default: until killed).
    #[arg(long)]
    pub count: Option<u64>,
    /// Segment size, small to rotate often.
    #[arg(long, default_value_t = 64 * 1024)]
    pub segment_bytes: u64,
    /// A checkpoint every this many records.
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: u64,
}

/// Arguments of `otgate audit verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The appliance public key to verify against (default: DATA_DIR/appliance.pub). An
    /// auditor's own copy proves more than the one beside the journal.
    #[arg(long, value_name = "PATH")]
    pub public_key: Option<PathBuf>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `otgate audit show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Only records written at or after this instant (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    pub since: Option<DateTime<FixedOffset>>,
    /// Only records written before this instant (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    pub until: Option<DateTime<FixedOffset>>,
    /// Only records whose actor is this identity.
    #[arg(long)]
    pub actor: Option<String>,
    /// Only records about this asset.
    #[arg(long)]
    pub asset: Option<String>,
    /// Only records of this kind, category, or `category.kind`.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only records about this grant.
    #[arg(long)]
    pub grant: Option<String>,
    /// Only records about this broker session.
    #[arg(long)]
    pub session: Option<String>,
    /// Start at this sequence number.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub from_seq: u64,
    /// Print JSON lines (one record per line) instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_instant(text: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(text).map_err(|e| {
        format!("`{text}` is not an RFC 3339 instant ({e}); e.g. 2026-11-28T06:00:00+01:00")
    })
}

/// Run an `otgate audit` subcommand.
pub fn run(globals: &Globals, command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify(args) => verify_command(globals, args),
        AuditCommand::Show(args) => show(globals, args),
        AuditCommand::Export(args) => export_command(globals, args),
        AuditCommand::DangerStressWriter(args) => stress_writer(globals, args),
    }
}

fn journal_dir(globals: &Globals) -> anyhow::Result<PathBuf> {
    let dir = globals.data_dir.journal_dir();
    if !dir.is_dir() {
        return Err(hint(
            anyhow::anyhow!("no journal at {}", dir.display()),
            format!(
                "is --data-dir right? `otgate init --data-dir {}` creates one",
                globals.data_dir.root().display()
            ),
        ));
    }
    Ok(dir)
}

fn verify_command(globals: &Globals, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let dir = journal_dir(globals)?;
    let key_path = args
        .public_key
        .unwrap_or_else(|| globals.data_dir.appliance_public_key());
    let key = crate::journal::keys::load_public_key(&key_path).map_err(|e| {
        hint(e, "give the appliance's public key with --public-key PATH (appliance.pub from `otgate init`)")
    })?;
    // A writer may be between `write` and its next frame: a partial last frame is retried briefly.
    let mut result = verify::verify(&dir, &key);
    for _ in 0..3 {
        match &result {
            Err(failure) if matches!(failure.damage, Damage::Truncated { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(50));
                result = verify::verify(&dir, &key);
            }
            _ => break,
        }
    }
    let mut out = std::io::stdout().lock();
    match result {
        Ok(verified) => {
            if args.json {
                let mut value = serde_json::to_value(&verified)?;
                if let Some(map) = value.as_object_mut() {
                    map.insert("intact".into(), true.into());
                }
                writeln!(out, "{value}")?;
            } else {
                writeln!(
                    out,
                    "journal intact: {} records in {} segments",
                    verified.records, verified.segments
                )?;
                writeln!(
                    out,
                    "head: seq {} sha256 {}",
                    verified.head_seq,
                    hex::encode(verified.head_hash)
                )?;
                writeln!(
                    out,
                    "checkpoints: {} verified with key {} ({}); last at seq {}, {} records after it not yet signed",
                    verified.checkpoints,
                    verified.key_id,
                    key_path.display(),
                    verified.last_checkpoint_seq,
                    verified.unsigned_tail
                )?;
                match (verified.signed_head_seq, verified.signed_head_clean) {
                    (Some(seq), Some(true)) => writeln!(
                        out,
                        "signed head: checkpoint seq {seq}, written at a clean close"
                    )?,
                    (Some(seq), _) => writeln!(
                        out,
                        "signed head: checkpoint seq {seq} (the writer runs, or did not close cleanly)"
                    )?,
                    (None, _) => writeln!(
                        out,
                        "signed head: none (journal/HEAD is missing or empty): records cut from the end could not be noticed"
                    )?,
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            if args.json {
                let value = serde_json::json!({
                    "intact": false,
                    "damage": failure.damage,
                    "verified": failure.verified,
                });
                writeln!(out, "{value}")?;
            }
            drop(out);
            let verified = &failure.verified;
            let before = if verified.records == 0 {
                "no record verified before it".to_string()
            } else {
                format!("records 1..={} verify", verified.head_seq)
            };
            Err(hint(
                anyhow::anyhow!("journal damaged: {} ({before})", failure.damage),
                "compare with the SIEM's copy (`otgate audit export`) and keep the data dir as evidence",
            ))
        }
    }
}

/// Whether a record passes the `show` filters.
fn matches(args: &ShowArgs, record: &StoredRecord) -> bool {
    let event = &record.event;
    if args
        .since
        .is_some_and(|since| record.wall_time < since.with_timezone(&Utc))
    {
        return false;
    }
    if args
        .until
        .is_some_and(|until| record.wall_time >= until.with_timezone(&Utc))
    {
        return false;
    }
    let same =
        |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
    if !same(&args.actor, event.actor())
        || !same(&args.asset, event.asset())
        || !same(&args.grant, event.grant())
        || !same(&args.session, event.session())
    {
        return false;
    }
    if let Some(kind) = &args.kind {
        let full = format!("{}.{}", event.category(), event.kind());
        if kind != event.kind() && kind != event.category() && *kind != full {
            return false;
        }
    }
    true
}

fn show(globals: &Globals, args: ShowArgs) -> anyhow::Result<ExitCode> {
    let dir = journal_dir(globals)?;
    let reader = JournalReader::from_seq(&dir, args.from_seq)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for record in reader {
        let record =
            record.map_err(|e| hint(e, "run `otgate audit verify` to locate the damage"))?;
        if !matches(&args, &record) {
            continue;
        }
        let written = if args.json {
            serde_json::to_writer(&mut out, &record)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out))
        } else {
            writeln!(out, "{}", line(&record))
        };
        match written {
            Ok(()) => {}
            // `otgate audit show | head` is fine.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            Err(e) => return Err(e).context("cannot write to stdout"),
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to stdout")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// One record as a line of text: seq, time, category.kind, subjects, then the event as JSON.
pub fn line(record: &StoredRecord) -> String {
    let event = &record.event;
    let mut text = format!(
        "{:>8} {} {}.{}",
        record.seq,
        record
            .wall_time
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        event.category(),
        event.kind()
    );
    for (name, value) in [
        ("actor", event.actor()),
        ("asset", event.asset()),
        ("grant", event.grant()),
        ("session", event.session()),
    ] {
        if let Some(value) = value {
            text.push_str(&format!(" {name}={value}"));
        }
    }
    if let Ok(json) = serde_json::to_string(event) {
        text.push(' ');
        text.push_str(&json);
    }
    text
}

/// Append notes through the state from `writers` threads; print `ack <seq> <text>` for each
/// acknowledged one, flushed, so that a test killing this process knows what was promised.
fn stress_writer(globals: &Globals, args: StressArgs) -> anyhow::Result<ExitCode> {
    use crate::journal::event::{Event, JournalEvent};
    let key =
        crate::journal::keys::load_or_generate_appliance_key(&globals.data_dir.appliance_key())?;
    let config = crate::journal::JournalConfig {
        segment_bytes: args.segment_bytes,
        checkpoint_every_records: args.checkpoint_every,
        ..crate::journal::JournalConfig::default()
    };
    let journal = crate::journal::Journal::open(&globals.data_dir.journal_dir(), key, config)?;
    let state = crate::state::State::open(&globals.data_dir, &journal)?;
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..args.writers)
        .map(|w| {
            let state = state.clone();
            let out = out.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut i = 0u64;
                while args.count.is_none_or(|count| i < count) {
                    let text = format!("w{w}-{i}-{}", std::process::id());
                    let event = Event::Journal(JournalEvent::Note {
                        actor: Some(format!("stress-{w}")),
                        text: text.clone(),
                    });
                    let recorded = state.append_blocking(event)?;
                    let mut out = out
                        .lock()
                        .map_err(|_| anyhow::anyhow!("stdout lock poisoned"))?;
                    writeln!(out, "ack {} {text}", recorded.seq())?;
                    out.flush()?;
                    i += 1;
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("a writer thread panicked"))??;
    }
    Ok(ExitCode::SUCCESS)
}

/// `otgate audit export --status`: every cursor, its lag behind the journal, its last error.
fn export_status(globals: &Globals, json: bool) -> anyhow::Result<ExitCode> {
    let dir = journal_dir(globals)?;
    let head = crate::journal::read::head_seq(&dir)
        .map_err(|e| hint(e, "run `otgate audit verify` to locate the damage"))?;
    let found = export::list(&globals.data_dir)?;
    let mut out = std::io::stdout().lock();
    if found.is_empty() && !json {
        writeln!(out, "no export has run yet (journal head: seq {head})")?;
    }
    for (cursor, status) in found {
        let lag = head.saturating_sub(cursor.confirmed_seq);
        if json {
            let value = serde_json::json!({
                "destination": cursor.destination,
                "format": cursor.format,
                "confirmed_seq": cursor.confirmed_seq,
                "journal_head_seq": head,
                "lag": lag,
                "cursor_updated_at": cursor.updated_at,
                "status": status,
            });
            writeln!(out, "{value}")?;
            continue;
        }
        writeln!(
            out,
            "{} ({}): delivered up to seq {} of {head} ({lag} waiting), cursor moved {}",
            cursor.destination,
            cursor.format,
            cursor.confirmed_seq,
            cursor
                .updated_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )?;
        if let Some(status) = status {
            let state = match (status.stopped_at, status.connected) {
                (Some(at), _) => format!(
                    "stopped {}",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                (None, true) => format!("connected (pid {})", status.pid),
                (None, false) => format!("not connected, retrying (pid {})", status.pid),
            };
            writeln!(
                out,
                "  {state}; {} failures since {}",
                status.failures,
                status
                    .started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )?;
            if let (Some(error), Some(at)) = (&status.last_error, status.last_error_at) {
                writeln!(
                    out,
                    "  last error {}: {error}",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn export_command(globals: &Globals, args: ExportArgs) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    if args.status {
        return export_status(globals, args.json);
    }
    journal_dir(globals)?;
    let Some(to) = args.to else {
        return Err(hint(
            anyhow::anyhow!("--to is missing"),
            "give --to syslog+tls://HOST:PORT, syslog+tcp://HOST:PORT or file:PATH",
        ));
    };
    let format = args.format.unwrap_or(match to {
        export::Destination::File { .. } => export::Format::Json,
        _ => export::Format::Rfc5424,
    });
    let mut options = export::ExportOptions::new(to.clone(), format);
    options.follow = args.follow;
    options.ack_timeout = args.ack_timeout;
    options.server_name = args.server_name;
    if let Some(hostname) = args.hostname {
        options.hostname = hostname;
    }
    options.tls_trust = match (args.ca, args.pin_sha256) {
        (Some(ca), _) => Some(export::TlsTrust::CaFile(ca)),
        (None, Some(pin)) => Some(export::TlsTrust::Pin(pin)),
        (None, None) => None,
    };
    if args.follow {
        // Stop cleanly (confirming what was sent) on Ctrl-C or SIGTERM.
        let stop = options.stop.clone();
        std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let terminate = async {
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(mut signal) => {
                            signal.recv().await;
                        }
                        Err(_) => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate => {}
                }
            });
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    let progress = std::io::stderr().is_terminal();
    let result = export::export(&globals.data_dir, &options, |notice| {
        if !progress {
            return;
        }
        match notice {
            export::ExportNotice::Connected { from_seq } => {
                eprintln!("connected; sending from seq {from_seq}")
            }
            export::ExportNotice::Failed { error, retry_in } => {
                eprintln!(
                    "{error}; retrying in {}",
                    humantime::format_duration(*retry_in)
                )
            }
            export::ExportNotice::Confirmed { seq } => eprintln!("delivered up to seq {seq}"),
        }
    });
    match result {
        Ok(report) => {
            println!(
                "exported {} records to {}; delivered up to seq {}",
                report.sent, to, report.confirmed_seq
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ export::ExportError::Tls(_)) => Err(hint(
            e,
            "give --ca FILE (the collector's CA) or --pin-sha256 HEX (its certificate)",
        )),
        Err(
            e @ (export::ExportError::Unreachable { .. } | export::ExportError::Unconfirmed { .. }),
        ) => Err(hint(
            e,
            "check the collector and the link; `--follow` keeps retrying",
        )),
        Err(e) => Err(e.into()),
    }
}
