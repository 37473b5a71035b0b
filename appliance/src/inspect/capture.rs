//! Capture input: reads pcap and pcapng files frame by frame and slices each frame down to its
//! IP endpoints and TCP/UDP payload.
//!
//! Link types: Ethernet (with 802.1Q / 802.1ad QinQ tags), Linux cooked capture (SLL and SLL2),
//! BSD NULL/loopback (DLT 0 and 108, either byte order), and raw IP (DLT 12/14/101, 228, 229).
//! IPv4 and IPv6 are sliced by `etherparse`. Fragmented IP packets are reported as such, not
//! reassembled.
//!
//! What it does not do: it never writes or transmits anything, and it keeps no state between
//! frames. Guarantees: slicing never panics on any bytes and does not allocate; a frame that
//! cannot be sliced yields a [`SliceError`] naming why.

use std::fs::File;
use std::io::{BufReader, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etherparse::{EtherType, InternetSlice, LinkSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;

/// The link layer of a capture's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkType {
    /// Ethernet II (DLT 1), VLAN tags allowed.
    Ethernet,
    /// BSD loopback: a 4-byte address family in the writer's byte order (DLT 0 and 108).
    Null,
    /// Linux cooked capture v1 (DLT 113), 16-byte header.
    LinuxSll,
    /// Linux cooked capture v2 (DLT 276), 20-byte header.
    LinuxSll2,
    /// Raw IPv4 or IPv6 without a link header (DLT 12, 14, 101, 228, 229).
    RawIp,
}

impl LinkType {
    /// The link type of a pcap data link, or `None` when inspection does not read it.
    pub fn from_datalink(link: DataLink) -> Option<Self> {
        match link {
            DataLink::ETHERNET => Some(LinkType::Ethernet),
            DataLink::NULL | DataLink::LOOP => Some(LinkType::Null),
            DataLink::LINUX_SLL => Some(LinkType::LinuxSll),
            DataLink::LINUX_SLL2 => Some(LinkType::LinuxSll2),
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Some(LinkType::RawIp),
            DataLink::Unknown(12) | DataLink::Unknown(14) => Some(LinkType::RawIp),
            _ => None,
        }
    }
}

/// Why a capture file cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is neither pcap nor pcapng, or its structure is broken at some point.
    #[error("{path}: not a readable pcap/pcapng file (after {frames} frames): {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Frames read before the fault.
        frames: u64,
        /// What the pcap reader said.
        source: pcap_file::PcapError,
    },
    /// The capture's link type is not one inspection reads.
    #[error("{path}: link type {link:?} is not supported (Ethernet, NULL/loopback, Linux SLL/SLL2 and raw IP are)")]
    UnsupportedLink {
        /// The file.
        path: PathBuf,
        /// The link type found.
        link: DataLink,
    },
}

/// One captured frame: when, on which link type, and its bytes as captured.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Capture time since the Unix epoch.
    pub ts: Duration,
    /// The link type of `data`.
    pub link: LinkType,
    /// The frame's bytes.
    pub data: &'a [u8],
}

enum Inner {
    Pcap(PcapReader<CountingReader>),
    PcapNg(PcapNgReader<CountingReader>),
}

/// A pcap or pcapng file read one frame at a time (the format is detected by its magic number).
pub struct CaptureFile {
    path: PathBuf,
    inner: Inner,
    /// For pcapng: the link type of each interface described so far.
    interfaces: Vec<Option<LinkType>>,
    pcap_link: Option<LinkType>,
    frames: u64,
    read: Arc<AtomicU64>,
    size: u64,
}

