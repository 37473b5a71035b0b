//! Passive inspection throughput against tshark, on one capture made by the traffic generator in
//! the same run (Modbus-heavy: 95 % Modbus conversations, 5 % DNP3).
//!
//! `cargo bench -p otgate --bench inspect` generates `OTGATE_BENCH_MB` (default 100) MB of
//! capture, then measures, each in its own process under `/usr/bin/time` (peak RSS):
//!
//! - ours: `Monitor` over the file (decode, reassembly, pairing, inventory, detection; events
//!   built but not printed), single-threaded, best of 3: packets per second per core;
//! - tshark: `tshark -r FILE -Y modbus -T fields -e modbus.func_code > /dev/null`, once.
//!
//! and prints the ratio. Without `--bench` (as `cargo test --all-targets` runs it) it only does a
//! small smoke run of ours, so the test suite stays quick and needs no tshark.
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

/// Run `cmd` under `/usr/bin/time -f "%e %M"`; returns (stdout, wall seconds, peak RSS KiB).
fn timed(cmd: &mut Command) -> (String, f64, u64) {
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("TIME %e %M")
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
    let rss: u64 = parts.next().unwrap().parse().unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), wall, rss)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child-inspect") {
        let (frames, secs, pdus) = inspect_once(Path::new(&args[i + 1]));
        println!("{frames} {secs} {pdus}");
        return;
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

    let me = std::env::current_exe().unwrap();
    let mut best: Option<(f64, f64, u64)> = None;
    for _ in 0..3 {
        let (stdout, wall, rss) = timed(Command::new(&me).arg("--child-inspect").arg(&path));
        let mut parts = stdout.split_whitespace();
        let frames: u64 = parts.next().unwrap().parse().unwrap();
        let secs: f64 = parts.next().unwrap().parse().unwrap();
        let pdus: u64 = parts.next().unwrap().parse().unwrap();
        assert_eq!(frames, report.packets);
        assert_eq!(pdus, report.modbus_messages);
        if best.is_none_or(|(s, _, _)| secs < s) {
            best = Some((secs, wall, rss));
        }
    }
    let (ours_secs, ours_wall, ours_rss) = best.unwrap();
    let ours_pps = report.packets as f64 / ours_secs;

    let tshark_available = Command::new("tshark").arg("--version").output().is_ok();
    println!();
    println!("| | packets/s per core | wall time | peak RSS |");
    println!("|---|---:|---:|---:|");
    println!(
        "| otgate inspect (Monitor, 1 thread) | {:.0} | {:.2} s ({:.2} s in the pipeline) | {} MiB |",
        ours_pps,
        ours_wall,
        ours_secs,
        ours_rss / 1024
    );
    if tshark_available {
        let (stdout, wall, rss) = timed(
            Command::new("tshark")
                .arg("-r")
                .arg(&path)
                .arg("-Y")
                .arg("modbus")
                .arg("-T")
                .arg("fields")
                .arg("-e")
                .arg("modbus.func_code"),
        );
        let lines = stdout.lines().count();
        let tshark_pps = report.packets as f64 / wall;
        println!("| tshark -Y modbus -T fields -e modbus.func_code | {tshark_pps:.0} | {wall:.2} s | {} MiB |", rss / 1024);
        println!();
        println!(
            "ratio (tshark wall time / ours wall time, whole process): {:.1}x; pipeline only: {:.1}x; tshark printed {lines} lines",
            wall / ours_wall,
            wall / ours_secs
        );
    } else {
        println!("(tshark not installed: no ratio)");
    }
}
