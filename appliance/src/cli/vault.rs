//! `otgate vault`: OT device secrets (set, list names, remove); values are never shown.

use std::process::ExitCode;

use super::Globals;

/// The `otgate vault` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum VaultCommand {}

/// Run an `otgate vault` subcommand.
pub fn run(_globals: &Globals, command: VaultCommand) -> anyhow::Result<ExitCode> {
    match command {}
}
