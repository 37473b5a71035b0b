//! Passive inspection events: alerts raised by the monitor.

use serde::{Deserialize, Serialize};

use super::Subjects;

/// Passive inspection events: alerts raised by the monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum InspectEvent {}

impl Subjects for InspectEvent {
    fn kind(&self) -> &'static str {
        match *self {}
    }
}
