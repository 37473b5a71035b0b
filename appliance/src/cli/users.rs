//! `otgate users`: local accounts and TOTP enrolment in the IT and OT stores.

use std::process::ExitCode;

use super::Globals;

/// The `otgate users` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {}

/// Run an `otgate users` subcommand.
pub fn run(_globals: &Globals, command: UsersCommand) -> anyhow::Result<ExitCode> {
    match command {}
}
