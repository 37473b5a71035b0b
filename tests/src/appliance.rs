//! A real appliance for end-to-end tests and the demo: a temporary data directory set up like
//! `otgate init` does, the `otgate serve` daemon on free loopback ports (port 0) with the sample
//! plant's policy, OT users with known TOTP seeds, the demo IT keys, and the CLI pointed at it.
//!
//! Everything goes through the real binary and its real sockets (TLS listener, control socket).
//! The daemon's wall clock can be started at a chosen instant (`--danger-clock-start`, hidden
//! and test-only), so schedule-bound rules (Saturday 06:00-10:00 in Berlin) can be exercised on
//! any day; grants still end on the daemon's monotonic clock. Every wait is bounded.
//!
//! Test support: it panics with a clear message when the appliance misbehaves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use otgate::datadir::DataDir;
use otgate::stores::secret::Secret;
use otgate::stores::totp::TotpEnrolment;

/// The sample plant's policy (`policies/examples/plant.toml`).
pub const PLANT_POLICY: &str = include_str!("../../policies/examples/plant.toml");

/// How long a daemon may take to say it is ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The built `otgate` binary (next to the test binary's `deps/` directory).
pub fn otgate_bin() -> PathBuf {
    if let Ok(path) = std::env::var("OTGATE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary has a path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let bin = dir.join("otgate");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` first",
        bin.display()
    );
    bin
}

/// The demo key of an identity of the sample plant: the ed25519 key whose seed is
/// SHA-256("otgate-demo:<id>") (the policy lists its public half).
pub fn demo_key(id: &str) -> SigningKey {
    let seed: [u8; 32] = Sha256::digest(format!("otgate-demo:{id}").as_bytes()).into();
    SigningKey::from_bytes(&seed)
}

/// The TOTP seed the helpers enrol for `id` (20 bytes derived from the id; tests only).
pub fn totp_seed(id: &str) -> Vec<u8> {
    let digest = Sha256::digest(format!("otgate-test-totp:{id}").as_bytes());
    digest.iter().take(20).copied().collect()
}

/// The TOTP code of `id`'s test enrolment at `at`.
pub fn totp_code(id: &str, at: DateTime<Utc>) -> String {
    TotpEnrolment::from_seed(Secret::new(totp_seed(id)), at).code_at(at)
}

/// Saturday 2026-11-28, 07:00 in Berlin: inside the sample plant's weekend maintenance window.
pub fn saturday_morning() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T07:00:00+01:00")
        .expect("valid")
        .with_timezone(&Utc)
}

/// A test appliance: its data directory and, while running, its daemon.
#[derive(Debug)]
pub struct TestAppliance {
    dir: tempfile::TempDir,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The policy file the daemon runs on (unsigned; tests only).
    pub policy_file: PathBuf,
    /// The daemon's IT-side address, once started.
    pub it_addr: Option<SocketAddr>,
    /// The wall-clock instant the daemon's clock started at, and when (real time).
    clock: Option<(DateTime<Utc>, Instant)>,
    child: Option<Child>,
}

impl TestAppliance {
    /// A fresh data directory (appliance key, TLS certificate, both stores), the given policy,
    /// OT users `sam`, `sue`, `olga`, `oscar` with their policy roles and TOTP, and IT TOTP for
    /// `alice`, `bob` and `vendor-acme`. The daemon is not started.
    pub fn init(policy: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("appliance");
        let layout = DataDir::new(&data_dir);
        std::fs::create_dir_all(&data_dir).expect("data dir");
        otgate::journal::keys::generate_appliance_key(&layout.appliance_key()).expect("key");
        otgate::tunnel::tls::create_appliance_cert(&layout, &[], false).expect("cert");
        let it = otgate::stores::it::ItStore::create(&layout.it_store_dir()).expect("IT store");
        let ot = otgate::stores::ot::OtStore::create(&layout.ot_store_dir()).expect("OT store");
        let now = Utc::now();
        for (id, roles) in [
            ("sam", &["shift-supervisor"][..]),
            ("sue", &["shift-supervisor"]),
            ("olga", &["safety-engineer"]),
            ("oscar", &["operator", "emergency"]),
        ] {
            let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
            ot.add_user(id, &roles, None, now).expect("OT user");
            ot.enroll_totp_with_seed(id, Secret::new(totp_seed(id)), now)
                .expect("OT TOTP");
        }
        for id in ["alice", "bob", "vendor-acme"] {
            it.enroll_totp_with_seed(id, Secret::new(totp_seed(id)), now)
                .expect("IT TOTP");
        }
        let policy_file = dir.path().join("policy.toml");
        std::fs::write(&policy_file, policy).expect("policy file");
        Self {
            dir,
            data_dir,
            policy_file,
            it_addr: None,
            clock: None,
            child: None,
        }
    }

    /// The temporary directory holding everything (for extra files).
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// Start the daemon with its wall clock at `clock_start` (or the system clock), and wait
    /// until it is ready.
    pub fn start(&mut self, clock_start: Option<DateTime<Utc>>) {
        self.start_in(None, "127.0.0.1:0", clock_start);
    }

