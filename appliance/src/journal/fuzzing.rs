//! Entry points for `cargo fuzz` (`appliance/fuzz/fuzz_targets/journal_record.rs`): the journal
//! reads bytes that an attacker with disk access may have written, and the export collector
//! reads bytes from the network. Neither may panic on any input. The same bytes also go
//! through the end-of-records checks and the signed head marker's slot parser.

use super::export::collector::OctetFramer;
use super::read::decode_record;
use super::record;

/// Decode `bytes` as a segment's records (header optional), parsing every payload as an event,
/// then feed the same bytes to the syslog octet framer.
pub fn journal_bytes(bytes: &[u8]) {
    let mut offset = if record::parse_segment_header(bytes).is_some() {
        record::SEGMENT_HEADER_LEN
    } else {
        0
    };
    while let Some(rest) = bytes.get(offset..).filter(|r| !r.is_empty()) {
        if record::at_end(rest) {
            let _ = record::nonzero_len(rest);
            break;
        }
        let Ok(raw) = record::decode(rest) else {
            let _ = record::is_torn_write(rest);
            break;
        };
        let _ = decode_record(&raw);
        offset += raw.frame_len;
    }
    let _ = OctetFramer::default().push(bytes);
    for slot in bytes.chunks(super::head::SLOT_LEN) {
        let _ = super::head::HeadMarker::parse(slot);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn no_input_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            super::journal_bytes(&bytes);
        }
    }
}
