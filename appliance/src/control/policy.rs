//! Control methods of signed policy, so that `otgate policy import|pull|status` work while the
//! daemon holds the journal: `policy.import` (a bundle file the daemon reads, by path: bundles are
//! larger than a control line), `policy.pull` (HQ over pinned HTTPS, from the daemon) and
//! `policy.status` (by the daemon's clock, with what only the daemon knows: the standing it
//! enforces and its periodic pull).
//!
//! What it does not do: verify or decide anything itself. Imports go through
//! `bundles::live`, which verifies, journals, switches the active bundle atomically and has the
//! running daemon enforce the new policy at once (revoking grants it no longer covers). A
//! refusal answers `refused` with the reason and a hint, and changes nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use otgate_sync::bundle::hash_hex;
use otgate_sync::net::CertPin;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{params, ControlError};
use crate::bundles::{self, live, BundlesError, ImportOptions, ImportOutcome, PullFailure};
use crate::daemon::Appliance;

/// The longest deadline a pull through the daemon may have: the CLI waits 30 s for an answer.
pub const MAX_PULL_TIMEOUT: Duration = Duration::from_secs(25);

/// `policy.import`: which file, how.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportParams {
    /// An absolute path the daemon can read.
    path: PathBuf,
    /// Clock skew tolerated, seconds.
    #[serde(default = "default_skew")]
    skew_secs: u64,
}

/// `policy.pull`: from where, how.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PullParams {
    url: String,
    /// `sha256:<hex>`.
    pin: String,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
    #[serde(default = "default_skew")]
    skew_secs: u64,
}

/// `policy.status`: as of when (default: the daemon's now).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusParams {
    #[serde(default)]
    at: Option<DateTime<Utc>>,
}

fn default_skew() -> u64 {
    300
}

fn default_timeout() -> u64 {
    MAX_PULL_TIMEOUT.as_secs()
}

/// What an import or a pull did, as the CLI prints it (the same whether or not a daemon ran it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeView {
    /// `activated` or `unchanged`.
    pub outcome: String,
    /// The bundle version.
    pub version: u64,
    /// Its hash (hex).
    pub hash: String,
    /// The version it replaced.
    #[serde(default)]
    pub previous_version: Option<u64>,
    /// The trust root version it rotated to.
    #[serde(default)]
    pub trust_root_version: Option<u64>,
    /// Grants the new policy no longer covers, revoked by the running daemon.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_grants: Vec<String>,
}

impl OutcomeView {
    /// The view of an import's outcome.
    pub fn of(outcome: &ImportOutcome, revoked_grants: Vec<String>) -> Self {
        match *outcome {
            ImportOutcome::Activated {
                version,
                hash,
                previous_version,
                rotated_root_to,
            } => Self {
                outcome: "activated".into(),
                version,
                hash: hash_hex(&hash),
                previous_version,
                trust_root_version: rotated_root_to,
                revoked_grants,
            },
            ImportOutcome::Unchanged { version, hash } => Self {
                outcome: "unchanged".into(),
                version,
                hash: hash_hex(&hash),
                previous_version: None,
                trust_root_version: None,
                revoked_grants,
            },
        }
    }
}

/// The refusal's message as the CLI prints it, and the next step.
pub fn refusal_error(what: &str, error: &BundlesError) -> ControlError {
    match error {
        BundlesError::Refused(refusal) => ControlError::refused(format!(
            "{what} refused; the active policy is unchanged: {refusal}"
        ))
        .with_hint(crate::cli::bundle::refusal_hint(refusal)),
        BundlesError::NoTrustRoot { .. } => ControlError::new("refused", error.to_string())
            .with_hint("install HQ's trust root at provisioning: otgate init --trust ROOT.json"),
        other => ControlError::internal(other.to_string()),
    }
}

fn seconds(what: &str, secs: u64) -> Result<TimeDelta, ControlError> {
    i64::try_from(secs)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .ok_or_else(|| ControlError::invalid(format!("{what} of {secs} s is too long")))
}

/// Answer a `policy.*` method.
pub async fn handle(app: &Arc<Appliance>, method: &str, p: Value) -> Result<Value, ControlError> {
    match method {
        "policy.import" => {
            let args: ImportParams = params(method, p)?;
            if !args.path.is_absolute() {
                return Err(ControlError::invalid(format!(
                    "path {} is not absolute; the daemon does not share the caller's directory",
                    args.path.display()
                )));
            }
            let shown = args.path.display().to_string();
            let options = ImportOptions {
                skew: seconds("skew", args.skew_secs)?,
                source: format!("file:{shown}"),
            };
            match live::import_file(app, args.path, options).await {
                Ok((outcome, revoked)) => json(&OutcomeView::of(&outcome, revoked)),
                Err(error) => Err(refusal_error(&shown, &error)),
            }
        }
        "policy.pull" => {
            let args: PullParams = params(method, p)?;
            let pin: CertPin = args
                .pin
                .parse()
                .map_err(|e| ControlError::invalid(format!("pin `{}`: {e}", args.pin)))?;
            let settings = bundles::PullSettings {
                url: args.url.clone(),
                pin,
                timeout: Duration::from_secs(args.timeout_secs).min(MAX_PULL_TIMEOUT),
                skew: seconds("skew", args.skew_secs)?,
            };
            match live::pull(app, &settings).await {
                Ok((outcome, revoked)) => json(&OutcomeView::of(&outcome, revoked)),
                Err(PullFailure::Import(error)) => Err(refusal_error(&args.url, &error)),
                Err(failure) => {
                    let hint = crate::cli::bundle::pull_hint(&failure);
                    Err(ControlError::new(
                        "pull_failed",
                        format!("pull from {} failed: {failure}", args.url),
                    )
                    .with_hint(hint))
                }
            }
        }
        "policy.status" => {
            let args: StatusParams = params(method, p)?;
            let now = args.at.unwrap_or_else(|| app.clock.now_utc());
            let dd = app.data_dir.clone();
            let mut status = tokio::task::spawn_blocking(move || bundles::status(&dd, now))
                .await
                .map_err(|e| ControlError::internal(e.to_string()))?
                .map_err(|e| ControlError::internal(e.to_string()))?;
            status.daemon = Some(app.config.bundles.view(now));
            json(&status)
        }
        _ => Err(ControlError::new(
            "unknown_method",
            format!("unknown method {method}"),
        )),
    }
}

fn json<T: Serialize>(value: &T) -> Result<Value, ControlError> {
    serde_json::to_value(value).map_err(|e| ControlError::internal(e.to_string()))
}
