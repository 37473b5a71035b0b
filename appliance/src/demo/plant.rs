//! The demo's simulated plant: PLC simulators on loopback, and the mirror port of line 3's
//! switch, which relays line 3's Modbus traffic to its PLC and records every conversation into a
//! pcap stamped with the plant's clock, for the passive monitor to read afterwards.

use std::fs::File;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::sim::plc::{self, PlcConfig, PlcHandle};
use crate::sim::traffic::{CaptureWriter, Direction, FlowWriter};

/// The plant's wall clock: it started at `start` (a Saturday morning) when the demo began.
#[derive(Debug, Clone, Copy)]
pub struct PlantClock {
    start: chrono::DateTime<chrono::Utc>,
    since: std::time::Instant,
}

impl PlantClock {
    /// A clock reading `start` now.
    pub fn starting_at(start: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            start,
            since: std::time::Instant::now(),
        }
    }

    /// The plant's time now.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.start + chrono::Duration::from_std(self.since.elapsed()).unwrap_or_default()
    }

    /// The plant's time now, as a `SystemTime` for capture timestamps.
    pub fn now_system(&self) -> SystemTime {
        SystemTime::from(self.now())
    }
}

/// One simulated PLC.
#[derive(Debug)]
pub struct Plc {
    /// The address the policy names for it (the mirror relay's for line 3).
    pub address: SocketAddr,
    /// The simulator itself.
    pub handle: PlcHandle,
}

/// The simulated plant.
pub struct Plant {
    /// Line 1's PLC.
    pub line1: Plc,
    /// Line 3's PLC, behind the mirror relay.
    pub line3: Plc,
    /// The safety controller (tagged `safety` in the policy).
    pub safety: Plc,
    /// The pcap the mirror port writes.
    pub mirror_pcap: PathBuf,
    mirror: Mirror,
}

impl std::fmt::Debug for MirrorDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MirrorCapture")
    }
}

/// Stands in for the capture writer in `Debug` output.
struct MirrorDebug;

impl std::fmt::Debug for Plant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plant")
            .field("line1", &self.line1)
            .field("line3", &self.line3)
            .field("safety", &self.safety)
            .field("mirror_pcap", &self.mirror_pcap)
            .field("mirror", &MirrorDebug)
            .finish()
    }
}

impl Plant {
    /// Start the PLCs on free loopback ports and the mirror relay in front of line 3's.
    pub async fn start(dir: &Path, clock: PlantClock) -> anyhow::Result<Self> {
        // Each cell network gets its own loopback /24, like the sample plant's 10.10.x.0/24.
        let at = |third: u8, host: u8| SocketAddr::from(([127, 0, third, host], 0));
        let config = PlcConfig::default();
        let line1 = plc::spawn(at(1, 11), config.clone())
            .await
            .context("line 1 PLC simulator")?;
        let line3 = plc::spawn(at(3, 12), config.clone())
            .await
            .context("line 3 PLC simulator")?;
        let safety = plc::spawn(at(9, 10), config)
            .await
            .context("safety PLC simulator")?;
        // Something for readers to see: a few live process values.
        for (i, value) in [(0u16, 215u16), (1, 1200), (2, 42), (3, 7)] {
            line1.handle_input(i, value);
            line3.handle_input(i, value + 1);
        }
        for (i, value) in [
            (100u16, 1500u16),
            (101, 1480),
            (102, 60),
            (103, 12),
            (104, 3),
        ] {
            line3.set_holding_register(i, value);
        }
        let mirror_pcap = dir.join("mirror-line3.pcap");
        let writer = CaptureWriter::create(&mirror_pcap).context("mirror port capture")?;
        let mirror = Arc::new(Mutex::new(Some(writer)));
        let relay = TcpListener::bind(at(3, 11)).await.context("mirror relay")?;
        let relay_addr = relay.local_addr()?;
        tokio::spawn(relay_loop(
            relay,
            line3.local_addr(),
            Arc::clone(&mirror),
            clock,
        ));
        Ok(Self {
            line1: Plc {
                address: line1.local_addr(),
                handle: line1,
            },
            line3: Plc {
                address: relay_addr,
                handle: line3,
            },
            safety: Plc {
                address: safety.local_addr(),
                handle: safety,
            },
            mirror_pcap,
            mirror,
        })
    }

    /// Close the mirror capture so the monitor can read all of it.
    pub fn finish_mirror(&self) -> anyhow::Result<()> {
        let writer = self.mirror.lock().ok().and_then(|mut guard| guard.take());
        if let Some(writer) = writer {
            writer.finish().context("mirror port capture")?;
        }
        Ok(())
    }
}

/// Helpers on the simulator handle for the demo's initial values.
trait SeedInputs {
    fn handle_input(&self, address: u16, value: u16);
}

impl SeedInputs for PlcHandle {
    fn handle_input(&self, address: u16, value: u16) {
        self.set_input_register(address, value);
    }
}

type Mirror = Arc<Mutex<Option<CaptureWriter<BufWriter<File>>>>>;

async fn relay_loop(listener: TcpListener, plc: SocketAddr, mirror: Mirror, clock: PlantClock) {
    let server = listener.local_addr().unwrap_or(plc);
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            return;
        };
        let mirror = Arc::clone(&mirror);
        tokio::spawn(async move {
            if let Ok(upstream) = TcpStream::connect(plc).await {
                relay(client, upstream, peer, server, mirror, clock).await;
            }
        });
    }
}

/// Copy bytes both ways, recording each chunk into the mirror capture as it passes.
async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    peer: SocketAddr,
    server: SocketAddr,
    mirror: Mirror,
    clock: PlantClock,
) {
    let flow = with_writer(&mirror, |w| {
        FlowWriter::open(w, peer, server, clock.now_system()).ok()
    });
    let flow = Arc::new(Mutex::new(flow.flatten()));
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut plc_rx, mut plc_tx) = upstream.into_split();
    let to_plc = {
        let (flow, mirror) = (Arc::clone(&flow), Arc::clone(&mirror));
        async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let n = match client_rx.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunk = buf.get(..n).unwrap_or_default();
                record(&mirror, &flow, Direction::ToServer, chunk, clock);
                if plc_tx.write_all(chunk).await.is_err() {
                    break;
                }
            }
            let _ = plc_tx.shutdown().await;
        }
    };
    let to_client = {
        let (flow, mirror) = (Arc::clone(&flow), Arc::clone(&mirror));
        async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let n = match plc_rx.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunk = buf.get(..n).unwrap_or_default();
                record(&mirror, &flow, Direction::ToClient, chunk, clock);
                if client_tx.write_all(chunk).await.is_err() {
                    break;
                }
            }
            let _ = client_tx.shutdown().await;
        }
    };
    tokio::join!(to_plc, to_client);
    let done = flow.lock().ok().and_then(|mut f| f.take());
    if let Some(done) = done {
        with_writer(&mirror, |w| done.close(w, clock.now_system()).ok());
    }
}

fn record(
    mirror: &Mirror,
    flow: &Arc<Mutex<Option<FlowWriter>>>,
    direction: Direction,
    chunk: &[u8],
    clock: PlantClock,
) {
    if let Ok(mut flow) = flow.lock() {
        if let Some(flow) = flow.as_mut() {
            with_writer(mirror, |w| {
                flow.send(w, direction, chunk, clock.now_system()).ok()
            });
        }
    }
}

fn with_writer<T>(
    mirror: &Mirror,
    f: impl FnOnce(&mut CaptureWriter<BufWriter<File>>) -> T,
) -> Option<T> {
    let mut guard = mirror.lock().ok()?;
    guard.as_mut().map(f)
}
