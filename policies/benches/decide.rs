//! Benchmarks of the decision engine (figures go to docs/PERFORMANCE.md).
//!
//! - `check_modbus`: one Modbus operation against a granted scope (the broker's per-request
//!   check; target median under 100 ns), allowed and refused, next to two same-run baselines:
//!   a bare range comparison and a `HashMap<String, _>` lookup.
//! - `decide`: one access request against a generated policy of 10,000 assets and 1,000 rules
//!   (target median under 50 µs), granted and denied, next to the same HashMap baseline.
//! - `parse`: the sample plant and the generated policy, for scale.
//!
//! Run: `cargo bench -p otgate-policy --bench decide -- --warm-up-time 1 --measurement-time 3`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use otgate_policy::modbus::{Access, AddressRange, ModbusClass, ModbusOp, Table};
mod support {
    pub mod generated;
}
use support::generated::generated_policy;

use otgate_policy::{parse, AccessRequest, Decision, GrantScope, OperationSpec, Policy, Protocol};

const PLANT: &str = include_str!("../examples/plant.toml");

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn modbus_op(function: u8, class: ModbusClass, first: u16, last: u16) -> ModbusOp {
    ModbusOp {
        unit: 1,
        function,
        sub_function: None,
        class,
        access: if class == ModbusClass::Read {
            Access::Read
        } else {
            Access::Write
        },
        table: Some(Table::HoldingRegisters),
        range: Some(AddressRange::new(first, last).unwrap()),
    }
}

fn bench_check(c: &mut Criterion) {
    let scope = GrantScope::from_operations(
        "line3-plc",
        Protocol::Modbus,
        &[1],
        ["read", "write:holding-registers:100-199"]
            .iter()
            .map(|o| o.parse::<OperationSpec>().unwrap()),
    );
    let write_ok = modbus_op(16, ModbusClass::Write, 150, 159);
    let straddle = modbus_op(16, ModbusClass::Write, 195, 204);
    let read = modbus_op(3, ModbusClass::Read, 0, 9);
    let allowed = AddressRange::new(100, 199).unwrap();
    let names: HashMap<String, usize> = (0..10_000).map(|i| (format!("a{i}"), i)).collect();

    let mut g = c.benchmark_group("check_modbus");
    g.bench_function("baseline_range_compare", |b| {
        b.iter(|| black_box(allowed).contains_range(black_box(write_ok.range.unwrap())))
    });
    g.bench_function("baseline_hashmap_lookup_10k", |b| {
        b.iter(|| names.get(black_box("a5123")).copied())
    });
    g.bench_function("write_allowed", |b| {
        b.iter(|| scope.check_modbus(black_box("line3-plc"), black_box(&write_ok)))
    });
    g.bench_function("write_straddling_refused", |b| {
        b.iter(|| scope.check_modbus(black_box("line3-plc"), black_box(&straddle)))
    });
    g.bench_function("read_allowed", |b| {
        b.iter(|| scope.check_modbus(black_box("line3-plc"), black_box(&read)))
    });
    g.finish();
}

fn bench_decide(c: &mut Criterion) {
    let source = generated_policy();
    let policy: Policy = parse(&source, "generated.toml").unwrap();
    assert_eq!(policy.assets.len(), 10_000);
    assert_eq!(policy.rules.len(), 1_000);
    // Saturday morning in Berlin: scheduled and unscheduled rules both apply.
    let now = t("2026-11-28T07:00:00+01:00");
    let granted = AccessRequest {
        who: "p0".into(),
        target: "a5".into(),
        operations: vec![
            "read".parse().unwrap(),
            "write:holding-registers:10-20".parse().unwrap(),
        ],
        start: now,
        duration: Duration::from_secs(2 * 3600),
        ticket: Some("CHG-1234".into()),
        source: None,
        mfa: true,
        emergency: false,
    };
    let decision = policy.decide(&granted, now);
    assert!(matches!(decision, Decision::NeedApproval(..)), "{decision}");
    assert!(
        !decision.grantable().unwrap().also_allowed_by.is_empty(),
        "several rules compete"
    );
    let denied = AccessRequest {
        ticket: None,
        ..granted.clone()
    };
    assert!(matches!(policy.decide(&denied, now), Decision::Deny(_)));
    let names: HashMap<String, usize> = (0..10_000).map(|i| (format!("a{i}"), i)).collect();

    let mut g = c.benchmark_group("decide");
    g.bench_function("baseline_hashmap_lookup_10k", |b| {
        b.iter(|| names.get(black_box("a5123")).copied())
    });
    g.bench_function("generated_10k_assets_1k_rules_granted", |b| {
        b.iter(|| policy.decide(black_box(&granted), black_box(now)))
    });
    g.bench_function("generated_10k_assets_1k_rules_denied", |b| {
        b.iter(|| policy.decide(black_box(&denied), black_box(now)))
    });
    let plant = parse(PLANT, "plant.toml").unwrap();
    let maintenance = AccessRequest {
        who: "alice".into(),
        target: "line3-plc".into(),
        operations: vec!["write:holding-registers:100-199".parse().unwrap()],
        ..granted.clone()
    };
    g.bench_function("plant_maintenance_window", |b| {
        b.iter(|| plant.decide(black_box(&maintenance), black_box(now)))
    });
    g.finish();

    let mut g = c.benchmark_group("parse");
    g.sample_size(10);
    g.bench_function("plant", |b| {
        b.iter(|| parse(black_box(PLANT), "plant.toml").unwrap())
    });
    g.bench_function("generated_10k_assets_1k_rules", |b| {
        b.iter(|| parse(black_box(&source), "generated.toml").unwrap())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_check, bench_decide
}
criterion_main!(benches);
