//! End-to-end, in real network namespaces: with no active grant, no byte from the IT side
//! reaches an OT asset.
//!
//! ```text
//!  IT zone (this test's namespace)      appliance namespace             OT namespace
//!  10.201.<n>.1 ── veth ── 10.201.<n>.2 (otgate serve)  10.202.<n>.1 ── veth ── 10.202.<n>.2:502
//!                                       ip_forward = 0                  counting TCP listener
//! ```
//!
//! The OT namespace runs a TCP listener on the PLC's address that counts every connection and
//! byte. The appliance namespace can reach it (checked first, so a zero below means something);
//! the IT side cannot route through the appliance, and every tunnel attempt without an active
//! grant (unknown grant, pending request, someone else's grant, ended grant) is closed by the
//! appliance with the OT listener still at zero. As a control, an allowed read on an active
//! grant does reach the listener through the broker. The namespaces and links are created here and
//! deleted when the test ends, whatever happens. Without root the test says so loudly and skips.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use otgate_tests::appliance::{describe, saturday_morning, TestAppliance, PLANT_POLICY};

/// Namespaces, links and the listener of one test run; removed on drop.
struct Zones {
    appliance_ns: String,
    ot_ns: String,
    it_link: String,
    it_ip: String,
    appliance_it_ip: String,
    plc_ip: String,
    listener: Option<Child>,
    counts: PathBuf,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, args: &[&str]) {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    ip(&all);
}

