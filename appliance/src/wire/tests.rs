//! Tests across the wire decoders: real captures from `/work/shared/pcaps` (every frame decodes
//! or yields an error, never a panic; well-formed frames emit back to the same bytes) and
//! property tests (emit-then-parse round trips; arbitrary and mutated bytes never panic).

use super::modbus::{self, Adu, FrameStatus, FunctionCode, Request, Response};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

/// Where the shared third-party captures live.
const PCAPS: &str = "/work/shared/pcaps";

/// One transport payload from a capture.
pub(crate) struct Payload {
    pub src_port: u16,
    pub dst_port: u16,
    pub udp: bool,
    pub bytes: Vec<u8>,
}

/// The `.pcap` files directly under `dir` (sorted); empty when the folder is absent.
pub(crate) fn pcap_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(PCAPS).join(dir))
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "pcap"));
    files.sort();
    files
}

/// Per-packet TCP and UDP payloads (no stream reassembly: good enough for seeding), from
/// Ethernet (DLT 1), NULL/loopback (DLT 0) and raw IP (DLT 101) captures.
pub(crate) fn payloads(path: &Path) -> Vec<Payload> {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(file).unwrap();
    let datalink = u32::from(reader.header().datalink);
    let mut out = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let Ok(packet) = packet else { break };
        let data: &[u8] = &packet.data;
        let sliced = match datalink {
            1 => etherparse::SlicedPacket::from_ethernet(data),
            0 if data.len() > 4 => etherparse::SlicedPacket::from_ip(&data[4..]),
            101 => etherparse::SlicedPacket::from_ip(data),
            _ => continue,
        };
        let Ok(sliced) = sliced else { continue };
        match sliced.transport {
            Some(etherparse::TransportSlice::Tcp(tcp)) if !tcp.payload().is_empty() => {
                out.push(Payload {
                    src_port: tcp.source_port(),
                    dst_port: tcp.destination_port(),
                    udp: false,
                    bytes: tcp.payload().to_vec(),
                })
            }
            Some(etherparse::TransportSlice::Udp(udp)) if !udp.payload().is_empty() => {
                out.push(Payload {
                    src_port: udp.source_port(),
                    dst_port: udp.destination_port(),
                    udp: true,
                    bytes: udp.payload().to_vec(),
                })
            }
            _ => {}
        }
    }
    out
}

/// Complete Modbus ADUs cut from each payload with `frame_len`, with whether they came from the
/// server (source port 502).
pub(crate) fn modbus_frames() -> Vec<(bool, Vec<u8>)> {
    let mut frames = Vec::new();
    for file in pcap_files("modbus") {
        for payload in payloads(&file) {
            if payload.udp || (payload.src_port != 502 && payload.dst_port != 502) {
                continue;
            }
            let mut rest: &[u8] = &payload.bytes;
            while let FrameStatus::Complete(n) = modbus::frame_len(rest) {
                frames.push((payload.src_port == 502, rest[..n].to_vec()));
                rest = &rest[n..];
            }
        }
    }
    frames
}

/// Decodes one frame strictly; on success checks that emit gives back the same bytes.
/// Returns whether it decoded.
fn decode_modbus(from_server: bool, frame: &[u8]) -> bool {
    let _ = Adu::new_lenient(frame);
    let Ok(adu) = Adu::new_checked(frame) else {
        return false;
    };
    let mut buf = [0u8; modbus::MAX_ADU_LEN];
    if from_server {
        let Ok(response) = Response::parse(adu.function().base(), adu.pdu()) else {
            return false;
        };
        let n = response.emit(&mut buf).unwrap();
        assert_eq!(&buf[..n], adu.pdu(), "response {response:?}");
        assert_eq!(response.buffer_len(), n);
    } else {
        let Ok(request) = Request::parse(adu.pdu()) else {
            return false;
        };
        let n = request
            .emit_adu(adu.transaction_id(), adu.unit_id(), &mut buf)
            .unwrap();
        assert_eq!(&buf[..n], frame, "request {request:?}");
        let _ = request.ops(adu.unit_id());
    }
    true
}

