//! End-to-end: the brief's first situation, the plant maintenance window, through the real
//! daemon over its real sockets (TLS tunnel for the request, control socket for the approval).
//!
//! alice asks for line 3's setpoints on a Saturday morning with ticket CHG-1234 and MFA; the bad
//! requests of the issue are refused with their reasons and journaled; sam approves at the
//! plant; the daemon restarts in the middle of the window and the grant is still active; at its
//! end the grant ends by itself.

use std::time::Duration;

use otgate_tests::appliance::{describe, saturday_morning, TestAppliance, PLANT_POLICY};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn maintenance_window_lifecycle_with_restart() {
    let mut appliance = TestAppliance::init(PLANT_POLICY);
    appliance.start(Some(saturday_morning()));
    let write_setpoints = [
        "--target",
        "line3-plc",
        "--op",
        "read",
        "--op",
        "write:holding-registers:100-199",
    ];

    // Without a second factor the tunnel refuses: the rule needs MFA.
    let mut args = write_setpoints.to_vec();
    args.extend([
        "--duration",
        "20s",
        "--ticket",
        "CHG-1234",
        "--reason",
        "setpoints",
    ]);
    let out = appliance.request("alice", &args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).to_lowercase().contains("totp"),
        "{}",
        describe(&out)
    );

    // A ticket that does not match the rule's pattern.
    let totp = appliance.totp("alice");
    let mut args = write_setpoints.to_vec();
    args.extend([
        "--duration",
        "20s",
        "--ticket",
        "JIRA-7",
        "--reason",
        "x",
        "--totp",
        &totp,
    ]);
    let out = appliance.request("alice", &args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stdout(&out).contains("R-0001: denied"),
        "{}",
        describe(&out)
    );
    assert!(stdout(&out).contains("ticket"), "{}", describe(&out));

    // The good request: waits for one shift supervisor. (The refused one above was refused
    // before MFA mattered, so the tunnel did not ask for the code and it is still unused.)
    let mut args = write_setpoints.to_vec();
    args.extend([
        "--duration",
        "20s",
        "--ticket",
        "CHG-1234",
        "--reason",
        "setpoints",
    ]);
    args.extend(["--totp", &totp]);
    let out = appliance.request("alice", &args);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("R-0002: requested"),
        "{}",
        describe(&out)
    );
    assert!(
        stdout(&out).contains("1 shift-supervisor"),
        "{}",
        describe(&out)
    );

    // The requester cannot approve: she is not in the OT store at all.
    let out = appliance.otgate(&["approve", "R-0002", "--as", "alice", "--totp", "123456"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("alice is an IT identity"),
        "{}",
        describe(&out)
    );
    // A wrong TOTP code is refused.
    let out = appliance.otgate(&["approve", "R-0002", "--as", "sam", "--totp", "000000"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("cannot authenticate sam"),
        "{}",
        describe(&out)
    );
    assert_eq!(appliance.state("R-0002"), "requested");

    // sam approves at the plant: the grant is active at once.
    let code = appliance.totp("sam");
    let out = appliance.otgate(&["approve", "R-0002", "--as", "sam", "--totp", &code]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("grant G-0001 is active now"),
        "{}",
        describe(&out)
    );
    // The same code again is a replay.
    let out = appliance.otgate(&[
        "revoke", "G-0001", "--as", "sam", "--totp", &code, "--reason", "x",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(appliance.state("G-0001"), "active");

    // Restart in the middle of the window: the grant is still active afterwards.
    let resume_at = appliance.clock_after(chrono::Duration::zero());
    appliance.stop();
    appliance.start(Some(resume_at));
    assert_eq!(appliance.state("G-0001"), "active");
    let out = appliance.otgate(&["grants", "--active"]);
    assert!(stdout(&out).contains("G-0001"), "{}", describe(&out));

    // And it ends on time by itself.
    appliance.wait_for_state("G-0001", "ended", Duration::from_secs(60));
    let record = appliance.record("G-0001").unwrap();
    assert_eq!(record["outcome"]["reason"], "its window ran out");

    // Everything is on record, in order.
    let kinds: Vec<String> = appliance
        .journal()
        .into_iter()
        .filter(|(_, e)| e["category"] == "access" || e["category"] == "auth")
        .map(|(k, _)| k)
        .collect();
    for expected in [
        "login_failed",
        "request_refused",
        "request_submitted",
        "approval_given",
        "request_approved",
        "grant_activated",
        "grant_ended",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "no {expected} in {kinds:?}"
        );
    }
}

#[test]
fn requests_policy_refuses_are_denied_with_reasons_and_recorded() {
    let mut appliance = TestAppliance::init(PLANT_POLICY);
    appliance.start(Some(saturday_morning()));
    let cases: [(&[&str], &str); 3] = [
        (
            &["--target", "line9-plc", "--op", "read", "--duration", "1h"],
            "line9-plc",
        ),
        (
            &[
                "--target",
                "line3-plc",
                "--op",
                "read",
                "--duration",
                "1h",
                "--start",
                "2026-12-02T09:00:00+01:00",
            ],
            "schedule",
        ),
        (
            &[
                "--target",
                "line3-plc",
                "--op",
                "write:holding-registers:300-310",
                "--duration",
                "1h",
            ],
            "300",
        ),
    ];
    let totp = appliance.totp("alice");
    for (i, (case, why)) in cases.iter().enumerate() {
        let mut args = case.to_vec();
        args.extend(["--ticket", "CHG-1", "--reason", "test", "--totp", &totp]);
        let out = appliance.request("alice", &args);
        assert_eq!(out.status.code(), Some(1), "case {i}: {}", describe(&out));
        assert!(
            stdout(&out).contains("denied"),
            "case {i}: {}",
            describe(&out)
        );
        assert!(
            stdout(&out).contains(why),
            "case {i} should say {why}: {}",
            describe(&out)
        );
    }
    let refused = appliance
        .journal()
        .into_iter()
        .filter(|(k, _)| k == "request_refused")
        .count();
    assert_eq!(refused, 3);
    let out = appliance.otgate(&["grants", "--active"]);
    assert!(stdout(&out).contains("(none)"), "{}", describe(&out));
}
