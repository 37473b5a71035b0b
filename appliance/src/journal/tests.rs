//! Tests of the journal's writer and reader on real files in a tempdir.

use std::path::Path;

use super::event::{CheckpointReason, Event, JournalEvent};
use super::read::{list_segments, JournalReader, StoredRecord};
use super::*;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn note(n: u64) -> Event {
    Event::Journal(JournalEvent::StateRebuilt {
        reason: format!("test {n}"),
        moved_aside: None,
        applied_seq: n,
    })
}

fn read_all(dir: &Path) -> Vec<StoredRecord> {
    JournalReader::open(dir)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn kinds(records: &[StoredRecord]) -> Vec<&'static str> {
    records
        .iter()
        .map(|r| event::Subjects::kind(&r.event))
        .collect()
}

#[tokio::test]
async fn appends_are_read_back_in_order_with_their_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), key(), JournalConfig::default()).unwrap();
    let a = journal.append(note(1)).await.unwrap();
    let j = journal.clone();
    let b = tokio::task::spawn_blocking(move || j.append_blocking(note(2)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.seq(), b.seq()), (3, 4), "1 is `created`, 2 is `opened`");
    assert_eq!(journal.head().seq, 4);
    drop(journal);
    let records = read_all(dir.path());
    assert_eq!(
        kinds(&records),
        [
            "created",
            "opened",
            "state_rebuilt",
            "state_rebuilt",
            "checkpoint"
        ]
    );
    assert_eq!(records[2].hash, a.hash());
    assert_eq!(records[3].prev_hash, a.hash());
    assert_eq!(records[0].prev_hash, [0; 32]);
    assert!(records
        .windows(2)
        .all(|w| w[1].prev_hash == w[0].hash && w[1].seq == w[0].seq + 1));
}

#[tokio::test]
async fn concurrent_appenders_get_distinct_contiguous_durable_records() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), key(), JournalConfig::default()).unwrap();
    let mut tasks = Vec::new();
    for w in 0..32u64 {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..20 {
                seqs.push(journal.append(note(w * 100 + i)).await.unwrap().seq());
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 640);
    drop(journal);
    let records = read_all(dir.path());
    for seq in seqs {
        assert!(records.iter().any(|r| r.seq == seq
            && matches!(r.event, Event::Journal(JournalEvent::StateRebuilt { .. }))));
    }
}

#[tokio::test]
async fn reopening_continues_the_chain_and_a_second_writer_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), key(), JournalConfig::default()).unwrap();
    journal.append(note(1)).await.unwrap();
    assert!(matches!(
        Journal::open(dir.path(), key(), JournalConfig::default()),
        Err(JournalError::Locked { .. })
    ));
    drop(journal);
    let journal = Journal::open(dir.path(), key(), JournalConfig::default()).unwrap();
    let r = journal.append(note(2)).await.unwrap();
    drop(journal);
    let records = read_all(dir.path());
    assert_eq!(
        kinds(&records),
        [
            "created",
            "opened",
            "state_rebuilt",
            "checkpoint",
            "opened",
            "state_rebuilt",
            "checkpoint"
        ]
    );
    assert!(matches!(
        records[4].event,
        Event::Journal(JournalEvent::Opened { head_seq: 4, .. })
    ));
    assert_eq!(r.seq(), 6);
    assert!(records.windows(2).all(|w| w[1].prev_hash == w[0].hash));
}

/// Where a segment's records end (its zero fill begins).
fn records_end(segment: &Path) -> usize {
    let bytes = std::fs::read(segment).unwrap();
    let mut offset = record::SEGMENT_HEADER_LEN;
    while !record::at_end(&bytes[offset..]) {
        offset += record::decode(&bytes[offset..]).unwrap().frame_len;
    }
    offset
}

