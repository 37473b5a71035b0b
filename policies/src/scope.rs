//! A granted scope, and the per-request check the broker runs against it.
//!
//! A [`GrantScope`] is what a grant allows on one asset: Modbus classes narrowed to unit ids,
//! tables and address ranges; DNP3 function classes; VNC view or control; plain TCP. It is
//! serializable (the journal records it with the grant) and is checked once per request on the
//! broker's hot path: [`GrantScope::check_modbus`] does not allocate and never panics.
//!
//! Refusals carry the Modbus exception the broker answers with: a function class not granted
//! (or a unit id not granted) is ILLEGAL FUNCTION (01); a table, or addresses, outside the
//! grant, including a write that straddles the end of an allowed range, is ILLEGAL DATA ADDRESS
//! (02). FC 23 arrives as two operations, and both must be allowed.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::dnp3::{self, Dnp3Class};
use crate::ids::AssetId;
use crate::modbus::{AddressRange, ModbusClass, ModbusOp, Table};
use crate::model::Protocol;
use crate::ops::{
    dnp3_class_name, modbus_class_name, modbus_table_name, ModbusSpec, OperationSpec, ScreenAccess,
};

/// What a grant allows on one asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantScope {
    /// The asset.
    pub asset: AssetId,
    /// The protocol brokered to it.
    pub protocol: Protocol,
    /// Modbus operations allowed; each names its unit ids (never empty here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modbus: Vec<ModbusSpec>,
    /// DNP3 function classes allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dnp3: Vec<Dnp3Class>,
    /// VNC access allowed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnc: Option<ScreenAccess>,
    /// Whether a plain TCP connection is allowed.
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub tcp: bool,
}

/// The Modbus exception a refusal is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Exception 01: the function (class, or unit) is not granted.
    IllegalFunction,
    /// Exception 02: the table or addresses are not granted.
    IllegalDataAddress,
}

impl Refusal {
    /// The Modbus exception code (01 or 02).
    pub fn exception_code(self) -> u8 {
        match self {
            Refusal::IllegalFunction => 0x01,
            Refusal::IllegalDataAddress => 0x02,
        }
    }
}

/// Why an operation falls outside a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "violation", rename_all = "snake_case")]
pub enum ScopeViolation {
    /// The operation is for another asset than the grant's.
    AssetNotGranted,
    /// The grant covers another protocol.
    ProtocolNotGranted,
    /// No grant entry covers this unit id.
    UnitNotGranted {
        /// The unit id asked for.
        unit: u8,
    },
    /// The Modbus function (class) is not granted.
    ClassNotGranted {
        /// The function code.
        function: u8,
        /// Its class.
        class: ModbusClass,
    },
    /// The DNP3 function class is not granted.
    Dnp3ClassNotGranted {
        /// The function code.
        function: u8,
        /// Its class.
        class: Dnp3Class,
    },
    /// The class is granted, but not on this table.
    TableNotGranted {
        /// The table asked for.
        table: Table,
    },
    /// The addresses lie wholly outside every granted range.
    OutsideRange {
        /// The addresses asked for.
        range: AddressRange,
    },
    /// The addresses start inside a granted range and run past it (or the reverse).
    StraddlesRange {
        /// The addresses asked for.
        range: AddressRange,
        /// The granted range they overlap.
        allowed: AddressRange,
    },
    /// A table operation without a known address, where the grant is limited to ranges.
    AddressUnknown,
}

impl fmt::Display for ScopeViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopeViolation::AssetNotGranted => f.write_str("the grant is for another asset"),
            ScopeViolation::ProtocolNotGranted => f.write_str("the grant is for another protocol"),
            ScopeViolation::UnitNotGranted { unit } => write!(f, "unit id {unit} is not granted"),
            ScopeViolation::ClassNotGranted { function, class } => {
                write!(
                    f,
                    "function code {function} ({}) is not granted",
                    modbus_class_name(*class)
                )
            }
            ScopeViolation::Dnp3ClassNotGranted { function, class } => {
                write!(
                    f,
                    "DNP3 function 0x{function:02X} ({}) is not granted",
                    dnp3_class_name(*class)
                )
            }
            ScopeViolation::TableNotGranted { table } => {
                write!(f, "{} are not granted", modbus_table_name(*table))
            }
            ScopeViolation::OutsideRange { range } => {
                write!(f, "addresses {range} are outside the granted ranges")
            }
            ScopeViolation::StraddlesRange { range, allowed } => {
                write!(f, "addresses {range} run past the granted range {allowed}")
            }
            ScopeViolation::AddressUnknown => {
                f.write_str("the addresses are unknown and the grant is limited to ranges")
            }
        }
    }
}

