//! Fuzz target `send`: `POST /send` through the gateway; see `courier_core::fuzzing::send`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    courier_core::fuzzing::send(data);
});
