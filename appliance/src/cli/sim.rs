//! `otgate sim`: simulators for the demo and the tests (a Modbus TCP PLC).
//!
//! `otgate sim plc` runs [`crate::sim::plc`] in the foreground until interrupted; its first line
//! on stdout is `listening on ADDR`, so scripts can use `--listen 127.0.0.1:0`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::Globals;
use crate::sim::plc::{self, PlcConfig};

/// The `otgate sim` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// Run a simulated Modbus TCP PLC (coils, discrete inputs, holding and input registers).
    #[command(after_help = PLC_AFTER_HELP)]
    Plc(PlcArgs),
    /// Write a large, valid capture of Modbus and DNP3 traffic (benchmarks, tests).
    Traffic(super::inspect::TrafficArgs),
}

const PLC_AFTER_HELP: &str = "\
Prints `listening on ADDR` first, then serves until interrupted (Ctrl-C or SIGTERM).
Out-of-range addresses get exception 02, bad quantities 03, other unit ids 0B.

Example:
  otgate sim plc --listen 127.0.0.1:5502 --unit 1 --holding 1000 --persist plc.json
  otgate sim plc --listen 127.0.0.1:0 --capture served.pcap";

/// Arguments of `otgate sim plc`.
#[derive(Debug, clap::Args)]
pub struct PlcArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:5502", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The Modbus unit id the PLC answers (it also answers 255).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub unit: u8,
    /// Number of coils.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub coils: usize,
    /// Number of discrete inputs.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub discrete_inputs: usize,
    /// Number of holding registers.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub holding: usize,
    /// Number of input registers.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub input_registers: usize,
    /// Keep the tables in this JSON file across restarts (written after each write).
    #[arg(long, value_name = "FILE")]
    pub persist: Option<PathBuf>,
    /// Write the TCP conversations served to this pcap file.
    #[arg(long, value_name = "FILE.pcap")]
    pub capture: Option<PathBuf>,
    /// Replace an existing --capture file.
    #[arg(long)]
    pub force: bool,
}

/// Run an `otgate sim` subcommand.
pub fn run(globals: &Globals, command: SimCommand) -> anyhow::Result<ExitCode> {
    match command {
        SimCommand::Plc(args) => run_plc(args),
        SimCommand::Traffic(a) => super::inspect::sim_traffic(globals, a),
    }
}

fn run_plc(args: PlcArgs) -> anyhow::Result<ExitCode> {
    let config = PlcConfig {
        unit: args.unit,
        coils: args.coils,
        discrete_inputs: args.discrete_inputs,
        holding_registers: args.holding,
        input_registers: args.input_registers,
        persist: args.persist,
        capture: args.capture.clone(),
    };
    if let Some(path) = &args.capture {
        if path.exists() && !args.force {
            return Err(super::hint(
                anyhow::anyhow!("--capture {} exists already", path.display()),
                "pass --force to replace it, or pick another file",
            ));
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let handle = plc::spawn(args.listen, config).await.map_err(|e| {
            super::hint(
                e,
                "pick another address with --listen, or port 0 for a free one",
            )
        })?;
        println!("listening on {}", handle.local_addr());
        wait_for_stop().await;
        handle.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Wait for Ctrl-C or SIGTERM.
async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
