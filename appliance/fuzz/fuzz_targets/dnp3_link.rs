//! Fuzz target `dnp3_link`: see `otgate::wire::fuzzing::dnp3_link`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| otgate::wire::fuzzing::dnp3_link(data));