#[test]
fn a_torn_tail_is_cut_kept_aside_and_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), key(), JournalConfig::default()).unwrap();
    journal.append_blocking(note(1)).unwrap();
    drop(journal);
    let (_, segment) = list_segments(dir.path()).unwrap().pop().unwrap();
    let good_len = records_end(&segment);
    let size = std::fs::metadata(&segment).unwrap().len();
    // Half a record over the zero fill, as a crash during a write would leave.
    let mut half = Vec::new();
    record::encode(
        &mut half,
        record::RecordType::Event,
        5,
        0,
        0,
        &[0; 32],
        b"{}",
    );
    half.truncate(half.len() / 2);
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[good_len..good_len + half.len()].copy_from_slice(&half);
    std::fs::write(&segment, &bytes).unwrap();
    // A reader stops quietly at a torn last frame.
    assert_eq!(read_all(dir.path()).len(), 4);

    let journal = Journal::open(dir.path(), key(), JournalConfig::default()).unwrap();
    drop(journal);
    let records = read_all(dir.path());
    let cut = records.iter().find_map(|r| match &r.event {
        Event::Journal(JournalEvent::TailCut {
            offset,
            bytes,
            saved_as,
            ..
        }) => Some((*offset, *bytes, saved_as.clone())),
        _ => None,
    });
    let (offset, cut_bytes, saved_as) = cut.expect("a tail_cut record");
    // What is cut ends at the last non-zero byte: the rest is the fill.
    let written = record::nonzero_len(&half);
    assert_eq!((offset, cut_bytes), (good_len as u64, written as u64));
    assert_eq!(
        std::fs::read(dir.path().join("torn").join(saved_as)).unwrap(),
        &half[..written]
    );
    assert!(records
        .windows(2)
        .all(|w| w[1].prev_hash == w[0].hash && w[1].seq == w[0].seq + 1));
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        size,
        "the cut zeroes, it keeps the preallocated size"
    );
    super::verify::verify(dir.path(), &key().verifying_key()).unwrap();
}

#[test]
fn bytes_after_the_zero_fill_are_cut_on_open() {
    // A crash can persist a later page of a batch but not an earlier one: the records end at a
    // zero prefix, yet non-zero bytes follow. They were never acknowledged; they are cut.
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), key(), JournalConfig::default()).unwrap();
    journal.append_blocking(note(1)).unwrap();
    drop(journal);
    let (_, segment) = list_segments(dir.path()).unwrap().pop().unwrap();
    let good_len = records_end(&segment);
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[good_len + 5000..good_len + 5010].copy_from_slice(&[0xAB; 10]);
    std::fs::write(&segment, &bytes).unwrap();
    assert!(matches!(
        super::verify::verify(dir.path(), &key().verifying_key())
            .unwrap_err()
            .damage,
        super::verify::Damage::Altered { .. }
    ));
    let journal = Journal::open(dir.path(), key(), JournalConfig::default()).unwrap();
    drop(journal);
    let cut = read_all(dir.path())
        .into_iter()
        .find_map(|r| match r.event {
            Event::Journal(JournalEvent::TailCut { offset, bytes, .. }) => Some((offset, bytes)),
            _ => None,
        });
    assert_eq!(cut, Some((good_len as u64, 5010)));
    super::verify::verify(dir.path(), &key().verifying_key()).unwrap();
}

#[test]
fn the_open_segment_is_preallocated_and_appends_keep_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), key(), JournalConfig::default()).unwrap();
    journal.append_blocking(note(0)).unwrap();
    let (_, segment) = list_segments(dir.path()).unwrap().pop().unwrap();
    let size = std::fs::metadata(&segment).unwrap().len();
    assert!(size >= writer::MIN_PREALLOC, "{size}");
    for i in 1..20 {
        journal.append_blocking(note(i)).unwrap();
    }
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), size);
    assert!(records_end(&segment) < size as usize);
    // Past the first chunk, the fill grows ahead of the records, in the batch's own sync.
    let big = Event::Journal(JournalEvent::Note {
        actor: None,
        text: "x".repeat(30_000),
    });
    for _ in 0..4 {
        journal.append_blocking(big.clone()).unwrap();
    }
    let grown = std::fs::metadata(&segment).unwrap().len();
    assert!(grown > size && records_end(&segment) < grown as usize);
    assert_eq!(read_all(dir.path()).len(), 2 + 20 + 4);
    // A follower reads exactly the records, not the fill.
    let mut tail = read::JournalTail::new(dir.path(), 1);
    assert_eq!(tail.read_up_to(u64::MAX).unwrap().len(), 2 + 20 + 4);
    assert!(tail.read_up_to(u64::MAX).unwrap().is_empty());
    journal.append_blocking(note(99)).unwrap();
    assert_eq!(tail.read_up_to(u64::MAX).unwrap().len(), 1);
}

