//! End-to-end: journal crash safety. A journal writer process (`otgate audit
//! danger-stress-writer`, 8 threads appending through the sled state) is killed with SIGKILL at
//! random points, many times (bounded). After each kill the journal is reopened (cutting any
//! torn tail) and we check that every acknowledged event is present with its content, the chain
//! and signatures verify, and the sled state equals a fresh rebuild from the journal. Another
//! test corrupts the sled directory and shows the appliance rebuilds it and opens.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use otgate::datadir::DataDir;
use otgate::journal::event::{Event, JournalEvent};
use otgate::journal::read::JournalReader;
use otgate::journal::{keys, verify, Journal, JournalConfig};
use otgate::state::{self, Opened, State};

/// The `otgate` binary built beside this test binary (`cargo build --bins` or `cargo test`).
fn otgate_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("otgate");
    assert!(
        bin.exists(),
        "{} is missing; run `cargo build --bins` first",
        bin.display()
    );
    bin
}

/// A small deterministic generator (xorshift), seeded per run and printed for reproduction.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Collects the writer's `(seq, text)` acknowledgements until its stdout closes.
type AckReader = std::thread::JoinHandle<Vec<(u64, String)>>;

/// Start the stress writer; returns the child and a thread collecting its `ack` lines.
fn start_writer(
    data: &Path,
) -> (
    std::process::Child,
    AckReader,
    std::sync::mpsc::Receiver<()>,
) {
    let mut child = Command::new(otgate_bin())
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "audit",
            "danger-stress-writer",
            "--writers",
            "8",
        ])
        .args(["--segment-bytes", "16384", "--checkpoint-every", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (first_ack, first_ack_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.splitn(3, ' ');
            if parts.next() != Some("ack") {
                continue;
            }
            let seq: u64 = parts.next().unwrap().parse().unwrap();
            acks.push((seq, parts.next().unwrap().to_string()));
            if acks.len() == 1 {
                let _ = first_ack.send(());
            }
        }
        acks
    });
    (child, reader, first_ack_rx)
}

