//! The grants service: submits requests, records approvals and denials, activates, ends and
//! revokes grants, and hands sessions their cancellation tokens.
//!
//! Every lifecycle move goes through [`Grants::transition`], which checks the move against
//! `state::check_move`, journals it (durable before anything else happens), traces it, applies it
//! to the registry and tells followers. All moves run under one async lock, so two approvals
//! racing for the last needed slot resolve to exactly one activation: the second sees the request
//! approved and is refused. A refused attempt is journaled as `AccessEvent::Refused` and changes
//! nothing else.
//!
//! Time: a grant's end is kept as a monotonic deadline from the moment it becomes active (the
//! wall-clock end minus the wall clock then, never more than its planned length), so moving the
//! wall clock afterwards never lengthens it. While active, the time it has used is checkpointed
//! in the journal (`GrantProgress`, every [`PROGRESS_EVERY`] and at shutdown). After a restart
//! what is left is `min(window end - wall clock now, budget - used)`, where the budget is the
//! window from activation to end: a wall clock set back while the daemon was down cannot give
//! it more than it had left at the last checkpoint, and one set forward only shortens it.
//! Each grant has a [`CancellationToken`]; each session holds a child of it, so ending or
//! revoking a grant closes all of its sessions at once.
//!
//! End conditions of the rule: sessions close when idle (the broker); when the rule says
//! `end_on_last_disconnect`, the grant itself ends when its last session leaves (`last_disconnect`,
//! or `idle` if that session idled out) or when no session opens within the idle timeout of
//! its activation (`idle`).
//!
//! Who may act at the console comes from the policy: an OT identity that holds a role the request
//! needs (or is named as its approver) approves and denies it; only supervising OT identities
//! (kind `approver`) revoke by hand and sign off emergency use, never the grant's own user. HQ
//! signs off through a signed review record ([`Grants::import_review`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{broadcast, Mutex, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::registry::{GrantRecord, Registry};
use super::seams::{AccessPolicy, Answer, Ask, RecordError, Recorder};
use super::state::{check_move, GrantState, IllegalMove};
use crate::clock::SharedClock;
use crate::control::Notice;
use crate::journal::event::{AccessEvent, EndReason, Event, GrantMode, RevokeCause, Submission};

/// Warnings are given this many minutes before a grant's end.
pub const WARN_MINUTES: [u32; 2] = [10, 2];
/// How often an active grant's use is checkpointed in the journal.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(60);
/// The idle timeout of a rule that names none.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Why a grants operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// No request or grant has this id.
    #[error("no request or grant {id}")]
    NotFound {
        /// The id given.
        id: String,
    },
    /// The attempt was refused (and journaled as refused); nothing changed.
    #[error("{action} {id} refused: {reason}")]
    Refused {
        /// What was attempted.
        action: &'static str,
        /// The request or grant.
        id: String,
        /// Why.
        reason: String,
    },
    /// The lifecycle does not allow the move.
    #[error("{id}: {illegal}")]
    Illegal {
        /// The request or grant.
        id: String,
        /// The move.
        illegal: IllegalMove,
    },
    /// The journal failed; the move did not happen.
    #[error(transparent)]
    Journal(#[from] RecordError),
}

/// What a submission came to.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Submitted {
    /// `R-0001`.
    pub request_id: String,
    /// `G-0001` when policy granted it at once.
    pub grant_id: Option<String>,
    /// Where it stands now.
    pub state: GrantState,
    /// The decision in words.
    pub decision: String,
    /// What happens next, in words.
    pub next: String,
    /// The window, when allowed.
    pub start: Option<DateTime<Utc>>,
    /// The window's end, when allowed.
    pub end: Option<DateTime<Utc>>,
}

/// What an approval came to.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Approval {
    /// `R-0001`.
    pub request_id: String,
    /// `G-0001` once approvals are complete.
    pub grant_id: Option<String>,
    /// Where it stands now.
    pub state: GrantState,
    /// Approvals still missing, in words (empty when complete).
    pub missing: String,
}

/// The live part of an approved or active grant: its token, deadline and sessions.
#[derive(Debug)]
struct Live {
    /// Fires when the grant ends or is revoked; sessions hold children of it.
    token: CancellationToken,
    /// The monotonic end, set when it becomes active.
    deadline: Option<Instant>,
    /// Sessions open now.
    sessions: usize,
    /// Set when its last session left and the grant should end for it.
    last_left: bool,
    /// Whether that last session left because it idled out.
    last_left_idle: bool,
    /// Whether any session has used it since it became active (in this run).
    used: bool,
    /// The monotonic instant its use was last counted from (activation or resume).
    counted_from: Option<Instant>,
    /// Seconds used before `counted_from` (from the journal's checkpoints).
    used_before: u64,
    /// Seconds used at the last checkpoint journaled.
    checkpointed: u64,
}

impl Live {
    fn new(token: CancellationToken) -> Self {
        Self {
            token,
            deadline: None,
            sessions: 0,
            last_left: false,
            last_left_idle: false,
            used: false,
            counted_from: None,
            used_before: 0,
            checkpointed: 0,
        }
    }

    /// Seconds of its window used by `mono`.
    fn used_secs(&self, mono: Instant) -> u64 {
        let since = self
            .counted_from
            .map_or(0, |from| mono.saturating_duration_since(from).as_secs());
        self.used_before.saturating_add(since)
    }
}

/// A session's hold on an active grant; dropping it tells the grant the session left.
#[derive(Debug)]
pub struct SessionLease {
    /// The grant.
    pub grant_id: String,
    /// The requester.
    pub identity: String,
    /// The asset.
    pub asset: String,
    /// The granted scope (`otgate_policy::GrantScope`, serialized).
    pub scope: serde_json::Value,
    /// Fires when the grant ends or is revoked.
    pub cancel: CancellationToken,
    /// The grant's monotonic end.
    pub deadline: Instant,
    /// Idle timeout of the session.
    pub idle_timeout: Duration,
    /// Set when the session ended because it idled out.
    idled_out: std::sync::atomic::AtomicBool,
    grants: Arc<Grants>,
}

