//! The signed head marker, `journal/HEAD`: the appliance's signed statement of the last
//! checkpoint it wrote, so that `audit verify` notices records cut from the end of the journal
//! (which the hash chain alone cannot show: a shorter chain is still a valid chain).
//!
//! The writer updates it after each checkpoint is durable and at a clean close, never on the
//! append path of an ordinary record: one small overwrite and one `sync_data` per checkpoint.
//! It does not vouch for records after the checkpoint it names; those are chained but
//! unsigned until the next checkpoint (at most `checkpoint_every_records` or `checkpoint_every`,
//! and none after a clean close).
//!
//! # Format (little-endian; also `docs/journal-format.md`)
//!
//! The file is two 128-byte slots, written alternately so that a torn write of one leaves the
//! other; the valid slot naming the higher seq wins.
//!
//! ```text
//! slot := magic "OTGHEAD1" | checkpoint_seq u64 | checkpoint_hash [32] | clean u8
//!         | signature [64] | crc32c u32 (over everything before it) | zero padding to 128
//! signed message := "otgate-journal-head-v1" ‖ checkpoint_seq u64 ‖ checkpoint_hash ‖ clean u8
//! ```
//!
//! `clean` is 1 when the writer closed cleanly with this checkpoint as the journal's last record.
//! Reading never panics; a slot that does not decode is ignored.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::Serialize;

use super::record::{crc32c, HASH_LEN};

/// The head marker's file name inside the journal directory.
pub const HEAD_FILE: &str = "HEAD";
/// The magic that opens each slot.
pub const HEAD_MAGIC: [u8; 8] = *b"OTGHEAD1";
/// One slot's length.
pub const SLOT_LEN: usize = 128;
/// The bytes a slot's CRC covers: magic, seq, hash, clean flag, signature.
const SIGNED_PART_LEN: usize = 8 + 8 + HASH_LEN + 1 + 64;

/// A verified-format (not yet signature-checked) head marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HeadMarker {
    /// The seq of the checkpoint record it names.
    pub checkpoint_seq: u64,
    /// That checkpoint record's hash.
    #[serde(with = "super::hex_hash")]
    pub checkpoint_hash: [u8; HASH_LEN],
    /// Whether the writer closed cleanly with this checkpoint as the last record.
    pub clean: bool,
    /// The ed25519 signature over [`message`].
    #[serde(skip)]
    pub signature: [u8; 64],
}

impl HeadMarker {
    /// Make and sign a marker.
    pub fn sign(
        key: &SigningKey,
        checkpoint_seq: u64,
        checkpoint_hash: [u8; HASH_LEN],
        clean: bool,
    ) -> HeadMarker {
        let signature = key
            .sign(&message(checkpoint_seq, &checkpoint_hash, clean))
            .to_bytes();
        HeadMarker {
            checkpoint_seq,
            checkpoint_hash,
            clean,
            signature,
        }
    }

    /// Whether `key` signed this marker.
    pub fn is_signed_by(&self, key: &VerifyingKey) -> bool {
        let signature = Signature::from_bytes(&self.signature);
        key.verify_strict(
            &message(self.checkpoint_seq, &self.checkpoint_hash, self.clean),
            &signature,
        )
        .is_ok()
    }

    /// The slot bytes.
    pub fn emit(&self) -> [u8; SLOT_LEN] {
        let mut slot = [0u8; SLOT_LEN];
        let mut at = 0;
        for part in [
            &HEAD_MAGIC[..],
            &self.checkpoint_seq.to_le_bytes()[..],
            &self.checkpoint_hash[..],
            &[u8::from(self.clean)][..],
            &self.signature[..],
        ] {
            if let Some(dst) = slot.get_mut(at..at + part.len()) {
                dst.copy_from_slice(part);
            }
            at += part.len();
        }
        let crc = crc32c(slot.get(..SIGNED_PART_LEN).unwrap_or_default());
        if let Some(dst) = slot.get_mut(SIGNED_PART_LEN..SIGNED_PART_LEN + 4) {
            dst.copy_from_slice(&crc.to_le_bytes());
        }
        slot
    }

