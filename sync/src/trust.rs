//! The trust root: which authority keys may sign policy for a site, how many must (M of N), and
//! which keys are revoked for good. JSON, installed at provisioning (`otgate init --trust FILE`)
//! and replaced only by a bundle that carries a new root and is signed by the current root's
//! threshold (see `verify`).
//!
//! ```json
//! { "format": 1, "site": "plant-a", "root_version": 1, "threshold": 2,
//!   "keys": [ { "key_id": "1f2e...", "public_key": "ab...", "name": "hq-1" } ],
//!   "revoked": [ "77aa..." ] }
//! ```
//!
//! Parsing checks everything that can be checked without a clock: ids match keys, no duplicate
//! keys, a threshold between 1 and the number of usable (non-revoked) keys. No I/O besides the
//! bounded file reader, no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::key::{KeyError, KeyId, PublicKeyEntry};

/// The trust root JSON format this build reads and writes.
pub const TRUST_ROOT_FORMAT: u32 = 1;
/// The largest trust root file accepted.
pub const MAX_TRUST_ROOT_FILE_BYTES: u64 = 64 * 1024;
/// The most keys a trust root may list.
pub const MAX_KEYS: usize = 64;

/// The trust root as stored and shipped (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRootFile {
    /// Always [`TRUST_ROOT_FORMAT`].
    pub format: u32,
    /// The site this root guards.
    pub site: String,
    /// Increases with every rotation; a rotation must raise it.
    pub root_version: u64,
    /// How many distinct, non-revoked keys must sign (M of N).
    pub threshold: usize,
    /// The authority keys.
    pub keys: Vec<PublicKeyEntry>,
    /// Keys whose signatures never count again.
    #[serde(default)]
    pub revoked: Vec<KeyId>,
}

