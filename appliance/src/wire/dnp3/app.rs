//! DNP3 application layer (IEEE 1815-2012, clause 4.2.2): the fragment header and its object
//! headers.
//!
//! A request fragment is application control (FIR, FIN, CON, UNS, SEQ), a function code and
//! object headers; a response (0x81, 0x82 unsolicited, 0x83) adds two bytes of internal
//! indications (IIN) after the function code. Each object header is group, variation, qualifier
//! (object prefix code and range specifier code) and a range: start-stop, a count, or all.
//!
//! [`Fragment::parse`] decodes the header; [`Fragment::object_headers`] walks the object headers
//! and, where the function carries object data, the data too: where the object size is known
//! (fixed-size and packed-bit objects of the common groups, size-prefixed objects, octet strings
//! whose variation is their length, device attributes) it steps over it; where it is not, the
//! walk stops with [`AppError::UnknownObjectSize`] rather than guessing. This module does not
//! interpret point values. Parsing never panics and never allocates.

use otgate_policy::dnp3::{class_of, Dnp3Class};

/// What was wrong with an application fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// Fewer bytes than a field needs.
    #[error("truncated {field}: need {needed} bytes, have {available}")]
    Truncated {
        /// The field.
        field: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: usize,
    },
    /// A qualifier whose prefix code (7) or range code (0xA, 0xC..=0xF) is reserved.
    #[error("object {group}/{variation}: reserved qualifier {qualifier:#04x}")]
    ReservedQualifier {
        /// Group.
        group: u8,
        /// Variation.
        variation: u8,
        /// Qualifier.
        qualifier: u8,
    },
    /// A start-stop range whose stop is below its start.
    #[error("object {group}/{variation}: range stop {stop} is below start {start}")]
    InvertedRange {
        /// Group.
        group: u8,
        /// Variation.
        variation: u8,
        /// Start.
        start: u32,
        /// Stop.
        stop: u32,
    },
    /// Object data whose size this decoder does not know; the walk stops here.
    #[error("object {group}/{variation} (qualifier {qualifier:#04x}) has data of unknown size at offset {offset}")]
    UnknownObjectSize {
        /// Group.
        group: u8,
        /// Variation.
        variation: u8,
        /// Qualifier.
        qualifier: u8,
        /// Offset of the object data in the fragment's object bytes.
        offset: usize,
    },
    /// The caller's buffer is too small to emit into.
    #[error("buffer too small: need {needed} bytes, have {available}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
}

/// The application control octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppControl(pub u8);

impl AppControl {
    /// FIR: first fragment of a message.
    pub fn fir(self) -> bool {
        self.0 & 0x80 != 0
    }
    /// FIN: last fragment of a message.
    pub fn fin(self) -> bool {
        self.0 & 0x40 != 0
    }
    /// CON: the receiver must confirm.
    pub fn con(self) -> bool {
        self.0 & 0x20 != 0
    }
    /// UNS: an unsolicited response, or the confirm of one.
    pub fn uns(self) -> bool {
        self.0 & 0x10 != 0
    }
    /// SEQ (0..=15).
    pub fn seq(self) -> u8 {
        self.0 & 0x0F
    }
}

/// An application function code, open: every value is representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionCode(pub u8);

impl FunctionCode {
    /// 0x00.
    pub const CONFIRM: Self = Self(0x00);
    /// 0x01.
    pub const READ: Self = Self(0x01);
    /// 0x02.
    pub const WRITE: Self = Self(0x02);
    /// 0x03.
    pub const SELECT: Self = Self(0x03);
    /// 0x04.
    pub const OPERATE: Self = Self(0x04);
    /// 0x05.
    pub const DIRECT_OPERATE: Self = Self(0x05);
    /// 0x06.
    pub const DIRECT_OPERATE_NR: Self = Self(0x06);
    /// 0x0B.
    pub const FREEZE_AT_TIME: Self = Self(0x0B);
    /// 0x0C.
    pub const FREEZE_AT_TIME_NR: Self = Self(0x0C);
    /// 0x0D.
    pub const COLD_RESTART: Self = Self(0x0D);
    /// 0x0E.
    pub const WARM_RESTART: Self = Self(0x0E);
    /// 0x11.
    pub const START_APPL: Self = Self(0x11);
    /// 0x12.
    pub const STOP_APPL: Self = Self(0x12);
    /// 0x14.
    pub const ENABLE_UNSOLICITED: Self = Self(0x14);
    /// 0x15.
    pub const DISABLE_UNSOLICITED: Self = Self(0x15);
    /// 0x19.
    pub const OPEN_FILE: Self = Self(0x19);
    /// 0x81.
    pub const RESPONSE: Self = Self(0x81);
    /// 0x82.
    pub const UNSOLICITED_RESPONSE: Self = Self(0x82);
    /// 0x83.
    pub const AUTHENTICATE_RESP: Self = Self(0x83);

