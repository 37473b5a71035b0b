//! End-to-end: real third-party Modbus clients through the broker, against the simulated PLC.
//!
//! pymodbus (newest 3.x) and mbpoll (libmodbus) talk to a broker session exactly as they would
//! to a PLC: reads pass, a write inside the grant changes the simulator's registers, a write
//! outside it gets exception 02 and leaves the register unchanged, and when the window ends the
//! client is disconnected. Every decision is in the journal.
//!
//! The broker here is served over plain loopback TCP by a small harness that does what the
//! daemon does after the tunnel: one `run_session` per connection with the grant's scope, and no
//! session at all once the window has ended (zero standing privilege).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use otgate::broker::modbus::{run_session, SessionContext};
use otgate::journal::event::{Event, SessionEndReason, SessionEvent};
use otgate::journal::read::JournalReader;
use otgate::journal::Journal;
use otgate::sim::plc::{self, PlcConfig, PlcHandle};
use otgate_policy::{AssetId, GrantScope, OperationSpec, Protocol};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The line3-maintenance grant: read, and write holding registers 100-199, unit 1.
fn maintenance_scope() -> GrantScope {
    let modbus = ["read", "write:holding-registers:100-199"]
        .iter()
        .map(|text| match text.parse::<OperationSpec>().unwrap() {
            OperationSpec::Modbus(mut spec) => {
                spec.units = vec![1];
                spec
            }
            other => panic!("{other:?}"),
        })
        .collect();
    GrantScope {
        asset: AssetId::new("line3-plc"),
        protocol: Protocol::Modbus,
        modbus,
        dnp3: Vec::new(),
        vnc: None,
        tcp: false,
    }
}

struct Broker {
    addr: SocketAddr,
    plc: PlcHandle,
    dir: tempfile::TempDir,
    journal: Journal,
    cancel: CancellationToken,
}

/// A broker for a grant whose window ends after `window`.
async fn broker(window: Duration) -> Broker {
    let plc = plc::spawn("127.0.0.1:0".parse().unwrap(), PlcConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open_for_tests(dir.path()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let deadline = Instant::now() + window;
    let (upstream, journal2, cancel2) = (plc.local_addr(), journal.clone(), cancel.clone());
    let recordings = dir.path().join("sessions");
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            if Instant::now() >= deadline || cancel2.is_cancelled() {
                // No active grant: not one byte goes anywhere.
                drop(stream);
                continue;
            }
            n += 1;
            let ctx = SessionContext {
                session_id: format!("s-{n}"),
                grant_id: "G-0001".into(),
                identity: "alice".into(),
                asset_id: "line3-plc".into(),
                upstream,
                unit_ids: vec![1],
                scope: maintenance_scope(),
                journal: journal2.clone(),
                recordings: recordings.clone(),
                cancel: cancel2.child_token(),
                deadline,
                idle_timeout: Duration::from_secs(900),
                upstream_timeout: Duration::from_secs(2),
            };
            tokio::spawn(run_session(stream, ctx));
        }
    });
    Broker {
        addr,
        plc,
        dir,
        journal,
        cancel,
    }
}

impl Broker {
    /// The session events journaled so far.
    fn session_events(&self) -> Vec<SessionEvent> {
        let journal_dir = otgate::datadir::DataDir::new(self.dir.path()).journal_dir();
        JournalReader::open(&journal_dir)
            .unwrap()
            .filter_map(|r| match r.unwrap().event {
                Event::Session(e) => Some(e),
                _ => None,
            })
            .collect()
    }
}

/// Run a command to completion off the async runtime; stdout, stderr and success.
async fn run(mut command: Command) -> (String, String, bool) {
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap();
    let output = output.expect("the client program must be installed (bash .ci/install-deps)");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.success(),
    )
}

