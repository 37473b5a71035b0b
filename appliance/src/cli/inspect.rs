//! `otgate inspect` and `otgate inventory`: passive inspection.

use std::process::ExitCode;

use super::Globals;

/// Arguments of `otgate inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {}

/// Run `otgate inspect`.
pub fn inspect(_globals: &Globals, _args: InspectArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}

/// Arguments of `otgate inventory`.
#[derive(Debug, clap::Args)]
pub struct InventoryArgs {}

/// Run `otgate inventory`.
pub fn inventory(_globals: &Globals, _args: InventoryArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}
