//! Access requests, approvals and time-windowed grants: their lifecycle ([`GrantState`]), the
//! one `transition` function that journals every move, and the expiry task.
//!
//! - [`state`]: the states and the table of legal moves (pure).
//! - [`registry`]: requests and grants in memory, changed only by applying journal records.
//! - [`seams`]: what the service needs of the policy and the journal.
//! - [`service`]: submit, approve, deny, revoke, sign off, sessions, expiry (`Grants`).
//! - [`recheck`]: whether a new policy still covers a live grant's operations.
//!
//! Every move is journaled before it takes effect; the registry is rebuilt from the journal.
//! This module does not authenticate anyone: callers pass identities they authenticated
//! (the tunnel for IT requesters, the OT store for approvers).

pub mod adapters;
pub mod recheck;
pub mod registry;
pub mod seams;
pub mod service;
pub mod state;
pub mod view;

pub use registry::{GrantRecord, Registry};
pub use seams::{AccessPolicy, Answer, Ask, Recorder, Terms};
pub use service::{GrantError, Grants, ListFilter, SessionLease};
pub use state::GrantState;

#[cfg(test)]
pub(crate) mod tests;
