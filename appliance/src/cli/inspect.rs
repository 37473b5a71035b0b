//! `otgate inspect`, `otgate inspect learn`, `otgate inventory` and `otgate sim traffic`:
//! passive inspection from the command line.
//!
//! Reads a capture file (or an interface, receive only), prints alerts (or, with `--json`, every
//! event as JSON lines) and a summary. With an initialized data directory it judges writes
//! against the appliance's grants (policy: `--policy`, else the active bundle) and journals the
//! alerts and the inventory changes (through the running daemon, which then also revokes grants
//! whose rule opts in, or straight into the journal). `otgate inventory` reads the inventory
//! state view rebuilt from those records. Long files show progress on a terminal and stay quiet
//! otherwise.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::{hint, Globals};
use crate::inspect::alerts::Detector;
use crate::inspect::baseline::{Baseline, Learner};
use crate::inspect::event::Observation;
use crate::inspect::inventory::Inventory;
use crate::inspect::inventory_view::InventoryRecorder;
use crate::inspect::monitor::{Monitor, Sink, Stats};
use crate::journal::event::InspectEvent;

const INSPECT_HELP: &str = "\
Exit status: 0 done, 1 unreadable capture or baseline, 2 wrong usage.

Examples:
  otgate inspect --pcap plant.pcap                    alerts and a summary
  otgate inspect --pcap plant.pcap --json             every PDU, malformed frame and alert as JSON lines
  otgate inspect --pcap today.pcap --baseline week.json
  otgate inspect learn --pcap week.pcap --out week.json
  otgate inspect --pcap mirror.pcap --data-dir /var/lib/otgate --policy plant.toml
                                                      writes no grant covers: unauthorized_write
  otgate inspect --iface mirror0                      live, receive only (root)";

/// Arguments of `otgate inspect`.
#[derive(Debug, clap::Args)]
#[command(after_help = INSPECT_HELP, args_conflicts_with_subcommands = true)]
pub struct InspectArgs {
    /// Learn a baseline instead of inspecting.
    #[command(subcommand)]
    pub command: Option<InspectCommand>,
    /// A pcap or pcapng capture file to read.
    #[arg(long, value_name = "FILE", conflicts_with = "iface")]
    pub pcap: Option<PathBuf>,
    /// A network interface to capture from (receive only; needs root or CAP_NET_RAW).
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,
    /// Print every event as JSON lines (one object per line), then a summary object.
    #[arg(long)]
    pub json: bool,
    /// Print every event as text, not only alerts.
    #[arg(long, conflicts_with = "json")]
    pub events: bool,
    /// Compare traffic against this baseline (from `otgate inspect learn`).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Judge writes to this policy's assets against the grants in the data directory's journal
    /// (`unauthorized_write`); a policy TOML file. Default: the appliance's active bundle.
    #[arg(long, value_name = "POLICY.toml")]
    pub policy: Option<PathBuf>,
    /// Live capture: stop after this many frames.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Live capture: stop after this long (e.g. `30s`, `5m`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<std::time::Duration>,
}

/// The `otgate inspect` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum InspectCommand {
    /// Learn a baseline (talkers, function codes, address ranges, rates) from a capture.
    #[command(
        after_help = "Example:\n  otgate inspect learn --pcap week.pcap --out baseline.json"
    )]
    Learn(LearnArgs),
}

/// Arguments of `otgate inspect learn`.
#[derive(Debug, clap::Args)]
pub struct LearnArgs {
    /// The capture to learn from.
    #[arg(long, value_name = "FILE")]
    pub pcap: PathBuf,
    /// Where to write the baseline (JSON).
    #[arg(long, value_name = "BASELINE")]
    pub out: PathBuf,
    /// Overwrite `--out` if it exists and differs.
    #[arg(long)]
    pub force: bool,
}

/// Write `text` to `out` unless a different file is there and `force` is not given.
fn write_out(out: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    if let Ok(existing) = std::fs::read(out) {
        if existing != bytes && !force {
            return Err(hint(
                anyhow::anyhow!("{} exists and differs", out.display()),
                "pass --force to overwrite it, or choose another --out",
            ));
        }
    }
    std::fs::write(out, bytes).with_context(|| format!("cannot write {}", out.display()))
}

struct Printer<W: Write> {
    out: W,
    json: bool,
    events: bool,
    failed: Option<std::io::Error>,
}

