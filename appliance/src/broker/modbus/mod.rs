//! The Modbus TCP broker: one session per authenticated tunnel connection, enforcing the grant
//! on every request.
//!
//! - [`session`]: reads ADUs from the client, decodes them (`wire::modbus`), asks the grant's
//!   scope, journals the decision, then forwards or answers the exception itself.
//! - [`upstream`]: the appliance's own connection to the PLC, transaction ids mapped both ways,
//!   pipelining bounded, timeouts and failures turned into gateway exceptions.
//! - [`live`]: the sessions running now, to list and kill them.
//! - [`history`]: sessions as the journal tells them; closes the ones an abrupt stop cut.
//! - [`recording`]: the per-session JSON-lines transcript; [`transcript`] prints it for people.

pub mod history;
pub mod live;
pub mod recording;
pub mod session;
pub mod transcript;
pub mod upstream;

pub use session::{run_session, SessionContext, SessionOutcome};

#[cfg(test)]
mod tests;
