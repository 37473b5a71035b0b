#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! The Modbus broker against a direct connection to the same PLC simulator, in one run.
//!
//! The broker runs in a child process (this binary re-executed), so its resident memory is the
//! appliance's alone; the simulator and the clients run in the parent. Every client is the same
//! tokio-modbus client (or the same raw pipelining client) with the same request mix: FC 3 reads
//! of 10 holding registers, every fifth request an FC 6 write inside the grant. Each phase warms
//! up first.
//!
//! - `sync`: the cost of durability alone: one 200-byte `write` + `fdatasync` on the disk the
//!   journal uses, and on tmpfs.
//! - `latency`: one client, sequential; median and p99, direct and through the broker over TLS
//!   (journal on disk, journal on tmpfs); the difference is the broker's added latency.
//! - `throughput`: 1 client sequential, N clients at once (sequential each), and 1 client
//!   pipelining a window of requests; tx/s through the broker as a ratio of direct.
//! - `memory`: 1,000 concurrent TLS sessions, each having forwarded one request (so each holds
//!   its upstream connection); the broker process's resident memory before and after.
//!
//! `cargo bench -p otgate --bench broker` runs it in full (about a minute on a quiet machine);
//! `OTGATE_BENCH_DISK=DIR` puts the on-disk journal elsewhere (default: the temp dir). Under
//! `cargo test` it runs a smoke pass with tiny counts. It asserts nothing about time.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use otgate::broker::modbus::{run_session, SessionContext};
use otgate::journal::Journal;
use otgate::sim::plc::{self, PlcConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_modbus::client::{tcp, Reader, Writer};
use tokio_modbus::Slave;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

const CHILD_ENV: &str = "OTGATE_BROKER_BENCH_CHILD";

#[derive(Clone, Copy)]
struct Sizes {
    latency_tx: usize,
    clients: usize,
    tx_per_client: usize,
    pipelined_tx: usize,
    window: usize,
    sessions: usize,
    syncs: usize,
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child_main(&spec);
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full {
        Sizes {
            latency_tx: 4000,
            clients: 16,
            tx_per_client: 1000,
            pipelined_tx: 16000,
            window: 16,
            sessions: 1000,
            syncs: 500,
        }
    } else {
        Sizes {
            latency_tx: 40,
            clients: 4,
            tx_per_client: 20,
            pipelined_tx: 200,
            window: 8,
            sessions: 20,
            syncs: 10,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(sizes));
}

// ---------------------------------------------------------------------------------------------
// The broker process.

/// `plc=ADDR;disk=DIR;shm=DIR`: start one TLS broker listener per journal root, print
/// `broker NAME ADDR` lines and `cert HEX`, then serve until stdin closes.
fn child_main(spec: &str) {
    let mut plc_addr = None;
    let mut roots = Vec::new();
    for part in spec.split(';') {
        let (key, value) = part.split_once('=').unwrap();
        match key {
            "plc" => plc_addr = Some(value.parse::<SocketAddr>().unwrap()),
            name => roots.push((name.to_owned(), PathBuf::from(value))),
        }
    }
    let plc_addr = plc_addr.unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert: CertificateDer<'static> = certified.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let mut dirs = Vec::new();
        let mut stdout = std::io::stdout().lock();
        for (name, root) in roots {
            let dir = tempfile::tempdir_in(&root).unwrap();
            let addr = serve_broker(plc_addr, dir.path(), acceptor.clone()).await;
            writeln!(stdout, "broker {name} {addr}").unwrap();
            dirs.push(dir);
        }
        writeln!(stdout, "cert {}", hex::encode(cert.as_ref())).unwrap();
        stdout.flush().unwrap();
        drop(stdout);
        // Serve until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        })
        .await
        .unwrap();
        drop(dirs);
    });
}

