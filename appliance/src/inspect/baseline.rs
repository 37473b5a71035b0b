//! The learned baseline of normal OT traffic (`otgate inspect learn`): which pairs of hosts talk,
//! with which function codes and unit ids, which address ranges they read and write, and how
//! many messages a minute they exchange at peak.
//!
//! What it does not do: raise alerts (`alerts` compares traffic against a baseline). A baseline is
//! a JSON file written with `--out` (never over a different file without `--force`); its format
//! carries a `version` so old files are refused clearly rather than misread.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use otgate_policy::modbus::Table;
use serde::{Deserialize, Serialize};

use super::event::{instant, Direction, Dnp3Fragment, Endpoints, ModbusPdu, Protocol};
use super::inventory::RangeSet;

/// The baseline file format version this build reads and writes.
pub const BASELINE_VERSION: u32 = 1;

/// A conversation between a master and an outstation in one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PairKey {
    /// The master (client).
    pub master: IpAddr,
    /// The outstation (server).
    pub outstation: IpAddr,
    /// The protocol.
    pub protocol: Protocol,
}

impl PairKey {
    /// The pair a message belongs to, from its direction.
    pub fn of(at: &Endpoints, direction: Direction, protocol: Protocol) -> Self {
        match direction {
            Direction::Request => Self {
                master: at.src.ip(),
                outstation: at.dst.ip(),
                protocol,
            },
            Direction::Response => Self {
                master: at.dst.ip(),
                outstation: at.src.ip(),
                protocol,
            },
        }
    }
}

/// What the baseline knows of one pair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairProfile {
    /// Function codes seen (requests and responses, without the exception bit).
    pub functions: BTreeSet<u8>,
    /// Modbus unit ids seen.
    #[serde(default)]
    pub units: BTreeSet<u8>,
    /// Ranges written, per table.
    #[serde(default)]
    pub write_ranges: BTreeMap<Table, RangeSet>,
    /// Ranges read, per table.
    #[serde(default)]
    pub read_ranges: BTreeMap<Table, RangeSet>,
    /// Messages seen.
    pub messages: u64,
    /// The most messages seen in one minute.
    pub peak_per_minute: u64,
}

/// A baseline: the pairs seen in the learning capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// Format version ([`BASELINE_VERSION`]).
    pub version: u32,
    /// Where it was learned from.
    pub learned_from: String,
    /// First message time of the learning capture.
    pub start: Option<DateTime<Utc>>,
    /// Last message time of the learning capture.
    pub end: Option<DateTime<Utc>>,
    /// The pairs, keyed by master, outstation and protocol.
    #[serde(with = "pairs_as_list")]
    pub pairs: BTreeMap<PairKey, PairProfile>,
}

mod pairs_as_list {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Entry {
        #[serde(flatten)]
        key: PairKey,
        #[serde(flatten)]
        profile: PairProfile,
    }

    pub fn serialize<S: serde::Serializer>(
        pairs: &BTreeMap<PairKey, PairProfile>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(pairs.iter().map(|(k, p)| Entry {
            key: *k,
            profile: p.clone(),
        }))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<PairKey, PairProfile>, D::Error> {
        let list: Vec<Entry> = Vec::deserialize(d)?;
        Ok(list.into_iter().map(|e| (e.key, e.profile)).collect())
    }
}

/// Why a baseline file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaselineError {
    /// Reading or writing failed.
    #[error("baseline {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a baseline file.
    #[error("baseline {path}: not valid baseline JSON: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// Written by a different format version.
    #[error("baseline {path}: format version {found}, this build reads version {expected}")]
    Version {
        /// The file.
        path: String,
        /// Its version.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
}

impl Baseline {
    /// An empty baseline.
    pub fn new(learned_from: impl Into<String>) -> Self {
        Self {
            version: BASELINE_VERSION,
            learned_from: learned_from.into(),
            start: None,
            end: None,
            pairs: BTreeMap::new(),
        }
    }

