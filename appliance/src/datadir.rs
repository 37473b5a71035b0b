//! The layout of an appliance's data directory (`--data-dir`, `OTGATE_DATA_DIR`,
//! default `/var/lib/otgate`). Every module finds its files here and nowhere else.
//!
//! ```text
//! DATA_DIR/
//!   appliance.key        ed25519 key that signs journal checkpoints (made by `otgate init`)
//!   appliance.pub        its public half, for `otgate audit verify`
//!   appliance.toml       appliance configuration (listen addresses, journal budget, ...)
//!   trust/root.json      the HQ trust root (authority keys and threshold)
//!   policy/              the active bundle and the last good one
//!   tls/                 the appliance's TLS certificate and key (IT side)
//!   it/                  the IT credential store and its own key
//!   ot/                  the OT credential store, device-secret vault and its own key
//!   journal/             append-only journal segments
//!   state/               sled materialized views (rebuildable from the journal)
//!   state.old-*/         sled directories moved aside before a rebuild
//!   export/              durable SIEM export cursors, one file per destination
//!   sessions/            session recordings
//!   control.sock         the running daemon's control socket
//! ```

use std::path::{Path, PathBuf};

/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/otgate";

/// Paths inside one appliance data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The layout rooted at `root` (nothing is created or checked).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The appliance's ed25519 key that signs journal checkpoints.
    pub fn appliance_key(&self) -> PathBuf {
        self.root.join("appliance.key")
    }

    /// The public half of the appliance key (verifies journal checkpoints without the secret).
    pub fn appliance_public_key(&self) -> PathBuf {
        self.root.join("appliance.pub")
    }

    /// The appliance configuration file.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("appliance.toml")
    }

    /// The HQ trust root directory.
    pub fn trust_dir(&self) -> PathBuf {
        self.root.join("trust")
    }

    /// Where the active and last good policy bundles live.
    pub fn policy_dir(&self) -> PathBuf {
        self.root.join("policy")
    }

    /// The appliance's TLS certificate and key.
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }

    /// The IT credential store.
    pub fn it_store_dir(&self) -> PathBuf {
        self.root.join("it")
    }

    /// The OT credential store and device-secret vault.
    pub fn ot_store_dir(&self) -> PathBuf {
        self.root.join("ot")
    }

    /// The journal segments.
    pub fn journal_dir(&self) -> PathBuf {
        self.root.join("journal")
    }

    /// The sled state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    /// Durable SIEM export cursors, one file per destination.
    pub fn export_dir(&self) -> PathBuf {
        self.root.join("export")
    }

    /// Session recordings.
    pub fn sessions_dir(&self) -> PathBuf {
        self.root.join("sessions")
    }

    /// The running daemon's control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }
}
