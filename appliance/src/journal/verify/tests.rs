//! Tamper tests: each kind of damage is built on real segment files and must be reported as
//! exactly that damage, at exactly that record.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

use super::*;
use crate::journal::event::Event;
use crate::journal::{Journal, JournalConfig};

fn note(n: u64) -> Event {
    Event::Journal(JournalEvent::StateRebuilt {
        reason: format!("note {n}"),
        moved_aside: None,
        applied_seq: n,
    })
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// A journal of 2 opening records and `n` notes, in segments of about 3000 bytes.
fn journal(dir: &Path, seed: u8, n: u64) {
    let config = JournalConfig {
        segment_bytes: 3_000,
        max_batch: 1,
        ..JournalConfig::default()
    };
    let journal = Journal::open(dir, key(seed), config).unwrap();
    for i in 0..n {
        journal.append_blocking(note(i)).unwrap();
    }
}

/// (offset, len, seq) of every frame in a segment.
fn frames(path: &Path) -> Vec<(usize, usize, u64)> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut offset = SEGMENT_HEADER_LEN;
    while !record::at_end(&bytes[offset..]) {
        let raw = record::decode(&bytes[offset..]).unwrap();
        out.push((offset, raw.frame_len, raw.seq));
        offset += raw.frame_len;
    }
    out
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// The segment holding `seq` and the frame's (offset, len).
fn find(dir: &Path, seq: u64) -> (PathBuf, usize, usize) {
    for path in segments(dir) {
        if let Some((o, l, _)) = frames(&path).into_iter().find(|f| f.2 == seq) {
            return (path, o, l);
        }
    }
    panic!("seq {seq} not found");
}

fn damage(dir: &Path) -> Damage {
    verify(dir, &key(1).verifying_key()).unwrap_err().damage
}

#[test]
fn an_intact_journal_verifies_with_count_and_head() {
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path(), 1, 40);
    let verified = verify(dir.path(), &key(1).verifying_key()).unwrap();
    let records: Vec<_> = crate::journal::read::JournalReader::open(dir.path())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(verified.records, records.len() as u64);
    assert_eq!(verified.head_seq, records.last().unwrap().seq);
    assert_eq!(verified.head_hash, records.last().unwrap().hash);
    assert_eq!(verified.segments, segments(dir.path()).len());
    assert!(verified.segments > 2);
    assert_eq!(
        verified.unsigned_tail, 0,
        "the clean close wrote a checkpoint"
    );
    assert_eq!(verified.last_checkpoint_seq, verified.head_seq);
}

#[test]
fn a_flipped_byte_is_reported_at_its_record() {
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path(), 1, 40);
    let (path, offset, len) = find(dir.path(), 20);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset + len - 40] ^= 1; // inside the payload
    std::fs::write(&path, bytes).unwrap();
    match damage(dir.path()) {
        Damage::Altered {
            seq: 20,
            at,
            detail,
        } => {
            assert_eq!(at.offset, offset as u64);
            assert!(detail.contains("checksum"), "{detail}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_consistently_rewritten_record_breaks_the_chain_at_the_next() {
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path(), 1, 40);
    let (path, offset, len) = find(dir.path(), 20);
    let mut bytes = std::fs::read(&path).unwrap();
    let raw = record::decode(&bytes[offset..]).unwrap();
    let payload = String::from_utf8(raw.payload.to_vec())
        .unwrap()
        .replace("note ", "nota ");
    assert_ne!(payload.as_bytes(), raw.payload);
    let mut forged = Vec::new();
    record::encode(
        &mut forged,
        RecordType::Event,
        20,
        raw.wall_nanos,
        raw.mono_ns,
        &raw.prev_hash,
        payload.as_bytes(),
    );
    assert_eq!(forged.len(), len);
    bytes[offset..offset + len].copy_from_slice(&forged);
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(
        damage(dir.path()),
        Damage::ChainBroken {
            seq: 21,
            prev: 20,
            ..
        }
    ));
}

