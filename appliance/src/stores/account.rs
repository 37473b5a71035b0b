//! What the IT and OT stores do alike with a local account, written once: reading and writing
//! their sealed document under the store lock, enrolling TOTP, and running an attempt under the
//! account's failure backoff.
//!
//! It holds nothing: no key, no path, no document. Each store passes its own key, label and
//! directory on every call, and keeps its own files, its own document type and its own code for
//! what is particular to it (IT password checks, OT factor rules, the vault); `it` and `ot` still
//! never name each other. The account itself stays each store's own type, seen here only through
//! [`LocalAccount`].

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::limit::FailureCounter;
use super::sealed::{self, StoreKey, StoreLock};
use super::totp::{EnrolmentSecret, TotpEnrolment};
use super::{AuthError, Secret, StoreError, Zone};

/// The document format both stores write.
pub(super) const DOC_VERSION: u32 = 1;

/// A store document with a format version.
pub(super) trait Versioned {
    /// The version the document says it is.
    fn version(&self) -> u32;
}

/// The parts every local account has, in either store.
pub(super) trait LocalAccount {
    /// Its consecutive-failure counter.
    fn failures_mut(&mut self) -> &mut FailureCounter;
}

/// Where one store keeps its document, as that store passes it in on each call.
pub(super) struct DocFile<'a> {
    /// The store directory (holds the lock file).
    pub dir: &'a Path,
    /// The store's own key.
    pub key: &'a StoreKey,
    /// The label bound into the sealed file.
    pub label: &'a str,
    /// The sealed file.
    pub path: std::path::PathBuf,
}

impl DocFile<'_> {
    /// Load and check the document (the caller holds the lock).
    fn load<D: DeserializeOwned + Versioned>(&self) -> Result<D, StoreError> {
        let doc: D = sealed::load_doc(self.key, self.label, &self.path)?;
        if doc.version() != DOC_VERSION {
            return Err(StoreError::Malformed {
                path: self.path.clone(),
                reason: format!("unknown version {}", doc.version()),
            });
        }
        Ok(doc)
    }

    /// Lock, load, look.
    pub fn read<D: DeserializeOwned + Versioned, T>(
        &self,
        f: impl FnOnce(&D) -> T,
    ) -> Result<T, StoreError> {
        let _lock = StoreLock::acquire(self.dir)?;
        Ok(f(&self.load()?))
    }

    /// Lock, load, apply `f`, write back, unlock. `f`'s result is returned whatever it is, and
    /// the document is written even when `f` reports a refusal (to persist failure counters).
    pub fn update<D: DeserializeOwned + Serialize + Versioned, T>(
        &self,
        f: impl FnOnce(&mut D) -> T,
    ) -> Result<T, StoreError> {
        let _lock = StoreLock::acquire(self.dir)?;
        let mut doc = self.load()?;
        let out = f(&mut doc);
        sealed::save_doc(self.key, self.label, &self.path, &doc)?;
        Ok(out)
    }

    /// Lock, load, apply `f`; write back only when it says something changed.
    pub fn update_if<D: DeserializeOwned + Serialize + Versioned>(
        &self,
        f: impl FnOnce(&mut D) -> bool,
    ) -> Result<(), StoreError> {
        let _lock = StoreLock::acquire(self.dir)?;
        let mut doc = self.load()?;
        if f(&mut doc) {
            sealed::save_doc(self.key, self.label, &self.path, &doc)?;
        }
        Ok(())
    }
}

/// A new TOTP enrolment for `identity`: a fresh seed, or a known one (tests and the demo, which
/// must compute codes); with what to show its owner once (under the store's `issuer` name).
pub(super) fn enrolment(
    issuer: &str,
    identity: &str,
    seed: Option<Secret>,
    now: DateTime<Utc>,
) -> (TotpEnrolment, EnrolmentSecret) {
    let enrolment = match seed {
        Some(seed) => TotpEnrolment::from_seed(seed, now),
        None => TotpEnrolment::generate(now),
    };
    let shown = enrolment.show(issuer, identity);
    (enrolment, shown)
}

/// Refuse while `identity` backs off after failures.
pub(super) fn check_backoff(
    failures: &FailureCounter,
    identity: &str,
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    failures
        .check(now)
        .map_err(|retry_after| AuthError::RateLimited {
            subject: format!("identity:{identity}"),
            retry_after,
        })
}

/// Run one authentication attempt on `account`: refused while it backs off; a success resets
/// its failures, a failure counts toward the backoff.
pub(super) fn attempt<A: LocalAccount, T>(
    account: &mut A,
    identity: &str,
    now: DateTime<Utc>,
    f: impl FnOnce(&mut A) -> Result<T, AuthError>,
) -> Result<T, AuthError> {
    check_backoff(account.failures_mut(), identity, now)?;
    let result = f(account);
    match &result {
        Ok(_) => account.failures_mut().reset(),
        Err(_) => account.failures_mut().fail(now),
    }
    result
}

/// Check `code` against `identity`'s enrolment, once (the accepted step is kept in it).
pub(super) fn verify_code(
    enrolment: Option<&mut TotpEnrolment>,
    identity: &str,
    zone: Zone,
    code: &str,
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    let Some(enrolment) = enrolment else {
        return Err(AuthError::TotpNotEnrolled {
            identity: identity.to_owned(),
            zone,
        });
    };
    enrolment
        .verify(code, now)
        .map(|_| ())
        .map_err(|rejection| AuthError::TotpRejected {
            identity: identity.to_owned(),
            rejection,
        })
}
