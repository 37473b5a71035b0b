//! The periodic pull's settings in `appliance.toml`, table `[sync]` (absent table: no periodic
//! pull; `otgate policy pull` and `otgate policy import` still work):
//!
//! ```toml
//! [sync]
//! url = "https://hq.example.com:8443"   # HQ's bundle server (`otgate authority serve`)
//! cert = "/etc/otgate/hq.crt"           # HQ's certificate (PEM) to pin, or:
//! # pin = "sha256:8d5d05...a890"        # its SHA-256 pin
//! interval = "1h"                       # how often to ask (at least 10s)
//! timeout = "30s"                       # one attempt's deadline (connect, TLS, transfer)
//! skew = "5m"                           # clock skew tolerated at the ends of a validity
//! failure_journal_every = "24h"         # while pulls keep failing, journal it this often
//! ```
//!
//! Read once when the daemon starts; other tables of the file belong to other modules and are
//! ignored here. A relative `cert` path is relative to the data directory.

use std::path::PathBuf;
use std::time::Duration;

use chrono::TimeDelta;
use otgate_sync::net::CertPin;
use serde::Deserialize;

use super::PullSettings;
use crate::datadir::DataDir;

/// The shortest interval accepted (HQ is not to be hammered).
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// Why the `[sync]` settings could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The `[sync]` table is invalid.
    #[error("{}: [sync]: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        reason: String,
    },
}

/// How the daemon pulls by itself.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Where and how each attempt pulls.
    pub pull: PullSettings,
    /// How often.
    pub interval: Duration,
    /// While attempts keep failing, how often a `pull_failing` record is journaled.
    pub failure_journal_every: Duration,
}

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    sync: Option<Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    url: String,
    #[serde(default)]
    cert: Option<PathBuf>,
    #[serde(default)]
    pin: Option<String>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    skew: Option<String>,
    #[serde(default)]
    failure_journal_every: Option<String>,
}

fn duration(key: &str, text: Option<&String>, default: Duration) -> Result<Duration, String> {
    match text {
        None => Ok(default),
        Some(t) => humantime::parse_duration(t)
            .map_err(|e| format!("{key} `{t}`: {e} (write it like `30s`, `5m` or `1h`)")),
    }
}

impl SyncConfig {
    /// The `[sync]` table of the data dir's `appliance.toml`; `None` when there is none.
    pub fn load(data_dir: &DataDir) -> Result<Option<SyncConfig>, SyncConfigError> {
        let path = data_dir.config_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SyncConfigError::Io { path, source }),
        };
        Self::from_toml(&text, data_dir).map_err(|reason| SyncConfigError::Invalid { path, reason })
    }

    /// The `[sync]` table of `text` (an `appliance.toml`).
    pub fn from_toml(text: &str, data_dir: &DataDir) -> Result<Option<SyncConfig>, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let Some(table) = file.sync else {
            return Ok(None);
        };
        if !table.url.starts_with("https://") {
            return Err(format!(
                "url `{}`: HQ is reached over HTTPS only (https://host:port)",
                table.url
            ));
        }
        let pin = match (&table.pin, &table.cert) {
            (Some(_), Some(_)) => return Err("give `cert` or `pin`, not both".to_owned()),
            (None, None) => {
                return Err("`cert` (HQ's certificate, PEM) or `pin` (sha256:...) is required: the pull trusts only HQ's pinned certificate".to_owned())
            }
            (Some(pin), None) => pin
                .parse::<CertPin>()
                .map_err(|e| format!("pin `{pin}`: {e}"))?,
            (None, Some(cert)) => {
                let path = if cert.is_absolute() {
                    cert.clone()
                } else {
                    data_dir.root().join(cert)
                };
                CertPin::of_pem_file(&path).map_err(|e| format!("cert {}: {e}", path.display()))?
            }
        };
        let interval = duration(
            "interval",
            table.interval.as_ref(),
            Duration::from_secs(3600),
        )?;
        if interval < MIN_INTERVAL {
            return Err(format!(
                "interval {} is shorter than the minimum of {}",
                humantime::format_duration(interval),
                humantime::format_duration(MIN_INTERVAL)
            ));
        }
        let timeout = duration("timeout", table.timeout.as_ref(), Duration::from_secs(30))?;
        if timeout.is_zero() {
            return Err("timeout must be longer than 0s".to_owned());
        }
        let skew = duration("skew", table.skew.as_ref(), Duration::from_secs(300))?;
        let failure_journal_every = duration(
            "failure_journal_every",
            table.failure_journal_every.as_ref(),
            Duration::from_secs(24 * 3600),
        )?;
        Ok(Some(SyncConfig {
            pull: PullSettings {
                url: table.url.trim_end_matches('/').to_owned(),
                pin,
                timeout,
                skew: TimeDelta::from_std(skew).map_err(|_| "skew is too long".to_owned())?,
            },
            interval,
            failure_journal_every,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dd() -> DataDir {
        DataDir::new("/nonexistent-otgate")
    }

    const PIN: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn absent_table_means_no_periodic_pull() {
        assert!(SyncConfig::from_toml("", &dd()).unwrap().is_none());
        assert!(
            SyncConfig::from_toml("[journal]\nbudget = \"1GiB\"\n", &dd())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_full_table_is_read_with_defaults_for_what_it_omits() {
        let text =
            format!("[sync]\nurl = \"https://hq:8443/\"\npin = \"{PIN}\"\ninterval = \"5m\"\n");
        let config = SyncConfig::from_toml(&text, &dd()).unwrap().unwrap();
        assert_eq!(config.pull.url, "https://hq:8443");
        assert_eq!(config.interval, Duration::from_secs(300));
        assert_eq!(config.pull.timeout, Duration::from_secs(30));
        assert_eq!(config.failure_journal_every, Duration::from_secs(86_400));
    }

    #[test]
    fn bad_tables_are_refused_naming_the_key() {
        for (text, needle) in [
            ("[sync]\nurl = \"http://hq\"\n".to_owned(), "HTTPS only"),
            ("[sync]\nurl = \"https://hq\"\n".to_owned(), "is required"),
            (
                format!("[sync]\nurl = \"https://hq\"\npin = \"{PIN}\"\ninterval = \"1s\"\n"),
                "minimum",
            ),
            (
                format!("[sync]\nurl = \"https://hq\"\npin = \"{PIN}\"\ntimeout = \"soon\"\n"),
                "timeout `soon`",
            ),
            (
                "[sync]\nurl = \"https://hq\"\npin = \"md5:00\"\n".to_owned(),
                "pin `md5:00`",
            ),
            (
                format!("[sync]\nurl = \"https://hq\"\npin = \"{PIN}\"\nintervall = \"1h\"\n"),
                "intervall",
            ),
            (
                "[sync]\nurl = \"https://hq\"\ncert = \"hq.crt\"\n".to_owned(),
                "cert /nonexistent-otgate/hq.crt",
            ),
        ] {
            let err = SyncConfig::from_toml(&text, &dd()).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
