//! The decision engine: an access request in, `Allow` / `NeedApproval` / `Deny` out, with the
//! scope clipped to what the deciding rule permits, and every step explainable in words.
//!
//! How a request is decided:
//!
//! 1. The requester must be an IT identity (OT identities approve; they request only through
//!    break-glass, `emergency = true`), not expired at the grant's start; the target must exist.
//! 2. Candidate rules are those one of the requester's roles may use, whose targets match the
//!    asset, and whose mode fits (emergency rules only for break-glass requests).
//! 3. Each candidate is checked in a fixed order: operations, schedule, source network, ticket,
//!    MFA, duration. Among the candidates that allow the request, the least privileged and most
//!    specific wins: fewer write operations first (a read-only rule beats one that could also
//!    write, whatever it asks of approvals), then asset over tag over segment, fewer operations,
//!    shorter maximum, file order. When none allows it, the denial reports the candidate that
//!    got furthest through the checks: the closest rule's reason.
//! 4. The grant starts at the later of the requested start and `now`, and ends at the earliest of
//!    the requested end, the rule's maximum (unless `on_excess = "refuse"`), the end of the
//!    schedule window it starts in, and the account's expiry. Each clip is recorded.
//!
//! Pure and deterministic: `now` comes in, nothing is read from the environment.

use core::fmt;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{AssetId, IdentityId, RoleId, RuleId, ScheduleId};
use crate::model::{Asset, GrantMode, OnExcess, Policy, Protocol, Rule, Specificity};
use crate::ops::{ModbusSpec, OperationSpec};
use crate::schedule::Window;
use crate::scope::GrantScope;

/// A request for access, as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    /// Who asks.
    pub who: IdentityId,
    /// The asset asked for.
    pub target: AssetId,
    /// The operations asked for.
    pub operations: Vec<OperationSpec>,
    /// When the grant should start.
    pub start: DateTime<Utc>,
    /// How long it should last.
    #[serde(with = "crate::duration_serde")]
    pub duration: Duration,
    /// The change ticket, if given.
    #[serde(default)]
    pub ticket: Option<String>,
    /// The network address the request came from, if known.
    #[serde(default)]
    pub source: Option<IpAddr>,
    /// Whether the requester completed a second factor.
    #[serde(default)]
    pub mfa: bool,
    /// Whether this is a break-glass activation (only emergency rules apply).
    #[serde(default)]
    pub emergency: bool,
}

/// The engine's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", content = "detail", rename_all = "snake_case")]
pub enum Decision {
    /// Grant now (auto or emergency mode).
    Allow(Grantable),
    /// Grant once the approvals are in.
    NeedApproval(Grantable, ApprovalRequirement),
    /// Refuse.
    Deny(DenyReason),
}

impl Decision {
    /// The grantable part, unless denied.
    pub fn grantable(&self) -> Option<&Grantable> {
        match self {
            Decision::Allow(g) | Decision::NeedApproval(g, _) => Some(g),
            Decision::Deny(_) => None,
        }
    }

    /// The rule that decided, when one did.
    pub fn rule(&self) -> Option<&RuleId> {
        match self {
            Decision::Allow(g) | Decision::NeedApproval(g, _) => Some(&g.rule),
            Decision::Deny(reason) => reason.rule(),
        }
    }

    /// A one-word verdict: `allow`, `need_approval` or `deny`.
    pub fn verdict(&self) -> &'static str {
        match self {
            Decision::Allow(_) => "allow",
            Decision::NeedApproval(..) => "need_approval",
            Decision::Deny(_) => "deny",
        }
    }
}

/// What can be granted: the rule, the clipped scope and window, and the session limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grantable {
    /// The rule that decided.
    pub rule: RuleId,
    /// How the grant comes about.
    pub mode: GrantMode,
    /// What the grant allows.
    pub scope: GrantScope,
    /// When it starts.
    pub start: DateTime<Utc>,
    /// When it ends (clipped).
    pub end: DateTime<Utc>,
    /// Sessions idle this long close.
    #[serde(with = "crate::duration_serde")]
    pub idle_timeout: Duration,
    /// Whether the grant ends when its last session disconnects.
    pub end_on_last_disconnect: bool,
    /// Inspection alert kinds that revoke the grant.
    #[serde(default)]
    pub revoke_on: Vec<String>,
    /// What was cut from the request, and why.
    #[serde(default)]
    pub clips: Vec<Clip>,
    /// Other rules that would also have allowed the request (less specific or broader).
    #[serde(default)]
    pub also_allowed_by: Vec<RuleId>,
}

