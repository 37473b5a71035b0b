//! `otgate policy import|pull|status`: signed bundles on the appliance side.
//!
//! Import and pull verify against the installed trust root and activate through
//! [`crate::bundles`], which journals the activation or the refusal. Without a running daemon
//! these commands open the journal themselves (its lock keeps them from racing the daemon).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use otgate_sync::bundle::hash_hex;
use otgate_sync::net::CertPin;
use otgate_sync::Refusal;

use super::{hint, Globals};
use crate::bundles::{self, BundlesError, ImportOptions, ImportOutcome, PullFailure};
use otgate_sync::net::PullError;

const IMPORT_HELP: &str = "\
Example:
  otgate policy import /media/usb/plant-a-v7.otgb";

const PULL_HELP: &str = "\
Examples:
  otgate policy pull https://hq.example.com:8443 --cert /etc/otgate/hq.crt
  otgate policy pull https://10.0.0.5:8443 --pin sha256:8d5d05...a890";

const STATUS_HELP: &str = "\
Example:
  otgate policy status --json";

/// Arguments of `otgate policy import`.
#[derive(Debug, clap::Args)]
#[command(after_help = IMPORT_HELP)]
pub struct ImportArgs {
    /// The bundle file (`.otgb`).
    pub file: PathBuf,
    /// Clock skew tolerated at either end of the bundle's validity.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub skew: Duration,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `otgate policy pull`.
#[derive(Debug, clap::Args)]
#[command(after_help = PULL_HELP)]
pub struct PullArgs {
    /// HQ's bundle server, `https://host[:port]` (the site's newest bundle is asked for).
    pub url: String,
    /// HQ's certificate (PEM) to pin.
    #[arg(
        long,
        value_name = "PEM",
        required_unless_present = "pin",
        conflicts_with = "pin"
    )]
    pub cert: Option<PathBuf>,
    /// HQ's certificate pin, `sha256:<hex>` (as `otgate authority keygen --tls` prints it).
    #[arg(long, value_name = "PIN")]
    pub pin: Option<CertPin>,
    /// Give up after this long (connect, handshake and transfer together).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Clock skew tolerated at either end of the bundle's validity.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub skew: Duration,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `otgate policy status`.
#[derive(Debug, clap::Args)]
#[command(after_help = STATUS_HELP)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Show the standing as of this instant instead of now (RFC 3339).
    #[arg(long, value_name = "TIME", hide = true)]
    pub at: Option<DateTime<chrono::FixedOffset>>,
}

/// Run `otgate policy import`.
pub fn import(globals: &Globals, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let journal = super::state::open_journal(globals)?;
    let options = ImportOptions {
        skew: TimeDelta::from_std(args.skew).context("--skew is too long")?,
        source: format!("file:{}", args.file.display()),
    };
    let result = bundles::import_file(
        &globals.data_dir,
        &journal,
        &args.file,
        Utc::now(),
        &options,
    );
    let shown = args.file.display().to_string();
    report_outcome(&shown, result, args.json)
}

