//! Access events: requests, decisions, approvals, denials, grants activated, ended, revoked.

use serde::{Deserialize, Serialize};

use super::Subjects;

/// Access events: requests, decisions, approvals, denials, grants activated, ended, revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AccessEvent {}

impl Subjects for AccessEvent {
    fn kind(&self) -> &'static str {
        match *self {}
    }
}