    /// Start the daemon inside network namespace `netns` (when given; needs root), listening on
    /// `listen` on the IT side, with its wall clock at `clock_start`.
    pub fn start_in(
        &mut self,
        netns: Option<&str>,
        listen: &str,
        clock_start: Option<DateTime<Utc>>,
    ) {
        assert!(self.child.is_none(), "the daemon runs already");
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(otgate_bin());
                c
            }
            None => Command::new(otgate_bin()),
        };
        command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["serve", "--listen", listen, "--danger-unsigned-policy"])
            .arg(&self.policy_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(at) = clock_start {
            command.arg("--danger-clock-start").arg(at.to_rfc3339());
        }
        let mut child = command.spawn().expect("spawn otgate serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the daemon never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!("otgate serve did not become ready: {status:?}");
            }
        };
        let it = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("it="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected ready line: {line}"));
        self.it_addr = Some(it);
        self.clock = clock_start.map(|at| (at, Instant::now()));
        self.child = Some(child);
    }

    /// The daemon's wall clock now (as its `--danger-clock-start` clock reads).
    pub fn now(&self) -> DateTime<Utc> {
        match self.clock {
            Some((at, since)) => {
                at + chrono::Duration::from_std(since.elapsed()).unwrap_or_default()
            }
            None => Utc::now(),
        }
    }

    /// The daemon's clock start for a restart that continues where it stopped, shifted by `by`.
    pub fn clock_after(&self, by: chrono::Duration) -> DateTime<Utc> {
        self.now() + by
    }

    /// Stop the daemon (SIGTERM) and wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Run `otgate --data-dir DIR ARGS...` and return its output.
    pub fn otgate(&self, args: &[&str]) -> Output {
        Command::new(otgate_bin())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run otgate")
    }

    /// Write `id`'s demo key to a key file and return its path.
    pub fn it_key_file(&self, id: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{id}.key"));
        if !path.exists() {
            otgate::tunnel::profile::write_key_file(&path, &demo_key(id), false).expect("key file");
        }
        path
    }

    /// The flags that make `otgate request` (or `connect`) reach this appliance as `id`.
    pub fn tunnel_flags(&self, id: &str) -> Vec<String> {
        let it = self.it_addr.expect("the daemon runs");
        vec![
            "--appliance".into(),
            it.to_string(),
            "--pin".into(),
            otgate::tunnel::tls::cert_path(&DataDir::new(&self.data_dir))
                .display()
                .to_string(),
            "--as".into(),
            id.into(),
            "--key".into(),
            self.it_key_file(id).display().to_string(),
        ]
    }

    /// `otgate request` as `id` with `args` (plus the tunnel flags).
    pub fn request(&self, id: &str, args: &[&str]) -> Output {
        let mut all: Vec<String> = vec!["request".into()];
        all.extend(self.tunnel_flags(id));
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        self.otgate(&refs)
    }

    /// `id`'s TOTP code on the daemon's clock.
    pub fn totp(&self, id: &str) -> String {
        totp_code(id, self.now())
    }

    /// The record of a request or grant, from `otgate grants --json`.
    pub fn record(&self, id: &str) -> Option<serde_json::Value> {
        let out = self.otgate(&["grants", "--json"]);
        assert!(
            out.status.success(),
            "otgate grants: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("grants JSON");
        all.as_array()?
            .iter()
            .find(|r| r["request_id"] == id || r["grant_id"] == id)
            .cloned()
    }

    /// The state of a request or grant (`requested`, `active`, `ended`, ...).
    pub fn state(&self, id: &str) -> String {
        self.record(id)
            .map(|r| r["state"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    }

    /// Wait (at most `limit`) until `id` is in `state`; panics with the last state otherwise.
    pub fn wait_for_state(&self, id: &str, state: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let now = self.state(id);
            if now == state {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{id} stayed {now}, never became {state}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The journal's records, as `(kind, event JSON)`, read without the key.
    pub fn journal(&self) -> Vec<(String, serde_json::Value)> {
        use otgate::journal::event::Subjects;
        let dir = DataDir::new(&self.data_dir).journal_dir();
        otgate::journal::read::JournalReader::open(&dir)
            .expect("journal")
            .filter_map(Result::ok)
            .map(|r| {
                (
                    r.event.kind().to_owned(),
                    serde_json::to_value(&r.event).expect("json"),
                )
            })
            .collect()
    }
}

impl Drop for TestAppliance {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A request/answer summary of a CLI run, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An IT-side broker session tunnel held open by a test (TLS + the ed25519 handshake).
#[derive(Debug)]
pub struct SessionProbe {
    runtime: tokio::runtime::Runtime,
    stream: otgate::tunnel::client::TunnelStream,
}

impl SessionProbe {
    /// Whether the appliance closes the session within `limit` (reads until end of stream).
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        use tokio::io::AsyncReadExt;
        let stream = &mut self.stream;
        self.runtime.block_on(async {
            let mut buf = [0u8; 512];
            let closing = async {
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            };
            tokio::time::timeout(limit, closing).await.is_ok()
        })
    }

    /// Send raw bytes (e.g. a Modbus TCP request) through the session.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let stream = &mut self.stream;
        self.runtime.block_on(async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
    }
}

impl TestAppliance {
    /// Open a broker session tunnel as `id` for `grant_id` on `asset`.
    pub fn open_session(
        &self,
        id: &str,
        grant_id: &str,
        asset: &str,
    ) -> Result<SessionProbe, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let it = self.it_addr.ok_or("the daemon is not running")?;
        let cert = otgate::tunnel::tls::cert_path(&DataDir::new(&self.data_dir));
        let pin = otgate::tunnel::tls::Pin::from_cert_file(&cert).map_err(|e| e.to_string())?;
        let identity = otgate::tunnel::client::ClientIdentity {
            id: id.to_owned(),
            key: demo_key(id),
            totp: None,
        };
        let purpose = otgate::tunnel::Purpose::Session {
            grant_id: grant_id.to_owned(),
            asset: asset.to_owned(),
        };
        let stream = runtime
            .block_on(otgate::tunnel::client::connect(
                &it.to_string(),
                &pin,
                &identity,
                purpose,
            ))
            .map_err(|e| e.to_string())?;
        Ok(SessionProbe { runtime, stream })
    }
}