const PYMODBUS_CLIENT: &str = r#"
import json, sys, time
from pymodbus.client import ModbusTcpClient
port, wait = int(sys.argv[1]), float(sys.argv[2])
out = {}
c = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
out["connected"] = c.connect()
r = c.read_holding_registers(10, count=3, device_id=1)
out["read_holding"] = None if r.isError() else r.registers
r = c.read_input_registers(5, count=2, device_id=1)
out["read_input"] = None if r.isError() else r.registers
r = c.read_coils(0, count=4, device_id=1)
out["read_coils"] = None if r.isError() else [int(b) for b in r.bits[:4]]
w = c.write_registers(150, [11, 12], device_id=1)
out["write_inside_ok"] = not w.isError()
e = c.write_register(250, 99, device_id=1)
out["write_outside_exception"] = getattr(e, "exception_code", None)
e = c.write_registers(198, [5, 5, 5, 5], device_id=1)
out["write_straddling_exception"] = getattr(e, "exception_code", None)
time.sleep(wait)
# Disconnected means the broker closed the TCP connection: end of stream (or a reset).
try:
    c.socket.settimeout(2)
    out["peer_closed"] = c.socket.recv(1) == b""
except Exception as ex:
    out["peer_closed"] = type(ex).__name__
try:
    r = c.read_holding_registers(10, count=1, device_id=1)
    out["after_window"] = "error" if r.isError() else "ok"
except Exception as ex:
    out["after_window"] = "disconnected (" + type(ex).__name__ + ")"
print(json.dumps(out))
"#;

/// The client's socket saw the broker close the connection (end of stream, or a reset).
fn assert_disconnected(peer_closed: &serde_json::Value) {
    assert!(
        *peer_closed == serde_json::json!(true) || *peer_closed == "ConnectionResetError",
        "the client was not disconnected after the window: peer_closed = {peer_closed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymodbus_reads_writes_inside_is_refused_outside_and_is_cut_at_the_window_end() {
    let b = broker(Duration::from_secs(3)).await;
    b.plc.set_holding_register(11, 4242);
    let mut command = Command::new("python3");
    command.args(["-c", PYMODBUS_CLIENT, &b.addr.port().to_string(), "3.5"]);
    let (stdout, stderr, ok) = run(command).await;
    assert!(ok, "pymodbus client failed: {stderr}");
    let out: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(out["connected"], true, "{out}");
    assert_eq!(
        out["read_holding"],
        serde_json::json!([0, 4242, 0]),
        "{out}"
    );
    assert_eq!(out["read_input"], serde_json::json!([5, 6]), "{out}");
    assert_eq!(out["read_coils"], serde_json::json!([0, 0, 0, 0]), "{out}");
    assert_eq!(out["write_inside_ok"], true, "{out}");
    assert_eq!(out["write_outside_exception"], 2, "{out}");
    assert_eq!(out["write_straddling_exception"], 2, "{out}");
    assert_ne!(out["after_window"], "ok", "{out}");
    assert_disconnected(&out["peer_closed"]);
    assert_eq!(b.plc.holding_register(150), Some(11));
    assert_eq!(b.plc.holding_register(151), Some(12));
    assert_eq!(b.plc.holding_register(250), Some(0));
    assert_eq!(b.plc.holding_register(198), Some(0));

    let events = b.session_events();
    let refused: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::OperationRefused { exception, .. } => Some(*exception),
            _ => None,
        })
        .collect();
    assert_eq!(refused, vec![2, 2]);
    assert!(events.iter().any(|e| matches!(
        e,
        SessionEvent::SessionEnded {
            reason: SessionEndReason::WindowEnded,
            ..
        }
    )));
    drop(b.journal);
    b.cancel.cancel();
}

