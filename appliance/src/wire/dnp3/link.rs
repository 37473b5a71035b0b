//! DNP3 data link layer (IEEE 1815-2012, clause 9): the FT3 frame.
//!
//! A frame is a 10-byte header (start bytes 0x05 0x64, LENGTH, CONTROL, DESTINATION and SOURCE
//! little-endian, a CRC over the first 8 bytes) followed by the user data in blocks of up to 16
//! bytes, each followed by its own CRC. LENGTH counts CONTROL, DESTINATION, SOURCE and the user
//! data but no CRC, so it is 5..=255 and a frame is at most 292 bytes.
//!
//! [`frame_len`] cuts a TCP stream into frames (several per segment, or one split across
//! segments) reading only the header. [`Frame::new_checked`] verifies every CRC;
//! [`Frame::new_lenient`] keeps a frame with bad CRCs and reports them (for inspection).
//! [`Frame::payload`] hands the user data with CRCs stripped into a caller's buffer, without
//! allocating. This module does not reassemble transport segments (see `transport`).
//!
//! No function here panics on any input. Under `cfg(fuzzing)` every CRC check passes so that
//! fuzzers reach the transport and application layers; nothing else changes.

use super::crc_matches;

/// The two start bytes of every frame.
pub const START: [u8; 2] = [0x05, 0x64];
/// Header length: start (2), length (1), control (1), destination (2), source (2), CRC (2).
pub const HEADER_LEN: usize = 10;
/// The smallest LENGTH: control, destination and source, no user data.
pub const MIN_LENGTH: u8 = 5;
/// The most user data one frame carries.
pub const MAX_USER_DATA: usize = 250;
/// The longest frame: a header, 250 bytes of user data and 16 block CRCs.
pub const MAX_FRAME_LEN: usize = 292;
/// User data bytes per CRC block.
pub const BLOCK_LEN: usize = 16;
/// The broadcast destination addresses (0xFFFD..=0xFFFF).
pub const BROADCAST: core::ops::RangeInclusive<u16> = 0xFFFD..=0xFFFF;

/// What was wrong with a link frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The frame does not begin with 0x05 0x64.
    #[error("link frame starts {found:#06x}, not 0x0564")]
    Start {
        /// The first two bytes, big-endian (0 when fewer are present).
        found: u16,
    },
    /// LENGTH below 5.
    #[error("link length {0} is below 5")]
    Length(u8),
    /// Fewer bytes than the header's LENGTH implies.
    #[error("truncated link frame: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// More bytes than the header's LENGTH implies.
    #[error("link frame is {actual} bytes but its length field implies {expected}")]
    TrailingBytes {
        /// Bytes the length field implies.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// The header CRC does not match.
    #[error("link header CRC {found:#06x} does not match computed {computed:#06x}")]
    HeaderCrc {
        /// CRC in the frame.
        found: u16,
        /// CRC computed over the header.
        computed: u16,
    },
    /// A user data block's CRC does not match.
    #[error("link data block {block} CRC {found:#06x} does not match computed {computed:#06x}")]
    BlockCrc {
        /// The 0-based block index.
        block: usize,
        /// CRC in the frame.
        found: u16,
        /// CRC computed over the block.
        computed: u16,
    },
    /// The caller's buffer is too small for the user data or the frame.
    #[error("buffer too small: need {needed} bytes, have {available}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// More than 250 bytes of user data to emit.
    #[error("{0} bytes of user data is more than the 250 a frame carries")]
    UserDataTooLong(usize),
}

/// Outcome of [`frame_len`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameStatus {
    /// The first `len` bytes are one whole frame (10..=292 bytes).
    Complete(usize),
    /// Not enough bytes yet (never more than 292 are needed).
    NeedMore,
    /// The bytes cannot start a frame; resynchronise with [`find_start`].
    Invalid(LinkError),
}

/// The frame length that a LENGTH field implies, CRCs included.
pub fn frame_len_for(length: u8) -> usize {
    let user = usize::from(length.saturating_sub(MIN_LENGTH));
    HEADER_LEN + user + 2 * user.div_ceil(BLOCK_LEN)
}