fn notes(dir: &Path) -> BTreeMap<u64, String> {
    JournalReader::open(dir)
        .unwrap()
        .filter_map(|r| match r.unwrap() {
            otgate::journal::read::StoredRecord {
                seq,
                event: Event::Journal(JournalEvent::Note { text, .. }),
                ..
            } => Some((seq, text)),
            _ => None,
        })
        .collect()
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_event_and_state_matches_a_rebuild() {
    let root = tempfile::tempdir().unwrap();
    let data = DataDir::new(root.path());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("journal_crash seed {seed}");
    let mut rng = Rng(seed);
    let mut all_acks: Vec<(u64, String)> = Vec::new();
    const ROUNDS: usize = 12;
    for round in 0..ROUNDS {
        let (mut child, reader, first_ack) = start_writer(root.path());
        // Let it get going (bounded), then kill it at a random point.
        let started = first_ack.recv_timeout(Duration::from_secs(60)).is_ok();
        std::thread::sleep(Duration::from_millis(rng.next() % 300));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        assert!(
            started && !acks.is_empty(),
            "round {round}: the writer acknowledged nothing"
        );
        all_acks.extend(acks);

        // Restart: open the journal as the appliance would (this cuts a torn tail).
        let key = keys::load_appliance_key(&data.appliance_key()).unwrap();
        let journal = Journal::open(&data.journal_dir(), key, JournalConfig::default()).unwrap();
        let found = notes(&data.journal_dir());
        for (seq, text) in &all_acks {
            assert_eq!(
                found.get(seq),
                Some(text),
                "round {round}: acknowledged seq {seq} ({text}) is missing or different"
            );
        }
        let public = keys::load_public_key(&data.appliance_public_key()).unwrap();
        let verified = verify::verify(&data.journal_dir(), &public)
            .unwrap_or_else(|f| panic!("round {round}: journal does not verify: {}", f.damage));
        assert_eq!(verified.head_seq, journal.head().seq);

        let state = State::open(&data, &journal).unwrap();
        assert_eq!(state.last_applied(), journal.head().seq, "round {round}");
        let rebuilt = state::fresh_dump(
            &data.journal_dir(),
            state::registry::appliance_views(),
            state.last_applied(),
        )
        .unwrap();
        assert_eq!(
            state.dump().unwrap(),
            rebuilt,
            "round {round}: sled differs from a fresh rebuild ({:?})",
            state.opened()
        );
        drop(state);
        drop(journal);
    }
    assert!(all_acks.len() >= ROUNDS);
    let (mut cuts, mut rebuilds) = (0, 0);
    for record in JournalReader::open(&data.journal_dir()).unwrap() {
        match record.unwrap().event {
            Event::Journal(JournalEvent::TailCut { .. }) => cuts += 1,
            Event::Journal(JournalEvent::StateRebuilt { .. }) => rebuilds += 1,
            _ => {}
        }
    }
    eprintln!("{} acknowledged events over {ROUNDS} kills; {cuts} torn tails cut; {rebuilds} state builds", all_acks.len());
}

#[test]
fn a_corrupt_sled_directory_is_rebuilt_and_the_appliance_opens() {
    let root = tempfile::tempdir().unwrap();
    let data = DataDir::new(root.path());
    let status = Command::new(otgate_bin())
        .args([
            "--data-dir",
            root.path().to_str().unwrap(),
            "audit",
            "danger-stress-writer",
            "--writers",
            "4",
            "--count",
            "25",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    // Overwrite every file of the sled directory with garbage.
    let mut stack = vec![data.state_dir()];
    let mut damaged = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                std::fs::write(&path, vec![0x5A; 4096]).unwrap();
                damaged += 1;
            }
        }
    }
    assert!(damaged > 0);

    let output = Command::new(otgate_bin())
        .args([
            "--data-dir",
            root.path().to_str().unwrap(),
            "state",
            "status",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["state"]["opened"], "rebuilt", "{status}");
    assert_eq!(status["last_applied_seq"], status["journal_head_seq"]);
    let aside = status["state"]["moved_aside"].as_str().unwrap();
    assert!(Path::new(aside).exists());

    // The rebuild is on record, and the rebuilt state opens as usable and equals a rebuild.
    let output = Command::new(otgate_bin())
        .args([
            "--data-dir",
            root.path().to_str().unwrap(),
            "audit",
            "show",
            "--kind",
            "journal.state_rebuilt",
            "--json",
        ])
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l["event"]["moved_aside"]
            .as_str()
            .is_some_and(|m| m.starts_with("state.old-"))),
        "{lines:?}"
    );
    let journal = Journal::open(
        &data.journal_dir(),
        keys::load_appliance_key(&data.appliance_key()).unwrap(),
        JournalConfig::default(),
    )
    .unwrap();
    let state = State::open(&data, &journal).unwrap();
    assert!(
        matches!(state.opened(), Opened::Replayed { .. }),
        "{:?}",
        state.opened()
    );
    assert_eq!(
        state.dump().unwrap(),
        state::fresh_dump(
            &data.journal_dir(),
            state::registry::appliance_views(),
            state.last_applied()
        )
        .unwrap()
    );
    assert_eq!(notes(&data.journal_dir()).len(), 100);
}

