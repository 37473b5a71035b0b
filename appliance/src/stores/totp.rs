//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps, one step of
//! clock skew either way), with single use: a [`TotpEnrolment`] remembers the last time step it
//! accepted and refuses that step and every earlier one, so a code is accepted once.
//!
//! The HOTP arithmetic is `totp-rs`; this module adds enrolment, single use and the
//! `otpauth://` URL. It does no I/O: the stores persist the enrolment (and so the last accepted
//! step) before a code's acceptance takes effect.

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use totp_rs::{Algorithm, TOTP};

use super::secret::{serde_inner, Secret};

/// Seconds per TOTP step.
pub const STEP_SECONDS: u64 = 30;
/// Digits per code.
pub const DIGITS: usize = 6;
/// Steps of clock skew accepted either side of now.
pub const SKEW_STEPS: u64 = 1;
/// Length of a generated TOTP seed (160 bits, as RFC 4226 recommends).
pub const SEED_LEN: usize = 20;

/// Why a TOTP code was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TotpRejection {
    /// The code is not six digits.
    #[error("a TOTP code is {DIGITS} digits")]
    Malformed,
    /// The code matches no step within the skew of now.
    #[error("wrong TOTP code")]
    Wrong,
    /// The code matches a step at or before the last accepted one: it was already used.
    #[error("TOTP code already used (step {step}, last accepted {last_accepted})")]
    Reused {
        /// The step the code belongs to.
        step: u64,
        /// The last step accepted before.
        last_accepted: u64,
    },
}

/// One identity's TOTP enrolment: the seed and the last accepted step.
#[derive(Clone, Serialize, Deserialize)]
pub struct TotpEnrolment {
    /// The shared seed (raw bytes), only ever serialized inside a sealed store file.
    #[serde(with = "serde_inner")]
    seed: Secret,
    /// The last time step a code was accepted for; codes of this step or earlier are refused.
    last_step: Option<u64>,
    /// When the enrolment was made.
    enrolled_at: DateTime<Utc>,
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpEnrolment")
            .field("seed", &self.seed)
            .field("last_step", &self.last_step)
            .field("enrolled_at", &self.enrolled_at)
            .finish()
    }
}

/// What a new enrolment shows the user, once: the base32 seed and the `otpauth://` URL.
#[derive(Debug)]
pub struct EnrolmentSecret {
    /// The seed in base32 (RFC 4648, no padding), for typing into an authenticator.
    pub secret_base32: Secret,
    /// The `otpauth://totp/...` URL, for a QR code.
    pub url: Secret,
}

impl TotpEnrolment {
    /// A fresh random enrolment.
    pub fn generate(now: DateTime<Utc>) -> Self {
        let mut seed = vec![0u8; SEED_LEN];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        Self {
            seed: Secret::new(seed),
            last_step: None,
            enrolled_at: now,
        }
    }

    /// An enrolment with a known seed (tests and provisioning tools).
    pub fn from_seed(seed: Secret, now: DateTime<Utc>) -> Self {
        Self {
            seed,
            last_step: None,
            enrolled_at: now,
        }
    }

    /// When it was made.
    pub fn enrolled_at(&self) -> DateTime<Utc> {
        self.enrolled_at
    }

    fn totp(&self) -> Option<TOTP> {
        TOTP::new(
            Algorithm::SHA1,
            DIGITS,
            1,
            STEP_SECONDS,
            self.seed.expose().to_vec(),
        )
        .ok()
    }

