//! Fuzz the review-record decoder and verifier: no input may panic, and whatever decodes must
//! re-encode to the same bytes. Seeds: `corpus/review_record/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    otgate_sync::review::fuzzing::review_record(data);
});