/// One way the request was cut down to what the rule permits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "clip", rename_all = "snake_case")]
pub enum Clip {
    /// The requested start was in the past; the grant starts now.
    StartMovedToNow {
        /// The start asked for.
        requested: DateTime<Utc>,
    },
    /// The duration was cut to the rule's maximum.
    MaxDuration {
        /// The duration asked for.
        #[serde(with = "crate::duration_serde")]
        requested: Duration,
        /// The rule's maximum.
        #[serde(with = "crate::duration_serde")]
        max: Duration,
    },
    /// The end was cut to the end of the schedule window the grant starts in.
    ScheduleWindow {
        /// The schedule.
        schedule: ScheduleId,
        /// The end of its window.
        window_end: DateTime<Utc>,
    },
    /// The end was cut to the account's expiry.
    AccountExpiry {
        /// When the account expires.
        expires: DateTime<Utc>,
    },
    /// An operation was narrowed to what the rule grants.
    Operation {
        /// What was asked for.
        requested: OperationSpec,
        /// What is granted of it.
        granted: Vec<OperationSpec>,
    },
}

/// Approvals a grant needs: per role a count, from distinct people, never the requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequirement {
    /// The rule that asks for the approvals.
    pub rule: RuleId,
    /// The requester, who may never approve.
    pub requester: IdentityId,
    /// Per role, how many distinct approvers.
    pub required: Vec<crate::model::RoleCount>,
    /// If non-empty, only these OT identities count.
    #[serde(default)]
    pub approvers: Vec<IdentityId>,
}

/// One approval given, with the approver's OT roles (see [`Policy::approval_by`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The OT identity that approved.
    pub approver: IdentityId,
    /// The OT roles they hold.
    pub roles: Vec<RoleId>,
}

/// Why an approval does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoredApproval {
    /// The requester cannot approve their own request.
    Requester,
    /// The same person approved twice; they count once.
    Duplicate,
    /// The rule names its approvers and this person is not among them.
    NotListed,
    /// The person holds none of the required roles.
    NoRequiredRole,
    /// Every slot this person could fill is already filled by others.
    NotNeeded,
}

/// The state of a set of approvals against a requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalCheck {
    /// Whether every required count is met.
    pub satisfied: bool,
    /// Per role, how many approvals are still missing (only roles with some missing).
    pub missing: Vec<crate::model::RoleCount>,
    /// Who counted, and for which role.
    pub counted: Vec<(IdentityId, RoleId)>,
    /// Approvals that did not count, and why.
    pub ignored: Vec<(IdentityId, IgnoredApproval)>,
}

impl ApprovalRequirement {
    /// Check a set of approvals: each person fills at most one slot of one required role; the
    /// requester and duplicates never count. Finds the best assignment (bipartite matching), so
    /// a person holding two roles is placed where they are needed.
    pub fn check(&self, approvals: &[Approval]) -> ApprovalCheck {
        let mut ignored = Vec::new();
        let mut people: Vec<&Approval> = Vec::new();
        for a in approvals {
            if a.approver == self.requester {
                ignored.push((a.approver.clone(), IgnoredApproval::Requester));
            } else if people.iter().any(|p| p.approver == a.approver) {
                ignored.push((a.approver.clone(), IgnoredApproval::Duplicate));
            } else if !self.approvers.is_empty() && !self.approvers.contains(&a.approver) {
                ignored.push((a.approver.clone(), IgnoredApproval::NotListed));
            } else if !self.required.iter().any(|rc| a.roles.contains(&rc.role)) {
                ignored.push((a.approver.clone(), IgnoredApproval::NoRequiredRole));
            } else {
                people.push(a);
            }
        }
        // Slots: one per required approval, labelled with its role.
        let slots: Vec<&RoleId> = self
            .required
            .iter()
            .flat_map(|rc| std::iter::repeat_n(&rc.role, usize::from(rc.count)))
            .collect();
        let mut slot_owner: Vec<Option<usize>> = vec![None; slots.len()];
        for person in 0..people.len() {
            let mut seen = vec![false; slots.len()];
            augment(person, &people, &slots, &mut slot_owner, &mut seen, 0);
        }
        let mut counted = Vec::new();
        let mut missing: Vec<crate::model::RoleCount> = Vec::new();
        for (slot, owner) in slots.iter().zip(&slot_owner) {
            match owner.and_then(|p| people.get(p)) {
                Some(p) => counted.push((p.approver.clone(), (*slot).clone())),
                None => match missing.iter_mut().find(|m| &m.role == *slot) {
                    Some(m) => m.count = m.count.saturating_add(1),
                    None => missing.push(crate::model::RoleCount {
                        role: (*slot).clone(),
                        count: 1,
                    }),
                },
            }
        }
        for p in &people {
            if !counted.iter().any(|(id, _)| *id == p.approver) {
                ignored.push((p.approver.clone(), IgnoredApproval::NotNeeded));
            }
        }
        ApprovalCheck {
            satisfied: missing.is_empty(),
            missing,
            counted,
            ignored,
        }
    }

