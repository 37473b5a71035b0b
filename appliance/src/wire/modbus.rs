//! Modbus TCP: the MBAP framing, the PDU of every public function code, and what each request
//! means to the policy engine.
//!
//! Follows the *Modbus Application Protocol Specification v1.1b3* (sections 4.1 PDU, 6.1-6.21
//! function codes, 7 exception responses) and the *Modbus Messaging on TCP/IP Implementation
//! Guide v1.0b* (section 3.1.3 the MBAP header: transaction id, protocol id 0, length counting
//! the unit id and the PDU, unit id; an ADU is at most 260 bytes).
//!
//! Two shapes, the smoltcp way: [`Adu`] is a zero-copy view over one complete frame, and
//! [`Request`] / [`Response`] are enums of meaning with `parse`, `emit` and `buffer_len`.
//! Values written stay borrowed slices of the frame. [`FunctionCode`] is an open newtype so that
//! FC 90 (UMAS) and every vendor code keep their value; they decode as `Other` and are classed
//! `program`.
//!
//! One decoder, two callers. The enforcing broker is strict: any [`DecodeError`] refuses the
//! request, and `From<DecodeError> for ExceptionCode` picks the exception it answers with
//! (01 illegal function, 02 illegal data address for ranges past 65535, 03 illegal data value for
//! malformed quantities and counts). Passive inspection is lenient: [`Adu::new_lenient`] keeps a
//! frame whose header lies and reports [`Anomalies`] instead of refusing it.
//!
//! This module does not read sockets, buffer streams or decide policy: [`frame_len`] tells a
//! caller how many bytes make the next frame, and [`Request::ops`] hands the policy engine plain
//! [`ModbusOp`]s.
//!
//! **Panic and allocation contract.** No function here panics on any input. After
//! [`Adu::new_checked`] no accessor panics (the header is a fixed-size array, so every field read
//! is proven in bounds). `parse` never panics and never allocates; `emit` writes into a caller's
//! buffer and reports a buffer that is too small as an error.

use otgate_policy::modbus::{class_of, Access, AddressRange, ModbusClass, ModbusOp, Table};

/// Length of the MBAP header: transaction id (2), protocol id (2), length (2), unit id (1).
pub const MBAP_LEN: usize = 7;
/// The largest Modbus TCP ADU: the MBAP header plus a 253-byte PDU.
pub const MAX_ADU_LEN: usize = 260;
/// The largest PDU (function code plus data), inherited from the serial line's 256-byte ADU.
pub const MAX_PDU_LEN: usize = 253;
/// The smallest legal MBAP length field: the unit id and a function code.
pub const MIN_MBAP_LENGTH: u16 = 2;
/// The largest legal MBAP length field: the unit id and a 253-byte PDU.
pub const MAX_MBAP_LENGTH: u16 = 254;

/// The most coils or discrete inputs one read may ask for (FC 1, 2).
pub const MAX_READ_BITS: u16 = 2000;
/// The most coils one FC 15 may write.
pub const MAX_WRITE_BITS: u16 = 1968;
/// The most registers one read may ask for (FC 3, 4, read half of FC 23).
pub const MAX_READ_REGISTERS: u16 = 125;
/// The most registers one FC 16 may write.
pub const MAX_WRITE_REGISTERS: u16 = 123;
/// The most registers the write half of FC 23 may write.
pub const MAX_READ_WRITE_REGISTERS: u16 = 121;
/// The most values a FIFO queue may hold (FC 24).
pub const MAX_FIFO_COUNT: u16 = 31;
/// The highest record number a file record request may name (FC 20, 21).
pub const MAX_FILE_RECORD_NUMBER: u16 = 0x270F;
/// The only reference type file record requests use (FC 20, 21).
pub const FILE_REFERENCE_TYPE: u8 = 6;
/// The coil value that switches a coil on (FC 5).
pub const COIL_ON: u16 = 0xFF00;
/// The coil value that switches a coil off (FC 5).
pub const COIL_OFF: u16 = 0x0000;

/// What was wrong with a frame or PDU. Small and `Copy`: it names the field and carries the
/// numbers, so the broker can journal it and the inspector can count it without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than a field needs.
    #[error("truncated {field}: need {needed} bytes, have {available}")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs from where it starts.
        needed: usize,
        /// Bytes available there.
        available: usize,
    },
    /// The MBAP protocol id is not 0 (Modbus).
    #[error("MBAP protocol id {0} is not 0 (Modbus)")]
    ProtocolId(u16),
    /// The MBAP length field is outside 2..=254.
    #[error("MBAP length {length} is outside {min}..={max}", min = MIN_MBAP_LENGTH, max = MAX_MBAP_LENGTH)]
    LengthOutOfRange {
        /// The length field as sent.
        length: u16,
    },
    /// The MBAP length field disagrees with the bytes that follow the length field.
    #[error("MBAP length says {declared} bytes follow, but {actual} do")]
    LengthMismatch {
        /// Bytes the length field declares (unit id and PDU).
        declared: usize,
        /// Bytes actually present after the length field.
        actual: usize,
    },
    /// A PDU with no function code.
    #[error("empty PDU: no function code")]
    EmptyPdu,
    /// A function code no request may carry: 0, or one with the exception bit (0x80) set.
    #[error("function code {0:#04x} is not a valid request function")]
    IllegalFunction(u8),
    /// A response's function code is neither the request's nor its exception.
    #[error("response function {response:#04x} does not answer request function {request:#04x}")]
    FunctionMismatch {
        /// The request's function code.
        request: u8,
        /// The function code the response carries.
        response: u8,
    },
    /// A quantity outside what the function code allows.
    #[error("quantity {quantity} is outside 1..={max}")]
    QuantityOutOfRange {
        /// The quantity as sent.
        quantity: u16,
        /// The largest the function allows.
        max: u16,
    },
    /// Start address plus quantity runs past address 65535.
    #[error("range runs past address 65535: start {start}, quantity {quantity}")]
    AddressOverflow {
        /// Start address as sent.
        start: u16,
        /// Quantity as sent.
        quantity: u16,
    },
    /// A byte count that does not match the quantity or the bytes present.
    #[error("byte count {declared} does not match the {expected} bytes expected")]
    ByteCountMismatch {
        /// The byte count as sent.
        declared: usize,
        /// The byte count the quantity (or the bytes present) implies.
        expected: usize,
    },
    /// Bytes left over after the last field of the PDU.
    #[error("{extra} unexpected bytes after the last field")]
    TrailingBytes {
        /// How many bytes were left over.
        extra: usize,
    },
    /// FC 5 with a value other than 0xFF00 (on) or 0x0000 (off).
    #[error("coil value {0:#06x} is neither 0xFF00 nor 0x0000")]
    CoilValue(u16),
    /// A file record request whose reference type is not 6.
    #[error("file record reference type {0} is not 6")]
    FileReferenceType(u8),
    /// A file record number past 0x270F (9999).
    #[error("file record number {0} is past 9999")]
    FileRecordNumber(u16),
    /// FC 43 / MEI 14 with a read device id code outside 1..=4.
    #[error("read device id code {0} is outside 1..=4")]
    ReadDeviceIdCode(u8),
    /// A write response whose echoed fields differ from the request's.
    #[error("response to function {function:#04x} does not echo the request's fields")]
    EchoMismatch {
        /// The function code.
        function: u8,
    },
    /// FC 24 response with a FIFO count past 31.
    #[error("FIFO count {0} is past 31")]
    FifoCount(u16),
}

/// A frame could not be written into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The buffer is shorter than the frame.
    #[error("buffer too small: need {needed} bytes, have {available}")]
    BufferTooSmall {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// A variable-length field is longer than its one-byte count can say, or the PDU is longer
    /// than 253 bytes.
    #[error("{field} is {len} bytes, more than the {max} the frame can carry")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The most the frame can carry.
        max: usize,
    },
}

/// A Modbus function code, open: every value is representable, named consts for the public ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionCode(pub u8);

impl FunctionCode {
    /// FC 1.
    pub const READ_COILS: Self = Self(0x01);
    /// FC 2.
    pub const READ_DISCRETE_INPUTS: Self = Self(0x02);
    /// FC 3.
    pub const READ_HOLDING_REGISTERS: Self = Self(0x03);
    /// FC 4.
    pub const READ_INPUT_REGISTERS: Self = Self(0x04);
    /// FC 5.
    pub const WRITE_SINGLE_COIL: Self = Self(0x05);
    /// FC 6.
    pub const WRITE_SINGLE_REGISTER: Self = Self(0x06);
    /// FC 7 (serial line only, but seen on TCP).
    pub const READ_EXCEPTION_STATUS: Self = Self(0x07);
    /// FC 8, with a sub-function.
    pub const DIAGNOSTICS: Self = Self(0x08);
    /// FC 11.
    pub const GET_COMM_EVENT_COUNTER: Self = Self(0x0B);
    /// FC 12.
    pub const GET_COMM_EVENT_LOG: Self = Self(0x0C);
    /// FC 15.
    pub const WRITE_MULTIPLE_COILS: Self = Self(0x0F);
    /// FC 16.
    pub const WRITE_MULTIPLE_REGISTERS: Self = Self(0x10);
    /// FC 17.
    pub const REPORT_SERVER_ID: Self = Self(0x11);
    /// FC 20.
    pub const READ_FILE_RECORD: Self = Self(0x14);
    /// FC 21.
    pub const WRITE_FILE_RECORD: Self = Self(0x15);
    /// FC 22.
    pub const MASK_WRITE_REGISTER: Self = Self(0x16);
    /// FC 23.
    pub const READ_WRITE_MULTIPLE_REGISTERS: Self = Self(0x17);
    /// FC 24.
    pub const READ_FIFO_QUEUE: Self = Self(0x18);
    /// FC 43, with an MEI type.
    pub const ENCAPSULATED_INTERFACE_TRANSPORT: Self = Self(0x2B);
    /// FC 90: Schneider Electric UMAS (vendor, `program`).
    pub const UMAS: Self = Self(0x5A);

    /// The function code without the exception bit.
    pub fn base(self) -> Self {
        Self(self.0 & 0x7F)
    }

    /// Whether the exception bit (0x80) is set, as in an exception response.
    pub fn is_exception(self) -> bool {
        self.0 & 0x80 != 0
    }

    /// The code an exception response to this function carries.
    pub fn exception(self) -> Self {
        Self(self.0 | 0x80)
    }

    /// The policy class of this function code (vendor and unassigned codes are `program`).
    pub fn class(self) -> ModbusClass {
        class_of(self.base().0)
    }

    /// The spec's name of a public function code, or `None` for vendor and unassigned codes.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.base() {
            Self::READ_COILS => "read_coils",
            Self::READ_DISCRETE_INPUTS => "read_discrete_inputs",
            Self::READ_HOLDING_REGISTERS => "read_holding_registers",
            Self::READ_INPUT_REGISTERS => "read_input_registers",
            Self::WRITE_SINGLE_COIL => "write_single_coil",
            Self::WRITE_SINGLE_REGISTER => "write_single_register",
            Self::READ_EXCEPTION_STATUS => "read_exception_status",
            Self::DIAGNOSTICS => "diagnostics",
            Self::GET_COMM_EVENT_COUNTER => "get_comm_event_counter",
            Self::GET_COMM_EVENT_LOG => "get_comm_event_log",
            Self::WRITE_MULTIPLE_COILS => "write_multiple_coils",
            Self::WRITE_MULTIPLE_REGISTERS => "write_multiple_registers",
            Self::REPORT_SERVER_ID => "report_server_id",
            Self::READ_FILE_RECORD => "read_file_record",
            Self::WRITE_FILE_RECORD => "write_file_record",
            Self::MASK_WRITE_REGISTER => "mask_write_register",
            Self::READ_WRITE_MULTIPLE_REGISTERS => "read_write_multiple_registers",
            Self::READ_FIFO_QUEUE => "read_fifo_queue",
            Self::ENCAPSULATED_INTERFACE_TRANSPORT => "encapsulated_interface_transport",
            Self::UMAS => "umas",
            _ => return None,
        })
    }
}

impl core::fmt::Display for FunctionCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(name) if !self.is_exception() => write!(f, "{name} ({})", self.0),
            Some(name) => write!(f, "{name} exception ({:#04x})", self.0),
            None => write!(f, "function {}", self.0),
        }
    }
}

/// A Modbus exception code (Modbus Application Protocol v1.1b3, section 7). Open newtype: an
/// exception response may carry any value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExceptionCode(pub u8);

impl ExceptionCode {
    /// 01: the function code is not allowed (or unknown) for this server.
    pub const ILLEGAL_FUNCTION: Self = Self(0x01);
    /// 02: the address range is not allowed.
    pub const ILLEGAL_DATA_ADDRESS: Self = Self(0x02);
    /// 03: a value in the request is not allowed (quantities, byte counts, coil values).
    pub const ILLEGAL_DATA_VALUE: Self = Self(0x03);
    /// 04: the server failed while performing the action.
    pub const SERVER_DEVICE_FAILURE: Self = Self(0x04);
    /// 05: accepted, long-running.
    pub const ACKNOWLEDGE: Self = Self(0x05);
    /// 06: busy with a long-running command.
    pub const SERVER_DEVICE_BUSY: Self = Self(0x06);
    /// 08: memory parity error in a file record.
    pub const MEMORY_PARITY_ERROR: Self = Self(0x08);
    /// 0A: the gateway has no path to the target.
    pub const GATEWAY_PATH_UNAVAILABLE: Self = Self(0x0A);
    /// 0B: the target behind the gateway did not respond.
    pub const GATEWAY_TARGET_FAILED_TO_RESPOND: Self = Self(0x0B);

    /// The spec's name of a known exception code.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::ILLEGAL_FUNCTION => "illegal_function",
            Self::ILLEGAL_DATA_ADDRESS => "illegal_data_address",
            Self::ILLEGAL_DATA_VALUE => "illegal_data_value",
            Self::SERVER_DEVICE_FAILURE => "server_device_failure",
            Self::ACKNOWLEDGE => "acknowledge",
            Self::SERVER_DEVICE_BUSY => "server_device_busy",
            Self::MEMORY_PARITY_ERROR => "memory_parity_error",
            Self::GATEWAY_PATH_UNAVAILABLE => "gateway_path_unavailable",
            Self::GATEWAY_TARGET_FAILED_TO_RESPOND => "gateway_target_failed_to_respond",
            _ => return None,
        })
    }
}