#[test]
fn modbus_captures_decode_or_error_and_round_trip() {
    let files = pcap_files("modbus");
    if files.is_empty() {
        eprintln!("no captures under {PCAPS}/modbus; skipping");
        return;
    }
    let mut decoded = 0usize;
    let mut refused = 0usize;
    let mut functions = std::collections::BTreeSet::new();
    for (from_server, frame) in modbus_frames() {
        if decode_modbus(from_server, &frame) {
            decoded += 1;
            if let Ok(adu) = Adu::new_checked(&frame) {
                functions.insert(adu.function().base().0);
            }
        } else {
            refused += 1;
        }
    }
    eprintln!(
        "modbus captures: {decoded} frames decoded, {refused} refused, functions {functions:?}"
    );
    // The plant captures are mostly well-formed; the sweep and fuzz files supply the refusals.
    assert!(decoded > 20_000, "decoded only {decoded}");
    assert!(
        refused > 0,
        "the fuzz and sweep captures should yield some errors"
    );
    for fc in [1, 2, 3, 4, 5, 6, 8, 15, 16, 17, 43] {
        assert!(
            functions.contains(&fc),
            "no decoded frame with function {fc}"
        );
    }
}

/// A valid request of each kind, built from arbitrary numbers (quantities clamped into range,
/// values sized to match).
fn build_request(kind: u8, a: u16, b: u16, c: u16, d: u16, data: &[u8]) -> Request<'_> {
    let clamp = |q: u16, max: u16| q % max + 1;
    let fit =
        |start: u16, q: u16| start.min(u16::try_from(0x1_0000 - u32::from(q)).unwrap_or(u16::MAX));
    let take = |n: usize| &data[..n.min(data.len())];
    match kind % 20 {
        0 => {
            let q = clamp(b, 2000);
            Request::ReadCoils {
                start: fit(a, q),
                quantity: q,
            }
        }
        1 => {
            let q = clamp(b, 2000);
            Request::ReadDiscreteInputs {
                start: fit(a, q),
                quantity: q,
            }
        }
        2 => {
            let q = clamp(b, 125);
            Request::ReadHoldingRegisters {
                start: fit(a, q),
                quantity: q,
            }
        }
        3 => {
            let q = clamp(b, 125);
            Request::ReadInputRegisters {
                start: fit(a, q),
                quantity: q,
            }
        }
        4 => Request::WriteSingleCoil {
            address: a,
            on: b % 2 == 0,
        },
        5 => Request::WriteSingleRegister {
            address: a,
            value: b,
        },
        6 => Request::ReadExceptionStatus,
        7 => Request::Diagnostics {
            sub_function: b,
            data: take(usize::from(c % 200)),
        },
        8 => Request::GetCommEventCounter,
        9 => Request::GetCommEventLog,
        10 => {
            let q = clamp(b, 1968)
                .min(u16::try_from(data.len() * 8).unwrap_or(u16::MAX))
                .max(1);
            let values = take(usize::from(q).div_ceil(8));
            let q = q.min(u16::try_from(values.len() * 8).unwrap_or(0)).max(1);
            let values = &values[..usize::from(q).div_ceil(8)];
            Request::WriteMultipleCoils {
                start: fit(a, q),
                quantity: q,
                values,
            }
        }
        11 => {
            let q = clamp(b, 123)
                .min(u16::try_from(data.len() / 2).unwrap_or(0))
                .max(1);
            Request::WriteMultipleRegisters {
                start: fit(a, q),
                quantity: q,
                values: take(usize::from(q) * 2),
            }
        }
        12 => Request::ReportServerId,
        13 => Request::MaskWriteRegister {
            address: a,
            and_mask: b,
            or_mask: c,
        },
        14 => {
            let rq = clamp(b, 125);
            let wq = clamp(d, 121)
                .min(u16::try_from(data.len() / 2).unwrap_or(0))
                .max(1);
            Request::ReadWriteMultipleRegisters {
                read_start: fit(a, rq),
                read_quantity: rq,
                write_start: fit(c, wq),
                write_quantity: wq,
                values: take(usize::from(wq) * 2),
            }
        }
        15 => Request::ReadFifoQueue { address: a },
        16 => Request::ReadDeviceIdentification {
            read_code: (b % 4) as u8 + 1,
            object_id: (c % 256) as u8,
        },
        17 => Request::EncapsulatedInterface {
            mei_type: 0x0D,
            data: take(usize::from(c % 200)),
        },
        18 => {
            // A vendor code: anything that is not public, not 0, no exception bit.
            let function = [0x41, 0x42, 0x5A, 0x64, 0x6E, 0x7F][usize::from(a % 6)];
            Request::Other {
                function: FunctionCode(function),
                data: take(usize::from(c % 200)),
            }
        }
        _ => Request::ReadFifoQueue { address: b },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn modbus_request_emit_then_parse(
        kind in any::<u8>(), a in any::<u16>(), b in any::<u16>(), c in any::<u16>(), d in any::<u16>(),
        data in prop::collection::vec(any::<u8>(), 2..=246),
        tid in any::<u16>(), unit in any::<u8>(),
    ) {
        let request = build_request(kind, a, b, c, d, &data);
        let mut buf = [0u8; modbus::MAX_ADU_LEN];
        let n = request.emit_adu(tid, unit, &mut buf).unwrap();
        prop_assert_eq!(modbus::frame_len(&buf[..n]), FrameStatus::Complete(n));
        let adu = Adu::new_checked(&buf[..n]).unwrap();
        prop_assert_eq!((adu.transaction_id(), adu.unit_id()), (tid, unit));
        prop_assert_eq!(Request::parse(adu.pdu()), Ok(request));
        let ops = request.ops(unit);
        prop_assert!(!ops.is_empty());
    }

    #[test]
    fn modbus_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        match modbus::frame_len(&bytes) {
            FrameStatus::Complete(n) => prop_assert!((9..=modbus::MAX_ADU_LEN).contains(&n) && n <= bytes.len()),
            FrameStatus::NeedMore => prop_assert!(bytes.len() < modbus::MAX_ADU_LEN),
            FrameStatus::Invalid(_) => {}
        }
        let _ = Adu::new_lenient(&bytes);
        if let Ok(adu) = Adu::new_checked(&bytes) {
            prop_assert!(decode_modbus(false, &bytes) || Request::parse(adu.pdu()).is_err());
        }
        // Raw PDUs, as request and as response to any function.
        if let Ok(request) = Request::parse(&bytes) {
            let mut buf = vec![0u8; request.buffer_len()];
            prop_assert_eq!(request.emit(&mut buf), Ok(bytes.len()));
            prop_assert_eq!(&buf, &bytes);
            let _ = request.ops(1);
        }
        if let Some(&first) = bytes.first() {
            if let Ok(response) = Response::parse(FunctionCode(first & 0x7F), &bytes) {
                let mut buf = vec![0u8; response.buffer_len()];
                prop_assert_eq!(response.emit(&mut buf), Ok(bytes.len()));
                prop_assert_eq!(&buf, &bytes);
            }
        }
    }

    #[test]
    fn modbus_mutated_capture_frames(
        index in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let frames = seed_frames();
        let (from_server, frame) = index.get(frames);
        let mut frame = frame.clone();
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] ^= byte;
        }
        frame.truncate(cut.index(frame.len() + 1).max(1));
        // Any outcome but a panic; a decoded frame emits back to itself (checked inside).
        let _ = decode_modbus(*from_server, &frame);
        let _ = modbus::frame_len(&frame);
    }
}

