//! `otgate users`: local accounts and TOTP enrolment in the IT and OT stores, and key pairs and
//! client profiles for IT people.
//!
//! Changes are journaled (`AdminEvent`, names only) before they are applied to a store. Secrets
//! come from stdin only (`--password-stdin`), never from a flag; a TOTP secret is shown once, at
//! enrolment. While `otgate serve` runs it holds the journal, so changes go through its control
//! socket (`users.*` methods), which does exactly the same through [`crate::stores::admin`].

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::{hint, Globals};
use crate::datadir::DataDir;
use crate::stores::admin::{Accounts, Admin, AdminError};
use crate::stores::it::ItStore;
use crate::stores::ot::OtStore;
use crate::stores::{Secret, StoreError, Zone};
use crate::tunnel::profile::{self, ClientProfile};
use crate::tunnel::tls;

const USERS_AFTER_HELP: &str = "\
Examples:
  otgate users keygen --out alice.key                    an IT person's key pair (prints the public key)
  otgate users add-ot sam --role shift-supervisor --password-stdin < sam.pw
  otgate users enroll-totp sam --zone ot                 prints the otpauth URL and secret once
  otgate users enroll-totp alice --zone it
  otgate users list --json";

/// The `otgate users` subcommands.
#[derive(Debug, clap::Subcommand)]
#[command(after_help = USERS_AFTER_HELP)]
pub enum UsersCommand {
    /// Make an ed25519 key pair for an IT person; prints the public key for the policy.
    #[command(
        after_help = "Example:\n  otgate users keygen --out ~/.otgate/alice.key\n\nThe private key file is written with mode 0600; never overwritten without --force."
    )]
    Keygen(KeygenArgs),
    /// Add an OT account (approver, operator) to the OT store.
    #[command(
        name = "add-ot",
        after_help = "Example:\n  printf '%s\\n' \"$PW\" | otgate users add-ot sam --role shift-supervisor --password-stdin\n  otgate users enroll-totp sam --zone ot"
    )]
    AddOt(AddOtArgs),
    /// Enrol (or re-enrol) a TOTP authenticator; prints its secret and otpauth URL once.
    #[command(
        name = "enroll-totp",
        after_help = "Example:\n  otgate users enroll-totp alice --zone it\n  otgate users enroll-totp sam --zone ot --json"
    )]
    EnrollTotp(EnrollTotpArgs),
    /// Set an account's local password (read from stdin).
    #[command(
        name = "set-password",
        after_help = "Example:\n  otgate users set-password sam --zone ot < sam.pw"
    )]
    SetPassword(SetPasswordArgs),
    /// List local accounts of both stores (no secrets).
    #[command(after_help = "Example:\n  otgate users list --zone ot --json")]
    List(ListArgs),
    /// Remove an account's local credentials from a store.
    #[command(after_help = "Example:\n  otgate users remove sue --zone ot")]
    Remove(RemoveArgs),
    /// Write a client profile for an IT person (appliance address, this appliance's pin, key).
    #[command(
        after_help = "Example:\n  otgate users profile --out alice.toml --appliance gw.plant-a.example:8443 --as alice --key alice.key"
    )]
    Profile(ProfileArgs),
}

/// `otgate users keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the private key.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `otgate users add-ot`.
#[derive(Debug, clap::Args)]
pub struct AddOtArgs {
    /// The account id (as the policy's OT identities name it).
    pub id: String,
    /// A role (repeat for several).
    #[arg(long = "role", value_name = "ROLE", required = true)]
    pub roles: Vec<String>,
    /// Read the account's password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `otgate users enroll-totp`.
#[derive(Debug, clap::Args)]
pub struct EnrollTotpArgs {
    /// The identity (IT: its policy id; OT: its account id).
    pub id: String,
    /// Which store.
    #[arg(long, value_name = "it|ot")]
    pub zone: Zone,
    /// Print the result as JSON (for scripts; the secret is in it).
    #[arg(long)]
    pub json: bool,
}

/// `otgate users set-password`.
#[derive(Debug, clap::Args)]
pub struct SetPasswordArgs {
    /// The identity.
    pub id: String,
    /// Which store.
    #[arg(long, value_name = "it|ot")]
    pub zone: Zone,
}

/// `otgate users list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this store.
    #[arg(long, value_name = "it|ot")]
    pub zone: Option<Zone>,
    /// Print JSON lines... as one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// `otgate users remove`.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The identity.
    pub id: String,
    /// Which store.
    #[arg(long, value_name = "it|ot")]
    pub zone: Zone,
}

