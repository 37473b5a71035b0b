//! How a journal record is written for a SIEM: JSON lines, RFC 5424 syslog messages, or CEF.
//! Every format carries the record's sequence number (duplicates after a crash are marked by it)
//! and its hash. Pure functions: no I/O.
//!
//! - JSON: the record as `otgate audit show --json` prints it.
//! - RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME otgate - MSGID [otgate@32473 seq=.. hash=.. ...] MSG`,
//!   facility 13 (log audit), MSGID `category.kind`, MSG the event as JSON. 32473 is the private
//!   enterprise number reserved for documentation (RFC 5612); a deployment may keep it.
//! - CEF: `CEF:0|otgate|otgate|VERSION|category.kind|name|severity|extension`, with
//!   `externalId` the seq, `rt` the time in ms, `suser` the actor, `dhost` the asset,
//!   `cs1..cs4` grant, session, hash and category, and `msg` the event as JSON.

use chrono::SecondsFormat;

use crate::journal::event::{Event, Subjects};
use crate::journal::read::StoredRecord;

/// The message format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per record.
    Json,
    /// RFC 5424 syslog, structured data with seq and hash, the event as JSON.
    Rfc5424,
    /// ArcSight Common Event Format.
    Cef,
}

/// RFC 5424 severity of an event (0 emergency .. 7 debug).
pub fn severity(event: &Event) -> u8 {
    let kind = event.kind();
    let has = |word: &str| kind.contains(word);
    if has("break_glass") || has("emergency") {
        1
    } else if matches!(kind, "tail_cut" | "budget_low" | "state_rebuilt")
        || [
            "denied", "refused", "failed", "revoked", "alert", "rejected", "killed",
        ]
        .iter()
        .any(|w| has(w))
    {
        4
    } else if matches!(kind, "checkpoint" | "opened" | "created" | "note") {
        6
    } else {
        5
    }
}

/// The RFC 5424 facility used: 13, log audit.
pub const FACILITY_LOG_AUDIT: u8 = 13;

/// Format `record` as one message (without framing or newline).
pub fn format(format: Format, record: &StoredRecord, hostname: &str) -> String {
    match format {
        Format::Json => serde_json::to_string(record).unwrap_or_default(),
        Format::Rfc5424 => rfc5424(record, hostname, &event_json(&record.event)),
        Format::Cef => cef(record, hostname),
    }
}

fn event_json(event: &Event) -> String {
    serde_json::to_string(event).unwrap_or_default()
}

/// Only printable US-ASCII (33..=126), at most `max` characters; `-` if empty (RFC 5424 §6).
fn header_field(text: &str, max: usize) -> String {
    let field: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if field.is_empty() {
        "-".into()
    } else {
        field
    }
}

/// Escape an SD-PARAM value: `"`, `\` and `]` get a backslash (RFC 5424 §6.3.3).
fn sd_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An RFC 5424 message whose MSG is `msg`.
pub fn rfc5424(record: &StoredRecord, hostname: &str, msg: &str) -> String {
    let event = &record.event;
    let pri = u16::from(FACILITY_LOG_AUDIT) * 8 + u16::from(severity(event));
    let msgid = format!("{}.{}", event.category(), event.kind());
    let mut sd = format!(
        "[otgate@32473 seq=\"{}\" hash=\"{}\" category=\"{}\" kind=\"{}\"",
        record.seq,
        hex::encode(record.hash),
        sd_escape(event.category()),
        sd_escape(event.kind())
    );
    for (name, value) in [
        ("actor", event.actor()),
        ("asset", event.asset()),
        ("grant", event.grant()),
        ("session", event.session()),
    ] {
        if let Some(value) = value {
            sd.push_str(&format!(" {name}=\"{}\"", sd_escape(value)));
        }
    }
    sd.push(']');
    format!(
        "<{pri}>1 {} {} otgate - {} {sd} {msg}",
        record
            .wall_time
            .to_rfc3339_opts(SecondsFormat::Micros, true),
        header_field(hostname, 255),
        header_field(&msgid, 32),
    )
}

fn cef_header(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

fn cef_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// A CEF line for `record`.
pub fn cef(record: &StoredRecord, hostname: &str) -> String {
    let event = &record.event;
    let cef_severity = match severity(event) {
        0..=1 => 10,
        2..=3 => 8,
        4 => 6,
        5 => 3,
        _ => 1,
    };
    let signature = format!("{}.{}", event.category(), event.kind());
    let name = event.kind().replace('_', " ");
    let mut ext = format!(
        "externalId={} rt={} dvchost={} cs4Label=hash cs4={} cs5Label=category cs5={}",
        record.seq,
        record.wall_time.timestamp_millis(),
        cef_value(hostname),
        hex::encode(record.hash),
        cef_value(event.category())
    );
    if let Some(actor) = event.actor() {
        ext.push_str(&format!(" suser={}", cef_value(actor)));
    }
    if let Some(asset) = event.asset() {
        ext.push_str(&format!(" dhost={}", cef_value(asset)));
    }
    if let Some(grant) = event.grant() {
        ext.push_str(&format!(" cs1Label=grant cs1={}", cef_value(grant)));
    }
    if let Some(session) = event.session() {
        ext.push_str(&format!(" cs2Label=session cs2={}", cef_value(session)));
    }
    ext.push_str(&format!(" msg={}", cef_value(&event_json(event))));
    format!(
        "CEF:0|otgate|otgate|{}|{}|{}|{cef_severity}|{ext}",
        cef_header(env!("CARGO_PKG_VERSION")),
        cef_header(&signature),
        cef_header(&name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::event::JournalEvent;
    use chrono::TimeZone;

    fn record(text: &str) -> StoredRecord {
        StoredRecord {
            seq: 42,
            wall_time: chrono::Utc.with_ymd_and_hms(2026, 11, 28, 5, 0, 0).unwrap(),
            mono_ns: 1,
            event: Event::Journal(JournalEvent::Note {
                actor: Some("ali\"ce]".into()),
                text: text.into(),
            }),
            prev_hash: [1; 32],
            hash: [0xab; 32],
        }
    }

    #[test]
    fn rfc5424_has_priority_header_structured_data_and_the_event() {
        let line = format(Format::Rfc5424, &record("x|y=z"), "plant a");
        let hash = "ab".repeat(32);
        assert_eq!(
            line,
            format!(
                "<110>1 2026-11-28T05:00:00.000000Z planta otgate - journal.note [otgate@32473 seq=\"42\" hash=\"{hash}\" category=\"journal\" kind=\"note\" actor=\"ali\\\"ce\\]\"] {{\"category\":\"journal\",\"kind\":\"note\",\"actor\":\"ali\\\"ce]\",\"text\":\"x|y=z\"}}"
            )
        );
    }

    #[test]
    fn cef_escapes_and_carries_the_seq() {
        let line = format(Format::Cef, &record("a=b\nc"), "gw");
        assert!(line.starts_with("CEF:0|otgate|otgate|"), "{line}");
        assert!(
            line.contains("|journal.note|note|1|externalId=42 rt=1795842000000 dvchost=gw"),
            "{line}"
        );
        assert!(line.contains("suser=ali\"ce]"), "{line}");
        assert!(
            line.contains(
                r#"msg={"category":"journal","kind":"note","actor":"ali\\"ce]","text":"a\=b\\nc"}"#
            ),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn json_is_the_stored_record() {
        let line = format(Format::Json, &record("t"), "gw");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["seq"], 42);
        assert_eq!(value["event"]["text"], "t");
        assert_eq!(value["hash"], "ab".repeat(32));
    }
}
