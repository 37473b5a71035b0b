//! Fuzz target `tunnel_handshake`: see `otgate::tunnel::handshake::fuzzing::handshake_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    |data: &[u8]| otgate::tunnel::handshake::fuzzing::handshake_message(data)
);