impl core::fmt::Display for ExceptionCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({:02x})", self.0),
            None => write!(f, "exception {:02x}", self.0),
        }
    }
}

/// The strict broker's answer to a request it cannot decode (spec section 7 and the per-function
/// state diagrams: function first, then quantity (03), then address (02)).
impl From<DecodeError> for ExceptionCode {
    fn from(error: DecodeError) -> Self {
        match error {
            DecodeError::IllegalFunction(_) | DecodeError::EmptyPdu => Self::ILLEGAL_FUNCTION,
            DecodeError::AddressOverflow { .. }
            | DecodeError::FileReferenceType(_)
            | DecodeError::FileRecordNumber(_) => Self::ILLEGAL_DATA_ADDRESS,
            _ => Self::ILLEGAL_DATA_VALUE,
        }
    }
}

/// Outcome of [`frame_len`]: whether the bytes buffered so far start with a complete frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameStatus {
    /// The first `len` bytes are one complete ADU (`len` is 9..=260).
    Complete(usize),
    /// The header or the frame is not complete yet; read more (at most to 260 bytes).
    NeedMore,
    /// The header cannot start a Modbus frame; the stream cannot be resynchronised.
    Invalid(DecodeError),
}

/// How long the frame at the start of `buf` is, reading only the MBAP header.
///
/// Refuses a wrong protocol id as soon as 4 bytes are present and a length outside 2..=254 as
/// soon as 6 are, so a caller never buffers more than [`MAX_ADU_LEN`] bytes for one frame.
pub fn frame_len(buf: &[u8]) -> FrameStatus {
    if let Some(&[hi, lo]) = buf.get(2..4) {
        let protocol = u16::from_be_bytes([hi, lo]);
        if protocol != 0 {
            return FrameStatus::Invalid(DecodeError::ProtocolId(protocol));
        }
    }
    let Some(&[hi, lo]) = buf.get(4..6) else {
        return FrameStatus::NeedMore;
    };
    let length = u16::from_be_bytes([hi, lo]);
    if !(MIN_MBAP_LENGTH..=MAX_MBAP_LENGTH).contains(&length) {
        return FrameStatus::Invalid(DecodeError::LengthOutOfRange { length });
    }
    let total = 6 + usize::from(length);
    if buf.len() >= total {
        FrameStatus::Complete(total)
    } else {
        FrameStatus::NeedMore
    }
}

/// The decoded MBAP header (Messaging on TCP/IP Implementation Guide v1.0b, section 3.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MbapHeader {
    /// Pairs a response with its request; echoed by the server.
    pub transaction_id: u16,
    /// 0 for Modbus.
    pub protocol_id: u16,
    /// Bytes that follow the length field: the unit id and the PDU.
    pub length: u16,
    /// The unit (slave) behind a gateway; 0 is broadcast, 0xFF "this device".
    pub unit_id: u8,
}

impl MbapHeader {
    /// Decodes the 7 header bytes; never fails (checks belong to [`Adu::new_checked`]).
    pub fn parse(bytes: &[u8; MBAP_LEN]) -> Self {
        let [t0, t1, p0, p1, l0, l1, unit_id] = *bytes;
        Self {
            transaction_id: u16::from_be_bytes([t0, t1]),
            protocol_id: u16::from_be_bytes([p0, p1]),
            length: u16::from_be_bytes([l0, l1]),
            unit_id,
        }
    }

    /// The header of a Modbus frame carrying a PDU of `pdu_len` bytes.
    pub fn for_pdu(transaction_id: u16, unit_id: u8, pdu_len: usize) -> Result<Self, EmitError> {
        if pdu_len == 0 || pdu_len > MAX_PDU_LEN {
            return Err(EmitError::TooLong {
                field: "pdu",
                len: pdu_len,
                max: MAX_PDU_LEN,
            });
        }
        let length = u16::try_from(pdu_len + 1).map_err(|_| EmitError::TooLong {
            field: "pdu",
            len: pdu_len,
            max: MAX_PDU_LEN,
        })?;
        Ok(Self {
            transaction_id,
            protocol_id: 0,
            length,
            unit_id,
        })
    }

    /// The 7 header bytes.
    pub fn emit(&self) -> [u8; MBAP_LEN] {
        let [t0, t1] = self.transaction_id.to_be_bytes();
        let [p0, p1] = self.protocol_id.to_be_bytes();
        let [l0, l1] = self.length.to_be_bytes();
        [t0, t1, p0, p1, l0, l1, self.unit_id]
    }
}

/// A zero-copy view of one Modbus TCP ADU: the MBAP header as a fixed array and the PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adu<'a> {
    header: &'a [u8; MBAP_LEN],
    pdu: &'a [u8],
}

/// Anomalies the lenient path found in a frame, as bit flags (the inspector reports them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Anomalies(pub u16);

impl Anomalies {
    /// No anomaly.
    pub const NONE: Self = Self(0);
    /// The protocol id is not 0.
    pub const PROTOCOL_ID: Self = Self(1 << 0);
    /// The MBAP length is outside 2..=254.
    pub const LENGTH_OUT_OF_RANGE: Self = Self(1 << 1);
    /// The MBAP length disagrees with the bytes present.
    pub const LENGTH_MISMATCH: Self = Self(1 << 2);
    /// The PDU does not decode for its function code.
    pub const MALFORMED_PDU: Self = Self(1 << 3);
    /// The function code is a vendor or unassigned one.
    pub const VENDOR_FUNCTION: Self = Self(1 << 4);
    /// The frame is an exception response.
    pub const EXCEPTION: Self = Self(1 << 5);
    /// Bytes after the PDU's last field (tolerated by `parse_lenient`).
    pub const TRAILING_BYTES: Self = Self(1 << 7);
    /// A response that does not fit its request (function, byte counts, echoed fields).
    pub const RESPONSE_MISMATCH: Self = Self(1 << 6);

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Sets the flags of `other`.
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }

    /// The names of the flags set, for events.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        const NAMES: [(Anomalies, &str); 8] = [
            (Anomalies::PROTOCOL_ID, "protocol_id"),
            (Anomalies::LENGTH_OUT_OF_RANGE, "length_out_of_range"),
            (Anomalies::LENGTH_MISMATCH, "length_mismatch"),
            (Anomalies::MALFORMED_PDU, "malformed_pdu"),
            (Anomalies::VENDOR_FUNCTION, "vendor_function"),
            (Anomalies::EXCEPTION, "exception"),
            (Anomalies::RESPONSE_MISMATCH, "response_mismatch"),
            (Anomalies::TRAILING_BYTES, "trailing_bytes"),
        ];
        NAMES
            .into_iter()
            .filter(move |(flag, _)| self.contains(*flag))
            .map(|(_, name)| name)
    }
}

impl core::ops::BitOr for Anomalies {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl<'a> Adu<'a> {
    /// A view of exactly one frame: protocol id 0, length 2..=254, and the length equal to the
    /// bytes present after the length field. Use [`frame_len`] to cut a stream into frames.
    pub fn new_checked(frame: &'a [u8]) -> Result<Self, DecodeError> {
        let (header, pdu) = split_header(frame)?;
        let parsed = MbapHeader::parse(header);
        if parsed.protocol_id != 0 {
            return Err(DecodeError::ProtocolId(parsed.protocol_id));
        }
        if !(MIN_MBAP_LENGTH..=MAX_MBAP_LENGTH).contains(&parsed.length) {
            return Err(DecodeError::LengthOutOfRange {
                length: parsed.length,
            });
        }
        let declared = usize::from(parsed.length);
        let actual = pdu.len() + 1;
        if declared != actual {
            return Err(DecodeError::LengthMismatch { declared, actual });
        }
        Ok(Self { header, pdu })
    }

    /// The inspector's view: keeps a frame whose header lies and says what was wrong.
    ///
    /// Needs the 7 header bytes and a function code; everything else becomes an [`Anomalies`]
    /// flag. When the length field is shorter than the bytes given, the PDU is cut where the
    /// length says (if it says at least a function code); when longer, the PDU is what is there.
    pub fn new_lenient(frame: &'a [u8]) -> Result<(Self, Anomalies), DecodeError> {
        let (header, rest) = split_header(frame)?;
        let parsed = MbapHeader::parse(header);
        let mut anomalies = Anomalies::NONE;
        if parsed.protocol_id != 0 {
            anomalies.insert(Anomalies::PROTOCOL_ID);
        }
        if !(MIN_MBAP_LENGTH..=MAX_MBAP_LENGTH).contains(&parsed.length) {
            anomalies.insert(Anomalies::LENGTH_OUT_OF_RANGE);
        }
        let declared_pdu = usize::from(parsed.length).saturating_sub(1);
        let pdu = if declared_pdu != rest.len() {
            anomalies.insert(Anomalies::LENGTH_MISMATCH);
            match rest.get(..declared_pdu) {
                Some(cut) if !cut.is_empty() => cut,
                _ => rest,
            }
        } else {
            rest
        };
        if pdu.is_empty() {
            return Err(DecodeError::EmptyPdu);
        }
        let adu = Self { header, pdu };
        if adu.function().is_exception() {
            anomalies.insert(Anomalies::EXCEPTION);
        }
        if adu.function().class() == ModbusClass::Program {
            anomalies.insert(Anomalies::VENDOR_FUNCTION);
        }
        Ok((adu, anomalies))
    }

    /// The decoded header.
    pub fn header(&self) -> MbapHeader {
        MbapHeader::parse(self.header)
    }

    /// The header's 7 bytes as sent.
    pub fn header_bytes(&self) -> &'a [u8; MBAP_LEN] {
        self.header
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> u16 {
        self.header().transaction_id
    }

    /// The protocol id (0 after `new_checked`).
    pub fn protocol_id(&self) -> u16 {
        self.header().protocol_id
    }

    /// The length field.
    pub fn length(&self) -> u16 {
        self.header().length
    }

    /// The unit id.
    pub fn unit_id(&self) -> u8 {
        self.header().unit_id
    }

    /// The PDU: function code and data (never empty after `new_checked`).
    pub fn pdu(&self) -> &'a [u8] {
        self.pdu
    }

    /// The function code (the PDU's first byte).
    pub fn function(&self) -> FunctionCode {
        FunctionCode(self.pdu.first().copied().unwrap_or(0))
    }

    /// The whole frame's length in bytes.
    pub fn len(&self) -> usize {
        MBAP_LEN + self.pdu.len()
    }

    /// Always false: a frame has at least a header and a function code.
    pub fn is_empty(&self) -> bool {
        false
    }
}

fn split_header(frame: &[u8]) -> Result<(&[u8; MBAP_LEN], &[u8]), DecodeError> {
    let truncated = || DecodeError::Truncated {
        field: "mbap header",
        needed: MBAP_LEN + 1,
        available: frame.len(),
    };
    let (header, rest) = frame
        .split_first_chunk::<MBAP_LEN>()
        .ok_or_else(truncated)?;
    if rest.is_empty() {
        return Err(truncated());
    }
    Ok((header, rest))
}

/// Writes a whole ADU (header and `pdu`) into `buf`; returns its length.
pub fn emit_adu(
    transaction_id: u16,
    unit_id: u8,
    pdu: &[u8],
    buf: &mut [u8],
) -> Result<usize, EmitError> {
    let header = MbapHeader::for_pdu(transaction_id, unit_id, pdu.len())?;
    let mut w = Writer::new(buf);
    w.bytes(&header.emit())?;
    w.bytes(pdu)?;
    Ok(w.pos)
}

/// Rewrites the transaction id of a frame in place (the broker maps ids towards the PLC);
/// returns the id it replaced.
pub fn rewrite_transaction_id(frame: &mut [u8], transaction_id: u16) -> Result<u16, DecodeError> {
    let available = frame.len();
    let slot = frame.first_chunk_mut::<2>().ok_or(DecodeError::Truncated {
        field: "transaction id",
        needed: 2,
        available,
    })?;
    let old = u16::from_be_bytes(*slot);
    *slot = transaction_id.to_be_bytes();
    Ok(old)
}

/// The FC 8 sub-functions a plant treats as changing the device (restart, listen-only, clearing
/// counters, changing the ASCII delimiter); the others only read counters or echo.
fn diagnostics_sub_function_writes(sub_function: u16) -> bool {
    matches!(sub_function, 0x01 | 0x03 | 0x04 | 0x0A | 0x14)
}

/// FC 8 sub-function names (spec section 6.8.1).
pub fn diagnostics_sub_function_name(sub_function: u16) -> Option<&'static str> {
    Some(match sub_function {
        0x00 => "return_query_data",
        0x01 => "restart_communications_option",
        0x02 => "return_diagnostic_register",
        0x03 => "change_ascii_input_delimiter",
        0x04 => "force_listen_only_mode",
        0x0A => "clear_counters_and_diagnostic_register",
        0x0B => "return_bus_message_count",
        0x0C => "return_bus_communication_error_count",
        0x0D => "return_bus_exception_error_count",
        0x0E => "return_server_message_count",
        0x0F => "return_server_no_response_count",
        0x10 => "return_server_nak_count",
        0x11 => "return_server_busy_count",
        0x12 => "return_bus_character_overrun_count",
        0x14 => "clear_overrun_counter_and_flag",
        _ => return None,
    })
}

/// MEI type of FC 43 for CANopen general reference requests.
pub const MEI_CANOPEN_GENERAL_REFERENCE: u8 = 0x0D;
/// MEI type of FC 43 for Read Device Identification.
pub const MEI_READ_DEVICE_IDENTIFICATION: u8 = 0x0E;

