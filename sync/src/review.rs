//! Signed review records: HQ's sign-off of emergency (break-glass) grants, carried to the plant
//! as data, like a bundle. See `docs/review-format.md`.
//!
//! ```text
//! signed part:
//!   magic        4 bytes   "OTGR"
//!   format       u16       1
//!   body_len     u32       <= MAX_REVIEW_BODY_BYTES
//!   body:
//!     site         u8 len + bytes     1..=64, [A-Za-z0-9._-]
//!     issued_at    i64                Unix seconds
//!     reviewer     u8 len + bytes     1..=64 bytes of UTF-8, no control characters
//!     verdict      u8                 1 justified, 2 unjustified
//!     comment      u32 len + bytes    UTF-8, <= MAX_COMMENT_BYTES, no control characters but \n
//!     grant_count  u16                1..=MAX_GRANTS
//!     grant_count x  u8 len + bytes   1..=32 of [A-Za-z0-9-], strictly ascending (sorted, unique)
//! signatures:
//!   count        u16       <= MAX_SIGNATURES (the bundle limit)
//!   count x      key id (8 bytes) + ed25519 signature (64 bytes)
//! ```
//!
//! The primitives are the bundle's: the same big-endian codec with a maximum on every length
//! prefix and no trailing bytes ([`crate::bundle::codec`]), the same authority keys and key ids
//! ([`crate::key`]), the same trust root and threshold ([`crate::trust`]). Each value has exactly
//! one encoding (grant ids sorted and unique, flags and verdicts exact), so a record's identity,
//! its hash (SHA-256 of the signed part), is stable and the appliance refuses a replay by it.
//! Signatures are ed25519 over [`REVIEW_SIGNATURE_CONTEXT`] and the signed part: a different
//! context from bundles', so no signature can be moved between the two kinds of file.
//!
//! This module decodes and verifies; it reads no clock (instants are passed in) and knows
//! nothing of grants: whether the named grants exist, await review and were not signed off
//! already is the appliance's check. Only [`verify_review`] makes a [`VerifiedReview`].
//! Decoding never panics and allocates at most what the length limits allow.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use ed25519_dalek::Signature;
use sha2::{Digest, Sha256};

use crate::bundle::codec::{Reader, Writer};
use crate::bundle::{DecodeError, SignError, SignatureEntry, MAX_SIGNATURES, MAX_SITE_BYTES};
use crate::key::{AuthorityKey, KeyId};
use crate::trust::TrustRoot;

/// The first four bytes of every review record.
pub const REVIEW_MAGIC: [u8; 4] = *b"OTGR";
/// The record format this crate writes and reads.
pub const REVIEW_FORMAT_VERSION: u16 = 1;
/// Domain separation: every signature is over this context followed by the signed part.
pub const REVIEW_SIGNATURE_CONTEXT: &[u8] = b"otgate review record signature v1\0";
/// The largest record file accepted, checked before the file is read whole.
pub const MAX_REVIEW_BYTES: u64 = 64 * 1024;
/// The largest body.
pub const MAX_REVIEW_BODY_BYTES: usize = 48 * 1024;
/// The longest reviewer name.
pub const MAX_REVIEWER_BYTES: usize = 64;
/// The longest comment.
pub const MAX_COMMENT_BYTES: usize = 4096;
/// The most grants one record signs off.
pub const MAX_GRANTS: usize = 64;
/// The longest grant id.
pub const MAX_GRANT_ID_BYTES: usize = 32;
/// How far in the future a record's `issued_at` may lie (clock skew between HQ and plant).
pub const MAX_ISSUE_SKEW_SECS: i64 = 5 * 60;

const PREFIX_BYTES: usize = 4 + 2 + 4;
const SIGNATURE_ENTRY_BYTES: usize = 8 + 64;

/// HQ's finding on the emergency use it reviewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The emergency use was justified.
    Justified,
    /// The use was not justified (follow-up happens outside the appliance); still signed off.
    Unjustified,
}

