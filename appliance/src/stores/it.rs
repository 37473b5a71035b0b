//! The IT store (`DATA_DIR/it/`): local credentials of the people who ask for access. Their ids,
//! roles and ed25519 public keys come from the policy; this store adds what the policy cannot
//! carry: a TOTP enrolment per identity (with the last accepted step, so a code works once), an
//! optional argon2id password, and consecutive-failure counters for rate limiting.
//!
//! Its own key file (`it/store.key`) and its own sealed file (`it/store.sealed`); this file never
//! names the OT store. Every operation takes the store lock, loads, changes and writes back
//! atomically, so the daemon and the CLI can use it at the same time. A TOTP success is written
//! to disk before it is returned, so a code cannot be accepted twice across a crash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::account::{self, DocFile, LocalAccount, Versioned, DOC_VERSION};
use super::limit::FailureCounter;
use super::sealed::{self, StoreKey, StoreLock};
use super::totp::{EnrolmentSecret, TotpEnrolment};
use super::{password, validate_name, AuthError, Secret, StoreError, Zone};

/// Label bound into the sealed IT store file.
const LABEL: &str = "it-store";
/// The issuer shown in authenticator apps.
const ISSUER: &str = "otgate";

/// One IT identity's local credentials.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ItAccount {
    /// TOTP enrolment, if any.
    totp: Option<TotpEnrolment>,
    /// argon2id PHC string of the optional local password.
    password: Option<String>,
    /// Consecutive failed attempts.
    failures: FailureCounter,
}

/// The whole IT store document.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ItDoc {
    /// Format version (1).
    version: u32,
    /// Accounts by identity id.
    accounts: BTreeMap<String, ItAccount>,
}

impl Versioned for ItDoc {
    fn version(&self) -> u32 {
        self.version
    }
}

impl LocalAccount for ItAccount {
    fn failures_mut(&mut self) -> &mut FailureCounter {
        &mut self.failures
    }
}

/// What `users list` shows of an IT identity (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItAccountInfo {
    /// The identity id (as in the policy).
    pub id: String,
    /// Whether TOTP is enrolled.
    pub totp: bool,
    /// Whether a local password is set.
    pub password: bool,
    /// Consecutive failed attempts.
    pub failures: u32,
}

/// A handle on the IT store. Cheap to clone; every call reads the current file under the lock.
#[derive(Debug, Clone)]
pub struct ItStore {
    /// `DATA_DIR/it`.
    dir: PathBuf,
    /// The IT key, shared between clones.
    key: Arc<StoreKey>,
}

impl ItStore {
    /// The key file in `dir`.
    pub fn key_path(dir: &Path) -> PathBuf {
        dir.join("store.key")
    }

    /// The sealed store file in `dir`.
    pub fn store_path(dir: &Path) -> PathBuf {
        dir.join("store.sealed")
    }

    /// Create an empty IT store with a fresh key in `dir`; refuses if one exists.
    pub fn create(dir: &Path) -> Result<Self, StoreError> {
        sealed::create_dir(dir)?;
        let _lock = StoreLock::acquire(dir)?;
        for path in [Self::key_path(dir), Self::store_path(dir)] {
            if path.exists() {
                return Err(StoreError::AlreadyExists { path });
            }
        }
        let key = StoreKey::generate(Zone::It);
        key.write_new(&Self::key_path(dir))?;
        let doc = ItDoc {
            version: DOC_VERSION,
            ..ItDoc::default()
        };
        sealed::save_doc(&key, LABEL, &Self::store_path(dir), &doc)?;
        Ok(Self {
            dir: dir.to_owned(),
            key: Arc::new(key),
        })
    }

