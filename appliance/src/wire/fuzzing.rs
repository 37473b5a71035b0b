//! Entry points for the `cargo fuzz` targets in `appliance/fuzz/` (one call each). Hidden from
//! the docs; not an API. Each function drives a decoder the way its callers do and asserts the
//! decoder's contract (round trips, bounds), so a fuzzer finds both panics and broken promises.

use super::dnp3::{app, link, transport};
use super::modbus::{self, Adu, FrameStatus, FunctionCode, Request, Response};

/// One Modbus TCP frame: strict and lenient views, request and response parses, and
/// emit-after-parse giving back the same bytes.
pub fn modbus_adu(data: &[u8]) {
    let _ = modbus::frame_len(data);
    if let Ok((adu, _)) = Adu::new_lenient(data) {
        let _ = Request::parse_lenient(adu.pdu());
        let _ = Response::parse_lenient(adu.function().base(), adu.pdu());
    }
    let Ok(adu) = Adu::new_checked(data) else {
        return;
    };
    assert_eq!(modbus::frame_len(data), FrameStatus::Complete(data.len()));
    let mut buf = [0u8; modbus::MAX_ADU_LEN];
    if let Ok(request) = Request::parse(adu.pdu()) {
        let n = request.emit_adu(adu.transaction_id(), adu.unit_id(), &mut buf);
        assert_eq!(n.ok().and_then(|n| buf.get(..n)), Some(data));
        let ops = request.ops(adu.unit_id());
        assert!(!ops.is_empty());
    }
    let function = FunctionCode(adu.function().0 & 0x7F);
    if let Ok(response) = Response::parse(function, adu.pdu()) {
        let n = response.emit(&mut buf);
        assert_eq!(n.ok().and_then(|n| buf.get(..n)), Some(adu.pdu()));
        let _ = response.check_against(&Request::ReadHoldingRegisters {
            start: 0,
            quantity: 1,
        });
    }
}

/// A byte stream as a broker receives it, in chunks whose sizes come from the input: frames are
/// cut with `frame_len` from a buffer that must never need more than 260 bytes.
pub fn modbus_stream(data: &[u8]) {
    let Some((&seed, mut rest)) = data.split_first() else {
        return;
    };
    let mut buffer = heapless::Vec::<u8, { modbus::MAX_ADU_LEN }>::new();
    let mut chunk = usize::from(seed % 32) + 1;
    while !rest.is_empty() {
        let take = chunk.min(rest.len()).min(buffer.capacity() - buffer.len());
        let (head, tail) = rest.split_at(take);
        rest = tail;
        assert!(
            buffer.extend_from_slice(head).is_ok(),
            "frame_len let the buffer overflow"
        );
        chunk = chunk % 7 + 1;
        loop {
            match modbus::frame_len(&buffer) {
                FrameStatus::Complete(n) => {
                    let frame = buffer.get(..n).unwrap_or_default();
                    if let Ok(adu) = Adu::new_checked(frame) {
                        let _ = Request::parse(adu.pdu()).map(|r| r.ops(adu.unit_id()));
                    }
                    let remaining = buffer.get(n..).map(<[u8]>::to_vec).unwrap_or_default();
                    buffer.clear();
                    let _ = buffer.extend_from_slice(&remaining);
                }
                FrameStatus::NeedMore => {
                    assert!(
                        buffer.len() < modbus::MAX_ADU_LEN,
                        "NeedMore with a full buffer"
                    );
                    break;
                }
                FrameStatus::Invalid(_) => {
                    // The broker drops the connection; the fuzzer starts over on what is left.
                    buffer.clear();
                    break;
                }
            }
        }
    }
}

/// A byte stream of DNP3 link frames: cut, resynchronised after garbage, checked, payloads
/// handed to a transport reassembler and the fragments to the application decoder.
pub fn dnp3_link(data: &[u8]) {
    let mut rest = data;
    let mut reassembler = transport::Reassembler::<{ transport::DEFAULT_MAX_FRAGMENT }>::new();
    let mut payload = [0u8; link::MAX_USER_DATA];
    while !rest.is_empty() {
        match link::frame_len(rest) {
            link::FrameStatus::Complete(n) => {
                assert!((link::HEADER_LEN..=link::MAX_FRAME_LEN).contains(&n));
                let (bytes, tail) = rest.split_at(n.min(rest.len()));
                rest = tail;
                let Ok((frame, crcs)) = link::Frame::new_lenient(bytes) else {
                    continue;
                };
                assert_eq!(link::Frame::new_checked(bytes).is_ok(), crcs.is_clean());
                let Ok(user) = frame.payload(&mut payload) else {
                    continue;
                };
                assert_eq!(user.len(), frame.user_data_len());
                if !crcs.is_clean() || !frame.control().carries_user_data() {
                    continue;
                }
                if let Ok(segment) = transport::Segment::parse(user) {
                    if let Ok(transport::Reassembly::Complete(fragment)) = reassembler.push(segment)
                    {
                        dnp3_app(fragment);
                    }
                }
            }
            link::FrameStatus::NeedMore => break,
            link::FrameStatus::Invalid(_) => {
                let skip = rest
                    .get(1..)
                    .and_then(link::find_start)
                    .map_or(rest.len(), |i| i + 1);
                rest = rest.get(skip..).unwrap_or_default();
            }
        }
    }
}

/// One application fragment: header, every object header, and emit giving back the bytes.
pub fn dnp3_app(data: &[u8]) {
    let Ok(fragment) = app::Fragment::parse(data) else {
        return;
    };
    let mut headers = 0usize;
    for header in fragment.object_headers() {
        let Ok(header) = header else { break };
        headers += 1;
        assert!(header.data.len() <= data.len());
    }
    assert!(headers <= data.len());
    let mut buf = [0u8; 4096];
    if data.len() <= buf.len() {
        let n = fragment.emit(&mut buf);
        assert_eq!(n.ok().and_then(|n| buf.get(..n)), Some(data));
    }
}
