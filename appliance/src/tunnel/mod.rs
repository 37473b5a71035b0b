//! The IT-side tunnel: TLS 1.3 with the appliance certificate ([`tls`]), the challenge
//! handshake that authenticates IT clients by their ed25519 key and, when asked, a TOTP code
//! ([`handshake`]), the appliance's listener ([`server`]), the client used by `otgate request` and
//! `otgate connect` ([`client`]), and the client's key and profile files ([`profile`]).
//!
//! It authenticates; it does not decide grants (that is `grants`) nor forward OT traffic (that is
//! `broker`). Every handshake outcome is journaled before it takes effect.

pub mod client;
pub mod handshake;
pub mod profile;
pub mod server;
pub mod tls;

pub use handshake::Purpose;

#[cfg(test)]
mod tests;
