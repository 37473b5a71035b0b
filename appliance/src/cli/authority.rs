//! `otgate authority`: the HQ side of policy bundles (keygen, sign, verify, serve).

use std::process::ExitCode;

use super::Globals;

/// The `otgate authority` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuthorityCommand {}

/// Run an `otgate authority` subcommand.
pub fn run(_globals: &Globals, command: AuthorityCommand) -> anyhow::Result<ExitCode> {
    match command {}
}