#[test]
fn a_clean_close_signs_the_head_and_an_unclean_stop_is_journaled_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), key(), JournalConfig::default()).unwrap();
    journal.append_blocking(note(1)).unwrap();
    drop(journal);
    let marker = head::read(dir.path()).unwrap().expect("a head marker");
    let last = read_all(dir.path()).pop().unwrap();
    assert!(last.is_checkpoint());
    assert_eq!((marker.checkpoint_seq, marker.clean), (last.seq, true));
    assert_eq!(marker.checkpoint_hash, last.hash);
    assert!(marker.is_signed_by(&key().verifying_key()));

    // Reopened after the clean close: not unclean.
    let journal = Journal::open(dir.path(), key(), JournalConfig::default()).unwrap();
    journal.append_blocking(note(2)).unwrap();
    let opened = |records: &[StoredRecord]| -> (bool, Option<u64>) {
        records
            .iter()
            .rev()
            .find_map(|r| match r.event {
                Event::Journal(JournalEvent::Opened {
                    unclean_stop,
                    signed_head_seq,
                    ..
                }) => Some((unclean_stop, signed_head_seq)),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(opened(&read_all(dir.path())), (false, Some(last.seq)));
    // A crash: the writer never closes (no shutdown checkpoint, the marker stays behind).
    std::mem::forget(journal);
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.file_name().unwrap() != "LOCK" {
            std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let journal = Journal::open(copy.path(), key(), JournalConfig::default()).unwrap();
    drop(journal);
    assert_eq!(opened(&read_all(copy.path())), (true, Some(last.seq)));
    super::verify::verify(copy.path(), &key().verifying_key()).unwrap();
}

#[test]
fn segments_rotate_and_each_closes_with_a_signed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        segment_bytes: 2_000,
        max_batch: 1,
        ..JournalConfig::default()
    };
    let journal = Journal::open(dir.path(), key(), config).unwrap();
    for i in 0..60 {
        journal.append_blocking(note(i)).unwrap();
    }
    drop(journal);
    let segments = list_segments(dir.path()).unwrap();
    assert!(segments.len() > 3, "{} segments", segments.len());
    let records = read_all(dir.path());
    assert_eq!(records.len(), 60 + 2 + segments.len()); // created, opened, one checkpoint per segment
    for (i, (first, _)) in segments.iter().enumerate().skip(1) {
        let closing = records.iter().find(|r| r.seq == first - 1).unwrap();
        assert!(
            matches!(
                closing.event,
                Event::Journal(JournalEvent::Checkpoint {
                    reason: CheckpointReason::SegmentClose,
                    ..
                })
            ),
            "segment {i} does not close with a checkpoint"
        );
    }
    for r in records.iter().filter(|r| r.is_checkpoint()) {
        let Event::Journal(JournalEvent::Checkpoint {
            covers_seq,
            head_hash,
            signature,
            ..
        }) = &r.event
        else {
            unreachable!()
        };
        assert_eq!(*covers_seq, r.seq - 1);
        assert_eq!(hex::decode(head_hash).unwrap(), r.prev_hash);
        let sig = ed25519_dalek::Signature::from_slice(&hex::decode(signature).unwrap()).unwrap();
        key()
            .verifying_key()
            .verify_strict(&record::checkpoint_message(*covers_seq, &r.prev_hash), &sig)
            .unwrap();
    }
    // Reading from a seq skips earlier segments.
    let from: Vec<_> = JournalReader::from_seq(dir.path(), 40)
        .unwrap()
        .map(|r| r.unwrap().seq)
        .collect();
    assert_eq!(from.first(), Some(&40));
    assert_eq!(from.last(), records.last().map(|r| r.seq).as_ref());
}

#[test]
fn a_checkpoint_is_written_every_n_records() {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        checkpoint_every_records: 5,
        max_batch: 1,
        ..JournalConfig::default()
    };
    let journal = Journal::open(dir.path(), key(), config).unwrap();
    for i in 0..13 {
        journal.append_blocking(note(i)).unwrap();
    }
    let records = read_all(dir.path());
    let checkpoints: Vec<u64> = records
        .iter()
        .filter(|r| r.is_checkpoint())
        .map(|r| r.seq)
        .collect();
    assert_eq!(
        checkpoints,
        [6, 12, 18],
        "created, opened and 3 notes, then 5 notes each"
    );
}

