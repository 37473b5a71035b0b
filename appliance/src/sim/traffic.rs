//! Synthetic captures: a pcap writer for TCP conversations with correct handshakes, sequence
//! and acknowledgement numbers ([`CaptureWriter`] plus one [`FlowWriter`] per conversation), and
//! the traffic generator behind `otgate sim traffic` ([`generate`]), which writes a large, valid
//! capture of many Modbus TCP masters and outstations plus DNP3 over TCP and UDP.
//!
//! What it does not do: it never opens a socket; it only writes files (or any `Write`). Frames are
//! Ethernet II + IPv4 or IPv6 + TCP/UDP, built with `etherparse` (checksums included). Payloads
//! larger than one MSS (1460 bytes) are split across segments, as a real stack would.
//!
//! The PLC simulator (`otgate sim plc --capture FILE`) records its conversations with this, and
//! the tests and benchmarks of passive inspection feed on what it writes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;

/// The largest TCP payload put in one segment.
pub const MSS: usize = 1460;

/// What went wrong while writing a capture.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrafficError {
    /// The output file could not be created or written.
    #[error("cannot write capture {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The pcap encoder refused a packet or header.
    #[error("cannot encode pcap: {0}")]
    Pcap(#[from] pcap_file::PcapError),
    /// The two ends of a conversation are of different IP families.
    #[error("client {client} and server {server} are of different IP families")]
    MixedFamilies {
        /// The client end.
        client: SocketAddr,
        /// The server end.
        server: SocketAddr,
    },
    /// The frame builder refused a packet.
    #[error("cannot build frame: {0}")]
    Build(String),
}

/// A pcap file (link type Ethernet, microsecond timestamps) that frames are appended to.
pub struct CaptureWriter<W: Write> {
    pcap: PcapWriter<W>,
    frames: u64,
    bytes: u64,
    scratch: Vec<u8>,
}

impl CaptureWriter<BufWriter<File>> {
    /// Create (or truncate) `path` and write the pcap header. Callers check `--force` first.
    pub fn create(path: &Path) -> Result<Self, TrafficError> {
        let file = File::create(path).map_err(|source| TrafficError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::new(BufWriter::with_capacity(1 << 20, file))
    }
}

impl<W: Write> CaptureWriter<W> {
    /// Write the pcap header to `out`.
    pub fn new(out: W) -> Result<Self, TrafficError> {
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ..PcapHeader::default()
        };
        Ok(Self {
            pcap: PcapWriter::with_header(out, header)?,
            frames: 0,
            bytes: 24,
            scratch: Vec::with_capacity(2048),
        })
    }

    /// Append one link-layer frame captured at `at`.
    pub fn write_frame(&mut self, at: SystemTime, frame: &[u8]) -> Result<(), TrafficError> {
        let ts = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        self.pcap.write_packet(&PcapPacket::new(ts, len, frame))?;
        self.frames += 1;
        self.bytes += 16 + frame.len() as u64;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Bytes written so far, headers included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Flush and hand back the underlying writer.
    pub fn finish(self) -> Result<W, TrafficError> {
        let mut out = self.pcap.into_writer();
        out.flush().map_err(|source| TrafficError::Io {
            path: "capture".into(),
            source,
        })?;
        Ok(out)
    }

    fn write_built(
        &mut self,
        at: SystemTime,
        build: impl FnOnce(&mut Vec<u8>) -> Result<(), TrafficError>,
    ) -> Result<(), TrafficError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let result = build(&mut scratch).and_then(|()| self.write_frame(at, &scratch));
        self.scratch = scratch;
        result
    }

    /// Append one UDP datagram from `src` to `dst` carrying `payload`.
    pub fn write_udp(
        &mut self,
        at: SystemTime,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<(), TrafficError> {
        self.write_built(at, |buf| {
            let builder = ip_step(src, dst)?.udp(src.port(), dst.port());
            builder
                .write(buf, payload)
                .map_err(|e| TrafficError::Build(e.to_string()))
        })
    }
}

/// Which way a payload travels in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client (the side that opened the connection) to the server.
    ToServer,
    /// From the server back to the client.
    ToClient,
}

