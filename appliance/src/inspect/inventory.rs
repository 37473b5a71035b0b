//! The asset inventory learned passively: every host seen speaking Modbus or DNP3, with its
//! addresses (IP, MACs, DNP3 link addresses), roles (master or outstation per protocol), unit
//! ids, function codes and address ranges used, peers, and first and last seen.
//!
//! What it does not do: judge (that is `alerts`), read the wire, or persist itself: what a
//! monitor learns is journaled as `asset_observed` records and kept in the `inventory` state
//! view (`inventory_view`), rebuilt from the journal. Guarantees: bounded per asset (range sets merge beyond
//! [`RangeSet::MAX_RANGES`] entries; peers beyond [`MAX_PEERS`] are counted, not listed).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use otgate_policy::modbus::{Access, AddressRange, Table};
use serde::{Deserialize, Serialize};

use super::event::{instant, mac_string, Direction, Dnp3Fragment, Endpoints, ModbusPdu, Protocol};
use super::fasthash::FastMap;

/// The most peers listed per asset.
pub const MAX_PEERS: usize = 256;

/// A set of address ranges, merged and sorted; bounded by merging the closest neighbours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RangeSet(Vec<AddressRange>);

impl RangeSet {
    /// The most ranges kept; beyond it the two closest ranges merge.
    pub const MAX_RANGES: usize = 64;

    /// An empty set.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// The ranges, sorted and disjoint.
    pub fn ranges(&self) -> &[AddressRange] {
        &self.0
    }

    /// Whether `r` lies wholly inside one range of the set.
    pub fn covers(&self, r: AddressRange) -> bool {
        self.0.iter().any(|have| have.contains_range(r))
    }

    /// Add `r`, merging overlapping and adjacent ranges.
    pub fn insert(&mut self, r: AddressRange) {
        if self.covers(r) {
            return;
        }
        let mut first = r.first();
        let mut last = r.last();
        self.0.retain(|have| {
            let touches = u32::from(have.first()) <= u32::from(last) + 1
                && u32::from(first) <= u32::from(have.last()) + 1;
            if touches {
                first = first.min(have.first());
                last = last.max(have.last());
            }
            !touches
        });
        let merged = AddressRange::new(first, last).unwrap_or(r);
        let at = self.0.partition_point(|have| have.first() < merged.first());
        self.0.insert(at, merged);
        if self.0.len() > Self::MAX_RANGES {
            self.merge_closest();
        }
    }

    fn merge_closest(&mut self) {
        let closest = self
            .0
            .windows(2)
            .enumerate()
            .filter_map(|(i, w)| match w {
                [a, b] => Some((u32::from(b.first()) - u32::from(a.last()), i)),
                _ => None,
            })
            .min();
        if let Some((_, i)) = closest {
            if let (Some(a), Some(b)) = (self.0.get(i).copied(), self.0.get(i + 1).copied()) {
                if let Ok(m) = AddressRange::new(a.first(), b.last()) {
                    self.0.splice(i..=i + 1, [m]);
                }
            }
        }
    }
}

impl std::fmt::Display for RangeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// What a host does in a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A Modbus client.
    ModbusMaster,
    /// A Modbus server (PLC, gateway).
    ModbusOutstation,
    /// A DNP3 master.
    Dnp3Master,
    /// A DNP3 outstation.
    Dnp3Outstation,
}

