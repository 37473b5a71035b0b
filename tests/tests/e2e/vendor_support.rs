//! End-to-end: the brief's second situation, vendor remote support, through the real daemon.
//!
//! The vendor asks to read line 1's PLC; two shift supervisors must approve: one approval is
//! not enough, a safety engineer does not count, the second supervisor's approval activates the
//! grant. A session tunnel on the grant is closed when an OT operator revokes it. A vendor whose
//! account expires loses the grant at the expiry, and a request after it is refused.

use std::time::Duration;

use chrono::{DateTime, Utc};
use otgate_tests::appliance::{describe, TestAppliance, PLANT_POLICY};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn tuesday() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T10:00:00+01:00")
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn two_supervisors_approve_and_a_revoke_closes_the_session() {
    let mut appliance = TestAppliance::init(PLANT_POLICY);
    appliance.start(Some(tuesday()));
    let totp = appliance.totp("vendor-acme");
    let out = appliance.request(
        "vendor-acme",
        &[
            "--target",
            "line1-plc",
            "--op",
            "read",
            "--duration",
            "2h",
            "--reason",
            "support",
        ],
    );
    // The vendor forgot the code: MFA is required by the rule.
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let out = appliance.request(
        "vendor-acme",
        &[
            "--target",
            "line1-plc",
            "--op",
            "read",
            "--duration",
            "2h",
            "--reason",
            "support",
            "--totp",
            &totp,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("R-0001: requested"),
        "{}",
        describe(&out)
    );
    assert!(
        stdout(&out).contains("2 shift-supervisor"),
        "{}",
        describe(&out)
    );

    // No session before the grant exists and is active.
    let mut early = appliance
        .open_session("vendor-acme", "R-0001", "line1-plc")
        .unwrap();
    assert!(early.closed_within(Duration::from_secs(10)));

    let sam = appliance.totp("sam");
    let out = appliance.otgate(&["approve", "R-0001", "--as", "sam", "--totp", &sam]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("still needed: 1 shift-supervisor"),
        "{}",
        describe(&out)
    );
    assert_eq!(appliance.state("R-0001"), "requested");

    let olga = appliance.totp("olga");
    let out = appliance.otgate(&["approve", "R-0001", "--as", "olga", "--totp", &olga]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("olga holds none of the roles"),
        "{}",
        describe(&out)
    );
    assert_eq!(appliance.state("R-0001"), "requested");

    let sue = appliance.totp("sue");
    let out = appliance.otgate(&["approve", "R-0001", "--as", "sue", "--totp", &sue]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("grant G-0001 is active now"),
        "{}",
        describe(&out)
    );
    let record = appliance.record("G-0001").unwrap();
    let approvers: Vec<&str> = record["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["approver"].as_str().unwrap())
        .collect();
    assert_eq!(approvers, ["sam", "sue"]);

    // Someone else's grant, or another asset, gets no session.
    let mut other = appliance
        .open_session("alice", "G-0001", "line1-plc")
        .unwrap();
    assert!(other.closed_within(Duration::from_secs(10)));
    let refusals = appliance
        .journal()
        .into_iter()
        .filter(|(k, e)| k == "refused" && e["action"] == "open_session")
        .count();
    assert_eq!(refusals, 2);

    // A live session on the grant is closed when a supervisor revokes it. An operator may cut
    // a session (`otgate sessions kill`) but not revoke the grant: the policy's role decides.
    let mut session = appliance
        .open_session("vendor-acme", "G-0001", "line1-plc")
        .unwrap();
    let oscar = appliance.totp("oscar");
    let out = appliance.otgate(&[
        "revoke",
        "G-0001",
        "--as",
        "oscar",
        "--totp",
        &oscar,
        "--reason",
        "vendor done",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("not a supervisor"),
        "{}",
        describe(&out)
    );
    assert_eq!(appliance.state("G-0001"), "active");
    // A code is accepted once: sue waits for her next one (at most one 30-second step).
    let mut sue_again = appliance.totp("sue");
    for _ in 0..70 {
        if sue_again != sue {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        sue_again = appliance.totp("sue");
    }
    let out = appliance.otgate(&[
        "revoke",
        "G-0001",
        "--as",
        "sue",
        "--totp",
        &sue_again,
        "--reason",
        "vendor done",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        session.closed_within(Duration::from_secs(5)),
        "the session outlived its grant"
    );
    assert_eq!(appliance.state("G-0001"), "revoked");
    let out = appliance.otgate(&["grants", "--ended"]);
    assert!(
        stdout(&out).contains("vendor done (sue)"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_vendor_grant_ends_with_the_account_and_later_requests_are_refused() {
    let mut appliance = TestAppliance::init(PLANT_POLICY);
    // The contract ends 2027-06-30T23:59:59+02:00; start 12 seconds before.
    let start = DateTime::parse_from_rfc3339("2027-06-30T23:59:47+02:00").unwrap();
    appliance.start(Some(start.with_timezone(&Utc)));
    let totp = appliance.totp("vendor-acme");
    let out = appliance.request(
        "vendor-acme",
        &[
            "--target",
            "line1-plc",
            "--op",
            "read",
            "--duration",
            "2h",
            "--reason",
            "last call",
            "--totp",
            &totp,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let (sam, sue) = (appliance.totp("sam"), appliance.totp("sue"));
    assert!(appliance
        .otgate(&["approve", "R-0001", "--as", "sam", "--totp", &sam])
        .status
        .success());
    let out = appliance.otgate(&["approve", "R-0001", "--as", "sue", "--totp", &sue]);
    assert!(out.status.success(), "{}", describe(&out));
    let record = appliance.record("G-0001").unwrap();
    assert_eq!(
        record["end"], "2027-06-30T21:59:59Z",
        "the grant never outlives the account"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while appliance.state("G-0001") == "active" {
        assert!(
            std::time::Instant::now() < deadline,
            "the grant outlived the account"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let state = appliance.state("G-0001");
    assert!(state == "ended" || state == "revoked", "{state}");

    // After the expiry, the vendor is refused: at the tunnel or by policy, with a reason.
    let out = appliance.request(
        "vendor-acme",
        &[
            "--target",
            "line1-plc",
            "--op",
            "read",
            "--duration",
            "1h",
            "--reason",
            "again",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        (stdout(&out) + &stderr(&out)).contains("expire"),
        "the refusal should name the expiry: {}",
        describe(&out)
    );
}