/// The capture frames, read once.
fn seed_frames() -> &'static Vec<(bool, Vec<u8>)> {
    static FRAMES: std::sync::OnceLock<Vec<(bool, Vec<u8>)>> = std::sync::OnceLock::new();
    FRAMES.get_or_init(|| {
        let mut frames = modbus_frames();
        // Synthetic frames too, so the property holds its ground without the captures.
        frames.extend([
            (
                false,
                vec![0, 1, 0, 0, 0, 6, 1, 0x03, 0x00, 0x64, 0x00, 0x0A],
            ),
            (
                false,
                vec![
                    0, 2, 0, 0, 0, 11, 1, 0x10, 0x00, 0x64, 0x00, 0x02, 0x04, 0, 1, 0, 2,
                ],
            ),
            (
                true,
                vec![0, 1, 0, 0, 0, 7, 1, 0x03, 0x04, 0x00, 0x01, 0x00, 0x02],
            ),
            (true, vec![0, 2, 0, 0, 0, 3, 1, 0x90, 0x02]),
        ]);
        // Keep one of each distinct (direction, function, length) shape: enough variety, quick.
        let mut seen = std::collections::HashSet::new();
        frames.retain(|(s, f)| seen.insert((*s, f.get(7).copied(), f.len())));
        frames
    })
}

