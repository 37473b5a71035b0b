//! End-to-end: `otgate demo` plays the brief's situations, and what it narrates is what the
//! journal recorded. The checks read the appliance's journal (kept with `--keep`), never the
//! narration: the grants, the refused operations with their exception codes, the forwarded
//! write, the window's end and the revocation, the break-glass grant and HQ's signed review, the
//! monitor's alert, and a chain that verifies.

use std::process::Command;

use otgate::journal::event::Subjects;
use otgate::journal::read::JournalReader;
use serde_json::Value;

use otgate_tests::appliance::otgate_bin;

#[test]
fn demo_outcomes_are_in_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("demo");
    let out = Command::new(otgate_bin())
        .args(["demo", "--fast", "--keep"])
        .arg(&keep)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    // Two screens at most.
    assert!(
        stdout.lines().count() <= 100,
        "the narration is {} lines",
        stdout.lines().count()
    );

    let journal = keep.join("appliance").join("journal");
    let records: Vec<_> = JournalReader::open(&journal)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let events: Vec<(String, Value)> = records
        .iter()
        .map(|r| {
            (
                r.event.kind().to_owned(),
                serde_json::to_value(&r.event).unwrap(),
            )
        })
        .collect();
    let with = |kind: &str, needles: &[&str]| -> Vec<&Value> {
        events
            .iter()
            .filter(|(k, v)| {
                let text = v.to_string();
                k == kind && needles.iter().all(|n| text.contains(n))
            })
            .map(|(_, v)| v)
            .collect()
    };

    // Act 1: alice's grant on line3-plc, a write forwarded, a write outside refused with 02,
    // and the grant ended by its window.
    assert_eq!(
        with("grant_activated", &[]).len(),
        2,
        "two grants: {events:#?}"
    );
    let refused_02 = with("operation_refused", &["line3-plc", "alice"]);
    assert_eq!(refused_02.len(), 1, "{refused_02:#?}");
    assert_eq!(refused_02[0]["exception"], 2);
    assert!(
        !with(
            "operation_forwarded",
            &["line3-plc", "alice", "\"function\":6"]
        )
        .is_empty(),
        "alice's write inside the grant was forwarded"
    );
    assert_eq!(
        with("grant_ended", &["G-0001", "expired"]).len(),
        1,
        "alice's window ended by itself"
    );

    // Act 2: the vendor needed two approvals; a write was refused with 01; sue revoked.
    assert_eq!(with("approval_given", &["sam"]).len(), 2);
    assert_eq!(with("approval_given", &["sue"]).len(), 1);
    let refused_01 = with("operation_refused", &["line1-plc", "vendor-acme"]);
    assert_eq!(refused_01.len(), 1, "{refused_01:#?}");
    assert_eq!(refused_01[0]["exception"], 1);
    assert_eq!(with("grant_revoked", &["sue"]).len(), 1);

    // Act 3: oscar's break-glass on the safety PLC, active at once without approvers, signed
    // off by HQ's imported review record, ended by its window.
    let emergency = with("request_submitted", &["oscar", "safety-plc", "break-glass"]);
    assert_eq!(emergency.len(), 1, "{emergency:#?}");
    assert_eq!(emergency[0]["grant_id"], "G-0003");
    let reviews = with("review_imported", &["G-0003", "security-officer@hq"]);
    assert_eq!(reviews.len(), 1, "{reviews:#?}");
    assert_eq!(with("grant_ended", &["G-0003", "expired"]).len(), 1);
    assert!(with("approval_given", &["G-0003"]).is_empty());

    // Act 4: the monitor's alert for the rogue write.
    let alerts = with("alert", &["unauthorized_write", "127.0.3.66"]);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");

    // The chain verifies.
    let verify = Command::new(otgate_bin())
        .arg("--data-dir")
        .arg(keep.join("appliance"))
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