    /// The total number of approvals needed.
    pub fn total(&self) -> u32 {
        self.required.iter().map(|rc| u32::from(rc.count)).sum()
    }
}

/// Kuhn's augmenting path for bipartite matching; depth bounded by the number of people.
fn augment(
    person: usize,
    people: &[&Approval],
    slots: &[&RoleId],
    owner: &mut [Option<usize>],
    seen: &mut [bool],
    depth: usize,
) -> bool {
    if depth > people.len() {
        return false;
    }
    let Some(p) = people.get(person) else {
        return false;
    };
    for (slot, role) in slots.iter().enumerate() {
        if !p.roles.contains(role) || seen.get(slot).copied().unwrap_or(true) {
            continue;
        }
        if let Some(s) = seen.get_mut(slot) {
            *s = true;
        }
        let current = owner.get(slot).copied().flatten();
        let free = match current {
            None => true,
            Some(other) => augment(other, people, slots, owner, seen, depth + 1),
        };
        if free {
            if let Some(o) = owner.get_mut(slot) {
                *o = Some(person);
            }
            return true;
        }
    }
    false
}

/// Why a request was denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DenyReason {
    /// The request names no operation.
    NoOperations,
    /// The request asks for zero time.
    ZeroDuration,
    /// The requester is not in the policy.
    UnknownIdentity {
        /// Who asked.
        who: IdentityId,
    },
    /// An OT identity asked through the normal path; OT identities approve, and request only
    /// through break-glass.
    NotARequester {
        /// Who asked.
        who: IdentityId,
    },
    /// The account had expired by the grant's start.
    AccountExpired {
        /// Who asked.
        who: IdentityId,
        /// When the account expired.
        expired: DateTime<Utc>,
    },
    /// The target is not in the policy.
    UnknownAsset {
        /// The asset asked for.
        target: AssetId,
    },
    /// The requested window ends before it could start.
    WindowOver {
        /// The requested end.
        end: DateTime<Utc>,
    },
    /// No rule lets any of the requester's roles reach the target.
    NoRule {
        /// Who asked.
        who: IdentityId,
        /// Their roles.
        roles: Vec<RoleId>,
        /// The asset asked for.
        target: AssetId,
    },
    /// An operation does not apply to the target's protocol.
    OperationNotApplicable {
        /// The closest rule.
        rule: RuleId,
        /// The operation.
        op: OperationSpec,
        /// The target's protocol.
        protocol: Protocol,
    },
    /// The rule does not permit an operation.
    OperationNotPermitted {
        /// The closest rule.
        rule: RuleId,
        /// The operation.
        op: OperationSpec,
    },
    /// The start is outside every schedule of the rule.
    OutsideSchedule {
        /// The closest rule.
        rule: RuleId,
        /// The start.
        at: DateTime<Utc>,
        /// The rule's schedules.
        schedules: Vec<ScheduleId>,
        /// When the next window opens, if one is known.
        next_window: Option<DateTime<Utc>>,
    },
    /// The request comes from a network the rule does not allow.
    SourceNotAllowed {
        /// The closest rule.
        rule: RuleId,
        /// Where it came from.
        source: Option<IpAddr>,
    },
    /// The rule requires a ticket and none was given.
    TicketMissing {
        /// The closest rule.
        rule: RuleId,
        /// The pattern tickets must match.
        pattern: String,
    },
    /// The ticket does not match the rule's pattern.
    TicketMismatch {
        /// The closest rule.
        rule: RuleId,
        /// The ticket given.
        ticket: String,
        /// The pattern tickets must match.
        pattern: String,
    },
    /// The rule requires a second factor and none was presented.
    MfaMissing {
        /// The closest rule.
        rule: RuleId,
    },
    /// The request is longer than the rule allows and the rule refuses longer requests.
    DurationExceeded {
        /// The closest rule.
        rule: RuleId,
        /// The duration asked for.
        #[serde(with = "crate::duration_serde")]
        requested: Duration,
        /// The rule's maximum.
        #[serde(with = "crate::duration_serde")]
        max: Duration,
    },
}

