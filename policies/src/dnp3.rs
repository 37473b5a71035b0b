//! DNP3 operations as the policy sees them: application function classes (IEEE 1815-2012,
//! section 4.2.2.5 and table 4-2).
//!
//! The wire decoder maps an application-layer function code to a [`Dnp3Class`]; rules grant
//! classes. Plain data, no parsing, no panics.

use serde::{Deserialize, Serialize};

/// The class of a DNP3 application function code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dnp3Class {
    /// READ (0x01), and CONFIRM (0x00) which only acknowledges.
    Read,
    /// SELECT (0x03), OPERATE (0x04), DIRECT_OPERATE (0x05, 0x06), and WRITE (0x02).
    Control,
    /// FREEZE family (0x07-0x0C).
    Freeze,
    /// COLD_RESTART (0x0D), WARM_RESTART (0x0E), INITIALIZE_DATA (0x0F),
    /// INITIALIZE_APPL (0x10), START_APPL (0x11), STOP_APPL (0x12).
    Restart,
    /// SAVE_CONFIG (0x13) and the file functions (0x19-0x1E).
    File,
    /// DELAY_MEASURE (0x17), RECORD_CURRENT_TIME (0x18).
    Time,
    /// ENABLE_UNSOLICITED (0x14), DISABLE_UNSOLICITED (0x15), ASSIGN_CLASS (0x16).
    Unsolicited,
    /// Responses (0x81 RESPONSE, 0x82 UNSOLICITED_RESPONSE, 0x83 AUTHENTICATE_RESP).
    Response,
    /// Secure authentication (0x20, 0x21) and codes the standard does not assign.
    Other,
}

/// The class of an application function code.
pub fn class_of(function: u8) -> Dnp3Class {
    match function {
        0x00 | 0x01 => Dnp3Class::Read,
        0x02..=0x06 => Dnp3Class::Control,
        0x07..=0x0C => Dnp3Class::Freeze,
        0x0D..=0x12 => Dnp3Class::Restart,
        0x13 | 0x19..=0x1E => Dnp3Class::File,
        0x14..=0x16 => Dnp3Class::Unsolicited,
        0x17 | 0x18 => Dnp3Class::Time,
        0x81..=0x83 => Dnp3Class::Response,
        _ => Dnp3Class::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(class_of(0x0D), Dnp3Class::Restart);
        assert_eq!(class_of(0x05), Dnp3Class::Control);
        assert_eq!(class_of(0x1B), Dnp3Class::File);
        assert_eq!(class_of(0x82), Dnp3Class::Response);
        assert_eq!(class_of(0x7F), Dnp3Class::Other);
    }
}
