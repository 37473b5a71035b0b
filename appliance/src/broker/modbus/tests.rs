//! Broker sessions against the real PLC simulator over real loopback sockets, with a real
//! journal: what passes, what is refused, and every bad input of the issue (each ends in a
//! journal record, no panic, bounded buffers).

use std::net::SocketAddr;
use std::time::Duration;

use otgate_policy::{AssetId, GrantScope, OperationSpec, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_modbus::client::{tcp, Reader, Writer};
use tokio_modbus::{ExceptionCode as TmException, Slave};
use tokio_util::sync::CancellationToken;

use super::recording::{self, Decision, RecordLine, ResponseRecord};
use super::{run_session, SessionContext, SessionOutcome};
use crate::journal::event::{Event, SessionEndReason, SessionEvent};
use crate::journal::read::JournalReader;
use crate::journal::Journal;
use crate::sim::plc::{self, PlcConfig, PlcHandle};

/// A scope on `line3-plc` (unit 1) made of operation strings as people write them.
pub(crate) fn scope_of(ops: &[&str]) -> GrantScope {
    let modbus = ops
        .iter()
        .map(|text| match text.parse::<OperationSpec>().unwrap() {
            OperationSpec::Modbus(mut spec) => {
                if spec.units.is_empty() {
                    spec.units = vec![1];
                }
                spec
            }
            other => panic!("not a Modbus operation: {other:?}"),
        })
        .collect();
    GrantScope {
        asset: AssetId::new("line3-plc"),
        protocol: Protocol::Modbus,
        modbus,
        dnp3: Vec::new(),
        vnc: None,
        tcp: false,
    }
}

/// The sample plant's line3-maintenance grant: read, and write holding registers 100-199, plus
/// whatever else a test adds.
fn maintenance_scope(extra: &[&str]) -> GrantScope {
    let mut ops = vec!["read", "write:holding-registers:100-199"];
    ops.extend_from_slice(extra);
    scope_of(&ops)
}

struct Harness {
    plc: PlcHandle,
    dir: tempfile::TempDir,
    journal: Journal,
    cancel: CancellationToken,
    client: Option<TcpStream>,
    session_id: String,
    session: JoinHandle<SessionOutcome>,
}

struct Options {
    scope: GrantScope,
    window: Duration,
    idle: Duration,
    upstream_timeout: Duration,
    upstream: Option<SocketAddr>,
    /// The unit ids the asset answers to.
    unit_ids: Vec<u8>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            scope: maintenance_scope(&[]),
            window: Duration::from_secs(600),
            idle: Duration::from_secs(600),
            upstream_timeout: Duration::from_secs(5),
            upstream: None,
            unit_ids: vec![1],
        }
    }
}

