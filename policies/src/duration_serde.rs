//! Durations as people write them (`4h`, `15m`, `1h 30m`, `30d`): formatting, and serde for
//! `std::time::Duration` in that form, the way the CLI and the policy files write durations.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Format compactly in days, hours, minutes and seconds: `30d`, `4h`, `1h 30m`, `0s`.
pub fn format(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return if d.is_zero() {
            "0s".to_owned()
        } else {
            format!("{}ms", d.as_millis())
        };
    }
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    parts.join(" ")
}

/// Parse `4h`, `30m`, `1h 30m`, `7d` (the `humantime` grammar).
pub fn parse(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}

/// Serialize as compact text (see [`format`]).
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// Deserialize from text (see [`parse`]).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for (secs, text) in [
            (0, "0s"),
            (900, "15m"),
            (14_400, "4h"),
            (5_400, "1h 30m"),
            (2_592_000, "30d"),
            (90_061, "1d 1h 1m 1s"),
        ] {
            assert_eq!(format(Duration::from_secs(secs)), text);
            assert_eq!(parse(text).unwrap(), Duration::from_secs(secs));
        }
    }
}