/// One TCP conversation's state: its two ends and their next sequence numbers. It writes into a
/// [`CaptureWriter`] it is handed each time, so many conversations can share one file.
///
/// ```no_run
/// # use otgate::sim::traffic::{CaptureWriter, FlowWriter, Direction};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut pcap = CaptureWriter::create(std::path::Path::new("plc.pcap"))?;
/// let now = std::time::SystemTime::now();
/// let mut flow = FlowWriter::open(&mut pcap, "10.0.0.1:40000".parse()?, "10.0.0.2:502".parse()?, now)?;
/// flow.send(&mut pcap, Direction::ToServer, &[0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 1], now)?;
/// flow.close(&mut pcap, now)?;
/// pcap.finish()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FlowWriter {
    client: SocketAddr,
    server: SocketAddr,
    client_mac: [u8; 6],
    server_mac: [u8; 6],
    /// The client's next sequence number.
    client_next: u32,
    /// The server's next sequence number.
    server_next: u32,
}

impl FlowWriter {
    /// Start a conversation: write the SYN, SYN-ACK, ACK handshake at `at`.
    pub fn open<W: Write>(
        out: &mut CaptureWriter<W>,
        client: SocketAddr,
        server: SocketAddr,
        at: SystemTime,
    ) -> Result<Self, TrafficError> {
        if client.is_ipv4() != server.is_ipv4() {
            return Err(TrafficError::MixedFamilies { client, server });
        }
        let client_isn = initial_sequence(client, server);
        let server_isn = initial_sequence(server, client);
        let mut flow = Self {
            client,
            server,
            client_mac: mac_of(client.ip()),
            server_mac: mac_of(server.ip()),
            client_next: client_isn,
            server_next: server_isn,
        };
        flow.segment(out, Direction::ToServer, Flags::Syn, &[], at)?;
        flow.client_next = client_isn.wrapping_add(1);
        flow.segment(out, Direction::ToClient, Flags::SynAck, &[], at)?;
        flow.server_next = server_isn.wrapping_add(1);
        flow.segment(out, Direction::ToServer, Flags::Ack, &[], at)?;
        Ok(flow)
    }

    /// The client end.
    pub fn client(&self) -> SocketAddr {
        self.client
    }

    /// The server end.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Write `payload` travelling in `direction` at `at`, split into segments of at most
    /// [`MSS`] bytes, each acknowledging everything the other side sent.
    pub fn send<W: Write>(
        &mut self,
        out: &mut CaptureWriter<W>,
        direction: Direction,
        payload: &[u8],
        at: SystemTime,
    ) -> Result<(), TrafficError> {
        for chunk in payload.chunks(MSS) {
            self.segment(out, direction, Flags::PshAck, chunk, at)?;
            let next = match direction {
                Direction::ToServer => &mut self.client_next,
                Direction::ToClient => &mut self.server_next,
            };
            *next = next.wrapping_add(chunk.len() as u32);
        }
        Ok(())
    }

    /// End the conversation: FIN from the client, FIN-ACK from the server, final ACK.
    pub fn close<W: Write>(
        mut self,
        out: &mut CaptureWriter<W>,
        at: SystemTime,
    ) -> Result<(), TrafficError> {
        self.segment(out, Direction::ToServer, Flags::FinAck, &[], at)?;
        self.client_next = self.client_next.wrapping_add(1);
        self.segment(out, Direction::ToClient, Flags::FinAck, &[], at)?;
        self.server_next = self.server_next.wrapping_add(1);
        self.segment(out, Direction::ToServer, Flags::Ack, &[], at)
    }

