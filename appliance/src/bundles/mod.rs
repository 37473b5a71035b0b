//! The appliance side of signed policy: the installed trust root, the active bundle and the last
//! good one on disk, and their atomic, journaled activation. Verification itself is
//! `otgate-sync`; this module only ever activates what [`otgate_sync::verify`] returned.
//!
//! ```text
//! DATA_DIR/trust/root.json          the trust root (installed at init, replaced by rotations)
//! DATA_DIR/policy/bundles/<hash>.otgb   the active and the previous (last good) bundle files
//! DATA_DIR/policy/current.json      which of them is active and which is previous (one rename)
//! DATA_DIR/policy/pull.json         the last pull attempt and its result
//! DATA_DIR/policy/standing.json     the last grace transition journaled
//! ```
//!
//! While the daemon runs, [`live`] keeps the active bundle's validity in memory, serves the
//! control socket's imports and pulls, runs the periodic pull configured by `[sync]`
//! ([`config`]) and watches the standing (grace, lapse).
//!
//! Guarantees: a refusal is journaled and changes no file; an activation is journaled (with the
//! bundle hash) before the pointer switches; the switch is one `rename` of `current.json`, so a
//! crash leaves either the old or the new policy active, never a mix. A trust root carried by a
//! bundle is written after the switch; until then the active bundle's root is the newer one and
//! [`trust_root`] returns it (and repairs `root.json`). Expiry never widens access: after the
//! grace period only break-glass works ([`Standing::Lapsed`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use otgate_policy::Policy;
use otgate_sync::bundle::{hash_hex, Bundle, MAX_BUNDLE_BYTES};
use otgate_sync::{ActiveBundleInfo, KeyId, Refusal, TrustRoot};
use serde::{Deserialize, Serialize};

use crate::datadir::DataDir;
use crate::journal::event::PolicyEvent;

pub mod config;
pub mod live;
use crate::journal::{Event, Journal, JournalError};

/// The clock skew tolerated at either end of a bundle's validity unless configured otherwise.
pub const DEFAULT_SKEW: TimeDelta = TimeDelta::minutes(5);

/// Longest refusal message kept in a journal record.
const MAX_MESSAGE_CHARS: usize = 4000;

/// Why a bundle operation on the appliance failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundlesError {
    /// The bundle was refused (journaled; nothing changed).
    #[error("bundle refused: {0}")]
    Refused(#[from] Refusal),
    /// No trust root is installed.
    #[error("no trust root is installed at {}", path.display())]
    NoTrustRoot {
        /// Where it should be.
        path: PathBuf,
    },
    /// The trust root file is unusable.
    #[error("trust root {}: {source}", path.display())]
    BadTrustRoot {
        /// The file.
        path: PathBuf,
        /// Why.
        source: otgate_sync::trust::TrustRootError,
    },
    /// A different trust root is already installed (rotations come only through bundles).
    #[error("a different trust root (site {site}, version {root_version}) is already installed at {}", path.display())]
    TrustRootAlreadyInstalled {
        /// The installed file.
        path: PathBuf,
        /// Its site.
        site: String,
        /// Its version.
        root_version: u64,
    },
    /// The policy directory holds something inconsistent.
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The journal refused the record, so nothing took effect.
    #[error("journaling the policy change failed, nothing changed: {0}")]
    Journal(#[from] JournalError),
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> BundlesError + 'a {
    move |source| BundlesError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// Layout

fn root_path(dd: &DataDir) -> PathBuf {
    dd.trust_dir().join("root.json")
}

fn bundles_dir(dd: &DataDir) -> PathBuf {
    dd.policy_dir().join("bundles")
}

fn bundle_path(dd: &DataDir, hash: &[u8; 32]) -> PathBuf {
    bundles_dir(dd).join(format!("{}.otgb", hash_hex(hash)))
}

fn current_path(dd: &DataDir) -> PathBuf {
    dd.policy_dir().join("current.json")
}

fn pull_path(dd: &DataDir) -> PathBuf {
    dd.policy_dir().join("pull.json")
}

fn standing_path(dd: &DataDir) -> PathBuf {
    dd.policy_dir().join("standing.json")
}

/// Write through a temporary file, `fsync`, `rename` and an `fsync` of the directory: readers and
/// crashes see the old or the new file, never a mix.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BundlesError> {
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io("write", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io("rename into place", path))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Read a file of at most `limit` bytes, refusing a larger one by its size before reading it.
fn read_limited(path: &Path, limit: u64) -> Result<Result<Vec<u8>, (u64, u64)>, BundlesError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(io("open", path))?;
    let size = file.metadata().map_err(io("stat", path))?.len();
    if size > limit {
        return Ok(Err((limit, size)));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io("read", path))?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > limit {
        return Ok(Err((limit, read)));
    }
    Ok(Ok(bytes))
}

// ---------------------------------------------------------------------------------------------
// Trust root

/// Install the trust root from `path` at provisioning (`otgate init --trust FILE`). Installing
/// the same root again is a no-op; a different one is refused (rotations come only through
/// bundles). The caller journals [`trust_root_installed_event`] once the journal exists.
pub fn install_trust_root(dd: &DataDir, path: &Path) -> Result<TrustRoot, BundlesError> {
    let root = TrustRoot::load(path).map_err(|source| BundlesError::BadTrustRoot {
        path: path.to_path_buf(),
        source,
    })?;
    let target = root_path(dd);
    if target.exists() {
        let installed = TrustRoot::load(&target).map_err(|source| BundlesError::BadTrustRoot {
            path: target.clone(),
            source,
        })?;
        if installed == root {
            return Ok(root);
        }
        return Err(BundlesError::TrustRootAlreadyInstalled {
            path: target,
            site: installed.site().to_owned(),
            root_version: installed.root_version(),
        });
    }
    write_atomic(&target, root.to_json().as_bytes())?;
    Ok(root)
}

/// The fingerprint of a trust root: SHA-256 (hex) of its canonical JSON, as `trust/root.json`
/// holds it.
pub fn trust_root_fingerprint(root: &TrustRoot) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(root.to_json().as_bytes()))
}

