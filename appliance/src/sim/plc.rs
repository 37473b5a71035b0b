//! A simulated PLC: a real Modbus TCP server (tokio-modbus) with the four data tables in memory.
//!
//! It answers one unit id (plus 255, the Modbus TCP "unit not used" value) with coils, discrete
//! inputs, holding and input registers of configurable sizes, and the exceptions a real device
//! gives (Modbus Application Protocol v1.1b3, section 7): 01 for a function it does not
//! implement, 02 for addresses outside a table, 03 for quantities outside the spec's limits,
//! 04 when a write cannot be persisted, 0B for a unit id it does not answer. It also answers
//! FC 8 sub-function 0 (return query data), FC 17 (report server id), FC 43 / MEI 14 (device
//! identification, basic objects) and echoes FC 90 so tests can see a vendor code reach it.
//!
//! Optional persistence writes the tables as JSON (atomically, after each write) and loads them
//! at start. Optional capture writes every TCP conversation served as a pcap (`sim::traffic`),
//! from a thread fed by a bounded queue, so a slow disk drops capture segments, never requests. For tests, [`PlcHandle`] reads and sets registers, counts the requests that reached
//! the PLC, slows responses down, and drops every open connection (a PLC that closes).
//!
//! It does not validate Modbus framing beyond what tokio-modbus does (that is `wire`'s job), and
//! it is not hardened: it is a simulator for the demo and the tests, never a production device.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_modbus::server::tcp::Server;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::sim::traffic::{CaptureWriter, Direction, FlowWriter};

/// The unit id Modbus TCP devices answer when the unit id is "not used" (spec section 4.4).
pub const UNIT_NOT_USED: u8 = 0xFF;

/// Most coils or discrete inputs one read may ask for (spec 6.1, 6.2).
const MAX_READ_BITS: u16 = 2000;
/// Most registers one read may ask for (spec 6.3, 6.4).
const MAX_READ_REGISTERS: u16 = 125;
/// Most coils one write may carry (spec 6.11).
const MAX_WRITE_BITS: usize = 1968;
/// Most registers one write may carry (spec 6.12).
const MAX_WRITE_REGISTERS: usize = 123;
/// Most registers the write half of FC 23 may carry (spec 6.17).
const MAX_READ_WRITE_REGISTERS: usize = 121;
/// Largest table the simulator accepts (Modbus addresses are 16-bit).
pub const MAX_TABLE_SIZE: usize = 65536;

/// How to build a simulated PLC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlcConfig {
    /// The unit id it answers (besides 255).
    pub unit: u8,
    /// Number of coils (addresses 0..coils).
    pub coils: usize,
    /// Number of discrete inputs.
    pub discrete_inputs: usize,
    /// Number of holding registers.
    pub holding_registers: usize,
    /// Number of input registers.
    pub input_registers: usize,
    /// Where to keep the tables across restarts, if anywhere.
    pub persist: Option<PathBuf>,
    /// Where to write the TCP conversations served, as a pcap, if anywhere.
    pub capture: Option<PathBuf>,
}

impl Default for PlcConfig {
    fn default() -> Self {
        Self {
            unit: 1,
            coils: 1000,
            discrete_inputs: 1000,
            holding_registers: 1000,
            input_registers: 1000,
            persist: None,
            capture: None,
        }
    }
}

/// Why the simulator could not start or persist.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A table size is over 65536.
    #[error("{table} size {size} is over the Modbus maximum of {MAX_TABLE_SIZE}")]
    TableTooLarge {
        /// Which table.
        table: &'static str,
        /// The size asked for.
        size: usize,
    },
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The persistence file could not be read or written.
    #[error("persistence file {path}")]
    Persist {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The persistence file is not a simulator state file.
    #[error("persistence file {path} is not a simulator state file")]
    PersistFormat {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The capture file could not be created.
    #[error("capture file {path}")]
    Capture {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: crate::sim::traffic::TrafficError,
    },
}

/// The four data tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tables {
    /// Coils.
    pub coils: Vec<bool>,
    /// Discrete inputs.
    pub discrete_inputs: Vec<bool>,
    /// Holding registers.
    pub holding_registers: Vec<u16>,
    /// Input registers.
    pub input_registers: Vec<u16>,
}