async fn serve_broker(plc: SocketAddr, data_root: &Path, acceptor: TlsAcceptor) -> SocketAddr {
    let journal = Journal::open_for_tests(data_root).unwrap();
    let recordings = data_root.join("sessions");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            n += 1;
            let ctx = SessionContext {
                session_id: format!("bench-{n}"),
                grant_id: "g-bench".into(),
                identity: "alice".into(),
                asset_id: "line1-plc".into(),
                upstream: plc,
                unit_ids: vec![1],
                scope: bench_scope::maintenance(),
                journal: journal.clone(),
                recordings: recordings.clone(),
                cancel: CancellationToken::new(),
                deadline: tokio::time::Instant::now() + Duration::from_secs(3600),
                idle_timeout: Duration::from_secs(3600),
                upstream_timeout: Duration::from_secs(5),
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(stream).await {
                    run_session(stream, ctx).await;
                }
            });
        }
    });
    addr
}

/// The broker process as the parent sees it.
struct BrokerProcess {
    child: Child,
    brokers: Vec<(String, SocketAddr)>,
    connector: TlsConnector,
}

impl BrokerProcess {
    fn start(plc: SocketAddr, roots: &[(&str, &Path)]) -> Self {
        let mut spec = format!("plc={plc}");
        for (name, root) in roots {
            spec.push_str(&format!(";{name}={}", root.display()));
        }
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut brokers = Vec::new();
        let cert = loop {
            let line = lines.next().unwrap().unwrap();
            let words: Vec<&str> = line.split(' ').collect();
            match words[..] {
                ["broker", name, addr] => brokers.push((name.to_owned(), addr.parse().unwrap())),
                ["cert", hex] => break CertificateDer::from(hex::decode(hex).unwrap()),
                _ => panic!("unexpected line from the broker process: {line}"),
            }
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            child,
            brokers,
            connector: TlsConnector::from(Arc::new(client)),
        }
    }

    fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.brokers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| *addr)
    }

    fn resident_kib(&self) -> u64 {
        resident_kib(&format!("/proc/{}/status", self.child.id()))
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Clients.

#[derive(Clone, Copy)]
enum Target<'a> {
    Direct(SocketAddr),
    Broker(&'a BrokerProcess, SocketAddr),
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug + 'static> Stream for T {}

async fn connect(target: Target<'_>) -> Box<dyn Stream> {
    match target {
        Target::Direct(addr) => {
            let stream = TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            Box::new(stream)
        }
        Target::Broker(process, addr) => {
            let stream = TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            Box::new(process.connector.connect(name, stream).await.unwrap())
        }
    }
}

async fn modbus_client(target: Target<'_>) -> tokio_modbus::client::Context {
    tcp::attach_slave(connect(target).await, Slave(1))
}

/// The request mix: every fifth an FC 6 write inside the grant, the others FC 3 reads of 10.
async fn one_transaction(ctx: &mut tokio_modbus::client::Context, i: usize) {
    if i % 5 == 4 {
        ctx.write_single_register(100, i as u16)
            .await
            .unwrap()
            .unwrap();
    } else {
        ctx.read_holding_registers(0, 10).await.unwrap().unwrap();
    }
}

/// Sequential transactions on one client: sorted latencies and tx/s.
async fn sequential(target: Target<'_>, n: usize) -> (Vec<Duration>, f64) {
    let mut ctx = modbus_client(target).await;
    for i in 0..(n / 10).max(5) {
        one_transaction(&mut ctx, i).await;
    }
    let mut out = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let start = Instant::now();
        one_transaction(&mut ctx, i).await;
        out.push(start.elapsed());
    }
    let tps = n as f64 / started.elapsed().as_secs_f64();
    out.sort();
    (out, tps)
}

async fn concurrent(target: Target<'_>, clients: usize, per_client: usize) -> f64 {
    let mut contexts = Vec::new();
    for _ in 0..clients {
        let mut ctx = modbus_client(target).await;
        for i in 0..(per_client / 10).max(5) {
            one_transaction(&mut ctx, i).await;
        }
        contexts.push(ctx);
    }
    let start = Instant::now();
    let tasks: Vec<_> = contexts
        .into_iter()
        .map(|mut ctx| {
            tokio::spawn(async move {
                for i in 0..per_client {
                    one_transaction(&mut ctx, i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (clients * per_client) as f64 / start.elapsed().as_secs_f64()
}

fn request_frame(tid: u16, i: usize) -> Vec<u8> {
    let pdu: [u8; 5] = if i % 5 == 4 {
        let [hi, lo] = (i as u16).to_be_bytes();
        [0x06, 0x00, 100, hi, lo]
    } else {
        [0x03, 0x00, 0x00, 0x00, 10]
    };
    let mut out = tid.to_be_bytes().to_vec();
    out.extend_from_slice(&[0, 0, 0, 6, 1]);
    out.extend_from_slice(&pdu);
    out
}

/// One connection keeping `window` requests outstanding: tx/s.
async fn pipelined(target: Target<'_>, n: usize, window: usize) -> f64 {
    let stream = connect(target).await;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let total = n + n / 10;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(window);
    let sender = tokio::spawn(async move {
        for i in 0..total {
            if i >= window && rx.recv().await.is_none() {
                return None;
            }
            writer.write_all(&request_frame(i as u16, i)).await.unwrap();
        }
        // Keep the write side open until every answer is in.
        while rx.recv().await.is_some() {}
        Some(writer)
    });
    let mut started = Instant::now();
    let mut header = [0u8; 7];
    let mut body = [0u8; 256];
    for i in 0..total {
        if i == n / 10 {
            started = Instant::now();
        }
        reader.read_exact(&mut header).await.unwrap();
        let len = usize::from(u16::from_be_bytes([header[4], header[5]])) - 1;
        reader.read_exact(&mut body[..len]).await.unwrap();
        assert!(body[0] & 0x80 == 0, "exception {:?}", &body[..len]);
        let _ = tx.send(()).await;
    }
    let tps = n as f64 / started.elapsed().as_secs_f64();
    drop(tx);
    drop(sender.await.unwrap());
    tps
}

// ---------------------------------------------------------------------------------------------
// Measurements.

/// One `write` of 200 bytes + `fdatasync`, `n` times, in `root`: sorted durations.
fn sync_cost(root: &Path, n: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir_in(root).unwrap();
    let mut file = std::fs::File::create(dir.path().join("sync")).unwrap();
    let record = [0x5Au8; 200];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n + n / 10 {
        let start = Instant::now();
        file.write_all(&record).unwrap();
        file.sync_data().unwrap();
        out.push(start.elapsed());
    }
    out.drain(..n / 10);
    out.sort();
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn resident_kib(status: &str) -> u64 {
    let status = std::fs::read_to_string(status).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn run(sizes: Sizes) {
    let plc = plc::spawn("127.0.0.1:0".parse().unwrap(), PlcConfig::default())
        .await
        .unwrap();
    let disk_root = std::env::var_os("OTGATE_BENCH_DISK")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let shm = Path::new("/dev/shm");
    let mut roots = vec![("disk", disk_root.as_path())];
    if shm.is_dir() {
        roots.push(("tmpfs", shm));
    }
    let process = BrokerProcess::start(plc.local_addr(), &roots);

    println!(
        "broker bench: load average {} at start; journal on disk in {}",
        load_average(),
        disk_root.display()
    );
    println!(
        "request mix: FC 3 read of 10 holding registers, every 5th an FC 6 write inside the grant"
    );
    for (name, root) in &roots {
        let syncs = sync_cost(root, sizes.syncs);
        println!(
            "sync     200-byte write + fdatasync on {name:<5}  median {:>8.1} us  p99 {:>8.1} us",
            us(percentile(&syncs, 0.5)),
            us(percentile(&syncs, 0.99)),
        );
    }

    let direct = Target::Direct(plc.local_addr());
    let mut targets = Vec::new();
    for (name, _) in &roots {
        if let Some(addr) = process.addr(name) {
            targets.push((
                format!("broker tls, journal on {name}"),
                Target::Broker(&process, addr),
            ));
        }
    }

    let (direct_lat, direct_seq) = sequential(direct, sizes.latency_tx).await;
    println!(
        "latency  direct                          median {:>8.1} us  p99 {:>8.1} us",
        us(percentile(&direct_lat, 0.5)),
        us(percentile(&direct_lat, 0.99))
    );
    let mut seq = Vec::new();
    for (name, target) in &targets {
        let (lat, tps) = sequential(*target, sizes.latency_tx).await;
        println!(
            "latency  {name:<31} median {:>8.1} us  p99 {:>8.1} us  added median {:>8.1} us  added p99 {:>8.1} us",
            us(percentile(&lat, 0.5)),
            us(percentile(&lat, 0.99)),
            us(percentile(&lat, 0.5)) - us(percentile(&direct_lat, 0.5)),
            us(percentile(&lat, 0.99)) - us(percentile(&direct_lat, 0.99)),
        );
        seq.push((name, tps));
    }
    println!("throughput 1 client, sequential     direct {direct_seq:>9.0} tx/s");
    for (name, tps) in seq {
        println!(
            "throughput 1 client, sequential     {name:<31} {tps:>9.0} tx/s  ratio {:.2}",
            tps / direct_seq
        );
    }

    let direct_tps = concurrent(direct, sizes.clients, sizes.tx_per_client).await;
    println!(
        "throughput {} clients, sequential each  direct {direct_tps:>9.0} tx/s",
        sizes.clients
    );
    for (name, target) in &targets {
        let tps = concurrent(*target, sizes.clients, sizes.tx_per_client).await;
        println!(
            "throughput {} clients, sequential each  {name:<31} {tps:>9.0} tx/s  ratio {:.2}",
            sizes.clients,
            tps / direct_tps
        );
    }

    let direct_pipe = pipelined(direct, sizes.pipelined_tx, sizes.window).await;
    println!(
        "throughput 1 client, {} in flight     direct {direct_pipe:>9.0} tx/s",
        sizes.window
    );
    for (name, target) in &targets {
        let tps = pipelined(*target, sizes.pipelined_tx, sizes.window).await;
        println!(
            "throughput 1 client, {} in flight     {name:<31} {tps:>9.0} tx/s  ratio {:.2}",
            sizes.window,
            tps / direct_pipe
        );
    }

    if let Some((name, target)) = targets.first() {
        let before = process.resident_kib();
        let mut sessions = Vec::with_capacity(sizes.sessions);
        for _ in 0..sizes.sessions {
            let mut ctx = modbus_client(*target).await;
            ctx.read_holding_registers(0, 1).await.unwrap().unwrap();
            sessions.push(ctx);
        }
        let after = process.resident_kib();
        println!(
            "memory   {} concurrent TLS sessions ({name}), broker process resident {} KiB -> {} KiB, {:.1} KiB per session",
            sizes.sessions,
            before,
            after,
            after.saturating_sub(before) as f64 / sizes.sessions as f64
        );
        drop(sessions);
    }
    println!("broker bench: load average {} at end", load_average());
    drop(process);
}

mod bench_scope {
    use otgate_policy::{AssetId, GrantScope, OperationSpec, Protocol};

    /// Read the whole asset, write holding registers 100-199, unit 1 (the sample plant's
    /// line3-maintenance rule).
    pub fn maintenance() -> GrantScope {
        let modbus = ["read", "write:holding-registers:100-199"]
            .iter()
            .map(|text| match text.parse::<OperationSpec>().unwrap() {
                OperationSpec::Modbus(mut spec) => {
                    spec.units = vec![1];
                    spec
                }
                other => panic!("not a Modbus operation: {other:?}"),
            })
            .collect();
        GrantScope {
            asset: AssetId::new("line1-plc"),
            protocol: Protocol::Modbus,
            modbus,
            dnp3: Vec::new(),
            vnc: None,
            tcp: false,
        }
    }
}