#[test]
fn a_deleted_record_is_reported_as_removed() {
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path(), 1, 40);
    let (path, offset, len) = find(dir.path(), 20);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.drain(offset..offset + len);
    std::fs::write(&path, bytes).unwrap();
    match damage(dir.path()) {
        Damage::Removed {
            first: 20,
            last: 20,
            found: 21,
            after: 19,
            ..
        } => {}
        other => panic!("{other}"),
    }
}

#[test]
fn swapped_records_are_reported_as_reordered() {
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path(), 1, 40);
    let (path, offset, len) = find(dir.path(), 20);
    let (path2, offset2, len2) = find(dir.path(), 21);
    assert_eq!(path, path2);
    let bytes = std::fs::read(&path).unwrap();
    let mut swapped = bytes[..offset].to_vec();
    swapped.extend_from_slice(&bytes[offset2..offset2 + len2]);
    swapped.extend_from_slice(&bytes[offset..offset + len]);
    swapped.extend_from_slice(&bytes[offset2 + len2..]);
    std::fs::write(&path, swapped).unwrap();
    match damage(dir.path()) {
        Damage::Reordered {
            expected: 20,
            found: 21,
            at,
        } => assert_eq!(at.offset, offset as u64),
        other => panic!("{other}"),
    }
}

#[test]
fn a_truncated_segment_is_reported() {
    // Inside a record of a closed segment.
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path(), 1, 40);
    let first = &segments(dir.path())[0];
    let frames0 = frames(first);
    let (offset, _, seq) = frames0[frames0.len() - 3];
    std::fs::OpenOptions::new()
        .write(true)
        .open(first)
        .unwrap()
        .set_len(offset as u64 + 10)
        .unwrap();
    match damage(dir.path()) {
        Damage::Truncated {
            after_seq,
            offset: at,
            ..
        } => assert_eq!((after_seq, at), (seq - 1, offset as u64)),
        other => panic!("{other}"),
    }

    // At a record boundary: the closing checkpoint is gone, then the next segment does not follow.
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path(), 1, 40);
    let first = &segments(dir.path())[0];
    let frames0 = frames(first);
    let (offset, _, seq) = frames0[frames0.len() - 2];
    std::fs::OpenOptions::new()
        .write(true)
        .open(first)
        .unwrap()
        .set_len(offset as u64)
        .unwrap();
    match damage(dir.path()) {
        Damage::Truncated {
            after_seq, detail, ..
        } => {
            assert_eq!(after_seq, seq - 1);
            assert!(detail.contains("checkpoint"), "{detail}");
        }
        other => panic!("{other}"),
    }

    // The last segment, inside a record.
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path(), 1, 40);
    let last = segments(dir.path()).pop().unwrap();
    let (offset, _, seq) = *frames(&last).last().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(offset as u64 + 5)
        .unwrap();
    assert!(
        matches!(damage(dir.path()), Damage::Truncated { after_seq, .. } if after_seq == seq - 1)
    );
}

#[test]
fn a_deleted_segment_is_reported_as_removed_records() {
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path(), 1, 40);
    let all = segments(dir.path());
    let second = frames(&all[1]);
    std::fs::remove_file(&all[1]).unwrap();
    match damage(dir.path()) {
        Damage::Removed { first, last, .. } => {
            assert_eq!((first, last), (second[0].2, second.last().unwrap().2))
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_segment_replaced_by_one_signed_with_another_key_is_reported() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    journal(ours.path(), 1, 40);
    journal(theirs.path(), 2, 40);
    let first = &segments(ours.path())[0];
    std::fs::copy(&segments(theirs.path())[0], first).unwrap();
    match damage(ours.path()) {
        Damage::BadSignature {
            key_id,
            expected_key_id,
            ..
        } => {
            assert_eq!(key_id, record::key_id(&key(2).verifying_key()));
            assert_eq!(expected_key_id, record::key_id(&key(1).verifying_key()));
        }
        other => panic!("{other}"),
    }
    // And verifying with the wrong public key fails on the first checkpoint.
    let fresh = tempfile::tempdir().unwrap();
    journal(fresh.path(), 1, 5);
    assert!(matches!(
        verify(fresh.path(), &key(3).verifying_key())
            .unwrap_err()
            .damage,
        Damage::BadSignature { .. }
    ));
}

#[test]
fn records_after_the_last_checkpoint_are_counted_as_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        segment_bytes: 3_000,
        ..JournalConfig::default()
    };
    let journal = Journal::open(dir.path(), key(1), config).unwrap();
    for i in 0..3 {
        journal.append_blocking(note(i)).unwrap();
    }
    // A crash: no shutdown checkpoint, no signed head yet.
    std::mem::forget(journal);
    let verified = verify(dir.path(), &key(1).verifying_key()).unwrap();
    assert_eq!(verified.unsigned_tail, 5);
    assert_eq!(verified.checkpoints, 0);
    assert_eq!(verified.signed_head_seq, None);
}

