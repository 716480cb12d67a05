//! Fuzz target `v12_event`: the input goes through [`properties::check_v12_event`], which panics on any
//! broken property (see `fuzz/properties.rs`).
#![no_main]

#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::check_v12_event(data));