/// `otgate users profile`.
#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// Where to write the profile.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The appliance's IT-side address as the IT person reaches it.
    #[arg(long, value_name = "HOST:PORT")]
    pub appliance: String,
    /// The identity id.
    #[arg(long = "as", value_name = "ID")]
    pub identity: String,
    /// The private key file, as a path on the IT person's machine.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

/// Run an `otgate users` subcommand.
pub fn run(globals: &Globals, command: UsersCommand) -> anyhow::Result<ExitCode> {
    match command {
        UsersCommand::Keygen(a) => keygen(a),
        UsersCommand::AddOt(a) => add_ot(&globals.data_dir, a),
        UsersCommand::EnrollTotp(a) => enroll_totp(&globals.data_dir, a),
        UsersCommand::SetPassword(a) => set_password(&globals.data_dir, a),
        UsersCommand::List(a) => list(&globals.data_dir, a),
        UsersCommand::Remove(a) => remove(&globals.data_dir, a),
        UsersCommand::Profile(a) => write_profile(&globals.data_dir, a),
    }
}

fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let key = profile::generate_key();
    profile::write_key_file(&args.out, &key, args.force)
        .map_err(|e| hint(e, "choose another --out path, or add --force to replace the key (the old one stops working)"))?;
    let public = profile::format_public_key(&key.verifying_key());
    if args.json {
        println!("{}", json!({ "key_file": args.out, "public_key": public }));
    } else {
        println!(
            "private key written to {} (mode 0600; keep it on this machine)",
            args.out.display()
        );
        println!("public key (for the policy): {public}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Read one line from stdin as a secret; on a terminal, without echo.
pub(crate) fn read_secret_line(prompt: &str) -> anyhow::Result<Secret> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!("{prompt}");
        let _ = std::process::Command::new("stty")
            .arg("-echo")
            .stdin(std::process::Stdio::inherit())
            .status();
    }
    let mut line = String::new();
    let read = if terminal {
        stdin.read_line(&mut line).map(|_| ())
    } else {
        // A pipe: take the first line only, bounded.
        let mut bytes = Vec::new();
        stdin
            .lock()
            .take(64 * 1024)
            .read_to_end(&mut bytes)
            .map(|_| {
                let text = String::from_utf8_lossy(&bytes);
                line = text.lines().next().unwrap_or_default().to_owned();
            })
    };
    if terminal {
        let _ = std::process::Command::new("stty")
            .arg("echo")
            .stdin(std::process::Stdio::inherit())
            .status();
        eprintln!();
    }
    read.context("reading stdin")?;
    let secret = Secret::from_line(line);
    if secret.is_empty() {
        anyhow::bail!("nothing on stdin");
    }
    Ok(secret)
}

fn open_it(data_dir: &DataDir) -> anyhow::Result<ItStore> {
    ItStore::open(&data_dir.it_store_dir()).map_err(|e| not_an_appliance(e, data_dir))
}

fn open_ot(data_dir: &DataDir) -> anyhow::Result<OtStore> {
    OtStore::open(&data_dir.ot_store_dir()).map_err(|e| not_an_appliance(e, data_dir))
}

fn not_an_appliance(e: impl Into<anyhow::Error>, data_dir: &DataDir) -> anyhow::Error {
    let root = data_dir.root().display();
    hint(
        e,
        format!("is {root} an appliance? (`otgate init --data-dir {root}`)"),
    )
}

/// Refuse an id the active policy does not name in `zone` (IT identities and OT identities are
/// the policy's; the stores only add credentials). Without an active policy, say so and go on.
fn check_against_policy(data_dir: &DataDir, id: &str, zone: Zone) -> anyhow::Result<()> {
    let active = match crate::bundles::load_active(data_dir) {
        Ok(Some(active)) => active,
        Ok(None) => {
            eprintln!("note: no active policy yet, so `{id}` is not checked against it");
            return Ok(());
        }
        Err(e) => {
            eprintln!("note: the active policy could not be read ({e}), so `{id}` is not checked against it");
            return Ok(());
        }
    };
    let named = match zone {
        Zone::It => active.policy.it_identity(id).is_some(),
        Zone::Ot => active.policy.ot_identity(id).is_some(),
    };
    if named {
        return Ok(());
    }
    Err(hint(
        anyhow::anyhow!("the active policy (version {}) names no {zone} identity `{id}`", active.version),
        format!("`otgate policy status` shows the active policy; {zone} identities are added by HQ in a new bundle"),
    ))
}

