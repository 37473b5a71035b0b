//! `otgate`: the appliance that stands between a plant's IT and OT networks.
//!
//! One module per concern; nothing reaches around these seams (see docs/ARCHITECTURE.md):
//!
//! - [`datadir`]: the layout of an appliance's data directory.
//! - [`clock`]: the one seam through which the appliance reads wall-clock and monotonic time.
//! - [`daemon`]: `otgate serve`, which wires everything together.
//! - [`bundles`]: the trust root and the active policy bundle on the appliance.
//! - [`journal`]: the append-only, hash-chained, signed audit journal; the single source of truth.
//! - [`state`]: sled views rebuilt from the journal (grants, sessions, inventory).
//! - [`stores`]: the IT and OT credential stores, kept apart, and the OT device-secret vault.
//! - [`grants`]: requests, approvals and time-windowed grants; their lifecycle and expiry.
//! - [`tunnel`]: TLS on the IT side and client authentication.
//! - [`control`]: the daemon's local control socket, used by the console and the CLI.
//! - [`broker`]: per-request enforcing brokers (Modbus TCP).
//! - [`wire`]: decoders of OT protocols (Modbus TCP, DNP3), shared by broker and inspection.
//! - [`inspect`]: passive inspection of mirrored traffic: flows, inventory, baseline, alerts.
//! - [`sim`]: simulators for the demo and tests (PLC, traffic).
//! - [`demo`]: `otgate demo`, the brief's situations played on a simulated plant.
//! - [`cli`]: the `otgate` command line.

pub mod broker;
pub mod bundles;
pub mod cli;
pub mod clock;
pub mod control;
pub mod daemon;
pub mod datadir;
pub mod demo;
pub mod grants;
pub mod inspect;
pub mod journal;
pub mod sim;
pub mod state;
pub mod stores;
pub mod tunnel;
pub mod wire;
