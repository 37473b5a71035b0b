//! A recording as an engineer reads it at a glance: one line per transaction with the time,
//! unit, function name, addresses, values, decision, response and latency (`otgate replay`).
//!
//! Pure formatting of [`RecordLine`]s; it reads no file and decides nothing.

use chrono::SecondsFormat;
use otgate_policy::modbus::{ModbusOp, Table};

use super::recording::{Decision, ExceptionSource, RecordLine, ResponseRecord, TransactionRecord};
use crate::wire::modbus::{ExceptionCode, FunctionCode};

/// Most values shown on a line before it says how many more there are.
const MAX_VALUES_SHOWN: usize = 8;

/// The transcript of a recording, one line per record line, no trailing newline per line.
pub fn transcript(lines: &[RecordLine]) -> Vec<String> {
    lines.iter().map(line).collect()
}

/// One record line in words.
pub fn line(record: &RecordLine) -> String {
    match record {
        RecordLine::Session {
            session_id,
            grant_id,
            identity,
            asset_id,
            upstream,
            started_at,
        } => {
            format!(
                "session {session_id}: {identity} on {asset_id} ({upstream}) under grant {grant_id}, started {}",
                started_at.to_rfc3339_opts(SecondsFormat::Millis, true)
            )
        }
        RecordLine::Transaction(tx) => transaction(tx),
        RecordLine::Dropped { lines } => format!(
            "... {lines} transaction(s) not recorded here (the recording could not keep up; the journal has them)"
        ),
        RecordLine::End {
            ended_at,
            reason,
            forwarded,
            refused,
        } => format!(
            "ended {}: {reason} ({forwarded} forwarded, {refused} refused)",
            ended_at.to_rfc3339_opts(SecondsFormat::Millis, true)
        ),
    }
}

fn transaction(tx: &TransactionRecord) -> String {
    let function = FunctionCode(tx.function);
    let name = match function.name() {
        Some(name) => format!("{} ({})", name.replace('_', " "), tx.function),
        None => format!("function {}", tx.function),
    };
    let target = targets(&tx.ops);
    let written = if tx.values_written.is_empty() {
        String::new()
    } else {
        format!(" = {}", values(&tx.values_written))
    };
    let decision = match tx.decision {
        Decision::Forwarded => "forwarded",
        Decision::Refused => "REFUSED",
    };
    let response = match &tx.response {
        ResponseRecord::Ok { values: read } if read.is_empty() => "ok".to_owned(),
        ResponseRecord::Ok { values: read } => format!("ok {}", values(read)),
        ResponseRecord::Exception { code, source } => {
            let who = match source {
                ExceptionSource::Plc => "from the PLC",
                ExceptionSource::Broker => "from otgate",
            };
            let code = ExceptionCode(*code);
            match code.name() {
                Some(name) => format!("exception {:02X} {} {who}", code.0, name.replace('_', " ")),
                None => format!("exception {:02X} {who}", code.0),
            }
        }
        ResponseRecord::None => "no response (session ended)".to_owned(),
    };
    let reason = tx
        .reason
        .as_deref()
        .map(|r| format!("  ({r})"))
        .unwrap_or_default();
    format!(
        "{}  tx {:<5} unit {:<3} {name}{target}{written}  {decision}  {response}  {}{reason}",
        tx.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        tx.transaction_id,
        tx.unit,
        latency(tx.latency_us),
    )
}

fn targets(ops: &[ModbusOp]) -> String {
    let parts: Vec<String> = ops
        .iter()
        .filter_map(|op| {
            let table = op.table.map(table_name)?;
            Some(match op.range {
                Some(range) => format!("{table} {range}"),
                None => table.to_owned(),
            })
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" {}", parts.join(" + "))
    }
}

fn table_name(table: Table) -> &'static str {
    match table {
        Table::Coils => "coils",
        Table::DiscreteInputs => "discrete inputs",
        Table::HoldingRegisters => "holding registers",
        Table::InputRegisters => "input registers",
        Table::FileRecords => "file records",
        Table::FifoQueue => "fifo queue",
    }
}

fn values(values: &[u16]) -> String {
    let shown: Vec<String> = values
        .iter()
        .take(MAX_VALUES_SHOWN)
        .map(u16::to_string)
        .collect();
    if values.len() > MAX_VALUES_SHOWN {
        format!(
            "[{}, ... {} more]",
            shown.join(", "),
            values.len() - MAX_VALUES_SHOWN
        )
    } else {
        format!("[{}]", shown.join(", "))
    }
}

fn latency(us: u64) -> String {
    if us >= 10_000 {
        format!("{} ms", us / 1000)
    } else if us >= 1000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use otgate_policy::modbus::{class_of, Access, AddressRange};

    #[test]
    fn a_refused_write_reads_at_a_glance() {
        let tx = TransactionRecord {
            at: Utc.with_ymd_and_hms(2026, 11, 28, 5, 1, 2).unwrap(),
            transaction_id: 7,
            unit: 1,
            function: 16,
            ops: vec![ModbusOp {
                unit: 1,
                function: 16,
                sub_function: None,
                class: class_of(16),
                access: Access::Write,
                table: Some(Table::HoldingRegisters),
                range: Some(AddressRange::new(198, 201).unwrap()),
            }],
            values_written: vec![1, 2, 3, 4],
            decision: Decision::Refused,
            reason: Some("address 200-201 is outside the grant".into()),
            response: ResponseRecord::Exception {
                code: 2,
                source: ExceptionSource::Broker,
            },
            latency_us: 85,
        };
        let text = line(&RecordLine::Transaction(tx));
        assert_eq!(
            text,
            "2026-11-28T05:01:02.000Z  tx 7     unit 1   write multiple registers (16) holding registers 198-201 = [1, 2, 3, 4]  REFUSED  exception 02 illegal data address from otgate  85 µs  (address 200-201 is outside the grant)"
        );
    }
}
