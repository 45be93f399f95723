//! Fuzz target `batch`: the `_batch` splitter; see `courier_core::fuzzing::batch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    courier_core::fuzzing::batch(data);
});
