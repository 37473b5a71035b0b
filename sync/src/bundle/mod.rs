//! The bundle format: a signed part (magic, format version, header fields, the policy and an
//! optional new trust root) followed by a list of signatures. See `docs/bundle-format.md`.
//!
//! ```text
//! signed part:
//!   magic        4 bytes   "OTGB"
//!   format       u16       2 (1: the policy is TOML source; read, never written)
//!   body_len     u32       <= MAX_BODY_BYTES
//!   body:
//!     site            u8 len + bytes     1..=64, [A-Za-z0-9._-]
//!     version         u64                >= 1
//!     issued_at       i64                Unix seconds
//!     not_before      i64                Unix seconds
//!     expires_at      i64                Unix seconds, > not_before
//!     previous_hash   u8 flag + 32 bytes SHA-256 of the previous bundle's signed part
//!     grace_period    u64                seconds of offline grace after expiry, <= 366 days
//!     policy          u32 len + bytes    canonical JSON (`otgate_policy::canonical_json`),
//!                                        <= MAX_POLICY_BYTES
//!     trust_root      u8 flag + u32 len + bytes   JSON, <= MAX_TRUST_ROOT_BYTES
//! signatures:
//!   count        u16       <= MAX_SIGNATURES
//!   count x      key id (8 bytes) + ed25519 signature (64 bytes)
//! ```
//!
//! Integers are big-endian. Every length prefix has a maximum; trailing bytes are refused; each
//! value has exactly one encoding. The bundle hash is SHA-256 of the signed part, so adding a
//! signature never changes it. Each signature is ed25519 over [`SIGNATURE_CONTEXT`] followed by
//! the signed part. Decoding never panics; it checks structure only. Whether a bundle is
//! acceptable is `verify`'s job, and only `verify` makes a `VerifiedBundle`.

pub mod codec;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::key::{AuthorityKey, KeyId};
use codec::{Reader, Writer};

/// The first four bytes of every bundle.
pub const MAGIC: [u8; 4] = *b"OTGB";
/// The format version this crate writes: the policy travels in its canonical JSON form
/// (`otgate_policy::canonical_json`), which verifies an order of magnitude faster than TOML.
pub const FORMAT_VERSION: u16 = 2;
/// The first format, whose policy is its TOML source. Still read (bundles signed before format
/// 2 stay valid and stored ones stay loadable); never written.
pub const FORMAT_TOML_POLICY: u16 = 1;
/// Domain separation: every signature is over this context followed by the signed part.
pub const SIGNATURE_CONTEXT: &[u8] = b"otgate policy bundle signature v1\0";
/// The largest bundle file accepted, checked before the file is read whole.
pub const MAX_BUNDLE_BYTES: u64 = 16 * 1024 * 1024;
/// The largest body (everything between the body length and the signatures).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024 - 64 * 1024;
/// The largest policy source.
pub const MAX_POLICY_BYTES: usize = 15 * 1024 * 1024;
/// The largest embedded trust root.
pub const MAX_TRUST_ROOT_BYTES: usize = 64 * 1024;
/// The most signatures a bundle may carry.
pub const MAX_SIGNATURES: usize = 64;
/// The longest site id.
pub const MAX_SITE_BYTES: usize = 64;
/// The longest offline grace period a bundle may name (366 days).
pub const MAX_GRACE_SECS: u64 = 366 * 24 * 3600;

const SIGNATURE_ENTRY_BYTES: usize = 8 + 64;
const PREFIX_BYTES: usize = 4 + 2 + 4;

