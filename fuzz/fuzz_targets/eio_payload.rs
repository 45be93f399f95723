//! Fuzz target `eio_payload`: see `courier_core::fuzzing::eio_payload`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    courier_core::fuzzing::eio_payload(data);
});
