//! `otgate policy`: check and explain policy files (this file); import, pull and status of signed
//! bundles delegate to `bundle.rs`.
//!
//! `check` and `explain` work on a plain TOML file and touch no appliance state: they read the
//! file, ask `otgate-policy`, and print. `check` prints every problem at once as
//! `file:line:column: message`; `explain` prints the decision for one request and the rule that
//! made it, in words (or JSON).

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use otgate_policy::{AccessRequest, Decision, Diagnostic, OperationSpec, Policy, Severity};

use super::{hint, Globals};

/// The `otgate policy` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and report every problem at once.
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
    /// Explain the decision for one request against a policy file.
    #[command(after_help = EXPLAIN_HELP)]
    Explain(ExplainArgs),
    /// Import a signed policy bundle from a file (removable media).
    Import(super::bundle::ImportArgs),
    /// Pull the newest signed bundle from HQ over HTTPS (certificate pinned).
    Pull(super::bundle::PullArgs),
    /// Show the active policy: version, signers, validity, grace, last pull.
    Status(super::bundle::StatusArgs),
}

const CHECK_HELP: &str = "\
Prints a short summary and exits 0 when the policy is valid (warnings, such as rules that waive
MFA, are printed but do not fail the check). Otherwise prints every problem as
FILE:LINE:COLUMN: message and exits 1.

Example:
  otgate policy check policies/examples/plant.toml";

const EXPLAIN_HELP: &str = "\
Prints the decision (allow, needs approval, or deny), the rule that made it, the approvals
needed, and the scope and window clipped to what the rule permits. Exits 0 when the request
would be allowed or needs approval, 1 when it would be denied or the policy is invalid.

Operations: read, write, diagnostics, device-id, program, fc:N, optionally narrowed as
write:holding-registers:100-199 or read:coils@1; dnp3:control; vnc:view; tcp.

Example:
  otgate policy explain policies/examples/plant.toml --who alice --target line3-plc \\
      --op write:holding-registers:100-199 --at 2026-11-28T06:00:00+01:00 --ticket CHG-1234";

/// Arguments of `otgate policy check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The policy file (TOML).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `otgate policy explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The policy file (TOML).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Who asks (an identity id).
    #[arg(long, value_name = "ID")]
    pub who: String,
    /// The asset asked for.
    #[arg(long, value_name = "ID")]
    pub target: String,
    /// An operation (repeat for several), e.g. `read` or `write:holding-registers:100-199`.
    #[arg(long = "op", value_name = "OP", required = true)]
    pub ops: Vec<OperationSpec>,
    /// When the grant would start and the request is made (RFC 3339); default now.
    #[arg(long, value_name = "TIME", value_parser = parse_instant)]
    pub at: Option<DateTime<Utc>>,
    /// How long the grant would last, e.g. `4h` or `30m`.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// The change ticket.
    #[arg(long, value_name = "TICKET")]
    pub ticket: Option<String>,
    /// The address the request comes from.
    #[arg(long, value_name = "IP")]
    pub source: Option<IpAddr>,
    /// Assume the requester did not complete a second factor (default: assume they did).
    #[arg(long)]
    pub no_mfa: bool,
    /// Explain a break-glass activation (only emergency rules apply).
    #[arg(long)]
    pub emergency: bool,
    /// Print the request, the decision and the explanation as one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}: expected an RFC 3339 instant like 2026-11-28T06:00:00+01:00"))
}

/// Run an `otgate policy` subcommand.
pub fn run(globals: &Globals, command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Check(a) => check(a, &mut std::io::stdout(), &mut std::io::stderr()),
        PolicyCommand::Explain(a) => explain(a, &mut std::io::stdout()),
        PolicyCommand::Import(a) => super::bundle::import(globals, a),
        PolicyCommand::Pull(a) => super::bundle::pull(globals, a),
        PolicyCommand::Status(a) => super::bundle::status(globals, a),
    }
}

fn read_policy_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        hint(
            anyhow::Error::new(e).context(format!("cannot read policy file {}", path.display())),
            "give the path of a policy TOML file, e.g. policies/examples/plant.toml",
        )
    })
}

