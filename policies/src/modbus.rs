//! Modbus operations as the policy sees them: what the engine checks against a grant.
//!
//! The wire decoder (`otgate::wire::modbus`) turns a decoded request into one or two
//! [`ModbusOp`]s (`Request::ops()`); FC 23 read/write multiple registers yields two, one per half.
//! The policy engine then checks each op against a granted scope. This module is plain data: no
//! parsing of bytes, no allocation, no panics.
//!
//! Classes follow how a plant engineer thinks (Modbus Application Protocol v1.1b3, section 6):
//! reads and writes per table, diagnostics (FC 7, 8, 11, 12, 17), device identification
//! (FC 43 / MEI 14), and `program` for FC 90 (Schneider UMAS) and every other vendor-specific or
//! unassigned code.

use serde::{Deserialize, Serialize};

/// A Modbus data table (Modbus Application Protocol v1.1b3, section 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Table {
    /// Single-bit, read-write (FC 1, 5, 15).
    Coils,
    /// Single-bit, read-only (FC 2).
    DiscreteInputs,
    /// 16-bit, read-write (FC 3, 6, 16, 22, 23).
    HoldingRegisters,
    /// 16-bit, read-only (FC 4).
    InputRegisters,
    /// File records (FC 20, 21).
    FileRecords,
    /// The FIFO queue (FC 24).
    FifoQueue,
}

/// The named operation classes a rule can grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModbusClass {
    /// Reads of any table (FC 1, 2, 3, 4, 20, 24, and the read half of 23).
    Read,
    /// Writes to coils, holding registers or file records (FC 5, 6, 15, 16, 21, 22, write half of 23).
    Write,
    /// Diagnostics and status (FC 7, 8, 11, 12, 17).
    Diagnostics,
    /// Device identification (FC 43 with MEI type 14). Other MEI types are `program`.
    DeviceId,
    /// Programming and vendor-specific codes: FC 90 (UMAS), 65-72, 100-110, and every code that
    /// the public spec does not assign.
    Program,
}

/// An inclusive range of Modbus addresses (0-based protocol addresses, 0..=65535).
///
/// Built only through [`AddressRange::new`], so `first <= last` always holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "(u16, u16)", into = "(u16, u16)")]
pub struct AddressRange {
    first: u16,
    last: u16,
}

/// A range whose first address is after its last, or whose quantity is zero or runs past 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// `first` is greater than `last`.
    #[error("inverted range: first address {first} is after last address {last}")]
    Inverted {
        /// First address given.
        first: u16,
        /// Last address given.
        last: u16,
    },
    /// A quantity of zero.
    #[error("empty range: quantity 0 at address {start}")]
    Empty {
        /// Start address given.
        start: u16,
    },
    /// `start + quantity - 1` runs past address 65535.
    #[error("range runs past 65535: start {start}, quantity {quantity}")]
    Overflow {
        /// Start address given.
        start: u16,
        /// Quantity given.
        quantity: u16,
    },
}

impl AddressRange {
    /// The range `first..=last`.
    pub fn new(first: u16, last: u16) -> Result<Self, RangeError> {
        if first > last {
            return Err(RangeError::Inverted { first, last });
        }
        Ok(Self { first, last })
    }

    /// The range of `quantity` addresses starting at `start`, as a Modbus request states it.
    pub fn from_start_quantity(start: u16, quantity: u16) -> Result<Self, RangeError> {
        if quantity == 0 {
            return Err(RangeError::Empty { start });
        }
        let last = u32::from(start) + u32::from(quantity) - 1;
        let last = u16::try_from(last).map_err(|_| RangeError::Overflow { start, quantity })?;
        Ok(Self { first: start, last })
    }

    /// A single address.
    pub fn single(address: u16) -> Self {
        Self {
            first: address,
            last: address,
        }
    }

    /// The first address.
    pub fn first(self) -> u16 {
        self.first
    }

    /// The last address (inclusive).
    pub fn last(self) -> u16 {
        self.last
    }

