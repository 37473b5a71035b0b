//! Fuzz the journal's record decoder and the syslog octet framer with arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    otgate::journal::fuzzing::journal_bytes(data);
});
