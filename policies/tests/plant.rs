//! The sample plant: it parses, and its three situations decide as the brief says.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use otgate_policy::modbus::{Access, AddressRange, ModbusClass, ModbusOp, Table};
use otgate_policy::{
    parse, AccessRequest, Approval, Clip, Decision, DenyReason, GrantMode, OpVerdict,
    OperationSpec, Policy, Refusal,
};

const PLANT: &str = include_str!("../examples/plant.toml");

fn plant() -> Policy {
    match parse(PLANT, "plant.toml") {
        Ok(p) => p,
        Err(d) => panic!("plant.toml is invalid:\n{d}"),
    }
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn request(who: &str, target: &str, ops: &[&str], start: &str, hours: u64) -> AccessRequest {
    AccessRequest {
        who: who.into(),
        target: target.into(),
        operations: ops
            .iter()
            .map(|o| o.parse::<OperationSpec>().unwrap())
            .collect(),
        start: t(start),
        duration: Duration::from_secs(hours * 3600),
        ticket: Some("CHG-1234".into()),
        source: None,
        mfa: true,
        emergency: false,
    }
}

fn write_op(first: u16, last: u16) -> ModbusOp {
    ModbusOp {
        unit: 1,
        function: 16,
        sub_function: None,
        class: ModbusClass::Write,
        access: Access::Write,
        table: Some(Table::HoldingRegisters),
        range: Some(AddressRange::new(first, last).unwrap()),
    }
}

#[test]
fn plant_parses_with_the_contract_ids() {
    let p = plant();
    assert_eq!(p.site.id, "plant-a");
    assert_eq!(p.site.timezone, chrono_tz::Europe::Berlin);
    for a in [
        "line1-plc",
        "line1-hmi",
        "line3-plc",
        "line3-hmi",
        "safety-plc",
    ] {
        assert!(p.asset(a).is_some(), "{a}");
    }
    assert!(p.asset("safety-plc").unwrap().has_tag("safety"));
    assert_eq!(
        p.asset("line3-plc").unwrap().address,
        "10.10.3.11:502".parse().unwrap()
    );
    assert!(p.it_identity("alice").is_some());
    assert!(p.it_identity("vendor-acme").unwrap().expires.is_some());
    for o in ["sam", "sue", "olga", "oscar"] {
        assert!(p.ot_identity(o).is_some(), "{o}");
        assert!(p.it_identity(o).is_none(), "{o}");
    }
    for r in ["line3-maintenance", "vendor-plc-read", "break-glass"] {
        assert!(p.rule(r).is_some(), "{r}");
    }
    assert!(p.warnings().is_empty(), "{:?}", p.warnings());
    let bg = p.break_glass.as_ref().unwrap();
    assert_eq!(bg.tags, vec!["safety".to_owned()]);
    assert_eq!(bg.sealed_codes, 10);
}

#[test]
fn maintenance_window_needs_one_supervisor_and_ends_at_ten() {
    let p = plant();
    // Saturday 2026-11-28 07:00 Berlin, asking for 6 hours: clipped to 4h by the rule, then to
    // 10:00 by the window.
    let req = request(
        "alice",
        "line3-plc",
        &["write:holding-registers:100-199"],
        "2026-11-28T07:00:00+01:00",
        6,
    );
    let d = p.decide(&req, t("2026-11-28T05:50:00+01:00"));
    let Decision::NeedApproval(g, approvals) = &d else {
        panic!("{d}")
    };
    assert_eq!(g.rule, "line3-maintenance");
    assert_eq!(g.mode, GrantMode::Approvers);
    assert_eq!(g.start, t("2026-11-28T07:00:00+01:00"));
    assert_eq!(g.end, t("2026-11-28T10:00:00+01:00"));
    assert!(g
        .clips
        .iter()
        .any(|c| matches!(c, Clip::MaxDuration { .. })));
    assert!(g
        .clips
        .iter()
        .any(|c| matches!(c, Clip::ScheduleWindow { .. })));
    assert_eq!(approvals.total(), 1);
    // The scope is checked per request.
    assert_eq!(
        g.scope.check_modbus("line3-plc", &write_op(100, 109)),
        OpVerdict::Allow
    );
    assert!(matches!(
        g.scope.check_modbus("line3-plc", &write_op(195, 204)),
        OpVerdict::Refuse {
            refusal: Refusal::IllegalDataAddress,
            ..
        }
    ));
    // Approvals: alice can't, IT identities can't, sam can.
    assert!(p.approval_by("alice").is_err());
    let sam = p.approval_by("sam").unwrap();
    let olga = p.approval_by("olga").unwrap();
    assert!(!approvals.check(std::slice::from_ref(&olga)).satisfied);
    assert!(approvals.check(&[olga, sam]).satisfied);
    let self_approval = Approval {
        approver: "alice".into(),
        roles: vec!["shift-supervisor".into()],
    };
    assert!(!approvals.check(&[self_approval]).satisfied);
    // Explanation in words.
    let words = d.to_string();
    assert!(words.contains("line3-maintenance"), "{words}");
    assert!(words.contains("1 shift-supervisor"), "{words}");
}

#[test]
fn maintenance_denials_name_the_reason() {
    let p = plant();
    let now = t("2026-11-28T05:00:00+01:00");
    // Tuesday: outside the schedule.
    let req = request(
        "alice",
        "line3-plc",
        &["read"],
        "2026-11-24T08:00:00+01:00",
        1,
    );
    let d = p.decide(&req, t("2026-11-24T07:00:00+01:00"));
    assert!(
        matches!(d, Decision::Deny(DenyReason::OutsideSchedule { .. })),
        "{d}"
    );
    // Write outside 100-199.
    let req = request(
        "alice",
        "line3-plc",
        &["write:coils"],
        "2026-11-28T06:00:00+01:00",
        1,
    );
    assert!(matches!(
        p.decide(&req, now),
        Decision::Deny(DenyReason::OperationNotPermitted { .. })
    ));
    // Ticket mismatch, missing MFA.
    let mut req = request(
        "alice",
        "line3-plc",
        &["read"],
        "2026-11-28T06:00:00+01:00",
        1,
    );
    req.ticket = Some("INC-7".into());
    assert!(matches!(
        p.decide(&req, now),
        Decision::Deny(DenyReason::TicketMismatch { .. })
    ));
    req.ticket = None;
    assert!(matches!(
        p.decide(&req, now),
        Decision::Deny(DenyReason::TicketMissing { .. })
    ));
    req.ticket = Some("CHG-1".into());
    req.mfa = false;
    assert!(matches!(
        p.decide(&req, now),
        Decision::Deny(DenyReason::MfaMissing { .. })
    ));
    // No rule for alice on the safety controller; sam is an approver, not a requester.
    let req = request(
        "alice",
        "safety-plc",
        &["read"],
        "2026-11-28T06:00:00+01:00",
        1,
    );
    assert!(matches!(
        p.decide(&req, now),
        Decision::Deny(DenyReason::NoRule { .. })
    ));
    let req = request(
        "sam",
        "line3-plc",
        &["read"],
        "2026-11-28T06:00:00+01:00",
        1,
    );
    assert!(matches!(
        p.decide(&req, now),
        Decision::Deny(DenyReason::NotARequester { .. })
    ));
    let req = request(
        "mallory",
        "line3-plc",
        &["read"],
        "2026-11-28T06:00:00+01:00",
        1,
    );
    assert!(matches!(
        p.decide(&req, now),
        Decision::Deny(DenyReason::UnknownIdentity { .. })
    ));
}

#[test]
fn vendor_reads_with_two_supervisors_until_the_contract_ends() {
    let p = plant();
    let now = t("2027-06-30T21:00:00+02:00");
    let req = request(
        "vendor-acme",
        "line1-hmi",
        &["read"],
        "2027-06-30T21:00:00+02:00",
        4,
    );
    let d = p.decide(&req, now);
    let Decision::NeedApproval(g, approvals) = &d else {
        panic!("{d}")
    };
    assert_eq!(g.rule, "vendor-plc-read");
    assert_eq!(
        g.end,
        t("2027-06-30T23:59:59+02:00"),
        "a grant never outlives the account"
    );
    assert!(g
        .scope
        .allows_screen("line1-hmi", otgate_policy::ScreenAccess::View));
    assert!(!g
        .scope
        .allows_screen("line1-hmi", otgate_policy::ScreenAccess::Control));
    let sam = p.approval_by("sam").unwrap();
    let sue = p.approval_by("sue").unwrap();
    assert!(
        !approvals.check(&[sam.clone(), sam.clone()]).satisfied,
        "one person counts once"
    );
    assert!(approvals.check(&[sam, sue]).satisfied);
    // Writes are not permitted; after expiry everything is denied.
    let req = request(
        "vendor-acme",
        "line1-plc",
        &["write"],
        "2027-06-30T21:00:00+02:00",
        1,
    );
    assert!(matches!(
        p.decide(&req, now),
        Decision::Deny(DenyReason::OperationNotPermitted { .. })
    ));
    let req = request(
        "vendor-acme",
        "line1-plc",
        &["read"],
        "2027-07-01T09:00:00+02:00",
        1,
    );
    assert!(matches!(
        p.decide(&req, t("2027-07-01T09:00:00+02:00")),
        Decision::Deny(DenyReason::AccountExpired { .. })
    ));
}

#[test]
fn break_glass_allows_safety_at_once() {
    let p = plant();
    let now = t("2026-11-25T03:12:00+01:00");
    let mut req = request(
        "oscar",
        "safety-plc",
        &["read", "write"],
        "2026-11-25T03:12:00+01:00",
        8,
    );
    req.emergency = true;
    req.mfa = false;
    let d = p.decide(&req, now);
    let Decision::Allow(g) = &d else {
        panic!("{d}")
    };
    assert_eq!(g.mode, GrantMode::Emergency);
    assert_eq!(g.end - g.start, chrono::Duration::hours(2));
    // Not through the normal path.
    req.emergency = false;
    assert!(matches!(
        p.decide(&req, now),
        Decision::Deny(DenyReason::NotARequester { .. })
    ));
}

#[test]
fn decisions_serialize_for_the_journal() {
    let p = plant();
    let req = request(
        "alice",
        "line3-plc",
        &["read"],
        "2026-11-28T06:00:00+01:00",
        1,
    );
    let d = p.decide(&req, t("2026-11-28T06:00:00+01:00"));
    let json = serde_json::to_string(&d).unwrap();
    let back: Decision = serde_json::from_str(&json).unwrap();
    assert_eq!(d, back);
    let json = serde_json::to_string(&req).unwrap();
    let back: AccessRequest = serde_json::from_str(&json).unwrap();
    assert_eq!(req, back);
}

const WATERWORKS: &str = include_str!("../examples/waterworks.toml");

fn waterworks() -> Policy {
    match parse(WATERWORKS, "waterworks.toml") {
        Ok(p) => p,
        Err(d) => panic!("waterworks.toml is invalid:\n{d}"),
    }
}

fn office_request(ops: &[&str], start: &str, hours: u64, target: &str) -> AccessRequest {
    AccessRequest {
        source: Some("10.20.0.5".parse().unwrap()),
        ticket: Some("WO-12345".into()),
        ..request("alice", target, ops, start, hours)
    }
}

#[test]
fn waterworks_parses_with_one_warning() {
    let p = waterworks();
    assert_eq!(p.warnings().len(), 1, "{:?}", p.warnings());
    assert!(p.warnings()[0].to_string().contains("waives MFA"));
    assert_eq!(p.break_glass.as_ref().unwrap().sealed_codes, 5);
}

#[test]
fn read_only_auto_rule_wins_over_a_more_specific_control_rule() {
    let p = waterworks();
    // Weekday 09:00 New York: both pump-monitoring (segment, read-only, auto) and pump-control
    // (asset, control, approvers) allow a read; the least privileged rule decides.
    let req = office_request(&["read"], "2027-03-10T09:00:00-05:00", 1, "pump-rtu");
    let d = p.decide(&req, t("2027-03-10T09:00:00-05:00"));
    let Decision::Allow(g) = &d else {
        panic!("{d}")
    };
    assert_eq!(g.rule, "pump-monitoring");
    assert_eq!(
        g.also_allowed_by,
        vec![otgate_policy::RuleId::new("pump-control")]
    );
    assert!(g.scope.check_dnp3("pump-rtu", 0x01).is_allowed());
    assert!(!g.scope.check_dnp3("pump-rtu", 0x05).is_allowed());
    // From outside the office: denied with the closest rule's reason.
    let mut outside = req.clone();
    outside.source = Some("192.168.1.9".parse().unwrap());
    assert!(matches!(
        p.decide(&outside, t("2027-03-10T09:00:00-05:00")),
        Decision::Deny(DenyReason::SourceNotAllowed { .. })
    ));
}

#[test]
fn control_requests_longer_than_allowed_are_refused() {
    let p = waterworks();
    let now = t("2027-03-10T09:00:00-05:00");
    let req = office_request(
        &["dnp3:control"],
        "2027-03-10T09:00:00-05:00",
        1,
        "pump-rtu",
    );
    let d = p.decide(&req, now);
    let Decision::NeedApproval(g, _) = &d else {
        panic!("{d}")
    };
    assert_eq!(g.rule, "pump-control");
    assert_eq!(
        g.revoke_on,
        vec!["unauthorized_write".to_owned(), "restart".to_owned()]
    );
    let long = office_request(
        &["dnp3:control"],
        "2027-03-10T09:00:00-05:00",
        3,
        "pump-rtu",
    );
    assert!(matches!(
        p.decide(&long, now),
        Decision::Deny(DenyReason::DurationExceeded { .. })
    ));
}

#[test]
fn dosing_needs_a_supervisor_and_a_safety_engineer_across_the_dst_change() {
    let p = waterworks();
    // 2027-03-14 01:00 EST; clocks jump to 03:00 EDT at 02:00; the outage ends at 06:00 EDT.
    let now = t("2027-03-14T01:00:00-05:00");
    let req = office_request(
        &["write:holding-registers:40-45"],
        "2027-03-14T01:00:00-05:00",
        8,
        "dosing-plc",
    );
    let d = p.decide(&req, now);
    let Decision::NeedApproval(g, approvals) = &d else {
        panic!("{d}")
    };
    assert_eq!(g.rule, "dosing-setpoints");
    assert_eq!(g.end, t("2027-03-14T06:00:00-04:00"));
    assert_eq!(g.end - g.start, chrono::Duration::hours(4));
    assert!(
        g.clips.iter().any(|c| matches!(c, Clip::Operation { .. })),
        "narrowed to unit 2"
    );
    let mut op = write_op(40, 45);
    op.unit = 2;
    assert_eq!(g.scope.check_modbus("dosing-plc", &op), OpVerdict::Allow);
    op.unit = 1;
    assert!(!g.scope.check_modbus("dosing-plc", &op).is_allowed());
    let sam = p.approval_by("sam").unwrap();
    let olga = p.approval_by("olga").unwrap();
    assert!(!approvals.check(std::slice::from_ref(&sam)).satisfied);
    let check = approvals.check(&[sam, olga]);
    assert!(check.satisfied, "{check:?}");
    assert_eq!(check.counted.len(), 2);
}
