//! `otgate request|approve|deny|grants|revoke|review`: the access lifecycle, through the daemon.
//!
//! `request` is the IT side: it reaches the appliance over the TLS tunnel and proves the
//! requester's key. The others are the OT side, at the appliance: they go through the running
//! daemon's control socket, and the daemon authenticates the person named by `--as` against the
//! OT store. Nothing here decides: the daemon answers, this file prints.

use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::{json, Value};

use super::{hint, Globals};
use crate::control::client::{self, ClientError};
use crate::grants::GrantRecord;

const REQUEST_HELP: &str = "\
Example:
  otgate request --profile ~/.otgate/plant-a.toml --target line3-plc \\
      --op read --op write:holding-registers:100-199 \\
      --start 2026-11-28T06:00:00+01:00 --duration 4h --ticket CHG-1234 \\
      --reason 'pump curve update' --totp 123456";

/// Arguments of `otgate request`.
#[derive(Debug, clap::Args)]
#[command(after_help = REQUEST_HELP)]
pub struct RequestArgs {
    /// The asset to reach (an asset id of the policy).
    #[arg(long, value_name = "ID")]
    pub target: String,
    /// An operation, e.g. `read` or `write:holding-registers:100-199` (repeatable).
    #[arg(long = "op", value_name = "OP", required = true)]
    pub ops: Vec<String>,
    /// When the window starts: RFC 3339, or `now`.
    #[arg(long, default_value = "now", value_name = "TIME")]
    pub start: String,
    /// How long the window lasts, e.g. `4h` or `30m`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// The change ticket, when the rule asks for one.
    #[arg(long, value_name = "TICKET")]
    pub ticket: Option<String>,
    /// Why you need access.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
    /// Break-glass at the appliance: an OT operator (`--as`) asks through the local control
    /// socket for an emergency grant; it is granted at once and queued for review.
    #[arg(long, requires = "identity", conflicts_with_all = ["profile", "appliance", "pin", "key"])]
    pub break_glass: bool,
    /// How to reach the appliance and who you are.
    #[command(flatten)]
    pub tunnel: crate::tunnel::profile::TunnelArgs,
}

/// Run `otgate request`.
pub fn request(globals: &Globals, args: RequestArgs) -> anyhow::Result<ExitCode> {
    if args.break_glass {
        return break_glass(globals, &args);
    }
    let start = match args.start.as_str() {
        "now" => None,
        given => Some(
            chrono::DateTime::parse_from_rfc3339(given)
                .map_err(|e| {
                    hint(
                        anyhow::anyhow!("--start {given}: {e}"),
                        "give an RFC 3339 instant like 2026-11-28T06:00:00+01:00, or `now`",
                    )
                })?
                .with_timezone(&chrono::Utc),
        ),
    };
    let body = crate::daemon::it_side::RequestBody {
        target: args.target.clone(),
        operations: args.ops.clone(),
        start,
        duration_secs: args.duration.as_secs(),
        ticket: args.ticket.clone(),
        reason: args.reason.clone(),
    };
    let tunnel = args.tunnel.resolve()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reply: crate::daemon::it_side::RequestReply = runtime.block_on(async {
        let purpose = crate::tunnel::Purpose::Request(serde_json::to_value(&body)?);
        let mut stream = tunnel.connect(purpose).await?;
        let reply = crate::tunnel::handshake::read_message(&mut stream).await?;
        anyhow::Ok(reply)
    })?;
    match reply {
        crate::daemon::it_side::RequestReply::Decided(submitted) => {
            print_submitted(&serde_json::to_value(&submitted)?, args.json)
        }
        crate::daemon::it_side::RequestReply::Failed { reason } => Err(anyhow::anyhow!(
            "the appliance could not take the request: {reason}"
        )),
    }
}

fn break_glass(globals: &Globals, args: &RequestArgs) -> anyhow::Result<ExitCode> {
    let params = json!({
        "as": args.tunnel.identity,
        "totp": args.tunnel.totp,
        "target": args.target,
        "operations": args.ops,
        "duration_secs": args.duration.as_secs(),
        "reason": args.reason,
    });
    let answer = call(globals, "grants.break_glass", params)?;
    print_submitted(&answer, args.json)
}