/// The journal record for an installed trust root: which keys, threshold, site and fingerprint.
pub fn trust_root_installed_event(root: &TrustRoot) -> Event {
    Event::Policy(PolicyEvent::TrustRootInstalled {
        fingerprint: trust_root_fingerprint(root),
        site: root.site().to_owned(),
        root_version: root.root_version(),
        threshold: root.threshold(),
        keys: root.key_ids().map(ToString::to_string).collect(),
        revoked: root.revoked().map(ToString::to_string).collect(),
    })
}

/// The trust root in force: the installed one, or the one carried by the active bundle if that
/// is newer (a crash between activation and writing `root.json`; this repairs the file).
pub fn trust_root(dd: &DataDir) -> Result<TrustRoot, BundlesError> {
    let path = root_path(dd);
    if !path.exists() {
        return Err(BundlesError::NoTrustRoot { path });
    }
    let installed = TrustRoot::load(&path).map_err(|source| BundlesError::BadTrustRoot {
        path: path.clone(),
        source,
    })?;
    if let Some(current) = read_current(dd)? {
        if let Ok(bundle) = read_stored_bundle(dd, &current.active) {
            if let Some(json) = &bundle.body().trust_root {
                if let Ok(carried) = TrustRoot::from_json(json) {
                    if carried.root_version() > installed.root_version() {
                        tracing::warn!(
                            from = installed.root_version(),
                            to = carried.root_version(),
                            "completing an interrupted trust-root rotation"
                        );
                        write_atomic(&path, carried.to_json().as_bytes())?;
                        return Ok(carried);
                    }
                }
            }
        }
    }
    Ok(installed)
}

// ---------------------------------------------------------------------------------------------
// The pointer to the active and previous bundle

/// One stored bundle as `current.json` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRef {
    /// Bundle version.
    pub version: u64,
    /// Bundle hash (hex).
    pub hash: String,
    /// The keys whose signatures counted at activation.
    pub signers: Vec<KeyId>,
    /// When it was activated here.
    pub activated_at: DateTime<Utc>,
    /// Where it came from.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Current {
    active: StoredRef,
    previous: Option<StoredRef>,
}

fn read_current(dd: &DataDir) -> Result<Option<Current>, BundlesError> {
    let path = current_path(dd);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| BundlesError::Corrupt {
                path,
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", &path)(e)),
    }
}

fn parse_hash(text: &str, path: &Path) -> Result<[u8; 32], BundlesError> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).map_err(|_| BundlesError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("bad hash {text:?}"),
    })?;
    Ok(hash)
}

/// Read a stored bundle and check that its content still has the hash it was stored under.
fn read_stored_bundle(dd: &DataDir, stored: &StoredRef) -> Result<Bundle, BundlesError> {
    let hash = parse_hash(&stored.hash, &current_path(dd))?;
    let path = bundle_path(dd, &hash);
    let bytes = match read_limited(&path, MAX_BUNDLE_BYTES)? {
        Ok(bytes) => bytes,
        Err((limit, size)) => {
            return Err(BundlesError::Corrupt {
                path,
                reason: format!("{size} bytes, over the limit of {limit}"),
            })
        }
    };
    let bundle = Bundle::decode(&bytes).map_err(|e| BundlesError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if bundle.hash() != hash {
        return Err(BundlesError::Corrupt {
            path,
            reason: format!(
                "content hash {} differs from its name",
                hash_hex(&bundle.hash())
            ),
        });
    }
    Ok(bundle)
}

/// The active bundle's version and hash, as verification needs them.
pub fn active_info(dd: &DataDir) -> Result<Option<ActiveBundleInfo>, BundlesError> {
    match read_current(dd)? {
        Some(current) => Ok(Some(ActiveBundleInfo {
            version: current.active.version,
            hash: parse_hash(&current.active.hash, &current_path(dd))?,
        })),
        None => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------
// The active policy

/// Where the active bundle stands in time. Expiry never widens access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "standing", rename_all = "snake_case")]
pub enum Standing {
    /// Inside its validity.
    Valid {
        /// When it expires.
        expires_at: DateTime<Utc>,
    },
    /// Expired, enforced on grace because no newer bundle is installed. Loud.
    Grace {
        /// When it expired.
        expired_at: DateTime<Utc>,
        /// When the grace ends.
        grace_until: DateTime<Utc>,
    },
    /// Past its grace: only break-glass works until a newer bundle is installed.
    Lapsed {
        /// When the grace ended.
        grace_until: DateTime<Utc>,
    },
}

impl Standing {
    /// Short snake_case name.
    pub fn name(&self) -> &'static str {
        match self {
            Standing::Valid { .. } => "valid",
            Standing::Grace { .. } => "grace",
            Standing::Lapsed { .. } => "lapsed",
        }
    }

    /// Whether only break-glass may be granted.
    pub fn breakglass_only(&self) -> bool {
        matches!(self, Standing::Lapsed { .. })
    }
}

/// What decides the active bundle's standing: its identity and its validity. Cheap to copy, so
/// the daemon keeps it in memory and asks [`BundleValidity::standing`] on every decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BundleValidity {
    /// Bundle version.
    pub version: u64,
    /// Bundle hash.
    #[serde(serialize_with = "serialize_hash")]
    pub hash: [u8; 32],
    /// Valid until (then grace).
    pub expires_at: DateTime<Utc>,
    /// When the grace period ends (then only break-glass).
    pub grace_until: DateTime<Utc>,
}

fn serialize_hash<S: serde::Serializer>(hash: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hash_hex(hash))
}

