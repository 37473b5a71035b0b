//! Fuzz the canonical-JSON policy parser (what bundles carry) and its validation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    otgate_policy::fuzzing::policy_json(data);
});
