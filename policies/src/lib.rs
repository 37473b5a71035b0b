//! `otgate-policy`: the shared vocabulary of otgate and its decision engine.
//!
//! This crate holds the policy model (site, zones, segments, assets, identities, roles, rules,
//! schedules, break-glass settings), parses and validates it from TOML with diagnostics that name
//! file, line and column, and decides: whether an access request is allowed, needs approval or is
//! denied, and whether one concrete Modbus or DNP3 operation fits a granted scope.
//!
//! It does no I/O beyond parsing a string, reads no clock (every instant is passed in), and
//! depends on no other otgate crate. Every other crate speaks its types.
//!
//! Entry points: [`parse`] (TOML text to a validated [`Policy`] or every [`Diagnostic`]),
//! [`Policy::decide`] (an [`AccessRequest`] to a [`Decision`]), and
//! [`GrantScope::check_modbus`] (one operation against a grant, on the broker's hot path).

pub mod decide;
pub mod dnp3;
pub mod duration_serde;
pub mod fasthash;
pub mod ids;
pub mod modbus;
pub mod model;
pub mod ops;
pub mod parse;
pub mod schedule;
pub mod scope;

pub use decide::{
    AccessRequest, Approval, ApprovalCheck, ApprovalRequirement, ApproverError, Clip, Decision,
    DenyReason, Grantable, IgnoredApproval,
};
pub use ids::{AssetId, IdentityId, PanelId, RoleId, RuleId, ScheduleId, SegmentId, SiteId};
pub use model::{
    Asset, AssetKind, BreakGlass, GrantMode, ItIdentity, ItKind, OnExcess, OtIdentity, OtKind,
    Panel, Policy, Protocol, Requirements, Role, RoleCount, Rule, Segment, Site, Specificity,
    Targets, Validity, Zone,
};
pub use ops::{ModbusSpec, OperationError, OperationSpec, ScreenAccess};
pub use parse::{
    canonical_json, parse, parse_canonical, Diagnostic, DiagnosticKind, Diagnostics, Severity,
};
pub use schedule::{Schedule, Window};
pub use scope::{GrantScope, OpVerdict, Refusal, Refusal as ModbusRefusal, ScopeViolation};

#[doc(hidden)]
pub mod fuzzing;