    /// Whether this is a response (0x81..=0x83), which carries IIN.
    pub fn is_response(self) -> bool {
        (0x81..=0x83).contains(&self.0)
    }

    /// The policy class.
    pub fn class(self) -> Dnp3Class {
        class_of(self.0)
    }

    /// Whether object headers of this function carry object data (writes, controls, file and
    /// application functions, responses). Reads, freezes, class assignments and unsolicited
    /// enables name objects without data. FREEZE_AT_TIME carries data for group 50 only.
    pub fn carries_object_data(self) -> bool {
        matches!(self.0, 0x02..=0x06 | 0x10..=0x12 | 0x19..=0x21 | 0x81..=0x83)
    }

    /// The spec's name, or `None` for unassigned codes.
    pub fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 34] = [
            "confirm",
            "read",
            "write",
            "select",
            "operate",
            "direct_operate",
            "direct_operate_nr",
            "immed_freeze",
            "immed_freeze_nr",
            "freeze_clear",
            "freeze_clear_nr",
            "freeze_at_time",
            "freeze_at_time_nr",
            "cold_restart",
            "warm_restart",
            "initialize_data",
            "initialize_appl",
            "start_appl",
            "stop_appl",
            "save_config",
            "enable_unsolicited",
            "disable_unsolicited",
            "assign_class",
            "delay_measure",
            "record_current_time",
            "open_file",
            "close_file",
            "delete_file",
            "get_file_info",
            "authenticate_file",
            "abort_file",
            "activate_config",
            "authenticate_req",
            "auth_req_no_ack",
        ];
        match self.0 {
            0x81 => Some("response"),
            0x82 => Some("unsolicited_response"),
            0x83 => Some("authenticate_resp"),
            n => NAMES.get(usize::from(n)).copied(),
        }
    }
}

/// Internal indications: IIN1 in the low byte, IIN2 in the high byte (clause 4.2.2.7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Iin(pub u16);

impl Iin {
    /// IIN1.0: the request was addressed to all stations.
    pub const BROADCAST: Self = Self(1 << 0);
    /// IIN1.1: class 1 events available.
    pub const CLASS_1_EVENTS: Self = Self(1 << 1);
    /// IIN1.2: class 2 events available.
    pub const CLASS_2_EVENTS: Self = Self(1 << 2);
    /// IIN1.3: class 3 events available.
    pub const CLASS_3_EVENTS: Self = Self(1 << 3);
    /// IIN1.4: the outstation needs time synchronisation.
    pub const NEED_TIME: Self = Self(1 << 4);
    /// IIN1.5: some points are in local control.
    pub const LOCAL_CONTROL: Self = Self(1 << 5);
    /// IIN1.6: device trouble.
    pub const DEVICE_TROUBLE: Self = Self(1 << 6);
    /// IIN1.7: the outstation restarted.
    pub const DEVICE_RESTART: Self = Self(1 << 7);
    /// IIN2.0: function code not supported.
    pub const NO_FUNC_CODE_SUPPORT: Self = Self(1 << 8);
    /// IIN2.1: an object in the request is unknown.
    pub const OBJECT_UNKNOWN: Self = Self(1 << 9);
    /// IIN2.2: a parameter in the request was invalid.
    pub const PARAMETER_ERROR: Self = Self(1 << 10);
    /// IIN2.3: an event buffer overflowed.
    pub const EVENT_BUFFER_OVERFLOW: Self = Self(1 << 11);
    /// IIN2.4: the operation is already executing.
    pub const ALREADY_EXECUTING: Self = Self(1 << 12);
    /// IIN2.5: the configuration is corrupt.
    pub const CONFIG_CORRUPT: Self = Self(1 << 13);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The names of the bits set (reserved bits as `reserved_2_6`, `reserved_2_7`).
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        const NAMES: [&str; 16] = [
            "broadcast",
            "class_1_events",
            "class_2_events",
            "class_3_events",
            "need_time",
            "local_control",
            "device_trouble",
            "device_restart",
            "no_func_code_support",
            "object_unknown",
            "parameter_error",
            "event_buffer_overflow",
            "already_executing",
            "config_corrupt",
            "reserved_2_6",
            "reserved_2_7",
        ];
        NAMES
            .into_iter()
            .enumerate()
            .filter(move |(bit, _)| self.0 & (1 << bit) != 0)
            .map(|(_, n)| n)
    }
}

