//! Policy events: bundles activated or refused, grace periods, trust-root rotations.
//!
//! Every activation names the bundle's hash, so the audit can always tell which policy was in
//! force for any decision: the one activated by the last `bundle_activated` record before it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Subjects;

/// Policy events: bundles activated or refused, grace periods, trust-root rotations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PolicyEvent {
    /// The trust root was installed at provisioning (`otgate init --trust`).
    TrustRootInstalled {
        /// SHA-256 (hex) of the installed root's canonical JSON (`trust/root.json`), so an
        /// auditor can tell exactly which root was installed. Empty in records written before
        /// the fingerprint was recorded.
        #[serde(default)]
        fingerprint: String,
        /// The site it guards.
        site: String,
        /// Its version.
        root_version: u64,
        /// M of M-of-N.
        threshold: usize,
        /// The authority key ids.
        keys: Vec<String>,
        /// Revoked key ids.
        revoked: Vec<String>,
    },
    /// A bundle passed verification and became the active policy.
    BundleActivated {
        /// The site.
        site: String,
        /// The bundle version.
        version: u64,
        /// SHA-256 of the bundle's signed part (hex): the policy's identity.
        hash: String,
        /// The version it replaced, if any.
        previous_version: Option<u64>,
        /// The hash it replaced, if any.
        previous_hash: Option<String>,
        /// The authority keys whose signatures counted.
        signers: Vec<String>,
        /// When HQ issued it.
        issued_at: DateTime<Utc>,
        /// Valid from.
        not_before: DateTime<Utc>,
        /// Valid until (then grace).
        expires_at: DateTime<Utc>,
        /// Offline grace after expiry, in seconds.
        grace_period_secs: u64,
        /// Where it came from: `file:<path>` or `pull:<url>`.
        source: String,
    },
    /// A bundle was refused; nothing changed.
    BundleRefused {
        /// The refusal's short name (`rollback`, `not_enough_signatures`, ...).
        reason: String,
        /// The refusal in words, with its numbers.
        message: String,
        /// The offered bundle's version, if it decoded.
        offered_version: Option<u64>,
        /// The offered bundle's hash, if it decoded.
        offered_hash: Option<String>,
        /// Where it came from.
        source: String,
    },
    /// A verified bundle could not be written into place after it was journaled as activated;
    /// the previous policy stays in force.
    ActivationFailed {
        /// The bundle version.
        version: u64,
        /// Its hash.
        hash: String,
        /// What failed.
        error: String,
    },
    /// A bundle carried a new trust root, signed by the current root's threshold.
    TrustRootRotated {
        /// The old root version.
        from_version: u64,
        /// The new root version.
        to_version: u64,
        /// The new threshold.
        threshold: usize,
        /// The new root's key ids.
        keys: Vec<String>,
        /// Every revoked key id after the rotation.
        revoked: Vec<String>,
        /// The hash of the bundle that carried it.
        bundle_hash: String,
    },
    /// The active bundle expired and no newer one is installed: it is enforced on grace.
    GraceStarted {
        /// The bundle version.
        version: u64,
        /// Its hash.
        hash: String,
        /// When it expired.
        expired_at: DateTime<Utc>,
        /// When the grace period ends.
        grace_until: DateTime<Utc>,
    },
    /// The grace period ended: only break-glass works until a newer bundle is installed.
    GraceEnded {
        /// The bundle version.
        version: u64,
        /// Its hash.
        hash: String,
        /// When the grace period ended.
        grace_until: DateTime<Utc>,
    },
    /// The daemon's periodic pull keeps failing (journaled on the first failure after a
    /// success, then at most once per `[sync] failure_journal_every` while it goes on).
    PullFailing {
        /// HQ's server.
        url: String,
        /// Failed attempts since the last success.
        failed_attempts: u64,
        /// When the first of them failed.
        failing_since: DateTime<Utc>,
        /// The latest failure, in words.
        error: String,
    },
    /// The periodic pull works again after failing.
    PullRecovered {
        /// HQ's server.
        url: String,
        /// How many attempts had failed.
        failed_attempts: u64,
        /// Since when.
        failing_since: DateTime<Utc>,
    },
}

impl Subjects for PolicyEvent {
    fn kind(&self) -> &'static str {
        match self {
            PolicyEvent::TrustRootInstalled { .. } => "trust_root_installed",
            PolicyEvent::BundleActivated { .. } => "bundle_activated",
            PolicyEvent::BundleRefused { .. } => "bundle_refused",
            PolicyEvent::ActivationFailed { .. } => "activation_failed",
            PolicyEvent::TrustRootRotated { .. } => "trust_root_rotated",
            PolicyEvent::GraceStarted { .. } => "grace_started",
            PolicyEvent::GraceEnded { .. } => "grace_ended",
            PolicyEvent::PullFailing { .. } => "pull_failing",
            PolicyEvent::PullRecovered { .. } => "pull_recovered",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_snake_case_with_kind() {
        let event = PolicyEvent::GraceEnded {
            version: 3,
            hash: "ab".into(),
            grace_until: DateTime::<Utc>::from_timestamp(0, 0).unwrap(),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["kind"], "grace_ended");
        assert_eq!(json["grace_until"], "1970-01-01T00:00:00Z");
        assert_eq!(serde_json::from_value::<PolicyEvent>(json).unwrap(), event);
        assert_eq!(event.kind(), "grace_ended");
    }
}