    /// Read a baseline file.
    pub fn load(path: &Path) -> Result<Self, BaselineError> {
        let p = || path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| BaselineError::Io { path: p(), source })?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|source| BaselineError::Parse { path: p(), source })?;
        let found = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if found != u64::from(BASELINE_VERSION) {
            return Err(BaselineError::Version {
                path: p(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
                expected: BASELINE_VERSION,
            });
        }
        serde_json::from_value(value).map_err(|source| BaselineError::Parse { path: p(), source })
    }

    /// Serialize to pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The profile of a pair, if the baseline saw it.
    pub fn pair(&self, key: &PairKey) -> Option<&PairProfile> {
        self.pairs.get(key)
    }
}

/// Builds a [`Baseline`] from observations.
#[derive(Debug)]
pub struct Learner {
    baseline: Baseline,
    /// Per pair: (minute index, messages in it).
    minute: HashMap<PairKey, (u64, u64)>,
}

impl Learner {
    /// Start learning; `learned_from` names the capture.
    pub fn new(learned_from: impl Into<String>) -> Self {
        Self {
            baseline: Baseline::new(learned_from),
            minute: HashMap::new(),
        }
    }

    fn profile(&mut self, key: PairKey, ts: Duration) -> &mut PairProfile {
        let time = instant(ts);
        self.baseline.start = Some(self.baseline.start.map_or(time, |s| s.min(time)));
        self.baseline.end = Some(self.baseline.end.map_or(time, |e| e.max(time)));
        let minute = ts.as_secs() / 60;
        let slot = self.minute.entry(key).or_insert((minute, 0));
        if slot.0 != minute {
            *slot = (minute, 0);
        }
        slot.1 += 1;
        let count = slot.1;
        let profile = self.baseline.pairs.entry(key).or_default();
        profile.messages += 1;
        profile.peak_per_minute = profile.peak_per_minute.max(count);
        profile
    }

    /// Learn from one Modbus PDU.
    pub fn observe_modbus(&mut self, at: &Endpoints, pdu: &ModbusPdu<'_>) {
        let key = PairKey::of(at, pdu.direction, Protocol::Modbus);
        let profile = self.profile(key, at.ts);
        profile.functions.insert(pdu.function_code);
        profile.units.insert(pdu.unit);
        if pdu.direction == Direction::Request {
            if let (Some(t), Some(r)) = (pdu.table, pdu.write_range) {
                profile.write_ranges.entry(t).or_default().insert(r);
            }
            if let (Some(t), Some(r)) = (pdu.table, pdu.read_range) {
                profile.read_ranges.entry(t).or_default().insert(r);
            }
        }
    }

    /// Learn from one DNP3 fragment.
    pub fn observe_dnp3(&mut self, at: &Endpoints, f: &Dnp3Fragment) {
        let key = PairKey::of(at, f.direction, Protocol::Dnp3);
        let profile = self.profile(key, at.ts);
        profile.functions.insert(f.function_code);
    }

    /// The baseline learned.
    pub fn finish(self) -> Baseline {
        self.baseline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_round_trips_and_refuses_other_versions() {
        let mut b = Baseline::new("x.pcap");
        let key = PairKey {
            master: "10.0.0.1".parse().unwrap(),
            outstation: "10.0.0.2".parse().unwrap(),
            protocol: Protocol::Modbus,
        };
        let mut p = PairProfile::default();
        p.functions.insert(3);
        p.write_ranges
            .entry(Table::HoldingRegisters)
            .or_default()
            .insert(otgate_policy::modbus::AddressRange::new(100, 109).unwrap());
        b.pairs.insert(key, p);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        std::fs::write(&path, b.to_json()).unwrap();
        assert_eq!(Baseline::load(&path).unwrap(), b);
        std::fs::write(
            &path,
            b.to_json().replace("\"version\": 1", "\"version\": 7"),
        )
        .unwrap();
        assert!(matches!(
            Baseline::load(&path),
            Err(BaselineError::Version { found: 7, .. })
        ));
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(
            Baseline::load(&path),
            Err(BaselineError::Parse { .. })
        ));
    }
}
