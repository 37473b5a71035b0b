//! One broker session: an authenticated client stream on one side, the appliance's own
//! connection to the PLC on the other, and the grant enforced on every request in between.
//!
//! For each request: cut one ADU out of a bounded buffer (`wire::modbus::frame_len`), decode it
//! strictly, turn it into operations, ask the grant's scope about each, journal the decision,
//! and only with the journal's receipt forward it or answer the exception itself (01 illegal
//! function, 02 illegal data address, 03 for malformed requests, 0A for a unit the grant lacks).
//! Decisions are journaled without stopping the session: each decided request's record goes to
//! the journal at once and the session keeps reading, answering and deciding while the record
//! becomes durable, so pipelined requests (and concurrent sessions) share the journal's group
//! commit. Receipts come back in request order, and only with its receipt is a request forwarded
//! or refused: no request reaches the PLC before its record is durable.
//!
//! The recording ([`Recorder`]) is a convenience view off the critical path: lines are buffered
//! in memory and written by a background thread, at the latest
//! [`RECORDING_LAG`](super::recording::RECORDING_LAG) later and in
//! full when the session ends. The journal is the truth.
//!
//! The loop `select!`s on the grant's cancellation (revocation, grant end, kill, shutdown), the
//! window's deadline, the idle timeout, the client, and the PLC. At the end a transaction already
//! forwarded may complete for up to [`CLOSE_GRACE`], then the session closes: well inside the
//! one second the brief promises.
//!
//! Bounds: the client buffer holds at most [`CLIENT_BUFFER`] bytes, the bytes waiting for a slow
//! client at most [`CLIENT_BACKLOG`] (then the session stops reading, so TCP pushes back), at most
//! `MAX_IN_FLIGHT` requests wait for the journal or the PLC together. Bytes that cannot be Modbus TCP framing (a lying
//! MBAP length, protocol id not 0) end the session: the stream cannot be resynchronised.
//!
//! It does not authenticate (the tunnel did) and does not decide grants (the scope is given).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{FuturesOrdered, StreamExt};
use otgate_policy::modbus::ModbusOp;
use otgate_policy::{GrantScope, OpVerdict};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::bytes::BufMut as _;
use tokio_util::sync::CancellationToken;

use super::live;
use super::recording::{
    Decision, ExceptionSource, RecordLine, Recorder, ResponseRecord, TransactionRecord,
};
use super::upstream::{Upstream, UpstreamEvent, MAX_IN_FLIGHT};
use crate::journal::event::{
    Event, ModbusRequestRecord, SessionEndReason, SessionEvent, SessionSubject,
};
use crate::journal::{Journal, JournalError, Recorded};
use crate::wire::modbus::{
    frame_len, Adu, Exception, ExceptionCode, FrameStatus, FunctionCode, MbapHeader, Request,
    Response, MAX_ADU_LEN, MBAP_LEN,
};

/// How long a transaction already forwarded may take to complete once the session must end.
pub const CLOSE_GRACE: Duration = Duration::from_millis(700);
/// Bytes buffered from the client: many pipelined frames, and never more.
pub const CLIENT_BUFFER: usize = 16 * MAX_ADU_LEN;
/// Response bytes waiting for a client that does not read before the session stops reading it.
pub const CLIENT_BACKLOG: usize = 16 * MAX_ADU_LEN;
/// How long the last responses may take to reach the client after the session has ended.
const FINAL_FLUSH: Duration = Duration::from_millis(200);

