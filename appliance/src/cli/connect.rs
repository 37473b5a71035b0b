//! `otgate connect`: a local Modbus TCP port tunnelled over TLS to the appliance.

use std::process::ExitCode;

use super::Globals;

/// Arguments of `otgate connect`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {}

/// Run `otgate connect`.
pub fn run(_globals: &Globals, _args: ConnectArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}