impl Verdict {
    fn code(self) -> u8 {
        match self {
            Self::Justified => 1,
            Self::Unjustified => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Justified),
            2 => Some(Self::Unjustified),
            _ => None,
        }
    }

    /// The verdict as written in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Justified => "justified",
            Self::Unjustified => "unjustified",
        }
    }
}

impl std::str::FromStr for Verdict {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "justified" => Ok(Self::Justified),
            "unjustified" => Ok(Self::Unjustified),
            other => Err(format!(
                "verdict {other:?} is neither `justified` nor `unjustified`"
            )),
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a review record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewBody {
    /// The site (plant) whose grants were reviewed.
    pub site: String,
    /// When HQ issued the review (whole seconds).
    pub issued_at: DateTime<Utc>,
    /// Who reviewed, as HQ names them (`security-officer@hq`).
    pub reviewer: String,
    /// The finding.
    pub verdict: Verdict,
    /// Free text (may be empty).
    pub comment: String,
    /// The grants signed off (`G-0001`), sorted and unique.
    pub grant_ids: Vec<String>,
}

/// Malformed bytes or fields: the record cannot be decoded or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReviewDecodeError {
    /// A field is truncated, over its length limit, or followed by trailing bytes.
    #[error(transparent)]
    Codec(#[from] DecodeError),
    /// The file does not start with `OTGR`.
    #[error("not an otgate review record (magic {found:02x?}, expected \"OTGR\")")]
    BadMagic {
        /// The first bytes found.
        found: [u8; 4],
    },
    /// A format version this build does not know.
    #[error("review record format {found} is not supported (this build reads format {REVIEW_FORMAT_VERSION})")]
    UnsupportedFormat {
        /// The version found.
        found: u16,
    },
    /// A field's value breaks its rule (characters, range, order).
    #[error("field `{field}` is invalid: {detail}")]
    BadField {
        /// The field.
        field: &'static str,
        /// What is wrong, with the value.
        detail: String,
    },
}

fn bad(field: &'static str, detail: impl Into<String>) -> ReviewDecodeError {
    ReviewDecodeError::BadField {
        field,
        detail: detail.into(),
    }
}

fn check_site(site: &str) -> Result<(), ReviewDecodeError> {
    let ok = !site.is_empty()
        && site.len() <= MAX_SITE_BYTES
        && site
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(bad(
            "site",
            format!(
                "{:?} is not 1-64 characters of [A-Za-z0-9._-]",
                site.chars().take(80).collect::<String>()
            ),
        ))
    }
}

fn check_grant_id(id: &str) -> Result<(), ReviewDecodeError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_GRANT_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(bad(
            "grant_id",
            format!(
                "{:?} is not 1-{MAX_GRANT_ID_BYTES} characters of [A-Za-z0-9-]",
                id.chars().take(40).collect::<String>()
            ),
        ))
    }
}

fn text(field: &'static str, bytes: &[u8], newlines: bool) -> Result<String, ReviewDecodeError> {
    let s = std::str::from_utf8(bytes).map_err(|e| {
        bad(
            field,
            format!("not UTF-8 (first bad byte at {})", e.valid_up_to()),
        )
    })?;
    if let Some(c) = s
        .chars()
        .find(|c| c.is_control() && !(newlines && *c == '\n'))
    {
        return Err(bad(field, format!("holds control character {:?}", c)));
    }
    Ok(s.to_owned())
}

