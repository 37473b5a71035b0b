//! The journal record frame: encoding and decoding of one record, shared by the writer, the
//! reader and the verifier. This is the on-disk API boundary documented in `journal/mod.rs` and
//! `docs/journal-format.md`.
//!
//! Decoding never panics and never trusts a length: every slice is taken with `get`, and a frame
//! longer than [`MAX_BODY_LEN`] is refused before anything is read.

use crc::{Crc, Table, CRC_32_ISCSI};
use sha2::{Digest, Sha256};

/// The 8 bytes that open every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"OTGJRNL1";
/// A segment header: the magic, then the segment's first sequence number (u64 LE).
pub const SEGMENT_HEADER_LEN: usize = 16;
/// The frame prefix: body length (u32 LE) and CRC-32C (u32 LE).
pub const FRAME_PREFIX_LEN: usize = 8;
/// A SHA-256 hash.
pub const HASH_LEN: usize = 32;
/// The fixed part of a body: version, type, seq, wall time, monotonic time, previous hash.
pub const BODY_HEADER_LEN: usize = 1 + 1 + 8 + 8 + 8 + HASH_LEN;
/// The largest body a frame may declare (1 MiB).
pub const MAX_BODY_LEN: u32 = 1 << 20;
/// The record format version written in every body.
pub const FORMAT_VERSION: u8 = 1;

/// The hash that the first record of a journal chains to.
pub const GENESIS_HASH: [u8; HASH_LEN] = [0; HASH_LEN];

static CRC32C: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

/// What a record's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    /// An event appended by the appliance.
    Event = 0,
    /// A signed checkpoint written by the journal itself.
    Checkpoint = 1,
}

/// A decoded frame, borrowing its payload from the segment bytes.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// Event or checkpoint.
    pub record_type: RecordType,
    /// Sequence number.
    pub seq: u64,
    /// Wall-clock time, nanoseconds since the Unix epoch (UTC).
    pub wall_nanos: i64,
    /// Monotonic nanoseconds since the writer opened the journal.
    pub mono_ns: u64,
    /// The previous record's hash.
    pub prev_hash: [u8; HASH_LEN],
    /// The JSON `Event`.
    pub payload: &'a [u8],
    /// SHA-256 of the body, as stored (checked equal to the computed one).
    pub hash: [u8; HASH_LEN],
    /// The whole frame's length in bytes.
    pub frame_len: usize,
}

/// Why bytes do not form a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The bytes end before the frame does.
    #[error("truncated record: the frame needs {needed} bytes, {available} remain")]
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// The declared body length is impossible.
    #[error("impossible record length {declared} (allowed {min}..={max})")]
    BadLength {
        /// The declared length.
        declared: u32,
        /// The smallest body.
        min: usize,
        /// The largest body.
        max: u32,
    },
    /// The CRC does not match: bytes changed or a write was torn.
    #[error("checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// As stored.
        stored: u32,
        /// As computed.
        computed: u32,
    },
    /// The stored hash is not the SHA-256 of the body: the body was altered.
    #[error("hash mismatch: the record's content does not match its stored hash")]
    HashMismatch,
    /// An unknown format version.
    #[error("unknown record format version {0}")]
    Version(u8),
    /// An unknown record type.
    #[error("unknown record type {0}")]
    Type(u8),
}

/// The CRC-32C of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    CRC32C.checksum(bytes)
}

/// Append one encoded record to `out` and return its hash.
pub fn encode(
    out: &mut Vec<u8>,
    record_type: RecordType,
    seq: u64,
    wall_nanos: i64,
    mono_ns: u64,
    prev_hash: &[u8; HASH_LEN],
    payload: &[u8],
) -> [u8; HASH_LEN] {
    let body_len = BODY_HEADER_LEN + payload.len();
    let start = out.len();
    out.reserve(FRAME_PREFIX_LEN + body_len + HASH_LEN);
    // The length and CRC are filled in once the body and hash are in place.
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let body_start = out.len();
    out.push(FORMAT_VERSION);
    out.push(record_type as u8);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&wall_nanos.to_le_bytes());
    out.extend_from_slice(&mono_ns.to_le_bytes());
    out.extend_from_slice(prev_hash);
    out.extend_from_slice(payload);
    let hash: [u8; HASH_LEN] = Sha256::digest(out.get(body_start..).unwrap_or_default()).into();
    out.extend_from_slice(&hash);
    let crc = crc32c(out.get(body_start..).unwrap_or_default());
    if let Some(slot) = out.get_mut(start + 4..start + 8) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
    hash
}

