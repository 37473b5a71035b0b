//! Decode throughput of the wire decoders, per ADU / link frame, against a same-run baseline:
//! copying the same bytes (`memcpy`) into a buffer. Report the ratio, not the absolute time.
//!
//! `cargo bench -p otgate --bench decode -- --warm-up-time 1 --measurement-time 3`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use otgate::wire::dnp3::{app, link, transport};
use otgate::wire::modbus::{self, Adu, FrameStatus, FunctionCode, Request, Response};

/// A Modbus mix like a polling master's: reads, writes, FC 23, responses.
fn modbus_stream() -> (Vec<u8>, usize) {
    let values = [0x12u8; 20];
    let requests = [
        Request::ReadHoldingRegisters {
            start: 100,
            quantity: 10,
        },
        Request::ReadCoils {
            start: 0,
            quantity: 64,
        },
        Request::ReadInputRegisters {
            start: 30,
            quantity: 125,
        },
        Request::WriteSingleRegister {
            address: 105,
            value: 7,
        },
        Request::WriteMultipleRegisters {
            start: 100,
            quantity: 10,
            values: &values,
        },
        Request::ReadWriteMultipleRegisters {
            read_start: 0,
            read_quantity: 8,
            write_start: 100,
            write_quantity: 10,
            values: &values,
        },
        Request::Diagnostics {
            sub_function: 0,
            data: &[0xA5, 0x37],
        },
        Request::Other {
            function: FunctionCode::UMAS,
            data: &[0x00, 0x02],
        },
    ];
    let mut stream = Vec::new();
    let mut frames = 0;
    for round in 0..64u16 {
        for request in &requests {
            let mut buf = [0u8; modbus::MAX_ADU_LEN];
            let n = request.emit_adu(round, 1, &mut buf).unwrap();
            stream.extend_from_slice(&buf[..n]);
            frames += 1;
        }
    }
    (stream, frames)
}

/// Cuts and decodes a stream of request ADUs as the broker does; returns a checksum.
fn decode_modbus(stream: &[u8]) -> usize {
    let mut rest = stream;
    let mut acc = 0usize;
    while let FrameStatus::Complete(n) = modbus::frame_len(rest) {
        let (frame, tail) = rest.split_at(n);
        rest = tail;
        let adu = Adu::new_checked(frame).unwrap();
        let request = Request::parse(adu.pdu()).unwrap();
        acc += request.ops(adu.unit_id()).len();
    }
    acc
}

/// A DNP3 mix: read requests, a response with binary and analog inputs, a CROB operate.
fn dnp3_stream() -> (Vec<u8>, usize) {
    let fragments: [&[u8]; 3] = [
        &[
            0xC0, 0x01, 60, 2, 0x06, 60, 3, 0x06, 60, 4, 0x06, 60, 1, 0x06,
        ],
        &[
            0xC0, 0x81, 0x00, 0x00, 1, 2, 0x00, 0, 15, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81,
            0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 30, 1, 0x00, 0, 9, 1, 0, 0, 0, 0,
            1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0,
            0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0,
        ],
        &[
            0xC3, 0x05, 12, 1, 0x28, 1, 0, 7, 0, 0x03, 0x01, 0x64, 0, 0, 0, 0x64, 0, 0, 0, 0x00,
        ],
    ];
    let mut stream = Vec::new();
    let mut frames = 0;
    for round in 0..64u8 {
        for fragment in fragments {
            let mut user = vec![transport::TransportHeader::new(true, true, round).0];
            user.extend_from_slice(fragment);
            let header = link::Header {
                control: link::Control(0xC4),
                destination: 10,
                source: 1,
            };
            let mut buf = [0u8; link::MAX_FRAME_LEN];
            let n = header.emit(&user, &mut buf).unwrap();
            stream.extend_from_slice(&buf[..n]);
            frames += 1;
        }
    }
    (stream, frames)
}

/// Cuts, checks (CRCs), reassembles and walks a DNP3 stream as the inspector does.
fn decode_dnp3(stream: &[u8]) -> usize {
    let mut rest = stream;
    let mut reassembler = transport::Reassembler::<2048>::new();
    let mut acc = 0usize;
    let mut payload = [0u8; link::MAX_USER_DATA];
    while let link::FrameStatus::Complete(n) = link::frame_len(rest) {
        let (bytes, tail) = rest.split_at(n);
        rest = tail;
        let frame = link::Frame::new_checked(bytes).unwrap();
        let user = frame.payload(&mut payload).unwrap();
        let segment = transport::Segment::parse(user).unwrap();
        if let Ok(transport::Reassembly::Complete(fragment)) = reassembler.push(segment) {
            let fragment = app::Fragment::parse(fragment).unwrap();
            acc += fragment.object_headers().filter(Result::is_ok).count();
        }
    }
    acc
}

fn bench(c: &mut Criterion) {
    let (stream, frames) = modbus_stream();
    assert!(decode_modbus(&stream) >= frames);
    let mut copy = vec![0u8; stream.len()];
    let mut group = c.benchmark_group("modbus_request_adu");
    group.throughput(Throughput::Elements(frames as u64));
    group.bench_function("baseline_memcpy", |b| {
        b.iter(|| {
            copy.copy_from_slice(black_box(&stream));
            black_box(&copy);
        })
    });
    group.bench_function("frame_parse_ops", |b| {
        b.iter(|| decode_modbus(black_box(&stream)))
    });
    group.finish();

    // Responses, given the request's function code.
    let response = [
        0x03u8, 20, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8, 0, 9, 0, 10,
    ];
    let mut group = c.benchmark_group("modbus_response_pdu");
    group.throughput(Throughput::Elements(1));
    let mut small = [0u8; 22];
    group.bench_function("baseline_memcpy", |b| {
        b.iter(|| {
            small.copy_from_slice(black_box(&response));
            black_box(&small);
        })
    });
    group.bench_function("parse", |b| {
        b.iter(|| {
            Response::parse(FunctionCode::READ_HOLDING_REGISTERS, black_box(&response)).unwrap()
        })
    });
    group.finish();

    let (stream, frames) = dnp3_stream();
    assert!(decode_dnp3(&stream) > 0);
    let mut copy = vec![0u8; stream.len()];
    let mut group = c.benchmark_group("dnp3_link_frame");
    group.throughput(Throughput::Elements(frames as u64));
    group.bench_function("baseline_memcpy", |b| {
        b.iter(|| {
            copy.copy_from_slice(black_box(&stream));
            black_box(&copy);
        })
    });
    group.bench_function("link_transport_app", |b| {
        b.iter(|| decode_dnp3(black_box(&stream)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