/// Where console changes go: straight to the stores and the journal when no daemon runs, or
/// through the running daemon's control socket (which holds the journal).
pub(crate) enum Console {
    /// No daemon: this process journals and applies.
    Offline(Box<Admin>),
    /// A daemon answers on this control socket.
    Daemon(PathBuf),
}

impl Console {
    /// Pick the path for `data_dir`.
    pub(crate) fn open(data_dir: &DataDir) -> anyhow::Result<Self> {
        let socket = data_dir.control_socket();
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Ok(Console::Daemon(socket));
        }
        let key = crate::journal::keys::load_appliance_key(&data_dir.appliance_key())
            .map_err(|e| not_an_appliance(e, data_dir))?;
        let journal = match crate::journal::Journal::open(
            &data_dir.journal_dir(),
            key,
            crate::journal::JournalConfig::default(),
        ) {
            Ok(journal) => journal,
            Err(e @ crate::journal::JournalError::Locked { .. }) => {
                return Err(hint(e, "another otgate holds the journal; if `otgate serve` is starting, retry in a moment"));
            }
            Err(e) => return Err(e.into()),
        };
        let admin =
            Admin::open(data_dir, journal, "console").map_err(|e| not_an_appliance(e, data_dir))?;
        Ok(Console::Offline(Box::new(admin)))
    }

    /// Call the daemon's `method`; its refusal becomes an error with the daemon's hint.
    pub(crate) fn call(
        socket: &std::path::Path,
        method: &str,
        params: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        crate::control::client::call(socket, method, params).map_err(|e| match e {
            crate::control::client::ClientError::Refused(refusal) => match refusal.hint.clone() {
                Some(h) => hint(anyhow::anyhow!(refusal.message), h),
                None => anyhow::anyhow!(refusal.message),
            },
            other => other.into(),
        })
    }
}

/// A store refusal with the next step to take.
pub(crate) fn admin_error(e: AdminError) -> anyhow::Error {
    let next = match &e {
        AdminError::Store(StoreError::AccountExists { zone, id }) => {
            Some(format!("`otgate users remove {id} --zone {zone}` first, or `otgate users set-password {id} --zone {zone}`"))
        }
        AdminError::Store(StoreError::UnknownAccount { zone: Zone::Ot, id }) => {
            Some(format!("add it first: `otgate users add-ot {id} --role ROLE`"))
        }
        AdminError::Store(StoreError::UnknownAccount { zone, .. }) => {
            Some(format!("`otgate users list --zone {zone}` shows the accounts"))
        }
        AdminError::Store(StoreError::UnknownSecret { .. }) => Some("`otgate vault list` shows the names".to_owned()),
        AdminError::Store(StoreError::Tampered { .. }) => {
            Some("restore the file from a backup; the store refuses to use it as it is".to_owned())
        }
        _ => None,
    };
    match next {
        Some(next) => hint(e, next),
        None => e.into(),
    }
}

fn add_ot(data_dir: &DataDir, args: AddOtArgs) -> anyhow::Result<ExitCode> {
    crate::stores::validate_name(&args.id)?;
    check_against_policy(data_dir, &args.id, Zone::Ot)?;
    for role in &args.roles {
        crate::stores::validate_name(role).with_context(|| format!("--role {role}"))?;
    }
    let console = Console::open(data_dir)?;
    let password = if args.password_stdin {
        Some(read_secret_line("password: ")?)
    } else {
        None
    };
    match &console {
        Console::Offline(admin) => admin
            .add_ot(&args.id, &args.roles, password.as_ref())
            .map_err(admin_error)?,
        Console::Daemon(socket) => {
            let password = password.as_ref().and_then(|p| p.expose_str());
            let params = json!({ "id": args.id, "roles": args.roles, "password": password });
            Console::call(socket, "users.add_ot", params)?;
        }
    }
    println!("added OT account {} ({})", args.id, args.roles.join(", "));
    if password.is_none() {
        println!("next: `otgate users enroll-totp {} --zone ot` (an account needs a password or TOTP to log in)", args.id);
    }
    Ok(ExitCode::SUCCESS)
}