impl SessionLease {
    /// Say that the session ends because it idled out (the grant may end as `idle`).
    pub fn idled_out(&self) {
        self.idled_out
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for SessionLease {
    fn drop(&mut self) {
        let idle = self.idled_out.load(std::sync::atomic::Ordering::Relaxed);
        self.grants.session_left(&self.grant_id, idle);
    }
}

/// Where a grant stands, for its user (`otgate connect`'s status channel).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct GrantStatus {
    /// `G-0001`.
    pub grant_id: String,
    /// The asset it covers.
    pub asset: String,
    /// Where it stands.
    pub state: GrantState,
    /// The window's end (wall clock).
    pub end: DateTime<Utc>,
    /// Seconds left on the appliance's monotonic clock (0 once final).
    pub remaining_secs: u64,
    /// The minutes-left warnings given so far (10, 2).
    pub warned: Vec<u32>,
    /// How it ended, once final.
    pub outcome: Option<String>,
}

/// Filter for [`Grants::list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListFilter {
    /// Everything.
    #[default]
    All,
    /// Waiting for approval or start.
    Pending,
    /// Active now.
    Active,
    /// Final (ended, revoked, denied, expired).
    Ended,
    /// Emergency grants awaiting sign-off.
    Review,
}

/// The grants service. Cheap to share (`Arc<Grants>`).
#[derive(Debug)]
pub struct Grants {
    /// Requests and grants; held across journal writes so moves are serialized.
    registry: Mutex<Registry>,
    /// The journal.
    recorder: Arc<dyn Recorder>,
    /// The active policy; replaced on activation of a new bundle.
    policy: RwLock<Arc<dyn AccessPolicy>>,
    /// Wall and monotonic time.
    clock: SharedClock,
    /// Tokens, deadlines and session counts of approved and active grants.
    live: StdMutex<HashMap<String, Live>>,
    /// Wakes the expiry task when a deadline may have changed.
    wake: Notify,
    /// Notices for followers of the control socket.
    notices: broadcast::Sender<Notice>,
}

impl Grants {
    /// A service over `registry` (rebuilt from the journal), not yet resumed: call
    /// [`Grants::resume`] before serving.
    pub fn new(
        registry: Registry,
        recorder: Arc<dyn Recorder>,
        policy: Arc<dyn AccessPolicy>,
        clock: SharedClock,
        notices: broadcast::Sender<Notice>,
    ) -> Arc<Self> {
        Arc::new(Self {
            registry: Mutex::new(registry),
            recorder,
            policy: RwLock::new(policy),
            clock,
            live: StdMutex::new(HashMap::new()),
            wake: Notify::new(),
            notices,
        })
    }

