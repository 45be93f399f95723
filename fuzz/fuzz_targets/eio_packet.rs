//! Fuzz target `eio_packet`: see `courier_core::fuzzing::eio_packet`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    courier_core::fuzzing::eio_packet(data);
});