/// A Modbus request PDU, decoded. Written values are borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// FC 1: read `quantity` coils from `start` (1..=2000).
    ReadCoils {
        /// First coil.
        start: u16,
        /// How many coils.
        quantity: u16,
    },
    /// FC 2: read `quantity` discrete inputs from `start` (1..=2000).
    ReadDiscreteInputs {
        /// First input.
        start: u16,
        /// How many inputs.
        quantity: u16,
    },
    /// FC 3: read `quantity` holding registers from `start` (1..=125).
    ReadHoldingRegisters {
        /// First register.
        start: u16,
        /// How many registers.
        quantity: u16,
    },
    /// FC 4: read `quantity` input registers from `start` (1..=125).
    ReadInputRegisters {
        /// First register.
        start: u16,
        /// How many registers.
        quantity: u16,
    },
    /// FC 5: switch one coil on or off.
    WriteSingleCoil {
        /// The coil.
        address: u16,
        /// On (0xFF00) or off (0x0000).
        on: bool,
    },
    /// FC 6: write one holding register.
    WriteSingleRegister {
        /// The register.
        address: u16,
        /// The value written.
        value: u16,
    },
    /// FC 7: read the exception status byte.
    ReadExceptionStatus,
    /// FC 8: diagnostics with a sub-function and its data (usually one 16-bit word).
    Diagnostics {
        /// The sub-function (1 restart, 4 force listen-only, ...).
        sub_function: u16,
        /// The data that follows the sub-function.
        data: &'a [u8],
    },
    /// FC 11: read the comm event counter.
    GetCommEventCounter,
    /// FC 12: read the comm event log.
    GetCommEventLog,
    /// FC 15: write `quantity` coils from `start` (1..=1968), packed 8 per byte, LSB first.
    WriteMultipleCoils {
        /// First coil.
        start: u16,
        /// How many coils.
        quantity: u16,
        /// The packed coil values (`ceil(quantity / 8)` bytes).
        values: &'a [u8],
    },
    /// FC 16: write `quantity` holding registers from `start` (1..=123).
    WriteMultipleRegisters {
        /// First register.
        start: u16,
        /// How many registers.
        quantity: u16,
        /// The values, big-endian, 2 bytes each.
        values: &'a [u8],
    },
    /// FC 17: report server id.
    ReportServerId,
    /// FC 20: read file records; sub-requests of 7 bytes each (see [`FileSubRequests`]).
    ReadFileRecord {
        /// The sub-requests as sent (after the byte count).
        sub_requests: &'a [u8],
    },
    /// FC 21: write file records; sub-requests with their data (see [`FileSubRequests`]).
    WriteFileRecord {
        /// The sub-requests as sent (after the byte count).
        sub_requests: &'a [u8],
    },
    /// FC 22: `register = (register AND and_mask) OR (or_mask AND NOT and_mask)`.
    MaskWriteRegister {
        /// The register.
        address: u16,
        /// AND mask.
        and_mask: u16,
        /// OR mask.
        or_mask: u16,
    },
    /// FC 23: write first, then read, in one transaction.
    ReadWriteMultipleRegisters {
        /// First register read.
        read_start: u16,
        /// How many read (1..=125).
        read_quantity: u16,
        /// First register written.
        write_start: u16,
        /// How many written (1..=121).
        write_quantity: u16,
        /// The values written, 2 bytes each.
        values: &'a [u8],
    },
    /// FC 24: read the FIFO queue at `address`.
    ReadFifoQueue {
        /// The FIFO pointer address.
        address: u16,
    },
    /// FC 43 / MEI 14: read device identification.
    ReadDeviceIdentification {
        /// 1 basic, 2 regular, 3 extended (stream), 4 one specific object.
        read_code: u8,
        /// The first object to read.
        object_id: u8,
    },
    /// FC 43 with another MEI type (13 CANopen general reference, or unassigned).
    EncapsulatedInterface {
        /// The MEI type.
        mei_type: u8,
        /// The MEI data.
        data: &'a [u8],
    },
    /// A vendor or unassigned function code (FC 90 UMAS, 65-72, 100-110, ...), kept raw.
    Other {
        /// The function code.
        function: FunctionCode,
        /// Everything after the function code.
        data: &'a [u8],
    },
}

/// A Modbus response PDU, decoded in the light of its request's function code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response<'a> {
    /// FC 1: coil values, packed (after the byte count).
    ReadCoils {
        /// Packed bits.
        values: &'a [u8],
    },
    /// FC 2: input values, packed.
    ReadDiscreteInputs {
        /// Packed bits.
        values: &'a [u8],
    },
    /// FC 3: register values, 2 bytes each.
    ReadHoldingRegisters {
        /// Register values.
        values: &'a [u8],
    },
    /// FC 4: register values, 2 bytes each.
    ReadInputRegisters {
        /// Register values.
        values: &'a [u8],
    },
    /// FC 5: echo of the request.
    WriteSingleCoil {
        /// The coil.
        address: u16,
        /// On or off.
        on: bool,
    },
    /// FC 6: echo of the request.
    WriteSingleRegister {
        /// The register.
        address: u16,
        /// The value written.
        value: u16,
    },
    /// FC 7: the exception status byte.
    ReadExceptionStatus {
        /// Eight exception status outputs.
        status: u8,
    },
    /// FC 8: echo of the sub-function and its data.
    Diagnostics {
        /// The sub-function.
        sub_function: u16,
        /// Its data.
        data: &'a [u8],
    },
    /// FC 11: status and event count.
    GetCommEventCounter {
        /// 0xFFFF busy, 0 ready.
        status: u16,
        /// The event counter.
        event_count: u16,
    },
    /// FC 12: status, counters and events (after the byte count).
    GetCommEventLog {
        /// 0xFFFF busy, 0 ready.
        status: u16,
        /// The event counter.
        event_count: u16,
        /// The message counter.
        message_count: u16,
        /// 0..=64 event bytes.
        events: &'a [u8],
    },
    /// FC 15: echo of start and quantity.
    WriteMultipleCoils {
        /// First coil.
        start: u16,
        /// How many.
        quantity: u16,
    },
    /// FC 16: echo of start and quantity.
    WriteMultipleRegisters {
        /// First register.
        start: u16,
        /// How many.
        quantity: u16,
    },
    /// FC 17: device-specific server id data (after the byte count).
    ReportServerId {
        /// Server id, run indicator and additional data.
        data: &'a [u8],
    },
    /// FC 20: sub-responses (after the byte count).
    ReadFileRecord {
        /// Each: length, reference type, record data.
        sub_responses: &'a [u8],
    },
    /// FC 21: echo of the request's sub-requests.
    WriteFileRecord {
        /// Echoed sub-requests.
        sub_requests: &'a [u8],
    },
    /// FC 22: echo of the request.
    MaskWriteRegister {
        /// The register.
        address: u16,
        /// AND mask.
        and_mask: u16,
        /// OR mask.
        or_mask: u16,
    },
    /// FC 23: register values read.
    ReadWriteMultipleRegisters {
        /// Register values.
        values: &'a [u8],
    },
    /// FC 24: FIFO values (after byte count and FIFO count).
    ReadFifoQueue {
        /// The values, 2 bytes each (FIFO count = len / 2).
        values: &'a [u8],
    },
    /// FC 43 / MEI 14: device identification objects.
    ReadDeviceIdentification {
        /// The read device id code echoed.
        read_code: u8,
        /// Conformity level.
        conformity_level: u8,
        /// 0xFF when more objects follow in another transaction.
        more_follows: u8,
        /// Next object to ask for when `more_follows`.
        next_object_id: u8,
        /// Number of objects in `objects`.
        object_count: u8,
        /// The objects: id, length, value (see [`DeviceIdObjects`]).
        objects: &'a [u8],
    },
    /// FC 43 with another MEI type.
    EncapsulatedInterface {
        /// The MEI type.
        mei_type: u8,
        /// The MEI data.
        data: &'a [u8],
    },
    /// A vendor or unassigned function code, kept raw.
    Other {
        /// The function code.
        function: FunctionCode,
        /// Everything after the function code.
        data: &'a [u8],
    },
    /// An exception response: the function code with 0x80 set, and an exception code.
    Exception(Exception),
}

/// An exception response (spec section 7): what the broker sends when it refuses a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Exception {
    /// The request's function code (without the exception bit).
    pub function: FunctionCode,
    /// Why.
    pub code: ExceptionCode,
}

impl Exception {
    /// The exception answering `function` with `code`.
    pub fn new(function: FunctionCode, code: ExceptionCode) -> Self {
        Self {
            function: function.base(),
            code,
        }
    }

    /// The two PDU bytes: function | 0x80, code.
    pub fn pdu(&self) -> [u8; 2] {
        [self.function.exception().0, self.code.0]
    }

    /// The whole 9-byte ADU answering the request with `transaction_id` on `unit_id`.
    pub fn adu(&self, transaction_id: u16, unit_id: u8) -> [u8; MBAP_LEN + 2] {
        let header = MbapHeader {
            transaction_id,
            protocol_id: 0,
            length: 3,
            unit_id,
        }
        .emit();
        let [t0, t1, p0, p1, l0, l1, u] = header;
        let [f, c] = self.pdu();
        [t0, t1, p0, p1, l0, l1, u, f, c]
    }
}

/// A cursor over untrusted bytes: every read is checked, leftovers are an error.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                field,
                needed: n,
                available: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        let (&first, rest) = self.buf.split_first().ok_or(DecodeError::Truncated {
            field,
            needed: 1,
            available: 0,
        })?;
        self.buf = rest;
        Ok(first)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let available = self.buf.len();
        let (pair, rest) = self
            .buf
            .split_first_chunk::<2>()
            .ok_or(DecodeError::Truncated {
                field,
                needed: 2,
                available,
            })?;
        self.buf = rest;
        Ok(u16::from_be_bytes(*pair))
    }

    fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Strict: leftovers are an error. Lenient: returns how many bytes were left over.
    fn finish_or_count(self, lenient: bool) -> Result<usize, DecodeError> {
        let extra = self.buf.len();
        if extra == 0 || lenient {
            Ok(extra)
        } else {
            Err(DecodeError::TrailingBytes { extra })
        }
    }

    /// A one-byte count followed by exactly that many bytes, which must end the PDU.
    fn counted_rest(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let count = usize::from(self.u8(field)?);
        if count != self.remaining() {
            return Err(DecodeError::ByteCountMismatch {
                declared: count,
                expected: self.remaining(),
            });
        }
        Ok(self.rest())
    }
}

/// A cursor writing into a caller's buffer.
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn bytes(&mut self, bytes: &[u8]) -> Result<(), EmitError> {
        let available = self.buf.len();
        let end = self.pos + bytes.len();
        let slot = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(EmitError::BufferTooSmall {
                needed: end,
                available,
            })?;
        slot.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    fn u8(&mut self, value: u8) -> Result<(), EmitError> {
        self.bytes(&[value])
    }

    fn u16(&mut self, value: u16) -> Result<(), EmitError> {
        self.bytes(&value.to_be_bytes())
    }

    fn count(&mut self, field: &'static str, len: usize) -> Result<(), EmitError> {
        let count = u8::try_from(len).map_err(|_| EmitError::TooLong {
            field,
            len,
            max: 255,
        })?;
        self.u8(count)
    }
}

fn check_quantity(quantity: u16, max: u16) -> Result<(), DecodeError> {
    if quantity == 0 || quantity > max {
        return Err(DecodeError::QuantityOutOfRange { quantity, max });
    }
    Ok(())
}

fn check_range(start: u16, quantity: u16) -> Result<(), DecodeError> {
    if u32::from(start) + u32::from(quantity) > 0x1_0000 {
        return Err(DecodeError::AddressOverflow { start, quantity });
    }
    Ok(())
}

/// Bytes needed to pack `bits` bits.
fn packed_len(bits: u16) -> usize {
    usize::from(bits).div_ceil(8)
}

fn coil_value(value: u16) -> Result<bool, DecodeError> {
    match value {
        COIL_ON => Ok(true),
        COIL_OFF => Ok(false),
        other => Err(DecodeError::CoilValue(other)),
    }
}

/// Validates FC 20 sub-requests (7 bytes each) and returns them.
fn check_read_file_sub_requests(bytes: &[u8]) -> Result<(), DecodeError> {
    if bytes.len() < 7 || bytes.len() > 0xF5 || bytes.len() % 7 != 0 {
        return Err(DecodeError::ByteCountMismatch {
            declared: bytes.len(),
            expected: bytes.len() / 7 * 7,
        });
    }
    for sub in FileSubRequests::new(bytes, false) {
        sub?;
    }
    Ok(())
}

/// Validates FC 21 sub-requests (header of 7 bytes plus `record_length` registers each).
fn check_write_file_sub_requests(bytes: &[u8]) -> Result<(), DecodeError> {
    if bytes.len() < 9 || bytes.len() > 0xFB {
        return Err(DecodeError::ByteCountMismatch {
            declared: bytes.len(),
            expected: 9,
        });
    }
    for sub in FileSubRequests::new(bytes, true) {
        sub?;
    }
    Ok(())
}

/// One file record sub-request (FC 20, 21).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSubRequest<'a> {
    /// The file number.
    pub file_number: u16,
    /// The first record.
    pub record_number: u16,
    /// How many 16-bit registers.
    pub record_length: u16,
    /// The data written (FC 21), empty for FC 20.
    pub data: &'a [u8],
}

/// Iterates the sub-requests of FC 20 (`with_data` false) or FC 21 (`with_data` true); stops
/// after the first error.
#[derive(Debug, Clone)]
pub struct FileSubRequests<'a> {
    reader: &'a [u8],
    with_data: bool,
}

impl<'a> FileSubRequests<'a> {
    /// Iterates `bytes` (the PDU after the byte count).
    pub fn new(bytes: &'a [u8], with_data: bool) -> Self {
        Self {
            reader: bytes,
            with_data,
        }
    }

    fn next_sub(&mut self) -> Result<FileSubRequest<'a>, DecodeError> {
        let mut r = Reader::new(self.reader);
        let reference = r.u8("file reference type")?;
        let file_number = r.u16("file number")?;
        let record_number = r.u16("file record number")?;
        let record_length = r.u16("file record length")?;
        if reference != FILE_REFERENCE_TYPE {
            return Err(DecodeError::FileReferenceType(reference));
        }
        if record_number > MAX_FILE_RECORD_NUMBER {
            return Err(DecodeError::FileRecordNumber(record_number));
        }
        let data = if self.with_data {
            r.take(usize::from(record_length) * 2, "file record data")?
        } else {
            &[]
        };
        self.reader = r.rest();
        Ok(FileSubRequest {
            file_number,
            record_number,
            record_length,
            data,
        })
    }
}