/// How long the frame at the start of `buf` is, reading only the header: the start bytes as
/// soon as they are present, LENGTH at 3 bytes, the header CRC at 10.
pub fn frame_len(buf: &[u8]) -> FrameStatus {
    for (i, want) in START.iter().enumerate() {
        match buf.get(i) {
            Some(b) if b != want => {
                return FrameStatus::Invalid(LinkError::Start {
                    found: first_two(buf),
                })
            }
            None => return FrameStatus::NeedMore,
            Some(_) => {}
        }
    }
    let Some(&length) = buf.get(2) else {
        return FrameStatus::NeedMore;
    };
    if length < MIN_LENGTH {
        return FrameStatus::Invalid(LinkError::Length(length));
    }
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return FrameStatus::NeedMore;
    };
    if let Err(e) = check_header_crc(header) {
        return FrameStatus::Invalid(e);
    }
    let total = frame_len_for(length);
    if buf.len() >= total {
        FrameStatus::Complete(total)
    } else {
        FrameStatus::NeedMore
    }
}

/// Where the next 0x05 0x64 starts in `buf` (to resynchronise after garbage), if anywhere.
pub fn find_start(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == START)
}

fn first_two(buf: &[u8]) -> u16 {
    match buf {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        [a] => u16::from(*a) << 8,
        [] => 0,
    }
}

fn check_header_crc(header: &[u8; HEADER_LEN]) -> Result<(), LinkError> {
    let (covered, crc) = header.split_at(8);
    let found = u16::from_le_bytes([
        crc.first().copied().unwrap_or(0),
        crc.get(1).copied().unwrap_or(0),
    ]);
    if crc_matches(covered, found) {
        Ok(())
    } else {
        Err(LinkError::HeaderCrc {
            found,
            computed: super::crc(covered),
        })
    }
}

/// A link function code (low 4 bits of CONTROL); its meaning depends on PRM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkFunction(pub u8);

impl LinkFunction {
    /// Primary 0: reset the secondary's link states.
    pub const RESET_LINK_STATES: Self = Self(0);
    /// Primary 2: test link states.
    pub const TEST_LINK_STATES: Self = Self(2);
    /// Primary 3: user data, confirm wanted.
    pub const CONFIRMED_USER_DATA: Self = Self(3);
    /// Primary 4: user data, no confirm.
    pub const UNCONFIRMED_USER_DATA: Self = Self(4);
    /// Primary 9: request link status.
    pub const REQUEST_LINK_STATUS: Self = Self(9);
    /// Secondary 0: positive acknowledgement.
    pub const ACK: Self = Self(0);
    /// Secondary 1: negative acknowledgement.
    pub const NACK: Self = Self(1);
    /// Secondary 11: link status.
    pub const LINK_STATUS: Self = Self(11);
    /// Secondary 15: not supported.
    pub const NOT_SUPPORTED: Self = Self(15);
}

/// The CONTROL octet: DIR, PRM, FCB, FCV (DFC for secondary frames), function code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Control(pub u8);

impl Control {
    /// DIR: set on frames from the master.
    pub fn dir(self) -> bool {
        self.0 & 0x80 != 0
    }
    /// PRM: set on frames from the primary (initiating) station.
    pub fn prm(self) -> bool {
        self.0 & 0x40 != 0
    }
    /// FCB: frame count bit (primary frames).
    pub fn fcb(self) -> bool {
        self.0 & 0x20 != 0
    }
    /// FCV: frame count valid (primary frames); DFC, data flow control, on secondary frames.
    pub fn fcv(self) -> bool {
        self.0 & 0x10 != 0
    }
    /// The function code (low 4 bits).
    pub fn function(self) -> LinkFunction {
        LinkFunction(self.0 & 0x0F)
    }
    /// Whether this frame carries user data (primary, function 3 or 4).
    pub fn carries_user_data(self) -> bool {
        self.prm()
            && matches!(
                self.function(),
                LinkFunction::CONFIRMED_USER_DATA | LinkFunction::UNCONFIRMED_USER_DATA
            )
    }
    /// The spec's name of the function, given PRM.
    pub fn function_name(self) -> &'static str {
        match (self.prm(), self.function().0) {
            (true, 0) => "reset_link_states",
            (true, 2) => "test_link_states",
            (true, 3) => "confirmed_user_data",
            (true, 4) => "unconfirmed_user_data",
            (true, 9) => "request_link_status",
            (false, 0) => "ack",
            (false, 1) => "nack",
            (false, 11) => "link_status",
            (false, 15) => "not_supported",
            _ => "unassigned",
        }
    }
}

