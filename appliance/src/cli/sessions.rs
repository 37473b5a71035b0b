//! `otgate sessions` and `otgate replay`: broker sessions, live and past, and their transcripts.
//!
//! Live sessions come from the running daemon (control `sessions.list`); past ones from the
//! journal's session records (start, end, operations), which are the truth. A session with a
//! start and no end that the daemon does not list as live was cut by an abrupt stop: it shows as
//! "ended (unclean)" (the daemon journals that end at its next start). Recordings are the detail
//! (`otgate replay`). `otgate sessions kill` asks the running daemon to end a session.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::Globals;
use crate::broker::modbus::history::{self, JournaledSession};
use crate::broker::modbus::live::LiveSession;
use crate::broker::modbus::recording;
use crate::broker::modbus::transcript;
use crate::control::client::{self, ClientError};
use crate::journal::event::SessionEndReason;

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

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Running now (the daemon lists it).
    Live,
    /// Its end is journaled.
    Ended,
    /// Cut by an abrupt stop of the appliance: started, never ended, not running.
    EndedUnclean,
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
    /// When it ended, if its end is journaled.
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended, in words, if it did.
    pub end_reason: Option<String>,
    /// Live, ended, or ended (unclean).
    pub state: SessionState,
    /// Whether it is running now (`state == live`).
    pub live: bool,
    /// Requests forwarded so far.
    pub forwarded: u64,
    /// Requests refused so far.
    pub refused: u64,
}

impl SessionSummary {
    fn from_journal(session: JournaledSession, live: Option<&LiveSession>) -> Self {
        let state = match (&session.end_reason, live) {
            (Some(SessionEndReason::Unclean { .. }), _) => SessionState::EndedUnclean,
            (Some(_), _) => SessionState::Ended,
            (None, Some(_)) => SessionState::Live,
            (None, None) => SessionState::EndedUnclean,
        };
        let (forwarded, refused) = match live {
            Some(live) if state == SessionState::Live => (live.forwarded, live.refused),
            _ => (session.forwarded, session.refused),
        };
        let end_reason = match (&session.end_reason, state) {
            (Some(reason), _) => Some(reason.to_string()),
            (None, SessionState::EndedUnclean) => {
                Some("ended (unclean): the appliance stopped before the session ended".to_owned())
            }
            (None, _) => None,
        };
        Self {
            session_id: session.subject.session_id,
            grant_id: session.subject.grant_id,
            identity: session.subject.identity,
            asset_id: session.subject.asset_id,
            started_at: Some(session.started_at),
            ended_at: session.ended_at,
            end_reason,
            state,
            live: state == SessionState::Live,
            forwarded,
            refused,
        }
    }

    fn from_live(live: LiveSession) -> Self {
        Self {
            session_id: live.session_id,
            grant_id: live.grant_id,
            identity: live.identity,
            asset_id: live.asset_id,
            started_at: Some(live.started_at),
            ended_at: None,
            end_reason: None,
            state: SessionState::Live,
            live: true,
            forwarded: live.forwarded,
            refused: live.refused,
        }
    }
}

/// The sessions the running daemon serves now; none if no daemon runs on this data directory.
fn live_sessions(globals: &Globals) -> anyhow::Result<Vec<LiveSession>> {
    let socket = globals.data_dir.control_socket();
    match client::call(&socket, "sessions.list", serde_json::Value::Null) {
        Ok(answer) => serde_json::from_value(answer)
            .context("the daemon's sessions.list answer is not a list of sessions"),
        Err(ClientError::NotRunning { .. }) => Ok(Vec::new()),
        Err(error) => Err(super::hint(
            anyhow::Error::new(error).context("cannot ask the running daemon for live sessions"),
            "check the daemon (otgate serve) and try again",
        )),
    }
}

/// Every session: past ones from the journal, live ones from the daemon; oldest first.
pub fn summaries(globals: &Globals) -> anyhow::Result<Vec<SessionSummary>> {
    // Ask the daemon first: a session it lists has its start in the journal read after.
    let mut live = live_sessions(globals)?;
    let journal_dir = globals.data_dir.journal_dir();
    let journaled = history::journaled_sessions(&journal_dir, None).map_err(|e| {
        super::hint(
            anyhow::Error::new(e).context(format!(
                "cannot read the sessions in the journal {}",
                journal_dir.display()
            )),
            format!(
                "is {} an appliance's data directory? (otgate init; otgate audit verify)",
                globals.data_dir.root().display()
            ),
        )
    })?;
    let mut out = Vec::with_capacity(journaled.len());
    for session in journaled {
        let position = live
            .iter()
            .position(|l| l.session_id == session.subject.session_id);
        let running = position.map(|i| live.swap_remove(i));
        out.push(SessionSummary::from_journal(session, running.as_ref()));
    }
    out.extend(live.into_iter().map(SessionSummary::from_live));
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
    let all = summaries(globals)?;
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
        let state = match (s.state, &s.end_reason) {
            (SessionState::Live, _) => "live".to_owned(),
            (SessionState::EndedUnclean, Some(reason)) => reason.clone(),
            (SessionState::EndedUnclean, None) => "ended (unclean)".to_owned(),
            (SessionState::Ended, Some(reason)) => format!("ended: {reason}"),
            (SessionState::Ended, None) => "ended".to_owned(),
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
