//! What passive inspection observes, as plain values: one [`ModbusPdu`] or [`Dnp3Fragment`] per
//! decoded message, [`Malformed`] for what did not decode, and [`Alert`]s; and their rendering as
//! JSON lines (`otgate inspect --json`), one object per line, field names in snake_case.
//!
//! What it does not do: decide anything (that is `alerts`) or keep state. Observations borrow the
//! captured bytes, so building one allocates nothing; only rendering to JSON allocates.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use otgate_policy::modbus::{Access, AddressRange, ModbusClass, Table};
use serde::{Deserialize, Serialize, Serializer};

/// The application protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Modbus TCP.
    Modbus,
    /// DNP3 over TCP or UDP.
    Dnp3,
}

impl Protocol {
    /// The protocol's snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Modbus => "modbus",
            Protocol::Dnp3 => "dnp3",
        }
    }
}

/// The transport a message came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum L4 {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// Whether a message asks or answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From a master (client) to an outstation (server).
    Request,
    /// From an outstation back to a master, solicited or not.
    Response,
}

/// The endpoints of a message as captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoints {
    /// Capture time since the Unix epoch.
    pub ts: Duration,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Sender's MAC, when the link layer has one.
    pub src_mac: Option<[u8; 6]>,
    /// Receiver's MAC, when the link layer has one.
    pub dst_mac: Option<[u8; 6]>,
    /// TCP or UDP.
    pub l4: L4,
}

/// Values a Modbus PDU carries, still as wire bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Values<'a> {
    /// None carried.
    #[default]
    None,
    /// Big-endian 16-bit registers.
    Registers(&'a [u8]),
    /// Packed coils (LSB first), `count` of them.
    Coils(&'a [u8], u16),
    /// One register value.
    Register(u16),
    /// One coil.
    Coil(bool),
}

impl Values<'_> {
    fn is_none(&self) -> bool {
        matches!(self, Values::None)
    }
}

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match *self {
            Values::None => s.serialize_none(),
            Values::Registers(bytes) => {
                let mut seq = s.serialize_seq(Some(bytes.len() / 2))?;
                for pair in bytes.chunks_exact(2) {
                    if let [hi, lo] = *pair {
                        seq.serialize_element(&u16::from_be_bytes([hi, lo]))?;
                    }
                }
                seq.end()
            }
            Values::Coils(bytes, count) => {
                let mut seq = s.serialize_seq(Some(usize::from(count)))?;
                for i in 0..usize::from(count) {
                    let bit = bytes
                        .get(i / 8)
                        .map(|b| (b >> (i % 8)) & 1 == 1)
                        .unwrap_or(false);
                    seq.serialize_element(&bit)?;
                }
                seq.end()
            }
            Values::Register(v) => {
                let mut seq = s.serialize_seq(Some(1))?;
                seq.serialize_element(&v)?;
                seq.end()
            }
            Values::Coil(on) => {
                let mut seq = s.serialize_seq(Some(1))?;
                seq.serialize_element(&on)?;
                seq.end()
            }
        }
    }
}

/// One Modbus PDU, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModbusPdu<'a> {
    /// Request or response.
    pub direction: Direction,
    /// MBAP transaction id.
    pub transaction_id: u16,
    /// MBAP unit id (0 is broadcast).
    pub unit: u8,
    /// The function code without the exception bit.
    pub function_code: u8,
    /// The function's snake_case name, when the public spec names it.
    pub function: Option<&'static str>,
    /// The class of the function code.
    pub class: ModbusClass,
    /// Whether a request reads or changes the device.
    pub access: Access,
    /// The table a request addresses, if any.
    pub table: Option<Table>,
    /// The first address (requests; echoed write responses).
    pub address: Option<u16>,
    /// The quantity of coils or registers.
    pub quantity: Option<u16>,
    /// The addresses written (requests that write a table).
    pub write_range: Option<AddressRange>,
    /// The addresses read (requests that read a table).
    pub read_range: Option<AddressRange>,
    /// Values written (requests) or read (responses).
    pub values: Values<'a>,
    /// FC 8 sub-function.
    pub sub_function: Option<u16>,
    /// FC 43 MEI type.
    pub mei_type: Option<u8>,
    /// Exception code, for exception responses.
    pub exception_code: Option<u8>,
    /// Exception name, when known.
    pub exception: Option<&'static str>,
    /// For a response: time since its request.
    pub latency: Option<Duration>,
    /// What the lenient decoder found wrong (empty when the PDU is well formed).
    pub anomalies: heapless::Vec<&'static str, 8>,
}