/// The fields of a link header, for emitting frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// CONTROL.
    pub control: Control,
    /// Destination address.
    pub destination: u16,
    /// Source address.
    pub source: u16,
}

impl Header {
    /// The frame length for `user_data_len` bytes of user data.
    pub fn buffer_len(user_data_len: usize) -> usize {
        HEADER_LEN + user_data_len + 2 * user_data_len.div_ceil(BLOCK_LEN)
    }

    /// Writes a whole frame (header, user data in CRC'd blocks) into `buf`; returns its length.
    pub fn emit(&self, user_data: &[u8], buf: &mut [u8]) -> Result<usize, LinkError> {
        if user_data.len() > MAX_USER_DATA {
            return Err(LinkError::UserDataTooLong(user_data.len()));
        }
        let needed = Self::buffer_len(user_data.len());
        let available = buf.len();
        let out = buf
            .get_mut(..needed)
            .ok_or(LinkError::BufferTooSmall { needed, available })?;
        let length = u8::try_from(user_data.len() + usize::from(MIN_LENGTH))
            .map_err(|_| LinkError::UserDataTooLong(user_data.len()))?;
        let [d0, d1] = self.destination.to_le_bytes();
        let [s0, s1] = self.source.to_le_bytes();
        let head = [START[0], START[1], length, self.control.0, d0, d1, s0, s1];
        let mut pos = 0;
        for chunk in core::iter::once(&head[..]).chain(user_data.chunks(BLOCK_LEN)) {
            let [c0, c1] = super::crc(chunk).to_le_bytes();
            for &byte in chunk.iter().chain(&[c0, c1]) {
                if let Some(slot) = out.get_mut(pos) {
                    *slot = byte;
                }
                pos += 1;
            }
        }
        Ok(pos)
    }
}

/// A zero-copy view of one link frame whose structure (and, unless lenient, every CRC) checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    header: &'a [u8; HEADER_LEN],
    body: &'a [u8],
}

/// The CRC faults [`Frame::new_lenient`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CrcReport {
    /// Whether the header CRC failed.
    pub header_bad: bool,
    /// How many user data blocks failed their CRC.
    pub bad_blocks: usize,
    /// The first block (0-based) that failed, if any.
    pub first_bad_block: Option<usize>,
}

impl CrcReport {
    /// Whether every CRC matched.
    pub fn is_clean(&self) -> bool {
        !self.header_bad && self.bad_blocks == 0
    }
}

impl<'a> Frame<'a> {
    /// A view of exactly one frame: start bytes, LENGTH of at least 5, the byte count LENGTH
    /// implies, and every CRC.
    pub fn new_checked(frame: &'a [u8]) -> Result<Self, LinkError> {
        let (view, report) = Self::new_lenient(frame)?;
        if report.header_bad {
            check_header_crc(view.header)?;
        }
        if let Some(block) = report.first_bad_block {
            let (data, found) = view.block(block).unwrap_or((&[], 0));
            return Err(LinkError::BlockCrc {
                block,
                found,
                computed: super::crc(data),
            });
        }
        Ok(view)
    }

    /// A view of one frame whose structure checks, reporting CRC faults instead of refusing.
    pub fn new_lenient(frame: &'a [u8]) -> Result<(Self, CrcReport), LinkError> {
        let available = frame.len();
        let (header, body) =
            frame
                .split_first_chunk::<HEADER_LEN>()
                .ok_or(LinkError::Truncated {
                    needed: HEADER_LEN,
                    available,
                })?;
        if header[..2] != START {
            return Err(LinkError::Start {
                found: first_two(frame),
            });
        }
        let length = header[2];
        if length < MIN_LENGTH {
            return Err(LinkError::Length(length));
        }
        let expected = frame_len_for(length);
        if available < expected {
            return Err(LinkError::Truncated {
                needed: expected,
                available,
            });
        }
        if available > expected {
            return Err(LinkError::TrailingBytes {
                expected,
                actual: available,
            });
        }
        let view = Self { header, body };
        let mut report = CrcReport {
            header_bad: check_header_crc(header).is_err(),
            ..CrcReport::default()
        };
        for (index, chunk) in body.chunks(BLOCK_LEN + 2).enumerate() {
            let (data, crc) = chunk.split_at(chunk.len().saturating_sub(2));
            let found = u16::from_le_bytes([
                crc.first().copied().unwrap_or(0),
                crc.get(1).copied().unwrap_or(0),
            ]);
            if !crc_matches(data, found) {
                report.bad_blocks += 1;
                report.first_bad_block.get_or_insert(index);
            }
        }
        Ok((view, report))
    }