/// One host, as passive inspection knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    /// Its IP address.
    pub address: IpAddr,
    /// MAC addresses seen as its source address.
    #[serde(default)]
    pub macs: BTreeSet<String>,
    /// Roles seen.
    #[serde(default)]
    pub roles: BTreeSet<Role>,
    /// Protocols seen.
    #[serde(default)]
    pub protocols: BTreeSet<Protocol>,
    /// Server ports it answers on.
    #[serde(default)]
    pub ports: BTreeSet<u16>,
    /// Modbus unit ids addressed on it (outstation) or by it (master).
    #[serde(default)]
    pub unit_ids: BTreeSet<u8>,
    /// DNP3 link addresses it used.
    #[serde(default)]
    pub dnp3_addresses: BTreeSet<u16>,
    /// Modbus function codes used with it.
    #[serde(default)]
    pub modbus_functions: BTreeSet<u8>,
    /// DNP3 application function codes used with it.
    #[serde(default)]
    pub dnp3_functions: BTreeSet<u8>,
    /// Address ranges read and written, keyed `table:read` / `table:write`.
    #[serde(default)]
    pub ranges: BTreeMap<String, RangeSet>,
    /// Hosts it talked with.
    #[serde(default)]
    pub peers: BTreeSet<IpAddr>,
    /// Messages seen from or to it.
    #[serde(default)]
    pub messages: u64,
    /// First seen (capture time).
    pub first_seen: DateTime<Utc>,
    /// The last source MAC recorded (to skip formatting the same one again).
    #[serde(skip)]
    last_mac: Option<[u8; 6]>,
    /// The facts of recent messages, all already recorded in the sets above: a message that
    /// repeats one only moves the counters and times.
    #[serde(skip)]
    recent: RecentFacts,
    /// Last seen (capture time).
    pub last_seen: DateTime<Utc>,
}

impl Asset {
    fn new(address: IpAddr, at: DateTime<Utc>) -> Self {
        Self {
            address,
            macs: BTreeSet::new(),
            roles: BTreeSet::new(),
            protocols: BTreeSet::new(),
            ports: BTreeSet::new(),
            unit_ids: BTreeSet::new(),
            dnp3_addresses: BTreeSet::new(),
            modbus_functions: BTreeSet::new(),
            dnp3_functions: BTreeSet::new(),
            ranges: BTreeMap::new(),
            peers: BTreeSet::new(),
            messages: 0,
            first_seen: at,
            last_seen: at,
            last_mac: None,
            recent: RecentFacts::default(),
        }
    }

    /// Count a message and move the times; `true` when `fact` is already recorded (nothing
    /// else to do), else it is remembered as recorded and the caller records it.
    fn touch(&mut self, at: DateTime<Utc>, fact: &Fact, mac: Option<[u8; 6]>) -> bool {
        self.messages += 1;
        if at < self.first_seen {
            self.first_seen = at;
        }
        if at > self.last_seen {
            self.last_seen = at;
        }
        self.note_mac(mac);
        if self.recent.contains(fact) {
            return true;
        }
        let peer = fact.peer();
        if self.peers.len() < MAX_PEERS {
            self.peers.insert(peer);
        }
        self.recent.remember(*fact);
        false
    }

    fn note_mac(&mut self, mac: Option<[u8; 6]>) {
        if let Some(mac) = mac.filter(|m| self.last_mac != Some(*m)) {
            self.last_mac = Some(mac);
            if self.macs.len() < 16 {
                let text = mac_string(mac);
                if !self.macs.contains(&text) {
                    self.macs.insert(text);
                }
            }
        }
    }

    /// Whether `other` knows exactly the same facts (everything but counts and times).
    pub fn same_facts(&self, other: &Asset) -> bool {
        self.address == other.address
            && self.macs == other.macs
            && self.roles == other.roles
            && self.protocols == other.protocols
            && self.ports == other.ports
            && self.unit_ids == other.unit_ids
            && self.dnp3_addresses == other.dnp3_addresses
            && self.modbus_functions == other.modbus_functions
            && self.dnp3_functions == other.dnp3_functions
            && self.ranges == other.ranges
            && self.peers == other.peers
    }

    /// Merge what `other` knows of the same host into this (sets united, times widened,
    /// messages added).
    pub fn merge(&mut self, other: Asset) {
        self.macs.extend(other.macs);
        self.roles.extend(other.roles);
        self.protocols.extend(other.protocols);
        self.ports.extend(other.ports);
        self.unit_ids.extend(other.unit_ids);
        self.dnp3_addresses.extend(other.dnp3_addresses);
        self.modbus_functions.extend(other.modbus_functions);
        self.dnp3_functions.extend(other.dnp3_functions);
        for (k, set) in other.ranges {
            let mine = self.ranges.entry(k).or_default();
            for r in set.ranges() {
                mine.insert(*r);
            }
        }
        for p in other.peers {
            if self.peers.len() < MAX_PEERS {
                self.peers.insert(p);
            }
        }
        self.messages += other.messages;
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
    }
}

