//! End-to-end: passive inspection against real third-party captures (`shared/pcaps`), with
//! tshark's counts (`counts.psv`) as the oracle; documented differences are in
//! `docs/inspection-accuracy.md` and asserted here as our own figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use otgate::inspect::alerts::Detector;
use otgate::inspect::event::Observation;
use otgate::inspect::inspect_file;
use otgate::inspect::monitor::{Monitor, Stats};

/// Where the shared captures are: `OTGATE_PCAPS`, or `shared/pcaps` next to the repository (or
/// its worktree folder).
fn pcaps_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("OTGATE_PCAPS") {
        return Some(PathBuf::from(dir));
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        manifest.join("../../shared/pcaps"),
        manifest.join("../../../shared/pcaps"),
    ]
    .into_iter()
    .find(|p| p.join("counts.psv").is_file())
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counts {
    modbus_pdus: u64,
    modbus_fc: BTreeMap<u64, u64>,
    modbus_exc: BTreeMap<u64, u64>,
    dnp3_fragments: u64,
    dnp3_fc: BTreeMap<u64, u64>,
    malformed: u64,
}

fn parse_map(field: &str) -> BTreeMap<u64, u64> {
    field
        .split_whitespace()
        .filter_map(|pair| {
            let (k, v) = pair.split_once(':')?;
            Some((k.parse().ok()?, v.parse().ok()?))
        })
        .collect()
}

fn oracle(dir: &Path) -> Vec<(String, Counts)> {
    let text = std::fs::read_to_string(dir.join("counts.psv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('|').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (file, pdus, fc, exc, frags, dfc, bad) = (
        col("file"),
        col("modbus_pdus"),
        col("modbus_fc:count"),
        col("modbus_exc:count"),
        col("dnp3_app_fragments"),
        col("dnp3_al_func:count"),
        col("malformed_frames"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (
                f[file].to_string(),
                Counts {
                    modbus_pdus: f[pdus].parse().unwrap(),
                    modbus_fc: parse_map(f[fc]),
                    modbus_exc: parse_map(f[exc]),
                    dnp3_fragments: f[frags].parse().unwrap(),
                    dnp3_fc: parse_map(f[dfc]),
                    malformed: f[bad].parse().unwrap(),
                },
            )
        })
        .collect()
}

fn ours(stats: &Stats, malformed_events: u64) -> Counts {
    let map = |counts: &[u64]| -> BTreeMap<u64, u64> {
        counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (i as u64, *n))
            .collect()
    };
    Counts {
        modbus_pdus: stats.modbus_pdus,
        modbus_fc: map(&stats.modbus_functions),
        modbus_exc: map(&stats.modbus_exceptions),
        dnp3_fragments: stats.dnp3_fragments,
        dnp3_fc: map(&stats.dnp3_functions),
        malformed: malformed_events,
    }
}

fn inspect(path: &Path) -> (Stats, u64) {
    let mut monitor = Monitor::new(Detector::new());
    let mut malformed = 0u64;
    let mut sink = |o: &Observation<'_>| {
        if matches!(o, Observation::Malformed(..)) {
            malformed += 1;
        }
    };
    inspect_file(path, &mut monitor, &mut sink, None).unwrap();
    (monitor.stats().clone(), malformed)
}

/// What we expect where tshark is the one that is wrong (or where fuzzed traffic has no single
/// right answer): our own figures, each justified in docs/inspection-accuracy.md. Returns the
/// expected counts and whether a malformed event is expected where tshark marks some.
fn documented(file: &str, tshark: &Counts) -> (Counts, bool) {
    let mut want = tshark.clone();
    let mut malformed_expected = tshark.malformed > 0;
    let map = |pairs: &[(u64, u64)]| pairs.iter().copied().collect::<BTreeMap<u64, u64>>();
    match file {
        // Frame 113: 3 stray bytes, then a well-formed FC 42 ADU; tshark rejects the whole
        // segment (protocol id 0x2300), we skip the 3 bytes (malformed event) and decode the ADU.
        "modbus/iti_ModbusTCP_modbus_test_data_part1.pcap" => {
            want.modbus_pdus += 1;
            *want.modbus_fc.entry(42).or_default() += 1;
        }
        // Frame 4: fuzzed sequence number far below the stream's; tshark calls it a
        // retransmission and does not dissect it, its bytes were never seen before.
        "modbus/iti_bro_modbus_fuzz-1011.pcap" => {
            want.modbus_pdus = 5;
            want.modbus_fc = map(&[(4, 5)]);
        }
        // Fuzzed sequence numbers and headers throughout: tshark dissects segment by segment,
        // we reassemble by sequence number and resynchronize. Our own figures.
        "modbus/iti_bro_modbus_fuzz-72.pcap" => {
            want.modbus_pdus = 13;
            want.modbus_fc = map(&[
                (28, 1),
                (29, 1),
                (32, 1),
                (47, 1),
                (51, 1),
                (54, 1),
                (58, 1),
                (59, 1),
                (64, 1),
                (65, 1),
                (66, 1),
                (70, 1),
                (71, 1),
            ]);
            want.modbus_exc = map(&[(1, 8)]);
        }
        // Frame 3150 (the response to transaction 50382) is the only copy of its bytes, but
        // the capture shows its ACK first, so tshark calls it a spurious retransmission and does
        // not dissect it.
        "modbus/iti_bro_modbus_modbusBig.pcap" => {
            want.modbus_pdus += 1;
            *want.modbus_fc.entry(1).or_default() += 1;
        }
        // Frame 8 carries a READ in a link frame of function 2 (TEST_LINK_STATES), which may not
        // carry user data; tshark dissects it, we report it malformed (as both do for frames 10
        // and 12, functions 0 and 9).
        "dnp3/opendnp3_conformance/6.6.2.5.pcap" => {
            want.dnp3_fragments = 2;
            want.dnp3_fc = map(&[(1, 2)]);
            malformed_expected = true;
        }
        // tshark throws decoding the contents of data-set objects (g86v1) in frame 6; the object
        // sizes add up exactly, so we report nothing malformed.
        "dnp3/iti_dnp3_dataset_exchange.pcap" => malformed_expected = false,
        _ => {}
    }
    want.malformed = 0;
    (want, malformed_expected)
}

#[test]
fn per_function_counts_match_tshark_on_every_shared_capture() {
    let Some(dir) = pcaps_dir() else {
        eprintln!("\n\n*** SKIPPED: shared/pcaps not found (set OTGATE_PCAPS) ***\n\n");
        return;
    };
    let mut failures = Vec::new();
    let files = oracle(&dir);
    assert!(files.len() > 100, "counts.psv lists {} files", files.len());
    for (file, tshark) in &files {
        let (stats, malformed) = inspect(&dir.join(file));
        let mut got = ours(&stats, malformed);
        let (want, malformed_expected) = documented(file, tshark);
        let fuzzed = file.contains("fuzz") || file.contains("Malformed");
        if (malformed_expected || fuzzed) && malformed == 0 {
            failures.push(format!(
                "{file}: malformed frames expected, we raised no malformed event"
            ));
        }
        got.malformed = 0;
        if got != want {
            failures.push(format!(
                "{file}:\n   tshark/documented {want:?}\n   ours              {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files differ:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
