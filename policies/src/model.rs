//! The policy model: what a validated policy says, as plain types.
//!
//! A [`Policy`] is made only by [`crate::parse`], which validates every reference, so lookups by
//! id inside a policy always succeed and the decision engine never meets a dangling id. The model
//! holds public material only (ed25519 public keys, addresses, patterns); a policy carries no
//! secret. No I/O, no clock.

use crate::fasthash::FastMap;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use ed25519_dalek::VerifyingKey;
use ipnet::IpNet;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::ids::{AssetId, IdentityId, PanelId, RoleId, RuleId, ScheduleId, SegmentId, SiteId};
use crate::ops::OperationSpec;
use crate::parse::Diagnostic;
use crate::schedule::Schedule;

/// The default idle timeout of a grant's sessions when a rule does not say.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The site a policy governs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The site id; bundles are accepted only for their own site.
    pub id: SiteId,
    /// A human name (`Plant A, Hall 2`).
    pub name: Option<String>,
    /// The timezone schedules are written in unless they name another.
    pub timezone: Tz,
}

/// The two sides of the appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Zone {
    /// Corporate IT: requesters (people, vendors).
    It,
    /// The plant's OT: assets, approvers, operators.
    Ot,
}

/// A network segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The segment id.
    pub id: SegmentId,
    /// The zone it belongs to.
    pub zone: Zone,
    /// Its networks (CIDR).
    pub networks: Vec<IpNet>,
    /// A description for people.
    pub description: Option<String>,
}

/// What kind of device an asset is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssetKind {
    /// A programmable logic controller.
    Plc,
    /// An operator panel.
    Hmi,
    /// A safety instrumented system controller.
    SafetyController,
    /// A process historian.
    Historian,
}

/// The protocol the appliance brokers to an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Modbus TCP (checked per request).
    Modbus,
    /// DNP3 over TCP (checked per application function).
    Dnp3,
    /// VNC / RFB (view or control, password injected).
    Vnc,
    /// A plain TCP stream (connect only).
    Tcp,
}

impl Protocol {
    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Modbus => "modbus",
            Protocol::Dnp3 => "dnp3",
            Protocol::Vnc => "vnc",
            Protocol::Tcp => "tcp",
        }
    }
}

/// An OT asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// The asset id.
    pub id: AssetId,
    /// What it is.
    pub kind: AssetKind,
    /// The OT segment it sits in.
    pub segment: SegmentId,
    /// Where the appliance reaches it.
    pub address: SocketAddr,
    /// The protocol the appliance brokers to it.
    pub protocol: Protocol,
    /// Modbus unit ids (or DNP3 outstation addresses) behind the address; empty for VNC/TCP.
    pub unit_ids: Vec<u8>,
    /// Free tags (`safety`, `line3`).
    pub tags: Vec<String>,
    /// A description for people.
    pub description: Option<String>,
}

impl Asset {
    /// Whether the asset carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// What kind of IT-side identity this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItKind {
    /// An employee.
    Person,
    /// An external vendor account (normally expiring).
    Vendor,
}

/// An IT-zone identity: someone who requests access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItIdentity {
    /// The identity id.
    pub id: IdentityId,
    /// Person or vendor.
    pub kind: ItKind,
    /// A display name.
    pub name: Option<String>,
    /// The organisation (for vendors).
    pub organisation: Option<String>,
    /// Roles held (IT roles only).
    pub roles: Vec<RoleId>,
    /// The ed25519 key the client proves possession of in the tunnel handshake.
    pub public_key: VerifyingKey,
    /// When the account ends; requests after it are denied and grants never outlive it.
    pub expires: Option<DateTime<Utc>>,
}

/// What kind of OT-zone identity this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtKind {
    /// Approves requests (shift supervisors, safety engineers).
    Approver,
    /// Operates the plant; may use break-glass.
    Operator,
}

/// An OT-zone identity: someone at the plant who approves or operates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtIdentity {
    /// The identity id.
    pub id: IdentityId,
    /// Approver or operator.
    pub kind: OtKind,
    /// A display name.
    pub name: Option<String>,
    /// Roles held (OT roles only).
    pub roles: Vec<RoleId>,
}

/// A role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// The role id.
    pub id: RoleId,
    /// The zone whose identities hold it.
    pub zone: Zone,
    /// A description for people.
    pub description: Option<String>,
}