/// Malformed bytes: the bundle cannot be decoded at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends inside a field.
    #[error(
        "truncated: field `{field}` at offset {offset} needs {wanted} bytes, {remaining} left"
    )]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// Bytes needed.
        wanted: usize,
        /// Bytes left.
        remaining: usize,
    },
    /// A length prefix is larger than the field's maximum.
    #[error("field `{field}` declares {declared} bytes, over its limit of {limit}")]
    LengthOverLimit {
        /// The field.
        field: &'static str,
        /// The declared length.
        declared: usize,
        /// The maximum.
        limit: usize,
    },
    /// The file does not start with `OTGB`.
    #[error("not an otgate bundle (magic {found:02x?}, expected \"OTGB\")")]
    BadMagic {
        /// The first bytes found.
        found: [u8; 4],
    },
    /// A format version this build does not know.
    #[error("bundle format {found} is not supported (this build reads formats {FORMAT_TOML_POLICY} and {FORMAT_VERSION})")]
    UnsupportedFormat {
        /// The version found.
        found: u16,
    },
    /// A presence flag is neither 0 nor 1.
    #[error("field `{field}` has flag {value}, expected 0 or 1")]
    BadFlag {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u8,
    },
    /// Bytes after the last field.
    #[error("{extra} trailing bytes after `{after}`")]
    TrailingBytes {
        /// The last field read.
        after: &'static str,
        /// How many bytes follow it.
        extra: usize,
    },
    /// More signatures than [`MAX_SIGNATURES`].
    #[error("{count} signatures, over the limit of {MAX_SIGNATURES}")]
    TooManySignatures {
        /// The declared count.
        count: usize,
    },
    /// A site id that is empty or has characters outside `[A-Za-z0-9._-]`.
    #[error("site id {site:?} is not 1-64 characters of [A-Za-z0-9._-]")]
    BadSiteId {
        /// The site id (lossy UTF-8).
        site: String,
    },
    /// A field holds a value outside its range.
    #[error("field `{field}` is out of range: {detail}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// What is wrong, with the numbers.
        detail: String,
    },
    /// The policy is not UTF-8.
    #[error("the policy is not UTF-8 (first bad byte at {valid_up_to})")]
    PolicyNotUtf8 {
        /// Where the valid prefix ends.
        valid_up_to: usize,
    },
}

/// The header of a bundle: what it is for and when it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The site (plant) this bundle is for.
    pub site: String,
    /// Monotonically increasing per site; the appliance accepts only greater versions.
    pub version: u64,
    /// When HQ made the bundle.
    pub issued_at: DateTime<Utc>,
    /// Not valid before this instant.
    pub not_before: DateTime<Utc>,
    /// Not valid after this instant (except for the offline grace period).
    pub expires_at: DateTime<Utc>,
    /// The hash of the bundle this one replaces, if HQ named one.
    pub previous_hash: Option<[u8; 32]>,
    /// How long an appliance that cannot get a newer bundle keeps enforcing this one after it
    /// expires, loudly. After that only break-glass works.
    pub grace_period_secs: u64,
}

/// The signed content of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The header.
    pub header: Header,
    /// The policy: its canonical JSON form (format 2, see [`canonical_policy`]), or its TOML
    /// source in a format-1 bundle.
    pub policy: String,
    /// A new trust root (JSON), when this bundle rotates the root.
    pub trust_root: Option<Vec<u8>>,
}

/// One authority's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureEntry {
    /// Which key signed.
    pub key_id: KeyId,
    /// The ed25519 signature over [`SIGNATURE_CONTEXT`] and the signed part.
    pub signature: [u8; 64],
}

/// A decoded bundle: the signed part (kept as its exact bytes) and its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    format: u16,
    signed: Vec<u8>,
    body: Body,
    signatures: Vec<SignatureEntry>,
}

/// A 32-byte SHA-256 bundle hash, shown as hex.
pub fn hash_hex(hash: &[u8; 32]) -> String {
    hex::encode(hash)
}

/// The policy as a bundle carries it: the canonical JSON form of its TOML source (syntax and
/// shape checked here, with line and column; validity is checked by `otgate_policy::parse`).
pub fn canonical_policy(
    toml_source: &str,
    file: &str,
) -> Result<String, otgate_policy::Diagnostics> {
    let json = otgate_policy::canonical_json(toml_source, file)?;
    // serde_json writes UTF-8; a lossy conversion never changes valid bytes.
    Ok(String::from_utf8_lossy(&json).into_owned())
}

fn check_site(site: &str) -> Result<(), DecodeError> {
    let ok = !site.is_empty()
        && site.len() <= MAX_SITE_BYTES
        && site
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(DecodeError::BadSiteId {
            site: site.chars().take(80).collect(),
        })
    }
}

fn instant(field: &'static str, secs: i64) -> Result<DateTime<Utc>, DecodeError> {
    DateTime::<Utc>::from_timestamp(secs, 0).ok_or_else(|| DecodeError::OutOfRange {
        field,
        detail: format!("{secs} is not a representable instant"),
    })
}

