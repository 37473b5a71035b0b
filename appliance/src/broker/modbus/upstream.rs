//! The appliance's own connection to the PLC for one broker session.
//!
//! Its own framing (MBAP via `wire::modbus::frame_len`, not tokio-modbus), because vendor
//! function codes such as FC 90 must pass unchanged and tokio-modbus cannot carry them.
//! Transaction ids are mapped both ways: each forwarded request gets a fresh upstream id, and
//! the response is matched back to the client's id, unit and function, so two clients' ids never
//! meet at the PLC and a late or stray response is never passed to the wrong request.
//!
//! Failures become the gateway exceptions of the Modbus spec (section 7): a PLC that refuses or
//! closes the connection answers every request in flight with 0A (gateway path unavailable); a
//! PLC that does not answer within the configured timeout, or answers with bytes that are not a
//! response to the request, gets 0B (gateway target device failed to respond). The connection is
//! opened lazily and reopened on the next request after a failure.
//!
//! Bounds: the session never has more than `MAX_IN_FLIGHT` requests in flight (it stops reading
//! its client), the receive buffer never holds more than one partial frame plus one read, and
//! [`Upstream::next_event`] is cancel-safe so the session can `select!` on it.
//!
//! It does not decide anything: a request reaches [`Upstream::forward`] only with the journal's
//! [`Recorded`] receipt for its `OperationForwarded` record.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::journal::Recorded;
use crate::wire::modbus::{
    frame_len, rewrite_transaction_id, Adu, ExceptionCode, FrameStatus, FunctionCode, Response,
    MAX_ADU_LEN,
};

/// The most requests one session may have in flight at the PLC at once.
pub const MAX_IN_FLIGHT: usize = 16;

/// Capacity of the receive buffer: one partial frame plus one read.
const RX_CAPACITY: usize = 2 * MAX_ADU_LEN;

/// What came back for a forwarded request.
#[derive(Debug)]
pub enum UpstreamEvent<T> {
    /// The PLC answered (a normal response or its own exception).
    Answered {
        /// What the session attached to the request.
        meta: T,
        /// The response PDU (function code and data, at most 253 bytes).
        pdu: Vec<u8>,
    },
    /// The broker must answer for the PLC with a gateway exception.
    Failed {
        /// What the session attached to the request.
        meta: T,
        /// 0A or 0B.
        exception: ExceptionCode,
        /// Why, for the recording and the operator's log.
        detail: String,
    },
}

/// A request in flight at the PLC.
#[derive(Debug)]
struct Pending<T> {
    meta: T,
    unit: u8,
    function: FunctionCode,
    deadline: Instant,
}

#[derive(Debug)]
struct Connection {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    rx: Vec<u8>,
}

/// One session's connection to its PLC.
#[derive(Debug)]
pub struct Upstream<T> {
    addr: SocketAddr,
    timeout: Duration,
    conn: Option<Connection>,
    next_tid: u16,
    /// Requests in flight, by upstream transaction id; at most `MAX_IN_FLIGHT`.
    pending: HashMap<u16, Pending<T>>,
    /// Events already known (failures of several requests at once), handed out first.
    ready: VecDeque<UpstreamEvent<T>>,
}

impl<T> Upstream<T> {
    /// An upstream towards `addr`; nothing is connected until the first request.
    pub fn new(addr: SocketAddr, timeout: Duration) -> Self {
        Self {
            addr,
            timeout,
            conn: None,
            next_tid: 1,
            pending: HashMap::with_capacity(MAX_IN_FLIGHT),
            ready: VecDeque::new(),
        }
    }

    /// Requests forwarded and not yet answered (or failed).
    pub fn in_flight(&self) -> usize {
        self.pending.len() + self.ready.len()
    }

    /// Whether another request may be forwarded now.
    pub fn has_room(&self) -> bool {
        self.in_flight() < MAX_IN_FLIGHT
    }