impl DenyReason {
    /// The rule whose check failed, when a rule got that far.
    pub fn rule(&self) -> Option<&RuleId> {
        match self {
            DenyReason::OperationNotApplicable { rule, .. }
            | DenyReason::OperationNotPermitted { rule, .. }
            | DenyReason::OutsideSchedule { rule, .. }
            | DenyReason::SourceNotAllowed { rule, .. }
            | DenyReason::TicketMissing { rule, .. }
            | DenyReason::TicketMismatch { rule, .. }
            | DenyReason::MfaMissing { rule }
            | DenyReason::DurationExceeded { rule, .. } => Some(rule),
            _ => None,
        }
    }

    /// A short snake_case code for the reason (as serialized in `reason`).
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::NoOperations => "no_operations",
            DenyReason::ZeroDuration => "zero_duration",
            DenyReason::UnknownIdentity { .. } => "unknown_identity",
            DenyReason::NotARequester { .. } => "not_a_requester",
            DenyReason::AccountExpired { .. } => "account_expired",
            DenyReason::UnknownAsset { .. } => "unknown_asset",
            DenyReason::WindowOver { .. } => "window_over",
            DenyReason::NoRule { .. } => "no_rule",
            DenyReason::OperationNotApplicable { .. } => "operation_not_applicable",
            DenyReason::OperationNotPermitted { .. } => "operation_not_permitted",
            DenyReason::OutsideSchedule { .. } => "outside_schedule",
            DenyReason::SourceNotAllowed { .. } => "source_not_allowed",
            DenyReason::TicketMissing { .. } => "ticket_missing",
            DenyReason::TicketMismatch { .. } => "ticket_mismatch",
            DenyReason::MfaMissing { .. } => "mfa_missing",
            DenyReason::DurationExceeded { .. } => "duration_exceeded",
        }
    }
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn human(d: Duration) -> String {
    crate::duration_serde::format(d)
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::NoOperations => f.write_str("the request names no operation"),
            DenyReason::ZeroDuration => f.write_str("the request asks for no time"),
            DenyReason::UnknownIdentity { who } => write!(f, "`{who}` is not an identity in this policy"),
            DenyReason::NotARequester { who } => {
                write!(f, "`{who}` is an OT identity: OT identities approve requests and reach assets only through break-glass")
            }
            DenyReason::AccountExpired { who, expired } => {
                write!(f, "the account `{who}` expired at {}", ts(expired))
            }
            DenyReason::UnknownAsset { target } => write!(f, "`{target}` is not an asset in this policy"),
            DenyReason::WindowOver { end } => write!(f, "the requested window ended at {}", ts(end)),
            DenyReason::NoRule { who, roles, target } => {
                let roles: Vec<&str> = roles.iter().map(RoleId::as_str).collect();
                write!(f, "no rule lets `{who}` (roles: {}) reach `{target}`", roles.join(", "))
            }
            DenyReason::OperationNotApplicable { rule, op, protocol } => {
                write!(f, "operation `{op}` does not apply to a {} asset (closest rule `{rule}`)", protocol.name())
            }
            DenyReason::OperationNotPermitted { rule, op } => {
                write!(f, "operation `{op}` is not permitted by rule `{rule}`")
            }
            DenyReason::OutsideSchedule { rule, at, schedules, next_window } => {
                let names: Vec<&str> = schedules.iter().map(ScheduleId::as_str).collect();
                write!(f, "{} is outside the schedule of rule `{rule}` ({})", ts(at), names.join(", "))?;
                if let Some(next) = next_window {
                    write!(f, "; the next window opens at {}", ts(next))?;
                }
                Ok(())
            }
            DenyReason::SourceNotAllowed { rule, source } => match source {
                Some(ip) => write!(f, "requests from {ip} are not allowed by rule `{rule}`"),
                None => write!(f, "rule `{rule}` restricts source networks and the request's source is unknown"),
            },
            DenyReason::TicketMissing { rule, pattern } => {
                write!(f, "rule `{rule}` requires a ticket matching `{pattern}`")
            }
            DenyReason::TicketMismatch { rule, ticket, pattern } => {
                write!(f, "ticket `{ticket}` does not match `{pattern}` required by rule `{rule}`")
            }
            DenyReason::MfaMissing { rule } => write!(f, "rule `{rule}` requires a second factor (MFA)"),
            DenyReason::DurationExceeded { rule, requested, max } => write!(
                f,
                "{} is longer than the {} rule `{rule}` allows, and the rule refuses longer requests",
                human(*requested),
                human(*max)
            ),
        }
    }
}