/// Everything one session needs; built by the daemon from the active grant.
#[derive(Debug, Clone)]
pub struct SessionContext {
    /// This session's id (also its recording's name).
    pub session_id: String,
    /// The grant it runs under.
    pub grant_id: String,
    /// The authenticated IT identity.
    pub identity: String,
    /// The OT asset.
    pub asset_id: String,
    /// The PLC's address.
    pub upstream: SocketAddr,
    /// Unit ids the asset answers to; any other is refused with 0A.
    pub unit_ids: Vec<u8>,
    /// What the grant allows.
    pub scope: GrantScope,
    /// Where every decision goes before it takes effect.
    pub journal: Journal,
    /// The directory of session recordings (`DataDir::sessions_dir()`).
    pub recordings: PathBuf,
    /// Fires on revocation, grant end, kill or shutdown.
    pub cancel: CancellationToken,
    /// The grant's end on the monotonic clock.
    pub deadline: Instant,
    /// Close after this long without a byte from the client.
    pub idle_timeout: Duration,
    /// How long the PLC may take to answer before the client gets 0B.
    pub upstream_timeout: Duration,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOutcome {
    /// Why it ended.
    pub reason: SessionEndReason,
    /// Requests forwarded to the PLC.
    pub forwarded: u64,
    /// Requests refused by the broker.
    pub refused: u64,
}

/// What the session remembers about a forwarded request until its response.
#[derive(Debug)]
struct InFlight {
    client_tid: u16,
    unit: u8,
    function: FunctionCode,
    arrived: Instant,
    at: DateTime<Utc>,
    request: ModbusRequestRecord,
    /// For bit reads, how many bits were asked (the response pads to whole bytes).
    bits: Option<usize>,
}

/// A decided request waiting for its journal receipt.
struct Decided {
    frame: Vec<u8>,
    in_flight: InFlight,
    /// `None` to forward; `Some` to refuse with this exception.
    refusal: Option<(ExceptionCode, String)>,
}

/// Run one broker session until the client leaves, the grant ends or is cancelled, or the
/// session idles out. Journals `SessionStarted` first (and forwards nothing if it cannot) and
/// `SessionEnded` last; never panics on anything the client or the PLC sends.
pub async fn run_session<S>(client: S, ctx: SessionContext) -> SessionOutcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let subject = SessionSubject {
        session_id: ctx.session_id.clone(),
        grant_id: ctx.grant_id.clone(),
        identity: ctx.identity.clone(),
        asset_id: ctx.asset_id.clone(),
    };
    let started = SessionEvent::SessionStarted {
        subject: subject.clone(),
        upstream: ctx.upstream.to_string(),
    };
    if let Err(error) = ctx.journal.append(Event::Session(started)).await {
        tracing::error!(session = %ctx.session_id, %error, "cannot journal the session start");
        return SessionOutcome {
            reason: SessionEndReason::JournalUnavailable {
                detail: error.to_string(),
            },
            forwarded: 0,
            refused: 0,
        };
    }
    let mut recorder = match Recorder::create(&ctx.recordings, &ctx.session_id) {
        Ok(recorder) => Some(recorder),
        Err(error) => {
            tracing::warn!(session = %ctx.session_id, %error, "session will not be recorded");
            None
        }
    };
    if let Some(recorder) = recorder.as_mut() {
        recorder.write(&RecordLine::Session {
            session_id: ctx.session_id.clone(),
            grant_id: ctx.grant_id.clone(),
            identity: ctx.identity.clone(),
            asset_id: ctx.asset_id.clone(),
            upstream: ctx.upstream.to_string(),
            started_at: Utc::now(),
        });
    }
    tracing::info!(session = %ctx.session_id, grant = %ctx.grant_id, asset = %ctx.asset_id, "session started");
    let live = live::register(live::LiveSession {
        session_id: ctx.session_id.clone(),
        grant_id: ctx.grant_id.clone(),
        identity: ctx.identity.clone(),
        asset_id: ctx.asset_id.clone(),
        started_at: Utc::now(),
        forwarded: 0,
        refused: 0,
    });

    let mut session = Session {
        ctx: &ctx,
        subject: &subject,
        recorder: &mut recorder,
        live: &live,
        upstream: Upstream::new(ctx.upstream, ctx.upstream_timeout),
        out: Vec::with_capacity(CLIENT_BACKLOG + MAX_ADU_LEN),
        forwarded: 0,
        refused: 0,
    };
    let (mut reader, mut writer) = tokio::io::split(client);
    let reason = session.run(&mut reader, &mut writer).await;
    let (forwarded, refused) = (session.forwarded, session.refused);

    // Requests still at the PLC get no answer: record that, then flush what is ready.
    for in_flight in session.upstream.abandon() {
        session.record(in_flight, Decision::Forwarded, None, ResponseRecord::None);
    }
    let out = std::mem::take(&mut session.out);
    let _ = tokio::time::timeout(FINAL_FLUSH, async {
        if !out.is_empty() {
            writer.write_all(&out).await?;
        }
        writer.shutdown().await
    })
    .await;

