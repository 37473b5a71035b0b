//! `otgate audit`: verify, show and export the journal.

use std::process::ExitCode;

use super::Globals;

/// The `otgate audit` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {}

/// Run an `otgate audit` subcommand.
pub fn run(_globals: &Globals, command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {}
}