impl fmt::Display for Clip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Clip::StartMovedToNow { requested } => {
                write!(
                    f,
                    "the requested start {} is past; the grant starts now",
                    ts(requested)
                )
            }
            Clip::MaxDuration { requested, max } => {
                write!(
                    f,
                    "{} asked, cut to the rule's maximum of {}",
                    human(*requested),
                    human(*max)
                )
            }
            Clip::ScheduleWindow {
                schedule,
                window_end,
            } => {
                write!(f, "ends with the `{schedule}` window at {}", ts(window_end))
            }
            Clip::AccountExpiry { expires } => {
                write!(f, "ends when the account expires at {}", ts(expires))
            }
            Clip::Operation { requested, granted } => {
                let granted: Vec<String> = granted.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "operation `{requested}` narrowed to `{}`",
                    granted.join(", ")
                )
            }
        }
    }
}

impl fmt::Display for Decision {
    /// The decision in words: verdict, rule, scope, window, approvals, clips.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let grantable = match self {
            Decision::Deny(reason) => return write!(f, "DENY: {reason}"),
            Decision::Allow(g) => {
                let how = match g.mode {
                    GrantMode::Emergency => "emergency (break-glass), reviewed afterwards",
                    _ => "by policy, no approval needed",
                };
                writeln!(f, "ALLOW under rule `{}` ({how})", g.rule)?;
                g
            }
            Decision::NeedApproval(g, req) => {
                writeln!(f, "NEEDS APPROVAL under rule `{}`", g.rule)?;
                let parts: Vec<String> = req
                    .required
                    .iter()
                    .map(|rc| format!("{} {}", rc.count, rc.role))
                    .collect();
                write!(
                    f,
                    "  approvals: {} (distinct people, never the requester `{}`",
                    parts.join(" and "),
                    req.requester
                )?;
                if !req.approvers.is_empty() {
                    let names: Vec<&str> = req.approvers.iter().map(IdentityId::as_str).collect();
                    write!(f, "; only {}", names.join(", "))?;
                }
                writeln!(f, ")")?;
                g
            }
        };
        writeln!(f, "  scope: {}", grantable.scope)?;
        writeln!(
            f,
            "  window: {} to {}",
            ts(&grantable.start),
            ts(&grantable.end)
        )?;
        write!(f, "  idle timeout: {}", human(grantable.idle_timeout))?;
        if grantable.end_on_last_disconnect {
            write!(f, "; ends when the last session disconnects")?;
        }
        for clip in &grantable.clips {
            write!(f, "\n  clipped: {clip}")?;
        }
        if !grantable.also_allowed_by.is_empty() {
            let names: Vec<&str> = grantable
                .also_allowed_by
                .iter()
                .map(RuleId::as_str)
                .collect();
            write!(
                f,
                "\n  chosen as the most specific, least privileged rule; also allowed by: {}",
                names.join(", ")
            )?;
        }
        Ok(())
    }
}

/// A rule that allows the request, before choosing among several.
struct Candidate {
    index: usize,
    key: (usize, Specificity, usize, Duration, usize),
    evaluated: Evaluated,
}

/// What a rule that allows the request would grant; made into a [`Grantable`] only for the
/// rule that wins, so losing candidates cost no clones of ids and approvals.
struct Evaluated {
    scope: GrantScope,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    clips: Vec<Clip>,
}

/// A rule that refuses the request, with how far it got.
struct Refused {
    stage: u8,
    key: (Specificity, usize),
    reason: DenyReason,
}

