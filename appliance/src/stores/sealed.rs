//! Sealed files: the one place the stores touch disk. A store key file, ChaCha20-Poly1305 sealing
//! of a store's serialized contents, atomic replacement (temp file, fsync, rename, fsync of the
//! directory; mode 0600) and the store lock.
//!
//! Each store has its own key file in its own directory, and each sealed file binds its *label*
//! (`it-store`, `ot-store`, `ot-vault`) as associated data, so a file sealed for one store fails
//! to open as another even with the right key. A file that fails authentication is reported as
//! tampered, naming the file; nothing is half-read. This module does not know what is inside.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use super::{StoreError, Zone};

/// The first bytes of every sealed file.
const MAGIC: &[u8; 8] = b"OTGSEAL1";
/// ChaCha20-Poly1305 nonce length.
const NONCE_LEN: usize = 12;
/// Largest sealed file the stores will read (a store is small; refuse anything absurd).
pub(crate) const MAX_SEALED_LEN: u64 = 16 * 1024 * 1024;

/// A store's symmetric key, zeroized on drop. Never printed.
pub(crate) struct StoreKey {
    zone: Zone,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreKey({}: [redacted])", self.zone)
    }
}

fn key_header(zone: Zone) -> String {
    format!("otgate {zone} store key v1")
}

impl StoreKey {
    /// A fresh random key for `zone`.
    pub(crate) fn generate(zone: Zone) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        Self { zone, key }
    }

    /// Write the key to `path` (mode 0600), refusing to replace an existing file.
    pub(crate) fn write_new(&self, path: &Path) -> Result<(), StoreError> {
        let text = Zeroizing::new(format!(
            "{}\n{}\n",
            key_header(self.zone),
            hex::encode(self.key.as_ref())
        ));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| StoreError::io(path, source))?;
        file.write_all(text.as_bytes())
            .map_err(|source| StoreError::io(path, source))?;
        file.sync_all()
            .map_err(|source| StoreError::io(path, source))?;
        Ok(())
    }

    /// Load the key of `zone` from `path`; a key file of the other zone is refused.
    pub(crate) fn load(zone: Zone, path: &Path) -> Result<Self, StoreError> {
        let mut text = Zeroizing::new(String::new());
        let file = File::open(path).map_err(|source| StoreError::io(path, source))?;
        file.take(4096)
            .read_to_string(&mut text)
            .map_err(|source| StoreError::io(path, source))?;
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        if header != key_header(zone) {
            return Err(StoreError::BadKeyFile {
                path: path.to_owned(),
                reason: format!("expected the header `{}`", key_header(zone)),
            });
        }
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(lines.next().unwrap_or_default().trim(), key.as_mut()).map_err(
            |_| StoreError::BadKeyFile {
                path: path.to_owned(),
                reason: "the key is not 64 hex digits".into(),
            },
        )?;
        Ok(Self { zone, key })
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(self.key.as_ref()))
    }
}

fn associated_data(label: &str) -> Vec<u8> {
    format!("otgate sealed v1 {label}").into_bytes()
}

/// Seal `plaintext` for `label` with `key`: `MAGIC | nonce | ciphertext+tag`.
pub(crate) fn seal(key: &StoreKey, label: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let aad = associated_data(label);
    let ciphertext = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| StoreError::Crypto {
            label: label.to_owned(),
        })?;
    let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + ciphertext.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Open a sealed file's bytes; anything that does not authenticate is `Tampered { path }`.
pub(crate) fn open(
    key: &StoreKey,
    label: &str,
    bytes: &[u8],
    path: &Path,
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let tampered = || StoreError::Tampered {
        path: path.to_owned(),
    };
    let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(tampered)?;
    if rest.len() < NONCE_LEN {
        return Err(tampered());
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let aad = associated_data(label);
    key.cipher()
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| tampered())
}

