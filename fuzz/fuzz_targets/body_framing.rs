//! Fuzz target `body_framing`: request-body limits and accounting; see
//! `courier_core::fuzzing::body_framing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    courier_core::fuzzing::body_framing(data);
});
