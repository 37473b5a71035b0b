//! Policy events: bundles activated or refused, grace periods, trust-root rotations.

use serde::{Deserialize, Serialize};

use super::Subjects;

/// Policy events: bundles activated or refused, grace periods, trust-root rotations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PolicyEvent {}

impl Subjects for PolicyEvent {
    fn kind(&self) -> &'static str {
        match *self {}
    }
}