/// The verdict on one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum OpVerdict {
    /// Forward it.
    Allow,
    /// Answer with `refusal` and record `reason`.
    Refuse {
        /// Why.
        reason: ScopeViolation,
        /// The exception to answer with.
        refusal: Refusal,
    },
}

impl OpVerdict {
    /// Whether the verdict is `Allow`.
    pub fn is_allowed(&self) -> bool {
        matches!(self, OpVerdict::Allow)
    }
}

fn refuse(reason: ScopeViolation, refusal: Refusal) -> OpVerdict {
    OpVerdict::Refuse { reason, refusal }
}

/// How bad an address mismatch is, to report the most telling one.
fn rank(v: &ScopeViolation) -> u8 {
    match v {
        ScopeViolation::StraddlesRange { .. } => 4,
        ScopeViolation::OutsideRange { .. } => 3,
        ScopeViolation::AddressUnknown => 2,
        ScopeViolation::TableNotGranted { .. } => 1,
        _ => 0,
    }
}

impl GrantScope {
    /// An empty scope on `asset` (nothing allowed).
    pub fn empty(asset: AssetId, protocol: Protocol) -> Self {
        Self {
            asset,
            protocol,
            modbus: Vec::new(),
            dnp3: Vec::new(),
            vnc: None,
            tcp: false,
        }
    }

    /// Whether the scope allows nothing.
    pub fn is_empty(&self) -> bool {
        self.modbus.is_empty() && self.dnp3.is_empty() && self.vnc.is_none() && !self.tcp
    }

    /// Whether anything in the scope can change the device.
    pub fn is_write(&self) -> bool {
        self.operations().iter().any(OperationSpec::is_write)
    }

    /// The unit ids any Modbus entry names, sorted and deduplicated.
    pub fn units(&self) -> Vec<u8> {
        let mut units: Vec<u8> = self
            .modbus
            .iter()
            .flat_map(|m| m.units.iter().copied())
            .collect();
        units.sort_unstable();
        units.dedup();
        units
    }

    /// The scope as a list of operations (for display and the journal).
    pub fn operations(&self) -> Vec<OperationSpec> {
        let mut ops: Vec<OperationSpec> = self
            .modbus
            .iter()
            .cloned()
            .map(OperationSpec::Modbus)
            .collect();
        ops.extend(self.dnp3.iter().map(|&class| OperationSpec::Dnp3 { class }));
        ops.extend(self.vnc.map(|access| OperationSpec::Vnc { access }));
        if self.tcp {
            ops.push(OperationSpec::Tcp);
        }
        ops
    }

    /// A scope on `asset` granting `operations`; Modbus operations that name no unit ids get
    /// `units`. For tests, the demo and tools; grants come from [`crate::Policy::decide`].
    pub fn from_operations(
        asset: impl Into<AssetId>,
        protocol: Protocol,
        units: &[u8],
        operations: impl IntoIterator<Item = OperationSpec>,
    ) -> Self {
        let mut scope = Self::empty(asset.into(), protocol);
        for op in operations {
            let op = match op {
                OperationSpec::Modbus(m) if m.units.is_empty() => {
                    OperationSpec::Modbus(ModbusSpec {
                        units: units.to_vec(),
                        ..m
                    })
                }
                other => other,
            };
            scope.add(op);
        }
        scope
    }

    /// Add an operation (already narrowed to what a rule allows). A Modbus operation with no
    /// unit ids matches no request: give it the asset's units first.
    pub fn add(&mut self, op: OperationSpec) {
        match op {
            OperationSpec::Modbus(m) => {
                if !self.modbus.contains(&m) {
                    self.modbus.push(m);
                }
            }
            OperationSpec::Dnp3 { class } => {
                if !self.dnp3.contains(&class) {
                    self.dnp3.push(class);
                }
            }
            OperationSpec::Vnc { access } => {
                self.vnc = Some(self.vnc.map_or(access, |a| a.max(access)))
            }
            OperationSpec::Tcp => self.tcp = true,
        }
    }

