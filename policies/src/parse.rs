//! Parsing and validating a policy from TOML, with every problem reported at once.
//!
//! Two passes. The first reads the TOML into raw structs whose values keep their byte spans
//! (`toml::Spanned`); a syntax error or a value of the wrong shape (a number where text belongs,
//! an unknown key) stops here, since nothing after it can be trusted. The second pass validates
//! the raw policy and builds the model, collecting every problem (dangling references, duplicate
//! ids, inverted or overlapping ranges, impossible schedules, unknown function codes, rules that
//! can never grant anything, IT identities listed as approvers, ...) as a [`Diagnostic`] with the
//! file, line and column of the offending value. Warnings (a rule waiving MFA for read-only
//! access) do not fail the parse; they are kept on the policy ([`Policy::warnings`]).
//!
//! No I/O: the caller reads the file and passes its text and name. Never panics on any input.

use crate::fasthash::{FastMap, FastSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use ed25519_dalek::VerifyingKey;
use ipnet::IpNet;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::ids::{AssetId, IdentityId, PanelId, RoleId, RuleId, ScheduleId, SegmentId, SiteId};
use crate::model::{
    Asset, AssetKind, BreakGlass, GrantMode, Index, ItIdentity, ItKind, OnExcess, OtIdentity,
    OtKind, Panel, Policy, Protocol, Requirements, Role, RoleCount, Rule, Segment, Site, Targets,
    Validity, Zone, DEFAULT_IDLE_TIMEOUT,
};
use crate::ops::{OperationError, OperationSpec};
use crate::schedule::{
    parse_minutes, parse_weekday, DateWindow, Schedule, WeeklyWindow, MINUTES_PER_DAY,
};

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The policy is invalid.
    Error,
    /// The policy is valid but something deserves a look.
    Warning,
}

/// One problem found in a policy, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name given to [`parse`].
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column (in characters).
    pub column: u32,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong.
    pub kind: DiagnosticKind,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

/// What is wrong, grouped by fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiagnosticKind {
    // --- malformed ---
    /// The text is not valid TOML, or a value has the wrong shape.
    #[error("{0}")]
    Syntax(String),
    /// A value does not parse as what the field holds.
    #[error("invalid {field} `{value}`: expected {expected}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The value as written.
        value: String,
        /// What the field accepts.
        expected: String,
    },
    /// An operation string does not parse.
    #[error("invalid operation `{op}`: {error}")]
    InvalidOperation {
        /// The operation as written.
        op: String,
        /// Why.
        error: OperationError,
    },
    /// A public key is not a valid ed25519 key.
    #[error("invalid public key for `{id}`: {why}")]
    InvalidKey {
        /// Whose key.
        id: String,
        /// Why.
        why: String,
    },
    // --- inconsistent ---
    /// Two objects of one kind share an id.
    #[error("duplicate {what} id `{id}` (first defined on line {first_line})")]
    DuplicateId {
        /// The kind of object.
        what: &'static str,
        /// The id.
        id: String,
        /// Where the first one is.
        first_line: u32,
    },
    /// A reference to an object that does not exist.
    #[error("unknown {what} `{id}`")]
    UnknownReference {
        /// The kind of object referred to.
        what: &'static str,
        /// The id referred to.
        id: String,
    },
    /// Something of one zone used where the other zone belongs.
    #[error(
        "{what} `{id}` is an {actual} {what}; only {expected} {what}s are allowed for {context}"
    )]
    WrongZone {
        /// The kind of object.
        what: &'static str,
        /// Its id.
        id: String,
        /// Its zone.
        actual: &'static str,
        /// The zone required.
        expected: &'static str,
        /// Where it is used.
        context: String,
    },
    /// An IT identity is named as an approver; only OT identities approve.
    #[error("`{id}` is an IT identity and cannot approve: only OT identities approve")]
    ItIdentityAsApprover {
        /// The identity.
        id: String,
    },
    /// Two windows of one schedule overlap.
    #[error("schedule `{schedule}`: window {a} overlaps window {b}")]
    OverlappingWindows {
        /// The schedule.
        schedule: String,
        /// One window, as written.
        a: String,
        /// The other window, as written.
        b: String,
    },
    /// A window or schedule can never contain any instant.
    #[error("impossible schedule `{schedule}`: {why}")]
    ImpossibleSchedule {
        /// The schedule.
        schedule: String,
        /// Why.
        why: String,
    },
    /// A rule that can never grant anything.
    #[error("rule `{rule}` can never grant anything: {why}")]
    NeverGrants {
        /// The rule.
        rule: String,
        /// Why.
        why: String,
    },
    /// A rule waives MFA but grants writes.
    #[error(
        "rule `{rule}` waives MFA but grants `{op}`: MFA may be waived only for read-only access"
    )]
    MfaWaivedForWrite {
        /// The rule.
        rule: String,
        /// The first write operation.
        op: String,
    },
    /// A required section or value is missing.
    #[error("missing {what}")]
    Missing {
        /// What is missing.
        what: String,
    },
    /// A combination of settings that is not allowed.
    #[error("{0}")]
    NotAllowed(String),
    // --- warnings ---
    /// A rule waives MFA (allowed for read-only access; worth knowing).
    #[error("rule `{rule}` waives MFA (read-only access without a second factor)")]
    MfaWaived {
        /// The rule.
        rule: String,
    },
    /// A vendor account with no expiry (vendor access should end with the contract).
    #[error("vendor `{id}` has no `expires`: vendor accounts should end with their contract")]
    VendorWithoutExpiry {
        /// The identity.
        id: String,
    },
}

/// Every problem found in a policy. Empty never: [`parse`] returns it only with at least one error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// The diagnostics, errors and warnings, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// Only the errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

// ---------------------------------------------------------------------------------------------
// Raw shape, shared by the TOML source and the canonical JSON form.

