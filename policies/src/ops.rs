//! Operations as people write them: `read`, `write:holding-registers:100-199`, `dnp3:control`,
//! `vnc:view`. The same grammar serves policy files (a rule's `operations`) and the command line
//! (`--op`).
//!
//! Grammar (case-sensitive, no spaces):
//!
//! ```text
//! op      = modbus | "dnp3:" dnp3class | "vnc:" ("view" | "control") | "tcp" [":connect"]
//! modbus  = ["modbus:"] class [":" table [":" ranges]] ["@" units]
//! class   = "read" | "write" | "diagnostics" | "device-id" | "program" | "fc:" code
//! table   = "coils" | "discrete-inputs" | "holding-registers" | "input-registers"
//!         | "file-records" | "fifo-queue"
//! ranges  = range ("," range)*        range = addr ["-" addr]    (0-based, inclusive)
//! units   = unit ("," unit)*          code  = decimal or 0x-hex, 1..=127
//! ```
//!
//! A bare `read` is protocol-neutral: on a DNP3 asset it means `dnp3:read`, on a VNC asset
//! `vnc:view` (see [`OperationSpec::for_protocol`]). This module parses and compares; it does no
//! I/O and never panics.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::dnp3::Dnp3Class;
use crate::modbus::{class_of, AddressRange, ModbusClass, Table};
use crate::model::Protocol;

/// One operation a rule grants or a request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum OperationSpec {
    /// A Modbus operation class, optionally narrowed to a table, ranges and unit ids.
    Modbus(ModbusSpec),
    /// A DNP3 application function class.
    Dnp3 {
        /// The class.
        class: Dnp3Class,
    },
    /// Remote screen access (VNC/RFB).
    Vnc {
        /// View only, or view and control.
        access: ScreenAccess,
    },
    /// A plain TCP connection to the asset's address.
    Tcp,
}

/// Remote screen access levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScreenAccess {
    /// Framebuffer updates only; keyboard and pointer events are dropped.
    View,
    /// View, keyboard and pointer.
    Control,
}

/// A Modbus operation class narrowed to what it may touch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModbusSpec {
    /// The operation class.
    pub class: ModbusClass,
    /// One specific function code (`fc:90`), or `None` for every code of the class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<u8>,
    /// The table, or `None` for every table the class touches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<Table>,
    /// Address ranges in the table; empty means the whole table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<AddressRange>,
    /// Unit ids; empty means the asset's unit ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<u8>,
}

impl ModbusSpec {
    /// Every code of `class`, every table, every address, the asset's units.
    pub fn class(class: ModbusClass) -> Self {
        Self {
            class,
            function: None,
            table: None,
            ranges: Vec::new(),
            units: Vec::new(),
        }
    }

    /// Whether this spec names no table, range, unit or function: just the class.
    pub fn is_bare(&self) -> bool {
        self.function.is_none()
            && self.table.is_none()
            && self.ranges.is_empty()
            && self.units.is_empty()
    }

    /// Whether the spec can change the device.
    pub fn is_write(&self) -> bool {
        !matches!(self.class, ModbusClass::Read | ModbusClass::DeviceId)
    }

    /// What of `requested` this spec (as granted by a rule) covers: `None` if nothing, else the
    /// requested spec narrowed to what this one allows.
    pub fn intersect(&self, requested: &ModbusSpec) -> Option<ModbusSpec> {
        if self.class != requested.class {
            return None;
        }
        let function = match (self.function, requested.function) {
            (Some(a), Some(b)) if a != b => return None,
            (Some(a), _) => Some(a),
            (None, b) => b,
        };
        let table = match (self.table, requested.table) {
            (Some(a), Some(b)) if a != b => return None,
            (Some(a), _) => Some(a),
            (None, b) => b,
        };
        let ranges = match (self.ranges.is_empty(), requested.ranges.is_empty()) {
            (true, _) => requested.ranges.clone(),
            (false, true) => self.ranges.clone(),
            (false, false) => {
                let mut out = Vec::new();
                for a in &self.ranges {
                    for b in &requested.ranges {
                        if let Some(i) = a.intersection(*b) {
                            out.push(i);
                        }
                    }
                }
                if out.is_empty() {
                    return None;
                }
                out.sort();
                out
            }
        };
        let units = match (self.units.is_empty(), requested.units.is_empty()) {
            (true, _) => requested.units.clone(),
            (false, true) => self.units.clone(),
            (false, false) => {
                let out: Vec<u8> = requested
                    .units
                    .iter()
                    .copied()
                    .filter(|u| self.units.contains(u))
                    .collect();
                if out.is_empty() {
                    return None;
                }
                out
            }
        };
        Some(ModbusSpec {
            class: self.class,
            function,
            table,
            ranges,
            units,
        })
    }
}