    /// Check one Modbus operation against the scope. Allocation-free.
    pub fn check_modbus(&self, asset: &str, op: &ModbusOp) -> OpVerdict {
        if self.asset.as_str() != asset {
            return refuse(ScopeViolation::AssetNotGranted, Refusal::IllegalFunction);
        }
        let mut unit_seen = false;
        let mut class_seen = false;
        let mut worst: Option<ScopeViolation> = None;
        let mut note = |v: ScopeViolation| {
            if worst.is_none_or(|w| rank(&v) > rank(&w)) {
                worst = Some(v);
            }
        };
        for grant in &self.modbus {
            if !grant.units.contains(&op.unit) {
                continue;
            }
            unit_seen = true;
            if grant.class != op.class || grant.function.is_some_and(|f| f != op.function) {
                continue;
            }
            class_seen = true;
            let Some(table) = op.table else {
                if grant.table.is_none() && grant.ranges.is_empty() {
                    return OpVerdict::Allow;
                }
                note(ScopeViolation::AddressUnknown);
                continue;
            };
            if grant.table.is_some_and(|t| t != table) {
                note(ScopeViolation::TableNotGranted { table });
                continue;
            }
            if grant.ranges.is_empty() {
                return OpVerdict::Allow;
            }
            let Some(range) = op.range else {
                note(ScopeViolation::AddressUnknown);
                continue;
            };
            for &allowed in &grant.ranges {
                if allowed.contains_range(range) {
                    return OpVerdict::Allow;
                }
                if allowed.overlaps(range) {
                    note(ScopeViolation::StraddlesRange { range, allowed });
                } else {
                    note(ScopeViolation::OutsideRange { range });
                }
            }
        }
        if !unit_seen {
            return refuse(
                ScopeViolation::UnitNotGranted { unit: op.unit },
                Refusal::IllegalFunction,
            );
        }
        if !class_seen {
            return refuse(
                ScopeViolation::ClassNotGranted {
                    function: op.function,
                    class: op.class,
                },
                Refusal::IllegalFunction,
            );
        }
        refuse(
            worst.unwrap_or(ScopeViolation::AddressUnknown),
            Refusal::IllegalDataAddress,
        )
    }

    /// Check one DNP3 application function code against the scope. Allocation-free.
    pub fn check_dnp3(&self, asset: &str, function: u8) -> OpVerdict {
        if self.asset.as_str() != asset {
            return refuse(ScopeViolation::AssetNotGranted, Refusal::IllegalFunction);
        }
        let class = dnp3::class_of(function);
        if self.dnp3.contains(&class) {
            OpVerdict::Allow
        } else {
            refuse(
                ScopeViolation::Dnp3ClassNotGranted { function, class },
                Refusal::IllegalFunction,
            )
        }
    }

    /// Whether VNC access at `access` is allowed on `asset`.
    pub fn allows_screen(&self, asset: &str, access: ScreenAccess) -> bool {
        self.asset.as_str() == asset && self.vnc.is_some_and(|granted| granted >= access)
    }

    /// Whether a plain TCP connection to `asset` is allowed.
    pub fn allows_tcp(&self, asset: &str) -> bool {
        self.asset.as_str() == asset && self.tcp
    }
}

