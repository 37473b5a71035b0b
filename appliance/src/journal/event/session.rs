//! Broker session events: sessions started and ended, OT operations forwarded or refused.

use serde::{Deserialize, Serialize};

use super::Subjects;

/// Broker session events: sessions started and ended, OT operations forwarded or refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SessionEvent {}

impl Subjects for SessionEvent {
    fn kind(&self) -> &'static str {
        match *self {}
    }
}
