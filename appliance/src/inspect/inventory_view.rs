//! The asset inventory as a state view (`state::View`, sled tree `inventory`), rebuilt from the
//! journal's `InspectEvent::AssetObserved` records, and the [`InventoryRecorder`] that decides
//! which of a monitor's observations are worth a record.
//!
//! What is journaled: not packets, but changes. A monitor's recorder emits an asset when it is
//! first seen, when it shows anything new (a MAC, role, protocol, port, unit id, DNP3 address,
//! function code, address range or peer), and otherwise at most once per
//! [`RESEEN_INTERVAL`] of capture time, to move its last-seen time. A file run therefore adds
//! at most one record per asset; a live capture a handful per asset per day.
//!
//! The view merges each record into the asset's entry (sets are unions, first and last seen
//! the extremes, messages a sum). Idempotent: each entry keeps the sequence number of the last
//! record applied and skips any record at or below it (after a crash a record may come again).
//!
//! What it does not do: watch traffic (the monitor does) or write the journal (callers append
//! the events it returns). Guarantees: bounded like the inventory itself (see `inventory`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::Duration;
use serde::{Deserialize, Serialize};

use super::inventory::{Asset, Inventory};
use crate::journal::event::{Event, InspectEvent};
use crate::state::View;

/// The sled tree name of the inventory view.
pub const NAME: &str = "inventory";

/// An asset with nothing new is recorded again once its last-seen time has moved this far.
pub const RESEEN_INTERVAL: Duration = Duration::hours(1);

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// The last journal record applied to this asset.
    seq: u64,
    asset: Asset,
}

/// The inventory as a state view.
#[derive(Debug, Clone, Copy, Default)]
pub struct InventoryView;

fn corrupt(e: impl std::fmt::Display) -> sled::Error {
    sled::Error::Unsupported(format!("inventory view: {e}"))
}

fn key(address: IpAddr) -> Vec<u8> {
    address.to_string().into_bytes()
}

impl View for InventoryView {
    fn name(&self) -> &'static str {
        NAME
    }

    fn apply(&self, tree: &sled::Tree, seq: u64, event: &Event) -> Result<(), sled::Error> {
        let Event::Inspect(InspectEvent::AssetObserved { asset }) = event else {
            return Ok(());
        };
        let key = key(asset.address);
        let entry = match tree.get(&key)? {
            Some(bytes) => {
                let mut entry: Entry = serde_json::from_slice(&bytes).map_err(corrupt)?;
                if entry.seq >= seq {
                    return Ok(());
                }
                entry.asset.merge(asset.as_ref().clone());
                entry.seq = seq;
                entry
            }
            None => Entry {
                seq,
                asset: asset.as_ref().clone(),
            },
        };
        tree.insert(key, serde_json::to_vec(&entry).map_err(corrupt)?)?;
        Ok(())
    }
}

/// The inventory held by the view.
pub fn load(tree: &sled::Tree) -> Result<Inventory, sled::Error> {
    let mut inventory = Inventory::new();
    for item in tree.iter() {
        let (_, bytes) = item?;
        let entry: Entry = serde_json::from_slice(&bytes).map_err(corrupt)?;
        inventory.assets.insert(entry.asset.address, entry.asset);
    }
    Ok(inventory)
}

/// What one monitor has recorded of its inventory so far, to record only what changed.
#[derive(Debug, Default)]
pub struct InventoryRecorder {
    recorded: BTreeMap<IpAddr, Asset>,
}

