//! The OT store (`DATA_DIR/ot/`): the plant side's accounts (approvers, operators) with an
//! argon2id password and/or TOTP, and the device-secret [`Vault`] beside it under the same OT key.
//!
//! Its own key file (`ot/store.key`) and sealed file (`ot/store.sealed`); this file never names
//! the IT store, and [`OtStore::authenticate`] consults nothing else, so an IT identity (or any
//! IT credential) can never authenticate as an approver. Only `authenticate` makes an
//! [`OtPrincipal`]. Every factor an account has enrolled is required: an account with a password
//! and TOTP needs both. TOTP codes are single use; the accepted step is on disk before success is
//! returned. Failures are counted per account and back off exponentially.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::account::{self, DocFile, LocalAccount, Versioned, DOC_VERSION};
use super::limit::FailureCounter;
use super::record::AuthRecorder;
use super::sealed::{self, StoreKey, StoreLock};
use super::totp::{EnrolmentSecret, TotpEnrolment};
use super::{password, validate_name, AuthError, Secret, StoreError, Zone};
use crate::journal::event::AuthEvent;

pub use super::vault::{Vault, VaultEntryInfo};

/// Label bound into the sealed OT store file.
const LABEL: &str = "ot-store";
/// The issuer shown in authenticator apps.
const ISSUER: &str = "otgate OT";

/// One OT account.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OtAccount {
    /// Roles recorded at creation (the policy's OT identities remain authoritative).
    roles: Vec<String>,
    /// argon2id PHC string, if a password is set.
    password: Option<String>,
    /// TOTP enrolment, if any.
    totp: Option<TotpEnrolment>,
    /// Consecutive failed attempts.
    failures: FailureCounter,
    /// When the account was created.
    created_at: DateTime<Utc>,
}

/// The whole OT store document.
#[derive(Debug, Default, Serialize, Deserialize)]
struct OtDoc {
    /// Format version (1).
    version: u32,
    /// Accounts by id.
    accounts: BTreeMap<String, OtAccount>,
}

impl Versioned for OtDoc {
    fn version(&self) -> u32 {
        self.version
    }
}

impl LocalAccount for OtAccount {
    fn failures_mut(&mut self) -> &mut FailureCounter {
        &mut self.failures
    }
}

/// What `users list` shows of an OT account (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtAccountInfo {
    /// The account id.
    pub id: String,
    /// Roles recorded in the store.
    pub roles: Vec<String>,
    /// Whether a password is set.
    pub password: bool,
    /// Whether TOTP is enrolled.
    pub totp: bool,
    /// Consecutive failed attempts.
    pub failures: u32,
}

/// Which factors an authentication checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Factors {
    /// A password was verified.
    pub password: bool,
    /// A single-use TOTP code was verified.
    pub totp: bool,
}

impl Factors {
    /// A short name for the journal: `password`, `totp` or `password+totp`.
    pub fn method(&self) -> &'static str {
        match (self.password, self.totp) {
            (true, true) => "password+totp",
            (true, false) => "password",
            (false, true) => "totp",
            (false, false) => "none",
        }
    }
}

/// An OT user who has just authenticated against the OT store. Only
/// [`OtStore::authenticate`] makes one, so holding one proves the OT credentials were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtPrincipal {
    /// The account id.
    id: String,
    /// Roles recorded in the OT store.
    roles: Vec<String>,
    /// The factors verified.
    factors: Factors,
    /// When.
    at: DateTime<Utc>,
}

impl OtPrincipal {
    /// The account id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Roles recorded in the OT store (check against the policy's OT identity as well).
    pub fn roles(&self) -> &[String] {
        &self.roles
    }
    /// The factors verified.
    pub fn factors(&self) -> Factors {
        self.factors
    }
    /// Whether two factors were verified, or TOTP alone (what MFA-demanding rules need).
    pub fn has_second_factor(&self) -> bool {
        self.factors.totp
    }
    /// When the authentication happened.
    pub fn authenticated_at(&self) -> DateTime<Utc> {
        self.at
    }
}

