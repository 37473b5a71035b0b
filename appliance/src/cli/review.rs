//! HQ's sign-off of emergency grants as data: `otgate authority review` writes and signs a review
//! record at HQ (format in `docs/review-format.md`, code in `otgate_sync::review`), and
//! `otgate review import FILE` brings it into the appliance.
//!
//! The import verifies the record against the installed trust root (threshold of distinct
//! authority keys, this site, not from the future), checks every grant it names against the
//! grants (emergency, awaiting review, begun before the record was issued, not imported before),
//! then journals one record that signs them all off; a refusal is journaled too and changes
//! nothing. Through the daemon's control socket when it runs, directly on the journal when it
//! does not (same checks, same output, same exit codes). HQ never connects to the plant.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, FixedOffset, Utc};
use otgate_sync::review::{ReviewBody, ReviewRecord, Verdict, MAX_REVIEW_BYTES};
use otgate_sync::AuthorityKey;
use serde_json::json;

use super::{hint, Globals};
use crate::control::client::{self, ClientError};
use crate::journal::event::{AccessEvent, Event};

const IMPORT_HELP: &str = "\
Verifies HQ's signatures against the appliance's trust root, then signs off every grant the
record names (all or none). Replays, unknown grants, other sites and too few signatures are
refused with the reason, on record. Exit status: 0 imported, 1 refused or invalid.

Example:
  otgate review import /media/usb/review-2026-11-29.otgr";

