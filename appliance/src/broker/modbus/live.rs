//! The broker sessions running now in this process, so an OT operator can list and kill them
//! (`sessions.list` and `sessions.kill` on the control socket).
//!
//! [`run_session`](super::run_session) registers itself here once its start is journaled and
//! removes itself when it ends (a guard, so a panic or an early return cannot leave a ghost).
//! Killing only fires the session's own token: the session then lets a forwarded transaction
//! complete and closes within a second, like any other end. The caller journals the kill before
//! calling [`kill`]. Nothing here is persisted: after a restart no session is live.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// A live session as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSession {
    /// The session id.
    pub session_id: String,
    /// The grant.
    pub grant_id: String,
    /// The IT identity.
    pub identity: String,
    /// The OT asset.
    pub asset_id: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Requests forwarded so far.
    pub forwarded: u64,
    /// Requests refused so far.
    pub refused: u64,
}

#[derive(Debug)]
struct Entry {
    session: LiveSession,
    counters: Arc<Counters>,
    kill: CancellationToken,
}

/// Counters a session updates as it goes.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) forwarded: AtomicU64,
    pub(crate) refused: AtomicU64,
}

fn table() -> MutexGuard<'static, HashMap<String, Entry>> {
    static LIVE: OnceLock<Mutex<HashMap<String, Entry>>> = OnceLock::new();
    // A poisoned lock means a panic elsewhere while holding it; the map itself is consistent.
    LIVE.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Removes its session from the table when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    session_id: String,
    pub(crate) kill: CancellationToken,
    pub(crate) counters: Arc<Counters>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        table().remove(&self.session_id);
    }
}

/// Register a running session; the returned registration's `kill` token fires on [`kill`].
pub(crate) fn register(session: LiveSession) -> Registration {
    let kill = CancellationToken::new();
    let counters = Arc::new(Counters::default());
    let session_id = session.session_id.clone();
    table().insert(
        session_id.clone(),
        Entry {
            session,
            counters: Arc::clone(&counters),
            kill: kill.clone(),
        },
    );
    Registration {
        session_id,
        kill,
        counters,
    }
}

/// The sessions running now, oldest first.
pub fn list() -> Vec<LiveSession> {
    let mut sessions: Vec<LiveSession> = table()
        .values()
        .map(|entry| LiveSession {
            forwarded: entry.counters.forwarded.load(Ordering::Relaxed),
            refused: entry.counters.refused.load(Ordering::Relaxed),
            ..entry.session.clone()
        })
        .collect();
    sessions.sort_by(|a, b| {
        a.started_at
            .cmp(&b.started_at)
            .then(a.session_id.cmp(&b.session_id))
    });
    sessions
}

/// The live session `session_id`, if it is running.
pub fn find(session_id: &str) -> Option<LiveSession> {
    list().into_iter().find(|s| s.session_id == session_id)
}

/// End a live session; false if no such session runs. Journal the kill first.
pub fn kill(session_id: &str) -> bool {
    match table().get(session_id) {
        Some(entry) => {
            entry.kill.cancel();
            true
        }
        None => false,
    }
}

/// A fresh session id for a session on `grant_id`: `S-<grant>-<n>`, unique in this process and
/// across restarts (the number starts from the wall clock's microseconds).
pub fn new_session_id(grant_id: &str) -> String {
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    let next = NEXT.get_or_init(|| {
        let start = Utc::now().timestamp_micros();
        AtomicU64::new(u64::try_from(start).unwrap_or(0))
    });
    let n = next.fetch_add(1, Ordering::Relaxed);
    let grant: String = grant_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect();
    format!("S-{grant}-{n:x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_register_list_kill_and_leave() {
        let id = new_session_id("G-0001");
        assert!(
            super::super::recording::check_session_id(&id).is_ok(),
            "{id}"
        );
        assert_ne!(id, new_session_id("G-0001"));
        let registration = register(LiveSession {
            session_id: id.clone(),
            grant_id: "G-0001".into(),
            identity: "alice".into(),
            asset_id: "line3-plc".into(),
            started_at: Utc::now(),
            forwarded: 0,
            refused: 0,
        });
        registration
            .counters
            .forwarded
            .fetch_add(3, Ordering::Relaxed);
        assert_eq!(find(&id).map(|s| s.forwarded), Some(3));
        assert!(kill(&id));
        assert!(registration.kill.is_cancelled());
        drop(registration);
        assert_eq!(find(&id), None);
        assert!(!kill(&id));
    }
}
