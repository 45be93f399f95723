//! Fuzz target `sio_packet`: see `courier_core::fuzzing::sio_packet`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    courier_core::fuzzing::sio_packet(data);
});