impl OperationSpec {
    /// The protocol this operation belongs to, if it is tied to one (`read` is not).
    pub fn protocol(&self) -> Protocol {
        match self {
            OperationSpec::Modbus(_) => Protocol::Modbus,
            OperationSpec::Dnp3 { .. } => Protocol::Dnp3,
            OperationSpec::Vnc { .. } => Protocol::Vnc,
            OperationSpec::Tcp => Protocol::Tcp,
        }
    }

    /// The operation as it applies to an asset speaking `protocol`: a bare `read` becomes
    /// `dnp3:read` or `vnc:view`; anything else of another protocol is `None`.
    pub fn for_protocol(&self, protocol: Protocol) -> Option<OperationSpec> {
        self.applied_to(protocol).map(std::borrow::Cow::into_owned)
    }

    /// [`OperationSpec::for_protocol`] without a copy when the protocol already matches.
    pub(crate) fn applied_to(
        &self,
        protocol: Protocol,
    ) -> Option<std::borrow::Cow<'_, OperationSpec>> {
        if self.protocol() == protocol {
            return Some(std::borrow::Cow::Borrowed(self));
        }
        let bare_read =
            matches!(self, OperationSpec::Modbus(m) if m.is_bare() && m.class == ModbusClass::Read);
        match protocol {
            Protocol::Dnp3 if bare_read => Some(std::borrow::Cow::Owned(OperationSpec::Dnp3 {
                class: Dnp3Class::Read,
            })),
            Protocol::Vnc if bare_read => Some(std::borrow::Cow::Owned(OperationSpec::Vnc {
                access: ScreenAccess::View,
            })),
            _ => None,
        }
    }

    /// Whether the operation can change the device (or, for VNC, send input).
    pub fn is_write(&self) -> bool {
        match self {
            OperationSpec::Modbus(m) => m.is_write(),
            OperationSpec::Dnp3 { class } => !matches!(class, Dnp3Class::Read),
            OperationSpec::Vnc { access } => *access == ScreenAccess::Control,
            OperationSpec::Tcp => true,
        }
    }

    /// What of `requested` (same protocol) this granted operation covers, narrowed.
    pub fn intersect(&self, requested: &OperationSpec) -> Option<OperationSpec> {
        match (self, requested) {
            (OperationSpec::Modbus(a), OperationSpec::Modbus(b)) => {
                a.intersect(b).map(OperationSpec::Modbus)
            }
            (OperationSpec::Dnp3 { class: a }, OperationSpec::Dnp3 { class: b }) if a == b => {
                Some(requested.clone())
            }
            (OperationSpec::Vnc { access: a }, OperationSpec::Vnc { access: b }) if a >= b => {
                Some(requested.clone())
            }
            (OperationSpec::Tcp, OperationSpec::Tcp) => Some(OperationSpec::Tcp),
            _ => None,
        }
    }
}