fn enroll_totp(data_dir: &DataDir, args: EnrollTotpArgs) -> anyhow::Result<ExitCode> {
    crate::stores::validate_name(&args.id)?;
    check_against_policy(data_dir, &args.id, args.zone)?;
    let (secret, url) = match Console::open(data_dir)? {
        Console::Offline(admin) => {
            let shown = admin
                .enroll_totp(&args.id, args.zone)
                .map_err(admin_error)?;
            (
                zeroize::Zeroizing::new(
                    shown
                        .secret_base32
                        .expose_str()
                        .unwrap_or_default()
                        .to_owned(),
                ),
                zeroize::Zeroizing::new(shown.url.expose_str().unwrap_or_default().to_owned()),
            )
        }
        Console::Daemon(socket) => {
            let shown = Console::call(
                &socket,
                "users.enroll_totp",
                json!({ "id": args.id, "zone": args.zone }),
            )?;
            let field = |name: &str| {
                zeroize::Zeroizing::new(
                    shown
                        .get(name)
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                )
            };
            (field("secret"), field("otpauth_url"))
        }
    };
    if args.json {
        println!(
            "{}",
            json!({ "identity": args.id, "zone": args.zone, "secret": *secret, "otpauth_url": *url })
        );
    } else {
        println!(
            "TOTP enrolled for {} ({} store). Shown once; add it to the authenticator now:",
            args.id, args.zone
        );
        println!("  secret: {}", *secret);
        println!("  url:    {}", *url);
    }
    Ok(ExitCode::SUCCESS)
}

fn set_password(data_dir: &DataDir, args: SetPasswordArgs) -> anyhow::Result<ExitCode> {
    crate::stores::validate_name(&args.id)?;
    let console = Console::open(data_dir)?;
    let password = read_secret_line("new password: ")?;
    match &console {
        Console::Offline(admin) => admin
            .set_password(&args.id, args.zone, &password)
            .map_err(admin_error)?,
        Console::Daemon(socket) => {
            let text =
                zeroize::Zeroizing::new(password.expose_str().unwrap_or_default().to_owned());
            Console::call(
                socket,
                "users.set_password",
                json!({ "id": args.id, "zone": args.zone, "password": *text }),
            )?;
        }
    }
    println!("password set for {} ({} store)", args.id, args.zone);
    Ok(ExitCode::SUCCESS)
}

