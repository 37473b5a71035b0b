//! The inspection pipeline: frames in, observations out. For each frame it slices the headers
//! (`capture`), finds or makes the flow (`reassembly::FlowTable`), detects the protocol by
//! content, reassembles TCP (`reassembly::Stream`), decodes each Modbus ADU or DNP3 link frame
//! (`decode`, over the shared `wire` decoders), pairs responses with requests, and hands every
//! PDU, malformed frame and alert to a [`Sink`]; along the way it feeds the inventory, the
//! detector and, when learning, the baseline.
//!
//! What it does not do: read files or sockets (callers hand it frames), print, or journal.
//! Guarantees: never panics on any bytes; memory bounded by the flow tables' capacities and the
//! per-flow bounds of `reassembly`; nothing on the per-frame path allocates except when a sink
//! renders an observation, a flow is created, or a frame has to be buffered.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::alerts::Detector;
use super::baseline::Learner;
use super::capture::{slice, Frame, SliceError, Transport};
use super::decode::{self, Dnp3Direction, Dnp3Outcome, Dnp3Pending, ModbusPending};
use super::event::{Alert, Endpoints, Malformed, Observation, Protocol, L4};
use super::inventory::Inventory;
use super::reassembly::{FlowTable, Framing, Item, Stream};

/// The Modbus TCP port.
pub const MODBUS_PORT: u16 = 502;
/// The DNP3 port.
pub const DNP3_PORT: u16 = 20000;
/// Default capacity of the TCP and UDP flow tables.
pub const DEFAULT_MAX_FLOWS: usize = 65_536;
/// Default idle time after which a flow is the first to go when the table is full.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(300);
/// Payload segments of an undecided flow examined before calling it neither Modbus nor DNP3.
const DETECT_SEGMENTS: u8 = 4;

/// Where observations go.
pub trait Sink {
    /// One observation.
    fn observe(&mut self, observation: &Observation<'_>);
}

impl<F: FnMut(&Observation<'_>)> Sink for F {
    fn observe(&mut self, observation: &Observation<'_>) {
        self(observation)
    }
}

/// A sink that drops everything (benchmarks, learning).
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl Sink for Discard {
    fn observe(&mut self, _: &Observation<'_>) {}
}

/// Counters of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Frames handed in.
    pub frames: u64,
    /// Bytes of those frames.
    pub bytes: u64,
    /// Frames that were not IP.
    pub not_ip: u64,
    /// IP frames that were neither TCP nor UDP.
    pub not_tcp_udp: u64,
    /// IP fragments (not reassembled).
    pub ip_fragments: u64,
    /// Frames whose headers were truncated or inconsistent.
    pub undecodable_frames: u64,
    /// TCP flows seen.
    pub tcp_flows: u64,
    /// Flows evicted from a full table.
    pub flows_evicted: u64,
    /// Modbus PDUs (requests and responses).
    pub modbus_pdus: u64,
    /// Modbus PDUs per function code (exception bit cleared).
    #[serde(serialize_with = "nonzero_map")]
    pub modbus_functions: [u64; 128],
    /// Modbus exception responses per exception code.
    #[serde(serialize_with = "nonzero_map")]
    pub modbus_exceptions: [u64; 256],
    /// DNP3 link frames.
    pub dnp3_link_frames: u64,
    /// DNP3 application fragments.
    pub dnp3_fragments: u64,
    /// DNP3 application fragments per function code.
    #[serde(serialize_with = "nonzero_map")]
    pub dnp3_functions: [u64; 256],
    /// Malformed-frame observations.
    pub malformed: u64,
    /// DNP3 frames with a bad CRC.
    pub bad_crc: u64,
    /// Stream bytes skipped to resynchronize.
    pub skipped_bytes: u64,
    /// Stream gaps (bytes never captured).
    pub gaps: u64,
    /// Alerts raised.
    pub alerts: u64,
}

fn nonzero_map<S: serde::Serializer, const N: usize>(
    counts: &[u64; N],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(
        counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (i.to_string(), *n)),
    )
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            frames: 0,
            bytes: 0,
            not_ip: 0,
            not_tcp_udp: 0,
            ip_fragments: 0,
            undecodable_frames: 0,
            tcp_flows: 0,
            flows_evicted: 0,
            modbus_pdus: 0,
            modbus_functions: [0; 128],
            modbus_exceptions: [0; 256],
            dnp3_link_frames: 0,
            dnp3_fragments: 0,
            dnp3_functions: [0; 256],
            malformed: 0,
            bad_crc: 0,
            skipped_bytes: 0,
            gaps: 0,
            alerts: 0,
        }
    }
}