impl Tables {
    /// Fresh tables: coils and holding registers zero; discrete inputs alternate and input
    /// register `i` holds `i`, so reads show recognisable values.
    fn fresh(config: &PlcConfig) -> Self {
        Self {
            coils: vec![false; config.coils],
            discrete_inputs: (0..config.discrete_inputs).map(|i| i % 2 == 1).collect(),
            holding_registers: vec![0; config.holding_registers],
            input_registers: (0..config.input_registers)
                .map(|i| (i & 0xFFFF) as u16)
                .collect(),
        }
    }

    /// Tables loaded from a state file, resized to the configured sizes.
    fn load(path: &Path, config: &PlcConfig) -> Result<Self, SimError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::fresh(config)),
            Err(source) => {
                return Err(SimError::Persist {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let mut tables: Tables =
            serde_json::from_slice(&bytes).map_err(|source| SimError::PersistFormat {
                path: path.to_owned(),
                source,
            })?;
        let fresh = Self::fresh(config);
        resize_from(&mut tables.coils, &fresh.coils);
        resize_from(&mut tables.discrete_inputs, &fresh.discrete_inputs);
        resize_from(&mut tables.holding_registers, &fresh.holding_registers);
        resize_from(&mut tables.input_registers, &fresh.input_registers);
        Ok(tables)
    }

    /// Write the tables to `path` atomically (temporary file, fsync, rename).
    fn save(&self, path: &Path) -> Result<(), SimError> {
        let err = |source| SimError::Persist {
            path: path.to_owned(),
            source,
        };
        let json = serde_json::to_vec(self).map_err(|e| err(io::Error::other(e)))?;
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp).map_err(err)?;
            file.write_all(&json).map_err(err)?;
            file.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, path).map_err(err)
    }
}

fn resize_from<T: Clone>(table: &mut Vec<T>, fresh: &[T]) {
    if table.len() > fresh.len() {
        table.truncate(fresh.len());
    } else if let Some(rest) = fresh.get(table.len()..) {
        table.extend_from_slice(rest);
    }
}

/// What the server tasks and the handle share.
#[derive(Debug)]
struct Shared {
    unit: u8,
    persist: Option<PathBuf>,
    /// The tables; a std mutex because no lock is held across an await.
    tables: Mutex<Tables>,
    /// Requests that reached the PLC (decoded by tokio-modbus and handed to the service).
    requests: AtomicU64,
    /// Milliseconds to wait before answering each request.
    delay_ms: AtomicU64,
    /// Cancelled to drop every open connection; replaced by a fresh token afterwards.
    connections: Mutex<CancellationToken>,
    /// Where served bytes go when capturing (a bounded queue to the capture thread).
    capture: Option<SyncSender<Captured>>,
    /// Numbers connections for the capture.
    next_connection: AtomicU64,
}

impl Shared {
    fn tables(&self) -> MutexGuard<'_, Tables> {
        // A poisoned lock only means a test thread panicked while holding it; the data is fine.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn connection_token(&self) -> CancellationToken {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A running simulated PLC.
#[derive(Debug)]
pub struct PlcHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    /// Cancelled to stop accepting and close every connection.
    shutdown: CancellationToken,
    /// The accept loop (taken by `shutdown`).
    task: Option<JoinHandle<()>>,
}

impl PlcHandle {
    /// The address the PLC listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The unit id it answers.
    pub fn unit(&self) -> u8 {
        self.shared.unit
    }

    /// A holding register's value, if the address exists.
    pub fn holding_register(&self, address: u16) -> Option<u16> {
        self.shared
            .tables()
            .holding_registers
            .get(usize::from(address))
            .copied()
    }

    /// Set a holding register; false if the address does not exist.
    pub fn set_holding_register(&self, address: u16, value: u16) -> bool {
        set(&mut self.shared.tables().holding_registers, address, value)
    }

    /// An input register's value, if the address exists.
    pub fn input_register(&self, address: u16) -> Option<u16> {
        self.shared
            .tables()
            .input_registers
            .get(usize::from(address))
            .copied()
    }

    /// Set an input register (the process changing); false if the address does not exist.
    pub fn set_input_register(&self, address: u16, value: u16) -> bool {
        set(&mut self.shared.tables().input_registers, address, value)
    }

