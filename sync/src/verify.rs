//! Verification: the one place that turns untrusted bundle bytes into a [`VerifiedBundle`].
//!
//! A bundle is accepted only if, in this order: it is no larger than [`MAX_BUNDLE_BYTES`] and
//! decodes; each key signs at most once; enough signatures from distinct, listed, non-revoked keys
//! of the *current* trust root verify (M of N; revoked, unknown and failing signatures do not
//! count); it is for the root's site; its version is greater than the active one (the same version
//! with the same hash is [`Refusal::AlreadyActive`], with another hash a loud refusal); now is
//! inside `not_before - skew ..= expires_at + skew`; a trust root it carries raises the root
//! version, keeps the site and every revocation; and the policy inside validates.
//!
//! [`VerifiedBundle`] has private fields and no constructor besides [`verify`], so holding one
//! proves all of the above (the rustls `HandshakeSignatureValid` pattern). This module reads no
//! clock (`now` is passed in) and does no I/O.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::Signature;
use otgate_policy::Policy;

use crate::bundle::{self, Bundle, DecodeError, Header, MAX_BUNDLE_BYTES};
use crate::key::KeyId;
use crate::trust::{TrustRoot, TrustRootError};

/// What the appliance runs now, as far as verification needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveBundleInfo {
    /// The active bundle's version.
    pub version: u64,
    /// The active bundle's hash.
    pub hash: [u8; 32],
}

/// Why a bundle is refused. Every variant carries the numbers and names that explain it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    // --- malformed ---
    /// The file is larger than any bundle may be; it was not read whole.
    #[error("bundle is {size} bytes, over the limit of {limit} bytes")]
    Oversized {
        /// The limit.
        limit: u64,
        /// The offered size.
        size: u64,
    },
    /// The file ends early.
    #[error("bundle is truncated: {0}")]
    Truncated(DecodeError),
    /// The bytes are not a well-formed bundle.
    #[error("bundle is malformed: {0}")]
    Malformed(DecodeError),

    // --- signatures ---
    /// One key's signature appears more than once.
    #[error("key {key_id} signed more than once; a key counts once")]
    DuplicateSigner {
        /// The key.
        key_id: KeyId,
    },
    /// A signature by a revoked key, and not enough others.
    #[error(
        "signature by revoked key {key_id} does not count ({valid} valid of {required} required)"
    )]
    RevokedKey {
        /// The revoked key.
        key_id: KeyId,
        /// Valid signatures from usable keys.
        valid: usize,
        /// The threshold.
        required: usize,
    },
    /// A signature by a key the trust root does not list, and not enough others.
    #[error(
        "signature by unknown key {key_id} does not count ({valid} valid of {required} required)"
    )]
    UnknownKey {
        /// The unknown key.
        key_id: KeyId,
        /// Valid signatures from usable keys.
        valid: usize,
        /// The threshold.
        required: usize,
    },
    /// A listed key's signature does not verify (altered content), and not enough others.
    #[error("signature by key {key_id} does not verify: the bundle was altered after signing ({valid} valid of {required} required)")]
    BadSignature {
        /// The key whose signature failed.
        key_id: KeyId,
        /// Valid signatures from usable keys.
        valid: usize,
        /// The threshold.
        required: usize,
    },
    /// Fewer valid signatures than the threshold.
    #[error("{valid} valid signatures, {required} required")]
    NotEnoughSignatures {
        /// Valid signatures from usable keys.
        valid: usize,
        /// The threshold.
        required: usize,
    },
    /// A bundle carrying a new trust root with fewer valid signatures than the current threshold.
    #[error(
        "trust-root rotation signed by {valid} valid keys, the current root requires {required}"
    )]
    RotationBelowThreshold {
        /// Valid signatures from usable keys.
        valid: usize,
        /// The current root's threshold.
        required: usize,
    },

    // --- not for here or not now ---
    /// The bundle is for another site.
    #[error("bundle is for site {offered:?}, this appliance is site {expected:?}")]
    WrongSite {
        /// This appliance's site.
        expected: String,
        /// The bundle's site.
        offered: String,
    },
    /// The bundle's version is below the active one.
    #[error(
        "rollback refused: bundle version {offered} is older than the active version {active}"
    )]
    Rollback {
        /// The active version.
        active: u64,
        /// The offered version.
        offered: u64,
    },
    /// The same version as the active bundle with other content.
    #[error("bundle version {version} has hash {offered_hash}, but the active version {version} has hash {active_hash}: two different bundles carry the same version")]
    SameVersionDifferentContent {
        /// The version.
        version: u64,
        /// The active bundle's hash (hex).
        active_hash: String,
        /// The offered bundle's hash (hex).
        offered_hash: String,
    },
    /// Exactly the active bundle (not an error for importers: nothing to do).
    #[error("bundle version {version} is already active")]
    AlreadyActive {
        /// The version.
        version: u64,
    },
    /// Past its expiry, beyond the clock-skew tolerance.
    #[error("bundle expired at {expires_at}, now is {now}", expires_at = .expires_at.to_rfc3339(), now = .now.to_rfc3339())]
    Expired {
        /// When it expired.
        expires_at: DateTime<Utc>,
        /// The appliance's time.
        now: DateTime<Utc>,
    },
    /// Before its start, beyond the clock-skew tolerance.
    #[error("bundle is not valid before {not_before}, now is {now}", not_before = .not_before.to_rfc3339(), now = .now.to_rfc3339())]
    NotYetValid {
        /// When it becomes valid.
        not_before: DateTime<Utc>,
        /// The appliance's time.
        now: DateTime<Utc>,
    },

    // --- content ---
    /// The carried trust root does not parse or check.
    #[error("the bundle's new trust root is invalid: {0}")]
    BadTrustRoot(TrustRootError),
    /// The carried trust root does not raise the root version.
    #[error(
        "the bundle's trust root has version {offered}, not above the current root's {current}"
    )]
    TrustRootRollback {
        /// The current root version.
        current: u64,
        /// The carried root's version.
        offered: u64,
    },
    /// The carried trust root is for another site.
    #[error("the bundle's trust root is for site {offered:?}, not {expected:?}")]
    TrustRootWrongSite {
        /// This site.
        expected: String,
        /// The root's site.
        offered: String,
    },
    /// The carried trust root un-revokes a key.
    #[error(
        "the bundle's trust root drops the revocation of key {key_id}; a revoked key stays revoked"
    )]
    TrustRootDropsRevocation {
        /// The key.
        key_id: KeyId,
    },
    /// The policy inside is invalid (a valid signature over an invalid policy).
    #[error("the bundle's policy is invalid:\n{0}")]
    InvalidPolicy(otgate_policy::Diagnostics),
    /// The policy inside names another site than the bundle header.
    #[error("the bundle header is for site {header:?} but its policy is for site {policy:?}")]
    PolicySiteMismatch {
        /// The header's site.
        header: String,
        /// The policy's `[site] id`.
        policy: String,
    },
}

