//! The daemon's exporter settings in `appliance.toml`, table `[export]` (absent: no exporter):
//!
//! ```toml
//! [export]
//! to = "syslog+tls://siem.example:6514"   # or syslog+tcp://host:port, file:PATH
//! format = "rfc5424"                      # json | rfc5424 | cef (default: rfc5424, json for files)
//! pinned_certificate = "tls/siem.pem"     # the collector's certificate, pinned by its SHA-256
//! # ca = "/etc/otgate/siem-ca.pem"        # or: the CA(s) that sign it
//! # pin_sha256 = "ab12..."                # or: the pin itself
//! server_name = "siem.example"            # the TLS name to verify with `ca` (default: the host)
//! hostname = "gw-line3"                   # HOSTNAME of syslog messages (default: this machine's)
//! ack_timeout = "5s"                      # a record is delivered once the connection outlives this
//! retry_max = "1m"                        # the longest wait between reconnection attempts
//! poll_interval = "200ms"                 # how often new records are looked for
//! ```
//!
//! Relative paths are inside the data directory. The pinned certificate is read here, once:
//! a missing or unreadable one is an error that names the file, not a silent fallback.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ValueEnum;
use serde::Deserialize;

use super::{Destination, ExportOptions, Format, TlsTrust};
use crate::datadir::DataDir;

/// Why the `[export]` settings could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportConfigError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The `[export]` table is invalid.
    #[error("{}: [export]: {reason}", path.display())]
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
    export: Option<Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    to: String,
    format: Option<String>,
    ca: Option<PathBuf>,
    pinned_certificate: Option<PathBuf>,
    pin_sha256: Option<String>,
    server_name: Option<String>,
    hostname: Option<String>,
    ack_timeout: Option<String>,
    retry_max: Option<String>,
    poll_interval: Option<String>,
}

fn duration(name: &str, text: &Option<String>, default: Duration) -> Result<Duration, String> {
    match text {
        None => Ok(default),
        Some(text) => humantime::parse_duration(text)
            .map_err(|e| format!("{name} `{text}`: {e} (e.g. 5s, 1m)"))
            .and_then(|d| {
                if d.is_zero() {
                    Err(format!("{name} must be more than 0"))
                } else {
                    Ok(d)
                }
            }),
    }
}

impl ExportOptions {
    /// The `[export]` table of the data dir's `appliance.toml`, if there is one.
    pub fn load(data_dir: &DataDir) -> Result<Option<ExportOptions>, ExportConfigError> {
        let path = data_dir.config_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ExportConfigError::Io { path, source }),
        };
        Self::from_toml(&text, data_dir.root())
            .map_err(|reason| ExportConfigError::Invalid { path, reason })
    }

    /// The `[export]` table of `text` (an `appliance.toml`); relative paths are under `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Option<ExportOptions>, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let Some(table) = file.export else {
            return Ok(None);
        };
        let destination: Destination = table.to.parse()?;
        let format = match &table.format {
            Some(text) => Format::from_str(text, true)
                .map_err(|_| format!("format `{text}`: use json, rfc5424 or cef"))?,
            None => match destination {
                Destination::File { .. } => Format::Json,
                _ => Format::Rfc5424,
            },
        };
        let trusts = [
            table.ca.is_some(),
            table.pinned_certificate.is_some(),
            table.pin_sha256.is_some(),
        ];
        if trusts.iter().filter(|t| **t).count() > 1 {
            return Err("give one of ca, pinned_certificate and pin_sha256".into());
        }
        let tls_trust = if let Some(ca) = &table.ca {
            Some(TlsTrust::CaFile(base.join(ca)))
        } else if let Some(cert) = &table.pinned_certificate {
            let pin = otgate_sync::net::tls::CertPin::of_pem_file(&base.join(cert))
                .map_err(|e| format!("pinned_certificate: {e}"))?;
            Some(TlsTrust::Pin(pin.0))
        } else if let Some(text) = &table.pin_sha256 {
            let pin: otgate_sync::net::tls::CertPin =
                text.parse().map_err(|e| format!("pin_sha256: {e}"))?;
            Some(TlsTrust::Pin(pin.0))
        } else {
            None
        };
        if matches!(destination, Destination::SyslogTls { .. }) && tls_trust.is_none() {
            return Err(format!(
                "`{destination}` needs ca, pinned_certificate or pin_sha256 to verify the collector"
            ));
        }
        let mut options = ExportOptions::new(destination, format);
        options.tls_trust = tls_trust;
        options.server_name = table.server_name;
        if let Some(hostname) = table.hostname {
            options.hostname = hostname;
        }
        options.ack_timeout = duration("ack_timeout", &table.ack_timeout, options.ack_timeout)?;
        options.retry_max = duration("retry_max", &table.retry_max, options.retry_max)?;
        options.poll_interval =
            duration("poll_interval", &table.poll_interval, options.poll_interval)?;
        options.follow = true;
        Ok(Some(options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_table_is_read_and_checked() {
        let base = tempfile::tempdir().unwrap();
        assert!(
            ExportOptions::from_toml("[journal]\nbudget = '1GiB'\n", base.path())
                .unwrap()
                .is_none()
        );
        let made = otgate_sync::net::tls::generate_cert(&["siem.example".into()]).unwrap();
        std::fs::write(base.path().join("siem.pem"), &made.cert_pem).unwrap();
        let options = ExportOptions::from_toml(
            "[export]\nto = 'syslog+tls://siem.example:6514'\nformat = 'cef'\npinned_certificate = 'siem.pem'\nretry_max = '30s'\n",
            base.path(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(options.format, Format::Cef);
        assert!(matches!(options.tls_trust, Some(TlsTrust::Pin(pin)) if pin == made.pin.0));
        assert_eq!(options.retry_max, Duration::from_secs(30));
        assert!(options.follow);
        let file = ExportOptions::from_toml("[export]\nto = 'file:audit.jsonl'\n", base.path())
            .unwrap()
            .unwrap();
        assert_eq!(file.format, Format::Json);
        for (bad, says) in [
            ("[export]\nto = 'syslog://x:1'", "not a destination"),
            ("[export]\nto = 'syslog+tls://h:6514'", "needs ca"),
            ("[export]\nto = 'file:a'\nformat = 'xml'", "format `xml`"),
            ("[export]\nto = 'file:a'\nretry_max = 'soon'", "retry_max"),
            ("[export]\nto = 'file:a'\nack_timeout = '0s'", "more than 0"),
            ("[export]\nto = 'file:a'\nunknown = 1", "unknown"),
            (
                "[export]\nto = 'syslog+tls://h:1'\npinned_certificate = 'missing.pem'",
                "missing.pem",
            ),
            (
                "[export]\nto = 'syslog+tls://h:1'\nca = 'a'\npin_sha256 = 'b'",
                "one of",
            ),
        ] {
            let error = ExportOptions::from_toml(bad, base.path()).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
