//! What the grants service needs from the rest of the appliance, as two narrow traits: the policy
//! ([`AccessPolicy`]) and the journal ([`Recorder`]).
//!
//! The real implementations are `otgate_policy::Policy` and `journal::Journal`
//! (`grants/adapters.rs`); keeping the service behind these seams keeps its logic readable and
//! lets unit tests count journal writes. Nothing here decides anything.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::journal::event::{Event, GrantMode, RoleCount};

/// A request as the requester states it, after authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    /// The authenticated IT identity.
    pub requester: String,
    /// The asset asked for.
    pub asset: String,
    /// The operations, as `--op` strings (`read`, `write:holding-registers:100-199`).
    pub operations: Vec<String>,
    /// When the window should start.
    pub start: DateTime<Utc>,
    /// How long it should last, seconds.
    pub duration_secs: u64,
    /// The change ticket.
    pub ticket: Option<String>,
    /// Why.
    pub reason: String,
    /// The address the request came from.
    pub source: Option<IpAddr>,
    /// Whether the requester passed a second factor.
    pub mfa: bool,
    /// Whether this is a break-glass activation (only emergency rules apply).
    #[serde(default)]
    pub emergency: bool,
}

/// What policy grants when it allows a request (at once or after approvals).
#[derive(Debug, Clone, PartialEq)]
pub struct Terms {
    /// The deciding rule.
    pub rule: String,
    /// How it gets approved.
    pub mode: GrantMode,
    /// The granted scope (`otgate_policy::GrantScope`, serialized).
    pub scope: serde_json::Value,
    /// The window's start.
    pub start: DateTime<Utc>,
    /// The window's end, clipped.
    pub end: DateTime<Utc>,
    /// Idle timeout of its sessions, seconds.
    pub idle_timeout_secs: u64,
    /// Whether the grant ends when its last session disconnects.
    pub end_on_last_disconnect: bool,
    /// Triggers that revoke it.
    pub revoke_on: Vec<String>,
    /// Approvals required per role (empty for auto and emergency).
    pub approvals_required: Vec<RoleCount>,
    /// If not empty, only these OT identities may approve.
    pub approvers: Vec<String>,
    /// The decision in words.
    pub words: String,
}

/// Policy's answer to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Granted by policy alone (auto or emergency).
    Allow(Terms),
    /// Granted once the approvals in `terms.approvals_required` are given.
    NeedApproval(Terms),
    /// Refused, with the reason in words.
    Deny(String),
}

/// How a set of approvals stands against a requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Approvals still missing per role.
    pub missing: Vec<RoleCount>,
    /// For the newest approver: the role they count for, or why they do not count.
    pub newest: Result<String, String>,
}

/// What the grants service asks of the active policy.
pub trait AccessPolicy: Send + Sync + std::fmt::Debug {
    /// Decide a request at `now`.
    fn decide(&self, ask: &Ask, now: DateTime<Utc>) -> Answer;
    /// The roles of an OT identity; `None` when the policy names no such OT identity.
    fn ot_roles(&self, id: &str) -> Option<Vec<String>>;
    /// Count `approvers` (in order; the last is the newest) against a requirement: distinct
    /// people, never the requester, each filling one slot of one role they hold.
    fn tally(
        &self,
        required: &[RoleCount],
        allowed: &[String],
        requester: &str,
        approvers: &[String],
    ) -> Tally;
    /// Whether `id` is a supervising OT identity (kind `approver` in the policy, as opposed to
    /// an `operator`): who may revoke grants and sign off emergency use at the console.
    fn ot_supervises(&self, id: &str) -> bool;
    /// Whether `id` is an IT identity (people and vendors who ask).
    fn is_it_identity(&self, id: &str) -> bool;
    /// When an IT identity's account expires, if it does.
    fn account_expiry(&self, id: &str) -> Option<DateTime<Utc>>;
    /// Whether this policy still covers a live grant; `Err` says what it no longer covers.
    fn still_covers(
        &self,
        requester: &str,
        asset: &str,
        rule: &str,
        operations: &[String],
    ) -> Result<(), String>;
}

/// The journal failed or refused a record; the move did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("journal: {0}")]
pub struct RecordError(pub String);

/// A boxed future, so [`Recorder`] stays object safe.
pub type RecordFuture<'a> = Pin<Box<dyn Future<Output = Result<(), RecordError>> + Send + 'a>>;

/// Appends an event durably before the caller goes on.
pub trait Recorder: Send + Sync + std::fmt::Debug {
    /// Append `event`; `reserved` uses the journal's reserve (denials, break-glass).
    fn record(&self, event: Event, reserved: bool) -> RecordFuture<'_>;
}