/// A decoded application fragment header, with its object bytes borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// Application control.
    pub control: AppControl,
    /// Function code.
    pub function: FunctionCode,
    /// Internal indications, on responses only.
    pub iin: Option<Iin>,
    /// The object headers and data, undecoded.
    pub objects: &'a [u8],
}

impl<'a> Fragment<'a> {
    /// Decodes the fragment header: control, function, and IIN for responses. Never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, AppError> {
        let mut r = Reader {
            buf: bytes,
            offset: 0,
        };
        let control = AppControl(r.u8("application control")?);
        let function = FunctionCode(r.u8("function code")?);
        let iin = if function.is_response() {
            let [iin1, iin2] = r.array::<2>("internal indications")?;
            Some(Iin(u16::from_le_bytes([iin1, iin2])))
        } else {
            None
        };
        Ok(Self {
            control,
            function,
            iin,
            objects: r.buf,
        })
    }

    /// The policy class of the function.
    pub fn class(&self) -> Dnp3Class {
        self.function.class()
    }

    /// Walks the object headers (and their data where the function carries data).
    pub fn object_headers(&self) -> ObjectHeaders<'a> {
        ObjectHeaders {
            reader: Reader {
                buf: self.objects,
                offset: 0,
            },
            function: self.function,
            done: false,
        }
    }

    /// The length `emit` writes.
    pub fn buffer_len(&self) -> usize {
        2 + if self.iin.is_some() { 2 } else { 0 } + self.objects.len()
    }

    /// Writes the fragment into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, AppError> {
        let needed = self.buffer_len();
        let available = buf.len();
        let out = buf
            .get_mut(..needed)
            .ok_or(AppError::BufferTooSmall { needed, available })?;
        let mut head = [self.control.0, self.function.0, 0, 0];
        let head_len = match self.iin {
            Some(iin) => {
                let [a, b] = iin.0.to_le_bytes();
                head[2] = a;
                head[3] = b;
                4
            }
            None => 2,
        };
        for (slot, byte) in out
            .iter_mut()
            .zip(head.iter().take(head_len).chain(self.objects))
        {
            *slot = *byte;
        }
        Ok(needed)
    }
}

/// The qualifier octet: object prefix code (bits 6-4) and range specifier code (bits 3-0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Qualifier(pub u8);

impl Qualifier {
    /// Object prefix code: 0 none, 1-3 index of 1/2/4 bytes, 4-6 size of 1/2/4 bytes, 7 reserved.
    pub fn prefix_code(self) -> u8 {
        (self.0 >> 4) & 0x07
    }
    /// Range specifier code: 0-2 start-stop, 3-5 virtual start-stop, 6 all, 7-9 count,
    /// 0xB variable-format count.
    pub fn range_code(self) -> u8 {
        self.0 & 0x0F
    }
}

/// The range of an object header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Range {
    /// Indexes `start..=stop` (codes 0-5).
    StartStop {
        /// First index.
        start: u32,
        /// Last index.
        stop: u32,
    },
    /// A count of objects (codes 7-9, 0xB).
    Count(u32),
    /// All objects, no range field (code 6).
    All,
}

