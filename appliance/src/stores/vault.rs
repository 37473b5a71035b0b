//! The OT device-secret vault (`DATA_DIR/ot/vault.sealed`): passwords of HMIs and PLC engineering
//! ports, which the brokers inject into OT sessions so that IT-side users never learn them.
//!
//! Sealed with the OT store's key (label `ot-vault`), replaced atomically with mode 0600, changed
//! under the OT store's lock. Values are [`Secret`]s in memory (zeroized, redacted when printed).
//! There is no way to list or export values: [`Vault::list`] returns names and times only, and
//! the single accessor of a value is [`Vault::reveal_for_injection`], for brokers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::sealed::{self, StoreKey, StoreLock};
use super::secret::serde_inner;
use super::{validate_name, Secret, SecretGuard, StoreError};

/// Label bound into the sealed vault file.
const LABEL: &str = "ot-vault";
/// The largest secret value accepted.
pub const MAX_SECRET_LEN: usize = 4096;

/// One entry.
#[derive(Clone, Serialize, Deserialize)]
struct VaultEntry {
    /// The value, serialized only inside the sealed file.
    #[serde(with = "serde_inner")]
    value: Secret,
    /// When it was last set.
    updated_at: DateTime<Utc>,
}

/// The whole vault document.
#[derive(Default, Serialize, Deserialize)]
struct VaultDoc {
    /// Format version (1).
    version: u32,
    /// Entries by name.
    entries: BTreeMap<String, VaultEntry>,
}

/// What `vault list` shows: the name and when it was set, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VaultEntryInfo {
    /// The entry's name.
    pub name: String,
    /// When it was last set.
    pub updated_at: DateTime<Utc>,
}

/// A handle on the vault; made by [`OtStore::vault`](super::ot::OtStore::vault).
#[derive(Debug, Clone)]
pub struct Vault {
    /// `DATA_DIR/ot` (the vault shares the OT store's lock).
    dir: PathBuf,
    /// The OT key.
    key: Arc<StoreKey>,
}

impl Vault {
    pub(super) fn new(dir: PathBuf, key: Arc<StoreKey>) -> Self {
        Self { dir, key }
    }

    /// The sealed vault file in the OT store's `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("vault.sealed")
    }

    /// Write an empty vault (the OT store's lock is held by the caller).
    pub(super) fn create(dir: &Path, key: Arc<StoreKey>) -> Result<Self, StoreError> {
        sealed::save_doc(
            &key,
            LABEL,
            &Self::path(dir),
            &VaultDoc {
                version: 1,
                ..VaultDoc::default()
            },
        )?;
        Ok(Self::new(dir.to_owned(), key))
    }

    fn load(&self) -> Result<VaultDoc, StoreError> {
        let path = Self::path(&self.dir);
        let doc: VaultDoc = sealed::load_doc(&self.key, LABEL, &path)?;
        if doc.version != 1 {
            return Err(StoreError::Malformed {
                path,
                reason: format!("unknown version {}", doc.version),
            });
        }
        Ok(doc)
    }

    fn update<T>(
        &self,
        f: impl FnOnce(&mut VaultDoc) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _lock = StoreLock::acquire(&self.dir)?;
        let mut doc = self.load()?;
        let out = f(&mut doc)?;
        sealed::save_doc(&self.key, LABEL, &Self::path(&self.dir), &doc)?;
        Ok(out)
    }

    /// Set `name` to `value`; returns whether an earlier value was replaced.
    pub fn set(&self, name: &str, value: Secret, now: DateTime<Utc>) -> Result<bool, StoreError> {
        validate_name(name)?;
        if value.is_empty() {
            return Err(StoreError::InvalidSecret {
                what: "vault value",
                reason: "empty",
            });
        }
        if value.len() > MAX_SECRET_LEN {
            return Err(StoreError::InvalidSecret {
                what: "vault value",
                reason: "longer than 4096 bytes",
            });
        }
        self.update(|doc| {
            Ok(doc
                .entries
                .insert(
                    name.to_owned(),
                    VaultEntry {
                        value,
                        updated_at: now,
                    },
                )
                .is_some())
        })
    }

    /// Remove `name`.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.update(|doc| match doc.entries.remove(name) {
            Some(_) => Ok(()),
            None => Err(StoreError::UnknownSecret {
                name: name.to_owned(),
            }),
        })
    }

    /// Names and update times, never values.
    pub fn list(&self) -> Result<Vec<VaultEntryInfo>, StoreError> {
        let _lock = StoreLock::acquire(&self.dir)?;
        let doc = self.load()?;
        Ok(doc
            .entries
            .iter()
            .map(|(name, e)| VaultEntryInfo {
                name: name.clone(),
                updated_at: e.updated_at,
            })
            .collect())
    }

    /// The value of `name`, for a broker to inject into an OT session and nowhere else. The guard
    /// zeroizes its copy when dropped and prints `[redacted]`.
    pub fn reveal_for_injection(&self, name: &str) -> Result<SecretGuard, StoreError> {
        let _lock = StoreLock::acquire(&self.dir)?;
        let mut doc = self.load()?;
        match doc.entries.remove(name) {
            Some(entry) => Ok(SecretGuard::new(name.to_owned(), entry.value)),
            None => Err(StoreError::UnknownSecret {
                name: name.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ot::OtStore;
    use super::*;

    #[test]
    fn set_list_reveal_remove() {
        let dir = tempfile::tempdir().unwrap();
        let ot = OtStore::create(&dir.path().join("ot")).unwrap();
        let vault = ot.vault();
        let now = Utc::now();
        assert!(!vault
            .set("hmi-line1", Secret::from("vnc-pass-1"), now)
            .unwrap());
        assert!(vault
            .set("hmi-line1", Secret::from("vnc-pass-2"), now)
            .unwrap());
        let listed = vault.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "hmi-line1");
        assert!(!format!("{listed:?}").contains("vnc-pass"));
        let guard = vault.reveal_for_injection("hmi-line1").unwrap();
        assert_eq!(guard.expose(), b"vnc-pass-2");
        assert!(!format!("{guard:?}").contains("vnc-pass"));
        vault.remove("hmi-line1").unwrap();
        assert!(matches!(
            vault.reveal_for_injection("hmi-line1"),
            Err(StoreError::UnknownSecret { .. })
        ));
        assert!(matches!(
            vault.remove("hmi-line1"),
            Err(StoreError::UnknownSecret { .. })
        ));
        assert!(vault.set("x", Secret::from(""), now).is_err());
        assert!(vault.set("../etc", Secret::from("v"), now).is_err());
    }

    #[test]
    fn vault_file_is_0600_and_holds_no_clear_text() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ot_dir = dir.path().join("ot");
        let ot = OtStore::create(&ot_dir).unwrap();
        ot.vault()
            .set(
                "plc-line3-eng",
                Secret::from("S3cr3t-Engineering-PW"),
                Utc::now(),
            )
            .unwrap();
        let bytes = std::fs::read(Vault::path(&ot_dir)).unwrap();
        assert!(!bytes
            .windows(8)
            .any(|w| w == b"S3cr3t-E" || w == b"plc-line"));
        let mode = std::fs::metadata(Vault::path(&ot_dir))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
}
