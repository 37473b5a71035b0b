//! `otgate init`: create everything an appliance needs in its data directory: the appliance's
//! journal-signing key, the IT-side TLS certificate (rcgen), the IT and OT stores with their own
//! keys, the journal (with `appliance_initialized` as its first decision), `appliance.toml` with
//! documented defaults, and, with `--trust`, the HQ trust root.
//!
//! Everything is built in a staging directory inside the data dir and moved into place only
//! when every step has succeeded, so a failed init leaves nothing half-made. An existing
//! appliance is never overwritten without `--force`; with it, the old files are moved aside into
//! `replaced-<time>/` (the old journal is evidence and is not deleted). Init refuses while a
//! daemon answers on the control socket.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{hint, Globals};
use crate::datadir::DataDir;
use crate::journal::event::{AdminEvent, Event};
use crate::stores::it::ItStore;
use crate::stores::ot::OtStore;
use crate::tunnel::tls;

const AFTER_HELP: &str = "\
Examples:
  otgate init --data-dir /var/lib/otgate --san gw.plant-a.example --san 10.20.0.5 --trust root.json
  otgate init --data-dir ./appliance --it-listen 127.0.0.1:8443

Prints the TLS certificate's SHA-256 fingerprint: IT clients pin it (`--pin sha256:...`).";

/// The default IT-side listen address (see `appliance.toml`).
pub const DEFAULT_IT_LISTEN: &str = "0.0.0.0:8443";

/// Arguments of `otgate init`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct InitArgs {
    /// Install this HQ trust root (JSON) so signed policy bundles can be imported.
    #[arg(long, value_name = "ROOT.json")]
    pub trust: Option<PathBuf>,
    /// An extra name or address for the TLS certificate (repeatable; localhost and 127.0.0.1
    /// are always included).
    #[arg(long = "san", value_name = "NAME")]
    pub sans: Vec<String>,
    /// The IT-side TLS listen address written to appliance.toml.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_IT_LISTEN)]
    pub it_listen: SocketAddr,
    /// Replace an existing appliance (its files are moved aside into `replaced-<time>/`).
    #[arg(long)]
    pub force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The appliance configuration file (`appliance.toml`), as `otgate init` writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplianceConfig {
    /// The IT side.
    pub it: ItSideConfig,
    /// The journal.
    pub journal: JournalSettings,
}

/// `[it]` in `appliance.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItSideConfig {
    /// The TLS listener for tunnel clients.
    pub listen: SocketAddr,
    /// Connections (handshakes and sessions) served at once.
    pub max_connections: usize,
    /// Names in the TLS certificate (informational: clients pin the certificate itself).
    pub tls_names: Vec<String>,
}

/// `[journal]` in `appliance.toml`, under the names the journal reads (`journal::config`, which
/// also accepts `segment_size`, `checkpoint_every_records` and `checkpoint_every`, and is the one
/// that refuses unknown keys there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalSettings {
    /// The most the journal may use on disk, in bytes.
    #[serde(rename = "budget")]
    pub budget_bytes: u64,
    /// The part of the budget kept for denials and break-glass, in bytes.
    #[serde(rename = "reserve")]
    pub reserve_bytes: u64,
}

impl ApplianceConfig {
    /// The defaults, with the listen address and certificate names given.
    pub fn defaults(listen: SocketAddr, tls_names: Vec<String>) -> Self {
        Self {
            it: ItSideConfig {
                listen,
                max_connections: 256,
                tls_names,
            },
            journal: JournalSettings {
                budget_bytes: 4 << 30,
                reserve_bytes: 64 << 20,
            },
        }
    }

    /// Read `appliance.toml` from a data dir.
    pub fn load(data_dir: &DataDir) -> anyhow::Result<Self> {
        let path = data_dir.config_file();
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}", path.display()))
    }

    fn render(&self) -> anyhow::Result<String> {
        let body = toml::to_string(self)?;
        Ok(format!(
            "# otgate appliance configuration, written by `otgate init`.\n\
             #\n\
             # [it].listen: the IT-side TLS listener that tunnel clients connect to. The default\n\
             # 0.0.0.0:8443 listens on every interface, because init cannot know which one faces IT;\n\
             # on a gateway set the IT interface's address (the image's firewall also admits 8443\n\
             # only from the IT side). Every connection must complete TLS 1.3 and the challenge\n\
             # handshake before anything else happens.\n\
             # [it].max_connections: handshakes and sessions served at once; more wait.\n\
             # [journal]: disk budget; near it, normal events are refused (fail closed) while\n\
             # denials and break-glass keep writing into the reserve.\n\n{body}"
        ))
    }
}

