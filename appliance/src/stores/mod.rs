//! The two credential stores, kept apart: [`it`] for the people who ask (maintenance engineers and
//! vendors: local TOTP enrolment, optional password, failure counters; their ed25519 public keys
//! come from the policy) and [`ot`] for the plant's side (approvers' and operators' accounts, and
//! the device-secret [`vault`]).
//!
//! Separate directories, separate key files, separate code paths: `ItStore` can only ever open
//! `DATA_DIR/it/` with the IT key, and `OtStore` `DATA_DIR/ot/` with the OT key. Nothing in `it`
//! refers to `ot` or back. An IT identity cannot approve because approvals authenticate through
//! [`ot::OtStore::authenticate`], which consults the OT store only.
//!
//! Guarantees: every file is sealed (ChaCha20-Poly1305, the zone's key, the file's label as
//! associated data), replaced atomically (temp file, fsync, rename) with mode 0600, and changed
//! only under the store's lock, so the daemon and the CLI never lose each other's updates. A file
//! that fails authentication is reported as tampered, naming the file, and nothing is applied.
//! Secrets are [`secret::Secret`]s: zeroized on drop, `[redacted]` when printed. The stores
//! themselves do not journal; callers record outcomes through [`record::AuthRecorder`] (the
//! journal), e.g. [`ot::OtStore::authenticate_recorded`] for the console.
//!
//! ```text
//! DATA_DIR/it/store.key      the IT store's key          DATA_DIR/ot/store.key     the OT key
//! DATA_DIR/it/store.sealed   IT accounts (TOTP, pw)      DATA_DIR/ot/store.sealed  OT accounts
//!                                                        DATA_DIR/ot/vault.sealed  device secrets
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod account;
pub mod admin;
pub mod it;
pub mod limit;
pub mod ot;
pub mod record;
pub(crate) mod sealed;
pub mod secret;
pub mod totp;
pub mod vault;

pub use secret::{Secret, SecretGuard};

#[cfg(test)]
mod separation_tests;

/// Which side of the appliance an identity or a store belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Zone {
    /// The corporate IT side: people who request access.
    It,
    /// The plant's OT side: approvers and operators.
    Ot,
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Zone::It => "it",
            Zone::Ot => "ot",
        })
    }
}

impl std::str::FromStr for Zone {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "it" => Ok(Zone::It),
            "ot" => Ok(Zone::Ot),
            other => Err(format!("unknown zone `{other}` (expected `it` or `ot`)")),
        }
    }
}

