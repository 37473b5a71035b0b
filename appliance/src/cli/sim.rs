//! `otgate sim`: simulators (a Modbus TCP PLC in `sim_plc` terms, a traffic generator).

use std::process::ExitCode;

use super::Globals;

/// The `otgate sim` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {}

/// Run an `otgate sim` subcommand.
pub fn run(_globals: &Globals, command: SimCommand) -> anyhow::Result<ExitCode> {
    match command {}
}