impl ReviewBody {
    /// Check every field's rule and limit.
    pub fn check(&self) -> Result<(), ReviewDecodeError> {
        check_site(&self.site)?;
        if self.reviewer.is_empty() || self.reviewer.len() > MAX_REVIEWER_BYTES {
            return Err(bad(
                "reviewer",
                format!(
                    "{} bytes, must be 1-{MAX_REVIEWER_BYTES}",
                    self.reviewer.len()
                ),
            ));
        }
        text("reviewer", self.reviewer.as_bytes(), false)?;
        if self.comment.len() > MAX_COMMENT_BYTES {
            return Err(DecodeError::LengthOverLimit {
                field: "comment",
                declared: self.comment.len(),
                limit: MAX_COMMENT_BYTES,
            }
            .into());
        }
        text("comment", self.comment.as_bytes(), true)?;
        if self.grant_ids.is_empty() || self.grant_ids.len() > MAX_GRANTS {
            return Err(bad(
                "grant_count",
                format!("{} grants, must be 1-{MAX_GRANTS}", self.grant_ids.len()),
            ));
        }
        for id in &self.grant_ids {
            check_grant_id(id)?;
        }
        if let Some(pair) = self.grant_ids.windows(2).find(|w| w.first() >= w.get(1)) {
            return Err(bad(
                "grant_ids",
                format!("not strictly ascending at {pair:?} (sorted, each once)"),
            ));
        }
        Ok(())
    }

    fn emit(&self, w: &mut Writer) {
        w.bytes_u8(self.site.as_bytes());
        w.i64(self.issued_at.timestamp());
        w.bytes_u8(self.reviewer.as_bytes());
        w.u8(self.verdict.code());
        w.bytes_u32(self.comment.as_bytes());
        w.u16(u16::try_from(self.grant_ids.len()).unwrap_or(u16::MAX));
        for id in &self.grant_ids {
            w.bytes_u8(id.as_bytes());
        }
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self, ReviewDecodeError> {
        let site = text("site", r.bytes_u8("site", MAX_SITE_BYTES)?, false)?;
        let secs = r.i64("issued_at")?;
        let issued_at = DateTime::<Utc>::from_timestamp(secs, 0).ok_or_else(|| {
            bad(
                "issued_at",
                format!("{secs} is not a representable instant"),
            )
        })?;
        let reviewer = text(
            "reviewer",
            r.bytes_u8("reviewer", MAX_REVIEWER_BYTES)?,
            false,
        )?;
        let code = r.u8("verdict")?;
        let verdict = Verdict::from_code(code)
            .ok_or_else(|| bad("verdict", format!("{code} is neither 1 nor 2")))?;
        let comment = text("comment", r.bytes_u32("comment", MAX_COMMENT_BYTES)?, true)?;
        let count = usize::from(r.u16("grant_count")?);
        if count == 0 || count > MAX_GRANTS {
            return Err(bad(
                "grant_count",
                format!("{count} grants, must be 1-{MAX_GRANTS}"),
            ));
        }
        let mut grant_ids = Vec::with_capacity(count);
        for _ in 0..count {
            let id = r.bytes_u8("grant_id", MAX_GRANT_ID_BYTES)?;
            grant_ids.push(text("grant_id", id, false)?);
        }
        let body = Self {
            site,
            issued_at,
            reviewer,
            verdict,
            comment,
            grant_ids,
        };
        body.check()?;
        Ok(body)
    }
}

/// A decoded review record: the signed part (kept as its exact bytes) and its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRecord {
    signed: Vec<u8>,
    body: ReviewBody,
    signatures: Vec<SignatureEntry>,
}

impl ReviewRecord {
    /// An unsigned record holding `body` (checked here; `issued_at` is cut to whole seconds).
    pub fn new(mut body: ReviewBody) -> Result<Self, ReviewDecodeError> {
        let secs = body.issued_at.timestamp();
        body.issued_at = DateTime::<Utc>::from_timestamp(secs, 0).ok_or_else(|| {
            bad(
                "issued_at",
                format!("{secs} is not a representable instant"),
            )
        })?;
        body.check()?;
        let mut inner = Writer::with_capacity(256);
        body.emit(&mut inner);
        let inner = inner.into_bytes();
        if inner.len() > MAX_REVIEW_BODY_BYTES {
            return Err(DecodeError::LengthOverLimit {
                field: "body",
                declared: inner.len(),
                limit: MAX_REVIEW_BODY_BYTES,
            }
            .into());
        }
        let mut w = Writer::with_capacity(inner.len() + PREFIX_BYTES);
        w.raw(&REVIEW_MAGIC);
        w.u16(REVIEW_FORMAT_VERSION);
        w.bytes_u32(&inner);
        Ok(Self {
            signed: w.into_bytes(),
            body,
            signatures: Vec::new(),
        })
    }