impl<W: Write> Sink for Printer<W> {
    fn observe(&mut self, o: &Observation<'_>) {
        if self.failed.is_some() {
            return;
        }
        let line = if self.json {
            Some(o.to_json())
        } else if self.events || matches!(o, Observation::Alert(_)) {
            Some(o.to_text())
        } else {
            None
        };
        if let Some(line) = line {
            if let Err(e) = writeln!(self.out, "{line}") {
                self.failed = Some(e);
            }
        }
    }
}

/// Collect alerts for the journal (or, live, journal each at once) and tee observations to the
/// printer.
struct Tee<'a> {
    printer: &'a mut dyn Sink,
    alerts: Vec<InspectEvent>,
    /// Live capture on an appliance: journal each alert as it comes, so that the appliance acts
    /// on it now, not when the capture ends.
    journal_now: Option<&'a crate::datadir::DataDir>,
    journaled: crate::inspect::appliance::Journaled,
    failed: Option<anyhow::Error>,
}

impl Sink for Tee<'_> {
    fn observe(&mut self, o: &Observation<'_>) {
        if let Observation::Alert(a) = o {
            let event = InspectEvent::from_alert(a);
            match self.journal_now {
                Some(data_dir) if self.failed.is_none() => {
                    match crate::inspect::appliance::journal_events(data_dir, vec![event]) {
                        Ok(done) => {
                            self.journaled.recorded += done.recorded;
                            self.journaled.revoked.extend(done.revoked);
                            self.journaled.via_daemon |= done.via_daemon;
                        }
                        Err(e) => self.failed = Some(e),
                    }
                }
                Some(_) => {}
                None => self.alerts.push(event),
            }
        }
        self.printer.observe(o);
    }
}

fn progress_printer() -> Option<impl FnMut(u64, u64)> {
    let on_terminal = std::io::stderr().is_terminal();
    on_terminal.then_some(|done: u64, size: u64| {
        let pct = done.saturating_mul(100).checked_div(size).unwrap_or(100);
        eprint!(
            "\rotgate: inspected {pct}% ({} MB of {} MB)",
            done >> 20,
            size >> 20
        );
    })
}

fn summary_text(stats: &Stats, inventory: &Inventory, detector: &Detector, seconds: f64) -> String {
    let mut fcs: Vec<String> = stats
        .modbus_functions
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(fc, n)| format!("{fc}:{n}"))
        .collect();
    if fcs.is_empty() {
        fcs.push("none".into());
    }
    let dfcs: Vec<String> = stats
        .dnp3_functions
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(fc, n)| format!("{fc}:{n}"))
        .collect();
    format!(
        "summary: {} frames in {:.2}s; {} TCP flows; Modbus {} PDUs (by function {}); DNP3 {} link frames, {} fragments (by function {}); {} malformed ({} bad CRC); {} alerts ({} repeats suppressed); {} assets",
        stats.frames,
        seconds,
        stats.tcp_flows,
        stats.modbus_pdus,
        fcs.join(" "),
        stats.dnp3_link_frames,
        stats.dnp3_fragments,
        if dfcs.is_empty() { "none".to_string() } else { dfcs.join(" ") },
        stats.malformed,
        stats.bad_crc,
        stats.alerts,
        detector.suppressed(),
        inventory.assets.len(),
    )
}

/// Whether `dir` is an initialized appliance data directory.
fn initialized(globals: &Globals) -> bool {
    globals.data_dir.appliance_key().exists() || globals.data_dir.journal_dir().exists()
}

