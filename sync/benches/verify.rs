//! Verify (and activate) a bundle whose policy has 10,000 assets; target under 50 ms.
//!
//! `cargo bench -p otgate-sync --bench verify -- --warm-up-time 1 --measurement-time 3`
//!
//! Baselines from the same run: SHA-256 of the same bytes, one ed25519 verification of the
//! signed message, and `verify_format_1`: the same policy in a format-1 bundle, whose policy is
//! TOML source (what every bundle was before format 2). The breakdown of `verify`: `decode`,
//! the signatures (about two ed25519 verifications), `policy_parse_canonical` (of which
//! `json_only` is reading the JSON and the rest is validation). `policy_parse_toml` and
//! `toml_only` are the same for the TOML source. "activate" adds what the appliance does on
//! disk (write the bundle file and the pointer, each with fsync and rename); the journal append
//! is measured by the journal's own bench.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::io::Write as _;
use std::path::Path;

use chrono::{TimeDelta, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use ed25519_dalek::{Signature, Verifier as _};
use otgate_sync::bundle::{canonical_policy, Body, Bundle, Header};
use otgate_sync::{verify, AuthorityKey, TrustRoot, TrustRootFile};
use sha2::{Digest, Sha256};

const ASSETS: usize = 10_000;

/// The sample plant plus a segment and 10,000 Modbus PLCs in it.
pub fn big_policy() -> String {
    let mut source = include_str!("../../policies/examples/plant.toml").to_owned();
    source
        .push_str("\n[[segments]]\nid = \"bulk\"\nzone = \"ot\"\nnetworks = [\"10.64.0.0/16\"]\n");
    for n in 0..ASSETS {
        source.push_str(&format!(
            "\n[[assets]]\nid = \"bulk-plc-{n}\"\nkind = \"plc\"\nsegment = \"bulk\"\naddress = \"10.64.{}.{}:502\"\nprotocol = \"modbus\"\nunit_ids = [1]\ntags = [\"bulk\"]\n",
            n / 250,
            n % 250 + 1
        ));
    }
    source
}

/// This thread's on-CPU time in nanoseconds (Linux `schedstat`), if available.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn write_synced(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).unwrap();
    file.write_all(bytes).unwrap();
    file.sync_all().unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn bench(c: &mut Criterion) {
    let keys: Vec<AuthorityKey> = (1..=3)
        .map(|i| AuthorityKey::from_secret([i; 32], None))
        .collect();
    let root = TrustRoot::new(TrustRootFile {
        format: 1,
        site: "plant-a".into(),
        root_version: 1,
        threshold: 2,
        keys: keys.iter().map(AuthorityKey::public_entry).collect(),
        revoked: vec![],
    })
    .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 15, 0, 0, 0).unwrap();
    let source = big_policy();
    let body = Body {
        header: Header {
            site: "plant-a".into(),
            version: 2,
            issued_at: now,
            not_before: now,
            expires_at: now + TimeDelta::days(30),
            previous_hash: None,
            grace_period_secs: 7 * 86_400,
        },
        policy: canonical_policy(&source, "bench.toml").unwrap(),
        trust_root: None,
    };
    let mut bundle = Bundle::new(body.clone()).unwrap();
    bundle.sign(&keys[0]).unwrap();
    bundle.sign(&keys[2]).unwrap();
    let bytes = bundle.encode();
    let mut format_1 = Bundle::new_format_1(Body {
        policy: source.clone(),
        ..body
    })
    .unwrap();
    format_1.sign(&keys[0]).unwrap();
    format_1.sign(&keys[2]).unwrap();
    let format_1_bytes = format_1.encode();
    let old = verify(&format_1_bytes, &root, None, now, TimeDelta::minutes(5)).unwrap();
    assert_eq!(old.policy().assets.len(), ASSETS + 5);
    let verified = verify(&bytes, &root, None, now, TimeDelta::minutes(5)).unwrap();
    assert_eq!(verified.policy().assets.len(), ASSETS + 5);
    eprintln!(
        "bundle with {} assets: {} bytes (format 1 with TOML: {} bytes)",
        verified.policy().assets.len(),
        bytes.len(),
        format_1_bytes.len()
    );

    // On-CPU time per verify (this thread's run time from the kernel), which load from other
    // processes inflates far less than wall time: printed next to criterion's wall times.
    if let Some(before) = thread_cpu_ns() {
        let rounds = 10;
        for _ in 0..rounds {
            verify(&bytes, &root, None, now, TimeDelta::minutes(5)).unwrap();
        }
        let middle = thread_cpu_ns().unwrap_or(before);
        for _ in 0..rounds {
            verify(&format_1_bytes, &root, None, now, TimeDelta::minutes(5)).unwrap();
        }
        let after = thread_cpu_ns().unwrap_or(middle);
        eprintln!(
            "on-CPU time per verify: {:.1} ms (format 1: {:.1} ms)",
            (middle - before) as f64 / 1e6 / f64::from(rounds),
            (after - middle) as f64 / 1e6 / f64::from(rounds)
        );
    }

    let message = bundle.signing_message();
    let signature = Signature::from_bytes(&bundle.signatures()[0].signature);
    let public = keys[0].verifying_key();
    let dir = tempfile::tempdir().unwrap();

    let mut group = c.benchmark_group("bundle_10k_assets");
    group.sample_size(20);
    group.bench_function("baseline_sha256", |b| b.iter(|| Sha256::digest(&bytes)));
    group.bench_function("baseline_one_ed25519_verify", |b| {
        b.iter(|| public.verify(&message, &signature).unwrap())
    });
    group.bench_function("decode", |b| b.iter(|| Bundle::decode(&bytes).unwrap()));
    let canonical = bundle.body().policy.as_bytes();
    group.bench_function("policy_parse_canonical", |b| {
        b.iter(|| otgate_policy::parse_canonical(canonical, "bench.json").unwrap())
    });
    group.bench_function("json_only", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(canonical).unwrap())
    });
    group.bench_function("policy_parse_toml", |b| {
        b.iter(|| otgate_policy::parse(&source, "bench.toml").unwrap())
    });
    group.bench_function("toml_only", |b| {
        b.iter(|| toml::from_str::<toml::Table>(&source).unwrap())
    });
    group.bench_function("verify_format_1", |b| {
        b.iter(|| verify(&format_1_bytes, &root, None, now, TimeDelta::minutes(5)).unwrap())
    });
    group.bench_function("verify", |b| {
        b.iter(|| verify(&bytes, &root, None, now, TimeDelta::minutes(5)).unwrap())
    });
    group.bench_function("verify_and_activate", |b| {
        b.iter(|| {
            let verified = verify(&bytes, &root, None, now, TimeDelta::minutes(5)).unwrap();
            write_synced(&dir.path().join("bundle.otgb"), &verified.encode());
            write_synced(&dir.path().join("current.json"), b"{\"active\":\"...\"}");
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
