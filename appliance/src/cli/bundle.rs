//! `otgate policy import|pull|status`: signed bundles on the appliance side.
//!
//! Import and pull verify against the installed trust root and activate through
//! [`crate::bundles`], which journals the activation or the refusal. When the daemon runs, they
//! go through its control socket (`policy.*`, `control/policy.rs`), so the daemon journals and
//! enforces the new policy at once; without a daemon they open the journal themselves (its lock
//! keeps them from racing a daemon that starts meanwhile). Outputs and exit codes are the same
//! either way.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use otgate_sync::net::CertPin;
use otgate_sync::Refusal;

use serde_json::{json, Value};

use super::{hint, Globals};
use crate::bundles::{self, BundlesError, ImportOptions, ImportOutcome, PullFailure};
use crate::control::client::{self, ClientError};
use crate::control::policy::OutcomeView;
use crate::control::ControlError;
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

/// The daemon's answer, or `None` when no daemon runs (then the command works on the data
/// directory itself).
fn through_daemon(
    globals: &Globals,
    method: &str,
    params: Value,
) -> Option<Result<Value, ControlError>> {
    let socket = globals.data_dir.control_socket();
    match client::call(&socket, method, params) {
        Err(ClientError::NotRunning { .. }) => None,
        Ok(answer) => Some(Ok(answer)),
        Err(ClientError::Refused(error)) => Some(Err(error)),
        Err(other) => Some(Err(ControlError::internal(other.to_string()))),
    }
}

/// A daemon's refusal as the CLI reports it: its message, and its hint if it has one.
fn daemon_error(error: ControlError) -> anyhow::Error {
    match error.hint {
        Some(h) => hint(anyhow::anyhow!("{}", error.message), h),
        None => anyhow::anyhow!("{}", error.message),
    }
}

/// Run `otgate policy import`: through the running daemon (which enforces the new policy at
/// once), or on the data directory when no daemon runs.
pub fn import(globals: &Globals, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let shown = args.file.display().to_string();
    let skew = TimeDelta::from_std(args.skew).context("--skew is too long")?;
    let absolute = std::path::absolute(&args.file)
        .with_context(|| format!("cannot resolve the path {shown}"))?;
    let params = json!({ "path": absolute, "skew_secs": args.skew.as_secs() });
    if let Some(answer) = through_daemon(globals, "policy.import", params) {
        let view: OutcomeView = serde_json::from_value(answer.map_err(daemon_error)?)
            .context("the daemon's answer to policy.import")?;
        return print_outcome(&view, args.json);
    }
    let journal = super::state::open_journal(globals)?;
    let options = ImportOptions {
        skew,
        source: format!("file:{shown}"),
    };
    let result = bundles::import_file(
        &globals.data_dir,
        &journal,
        &args.file,
        Utc::now(),
        &options,
    );
    report_outcome(&shown, result, args.json)
}

