//! Broker session events: sessions started and ended, OT operations forwarded or refused.
//!
//! Each forwarded or refused operation is a decision, journaled before it takes effect: the
//! broker forwards a request to the PLC only after its `OperationForwarded` record is durable,
//! and answers a refusal only after its `OperationRefused` record is. What the PLC answered is
//! not a decision; it goes to the session recording (`broker::modbus::recording`).

use otgate_policy::modbus::ModbusOp;
use serde::{Deserialize, Serialize};

use super::Subjects;

/// Who and what a session is: repeated in each session record so every record stands alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSubject {
    /// The session's id (also the name of its recording).
    pub session_id: String,
    /// The grant the session runs under.
    pub grant_id: String,
    /// The IT identity that opened the session.
    pub identity: String,
    /// The OT asset the session reaches.
    pub asset_id: String,
}

/// One Modbus request as the broker saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModbusRequestRecord {
    /// The client's MBAP transaction id.
    pub transaction_id: u16,
    /// The MBAP unit id.
    pub unit: u8,
    /// The raw function code.
    pub function: u8,
    /// The operations the request performs (two for FC 23), empty when it did not decode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<ModbusOp>,
    /// The values written: registers, coils as 0/1, FC 22's AND and OR masks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<u16>,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SessionEndReason {
    /// The client closed its connection.
    ClientClosed,
    /// Reading from or writing to the client failed.
    ClientError {
        /// The I/O error.
        detail: String,
    },
    /// The grant's window ended.
    WindowEnded,
    /// The session was cancelled: grant revoked or ended, session killed, or appliance shutdown.
    Cancelled,
    /// An OT operator killed the session (`otgate sessions kill`; see `SessionKilled`).
    Killed,
    /// Nothing was sent for the rule's idle timeout.
    IdleTimeout,
    /// The client sent bytes that are not Modbus TCP framing; the stream cannot be resynchronised.
    ProtocolViolation {
        /// What was wrong, with the numbers.
        detail: String,
    },
    /// A decision could not be journaled, so nothing more can be forwarded.
    JournalUnavailable {
        /// The journal's error.
        detail: String,
    },
    /// The appliance stopped abruptly (crash, power loss, kill) before the session could
    /// journal its end; journaled at the next start (`broker::modbus::history::close_unclean`).
    Unclean {
        /// What is known: that the appliance stopped, and the seq of the session's start.
        detail: String,
    },
}

impl core::fmt::Display for SessionEndReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SessionEndReason::ClientClosed => f.write_str("client closed"),
            SessionEndReason::ClientError { detail } => write!(f, "client error: {detail}"),
            SessionEndReason::WindowEnded => f.write_str("window ended"),
            SessionEndReason::Cancelled => f.write_str("cancelled (revoked, killed or shut down)"),
            SessionEndReason::Killed => f.write_str("killed by an OT operator"),
            SessionEndReason::IdleTimeout => f.write_str("idle timeout"),
            SessionEndReason::ProtocolViolation { detail } => {
                write!(f, "protocol violation: {detail}")
            }
            SessionEndReason::JournalUnavailable { detail } => {
                write!(f, "journal unavailable: {detail}")
            }
            SessionEndReason::Unclean { detail } => write!(f, "ended (unclean): {detail}"),
        }
    }
}

/// Broker session events: sessions started and ended, OT operations forwarded or refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SessionEvent {
    /// A broker session started.
    SessionStarted {
        /// Session, grant, identity, asset.
        #[serde(flatten)]
        subject: SessionSubject,
        /// The PLC address the appliance forwards to.
        upstream: String,
    },
    /// A request fitted the grant and is about to be forwarded to the PLC.
    OperationForwarded {
        /// Session, grant, identity, asset.
        #[serde(flatten)]
        subject: SessionSubject,
        /// The request.
        request: ModbusRequestRecord,
    },
    /// A request was refused and answered with an exception; it never reached the PLC.
    OperationRefused {
        /// Session, grant, identity, asset.
        #[serde(flatten)]
        subject: SessionSubject,
        /// The request.
        request: ModbusRequestRecord,
        /// The Modbus exception code sent back (01, 02, 03, 0A, ...).
        exception: u8,
        /// Why, in words.
        reason: String,
    },
    /// A broker session ended.
    SessionEnded {
        /// Session, grant, identity, asset.
        #[serde(flatten)]
        subject: SessionSubject,
        /// Why.
        #[serde(flatten)]
        reason: SessionEndReason,
        /// Requests forwarded to the PLC.
        forwarded: u64,
        /// Requests refused.
        refused: u64,
    },
    /// An OT operator asked to end a session (`otgate sessions kill`).
    SessionKilled {
        /// The session.
        session_id: String,
        /// The OT identity that killed it.
        by: String,
    },
}

impl SessionEvent {
    fn subject(&self) -> Option<&SessionSubject> {
        match self {
            SessionEvent::SessionStarted { subject, .. }
            | SessionEvent::OperationForwarded { subject, .. }
            | SessionEvent::OperationRefused { subject, .. }
            | SessionEvent::SessionEnded { subject, .. } => Some(subject),
            SessionEvent::SessionKilled { .. } => None,
        }
    }
}

impl Subjects for SessionEvent {
    fn kind(&self) -> &'static str {
        match self {
            SessionEvent::SessionStarted { .. } => "session_started",
            SessionEvent::OperationForwarded { .. } => "operation_forwarded",
            SessionEvent::OperationRefused { .. } => "operation_refused",
            SessionEvent::SessionEnded { .. } => "session_ended",
            SessionEvent::SessionKilled { .. } => "session_killed",
        }
    }
    fn actor(&self) -> Option<&str> {
        match self {
            SessionEvent::SessionKilled { by, .. } => Some(by),
            _ => self.subject().map(|s| s.identity.as_str()),
        }
    }
    fn asset(&self) -> Option<&str> {
        self.subject().map(|s| s.asset_id.as_str())
    }
    fn grant(&self) -> Option<&str> {
        self.subject().map(|s| s.grant_id.as_str())
    }
    fn session(&self) -> Option<&str> {
        match self {
            SessionEvent::SessionKilled { session_id, .. } => Some(session_id),
            _ => self.subject().map(|s| s.session_id.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_snake_case_and_round_trip() {
        let event = SessionEvent::SessionEnded {
            subject: SessionSubject {
                session_id: "s-1".into(),
                grant_id: "g-1".into(),
                identity: "alice".into(),
                asset_id: "line3-plc".into(),
            },
            reason: SessionEndReason::ProtocolViolation {
                detail: "protocol id 7".into(),
            },
            forwarded: 3,
            refused: 1,
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["kind"], "session_ended");
        assert_eq!(json["reason"], "protocol_violation");
        assert_eq!(json["session_id"], "s-1");
        let back: SessionEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.session(), Some("s-1"));
        assert_eq!(back.actor(), Some("alice"));
    }
}
