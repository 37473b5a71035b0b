#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]
//! The Modbus broker against a direct connection to the same PLC simulator, in one run.
//!
//! - Latency: one client, sequential FC 3 reads of 10 registers; median and p99, direct and
//!   through the broker over TLS; the difference is the broker's added latency.
//! - Throughput: 16 clients at once, sequential reads each, for a fixed number of transactions;
//!   transactions per second through the broker (TLS on) as a ratio of direct.
//! - Where the time goes: the same broker with its journal on tmpfs (`/dev/shm`), so the
//!   difference is the fsync that journal-before-forward pays per batch.
//! - Memory: 1,000 concurrent TLS sessions, each having forwarded one request (so each holds its
//!   upstream connection); the process's resident memory before and after.
//!
//! `cargo bench -p otgate --bench broker` runs it in full; under `cargo test` it runs a smoke
//! pass with tiny counts. It asserts nothing about time; it prints figures.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use otgate::broker::modbus::{run_session, SessionContext};
use otgate::journal::Journal;
use otgate::sim::plc::{self, PlcConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_modbus::client::{tcp, Reader};
use tokio_modbus::Slave;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

struct Sizes {
    latency_tx: usize,
    throughput_clients: usize,
    throughput_tx_per_client: usize,
    sessions: usize,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full {
        Sizes {
            latency_tx: 5000,
            throughput_clients: 16,
            throughput_tx_per_client: 1000,
            sessions: 1000,
        }
    } else {
        Sizes {
            latency_tx: 50,
            throughput_clients: 4,
            throughput_tx_per_client: 20,
            sessions: 20,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(sizes));
}

/// The broker side: a TLS listener that runs one broker session per connection.
struct Broker {
    addr: SocketAddr,
    connector: TlsConnector,
    _dir: tempfile::TempDir,
}

fn scope() -> otgate_policy::GrantScope {
    bench_scope::read_only()
}

async fn start_broker(plc: SocketAddr, journal_root: &Path, tls: bool) -> Broker {
    let dir = tempfile::tempdir_in(journal_root).unwrap();
    let journal = Journal::open_for_tests(dir.path()).unwrap();
    let recordings = dir.path().join("sessions");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let acceptor = TlsAcceptor::from(Arc::new(server));
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
                scope: scope(),
                journal: journal.clone(),
                recordings: recordings.clone(),
                cancel: CancellationToken::new(),
                deadline: tokio::time::Instant::now() + Duration::from_secs(3600),
                idle_timeout: Duration::from_secs(3600),
                upstream_timeout: Duration::from_secs(5),
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if tls {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        run_session(stream, ctx).await;
                    }
                } else {
                    run_session(stream, ctx).await;
                }
            });
        }
    });
    Broker {
        addr,
        connector: TlsConnector::from(Arc::new(client)),
        _dir: dir,
    }
}

