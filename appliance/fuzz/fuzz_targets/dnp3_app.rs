//! Fuzz target `dnp3_app`: see `otgate::wire::fuzzing::dnp3_app`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| otgate::wire::fuzzing::dnp3_app(data));
