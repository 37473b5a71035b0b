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
        prop_assume!(!frames.is_empty());
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
        // Keep one of each distinct (direction, function, length) shape: enough variety, quick.
        let mut seen = std::collections::HashSet::new();
        frames.retain(|(s, f)| seen.insert((*s, f.get(7).copied(), f.len())));
        frames
    })
}