    /// How many addresses the range covers (1..=65536).
    pub fn len(self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Always false: a range covers at least one address. Present for clippy's `len_without_is_empty`.
    pub fn is_empty(self) -> bool {
        false
    }

    /// Whether `other` lies wholly inside `self`.
    pub fn contains_range(self, other: AddressRange) -> bool {
        self.first <= other.first && other.last <= self.last
    }

    /// Whether the two ranges share at least one address.
    pub fn overlaps(self, other: AddressRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// The addresses both ranges cover, if any.
    pub fn intersection(self, other: AddressRange) -> Option<AddressRange> {
        let first = self.first.max(other.first);
        let last = self.last.min(other.last);
        (first <= last).then_some(AddressRange { first, last })
    }
}

impl TryFrom<(u16, u16)> for AddressRange {
    type Error = RangeError;
    fn try_from((first, last): (u16, u16)) -> Result<Self, Self::Error> {
        Self::new(first, last)
    }
}

impl From<AddressRange> for (u16, u16) {
    fn from(r: AddressRange) -> Self {
        (r.first, r.last)
    }
}

impl core::fmt::Display for AddressRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Whether an operation reads or changes the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Observes only.
    Read,
    /// Changes process data, configuration, program or device state.
    Write,
}

/// One Modbus operation, as the engine checks it against a granted scope.
///
/// `table` and `range` are present for operations on a data table (FC 1-6, 15, 16, 22, 23, 24
/// where the address is known); they are `None` for diagnostics, device id and program codes,
/// which a scope grants by class alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModbusOp {
    /// The unit identifier from the MBAP header (0 is broadcast).
    pub unit: u8,
    /// The raw function code (1..=127), kept so vendor codes keep their value.
    pub function: u8,
    /// The sub-function for FC 8 (diagnostics) or the MEI type for FC 43, when there is one.
    pub sub_function: Option<u16>,
    /// The class the function code belongs to.
    pub class: ModbusClass,
    /// Read or write.
    pub access: Access,
    /// The table addressed, when the operation addresses one.
    pub table: Option<Table>,
    /// The addresses touched, when the operation addresses a table.
    pub range: Option<AddressRange>,
}

/// The class of a function code, by the public spec; unassigned and vendor codes are `Program`.
pub fn class_of(function: u8) -> ModbusClass {
    match function {
        0x01 | 0x02 | 0x03 | 0x04 | 0x14 | 0x18 => ModbusClass::Read,
        0x05 | 0x06 | 0x0F | 0x10 | 0x15 | 0x16 | 0x17 => ModbusClass::Write,
        0x07 | 0x08 | 0x0B | 0x0C | 0x11 => ModbusClass::Diagnostics,
        0x2B => ModbusClass::DeviceId,
        _ => ModbusClass::Program,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_quantity_ranges() {
        assert_eq!(
            AddressRange::from_start_quantity(100, 10),
            AddressRange::new(100, 109)
        );
        assert_eq!(
            AddressRange::from_start_quantity(65535, 2),
            Err(RangeError::Overflow {
                start: 65535,
                quantity: 2
            })
        );
        assert_eq!(
            AddressRange::from_start_quantity(7, 0),
            Err(RangeError::Empty { start: 7 })
        );
        assert_eq!(
            AddressRange::new(5, 4),
            Err(RangeError::Inverted { first: 5, last: 4 })
        );
    }

    #[test]
    fn containment_and_overlap() {
        let allowed = AddressRange::new(100, 199).unwrap();
        assert!(allowed.contains_range(AddressRange::new(100, 199).unwrap()));
        assert!(!allowed.contains_range(AddressRange::new(195, 204).unwrap()));
        assert!(allowed.overlaps(AddressRange::new(195, 204).unwrap()));
        assert_eq!(
            allowed.intersection(AddressRange::new(195, 204).unwrap()),
            Some(AddressRange::new(195, 199).unwrap())
        );
        assert_eq!(allowed.intersection(AddressRange::single(200)), None);
    }

    #[test]
    fn vendor_codes_are_program() {
        assert_eq!(class_of(90), ModbusClass::Program);
        assert_eq!(class_of(0x41), ModbusClass::Program);
        assert_eq!(class_of(0x17), ModbusClass::Write);
        assert_eq!(class_of(0x2B), ModbusClass::DeviceId);
    }
}
