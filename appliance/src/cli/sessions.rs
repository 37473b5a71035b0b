//! `otgate sessions` and `otgate replay`: broker sessions, live and past, and their transcripts.
//!
//! Both read the session recordings under `DataDir::sessions_dir()` (no daemon needed); a session
//! whose recording has no `end` line is live (or was cut short by a crash, which the journal
//! shows). `otgate sessions kill` asks the running daemon, through its control socket, to end a
//! session.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::Globals;
use crate::broker::modbus::recording::{self, Decision, RecordLine};
use crate::broker::modbus::transcript;

const SESSIONS_AFTER_HELP: &str = "\
Example:
  otgate sessions --live                 sessions running now
  otgate sessions --json                 every session, one JSON object per line
  otgate sessions kill S-G-0001-1 --as sam --totp 123456
                                         end a session (OT identity, daemon running)";

/// Arguments of `otgate sessions`.
#[derive(Debug, clap::Args)]
#[command(after_help = SESSIONS_AFTER_HELP, args_conflicts_with_subcommands = true)]
pub struct SessionsArgs {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only sessions that have not ended.
    #[arg(long)]
    pub live: bool,
    /// Kill a session instead of listing.
    #[command(subcommand)]
    pub command: Option<SessionsCommand>,
}

/// `otgate sessions` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SessionsCommand {
    /// End a live session now (through the running daemon); it is journaled with your name.
    #[command(after_help = "Example:\n  otgate sessions kill S-G-0001-1 --as sam --totp 123456")]
    Kill(KillArgs),
}

/// Arguments of `otgate sessions kill`.
#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// The session id (see `otgate sessions --live`).
    pub session: String,
    /// Who kills it (an OT identity, authenticated at the console).
    #[command(flatten)]
    pub acting: super::access::Acting,
}

/// One session as `otgate sessions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionSummary {
    /// The session id.
    pub session_id: String,
    /// The grant.
    pub grant_id: String,
    /// The IT identity.
    pub identity: String,
    /// The OT asset.
    pub asset_id: String,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended, if it did.
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended, if it did.
    pub end_reason: Option<String>,
    /// Whether it is still running (no end recorded).
    pub live: bool,
    /// Requests forwarded so far.
    pub forwarded: u64,
    /// Requests refused so far.
    pub refused: u64,
}

/// Summarise the recordings in `dir`, oldest first.
pub fn summaries(dir: &std::path::Path) -> anyhow::Result<Vec<SessionSummary>> {
    let mut out = Vec::new();
    for id in recording::list_recordings(dir)? {
        let path = recording::recording_path(dir, &id)?;
        let lines = match recording::read_recording(&path) {
            Ok(lines) => lines,
            Err(error) => {
                tracing::warn!(%error, "skipping an unreadable recording");
                continue;
            }
        };
        let mut summary = SessionSummary {
            session_id: id,
            grant_id: String::new(),
            identity: String::new(),
            asset_id: String::new(),
            started_at: None,
            ended_at: None,
            end_reason: None,
            live: true,
            forwarded: 0,
            refused: 0,
        };
        for line in lines {
            match line {
                RecordLine::Session {
                    grant_id,
                    identity,
                    asset_id,
                    started_at,
                    ..
                } => {
                    summary.grant_id = grant_id;
                    summary.identity = identity;
                    summary.asset_id = asset_id;
                    summary.started_at = Some(started_at);
                }
                RecordLine::Transaction(tx) => match tx.decision {
                    Decision::Forwarded => summary.forwarded += 1,
                    Decision::Refused => summary.refused += 1,
                },
                RecordLine::Dropped { .. } => {}
                RecordLine::End {
                    ended_at, reason, ..
                } => {
                    summary.ended_at = Some(ended_at);
                    summary.end_reason = Some(reason);
                    summary.live = false;
                }
            }
        }
        out.push(summary);
    }
    out.sort_by(|a, b| {
        a.started_at
            .cmp(&b.started_at)
            .then(a.session_id.cmp(&b.session_id))
    });
    Ok(out)
}

/// Run `otgate sessions`.
pub fn sessions(globals: &Globals, args: SessionsArgs) -> anyhow::Result<ExitCode> {
    if let Some(SessionsCommand::Kill(kill)) = args.command {
        return kill_session(globals, kill);
    }
    let dir = globals.data_dir.sessions_dir();
    let all = summaries(&dir)?;
    let shown: Vec<&SessionSummary> = all.iter().filter(|s| !args.live || s.live).collect();
    if args.json {
        for summary in shown {
            println!("{}", serde_json::to_string(summary)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if shown.is_empty() {
        println!("no {}sessions", if args.live { "live " } else { "" });
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<16} {:<14} {:<12} {:<24} {:>9} {:>7}  STATE",
        "SESSION", "GRANT", "IDENTITY", "ASSET", "STARTED", "FORWARDED", "REFUSED"
    );
    for s in shown {
        let started = s
            .started_at
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_else(|| "?".into());
        let state = match (&s.end_reason, s.live) {
            (_, true) => "live".to_owned(),
            (Some(reason), false) => format!("ended: {reason}"),
            (None, false) => "ended".to_owned(),
        };
        println!(
            "{:<24} {:<16} {:<14} {:<12} {:<24} {:>9} {:>7}  {state}",
            s.session_id, s.grant_id, s.identity, s.asset_id, started, s.forwarded, s.refused
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn kill_session(globals: &Globals, kill: KillArgs) -> anyhow::Result<ExitCode> {
    recording::check_session_id(&kill.session)?;
    let password = if kill.acting.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    } else {
        None
    };
    let params = serde_json::json!({
        "id": kill.session,
        "as": kill.acting.identity,
        "totp": kill.acting.totp,
        "password": password,
    });
    super::access::call(globals, "sessions.kill", params)?;
    println!(
        "session {} killed by {}; it closes within a second",
        kill.session, kill.acting.identity
    );
    Ok(ExitCode::SUCCESS)
}

const REPLAY_AFTER_HELP: &str = "\
Prints one line per transaction: time, transaction id, unit, function, addresses, values written,
decision, response (values read or the exception and who sent it) and latency.

Example:
  otgate replay s-42
  otgate replay s-42 --json | jq 'select(.decision == \"refused\")'";

/// Arguments of `otgate replay`.
#[derive(Debug, clap::Args)]
#[command(after_help = REPLAY_AFTER_HELP)]
pub struct ReplayArgs {
    /// The session id (see `otgate sessions`), or the path of a recording file.
    pub session: String,
    /// The recording's lines as JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Run `otgate replay`.
pub fn replay(globals: &Globals, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let path = if args.session.contains('/') || args.session.ends_with(".jsonl") {
        PathBuf::from(&args.session)
    } else {
        recording::recording_path(&globals.data_dir.sessions_dir(), &args.session)?
    };
    if !path.exists() {
        return Err(super::hint(
            anyhow::anyhow!(
                "no recording of session {} at {}",
                args.session,
                path.display()
            ),
            "list the recorded sessions with `otgate sessions`",
        ));
    }
    let lines = recording::read_recording(&path)
        .with_context(|| format!("cannot replay session {}", args.session))?;
    for line in &lines {
        if args.json {
            println!("{}", serde_json::to_string(line)?);
        } else {
            println!("{}", transcript::line(line));
        }
    }
    Ok(ExitCode::SUCCESS)
}
