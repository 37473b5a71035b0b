//! Passive inspection throughput against tshark, on one capture made by the traffic generator in
//! the same run (Modbus-heavy: 95 % Modbus conversations, 5 % DNP3).
//!
//! `cargo bench -p otgate --bench inspect` (about 1-3 minutes, most of it tshark) generates
//! `OTGATE_BENCH_MB` (default 100) MB of capture, then measures, each in its own process under
//! `/usr/bin/time` (wall time, CPU time and peak RSS):
//!
//! - baseline: reading every record of the file (`CaptureFile::for_each_frame`, nothing else);
//! - ours: `Monitor` over the file (slicing, flow table, reassembly, decode, pairing, inventory,
//!   detection; events built but not printed), single-threaded, best of 3;
//! - tshark: `tshark -r FILE -Y modbus -T fields -e modbus.func_code > /dev/null`, once.
//!
//! Packets per second per core are packets over the CPU time (user + system) the process used,
//! which a loaded machine distorts far less than wall time; wall-time figures are printed too.
//! Without `--bench` (as `cargo test --all-targets` runs it) it only does a small smoke run of
//! ours, so the test suite stays quick and needs no tshark.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use otgate::inspect::alerts::Detector;
use otgate::inspect::monitor::{Discard, Monitor};
use otgate::sim::traffic::{generate, GeneratorConfig, Target};

fn inspect_once(path: &Path) -> (u64, f64, u64) {
    let mut monitor = Monitor::new(Detector::new());
    let started = Instant::now();
    let frames = otgate::inspect::inspect_file(path, &mut monitor, &mut Discard, None).unwrap();
    let secs = started.elapsed().as_secs_f64();
    (frames, secs, monitor.stats().modbus_pdus)
}

/// The baseline: read every record, touch its bytes' length, nothing more.
fn read_once(path: &Path) -> (u64, f64, u64) {
    let started = Instant::now();
    let mut file = otgate::inspect::capture::CaptureFile::open(path).unwrap();
    let mut frames = 0u64;
    let mut bytes = 0u64;
    file.for_each_frame(|f| {
        frames += 1;
        bytes += f.data.len() as u64;
    })
    .unwrap();
    (frames, started.elapsed().as_secs_f64(), bytes)
}

/// What `/usr/bin/time` saw of a child.
struct Timed {
    stdout: String,
    wall: f64,
    cpu: f64,
    rss_kib: u64,
}

/// Run `cmd` under `/usr/bin/time`: its stdout, wall and CPU (user + system) seconds, peak RSS.
fn timed(cmd: &mut Command) -> Timed {
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("TIME %e %M %U %S")
        .arg(program)
        .args(args)
        .output()
        .expect("run /usr/bin/time");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("TIME "))
        .expect("time output");
    let mut parts = line.split_whitespace().skip(1);
    let wall: f64 = parts.next().unwrap().parse().unwrap();
    let rss_kib: u64 = parts.next().unwrap().parse().unwrap();
    let user: f64 = parts.next().unwrap().parse().unwrap();
    let system: f64 = parts.next().unwrap().parse().unwrap();
    Timed {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        wall,
        cpu: user + system,
        rss_kib,
    }
}

