//! Requests and grants in memory: one [`GrantRecord`] per request, changed only by applying the
//! journal's [`AccessEvent`]s ([`Registry::apply`]).
//!
//! Applying is pure and deterministic, so the registry the daemon works with and the one rebuilt
//! from the journal after a restart are the same. It decides nothing: the service checks a move
//! (`state::check_move`, policy, approvals), journals it, and only then applies it here.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::state::{check_move, GrantState, IllegalMove};
use crate::journal::event::{
    AccessEvent, EndReason, GrantMode, RevokeCause, RoleCount, Submission,
};

/// One approval given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalEntry {
    /// The OT identity.
    pub approver: String,
    /// The role it approved as.
    pub role: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// How a final state was reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Who (an OT identity, `policy`, or `appliance`).
    pub by: String,
    /// Why, in words.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The review of an emergency grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// Who signed it off, once someone has.
    pub signed_off_by: Option<String>,
    /// When it was signed off.
    pub signed_off_at: Option<DateTime<Utc>>,
    /// HQ's verdict, when a signed review record signed it off (`justified`, `unjustified`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// HQ's comment, when a signed review record signed it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The hash of the review record that signed it off (hex), if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

/// One request and the grant it became, as the journal tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// `R-0001`.
    pub request_id: String,
    /// `G-0001`, once approved.
    pub grant_id: Option<String>,
    /// Where it stands.
    pub state: GrantState,
    /// The IT identity that asked.
    pub requester: String,
    /// The asset.
    pub asset: String,
    /// The operations asked for.
    pub operations: Vec<String>,
    /// The deciding rule (empty when policy refused).
    pub rule: String,
    /// How it is approved.
    pub mode: Option<GrantMode>,
    /// The granted scope, as `otgate_policy::GrantScope` serializes.
    pub scope: serde_json::Value,
    /// The window.
    pub start: DateTime<Utc>,
    /// The window's end.
    pub end: DateTime<Utc>,
    /// The decision in words.
    pub decision: String,
    /// Approvals required per role (the full requirement).
    pub approvals_required: Vec<RoleCount>,
    /// If not empty, only these OT identities may approve.
    pub approvers: Vec<String>,
    /// Approvals still missing per role.
    pub missing: Vec<RoleCount>,
    /// Approvals given so far.
    pub approvals: Vec<ApprovalEntry>,
    /// Idle timeout of its sessions, seconds.
    pub idle_timeout_secs: u64,
    /// Whether the grant ends when its last session disconnects.
    pub end_on_last_disconnect: bool,
    /// Triggers that revoke it.
    pub revoke_on: Vec<String>,
    /// The ticket.
    pub ticket: Option<String>,
    /// The reason given.
    pub reason: String,
    /// Where the request came from.
    pub source: Option<String>,
    /// When it was submitted.
    pub submitted_at: DateTime<Utc>,
    /// When it became active.
    pub activated_at: Option<DateTime<Utc>>,
    /// Minutes-left warnings already given.
    pub warned: Vec<u32>,
    /// Whether the requester passed a second factor when asking. (Records written before this
    /// field existed were all submitted through their rule's MFA check.)
    #[serde(default = "yes")]
    pub mfa: bool,
    /// Seconds of its window used, as last checkpointed on the monotonic clock.
    #[serde(default)]
    pub active_secs: u64,
    /// How it reached its final state.
    pub outcome: Option<Outcome>,
    /// For emergency grants: their review.
    pub review: Option<Review>,
}

impl GrantRecord {
    /// Approvals still missing per role (counting each approval once, for the role it gave).
    pub fn approvals_missing(&self) -> Vec<RoleCount> {
        self.approvals_required
            .iter()
            .filter_map(|need| {
                let given = self
                    .approvals
                    .iter()
                    .filter(|a| a.role == need.role)
                    .count();
                let given = u32::try_from(given).unwrap_or(u32::MAX);
                (given < need.count).then(|| RoleCount {
                    role: need.role.clone(),
                    count: need.count - given,
                })
            })
            .collect()
    }