#[test]
fn the_budget_refuses_normal_appends_and_keeps_a_reserve() {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        budget_bytes: 3_000,
        reserve_bytes: 1_000,
        ..JournalConfig::default()
    };
    let journal = Journal::open(dir.path(), key(), config).unwrap();
    let mut normal = 0;
    let refusal = loop {
        match journal.append_blocking(note(normal)) {
            Ok(_) => normal += 1,
            Err(e) => break e,
        }
        assert!(normal < 100);
    };
    assert!(
        matches!(
            refusal,
            JournalError::BudgetExhausted {
                budget: 3_000,
                reserve: 1_000,
                ..
            }
        ),
        "{refusal}"
    );
    // Still refused; reserved appends go through until the reserve is used up too.
    assert!(matches!(
        journal.append_blocking(note(0)),
        Err(JournalError::BudgetExhausted { .. })
    ));
    let mut reserved = 0;
    let refusal = loop {
        match journal.append_reserved_blocking(note(reserved)) {
            Ok(_) => reserved += 1,
            Err(e) => break e,
        }
        assert!(reserved < 100);
    };
    assert!(reserved >= 3, "{reserved} reserved appends");
    assert!(
        matches!(refusal, JournalError::ReserveExhausted { .. }),
        "{refusal}"
    );
    let records = read_all(dir.path());
    let lows = records
        .iter()
        .filter(|r| matches!(r.event, Event::Journal(JournalEvent::BudgetLow { .. })))
        .count();
    assert_eq!(lows, 1, "the budget warning is journaled once");
    assert!(journal.head().used_bytes <= 3_000);
}

#[test]
fn internal_events_cannot_be_appended_from_outside() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), key(), JournalConfig::default()).unwrap();
    let forged = Event::Journal(JournalEvent::Checkpoint {
        covers_seq: 1,
        head_hash: String::new(),
        key_id: String::new(),
        signature: String::new(),
        reason: CheckpointReason::Periodic,
    });
    assert!(matches!(
        journal.append_blocking(forged),
        Err(JournalError::Internal { kind: "checkpoint" })
    ));
}

#[test]
fn open_for_tests_makes_keys_in_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open_for_tests(dir.path()).unwrap();
    journal.append_blocking(note(1)).unwrap();
    assert!(dir.path().join("appliance.key").exists());
    assert!(dir.path().join("appliance.pub").exists());
    assert!(dir.path().join("journal").join("LOCK").exists());
}

#[test]
fn a_segment_with_a_damaged_header_is_moved_aside_and_the_journal_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        segment_bytes: 1_500,
        max_batch: 1,
        ..JournalConfig::default()
    };
    let journal = Journal::open(dir.path(), key(), config.clone()).unwrap();
    for i in 0..20 {
        journal.append_blocking(note(i)).unwrap();
    }
    drop(journal);
    let (first, last) = list_segments(dir.path()).unwrap().pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes[..8].copy_from_slice(b"GARBAGE!");
    std::fs::write(&last, &bytes).unwrap();

    let journal = Journal::open(dir.path(), key(), config).unwrap();
    let recorded = journal.append_blocking(note(99)).unwrap();
    drop(journal);
    assert!(dir
        .path()
        .join("torn")
        .join(format!("{}-header.bin", record::segment_name(first)))
        .exists());
    let records = read_all(dir.path());
    let cut = records.iter().find(|r| {
        matches!(
            r.event,
            Event::Journal(JournalEvent::TailCut { offset: 0, .. })
        )
    });
    assert!(cut.is_some(), "the move is journaled");
    assert_eq!(
        cut.unwrap().seq,
        first,
        "the journal continues from the last good segment"
    );
    assert!(recorded.seq() > first);
    // The records of the moved segment are gone from the chain, and verify says so: the open
    // found the journal shorter than its signed head.
    match super::verify::verify(dir.path(), &key().verifying_key())
        .unwrap_err()
        .damage
    {
        super::verify::Damage::CutBeforeOpen {
            journal_ended,
            signed_head,
            ..
        } => assert!(journal_ended + 1 == first && signed_head >= first),
        other => panic!("{other}"),
    }
}
