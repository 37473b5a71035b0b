//! Fuzz target `modbus_adu`: see `otgate::wire::fuzzing::modbus_adu`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| otgate::wire::fuzzing::modbus_adu(data));