impl ModbusPdu<'_> {
    /// Whether the PDU is a request that changes something (a write, restart, program code...).
    pub fn is_write_request(&self) -> bool {
        self.direction == Direction::Request && self.access == Access::Write
    }
}

/// One DNP3 object header of an application fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ObjectHeader {
    /// Object group.
    pub group: u8,
    /// Object variation.
    pub variation: u8,
    /// Qualifier code.
    pub qualifier: u8,
    /// Number of objects (or range size), when the qualifier says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

/// One DNP3 application fragment (reassembled from transport segments), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnp3Fragment {
    /// Request or response (unsolicited responses are responses).
    pub direction: Direction,
    /// Link-layer source address.
    pub link_src: u16,
    /// Link-layer destination address.
    pub link_dst: u16,
    /// Application function code.
    pub function_code: u8,
    /// Its snake_case name, when the standard assigns it.
    pub function: Option<&'static str>,
    /// Application sequence number.
    pub sequence: u8,
    /// Whether this is an unsolicited response (function 0x82).
    pub unsolicited: bool,
    /// Internal indications (responses only), as the 16-bit field.
    pub iin: Option<u16>,
    /// The object headers decoded, up to eight.
    pub objects: heapless::Vec<ObjectHeader, 8>,
    /// For a solicited response: time since its request.
    pub latency: Option<Duration>,
    /// What the decoder found wrong.
    pub anomalies: heapless::Vec<&'static str, 8>,
}

/// Bytes of a flow that did not decode as the flow's protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// The protocol the flow speaks.
    pub protocol: Protocol,
    /// What was wrong, in words.
    pub detail: String,
    /// Whether it was a DNP3 CRC failure.
    pub bad_crc: bool,
}

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Unusual; look at it.
    Warning,
    /// Changes the process or bypasses control; act.
    Critical,
}

/// Every kind of alert inspection raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A pair of hosts talking that the baseline never saw.
    NewTalker,
    /// A function code the baseline never saw between this pair.
    NewFunctionCode,
    /// A write to addresses outside the ranges the baseline saw written.
    WriteOutsideBaseline,
    /// A message rate far above the baseline's.
    RateAnomaly,
    /// Diagnostics that disturb a device (Modbus FC 8 restart or listen-only).
    Diagnostics,
    /// A device restart or application stop/start (DNP3 cold/warm restart, stop/start appl).
    Restart,
    /// Programming or vendor function codes (Modbus FC 90 UMAS and other user-defined codes).
    ProgramTransfer,
    /// File transfer (DNP3 file functions, Modbus file records written).
    FileTransfer,
    /// A write sent to every unit (Modbus unit 0) or every outstation (DNP3 0xFFFD-0xFFFF).
    BroadcastWrite,
    /// Many exception responses in a short time.
    ExceptionBurst,
    /// Frames that do not decode.
    MalformedFrame,
    /// DNP3 frames failing their CRC.
    BadCrc,
    /// A host sweeping addresses, ports, unit ids or function codes.
    Scan,
    /// Traffic on an OT port that is not that OT protocol.
    NonOtTraffic,
    /// A write on the wire to a policy asset that no active grant covers.
    UnauthorizedWrite,
}