/// Whether `rest`, the bytes where a segment's next frame would begin, marks the end of its
/// records: segments are preallocated with zeros, and no valid frame declares a body length
/// of 0, so a zero length prefix (or fewer than 4 bytes, all zero) is the end.
pub fn at_end(rest: &[u8]) -> bool {
    match rest.get(..4) {
        Some(prefix) => prefix == [0; 4],
        None => rest.iter().all(|b| *b == 0),
    }
}

/// The offset, relative to `rest`, one past its last non-zero byte (0 if it is all zeros):
/// how much of a preallocated tail holds something other than the zero fill.
pub fn nonzero_len(rest: &[u8]) -> usize {
    rest.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)
}

/// Whether a frame at the start of `rest` that does not decode is what a crash in the middle
/// of a write leaves at the end of the open segment: nothing but zeros after the extent its
/// length prefix declares (or no complete prefix at all).
pub fn is_torn_write(rest: &[u8]) -> bool {
    let declared = rest
        .get(..4)
        .and_then(|p| p.try_into().ok())
        .map_or(0, |p: [u8; 4]| u32::from_le_bytes(p) as usize);
    nonzero_len(rest)
        <= FRAME_PREFIX_LEN
            .saturating_add(declared)
            .saturating_add(HASH_LEN)
}

/// The length of a frame whose payload has `payload_len` bytes.
pub fn frame_len(payload_len: usize) -> usize {
    FRAME_PREFIX_LEN + BODY_HEADER_LEN + payload_len + HASH_LEN
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    if let Some(src) = bytes.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

/// Decode the frame at the start of `bytes` (which may continue with further frames).
pub fn decode(bytes: &[u8]) -> Result<RawRecord<'_>, FrameError> {
    let available = bytes.len();
    if available < FRAME_PREFIX_LEN {
        return Err(FrameError::Truncated {
            needed: FRAME_PREFIX_LEN,
            available,
        });
    }
    let declared = u32::from_le_bytes(array(bytes, 0));
    let stored_crc = u32::from_le_bytes(array(bytes, 4));
    if (declared as usize) < BODY_HEADER_LEN || declared > MAX_BODY_LEN {
        return Err(FrameError::BadLength {
            declared,
            min: BODY_HEADER_LEN,
            max: MAX_BODY_LEN,
        });
    }
    let body_len = declared as usize;
    let frame_len = FRAME_PREFIX_LEN + body_len + HASH_LEN;
    let Some(covered) = bytes.get(FRAME_PREFIX_LEN..frame_len) else {
        return Err(FrameError::Truncated {
            needed: frame_len,
            available,
        });
    };
    let computed = crc32c(covered);
    if computed != stored_crc {
        return Err(FrameError::Checksum {
            stored: stored_crc,
            computed,
        });
    }
    let body = covered.get(..body_len).unwrap_or_default();
    let hash: [u8; HASH_LEN] = array(covered, body_len);
    let computed_hash: [u8; HASH_LEN] = Sha256::digest(body).into();
    if computed_hash != hash {
        return Err(FrameError::HashMismatch);
    }
    let version = body.first().copied().unwrap_or_default();
    if version != FORMAT_VERSION {
        return Err(FrameError::Version(version));
    }
    let record_type = match body.get(1).copied().unwrap_or_default() {
        0 => RecordType::Event,
        1 => RecordType::Checkpoint,
        other => return Err(FrameError::Type(other)),
    };
    Ok(RawRecord {
        record_type,
        seq: u64::from_le_bytes(array(body, 2)),
        wall_nanos: i64::from_le_bytes(array(body, 10)),
        mono_ns: u64::from_le_bytes(array(body, 18)),
        prev_hash: array(body, 26),
        payload: body.get(BODY_HEADER_LEN..).unwrap_or_default(),
        hash,
        frame_len,
    })
}

/// The segment header for a segment whose first record is `first_seq`.
pub fn segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0; SEGMENT_HEADER_LEN];
    let (magic, seq) = header.split_at_mut(SEGMENT_MAGIC.len());
    magic.copy_from_slice(&SEGMENT_MAGIC);
    seq.copy_from_slice(&first_seq.to_le_bytes());
    header
}

/// The first sequence number named in a segment header, if the header is valid.
pub fn parse_segment_header(bytes: &[u8]) -> Option<u64> {
    if bytes.get(..8)? != SEGMENT_MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?))
}