async fn start(options: Options) -> Harness {
    let plc = plc::spawn("127.0.0.1:0".parse().unwrap(), PlcConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open_for_tests(dir.path()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let cancel = CancellationToken::new();
    let session_id = super::live::new_session_id("g-1");
    let ctx = SessionContext {
        session_id: session_id.clone(),
        grant_id: "g-1".into(),
        identity: "alice".into(),
        asset_id: "line3-plc".into(),
        upstream: options.upstream.unwrap_or(plc.local_addr()),
        unit_ids: options.unit_ids,
        scope: options.scope,
        journal: journal.clone(),
        recordings: dir.path().join("sessions"),
        cancel: cancel.clone(),
        deadline: Instant::now() + options.window,
        idle_timeout: options.idle,
        upstream_timeout: options.upstream_timeout,
    };
    let session = tokio::spawn(run_session(server, ctx));
    Harness {
        plc,
        dir,
        journal,
        cancel,
        client: Some(client),
        session_id,
        session,
    }
}

impl Harness {
    fn modbus(&mut self) -> tokio_modbus::client::Context {
        tcp::attach_slave(self.client.take().unwrap(), Slave(1))
    }

    fn raw(&mut self) -> &mut TcpStream {
        self.client.as_mut().unwrap()
    }

    async fn finish(self) -> (SessionOutcome, Vec<SessionEvent>, Vec<RecordLine>) {
        let outcome = self.session.await.unwrap();
        let journal_dir = crate::datadir::DataDir::new(self.dir.path()).journal_dir();
        drop(self.journal);
        let events = JournalReader::open(&journal_dir)
            .unwrap()
            .filter_map(|r| match r.unwrap().event {
                Event::Session(e) => Some(e),
                _ => None,
            })
            .collect();
        let path =
            recording::recording_path(&self.dir.path().join("sessions"), &self.session_id).unwrap();
        let lines = recording::read_recording(&path).unwrap();
        (outcome, events, lines)
    }
}

/// A raw request frame.
fn frame(tid: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut out = tid.to_be_bytes().to_vec();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(pdu.len() as u16 + 1).to_be_bytes());
    out.push(unit);
    out.extend_from_slice(pdu);
    out
}

/// Read one response frame from a raw client.
async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 7];
    stream.read_exact(&mut header).await.unwrap();
    let len = u16::from_be_bytes([header[4], header[5]]) as usize - 1;
    let mut pdu = vec![0u8; len];
    stream.read_exact(&mut pdu).await.unwrap();
    let mut out = header.to_vec();
    out.extend_from_slice(&pdu);
    out
}

fn refused(events: &[SessionEvent]) -> Vec<(u8, u8)> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::OperationRefused {
                request, exception, ..
            } => Some((request.function, *exception)),
            _ => None,
        })
        .collect()
}

fn forwarded(events: &[SessionEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, SessionEvent::OperationForwarded { .. }))
        .count()
}

fn end_reason(events: &[SessionEvent]) -> SessionEndReason {
    match events.last() {
        Some(SessionEvent::SessionEnded { reason, .. }) => reason.clone(),
        other => panic!("last session event is not an end: {other:?}"),
    }
}

#[tokio::test]
async fn reads_pass_and_a_write_inside_the_grant_changes_the_plc() {
    let mut h = start(Options::default()).await;
    h.plc.set_holding_register(10, 77);
    let mut ctx = h.modbus();
    assert_eq!(
        ctx.read_holding_registers(9, 3).await.unwrap().unwrap(),
        vec![0, 77, 0]
    );
    assert_eq!(
        ctx.read_input_registers(5, 2).await.unwrap().unwrap(),
        vec![5, 6]
    );
    ctx.write_multiple_registers(150, &[1, 2, 3])
        .await
        .unwrap()
        .unwrap();
    ctx.write_single_register(199, 9).await.unwrap().unwrap();
    assert_eq!(h.plc.holding_register(151), Some(2));
    assert_eq!(h.plc.holding_register(199), Some(9));
    drop(ctx);
    let (outcome, events, lines) = h.finish().await;
    assert_eq!(outcome.reason, SessionEndReason::ClientClosed);
    assert_eq!((outcome.forwarded, outcome.refused), (4, 0));
    assert!(matches!(
        events.first(),
        Some(SessionEvent::SessionStarted { .. })
    ));
    assert_eq!(forwarded(&events), 4);
    assert_eq!(end_reason(&events), SessionEndReason::ClientClosed);
    // The recording has the session line, 4 transactions with values, and the end.
    assert_eq!(lines.len(), 6);
    let RecordLine::Transaction(first) = &lines[1] else {
        panic!("{:?}", lines[1])
    };
    assert_eq!(
        first.response,
        ResponseRecord::Ok {
            values: vec![0, 77, 0]
        }
    );
    let RecordLine::Transaction(write) = &lines[3] else {
        panic!("{:?}", lines[3])
    };
    assert_eq!(write.values_written, vec![1, 2, 3]);
    assert_eq!(write.decision, Decision::Forwarded);
}

