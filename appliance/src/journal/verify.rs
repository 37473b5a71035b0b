//! Verifying the journal: walk every segment, every frame, the hash chain and every checkpoint
//! signature, and report either an intact journal (record count, head hash) or the first
//! damage found, precisely: which record (seq), which segment and byte, and what kind of
//! damage (altered, removed, reordered, truncated, signed by another key).
//!
//! It needs only the appliance's public key and never writes. It does not parse event
//! payloads (their hash covers them); `otgate audit show` does.
//!
//! What it can and cannot prove: every record up to the last checkpoint is proven by the
//! appliance's signature; records after it are chained but unsigned (an attacker able to write
//! the files could rewrite or drop them consistently), so the report says how many there are.
//! Cutting records from the end, checkpoints included, is caught by the signed head marker
//! (`journal/HEAD`, see [`super::head`]): the journal must reach the checkpoint it names, and
//! every `journal.opened` record must not name a signed head beyond the journal it found. A
//! missing marker is reported (`signed_head_seq: None`), not counted as damage: journals copied
//! without it still verify as far as their checkpoints go.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, VerifyingKey};
use serde::Serialize;

use super::event::{Event, JournalEvent};
use super::head::{self, HeadMarker};
use super::read::list_segments;
use super::record::{self, FrameError, RecordType, GENESIS_HASH, HASH_LEN, SEGMENT_HEADER_LEN};

/// What a verification established.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// Records verified.
    pub records: u64,
    /// Segments walked.
    pub segments: usize,
    /// The last verified record's seq (0 if none).
    pub head_seq: u64,
    /// Its hash.
    #[serde(with = "super::hex_hash")]
    pub head_hash: [u8; HASH_LEN],
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
    /// The seq of the last verified checkpoint (0 if none).
    pub last_checkpoint_seq: u64,
    /// Records after the last checkpoint (chained but not yet signed).
    pub unsigned_tail: u64,
    /// The key id the checkpoints were verified against.
    pub key_id: String,
    /// The checkpoint named by the signed head marker, if there is one.
    pub signed_head_seq: Option<u64>,
    /// Whether that marker says the writer closed cleanly there.
    pub signed_head_clean: Option<bool>,
}

/// Where in the files a damage is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The segment file name.
    pub segment: String,
    /// Byte offset of the record within it.
    pub offset: u64,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "segment {} byte {}", self.segment, self.offset)
    }
}

