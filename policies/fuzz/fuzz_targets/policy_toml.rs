//! Fuzz the policy parser and validator, and the decision engine on whatever parses.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    otgate_policy::fuzzing::policy_toml(data);
});