#[tokio::test]
async fn a_write_outside_the_grant_gets_02_and_never_reaches_the_plc() {
    let mut h = start(Options::default()).await;
    let mut ctx = h.modbus();
    let served = h.plc.requests_served();
    let answer = ctx.write_single_register(200, 5).await.unwrap();
    assert_eq!(answer, Err(TmException::IllegalDataAddress));
    // Straddling the end of the allowed range is as bad as being outside it.
    let answer = ctx.write_multiple_registers(195, &[1; 10]).await.unwrap();
    assert_eq!(answer, Err(TmException::IllegalDataAddress));
    // FC 23: the write half outside the grant refuses the whole request.
    let answer = ctx
        .read_write_multiple_registers(0, 2, 300, &[4, 4])
        .await
        .unwrap();
    assert_eq!(answer, Err(TmException::IllegalDataAddress));
    // FC 22 mask write outside.
    let answer = ctx.masked_write_register(99, 0, 0xFF).await.unwrap();
    assert_eq!(answer, Err(TmException::IllegalDataAddress));
    // Coils are not granted at all.
    let answer = ctx.write_single_coil(150, true).await.unwrap();
    assert_eq!(answer, Err(TmException::IllegalDataAddress));
    assert_eq!(
        h.plc.requests_served(),
        served,
        "a refused request reached the PLC"
    );
    assert_eq!(h.plc.holding_register(200), Some(0));
    assert_eq!(h.plc.holding_register(195), Some(0));
    assert_eq!(h.plc.coil(150), Some(false));
    // FC 23 inside the grant passes both halves.
    let read = ctx
        .read_write_multiple_registers(100, 2, 100, &[8, 9])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, vec![8, 9]);
    drop(ctx);
    let (outcome, events, _) = h.finish().await;
    assert_eq!(
        refused(&events),
        vec![(6, 2), (16, 2), (23, 2), (22, 2), (5, 2)]
    );
    assert_eq!((outcome.forwarded, outcome.refused), (1, 5));
}

#[tokio::test]
async fn diagnostics_device_id_and_vendor_codes_need_their_class() {
    let mut h = start(Options::default()).await;
    let client = h.raw();
    // FC 8 sub-function 0, FC 43/14, FC 90 and an unassigned code 0x41: none granted -> 01.
    let requests: [&[u8]; 4] = [
        &[0x08, 0x00, 0x00, 0x12, 0x34],
        &[0x2B, 0x0E, 0x01, 0x00],
        &[0x5A, 0x00, 0x02],
        &[0x41],
    ];
    for (i, pdu) in requests.iter().enumerate() {
        client.write_all(&frame(i as u16, 1, pdu)).await.unwrap();
        let answer = read_frame(client).await;
        assert_eq!(answer[7], pdu[0] | 0x80, "{pdu:?}");
        assert_eq!(answer[8], 0x01, "{pdu:?}");
    }
    assert_eq!(h.plc.requests_served(), 0);
    drop(h.client.take());
    let (_, events, _) = h.finish().await;
    assert_eq!(
        refused(&events),
        vec![(8, 1), (0x2B, 1), (0x5A, 1), (0x41, 1)]
    );
}

#[tokio::test]
async fn a_granted_vendor_code_passes_unchanged() {
    let mut h = start(Options {
        scope: maintenance_scope(&["program", "device-id"]),
        ..Options::default()
    })
    .await;
    let client = h.raw();
    client
        .write_all(&frame(0x1234, 1, &[0x5A, 0x00, 0x02, 0xAB]))
        .await
        .unwrap();
    assert_eq!(
        read_frame(client).await,
        frame(0x1234, 1, &[0x5A, 0x00, 0x02, 0xAB])
    );
    client
        .write_all(&frame(7, 1, &[0x2B, 0x0E, 0x01, 0x00]))
        .await
        .unwrap();
    let answer = read_frame(client).await;
    assert_eq!(&answer[..2], &[0, 7]);
    assert_eq!(&answer[7..9], &[0x2B, 0x0E]);
    assert_eq!(h.plc.requests_served(), 2);
}