impl<'a> Iterator for FileSubRequests<'a> {
    type Item = Result<FileSubRequest<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.reader.is_empty() {
            return None;
        }
        let item = self.next_sub();
        if item.is_err() {
            self.reader = &[];
        }
        Some(item)
    }
}

/// One device identification object (FC 43 / MEI 14 response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceIdObject<'a> {
    /// Object id (0 vendor name, 1 product code, 2 revision, ...).
    pub id: u8,
    /// The value, usually ASCII.
    pub value: &'a [u8],
}

/// Iterates device identification objects; stops after the first truncated one.
#[derive(Debug, Clone)]
pub struct DeviceIdObjects<'a> {
    rest: &'a [u8],
}

impl<'a> DeviceIdObjects<'a> {
    /// Iterates `objects` as found in [`Response::ReadDeviceIdentification`].
    pub fn new(objects: &'a [u8]) -> Self {
        Self { rest: objects }
    }
}

impl<'a> Iterator for DeviceIdObjects<'a> {
    type Item = Result<DeviceIdObject<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let mut r = Reader::new(self.rest);
        let item = (|| {
            let id = r.u8("object id")?;
            let len = r.u8("object length")?;
            let value = r.take(usize::from(len), "object value")?;
            Ok(DeviceIdObject { id, value })
        })();
        self.rest = if item.is_ok() { r.rest() } else { &[] };
        Some(item)
    }
}

impl<'a> Request<'a> {
    /// Decodes a request PDU (function code and data). Never panics, never allocates; refuses
    /// trailing bytes, quantities out of range, byte counts that do not match, ranges past 65535.
    pub fn parse(pdu: &'a [u8]) -> Result<Self, DecodeError> {
        Self::parse_with(pdu, false).map(|(request, _)| request)
    }

    /// The inspector's parse: like [`Request::parse`], but bytes after the last field are
    /// tolerated and flagged [`Anomalies::TRAILING_BYTES`] (the emitted form drops them).
    pub fn parse_lenient(pdu: &'a [u8]) -> Result<(Self, Anomalies), DecodeError> {
        let (request, extra) = Self::parse_with(pdu, true)?;
        let mut anomalies = Anomalies::NONE;
        if extra > 0 {
            anomalies.insert(Anomalies::TRAILING_BYTES);
        }
        if request.function().class() == ModbusClass::Program {
            anomalies.insert(Anomalies::VENDOR_FUNCTION);
        }
        Ok((request, anomalies))
    }

    fn parse_with(pdu: &'a [u8], lenient: bool) -> Result<(Self, usize), DecodeError> {
        let (&function, data) = pdu.split_first().ok_or(DecodeError::EmptyPdu)?;
        let function = FunctionCode(function);
        if function.0 == 0 || function.is_exception() {
            return Err(DecodeError::IllegalFunction(function.0));
        }
        let mut r = Reader::new(data);
        let request = match function {
            FunctionCode::READ_COILS
            | FunctionCode::READ_DISCRETE_INPUTS
            | FunctionCode::READ_HOLDING_REGISTERS
            | FunctionCode::READ_INPUT_REGISTERS => {
                let start = r.u16("start address")?;
                let quantity = r.u16("quantity")?;
                let bits = matches!(
                    function,
                    FunctionCode::READ_COILS | FunctionCode::READ_DISCRETE_INPUTS
                );
                check_quantity(
                    quantity,
                    if bits {
                        MAX_READ_BITS
                    } else {
                        MAX_READ_REGISTERS
                    },
                )?;
                check_range(start, quantity)?;
                match function {
                    FunctionCode::READ_COILS => Self::ReadCoils { start, quantity },
                    FunctionCode::READ_DISCRETE_INPUTS => {
                        Self::ReadDiscreteInputs { start, quantity }
                    }
                    FunctionCode::READ_HOLDING_REGISTERS => {
                        Self::ReadHoldingRegisters { start, quantity }
                    }
                    _ => Self::ReadInputRegisters { start, quantity },
                }
            }
            FunctionCode::WRITE_SINGLE_COIL => {
                let address = r.u16("output address")?;
                let on = coil_value(r.u16("output value")?)?;
                Self::WriteSingleCoil { address, on }
            }
            FunctionCode::WRITE_SINGLE_REGISTER => {
                let address = r.u16("register address")?;
                let value = r.u16("register value")?;
                Self::WriteSingleRegister { address, value }
            }
            FunctionCode::READ_EXCEPTION_STATUS => Self::ReadExceptionStatus,
            FunctionCode::DIAGNOSTICS => {
                let sub_function = r.u16("sub-function")?;
                Self::Diagnostics {
                    sub_function,
                    data: r.rest(),
                }
            }
            FunctionCode::GET_COMM_EVENT_COUNTER => Self::GetCommEventCounter,
            FunctionCode::GET_COMM_EVENT_LOG => Self::GetCommEventLog,
            FunctionCode::REPORT_SERVER_ID => Self::ReportServerId,
            FunctionCode::WRITE_MULTIPLE_COILS => {
                let start = r.u16("start address")?;
                let quantity = r.u16("quantity of outputs")?;
                check_quantity(quantity, MAX_WRITE_BITS)?;
                let values = r.counted_rest("byte count")?;
                if values.len() != packed_len(quantity) {
                    return Err(DecodeError::ByteCountMismatch {
                        declared: values.len(),
                        expected: packed_len(quantity),
                    });
                }
                check_range(start, quantity)?;
                Self::WriteMultipleCoils {
                    start,
                    quantity,
                    values,
                }
            }
            FunctionCode::WRITE_MULTIPLE_REGISTERS => {
                let start = r.u16("start address")?;
                let quantity = r.u16("quantity of registers")?;
                check_quantity(quantity, MAX_WRITE_REGISTERS)?;
                let values = r.counted_rest("byte count")?;
                if values.len() != usize::from(quantity) * 2 {
                    return Err(DecodeError::ByteCountMismatch {
                        declared: values.len(),
                        expected: usize::from(quantity) * 2,
                    });
                }
                check_range(start, quantity)?;
                Self::WriteMultipleRegisters {
                    start,
                    quantity,
                    values,
                }
            }
            FunctionCode::READ_FILE_RECORD => {
                let sub_requests = r.counted_rest("byte count")?;
                check_read_file_sub_requests(sub_requests)?;
                Self::ReadFileRecord { sub_requests }
            }
            FunctionCode::WRITE_FILE_RECORD => {
                let sub_requests = r.counted_rest("request data length")?;
                check_write_file_sub_requests(sub_requests)?;
                Self::WriteFileRecord { sub_requests }
            }
            FunctionCode::MASK_WRITE_REGISTER => {
                let address = r.u16("reference address")?;
                let and_mask = r.u16("and mask")?;
                let or_mask = r.u16("or mask")?;
                Self::MaskWriteRegister {
                    address,
                    and_mask,
                    or_mask,
                }
            }
            FunctionCode::READ_WRITE_MULTIPLE_REGISTERS => {
                let read_start = r.u16("read start address")?;
                let read_quantity = r.u16("quantity to read")?;
                let write_start = r.u16("write start address")?;
                let write_quantity = r.u16("quantity to write")?;
                check_quantity(read_quantity, MAX_READ_REGISTERS)?;
                check_quantity(write_quantity, MAX_READ_WRITE_REGISTERS)?;
                let values = r.counted_rest("write byte count")?;
                if values.len() != usize::from(write_quantity) * 2 {
                    return Err(DecodeError::ByteCountMismatch {
                        declared: values.len(),
                        expected: usize::from(write_quantity) * 2,
                    });
                }
                check_range(read_start, read_quantity)?;
                check_range(write_start, write_quantity)?;
                Self::ReadWriteMultipleRegisters {
                    read_start,
                    read_quantity,
                    write_start,
                    write_quantity,
                    values,
                }
            }
            FunctionCode::READ_FIFO_QUEUE => Self::ReadFifoQueue {
                address: r.u16("fifo pointer address")?,
            },
            FunctionCode::ENCAPSULATED_INTERFACE_TRANSPORT => {
                let mei_type = r.u8("mei type")?;
                if mei_type == MEI_READ_DEVICE_IDENTIFICATION {
                    let read_code = r.u8("read device id code")?;
                    let object_id = r.u8("object id")?;
                    if !(1..=4).contains(&read_code) {
                        return Err(DecodeError::ReadDeviceIdCode(read_code));
                    }
                    Self::ReadDeviceIdentification {
                        read_code,
                        object_id,
                    }
                } else {
                    Self::EncapsulatedInterface {
                        mei_type,
                        data: r.rest(),
                    }
                }
            }
            function => Self::Other {
                function,
                data: r.rest(),
            },
        };
        let extra = r.finish_or_count(lenient)?;
        Ok((request, extra))
    }

    /// The function code.
    pub fn function(&self) -> FunctionCode {
        match self {
            Self::ReadCoils { .. } => FunctionCode::READ_COILS,
            Self::ReadDiscreteInputs { .. } => FunctionCode::READ_DISCRETE_INPUTS,
            Self::ReadHoldingRegisters { .. } => FunctionCode::READ_HOLDING_REGISTERS,
            Self::ReadInputRegisters { .. } => FunctionCode::READ_INPUT_REGISTERS,
            Self::WriteSingleCoil { .. } => FunctionCode::WRITE_SINGLE_COIL,
            Self::WriteSingleRegister { .. } => FunctionCode::WRITE_SINGLE_REGISTER,
            Self::ReadExceptionStatus => FunctionCode::READ_EXCEPTION_STATUS,
            Self::Diagnostics { .. } => FunctionCode::DIAGNOSTICS,
            Self::GetCommEventCounter => FunctionCode::GET_COMM_EVENT_COUNTER,
            Self::GetCommEventLog => FunctionCode::GET_COMM_EVENT_LOG,
            Self::WriteMultipleCoils { .. } => FunctionCode::WRITE_MULTIPLE_COILS,
            Self::WriteMultipleRegisters { .. } => FunctionCode::WRITE_MULTIPLE_REGISTERS,
            Self::ReportServerId => FunctionCode::REPORT_SERVER_ID,
            Self::ReadFileRecord { .. } => FunctionCode::READ_FILE_RECORD,
            Self::WriteFileRecord { .. } => FunctionCode::WRITE_FILE_RECORD,
            Self::MaskWriteRegister { .. } => FunctionCode::MASK_WRITE_REGISTER,
            Self::ReadWriteMultipleRegisters { .. } => FunctionCode::READ_WRITE_MULTIPLE_REGISTERS,
            Self::ReadFifoQueue { .. } => FunctionCode::READ_FIFO_QUEUE,
            Self::ReadDeviceIdentification { .. } | Self::EncapsulatedInterface { .. } => {
                FunctionCode::ENCAPSULATED_INTERFACE_TRANSPORT
            }
            Self::Other { function, .. } => *function,
        }
    }

    /// The PDU length `emit` writes (function code included).
    pub fn buffer_len(&self) -> usize {
        1 + match self {
            Self::ReadCoils { .. }
            | Self::ReadDiscreteInputs { .. }
            | Self::ReadHoldingRegisters { .. }
            | Self::ReadInputRegisters { .. }
            | Self::WriteSingleCoil { .. }
            | Self::WriteSingleRegister { .. } => 4,
            Self::ReadExceptionStatus
            | Self::GetCommEventCounter
            | Self::GetCommEventLog
            | Self::ReportServerId => 0,
            Self::Diagnostics { data, .. } => 2 + data.len(),
            Self::WriteMultipleCoils { values, .. }
            | Self::WriteMultipleRegisters { values, .. } => 5 + values.len(),
            Self::ReadFileRecord { sub_requests } | Self::WriteFileRecord { sub_requests } => {
                1 + sub_requests.len()
            }
            Self::MaskWriteRegister { .. } => 6,
            Self::ReadWriteMultipleRegisters { values, .. } => 9 + values.len(),
            Self::ReadFifoQueue { .. } => 2,
            Self::ReadDeviceIdentification { .. } => 3,
            Self::EncapsulatedInterface { data, .. } => 1 + data.len(),
            Self::Other { data, .. } => data.len(),
        }
    }

