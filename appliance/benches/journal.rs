//! Journal benchmarks: durable appends per second with 1, 8 and 64 concurrent writers (group
//! commit), against a same-run baseline of one `write` + `sync_data` per record of the same
//! bytes (appended, and overwritten in a preallocated file: the floor of one durable record);
//! and verification speed in records per second, against SHA-256 over the same bytes.
//!
//! Run: `cargo bench -p otgate --bench journal -- --warm-up-time 1 --measurement-time 3`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ed25519_dalek::SigningKey;
use otgate::journal::event::{Event, JournalEvent};
use otgate::journal::{verify, Journal, JournalConfig};
use sha2::{Digest, Sha256};

/// A typical small decision record.
fn event(writer: usize, i: u64) -> Event {
    Event::Journal(JournalEvent::Note {
        actor: Some(format!("writer-{writer}")),
        text: format!(
            "write holding registers 100-109 on line3-plc, grant g-{i}, session s-{writer}"
        ),
    })
}

fn bench_dir() -> tempfile::TempDir {
    // On the real disk (target/), not a tmpfs, so that sync_data costs what it costs.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("journal_append");
    group.sample_size(10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Baseline: what one durable write per record costs on this disk, without group commit.
    let record_len = {
        let payload = serde_json::to_vec(&event(0, 0)).unwrap();
        otgate::journal::record::frame_len(payload.len())
    };
    group.throughput(Throughput::Elements(1));
    group.bench_function("baseline_write_sync_data_per_record", |b| {
        let dir = bench_dir();
        let mut file = std::fs::File::create(dir.path().join("baseline")).unwrap();
        let bytes = vec![0x5a; record_len];
        b.iter(|| {
            file.write_all(&bytes).unwrap();
            file.sync_data().unwrap();
        })
    });

    // The floor of one durable record: overwriting already-allocated, already-written blocks
    // (what preallocated segments make most batches), one `write` + `sync_data` per record.
    group.bench_function("baseline_overwrite_sync_data_per_record", |b| {
        let dir = bench_dir();
        let mut file = std::fs::File::create(dir.path().join("baseline")).unwrap();
        let span = 8 << 20;
        file.write_all(&vec![0; span]).unwrap();
        file.sync_all().unwrap();
        let bytes = vec![0x5a; record_len];
        let mut at = 0u64;
        b.iter(|| {
            use std::os::unix::fs::FileExt;
            file.write_all_at(&bytes, at).unwrap();
            file.sync_data().unwrap();
            at = (at + record_len as u64) % (span - record_len) as u64;
        })
    });

    for writers in [1usize, 8, 64] {
        group.throughput(Throughput::Elements(writers as u64));
        group.bench_with_input(
            BenchmarkId::new("durable_appends", writers),
            &writers,
            |b, &writers| {
                let dir = bench_dir();
                let journal = Journal::open(
                    dir.path(),
                    SigningKey::from_bytes(&[9; 32]),
                    JournalConfig::default(),
                )
                .unwrap();
                // One iteration: every writer appends one record and waits for its receipt.
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    runtime.block_on(async {
                        let mut tasks = Vec::with_capacity(writers);
                        for w in 0..writers {
                            let journal = journal.clone();
                            tasks.push(tokio::spawn(async move {
                                for i in 0..iters {
                                    journal.append(event(w, i)).await.unwrap();
                                }
                            }));
                        }
                        for task in tasks {
                            task.await.unwrap();
                        }
                    });
                    start.elapsed()
                });
            },
        );
    }
    group.finish();
}

fn verification(c: &mut Criterion) {
    let mut group = c.benchmark_group("journal_verify");
    group.sample_size(10);
    const RECORDS: u64 = 100_000;
    let dir = bench_dir();
    let key = SigningKey::from_bytes(&[9; 32]);
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let journal = Journal::open(dir.path(), key.clone(), JournalConfig::default()).unwrap();
        runtime.block_on(async {
            let mut tasks = Vec::new();
            for w in 0..64 {
                let journal = journal.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..RECORDS / 64 {
                        journal.append(event(w, i)).await.unwrap();
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
        });
    }
    let records = verify::verify(dir.path(), &key.verifying_key())
        .unwrap()
        .records;
    let segments: Vec<Vec<u8>> = otgate::journal::read::list_segments(dir.path())
        .unwrap()
        .into_iter()
        .map(|(_, path)| std::fs::read(path).unwrap())
        .collect();
    let bytes: usize = segments.iter().map(Vec::len).sum();
    eprintln!("journal_verify: {records} records, {bytes} bytes");
    group.throughput(Throughput::Elements(records));
    group.bench_function("baseline_sha256_of_the_same_bytes", |b| {
        b.iter(|| {
            let mut hasher = Sha256::new();
            for segment in &segments {
                hasher.update(segment);
            }
            hasher.finalize()
        })
    });
    group.bench_function("verify", |b| {
        b.iter(|| verify::verify(dir.path(), &key.verifying_key()).unwrap());
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = appends, verification
}
criterion_main!(benches);
