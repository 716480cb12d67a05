//! Fuzz target `cq_round_trip`: the input goes through [`properties::check_cq`], which panics on any
//! broken property (see `fuzz/properties.rs`).
#![no_main]

#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::check_cq(data));