    /// Writes the PDU into `buf`; returns its length. Fields are written as they are: `emit`
    /// does not check quantities against values (that is `parse`'s job on the way in).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let needed = self.buffer_len();
        if buf.len() < needed {
            return Err(EmitError::BufferTooSmall {
                needed,
                available: buf.len(),
            });
        }
        let mut w = Writer::new(buf);
        w.u8(self.function().0)?;
        match *self {
            Self::ReadCoils { start, quantity }
            | Self::ReadDiscreteInputs { start, quantity }
            | Self::ReadHoldingRegisters { start, quantity }
            | Self::ReadInputRegisters { start, quantity } => {
                w.u16(start)?;
                w.u16(quantity)?;
            }
            Self::WriteSingleCoil { address, on } => {
                w.u16(address)?;
                w.u16(if on { COIL_ON } else { COIL_OFF })?;
            }
            Self::WriteSingleRegister { address, value } => {
                w.u16(address)?;
                w.u16(value)?;
            }
            Self::ReadExceptionStatus
            | Self::GetCommEventCounter
            | Self::GetCommEventLog
            | Self::ReportServerId => {}
            Self::Diagnostics { sub_function, data } => {
                w.u16(sub_function)?;
                w.bytes(data)?;
            }
            Self::WriteMultipleCoils {
                start,
                quantity,
                values,
            }
            | Self::WriteMultipleRegisters {
                start,
                quantity,
                values,
            } => {
                w.u16(start)?;
                w.u16(quantity)?;
                w.count("values", values.len())?;
                w.bytes(values)?;
            }
            Self::ReadFileRecord { sub_requests } | Self::WriteFileRecord { sub_requests } => {
                w.count("sub_requests", sub_requests.len())?;
                w.bytes(sub_requests)?;
            }
            Self::MaskWriteRegister {
                address,
                and_mask,
                or_mask,
            } => {
                w.u16(address)?;
                w.u16(and_mask)?;
                w.u16(or_mask)?;
            }
            Self::ReadWriteMultipleRegisters {
                read_start,
                read_quantity,
                write_start,
                write_quantity,
                values,
            } => {
                w.u16(read_start)?;
                w.u16(read_quantity)?;
                w.u16(write_start)?;
                w.u16(write_quantity)?;
                w.count("values", values.len())?;
                w.bytes(values)?;
            }
            Self::ReadFifoQueue { address } => w.u16(address)?,
            Self::ReadDeviceIdentification {
                read_code,
                object_id,
            } => {
                w.u8(MEI_READ_DEVICE_IDENTIFICATION)?;
                w.u8(read_code)?;
                w.u8(object_id)?;
            }
            Self::EncapsulatedInterface { mei_type, data } => {
                w.u8(mei_type)?;
                w.bytes(data)?;
            }
            Self::Other { data, .. } => w.bytes(data)?,
        }
        Ok(w.pos)
    }

    /// Writes the whole ADU (MBAP header and PDU) into `buf`; returns its length.
    pub fn emit_adu(
        &self,
        transaction_id: u16,
        unit_id: u8,
        buf: &mut [u8],
    ) -> Result<usize, EmitError> {
        let pdu_len = self.buffer_len();
        let header = MbapHeader::for_pdu(transaction_id, unit_id, pdu_len)?;
        let needed = MBAP_LEN + pdu_len;
        if buf.len() < needed {
            return Err(EmitError::BufferTooSmall {
                needed,
                available: buf.len(),
            });
        }
        let (head, tail) = buf.split_at_mut(MBAP_LEN);
        head.copy_from_slice(&header.emit());
        let written = self.emit(tail)?;
        Ok(MBAP_LEN + written)
    }

    /// What this request does, as the policy engine checks it: one op, or two for FC 23 (the
    /// read half first, then the write half). `unit` is the MBAP unit id.
    pub fn ops(&self, unit: u8) -> heapless::Vec<ModbusOp, 2> {
        let function = self.function();
        let op = |access: Access,
                  table: Option<Table>,
                  range: Option<AddressRange>,
                  sub: Option<u16>| ModbusOp {
            unit,
            function: function.0,
            sub_function: sub,
            class: function.class(),
            access,
            table,
            range,
        };
        let span =
            |start: u16, quantity: u16| AddressRange::from_start_quantity(start, quantity).ok();
        let mut ops = heapless::Vec::new();
        let first = match *self {
            Self::ReadCoils { start, quantity } => op(
                Access::Read,
                Some(Table::Coils),
                span(start, quantity),
                None,
            ),
            Self::ReadDiscreteInputs { start, quantity } => op(
                Access::Read,
                Some(Table::DiscreteInputs),
                span(start, quantity),
                None,
            ),
            Self::ReadHoldingRegisters { start, quantity } => op(
                Access::Read,
                Some(Table::HoldingRegisters),
                span(start, quantity),
                None,
            ),
            Self::ReadInputRegisters { start, quantity } => op(
                Access::Read,
                Some(Table::InputRegisters),
                span(start, quantity),
                None,
            ),
            Self::WriteSingleCoil { address, .. } => op(
                Access::Write,
                Some(Table::Coils),
                Some(AddressRange::single(address)),
                None,
            ),
            Self::WriteSingleRegister { address, .. } | Self::MaskWriteRegister { address, .. } => {
                op(
                    Access::Write,
                    Some(Table::HoldingRegisters),
                    Some(AddressRange::single(address)),
                    None,
                )
            }
            Self::WriteMultipleCoils {
                start, quantity, ..
            } => op(
                Access::Write,
                Some(Table::Coils),
                span(start, quantity),
                None,
            ),
            Self::WriteMultipleRegisters {
                start, quantity, ..
            } => op(
                Access::Write,
                Some(Table::HoldingRegisters),
                span(start, quantity),
                None,
            ),
            Self::ReadExceptionStatus
            | Self::GetCommEventCounter
            | Self::GetCommEventLog
            | Self::ReportServerId => op(Access::Read, None, None, None),
            Self::Diagnostics { sub_function, .. } => {
                let access = if diagnostics_sub_function_writes(sub_function) {
                    Access::Write
                } else {
                    Access::Read
                };
                op(access, None, None, Some(sub_function))
            }
            Self::ReadFileRecord { .. } => op(Access::Read, Some(Table::FileRecords), None, None),
            Self::WriteFileRecord { .. } => op(Access::Write, Some(Table::FileRecords), None, None),
            Self::ReadWriteMultipleRegisters {
                read_start,
                read_quantity,
                write_start,
                write_quantity,
                ..
            } => {
                let read = ModbusOp {
                    class: ModbusClass::Read,
                    ..op(
                        Access::Read,
                        Some(Table::HoldingRegisters),
                        span(read_start, read_quantity),
                        None,
                    )
                };
                let _ = ops.push(read);
                op(
                    Access::Write,
                    Some(Table::HoldingRegisters),
                    span(write_start, write_quantity),
                    None,
                )
            }
            Self::ReadFifoQueue { address } => op(
                Access::Read,
                Some(Table::FifoQueue),
                Some(AddressRange::single(address)),
                None,
            ),
            Self::ReadDeviceIdentification { .. } => op(
                Access::Read,
                None,
                None,
                Some(u16::from(MEI_READ_DEVICE_IDENTIFICATION)),
            ),
            Self::EncapsulatedInterface { mei_type, .. } => ModbusOp {
                class: ModbusClass::Program,
                ..op(Access::Write, None, None, Some(u16::from(mei_type)))
            },
            Self::Other { .. } => op(Access::Write, None, None, None),
        };
        let _ = ops.push(first);
        ops
    }
}

impl<'a> Response<'a> {
    /// Decodes a response PDU to a request with function code `request` (its base code).
    ///
    /// An exception response (`request | 0x80` and one code byte) becomes
    /// [`Response::Exception`]; a response carrying another function code is a
    /// [`DecodeError::FunctionMismatch`]. Never panics, never allocates.
    pub fn parse(request: FunctionCode, pdu: &'a [u8]) -> Result<Self, DecodeError> {
        Self::parse_with(request, pdu, false).map(|(response, _)| response)
    }

    /// The inspector's parse: like [`Response::parse`], but bytes after the last field are
    /// tolerated and flagged [`Anomalies::TRAILING_BYTES`]; exceptions are flagged too.
    pub fn parse_lenient(
        request: FunctionCode,
        pdu: &'a [u8],
    ) -> Result<(Self, Anomalies), DecodeError> {
        let (response, extra) = Self::parse_with(request, pdu, true)?;
        let mut anomalies = Anomalies::NONE;
        if extra > 0 {
            anomalies.insert(Anomalies::TRAILING_BYTES);
        }
        if response.exception().is_some() {
            anomalies.insert(Anomalies::EXCEPTION);
        }
        if response.function().class() == ModbusClass::Program {
            anomalies.insert(Anomalies::VENDOR_FUNCTION);
        }
        Ok((response, anomalies))
    }

    fn parse_with(
        request: FunctionCode,
        pdu: &'a [u8],
        lenient: bool,
    ) -> Result<(Self, usize), DecodeError> {
        let (&function, data) = pdu.split_first().ok_or(DecodeError::EmptyPdu)?;
        let function = FunctionCode(function);
        let request = request.base();
        let mut r = Reader::new(data);
        if function.is_exception() && function.base() == request {
            let code = ExceptionCode(r.u8("exception code")?);
            let extra = r.finish_or_count(lenient)?;
            return Ok((
                Self::Exception(Exception {
                    function: request,
                    code,
                }),
                extra,
            ));
        }
        if function != request {
            return Err(DecodeError::FunctionMismatch {
                request: request.0,
                response: function.0,
            });
        }
        let response = match function {
            FunctionCode::READ_COILS => Self::ReadCoils {
                values: r.counted_rest("byte count")?,
            },
            FunctionCode::READ_DISCRETE_INPUTS => Self::ReadDiscreteInputs {
                values: r.counted_rest("byte count")?,
            },
            FunctionCode::READ_HOLDING_REGISTERS => Self::ReadHoldingRegisters {
                values: even(r.counted_rest("byte count")?)?,
            },
            FunctionCode::READ_INPUT_REGISTERS => Self::ReadInputRegisters {
                values: even(r.counted_rest("byte count")?)?,
            },
            FunctionCode::WRITE_SINGLE_COIL => {
                let address = r.u16("output address")?;
                let on = coil_value(r.u16("output value")?)?;
                Self::WriteSingleCoil { address, on }
            }
            FunctionCode::WRITE_SINGLE_REGISTER => {
                let address = r.u16("register address")?;
                let value = r.u16("register value")?;
                Self::WriteSingleRegister { address, value }
            }
            FunctionCode::READ_EXCEPTION_STATUS => Self::ReadExceptionStatus {
                status: r.u8("output data")?,
            },
            FunctionCode::DIAGNOSTICS => {
                let sub_function = r.u16("sub-function")?;
                Self::Diagnostics {
                    sub_function,
                    data: r.rest(),
                }
            }
            FunctionCode::GET_COMM_EVENT_COUNTER => {
                let status = r.u16("status")?;
                let event_count = r.u16("event count")?;
                Self::GetCommEventCounter {
                    status,
                    event_count,
                }
            }
            FunctionCode::GET_COMM_EVENT_LOG => {
                let body = r.counted_rest("byte count")?;
                let mut b = Reader::new(body);
                let status = b.u16("status")?;
                let event_count = b.u16("event count")?;
                let message_count = b.u16("message count")?;
                Self::GetCommEventLog {
                    status,
                    event_count,
                    message_count,
                    events: b.rest(),
                }
            }
            FunctionCode::WRITE_MULTIPLE_COILS | FunctionCode::WRITE_MULTIPLE_REGISTERS => {
                let start = r.u16("start address")?;
                let quantity = r.u16("quantity")?;
                if function == FunctionCode::WRITE_MULTIPLE_COILS {
                    Self::WriteMultipleCoils { start, quantity }
                } else {
                    Self::WriteMultipleRegisters { start, quantity }
                }
            }
            FunctionCode::REPORT_SERVER_ID => Self::ReportServerId {
                data: r.counted_rest("byte count")?,
            },
            FunctionCode::READ_FILE_RECORD => {
                let sub_responses = r.counted_rest("response data length")?;
                let mut s = Reader::new(sub_responses);
                while s.remaining() > 0 {
                    let len = usize::from(s.u8("file response length")?);
                    let body = s.take(len, "file response")?;
                    let mut b = Reader::new(body);
                    let reference = b.u8("file reference type")?;
                    if reference != FILE_REFERENCE_TYPE {
                        return Err(DecodeError::FileReferenceType(reference));
                    }
                }
                Self::ReadFileRecord { sub_responses }
            }
            FunctionCode::WRITE_FILE_RECORD => {
                let sub_requests = r.counted_rest("response data length")?;
                check_write_file_sub_requests(sub_requests)?;
                Self::WriteFileRecord { sub_requests }
            }
            FunctionCode::MASK_WRITE_REGISTER => {
                let address = r.u16("reference address")?;
                let and_mask = r.u16("and mask")?;
                let or_mask = r.u16("or mask")?;
                Self::MaskWriteRegister {
                    address,
                    and_mask,
                    or_mask,
                }
            }
            FunctionCode::READ_WRITE_MULTIPLE_REGISTERS => Self::ReadWriteMultipleRegisters {
                values: even(r.counted_rest("byte count")?)?,
            },
            FunctionCode::READ_FIFO_QUEUE => {
                let byte_count = r.u16("byte count")?;
                if usize::from(byte_count) != r.remaining() {
                    return Err(DecodeError::ByteCountMismatch {
                        declared: usize::from(byte_count),
                        expected: r.remaining(),
                    });
                }
                let fifo_count = r.u16("fifo count")?;
                if fifo_count > MAX_FIFO_COUNT {
                    return Err(DecodeError::FifoCount(fifo_count));
                }
                let values = r.take(usize::from(fifo_count) * 2, "fifo values")?;
                Self::ReadFifoQueue { values }
            }
            FunctionCode::ENCAPSULATED_INTERFACE_TRANSPORT => {
                let mei_type = r.u8("mei type")?;
                if mei_type == MEI_READ_DEVICE_IDENTIFICATION {
                    let read_code = r.u8("read device id code")?;
                    let conformity_level = r.u8("conformity level")?;
                    let more_follows = r.u8("more follows")?;
                    let next_object_id = r.u8("next object id")?;
                    let object_count = r.u8("number of objects")?;
                    let objects = r.rest();
                    let mut seen = 0usize;
                    for object in DeviceIdObjects::new(objects) {
                        object?;
                        seen += 1;
                    }
                    if seen != usize::from(object_count) {
                        return Err(DecodeError::ByteCountMismatch {
                            declared: usize::from(object_count),
                            expected: seen,
                        });
                    }
                    Self::ReadDeviceIdentification {
                        read_code,
                        conformity_level,
                        more_follows,
                        next_object_id,
                        object_count,
                        objects,
                    }
                } else {
                    Self::EncapsulatedInterface {
                        mei_type,
                        data: r.rest(),
                    }
                }
            }
            function => Self::Other {
                function,
                data: r.rest(),
            },
        };
        let extra = r.finish_or_count(lenient)?;
        Ok((response, extra))
    }

    /// The function code the response carries (with 0x80 for exceptions).
    pub fn function(&self) -> FunctionCode {
        match self {
            Self::ReadCoils { .. } => FunctionCode::READ_COILS,
            Self::ReadDiscreteInputs { .. } => FunctionCode::READ_DISCRETE_INPUTS,
            Self::ReadHoldingRegisters { .. } => FunctionCode::READ_HOLDING_REGISTERS,
            Self::ReadInputRegisters { .. } => FunctionCode::READ_INPUT_REGISTERS,
            Self::WriteSingleCoil { .. } => FunctionCode::WRITE_SINGLE_COIL,
            Self::WriteSingleRegister { .. } => FunctionCode::WRITE_SINGLE_REGISTER,
            Self::ReadExceptionStatus { .. } => FunctionCode::READ_EXCEPTION_STATUS,
            Self::Diagnostics { .. } => FunctionCode::DIAGNOSTICS,
            Self::GetCommEventCounter { .. } => FunctionCode::GET_COMM_EVENT_COUNTER,
            Self::GetCommEventLog { .. } => FunctionCode::GET_COMM_EVENT_LOG,
            Self::WriteMultipleCoils { .. } => FunctionCode::WRITE_MULTIPLE_COILS,
            Self::WriteMultipleRegisters { .. } => FunctionCode::WRITE_MULTIPLE_REGISTERS,
            Self::ReportServerId { .. } => FunctionCode::REPORT_SERVER_ID,
            Self::ReadFileRecord { .. } => FunctionCode::READ_FILE_RECORD,
            Self::WriteFileRecord { .. } => FunctionCode::WRITE_FILE_RECORD,
            Self::MaskWriteRegister { .. } => FunctionCode::MASK_WRITE_REGISTER,
            Self::ReadWriteMultipleRegisters { .. } => FunctionCode::READ_WRITE_MULTIPLE_REGISTERS,
            Self::ReadFifoQueue { .. } => FunctionCode::READ_FIFO_QUEUE,
            Self::ReadDeviceIdentification { .. } | Self::EncapsulatedInterface { .. } => {
                FunctionCode::ENCAPSULATED_INTERFACE_TRANSPORT
            }
            Self::Other { function, .. } => *function,
            Self::Exception(e) => e.function.exception(),
        }
    }