    /// A coil's value, if the address exists.
    pub fn coil(&self, address: u16) -> Option<bool> {
        self.shared
            .tables()
            .coils
            .get(usize::from(address))
            .copied()
    }

    /// Set a coil; false if the address does not exist.
    pub fn set_coil(&self, address: u16, value: bool) -> bool {
        set(&mut self.shared.tables().coils, address, value)
    }

    /// A discrete input's value, if the address exists.
    pub fn discrete_input(&self, address: u16) -> Option<bool> {
        self.shared
            .tables()
            .discrete_inputs
            .get(usize::from(address))
            .copied()
    }

    /// Set a discrete input; false if the address does not exist.
    pub fn set_discrete_input(&self, address: u16, value: bool) -> bool {
        set(&mut self.shared.tables().discrete_inputs, address, value)
    }

    /// A copy of all four tables.
    pub fn tables(&self) -> Tables {
        self.shared.tables().clone()
    }

    /// How many requests have reached the PLC so far.
    pub fn requests_served(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Wait `delay` before answering each request from now on (a slow PLC).
    pub fn set_response_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Close every open connection (a PLC that drops its clients); new ones are still accepted.
    pub fn disconnect_all(&self) {
        let mut guard = self
            .shared
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        guard.cancel();
        *guard = CancellationToken::new();
    }

    /// Stop accepting, close every connection and wait for the accept loop to end.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        self.shared.connection_token().cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for PlcHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.shared.connection_token().cancel();
    }
}

fn set<T>(table: &mut [T], address: u16, value: T) -> bool {
    match table.get_mut(usize::from(address)) {
        Some(slot) => {
            *slot = value;
            true
        }
        None => false,
    }
}

/// Start a simulated PLC listening on `addr` (port 0 picks a free port).
pub async fn spawn(addr: SocketAddr, config: PlcConfig) -> Result<PlcHandle, SimError> {
    for (table, size) in [
        ("coils", config.coils),
        ("discrete inputs", config.discrete_inputs),
        ("holding registers", config.holding_registers),
        ("input registers", config.input_registers),
    ] {
        if size > MAX_TABLE_SIZE {
            return Err(SimError::TableTooLarge { table, size });
        }
    }
    let tables = match &config.persist {
        Some(path) => Tables::load(path, &config)?,
        None => Tables::fresh(&config),
    };
    let capture = match &config.capture {
        Some(path) => Some(start_capture(path)?),
        None => None,
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| SimError::Bind { addr, source })?;
    let shared = Arc::new(Shared {
        unit: config.unit,
        persist: config.persist.clone(),
        tables: Mutex::new(tables),
        requests: AtomicU64::new(0),
        delay_ms: AtomicU64::new(0),
        connections: Mutex::new(CancellationToken::new()),
        capture,
        next_connection: AtomicU64::new(0),
    });
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(listener, Arc::clone(&shared), shutdown.clone()));
    tracing::info!(%local_addr, unit = config.unit, "simulated PLC listening");
    Ok(PlcHandle {
        local_addr,
        shared,
        shutdown,
        task: Some(task),
    })
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let server = Server::new(listener);
    let on_connected = |stream: TcpStream, peer: SocketAddr| {
        let shared = Arc::clone(&shared);
        async move {
            tracing::debug!(%peer, "PLC connection");
            let _ = stream.set_nodelay(true);
            let tap = shared.capture.as_ref().and_then(|queue| {
                let server = stream.local_addr().ok()?;
                let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
                let _ = queue.try_send(Captured::Open {
                    id,
                    client: peer,
                    server,
                    at: SystemTime::now(),
                });
                Some(Tap {
                    id,
                    queue: queue.clone(),
                })
            });
            let transport = Closable::new(stream, shared.connection_token(), tap);
            Ok(Some((PlcService { shared }, transport)))
        }
    };
    let on_error = |error: io::Error| tracing::debug!(%error, "PLC connection ended with an error");
    let stop = Box::pin(shutdown.cancelled_owned());
    if let Err(error) = server.serve_until(&on_connected, on_error, stop).await {
        tracing::warn!(%error, "simulated PLC stopped accepting");
    }
}