    /// Decode a record file's bytes (structure only; nothing is verified).
    pub fn decode(bytes: &[u8]) -> Result<Self, ReviewDecodeError> {
        let mut r = Reader::new(bytes);
        let magic = r.take_array::<4>("magic")?;
        if magic != REVIEW_MAGIC {
            return Err(ReviewDecodeError::BadMagic { found: magic });
        }
        let format = r.u16("format")?;
        if format != REVIEW_FORMAT_VERSION {
            return Err(ReviewDecodeError::UnsupportedFormat { found: format });
        }
        let inner = r.bytes_u32("body", MAX_REVIEW_BODY_BYTES)?;
        let signed_len = r.offset();
        let mut body_reader = Reader::new(inner);
        let body = ReviewBody::parse(&mut body_reader)?;
        body_reader.expect_end("body")?;
        let count = usize::from(r.u16("signature_count")?);
        if count > MAX_SIGNATURES {
            return Err(DecodeError::TooManySignatures { count }.into());
        }
        let mut signatures = Vec::with_capacity(count);
        for _ in 0..count {
            let key_id = KeyId(r.take_array::<8>("signature.key_id")?);
            let signature = r.take_array::<64>("signature.signature")?;
            signatures.push(SignatureEntry { key_id, signature });
        }
        r.expect_end("signatures")?;
        let signed = bytes.get(..signed_len).unwrap_or_default().to_vec();
        Ok(Self {
            signed,
            body,
            signatures,
        })
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(
            self.signed.len() + 2 + self.signatures.len() * SIGNATURE_ENTRY_BYTES,
        );
        w.raw(&self.signed);
        w.u16(u16::try_from(self.signatures.len()).unwrap_or(u16::MAX));
        for entry in &self.signatures {
            w.raw(&entry.key_id.0);
            w.raw(&entry.signature);
        }
        w.into_bytes()
    }

    /// SHA-256 of the signed part: the record's identity (adding a signature keeps it).
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(&self.signed).into()
    }

    /// The message each authority signs: the context string followed by the signed part.
    pub fn signing_message(&self) -> Vec<u8> {
        let mut message = Vec::with_capacity(REVIEW_SIGNATURE_CONTEXT.len() + self.signed.len());
        message.extend_from_slice(REVIEW_SIGNATURE_CONTEXT);
        message.extend_from_slice(&self.signed);
        message
    }

    /// What the record says.
    pub fn body(&self) -> &ReviewBody {
        &self.body
    }

    /// The signatures, in file order.
    pub fn signatures(&self) -> &[SignatureEntry] {
        &self.signatures
    }

    /// Add `key`'s signature. Refuses a key that has already signed and a full signature list.
    pub fn sign(&mut self, key: &AuthorityKey) -> Result<(), SignError> {
        let message = self.signing_message();
        crate::bundle::add_signature(&mut self.signatures, key, &message)
    }

    /// Append a signature entry as is (tests build bad records with this).
    #[doc(hidden)]
    pub fn push_signature_unchecked(&mut self, entry: SignatureEntry) {
        self.signatures.push(entry);
    }
}