    let ended = SessionEvent::SessionEnded {
        subject: subject.clone(),
        reason: reason.clone(),
        forwarded,
        refused,
    };
    if let Err(error) = ctx.journal.append(Event::Session(ended)).await {
        tracing::error!(session = %ctx.session_id, %error, "cannot journal the session end");
    }
    if let Some(mut recorder) = recorder {
        recorder.write(&RecordLine::End {
            ended_at: Utc::now(),
            reason: reason.to_string(),
            forwarded,
            refused,
        });
        // The recording is complete on disk before the session is reported ended.
        recorder.finish().await;
    }
    tracing::info!(session = %ctx.session_id, %reason, forwarded, refused, "session ended");
    SessionOutcome {
        reason,
        forwarded,
        refused,
    }
}

struct Session<'a> {
    ctx: &'a SessionContext,
    subject: &'a SessionSubject,
    recorder: &'a mut Option<Recorder>,
    /// This session in the table of live sessions: its kill token and counters.
    live: &'a live::Registration,
    upstream: Upstream<InFlight>,
    /// Response bytes not yet written to the client.
    out: Vec<u8>,
    forwarded: u64,
    refused: u64,
}

/// How the main loop wants to end.
enum Closing {
    /// Keep going.
    Open,
    /// Let forwarded transactions complete until the instant, then end for the reason. Decisions
    /// still waiting for their journal receipt are not forwarded any more: the authority to act
    /// (grant, window, session) has ended.
    Draining(SessionEndReason, Instant),
}

/// A decision on its way to the journal: resolves to the decision and its receipt.
type Journaling<F> = FuturesOrdered<F>;

/// Send one decision's record to the journal; resolves once it is durable (or refused).
async fn journal_decision(
    journal: &Journal,
    decided: Decided,
    event: Event,
) -> (Decided, Result<Recorded, JournalError>) {
    let receipt = journal.append(event).await;
    (decided, receipt)
}

