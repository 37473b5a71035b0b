//! The IT side's files: an identity's ed25519 key file (made by `otgate users keygen`) and the
//! client profile (`--profile FILE`) that keeps engineers' commands short, plus [`TunnelArgs`],
//! the flags every tunnel command shares (`--profile`, or `--appliance --pin --as --key`, and
//! `--totp`).
//!
//! Key files are `otgate ed25519 private key v1` then the 32-byte seed in hex, mode 0600, never
//! overwritten without `force`. Public keys print as 64 hex digits (what the policy lists);
//! [`parse_public_key`] also reads base64 and an `ed25519:` prefix. A profile is TOML:
//!
//! ```toml
//! appliance = "otgate.plant-a.example:8443"
//! pin = "sha256:5f1c..."        # or the path of the appliance certificate
//! identity = "alice"
//! key = "alice.key"             # relative paths are relative to the profile's directory
//! ```

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::client::{self, ClientError, ClientIdentity, TunnelStream};
use super::handshake::Purpose;
use super::tls::Pin;

/// The first line of a private key file.
const KEY_HEADER: &str = "otgate ed25519 private key v1";

/// A fault reading or writing a key or profile file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file exists and `--force` was not given.
    #[error("{path}: exists already (use --force to replace it)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a key file of this format.
    #[error("{path}: not an otgate ed25519 private key ({reason})")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A public key that is not 32 bytes of hex or base64, or not a valid point.
    #[error("not an ed25519 public key: `{given}`")]
    BadPublicKey {
        /// What was given.
        given: String,
    },
    /// A profile file is not valid TOML of the expected shape.
    #[error("{path}: {reason}")]
    BadProfile {
        /// The file.
        path: PathBuf,
        /// The TOML error.
        reason: String,
    },
}