impl Body {
    /// Check every field limit and the header's internal consistency.
    pub fn check(&self) -> Result<(), DecodeError> {
        let h = &self.header;
        check_site(&h.site)?;
        if h.version == 0 {
            return Err(DecodeError::OutOfRange {
                field: "version",
                detail: "versions start at 1".into(),
            });
        }
        if h.expires_at <= h.not_before {
            return Err(DecodeError::OutOfRange {
                field: "expires_at",
                detail: format!(
                    "{} is not after not_before {}",
                    h.expires_at.to_rfc3339(),
                    h.not_before.to_rfc3339()
                ),
            });
        }
        if h.grace_period_secs > MAX_GRACE_SECS {
            return Err(DecodeError::OutOfRange {
                field: "grace_period",
                detail: format!(
                    "{} s is over the limit of {MAX_GRACE_SECS} s",
                    h.grace_period_secs
                ),
            });
        }
        if self.policy.len() > MAX_POLICY_BYTES {
            return Err(DecodeError::LengthOverLimit {
                field: "policy",
                declared: self.policy.len(),
                limit: MAX_POLICY_BYTES,
            });
        }
        if let Some(root) = &self.trust_root {
            if root.len() > MAX_TRUST_ROOT_BYTES {
                return Err(DecodeError::LengthOverLimit {
                    field: "trust_root",
                    declared: root.len(),
                    limit: MAX_TRUST_ROOT_BYTES,
                });
            }
        }
        Ok(())
    }

    fn emit(&self, w: &mut Writer) {
        let h = &self.header;
        w.bytes_u8(h.site.as_bytes());
        w.u64(h.version);
        w.i64(h.issued_at.timestamp());
        w.i64(h.not_before.timestamp());
        w.i64(h.expires_at.timestamp());
        w.flag(h.previous_hash.is_some());
        if let Some(hash) = &h.previous_hash {
            w.raw(hash);
        }
        w.u64(h.grace_period_secs);
        w.bytes_u32(self.policy.as_bytes());
        w.flag(self.trust_root.is_some());
        if let Some(root) = &self.trust_root {
            w.bytes_u32(root);
        }
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let site_bytes = r.bytes_u8("site", MAX_SITE_BYTES)?;
        let site = String::from_utf8_lossy(site_bytes).into_owned();
        check_site(&site)?;
        let version = r.u64("version")?;
        let issued_at = instant("issued_at", r.i64("issued_at")?)?;
        let not_before = instant("not_before", r.i64("not_before")?)?;
        let expires_at = instant("expires_at", r.i64("expires_at")?)?;
        let previous_hash = if r.flag("previous_hash")? {
            Some(r.take_array::<32>("previous_hash")?)
        } else {
            None
        };
        let grace_period_secs = r.u64("grace_period")?;
        let policy = r.bytes_u32("policy", MAX_POLICY_BYTES)?;
        let policy = std::str::from_utf8(policy)
            .map_err(|e| DecodeError::PolicyNotUtf8 {
                valid_up_to: e.valid_up_to(),
            })?
            .to_owned();
        let trust_root = if r.flag("trust_root")? {
            Some(r.bytes_u32("trust_root", MAX_TRUST_ROOT_BYTES)?.to_vec())
        } else {
            None
        };
        let body = Body {
            header: Header {
                site,
                version,
                issued_at,
                not_before,
                expires_at,
                previous_hash,
                grace_period_secs,
            },
            policy,
            trust_root,
        };
        body.check()?;
        Ok(body)
    }
}

impl Bundle {
    /// An unsigned bundle of the current format holding `body` (whose limits are checked here;
    /// its policy should be the canonical form, which verification checks).
    pub fn new(body: Body) -> Result<Self, DecodeError> {
        Self::with_format(body, FORMAT_VERSION)
    }

    /// A format-1 bundle (policy as TOML source), for tests that old bundles stay readable.
    #[doc(hidden)]
    pub fn new_format_1(body: Body) -> Result<Self, DecodeError> {
        Self::with_format(body, FORMAT_TOML_POLICY)
    }