/// What one message told about one side of it: the key of the inventory's fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fact {
    /// A Modbus PDU.
    Modbus {
        peer: IpAddr,
        role: Role,
        unit: u8,
        function: u8,
        /// The server port (outstation side only).
        port: Option<u16>,
        table: Option<Table>,
        read: Option<AddressRange>,
        write: Option<AddressRange>,
    },
    /// A DNP3 application fragment.
    Dnp3 {
        peer: IpAddr,
        role: Role,
        function: u8,
        link: u16,
        port: Option<u16>,
    },
}

impl Fact {
    fn peer(&self) -> IpAddr {
        match self {
            Fact::Modbus { peer, .. } | Fact::Dnp3 { peer, .. } => *peer,
        }
    }
}

/// The facts of the last few messages of an asset (a ring).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RecentFacts {
    facts: [Option<Fact>; RecentFacts::LEN],
    next: usize,
}

impl RecentFacts {
    const LEN: usize = 8;

    fn contains(&self, fact: &Fact) -> bool {
        self.facts.iter().any(|f| f.as_ref() == Some(fact))
    }

    fn remember(&mut self, fact: Fact) {
        if let Some(slot) = self.facts.get_mut(self.next % Self::LEN) {
            *slot = Some(fact);
        }
        self.next = (self.next + 1) % Self::LEN;
    }
}

/// The inventory: assets by IP address (serialized in address order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Every asset seen.
    #[serde(serialize_with = "in_address_order")]
    pub assets: FastMap<IpAddr, Asset>,
}

fn in_address_order<S: serde::Serializer>(
    assets: &FastMap<IpAddr, Asset>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(assets.iter().collect::<BTreeMap<_, _>>())
}

fn table_key(table: Table, access: Access) -> &'static str {
    match (table, access) {
        (Table::Coils, Access::Read) => "coils:read",
        (Table::Coils, Access::Write) => "coils:write",
        (Table::DiscreteInputs, Access::Read) => "discrete-inputs:read",
        (Table::DiscreteInputs, Access::Write) => "discrete-inputs:write",
        (Table::HoldingRegisters, Access::Read) => "holding-registers:read",
        (Table::HoldingRegisters, Access::Write) => "holding-registers:write",
        (Table::InputRegisters, Access::Read) => "input-registers:read",
        (Table::InputRegisters, Access::Write) => "input-registers:write",
        (Table::FileRecords, Access::Read) => "file-records:read",
        (Table::FileRecords, Access::Write) => "file-records:write",
        (Table::FifoQueue, Access::Read) => "fifo-queue:read",
        (Table::FifoQueue, Access::Write) => "fifo-queue:write",
    }
}

fn record_range(ranges: &mut BTreeMap<String, RangeSet>, key: &'static str, r: AddressRange) {
    match ranges.get_mut(key) {
        Some(set) => set.insert(r),
        None => {
            let mut set = RangeSet::new();
            set.insert(r);
            ranges.insert(key.to_string(), set);
        }
    }
}

impl Inventory {
    /// An empty inventory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Count a message on the asset at `ip` (seen at `time`) and, unless `fact` is one of its
    /// recent ones (already recorded), record it with `update`: one map lookup per side of a
    /// message, and no set touched when the traffic repeats itself.
    fn update(
        &mut self,
        ip: IpAddr,
        time: DateTime<Utc>,
        fact: Fact,
        mac: Option<[u8; 6]>,
        update: impl FnOnce(&mut Asset),
    ) {
        let asset = self
            .assets
            .entry(ip)
            .or_insert_with(|| Asset::new(ip, time));
        if !asset.touch(time, &fact, mac) {
            update(asset);
        }
    }