#[tokio::test]
async fn a_unit_the_grant_lacks_gets_0a() {
    let mut h = start(Options::default()).await;
    let client = h.raw();
    client
        .write_all(&frame(1, 7, &[0x03, 0x00, 0x00, 0x00, 0x01]))
        .await
        .unwrap();
    assert_eq!(read_frame(client).await, frame(1, 7, &[0x83, 0x0A]));
    assert_eq!(h.plc.requests_served(), 0);
    drop(h.client.take());
    let (_, events, _) = h.finish().await;
    assert_eq!(refused(&events), vec![(3, 0x0A)]);
}

#[tokio::test]
async fn a_unit_of_the_asset_that_the_grant_does_not_name_gets_01() {
    // The asset answers units 1 and 2; the grant names unit 1 only.
    let mut h = start(Options {
        unit_ids: vec![1, 2],
        ..Options::default()
    })
    .await;
    let client = h.raw();
    client
        .write_all(&frame(1, 2, &[0x03, 0x00, 0x00, 0x00, 0x01]))
        .await
        .unwrap();
    assert_eq!(read_frame(client).await, frame(1, 2, &[0x83, 0x01]));
    // The session goes on: unit 1 still passes.
    client
        .write_all(&frame(2, 1, &[0x03, 0x00, 0x00, 0x00, 0x01]))
        .await
        .unwrap();
    assert_eq!(
        read_frame(client).await,
        frame(2, 1, &[0x03, 0x02, 0x00, 0x00])
    );
    assert_eq!(h.plc.requests_served(), 1);
    drop(h.client.take());
    let (_, events, lines) = h.finish().await;
    assert_eq!(refused(&events), vec![(3, 0x01)]);
    let reason = events.iter().find_map(|e| match e {
        SessionEvent::OperationRefused { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(
        reason.as_deref().is_some_and(|r| r.contains("unit id 2")),
        "{reason:?}"
    );
    assert!(matches!(lines.last(), Some(RecordLine::End { .. })));
}

#[tokio::test]
async fn a_client_that_floods_and_never_reads_is_held_back_not_buffered() {
    use super::session::{CLIENT_BACKLOG, CLIENT_BUFFER};
    use super::upstream::MAX_IN_FLIGHT;
    // An in-memory pipe of 1 KiB each way instead of TCP, so the bound is exact.
    const PIPE: usize = 1024;
    let plc = plc::spawn("127.0.0.1:0".parse().unwrap(), PlcConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open_for_tests(dir.path()).unwrap();
    let (mut client, server) = tokio::io::duplex(PIPE);
    let ctx = SessionContext {
        session_id: "S-flood".into(),
        grant_id: "g-1".into(),
        identity: "alice".into(),
        asset_id: "line3-plc".into(),
        upstream: plc.local_addr(),
        unit_ids: vec![1],
        scope: maintenance_scope(&[]),
        journal: journal.clone(),
        recordings: dir.path().join("sessions"),
        cancel: CancellationToken::new(),
        deadline: Instant::now() + Duration::from_secs(600),
        idle_timeout: Duration::from_secs(600),
        upstream_timeout: Duration::from_secs(5),
    };
    let session = tokio::spawn(run_session(server, ctx));
    // Send reads (answer: 11 bytes each) and never read: once the session's backlog for the
    // client is full it stops taking requests, and our writes stall.
    let request = frame(1, 1, &[0x03, 0x00, 0x00, 0x00, 0x01]);
    let mut sent = 0u64;
    while let Ok(Ok(())) =
        tokio::time::timeout(Duration::from_millis(500), client.write_all(&request)).await
    {
        sent += 1;
        assert!(sent < 1_000_000, "the session never pushed back");
    }
    let served = plc.requests_served();
    // Taken at most: what fits in the backlog and the pipe as answers, plus what waits.
    let bound = ((CLIENT_BACKLOG + 260 + PIPE) / 11 + MAX_IN_FLIGHT + 1) as u64;
    assert!(served <= bound, "{served} requests taken, bound {bound}");
    assert!(
        sent <= served + ((CLIENT_BUFFER + PIPE) / 12 + 1) as u64 + 1,
        "{sent} sent, {served} served"
    );
    // Read everything back, then leave: every request taken was answered.
    let mut answers = Vec::new();
    let reading = async {
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_millis(500), client.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => answers.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
    };
    reading.await;
    drop(client);
    let outcome = session.await.unwrap();
    assert_eq!(outcome.forwarded, plc.requests_served());
    assert_eq!(answers.len() as u64 / 11, outcome.forwarded);
}

#[tokio::test]
async fn a_malformed_pdu_gets_03_and_the_session_goes_on() {
    let mut h = start(Options::default()).await;
    let client = h.raw();
    // FC 16 whose byte count disagrees with its quantity.
    client
        .write_all(&frame(
            1,
            1,
            &[0x10, 0x00, 0x64, 0x00, 0x02, 0x02, 0x00, 0x01],
        ))
        .await
        .unwrap();
    assert_eq!(read_frame(client).await, frame(1, 1, &[0x90, 0x03]));
    // FC 3 asking for 126 registers.
    client
        .write_all(&frame(2, 1, &[0x03, 0x00, 0x00, 0x00, 0x7E]))
        .await
        .unwrap();
    assert_eq!(read_frame(client).await, frame(2, 1, &[0x83, 0x03]));
    client
        .write_all(&frame(3, 1, &[0x03, 0x00, 0x00, 0x00, 0x01]))
        .await
        .unwrap();
    assert_eq!(
        read_frame(client).await,
        frame(3, 1, &[0x03, 0x02, 0x00, 0x00])
    );
    assert_eq!(h.plc.requests_served(), 1);
}

/// Send `bytes`, then expect the session to end with a protocol violation, journaled, without
/// anything reaching the PLC.
async fn expect_protocol_violation(bytes: &[u8]) {
    let mut h = start(Options::default()).await;
    h.raw().write_all(bytes).await.unwrap();
    let mut rest = Vec::new();
    // The session closes its side; reading ends (bounded by the session's own end).
    let _ = h.raw().read_to_end(&mut rest).await;
    assert_eq!(h.plc.requests_served(), 0, "{bytes:?}");
    let (outcome, events, lines) = h.finish().await;
    assert!(
        matches!(outcome.reason, SessionEndReason::ProtocolViolation { .. }),
        "{bytes:?}: {:?}",
        outcome.reason
    );
    assert!(matches!(
        end_reason(&events),
        SessionEndReason::ProtocolViolation { .. }
    ));
    assert!(matches!(lines.last(), Some(RecordLine::End { .. })));
}

#[tokio::test]
async fn an_mbap_length_of_zero_ends_the_session() {
    expect_protocol_violation(&[0, 1, 0, 0, 0, 0, 1, 3, 0, 0, 0, 1]).await;
}

#[tokio::test]
async fn an_mbap_length_over_254_ends_the_session() {
    // 300 declared: over the 260-byte ADU; refused on the header, nothing buffered.
    expect_protocol_violation(&[0, 1, 0, 0, 0x01, 0x2C, 1, 3, 0, 0, 0, 1]).await;
}

#[tokio::test]
async fn a_protocol_id_other_than_0_ends_the_session() {
    expect_protocol_violation(&[0, 1, 0, 7, 0, 6, 1, 3, 0, 0, 0, 1]).await;
}

#[tokio::test]
async fn garbage_ends_the_session() {
    expect_protocol_violation(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello, not modbus")
        .await;
}

#[tokio::test]
async fn a_short_mbap_length_is_refused_and_desynchronises_into_an_end() {
    let mut h = start(Options::default()).await;
    // Length 3 (unit, FC 3, one byte) although a whole FC 3 request follows: the first frame is
    // a truncated request (03), the 3 leftover bytes plus the next frame are not a header.
    let mut bytes = vec![0, 1, 0, 0, 0, 3, 1, 3, 0, 0, 0, 1];
    bytes.extend_from_slice(&frame(2, 1, &[0x03, 0x00, 0x00, 0x00, 0x01]));
    h.raw().write_all(&bytes).await.unwrap();
    let first = read_frame(h.raw()).await;
    assert_eq!(first, frame(1, 1, &[0x83, 0x03]));
    let mut rest = Vec::new();
    let _ = h.raw().read_to_end(&mut rest).await;
    assert_eq!(h.plc.requests_served(), 0);
    let (outcome, events, _) = h.finish().await;
    assert!(
        matches!(outcome.reason, SessionEndReason::ProtocolViolation { .. }),
        "{outcome:?}"
    );
    assert_eq!(refused(&events), vec![(3, 3)]);
}

#[tokio::test]
async fn a_long_mbap_length_waits_then_idles_out() {
    let mut h = start(Options {
        idle: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    // Declares 20 bytes after the length field but sends 6, then nothing.
    h.raw()
        .write_all(&[0, 1, 0, 0, 0, 20, 1, 3, 0, 0, 0, 1])
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = h.raw().read_to_end(&mut rest).await;
    assert!(rest.is_empty());
    assert_eq!(h.plc.requests_served(), 0);
    let (outcome, events, _) = h.finish().await;
    assert_eq!(outcome.reason, SessionEndReason::IdleTimeout);
    assert_eq!(end_reason(&events), SessionEndReason::IdleTimeout);
}

#[tokio::test]
async fn a_client_sending_byte_by_byte_is_served() {
    let mut h = start(Options::default()).await;
    h.plc.set_holding_register(3, 0xBEEF);
    let request = frame(9, 1, &[0x03, 0x00, 0x03, 0x00, 0x01]);
    for byte in request {
        h.raw().write_all(&[byte]).await.unwrap();
        h.raw().flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        read_frame(h.raw()).await,
        frame(9, 1, &[0x03, 0x02, 0xBE, 0xEF])
    );
}

#[tokio::test]
async fn a_flood_of_pipelined_requests_is_answered_in_full() {
    let mut h = start(Options::default()).await;
    const N: u16 = 2000;
    let mut flood = Vec::new();
    for tid in 0..N {
        // Every fifth request is refused (a write outside), the rest are reads.
        let pdu: &[u8] = if tid % 5 == 0 {
            &[0x06, 0x01, 0x00, 0x00, 0x01]
        } else {
            &[0x03, 0x00, 0x00, 0x00, 0x01]
        };
        flood.extend_from_slice(&frame(tid, 1, pdu));
    }
    let (mut reader, mut writer) = h.client.take().unwrap().into_split();
    let send = tokio::spawn(async move {
        writer.write_all(&flood).await.unwrap();
        writer
    });
    let mut seen = vec![false; N as usize];
    for _ in 0..N {
        let mut header = [0u8; 7];
        reader.read_exact(&mut header).await.unwrap();
        let len = u16::from_be_bytes([header[4], header[5]]) as usize - 1;
        let mut pdu = vec![0u8; len];
        reader.read_exact(&mut pdu).await.unwrap();
        let tid = u16::from_be_bytes([header[0], header[1]]);
        let expected: &[u8] = if tid % 5 == 0 {
            &[0x86, 0x02]
        } else {
            &[0x03, 0x02, 0x00, 0x00]
        };
        assert_eq!(pdu, expected, "tid {tid}");
        assert!(!seen[tid as usize], "tid {tid} answered twice");
        seen[tid as usize] = true;
    }
    drop(send.await.unwrap());
    drop(reader);
    assert_eq!(h.plc.requests_served(), u64::from(N - N / 5));
    let (outcome, _, _) = h.finish().await;
    assert_eq!(
        (outcome.forwarded, outcome.refused),
        (u64::from(N - N / 5), u64::from(N / 5))
    );
}

#[tokio::test]
async fn a_client_that_disconnects_mid_transaction_ends_the_session() {
    let mut h = start(Options::default()).await;
    h.plc.set_response_delay(Duration::from_millis(200));
    h.raw()
        .write_all(&frame(1, 1, &[0x03, 0x00, 0x00, 0x00, 0x01]))
        .await
        .unwrap();
    // Wait until the request has reached the PLC, then leave.
    while h.plc.requests_served() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(h.client.take());
    let (outcome, events, lines) = h.finish().await;
    assert_eq!(outcome.reason, SessionEndReason::ClientClosed);
    assert_eq!(forwarded(&events), 1);
    let RecordLine::Transaction(tx) = &lines[1] else {
        panic!("{lines:?}")
    };
    assert_eq!(tx.response, ResponseRecord::None);
}

#[tokio::test]
async fn a_plc_that_closes_the_connection_gets_0a_then_reconnects() {
    let mut h = start(Options::default()).await;
    h.plc.set_response_delay(Duration::from_millis(300));
    h.raw()
        .write_all(&frame(1, 1, &[0x03, 0x00, 0x00, 0x00, 0x01]))
        .await
        .unwrap();
    while h.plc.requests_served() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.plc.disconnect_all();
    assert_eq!(read_frame(h.raw()).await, frame(1, 1, &[0x83, 0x0A]));
    h.plc.set_response_delay(Duration::ZERO);
    h.raw()
        .write_all(&frame(2, 1, &[0x03, 0x00, 0x00, 0x00, 0x01]))
        .await
        .unwrap();
    assert_eq!(
        read_frame(h.raw()).await,
        frame(2, 1, &[0x03, 0x02, 0x00, 0x00])
    );
}

#[tokio::test]
async fn a_plc_that_is_down_gets_0a() {
    // A port nobody listens on: bind, note it, close.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut h = start(Options {
        upstream: Some(dead),
        ..Options::default()
    })
    .await;
    h.raw()
        .write_all(&frame(4, 1, &[0x03, 0x00, 0x00, 0x00, 0x01]))
        .await
        .unwrap();
    assert_eq!(read_frame(h.raw()).await, frame(4, 1, &[0x83, 0x0A]));
    drop(h.client.take());
    let (_, events, lines) = h.finish().await;
    assert_eq!(forwarded(&events), 1);
    let RecordLine::Transaction(tx) = &lines[1] else {
        panic!("{lines:?}")
    };
    assert!(
        matches!(tx.response, ResponseRecord::Exception { code: 0x0A, .. }),
        "{tx:?}"
    );
}

#[tokio::test]
async fn a_slow_plc_gets_0b_after_the_timeout() {
    let mut h = start(Options {
        upstream_timeout: Duration::from_millis(100),
        ..Options::default()
    })
    .await;
    h.plc.set_response_delay(Duration::from_millis(1000));
    h.raw()
        .write_all(&frame(5, 1, &[0x03, 0x00, 0x00, 0x00, 0x01]))
        .await
        .unwrap();
    assert_eq!(read_frame(h.raw()).await, frame(5, 1, &[0x83, 0x0B]));
}

#[tokio::test]
async fn cancellation_lets_a_forwarded_transaction_complete_then_closes() {
    let mut h = start(Options::default()).await;
    h.plc.set_response_delay(Duration::from_millis(200));
    h.raw()
        .write_all(&frame(1, 1, &[0x03, 0x00, 0x00, 0x00, 0x01]))
        .await
        .unwrap();
    while h.plc.requests_served() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.cancel.cancel();
    assert_eq!(
        read_frame(h.raw()).await,
        frame(1, 1, &[0x03, 0x02, 0x00, 0x00])
    );
    let mut rest = Vec::new();
    let _ = h.raw().read_to_end(&mut rest).await;
    assert!(rest.is_empty());
    let (outcome, events, _) = h.finish().await;
    assert_eq!(outcome.reason, SessionEndReason::Cancelled);
    assert_eq!(end_reason(&events), SessionEndReason::Cancelled);
}

#[tokio::test]
async fn the_window_end_closes_the_session() {
    let mut h = start(Options {
        window: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let mut rest = Vec::new();
    let _ = h.raw().read_to_end(&mut rest).await;
    let (outcome, events, lines) = h.finish().await;
    assert_eq!(outcome.reason, SessionEndReason::WindowEnded);
    assert_eq!(end_reason(&events), SessionEndReason::WindowEnded);
    assert!(
        matches!(lines.last(), Some(RecordLine::End { reason, .. }) if reason == "window ended")
    );
}

#[tokio::test]
async fn a_killed_session_is_listed_until_it_closes() {
    let mut h = start(Options::default()).await;
    h.raw()
        .write_all(&frame(1, 1, &[0x03, 0x00, 0x00, 0x00, 0x01]))
        .await
        .unwrap();
    assert_eq!(
        read_frame(h.raw()).await,
        frame(1, 1, &[0x03, 0x02, 0x00, 0x00])
    );
    let live = super::live::find(&h.session_id).expect("the session is live");
    assert_eq!((live.identity.as_str(), live.forwarded), ("alice", 1));
    assert!(super::live::kill(&h.session_id));
    let mut rest = Vec::new();
    let _ = h.raw().read_to_end(&mut rest).await;
    let id = h.session_id.clone();
    let (outcome, events, _) = h.finish().await;
    assert_eq!(outcome.reason, SessionEndReason::Killed);
    assert_eq!(end_reason(&events), SessionEndReason::Killed);
    assert_eq!(super::live::find(&id), None);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Well-framed requests with arbitrary PDUs, then arbitrary trailing bytes.
    fn traffic() -> impl Strategy<Value = Vec<u8>> {
        let pdu = proptest::collection::vec(any::<u8>(), 1..24);
        let frames = proptest::collection::vec(
            (any::<u16>(), prop_oneof![Just(1u8), any::<u8>()], pdu),
            0..12,
        );
        let tail = proptest::collection::vec(any::<u8>(), 0..40);
        (frames, tail).prop_map(|(frames, tail)| {
            let mut bytes = Vec::new();
            for (tid, unit, pdu) in frames {
                bytes.extend_from_slice(&frame(tid, unit, &pdu));
            }
            bytes.extend_from_slice(&tail);
            bytes
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// Whatever a client sends, the session ends without a panic, journals its end, and
        /// forwards to the PLC only what it journaled as forwarded.
        #[test]
        fn any_client_bytes_end_in_a_journaled_end(bytes in traffic()) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut h = start(Options { idle: Duration::from_millis(100), ..Options::default() }).await;
                let client = h.client.take().unwrap();
                let (mut reader, mut writer) = client.into_split();
                writer.write_all(&bytes).await.unwrap_or(());
                // Keep the write side open: answers come back, then the session idles out,
                // ends on a protocol violation, or the client leaves when reading is done.
                let mut answers = Vec::new();
                let _ = reader.read_to_end(&mut answers).await;
                drop(writer);
                let served = h.plc.requests_served();
                let (outcome, events, lines) = h.finish().await;
                let journaled = forwarded(&events) as u64;
                assert!(served <= journaled, "{served} reached the PLC, {journaled} journaled");
                assert_eq!(outcome.forwarded, journaled);
                assert!(matches!(events.last(), Some(SessionEvent::SessionEnded { .. })));
                assert!(matches!(lines.last(), Some(RecordLine::End { .. })));
            });
        }
    }
}
