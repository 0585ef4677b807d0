//! `cargo fuzz run --fuzz-dir tests/fuzz decode`: see `mall_events::fuzzing::decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mall_events::fuzzing::decode(data));