impl Refusal {
    /// A short snake_case name for journals and JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Oversized { .. } => "oversized",
            Refusal::Truncated(_) => "truncated",
            Refusal::Malformed(_) => "malformed",
            Refusal::DuplicateSigner { .. } => "duplicate_signer",
            Refusal::RevokedKey { .. } => "revoked_key",
            Refusal::UnknownKey { .. } => "unknown_key",
            Refusal::BadSignature { .. } => "bad_signature",
            Refusal::NotEnoughSignatures { .. } => "not_enough_signatures",
            Refusal::RotationBelowThreshold { .. } => "rotation_below_threshold",
            Refusal::WrongSite { .. } => "wrong_site",
            Refusal::Rollback { .. } => "rollback",
            Refusal::SameVersionDifferentContent { .. } => "same_version_different_content",
            Refusal::AlreadyActive { .. } => "already_active",
            Refusal::Expired { .. } => "expired",
            Refusal::NotYetValid { .. } => "not_yet_valid",
            Refusal::BadTrustRoot(_) => "bad_trust_root",
            Refusal::TrustRootRollback { .. } => "trust_root_rollback",
            Refusal::TrustRootWrongSite { .. } => "trust_root_wrong_site",
            Refusal::TrustRootDropsRevocation { .. } => "trust_root_drops_revocation",
            Refusal::InvalidPolicy(_) => "invalid_policy",
            Refusal::PolicySiteMismatch { .. } => "policy_site_mismatch",
        }
    }
}

impl From<DecodeError> for Refusal {
    fn from(error: DecodeError) -> Self {
        match error {
            DecodeError::Truncated { .. } => Refusal::Truncated(error),
            other => Refusal::Malformed(other),
        }
    }
}

/// A bundle that passed every acceptance rule against one trust root and one active bundle.
/// Only [`verify`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    bundle: Bundle,
    hash: [u8; 32],
    signers: Vec<KeyId>,
    new_root: Option<TrustRoot>,
    policy: Arc<Policy>,
}

impl VerifiedBundle {
    /// The header.
    pub fn header(&self) -> &Header {
        self.bundle.header()
    }

    /// The bundle's hash (SHA-256 of the signed part).
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// The keys whose signatures counted, in file order.
    pub fn signers(&self) -> &[KeyId] {
        &self.signers
    }

    /// The new trust root this bundle installs, if any (already checked against the current one).
    pub fn new_trust_root(&self) -> Option<&TrustRoot> {
        self.new_root.as_ref()
    }

    /// The policy as the bundle carries it (canonical JSON; TOML source in a format-1 bundle).
    pub fn policy_text(&self) -> &str {
        &self.bundle.body().policy
    }

    /// The validated policy.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The decoded bundle.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The bundle file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.bundle.encode()
    }
}

/// The file name diagnostics use for a bundle's policy.
pub const POLICY_FILE_NAME: &str = "bundle:policy.json";
/// The file name diagnostics use for the policy of a format-1 bundle (TOML source).
pub const POLICY_TOML_FILE_NAME: &str = "bundle:policy.toml";