impl BundleValidity {
    fn of(header: &otgate_sync::bundle::Header, hash: [u8; 32]) -> Self {
        let grace = TimeDelta::seconds(i64::try_from(header.grace_period_secs).unwrap_or(i64::MAX));
        Self {
            version: header.version,
            hash,
            expires_at: header.expires_at,
            grace_until: header
                .expires_at
                .checked_add_signed(grace)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// Where the bundle stands at `now`: valid, on grace, or lapsed (only break-glass).
    pub fn standing(&self, now: DateTime<Utc>) -> Standing {
        if now <= self.expires_at {
            Standing::Valid {
                expires_at: self.expires_at,
            }
        } else if now <= self.grace_until {
            Standing::Grace {
                expired_at: self.expires_at,
                grace_until: self.grace_until,
            }
        } else {
            Standing::Lapsed {
                grace_until: self.grace_until,
            }
        }
    }
}

/// The policy in force, from the active bundle on disk.
#[derive(Debug, Clone)]
pub struct ActivePolicy {
    /// The validated policy.
    pub policy: Arc<Policy>,
    /// The site.
    pub site: String,
    /// Bundle version.
    pub version: u64,
    /// Bundle hash.
    pub hash: [u8; 32],
    /// The keys whose signatures counted at activation.
    pub signers: Vec<KeyId>,
    /// When HQ issued it.
    pub issued_at: DateTime<Utc>,
    /// Valid from.
    pub not_before: DateTime<Utc>,
    /// Valid until (then grace).
    pub expires_at: DateTime<Utc>,
    /// Offline grace after expiry.
    pub grace_period: TimeDelta,
    /// When it was activated here.
    pub activated_at: DateTime<Utc>,
    /// Where it came from.
    pub source: String,
    /// Set when the active bundle file was damaged and the last good one is in force instead.
    pub degraded: Option<String>,
}

impl ActivePolicy {
    fn from_bundle(
        dd: &DataDir,
        bundle: &Bundle,
        stored: &StoredRef,
        degraded: Option<String>,
    ) -> Result<Self, BundlesError> {
        let header = bundle.header();
        let policy =
            otgate_sync::verify::parse_policy(bundle).map_err(|d| BundlesError::Corrupt {
                path: bundle_path(dd, &bundle.hash()),
                reason: format!("the stored policy no longer parses: {d}"),
            })?;
        Ok(Self {
            policy: Arc::new(policy),
            site: header.site.clone(),
            version: header.version,
            hash: bundle.hash(),
            signers: stored.signers.clone(),
            issued_at: header.issued_at,
            not_before: header.not_before,
            expires_at: header.expires_at,
            grace_period: TimeDelta::seconds(
                i64::try_from(header.grace_period_secs).unwrap_or(i64::MAX),
            ),
            activated_at: stored.activated_at,
            source: stored.source.clone(),
            degraded,
        })
    }

    /// When the grace period ends.
    pub fn grace_until(&self) -> DateTime<Utc> {
        self.validity().grace_until
    }

    /// Its identity and validity.
    pub fn validity(&self) -> BundleValidity {
        BundleValidity {
            version: self.version,
            hash: self.hash,
            expires_at: self.expires_at,
            grace_until: self
                .expires_at
                .checked_add_signed(self.grace_period)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// Where the bundle stands at `now`.
    pub fn standing(&self, now: DateTime<Utc>) -> Standing {
        self.validity().standing(now)
    }
}

/// The policy in force, or `None` before the first bundle. If the active bundle file is
/// damaged, the last good one is returned with `degraded` set (and an error is traced).
pub fn load_active(dd: &DataDir) -> Result<Option<ActivePolicy>, BundlesError> {
    let Some(current) = read_current(dd)? else {
        return Ok(None);
    };
    match read_stored_bundle(dd, &current.active) {
        Ok(bundle) => Ok(Some(ActivePolicy::from_bundle(
            dd,
            &bundle,
            &current.active,
            None,
        )?)),
        Err(error) => {
            let Some(previous) = &current.previous else {
                return Err(error);
            };
            let bundle = read_stored_bundle(dd, previous)?;
            let note = format!(
                "active bundle v{} is damaged ({error}); enforcing the last good v{}",
                current.active.version, previous.version
            );
            tracing::error!("{note}");
            Ok(Some(ActivePolicy::from_bundle(
                dd,
                &bundle,
                previous,
                Some(note),
            )?))
        }
    }
}

/// The active bundle's validity without parsing its policy (the daemon reads it at start); the
/// last good bundle's when the active file is damaged, as [`load_active`] does.
pub fn active_validity(dd: &DataDir) -> Result<Option<BundleValidity>, BundlesError> {
    let Some(current) = read_current(dd)? else {
        return Ok(None);
    };
    let bundle = match read_stored_bundle(dd, &current.active) {
        Ok(bundle) => bundle,
        Err(error) => match &current.previous {
            Some(previous) => read_stored_bundle(dd, previous)?,
            None => return Err(error),
        },
    };
    Ok(Some(BundleValidity::of(bundle.header(), bundle.hash())))
}

// ---------------------------------------------------------------------------------------------
// Import

/// How an import runs.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Clock skew tolerated at either end of the validity.
    pub skew: TimeDelta,
    /// Where the bytes came from, for the journal (`file:<path>`, `pull:<url>`).
    pub source: String,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            skew: DEFAULT_SKEW,
            source: "import".into(),
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportOutcome {
    /// The bundle is now the active policy.
    Activated {
        /// Its version.
        version: u64,
        /// Its hash.
        hash: [u8; 32],
        /// The version it replaced.
        previous_version: Option<u64>,
        /// The trust root version now in force, if the bundle rotated it.
        rotated_root_to: Option<u64>,
    },
    /// The bundle is exactly the active one: nothing to do.
    Unchanged {
        /// Its version.
        version: u64,
        /// Its hash.
        hash: [u8; 32],
    },
}

/// Verify `bytes` and activate them, journaling the activation or the refusal.
pub fn import(
    dd: &DataDir,
    journal: &Journal,
    bytes: &[u8],
    now: DateTime<Utc>,
) -> Result<ImportOutcome, BundlesError> {
    import_with(dd, journal, bytes, now, &ImportOptions::default())
}

/// [`import`] of a file, refusing (and journaling) an oversized file before reading it whole.
pub fn import_file(
    dd: &DataDir,
    journal: &Journal,
    path: &Path,
    now: DateTime<Utc>,
    options: &ImportOptions,
) -> Result<ImportOutcome, BundlesError> {
    import_file_verified(dd, journal, path, now, options).map(|i| i.outcome)
}

/// [`import_file`], also handing back the newly active policy (for the running daemon).
pub fn import_file_verified(
    dd: &DataDir,
    journal: &Journal,
    path: &Path,
    now: DateTime<Utc>,
    options: &ImportOptions,
) -> Result<Imported, BundlesError> {
    match read_limited(path, MAX_BUNDLE_BYTES)? {
        Ok(bytes) => import_verified(dd, journal, &bytes, now, options),
        Err((limit, size)) => Err(refuse(
            journal,
            Refusal::Oversized { limit, size },
            None,
            options,
        )),
    }
}

/// [`import`] with options.
pub fn import_with(
    dd: &DataDir,
    journal: &Journal,
    bytes: &[u8],
    now: DateTime<Utc>,
    options: &ImportOptions,
) -> Result<ImportOutcome, BundlesError> {
    import_verified(dd, journal, bytes, now, options).map(|i| i.outcome)
}

/// What an import did, and when it activated a bundle, the policy now in force (already
/// verified and parsed: the daemon enforces it without reading it again).
#[derive(Debug, Clone)]
pub struct Imported {
    /// What happened.
    pub outcome: ImportOutcome,
    /// The activated policy and its validity (`None` when nothing changed).
    pub activated: Option<(Arc<Policy>, BundleValidity)>,
}

/// [`import_with`], also handing back the newly active policy.
pub fn import_verified(
    dd: &DataDir,
    journal: &Journal,
    bytes: &[u8],
    now: DateTime<Utc>,
    options: &ImportOptions,
) -> Result<Imported, BundlesError> {
    let root = trust_root(dd)?;
    let current = read_current(dd)?;
    let active = active_info(dd)?;
    let verified = match otgate_sync::verify(bytes, &root, active.as_ref(), now, options.skew) {
        Ok(verified) => verified,
        Err(Refusal::AlreadyActive { version }) => {
            let hash = active.map(|a| a.hash).unwrap_or_default();
            return Ok(Imported {
                outcome: ImportOutcome::Unchanged { version, hash },
                activated: None,
            });
        }
        Err(refusal) => {
            return Err(refuse(
                journal,
                refusal,
                Bundle::decode(bytes).ok(),
                options,
            ))
        }
    };
    let header = verified.header().clone();
    let hash = verified.hash();

    // The file goes into place first (not yet active), then the journal, then the pointer.
    let stored_path = bundle_path(dd, &hash);
    write_atomic(&stored_path, &verified.encode())?;

    journal.append_blocking(Event::Policy(PolicyEvent::BundleActivated {
        site: header.site.clone(),
        version: header.version,
        hash: hash_hex(&hash),
        previous_version: current.as_ref().map(|c| c.active.version),
        previous_hash: current.as_ref().map(|c| c.active.hash.clone()),
        signers: verified.signers().iter().map(ToString::to_string).collect(),
        issued_at: header.issued_at,
        not_before: header.not_before,
        expires_at: header.expires_at,
        grace_period_secs: header.grace_period_secs,
        source: options.source.clone(),
    }))?;
    if let Some(next) = verified.new_trust_root() {
        journal.append_blocking(Event::Policy(PolicyEvent::TrustRootRotated {
            from_version: root.root_version(),
            to_version: next.root_version(),
            threshold: next.threshold(),
            keys: next.key_ids().map(ToString::to_string).collect(),
            revoked: next.revoked().map(ToString::to_string).collect(),
            bundle_hash: hash_hex(&hash),
        }))?;
    }

    let next_current = Current {
        active: StoredRef {
            version: header.version,
            hash: hash_hex(&hash),
            signers: verified.signers().to_vec(),
            activated_at: now,
            source: options.source.clone(),
        },
        previous: current.as_ref().map(|c| c.active.clone()),
    };
    let switched = serde_json::to_vec_pretty(&next_current)
        .map_err(|e| BundlesError::Corrupt {
            path: current_path(dd),
            reason: e.to_string(),
        })
        .and_then(|json| write_atomic(&current_path(dd), &json));
    if let Err(error) = switched {
        let _ = journal.append_reserved_blocking(Event::Policy(PolicyEvent::ActivationFailed {
            version: header.version,
            hash: hash_hex(&hash),
            error: error.to_string(),
        }));
        return Err(error);
    }
    let rotated_root_to = match verified.new_trust_root() {
        Some(next) => {
            write_atomic(&root_path(dd), next.to_json().as_bytes())?;
            Some(next.root_version())
        }
        None => None,
    };
    prune(dd, &next_current);
    tracing::info!(version = header.version, hash = %hash_hex(&hash), "policy bundle activated");
    Ok(Imported {
        outcome: ImportOutcome::Activated {
            version: header.version,
            hash,
            previous_version: current.map(|c| c.active.version),
            rotated_root_to,
        },
        activated: Some((
            Arc::clone(verified.policy()),
            BundleValidity::of(&header, hash),
        )),
    })
}

/// Journal a refusal (from the reserve: it is a denial) and turn it into the error.
fn refuse(
    journal: &Journal,
    refusal: Refusal,
    decoded: Option<Bundle>,
    options: &ImportOptions,
) -> BundlesError {
    let message: String = refusal
        .to_string()
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .collect();
    let event = Event::Policy(PolicyEvent::BundleRefused {
        reason: refusal.kind().to_owned(),
        message,
        offered_version: decoded.as_ref().map(|b| b.header().version),
        offered_hash: decoded.as_ref().map(|b| hash_hex(&b.hash())),
        source: options.source.clone(),
    });
    if let Err(error) = journal.append_reserved_blocking(event) {
        tracing::error!(%error, "could not journal a bundle refusal");
    }
    tracing::warn!(reason = refusal.kind(), "policy bundle refused: {refusal}");
    BundlesError::Refused(refusal)
}

/// Remove stored bundles other than the active and the previous one.
fn prune(dd: &DataDir, current: &Current) {
    let keep: Vec<String> = std::iter::once(&current.active)
        .chain(current.previous.as_ref())
        .map(|r| format!("{}.otgb", r.hash))
        .collect();
    if let Ok(entries) = std::fs::read_dir(bundles_dir(dd)) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".otgb") && !keep.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Grace transitions

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StandingMark {
    hash: String,
    standing: String,
}

/// Journal the active bundle's grace transitions (`grace_started`, `grace_ended`) once each, and
/// return where it stands. The daemon calls this periodically; it is loud by design.
pub fn note_standing(
    dd: &DataDir,
    journal: &Journal,
    now: DateTime<Utc>,
) -> Result<Option<Standing>, BundlesError> {
    let Some(active) = load_active(dd)? else {
        return Ok(None);
    };
    note_standing_of(dd, journal, &active.validity(), now).map(Some)
}

/// [`note_standing`] for a bundle whose validity is known (the daemon keeps it in memory, so
/// it does not re-read and re-parse the policy to ask).
pub fn note_standing_of(
    dd: &DataDir,
    journal: &Journal,
    active: &BundleValidity,
    now: DateTime<Utc>,
) -> Result<Standing, BundlesError> {
    let standing = active.standing(now);
    let hash = hash_hex(&active.hash);
    let path = standing_path(dd);
    let mark: Option<StandingMark> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let already = mark
        .as_ref()
        .is_some_and(|m| m.hash == hash && m.standing == standing.name());
    if !already {
        match standing {
            Standing::Valid { .. } => {}
            Standing::Grace {
                expired_at,
                grace_until,
            } => {
                tracing::error!(version = active.version, %grace_until, "policy bundle expired: enforcing it on grace");
                journal.append_reserved_blocking(Event::Policy(PolicyEvent::GraceStarted {
                    version: active.version,
                    hash: hash.clone(),
                    expired_at,
                    grace_until,
                }))?;
            }
            Standing::Lapsed { grace_until } => {
                let started = mark
                    .as_ref()
                    .is_some_and(|m| m.hash == hash && m.standing == "grace");
                if !started {
                    journal.append_reserved_blocking(Event::Policy(PolicyEvent::GraceStarted {
                        version: active.version,
                        hash: hash.clone(),
                        expired_at: active.expires_at,
                        grace_until,
                    }))?;
                }
                tracing::error!(
                    version = active.version,
                    "policy grace period over: only break-glass works"
                );
                journal.append_reserved_blocking(Event::Policy(PolicyEvent::GraceEnded {
                    version: active.version,
                    hash: hash.clone(),
                    grace_until,
                }))?;
            }
        }
        let json = serde_json::to_vec(&StandingMark {
            hash,
            standing: standing.name().to_owned(),
        })
        .map_err(|e| BundlesError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &json)?;
    }
    Ok(standing)
}

// ---------------------------------------------------------------------------------------------
// Pull attempts and status

/// The last pull attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRecord {
    /// When.
    pub at: DateTime<Utc>,
    /// From where.
    pub url: String,
    /// Whether a bundle was fetched and activated (or was already active).
    pub ok: bool,
    /// What happened, in words.
    pub result: String,
}

/// Remember the last pull attempt (for `otgate policy status`).
pub fn record_pull(dd: &DataDir, record: &PullRecord) -> Result<(), BundlesError> {
    let json = serde_json::to_vec_pretty(record).map_err(|e| BundlesError::Corrupt {
        path: pull_path(dd),
        reason: e.to_string(),
    })?;
    write_atomic(&pull_path(dd), &json)
}

/// The last pull attempt, if any.
pub fn last_pull(dd: &DataDir) -> Option<PullRecord> {
    std::fs::read(pull_path(dd))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Where and how the appliance pulls (for `otgate policy pull` and the daemon's periodic pull).
#[derive(Debug, Clone)]
pub struct PullSettings {
    /// HQ's bundle server, `https://host[:port]`.
    pub url: String,
    /// HQ's certificate pin.
    pub pin: otgate_sync::net::CertPin,
    /// The deadline for the whole exchange.
    pub timeout: std::time::Duration,
    /// Clock skew tolerated at either end of the validity.
    pub skew: TimeDelta,
}

/// Why a pull did not activate anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PullFailure {
    /// The transfer failed (nothing was offered to verification).
    #[error(transparent)]
    Transfer(#[from] otgate_sync::net::PullError),
    /// The bundle was fetched and then refused, or could not be activated.
    #[error(transparent)]
    Import(#[from] BundlesError),
    /// HQ still offers the bundle refused on an earlier attempt (not verified or journaled
    /// again).
    #[error("HQ still offers bundle {hash}, refused before; the active policy stays in force")]
    RefusedBefore {
        /// The offered bundle's hash.
        hash: String,
    },
}

/// Pull once and import what came. The attempt and its result are remembered for
/// `otgate policy status`; a refusal is journaled by the import. HQ never connects in: this is
/// the only direction.
pub async fn pull_once(
    dd: &DataDir,
    journal: &Journal,
    settings: &PullSettings,
    now: DateTime<Utc>,
) -> Result<ImportOutcome, PullFailure> {
    pull_verified(dd, journal, settings, now, None)
        .await
        .result
        .map(|i| i.outcome)
}

/// One pull attempt as the daemon sees it.
#[derive(Debug)]
pub struct PullAttempt {
    /// What came of it.
    pub result: Result<Imported, PullFailure>,
    /// The hash of the bundle HQ offered, if one was fetched and decoded.
    pub offered: Option<[u8; 32]>,
}

/// [`pull_once`], handing back the activated policy and the offered bundle's hash. A bundle whose
/// hash is `refused_before` (it was refused on an earlier attempt) is not verified and journaled
/// again: the same refusal every interval would only bury the journal.
pub async fn pull_verified(
    dd: &DataDir,
    journal: &Journal,
    settings: &PullSettings,
    now: DateTime<Utc>,
    refused_before: Option<[u8; 32]>,
) -> PullAttempt {
    let mut offered = None;
    let result = match trust_root(dd) {
        Err(e) => Err(PullFailure::Import(e)),
        Ok(root) => {
            let site = root.site().to_owned();
            match otgate_sync::net::pull(&settings.url, &site, settings.pin, settings.timeout).await
            {
                Err(error) => Err(PullFailure::Transfer(error)),
                Ok(bytes) => {
                    offered = Bundle::decode(&bytes).ok().map(|b| b.hash());
                    match (offered, refused_before) {
                        (Some(hash), Some(before)) if hash == before => {
                            Err(PullFailure::RefusedBefore {
                                hash: hash_hex(&hash),
                            })
                        }
                        _ => {
                            let (dd2, journal2) = (dd.clone(), journal.clone());
                            let options = ImportOptions {
                                skew: settings.skew,
                                source: format!("pull:{}", settings.url),
                            };
                            match tokio::task::spawn_blocking(move || {
                                import_verified(&dd2, &journal2, &bytes, now, &options)
                            })
                            .await
                            {
                                Ok(result) => result.map_err(PullFailure::Import),
                                Err(join) => Err(PullFailure::Import(BundlesError::Io {
                                    action: "run the import of",
                                    path: dd.policy_dir(),
                                    source: std::io::Error::other(join.to_string()),
                                })),
                            }
                        }
                    }
                }
            }
        }
    };
    let record = PullRecord {
        at: now,
        url: settings.url.clone(),
        ok: result.is_ok(),
        result: match &result {
            Ok(Imported {
                outcome: ImportOutcome::Activated { version, .. },
                ..
            }) => format!("activated version {version}"),
            Ok(Imported {
                outcome: ImportOutcome::Unchanged { version, .. },
                ..
            }) => format!("version {version} already active"),
            Err(error) => error.to_string(),
        },
    };
    if let Err(error) = record_pull(dd, &record) {
        tracing::warn!(%error, "could not remember the pull attempt");
    }
    PullAttempt { result, offered }
}

/// Everything `otgate policy status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    /// The site, from the trust root.
    pub site: Option<String>,
    /// The trust root's version.
    pub trust_root_version: Option<u64>,
    /// The trust root's threshold.
    pub threshold: Option<usize>,
    /// The active bundle.
    pub active: Option<ActiveStatus>,
    /// The last good bundle kept besides the active one.
    pub previous: Option<StoredRef>,
    /// The last pull attempt.
    pub last_pull: Option<PullRecord>,
    /// What the running daemon adds (its enforced standing, its periodic pull); `None` when
    /// read from the data directory without a daemon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon: Option<live::DaemonView>,
}

/// The active bundle in `otgate policy status`.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveStatus {
    /// Bundle version.
    pub version: u64,
    /// Bundle hash.
    pub hash: String,
    /// Keys whose signatures counted.
    pub signers: Vec<KeyId>,
    /// When HQ issued it.
    pub issued_at: DateTime<Utc>,
    /// Valid from.
    pub not_before: DateTime<Utc>,
    /// Valid until.
    pub expires_at: DateTime<Utc>,
    /// When grace ends.
    pub grace_until: DateTime<Utc>,
    /// Seconds since it was issued.
    pub age_secs: i64,
    /// `valid`, `grace` or `lapsed`.
    pub standing: &'static str,
    /// Whether it is enforced on grace.
    pub on_grace: bool,
    /// Whether only break-glass works.
    pub breakglass_only: bool,
    /// When it was activated here.
    pub activated_at: DateTime<Utc>,
    /// Where it came from.
    pub source: String,
    /// Set when the last good bundle is in force because the active file is damaged.
    pub degraded: Option<String>,
}

/// Collect the status (reads files only; journals nothing).
pub fn status(dd: &DataDir, now: DateTime<Utc>) -> Result<PolicyStatus, BundlesError> {
    let root = match trust_root(dd) {
        Ok(root) => Some(root),
        Err(BundlesError::NoTrustRoot { .. }) => None,
        Err(other) => return Err(other),
    };
    let active = load_active(dd)?.map(|a| {
        let standing = a.standing(now);
        ActiveStatus {
            version: a.version,
            hash: hash_hex(&a.hash),
            signers: a.signers.clone(),
            issued_at: a.issued_at,
            not_before: a.not_before,
            expires_at: a.expires_at,
            grace_until: a.grace_until(),
            age_secs: (now - a.issued_at).num_seconds(),
            standing: standing.name(),
            on_grace: matches!(standing, Standing::Grace { .. }),
            breakglass_only: standing.breakglass_only(),
            activated_at: a.activated_at,
            source: a.source.clone(),
            degraded: a.degraded.clone(),
        }
    });
    Ok(PolicyStatus {
        site: root.as_ref().map(|r| r.site().to_owned()),
        trust_root_version: root.as_ref().map(TrustRoot::root_version),
        threshold: root.as_ref().map(TrustRoot::threshold),
        active,
        previous: read_current(dd)?.and_then(|c| c.previous),
        last_pull: last_pull(dd),
        daemon: None,
    })
}

#[cfg(test)]
mod tests {
    //! Every bad input leaves the active policy exactly as it was (hash, pointer file and stored
    //! files compared before and after) and is journaled as `bundle_refused` with its reason.

    use super::*;
    use crate::journal::read::JournalReader;
    use chrono::TimeZone;
    use otgate_sync::bundle::{Body, Header, SignatureEntry};
    use otgate_sync::{AuthorityKey, TrustRootFile};

    const PLANT: &str = include_str!("../../../policies/examples/plant.toml");

    fn canon(toml: &str) -> String {
        otgate_sync::bundle::canonical_policy(toml, "plant.toml").unwrap()
    }

    fn key(i: u8) -> AuthorityKey {
        AuthorityKey::from_secret([i; 32], None)
    }

    fn root_file(version: u64, threshold: usize, keys: &[u8], revoked: &[u8]) -> TrustRootFile {
        TrustRootFile {
            format: 1,
            site: "plant-a".into(),
            root_version: version,
            threshold,
            keys: keys.iter().map(|&i| key(i).public_entry()).collect(),
            revoked: revoked.iter().map(|&i| key(i).key_id()).collect(),
        }
    }

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap()
    }

    fn body(version: u64) -> Body {
        Body {
            header: Header {
                site: "plant-a".into(),
                version,
                issued_at: at(1),
                not_before: at(1),
                expires_at: at(20),
                previous_hash: None,
                grace_period_secs: 5 * 86_400,
            },
            policy: canon(PLANT),
            trust_root: None,
        }
    }

    fn signed(body: Body, signers: &[u8]) -> Vec<u8> {
        let mut bundle = Bundle::new(body).unwrap();
        for &i in signers {
            bundle.sign(&key(i)).unwrap();
        }
        bundle.encode()
    }

    struct Appliance {
        _tmp: tempfile::TempDir,
        dd: DataDir,
        journal: Journal,
    }

    fn appliance() -> Appliance {
        let tmp = tempfile::tempdir().unwrap();
        let dd = DataDir::new(tmp.path().join("data"));
        std::fs::create_dir_all(dd.root()).unwrap();
        let journal = Journal::open_for_tests(dd.root()).unwrap();
        let root_json = tmp.path().join("root.json");
        let root = TrustRoot::new(root_file(1, 2, &[1, 2, 3], &[])).unwrap();
        std::fs::write(&root_json, root.to_json()).unwrap();
        install_trust_root(&dd, &root_json).unwrap();
        Appliance {
            _tmp: tmp,
            dd,
            journal,
        }
    }

    /// Everything that defines the active policy, for before/after comparisons.
    fn snapshot(dd: &DataDir) -> (Option<[u8; 32]>, Vec<u8>, Vec<String>, String) {
        let hash = load_active(dd).unwrap().map(|a| a.hash);
        let current = std::fs::read(current_path(dd)).unwrap_or_default();
        let mut files: Vec<String> = std::fs::read_dir(bundles_dir(dd))
            .map(|e| {
                e.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let root = std::fs::read_to_string(root_path(dd)).unwrap();
        (hash, current, files, root)
    }

    fn policy_events(journal: &Journal) -> Vec<PolicyEvent> {
        JournalReader::open(journal.dir())
            .unwrap()
            .filter_map(|r| match r.unwrap().event {
                Event::Policy(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn last_refusal(journal: &Journal) -> String {
        match policy_events(journal).pop() {
            Some(PolicyEvent::BundleRefused { reason, .. }) => reason,
            other => panic!("last policy event is {other:?}"),
        }
    }

    /// Activate v5, then offer `bytes` and expect the refusal `kind` and no change at all.
    fn assert_refused_unchanged(a: &Appliance, bytes: &[u8], kind: &str) {
        let before = snapshot(&a.dd);
        assert!(before.0.is_some(), "a policy is active before");
        match import(&a.dd, &a.journal, bytes, at(10)) {
            Err(BundlesError::Refused(refusal)) => assert_eq!(refusal.kind(), kind, "{refusal}"),
            other => panic!("expected refusal {kind}, got {other:?}"),
        }
        assert_eq!(
            snapshot(&a.dd),
            before,
            "refusal {kind} changed the active policy"
        );
        assert_eq!(last_refusal(&a.journal), kind);
    }

    fn with_active_v5() -> Appliance {
        let a = appliance();
        import(&a.dd, &a.journal, &signed(body(5), &[1, 2]), at(10)).unwrap();
        a
    }

    #[test]
    fn import_activates_journals_the_hash_and_keeps_the_last_good() {
        let a = appliance();
        assert!(load_active(&a.dd).unwrap().is_none());
        let v5 = signed(body(5), &[1, 2]);
        let outcome = import(&a.dd, &a.journal, &v5, at(10)).unwrap();
        let v5_hash = Bundle::decode(&v5).unwrap().hash();
        assert_eq!(
            outcome,
            ImportOutcome::Activated {
                version: 5,
                hash: v5_hash,
                previous_version: None,
                rotated_root_to: None
            }
        );
        let active = load_active(&a.dd).unwrap().unwrap();
        assert_eq!((active.version, active.hash), (5, v5_hash));
        assert_eq!(active.policy.site.id.as_str(), "plant-a");
        assert_eq!(active.signers, vec![key(1).key_id(), key(2).key_id()]);

        let v6 = signed(body(6), &[2, 3]);
        import(&a.dd, &a.journal, &v6, at(11)).unwrap();
        let status = status(&a.dd, at(11)).unwrap();
        assert_eq!(status.active.as_ref().unwrap().version, 6);
        assert_eq!(status.previous.as_ref().unwrap().version, 5);
        let activated: Vec<(u64, String)> = policy_events(&a.journal)
            .into_iter()
            .filter_map(|e| match e {
                PolicyEvent::BundleActivated { version, hash, .. } => Some((version, hash)),
                _ => None,
            })
            .collect();
        assert_eq!(activated[0], (5, hash_hex(&v5_hash)));
        assert_eq!(activated[1].0, 6);
    }

    #[test]
    fn the_same_bundle_again_is_a_no_op() {
        let a = with_active_v5();
        let before = snapshot(&a.dd);
        let again = signed(body(5), &[2, 3]);
        assert!(matches!(
            import(&a.dd, &a.journal, &again, at(10)).unwrap(),
            ImportOutcome::Unchanged { version: 5, .. }
        ));
        assert_eq!(snapshot(&a.dd), before);
    }

    #[test]
    fn a_flipped_byte_changes_nothing() {
        let a = with_active_v5();
        let mut bytes = signed(body(6), &[1, 2]);
        let at_policy = bytes.windows(9).position(|w| w == b"line3-plc").unwrap();
        bytes[at_policy] ^= 0x01;
        assert_refused_unchanged(&a, &bytes, "bad_signature");
        let mut bytes = signed(body(6), &[1, 2]);
        bytes[0] ^= 0x01;
        assert_refused_unchanged(&a, &bytes, "malformed");
    }

    #[test]
    fn unknown_and_revoked_keys_and_too_few_signatures_change_nothing() {
        let a = with_active_v5();
        assert_refused_unchanged(&a, &signed(body(6), &[1, 9]), "unknown_key");
        assert_refused_unchanged(&a, &signed(body(6), &[1]), "not_enough_signatures");
        // Rotate to a root that revokes key 3, then key 3's signature no longer counts.
        let mut rotation = body(6);
        rotation.trust_root = Some(
            TrustRoot::new(root_file(2, 2, &[1, 2, 3], &[3]))
                .unwrap()
                .to_json()
                .into_bytes(),
        );
        let outcome = import(&a.dd, &a.journal, &signed(rotation, &[1, 3]), at(10)).unwrap();
        assert!(matches!(
            outcome,
            ImportOutcome::Activated {
                rotated_root_to: Some(2),
                ..
            }
        ));
        assert!(trust_root(&a.dd).unwrap().is_revoked(&key(3).key_id()));
        assert_refused_unchanged(&a, &signed(body(7), &[1, 3]), "revoked_key");
        assert!(policy_events(&a.journal)
            .iter()
            .any(|e| matches!(e, PolicyEvent::TrustRootRotated { to_version: 2, .. })));
    }

    #[test]
    fn a_duplicate_signer_changes_nothing() {
        let a = with_active_v5();
        let mut bundle = Bundle::new(body(6)).unwrap();
        bundle.sign(&key(1)).unwrap();
        let again: SignatureEntry = bundle.signatures()[0].clone();
        bundle.push_signature_unchecked(again);
        assert_refused_unchanged(&a, &bundle.encode(), "duplicate_signer");
    }

    #[test]
    fn another_site_rollback_and_same_version_other_content_change_nothing() {
        let a = with_active_v5();
        let mut other_site = body(6);
        other_site.header.site = "plant-b".into();
        other_site.policy = canon(&PLANT.replacen("id = \"plant-a\"", "id = \"plant-b\"", 1));
        assert_refused_unchanged(&a, &signed(other_site, &[1, 2]), "wrong_site");
        assert_refused_unchanged(&a, &signed(body(4), &[1, 2]), "rollback");
        let mut same_version = body(5);
        same_version.policy = canon(&PLANT.replace("Line 3", "Line three"));
        assert_refused_unchanged(
            &a,
            &signed(same_version, &[1, 2]),
            "same_version_different_content",
        );
    }

    #[test]
    fn expired_and_not_yet_valid_change_nothing() {
        let a = with_active_v5();
        let mut expired = body(6);
        expired.header.expires_at = at(9);
        assert_refused_unchanged(&a, &signed(expired, &[1, 2]), "expired");
        let mut early = body(6);
        early.header.not_before = at(11);
        assert_refused_unchanged(&a, &signed(early, &[1, 2]), "not_yet_valid");
    }

    #[test]
    fn truncated_and_invalid_policy_change_nothing() {
        let a = with_active_v5();
        let bytes = signed(body(6), &[1, 2]);
        assert_refused_unchanged(&a, &bytes[..bytes.len() / 2], "truncated");
        let mut invalid = body(6);
        invalid.policy = canon(&PLANT.replace("line3-plc", "line9-plc").replacen(
            "id = \"line9-plc\"",
            "id = \"line3-plc\"",
            1,
        ));
        assert_refused_unchanged(&a, &signed(invalid, &[1, 2]), "invalid_policy");
    }

    #[test]
    fn an_oversized_file_is_refused_before_it_is_read_whole() {
        let a = with_active_v5();
        let before = snapshot(&a.dd);
        let path = a.dd.root().join("huge.otgb");
        let file = std::fs::File::create(&path).unwrap();
        // Sparse: the size says it all, and it is refused by its size alone.
        file.set_len(MAX_BUNDLE_BYTES + 1).unwrap();
        match import_file(&a.dd, &a.journal, &path, at(10), &ImportOptions::default()) {
            Err(BundlesError::Refused(Refusal::Oversized { limit, size })) => {
                assert_eq!((limit, size), (MAX_BUNDLE_BYTES, MAX_BUNDLE_BYTES + 1));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(snapshot(&a.dd), before);
        assert_eq!(last_refusal(&a.journal), "oversized");
    }

    #[test]
    fn a_rotation_below_the_threshold_changes_nothing() {
        let a = with_active_v5();
        let mut rotation = body(6);
        rotation.trust_root = Some(
            TrustRoot::new(root_file(2, 1, &[1], &[]))
                .unwrap()
                .to_json()
                .into_bytes(),
        );
        assert_refused_unchanged(&a, &signed(rotation, &[1]), "rotation_below_threshold");
        assert_eq!(trust_root(&a.dd).unwrap().root_version(), 1);
    }

    #[test]
    fn expiry_goes_to_grace_then_breakglass_only_and_is_journaled_once() {
        let a = with_active_v5();
        assert!(matches!(
            note_standing(&a.dd, &a.journal, at(19)).unwrap(),
            Some(Standing::Valid { .. })
        ));
        let grace = note_standing(&a.dd, &a.journal, at(21)).unwrap().unwrap();
        assert!(matches!(grace, Standing::Grace { .. }) && !grace.breakglass_only());
        note_standing(&a.dd, &a.journal, at(22)).unwrap();
        let lapsed = note_standing(&a.dd, &a.journal, at(26)).unwrap().unwrap();
        assert!(lapsed.breakglass_only());
        note_standing(&a.dd, &a.journal, at(27)).unwrap();
        let events = policy_events(&a.journal);
        let started = events
            .iter()
            .filter(|e| matches!(e, PolicyEvent::GraceStarted { .. }))
            .count();
        let ended = events
            .iter()
            .filter(|e| matches!(e, PolicyEvent::GraceEnded { .. }))
            .count();
        assert_eq!((started, ended), (1, 1));
        let shown = status(&a.dd, at(21)).unwrap().active.unwrap();
        assert!(shown.on_grace && !shown.breakglass_only);
    }

    #[test]
    fn a_damaged_active_file_falls_back_to_the_last_good_one() {
        let a = with_active_v5();
        import(&a.dd, &a.journal, &signed(body(6), &[1, 2]), at(10)).unwrap();
        let active = load_active(&a.dd).unwrap().unwrap();
        let path = bundle_path(&a.dd, &active.hash);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let fallback = load_active(&a.dd).unwrap().unwrap();
        assert_eq!(fallback.version, 5);
        assert!(fallback.degraded.is_some());
        // Anti-rollback still holds against the damaged active version.
        assert_eq!(active_info(&a.dd).unwrap().unwrap().version, 6);
    }

    #[test]
    fn an_interrupted_rotation_is_completed_from_the_active_bundle() {
        let a = with_active_v5();
        let old_root = std::fs::read(root_path(&a.dd)).unwrap();
        let mut rotation = body(6);
        rotation.trust_root = Some(
            TrustRoot::new(root_file(2, 2, &[1, 2, 4], &[3]))
                .unwrap()
                .to_json()
                .into_bytes(),
        );
        import(&a.dd, &a.journal, &signed(rotation, &[1, 2]), at(10)).unwrap();
        // Simulate a crash after the pointer switch but before root.json was written.
        std::fs::write(root_path(&a.dd), &old_root).unwrap();
        assert_eq!(trust_root(&a.dd).unwrap().root_version(), 2);
        assert_eq!(
            TrustRoot::load(&root_path(&a.dd)).unwrap().root_version(),
            2
        );
    }

    #[test]
    fn installing_another_trust_root_is_refused_and_the_same_one_is_a_no_op() {
        let a = appliance();
        let tmp = tempfile::tempdir().unwrap();
        let same = tmp.path().join("same.json");
        std::fs::write(
            &same,
            TrustRoot::new(root_file(1, 2, &[1, 2, 3], &[]))
                .unwrap()
                .to_json(),
        )
        .unwrap();
        install_trust_root(&a.dd, &same).unwrap();
        let other = tmp.path().join("other.json");
        std::fs::write(
            &other,
            TrustRoot::new(root_file(1, 1, &[4], &[]))
                .unwrap()
                .to_json(),
        )
        .unwrap();
        assert!(matches!(
            install_trust_root(&a.dd, &other),
            Err(BundlesError::TrustRootAlreadyInstalled { .. })
        ));
    }
}
