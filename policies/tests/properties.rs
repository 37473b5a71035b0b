//! Property tests: range arithmetic, schedule evaluation across DST and midnight, the scope check
//! against an oracle, decision invariants on the sample plant, and parsers that never panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::time::Duration;

use chrono::{DateTime, Datelike, Duration as Span, Offset, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use otgate_policy::modbus::{class_of, Access, AddressRange, ModbusClass, ModbusOp, Table};
use otgate_policy::schedule::{Schedule, WeeklyWindow};
use otgate_policy::{
    parse, AccessRequest, Decision, GrantMode, GrantScope, OpVerdict, OperationSpec, Policy,
    Refusal, ScheduleId,
};
use proptest::prelude::*;

// ------------------------------------------------------------------------------------------
// Ranges.

fn range() -> impl Strategy<Value = AddressRange> {
    (any::<u16>(), any::<u16>()).prop_map(|(a, b)| AddressRange::new(a.min(b), a.max(b)).unwrap())
}

proptest! {
    #[test]
    fn intersection_lies_in_both(a in range(), b in range()) {
        match a.intersection(b) {
            Some(i) => {
                prop_assert!(a.overlaps(b) && b.overlaps(a));
                prop_assert!(a.contains_range(i) && b.contains_range(i));
                // It is the largest such range.
                prop_assert_eq!(i.first(), a.first().max(b.first()));
                prop_assert_eq!(i.last(), a.last().min(b.last()));
            }
            None => {
                prop_assert!(!a.overlaps(b) && !b.overlaps(a));
                prop_assert!(a.last() < b.first() || b.last() < a.first());
            }
        }
        prop_assert_eq!(a.contains_range(b), a.intersection(b) == Some(b));
    }

    #[test]
    fn start_quantity_matches_len(start in any::<u16>(), quantity in any::<u16>()) {
        match AddressRange::from_start_quantity(start, quantity) {
            Ok(r) => {
                prop_assert_eq!(r.first(), start);
                prop_assert_eq!(r.len(), u32::from(quantity));
            }
            Err(_) => prop_assert!(quantity == 0 || u32::from(start) + u32::from(quantity) - 1 > 65_535),
        }
    }

    #[test]
    fn new_refuses_exactly_inverted(a in any::<u16>(), b in any::<u16>()) {
        prop_assert_eq!(AddressRange::new(a, b).is_ok(), a <= b);
    }
}

// ------------------------------------------------------------------------------------------
// Schedules across DST and midnight.

fn weekday(n: u8) -> Weekday {
    Weekday::try_from(n % 7).unwrap()
}

fn zones() -> impl Strategy<Value = Tz> {
    prop_oneof![
        Just(chrono_tz::Europe::Berlin),
        Just(chrono_tz::America::New_York),
        Just(chrono_tz::Australia::Sydney),
        Just(chrono_tz::UTC),
    ]
}

/// An instant in 2026 (both DST changes of each zone are in it).
fn instant_2026() -> impl Strategy<Value = DateTime<Utc>> {
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp();
    (0i64..365 * 24 * 60).prop_map(move |m| DateTime::from_timestamp(start + m * 60, 0).unwrap())
}

/// Whether `t` is at least `hours` away from any change of `tz`'s UTC offset.
fn far_from_transition(tz: Tz, t: DateTime<Utc>, hours: i64) -> bool {
    let offset = |t: DateTime<Utc>| t.with_timezone(&tz).offset().fix();
    (-hours..=hours).all(|h| offset(t + Span::hours(h)) == offset(t))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Away from DST changes, `t` is in a weekly window exactly when its local wall-clock time
    /// is; the window found contains `t`, opens at the window's wall-clock start on its day and
    /// lasts its length (± 1 h when a DST change falls inside it).
    #[test]
    fn weekly_window_matches_wall_clock(
        tz in zones(),
        day in 0u8..7,
        from in 0u16..1440,
        len in 1u16..1440,
        t in instant_2026(),
    ) {
        let to = (from + len) % 1440;
        let to = if to == 0 { 1440 } else { to };
        let schedule = Schedule {
            id: ScheduleId::new("p"),
            timezone: tz,
            weekly: vec![WeeklyWindow { days: vec![weekday(day)], from, to }],
            dates: vec![],
        };
        let found = schedule.window_at(t);
        if let Some(w) = found {
            prop_assert!(w.contains(t));
            let minutes = (w.end - w.start).num_minutes();
            prop_assert!((minutes - i64::from(len)).abs() <= 60, "{minutes} vs {len}");
            let local_start = w.start.with_timezone(&tz);
            prop_assert_eq!(local_start.weekday(), weekday(day));
        }
        if far_from_transition(tz, t, 3) {
            let local = t.with_timezone(&tz);
            let minute_of_week = i64::from(local.weekday().num_days_from_monday()) * 1440
                + i64::from(local.hour() * 60 + local.minute());
            let start = i64::from(day) * 1440 + i64::from(from);
            let offset = (minute_of_week - start).rem_euclid(7 * 1440);
            let inside = offset < i64::from(len);
            prop_assert_eq!(found.is_some(), inside, "local {} window {}+{}", local, from, len);
        }
    }

    /// A grant under a scheduled rule never outlives the window it starts in.
    #[test]
    fn next_start_is_a_window_start(tz in zones(), day in 0u8..7, from in 0u16..1440, t in instant_2026()) {
        let schedule = Schedule {
            id: ScheduleId::new("p"),
            timezone: tz,
            weekly: vec![WeeklyWindow { days: vec![weekday(day)], from, to: (from + 60).min(1440) }],
            dates: vec![],
        };
        let next = schedule.next_start(t).unwrap();
        prop_assert!(next >= t);
        prop_assert!(next - t <= Span::days(7) + Span::hours(1));
        prop_assert!(schedule.contains(next));
    }
}

// ------------------------------------------------------------------------------------------
// The scope check against an oracle.

fn op_strategy() -> impl Strategy<Value = ModbusOp> {
    (
        0u8..4,
        prop::sample::select(vec![1u8, 2, 3, 4, 5, 6, 8, 15, 16, 23, 43, 90]),
        0u16..400,
        1u16..130,
    )
        .prop_map(|(unit, function, start, quantity)| {
            let class = class_of(function);
            let table = match function {
                1 | 5 | 15 => Some(Table::Coils),
                2 => Some(Table::DiscreteInputs),
                3 | 6 | 16 | 23 => Some(Table::HoldingRegisters),
                4 => Some(Table::InputRegisters),
                _ => None,
            };
            let quantity = if matches!(function, 5 | 6) {
                1
            } else {
                quantity
            };
            ModbusOp {
                unit,
                function,
                sub_function: None,
                class,
                access: if matches!(class, ModbusClass::Read | ModbusClass::DeviceId) {
                    Access::Read
                } else {
                    Access::Write
                },
                table,
                range: table.map(|_| AddressRange::from_start_quantity(start, quantity).unwrap()),
            }
        })
}

fn maintenance_scope() -> GrantScope {
    let policy = plant();
    let req = AccessRequest {
        who: "alice".into(),
        target: "line3-plc".into(),
        operations: vec![
            "read".parse().unwrap(),
            "write:holding-registers:100-199".parse().unwrap(),
        ],
        start: t("2026-11-28T06:00:00+01:00"),
        duration: Duration::from_secs(3600),
        ticket: Some("CHG-1".into()),
        source: None,
        mfa: true,
        emergency: false,
    };
    policy
        .decide(&req, t("2026-11-28T06:00:00+01:00"))
        .grantable()
        .unwrap()
        .scope
        .clone()
}

proptest! {
    #[test]
    fn scope_check_matches_oracle(op in op_strategy()) {
        let scope = maintenance_scope();
        let verdict = scope.check_modbus("line3-plc", &op);
        let in_range = op.range.is_some_and(|r| r.first() >= 100 && r.last() <= 199);
        let expected_allow = op.unit == 1
            && match op.class {
                ModbusClass::Read => true,
                ModbusClass::Write => op.table == Some(Table::HoldingRegisters) && in_range,
                _ => false,
            };
        prop_assert_eq!(verdict.is_allowed(), expected_allow, "{:?} -> {:?}", op, verdict);
        if let OpVerdict::Refuse { refusal, .. } = verdict {
            let class_granted = matches!(op.class, ModbusClass::Read | ModbusClass::Write) && op.unit == 1;
            let expected = if class_granted { Refusal::IllegalDataAddress } else { Refusal::IllegalFunction };
            prop_assert_eq!(refusal, expected);
        }
        // Another asset is never allowed.
        prop_assert!(!scope.check_modbus("line1-plc", &op).is_allowed());
    }
}

// ------------------------------------------------------------------------------------------
// Decisions on the sample plant.

fn plant() -> &'static Policy {
    static PLANT: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
    PLANT.get_or_init(|| parse(include_str!("../examples/plant.toml"), "plant.toml").unwrap())
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn request_strategy() -> impl Strategy<Value = (AccessRequest, DateTime<Utc>)> {
    let who = prop::sample::select(vec![
        "alice",
        "bob",
        "vendor-acme",
        "sam",
        "oscar",
        "nobody",
    ]);
    let target = prop::sample::select(vec![
        "line1-plc",
        "line1-hmi",
        "line3-plc",
        "line3-hmi",
        "safety-plc",
        "nothing",
    ]);
    let ops = prop::collection::vec(
        prop::sample::select(vec![
            "read",
            "write",
            "write:holding-registers:100-199",
            "write:holding-registers:150-250",
            "write:coils:0-9",
            "read:coils@1",
            "diagnostics",
            "fc:90",
            "vnc:view",
            "vnc:control",
            "dnp3:read",
        ]),
        1..3,
    );
    let ticket = prop::sample::select(vec![None, Some("CHG-1234"), Some("INC-1")]);
    // Around the autumn DST change of 2026 in Berlin (Sunday 25 October) and a weekend in June
    // 2027 when the vendor account expires.
    let base = prop_oneof![
        Just(t("2026-10-22T00:00:00Z")),
        Just(t("2027-06-28T00:00:00Z"))
    ];
    (
        who,
        target,
        ops,
        ticket,
        base,
        0i64..7 * 24 * 60,
        -120i64..600,
        1u64..12 * 60,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(who, target, ops, ticket, base, at, lead, minutes, mfa, emergency)| {
                let now = base + Span::minutes(at);
                let req = AccessRequest {
                    who: who.into(),
                    target: target.into(),
                    operations: ops
                        .iter()
                        .map(|o| o.parse::<OperationSpec>().unwrap())
                        .collect(),
                    start: now + Span::minutes(lead),
                    duration: Duration::from_secs(minutes * 60),
                    ticket: ticket.map(str::to_owned),
                    source: None,
                    mfa,
                    emergency,
                };
                (req, now)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn decisions_respect_the_rules((req, now) in request_strategy()) {
        let policy = plant();
        let decision = policy.decide(&req, now);
        prop_assert_eq!(&decision, &policy.decide(&req, now), "deterministic");
        let json = serde_json::to_string(&decision).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Decision>(&json).unwrap(), &decision);
        let _ = decision.to_string();

        let Some(g) = decision.grantable() else { return Ok(()) };
        let rule = policy.rule(g.rule.as_str()).unwrap();
        let requested_end = req.start + Span::from_std(req.duration).unwrap();
        prop_assert!(g.start >= now && g.start >= req.start);
        prop_assert!(g.end > g.start);
        prop_assert!(g.end <= requested_end);
        prop_assert!((g.end - g.start).to_std().unwrap() <= rule.max_duration);
        prop_assert_eq!(g.scope.asset.as_str(), req.target.as_str());
        prop_assert_eq!(g.mode == GrantMode::Emergency, req.emergency);
        if rule.requirements.mfa && g.mode != GrantMode::Emergency {
            prop_assert!(req.mfa);
        }
        if let Some(pattern) = &rule.requirements.ticket {
            prop_assert!(req.ticket.as_deref().is_some_and(|t| pattern.is_match(t)));
        }
        if let Some(p) = policy.it_identity(req.who.as_str()) {
            if let Some(expires) = p.expires {
                prop_assert!(g.end <= expires);
            }
        } else {
            prop_assert!(req.emergency, "only break-glass grants to OT identities");
        }
        // The grant starts inside, and ends with, a window of the rule's schedules.
        if !rule.schedules.is_empty() {
            let windows: Vec<_> = rule
                .schedules
                .iter()
                .filter_map(|s| policy.schedule(s.as_str()).unwrap().window_at(g.start))
                .collect();
            prop_assert!(!windows.is_empty());
            prop_assert!(windows.iter().any(|w| g.end <= w.end));
        }
        // The scope never exceeds what the rule grants on this asset.
        let asset = policy.asset(req.target.as_str()).unwrap();
        for op in g.scope.operations() {
            let covered = rule.operations.iter().any(|rop| {
                rop.for_protocol(asset.protocol).and_then(|r| r.intersect(&op)).as_ref() == Some(&op)
            });
            prop_assert!(covered, "{} not covered by rule {}", op, rule.id);
        }
        // IT identities can never satisfy an approval.
        if let Decision::NeedApproval(_, approvals) = &decision {
            let it_people: Vec<_> = policy
                .it_identities
                .iter()
                .map(|p| otgate_policy::Approval { approver: p.id.clone(), roles: p.roles.clone() })
                .collect();
            prop_assert!(!approvals.check(&it_people).satisfied);
            prop_assert!(policy.it_identities.iter().all(|p| policy.approval_by(p.id.as_str()).is_err()));
        }
    }
}

// ------------------------------------------------------------------------------------------
// Parsers never panic.

proptest! {
    #[test]
    fn operation_parser_never_panics(s in "\\PC{0,40}") {
        if let Ok(op) = s.parse::<OperationSpec>() {
            // What parses displays back to something that parses to the same thing.
            prop_assert_eq!(op.to_string().parse::<OperationSpec>().unwrap(), op);
        }
    }

    #[test]
    fn operation_grammar_round_trips(
        class in prop::sample::select(vec!["read", "write"]),
        table in prop::sample::select(vec!["coils", "holding-registers"]),
        a in 0u16..1000, len in 0u16..100, unit in any::<u8>(),
    ) {
        let text = format!("{class}:{table}:{a}-{}@{unit}", a + len);
        let op: OperationSpec = text.parse().unwrap();
        let shown = op.to_string();
        let expected = if len == 0 { format!("{class}:{table}:{a}@{unit}") } else { text };
        prop_assert_eq!(shown, expected);
    }

    #[test]
    fn policy_parser_never_panics_on_mutations(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = include_bytes!("../examples/plant.toml").to_vec();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Err(diags) = parse(&text, "mutated.toml") {
            prop_assert!(diags.iter().count() > 0);
            for d in diags.iter() {
                prop_assert!(d.line >= 1 && d.column >= 1);
            }
        }
    }

    #[test]
    fn policy_parser_never_panics_on_noise(s in "\\PC{0,200}") {
        let _ = parse(&s, "noise.toml");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The brief's maintenance window, exactly: a request by alice for line 3 is granted iff it
    /// starts in the weekend schedule (Berlin wall clock, across the DST change of 25 October
    /// 2026), and the grant ends at the earliest of the requested end, start + 4h, and the end of
    /// the window.
    #[test]
    fn maintenance_grants_end_with_the_window(at in 0i64..7 * 24 * 60, minutes in 1u64..10 * 60) {
        let policy = plant();
        // Thursday 22 October 2026 00:00 UTC plus up to a week.
        let now = t("2026-10-22T00:00:00Z") + Span::minutes(at);
        let req = AccessRequest {
            who: "alice".into(),
            target: "line3-plc".into(),
            operations: vec!["write:holding-registers:100-199".parse().unwrap()],
            start: now,
            duration: Duration::from_secs(minutes * 60),
            ticket: Some("CHG-42".into()),
            source: None,
            mfa: true,
            emergency: false,
        };
        let local = now.with_timezone(&chrono_tz::Europe::Berlin);
        let minute = local.hour() * 60 + local.minute();
        let in_window = match local.weekday() {
            Weekday::Sat => (360..600).contains(&minute),
            Weekday::Sun => true,
            _ => false,
        };
        let decision = policy.decide(&req, now);
        match &decision {
            Decision::NeedApproval(g, approvals) => {
                prop_assert!(in_window, "granted outside the window at {}", local);
                prop_assert_eq!(approvals.total(), 1);
                let window_end = match local.weekday() {
                    Weekday::Sat => local.date_naive().and_hms_opt(10, 0, 0).unwrap(),
                    _ => local.date_naive().succ_opt().unwrap().and_hms_opt(0, 0, 0).unwrap(),
                };
                let window_end = chrono_tz::Europe::Berlin.from_local_datetime(&window_end).earliest().unwrap().with_timezone(&Utc);
                let expected = (now + Span::minutes(minutes as i64)).min(now + Span::hours(4)).min(window_end);
                prop_assert_eq!(g.end, expected, "local start {}", local);
            }
            Decision::Deny(otgate_policy::DenyReason::OutsideSchedule { .. }) => {
                prop_assert!(!in_window, "refused inside the window at {}", local);
            }
            other => prop_assert!(false, "unexpected {}", other),
        }
    }
}
