//! `otgate policy import|pull|status`: signed bundles on the appliance side.

use std::process::ExitCode;

use super::Globals;

/// Arguments of `otgate policy import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {}

/// Run `otgate policy import`.
pub fn import(_globals: &Globals, _args: ImportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}

/// Arguments of `otgate policy pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {}

/// Run `otgate policy pull`.
pub fn pull(_globals: &Globals, _args: PullArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}

/// Arguments of `otgate policy status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {}

/// Run `otgate policy status`.
pub fn status(_globals: &Globals, _args: StatusArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}
