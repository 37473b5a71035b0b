//! Events about the journal itself: initialization, torn tails cut, state rebuilt, budget.

use serde::{Deserialize, Serialize};

use super::Subjects;

/// Events about the journal itself: initialization, torn tails cut, state rebuilt, budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum JournalEvent {}

impl Subjects for JournalEvent {
    fn kind(&self) -> &'static str {
        match *self {}
    }
}
