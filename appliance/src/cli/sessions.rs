//! `otgate sessions` and `otgate replay`: broker sessions and their transcripts.

use std::process::ExitCode;

use super::Globals;

/// Arguments of `otgate sessions`.
#[derive(Debug, clap::Args)]
pub struct SessionsArgs {}

/// Run `otgate sessions`.
pub fn sessions(_globals: &Globals, _args: SessionsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}

/// Arguments of `otgate replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {}

/// Run `otgate replay`.
pub fn replay(_globals: &Globals, _args: ReplayArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}