    fn segment<W: Write>(
        &self,
        out: &mut CaptureWriter<W>,
        direction: Direction,
        flags: Flags,
        payload: &[u8],
        at: SystemTime,
    ) -> Result<(), TrafficError> {
        let (src, dst, src_mac, dst_mac, seq, ack) = match direction {
            Direction::ToServer => (
                self.client,
                self.server,
                self.client_mac,
                self.server_mac,
                self.client_next,
                self.server_next,
            ),
            Direction::ToClient => (
                self.server,
                self.client,
                self.server_mac,
                self.client_mac,
                self.server_next,
                self.client_next,
            ),
        };
        out.write_built(at, |buf| {
            let ip = ip_step_macs(src, dst, src_mac, dst_mac)?;
            let tcp = ip.tcp(src.port(), dst.port(), seq, 64240);
            let tcp = match flags {
                Flags::Syn => tcp.syn(),
                Flags::SynAck => tcp.syn().ack(ack),
                Flags::Ack => tcp.ack(ack),
                Flags::PshAck => tcp.psh().ack(ack),
                Flags::FinAck => tcp.fin().ack(ack),
            };
            tcp.write(buf, payload)
                .map_err(|e| TrafficError::Build(e.to_string()))
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Flags {
    Syn,
    SynAck,
    Ack,
    PshAck,
    FinAck,
}

fn ip_step(
    src: SocketAddr,
    dst: SocketAddr,
) -> Result<etherparse::PacketBuilderStep<etherparse::IpHeaders>, TrafficError> {
    ip_step_macs(src, dst, mac_of(src.ip()), mac_of(dst.ip()))
}

fn ip_step_macs(
    src: SocketAddr,
    dst: SocketAddr,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
) -> Result<etherparse::PacketBuilderStep<etherparse::IpHeaders>, TrafficError> {
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ok(eth.ipv4(s.octets(), d.octets(), 64)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ok(eth.ipv6(s.octets(), d.octets(), 64)),
        _ => Err(TrafficError::MixedFamilies {
            client: src,
            server: dst,
        }),
    }
}

/// A locally administered MAC address derived from an IP address (stable, distinct per host).
pub fn mac_of(ip: IpAddr) -> [u8; 6] {
    let tail = match ip {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    [0x02, 0x00, tail[0], tail[1], tail[2], tail[3]]
}

/// A deterministic initial sequence number per direction (FNV-1a over the endpoints), so
/// generated captures are reproducible and sequence numbers wrap at varied places.
fn initial_sequence(from: SocketAddr, to: SocketAddr) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    let text = format!("{from}>{to}");
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// How much a generated capture should hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// About this many bytes of file.
    Bytes(u64),
    /// About this many packets (open conversations are closed after, a few more).
    Packets(u64),
}

/// What [`generate`] writes.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// How much.
    pub target: Target,
    /// Masters (clients), 1..=250.
    pub masters: u8,
    /// Outstations (PLCs, RTUs), 1..=250 per master subnet.
    pub outstations: u8,
    /// Conversations open at once.
    pub concurrent: usize,
    /// Transactions per conversation before it is closed and another opened.
    pub transactions_per_flow: u32,
    /// Share of DNP3 conversations in percent (the rest is Modbus).
    pub dnp3_percent: u8,
    /// Seed of the deterministic generator (same seed, same capture).
    pub seed: u64,
    /// Capture time of the first packet.
    pub start: SystemTime,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            target: Target::Bytes(10 << 20),
            masters: 8,
            outstations: 64,
            concurrent: 64,
            transactions_per_flow: 2000,
            dnp3_percent: 10,
            seed: 7,
            // 2026-11-28T06:00:00Z.
            start: UNIX_EPOCH + Duration::from_secs(1_795_845_600),
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeneratorReport {
    /// Packets written.
    pub packets: u64,
    /// File bytes written.
    pub bytes: u64,
    /// Modbus conversations.
    pub modbus_flows: u64,
    /// DNP3 conversations.
    pub dnp3_flows: u64,
    /// Modbus PDUs (requests and responses).
    pub modbus_messages: u64,
    /// DNP3 application fragments (requests and responses).
    pub dnp3_messages: u64,
}

struct Conversation {
    flow: FlowWriter,
    dnp3: bool,
    transactions: u32,
    tid: u16,
    unit: u8,
    app_seq: u8,
    link_master: u16,
    link_outstation: u16,
}

/// Write a generated capture to `path` (the caller has checked `--force`).
pub fn generate(path: &Path, config: &GeneratorConfig) -> Result<GeneratorReport, TrafficError> {
    let out = CaptureWriter::create(path)?;
    let (report, _) = generate_into(out, config)?;
    Ok(report)
}

/// Write a generated capture into `out`; hands back the report and the writer.
pub fn generate_into<W: Write>(
    mut out: CaptureWriter<W>,
    config: &GeneratorConfig,
) -> Result<(GeneratorReport, W), TrafficError> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let mut report = GeneratorReport::default();
    let mut now = config.start;
    let tick = Duration::from_micros(50);
    let masters = config.masters.clamp(1, 250);
    let outstations = config.outstations.clamp(1, 250);
    let mut next_port: u16 = 30_000;
    let mut open = |out: &mut CaptureWriter<W>,
                    rng: &mut rand::rngs::StdRng,
                    report: &mut GeneratorReport,
                    now: SystemTime|
     -> Result<Conversation, TrafficError> {
        let m = rng.gen_range(0..masters);
        let o = rng.gen_range(0..outstations);
        let dnp3 = rng.gen_range(0..100u8) < config.dnp3_percent;
        next_port = if next_port >= 60_000 {
            30_000
        } else {
            next_port + 1
        };
        let client = SocketAddr::new(IpAddr::from([10, 10, 0, m + 1]), next_port);
        let server_port = if dnp3 { 20_000 } else { 502 };
        let server = SocketAddr::new(IpAddr::from([10, 20, m, o + 1]), server_port);
        if dnp3 {
            report.dnp3_flows += 1;
        } else {
            report.modbus_flows += 1;
        }
        Ok(Conversation {
            flow: FlowWriter::open(out, client, server, now)?,
            dnp3,
            transactions: 0,
            tid: rng.gen(),
            unit: 1 + o % 8,
            app_seq: 0,
            link_master: 1,
            link_outstation: 10 + u16::from(o),
        })
    };
    let mut active = Vec::with_capacity(config.concurrent.max(1));
    for _ in 0..config.concurrent.max(1) {
        active.push(open(&mut out, &mut rng, &mut report, now)?);
    }
    let done = |out: &CaptureWriter<W>, active: usize| match config.target {
        Target::Bytes(b) => out.bytes() >= b,
        Target::Packets(n) => out.frames() + 3 * active as u64 >= n,
    };
    let mut request = Vec::with_capacity(300);
    let mut response = Vec::with_capacity(300);
    while !done(&out, active.len()) {
        let i = rng.gen_range(0..active.len());
        let Some(c) = active.get_mut(i) else { continue };
        request.clear();
        response.clear();
        if c.dnp3 {
            dnp3_transaction(c, &mut rng, &mut request, &mut response);
            report.dnp3_messages += 2;
        } else {
            modbus_transaction(c, &mut rng, &mut request, &mut response);
            report.modbus_messages += 2;
        }
        now += tick;
        c.flow.send(&mut out, Direction::ToServer, &request, now)?;
        now += tick;
        c.flow.send(&mut out, Direction::ToClient, &response, now)?;
        c.transactions += 1;
        if c.transactions >= config.transactions_per_flow {
            let fresh = open(&mut out, &mut rng, &mut report, now)?;
            let old = std::mem::replace(c, fresh);
            old.flow.close(&mut out, now)?;
        }
    }
    for c in active {
        c.flow.close(&mut out, now)?;
    }
    report.packets = out.frames();
    report.bytes = out.bytes();
    Ok((report, out.finish()?))
}

fn mbap(buf: &mut Vec<u8>, tid: u16, unit: u8, pdu: &[u8]) {
    buf.extend_from_slice(&tid.to_be_bytes());
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&(pdu.len() as u16 + 1).to_be_bytes());
    buf.push(unit);
    buf.extend_from_slice(pdu);
}

fn modbus_transaction(
    c: &mut Conversation,
    rng: &mut impl rand::Rng,
    request: &mut Vec<u8>,
    response: &mut Vec<u8>,
) {
    c.tid = c.tid.wrapping_add(1);
    let start: u16 = rng.gen_range(0..100) * 10;
    let mut pdu = [0u8; 260];
    let mut rsp = [0u8; 260];
    let kind = rng.gen_range(0..100u8);
    let (req_len, rsp_len) = match kind {
        // Reads of holding or input registers dominate plant polling.
        0..=74 => {
            let fc = if kind < 60 { 3 } else { 4 };
            let qty: u16 = rng.gen_range(1..=20);
            pdu[..5].copy_from_slice(&[fc, (start >> 8) as u8, start as u8, 0, qty as u8]);
            rsp[0] = fc;
            rsp[1] = (qty * 2) as u8;
            for b in rsp.iter_mut().skip(2).take(usize::from(qty) * 2) {
                *b = rng.gen();
            }
            (5, 2 + usize::from(qty) * 2)
        }
        75..=84 => {
            let qty: u16 = rng.gen_range(1..=32);
            pdu[..5].copy_from_slice(&[1, (start >> 8) as u8, start as u8, 0, qty as u8]);
            let bytes = usize::from(qty).div_ceil(8);
            rsp[0] = 1;
            rsp[1] = bytes as u8;
            (5, 2 + bytes)
        }
        85..=91 => {
            let value: u16 = rng.gen();
            pdu[..5].copy_from_slice(&[
                6,
                (start >> 8) as u8,
                start as u8,
                (value >> 8) as u8,
                value as u8,
            ]);
            rsp[..5].copy_from_slice(&pdu[..5]);
            (5, 5)
        }
        92..=97 => {
            let qty: u16 = rng.gen_range(1..=4);
            pdu[..6].copy_from_slice(&[
                16,
                (start >> 8) as u8,
                start as u8,
                0,
                qty as u8,
                (qty * 2) as u8,
            ]);
            for b in pdu.iter_mut().skip(6).take(usize::from(qty) * 2) {
                *b = rng.gen();
            }
            rsp[..5].copy_from_slice(&pdu[..5]);
            (6 + usize::from(qty) * 2, 5)
        }
        _ => {
            // A read the device refuses: exception 02, illegal data address.
            pdu[..5].copy_from_slice(&[3, 0xFF, 0x00, 0, 10]);
            rsp[..2].copy_from_slice(&[0x83, 0x02]);
            (5, 2)
        }
    };
    mbap(
        request,
        c.tid,
        c.unit,
        pdu.get(..req_len).unwrap_or_default(),
    );
    mbap(
        response,
        c.tid,
        c.unit,
        rsp.get(..rsp_len).unwrap_or_default(),
    );
}

/// One DNP3 link frame (IEEE 1815 section 9.2.4) carrying `user` (at most 250 bytes).
pub fn dnp3_link_frame(out: &mut Vec<u8>, from_master: bool, dst: u16, src: u16, user: &[u8]) {
    let control = if from_master { 0xC4 } else { 0x44 };
    let len = 5 + user.len().min(250) as u8;
    let [d0, d1] = dst.to_le_bytes();
    let [s0, s1] = src.to_le_bytes();
    let header = [0x05, 0x64, len, control, d0, d1, s0, s1];
    out.extend_from_slice(&header);
    out.extend_from_slice(&crate::inspect::dnp3::crc(&header).to_le_bytes());
    for block in user.chunks(16).take(16) {
        out.extend_from_slice(block);
        out.extend_from_slice(&crate::inspect::dnp3::crc(block).to_le_bytes());
    }
}

fn dnp3_transaction(
    c: &mut Conversation,
    rng: &mut impl rand::Rng,
    request: &mut Vec<u8>,
    response: &mut Vec<u8>,
) {
    c.app_seq = (c.app_seq + 1) & 0x0F;
    let seq = c.app_seq;
    // Transport header FIR|FIN, then the application: READ class 0 (g60v1, qualifier 06).
    let read = [0xC0 | seq, 0xC0 | seq, 0x01, 60, 1, 0x06];
    dnp3_link_frame(request, true, c.link_outstation, c.link_master, &read);
    // RESPONSE with IIN and g30v2 (16-bit analog with flag), qualifier 00, points 0..n.
    let points: u8 = rng.gen_range(1..=8);
    let mut app = vec![
        0xC0 | seq,
        0xC0 | seq,
        0x81,
        0x00,
        0x00,
        30,
        2,
        0x00,
        0,
        points - 1,
    ];
    for _ in 0..points {
        app.push(0x01);
        app.push(rng.gen());
        app.push(rng.gen());
    }
    dnp3_link_frame(response, false, c.link_master, c.link_outstation, &app);
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{SlicedPacket, TransportSlice};
    use pcap_file::pcap::PcapReader;

    #[test]
    fn flow_writer_writes_handshake_payloads_and_close_with_correct_numbers() {
        let mut pcap = CaptureWriter::new(Vec::new()).unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let server: SocketAddr = "10.0.0.2:502".parse().unwrap();
        let mut flow = FlowWriter::open(&mut pcap, client, server, at).unwrap();
        flow.send(&mut pcap, Direction::ToServer, &[1u8; 12], at)
            .unwrap();
        flow.send(&mut pcap, Direction::ToClient, &[2u8; 3000], at)
            .unwrap();
        flow.close(&mut pcap, at).unwrap();
        let bytes = pcap.finish().unwrap();

        let mut reader = PcapReader::new(&bytes[..]).unwrap();
        let mut segments = Vec::new();
        while let Some(packet) = reader.next_packet() {
            let packet = packet.unwrap();
            let sliced = SlicedPacket::from_ethernet(&packet.data).unwrap();
            let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
                panic!("not tcp")
            };
            segments.push((
                tcp.source_port(),
                tcp.syn(),
                tcp.fin(),
                tcp.sequence_number(),
                tcp.acknowledgment_number(),
                tcp.payload().len(),
            ));
        }
        // SYN, SYN-ACK, ACK, request, 3 response segments (1460+1460+80), FIN, FIN, ACK.
        assert_eq!(segments.len(), 10);
        let client_isn = segments[0].3;
        let server_isn = segments[1].3;
        assert_eq!(segments[1].4, client_isn.wrapping_add(1));
        assert_eq!(segments[3].3, client_isn.wrapping_add(1));
        assert_eq!(segments[3].5, 12);
        assert_eq!(segments[4].3, server_isn.wrapping_add(1));
        assert_eq!(segments[4].4, client_isn.wrapping_add(13));
        assert_eq!(segments[5].3, server_isn.wrapping_add(1 + 1460));
        assert_eq!(segments[6].5, 80);
        assert!(segments[7].2 && segments[7].0 == 40000);
        assert_eq!(segments[7].3, client_isn.wrapping_add(13));
        assert_eq!(segments[8].4, client_isn.wrapping_add(14));
        assert_eq!(segments[9].4, server_isn.wrapping_add(3002));
    }

    #[test]
    fn generated_capture_is_valid_and_decodes_as_generated() {
        let config = GeneratorConfig {
            target: Target::Packets(4000),
            dnp3_percent: 20,
            ..Default::default()
        };
        let (report, bytes) =
            generate_into(CaptureWriter::new(Vec::new()).unwrap(), &config).unwrap();
        assert!(
            report.packets >= 4000 && report.packets < 4000 + 3 * 64 + 3,
            "{report:?}"
        );
        assert_eq!(report.bytes, bytes.len() as u64);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.pcap");
        std::fs::write(&path, &bytes).unwrap();
        let mut monitor =
            crate::inspect::monitor::Monitor::new(crate::inspect::alerts::Detector::new());
        crate::inspect::inspect_file(
            &path,
            &mut monitor,
            &mut crate::inspect::monitor::Discard,
            None,
        )
        .unwrap();
        let stats = monitor.stats();
        assert_eq!(stats.modbus_pdus, report.modbus_messages);
        assert_eq!(stats.dnp3_fragments, report.dnp3_messages);
        assert_eq!(stats.malformed, 0);
        assert_eq!(stats.skipped_bytes, 0);
        // Same seed, same bytes.
        let (_, again) = generate_into(CaptureWriter::new(Vec::new()).unwrap(), &config).unwrap();
        assert_eq!(bytes, again);
    }

    #[test]
    fn mixed_families_are_refused() {
        let mut pcap = CaptureWriter::new(Vec::new()).unwrap();
        let r = FlowWriter::open(
            &mut pcap,
            "10.0.0.1:1".parse().unwrap(),
            "[::1]:502".parse().unwrap(),
            UNIX_EPOCH,
        );
        assert!(matches!(r, Err(TrafficError::MixedFamilies { .. })));
    }
}