/// Run `otgate init`.
pub fn run(globals: &Globals, args: InitArgs) -> anyhow::Result<ExitCode> {
    let data = &globals.data_dir;
    let root = data.root();
    if std::os::unix::net::UnixStream::connect(data.control_socket()).is_ok() {
        return Err(hint(
            anyhow::anyhow!("an appliance daemon is running on {}", root.display()),
            "stop `otgate serve` first; init never touches a running appliance",
        ));
    }
    let existing: Vec<PathBuf> = [
        data.appliance_key(),
        data.config_file(),
        data.it_store_dir(),
        data.ot_store_dir(),
        data.journal_dir(),
    ]
    .into_iter()
    .filter(|p| p.exists())
    .collect();
    if !existing.is_empty() && !args.force {
        return Err(hint(
            anyhow::anyhow!(
                "{} is already an appliance ({} exists)",
                root.display(),
                existing
                    .first()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            "use another --data-dir, or add --force to move the existing appliance aside",
        ));
    }
    for san in &args.sans {
        if san.is_empty() || san.len() > 253 || san.contains(char::is_whitespace) {
            return Err(hint(
                anyhow::anyhow!("--san `{san}` is not a host name or address"),
                "give a DNS name or an IP address",
            ));
        }
    }
    if let Some(trust) = &args.trust {
        if !trust.is_file() {
            return Err(hint(
                anyhow::anyhow!("--trust {}: no such file", trust.display()),
                "give the HQ trust root JSON file",
            ));
        }
    }

    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    fs::set_permissions(root, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod {}", root.display()))?;
    let mut suffix = [0u8; 4];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    let staging_root = root.join(format!(".init-staging-{}", hex::encode(suffix)));
    let staged = stage(&staging_root, &args);
    let outcome = match staged {
        Ok(outcome) => outcome,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging_root);
            return Err(e.context("nothing was changed"));
        }
    };
    if !existing.is_empty() {
        let aside = root.join(format!(
            "replaced-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ));
        move_entries(root, &aside, |name| {
            !name.starts_with(".init-staging-") && !name.starts_with("replaced-")
        })
        .with_context(|| format!("moving the old appliance aside into {}", aside.display()))?;
    }
    move_entries(&staging_root, root, |_| true)
        .with_context(|| format!("moving the new appliance into {}", root.display()))?;
    let _ = fs::remove_dir(&staging_root);
    report(data, &args, &outcome);
    Ok(ExitCode::SUCCESS)
}

/// What init made.
struct Outcome {
    fingerprint: [u8; 32],
    names: Vec<String>,
    appliance_public_key: String,
    trust_root: Option<otgate_sync::TrustRoot>,
}

fn stage(staging_root: &Path, args: &InitArgs) -> anyhow::Result<Outcome> {
    fs::create_dir(staging_root).with_context(|| format!("creating {}", staging_root.display()))?;
    fs::set_permissions(staging_root, fs::Permissions::from_mode(0o700))?;
    let staging = DataDir::new(staging_root);

    let key = crate::journal::keys::generate_appliance_key(&staging.appliance_key())
        .context("making the appliance key")?;
    let appliance_public_key = hex::encode(key.verifying_key().as_bytes());
    let names = tls::subject_alt_names(&args.sans);
    let fingerprint = tls::create_appliance_cert(&staging, &names, false)
        .context("making the TLS certificate")?;
    ItStore::create(&staging.it_store_dir()).context("creating the IT store")?;
    OtStore::create(&staging.ot_store_dir()).context("creating the OT store")?;
    let sessions = staging.sessions_dir();
    fs::create_dir_all(&sessions).with_context(|| format!("creating {}", sessions.display()))?;
    let trust_root = match &args.trust {
        Some(path) => Some(install_trust_root(&staging, path)?),
        None => None,
    };
    let trust_root_installed = trust_root.is_some();
    let config = ApplianceConfig::defaults(args.it_listen, names.clone());
    fs::write(staging.config_file(), config.render()?).context("writing appliance.toml")?;

    let event = AdminEvent::ApplianceInitialized {
        tls_fingerprint: tls::format_fingerprint(&fingerprint),
        tls_names: names.clone(),
        appliance_public_key: appliance_public_key.clone(),
        trust_root_installed,
    };
    // Which trust root, not just that one was: its keys, threshold, site and fingerprint.
    let events = std::iter::once(Event::Admin(event))
        .chain(
            trust_root
                .as_ref()
                .map(crate::bundles::trust_root_installed_event),
        )
        .collect();
    append_with_key(&staging, key, events).context("creating the journal")?;
    Ok(Outcome {
        fingerprint,
        names,
        appliance_public_key,
        trust_root,
    })
}

fn install_trust_root(staging: &DataDir, path: &Path) -> anyhow::Result<otgate_sync::TrustRoot> {
    crate::bundles::install_trust_root(staging, path)
        .with_context(|| format!("installing the trust root {}", path.display()))
}

fn move_entries(from: &Path, to: &Path, keep: impl Fn(&str) -> bool) -> anyhow::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let target = to.join(&name);
        if entry.path() == to || !keep(&name) {
            continue;
        }
        if name == "control.sock" {
            let _ = fs::remove_file(entry.path());
            continue;
        }
        fs::rename(entry.path(), &target).with_context(|| {
            format!("moving {} to {}", entry.path().display(), target.display())
        })?;
    }
    Ok(())
}