    fn with_format(mut body: Body, format: u16) -> Result<Self, DecodeError> {
        // Instants are whole seconds on the wire; keep the in-memory body equal to the decoded one.
        for t in [
            &mut body.header.issued_at,
            &mut body.header.not_before,
            &mut body.header.expires_at,
        ] {
            *t = instant("instant", t.timestamp())?;
        }
        body.check()?;
        let mut inner = Writer::with_capacity(body.policy.len() + 256);
        body.emit(&mut inner);
        let inner = inner.into_bytes();
        if inner.len() > MAX_BODY_BYTES {
            return Err(DecodeError::LengthOverLimit {
                field: "body",
                declared: inner.len(),
                limit: MAX_BODY_BYTES,
            });
        }
        let mut w = Writer::with_capacity(inner.len() + PREFIX_BYTES);
        w.raw(&MAGIC);
        w.u16(format);
        w.bytes_u32(&inner);
        Ok(Self {
            format,
            signed: w.into_bytes(),
            body,
            signatures: Vec::new(),
        })
    }

    /// Decode a bundle file's bytes (structure only; nothing is verified).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let magic = r.take_array::<4>("magic")?;
        if magic != MAGIC {
            return Err(DecodeError::BadMagic { found: magic });
        }
        let format = r.u16("format")?;
        if format != FORMAT_VERSION && format != FORMAT_TOML_POLICY {
            return Err(DecodeError::UnsupportedFormat { found: format });
        }
        let inner = r.bytes_u32("body", MAX_BODY_BYTES)?;
        let signed_len = r.offset();
        let mut body_reader = Reader::new(inner);
        let body = Body::parse(&mut body_reader)?;
        body_reader.expect_end("body")?;
        let count = usize::from(r.u16("signature_count")?);
        if count > MAX_SIGNATURES {
            return Err(DecodeError::TooManySignatures { count });
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
            format,
            signed,
            body,
            signatures,
        })
    }

    /// The format version it was written in ([`FORMAT_VERSION`] or [`FORMAT_TOML_POLICY`]).
    pub fn format(&self) -> u16 {
        self.format
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

    /// The exact bytes the signatures cover (after the context string).
    pub fn signed_part(&self) -> &[u8] {
        &self.signed
    }

    /// SHA-256 of the signed part: the bundle's identity.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(&self.signed).into()
    }

    /// The message each authority signs: the context string followed by the signed part.
    pub fn signing_message(&self) -> Vec<u8> {
        let mut message = Vec::with_capacity(SIGNATURE_CONTEXT.len() + self.signed.len());
        message.extend_from_slice(SIGNATURE_CONTEXT);
        message.extend_from_slice(&self.signed);
        message
    }

    /// The signed content.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.body.header
    }

    /// The signatures, in file order.
    pub fn signatures(&self) -> &[SignatureEntry] {
        &self.signatures
    }

    /// Add `key`'s signature. Refuses a key that has already signed and a full signature list.
    pub fn sign(&mut self, key: &AuthorityKey) -> Result<(), SignError> {
        let message = self.signing_message();
        add_signature(&mut self.signatures, key, &message)
    }

    /// Append a signature entry as is (tests build bad bundles with this).
    #[doc(hidden)]
    pub fn push_signature_unchecked(&mut self, entry: SignatureEntry) {
        self.signatures.push(entry);
    }
}

/// Add `key`'s signature over `message` to a signature list (bundles and review records):
/// refuses a key that has already signed and a full list.
pub(crate) fn add_signature(
    signatures: &mut Vec<SignatureEntry>,
    key: &AuthorityKey,
    message: &[u8],
) -> Result<(), SignError> {
    let key_id = key.key_id();
    if signatures.iter().any(|s| s.key_id == key_id) {
        return Err(SignError::AlreadySigned { key_id });
    }
    if signatures.len() >= MAX_SIGNATURES {
        return Err(SignError::Full {
            limit: MAX_SIGNATURES,
        });
    }
    let signature = key.sign_raw(message);
    signatures.push(SignatureEntry { key_id, signature });
    Ok(())
}

