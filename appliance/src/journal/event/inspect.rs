//! Passive inspection events: alerts raised by the monitor, and changes to the asset inventory
//! (what the `inventory` state view is rebuilt from). Not every packet: an asset is recorded
//! when it is first seen, when it shows something new (a role, port, unit id, function code,
//! range, peer, MAC, ...), and at most once an hour otherwise, to move its last-seen time.

use serde::{Deserialize, Serialize};

use super::Subjects;
use crate::inspect::event::{AlertKind, Protocol, Severity};
use crate::inspect::inventory::Asset;

/// Passive inspection events.
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
    /// Passive inspection saw an asset, or something new about one. The record holds what was
    /// seen since the last record of this asset by the same monitor (`messages` counts only
    /// those); the inventory view merges it into what it knows.
    AssetObserved {
        /// The asset as seen (address, facts, first and last seen in capture time).
        asset: Box<Asset>,
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
            InspectEvent::AssetObserved { .. } => "asset_observed",
        }
    }

    fn asset(&self) -> Option<&str> {
        match self {
            InspectEvent::Alert { asset, .. } => Some(asset),
            InspectEvent::AssetObserved { .. } => None,
        }
    }
}
