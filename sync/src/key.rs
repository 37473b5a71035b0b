//! Authority keys: ed25519 signing keys held by HQ's authorities, their public halves, and the
//! short key ids by which bundles and trust roots name them.
//!
//! A key id is the first 8 bytes of SHA-256 of the 32-byte public key, written as 16 lower-case
//! hex digits. Key files are JSON; the secret file is written with mode 0600 and never printed.
//! This module does no verification of bundles (see `verify`) and reads no clock.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The largest key file this module reads.
pub const MAX_KEY_FILE_BYTES: u64 = 16 * 1024;

/// The short name of an authority key: the first 8 bytes of SHA-256 of its public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The id of `public_key`.
    pub fn of(public_key: &VerifyingKey) -> Self {
        let digest = Sha256::digest(public_key.as_bytes());
        let mut id = [0u8; 8];
        for (slot, byte) in id.iter_mut().zip(digest.iter()) {
            *slot = *byte;
        }
        Self(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut id = [0u8; 8];
        hex::decode_to_slice(s, &mut id).map_err(|_| KeyError::BadKeyId {
            text: s.chars().take(40).collect(),
        })?;
        Ok(Self(id))
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Problems with key material and key files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key id is not 16 hex digits.
    #[error("key id {text:?} is not 16 hex digits")]
    BadKeyId {
        /// The offending text (at most 40 characters of it).
        text: String,
    },
    /// A public key is not 32 bytes of hex, or not a valid ed25519 point.
    #[error("public key is not a valid ed25519 key (64 hex digits)")]
    BadPublicKey,
    /// A secret key file does not hold a 32-byte secret in hex.
    #[error("{path}: not an otgate authority secret key file")]
    BadSecretKeyFile {
        /// The file.
        path: String,
    },
    /// A key file's stored key id does not match its public key.
    #[error("{path}: key id {stated} does not match the public key (whose id is {actual})")]
    KeyIdMismatch {
        /// The file.
        path: String,
        /// The id written in the file.
        stated: KeyId,
        /// The id computed from the key.
        actual: KeyId,
    },
    /// A key file is larger than any key file can be.
    #[error("{path}: {size} bytes is too large for a key file (limit {limit})")]
    Oversized {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Reading or writing a key file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A key file is not the expected JSON.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: String,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
}

/// An authority's public key as it appears in trust roots and `.pub` files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyEntry {
    /// The key id (checked against `public_key`).
    pub key_id: KeyId,
    /// The ed25519 public key, 64 hex digits.
    pub public_key: String,
    /// A human name for the key ("hq-security-1"), informational only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl PublicKeyEntry {
    /// The entry for `key`.
    pub fn new(key: &VerifyingKey, name: Option<String>) -> Self {
        Self {
            key_id: KeyId::of(key),
            public_key: hex::encode(key.as_bytes()),
            name,
        }
    }

    /// The verifying key, checked against the stated id.
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        let mut raw = [0u8; 32];
        hex::decode_to_slice(&self.public_key, &mut raw).map_err(|_| KeyError::BadPublicKey)?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::BadPublicKey)?;
        let actual = KeyId::of(&key);
        if actual != self.key_id {
            return Err(KeyError::KeyIdMismatch {
                path: "public key entry".into(),
                stated: self.key_id,
                actual,
            });
        }
        Ok(key)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretKeyFile {
    kind: String,
    key_id: KeyId,
    public_key: String,
    secret_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

const SECRET_KIND: &str = "otgate-authority-secret-key";

/// An authority's signing key. `Debug` shows only the key id.
pub struct AuthorityKey {
    signing: SigningKey,
    name: Option<String>,
}

impl fmt::Debug for AuthorityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorityKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl AuthorityKey {
    /// A fresh key from the operating system's random source.
    pub fn generate(name: Option<String>) -> Self {
        Self {
            signing: SigningKey::generate(&mut rand_core::OsRng),
            name,
        }
    }

    /// A key from a known 32-byte secret (tests and benchmarks).
    pub fn from_secret(secret: [u8; 32], name: Option<String>) -> Self {
        Self {
            signing: SigningKey::from_bytes(&secret),
            name,
        }
    }

    /// The key's id.
    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.signing.verifying_key())
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public entry for trust roots and `.pub` files.
    pub fn public_entry(&self) -> PublicKeyEntry {
        PublicKeyEntry::new(&self.signing.verifying_key(), self.name.clone())
    }

    /// Sign `message` (the bundle module decides what the message is).
    pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Read a secret key file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = read_small(path)?;
        let shown = path.display().to_string();
        let file: SecretKeyFile = serde_json::from_str(&text).map_err(|source| KeyError::Json {
            path: shown.clone(),
            source,
        })?;
        if file.kind != SECRET_KIND {
            return Err(KeyError::BadSecretKeyFile { path: shown });
        }
        let mut secret = [0u8; 32];
        hex::decode_to_slice(&file.secret_key, &mut secret).map_err(|_| {
            KeyError::BadSecretKeyFile {
                path: shown.clone(),
            }
        })?;
        let key = Self::from_secret(secret, file.name);
        secret.fill(0);
        if key.key_id() != file.key_id {
            return Err(KeyError::KeyIdMismatch {
                path: shown,
                stated: file.key_id,
                actual: key.key_id(),
            });
        }
        Ok(key)
    }

    /// Write the secret key file (mode 0600, refusing to replace an existing file) and return
    /// the JSON of the public entry (for the `.pub` file).
    pub fn save_new(&self, path: &Path) -> Result<(), KeyError> {
        let file = SecretKeyFile {
            kind: SECRET_KIND.into(),
            key_id: self.key_id(),
            public_key: hex::encode(self.signing.verifying_key().as_bytes()),
            secret_key: hex::encode(self.signing.to_bytes()),
            name: self.name.clone(),
        };
        let shown = path.display().to_string();
        let json = serde_json::to_string_pretty(&file).map_err(|source| KeyError::Json {
            path: shown.clone(),
            source,
        })?;
        write_new_private(path, format!("{json}\n").as_bytes()).map_err(|source| KeyError::Io {
            path: shown,
            source,
        })
    }
}