/// The first damage found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "damage", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Damage {
    /// A record's bytes were changed (checksum or hash mismatch, or an impossible frame).
    #[error("record seq {seq} was altered ({at}): {detail}")]
    Altered {
        /// The record (the seq expected at this position).
        seq: u64,
        /// Where.
        at: Location,
        /// What does not match.
        detail: String,
    },
    /// A record's content was rewritten consistently, so only the chain shows it.
    #[error("record seq {seq} or the one before it was rewritten ({at}): seq {seq} names a previous hash that is not seq {prev}'s")]
    ChainBroken {
        /// The record whose `prev_hash` does not match.
        seq: u64,
        /// The record before it.
        prev: u64,
        /// Where.
        at: Location,
    },
    /// Records are missing.
    #[error(
        "records seq {first}..={last} were removed ({at}: found seq {found} after seq {after})"
    )]
    Removed {
        /// The first missing seq.
        first: u64,
        /// The last missing seq.
        last: u64,
        /// The seq found instead.
        found: u64,
        /// The last good seq.
        after: u64,
        /// Where.
        at: Location,
    },
    /// Records are out of order.
    #[error("records are out of order ({at}): expected seq {expected}, found seq {found}")]
    Reordered {
        /// The seq expected here.
        expected: u64,
        /// The seq found.
        found: u64,
        /// Where.
        at: Location,
    },
    /// A segment ends early: inside a record, or (for a segment before the last) without its
    /// closing checkpoint.
    #[error("segment {segment} is truncated after seq {after_seq}: {detail}")]
    Truncated {
        /// The segment file name.
        segment: String,
        /// The last good seq.
        after_seq: u64,
        /// Byte offset where it ends or breaks off.
        offset: u64,
        /// How.
        detail: String,
    },
    /// A checkpoint's signature does not verify with the appliance key.
    #[error("checkpoint seq {seq} ({at}) is not signed by the appliance key {expected_key_id} (it names key {key_id}); the segment may have been replaced")]
    BadSignature {
        /// The checkpoint record.
        seq: u64,
        /// The key id it names.
        key_id: String,
        /// The appliance key's id.
        expected_key_id: String,
        /// Where.
        at: Location,
    },
    /// A checkpoint does not describe the records before it.
    #[error("checkpoint seq {seq} ({at}) does not match the chain: {detail}")]
    CheckpointMismatch {
        /// The checkpoint record.
        seq: u64,
        /// Where.
        at: Location,
        /// What does not match.
        detail: String,
    },
    /// A segment file's name or header is wrong.
    #[error("segment {segment}: {detail}")]
    Segment {
        /// The segment file name.
        segment: String,
        /// What is wrong.
        detail: String,
    },
    /// The journal is shorter than its signed head marker says: records were cut from its end.
    #[error("the journal ends at seq {journal_ends} but the last signed head says {signed_head}: records {}..={signed_head} were cut from the end", journal_ends + 1)]
    CutAfterSignedHead {
        /// The last record present.
        journal_ends: u64,
        /// The checkpoint seq the signed head marker names.
        signed_head: u64,
    },
    /// At an earlier open the journal was shorter than its signed head marker said: records
    /// were cut while the appliance was down (and the journal has grown again since).
    #[error("when the journal was opened (record seq {opened_seq}) it ended at seq {journal_ended} but the last signed head said {signed_head}: records {}..={signed_head} had been cut from the end", journal_ended + 1)]
    CutBeforeOpen {
        /// The `journal.opened` record that saw it.
        opened_seq: u64,
        /// Where the journal ended then.
        journal_ended: u64,
        /// The checkpoint seq the signed head marker named then.
        signed_head: u64,
    },
    /// The signed head marker does not match the journal, or is not signed by the appliance key.
    #[error("the signed head marker ({}) {detail}", path.display())]
    HeadMarker {
        /// The marker file.
        path: PathBuf,
        /// What does not match.
        detail: String,
    },
    /// A file could not be read.
    #[error("cannot read {}: {reason}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
}

impl Damage {
    /// The record seq the damage is at or right after, for messages and exit reports.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Damage::Altered { seq, .. }
            | Damage::ChainBroken { seq, .. }
            | Damage::BadSignature { seq, .. }
            | Damage::CheckpointMismatch { seq, .. } => Some(*seq),
            Damage::Removed { first, .. } => Some(*first),
            Damage::Reordered { expected, .. } => Some(*expected),
            Damage::Truncated { after_seq, .. } => Some(after_seq + 1),
            Damage::CutAfterSignedHead { journal_ends, .. } => Some(journal_ends + 1),
            Damage::CutBeforeOpen { journal_ended, .. } => Some(journal_ended + 1),
            Damage::Segment { .. } | Damage::HeadMarker { .. } | Damage::Unreadable { .. } => None,
        }
    }
}

/// A verification that found damage: what, and what verified before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{damage}")]
pub struct VerifyFailure {
    /// The first damage found.
    pub damage: Damage,
    /// What verified before it.
    pub verified: Verified,
}

struct Walker<'k> {
    key: &'k VerifyingKey,
    verified: Verified,
    expected_seq: u64,
    prev_hash: [u8; HASH_LEN],
    /// The signed head marker read before the segments (so that it never names more than
    /// they hold while a writer runs).
    marker: Option<HeadMarker>,
    marker_path: PathBuf,
}

/// How a `journal.opened` record's payload begins (serde writes the tags first).
const OPENED_PREFIX: &[u8] = br#"{"category":"journal","kind":"opened","#;

/// Verify the journal in `dir` against the appliance public key `key`.
pub fn verify(dir: &Path, key: &VerifyingKey) -> Result<Verified, Box<VerifyFailure>> {
    let mut walker = Walker {
        key,
        verified: Verified {
            key_id: record::key_id(key),
            ..Verified::default()
        },
        expected_seq: 1,
        prev_hash: GENESIS_HASH,
        marker: None,
        marker_path: head::path(dir),
    };
    match walker.walk(dir) {
        Ok(()) => Ok(walker.verified),
        Err(damage) => Err(Box::new(VerifyFailure {
            damage,
            verified: walker.verified,
        })),
    }
}