    /// Learn from one Modbus PDU.
    pub fn observe_modbus(&mut self, at: &Endpoints, pdu: &ModbusPdu<'_>) {
        let time = instant(at.ts);
        let request = pdu.direction == Direction::Request;
        let server_port = if request {
            at.dst.port()
        } else {
            at.src.port()
        };
        let (read, write) = if request {
            (pdu.read_range, pdu.write_range)
        } else {
            (None, None)
        };
        let fact = |peer: IpAddr, role: Role| Fact::Modbus {
            peer,
            role,
            unit: pdu.unit,
            function: pdu.function_code,
            port: (role == Role::ModbusOutstation).then_some(server_port),
            table: pdu.table,
            read,
            write,
        };
        let common = |a: &mut Asset, role: Role| {
            a.roles.insert(role);
            a.protocols.insert(Protocol::Modbus);
            a.unit_ids.insert(pdu.unit);
            a.modbus_functions.insert(pdu.function_code);
        };
        let outstation = |a: &mut Asset| {
            common(a, Role::ModbusOutstation);
            a.ports.insert(server_port);
            if let (Some(table), Some(r)) = (pdu.table, read) {
                record_range(&mut a.ranges, table_key(table, Access::Read), r);
            }
            if let (Some(table), Some(r)) = (pdu.table, write) {
                record_range(&mut a.ranges, table_key(table, Access::Write), r);
            }
        };
        let master = |a: &mut Asset| common(a, Role::ModbusMaster);
        let (client, server, client_mac, server_mac) = if request {
            (at.src.ip(), at.dst.ip(), at.src_mac, None)
        } else {
            (at.dst.ip(), at.src.ip(), None, at.src_mac)
        };
        let (client_fact, server_fact) = (
            fact(server, Role::ModbusMaster),
            fact(client, Role::ModbusOutstation),
        );
        if request {
            self.update(client, time, client_fact, client_mac, master);
            self.update(server, time, server_fact, server_mac, outstation);
        } else {
            self.update(server, time, server_fact, server_mac, outstation);
            self.update(client, time, client_fact, client_mac, master);
        }
    }

    /// Learn from one DNP3 application fragment.
    pub fn observe_dnp3(&mut self, at: &Endpoints, f: &Dnp3Fragment) {
        let time = instant(at.ts);
        let request = f.direction == Direction::Request;
        let server_port = if request {
            at.dst.port()
        } else {
            at.src.port()
        };
        let (src_role, dst_role) = if request {
            (Role::Dnp3Master, Role::Dnp3Outstation)
        } else {
            (Role::Dnp3Outstation, Role::Dnp3Master)
        };
        let fact = |peer: IpAddr, role: Role, link: u16| Fact::Dnp3 {
            peer,
            role,
            function: f.function_code,
            link,
            port: (role == Role::Dnp3Outstation).then_some(server_port),
        };
        let apply = |a: &mut Asset, role: Role, link: u16| {
            a.roles.insert(role);
            a.protocols.insert(Protocol::Dnp3);
            a.dnp3_functions.insert(f.function_code);
            if link < 0xFFF0 {
                a.dnp3_addresses.insert(link);
            }
            if role == Role::Dnp3Outstation {
                a.ports.insert(server_port);
            }
        };
        let src_fact = fact(at.dst.ip(), src_role, f.link_src);
        self.update(at.src.ip(), time, src_fact, at.src_mac, |a| {
            apply(a, src_role, f.link_src)
        });
        let dst_fact = fact(at.src.ip(), dst_role, f.link_dst);
        self.update(at.dst.ip(), time, dst_fact, None, |a| {
            apply(a, dst_role, f.link_dst)
        });
    }

    /// Merge what another inventory learned into this one.
    pub fn merge(&mut self, other: Inventory) {
        for (ip, asset) in other.assets {
            match self.assets.get_mut(&ip) {
                Some(mine) => mine.merge(asset),
                None => {
                    self.assets.insert(ip, asset);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: u16, b: u16) -> AddressRange {
        AddressRange::new(a, b).unwrap()
    }

    #[test]
    fn range_sets_merge_and_stay_bounded() {
        let mut s = RangeSet::new();
        s.insert(r(10, 19));
        s.insert(r(20, 29));
        s.insert(r(40, 49));
        s.insert(r(15, 22));
        assert_eq!(s.ranges(), &[r(10, 29), r(40, 49)]);
        assert!(s.covers(r(12, 28)));
        assert!(!s.covers(r(25, 45)));
        for i in 0..1000u16 {
            s.insert(AddressRange::single(i * 60));
        }
        assert!(s.ranges().len() <= RangeSet::MAX_RANGES);
        assert!(s.ranges().windows(2).all(|w| w[0].last() < w[1].first()));
    }
}
