//! DNP3 transport function (IEEE 1815-2012, clause 8): one header byte per link frame (FIN,
//! FIR, a 6-bit sequence) and the reassembly of segments into application fragments.
//!
//! [`Segment::parse`] reads a link frame's user data. A [`Reassembler`] holds one partial
//! fragment for one link pair (the caller keeps one per source/destination pair and direction):
//! it copies into a fixed-capacity buffer (2048 bytes by default, the usual fragment limit),
//! refuses a fragment that would grow past it, and reports sequence gaps and segments without a
//! first segment as errors, dropping the partial fragment. It never allocates and never panics.

/// What was wrong with a segment or a reassembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A link frame without user data has no transport header.
    #[error("empty transport segment")]
    Empty,
    /// A segment that is not FIR arrived while no fragment was in progress.
    #[error("segment with sequence {seq} continues no fragment (no FIR segment before it)")]
    NoFirst {
        /// The segment's sequence number.
        seq: u8,
    },
    /// A segment's sequence number is not the one after the previous segment's.
    #[error("sequence gap: expected {expected}, got {got}; partial fragment dropped")]
    SequenceGap {
        /// The sequence number expected.
        expected: u8,
        /// The one received.
        got: u8,
    },
    /// The fragment would grow past the reassembler's capacity.
    #[error("fragment would exceed {capacity} bytes; partial fragment dropped")]
    TooLong {
        /// The capacity.
        capacity: usize,
    },
}

/// The transport header byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransportHeader(pub u8);

impl TransportHeader {
    /// FIN: the last segment of a fragment.
    pub fn fin(self) -> bool {
        self.0 & 0x80 != 0
    }
    /// FIR: the first segment of a fragment.
    pub fn fir(self) -> bool {
        self.0 & 0x40 != 0
    }
    /// The sequence number (0..=63).
    pub fn seq(self) -> u8 {
        self.0 & 0x3F
    }
    /// A header with these fields (`seq` is taken modulo 64).
    pub fn new(fir: bool, fin: bool, seq: u8) -> Self {
        Self(u8::from(fin) << 7 | u8::from(fir) << 6 | (seq & 0x3F))
    }
}

/// One transport segment: the header and up to 249 bytes of application data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// The header.
    pub header: TransportHeader,
    /// The application bytes this segment carries.
    pub data: &'a [u8],
}

impl<'a> Segment<'a> {
    /// Splits a link frame's user data into header and data.
    pub fn parse(user_data: &'a [u8]) -> Result<Self, TransportError> {
        let (&header, data) = user_data.split_first().ok_or(TransportError::Empty)?;
        Ok(Self {
            header: TransportHeader(header),
            data,
        })
    }

    /// The user data length `emit` writes.
    pub fn buffer_len(&self) -> usize {
        1 + self.data.len()
    }

    /// Writes header and data into `buf`; returns the length, or `None` if `buf` is too small.
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let (first, rest) = buf.split_first_mut()?;
        *first = self.header.0;
        rest.get_mut(..self.data.len())?.copy_from_slice(self.data);
        Some(self.buffer_len())
    }
}

/// The default cap on a reassembled application fragment.
pub const DEFAULT_MAX_FRAGMENT: usize = 2048;

/// What a segment did to the reassembly.
#[derive(Debug, PartialEq, Eq)]
pub enum Reassembly<'a> {
    /// The segment was added; the fragment is not complete.
    Partial,
    /// A repeat of the previous segment (same sequence, same data length), ignored.
    Duplicate,
    /// The fragment is complete: these are its bytes.
    Complete(&'a [u8]),
}

/// Reassembles the segments of one link pair into application fragments of at most `N` bytes.
#[derive(Debug, Clone)]
pub struct Reassembler<const N: usize = DEFAULT_MAX_FRAGMENT> {
    /// The fragment so far.
    buf: heapless::Vec<u8, N>,
    /// The last segment's sequence number and data length, while a fragment is in progress.
    last: Option<(u8, usize)>,
    /// Partial fragments dropped because a new FIR segment interrupted them, since last asked.
    restarts: u32,
}

impl<const N: usize> Default for Reassembler<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Reassembler<N> {
    /// An idle reassembler.
    pub fn new() -> Self {
        Self {
            buf: heapless::Vec::new(),
            last: None,
            restarts: 0,
        }
    }

    /// Whether a fragment is in progress.
    pub fn in_progress(&self) -> bool {
        self.last.is_some()
    }

