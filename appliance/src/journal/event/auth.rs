//! Authentication events: logins that succeeded or failed, on the IT and OT sides.
//!
//! Recorded before the verdict takes effect (a tunnel is accepted, an approval is counted).
//! They name identities, zones, methods and source addresses, never a secret or a code.

use serde::{Deserialize, Serialize};

use super::Subjects;
use crate::stores::Zone;

/// Authentication events: logins that succeeded or failed, on the IT and OT sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthEvent {
    /// An identity proved who it is.
    LoginSucceeded {
        /// The identity (policy id on the IT side, OT account id on the OT side).
        identity: String,
        /// Which store vouched for it.
        zone: Zone,
        /// How: `ed25519`, `ed25519+totp`, `password`, `totp`, `password+totp`.
        method: String,
        /// The peer address (IT tunnel) or `console` (OT, local).
        source: String,
        /// What the login is for (`request`, `session:G-0001:line3-plc`, `approve R-0001`, ...).
        purpose: String,
    },
    /// An attempt to authenticate failed or was refused.
    LoginFailed {
        /// The identity claimed (may be unknown).
        identity: String,
        /// Where it was checked.
        zone: Zone,
        /// The snake_case reason (`bad_signature`, `totp_reused`, `rate_limited`, ...).
        reason: String,
        /// The peer address (IT tunnel) or `console` (OT, local).
        source: String,
    },
}

impl Subjects for AuthEvent {
    fn kind(&self) -> &'static str {
        match self {
            AuthEvent::LoginSucceeded { .. } => "login_succeeded",
            AuthEvent::LoginFailed { .. } => "login_failed",
        }
    }

    fn actor(&self) -> Option<&str> {
        match self {
            AuthEvent::LoginSucceeded { identity, .. }
            | AuthEvent::LoginFailed { identity, .. } => Some(identity),
        }
    }
}
