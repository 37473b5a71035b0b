//! `otgate demo`: a simulated plant and the appliance playing the brief's situations, narrated.
//!
//! One command, no root, nothing to install beyond the build: a temporary data directory,
//! loopback addresses and free ports found at run time. It starts three PLC simulators (line 1,
//! line 3, and the safety controller tagged `safety`), a mirror port on line 3's switch, an HQ
//! authority that signs the sample plant's policy (2 of 3 keys), and the appliance itself
//! (the same `daemon::run` as `otgate serve`, in this process, on a plant clock that reads
//! Saturday morning so the weekend maintenance window is open). Every other step runs the real
//! `otgate` binary as a person following the README's tour would: `authority sign`, `init`,
//! `policy import`, `request`, `approve`, `connect`, `revoke`, `inspect`, `audit verify`.
//!
//! The acts: (1) a maintenance window: request with ticket and MFA, a supervisor's approval,
//! reads and a write inside the grant, a write outside it refused with exception 02, and the
//! session closed when the (shortened) window ends; (2) a vendor's read-only access that needs
//! two approvers; (3) a rogue write that bypassed the appliance, caught by the passive monitor
//! from the mirror port's capture. A summary from the journal ends it.
//!
//! What it does not do: decide anything itself. Every outcome it prints comes from the
//! appliance's answers, and its test checks them against the journal, not the narration.

mod driver;
mod narrator;
mod plant;
mod totp;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_modbus::client::{Context as ModbusContext, Reader, Writer};
use tokio_modbus::Slave;
use tokio_util::sync::CancellationToken;

use crate::datadir::DataDir;
use driver::{field, Otgate};
use narrator::Narrator;
pub use narrator::Pace;
use plant::{Plant, PlantClock};
use totp::Authenticators;

/// The sample plant's policy, which the demo's HQ signs (with the simulated plant's addresses).
const PLANT_POLICY: &str = include_str!("../../../policies/examples/plant.toml");

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How fast it plays.
    pub pace: Pace,
    /// Keep everything in this directory (created; must not exist or be empty).
    pub keep: Option<PathBuf>,
}

/// What happened, as the appliance answered (the test checks the journal instead).
#[derive(Debug, Default, Clone)]
pub struct DemoSummary {
    /// Grants the appliance issued, with who held them and how they ended.
    pub grants: Vec<String>,
    /// Operations the broker forwarded, from the journal.
    pub forwarded: u64,
    /// Operations the broker refused, from the journal.
    pub refused: u64,
    /// Alerts the monitor raised.
    pub alerts: Vec<String>,
    /// `audit verify`'s verdict.
    pub verify: String,
}

struct Stage {
    narrator: Narrator,
    pace: Pace,
    work: PathBuf,
    otgate: Otgate,
    data_dir: DataDir,
    clock: PlantClock,
    plant: Plant,
    auth: Authenticators,
    it_addr: Option<SocketAddr>,
    keys: Vec<(String, PathBuf)>,
}

/// Run the demo.
pub async fn run(options: DemoOptions) -> anyhow::Result<DemoSummary> {
    let (work, _temp) = match &options.keep {
        Some(dir) => {
            if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
                bail!(
                    "{} is not empty; --keep wants a new or empty directory",
                    dir.display()
                );
            }
            std::fs::create_dir_all(dir)?;
            (dir.canonicalize()?, None)
        }
        None => {
            let temp = tempfile::Builder::new().prefix("otgate-demo-").tempdir()?;
            (temp.path().to_owned(), Some(temp))
        }
    };
    let narrator = Narrator::new(options.pace);
    println!("otgate demo: a simulated plant, its HQ, and the appliance between IT and OT.");
    println!(
        "Everything runs on this machine, on loopback, in {}.",
        work.display()
    );

    let clock = PlantClock::starting_at(next_saturday_morning(Utc::now()));
    let data_path = work.join("appliance");
    let plant = Plant::start(&work, clock).await?;
    let mut stage = Stage {
        narrator,
        pace: options.pace,
        otgate: Otgate::current(&data_path)?,
        data_dir: DataDir::new(&data_path),
        work: work.clone(),
        clock,
        plant,
        auth: Authenticators::default(),
        it_addr: None,
        keys: Vec::new(),
    };
    stage.set_the_stage()?;
    let shutdown = CancellationToken::new();
    let daemon = stage.start_appliance(shutdown.clone()).await?;
    let outcome = async {
        stage.maintenance_window().await?;
        stage.vendor_support().await?;
        stage.rogue_write().await?;
        anyhow::Ok(())
    }
    .await;
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), daemon).await;
    outcome?;
    match stopped {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(e.context("the appliance stopped with an error")),
        Ok(Err(e)) => bail!("the appliance task failed: {e}"),
        Err(_) => bail!("the appliance did not stop within 10 s"),
    }
    let summary = stage.summary(options.keep.is_some())?;
    Ok(summary)
}