/// A connected Modbus client: direct to the PLC, or through the broker (TLS or plain).
async fn client(target: &Target<'_>) -> tokio_modbus::client::Context {
    match target {
        Target::Direct(addr) => tcp::connect_slave(*addr, Slave(1)).await.unwrap(),
        Target::Broker(broker, tls) => {
            let stream = TcpStream::connect(broker.addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            if *tls {
                let name = ServerName::try_from("localhost").unwrap();
                let stream = broker.connector.connect(name, stream).await.unwrap();
                tcp::attach_slave(stream, Slave(1))
            } else {
                tcp::attach_slave(stream, Slave(1))
            }
        }
    }
}

enum Target<'a> {
    Direct(SocketAddr),
    Broker(&'a Broker, bool),
}

async fn latencies(target: &Target<'_>, n: usize) -> Vec<Duration> {
    let mut ctx = client(target).await;
    for _ in 0..(n / 10).max(5) {
        ctx.read_holding_registers(0, 10).await.unwrap().unwrap();
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        ctx.read_holding_registers(0, 10).await.unwrap().unwrap();
        out.push(start.elapsed());
    }
    out.sort();
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn throughput(target: &Target<'_>, clients: usize, per_client: usize) -> f64 {
    let mut contexts = Vec::new();
    for _ in 0..clients {
        let mut ctx = client(target).await;
        ctx.read_holding_registers(0, 10).await.unwrap().unwrap();
        contexts.push(ctx);
    }
    let start = Instant::now();
    let tasks: Vec<_> = contexts
        .into_iter()
        .map(|mut ctx| {
            tokio::spawn(async move {
                for _ in 0..per_client {
                    ctx.read_holding_registers(0, 10).await.unwrap().unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (clients * per_client) as f64 / start.elapsed().as_secs_f64()
}

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn run(sizes: Sizes) {
    let plc = plc::spawn("127.0.0.1:0".parse().unwrap(), PlcConfig::default())
        .await
        .unwrap();
    let disk_root = std::env::temp_dir();
    let shm = Path::new("/dev/shm");
    let tls_disk = start_broker(plc.local_addr(), &disk_root, true).await;
    let plain_disk = start_broker(plc.local_addr(), &disk_root, false).await;
    let tls_shm = if shm.is_dir() {
        Some(start_broker(plc.local_addr(), shm, true).await)
    } else {
        None
    };

    let direct_target = Target::Direct(plc.local_addr());
    let tls_target = Target::Broker(&tls_disk, true);
    let plain_target = Target::Broker(&plain_disk, false);

    println!(
        "broker bench: FC 3 read of 10 registers, loopback, simulator PLC, journal fsync per batch"
    );
    let direct = latencies(&direct_target, sizes.latency_tx).await;
    let tls = latencies(&tls_target, sizes.latency_tx).await;
    let plain = latencies(&plain_target, sizes.latency_tx).await;
    let shm_lat = match &tls_shm {
        Some(b) => Some(latencies(&Target::Broker(b, true), sizes.latency_tx).await),
        None => None,
    };
    println!(
        "latency  direct          median {:>8.1} us  p99 {:>8.1} us",
        us(percentile(&direct, 0.5)),
        us(percentile(&direct, 0.99))
    );
    for (name, lat) in [
        ("broker tls  ", Some(&tls)),
        ("broker plain", Some(&plain)),
        ("broker tls, journal on tmpfs", shm_lat.as_ref()),
    ] {
        let Some(lat) = lat else { continue };
        println!(
            "latency  {name}    median {:>8.1} us  p99 {:>8.1} us  added median {:>8.1} us  added p99 {:>8.1} us",
            us(percentile(lat, 0.5)),
            us(percentile(lat, 0.99)),
            us(percentile(lat, 0.5)) - us(percentile(&direct, 0.5)),
            us(percentile(lat, 0.99)) - us(percentile(&direct, 0.99)),
        );
    }

    let direct_tps = throughput(
        &direct_target,
        sizes.throughput_clients,
        sizes.throughput_tx_per_client,
    )
    .await;
    let tls_tps = throughput(
        &tls_target,
        sizes.throughput_clients,
        sizes.throughput_tx_per_client,
    )
    .await;
    println!(
        "throughput {} clients  direct {:>9.0} tx/s  broker tls {:>9.0} tx/s  ratio {:.2}",
        sizes.throughput_clients,
        direct_tps,
        tls_tps,
        tls_tps / direct_tps
    );
    if let Some(b) = &tls_shm {
        let shm_tps = throughput(
            &Target::Broker(b, true),
            sizes.throughput_clients,
            sizes.throughput_tx_per_client,
        )
        .await;
        println!(
            "throughput {} clients  broker tls, journal on tmpfs {:>9.0} tx/s  ratio {:.2}",
            sizes.throughput_clients,
            shm_tps,
            shm_tps / direct_tps
        );
    }

    let before = resident_kib();
    let mut sessions = Vec::with_capacity(sizes.sessions);
    for _ in 0..sizes.sessions {
        let mut ctx = client(&tls_target).await;
        ctx.read_holding_registers(0, 1).await.unwrap().unwrap();
        sessions.push(ctx);
    }
    let after = resident_kib();
    println!(
        "memory   {} concurrent TLS sessions (client, broker and simulator in one process): resident {} KiB -> {} KiB, {:.1} KiB per session (all three sides)",
        sizes.sessions,
        before,
        after,
        (after.saturating_sub(before)) as f64 / sizes.sessions as f64
    );
    drop(sessions);
}

mod bench_scope {
    use otgate_policy::{AssetId, GrantScope, ModbusSpec, Protocol};

    /// Read-only on the whole asset, unit 1 (the sample plant's vendor-plc-read rule).
    pub fn read_only() -> GrantScope {
        let mut read = ModbusSpec::class(otgate_policy::modbus::ModbusClass::Read);
        read.units = vec![1];
        GrantScope {
            asset: AssetId::new("line1-plc"),
            protocol: Protocol::Modbus,
            modbus: vec![read],
            dnp3: Vec::new(),
            vnc: None,
            tcp: false,
        }
    }
}
