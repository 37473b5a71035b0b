//! Access events: requests, decisions, approvals, denials, grants activated, ended, revoked.
//!
//! Each lifecycle move of `grants::GrantState` is exactly one of these records, written before
//! the move takes effect; the grants view (`grants::view`) is rebuilt from them alone, so each
//! record carries everything its move needs (the submission carries the scope, the approvals
//! still needed, the clipped window and the rule's end conditions). `Refused` records an attempt
//! that changed nothing (an approval from the requester, a revoke of an ended grant, ...).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Subjects;

/// How many approvals one role must give.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleCount {
    /// The OT role.
    pub role: String,
    /// How many distinct people of that role.
    pub count: u32,
}

/// How a grant came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantMode {
    /// OT approvers approve it.
    Approvers,
    /// Policy approves it by itself (low risk).
    Auto,
    /// Granted first, reviewed afterwards (break-glass).
    Emergency,
}

/// Why a grant ended by itself or by its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Its window ran out.
    Expired,
    /// No session used it for its idle timeout.
    Idle,
    /// Its last session disconnected and the rule ends grants then.
    LastDisconnect,
    /// Its user closed it.
    Closed,
    /// It ran out while the daemon was down; ended when the daemon started.
    ExpiredWhileDown,
}

/// Why a grant was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeCause {
    /// An OT user revoked it by hand.
    Manual,
    /// A newly activated policy no longer covers it.
    PolicyChange,
    /// The requester's (vendor) account expired.
    AccountExpired,
    /// A trigger the policy names fired (a denied write on a safety asset, an inspection alert).
    Trigger,
}

/// A submitted request that policy allowed: everything the grants view needs to rebuild it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    /// `R-0001`.
    pub request_id: String,
    /// `G-0001` when policy approved it by itself (auto or emergency).
    pub grant_id: Option<String>,
    /// The IT identity that asked.
    pub requester: String,
    /// The asset asked for.
    pub asset: String,
    /// The operations asked for, as the requester wrote them.
    pub operations: Vec<String>,
    /// The rule that decided.
    pub rule: String,
    /// How it gets approved.
    pub mode: GrantMode,
    /// The granted scope (clipped to the rule).
    pub scope: serde_json::Value,
    /// The window's start.
    pub start: DateTime<Utc>,
    /// The window's end (clipped to the rule, the schedule and the account's expiry).
    pub end: DateTime<Utc>,
    /// What the decision said in words (clipping, approvals needed).
    pub decision: String,
    /// Approvals needed, per role.
    pub approvals_required: Vec<RoleCount>,
    /// If not empty, only these OT identities may approve.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Idle timeout of its sessions, seconds.
    pub idle_timeout_secs: u64,
    /// Whether the grant ends when its last session disconnects.
    pub end_on_last_disconnect: bool,
    /// Triggers that revoke it (policy names).
    pub revoke_on: Vec<String>,
    /// The change ticket given.
    pub ticket: Option<String>,
    /// The reason given.
    pub reason: String,
    /// The address the request came from.
    pub source: Option<String>,
    /// Whether the requester passed MFA.
    pub mfa: bool,
    /// When it was submitted.
    pub at: DateTime<Utc>,
}

