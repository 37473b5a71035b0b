//! What a journal record says happened. The journal record format is an API boundary: records
//! are serialized with serde (snake_case, `kind`-tagged), and variants are only ever added.
//!
//! Each concern owns one sub-enum in its own file under `event/`, so the vocabulary of the audit
//! log sits in one place without one file for everybody to edit.

use serde::{Deserialize, Serialize};

mod access;
mod admin;
mod auth;
mod inspect;
mod journal;
mod policy;
mod session;

pub use access::{AccessEvent, EndReason, GrantMode, RevokeCause, RoleCount, Submission};
pub use admin::AdminEvent;
pub use auth::AuthEvent;
pub use inspect::InspectEvent;
pub use journal::{CheckpointReason, JournalEvent};
pub use policy::PolicyEvent;
pub use session::{ModbusRequestRecord, SessionEndReason, SessionEvent, SessionSubject};

/// One thing that happened, as recorded in the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "category", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The journal itself: initialization, torn tails cut, state rebuilt, budget warnings.
    Journal(JournalEvent),
    /// Policy bundles: activations, refusals, grace periods, trust-root rotations.
    Policy(PolicyEvent),
    /// Authentication: logins that succeeded or failed, on either side.
    Auth(AuthEvent),
    /// Access requests, approvals, denials, grants starting, ending and revoked.
    Access(AccessEvent),
    /// Broker sessions and the OT operations forwarded or refused in them.
    Session(SessionEvent),
    /// Passive inspection alerts.
    Inspect(InspectEvent),
    /// Administration: configuration, local accounts, vault entries (names only).
    Admin(AdminEvent),
}

/// Who and what a record is about, for `otgate audit show` filters. Each sub-enum answers for
/// its own variants; `None` means the record does not name one.
pub trait Subjects {
    /// A short snake_case name of the variant, e.g. `grant_activated`.
    fn kind(&self) -> &'static str;
    /// The identity that acted (requester, approver, operator), if any.
    fn actor(&self) -> Option<&str> {
        None
    }
    /// The OT asset concerned, if any.
    fn asset(&self) -> Option<&str> {
        None
    }
    /// The grant concerned, if any.
    fn grant(&self) -> Option<&str> {
        None
    }
    /// The broker session concerned, if any.
    fn session(&self) -> Option<&str> {
        None
    }
}

impl Event {
    fn subjects(&self) -> &dyn Subjects {
        match self {
            Event::Journal(e) => e,
            Event::Policy(e) => e,
            Event::Auth(e) => e,
            Event::Access(e) => e,
            Event::Session(e) => e,
            Event::Inspect(e) => e,
            Event::Admin(e) => e,
        }
    }

    /// The category of the event (`journal`, `policy`, `auth`, `access`, `session`, `inspect`, `admin`).
    pub fn category(&self) -> &'static str {
        match self {
            Event::Journal(_) => "journal",
            Event::Policy(_) => "policy",
            Event::Auth(_) => "auth",
            Event::Access(_) => "access",
            Event::Session(_) => "session",
            Event::Inspect(_) => "inspect",
            Event::Admin(_) => "admin",
        }
    }
}

impl Subjects for Event {
    fn kind(&self) -> &'static str {
        self.subjects().kind()
    }
    fn actor(&self) -> Option<&str> {
        self.subjects().actor()
    }
    fn asset(&self) -> Option<&str> {
        self.subjects().asset()
    }
    fn grant(&self) -> Option<&str> {
        self.subjects().grant()
    }
    fn session(&self) -> Option<&str> {
        self.subjects().session()
    }
}
