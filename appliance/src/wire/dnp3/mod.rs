//! DNP3 (IEEE 1815-2012) in three layers, each handing its `payload()` to the next:
//!
//! - [`link`]: the FT3 frame (start bytes, header, CRC'd 16-byte blocks); [`link::frame_len`]
//!   cuts a TCP stream or UDP datagram into frames.
//! - [`transport`]: the one-byte transport header (FIN, FIR, sequence) and a bounded reassembler
//!   that turns segments into application fragments.
//! - [`app`]: the application fragment (control, function code, IIN on responses) and its object
//!   headers, walking object data where the size is known.
//!
//! Like `wire::modbus`, this is shared by the broker and passive inspection, does no I/O and
//! never panics on any input. Parsing never allocates; reassembly copies into a fixed-capacity
//! buffer. Every CRC goes through [`crc_matches`], which passes under `cfg(fuzzing)` (or the `fuzzing` feature) so that
//! fuzzers reach the deeper layers.

pub mod app;
pub mod link;
pub mod transport;

/// CRC-16/DNP (polynomial 0x3D65, reflected, inverted), as the link layer uses it (clause 9.2.2).
/// Slice-by-16 tables: most blocks are 16 bytes, and the inspector checks every one.
static CRC_DNP: crc::Crc<u16, crc::Table<16>> =
    crc::Crc::<u16, crc::Table<16>>::new(&crc::CRC_16_DNP);

/// The CRC-16/DNP of `data`; in a frame it is stored little-endian.
pub fn crc(data: &[u8]) -> u16 {
    CRC_DNP.checksum(data)
}

/// Whether `found` is the CRC of `data`. The single CRC check of the DNP3 decoders: it always
/// passes when built for fuzzing (`cfg(fuzzing)` or the `fuzzing` feature), so fuzzers reach
/// transport and application.
#[allow(unexpected_cfgs)]
pub fn crc_matches(data: &[u8], found: u16) -> bool {
    cfg!(any(fuzzing, feature = "fuzzing")) || crc(data) == found
}