    /// The secret and URL to show the user once, labelled `issuer:account`.
    pub fn show(&self, issuer: &str, account: &str) -> EnrolmentSecret {
        let base32 = base32_encode(self.seed.expose());
        let url = format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
            percent_encode(issuer),
            percent_encode(account),
            base32,
            percent_encode(issuer),
        );
        EnrolmentSecret {
            secret_base32: Secret::from_string(base32),
            url: Secret::from_string(url),
        }
    }

    /// The code for `at` (tests, the demo's scripted approver).
    pub fn code_at(&self, at: DateTime<Utc>) -> String {
        let secs = u64::try_from(at.timestamp()).unwrap_or(0);
        self.totp().map(|t| t.generate(secs)).unwrap_or_default()
    }

    /// Check `code` at `now`; on success record its step so it is never accepted again. The
    /// caller must persist the enrolment before acting on the success.
    pub fn verify(&mut self, code: &str, now: DateTime<Utc>) -> Result<u64, TotpRejection> {
        let code = code.trim();
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TotpRejection::Malformed);
        }
        let totp = self.totp().ok_or(TotpRejection::Wrong)?;
        let now_step = u64::try_from(now.timestamp()).unwrap_or(0) / STEP_SECONDS;
        let first = now_step.saturating_sub(SKEW_STEPS);
        let mut matched = None;
        // Check every step of the window, always, so timing does not say which one matched.
        for step in first..=now_step.saturating_add(SKEW_STEPS) {
            let expected = totp.generate(step.saturating_mul(STEP_SECONDS));
            if constant_time_eq(expected.as_bytes(), code.as_bytes()) {
                matched.get_or_insert(step);
            }
        }
        let step = matched.ok_or(TotpRejection::Wrong)?;
        if let Some(last_accepted) = self.last_step {
            if step <= last_accepted {
                return Err(TotpRejection::Reused {
                    step,
                    last_accepted,
                });
            }
        }
        self.last_step = Some(step);
        Ok(step)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RFC 4648 base32 without padding.
pub fn base32_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            let index = ((buffer >> bits) & 31) as usize;
            out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'A')));
        }
    }
    if bits > 0 {
        let index = ((buffer << (5 - bits)) & 31) as usize;
        out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'A')));
    }
    out
}

/// RFC 4648 base32 decoding (case-insensitive, padding and spaces ignored).
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for c in text.chars().filter(|c| *c != '=' && !c.is_whitespace()) {
        let value = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u32 - 'A' as u32,
            c @ '2'..='7' => c as u32 - '2' as u32 + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238 appendix B: seed "12345678901234567890", T = 59 s gives 94287082 (8 digits);
        // the 6-digit code is its last six digits.
        let e = TotpEnrolment::from_seed(Secret::from("12345678901234567890"), at(0));
        assert_eq!(e.code_at(at(59)), "287082");
        assert_eq!(e.code_at(at(1_111_111_109)), "081804");
    }

    #[test]
    fn a_code_is_accepted_once_and_earlier_steps_never_again() {
        let mut e = TotpEnrolment::generate(at(0));
        let now = at(1_800_000_000);
        let code = e.code_at(now);
        assert!(e.verify(&code, now).is_ok());
        assert!(matches!(
            e.verify(&code, now),
            Err(TotpRejection::Reused { .. })
        ));
        let previous = e.code_at(at(1_800_000_000 - 30));
        assert!(matches!(
            e.verify(&previous, now),
            Err(TotpRejection::Reused { .. })
        ));
        let next = e.code_at(at(1_800_000_030));
        assert!(e.verify(&next, at(1_800_000_030)).is_ok());
    }

    #[test]
    fn wrong_malformed_and_stale_codes_are_refused() {
        let mut e = TotpEnrolment::generate(at(0));
        let now = at(1_800_000_000);
        let code = e.code_at(now);
        let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
        assert_eq!(e.verify(&wrong, now), Err(TotpRejection::Wrong));
        assert_eq!(e.verify("12345", now), Err(TotpRejection::Malformed));
        assert_eq!(e.verify("abcdef", now), Err(TotpRejection::Malformed));
        let stale = e.code_at(at(1_800_000_000 - 90));
        assert_eq!(e.verify(&stale, now), Err(TotpRejection::Wrong));
    }

    #[test]
    fn base32_round_trips_and_url_has_the_secret() {
        let e = TotpEnrolment::generate(at(0));
        let shown = e.show("otgate plant-a", "alice");
        let decoded = base32_decode(shown.secret_base32.expose_str().unwrap()).unwrap();
        assert_eq!(decoded, e.seed.expose());
        let url = shown.url.expose_str().unwrap();
        assert!(url.starts_with("otpauth://totp/otgate%20plant-a:alice?secret="));
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
    }
}
