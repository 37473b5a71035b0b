//! Who reads the clock: the appliance, through this one seam, so tests can set the wall clock.
//!
//! Grants are enforced on the monotonic clock once started, so a wall clock set backwards or
//! forwards never lengthens a grant; the wall clock is used to evaluate schedules and to stamp
//! records. The policy crate never reads a clock: instants are passed in from here.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// A source of wall-clock and monotonic time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The wall-clock time, as the appliance believes it.
    fn now_utc(&self) -> DateTime<Utc>;
    /// Monotonic time, which never goes backwards (tokio's clock, so paused-time tests work).
    fn now_mono(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_utc(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A wall clock that tests can set and move, in either direction; monotonic time stays tokio's.
#[derive(Debug, Clone)]
pub struct ManualClock {
    /// The wall-clock instant at `anchor`, plus any offset applied since.
    inner: Arc<Mutex<(DateTime<Utc>, Instant)>>,
}

impl ManualClock {
    /// A clock that reads `start` now and advances with real time from there.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self {
            inner: Arc::new(Mutex::new((start, Instant::now()))),
        }
    }

    /// Set the wall clock to `at` (forwards or backwards).
    pub fn set(&self, at: DateTime<Utc>) {
        if let Ok(mut guard) = self.inner.lock() {
            *guard = (at, Instant::now());
        }
    }

    /// Move the wall clock by `by`, forwards or backwards.
    pub fn shift(&self, by: chrono::Duration) {
        if let Ok(mut guard) = self.inner.lock() {
            let now = guard.0 + chrono::Duration::from_std(guard.1.elapsed()).unwrap_or_default();
            *guard = (now + by, Instant::now());
        }
    }
}

impl Clock for ManualClock {
    fn now_utc(&self) -> DateTime<Utc> {
        match self.inner.lock() {
            Ok(guard) => {
                let elapsed: Duration = guard.1.elapsed();
                guard.0 + chrono::Duration::from_std(elapsed).unwrap_or_default()
            }
            // A poisoned lock only means a panicking test thread; fall back to the system clock.
            Err(_) => Utc::now(),
        }
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;