/// A fault in a store's files or a misuse of a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file or directory of the store could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store has not been created (no key or no store file).
    #[error("{path}: no store here (run `otgate init` first)")]
    Missing {
        /// The file that is absent.
        path: PathBuf,
    },
    /// The store already exists and would be overwritten.
    #[error("{path}: a store already exists here")]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A key file is malformed or belongs to the other zone.
    #[error("{path}: not a usable store key: {reason}")]
    BadKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A sealed file failed authentication: altered, truncated, or sealed with another key.
    #[error("{path}: the file does not authenticate with this store's key (tampered, truncated or from another store); nothing was read from it")]
    Tampered {
        /// The sealed file.
        path: PathBuf,
    },
    /// A sealed file authenticated but its contents are not a store of this version.
    #[error("{path}: malformed store contents: {reason}")]
    Malformed {
        /// The sealed file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Sealing failed (should not happen with a valid key).
    #[error("could not seal `{label}`")]
    Crypto {
        /// The label of the file being sealed.
        label: String,
    },
    /// No account with this id in the store.
    #[error("no {zone} account `{id}`")]
    UnknownAccount {
        /// The store.
        zone: Zone,
        /// The id asked for.
        id: String,
    },
    /// An account with this id exists already.
    #[error("the {zone} account `{id}` exists already")]
    AccountExists {
        /// The store.
        zone: Zone,
        /// The id.
        id: String,
    },
    /// No vault entry with this name.
    #[error("no vault entry `{name}`")]
    UnknownSecret {
        /// The name asked for.
        name: String,
    },
    /// An id or name that the stores do not accept.
    #[error("invalid name `{name}`: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A password or secret that the stores do not accept.
    #[error("refused {what}: {reason}")]
    InvalidSecret {
        /// Which secret (never its value).
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Hashing a password failed.
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            return StoreError::Missing {
                path: path.to_owned(),
            };
        }
        StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Why an authentication was refused or could not be completed, on either side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    // ---- refused: the credentials do not prove the claim ----
    /// No such identity (not in the policy on the IT side, no account on the OT side).
    #[error("unknown {zone} identity `{identity}`")]
    UnknownIdentity {
        /// The identity claimed.
        identity: String,
        /// Where it was looked up.
        zone: Zone,
    },
    /// The signature over the challenge does not verify with the identity's public key.
    #[error("`{identity}`: the challenge signature does not verify with the key the policy lists")]
    BadSignature {
        /// The identity claimed.
        identity: String,
    },
    /// The response does not answer the challenge issued on this connection (a replay).
    #[error("`{identity}`: the response answers a different or already used challenge")]
    ChallengeMismatch {
        /// The identity claimed.
        identity: String,
    },
    /// The challenge expired before the response arrived.
    #[error("`{identity}`: the challenge expired before the response arrived")]
    ChallengeExpired {
        /// The identity claimed.
        identity: String,
    },
    /// The identity's account has expired (vendors).
    #[error("`{identity}`: the account expired at {expired_at}")]
    IdentityExpired {
        /// The identity claimed.
        identity: String,
        /// When it expired.
        expired_at: chrono::DateTime<chrono::Utc>,
    },
    /// The account has no credential enrolled that could authenticate it.
    #[error("`{identity}`: no password or TOTP is enrolled for this {zone} account")]
    NoCredentials {
        /// The identity.
        identity: String,
        /// The store.
        zone: Zone,
    },
    /// A password is required and none was given.
    #[error("`{identity}`: a password is required")]
    PasswordRequired {
        /// The identity.
        identity: String,
    },
    /// The password is wrong (or none is set and one was given).
    #[error("`{identity}`: wrong password")]
    WrongPassword {
        /// The identity.
        identity: String,
    },
    /// A TOTP code is required and none was given.
    #[error("`{identity}`: a TOTP code is required")]
    TotpRequired {
        /// The identity.
        identity: String,
    },
    /// A TOTP code is required but the identity has no TOTP enrolment.
    #[error("`{identity}`: no TOTP is enrolled for this {zone} identity")]
    TotpNotEnrolled {
        /// The identity.
        identity: String,
        /// The store.
        zone: Zone,
    },
    /// The TOTP code was not accepted.
    #[error("`{identity}`: {rejection}")]
    TotpRejected {
        /// The identity.
        identity: String,
        /// Why.
        rejection: totp::TotpRejection,
    },
    /// Too many recent failures for this identity or source; try again later.
    #[error("too many failed attempts for {subject}; retry in {}s", retry_after.as_secs().max(1))]
    RateLimited {
        /// `identity:ID` or `source:ADDR`.
        subject: String,
        /// How long until the next attempt is considered.
        retry_after: Duration,
    },

    // ---- malformed: the peer did not speak the protocol ----
    /// A handshake message was malformed or out of order.
    #[error("malformed handshake: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// A handshake message declared a length over the limit; it was not read.
    #[error("handshake message of {len} bytes exceeds the {max}-byte limit")]
    MessageTooLarge {
        /// The declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer did not send the next message in time.
    #[error("timed out waiting for the {stage}")]
    Timeout {
        /// The message awaited.
        stage: &'static str,
    },

    // ---- faults on our side or the transport ----
    /// The connection failed.
    #[error("connection: {0}")]
    Io(#[source] std::io::Error),
    /// A store could not be read or updated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The decision could not be journaled, so it did not take effect.
    #[error("could not journal the authentication: {0}")]
    Journal(String),
}

impl AuthError {
    /// A short snake_case reason for the journal and for the peer.
    pub fn reason_code(&self) -> &'static str {
        match self {
            AuthError::UnknownIdentity { .. } => "unknown_identity",
            AuthError::BadSignature { .. } => "bad_signature",
            AuthError::ChallengeMismatch { .. } => "challenge_mismatch",
            AuthError::ChallengeExpired { .. } => "challenge_expired",
            AuthError::IdentityExpired { .. } => "identity_expired",
            AuthError::NoCredentials { .. } => "no_credentials",
            AuthError::PasswordRequired { .. } => "password_required",
            AuthError::WrongPassword { .. } => "wrong_password",
            AuthError::TotpRequired { .. } => "totp_required",
            AuthError::TotpNotEnrolled { .. } => "totp_not_enrolled",
            AuthError::TotpRejected { rejection, .. } => match rejection {
                totp::TotpRejection::Reused { .. } => "totp_reused",
                totp::TotpRejection::Malformed => "totp_malformed",
                _ => "totp_wrong",
            },
            AuthError::RateLimited { .. } => "rate_limited",
            AuthError::Malformed { .. } => "malformed",
            AuthError::MessageTooLarge { .. } => "message_too_large",
            AuthError::Timeout { .. } => "timeout",
            AuthError::Io(_) => "io",
            AuthError::Store(_) => "store_fault",
            AuthError::Journal(_) => "journal_fault",
        }
    }

    /// Whether this refusal counts as a failed attempt for rate limiting (the peer tried and
    /// failed), as opposed to our own fault or a factor merely left out.
    pub fn counts_as_failure(&self) -> bool {
        !matches!(
            self,
            AuthError::Store(_) | AuthError::Journal(_) | AuthError::RateLimited { .. }
        )
    }
}

/// Check an account id or vault name: 1-64 of `A-Z a-z 0-9 . _ @ -`, starting alphanumeric.
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let invalid = |reason| StoreError::InvalidName {
        name: name.chars().take(80).collect(),
        reason,
    };
    if name.is_empty() || name.len() > 64 {
        return Err(invalid("must be 1 to 64 characters"));
    }
    if !name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
    {
        return Err(invalid("must start with a letter or digit"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))
    {
        return Err(invalid(
            "may contain only letters, digits, `.`, `_`, `@` and `-`",
        ));
    }
    Ok(())
}

/// Argon2id password hashing (PHC string format, the crate's default cost: 19 MiB, 2 passes).
pub mod password {
    use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
    use argon2::Argon2;

    use super::{Secret, StoreError};

    /// The shortest password the stores accept.
    pub const MIN_LEN: usize = 8;

    /// Hash `password` with a fresh salt.
    pub fn hash(password: &Secret) -> Result<String, StoreError> {
        if password.len() < MIN_LEN {
            return Err(StoreError::InvalidSecret {
                what: "password",
                reason: "shorter than 8 bytes",
            });
        }
        let salt = SaltString::generate(&mut rand_core::OsRng);
        Argon2::default()
            .hash_password(password.expose(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| StoreError::PasswordHash(e.to_string()))
    }

    /// Whether `password` matches `phc`.
    pub fn verify(phc: &str, password: &[u8]) -> bool {
        PasswordHash::new(phc)
            .is_ok_and(|parsed| Argon2::default().verify_password(password, &parsed).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("alice").is_ok());
        assert!(validate_name("hmi-line1.vnc").is_ok());
        for bad in ["", "-x", "a b", "a/b", "ä", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = password::hash(&Secret::from("correct horse")).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(password::verify(&h, b"correct horse"));
        assert!(!password::verify(&h, b"correct horsE"));
        assert!(password::hash(&Secret::from("short")).is_err());
    }
}
