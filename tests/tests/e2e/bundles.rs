//! End-to-end: signed policy bundles across HQ and the appliance, through the `otgate` binary.
//!
//! HQ makes three authority keys and a 2-of-3 trust root, signs a bundle with two of them and
//! serves it over HTTPS; the appliance pulls it with HQ's certificate pinned and shows its
//! status. HQ then rotates the trust root to revoke one key, and a bundle signed with the revoked
//! key is refused, by pull and by import, with the active policy unchanged.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use otgate::datadir::DataDir;

fn otgate_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = dir.join("otgate");
    if !bin.exists() {
        // `cargo test -p otgate-tests` alone does not build the binary; `.ci/test` does.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "otgate", "--bin", "otgate"])
            .status()
            .unwrap();
        assert!(status.success(), "building the otgate binary failed");
    }
    bin
}

fn run(args: &[&str]) -> Output {
    let output = Command::new(otgate_bin())
        .args(args)
        .env_remove("OTGATE_DATA_DIR")
        .output()
        .unwrap();
    eprintln!(
        "$ otgate {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn ok(args: &[&str]) -> String {
    let output = run(args);
    assert!(output.status.success(), "otgate {} failed", args.join(" "));
    String::from_utf8(output.stdout).unwrap()
}

fn refused(args: &[&str]) -> String {
    let output = run(args);
    assert_eq!(
        output.status.code(),
        Some(1),
        "otgate {} should exit 1",
        args.join(" ")
    );
    String::from_utf8(output.stderr).unwrap()
}

/// `otgate authority serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, cert: &Path, key: &Path) -> Server {
    let mut child = Command::new(otgate_bin())
        .args(["authority", "serve"])
        .arg(dir)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(
        url.starts_with("https://127.0.0.1:"),
        "unexpected serve banner {line:?}"
    );
    Server { child, url }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn status(dd: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&["policy", "status", "--json", "--data-dir", dd])).unwrap()
}

fn key_id(pub_file: &Path) -> String {
    let entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pub_file).unwrap()).unwrap();
    entry["key_id"].as_str().unwrap().to_owned()
}

