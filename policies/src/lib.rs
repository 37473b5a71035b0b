//! `otgate-policy`: the shared vocabulary of otgate and its decision engine.
//!
//! This crate holds the policy model (site, zones, segments, assets, identities, roles, rules,
//! schedules, break-glass settings), parses and validates it from TOML with diagnostics that name
//! file, line and column, and decides: whether an access request is allowed, needs approval or is
//! denied, and whether one concrete Modbus or DNP3 operation fits a granted scope.
//!
//! It does no I/O beyond parsing a string, reads no clock (every instant is passed in), and
//! depends on no other otgate crate. Every other crate speaks its types.

pub mod dnp3;
pub mod modbus;