/// A handle on the OT store. Cheap to clone; every call reads the current file under the lock.
#[derive(Debug, Clone)]
pub struct OtStore {
    /// `DATA_DIR/ot`.
    dir: PathBuf,
    /// The OT key, shared with the vault handle.
    key: Arc<StoreKey>,
}

impl OtStore {
    /// The key file in `dir`.
    pub fn key_path(dir: &Path) -> PathBuf {
        dir.join("store.key")
    }

    /// The sealed accounts file in `dir`.
    pub fn store_path(dir: &Path) -> PathBuf {
        dir.join("store.sealed")
    }

    /// Create an empty OT store and vault with a fresh key in `dir`; refuses if one exists.
    pub fn create(dir: &Path) -> Result<Self, StoreError> {
        sealed::create_dir(dir)?;
        let _lock = StoreLock::acquire(dir)?;
        for path in [Self::key_path(dir), Self::store_path(dir), Vault::path(dir)] {
            if path.exists() {
                return Err(StoreError::AlreadyExists { path });
            }
        }
        let key = StoreKey::generate(Zone::Ot);
        key.write_new(&Self::key_path(dir))?;
        sealed::save_doc(
            &key,
            LABEL,
            &Self::store_path(dir),
            &OtDoc {
                version: DOC_VERSION,
                ..OtDoc::default()
            },
        )?;
        let key = Arc::new(key);
        Vault::create(dir, key.clone())?;
        Ok(Self {
            dir: dir.to_owned(),
            key,
        })
    }