impl InventoryRecorder {
    /// A recorder that has recorded nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The records `current` (the monitor's whole inventory so far) calls for now: the assets
    /// that are new, show something new, or were seen [`RESEEN_INTERVAL`] after their last
    /// record. Each carries the messages seen since its last record.
    pub fn changes(&mut self, current: &Inventory) -> Vec<InspectEvent> {
        let mut events = Vec::new();
        for (ip, asset) in &current.assets {
            let mut record = asset.clone();
            match self.recorded.get(ip) {
                None => {}
                Some(before) => {
                    let moved = asset.last_seen >= before.last_seen + RESEEN_INTERVAL;
                    if before.same_facts(asset) && !moved {
                        continue;
                    }
                    record.messages = asset.messages.saturating_sub(before.messages);
                }
            }
            self.recorded.insert(*ip, asset.clone());
            events.push(InspectEvent::AssetObserved {
                asset: Box::new(record),
            });
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::decode::{self, ModbusPending};
    use crate::inspect::event::{Endpoints, L4};
    use std::time::Duration as StdDuration;

    /// A request of function `fc` (3: read 10 registers at 0; 16: write one at 0).
    fn observe(inv: &mut Inventory, secs: u64, client: &str, server: &str, fc: u8) {
        let at = Endpoints {
            ts: StdDuration::from_secs(secs),
            src: format!("{client}:40000").parse().unwrap(),
            dst: format!("{server}:502").parse().unwrap(),
            src_mac: Some([2, 0, 0, 0, 0, 1]),
            dst_mac: None,
            l4: L4::Tcp,
        };
        let pdu: &[u8] = match fc {
            3 => &[3, 0, 0, 0, 10],
            _ => &[16, 0, 0, 0, 1, 2, 0, 1],
        };
        // MBAP: transaction 1, protocol 0, length (unit + PDU), unit 1.
        let mut adu = vec![0, 1, 0, 0, 0, pdu.len() as u8 + 1, 1];
        adu.extend_from_slice(pdu);
        let decoded =
            decode::modbus(&at, Some(at.dst), &mut ModbusPending::default(), &adu).unwrap();
        inv.observe_modbus(&at, &decoded);
    }

    #[test]
    fn the_recorder_records_new_assets_and_new_facts_only_and_the_view_merges_idempotently() {
        let mut inv = Inventory::new();
        let mut recorder = InventoryRecorder::new();
        observe(&mut inv, 1_800_000_000, "10.0.0.1", "10.0.0.2", 3);
        let first = recorder.changes(&inv);
        assert_eq!(first.len(), 2, "client and server are new");
        // The same traffic again, a minute later: nothing new, nothing recorded.
        observe(&mut inv, 1_800_000_060, "10.0.0.1", "10.0.0.2", 3);
        assert!(recorder.changes(&inv).is_empty());
        // A new function code: both ends change.
        observe(&mut inv, 1_800_000_120, "10.0.0.1", "10.0.0.2", 16);
        let second = recorder.changes(&inv);
        assert_eq!(second.len(), 2);
        // Two hours later, same traffic: recorded again to move last seen.
        observe(&mut inv, 1_800_007_300, "10.0.0.1", "10.0.0.2", 3);
        let third = recorder.changes(&inv);
        assert_eq!(third.len(), 2);

        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree(NAME).unwrap();
        let view = InventoryView;
        let mut seq = 0;
        for event in first.iter().chain(&second).chain(&third) {
            seq += 1;
            let event = Event::Inspect(event.clone());
            view.apply(&tree, seq, &event).unwrap();
            // Applied again (as after a crash): no change.
            view.apply(&tree, seq, &event).unwrap();
        }
        let stored = load(&tree).unwrap();
        let server: IpAddr = "10.0.0.2".parse().unwrap();
        let asset = &stored.assets[&server];
        assert_eq!(
            asset.modbus_functions.iter().copied().collect::<Vec<_>>(),
            [3, 16]
        );
        assert_eq!(asset.messages, 4, "each message counted once");
        assert_eq!(asset.first_seen, inv.assets[&server].first_seen);
        assert_eq!(asset.last_seen, inv.assets[&server].last_seen);
        assert_eq!(
            serde_json::to_value(&stored).unwrap(),
            serde_json::to_value(&inv).unwrap(),
            "the view holds what the monitor saw"
        );
    }
}