    /// Whether an emergency grant still waits for sign-off.
    pub fn awaits_review(&self) -> bool {
        self.review
            .as_ref()
            .is_some_and(|r| r.signed_off_by.is_none())
    }

    /// The id to show: the grant id once there is one, else the request id.
    pub fn display_id(&self) -> &str {
        self.grant_id.as_deref().unwrap_or(&self.request_id)
    }
}

/// Why an event could not be applied (a journal that contradicts itself; never expected).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The record names a request the registry does not know.
    #[error("record names unknown request {0}")]
    UnknownRequest(String),
    /// The record submits a request id that exists already.
    #[error("record submits request {0} twice")]
    Duplicate(String),
    /// The record moves a request the lifecycle does not allow.
    #[error("request {request_id}: {illegal}")]
    Illegal {
        /// The request.
        request_id: String,
        /// The move.
        illegal: IllegalMove,
    },
}

/// Every request and grant, by request id.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    records: BTreeMap<String, GrantRecord>,
    by_grant: HashMap<String, String>,
    last_request: u32,
    last_grant: u32,
}

fn yes() -> bool {
    true
}

fn number_of(id: &str, prefix: &str) -> Option<u32> {
    id.strip_prefix(prefix)?.parse().ok()
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding these records (as a view stored them).
    pub fn from_records(records: impl IntoIterator<Item = GrantRecord>) -> Self {
        let mut registry = Self::new();
        for record in records {
            if let Some(g) = record.grant_id.clone() {
                registry.note_grant_id(&g, &record.request_id);
            }
            if let Some(n) = number_of(&record.request_id, "R-") {
                registry.last_request = registry.last_request.max(n);
            }
            registry.records.insert(record.request_id.clone(), record);
        }
        registry
    }

    /// The id the next request gets (`R-0001`, ...).
    pub fn next_request_id(&self) -> String {
        format!("R-{:04}", self.last_request.saturating_add(1))
    }

    /// The id the next grant gets (`G-0001`, ...).
    pub fn next_grant_id(&self) -> String {
        format!("G-{:04}", self.last_grant.saturating_add(1))
    }

    /// A request by its request id or its grant id.
    pub fn find(&self, id: &str) -> Option<&GrantRecord> {
        let request_id = self.by_grant.get(id).map_or(id, String::as_str);
        self.records.get(request_id)
    }

    /// Every record, by request id.
    pub fn records(&self) -> impl Iterator<Item = &GrantRecord> {
        self.records.values()
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn record_mut(&mut self, request_id: &str) -> Result<&mut GrantRecord, ApplyError> {
        self.records
            .get_mut(request_id)
            .ok_or_else(|| ApplyError::UnknownRequest(request_id.to_owned()))
    }

    fn note_grant_id(&mut self, grant_id: &str, request_id: &str) {
        if let Some(n) = number_of(grant_id, "G-") {
            self.last_grant = self.last_grant.max(n);
        }
        self.by_grant
            .insert(grant_id.to_owned(), request_id.to_owned());
    }

    /// Apply one journaled event. Events of other kinds than lifecycle moves (warnings, refusals)
    /// change nothing but the warning marks.
    pub fn apply(&mut self, event: &AccessEvent) -> Result<(), ApplyError> {
        match event {
            AccessEvent::RequestSubmitted(submission) => {
                let Submission {
                    request_id,
                    grant_id,
                    requester,
                    asset,
                    operations,
                    rule,
                    mode,
                    scope,
                    start,
                    end,
                    decision,
                    approvals_required,
                    approvers,
                    idle_timeout_secs,
                    end_on_last_disconnect,
                    revoke_on,
                    ticket,
                    reason,
                    source,
                    mfa,
                    at,
                } = submission.as_ref();
                let state = match (mode, grant_id) {
                    (GrantMode::Approvers, _) | (_, None) => GrantState::Requested,
                    (_, Some(_)) if start <= at => GrantState::Active,
                    (_, Some(_)) => GrantState::Approved,
                };
                let record = GrantRecord {
                    request_id: request_id.clone(),
                    grant_id: grant_id.clone(),
                    state,
                    requester: requester.clone(),
                    asset: asset.clone(),
                    operations: operations.clone(),
                    rule: rule.clone(),
                    mode: Some(*mode),
                    scope: scope.clone(),
                    start: *start,
                    end: *end,
                    decision: decision.clone(),
                    approvals_required: approvals_required.clone(),
                    approvers: approvers.clone(),
                    missing: if *mode == GrantMode::Approvers {
                        approvals_required.clone()
                    } else {
                        Vec::new()
                    },
                    approvals: Vec::new(),
                    idle_timeout_secs: *idle_timeout_secs,
                    end_on_last_disconnect: *end_on_last_disconnect,
                    revoke_on: revoke_on.clone(),
                    ticket: ticket.clone(),
                    reason: reason.clone(),
                    source: source.clone(),
                    submitted_at: *at,
                    activated_at: (state == GrantState::Active).then_some(*at),
                    warned: Vec::new(),
                    mfa: *mfa,
                    active_secs: 0,
                    outcome: None,
                    review: (*mode == GrantMode::Emergency).then_some(Review::default()),
                };
                self.insert_new(record)?;
                if let Some(g) = grant_id {
                    self.note_grant_id(g, request_id);
                }
            }
            AccessEvent::RequestRefused {
                request_id,
                requester,
                asset,
                operations,
                reason,
                at,
            } => {
                let record = GrantRecord {
                    request_id: request_id.clone(),
                    grant_id: None,
                    state: GrantState::Denied,
                    requester: requester.clone(),
                    asset: asset.clone(),
                    operations: operations.clone(),
                    rule: String::new(),
                    mode: None,
                    scope: serde_json::Value::Null,
                    start: *at,
                    end: *at,
                    decision: reason.clone(),
                    approvals_required: Vec::new(),
                    approvers: Vec::new(),
                    missing: Vec::new(),
                    approvals: Vec::new(),
                    idle_timeout_secs: 0,
                    end_on_last_disconnect: false,
                    revoke_on: Vec::new(),
                    ticket: None,
                    reason: String::new(),
                    source: None,
                    submitted_at: *at,
                    activated_at: None,
                    warned: Vec::new(),
                    mfa: false,
                    active_secs: 0,
                    outcome: Some(Outcome {
                        by: "policy".to_owned(),
                        reason: reason.clone(),
                        at: *at,
                    }),
                    review: None,
                };
                self.insert_new(record)?;
            }
            AccessEvent::ApprovalGiven {
                request_id,
                approver,
                role,
                missing,
                at,
            } => {
                let record = self.record_mut(request_id)?;
                if record.state != GrantState::Requested {
                    return Err(ApplyError::Illegal {
                        request_id: request_id.clone(),
                        illegal: IllegalMove {
                            from: super::state::StateOrNew::State(record.state),
                            to: GrantState::Requested,
                        },
                    });
                }
                record.missing = missing.clone();
                record.approvals.push(ApprovalEntry {
                    approver: approver.clone(),
                    role: role.clone(),
                    at: *at,
                });
            }
            AccessEvent::RequestApproved {
                request_id,
                grant_id,
                ..
            } => {
                let record = self.move_to(request_id, GrantState::Approved)?;
                record.grant_id = Some(grant_id.clone());
                record.missing.clear();
                self.note_grant_id(grant_id, request_id);
            }
            AccessEvent::RequestDenied {
                request_id,
                approver,
                reason,
                at,
            } => {
                self.move_to(request_id, GrantState::Denied)?.outcome = Some(Outcome {
                    by: approver.clone(),
                    reason: reason.clone(),
                    at: *at,
                });
            }
            AccessEvent::RequestExpired { request_id, at } => {
                self.move_to(request_id, GrantState::Expired)?.outcome = Some(Outcome {
                    by: "appliance".to_owned(),
                    reason: "its window passed before it was approved".to_owned(),
                    at: *at,
                });
            }
            AccessEvent::GrantActivated {
                request_id,
                end,
                at,
                ..
            } => {
                let record = self.move_to(request_id, GrantState::Active)?;
                record.activated_at = Some(*at);
                record.end = *end;
            }
            AccessEvent::GrantWarning {
                grant_id,
                minutes_left,
                ..
            } => {
                if let Some(request_id) = self.by_grant.get(grant_id).cloned() {
                    self.record_mut(&request_id)?.warned.push(*minutes_left);
                }
            }
            AccessEvent::GrantEnded {
                request_id,
                reason,
                at,
                ..
            } => {
                let words = match reason {
                    EndReason::Expired => "its window ran out",
                    EndReason::Idle => "no session used it for its idle timeout",
                    EndReason::LastDisconnect => "its last session disconnected",
                    EndReason::Closed => "its user closed it",
                    EndReason::ExpiredWhileDown => {
                        "its window ran out while the appliance was down"
                    }
                };
                self.move_to(request_id, GrantState::Ended)?.outcome = Some(Outcome {
                    by: "appliance".to_owned(),
                    reason: words.to_owned(),
                    at: *at,
                });
            }
            AccessEvent::GrantRevoked {
                request_id,
                by,
                cause,
                reason,
                at,
                ..
            } => {
                let reason = match cause {
                    RevokeCause::Manual => reason.clone(),
                    RevokeCause::PolicyChange => format!("policy change: {reason}"),
                    RevokeCause::AccountExpired => format!("account expired: {reason}"),
                    RevokeCause::Trigger => format!("trigger: {reason}"),
                };
                self.move_to(request_id, GrantState::Revoked)?.outcome = Some(Outcome {
                    by: by.clone(),
                    reason,
                    at: *at,
                });
            }
            AccessEvent::ReviewSignedOff {
                request_id, by, at, ..
            } => {
                let record = self.record_mut(request_id)?;
                record.review = Some(Review {
                    signed_off_by: Some(by.clone()),
                    signed_off_at: Some(*at),
                    ..Review::default()
                });
            }
            AccessEvent::ReviewImported {
                record: hash,
                reviewer,
                verdict,
                comment,
                request_ids,
                at,
                ..
            } => {
                // Every request it names exists (the service checked); the sled view applies
                // it to one request at a time, so a request not held here is skipped.
                for request_id in request_ids {
                    let Some(record) = self.records.get_mut(request_id) else {
                        continue;
                    };
                    record.review = Some(Review {
                        signed_off_by: Some(format!("hq:{reviewer}")),
                        signed_off_at: Some(*at),
                        verdict: Some(verdict.clone()),
                        comment: Some(comment.clone()),
                        record: Some(hash.clone()),
                    });
                }
            }
            AccessEvent::GrantProgress {
                grant_id,
                active_secs,
                ..
            } => {
                if let Some(request_id) = self.by_grant.get(grant_id).cloned() {
                    let record = self.record_mut(&request_id)?;
                    record.active_secs = record.active_secs.max(*active_secs);
                }
            }
            AccessEvent::Refused { .. } => {}
        }
        Ok(())
    }

    fn insert_new(&mut self, record: GrantRecord) -> Result<(), ApplyError> {
        if self.records.contains_key(&record.request_id) {
            return Err(ApplyError::Duplicate(record.request_id));
        }
        if let Some(n) = number_of(&record.request_id, "R-") {
            self.last_request = self.last_request.max(n);
        }
        self.records.insert(record.request_id.clone(), record);
        Ok(())
    }

    fn move_to(
        &mut self,
        request_id: &str,
        to: GrantState,
    ) -> Result<&mut GrantRecord, ApplyError> {
        let record = self.record_mut(request_id)?;
        check_move(Some(record.state), to).map_err(|illegal| ApplyError::Illegal {
            request_id: request_id.to_owned(),
            illegal,
        })?;
        record.state = to;
        Ok(record)
    }
}