/// A new random signing key.
pub fn generate_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// Write `key` to `path` (mode 0600). Refuses to replace an existing file unless `force`.
pub fn write_key_file(path: &Path, key: &SigningKey, force: bool) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    if path.exists() && !force {
        return Err(KeyFileError::Exists {
            path: path.to_owned(),
        });
    }
    let text = Zeroizing::new(format!("{KEY_HEADER}\n{}\n", hex::encode(key.to_bytes())));
    let tmp = path.with_extension("key-tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

/// Read a key file written by [`write_key_file`].
pub fn load_key_file(path: &Path) -> Result<SigningKey, KeyFileError> {
    let malformed = |reason| KeyFileError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let mut text = Zeroizing::new(String::new());
    fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(|source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        })?;
    let mut lines = text.lines();
    if lines.next() != Some(KEY_HEADER) {
        return Err(malformed(
            "the first line is not `otgate ed25519 private key v1`",
        ));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(lines.next().unwrap_or_default().trim(), seed.as_mut())
        .map_err(|_| malformed("the second line is not 64 hex digits"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A public key as the policy lists it: 64 hex digits.
pub fn format_public_key(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// Read a public key: 64 hex digits or base64 of 32 bytes, optionally prefixed `ed25519:`.
pub fn parse_public_key(given: &str) -> Result<VerifyingKey, KeyFileError> {
    let bad = || KeyFileError::BadPublicKey {
        given: given.chars().take(100).collect(),
    };
    let text = given.trim();
    let text = text.strip_prefix("ed25519:").unwrap_or(text);
    let mut bytes = [0u8; 32];
    if hex::decode_to_slice(text, &mut bytes).is_err() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| bad())?;
        bytes = decoded.try_into().map_err(|_| bad())?;
    }
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

/// A client profile file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientProfile {
    /// The appliance's IT-side address, `host:port`.
    pub appliance: String,
    /// `sha256:HEX`, or the path of the appliance certificate.
    pub pin: String,
    /// The identity id in the policy.
    pub identity: String,
    /// The private key file.
    pub key: PathBuf,
}

impl ClientProfile {
    /// Read a profile; relative `pin` and `key` paths are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let text = fs::read_to_string(path).map_err(|source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut profile: ClientProfile =
            toml::from_str(&text).map_err(|e| KeyFileError::BadProfile {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if profile.key.is_relative() {
            profile.key = base.join(&profile.key);
        }
        if !profile.pin.starts_with("sha256:") && Path::new(&profile.pin).is_relative() {
            profile.pin = base.join(&profile.pin).to_string_lossy().into_owned();
        }
        Ok(profile)
    }

    /// Write the profile as TOML, refusing to replace a file unless `force`.
    pub fn save(&self, path: &Path, force: bool) -> Result<(), KeyFileError> {
        if path.exists() && !force {
            return Err(KeyFileError::Exists {
                path: path.to_owned(),
            });
        }
        let text = toml::to_string(self).map_err(|e| KeyFileError::BadProfile {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        fs::write(path, text).map_err(|source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

/// The flags every tunnel command shares. Flatten into a command's arguments with
/// `#[command(flatten)]`; flags override the profile's values.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TunnelArgs {
    /// A client profile (appliance address, pin, identity, key file).
    #[arg(long, value_name = "FILE", env = "OTGATE_PROFILE")]
    pub profile: Option<PathBuf>,
    /// The appliance's IT-side address.
    #[arg(long, value_name = "HOST:PORT")]
    pub appliance: Option<String>,
    /// The appliance certificate to trust: its file, or `sha256:HEX`.
    #[arg(long, value_name = "CERT|sha256:HEX")]
    pub pin: Option<String>,
    /// Your identity id in the policy.
    #[arg(long = "as", value_name = "ID")]
    pub identity: Option<String>,
    /// Your ed25519 private key file (from `otgate users keygen`).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// A TOTP code, for requests whose rule needs MFA.
    #[arg(long, value_name = "CODE")]
    pub totp: Option<String>,
}

/// Tunnel settings resolved from [`TunnelArgs`]: ready to connect.
#[derive(Debug)]
pub struct ResolvedTunnel {
    /// The appliance address.
    pub address: String,
    /// The pinned certificate.
    pub pin: Pin,
    /// Who connects.
    pub identity: ClientIdentity,
}

impl ResolvedTunnel {
    /// Open an authenticated tunnel for `purpose`.
    pub async fn connect(&self, purpose: Purpose) -> Result<TunnelStream, ClientError> {
        client::connect(&self.address, &self.pin, &self.identity, purpose).await
    }
}

impl TunnelArgs {
    /// Merge the profile (if any) with the flags; name the missing flag when something is absent.
    pub fn resolve(&self) -> anyhow::Result<ResolvedTunnel> {
        let profile = match &self.profile {
            Some(path) => Some(ClientProfile::load(path)?),
            None => None,
        };
        let missing = |flag: &str| {
            crate::cli::hint(
                anyhow::anyhow!("no {flag} given"),
                format!("pass {flag}, or --profile FILE with a client profile"),
            )
        };
        let address = self
            .appliance
            .clone()
            .or_else(|| profile.as_ref().map(|p| p.appliance.clone()))
            .ok_or_else(|| missing("--appliance HOST:PORT"))?;
        let pin_text = self
            .pin
            .clone()
            .or_else(|| profile.as_ref().map(|p| p.pin.clone()))
            .ok_or_else(|| missing("--pin CERT|sha256:HEX"))?;
        let pin = Pin::parse(&pin_text).context("--pin")?;
        let id = self
            .identity
            .clone()
            .or_else(|| profile.as_ref().map(|p| p.identity.clone()))
            .ok_or_else(|| missing("--as ID"))?;
        let key_path = self
            .key
            .clone()
            .or_else(|| profile.as_ref().map(|p| p.key.clone()))
            .ok_or_else(|| missing("--key FILE"))?;
        let key = load_key_file(&key_path)?;
        Ok(ResolvedTunnel {
            address,
            pin,
            identity: ClientIdentity {
                id,
                key,
                totp: self.totp.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_refuse_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.key");
        let key = generate_key();
        write_key_file(&path, &key, false).unwrap();
        assert!(matches!(
            write_key_file(&path, &generate_key(), false),
            Err(KeyFileError::Exists { .. })
        ));
        assert_eq!(load_key_file(&path).unwrap().to_bytes(), key.to_bytes());
        write_key_file(&path, &generate_key(), true).unwrap();
        assert_ne!(load_key_file(&path).unwrap().to_bytes(), key.to_bytes());
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            load_key_file(&path),
            Err(KeyFileError::Malformed { .. })
        ));
    }

    #[test]
    fn public_keys_parse_in_hex_and_base64() {
        let key = generate_key().verifying_key();
        let hex_form = format_public_key(&key);
        assert_eq!(parse_public_key(&hex_form).unwrap(), key);
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.as_bytes());
        assert_eq!(parse_public_key(&format!("ed25519:{b64}")).unwrap(), key);
        assert!(parse_public_key("abcd").is_err());
    }

    #[test]
    fn profiles_resolve_relative_paths_and_flags_override() {
        let dir = tempfile::tempdir().unwrap();
        let key = generate_key();
        write_key_file(&dir.path().join("alice.key"), &key, false).unwrap();
        let profile = ClientProfile {
            appliance: "127.0.0.1:8443".into(),
            pin: format!("sha256:{}", "ab".repeat(32)),
            identity: "alice".into(),
            key: "alice.key".into(),
        };
        let path = dir.path().join("alice.toml");
        profile.save(&path, false).unwrap();
        assert!(profile.save(&path, false).is_err());
        let args = TunnelArgs {
            profile: Some(path),
            appliance: Some("10.0.0.1:9443".into()),
            ..Default::default()
        };
        let resolved = args.resolve().unwrap();
        assert_eq!(resolved.address, "10.0.0.1:9443");
        assert_eq!(resolved.identity.id, "alice");
        assert_eq!(resolved.identity.key.to_bytes(), key.to_bytes());
        let err = TunnelArgs::default().resolve().unwrap_err();
        assert!(format!("{err:#}").contains("--appliance"));
    }
}