impl Policy {
    /// Decide an access request at `now`. Pure: same inputs, same answer.
    pub fn decide(&self, request: &AccessRequest, now: DateTime<Utc>) -> Decision {
        if request.operations.is_empty() {
            return Decision::Deny(DenyReason::NoOperations);
        }
        if request.duration.is_zero() {
            return Decision::Deny(DenyReason::ZeroDuration);
        }
        let (roles, expires) = if let Some(p) = self.it_identity(request.who.as_str()) {
            (&p.roles, p.expires)
        } else if let Some(o) = self.ot_identity(request.who.as_str()) {
            if !request.emergency {
                return Decision::Deny(DenyReason::NotARequester {
                    who: request.who.clone(),
                });
            }
            (&o.roles, None)
        } else {
            return Decision::Deny(DenyReason::UnknownIdentity {
                who: request.who.clone(),
            });
        };
        let Some(asset) = self.asset(request.target.as_str()) else {
            return Decision::Deny(DenyReason::UnknownAsset {
                target: request.target.clone(),
            });
        };
        let start = request.start.max(now);
        let requested_end = chrono::Duration::from_std(request.duration)
            .ok()
            .and_then(|d| request.start.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if requested_end <= start {
            return Decision::Deny(DenyReason::WindowOver { end: requested_end });
        }
        if let Some(expired) = expires.filter(|e| *e <= start) {
            return Decision::Deny(DenyReason::AccountExpired {
                who: request.who.clone(),
                expired,
            });
        }

        let mut seen: Vec<usize> = Vec::new();
        let mut best: Option<Candidate> = None;
        let mut also: Vec<usize> = Vec::new();
        let mut refused: Option<Refused> = None;
        for role in roles {
            for &index in self.rules_for_role(role) {
                if seen.contains(&index) {
                    continue;
                }
                seen.push(index);
                let Some(rule) = self.rules.get(index) else {
                    continue;
                };
                if (rule.mode == GrantMode::Emergency) != request.emergency {
                    continue;
                }
                let Some(specificity) = rule.targets.matches(asset) else {
                    continue;
                };
                let ctx = Ctx {
                    request,
                    asset,
                    start,
                    requested_end,
                    expires,
                };
                match self.evaluate(rule, &ctx) {
                    Ok(evaluated) => {
                        let writes = rule.operations.iter().filter(|o| o.is_write()).count();
                        let key = (
                            writes,
                            specificity,
                            rule.operations.len(),
                            rule.max_duration,
                            index,
                        );
                        let candidate = Candidate {
                            index,
                            key,
                            evaluated,
                        };
                        match &best {
                            Some(b) if b.key <= key => also.push(index),
                            Some(b) => {
                                also.push(b.index);
                                best = Some(candidate);
                            }
                            None => best = Some(candidate),
                        }
                    }
                    Err((stage, reason)) => {
                        let better = refused.as_ref().is_none_or(|r| {
                            stage > r.stage || (stage == r.stage && (specificity, index) < r.key)
                        });
                        if better {
                            refused = Some(Refused {
                                stage,
                                key: (specificity, index),
                                reason,
                            });
                        }
                    }
                }
            }
        }
        if let Some(best) = best {
            let Some(rule) = self.rules.get(best.index) else {
                return Decision::Deny(DenyReason::NoOperations);
            };
            also.sort_by_key(|&i| {
                self.rules.get(i).map(|r| {
                    let writes = r.operations.iter().filter(|o| o.is_write()).count();
                    (
                        writes,
                        r.targets.matches(asset),
                        r.operations.len(),
                        r.max_duration,
                        i,
                    )
                })
            });
            let Evaluated {
                scope,
                start,
                end,
                clips,
            } = best.evaluated;
            let grantable = Grantable {
                rule: rule.id.clone(),
                mode: rule.mode,
                scope,
                start,
                end,
                idle_timeout: rule.idle_timeout,
                end_on_last_disconnect: rule.end_on_last_disconnect,
                revoke_on: rule.revoke_on.clone(),
                clips,
                also_allowed_by: also
                    .iter()
                    .filter_map(|&i| self.rules.get(i).map(|r| r.id.clone()))
                    .collect(),
            };
            return match rule.mode {
                GrantMode::Approvers => Decision::NeedApproval(
                    grantable,
                    ApprovalRequirement {
                        rule: rule.id.clone(),
                        requester: request.who.clone(),
                        required: rule.approvals.clone(),
                        approvers: rule.approvers.clone(),
                    },
                ),
                GrantMode::Auto | GrantMode::Emergency => Decision::Allow(grantable),
            };
        }
        match refused {
            Some(r) => Decision::Deny(r.reason),
            None => Decision::Deny(DenyReason::NoRule {
                who: request.who.clone(),
                roles: roles.clone(),
                target: request.target.clone(),
            }),
        }
    }

    /// Check one rule against the request; `Err` carries how far it got and why it refused.
    fn evaluate(&self, rule: &Rule, ctx: &Ctx<'_>) -> Result<Evaluated, (u8, DenyReason)> {
        let Ctx {
            request,
            asset,
            start,
            requested_end,
            expires,
        } = *ctx;
        let mut clips = Vec::new();
        if request.start < start {
            clips.push(Clip::StartMovedToNow {
                requested: request.start,
            });
        }

        // 1. Operations.
        let mut scope = GrantScope::empty(asset.id.clone(), asset.protocol);
        for op in &request.operations {
            let Some(op) = op.applied_to(asset.protocol) else {
                return Err((
                    0,
                    DenyReason::OperationNotApplicable {
                        rule: rule.id.clone(),
                        op: op.clone(),
                        protocol: asset.protocol,
                    },
                ));
            };
            let mut granted: Vec<OperationSpec> = Vec::new();
            for rop in &rule.operations {
                let Some(rop) = rop.applied_to(asset.protocol) else {
                    continue;
                };
                if let Some(part) = rop.intersect(&op).and_then(|p| resolve_units(p, asset)) {
                    if !granted.contains(&part) {
                        granted.push(part);
                    }
                }
            }
            if granted.is_empty() {
                return Err((
                    1,
                    DenyReason::OperationNotPermitted {
                        rule: rule.id.clone(),
                        op: op.into_owned(),
                    },
                ));
            }
            if !granted.iter().any(|g| is_whole(g, &op, asset)) {
                clips.push(Clip::Operation {
                    requested: op.into_owned(),
                    granted: granted.clone(),
                });
            }
            for g in granted {
                scope.add(g);
            }
        }

        // 2. Schedule: the grant must start inside a window; it ends with that window.
        let mut window: Option<(ScheduleId, Window)> = None;
        if !rule.schedules.is_empty() {
            for id in &rule.schedules {
                let Some(schedule) = self.schedule(id.as_str()) else {
                    continue;
                };
                if let Some(w) = schedule.window_at(start) {
                    if window.as_ref().is_none_or(|(_, best)| w.end > best.end) {
                        window = Some((id.clone(), w));
                    }
                }
            }
            if window.is_none() {
                let next_window = rule
                    .schedules
                    .iter()
                    .filter_map(|id| self.schedule(id.as_str()))
                    .filter_map(|s| s.next_start(start))
                    .min();
                return Err((
                    2,
                    DenyReason::OutsideSchedule {
                        rule: rule.id.clone(),
                        at: start,
                        schedules: rule.schedules.clone(),
                        next_window,
                    },
                ));
            }
        }

        // 3. Source network.
        let reqs = &rule.requirements;
        if !reqs.sources.is_empty()
            && !request
                .source
                .is_some_and(|ip| reqs.sources.iter().any(|n| n.contains(&ip)))
        {
            return Err((
                3,
                DenyReason::SourceNotAllowed {
                    rule: rule.id.clone(),
                    source: request.source,
                },
            ));
        }

        // 4. Ticket.
        if let Some(pattern) = &reqs.ticket {
            match &request.ticket {
                None => {
                    return Err((
                        4,
                        DenyReason::TicketMissing {
                            rule: rule.id.clone(),
                            pattern: pattern.as_str().to_owned(),
                        },
                    ))
                }
                Some(t) if !pattern.is_match(t) => {
                    return Err((
                        4,
                        DenyReason::TicketMismatch {
                            rule: rule.id.clone(),
                            ticket: t.clone(),
                            pattern: pattern.as_str().to_owned(),
                        },
                    ))
                }
                Some(_) => {}
            }
        }

        // 5. MFA (break-glass: the panel's signed activation is the factor).
        if reqs.mfa && !request.mfa && rule.mode != GrantMode::Emergency {
            return Err((
                5,
                DenyReason::MfaMissing {
                    rule: rule.id.clone(),
                },
            ));
        }

        // 6. Duration and the end of the grant.
        let mut end = requested_end;
        if request.duration > rule.max_duration {
            if rule.on_excess == OnExcess::Refuse {
                return Err((
                    6,
                    DenyReason::DurationExceeded {
                        rule: rule.id.clone(),
                        requested: request.duration,
                        max: rule.max_duration,
                    },
                ));
            }
            clips.push(Clip::MaxDuration {
                requested: request.duration,
                max: rule.max_duration,
            });
        }
        let max_end = chrono::Duration::from_std(rule.max_duration)
            .ok()
            .and_then(|d| start.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        end = end.min(max_end);
        if let Some((schedule, w)) = &window {
            if w.end < end {
                end = w.end;
                clips.push(Clip::ScheduleWindow {
                    schedule: schedule.clone(),
                    window_end: w.end,
                });
            }
        }
        if let Some(expires) = expires {
            if expires < end {
                end = expires;
                clips.push(Clip::AccountExpiry { expires });
            }
        }

        Ok(Evaluated {
            scope,
            start,
            end,
            clips,
        })
    }

    /// The approval an identity can give: only OT identities approve.
    pub fn approval_by(&self, id: &str) -> Result<Approval, ApproverError> {
        if let Some(o) = self.ot_identity(id) {
            return Ok(Approval {
                approver: o.id.clone(),
                roles: o.roles.clone(),
            });
        }
        if self.it_identity(id).is_some() {
            return Err(ApproverError::ItIdentity {
                id: IdentityId::new(id),
            });
        }
        Err(ApproverError::Unknown {
            id: IdentityId::new(id),
        })
    }
}

/// Why an identity cannot approve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApproverError {
    /// The identity is in the IT zone; an IT credential can never approve.
    #[error("`{id}` is an IT identity; only OT identities can approve")]
    ItIdentity {
        /// The identity.
        id: IdentityId,
    },
    /// The identity is not in the policy.
    #[error("`{id}` is not an identity in this policy")]
    Unknown {
        /// The identity.
        id: IdentityId,
    },
}

#[derive(Clone, Copy)]
struct Ctx<'a> {
    request: &'a AccessRequest,
    asset: &'a Asset,
    start: DateTime<Utc>,
    requested_end: DateTime<Utc>,
    expires: Option<DateTime<Utc>>,
}