/// A flow's key: its two endpoints, the lower first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey(SocketAddr, SocketAddr);

impl std::hash::Hash for FlowKey {
    /// Address and port packed into one word per IPv4 endpoint (two per IPv6 one): a few
    /// multiplies per frame instead of a field-by-field walk. Hashes a subset of what `Eq`
    /// compares, so equal keys hash alike.
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        for end in [self.0, self.1] {
            let port = u64::from(end.port());
            match end.ip() {
                std::net::IpAddr::V4(ip) => h.write_u64(u64::from(u32::from(ip)) << 16 | port),
                std::net::IpAddr::V6(ip) => {
                    let bits = u128::from(ip);
                    // The low and high halves of the address.
                    h.write_u64(bits as u64);
                    h.write_u64(((bits >> 64) as u64) ^ port);
                }
            }
        }
    }
}

impl FlowKey {
    /// The key and which side `src` is (0: the lower endpoint).
    fn of(src: SocketAddr, dst: SocketAddr) -> (Self, usize) {
        if src <= dst {
            (FlowKey(src, dst), 0)
        } else {
            (FlowKey(dst, src), 1)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detected {
    Undecided(u8),
    Modbus,
    Dnp3,
    Other,
}

/// The per-protocol state of one flow.
#[derive(Debug, Default)]
struct FlowState {
    /// The server endpoint, once known (SYN receiver, or the OT port's side).
    server: Option<SocketAddr>,
    modbus: ModbusPending,
    dnp3_pending: Dnp3Pending,
    dnp3: [Dnp3Direction; 2],
}

#[derive(Debug)]
struct TcpFlow {
    detected: Detected,
    streams: [Stream; 2],
    state: FlowState,
}

impl TcpFlow {
    fn new() -> Self {
        Self {
            detected: Detected::Undecided(0),
            streams: [Stream::new(), Stream::new()],
            state: FlowState::default(),
        }
    }
}

/// Everything the pipeline updates besides the flow tables (split so a flow and the rest can be
/// borrowed at once).
struct Observers<'s> {
    inventory: &'s mut Inventory,
    learner: &'s mut Option<Learner>,
    detector: &'s mut Detector,
    stats: &'s mut Stats,
    sink: &'s mut dyn Sink,
}

impl Observers<'_> {
    fn alert(&mut self, alert: Alert) {
        self.stats.alerts += 1;
        self.sink.observe(&Observation::Alert(&alert));
    }

    fn malformed(&mut self, at: &Endpoints, m: Malformed) {
        self.stats.malformed += 1;
        if m.bad_crc {
            self.stats.bad_crc += 1;
        }
        self.sink.observe(&Observation::Malformed(at, &m));
        let mut alerts = Vec::new();
        self.detector.on_malformed(at, &m, &mut |a| alerts.push(a));
        for a in alerts {
            self.alert(a);
        }
    }

    fn modbus_frame(&mut self, at: &Endpoints, state: &mut FlowState, frame: &[u8]) {
        let server = state.server;
        match decode::modbus(at, server, &mut state.modbus, frame) {
            Ok(pdu) => {
                self.stats.modbus_pdus += 1;
                if let Some(n) = self
                    .stats
                    .modbus_functions
                    .get_mut(usize::from(pdu.function_code))
                {
                    *n += 1;
                }
                if let Some(code) = pdu.exception_code {
                    if let Some(n) = self.stats.modbus_exceptions.get_mut(usize::from(code)) {
                        *n += 1;
                    }
                }
                self.sink.observe(&Observation::Modbus(at, &pdu));
                self.inventory.observe_modbus(at, &pdu);
                if let Some(learner) = self.learner.as_mut() {
                    learner.observe_modbus(at, &pdu);
                }
                let mut alerts: heapless::Vec<Alert, 8> = heapless::Vec::new();
                self.detector.on_modbus(at, &pdu, &mut |a| {
                    let _ = alerts.push(a);
                });
                for a in alerts {
                    self.alert(a);
                }
                if pdu.anomalies.contains(&"malformed_pdu") {
                    let detail =
                        format!("function code {}: PDU does not decode", pdu.function_code);
                    self.malformed(
                        at,
                        Malformed {
                            protocol: Protocol::Modbus,
                            detail,
                            bad_crc: false,
                        },
                    );
                }
            }
            Err(detail) => self.malformed(
                at,
                Malformed {
                    protocol: Protocol::Modbus,
                    detail,
                    bad_crc: false,
                },
            ),
        }
    }

    fn item(
        &mut self,
        at: &Endpoints,
        state: &mut FlowState,
        detected: Detected,
        side: usize,
        item: Item<'_>,
    ) {
        match item {
            Item::Frame(frame) => match detected {
                Detected::Dnp3 => {
                    let (dirs, pending) = (&mut state.dnp3, &mut state.dnp3_pending);
                    if let Some(dir) = dirs.get_mut(side) {
                        self.dnp3_frame(at, dir, pending, frame);
                    }
                }
                _ => self.modbus_frame(at, state, frame),
            },
            Item::Skipped(n) => self.stats.skipped_bytes += n as u64,
            Item::Garbage(n) => {
                self.stats.skipped_bytes += n as u64;
                let protocol = if detected == Detected::Dnp3 {
                    Protocol::Dnp3
                } else {
                    Protocol::Modbus
                };
                let detail = format!(
                    "{n} bytes in the stream are not a {} frame; skipped to the next plausible one",
                    protocol.name()
                );
                self.malformed(
                    at,
                    Malformed {
                        protocol,
                        detail,
                        bad_crc: false,
                    },
                );
            }
            Item::Gap(_) => self.stats.gaps += 1,
        }
    }

    fn dnp3_frame(
        &mut self,
        at: &Endpoints,
        dir: &mut Dnp3Direction,
        pending: &mut Dnp3Pending,
        frame: &[u8],
    ) {
        self.stats.dnp3_link_frames += 1;
        match dir.link_frame(at, pending, frame) {
            Dnp3Outcome::Nothing => {}
            Dnp3Outcome::Fragment(f, problem) => {
                self.stats.dnp3_fragments += 1;
                if let Some(n) = self
                    .stats
                    .dnp3_functions
                    .get_mut(usize::from(f.function_code))
                {
                    *n += 1;
                }
                self.sink.observe(&Observation::Dnp3(at, &f));
                self.inventory.observe_dnp3(at, &f);
                if let Some(learner) = self.learner.as_mut() {
                    learner.observe_dnp3(at, &f);
                }
                let mut alerts: heapless::Vec<Alert, 8> = heapless::Vec::new();
                self.detector.on_dnp3(at, &f, &mut |a| {
                    let _ = alerts.push(a);
                });
                for a in alerts {
                    self.alert(a);
                }
                if let Some(detail) = problem {
                    self.malformed(
                        at,
                        Malformed {
                            protocol: Protocol::Dnp3,
                            detail,
                            bad_crc: false,
                        },
                    );
                }
            }
            Dnp3Outcome::Malformed(m) => self.malformed(at, m),
        }
    }
}

/// The pipeline's state.
pub struct Monitor {
    tcp: FlowTable<FlowKey, TcpFlow>,
    udp: FlowTable<FlowKey, FlowState>,
    inventory: Inventory,
    learner: Option<Learner>,
    detector: Detector,
    stats: Stats,
    last_ts: Duration,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Monitor {
    /// A pipeline with default bounds and the given detector.
    pub fn new(detector: Detector) -> Self {
        Self::with_bounds(detector, DEFAULT_MAX_FLOWS, DEFAULT_IDLE)
    }

    /// A pipeline whose flow tables hold at most `max_flows` flows each.
    pub fn with_bounds(detector: Detector, max_flows: usize, idle: Duration) -> Self {
        Self {
            tcp: FlowTable::new(max_flows, idle),
            udp: FlowTable::new(max_flows, idle),
            inventory: Inventory::new(),
            learner: None,
            detector,
            stats: Stats::default(),
            last_ts: Duration::ZERO,
        }
    }

    /// Learn a baseline while inspecting.
    pub fn learn(&mut self, learner: Learner) {
        self.learner = Some(learner);
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The inventory learned so far.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The detector (for its counters).
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Flows held now (TCP + UDP).
    pub fn flows_held(&self) -> usize {
        self.tcp.len() + self.udp.len()
    }

    /// Take the baseline learned, if learning.
    pub fn take_learner(&mut self) -> Option<Learner> {
        self.learner.take()
    }

    /// Take the inventory out.
    pub fn take_inventory(&mut self) -> Inventory {
        std::mem::take(&mut self.inventory)
    }

    /// Process one captured frame.
    pub fn process(&mut self, frame: &Frame<'_>, sink: &mut dyn Sink) {
        self.stats.frames += 1;
        self.stats.bytes += frame.data.len() as u64;
        self.last_ts = self.last_ts.max(frame.ts);
        let packet = match slice(frame.link, frame.data) {
            Ok(p) => p,
            Err(SliceError::NotIp) => {
                self.stats.not_ip += 1;
                return;
            }
            Err(SliceError::NotTcpOrUdp) => {
                self.stats.not_tcp_udp += 1;
                return;
            }
            Err(SliceError::Fragment) => {
                self.stats.ip_fragments += 1;
                return;
            }
            Err(_) => {
                self.stats.undecodable_frames += 1;
                return;
            }
        };
        match packet.transport {
            Transport::Tcp(seg) => {
                let at = Endpoints {
                    ts: frame.ts,
                    src: SocketAddr::new(packet.src, seg.src_port),
                    dst: SocketAddr::new(packet.dst, seg.dst_port),
                    src_mac: packet.src_mac,
                    dst_mac: packet.dst_mac,
                    l4: L4::Tcp,
                };
                self.tcp_segment(&at, seg.seq, seg.syn, seg.rst, seg.payload, sink);
            }
            Transport::Udp {
                src_port,
                dst_port,
                payload,
            } => {
                let at = Endpoints {
                    ts: frame.ts,
                    src: SocketAddr::new(packet.src, src_port),
                    dst: SocketAddr::new(packet.dst, dst_port),
                    src_mac: packet.src_mac,
                    dst_mac: packet.dst_mac,
                    l4: L4::Udp,
                };
                self.udp_datagram(&at, payload, sink);
            }
        }
    }

    fn tcp_segment(
        &mut self,
        at: &Endpoints,
        seq: u32,
        syn: bool,
        rst: bool,
        payload: &[u8],
        sink: &mut dyn Sink,
    ) {
        let (key, side) = FlowKey::of(at.src, at.dst);
        let mut evicted = 0u64;
        let mut created = false;
        let flow = self.tcp.entry(
            &key,
            at.ts,
            || {
                created = true;
                TcpFlow::new()
            },
            |_, _| evicted += 1,
        );
        let mut obs = Observers {
            inventory: &mut self.inventory,
            learner: &mut self.learner,
            detector: &mut self.detector,
            stats: &mut self.stats,
            sink,
        };
        obs.stats.flows_evicted += evicted;
        if created {
            obs.stats.tcp_flows += 1;
        }
        if syn && payload.is_empty() && flow.state.server.is_none() {
            // The first SYN's receiver is the server, unless the other side is on port 502:
            // like tshark, the Modbus port decides which side answers.
            flow.state.server = Some(
                if at.src.port() == MODBUS_PORT && at.dst.port() != MODBUS_PORT {
                    at.src
                } else {
                    at.dst
                },
            );
            let mut alerts: heapless::Vec<Alert, 2> = heapless::Vec::new();
            obs.detector.on_connection_attempt(at, &mut |a| {
                let _ = alerts.push(a);
            });
            for a in alerts {
                obs.alert(a);
            }
        }
        if rst && payload.is_empty() {
            return;
        }
        if let Detected::Undecided(seen) = flow.detected {
            if !payload.is_empty() {
                flow.detected = detect(at, payload, seen);
                match flow.detected {
                    Detected::Modbus | Detected::Dnp3 if flow.state.server.is_none() => {
                        flow.state.server = Some(server_side(at, flow.detected));
                    }
                    Detected::Other => {
                        if let Some(p) = ot_port_protocol(at) {
                            let mut alerts: heapless::Vec<Alert, 2> = heapless::Vec::new();
                            obs.detector.on_non_ot_traffic(at, p, &mut |a| {
                                let _ = alerts.push(a);
                            });
                            for a in alerts {
                                obs.alert(a);
                            }
                        }
                        flow.streams = [Stream::new(), Stream::new()];
                    }
                    _ => {}
                }
            }
        }
        let framing = match flow.detected {
            Detected::Modbus => Framing::Modbus,
            Detected::Dnp3 => Framing::Dnp3,
            Detected::Other => return,
            Detected::Undecided(_) => Framing::Modbus,
        };
        let TcpFlow {
            streams,
            state,
            detected,
        } = flow;
        let Some(stream) = streams.get_mut(side) else {
            return;
        };
        let detected = *detected;
        stream.push(seq, syn, payload, framing, &mut |item| {
            obs.item(at, state, detected, side, item)
        });
    }

    fn udp_datagram(&mut self, at: &Endpoints, payload: &[u8], sink: &mut dyn Sink) {
        // Only DNP3 is carried over UDP here; detected by content on any port.
        if !decode::dnp3_start_plausible(payload) {
            if at.src.port() == DNP3_PORT || at.dst.port() == DNP3_PORT {
                let mut alerts: heapless::Vec<Alert, 2> = heapless::Vec::new();
                self.detector
                    .on_non_ot_traffic(at, Protocol::Dnp3, &mut |a| {
                        let _ = alerts.push(a);
                    });
                for a in alerts {
                    self.stats.alerts += 1;
                    sink.observe(&Observation::Alert(&a));
                }
            }
            return;
        }
        let (key, side) = FlowKey::of(at.src, at.dst);
        let mut evicted = 0u64;
        let state = self
            .udp
            .entry(&key, at.ts, FlowState::default, |_, _| evicted += 1);
        let mut obs = Observers {
            inventory: &mut self.inventory,
            learner: &mut self.learner,
            detector: &mut self.detector,
            stats: &mut self.stats,
            sink,
        };
        obs.stats.flows_evicted += evicted;
        let mut rest = payload;
        while !rest.is_empty() {
            match Framing::Dnp3.cut(rest) {
                super::reassembly::Cut::Frame(len) => {
                    let (frame, tail) = match (rest.get(..len), rest.get(len..)) {
                        (Some(f), Some(t)) => (f, t),
                        _ => (rest, &[][..]),
                    };
                    let (dirs, pending) = (&mut state.dnp3, &mut state.dnp3_pending);
                    if let Some(dir) = dirs.get_mut(side) {
                        obs.dnp3_frame(at, dir, pending, frame);
                    }
                    rest = tail;
                }
                _ => {
                    let detail = format!(
                        "{} bytes in a datagram are not a DNP3 link frame",
                        rest.len()
                    );
                    obs.malformed(
                        at,
                        Malformed {
                            protocol: Protocol::Dnp3,
                            detail,
                            bad_crc: false,
                        },
                    );
                    break;
                }
            }
        }
    }

    /// The end of the input: flush what the streams still hold.
    pub fn finish(&mut self, sink: &mut dyn Sink) {
        let ts = self.last_ts;
        let flows: Vec<(FlowKey, TcpFlow)> = self.tcp.drain().collect();
        let mut obs = Observers {
            inventory: &mut self.inventory,
            learner: &mut self.learner,
            detector: &mut self.detector,
            stats: &mut self.stats,
            sink,
        };
        for (key, flow) in flows {
            let TcpFlow {
                detected,
                mut streams,
                mut state,
            } = flow;
            let framing = match detected {
                Detected::Dnp3 => Framing::Dnp3,
                Detected::Modbus => Framing::Modbus,
                _ => continue,
            };
            for (side, stream) in streams.iter_mut().enumerate() {
                // Segments still held behind a gap are cut and decoded now; what is left is
                // incomplete and only counted.
                let (src, dst) = if side == 0 {
                    (key.0, key.1)
                } else {
                    (key.1, key.0)
                };
                let at = Endpoints {
                    ts,
                    src,
                    dst,
                    src_mac: None,
                    dst_mac: None,
                    l4: L4::Tcp,
                };
                stream.finish(framing, &mut |item| {
                    obs.item(&at, &mut state, detected, side, item)
                });
            }
        }
        let _ = self.udp.drain().count();
    }
}

/// Decide a flow's protocol from its first payload bytes.
fn detect(at: &Endpoints, payload: &[u8], seen: u8) -> Detected {
    let modbus_port = at.src.port() == MODBUS_PORT || at.dst.port() == MODBUS_PORT;
    if decode::dnp3_start_plausible(payload) {
        return Detected::Dnp3;
    }
    if Framing::Modbus.plausible_start(payload) && (modbus_port || modbus_chain(payload)) {
        return Detected::Modbus;
    }
    if modbus_port && seen == 0 {
        // Mid-stream pickup on 502: a plausible header anywhere in the first segment will do.
        if (1..payload.len()).any(|i| {
            payload
                .get(i..)
                .is_some_and(|r| Framing::Modbus.plausible_start(r))
        }) {
            return Detected::Modbus;
        }
    }
    if payload.windows(2).any(|w| w == [0x05, 0x64]) {
        // DNP3 picked up mid-stream: a start with a good header CRC somewhere in the segment.
        if (1..payload.len()).any(|i| payload.get(i..).is_some_and(decode::dnp3_start_plausible)) {
            return Detected::Dnp3;
        }
    }
    if seen + 1 >= DETECT_SEGMENTS {
        Detected::Other
    } else {
        Detected::Undecided(seen + 1)
    }
}

/// Off port 502, Modbus is believed only when the segment is exactly a chain of plausible ADUs.
fn modbus_chain(payload: &[u8]) -> bool {
    let mut rest = payload;
    let mut frames = 0;
    while !rest.is_empty() {
        match Framing::Modbus.cut(rest) {
            super::reassembly::Cut::Frame(len) if len <= rest.len() => {
                if !Framing::Modbus.plausible_start(rest) {
                    return false;
                }
                rest = rest.get(len..).unwrap_or_default();
                frames += 1;
            }
            _ => return false,
        }
    }
    frames > 0
}

fn ot_port_protocol(at: &Endpoints) -> Option<Protocol> {
    if at.src.port() == MODBUS_PORT || at.dst.port() == MODBUS_PORT {
        Some(Protocol::Modbus)
    } else if at.src.port() == DNP3_PORT || at.dst.port() == DNP3_PORT {
        Some(Protocol::Dnp3)
    } else {
        None
    }
}

/// Without a SYN: the OT port's side is the server; failing that, the lower port's.
fn server_side(at: &Endpoints, detected: Detected) -> SocketAddr {
    let port = if detected == Detected::Dnp3 {
        DNP3_PORT
    } else {
        MODBUS_PORT
    };
    if at.dst.port() == port {
        at.dst
    } else if at.src.port() == port {
        at.src
    } else if at.dst.port() <= at.src.port() {
        at.dst
    } else {
        at.src
    }
}