/// A transport that reads end-of-stream and refuses writes once its token is cancelled, so
/// tokio-modbus's per-connection task ends and drops the socket (tokio-modbus offers no other way
/// to close a served connection).
struct Closable<S> {
    inner: S,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Copies what passes to the capture, when capturing.
    tap: Option<Tap>,
}

impl<S> Closable<S> {
    fn new(inner: S, token: CancellationToken, tap: Option<Tap>) -> Self {
        Self {
            inner,
            closed: Box::pin(token.cancelled_owned()),
            tap,
        }
    }
}

impl<S> Drop for Closable<S> {
    fn drop(&mut self) {
        if let Some(tap) = &self.tap {
            let _ = tap.queue.try_send(Captured::Close {
                id: tap.id,
                at: SystemTime::now(),
            });
        }
    }
}

/// One connection's link to the capture thread.
struct Tap {
    id: u64,
    queue: SyncSender<Captured>,
}

impl Tap {
    fn data(&self, direction: Direction, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        // A full queue drops the segment rather than slowing the PLC; the capture is best effort.
        let _ = self.queue.try_send(Captured::Data {
            id: self.id,
            direction,
            bytes: bytes.to_vec(),
            at: SystemTime::now(),
        });
    }
}

/// What the capture thread is told.
enum Captured {
    Open {
        id: u64,
        client: SocketAddr,
        server: SocketAddr,
        at: SystemTime,
    },
    Data {
        id: u64,
        direction: Direction,
        bytes: Vec<u8>,
        at: SystemTime,
    },
    Close {
        id: u64,
        at: SystemTime,
    },
}

/// Most capture messages queued before segments are dropped.
const CAPTURE_QUEUE: usize = 4096;

/// Create the pcap and start the thread that writes every served conversation into it.
fn start_capture(path: &Path) -> Result<SyncSender<Captured>, SimError> {
    let err = |source| SimError::Capture {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::create(path).map_err(|e| {
        err(crate::sim::traffic::TrafficError::Io {
            path: path.display().to_string(),
            source: e,
        })
    })?;
    // Unbuffered: every frame is on disk as it is written, so the file is valid at any moment.
    let mut pcap = CaptureWriter::new(file).map_err(err)?;
    let (queue, inbox) = std::sync::mpsc::sync_channel::<Captured>(CAPTURE_QUEUE);
    let path = path.to_owned();
    std::thread::spawn(move || {
        let mut flows: HashMap<u64, FlowWriter> = HashMap::new();
        // Ends when the PLC and all its connections are gone (every sender dropped).
        while let Ok(message) = inbox.recv() {
            let result = match message {
                Captured::Open {
                    id,
                    client,
                    server,
                    at,
                } => FlowWriter::open(&mut pcap, client, server, at).map(|flow| {
                    flows.insert(id, flow);
                }),
                Captured::Data {
                    id,
                    direction,
                    bytes,
                    at,
                } => match flows.get_mut(&id) {
                    Some(flow) => flow.send(&mut pcap, direction, &bytes, at),
                    None => Ok(()),
                },
                Captured::Close { id, at } => match flows.remove(&id) {
                    Some(flow) => flow.close(&mut pcap, at),
                    None => Ok(()),
                },
            };
            if let Err(error) = result {
                tracing::warn!(path = %path.display(), %error, "PLC capture stopped");
                return;
            }
        }
    });
    Ok(queue)
}

impl<S: AsyncRead + Unpin> AsyncRead for Closable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.closed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(tap)) = (&polled, &self.tap) {
            tap.data(
                Direction::ToServer,
                buf.filled().get(before..).unwrap_or_default(),
            );
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Closable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // A dropped connection answers nothing more, not even a response already computed.
        if self.closed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(tap)) = (&polled, &self.tap) {
            tap.data(Direction::ToClient, buf.get(..*n).unwrap_or_default());
        }
        polled
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The tokio-modbus service: one per connection, all sharing the tables.
struct PlcService {
    shared: Arc<Shared>,
}

type Answer = Result<Response, ExceptionCode>;

impl tokio_modbus::server::Service for PlcService {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        self.shared.requests.fetch_add(1, Ordering::Relaxed);
        let answer = if request.slave == self.shared.unit || request.slave == UNIT_NOT_USED {
            answer(&self.shared, request.request)
        } else {
            Err(ExceptionCode::GatewayTargetDevice)
        };
        let delay = self.shared.delay_ms.load(Ordering::Relaxed);
        if delay == 0 {
            Box::pin(std::future::ready(answer))
        } else {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                answer
            })
        }
    }
}