/// Read a public key file (`.pub`, one [`PublicKeyEntry`]) and check its id.
pub fn load_public(path: &Path) -> Result<PublicKeyEntry, KeyError> {
    let text = read_small(path)?;
    let shown = path.display().to_string();
    let entry: PublicKeyEntry = serde_json::from_str(&text).map_err(|source| KeyError::Json {
        path: shown.clone(),
        source,
    })?;
    entry.verifying_key().map_err(|e| match e {
        KeyError::KeyIdMismatch { stated, actual, .. } => KeyError::KeyIdMismatch {
            path: shown.clone(),
            stated,
            actual,
        },
        other => other,
    })?;
    Ok(entry)
}

fn read_small(path: &Path) -> Result<String, KeyError> {
    let shown = path.display().to_string();
    let size = std::fs::metadata(path)
        .map_err(|source| KeyError::Io {
            path: shown.clone(),
            source,
        })?
        .len();
    if size > MAX_KEY_FILE_BYTES {
        return Err(KeyError::Oversized {
            path: shown,
            size,
            limit: MAX_KEY_FILE_BYTES,
        });
    }
    std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: shown,
        source,
    })
}

fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_sha256_prefix_in_hex() {
        let key = AuthorityKey::from_secret([7; 32], None);
        let digest = Sha256::digest(key.verifying_key().as_bytes());
        assert_eq!(key.key_id().to_string(), hex::encode(&digest[..8]));
        assert_eq!(
            key.key_id().to_string().parse::<KeyId>().unwrap(),
            key.key_id()
        );
    }

    #[test]
    fn secret_key_file_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hq1.key");
        let key = AuthorityKey::generate(Some("hq1".into()));
        key.save_new(&path).unwrap();
        assert!(key.save_new(&path).is_err(), "never overwrites");
        let loaded = AuthorityKey::load(&path).unwrap();
        assert_eq!(loaded.key_id(), key.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(!format!("{key:?}").contains(&hex::encode(key.signing.to_bytes())));
    }

    #[test]
    fn public_entry_with_wrong_id_is_refused() {
        let key = AuthorityKey::from_secret([1; 32], None);
        let mut entry = key.public_entry();
        entry.key_id = KeyId([0; 8]);
        assert!(matches!(
            entry.verifying_key(),
            Err(KeyError::KeyIdMismatch { .. })
        ));
    }
}
