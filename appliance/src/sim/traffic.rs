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