    /// LENGTH as sent.
    pub fn length(&self) -> u8 {
        self.header[2]
    }

    /// CONTROL.
    pub fn control(&self) -> Control {
        Control(self.header[3])
    }

    /// Destination address.
    pub fn destination(&self) -> u16 {
        u16::from_le_bytes([self.header[4], self.header[5]])
    }

    /// Source address.
    pub fn source(&self) -> u16 {
        u16::from_le_bytes([self.header[6], self.header[7]])
    }

    /// The header fields.
    pub fn header(&self) -> Header {
        Header {
            control: self.control(),
            destination: self.destination(),
            source: self.source(),
        }
    }

    /// The whole frame's length.
    pub fn len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// Always false: a frame has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes of user data (LENGTH minus 5).
    pub fn user_data_len(&self) -> usize {
        usize::from(self.length().saturating_sub(MIN_LENGTH))
    }

    /// The user data blocks without their CRCs, in order (each 1..=16 bytes).
    pub fn blocks(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.body.chunks(BLOCK_LEN + 2).map(|chunk| {
            chunk
                .get(..chunk.len().saturating_sub(2))
                .unwrap_or_default()
        })
    }

    fn block(&self, index: usize) -> Option<(&'a [u8], u16)> {
        let chunk = self.body.chunks(BLOCK_LEN + 2).nth(index)?;
        let (data, crc) = chunk.split_at(chunk.len().saturating_sub(2));
        Some((
            data,
            u16::from_le_bytes([crc.first().copied()?, crc.get(1).copied()?]),
        ))
    }