/// Read a whole sealed file, refusing files over [`MAX_SEALED_LEN`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, StoreError> {
    let file = File::open(path).map_err(|source| StoreError::io(path, source))?;
    let len = file
        .metadata()
        .map_err(|source| StoreError::io(path, source))?
        .len();
    if len > MAX_SEALED_LEN {
        return Err(StoreError::Malformed {
            path: path.to_owned(),
            reason: format!("{len} bytes, more than the {MAX_SEALED_LEN} a store may hold"),
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(MAX_SEALED_LEN)
        .read_to_end(&mut bytes)
        .map_err(|source| StoreError::io(path, source))?;
    Ok(bytes)
}

/// Replace `path` with `bytes` atomically: write a temp file beside it (0600), fsync, rename over,
/// fsync the directory. A crash leaves either the old file or the new one, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut suffix = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{file_name}.{}.tmp", hex::encode(suffix)));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|source| StoreError::io(&tmp, source))?;
        file.write_all(bytes)
            .map_err(|source| StoreError::io(&tmp, source))?;
        file.sync_all()
            .map_err(|source| StoreError::io(&tmp, source))?;
        fs::rename(&tmp, path).map_err(|source| StoreError::io(path, source))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| StoreError::io(dir, source))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Load and unseal a serialized document from `path`.
pub(crate) fn load_doc<T: serde::de::DeserializeOwned>(
    key: &StoreKey,
    label: &str,
    path: &Path,
) -> Result<T, StoreError> {
    let bytes = read_file(path)?;
    let plaintext = open(key, label, &bytes, path)?;
    serde_json::from_slice(&plaintext).map_err(|e| StoreError::Malformed {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Serialize, seal and atomically write a document to `path`.
pub(crate) fn save_doc<T: serde::Serialize>(
    key: &StoreKey,
    label: &str,
    path: &Path,
    doc: &T,
) -> Result<(), StoreError> {
    let plaintext = Zeroizing::new(serde_json::to_vec(doc).map_err(|e| StoreError::Malformed {
        path: path.to_owned(),
        reason: e.to_string(),
    })?);
    let sealed = seal(key, label, &plaintext)?;
    write_atomic(path, &sealed)
}

/// Make a store directory (mode 0700) if absent.
pub(crate) fn create_dir(dir: &Path) -> Result<(), StoreError> {
    fs::create_dir_all(dir).map_err(|source| StoreError::io(dir, source))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|source| StoreError::io(dir, source))
}

/// An exclusive lock on a store directory, held for one read-modify-write. Released on drop.
/// The daemon and the CLI take it for every operation, so they never race or lose an update.
#[derive(Debug)]
pub(crate) struct StoreLock {
    /// The open lock file; the OS lock lives as long as this handle.
    _file: File,
}

impl StoreLock {
    /// Block until the lock on `dir/.lock` is ours.
    #[allow(clippy::incompatible_msrv)] // File::lock: the toolchain in use (1.95) has it.
    pub(crate) fn acquire(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StoreError::io(&path, source))?;
        file.lock()
            .map_err(|source| StoreError::io(&path, source))?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_label_binding() {
        let key = StoreKey::generate(Zone::Ot);
        let sealed = seal(&key, "ot-vault", b"hello").unwrap();
        let p = Path::new("x");
        assert_eq!(
            open(&key, "ot-vault", &sealed, p).unwrap().as_slice(),
            b"hello"
        );
        assert!(matches!(
            open(&key, "ot-store", &sealed, p),
            Err(StoreError::Tampered { .. })
        ));
        let other = StoreKey::generate(Zone::Ot);
        assert!(matches!(
            open(&other, "ot-vault", &sealed, p),
            Err(StoreError::Tampered { .. })
        ));
        for cut in 0..sealed.len() {
            assert!(open(&key, "ot-vault", &sealed[..cut], p).is_err());
        }
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(open(&key, "ot-vault", &flipped, p).is_err());
    }

    proptest::proptest! {
        #[test]
        fn no_bytes_make_open_panic_or_succeed(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let key = StoreKey::generate(Zone::It);
            proptest::prop_assert!(open(&key, "it-store", &bytes, Path::new("x")).is_err());
        }
    }

    #[test]
    fn key_files_round_trip_and_refuse_the_other_zone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = StoreKey::generate(Zone::It);
        key.write_new(&path).unwrap();
        assert!(key.write_new(&path).is_err());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(StoreKey::load(Zone::It, &path).is_ok());
        assert!(matches!(
            StoreKey::load(Zone::Ot, &path),
            Err(StoreError::BadKeyFile { .. })
        ));
    }
}
