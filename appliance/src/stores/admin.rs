//! Administration of the stores, journaled: add and remove accounts, enrol TOTP, set passwords,
//! set and remove vault entries. Each change is checked first, then journaled (an `AdminEvent`
//! naming the account or entry, never a secret), then applied; a refusal journals nothing and
//! changes nothing. The CLI uses this directly when no daemon runs; the daemon's control socket
//! uses it while the daemon holds the journal, so both paths do exactly the same thing.
//!
//! Blocking (argon2, fsync): call it from a blocking context (`spawn_blocking` in the daemon).

use chrono::Utc;
use serde::Serialize;

use super::it::{ItAccountInfo, ItStore};
use super::ot::{OtAccountInfo, OtStore, VaultEntryInfo};
use super::totp::EnrolmentSecret;
use super::{password, validate_name, Secret, StoreError, Zone};
use crate::datadir::DataDir;
use crate::journal::event::{AdminEvent, Event};
use crate::journal::{Journal, JournalError};

/// Why an administrative change was not made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The store refused or failed (unknown account, exists already, tampered file, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The change could not be journaled, so it was not applied.
    #[error("not applied, the journal refused it: {0}")]
    Journal(#[from] JournalError),
}

/// Accounts of one or both stores, for `users list` (no secrets).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Accounts {
    /// IT identities with local credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub it: Option<Vec<ItAccountInfo>>,
    /// OT accounts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ot: Option<Vec<OtAccountInfo>>,
}

/// Journaled administration of both stores and the vault.
#[derive(Debug, Clone)]
pub struct Admin {
    /// The IT store.
    it: ItStore,
    /// The OT store (and vault).
    ot: OtStore,
    /// Where each change is recorded before it is applied.
    journal: Journal,
    /// Who acts (`console` for the local CLI).
    by: String,
}

impl Admin {
    /// Open both stores of `data` and administer them, recording to `journal` as `by`.
    pub fn open(data: &DataDir, journal: Journal, by: &str) -> Result<Self, StoreError> {
        Ok(Self {
            it: ItStore::open(&data.it_store_dir())?,
            ot: OtStore::open(&data.ot_store_dir())?,
            journal,
            by: by.to_owned(),
        })
    }

    fn record(&self, event: AdminEvent) -> Result<(), AdminError> {
        self.journal.append_blocking(Event::Admin(event))?;
        Ok(())
    }

    fn ot_account_exists(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.ot.list_users()?.iter().any(|a| a.id == id))
    }

    /// Add an OT account.
    pub fn add_ot(
        &self,
        id: &str,
        roles: &[String],
        password: Option<&Secret>,
    ) -> Result<(), AdminError> {
        validate_name(id)?;
        for role in roles {
            validate_name(role)?;
        }
        if let Some(pw) = password {
            if pw.len() < password::MIN_LEN {
                return Err(StoreError::InvalidSecret {
                    what: "password",
                    reason: "shorter than 8 bytes",
                }
                .into());
            }
        }
        if self.ot_account_exists(id)? {
            return Err(StoreError::AccountExists {
                zone: Zone::Ot,
                id: id.to_owned(),
            }
            .into());
        }
        self.record(AdminEvent::AccountAdded {
            identity: id.to_owned(),
            zone: Zone::Ot,
            roles: roles.to_vec(),
            by: self.by.clone(),
        })?;
        self.ot.add_user(id, roles, password, Utc::now())?;
        Ok(())
    }

    /// Enrol (or re-enrol) TOTP for `id` in `zone`; returns what to show once.
    pub fn enroll_totp(&self, id: &str, zone: Zone) -> Result<EnrolmentSecret, AdminError> {
        validate_name(id)?;
        if zone == Zone::Ot && !self.ot_account_exists(id)? {
            return Err(StoreError::UnknownAccount {
                zone,
                id: id.to_owned(),
            }
            .into());
        }
        self.record(AdminEvent::TotpEnrolled {
            identity: id.to_owned(),
            zone,
            by: self.by.clone(),
        })?;
        Ok(match zone {
            Zone::It => self.it.enroll_totp(id, Utc::now())?,
            Zone::Ot => self.ot.enroll_totp(id, Utc::now())?,
        })
    }

    /// Set `id`'s password in `zone`.
    pub fn set_password(&self, id: &str, zone: Zone, password: &Secret) -> Result<(), AdminError> {
        validate_name(id)?;
        if password.len() < password::MIN_LEN {
            return Err(StoreError::InvalidSecret {
                what: "password",
                reason: "shorter than 8 bytes",
            }
            .into());
        }
        if zone == Zone::Ot && !self.ot_account_exists(id)? {
            return Err(StoreError::UnknownAccount {
                zone,
                id: id.to_owned(),
            }
            .into());
        }
        self.record(AdminEvent::PasswordSet {
            identity: id.to_owned(),
            zone,
            by: self.by.clone(),
        })?;
        match zone {
            Zone::It => self.it.set_password(id, password)?,
            Zone::Ot => self.ot.set_password(id, password)?,
        }
        Ok(())
    }

    /// Remove `id`'s local credentials from `zone`.
    pub fn remove(&self, id: &str, zone: Zone) -> Result<(), AdminError> {
        let exists = match zone {
            Zone::It => self.it.list()?.iter().any(|a| a.id == id),
            Zone::Ot => self.ot_account_exists(id)?,
        };
        if !exists {
            return Err(StoreError::UnknownAccount {
                zone,
                id: id.to_owned(),
            }
            .into());
        }
        self.record(AdminEvent::AccountRemoved {
            identity: id.to_owned(),
            zone,
            by: self.by.clone(),
        })?;
        match zone {
            Zone::It => self.it.remove(id)?,
            Zone::Ot => self.ot.remove_user(id)?,
        }
        Ok(())
    }

    /// The accounts of `zone`, or of both stores.
    pub fn list(&self, zone: Option<Zone>) -> Result<Accounts, AdminError> {
        Ok(Accounts {
            it: if zone != Some(Zone::Ot) {
                Some(self.it.list()?)
            } else {
                None
            },
            ot: if zone != Some(Zone::It) {
                Some(self.ot.list_users()?)
            } else {
                None
            },
        })
    }

    /// Set a vault entry; returns whether it replaced one.
    pub fn vault_set(&self, name: &str, value: Secret) -> Result<bool, AdminError> {
        validate_name(name)?;
        if value.is_empty() || value.len() > super::vault::MAX_SECRET_LEN {
            return Err(StoreError::InvalidSecret {
                what: "vault value",
                reason: "empty or longer than 4096 bytes",
            }
            .into());
        }
        let vault = self.ot.vault();
        let replaced = vault.list()?.iter().any(|e| e.name == name);
        self.record(AdminEvent::VaultSecretSet {
            name: name.to_owned(),
            replaced,
            by: self.by.clone(),
        })?;
        vault.set(name, value, Utc::now())?;
        Ok(replaced)
    }

    /// The vault's names (never values).
    pub fn vault_list(&self) -> Result<Vec<VaultEntryInfo>, AdminError> {
        Ok(self.ot.vault().list()?)
    }

    /// Remove a vault entry.
    pub fn vault_remove(&self, name: &str) -> Result<(), AdminError> {
        let vault = self.ot.vault();
        if !vault.list()?.iter().any(|e| e.name == name) {
            return Err(StoreError::UnknownSecret {
                name: name.to_owned(),
            }
            .into());
        }
        self.record(AdminEvent::VaultSecretRemoved {
            name: name.to_owned(),
            by: self.by.clone(),
        })?;
        vault.remove(name)?;
        Ok(())
    }
}