/// Saturday 07:00 in Berlin (the sample plant's timezone) of the week of `now`: today if it
/// is Saturday, else the coming one. The demo's plant clock starts there, inside the weekend
/// maintenance window.
fn next_saturday_morning(now: DateTime<Utc>) -> DateTime<Utc> {
    let berlin = chrono_tz::Europe::Berlin;
    let local = now.with_timezone(&berlin).date_naive();
    // Saturday is day 5 counted from Monday.
    let days = (5 + 7 - local.weekday().num_days_from_monday()) % 7;
    let saturday = local + chrono::Days::new(u64::from(days));
    let at = saturday.and_hms_opt(7, 0, 0).unwrap_or_default();
    berlin
        .from_local_datetime(&at)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now)
}

impl Stage {
    fn window(&self) -> &'static str {
        match self.pace {
            Pace::Fast => "8s",
            Pace::Real => "60s",
        }
    }

    fn plant_time(&self) -> String {
        self.clock
            .now()
            .with_timezone(&chrono_tz::Europe::Berlin)
            .format("%a %d %b %H:%M:%S %Z")
            .to_string()
    }

    /// The plant, HQ's keys and signed bundle, the appliance's data directory.
    fn set_the_stage(&mut self) -> anyhow::Result<()> {
        let n = &self.narrator;
        n.act("Setting the stage");
        let p = &self.plant;
        n.say(
            "plant",
            &format!(
                "PLCs: line1-plc {}, line3-plc {}, safety-plc {} [safety]",
                p.line1.address, p.line3.address, p.safety.address
            ),
        );
        n.say(
            "plant",
            "line 3's switch mirrors its port into mirror-line3.pcap for the monitor",
        );

        // HQ: three authority keys, a 2-of-3 trust root, the plant's policy signed twice.
        let hq = self.work.join("hq");
        std::fs::create_dir_all(&hq)?;
        let mut pubs = Vec::new();
        for i in 1..=3 {
            let key = hq.join(format!("hq{i}.key"));
            self.otgate.ok([
                "authority".into(),
                "keygen".into(),
                "--out".into(),
                key.clone().into_os_string(),
                "--name".into(),
                format!("hq-security-{i}").into(),
            ])?;
            pubs.push(key.with_extension("pub"));
        }
        let root = hq.join("plant-a-root.json");
        let mut args: Vec<std::ffi::OsString> = vec![
            "authority".into(),
            "root".into(),
            "--site".into(),
            "plant-a".into(),
        ];
        args.extend(["--threshold".into(), "2".into()]);
        for key in &pubs {
            args.extend(["--key".into(), key.clone().into_os_string()]);
        }
        args.extend(["--out".into(), root.clone().into_os_string()]);
        self.otgate.ok(args)?;

        // The people's own keys: HQ puts their public halves into the policy.
        let mut policy = self.plant_policy_with_addresses()?;
        for who in ["alice", "vendor-acme"] {
            let dir = self.work.join(who);
            std::fs::create_dir_all(&dir)?;
            let key = dir.join(format!("{who}.key"));
            let made = self.otgate.json([
                "users".into(),
                "keygen".into(),
                "--out".into(),
                key.clone().into_os_string(),
                "--json".into(),
            ])?;
            let public = field(&made, "public_key");
            policy = replace_public_key(&policy, who, &public)?;
            self.keys.push((who.to_owned(), key));
        }
        let policy_file = hq.join("plant.toml");
        std::fs::write(&policy_file, &policy)?;
        let bundle = hq.join("plant-a-v1.otgb");
        self.otgate.ok([
            "authority".into(),
            "sign".into(),
            bundle.clone().into_os_string(),
            "--key".into(),
            hq.join("hq1.key").into_os_string(),
            "--policy".into(),
            policy_file.into_os_string(),
            "--site".into(),
            "plant-a".into(),
            "--bundle-version".into(),
            "1".into(),
            "--valid-for".into(),
            "30d".into(),
        ])?;
        self.otgate.ok([
            "authority".into(),
            "sign".into(),
            bundle.clone().into_os_string(),
            "--key".into(),
            hq.join("hq2.key").into_os_string(),
        ])?;
        n.say(
            "HQ",
            "3 authority keys; trust root: any 2 of them; policy v1 signed by hq-security-1 and -2",
        );

        // The appliance: init with the trust root, import the bundle, enrol people.
        self.otgate.ok([
            "init".into(),
            "--trust".into(),
            root.into_os_string(),
            "--it-listen".into(),
            "127.0.0.1:0".into(),
        ])?;
        let imported = self.otgate.json([
            "policy".into(),
            "import".into(),
            bundle.into_os_string(),
            "--json".into(),
        ])?;
        n.say(
            "appliance",
            &format!(
                "otgate init; policy import: bundle v{} accepted ({})",
                field(&imported, "version"),
                short_hash(&field(&imported, "hash"))
            ),
        );
        for (who, role) in [("sam", "shift-supervisor"), ("sue", "shift-supervisor")] {
            self.otgate.ok(["users", "add-ot", who, "--role", role])?;
            let shown =
                self.otgate
                    .json(["users", "enroll-totp", who, "--zone", "ot", "--json"])?;
            self.auth.enrol(who, &field(&shown, "secret"))?;
        }
        for who in ["alice", "vendor-acme"] {
            let shown =
                self.otgate
                    .json(["users", "enroll-totp", who, "--zone", "it", "--json"])?;
            self.auth.enrol(who, &field(&shown, "secret"))?;
        }
        n.say(
            "appliance",
            "OT store: supervisors sam and sue with TOTP; IT store: TOTP for alice and vendor-acme",
        );
        Ok(())
    }

    /// The sample plant's policy with the simulated PLCs' loopback addresses.
    fn plant_policy_with_addresses(&self) -> anyhow::Result<String> {
        let value: toml::Value = PLANT_POLICY.parse().context("the sample plant's policy")?;
        let mut policy = PLANT_POLICY.to_owned();
        let assets = value
            .get("assets")
            .and_then(toml::Value::as_array)
            .cloned()
            .unwrap_or_default();
        for asset in assets {
            let id = asset
                .get("id")
                .and_then(toml::Value::as_str)
                .unwrap_or_default();
            let old = asset
                .get("address")
                .and_then(toml::Value::as_str)
                .unwrap_or_default();
            let new = match id {
                "line1-plc" => self.plant.line1.address,
                "line3-plc" => self.plant.line3.address,
                "safety-plc" => self.plant.safety.address,
                _ => continue,
            };
            policy = policy.replace(&format!("\"{old}\""), &format!("\"{new}\""));
        }
        // The cell networks and the panels move to loopback /24s with the same third octet.
        policy = policy.replace("\"10.10.", "\"127.0.");
        Ok(policy)
    }

    async fn start_appliance(
        &mut self,
        shutdown: CancellationToken,
    ) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
        use crate::daemon::{self, DaemonConfig, Listeners, PolicySource};
        let mut config = DaemonConfig::new(self.data_dir.clone(), PolicySource::ActiveBundle);
        let listeners = Listeners::bind(
            &self.data_dir.control_socket(),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await?;
        self.it_addr = Some(listeners.it.local_addr()?);
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
        config.ready = Some(ready_tx);
        let clock: crate::clock::SharedClock =
            Arc::new(crate::clock::ManualClock::starting_at(self.clock.now()));
        let task = tokio::spawn(async move {
            daemon::run(config, listeners, clock, shutdown)
                .await
                .map_err(anyhow::Error::new)
        });
        match tokio::time::timeout(Duration::from_secs(30), ready_rx.recv()).await {
            Ok(Some(())) => {}
            Ok(None) => {
                // The daemon stopped before it was ready: say why.
                return match task.await {
                    Ok(Err(e)) => Err(e.context("the appliance did not start")),
                    Ok(Ok(())) => bail!("the appliance stopped before it was ready"),
                    Err(e) => bail!("the appliance task failed: {e}"),
                };
            }
            Err(_) => bail!("the appliance did not become ready within 30 s"),
        }
        self.narrator.say(
            "appliance",
            &format!(
                "serving: IT side {} (TLS), control socket in its data dir; plant clock {}",
                self.it_addr.map(|a| a.to_string()).unwrap_or_default(),
                self.plant_time()
            ),
        );
        Ok(task)
    }

    /// `--appliance ADDR --pin CERT --as WHO --key FILE`: how `who`'s client reaches the appliance.
    fn tunnel_args(&self, who: &str) -> anyhow::Result<Vec<String>> {
        let key = self
            .keys
            .iter()
            .find(|(w, _)| w == who)
            .map(|(_, k)| k.clone())
            .with_context(|| format!("{who} has no key"))?;
        let addr = self.it_addr.context("the appliance is not serving")?;
        Ok(vec![
            "--appliance".into(),
            addr.to_string(),
            "--pin".into(),
            crate::tunnel::tls::cert_path(&self.data_dir)
                .display()
                .to_string(),
            "--as".into(),
            who.into(),
            "--key".into(),
            key.display().to_string(),
        ])
    }

    /// The appliance's decision in words: its first line, then the details indented.
    fn say_decision(&self, request: &str, answer: &Value) {
        let decision = field(answer, "decision");
        let mut lines = decision.lines();
        let first = lines.next().unwrap_or_default();
        self.narrator
            .say("appliance", &format!("{request}: {first}"));
        for line in lines {
            self.narrator.detail(line.trim());
        }
    }

    /// `who` asks for access; the appliance's answer.
    async fn request(
        &mut self,
        who: &str,
        target: &str,
        ops: &[&str],
        ticket: Option<&str>,
        reason: &str,
    ) -> anyhow::Result<Value> {
        let code = self.auth.code(who, &self.clock).await?;
        let mut args: Vec<String> = vec!["request".into(), "--target".into(), target.into()];
        for op in ops {
            args.extend(["--op".into(), (*op).into()]);
        }
        args.extend([
            "--duration".into(),
            self.window().into(),
            "--reason".into(),
            reason.into(),
        ]);
        if let Some(ticket) = ticket {
            args.extend(["--ticket".into(), ticket.into()]);
        }
        args.extend(self.tunnel_args(who)?);
        args.extend(["--totp".into(), code, "--json".into()]);
        self.otgate.json(args)
    }

    /// An OT supervisor approves at the appliance; the appliance's answer.
    async fn approve(&mut self, who: &str, request: &str) -> anyhow::Result<Value> {
        let code = self.auth.code(who, &self.clock).await?;
        self.otgate
            .json(["approve", request, "--as", who, "--totp", &code, "--json"])
    }

    /// `otgate connect` for `who` on `grant`; the child and the local address it listens on.
    async fn connect(
        &self,
        who: &str,
        grant: &str,
        asset: &str,
    ) -> anyhow::Result<(Child, SocketAddr)> {
        let mut args: Vec<String> = vec![
            "connect".into(),
            "--grant".into(),
            grant.into(),
            "--asset".into(),
            asset.into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(self.tunnel_args(who)?);
        let log = self.work.join(format!("connect-{who}-{grant}.log"));
        let mut child = self.otgate.spawn(args, &log)?;
        let stdout = child.stdout.take().context("connect's stdout")?;
        let mut lines = BufReader::new(tokio::process::ChildStdout::from_std(stdout)?).lines();
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                // "listening on ADDR: each connection opens a session ..."
                let addr = line
                    .strip_prefix("listening on ")
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|w| w.trim_end_matches(':').parse::<SocketAddr>().ok());
                if let Some(addr) = addr {
                    return Some((addr, lines));
                }
            }
            None
        })
        .await;
        match addr {
            Ok(Some((addr, mut lines))) => {
                // Keep draining connect's output so it never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                Ok((child, addr))
            }
            _ => {
                let _ = child.kill();
                bail!("otgate connect did not say where it listens")
            }
        }
    }

    async fn maintenance_window(&mut self) -> anyhow::Result<()> {
        self.narrator.act("Act 1: a maintenance window on line 3");
        let answer = self
            .request(
                "alice",
                "line3-plc",
                &["read", "write:holding-registers:100-199"],
                Some("CHG-1234"),
                "replace the capper's speed setpoints",
            )
            .await?;
        let request = field(&answer, "request_id");
        self.narrator.say(
            "alice",
            &format!("requests read + write of holding registers 100-199 on line3-plc for {}, ticket CHG-1234, with her key and a TOTP code", self.window()),
        );
        self.say_decision(&request, &answer);
        self.narrator.pause().await;

        let approved = self.approve("sam", &request).await?;
        let grant = field(&approved, "grant_id");
        self.narrator.say(
            "sam",
            &format!("approves {request} at the appliance (OT store, TOTP)"),
        );
        self.narrator.say(
            "appliance",
            &format!(
                "grant {grant} active on line3-plc until the window ends ({})",
                self.plant_time()
            ),
        );

        let (mut connect, local) = self.connect("alice", &grant, "line3-plc").await?;
        self.narrator.say(
            "alice",
            &format!("otgate connect --grant {grant} opens {local} for her Modbus tool"),
        );
        let mut tool = tokio_modbus::client::tcp::connect_slave(local, Slave(1)).await?;
        let values = tool.read_holding_registers(100, 5).await?;
        self.narrator.say(
            "alice",
            &format!("reads holding registers 100-104: {}", show_result(&values)),
        );
        let wrote = tool.write_single_register(150, 4200).await?;
        self.narrator.say(
            "alice",
            &format!(
                "writes 4200 to holding register 150: {}; the PLC now holds {}",
                show_result(&wrote),
                self.plant
                    .line3
                    .handle
                    .holding_register(150)
                    .map_or("?".into(), |v| v.to_string())
            ),
        );
        let outside = tool.write_single_register(250, 1).await?;
        self.narrator.refused(
            "alice",
            &format!(
                "writes 1 to holding register 250 (outside 100-199): {}; the PLC still holds {}",
                show_result(&outside),
                self.plant
                    .line3
                    .handle
                    .holding_register(250)
                    .map_or("?".into(), |v| v.to_string())
            ),
        );
        self.narrator.say(
            "alice",
            "keeps reading every second until the window closes...",
        );
        let closed = self
            .read_until_closed(&mut tool, Duration::from_secs(120))
            .await;
        match closed {
            Some(after) => self.narrator.say(
                "appliance",
                &format!("window ended at {}: session closed, alice's tool disconnected ({after} reads after approval)", self.plant_time()),
            ),
            None => bail!("the session was still open two minutes after the window"),
        }
        let _ = connect.kill();
        let _ = connect.wait();
        Ok(())
    }

    /// Read once a second until the broker closes the session; how many reads succeeded.
    async fn read_until_closed(&self, tool: &mut ModbusContext, within: Duration) -> Option<u32> {
        let deadline = tokio::time::Instant::now() + within;
        let mut reads = 0;
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(3), tool.read_holding_registers(100, 1))
                .await
            {
                Ok(Ok(Ok(_))) => reads += 1,
                Ok(Ok(Err(_))) => {}
                Ok(Err(_)) | Err(_) => return Some(reads),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        None
    }

    async fn vendor_support(&mut self) -> anyhow::Result<()> {
        self.narrator
            .act("Act 2: vendor support, read-only, two approvers");
        let answer = self
            .request(
                "vendor-acme",
                "line1-plc",
                &["read"],
                None,
                "diagnose the filler's flow alarms",
            )
            .await?;
        let request = field(&answer, "request_id");
        self.narrator.say(
            "vendor-acme",
            &format!(
                "requests read-only access to line1-plc for {}",
                self.window()
            ),
        );
        self.say_decision(&request, &answer);

        let first = self.approve("sam", &request).await?;
        self.narrator.say("sam", &format!("approves {request}"));
        self.narrator.say(
            "appliance",
            &format!(
                "1 approval recorded; still needed: {}",
                field(&first, "missing")
            ),
        );
        let pending_grant = first
            .get("grant_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let tried = pending_grant.clone().unwrap_or_else(|| request.clone());
        let attempt = self.try_session("vendor-acme", &tried, "line1-plc").await;
        self.narrator.refused(
            "vendor-acme",
            &format!("tries to connect anyway: {attempt}"),
        );

        let second = self.approve("sue", &request).await?;
        let grant = field(&second, "grant_id");
        self.narrator.say(
            "sue",
            &format!("approves {request}: the second distinct supervisor"),
        );
        self.narrator.say(
            "appliance",
            &format!("grant {grant} active: read-only on line1-plc"),
        );
        let (mut connect, local) = self.connect("vendor-acme", &grant, "line1-plc").await?;
        let mut tool = tokio_modbus::client::tcp::connect_slave(local, Slave(1)).await?;
        let values = tool.read_input_registers(0, 4).await?;
        self.narrator.say(
            "vendor-acme",
            &format!("reads input registers 0-3: {}", show_result(&values)),
        );
        let wrote = tool.write_single_coil(0, true).await?;
        self.narrator.refused(
            "vendor-acme",
            &format!("tries to switch coil 0 on: {}", show_result(&wrote)),
        );
        let code = self.auth.code("sue", &self.clock).await?;
        self.otgate.ok([
            "revoke",
            &grant,
            "--as",
            "sue",
            "--totp",
            &code,
            "--reason",
            "support call finished",
        ])?;
        self.narrator
            .say("sue", &format!("revokes {grant}: support call finished"));
        match self
            .read_until_closed(&mut tool, Duration::from_secs(10))
            .await
        {
            Some(_) => self.narrator.say(
                "appliance",
                "vendor session closed within a second of the revocation",
            ),
            None => bail!("the vendor's session stayed open after the revocation"),
        }
        let _ = connect.kill();
        let _ = connect.wait();
        Ok(())
    }

    /// Try to open a session and read; what the vendor's tool saw.
    async fn try_session(&self, who: &str, grant: &str, asset: &str) -> String {
        let log = self.work.join(format!("connect-{who}-{grant}.log"));
        let Ok((mut child, local)) = self.connect(who, grant, asset).await else {
            return match std::fs::read_to_string(&log)
                .ok()
                .as_deref()
                .and_then(refusal_reason)
            {
                Some(reason) => format!("otgate connect refused to start: {reason}"),
                None => "otgate connect refused to start".into(),
            };
        };
        let outcome = match tokio_modbus::client::tcp::connect_slave(local, Slave(1)).await {
            Err(e) => format!("no connection ({e})"),
            Ok(mut tool) => {
                match tokio::time::timeout(Duration::from_secs(5), tool.read_input_registers(0, 1))
                    .await
                {
                    Ok(Ok(Ok(_))) => "it worked (it should not have)".into(),
                    Ok(Ok(Err(code))) => format!("exception {code:?}"),
                    Ok(Err(e)) => format!("refused, connection closed ({e})"),
                    Err(_) => "no answer".into(),
                }
            }
        };
        let _ = child.kill();
        let _ = child.wait();
        // `otgate connect` names the appliance's reason on its stderr (kept in its log).
        match std::fs::read_to_string(&log)
            .ok()
            .as_deref()
            .and_then(refusal_reason)
        {
            Some(reason) => format!("refused by the appliance: {reason}"),
            None => outcome,
        }
    }

    async fn rogue_write(&mut self) -> anyhow::Result<()> {
        self.narrator
            .act("Act 3: a write that bypassed the appliance");
        let rogue = tokio::net::TcpSocket::new_v4()?;
        rogue.bind(SocketAddr::from(([127, 0, 3, 66], 0)))?;
        let stream = rogue.connect(self.plant.line3.address).await?;
        let mut tool = tokio_modbus::client::tcp::attach_slave(stream, Slave(1));
        let wrote = tool.write_single_register(120, 9999).await?;
        drop(tool);
        self.narrator.refused(
            "rogue",
            &format!(
                "a laptop at 127.0.3.66 plugged into line 3's switch writes 9999 to holding register 120 directly: {}",
                show_result(&wrote)
            ),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.plant.finish_mirror()?;
        let out = self.otgate.output([
            "inspect".into(),
            "--pcap".into(),
            self.plant.mirror_pcap.clone().into_os_string(),
            "--policy".into(),
            self.work.join("hq").join("plant.toml").into_os_string(),
            "--json".into(),
        ])?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let alerts: Vec<Value> = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| field(v, "event") == "alert")
            .collect();
        self.narrator.say(
            "monitor",
            "otgate inspect --pcap mirror-line3.pcap (the mirror port's capture)",
        );
        let unauthorized: Vec<&Value> = alerts
            .iter()
            .filter(|a| a.to_string().contains("unauthorized_write"))
            .collect();
        if unauthorized.is_empty() {
            bail!(
                "the monitor raised no unauthorized_write alert: {}",
                stdout.trim()
            );
        }
        for alert in unauthorized {
            self.narrator.refused(
                "monitor",
                &format!("ALERT unauthorized_write: {}", alert_text(alert)),
            );
        }
        self.narrator
            .detail("alice's write through the appliance was inside her grant: no alert for it");
        Ok(())
    }

    fn summary(&self, kept: bool) -> anyhow::Result<DemoSummary> {
        self.narrator.act("Summary (from the journal)");
        let mut summary = DemoSummary::default();
        let verify = self.otgate.output(["audit", "verify"])?;
        summary.verify = String::from_utf8_lossy(&verify.stdout).trim().to_owned();
        let records = self.otgate.ok(["audit", "show", "--json"])?;
        for line in records.lines() {
            let Ok(record) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let text = record.to_string();
            if text.contains("\"operation_forwarded\"") {
                summary.forwarded += 1;
            } else if text.contains("\"operation_refused\"") {
                summary.refused += 1;
            } else if text.contains("unauthorized_write") {
                summary.alerts.push("unauthorized_write".into());
            }
        }
        let grants = self.otgate.json(["grants", "--json"])?;
        if let Some(list) = grants
            .as_array()
            .or_else(|| grants.get("grants").and_then(Value::as_array))
        {
            for g in list {
                summary.grants.push(format!(
                    "{} {} on {}: {}",
                    field(g, "grant_id"),
                    field(g, "requester"),
                    field(g, "asset"),
                    field(g, "state")
                ));
            }
        }
        let n = &self.narrator;
        for g in &summary.grants {
            n.say("appliance", g);
        }
        n.say(
            "appliance",
            &format!(
                "OT operations forwarded: {}, refused: {}",
                summary.forwarded, summary.refused
            ),
        );
        n.say("monitor", &format!("alerts: {}", summary.alerts.len()));
        let mut verdict = summary.verify.lines();
        n.say(
            "appliance",
            &format!("audit verify: {}", verdict.next().unwrap_or_default()),
        );
        for line in verdict {
            n.detail(line);
        }
        println!();
        if kept {
            let d = self.data_dir.root().display();
            println!("Everything is kept in {}. Try:", self.work.display());
            println!("  otgate --data-dir {d} audit show --kind operation_refused");
            println!("  otgate --data-dir {d} grants --ended");
            println!("  otgate --data-dir {d} sessions");
            println!("  otgate --data-dir {d} replay <SESSION>");
            println!(
                "  otgate inspect --pcap {}",
                self.plant.mirror_pcap.display()
            );
        } else {
            println!("Run `otgate demo --keep DIR` to keep the appliance's data and explore it with the other commands.");
        }
        Ok(summary)
    }
}