/// Run `otgate policy pull`.
pub fn pull(globals: &Globals, args: PullArgs) -> anyhow::Result<ExitCode> {
    let dd = &globals.data_dir;
    bundles::trust_root(dd).map_err(with_trust_hint)?;
    let pin = match (&args.pin, &args.cert) {
        (Some(pin), _) => *pin,
        (None, Some(cert)) => CertPin::of_pem_file(cert)?,
        (None, None) => anyhow::bail!("give --cert or --pin"),
    };
    let journal = super::state::open_journal(globals)?;
    let settings = bundles::PullSettings {
        url: args.url.clone(),
        pin,
        timeout: args.timeout,
        skew: TimeDelta::from_std(args.skew).context("--skew is too long")?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(bundles::pull_once(dd, &journal, &settings, Utc::now()));
    match result {
        Ok(outcome) => report_outcome(&args.url, Ok(outcome), args.json),
        Err(PullFailure::Import(error)) => report_outcome(&args.url, Err(error), args.json),
        Err(PullFailure::Transfer(error)) => {
            let next = match error {
                PullError::WrongCertificate { .. } => {
                    "the server is not the HQ whose certificate is pinned; check --cert/--pin with HQ"
                }
                PullError::TimedOut { .. } => {
                    "HQ did not answer in time; the active policy stays in force (see `otgate policy status`)"
                }
                _ => "the active policy stays in force; `otgate policy import FILE` works offline",
            };
            Err(hint(
                anyhow::Error::new(error).context(format!("pull from {} failed", args.url)),
                next,
            ))
        }
    }
}

fn with_trust_hint(error: BundlesError) -> anyhow::Error {
    match error {
        e @ BundlesError::NoTrustRoot { .. } => hint(
            e,
            "install HQ's trust root at provisioning: otgate init --trust ROOT.json",
        ),
        other => other.into(),
    }
}

fn report_outcome(
    what: &str,
    result: Result<ImportOutcome, BundlesError>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(ImportOutcome::Activated {
            version,
            hash,
            previous_version,
            rotated_root_to,
        }) => {
            if json {
                let value = serde_json::json!({
                    "outcome": "activated", "version": version, "hash": hash_hex(&hash),
                    "previous_version": previous_version, "trust_root_version": rotated_root_to,
                });
                println!("{value}");
            } else {
                let from = previous_version
                    .map(|v| format!(" (was {v})"))
                    .unwrap_or_default();
                println!(
                    "activated policy version {version}{from}, hash {}",
                    hash_hex(&hash)
                );
                if let Some(root) = rotated_root_to {
                    println!("trust root rotated to version {root}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(ImportOutcome::Unchanged { version, hash }) => {
            if json {
                let value = serde_json::json!({"outcome": "unchanged", "version": version, "hash": hash_hex(&hash)});
                println!("{value}");
            } else {
                println!("policy version {version} is already active; nothing changed");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(BundlesError::Refused(refusal)) => {
            let next = refusal_hint(&refusal);
            Err(hint(
                anyhow::Error::new(refusal)
                    .context(format!("{what} refused; the active policy is unchanged")),
                next,
            ))
        }
        Err(e @ BundlesError::NoTrustRoot { .. }) => Err(with_trust_hint(e)),
        Err(other) => Err(other.into()),
    }
}

fn refusal_hint(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::Rollback { .. } | Refusal::SameVersionDifferentContent { .. } => {
            "HQ must issue a bundle with a higher version than the active one (`otgate policy status`)"
        }
        Refusal::NotEnoughSignatures { .. }
        | Refusal::RotationBelowThreshold { .. }
        | Refusal::UnknownKey { .. }
        | Refusal::RevokedKey { .. } => "more authorities of the current trust root must sign (`otgate authority sign`)",
        Refusal::BadSignature { .. } | Refusal::Truncated(_) | Refusal::Malformed(_) => {
            "the file was damaged or altered in transit; fetch it again from HQ"
        }
        Refusal::Expired { .. } | Refusal::NotYetValid { .. } => {
            "check the appliance clock (`date -u`) and the bundle's validity (`otgate authority verify`)"
        }
        Refusal::WrongSite { .. } | Refusal::PolicySiteMismatch { .. } => "this bundle is for another plant",
        Refusal::InvalidPolicy(_) => "HQ must fix the policy (`otgate policy check FILE`) and sign again",
        _ => "see `otgate authority verify FILE --trust ROOT.json` for details",
    }
}

/// Run `otgate policy status`.
pub fn status(globals: &Globals, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let now = args
        .at
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(Utc::now);
    let status = bundles::status(&globals.data_dir, now)?;
    if args.json {
        println!("{}", serde_json::to_string(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    match (&status.site, status.trust_root_version, status.threshold) {
        (Some(site), Some(version), Some(threshold)) => {
            println!("site          {site} (trust root version {version}, {threshold} signatures required)");
        }
        _ => println!("trust root    none installed (otgate init --trust ROOT.json)"),
    }
    match &status.active {
        None => println!(
            "policy        none active (otgate policy import FILE, or otgate policy pull URL)"
        ),
        Some(a) => {
            let age = humantime::format_duration(Duration::from_secs(
                u64::try_from(a.age_secs).unwrap_or(0),
            ));
            println!("policy        version {}  hash {}", a.version, a.hash);
            let signers: Vec<String> = a.signers.iter().map(ToString::to_string).collect();
            println!("signed by     {}", signers.join(", "));
            println!("issued        {} ({age} ago)", a.issued_at.to_rfc3339());
            println!(
                "valid         {} .. {}",
                a.not_before.to_rfc3339(),
                a.expires_at.to_rfc3339()
            );
            let standing = match a.standing {
                "grace" => format!(
                    "EXPIRED, enforced on grace until {}",
                    a.grace_until.to_rfc3339()
                ),
                "lapsed" => format!(
                    "LAPSED at {}: only break-glass works",
                    a.grace_until.to_rfc3339()
                ),
                _ => format!(
                    "valid (grace would last until {})",
                    a.grace_until.to_rfc3339()
                ),
            };
            println!("standing      {standing}");
            println!(
                "activated     {} from {}",
                a.activated_at.to_rfc3339(),
                a.source
            );
            if let Some(note) = &a.degraded {
                println!("DEGRADED      {note}");
            }
        }
    }
    if let Some(previous) = &status.previous {
        println!(
            "last good     version {}  hash {}",
            previous.version, previous.hash
        );
    }
    match &status.last_pull {
        None => println!("last pull     never"),
        Some(p) => println!(
            "last pull     {} from {}: {} ({})",
            p.at.to_rfc3339(),
            p.url,
            if p.ok { "ok" } else { "FAILED" },
            p.result
        ),
    }
    Ok(ExitCode::SUCCESS)
}