impl Range {
    /// How many objects the range names (0 for `All`).
    pub fn count(self) -> u64 {
        match self {
            Self::StartStop { start, stop } => u64::from(stop.saturating_sub(start)) + 1,
            Self::Count(n) => u64::from(n),
            Self::All => 0,
        }
    }
}

/// How large one object of a group/variation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectSize {
    /// Packed bits, this many per object.
    Bits(u8),
    /// A fixed number of bytes.
    Bytes(u16),
    /// Each object carries its size in a prefix (qualifier prefix codes 4-6).
    Prefixed,
    /// Device attributes (group 0): data type, length, value.
    Attribute,
    /// Not known to this decoder.
    Unknown,
}

/// The size of one object of `group`/`variation` (IEEE 1815-2012 annex A, the common groups).
pub fn object_size(group: u8, variation: u8) -> ObjectSize {
    use ObjectSize::{Attribute, Bits, Bytes, Prefixed, Unknown};
    let table = |sizes: &[u16]| {
        usize::from(variation)
            .checked_sub(1)
            .and_then(|i| sizes.get(i))
            .map_or(Unknown, |&s| Bytes(s))
    };
    match (group, variation) {
        (0, 1..=255) => Attribute,
        (1 | 10 | 80, 1) | (12, 3) => Bits(1),
        (3, 1) => Bits(2),
        (1 | 3 | 10, 2) => Bytes(1),
        (2 | 4, _) => table(&[1, 7, 3]),
        (11 | 13, _) => table(&[1, 7]),
        (12, _) => table(&[11, 11]),
        (20, _) => table(&[5, 3, 5, 3, 4, 2, 4, 2]),
        (21, _) => table(&[5, 3, 5, 3, 11, 9, 11, 9, 4, 2, 4, 2]),
        (22 | 23, _) => table(&[5, 3, 5, 3, 11, 9, 11, 9]),
        (30, _) => table(&[5, 3, 4, 2, 5, 9]),
        (31, _) => table(&[5, 3, 11, 9, 4, 2, 5, 9]),
        (32 | 33 | 42 | 43, _) => table(&[5, 3, 11, 9, 5, 9, 11, 15]),
        (34, _) => table(&[2, 4, 4]),
        (40 | 41, _) => table(&[5, 3, 5, 9]),
        (50, _) => table(&[6, 10, 6, 11]),
        (51, _) => table(&[6, 6]),
        (52, _) => table(&[2, 2]),
        (60, 1..=4) => Bytes(0),
        (70 | 81..=88 | 90 | 120, 1..=255) => Prefixed,
        (101, _) => table(&[2, 4, 8]),
        (102, 1) => Bytes(1),
        (110..=113, 1..=255) => Bytes(u16::from(variation)),
        (121, 1) => Bytes(7),
        (122, _) => table(&[7, 13]),
        _ => Unknown,
    }
}

/// One object header and the bytes of its objects (prefixes included; empty when the function
/// carries no data or the range is `All`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectHeader<'a> {
    /// Object group.
    pub group: u8,
    /// Object variation (0: any).
    pub variation: u8,
    /// Qualifier.
    pub qualifier: Qualifier,
    /// Range.
    pub range: Range,
    /// The objects' bytes.
    pub data: &'a [u8],
}

/// Iterates a fragment's object headers; stops after the first error.
#[derive(Debug, Clone)]
pub struct ObjectHeaders<'a> {
    reader: Reader<'a>,
    function: FunctionCode,
    done: bool,
}