/// Per-file DNP3 counts from decoding a capture's payloads.
#[derive(Debug, Default)]
struct Dnp3Counts {
    link_frames: usize,
    bad_crc_frames: usize,
    fragments: usize,
    fragment_errors: usize,
    headers: usize,
    walk_stops: usize,
}

/// Decodes every DNP3 payload of a capture: TCP payloads concatenated per direction (no
/// retransmission handling; good enough for these captures), UDP datagrams one by one.
fn decode_dnp3_capture(path: &Path) -> Dnp3Counts {
    use super::dnp3::{app, link, transport};
    use std::collections::HashMap;
    let mut counts = Dnp3Counts::default();
    let mut streams: HashMap<(u16, u16), Vec<u8>> = HashMap::new();
    let mut reassemblers: HashMap<(u16, u16, u16, u16), transport::Reassembler> = HashMap::new();
    for payload in payloads(path) {
        let key = (payload.src_port, payload.dst_port);
        let buffer = streams.entry(key).or_default();
        if payload.udp {
            buffer.clear();
        }
        buffer.extend_from_slice(&payload.bytes);
        let mut consumed = 0;
        loop {
            let rest = &buffer[consumed..];
            match link::frame_len(rest) {
                link::FrameStatus::Complete(n) => {
                    let bytes = &rest[..n];
                    consumed += n;
                    let (frame, crcs) = link::Frame::new_lenient(bytes).unwrap();
                    counts.link_frames += 1;
                    if !crcs.is_clean() {
                        counts.bad_crc_frames += 1;
                        continue;
                    }
                    let mut out = [0u8; link::MAX_USER_DATA];
                    let user = frame.payload(&mut out).unwrap();
                    // The emitted frame equals the captured one.
                    let mut emitted = [0u8; link::MAX_FRAME_LEN];
                    let len = frame.header().emit(user, &mut emitted).unwrap();
                    assert_eq!(&emitted[..len], bytes);
                    if !frame.control().carries_user_data() {
                        continue;
                    }
                    let Ok(segment) = transport::Segment::parse(user) else {
                        continue;
                    };
                    let pair = (key.0, key.1, frame.source(), frame.destination());
                    let r = reassemblers.entry(pair).or_default();
                    if let Ok(transport::Reassembly::Complete(fragment)) = r.push(segment) {
                        match app::Fragment::parse(fragment) {
                            Ok(f) => {
                                counts.fragments += 1;
                                for header in f.object_headers() {
                                    match header {
                                        Ok(_) => counts.headers += 1,
                                        Err(_) => counts.walk_stops += 1,
                                    }
                                }
                                super::fuzzing::dnp3_app(fragment);
                            }
                            Err(_) => counts.fragment_errors += 1,
                        }
                    }
                }
                link::FrameStatus::NeedMore => break,
                link::FrameStatus::Invalid(_) => {
                    consumed += link::find_start(rest.get(1..).unwrap_or_default())
                        .map_or(rest.len(), |i| i + 1);
                }
            }
            if consumed >= buffer.len() {
                break;
            }
        }
        buffer.drain(..consumed.min(buffer.len()));
    }
    counts
}

