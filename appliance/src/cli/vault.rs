//! `otgate vault`: OT device secrets (set, list names, remove); values are never shown.
//!
//! A value is read from stdin (without echo on a terminal), never from a flag, so it lands in
//! no shell history or process list. Each change is journaled by name before it is applied.

use std::process::ExitCode;

use serde_json::json;

use super::users::{admin_error, Console};
use super::{hint, Globals};
use crate::stores::ot::OtStore;

const AFTER_HELP: &str = "\
Examples:
  otgate vault set hmi-line1-vnc                 prompts for the value (not echoed)
  printf '%s\\n' \"$PW\" | otgate vault set plc-line3-eng --from-stdin
  otgate vault list --json                       names only
  otgate vault remove hmi-line1-vnc

Values are injected by the brokers into OT sessions and are never printed, exported or logged.";

/// The `otgate vault` subcommands.
#[derive(Debug, clap::Subcommand)]
#[command(after_help = AFTER_HELP)]
pub enum VaultCommand {
    /// Set (or replace) a device secret; the value is read from stdin.
    #[command(after_help = "Example:\n  otgate vault set hmi-line1-vnc --from-stdin < pw.txt")]
    Set(SetArgs),
    /// List the names of the device secrets (never their values).
    #[command(after_help = "Example:\n  otgate vault list --json")]
    List(ListArgs),
    /// Remove a device secret.
    #[command(after_help = "Example:\n  otgate vault remove hmi-line1-vnc")]
    Remove(RemoveArgs),
}

/// `otgate vault set`.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// The entry's name (e.g. `hmi-line1-vnc`).
    pub name: String,
    /// Read the value from the first line of stdin without prompting (for scripts).
    #[arg(long)]
    pub from_stdin: bool,
}

/// `otgate vault list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `otgate vault remove`.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The entry's name.
    pub name: String,
}

fn open(globals: &Globals) -> anyhow::Result<OtStore> {
    let root = globals.data_dir.root().display();
    OtStore::open(&globals.data_dir.ot_store_dir()).map_err(|e| {
        hint(
            e,
            format!("is {root} an appliance? (`otgate init --data-dir {root}`)"),
        )
    })
}

/// Run an `otgate vault` subcommand.
pub fn run(globals: &Globals, command: VaultCommand) -> anyhow::Result<ExitCode> {
    match command {
        VaultCommand::Set(args) => {
            crate::stores::validate_name(&args.name)?;
            let console = Console::open(&globals.data_dir)?;
            let prompt = if args.from_stdin {
                String::new()
            } else {
                format!("value for {}: ", args.name)
            };
            let value = super::users::read_secret_line(&prompt)?;
            let replaced = match &console {
                Console::Offline(admin) => {
                    admin.vault_set(&args.name, value).map_err(admin_error)?
                }
                Console::Daemon(socket) => {
                    let text = zeroize::Zeroizing::new(
                        value
                            .expose_str()
                            .ok_or_else(|| anyhow::anyhow!("the value is not UTF-8"))?
                            .to_owned(),
                    );
                    let answer = Console::call(
                        socket,
                        "vault.set",
                        json!({ "name": args.name, "value": *text }),
                    )?;
                    answer
                        .get("replaced")
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false)
                }
            };
            println!(
                "{} `{}` (value not shown)",
                if replaced { "replaced" } else { "stored" },
                args.name
            );
            Ok(ExitCode::SUCCESS)
        }
        VaultCommand::List(args) => {
            // Names only; reading needs no journal.
            let entries = open(globals)?.vault().list()?;
            if args.json {
                println!("{}", serde_json::to_string(&entries)?);
            } else if entries.is_empty() {
                println!("the vault is empty (`otgate vault set NAME` adds a device secret)");
            } else {
                println!("{:<32} UPDATED", "NAME");
                for e in entries {
                    println!("{:<32} {}", e.name, e.updated_at.to_rfc3339());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        VaultCommand::Remove(args) => {
            match Console::open(&globals.data_dir)? {
                Console::Offline(admin) => admin.vault_remove(&args.name).map_err(admin_error)?,
                Console::Daemon(socket) => {
                    Console::call(&socket, "vault.remove", json!({ "name": args.name }))?;
                }
            }
            println!("removed `{}`", args.name);
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::init::{self, InitArgs};
    use crate::datadir::DataDir;

    #[test]
    fn list_shows_names_only_and_removing_an_unknown_entry_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let g = Globals {
            data_dir: DataDir::new(dir.path().join("a")),
        };
        let args = InitArgs {
            trust: None,
            sans: vec![],
            it_listen: init::DEFAULT_IT_LISTEN.parse().unwrap(),
            force: false,
            json: true,
        };
        init::run(&g, args).unwrap();
        let vault = open(&g).unwrap().vault();
        vault
            .set(
                "hmi-line1-vnc",
                crate::stores::Secret::from("Vnc-Pa55word!"),
                chrono::Utc::now(),
            )
            .unwrap();
        run(&g, VaultCommand::List(ListArgs { json: true })).unwrap();
        run(
            &g,
            VaultCommand::Remove(RemoveArgs {
                name: "hmi-line1-vnc".into(),
            }),
        )
        .unwrap();
        assert!(vault.list().unwrap().is_empty());
        let err = run(
            &g,
            VaultCommand::Remove(RemoveArgs {
                name: "hmi-line1-vnc".into(),
            }),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("no vault entry `hmi-line1-vnc`"),
            "{err:#}"
        );
        let hinted = err
            .chain()
            .any(|c| c.downcast_ref::<crate::cli::Hinted>().is_some());
        assert!(hinted, "the error carries a hint");
    }
}