    /// The exception code, when this is an exception response.
    pub fn exception(&self) -> Option<ExceptionCode> {
        match self {
            Self::Exception(e) => Some(e.code),
            _ => None,
        }
    }

    /// The PDU length `emit` writes.
    pub fn buffer_len(&self) -> usize {
        1 + match self {
            Self::ReadCoils { values }
            | Self::ReadDiscreteInputs { values }
            | Self::ReadHoldingRegisters { values }
            | Self::ReadInputRegisters { values }
            | Self::ReadWriteMultipleRegisters { values } => 1 + values.len(),
            Self::WriteSingleCoil { .. }
            | Self::WriteSingleRegister { .. }
            | Self::GetCommEventCounter { .. }
            | Self::WriteMultipleCoils { .. }
            | Self::WriteMultipleRegisters { .. } => 4,
            Self::ReadExceptionStatus { .. } | Self::Exception(_) => 1,
            Self::Diagnostics { data, .. } => 2 + data.len(),
            Self::GetCommEventLog { events, .. } => 7 + events.len(),
            Self::ReportServerId { data } => 1 + data.len(),
            Self::ReadFileRecord { sub_responses: d }
            | Self::WriteFileRecord { sub_requests: d } => 1 + d.len(),
            Self::MaskWriteRegister { .. } => 6,
            Self::ReadFifoQueue { values } => 4 + values.len(),
            Self::ReadDeviceIdentification { objects, .. } => 6 + objects.len(),
            Self::EncapsulatedInterface { data, .. } => 1 + data.len(),
            Self::Other { data, .. } => data.len(),
        }
    }

    /// Writes the PDU into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let needed = self.buffer_len();
        if buf.len() < needed {
            return Err(EmitError::BufferTooSmall {
                needed,
                available: buf.len(),
            });
        }
        let mut w = Writer::new(buf);
        w.u8(self.function().0)?;
        match *self {
            Self::ReadCoils { values }
            | Self::ReadDiscreteInputs { values }
            | Self::ReadHoldingRegisters { values }
            | Self::ReadInputRegisters { values }
            | Self::ReadWriteMultipleRegisters { values } => {
                w.count("values", values.len())?;
                w.bytes(values)?;
            }
            Self::WriteSingleCoil { address, on } => {
                w.u16(address)?;
                w.u16(if on { COIL_ON } else { COIL_OFF })?;
            }
            Self::WriteSingleRegister {
                address,
                value: second,
            }
            | Self::GetCommEventCounter {
                status: address,
                event_count: second,
            }
            | Self::WriteMultipleCoils {
                start: address,
                quantity: second,
            }
            | Self::WriteMultipleRegisters {
                start: address,
                quantity: second,
            } => {
                w.u16(address)?;
                w.u16(second)?;
            }
            Self::ReadExceptionStatus { status } => w.u8(status)?,
            Self::Exception(e) => w.u8(e.code.0)?,
            Self::Diagnostics { sub_function, data } => {
                w.u16(sub_function)?;
                w.bytes(data)?;
            }
            Self::GetCommEventLog {
                status,
                event_count,
                message_count,
                events,
            } => {
                w.count("events", 6 + events.len())?;
                w.u16(status)?;
                w.u16(event_count)?;
                w.u16(message_count)?;
                w.bytes(events)?;
            }
            Self::ReportServerId { data }
            | Self::ReadFileRecord {
                sub_responses: data,
            }
            | Self::WriteFileRecord { sub_requests: data } => {
                w.count("data", data.len())?;
                w.bytes(data)?;
            }
            Self::MaskWriteRegister {
                address,
                and_mask,
                or_mask,
            } => {
                w.u16(address)?;
                w.u16(and_mask)?;
                w.u16(or_mask)?;
            }
            Self::ReadFifoQueue { values } => {
                let fifo_count = values.len() / 2;
                let byte_count =
                    u16::try_from(2 + values.len()).map_err(|_| EmitError::TooLong {
                        field: "values",
                        len: values.len(),
                        max: 62,
                    })?;
                w.u16(byte_count)?;
                w.u16(u16::try_from(fifo_count).unwrap_or(u16::MAX))?;
                w.bytes(values)?;
            }
            Self::ReadDeviceIdentification {
                read_code,
                conformity_level,
                more_follows,
                next_object_id,
                object_count,
                objects,
            } => {
                w.bytes(&[
                    MEI_READ_DEVICE_IDENTIFICATION,
                    read_code,
                    conformity_level,
                    more_follows,
                    next_object_id,
                    object_count,
                ])?;
                w.bytes(objects)?;
            }
            Self::EncapsulatedInterface { mei_type, data } => {
                w.u8(mei_type)?;
                w.bytes(data)?;
            }
            Self::Other { data, .. } => w.bytes(data)?,
        }
        Ok(w.pos)
    }

    /// Checks that this response fits `request`: read byte counts match the quantities asked,
    /// write echoes repeat the request's fields. The inspector flags a failure as
    /// [`Anomalies::RESPONSE_MISMATCH`]; the broker may refuse to pass it on.
    pub fn check_against(&self, request: &Request<'_>) -> Result<(), DecodeError> {
        let expect_len = |actual: usize, expected: usize| {
            if actual == expected {
                Ok(())
            } else {
                Err(DecodeError::ByteCountMismatch {
                    declared: actual,
                    expected,
                })
            }
        };
        if let Self::Exception(e) = self {
            return if e.function == request.function() {
                Ok(())
            } else {
                Err(DecodeError::FunctionMismatch {
                    request: request.function().0,
                    response: e.function.0,
                })
            };
        }
        if self.function() != request.function() {
            return Err(DecodeError::FunctionMismatch {
                request: request.function().0,
                response: self.function().0,
            });
        }
        match (self, request) {
            (Self::ReadCoils { values }, Request::ReadCoils { quantity, .. })
            | (Self::ReadDiscreteInputs { values }, Request::ReadDiscreteInputs { quantity, .. }) => {
                expect_len(values.len(), packed_len(*quantity))
            }
            (
                Self::ReadHoldingRegisters { values },
                Request::ReadHoldingRegisters { quantity, .. },
            )
            | (Self::ReadInputRegisters { values }, Request::ReadInputRegisters { quantity, .. })
            | (
                Self::ReadWriteMultipleRegisters { values },
                Request::ReadWriteMultipleRegisters {
                    read_quantity: quantity,
                    ..
                },
            ) => expect_len(values.len(), usize::from(*quantity) * 2),
            (
                Self::WriteSingleCoil { address, on },
                Request::WriteSingleCoil { address: a, on: o },
            ) => echo(address == a && on == o, request.function()),
            (
                Self::WriteSingleRegister { address, value },
                Request::WriteSingleRegister {
                    address: a,
                    value: v,
                },
            ) => echo(address == a && value == v, request.function()),
            (
                Self::WriteMultipleCoils { start, quantity },
                Request::WriteMultipleCoils {
                    start: s,
                    quantity: q,
                    ..
                },
            )
            | (
                Self::WriteMultipleRegisters { start, quantity },
                Request::WriteMultipleRegisters {
                    start: s,
                    quantity: q,
                    ..
                },
            ) => echo(start == s && quantity == q, request.function()),
            (
                Self::MaskWriteRegister {
                    address,
                    and_mask,
                    or_mask,
                },
                Request::MaskWriteRegister {
                    address: a,
                    and_mask: m,
                    or_mask: o,
                },
            ) => echo(
                address == a && and_mask == m && or_mask == o,
                request.function(),
            ),
            (
                Self::Diagnostics { sub_function, .. },
                Request::Diagnostics {
                    sub_function: s, ..
                },
            ) => echo(sub_function == s, request.function()),
            _ => Ok(()),
        }
    }
}

fn echo(matches: bool, function: FunctionCode) -> Result<(), DecodeError> {
    if matches {
        Ok(())
    } else {
        Err(DecodeError::EchoMismatch {
            function: function.0,
        })
    }
}