/// What a rule targets: assets by id, by segment or by tag (any match counts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Assets by id (sorted).
    pub assets: Vec<AssetId>,
    /// Every asset of these segments.
    pub segments: Vec<SegmentId>,
    /// Every asset carrying one of these tags.
    pub tags: Vec<String>,
}

/// How specifically a rule names an asset; lower is more specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Specificity {
    /// Named by id.
    Asset,
    /// Matched by tag.
    Tag,
    /// Matched by segment.
    Segment,
}

impl Targets {
    /// How this target list matches `asset`, most specific first, or `None`.
    pub fn matches(&self, asset: &Asset) -> Option<Specificity> {
        if self.assets.binary_search(&asset.id).is_ok() {
            Some(Specificity::Asset)
        } else if self.tags.iter().any(|t| asset.has_tag(t)) {
            Some(Specificity::Tag)
        } else if self.segments.contains(&asset.segment) {
            Some(Specificity::Segment)
        } else {
            None
        }
    }
}

/// How a grant under a rule comes about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantMode {
    /// Approvals from OT identities are required.
    Approvers,
    /// Granted by policy alone (low-risk access).
    Auto,
    /// Break-glass: granted at once, reviewed afterwards.
    Emergency,
}

/// A number of approvals required from one role.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RoleCount {
    /// The OT role.
    pub role: RoleId,
    /// How many distinct people of that role.
    pub count: u8,
}

/// What happens when a request asks for longer than the rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExcess {
    /// Shorten the grant to the maximum (and say so).
    #[default]
    Clip,
    /// Deny the request.
    Refuse,
}

/// Conditions a request must meet.
#[derive(Debug, Clone)]
pub struct Requirements {
    /// Whether a second factor is required (default yes; waivable only for read-only rules).
    pub mfa: bool,
    /// A pattern the request's ticket must match.
    pub ticket: Option<Regex>,
    /// Networks the request must come from; empty means anywhere.
    pub sources: Vec<IpNet>,
}

impl PartialEq for Requirements {
    fn eq(&self, other: &Self) -> bool {
        self.mfa == other.mfa
            && self.ticket.as_ref().map(Regex::as_str) == other.ticket.as_ref().map(Regex::as_str)
            && self.sources == other.sources
    }
}

/// A rule: who may request what, when, for how long, under which approval and conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The rule id.
    pub id: RuleId,
    /// A description for people.
    pub description: Option<String>,
    /// Roles that may request under this rule.
    pub roles: Vec<RoleId>,
    /// What the rule covers.
    pub targets: Targets,
    /// Operations granted (each applies to targets of its protocol).
    pub operations: Vec<OperationSpec>,
    /// Schedules a grant must start in; empty means any time.
    pub schedules: Vec<ScheduleId>,
    /// The longest grant.
    pub max_duration: Duration,
    /// What to do with a longer request.
    pub on_excess: OnExcess,
    /// Sessions idle this long close.
    pub idle_timeout: Duration,
    /// Whether the grant ends when its last session disconnects.
    pub end_on_last_disconnect: bool,
    /// How the grant comes about.
    pub mode: GrantMode,
    /// Approvals needed in `approvers` mode (one entry per role).
    pub approvals: Vec<RoleCount>,
    /// If non-empty, only these OT identities may approve.
    pub approvers: Vec<IdentityId>,
    /// Conditions on the request.
    pub requirements: Requirements,
    /// Inspection alert kinds that revoke the grant automatically (opt-in; never for emergency).
    pub revoke_on: Vec<String>,
}

impl Rule {
    /// Whether every operation of the rule is read-only.
    pub fn is_read_only(&self) -> bool {
        self.operations.iter().all(|op| !op.is_write())
    }
}

/// A trusted break-glass panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panel {
    /// The panel id.
    pub id: PanelId,
    /// Its ed25519 public key (activations are signed with it).
    pub public_key: VerifyingKey,
}

/// Break-glass settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlass {
    /// The emergency-mode rule break-glass grants under (its roles, tags, operations).
    pub rule: RuleId,
    /// Panels whose signed activations are trusted.
    pub panels: Vec<Panel>,
    /// Asset tags an emergency grant covers (from the rule's targets).
    pub tags: Vec<String>,
    /// The longest emergency grant (the rule's maximum).
    pub max_duration: Duration,
    /// How many sealed one-time codes the appliance keeps.
    pub sealed_codes: u16,
}