/// Why an operation string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OperationError {
    /// The string is empty.
    #[error("empty operation")]
    Empty,
    /// The class is not one of the known names.
    #[error("unknown operation class `{0}` (expected read, write, diagnostics, device-id, program or fc:N)")]
    UnknownClass(String),
    /// The table is not one of the known names.
    #[error("unknown Modbus table `{0}` (expected coils, discrete-inputs, holding-registers, input-registers, file-records or fifo-queue)")]
    UnknownTable(String),
    /// The function code is not a number in 1..=127.
    #[error("unknown function code `{0}`: Modbus function codes are 1-127")]
    UnknownFunctionCode(String),
    /// An address or range does not parse or is inverted.
    #[error("bad address range `{text}`: {why}")]
    BadRange {
        /// The range as written.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// Two ranges of one operation overlap.
    #[error("overlapping address ranges {0} and {1}")]
    OverlappingRanges(AddressRange, AddressRange),
    /// A unit id does not parse as 0..=255.
    #[error("bad unit id `{0}` (expected 0-255)")]
    BadUnit(String),
    /// The class does not address tables (diagnostics, device-id, program).
    #[error("class `{0}` does not address a table")]
    TableNotApplicable(String),
    /// A write to a read-only table.
    #[error("table `{0}` is read-only and cannot be written")]
    ReadOnlyTable(String),
    /// A DNP3 class that is not one of the known names.
    #[error("unknown DNP3 class `{0}` (expected read, control, freeze, restart, file, time or unsolicited)")]
    UnknownDnp3Class(String),
    /// A VNC access level that is not `view` or `control`.
    #[error("unknown VNC access `{0}` (expected view or control)")]
    UnknownScreenAccess(String),
    /// Text left over after a complete operation.
    #[error("unexpected `{0}` after the operation")]
    Trailing(String),
}

fn table_name(table: Table) -> &'static str {
    match table {
        Table::Coils => "coils",
        Table::DiscreteInputs => "discrete-inputs",
        Table::HoldingRegisters => "holding-registers",
        Table::InputRegisters => "input-registers",
        Table::FileRecords => "file-records",
        Table::FifoQueue => "fifo-queue",
    }
}

/// The operator-facing name of a Modbus class.
pub fn modbus_class_name(class: ModbusClass) -> &'static str {
    match class {
        ModbusClass::Read => "read",
        ModbusClass::Write => "write",
        ModbusClass::Diagnostics => "diagnostics",
        ModbusClass::DeviceId => "device-id",
        ModbusClass::Program => "program",
    }
}

/// The operator-facing name of a DNP3 class.
pub fn dnp3_class_name(class: Dnp3Class) -> &'static str {
    match class {
        Dnp3Class::Read => "read",
        Dnp3Class::Control => "control",
        Dnp3Class::Freeze => "freeze",
        Dnp3Class::Restart => "restart",
        Dnp3Class::File => "file",
        Dnp3Class::Time => "time",
        Dnp3Class::Unsolicited => "unsolicited",
        Dnp3Class::Response => "response",
        Dnp3Class::Other => "other",
    }
}

fn parse_table(s: &str) -> Result<Table, OperationError> {
    Ok(match s {
        "coils" => Table::Coils,
        "discrete-inputs" => Table::DiscreteInputs,
        "holding-registers" => Table::HoldingRegisters,
        "input-registers" => Table::InputRegisters,
        "file-records" => Table::FileRecords,
        "fifo-queue" => Table::FifoQueue,
        other => return Err(OperationError::UnknownTable(other.to_owned())),
    })
}