/// A reader that counts the bytes it has handed out, for progress reports.
struct CountingReader {
    inner: BufReader<File>,
    read: Arc<AtomicU64>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl CaptureFile {
    /// Open `path` and read its file header.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let io = |source| CaptureError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let mut magic = [0u8; 4];
        file.read_exact(&mut magic).map_err(io)?;
        drop(file);
        let file = File::open(path).map_err(io)?;
        let read = Arc::new(AtomicU64::new(0));
        let reader = CountingReader {
            inner: BufReader::with_capacity(1 << 20, file),
            read: read.clone(),
        };
        let format = |source| CaptureError::Format {
            path: path.to_path_buf(),
            frames: 0,
            source,
        };
        let (inner, pcap_link) = if magic == [0x0A, 0x0D, 0x0D, 0x0A] {
            (
                Inner::PcapNg(PcapNgReader::new(reader).map_err(format)?),
                None,
            )
        } else {
            let reader = PcapReader::new(reader).map_err(format)?;
            let datalink = reader.header().datalink;
            let link = LinkType::from_datalink(datalink).ok_or(CaptureError::UnsupportedLink {
                path: path.to_path_buf(),
                link: datalink,
            })?;
            (Inner::Pcap(reader), Some(link))
        };
        Ok(Self {
            path: path.to_path_buf(),
            inner,
            interfaces: Vec::new(),
            pcap_link,
            frames: 0,
            read,
            size,
        })
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// How many bytes of the file have been read so far (for progress).
    pub fn position(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// A shared counter of the bytes read so far, readable while frames are being handed out.
    pub fn position_handle(&self) -> Arc<AtomicU64> {
        self.read.clone()
    }

    /// Frames returned so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Call `each` for every frame in the file, in order. pcapng packets on interfaces of a link
    /// type inspection does not read are skipped and counted in the returned number.
    pub fn for_each_frame(
        &mut self,
        mut each: impl FnMut(&Frame<'_>),
    ) -> Result<u64, CaptureError> {
        let mut skipped = 0u64;
        loop {
            match &mut self.inner {
                Inner::Pcap(reader) => {
                    let Some(next) = reader.next_packet() else {
                        return Ok(skipped);
                    };
                    let packet = next.map_err(|source| CaptureError::Format {
                        path: self.path.clone(),
                        frames: self.frames,
                        source,
                    })?;
                    let Some(link) = self.pcap_link else {
                        return Ok(skipped);
                    };
                    self.frames += 1;
                    each(&Frame {
                        ts: packet.timestamp,
                        link,
                        data: &packet.data,
                    });
                }
                Inner::PcapNg(reader) => {
                    let Some(next) = reader.next_block() else {
                        return Ok(skipped);
                    };
                    let block = next.map_err(|source| CaptureError::Format {
                        path: self.path.clone(),
                        frames: self.frames,
                        source,
                    })?;
                    match block {
                        Block::SectionHeader(_) => self.interfaces.clear(),
                        Block::InterfaceDescription(idb) => {
                            self.interfaces.push(LinkType::from_datalink(idb.linktype));
                        }
                        Block::EnhancedPacket(epb) => {
                            let link = usize::try_from(epb.interface_id)
                                .ok()
                                .and_then(|i| self.interfaces.get(i).copied().flatten());
                            match link {
                                Some(link) => {
                                    self.frames += 1;
                                    each(&Frame {
                                        ts: epb.timestamp,
                                        link,
                                        data: &epb.data,
                                    });
                                }
                                None => skipped += 1,
                            }
                        }
                        Block::SimplePacket(spb) => {
                            match self.interfaces.first().copied().flatten() {
                                Some(link) => {
                                    self.frames += 1;
                                    each(&Frame {
                                        ts: Duration::ZERO,
                                        link,
                                        data: &spb.data,
                                    });
                                }
                                None => skipped += 1,
                            }
                        }
                        Block::Packet(pb) => {
                            let link = self.interfaces.get(usize::from(pb.interface_id));
                            match link.copied().flatten() {
                                Some(link) => {
                                    self.frames += 1;
                                    each(&Frame {
                                        ts: Duration::from_micros(pb.timestamp),
                                        link,
                                        data: &pb.data,
                                    });
                                }
                                None => skipped += 1,
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// The transport part of a sliced frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport<'a> {
    /// A TCP segment.
    Tcp(TcpSegment<'a>),
    /// A UDP datagram.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// The datagram's payload.
        payload: &'a [u8],
    },
}

/// The parts of a TCP segment that reassembly needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// SYN flag.
    pub syn: bool,
    /// FIN flag.
    pub fin: bool,
    /// RST flag.
    pub rst: bool,
    /// The segment's payload.
    pub payload: &'a [u8],
}

/// A frame sliced down to what inspection reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Source MAC address, when the link layer carries one.
    pub src_mac: Option<[u8; 6]>,
    /// Destination MAC address, when the link layer carries one.
    pub dst_mac: Option<[u8; 6]>,
    /// Outermost VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// Source IP address.
    pub src: IpAddr,
    /// Destination IP address.
    pub dst: IpAddr,
    /// TCP or UDP.
    pub transport: Transport<'a>,
}

/// Why a frame was not sliced down to TCP or UDP over IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SliceError {
    /// Not IP (ARP, LLDP, STP, ...) or an address family NULL/SLL does not name.
    NotIp,
    /// IP, but neither TCP nor UDP (ICMP, ...).
    NotTcpOrUdp,
    /// A fragment of a fragmented IP packet (not reassembled).
    Fragment,
    /// The headers are truncated or inconsistent.
    Malformed,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;

/// Slice one frame. Never panics; allocates nothing.
pub fn slice(link: LinkType, data: &[u8]) -> Result<Packet<'_>, SliceError> {
    let sliced = match link {
        LinkType::Ethernet => SlicedPacket::from_ethernet(data),
        LinkType::LinuxSll => SlicedPacket::from_linux_sll(data),
        LinkType::LinuxSll2 => {
            let (header, rest) = data
                .split_first_chunk::<20>()
                .ok_or(SliceError::Malformed)?;
            let [p0, p1, ..] = *header;
            SlicedPacket::from_ether_type(EtherType(u16::from_be_bytes([p0, p1])), rest)
        }
        LinkType::Null => {
            let (family, rest) = data.split_first_chunk::<4>().ok_or(SliceError::Malformed)?;
            // The family is in the writer's byte order: try both. 2 is AF_INET everywhere;
            // 24, 28 and 30 are AF_INET6 on the BSDs and macOS.
            let le = u32::from_le_bytes(*family);
            let be = u32::from_be_bytes(*family);
            let ether_type = match (le, be) {
                (2, _) | (_, 2) => ETHERTYPE_IPV4,
                (24 | 28 | 30, _) | (_, 24 | 28 | 30) => ETHERTYPE_IPV6,
                _ => return Err(SliceError::NotIp),
            };
            SlicedPacket::from_ether_type(EtherType(ether_type), rest)
        }
        LinkType::RawIp => SlicedPacket::from_ip(data),
    }
    .map_err(|_| SliceError::Malformed)?;

    let (src_mac, dst_mac) = match &sliced.link {
        Some(LinkSlice::Ethernet2(eth)) => (Some(eth.source()), Some(eth.destination())),
        _ => (None, None),
    };
    let vlan = match &sliced.vlan {
        Some(etherparse::VlanSlice::SingleVlan(v)) => Some(v.vlan_identifier().value()),
        Some(etherparse::VlanSlice::DoubleVlan(v)) => Some(v.outer().vlan_identifier().value()),
        None => None,
    };
    let (src, dst, fragmented) = match &sliced.net {
        Some(InternetSlice::Ipv4(v4)) => (
            IpAddr::V4(v4.header().source_addr()),
            IpAddr::V4(v4.header().destination_addr()),
            v4.payload().fragmented,
        ),
        Some(InternetSlice::Ipv6(v6)) => (
            IpAddr::V6(v6.header().source_addr()),
            IpAddr::V6(v6.header().destination_addr()),
            v6.payload().fragmented,
        ),
        None => return Err(SliceError::NotIp),
    };
    if fragmented {
        return Err(SliceError::Fragment);
    }
    let transport = match sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => Transport::Tcp(TcpSegment {
            src_port: tcp.source_port(),
            dst_port: tcp.destination_port(),
            seq: tcp.sequence_number(),
            syn: tcp.syn(),
            fin: tcp.fin(),
            rst: tcp.rst(),
            payload: tcp.payload(),
        }),
        Some(TransportSlice::Udp(udp)) => Transport::Udp {
            src_port: udp.source_port(),
            dst_port: udp.destination_port(),
            payload: udp.payload(),
        },
        _ => return Err(SliceError::NotTcpOrUdp),
    };
    Ok(Packet {
        src_mac,
        dst_mac,
        vlan,
        src,
        dst,
        transport,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp_frame_ipv4() -> Vec<u8> {
        let mut buf = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 502, 1000, 1024)
            .psh()
            .ack(5)
            .write(&mut buf, b"hello")
            .unwrap();
        buf
    }

    #[test]
    fn slices_ethernet_ipv4_tcp() {
        let frame = tcp_frame_ipv4();
        let p = slice(LinkType::Ethernet, &frame).unwrap();
        assert_eq!(p.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.src_mac, Some([2, 0, 0, 0, 0, 1]));
        let Transport::Tcp(t) = p.transport else {
            panic!()
        };
        assert_eq!(
            (t.src_port, t.dst_port, t.seq, t.payload),
            (40000, 502, 1000, &b"hello"[..])
        );
    }

    #[test]
    fn slices_qinq_ipv6_udp() {
        let mut buf = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .double_vlan(
                etherparse::VlanId::try_new(100).unwrap(),
                etherparse::VlanId::try_new(200).unwrap(),
            )
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(20000, 20000)
            .write(&mut buf, &[0x05, 0x64])
            .unwrap();
        let p = slice(LinkType::Ethernet, &buf).unwrap();
        assert_eq!(p.vlan, Some(100));
        assert!(matches!(
            p.transport,
            Transport::Udp {
                src_port: 20000,
                payload: [5, 0x64],
                ..
            }
        ));
    }

    #[test]
    fn slices_null_sll2_and_raw() {
        let eth = tcp_frame_ipv4();
        let ip = &eth[14..];
        let mut null_le = vec![2, 0, 0, 0];
        null_le.extend_from_slice(ip);
        let mut null_be = vec![0, 0, 0, 2];
        null_be.extend_from_slice(ip);
        let mut sll2 = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
        ];
        sll2.extend_from_slice(ip);
        for (link, data) in [
            (LinkType::Null, &null_le[..]),
            (LinkType::Null, &null_be[..]),
            (LinkType::LinuxSll2, &sll2[..]),
            (LinkType::RawIp, ip),
        ] {
            let p = slice(link, data).unwrap();
            assert_eq!(p.dst, "10.0.0.2".parse::<IpAddr>().unwrap(), "{link:?}");
            assert_eq!(p.src_mac, None);
        }
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let frame = tcp_frame_ipv4();
        for cut in 0..frame.len() {
            let _ = slice(LinkType::Ethernet, &frame[..cut]);
            let _ = slice(LinkType::Null, &frame[..cut]);
            let _ = slice(LinkType::LinuxSll2, &frame[..cut]);
        }
        assert_eq!(
            slice(LinkType::Null, &[9, 0, 0, 0, 1]),
            Err(SliceError::NotIp)
        );
    }

    #[test]
    fn pcapng_files_with_two_interfaces_of_different_link_types_are_read() {
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
        use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
        use pcap_file::pcapng::PcapNgWriter;
        let eth = tcp_frame_ipv4();
        let mut null = vec![2, 0, 0, 0];
        null.extend_from_slice(&eth[14..]);
        let mut writer = PcapNgWriter::new(Vec::new()).unwrap();
        for link in [DataLink::ETHERNET, DataLink::NULL, DataLink::Unknown(147)] {
            writer
                .write_pcapng_block(InterfaceDescriptionBlock {
                    linktype: link,
                    snaplen: 65535,
                    options: vec![],
                })
                .unwrap();
        }
        for (interface_id, data) in [(0u32, &eth), (1, &null), (2, &eth), (0, &eth)] {
            writer
                .write_pcapng_block(EnhancedPacketBlock {
                    interface_id,
                    timestamp: Duration::from_secs(1_800_000_000),
                    original_len: data.len() as u32,
                    data: std::borrow::Cow::Borrowed(data),
                    options: vec![],
                })
                .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("two.pcapng");
        std::fs::write(&path, writer.into_inner()).unwrap();
        let mut file = CaptureFile::open(&path).unwrap();
        let mut seen = Vec::new();
        let skipped = file
            .for_each_frame(|f| seen.push((f.link, slice(f.link, f.data).unwrap().dst)))
            .unwrap();
        assert_eq!(
            skipped, 1,
            "the frame on the unsupported interface is skipped and counted"
        );
        let dst: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            seen,
            [
                (LinkType::Ethernet, dst),
                (LinkType::Null, dst),
                (LinkType::Ethernet, dst)
            ]
        );
    }

    #[test]
    fn files_that_are_not_captures_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not.pcap");
        std::fs::write(&path, b"this is not a capture file at all").unwrap();
        let err = CaptureFile::open(&path).err().unwrap().to_string();
        assert!(err.contains("not.pcap"), "{err}");
        let missing = CaptureFile::open(&dir.path().join("missing.pcap"))
            .err()
            .unwrap();
        assert!(matches!(missing, CaptureError::Io { .. }));
    }

    proptest::proptest! {
        #[test]
        fn slicing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            for link in [LinkType::Ethernet, LinkType::Null, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp] {
                let _ = slice(link, &bytes);
            }
        }
    }
}