fn even(values: &[u8]) -> Result<&[u8], DecodeError> {
    if values.len() % 2 == 0 {
        Ok(values)
    } else {
        Err(DecodeError::ByteCountMismatch {
            declared: values.len(),
            expected: values.len() + 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A named request ADU and what it decodes to.
    type RequestCase = (
        &'static str,
        &'static [u8],
        Result<Request<'static>, DecodeError>,
    );
    /// A named response PDU to a request function and what it decodes to.
    type ResponseCase = (
        &'static str,
        FunctionCode,
        &'static [u8],
        Result<Response<'static>, DecodeError>,
    );

    /// Runs one annotated ADU through the strict path: `new_checked`, `Request::parse`, and
    /// for a good request `emit_adu` back to the same bytes.
    fn check(name: &str, adu: &[u8], expected: Result<Request<'static>, DecodeError>) {
        let decoded =
            Adu::new_checked(adu).and_then(|adu| Request::parse(adu.pdu()).map(|r| (adu, r)));
        match (&decoded, &expected) {
            (Ok((frame, request)), Ok(want)) => {
                assert_eq!(request, want, "{name}");
                let mut buf = [0u8; MAX_ADU_LEN];
                let n = request
                    .emit_adu(frame.transaction_id(), frame.unit_id(), &mut buf)
                    .unwrap();
                assert_eq!(&buf[..n], adu, "{name}: emit round trip");
                assert_eq!(
                    request.buffer_len(),
                    frame.pdu().len(),
                    "{name}: buffer_len"
                );
                assert_eq!(
                    frame_len(adu),
                    FrameStatus::Complete(adu.len()),
                    "{name}: frame_len"
                );
            }
            (Err(got), Err(want)) => assert_eq!(got, want, "{name}"),
            _ => panic!("{name}: got {decoded:?}, want {expected:?}"),
        }
    }

    #[rustfmt::skip]
    #[test]
    fn requests() {
        use DecodeError as E;
        use Request as R;
        let cases: &[RequestCase] = &[
            ("fc3 read 100..109",
             &[0x00, 0x01, /* tid */ 0x00, 0x00, /* proto */ 0x00, 0x06, /* len */ 0x01, /* unit */
               0x03, 0x00, 0x64, /* start 100 */ 0x00, 0x0A /* qty 10 */],
             Ok(R::ReadHoldingRegisters { start: 100, quantity: 10 })),
            ("fc3 quantity 0",
             &[0, 1, 0, 0, 0, 6, 1, 0x03, 0x00, 0x64, 0x00, 0x00],
             Err(E::QuantityOutOfRange { quantity: 0, max: 125 })),
            ("fc3 quantity 126",
             &[0, 1, 0, 0, 0, 6, 1, 0x03, 0x00, 0x00, 0x00, 0x7E],
             Err(E::QuantityOutOfRange { quantity: 126, max: 125 })),
            ("fc3 runs past 65535",
             &[0, 1, 0, 0, 0, 6, 1, 0x03, 0xFF, 0xFA, /* 65530 */ 0x00, 0x0A],
             Err(E::AddressOverflow { start: 65530, quantity: 10 })),
            ("fc3 ends exactly at 65535",
             &[0, 1, 0, 0, 0, 6, 1, 0x03, 0xFF, 0xF6, /* 65526 */ 0x00, 0x0A],
             Ok(R::ReadHoldingRegisters { start: 65526, quantity: 10 })),
            ("fc3 missing quantity",
             &[0, 1, 0, 0, 0, 4, 1, 0x03, 0x00, 0x64],
             Err(E::Truncated { field: "quantity", needed: 2, available: 0 })),
            ("fc3 trailing byte",
             &[0, 1, 0, 0, 0, 7, 1, 0x03, 0x00, 0x64, 0x00, 0x01, 0xAA],
             Err(E::TrailingBytes { extra: 1 })),
            ("fc1 2000 coils",
             &[0, 2, 0, 0, 0, 6, 1, 0x01, 0x00, 0x00, 0x07, 0xD0],
             Ok(R::ReadCoils { start: 0, quantity: 2000 })),
            ("fc1 2001 coils",
             &[0, 2, 0, 0, 0, 6, 1, 0x01, 0x00, 0x00, 0x07, 0xD1],
             Err(E::QuantityOutOfRange { quantity: 2001, max: 2000 })),
            ("fc2 inputs",
             &[0, 2, 0, 0, 0, 6, 1, 0x02, 0x00, 0x10, 0x00, 0x08],
             Ok(R::ReadDiscreteInputs { start: 16, quantity: 8 })),
            ("fc4 input registers",
             &[0, 2, 0, 0, 0, 6, 9, 0x04, 0x00, 0x10, 0x00, 0x7D],
             Ok(R::ReadInputRegisters { start: 16, quantity: 125 })),
            ("fc5 coil on",
             &[0, 3, 0, 0, 0, 6, 1, 0x05, 0x00, 0xAC, 0xFF, 0x00],
             Ok(R::WriteSingleCoil { address: 172, on: true })),
            ("fc5 coil off",
             &[0, 3, 0, 0, 0, 6, 1, 0x05, 0x00, 0xAC, 0x00, 0x00],
             Ok(R::WriteSingleCoil { address: 172, on: false })),
            ("fc5 coil value neither on nor off",
             &[0, 3, 0, 0, 0, 6, 1, 0x05, 0x00, 0xAC, 0x12, 0x34],
             Err(E::CoilValue(0x1234))),
            ("fc6 write 0x0003 to 1",
             &[0, 4, 0, 0, 0, 6, 1, 0x06, 0x00, 0x01, 0x00, 0x03],
             Ok(R::WriteSingleRegister { address: 1, value: 3 })),
            ("fc7 read exception status",
             &[0, 5, 0, 0, 0, 2, 1, 0x07],
             Ok(R::ReadExceptionStatus)),
            ("fc7 with a stray byte",
             &[0, 5, 0, 0, 0, 3, 1, 0x07, 0x00],
             Err(E::TrailingBytes { extra: 1 })),
            ("fc8 restart communications",
             &[0, 6, 0, 0, 0, 6, 1, 0x08, 0x00, 0x01, /* sub 1 */ 0xFF, 0x00],
             Ok(R::Diagnostics { sub_function: 1, data: &[0xFF, 0x00] })),
            ("fc8 truncated sub-function",
             &[0, 6, 0, 0, 0, 3, 1, 0x08, 0x00],
             Err(E::Truncated { field: "sub-function", needed: 2, available: 1 })),
            ("fc11", &[0, 7, 0, 0, 0, 2, 1, 0x0B], Ok(R::GetCommEventCounter)),
            ("fc12", &[0, 7, 0, 0, 0, 2, 1, 0x0C], Ok(R::GetCommEventLog)),
            ("fc17", &[0, 7, 0, 0, 0, 2, 1, 0x11], Ok(R::ReportServerId)),
            ("fc15 ten coils",
             &[0, 8, 0, 0, 0, 9, 1, 0x0F, 0x00, 0x13, /* start 19 */ 0x00, 0x0A, /* qty 10 */
               0x02, /* byte count */ 0xCD, 0x01],
             Ok(R::WriteMultipleCoils { start: 19, quantity: 10, values: &[0xCD, 0x01] })),
            ("fc15 byte count 3 for ten coils",
             &[0, 8, 0, 0, 0, 10, 1, 0x0F, 0x00, 0x13, 0x00, 0x0A, 0x03, 0xCD, 0x01, 0x00],
             Err(E::ByteCountMismatch { declared: 3, expected: 2 })),
            ("fc15 1969 coils",
             &[0, 8, 0, 0, 0, 9, 1, 0x0F, 0x00, 0x13, 0x07, 0xB1, 0x02, 0xCD, 0x01],
             Err(E::QuantityOutOfRange { quantity: 1969, max: 1968 })),
            ("fc16 two registers",
             &[0, 9, 0, 0, 0, 11, 1, 0x10, 0x00, 0x64, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02],
             Ok(R::WriteMultipleRegisters { start: 100, quantity: 2, values: &[0x00, 0x0A, 0x01, 0x02] })),
            ("fc16 byte count says 4, 3 bytes follow",
             &[0, 9, 0, 0, 0, 10, 1, 0x10, 0x00, 0x64, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01],
             Err(E::ByteCountMismatch { declared: 4, expected: 3 })),
            ("fc16 quantity 2 with 6 value bytes",
             &[0, 9, 0, 0, 0, 13, 1, 0x10, 0x00, 0x64, 0x00, 0x02, 0x06, 0, 1, 0, 2, 0, 3],
             Err(E::ByteCountMismatch { declared: 6, expected: 4 })),
            ("fc16 quantity 124",
             &[0, 9, 0, 0, 0, 9, 1, 0x10, 0x00, 0x64, 0x00, 0x7C, 0x02, 0, 1],
             Err(E::QuantityOutOfRange { quantity: 124, max: 123 })),
            ("fc16 straddles 65535",
             &[0, 9, 0, 0, 0, 11, 1, 0x10, 0xFF, 0xFF, 0x00, 0x02, 0x04, 0, 1, 0, 2],
             Err(E::AddressOverflow { start: 65535, quantity: 2 })),
            ("fc20 one sub-request",
             &[0, 10, 0, 0, 0, 10, 1, 0x14, 0x07, /* byte count */
               0x06, 0x00, 0x04, /* file 4 */ 0x00, 0x01, /* record 1 */ 0x00, 0x02 /* len 2 */],
             Ok(R::ReadFileRecord { sub_requests: &[0x06, 0x00, 0x04, 0x00, 0x01, 0x00, 0x02] })),
            ("fc20 reference type 5",
             &[0, 10, 0, 0, 0, 10, 1, 0x14, 0x07, 0x05, 0x00, 0x04, 0x00, 0x01, 0x00, 0x02],
             Err(E::FileReferenceType(5))),
            ("fc20 record number 10000",
             &[0, 10, 0, 0, 0, 10, 1, 0x14, 0x07, 0x06, 0x00, 0x04, 0x27, 0x10, 0x00, 0x02],
             Err(E::FileRecordNumber(10000))),
            ("fc21 one record",
             &[0, 11, 0, 0, 0, 12, 1, 0x15, 0x09, 0x06, 0x00, 0x04, 0x00, 0x07, 0x00, 0x01, 0x06, 0xAF],
             Ok(R::WriteFileRecord { sub_requests: &[0x06, 0x00, 0x04, 0x00, 0x07, 0x00, 0x01, 0x06, 0xAF] })),
            ("fc21 record length says 2, 1 register follows",
             &[0, 11, 0, 0, 0, 12, 1, 0x15, 0x09, 0x06, 0x00, 0x04, 0x00, 0x07, 0x00, 0x02, 0x06, 0xAF],
             Err(E::Truncated { field: "file record data", needed: 4, available: 2 })),
            ("fc22 mask write",
             &[0, 12, 0, 0, 0, 8, 1, 0x16, 0x00, 0x04, 0x00, 0xF2, 0x00, 0x25],
             Ok(R::MaskWriteRegister { address: 4, and_mask: 0xF2, or_mask: 0x25 })),
            ("fc23 read 6 from 3, write 3 at 14",
             &[0, 13, 0, 0, 0, 17, 1, 0x17, 0x00, 0x03, 0x00, 0x06, 0x00, 0x0E, 0x00, 0x03, 0x06,
               0x00, 0xFF, 0x00, 0xFF, 0x00, 0xFF],
             Ok(R::ReadWriteMultipleRegisters { read_start: 3, read_quantity: 6, write_start: 14,
                 write_quantity: 3, values: &[0x00, 0xFF, 0x00, 0xFF, 0x00, 0xFF] })),
            ("fc23 write quantity 122",
             &[0, 13, 0, 0, 0, 13, 1, 0x17, 0x00, 0x03, 0x00, 0x06, 0x00, 0x0E, 0x00, 0x7A, 0x02, 0, 1],
             Err(E::QuantityOutOfRange { quantity: 122, max: 121 })),
            ("fc23 read quantity 0",
             &[0, 13, 0, 0, 0, 13, 1, 0x17, 0x00, 0x03, 0x00, 0x00, 0x00, 0x0E, 0x00, 0x01, 0x02, 0, 1],
             Err(E::QuantityOutOfRange { quantity: 0, max: 125 })),
            ("fc24 fifo",
             &[0, 14, 0, 0, 0, 4, 1, 0x18, 0x04, 0xDE],
             Ok(R::ReadFifoQueue { address: 0x04DE })),
            ("fc43 mei 14 basic device id",
             &[0, 15, 0, 0, 0, 5, 1, 0x2B, 0x0E, 0x01, 0x00],
             Ok(R::ReadDeviceIdentification { read_code: 1, object_id: 0 })),
            ("fc43 mei 14 read code 5",
             &[0, 15, 0, 0, 0, 5, 1, 0x2B, 0x0E, 0x05, 0x00],
             Err(E::ReadDeviceIdCode(5))),
            ("fc43 mei 13 canopen",
             &[0, 15, 0, 0, 0, 5, 1, 0x2B, 0x0D, 0x01, 0x02],
             Ok(R::EncapsulatedInterface { mei_type: 0x0D, data: &[0x01, 0x02] })),
            ("fc43 without mei type",
             &[0, 15, 0, 0, 0, 2, 1, 0x2B],
             Err(E::Truncated { field: "mei type", needed: 1, available: 0 })),
            ("fc90 umas stays raw",
             &[0, 16, 0, 0, 0, 5, 0, 0x5A, 0x00, 0x02, 0x01],
             Ok(R::Other { function: FunctionCode::UMAS, data: &[0x00, 0x02, 0x01] })),
            ("fc65 vendor code without data",
             &[0, 16, 0, 0, 0, 2, 0, 0x41],
             Ok(R::Other { function: FunctionCode(0x41), data: &[] })),
            ("function 0",
             &[0, 17, 0, 0, 0, 2, 1, 0x00],
             Err(E::IllegalFunction(0))),
            ("exception code as a request",
             &[0, 17, 0, 0, 0, 3, 1, 0x83, 0x02],
             Err(E::IllegalFunction(0x83))),
            // MBAP header faults.
            ("protocol id 1",
             &[0, 18, 0x00, 0x01, 0, 6, 1, 0x03, 0, 0, 0, 1],
             Err(E::ProtocolId(1))),
            ("length 0",
             &[0, 18, 0, 0, 0x00, 0x00, 1, 0x03, 0, 0, 0, 1],
             Err(E::LengthOutOfRange { length: 0 })),
            ("length 1 (unit id only)",
             &[0, 18, 0, 0, 0x00, 0x01, 1, 0x03],
             Err(E::LengthOutOfRange { length: 1 })),
            ("length 255",
             &[0, 18, 0, 0, 0x00, 0xFF, 1, 0x03, 0, 0, 0, 1],
             Err(E::LengthOutOfRange { length: 255 })),
            ("length says 7, 6 bytes follow",
             &[0, 18, 0, 0, 0x00, 0x07, 1, 0x03, 0, 0, 0, 1],
             Err(E::LengthMismatch { declared: 7, actual: 6 })),
            ("length says 5, 6 bytes follow",
             &[0, 18, 0, 0, 0x00, 0x05, 1, 0x03, 0, 0, 0, 1],
             Err(E::LengthMismatch { declared: 5, actual: 6 })),
            ("header only",
             &[0, 18, 0, 0, 0, 2, 1],
             Err(E::Truncated { field: "mbap header", needed: 8, available: 7 })),
            ("three bytes",
             &[0, 18, 0],
             Err(E::Truncated { field: "mbap header", needed: 8, available: 3 })),
        ];
        for (name, adu, expected) in cases {
            check(name, adu, *expected);
        }
    }

    #[test]
    fn frame_len_reads_only_the_header() {
        let cases: &[(&str, &[u8], FrameStatus)] = &[
            ("empty", &[], FrameStatus::NeedMore),
            ("transaction id only", &[0, 1], FrameStatus::NeedMore),
            (
                "bad protocol id seen at 4 bytes",
                &[0, 1, 0x12, 0x34],
                FrameStatus::Invalid(DecodeError::ProtocolId(0x1234)),
            ),
            ("no length yet", &[0, 1, 0, 0, 0], FrameStatus::NeedMore),
            (
                "length 0 seen at 6 bytes",
                &[0, 1, 0, 0, 0, 0],
                FrameStatus::Invalid(DecodeError::LengthOutOfRange { length: 0 }),
            ),
            (
                "length 300",
                &[0, 1, 0, 0, 0x01, 0x2C],
                FrameStatus::Invalid(DecodeError::LengthOutOfRange { length: 300 }),
            ),
            (
                "length 6, 3 bytes of it",
                &[0, 1, 0, 0, 0, 6, 1, 3, 0],
                FrameStatus::NeedMore,
            ),
            (
                "length 6, all there",
                &[0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 1],
                FrameStatus::Complete(12),
            ),
            (
                "length 6 and the next frame's start",
                &[0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 1, 0, 2],
                FrameStatus::Complete(12),
            ),
            ("largest frame", &[0; 0][..], FrameStatus::NeedMore),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(frame_len(bytes), *want, "{name}");
        }
        let mut big = [0u8; 300];
        big[5] = 254;
        assert_eq!(frame_len(&big), FrameStatus::Complete(MAX_ADU_LEN));
        assert_eq!(frame_len(&big[..259]), FrameStatus::NeedMore);
    }

    #[test]
    fn exception_codes_for_decode_errors() {
        let cases = [
            (
                DecodeError::IllegalFunction(0x83),
                ExceptionCode::ILLEGAL_FUNCTION,
            ),
            (DecodeError::EmptyPdu, ExceptionCode::ILLEGAL_FUNCTION),
            (
                DecodeError::AddressOverflow {
                    start: 65535,
                    quantity: 2,
                },
                ExceptionCode::ILLEGAL_DATA_ADDRESS,
            ),
            (
                DecodeError::FileReferenceType(5),
                ExceptionCode::ILLEGAL_DATA_ADDRESS,
            ),
            (
                DecodeError::QuantityOutOfRange {
                    quantity: 0,
                    max: 125,
                },
                ExceptionCode::ILLEGAL_DATA_VALUE,
            ),
            (
                DecodeError::ByteCountMismatch {
                    declared: 3,
                    expected: 2,
                },
                ExceptionCode::ILLEGAL_DATA_VALUE,
            ),
            (DecodeError::CoilValue(1), ExceptionCode::ILLEGAL_DATA_VALUE),
            (
                DecodeError::TrailingBytes { extra: 1 },
                ExceptionCode::ILLEGAL_DATA_VALUE,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(ExceptionCode::from(error), code, "{error}");
        }
        let e = Exception::new(
            FunctionCode::WRITE_MULTIPLE_REGISTERS,
            ExceptionCode::ILLEGAL_DATA_ADDRESS,
        );
        assert_eq!(e.adu(0x1234, 7), [0x12, 0x34, 0, 0, 0, 3, 7, 0x90, 0x02]);
        let adu = e.adu(0x1234, 7);
        let frame = Adu::new_checked(&adu).unwrap();
        assert_eq!(
            Response::parse(FunctionCode::WRITE_MULTIPLE_REGISTERS, frame.pdu()),
            Ok(Response::Exception(e))
        );
    }

    fn one(ops: &heapless::Vec<ModbusOp, 2>) -> ModbusOp {
        assert_eq!(ops.len(), 1, "{ops:?}");
        ops[0]
    }

    #[test]
    fn ops_for_the_policy_engine() {
        let read = one(&Request::ReadHoldingRegisters {
            start: 100,
            quantity: 10,
        }
        .ops(3));
        assert_eq!(
            read,
            ModbusOp {
                unit: 3,
                function: 3,
                sub_function: None,
                class: ModbusClass::Read,
                access: Access::Read,
                table: Some(Table::HoldingRegisters),
                range: Some(AddressRange::new(100, 109).unwrap()),
            }
        );

        let straddle = one(&Request::WriteMultipleRegisters {
            start: 195,
            quantity: 10,
            values: &[0; 20],
        }
        .ops(1));
        assert_eq!(straddle.range, Some(AddressRange::new(195, 204).unwrap()));
        assert_eq!(
            (straddle.class, straddle.access),
            (ModbusClass::Write, Access::Write)
        );

        let both = Request::ReadWriteMultipleRegisters {
            read_start: 3,
            read_quantity: 6,
            write_start: 14,
            write_quantity: 3,
            values: &[0; 6],
        }
        .ops(1);
        assert_eq!(both.len(), 2);
        assert_eq!(
            (both[0].class, both[0].access),
            (ModbusClass::Read, Access::Read)
        );
        assert_eq!(both[0].range, Some(AddressRange::new(3, 8).unwrap()));
        assert_eq!(
            (both[1].class, both[1].access),
            (ModbusClass::Write, Access::Write)
        );
        assert_eq!(both[1].range, Some(AddressRange::new(14, 16).unwrap()));
        assert_eq!(both[1].function, 23);

        let mask = one(&Request::MaskWriteRegister {
            address: 4,
            and_mask: 0,
            or_mask: 0,
        }
        .ops(1));
        assert_eq!(
            (mask.access, mask.table, mask.range),
            (
                Access::Write,
                Some(Table::HoldingRegisters),
                Some(AddressRange::single(4))
            )
        );

        let coil = one(&Request::WriteSingleCoil {
            address: 9,
            on: true,
        }
        .ops(1));
        assert_eq!(
            (coil.access, coil.table),
            (Access::Write, Some(Table::Coils))
        );

        let restart = one(&Request::Diagnostics {
            sub_function: 1,
            data: &[0, 0],
        }
        .ops(1));
        assert_eq!(
            (restart.class, restart.access, restart.sub_function),
            (ModbusClass::Diagnostics, Access::Write, Some(1))
        );
        let listen_only = one(&Request::Diagnostics {
            sub_function: 4,
            data: &[0, 0],
        }
        .ops(1));
        assert_eq!(listen_only.access, Access::Write);
        let echo = one(&Request::Diagnostics {
            sub_function: 0,
            data: &[0xA5, 0x37],
        }
        .ops(1));
        assert_eq!(
            (echo.class, echo.access, echo.table),
            (ModbusClass::Diagnostics, Access::Read, None)
        );

        let device_id = one(&Request::ReadDeviceIdentification {
            read_code: 1,
            object_id: 0,
        }
        .ops(1));
        assert_eq!(
            (device_id.class, device_id.access, device_id.sub_function),
            (ModbusClass::DeviceId, Access::Read, Some(14))
        );
        let canopen = one(&Request::EncapsulatedInterface {
            mei_type: 13,
            data: &[],
        }
        .ops(1));
        assert_eq!(
            (canopen.class, canopen.access, canopen.sub_function),
            (ModbusClass::Program, Access::Write, Some(13))
        );

        let umas = one(&Request::Other {
            function: FunctionCode::UMAS,
            data: &[0, 2],
        }
        .ops(0));
        assert_eq!(
            (umas.class, umas.access, umas.function, umas.unit),
            (ModbusClass::Program, Access::Write, 90, 0)
        );

        let fifo = one(&Request::ReadFifoQueue { address: 7 }.ops(1));
        assert_eq!(
            (fifo.access, fifo.table),
            (Access::Read, Some(Table::FifoQueue))
        );
        let file = one(&Request::WriteFileRecord { sub_requests: &[] }.ops(1));
        assert_eq!(
            (file.access, file.table, file.class),
            (Access::Write, Some(Table::FileRecords), ModbusClass::Write)
        );
    }

    #[rustfmt::skip]
    #[test]
    fn responses() {
        use Response as P;
        let cases: &[ResponseCase] = &[
            ("fc3 two registers", FunctionCode(3), &[0x03, 0x04, 0x02, 0x2B, 0x00, 0x00],
             Ok(P::ReadHoldingRegisters { values: &[0x02, 0x2B, 0x00, 0x00] })),
            ("fc3 odd byte count", FunctionCode(3), &[0x03, 0x03, 0x02, 0x2B, 0x00],
             Err(DecodeError::ByteCountMismatch { declared: 3, expected: 4 })),
            ("fc3 byte count lies", FunctionCode(3), &[0x03, 0x06, 0x02, 0x2B, 0x00, 0x00],
             Err(DecodeError::ByteCountMismatch { declared: 6, expected: 4 })),
            ("fc1 coils", FunctionCode(1), &[0x01, 0x01, 0x05], Ok(P::ReadCoils { values: &[0x05] })),
            ("fc3 exception 02", FunctionCode(3), &[0x83, 0x02],
             Ok(P::Exception(Exception::new(FunctionCode(3), ExceptionCode::ILLEGAL_DATA_ADDRESS)))),
            ("fc3 answered by fc4", FunctionCode(3), &[0x04, 0x02, 0x00, 0x01],
             Err(DecodeError::FunctionMismatch { request: 3, response: 4 })),
            ("fc6 echo", FunctionCode(6), &[0x06, 0x00, 0x01, 0x00, 0x03],
             Ok(P::WriteSingleRegister { address: 1, value: 3 })),
            ("fc16 echo", FunctionCode(16), &[0x10, 0x00, 0x01, 0x00, 0x02],
             Ok(P::WriteMultipleRegisters { start: 1, quantity: 2 })),
            ("fc7 status", FunctionCode(7), &[0x07, 0x6D], Ok(P::ReadExceptionStatus { status: 0x6D })),
            ("fc11 counter", FunctionCode(11), &[0x0B, 0xFF, 0xFF, 0x01, 0x08],
             Ok(P::GetCommEventCounter { status: 0xFFFF, event_count: 0x0108 })),
            ("fc12 log", FunctionCode(12), &[0x0C, 0x08, 0x00, 0x00, 0x01, 0x08, 0x01, 0x21, 0x20, 0x00],
             Ok(P::GetCommEventLog { status: 0, event_count: 0x108, message_count: 0x121, events: &[0x20, 0x00] })),
            ("fc17 server id", FunctionCode(17), &[0x11, 0x02, 0x01, 0xFF],
             Ok(P::ReportServerId { data: &[0x01, 0xFF] })),
            ("fc20 one sub-response", FunctionCode(20), &[0x14, 0x06, 0x05, 0x06, 0x0D, 0xFE, 0x00, 0x20],
             Ok(P::ReadFileRecord { sub_responses: &[0x05, 0x06, 0x0D, 0xFE, 0x00, 0x20] })),
            ("fc24 two values", FunctionCode(24), &[0x18, 0x00, 0x06, 0x00, 0x02, 0x01, 0xB8, 0x12, 0x84],
             Ok(P::ReadFifoQueue { values: &[0x01, 0xB8, 0x12, 0x84] })),
            ("fc24 fifo count 32", FunctionCode(24), &[0x18, 0x00, 0x02, 0x00, 0x20],
             Err(DecodeError::FifoCount(32))),
            ("fc43/14 one object", FunctionCode(43), &[0x2B, 0x0E, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x03, b'A', b'C', b'M'],
             Ok(P::ReadDeviceIdentification { read_code: 1, conformity_level: 1, more_follows: 0, next_object_id: 0,
                 object_count: 1, objects: &[0x00, 0x03, b'A', b'C', b'M'] })),
            ("fc43/14 object length lies", FunctionCode(43), &[0x2B, 0x0E, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x09, b'A'],
             Err(DecodeError::Truncated { field: "object value", needed: 9, available: 1 })),
            ("fc90 raw", FunctionCode(90), &[0x5A, 0x00, 0xFE], Ok(P::Other { function: FunctionCode(90), data: &[0x00, 0xFE] })),
            ("empty", FunctionCode(3), &[], Err(DecodeError::EmptyPdu)),
            ("exception without code", FunctionCode(3), &[0x83], Err(DecodeError::Truncated { field: "exception code", needed: 1, available: 0 })),
        ];
        for (name, function, pdu, expected) in cases {
            let got = Response::parse(*function, pdu);
            assert_eq!(&got, expected, "{name}");
            if let Ok(response) = got {
                let mut buf = [0u8; MAX_PDU_LEN];
                let n = response.emit(&mut buf).unwrap();
                assert_eq!(&buf[..n], *pdu, "{name}: emit round trip");
                assert_eq!(response.buffer_len(), n, "{name}: buffer_len");
            }
        }
    }

    #[test]
    fn responses_checked_against_requests() {
        let request = Request::ReadHoldingRegisters {
            start: 0,
            quantity: 2,
        };
        assert_eq!(
            Response::ReadHoldingRegisters {
                values: &[0, 1, 0, 2]
            }
            .check_against(&request),
            Ok(())
        );
        assert_eq!(
            Response::ReadHoldingRegisters { values: &[0, 1] }.check_against(&request),
            Err(DecodeError::ByteCountMismatch {
                declared: 2,
                expected: 4
            })
        );
        let write = Request::WriteSingleRegister {
            address: 1,
            value: 3,
        };
        assert_eq!(
            Response::WriteSingleRegister {
                address: 1,
                value: 4
            }
            .check_against(&write),
            Err(DecodeError::EchoMismatch { function: 6 })
        );
        let exception = Response::Exception(Exception::new(
            FunctionCode(6),
            ExceptionCode::ILLEGAL_DATA_ADDRESS,
        ));
        assert_eq!(exception.check_against(&write), Ok(()));
        assert!(exception.check_against(&request).is_err());
    }

    #[test]
    fn lenient_view_keeps_lying_frames() {
        // Protocol id 1 and a length that says 9 where 6 bytes follow.
        let frame = [0, 1, 0, 1, 0, 9, 1, 0x03, 0, 0, 0, 1];
        assert!(Adu::new_checked(&frame).is_err());
        let (adu, anomalies) = Adu::new_lenient(&frame).unwrap();
        assert!(anomalies.contains(Anomalies::PROTOCOL_ID | Anomalies::LENGTH_MISMATCH));
        assert_eq!(adu.pdu(), &[0x03, 0, 0, 0, 1]);
        assert_eq!(
            anomalies.names().collect::<Vec<_>>(),
            ["protocol_id", "length_mismatch"]
        );
        // A length that is shorter than what is there cuts the PDU.
        let (adu, anomalies) = Adu::new_lenient(&[0, 1, 0, 0, 0, 2, 1, 0x5A, 0xFF]).unwrap();
        assert_eq!(adu.pdu(), &[0x5A]);
        assert!(anomalies.contains(Anomalies::VENDOR_FUNCTION | Anomalies::LENGTH_MISMATCH));
        // An exception response is flagged.
        let (_, anomalies) = Adu::new_lenient(&[0, 1, 0, 0, 0, 3, 1, 0x83, 0x02]).unwrap();
        assert_eq!(anomalies, Anomalies::EXCEPTION);
        // Trailing bytes are tolerated and flagged.
        let (request, anomalies) = Request::parse_lenient(&[0x2B, 0x0E, 0x03, 0x01, 0x00]).unwrap();
        assert_eq!(
            request,
            Request::ReadDeviceIdentification {
                read_code: 3,
                object_id: 1
            }
        );
        assert_eq!(anomalies, Anomalies::TRAILING_BYTES);
        let (response, anomalies) =
            Response::parse_lenient(FunctionCode(1), &[0x81, 0x06, 0x00]).unwrap();
        assert_eq!(
            response.exception(),
            Some(ExceptionCode::SERVER_DEVICE_BUSY)
        );
        assert_eq!(anomalies, Anomalies::TRAILING_BYTES | Anomalies::EXCEPTION);
        assert!(Response::parse(FunctionCode(1), &[0x81, 0x06, 0x00]).is_err());
        // Without a function code there is nothing to keep.
        assert!(Adu::new_lenient(&[0, 1, 0, 0, 0, 2, 1]).is_err());
    }

    #[test]
    fn emit_refuses_small_buffers_and_long_fields() {
        let request = Request::WriteMultipleRegisters {
            start: 0,
            quantity: 2,
            values: &[0, 1, 0, 2],
        };
        let mut small = [0u8; 8];
        assert_eq!(
            request.emit(&mut small),
            Err(EmitError::BufferTooSmall {
                needed: 10,
                available: 8
            })
        );
        assert_eq!(
            request.emit_adu(1, 1, &mut [0u8; 12]),
            Err(EmitError::BufferTooSmall {
                needed: 17,
                available: 12
            })
        );
        let long = [0u8; 300];
        let request = Request::Other {
            function: FunctionCode(90),
            data: &long,
        };
        assert!(matches!(
            request.emit_adu(1, 1, &mut [0u8; 400]),
            Err(EmitError::TooLong { .. })
        ));
        let mut frame = [0, 1, 0, 0, 0, 2, 1, 7];
        assert_eq!(rewrite_transaction_id(&mut frame, 0xBEEF), Ok(1));
        assert_eq!(frame[..2], [0xBE, 0xEF]);
        assert!(rewrite_transaction_id(&mut [0], 1).is_err());
    }

    #[test]
    fn file_sub_requests_iterate() {
        let subs = [
            0x06, 0x00, 0x04, 0x00, 0x07, 0x00, 0x01, 0x06, 0xAF, 0x06, 0x00, 0x05, 0x00, 0x01,
            0x00, 0x00,
        ];
        let all: Vec<_> = FileSubRequests::new(&subs, true).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[0],
            Ok(FileSubRequest {
                file_number: 4,
                record_number: 7,
                record_length: 1,
                data: &[0x06, 0xAF]
            })
        );
        assert_eq!(all[1].unwrap().record_length, 0);
        let objects: Vec<_> = DeviceIdObjects::new(&[0, 2, b'h', b'i', 1, 5, b'x']).collect();
        assert_eq!(
            objects[0],
            Ok(DeviceIdObject {
                id: 0,
                value: b"hi"
            })
        );
        assert!(objects[1].is_err());
    }
}
