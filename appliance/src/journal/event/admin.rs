//! Administration events: configuration changes, local accounts, vault entries (names only, never values).

use serde::{Deserialize, Serialize};

use super::Subjects;
use crate::stores::Zone;

/// Administration events: configuration changes, local accounts, vault entries (names only, never values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AdminEvent {
    /// `otgate init` created this appliance.
    ApplianceInitialized {
        /// SHA-256 fingerprint of the appliance's TLS certificate (`sha256:HEX`), which clients pin.
        tls_fingerprint: String,
        /// The certificate's subject alternative names.
        tls_names: Vec<String>,
        /// The appliance's journal-signing public key (hex).
        appliance_public_key: String,
        /// Whether a trust root was installed.
        trust_root_installed: bool,
    },
    /// A local account was added to a store.
    AccountAdded {
        /// The account id.
        identity: String,
        /// The store.
        zone: Zone,
        /// Roles recorded with it (OT accounts).
        roles: Vec<String>,
        /// Who did it (`console` for the local CLI).
        by: String,
    },
    /// A local account was removed from a store.
    AccountRemoved {
        /// The account id.
        identity: String,
        /// The store.
        zone: Zone,
        /// Who did it.
        by: String,
    },
    /// A TOTP secret was enrolled (or re-enrolled) for an identity.
    TotpEnrolled {
        /// The identity.
        identity: String,
        /// The store.
        zone: Zone,
        /// Who did it.
        by: String,
    },
    /// A local password was set for an identity.
    PasswordSet {
        /// The identity.
        identity: String,
        /// The store.
        zone: Zone,
        /// Who did it.
        by: String,
    },
    /// A device secret was set in the vault (its name only).
    VaultSecretSet {
        /// The entry's name.
        name: String,
        /// Whether an earlier value was replaced.
        replaced: bool,
        /// Who did it.
        by: String,
    },
    /// A device secret was removed from the vault.
    VaultSecretRemoved {
        /// The entry's name.
        name: String,
        /// Who did it.
        by: String,
    },
}

impl Subjects for AdminEvent {
    fn kind(&self) -> &'static str {
        match self {
            AdminEvent::ApplianceInitialized { .. } => "appliance_initialized",
            AdminEvent::AccountAdded { .. } => "account_added",
            AdminEvent::AccountRemoved { .. } => "account_removed",
            AdminEvent::TotpEnrolled { .. } => "totp_enrolled",
            AdminEvent::PasswordSet { .. } => "password_set",
            AdminEvent::VaultSecretSet { .. } => "vault_secret_set",
            AdminEvent::VaultSecretRemoved { .. } => "vault_secret_removed",
        }
    }

    fn actor(&self) -> Option<&str> {
        match self {
            AdminEvent::ApplianceInitialized { .. } => None,
            AdminEvent::AccountAdded { by, .. }
            | AdminEvent::AccountRemoved { by, .. }
            | AdminEvent::TotpEnrolled { by, .. }
            | AdminEvent::PasswordSet { by, .. }
            | AdminEvent::VaultSecretSet { by, .. }
            | AdminEvent::VaultSecretRemoved { by, .. } => Some(by),
        }
    }
}