/// Why a review record is not accepted. Nothing is changed by a refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReviewRefusal {
    // --- malformed ---
    /// The file is larger than any record may be; it was not read whole.
    #[error("review record is {size} bytes, over the limit of {limit} bytes")]
    Oversized {
        /// The limit.
        limit: u64,
        /// The offered size.
        size: u64,
    },
    /// The bytes are not a well-formed record.
    #[error("review record is malformed: {0}")]
    Malformed(ReviewDecodeError),

    // --- signatures ---
    /// One key's signature appears more than once.
    #[error("key {key_id} signed the review more than once; a key counts once")]
    DuplicateSigner {
        /// The key.
        key_id: KeyId,
    },
    /// Fewer valid signatures than the trust root's threshold.
    #[error("{valid} valid signatures, {required} required{}", ignored_words(.ignored))]
    NotEnoughSignatures {
        /// Valid signatures from listed, non-revoked keys.
        valid: usize,
        /// The threshold.
        required: usize,
        /// Signatures that did not count, each with why (`<key id>: revoked`).
        ignored: Vec<String>,
    },

    // --- not for here or not now ---
    /// The record is for another site.
    #[error("review record is for site {offered:?}, this appliance is site {expected:?}")]
    WrongSite {
        /// This appliance's site.
        expected: String,
        /// The record's site.
        offered: String,
    },
    /// The record claims to be issued later than now (plus the allowed skew).
    #[error("review record is issued at {issued_at}, after now ({now}) plus {MAX_ISSUE_SKEW_SECS} s of skew")]
    IssuedInFuture {
        /// Its `issued_at`.
        issued_at: DateTime<Utc>,
        /// The appliance's clock.
        now: DateTime<Utc>,
    },
}

fn ignored_words(ignored: &[String]) -> String {
    if ignored.is_empty() {
        String::new()
    } else {
        format!(" (not counted: {})", ignored.join(", "))
    }
}

impl ReviewRefusal {
    /// A short machine-readable kind (`wrong_site`, `not_enough_signatures`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Oversized { .. } => "oversized",
            Self::Malformed(_) => "malformed",
            Self::DuplicateSigner { .. } => "duplicate_signer",
            Self::NotEnoughSignatures { .. } => "not_enough_signatures",
            Self::WrongSite { .. } => "wrong_site",
            Self::IssuedInFuture { .. } => "issued_in_future",
        }
    }
}

/// A review record with enough valid signatures from the trust root, for this site, not from
/// the future. Made only by [`verify_review`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReview {
    record: ReviewRecord,
    hash: [u8; 32],
    signers: Vec<KeyId>,
}

impl VerifiedReview {
    /// What the record says.
    pub fn body(&self) -> &ReviewBody {
        self.record.body()
    }

    /// The record's hash (its identity, for replay refusal).
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// The keys whose signatures counted.
    pub fn signers(&self) -> &[KeyId] {
        &self.signers
    }

    /// The record itself.
    pub fn record(&self) -> &ReviewRecord {
        &self.record
    }
}

/// Decode `bytes` and accept them only with a threshold of valid signatures by distinct,
/// listed, non-revoked keys of `root`, for `root`'s site, issued no later than `now` plus
/// [`MAX_ISSUE_SKEW_SECS`].
pub fn verify_review(
    bytes: &[u8],
    root: &TrustRoot,
    now: DateTime<Utc>,
) -> Result<VerifiedReview, ReviewRefusal> {
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if size > MAX_REVIEW_BYTES {
        return Err(ReviewRefusal::Oversized {
            limit: MAX_REVIEW_BYTES,
            size,
        });
    }
    let record = ReviewRecord::decode(bytes).map_err(ReviewRefusal::Malformed)?;
    let body = record.body();
    if body.site != root.site() {
        return Err(ReviewRefusal::WrongSite {
            expected: root.site().to_owned(),
            offered: body.site.clone(),
        });
    }
    let message = record.signing_message();
    let mut seen = BTreeSet::new();
    let mut signers = Vec::new();
    let mut ignored = Vec::new();
    for entry in record.signatures() {
        let key_id = entry.key_id;
        if !seen.insert(key_id) {
            return Err(ReviewRefusal::DuplicateSigner { key_id });
        }
        if root.is_revoked(&key_id) {
            ignored.push(format!("{key_id}: revoked"));
            continue;
        }
        let Some(key) = root.key(&key_id) else {
            ignored.push(format!("{key_id}: not in the trust root"));
            continue;
        };
        let signature = Signature::from_bytes(&entry.signature);
        if key.verify_strict(&message, &signature).is_ok() {
            signers.push(key_id);
        } else {
            ignored.push(format!("{key_id}: does not verify (altered after signing)"));
        }
    }
    if signers.len() < root.threshold() {
        return Err(ReviewRefusal::NotEnoughSignatures {
            valid: signers.len(),
            required: root.threshold(),
            ignored,
        });
    }
    if body.issued_at > now + chrono::TimeDelta::seconds(MAX_ISSUE_SKEW_SECS) {
        return Err(ReviewRefusal::IssuedInFuture {
            issued_at: body.issued_at,
            now,
        });
    }
    let hash = record.hash();
    Ok(VerifiedReview {
        record,
        hash,
        signers,
    })
}

