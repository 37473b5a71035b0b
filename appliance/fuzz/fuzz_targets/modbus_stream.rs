//! Fuzz target `modbus_stream`: see `otgate::wire::fuzzing::modbus_stream`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| otgate::wire::fuzzing::modbus_stream(data));
