//! The byte-level reader and writer of the bundle format: big-endian integers and
//! length-prefixed fields, where every length prefix has a maximum.
//!
//! [`Reader`] never panics and never reads past its input: each `take` checks the remaining
//! length first and says how many bytes were wanted and how many were left. Callers finish with
//! [`Reader::expect_end`], which refuses trailing bytes, so one value has exactly one encoding.
//! [`Writer`] only appends to a `Vec<u8>`; encoding cannot fail once the caller has checked the
//! field limits.

use super::DecodeError;

/// A cursor over untrusted bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, offset: 0 }
    }

    /// How far into the input the reader is.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.offset)
    }

    /// Take the next `len` bytes, or say that the input is truncated.
    pub fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let rest = self.bytes.get(self.offset..).unwrap_or_default();
        match rest.get(..len) {
            Some(slice) => {
                self.offset += len;
                Ok(slice)
            }
            None => Err(DecodeError::Truncated {
                field,
                offset: self.offset,
                wanted: len,
                remaining: rest.len(),
            }),
        }
    }

    /// Take exactly `N` bytes as an array.
    pub fn take_array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let slice = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    /// A big-endian `u8`.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.take_array(field)?))
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take_array(field)?))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take_array(field)?))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take_array(field)?))
    }

    /// A big-endian `i64`.
    pub fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take_array(field)?))
    }

    /// A presence flag: exactly 0 (absent) or 1 (present).
    pub fn flag(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::BadFlag { field, value }),
        }
    }

    /// Bytes behind a `u8` length prefix of at most `max`.
    pub fn bytes_u8(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u8(field)?);
        self.bounded(field, len, max)
    }

    /// Bytes behind a `u32` length prefix of at most `max`.
    pub fn bytes_u32(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        self.bounded(field, len, max)
    }

    fn bounded(
        &mut self,
        field: &'static str,
        len: usize,
        max: usize,
    ) -> Result<&'a [u8], DecodeError> {
        if len > max {
            return Err(DecodeError::LengthOverLimit {
                field,
                declared: len,
                limit: max,
            });
        }
        self.take(len, field)
    }

    /// Refuse anything after the last field.
    pub fn expect_end(&self, field: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes {
                after: field,
                extra,
            }),
        }
    }
}

/// An appending writer; the caller has already checked every limit.
#[derive(Debug, Default)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    /// An empty writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity),
        }
    }

    /// Append raw bytes.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// Append a big-endian `u8`.
    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    /// Append a big-endian `u16`.
    pub fn u16(&mut self, value: u16) {
        self.raw(&value.to_be_bytes());
    }

    /// Append a big-endian `u32`.
    pub fn u32(&mut self, value: u32) {
        self.raw(&value.to_be_bytes());
    }

    /// Append a big-endian `u64`.
    pub fn u64(&mut self, value: u64) {
        self.raw(&value.to_be_bytes());
    }

    /// Append a big-endian `i64`.
    pub fn i64(&mut self, value: i64) {
        self.raw(&value.to_be_bytes());
    }

    /// Append a presence flag.
    pub fn flag(&mut self, present: bool) {
        self.u8(u8::from(present));
    }

    /// Append bytes behind a `u8` length prefix (the caller checked `bytes.len() <= 255`).
    pub fn bytes_u8(&mut self, bytes: &[u8]) {
        self.u8(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
        self.raw(bytes);
    }

    /// Append bytes behind a `u32` length prefix (the caller checked the length fits).
    pub fn bytes_u32(&mut self, bytes: &[u8]) {
        self.u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        self.raw(bytes);
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_refuses_short_input_with_numbers() {
        let mut r = Reader::new(&[0, 1, 2]);
        assert_eq!(r.u16("a").unwrap(), 1);
        assert_eq!(
            r.u32("b"),
            Err(DecodeError::Truncated {
                field: "b",
                offset: 2,
                wanted: 4,
                remaining: 1
            })
        );
    }

    #[test]
    fn reader_refuses_length_over_limit_before_taking() {
        let mut r = Reader::new(&[0, 0, 0, 9, 1, 2]);
        assert_eq!(
            r.bytes_u32("policy", 4),
            Err(DecodeError::LengthOverLimit {
                field: "policy",
                declared: 9,
                limit: 4
            })
        );
    }

    #[test]
    fn flags_are_zero_or_one_only() {
        assert_eq!(
            Reader::new(&[2]).flag("f"),
            Err(DecodeError::BadFlag {
                field: "f",
                value: 2
            })
        );
        assert!(Reader::new(&[1]).flag("f").unwrap());
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut r = Reader::new(&[1, 2]);
        r.u8("x").unwrap();
        assert_eq!(
            r.expect_end("x"),
            Err(DecodeError::TrailingBytes {
                after: "x",
                extra: 1
            })
        );
    }
}
