//! Passive inspection events: alerts raised by the monitor.

use serde::{Deserialize, Serialize};

use super::Subjects;
use crate::inspect::event::{AlertKind, Protocol, Severity};

/// Passive inspection events: alerts raised by the monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum InspectEvent {
    /// The passive monitor raised an alert (capture time, not journal time, in `time`).
    Alert {
        /// When the traffic that raised it was captured (RFC 3339).
        time: chrono::DateTime<chrono::Utc>,
        /// What kind of alert (`unauthorized_write`, `new_talker`, ...).
        alert: AlertKind,
        /// How bad.
        severity: Severity,
        /// `src -> dst` of the message.
        flow: String,
        /// The policy asset id, or the device's address when policy does not name it.
        asset: String,
        /// The protocol, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol: Option<Protocol>,
        /// What exactly.
        detail: String,
    },
}

impl InspectEvent {
    /// The journal record of an alert.
    pub fn from_alert(a: &crate::inspect::event::Alert) -> Self {
        InspectEvent::Alert {
            time: a.time,
            alert: a.kind,
            severity: a.severity,
            flow: a.flow.clone(),
            asset: a.asset.clone(),
            protocol: a.protocol,
            detail: a.detail.clone(),
        }
    }
}

impl Subjects for InspectEvent {
    fn kind(&self) -> &'static str {
        match self {
            InspectEvent::Alert { .. } => "alert",
        }
    }

    fn asset(&self) -> Option<&str> {
        match self {
            InspectEvent::Alert { asset, .. } => Some(asset),
        }
    }
}