    /// Decode one slot; `None` if it is empty, torn or not a marker.
    pub fn parse(slot: &[u8]) -> Option<HeadMarker> {
        if slot.get(..8)? != HEAD_MAGIC {
            return None;
        }
        let covered = slot.get(..SIGNED_PART_LEN)?;
        let stored = u32::from_le_bytes(
            slot.get(SIGNED_PART_LEN..SIGNED_PART_LEN + 4)?
                .try_into()
                .ok()?,
        );
        if crc32c(covered) != stored {
            return None;
        }
        let clean = match covered.get(48)? {
            0 => false,
            1 => true,
            _ => return None,
        };
        Some(HeadMarker {
            checkpoint_seq: u64::from_le_bytes(covered.get(8..16)?.try_into().ok()?),
            checkpoint_hash: covered.get(16..48)?.try_into().ok()?,
            clean,
            signature: covered.get(49..113)?.try_into().ok()?,
        })
    }
}

/// The message a head marker signs.
pub fn message(checkpoint_seq: u64, checkpoint_hash: &[u8; HASH_LEN], clean: bool) -> Vec<u8> {
    let mut message = Vec::with_capacity(22 + 8 + HASH_LEN + 1);
    message.extend_from_slice(b"otgate-journal-head-v1");
    message.extend_from_slice(&checkpoint_seq.to_le_bytes());
    message.extend_from_slice(checkpoint_hash);
    message.push(u8::from(clean));
    message
}

/// The head marker file of the journal in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(HEAD_FILE)
}

/// The newest valid marker in the journal `dir` (`Ok(None)` if there is no file or no valid
/// slot). Signatures are not checked here.
pub fn read(dir: &Path) -> std::io::Result<Option<HeadMarker>> {
    let bytes = match std::fs::read(path(dir)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(bytes
        .chunks(SLOT_LEN)
        .take(2)
        .filter_map(HeadMarker::parse)
        .max_by_key(|m| (m.checkpoint_seq, m.clean)))
}

/// Writes the marker: alternating slots, each write followed by `sync_data`.
#[derive(Debug)]
pub struct HeadWriter {
    file: File,
    path: PathBuf,
    /// The slot the next write goes to.
    next_slot: u64,
}

impl HeadWriter {
    /// Open (or create, zero-filled and synced with its directory) the marker of `dir`.
    pub fn open(dir: &Path) -> std::io::Result<HeadWriter> {
        let path = path(dir);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut next_slot = 0;
        if file.metadata()?.len() < (2 * SLOT_LEN) as u64 {
            file.write_all_at(&[0u8; 2 * SLOT_LEN], 0)?;
            file.sync_all()?;
            File::open(dir)?.sync_all()?;
        } else {
            // Overwrite the older slot first, keeping the newer one until the write is durable.
            let mut bytes = [0u8; 2 * SLOT_LEN];
            file.read_exact_at(&mut bytes, 0)?;
            let (a, b) = bytes.split_at(SLOT_LEN);
            let seq = |slot: &[u8]| HeadMarker::parse(slot).map(|m| m.checkpoint_seq);
            if seq(a) > seq(b) {
                next_slot = 1;
            }
        }
        Ok(HeadWriter {
            file,
            path,
            next_slot,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `marker` durably into the older slot.
    pub fn write(&mut self, marker: &HeadMarker) -> std::io::Result<()> {
        let offset = (self.next_slot % 2) * SLOT_LEN as u64;
        self.file.write_all_at(&marker.emit(), offset)?;
        self.file.sync_data()?;
        self.next_slot += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn markers_round_trip_and_the_newest_valid_slot_wins() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[4; 32]);
        let mut writer = HeadWriter::open(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let first = HeadMarker::sign(&key, 10, [1; 32], false);
        writer.write(&first).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(first));
        let second = HeadMarker::sign(&key, 20, [2; 32], true);
        writer.write(&second).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(second));
        assert!(second.is_signed_by(&key.verifying_key()));
        assert!(!second.is_signed_by(&SigningKey::from_bytes(&[5; 32]).verifying_key()));
        // A torn newer slot leaves the older one.
        let mut bytes = std::fs::read(path(dir.path())).unwrap();
        bytes[SLOT_LEN + 20] ^= 1;
        std::fs::write(path(dir.path()), &bytes).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(first));
        // Reopening writes over the older slot, keeping the newer.
        let mut writer = HeadWriter::open(dir.path()).unwrap();
        let third = HeadMarker::sign(&key, 30, [3; 32], false);
        writer.write(&third).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(third));
        // A signature over other fields does not verify.
        let mut forged = third;
        forged.checkpoint_seq = 31;
        assert!(!forged.is_signed_by(&key.verifying_key()));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = HeadMarker::parse(&bytes);
        }
    }
}
