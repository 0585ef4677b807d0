//! `cargo fuzz run --fuzz-dir tests/fuzz frames`: see `mall_events::fuzzing::frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mall_events::fuzzing::frames(data));