/// mbpoll on `port`, unit 1, 0-based addresses, 2 s timeout; `once` polls a single time.
fn mbpoll(port: u16, once: bool, args: &[&str]) -> Command {
    let mut command = Command::new("mbpoll");
    command.args([
        "-m",
        "tcp",
        "-p",
        &port.to_string(),
        "-a",
        "1",
        "-0",
        "-o",
        "2",
    ]);
    if once {
        command.arg("-1");
    }
    command.args(args);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbpoll_reads_writes_inside_is_refused_outside_and_gets_nothing_after_revocation() {
    let b = broker(Duration::from_secs(600)).await;
    let port = b.addr.port();
    b.plc.set_holding_register(120, 7);

    let (stdout, stderr, ok) = run(mbpoll(
        port,
        true,
        &["-t", "4", "-r", "119", "-c", "3", "127.0.0.1"],
    ))
    .await;
    assert!(ok, "mbpoll read failed: {stdout} {stderr}");
    assert!(
        stdout.contains("[120]: \t7") || stdout.contains("[120]:\t7"),
        "{stdout}"
    );

    let (stdout, stderr, ok) = run(mbpoll(
        port,
        true,
        &["-t", "4", "-r", "130", "127.0.0.1", "321"],
    ))
    .await;
    assert!(ok, "mbpoll write inside failed: {stdout} {stderr}");
    assert_eq!(b.plc.holding_register(130), Some(321));

    let (stdout, stderr, ok) = run(mbpoll(
        port,
        true,
        &["-t", "4", "-r", "300", "127.0.0.1", "5"],
    ))
    .await;
    assert!(!ok, "a write outside the grant succeeded: {stdout}");
    let said = format!("{stdout}{stderr}").to_lowercase();
    assert!(said.contains("illegal data address"), "{said}");
    assert_eq!(b.plc.holding_register(300), Some(0));

    // Revoked: no new session opens.
    b.cancel.cancel();
    let (stdout, stderr, ok) =
        run(mbpoll(port, true, &["-t", "4", "-r", "119", "127.0.0.1"])).await;
    assert!(
        !ok,
        "mbpoll read after the end succeeded: {stdout} {stderr}"
    );

    let events = b.session_events();
    let refused = events
        .iter()
        .filter(|e| matches!(e, SessionEvent::OperationRefused { exception: 2, .. }))
        .count();
    assert_eq!(refused, 1);
    let forwarded = events
        .iter()
        .filter(|e| matches!(e, SessionEvent::OperationForwarded { .. }))
        .count();
    assert_eq!(forwarded, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbpoll_polling_is_disconnected_when_the_window_ends() {
    let b = broker(Duration::from_secs(2)).await;
    b.plc.set_holding_register(5, 55);
    // Poll every 200 ms, forever: the first polls pass, then the window ends.
    let mut command = mbpoll(
        b.addr.port(),
        false,
        &["-l", "200", "-t", "4", "-r", "5", "127.0.0.1"],
    );
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command
        .spawn()
        .expect("mbpoll must be installed (bash .ci/install-deps)");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    child.kill().unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // mbpoll's stdout is block-buffered into the pipe and lost on kill; its errors are not.
    // A transport error (not a Modbus exception) says the connection itself was closed.
    assert!(
        [
            "failed: Connection reset by peer",
            "failed: Broken pipe",
            "failed: Connection refused"
        ]
        .iter()
        .any(|e| said.contains(e)),
        "mbpoll was not disconnected after the window ended: {said}"
    );
    let events = b.session_events();
    let forwarded = events
        .iter()
        .filter(|e| matches!(e, SessionEvent::OperationForwarded { .. }))
        .count();
    assert!(forwarded >= 1, "no poll passed during the window: {said}");
    assert!(events.iter().any(|e| matches!(
        e,
        SessionEvent::SessionEnded {
            reason: SessionEndReason::WindowEnded,
            ..
        }
    )));
}

/// Through the real daemon: alice's maintenance grant, approved by sam, `otgate connect` on her
/// side, pymodbus against the local port; then `otgate sessions` and `otgate replay`.
mod through_the_daemon {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    use otgate::sim::plc::{self, PlcConfig};
    use otgate_tests::appliance::{
        describe, otgate_bin, saturday_morning, TestAppliance, PLANT_POLICY,
    };

    const LINE3_PLC: &str = "10.10.3.11:502";

    #[test]
    fn pymodbus_through_otgate_connect_and_the_daemon() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let plc = runtime
            .block_on(plc::spawn(
                "127.0.0.1:0".parse().unwrap(),
                PlcConfig::default(),
            ))
            .unwrap();
        plc.set_holding_register(11, 4242);
        // line3-plc (and its segment) move to the simulator on loopback.
        let policy = PLANT_POLICY
            .replace(LINE3_PLC, &plc.local_addr().to_string())
            .replace(
                r#"networks = ["10.10.3.0/24"]"#,
                r#"networks = ["10.10.3.0/24", "127.0.0.0/8"]"#,
            );
        assert_ne!(policy, PLANT_POLICY, "the sample plant moved line3-plc");
        let mut appliance = TestAppliance::init(&policy);
        appliance.start(Some(saturday_morning()));

        let totp = appliance.totp("alice");
        let out = appliance.request(
            "alice",
            &[
                "--target",
                "line3-plc",
                "--op",
                "read",
                "--op",
                "write:holding-registers:100-199",
                "--duration",
                "20s",
                "--ticket",
                "CHG-1234",
                "--reason",
                "setpoints",
                "--totp",
                &totp,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let code = appliance.totp("sam");
        let out = appliance.otgate(&["approve", "R-0001", "--as", "sam", "--totp", &code]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

        // alice's side: the local port.
        let mut connect = Command::new(otgate_bin());
        connect.args([
            "connect",
            "--grant",
            "G-0001",
            "--asset",
            "line3-plc",
            "--listen",
            "127.0.0.1:0",
        ]);
        connect.args(appliance.tunnel_flags("alice"));
        connect
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut connect = connect.spawn().unwrap();
        let mut lines = BufReader::new(connect.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let port: u16 = first
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|rest| rest.split(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {first}"));

        // The grant runs 20 s from the approval; wait past its end inside the client.
        let out = Command::new("python3")
            .args(["-c", super::PYMODBUS_CLIENT, &port.to_string(), "22"])
            .output()
            .expect("python3 with pymodbus (bash .ci/install-deps)");
        let _ = connect.kill();
        let _ = connect.wait();
        let said: Vec<String> = lines.map_while(Result::ok).collect();
        assert!(out.status.success(), "{}", describe(&out));
        let result: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", describe(&out)));
        assert_eq!(
            result["read_holding"],
            serde_json::json!([0, 4242, 0]),
            "{result}"
        );
        assert_eq!(result["write_inside_ok"], true, "{result}");
        assert_eq!(result["write_outside_exception"], 2, "{result}");
        assert_eq!(result["write_straddling_exception"], 2, "{result}");
        assert_ne!(result["after_window"], "ok", "{result}");
        super::assert_disconnected(&result["peer_closed"]);
        assert_eq!(plc.holding_register(150), Some(11));
        assert_eq!(plc.holding_register(250), Some(0));
        assert_eq!(plc.holding_register(198), Some(0));
        assert!(
            said.iter()
                .any(|l| l.contains("the appliance closed the session")),
            "otgate connect said: {said:?}"
        );

        let kinds: Vec<String> = appliance.journal().into_iter().map(|(k, _)| k).collect();
        for expected in [
            "session_started",
            "operation_forwarded",
            "operation_refused",
            "session_ended",
        ] {
            assert!(
                kinds.iter().any(|k| k == expected),
                "no {expected} in {kinds:?}"
            );
        }

        let out = appliance.otgate(&["sessions", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let session: serde_json::Value =
            serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(session["grant_id"], "G-0001", "{text}");
        assert_eq!(session["live"], false, "{text}");
        assert_eq!(session["refused"], 2, "{text}");
        let id = session["session_id"].as_str().unwrap().to_owned();
        let out = appliance.otgate(&["replay", &id]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let transcript = String::from_utf8_lossy(&out.stdout);
        assert!(
            transcript.contains("write single register (6) holding registers 250 = [99]  REFUSED"),
            "{transcript}"
        );
        assert!(
            transcript.contains(
                "read holding registers (3) holding registers 10-12  forwarded  ok [0, 4242, 0]"
            ),
            "{transcript}"
        );
        drop(runtime);
    }
}

/// An OT supervisor (sue) kills a live session at the console; the session closes and both the kill
/// and the session's end are journaled. An IT identity cannot kill.
mod kill_at_the_console {
    use std::time::Duration;

    use otgate::sim::plc::{self, PlcConfig};
    use otgate_tests::appliance::{describe, saturday_morning, TestAppliance, PLANT_POLICY};

    #[test]
    fn a_supervisor_kills_a_live_session() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let plc = runtime
            .block_on(plc::spawn(
                "127.0.0.1:0".parse().unwrap(),
                PlcConfig::default(),
            ))
            .unwrap();
        let policy = PLANT_POLICY
            .replace("10.10.3.11:502", &plc.local_addr().to_string())
            .replace(
                r#"networks = ["10.10.3.0/24"]"#,
                r#"networks = ["10.10.3.0/24", "127.0.0.0/8"]"#,
            );
        let mut appliance = TestAppliance::init(&policy);
        appliance.start(Some(saturday_morning()));
        let totp = appliance.totp("alice");
        let out = appliance.request(
            "alice",
            &[
                "--target",
                "line3-plc",
                "--op",
                "read",
                "--duration",
                "10m",
                "--ticket",
                "CHG-1234",
                "--reason",
                "look",
                "--totp",
                &totp,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let code = appliance.totp("sam");
        let out = appliance.otgate(&["approve", "R-0001", "--as", "sam", "--totp", &code]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

        let mut probe = appliance
            .open_session("alice", "G-0001", "line3-plc")
            .unwrap();
        probe.send(&[0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 1]).unwrap();
        // The session is listed as live once its recording exists.
        let mut id = String::new();
        for _ in 0..100 {
            let out = appliance.otgate(&["sessions", "--live", "--json"]);
            if let Some(line) = String::from_utf8_lossy(&out.stdout).lines().next() {
                let session: serde_json::Value = serde_json::from_str(line).unwrap();
                id = session["session_id"].as_str().unwrap().to_owned();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!id.is_empty(), "no live session listed");

        let out = appliance.otgate(&["sessions", "kill", &id, "--as", "alice", "--totp", "123456"]);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        // sue, not sam: sam's TOTP code of this 30-second step was spent on the approval.
        let code = appliance.totp("sue");
        let out = appliance.otgate(&["sessions", "kill", &id, "--as", "sue", "--totp", &code]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        assert!(
            probe.closed_within(Duration::from_secs(5)),
            "the killed session stayed open"
        );

        // The session journals its own end just after it closes the stream.
        let ended = |journal: &[(String, serde_json::Value)]| {
            journal
                .iter()
                .any(|(k, e)| k == "session_ended" && e["reason"] == "killed")
        };
        let mut journal = appliance.journal();
        for _ in 0..100 {
            if ended(&journal) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            journal = appliance.journal();
        }
        assert!(journal
            .iter()
            .any(|(k, e)| k == "session_killed" && e["by"] == "sue"));
        assert!(
            ended(&journal),
            "no session_ended (killed) in the journal: {journal:?}"
        );
        drop(runtime);
    }
}

/// A daemon killed (SIGKILL) under a live session: `otgate sessions` never shows that session
/// as live afterwards (the daemon is gone, the journal has its start and no end: "ended
/// (unclean)"), and the next start journals its end as `unclean`, once.
mod crash_cut_session {
    use std::time::Duration;

    use otgate::sim::plc::{self, PlcConfig};
    use otgate_tests::appliance::{describe, saturday_morning, TestAppliance, PLANT_POLICY};

    /// The pid of the `otgate serve` running on `data_dir`, found in /proc.
    fn daemon_pid(data_dir: &std::path::Path) -> Option<u32> {
        let wanted = data_dir.to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args.iter().any(|a| a == "serve") && args.iter().any(|a| *a == wanted) {
                return Some(pid);
            }
        }
        None
    }

    fn sessions(appliance: &TestAppliance, live_only: bool) -> Vec<serde_json::Value> {
        let mut args = vec!["sessions", "--json"];
        if live_only {
            args.push("--live");
        }
        let out = appliance.otgate(&args);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_session_cut_by_a_killed_daemon_is_never_shown_live_and_its_end_is_journaled_at_restart() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let plc = runtime
            .block_on(plc::spawn(
                "127.0.0.1:0".parse().unwrap(),
                PlcConfig::default(),
            ))
            .unwrap();
        let policy = PLANT_POLICY
            .replace("10.10.3.11:502", &plc.local_addr().to_string())
            .replace(
                r#"networks = ["10.10.3.0/24"]"#,
                r#"networks = ["10.10.3.0/24", "127.0.0.0/8"]"#,
            );
        let mut appliance = TestAppliance::init(&policy);
        appliance.start(Some(saturday_morning()));
        let totp = appliance.totp("alice");
        let out = appliance.request(
            "alice",
            &[
                "--target",
                "line3-plc",
                "--op",
                "read",
                "--duration",
                "10m",
                "--ticket",
                "CHG-1234",
                "--reason",
                "look",
                "--totp",
                &totp,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let code = appliance.totp("sam");
        let out = appliance.otgate(&["approve", "R-0001", "--as", "sam", "--totp", &code]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

        let mut probe = appliance
            .open_session("alice", "G-0001", "line3-plc")
            .unwrap();
        probe.send(&[0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 1]).unwrap();
        let mut id = String::new();
        for _ in 0..100 {
            // Listed live, with its read forwarded (journaled) before the kill.
            if let Some(session) = sessions(&appliance, true).first() {
                assert_eq!(session["state"], "live", "{session}");
                if session["forwarded"] == 1 {
                    id = session["session_id"].as_str().unwrap().to_owned();
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!id.is_empty(), "the session was never listed as live");

        // SIGKILL: the session gets no chance to journal its end.
        let pid = daemon_pid(&appliance.data_dir).expect("the daemon's pid");
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        assert!(probe.closed_within(Duration::from_secs(10)));
        appliance.stop(); // reaps the killed process

        let listed = sessions(&appliance, false);
        let cut = listed
            .iter()
            .find(|s| s["session_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not listed: {listed:?}"));
        assert_eq!(cut["live"], false, "{cut}");
        assert_eq!(cut["state"], "ended_unclean", "{cut}");
        assert!(sessions(&appliance, true).is_empty());
        let ended_unclean = |journal: &[(String, serde_json::Value)]| {
            journal
                .iter()
                .filter(|(k, e)| {
                    k == "session_ended"
                        && e["session_id"] == id.as_str()
                        && e["reason"] == "unclean"
                })
                .count()
        };
        assert_eq!(ended_unclean(&appliance.journal()), 0);

        // The next start journals the end, once.
        appliance.start(Some(appliance.clock_after(chrono::Duration::minutes(1))));
        let mut journal = appliance.journal();
        for _ in 0..100 {
            if ended_unclean(&journal) > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            journal = appliance.journal();
        }
        assert_eq!(ended_unclean(&journal), 1, "{journal:?}");
        let listed = sessions(&appliance, false);
        let cut = listed
            .iter()
            .find(|s| s["session_id"] == id.as_str())
            .unwrap();
        assert_eq!(cut["state"], "ended_unclean", "{cut}");
        assert_eq!(cut["forwarded"], 1, "{cut}");
        appliance.stop();
        appliance.start(Some(appliance.clock_after(chrono::Duration::minutes(2))));
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(ended_unclean(&appliance.journal()), 1);
        appliance.stop();
        drop(runtime);
    }
}
