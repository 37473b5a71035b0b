//! `otgate policy`: check and explain policies (this file); import, pull and status of signed bundles (`bundle.rs`).

use std::process::ExitCode;

use super::Globals;

/// The `otgate policy` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and report every problem at once.
    Check(CheckArgs),
    /// Explain the decision for one request against a policy file.
    Explain(ExplainArgs),
    /// Import a signed policy bundle from a file (removable media).
    Import(super::bundle::ImportArgs),
    /// Pull the newest signed bundle from HQ over HTTPS (certificate pinned).
    Pull(super::bundle::PullArgs),
    /// Show the active policy: version, signers, validity, grace, last pull.
    Status(super::bundle::StatusArgs),
}

/// Arguments of `otgate policy check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {}

/// Arguments of `otgate policy explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {}

/// Run an `otgate policy` subcommand.
pub fn run(globals: &Globals, command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Check(_) | PolicyCommand::Explain(_) => {
            anyhow::bail!("this command is not built yet")
        }
        PolicyCommand::Import(a) => super::bundle::import(globals, a),
        PolicyCommand::Pull(a) => super::bundle::pull(globals, a),
        PolicyCommand::Status(a) => super::bundle::status(globals, a),
    }
}