    /// Drops any partial fragment.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.last = None;
    }

    /// How many partial fragments a new FIR segment interrupted (and so dropped) since the
    /// last call; resets the count.
    pub fn take_restarts(&mut self) -> u32 {
        core::mem::take(&mut self.restarts)
    }

    /// Adds a segment. An error drops the partial fragment. A FIR segment always starts a new
    /// fragment; if it interrupts one, that one is dropped and counted (see `take_restarts`).
    pub fn push(&mut self, segment: Segment<'_>) -> Result<Reassembly<'_>, TransportError> {
        let header = segment.header;
        let seq = header.seq();
        if header.fir() {
            if self.last.is_some() {
                self.restarts = self.restarts.saturating_add(1);
            }
            self.buf.clear();
        } else {
            match self.last {
                None => return Err(TransportError::NoFirst { seq }),
                Some((last, len)) if last == seq && len == segment.data.len() => {
                    return Ok(Reassembly::Duplicate)
                }
                Some((last, _)) if (last + 1) & 0x3F != seq => {
                    self.reset();
                    return Err(TransportError::SequenceGap {
                        expected: (last + 1) & 0x3F,
                        got: seq,
                    });
                }
                Some(_) => {}
            }
        }
        if self.buf.extend_from_slice(segment.data).is_err() {
            self.reset();
            return Err(TransportError::TooLong { capacity: N });
        }
        self.last = Some((seq, segment.data.len()));
        if header.fin() {
            self.last = None;
            return Ok(Reassembly::Complete(&self.buf));
        }
        Ok(Reassembly::Partial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(fir: bool, fin: bool, seq: u8, data: &[u8]) -> Segment<'_> {
        Segment {
            header: TransportHeader::new(fir, fin, seq),
            data,
        }
    }

    #[test]
    fn headers() {
        let h = TransportHeader(0xC0);
        assert!(h.fir() && h.fin());
        assert_eq!(h.seq(), 0);
        assert_eq!(TransportHeader::new(true, false, 65), TransportHeader(0x41));
        assert_eq!(Segment::parse(&[]), Err(TransportError::Empty));
        let s = Segment::parse(&[0xC5, 1, 2]).unwrap();
        assert_eq!((s.header.seq(), s.data), (5, &[1u8, 2][..]));
        let mut buf = [0u8; 3];
        assert_eq!(s.emit(&mut buf), Some(3));
        assert_eq!(buf, [0xC5, 1, 2]);
        assert_eq!(s.emit(&mut [0u8; 2]), None);
    }

    #[test]
    fn reassembly() {
        let mut r = Reassembler::<8>::new();
        // Single-segment fragment.
        assert_eq!(
            r.push(seg(true, true, 0, &[1, 2])),
            Ok(Reassembly::Complete(&[1, 2]))
        );
        // Three segments, with a duplicate in the middle, wrapping the sequence.
        assert_eq!(r.push(seg(true, false, 62, &[1])), Ok(Reassembly::Partial));
        assert_eq!(
            r.push(seg(false, false, 63, &[2, 3])),
            Ok(Reassembly::Partial)
        );
        assert_eq!(
            r.push(seg(false, false, 63, &[2, 3])),
            Ok(Reassembly::Duplicate)
        );
        assert_eq!(
            r.push(seg(false, true, 0, &[4])),
            Ok(Reassembly::Complete(&[1, 2, 3, 4]))
        );
        assert!(!r.in_progress());
        // A middle segment with nothing before it.
        assert_eq!(
            r.push(seg(false, true, 3, &[9])),
            Err(TransportError::NoFirst { seq: 3 })
        );
        // A gap drops the partial fragment.
        assert_eq!(r.push(seg(true, false, 10, &[1])), Ok(Reassembly::Partial));
        assert_eq!(
            r.push(seg(false, true, 12, &[2])),
            Err(TransportError::SequenceGap {
                expected: 11,
                got: 12
            })
        );
        assert!(!r.in_progress());
        // Growing past the cap.
        assert_eq!(
            r.push(seg(true, false, 1, &[0; 6])),
            Ok(Reassembly::Partial)
        );
        assert_eq!(
            r.push(seg(false, true, 2, &[0; 3])),
            Err(TransportError::TooLong { capacity: 8 })
        );
        assert!(!r.in_progress());
        // A new first segment while one is in progress: the loss is counted, the new one starts.
        assert_eq!(r.push(seg(true, false, 5, &[1])), Ok(Reassembly::Partial));
        assert_eq!(r.push(seg(true, false, 9, &[7])), Ok(Reassembly::Partial));
        assert_eq!(
            r.push(seg(false, true, 10, &[8])),
            Ok(Reassembly::Complete(&[7, 8]))
        );
        assert_eq!(r.push(seg(true, false, 5, &[1])), Ok(Reassembly::Partial));
        assert_eq!(
            r.push(seg(true, true, 0, &[3])),
            Ok(Reassembly::Complete(&[3]))
        );
        assert_eq!(r.take_restarts(), 2);
        assert_eq!(r.take_restarts(), 0);
    }
}