    fn policy(&self) -> Arc<dyn AccessPolicy> {
        match self.policy.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The one place a lifecycle move happens: check it, journal it, trace it, apply it, tell
    /// followers. Events that are not moves (`ApprovalGiven`) pass `to = None`.
    async fn transition(
        &self,
        registry: &mut Registry,
        event: AccessEvent,
        to: Option<GrantState>,
    ) -> Result<(), GrantError> {
        let request_id = event
            .request_id()
            .or_else(|| crate::journal::event::Subjects::grant(&event))
            .unwrap_or_default()
            .to_owned();
        let from = registry.find(&request_id).map(|r| r.state);
        if let Some(to) = to {
            check_move(from, to).map_err(|illegal| GrantError::Illegal {
                id: request_id.clone(),
                illegal,
            })?;
        }
        let reserved = matches!(
            event,
            AccessEvent::RequestRefused { .. } | AccessEvent::GrantRevoked { .. }
        ) || matches!(
            &event,
            AccessEvent::RequestSubmitted(s) if s.mode == GrantMode::Emergency
        );
        self.recorder
            .record(Event::Access(event.clone()), reserved)
            .await?;
        if let Err(e) = registry.apply(&event) {
            // The journal has it; the registry disagreeing means a bug, not bad input.
            tracing::error!(error = %e, "journaled access event did not apply");
        }
        tracing::info!(
            request = %request_id,
            from = from.map_or("new", GrantState::as_str),
            to = to.map_or("same", GrantState::as_str),
            kind = crate::journal::event::Subjects::kind(&event),
            "grant transition"
        );
        if let Some(record) = registry.find(&request_id) {
            self.notify(notice_for(&event, record));
        }
        Ok(())
    }

    fn notify(&self, notice: Option<Notice>) {
        if let Some(n) = notice {
            // No follower is fine.
            let _ = self.notices.send(n);
        }
    }

    async fn refuse(
        &self,
        action: &'static str,
        id: &str,
        actor: &str,
        reason: String,
    ) -> GrantError {
        let event = AccessEvent::Refused {
            action: action.to_owned(),
            target: id.to_owned(),
            actor: actor.to_owned(),
            reason: reason.clone(),
            at: self.clock.now_utc(),
        };
        if let Err(e) = self.recorder.record(Event::Access(event), true).await {
            return GrantError::Journal(e);
        }
        tracing::info!(action, id, actor, reason = %reason, "access attempt refused");
        GrantError::Refused {
            action,
            id: id.to_owned(),
            reason,
        }
    }

    /// Submit an authenticated request: policy decides, the decision is journaled, and an
    /// allowed request waits for approvers or becomes a grant at once.
    pub async fn submit(&self, ask: Ask) -> Result<Submitted, GrantError> {
        let mut registry = self.registry.lock().await;
        let now = self.clock.now_utc();
        let request_id = registry.next_request_id();
        let answer = self.policy().decide(&ask, now);
        let (terms, by_policy) = match answer {
            Answer::Deny(reason) => {
                let event = AccessEvent::RequestRefused {
                    request_id: request_id.clone(),
                    requester: ask.requester.clone(),
                    asset: ask.asset.clone(),
                    operations: ask.operations.clone(),
                    reason: reason.clone(),
                    at: now,
                };
                self.transition(&mut registry, event, Some(GrantState::Denied))
                    .await?;
                return Ok(Submitted {
                    request_id,
                    grant_id: None,
                    state: GrantState::Denied,
                    next: "nothing: the request is refused; change it or ask policy's owner"
                        .to_owned(),
                    decision: reason,
                    start: None,
                    end: None,
                });
            }
            Answer::Allow(t) => (t, true),
            Answer::NeedApproval(t) => (t, false),
        };
        let grant_id = by_policy.then(|| registry.next_grant_id());
        let to = match (&grant_id, terms.start <= now) {
            (None, _) => GrantState::Requested,
            (Some(_), true) => GrantState::Active,
            (Some(_), false) => GrantState::Approved,
        };
        let event = AccessEvent::RequestSubmitted(Box::new(Submission {
            request_id: request_id.clone(),
            grant_id: grant_id.clone(),
            requester: ask.requester.clone(),
            asset: ask.asset.clone(),
            operations: ask.operations.clone(),
            rule: terms.rule.clone(),
            mode: terms.mode,
            scope: terms.scope.clone(),
            start: terms.start,
            end: terms.end,
            decision: terms.words.clone(),
            approvals_required: terms.approvals_required.clone(),
            approvers: terms.approvers.clone(),
            idle_timeout_secs: terms.idle_timeout_secs,
            end_on_last_disconnect: terms.end_on_last_disconnect,
            revoke_on: terms.revoke_on.clone(),
            ticket: ask.ticket.clone(),
            reason: ask.reason.clone(),
            source: ask.source.map(|s| s.to_string()),
            mfa: ask.mfa,
            at: now,
        }));
        self.transition(&mut registry, event, Some(to)).await?;
        if let Some(g) = &grant_id {
            self.make_live(&registry, g, to == GrantState::Active);
        }
        let next = match to {
            GrantState::Requested => format!(
                "waiting for approval by {} at the plant (otgate approve {request_id})",
                words_of(&terms.approvals_required)
            ),
            GrantState::Approved => format!("grant starts at {}", terms.start.to_rfc3339()),
            _ if terms.mode == GrantMode::Emergency => format!(
                "emergency grant active until {}; it is queued for review",
                terms.end.to_rfc3339()
            ),
            _ => format!("grant active until {}", terms.end.to_rfc3339()),
        };
        Ok(Submitted {
            request_id,
            grant_id,
            state: to,
            decision: terms.words,
            next,
            start: Some(terms.start),
            end: Some(terms.end),
        })
    }

    /// Record an approval by an authenticated OT identity.
    pub async fn approve(&self, id: &str, approver: &str) -> Result<Approval, GrantError> {
        let mut registry = self.registry.lock().await;
        let now = self.clock.now_utc();
        let policy = self.policy();
        let Some(record) = registry.find(id).cloned() else {
            return Err(self
                .refuse("approve", id, approver, format!("no request {id}"))
                .await);
        };
        let request_id = record.request_id.clone();
        if record.state != GrantState::Requested {
            let reason = format!("request is {}, not waiting for approval", record.state);
            return Err(self.refuse("approve", id, approver, reason).await);
        }
        if record.end <= now {
            let reason = format!(
                "the request expired at {} before it was approved",
                record.end.to_rfc3339()
            );
            let expired = AccessEvent::RequestExpired {
                request_id: request_id.clone(),
                at: now,
            };
            self.transition(&mut registry, expired, Some(GrantState::Expired))
                .await?;
            return Err(self.refuse("approve", id, approver, reason).await);
        }
        if approver == record.requester {
            let reason = "the requester cannot approve their own request".to_owned();
            return Err(self.refuse("approve", id, approver, reason).await);
        }
        if policy.ot_roles(approver).is_none() {
            let reason = if policy.is_it_identity(approver) {
                format!("{approver} is an IT identity; only OT identities approve")
            } else {
                format!("{approver} is not an OT identity of this policy")
            };
            return Err(self.refuse("approve", id, approver, reason).await);
        }
        if record.approvals.iter().any(|a| a.approver == approver) {
            let reason = format!("{approver} approved already; approvers must be distinct people");
            return Err(self.refuse("approve", id, approver, reason).await);
        }
        let mut approvers: Vec<String> = record
            .approvals
            .iter()
            .map(|a| a.approver.clone())
            .collect();
        approvers.push(approver.to_owned());
        let tally = policy.tally(
            &record.approvals_required,
            &record.approvers,
            &record.requester,
            &approvers,
        );
        let role = match tally.newest {
            Ok(role) => role,
            Err(why) => {
                let reason = format!(
                    "{why}; the request still needs {}",
                    words_of(&record.missing)
                );
                return Err(self.refuse("approve", id, approver, reason).await);
            }
        };
        let given = AccessEvent::ApprovalGiven {
            request_id: request_id.clone(),
            approver: approver.to_owned(),
            role,
            missing: tally.missing.clone(),
            at: now,
        };
        self.transition(&mut registry, given, None).await?;
        if !tally.missing.is_empty() {
            return Ok(Approval {
                request_id,
                grant_id: None,
                state: GrantState::Requested,
                missing: words_of(&tally.missing),
            });
        }
        let grant_id = registry.next_grant_id();
        let approved = AccessEvent::RequestApproved {
            request_id: request_id.clone(),
            grant_id: grant_id.clone(),
            at: now,
        };
        self.transition(&mut registry, approved, Some(GrantState::Approved))
            .await?;
        self.make_live(&registry, &grant_id, false);
        let mut state = GrantState::Approved;
        if record.start <= now {
            self.activate(&mut registry, &grant_id).await?;
            state = GrantState::Active;
        }
        self.wake.notify_one();
        Ok(Approval {
            request_id,
            grant_id: Some(grant_id),
            state,
            missing: String::new(),
        })
    }

    /// Deny a waiting request (an authenticated OT identity).
    pub async fn deny(&self, id: &str, approver: &str, reason: &str) -> Result<(), GrantError> {
        let mut registry = self.registry.lock().await;
        let Some(record) = registry.find(id).cloned() else {
            return Err(self
                .refuse("deny", id, approver, format!("no request {id}"))
                .await);
        };
        let Some(roles) = self.policy().ot_roles(approver) else {
            let reason = format!("{approver} is not an OT identity; only OT identities deny");
            return Err(self.refuse("deny", id, approver, reason).await);
        };
        if record.state != GrantState::Requested {
            let why = format!("request is {}, not waiting for approval", record.state);
            return Err(self.refuse("deny", id, approver, why).await);
        }
        if let Err(why) = may_decide(&record, approver, &roles) {
            return Err(self.refuse("deny", id, approver, why).await);
        }
        let event = AccessEvent::RequestDenied {
            request_id: record.request_id.clone(),
            approver: approver.to_owned(),
            reason: reason.to_owned(),
            at: self.clock.now_utc(),
        };
        self.transition(&mut registry, event, Some(GrantState::Denied))
            .await
    }

    /// Revoke a request or grant; its sessions close at once.
    pub async fn revoke(
        &self,
        id: &str,
        by: &str,
        cause: RevokeCause,
        reason: &str,
    ) -> Result<(), GrantError> {
        let mut registry = self.registry.lock().await;
        if cause == RevokeCause::Manual {
            let policy = self.policy();
            if policy.ot_roles(by).is_none() {
                let why = format!("{by} is not an OT identity; only OT identities revoke");
                return Err(self.refuse("revoke", id, by, why).await);
            }
            if !policy.ot_supervises(by) {
                let why = format!(
                    "{by} is an OT operator, not a supervisor; only supervising OT identities \
                     (kind approver in the policy) revoke"
                );
                return Err(self.refuse("revoke", id, by, why).await);
            }
        }
        self.revoke_locked(&mut registry, id, by, cause, reason)
            .await
    }

    async fn revoke_locked(
        &self,
        registry: &mut Registry,
        id: &str,
        by: &str,
        cause: RevokeCause,
        reason: &str,
    ) -> Result<(), GrantError> {
        let Some(record) = registry.find(id).cloned() else {
            return Err(self
                .refuse("revoke", id, by, format!("no request or grant {id}"))
                .await);
        };
        if record.state.is_final() {
            let why = format!("it is {} already", record.state);
            return Err(self.refuse("revoke", id, by, why).await);
        }
        let event = AccessEvent::GrantRevoked {
            request_id: record.request_id.clone(),
            grant_id: record.grant_id.clone(),
            by: by.to_owned(),
            cause,
            reason: reason.to_owned(),
            at: self.clock.now_utc(),
        };
        self.transition(registry, event, Some(GrantState::Revoked))
            .await?;
        if let Some(g) = &record.grant_id {
            self.drop_live(g);
        }
        Ok(())
    }

    /// Sign off an emergency grant's use (an OT identity other than its user).
    pub async fn sign_off(&self, id: &str, by: &str) -> Result<(), GrantError> {
        let mut registry = self.registry.lock().await;
        let Some(record) = registry.find(id).cloned() else {
            return Err(self
                .refuse("sign_off", id, by, format!("no grant {id}"))
                .await);
        };
        if !record.awaits_review() {
            let why = "it is not an emergency grant awaiting review".to_owned();
            return Err(self.refuse("sign_off", id, by, why).await);
        }
        let policy = self.policy();
        if by == record.requester {
            let why = format!("{by} used this emergency grant and cannot sign off their own use");
            return Err(self.refuse("sign_off", id, by, why).await);
        }
        if policy.ot_roles(by).is_none() {
            let why = format!("{by} cannot sign off: only a supervising OT identity may");
            return Err(self.refuse("sign_off", id, by, why).await);
        }
        if !policy.ot_supervises(by) {
            let why = format!(
                "{by} is an OT operator, not a supervisor; only supervising OT identities \
                 (kind approver in the policy) sign off emergency use"
            );
            return Err(self.refuse("sign_off", id, by, why).await);
        }
        let event = AccessEvent::ReviewSignedOff {
            request_id: record.request_id.clone(),
            grant_id: record.grant_id.clone().unwrap_or_default(),
            by: by.to_owned(),
            at: self.clock.now_utc(),
        };
        self.transition(&mut registry, event, None).await
    }

    /// Import HQ's verified review record: every grant it names must be an emergency grant of
    /// this appliance that awaits review and began before the record was issued. Then one
    /// journaled record signs them all off. A replay, an unknown or non-emergency grant, one
    /// signed off already, or a record older than its grant is refused (journaled); nothing
    /// else changes. Returns the grants signed off.
    pub async fn import_review(
        &self,
        review: &otgate_sync::review::VerifiedReview,
    ) -> Result<Vec<String>, GrantError> {
        let mut registry = self.registry.lock().await;
        match review_import(&registry, review, self.clock.now_utc()) {
            Ok(event) => {
                self.transition(&mut registry, event, None).await?;
                Ok(review.body().grant_ids.clone())
            }
            Err(refusal) => Err(self
                .refuse(
                    "review_import",
                    &refusal.target,
                    &refusal.actor,
                    refusal.reason,
                )
                .await),
        }
    }

    /// Verify review-record `bytes` against `root` and import them ([`Grants::import_review`]);
    /// a record that does not verify is refused (journaled) with the verifier's reason.
    pub async fn import_review_bytes(
        &self,
        bytes: &[u8],
        root: &otgate_sync::TrustRoot,
    ) -> Result<Vec<String>, GrantError> {
        match otgate_sync::review::verify_review(bytes, root, self.clock.now_utc()) {
            Ok(verified) => self.import_review(&verified).await,
            Err(refusal) => {
                let target = review_target_of(bytes);
                Err(self
                    .refuse("review_import", &target, "hq", refusal.to_string())
                    .await)
            }
        }
    }

    /// Where grant `grant_id` stands, for its own user only (`Refused` otherwise).
    pub async fn status(&self, grant_id: &str, identity: &str) -> Result<GrantStatus, GrantError> {
        let record = {
            let registry = self.registry.lock().await;
            registry.find(grant_id).cloned()
        };
        let refusal = match &record {
            None => Some(format!("no grant {grant_id}")),
            Some(r) if r.grant_id.as_deref() != Some(grant_id) => {
                Some(format!("{grant_id} is not a grant (it is {})", r.state))
            }
            Some(r) if r.requester != identity => {
                Some(format!("grant belongs to {}, not {identity}", r.requester))
            }
            Some(_) => None,
        };
        let (Some(record), None) = (record, refusal.clone()) else {
            let reason = refusal.unwrap_or_default();
            return Err(self.refuse("status", grant_id, identity, reason).await);
        };
        let mono = self.clock.now_mono();
        let remaining_secs = match (record.state, self.live().get(grant_id)) {
            (GrantState::Active, Some(live)) => live
                .deadline
                .map_or(0, |d| d.saturating_duration_since(mono).as_secs()),
            (GrantState::Approved, _) => (record.end - record.start)
                .to_std()
                .map_or(0, |d| d.as_secs()),
            _ => 0,
        };
        Ok(GrantStatus {
            grant_id: grant_id.to_owned(),
            asset: record.asset.clone(),
            state: record.state,
            end: record.end,
            remaining_secs,
            warned: record.warned.clone(),
            outcome: record.outcome.as_ref().map(|o| o.reason.clone()),
        })
    }

    /// Records matching `filter`, newest first.
    pub async fn list(&self, filter: ListFilter) -> Vec<GrantRecord> {
        let registry = self.registry.lock().await;
        let mut out: Vec<GrantRecord> = registry
            .records()
            .filter(|r| matches_filter(r, filter))
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// One record by request or grant id.
    pub async fn show(&self, id: &str) -> Option<GrantRecord> {
        self.registry.lock().await.find(id).cloned()
    }

    /// Open a session on an active grant for `asset` by `identity`.
    pub async fn open_session(
        self: &Arc<Self>,
        grant_id: &str,
        identity: &str,
        asset: &str,
    ) -> Result<SessionLease, GrantError> {
        let registry = self.registry.lock().await;
        let refusal = match registry.find(grant_id) {
            None => Some(format!("no grant {grant_id}")),
            Some(r) if r.state != GrantState::Active => Some(format!("grant is {}", r.state)),
            Some(r) if r.requester != identity => {
                Some(format!("grant belongs to {}, not {identity}", r.requester))
            }
            Some(r) if r.asset != asset => Some(format!("grant covers {}, not {asset}", r.asset)),
            Some(_) => None,
        };
        if let Some(reason) = refusal {
            drop(registry);
            return Err(self
                .refuse("open_session", grant_id, identity, reason)
                .await);
        }
        let Some(record) = registry.find(grant_id).cloned() else {
            return Err(GrantError::NotFound {
                id: grant_id.to_owned(),
            });
        };
        let mut live = self.live();
        let Some(entry) = record.grant_id.as_ref().and_then(|g| live.get_mut(g)) else {
            return Err(GrantError::NotFound {
                id: grant_id.to_owned(),
            });
        };
        entry.sessions = entry.sessions.saturating_add(1);
        entry.last_left = false;
        entry.last_left_idle = false;
        entry.used = true;
        Ok(SessionLease {
            grant_id: record.grant_id.clone().unwrap_or_default(),
            identity: identity.to_owned(),
            asset: asset.to_owned(),
            scope: record.scope.clone(),
            cancel: entry.token.child_token(),
            deadline: entry.deadline.unwrap_or_else(|| self.clock.now_mono()),
            idle_timeout: Duration::from_secs(record.idle_timeout_secs),
            idled_out: std::sync::atomic::AtomicBool::new(false),
            grants: Arc::clone(self),
        })
    }

    fn session_left(&self, grant_id: &str, idled_out: bool) {
        let mut live = self.live();
        if let Some(entry) = live.get_mut(grant_id) {
            entry.sessions = entry.sessions.saturating_sub(1);
            if entry.sessions == 0 {
                entry.last_left = true;
                entry.last_left_idle = idled_out;
                self.wake.notify_one();
            }
        }
    }

    /// Sessions open on a grant now.
    pub fn session_count(&self, grant_id: &str) -> usize {
        self.live().get(grant_id).map_or(0, |l| l.sessions)
    }

    /// A token that fires when the grant ends or is revoked (for tests and the console).
    pub fn grant_token(&self, grant_id: &str) -> Option<CancellationToken> {
        self.live().get(grant_id).map(|l| l.token.clone())
    }

    fn make_live(&self, registry: &Registry, grant_id: &str, active: bool) {
        let record = registry.find(grant_id);
        let mut live = self.live();
        let entry = live
            .entry(grant_id.to_owned())
            .or_insert_with(|| Live::new(CancellationToken::new()));
        if let (true, Some(record), None) = (active, record, entry.deadline) {
            entry.deadline = Some(self.mono_deadline(record));
            entry.counted_from = Some(self.clock.now_mono());
            entry.used_before = record.active_secs;
            entry.checkpointed = record.active_secs;
        }
        drop(live);
        self.wake.notify_one();
    }

    /// The grant's end on the monotonic clock: what is left of it now, never more than its
    /// planned length.
    fn mono_deadline(&self, record: &GrantRecord) -> Instant {
        let now = self.clock.now_utc();
        self.clock.now_mono() + remaining(record, now)
    }

    fn drop_live(&self, grant_id: &str) {
        if let Some(entry) = self.live().remove(grant_id) {
            entry.token.cancel();
        }
        self.wake.notify_one();
    }

    async fn activate(&self, registry: &mut Registry, grant_id: &str) -> Result<(), GrantError> {
        let Some(record) = registry.find(grant_id).cloned() else {
            return Err(GrantError::NotFound {
                id: grant_id.to_owned(),
            });
        };
        let event = AccessEvent::GrantActivated {
            request_id: record.request_id.clone(),
            grant_id: grant_id.to_owned(),
            end: record.end,
            at: self.clock.now_utc(),
        };
        self.transition(registry, event, Some(GrantState::Active))
            .await?;
        let deadline = self.mono_deadline(&record);
        if let Some(entry) = self.live().get_mut(grant_id) {
            entry.deadline = Some(deadline);
            entry.counted_from = Some(self.clock.now_mono());
        }
        Ok(())
    }

    async fn end(
        &self,
        registry: &mut Registry,
        grant_id: &str,
        reason: EndReason,
    ) -> Result<(), GrantError> {
        let Some(record) = registry.find(grant_id).cloned() else {
            return Err(GrantError::NotFound {
                id: grant_id.to_owned(),
            });
        };
        let event = AccessEvent::GrantEnded {
            request_id: record.request_id.clone(),
            grant_id: grant_id.to_owned(),
            reason,
            at: self.clock.now_utc(),
        };
        self.transition(registry, event, Some(GrantState::Ended))
            .await?;
        self.drop_live(grant_id);
        Ok(())
    }

    /// After a restart: end what ran out while the daemon was down, expire stale requests, and
    /// put the rest back on the clock.
    pub async fn resume(&self) -> Result<(), GrantError> {
        let mut registry = self.registry.lock().await;
        let now = self.clock.now_utc();
        let records: Vec<GrantRecord> = registry.records().cloned().collect();
        for r in records {
            match r.state {
                GrantState::Active => {
                    let g = r.grant_id.clone().unwrap_or_default();
                    self.make_live(&registry, &g, true);
                    if r.end <= now || remaining(&r, now).is_zero() {
                        self.end(&mut registry, &g, EndReason::ExpiredWhileDown)
                            .await?;
                    }
                }
                GrantState::Approved => {
                    let g = r.grant_id.clone().unwrap_or_default();
                    self.make_live(&registry, &g, false);
                    if r.end <= now {
                        let event = AccessEvent::RequestExpired {
                            request_id: r.request_id,
                            at: now,
                        };
                        self.transition(&mut registry, event, Some(GrantState::Expired))
                            .await?;
                        self.drop_live(&g);
                    }
                }
                GrantState::Requested if r.end <= now => {
                    let event = AccessEvent::RequestExpired {
                        request_id: r.request_id,
                        at: now,
                    };
                    self.transition(&mut registry, event, Some(GrantState::Expired))
                        .await?;
                }
                _ => {}
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Replace the active policy and revoke what it no longer covers.
    pub async fn policy_changed(
        &self,
        policy: Arc<dyn AccessPolicy>,
    ) -> Result<Vec<String>, GrantError> {
        let mut registry = self.registry.lock().await;
        match self.policy.write() {
            Ok(mut p) => *p = Arc::clone(&policy),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&policy),
        }
        let mut revoked = Vec::new();
        let now = self.clock.now_utc();
        let live: Vec<GrantRecord> = registry
            .records()
            .filter(|r| !r.state.is_final())
            .cloned()
            .collect();
        for r in live {
            let still = policy
                .still_covers(&r.requester, &r.asset, &r.rule, &r.operations)
                .and_then(|()| operations_still_granted(policy.as_ref(), &r, now));
            if let Err(why) = still {
                self.revoke_locked(
                    &mut registry,
                    &r.request_id,
                    "policy",
                    RevokeCause::PolicyChange,
                    &why,
                )
                .await?;
                revoked.push(r.display_id().to_owned());
            }
        }
        Ok(revoked)
    }

    /// A trigger the policy names fired for `asset` (a denied write on a safety asset, an
    /// inspection alert): revoke the live grants whose rule lists it. Never cuts an emergency
    /// grant: restoring operations comes before forensics.
    pub async fn fire_trigger(
        &self,
        trigger: &str,
        asset: &str,
        detail: &str,
    ) -> Result<Vec<String>, GrantError> {
        let mut registry = self.registry.lock().await;
        let hit: Vec<GrantRecord> = registry
            .records()
            .filter(|r| !r.state.is_final() && r.asset == asset)
            .filter(|r| r.mode != Some(GrantMode::Emergency))
            .filter(|r| r.revoke_on.iter().any(|t| t == trigger))
            .cloned()
            .collect();
        let mut revoked = Vec::new();
        for r in hit {
            let why = format!("{trigger}: {detail}");
            self.revoke_locked(
                &mut registry,
                &r.request_id,
                "policy",
                RevokeCause::Trigger,
                &why,
            )
            .await?;
            revoked.push(r.display_id().to_owned());
        }
        Ok(revoked)
    }

    /// Do whatever is due now and return when to look again (monotonic).
    pub async fn tick(&self) -> Result<Instant, GrantError> {
        let mut registry = self.registry.lock().await;
        let now = self.clock.now_utc();
        let mono = self.clock.now_mono();
        let policy = self.policy();
        // The latest we sleep, so wall-clock starts and account expiries are seen.
        let mut next = mono + Duration::from_secs(30);
        let records: Vec<GrantRecord> = registry
            .records()
            .filter(|r| !r.state.is_final())
            .cloned()
            .collect();
        for r in records {
            let grant_id = r.grant_id.clone().unwrap_or_default();
            if let Some(expiry) = policy.account_expiry(&r.requester) {
                if expiry <= now {
                    let why = format!(
                        "{}'s account expired at {}",
                        r.requester,
                        expiry.to_rfc3339()
                    );
                    self.revoke_locked(
                        &mut registry,
                        &r.request_id,
                        "policy",
                        RevokeCause::AccountExpired,
                        &why,
                    )
                    .await?;
                    continue;
                }
                next = next.min(mono + (expiry - now).to_std().unwrap_or_default());
            }
            match r.state {
                GrantState::Requested | GrantState::Approved if r.end <= now => {
                    let event = AccessEvent::RequestExpired {
                        request_id: r.request_id.clone(),
                        at: now,
                    };
                    self.transition(&mut registry, event, Some(GrantState::Expired))
                        .await?;
                    self.drop_live(&grant_id);
                }
                GrantState::Requested => {
                    next = next.min(mono + (r.end - now).to_std().unwrap_or_default());
                }
                GrantState::Approved if r.start <= now => {
                    self.activate(&mut registry, &grant_id).await?;
                    next = mono;
                }
                GrantState::Approved => {
                    next = next.min(mono + (r.start - now).to_std().unwrap_or_default());
                }
                GrantState::Active => {
                    let Some(live) = self.live().get(&grant_id).map(|l| LiveView::of(l, mono))
                    else {
                        continue;
                    };
                    let Some(deadline) = live.deadline else {
                        continue;
                    };
                    if deadline <= mono {
                        self.end(&mut registry, &grant_id, EndReason::Expired)
                            .await?;
                        continue;
                    }
                    if r.end_on_last_disconnect {
                        if live.last_left {
                            let reason = if live.last_left_idle {
                                EndReason::Idle
                            } else {
                                EndReason::LastDisconnect
                            };
                            self.end(&mut registry, &grant_id, reason).await?;
                            continue;
                        }
                        if !live.used {
                            // No session yet: the grant idles out like a session would.
                            let idle_by = live.counted_from.unwrap_or(mono) + idle_timeout(&r);
                            if idle_by <= mono {
                                self.end(&mut registry, &grant_id, EndReason::Idle).await?;
                                continue;
                            }
                            next = next.min(idle_by);
                        }
                    }
                    let used = live.used_secs;
                    if used >= live.checkpointed.saturating_add(PROGRESS_EVERY.as_secs()) {
                        self.checkpoint(&mut registry, &grant_id, used).await?;
                    }
                    next = next.min(mono + PROGRESS_EVERY);
                    next = next.min(deadline);
                    let left = deadline - mono;
                    for minutes in WARN_MINUTES {
                        let at = Duration::from_secs(u64::from(minutes) * 60);
                        if r.warned.contains(&minutes) {
                            continue;
                        }
                        if left <= at {
                            // One warning per grant at a time: the nearest one due.
                            let smaller_due = WARN_MINUTES.iter().any(|m| {
                                *m < minutes && left <= Duration::from_secs(u64::from(*m) * 60)
                            });
                            if smaller_due {
                                continue;
                            }
                            let event = AccessEvent::GrantWarning {
                                grant_id: grant_id.clone(),
                                minutes_left: minutes,
                                at: now,
                            };
                            self.transition(&mut registry, event, None).await?;
                        } else {
                            next = next.min(deadline - at);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(next)
    }

    /// The expiry task: one loop that sleeps until the next deadline or until woken, then does
    /// what is due. Ends when `shutdown` fires.
    pub async fn run_expiry(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let next = match self.tick().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "expiry task: a move failed; retrying in 1s");
                    self.clock.now_mono() + Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(next) => {}
                () = self.wake.notified() => {}
            }
        }
        // Record how much of each active grant was used, so a restart cannot give it back.
        if let Err(e) = self.checkpoint_all().await {
            tracing::error!(error = %e, "could not checkpoint active grants at shutdown");
        }
    }

    /// Journal how long active grant `grant_id` has been used (`GrantProgress`).
    async fn checkpoint(
        &self,
        registry: &mut Registry,
        grant_id: &str,
        used: u64,
    ) -> Result<(), GrantError> {
        let event = AccessEvent::GrantProgress {
            grant_id: grant_id.to_owned(),
            active_secs: used,
            at: self.clock.now_utc(),
        };
        self.transition(registry, event, None).await?;
        if let Some(entry) = self.live().get_mut(grant_id) {
            entry.checkpointed = used;
        }
        Ok(())
    }

    /// Checkpoint every active grant used since its last checkpoint (at shutdown).
    pub async fn checkpoint_all(&self) -> Result<(), GrantError> {
        let mut registry = self.registry.lock().await;
        let mono = self.clock.now_mono();
        let due: Vec<(String, u64)> = self
            .live()
            .iter()
            .filter(|(_, l)| l.counted_from.is_some())
            .map(|(g, l)| (g.clone(), l.used_secs(mono), l.checkpointed))
            .filter(|(_, used, done)| used > done)
            .map(|(g, used, _)| (g, used))
            .collect();
        for (grant_id, used) in due {
            let active = registry
                .find(&grant_id)
                .is_some_and(|r| r.state == GrantState::Active);
            if active {
                self.checkpoint(&mut registry, &grant_id, used).await?;
            }
        }
        Ok(())
    }
}

/// Why a verified review record cannot be imported (journaled as `Refused` by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewImportRefusal {
    /// `review <first 16 hex digits of its hash>`.
    pub target: String,
    /// `hq:<reviewer>`.
    pub actor: String,
    /// Why, in words.
    pub reason: String,
}

/// The name a review record's refusal is journaled under: `review <16 hex digits>` of the
/// SHA-256 of its bytes as offered (a record that does not decode has no signed part).
pub fn review_target_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    match otgate_sync::review::ReviewRecord::decode(bytes) {
        Ok(record) => format!(
            "review {}",
            hex::encode(record.hash().get(..8).unwrap_or(&[]))
        ),
        Err(_) => format!(
            "review file {}",
            hex::encode(sha2::Sha256::digest(bytes).get(..8).unwrap_or(&[]))
        ),
    }
}

/// Check HQ's verified review record against `registry`: every grant it names must be an
/// emergency grant here that awaits review and began before the record was issued, and the
/// record must not have been imported before. The one event that signs them all off, or why not.
pub fn review_import(
    registry: &Registry,
    review: &otgate_sync::review::VerifiedReview,
    now: DateTime<Utc>,
) -> Result<AccessEvent, ReviewImportRefusal> {
    let body = review.body();
    let hash = hex::encode(review.hash());
    let target = format!("review {}", hash.get(..16).unwrap_or(&hash));
    let refuse = |reason: String| ReviewImportRefusal {
        target: target.clone(),
        actor: format!("hq:{}", body.reviewer),
        reason,
    };
    let replayed = body.grant_ids.iter().any(|g| {
        registry
            .find(g)
            .and_then(|r| r.review.as_ref())
            .and_then(|v| v.record.as_deref())
            == Some(hash.as_str())
    });
    if replayed {
        return Err(refuse(format!(
            "this review record ({target}) was imported already: a replay"
        )));
    }
    let mut request_ids = Vec::with_capacity(body.grant_ids.len());
    for g in &body.grant_ids {
        let refusal = match registry.find(g) {
            None => Some(format!("{g} is not a grant of this appliance")),
            Some(r) if r.grant_id.as_deref() != Some(g.as_str()) => {
                Some(format!("{g} is a request, not a grant"))
            }
            Some(r) if r.mode != Some(GrantMode::Emergency) => Some(format!(
                "{g} is not an emergency grant; only those are reviewed"
            )),
            Some(r) if !r.awaits_review() => Some(format!(
                "{g} was signed off already by {}",
                r.review
                    .as_ref()
                    .and_then(|v| v.signed_off_by.as_deref())
                    .unwrap_or("someone")
            )),
            Some(r) if body.issued_at.timestamp() < r.submitted_at.timestamp() => Some(format!(
                "the record was issued at {}, before {g} was granted at {}",
                body.issued_at.to_rfc3339(),
                r.submitted_at.to_rfc3339()
            )),
            Some(r) => {
                request_ids.push(r.request_id.clone());
                None
            }
        };
        if let Some(why) = refusal {
            return Err(refuse(why));
        }
    }
    Ok(AccessEvent::ReviewImported {
        record: hash,
        reviewer: body.reviewer.clone(),
        verdict: body.verdict.as_str().to_owned(),
        comment: body.comment.clone(),
        issued_at: body.issued_at,
        signers: review.signers().iter().map(ToString::to_string).collect(),
        grant_ids: body.grant_ids.clone(),
        request_ids,
        at: now,
    })
}

/// A copy of what `tick` needs from a grant's [`Live`] entry (the lock is not held across
/// journal writes).
struct LiveView {
    deadline: Option<Instant>,
    last_left: bool,
    last_left_idle: bool,
    used: bool,
    counted_from: Option<Instant>,
    used_secs: u64,
    checkpointed: u64,
}

impl LiveView {
    fn of(live: &Live, now: Instant) -> Self {
        Self {
            deadline: live.deadline,
            last_left: live.last_left,
            last_left_idle: live.last_left_idle,
            used: live.used,
            counted_from: live.counted_from,
            used_secs: live.used_secs(now),
            checkpointed: live.checkpointed,
        }
    }
}

/// What is left of an active grant at wall-clock `now`: never more than its planned length,
/// than its wall-clock end minus `now`, or than its budget (activation to end) minus the time
/// it was used as last checkpointed on the monotonic clock.
pub fn remaining(record: &GrantRecord, now: DateTime<Utc>) -> Duration {
    let planned = record.end - record.start;
    let budget = record
        .activated_at
        .map_or(planned, |at| (record.end - at).min(planned));
    let used = i64::try_from(record.active_secs)
        .ok()
        .and_then(chrono::TimeDelta::try_seconds)
        .unwrap_or(chrono::TimeDelta::MAX);
    let left = (record.end - now)
        .min(planned)
        .min(budget - used)
        .max(chrono::TimeDelta::zero());
    left.to_std().unwrap_or_default()
}

/// The rule's idle timeout for a grant (the default when the rule names none).
fn idle_timeout(record: &GrantRecord) -> Duration {
    match record.idle_timeout_secs {
        0 => DEFAULT_IDLE_TIMEOUT,
        secs => Duration::from_secs(secs),
    }
}

/// Whether `who` may approve or deny `record`: named among its approvers, or (when it names
/// none) holding a role its approvals require.
fn may_decide(record: &GrantRecord, who: &str, roles: &[String]) -> Result<(), String> {
    if record.approvers.iter().any(|a| a == who) {
        return Ok(());
    }
    let holds = record
        .approvals_required
        .iter()
        .any(|need| roles.contains(&need.role));
    if record.approvers.is_empty() && holds {
        return Ok(());
    }
    Err(format!(
        "{who} holds none of the roles that approve {} (it needs {}); who may approve it may deny it",
        record.request_id,
        words_of(&record.approvals_required)
    ))
}

/// Whether `policy` would still grant every operation `record` holds, for what is left of its
/// window (asked again with the same terms); `Err` says what it no longer grants.
fn operations_still_granted(
    policy: &dyn AccessPolicy,
    record: &GrantRecord,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let Some(ask) = super::recheck::ask_again(record, record.mfa, now) else {
        // Nothing left of its window: the expiry task ends it.
        return Ok(());
    };
    let terms = match policy.decide(&ask, now) {
        Answer::Deny(why) => return Err(format!("the new policy refuses it: {why}")),
        Answer::Allow(terms) | Answer::NeedApproval(terms) => terms,
    };
    let parsed = (
        serde_json::from_value::<otgate_policy::GrantScope>(terms.scope),
        serde_json::from_value::<otgate_policy::GrantScope>(record.scope.clone()),
    );
    match parsed {
        (Ok(new), Ok(old)) => super::recheck::scope_covers(&new, &old),
        _ => Err("its scope cannot be compared with the new policy's".to_owned()),
    }
}

/// Whether `record` is one `filter` lists.
pub fn matches_filter(record: &GrantRecord, filter: ListFilter) -> bool {
    match filter {
        ListFilter::All => true,
        ListFilter::Pending => record.state.is_pending(),
        ListFilter::Active => record.state == GrantState::Active,
        ListFilter::Ended => record.state.is_final(),
        ListFilter::Review => record.awaits_review(),
    }
}

/// "1 shift-supervisor and 1 safety-engineer".
pub fn words_of(needs: &[crate::journal::event::RoleCount]) -> String {
    if needs.is_empty() {
        return "nobody".to_owned();
    }
    needs
        .iter()
        .map(|n| format!("{} {}", n.count, n.role))
        .collect::<Vec<_>>()
        .join(" and ")
}

fn notice_for(event: &AccessEvent, record: &GrantRecord) -> Option<Notice> {
    let id = record.display_id();
    let (kind, message, at) = match event {
        AccessEvent::RequestSubmitted(s) => (
            "request_submitted",
            format!(
                "{} asks for {} on {} ({}): {}",
                record.requester,
                record.operations.join(", "),
                record.asset,
                id,
                record.state
            ),
            s.at,
        ),
        AccessEvent::RequestRefused { reason, at, .. } => (
            "request_refused",
            format!("{} refused: {reason}", record.request_id),
            *at,
        ),
        AccessEvent::ApprovalGiven { approver, at, .. } => (
            "approval_given",
            format!("{approver} approved {}", record.request_id),
            *at,
        ),
        AccessEvent::RequestApproved { grant_id, at, .. } => (
            "request_approved",
            format!("{} approved as {grant_id}", record.request_id),
            *at,
        ),
        AccessEvent::RequestDenied {
            approver,
            reason,
            at,
            ..
        } => (
            "request_denied",
            format!("{approver} denied {}: {reason}", record.request_id),
            *at,
        ),
        AccessEvent::RequestExpired { at, .. } => (
            "request_expired",
            format!("{} expired unapproved", record.request_id),
            *at,
        ),
        AccessEvent::GrantActivated { end, at, .. } => (
            "grant_activated",
            format!("{id} active until {}", end.to_rfc3339()),
            *at,
        ),
        AccessEvent::GrantWarning {
            minutes_left, at, ..
        } => (
            "grant_warning",
            format!("{id} ends in {minutes_left} minutes"),
            *at,
        ),
        AccessEvent::GrantEnded { at, .. } => (
            "grant_ended",
            format!(
                "{id} ended: {}",
                record.outcome.as_ref().map_or("", |o| o.reason.as_str())
            ),
            *at,
        ),
        AccessEvent::GrantRevoked { by, reason, at, .. } => (
            "grant_revoked",
            format!("{id} revoked by {by}: {reason}"),
            *at,
        ),
        AccessEvent::ReviewSignedOff { by, at, .. } => {
            ("review_signed_off", format!("{id} signed off by {by}"), *at)
        }
        AccessEvent::ReviewImported {
            reviewer,
            verdict,
            grant_ids,
            at,
            ..
        } => (
            "review_imported",
            format!(
                "HQ's review by {reviewer} signed off {} ({verdict})",
                grant_ids.join(", ")
            ),
            *at,
        ),
        _ => return None,
    };
    Some(Notice {
        kind: kind.to_owned(),
        at,
        grant_id: record.grant_id.clone(),
        request_id: Some(record.request_id.clone()),
        message,
    })
}