/// Best of `runs` child runs in `mode` (by CPU time): (in-process seconds, the child's figures).
fn best_of(me: &Path, mode: &str, path: &Path, runs: usize, packets: u64) -> (f64, u64, Timed) {
    let mut best: Option<(f64, u64, Timed)> = None;
    for _ in 0..runs {
        let t = timed(Command::new(me).arg(mode).arg(path));
        let mut parts = t.stdout.split_whitespace();
        let frames: u64 = parts.next().unwrap().parse().unwrap();
        let secs: f64 = parts.next().unwrap().parse().unwrap();
        let count: u64 = parts.next().unwrap().parse().unwrap();
        assert_eq!(frames, packets);
        if best.as_ref().is_none_or(|(_, _, b)| t.cpu < b.cpu) {
            best = Some((secs, count, t));
        }
    }
    best.unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    for (mode, run) in [
        (
            "--child-inspect",
            inspect_once as fn(&Path) -> (u64, f64, u64),
        ),
        ("--child-read", read_once),
    ] {
        if let Some(i) = args.iter().position(|a| a == mode) {
            let (frames, secs, count) = run(Path::new(&args[i + 1]));
            println!("{frames} {secs} {count}");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.pcap");
    let benching = args.iter().any(|a| a == "--bench");
    if !benching {
        let config = GeneratorConfig {
            target: Target::Packets(20_000),
            dnp3_percent: 5,
            ..Default::default()
        };
        let report = generate(&path, &config).unwrap();
        let (frames, _, pdus) = inspect_once(&path);
        assert_eq!(frames, report.packets);
        assert_eq!(pdus, report.modbus_messages);
        assert_eq!(read_once(&path).0, report.packets);
        println!("inspect bench smoke run: {frames} frames, {pdus} Modbus PDUs (run `cargo bench` to measure)");
        return;
    }
    let mb: u64 = std::env::var("OTGATE_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let config = GeneratorConfig {
        target: Target::Bytes(mb << 20),
        dnp3_percent: 5,
        ..Default::default()
    };
    let started = Instant::now();
    let report = generate(&path, &config).unwrap();
    println!(
        "generated {} MB: {} packets ({} Modbus PDUs, {} DNP3 fragments, {} conversations) in {:.1}s",
        report.bytes >> 20,
        report.packets,
        report.modbus_messages,
        report.dnp3_messages,
        report.modbus_flows + report.dnp3_flows,
        started.elapsed().as_secs_f64()
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load.trim());

    let me = std::env::current_exe().unwrap();
    let packets = report.packets;
    let (read_secs, _, read) = best_of(&me, "--child-read", &path, 3, packets);
    let (ours_secs, pdus, ours) = best_of(&me, "--child-inspect", &path, 3, packets);
    assert_eq!(pdus, report.modbus_messages);
    let per_cpu = |t: &Timed| packets as f64 / t.cpu.max(1e-3);

    println!();
    println!("| | packets/s per core (CPU time) | CPU time | wall time | peak RSS |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| baseline: read the pcap records only | {:.0} | {:.2} s | {:.2} s ({:.2} s reading) | {} MiB |",
        per_cpu(&read),
        read.cpu,
        read.wall,
        read_secs,
        read.rss_kib / 1024
    );
    println!(
        "| otgate inspect (Monitor, 1 thread) | {:.0} | {:.2} s | {:.2} s ({:.2} s in the pipeline) | {} MiB |",
        per_cpu(&ours),
        ours.cpu,
        ours.wall,
        ours_secs,
        ours.rss_kib / 1024
    );
    let tshark_available = Command::new("tshark").arg("--version").output().is_ok();
    let tshark = tshark_available.then(|| {
        timed(
            Command::new("tshark")
                .arg("-r")
                .arg(&path)
                .arg("-Y")
                .arg("modbus")
                .arg("-T")
                .arg("fields")
                .arg("-e")
                .arg("modbus.func_code"),
        )
    });
    if let Some(t) = &tshark {
        println!(
            "| tshark -Y modbus -T fields -e modbus.func_code | {:.0} | {:.2} s | {:.2} s | {} MiB |",
            per_cpu(t),
            t.cpu,
            t.wall,
            t.rss_kib / 1024
        );
    }
    println!();
    println!(
        "inspection costs {:.2}x the baseline's CPU time ({:.0} ns per packet more than reading it)",
        ours.cpu / read.cpu.max(1e-3),
        (ours.cpu - read.cpu) * 1e9 / packets as f64
    );
    match &tshark {
        Some(t) => println!(
            "ratio to tshark: {:.1}x by CPU time, {:.1}x by wall time; tshark printed {} lines",
            t.cpu / ours.cpu.max(1e-3),
            t.wall / ours.wall.max(1e-3),
            t.stdout.lines().count()
        ),
        None => println!("(tshark not installed: no ratio)"),
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average after: {}", load.trim());
}