fn replace_public_key(policy: &str, who: &str, public: &str) -> anyhow::Result<String> {
    let value: toml::Value = policy.parse().context("the demo policy")?;
    let old = value
        .get("identities")
        .and_then(|i| i.get("it"))
        .and_then(toml::Value::as_array)
        .and_then(|people| {
            people
                .iter()
                .find(|p| p.get("id").and_then(toml::Value::as_str) == Some(who))
        })
        .and_then(|p| p.get("public_key"))
        .and_then(toml::Value::as_str)
        .with_context(|| format!("the sample plant has no public key for {who}"))?;
    Ok(policy.replace(old, public))
}

fn short_hash(hash: &str) -> String {
    hash.chars().take(16).collect()
}

fn show_result<T: std::fmt::Debug>(result: &Result<T, tokio_modbus::ExceptionCode>) -> String {
    match result {
        Ok(value) => format!("ok {value:?}"),
        Err(code) => format!("exception {:02X} {code:?}", u8::from(*code)),
    }
}

fn alert_text(alert: &Value) -> String {
    match alert.get("detail") {
        Some(Value::String(s)) => s.clone(),
        _ => alert.to_string(),
    }
}

/// Run `otgate demo` from the command line.
pub fn main(options: DemoOptions) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(options))?;
    Ok(ExitCode::SUCCESS)
}

