//! `otgate init`: create everything an appliance needs in its data directory.

use std::process::ExitCode;

use super::Globals;

/// Arguments of `otgate init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {}

/// Run `otgate init`.
pub fn run(_globals: &Globals, _args: InitArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}
