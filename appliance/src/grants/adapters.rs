//! The real implementations of the grants service's seams: the journal records
//! ([`Recorder`] for [`Journal`]) and the active policy decides ([`PolicyAccess`]).
//!
//! Translation only: operation strings are parsed with `OperationSpec::from_str`, policy ids
//! are wrapped, the decision is put into words. Nothing is decided here that the policy crate
//! does not decide, with one exception owned by signed bundles: a [`PolicyAccess`] built with
//! its bundle's validity ([`PolicyAccess::with_validity`]) refuses every request but
//! break-glass once the bundle's grace has run out (the standing comes from
//! `bundles::BundleValidity::standing` at the decision's own `now`), words decisions made on
//! grace with a warning, and no longer covers non-break-glass grants. Expiry never widens
//! access, and break-glass never lapses.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use otgate_policy::{
    AccessRequest, Approval, ApprovalRequirement, Decision, GrantMode as PolicyMode, Grantable,
    IdentityId, OperationSpec, Policy, RoleCount as PolicyRoleCount, RoleId, RuleId,
};

use super::seams::{AccessPolicy, Answer, Ask, RecordError, RecordFuture, Recorder, Tally, Terms};
use crate::bundles::{BundleValidity, Standing};
use crate::journal::event::{Event, GrantMode, RoleCount};
use crate::journal::Journal;

impl Recorder for Journal {
    fn record(&self, event: Event, reserved: bool) -> RecordFuture<'_> {
        Box::pin(async move {
            let appended = if reserved {
                self.append_reserved(event).await
            } else {
                self.append(event).await
            };
            appended.map(|_| ()).map_err(|e| RecordError(e.to_string()))
        })
    }
}

/// The active policy, as the grants service asks it.
#[derive(Debug, Clone)]
pub struct PolicyAccess {
    policy: Arc<Policy>,
    /// The signed bundle's validity (`None` for an unsigned test policy, which never lapses).
    validity: Option<BundleValidity>,
    /// Whether the bundle had lapsed when this view was made (for [`AccessPolicy::still_covers`],
    /// which is asked without a clock when the policy changes).
    lapsed_when_made: bool,
}

impl PolicyAccess {
    /// Wrap a parsed (and, outside tests, verified) policy.
    pub fn new(policy: Arc<Policy>) -> Self {
        Self {
            policy,
            validity: None,
            lapsed_when_made: false,
        }
    }

    /// Wrap the policy of a signed bundle with the bundle's validity, as it stands at `now`.
    pub fn with_validity(
        policy: Arc<Policy>,
        validity: BundleValidity,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            policy,
            validity: Some(validity),
            lapsed_when_made: validity.standing(now).breakglass_only(),
        }
    }

    /// Why only break-glass is granted at `now`, if the bundle has lapsed.
    fn lapsed(&self, now: DateTime<Utc>) -> Option<String> {
        let validity = self.validity?;
        match validity.standing(now) {
            Standing::Lapsed { grace_until } => Some(format!(
                "the policy has lapsed: bundle v{} expired at {} and its grace ended at {}; only break-glass works until a newer bundle is installed (`otgate policy status`)",
                validity.version,
                validity.expires_at.to_rfc3339(),
                grace_until.to_rfc3339()
            )),
            _ => None,
        }
    }

    /// The warning added to the words of a decision made while the bundle runs on grace.
    fn grace_note(&self, now: DateTime<Utc>) -> Option<String> {
        match self.validity?.standing(now) {
            Standing::Grace {
                expired_at,
                grace_until,
            } => Some(format!(
                "\n  warning: the policy bundle expired at {} and is enforced on grace until {}",
                expired_at.to_rfc3339(),
                grace_until.to_rfc3339()
            )),
            _ => None,
        }
    }

    /// The policy itself.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }
}

fn parse_ops(ops: &[String]) -> Result<Vec<OperationSpec>, String> {
    ops.iter()
        .map(|o| {
            o.parse::<OperationSpec>()
                .map_err(|e| format!("operation `{o}`: {e}"))
        })
        .collect()
}

fn mode_of(mode: PolicyMode) -> GrantMode {
    match mode {
        PolicyMode::Approvers => GrantMode::Approvers,
        PolicyMode::Auto => GrantMode::Auto,
        PolicyMode::Emergency => GrantMode::Emergency,
    }
}

fn counts_of(counts: &[PolicyRoleCount]) -> Vec<RoleCount> {
    counts
        .iter()
        .map(|c| RoleCount {
            role: c.role.to_string(),
            count: u32::from(c.count),
        })
        .collect()
}