impl<'a> ObjectHeaders<'a> {
    fn next_header(&mut self) -> Result<ObjectHeader<'a>, AppError> {
        let r = &mut self.reader;
        let group = r.u8("object group")?;
        let variation = r.u8("object variation")?;
        let qualifier = Qualifier(r.u8("qualifier")?);
        let reserved = AppError::ReservedQualifier {
            group,
            variation,
            qualifier: qualifier.0,
        };
        let range = match qualifier.range_code() {
            0 | 3 => Range::StartStop {
                start: r.uint(1, "range start")?,
                stop: r.uint(1, "range stop")?,
            },
            1 | 4 => Range::StartStop {
                start: r.uint(2, "range start")?,
                stop: r.uint(2, "range stop")?,
            },
            2 | 5 => Range::StartStop {
                start: r.uint(4, "range start")?,
                stop: r.uint(4, "range stop")?,
            },
            6 => Range::All,
            7 | 0xB => Range::Count(r.uint(1, "range count")?),
            8 => Range::Count(r.uint(2, "range count")?),
            9 => Range::Count(r.uint(4, "range count")?),
            _ => return Err(reserved),
        };
        if let Range::StartStop { start, stop } = range {
            if stop < start {
                return Err(AppError::InvertedRange {
                    group,
                    variation,
                    start,
                    stop,
                });
            }
        }
        let prefix = qualifier.prefix_code();
        if prefix == 7 {
            return Err(reserved);
        }
        // Size-prefixed objects always carry their data, whatever the function (a READ of file
        // transport, g70v5, names the file handle and block).
        let with_data = self.function.carries_object_data()
            || (4..=6).contains(&prefix)
            || (group == 50
                && matches!(
                    self.function,
                    FunctionCode::FREEZE_AT_TIME | FunctionCode::FREEZE_AT_TIME_NR
                ));
        let count = range.count();
        let start = r.offset;
        let before = r.buf;
        if with_data && count > 0 {
            let unknown = AppError::UnknownObjectSize {
                group,
                variation,
                qualifier: qualifier.0,
                offset: start,
            };
            let index_len = match prefix {
                1 => 1,
                2 => 2,
                3 => 4,
                _ => 0,
            };
            match (object_size(group, variation), prefix) {
                (ObjectSize::Bits(bits), 0) => {
                    r.skip(
                        count.saturating_mul(u64::from(bits)).div_ceil(8),
                        "packed objects",
                    )?;
                }
                (ObjectSize::Bytes(size), 0..=3) => {
                    r.skip(count.saturating_mul(u64::from(size) + index_len), "objects")?;
                }
                (_, 4..=6) => {
                    let size_len = match prefix {
                        4 => 1,
                        5 => 2,
                        _ => 4,
                    };
                    for _ in 0..count {
                        let size = r.uint(size_len, "object size prefix")?;
                        r.skip(u64::from(size), "sized object")?;
                    }
                }
                (ObjectSize::Attribute, 0..=3) => {
                    for _ in 0..count {
                        r.skip(index_len, "object index")?;
                        let _data_type = r.u8("attribute data type")?;
                        let len = r.u8("attribute length")?;
                        r.skip(u64::from(len), "attribute value")?;
                    }
                }
                _ => return Err(unknown),
            }
        }
        let used = r.offset - start;
        let data = before.get(..used).unwrap_or_default();
        Ok(ObjectHeader {
            group,
            variation,
            qualifier,
            range,
            data,
        })
    }
}

impl<'a> Iterator for ObjectHeaders<'a> {
    type Item = Result<ObjectHeader<'a>, AppError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.reader.buf.is_empty() {
            return None;
        }
        let item = self.next_header();
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}