/// Cut the last segment so that it ends just before record `seq`.
fn cut_before(dir: &Path, seq: u64) {
    let (path, offset, _) = find(dir, seq);
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(offset as u64)
        .unwrap();
}

#[test]
fn records_cut_after_the_last_checkpoint_are_reported_against_the_signed_head() {
    // 2 opening records and 3 notes; the clean close adds checkpoint seq 6 and signs the head.
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path(), 1, 3);
    let verified = verify(dir.path(), &key(1).verifying_key()).unwrap();
    assert_eq!(
        (verified.signed_head_seq, verified.signed_head_clean),
        (Some(6), Some(true))
    );
    // Drop the closing checkpoint: the chain alone still verifies, the signed head does not.
    cut_before(dir.path(), 6);
    let failure = verify(dir.path(), &key(1).verifying_key()).unwrap_err();
    assert_eq!(
        failure.damage,
        Damage::CutAfterSignedHead {
            journal_ends: 5,
            signed_head: 6
        }
    );
    assert_eq!(
        failure.damage.to_string(),
        "the journal ends at seq 5 but the last signed head says 6: records 6..=6 were cut from the end"
    );
    assert_eq!(failure.verified.head_seq, 5);
    cut_before(dir.path(), 3);
    assert_eq!(
        damage(dir.path()),
        Damage::CutAfterSignedHead {
            journal_ends: 2,
            signed_head: 6
        }
    );

    // The appliance opens the cut journal (it must, for break-glass) and writes on: the open
    // records what it found, and verify keeps reporting the cut after the head moved on.
    let journal = Journal::open(dir.path(), key(1), JournalConfig::default()).unwrap();
    journal.append_blocking(note(9)).unwrap();
    drop(journal);
    match damage(dir.path()) {
        Damage::CutBeforeOpen {
            opened_seq: 3,
            journal_ended: 2,
            signed_head: 6,
        } => {}
        other => panic!("{other}"),
    }
}

#[test]
fn a_head_marker_from_another_key_or_naming_another_record_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path(), 1, 3);
    let marker = crate::journal::head::read(dir.path()).unwrap().unwrap();
    let forged = crate::journal::head::HeadMarker::sign(
        &key(2),
        marker.checkpoint_seq,
        marker.checkpoint_hash,
        true,
    );
    let mut writer = crate::journal::head::HeadWriter::open(dir.path()).unwrap();
    writer.write(&forged).unwrap();
    writer.write(&forged).unwrap();
    assert!(matches!(damage(dir.path()), Damage::HeadMarker { .. }));
    // Signed by the right key, but naming a record that is not that checkpoint.
    let wrong = crate::journal::head::HeadMarker::sign(&key(1), 4, [7; 32], true);
    writer.write(&wrong).unwrap();
    writer.write(&wrong).unwrap();
    match damage(dir.path()) {
        Damage::HeadMarker { detail, .. } => assert!(detail.contains("seq 4"), "{detail}"),
        other => panic!("{other}"),
    }
}
