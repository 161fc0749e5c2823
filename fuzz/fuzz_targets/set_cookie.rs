//! Fuzz target: arbitrary bytes through `mtr_sso::fuzzing::parse_set_cookies` must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mtr_sso::fuzzing::parse_set_cookies(data);
});