/// A cursor over untrusted bytes that tracks its offset.
#[derive(Debug, Clone)]
struct Reader<'a> {
    buf: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn truncated(&self, field: &'static str, needed: u64) -> AppError {
        AppError::Truncated {
            field,
            needed,
            available: self.buf.len(),
        }
    }

    fn skip(&mut self, n: u64, field: &'static str) -> Result<&'a [u8], AppError> {
        let len = usize::try_from(n).map_err(|_| self.truncated(field, n))?;
        if len > self.buf.len() {
            return Err(self.truncated(field, n));
        }
        let (head, tail) = self.buf.split_at(len);
        self.buf = tail;
        self.offset += len;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, AppError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], AppError> {
        let (head, tail) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(self.truncated(field, N as u64))?;
        self.buf = tail;
        self.offset += N;
        Ok(*head)
    }

    /// A little-endian unsigned integer of 1, 2 or 4 bytes.
    fn uint(&mut self, width: u64, field: &'static str) -> Result<u32, AppError> {
        let bytes = self.skip(width, field)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0u32, |acc, &b| acc << 8 | u32::from(b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses one annotated fragment, walks its headers, checks (group, variation, qualifier,
    /// range, data length) per header and the error the walk ends with, and emits it back.
    #[allow(clippy::type_complexity)]
    fn check(
        name: &str,
        bytes: &[u8],
        function: u8,
        headers: &[(u8, u8, u8, Range, usize)],
        end: Option<AppError>,
    ) {
        let fragment = Fragment::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(fragment.function, FunctionCode(function), "{name}");
        let mut got = Vec::new();
        let mut error = None;
        for h in fragment.object_headers() {
            match h {
                Ok(h) => got.push((h.group, h.variation, h.qualifier.0, h.range, h.data.len())),
                Err(e) => error = Some(e),
            }
        }
        assert_eq!(got, headers, "{name}: headers");
        assert_eq!(error, end, "{name}: end of walk");
        let mut buf = [0u8; 2048];
        let n = fragment.emit(&mut buf).unwrap();
        assert_eq!(&buf[..n], bytes, "{name}: emit round trip");
    }

    #[rustfmt::skip]
    #[test]
    fn fragments() {
        use Range::{All, Count, StartStop};
        // Integrity poll: classes 1, 2, 3, 0, no data.
        check("read classes 1230",
              &[0xC0, /* FIR FIN seq 0 */ 0x01, /* READ */
                60, 2, 0x06, 60, 3, 0x06, 60, 4, 0x06, 60, 1, 0x06],
              1, &[(60, 2, 6, All, 0), (60, 3, 6, All, 0), (60, 4, 6, All, 0), (60, 1, 6, All, 0)], None);
        // Read of analog inputs 0..=3 with a start-stop range: no data in a request.
        check("read g30v1 0-3", &[0xC1, 0x01, 30, 1, 0x00, 0, 3], 1, &[(30, 1, 0, StartStop { start: 0, stop: 3 }, 0)], None);
        // Response: IIN, binary inputs 0..=9 packed (2 bytes), analog g30v2 0..=1 (3 bytes each).
        check("response g1v1 and g30v2",
              &[0xC0, 0x81, 0x90, 0x00, /* IIN: restart + need time */
                1, 1, 0x00, 0, 9, 0xFF, 0x03,
                30, 2, 0x01, 0, 0, 1, 0, /* 2-byte start-stop 0..=1 */ 0x01, 0x10, 0x00, 0x01, 0x20, 0x00],
              0x81, &[(1, 1, 0, StartStop { start: 0, stop: 9 }, 2), (30, 2, 1, StartStop { start: 0, stop: 1 }, 6)], None);
        // DIRECT_OPERATE a CROB: g12v1, qualifier 0x28 (2-byte index prefix, 2-byte count).
        check("direct operate crob",
              &[0xC3, 0x05, 12, 1, 0x28, 1, 0, /* count 1 */ 7, 0, /* index 7 */
                0x03, 0x01, 0x64, 0, 0, 0, 0x64, 0, 0, 0, 0x00],
              5, &[(12, 1, 0x28, Count(1), 13)], None);
        // Time write: g50v1 count 1.
        check("write time", &[0xC2, 0x02, 50, 1, 0x07, 1, 1, 2, 3, 4, 5, 6], 2, &[(50, 1, 7, Count(1), 6)], None);
        // File open: g70v3, qualifier 0x5B (2-byte size prefix, 1-byte count).
        check("open file",
              &[0xC4, 0x19, 70, 3, 0x5B, 1, 4, 0, b'a', b'b', b'c', b'd'],
              0x19, &[(70, 3, 0x5B, Count(1), 6)], None);
        // A READ of file transport: size-prefixed objects carry data even in a read.
        check("read file block", &[0xCF, 0x01, 70, 5, 0x5B, 1, 8, 0, 0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0],
              1, &[(70, 5, 0x5B, Count(1), 10)], None);
        // Cold restart: no objects.
        check("cold restart", &[0xC5, 0x0D], 0x0D, &[], None);
        // Unsolicited response with an unknown group's data: the walk stops there.
        check("unknown group data",
              &[0xF0, 0x82, 0x00, 0x00, 1, 2, 0x00, 0, 0, 0x81, 200, 1, 0x07, 1, 0xAA],
              0x82, &[(1, 2, 0, StartStop { start: 0, stop: 0 }, 1)],
              Some(AppError::UnknownObjectSize { group: 200, variation: 1, qualifier: 7, offset: 14 - 4 }));
        // Data that lies: 10 analog g30v1 objects but 5 bytes.
        check("objects cut short",
              &[0xC0, 0x81, 0, 0, 30, 1, 0x00, 0, 9, 1, 2, 3, 4, 5],
              0x81, &[],
              Some(AppError::Truncated { field: "objects", needed: 50, available: 5 }));
        check("inverted range", &[0xC0, 0x01, 30, 1, 0x00, 9, 3], 1, &[],
              Some(AppError::InvertedRange { group: 30, variation: 1, start: 9, stop: 3 }));
        check("reserved range code", &[0xC0, 0x01, 30, 1, 0x0A], 1, &[],
              Some(AppError::ReservedQualifier { group: 30, variation: 1, qualifier: 0x0A }));
        check("reserved prefix code", &[0xC0, 0x01, 30, 1, 0x76], 1, &[],
              Some(AppError::ReservedQualifier { group: 30, variation: 1, qualifier: 0x76 }));
        check("header cut short", &[0xC0, 0x01, 30, 1], 1, &[],
              Some(AppError::Truncated { field: "qualifier", needed: 1, available: 0 }));
        check("range cut short", &[0xC0, 0x01, 30, 1, 0x01, 0], 1, &[],
              Some(AppError::Truncated { field: "range start", needed: 2, available: 1 }));
        // A huge 4-byte count never overflows or allocates.
        check("huge count", &[0xC0, 0x81, 0, 0, 30, 1, 0x09, 0xFF, 0xFF, 0xFF, 0xFF], 0x81, &[],
              Some(AppError::Truncated { field: "objects", needed: 5 * 0xFFFF_FFFF, available: 0 }));
        // Freeze-at-time carries g50v2 data, then a header without data.
        check("freeze at time", &[0xC0, 0x0B, 50, 2, 0x07, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0x06],
              0x0B, &[(50, 2, 7, Count(1), 10), (20, 0, 6, All, 0)], None);
    }

    #[test]
    fn headers_and_flags() {
        assert_eq!(
            Fragment::parse(&[0xC0]),
            Err(AppError::Truncated {
                field: "function code",
                needed: 1,
                available: 0
            })
        );
        assert_eq!(
            Fragment::parse(&[0xC0, 0x81, 0x00]),
            Err(AppError::Truncated {
                field: "internal indications",
                needed: 2,
                available: 1
            })
        );
        let f = Fragment::parse(&[0xF3, 0x82, 0x80, 0x02]).unwrap();
        assert!(f.control.fir() && f.control.fin() && f.control.con() && f.control.uns());
        assert_eq!(f.control.seq(), 3);
        let iin = f.iin.unwrap();
        assert!(iin.contains(Iin::DEVICE_RESTART) && iin.contains(Iin::OBJECT_UNKNOWN));
        assert_eq!(
            iin.names().collect::<Vec<_>>(),
            ["device_restart", "object_unknown"]
        );
        assert_eq!(f.class(), Dnp3Class::Response);
        assert_eq!(FunctionCode::COLD_RESTART.class(), Dnp3Class::Restart);
        assert_eq!(FunctionCode(0x1B).name(), Some("delete_file"));
        assert_eq!(FunctionCode(0x22).name(), None);
        assert_eq!(FunctionCode(0x83).name(), Some("authenticate_resp"));
        assert_eq!(
            f.emit(&mut [0u8; 3]),
            Err(AppError::BufferTooSmall {
                needed: 4,
                available: 3
            })
        );
        assert_eq!(object_size(30, 0), ObjectSize::Unknown);
        assert_eq!(object_size(32, 8), ObjectSize::Bytes(15));
        assert_eq!(object_size(110, 12), ObjectSize::Bytes(12));
    }
}
