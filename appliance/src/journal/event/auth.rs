//! Authentication events: logins that succeeded or failed, on the IT and OT sides.

use serde::{Deserialize, Serialize};

use super::Subjects;

/// Authentication events: logins that succeeded or failed, on the IT and OT sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthEvent {}

impl Subjects for AuthEvent {
    fn kind(&self) -> &'static str {
        match *self {}
    }
}