impl AlertKind {
    /// The kind's snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::NewTalker => "new_talker",
            AlertKind::NewFunctionCode => "new_function_code",
            AlertKind::WriteOutsideBaseline => "write_outside_baseline",
            AlertKind::RateAnomaly => "rate_anomaly",
            AlertKind::Diagnostics => "diagnostics",
            AlertKind::Restart => "restart",
            AlertKind::ProgramTransfer => "program_transfer",
            AlertKind::FileTransfer => "file_transfer",
            AlertKind::BroadcastWrite => "broadcast_write",
            AlertKind::ExceptionBurst => "exception_burst",
            AlertKind::MalformedFrame => "malformed_frame",
            AlertKind::BadCrc => "bad_crc",
            AlertKind::Scan => "scan",
            AlertKind::NonOtTraffic => "non_ot_traffic",
            AlertKind::UnauthorizedWrite => "unauthorized_write",
        }
    }
}

/// An alert: what kind, how bad, which flow and asset, and what exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// When (capture time).
    pub time: DateTime<Utc>,
    /// The kind.
    pub kind: AlertKind,
    /// How bad.
    pub severity: Severity,
    /// `src -> dst` of the message that raised it.
    pub flow: String,
    /// The policy asset id of the device concerned, or its address when policy does not name it.
    pub asset: String,
    /// The protocol concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// What exactly, in words.
    pub detail: String,
}

/// One observation, as handed to sinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation<'a> {
    /// A Modbus PDU.
    Modbus(&'a Endpoints, &'a ModbusPdu<'a>),
    /// A DNP3 application fragment.
    Dnp3(&'a Endpoints, &'a Dnp3Fragment),
    /// Bytes that did not decode.
    Malformed(&'a Endpoints, &'a Malformed),
    /// An alert.
    Alert(&'a Alert),
}

/// Capture time as an RFC 3339 instant.
pub fn instant(ts: Duration) -> DateTime<Utc> {
    let secs = i64::try_from(ts.as_secs()).unwrap_or(i64::MAX);
    DateTime::from_timestamp(secs, ts.subsec_nanos()).unwrap_or_default()
}

fn mac_text(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// Render a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: [u8; 6]) -> String {
    mac_text(mac)
}

#[derive(Serialize)]
struct ModbusLine<'a> {
    event: &'static str,
    time: DateTime<Utc>,
    src: SocketAddr,
    dst: SocketAddr,
    protocol: &'static str,
    direction: Direction,
    transaction_id: u16,
    unit: u8,
    function_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    function: Option<&'static str>,
    class: ModbusClass,
    #[serde(skip_serializing_if = "Option::is_none")]
    table: Option<Table>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantity: Option<u16>,
    #[serde(skip_serializing_if = "Values::is_none")]
    values: Values<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_function: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mei_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exception_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exception: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_us: Option<u64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    anomalies: &'a [&'static str],
}

#[derive(Serialize)]
struct Dnp3Line<'a> {
    event: &'static str,
    time: DateTime<Utc>,
    src: SocketAddr,
    dst: SocketAddr,
    protocol: &'static str,
    transport: L4,
    direction: Direction,
    link_src: u16,
    link_dst: u16,
    function_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    function: Option<&'static str>,
    sequence: u8,
    unsolicited: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    iin: Option<u16>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    objects: &'a [ObjectHeader],
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_us: Option<u64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    anomalies: &'a [&'static str],
}

#[derive(Serialize)]
struct MalformedLine<'a> {
    event: &'static str,
    time: DateTime<Utc>,
    src: SocketAddr,
    dst: SocketAddr,
    protocol: Protocol,
    bad_crc: bool,
    detail: &'a str,
}

#[derive(Serialize)]
struct AlertLine<'a> {
    event: &'static str,
    #[serde(flatten)]
    alert: &'a Alert,
}