    /// Open the OT store in `dir` and check that its files authenticate with its key.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let key = StoreKey::load(Zone::Ot, &Self::key_path(dir))?;
        let store = Self {
            dir: dir.to_owned(),
            key: Arc::new(key),
        };
        store.read(|_| ())?;
        store.vault().list()?;
        Ok(store)
    }

    /// The device-secret vault under the same OT key.
    pub fn vault(&self) -> Vault {
        Vault::new(self.dir.clone(), self.key.clone())
    }

    /// The OT document, under the OT key.
    fn file(&self) -> DocFile<'_> {
        DocFile {
            dir: &self.dir,
            key: &self.key,
            label: LABEL,
            path: Self::store_path(&self.dir),
        }
    }

    fn read<T>(&self, f: impl FnOnce(&OtDoc) -> T) -> Result<T, StoreError> {
        self.file().read(f)
    }

    fn update<T>(&self, f: impl FnOnce(&mut OtDoc) -> T) -> Result<T, StoreError> {
        self.file().update(f)
    }

    /// Add an OT account with `roles` and an optional password.
    pub fn add_user(
        &self,
        id: &str,
        roles: &[String],
        password: Option<&Secret>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        validate_name(id)?;
        for role in roles {
            validate_name(role)?;
        }
        let phc = password.map(password::hash).transpose()?;
        self.update(|doc| {
            if doc.accounts.contains_key(id) {
                return Err(StoreError::AccountExists {
                    zone: Zone::Ot,
                    id: id.to_owned(),
                });
            }
            let account = OtAccount {
                roles: roles.to_vec(),
                password: phc,
                totp: None,
                failures: FailureCounter::default(),
                created_at: now,
            };
            doc.accounts.insert(id.to_owned(), account);
            Ok(())
        })?
    }

    /// Set or replace an account's password.
    pub fn set_password(&self, id: &str, password: &Secret) -> Result<(), StoreError> {
        let phc = password::hash(password)?;
        self.update(|doc| match doc.accounts.get_mut(id) {
            Some(account) => {
                account.password = Some(phc);
                Ok(())
            }
            None => Err(StoreError::UnknownAccount {
                zone: Zone::Ot,
                id: id.to_owned(),
            }),
        })?
    }

    /// Enrol (or re-enrol) an account for TOTP with a fresh seed; returns what to show once.
    pub fn enroll_totp(&self, id: &str, now: DateTime<Utc>) -> Result<EnrolmentSecret, StoreError> {
        self.enroll(id, None, now)
    }

    /// Enrol an account with a known seed (tests and the demo, which must compute codes).
    pub fn enroll_totp_with_seed(
        &self,
        id: &str,
        seed: Secret,
        now: DateTime<Utc>,
    ) -> Result<EnrolmentSecret, StoreError> {
        self.enroll(id, Some(seed), now)
    }

    fn enroll(
        &self,
        id: &str,
        seed: Option<Secret>,
        now: DateTime<Utc>,
    ) -> Result<EnrolmentSecret, StoreError> {
        let (enrolment, shown) = account::enrolment(ISSUER, id, seed, now);
        self.update(|doc| match doc.accounts.get_mut(id) {
            Some(account) => {
                account.totp = Some(enrolment);
                Ok(())
            }
            None => Err(StoreError::UnknownAccount {
                zone: Zone::Ot,
                id: id.to_owned(),
            }),
        })??;
        Ok(shown)
    }

    /// Remove an account.
    pub fn remove_user(&self, id: &str) -> Result<(), StoreError> {
        self.update(|doc| doc.accounts.remove(id))?
            .map(|_| ())
            .ok_or_else(|| StoreError::UnknownAccount {
                zone: Zone::Ot,
                id: id.to_owned(),
            })
    }

    /// Every account, without secrets.
    pub fn list_users(&self) -> Result<Vec<OtAccountInfo>, StoreError> {
        self.read(|doc| {
            doc.accounts
                .iter()
                .map(|(id, a)| OtAccountInfo {
                    id: id.clone(),
                    roles: a.roles.clone(),
                    password: a.password.is_some(),
                    totp: a.totp.is_some(),
                    failures: a.failures.failures,
                })
                .collect()
        })
    }

    /// Authenticate an OT user at the console: every factor the account has enrolled must be
    /// given and correct; a TOTP code is accepted once. Failures are counted and back off.
    pub fn authenticate(
        &self,
        user: &str,
        password: Option<&str>,
        totp: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<OtPrincipal, AuthError> {
        let outcome = self.update(|doc| {
            let Some(account) = doc.accounts.get_mut(user) else {
                return Err(AuthError::UnknownIdentity {
                    identity: user.to_owned(),
                    zone: Zone::Ot,
                });
            };
            let result = account::attempt(account, user, now, |a| {
                check_factors(user, a, password, totp, now)
            });
            result.map(|factors| OtPrincipal {
                id: user.to_owned(),
                roles: account.roles.clone(),
                factors,
                at: now,
            })
        })?;
        outcome
    }
}

impl OtStore {
    /// [`authenticate`](Self::authenticate) at the console, recorded: the blocking work (argon2,
    /// the store's fsync) runs off the async threads, then `LoginSucceeded` or `LoginFailed`
    /// (zone `ot`, source `console`, `purpose` e.g. `approve R-0001`) is recorded, and only a
    /// recorded success returns the principal. Use this from the control socket's handlers.
    pub async fn authenticate_recorded(
        &self,
        recorder: &dyn AuthRecorder,
        user: &str,
        password: Option<&str>,
        totp: Option<&str>,
        now: DateTime<Utc>,
        purpose: &str,
    ) -> Result<OtPrincipal, AuthError> {
        let store = self.clone();
        let (user_owned, password, totp) = (
            user.to_owned(),
            password.map(|p| zeroize::Zeroizing::new(p.to_owned())),
            totp.map(str::to_owned),
        );
        let outcome = tokio::task::spawn_blocking(move || {
            store.authenticate(
                &user_owned,
                password.as_deref().map(String::as_str),
                totp.as_deref(),
                now,
            )
        })
        .await
        .unwrap_or_else(|e| {
            Err(AuthError::Journal(format!(
                "authentication task failed: {e}"
            )))
        });
        match outcome {
            Ok(principal) => {
                let event = AuthEvent::LoginSucceeded {
                    identity: principal.id.clone(),
                    zone: Zone::Ot,
                    method: principal.factors.method().to_owned(),
                    source: "console".to_owned(),
                    purpose: purpose.to_owned(),
                };
                recorder.record(event).await.map_err(AuthError::Journal)?;
                Ok(principal)
            }
            Err(error) => {
                let event = AuthEvent::LoginFailed {
                    identity: user.to_owned(),
                    zone: Zone::Ot,
                    reason: error.reason_code().to_owned(),
                    source: "console".to_owned(),
                };
                if let Err(e) = recorder.record(event).await {
                    tracing::error!(error = %e, "could not journal a failed console login");
                }
                Err(error)
            }
        }
    }
}