const SIGN_HELP: &str = "\
Writes a review record for a site's emergency grants and signs it with your authority key; run
it again on the same file with another key to add a signature (the appliance needs as many as
its trust root's threshold). Carry the file to the plant: otgate review import FILE.

Example:
  otgate authority review hq-review.otgr --key officer.key --site plant-a \\
      --grant G-0007 --reviewer security-officer@hq --verdict justified --comment \"INC-77\"
  otgate authority review hq-review.otgr --key second.key";

/// What `otgate review` can do besides listing and signing off at the console.
#[derive(Debug, clap::Subcommand)]
pub enum ReviewAction {
    /// Import HQ's signed review record: sign off the emergency grants it names.
    #[command(after_help = IMPORT_HELP)]
    Import(ImportArgs),
}

/// Arguments of `otgate review import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The review record file (from `otgate authority review`).
    pub file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run an `otgate review` action.
pub fn run(globals: &Globals, action: ReviewAction) -> anyhow::Result<ExitCode> {
    match action {
        ReviewAction::Import(args) => import(globals, &args),
    }
}

fn read_record(path: &Path) -> anyhow::Result<Vec<u8>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size > MAX_REVIEW_BYTES {
        return Err(hint(
            anyhow::anyhow!(
                "{}: {size} bytes, over the limit of {MAX_REVIEW_BYTES} bytes for a review record",
                path.display()
            ),
            "is this a review record? (otgate authority review writes them)",
        ));
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn import(globals: &Globals, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    use base64::Engine;
    let bytes = read_record(&args.file)?;
    let socket = globals.data_dir.control_socket();
    let params = json!({ "record": base64::engine::general_purpose::STANDARD.encode(&bytes) });
    let signed_off: Vec<String> = match client::call(&socket, "grants.import_review", params) {
        Ok(answer) => serde_json::from_value(answer.get("signed_off").cloned().unwrap_or_default())
            .context("the daemon's answer has no signed_off list")?,
        Err(ClientError::NotRunning { .. }) => import_offline(globals, &bytes)?,
        Err(ClientError::Refused(refusal)) => {
            let error = anyhow::anyhow!("{}: {}", args.file.display(), refusal.message);
            return Err(match refusal.hint {
                Some(h) => hint(error, h),
                None => hint(
                    error,
                    "ask HQ for a record signed by enough authority keys for this site's grants awaiting review (otgate review)",
                ),
            });
        }
        Err(other) => return Err(other.into()),
    };
    // The record verified, so it decodes.
    let record = ReviewRecord::decode(&bytes)?;
    let body = record.body();
    if args.json {
        println!(
            "{}",
            json!({
                "record": hex::encode(record.hash()),
                "reviewer": body.reviewer,
                "verdict": body.verdict,
                "signed_off": signed_off,
            })
        );
    } else {
        println!(
            "review by {} ({}) imported: {} signed off",
            body.reviewer,
            body.verdict,
            signed_off.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The same import on the journal directly, for an appliance whose daemon is not running.
fn import_offline(globals: &Globals, bytes: &[u8]) -> anyhow::Result<Vec<String>> {
    let dd = &globals.data_dir;
    let key = crate::journal::keys::load_appliance_key(&dd.appliance_key()).map_err(|e| {
        hint(
            anyhow::anyhow!("{e}"),
            format!("is {} an appliance? (otgate init)", dd.root().display()),
        )
    })?;
    let root = crate::bundles::trust_root(dd).map_err(|e| {
        hint(
            anyhow::anyhow!("{e}"),
            "a review record is checked against HQ's trust root; install it with otgate init --trust-root",
        )
    })?;
    let config = crate::journal::JournalConfig::load(dd)?;
    let journal = crate::journal::Journal::open(&dd.journal_dir(), key, config)?;
    let state = crate::state::State::open(dd, &journal)?;
    let tree = state
        .tree(crate::grants::view::NAME)
        .ok_or_else(|| anyhow::anyhow!("the state has no grants view"))?;
    let registry = crate::grants::view::load(&tree)?;
    let now = Utc::now();
    let refused = |target: String, actor: String, reason: String| -> anyhow::Result<()> {
        let event = AccessEvent::Refused {
            action: "review_import".to_owned(),
            target,
            actor,
            reason: reason.clone(),
            at: now,
        };
        journal.append_reserved_blocking(Event::Access(event))?;
        Err(hint(
            anyhow::anyhow!("review import refused: {reason}"),
            "ask HQ for a record signed by enough authority keys for this site's grants awaiting review (otgate review)",
        ))
    };
    let verified = match otgate_sync::review::verify_review(bytes, &root, now) {
        Ok(verified) => verified,
        Err(refusal) => {
            let target = crate::grants::service::review_target_of(bytes);
            refused(target, "hq".to_owned(), refusal.to_string())?;
            return Ok(Vec::new());
        }
    };
    match crate::grants::service::review_import(&registry, &verified, now) {
        Ok(event) => {
            journal.append_blocking(Event::Access(event))?;
            state.catch_up()?;
            Ok(verified.body().grant_ids.clone())
        }
        Err(r) => {
            refused(r.target, r.actor, r.reason)?;
            Ok(Vec::new())
        }
    }
}

/// Arguments of `otgate authority review`.
#[derive(Debug, clap::Args)]
#[command(after_help = SIGN_HELP)]
pub struct SignReviewArgs {
    /// The review record file: created when --site is given, otherwise countersigned in place.
    pub record: PathBuf,
    /// Your authority secret key file.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// The site whose grants are reviewed (creates the record).
    #[arg(long, value_name = "SITE", requires_all = ["grant", "reviewer", "verdict"])]
    pub site: Option<String>,
    /// A grant signed off (repeatable), as `otgate review` at the plant lists them.
    #[arg(long, value_name = "ID", requires = "site")]
    pub grant: Vec<String>,
    /// Who reviewed.
    #[arg(long, value_name = "NAME", requires = "site")]
    pub reviewer: Option<String>,
    /// `justified` or `unjustified`.
    #[arg(long, value_name = "VERDICT", requires = "site")]
    pub verdict: Option<Verdict>,
    /// A comment kept on record (no secrets: it is shown at the plant).
    #[arg(long, value_name = "TEXT", requires = "site", default_value = "")]
    pub comment: String,
    /// When the review was made (RFC 3339; default now).
    #[arg(long, value_name = "TIME", requires = "site")]
    pub issued_at: Option<DateTime<FixedOffset>>,
    /// Replace a different existing record file when creating.
    #[arg(long)]
    pub force: bool,
}

/// Run `otgate authority review`: create and sign, or countersign.
pub fn sign(args: SignReviewArgs) -> anyhow::Result<ExitCode> {
    let key = AuthorityKey::load(&args.key).map_err(|e| {
        hint(
            anyhow::anyhow!("{}: {e}", args.key.display()),
            "make one with: otgate authority keygen --out KEY",
        )
    })?;
    let mut record = match &args.site {
        Some(site) => {
            let mut grant_ids = args.grant.clone();
            grant_ids.sort();
            grant_ids.dedup();
            let body = ReviewBody {
                site: site.clone(),
                issued_at: args
                    .issued_at
                    .map_or_else(Utc::now, |t| t.with_timezone(&Utc)),
                reviewer: args.reviewer.clone().unwrap_or_default(),
                verdict: args.verdict.unwrap_or(Verdict::Justified),
                comment: args.comment.clone(),
                grant_ids,
            };
            ReviewRecord::new(body).map_err(|e| {
                hint(
                    anyhow::anyhow!("cannot write the review record: {e}"),
                    "see docs/review-format.md for each field's rule",
                )
            })?
        }
        None => {
            let bytes = read_record(&args.record)?;
            ReviewRecord::decode(&bytes).map_err(|e| {
                hint(
                    anyhow::anyhow!("{}: {e}", args.record.display()),
                    "to create a record, give --site, --grant, --reviewer and --verdict",
                )
            })?
        }
    };
    record
        .sign(&key)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.record.display()))?;
    let force = args.force || args.site.is_none();
    super::authority::write_out(&args.record, &record.encode(), force)?;
    let body = record.body();
    println!(
        "{}: review of {} at site {} by {} ({}), {} signature(s); sha256 {}",
        args.record.display(),
        body.grant_ids.join(", "),
        body.site,
        body.reviewer,
        body.verdict,
        record.signatures().len(),
        hex::encode(record.hash())
    );
    Ok(ExitCode::SUCCESS)
}
