//! `otgate-edge`: firmware for the break-glass key panel (key switch, lamp, buzzer, serial link).
//!
//! `no_std`, no `alloc`. It shares exactly one thing with the appliance: the signed activation
//! frame format, which lives here and is reused by the appliance. Break-glass is the next stage of
//! the product after the core (policy, journal, bundles, grants, Modbus broker, inspection); this
//! crate holds its place in the workspace and its dependency direction (it depends on no otgate
//! crate).
#![cfg_attr(not(test), no_std)]