/// Misuse when signing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// This key has already signed this bundle.
    #[error("key {key_id} has already signed this bundle")]
    AlreadySigned {
        /// The key.
        key_id: KeyId,
    },
    /// The bundle already carries the most signatures allowed.
    #[error("the bundle already carries {limit} signatures, the most allowed")]
    Full {
        /// The limit.
        limit: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn sample_body() -> Body {
        Body {
            header: Header {
                site: "plant-a".into(),
                version: 3,
                issued_at: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
                not_before: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
                expires_at: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
                previous_hash: Some([9; 32]),
                grace_period_secs: 7 * 24 * 3600,
            },
            policy: "{\"site\":{\"id\":\"plant-a\"}}".into(),
            trust_root: Some(b"{}".to_vec()),
        }
    }

    #[test]
    fn encode_then_decode_returns_the_bundle() {
        let mut bundle = Bundle::new(sample_body()).unwrap();
        bundle
            .sign(&AuthorityKey::from_secret([1; 32], None))
            .unwrap();
        bundle
            .sign(&AuthorityKey::from_secret([2; 32], None))
            .unwrap();
        let bytes = bundle.encode();
        let decoded = Bundle::decode(&bytes).unwrap();
        assert_eq!(decoded, bundle);
        assert_eq!(decoded.encode(), bytes);
    }

    #[test]
    fn signing_does_not_change_the_hash() {
        let mut bundle = Bundle::new(sample_body()).unwrap();
        let before = bundle.hash();
        bundle
            .sign(&AuthorityKey::from_secret([1; 32], None))
            .unwrap();
        assert_eq!(bundle.hash(), before);
    }

    #[test]
    fn the_same_key_cannot_sign_twice() {
        let mut bundle = Bundle::new(sample_body()).unwrap();
        let key = AuthorityKey::from_secret([1; 32], None);
        bundle.sign(&key).unwrap();
        assert_eq!(
            bundle.sign(&key),
            Err(SignError::AlreadySigned {
                key_id: key.key_id()
            })
        );
    }

    #[test]
    fn every_truncation_is_refused() {
        let mut bundle = Bundle::new(sample_body()).unwrap();
        bundle
            .sign(&AuthorityKey::from_secret([1; 32], None))
            .unwrap();
        let bytes = bundle.encode();
        for len in 0..bytes.len() {
            assert!(
                Bundle::decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
    }

    #[test]
    fn bad_magic_format_and_trailing_bytes_are_refused() {
        let bytes = Bundle::new(sample_body()).unwrap().encode();
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(matches!(
            Bundle::decode(&bad),
            Err(DecodeError::BadMagic { .. })
        ));
        for unknown in [0, 3, 0xff] {
            let mut bad = bytes.clone();
            bad[5] = unknown;
            assert_eq!(
                Bundle::decode(&bad),
                Err(DecodeError::UnsupportedFormat {
                    found: u16::from(unknown)
                })
            );
        }
        // Format 1 (TOML policy) is still read, and keeps its format when re-encoded.
        let old = Bundle::new_format_1(sample_body()).unwrap();
        let decoded = Bundle::decode(&old.encode()).unwrap();
        assert_eq!((decoded.format(), decoded.encode()), (1, old.encode()));
        let mut bad = bytes;
        bad.push(0);
        assert_eq!(
            Bundle::decode(&bad),
            Err(DecodeError::TrailingBytes {
                after: "signatures",
                extra: 1
            })
        );
    }

    #[test]
    fn header_consistency_is_checked() {
        let mut body = sample_body();
        body.header.expires_at = body.header.not_before;
        assert!(matches!(
            Bundle::new(body),
            Err(DecodeError::OutOfRange {
                field: "expires_at",
                ..
            })
        ));
        let mut body = sample_body();
        body.header.site = "plant a".into();
        assert!(matches!(
            Bundle::new(body),
            Err(DecodeError::BadSiteId { .. })
        ));
        let mut body = sample_body();
        body.header.version = 0;
        assert!(matches!(
            Bundle::new(body),
            Err(DecodeError::OutOfRange {
                field: "version",
                ..
            })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = Bundle::decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_mutated_bundles(index in 0usize..400, value in proptest::prelude::any::<u8>()) {
            let mut bundle = Bundle::new(sample_body()).unwrap();
            bundle.sign(&AuthorityKey::from_secret([1; 32], None)).unwrap();
            let mut bytes = bundle.encode();
            let len = bytes.len();
            bytes[index % len] = value;
            if let Ok(decoded) = Bundle::decode(&bytes) {
                proptest::prop_assert_eq!(decoded.encode(), bytes);
            }
        }

        #[test]
        fn body_round_trips(version in 1u64.., grace in 0..=MAX_GRACE_SECS, policy in "\\PC{0,200}") {
            let mut body = sample_body();
            body.header.version = version;
            body.header.grace_period_secs = grace;
            body.policy = policy;
            let bundle = Bundle::new(body).unwrap();
            proptest::prop_assert_eq!(Bundle::decode(&bundle.encode()).unwrap(), bundle);
        }
    }
}