fn diagnostic_json(d: &Diagnostic) -> serde_json::Value {
    serde_json::json!({
        "file": d.file,
        "line": d.line,
        "column": d.column,
        "severity": d.severity,
        "message": d.kind.to_string(),
    })
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// A one-paragraph summary of a valid policy.
pub fn summary(policy: &Policy) -> String {
    let mut s = format!(
        "policy for site {} ({}): {}, {}, {}, {} IT and {} OT identities, {}, {}",
        policy.site.id,
        policy.site.timezone,
        count(policy.segments.len(), "segment"),
        count(policy.assets.len(), "asset"),
        count(policy.roles.len(), "role"),
        policy.it_identities.len(),
        policy.ot_identities.len(),
        count(policy.schedules.len(), "schedule"),
        count(policy.rules.len(), "rule"),
    );
    match &policy.break_glass {
        Some(bg) => s.push_str(&format!(
            "; break-glass under rule {} for tags [{}], at most {}, {}, {}",
            bg.rule,
            bg.tags.join(", "),
            otgate_policy::duration_serde::format(bg.max_duration),
            count(bg.panels.len(), "panel"),
            count(usize::from(bg.sealed_codes), "sealed code")
        )),
        None => s.push_str("; no break-glass"),
    }
    s.push_str(&format!(
        "; valid {} after issue, {} offline grace",
        otgate_policy::duration_serde::format(policy.validity.lifetime),
        otgate_policy::duration_serde::format(policy.validity.offline_grace)
    ));
    s
}

/// `otgate policy check`, writing its report to `out` and its diagnostics to `err`.
pub fn check(
    args: CheckArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let text = read_policy_text(&args.file)?;
    let name = args.file.display().to_string();
    match otgate_policy::parse(&text, &name) {
        Ok(policy) => {
            if args.json {
                let json = serde_json::json!({
                    "file": name,
                    "valid": true,
                    "site": policy.site.id,
                    "summary": summary(&policy),
                    "diagnostics": policy.warnings().iter().map(diagnostic_json).collect::<Vec<_>>(),
                });
                writeln!(out, "{json}")?;
            } else {
                for w in policy.warnings() {
                    writeln!(err, "{w}")?;
                }
                writeln!(out, "{name}: ok: {}", summary(&policy))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(diags) => {
            let errors = diags.errors().count();
            if args.json {
                let json = serde_json::json!({
                    "file": name,
                    "valid": false,
                    "diagnostics": diags.iter().map(diagnostic_json).collect::<Vec<_>>(),
                });
                writeln!(out, "{json}")?;
            } else {
                for d in diags.iter() {
                    writeln!(err, "{d}")?;
                }
                writeln!(
                    err,
                    "otgate: {name}: {errors} error{} in the policy",
                    if errors == 1 { "" } else { "s" }
                )?;
                writeln!(
                    err,
                    "hint: fix the lines above and run `otgate policy check {name}` again"
                )?;
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// `otgate policy explain`, writing the explanation to `out`.
pub fn explain(args: ExplainArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let text = read_policy_text(&args.file)?;
    let name = args.file.display().to_string();
    let policy = otgate_policy::parse(&text, &name).map_err(|diags| {
        let n = diags.errors().count();
        hint(
            anyhow::Error::new(diags).context(format!("{name} is not a valid policy ({n} errors)")),
            format!("run `otgate policy check {name}` to see every problem"),
        )
    })?;
    let at = args.at.unwrap_or_else(Utc::now);
    let request = AccessRequest {
        who: args.who.as_str().into(),
        target: args.target.as_str().into(),
        operations: args.ops,
        start: at,
        duration: args.duration,
        ticket: args.ticket,
        source: args.source,
        mfa: !args.no_mfa,
        emergency: args.emergency,
    };
    let decision = policy.decide(&request, at);
    let words = explanation(&policy, &request, &decision);
    if args.json {
        let json = serde_json::json!({
            "request": request,
            "verdict": decision.verdict(),
            "decision": decision,
            "explanation": words,
        });
        writeln!(
            out,
            "{}",
            serde_json::to_string(&json).context("serializing the decision")?
        )?;
    } else {
        writeln!(out, "{words}")?;
    }
    Ok(match decision {
        Decision::Deny(_) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

/// The decision in words, with the request it answers and the site's local times.
pub fn explanation(policy: &Policy, request: &AccessRequest, decision: &Decision) -> String {
    let ops: Vec<String> = request.operations.iter().map(ToString::to_string).collect();
    let tz = policy.site.timezone;
    let mut out = format!(
        "request: {} -> {} [{}] from {} for {}{}\n",
        request.who,
        request.target,
        ops.join(", "),
        request.start.with_timezone(&tz).to_rfc3339(),
        otgate_policy::duration_serde::format(request.duration),
        request
            .ticket
            .as_deref()
            .map(|t| format!(", ticket {t}"))
            .unwrap_or_default(),
    );
    out.push_str(&decision.to_string());
    if let Some(g) = decision.grantable() {
        out.push_str(&format!(
            "\n  local window ({tz}): {} to {}",
            g.start.with_timezone(&tz).format("%a %Y-%m-%d %H:%M"),
            g.end.with_timezone(&tz).format("%a %Y-%m-%d %H:%M")
        ));
    }
    if let Decision::Deny(otgate_policy::DenyReason::OutsideSchedule {
        next_window: Some(next),
        ..
    }) = decision
    {
        out.push_str(&format!(
            "\n  next window (local, {tz}): {}",
            next.with_timezone(&tz).format("%a %Y-%m-%d %H:%M")
        ));
    }
    if policy
        .warnings()
        .iter()
        .any(|w| w.severity == Severity::Warning)
    {
        out.push_str(&format!(
            "\n  note: the policy has {} warning(s); see `otgate policy check`",
            policy.warnings().len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser as _;

    const PLANT: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/examples/plant.toml"
    );

    fn parse_cli(args: &[&str]) -> PolicyCommand {
        let mut argv = vec!["otgate", "policy"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Policy(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn run_check(args: &[&str]) -> (ExitCode, String, String) {
        let PolicyCommand::Check(a) = parse_cli(args) else {
            panic!()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = check(a, &mut out, &mut err).unwrap();
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn run_explain(args: &[&str]) -> (ExitCode, String) {
        let PolicyCommand::Explain(a) = parse_cli(args) else {
            panic!()
        };
        let mut out = Vec::new();
        let code = explain(a, &mut out).unwrap();
        (code, String::from_utf8(out).unwrap())
    }

    #[test]
    fn check_accepts_the_sample_plant() {
        let (code, out, err) = run_check(&["check", PLANT]);
        assert_eq!(code, ExitCode::SUCCESS);
        assert!(
            out.contains("ok: policy for site plant-a (Europe/Berlin)"),
            "{out}"
        );
        assert!(out.contains("3 rules"), "{out}");
        assert!(err.is_empty(), "{err}");
        let (_, out, _) = run_check(&["check", PLANT, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["valid"], true);
        assert_eq!(v["site"], "plant-a");
    }

    #[test]
    fn check_reports_every_error_with_file_line_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        let text = std::fs::read_to_string(PLANT)
            .unwrap()
            .replace(
                "timezone = \"Europe/Berlin\"",
                "timezone = \"Europe/Berlinn\"",
            )
            .replace(
                "write:holding-registers:100-199",
                "write:holding-registers:199-100",
            );
        std::fs::write(&path, text).unwrap();
        let path = path.to_str().unwrap();
        let (code, out, err) = run_check(&["check", path]);
        assert_eq!(code, ExitCode::from(1));
        assert!(out.is_empty());
        let lines: Vec<&str> = err.lines().collect();
        assert!(
            lines[0].starts_with(&format!("{path}:19:12: invalid timezone")),
            "{err}"
        );
        assert!(lines[1].contains("inverted range"), "{err}");
        assert!(lines[2].contains("2 errors"), "{err}");
        assert!(lines[3].starts_with("hint: "), "{err}");
        let (code, out, _) = run_check(&["check", path, "--json"]);
        assert_eq!(code, ExitCode::from(1));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["valid"], false);
        assert_eq!(v["diagnostics"][0]["line"], 19);
        assert_eq!(v["diagnostics"][0]["column"], 12);
    }

    #[test]
    fn check_of_a_missing_file_is_an_error_with_a_hint() {
        let PolicyCommand::Check(a) = parse_cli(&["check", "/nonexistent/policy.toml"]) else {
            panic!()
        };
        let error = check(a, &mut Vec::new(), &mut Vec::new()).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/policy.toml"),
            "{error:#}"
        );
        assert!(error
            .chain()
            .any(|c| c.downcast_ref::<crate::cli::Hinted>().is_some()));
    }

    #[test]
    fn explain_the_maintenance_window() {
        let (code, out) = run_explain(&[
            "explain",
            PLANT,
            "--who",
            "alice",
            "--target",
            "line3-plc",
            "--op",
            "write:holding-registers:100-199",
            "--at",
            "2026-11-28T07:00:00+01:00",
            "--duration",
            "6h",
            "--ticket",
            "CHG-1234",
        ]);
        assert_eq!(code, ExitCode::SUCCESS);
        assert!(
            out.contains("NEEDS APPROVAL under rule `line3-maintenance`"),
            "{out}"
        );
        assert!(out.contains("1 shift-supervisor"), "{out}");
        assert!(out.contains("cut to the rule's maximum of 4h"), "{out}");
        assert!(
            out.contains("Sat 2026-11-28 07:00 to Sat 2026-11-28 10:00"),
            "{out}"
        );
    }

    #[test]
    fn explain_a_denial_exits_1_and_names_the_reason() {
        let (code, out) = run_explain(&[
            "explain",
            PLANT,
            "--who",
            "alice",
            "--target",
            "line3-plc",
            "--op",
            "read",
            "--at",
            "2026-11-24T07:00:00+01:00",
            "--ticket",
            "CHG-1234",
        ]);
        assert_eq!(code, ExitCode::from(1));
        assert!(out.contains("DENY"), "{out}");
        assert!(
            out.contains("outside the schedule of rule `line3-maintenance`"),
            "{out}"
        );
        assert!(
            out.contains("next window (local, Europe/Berlin): Sat 2026-11-28 06:00"),
            "{out}"
        );
        let (code, out) = run_explain(&[
            "explain",
            PLANT,
            "--who",
            "vendor-acme",
            "--target",
            "line1-plc",
            "--op",
            "write",
            "--at",
            "2026-11-24T07:00:00+01:00",
            "--json",
        ]);
        assert_eq!(code, ExitCode::from(1));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["verdict"], "deny");
        assert_eq!(v["decision"]["detail"]["reason"], "operation_not_permitted");
    }

    #[test]
    fn explain_refuses_bad_operations_as_usage_errors() {
        let result = Cli::try_parse_from([
            "otgate",
            "policy",
            "explain",
            PLANT,
            "--who",
            "alice",
            "--target",
            "line3-plc",
            "--op",
            "erase",
        ]);
        let error = result.unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(
            error
                .to_string()
                .contains("unknown operation class `erase`"),
            "{error}"
        );
    }
}
