//! Serde for `std::time::Duration` as human-readable text (`4h`, `15m`, `1h 30m`), the way the
//! CLI and the policy files write durations.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Serialize as `humantime` text.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// Deserialize from `humantime` text.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(serde::de::Error::custom)
}