/// Run `otgate inspect`.
pub fn inspect(globals: &Globals, args: InspectArgs) -> anyhow::Result<ExitCode> {
    if let Some(InspectCommand::Learn(learn)) = args.command {
        return run_learn(learn);
    }
    let mut detector = Detector::new();
    if let Some(path) = &args.baseline {
        let baseline = Baseline::load(path).map_err(|e| {
            hint(
                e,
                "make one with: otgate inspect learn --pcap FILE --out BASELINE",
            )
        })?;
        detector = detector.with_baseline(baseline);
    }
    let with_data_dir = initialized(globals);
    let policy = match &args.policy {
        Some(path) => {
            let source = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read policy {}", path.display()))?;
            let parsed =
                otgate_policy::parse(&source, &path.display().to_string()).map_err(|d| {
                    hint(
                        anyhow::anyhow!("{d}"),
                        format!("otgate policy check {}", path.display()),
                    )
                })?;
            Some(parsed)
        }
        None => None,
    };
    if let Some(coverage) =
        crate::inspect::appliance::grant_coverage(&globals.data_dir, policy.as_ref())?
    {
        detector = detector.with_grants(Box::new(coverage));
    }
    let mut monitor = Monitor::new(detector);
    let stdout = std::io::stdout();
    let mut printer = Printer {
        out: std::io::BufWriter::new(stdout.lock()),
        json: args.json,
        events: args.events,
        failed: None,
    };
    let started = std::time::Instant::now();
    let live_on_appliance = with_data_dir && args.iface.is_some() && args.pcap.is_none();
    let mut tee = Tee {
        printer: &mut printer,
        alerts: Vec::new(),
        journal_now: live_on_appliance.then_some(&globals.data_dir),
        journaled: Default::default(),
        failed: None,
    };
    match (&args.pcap, &args.iface) {
        (Some(pcap), _) => {
            let mut progress = progress_printer();
            let progress_ref: Option<&mut dyn FnMut(u64, u64)> =
                progress.as_mut().map(|p| p as &mut dyn FnMut(u64, u64));
            crate::inspect::inspect_file(pcap, &mut monitor, &mut tee, progress_ref)
                .map_err(|e| hint(e, "check the file is a pcap or pcapng capture"))?;
            if progress.is_some() {
                eprintln!();
            }
        }
        (None, Some(iface)) => {
            let limits = crate::inspect::live::Limits {
                frames: args.count,
                duration: args.duration,
            };
            let stop = std::sync::atomic::AtomicBool::new(false);
            let mut ready = || eprintln!("otgate: capturing on {iface} (receive only)");
            crate::inspect::live::capture_until(
                iface,
                limits,
                &stop,
                &mut monitor,
                &mut tee,
                &mut ready,
            )
            .map_err(|e| {
                hint(
                    e,
                    "live capture needs root (or CAP_NET_RAW) and an existing interface",
                )
            })?;
            monitor.finish(&mut tee);
        }
        (None, None) => {
            return Err(hint(
                anyhow::anyhow!("nothing to inspect"),
                "give --pcap FILE or --iface IF",
            ))
        }
    }
    let mut records = std::mem::take(&mut tee.alerts);
    let mut journaled = std::mem::take(&mut tee.journaled);
    if let Some(e) = tee.failed.take() {
        return Err(e.context("cannot journal an alert"));
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(e) = printer.failed.take() {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(anyhow::Error::new(e).context("cannot write events"));
        }
    }
    let stats = monitor.stats().clone();
    let inventory = monitor.take_inventory();
    if with_data_dir {
        records.extend(InventoryRecorder::new().changes(&inventory));
        let done = crate::inspect::appliance::journal_events(&globals.data_dir, records)?;
        journaled.recorded += done.recorded;
        journaled.revoked.extend(done.revoked);
        journaled.via_daemon |= done.via_daemon;
    }
    let summary = summary_text(&stats, &inventory, monitor.detector(), seconds);
    if args.json {
        let line = serde_json::json!({
            "event": "summary",
            "stats": stats,
            "assets": inventory.assets.len(),
            "alerts_suppressed": monitor.detector().suppressed(),
            "journaled": journaled.recorded,
            "revoked": journaled.revoked,
        });
        let _ = writeln!(printer.out, "{line}");
    } else {
        let _ = writeln!(printer.out, "{summary}");
        if journaled.recorded > 0 {
            let _ = writeln!(
                printer.out,
                "journaled {} inspection records{}",
                journaled.recorded,
                if journaled.via_daemon {
                    " through the running appliance"
                } else {
                    ""
                }
            );
        }
        if !journaled.revoked.is_empty() {
            let _ = writeln!(
                printer.out,
                "revoked (policy revoke_on): {}",
                journaled.revoked.join(", ")
            );
        }
    }
    let _ = printer.out.flush();
    Ok(ExitCode::SUCCESS)
}