    /// Open the IT store in `dir` and check that its file authenticates with its key.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let key = StoreKey::load(Zone::It, &Self::key_path(dir))?;
        let store = Self {
            dir: dir.to_owned(),
            key: Arc::new(key),
        };
        store.read(|_| ())?;
        Ok(store)
    }

    /// The IT document, under the IT key.
    fn file(&self) -> DocFile<'_> {
        DocFile {
            dir: &self.dir,
            key: &self.key,
            label: LABEL,
            path: Self::store_path(&self.dir),
        }
    }

    fn read<T>(&self, f: impl FnOnce(&ItDoc) -> T) -> Result<T, StoreError> {
        self.file().read(f)
    }

    /// Lock, load, apply `f`, write back, unlock (see [`DocFile::update`]).
    fn update<T>(&self, f: impl FnOnce(&mut ItDoc) -> T) -> Result<T, StoreError> {
        self.file().update(f)
    }

    /// Enrol (or re-enrol) `identity` for TOTP with a fresh seed; returns what to show once.
    pub fn enroll_totp(
        &self,
        identity: &str,
        now: DateTime<Utc>,
    ) -> Result<EnrolmentSecret, StoreError> {
        self.enroll(identity, None, now)
    }

    /// Enrol `identity` with a known seed (tests and the demo, which must compute codes).
    pub fn enroll_totp_with_seed(
        &self,
        identity: &str,
        seed: Secret,
        now: DateTime<Utc>,
    ) -> Result<EnrolmentSecret, StoreError> {
        self.enroll(identity, Some(seed), now)
    }

    fn enroll(
        &self,
        identity: &str,
        seed: Option<Secret>,
        now: DateTime<Utc>,
    ) -> Result<EnrolmentSecret, StoreError> {
        validate_name(identity)?;
        let (enrolment, shown): (TotpEnrolment, _) =
            account::enrolment(ISSUER, identity, seed, now);
        self.update(|doc| {
            doc.accounts.entry(identity.to_owned()).or_default().totp = Some(enrolment)
        })?;
        Ok(shown)
    }

    /// Whether `identity` has a TOTP enrolment.
    pub fn has_totp(&self, identity: &str) -> Result<bool, StoreError> {
        self.read(|doc| doc.accounts.get(identity).is_some_and(|a| a.totp.is_some()))
    }

    /// Set `identity`'s local password (argon2id).
    pub fn set_password(&self, identity: &str, password: &Secret) -> Result<(), StoreError> {
        validate_name(identity)?;
        let phc = password::hash(password)?;
        self.update(|doc| {
            doc.accounts
                .entry(identity.to_owned())
                .or_default()
                .password = Some(phc)
        })
    }

    /// Refuse while `identity` is backing off after failures.
    pub fn check_rate(&self, identity: &str, now: DateTime<Utc>) -> Result<(), AuthError> {
        self.read(|doc| match doc.accounts.get(identity) {
            Some(a) => account::check_backoff(&a.failures, identity, now),
            None => Ok(()),
        })?
    }

    /// Count a failed attempt by `identity` (e.g. a bad signature) toward its backoff.
    pub fn record_failure(&self, identity: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.update(|doc| {
            if let Some(account) = doc.accounts.get_mut(identity) {
                account.failures.fail(now);
            } else if validate_name(identity).is_ok() {
                // Count failures of identities without local credentials too, bounded by the
                // policy's identities in practice (unknown names are refused before this).
                doc.accounts
                    .entry(identity.to_owned())
                    .or_default()
                    .failures
                    .fail(now);
            }
        })
    }

    /// Reset `identity`'s failure count after a success.
    pub fn record_success(&self, identity: &str) -> Result<(), StoreError> {
        self.file()
            .update_if(|doc: &mut ItDoc| match doc.accounts.get_mut(identity) {
                // Write only when there is something to forget: a login costs no extra fsync.
                Some(account) if account.failures != FailureCounter::default() => {
                    account.failures.reset();
                    true
                }
                _ => false,
            })
    }

    /// Verify `identity`'s TOTP `code` at `now`, once: on success the accepted step is on disk
    /// before this returns; on failure the failure is counted. Honours the backoff.
    pub fn verify_totp(
        &self,
        identity: &str,
        code: &str,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        self.update(|doc| {
            let Some(account) = doc.accounts.get_mut(identity) else {
                return Err(AuthError::TotpNotEnrolled {
                    identity: identity.to_owned(),
                    zone: Zone::It,
                });
            };
            account::attempt(account, identity, now, |a| {
                account::verify_code(a.totp.as_mut(), identity, Zone::It, code, now)
            })
        })?
    }

    /// Verify `identity`'s local password. Honours and updates the backoff.
    pub fn verify_password(
        &self,
        identity: &str,
        given: &str,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        self.update(|doc| {
            let Some(account) = doc.accounts.get_mut(identity) else {
                return Err(AuthError::NoCredentials {
                    identity: identity.to_owned(),
                    zone: Zone::It,
                });
            };
            account::attempt(account, identity, now, |a| match a.password.as_deref() {
                None => Err(AuthError::NoCredentials {
                    identity: identity.to_owned(),
                    zone: Zone::It,
                }),
                Some(phc) if password::verify(phc, given.as_bytes()) => Ok(()),
                Some(_) => Err(AuthError::WrongPassword {
                    identity: identity.to_owned(),
                }),
            })
        })?
    }

    /// Remove `identity`'s local credentials (its policy entry is untouched).
    pub fn remove(&self, identity: &str) -> Result<(), StoreError> {
        self.update(|doc| doc.accounts.remove(identity))?
            .map(|_| ())
            .ok_or_else(|| StoreError::UnknownAccount {
                zone: Zone::It,
                id: identity.to_owned(),
            })
    }

    /// Every identity with local credentials, without secrets.
    pub fn list(&self) -> Result<Vec<ItAccountInfo>, StoreError> {
        self.read(|doc| {
            doc.accounts
                .iter()
                .map(|(id, a)| ItAccountInfo {
                    id: id.clone(),
                    totp: a.totp.is_some(),
                    password: a.password.is_some(),
                    failures: a.failures.failures,
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::totp::base32_decode;

    fn store() -> (tempfile::TempDir, ItStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ItStore::create(&dir.path().join("it")).unwrap();
        (dir, store)
    }

    fn code_for(shown: &EnrolmentSecret, at: DateTime<Utc>) -> String {
        let seed = base32_decode(shown.secret_base32.expose_str().unwrap()).unwrap();
        TotpEnrolment::from_seed(Secret::new(seed), at).code_at(at)
    }

    #[test]
    fn totp_is_single_use_across_reopen() {
        let (dir, store) = store();
        let now = Utc::now();
        let shown = store.enroll_totp("alice", now).unwrap();
        let code = code_for(&shown, now);
        store.verify_totp("alice", &code, now).unwrap();
        let reopened = ItStore::open(&dir.path().join("it")).unwrap();
        let err = reopened.verify_totp("alice", &code, now).unwrap_err();
        assert_eq!(err.reason_code(), "totp_reused");
    }

    #[test]
    fn create_refuses_an_existing_store() {
        let (dir, _store) = store();
        assert!(matches!(
            ItStore::create(&dir.path().join("it")),
            Err(StoreError::AlreadyExists { .. })
        ));
    }

    #[test]
    fn failures_back_off() {
        let (_dir, store) = store();
        let now = Utc::now();
        store.enroll_totp("alice", now).unwrap();
        for _ in 0..3 {
            let err = store.verify_totp("alice", "000000", now).unwrap_err();
            assert_eq!(err.reason_code(), "totp_wrong");
        }
        let err = store.verify_totp("alice", "000000", now).unwrap_err();
        assert_eq!(err.reason_code(), "rate_limited");
        assert!(store.check_rate("alice", now).is_err());
        assert_eq!(
            store.list().unwrap()[0].failures,
            3,
            "refusals while backing off do not count"
        );
    }

    #[test]
    fn tampered_file_names_the_file_and_changes_nothing() {
        let (dir, store) = store();
        store.enroll_totp("alice", Utc::now()).unwrap();
        let path = ItStore::store_path(&dir.path().join("it"));
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let err = store.enroll_totp("bob", Utc::now()).unwrap_err();
        assert!(matches!(err, StoreError::Tampered { .. }));
        assert!(err.to_string().contains("store.sealed"));
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was written");
        assert!(ItStore::open(&dir.path().join("it")).is_err());
    }

    #[test]
    fn passwords_verify_and_count_failures() {
        let (_dir, store) = store();
        let now = Utc::now();
        store
            .set_password("vendor-acme", &Secret::from("a long password"))
            .unwrap();
        store
            .verify_password("vendor-acme", "a long password", now)
            .unwrap();
        assert_eq!(
            store
                .verify_password("vendor-acme", "nope", now)
                .unwrap_err()
                .reason_code(),
            "wrong_password"
        );
        let listed = store.list().unwrap();
        assert_eq!(
            listed,
            vec![ItAccountInfo {
                id: "vendor-acme".into(),
                totp: false,
                password: true,
                failures: 1
            }]
        );
    }
}