/// Access events: requests, decisions, approvals, denials, grants activated, ended, revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AccessEvent {
    /// A request was submitted and policy allowed it (now `requested`, `approved` or `active`).
    RequestSubmitted(Box<Submission>),
    /// A request was refused by policy when submitted (now `denied`).
    RequestRefused {
        /// `R-0001`.
        request_id: String,
        /// The IT identity that asked.
        requester: String,
        /// The asset asked for.
        asset: String,
        /// The operations asked for.
        operations: Vec<String>,
        /// Why, in words.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// One OT approver approved; more may be needed.
    ApprovalGiven {
        /// `R-0001`.
        request_id: String,
        /// The OT identity.
        approver: String,
        /// The role it was counted for.
        role: String,
        /// Approvals still missing after this one, per role.
        missing: Vec<RoleCount>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The approvals are complete: the request is now an `approved` grant.
    RequestApproved {
        /// `R-0001`.
        request_id: String,
        /// `G-0001`.
        grant_id: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// An OT approver denied the request (now `denied`).
    RequestDenied {
        /// `R-0001`.
        request_id: String,
        /// The OT identity.
        approver: String,
        /// Why.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The request's window passed before it was approved or could start (now `expired`).
    RequestExpired {
        /// `R-0001`.
        request_id: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The grant's window opened (now `active`).
    GrantActivated {
        /// `R-0001`.
        request_id: String,
        /// `G-0001`.
        grant_id: String,
        /// When it ends.
        end: DateTime<Utc>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The grant ends soon; its user and the console were warned.
    GrantWarning {
        /// `G-0001`.
        grant_id: String,
        /// Minutes left (10 or 2).
        minutes_left: u32,
        /// When.
        at: DateTime<Utc>,
    },
    /// The grant ended (now `ended`).
    GrantEnded {
        /// `R-0001`.
        request_id: String,
        /// `G-0001`.
        grant_id: String,
        /// Why.
        reason: EndReason,
        /// When.
        at: DateTime<Utc>,
    },
    /// The grant or pending request was revoked (now `revoked`).
    GrantRevoked {
        /// `R-0001`.
        request_id: String,
        /// `G-0001`, if it had become a grant.
        grant_id: Option<String>,
        /// Who revoked it (an OT identity, or `policy`).
        by: String,
        /// What caused it.
        cause: RevokeCause,
        /// Why, in words.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// An OT supervisor (or HQ) signed off an emergency grant's use.
    ReviewSignedOff {
        /// `R-0001`.
        request_id: String,
        /// `G-0001`.
        grant_id: String,
        /// Who signed off.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// HQ's signed review record was verified and imported: every grant it names is signed off
    /// by this one record (all or none).
    ReviewImported {
        /// SHA-256 of the record's signed part, hex (its identity; a replay names it again).
        record: String,
        /// The reviewer HQ names.
        reviewer: String,
        /// `justified` or `unjustified`.
        verdict: String,
        /// HQ's comment.
        comment: String,
        /// When HQ issued it.
        issued_at: DateTime<Utc>,
        /// The authority keys whose signatures counted.
        signers: Vec<String>,
        /// The grants signed off (`G-0001`), with their requests in the same order.
        grant_ids: Vec<String>,
        /// The requests of those grants (`R-0001`).
        request_ids: Vec<String>,
        /// When it was imported.
        at: DateTime<Utc>,
    },
    /// How long an active grant has been in use, on the monotonic clock: a checkpoint, so that
    /// after a restart a wall clock set back cannot give the grant more time than it had left.
    GrantProgress {
        /// `G-0001`.
        grant_id: String,
        /// Seconds of its window used so far.
        active_secs: u64,
        /// When.
        at: DateTime<Utc>,
    },
    /// An attempt that changed nothing: an approval, denial, revoke or sign-off refused.
    Refused {
        /// What was attempted: `approve`, `deny`, `revoke`, `sign_off`, `request`.
        action: String,
        /// The request or grant named, as given.
        target: String,
        /// Who attempted it.
        actor: String,
        /// Why it was refused.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
}

impl AccessEvent {
    /// The request this record is about, if any.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::RequestSubmitted(s) => Some(&s.request_id),
            Self::RequestRefused { request_id, .. }
            | Self::ApprovalGiven { request_id, .. }
            | Self::RequestApproved { request_id, .. }
            | Self::RequestDenied { request_id, .. }
            | Self::RequestExpired { request_id, .. }
            | Self::GrantActivated { request_id, .. }
            | Self::GrantEnded { request_id, .. }
            | Self::GrantRevoked { request_id, .. }
            | Self::ReviewSignedOff { request_id, .. } => Some(request_id),
            Self::GrantWarning { .. }
            | Self::GrantProgress { .. }
            | Self::ReviewImported { .. }
            | Self::Refused { .. } => None,
        }
    }
}

impl Subjects for AccessEvent {
    fn kind(&self) -> &'static str {
        match self {
            Self::RequestSubmitted(_) => "request_submitted",
            Self::RequestRefused { .. } => "request_refused",
            Self::ApprovalGiven { .. } => "approval_given",
            Self::RequestApproved { .. } => "request_approved",
            Self::RequestDenied { .. } => "request_denied",
            Self::RequestExpired { .. } => "request_expired",
            Self::GrantActivated { .. } => "grant_activated",
            Self::GrantWarning { .. } => "grant_warning",
            Self::GrantEnded { .. } => "grant_ended",
            Self::GrantRevoked { .. } => "grant_revoked",
            Self::ReviewSignedOff { .. } => "review_signed_off",
            Self::ReviewImported { .. } => "review_imported",
            Self::GrantProgress { .. } => "grant_progress",
            Self::Refused { .. } => "refused",
        }
    }

    fn actor(&self) -> Option<&str> {
        match self {
            Self::RequestSubmitted(s) => Some(&s.requester),
            Self::RequestRefused { requester, .. } => Some(requester),
            Self::ApprovalGiven { approver, .. } | Self::RequestDenied { approver, .. } => {
                Some(approver)
            }
            Self::GrantRevoked { by, .. } | Self::ReviewSignedOff { by, .. } => Some(by),
            Self::ReviewImported { reviewer, .. } => Some(reviewer),
            Self::Refused { actor, .. } => Some(actor),
            _ => None,
        }
    }

    fn asset(&self) -> Option<&str> {
        match self {
            Self::RequestSubmitted(s) => Some(&s.asset),
            Self::RequestRefused { asset, .. } => Some(asset),
            _ => None,
        }
    }

    fn grant(&self) -> Option<&str> {
        match self {
            Self::RequestSubmitted(s) => s.grant_id.as_deref(),
            Self::GrantRevoked { grant_id, .. } => grant_id.as_deref(),
            Self::RequestApproved { grant_id, .. }
            | Self::GrantActivated { grant_id, .. }
            | Self::GrantWarning { grant_id, .. }
            | Self::GrantEnded { grant_id, .. }
            | Self::GrantProgress { grant_id, .. }
            | Self::ReviewSignedOff { grant_id, .. } => Some(grant_id),
            Self::ReviewImported { grant_ids, .. } => grant_ids.first().map(String::as_str),
            _ => None,
        }
    }
}