/// Print what a submission came to; exit 1 when policy refused it.
fn print_submitted(answer: &Value, as_json: bool) -> anyhow::Result<ExitCode> {
    let state = text(answer, "state");
    if as_json {
        println!("{answer}");
    } else {
        let id = answer.get("grant_id").and_then(Value::as_str).map_or_else(
            || text(answer, "request_id"),
            |g| format!("{} ({g})", text(answer, "request_id")),
        );
        println!("{id}: {state}");
        println!("decision: {}", text(answer, "decision"));
        println!("next: {}", text(answer, "next"));
    }
    Ok(if state == "denied" {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// An OT person acting at the appliance, with their second factor.
#[derive(Debug, Clone, clap::Args)]
pub struct Acting {
    /// Your OT identity.
    #[arg(long = "as", value_name = "USER")]
    pub identity: String,
    /// Your current TOTP code from the OT store.
    #[arg(long, value_name = "CODE")]
    pub totp: Option<String>,
    /// Read your OT password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

impl Acting {
    fn params(&self, id: &str, reason: Option<&str>) -> anyhow::Result<Value> {
        let password = if self.password_stdin {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            Some(line.trim_end_matches(['\r', '\n']).to_owned())
        } else {
            None
        };
        Ok(json!({
            "id": id,
            "as": self.identity,
            "totp": self.totp,
            "password": password,
            "reason": reason,
        }))
    }
}

/// Arguments of `otgate approve`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  otgate approve R-0001 --as sam --totp 123456")]
pub struct ApproveArgs {
    /// The request to approve (`R-0001`).
    pub id: String,
    /// Who approves.
    #[command(flatten)]
    pub acting: Acting,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run `otgate approve`.
pub fn approve(globals: &Globals, args: ApproveArgs) -> anyhow::Result<ExitCode> {
    let answer = call(
        globals,
        "grants.approve",
        args.acting.params(&args.id, None)?,
    )?;
    if args.json {
        println!("{answer}");
        return Ok(ExitCode::SUCCESS);
    }
    let request = text(&answer, "request_id");
    match (
        answer.get("grant_id").and_then(Value::as_str),
        text(&answer, "state").as_str(),
    ) {
        (Some(grant), "active") => {
            println!(
                "{request} approved by {}: grant {grant} is active now",
                args.acting.identity
            )
        }
        (Some(grant), _) => println!(
            "{request} approved by {}: grant {grant} starts at its window",
            args.acting.identity
        ),
        (None, _) => println!(
            "{request}: approval by {} recorded; still needed: {}",
            args.acting.identity,
            text(&answer, "missing")
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `otgate deny`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  otgate deny R-0002 --as sue --reason 'line 3 runs this weekend'"
)]
pub struct DenyArgs {
    /// The request to deny (`R-0001`).
    pub id: String,
    /// Who denies.
    #[command(flatten)]
    pub acting: Acting,
    /// Why (told to the requester and kept on record).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

/// Run `otgate deny`.
pub fn deny(globals: &Globals, args: DenyArgs) -> anyhow::Result<ExitCode> {
    call(
        globals,
        "grants.deny",
        args.acting.params(&args.id, Some(&args.reason))?,
    )?;
    println!(
        "{} denied by {}: {}",
        args.id, args.acting.identity, args.reason
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `otgate grants`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  otgate grants --pending\n  otgate grants --active --json")]
pub struct GrantsArgs {
    /// Only requests waiting for approval or for their window.
    #[arg(long, group = "which")]
    pub pending: bool,
    /// Only active grants.
    #[arg(long, group = "which")]
    pub active: bool,
    /// Only ended, revoked, denied and expired ones.
    #[arg(long, group = "which")]
    pub ended: bool,
    /// Print JSON (an array; with --follow, JSON lines).
    #[arg(long)]
    pub json: bool,
    /// After listing, keep printing what happens (warnings, approvals, ends) until interrupted.
    #[arg(long)]
    pub follow: bool,
}

/// Run `otgate grants`.
pub fn grants(globals: &Globals, args: GrantsArgs) -> anyhow::Result<ExitCode> {
    let filter = match (args.pending, args.active, args.ended) {
        (true, _, _) => "pending",
        (_, true, _) => "active",
        (_, _, true) => "ended",
        _ => "all",
    };
    let socket = globals.data_dir.control_socket();
    let answer = match client::call(&socket, "grants.list", json!({ "filter": filter })) {
        Ok(answer) => answer,
        // No daemon: read the grants view straight from the data directory.
        Err(ClientError::NotRunning { .. }) if !args.follow => offline_list(globals, filter)?,
        Err(_) => call(globals, "grants.list", json!({ "filter": filter }))?,
    };
    print_records(&answer, args.json)?;
    if args.follow {
        follow(globals, args.json)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `otgate revoke`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  otgate revoke G-0001 --as sue --reason 'unexpected writes'")]
pub struct RevokeArgs {
    /// The grant (`G-0001`) or pending request (`R-0001`).
    pub id: String,
    /// Who revokes.
    #[command(flatten)]
    pub acting: Acting,
    /// Why (kept on record).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

/// Run `otgate revoke`.
pub fn revoke(globals: &Globals, args: RevokeArgs) -> anyhow::Result<ExitCode> {
    call(
        globals,
        "grants.revoke",
        args.acting.params(&args.id, Some(&args.reason))?,
    )?;
    println!(
        "{} revoked by {}; its sessions are closed",
        args.id, args.acting.identity
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `otgate review`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  otgate review\n  otgate review --sign-off G-0003 --as sue --totp 123456\n  otgate review import hq-review.otgr",
    args_conflicts_with_subcommands = true
)]
pub struct ReviewArgs {
    /// Sign off this emergency grant's use.
    #[arg(long, value_name = "ID", requires = "identity")]
    pub sign_off: Option<String>,
    /// Who signs off (an OT supervisor).
    #[arg(long = "as", value_name = "USER")]
    pub identity: Option<String>,
    /// Your current TOTP code from the OT store.
    #[arg(long, value_name = "CODE")]
    pub totp: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Import HQ's signed review record instead.
    #[command(subcommand)]
    pub action: Option<super::review::ReviewAction>,
}

/// Run `otgate review`.
pub fn review(globals: &Globals, args: ReviewArgs) -> anyhow::Result<ExitCode> {
    if let Some(action) = args.action {
        return super::review::run(globals, action);
    }
    if let (Some(id), Some(identity)) = (&args.sign_off, &args.identity) {
        let acting = Acting {
            identity: identity.clone(),
            totp: args.totp.clone(),
            password_stdin: false,
        };
        call(globals, "grants.sign_off", acting.params(id, None)?)?;
        println!("{id}: emergency use signed off by {identity}");
        return Ok(ExitCode::SUCCESS);
    }
    let answer = call(globals, "grants.list", json!({ "filter": "review" }))?;
    print_records(&answer, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Call the running daemon, turning its refusals into errors with hints.
pub fn call(globals: &Globals, method: &str, params: Value) -> anyhow::Result<Value> {
    let socket = globals.data_dir.control_socket();
    client::call(&socket, method, params).map_err(|e| match e {
        ClientError::NotRunning { .. } => hint(
            e,
            format!(
                "start the appliance first: otgate serve --data-dir {}",
                globals.data_dir.root().display()
            ),
        ),
        ClientError::Refused(ref refusal) => match refusal.hint.clone() {
            Some(h) => hint(anyhow::anyhow!("{}", refusal.message), h),
            None => anyhow::anyhow!("{}", refusal.message),
        },
        other => anyhow::Error::new(other),
    })
}

/// The grants view of a data directory whose daemon is not running (opens the journal, so it
/// also refuses while another process holds it).
fn offline_list(globals: &Globals, filter: &str) -> anyhow::Result<Value> {
    let data_dir = &globals.data_dir;
    let key = crate::journal::keys::load_appliance_key(&data_dir.appliance_key()).map_err(|e| {
        hint(
            anyhow::anyhow!("{e}"),
            format!(
                "is {} an appliance? (otgate init)",
                data_dir.root().display()
            ),
        )
    })?;
    let journal = crate::journal::Journal::open(
        &data_dir.journal_dir(),
        key,
        crate::journal::JournalConfig::default(),
    )?;
    let state = crate::state::State::open(data_dir, &journal)?;
    let tree = state
        .tree(crate::grants::view::NAME)
        .ok_or_else(|| anyhow::anyhow!("the state has no grants view"))?;
    let registry = crate::grants::view::load(&tree)?;
    let filter: crate::grants::ListFilter = serde_json::from_value(json!(filter))?;
    let mut records: Vec<&GrantRecord> = registry
        .records()
        .filter(|r| crate::grants::service::matches_filter(r, filter))
        .collect();
    records.reverse();
    Ok(serde_json::to_value(records)?)
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn print_records(answer: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(answer)?);
        return Ok(());
    }
    let records: Vec<GrantRecord> =
        serde_json::from_value(answer.clone()).context("the daemon's list is malformed")?;
    if records.is_empty() {
        println!("(none)");
        return Ok(());
    }
    println!(
        "{:<8} {:<8} {:<10} {:<14} {:<12} {:<26} {:<26} what",
        "request", "grant", "state", "requester", "asset", "start", "end"
    );
    for r in records {
        let what = match (&r.outcome, r.state) {
            (Some(o), _) => format!("{} ({})", o.reason, o.by),
            (None, crate::grants::GrantState::Requested) => {
                format!("needs {}", crate::grants::service::words_of(&r.missing))
            }
            (None, _) if r.awaits_review() => "emergency: awaits review".to_owned(),
            (None, _) => r.operations.join(", "),
        };
        println!(
            "{:<8} {:<8} {:<10} {:<14} {:<12} {:<26} {:<26} {}",
            r.request_id,
            r.grant_id.as_deref().unwrap_or("-"),
            r.state,
            r.requester,
            r.asset,
            r.start.to_rfc3339(),
            r.end.to_rfc3339(),
            what
        );
    }
    Ok(())
}

fn follow(globals: &Globals, as_json: bool) -> anyhow::Result<()> {
    let socket = globals.data_dir.control_socket();
    let mut follower = client::Client::connect(&socket)?.follow()?;
    while let Some(notice) = follower.next_notice()? {
        if as_json {
            println!("{}", serde_json::to_string(&notice)?);
        } else {
            println!("{} {}", notice.at.to_rfc3339(), notice.message);
        }
    }
    Ok(())
}
