//! Where authentication outcomes go before they take effect: an [`AuthRecorder`], which in the
//! appliance is the journal itself (`impl AuthRecorder for Journal`), and in tests a
//! [`MemoryRecorder`]. The tunnel (IT side) and the console (OT side) both record through it.

use std::sync::Mutex;

use futures::future::BoxFuture;

use crate::journal::event::{AuthEvent, Event};
use crate::journal::Journal;

/// Where authentication outcomes are recorded before they take effect: the journal.
pub trait AuthRecorder: Send + Sync {
    /// Durably record `event`; an error means the outcome must not take effect.
    fn record(&self, event: AuthEvent) -> BoxFuture<'_, Result<(), String>>;
}

/// The journal records authentication outcomes (normal priority: a flood of failed logins must
/// not eat the reserve kept for denials of access and break-glass; when the budget is exhausted
/// logins fail closed).
impl AuthRecorder for Journal {
    fn record(&self, event: AuthEvent) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.append(Event::Auth(event))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// Records events in memory: for tests.
#[derive(Debug, Default)]
pub struct MemoryRecorder {
    /// What was recorded, in order.
    pub events: Mutex<Vec<AuthEvent>>,
}

impl MemoryRecorder {
    /// A copy of what was recorded.
    pub fn snapshot(&self) -> Vec<AuthEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl AuthRecorder for MemoryRecorder {
    fn record(&self, event: AuthEvent) -> BoxFuture<'_, Result<(), String>> {
        let result = self
            .events
            .lock()
            .map(|mut e| e.push(event))
            .map_err(|_| "poisoned".to_owned());
        Box::pin(async move { result })
    }
}