/// Parse and validate the policy a bundle carries, in the encoding its format says: the
/// canonical JSON form (format 2) or TOML source (format 1). The same validation either way.
pub fn parse_policy(bundle: &Bundle) -> Result<Policy, otgate_policy::Diagnostics> {
    let text = &bundle.body().policy;
    if bundle.format() == bundle::FORMAT_TOML_POLICY {
        otgate_policy::parse(text, POLICY_TOML_FILE_NAME)
    } else {
        otgate_policy::parse_canonical(text.as_bytes(), POLICY_FILE_NAME)
    }
}

/// Verify `bytes` against `root` and what runs now; see the module doc for the rules, in order.
pub fn verify(
    bytes: &[u8],
    root: &TrustRoot,
    current: Option<&ActiveBundleInfo>,
    now: DateTime<Utc>,
    skew: TimeDelta,
) -> Result<VerifiedBundle, Refusal> {
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if size > MAX_BUNDLE_BYTES {
        return Err(Refusal::Oversized {
            limit: MAX_BUNDLE_BYTES,
            size,
        });
    }
    let bundle = Bundle::decode(bytes)?;
    let signers = count_signatures(&bundle, root)?;
    let header = bundle.header();
    if header.site != root.site() {
        return Err(Refusal::WrongSite {
            expected: root.site().to_owned(),
            offered: header.site.clone(),
        });
    }
    let hash = bundle.hash();
    if let Some(active) = current {
        if header.version < active.version {
            return Err(Refusal::Rollback {
                active: active.version,
                offered: header.version,
            });
        }
        if header.version == active.version {
            if hash == active.hash {
                return Err(Refusal::AlreadyActive {
                    version: header.version,
                });
            }
            return Err(Refusal::SameVersionDifferentContent {
                version: header.version,
                active_hash: bundle::hash_hex(&active.hash),
                offered_hash: bundle::hash_hex(&hash),
            });
        }
    }
    if now + skew < header.not_before {
        return Err(Refusal::NotYetValid {
            not_before: header.not_before,
            now,
        });
    }
    if now - skew > header.expires_at {
        return Err(Refusal::Expired {
            expires_at: header.expires_at,
            now,
        });
    }
    let new_root = match &bundle.body().trust_root {
        Some(json) => Some(check_rotation(json, root)?),
        None => None,
    };
    let policy = parse_policy(&bundle).map_err(Refusal::InvalidPolicy)?;
    if policy.site.id.as_str() != header.site {
        return Err(Refusal::PolicySiteMismatch {
            header: header.site.clone(),
            policy: policy.site.id.to_string(),
        });
    }
    Ok(VerifiedBundle {
        bundle,
        hash,
        signers,
        new_root,
        policy: Arc::new(policy),
    })
}

fn count_signatures(bundle: &Bundle, root: &TrustRoot) -> Result<Vec<KeyId>, Refusal> {
    let message = bundle.signing_message();
    let mut seen = BTreeSet::new();
    let mut valid = Vec::new();
    let (mut revoked, mut unknown, mut failed) = (None, None, None);
    for entry in bundle.signatures() {
        let key_id = entry.key_id;
        if !seen.insert(key_id) {
            return Err(Refusal::DuplicateSigner { key_id });
        }
        if root.is_revoked(&key_id) {
            revoked.get_or_insert(key_id);
            continue;
        }
        let Some(key) = root.key(&key_id) else {
            unknown.get_or_insert(key_id);
            continue;
        };
        let signature = Signature::from_bytes(&entry.signature);
        if key.verify_strict(&message, &signature).is_ok() {
            valid.push(key_id);
        } else {
            failed.get_or_insert(key_id);
        }
    }
    let required = root.threshold();
    let count = valid.len();
    if count >= required {
        return Ok(valid);
    }
    Err(if let Some(key_id) = revoked {
        Refusal::RevokedKey {
            key_id,
            valid: count,
            required,
        }
    } else if let Some(key_id) = unknown {
        Refusal::UnknownKey {
            key_id,
            valid: count,
            required,
        }
    } else if let Some(key_id) = failed {
        Refusal::BadSignature {
            key_id,
            valid: count,
            required,
        }
    } else if bundle.body().trust_root.is_some() {
        Refusal::RotationBelowThreshold {
            valid: count,
            required,
        }
    } else {
        Refusal::NotEnoughSignatures {
            valid: count,
            required,
        }
    })
}

fn check_rotation(json: &[u8], current: &TrustRoot) -> Result<TrustRoot, Refusal> {
    let offered = TrustRoot::from_json(json).map_err(Refusal::BadTrustRoot)?;
    if offered.site() != current.site() {
        return Err(Refusal::TrustRootWrongSite {
            expected: current.site().to_owned(),
            offered: offered.site().to_owned(),
        });
    }
    if offered.root_version() <= current.root_version() {
        return Err(Refusal::TrustRootRollback {
            current: current.root_version(),
            offered: offered.root_version(),
        });
    }
    if let Some(key_id) = current.revoked().find(|id| !offered.is_revoked(id)) {
        return Err(Refusal::TrustRootDropsRevocation { key_id: *key_id });
    }
    Ok(offered)
}
