//! Fuzz target: arbitrary bytes through `mtr_sso::fuzzing::validate_requests` must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mtr_sso::fuzzing::validate_requests(data);
});
