//! `otgate request|approve|deny|grants|revoke|review`: the access lifecycle, through the daemon.

use std::process::ExitCode;

use super::Globals;

/// Arguments of `otgate request`.
#[derive(Debug, clap::Args)]
pub struct RequestArgs {}

/// Run `otgate request`.
pub fn request(_globals: &Globals, _args: RequestArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}

/// Arguments of `otgate approve`.
#[derive(Debug, clap::Args)]
pub struct ApproveArgs {}

/// Run `otgate approve`.
pub fn approve(_globals: &Globals, _args: ApproveArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}

/// Arguments of `otgate deny`.
#[derive(Debug, clap::Args)]
pub struct DenyArgs {}

/// Run `otgate deny`.
pub fn deny(_globals: &Globals, _args: DenyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}

/// Arguments of `otgate grants`.
#[derive(Debug, clap::Args)]
pub struct GrantsArgs {}

/// Run `otgate grants`.
pub fn grants(_globals: &Globals, _args: GrantsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}

/// Arguments of `otgate revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {}

/// Run `otgate revoke`.
pub fn revoke(_globals: &Globals, _args: RevokeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}

/// Arguments of `otgate review`.
#[derive(Debug, clap::Args)]
pub struct ReviewArgs {}

/// Run `otgate review`.
pub fn review(_globals: &Globals, _args: ReviewArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}
