//! Grants benchmarks: request-to-decision latency and approvals per second, each as a ratio to
//! a same-run baseline, a bare `policy.decide` call on the same request.
//!
//! - `decide_baseline`: `Policy::decide` for alice's line 3 request (no I/O).
//! - `submit_null_journal`: `Grants::submit` (policy, id, registry, notices) with a recorder that
//!   keeps nothing: the service's own overhead.
//! - `submit_real_journal`: the same with the real journal (durable append, `sync_data`): the
//!   request-to-decision latency on the appliance, minus TLS and the tunnel handshake.
//! - `approve_real_journal`: one approval completing a request (approval, approval complete,
//!   activation: three durable records); its inverse is approvals per second.
//! - `policy_change_100_active`: a new (identical) policy activated over 100 active grants:
//!   each is asked again and its scope compared (no revocation, nothing journaled); compare
//!   with 100 × `decide_baseline`.
//! - `review_verify_and_import`: a 2-of-2 signed review record verified against the trust root
//!   and imported over one emergency grant awaiting review (null journal).
//!
//! Run: `cargo bench -p otgate --bench grants -- --warm-up-time 1 --measurement-time 3`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use otgate::clock::ManualClock;
use otgate::grants::adapters::PolicyAccess;
use otgate::grants::seams::{RecordFuture, Recorder};
use otgate::grants::{Ask, Grants, Registry};
use otgate::journal::event::Event;
use otgate::journal::Journal;

const PLANT: &str = include_str!("../../policies/examples/plant.toml");

#[derive(Debug)]
struct Null;

impl Recorder for Null {
    fn record(&self, _event: Event, _reserved: bool) -> RecordFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

fn saturday() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T07:00:00+01:00")
        .unwrap()
        .with_timezone(&Utc)
}

fn ask() -> Ask {
    Ask {
        requester: "alice".into(),
        asset: "line3-plc".into(),
        operations: vec!["read".into(), "write:holding-registers:100-199".into()],
        start: saturday(),
        duration_secs: 3600,
        ticket: Some("CHG-1234".into()),
        reason: "bench".into(),
        source: None,
        mfa: true,
        emergency: false,
    }
}

fn service(recorder: Arc<dyn Recorder>) -> Arc<Grants> {
    let policy = Arc::new(otgate_policy::parse(PLANT, "plant.toml").unwrap());
    let (notices, _) = tokio::sync::broadcast::channel(16);
    Grants::new(
        Registry::new(),
        recorder,
        Arc::new(PolicyAccess::new(policy)),
        Arc::new(ManualClock::starting_at(saturday())),
        notices,
    )
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let policy = otgate_policy::parse(PLANT, "plant.toml").unwrap();
    let request = otgate_policy::AccessRequest {
        who: "alice".into(),
        target: "line3-plc".into(),
        operations: vec![
            "read".parse().unwrap(),
            "write:holding-registers:100-199".parse().unwrap(),
        ],
        start: saturday(),
        duration: Duration::from_secs(3600),
        ticket: Some("CHG-1234".into()),
        source: None,
        mfa: true,
        emergency: false,
    };
    let mut group = c.benchmark_group("grants");
    group.bench_function("decide_baseline", |b| {
        b.iter(|| std::hint::black_box(policy.decide(&request, saturday())))
    });

    let null = service(Arc::new(Null));
    group.bench_function("submit_null_journal", |b| {
        b.iter(|| runtime.block_on(null.submit(ask())).unwrap())
    });

    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open_for_tests(dir.path()).unwrap();
    let real = service(Arc::new(journal));
    group.bench_function("submit_real_journal", |b| {
        b.iter(|| runtime.block_on(real.submit(ask())).unwrap())
    });

    group.bench_function("approve_real_journal", |b| {
        b.iter_custom(|iters| {
            let ids: Vec<String> = (0..iters)
                .map(|_| runtime.block_on(real.submit(ask())).unwrap().request_id)
                .collect();
            let started = Instant::now();
            for id in &ids {
                runtime.block_on(real.approve(id, "sam")).unwrap();
            }
            started.elapsed()
        })
    });
    // 100 active grants (auto-approved by the null service is not possible for line 3: approve
    // each), then the same policy again.
    let many = service(Arc::new(Null));
    runtime.block_on(async {
        for _ in 0..100 {
            let id = many.submit(ask()).await.unwrap().request_id;
            many.approve(&id, "sam").await.unwrap();
        }
    });
    let again = Arc::new(PolicyAccess::new(Arc::new(policy.clone())));
    group.bench_function("policy_change_100_active", |b| {
        b.iter(|| {
            let revoked = runtime
                .block_on(many.policy_changed(again.clone()))
                .unwrap();
            assert!(revoked.is_empty());
        })
    });

    group.bench_function("review_verify_and_import", |b| {
        use otgate_sync::review::{ReviewBody, ReviewRecord, Verdict};
        use otgate_sync::{AuthorityKey, TrustRoot, TrustRootFile};
        let keys = [
            AuthorityKey::from_secret([1; 32], None),
            AuthorityKey::from_secret([2; 32], None),
        ];
        let root = TrustRoot::new(TrustRootFile {
            format: 1,
            site: "plant-a".into(),
            root_version: 1,
            threshold: 2,
            keys: keys.iter().map(AuthorityKey::public_entry).collect(),
            revoked: vec![],
        })
        .unwrap();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let grants = service(Arc::new(Null));
                let mut emergency = ask();
                emergency.requester = "oscar".into();
                emergency.asset = "safety-plc".into();
                emergency.operations = vec!["read".into()];
                emergency.ticket = None;
                emergency.emergency = true;
                let grant = runtime
                    .block_on(grants.submit(emergency))
                    .unwrap()
                    .grant_id
                    .unwrap();
                let mut record = ReviewRecord::new(ReviewBody {
                    site: "plant-a".into(),
                    issued_at: saturday() + chrono::Duration::minutes(1),
                    reviewer: "security-officer".into(),
                    verdict: Verdict::Justified,
                    comment: "bench".into(),
                    grant_ids: vec![grant],
                })
                .unwrap();
                record.sign(&keys[0]).unwrap();
                record.sign(&keys[1]).unwrap();
                let bytes = record.encode();
                let started = Instant::now();
                runtime
                    .block_on(grants.import_review_bytes(&bytes, &root))
                    .unwrap();
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group! {
    name = grants;
    config = Criterion::default().sample_size(20);
    targets = benches
}
criterion_main!(grants);
