//! `cargo fuzz run --fuzz-dir tests/fuzz record`: see `mall_events::fuzzing::record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mall_events::fuzzing::record(data));
