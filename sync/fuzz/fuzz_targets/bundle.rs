//! Fuzz the bundle decoder and verifier: no input may panic, and whatever decodes must
//! re-encode to the same bytes. Seeds: `corpus/bundle/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    otgate_sync::fuzzing::bundle(data);
});