fn list(data_dir: &DataDir, args: ListArgs) -> anyhow::Result<ExitCode> {
    // Reading needs no journal: the stores are safe to read while a daemon runs.
    let accounts = Accounts {
        it: if args.zone != Some(Zone::Ot) {
            Some(open_it(data_dir)?.list()?)
        } else {
            None
        },
        ot: if args.zone != Some(Zone::It) {
            Some(open_ot(data_dir)?.list_users()?)
        } else {
            None
        },
    };
    if args.json {
        println!("{}", serde_json::to_string(&accounts)?);
        return Ok(ExitCode::SUCCESS);
    }
    let yes = |b: bool| if b { "yes" } else { "-" };
    if let Some(it) = accounts.it {
        println!(
            "IT store ({} with local credentials; keys and roles come from the policy)",
            it.len()
        );
        println!("  {:<24} {:<5} {:<9} FAILURES", "ID", "TOTP", "PASSWORD");
        for a in it {
            println!(
                "  {:<24} {:<5} {:<9} {}",
                a.id,
                yes(a.totp),
                yes(a.password),
                a.failures
            );
        }
    }
    if let Some(ot) = accounts.ot {
        println!("OT store ({} accounts)", ot.len());
        println!(
            "  {:<24} {:<28} {:<5} {:<9} FAILURES",
            "ID", "ROLES", "TOTP", "PASSWORD"
        );
        for a in ot {
            println!(
                "  {:<24} {:<28} {:<5} {:<9} {}",
                a.id,
                a.roles.join(","),
                yes(a.totp),
                yes(a.password),
                a.failures
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn remove(data_dir: &DataDir, args: RemoveArgs) -> anyhow::Result<ExitCode> {
    match Console::open(data_dir)? {
        Console::Offline(admin) => admin.remove(&args.id, args.zone).map_err(admin_error)?,
        Console::Daemon(socket) => {
            Console::call(
                &socket,
                "users.remove",
                json!({ "id": args.id, "zone": args.zone }),
            )?;
        }
    }
    println!("removed {} from the {} store", args.id, args.zone);
    Ok(ExitCode::SUCCESS)
}

fn write_profile(data_dir: &DataDir, args: ProfileArgs) -> anyhow::Result<ExitCode> {
    let pin = tls::Pin::from_cert_file(&tls::cert_path(data_dir)).map_err(|e| {
        hint(
            e,
            "run this on the appliance (it reads the appliance certificate from --data-dir)",
        )
    })?;
    let profile = ClientProfile {
        appliance: args.appliance,
        pin: pin.to_string(),
        identity: args.identity,
        key: args.key,
    };
    profile
        .save(&args.out, args.force)
        .map_err(|e| hint(e, "choose another --out path, or add --force"))?;
    println!(
        "client profile written to {} (pin {pin})",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::init::{self, InitArgs};

    fn appliance() -> (tempfile::TempDir, Globals) {
        let dir = tempfile::tempdir().unwrap();
        let globals = Globals {
            data_dir: DataDir::new(dir.path().join("a")),
        };
        let args = InitArgs {
            trust: None,
            sans: vec![],
            it_listen: init::DEFAULT_IT_LISTEN.parse().unwrap(),
            force: false,
            json: true,
        };
        init::run(&globals, args).unwrap();
        (dir, globals)
    }

    #[test]
    fn enrolment_list_and_remove_go_through_the_stores_and_the_journal() {
        let (_dir, g) = appliance();
        let enroll = |id: &str, zone| {
            UsersCommand::EnrollTotp(EnrollTotpArgs {
                id: id.into(),
                zone,
                json: true,
            })
        };
        run(&g, enroll("alice", Zone::It)).unwrap();
        let err = run(&g, enroll("sam", Zone::Ot)).unwrap_err();
        assert!(
            format!("{err:#}").contains("no ot account `sam`"),
            "{err:#}"
        );
        open_ot(&g.data_dir)
            .unwrap()
            .add_user(
                "sam",
                &["shift-supervisor".into()],
                None,
                chrono::Utc::now(),
            )
            .unwrap();
        run(&g, enroll("sam", Zone::Ot)).unwrap();
        run(
            &g,
            UsersCommand::List(ListArgs {
                zone: None,
                json: true,
            }),
        )
        .unwrap();
        assert!(open_ot(&g.data_dir).unwrap().list_users().unwrap()[0].totp);

        run(
            &g,
            UsersCommand::Remove(RemoveArgs {
                id: "alice".into(),
                zone: Zone::It,
            }),
        )
        .unwrap();
        let err = run(
            &g,
            UsersCommand::Remove(RemoveArgs {
                id: "alice".into(),
                zone: Zone::It,
            }),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("no it account `alice`"),
            "{err:#}"
        );

        let kinds: Vec<&'static str> =
            crate::journal::read::JournalReader::open(&g.data_dir.journal_dir())
                .unwrap()
                .map(|r| r.unwrap().event)
                .filter_map(|e| match e {
                    crate::journal::event::Event::Admin(a) => {
                        Some(crate::journal::event::Subjects::kind(&a))
                    }
                    _ => None,
                })
                .collect();
        assert_eq!(
            kinds,
            [
                "appliance_initialized",
                "totp_enrolled",
                "totp_enrolled",
                "account_removed"
            ]
        );
    }

    #[test]
    fn while_the_daemon_holds_the_journal_nothing_changes_unrecorded() {
        let (_dir, g) = appliance();
        let key = crate::journal::keys::load_appliance_key(&g.data_dir.appliance_key()).unwrap();
        let held = crate::journal::Journal::open(
            &g.data_dir.journal_dir(),
            key,
            crate::journal::JournalConfig::default(),
        )
        .unwrap();
        let err = run(
            &g,
            UsersCommand::EnrollTotp(EnrollTotpArgs {
                id: "alice".into(),
                zone: Zone::It,
                json: true,
            }),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("locked"), "{err:#}");
        assert!(
            open_it(&g.data_dir).unwrap().list().unwrap().is_empty(),
            "the store is unchanged"
        );
        drop(held);
    }

    #[test]
    fn keygen_never_overwrites_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("k");
        keygen(KeygenArgs {
            out: out.clone(),
            force: false,
            json: true,
        })
        .unwrap();
        let first = std::fs::read(&out).unwrap();
        assert!(keygen(KeygenArgs {
            out: out.clone(),
            force: false,
            json: true
        })
        .is_err());
        assert_eq!(std::fs::read(&out).unwrap(), first);
        keygen(KeygenArgs {
            out: out.clone(),
            force: true,
            json: true,
        })
        .unwrap();
        assert_ne!(std::fs::read(&out).unwrap(), first);
    }
}