fn micros(d: Option<Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Observation<'_> {
    /// Render as one JSON object (no trailing newline).
    pub fn to_json(&self) -> String {
        let rendered = match *self {
            Observation::Modbus(at, pdu) => serde_json::to_string(&ModbusLine {
                event: "modbus",
                time: instant(at.ts),
                src: at.src,
                dst: at.dst,
                protocol: "modbus",
                direction: pdu.direction,
                transaction_id: pdu.transaction_id,
                unit: pdu.unit,
                function_code: pdu.function_code,
                function: pdu.function,
                class: pdu.class,
                table: pdu.table,
                address: pdu.address,
                quantity: pdu.quantity,
                values: pdu.values,
                sub_function: pdu.sub_function,
                mei_type: pdu.mei_type,
                exception_code: pdu.exception_code,
                exception: pdu.exception,
                latency_us: micros(pdu.latency),
                anomalies: &pdu.anomalies,
            }),
            Observation::Dnp3(at, f) => serde_json::to_string(&Dnp3Line {
                event: "dnp3",
                time: instant(at.ts),
                src: at.src,
                dst: at.dst,
                protocol: "dnp3",
                transport: at.l4,
                direction: f.direction,
                link_src: f.link_src,
                link_dst: f.link_dst,
                function_code: f.function_code,
                function: f.function,
                sequence: f.sequence,
                unsolicited: f.unsolicited,
                iin: f.iin,
                objects: &f.objects,
                latency_us: micros(f.latency),
                anomalies: &f.anomalies,
            }),
            Observation::Malformed(at, m) => serde_json::to_string(&MalformedLine {
                event: "malformed",
                time: instant(at.ts),
                src: at.src,
                dst: at.dst,
                protocol: m.protocol,
                bad_crc: m.bad_crc,
                detail: &m.detail,
            }),
            Observation::Alert(alert) => serde_json::to_string(&AlertLine {
                event: "alert",
                alert,
            }),
        };
        rendered.unwrap_or_else(|e| format!("{{\"event\":\"error\",\"detail\":\"{e}\"}}"))
    }

    /// Render as one human-readable line.
    pub fn to_text(&self) -> String {
        match *self {
            Observation::Modbus(at, p) => {
                let mut s = format!(
                    "{} modbus {} {} -> {} unit {} fc {} {}",
                    instant(at.ts).to_rfc3339(),
                    match p.direction {
                        Direction::Request => "req ",
                        Direction::Response => "resp",
                    },
                    at.src,
                    at.dst,
                    p.unit,
                    p.function_code,
                    p.function.unwrap_or("unassigned")
                );
                if let Some(a) = p.address {
                    s.push_str(&format!(" addr {a}"));
                }
                if let Some(q) = p.quantity {
                    s.push_str(&format!(" qty {q}"));
                }
                if let Some(e) = p.exception_code {
                    s.push_str(&format!(" exception {e} {}", p.exception.unwrap_or("")));
                }
                if let Some(l) = p.latency {
                    s.push_str(&format!(" latency {}us", l.as_micros()));
                }
                if !p.anomalies.is_empty() {
                    s.push_str(&format!(" anomalies {}", p.anomalies.join(",")));
                }
                s
            }
            Observation::Dnp3(at, f) => format!(
                "{} dnp3 {} {} -> {} link {}->{} fc {} {}{}",
                instant(at.ts).to_rfc3339(),
                match f.direction {
                    Direction::Request => "req ",
                    Direction::Response => "resp",
                },
                at.src,
                at.dst,
                f.link_src,
                f.link_dst,
                f.function_code,
                f.function.unwrap_or("unassigned"),
                if f.anomalies.is_empty() {
                    String::new()
                } else {
                    format!(" anomalies {}", f.anomalies.join(","))
                }
            ),
            Observation::Malformed(at, m) => format!(
                "{} malformed {} {} -> {}: {}",
                instant(at.ts).to_rfc3339(),
                m.protocol.name(),
                at.src,
                at.dst,
                m.detail
            ),
            Observation::Alert(a) => format!(
                "{} ALERT {} [{:?}] {} asset {}: {}",
                a.time.to_rfc3339(),
                a.kind.name(),
                a.severity,
                a.flow,
                a.asset,
                a.detail
            ),
        }
    }
}