/// Why a trust root is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustRootError {
    /// The JSON does not parse as a trust root.
    #[error("not a trust root: {0}")]
    Json(#[from] serde_json::Error),
    /// An unknown trust root format.
    #[error("trust root format {found} is not supported (this build reads {TRUST_ROOT_FORMAT})")]
    UnsupportedFormat {
        /// The format found.
        found: u32,
    },
    /// A key entry is invalid.
    #[error("key {key_id}: {source}")]
    BadKey {
        /// The entry's stated id.
        key_id: KeyId,
        /// What is wrong with it.
        source: KeyError,
    },
    /// A key is listed twice.
    #[error("key {key_id} is listed twice")]
    DuplicateKey {
        /// The key.
        key_id: KeyId,
    },
    /// Too many keys.
    #[error("{count} keys, over the limit of {MAX_KEYS}")]
    TooManyKeys {
        /// How many.
        count: usize,
    },
    /// The threshold is 0 or larger than the usable keys.
    #[error("threshold {threshold} is impossible with {usable} usable (non-revoked) keys; it must be 1..={usable}")]
    BadThreshold {
        /// The threshold.
        threshold: usize,
        /// Keys that are listed and not revoked.
        usable: usize,
    },
    /// The site id is not a valid site id.
    #[error("site id {site:?} is not 1-64 characters of [A-Za-z0-9._-]")]
    BadSite {
        /// The site id.
        site: String,
    },
    /// The file is larger than any trust root can be.
    #[error("{size} bytes is too large for a trust root (limit {limit})")]
    Oversized {
        /// The size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Reading the file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A checked trust root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRoot {
    file: TrustRootFile,
    keys: BTreeMap<KeyId, VerifyingKey>,
    revoked: BTreeSet<KeyId>,
}

impl TrustRoot {
    /// Check a trust root.
    pub fn new(file: TrustRootFile) -> Result<Self, TrustRootError> {
        if file.format != TRUST_ROOT_FORMAT {
            return Err(TrustRootError::UnsupportedFormat { found: file.format });
        }
        let site_ok = !file.site.is_empty()
            && file.site.len() <= crate::bundle::MAX_SITE_BYTES
            && file
                .site
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !site_ok {
            return Err(TrustRootError::BadSite {
                site: file.site.chars().take(80).collect(),
            });
        }
        if file.keys.len() > MAX_KEYS || file.revoked.len() > MAX_KEYS * 4 {
            return Err(TrustRootError::TooManyKeys {
                count: file.keys.len().max(file.revoked.len()),
            });
        }
        let mut keys = BTreeMap::new();
        for entry in &file.keys {
            let key = entry
                .verifying_key()
                .map_err(|source| TrustRootError::BadKey {
                    key_id: entry.key_id,
                    source,
                })?;
            if keys.insert(entry.key_id, key).is_some() {
                return Err(TrustRootError::DuplicateKey {
                    key_id: entry.key_id,
                });
            }
        }
        let revoked: BTreeSet<KeyId> = file.revoked.iter().copied().collect();
        let usable = keys.keys().filter(|id| !revoked.contains(id)).count();
        if file.threshold == 0 || file.threshold > usable {
            return Err(TrustRootError::BadThreshold {
                threshold: file.threshold,
                usable,
            });
        }
        Ok(Self {
            file,
            keys,
            revoked,
        })
    }

    /// Parse and check trust root JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, TrustRootError> {
        Self::new(serde_json::from_slice(bytes)?)
    }

    /// Read, parse and check a trust root file (size checked before reading).
    pub fn load(path: &Path) -> Result<Self, TrustRootError> {
        let size = std::fs::metadata(path)?.len();
        if size > MAX_TRUST_ROOT_FILE_BYTES {
            return Err(TrustRootError::Oversized {
                size,
                limit: MAX_TRUST_ROOT_FILE_BYTES,
            });
        }
        Self::from_json(&std::fs::read(path)?)
    }

    /// Pretty JSON of the root, ending in a newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.file).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The stored form.
    pub fn file(&self) -> &TrustRootFile {
        &self.file
    }

    /// The site this root guards.
    pub fn site(&self) -> &str {
        &self.file.site
    }

    /// The root's version.
    pub fn root_version(&self) -> u64 {
        self.file.root_version
    }

    /// M of M-of-N.
    pub fn threshold(&self) -> usize {
        self.file.threshold
    }

    /// The key with this id, if listed (revoked or not).
    pub fn key(&self, key_id: &KeyId) -> Option<&VerifyingKey> {
        self.keys.get(key_id)
    }

    /// Whether this key's signatures never count again.
    pub fn is_revoked(&self, key_id: &KeyId) -> bool {
        self.revoked.contains(key_id)
    }

    /// Every revoked key id.
    pub fn revoked(&self) -> impl Iterator<Item = &KeyId> {
        self.revoked.iter()
    }

    /// Every listed key id.
    pub fn key_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::AuthorityKey;

    fn root_file(threshold: usize) -> TrustRootFile {
        TrustRootFile {
            format: 1,
            site: "plant-a".into(),
            root_version: 1,
            threshold,
            keys: (1..=3)
                .map(|i| AuthorityKey::from_secret([i; 32], None).public_entry())
                .collect(),
            revoked: vec![],
        }
    }

    #[test]
    fn a_good_root_round_trips_through_json() {
        let root = TrustRoot::new(root_file(2)).unwrap();
        assert_eq!(
            TrustRoot::from_json(root.to_json().as_bytes()).unwrap(),
            root
        );
    }

    #[test]
    fn impossible_thresholds_are_refused() {
        assert!(matches!(
            TrustRoot::new(root_file(0)),
            Err(TrustRootError::BadThreshold {
                threshold: 0,
                usable: 3
            })
        ));
        assert!(matches!(
            TrustRoot::new(root_file(4)),
            Err(TrustRootError::BadThreshold {
                threshold: 4,
                usable: 3
            })
        ));
        let mut file = root_file(3);
        file.revoked.push(file.keys[0].key_id);
        assert!(matches!(
            TrustRoot::new(file),
            Err(TrustRootError::BadThreshold {
                threshold: 3,
                usable: 2
            })
        ));
    }

    #[test]
    fn duplicate_and_mismatched_keys_are_refused() {
        let mut file = root_file(2);
        file.keys.push(file.keys[0].clone());
        assert!(matches!(
            TrustRoot::new(file),
            Err(TrustRootError::DuplicateKey { .. })
        ));
        let mut file = root_file(2);
        file.keys[1].key_id = file.keys[0].key_id;
        assert!(matches!(
            TrustRoot::new(file),
            Err(TrustRootError::BadKey { .. })
        ));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let root = TrustRoot::new(root_file(2)).unwrap();
        let text = root.to_json().replacen('{', "{\"extra\": 1,", 1);
        assert!(matches!(
            TrustRoot::from_json(text.as_bytes()),
            Err(TrustRootError::Json(_))
        ));
    }
}
