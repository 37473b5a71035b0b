//! `otgate sim`: simulators (a Modbus TCP PLC in `sim_plc` terms, a traffic generator).

use std::process::ExitCode;

use super::Globals;

/// The `otgate sim` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// Write a large, valid capture of Modbus and DNP3 traffic (benchmarks, tests).
    Traffic(super::inspect::TrafficArgs),
}

/// Run an `otgate sim` subcommand.
pub fn run(globals: &Globals, command: SimCommand) -> anyhow::Result<ExitCode> {
    match command {
        SimCommand::Traffic(a) => super::inspect::sim_traffic(globals, a),
    }
}
