//! Helpers for otgate's end-to-end tests: locating the built `otgate` binary, temporary data
//! directories, and (as root) network namespaces for IT and OT zones.
//!
//! The tests themselves live in `tests/e2e/`, one module per situation, in one test binary.

pub mod appliance;