impl fmt::Display for GrantScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.asset)?;
        for (i, op) in self.operations().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{op}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::{class_of, Access};

    fn scope(ops: &[&str], units: &[u8]) -> GrantScope {
        GrantScope::from_operations(
            "line3-plc",
            Protocol::Modbus,
            units,
            ops.iter().map(|o| o.parse::<OperationSpec>().unwrap()),
        )
    }

    fn op(unit: u8, function: u8, table: Option<Table>, range: Option<(u16, u16)>) -> ModbusOp {
        let class = class_of(function);
        ModbusOp {
            unit,
            function,
            sub_function: None,
            class,
            access: if matches!(class, ModbusClass::Read | ModbusClass::DeviceId) {
                Access::Read
            } else {
                Access::Write
            },
            table,
            range: range.map(|(a, b)| AddressRange::new(a, b).unwrap()),
        }
    }

    #[test]
    fn maintenance_window_scope() {
        let s = scope(&["read", "write:holding-registers:100-199"], &[1]);
        let hr = Some(Table::HoldingRegisters);
        assert_eq!(
            s.check_modbus("line3-plc", &op(1, 3, hr, Some((0, 9)))),
            OpVerdict::Allow
        );
        assert_eq!(
            s.check_modbus("line3-plc", &op(1, 16, hr, Some((100, 199)))),
            OpVerdict::Allow
        );
        assert_eq!(
            s.check_modbus("line3-plc", &op(1, 6, hr, Some((150, 150)))),
            OpVerdict::Allow
        );
        // Straddles the end of the range.
        assert!(matches!(
            s.check_modbus("line3-plc", &op(1, 16, hr, Some((195, 204)))),
            OpVerdict::Refuse {
                reason: ScopeViolation::StraddlesRange { .. },
                refusal: Refusal::IllegalDataAddress
            }
        ));
        // Wholly outside.
        assert!(matches!(
            s.check_modbus("line3-plc", &op(1, 6, hr, Some((200, 200)))),
            OpVerdict::Refuse {
                reason: ScopeViolation::OutsideRange { .. },
                refusal: Refusal::IllegalDataAddress
            }
        ));
        // Coils are not granted for writing.
        assert!(matches!(
            s.check_modbus("line3-plc", &op(1, 5, Some(Table::Coils), Some((1, 1)))),
            OpVerdict::Refuse {
                reason: ScopeViolation::TableNotGranted { .. },
                refusal: Refusal::IllegalDataAddress
            }
        ));
        // Diagnostics and FC 90 are not granted at all.
        assert!(matches!(
            s.check_modbus("line3-plc", &op(1, 8, None, None)),
            OpVerdict::Refuse {
                refusal: Refusal::IllegalFunction,
                ..
            }
        ));
        assert!(matches!(
            s.check_modbus("line3-plc", &op(1, 90, None, None)),
            OpVerdict::Refuse {
                reason: ScopeViolation::ClassNotGranted { function: 90, .. },
                refusal: Refusal::IllegalFunction
            }
        ));
        // Another unit, another asset.
        assert!(matches!(
            s.check_modbus("line3-plc", &op(2, 3, hr, Some((0, 0)))),
            OpVerdict::Refuse {
                reason: ScopeViolation::UnitNotGranted { unit: 2 },
                ..
            }
        ));
        assert!(matches!(
            s.check_modbus("line1-plc", &op(1, 3, hr, Some((0, 0)))),
            OpVerdict::Refuse {
                reason: ScopeViolation::AssetNotGranted,
                ..
            }
        ));
    }

    #[test]
    fn fc23_needs_both_halves() {
        let s = scope(&["read", "write:holding-registers:100-199"], &[1]);
        let hr = Some(Table::HoldingRegisters);
        let read_half = op(1, 23, hr, Some((0, 9)));
        let read_half = ModbusOp {
            class: ModbusClass::Read,
            access: Access::Read,
            ..read_half
        };
        let write_ok = op(1, 23, hr, Some((100, 109)));
        let write_bad = op(1, 23, hr, Some((300, 309)));
        assert!(s.check_modbus("line3-plc", &read_half).is_allowed());
        assert!(s.check_modbus("line3-plc", &write_ok).is_allowed());
        assert!(!s.check_modbus("line3-plc", &write_bad).is_allowed());
        let read_only = scope(&["read"], &[1]);
        assert!(read_only.check_modbus("line3-plc", &read_half).is_allowed());
        assert!(!read_only.check_modbus("line3-plc", &write_ok).is_allowed());
    }

    #[test]
    fn dnp3_classes() {
        let mut s = GrantScope::empty(AssetId::new("rtu"), Protocol::Dnp3);
        s.add(OperationSpec::Dnp3 {
            class: Dnp3Class::Read,
        });
        assert!(s.check_dnp3("rtu", 0x01).is_allowed());
        assert!(matches!(
            s.check_dnp3("rtu", 0x05),
            OpVerdict::Refuse {
                reason: ScopeViolation::Dnp3ClassNotGranted {
                    class: Dnp3Class::Control,
                    ..
                },
                ..
            }
        ));
        assert!(!s.check_dnp3("rtu", 0x0D).is_allowed());
    }

    #[test]
    fn serde_round_trip() {
        let s = scope(&["read", "write:holding-registers:100-199"], &[1]);
        let json = serde_json::to_string(&s).unwrap();
        let back: GrantScope = serde_json::from_str(&json).unwrap();
        assert_eq!(s, back);
    }
}