impl Session<'_> {
    async fn run<R, W>(&mut self, reader: &mut R, writer: &mut W) -> SessionEndReason
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let ctx = self.ctx;
        let mut inbuf: Vec<u8> = Vec::with_capacity(CLIENT_BUFFER);
        let mut idle_at = Instant::now() + ctx.idle_timeout;
        let mut closing = Closing::Open;
        let mut journaling: Journaling<_> = FuturesOrdered::new();
        loop {
            if let Closing::Draining(reason, _) = &closing {
                if self.upstream.in_flight() == 0 && journaling.is_empty() {
                    return reason.clone();
                }
            }
            let open = matches!(closing, Closing::Open);
            let waiting = journaling.len() + self.upstream.in_flight();
            let may_take = open && self.out.len() < CLIENT_BACKLOG && waiting < MAX_IN_FLIGHT;

            // Decide what is already buffered before reading more; the records go to the
            // journal together when `journaling` is next polled (one group commit).
            if may_take {
                match frame_len(&inbuf) {
                    FrameStatus::Complete(_) => {
                        for _ in waiting..MAX_IN_FLIGHT {
                            let len = match frame_len(&inbuf) {
                                FrameStatus::Complete(len) => len,
                                FrameStatus::NeedMore | FrameStatus::Invalid(_) => break,
                            };
                            let frame: Vec<u8> = inbuf.drain(..len).collect();
                            let decided = self.decide(frame);
                            let event = self.event_for(&decided);
                            journaling.push_back(journal_decision(&ctx.journal, decided, event));
                        }
                    }
                    FrameStatus::Invalid(error) => {
                        self.refused += 1;
                        self.settle(&mut journaling, true).await;
                        return SessionEndReason::ProtocolViolation {
                            detail: error.to_string(),
                        };
                    }
                    FrameStatus::NeedMore => {}
                }
            }
            let may_read = may_take && inbuf.len() < CLIENT_BUFFER;
            let close_by = match &closing {
                Closing::Draining(_, at) => Some(*at),
                Closing::Open => None,
            };
            let flush_recording_at = self.recorder.as_ref().and_then(Recorder::flush_due);

            tokio::select! {
                biased;
                () = ctx.cancel.cancelled(), if open => {
                    closing = Closing::Draining(SessionEndReason::Cancelled, Instant::now() + CLOSE_GRACE);
                }
                () = self.live.kill.cancelled(), if open => {
                    closing = Closing::Draining(SessionEndReason::Killed, Instant::now() + CLOSE_GRACE);
                }
                () = tokio::time::sleep_until(ctx.deadline), if open => {
                    closing = Closing::Draining(SessionEndReason::WindowEnded, Instant::now() + CLOSE_GRACE);
                }
                () = sleep_until_opt(close_by), if close_by.is_some() => {
                    if let Closing::Draining(reason, _) = closing {
                        self.settle(&mut journaling, false).await;
                        return reason;
                    }
                }
                Some((decided, receipt)) = journaling.next(), if !journaling.is_empty() => {
                    if let Err(reason) = self.act(decided, receipt, open).await {
                        self.settle(&mut journaling, false).await;
                        return reason;
                    }
                }
                () = tokio::time::sleep_until(idle_at), if open && waiting == 0 => {
                    return SessionEndReason::IdleTimeout;
                }
                written = writer.write(&self.out), if !self.out.is_empty() => match written {
                    Ok(0) => {
                        self.settle(&mut journaling, true).await;
                        return SessionEndReason::ClientClosed;
                    }
                    Ok(n) => { self.out.drain(..n.min(self.out.len())); }
                    Err(error) => {
                        self.settle(&mut journaling, true).await;
                        return SessionEndReason::ClientError { detail: error.to_string() };
                    }
                },
                event = self.upstream.next_event() => self.answer(event),
                read = read_some(reader, &mut inbuf), if may_read => match read {
                    Ok(0) => {
                        self.settle(&mut journaling, true).await;
                        return SessionEndReason::ClientClosed;
                    }
                    Ok(_) => idle_at = Instant::now() + ctx.idle_timeout,
                    Err(error) => {
                        self.settle(&mut journaling, true).await;
                        return SessionEndReason::ClientError { detail: error.to_string() };
                    }
                },
                () = sleep_until_opt(flush_recording_at), if flush_recording_at.is_some() => {
                    if let Some(recorder) = self.recorder.as_mut() {
                        recorder.send();
                    }
                }
            }
        }
    }

    /// The session is ending: wait (at most [`CLOSE_GRACE`]) for the decisions still on their
    /// way to the journal and carry them out, forwarding only if `forward` (the client left or
    /// broke the framing, but the authority to act still stands). A decision whose receipt
    /// does not come in time is recorded as not carried out.
    async fn settle<F>(&mut self, journaling: &mut Journaling<F>, forward: bool)
    where
        F: std::future::Future<Output = (Decided, Result<Recorded, JournalError>)>,
    {
        let give_up = Instant::now() + CLOSE_GRACE;
        while !journaling.is_empty() {
            match tokio::time::timeout_at(give_up, journaling.next()).await {
                Ok(Some((decided, receipt))) => {
                    // A journal failure ends the session anyway; it is recorded in `act`.
                    let _ = self.act(decided, receipt, forward).await;
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        session = %self.ctx.session_id,
                        waiting = journaling.len(),
                        "the journal did not confirm the last decisions in time; not carried out"
                    );
                    break;
                }
            }
        }
    }
    /// Decode and check one complete frame against the grant.
    fn decide(&self, frame: Vec<u8>) -> Decided {
        let ctx = self.ctx;
        let now = Instant::now();
        let at = Utc::now();
        let header = frame.first_chunk::<MBAP_LEN>().map(MbapHeader::parse);
        let (client_tid, unit) = header
            .map(|h| (h.transaction_id, h.unit_id))
            .unwrap_or((0, 0));
        let function = FunctionCode(frame.get(MBAP_LEN).copied().unwrap_or(0));
        let mut in_flight = InFlight {
            client_tid,
            unit,
            function,
            arrived: now,
            at,
            request: ModbusRequestRecord {
                transaction_id: client_tid,
                unit,
                function: function.0,
                ops: Vec::new(),
                values: Vec::new(),
            },
            bits: None,
        };
        let refuse = |in_flight, code: ExceptionCode, reason: String| Decided {
            frame: Vec::new(),
            in_flight,
            refusal: Some((code, reason)),
        };
        let adu = match Adu::new_checked(&frame) {
            Ok(adu) => adu,
            Err(error) => {
                let code = ExceptionCode::from(error);
                return refuse(in_flight, code, format!("malformed frame: {error}"));
            }
        };
        let request = match Request::parse(adu.pdu()) {
            Ok(request) => request,
            Err(error) => {
                let code = ExceptionCode::from(error);
                return refuse(in_flight, code, format!("malformed request: {error}"));
            }
        };
        let ops = request.ops(unit);
        in_flight.request.ops = ops.iter().copied().collect();
        in_flight.request.values = values_written(&request);
        in_flight.bits = bits_asked(&request);
        if !ctx.unit_ids.contains(&unit) {
            let reason = format!(
                "unit {unit} is not one of the asset's units {:?}",
                ctx.unit_ids
            );
            return refuse(in_flight, ExceptionCode::GATEWAY_PATH_UNAVAILABLE, reason);
        }
        if ops.is_empty() {
            return refuse(
                in_flight,
                ExceptionCode::ILLEGAL_FUNCTION,
                format!("function {} names no operation", function.0),
            );
        }
        for op in &ops {
            if let Some((code, reason)) = check(&ctx.scope, &ctx.asset_id, op) {
                return refuse(in_flight, code, reason);
            }
        }
        Decided {
            frame,
            in_flight,
            refusal: None,
        }
    }

    fn event_for(&self, decided: &Decided) -> Event {
        let subject = self.subject.clone();
        let request = decided.in_flight.request.clone();
        Event::Session(match &decided.refusal {
            None => SessionEvent::OperationForwarded { subject, request },
            Some((code, reason)) => SessionEvent::OperationRefused {
                subject,
                request,
                exception: code.0,
                reason: reason.clone(),
            },
        })
    }

    /// Carry out a decision with its journal receipt: refuse, or forward if `may_forward`
    /// (otherwise answer 0A: the session is closing). Without a receipt nothing is carried
    /// out: the client is told the appliance failed and the session must end (`Err`).
    async fn act(
        &mut self,
        decided: Decided,
        receipt: Result<Recorded, JournalError>,
        may_forward: bool,
    ) -> Result<(), SessionEndReason> {
        let receipt = match receipt {
            Ok(receipt) => receipt,
            Err(error) => {
                // Not journaled means not decided: never forward.
                self.refused += 1;
                let detail = error.to_string();
                self.send_exception(&decided.in_flight, ExceptionCode::SERVER_DEVICE_FAILURE);
                self.record(
                    decided.in_flight,
                    Decision::Refused,
                    Some(format!("journal unavailable: {detail}")),
                    ResponseRecord::Exception {
                        code: ExceptionCode::SERVER_DEVICE_FAILURE.0,
                        source: ExceptionSource::Broker,
                    },
                );
                return Err(SessionEndReason::JournalUnavailable { detail });
            }
        };
        match decided.refusal {
            Some((code, reason)) => {
                self.refused += 1;
                self.live.counters.refused.fetch_add(1, Ordering::Relaxed);
                self.send_exception(&decided.in_flight, code);
                let response = ResponseRecord::Exception {
                    code: code.0,
                    source: ExceptionSource::Broker,
                };
                self.record(decided.in_flight, Decision::Refused, Some(reason), response);
            }
            None if !may_forward => {
                let code = ExceptionCode::GATEWAY_PATH_UNAVAILABLE;
                self.send_exception(&decided.in_flight, code);
                let response = ResponseRecord::Exception {
                    code: code.0,
                    source: ExceptionSource::Broker,
                };
                let reason = "not forwarded: the session was closing".to_owned();
                self.record(decided.in_flight, Decision::Refused, Some(reason), response);
            }
            None => {
                self.forwarded += 1;
                self.live.counters.forwarded.fetch_add(1, Ordering::Relaxed);
                let forwarding = self
                    .upstream
                    .forward(&decided.frame, decided.in_flight, &receipt);
                let result = tokio::select! {
                    biased;
                    result = forwarding => result,
                    // A PLC that does not accept the connection must not hold a cancelled session.
                    () = self.ctx.cancel.cancelled() => Ok(()),
                };
                if let Err(event) = result {
                    self.answer(event);
                }
            }
        }
        Ok(())
    }
    /// Pass a response (or a gateway exception) back to the client and record the transaction.
    fn answer(&mut self, event: UpstreamEvent<InFlight>) {
        match event {
            UpstreamEvent::Answered { meta, pdu } => {
                let response = match Response::parse(meta.function, &pdu) {
                    Ok(Response::Exception(e)) => ResponseRecord::Exception {
                        code: e.code.0,
                        source: ExceptionSource::Plc,
                    },
                    Ok(response) => ResponseRecord::Ok {
                        values: values_read(&response, meta.bits),
                    },
                    Err(_) => ResponseRecord::Ok { values: Vec::new() },
                };
                let header = MbapHeader::for_pdu(meta.client_tid, meta.unit, pdu.len());
                if let Ok(header) = header {
                    self.out.extend_from_slice(&header.emit());
                    self.out.extend_from_slice(&pdu);
                }
                self.record(meta, Decision::Forwarded, None, response);
            }
            UpstreamEvent::Failed {
                meta,
                exception,
                detail,
            } => {
                tracing::debug!(session = %self.ctx.session_id, %detail, %exception, "answering for the PLC");
                self.send_exception(&meta, exception);
                let response = ResponseRecord::Exception {
                    code: exception.0,
                    source: ExceptionSource::Broker,
                };
                self.record(meta, Decision::Forwarded, Some(detail), response);
            }
        }
    }

    fn send_exception(&mut self, in_flight: &InFlight, code: ExceptionCode) {
        let adu =
            Exception::new(in_flight.function, code).adu(in_flight.client_tid, in_flight.unit);
        self.out.extend_from_slice(&adu);
    }

    fn record(
        &mut self,
        in_flight: InFlight,
        decision: Decision,
        reason: Option<String>,
        response: ResponseRecord,
    ) {
        let Some(recorder) = self.recorder.as_mut() else {
            return;
        };
        let latency = in_flight.arrived.elapsed();
        recorder.write(&RecordLine::Transaction(TransactionRecord {
            at: in_flight.at,
            transaction_id: in_flight.client_tid,
            unit: in_flight.unit,
            function: in_flight.function.0,
            ops: in_flight.request.ops,
            values_written: in_flight.request.values,
            decision,
            reason,
            response,
            latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        }));
    }
}