/// The address range `start..start+quantity` inside a table of `len`, or exception 02.
fn span(start: u16, quantity: usize, len: usize) -> Result<std::ops::Range<usize>, ExceptionCode> {
    let first = usize::from(start);
    let end = first + quantity;
    if end > len {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    Ok(first..end)
}

fn check_quantity(quantity: usize, max: usize) -> Result<(), ExceptionCode> {
    if quantity == 0 || quantity > max {
        return Err(ExceptionCode::IllegalDataValue);
    }
    Ok(())
}

fn read<T: Copy>(
    table: &[T],
    start: u16,
    quantity: u16,
    max: u16,
) -> Result<Vec<T>, ExceptionCode> {
    check_quantity(usize::from(quantity), usize::from(max))?;
    let range = span(start, usize::from(quantity), table.len())?;
    table
        .get(range)
        .map(<[T]>::to_vec)
        .ok_or(ExceptionCode::IllegalDataAddress)
}

fn write<T: Copy>(table: &mut [T], start: u16, values: &[T]) -> Result<(), ExceptionCode> {
    let range = span(start, values.len(), table.len())?;
    let slots = table
        .get_mut(range)
        .ok_or(ExceptionCode::IllegalDataAddress)?;
    slots.copy_from_slice(values);
    Ok(())
}

/// Basic device identification objects (spec 6.21): vendor name, product code, revision.
const DEVICE_ID_OBJECTS: [&str; 3] = ["otgate", "otgate-sim-plc", env!("CARGO_PKG_VERSION")];

fn answer(shared: &Shared, request: Request<'static>) -> Answer {
    let response = {
        let mut tables = shared.tables();
        let tables = &mut *tables;
        match request {
            Request::ReadCoils(start, quantity) => {
                Response::ReadCoils(read(&tables.coils, start, quantity, MAX_READ_BITS)?)
            }
            Request::ReadDiscreteInputs(start, quantity) => Response::ReadDiscreteInputs(read(
                &tables.discrete_inputs,
                start,
                quantity,
                MAX_READ_BITS,
            )?),
            Request::ReadHoldingRegisters(start, quantity) => Response::ReadHoldingRegisters(read(
                &tables.holding_registers,
                start,
                quantity,
                MAX_READ_REGISTERS,
            )?),
            Request::ReadInputRegisters(start, quantity) => Response::ReadInputRegisters(read(
                &tables.input_registers,
                start,
                quantity,
                MAX_READ_REGISTERS,
            )?),
            Request::WriteSingleCoil(address, value) => {
                write(&mut tables.coils, address, &[value])?;
                Response::WriteSingleCoil(address, value)
            }
            Request::WriteMultipleCoils(start, values) => {
                check_quantity(values.len(), MAX_WRITE_BITS)?;
                write(&mut tables.coils, start, &values)?;
                Response::WriteMultipleCoils(start, quantity_u16(values.len()))
            }
            Request::WriteSingleRegister(address, value) => {
                write(&mut tables.holding_registers, address, &[value])?;
                Response::WriteSingleRegister(address, value)
            }
            Request::WriteMultipleRegisters(start, values) => {
                check_quantity(values.len(), MAX_WRITE_REGISTERS)?;
                write(&mut tables.holding_registers, start, &values)?;
                Response::WriteMultipleRegisters(start, quantity_u16(values.len()))
            }
            Request::MaskWriteRegister(address, and_mask, or_mask) => {
                let slot = tables
                    .holding_registers
                    .get_mut(usize::from(address))
                    .ok_or(ExceptionCode::IllegalDataAddress)?;
                // Spec 6.16: result = (current AND and_mask) OR (or_mask AND NOT and_mask).
                *slot = (*slot & and_mask) | (or_mask & !and_mask);
                Response::MaskWriteRegister(address, and_mask, or_mask)
            }
            Request::ReadWriteMultipleRegisters(read_start, read_quantity, write_start, values) => {
                check_quantity(values.len(), MAX_READ_WRITE_REGISTERS)?;
                check_quantity(
                    usize::from(read_quantity),
                    usize::from(MAX_READ_REGISTERS) - 4,
                )?;
                // Check both halves before changing anything; the write happens before the read.
                span(
                    read_start,
                    usize::from(read_quantity),
                    tables.holding_registers.len(),
                )?;
                write(&mut tables.holding_registers, write_start, &values)?;
                Response::ReadWriteMultipleRegisters(read(
                    &tables.holding_registers,
                    read_start,
                    read_quantity,
                    MAX_READ_REGISTERS,
                )?)
            }
            Request::ReportServerId => {
                Response::ReportServerId(shared.unit, true, b"otgate-sim-plc".to_vec())
            }
            Request::Custom(function, data) => custom(function, &data)?,
        }
    };
    if is_write(&response) {
        if let Some(path) = &shared.persist {
            let snapshot = shared.tables().clone();
            if let Err(error) = snapshot.save(path) {
                tracing::warn!(%error, "simulated PLC could not persist a write");
                return Err(ExceptionCode::ServerDeviceFailure);
            }
        }
    }
    Ok(response)
}

fn quantity_u16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn is_write(response: &Response) -> bool {
    matches!(
        response,
        Response::WriteSingleCoil(..)
            | Response::WriteMultipleCoils(..)
            | Response::WriteSingleRegister(..)
            | Response::WriteMultipleRegisters(..)
            | Response::MaskWriteRegister(..)
            | Response::ReadWriteMultipleRegisters(..)
    )
}

/// Function codes tokio-modbus hands over raw: diagnostics, device id, FC 90.
fn custom(function: u8, data: &[u8]) -> Result<Response, ExceptionCode> {
    match function {
        // FC 8 diagnostics, sub-function 0 "return query data": echo.
        0x08 => match data {
            [0x00, 0x00, ..] => Ok(Response::Custom(function, data.to_vec().into())),
            _ => Err(ExceptionCode::IllegalFunction),
        },
        // FC 43 / MEI 14 read device identification, basic objects, stream access (code 1).
        0x2B => match data {
            [0x0E, 0x01, _object] => {
                let mut pdu = vec![0x0E, 0x01, 0x01, 0x00, 0x00];
                pdu.push(DEVICE_ID_OBJECTS.len() as u8);
                for (id, value) in DEVICE_ID_OBJECTS.iter().enumerate() {
                    pdu.push(id as u8);
                    pdu.push(value.len() as u8);
                    pdu.extend_from_slice(value.as_bytes());
                }
                Ok(Response::Custom(function, pdu.into()))
            }
            [0x0E, ..] => Err(ExceptionCode::IllegalDataValue),
            _ => Err(ExceptionCode::IllegalFunction),
        },
        // FC 90: a vendor code; echoed so tests see it arrive.
        0x5A => Ok(Response::Custom(function, data.to_vec().into())),
        _ => Err(ExceptionCode::IllegalFunction),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_modbus::client::{tcp, Reader, Writer};
    use tokio_modbus::Slave;

    async fn plc(config: PlcConfig) -> PlcHandle {
        spawn("127.0.0.1:0".parse().unwrap(), config).await.unwrap()
    }

    #[tokio::test]
    async fn reads_and_writes_the_four_tables() {
        let plc = plc(PlcConfig::default()).await;
        let mut ctx = tcp::connect_slave(plc.local_addr(), Slave(1))
            .await
            .unwrap();
        ctx.write_multiple_registers(100, &[1, 2, 3])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            ctx.read_holding_registers(100, 3).await.unwrap().unwrap(),
            vec![1, 2, 3]
        );
        assert_eq!(plc.holding_register(101), Some(2));
        ctx.write_single_coil(7, true).await.unwrap().unwrap();
        assert_eq!(plc.coil(7), Some(true));
        assert_eq!(
            ctx.read_input_registers(10, 2).await.unwrap().unwrap(),
            vec![10, 11]
        );
        assert_eq!(
            ctx.read_discrete_inputs(0, 3).await.unwrap().unwrap(),
            vec![false, true, false]
        );
        let before = plc.holding_register(100).unwrap();
        ctx.masked_write_register(100, 0x00F2, 0x0025)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            plc.holding_register(100),
            Some((before & 0x00F2) | (0x0025 & !0x00F2))
        );
        assert_eq!(plc.requests_served(), 6);
    }

    #[tokio::test]
    async fn out_of_range_is_illegal_data_address_and_changes_nothing() {
        let plc = plc(PlcConfig {
            holding_registers: 200,
            ..PlcConfig::default()
        })
        .await;
        let mut ctx = tcp::connect_slave(plc.local_addr(), Slave(1))
            .await
            .unwrap();
        let refused = ctx.write_multiple_registers(198, &[9, 9, 9]).await.unwrap();
        assert_eq!(refused, Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(plc.holding_register(198), Some(0));
        let refused = ctx.read_holding_registers(0, 126).await.unwrap();
        assert_eq!(refused, Err(ExceptionCode::IllegalDataValue));
        let refused = ctx.read_coils(65535, 1).await.unwrap();
        assert_eq!(refused, Err(ExceptionCode::IllegalDataAddress));
    }

    #[tokio::test]
    async fn other_units_get_gateway_target_failed() {
        let plc = plc(PlcConfig::default()).await;
        let mut ctx = tcp::connect_slave(plc.local_addr(), Slave(9))
            .await
            .unwrap();
        let refused = ctx.read_holding_registers(0, 1).await.unwrap();
        assert_eq!(refused, Err(ExceptionCode::GatewayTargetDevice));
    }

    #[tokio::test]
    async fn persists_writes_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plc.json");
        let config = PlcConfig {
            persist: Some(path.clone()),
            ..PlcConfig::default()
        };
        let first = plc(config.clone()).await;
        let mut ctx = tcp::connect_slave(first.local_addr(), Slave(1))
            .await
            .unwrap();
        ctx.write_single_register(150, 4242).await.unwrap().unwrap();
        drop(ctx);
        first.shutdown().await;
        let second = plc(config).await;
        assert_eq!(second.holding_register(150), Some(4242));
    }

    #[tokio::test]
    async fn disconnect_all_closes_open_connections() {
        let plc = plc(PlcConfig::default()).await;
        let mut ctx = tcp::connect_slave(plc.local_addr(), Slave(1))
            .await
            .unwrap();
        ctx.read_holding_registers(0, 1).await.unwrap().unwrap();
        plc.disconnect_all();
        assert!(ctx.read_holding_registers(0, 1).await.is_err());
        let mut again = tcp::connect_slave(plc.local_addr(), Slave(1))
            .await
            .unwrap();
        again.read_holding_registers(0, 1).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn captures_the_conversations_it_serves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("served.pcap");
        let config = PlcConfig {
            capture: Some(path.clone()),
            ..PlcConfig::default()
        };
        let plc = plc(config).await;
        plc.set_holding_register(3, 0xBEEF);
        let mut ctx = tcp::connect_slave(plc.local_addr(), Slave(1))
            .await
            .unwrap();
        ctx.read_holding_registers(3, 1).await.unwrap().unwrap();
        drop(ctx);
        // The connection's end reaches the capture thread once the server task sees it.
        let mut frames = Vec::new();
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let bytes = std::fs::read(&path).unwrap();
            let mut reader = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
            frames.clear();
            while let Some(packet) = reader.next_packet() {
                frames.push(packet.unwrap().data.into_owned());
            }
            // Handshake (3), request, response, close (3).
            if frames.len() >= 8 {
                break;
            }
        }
        assert_eq!(frames.len(), 8, "{} frames", frames.len());
        let carries = |needle: &[u8]| {
            frames
                .iter()
                .any(|f| f.windows(needle.len()).any(|w| w == needle))
        };
        assert!(
            carries(&[0, 0, 0, 6, 1, 3, 0, 3, 0, 1]),
            "the request is not in the capture"
        );
        assert!(
            carries(&[0, 0, 0, 5, 1, 3, 2, 0xBE, 0xEF]),
            "the response is not in the capture"
        );
    }

    #[test]
    fn oversized_tables_are_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = PlcConfig {
            coils: 70000,
            ..PlcConfig::default()
        };
        let error = rt
            .block_on(spawn("127.0.0.1:0".parse().unwrap(), config))
            .unwrap_err();
        assert!(matches!(error, SimError::TableTooLarge { size: 70000, .. }));
    }
}