fn run_learn(args: LearnArgs) -> anyhow::Result<ExitCode> {
    if args.out.exists() && !args.force {
        // Checked again with the content below; fail early before reading a big capture.
        let _ = std::fs::metadata(&args.out);
    }
    let mut monitor = Monitor::new(Detector::new());
    monitor.learn(Learner::new(args.pcap.display().to_string()));
    let mut progress = progress_printer();
    let progress_ref: Option<&mut dyn FnMut(u64, u64)> =
        progress.as_mut().map(|p| p as &mut dyn FnMut(u64, u64));
    crate::inspect::inspect_file(
        &args.pcap,
        &mut monitor,
        &mut crate::inspect::monitor::Discard,
        progress_ref,
    )
    .map_err(|e| hint(e, "check the file is a pcap or pcapng capture"))?;
    if progress.is_some() {
        eprintln!();
    }
    let baseline = monitor
        .take_learner()
        .map(Learner::finish)
        .unwrap_or_else(|| Baseline::new(""));
    write_out(&args.out, baseline.to_json().as_bytes(), args.force)?;
    println!(
        "learned {} pairs from {} frames into {}",
        baseline.pairs.len(),
        monitor.stats().frames,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

const INVENTORY_HELP: &str = "\
Reads the inventory state view (rebuilt from the journal's inspection records), from the
running appliance when it serves, else from the data directory.

Exit status: 0 done, 1 no appliance there or its state is unreadable.

Example:
  otgate inventory --data-dir /var/lib/otgate --json";

/// Arguments of `otgate inventory`.
#[derive(Debug, clap::Args)]
#[command(after_help = INVENTORY_HELP)]
pub struct InventoryArgs {
    /// Print the inventory as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The inventory view: from the running daemon, or else from the state in the data directory.
fn load_inventory(globals: &Globals) -> anyhow::Result<Inventory> {
    let data_dir = &globals.data_dir;
    if let Ok(mut daemon) = crate::control::client::Client::connect(&data_dir.control_socket()) {
        let answer = daemon
            .call("inspect.inventory", serde_json::json!({}))
            .context("the running appliance did not answer with its inventory")?;
        return serde_json::from_value(answer).context("the appliance's inventory does not read");
    }
    let key = crate::journal::keys::load_appliance_key(&data_dir.appliance_key()).map_err(|e| {
        hint(
            anyhow::anyhow!("{e}"),
            format!(
                "is {} an appliance? (otgate init --data-dir {0})",
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
        .tree(crate::inspect::inventory_view::NAME)
        .ok_or_else(|| anyhow::anyhow!("the state has no inventory view"))?;
    Ok(crate::inspect::inventory_view::load(&tree)?)
}

/// Run `otgate inventory`.
pub fn inventory(globals: &Globals, args: InventoryArgs) -> anyhow::Result<ExitCode> {
    let inventory = load_inventory(globals)?;
    if args.json {
        println!("{}", serde_json::to_string(&inventory)?);
        return Ok(ExitCode::SUCCESS);
    }
    if inventory.assets.is_empty() {
        println!("no assets seen yet");
        println!(
            "hint: otgate inspect --pcap FILE --data-dir {}",
            globals.data_dir.root().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let in_order: std::collections::BTreeMap<_, _> = inventory.assets.iter().collect();
    for asset in in_order.into_values() {
        let roles: Vec<String> = asset.roles.iter().map(|r| format!("{r:?}")).collect();
        println!(
            "{}  macs [{}]  roles [{}]  ports {:?}  units {:?}  modbus fc {:?}  dnp3 fc {:?}  messages {}  first {}  last {}",
            asset.address,
            asset.macs.iter().cloned().collect::<Vec<_>>().join(","),
            roles.join(","),
            asset.ports,
            asset.unit_ids,
            asset.modbus_functions,
            asset.dnp3_functions,
            asset.messages,
            asset.first_seen.to_rfc3339(),
            asset.last_seen.to_rfc3339(),
        );
        for (key, set) in &asset.ranges {
            println!("    {key} {set}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `otgate sim traffic`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  otgate sim traffic --out bench.pcap --size 100MB\n  otgate sim traffic --out small.pcap --packets 10000"
)]
pub struct TrafficArgs {
    /// Where to write the capture (pcap, Ethernet).
    #[arg(long, value_name = "FILE.pcap")]
    pub out: PathBuf,
    /// Approximate file size, e.g. `100MB`, `1GB`, `500KB`.
    #[arg(long, value_name = "SIZE", conflicts_with = "packets", value_parser = parse_size)]
    pub size: Option<u64>,
    /// Number of packets instead of a size.
    #[arg(long, value_name = "N")]
    pub packets: Option<u64>,
    /// Share of DNP3 conversations, in percent (the rest is Modbus).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub dnp3_percent: u8,
    /// Overwrite `--out` if it exists.
    #[arg(long)]
    pub force: bool,
}

fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_uppercase();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("not a size: {text} (try 100MB)"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" => 1 << 10,
        "M" | "MB" => 1 << 20,
        "G" | "GB" => 1 << 30,
        other => return Err(format!("unknown size unit {other} (B, KB, MB, GB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size too large: {text}"))
}

/// Run `otgate sim traffic`.
pub fn sim_traffic(_globals: &Globals, args: TrafficArgs) -> anyhow::Result<ExitCode> {
    if args.out.exists() && !args.force {
        return Err(hint(
            anyhow::anyhow!("{} exists", args.out.display()),
            "pass --force to overwrite it, or choose another --out",
        ));
    }
    let target = match (args.size, args.packets) {
        (Some(bytes), _) => crate::sim::traffic::Target::Bytes(bytes),
        (None, Some(n)) => crate::sim::traffic::Target::Packets(n),
        (None, None) => crate::sim::traffic::Target::Bytes(10 << 20),
    };
    let report = crate::sim::traffic::generate(
        &args.out,
        &crate::sim::traffic::GeneratorConfig {
            target,
            dnp3_percent: args.dnp3_percent,
            ..Default::default()
        },
    )?;
    println!(
        "wrote {}: {} packets, {} bytes ({} Modbus and {} DNP3 conversations, {} Modbus and {} DNP3 messages)",
        args.out.display(),
        report.packets,
        report.bytes,
        report.modbus_flows,
        report.dnp3_flows,
        report.modbus_messages,
        report.dnp3_messages
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn run(args: &[&str]) -> anyhow::Result<ExitCode> {
        crate::cli::run(crate::cli::Cli::try_parse_from(args)?)
    }

    #[test]
    fn learn_writes_a_baseline_never_overwrites_without_force_and_inspect_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
        let (pcap, other, out) = (d("a.pcap"), d("b.pcap"), d("baseline.json"));
        run(&[
            "otgate",
            "sim",
            "traffic",
            "--out",
            &pcap,
            "--packets",
            "2000",
        ])
        .unwrap();
        let cfg = crate::sim::traffic::GeneratorConfig {
            target: crate::sim::traffic::Target::Packets(2000),
            seed: 99,
            ..Default::default()
        };
        crate::sim::traffic::generate(Path::new(&other), &cfg).unwrap();
        // `sim traffic` refuses to overwrite without --force.
        assert!(run(&[
            "otgate",
            "sim",
            "traffic",
            "--out",
            &pcap,
            "--packets",
            "10"
        ])
        .is_err());
        run(&["otgate", "inspect", "learn", "--pcap", &pcap, "--out", &out]).unwrap();
        let baseline = Baseline::load(Path::new(&out)).unwrap();
        assert!(!baseline.pairs.is_empty());
        // Same capture, same baseline: writing it again is fine.
        run(&["otgate", "inspect", "learn", "--pcap", &pcap, "--out", &out]).unwrap();
        // A different one is refused without --force, and the file is unchanged.
        let before = std::fs::read(&out).unwrap();
        let err = run(&[
            "otgate", "inspect", "learn", "--pcap", &other, "--out", &out,
        ])
        .unwrap_err();
        assert!(format!("{err:#}").contains("exists and differs"), "{err:#}");
        assert_eq!(std::fs::read(&out).unwrap(), before);
        run(&[
            "otgate", "inspect", "learn", "--pcap", &other, "--out", &out, "--force",
        ])
        .unwrap();
        assert_ne!(std::fs::read(&out).unwrap(), before);
        let data = d("data");
        run(&[
            "otgate",
            "--data-dir",
            &data,
            "inspect",
            "--pcap",
            &pcap,
            "--baseline",
            &out,
        ])
        .unwrap();
    }

    #[test]
    fn bad_inputs_are_refused_with_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"version\": 9}").unwrap();
        let pcap = dir.path().join("x.pcap");
        std::fs::write(&pcap, b"nonsense").unwrap();
        let data = dir.path().join("data");
        let (bad, pcap, data) = (
            bad.to_str().unwrap(),
            pcap.to_str().unwrap(),
            data.to_str().unwrap(),
        );
        let err = run(&["otgate", "--data-dir", data, "inspect", "--pcap", pcap]).unwrap_err();
        assert!(format!("{err:#}").contains("x.pcap"), "{err:#}");
        let err = run(&[
            "otgate",
            "--data-dir",
            data,
            "inspect",
            "--pcap",
            pcap,
            "--baseline",
            bad,
        ])
        .unwrap_err();
        assert!(format!("{err:#}").contains("version 9"), "{err:#}");
        let err = run(&["otgate", "--data-dir", data, "inspect"]).unwrap_err();
        assert!(format!("{err:#}").contains("nothing to inspect"), "{err:#}");
        assert!(run(&[
            "otgate",
            "inspect",
            "--iface",
            "no-such-if0",
            "--count",
            "1"
        ])
        .is_err());
    }
}
