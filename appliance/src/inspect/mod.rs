//! Passive inspection of mirrored OT traffic: capture input (pcap/pcapng files, live receive-only
//! sockets), TCP reassembly, events, asset inventory, baseline and alerts. It never transmits.

pub mod alerts;
pub mod baseline;
pub mod capture;
pub mod event;
pub mod grants;
pub mod inventory;
pub mod reassembly;