impl Zones {
    fn create(scratch: &Path) -> Self {
        // A per-process suffix keeps parallel runs apart; names stay within 15 characters.
        let n = std::process::id() % 200 + 20;
        let zones = Zones {
            appliance_ns: format!("otg-ap-{n}"),
            ot_ns: format!("otg-ot-{n}"),
            it_link: format!("otgit{n}"),
            it_ip: format!("10.201.{n}.1"),
            appliance_it_ip: format!("10.201.{n}.2"),
            plc_ip: format!("10.202.{n}.2"),
            listener: None,
            counts: scratch.join("ot-counts"),
        };
        zones.teardown_links();
        let (ap, ot) = (zones.appliance_ns.as_str(), zones.ot_ns.as_str());
        ip(&["netns", "add", ap]);
        ip(&["netns", "add", ot]);
        let ap_it = format!("otgai{n}");
        let ap_ot = format!("otgao{n}");
        let ot_if = format!("otgot{n}");
        // IT side: this namespace <-> appliance.
        ip(&[
            "link",
            "add",
            &zones.it_link,
            "type",
            "veth",
            "peer",
            "name",
            &ap_it,
            "netns",
            ap,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", zones.it_ip),
            "dev",
            &zones.it_link,
        ]);
        ip(&["link", "set", &zones.it_link, "up"]);
        // The IT side is given a route to OT through the appliance: the appliance must not
        // forward it.
        ip(&[
            "route",
            "add",
            &format!("10.202.{n}.0/24"),
            "via",
            &zones.appliance_it_ip,
        ]);
        in_ns(
            ap,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", zones.appliance_it_ip),
                "dev",
                &ap_it,
            ],
        );
        in_ns(ap, &["ip", "link", "set", &ap_it, "up"]);
        in_ns(ap, &["ip", "link", "set", "lo", "up"]);
        in_ns(ap, &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
        // OT side: appliance <-> OT.
        ip(&[
            "-n", ap, "link", "add", &ap_ot, "type", "veth", "peer", "name", &ot_if, "netns", ot,
        ]);
        in_ns(
            ap,
            &[
                "ip",
                "addr",
                "add",
                &format!("10.202.{n}.1/24"),
                "dev",
                &ap_ot,
            ],
        );
        in_ns(ap, &["ip", "link", "set", &ap_ot, "up"]);
        in_ns(
            ot,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", zones.plc_ip),
                "dev",
                &ot_if,
            ],
        );
        in_ns(ot, &["ip", "link", "set", &ot_if, "up"]);
        in_ns(ot, &["ip", "link", "set", "lo", "up"]);
        in_ns(
            ot,
            &[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &format!("10.202.{n}.1"),
            ],
        );
        zones
    }

    /// Start the counting listener on the PLC's address in the OT namespace.
    fn start_listener(&mut self) {
        let script = format!(
            r#"
import socket, threading
counts = {{"connections": 0, "bytes": 0}}
lock = threading.Lock()
def save():
    with open({path:?} + ".tmp", "w") as f:
        f.write("%d %d" % (counts["connections"], counts["bytes"]))
    import os; os.replace({path:?} + ".tmp", {path:?})
def serve(conn):
    while True:
        data = conn.recv(4096)
        if not data:
            break
        with lock:
            counts["bytes"] += len(data); save()
    conn.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(({ip:?}, 502)); s.listen(16)
with lock: save()
while True:
    c, _ = s.accept()
    with lock:
        counts["connections"] += 1; save()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#,
            path = self.counts.display().to_string(),
            ip = self.plc_ip,
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ot_ns, "python3", "-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the OT listener");
        self.listener = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.counts.exists() {
            assert!(Instant::now() < deadline, "the OT listener did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// (connections, bytes) the OT listener has seen.
    fn counts(&self) -> (u64, u64) {
        let mut text = String::new();
        std::fs::File::open(&self.counts)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        let mut parts = text.split_whitespace().map(|p| p.parse::<u64>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    }

    /// Connect from a namespace (`None`: this one) to the PLC; whether it connected.
    fn tcp_reaches_plc(&self, ns: Option<&str>) -> bool {
        let script = format!(
            "import socket,sys\ns=socket.socket(); s.settimeout(3)\ntry:\n s.connect(({:?},502)); s.sendall(b'\\x00\\x01\\x00\\x00\\x00\\x06\\x01\\x03\\x00\\x64\\x00\\x01'); sys.exit(0)\nexcept Exception: sys.exit(1)",
            self.plc_ip
        );
        let mut command = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "python3"]);
                c
            }
            None => Command::new("python3"),
        };
        command
            .args(["-c", &script])
            .status()
            .expect("python3")
            .success()
    }

    fn teardown_links(&self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.it_link])
            .stderr(Stdio::null())
            .status();
        for ns in [&self.appliance_ns, &self.ot_ns] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Zones {
    fn drop(&mut self) {
        if let Some(mut child) = self.listener.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.teardown_links();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn without_an_active_grant_no_byte_reaches_the_plc() {
    if !is_root() {
        eprintln!(
            "\n!!! SKIPPED zero_standing_privilege: needs root to create network namespaces !!!\n"
        );
        return;
    }
    let mut appliance = TestAppliance::init("");
    let mut zones = Zones::create(appliance.scratch());
    // The sample plant, with line 3's PLC at the OT namespace's address.
    let ot_net = format!("{}.0/24", zones.plc_ip.rsplit_once('.').unwrap().0);
    let policy = PLANT_POLICY
        .replace("10.10.3.11:502", &format!("{}:502", zones.plc_ip))
        .replace("10.10.3.0/24", &ot_net)
        .replace(
            "10.10.3.21:5900",
            &format!("{}.21:5900", zones.plc_ip.rsplit_once('.').unwrap().0),
        );
    std::fs::write(&appliance.policy_file, policy).unwrap();
    zones.start_listener();

    // The OT listener is reachable from the appliance's namespace: the setup works.
    assert!(zones.tcp_reaches_plc(Some(&zones.appliance_ns)));
    assert!(wait_until(Duration::from_secs(10), || zones.counts().0 == 1));
    let baseline = zones.counts();

    // The IT side has a route through the appliance, but the appliance forwards nothing.
    assert!(
        !zones.tcp_reaches_plc(None),
        "IT reached the PLC around the appliance"
    );

    let listen = format!("{}:0", zones.appliance_it_ip);
    appliance.start_in(
        Some(&zones.appliance_ns.clone()),
        &listen,
        Some(saturday_morning()),
    );
    let line3 = "line3-plc";

    // A tunnel for a grant that does not exist is closed; nothing reaches the PLC.
    let mut s = appliance.open_session("alice", "G-0001", line3).unwrap();
    let _ = s.send(&[0, 1, 0, 0, 0, 6, 1, 3, 0, 100, 0, 1]);
    assert!(s.closed_within(Duration::from_secs(10)));

    // A pending request is no grant either.
    let totp = appliance.totp("alice");
    let out = appliance.request(
        "alice",
        &[
            "--target",
            line3,
            "--op",
            "read",
            "--duration",
            "12s",
            "--ticket",
            "CHG-1",
            "--reason",
            "zsp",
            "--totp",
            &totp,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let mut s = appliance.open_session("alice", "R-0001", line3).unwrap();
    let _ = s.send(&[0, 1, 0, 0, 0, 6, 1, 3, 0, 100, 0, 1]);
    assert!(s.closed_within(Duration::from_secs(10)));

    // Approved: the grant is someone else's for bob.
    let sam = appliance.totp("sam");
    let out = appliance.otgate(&["approve", "R-0001", "--as", "sam", "--totp", &sam]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let mut s = appliance.open_session("bob", "G-0001", line3).unwrap();
    let _ = s.send(&[0, 1, 0, 0, 0, 6, 1, 3, 0, 100, 0, 1]);
    assert!(s.closed_within(Duration::from_secs(10)));
    assert_eq!(
        zones.counts(),
        baseline,
        "(connections, bytes) at the PLC changed without a grant"
    );

    // The control: with alice's active grant the broker does reach the PLC, so the zeros
    // above are the appliance refusing, not a broken path.
    let mut live = appliance.open_session("alice", "G-0001", line3).unwrap();
    live.send(&[0, 1, 0, 0, 0, 6, 1, 3, 0, 100, 0, 1]).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || zones.counts().0 > baseline.0),
        "an allowed read never reached the PLC"
    );
    // The grant's end closes the session; afterwards nothing more gets through.
    assert!(
        live.closed_within(Duration::from_secs(60)),
        "the session outlived its grant"
    );
    appliance.wait_for_state("G-0001", "ended", Duration::from_secs(60));
    let after_grant = zones.counts();
    let mut s = appliance.open_session("alice", "G-0001", line3).unwrap();
    let _ = s.send(&[0, 1, 0, 0, 0, 6, 1, 3, 0, 100, 0, 1]);
    assert!(s.closed_within(Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        zones.counts(),
        after_grant,
        "bytes reached the PLC after the grant ended"
    );

    let refused = appliance
        .journal()
        .into_iter()
        .filter(|(k, e)| k == "refused" && e["action"] == "open_session")
        .count();
    assert_eq!(refused, 4, "each refused session is on record");
}