    /// Send one request frame (a complete, checked ADU) to the PLC under a fresh transaction id.
    ///
    /// `_receipt` proves the decision to forward is in the journal. On failure the request is
    /// handed back as a [`UpstreamEvent::Failed`] to answer at once.
    pub async fn forward(
        &mut self,
        frame: &[u8],
        meta: T,
        _receipt: &Recorded,
    ) -> Result<(), UpstreamEvent<T>> {
        let (unit, function) = match Adu::new_checked(frame) {
            Ok(adu) => (adu.unit_id(), adu.function()),
            Err(e) => {
                return Err(UpstreamEvent::Failed {
                    meta,
                    exception: ExceptionCode::GATEWAY_PATH_UNAVAILABLE,
                    detail: format!("not a frame: {e}"),
                })
            }
        };
        if self.pending.len() >= MAX_IN_FLIGHT {
            return Err(UpstreamEvent::Failed {
                meta,
                exception: ExceptionCode::SERVER_DEVICE_BUSY,
                detail: format!("{MAX_IN_FLIGHT} requests already in flight"),
            });
        }
        if self.conn.is_none() {
            match tokio::time::timeout(self.timeout, TcpStream::connect(self.addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    let (reader, writer) = stream.into_split();
                    self.conn = Some(Connection {
                        reader,
                        writer,
                        rx: Vec::with_capacity(RX_CAPACITY),
                    });
                    tracing::debug!(addr = %self.addr, "upstream connected");
                }
                Ok(Err(error)) => {
                    return Err(UpstreamEvent::Failed {
                        meta,
                        exception: ExceptionCode::GATEWAY_PATH_UNAVAILABLE,
                        detail: format!("cannot connect to {}: {error}", self.addr),
                    })
                }
                Err(_) => {
                    return Err(UpstreamEvent::Failed {
                        meta,
                        exception: ExceptionCode::GATEWAY_TARGET_FAILED_TO_RESPOND,
                        detail: format!(
                            "connecting to {} took longer than {}",
                            self.addr,
                            humantime::format_duration(self.timeout)
                        ),
                    })
                }
            }
        }
        let tid = self.allocate_tid();
        let mut out = [0u8; MAX_ADU_LEN];
        let Some(slot) = out.get_mut(..frame.len()) else {
            return Err(UpstreamEvent::Failed {
                meta,
                exception: ExceptionCode::GATEWAY_PATH_UNAVAILABLE,
                detail: format!("frame of {} bytes is over {MAX_ADU_LEN}", frame.len()),
            });
        };
        slot.copy_from_slice(frame);
        let _ = rewrite_transaction_id(slot, tid);
        let Some(conn) = self.conn.as_mut() else {
            return Err(UpstreamEvent::Failed {
                meta,
                exception: ExceptionCode::GATEWAY_PATH_UNAVAILABLE,
                detail: "no connection".into(),
            });
        };
        let written = tokio::time::timeout(self.timeout, conn.writer.write_all(slot)).await;
        match written {
            Ok(Ok(())) => {
                let deadline = Instant::now() + self.timeout;
                self.pending.insert(
                    tid,
                    Pending {
                        meta,
                        unit,
                        function,
                        deadline,
                    },
                );
                Ok(())
            }
            Ok(Err(error)) => {
                self.fail_all(ExceptionCode::GATEWAY_PATH_UNAVAILABLE, &error.to_string());
                Err(UpstreamEvent::Failed {
                    meta,
                    exception: ExceptionCode::GATEWAY_PATH_UNAVAILABLE,
                    detail: format!("sending to {} failed: {error}", self.addr),
                })
            }
            Err(_) => {
                self.fail_all(
                    ExceptionCode::GATEWAY_TARGET_FAILED_TO_RESPOND,
                    "send timed out",
                );
                Err(UpstreamEvent::Failed {
                    meta,
                    exception: ExceptionCode::GATEWAY_TARGET_FAILED_TO_RESPOND,
                    detail: format!("{} did not accept the request in time", self.addr),
                })
            }
        }
    }