fn parse_u16(s: &str) -> Option<u16> {
    if let Some(hex) = s.strip_prefix("0x") {
        u16::from_str_radix(hex, 16).ok()
    } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

fn parse_range(s: &str) -> Result<AddressRange, OperationError> {
    let bad = |why: &str| OperationError::BadRange {
        text: s.to_owned(),
        why: why.to_owned(),
    };
    match s.split_once('-') {
        None => parse_u16(s)
            .map(AddressRange::single)
            .ok_or_else(|| bad("addresses are 0-65535")),
        Some((a, b)) => {
            let first = parse_u16(a).ok_or_else(|| bad("addresses are 0-65535"))?;
            let last = parse_u16(b).ok_or_else(|| bad("addresses are 0-65535"))?;
            AddressRange::new(first, last).map_err(|e| bad(&e.to_string()))
        }
    }
}

/// Parse comma-separated ranges, refusing overlaps; the result is sorted.
pub(crate) fn parse_ranges(s: &str) -> Result<Vec<AddressRange>, OperationError> {
    let mut ranges = s
        .split(',')
        .map(parse_range)
        .collect::<Result<Vec<_>, _>>()?;
    ranges.sort();
    for pair in ranges.windows(2) {
        if let [a, b] = pair {
            if a.overlaps(*b) {
                return Err(OperationError::OverlappingRanges(*a, *b));
            }
        }
    }
    Ok(ranges)
}

fn parse_modbus(s: &str) -> Result<ModbusSpec, OperationError> {
    let (body, units) = match s.split_once('@') {
        Some((body, units)) => {
            let units = units
                .split(',')
                .map(|u| {
                    u.parse::<u8>()
                        .map_err(|_| OperationError::BadUnit(u.to_owned()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            (body, units)
        }
        None => (s, Vec::new()),
    };
    let mut parts = body.split(':');
    let first = parts.next().unwrap_or_default();
    let (class, function) = match first {
        "read" => (ModbusClass::Read, None),
        "write" => (ModbusClass::Write, None),
        "diagnostics" => (ModbusClass::Diagnostics, None),
        "device-id" => (ModbusClass::DeviceId, None),
        "program" => (ModbusClass::Program, None),
        "fc" => {
            let code = parts.next().unwrap_or_default();
            let value = parse_u16(code)
                .and_then(|v| u8::try_from(v).ok())
                .filter(|v| (1..=127).contains(v))
                .ok_or_else(|| OperationError::UnknownFunctionCode(code.to_owned()))?;
            (class_of(value), Some(value))
        }
        "" => return Err(OperationError::Empty),
        other => return Err(OperationError::UnknownClass(other.to_owned())),
    };
    let table = parts.next().map(parse_table).transpose()?;
    let ranges = parts
        .next()
        .map(parse_ranges)
        .transpose()?
        .unwrap_or_default();
    if let Some(rest) = parts.next() {
        return Err(OperationError::Trailing(rest.to_owned()));
    }
    if let Some(t) = table {
        let addresses_tables = matches!(class, ModbusClass::Read | ModbusClass::Write);
        if !addresses_tables {
            return Err(OperationError::TableNotApplicable(
                modbus_class_name(class).to_owned(),
            ));
        }
        if class == ModbusClass::Write && matches!(t, Table::DiscreteInputs | Table::InputRegisters)
        {
            return Err(OperationError::ReadOnlyTable(table_name(t).to_owned()));
        }
    }
    Ok(ModbusSpec {
        class,
        function,
        table,
        ranges,
        units,
    })
}

impl FromStr for OperationSpec {
    type Err = OperationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(OperationError::Empty);
        }
        if let Some(class) = s.strip_prefix("dnp3:") {
            let class = match class {
                "read" => Dnp3Class::Read,
                "control" => Dnp3Class::Control,
                "freeze" => Dnp3Class::Freeze,
                "restart" => Dnp3Class::Restart,
                "file" => Dnp3Class::File,
                "time" => Dnp3Class::Time,
                "unsolicited" => Dnp3Class::Unsolicited,
                other => return Err(OperationError::UnknownDnp3Class(other.to_owned())),
            };
            return Ok(OperationSpec::Dnp3 { class });
        }
        if let Some(access) = s.strip_prefix("vnc:") {
            let access = match access {
                "view" => ScreenAccess::View,
                "control" => ScreenAccess::Control,
                other => return Err(OperationError::UnknownScreenAccess(other.to_owned())),
            };
            return Ok(OperationSpec::Vnc { access });
        }
        if s == "tcp" || s == "tcp:connect" {
            return Ok(OperationSpec::Tcp);
        }
        let body = s.strip_prefix("modbus:").unwrap_or(s);
        parse_modbus(body).map(OperationSpec::Modbus)
    }
}

impl fmt::Display for ModbusSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.function {
            Some(code) => write!(f, "fc:{code}")?,
            None => f.write_str(modbus_class_name(self.class))?,
        }
        if let Some(t) = self.table {
            write!(f, ":{}", table_name(t))?;
            for (i, r) in self.ranges.iter().enumerate() {
                write!(f, "{}{r}", if i == 0 { ':' } else { ',' })?;
            }
        } else if !self.ranges.is_empty() {
            // Ranges without a table cannot be written in the grammar; show them plainly.
            for r in &self.ranges {
                write!(f, " {r}")?;
            }
        }
        for (i, u) in self.units.iter().enumerate() {
            write!(f, "{}{u}", if i == 0 { '@' } else { ',' })?;
        }
        Ok(())
    }
}

impl fmt::Display for OperationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OperationSpec::Modbus(m) => m.fmt(f),
            OperationSpec::Dnp3 { class } => write!(f, "dnp3:{}", dnp3_class_name(*class)),
            OperationSpec::Vnc {
                access: ScreenAccess::View,
            } => f.write_str("vnc:view"),
            OperationSpec::Vnc {
                access: ScreenAccess::Control,
            } => f.write_str("vnc:control"),
            OperationSpec::Tcp => f.write_str("tcp"),
        }
    }
}