fn check_factors(
    user: &str,
    account: &mut OtAccount,
    password: Option<&str>,
    totp: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Factors, AuthError> {
    let identity = || user.to_owned();
    if account.password.is_none() && account.totp.is_none() {
        return Err(AuthError::NoCredentials {
            identity: identity(),
            zone: Zone::Ot,
        });
    }
    // Check the password first and always, so a wrong password never consumes a TOTP step.
    let password_ok = match (&account.password, password) {
        (Some(phc), Some(given)) => {
            if !password::verify(phc, given.as_bytes()) {
                return Err(AuthError::WrongPassword {
                    identity: identity(),
                });
            }
            true
        }
        (Some(_), None) => {
            return Err(AuthError::PasswordRequired {
                identity: identity(),
            })
        }
        (None, Some(_)) => {
            return Err(AuthError::WrongPassword {
                identity: identity(),
            })
        }
        (None, None) => false,
    };
    let totp_ok = match (account.totp.as_mut(), totp) {
        (Some(enrolment), Some(code)) => {
            account::verify_code(Some(enrolment), user, Zone::Ot, code, now)?;
            true
        }
        (Some(_), None) => {
            return Err(AuthError::TotpRequired {
                identity: identity(),
            })
        }
        (None, Some(_)) => {
            return Err(AuthError::TotpNotEnrolled {
                identity: identity(),
                zone: Zone::Ot,
            })
        }
        (None, None) => false,
    };
    Ok(Factors {
        password: password_ok,
        totp: totp_ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, OtStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = OtStore::create(&dir.path().join("ot")).unwrap();
        (dir, store)
    }

    fn seed() -> Secret {
        Secret::from("sam's seed: 20 bytes")
    }

    #[test]
    fn approver_with_password_and_totp_needs_both_once() {
        let (_dir, store) = store();
        let now = Utc::now();
        store
            .add_user(
                "sam",
                &["shift-supervisor".into()],
                Some(&Secret::from("sam password")),
                now,
            )
            .unwrap();
        store.enroll_totp_with_seed("sam", seed(), now).unwrap();
        let code = TotpEnrolment::from_seed(seed(), now).code_at(now);
        let err = store
            .authenticate("sam", Some("sam password"), None, now)
            .unwrap_err();
        assert_eq!(err.reason_code(), "totp_required");
        let err = store
            .authenticate("sam", None, Some(&code), now)
            .unwrap_err();
        assert_eq!(err.reason_code(), "password_required");
        let p = store
            .authenticate("sam", Some("sam password"), Some(&code), now)
            .unwrap();
        assert_eq!(p.id(), "sam");
        assert_eq!(p.roles(), ["shift-supervisor".to_string()]);
        assert_eq!(p.factors().method(), "password+totp");
        let err = store
            .authenticate("sam", Some("sam password"), Some(&code), now)
            .unwrap_err();
        assert_eq!(err.reason_code(), "totp_reused");
    }

    #[test]
    fn wrong_password_does_not_burn_the_code() {
        let (_dir, store) = store();
        let now = Utc::now();
        store
            .add_user(
                "sue",
                &["shift-supervisor".into()],
                Some(&Secret::from("sue password")),
                now,
            )
            .unwrap();
        store.enroll_totp_with_seed("sue", seed(), now).unwrap();
        let code = TotpEnrolment::from_seed(seed(), now).code_at(now);
        assert_eq!(
            store
                .authenticate("sue", Some("nope"), Some(&code), now)
                .unwrap_err()
                .reason_code(),
            "wrong_password"
        );
        assert!(store
            .authenticate("sue", Some("sue password"), Some(&code), now)
            .is_ok());
    }

    #[test]
    fn an_it_identity_cannot_authenticate_on_the_ot_side() {
        let (_dir, store) = store();
        let err = store
            .authenticate("alice", Some("whatever"), Some("123456"), Utc::now())
            .unwrap_err();
        assert!(matches!(
            err,
            AuthError::UnknownIdentity { zone: Zone::Ot, .. }
        ));
    }

    #[test]
    fn accounts_without_credentials_and_duplicates_are_refused() {
        let (_dir, store) = store();
        let now = Utc::now();
        store
            .add_user("oscar", &["operator".into()], None, now)
            .unwrap();
        assert_eq!(
            store
                .authenticate("oscar", None, None, now)
                .unwrap_err()
                .reason_code(),
            "no_credentials"
        );
        assert!(matches!(
            store.add_user("oscar", &[], None, now),
            Err(StoreError::AccountExists { .. })
        ));
        store.remove_user("oscar").unwrap();
        assert!(store.list_users().unwrap().is_empty());
    }

    #[tokio::test]
    async fn console_logins_are_recorded_before_they_count() {
        use crate::stores::record::MemoryRecorder;
        let (_dir, store) = store();
        let now = Utc::now();
        store
            .add_user(
                "sue",
                &["shift-supervisor".into()],
                Some(&Secret::from("sue password")),
                now,
            )
            .unwrap();
        let recorder = MemoryRecorder::default();
        let p = store
            .authenticate_recorded(
                &recorder,
                "sue",
                Some("sue password"),
                None,
                now,
                "approve R-0001",
            )
            .await
            .unwrap();
        assert_eq!(p.id(), "sue");
        let err = store
            .authenticate_recorded(
                &recorder,
                "alice",
                None,
                Some("123456"),
                now,
                "approve R-0001",
            )
            .await;
        assert_eq!(err.unwrap_err().reason_code(), "unknown_identity");
        let events = recorder.snapshot();
        assert!(
            matches!(&events[0], AuthEvent::LoginSucceeded { identity, zone: Zone::Ot, method, purpose, .. }
            if identity == "sue" && method == "password" && purpose == "approve R-0001")
        );
        assert!(
            matches!(&events[1], AuthEvent::LoginFailed { identity, zone: Zone::Ot, reason, source }
            if identity == "alice" && reason == "unknown_identity" && source == "console")
        );
    }

    #[test]
    fn repeated_failures_are_rate_limited() {
        let (_dir, store) = store();
        let now = Utc::now();
        store
            .enroll_totp_with_seed("olga", seed(), now)
            .unwrap_err();
        store
            .add_user("olga", &["safety-engineer".into()], None, now)
            .unwrap();
        store.enroll_totp_with_seed("olga", seed(), now).unwrap();
        for _ in 0..4 {
            let _ = store.authenticate("olga", None, Some("000000"), now);
        }
        let code = TotpEnrolment::from_seed(seed(), now).code_at(now);
        let err = store
            .authenticate("olga", None, Some(&code), now)
            .unwrap_err();
        assert_eq!(err.reason_code(), "rate_limited");
        let later = now + chrono::Duration::seconds(5);
        let code = TotpEnrolment::from_seed(seed(), later).code_at(later);
        assert!(store.authenticate("olga", None, Some(&code), later).is_ok());
    }
}
