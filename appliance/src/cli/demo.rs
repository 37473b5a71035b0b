//! `otgate demo`: a simulated plant and the appliance playing the brief's situations, narrated.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Globals;
use crate::demo::{DemoOptions, Pace};

const AFTER_HELP: &str = "\
Runs entirely on this machine: loopback addresses, free ports, a temporary data directory
(or --keep DIR). Needs no root and nothing beyond the build. --data-dir is ignored.

Examples:
  otgate demo
  otgate demo --pace real --keep /tmp/otgate-demo";

/// Arguments of `otgate demo`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct DemoArgs {
    /// Windows shortened to seconds, no pauses (the default).
    #[arg(long, conflicts_with = "pace")]
    pub fast: bool,
    /// How fast to play: `fast` (seconds) or `real` (pauses and one-minute windows).
    #[arg(long, value_enum, default_value = "fast")]
    pub pace: Pace,
    /// Keep the appliance's data, the HQ keys and captures in DIR to explore afterwards.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

/// Run `otgate demo`.
pub fn run(_globals: &Globals, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let pace = if args.fast { Pace::Fast } else { args.pace };
    crate::demo::main(DemoOptions {
        pace,
        keep: args.keep,
    })
}
