//! The journal's settings in `appliance.toml`, table `[journal]` (all optional):
//!
//! ```toml
//! [journal]
//! budget = "4GiB"              # the most the segments may use
//! reserve = "64MiB"            # kept for denials and break-glass
//! segment_size = "64MiB"
//! checkpoint_every_records = 10000
//! checkpoint_every = "60s"
//! ```
//!
//! Sizes are bytes or a number with `KiB`, `MiB`, `GiB` (or `KB`, `MB`, `GB`); durations read
//! like `60s` or `5m`. Other tables of the file belong to other modules and are ignored here.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::JournalConfig;
use crate::datadir::DataDir;

/// Why the `[journal]` settings could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The `[journal]` table is invalid.
    #[error("{}: [journal]: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    journal: Option<Table>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    budget: Option<Size>,
    reserve: Option<Size>,
    segment_size: Option<Size>,
    checkpoint_every_records: Option<u64>,
    checkpoint_every: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(&self) -> Result<u64, String> {
        match self {
            Size::Bytes(n) => Ok(*n),
            Size::Text(text) => parse_size(text),
        }
    }
}

/// Parse `4GiB`, `64 MiB`, `100MB`, `12345`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 512MiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}` (use KiB, MiB, GiB)"
            ))
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

impl JournalConfig {
    /// The defaults, overridden by `[journal]` in the data dir's `appliance.toml` if present.
    pub fn load(data_dir: &DataDir) -> Result<JournalConfig, ConfigError> {
        let path = data_dir.config_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(JournalConfig::default())
            }
            Err(source) => return Err(ConfigError::Io { path, source }),
        };
        Self::from_toml(&text).map_err(|reason| ConfigError::Invalid { path, reason })
    }

    /// The defaults, overridden by the `[journal]` table of `text` (an `appliance.toml`).
    pub fn from_toml(text: &str) -> Result<JournalConfig, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut config = JournalConfig::default();
        let Some(table) = file.journal else {
            return Ok(config);
        };
        if let Some(budget) = &table.budget {
            config.budget_bytes = budget.bytes()?;
        }
        if let Some(reserve) = &table.reserve {
            config.reserve_bytes = reserve.bytes()?;
        }
        if let Some(size) = &table.segment_size {
            config.segment_bytes = size.bytes()?.max(1024);
        }
        if let Some(records) = table.checkpoint_every_records {
            config.checkpoint_every_records = records.max(1);
        }
        if let Some(every) = &table.checkpoint_every {
            config.checkpoint_every = humantime::parse_duration(every)
                .map_err(|e| format!("checkpoint_every `{every}`: {e}"))?
                .max(Duration::from_millis(100));
        }
        if config.reserve_bytes >= config.budget_bytes {
            return Err(format!(
                "the reserve ({} bytes) must be smaller than the budget ({} bytes)",
                config.reserve_bytes, config.budget_bytes
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_and_checked() {
        let config = JournalConfig::from_toml(
            "[site]\nid = 'x'\n[journal]\nbudget = '1GiB'\nreserve = 1048576\nsegment_size = '8 MiB'\ncheckpoint_every = '30s'\n",
        )
        .unwrap();
        assert_eq!(config.budget_bytes, 1 << 30);
        assert_eq!(config.reserve_bytes, 1 << 20);
        assert_eq!(config.segment_bytes, 8 << 20);
        assert_eq!(config.checkpoint_every, Duration::from_secs(30));
        assert_eq!(
            JournalConfig::from_toml("").unwrap().budget_bytes,
            JournalConfig::default().budget_bytes
        );
        for bad in [
            "[journal]\nbudget = '4 parsecs'",
            "[journal]\nbudget = '1MiB'\nreserve = '2MiB'",
            "[journal]\nbudgte = 1",
            "[journal]\ncheckpoint_every = 'soon'",
        ] {
            assert!(JournalConfig::from_toml(bad).is_err(), "{bad}");
        }
    }
}