#[test]
fn keygen_sign_two_of_three_serve_pull_status_rotate_and_refuse_the_revoked_key() {
    let tmp = tempfile::tempdir().unwrap();
    let hq = tmp.path().join("hq");
    let served = hq.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/plant.toml");
    let (policy, hq1, hq2, hq3) = (
        s(&policy).to_owned(),
        hq.join("hq1.key"),
        hq.join("hq2.key"),
        hq.join("hq3.key"),
    );

    // HQ: three authority keys, HQ's TLS certificate, a 2-of-3 trust root.
    for (i, key) in [&hq1, &hq2, &hq3].iter().enumerate() {
        ok(&[
            "authority",
            "keygen",
            "--out",
            s(key),
            "--name",
            &format!("hq-{}", i + 1),
        ]);
    }
    let (cert, tls_key) = (hq.join("hq.crt"), hq.join("hq-tls.key"));
    let out = ok(&[
        "authority",
        "keygen",
        "--tls",
        "--out",
        s(&tls_key),
        "--cert-out",
        s(&cert),
        "--name",
        "127.0.0.1",
    ]);
    assert!(out.contains("pin sha256:"));
    let root = hq.join("root.json");
    let pubs: Vec<PathBuf> = [&hq1, &hq2, &hq3]
        .iter()
        .map(|k| k.with_extension("pub"))
        .collect();
    ok(&[
        "authority",
        "root",
        "--site",
        "plant-a",
        "--threshold",
        "2",
        "--key",
        s(&pubs[0]),
        "--key",
        s(&pubs[1]),
        "--key",
        s(&pubs[2]),
        "--out",
        s(&root),
    ]);

    // The appliance, provisioned with the trust root.
    let data = tmp.path().join("appliance");
    let dd = DataDir::new(&data);
    ok(&["init", "--data-dir", s(&data), "--trust", s(&root)]);
    let dd_s = s(&data).to_owned();
    assert!(status(&dd_s)["active"].is_null());

    // HQ signs v1 with two of three authorities, one at a time.
    let v1 = served.join("plant-a-v1.otgb");
    ok(&[
        "authority",
        "sign",
        s(&v1),
        "--key",
        s(&hq1),
        "--policy",
        &policy,
        "--site",
        "plant-a",
        "--bundle-version",
        "1",
    ]);
    let one = run(&["authority", "verify", s(&v1), "--trust", s(&root)]);
    assert_eq!(
        one.status.code(),
        Some(1),
        "one signature of two is not enough"
    );
    assert!(String::from_utf8_lossy(&one.stderr).contains("1 valid signatures, 2 required"));
    ok(&["authority", "sign", s(&v1), "--key", s(&hq3)]);
    ok(&["authority", "verify", s(&v1), "--trust", s(&root)]);

    // Serve; the appliance pulls with the certificate pinned.
    let server = serve(&served, &cert, &tls_key);
    let out = ok(&[
        "policy",
        "pull",
        &server.url,
        "--cert",
        s(&cert),
        "--data-dir",
        &dd_s,
    ]);
    assert!(out.contains("activated policy version 1"), "{out}");
    let st = status(&dd_s);
    assert_eq!(st["active"]["version"], 1);
    assert_eq!(st["active"]["standing"], "valid");
    assert_eq!(
        st["active"]["signers"],
        serde_json::json!([key_id(&pubs[0]), key_id(&pubs[2])])
    );
    assert_eq!(st["last_pull"]["ok"], true);
    assert_eq!(st["trust_root_version"], 1);
    let human = ok(&["policy", "status", "--data-dir", &dd_s]);
    assert!(
        human.contains("version 1") && human.contains("last pull"),
        "{human}"
    );

    // Pulling again is a no-op.
    let out = ok(&[
        "policy",
        "pull",
        &server.url,
        "--cert",
        s(&cert),
        "--data-dir",
        &dd_s,
    ]);
    assert!(out.contains("already active"), "{out}");

    // A server with another certificate is refused, and nothing changes.
    let other_cert = hq.join("other.crt");
    ok(&[
        "authority",
        "keygen",
        "--tls",
        "--out",
        s(&hq.join("other.key")),
        "--cert-out",
        s(&other_cert),
    ]);
    let err = refused(&[
        "policy",
        "pull",
        &server.url,
        "--cert",
        s(&other_cert),
        "--data-dir",
        &dd_s,
    ]);
    assert!(err.contains("is pinned"), "{err}");
    assert_eq!(status(&dd_s)["last_pull"]["ok"], false);

    // HQ rotates the trust root to revoke hq3, signed by the current threshold (hq1 + hq2).
    let root_v2 = hq.join("root-v2.json");
    let hq3_id = key_id(&pubs[2]);
    ok(&[
        "authority",
        "root",
        "--site",
        "plant-a",
        "--threshold",
        "2",
        "--key",
        s(&pubs[0]),
        "--key",
        s(&pubs[1]),
        "--key",
        s(&pubs[2]),
        "--revoke",
        &hq3_id,
        "--root-version",
        "2",
        "--out",
        s(&root_v2),
    ]);
    let v2 = served.join("plant-a-v2.otgb");
    ok(&[
        "authority",
        "sign",
        s(&v2),
        "--key",
        s(&hq1),
        "--policy",
        &policy,
        "--site",
        "plant-a",
        "--bundle-version",
        "2",
        "--previous",
        s(&v1),
        "--trust-root",
        s(&root_v2),
    ]);
    ok(&["authority", "sign", s(&v2), "--key", s(&hq2)]);
    let out = ok(&[
        "policy",
        "pull",
        &server.url,
        "--cert",
        s(&cert),
        "--data-dir",
        &dd_s,
    ]);
    assert!(
        out.contains("activated policy version 2")
            && out.contains("trust root rotated to version 2"),
        "{out}"
    );
    let st = status(&dd_s);
    assert_eq!(
        (
            st["active"]["version"].clone(),
            st["trust_root_version"].clone()
        ),
        (2.into(), 2.into())
    );
    assert_eq!(st["previous"]["version"], 1);
    let active_hash = st["active"]["hash"].clone();

    // A bundle signed with the revoked key (and one good key) is refused, by pull and by import.
    let v3 = served.join("plant-a-v3.otgb");
    ok(&[
        "authority",
        "sign",
        s(&v3),
        "--key",
        s(&hq1),
        "--policy",
        &policy,
        "--site",
        "plant-a",
        "--bundle-version",
        "3",
    ]);
    ok(&["authority", "sign", s(&v3), "--key", s(&hq3)]);
    let err = refused(&[
        "policy",
        "pull",
        &server.url,
        "--cert",
        s(&cert),
        "--data-dir",
        &dd_s,
    ]);
    assert!(err.contains(&format!("revoked key {hq3_id}")), "{err}");
    assert!(err.contains("active policy is unchanged"), "{err}");
    let err = refused(&["policy", "import", s(&v3), "--data-dir", &dd_s]);
    assert!(err.contains(&format!("revoked key {hq3_id}")), "{err}");
    let st = status(&dd_s);
    assert_eq!(st["active"]["version"], 2);
    assert_eq!(st["active"]["hash"], active_hash);
    // A truncated file from removable media is refused by import, naming the reason.
    let truncated = hq.join("truncated.otgb");
    let whole = std::fs::read(&v3).unwrap();
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let err = refused(&["policy", "import", s(&truncated), "--data-dir", &dd_s]);
    assert!(err.contains("truncated"), "{err}");
    // Creating a bundle never overwrites a different file without --force.
    let err = refused(&[
        "authority",
        "sign",
        s(&v3),
        "--key",
        s(&hq2),
        "--policy",
        &policy,
        "--site",
        "plant-a",
        "--bundle-version",
        "4",
    ]);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&v3).unwrap(), whole);
    assert_eq!(status(&dd_s)["active"]["hash"], active_hash);
    drop(server);

    // The journal tells which policy was in force and why v3 was refused.
    let kinds: Vec<String> = otgate::journal::read::JournalReader::open(&dd.journal_dir())
        .unwrap()
        .filter_map(|r| {
            let value = serde_json::to_value(r.unwrap().event).unwrap();
            (value["category"] == "policy").then(|| {
                format!(
                    "{}:{}",
                    value["kind"].as_str().unwrap(),
                    value["reason"].as_str().unwrap_or("")
                )
            })
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "trust_root_installed:",
            "bundle_activated:",
            "bundle_activated:",
            "trust_root_rotated:",
            "bundle_refused:revoked_key",
            "bundle_refused:revoked_key",
            "bundle_refused:truncated"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// With the daemon running: import, pull and status through its control socket, the new policy
// enforced at once, the periodic pull of `[sync]`, and a lapsed policy on a manual clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use otgate::clock::{Clock, ManualClock, SharedClock, SystemClock};
use otgate::daemon::{DaemonConfig, Listeners, PolicySource};
use otgate_sync::bundle::{canonical_policy, Body, Bundle, Header};
use otgate_sync::{AuthorityKey, TrustRoot, TrustRootFile};
use otgate_tests::appliance::{describe, saturday_morning, totp_code, TestAppliance, PLANT_POLICY};
use tokio_util::sync::CancellationToken;

fn authority(i: u8) -> AuthorityKey {
    AuthorityKey::from_secret([i; 32], Some(format!("hq-{i}")))
}

/// A 2-of-3 trust root for plant-a, installed in `appliance`'s data directory.
fn install_root(appliance: &TestAppliance) {
    let root = TrustRoot::new(TrustRootFile {
        format: 1,
        site: "plant-a".into(),
        root_version: 1,
        threshold: 2,
        keys: (1..=3).map(|i| authority(i).public_entry()).collect(),
        revoked: vec![],
    })
    .unwrap();
    let path = appliance.scratch().join("root.json");
    std::fs::write(&path, root.to_json()).unwrap();
    otgate::bundles::install_trust_root(&DataDir::new(&appliance.data_dir), &path).unwrap();
}

/// A bundle of `policy` signed by authorities 1 and 2, valid from a day before `from` until
/// `from + valid`, with `grace` of offline grace, written to `dir/name`.
fn bundle_file(
    dir: &Path,
    name: &str,
    version: u64,
    policy: &str,
    from: DateTime<Utc>,
    valid: TimeDelta,
    grace: TimeDelta,
) -> PathBuf {
    let mut bundle = Bundle::new(Body {
        header: Header {
            site: "plant-a".into(),
            version,
            issued_at: from - TimeDelta::days(1),
            not_before: from - TimeDelta::days(1),
            expires_at: from + valid,
            previous_hash: None,
            grace_period_secs: u64::try_from(grace.num_seconds()).unwrap(),
        },
        policy: canonical_policy(policy, "plant.toml").unwrap(),
        trust_root: None,
    })
    .unwrap();
    bundle.sign(&authority(1)).unwrap();
    bundle.sign(&authority(2)).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bundle.encode()).unwrap();
    path
}

/// `otgate serve` in this process (so the test owns its clock), stopped when dropped.
struct Daemon {
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    fn start(appliance: &mut TestAppliance, clock: SharedClock) -> Self {
        let dd = DataDir::new(&appliance.data_dir);
        let shutdown = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = shutdown.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let it: SocketAddr = "127.0.0.1:0".parse().unwrap();
                let listeners = Listeners::bind(&dd.control_socket(), it).await.unwrap();
                tx.send(listeners.it.local_addr().unwrap()).unwrap();
                let config = DaemonConfig::new(dd, PolicySource::ActiveBundle);
                otgate::daemon::run(config, listeners, clock, stop)
                    .await
                    .unwrap();
            });
        });
        let it = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        appliance.it_addr = Some(it);
        let socket = DataDir::new(&appliance.data_dir).control_socket();
        let deadline = Instant::now() + Duration::from_secs(60);
        while otgate::control::client::call(&socket, "ping", serde_json::Value::Null).is_err() {
            assert!(Instant::now() < deadline, "the daemon never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            shutdown,
            thread: Some(thread),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn daemon_status(appliance: &TestAppliance) -> serde_json::Value {
    let out = appliance.otgate(&["policy", "status", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Wait (bounded) until the daemon's `policy status` satisfies `check`.
fn wait_status(
    appliance: &TestAppliance,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = daemon_status(appliance);
        if check(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "never {what}: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn policy_kinds(appliance: &TestAppliance) -> Vec<String> {
    appliance
        .journal()
        .into_iter()
        .filter(|(_, e)| e["category"] == "policy")
        .map(|(kind, _)| kind)
        .collect()
}

fn count(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| *k == kind).count()
}

fn request_line3(appliance: &TestAppliance, at: DateTime<Utc>) -> Output {
    let totp = totp_code("alice", at);
    appliance.request(
        "alice",
        &[
            "--target",
            "line3-plc",
            "--op",
            "read",
            "--duration",
            "20m",
            "--ticket",
            "CHG-1234",
            "--reason",
            "setpoints",
            "--totp",
            &totp,
        ],
    )
}

#[test]
fn a_running_daemon_imports_and_pulls_through_its_socket_enforces_at_once_and_lapses() {
    let t0 = saturday_morning();
    let mut appliance = TestAppliance::init(PLANT_POLICY);
    install_root(&appliance);
    let hq = appliance.scratch().join("hq");
    std::fs::create_dir_all(&hq).unwrap();
    let half_hour = TimeDelta::minutes(30);
    let v1 = bundle_file(&hq, "v1.otgb", 1, PLANT_POLICY, t0, half_hour, half_hour);
    // v2: alice no longer holds the maintenance role.
    let without_alice = PLANT_POLICY.replacen("roles = [\"maintenance\"]", "roles = []", 1);
    let v2 = bundle_file(&hq, "v2.otgb", 2, &without_alice, t0, half_hour, half_hour);

    // No daemon: v1 is imported on the data directory (as of Saturday 07:00, through the library:
    // the CLI reads the real clock), and status reads the directory.
    {
        let dd = DataDir::new(&appliance.data_dir);
        let key = otgate::journal::keys::load_appliance_key(&dd.appliance_key()).unwrap();
        let journal = otgate::journal::Journal::open(
            &dd.journal_dir(),
            key,
            otgate::journal::JournalConfig::default(),
        )
        .unwrap();
        otgate::bundles::import(&dd, &journal, &std::fs::read(&v1).unwrap(), t0).unwrap();
    }
    assert!(daemon_status(&appliance)["daemon"].is_null());

    // The daemon runs on a manual clock at Saturday 07:00 (inside the maintenance window).
    let clock = ManualClock::starting_at(t0);
    let daemon = Daemon::start(&mut appliance, Arc::new(clock.clone()));
    let status = daemon_status(&appliance);
    assert_eq!(status["active"]["version"], 1);
    assert_eq!(status["daemon"]["enforcing"], "valid", "{status}");
    assert!(status["daemon"]["periodic_pull"].is_null());

    // alice gets a grant on line 3 under v1.
    let out = request_line3(&appliance, clock.now_utc());
    assert!(
        stdout(&out).contains("R-0001: requested"),
        "{}",
        describe(&out)
    );
    let sam = totp_code("sam", clock.now_utc());
    let out = appliance.otgate(&["approve", "R-0001", "--as", "sam", "--totp", &sam]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(appliance.state("G-0001"), "active");

    // Importing v2 while the daemon runs goes through its socket (no journal lock error), and
    // the daemon enforces v2 at once: alice's grant is revoked.
    let out = appliance.otgate(&["policy", "import", s(&v2)]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout(&out).contains("activated policy version 2 (was 1)"),
        "{}",
        describe(&out)
    );
    assert!(
        stdout(&out).contains("revoked grants the new policy no longer covers: G-0001"),
        "{}",
        describe(&out)
    );
    assert_eq!(appliance.state("G-0001"), "revoked");
    let out = request_line3(&appliance, clock.now_utc() + TimeDelta::seconds(30));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    // A refusal through the daemon: the same message and exit code as without it.
    let out = appliance.otgate(&["policy", "import", s(&v1)]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused; the active policy is unchanged"),
        "{err}"
    );
    assert!(err.contains("\nhint: "), "{err}");
    assert_eq!(daemon_status(&appliance)["active"]["version"], 2);

    // Pull v3 (alice back) from HQ over pinned TLS, through the daemon.
    let served = hq.join("served");
    std::fs::create_dir_all(&served).unwrap();
    bundle_file(
        &served,
        "v3.otgb",
        3,
        PLANT_POLICY,
        t0,
        half_hour,
        half_hour,
    );
    let (cert, key) = (hq.join("hq.crt"), hq.join("hq-tls.key"));
    ok(&[
        "authority",
        "keygen",
        "--tls",
        "--out",
        s(&key),
        "--cert-out",
        s(&cert),
        "--name",
        "127.0.0.1",
    ]);
    let server = serve(&served, &cert, &key);
    let out = appliance.otgate(&["policy", "pull", &server.url, "--cert", s(&cert)]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout(&out).contains("activated policy version 3"),
        "{}",
        describe(&out)
    );
    drop(server);
    let status = daemon_status(&appliance);
    assert_eq!(status["active"]["version"], 3);
    assert_eq!(status["last_pull"]["ok"], true);

    // Past expiry: on grace, journaled once, and requests are still decided (with a warning).
    clock.set(t0 + TimeDelta::minutes(45));
    wait_status(&appliance, "on grace", |s| {
        s["daemon"]["enforcing"] == "grace"
    });
    let out = request_line3(&appliance, clock.now_utc());
    assert!(stdout(&out).contains(": requested"), "{}", describe(&out));
    let pending = stdout(&out)
        .split_whitespace()
        .find(|w| w.starts_with("R-"))
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    let human = appliance.otgate(&["policy", "status"]);
    assert!(
        stdout(&human).contains("EXPIRED, enforced on grace"),
        "{}",
        describe(&human)
    );

    // Past the grace: only break-glass works, loudly; the pending request is revoked.
    clock.set(t0 + TimeDelta::minutes(75));
    let status = wait_status(&appliance, "lapsed", |s| {
        s["daemon"]["enforcing"] == "lapsed"
    });
    assert_eq!(status["active"]["breakglass_only"], true, "{status}");
    let human = appliance.otgate(&["policy", "status"]);
    assert!(stdout(&human).contains("LAPSED"), "{}", describe(&human));
    let deadline = Instant::now() + Duration::from_secs(30);
    while appliance.state(&pending) == "requested" {
        assert!(Instant::now() < deadline, "{pending} was not revoked");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = request_line3(&appliance, clock.now_utc());
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stdout(&out).contains("lapsed"), "{}", describe(&out));
    let oscar = totp_code("oscar", clock.now_utc());
    let out = appliance.otgate(&[
        "request",
        "--break-glass",
        "--as",
        "oscar",
        "--totp",
        &oscar,
        "--target",
        "safety-plc",
        "--op",
        "read",
        "--duration",
        "10m",
        "--reason",
        "burner trip",
    ]);
    assert!(
        out.status.success(),
        "break-glass never lapses: {}",
        describe(&out)
    );
    assert!(stdout(&out).contains(": active"), "{}", describe(&out));

    drop(daemon);
    let kinds = policy_kinds(&appliance);
    assert_eq!(count(&kinds, "grace_started"), 1, "{kinds:?}");
    assert_eq!(count(&kinds, "grace_ended"), 1, "{kinds:?}");
    assert_eq!(count(&kinds, "bundle_activated"), 3, "{kinds:?}");
    assert_eq!(count(&kinds, "bundle_refused"), 1, "{kinds:?}");
}

#[test]
fn the_daemon_pulls_by_itself_and_journals_failures_throttled() {
    let now = Utc::now();
    let mut appliance = TestAppliance::init(PLANT_POLICY);
    install_root(&appliance);
    let hq = appliance.scratch().join("hq");
    let served = hq.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let day = TimeDelta::days(1);
    let v1 = bundle_file(&hq, "v1.otgb", 1, PLANT_POLICY, now, day, day);
    ok(&[
        "policy",
        "import",
        s(&v1),
        "--data-dir",
        s(&appliance.data_dir),
    ]);
    bundle_file(&served, "v2.otgb", 2, PLANT_POLICY, now, day, day);
    let (cert, key) = (hq.join("hq.crt"), hq.join("hq-tls.key"));
    ok(&[
        "authority",
        "keygen",
        "--tls",
        "--out",
        s(&key),
        "--cert-out",
        s(&cert),
        "--name",
        "127.0.0.1",
    ]);
    let server = serve(&served, &cert, &key);
    let config = DataDir::new(&appliance.data_dir).config_file();
    let mut text = std::fs::read_to_string(&config).unwrap_or_default();
    text.push_str(&format!(
        "\n[sync]\nurl = \"{}\"\ncert = \"{}\"\ninterval = \"10s\"\ntimeout = \"5s\"\n",
        server.url,
        s(&cert)
    ));
    std::fs::write(&config, text).unwrap();

    // The first attempt runs at start: v2 is pulled and active.
    let daemon = Daemon::start(&mut appliance, Arc::new(SystemClock));
    let status = wait_status(&appliance, "on v2", |s| s["active"]["version"] == 2);
    assert_eq!(status["last_pull"]["ok"], true, "{status}");
    assert_eq!(status["daemon"]["periodic_pull"]["url"], server.url);
    assert_eq!(status["daemon"]["periodic_pull"]["interval_secs"], 10);

    // HQ goes away: every attempt fails, but only the first failure is journaled.
    drop(server);
    let status = wait_status(&appliance, "failing twice", |s| {
        s["daemon"]["periodic_pull"]["consecutive_failures"].as_u64() >= Some(2)
    });
    assert_eq!(status["last_pull"]["ok"], false, "{status}");
    assert_eq!(status["active"]["version"], 2);
    let human = appliance.otgate(&["policy", "status"]);
    assert!(stdout(&human).contains("FAILING: "), "{}", describe(&human));
    drop(daemon);
    let kinds = policy_kinds(&appliance);
    assert_eq!(count(&kinds, "pull_failing"), 1, "{kinds:?}");
    assert_eq!(count(&kinds, "bundle_activated"), 2, "{kinds:?}");
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
