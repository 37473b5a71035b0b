//! The appliance's ed25519 key, which signs journal checkpoints: made once by `otgate init`,
//! stored as hex in `appliance.key` (mode 0600) with the public half in `appliance.pub` beside
//! it, so that `otgate audit verify` needs no secret.
//!
//! Generating never overwrites an existing key; loading zeroizes the bytes it read.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

/// Why a key could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key already exists at the path; keys are never overwritten.
    #[error("{} already exists; an appliance key is never overwritten", path.display())]
    Exists {
        /// The key file.
        path: PathBuf,
    },
    /// The file could not be read or written.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold a 32-byte hex key.
    #[error("{} does not hold a 32-byte hex ed25519 key", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
    },
}

/// Where the public half of the key at `key_path` is stored (`appliance.pub` beside `appliance.key`).
pub fn public_key_path(key_path: &Path) -> PathBuf {
    key_path.with_extension("pub")
}

/// Make a new appliance key at `path` (and its public half beside it). Refuses to overwrite.
pub fn generate_appliance_key(path: &Path) -> Result<SigningKey, KeyError> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|source| KeyError::Io {
            action: "create",
            path: parent.into(),
            source,
        })?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists { path: path.into() }
        } else {
            KeyError::Io {
                action: "create",
                path: path.into(),
                source,
            }
        }
    })?;
    let secret = Zeroizing::new(format!("{}\n", hex::encode(key.to_bytes())));
    file.write_all(secret.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyError::Io {
            action: "write",
            path: path.into(),
            source,
        })?;
    write_public_key(&public_key_path(path), &key.verifying_key())?;
    Ok(key)
}

fn write_public_key(path: &Path, key: &VerifyingKey) -> Result<(), KeyError> {
    fs::write(path, format!("{}\n", hex::encode(key.as_bytes()))).map_err(|source| KeyError::Io {
        action: "write",
        path: path.into(),
        source,
    })
}

fn read_hex32(path: &Path) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|source| KeyError::Io {
        action: "read",
        path: path.into(),
        source,
    })?);
    let mut bytes = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), bytes.as_mut_slice())
        .map_err(|_| KeyError::Malformed { path: path.into() })?;
    Ok(bytes)
}

/// Load the appliance key from `path`. Writes `appliance.pub` beside it if it is missing.
pub fn load_appliance_key(path: &Path) -> Result<SigningKey, KeyError> {
    let bytes = read_hex32(path)?;
    let key = SigningKey::from_bytes(&bytes);
    let public = public_key_path(path);
    if !public.exists() {
        write_public_key(&public, &key.verifying_key())?;
    }
    Ok(key)
}

/// Load the appliance's public key from `appliance.pub` (the path of the public file itself).
pub fn load_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let bytes = read_hex32(path)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Malformed { path: path.into() })
}

/// Load the appliance key at `path`, or make one if there is none (for tests and first start).
pub fn load_or_generate_appliance_key(path: &Path) -> Result<SigningKey, KeyError> {
    if path.exists() {
        load_appliance_key(path)
    } else {
        generate_appliance_key(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_load_and_refuse_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("appliance.key");
        let key = generate_appliance_key(&path).unwrap();
        assert_eq!(
            load_appliance_key(&path).unwrap().to_bytes(),
            key.to_bytes()
        );
        assert_eq!(
            load_public_key(&public_key_path(&path)).unwrap(),
            key.verifying_key()
        );
        assert!(matches!(
            generate_appliance_key(&path),
            Err(KeyError::Exists { .. })
        ));
        fs::write(&path, "nothex").unwrap();
        assert!(matches!(
            load_appliance_key(&path),
            Err(KeyError::Malformed { .. })
        ));
    }
}