fn report(data: &DataDir, args: &InitArgs, outcome: &Outcome) {
    let fingerprint = tls::format_fingerprint(&outcome.fingerprint);
    if args.json {
        println!(
            "{}",
            json!({
                "data_dir": data.root(),
                "tls_certificate": tls::cert_path(data),
                "tls_fingerprint": fingerprint,
                "tls_names": outcome.names,
                "it_listen": args.it_listen.to_string(),
                "appliance_public_key": outcome.appliance_public_key,
                "trust_root_installed": args.trust.is_some(),
                "trust_root": outcome.trust_root.as_ref().map(|r| json!({
                    "site": r.site(),
                    "root_version": r.root_version(),
                    "threshold": r.threshold(),
                    "keys": r.key_ids().map(ToString::to_string).collect::<Vec<_>>(),
                    "fingerprint": crate::bundles::trust_root_fingerprint(r),
                })),
            })
        );
        return;
    }
    println!("initialized an appliance in {}", data.root().display());
    println!(
        "  TLS certificate: {} ({})",
        tls::cert_path(data).display(),
        outcome.names.join(", ")
    );
    println!("  TLS fingerprint: {fingerprint}   <- IT clients pin this (--pin)");
    println!("  IT listener:     {} (appliance.toml)", args.it_listen);
    println!("  journal key:     {}", outcome.appliance_public_key);
    if let Some(r) = &outcome.trust_root {
        println!(
            "  trust root:      site {}, version {}, {} of [{}], fingerprint {}",
            r.site(),
            r.root_version(),
            r.threshold(),
            r.key_ids()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            crate::bundles::trust_root_fingerprint(r)
        );
    }
    println!("next:");
    if args.trust.is_none() {
        println!("  otgate init needs a trust root before signed policy can be imported (re-run with --trust ROOT.json --force)");
    }
    println!("  otgate policy import BUNDLE            activate a signed policy");
    println!("  otgate users add-ot ID --role ROLE     add the plant's approvers; then users enroll-totp ID --zone ot");
    println!("  otgate serve                           run the appliance");
}