    /// The next response or failure. Cancel-safe; pends forever while nothing is in flight.
    pub async fn next_event(&mut self) -> UpstreamEvent<T> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return event;
            }
            if let Some(event) = self.take_frame() {
                return event;
            }
            let earliest = self.pending.values().map(|p| p.deadline).min();
            let Some(conn) = self.conn.as_mut() else {
                // Nothing connected means nothing in flight (a failed connection fails all).
                std::future::pending::<()>().await;
                continue;
            };
            let read = async {
                if conn.rx.len() >= RX_CAPACITY {
                    // Cannot happen (take_frame consumes or fails a full buffer); never grow.
                    return Err(io::Error::other("receive buffer full"));
                }
                let room = RX_CAPACITY - conn.rx.len();
                let mut chunk = [0u8; RX_CAPACITY];
                let chunk = chunk.get_mut(..room).unwrap_or_default();
                let n = conn.reader.read(chunk).await?;
                conn.rx
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
                Ok(n)
            };
            tokio::select! {
                result = read => match result {
                    Ok(0) => self.fail_all(
                        ExceptionCode::GATEWAY_PATH_UNAVAILABLE,
                        "the PLC closed the connection",
                    ),
                    Ok(_) => {}
                    Err(error) => self.fail_all(
                        ExceptionCode::GATEWAY_PATH_UNAVAILABLE,
                        &format!("reading from the PLC failed: {error}"),
                    ),
                },
                () = sleep_until_opt(earliest) => self.expire(),
            }
        }
    }

    /// Hand back every request still in flight (the session is ending).
    pub fn abandon(&mut self) -> Vec<T> {
        let mut metas: Vec<T> = self
            .ready
            .drain(..)
            .map(|e| match e {
                UpstreamEvent::Answered { meta, .. } | UpstreamEvent::Failed { meta, .. } => meta,
            })
            .collect();
        metas.extend(self.pending.drain().map(|(_, p)| p.meta));
        self.conn = None;
        metas
    }

    fn allocate_tid(&mut self) -> u16 {
        // At most MAX_IN_FLIGHT ids are taken, so this loop ends within MAX_IN_FLIGHT + 1 steps.
        loop {
            let tid = self.next_tid;
            self.next_tid = self.next_tid.wrapping_add(1);
            if !self.pending.contains_key(&tid) {
                return tid;
            }
        }
    }

    /// Cut one complete frame from the receive buffer and match it to its request.
    fn take_frame(&mut self) -> Option<UpstreamEvent<T>> {
        let conn = self.conn.as_mut()?;
        let len = match frame_len(&conn.rx) {
            FrameStatus::NeedMore => return None,
            FrameStatus::Complete(len) => len,
            FrameStatus::Invalid(error) => {
                self.fail_all(
                    ExceptionCode::GATEWAY_TARGET_FAILED_TO_RESPOND,
                    &format!("the PLC sent bytes that are not Modbus TCP: {error}"),
                );
                return self.ready.pop_front();
            }
        };
        let frame: Vec<u8> = conn.rx.drain(..len).collect();
        let Ok(adu) = Adu::new_checked(&frame) else {
            return None;
        };
        let tid = adu.transaction_id();
        let Some(pending) = self.pending.remove(&tid) else {
            tracing::debug!(
                tid,
                "dropping a response to no request in flight (late or stray)"
            );
            return None;
        };
        if adu.unit_id() != pending.unit {
            return Some(UpstreamEvent::Failed {
                meta: pending.meta,
                exception: ExceptionCode::GATEWAY_TARGET_FAILED_TO_RESPOND,
                detail: format!(
                    "the PLC answered for unit {} instead of {}",
                    adu.unit_id(),
                    pending.unit
                ),
            });
        }
        match Response::parse(pending.function, adu.pdu()) {
            Ok(_) => Some(UpstreamEvent::Answered {
                meta: pending.meta,
                pdu: adu.pdu().to_vec(),
            }),
            Err(error) => Some(UpstreamEvent::Failed {
                meta: pending.meta,
                exception: ExceptionCode::GATEWAY_TARGET_FAILED_TO_RESPOND,
                detail: format!("the PLC's response does not decode: {error}"),
            }),
        }
    }

    /// Fail every request past its deadline with 0B.
    fn expire(&mut self) {
        let now = Instant::now();
        let expired: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(tid, _)| *tid)
            .collect();
        for tid in expired {
            if let Some(pending) = self.pending.remove(&tid) {
                self.ready.push_back(UpstreamEvent::Failed {
                    meta: pending.meta,
                    exception: ExceptionCode::GATEWAY_TARGET_FAILED_TO_RESPOND,
                    detail: format!(
                        "the PLC did not answer within {}",
                        humantime::format_duration(self.timeout)
                    ),
                });
            }
        }
    }

    /// Drop the connection and fail every request in flight.
    fn fail_all(&mut self, exception: ExceptionCode, detail: &str) {
        if self.conn.take().is_some() {
            tracing::debug!(addr = %self.addr, detail, "upstream connection dropped");
        }
        for (_, pending) in self.pending.drain() {
            self.ready.push_back(UpstreamEvent::Failed {
                meta: pending.meta,
                exception,
                detail: detail.to_owned(),
            });
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