/// The display name of a Modbus table.
pub fn modbus_table_name(table: Table) -> &'static str {
    table_name(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(s: &str) -> OperationSpec {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_displays() {
        for s in [
            "read",
            "write:holding-registers:100-199",
            "write:holding-registers:100-199,300@1,2",
            "read:coils",
            "fc:90",
            "diagnostics",
            "device-id",
            "dnp3:control",
            "vnc:view",
            "tcp",
        ] {
            assert_eq!(op(s).to_string(), s, "{s}");
        }
        assert_eq!(op("modbus:read"), op("read"));
        assert_eq!(op("fc:0x5A").to_string(), "fc:90");
    }

    #[test]
    fn refuses_bad_operations() {
        assert_eq!("".parse::<OperationSpec>(), Err(OperationError::Empty));
        assert!(matches!(
            "erase".parse::<OperationSpec>(),
            Err(OperationError::UnknownClass(_))
        ));
        assert!(matches!(
            "fc:200".parse::<OperationSpec>(),
            Err(OperationError::UnknownFunctionCode(_))
        ));
        assert!(matches!(
            "fc:0".parse::<OperationSpec>(),
            Err(OperationError::UnknownFunctionCode(_))
        ));
        assert!(matches!(
            "write:holding-registers:199-100".parse::<OperationSpec>(),
            Err(OperationError::BadRange { .. })
        ));
        assert!(matches!(
            "write:holding-registers:100-199,150-160".parse::<OperationSpec>(),
            Err(OperationError::OverlappingRanges(..))
        ));
        assert!(matches!(
            "write:input-registers".parse::<OperationSpec>(),
            Err(OperationError::ReadOnlyTable(_))
        ));
        assert!(matches!(
            "diagnostics:coils".parse::<OperationSpec>(),
            Err(OperationError::TableNotApplicable(_))
        ));
        assert!(matches!(
            "read@300".parse::<OperationSpec>(),
            Err(OperationError::BadUnit(_))
        ));
        assert!(matches!(
            "dnp3:explode".parse::<OperationSpec>(),
            Err(OperationError::UnknownDnp3Class(_))
        ));
        assert!(matches!(
            "read:coils:1:2".parse::<OperationSpec>(),
            Err(OperationError::Trailing(_))
        ));
    }

    #[test]
    fn intersection_narrows() {
        let granted = op("write:holding-registers:100-199");
        assert_eq!(
            granted.intersect(&op("write:holding-registers:150-250")),
            Some(op("write:holding-registers:150-199"))
        );
        assert_eq!(granted.intersect(&op("write")), Some(granted.clone()));
        assert_eq!(
            granted.intersect(&op("write:holding-registers:200-250")),
            None
        );
        assert_eq!(granted.intersect(&op("write:coils")), None);
        assert_eq!(granted.intersect(&op("read")), None);
        assert_eq!(
            op("vnc:control").intersect(&op("vnc:view")),
            Some(op("vnc:view"))
        );
        assert_eq!(op("vnc:view").intersect(&op("vnc:control")), None);
    }

    #[test]
    fn bare_read_is_protocol_neutral() {
        assert_eq!(
            op("read").for_protocol(Protocol::Dnp3),
            Some(op("dnp3:read"))
        );
        assert_eq!(op("read").for_protocol(Protocol::Vnc), Some(op("vnc:view")));
        assert_eq!(op("read:coils").for_protocol(Protocol::Dnp3), None);
        assert_eq!(op("write").for_protocol(Protocol::Vnc), None);
    }
}
