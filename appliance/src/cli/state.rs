//! `otgate state`: the materialized state (status, rebuild from the journal).
//!
//! Both open the journal as its writer (the daemon must not be running: the journal's lock
//! says so) and the state, which replays or rebuilds as needed; `rebuild` forces a rebuild.

use std::io::Write;
use std::process::ExitCode;

use super::{hint, Globals};
use crate::journal::{Journal, JournalConfig, JournalError};
use crate::state::{Opened, State};

const STATUS_HELP: &str = "\
Opens the state as the daemon would: replays what sled lacks, or moves a broken, foreign or
diverged sled aside and rebuilds it (and journals that). Prints how it was found.

Example:
  otgate state status --data-dir /var/lib/otgate --json";

const REBUILD_HELP: &str = "\
Moves the sled directory aside (state.old-<time>) and rebuilds every view from the journal; the
rebuild is journaled. Stop `otgate serve` first.

Example:
  otgate state rebuild --data-dir /var/lib/otgate";

/// The `otgate state` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// Open the state (replaying or rebuilding as needed) and show where it stands.
    #[command(after_help = STATUS_HELP)]
    Status(StatusArgs),
    /// Move the state aside and rebuild it from the journal.
    #[command(after_help = REBUILD_HELP)]
    Rebuild(RebuildArgs),
}

/// Arguments of `otgate state status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `otgate state rebuild`.
#[derive(Debug, clap::Args)]
pub struct RebuildArgs {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Run an `otgate state` subcommand.
pub fn run(globals: &Globals, command: StateCommand) -> anyhow::Result<ExitCode> {
    let journal = open_journal(globals)?;
    let (state, json) = match command {
        StateCommand::Status(args) => (State::open(&globals.data_dir, &journal)?, args.json),
        StateCommand::Rebuild(args) => (
            State::rebuild(
                &globals.data_dir,
                &journal,
                "forced by `otgate state rebuild`",
            )?,
            args.json,
        ),
    };
    state.flush()?;
    let head = journal.head();
    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({
            "state": state.opened(),
            "last_applied_seq": state.last_applied(),
            "journal_head_seq": head.seq,
            "views": state.view_names(),
        });
        writeln!(out, "{value}")?;
    } else {
        match state.opened() {
            Opened::Replayed { replayed } => {
                writeln!(out, "state usable; replayed {replayed} journal records")?
            }
            Opened::Rebuilt {
                reason,
                moved_aside,
            } => {
                write!(out, "state rebuilt from the journal ({reason})")?;
                match moved_aside {
                    Some(path) => writeln!(out, "; the old one is at {}", path.display())?,
                    None => writeln!(out)?,
                }
            }
        }
        writeln!(
            out,
            "applied up to seq {} of {}; views: {}",
            state.last_applied(),
            head.seq,
            state.view_names().join(", ")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Open the appliance's journal as its writer, for CLI commands that run without the daemon.
pub fn open_journal(globals: &Globals) -> anyhow::Result<Journal> {
    let key_path = globals.data_dir.appliance_key();
    let key = crate::journal::keys::load_appliance_key(&key_path).map_err(|e| {
        hint(
            e,
            format!(
                "is --data-dir right? `otgate init --data-dir {}` makes the key",
                globals.data_dir.root().display()
            ),
        )
    })?;
    match Journal::open(
        &globals.data_dir.journal_dir(),
        key,
        JournalConfig::default(),
    ) {
        Ok(journal) => Ok(journal),
        Err(e @ JournalError::Locked { .. }) => Err(hint(
            e,
            "stop `otgate serve` first, or use its control socket",
        )),
        Err(e) => Err(e.into()),
    }
}