/// Run `otgate policy pull`: from the running daemon (deadline at most 25 s), or on the data
/// directory when no daemon runs.
pub fn pull(globals: &Globals, args: PullArgs) -> anyhow::Result<ExitCode> {
    let dd = &globals.data_dir;
    bundles::trust_root(dd).map_err(with_trust_hint)?;
    let pin = match (&args.pin, &args.cert) {
        (Some(pin), _) => *pin,
        (None, Some(cert)) => CertPin::of_pem_file(cert)?,
        (None, None) => anyhow::bail!("give --cert or --pin"),
    };
    let skew = TimeDelta::from_std(args.skew).context("--skew is too long")?;
    let params = json!({
        "url": args.url, "pin": pin.to_string(),
        "timeout_secs": args.timeout.as_secs().max(1), "skew_secs": args.skew.as_secs(),
    });
    if let Some(answer) = through_daemon(globals, "policy.pull", params) {
        let view: OutcomeView = serde_json::from_value(answer.map_err(daemon_error)?)
            .context("the daemon's answer to policy.pull")?;
        return print_outcome(&view, args.json);
    }
    let journal = super::state::open_journal(globals)?;
    let settings = bundles::PullSettings {
        url: args.url.clone(),
        pin,
        timeout: args.timeout,
        skew,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(bundles::pull_once(dd, &journal, &settings, Utc::now()));
    match result {
        Ok(outcome) => report_outcome(&args.url, Ok(outcome), args.json),
        Err(PullFailure::Import(error)) => report_outcome(&args.url, Err(error), args.json),
        Err(failure) => {
            let next = pull_hint(&failure);
            Err(hint(
                anyhow::Error::new(failure).context(format!("pull from {} failed", args.url)),
                next,
            ))
        }
    }
}

/// The next step after a failed transfer.
pub fn pull_hint(failure: &PullFailure) -> &'static str {
    match failure {
        PullFailure::Transfer(PullError::WrongCertificate { .. }) => {
            "the server is not the HQ whose certificate is pinned; check --cert/--pin with HQ"
        }
        PullFailure::Transfer(PullError::TimedOut { .. }) => {
            "HQ did not answer in time; the active policy stays in force (see `otgate policy status`)"
        }
        _ => "the active policy stays in force; `otgate policy import FILE` works offline",
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

fn print_outcome(view: &OutcomeView, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string(view)?);
        return Ok(ExitCode::SUCCESS);
    }
    if view.outcome == "unchanged" {
        println!(
            "policy version {} is already active; nothing changed",
            view.version
        );
        return Ok(ExitCode::SUCCESS);
    }
    let from = view
        .previous_version
        .map(|v| format!(" (was {v})"))
        .unwrap_or_default();
    println!(
        "activated policy version {}{from}, hash {}",
        view.version, view.hash
    );
    if let Some(root) = view.trust_root_version {
        println!("trust root rotated to version {root}");
    }
    if !view.revoked_grants.is_empty() {
        println!(
            "revoked grants the new policy no longer covers: {}",
            view.revoked_grants.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn report_outcome(
    what: &str,
    result: Result<ImportOutcome, BundlesError>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(outcome) => print_outcome(&OutcomeView::of(&outcome, Vec::new()), json),
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

/// The next step after a refusal.
pub fn refusal_hint(refusal: &Refusal) -> &'static str {
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

/// Run `otgate policy status`: the running daemon's view (by its clock, with its periodic pull),
/// or the data directory's when no daemon runs.
pub fn status(globals: &Globals, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let at = args.at.map(|t| t.with_timezone(&Utc));
    let status = match through_daemon(globals, "policy.status", json!({ "at": at })) {
        Some(answer) => answer.map_err(daemon_error)?,
        None => serde_json::to_value(bundles::status(
            &globals.data_dir,
            at.unwrap_or_else(Utc::now),
        )?)?,
    };
    if args.json {
        println!("{status}");
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", status_text(&status));
    Ok(ExitCode::SUCCESS)
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `otgate policy status` in words, from its JSON form.
pub fn status_text(status: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let (site, version, threshold) = (
        &status["site"],
        &status["trust_root_version"],
        &status["threshold"],
    );
    if site.is_null() {
        let _ = writeln!(
            out,
            "trust root    none installed (otgate init --trust ROOT.json)"
        );
    } else {
        let _ = writeln!(
            out,
            "site          {} (trust root version {}, {} signatures required)",
            text(site),
            text(version),
            text(threshold)
        );
    }
    let a = &status["active"];
    if a.is_null() {
        let _ = writeln!(
            out,
            "policy        none active (otgate policy import FILE, or otgate policy pull URL)"
        );
    } else {
        let age =
            humantime::format_duration(Duration::from_secs(a["age_secs"].as_u64().unwrap_or(0)));
        let _ = writeln!(
            out,
            "policy        version {}  hash {}",
            text(&a["version"]),
            text(&a["hash"])
        );
        let signers: Vec<String> = a["signers"]
            .as_array()
            .map(|s| s.iter().map(text).collect())
            .unwrap_or_default();
        let _ = writeln!(out, "signed by     {}", signers.join(", "));
        let _ = writeln!(out, "issued        {} ({age} ago)", text(&a["issued_at"]));
        let _ = writeln!(
            out,
            "valid         {} .. {}",
            text(&a["not_before"]),
            text(&a["expires_at"])
        );
        let grace_until = text(&a["grace_until"]);
        let standing = match a["standing"].as_str() {
            Some("grace") => format!("EXPIRED, enforced on grace until {grace_until}"),
            Some("lapsed") => format!("LAPSED at {grace_until}: only break-glass works"),
            _ => format!("valid (grace would last until {grace_until})"),
        };
        let _ = writeln!(out, "standing      {standing}");
        let _ = writeln!(
            out,
            "activated     {} from {}",
            text(&a["activated_at"]),
            text(&a["source"])
        );
        if !a["degraded"].is_null() {
            let _ = writeln!(out, "DEGRADED      {}", text(&a["degraded"]));
        }
    }
    let previous = &status["previous"];
    if !previous.is_null() {
        let _ = writeln!(
            out,
            "last good     version {}  hash {}",
            text(&previous["version"]),
            text(&previous["hash"])
        );
    }
    let p = &status["last_pull"];
    if p.is_null() {
        let _ = writeln!(out, "last pull     never");
    } else {
        let ok = if p["ok"].as_bool() == Some(true) {
            "ok"
        } else {
            "FAILED"
        };
        let _ = writeln!(
            out,
            "last pull     {} from {}: {ok} ({})",
            text(&p["at"]),
            text(&p["url"]),
            text(&p["result"])
        );
    }
    let d = &status["daemon"];
    if !d.is_null() {
        let periodic = &d["periodic_pull"];
        if periodic.is_null() {
            let _ = writeln!(out, "periodic pull off (no [sync] in appliance.toml)");
        } else {
            let every = humantime::format_duration(Duration::from_secs(
                periodic["interval_secs"].as_u64().unwrap_or(0),
            ));
            let failures = periodic["consecutive_failures"].as_u64().unwrap_or(0);
            let health = if failures == 0 {
                "ok".to_owned()
            } else {
                format!(
                    "FAILING: {failures} attempts since {}",
                    text(&periodic["failing_since"])
                )
            };
            let _ = writeln!(
                out,
                "periodic pull every {every} from {}: {health}; next {}",
                text(&periodic["url"]),
                text(&periodic["next_attempt"])
            );
        }
    }
    out
}