/// Entry points for `cargo fuzz` (`sync/fuzz/fuzz_targets/review_record.rs`).
#[doc(hidden)]
pub mod fuzzing {
    use chrono::{TimeZone, Utc};

    use crate::key::AuthorityKey;
    use crate::trust::{TrustRoot, TrustRootFile};

    /// Decode arbitrary bytes as a review record and verify them against a fixed root; neither
    /// may panic, and a decoded record must re-encode to the same bytes.
    pub fn review_record(data: &[u8]) {
        if let Ok(record) = super::ReviewRecord::decode(data) {
            assert_eq!(
                record.encode(),
                data,
                "decode then encode must return the input"
            );
        }
        let file = TrustRootFile {
            format: 1,
            site: "plant-a".into(),
            root_version: 1,
            threshold: 1,
            keys: vec![AuthorityKey::from_secret([1; 32], None).public_entry()],
            revoked: vec![],
        };
        if let (Ok(root), chrono::LocalResult::Single(now)) = (
            TrustRoot::new(file),
            Utc.with_ymd_and_hms(2026, 11, 29, 0, 0, 0),
        ) {
            let _ = super::verify_review(data, &root, now);
        }
    }

    /// Seed records for `corpus/review_record/`: one signed by the fuzz root's key, one
    /// unsigned, one for another site.
    pub fn seeds() -> Vec<(String, Vec<u8>)> {
        let Some(at) = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).single() else {
            return Vec::new();
        };
        let key = AuthorityKey::from_secret([1; 32], None);
        let body = |site: &str, grants: &[&str]| super::ReviewBody {
            site: site.into(),
            issued_at: at,
            reviewer: "security-officer@hq".into(),
            verdict: super::Verdict::Justified,
            comment: "burner trip; use justified\nsee INC-77".into(),
            grant_ids: grants.iter().map(|g| (*g).to_owned()).collect(),
        };
        let mut out = Vec::new();
        for (name, body, sign) in [
            ("signed", body("plant-a", &["G-0001", "G-0002"]), true),
            ("unsigned", body("plant-a", &["G-0003"]), false),
            ("other-site", body("plant-b", &["G-0001"]), true),
        ] {
            if let Ok(mut record) = super::ReviewRecord::new(body) {
                if sign {
                    let _ = record.sign(&key);
                }
                out.push((name.to_owned(), record.encode()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::TrustRootFile;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
    }

    fn key(n: u8) -> AuthorityKey {
        AuthorityKey::from_secret([n; 32], Some(format!("k{n}")))
    }

    fn root(threshold: usize, revoked: Vec<KeyId>) -> TrustRoot {
        TrustRoot::new(TrustRootFile {
            format: 1,
            site: "plant-a".into(),
            root_version: 1,
            threshold,
            keys: vec![
                key(1).public_entry(),
                key(2).public_entry(),
                key(3).public_entry(),
            ],
            revoked,
        })
        .unwrap()
    }

    fn body() -> ReviewBody {
        ReviewBody {
            site: "plant-a".into(),
            issued_at: at(),
            reviewer: "security-officer@hq".into(),
            verdict: Verdict::Justified,
            comment: "burner trip\nINC-77".into(),
            grant_ids: vec!["G-0001".into(), "G-0004".into()],
        }
    }

    fn signed(by: &[u8]) -> Vec<u8> {
        let mut r = ReviewRecord::new(body()).unwrap();
        for n in by {
            r.sign(&key(*n)).unwrap();
        }
        r.encode()
    }

    #[test]
    fn a_record_signed_by_the_threshold_verifies_and_round_trips() {
        let bytes = signed(&[1, 2]);
        let v = verify_review(&bytes, &root(2, vec![]), at()).unwrap();
        assert_eq!(v.body(), &body());
        assert_eq!(v.signers(), [key(1).key_id(), key(2).key_id()]);
        assert_eq!(ReviewRecord::decode(&bytes).unwrap().encode(), bytes);
        // Adding a signature keeps the identity.
        let one = ReviewRecord::new(body()).unwrap();
        assert_eq!(v.hash(), one.hash());
    }

    #[test]
    fn too_few_signatures_are_refused_with_the_numbers_and_reasons() {
        let e = verify_review(&signed(&[1]), &root(2, vec![]), at()).unwrap_err();
        assert_eq!(
            e,
            ReviewRefusal::NotEnoughSignatures {
                valid: 1,
                required: 2,
                ignored: vec![]
            }
        );
        let e = verify_review(&signed(&[1, 2]), &root(2, vec![key(2).key_id()]), at()).unwrap_err();
        assert!(
            e.to_string().contains("1 valid signatures, 2 required"),
            "{e}"
        );
        assert!(e.to_string().contains("revoked"), "{e}");
        let e = verify_review(&signed(&[1, 9]), &root(2, vec![]), at()).unwrap_err();
        assert!(e.to_string().contains("not in the trust root"), "{e}");
    }

    #[test]
    fn an_altered_record_does_not_verify() {
        let mut bytes = signed(&[1]);
        // The verdict byte sits right after the reviewer; flip the comment's first letter.
        let pos = bytes.windows(6).position(|w| w == b"burner").unwrap();
        bytes[pos] = b'B';
        let e = verify_review(&bytes, &root(1, vec![]), at()).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
    }

    #[test]
    fn a_bundle_signature_does_not_count_for_a_review() {
        // The same key signing the same bytes under the bundle context does not verify here.
        let record = ReviewRecord::new(body()).unwrap();
        let mut forged = record.clone();
        let mut message = crate::bundle::SIGNATURE_CONTEXT.to_vec();
        message.extend_from_slice(&record.signed);
        forged.push_signature_unchecked(SignatureEntry {
            key_id: key(1).key_id(),
            signature: key(1).sign_raw(&message),
        });
        let e = verify_review(&forged.encode(), &root(1, vec![]), at()).unwrap_err();
        assert!(
            matches!(e, ReviewRefusal::NotEnoughSignatures { valid: 0, .. }),
            "{e}"
        );
    }

    #[test]
    fn wrong_site_future_and_duplicate_signers_are_refused() {
        let mut b = body();
        b.site = "plant-b".into();
        let mut r = ReviewRecord::new(b).unwrap();
        r.sign(&key(1)).unwrap();
        let e = verify_review(&r.encode(), &root(1, vec![]), at()).unwrap_err();
        assert_eq!(e.kind(), "wrong_site");
        assert!(e.to_string().contains("\"plant-b\""), "{e}");

        let e = verify_review(
            &signed(&[1]),
            &root(1, vec![]),
            at() - chrono::TimeDelta::hours(1),
        )
        .unwrap_err();
        assert_eq!(e.kind(), "issued_in_future");

        let mut r = ReviewRecord::new(body()).unwrap();
        r.sign(&key(1)).unwrap();
        let dup = r.signatures()[0].clone();
        r.push_signature_unchecked(dup);
        let e = verify_review(&r.encode(), &root(1, vec![]), at()).unwrap_err();
        assert_eq!(e.kind(), "duplicate_signer");
    }

    #[test]
    fn bad_fields_are_refused_by_name() {
        type Change = fn(&mut ReviewBody);
        let cases: Vec<(Change, &str)> = vec![
            (|b| b.site = "plant a".into(), "site"),
            (|b| b.reviewer = String::new(), "reviewer"),
            (|b| b.reviewer = "x\u{1b}[31m".into(), "reviewer"),
            (|b| b.comment = "x".repeat(MAX_COMMENT_BYTES + 1), "comment"),
            (|b| b.grant_ids = vec![], "grant_count"),
            (
                |b| b.grant_ids = vec!["G-2".into(), "G-1".into()],
                "grant_ids",
            ),
            (
                |b| b.grant_ids = vec!["G-1".into(), "G-1".into()],
                "grant_ids",
            ),
            (|b| b.grant_ids = vec!["G 1".into()], "grant_id"),
        ];
        for (change, field) in cases {
            let mut b = body();
            change(&mut b);
            let e = ReviewRecord::new(b).unwrap_err();
            assert!(e.to_string().contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn malformed_bytes_are_refused_not_panicked_on() {
        let good = signed(&[1]);
        let e = verify_review(&good[..good.len() - 1], &root(1, vec![]), at()).unwrap_err();
        assert_eq!(e.kind(), "malformed");
        let mut extra = good.clone();
        extra.push(0);
        assert!(ReviewRecord::decode(&extra)
            .unwrap_err()
            .to_string()
            .contains("trailing"));
        let mut magic = good.clone();
        magic[3] = b'B';
        assert!(matches!(
            ReviewRecord::decode(&magic),
            Err(ReviewDecodeError::BadMagic { .. })
        ));
        let huge = vec![0u8; usize::try_from(MAX_REVIEW_BYTES).unwrap() + 1];
        assert_eq!(
            verify_review(&huge, &root(1, vec![]), at())
                .unwrap_err()
                .kind(),
            "oversized"
        );
        // A bundle is not a review record.
        assert!(matches!(
            ReviewRecord::decode(b"OTGB\x00\x01"),
            Err(ReviewDecodeError::BadMagic { .. })
        ));
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            fuzzing::review_record(&bytes);
        }

        #[test]
        fn mutating_a_good_record_never_panics(at_byte in 0usize..400, value in any::<u8>()) {
            let mut bytes = signed(&[1, 2]);
            if let Some(b) = bytes.get_mut(at_byte) {
                *b = value;
            }
            fuzzing::review_record(&bytes);
        }

        #[test]
        fn emit_then_parse_returns_the_body(
            reviewer in "[a-z@.]{1,64}",
            comment in "[ -~\n]{0,200}",
            mut grants in proptest::collection::btree_set("G-[0-9]{4}", 1..10),
            justified in any::<bool>(),
        ) {
            let b = ReviewBody {
                site: "plant-a".into(),
                issued_at: at(),
                reviewer,
                verdict: if justified { Verdict::Justified } else { Verdict::Unjustified },
                comment,
                grant_ids: std::mem::take(&mut grants).into_iter().collect(),
            };
            let r = ReviewRecord::new(b.clone()).unwrap();
            let decoded = ReviewRecord::decode(&r.encode()).unwrap();
            prop_assert_eq!(decoded.body(), &b);
        }
    }
}

#[cfg(test)]
mod seed_corpus {
    /// Writes the fuzz seeds when `OTGATE_WRITE_FUZZ_SEEDS=1` (run once; the files are checked in).
    #[test]
    fn write_review_record_seeds() {
        if std::env::var_os("OTGATE_WRITE_FUZZ_SEEDS").is_none() {
            return;
        }
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/review_record");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in super::fuzzing::seeds() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}
