//! The `otgate` command line: one binary, one subcommand per job.
//!
//! Conventions (operators and scripts rely on them): every command that touches an appliance's
//! state takes `--data-dir DIR` (env `OTGATE_DATA_DIR`, default `/var/lib/otgate`); listing
//! commands take `--json`; streams are JSON lines; instants are RFC 3339 and durations read like
//! `4h` or `30m`. Exit status: 0 done, 1 refused or invalid input (stderr says what and where),
//! 2 wrong usage. Errors print once as `otgate: <error>: <causes>`, followed by a `hint:` line
//! when there is an obvious next step.
//!
//! Each subcommand lives in its own file with its arguments and its `run`; this file only
//! dispatches, so the concerns do not share one growing file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod access;
pub mod audit;
pub mod authority;
pub mod bundle;
pub mod connect;
pub mod demo;
pub mod init;
pub mod inspect;
pub mod policy;
pub mod review;
pub mod serve;
pub mod sessions;
pub mod sim;
pub mod state;
pub mod users;
pub mod vault;

const AFTER_HELP: &str = "\
Exit status: 0 done, 1 refused or invalid input (the message says what and where), 2 wrong usage.

Example:
  otgate demo                      play the brief's situations on a simulated plant
  otgate policy check policies/examples/plant.toml";

/// otgate: time-windowed, approved, per-operation access from IT to OT, recorded and revocable.
#[derive(Debug, Parser)]
#[command(name = "otgate", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// The appliance's data directory.
    #[arg(long, global = true, env = "OTGATE_DATA_DIR", default_value = crate::datadir::DEFAULT_DATA_DIR, value_name = "DIR")]
    pub data_dir: PathBuf,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create everything an appliance needs in its data directory (keys, stores, journal, state).
    Init(init::InitArgs),
    /// Run the appliance daemon (control socket, IT-side TLS listener, brokers, expiry).
    Serve(serve::ServeArgs),
    /// Check, explain, import, pull and show policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// HQ side: authority keys, signing, verifying and serving policy bundles.
    #[command(subcommand)]
    Authority(authority::AuthorityCommand),
    /// Verify, show and export the audit journal.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Inspect or rebuild the appliance's materialized state.
    #[command(subcommand)]
    State(state::StateCommand),
    /// Ask for a time-windowed grant on an OT target.
    Request(access::RequestArgs),
    /// Approve a pending request (OT approvers, at the appliance).
    Approve(access::ApproveArgs),
    /// Deny a pending request (OT approvers, at the appliance).
    Deny(access::DenyArgs),
    /// List requests and grants: pending, active, ended.
    Grants(access::GrantsArgs),
    /// Revoke an active grant; its sessions close within a second.
    Revoke(access::RevokeArgs),
    /// Review emergency grants and sign them off.
    Review(access::ReviewArgs),
    /// Manage local accounts and TOTP enrolment in the IT and OT stores.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Manage OT device secrets (injected by brokers, never shown).
    #[command(subcommand)]
    Vault(vault::VaultCommand),
    /// Open a local Modbus TCP port tunnelled over TLS to the appliance for a grant.
    Connect(connect::ConnectArgs),
    /// List broker sessions, live and past, or kill one.
    Sessions(sessions::SessionsArgs),
    /// Print a session's transcript.
    Replay(sessions::ReplayArgs),
    /// Simulators: a Modbus TCP PLC, and a traffic generator.
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// Passively inspect OT traffic from a capture file or an interface.
    Inspect(inspect::InspectArgs),
    /// Show the asset inventory learned by passive inspection.
    Inventory(inspect::InventoryArgs),
    /// Play the brief's situations on a simulated plant, narrated.
    Demo(demo::DemoArgs),
}

/// What every subcommand receives besides its own arguments.
#[derive(Debug, Clone)]
pub struct Globals {
    /// The appliance's data directory.
    pub data_dir: crate::datadir::DataDir,
}

/// An error with a suggested next step, printed as a `hint:` line after the error.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Hinted {
    /// What went wrong.
    pub error: anyhow::Error,
    /// The next thing to try.
    pub hint: String,
}

/// Attach a hint to an error.
pub fn hint(error: impl Into<anyhow::Error>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        error: error.into(),
        hint: hint.into(),
    })
}

/// Run the command line: parse, set up tracing, dispatch, print one error, return the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    init_tracing();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            report(&error);
            ExitCode::from(1)
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("OTGATE_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Print `otgate: error: cause: cause` and, if any, `hint: ...`.
pub fn report(error: &anyhow::Error) {
    let mut message = String::new();
    let mut hint_line = None;
    for (i, cause) in error.chain().enumerate() {
        if let Some(h) = cause.downcast_ref::<Hinted>() {
            hint_line.get_or_insert_with(|| h.hint.clone());
            if i == 0 {
                message.push_str(&format!("{:#}", h.error));
                break;
            }
            continue;
        }
        if i > 0 {
            message.push_str(": ");
        }
        message.push_str(&cause.to_string());
    }
    eprintln!("otgate: {message}");
    if let Some(h) = hint_line {
        eprintln!("hint: {h}");
    }
}

/// Dispatch a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let globals = Globals {
        data_dir: crate::datadir::DataDir::new(cli.data_dir),
    };
    match cli.command {
        Command::Init(a) => init::run(&globals, a),
        Command::Serve(a) => serve::run(&globals, a),
        Command::Policy(c) => policy::run(&globals, c),
        Command::Authority(c) => authority::run(&globals, c),
        Command::Audit(c) => audit::run(&globals, c),
        Command::State(c) => state::run(&globals, c),
        Command::Request(a) => access::request(&globals, a),
        Command::Approve(a) => access::approve(&globals, a),
        Command::Deny(a) => access::deny(&globals, a),
        Command::Grants(a) => access::grants(&globals, a),
        Command::Revoke(a) => access::revoke(&globals, a),
        Command::Review(a) => access::review(&globals, a),
        Command::Users(c) => users::run(&globals, c),
        Command::Vault(c) => vault::run(&globals, c),
        Command::Connect(a) => connect::run(&globals, a),
        Command::Sessions(a) => sessions::sessions(&globals, a),
        Command::Replay(a) => sessions::replay(&globals, a),
        Command::Sim(c) => sim::run(&globals, c),
        Command::Inspect(a) => inspect::inspect(&globals, a),
        Command::Inventory(a) => inspect::inventory(&globals, a),
        Command::Demo(a) => demo::run(&globals, a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