fn terms_of(g: Grantable, requirement: Option<&ApprovalRequirement>, words: String) -> Terms {
    Terms {
        rule: g.rule.to_string(),
        mode: mode_of(g.mode),
        scope: serde_json::to_value(&g.scope).unwrap_or(serde_json::Value::Null),
        start: g.start,
        end: g.end,
        idle_timeout_secs: g.idle_timeout.as_secs(),
        end_on_last_disconnect: g.end_on_last_disconnect,
        revoke_on: g.revoke_on,
        approvals_required: requirement
            .map(|r| counts_of(&r.required))
            .unwrap_or_default(),
        approvers: requirement
            .map(|r| r.approvers.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        words,
    }
}

impl PolicyAccess {
    fn request_of(&self, ask: &Ask, ops: Vec<OperationSpec>, emergency: bool) -> AccessRequest {
        AccessRequest {
            who: IdentityId::new(ask.requester.clone()),
            target: ask.asset.as_str().into(),
            operations: ops,
            start: ask.start,
            duration: Duration::from_secs(ask.duration_secs),
            ticket: ask.ticket.clone(),
            source: ask.source,
            mfa: ask.mfa,
            emergency,
        }
    }
}

impl PolicyAccess {
    /// Whether policy refuses `ask` (made without MFA) only for want of a second factor.
    pub fn mfa_missing(&self, ask: &Ask, now: DateTime<Utc>) -> bool {
        let Ok(ops) = parse_ops(&ask.operations) else {
            return true;
        };
        let mut request = self.request_of(ask, ops, ask.emergency);
        request.mfa = false;
        matches!(
            self.policy.decide(&request, now),
            Decision::Deny(otgate_policy::DenyReason::MfaMissing { .. })
        )
    }
}

impl AccessPolicy for PolicyAccess {
    fn decide(&self, ask: &Ask, now: DateTime<Utc>) -> Answer {
        let ops = match parse_ops(&ask.operations) {
            Ok(ops) => ops,
            Err(e) => return Answer::Deny(e),
        };
        if !ask.emergency {
            if let Some(why) = self.lapsed(now) {
                return Answer::Deny(why);
            }
        }
        let decision = self
            .policy
            .decide(&self.request_of(ask, ops, ask.emergency), now);
        let mut words = decision.to_string();
        if let Some(note) = self.grace_note(now) {
            words.push_str(&note);
        }
        match decision {
            Decision::Allow(g) => Answer::Allow(terms_of(g, None, words)),
            Decision::NeedApproval(g, requirement) => {
                Answer::NeedApproval(terms_of(g, Some(&requirement), words))
            }
            Decision::Deny(reason) => Answer::Deny(reason.to_string()),
        }
    }

    fn ot_roles(&self, id: &str) -> Option<Vec<String>> {
        self.policy
            .ot_identity(id)
            .map(|o| o.roles.iter().map(ToString::to_string).collect())
    }

    fn tally(
        &self,
        required: &[RoleCount],
        allowed: &[String],
        requester: &str,
        approvers: &[String],
    ) -> Tally {
        let requirement = ApprovalRequirement {
            rule: RuleId::new(""),
            requester: IdentityId::new(requester),
            required: required
                .iter()
                .map(|c| PolicyRoleCount {
                    role: RoleId::new(c.role.clone()),
                    count: u8::try_from(c.count).unwrap_or(u8::MAX),
                })
                .collect(),
            approvers: allowed.iter().map(|a| IdentityId::new(a.clone())).collect(),
        };
        let approvals: Vec<Approval> = approvers
            .iter()
            .map(|a| match self.policy.approval_by(a) {
                Ok(approval) => approval,
                Err(_) => Approval {
                    approver: IdentityId::new(a.clone()),
                    roles: Vec::new(),
                },
            })
            .collect();
        let check = requirement.check(&approvals);
        let missing = counts_of(&check.missing);
        let Some(newest) = approvers.last() else {
            return Tally {
                missing,
                newest: Err("nobody approved".to_owned()),
            };
        };
        let newest = match check.counted.iter().find(|(who, _)| who == newest.as_str()) {
            Some((_, role)) => Ok(role.to_string()),
            None => Err(
                match check.ignored.iter().find(|(who, _)| who == newest.as_str()) {
                    Some((_, why)) => match why {
                        otgate_policy::IgnoredApproval::Requester => {
                            "the requester cannot approve their own request".to_owned()
                        }
                        otgate_policy::IgnoredApproval::Duplicate => {
                            format!("{newest} approved already; approvers must be distinct people")
                        }
                        otgate_policy::IgnoredApproval::NotListed => {
                            format!("{newest} is not among the approvers the rule names")
                        }
                        otgate_policy::IgnoredApproval::NoRequiredRole => {
                            format!("{newest} holds none of the roles the rule requires")
                        }
                        otgate_policy::IgnoredApproval::NotNeeded => {
                            format!("{newest} fills no slot that is still open")
                        }
                    },
                    None => format!("{newest} does not count for this request"),
                },
            ),
        };
        Tally { missing, newest }
    }

    fn ot_supervises(&self, id: &str) -> bool {
        self.policy
            .ot_identity(id)
            .is_some_and(|o| o.kind == otgate_policy::OtKind::Approver)
    }

    fn is_it_identity(&self, id: &str) -> bool {
        self.policy.it_identity(id).is_some()
    }

    fn account_expiry(&self, id: &str) -> Option<DateTime<Utc>> {
        self.policy.it_identity(id).and_then(|i| i.expires)
    }

    fn still_covers(
        &self,
        requester: &str,
        asset: &str,
        rule: &str,
        operations: &[String],
    ) -> Result<(), String> {
        if self.policy.asset(asset).is_none() {
            return Err(format!("the policy no longer names asset {asset}"));
        }
        let Some(the_rule) = self.policy.rule(rule) else {
            return Err(format!("the policy no longer has rule {rule}"));
        };
        if self.lapsed_when_made && the_rule.mode != PolicyMode::Emergency {
            let version = self.validity.map(|v| v.version).unwrap_or_default();
            return Err(format!(
                "the policy has lapsed (bundle v{version}, grace over): only break-glass works"
            ));
        }
        let Some(identity) = self.policy.it_identity(requester) else {
            // Emergency grants may belong to OT operators.
            if self.policy.ot_identity(requester).is_some() {
                return Ok(());
            }
            return Err(format!("the policy no longer names {requester}"));
        };
        let _ = operations;
        let rule_roles = self
            .policy
            .rule(rule)
            .map(|r| r.roles.clone())
            .unwrap_or_default();
        if !identity.roles.iter().any(|r| rule_roles.contains(r)) {
            return Err(format!("{requester} no longer holds a role of rule {rule}"));
        }
        Ok(())
    }
}

/// The source address as the policy sees it.
pub fn source_of(addr: std::net::SocketAddr) -> IpAddr {
    addr.ip()
}
