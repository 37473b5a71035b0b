//! Rate limiting of failed authentication attempts, with exponential backoff.
//!
//! The first [`FREE_FAILURES`] failures cost nothing; each one after that doubles the wait before
//! the next attempt is even considered (1 s, 2 s, 4 s, ...) up to [`MAX_BACKOFF`]. A success
//! resets the count. [`FailureCounter`] is the per-account form the stores persist (so a restart
//! does not reset it; wall-clock instants); [`RateLimiter`] is the in-memory per-source form the
//! tunnel keeps (monotonic instants, bounded to [`MAX_TRACKED`] subjects). No I/O, no clock: every
//! instant is passed in.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Failures allowed before any backoff applies.
pub const FREE_FAILURES: u32 = 3;
/// The longest wait imposed.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// Subjects an in-memory limiter tracks at most; the oldest quiet ones are forgotten first.
pub const MAX_TRACKED: usize = 4096;

/// The wait imposed after `failures` consecutive failures.
pub fn backoff(failures: u32) -> Duration {
    match failures.checked_sub(FREE_FAILURES) {
        None => Duration::ZERO,
        Some(extra) => {
            let secs = 1u64.checked_shl(extra.min(20)).unwrap_or(u64::MAX);
            Duration::from_secs(secs).min(MAX_BACKOFF)
        }
    }
}

/// Consecutive failures of one account, persisted in its store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCounter {
    /// Consecutive failures since the last success.
    pub failures: u32,
    /// When the last failure happened.
    pub last_failure: Option<DateTime<Utc>>,
}

impl FailureCounter {
    /// `Err(wait)` while an attempt at `now` must wait.
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), Duration> {
        let Some(last) = self.last_failure else {
            return Ok(());
        };
        let wait = backoff(self.failures);
        let elapsed = (now - last).to_std().unwrap_or(Duration::ZERO);
        if elapsed < wait {
            Err(wait - elapsed)
        } else {
            Ok(())
        }
    }

    /// Count a failure at `now`.
    pub fn fail(&mut self, now: DateTime<Utc>) {
        self.failures = self.failures.saturating_add(1);
        self.last_failure = Some(now);
    }

    /// Forget past failures after a success.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// In-memory failure counts per subject (a source address, an identity), monotonic time.
#[derive(Debug, Default)]
pub struct RateLimiter {
    /// subject -> (consecutive failures, instant of the last one).
    entries: HashMap<String, (u32, std::time::Instant)>,
}

impl RateLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// `Err(wait)` while `subject` must wait at `now`.
    pub fn check(&self, subject: &str, now: std::time::Instant) -> Result<(), Duration> {
        let Some(&(failures, last)) = self.entries.get(subject) else {
            return Ok(());
        };
        let wait = backoff(failures);
        let elapsed = now.saturating_duration_since(last);
        if elapsed < wait {
            Err(wait - elapsed)
        } else {
            Ok(())
        }
    }

    /// Count a failure of `subject` at `now`.
    pub fn fail(&mut self, subject: &str, now: std::time::Instant) {
        if self.entries.len() >= MAX_TRACKED && !self.entries.contains_key(subject) {
            self.forget_quiet(now);
        }
        let entry = self.entries.entry(subject.to_owned()).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
    }

    /// Forget `subject`'s failures after a success.
    pub fn reset(&mut self, subject: &str) {
        self.entries.remove(subject);
    }

    /// Drop entries whose backoff has passed; if still full, the oldest.
    fn forget_quiet(&mut self, now: std::time::Instant) {
        self.entries.retain(|_, (failures, last)| {
            now.saturating_duration_since(*last) < backoff(*failures).max(MAX_BACKOFF)
        });
        while self.entries.len() >= MAX_TRACKED {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, last))| *last)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.entries.remove(&k);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(3), Duration::from_secs(1));
        assert_eq!(backoff(5), Duration::from_secs(4));
        assert_eq!(backoff(1000), MAX_BACKOFF);
    }

    #[test]
    fn counter_blocks_then_releases() {
        let t0 = Utc::now();
        let mut c = FailureCounter::default();
        for _ in 0..FREE_FAILURES {
            assert!(c.check(t0).is_ok());
            c.fail(t0);
        }
        assert_eq!(c.check(t0), Err(Duration::from_secs(1)));
        let t1 = t0 + chrono::Duration::seconds(1);
        assert!(c.check(t1).is_ok());
        c.fail(t1);
        assert_eq!(c.check(t1), Err(Duration::from_secs(2)));
        assert!(c.check(t1 + chrono::Duration::seconds(2)).is_ok());
        c.reset();
        assert!(c.check(t0).is_ok());
    }

    #[test]
    fn limiter_is_bounded() {
        let now = std::time::Instant::now();
        let mut l = RateLimiter::new();
        for i in 0..(MAX_TRACKED + 10) {
            l.fail(&format!("s{i}"), now);
        }
        assert!(l.entries.len() <= MAX_TRACKED);
        for _ in 0..5 {
            l.fail("x", now);
        }
        assert!(l.check("x", now).is_err());
        l.reset("x");
        assert!(l.check("x", now).is_ok());
    }
}
