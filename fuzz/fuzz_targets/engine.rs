//! Fuzz target `engine`: see `courier_core::fuzzing::engine`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    courier_core::fuzzing::engine(data);
});