/// The file name of the segment whose first record is `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The first sequence number in a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The message a checkpoint signs.
pub fn checkpoint_message(covers_seq: u64, head_hash: &[u8; HASH_LEN]) -> Vec<u8> {
    let mut message = Vec::with_capacity(28 + 8 + HASH_LEN);
    message.extend_from_slice(b"otgate-journal-checkpoint-v1");
    message.extend_from_slice(&covers_seq.to_le_bytes());
    message.extend_from_slice(head_hash);
    message
}

/// A key's short id: the first 8 bytes of the SHA-256 of the public key, hex.
pub fn key_id(public_key: &ed25519_dalek::VerifyingKey) -> String {
    let digest = Sha256::digest(public_key.as_bytes());
    hex::encode(digest.get(..8).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one() -> Vec<u8> {
        let mut out = Vec::new();
        encode(
            &mut out,
            RecordType::Event,
            7,
            1_700_000_000_000_000_000,
            42,
            &[3; 32],
            b"{\"a\":1}",
        );
        out
    }

    #[test]
    fn encode_then_decode_returns_the_fields() {
        let bytes = one();
        let record = decode(&bytes).unwrap();
        assert_eq!(record.seq, 7);
        assert_eq!(record.wall_nanos, 1_700_000_000_000_000_000);
        assert_eq!(record.mono_ns, 42);
        assert_eq!(record.prev_hash, [3; 32]);
        assert_eq!(record.payload, b"{\"a\":1}");
        assert_eq!(record.frame_len, bytes.len());
        assert_eq!(record.frame_len, frame_len(7));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = one();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn altered_body_with_fixed_crc_is_a_hash_mismatch() {
        let mut bytes = one();
        let last_payload_byte = bytes.len() - HASH_LEN - 1;
        bytes[last_payload_byte] = b'2';
        let crc = crc32c(&bytes[FRAME_PREFIX_LEN..]);
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&bytes).unwrap_err(), FrameError::HashMismatch);
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = one();
        for len in 0..bytes.len() {
            assert!(matches!(
                decode(&bytes[..len]),
                Err(FrameError::Truncated { .. }) | Err(FrameError::BadLength { .. })
            ));
        }
    }

    #[test]
    fn lying_lengths_are_refused() {
        let mut bytes = one();
        bytes[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&bytes), Err(FrameError::BadLength { .. })));
        bytes[..4].copy_from_slice(&3u32.to_le_bytes());
        assert!(matches!(decode(&bytes), Err(FrameError::BadLength { .. })));
    }

    #[test]
    fn a_zero_length_prefix_is_the_end_and_no_frame_looks_like_one() {
        assert!(at_end(&[]));
        assert!(at_end(&[0, 0]));
        assert!(at_end(&[0, 0, 0, 0, 7]));
        assert!(!at_end(&[0, 0, 1]));
        assert!(!at_end(&one()));
        assert_eq!(nonzero_len(&[0, 0, 0]), 0);
        assert_eq!(nonzero_len(&[0, 3, 0, 0]), 2);
    }

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_name(12), "00000000000000000012.seg");
        assert_eq!(parse_segment_name(&segment_name(12)), Some(12));
        assert_eq!(parse_segment_name("12.seg"), None);
        assert_eq!(parse_segment_header(&segment_header(99)), Some(99));
        assert_eq!(parse_segment_header(b"OTGJRNL2\0\0\0\0\0\0\0\0"), None);
    }

    proptest! {
        #[test]
        fn no_encoded_frame_is_an_end_marker(payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut out = Vec::new();
            encode(&mut out, RecordType::Event, 1, 0, 0, &[0; 32], &payload);
            prop_assert!(!at_end(&out));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn round_trip(seq in any::<u64>(), wall in any::<i64>(), mono in any::<u64>(),
                      prev in any::<[u8; 32]>(), payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut out = Vec::new();
            let hash = encode(&mut out, RecordType::Checkpoint, seq, wall, mono, &prev, &payload);
            let r = decode(&out).unwrap();
            prop_assert_eq!(r.seq, seq);
            prop_assert_eq!(r.wall_nanos, wall);
            prop_assert_eq!(r.mono_ns, mono);
            prop_assert_eq!(r.prev_hash, prev);
            prop_assert_eq!(r.payload, &payload[..]);
            prop_assert_eq!(r.hash, hash);
            prop_assert_eq!(r.record_type, RecordType::Checkpoint);
        }
    }
}