/// tshark's DNP3 application fragment count per file, from `counts.psv`.
fn tshark_dnp3_fragments() -> std::collections::HashMap<String, usize> {
    let text = std::fs::read_to_string(Path::new(PCAPS).join("counts.psv")).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('|').collect();
            Some((fields.first()?.to_string(), fields.get(9)?.parse().ok()?))
        })
        .collect()
}

#[test]
fn dnp3_captures_decode_in_layers() {
    let mut files = pcap_files("dnp3");
    files.extend(pcap_files("dnp3/opendnp3_conformance"));
    if files.is_empty() {
        eprintln!("no captures under {PCAPS}/dnp3; skipping");
        return;
    }
    let oracle = tshark_dnp3_fragments();
    let (mut total, mut agree, mut compared) = (Dnp3Counts::default(), 0, 0);
    for file in &files {
        let counts = decode_dnp3_capture(file);
        let name = file
            .strip_prefix(PCAPS)
            .unwrap()
            .to_string_lossy()
            .trim_start_matches('/')
            .to_string();
        if let Some(&want) = oracle.get(&name) {
            compared += 1;
            if want == counts.fragments {
                agree += 1;
            } else {
                eprintln!(
                    "{name}: {} fragments, tshark {want} ({counts:?})",
                    counts.fragments
                );
            }
        }
        total.link_frames += counts.link_frames;
        total.bad_crc_frames += counts.bad_crc_frames;
        total.fragments += counts.fragments;
        total.fragment_errors += counts.fragment_errors;
        total.headers += counts.headers;
        total.walk_stops += counts.walk_stops;
    }
    eprintln!("dnp3 captures: {} files, {total:?}; fragment counts agree with tshark on {agree}/{compared}", files.len());
    assert!(total.fragments > 500, "{total:?}");
    assert!(total.headers > total.fragments / 2, "{total:?}");
    assert!(
        agree * 10 >= compared * 8,
        "fragment counts agree with tshark on only {agree}/{compared}"
    );
}