/// The appliance's reason in `otgate connect`'s log: its last `otgate: REASON` line, or the
/// REASON of "... refused the session for PEER: REASON".
fn refusal_reason(log: &str) -> Option<String> {
    log.lines().rev().find_map(|line| {
        if let Some(reason) = line.strip_prefix("otgate: ") {
            return Some(reason.trim().to_owned());
        }
        let (_, rest) = line.split_once("refused the session for ")?;
        let (_, reason) = rest.split_once(": ")?;
        Some(reason.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturday_morning_is_a_saturday_at_seven_in_berlin() {
        let thursday = DateTime::parse_from_rfc3339("2026-11-26T18:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = next_saturday_morning(thursday).with_timezone(&chrono_tz::Europe::Berlin);
        assert_eq!(at.to_rfc3339(), "2026-11-28T07:00:00+01:00");
        let summer = DateTime::parse_from_rfc3339("2026-07-04T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = next_saturday_morning(summer).with_timezone(&chrono_tz::Europe::Berlin);
        assert_eq!(at.to_rfc3339(), "2026-07-04T07:00:00+02:00");
    }

    #[test]
    fn the_demo_policy_has_the_simulated_addresses_and_keys() {
        let policy = replace_public_key(PLANT_POLICY, "alice", "NEWKEY").unwrap();
        assert!(policy.contains("\"NEWKEY\""));
        assert!(replace_public_key(PLANT_POLICY, "nobody", "X").is_err());
    }

    #[test]
    fn the_last_refusal_in_a_connect_log_is_the_reason() {
        let log = "listening on 127.0.0.1:1: ...\n\
                   otgate connect: the appliance refused the session for 127.0.0.1:5: first\n\
                   otgate: grant G-0002 is pending approval\n";
        assert_eq!(
            refusal_reason(log).as_deref(),
            Some("grant G-0002 is pending approval")
        );
        let log = "otgate connect: the appliance refused the session for 127.0.0.1:6: not active\n";
        assert_eq!(refusal_reason(log).as_deref(), Some("not active"));
        assert_eq!(refusal_reason("listening on 127.0.0.1:1\n"), None);
    }
}