/// Ask the scope about one op; `Some` is a refusal with its exception and reason.
fn check(scope: &GrantScope, asset: &str, op: &ModbusOp) -> Option<(ExceptionCode, String)> {
    match scope.check_modbus(asset, op) {
        OpVerdict::Allow => None,
        OpVerdict::Refuse { reason, refusal } => {
            Some((ExceptionCode(refusal.exception_code()), reason.to_string()))
        }
    }
}

/// Read once into the spare room of `buf` (never past [`CLIENT_BUFFER`]), straight into its
/// spare capacity: no copy, no zeroing. Cancel-safe.
async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    if buf.len() >= CLIENT_BUFFER {
        // The caller reads only with room left; without room, wait for nothing.
        return std::future::pending().await;
    }
    let room = CLIENT_BUFFER - buf.len();
    buf.reserve_exact(room);
    let mut room = (&mut *buf).limit(room);
    reader.read_buf(&mut room).await
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn registers(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|w| match *w {
            [hi, lo] => u16::from_be_bytes([hi, lo]),
            _ => 0,
        })
        .collect()
}

fn bits(bytes: &[u8], count: usize) -> Vec<u16> {
    (0..count.min(bytes.len() * 8))
        .map(|i| {
            bytes
                .get(i / 8)
                .map_or(0, |b| u16::from((b >> (i % 8)) & 1))
        })
        .collect()
}