/// Whether `granted` is all of `requested` (with the asset's unit ids filled in).
fn is_whole(granted: &OperationSpec, requested: &OperationSpec, asset: &Asset) -> bool {
    match (granted, requested) {
        (OperationSpec::Modbus(g), OperationSpec::Modbus(r)) => {
            let units_match = if r.units.is_empty() {
                g.units == asset.unit_ids
            } else {
                g.units
                    .iter()
                    .eq(r.units.iter().filter(|u| asset.unit_ids.contains(u)))
            };
            g.class == r.class
                && g.function == r.function
                && g.table == r.table
                && g.ranges == r.ranges
                && units_match
        }
        _ => granted == requested,
    }
}

/// Give a Modbus operation concrete unit ids: its own (limited to the asset's) or the asset's.
fn resolve_units(op: OperationSpec, asset: &Asset) -> Option<OperationSpec> {
    match op {
        OperationSpec::Modbus(m) => {
            let units: Vec<u8> = if m.units.is_empty() {
                asset.unit_ids.clone()
            } else {
                m.units
                    .iter()
                    .copied()
                    .filter(|u| asset.unit_ids.contains(u))
                    .collect()
            };
            if units.is_empty() {
                return None;
            }
            Some(OperationSpec::Modbus(ModbusSpec { units, ..m }))
        }
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RoleCount;

    fn requirement(required: &[(&str, u8)], approvers: &[&str]) -> ApprovalRequirement {
        ApprovalRequirement {
            rule: RuleId::new("r"),
            requester: IdentityId::new("alice"),
            required: required
                .iter()
                .map(|(role, count)| RoleCount {
                    role: RoleId::new(*role),
                    count: *count,
                })
                .collect(),
            approvers: approvers.iter().map(|a| IdentityId::new(*a)).collect(),
        }
    }

    fn approval(who: &str, roles: &[&str]) -> Approval {
        Approval {
            approver: IdentityId::new(who),
            roles: roles.iter().map(|r| RoleId::new(*r)).collect(),
        }
    }

    #[test]
    fn a_person_with_two_roles_is_placed_where_needed() {
        let req = requirement(&[("sup", 1), ("safety", 1)], &[]);
        // x holds both roles and approves first; y only `sup`. x must fill `safety`.
        let check = req.check(&[approval("x", &["sup", "safety"]), approval("y", &["sup"])]);
        assert!(check.satisfied, "{check:?}");
        assert!(check
            .counted
            .contains(&(IdentityId::new("x"), RoleId::new("safety"))));
        // One person never fills two slots.
        let check = req.check(&[approval("x", &["sup", "safety"])]);
        assert!(!check.satisfied);
        assert_eq!(check.missing.len(), 1);
    }

    #[test]
    fn requester_duplicates_and_strangers_do_not_count() {
        let req = requirement(&[("sup", 2)], &["sam", "sue", "alice"]);
        let check = req.check(&[
            approval("alice", &["sup"]),
            approval("sam", &["sup"]),
            approval("sam", &["sup"]),
            approval("mallory", &["sup"]),
            approval("olga", &["safety"]),
        ]);
        assert!(!check.satisfied);
        assert_eq!(
            check.missing,
            vec![RoleCount {
                role: RoleId::new("sup"),
                count: 1
            }]
        );
        let why: Vec<IgnoredApproval> = check.ignored.iter().map(|(_, why)| *why).collect();
        assert_eq!(
            why,
            vec![
                IgnoredApproval::Requester,
                IgnoredApproval::Duplicate,
                IgnoredApproval::NotListed,
                IgnoredApproval::NotListed,
            ]
        );
        let check = req.check(&[approval("sam", &["sup"]), approval("sue", &["sup"])]);
        assert!(check.satisfied);
    }
}