impl Walker<'_> {
    fn walk(&mut self, dir: &Path) -> Result<(), Damage> {
        self.marker = head::read(dir).map_err(|e| Damage::Unreadable {
            path: self.marker_path.clone(),
            reason: e.to_string(),
        })?;
        self.segments(dir)?;
        if let Some(marker) = self.marker {
            if !marker.is_signed_by(self.key) {
                return Err(Damage::HeadMarker {
                    path: self.marker_path.clone(),
                    detail: format!(
                        "naming checkpoint seq {} is not signed by the appliance key {}",
                        marker.checkpoint_seq, self.verified.key_id
                    ),
                });
            }
            self.verified.signed_head_seq = Some(marker.checkpoint_seq);
            self.verified.signed_head_clean = Some(marker.clean);
            if marker.checkpoint_seq > self.verified.head_seq {
                return Err(Damage::CutAfterSignedHead {
                    journal_ends: self.verified.head_seq,
                    signed_head: marker.checkpoint_seq,
                });
            }
        }
        Ok(())
    }

    fn segments(&mut self, dir: &Path) -> Result<(), Damage> {
        let segments = list_segments(dir).map_err(|e| Damage::Unreadable {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let count = segments.len();
        for (index, (first_seq, path)) in segments.iter().enumerate() {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let bytes = std::fs::read(path).map_err(|e| Damage::Unreadable {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            self.segment(&name, *first_seq, &bytes, index + 1 == count)?;
            self.verified.segments += 1;
        }
        Ok(())
    }

    fn segment(
        &mut self,
        name: &str,
        first_seq: u64,
        bytes: &[u8],
        is_last: bool,
    ) -> Result<(), Damage> {
        match record::parse_segment_header(bytes) {
            Some(seq) if seq == first_seq => {}
            Some(seq) => {
                return Err(Damage::Segment {
                    segment: name.into(),
                    detail: format!("its header names first seq {seq}, its file name {first_seq}"),
                })
            }
            None => {
                return Err(Damage::Segment {
                    segment: name.into(),
                    detail: "bad segment header".into(),
                })
            }
        }
        if first_seq != self.expected_seq {
            // A whole segment (or the records at its start) is missing, or segments overlap.
            let at = Location {
                segment: name.into(),
                offset: SEGMENT_HEADER_LEN as u64,
            };
            return Err(self.misplaced(first_seq, None, at));
        }
        let mut offset = SEGMENT_HEADER_LEN;
        let mut last_type = None;
        while let Some(rest) = bytes.get(offset..).filter(|r| !r.is_empty()) {
            let at = Location {
                segment: name.into(),
                offset: offset as u64,
            };
            if record::at_end(rest) {
                // The zero fill of a preallocated segment: nothing else may follow.
                let garbage = record::nonzero_len(rest);
                if garbage > 0 {
                    return Err(Damage::Altered {
                        seq: self.expected_seq,
                        at,
                        detail: format!(
                            "a zero length prefix ends the records, but {garbage} bytes after it are not zero"
                        ),
                    });
                }
                break;
            }
            let raw = match record::decode(rest) {
                Ok(raw) => raw,
                Err(FrameError::Truncated { needed, available }) => {
                    return Err(Damage::Truncated {
                        segment: name.into(),
                        after_seq: self.verified.head_seq,
                        offset: offset as u64,
                        detail: format!(
                            "the file ends inside a record ({available} of {needed} bytes){}",
                            if is_last {
                                "; a crash leaves this, and the next open cuts it"
                            } else {
                                ""
                            }
                        ),
                    })
                }
                Err(e) => {
                    // In the open segment, a frame followed by nothing but the zero fill is
                    // what a crash in the middle of a write leaves.
                    let torn = is_last && record::is_torn_write(rest);
                    return Err(Damage::Altered {
                        seq: self.expected_seq,
                        at,
                        detail: if torn {
                            format!("{e}; it is the open segment's last frame, as a crash during a write leaves it, and the next open cuts it")
                        } else {
                            e.to_string()
                        },
                    });
                }
            };
            if raw.seq != self.expected_seq {
                let next = bytes
                    .get(offset + raw.frame_len..)
                    .and_then(|r| record::decode(r).ok())
                    .map(|r| r.seq);
                return Err(self.misplaced(raw.seq, next, at));
            }
            if raw.prev_hash != self.prev_hash {
                return Err(Damage::ChainBroken {
                    seq: raw.seq,
                    prev: raw.seq.saturating_sub(1),
                    at,
                });
            }
            if raw.record_type == RecordType::Checkpoint {
                self.checkpoint(&raw, at.clone())?;
            } else {
                self.verified.unsigned_tail += 1;
                if raw.payload.starts_with(OPENED_PREFIX) {
                    self.opened(&raw)?;
                }
            }
            if let Some(marker) = self.marker.filter(|m| m.checkpoint_seq == raw.seq) {
                if marker.checkpoint_hash != raw.hash || raw.record_type != RecordType::Checkpoint {
                    return Err(Damage::HeadMarker {
                        path: self.marker_path.clone(),
                        detail: format!(
                            "names checkpoint seq {} with hash {}, but the record there ({at}) is {} with hash {}",
                            marker.checkpoint_seq,
                            hex::encode(marker.checkpoint_hash),
                            if raw.record_type == RecordType::Checkpoint { "a checkpoint" } else { "an event" },
                            hex::encode(raw.hash)
                        ),
                    });
                }
            }
            last_type = Some(raw.record_type);
            self.prev_hash = raw.hash;
            self.expected_seq += 1;
            self.verified.records += 1;
            self.verified.head_seq = raw.seq;
            self.verified.head_hash = raw.hash;
            offset += raw.frame_len;
        }
        if !is_last && last_type != Some(RecordType::Checkpoint) {
            return Err(Damage::Truncated {
                segment: name.into(),
                after_seq: self.verified.head_seq,
                offset: offset as u64,
                detail: "a closed segment must end with its signed checkpoint".into(),
            });
        }
        Ok(())
    }

    /// The damage when seq `found` sits where `expected_seq` should be; `next` is the seq after it.
    fn misplaced(&self, found: u64, next: Option<u64>, at: Location) -> Damage {
        let expected = self.expected_seq;
        if found > expected && next != Some(expected) {
            Damage::Removed {
                first: expected,
                last: found - 1,
                found,
                after: self.verified.head_seq,
                at,
            }
        } else {
            Damage::Reordered {
                expected,
                found,
                at,
            }
        }
    }

    /// A `journal.opened` record: did the journal, when opened, reach its signed head?
    fn opened(&self, raw: &record::RawRecord<'_>) -> Result<(), Damage> {
        if let Ok(Event::Journal(JournalEvent::Opened {
            head_seq,
            signed_head_seq: Some(signed_head),
            ..
        })) = serde_json::from_slice::<Event>(raw.payload)
        {
            if signed_head > head_seq {
                return Err(Damage::CutBeforeOpen {
                    opened_seq: raw.seq,
                    journal_ended: head_seq,
                    signed_head,
                });
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, raw: &record::RawRecord<'_>, at: Location) -> Result<(), Damage> {
        let mismatch = |detail: String| Damage::CheckpointMismatch {
            seq: raw.seq,
            at: at.clone(),
            detail,
        };
        let event: Event = serde_json::from_slice(raw.payload)
            .map_err(|e| mismatch(format!("not a checkpoint payload: {e}")))?;
        let Event::Journal(JournalEvent::Checkpoint {
            covers_seq,
            head_hash,
            key_id,
            signature,
            ..
        }) = event
        else {
            return Err(mismatch(
                "a checkpoint record that holds another event".into(),
            ));
        };
        if covers_seq != raw.seq.saturating_sub(1) || head_hash != hex::encode(raw.prev_hash) {
            return Err(mismatch(format!(
                "it claims seq {covers_seq} with hash {head_hash}"
            )));
        }
        let bad_signature = || Damage::BadSignature {
            seq: raw.seq,
            key_id: key_id.clone(),
            expected_key_id: self.verified.key_id.clone(),
            at: at.clone(),
        };
        let signature = hex::decode(&signature)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or_else(bad_signature)?;
        self.key
            .verify_strict(
                &record::checkpoint_message(covers_seq, &raw.prev_hash),
                &signature,
            )
            .map_err(|_| bad_signature())?;
        self.verified.checkpoints += 1;
        self.verified.last_checkpoint_seq = raw.seq;
        self.verified.unsigned_tail = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
