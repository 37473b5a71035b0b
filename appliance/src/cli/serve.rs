//! `otgate serve`: run the appliance daemon.

use std::process::ExitCode;

use super::Globals;

/// Arguments of `otgate serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

/// Run `otgate serve`.
pub fn run(_globals: &Globals, _args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}
