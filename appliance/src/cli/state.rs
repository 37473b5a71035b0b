//! `otgate state`: the materialized state (rebuild from the journal).

use std::process::ExitCode;

use super::Globals;

/// The `otgate state` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {}

/// Run an `otgate state` subcommand.
pub fn run(_globals: &Globals, command: StateCommand) -> anyhow::Result<ExitCode> {
    match command {}
}