#[test]
fn fuzz_entry_points_accept_capture_payloads() {
    for dir in ["modbus", "dnp3"] {
        for file in pcap_files(dir) {
            for payload in payloads(&file).iter().take(2000) {
                super::fuzzing::modbus_adu(&payload.bytes);
                super::fuzzing::modbus_stream(&payload.bytes);
                super::fuzzing::dnp3_link(&payload.bytes);
                super::fuzzing::dnp3_app(&payload.bytes);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn dnp3_link_emit_then_parse(
        control in any::<u8>(), destination in any::<u16>(), source in any::<u16>(),
        user in prop::collection::vec(any::<u8>(), 0..=250),
    ) {
        use super::dnp3::link;
        let header = link::Header { control: link::Control(control), destination, source };
        let mut buf = [0u8; link::MAX_FRAME_LEN];
        let n = header.emit(&user, &mut buf).unwrap();
        prop_assert_eq!(n, link::Header::buffer_len(user.len()));
        prop_assert_eq!(link::frame_len(&buf[..n]), link::FrameStatus::Complete(n));
        let frame = link::Frame::new_checked(&buf[..n]).unwrap();
        prop_assert_eq!(frame.header(), header);
        let mut out = [0u8; link::MAX_USER_DATA];
        prop_assert_eq!(frame.payload(&mut out).unwrap(), &user[..]);
    }

    #[test]
    fn dnp3_transport_reassembles_any_split(
        fragment in prop::collection::vec(any::<u8>(), 1..=2048),
        sizes in prop::collection::vec(1usize..=249, 1..40),
        first_seq in 0u8..64,
    ) {
        use super::dnp3::transport::{Reassembler, Reassembly, Segment, TransportHeader};
        let mut r = Reassembler::<2048>::new();
        let mut offset = 0;
        let mut seq = first_seq;
        let mut result = None;
        let mut i = 0;
        while offset < fragment.len() {
            let size = sizes[i % sizes.len()].min(fragment.len() - offset);
            let fir = offset == 0;
            let fin = offset + size == fragment.len();
            let segment = Segment { header: TransportHeader::new(fir, fin, seq), data: &fragment[offset..offset + size] };
            match r.push(segment).unwrap() {
                Reassembly::Complete(bytes) => result = Some(bytes.to_vec()),
                Reassembly::Partial => prop_assert!(!fin),
                Reassembly::Duplicate => prop_assert!(false, "no duplicates sent"),
            }
            offset += size;
            seq = (seq + 1) & 0x3F;
            i += 1;
        }
        prop_assert_eq!(result, Some(fragment));
    }

    #[test]
    fn dnp3_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        super::fuzzing::dnp3_link(&bytes);
        super::fuzzing::dnp3_app(&bytes);
        // And as a frame with valid CRCs around arbitrary user data.
        use super::dnp3::link;
        let user = &bytes[..bytes.len().min(link::MAX_USER_DATA)];
        let header = link::Header { control: link::Control(0xC4), destination: 1, source: 2 };
        let mut buf = [0u8; link::MAX_FRAME_LEN];
        let n = header.emit(user, &mut buf).unwrap();
        super::fuzzing::dnp3_link(&buf[..n]);
    }

    #[test]
    fn modbus_fuzz_entry_points_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        super::fuzzing::modbus_adu(&bytes);
        super::fuzzing::modbus_stream(&bytes);
    }
}

/// Writes the fuzz seed corpora under `appliance/fuzz/corpus/<target>/` from the captures.
/// Run by hand: `cargo test -p otgate --lib wire::tests::write_fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes files into the source tree; run by hand to refresh the fuzz corpora"]
fn write_fuzz_corpus() {
    use super::dnp3::{link, transport};
    use sha2::Digest;
    use std::collections::BTreeMap;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut corpora: BTreeMap<&str, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    let mut add = |target: &'static str, bytes: &[u8]| {
        let name = hex::encode(&sha2::Sha256::digest(bytes)[..8]);
        corpora
            .entry(target)
            .or_default()
            .insert(name, bytes.to_vec());
    };
    for (_, frame) in seed_frames() {
        add("modbus_adu", frame);
    }
    let mut streams = 0;
    for file in pcap_files("modbus") {
        for payload in payloads(&file)
            .iter()
            .filter(|p| p.bytes.len() > 12)
            .take(8)
        {
            // The first byte seeds the chunk sizes in `fuzzing::modbus_stream`.
            let mut seed = vec![streams as u8];
            seed.extend_from_slice(&payload.bytes);
            add("modbus_stream", &seed);
            streams += 1;
        }
    }
    let mut files = pcap_files("dnp3");
    files.extend(pcap_files("dnp3/opendnp3_conformance"));
    let mut shapes = std::collections::HashSet::new();
    for file in files {
        let mut reassembler = transport::Reassembler::<2048>::new();
        for payload in payloads(&file) {
            if shapes.insert((
                payload.bytes.len(),
                payload.bytes.get(10..14).map(<[u8]>::to_vec),
            )) {
                add("dnp3_link", &payload.bytes);
            }
            let mut rest: &[u8] = &payload.bytes;
            while let link::FrameStatus::Complete(n) = link::frame_len(rest) {
                let (bytes, tail) = rest.split_at(n);
                rest = tail;
                let Ok(frame) = link::Frame::new_checked(bytes) else {
                    continue;
                };
                let mut out = [0u8; link::MAX_USER_DATA];
                let Ok(user) = frame.payload(&mut out) else {
                    continue;
                };
                if !frame.control().carries_user_data() {
                    continue;
                }
                let Ok(segment) = transport::Segment::parse(user) else {
                    continue;
                };
                if let Ok(transport::Reassembly::Complete(fragment)) = reassembler.push(segment) {
                    if fragment.len() > 2
                        && shapes.insert((fragment.len(), fragment.get(1..4).map(<[u8]>::to_vec)))
                    {
                        add("dnp3_app", fragment);
                    }
                }
            }
        }
    }
    for (target, seeds) in corpora {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        eprintln!("{target}: {} seeds", seeds.len());
    }
}
