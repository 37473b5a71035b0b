//! `otgate demo`: a simulated plant and the appliance playing the brief's situations, narrated.

use std::process::ExitCode;

use super::Globals;

/// Arguments of `otgate demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

/// Run `otgate demo`.
pub fn run(_globals: &Globals, _args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}
