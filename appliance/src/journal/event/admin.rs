//! Administration events: configuration changes, local accounts, vault entries (names only, never values).

use serde::{Deserialize, Serialize};

use super::Subjects;

/// Administration events: configuration changes, local accounts, vault entries (names only, never values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AdminEvent {}

impl Subjects for AdminEvent {
    fn kind(&self) -> &'static str {
        match *self {}
    }
}