/// Append events with the appliance key at hand, outside the daemon (init).
fn append_with_key(
    data: &DataDir,
    key: ed25519_dalek::SigningKey,
    events: Vec<Event>,
) -> anyhow::Result<()> {
    let journal = crate::journal::Journal::open(
        &data.journal_dir(),
        key,
        crate::journal::JournalConfig::default(),
    )?;
    for event in events {
        journal.append_blocking(event)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_written_journal_settings_are_what_the_journal_reads() {
        let config = super::ApplianceConfig::defaults(
            "127.0.0.1:8443".parse().unwrap(),
            vec!["localhost".into()],
        );
        let text = config.render().unwrap();
        let journal = crate::journal::JournalConfig::from_toml(&text).unwrap();
        assert_eq!(journal.budget_bytes, 4 << 30);
        assert_eq!(journal.reserve_bytes, 64 << 20);
    }

    use super::*;
    use crate::journal::read::JournalReader;

    fn args() -> InitArgs {
        InitArgs {
            trust: None,
            sans: vec!["gw.plant-a.example".into()],
            it_listen: DEFAULT_IT_LISTEN.parse().unwrap(),
            force: false,
            json: true,
        }
    }

    fn globals(root: &Path) -> Globals {
        Globals {
            data_dir: DataDir::new(root),
        }
    }

    fn events(data: &DataDir) -> Vec<Event> {
        JournalReader::open(&data.journal_dir())
            .unwrap()
            .map(|r| r.unwrap().event)
            .collect()
    }

    #[test]
    fn init_makes_a_working_appliance_and_journals_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("appliance");
        run(&globals(&root), args()).unwrap();
        let data = DataDir::new(&root);
        assert!(ItStore::open(&data.it_store_dir()).is_ok());
        assert!(OtStore::open(&data.ot_store_dir()).is_ok());
        let tls = tls::load_server(&data).unwrap();
        crate::journal::keys::load_appliance_key(&data.appliance_key()).unwrap();
        let config = ApplianceConfig::load(&data).unwrap();
        assert_eq!(config.it.listen.to_string(), DEFAULT_IT_LISTEN);
        assert_eq!(
            config.it.tls_names,
            ["localhost", "127.0.0.1", "gw.plant-a.example"]
        );
        let initialized: Vec<_> = events(&data)
            .into_iter()
            .filter_map(|e| match e {
                Event::Admin(AdminEvent::ApplianceInitialized {
                    tls_fingerprint, ..
                }) => Some(tls_fingerprint),
                _ => None,
            })
            .collect();
        assert_eq!(initialized, [tls::format_fingerprint(&tls.fingerprint)]);
        let leftovers: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".init-staging"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn init_with_trust_journals_which_root_was_installed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("appliance");
        let keys: Vec<otgate_sync::AuthorityKey> = (1..=3)
            .map(|i| otgate_sync::AuthorityKey::from_secret([i; 32], None))
            .collect();
        let trust = otgate_sync::TrustRoot::new(otgate_sync::TrustRootFile {
            format: 1,
            site: "plant-a".into(),
            root_version: 4,
            threshold: 2,
            keys: keys.iter().map(|k| k.public_entry()).collect(),
            revoked: vec![keys[2].key_id()],
        })
        .unwrap();
        let trust_file = dir.path().join("root.json");
        fs::write(&trust_file, trust.to_json()).unwrap();
        run(
            &globals(&root),
            InitArgs {
                trust: Some(trust_file),
                ..args()
            },
        )
        .unwrap();
        let data = DataDir::new(&root);
        let installed: Vec<_> = events(&data)
            .into_iter()
            .filter_map(|e| match e {
                Event::Policy(crate::journal::event::PolicyEvent::TrustRootInstalled {
                    fingerprint,
                    site,
                    root_version,
                    threshold,
                    keys,
                    revoked,
                }) => Some((fingerprint, site, root_version, threshold, keys, revoked)),
                _ => None,
            })
            .collect();
        let on_disk = fs::read(data.trust_dir().join("root.json")).unwrap();
        let expected_fingerprint = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&on_disk));
        assert_eq!(
            installed,
            [(
                expected_fingerprint,
                "plant-a".to_owned(),
                4,
                2,
                keys.iter().map(|k| k.key_id().to_string()).collect(),
                vec![keys[2].key_id().to_string()],
            )]
        );
    }

    #[test]
    fn init_refuses_an_existing_appliance_and_force_moves_it_aside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("appliance");
        run(&globals(&root), args()).unwrap();
        let data = DataDir::new(&root);
        let first_key = fs::read(data.appliance_key()).unwrap();
        let err = run(&globals(&root), args()).unwrap_err();
        assert!(
            format!("{err:#}").contains("already an appliance"),
            "{err:#}"
        );
        assert_eq!(
            fs::read(data.appliance_key()).unwrap(),
            first_key,
            "nothing changed"
        );

        run(
            &globals(&root),
            InitArgs {
                force: true,
                ..args()
            },
        )
        .unwrap();
        assert_ne!(fs::read(data.appliance_key()).unwrap(), first_key);
        let aside: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("replaced-")
            })
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(
            fs::read(aside[0].join("appliance.key")).unwrap(),
            first_key,
            "the old appliance is kept"
        );
        assert!(
            aside[0].join("journal").is_dir(),
            "the old journal is evidence, not deleted"
        );
    }

    #[test]
    fn a_failed_init_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("appliance");
        let bad_root = dir.path().join("root.json");
        fs::write(&bad_root, "{ not a trust root").unwrap();
        let err = run(
            &globals(&root),
            InitArgs {
                trust: Some(bad_root),
                ..args()
            },
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("nothing was changed"),
            "{err:#}"
        );
        let left: Vec<_> = fs::read_dir(&root).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");

        let err = run(
            &globals(&root),
            InitArgs {
                sans: vec!["two words".into()],
                ..args()
            },
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("--san"), "{err:#}");
        let err = run(
            &globals(&root),
            InitArgs {
                trust: Some(dir.path().join("absent.json")),
                ..args()
            },
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("--trust"), "{err:#}");
        assert!(!DataDir::new(&root).appliance_key().exists());
    }
}