std::thread_local! {
    /// Whether [`Sp`] reads its span from the deserializer (TOML) or has none (canonical JSON).
    /// Set only by [`with_spans`] for the duration of one `toml::from_str` on this thread.
    static READ_SPANS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` with [`Sp`] reading spans (the TOML path), restoring the previous mode afterwards.
fn with_spans<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            READ_SPANS.with(|r| r.set(self.0));
        }
    }
    let _restore = Restore(READ_SPANS.with(|r| r.replace(true)));
    f()
}

/// A value and the byte range where the TOML source wrote it (empty for the canonical JSON
/// form, which has no lines to point at: its diagnostics say line 1, column 1 and name the
/// object instead). Serializes as the bare value, so the canonical form carries no positions.
///
/// Why not `toml::Spanned`: it can only be read from the TOML deserializer, and the canonical
/// form is read with `serde_json` for speed (see [`parse_canonical`]).
#[derive(Debug, Clone)]
struct Sp<T> {
    value: T,
    span: Range<usize>,
}

impl<T> Sp<T> {
    fn get_ref(&self) -> &T {
        &self.value
    }

    fn span(&self) -> Range<usize> {
        self.span.clone()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sp<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if READ_SPANS.with(std::cell::Cell::get) {
            let spanned = toml::Spanned::<T>::deserialize(deserializer)?;
            let span = spanned.span();
            Ok(Self {
                value: spanned.into_inner(),
                span,
            })
        } else {
            T::deserialize(deserializer).map(|value| Self { value, span: 0..0 })
        }
    }
}

impl<T: Serialize> Serialize for Sp<T> {
    fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        self.value.serialize(serializer)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

type S = Sp<String>;

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    site: Sp<RawSite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    validity: Option<Sp<RawValidity>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    segments: Vec<Sp<RawSegment>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    assets: Vec<Sp<RawAsset>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    roles: Vec<Sp<RawRole>>,
    #[serde(default, skip_serializing_if = "RawIdentities::is_empty")]
    identities: RawIdentities,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    schedules: Vec<Sp<RawSchedule>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rules: Vec<Sp<RawRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    break_glass: Option<Sp<RawBreakGlass>>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    id: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    timezone: S,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawValidity {
    lifetime: S,
    offline_grace: S,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSegment {
    id: S,
    zone: S,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    networks: Vec<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawAsset {
    id: S,
    kind: S,
    segment: S,
    address: S,
    protocol: S,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    unit_ids: Vec<Sp<i64>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    id: S,
    zone: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

impl RawIdentities {
    fn is_empty(&self) -> bool {
        self.it.is_empty() && self.ot.is_empty()
    }
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIdentities {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    it: Vec<Sp<RawIt>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ot: Vec<Sp<RawOt>>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawIt {
    id: S,
    kind: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    organisation: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    roles: Vec<S>,
    public_key: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<S>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawOt {
    id: S,
    kind: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    roles: Vec<S>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    id: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timezone: Option<S>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    weekly: Vec<Sp<RawWeekly>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    dates: Vec<Sp<RawDate>>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawWeekly {
    days: Sp<Vec<S>>,
    from: S,
    to: S,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawDate {
    from: S,
    to: S,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    roles: Sp<Vec<S>>,
    targets: Sp<RawTargets>,
    operations: Sp<Vec<S>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    schedules: Vec<S>,
    max_duration: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on_excess: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idle_timeout: Option<S>,
    #[serde(default, skip_serializing_if = "is_false")]
    end_on_last_disconnect: bool,
    approval: Sp<RawApproval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requirements: Option<Sp<RawRequirements>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    revoke_on: Vec<S>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawTargets {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    assets: Vec<S>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    segments: Vec<S>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<S>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawApproval {
    mode: S,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    require: Vec<Sp<RawRoleCount>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    approvers: Vec<S>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRoleCount {
    role: S,
    count: Sp<i64>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRequirements {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mfa: Option<Sp<bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ticket: Option<S>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sources: Vec<S>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawBreakGlass {
    rule: S,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    panels: Vec<Sp<RawPanel>>,
    sealed_codes: Sp<i64>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawPanel {
    id: S,
    public_key: S,
}

// ---------------------------------------------------------------------------------------------
// Validation.

/// Revoke triggers a rule may name: the inspection alert kinds (`otgate::inspect`'s
/// `AlertKind` names, snake_case). Opt-in per rule; never on break-glass grants.
pub const REVOKE_TRIGGERS: &[&str] = &[
    "unauthorized_write",
    "write_outside_baseline",
    "program_transfer",
    "file_transfer",
    "broadcast_write",
    "diagnostics",
    "restart",
    "new_talker",
    "new_function_code",
    "rate_anomaly",
    "exception_burst",
    "malformed_frame",
    "bad_crc",
    "scan",
    "non_ot_traffic",
];

struct Validator<'a> {
    file: &'a str,
    line_starts: Vec<usize>,
    source: &'a str,
    diags: Vec<Diagnostic>,
}

impl<'a> Validator<'a> {
    fn new(source: &'a str, file: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            file,
            line_starts,
            source,
            diags: Vec::new(),
        }
    }

    fn position(&self, offset: usize) -> (u32, u32) {
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let column = self
            .source
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (
            u32::try_from(line).unwrap_or(u32::MAX),
            u32::try_from(column).unwrap_or(u32::MAX),
        )
    }

    fn line_of(&self, span: &Range<usize>) -> u32 {
        self.position(span.start).0
    }

    fn push(&mut self, span: &Range<usize>, severity: Severity, kind: DiagnosticKind) {
        let (line, column) = self.position(span.start);
        self.diags.push(Diagnostic {
            file: self.file.to_owned(),
            line,
            column,
            severity,
            kind,
        });
    }

    fn error(&mut self, span: &Range<usize>, kind: DiagnosticKind) {
        self.push(span, Severity::Error, kind);
    }

    fn warn(&mut self, span: &Range<usize>, kind: DiagnosticKind) {
        self.push(span, Severity::Warning, kind);
    }

    fn invalid(&mut self, value: &S, field: &'static str, expected: &str) {
        self.error(
            &value.span(),
            DiagnosticKind::InvalidValue {
                field,
                value: value.get_ref().clone(),
                expected: expected.to_owned(),
            },
        );
    }

    /// Check an id's characters and uniqueness among `seen`.
    fn id(&mut self, value: &S, what: &'static str, seen: &mut FastMap<String, u32>) -> bool {
        let id = value.get_ref();
        let good = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !good {
            self.invalid(
                value,
                "id",
                "1-64 characters of letters, digits, `-`, `_` or `.`",
            );
            return false;
        }
        let line = self.line_of(&value.span());
        if let Some(first_line) = seen.get(id) {
            self.error(
                &value.span(),
                DiagnosticKind::DuplicateId {
                    what,
                    id: id.clone(),
                    first_line: *first_line,
                },
            );
            return false;
        }
        seen.insert(id.clone(), line);
        true
    }

    fn duration(&mut self, value: &S, field: &'static str) -> Option<Duration> {
        match humantime::parse_duration(value.get_ref()) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.invalid(value, field, "a duration greater than zero");
                None
            }
            Err(_) => {
                self.invalid(value, field, "a duration like `4h`, `30m` or `7d`");
                None
            }
        }
    }

    fn zone(&mut self, value: &S) -> Option<Zone> {
        match value.get_ref().as_str() {
            "it" => Some(Zone::It),
            "ot" => Some(Zone::Ot),
            _ => {
                self.invalid(value, "zone", "`it` or `ot`");
                None
            }
        }
    }

    fn timezone(&mut self, value: &S) -> Option<Tz> {
        match value.get_ref().parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.invalid(
                    value,
                    "timezone",
                    "an IANA timezone name like `Europe/Berlin`",
                );
                None
            }
        }
    }

    fn public_key(&mut self, value: &S, owner: &str) -> Option<VerifyingKey> {
        let text = value.get_ref().trim();
        let text = text.strip_prefix("ed25519:").unwrap_or(text);
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(text).ok()
        };
        let Some(bytes) = bytes else {
            self.error(
                &value.span(),
                DiagnosticKind::InvalidKey {
                    id: owner.to_owned(),
                    why: "expected 32 bytes as base64 or hex".into(),
                },
            );
            return None;
        };
        let Ok(array) = <[u8; 32]>::try_from(bytes.as_slice()) else {
            self.error(
                &value.span(),
                DiagnosticKind::InvalidKey {
                    id: owner.to_owned(),
                    why: format!("an ed25519 public key is 32 bytes, this is {}", bytes.len()),
                },
            );
            return None;
        };
        match VerifyingKey::from_bytes(&array) {
            Ok(key) if !key.is_weak() => Some(key),
            Ok(_) => {
                self.error(
                    &value.span(),
                    DiagnosticKind::InvalidKey {
                        id: owner.to_owned(),
                        why: "weak key".into(),
                    },
                );
                None
            }
            Err(_) => {
                self.error(
                    &value.span(),
                    DiagnosticKind::InvalidKey {
                        id: owner.to_owned(),
                        why: "not a point on the curve".into(),
                    },
                );
                None
            }
        }
    }
}

fn parse_local(s: &str) -> Option<(NaiveDateTime, bool)> {
    for fmt in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some((t, false));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| (d.and_time(chrono::NaiveTime::MIN), true))
}

/// Parse and validate a policy. `file` is only used in diagnostics. On failure, every problem
/// found is returned (errors and warnings, in file order).
pub fn parse(source: &str, file: &str) -> Result<Policy, Diagnostics> {
    let mut v = Validator::new(source, file);
    let raw = read_toml(&mut v, source)?;
    finish(v, &raw)
}

/// Read the TOML source into the raw shape (with spans), or the syntax error.
fn read_toml(v: &mut Validator<'_>, source: &str) -> Result<RawPolicy, Diagnostics> {
    match with_spans(|| toml::from_str::<RawPolicy>(source)) {
        Ok(raw) => Ok(raw),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            v.error(&span, DiagnosticKind::Syntax(e.message().trim().to_owned()));
            Err(Diagnostics(std::mem::take(&mut v.diags)))
        }
    }
}

/// Validate the raw shape and build the policy, or every problem found.
fn finish(mut v: Validator<'_>, raw: &RawPolicy) -> Result<Policy, Diagnostics> {
    let policy = build(&mut v, raw);
    let mut diags = std::mem::take(&mut v.diags);
    diags.sort_by_key(|d| (d.line, d.column));
    match policy {
        Some(mut p) if !diags.iter().any(|d| d.severity == Severity::Error) => {
            p.warnings = diags;
            Ok(p)
        }
        _ => Err(Diagnostics(diags)),
    }
}

/// The canonical form of a policy's TOML source: compact JSON with the same structure and
/// names as the TOML (tables as objects, arrays of tables as arrays), fields in a fixed order,
/// empty optional fields left out, no comments and no positions. One meaning has one canonical
/// form, and [`parse_canonical`] reads it an order of magnitude faster than TOML, which is why
/// signed bundles carry it (`docs/bundle-format.md`).
///
/// Checks the TOML's syntax and shape only (every problem with line and column); whether the
/// policy is valid is [`parse`]'s question, which `otgate authority sign` asks first.
pub fn canonical_json(source: &str, file: &str) -> Result<Vec<u8>, Diagnostics> {
    let mut v = Validator::new(source, file);
    let raw = read_toml(&mut v, source)?;
    serde_json::to_vec(&raw).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            file: file.to_owned(),
            line: 1,
            column: 1,
            severity: Severity::Error,
            kind: DiagnosticKind::Syntax(format!("cannot write the canonical form: {e}")),
        }])
    })
}

/// Parse and validate a policy in its canonical form ([`canonical_json`]), with exactly the
/// validation of [`parse`]. Input that is valid JSON but not the canonical encoding of what it
/// holds (other field order, whitespace, an empty list written out, ...) is refused, so a policy
/// has one encoding. Diagnostics have no line to point at (they say 1:1) and name the object.
pub fn parse_canonical(bytes: &[u8], file: &str) -> Result<Policy, Diagnostics> {
    let v = Validator::new("", file);
    let syntax = |line: usize, column: usize, message: String| {
        Diagnostics(vec![Diagnostic {
            file: file.to_owned(),
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
            severity: Severity::Error,
            kind: DiagnosticKind::Syntax(message),
        }])
    };
    let raw: RawPolicy = serde_json::from_slice(bytes)
        .map_err(|e| syntax(e.line(), e.column(), format!("canonical policy: {e}")))?;
    // Encode again, comparing as it goes instead of allocating a second copy.
    let mut compare = CompareWriter {
        expected: bytes,
        at: 0,
        differs: false,
    };
    let encoded = serde_json::to_writer(&mut compare, &raw);
    if compare.differs || encoded.is_err() || compare.at != bytes.len() {
        let at = compare.at;
        return Err(syntax(
            1,
            at + 1,
            format!(
                "the policy is not in canonical form (it differs from its canonical encoding at byte {at} of {})",
                bytes.len()
            ),
        ));
    }
    finish(v, &raw)
}

/// A writer that checks that what is written is exactly `expected`, stopping at the first
/// difference (its offset is `at`).
struct CompareWriter<'a> {
    expected: &'a [u8],
    at: usize,
    differs: bool,
}

impl std::io::Write for CompareWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let rest = self.expected.get(self.at..).unwrap_or_default();
        let same = buf.iter().zip(rest).take_while(|(a, b)| a == b).count();
        self.at += same;
        if same < buf.len() {
            self.differs = true;
            return Err(std::io::Error::other("differs from the canonical encoding"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn build(v: &mut Validator<'_>, raw: &RawPolicy) -> Option<Policy> {
    let declared = Declared::of(raw);
    // Site.
    let site_raw = raw.site.get_ref();
    let mut site_ids = FastMap::default();
    v.id(&site_raw.id, "site", &mut site_ids);
    let timezone = v.timezone(&site_raw.timezone);

    // Validity.
    let validity = match &raw.validity {
        None => Validity::default(),
        Some(val) => {
            let val = val.get_ref();
            let lifetime = v.duration(&val.lifetime, "lifetime");
            let grace = v.duration(&val.offline_grace, "offline_grace");
            Validity {
                lifetime: lifetime.unwrap_or(Validity::default().lifetime),
                offline_grace: grace.unwrap_or(Validity::default().offline_grace),
            }
        }
    };

    // Segments.
    let mut seen = FastMap::default();
    let mut segments = Vec::new();
    for seg in &raw.segments {
        let s = seg.get_ref();
        v.id(&s.id, "segment", &mut seen);
        let zone = v.zone(&s.zone);
        let mut networks = Vec::new();
        for n in &s.networks {
            match n.get_ref().parse::<IpNet>() {
                Ok(net) => networks.push(net),
                Err(_) => v.invalid(n, "network", "a CIDR network like `10.10.3.0/24`"),
            }
        }
        if let Some(zone) = zone {
            segments.push(Segment {
                id: SegmentId::new(s.id.get_ref()),
                zone,
                networks,
                description: s.description.clone(),
            });
        }
    }
    for (i, a) in segments.iter().enumerate() {
        for b in segments.iter().skip(i + 1) {
            for na in &a.networks {
                for nb in &b.networks {
                    if na.contains(&nb.network()) || nb.contains(&na.network()) {
                        if let Some(raw_b) = raw
                            .segments
                            .iter()
                            .find(|r| r.get_ref().id.get_ref() == b.id.as_str())
                        {
                            v.error(
                                &raw_b.get_ref().id.span(),
                                DiagnosticKind::NotAllowed(format!(
                                    "segment `{}` network {nb} overlaps segment `{}` network {na}",
                                    b.id, a.id
                                )),
                            );
                        }
                    }
                }
            }
        }
    }

    // Assets.
    let segment_by_id: FastMap<&str, &Segment> =
        segments.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut seen = FastMap::default();
    let mut assets = Vec::new();
    let mut addresses: FastMap<SocketAddr, String> = FastMap::default();
    for asset in &raw.assets {
        let a = asset.get_ref();
        let ok_id = v.id(&a.id, "asset", &mut seen);
        let kind = match a.kind.get_ref().as_str() {
            "plc" => Some(AssetKind::Plc),
            "hmi" => Some(AssetKind::Hmi),
            "safety-controller" => Some(AssetKind::SafetyController),
            "historian" => Some(AssetKind::Historian),
            _ => {
                v.invalid(
                    &a.kind,
                    "asset kind",
                    "`plc`, `hmi`, `safety-controller` or `historian`",
                );
                None
            }
        };
        let protocol = match a.protocol.get_ref().as_str() {
            "modbus" => Some(Protocol::Modbus),
            "dnp3" => Some(Protocol::Dnp3),
            "vnc" => Some(Protocol::Vnc),
            "tcp" => Some(Protocol::Tcp),
            _ => {
                v.invalid(&a.protocol, "protocol", "`modbus`, `dnp3`, `vnc` or `tcp`");
                None
            }
        };
        let segment = a.segment.get_ref();
        match segment_by_id.get(segment.as_str()) {
            None if declared.segments.contains(segment.as_str()) => {}
            None => v.error(
                &a.segment.span(),
                DiagnosticKind::UnknownReference {
                    what: "segment",
                    id: segment.clone(),
                },
            ),
            Some(s) if s.zone != Zone::Ot => v.error(
                &a.segment.span(),
                DiagnosticKind::WrongZone {
                    what: "segment",
                    id: segment.clone(),
                    actual: "IT",
                    expected: "OT",
                    context: format!("asset `{}`", a.id.get_ref()),
                },
            ),
            Some(_) => {}
        }
        let address = match a.address.get_ref().parse::<SocketAddr>() {
            Ok(addr) => {
                if let Some(s) = segment_by_id.get(segment.as_str()) {
                    if !s.networks.is_empty() && !s.networks.iter().any(|n| n.contains(&addr.ip()))
                    {
                        v.error(
                            &a.address.span(),
                            DiagnosticKind::NotAllowed(format!(
                                "address {addr} of asset `{}` is outside its segment `{}`",
                                a.id.get_ref(),
                                s.id
                            )),
                        );
                    }
                }
                if let Some(other) = addresses.insert(addr, a.id.get_ref().clone()) {
                    v.error(
                        &a.address.span(),
                        DiagnosticKind::NotAllowed(format!(
                            "address {addr} of asset `{}` is already used by asset `{other}`",
                            a.id.get_ref()
                        )),
                    );
                }
                Some(addr)
            }
            Err(_) => {
                v.invalid(
                    &a.address,
                    "address",
                    "an IP address and port like `10.10.3.11:502`",
                );
                None
            }
        };
        let mut unit_ids = Vec::new();
        for u in &a.unit_ids {
            match u8::try_from(*u.get_ref()) {
                Ok(id) if !unit_ids.contains(&id) => unit_ids.push(id),
                Ok(id) => v.error(
                    &u.span(),
                    DiagnosticKind::NotAllowed(format!("unit id {id} listed twice")),
                ),
                Err(_) => v.error(
                    &u.span(),
                    DiagnosticKind::InvalidValue {
                        field: "unit id",
                        value: u.get_ref().to_string(),
                        expected: "0-255".into(),
                    },
                ),
            }
        }
        if matches!(protocol, Some(Protocol::Modbus | Protocol::Dnp3)) && a.unit_ids.is_empty() {
            v.error(
                &a.id.span(),
                DiagnosticKind::Missing {
                    what: format!(
                        "unit_ids for {} asset `{}`",
                        a.protocol.get_ref(),
                        a.id.get_ref()
                    ),
                },
            );
        }
        if let (true, Some(kind), Some(protocol), Some(address)) = (ok_id, kind, protocol, address)
        {
            assets.push(Asset {
                id: AssetId::new(a.id.get_ref()),
                kind,
                segment: SegmentId::new(segment),
                address,
                protocol,
                unit_ids,
                tags: a.tags.iter().map(|t| t.get_ref().clone()).collect(),
                description: a.description.clone(),
            });
        }
    }

    // Roles.
    let mut seen = FastMap::default();
    let mut roles = Vec::new();
    for role in &raw.roles {
        let r = role.get_ref();
        let ok = v.id(&r.id, "role", &mut seen);
        if let (true, Some(zone)) = (ok, v.zone(&r.zone)) {
            roles.push(Role {
                id: RoleId::new(r.id.get_ref()),
                zone,
                description: r.description.clone(),
            });
        }
    }
    let role_zone = |id: &str| roles.iter().find(|r| r.id.as_str() == id).map(|r| r.zone);

    // Identities: one id space across both zones, so "alice" is never both.
    let mut seen = FastMap::default();
    let check_roles = |v: &mut Validator<'_>, list: &[S], zone: Zone, who: &str| -> Vec<RoleId> {
        let mut out = Vec::new();
        for r in list {
            match role_zone(r.get_ref()) {
                None if declared.roles.contains(r.get_ref().as_str()) => {}
                None => v.error(
                    &r.span(),
                    DiagnosticKind::UnknownReference {
                        what: "role",
                        id: r.get_ref().clone(),
                    },
                ),
                Some(z) if z != zone => v.error(
                    &r.span(),
                    DiagnosticKind::WrongZone {
                        what: "role",
                        id: r.get_ref().clone(),
                        actual: zone_name(z),
                        expected: zone_name(zone),
                        context: format!("the roles of {} identity `{who}`", zone_name(zone)),
                    },
                ),
                Some(_) => out.push(RoleId::new(r.get_ref())),
            }
        }
        out
    };
    let mut it_identities = Vec::new();
    for p in &raw.identities.it {
        let p = p.get_ref();
        let ok = v.id(&p.id, "identity", &mut seen);
        let kind = match p.kind.get_ref().as_str() {
            "person" => Some(ItKind::Person),
            "vendor" => Some(ItKind::Vendor),
            _ => {
                v.invalid(&p.kind, "IT identity kind", "`person` or `vendor`");
                None
            }
        };
        let roles = check_roles(v, &p.roles, Zone::It, p.id.get_ref());
        let key = v.public_key(&p.public_key, p.id.get_ref());
        let expires = match &p.expires {
            None if kind == Some(ItKind::Vendor) => {
                v.warn(
                    &p.id.span(),
                    DiagnosticKind::VendorWithoutExpiry {
                        id: p.id.get_ref().clone(),
                    },
                );
                None
            }
            None => None,
            Some(e) => match DateTime::parse_from_rfc3339(e.get_ref()) {
                Ok(t) => Some(t.with_timezone(&Utc)),
                Err(_) => {
                    v.invalid(
                        e,
                        "expires",
                        "an RFC 3339 instant like `2027-03-31T23:59:59+02:00`",
                    );
                    None
                }
            },
        };
        if let (true, Some(kind), Some(public_key)) = (ok, kind, key) {
            it_identities.push(ItIdentity {
                id: IdentityId::new(p.id.get_ref()),
                kind,
                name: p.name.clone(),
                organisation: p.organisation.clone(),
                roles,
                public_key,
                expires,
            });
        }
    }
    let mut ot_identities = Vec::new();
    for p in &raw.identities.ot {
        let p = p.get_ref();
        let ok = v.id(&p.id, "identity", &mut seen);
        let kind = match p.kind.get_ref().as_str() {
            "approver" => Some(OtKind::Approver),
            "operator" => Some(OtKind::Operator),
            _ => {
                v.invalid(&p.kind, "OT identity kind", "`approver` or `operator`");
                None
            }
        };
        let roles = check_roles(v, &p.roles, Zone::Ot, p.id.get_ref());
        if let (true, Some(kind)) = (ok, kind) {
            ot_identities.push(OtIdentity {
                id: IdentityId::new(p.id.get_ref()),
                kind,
                name: p.name.clone(),
                roles,
            });
        }
    }

    // Schedules.
    let mut seen = FastMap::default();
    let mut schedules = Vec::new();
    for sched in &raw.schedules {
        let s = sched.get_ref();
        let ok = v.id(&s.id, "schedule", &mut seen);
        let tz = match &s.timezone {
            Some(t) => v.timezone(t),
            None => timezone,
        };
        let name = s.id.get_ref().clone();
        if s.weekly.is_empty() && s.dates.is_empty() {
            v.error(
                &s.id.span(),
                DiagnosticKind::ImpossibleSchedule {
                    schedule: name.clone(),
                    why: "it has no weekly window and no date".into(),
                },
            );
        }
        let mut weekly = Vec::new();
        let mut spans = Vec::new();
        for w in &s.weekly {
            let raw_w = w.get_ref();
            let mut days = Vec::new();
            for d in raw_w.days.get_ref() {
                match parse_weekday(d.get_ref()) {
                    Some(day) if !days.contains(&day) => days.push(day),
                    Some(_) => v.error(
                        &d.span(),
                        DiagnosticKind::NotAllowed(format!("day `{}` listed twice", d.get_ref())),
                    ),
                    None => v.invalid(
                        d,
                        "day",
                        "`mon`, `tue`, `wed`, `thu`, `fri`, `sat` or `sun`",
                    ),
                }
            }
            if raw_w.days.get_ref().is_empty() {
                v.error(
                    &raw_w.days.span(),
                    DiagnosticKind::ImpossibleSchedule {
                        schedule: name.clone(),
                        why: "a weekly window with no days".into(),
                    },
                );
            }
            let from = parse_minutes(raw_w.from.get_ref()).filter(|m| *m < MINUTES_PER_DAY);
            let to = parse_minutes(raw_w.to.get_ref());
            if from.is_none() {
                v.invalid(&raw_w.from, "from", "a time `HH:MM` from 00:00 to 23:59");
            }
            if to.is_none() {
                v.invalid(&raw_w.to, "to", "a time `HH:MM` from 00:00 to 24:00");
            }
            if let (Some(from), Some(to)) = (from, to) {
                if from == to % MINUTES_PER_DAY && to != MINUTES_PER_DAY || (from == 0 && to == 0) {
                    v.error(
                        &raw_w.from.span(),
                        DiagnosticKind::ImpossibleSchedule {
                            schedule: name.clone(),
                            why: format!(
                                "window {}-{} is empty",
                                raw_w.from.get_ref(),
                                raw_w.to.get_ref()
                            ),
                        },
                    );
                } else if !days.is_empty() {
                    let window = WeeklyWindow { days, from, to };
                    spans.push((
                        window.clone(),
                        w.span(),
                        format!("{}-{}", raw_w.from.get_ref(), raw_w.to.get_ref()),
                    ));
                    weekly.push(window);
                }
            }
        }
        // Overlaps between weekly windows, in minutes of the week (circular).
        let mut intervals: Vec<(u32, u32, usize)> = Vec::new();
        for (i, (w, _, _)) in spans.iter().enumerate() {
            for day in &w.days {
                let start = day.num_days_from_monday() * 1440 + u32::from(w.from);
                let end = start + u32::from(w.minutes());
                let week = 7 * 1440;
                if end <= week {
                    intervals.push((start, end, i));
                } else {
                    intervals.push((start, week, i));
                    intervals.push((0, end - week, i));
                }
            }
        }
        intervals.sort();
        let mut reported = FastSet::default();
        for (k, a) in intervals.iter().enumerate() {
            for b in intervals.iter().skip(k + 1) {
                if b.0 >= a.1 {
                    break;
                }
                let pair = (a.2.min(b.2), a.2.max(b.2));
                if reported.insert(pair) {
                    if let (Some(first), Some(second)) = (spans.get(pair.0), spans.get(pair.1)) {
                        let (ta, tb) = (first.2.clone(), second.2.clone());
                        let span = if a.2 == b.2 {
                            first.1.clone()
                        } else {
                            second.1.clone()
                        };
                        let (ta, tb) = if a.2 == b.2 {
                            (ta.clone(), format!("{ta} (on another of its days)"))
                        } else {
                            (ta, tb)
                        };
                        v.error(
                            &span,
                            DiagnosticKind::OverlappingWindows {
                                schedule: name.clone(),
                                a: ta,
                                b: tb,
                            },
                        );
                    }
                }
            }
        }
        let mut dates = Vec::new();
        for d in &s.dates {
            let raw_d = d.get_ref();
            let from = parse_local(raw_d.from.get_ref());
            let to = parse_local(raw_d.to.get_ref()).map(|(t, date_only)| {
                // A bare date as the end means the whole of that day.
                if date_only {
                    t + chrono::Duration::days(1)
                } else {
                    t
                }
            });
            if from.is_none() {
                v.invalid(
                    &raw_d.from,
                    "from",
                    "a local date-time `YYYY-MM-DDTHH:MM` or a date `YYYY-MM-DD`",
                );
            }
            if to.is_none() {
                v.invalid(
                    &raw_d.to,
                    "to",
                    "a local date-time `YYYY-MM-DDTHH:MM` or a date `YYYY-MM-DD`",
                );
            }
            if let (Some((from, _)), Some(to)) = (from, to) {
                if to <= from {
                    v.error(
                        &raw_d.to.span(),
                        DiagnosticKind::ImpossibleSchedule {
                            schedule: name.clone(),
                            why: format!(
                                "date window ends ({}) before it starts ({})",
                                raw_d.to.get_ref(),
                                raw_d.from.get_ref()
                            ),
                        },
                    );
                } else {
                    if let Some(prev) = dates
                        .iter()
                        .find(|p: &&DateWindow| p.from < to && from < p.to)
                    {
                        v.error(
                            &d.span(),
                            DiagnosticKind::OverlappingWindows {
                                schedule: name.clone(),
                                a: format!("{} to {}", prev.from, prev.to),
                                b: format!("{from} to {to}"),
                            },
                        );
                    }
                    dates.push(DateWindow { from, to });
                }
            }
        }
        if let (true, Some(tz)) = (ok, tz) {
            schedules.push(Schedule {
                id: ScheduleId::new(s.id.get_ref()),
                timezone: tz,
                weekly,
                dates,
            });
        }
    }

    // Rules.
    let reach = Reach::of(&assets);
    let mut seen = FastMap::default();
    let mut rules = Vec::new();
    for rule in &raw.rules {
        if let Some(r) = build_rule(v, rule, &mut seen, &reach, &segments, &roles, &declared) {
            rules.push(r);
        }
    }

    // Break-glass.
    let break_glass = raw.break_glass.as_ref().and_then(|bg| {
        let b = bg.get_ref();
        let rule = rules
            .iter()
            .find(|r| r.id.as_str() == b.rule.get_ref().as_str());
        let known = raw
            .rules
            .iter()
            .any(|r| r.get_ref().id.get_ref() == b.rule.get_ref());
        if rule.is_none() && !known {
            v.error(
                &b.rule.span(),
                DiagnosticKind::UnknownReference {
                    what: "rule",
                    id: b.rule.get_ref().clone(),
                },
            );
        }
        if let Some(r) = rule {
            if r.mode != GrantMode::Emergency {
                v.error(
                    &b.rule.span(),
                    DiagnosticKind::NotAllowed(format!(
                        "break-glass rule `{}` must have approval mode `emergency`",
                        r.id
                    )),
                );
            }
            if r.targets.tags.is_empty()
                || !r.targets.assets.is_empty()
                || !r.targets.segments.is_empty()
            {
                v.error(
                    &b.rule.span(),
                    DiagnosticKind::NotAllowed(format!(
                        "break-glass rule `{}` must target assets by tag only",
                        r.id
                    )),
                );
            }
        }
        if b.panels.is_empty() && *b.sealed_codes.get_ref() == 0 {
            v.error(
                &bg.span(),
                DiagnosticKind::NotAllowed(
                    "break-glass needs at least one panel or one sealed code".into(),
                ),
            );
        }
        let mut seen = FastMap::default();
        let mut panels = Vec::new();
        for p in &b.panels {
            let p = p.get_ref();
            let ok = v.id(&p.id, "panel", &mut seen);
            if let (true, Some(key)) = (ok, v.public_key(&p.public_key, p.id.get_ref())) {
                panels.push(Panel {
                    id: PanelId::new(p.id.get_ref()),
                    public_key: key,
                });
            }
        }
        let sealed_codes = match u16::try_from(*b.sealed_codes.get_ref()) {
            Ok(n) if n <= 1000 => Some(n),
            _ => {
                v.error(
                    &b.sealed_codes.span(),
                    DiagnosticKind::InvalidValue {
                        field: "sealed_codes",
                        value: b.sealed_codes.get_ref().to_string(),
                        expected: "0-1000".into(),
                    },
                );
                None
            }
        };
        let rule = rule?;
        Some(BreakGlass {
            rule: rule.id.clone(),
            panels,
            tags: rule.targets.tags.clone(),
            max_duration: rule.max_duration,
            sealed_codes: sealed_codes?,
        })
    });

    let site = Site {
        id: SiteId::new(site_raw.id.get_ref()),
        name: site_raw.name.clone(),
        timezone: timezone?,
    };
    let mut policy = Policy {
        site,
        segments,
        assets,
        roles,
        it_identities,
        ot_identities,
        schedules,
        rules,
        break_glass,
        validity,
        index: Index::default(),
        warnings: Vec::new(),
    };
    policy.index = Index::build(&policy);
    Some(policy)
}

/// The protocols reachable through each asset id, segment and tag (for rule checks, without
/// walking every asset for every rule), as a bit per [`Protocol`].
#[derive(Default)]
struct Reach<'a> {
    by_asset: FastMap<&'a str, u8>,
    by_segment: FastMap<&'a str, u8>,
    by_tag: FastMap<&'a str, u8>,
}

const PROTOCOLS: [Protocol; 4] = [
    Protocol::Modbus,
    Protocol::Dnp3,
    Protocol::Vnc,
    Protocol::Tcp,
];

fn protocol_bit(p: Protocol) -> u8 {
    match p {
        Protocol::Modbus => 1,
        Protocol::Dnp3 => 2,
        Protocol::Vnc => 4,
        Protocol::Tcp => 8,
    }
}

impl<'a> Reach<'a> {
    fn of(assets: &'a [Asset]) -> Self {
        let mut reach = Reach::default();
        for a in assets {
            let bit = protocol_bit(a.protocol);
            *reach.by_asset.entry(a.id.as_str()).or_default() |= bit;
            *reach.by_segment.entry(a.segment.as_str()).or_default() |= bit;
            for t in &a.tags {
                *reach.by_tag.entry(t.as_str()).or_default() |= bit;
            }
        }
        reach
    }
}

/// Every id the file declares, valid or not, so one bad field does not turn every reference to
/// its object into a second, misleading error.
#[derive(Default)]
struct Declared<'r> {
    segments: FastSet<&'r str>,
    assets: FastSet<&'r str>,
    tags: FastSet<&'r str>,
    roles: FastSet<&'r str>,
    schedules: FastSet<&'r str>,
    /// IT identities and the roles they list.
    it: Vec<(&'r str, Vec<&'r str>)>,
    /// OT identities and the roles they list.
    ot: Vec<(&'r str, Vec<&'r str>)>,
}

impl<'r> Declared<'r> {
    fn of(raw: &'r RawPolicy) -> Self {
        let mut d = Declared::default();
        d.segments.extend(
            raw.segments
                .iter()
                .map(|x| x.get_ref().id.get_ref().as_str()),
        );
        for a in &raw.assets {
            d.assets.insert(a.get_ref().id.get_ref().as_str());
            d.tags
                .extend(a.get_ref().tags.iter().map(|t| t.get_ref().as_str()));
        }
        d.roles
            .extend(raw.roles.iter().map(|x| x.get_ref().id.get_ref().as_str()));
        d.schedules.extend(
            raw.schedules
                .iter()
                .map(|x| x.get_ref().id.get_ref().as_str()),
        );
        let roles = |list: &'r [S]| {
            list.iter()
                .map(|r| r.get_ref().as_str())
                .collect::<Vec<_>>()
        };
        d.it = raw
            .identities
            .it
            .iter()
            .map(|p| (p.get_ref().id.get_ref().as_str(), roles(&p.get_ref().roles)))
            .collect();
        d.ot = raw
            .identities
            .ot
            .iter()
            .map(|p| (p.get_ref().id.get_ref().as_str(), roles(&p.get_ref().roles)))
            .collect();
        d
    }
}

fn zone_name(z: Zone) -> &'static str {
    match z {
        Zone::It => "IT",
        Zone::Ot => "OT",
    }
}

#[allow(clippy::too_many_arguments)]
fn build_rule(
    v: &mut Validator<'_>,
    raw: &Sp<RawRule>,
    seen: &mut FastMap<String, u32>,
    reach: &Reach<'_>,
    segments: &[Segment],
    roles: &[Role],
    declared: &Declared<'_>,
) -> Option<Rule> {
    let r = raw.get_ref();
    let id = r.id.get_ref().clone();
    let ok_id = v.id(&r.id, "rule", seen);
    let mut broken = !ok_id;

    // Approval mode first: it decides which zone may request.
    let approval = r.approval.get_ref();
    let mode = match approval.mode.get_ref().as_str() {
        "approvers" => Some(GrantMode::Approvers),
        "auto" => Some(GrantMode::Auto),
        "emergency" => Some(GrantMode::Emergency),
        _ => {
            v.invalid(
                &approval.mode,
                "approval mode",
                "`approvers`, `auto` or `emergency`",
            );
            broken = true;
            None
        }
    };
    // Requesters: IT roles, or for emergency rules OT roles (operators at the panel).
    let requester_zone = if mode == Some(GrantMode::Emergency) {
        Zone::Ot
    } else {
        Zone::It
    };
    let mut rule_roles = Vec::new();
    if r.roles.get_ref().is_empty() {
        v.error(
            &r.roles.span(),
            DiagnosticKind::NeverGrants {
                rule: id.clone(),
                why: "it names no role".into(),
            },
        );
    }
    for role in r.roles.get_ref() {
        match roles
            .iter()
            .find(|x| x.id.as_str() == role.get_ref().as_str())
        {
            None if declared.roles.contains(role.get_ref().as_str()) => broken = true,
            None => v.error(
                &role.span(),
                DiagnosticKind::UnknownReference {
                    what: "role",
                    id: role.get_ref().clone(),
                },
            ),
            Some(x) if x.zone != requester_zone => v.error(
                &role.span(),
                DiagnosticKind::WrongZone {
                    what: "role",
                    id: role.get_ref().clone(),
                    actual: zone_name(x.zone),
                    expected: zone_name(requester_zone),
                    context: format!("the requesters of rule `{id}`"),
                },
            ),
            Some(x) => rule_roles.push(x.id.clone()),
        }
    }

    // Targets.
    let t = r.targets.get_ref();
    let mut targets = Targets::default();
    for a in &t.assets {
        if declared.assets.contains(a.get_ref().as_str()) {
            targets.assets.push(AssetId::new(a.get_ref()));
        } else {
            v.error(
                &a.span(),
                DiagnosticKind::UnknownReference {
                    what: "asset",
                    id: a.get_ref().clone(),
                },
            );
        }
    }
    targets.assets.sort();
    targets.assets.dedup();
    for s in &t.segments {
        if declared.segments.contains(s.get_ref().as_str()) {
            targets.segments.push(SegmentId::new(s.get_ref()));
        } else {
            v.error(
                &s.span(),
                DiagnosticKind::UnknownReference {
                    what: "segment",
                    id: s.get_ref().clone(),
                },
            );
        }
    }
    for tag in &t.tags {
        if declared.tags.contains(tag.get_ref().as_str()) {
            targets.tags.push(tag.get_ref().clone());
        } else {
            v.error(
                &tag.span(),
                DiagnosticKind::UnknownReference {
                    what: "tag (no asset carries it)",
                    id: tag.get_ref().clone(),
                },
            );
        }
    }
    if t.assets.is_empty() && t.segments.is_empty() && t.tags.is_empty() {
        v.error(
            &r.targets.span(),
            DiagnosticKind::NeverGrants {
                rule: id.clone(),
                why: "it targets no asset, segment or tag".into(),
            },
        );
    }
    // The protocols of the assets the rule reaches (by id, segment or tag).
    let bits = targets
        .assets
        .iter()
        .filter_map(|a| reach.by_asset.get(a.as_str()))
        .chain(
            targets
                .segments
                .iter()
                .filter_map(|s| reach.by_segment.get(s.as_str())),
        )
        .chain(
            targets
                .tags
                .iter()
                .filter_map(|t| reach.by_tag.get(t.as_str())),
        )
        .fold(0u8, |all, bits| all | bits);
    let matched: Vec<Protocol> = PROTOCOLS
        .into_iter()
        .filter(|p| bits & protocol_bit(*p) != 0)
        .collect();

    // Operations.
    let mut operations = Vec::new();
    if r.operations.get_ref().is_empty() {
        v.error(
            &r.operations.span(),
            DiagnosticKind::NeverGrants {
                rule: id.clone(),
                why: "it grants no operation".into(),
            },
        );
    }
    for op in r.operations.get_ref() {
        match op.get_ref().parse::<OperationSpec>() {
            Ok(spec) => {
                if operations.contains(&spec) {
                    v.error(
                        &op.span(),
                        DiagnosticKind::NotAllowed(format!(
                            "operation `{}` listed twice",
                            op.get_ref()
                        )),
                    );
                    continue;
                }
                // Each operation must apply to at least one targeted asset.
                if !matched.is_empty() && !matched.iter().any(|p| spec.applied_to(*p).is_some()) {
                    let protocols: Vec<&str> = matched.iter().map(|p| p.name()).collect();
                    v.error(
                        &op.span(),
                        DiagnosticKind::NeverGrants {
                            rule: id.clone(),
                            why: format!(
                                "operation `{}` applies to none of its targets (protocols: {})",
                                op.get_ref(),
                                {
                                    let mut p = protocols;
                                    p.sort_unstable();
                                    p.join(", ")
                                }
                            ),
                        },
                    );
                }
                operations.push(spec);
            }
            Err(error) => {
                v.error(
                    &op.span(),
                    DiagnosticKind::InvalidOperation {
                        op: op.get_ref().clone(),
                        error,
                    },
                );
                broken = true;
            }
        }
    }
    // Overlapping ranges between two operations of the same class and table.
    for (i, a) in operations.iter().enumerate() {
        for b in operations.iter().skip(i + 1) {
            if let (OperationSpec::Modbus(ma), OperationSpec::Modbus(mb)) = (a, b) {
                if ma.class == mb.class
                    && ma.function == mb.function
                    && ma.table == mb.table
                    && ma.units == mb.units
                {
                    let overlap = ma
                        .ranges
                        .iter()
                        .any(|x| mb.ranges.iter().any(|y| x.overlaps(*y)))
                        || ma.ranges.is_empty()
                        || mb.ranges.is_empty();
                    if overlap {
                        if let Some(op) = r.operations.get_ref().get(i + 1..).and_then(|rest| {
                            rest.iter().find(|o| {
                                o.get_ref().parse::<OperationSpec>().ok().as_ref() == Some(b)
                            })
                        }) {
                            v.error(
                                &op.span(),
                                DiagnosticKind::NotAllowed(format!(
                                    "operation `{b}` overlaps operation `{a}` of the same rule"
                                )),
                            );
                        }
                    }
                }
            }
        }
    }

    // Schedules.
    let mut rule_schedules = Vec::new();
    for s in &r.schedules {
        if declared.schedules.contains(s.get_ref().as_str()) {
            rule_schedules.push(ScheduleId::new(s.get_ref()));
        } else {
            v.error(
                &s.span(),
                DiagnosticKind::UnknownReference {
                    what: "schedule",
                    id: s.get_ref().clone(),
                },
            );
        }
    }

    // Durations.
    let max_duration = v.duration(&r.max_duration, "max_duration");
    let on_excess = match r.on_excess.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None => OnExcess::Clip,
        Some((_, "clip")) => OnExcess::Clip,
        Some((_, "refuse")) => OnExcess::Refuse,
        Some((s, _)) => {
            v.invalid(s, "on_excess", "`clip` or `refuse`");
            OnExcess::Clip
        }
    };
    let idle_timeout = match &r.idle_timeout {
        None => Some(DEFAULT_IDLE_TIMEOUT),
        Some(s) => v.duration(s, "idle_timeout"),
    };

    // Approvals.
    let mut approvals: Vec<RoleCount> = Vec::new();
    let mut approvers = Vec::new();
    for a in &approval.approvers {
        let name = a.get_ref();
        if declared.it.iter().any(|(p, _)| *p == name.as_str()) {
            v.error(
                &a.span(),
                DiagnosticKind::ItIdentityAsApprover { id: name.clone() },
            );
        } else if declared.ot.iter().any(|(p, _)| *p == name.as_str()) {
            approvers.push(IdentityId::new(name));
        } else {
            v.error(
                &a.span(),
                DiagnosticKind::UnknownReference {
                    what: "identity",
                    id: name.clone(),
                },
            );
        }
    }
    for rc in &approval.require {
        let rc_raw = rc.get_ref();
        let role = rc_raw.role.get_ref();
        let count = match u8::try_from(*rc_raw.count.get_ref()) {
            Ok(c) if c >= 1 => Some(c),
            _ => {
                v.error(
                    &rc_raw.count.span(),
                    DiagnosticKind::InvalidValue {
                        field: "approval count",
                        value: rc_raw.count.get_ref().to_string(),
                        expected: "1-255".into(),
                    },
                );
                None
            }
        };
        match roles.iter().find(|x| x.id.as_str() == role.as_str()) {
            None if declared.roles.contains(role.as_str()) => broken = true,
            None => v.error(
                &rc_raw.role.span(),
                DiagnosticKind::UnknownReference {
                    what: "role",
                    id: role.clone(),
                },
            ),
            // An IT role as the approving role would let IT identities approve.
            Some(x) if x.zone != Zone::Ot => v.error(
                &rc_raw.role.span(),
                DiagnosticKind::WrongZone {
                    what: "role",
                    id: role.clone(),
                    actual: "IT",
                    expected: "OT",
                    context: format!("the approvals of rule `{id}`"),
                },
            ),
            Some(x) => {
                if approvals.iter().any(|a| a.role == x.id) {
                    v.error(
                        &rc_raw.role.span(),
                        DiagnosticKind::NotAllowed(format!("approval role `{role}` listed twice")),
                    );
                } else if let Some(count) = count {
                    // Enough distinct people must exist who can fill the slots.
                    let pool = declared
                        .ot
                        .iter()
                        .filter(|(_, roles)| roles.contains(&x.id.as_str()))
                        .filter(|(p, _)| approvers.is_empty() || approvers.iter().any(|a| a == p))
                        .count();
                    if pool < usize::from(count) {
                        v.error(
                            &rc_raw.count.span(),
                            DiagnosticKind::NeverGrants {
                                rule: id.clone(),
                                why: format!("it needs {count} `{role}` approvals but only {pool} OT identities can give them"),
                            },
                        );
                    }
                    approvals.push(RoleCount {
                        role: x.id.clone(),
                        count,
                    });
                }
            }
        }
    }
    match mode {
        Some(GrantMode::Approvers) if approval.require.is_empty() => v.error(
            &r.approval.span(),
            DiagnosticKind::Missing {
                what: format!("`require` for approval mode `approvers` in rule `{id}`"),
            },
        ),
        Some(GrantMode::Auto | GrantMode::Emergency)
            if !approval.require.is_empty() || !approval.approvers.is_empty() =>
        {
            v.error(
                &approval.mode.span(),
                DiagnosticKind::NotAllowed(format!(
                    "rule `{id}`: approval mode `{}` takes no approvers",
                    approval.mode.get_ref()
                )),
            )
        }
        _ => {}
    }
    let total: usize = approvals.iter().map(|a| usize::from(a.count)).sum();
    let people: FastSet<&str> = declared
        .ot
        .iter()
        .filter(|(_, roles)| approvals.iter().any(|a| roles.contains(&a.role.as_str())))
        .filter(|(p, _)| approvers.is_empty() || approvers.iter().any(|a| a == p))
        .map(|(p, _)| *p)
        .collect();
    if total > people.len() && approvals.len() > 1 {
        v.error(
            &r.approval.span(),
            DiagnosticKind::NeverGrants {
                rule: id.clone(),
                why: format!(
                    "it needs {total} distinct approvers but only {} OT identities hold the roles",
                    people.len()
                ),
            },
        );
    }

    // Requirements.
    let (mfa, ticket, sources, mfa_span) = match &r.requirements {
        None => (true, None, Vec::new(), r.id.span()),
        Some(req) => {
            let q = req.get_ref();
            let ticket = q
                .ticket
                .as_ref()
                .and_then(|t| match Regex::new(t.get_ref()) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        v.invalid(
                            t,
                            "ticket pattern",
                            &format!(
                                "a regular expression ({})",
                                e.to_string().lines().last().unwrap_or("invalid")
                            ),
                        );
                        None
                    }
                });
            let mut sources = Vec::new();
            for s in &q.sources {
                match s.get_ref().parse::<IpNet>() {
                    Ok(n) => sources.push(n),
                    Err(_) => match segments
                        .iter()
                        .find(|x| x.id.as_str() == s.get_ref().as_str())
                    {
                        Some(seg) if seg.zone == Zone::It && !seg.networks.is_empty() => {
                            sources.extend(seg.networks.iter().copied())
                        }
                        Some(_) => v.error(
                            &s.span(),
                            DiagnosticKind::NotAllowed(format!(
                                "source segment `{}` must be an IT segment with networks",
                                s.get_ref()
                            )),
                        ),
                        None => v.invalid(s, "source", "a CIDR network or an IT segment id"),
                    },
                }
            }
            let (mfa, span) = match &q.mfa {
                Some(m) => (*m.get_ref(), m.span()),
                None => (true, r.id.span()),
            };
            (mfa, ticket, sources, span)
        }
    };
    if !mfa && mode != Some(GrantMode::Emergency) {
        match operations.iter().find(|o| o.is_write()) {
            Some(op) => v.error(
                &mfa_span,
                DiagnosticKind::MfaWaivedForWrite {
                    rule: id.clone(),
                    op: op.to_string(),
                },
            ),
            None => v.warn(&mfa_span, DiagnosticKind::MfaWaived { rule: id.clone() }),
        }
    }

    // Revoke triggers: opt-in, never on break-glass.
    let mut revoke_on = Vec::new();
    for trig in &r.revoke_on {
        if !REVOKE_TRIGGERS.contains(&trig.get_ref().as_str()) {
            v.invalid(trig, "revoke_on trigger", &REVOKE_TRIGGERS.join(", "));
        } else if mode == Some(GrantMode::Emergency) {
            v.error(
                &trig.span(),
                DiagnosticKind::NotAllowed(format!(
                    "rule `{id}`: break-glass grants are never revoked automatically"
                )),
            );
        } else {
            revoke_on.push(trig.get_ref().clone());
        }
    }

    // A rule whose roles no identity holds can never grant anything.
    if !rule_roles.is_empty() {
        let held = match requester_zone {
            Zone::It => declared
                .it
                .iter()
                .any(|(_, roles)| rule_roles.iter().any(|x| roles.contains(&x.as_str()))),
            Zone::Ot => declared
                .ot
                .iter()
                .any(|(_, roles)| rule_roles.iter().any(|x| roles.contains(&x.as_str()))),
        };
        if !held {
            v.error(
                &r.roles.span(),
                DiagnosticKind::NeverGrants {
                    rule: id.clone(),
                    why: "no identity holds any of its roles".into(),
                },
            );
        }
    }

    if broken {
        return None;
    }
    Some(Rule {
        id: RuleId::new(id),
        description: r.description.clone(),
        roles: rule_roles,
        targets,
        operations,
        schedules: rule_schedules,
        max_duration: max_duration?,
        on_excess,
        idle_timeout: idle_timeout?,
        end_on_last_disconnect: r.end_on_last_disconnect,
        mode: mode?,
        approvals,
        approvers,
        requirements: Requirements {
            mfa,
            ticket,
            sources,
        },
        revoke_on,
    })
}
