//! Secret values held in memory: [`Secret`] (a password, a TOTP seed, a device password) and
//! [`SecretGuard`] (a device secret revealed to a broker for injection).
//!
//! Both are zeroized when dropped and print `[redacted]` in `Debug` and `Display`, so a secret
//! that ends up in a log line, an error or a `{:?}` shows nothing. Neither implements `Serialize`:
//! the stores serialize secret fields only inside their encrypted files, through the crate-private
//! [`serde_inner`] adapter. Nothing here does I/O.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// A secret byte string: zeroized on drop, redacted when printed, never serialized in the clear.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wrap bytes as a secret (the caller's buffer moves in and is zeroized on drop).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Wrap a string as a secret.
    pub fn from_string(text: String) -> Self {
        Self::new(text.into_bytes())
    }

    /// Read a secret from text such as a line of stdin: one trailing `\n` or `\r\n` is removed.
    pub fn from_line(mut text: String) -> Self {
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        Self::from_string(text)
    }

    /// The secret's bytes. Every call site is a place the secret is used; keep them few.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as text, if it is UTF-8.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Its length in bytes (lengths are not secret here).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Self {
        Self::from_string(text)
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Self {
        Self::from_string(text.to_owned())
    }
}

/// A device secret revealed for injection into an OT session by a broker. Holds a copy that is
/// zeroized on drop; prints `[redacted]`. Made only by
/// [`Vault::reveal_for_injection`](super::vault::Vault::reveal_for_injection).
pub struct SecretGuard {
    /// The entry's name, which is not secret.
    name: String,
    /// The value; zeroized when the guard drops.
    value: Secret,
}

impl SecretGuard {
    pub(super) fn new(name: String, value: Secret) -> Self {
        Self { name, value }
    }

    /// The vault entry's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The secret bytes, to write into the OT-side session and nowhere else.
    pub fn expose(&self) -> &[u8] {
        self.value.expose()
    }
}

impl fmt::Debug for SecretGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretGuard({}: [redacted])", self.name)
    }
}

impl fmt::Display for SecretGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: [redacted]", self.name)
    }
}

/// Serde adapter for secret fields inside the stores' encrypted files only (base64 text).
pub(crate) mod serde_inner {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{Secret, Zeroize, Zeroizing};

    pub(crate) fn serialize<S: Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
        let text =
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(secret.expose()));
        s.serialize_str(&text)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        let mut text = String::deserialize(d)?;
        let decoded = base64::engine::general_purpose::STANDARD.decode(text.as_bytes());
        text.zeroize();
        decoded.map(Secret::new).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_redacted() {
        let s = Secret::from("hunter2");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "[redacted]");
        let g = SecretGuard::new("hmi-line1".into(), s);
        assert!(!format!("{g:?}{g}").contains("hunter2"));
    }

    #[test]
    fn line_endings_are_trimmed_once() {
        assert_eq!(Secret::from_line("pw\r\n".into()).expose(), b"pw");
        assert_eq!(Secret::from_line("pw\n\n".into()).expose(), b"pw\n");
    }
}
