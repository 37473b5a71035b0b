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

/// Lines of a child's stdout, read on a thread so a test can wait for one with a bound.
struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn of(child: &mut std::process::Child) -> Self {
        use std::io::BufRead;
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            rx,
            seen: Vec::new(),
        }
    }

    /// Wait (at most `limit`) for a line containing `needle`; panics with what was printed.
    fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; printed so far: {:#?}", self.seen),
            }
        }
    }
}

/// The warnings 10 and 2 minutes before the end reach the engineer's terminal through
/// `otgate connect` (which found the asset by itself), across a daemon restart whose wall clock
/// jumped forward, and `connect` exits once the grant is revoked.
#[test]
fn connect_prints_the_end_warnings_and_leaves_when_the_grant_ends() {
    let mut appliance = TestAppliance::init(PLANT_POLICY);
    // Saturday 09:49:40 in Berlin: the weekend window closes at 10:00, so a 4 h request is
    // clipped to about 10 minutes 20 seconds.
    let late =
        saturday_morning() + chrono::Duration::minutes(2 * 60 + 49) + chrono::Duration::seconds(40);
    appliance.start(Some(late));
    let totp = appliance.totp("alice");
    let out = appliance.request(
        "alice",
        &[
            "--target",
            "line3-plc",
            "--op",
            "read",
            "--duration",
            "4h",
            "--ticket",
            "CHG-1234",
            "--reason",
            "last setpoints",
            "--totp",
            &totp,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let code = appliance.totp("sam");
    let out = appliance.otgate(&["approve", "R-0001", "--as", "sam", "--totp", &code]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    let it = appliance.it_addr.unwrap();
    let mut args = vec!["connect".to_owned(), "--grant".into(), "G-0001".into()];
    args.extend(["--listen".into(), "127.0.0.1:0".into()]);
    args.extend(appliance.tunnel_flags("alice"));
    let mut connect = std::process::Command::new(otgate_tests::appliance::otgate_bin())
        .arg("--data-dir")
        .arg(&appliance.data_dir)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = Lines::of(&mut connect);
    // No --asset: the grant's own.
    lines.wait_for("grant G-0001 on line3-plc: active", Duration::from_secs(30));
    lines.wait_for("listening on 127.0.0.1:", Duration::from_secs(30));
    let ten = lines.wait_for("ends in 10 minutes", Duration::from_secs(60));
    assert!(ten.contains("G-0001"), "{ten}");

    // The daemon restarts on the same port with its wall clock 8 minutes further on: less than
    // two minutes are left, connect reopens its status tunnel and prints the second warning.
    let resume_at = appliance.clock_after(chrono::Duration::minutes(8));
    appliance.stop();
    appliance.start_in(None, &it.to_string(), Some(resume_at));
    lines.wait_for("ends in 2 minutes", Duration::from_secs(90));
    assert_eq!(appliance.state("G-0001"), "active");

    // The supervisor revokes it: connect says so and exits by itself.
    let code = appliance.totp("sue");
    let out = appliance.otgate(&[
        "revoke",
        "G-0001",
        "--as",
        "sue",
        "--totp",
        &code,
        "--reason",
        "line restarts",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    lines.wait_for("grant G-0001 is revoked", Duration::from_secs(30));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = connect.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = connect.kill();
            panic!("otgate connect did not exit after the grant was revoked");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let warnings: Vec<u64> = appliance
        .journal()
        .into_iter()
        .filter(|(k, _)| k == "grant_warning")
        .map(|(_, e)| e["minutes_left"].as_u64().unwrap())
        .collect();
    assert_eq!(warnings, [10, 2]);
}