/// How long a policy is valid and how long it keeps working offline after that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    /// How long after issue the policy is current.
    #[serde(with = "crate::duration_serde")]
    pub lifetime: Duration,
    /// How long after `lifetime` an appliance cut off from HQ keeps using it.
    #[serde(with = "crate::duration_serde")]
    pub offline_grace: Duration,
}

impl Default for Validity {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(30 * 86_400),
            offline_grace: Duration::from_secs(7 * 86_400),
        }
    }
}

/// A validated policy. Made only by [`crate::parse`].
#[derive(Debug, Clone)]
pub struct Policy {
    /// The site.
    pub site: Site,
    /// Network segments.
    pub segments: Vec<Segment>,
    /// OT assets.
    pub assets: Vec<Asset>,
    /// Roles.
    pub roles: Vec<Role>,
    /// IT-zone identities (requesters).
    pub it_identities: Vec<ItIdentity>,
    /// OT-zone identities (approvers, operators).
    pub ot_identities: Vec<OtIdentity>,
    /// Schedules.
    pub schedules: Vec<Schedule>,
    /// Rules, in file order.
    pub rules: Vec<Rule>,
    /// Break-glass settings, if the site has any.
    pub break_glass: Option<BreakGlass>,
    /// Validity and offline grace.
    pub validity: Validity,
    pub(crate) index: Index,
    pub(crate) warnings: Vec<Diagnostic>,
}

/// Lookup tables built once at parse time.
#[derive(Debug, Clone, Default)]
pub(crate) struct Index {
    pub assets: FastMap<AssetId, usize>,
    pub it: FastMap<IdentityId, usize>,
    pub ot: FastMap<IdentityId, usize>,
    pub schedules: FastMap<ScheduleId, usize>,
    pub rules: FastMap<RuleId, usize>,
    /// Rules (by index) each role may request under.
    pub rules_by_role: FastMap<RoleId, Vec<usize>>,
}

impl Index {
    pub(crate) fn build(policy: &Policy) -> Index {
        let mut index = Index::default();
        for (i, a) in policy.assets.iter().enumerate() {
            index.assets.insert(a.id.clone(), i);
        }
        for (i, p) in policy.it_identities.iter().enumerate() {
            index.it.insert(p.id.clone(), i);
        }
        for (i, p) in policy.ot_identities.iter().enumerate() {
            index.ot.insert(p.id.clone(), i);
        }
        for (i, s) in policy.schedules.iter().enumerate() {
            index.schedules.insert(s.id.clone(), i);
        }
        for (i, r) in policy.rules.iter().enumerate() {
            index.rules.insert(r.id.clone(), i);
            for role in &r.roles {
                let list = index.rules_by_role.entry(role.clone()).or_default();
                if !list.contains(&i) {
                    list.push(i);
                }
            }
        }
        index
    }
}

impl Policy {
    /// The asset with this id.
    pub fn asset(&self, id: &str) -> Option<&Asset> {
        self.index.assets.get(id).and_then(|&i| self.assets.get(i))
    }

    /// The IT-zone identity with this id.
    pub fn it_identity(&self, id: &str) -> Option<&ItIdentity> {
        self.index
            .it
            .get(id)
            .and_then(|&i| self.it_identities.get(i))
    }

    /// The OT-zone identity with this id.
    pub fn ot_identity(&self, id: &str) -> Option<&OtIdentity> {
        self.index
            .ot
            .get(id)
            .and_then(|&i| self.ot_identities.get(i))
    }

    /// The rule with this id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.index.rules.get(id).and_then(|&i| self.rules.get(i))
    }

    /// The schedule with this id.
    pub fn schedule(&self, id: &str) -> Option<&Schedule> {
        self.index
            .schedules
            .get(id)
            .and_then(|&i| self.schedules.get(i))
    }

    /// The segment with this id.
    pub fn segment(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    /// The role with this id.
    pub fn role(&self, id: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.id == id)
    }

    /// Warnings found while validating (e.g. rules that waive MFA); they do not fail the parse.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The assets a rule's targets match.
    pub fn assets_of<'a>(&'a self, targets: &'a Targets) -> impl Iterator<Item = &'a Asset> + 'a {
        self.assets
            .iter()
            .filter(move |a| targets.matches(a).is_some())
    }

    pub(crate) fn rules_for_role(&self, role: &RoleId) -> &[usize] {
        self.index
            .rules_by_role
            .get(role)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}