/// Run `otgate --data-dir DIR args...`; returns (exit code, stdout, stderr).
fn otgate(data: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(otgate_bin())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn audit_verify_reports_intact_then_the_altered_record_by_seq() {
    let root = tempfile::tempdir().unwrap();
    let (code, _, _) = otgate(
        root.path(),
        &[
            "audit",
            "danger-stress-writer",
            "--writers",
            "2",
            "--count",
            "20",
        ],
    );
    assert_eq!(code, 0);
    let (code, out, err) = otgate(root.path(), &["audit", "verify"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("journal intact: 44 records"), "{out}"); // created, opened, state built, 40 notes, checkpoint
    assert!(
        out.contains("signed head: checkpoint seq 44, written at a clean close"),
        "{out}"
    );
    let (code, out, _) = otgate(root.path(), &["audit", "verify", "--json"]);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (report["intact"].as_bool(), report["head_seq"].as_u64()),
        (Some(true), Some(44))
    );

    // Flip one byte inside record seq 10's payload.
    let data = DataDir::new(root.path());
    let segment = otgate::journal::read::list_segments(&data.journal_dir())
        .unwrap()
        .remove(0)
        .1;
    let mut bytes = std::fs::read(&segment).unwrap();
    let mut offset = otgate::journal::record::SEGMENT_HEADER_LEN;
    loop {
        let record = otgate::journal::record::decode(&bytes[offset..]).unwrap();
        let (seq, frame_len) = (record.seq, record.frame_len);
        if seq == 10 {
            bytes[offset + frame_len - 40] ^= 0x01;
            break;
        }
        offset += frame_len;
    }
    std::fs::write(&segment, bytes).unwrap();
    let (code, _, err) = otgate(root.path(), &["audit", "verify"]);
    assert_eq!(code, 1);
    assert!(err.contains("record seq 10 was altered"), "{err}");
    assert!(err.contains(&format!("byte {offset}")), "{err}");
    assert!(err.contains("records 1..=9 verify"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    // Verifying with another key says so.
    let other = root.path().join("other.pub");
    std::fs::write(&other, "00".repeat(32)).unwrap();
    let (code, _, _) = otgate(
        root.path(),
        &["audit", "verify", "--public-key", other.to_str().unwrap()],
    );
    assert_eq!(code, 1);
}

#[test]
fn audit_show_filters_and_export_to_a_file_resumes() {
    let root = tempfile::tempdir().unwrap();
    let (code, _, _) = otgate(
        root.path(),
        &[
            "audit",
            "danger-stress-writer",
            "--writers",
            "3",
            "--count",
            "5",
        ],
    );
    assert_eq!(code, 0);
    let (code, out, _) = otgate(
        root.path(),
        &["audit", "show", "--actor", "stress-1", "--json"],
    );
    assert_eq!(code, 0);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert!(lines
        .iter()
        .all(|l| l["event"]["actor"] == "stress-1" && l["seq"].as_u64().is_some()));
    let (_, out, _) = otgate(
        root.path(),
        &["audit", "show", "--kind", "journal.checkpoint"],
    );
    assert!(
        out.lines().count() >= 1 && out.lines().all(|l| l.contains("journal.checkpoint")),
        "{out}"
    );
    let (_, out, _) = otgate(
        root.path(),
        &["audit", "show", "--since", "2999-01-01T00:00:00Z"],
    );
    assert!(out.is_empty());
    let (code, _, err) = otgate(root.path(), &["audit", "show", "--since", "yesterday"]);
    assert_eq!(code, 2);
    assert!(err.contains("RFC 3339"), "{err}");

    let file = root.path().join("siem.jsonl");
    let to = format!("file:{}", file.display());
    let (code, out, err) = otgate(root.path(), &["audit", "export", "--to", &to]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("exported 19 records"), "{out}"); // created, opened, state built, 15 notes, checkpoint
    let (code, _, _) = otgate(
        root.path(),
        &[
            "audit",
            "danger-stress-writer",
            "--writers",
            "1",
            "--count",
            "2",
        ],
    );
    assert_eq!(code, 0);
    let (code, out, _) = otgate(root.path(), &["audit", "export", "--to", &to]);
    assert_eq!(code, 0);
    let seqs: Vec<u64> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "no gaps, no duplicates: {out}"
    );
    // The cursor, the lag and the last run are visible.
    let (code, out, err) = otgate(root.path(), &["audit", "export", "--status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(status["destination"], to.as_str());
    assert_eq!(status["confirmed_seq"], seqs.len() as u64);
    assert_eq!(status["lag"], 0);
    assert!(status["status"]["stopped_at"].is_string(), "{status}");
    let (code, out, _) = otgate(root.path(), &["audit", "export", "--status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("delivered up to seq {}", seqs.len())),
        "{out}"
    );
    let (code, _, err) = otgate(root.path(), &["audit", "export"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = otgate(
        root.path(),
        &["audit", "export", "--to", "syslog+tls://127.0.0.1:9"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("--ca"), "{err}");
}

/// The seq in an RFC 5424 message's structured data.
fn syslog_seq(message: &str) -> u64 {
    let start = message.find("seq=\"").expect("a seq") + 5;
    let end = start + message[start..].find('"').unwrap();
    message[start..end].parse().unwrap()
}

/// Wait (bounded, not timed) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..3000 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("gave up waiting until {what}");
}

#[test]
fn the_daemon_exports_to_a_syslog_collector_through_an_outage_without_gaps() {
    use otgate::journal::export::collector::Collector;
    use otgate_tests::appliance::{TestAppliance, PLANT_POLICY};

    let mut appliance = TestAppliance::init(PLANT_POLICY);
    let data = DataDir::new(&appliance.data_dir);
    let collector = Collector::start_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = collector.addr();
    std::fs::write(
        data.config_file(),
        format!(
            "[export]\nto = \"syslog+tcp://{addr}\"\nhostname = \"gw\"\n\
             ack_timeout = \"200ms\"\nretry_max = \"200ms\"\npoll_interval = \"20ms\"\n"
        ),
    )
    .unwrap();
    let head = || {
        JournalReader::open(&data.journal_dir())
            .unwrap()
            .map(|r| r.unwrap().seq)
            .last()
            .unwrap_or(0)
    };
    let status = |appliance: &TestAppliance| -> serde_json::Value {
        let out = appliance.otgate(&["audit", "export", "--status", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };

    appliance.start(None);
    let started = head();
    wait_until("the daemon's first records reach the collector", || {
        collector
            .messages()
            .iter()
            .any(|m| syslog_seq(&m.message) == started)
    });
    // The outage: the collector goes away; the daemon restarts meanwhile, writing records.
    let before = collector.stop();
    wait_until("the status shows the outage", || {
        let s = status(&appliance);
        s["status"]["connected"] == false && s["status"]["last_error"].is_string()
    });
    appliance.stop();
    appliance.start(None);
    let during = head();
    assert!(during > started, "records were written during the outage");
    wait_until("the restarted exporter reports the outage", || {
        status(&appliance)["status"]["last_error"].is_string()
    });

    // The collector returns: the backlog arrives in order, without gaps.
    let collector = Collector::start_tcp(addr).unwrap();
    wait_until("the backlog arrives", || {
        collector
            .messages()
            .iter()
            .any(|m| syslog_seq(&m.message) == during)
    });
    appliance.stop();
    let after = collector.stop();
    let confirmed = status(&appliance)["confirmed_seq"].as_u64().unwrap();
    assert!(
        confirmed >= during,
        "a clean stop confirms what was sent ({confirmed} < {during})"
    );
    let received: std::collections::BTreeSet<u64> = before
        .iter()
        .chain(after.iter())
        .map(|m| syslog_seq(&m.message))
        .collect();
    for seq in 1..=confirmed {
        assert!(
            received.contains(&seq),
            "seq {seq} never reached the collector"
        );
    }
    for messages in [&before, &after] {
        let mut by_connection: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for m in messages.iter() {
            by_connection
                .entry(m.connection)
                .or_default()
                .push(syslog_seq(&m.message));
        }
        for seqs in by_connection.values() {
            assert!(
                seqs.windows(2).all(|w| w[1] == w[0] + 1),
                "in order: {seqs:?}"
            );
        }
    }
}