/// The values a request writes: registers, coils as 0/1, FC 22's masks.
fn values_written(request: &Request<'_>) -> Vec<u16> {
    match *request {
        Request::WriteSingleCoil { on, .. } => vec![u16::from(on)],
        Request::WriteSingleRegister { value, .. } => vec![value],
        Request::WriteMultipleCoils {
            quantity, values, ..
        } => bits(values, usize::from(quantity)),
        Request::WriteMultipleRegisters { values, .. }
        | Request::ReadWriteMultipleRegisters { values, .. } => registers(values),
        Request::MaskWriteRegister {
            and_mask, or_mask, ..
        } => vec![and_mask, or_mask],
        _ => Vec::new(),
    }
}

/// How many bits a bit read asks for.
fn bits_asked(request: &Request<'_>) -> Option<usize> {
    match *request {
        Request::ReadCoils { quantity, .. } | Request::ReadDiscreteInputs { quantity, .. } => {
            Some(usize::from(quantity))
        }
        _ => None,
    }
}

/// The values a response carries: registers, or bits as 0/1.
fn values_read(response: &Response<'_>, bits_asked: Option<usize>) -> Vec<u16> {
    match *response {
        Response::ReadHoldingRegisters { values }
        | Response::ReadInputRegisters { values }
        | Response::ReadWriteMultipleRegisters { values }
        | Response::ReadFifoQueue { values } => registers(values),
        Response::ReadCoils { values } | Response::ReadDiscreteInputs { values } => {
            bits(values, bits_asked.unwrap_or(values.len() * 8))
        }
        _ => Vec::new(),
    }
}