    /// Copies the user data, CRCs stripped, into `out`; returns the filled prefix. A buffer of
    /// [`MAX_USER_DATA`] bytes always suffices.
    pub fn payload<'b>(&self, out: &'b mut [u8]) -> Result<&'b [u8], LinkError> {
        let needed = self.user_data_len();
        let available = out.len();
        let mut pos = 0;
        for block in self.blocks() {
            let slot = out
                .get_mut(pos..pos + block.len())
                .ok_or(LinkError::BufferTooSmall { needed, available })?;
            slot.copy_from_slice(block);
            pos += block.len();
        }
        Ok(out.get(..pos).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one annotated frame through `frame_len` and `new_checked`.
    fn check(
        name: &str,
        bytes: &[u8],
        want_len: FrameStatus,
        want: Result<(u8, u16, u16, &[u8]), LinkError>,
    ) {
        assert_eq!(frame_len(bytes), want_len, "{name}: frame_len");
        let got =
            Frame::new_checked(bytes).map(|f| (f.control().0, f.destination(), f.source(), f));
        match (got, want) {
            (Ok((control, dest, src, frame)), Ok((c, d, s, user))) => {
                assert_eq!((control, dest, src), (c, d, s), "{name}");
                let mut buf = [0u8; MAX_USER_DATA];
                assert_eq!(frame.payload(&mut buf).unwrap(), user, "{name}: payload");
                let mut out = [0u8; MAX_FRAME_LEN];
                let n = frame.header().emit(user, &mut out).unwrap();
                assert_eq!(&out[..n], bytes, "{name}: emit round trip");
            }
            (Err(e), Err(w)) => assert_eq!(e, w, "{name}"),
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }

    #[rustfmt::skip]
    #[test]
    fn frames() {
        // From iti_dnp3_read_and_response.pcap: a READ of classes 1, 2, 3, 0.
        let read: &[u8] = &[
            0x05, 0x64, /* start */ 0x14, /* length 20 */ 0xC4, /* DIR PRM unconfirmed user data */
            0x0A, 0x00, /* dest 10 */ 0x01, 0x00, /* src 1 */ 0x8F, 0xED, /* header CRC */
            0xC0, 0xC0, 0x01, 0x3C, 0x02, 0x06, 0x3C, 0x03, 0x06, 0x3C, 0x04, 0x06, 0x3C, 0x01, 0x06, /* 15 bytes */
            0x8A, 0x51, /* block CRC */
        ];
        check("read request", read, FrameStatus::Complete(27),
              Ok((0xC4, 10, 1, &[0xC0, 0xC0, 0x01, 0x3C, 0x02, 0x06, 0x3C, 0x03, 0x06, 0x3C, 0x04, 0x06, 0x3C, 0x01, 0x06])));
        let mut bad_block = read.to_vec();
        bad_block[12] ^= 0xFF;
        let bad_crc = Frame::new_checked(&bad_block);
        assert!(matches!(bad_crc, Err(LinkError::BlockCrc { block: 0, found: 0x518A, .. })), "{bad_crc:?}");
        let (_, report) = Frame::new_lenient(&bad_block).unwrap();
        assert_eq!(report, CrcReport { header_bad: false, bad_blocks: 1, first_bad_block: Some(0) });

        // Link reset, no user data.
        let mut reset = [0x05, 0x64, 0x05, 0xC0, 0x01, 0x00, 0x00, 0x04, 0, 0];
        let [c0, c1] = crate::wire::dnp3::crc(&reset[..8]).to_le_bytes();
        reset[8] = c0;
        reset[9] = c1;
        check("reset link states", &reset, FrameStatus::Complete(10), Ok((0xC0, 1, 1024, &[])));

        let mut bad_header = reset;
        bad_header[9] ^= 1;
        assert!(matches!(frame_len(&bad_header), FrameStatus::Invalid(LinkError::HeaderCrc { .. })));
        assert!(matches!(Frame::new_checked(&bad_header), Err(LinkError::HeaderCrc { .. })));
        assert!(!Frame::new_lenient(&bad_header).unwrap().1.is_clean());

        check("wrong start", &[0x05, 0x65, 5], FrameStatus::Invalid(LinkError::Start { found: 0x0565 }),
              Err(LinkError::Truncated { needed: 10, available: 3 }));
        check("garbage", &[0x16], FrameStatus::Invalid(LinkError::Start { found: 0x1600 }),
              Err(LinkError::Truncated { needed: 10, available: 1 }));
        check("length 4", &[0x05, 0x64, 0x04, 0xC0, 1, 0, 0, 4, 0, 0],
              FrameStatus::Invalid(LinkError::Length(4)), Err(LinkError::Length(4)));
        check("user data cut short", &read[..20], FrameStatus::NeedMore,
              Err(LinkError::Truncated { needed: 27, available: 20 }));
        let mut long = read.to_vec();
        long.push(0);
        check("a byte too many", &long, FrameStatus::Complete(27),
              Err(LinkError::TrailingBytes { expected: 27, actual: 28 }));
        assert_eq!(frame_len(&[0x05]), FrameStatus::NeedMore);
        assert_eq!(frame_len(&read[..9]), FrameStatus::NeedMore);
        assert_eq!(find_start(&[1, 2, 0x05, 0x05, 0x64, 9]), Some(3));
        assert_eq!(find_start(&[0x05]), None);
    }

    #[test]
    fn long_frames_split_into_blocks() {
        let user: Vec<u8> = (0..=249).collect();
        let header = Header {
            control: Control(0x44),
            destination: 1,
            source: 1024,
        };
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = header.emit(&user, &mut buf).unwrap();
        assert_eq!(n, MAX_FRAME_LEN);
        assert_eq!(frame_len(&buf), FrameStatus::Complete(MAX_FRAME_LEN));
        let frame = Frame::new_checked(&buf).unwrap();
        assert_eq!(frame.blocks().count(), 16);
        let mut out = [0u8; MAX_USER_DATA];
        assert_eq!(frame.payload(&mut out).unwrap(), &user[..]);
        assert_eq!(
            frame.payload(&mut [0u8; 10]),
            Err(LinkError::BufferTooSmall {
                needed: 250,
                available: 10
            })
        );
        assert_eq!(
            header.emit(&[0; 251], &mut [0u8; MAX_FRAME_LEN]),
            Err(LinkError::UserDataTooLong(251))
        );
        assert_eq!(
            header.emit(&user, &mut [0u8; 100]),
            Err(LinkError::BufferTooSmall {
                needed: 292,
                available: 100
            })
        );
        let control = frame.control();
        assert!(!control.dir() && control.prm() && control.carries_user_data());
        assert_eq!(control.function_name(), "unconfirmed_user_data");
    }
}
